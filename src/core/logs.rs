//! What the server's log lines say about clients and refusals, decided without I/O
//! (docs/OPERATIONS.md §6; docs/PROTOCOL.md §7, "Logs"):
//!
//! - [`ClientAddr`]: a client's address as a log line shows it. Whole (`IP:PORT`) only
//!   with `serve --log-addresses` ([`set_log_addresses`]); otherwise its network without
//!   the port: the /24 of an IPv4 address (`192.0.2.0/24`), the /48 of an IPv6 one
//!   (`2001:db8:1::/48`), enough to see which network floods the server (the rate limits
//!   work per /24, /64 and /48) and not who the client is. Peer servers' addresses are
//!   the operator's configuration and the node list's public locations, not client data:
//!   they are logged whole.
//! - [`RefusalLog`]: refusals and rate limiting summarised per interval on the core's
//!   clock (default [`RefusalLog::DEFAULT_EVERY_MS`]): one line per interval in which
//!   something was refused, with a count per reason taken from the counters the metrics
//!   show (docs/METRICS.md), never a line per packet.
//!
//! Formatting happens only when a line is written: a [`ClientAddr`] is a copy of the
//! address, and the `tracing` macros format it only for an enabled level.

use crate::core::udp::EmitStats;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether client addresses are logged whole: process-wide, like the log subscriber it
/// serves; set once at start by `serve --log-addresses`.
static LOG_ADDRESSES: AtomicBool = AtomicBool::new(false);

/// Logs client addresses whole (`on`) or as their network only (the default).
pub fn set_log_addresses(on: bool) {
    LOG_ADDRESSES.store(on, Ordering::Relaxed);
}

/// True when client addresses are logged whole (see [`set_log_addresses`]).
pub fn log_addresses() -> bool {
    LOG_ADDRESSES.load(Ordering::Relaxed)
}

/// A client's address in a log line (`%ClientAddr(addr)`): `IP:PORT` with
/// `--log-addresses`, else `A.B.C.0/24` for IPv4 (IPv4-mapped IPv6 included) and
/// `X:Y:Z::/48` for IPv6, without the port. Formats without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if log_addresses() {
            return write!(f, "{}", self.0);
        }
        let ip = match self.0.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                write!(f, "{}.{}.{}.0/24", o[0], o[1], o[2])
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                write!(f, "{}/48", Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        }
    }
}

/// Refusals counted since the server started, by reason; a summary reports the
/// difference between two of these.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    /// UDP requests refused with a type-7 error, by status, in the order of
    /// [`EmitStats::ERROR_REASONS`] (400, 401, 403, 404, 409, 413, 429, 503;
    /// docs/PROTOCOL.md §4.1). 429 is a rate limit.
    pub udp: [u64; 8],
    /// UDP datagrams dropped without an answer (docs/PROTOCOL.md §4.2): server packets,
    /// reply types, answers that would not fit, and requests over a budget (lookups over
    /// the source's byte budget, STUN over its own).
    pub dropped: u64,
    /// TCP status frames sent with an error status (refused hellos, connections over the
    /// per-address or total cap, hello timeouts, malformed frames; docs/PROTOCOL.md §8).
    pub tcp: u64,
}

impl Refusals {
    /// The UDP part of the emitter's counters and the TCP plane's error count.
    pub fn of(emitted: &EmitStats, tcp_errors: u64) -> Refusals {
        Refusals {
            udp: emitted.errors,
            dropped: emitted.dropped,
            tcp: tcp_errors,
        }
    }

    /// Every refusal together.
    pub fn total(&self) -> u64 {
        self.udp.iter().sum::<u64>() + self.dropped + self.tcp
    }

    /// What was counted after `before` (counters only grow; saturating all the same).
    fn since(&self, before: &Refusals) -> Refusals {
        let mut udp = [0; 8];
        for (d, (a, b)) in udp.iter_mut().zip(self.udp.iter().zip(&before.udp)) {
            *d = a.saturating_sub(*b);
        }
        Refusals {
            udp,
            dropped: self.dropped.saturating_sub(before.dropped),
            tcp: self.tcp.saturating_sub(before.tcp),
        }
    }
}

/// Refusals a second, on average over an interval, from which its summary is a warning.
pub const WARN_PER_S: u64 = 10;

/// What one interval refused, and how long the interval was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalSummary {
    /// The refusals of the interval, by reason.
    pub refused: Refusals,
    /// The interval's length, ms (the configured one, or longer when the loop was late).
    pub interval_ms: u64,
}

/// One summary line at `$level` with a field per reason (the names of the metric's
/// `reason` label, docs/METRICS.md), in one place for both levels.
macro_rules! summary_line {
    ($level:expr, $s:expr) => {{
        let r = &$s.refused;
        let u = &r.udp;
        tracing::event!(
            $level,
            total = r.total(),
            interval_ms = $s.interval_ms,
            bad_request = u[0],
            unauthorized = u[1],
            forbidden = u[2],
            not_found = u[3],
            conflict = u[4],
            too_large = u[5],
            rate_limited = u[6],
            unavailable = u[7],
            dropped = r.dropped,
            tcp_refused = r.tcp,
            "requests refused in the last interval"
        )
    }};
}

impl RefusalSummary {
    /// A warning rather than information: a bound of the server was reached (503: the
    /// directory, a relay queue or the freshness table is full), or more than
    /// [`WARN_PER_S`] refusals a second on average.
    pub fn is_warning(&self) -> bool {
        self.refused.udp[7] > 0
            || self.refused.total().saturating_mul(1000)
                > WARN_PER_S.saturating_mul(self.interval_ms)
    }

