//! `rendezvous decode`: every packet of the project's two planes in a capture, one line
//! each, as text or JSON (docs/PROTOCOL.md §10).
//!
//! Every byte is read with the wire's codecs, never here. UDP: each datagram of the port is
//! read as a Root packet ([`crate::wire::Root`]) and its payload by type
//! ([`crate::wire::udp`]). TCP: each reassembled connection is framed as the accepting side
//! frames it ([`crate::wire::tcp::command_len`] after the hello), and the acceptor's
//! answers are read by the answer codec ([`crate::wire::tcp::answer::AnswerReader`]) told
//! what was asked, in order (docs/PROTOCOL.md §8.7). Lines of both planes are sorted by
//! capture time (a TCP frame takes the time its first byte was captured). Decoding never
//! sends anything and never fails on any input: what cannot be read is a line marked
//! `malformed`.
//!
//! # Layout
//! - `line`: one line, rendered as text or JSON.
//! - `udp`: datagrams. `tcp`: the opener's frames. `answers`: the acceptor's, one line per
//!   piece; `gather`: the counted and directory answers, one line each.

mod answers;
mod gather;
mod line;
mod tcp;
mod udp;

use crate::tools::capture::{
    is_stream, open_capture, open_stream, stream_capture, Capture, CaptureError, CaptureRead,
    CaptureStats, Event, NoTraffic, PortEvidence, Streamed,
};
use line::Line;
use std::io::{self, Write};
use std::path::PathBuf;
use tcp::FlowDecoder;

/// What `rendezvous decode` reads and how it prints (docs/PROTOCOL.md §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The capture: a pcap or pcapng file (tcpdump -w, tshark -w, dumpcap, Wireshark).
    pub capture: PathBuf,
    /// The server's port: UDP datagrams from or to it, and TCP connections to it, are
    /// decoded; everything else is skipped and counted. `None`: every port that carries
    /// the protocol, found by the structure of its traffic (docs/PROTOCOL.md §10).
    pub port: Option<u16>,
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// Why `rendezvous decode` failed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The capture could not be read at all: not a capture, missing, unreadable
    /// (`FILE: at byte 0: ...`). Nothing was printed.
    #[error(transparent)]
    Capture(CaptureError),
    /// No port was given, and none in the capture carries the protocol. Nothing was
    /// printed but this.
    #[error(transparent)]
    NoTraffic(NoTraffic),
    /// The capture is cut or corrupt part-way (`FILE: at byte OFFSET: ...`): the lines of
    /// everything before the broken record and the summary were printed.
    #[error(transparent)]
    Cut(CaptureError),
    /// The lines could not be written (a closed pipe is no error: decoding just stops).
    #[error("cannot write the decoded lines")]
    Output(#[source] io::Error),
}

/// Runs `rendezvous decode`: writes one line per project packet (UDP) or frame (TCP) to
/// `out`, then to `notes` the server ports found (when none was given), a summary, and a
/// line per unsupported link type and per connection with missing bytes. Stops quietly
/// when `out` is a closed pipe. A capture that is no regular file (`-`, standard input; a
/// pipe) is read as a stream ([`run_stream`]).
///
/// # Errors
/// [`DecodeError::Capture`] for a file that is not a capture at all or cannot be read;
/// [`DecodeError::NoTraffic`] when no port was given and none carries the protocol;
/// [`DecodeError::Cut`] for a capture cut or corrupt part-way, after writing what was
/// readable; [`DecodeError::Output`] when `out` fails otherwise.
pub fn run(
    options: &DecodeOptions,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), DecodeError> {
    if is_stream(&options.capture) {
        return run_stream(options, out, notes);
    }
    let capture = open_capture(&options.capture, options.port).map_err(DecodeError::Capture)?;
    if let Some(none) = capture.no_traffic(&options.capture) {
        return Err(DecodeError::NoTraffic(none));
    }
    for e in &capture.found {
        note_port(e, notes);
    }
    let Capture {
        read, stats, ports, ..
    } = capture;
    let lines = decode_lines(&read);
    match write_lines(&lines, options.json, out) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        other => other.map_err(DecodeError::Output)?,
    }
    let udp = read.datagrams.len() as u64;
    finish(read, udp, &stats, &ports, lines.len(), notes)
}

