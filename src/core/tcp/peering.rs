//! Taking a new peering while running (a reload, docs/PROTOCOL.md §7, "Reload"): links to
//! peers no longer configured are retired (closed, never redialled), new peers get links,
//! and the trust settings apply to the next hello. No live connection but a retired link's
//! is closed.

use super::config::Peering;
use super::links::{Link, LinkState, MAX_LINKS};
use super::TcpCore;
use std::net::SocketAddr;

impl TcpCore {
    /// Takes `peering` (`--peer`, `--allow-peer`, `--no-mesh`, `--peer-key`) at `now_ms`.
    /// Its `tls_links` is ignored: whether links run TLS is fixed at start (the loop's TLS
    /// setup depends on it).
    ///
    /// - A link to an address no longer among the peers is retired: its connection is
    ///   closed and it is not redialled; it stays in `status` as `state=retired` (with
    ///   mesh on, a server the node list publishes is linked again as learned).
    /// - A new peer gets a link, dialled at once (at most 256 links in all; past that the
    ///   peer is logged and skipped); a retired one is revived.
    /// - `--allow-peer` and `--peer-key` decide the next server hellos and link handshakes;
    ///   connections already admitted stay.
    pub fn set_peering(&mut self, peering: Peering, now_ms: u64) {
        let tls_links = self.cfg.peering.tls_links;
        self.cfg.peering = Peering {
            tls_links,
            ..peering
        };
        let mesh = !self.cfg.peering.no_mesh;
        for i in 0..self.links.len() {
            let l = &self.links[i];
            let wanted = self.cfg.peering.peers.contains(&l.addr) || (mesh && l.learned);
            if !wanted && !l.retired {
                self.retire_link(i);
            }
        }
        for addr in self.cfg.peering.peers.clone() {
            self.configure_link(addr, now_ms);
        }
        if mesh {
            self.link_to_learned(now_ms);
        }
    }

    /// A configured link to `addr`: the existing one made configured (and revived when
    /// retired), or a new one due at `now_ms`.
    fn configure_link(&mut self, addr: SocketAddr, now_ms: u64) {
        let backoff_ms = self.cfg.timers.backoff_min_ms;
        match self.links.iter().position(|l| l.addr == addr) {
            Some(i) => {
                self.links[i].learned = false;
                self.revive_link(i, now_ms);
            }
            None if self.links.len() < MAX_LINKS => {
                tracing::info!(peer = %addr, "new peer from the configuration; connecting");
                self.links.push(Link::new(addr, now_ms, backoff_ms, false));
            }
            None => tracing::warn!(peer = %addr, "no room for another link (256); not connecting"),
        }
    }

    /// Link `i`, when retired, is due again at `now_ms` with the shortest backoff.
    pub(super) fn revive_link(&mut self, i: usize, now_ms: u64) {
        let backoff_ms = self.cfg.timers.backoff_min_ms;
        if let Some(l) = self.links.get_mut(i).filter(|l| l.retired) {
            l.retired = false;
            l.backoff_ms = backoff_ms;
            l.state = LinkState::Down { retry_ms: now_ms };
        }
    }

    /// Retires link `i`: closes its connection (if up) and never redials it.
    fn retire_link(&mut self, i: usize) {
        let l = &mut self.links[i];
        tracing::info!(peer = %l.addr, "peer no longer configured; closing its link");
        l.retired = true;
        match l.state {
            LinkState::Up { conn, .. } => self.close_link(conn, "no longer configured (reload)"),
            LinkState::Down { .. } => l.state = LinkState::Down { retry_ms: u64::MAX },
            // The loop's answer (connected or failed) finds the link retired.
            LinkState::Connecting => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tcp::{TcpAction, TcpConfig};

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, i], 4747))
    }

    fn peering(peers: &[SocketAddr]) -> Peering {
        Peering {
            peers: peers.to_vec(),
            no_mesh: true,
            ..Peering::default()
        }
    }

    fn actions(core: &mut TcpCore) -> Vec<TcpAction> {
        std::iter::from_fn(|| core.poll_action()).collect()
    }

    fn connect(peer: usize, a: SocketAddr) -> TcpAction {
        TcpAction::Connect {
            peer,
            addr: a,
            tls: false,
        }
    }

    #[test]
    fn a_removed_peer_is_closed_and_never_redialled_and_a_new_one_is_dialled_at_once() {
        let cfg = TcpConfig {
            peering: peering(&[addr(1)]),
            ..TcpConfig::default()
        };
        let mut core = TcpCore::new(cfg, 0, 0);
        core.handle_timeout(0);
        assert_eq!(actions(&mut core), [connect(0, addr(1))]);
        core.handle_connected(0, 0, 7);
        assert!(core.link_up(0));

        core.set_peering(peering(&[addr(2)]), 10);
        assert!(actions(&mut core).contains(&TcpAction::Close(7)));
        core.handle_closed(10, 7);
        core.handle_timeout(10);
        assert_eq!(actions(&mut core), [connect(1, addr(2))]);
        let links: Vec<SocketAddr> = core.gauges().links.iter().map(|l| l.peer).collect();
        assert_eq!(links, [addr(2)], "a retired link is no gauge");
        // An hour on: the retired link was never dialled again.
        core.handle_timeout(3_600_000);
        assert!(!actions(&mut core).contains(&connect(0, addr(1))));

        // Listed again: revived, dialled at once.
        core.set_peering(peering(&[addr(1), addr(2)]), 3_600_010);
        core.handle_timeout(3_600_010);
        assert!(actions(&mut core).contains(&connect(0, addr(1))));
        // Removed while the loop connects: the connection is closed once it is made.
        core.set_peering(peering(&[addr(2)]), 3_600_020);
        actions(&mut core);
        core.handle_connected(3_600_030, 0, 8);
        assert_eq!(actions(&mut core), [TcpAction::Close(8)]);
        assert!(!core.link_up(0));
        core.handle_timeout(7_200_000);
        assert!(!actions(&mut core).contains(&connect(0, addr(1))));
    }

    #[test]
    fn tls_links_stay_as_started() {
        let cfg = TcpConfig {
            peering: Peering {
                tls_links: true,
                ..peering(&[])
            },
            ..TcpConfig::default()
        };
        let mut core = TcpCore::new(cfg, 0, 0);
        core.set_peering(peering(&[addr(3)]), 0);
        core.handle_timeout(0);
        let want = TcpAction::Connect {
            peer: 0,
            addr: addr(3),
            tls: true,
        };
        assert_eq!(actions(&mut core), [want]);
    }
}