    /// Writes the summary: one line, WARN or INFO (see [`Self::is_warning`]).
    pub fn log(&self) {
        if self.is_warning() {
            summary_line!(tracing::Level::WARN, self);
        } else {
            summary_line!(tracing::Level::INFO, self);
        }
    }
}

/// When a refusal summary is due, on the core's clock, and the counters at the last one.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    every_ms: u64,
    /// When the current interval began (monotonic ms); `None` before the first tick.
    since_ms: Option<u64>,
    /// The counters when it began.
    last: Refusals,
}

impl RefusalLog {
    /// The interval unless configured (`serve --log-summary-interval`), ms.
    pub const DEFAULT_EVERY_MS: u64 = 60_000;

    /// A summary every `every_ms` (at least 1 ms); the first interval begins at the first
    /// [`Self::tick`], counting from zero.
    pub fn new(every_ms: u64) -> Self {
        RefusalLog {
            every_ms: every_ms.max(1),
            since_ms: None,
            last: Refusals::default(),
        }
    }

    /// When the current interval ends (monotonic ms); `None` before the first tick.
    pub fn deadline(&self) -> Option<u64> {
        self.since_ms.map(|s| s.saturating_add(self.every_ms))
    }

    /// At `now_ms`: when the interval has ended, the next begins, and its refusals
    /// (`counts()`, the counters now, less those when it began) are returned if there were
    /// any. `counts` is called only then.
    pub fn tick(
        &mut self,
        now_ms: u64,
        counts: impl FnOnce() -> Refusals,
    ) -> Option<RefusalSummary> {
        let Some(since) = self.since_ms else {
            self.since_ms = Some(now_ms);
            return None;
        };
        if now_ms < since.saturating_add(self.every_ms) {
            return None;
        }
        let now = counts();
        let refused = now.since(&self.last);
        self.last = now;
        self.since_ms = Some(now_ms);
        (refused.total() > 0).then_some(RefusalSummary {
            refused,
            interval_ms: now_ms - since,
        })
    }
}

/// Log lines captured in unit tests.
#[cfg(test)]
pub(crate) mod capture {
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines (info and above) `f` logs on this thread, as `serve --log-format json`
    /// writes them, parsed.
    pub(crate) fn json_lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusals(bad_request: u64, rate_limited: u64, dropped: u64) -> Refusals {
        let mut udp = [0; 8];
        udp[0] = bad_request;
        udp[6] = rate_limited;
        Refusals {
            udp,
            dropped,
            tcp: 0,
        }
    }

    #[test]
    fn a_summary_per_interval_with_refusals_and_none_without() {
        let mut log = RefusalLog::new(60_000);
        assert_eq!(log.deadline(), None);
        assert_eq!(log.tick(5_000, || unreachable!("not due")), None);
        assert_eq!(log.deadline(), Some(65_000));
        assert_eq!(log.tick(64_999, || unreachable!("not due")), None);
        // Due: 7 refusals since the start.
        let s = log.tick(65_000, || refusals(5, 2, 0)).expect("a summary");
        assert_eq!(s.refused, refusals(5, 2, 0));
        assert_eq!((s.interval_ms, s.refused.total()), (60_000, 7));
        assert!(!s.is_warning(), "7 in a minute");
        // Nothing new in the next interval: no line.
        assert_eq!(log.tick(125_000, || refusals(5, 2, 0)), None);
        assert_eq!(log.deadline(), Some(185_000));
        // A late tick measures the longer interval; only the difference is reported.
        let s = log
            .tick(200_000, || refusals(5, 2, 1_000))
            .expect("a summary");
        assert_eq!(s.refused, refusals(0, 0, 1_000));
        assert_eq!(s.interval_ms, 75_000);
        assert!(s.is_warning(), "1000 in 75 s is over 10 a second");
    }

    #[test]
    fn a_full_server_warns_at_once() {
        let mut refused = Refusals::default();
        refused.udp[7] = 1;
        let s = RefusalSummary {
            refused,
            interval_ms: 60_000,
        };
        assert!(s.is_warning());
    }

    #[test]
    fn client_addresses_are_networks_unless_asked_for() {
        let v4: SocketAddr = "203.0.113.77:4000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:203.0.113.77]:4000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8:1:2:3::9]:4000".parse().unwrap();
        // The flag is process-wide: both settings in one test, so no other test races it.
        set_log_addresses(false);
        assert_eq!(ClientAddr(v4).to_string(), "203.0.113.0/24");
        assert_eq!(ClientAddr(mapped).to_string(), "203.0.113.0/24");
        assert_eq!(ClientAddr(v6).to_string(), "2001:db8:1::/48");
        set_log_addresses(true);
        assert_eq!(ClientAddr(v4).to_string(), "203.0.113.77:4000");
        assert_eq!(ClientAddr(v6).to_string(), "[2001:db8:1:2:3::9]:4000");
        set_log_addresses(false);
    }

    #[test]
    fn the_summary_is_one_json_line_with_a_field_per_reason() {
        let mut refused = refusals(3, 4, 5);
        refused.tcp = 6;
        let s = RefusalSummary {
            refused,
            interval_ms: 60_000,
        };
        let lines = capture::json_lines(|| s.log());
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v = &lines[0];
        assert_eq!(v["level"], "INFO");
        let fields = &v["fields"];
        for (i, reason) in EmitStats::ERROR_REASONS.iter().enumerate() {
            assert_eq!(fields[*reason], refused.udp[i], "{reason} in {v}");
        }
        assert_eq!(fields["dropped"], 5);
        assert_eq!(fields["tcp_refused"], 6);
        assert_eq!(fields["total"], 18);
        assert_eq!(fields["interval_ms"], 60_000);
    }
}
