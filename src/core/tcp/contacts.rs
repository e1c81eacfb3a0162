//! Contacts: the Lamport clock (docs/PROTOCOL.md §8.9: plausibility bound, observing
//! received clocks, 503 when exhausted) and the write batch (§8.8: the writes of one loop
//! turn go to the store as one batch; the merges that changed state get journal lines and
//! are pushed on, §8.10).

use super::conn::Answer;
use super::{ConnId, StoreRequest, TcpCore};
use crate::store::{Contact, Write};
use crate::wire::status;
use crate::wire::tcp::nodelist::Uid;
use crate::wire::tcp::{self, ContactFields};
use std::collections::{HashMap, VecDeque};

/// The Lamport clock.
#[derive(Debug)]
pub(super) struct Clock {
    /// The clock now.
    pub(super) now: u32,
    /// Raised since the last batch: the next batch stores it.
    pub(super) dirty: bool,
    /// Until the first full catch-up from a peer completes, received clocks are bounded
    /// only by 2^31 (a fresh or memory-only server joining an older mesh).
    pub(super) catching_up: bool,
    /// A received clock more than this far ahead of ours is implausible (2^24).
    max_jump: u32,
    /// How much further received clocks may raise ours now (at most `max_jump`): each
    /// raise spends it, time refills it at `max_jump` per [`RAISE_REFILL_MS`].
    raise_budget: u32,
    /// When the budget was last refilled (monotonic ms).
    refilled_ms: u64,
}

/// Time for received clocks to earn a whole `max_jump` of raise again: one hour
/// (docs/PROTOCOL.md §8.9, "raise budget").
pub(super) const RAISE_REFILL_MS: u64 = 3_600_000;

/// The batch of writes being built in this loop turn, and what the batches sent to the
/// store must do once applied.
#[derive(Debug)]
pub(super) struct Batch {
    /// The writes, in order.
    pub(super) writes: Vec<Write>,
    /// Merges in the batch being built so far (the index of the next one among them).
    pub(super) merges: usize,
    /// The batch's merges with their index among its merges and the server they came
    /// from (`None`: a client of ours), to journal and push those that changed state.
    pub(super) forward: Vec<(usize, Contact, Option<Uid>)>,
    /// Per batch sent to the store (by its number): its merges, as `forward`.
    pub(super) by_seq: HashMap<u64, Vec<(usize, Contact, Option<Uid>)>>,
    /// The next batch number (from 1).
    pub(super) next_seq: u64,
    /// A batch failed: writes are not durable (every barrier is 503 until a restart).
    pub(super) broken: bool,
    /// Merges parsed and not yet applied by the store: in the batch being built and in
    /// the batches sent and unanswered.
    pub(super) held: usize,
    /// Connections whose parsing waits for the store to apply held merges
    /// ([`super::TcpBounds::max_held_writes`]), in the order they came; each at most once.
    pub(super) waiters: VecDeque<ConnId>,
}

impl Clock {
    /// A clock at `now`; received clocks more than `max_jump` ahead are implausible.
    /// `catching_up` for a server with peers: until its first full catch-up, anything up
    /// to 2^31 is plausible.
    pub(super) fn new(now: u32, max_jump: u32, catching_up: bool, now_ms: u64) -> Self {
        Clock {
            now,
            dirty: false,
            catching_up,
            max_jump,
            raise_budget: max_jump,
            refilled_ms: now_ms,
        }
    }

    /// Whether received clocks may still raise ours by up to 2^31 without spending the
    /// budget: a fresh server (clock 0) or one still in its first catch-up.
    fn joining(&self) -> bool {
        self.catching_up || self.now == 0
    }

