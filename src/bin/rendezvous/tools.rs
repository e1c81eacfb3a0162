//! The tools' commands (feature `tools`; docs/PROTOCOL.md §10): `decode`, `replay` and
//! `bench`, their flags, and how the flags become the library's options.

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use rendezvous::tools::bench::{self, BenchOptions, Load, RegisterPool, StreamOptions, Workload};
use rendezvous::tools::decode::{self, DecodeOptions};
use rendezvous::tools::replay::{self, Pacing, ReplayOptions};
use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

// `rendezvous decode`.
#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// The capture: a pcap or pcapng file (tcpdump -w, tshark -w, dumpcap, Wireshark);
    /// `-` is standard input. Standard input or a pipe is decoded as it is read, each line
    /// written as soon as its packet is (`tcpdump -U -w - | rendezvous decode -`).
    capture: PathBuf,
    /// The server's port: UDP datagrams from or to it, and TCP connections to it, are
    /// decoded; everything else is skipped and counted [default: every port whose traffic
    /// is this protocol's, found by its structure (from a stream: by its first such
    /// traffic)]
    #[arg(long)]
    port: Option<u16>,
    /// One JSON object per line (keys ts, ts_us, proto, src, dst, type, type_num and the
    /// fields) instead of text.
    #[arg(long)]
    json: bool,
}

// `rendezvous replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The capture: pcap or pcapng (tcpdump, tshark, Wireshark; Ethernet, Linux cooked
    /// v1/v2, raw IP, loopback).
    capture: PathBuf,
    /// The server to replay to, ADDR:PORT (UDP and TCP; a host name is resolved once).
    #[arg(long, value_name = "ADDR:PORT")]
    target: String,
    /// The server port in the capture: only UDP datagrams and TCP connections to or from
    /// it are replayed [default: every port whose traffic is this protocol's, found by its
    /// structure]
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Pacing: the capture's own timing, scaled by this factor (2.0 = twice as fast).
    #[arg(long, value_name = "F", default_value_t = 1.0, conflicts_with = "fast")]
    speed: f64,
    /// Send everything as fast as possible (capture order kept; no pacing).
    #[arg(long)]
    fast: bool,
    /// No progress bar and no notes on stderr (errors and the summary still print).
    #[arg(long)]
    quiet: bool,
    /// After the last packet, keep reading replies until none has come for this many
    /// milliseconds; a TCP connection whose answers do not complete is closed after being
    /// idle this long.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    wait_ms: u64,
}

// `rendezvous bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// The server, HOST:PORT (UDP; TCP on the same port for `contacts`).
    #[arg(long)]
    target: String,
    /// What to send.
    #[arg(long, value_enum)]
    workload: WorkloadArg,
    #[command(flatten)]
    load: LoadArgs,
    /// Print one JSON object instead of the `key=value` line.
    #[arg(long)]
    json: bool,
    /// Also write the run's latency percentile curve to FILE.svg (x: percentile on a log
    /// scale of 1/(1-p); y: microseconds; p50, p99, p99.9 marked). Not for askforupdate
    /// and listall, which measure no latencies.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// contacts: a Barrier after every this many Updates.
    #[arg(long, default_value_t = 100)]
    barrier_every: usize,
    /// askforupdate, listall: contacts loaded into the server first, through a server-role
    /// connection (the server needs --allow-peer 127.0.0.1/32 --plain-peers); 0 loads
    /// nothing and streams what the server holds.
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u32,
    /// askforupdate, listall: rounds of (server answer, plain sender); medians reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// register: identities per client, used round robin (each fingerprint's timestamps
    /// must increase, so the pool bounds the rate: about identities x clients x
    /// (2 x timestamp-spread + duration) registrations per run).
    #[arg(long, default_value_t = 32)]
    identities: usize,
    /// register: timestamps range over now +- this many seconds; keep it under the
    /// server's `--freshness` (60 s by default).
    #[arg(long, default_value_t = 50)]
    timestamp_spread: u64,
    /// A request without an answer after this many milliseconds counts as lost.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// The server's process id, when it runs on this host: adds its CPU share and the rate
    /// per CPU-second of the server to the report.
    #[arg(long)]
    pid: Option<u32>,
    /// Send one datagram per system call step instead of UDP GSO messages (keepalive and
    /// lookup use GSO when the kernel allows: many equal-size datagrams per pass down the
    /// stack, so the bench can outrun a server on one core).
    #[arg(long)]
    no_gso: bool,
    /// The target is the baseline `loadgen sink` (answers registrations with a fake OK and
    /// lookups with a placeholder): match answers in order instead of by target.
    #[arg(long)]
    sink: bool,
    /// contacts: run against a server not on loopback. The contacts written (up to
    /// --clients x 1000, under new identities) stay in that server and its peers: the
    /// protocol cannot delete them.
    #[arg(long)]
    allow_remote: bool,
}

