//! `rendezvous bench`: a load generator for a running server. It plays many clients at
//! once, each with its own UDP socket (source port) and its own freshly generated Ed25519
//! identity, registered the way the bundled client does it (signed registration, cookie
//! round trip), and reports one summary: what was sent, what came back, the rate, latency
//! percentiles from send to answer (monotonic clock) and errors by status.
//!
//! Workloads (section 3 of `docs/PROTOCOL.md` for the packets):
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
//! - this file: the arguments, the [`Report`] (one `key=value` line, or one JSON object).
//! - [`stats`]: the latency histogram, server CPU time and socket drops (Linux `/proc`).
//! - [`udp`]: the UDP workloads over many sockets, `sendmmsg`/`recvmmsg` batched.
//! - [`contacts`]: the TCP workload.

pub mod contacts;
pub mod stats;
pub mod udp;

use anyhow::{bail, Context};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// What `rendezvous bench` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// Arguments of `rendezvous bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The server, HOST:PORT (UDP; TCP on the same port for `contacts`).
    #[arg(long)]
    pub target: String,
    /// What to send.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Seconds of load (fractions allowed). Late answers are collected for at most
    /// `--timeout-ms` more.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Simulated clients: UDP sockets, each with its own identity and source port (TCP
    /// connections for `contacts`).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Requests in flight per socket in the closed loop (lookup, register); batches of
    /// Updates + Barrier in flight per connection (contacts).
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Pacing: at most this many requests per second in all (Updates for `contacts`);
    /// 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Send at `--rate` without waiting for answers (lookup, register); keepalive is always
    /// open loop, contacts always closed loop.
    #[arg(long)]
    pub open_loop: bool,
    /// Print one JSON object instead of the `key=value` line.
    #[arg(long)]
    pub json: bool,
    /// contacts: a Barrier after every this many Updates.
    #[arg(long, default_value_t = 100)]
    pub barrier_every: usize,
    /// register: identities per client, used round robin (each fingerprint's timestamps
    /// must increase, so the pool bounds the rate: about identities x clients x
    /// (2 x timestamp-spread + duration) registrations per run).
    #[arg(long, default_value_t = 32)]
    pub identities: usize,
    /// register: timestamps range over now +- this many seconds; keep it under the
    /// server's `--freshness` (60 s by default).
    #[arg(long, default_value_t = 50)]
    pub timestamp_spread: u64,
    /// A request without an answer after this many milliseconds counts as lost.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// The server's process id, when it runs on this host: adds its CPU share and the rate
    /// per CPU-second of the server to the report.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Send one datagram per system call step instead of UDP GSO messages (keepalive and
    /// lookup use GSO when the kernel allows: many equal-size datagrams per pass down the
    /// stack, so the bench can outrun a server on one core).
    #[arg(long)]
    pub no_gso: bool,
    /// The target is the baseline `loadgen sink` (answers registrations with a fake OK and
    /// lookups with a placeholder): match answers in order instead of by target.
    #[arg(long)]
    pub sink: bool,
}

impl BenchArgs {
    /// Arguments with the defaults above for `workload` against `target` (HOST:PORT).
    pub fn new(target: &str, workload: Workload) -> Self {
        BenchArgs {
            target: target.to_string(),
            workload,
            duration: 5.0,
            clients: 64,
            in_flight: 8,
            rate: 0,
            open_loop: false,
            json: false,
            barrier_every: 100,
            identities: 32,
            timestamp_spread: 50,
            timeout_ms: 1000,
            pid: None,
            no_gso: false,
            sink: false,
        }
    }

