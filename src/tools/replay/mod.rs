//! `rendezvous replay`: sends the project's packets of a capture (pcap or pcapng, as
//! tcpdump, tshark and Wireshark write them) to a server again, and counts what comes back.
//! For an engineer reproducing a problem from a capture (docs/PROTOCOL.md §10).
//!
//! What it does:
//! - reads the capture with [`crate::tools::capture::read_capture`] (UDP datagrams and reassembled
//!   TCP client streams of one port);
//! - puts every client-to-server UDP datagram, every TCP connection start and every TCP
//!   chunk a client wrote on one timeline, by capture time ([`plan()`]), and plays it with the
//!   original pacing scaled by `--speed`, or as fast as possible (`--fast`);
//! - sends each original client address's datagrams from its own local UDP socket (an
//!   ephemeral port of the target's family; at most [`MAX_UDP_SOCKETS`], then shared round
//!   robin), so the clients of a capture stay distinct at the server;
//! - replays each TCP client stream on a fresh connection, chunk by chunk;
//! - reads every reply and counts them: UDP by type, errors by status, cookie challenges;
//!   TCP answers by kind and status frames by code ([`Tracker`] follows each connection's
//!   commands and reads the server's answers with the wire's answer codec,
//!   [`crate::wire::tcp::answer::AnswerReader`]);
//! - prints a `key=value` summary ([`Tally::summary`]) on stdout.
//!
//! # Layout
//! - [`plan`](mod@plan): the timeline and its pacing. [`tally`]: the counters and the summary.
//! - [`tracker`]: following one TCP connection's commands and answers.
//! - `replayer`: the sockets and the poll loop. `limits`: how many sockets may be open.
//!
//! It never changes a packet: a registration's cookie and timestamp are the capture's, so a
//! server only accepts them with `serve --accept-replayed` (no freshness window, no
//! address check); without it the summary shows the cookie challenges and 409s, as
//! expected.
//!
//! Invariants: the timeline is sent in capture order (a datagram the kernel cannot take
//! now holds everything after it); at most [`MAX_UDP_SOCKETS`] UDP sockets and
//! [`MAX_TCP_OPEN`] TCP connections are open at once (fewer when the file descriptor limit
//! is low); the replay ends once everything is sent, every connection is finished, and no
//! reply has come for `--wait-ms`.

mod limits;
pub mod plan;
mod replayer;
pub mod tally;
pub mod tracker;

pub use plan::{plan, Action, Pacing, Step};
pub use tally::{CaptureInfo, Tally, TcpCounts};
pub use tracker::Tracker;

use crate::tools::capture::{open_capture, CaptureError, CaptureRead, NoTraffic};
use limits::{raise_fd_limit, Limits};
use replayer::Replayer;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Instant;

/// Most local UDP sockets, one per original client address; beyond that, addresses share
/// them round robin (and the summary says `reused=true`).
pub const MAX_UDP_SOCKETS: usize = 4096;
/// Most TCP connections open at once; a flow whose start comes while all are busy waits
/// for one to finish (its chunks queue meanwhile).
pub const MAX_TCP_OPEN: usize = 512;
/// A capture with more packets than this shows a progress bar (when
/// [`ReplayOptions::progress`] is set).
pub const PROGRESS_MIN_PACKETS: u64 = 1000;

/// What `rendezvous replay` reads, where it sends it and how (docs/PROTOCOL.md §10).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// The capture: pcap or pcapng.
    pub capture: PathBuf,
    /// The server to replay to, ADDR:PORT (UDP and TCP; a host name is resolved once).
    pub target: String,
    /// The server port in the capture: only UDP datagrams and TCP connections to or from
    /// it are replayed. `None`: every port that carries the protocol, found by the
    /// structure of its traffic (docs/PROTOCOL.md §10).
    pub port: Option<u16>,
    /// How fast the timeline is played.
    pub pacing: Pacing,
    /// No notes on stderr (errors and the summary still print).
    pub quiet: bool,
    /// A progress bar on stderr for captures of more than [`PROGRESS_MIN_PACKETS`]
    /// packets (the caller decides whether stderr is a terminal).
    pub progress: bool,
    /// After the last packet, replies are read until none has come for this many
    /// milliseconds; a TCP connection whose answers do not complete is closed after being
    /// idle this long.
    pub wait_ms: u64,
}

