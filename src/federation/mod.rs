//! Federation between servers, I/O-free: what servers exchange to agree on shared state,
//! as values and pure functions the TCP plane's core drives (docs/PROTOCOL.md §8.10,
//! §8.15).
//!
//! What it owns so far: [`nodelist`], the list of known servers: its SHA-512 hash, the
//! rule for two entries with one uid, the loop-free sync; [`reconcile`], range-based set
//! reconciliation of contacts (record ids, the initiator and the responder, §8.20). The bytes it is exchanged in
//! (entries, frames 10-12) are [`crate::wire::tcp::nodelist`]'s. What it never does: touch
//! a socket, the clock or the store; liveness of the servers in the list is tracked
//! elsewhere. Peer links, heartbeats and the journal's pushes live in [`crate::core::tcp`];
//! the journal itself is kept by [`crate::store`].

pub mod nodelist;
pub mod reconcile;

pub use nodelist::{NodeList, SyncStats};