    /// Earns raise budget for the time since the last refill, at `max_jump` per hour.
    pub(super) fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.refilled_ms);
        let earned = u128::from(elapsed) * u128::from(self.max_jump) / u128::from(RAISE_REFILL_MS);
        if earned == 0 {
            return; // keep the fraction: refilled_ms stays
        }
        let budget = (u128::from(self.raise_budget) + earned).min(u128::from(self.max_jump));
        self.raise_budget = budget as u32; // <= max_jump
        self.refilled_ms = now_ms;
    }

    /// A received clock is plausible when it is at most `max_jump` (2^24) ahead of ours and
    /// within what is left of the raise budget, so that clocks pushed frame after frame
    /// cannot walk ours to the top; while joining (catching up, or clock 0) anything up to
    /// 2^31 is too, so a fresh server can join an older mesh (docs/PROTOCOL.md §8.9).
    pub(super) fn plausible(&self, c: u32) -> bool {
        let steady = c
            <= self
                .now
                .saturating_add(self.max_jump.min(self.raise_budget));
        steady || (self.joining() && c <= 1 << 31)
    }

    /// A received clock: `now = max(now, c)`; outside joining, the raise is spent from the
    /// budget.
    pub(super) fn observe(&mut self, c: u32) {
        if c > self.now {
            if !self.joining() {
                self.raise_budget = self.raise_budget.saturating_sub(c - self.now);
            }
            self.now = c;
            self.dirty = true;
        }
    }

    /// A local write: `now + 1`, or `None` when the clock is exhausted (at 0xFFFFFFFF it
    /// never wraps).
    pub(super) fn tick(&mut self) -> Option<u32> {
        let next = self.now.checked_add(1)?;
        self.now = next;
        self.dirty = true;
        Some(next)
    }
}

impl Batch {
    /// An empty batch; the first one sent is number 1.
    pub(super) fn new() -> Self {
        Batch {
            writes: Vec::new(),
            merges: 0,
            forward: Vec::new(),
            by_seq: HashMap::new(),
            next_seq: 1,
            broken: false,
            held: 0,
            waiters: VecDeque::new(),
        }
    }

    /// Queues a merge; once the store says it changed state, it gets the next journal line
    /// and is pushed on every live link (multi-hop; an unchanged record goes no further,
    /// so a flood ends).
    pub(super) fn merge(&mut self, contact: Contact, from: Option<Uid>) {
        self.forward.push((self.merges, contact.clone(), from));
        self.merges += 1;
        self.held += 1;
        self.writes.push(Write::Merge(contact));
    }

    /// Closes the batch of this turn (with the clock, if it was raised): the request that
    /// applies it, if there is anything to apply.
    pub(super) fn close(&mut self, clock: &mut Clock) -> Option<StoreRequest> {
        if clock.dirty {
            self.writes.push(Write::Clock(clock.now));
            clock.dirty = false;
        }
        if self.writes.is_empty() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.merges = 0;
        if !self.forward.is_empty() {
            self.by_seq.insert(seq, std::mem::take(&mut self.forward));
        }
        Some(StoreRequest::Apply {
            seq,
            batch: std::mem::take(&mut self.writes),
        })
    }
}

impl TcpCore {
    /// Sends the batch of this turn to the store (before a read or barrier that must see
    /// it, and at the end of each turn).
    pub(super) fn flush_batch(&mut self) {
        if let Some(req) = self.batch.close(&mut self.clock) {
            self.out.request(req);
        }
    }

    /// True when `conn` must wait for the store before more is parsed: the merges held
    /// (parsed, not yet applied) reached [`super::TcpBounds::max_held_writes`]. The batch
    /// is sent and `conn` parsed again once the store applies one (docs/PROTOCOL.md §8.11).
    /// A batch that reached half the bound is sent now.
    pub(super) fn store_behind(&mut self, conn: ConnId) -> bool {
        let max = self.cfg.bounds.max_held_writes.max(2);
        if self.batch.merges >= max / 2 {
            self.flush_batch();
        }
        if self.batch.held < max {
            return false;
        }
        self.flush_batch();
        if !self.batch.waiters.contains(&conn) {
            self.batch.waiters.push_back(conn);
        }
        true
    }

    /// Parses again the connections that waited for the store, oldest first, while it is
    /// not behind.
    pub(super) fn wake_write_waiters(&mut self, now_ms: u64) {
        while self.batch.held < self.cfg.bounds.max_held_writes {
            let Some(conn) = self.batch.waiters.pop_front() else {
                return;
            };
            self.parse(now_ms, conn);
        }
    }

