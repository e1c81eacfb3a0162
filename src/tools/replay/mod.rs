//! `rendezvous replay`: sends the project's packets of a capture (pcap or pcapng, as
//! tcpdump, tshark and Wireshark write them) to a server again, and counts what comes back.
//! For an engineer reproducing a problem from a capture (docs/PROTOCOL.md §10).
//!
//! What it does:
//! - reads the capture with [`crate::tools::capture::read_capture`] (UDP datagrams and reassembled
//!   TCP client streams of one port);
//! - puts every client-to-server UDP datagram, every TCP connection start and every TCP
//!   chunk a client wrote on one timeline, by capture time ([`plan`]), and plays it with the
//!   original pacing scaled by `--speed`, or as fast as possible (`--fast`);
//! - sends each original client address's datagrams from its own local UDP socket (an
//!   ephemeral port of the target's family; at most [`MAX_UDP_SOCKETS`], then shared round
//!   robin), so the clients of a capture stay distinct at the server;
//! - replays each TCP client stream on a fresh connection, chunk by chunk;
//! - reads every reply and counts them: UDP by type, errors by status, cookie challenges;
//!   TCP answers by kind and status frames by code ([`Tracker`] follows each connection's
//!   commands to know what the server owes);
//! - prints a `key=value` summary ([`Tally::summary`]) on stdout.
//!
//! # Layout
//! - [`plan`]: the timeline and its pacing. [`tally`]: the counters and the summary.
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

use crate::tools::capture::read_capture;
use anyhow::Context;
use limits::{raise_fd_limit, Limits};
use replayer::Replayer;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
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
    /// it are replayed.
    pub port: u16,
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

/// Runs `rendezvous replay`: reads the capture, replays it to `--target` and prints the
/// summary on stdout. Exit status 0, or 1 when the capture was cut (what was readable is
/// replayed, the capture error goes to stderr).
///
/// # Errors
/// A file that is not a capture (or cannot be read at all), a bad `--target` or
/// `--speed`, sockets that cannot be made.
pub fn run(args: &ReplayOptions) -> anyhow::Result<ExitCode> {
    let pacing = args.pacing;
    let target = resolve(&args.target)?;
    let read = read_capture(&args.capture, args.port).map_err(|e| anyhow::anyhow!("{e}"))?;
    let gaps: u64 = read.flows.iter().map(|f| f.gaps).sum();
    if gaps > 0 && !args.quiet {
        eprintln!(
            "note: {gaps} bytes of TCP data are missing from the capture (lost, or cut \
             by the snapshot length); the client streams are replayed as reassembled"
        );
    }
    let steps = plan(&read);
    let limits = Limits::from_fd_limit(raise_fd_limit());
    let show_bar = args.progress && read.packets > PROGRESS_MIN_PACKETS;
    let mut replayer = Replayer::new(&read, target, limits, args.wait_ms)?;
    let bar = show_bar.then(|| progress_bar(steps.len()));
    let started = Instant::now();
    replayer.play(&read, &steps, pacing, bar.as_ref())?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if replayer.tally.udp.reused && !args.quiet {
        eprintln!(
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
    let mut out = io::stdout().lock();
    for line in replayer.tally.summary(&info) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    match &read.error {
        Some(e) => {
            eprintln!("error: {e} (everything before that point was replayed)");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
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
fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = target.parse::<SocketAddr>() {
        return Ok(a);
    }
    target
        .to_socket_addrs()
        .with_context(|| format!("--target {target}: not ADDR:PORT, and cannot resolve it"))?
        .next()
        .with_context(|| format!("--target {target}: resolves to no address"))
}
