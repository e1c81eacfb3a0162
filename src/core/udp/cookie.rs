//! The stateless address-check cookie (docs/PROTOCOL.md §5.1; as DTLS HelloVerifyRequest,
//! RFC 6347 §4.2.1, and QUIC Retry, RFC 9000 §8.1.2, do it): a MAC of the source IP and
//! port under a secret that changes every period, accepted for the current and the
//! previous period.

use crate::wire::udp::{canonical_addr, COOKIE_LEN};
use ring::hmac;
use std::net::{IpAddr, SocketAddr};

/// Makes and checks cookies; holds no per-client state.
pub struct CookieJar {
    master: hmac::Key,
    period_ms: u64,
    // (period number, key of that period) for the current and the previous period
    keys: Option<(u64, hmac::Key, hmac::Key)>,
}

impl CookieJar {
    /// A jar keyed by the 32-byte `seed`, rotating every `period_ms` milliseconds (min 1).
    pub fn new(seed: [u8; 32], period_ms: u64) -> Self {
        CookieJar {
            master: hmac::Key::new(hmac::HMAC_SHA256, &seed),
            period_ms: period_ms.max(1),
            keys: None,
        }
    }

    fn period_key(&self, n: u64) -> hmac::Key {
        let tag = hmac::sign(&self.master, &n.to_be_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
    }

    fn keys(&mut self, now_ms: u64) -> (&hmac::Key, &hmac::Key) {
        let n = now_ms / self.period_ms;
        if self.keys.as_ref().map(|k| k.0) != Some(n) {
            let cur = self.period_key(n);
            let prev = self.period_key(n.wrapping_sub(1));
            self.keys = Some((n, cur, prev));
        }
        let k = self.keys.as_ref().expect("set above");
        (&k.1, &k.2)
    }

    fn mac(key: &hmac::Key, addr: SocketAddr) -> [u8; COOKIE_LEN] {
        let addr = canonical_addr(addr);
        let mut msg = [0u8; 18];
        match addr.ip() {
            IpAddr::V4(v4) => msg[12..16].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => msg[..16].copy_from_slice(&v6.octets()),
        }
        msg[16..].copy_from_slice(&addr.port().to_be_bytes());
        let tag = hmac::sign(key, &msg);
        let mut out = [0u8; COOKIE_LEN];
        out.copy_from_slice(&tag.as_ref()[..COOKIE_LEN]);
        out
    }

    /// The cookie for `addr` in the current period (16 bytes).
    pub fn make(&mut self, addr: SocketAddr, now_ms: u64) -> [u8; COOKIE_LEN] {
        let (cur, _) = self.keys(now_ms);
        Self::mac(cur, addr)
    }

    /// True when `cookie` was made for `addr` in this period or the previous one.
    pub fn check(&mut self, addr: SocketAddr, cookie: &[u8; COOKIE_LEN], now_ms: u64) -> bool {
        let (cur, prev) = self.keys(now_ms);
        let a = Self::mac(cur, addr);
        let b = Self::mac(prev, addr);
        ct_eq(&a, cookie) | ct_eq(&b, cookie)
    }
}

/// Compares two cookies in time independent of where they differ.
fn ct_eq(a: &[u8; COOKIE_LEN], b: &[u8; COOKIE_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_to_address_and_time() {
        let mut j = CookieJar::new([7; 32], 60_000);
        let a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:4001".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:4000".parse().unwrap();
        let c = j.make(a, 1_000);
        assert!(j.check(a, &c, 1_000));
        assert!(j.check(mapped, &c, 1_000));
        assert!(!j.check(b, &c, 1_000));
        assert!(j.check(a, &c, 119_999));
        assert!(!j.check(a, &c, 120_000));
        let other = CookieJar::new([8; 32], 60_000).make(a, 1_000);
        assert!(!j.check(a, &other, 1_000));
    }
}
