//! Unlisted bindings (docs/PROTOCOL.md §5.2, "Unlisted registrations"): source addresses
//! an unlisted registration bound to a fingerprint, for that client's own requests
//! (lookups, relays, fetches, keepalives), without moving the fingerprint's address in
//! the directory. So a short-lived socket of a client (a `lookup` while its `register`
//! runs) costs the running registration nothing. Each binding lapses the TTL after its
//! registration or its last keepalive; at most `cap` are held, the one nearest to lapsing
//! dropped for a new one.

use crate::core::Now;
use crate::identity::VerifyingKey;
use crate::wire::Fingerprint;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

/// One source bound by an unlisted registration.
#[derive(Debug, Clone)]
pub(in crate::core::udp) struct Binding {
    /// The fingerprint the source speaks for.
    pub(in crate::core::udp) fp: Fingerprint,
    /// Its certificate's key, to check its relays.
    pub(in crate::core::udp) key: VerifyingKey,
    /// The layout of the registration (plain, or shifted with this `shift_len`).
    pub(in crate::core::udp) shift: Option<u8>,
    /// Monotonic ms after which the binding has lapsed.
    deadline_ms: u64,
}

/// The unlisted bindings by source address.
pub(super) struct Unlisted {
    by_addr: HashMap<SocketAddr, Binding>,
    /// `(deadline, address)`, one element per binding: which lapses first.
    order: BTreeSet<(u64, SocketAddr)>,
    ttl_ms: u64,
    cap: usize,
}

impl Unlisted {
    /// No bindings; each will live `ttl_ms` from its registration or last keepalive; at most
    /// `cap` (at least 1) held.
    pub(super) fn new(ttl_ms: u64, cap: usize) -> Self {
        Unlisted {
            by_addr: HashMap::new(),
            order: BTreeSet::new(),
            ttl_ms,
            cap: cap.max(1),
        }
    }

    /// Bindings held (lapsed ones not swept yet included).
    pub(super) fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// The binding of `src` unless it has lapsed at `now`.
    pub(super) fn at(&self, now: Now, src: &SocketAddr) -> Option<&Binding> {
        self.by_addr
            .get(src)
            .filter(|b| b.deadline_ms > now.mono_ms)
    }

    /// Binds `src` to `fp` (key `key`, layout `shift`) until `now` + TTL, replacing what
    /// `src` had; when full, the binding nearest to lapsing goes first.
    pub(super) fn bind(
        &mut self,
        now: Now,
        src: SocketAddr,
        fp: Fingerprint,
        key: VerifyingKey,
        shift: Option<u8>,
    ) {
        self.remove(&src);
        while self.by_addr.len() >= self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.by_addr.remove(&oldest);
        }
        let deadline_ms = now.mono_ms.saturating_add(self.ttl_ms);
        self.order.insert((deadline_ms, src));
        let b = Binding {
            fp,
            key,
            shift,
            deadline_ms,
        };
        self.by_addr.insert(src, b);
    }

    /// A keepalive from `src`: its live binding lives the TTL from `now`; false when it has
    /// none.
    pub(super) fn keepalive(&mut self, now: Now, src: &SocketAddr) -> bool {
        let Some(b) = self
            .by_addr
            .get_mut(src)
            .filter(|b| b.deadline_ms > now.mono_ms)
        else {
            return false;
        };
        self.order.remove(&(b.deadline_ms, *src));
        b.deadline_ms = now.mono_ms.saturating_add(self.ttl_ms);
        self.order.insert((b.deadline_ms, *src));
        true
    }

    /// Forgets the binding of `src`, if any.
    pub(super) fn remove(&mut self, src: &SocketAddr) {
        if let Some(b) = self.by_addr.remove(src) {
            self.order.remove(&(b.deadline_ms, *src));
        }
    }

    /// Forgets every binding that has lapsed at `now`.
    pub(super) fn sweep(&mut self, now: Now) {
        while let Some(&(deadline, src)) = self.order.first() {
            if deadline > now.mono_ms {
                break;
            }
            self.order.pop_first();
            self.by_addr.remove(&src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, KeyAlgorithm};

    fn at(ms: u64) -> Now {
        Now {
            mono_ms: ms,
            unix_s: 1_767_225_600 + ms / 1000,
        }
    }

    #[test]
    fn bindings_lapse_after_the_ttl_unless_kept_alive_and_stay_bounded() {
        let id = Identity::generate(KeyAlgorithm::Ed25519, "u").expect("identity");
        let key = id.verifying_key().clone();
        let fp = id.fingerprint();
        let addr = |p: u16| SocketAddr::from(([192, 0, 2, 1], p));
        let mut u = Unlisted::new(1000, 2);
        u.bind(at(0), addr(1), fp, key.clone(), None);
        assert_eq!(u.at(at(999), &addr(1)).map(|b| b.fp), Some(fp));
        assert!(u.at(at(1000), &addr(1)).is_none(), "lapsed at the TTL");
        assert!(
            !u.keepalive(at(1000), &addr(1)),
            "a lapsed binding is not revived"
        );
        u.bind(at(2000), addr(2), fp, key.clone(), Some(3));
        assert!(u.keepalive(at(2900), &addr(2)));
        assert!(u.at(at(3500), &addr(2)).is_some(), "kept alive at 2900");
        u.sweep(at(3500));
        assert_eq!(u.len(), 1, "the lapsed binding is swept");
        // Full: the binding nearest to lapsing makes room.
        u.bind(at(3600), addr(3), fp, key.clone(), None);
        u.bind(at(3700), addr(4), fp, key, None);
        assert_eq!(u.len(), 2);
        assert!(u.at(at(3700), &addr(2)).is_none());
        assert!(u.at(at(3700), &addr(3)).is_some() && u.at(at(3700), &addr(4)).is_some());
        u.remove(&addr(3));
        assert!(u.at(at(3700), &addr(3)).is_none());
    }
}
