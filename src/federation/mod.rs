//! Federation between servers, I/O-free (STYLE.md's layout): what servers exchange to
//! agree on shared state, as values and pure functions the TCP plane's core drives.
//!
//! What it owns so far: [`nodelist`], the list of known servers (seed 000; BRIEF.md, "TCP
//! plane", "Server list sync"): its canonical form and SHA-512 hash, the rule for two
//! entries with one uid, the loop-free sync, and the server-role frames 10-12 that carry
//! it. What it never does: touch a socket, the clock or the store; liveness of the servers
//! in the list is tracked elsewhere. Peer links, heartbeats and the journal's pushes live in
//! [`crate::core::tcp`]; the journal itself is kept by [`crate::store`].

pub mod nodelist;

pub use nodelist::{NodeEntry, NodeList, NodeListFrame, SyncStats};
