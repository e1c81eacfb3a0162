//! `rendezvous replay`: sends the project's packets of a capture (pcap or pcapng, as
//! tcpdump, tshark and Wireshark write them) to a server again, and counts what comes back.
//! Source: issue 5; BRIEF.md ("who uses it": an engineer who replays captures to reproduce a
//! problem).
//!
//! What it does:
//! - reads the capture with [`crate::capture::read_capture`] (UDP datagrams and reassembled
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

use crate::capture::{read_capture, CaptureRead};
use crate::wire::tcp::{
    command_len, Role, StatusFrame, CLIENT_RECORD_LEN, CMD_ASK_FOR_UPDATE, CMD_AUTH_CHALLENGE,
    CMD_AUTH_PROOF, CMD_BARRIER, CMD_CURSOR_QUERY, CMD_DIR_RECORD, CMD_DIR_REQUEST, CMD_HEARTBEAT,
    CMD_JOURNAL_SINCE, CMD_JOURNAL_UPDATE, CMD_LIST_ALL, CMD_NODE_LIST, CMD_NODE_LIST_HASH,
    CMD_STATUS, CMD_STATUS_REQUEST, CMD_UPDATE, CMD_UPDATE_CLOCK, HELLO_LEN, JOURNAL_UPDATE_LEN,
    NONCE_LEN, SERVER_RECORD_LEN,
};
use crate::wire::udp::{canonical_addr, ErrorReply};
use crate::wire::{PacketType, Root};
use anyhow::{bail, Context};
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, IsTerminal, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Most local UDP sockets, one per original client address; beyond that, addresses share
/// them round robin (and the summary says `reused=true`).
pub const MAX_UDP_SOCKETS: usize = 4096;
/// Most TCP connections open at once; a flow whose start comes while all are busy waits
/// for one to finish (its chunks queue meanwhile).
pub const MAX_TCP_OPEN: usize = 512;
/// A capture with more packets than this shows a progress bar (on a terminal, without
/// `--quiet`).
pub const PROGRESS_MIN_PACKETS: u64 = 1000;
/// Timeline steps dispatched per turn of the loop before replies are read again.
const STEP_BUDGET: usize = 256;
/// Token offset of TCP flows (UDP sockets use the tokens below it).
const TCP_TOKEN_BASE: usize = 1 << 24;

/// Arguments of `rendezvous replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The capture: pcap or pcapng (tcpdump, tshark, Wireshark; Ethernet, Linux cooked
    /// v1/v2, raw IP, loopback).
    pub capture: PathBuf,
    /// The server to replay to, ADDR:PORT (UDP and TCP; a host name is resolved once).
    #[arg(long, value_name = "ADDR:PORT")]
    pub target: String,
    /// The server port in the capture: only UDP datagrams and TCP connections to or from
    /// it are replayed.
    #[arg(long, value_name = "N", default_value_t = 4747)]
    pub port: u16,
    /// Pacing: the capture's own timing, scaled by this factor (2.0 = twice as fast).
    #[arg(long, value_name = "F", default_value_t = 1.0, conflicts_with = "fast")]
    pub speed: f64,
    /// Send everything as fast as possible (capture order kept; no pacing).
    #[arg(long)]
    pub fast: bool,
    /// No progress bar and no notes on stderr (errors and the summary still print).
    #[arg(long)]
    pub quiet: bool,
    /// After the last packet, keep reading replies until none has come for this many
    /// milliseconds; a TCP connection whose answers do not complete is closed after being
    /// idle this long.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub wait_ms: u64,
}

/// Runs `rendezvous replay`: reads the capture, replays it to `--target` and prints the
/// summary on stdout. Exit status 0, or 1 when the capture was cut (what was readable is
/// replayed, the capture error goes to stderr).
///
/// # Errors
/// A file that is not a capture (or cannot be read at all), a bad `--target` or
/// `--speed`, sockets that cannot be made.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let pacing = if args.fast {
        Pacing::Fast
    } else if args.speed.is_finite() && args.speed > 0.0 {
        Pacing::Speed(args.speed)
    } else {
        bail!("--speed must be a number above 0, not {}", args.speed);
    };
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
    let show_bar = !args.quiet && io::stderr().is_terminal() && read.packets > PROGRESS_MIN_PACKETS;
    let mut replayer = Replayer::new(&read, target, limits, args.wait_ms)?;
    let bar = show_bar.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(steps.len() as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "replay {bar:40} {pos}/{len} steps, {elapsed_precise} {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let started = Instant::now();
    replayer.play(&read, &steps, pacing, bar.as_ref())?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if replayer.tally.reused_sockets && !args.quiet {
        eprintln!(
            "note: the capture has more than {} client addresses: their datagrams shared \
             the sockets round robin (replies are counted all the same)",
            replayer.limits.udp
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

// ---------------------------------------------------------------------------------------
// The timeline
// ---------------------------------------------------------------------------------------

/// How the timeline is played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// As fast as possible, in capture order.
    Fast,
    /// The capture's own gaps divided by this factor (> 0).
    Speed(f64),
}

impl Pacing {
    /// When the step captured at `ts_us` is due, counted from the start of the replay;
    /// `t0_us` is the capture time of the first step (µs since the epoch).
    pub fn due(self, t0_us: u64, ts_us: u64) -> Duration {
        match self {
            Pacing::Fast => Duration::ZERO,
            Pacing::Speed(f) => {
                let secs = ts_us.saturating_sub(t0_us) as f64 / 1e6 / f;
                Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
            }
        }
    }
}

/// One thing to do on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send UDP datagram `i` of [`CaptureRead::datagrams`].
    Udp(usize),
    /// Open the connection of TCP flow `i` of [`CaptureRead::flows`].
    Connect(usize),
    /// Write bytes `start..end` of flow `flow`'s client data.
    Chunk {
        /// Index in [`CaptureRead::flows`].
        flow: usize,
        /// First byte, offset in the flow's client data.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
}

/// A timeline step: an action and its capture time (µs since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Capture time, µs since the epoch.
    pub ts_us: u64,
    /// What to do.
    pub action: Action,
}

/// The timeline of a capture: the client-to-server UDP datagrams, each TCP flow's start and
/// its client chunks (empty ones left out), ordered by capture time; steps with one time
/// keep the order of the capture (datagrams first, then flows, a flow's start before its
/// chunks).
pub fn plan(read: &CaptureRead) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, d) in read.datagrams.iter().enumerate() {
        if d.to_server {
            steps.push(Step {
                ts_us: d.ts_us,
                action: Action::Udp(i),
            });
        }
    }
    for (i, f) in read.flows.iter().enumerate() {
        steps.push(Step {
            ts_us: f.first_ts_us,
            action: Action::Connect(i),
        });
        let mut chunks = f.client_chunks.clone();
        chunks.sort_by_key(|&(_, off)| off);
        let len = f.client_data.len();
        for (j, &(ts, off)) in chunks.iter().enumerate() {
            let start = off.min(len);
            let end = chunks.get(j + 1).map_or(len, |&(_, next)| next.min(len));
            if end > start {
                steps.push(Step {
                    // A chunk never goes before its connection's start.
                    ts_us: ts.max(f.first_ts_us),
                    action: Action::Chunk {
                        flow: i,
                        start,
                        end,
                    },
                });
            }
        }
        // Bytes before the first chunk's offset (a reader that gives none): at the start.
        let first = chunks.first().map_or(len, |&(_, off)| off.min(len));
        if first > 0 {
            steps.push(Step {
                ts_us: f.first_ts_us,
                action: Action::Chunk {
                    flow: i,
                    start: 0,
                    end: first,
                },
            });
        }
    }
    // Stable: equal times keep the order pushed.
    steps.sort_by_key(|s| s.ts_us);
    steps
}

