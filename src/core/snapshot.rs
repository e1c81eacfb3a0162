//! A copy of everything a [`Node`] counts, at one moment: the counters both planes keep and
//! the sizes they hold now. The event loop takes one now and then (not per packet) and hands
//! it to the metrics thread (`net::metrics`, docs/METRICS.md), which renders it; the core
//! itself stays free of I/O and locks.

use super::node::Node;
use super::tcp::{TcpGauges, TcpStats};
use super::udp::Stats;

/// What a [`Node`] has counted and holds, at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// The UDP plane's counters (datagrams, lookups, emitter, federation, queues).
    pub udp: Stats,
    /// Local clients online (registered here).
    pub local_clients: u64,
    /// Remote entries (clients homed at other servers).
    pub remote_clients: u64,
    /// The TCP plane's counters.
    pub tcp: TcpStats,
    /// The TCP plane's clock, journal head, connections and links.
    pub tcp_gauges: TcpGauges,
    /// A drain began (docs/PROTOCOL.md §7, "Signals"): the server is stopping.
    pub draining: bool,
}

impl Node {
    /// A copy of the node's counters and sizes now. Allocates the list of links; meant for a
    /// few calls a second at most.
    pub fn snapshot(&self) -> NodeSnapshot {
        let udp = self.udp();
        NodeSnapshot {
            udp: udp.stats(),
            local_clients: udp.online() as u64,
            remote_clients: udp.remote_online() as u64,
            tcp: self.tcp().stats().clone(),
            tcp_gauges: self.tcp().gauges(),
            draining: self.tcp().draining(),
        }
    }
}
