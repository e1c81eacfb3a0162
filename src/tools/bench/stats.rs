//! Measuring for `rendezvous bench`: a latency histogram (log-linear buckets, fixed memory),
//! the CPU time a process has used and the receive drops of a UDP socket (Linux `/proc`).
//!
//! Owns no sockets and no clock: callers pass durations in. Never allocates after
//! [`Histogram::new`]. Invariant: the percentiles it reports lie within 1/64 (1.6 %) of a
//! recorded value, and `max` is exact.

use std::time::Duration;

/// Values below this many nanoseconds get a bucket each.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`] (so relative precision is 1/64).
const SUB: u64 = 64;
/// Bucket count covering every `u64` nanosecond value: 128 + 57 groups of 64.
const BUCKETS: usize = (LINEAR + 57 * SUB) as usize;

/// A latency histogram in nanoseconds, log-linear (HDR-like): exact below 128 ns, then
/// 64 buckets per power of two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let e = 63 - u64::from(ns.leading_zeros()); // >= 7
    let m = ns >> (e - 6); // 64..128
    (LINEAR + (e - 7) * SUB + (m - SUB)) as usize
}

/// The middle of bucket `i`, in nanoseconds.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let k = i - LINEAR;
    let e = k / SUB + 7;
    let m = k % SUB + SUB;
    let low = m << (e - 6);
    let width = 1u64 << (e - 6);
    low + width / 2
}

impl Histogram {
    /// An empty histogram (about 30 KiB).
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max_ns: 0,
        }
    }

    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded, in microseconds (0 when empty).
    pub fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1000.0
    }

    /// The `q`-quantile (0.0..=1.0) in microseconds: the smallest recorded value at or above
    /// which a fraction `q` of values lie, within 1.6 %; never above [`Self::max_us`]; 0 when
    /// empty.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                if seen == self.total {
                    // The last bucket holds the maximum, known exactly.
                    return self.max_us();
                }
                return value(i).min(self.max_ns) as f64 / 1000.0;
            }
        }
        self.max_us()
    }
}

/// CPU time (user + system) process `pid` has used so far, in seconds (Linux
/// `/proc/PID/stat`); `None` when it cannot be read.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing ')'.
    // After it: state is field 3; utime is field 14 and stime 15 (proc(5)).
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second();
    (hz > 0).then(|| ticks / hz as f64)
}

/// A `kB` line of `/proc/PID/status` (Linux), in KiB: `VmRSS` (resident now) or `VmHWM`
/// (the peak resident set since the process started); `None` when it cannot be read.
pub fn rss_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Datagrams the kernel dropped (receive buffer full) at the unconnected UDP sockets bound
/// to local `port`, summed over `/proc/net/udp` and `/proc/net/udp6`: the server's socket
/// when it runs on this host and in this network namespace. `None` when no such socket is
/// listed (a remote target).
pub fn udp_drops(port: u16) -> Option<u64> {
    let mut found = false;
    let mut drops = 0u64;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(d)) = (f.get(1), f.get(2), f.last()) else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let unconnected = remote.rsplit(':').next() == Some("0000");
            if local_port == Some(port) && unconnected {
                if let Ok(d) = d.parse::<u64>() {
                    found = true;
                    drops += d;
                }
            }
        }
    }
    found.then_some(drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for ns in (0..10_000u64).chain((1..60).map(|e| (1u64 << e) + 12_345)) {
            let i = index(ns);
            assert!(i >= last, "index not monotonic at {ns}");
            last = i;
            let v = value(i) as f64;
            assert!(
                (v - ns as f64).abs() <= ns as f64 / 64.0 + 1.0,
                "{ns} -> {v}"
            );
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile_us(0.5), 0.0);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile_us(0.5);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        let p99 = h.quantile_us(0.99);
        assert!((97.0..=100.0).contains(&p99), "{p99}");
        assert_eq!(h.max_us(), 100.0);
        assert_eq!(h.quantile_us(1.0), 100.0);
        let mut g = Histogram::new();
        g.record(Duration::from_millis(5));
        h.merge(&g);
        assert_eq!(h.count(), 101);
        assert_eq!(h.max_us(), 5000.0);
    }
}