    /// `--duration` as a `Duration`.
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    /// `--timeout-ms` as a `Duration`.
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn check(&self) -> anyhow::Result<()> {
        if !(self.duration > 0.0 && self.duration <= 86_400.0) {
            bail!("--duration must be between 0 and 86400 seconds");
        }
        if self.clients == 0 || self.clients > 100_000 {
            bail!("--clients must be between 1 and 100000");
        }
        if self.in_flight == 0 || self.in_flight > 65_536 {
            bail!("--in-flight must be between 1 and 65536");
        }
        if self.barrier_every == 0 || self.barrier_every > 1_000_000 {
            bail!("--barrier-every must be between 1 and 1000000");
        }
        if self.identities == 0 || self.identities > 100_000 {
            bail!("--identities must be between 1 and 100000");
        }
        if self.timeout_ms == 0 {
            bail!("--timeout-ms must be at least 1");
        }
        if self.open_loop && self.rate == 0 && self.workload != Workload::Keepalive {
            bail!("--open-loop needs a --rate (requests per second)");
        }
        Ok(())
    }
}

/// One value of a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A count.
    Int(u64),
    /// A measurement (rate, microseconds, percent), printed with one decimal.
    Num(f64),
    /// A word (no spaces).
    Text(String),
    /// Counts by key, e.g. errors by status: `409:3,429:12` (`none` when empty).
    Counts(Vec<(String, u64)>),
}

/// The result of a run: ordered `key=value` fields. The common ones, in this order:
/// `workload target clients in_flight open_loop rate_limit secs sent received rate_per_s
/// p50_us p90_us p99_us max_us errors errors_by_status lost`, then the workload's own
/// (docs/PROTOCOL.md §10, "Benchmarking"), then `server_cpu_pct` and `per_server_cpu_s` with
/// `--pid`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    fields: Vec<(&'static str, Value)>,
}

impl Report {
    /// Adds (or replaces) a count.
    pub fn int(&mut self, key: &'static str, v: u64) {
        self.set(key, Value::Int(v));
    }

    /// Adds (or replaces) a measurement.
    pub fn num(&mut self, key: &'static str, v: f64) {
        self.set(key, Value::Num(v));
    }

    /// Adds (or replaces) a word; spaces become `_`.
    pub fn text(&mut self, key: &'static str, v: &str) {
        self.set(key, Value::Text(v.replace(char::is_whitespace, "_")));
    }

    /// Adds (or replaces) counts by key.
    pub fn counts(&mut self, key: &'static str, v: Vec<(String, u64)>) {
        self.set(key, Value::Counts(v));
    }

    fn set(&mut self, key: &'static str, v: Value) {
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = v,
            None => self.fields.push((key, v)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// A count or measurement as a number (`None` for words, counts by key, or absent).
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Int(v) => Some(*v as f64),
            Value::Num(v) => Some(*v),
            _ => None,
        }
    }

    /// The summary as one line of space-separated `key=value` fields.
    pub fn line(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            match v {
                Value::Int(n) => out.push_str(&n.to_string()),
                Value::Num(x) => out.push_str(&format!("{x:.1}")),
                Value::Text(t) => out.push_str(t),
                Value::Counts(c) if c.is_empty() => out.push_str("none"),
                Value::Counts(c) => {
                    let parts: Vec<String> = c.iter().map(|(k, n)| format!("{k}:{n}")).collect();
                    out.push_str(&parts.join(","));
                }
            }
        }
        out
    }

    /// The summary as one JSON object with the same keys (counts by key as an object).
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.fields {
            let j = match v {
                Value::Int(n) => serde_json::Value::from(*n),
                Value::Num(x) => serde_json::Value::from((x * 10.0).round() / 10.0),
                Value::Text(t) => serde_json::Value::from(t.as_str()),
                Value::Counts(c) => serde_json::Value::Object(
                    c.iter()
                        .map(|(k, n)| (k.clone(), serde_json::Value::from(*n)))
                        .collect(),
                ),
            };
            m.insert((*k).to_string(), j);
        }
        serde_json::Value::Object(m)
    }
}

/// What every workload measured, before it becomes a [`Report`].
#[derive(Debug, Default)]
pub(crate) struct Common {
    /// Requests sent (keepalives, lookups, registrations, Updates).
    pub sent: u64,
    /// Answers matched to a request (for keepalive: keepalives the server handled).
    pub received: u64,
    /// Requests never answered within `--timeout-ms`.
    pub lost: u64,
    /// Errors by HTTP-like status.
    pub errors: std::collections::BTreeMap<u16, u64>,
    /// Latency from send to answer.
    pub hist: stats::Histogram,
    /// Seconds the rate is computed over.
    pub secs: f64,
}