// ---------------------------------------------------------------------------------------
// Counting
// ---------------------------------------------------------------------------------------

/// UDP error statuses always shown in the summary's `errors` line (others as they come).
const UDP_STATUSES: [u16; 8] = [400, 401, 403, 404, 409, 413, 429, 503];
/// TCP status frame codes always shown in the `tcp_status` line.
const TCP_STATUSES: [u16; 9] = [200, 400, 401, 403, 404, 408, 409, 413, 503];

/// Counters of one replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// UDP datagrams sent, by Root type byte; `None` for datagrams that are no Root packet.
    pub udp_sent: BTreeMap<Option<u8>, u64>,
    /// UDP datagrams the kernel refused (not counted as sent).
    pub udp_send_errors: u64,
    /// UDP datagrams received from the target, by Root type byte (`None`: unreadable).
    pub udp_received: BTreeMap<Option<u8>, u64>,
    /// Type-7 errors received, by status.
    pub udp_errors: BTreeMap<u16, u64>,
    /// UDP datagrams from addresses other than the target (ignored otherwise).
    pub udp_foreign: u64,
    /// Local UDP sockets made.
    pub udp_sockets: usize,
    /// True when client addresses had to share sockets.
    pub reused_sockets: bool,
    /// TCP flows in the capture (each replayed on its own connection).
    pub tcp_flows: u64,
    /// Connections that were established.
    pub tcp_connected: u64,
    /// Connections that could not be made.
    pub tcp_failed: u64,
    /// Connections the server closed (or reset) before we were done.
    pub tcp_closed_by_server: u64,
    /// TCP bytes written.
    pub tcp_bytes_sent: u64,
    /// TCP bytes of client data not written (the connection failed or was closed first).
    pub tcp_bytes_unsent: u64,
    /// TCP bytes received.
    pub tcp_bytes_received: u64,
    /// What the TCP connections sent and got back, summed over all flows.
    pub tcp: TcpCounts,
}

/// Counts of what one TCP connection (or all of them) sent and got back, as far as a
/// [`Tracker`] could follow it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TcpCounts {
    /// Hellos sent.
    pub hellos: u64,
    /// Client role: Update commands sent.
    pub updates: u64,
    /// Client role: ListAll commands sent.
    pub list_alls: u64,
    /// Barrier commands sent (either role).
    pub barriers: u64,
    /// Status requests (command 6) sent (either role).
    pub status_requests: u64,
    /// Other server-role commands sent (Update, HeartBeat, AskForUpdate, journal,
    /// directory and node-list frames, ...).
    pub server_commands: u64,
    /// Bytes sent that could not be framed (not the project's protocol, or cut).
    pub sent_unparsed: u64,
    /// Status frames received, by code.
    pub status: BTreeMap<u16, u64>,
    /// Contact records received (in ListAll and AskForUpdate answers).
    pub records: u64,
    /// Status texts (answers to command 6) received.
    pub status_texts: u64,
    /// Other answer frames received (UpdateClock, cursors, node-list, directory and
    /// journal frames, nonces).
    pub frames: u64,
    /// Bytes received that could not be followed.
    pub received_unparsed: u64,
}

impl TcpCounts {
    fn add(&mut self, o: &TcpCounts) {
        self.hellos += o.hellos;
        self.updates += o.updates;
        self.list_alls += o.list_alls;
        self.barriers += o.barriers;
        self.status_requests += o.status_requests;
        self.server_commands += o.server_commands;
        self.sent_unparsed += o.sent_unparsed;
        for (k, v) in &o.status {
            *self.status.entry(*k).or_default() += v;
        }
        self.records += o.records;
        self.status_texts += o.status_texts;
        self.frames += o.frames;
        self.received_unparsed += o.received_unparsed;
    }
}

/// What a summary says about the capture itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CaptureInfo {
    /// Packets read from the capture (all, not only the project's).
    pub packets: u64,
    /// Packets skipped (other protocols or ports, unreadable headers).
    pub skipped: u64,
    /// True when the capture ended with an error (cut or corrupt).
    pub cut: bool,
    /// Bytes missing from the reassembled TCP streams (both directions).
    pub tcp_gaps: u64,
    /// Wall time of the replay, ms.
    pub elapsed_ms: u64,
}

fn get<K: Ord>(m: &BTreeMap<K, u64>, k: &K) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// `400=N 401=N ...` for the `always` codes, then any other code seen.
fn codes(m: &BTreeMap<u16, u64>, always: &[u16]) -> String {
    let mut parts: Vec<String> = always
        .iter()
        .map(|c| format!("{c}={}", get(m, c)))
        .collect();
    for (c, n) in m {
        if !always.contains(c) {
            parts.push(format!("{c}={n}"));
        }
    }
    parts.join(" ")
}

impl Tally {
    fn count_sent_udp(&mut self, payload: &[u8]) {
        let ty = Root::parse(payload).ok().map(|r| u8::from(r.packet_type));
        *self.udp_sent.entry(ty).or_default() += 1;
    }

