//! Peer links this server opens (docs/PROTOCOL.md §8.10): connecting with backoff, the
//! opening requests, heartbeats, and dropping links that are silent, refused or too far
//! behind. What a link carries (journal, directory, node list) belongs to those parts.

use super::conn::Conn;
use super::directory::{DirPush, LinkDir};
use super::journal::{LinkJournal, Phase};
use super::{ConnId, TcpAction, TcpCore};
use crate::wire::tcp::answer::Asked;
use crate::wire::tcp::{self, Hello, Role, ServerCommand};
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
    /// Taken out of the configuration by a reload: closed and not redialled.
    pub(super) retired: bool,
    /// What its log lines need.
    pub(super) notes: LinkNotes,
    /// Its last reconciliation of node lists (docs/PROTOCOL.md §8.15).
    pub(super) nodes_recon: super::reconcile::ReconcileNote,
}

/// What a link's log lines need (docs/OPERATIONS.md §6): why this server is closing it,
/// and how many connects in a row have failed.
#[derive(Debug, Default)]
pub(super) struct LinkNotes {
    /// Why we are closing the link's connection (`None`: the peer or the network closed
    /// it).
    pub(super) closing: Option<&'static str>,
    /// Connects that failed since the link was last up (the first is a warning, the rest
    /// debug).
    pub(super) failures: u32,
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
                recon: Default::default(),
                wants: None,
            },
            learned,
            retired: false,
            notes: LinkNotes::default(),
            nodes_recon: Default::default(),
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
        (c.out.pending() <= self.cfg.bounds.max_out).then_some(conn)
    }
}

impl Link {
    /// When [`TcpCore::handle_timeout`] has work for this link (ms): a redial or a
    /// heartbeat.
    pub(super) fn deadline(&self) -> Option<u64> {
        if self.retired {
            return None;
        }
        match self.state {
            LinkState::Down { retry_ms } => Some(retry_ms),
            LinkState::Up {
                next_heartbeat_ms, ..
            } => Some(next_heartbeat_ms),
            LinkState::Connecting => None,
        }
    }
}

impl TcpCore {
    /// True when link `peer` is up.
    pub fn link_up(&self, peer: usize) -> bool {
        matches!(
            self.links.get(peer).map(|l| &l.state),
            Some(LinkState::Up { .. })
        )
    }

    /// The connection to peer `peer` is established as `conn`: send the hello, then prove
    /// our node key (when we have one) or start the link's exchange at once
    /// (docs/PROTOCOL.md §8.10, "opening a link").
    pub fn handle_connected(&mut self, now_ms: u64, peer: usize, conn: ConnId) {
        let Some(link) = self.links.get_mut(peer).filter(|l| !l.retired) else {
            // No such link, or retired while the loop was connecting.
            self.out.actions.push_back(TcpAction::Close(conn));
            self.link_down(now_ms, peer);
            return;
        };
        link.state = LinkState::Up {
            conn,
            next_heartbeat_ms: now_ms + self.cfg.timers.heartbeat_ms,
        };
        link.notes = LinkNotes::default();
        let addr = link.addr;
        let alias = self.located_alias(addr).map(tracing::field::display);
        tracing::info!(peer = %addr, alias, "peer link up");
        let mut c = Conn::new(addr, now_ms, Some(peer));
        c.role = Some(Role::Server);
        let mut hello = [0u8; tcp::HELLO_LEN];
        let hello_ok = Hello {
            role: Role::Server,
            name: &self.cfg.identity.name,
        }
        .emit(&mut hello)
        .is_ok();
        if hello_ok {
            c.out.extend_from_slice(&hello);
        }
        if self.cfg.identity.signer.is_some() && self.cfg.identity.node.is_some() {
            // Prove our node key first; the rest follows the nonce (`link_start`).
            c.out.command(&ServerCommand::AuthChallenge);
            c.expect(Asked::AuthChallenge, 0);
            self.conns.insert(conn, c);
            self.link_opened(now_ms, peer);
            return;
        }
        self.conns.insert(conn, c);
        self.link_start(now_ms, peer, conn);
    }

    /// Link `peer` came up at `now_ms`: its journal push waits for the peer's cursor.
    fn link_opened(&mut self, now_ms: u64, peer: usize) {
        if let Some(l) = self.links.get_mut(peer) {
            l.journal.phase = Phase::AwaitCursor;
            l.up_since_ms = now_ms;
        }
    }

