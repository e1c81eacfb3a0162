//! Reading captures (pcap and pcapng, as tcpdump, tshark and Wireshark write them): the
//! project's UDP datagrams and reassembled TCP connections in them, for `rendezvous
//! decode` and `rendezvous replay` (docs/PROTOCOL.md §10).
//!
//! # Layout
//! - `read`: the file formats (pcap in both byte orders with micro- or nanosecond
//!   timestamps, pcapng with any number of sections and interfaces), read in pieces with
//!   the file offset of every record, so a cut or corrupt file is reported where it breaks.
//! - `link`: link layers (Ethernet, Linux cooked v1 and v2, NULL/LOOP, raw IP), IPv4 and
//!   IPv6 through `etherparse`, and the filter: UDP of the server ports, TCP connections to
//!   them (or, to find those ports, everything).
//! - `detect`: finding the server ports by the structure of the traffic.
//! - `tcp`: stream reassembly (sequence order, retransmissions and overlaps dropped,
//!   out-of-order segments placed, holes counted as gaps).
//! - `live`: the same read as a stream, each packet handed on as it is read (a pipe,
//!   standard input).
//!
//! What this module never does: send anything, or keep more than the capture holds (the
//! payloads of the port's traffic and the segments waiting for a hole).

mod detect;
pub mod link;
mod live;
mod read;
mod tcp;

pub use detect::PortEvidence;
use link::Demux;
pub use live::{stream_capture, Event, Streamed};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One UDP datagram of a server port, as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// Absolute capture time, µs since the Unix epoch (UTC).
    pub ts_us: u64,
    /// Source address and port, from the IP and UDP headers.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload, whole (a datagram cut by the snapshot length is not kept; it is
    /// counted in [`CaptureStats::truncated`]).
    pub payload: Vec<u8>,
    /// True when the destination port is a server port (a client-to-server datagram).
    pub to_server: bool,
}

/// One TCP connection whose server side has a server port, reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpFlow {
    /// The side without the server port (the opener).
    pub client: SocketAddr,
    /// The side with the server port.
    pub server: SocketAddr,
    /// Capture time of the connection's first packet, µs since the Unix epoch.
    pub first_ts_us: u64,
    /// client -> server bytes, reassembled in sequence order (retransmissions and overlaps
    /// dropped, out-of-order segments placed). A connection seen without its SYN starts at
    /// the first sequence number seen.
    pub client_data: Vec<u8>,
    /// For pacing: the capture time (µs since the Unix epoch) at which each chunk of
    /// `client_data` became readable, and the offset into `client_data` where it starts.
    /// Offsets increase strictly; times never decrease.
    pub client_chunks: Vec<(u64, usize)>,
    /// server -> client bytes, as `client_data`.
    pub server_data: Vec<u8>,
    /// Chunks of `server_data`, as `client_chunks`.
    pub server_chunks: Vec<(u64, usize)>,
    /// Bytes of either direction missing from the capture (lost, or cut by the snapshot
    /// length); they are skipped, so the data holds only bytes that were captured.
    pub gaps: u64,
}

impl TcpFlow {
    /// The connection as a [`FlowView`].
    pub fn view(&self) -> FlowView<'_> {
        FlowView {
            client: self.client,
            server: self.server,
            first_ts_us: self.first_ts_us,
            client_data: &self.client_data,
            client_chunks: &self.client_chunks,
            server_data: &self.server_data,
            server_chunks: &self.server_chunks,
        }
    }
}

/// One TCP connection's reassembled bytes, borrowed: a whole [`TcpFlow`], or a connection
/// as far as a streamed read has got ([`Event::Flow`]). The fields mean what
/// [`TcpFlow`]'s do; a stream read further only grows (bytes and chunks are appended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowView<'a> {
    /// The side without the server port (the opener).
    pub client: SocketAddr,
    /// The side with the server port.
    pub server: SocketAddr,
    /// Capture time of the connection's first packet, µs since the Unix epoch.
    pub first_ts_us: u64,
    /// client -> server bytes in sequence order, up to the first hole.
    pub client_data: &'a [u8],
    /// `(capture time µs, offset)` of each chunk of `client_data`.
    pub client_chunks: &'a [(u64, usize)],
    /// server -> client bytes, as `client_data`.
    pub server_data: &'a [u8],
    /// Chunks of `server_data`.
    pub server_chunks: &'a [(u64, usize)],
}