    /// Counts a datagram received from the target: by type, type-7 errors by status.
    pub fn count_received_udp(&mut self, data: &[u8]) {
        let root = Root::parse(data).ok();
        let ty = root.map(|r| u8::from(r.packet_type));
        *self.udp_received.entry(ty).or_default() += 1;
        if let Some(r) = root {
            if r.packet_type == PacketType::Error {
                if let Ok(e) = ErrorReply::parse(r.payload) {
                    *self.udp_errors.entry(e.status).or_default() += 1;
                }
            }
        }
    }

    /// The summary, one line each, `NAME key=value ...` (the format is documented in
    /// `docs/replay-section.md`):
    ///
    /// ```text
    /// replay packets=N skipped=N cut=false tcp_gaps=N elapsed_ms=N
    /// sent udp=N tcp_flows=N tcp_bytes=N
    /// received udp=N tcp_bytes=N
    /// sent_udp keepalive=N register=N relay=N lookup=N fetch=N other=N
    /// received_udp ok=N punch=N relay=N answer=N error=N cookie=N other=N
    /// errors 400=N 401=N 403=N 404=N 409=N 413=N 429=N 503=N
    /// cookie challenges=N
    /// sent_tcp hello=N update=N list_all=N barrier=N status=N server=N unparsed_bytes=N
    /// received_tcp status=N records=N status_text=N frames=N unparsed_bytes=N
    /// tcp_status 200=N 400=N 401=N 403=N 404=N 408=N 409=N 413=N 503=N
    /// sockets udp=N reused=false tcp_connected=N tcp_failed=N tcp_closed_by_server=N tcp_unsent_bytes=N udp_send_errors=N udp_foreign=N
    /// ```
    pub fn summary(&self, info: &CaptureInfo) -> Vec<String> {
        let sent = |t: u8| get(&self.udp_sent, &Some(t));
        let recv = |t: u8| get(&self.udp_received, &Some(t));
        let sent_udp: u64 = self.udp_sent.values().sum();
        let received_udp: u64 = self.udp_received.values().sum();
        let sent_other: u64 = self
            .udp_sent
            .iter()
            .filter(|(k, _)| !matches!(k, Some(0 | 2 | 4 | 5 | 8)))
            .map(|(_, v)| v)
            .sum();
        let recv_other: u64 = self
            .udp_received
            .iter()
            .filter(|(k, _)| !matches!(k, Some(1 | 3 | 4 | 6 | 7 | 9)))
            .map(|(_, v)| v)
            .sum();
        let t = &self.tcp;
        let status_frames: u64 = t.status.values().sum();
        vec![
            format!(
                "replay packets={} skipped={} cut={} tcp_gaps={} elapsed_ms={}",
                info.packets, info.skipped, info.cut, info.tcp_gaps, info.elapsed_ms
            ),
            format!(
                "sent udp={sent_udp} tcp_flows={} tcp_bytes={}",
                self.tcp_flows, self.tcp_bytes_sent
            ),
            format!(
                "received udp={received_udp} tcp_bytes={}",
                self.tcp_bytes_received
            ),
            format!(
                "sent_udp keepalive={} register={} relay={} lookup={} fetch={} other={sent_other}",
                sent(0),
                sent(2),
                sent(4),
                sent(5),
                sent(8)
            ),
            format!(
                "received_udp ok={} punch={} relay={} answer={} error={} cookie={} other={recv_other}",
                recv(1),
                recv(3),
                recv(4),
                recv(6),
                recv(7),
                recv(9)
            ),
            format!("errors {}", codes(&self.udp_errors, &UDP_STATUSES)),
            format!("cookie challenges={}", recv(9)),
            format!(
                "sent_tcp hello={} update={} list_all={} barrier={} status={} server={} unparsed_bytes={}",
                t.hellos,
                t.updates,
                t.list_alls,
                t.barriers,
                t.status_requests,
                t.server_commands,
                t.sent_unparsed
            ),
            format!(
                "received_tcp status={status_frames} records={} status_text={} frames={} unparsed_bytes={}",
                t.records, t.status_texts, t.frames, t.received_unparsed
            ),
            format!("tcp_status {}", codes(&t.status, &TCP_STATUSES)),
            format!(
                "sockets udp={} reused={} tcp_connected={} tcp_failed={} tcp_closed_by_server={} \
                 tcp_unsent_bytes={} udp_send_errors={} udp_foreign={}",
                self.udp_sockets,
                self.reused_sockets,
                self.tcp_connected,
                self.tcp_failed,
                self.tcp_closed_by_server,
                self.tcp_bytes_unsent,
                self.udp_send_errors,
                self.udp_foreign
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// Following a TCP connection
// ---------------------------------------------------------------------------------------

/// What the accepting side owes for one command, in order (PROTOCOL.md §8.5, §8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// A status frame (Barrier, AuthProof).
    Status,
    /// `[count u32]`, then `count` records of this many bytes (ListAll, AskForUpdate).
    List(usize),
    /// `[06][len u32][text]` (Status request).
    Text,
    /// `[03][clock u32]` or nothing (HeartBeat).
    MaybeClock,
    /// One frame of fixed length starting with this byte (CursorQuery, AuthChallenge).
    Fixed(u8, usize),
    /// One node-list frame (NodeListHash -> hash, NodeList -> NodeListDiff).
    NodeFrame,
    /// DirRecord frames, then `[17][len u16 = 4][count u32]` (DirRequest).
    Directory,
    /// `[19][count u32]`, then `count` JournalUpdate frames (JournalSince).
    Journal,
}

/// Where the reader of answers is inside a multi-part answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inside {
    /// At the start of an answer.
    Start,
    /// In a list: this many records of this length still to come.
    List(u32, usize),
    /// In a directory answer, before its closing count frame.
    Directory,
    /// In a journal answer: this many JournalUpdate frames still to come.
    Journal(u32),
}

/// Follows one TCP connection of the replay: frames the opener's bytes (the hello, then
/// commands of its role, with [`command_len`]), notes what each command is owed, and frames
/// the server's bytes against that, counting status frames by code and the other answers
/// by kind. Anything it cannot follow is counted as unparsed bytes and ends the following
/// in that direction.
#[derive(Debug)]
pub struct Tracker {
    role: Option<Role>,
    sent: Vec<u8>,
    sent_lost: bool,
    owed: VecDeque<Owed>,
    recv: Vec<u8>,
    recv_lost: bool,
    inside: Inside,
    /// What was counted so far.
    pub counts: TcpCounts,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// A tracker for a new connection (nothing sent yet).
    pub fn new() -> Self {
        Tracker {
            role: None,
            sent: Vec::new(),
            sent_lost: false,
            owed: VecDeque::new(),
            recv: Vec::new(),
            recv_lost: false,
            inside: Inside::Start,
            counts: TcpCounts::default(),
        }
    }

    /// True when every answer owed so far has arrived whole and every byte sent was a
    /// whole frame (a HeartBeat's optional UpdateClock is not waited for). False once
    /// either direction could not be followed.
    pub fn complete(&self) -> bool {
        !self.sent_lost
            && !self.recv_lost
            && self.sent.is_empty()
            && self.recv.is_empty()
            && self.inside == Inside::Start
            && self.owed.iter().all(|o| *o == Owed::MaybeClock)
    }

    /// Feeds bytes the opener wrote.
    pub fn sent(&mut self, bytes: &[u8]) {
        if self.sent_lost {
            self.counts.sent_unparsed += bytes.len() as u64;
            return;
        }
        self.sent.extend_from_slice(bytes);
        let mut pos = 0;
        let lost = loop {
            let rest = &self.sent[pos..];
            let Some(role) = self.role else {
                if rest.len() < HELLO_LEN {
                    break false;
                }
                match Role::try_from(rest[0]) {
                    Ok(r) => {
                        self.role = Some(r);
                        self.counts.hellos += 1;
                        pos += HELLO_LEN;
                        continue;
                    }
                    Err(_) => break true,
                }
            };
            match command_len(role, rest) {
                Ok(Some(n)) => {
                    let cmd = rest[0];
                    self.note_command(role, cmd);
                    pos += n;
                }
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        self.sent.drain(..pos);
        if lost {
            self.lose_sent();
        }
    }

    fn lose_sent(&mut self) {
        self.sent_lost = true;
        self.counts.sent_unparsed += self.sent.len() as u64;
        self.sent.clear();
    }

    fn note_command(&mut self, role: Role, cmd: u8) {
        let c = &mut self.counts;
        let owed = match (role, cmd) {
            (_, CMD_BARRIER) => {
                c.barriers += 1;
                Some(Owed::Status)
            }
            (_, CMD_STATUS_REQUEST) => {
                c.status_requests += 1;
                Some(Owed::Text)
            }
            (Role::Client, CMD_UPDATE) => {
                c.updates += 1;
                None
            }
            (Role::Client, CMD_LIST_ALL) => {
                c.list_alls += 1;
                Some(Owed::List(CLIENT_RECORD_LEN))
            }
            (Role::Client, _) => None, // command_len knows no other
            (Role::Server, cmd) => {
                c.server_commands += 1;
                match cmd {
                    CMD_HEARTBEAT => Some(Owed::MaybeClock),
                    CMD_ASK_FOR_UPDATE => Some(Owed::List(SERVER_RECORD_LEN)),
                    CMD_CURSOR_QUERY => Some(Owed::Fixed(CMD_CURSOR_QUERY, 9)),
                    CMD_AUTH_CHALLENGE => Some(Owed::Fixed(CMD_AUTH_CHALLENGE, 1 + NONCE_LEN)),
                    CMD_AUTH_PROOF => Some(Owed::Status),
                    CMD_NODE_LIST_HASH | CMD_NODE_LIST => Some(Owed::NodeFrame),
                    CMD_DIR_REQUEST => Some(Owed::Directory),
                    CMD_JOURNAL_SINCE => Some(Owed::Journal),
                    _ => None,
                }
            }
        };
        if let Some(o) = owed {
            self.owed.push_back(o);
        }
    }

    /// Feeds bytes the server sent.
    pub fn received(&mut self, bytes: &[u8]) {
        if self.recv_lost {
            self.counts.received_unparsed += bytes.len() as u64;
            return;
        }
        self.recv.extend_from_slice(bytes);
        let mut pos = 0;
        let lost = loop {
            match self.next_answer(pos) {
                Some(0) => break true,
                Some(n) => pos += n,
                None => break false,
            }
        };
        self.recv.drain(..pos);
        if lost {
            self.lose_recv();
        }
    }

    fn lose_recv(&mut self) {
        self.recv_lost = true;
        self.counts.received_unparsed += self.recv.len() as u64;
        self.recv.clear();
    }

    /// Counts the next whole piece of the answer stream, at `pos` in the buffer: `Some(len)`
    /// to consume, `None` when more bytes are needed, `Some(0)` when the stream cannot be
    /// followed.
    fn next_answer(&mut self, pos: usize) -> Option<usize> {
        let buf = &self.recv[pos..];
        let &first = buf.first()?;
        let need = |n: usize| (buf.len() >= n).then_some(n);
        let u32_at = |i: usize| {
            buf.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match self.inside {
            Inside::List(left, rec) => {
                if first == CMD_STATUS {
                    return self.status_frame(pos); // a store failure abandons the answer
                }
                let n = need(rec)?;
                self.counts.records += 1;
                self.inside = if left > 1 {
                    Inside::List(left - 1, rec)
                } else {
                    Inside::Start
                };
                return Some(n);
            }
            Inside::Journal(left) => {
                if first == CMD_STATUS {
                    return self.status_frame(pos); // a store failure abandons the answer
                }
                if first != CMD_JOURNAL_UPDATE {
                    return Some(0);
                }
                let n = need(1 + JOURNAL_UPDATE_LEN)?;
                self.counts.frames += 1;
                self.inside = if left > 1 {
                    Inside::Journal(left - 1)
                } else {
                    Inside::Start
                };
                return Some(n);
            }
            Inside::Directory => {
                return match first {
                    CMD_STATUS => self.status_frame(pos),
                    CMD_DIR_RECORD | CMD_DIR_REQUEST => {
                        let b = buf.get(1..3)?;
                        let n = need(3 + usize::from(u16::from_be_bytes([b[0], b[1]])))?;
                        self.counts.frames += 1;
                        if first == CMD_DIR_REQUEST {
                            self.inside = Inside::Start;
                        }
                        Some(n)
                    }
                    _ => Some(0),
                };
            }
            Inside::Start => {}
        }
        // A HeartBeat answered with nothing: skip it unless an UpdateClock is here.
        while self.owed.front() == Some(&Owed::MaybeClock) && first != CMD_UPDATE_CLOCK {
            self.owed.pop_front();
        }
        if first == CMD_STATUS {
            return self.status_frame(pos);
        }
        let Some(&owed) = self.owed.front() else {
            return Some(0); // bytes nobody asked for
        };
        let n = match owed {
            Owed::Status => 0, // a status frame starts with 7
            Owed::List(rec) => {
                let count = u32_at(0)?;
                self.inside = if count > 0 {
                    Inside::List(count, rec)
                } else {
                    Inside::Start
                };
                4
            }
            Owed::Text if first == CMD_STATUS_REQUEST => {
                let len = usize::try_from(u32_at(1)?).unwrap_or(usize::MAX);
                let n = need(5usize.saturating_add(len))?;
                self.counts.status_texts += 1;
                n
            }
            Owed::MaybeClock => {
                let n = need(5)?;
                self.counts.frames += 1;
                n
            }
            Owed::Fixed(cmd, len) if first == cmd => {
                let n = need(len)?;
                self.counts.frames += 1;
                n
            }
            Owed::NodeFrame => match crate::wire::tcp::nodelist::frame_len(buf) {
                Ok(Some(n)) => {
                    self.counts.frames += 1;
                    n
                }
                Ok(None) => return None,
                Err(_) => 0,
            },
            Owed::Directory => {
                self.owed.pop_front();
                self.inside = Inside::Directory;
                return self.next_answer(pos);
            }
            Owed::Journal if first == CMD_JOURNAL_SINCE => {
                let count = u32_at(1)?;
                self.counts.frames += 1;
                self.inside = if count > 0 {
                    Inside::Journal(count)
                } else {
                    Inside::Start
                };
                5
            }
            Owed::Text | Owed::Fixed(..) | Owed::Journal => 0,
        };
        if n > 0 {
            self.owed.pop_front();
        }
        Some(n)
    }

    /// A status frame at the start of the buffer: counted by code. It answers a Barrier or
    /// AuthProof owed; any other status is a refusal, after which the server closes and
    /// owes nothing more.
    fn status_frame(&mut self, pos: usize) -> Option<usize> {
        let buf = &self.recv[pos..];
        let n = match StatusFrame::frame_len(buf) {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(_) => return Some(0),
        };
        let Ok(f) = StatusFrame::parse(&buf[..n]) else {
            return Some(0);
        };
        *self.counts.status.entry(f.status).or_default() += 1;
        if f.status == 200 && self.owed.front() == Some(&Owed::Status) {
            self.owed.pop_front();
        } else if f.status != 200 {
            self.owed.clear();
        }
        self.inside = Inside::Start;
        Some(n)
    }
}

// ---------------------------------------------------------------------------------------
// The I/O
// ---------------------------------------------------------------------------------------

/// Bounds on open sockets, from the file descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    udp: usize,
    tcp: usize,
}

impl Limits {
    /// Leaves 64 descriptors for everything else; UDP gets at most half of the rest.
    fn from_fd_limit(nofile: u64) -> Self {
        let avail = usize::try_from(nofile.saturating_sub(64))
            .unwrap_or(usize::MAX)
            .max(2);
        let udp = MAX_UDP_SOCKETS.min(avail / 2).max(1);
        let tcp = MAX_TCP_OPEN.min(avail - udp).max(1);
        Limits { udp, tcp }
    }
}

/// Raises the soft limit on open files to the hard limit (at most 65 536) and returns the
/// soft limit in force.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    let want = lim.rlim_max.min(65_536);
    if lim.rlim_cur < want {
        let new = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            lim.rlim_cur = want;
        }
    }
    lim.rlim_cur
}

/// The state of one TCP flow's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowState {
    /// Its start is not due yet.
    NotYet,
    /// Due, waiting for a free connection slot.
    Queued,
    /// Connecting.
    Connecting,
    /// Established.
    Open,
    /// Finished (closed by us or the server, or failed).
    Done,
}

/// One TCP flow being replayed.
#[derive(Debug)]
struct Flow {
    state: FlowState,
    stream: Option<TcpStream>,
    /// Client bytes due and not yet written.
    out: VecDeque<u8>,
    /// Chunks not yet due.
    chunks_left: usize,
    tracker: Tracker,
    last_activity: Instant,
}

/// The replay's sockets and counters.
struct Replayer {
    target: SocketAddr,
    limits: Limits,
    wait: Duration,
    poll: Poll,
    udp: Vec<UdpSocket>,
    by_src: HashMap<SocketAddr, usize>,
    next_shared: usize,
    /// Datagrams the kernel could not take yet: (socket, datagram index).
    backlog: VecDeque<(usize, usize)>,
    flows: Vec<Flow>,
    /// Flows due and waiting for a connection slot.
    queued: VecDeque<usize>,
    /// Flows connecting or open (at most `limits.tcp`).
    active: Vec<usize>,
    /// Flows finished.
    done: usize,
    last_udp: Instant,
    buf: Vec<u8>,
    tally: Tally,
}

impl Replayer {
    fn new(
        read: &CaptureRead,
        target: SocketAddr,
        limits: Limits,
        wait_ms: u64,
    ) -> anyhow::Result<Self> {
        let now = Instant::now();
        let flows = read
            .flows
            .iter()
            .map(|_| Flow {
                state: FlowState::NotYet,
                stream: None,
                out: VecDeque::new(),
                chunks_left: 0,
                tracker: Tracker::new(),
                last_activity: now,
            })
            .collect();
        Ok(Replayer {
            target,
            limits,
            wait: Duration::from_millis(wait_ms),
            poll: Poll::new().context("cannot create the poller")?,
            udp: Vec::new(),
            by_src: HashMap::new(),
            next_shared: 0,
            backlog: VecDeque::new(),
            flows,
            queued: VecDeque::new(),
            active: Vec::new(),
            done: 0,
            last_udp: now,
            buf: vec![0; 64 * 1024],
            tally: Tally {
                tcp_flows: read.flows.len() as u64,
                ..Tally::default()
            },
        })
    }

