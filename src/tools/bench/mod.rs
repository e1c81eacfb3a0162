//! `rendezvous bench`: a load generator for a running server (docs/PROTOCOL.md §10,
//! "Benchmarking"). It plays many clients at once, each with its own UDP socket (source
//! port) and its own freshly generated Ed25519 identity, registered the way the bundled
//! client does it (signed registration, cookie round trip), and reports one summary: what
//! was sent, what came back, the rate, latency percentiles from send to answer (monotonic
//! clock) and errors by status.
//!
//! Workloads (docs/PROTOCOL.md §3 for the packets):
//! - `keepalive`: open loop, keepalives only (they get no answer); ends with one lookup per
//!   socket, an in-order barrier (the server reads its one socket in order), so the rate of
//!   keepalives the server handled is measured, not guessed; kernel drops at the server's
//!   socket are read from `/proc/net/udp`.
//! - `lookup`: closed loop, `--in-flight` lookups per socket, each answer matched to its
//!   request by the target fingerprint it carries.
//! - `register`: closed loop of fresh signed registrations. Each socket does the cookie
//!   round trip once, then signs new registrations in the loop, round robin over a pool of
//!   identities with increasing timestamps (the server's per-fingerprint "newer than the
//!   last" rule).
//! - `contacts`: TCP client role: Updates with a Barrier every `--barrier-every` on
//!   `--clients` connections; the barrier's latency is the one reported.
//!
//! Every loop is bounded by `--duration` (plus at most `--timeout-ms` to collect late
//! answers) and stops by itself. Setup (identities, registrations) is not timed.
//!
//! # Layout
//! - this file: the options and [`measure`].
//! - [`report`]: the [`Report`] (one `key=value` line, or one JSON object).
//! - [`stats`]: the latency histogram, server CPU time and socket drops (Linux `/proc`).
//! - [`udp`]: the UDP workloads over many sockets, `sendmmsg`/`recvmmsg` batched.
//! - [`contacts`]: the TCP workload.

pub mod contacts;
pub mod report;
pub mod stats;
pub mod udp;

pub use report::{Report, Value};

use anyhow::{bail, Context};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What `rendezvous bench` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Keepalives (type 0), open loop; the server's handling rate is measured with a final
    /// lookup per socket.
    Keepalive,
    /// Lookups (type 5) of the other bench clients, closed loop.
    Lookup,
    /// Fresh signed registrations (type 2), closed loop.
    Register,
    /// Contact Updates with Barriers on TCP connections (client role).
    Contacts,
}

impl Workload {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Keepalive => "keepalive",
            Workload::Lookup => "lookup",
            Workload::Register => "register",
            Workload::Contacts => "contacts",
        }
    }
}

/// How much load, and how it is paced.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Seconds of load (fractions allowed). Late answers are collected for at most
    /// [`BenchOptions::timeout_ms`] more.
    pub duration: f64,
    /// Simulated clients: UDP sockets, each with its own identity and source port (TCP
    /// connections for `contacts`).
    pub clients: usize,
    /// Requests in flight per socket in the closed loop (lookup, register); batches of
    /// Updates + Barrier in flight per connection (contacts).
    pub in_flight: usize,
    /// Pacing: at most this many requests per second in all (Updates for `contacts`);
    /// 0 = as fast as possible.
    pub rate: u64,
    /// Send at `rate` without waiting for answers (lookup, register); keepalive is always
    /// open loop, contacts always closed loop.
    pub open_loop: bool,
}

/// The register workload's pool of identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterPool {
    /// Identities per client, used round robin (each fingerprint's timestamps must
    /// increase, so the pool bounds the rate: about identities x clients x
    /// (2 x timestamp_spread + duration) registrations per run).
    pub identities: usize,
    /// Timestamps range over now +- this many seconds; keep it under the server's
    /// freshness window (60 s by default).
    pub timestamp_spread: u64,
}

/// Everything `rendezvous bench` is told (docs/PROTOCOL.md §10, "Flags").
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// The server, HOST:PORT (UDP; TCP on the same port for `contacts`).
    pub target: String,
    /// What to send.
    pub workload: Workload,
    /// How much load.
    pub load: Load,
    /// register: the identities.
    pub register: RegisterPool,
    /// contacts: a Barrier after every this many Updates.
    pub barrier_every: usize,
    /// A request without an answer after this many milliseconds counts as lost.
    pub timeout_ms: u64,
    /// The server's process id, when it runs on this host: adds its CPU share and the rate
    /// per CPU-second of the server to the report.
    pub pid: Option<u32>,
    /// keepalive and lookup send UDP GSO messages when the kernel allows (many equal-size
    /// datagrams per pass down the stack, so the bench can outrun a server on one core).
    pub gso: bool,
    /// The target is the baseline `loadgen sink` (answers registrations with a fake OK and
    /// lookups with a placeholder): answers are matched in order instead of by target.
    pub sink: bool,
}

impl BenchOptions {
    /// Options with the documented defaults for `workload` against `target` (HOST:PORT).
    pub fn new(target: &str, workload: Workload) -> Self {
        BenchOptions {
            target: target.to_string(),
            workload,
            load: Load {
                duration: 5.0,
                clients: 64,
                in_flight: 8,
                rate: 0,
                open_loop: false,
            },
            register: RegisterPool {
                identities: 32,
                timestamp_spread: 50,
            },
            barrier_every: 100,
            timeout_ms: 1000,
            pid: None,
            gso: true,
            sink: false,
        }
    }

    /// The load's duration.
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.load.duration)
    }

    /// [`Self::timeout_ms`] as a `Duration`.
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn check(&self) -> anyhow::Result<()> {
        let l = &self.load;
        if !(l.duration > 0.0 && l.duration <= 86_400.0) {
            bail!("--duration must be between 0 and 86400 seconds");
        }
        if l.clients == 0 || l.clients > 100_000 {
            bail!("--clients must be between 1 and 100000");
        }
        if l.in_flight == 0 || l.in_flight > 65_536 {
            bail!("--in-flight must be between 1 and 65536");
        }
        if self.barrier_every == 0 || self.barrier_every > 1_000_000 {
            bail!("--barrier-every must be between 1 and 1000000");
        }
        if self.register.identities == 0 || self.register.identities > 100_000 {
            bail!("--identities must be between 1 and 100000");
        }
        if self.timeout_ms == 0 {
            bail!("--timeout-ms must be at least 1");
        }
        if l.open_loop && l.rate == 0 && self.workload != Workload::Keepalive {
            bail!("--open-loop needs a --rate (requests per second)");
        }
        Ok(())
    }
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --target {target} (HOST:PORT)"))?
        .next()
        .with_context(|| format!("--target {target} resolves to no address"))
}

/// Runs one benchmark and returns its report; setup progress goes to stderr.
///
/// # Errors
/// Bad options, an unresolvable target, socket errors, a server that does not register
/// the clients (refused, or no answer within a few seconds).
pub fn measure(args: &BenchOptions) -> anyhow::Result<Report> {
    args.check()?;
    let target = resolve(&args.target)?;
    match args.workload {
        Workload::Keepalive | Workload::Lookup | Workload::Register => udp::run(args, target),
        Workload::Contacts => contacts::run(args, target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let mut a = BenchOptions::new("127.0.0.1:1", Workload::Lookup);
        assert!(a.check().is_ok());
        a.load.open_loop = true;
        assert!(a.check().is_err());
        a.load.rate = 1000;
        assert!(a.check().is_ok());
        a.load.duration = 0.0;
        assert!(a.check().is_err());
    }
}
