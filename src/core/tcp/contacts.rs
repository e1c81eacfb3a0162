//! Contacts: the Lamport clock (docs/PROTOCOL.md §8.9: plausibility bound, observing
//! received clocks, 503 when exhausted) and the write batch (§8.8: the writes of one loop
//! turn go to the store as one batch; the merges that changed state get journal lines and
//! are pushed on, §8.10).

use crate::store::{Contact, Write};
use std::collections::HashMap;

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
}

/// The batch of writes being built in this loop turn, and what the batches sent to the
/// store must do once applied.
#[derive(Debug)]
pub(super) struct Batch {
    /// The writes, in order.
    pub(super) writes: Vec<Write>,
    /// Merges in the batch being built so far (the index of the next one among them).
    pub(super) merges: usize,
    /// The batch's merges with their index among its merges, to journal and push those
    /// that changed state.
    pub(super) forward: Vec<(usize, Contact)>,
    /// Per batch sent to the store (by its number): its merges, as `forward`.
    pub(super) by_seq: HashMap<u64, Vec<(usize, Contact)>>,
    /// The next batch number (from 1).
    pub(super) next_seq: u64,
    /// A batch failed: writes are not durable (every barrier is 503 until a restart).
    pub(super) broken: bool,
}
