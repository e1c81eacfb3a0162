//! One decoded line and its two renderings: text (`TIME PROTO SRC -> DST KIND(NUM)
//! key=value ... [malformed: REASON]`) and JSON, as docs/PROTOCOL.md §10 (`rendezvous
//! decode`) describes them. Both renderings come from the same [`Line`], so they always
//! carry the same content.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// One field value of a decoded line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// Free text (names, details): quoted and escaped in the text rendering.
    Text(String),
    /// A token without spaces (addresses, hex, enum names): bare in the text rendering.
    Word(String),
    /// A number.
    Num(u64),
    /// A flag.
    Bool(bool),
}

/// One decoded packet (UDP) or frame (TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    /// Capture time, µs since the Unix epoch.
    pub(super) ts_us: u64,
    /// "udp" or "tcp".
    pub(super) proto: &'static str,
    pub(super) src: SocketAddr,
    pub(super) dst: SocketAddr,
    /// The type or command name ("register", "update", "status", "malformed", ...).
    pub(super) kind: &'static str,
    /// The type byte (UDP) or command byte (TCP), when there is one.
    pub(super) num: Option<u8>,
    pub(super) fields: Vec<(&'static str, Value)>,
}

/// Key of the field that says why a packet could not be decoded; rendered last, as
/// `malformed: REASON`.
pub(super) const MALFORMED: &str = "malformed";

impl Line {
    pub(super) fn new(ts_us: u64, proto: &'static str, src: SocketAddr, dst: SocketAddr) -> Self {
        Line {
            ts_us,
            proto,
            src,
            dst,
            kind: MALFORMED,
            num: None,
            fields: Vec::new(),
        }
    }

    pub(super) fn kind(&mut self, kind: &'static str, num: u8) -> &mut Self {
        self.kind = kind;
        self.num = Some(num);
        self
    }

    pub(super) fn text(&mut self, key: &'static str, v: impl Into<String>) -> &mut Self {
        self.fields.push((key, Value::Text(v.into())));
        self
    }

    pub(super) fn word(&mut self, key: &'static str, v: impl ToString) -> &mut Self {
        self.fields.push((key, Value::Word(v.to_string())));
        self
    }

    pub(super) fn num(&mut self, key: &'static str, v: impl Into<u64>) -> &mut Self {
        self.fields.push((key, Value::Num(v.into())));
        self
    }

    pub(super) fn flag(&mut self, key: &'static str, v: bool) -> &mut Self {
        self.fields.push((key, Value::Bool(v)));
        self
    }

    pub(super) fn malformed(&mut self, why: impl ToString) -> &mut Self {
        self.text(MALFORMED, why.to_string())
    }

    /// `TIME PROTO SRC -> DST KIND(NUM) key=value ... [malformed: REASON]`.
    pub(super) fn to_text(&self) -> String {
        let mut s = format!(
            "{} {} {} -> {}",
            rfc3339_us(self.ts_us),
            self.proto,
            self.src,
            self.dst,
        );
        // A packet that is not even a Root packet has no kind but its reason, shown last.
        if self.num.is_some() || self.kind != MALFORMED {
            let _ = write!(s, " {}", self.kind);
        }
        if let Some(n) = self.num {
            let _ = write!(s, "({n})");
        }
        let mut why = None;
        for (k, v) in &self.fields {
            if *k == MALFORMED {
                why = Some(v);
                continue;
            }
            let _ = match v {
                Value::Text(t) => write!(s, " {k}={t:?}"),
                Value::Word(w) => write!(s, " {k}={w}"),
                Value::Num(n) => write!(s, " {k}={n}"),
                Value::Bool(b) => write!(s, " {k}={b}"),
            };
        }
        if let Some(Value::Text(t) | Value::Word(t)) = why {
            let _ = write!(s, " malformed: {t}");
        }
        s
    }

    /// One JSON object: ts (RFC 3339), ts_us, proto, src, dst, type, type_num (when there
    /// is one), then the fields.
    pub(super) fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("ts".into(), rfc3339_us(self.ts_us).into());
        m.insert("ts_us".into(), self.ts_us.into());
        m.insert("proto".into(), self.proto.into());
        m.insert("src".into(), self.src.to_string().into());
        m.insert("dst".into(), self.dst.to_string().into());
        m.insert("type".into(), self.kind.into());
        if let Some(n) = self.num {
            m.insert("type_num".into(), n.into());
        }
        for (k, v) in &self.fields {
            let v = match v {
                Value::Text(t) | Value::Word(t) => serde_json::Value::from(t.as_str()),
                Value::Num(n) => (*n).into(),
                Value::Bool(b) => (*b).into(),
            };
            m.insert((*k).into(), v);
        }
        serde_json::Value::Object(m).to_string()
    }
}

/// `2026-01-01T00:00:00.000000Z` from µs since the Unix epoch.
pub(super) fn rfc3339_us(ts_us: u64) -> String {
    let secs = ts_us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ts_us % 1_000_000
    )
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn rfc3339_dates() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_us(1_767_225_600_000_001),
            "2026-01-01T00:00:00.000001Z"
        );
        assert_eq!(
            rfc3339_us(951_782_400_500_000),
            "2000-02-29T00:00:00.500000Z"
        );
    }
}