    /// A client Update (docs/PROTOCOL.md §8.3): stamped with the next clock, or 503 when
    /// the clock is exhausted.
    pub(super) fn client_update(&mut self, conn: ConnId, fields: &ContactFields<'_>) {
        let Some(next) = self.clock.tick() else {
            let detail = "Lamport clock exhausted: no more writes";
            return self.fail(conn, status::SERVICE_UNAVAILABLE, tcp::CMD_UPDATE, detail);
        };
        self.batch.merge(to_contact(fields, next), None);
        self.stats.client_updates += 1;
    }

    /// Checks a clock received on `conn` in command `request`: true when plausible, else
    /// 409 and close, and the peer's address is cut off for 10 minutes (docs/PROTOCOL.md
    /// §8.9).
    pub(super) fn accept_clock(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        request: u8,
        clock: u32,
    ) -> bool {
        if self.clock.plausible(clock) {
            return true;
        }
        self.stats.clocks_refused += 1;
        if let Some(c) = self.conns.get(&conn) {
            self.gate.ban(c.addr.ip(), now_ms);
        }
        let name = self
            .conns
            .get(&conn)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        tracing::warn!(
            peer = name,
            clock,
            ours = self.clock.now,
            "refused an implausible Lamport clock"
        );
        self.fail(
            conn,
            status::CONFLICT,
            request,
            "clock implausibly far ahead",
        );
        false
    }

    /// Barrier (5): status 200 once every write accepted before it is durable
    /// (docs/PROTOCOL.md §8.8).
    pub(super) fn barrier(&mut self, conn: ConnId) {
        self.flush_batch();
        let tag = self.out.tag();
        self.reads.barriers.insert(tag, conn);
        self.out.request(StoreRequest::Barrier { tag });
        self.push_answer(conn, Answer::Barrier { tag, done: false });
    }

    /// Batch `seq` is durable: each merge that changed state gets the next line of our
    /// journal and is pushed on every live link.
    pub(super) fn on_applied(&mut self, seq: u64, changed: &[bool]) {
        let Some(records) = self.batch.by_seq.remove(&seq) else {
            return;
        };
        self.batch.held = self.batch.held.saturating_sub(records.len());
        // Whom each link reaches, once per batch (docs/PROTOCOL.md §8.10, "relays").
        let relay = self.relay();
        for (i, contact, from) in records {
            if changed.get(i).copied().unwrap_or(false) {
                self.journal.head += 1;
                self.journal.sources.push(self.journal.head, from);
                self.stats.forwarded += 1;
                let src = self.source(from);
                self.push_live(self.journal.head, &contact, src, &relay);
            }
        }
        self.mark_withheld();
        self.drop_stale_ids();
    }

    /// Batch `seq` failed: from now on every barrier is 503.
    pub(super) fn on_failed(&mut self, seq: u64, error: &str) {
        if let Some(records) = self.batch.by_seq.remove(&seq) {
            self.batch.held = self.batch.held.saturating_sub(records.len());
        }
        self.stats.store_failures += 1;
        self.batch.broken = true;
        tracing::error!(seq, error, "store batch failed; writes are not durable");
    }

    /// Everything before barrier `tag` is durable: its 200 goes out in its turn (503 and
    /// close at once if a batch has failed).
    pub(super) fn on_barrier_done(&mut self, tag: u64) {
        let Some(conn) = self.reads.barriers.remove(&tag) else {
            return;
        };
        if self.batch.broken {
            let detail = "store failure: writes are not durable";
            return self.fail_now(conn, status::SERVICE_UNAVAILABLE, tcp::CMD_BARRIER, detail);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            for a in c.answers.iter_mut() {
                if let Answer::Barrier { tag: t, done } = a {
                    if *t == tag {
                        *done = true;
                    }
                }
            }
        }
        self.pump(conn);
    }
}

/// A contact from its wire fields, stamped with `clock`.
pub(super) fn to_contact(f: &ContactFields<'_>, clock: u32) -> Contact {
    Contact {
        username: f.username.to_string(),
        contact: f.contact.to_string(),
        phone: f.phone.to_string(),
        clock,
    }
}