/// Why a capture could not be read (whole, or from some point on).
///
/// Display: `FILE: at byte OFFSET: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: at byte {offset}: {message}", file.display())]
pub struct CaptureError {
    /// The file, as given.
    pub file: PathBuf,
    /// Offset in the file, in bytes, of the record or block that could not be read (0 for
    /// a file that is not a capture or cannot be opened).
    pub offset: u64,
    /// What is wrong, for people.
    pub message: String,
}

/// What [`read_capture`] found in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRead {
    /// The server ports' UDP datagrams, both directions, in capture order.
    pub datagrams: Vec<UdpDatagram>,
    /// TCP connections to a server port, in order of first packet.
    pub flows: Vec<TcpFlow>,
    /// Packet records read from the file.
    pub packets: u64,
    /// Packets not kept: other ports and protocols, non-IP frames, IP fragments, UDP
    /// datagrams cut by the snapshot length, unsupported link types (details in
    /// [`CaptureStats`]).
    pub skipped: u64,
    /// Set when the file is cut or corrupt after its start: everything before the broken
    /// record is still in this result.
    pub error: Option<CaptureError>,
}

/// Details of a read beyond [`CaptureRead`], for reports (`rendezvous decode` prints them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// TCP segments kept in [`CaptureRead::flows`] (SYNs and bare ACKs included).
    pub segments: u64,
    /// Of [`CaptureRead::skipped`]: IPv4 fragments and IPv6 packets with a fragment header
    /// (not reassembled).
    pub fragments: u64,
    /// Of [`CaptureRead::skipped`]: the port's UDP datagrams whose payload the snapshot
    /// length cut.
    pub truncated: u64,
    /// Of [`CaptureRead::skipped`]: packets of link types this reader does not know, as
    /// (link type, packets), ascending by link type.
    pub unsupported_links: Vec<(i32, u64)>,
}

/// A capture read for `decode` or `replay`: the traffic of its server ports, and which
/// ports those are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The traffic of [`Capture::ports`].
    pub read: CaptureRead,
    /// Details of the read.
    pub stats: CaptureStats,
    /// The server ports kept: the one given, or those found (ascending; empty when none
    /// carries the protocol).
    pub ports: Vec<u16>,
    /// Why each port found was taken (empty when the port was given).
    pub found: Vec<PortEvidence>,
}

/// None of a capture's traffic is this protocol's: no port was given and none was found
/// (docs/PROTOCOL.md §10, "Finding the server port").
///
/// Display: `FILE: no traffic of this protocol in its N packets (...); give --port N to
/// read a port anyway`, with the capture's own error when it is cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}: no traffic of this protocol in its {packets} packets (no port's UDP datagrams are \
     mostly Root packets, and no port's TCP connections mostly open with a hello){}; give \
     --port N to read a port anyway",
    file.display(),
    cut.as_ref().map(|e| format!("; the capture is also cut: {e}")).unwrap_or_default()
)]
pub struct NoTraffic {
    /// The file, as given.
    pub file: PathBuf,
    /// Packet records read.
    pub packets: u64,
    /// The error that stopped the read part-way, if one did.
    pub cut: Option<CaptureError>,
}

impl Capture {
    /// [`NoTraffic`] when no port was given and none was found, of the capture `file`.
    pub fn no_traffic(&self, file: &Path) -> Option<NoTraffic> {
        self.ports.is_empty().then(|| NoTraffic {
            file: file.to_path_buf(),
            packets: self.read.packets,
            cut: self.read.error.clone(),
        })
    }
}

