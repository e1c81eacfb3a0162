//! The result of a bench run (docs/PROTOCOL.md §10, "Output"): ordered `key=value`
//! fields, printed as one line or one JSON object, and the fields every workload reports.

use super::stats::Histogram;
use super::{BenchOptions, Workload};
use std::collections::BTreeMap;
use std::net::SocketAddr;

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
/// p50_us p90_us p99_us p999_us max_us errors errors_by_status lost`, then the workload's
/// own (docs/PROTOCOL.md §10, "Benchmarking"), then `server_cpu_pct` and `per_server_cpu_s`
/// with `--pid`. It also keeps the run's latency histogram (not printed) for `--plot`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    fields: Vec<(&'static str, Value)>,
    latency: Option<Histogram>,
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

    /// Adds (or replaces) any value.
    pub fn set(&mut self, key: &'static str, v: Value) {
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

    /// The run's latencies (send to answer, in nanoseconds), when the workload measures
    /// them; the `p*_us` fields are read from it.
    pub fn latency(&self) -> Option<&Histogram> {
        self.latency.as_ref()
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
    pub errors: BTreeMap<u16, u64>,
    /// Latency from send to answer (open loop: from the scheduled send time, or the actual
    /// one when that is earlier; docs/PROTOCOL.md §10, "How to measure").
    pub hist: Histogram,
    /// Seconds the rate is computed over.
    pub secs: f64,
}

impl Common {
    /// The common fields, in the documented order.
    pub(crate) fn report(&self, args: &BenchOptions, target: SocketAddr) -> Report {
        let mut r = Report::default();
        r.text("workload", args.workload.name());
        r.text("target", &target.to_string());
        r.int("clients", args.load.clients as u64);
        r.int("in_flight", args.load.in_flight as u64);
        let open = args.load.open_loop || args.workload == Workload::Keepalive;
        r.int("open_loop", u64::from(open));
        r.int("rate_limit", args.load.rate);
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
        r.num("p999_us", self.hist.quantile_us(0.999));
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
        r.latency = Some(self.hist.clone());
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
}