/// [`run`] on a stream (`-` is standard input; a pipe, a FIFO): each packet is decoded as
/// it is read and its lines written at once, each line flushed, in the order read (a TCP
/// frame once its last byte is read; docs/PROTOCOL.md §10). Without a port, the ports are
/// those found by the first traffic that shows the protocol.
///
/// # Errors
/// As [`run`].
pub fn run_stream(
    options: &DecodeOptions,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), DecodeError> {
    let (source, name) = open_stream(&options.capture).map_err(DecodeError::Capture)?;
    let mut flows: Vec<FlowDecoder> = Vec::new();
    let mut written = 0usize;
    let mut failed: Option<io::Error> = None;
    let mut on = |event: Event<'_>| {
        let mut lines = Vec::new();
        match event {
            Event::Ports(found) => found.iter().for_each(|e| note_port(e, notes)),
            Event::Datagram(d) => lines.push(udp::udp_line(d)),
            Event::Flow { index, view, last } => {
                if flows.len() <= index {
                    flows.resize_with(index + 1, FlowDecoder::default);
                }
                flows[index].advance(view, last, &mut lines);
            }
        }
        written += lines.len();
        let wrote = lines.iter().try_for_each(|l| {
            let text = if options.json {
                l.to_json()
            } else {
                l.to_text()
            };
            writeln!(out, "{text}")?;
            out.flush()
        });
        wrote.map_err(|e| failed = Some(e)).is_ok()
    };
    let streamed =
        stream_capture(source, &name, options.port, &mut on).map_err(DecodeError::Capture)?;
    match failed {
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Some(e) => return Err(DecodeError::Output(e)),
        None => {}
    }
    let Streamed {
        read,
        stats,
        ports,
        datagrams,
    } = streamed;
    if ports.is_empty() {
        return Err(DecodeError::NoTraffic(NoTraffic {
            file: name,
            packets: read.packets,
            cut: read.error,
        }));
    }
    finish(read, datagrams, &stats, &ports, written, notes)
}

/// `decode: port N carries the protocol (WHY)` on `notes` (best effort).
fn note_port(e: &PortEvidence, notes: &mut dyn Write) {
    let _ = writeln!(
        notes,
        "decode: port {} carries the protocol ({})",
        e.port,
        e.describe()
    );
}

/// The summary on `notes`, then the read's outcome: [`DecodeError::Cut`] when it stopped
/// part-way. `udp`: the datagrams decoded; `lines`: the lines written.
fn finish(
    read: CaptureRead,
    udp: u64,
    stats: &CaptureStats,
    ports: &[u16],
    lines: usize,
    notes: &mut dyn Write,
) -> Result<(), DecodeError> {
    // Notes are best effort: a closed stderr must not hide the lines' outcome.
    let _ = write_summary(&read, udp, stats, ports, lines, notes);
    match read.error {
        Some(e) => Err(DecodeError::Cut(e)),
        None => Ok(()),
    }
}

/// Writes every line, as text or JSON, through one buffer.
fn write_lines(lines: &[Line], json: bool, out: &mut dyn Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    for l in lines {
        let text = if json { l.to_json() } else { l.to_text() };
        writeln!(out, "{text}")?;
    }
    out.flush()
}

/// The summary line, then one line per unsupported link type and per connection with
/// bytes missing (docs/PROTOCOL.md §10, `rendezvous decode`, "stderr"); `udp` datagrams
/// were decoded.
fn write_summary(
    read: &CaptureRead,
    udp: u64,
    stats: &CaptureStats,
    ports: &[u16],
    lines: usize,
    notes: &mut dyn Write,
) -> io::Result<()> {
    writeln!(
        notes,
        "decode: {} packets read, {} of the project ({}: {} udp datagrams, {} tcp \
         segments in {} connections), {} skipped ({} ip fragments, {} udp datagrams cut by \
         the snapshot length); {} lines",
        read.packets,
        udp + stats.segments,
        ports_label(ports),
        udp,
        stats.segments,
        read.flows.len(),
        read.skipped,
        stats.fragments,
        stats.truncated,
        lines
    )?;
    for (link, n) in &stats.unsupported_links {
        writeln!(
            notes,
            "decode: {n} packets of link type {link} skipped: link type not supported"
        )?;
    }
    for f in read.flows.iter().filter(|f| f.gaps > 0) {
        writeln!(
            notes,
            "decode: tcp {} -> {}: {} bytes missing from the capture (lost or cut by the \
             snapshot length)",
            f.client, f.server, f.gaps
        )?;
    }
    Ok(())
}

/// `port 4747`, or `ports 4747, 4800` for several.
fn ports_label(ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    match ports.len() {
        1 => format!("port {}", list[0]),
        _ => format!("ports {}", list.join(", ")),
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
