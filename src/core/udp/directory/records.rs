//! The directory as the peer servers see it (docs/PROTOCOL.md §8.16): what a peer's
//! DirRecord does to it, and what it tells them: registration and refresh records of local
//! clients, the canonical digest and the directory pages. Never verifies a signature (the
//! admission part does, before an entry is installed).

use super::{age_u32, Client, Directory};
use crate::core::udp::remote::{Full, Remote};
use crate::core::Now;
use crate::federation::reconcile::{dir_record_id, DirItem};
use crate::wire::tcp::dir::MAX_RECORD_HOPS;
use crate::wire::tcp::dir::{DirRecord, RecordBody, Registration};
use crate::wire::udp::emit_addr;
use crate::wire::Fingerprint;
use sha2::{Digest, Sha512};
use std::collections::{BinaryHeap, HashSet};
use std::net::SocketAddr;

/// What a peer's registration record (kind 1) would do to the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::core::udp) enum Verdict {
    /// Nothing: ours, older, or the losing side of a tie.
    Unchanged,
    /// The registration held: its last-seen time moved by this many ms (already applied).
    Refreshed(u64),
    /// A new or replacing remote entry, once verified; `moved`: it replaces a local client.
    Install {
        /// A local client of that fingerprint is beaten and leaves when it is installed.
        moved: bool,
    },
    /// A new remote entry, but the remote table is full (503).
    Full,
}

/// What a peer's refresh record (kind 2) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::core::udp) enum Refresh {
    /// The remote entry with that timestamp moved its last-seen time by this many ms.
    Moved(u64),
    /// Nothing: we hold that registration's fingerprint with a newer timestamp.
    Known,
    /// We do not hold that registration: the directory should be asked for.
    Unknown,
}

impl Directory {
    /// Marks local client `fp` announced and returns its registration record (kind 1, hops
    /// 0, our alias).
    pub(in crate::core::udp) fn announce(
        &mut self,
        now: Now,
        fp: Fingerprint,
    ) -> Option<DirRecord<'_>> {
        let s = self.slot(&fp)?;
        let c = self.clients.get_mut(s)?;
        c.announced_ms = c.last_seen_ms;
        let signed = self.arena.get(c.signed);
        Some(local_record(&self.alias, self.uid, now, fp, c, signed))
    }

    /// The refresh pass: hands `push` a refresh record (kind 2) for each local client
    /// heard from since it was last announced, and marks it announced when `push` took it.
    /// Stops when `push` refuses one (no room): false then, true when none is left. O(n).
    pub(in crate::core::udp) fn refresh_pass(
        &mut self,
        now: Now,
        mut push: impl FnMut(&DirRecord<'_>) -> bool,
    ) -> bool {
        for (_, c) in self.clients.iter_mut() {
            if c.last_seen_ms <= c.announced_ms {
                continue;
            }
            if !push(&c.record(now, c.fp, RecordBody::Refresh)) {
                return false;
            }
            c.announced_ms = c.last_seen_ms;
        }
        true
    }

    /// What a peer's registration record for `fp` (timestamp `ts`, from the home server
    /// whose node uid is `home`, address `addr`, last seen `seen_ms`) would do
    /// (docs/PROTOCOL.md §8.16, "Kind 1 from a peer"); a refresh of the registration held
    /// is applied at once. A record naming our own uid as home changes nothing; between two
    /// homes on one timestamp, the bytewise larger uid wins.
    pub(in crate::core::udp) fn judge_registration(
        &mut self,
        fp: Fingerprint,
        ts: u64,
        home: [u8; 16],
        addr: SocketAddr,
        seen_ms: u64,
    ) -> Verdict {
        if home == self.uid {
            return Verdict::Unchanged; // our own record coming back, or stale news of us
        }
        let mut moved = false;
        if let Some(c) = self.client(&fp) {
            if c.ts > ts || (c.ts == ts && home < self.uid) {
                return Verdict::Unchanged;
            }
            moved = true;
        }
        match self.remote.get(&fp) {
            Some(r) if r.ts > ts => Verdict::Unchanged,
            Some(r) if r.ts == ts && r.home_uid == home && r.addr == addr => {
                // The registration we hold: only a refresh.
                Verdict::Refreshed(self.remote.touch(&fp, seen_ms, self.limits.ttl_ms))
            }
            Some(r) if r.ts == ts && r.home_uid != home && home < r.home_uid => Verdict::Unchanged,
            Some(_) => Verdict::Install { moved },
            None if self.remote.is_full() => Verdict::Full,
            None => Verdict::Install { moved },
        }
    }

    /// Installs remote entry `entry` for `fp` as [`Self::judge_registration`] decided; when
    /// `moved`, the beaten local client leaves (no expiry record: it is theirs now).
    ///
    /// # Errors
    /// [`Full`] when the remote table is full; nothing changes then.
    pub(in crate::core::udp) fn install_remote(
        &mut self,
        fp: Fingerprint,
        entry: Remote,
        moved: bool,
    ) -> Result<(), Full> {
        self.remote.insert(fp, entry)?;
        if moved {
            if let Some(s) = self.slot(&fp) {
                self.unlink(s);
            }
        }
        Ok(())
    }

    /// A peer's refresh record (kind 2) for `fp` at timestamp `ts`, last seen `seen_ms`.
    pub(in crate::core::udp) fn refresh_remote(
        &mut self,
        fp: Fingerprint,
        ts: u64,
        seen_ms: u64,
    ) -> Refresh {
        let held = self.remote.get(&fp);
        if held.is_some_and(|r| r.ts == ts) {
            return Refresh::Moved(self.remote.touch(&fp, seen_ms, self.limits.ttl_ms));
        }
        let known = held.is_some_and(|r| r.ts > ts) || self.client(&fp).is_some_and(|c| c.ts >= ts);
        if known {
            Refresh::Known
        } else {
            Refresh::Unknown
        }
    }

    /// A peer's expiry record (kind 3): removes the remote entry of `fp` with exactly
    /// timestamp `ts`; returns whether there was one.
    pub(in crate::core::udp) fn expire_remote(&mut self, fp: Fingerprint, ts: u64) -> bool {
        if self.remote.get(&fp).is_some_and(|r| r.ts == ts) {
            self.remote.remove(&fp);
            true
        } else {
            false
        }
    }

    /// The canonical digest of local and remote entries: see
    /// [`crate::core::udp::UdpCore::directory_digest`].
    pub(in crate::core::udp) fn digest(&self) -> (u64, [u8; 64]) {
        let mut entries: Vec<(&Fingerprint, SocketAddr)> = self
            .clients
            .iter()
            .map(|(_, c)| (&c.fp, c.addr))
            .chain(self.remote.iter().map(|(fp, r)| (fp, r.addr)))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut h = Sha512::new();
        let mut buf = [0u8; 19];
        for (fp, addr) in &entries {
            h.update(fp.0);
            if let Ok(n) = emit_addr(*addr, &mut buf) {
                h.update(&buf[..n]);
            }
        }
        (entries.len() as u64, h.finalize().into())
    }

    /// Every entry's `(timestamp, id, fingerprint)` for a reconciliation: see
    /// [`crate::core::udp::UdpCore::directory_ids`].
    pub(in crate::core::udp) fn ids(&self) -> Vec<DirItem> {
        let local = self.clients.iter().map(|(_, c)| {
            let id = dir_record_id(&c.fp.0, c.ts, &self.uid, c.addr);
            (u32::try_from(c.ts).unwrap_or(u32::MAX), id, c.fp.0)
        });
        let remote = self.remote.iter().map(|(fp, r)| {
            let id = dir_record_id(&fp.0, r.ts, &r.home_uid, r.addr);
            (u32::try_from(r.ts).unwrap_or(u32::MAX), id, fp.0)
        });
        local.chain(remote).collect()
    }

    /// One directory page, of the entries in `only` when given: see
    /// [`crate::core::udp::UdpCore::directory_page`].
    pub(in crate::core::udp) fn page(
        &self,
        now: Now,
        after: Option<Fingerprint>,
        max: usize,
        only: Option<&HashSet<[u8; 32]>>,
        out: &mut Vec<u8>,
    ) -> DirectoryPage {
        let above = |fp: &Fingerprint| {
            after.map_or(true, |a| *fp > a) && only.map_or(true, |o| o.contains(&fp.0))
        };
        let total = self.clients.len() + self.remote.len();
        let mut page: BinaryHeap<Fingerprint> = BinaryHeap::with_capacity(max.min(total));
        let mut candidates = 0usize;
        let keys = self
            .clients
            .iter()
            .map(|(_, c)| &c.fp)
            .chain(self.remote.iter().map(|(fp, _)| fp));
        for fp in keys.filter(|fp| above(fp)) {
            candidates += 1;
            if page.len() < max {
                page.push(*fp);
            } else if page.peek().is_some_and(|top| fp < top) {
                page.pop();
                page.push(*fp);
            }
        }
        let page = page.into_sorted_vec();
        let mut records = 0;
        for fp in &page {
            let written = if let Some(c) = self.client(fp) {
                let signed = self.arena.get(c.signed);
                push_frame(
                    &local_record(&self.alias, self.uid, now, *fp, c, signed),
                    out,
                )
            } else if let Some(r) = self.remote.get(fp) {
                push_frame(&remote_record(now, *fp, r), out)
            } else {
                false
            };
            records += usize::from(written);
        }
        DirectoryPage {
            last: page.last().copied(),
            more: candidates > page.len(),
            records,
        }
    }
}