    /// A link's opening requests: cursor query, node list hash, and the reconciliation of
    /// our directories (docs/PROTOCOL.md §8.10, §8.20).
    pub(super) fn link_start(&mut self, now_ms: u64, peer: usize, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // Ask the peer how much of our journal it holds; we push from there (§8.10).
        c.out.command(&ServerCommand::CursorQuery {
            journal_id: self.journal.id,
        });
        c.expect(Asked::CursorQuery, 0);
        // Compare node lists (§8.15), and reconcile directories (§8.20): each side gets
        // the entries it lacks, whichever link dropped.
        if let Ok(h) = self.nodes.hash_frame().to_vec() {
            c.ask_node_hash(&h);
        }
        self.link_opened(now_ms, peer);
        self.start_dir_reconcile(peer);
    }

    /// A server connected to us from `addr`: a link of ours to that address that is down
    /// waiting out its backoff is redialled at once, since the peer is reachable again
    /// (a healed partition is crossed as soon as either side's redial gets through,
    /// docs/PROTOCOL.md §8.10).
    pub(super) fn redial_now(&mut self, now_ms: u64, addr: SocketAddr) {
        let ip = super::config::canonical_ip(addr.ip());
        for l in &mut self.links {
            let down = matches!(l.state, LinkState::Down { retry_ms } if retry_ms > now_ms);
            if down && !l.retired && super::config::canonical_ip(l.addr.ip()) == ip {
                l.state = LinkState::Down { retry_ms: now_ms };
            }
        }
    }

    /// Connecting to peer `peer` failed: retry after the backoff.
    pub fn handle_connect_failed(&mut self, now_ms: u64, peer: usize) {
        self.link_down(now_ms, peer);
    }

    /// Link `i` went down: redial after the backoff, which doubles up to its maximum.
    pub(super) fn link_down(&mut self, now_ms: u64, i: usize) {
        self.log_link_down(now_ms, i);
        self.forget_link_recon(i);
        if let Some(l) = self.links.get_mut(i) {
            l.journal.phase = Phase::AwaitCursor;
            l.dir.push = DirPush::Idle;
            l.dir.wants = None;
            // A retired link is not redialled.
            let retry_ms = match l.retired {
                true => u64::MAX,
                false => now_ms + l.backoff_ms,
            };
            l.state = LinkState::Down { retry_ms };
            l.backoff_ms = (l.backoff_ms * 2).min(self.cfg.timers.backoff_max_ms);
        }
    }

