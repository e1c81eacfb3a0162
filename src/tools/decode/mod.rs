//! `rendezvous decode`: every packet of the project's two planes in a capture, one line
//! each, as text or JSON (docs/PROTOCOL.md §10).
//!
//! UDP: each datagram of the port is read as a Root packet ([`crate::wire::root`]) and its
//! payload by type ([`crate::wire::udp`]). TCP: each reassembled connection is framed as
//! the accepting side frames it ([`crate::wire::tcp::command_len`] after the hello), and
//! the acceptor's answers are framed by what was asked, in order (docs/PROTOCOL.md §8.7).
//! Lines of both planes are sorted by capture time (a TCP frame takes the time its first
//! byte was captured). Decoding never sends anything and never fails on any input: what
//! cannot be read is a line marked `malformed`.
//!
//! # Layout
//! - [`line`]: one line, rendered as text or JSON.
//! - [`udp`]: datagrams. [`tcp`]: the opener's frames. [`answers`]: the acceptor's.

mod answers;
mod line;
mod tcp;
mod udp;

use crate::tools::capture::{read_capture_with_stats, CaptureRead};
use line::Line;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// What `rendezvous decode` reads and how it prints (docs/PROTOCOL.md §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The capture: a pcap or pcapng file (tcpdump -w, tshark -w, dumpcap, Wireshark).
    pub capture: PathBuf,
    /// The server's port: UDP datagrams from or to it, and TCP connections to it, are
    /// decoded; everything else is skipped and counted.
    pub port: u16,
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// Runs `rendezvous decode`: prints one line per project packet (UDP) or frame (TCP) on
/// stdout, then a summary line on stderr.
///
/// Exit status 0 when the whole capture was read; 1 (after printing what was readable,
/// then the error naming the file and byte offset on stderr) for a cut or corrupt capture.
///
/// # Errors
/// A file that is not a capture at all or cannot be read (`FILE: at byte 0: not a pcap or
/// pcapng file (magic 0x....)`); a failure to write to stdout other than a closed pipe.
pub fn run(args: &DecodeOptions) -> anyhow::Result<ExitCode> {
    let (read, stats) = read_capture_with_stats(&args.capture, args.port)?;
    let lines = decode_lines(&read);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let written = lines.iter().try_for_each(|l| {
        let text = if args.json { l.to_json() } else { l.to_text() };
        writeln!(out, "{text}")
    });
    let written = written.and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        other => other?,
    }
    let udp = read.datagrams.len() as u64;
    eprintln!(
        "decode: {} packets read, {} of the project (port {}: {} udp datagrams, {} tcp \
         segments in {} connections), {} skipped ({} ip fragments, {} udp datagrams cut by \
         the snapshot length); {} lines",
        read.packets,
        udp + stats.segments,
        args.port,
        udp,
        stats.segments,
        read.flows.len(),
        read.skipped,
        stats.fragments,
        stats.truncated,
        lines.len()
    );
    for (link, n) in &stats.unsupported_links {
        eprintln!("decode: {n} packets of link type {link} skipped: link type not supported");
    }
    for f in read.flows.iter().filter(|f| f.gaps > 0) {
        eprintln!(
            "decode: tcp {} -> {}: {} bytes missing from the capture (lost or cut by the \
             snapshot length)",
            f.client, f.server, f.gaps
        );
    }
    match read.error {
        Some(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Every line of a capture, sorted by capture time (stable: UDP in capture order, each TCP
/// direction in stream order).
fn decode_lines(read: &CaptureRead) -> Vec<Line> {
    let mut lines: Vec<Line> = read.datagrams.iter().map(udp::udp_line).collect();
    for flow in &read.flows {
        tcp::tcp_lines(flow, &mut lines);
    }
    lines.sort_by_key(|l| l.ts_us);
    lines
}

#[cfg(test)]
mod tests {
    use super::tcp::tcp_lines;
    use super::udp::udp_line;
    use crate::tools::capture::{TcpFlow, UdpDatagram};
    use std::net::SocketAddr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    proptest::proptest! {
            /// No input makes decoding panic: any datagram, any pair of streams, either role.
            #[test]
            fn any_bytes_decode_without_panic(
                udp in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                role in 1u8..=2,
                client in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
                server in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            ) {
                let d = UdpDatagram {
                    ts_us: 0,
                    src: addr("127.0.0.1:1"),
                    dst: addr("127.0.0.1:2"),
                    payload: udp,
                    to_server: true,
                };
                let _ = udp_line(&d).to_json();
                let mut c = vec![role];
                c.extend_from_slice(&[0u8; 256]);
                c.extend_from_slice(&client);
                for client_data in [client, c] {
                    let flow = TcpFlow {
                        client: addr("127.0.0.1:1"),
                        server: addr("127.0.0.1:2"),
                        first_ts_us: 0,
                        client_chunks: vec![(0, 0)],
                        client_data,
                        server_chunks: vec![(0, 0)],
                        server_data: server.clone(),
                        gaps: 0,
                    };
                    let mut lines = Vec::new();
                    tcp_lines(&flow, &mut lines);
                    for l in &lines {
                        let _ = (l.to_text(), l.to_json());
                    }
                }
            }
    }
}