/// Why `rendezvous replay` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The target is neither `ADDR:PORT` nor a `HOST:PORT` that resolves.
    #[error("--target {target}: not ADDR:PORT, and cannot resolve it")]
    Resolve {
        /// The target as given.
        target: String,
        /// Why it did not resolve.
        #[source]
        source: io::Error,
    },
    /// The target resolves to no address.
    #[error("--target {0}: resolves to no address")]
    NoAddress(String),
    /// The capture could not be read at all: nothing was sent.
    #[error(transparent)]
    Capture(CaptureError),
    /// No port was given, and none in the capture carries the protocol: nothing was sent.
    #[error(transparent)]
    NoTraffic(NoTraffic),
    /// The capture is cut or corrupt part-way: what came before was replayed and the
    /// summary written.
    #[error("{0} (everything before that point was replayed)")]
    Cut(CaptureError),
    /// A socket or the poller failed (`what` says which).
    #[error("{what}")]
    Io {
        /// What could not be done.
        what: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The summary could not be written.
    #[error("cannot write the summary")]
    Output(#[source] io::Error),
}

impl ReplayError {
    /// A closure wrapping an I/O error with what could not be done.
    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> ReplayError {
        let what = what.into();
        move |source| ReplayError::Io { what, source }
    }
}

/// Runs `rendezvous replay`: reads the capture, replays it to the target and writes the
/// summary to `out`; notes (missing TCP bytes, shared sockets) go to `notes` unless
/// [`ReplayOptions::quiet`].
///
/// # Errors
/// A bad target; a file that is not a capture (or cannot be read at all), or one where no
/// port carries the protocol (when none was given), before anything is sent; sockets that
/// cannot be made; [`ReplayError::Cut`] after the summary when the capture is cut or
/// corrupt part-way.
pub fn run(
    options: &ReplayOptions,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), ReplayError> {
    let target = resolve(&options.target)?;
    let capture = open_capture(&options.capture, options.port).map_err(ReplayError::Capture)?;
    if let Some(none) = capture.no_traffic(&options.capture) {
        return Err(ReplayError::NoTraffic(none));
    }
    for e in capture.found.iter().filter(|_| !options.quiet) {
        let _ = writeln!(
            notes,
            "replay: port {} carries the protocol ({})",
            e.port,
            e.describe()
        );
    }
    let read = capture.read;
    let gaps: u64 = read.flows.iter().map(|f| f.gaps).sum();
    if gaps > 0 && !options.quiet {
        let _ = writeln!(
            notes,
            "note: {gaps} bytes of TCP data are missing from the capture (lost, or cut \
             by the snapshot length); the client streams are replayed as reassembled"
        );
    }
    let started = Instant::now();
    let replayer = play(options, &read, target)?;
    if replayer.tally.udp.reused && !options.quiet {
        let _ = writeln!(
            notes,
            "note: the capture has more than {} client addresses: their datagrams shared \
             the sockets round robin (replies are counted all the same)",
            replayer.udp_limit()
        );
    }
    let info = CaptureInfo {
        packets: read.packets,
        skipped: read.skipped,
        cut: read.error.is_some(),
        tcp_gaps: gaps,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let summary = replayer.tally.summary(&info);
    summary
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush())
        .map_err(ReplayError::Output)?;
    match read.error {
        Some(e) => Err(ReplayError::Cut(e)),
        None => Ok(()),
    }
}

/// Plays the capture's timeline to `target` (with a progress bar when asked for and the
/// capture is long); returns the replayer with its counts.
fn play(
    options: &ReplayOptions,
    read: &CaptureRead,
    target: SocketAddr,
) -> Result<Replayer, ReplayError> {
    let steps = plan(read);
    let limits = Limits::from_fd_limit(raise_fd_limit());
    let mut replayer = Replayer::new(read, target, limits, options.wait_ms)?;
    let show_bar = options.progress && read.packets > PROGRESS_MIN_PACKETS;
    let bar = show_bar.then(|| progress_bar(steps.len()));
    replayer.play(read, &steps, options.pacing, bar.as_ref())?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(replayer)
}

/// A progress bar on stderr over `steps` timeline steps.
fn progress_bar(steps: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(steps as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "replay {bar:40} {pos}/{len} steps, {elapsed_precise} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// `ADDR:PORT`, or `HOST:PORT` resolved once (the first address).
fn resolve(target: &str) -> Result<SocketAddr, ReplayError> {
    if let Ok(a) = target.parse::<SocketAddr>() {
        return Ok(a);
    }
    target
        .to_socket_addrs()
        .map_err(|source| ReplayError::Resolve {
            target: target.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| ReplayError::NoAddress(target.to_string()))
}
