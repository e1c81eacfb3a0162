//! What the TCP plane holds now, as plain numbers for metrics (docs/METRICS.md): the
//! Lamport clock, the journal head, connections by role and each peer link's state and lag.
//! Taken on demand by the loop's metrics publisher (a few times a second at most), never
//! per request.

use super::links::LinkState;
use super::TcpCore;
use crate::wire::tcp::Role;
use std::net::SocketAddr;

/// Open connections by role (docs/PROTOCOL.md §8.2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnsByRole {
    /// Accepted, hello not read yet.
    pub pending: u64,
    /// Accepted with the client role.
    pub client: u64,
    /// Accepted with the server role (a peer's link to us).
    pub server: u64,
    /// Opened by this server to a peer (our links).
    pub link: u64,
}

/// The state of a peer link this server opens (docs/PROTOCOL.md §8.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Up: the hello went out.
    Up,
    /// The loop is connecting.
    Connecting,
    /// Down, waiting for the next try.
    Down,
}

impl LinkStatus {
    /// Every state, in a fixed order.
    pub const ALL: [LinkStatus; 3] = [LinkStatus::Up, LinkStatus::Connecting, LinkStatus::Down];

    /// Its name (a metric label value).
    pub fn label(self) -> &'static str {
        match self {
            LinkStatus::Up => "up",
            LinkStatus::Connecting => "connecting",
            LinkStatus::Down => "down",
        }
    }
}

/// One peer link, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkGauge {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Up, connecting or down.
    pub status: LinkStatus,
    /// Journal lines the peer has not confirmed durable: our journal head less the last
    /// line it confirmed on this link.
    pub lag_lines: u64,
}

/// What the TCP plane holds now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TcpGauges {
    /// The Lamport clock.
    pub clock: u32,
    /// Our journal's last line.
    pub journal_head: u64,
    /// Open connections by role.
    pub conns: ConnsByRole,
    /// Every peer link (configured and learned, not retired by a reload), at most 256.
    pub links: Vec<LinkGauge>,
}

impl TcpCore {
    /// The plane's gauges now. O(connections + links); for a metrics snapshot, not a hot
    /// path.
    pub fn gauges(&self) -> TcpGauges {
        let mut conns = ConnsByRole::default();
        for c in self.conns.values() {
            let slot = match (c.link, c.role) {
                (Some(_), _) => &mut conns.link,
                (None, None) => &mut conns.pending,
                (None, Some(Role::Client)) => &mut conns.client,
                (None, Some(Role::Server)) => &mut conns.server,
            };
            *slot += 1;
        }
        let head = self.journal.head;
        let links = self
            .links
            .iter()
            .filter(|l| !l.retired)
            .map(|l| LinkGauge {
                peer: l.addr,
                status: match l.state {
                    LinkState::Up { .. } => LinkStatus::Up,
                    LinkState::Connecting => LinkStatus::Connecting,
                    LinkState::Down { .. } => LinkStatus::Down,
                },
                lag_lines: head.saturating_sub(l.journal.confirmed_line),
            })
            .collect();
        TcpGauges {
            clock: self.clock.now,
            journal_head: head,
            conns,
            links,
        }
    }
}