    /// Plays `steps` with `pacing`, then reads replies until the end condition (module
    /// header).
    fn play(
        &mut self,
        read: &CaptureRead,
        steps: &[Step],
        pacing: Pacing,
        bar: Option<&indicatif::ProgressBar>,
    ) -> anyhow::Result<()> {
        for s in steps {
            if let Action::Chunk { flow, .. } = s.action {
                self.flows[flow].chunks_left += 1;
            }
        }
        let t0 = steps.first().map_or(0, |s| s.ts_us);
        let start = Instant::now();
        let mut next = 0;
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.flush_backlog(read)?;
            let mut budget = STEP_BUDGET;
            while next < steps.len() && self.backlog.is_empty() && budget > 0 {
                let s = steps[next];
                if start + pacing.due(t0, s.ts_us) > now {
                    break;
                }
                self.dispatch(read, s.action)?;
                next += 1;
                budget -= 1;
                if let Some(b) = bar {
                    b.inc(1);
                }
            }
            self.start_queued();
            for i in self.active.clone() {
                self.pump(i);
            }
            let now = Instant::now();
            for i in self.active.clone() {
                self.maybe_finish(i, now);
            }
            let all_sent = next >= steps.len() && self.backlog.is_empty();
            let flows_done = self.done == self.flows.len();
            let quiet_for = now.saturating_duration_since(self.last_udp);
            if all_sent && flows_done && quiet_for >= self.wait {
                return Ok(());
            }
            // Sleep until the next step, a flow's idle deadline, or the end of the wait.
            let mut timeout = if !self.backlog.is_empty() || budget == 0 {
                Duration::from_millis(1)
            } else if next < steps.len() {
                (start + pacing.due(t0, steps[next].ts_us)).saturating_duration_since(now)
            } else {
                self.wait.saturating_sub(quiet_for)
            };
            for &i in &self.active {
                let idle = now.saturating_duration_since(self.flows[i].last_activity);
                timeout = timeout.min(self.wait.saturating_sub(idle));
            }
            let timeout = timeout.clamp(Duration::from_millis(1), Duration::from_millis(500));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("poll failed"),
            }
            for ev in events.iter() {
                let t = ev.token().0;
                if t < TCP_TOKEN_BASE {
                    if ev.is_readable() {
                        self.read_udp(t);
                    }
                } else {
                    self.on_tcp_event(t - TCP_TOKEN_BASE, ev.is_readable(), ev.is_writable());
                }
            }
        }
    }

    fn dispatch(&mut self, read: &CaptureRead, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Udp(i) => {
                let sock = self.socket_for(read.datagrams[i].src)?;
                self.backlog.push_back((sock, i));
                self.flush_backlog(read)?;
            }
            Action::Connect(i) => {
                self.flows[i].state = FlowState::Queued;
                self.queued.push_back(i);
            }
            Action::Chunk { flow, start, end } => {
                let f = &mut self.flows[flow];
                f.chunks_left = f.chunks_left.saturating_sub(1);
                let data = &read.flows[flow].client_data[start..end];
                if f.state == FlowState::Done {
                    self.tally.tcp_bytes_unsent += data.len() as u64;
                } else {
                    f.out.extend(data);
                }
            }
        }
        Ok(())
    }

    /// The socket for original client address `src`: its own, a new one, or (beyond the
    /// limit) a shared one, round robin.
    fn socket_for(&mut self, src: SocketAddr) -> anyhow::Result<usize> {
        if let Some(&i) = self.by_src.get(&src) {
            return Ok(i);
        }
        let i = if self.udp.len() < self.limits.udp {
            let local: SocketAddr = if self.target.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let mut s = UdpSocket::bind(local)
                .with_context(|| format!("cannot bind a UDP socket on {local}"))?;
            let i = self.udp.len();
            self.poll
                .registry()
                .register(&mut s, Token(i), Interest::READABLE)
                .context("cannot register a UDP socket")?;
            self.udp.push(s);
            self.tally.udp_sockets = self.udp.len();
            i
        } else {
            self.tally.reused_sockets = true;
            let i = self.next_shared % self.udp.len();
            self.next_shared += 1;
            i
        };
        self.by_src.insert(src, i);
        Ok(i)
    }

    /// Sends the datagrams waiting, in order, until the kernel says "not now".
    fn flush_backlog(&mut self, read: &CaptureRead) -> anyhow::Result<()> {
        while let Some(&(sock, i)) = self.backlog.front() {
            let payload = &read.datagrams[i].payload;
            match self.udp[sock].send_to(payload, self.target) {
                Ok(_) => {
                    self.tally.count_sent_udp(payload);
                    self.last_udp = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.tally.udp_send_errors += 1,
            }
            self.backlog.pop_front();
        }
        Ok(())
    }

    fn read_udp(&mut self, sock: usize) {
        let target = canonical_addr(self.target);
        let mut errors = 0;
        loop {
            match self.udp[sock].recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    if canonical_addr(from) == target {
                        let data = &self.buf[..n];
                        self.tally.count_received_udp(data);
                        self.last_udp = Instant::now();
                    } else {
                        self.tally.udp_foreign += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Interrupted, or an error the kernel queued (ICMP): read on, so that no
                // datagram is left behind an edge-triggered wake-up.
                Err(_) => {
                    errors += 1;
                    if errors > 64 {
                        return;
                    }
                }
            }
        }
    }

    /// Opens the connections of due flows while slots are free.
    fn start_queued(&mut self) {
        while self.active.len() < self.limits.tcp {
            let Some(i) = self.queued.pop_front() else {
                return;
            };
            let f = &mut self.flows[i];
            f.last_activity = Instant::now();
            match TcpStream::connect(self.target) {
                Ok(mut s) => {
                    let reg = self.poll.registry().register(
                        &mut s,
                        Token(TCP_TOKEN_BASE + i),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    if reg.is_err() {
                        self.fail_flow(i);
                        continue;
                    }
                    f.stream = Some(s);
                    f.state = FlowState::Connecting;
                    self.active.push(i);
                }
                Err(_) => self.fail_flow(i),
            }
        }
    }

    fn fail_flow(&mut self, i: usize) {
        self.tally.tcp_failed += 1;
        self.close_flow(i);
    }

    fn on_tcp_event(&mut self, i: usize, readable: bool, writable: bool) {
        let Some(f) = self.flows.get_mut(i) else {
            return;
        };
        if f.state == FlowState::Connecting && (writable || readable) {
            let Some(s) = f.stream.as_ref() else { return };
            match (s.take_error(), s.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    f.state = FlowState::Open;
                    f.last_activity = Instant::now();
                    self.tally.tcp_connected += 1;
                }
                (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => return,
                _ => return self.fail_flow(i),
            }
        }
        if readable {
            self.read_flow(i);
        }
        if writable {
            self.pump(i);
        }
    }

    /// Reads what the server sent on flow `i` until "not now"; the server closing ends it.
    fn read_flow(&mut self, i: usize) {
        loop {
            let f = &mut self.flows[i];
            let Some(s) = f.stream.as_mut() else { return };
            if f.state != FlowState::Open {
                return;
            }
            match s.read(&mut self.buf) {
                Ok(0) => {
                    self.tally.tcp_closed_by_server += 1;
                    return self.close_flow(i);
                }
                Ok(n) => {
                    f.tracker.received(&self.buf[..n]);
                    f.last_activity = Instant::now();
                    self.tally.tcp_bytes_received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.tally.tcp_closed_by_server += 1;
                    return self.close_flow(i);
                }
            }
        }
    }

    /// Writes flow `i`'s due bytes until "not now".
    fn pump(&mut self, i: usize) {
        loop {
            let f = &mut self.flows[i];
            if f.state != FlowState::Open || f.out.is_empty() {
                return;
            }
            let Some(s) = f.stream.as_mut() else { return };
            let (a, _) = f.out.as_slices();
            match s.write(a) {
                Ok(0) => return,
                Ok(n) => {
                    let written: Vec<u8> = f.out.drain(..n).collect();
                    f.tracker.sent(&written);
                    f.last_activity = Instant::now();
                    self.tally.tcp_bytes_sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.tally.tcp_closed_by_server += 1;
                    return self.close_flow(i);
                }
            }
        }
    }

    /// Closes flow `i` once all its bytes are written and its answers are complete (or
    /// nothing has moved on it for `--wait-ms`); a connection that never completes is
    /// given up after the same idle time.
    fn maybe_finish(&mut self, i: usize, now: Instant) {
        let f = &self.flows[i];
        let idle = now.saturating_duration_since(f.last_activity) >= self.wait;
        let finished = match f.state {
            FlowState::Open => {
                f.chunks_left == 0 && f.out.is_empty() && (f.tracker.complete() || idle)
            }
            FlowState::Connecting => {
                if idle {
                    return self.fail_flow(i);
                }
                false
            }
            _ => false,
        };
        if finished {
            self.close_flow(i);
        }
    }

    fn close_flow(&mut self, i: usize) {
        let f = &mut self.flows[i];
        if let Some(mut s) = f.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
            self.active.retain(|&a| a != i);
        }
        if f.state != FlowState::Done {
            f.state = FlowState::Done;
            self.done += 1;
            self.tally.tcp_bytes_unsent += f.out.len() as u64;
            f.out.clear();
            self.tally.tcp.add(&f.tracker.counts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{TcpFlow, UdpDatagram};
    use crate::wire::tcp::{ClientCommand, ContactFields, Hello};

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn datagram(ts_us: u64, src: &str, to_server: bool) -> UdpDatagram {
        let (src, dst) = if to_server {
            (addr(src), addr("127.0.0.1:4747"))
        } else {
            (addr("127.0.0.1:4747"), addr(src))
        };
        UdpDatagram {
            ts_us,
            src,
            dst,
            payload: vec![2, 0, 0, 0],
            to_server,
        }
    }

    fn read_of(datagrams: Vec<UdpDatagram>, flows: Vec<TcpFlow>) -> CaptureRead {
        CaptureRead {
            datagrams,
            flows,
            packets: 0,
            skipped: 0,
            error: None,
        }
    }

    fn flow(first_ts_us: u64, data: &[u8], chunks: Vec<(u64, usize)>) -> TcpFlow {
        TcpFlow {
            client: addr("127.0.0.1:50000"),
            server: addr("127.0.0.1:4747"),
            first_ts_us,
            client_data: data.to_vec(),
            client_chunks: chunks,
            server_data: Vec::new(),
            server_chunks: Vec::new(),
            gaps: 0,
        }
    }

    #[test]
    fn plan_merges_udp_and_tcp_by_time_and_skips_server_datagrams() {
        let read = read_of(
            vec![
                datagram(100, "127.0.0.1:1000", true),
                datagram(150, "127.0.0.1:1000", false),
                datagram(300, "127.0.0.1:1001", true),
            ],
            vec![flow(120, b"abcdef", vec![(200, 0), (400, 4)])],
        );
        let steps = plan(&read);
        let got: Vec<(u64, Action)> = steps.iter().map(|s| (s.ts_us, s.action)).collect();
        assert_eq!(
            got,
            vec![
                (100, Action::Udp(0)),
                (120, Action::Connect(0)),
                (
                    200,
                    Action::Chunk {
                        flow: 0,
                        start: 0,
                        end: 4
                    }
                ),
                (300, Action::Udp(2)),
                (
                    400,
                    Action::Chunk {
                        flow: 0,
                        start: 4,
                        end: 6
                    }
                ),
            ]
        );
    }

    #[test]
    fn plan_keeps_capture_order_on_equal_times_and_covers_every_byte() {
        let read = read_of(
            vec![
                datagram(5, "127.0.0.1:1000", true),
                datagram(5, "127.0.0.1:1001", true),
            ],
            // Chunks out of order, one empty, data before the first offset.
            vec![flow(5, b"0123456789", vec![(9, 6), (7, 2), (8, 6)])],
        );
        let steps = plan(&read);
        assert_eq!(steps[0].action, Action::Udp(0));
        assert_eq!(steps[1].action, Action::Udp(1));
        assert_eq!(steps[2].action, Action::Connect(0));
        let mut covered = Vec::new();
        for s in &steps {
            if let Action::Chunk { start, end, .. } = s.action {
                covered.push((start, end));
            }
        }
        covered.sort_unstable();
        assert_eq!(covered, vec![(0, 2), (2, 6), (6, 10)]);
        assert!(steps.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
    }

    #[test]
    fn pacing_scales_the_capture_gaps() {
        assert_eq!(Pacing::Fast.due(1_000, 9_000_000), Duration::ZERO);
        assert_eq!(
            Pacing::Speed(1.0).due(1_000_000, 3_500_000),
            Duration::from_millis(2_500)
        );
        assert_eq!(
            Pacing::Speed(2.0).due(1_000_000, 3_000_000),
            Duration::from_secs(1)
        );
        assert_eq!(Pacing::Speed(1.0).due(5, 1), Duration::ZERO);
    }

    fn emitted(
        len: usize,
        emit: impl FnOnce(&mut [u8]) -> Result<usize, crate::wire::WireError>,
    ) -> Vec<u8> {
        let mut buf = vec![0; len];
        let n = emit(&mut buf).expect("emit");
        buf.truncate(n);
        buf
    }

    fn hello() -> Vec<u8> {
        let h = Hello {
            role: Role::Client,
            name: "cli",
        };
        emitted(h.buffer_len(), |b| h.emit(b))
    }

    fn update(user: &str) -> Vec<u8> {
        let c = ClientCommand::Update(ContactFields {
            username: user,
            contact: "bob",
            phone: "555",
        });
        emitted(c.buffer_len(), |b| c.emit(b))
    }

    fn status_frame(code: u16, request: u8, detail: &str) -> Vec<u8> {
        let f = StatusFrame {
            status: code,
            request,
            detail,
        };
        emitted(f.buffer_len(), |b| f.emit(b))
    }

    #[test]
    fn tracker_follows_updates_barriers_and_lists_in_pieces() {
        let mut t = Tracker::new();
        let mut sent = hello();
        sent.extend(update("alice"));
        sent.push(CMD_BARRIER);
        sent.push(CMD_LIST_ALL);
        sent.push(CMD_STATUS_REQUEST);
        for piece in sent.chunks(100) {
            t.sent(piece);
        }
        assert_eq!(t.counts.hellos, 1);
        assert_eq!(t.counts.updates, 1);
        assert_eq!(t.counts.barriers, 1);
        assert_eq!(t.counts.list_alls, 1);
        assert_eq!(t.counts.status_requests, 1);
        assert!(!t.complete());
        let mut answer = status_frame(200, CMD_BARRIER, "durable");
        answer.extend(2u32.to_be_bytes());
        answer.extend(update("alice"));
        answer.extend(update("carol"));
        let text = b"name=x\nclock=3\n";
        answer.push(CMD_STATUS_REQUEST);
        answer.extend(u32::try_from(text.len()).expect("len").to_be_bytes());
        answer.extend(text);
        for b in &answer {
            assert!(!t.complete());
            t.received(std::slice::from_ref(b));
        }
        assert!(t.complete(), "{t:?}");
        assert_eq!(t.counts.status.get(&200), Some(&1));
        assert_eq!(t.counts.records, 2);
        assert_eq!(t.counts.status_texts, 1);
        assert_eq!(t.counts.received_unparsed, 0);
    }

    #[test]
    fn tracker_counts_a_refusal_and_owes_nothing_after_it() {
        let mut t = Tracker::new();
        t.sent(&hello());
        t.sent(&[CMD_LIST_ALL, CMD_BARRIER]);
        t.received(&status_frame(503, 0xFF, "store failure while streaming"));
        assert!(t.complete());
        assert_eq!(t.counts.status.get(&503), Some(&1));
        // A bad hello: 400 for request 0.
        let mut t = Tracker::new();
        let mut bad = hello();
        bad[0] = 9;
        t.sent(&bad);
        assert_eq!(t.counts.sent_unparsed, HELLO_LEN as u64);
        t.received(&status_frame(400, 0, "malformed hello"));
        assert_eq!(t.counts.status.get(&400), Some(&1));
        assert!(!t.complete(), "what was sent could not be followed");
    }

    #[test]
    fn tracker_handles_heartbeats_with_and_without_update_clock() {
        let mut t = Tracker::new();
        let mut h = hello();
        h[0] = 1; // server role
        t.sent(&h);
        t.sent(&[CMD_HEARTBEAT, 1, 0, 0, 0, 9, CMD_BARRIER]);
        t.sent(&[CMD_HEARTBEAT, 1, 0, 0, 0, 1, CMD_BARRIER]);
        assert_eq!(t.counts.server_commands, 2);
        t.received(&status_frame(200, CMD_BARRIER, "durable")); // took our clock
        t.received(&[CMD_UPDATE_CLOCK, 0, 0, 0, 9]);
        t.received(&status_frame(200, CMD_BARRIER, "durable"));
        assert!(t.complete(), "{t:?}");
        assert_eq!(t.counts.frames, 1);
        assert_eq!(t.counts.status.get(&200), Some(&2));
    }

    #[test]
    fn tracker_gives_up_on_bytes_nobody_asked_for() {
        let mut t = Tracker::new();
        t.sent(&hello());
        t.received(&[0x42, 1, 2, 3]);
        assert_eq!(t.counts.received_unparsed, 4);
        t.received(&[5]);
        assert_eq!(t.counts.received_unparsed, 5);
        assert!(!t.complete());
    }

    #[test]
    fn udp_replies_are_counted_by_type_and_status() {
        use crate::wire::udp::Payload;
        use crate::wire::RootHeader;
        let emit = |p: &Payload<'_>| {
            let mut body = vec![0; p.buffer_len()];
            let n = p.emit(&mut body).expect("emit");
            body.truncate(n);
            RootHeader {
                params: 1,
                shift_len: None,
                packet_type: p.packet_type(),
                signature: &[],
                timestamp: 0,
            }
            .to_vec(&body)
            .expect("root")
        };
        let mut t = Tally::default();
        t.count_received_udp(&emit(&Payload::Cookie([1; 16])));
        t.count_received_udp(&emit(&Payload::Error(ErrorReply {
            status: 409,
            request_type: 2,
            detail: "replayed packet",
        })));
        t.count_received_udp(&emit(&Payload::Error(ErrorReply {
            status: 418,
            request_type: 2,
            detail: "",
        })));
        t.count_received_udp(b"junk");
        t.count_sent_udp(&[2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let lines = t.summary(&CaptureInfo {
            packets: 7,
            cut: true,
            ..CaptureInfo::default()
        });
        let has = |l: &str| lines.iter().any(|x| x == l);
        assert!(
            has("replay packets=7 skipped=0 cut=true tcp_gaps=0 elapsed_ms=0"),
            "{lines:#?}"
        );
        assert!(has("sent udp=1 tcp_flows=0 tcp_bytes=0"), "{lines:#?}");
        assert!(has(
            "sent_udp keepalive=0 register=1 relay=0 lookup=0 fetch=0 other=0"
        ));
        assert!(has("received udp=4 tcp_bytes=0"));
        assert!(has(
            "received_udp ok=0 punch=0 relay=0 answer=0 error=2 cookie=1 other=1"
        ));
        assert!(has(
            "errors 400=0 401=0 403=0 404=0 409=1 413=0 429=0 503=0 418=1"
        ));
        assert!(has("cookie challenges=1"));
    }

    #[test]
    fn limits_follow_the_fd_limit() {
        assert_eq!(
            Limits::from_fd_limit(65_536),
            Limits {
                udp: MAX_UDP_SOCKETS,
                tcp: MAX_TCP_OPEN
            }
        );
        let small = Limits::from_fd_limit(1024);
        assert_eq!(small.udp, 480);
        assert_eq!(small.tcp, 480);
        assert!(Limits::from_fd_limit(0).udp >= 1);
    }
}
