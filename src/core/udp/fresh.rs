//! Freshness and replay of signed packets (docs/PROTOCOL.md §5.3): the window around the
//! server clock, and per fingerprint the newest accepted timestamp with the digests of the
//! packets accepted at exactly that timestamp. A bounded table; it checks and records,
//! and never decides what a refusal says on the wire.

use super::config::UdpConfig;
use super::directory::slab::{Slab, SlotIndex};
use crate::core::Now;
use crate::wire::{Fingerprint, PacketType};
use sha2::{Digest, Sha256};

/// Most signed packets accepted per fingerprint with one timestamp.
const MAX_SAME_SECOND: usize = 64;

/// Per-fingerprint freshness state: the newest accepted signed timestamp and the digests
/// of the packets accepted with exactly that timestamp. 56 bytes, a slot of the table's
/// slab; a second digest in one second costs a heap allocation.
#[derive(Debug)]
struct Fresh {
    fp: Fingerprint,
    last_ts: u64,
    digests: Digests,
}

/// The digests accepted at one timestamp: the first inline (the usual case: one signed
/// packet a second), more in a boxed slice (16 bytes either way; a push copies the slice,
/// at most [`MAX_SAME_SECOND`] digests).
#[derive(Debug)]
enum Digests {
    One(u64),
    Many(Box<[u64]>),
}

impl Digests {
    fn as_slice(&self) -> &[u64] {
        match self {
            Digests::One(d) => std::slice::from_ref(d),
            Digests::Many(v) => v,
        }
    }

    fn push(&mut self, digest: u64) {
        let more = [self.as_slice(), &[digest]].concat();
        *self = Digests::Many(more.into_boxed_slice());
    }
}

/// The freshness table: at most 2 x `max_clients` fingerprints (at least 16), in a slab
/// indexed by fingerprint (about 67 bytes each at a million).
#[derive(Debug)]
pub(super) struct FreshTable {
    entries: Slab<Fresh>,
    index: SlotIndex,
    cap: usize,
    /// [`UdpConfig::accept_replayed`]: no window, and state kept however old.
    accept_replayed: bool,
    /// The window, seconds either side of the server clock.
    freshness_s: u64,
}

impl FreshTable {
    /// An empty table for `cfg` (its `tables.max_clients`, `timers.freshness_s`, `accept_replayed`).
    pub(super) fn new(cfg: &UdpConfig) -> Self {
        FreshTable {
            entries: Slab::default(),
            index: SlotIndex::default(),
            cap: cfg.tables.max_clients.saturating_mul(2).max(16),
            accept_replayed: cfg.accept_replayed,
            freshness_s: cfg.timers.freshness_s,
        }
    }

    /// Bounds the table at 2 x `max_clients` fingerprints (at least 16), as [`Self::new`]
    /// does; entries above a lowered bound stay until they are swept.
    pub(super) fn set_cap(&mut self, max_clients: usize) {
        self.cap = max_clients.saturating_mul(2).max(16);
    }

    /// The freshness window: `ts` (Unix s) within `freshness_s` of the server clock, either
    /// side. Always true with [`UdpConfig::accept_replayed`], which turns the window off so
    /// that a capture's old signed packets can be replayed.
    pub(super) fn in_window(&self, now: Now, ts: u64) -> bool {
        self.accept_replayed || now.unix_s.abs_diff(ts) <= self.freshness_s
    }

    /// The oldest timestamp whose freshness state is still worth keeping: anything older
    /// fails the window check anyway. 0 (keep everything, within the table's bound) with
    /// [`UdpConfig::accept_replayed`], where old timestamps pass and the per-fingerprint
    /// "newest accepted" and replay rules are all that stands against a replay.
    fn horizon(&self, now: Now) -> u64 {
        if self.accept_replayed {
            0
        } else {
            now.unix_s.saturating_sub(self.freshness_s)
        }
    }

    /// The state of `fp`, by its slot.
    fn slot(&self, fp: &Fingerprint) -> Option<u32> {
        let entries = &self.entries;
        self.index
            .find(fp, |s| entries.get(s).map_or(NO_FP, |f| f.fp))
    }

    fn get(&self, fp: &Fingerprint) -> Option<&Fresh> {
        self.entries.get(self.slot(fp)?)
    }

    /// Fingerprints held.
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps the entries for which `keep` is true.
    fn retain(&mut self, mut keep: impl FnMut(&Fresh) -> bool) {
        let entries = &mut self.entries;
        self.index.retain(|s| {
            let kept = entries.get(s).is_some_and(&mut keep);
            if !kept {
                entries.remove(s);
            }
            kept
        });
    }