    /// Logs that link `i` went down (a warning, with why and when it is redialled), or
    /// that connecting to it failed (a warning the first time since it was last up, then
    /// debug: one line per backoff would flood the log of a server whose peer is gone).
    fn log_link_down(&mut self, now_ms: u64, i: usize) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        let closing = l.notes.closing.take();
        if l.retired {
            tracing::info!(peer = %l.addr, "peer link closed; not redialled (no longer configured)");
            return;
        }
        let was_up = matches!(l.state, LinkState::Up { .. });
        if !was_up {
            l.notes.failures = l.notes.failures.saturating_add(1);
        }
        let (addr, failures, retry_in_ms) = (l.addr, l.notes.failures, l.backoff_ms);
        let up_s = now_ms.saturating_sub(l.up_since_ms) / 1000;
        let alias = self.located_alias(addr).map(tracing::field::display);
        if was_up {
            let reason = closing.unwrap_or("closed by the peer or the network");
            tracing::warn!(peer = %addr, alias, reason, up_s, retry_in_ms, "peer link down");
        } else {
            let reason = closing.unwrap_or("refused, unreachable or timed out");
            if failures == 1 {
                tracing::warn!(peer = %addr, alias, reason, retry_in_ms, "cannot connect to a peer; retrying");
            } else {
                tracing::debug!(peer = %addr, alias, reason, failures, retry_in_ms, "cannot connect to a peer; retrying");
            }
        }
    }

    /// Notes why this server closes link `i`, for the line [`Self::link_down`] logs.
    pub(super) fn note_link_closing(&mut self, i: usize, why: &'static str) {
        if let Some(l) = self.links.get_mut(i) {
            l.notes.closing = Some(why);
        }
    }

    /// Notes why this server closes connection `conn`, when it is a link of ours.
    pub(super) fn note_conn_closing(&mut self, conn: ConnId, why: &'static str) {
        if let Some(i) = self.conns.get(&conn).and_then(|c| c.link) {
            self.note_link_closing(i, why);
        }
    }

    /// Closes link connection `conn` now (`why`, for the link-down line): what it still
    /// sends is not read.
    pub(super) fn close_link(&mut self, conn: ConnId, why: &'static str) {
        self.note_conn_closing(conn, why);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.close_when_flushed = true;
            c.input.buf.clear();
        }
        self.out.actions.push_back(TcpAction::Close(conn));
    }

    /// Refuses what a peer sent on `conn` (a bad directory record or forward): on a
    /// connection it opened, a status frame then close; on our own link, the link is
    /// dropped. Either way the peer's address is cut off for 10 minutes: its server-role
    /// hellos get 403 and our link to it is not redialled until then (docs/PROTOCOL.md
    /// §8.16, "On the links"; loopback is never cut off).
    pub fn refuse_peer(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        request: u8,
        status: u16,
        detail: &str,
    ) {
        if let Some(c) = self.conns.get(&conn) {
            self.gate.ban(c.addr.ip(), now_ms);
        }
        let link = self.conns.get(&conn).and_then(|c| c.link);
        if link.is_some() {
            tracing::warn!(
                status,
                detail,
                "a peer's answer was refused; dropping the link"
            );
            self.close_link(conn, "a record or forward it sent was refused");
        } else {
            self.fail(conn, status, request, detail);
        }
    }

    /// Redials links that are due, and sends heartbeats on links that are up.
    pub(super) fn link_timeouts(&mut self, now_ms: u64) {
        for i in 0..self.links.len() {
            match self.links[i].state {
                LinkState::Down { retry_ms } if now_ms >= retry_ms => {
                    let addr = self.links[i].addr;
                    if let Some(until) = self.gate.banned_until(addr.ip(), now_ms) {
                        // Cut off after input we refused: not redialled until it ends.
                        self.links[i].state = LinkState::Down { retry_ms: until };
                        continue;
                    }
                    self.links[i].state = LinkState::Connecting;
                    self.out.actions.push_back(TcpAction::Connect {
                        peer: i,
                        addr,
                        tls: self.cfg.peering.tls_links,
                    });
                }
                LinkState::Up {
                    conn,
                    next_heartbeat_ms,
                } if now_ms >= next_heartbeat_ms => self.heartbeat(now_ms, i, conn),
                _ => {}
            }
        }
    }

    /// A heartbeat is due on link `i` (connection `conn`): HeartBeat, Barrier and our
    /// node-list hash; or, when the peer has answered none for 4 intervals (a silent
    /// partition), drop the link and redial rather than wait for TCP to give up (~15 min).
    /// It resumes from the peer's cursor.
    fn heartbeat(&mut self, now_ms: u64, i: usize, conn: ConnId) {
        let l = &self.links[i];
        let heard = l.last_heartbeat_ms.unwrap_or(0).max(l.up_since_ms);
        if now_ms.saturating_sub(heard) > 4 * self.cfg.timers.heartbeat_ms {
            tracing::warn!(peer = %l.addr, silent_ms = now_ms - heard, "peer answers no heartbeat; dropping the link to redial");
            self.note_link_closing(i, "no heartbeat answered in 4 intervals");
            if let Some(c) = self.conns.get_mut(&conn) {
                c.input.refused = true;
            }
            self.out.actions.push_back(TcpAction::Close(conn));
            return;
        }
        self.links[i].state = LinkState::Up {
            conn,
            next_heartbeat_ms: now_ms + self.cfg.timers.heartbeat_ms,
        };
        let confirms = self.links[i].journal.pushed_line;
        let health = self.health();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };

        // HeartBeat, then a barrier, so that an absent UpdateClock is seen.
        c.out.command(&ServerCommand::HeartBeat {
            health,
            clock: self.clock.now,
        });
        c.out.command(&ServerCommand::Barrier);
        c.expect(Asked::HeartBeat, 0);
        c.expect(Asked::Barrier, confirms);
        // The node lists are compared again on every heartbeat, so a change anywhere
        // reaches every server (one hash frame when they agree).
        if let Ok(h) = self.nodes.hash_frame().to_vec() {
            c.ask_node_hash(&h);
        }
    }
}