/// Reads a pcap or pcapng file and keeps the traffic of `port`: UDP datagrams whose source
/// or destination port is `port`, and TCP connections where one side's port is `port` (that
/// side is the server), reassembled.
///
/// Supported: pcap little- and big-endian, microsecond and nanosecond magic; pcapng in
/// either byte order, several sections and interfaces; link types Ethernet (1), Linux
/// cooked v1 (113) and v2 (276), NULL (0), LOOP (108), raw IP (12, 14, 101), raw IPv4
/// (228), raw IPv6 (229). Memory: the kept payloads, at most the capture's size.
///
/// # Errors
/// Only when nothing could be read at all: the file cannot be opened or read, is not a
/// capture (`not a pcap or pcapng file (magic 0x....)`), or its file header is cut or
/// corrupt. A file cut or corrupt later gives `Ok`, with [`CaptureRead::error`] set.
pub fn read_capture(path: &Path, port: u16) -> Result<CaptureRead, CaptureError> {
    read_capture_with_stats(path, port).map(|(read, _)| read)
}

/// As [`read_capture`], with the [`CaptureStats`] of the read.
///
/// # Errors
/// As [`read_capture`].
pub fn read_capture_with_stats(
    path: &Path,
    port: u16,
) -> Result<(CaptureRead, CaptureStats), CaptureError> {
    let mut demux = Demux::new(&[port]);
    let error = read::read_path(path, &mut demux)?;
    Ok(demux.finish(error))
}

/// As [`read_capture`], from any reader (a pipe, bytes in memory); `name` is the file
/// named in errors.
///
/// # Errors
/// As [`read_capture`].
pub fn read_capture_from<R: std::io::Read>(
    source: R,
    name: &Path,
    port: u16,
) -> Result<CaptureRead, CaptureError> {
    let mut demux = Demux::new(&[port]);
    let error = read::read(source, None, name, &mut demux)?;
    Ok(demux.finish(error).0)
}

/// Reads a capture for `decode` or `replay`: the traffic of `port` as [`read_capture`]
/// keeps it; or, without a port, of every server port found in it by the structure of its
/// traffic ([`PortEvidence`], docs/PROTOCOL.md §10). Counts (packets, skipped) are the
/// same as a read given those ports. Memory: up to about twice the size of the capture's
/// UDP and TCP payloads while the ports are looked for.
///
/// # Errors
/// As [`read_capture`]. A capture where no port carries the protocol is no error here:
/// [`Capture::ports`] is empty (see [`Capture::no_traffic`]).
pub fn open_capture(path: &Path, port: Option<u16>) -> Result<Capture, CaptureError> {
    if let Some(port) = port {
        let (read, stats) = read_capture_with_stats(path, port)?;
        return Ok(Capture {
            read,
            stats,
            ports: vec![port],
            found: Vec::new(),
        });
    }
    let mut demux = Demux::survey();
    let error = read::read_path(path, &mut demux)?;
    let survey = demux.into_survey();
    let found = detect::server_ports(&survey.records);
    let ports: Vec<u16> = found.iter().map(|e| e.port).collect();
    let (read, stats) = survey.select(&ports).finish(error);
    Ok(Capture {
        read,
        stats,
        ports,
        found,
    })
}

/// Whether `path` is read as a stream ([`stream_capture`]): `-` (standard input), or a
/// path that exists and is no regular file (a pipe, a FIFO, `/dev/stdin` on a pipe).
pub fn is_stream(path: &Path) -> bool {
    path == Path::new("-") || std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The name errors give standard input.
const STDIN_NAME: &str = "standard input";

/// Opens `path` for [`stream_capture`] (`-` is standard input); returns it and the name
/// errors give it.
///
/// # Errors
/// A [`CaptureError`] at offset 0 when it cannot be opened.
pub fn open_stream(path: &Path) -> Result<(Box<dyn std::io::Read>, PathBuf), CaptureError> {
    if path == Path::new("-") {
        return Ok((Box::new(std::io::stdin()), PathBuf::from(STDIN_NAME)));
    }
    let file = std::fs::File::open(path).map_err(|e| CaptureError {
        file: path.to_path_buf(),
        offset: 0,
        message: format!("cannot open: {e}"),
    })?;
    Ok((Box::new(file), path.to_path_buf()))
}