/// The registration record (kind 1, hops 0, home = this server: `uid`, shown as `alias`)
/// of local client `c`, whose registration is `signed` (signature, payload).
fn local_record<'a>(
    alias: &'a str,
    uid: [u8; 16],
    now: Now,
    fp: Fingerprint,
    c: &'a Client,
    signed: (&'a [u8], &'a [u8]),
) -> DirRecord<'a> {
    c.record(
        now,
        fp,
        RecordBody::Registration(Registration {
            addr: c.addr,
            home_uid: uid,
            home: alias,
            signature: signed.0,
            payload: signed.1,
        }),
    )
}

/// The registration record of remote entry `r` as a directory page carries it: its
/// stored hops plus one (at most 16), its own home alias.
fn remote_record(now: Now, fp: Fingerprint, r: &Remote) -> DirRecord<'_> {
    DirRecord {
        hops: r.hops.saturating_add(1).min(MAX_RECORD_HOPS),
        fingerprint: fp,
        timestamp: r.ts,
        age_ms: age_u32(now, r.last_seen_ms),
        body: RecordBody::Registration(Registration {
            addr: r.addr,
            home_uid: r.home_uid,
            home: &r.home,
            signature: r.signed.signature(),
            payload: r.signed.payload(),
        }),
    }
}

/// Appends one frame `[16][len u16][body]` for `rec` to `out`; false (nothing appended)
/// if it cannot be emitted.
fn push_frame(rec: &DirRecord<'_>, out: &mut Vec<u8>) -> bool {
    rec.append_frame(out).is_ok()
}

/// What one call of [`crate::core::udp::UdpCore::directory_page`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryPage {
    /// The last fingerprint of the page (`None` when the page is empty): the `after` of
    /// the next call.
    pub last: Option<Fingerprint>,
    /// Entries remain after `last`.
    pub more: bool,
    /// Whole DirRecord frames written (at most the `max` asked for).
    pub records: usize,
}