// How much load `bench` makes.
#[derive(Debug, Clone, Args)]
struct LoadArgs {
    /// Seconds of load (fractions allowed). Late answers are collected for at most
    /// `--timeout-ms` more.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Simulated clients: UDP sockets, each with its own identity and source port (TCP
    /// connections for `contacts`).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Requests in flight per socket in the closed loop (lookup, register); batches of
    /// Updates + Barrier in flight per connection (contacts).
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Pacing: at most this many requests per second in all (Updates for `contacts`);
    /// 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Send at `--rate` without waiting for answers (lookup, register); keepalive is always
    /// open loop, contacts always closed loop.
    #[arg(long)]
    open_loop: bool,
}

// The workloads, as `--workload` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    /// Keepalives (type 0), open loop; the server's handling rate is measured with a final
    /// lookup per socket.
    Keepalive,
    /// Lookups (type 5) of the other bench clients, closed loop.
    Lookup,
    /// Fresh signed registrations (type 2), closed loop.
    Register,
    /// Contact Updates with Barriers on TCP connections (client role).
    Contacts,
    /// The whole contact list streamed with AskForUpdate (server role), each round beside
    /// a plain TCP sender of the same bytes in 8 KiB writes.
    Askforupdate,
    /// The bench identity's contacts streamed with ListAll (client role), each round
    /// beside a plain TCP sender of the same bytes in 8 KiB writes.
    Listall,
}

impl From<WorkloadArg> for Workload {
    fn from(w: WorkloadArg) -> Self {
        match w {
            WorkloadArg::Keepalive => Workload::Keepalive,
            WorkloadArg::Lookup => Workload::Lookup,
            WorkloadArg::Register => Workload::Register,
            WorkloadArg::Contacts => Workload::Contacts,
            WorkloadArg::Askforupdate => Workload::AskForUpdate,
            WorkloadArg::Listall => Workload::ListAll,
        }
    }
}

/// `rendezvous decode`.
pub(crate) fn decode(a: DecodeArgs) -> Result<ExitCode> {
    let options = DecodeOptions {
        capture: a.capture,
        port: a.port,
        json: a.json,
    };
    decode::run(&options, &mut io::stdout().lock(), &mut io::stderr())?;
    Ok(ExitCode::SUCCESS)
}

/// `rendezvous replay`.
pub(crate) fn replay(a: ReplayArgs) -> Result<ExitCode> {
    let pacing = if a.fast {
        Pacing::Fast
    } else {
        Pacing::speed(a.speed)
            .ok_or_else(|| anyhow!("--speed must be a number above 0, not {}", a.speed))?
    };
    let options = ReplayOptions {
        capture: a.capture,
        target: a.target,
        port: a.port,
        pacing,
        quiet: a.quiet,
        progress: !a.quiet && io::stderr().is_terminal(),
        wait_ms: a.wait_ms,
    };
    replay::run(&options, &mut io::stdout().lock(), &mut io::stderr())?;
    Ok(ExitCode::SUCCESS)
}

/// `rendezvous bench`: prints the report on stdout (one line, or one JSON object).
pub(crate) fn bench(a: BenchArgs) -> Result<ExitCode> {
    if let Some(p) = &a.plot {
        bench::plot::check_path(p)?;
        if matches!(a.workload, WorkloadArg::Askforupdate | WorkloadArg::Listall) {
            return Err(bench::plot::PlotError::Empty.into());
        }
    }
    let options = BenchOptions {
        target: a.target,
        workload: a.workload.into(),
        load: Load {
            duration: a.load.duration,
            clients: a.load.clients,
            in_flight: a.load.in_flight,
            rate: a.load.rate,
            open_loop: a.load.open_loop,
        },
        register: RegisterPool {
            identities: a.identities,
            timestamp_spread: a.timestamp_spread,
        },
        barrier_every: a.barrier_every,
        stream: StreamOptions {
            contacts: a.contacts,
            rounds: a.rounds,
        },
        timeout_ms: a.timeout_ms,
        pid: a.pid,
        gso: !a.no_gso,
        sink: a.sink,
        allow_remote: a.allow_remote,
    };
    let report = bench::measure(&options, &mut io::stderr())?;
    if a.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.line());
    }
    if let Some(p) = &a.plot {
        let h = report.latency().ok_or(bench::plot::PlotError::Empty)?;
        bench::plot::write_svg(p, h, &bench::plot::title(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}
