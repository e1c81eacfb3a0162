//! Peer links this server opens (docs/PROTOCOL.md §8.10): connecting with backoff, the
//! opening requests, heartbeats, and dropping links that are silent, refused or too far
//! behind. What a link carries (journal, directory, node list) belongs to those parts.

use super::directory::{DirPush, LinkDir};
use super::journal::LinkJournal;
use super::{ConnId, TcpCore};
use std::net::SocketAddr;

/// Most links, configured and learned from the node list together.
pub(super) const MAX_LINKS: usize = 256;

/// Whether a link is up.
#[derive(Debug)]
pub(super) enum LinkState {
    /// Down: connect again at `retry_ms`.
    Down { retry_ms: u64 },
    /// The loop is connecting.
    Connecting,
    /// Up on `conn`; the next heartbeat is due at `next_heartbeat_ms`.
    Up {
        conn: ConnId,
        next_heartbeat_ms: u64,
    },
}

/// A link to a peer (configured with `--peer`, or learned from the node list).
#[derive(Debug)]
pub(super) struct Link {
    /// The peer's address.
    pub(super) addr: SocketAddr,
    pub(super) state: LinkState,
    /// The reconnect backoff now (ms).
    pub(super) backoff_ms: u64,
    /// When the peer last answered a heartbeat (ms), if ever.
    pub(super) last_heartbeat_ms: Option<u64>,
    /// When the link last came up (ms).
    pub(super) up_since_ms: u64,
    /// The peer's clock as it last told us (UpdateClock), 0 if never.
    pub(super) peer_clock: u32,
    /// The push of our journal.
    pub(super) journal: LinkJournal,
    /// The pushes of our directory.
    pub(super) dir: LinkDir,
    /// Learned from the node list (not configured with `--peer`).
    pub(super) learned: bool,
}

impl Link {
    /// A link that is down and due at `now_ms`.
    pub(super) fn new(addr: SocketAddr, now_ms: u64, backoff_ms: u64, learned: bool) -> Self {
        Link {
            addr,
            state: LinkState::Down { retry_ms: now_ms },
            backoff_ms,
            last_heartbeat_ms: None,
            up_since_ms: 0,
            peer_clock: 0,
            journal: LinkJournal::new(),
            dir: LinkDir {
                push: DirPush::Idle,
                sent: 0,
            },
            learned,
        }
    }
}

impl TcpCore {
    /// Link `i`'s connection, if the link is up and its output is within `max_out`.
    pub(super) fn link_room(&self, i: usize) -> Option<ConnId> {
        let LinkState::Up { conn, .. } = self.links.get(i)?.state else {
            return None;
        };
        let c = self.conns.get(&conn)?;
        (c.out.pending() <= self.cfg.max_out).then_some(conn)
    }
}