impl Common {
    /// The common fields, in the documented order.
    pub(crate) fn report(&self, args: &BenchArgs, target: SocketAddr) -> Report {
        let mut r = Report::default();
        r.text("workload", args.workload.name());
        r.text("target", &target.to_string());
        r.int("clients", args.clients as u64);
        r.int("in_flight", args.in_flight as u64);
        let open = args.open_loop || args.workload == Workload::Keepalive;
        r.int("open_loop", u64::from(open));
        r.int("rate_limit", args.rate);
        r.num("secs", self.secs);
        r.int("sent", self.sent);
        r.int("received", self.received);
        r.num(
            "rate_per_s",
            if self.secs > 0.0 {
                self.received as f64 / self.secs
            } else {
                0.0
            },
        );
        r.num("p50_us", self.hist.quantile_us(0.50));
        r.num("p90_us", self.hist.quantile_us(0.90));
        r.num("p99_us", self.hist.quantile_us(0.99));
        r.num("max_us", self.hist.max_us());
        r.int("errors", self.errors.values().sum());
        r.counts(
            "errors_by_status",
            self.errors
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
        );
        r.int("lost", self.lost);
        r
    }
}

/// Adds `server_cpu_pct` (the server's CPU time over the run's seconds, percent of one core)
/// and `per_server_cpu_s` (`count` per CPU-second of the server) from two readings.
pub(crate) fn add_cpu(
    r: &mut Report,
    before: Option<f64>,
    after: Option<f64>,
    secs: f64,
    count: u64,
) {
    if let (Some(b), Some(a)) = (before, after) {
        let used = (a - b).max(0.0);
        r.num(
            "server_cpu_pct",
            if secs > 0.0 { used / secs * 100.0 } else { 0.0 },
        );
        r.num(
            "per_server_cpu_s",
            if used > 0.0 { count as f64 / used } else { 0.0 },
        );
    }
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --target {target} (HOST:PORT)"))?
        .next()
        .with_context(|| format!("--target {target} resolves to no address"))
}

/// Runs one benchmark and returns its report (what [`run`] prints).
///
/// # Errors
/// Bad arguments, an unresolvable target, socket errors, a server that does not register
/// the clients (refused, or no answer within a few seconds).
pub fn measure(args: &BenchArgs) -> anyhow::Result<Report> {
    args.check()?;
    let target = resolve(&args.target)?;
    match args.workload {
        Workload::Keepalive | Workload::Lookup | Workload::Register => udp::run(args, target),
        Workload::Contacts => contacts::run(args, target),
    }
}

/// Runs `rendezvous bench`: prints the report on stdout (one line, or one JSON object with
/// `--json`); setup progress goes to stderr.
///
/// # Errors
/// As [`measure`].
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let report = measure(&args)?;
    if args.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.line());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_and_json() {
        let mut r = Report::default();
        r.text("workload", "lookup");
        r.int("sent", 10);
        r.num("p50_us", 12.345);
        r.counts("errors_by_status", vec![]);
        r.counts("by", vec![("409".into(), 3), ("429".into(), 1)]);
        assert_eq!(
            r.line(),
            "workload=lookup sent=10 p50_us=12.3 errors_by_status=none by=409:3,429:1"
        );
        let j = r.json();
        assert_eq!(j["sent"], 10);
        assert_eq!(j["p50_us"], 12.3);
        assert_eq!(j["by"]["429"], 1);
        r.int("sent", 11);
        assert_eq!(r.number("sent"), Some(11.0));
    }

    #[test]
    fn arguments_are_checked() {
        let mut a = BenchArgs::new("127.0.0.1:1", Workload::Lookup);
        assert!(a.check().is_ok());
        a.open_loop = true;
        assert!(a.check().is_err());
        a.rate = 1000;
        assert!(a.check().is_ok());
        a.duration = 0.0;
        assert!(a.check().is_err());
    }
}