    /// Checks `ts`/`digest` against the state of `fp` without changing it.
    ///
    /// # Errors
    /// The reason (a 409 detail) when the packet is older than the newest accepted, a
    /// replay, or one too many in one second.
    pub(super) fn check(&self, fp: &Fingerprint, ts: u64, digest: u64) -> Result<(), &'static str> {
        match self.get(fp) {
            None => Ok(()),
            Some(f) if ts > f.last_ts => Ok(()),
            Some(f) if ts < f.last_ts => {
                Err("older than the last packet accepted for this fingerprint")
            }
            Some(f) if f.digests.as_slice().contains(&digest) => Err("replayed packet"),
            Some(f) if f.digests.as_slice().len() >= MAX_SAME_SECOND => {
                Err("too many signed packets in one second")
            }
            Some(_) => Ok(()),
        }
    }

    /// Makes room for the state of `fp` if needed: drops entries whose newest timestamp has
    /// left the window (none with [`UdpConfig::accept_replayed`]), then entries of
    /// fingerprints for which `online` is false. False when still full.
    pub(super) fn make_room(
        &mut self,
        now: Now,
        fp: &Fingerprint,
        online: impl Fn(&Fingerprint) -> bool,
    ) -> bool {
        if self.len() < self.cap || self.slot(fp).is_some() {
            return true;
        }
        self.sweep(now);
        if self.len() < self.cap {
            return true;
        }
        self.retain(|f| online(&f.fp));
        self.len() < self.cap
    }

    /// Records an accepted signed packet; the caller has made room with
    /// [`Self::make_room`].
    pub(super) fn record(&mut self, fp: Fingerprint, ts: u64, digest: u64) {
        let Some(f) = self.slot(&fp).and_then(|s| self.entries.get_mut(s)) else {
            let s = self.entries.insert(Fresh {
                fp,
                last_ts: ts,
                digests: Digests::One(digest),
            });
            let entries = &self.entries;
            self.index
                .insert(&fp, s, |s| entries.get(s).map_or(NO_FP, |f| f.fp));
            return;
        };
        if ts > f.last_ts {
            f.last_ts = ts;
            f.digests = Digests::One(digest);
        } else {
            f.digests.push(digest);
        }
    }

    /// Drops the entries whose newest timestamp has left the window.
    pub(super) fn sweep(&mut self, now: Now) {
        let oldest = self.horizon(now);
        self.retain(|f| f.last_ts >= oldest);
    }
}

/// The key read for a free slot (never asked for: the index holds used slots only).
const NO_FP: Fingerprint = Fingerprint([0; 32]);

/// Digest of `(type, payload)` for replay detection: the first 8 bytes of SHA-256 (the
/// signature bytes are left out: ECDSA lets anyone re-encode them).
pub(super) fn packet_digest(ty: PacketType, payload: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update([u8::from(ty)]);
    h.update(payload);
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::udp::TableBounds;

    fn now(unix_s: u64) -> Now {
        Now { mono_ms: 0, unix_s }
    }

    fn table(max_clients: usize, accept_replayed: bool) -> FreshTable {
        FreshTable::new(&UdpConfig {
            tables: TableBounds {
                max_clients,
                ..TableBounds::default()
            },
            accept_replayed,
            ..UdpConfig::default()
        })
    }

    #[test]
    fn newest_timestamp_wins_and_replays_are_caught() {
        let mut t = table(8, false);
        let fp = Fingerprint([1; 32]);
        assert!(t.in_window(now(1000), 940) && t.in_window(now(1000), 1060));
        assert!(!t.in_window(now(1000), 939) && !t.in_window(now(1000), 1061));
        assert_eq!(t.check(&fp, 1000, 7), Ok(()));
        t.record(fp, 1000, 7);
        assert_eq!(t.check(&fp, 1000, 7), Err("replayed packet"));
        assert_eq!(
            t.check(&fp, 1000, 8),
            Ok(()),
            "another packet in the same second"
        );
        assert!(t.check(&fp, 999, 9).is_err());
        for d in 8..8 + 63 {
            t.record(fp, 1000, d);
        }
        assert_eq!(
            t.check(&fp, 1000, 500),
            Err("too many signed packets in one second")
        );
        t.record(fp, 1001, 7);
        assert_eq!(
            t.check(&fp, 1001, 8),
            Ok(()),
            "a newer second clears the digests"
        );
        assert_ne!(
            packet_digest(PacketType::Register, b"x"),
            packet_digest(PacketType::Relay, b"x")
        );
    }

    #[test]
    fn room_is_made_from_stale_then_offline_entries() {
        let mut t = table(8, false); // 16 entries
        for i in 0..16u8 {
            t.record(Fingerprint([i; 32]), 1000 + u64::from(i), 1);
        }
        let new = Fingerprint([99; 32]);
        assert!(t.make_room(now(1000), &Fingerprint([3; 32]), |_| true));
        // At 1063 the window starts at 1003: entries 0, 1 and 2 go.
        assert!(t.make_room(now(1063), &new, |_| true));
        assert_eq!(t.len(), 13);
        for i in 16..19u8 {
            t.record(Fingerprint([i; 32]), 1063, 1);
        }
        assert!(
            !t.make_room(now(1063), &new, |_| true),
            "all online, all fresh"
        );
        assert!(t.make_room(now(1063), &new, |fp| fp.0[0] != 5));
        assert_eq!(t.len(), 15);
    }

    #[test]
    fn accept_replayed_has_no_window_and_keeps_old_state() {
        let mut t = table(8, true);
        let fp = Fingerprint([1; 32]);
        assert!(t.in_window(now(1_000_000), 5));
        t.record(fp, 5, 1);
        t.sweep(now(1_000_000));
        assert_eq!(t.check(&fp, 5, 1), Err("replayed packet"));
    }
}
