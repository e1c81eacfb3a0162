//! The I/O-free TCP plane (docs/PROTOCOL.md §8): connections as byte streams in and out,
//! the Lamport clock, last-writer-wins merges, answers in the order asked, and federated
//! peer links. It never touches a socket, a clock or the database: the event loop feeds it
//! bytes, time and store events, and carries out what it asks (bytes to write, connections
//! to open or close, [`StoreRequest`]s for the store thread, [`TcpAction`]s for the UDP
//! core).
//!
//! Durability before reads (§8.8): every store request goes through one ordered queue, so a
//! snapshot or barrier queued behind a write batch runs only after that batch committed.
//!
//! Layering: this core imports the store's API (`crate::store`: requests, events,
//! [`crate::store::Contact`], `Write`, `JournalRead`), never the store itself; the store
//! never imports the core. [`TcpCore`] owns the parts and routes between them:
//!
//! | part | its one job |
//! |---|---|
//! | `config` | [`TcpConfig`], [`Cidr`], [`NodeSigner`]: tunables and who may peer |
//! | `conn` | one connection: input, output, answers in order and the answer pump |
//! | `commands` | the hello, framing, and each command of both roles (§8.2-§8.4) |
//! | `clients` | a client's proof of its certificate key, and its scope (§8.18) |
//! | `answers` | the peer's answers on links this server opened |
//! | `contacts` | the Lamport clock and the write batch (§8.8, §8.9) |
//! | `stream` | ListAll / AskForUpdate / full pushes streamed from snapshots |
//! | `journal` | our journal pushed on links, and JournalSince answers (§8.10) |
//! | `reconcile` | catch-up by range-based reconciliation of record ids (§8.20) |
//! | `received` | peers' journals received: cursors, lines held, copies dropped |
//! | `links` | peer links: connect, backoff, heartbeats, dropping silent links |
//! | `directory` | directory records and forwards over links (§8.16) |
//! | `nodes` | the node list and node-key proof (§8.15, §8.17) |
//! | `peering` | a new peering taken while running: links retired and added (§7, "Reload") |
//! | `secure` | TLS connections: who may speak the server role, pinned link keys (§8.19) |
//! | `status` | the status answer (§8.5) |
//! | `drain` | stopping gracefully: draining heartbeats, nothing left in flight (§7) |
//! | `gauges` | clock, journal head, connections by role, link lag: plain numbers for metrics |
//! | `outbox` | the queues to the store and the loop, and pending reads by tag |

mod answers;
mod clients;
mod commands;
mod config;
mod conn;
mod contacts;
mod directory;
mod drain;
mod gate;
mod gauges;
mod journal;
mod links;
mod nodes;
mod outbox;
mod peering;
mod received;
mod reconcile;
mod secure;
mod status;
mod stream;

/// The store's request API, which this core speaks (defined in [`crate::store`]).
pub use crate::store::{StoreEvent, StoreRequest};
pub use clients::owner_name;
pub use config::{Cidr, NodeSigner, Peering, SignFn, TcpBounds, TcpConfig, TcpIdentity, TcpTimers};
pub use directory::FpFilter;
pub use gauges::{ConnsByRole, LinkGauge, LinkStatus, TcpGauges};

use crate::federation::nodelist::NodeList;
use crate::wire::status::{REQUEST_TIMEOUT, SERVICE_UNAVAILABLE};
use crate::wire::tcp;
use conn::Conn;
use contacts::{Batch, Clock};
use journal::Journal;
use links::{Link, LinkState};
use outbox::{Outbox, Reads};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Identifies a TCP connection between the loop and the core.
pub type ConnId = u64;

/// Something the loop must do for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpAction {
    /// Open a TCP connection to peer number `peer` at `addr`; report with
    /// [`TcpCore::handle_connected`] or [`TcpCore::handle_connect_failed`].
    Connect {
        /// Index into the configured peers.
        peer: usize,
        /// Where.
        addr: SocketAddr,
        /// Run TLS 1.3 on it (docs/PROTOCOL.md §8.19) and report with
        /// [`TcpCore::handle_connected_tls`] once the handshake is done.
        tls: bool,
    },
    /// Close this connection now (its output has been flushed or is abandoned).
    Close(ConnId),
    /// Compute the UDP directory's digest and report it with
    /// [`TcpCore::handle_directory_digest`] (for a status answer).
    DirectoryDigest {
        /// Echo it back.
        tag: u64,
    },
    /// A directory record (the body of a DirRecord frame, 0-4096 bytes) from a peer on
    /// `conn`: apply it to the UDP directory; refuse with [`TcpCore::refuse_peer`] if bad,
    /// pass it on with [`TcpCore::push_directory`] if it changed state.
    PeerRecord {
        /// Where it came from (a connection the peer opened, or our link's answer).
        conn: ConnId,
        /// The record body.
        body: Vec<u8>,
    },
    /// A forwarded punch request or relayed event (the body of a Forward frame) from a
    /// peer on `conn`: hand it to the UDP core.
    Forward {
        /// Where it came from.
        conn: ConnId,
        /// The forward body.
        body: Vec<u8>,
    },
    /// A client's proof of its certificate key on `conn` (docs/PROTOCOL.md §8.18): check
    /// `cert` (self-signed, in date, an allowed key: the registration check, §5.4) and
    /// `signature` over `message` (57 bytes) with its key, and report with
    /// [`TcpCore::client_verified`].
    VerifyClient {
        /// The client's connection.
        conn: ConnId,
        /// The certificate's DER bytes (at most 4092).
        cert: Vec<u8>,
        /// What the signature must cover: context and nonce.
        message: Vec<u8>,
        /// The signature.
        signature: Vec<u8>,
    },
    /// Write up to `max` directory records after fingerprint `after` (ascending order) as
    /// DirRecord frames, and report them with [`TcpCore::handle_directory_page`].
    DirectoryPage {
        /// Echo it back.
        tag: u64,
        /// Last fingerprint already sent (`None`: from the start).
        after: Option<[u8; 32]>,
        /// Most records.
        max: usize,
        /// Only the entries with these fingerprints (`None`: all).
        only: Option<FpFilter>,
    },
    /// Read every directory entry's `(timestamp, id, fingerprint)` and report them with
    /// [`TcpCore::handle_directory_ids`] (a reconciliation, docs/PROTOCOL.md §8.20).
    DirectoryIds {
        /// Echo it back.
        tag: u64,
    },
}

/// Counters of the TCP plane.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TcpStats {
    /// Contact writes accepted from clients.
    pub client_updates: u64,
    /// Contact records received from peers (pushes and AskForUpdate answers).
    pub peer_updates: u64,
    /// Status frames sent with a non-200 status.
    pub errors: u64,
    /// Store batches that failed.
    pub store_failures: u64,
    /// Clocks refused as implausible.
    pub clocks_refused: u64,
    /// Records learned from a peer that changed state and were passed on to our links.
    pub forwarded: u64,
    /// Node-list entries learned from peers that changed our list.
    pub nodes_learned: u64,
    /// Directory records received from peers (pushes and answers).
    pub dir_records_in: u64,
    /// Journal lines received twice (from two connections of one peer) and dropped.
    pub duplicate_lines: u64,
}

/// The TCP plane's state machine: routes between its parts (connections, links, the
/// Lamport clock and write batch, journals, the node list) and the outside (the loop and
/// the store).
pub struct TcpCore {
    cfg: TcpConfig,
    /// The Lamport clock.
    clock: Clock,
    /// The write batch of this loop turn, and the batches the store has not answered.
    batch: Batch,
    conns: HashMap<ConnId, Conn>,
    links: Vec<Link>,
    /// Store requests and loop actions, in order.
    out: Outbox,
    /// Who waits for each pending store read.
    reads: Reads,
    /// Our journal, and what we hold of peers' journals.
    journal: Journal,
    /// The node list (docs/PROTOCOL.md §8.15): our own entry and every server learned.
    nodes: NodeList,
    /// The nonces made, and whether a drain began.
    life: drain::Life,
    /// Connections per address prefix, and peers cut off.
    gate: gate::Gate,
    stats: TcpStats,
}

impl TcpCore {
    /// A core starting with the persisted Lamport `clock`, at `now_ms`.
    pub fn new(cfg: TcpConfig, clock: u32, now_ms: u64) -> Self {
        let cfg_peers_empty = cfg.peering.peers.is_empty();
        let max_clock_jump = cfg.bounds.max_clock_jump;
        let links = cfg
            .peering
            .peers
            .iter()
            .map(|&addr| Link::new(addr, now_ms, cfg.timers.backoff_min_ms, false))
            .collect();
        let nodes = NodeList::from_entries(cfg.identity.node.iter().cloned().collect());
        TcpCore {
            cfg,
            clock: Clock::new(clock, max_clock_jump, !cfg_peers_empty, now_ms),
            batch: Batch::new(),
            conns: HashMap::new(),
            links,
            out: Outbox::new(),
            reads: Reads::default(),
            journal: Journal::default(),
            nodes,
            life: drain::Life::default(),
            gate: gate::Gate::default(),
            stats: TcpStats::default(),
        }
    }

    /// Sets our journal's id and its last line, as the store has them (at start).
    pub fn with_journal(mut self, journal_id: u64, head: u64) -> Self {
        self.set_journal(journal_id, head);
        self
    }

    /// Sets our journal's id and last line (for a store written outside the core, as a
    /// test that preloads one does).
    pub fn set_journal(&mut self, journal_id: u64, head: u64) {
        self.journal.id = journal_id;
        self.journal.head = head;
    }

    /// The Lamport clock now.
    pub fn clock(&self) -> u32 {
        self.clock.now
    }

    /// Counters so far.
    pub fn stats(&self) -> &TcpStats {
        &self.stats
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A connection was accepted from `addr`.
    ///
    /// A connection past [`TcpBounds::max_conns_per_prefix`] from its address's prefix
    /// gets 503 and is closed (loopback is exempt, as from the UDP rate limits). Past
    /// [`TcpBounds::max_conns`] in all, the busiest prefix makes room (see there).
    pub fn handle_accept(&mut self, now_ms: u64, conn: ConnId, addr: SocketAddr) {
        self.conns.insert(conn, Conn::new(addr, now_ms, None));
        let open = self.gate.opened(addr.ip());
        let local = config::canonical_ip(addr.ip()).is_loopback();
        if open > self.cfg.bounds.max_conns_per_prefix && !local {
            let from = crate::core::logs::ClientAddr(addr);
            tracing::debug!(%from, "too many connections from one address; refused");
            let detail = "too many connections from your address";
            self.fail_now(conn, SERVICE_UNAVAILABLE, tcp::REQUEST_HELLO, detail);
        } else {
            self.make_room(conn);
        }
    }

    /// Sets [`TcpBounds::max_conns`]: the loop's budget of descriptors for accepted
    /// connections.
    pub fn set_max_conns(&mut self, max: usize) {
        self.cfg.bounds.max_conns = max;
    }

    /// The connection was closed by the other side or failed.
    pub fn handle_closed(&mut self, now_ms: u64, conn: ConnId) {
        self.drop_answers(conn);
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(i) = c.link {
                self.link_down(now_ms, i);
            } else {
                self.gate.closed(c.addr.ip());
            }
        }
        self.reads.stream_waiters.retain(|w| *w != conn);
        self.batch.waiters.retain(|w| *w != conn);
        self.end_sessions(conn);
        self.wake_stream_waiters(now_ms);
    }

    /// How many more bytes the core takes from `conn` now (0: stop reading, backpressure).
    pub fn read_budget(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn) {
            // Output backpressure is applied per command in `parse` (only commands that
            // produce an answer wait); unparsed input is what stops reading.
            Some(c) if !c.input.refused => {
                // A node list may be up to 3.2 MB: take a whole frame once it has started,
                // from a link of ours or a peer that needs no proof or has given it.
                let peer = c.role == Some(tcp::Role::Server);
                let trusted = c.link.is_some() || (peer && (!c.auth.required || c.auth.proved));
                let cap =
                    match c.input.buf.first() {
                        Some(
                            &(tcp::CMD_NODE_LIST | tcp::CMD_NODE_LIST_DIFF | tcp::CMD_NODE_SYNC),
                        ) if trusted => tcp::MAX_FRAME_LEN,
                        _ => 64 * 1024,
                    };
                cap.saturating_sub(c.input.buf.len())
            }
            _ => 0,
        }
    }

    /// Bytes read from `conn`.
    pub fn handle_data(&mut self, now_ms: u64, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.input.refused || c.out.close_when_flushed {
            return; // a refused connection: ignore what follows
        }
        // The stall clock measures how long output waits for a reader; a new request
        // starts it afresh (an idle connection that asks again is not stalled).
        if c.out.pending() == 0 {
            c.out.last_progress_ms = now_ms;
        }
        c.input.last_in_ms = now_ms;
        c.input.buf.extend_from_slice(data);
        if let Some(l) = c.link.and_then(|i| self.links.get_mut(i)) {
            l.journal.bytes_received += data.len() as u64;
        }
        self.clock.refill(now_ms);
        self.parse(now_ms, conn);
    }

    /// A report from the store thread.
    pub fn handle_store(&mut self, now_ms: u64, ev: StoreEvent) {
        match ev {
            StoreEvent::Applied { seq, changed } => self.on_applied(seq, &changed),
            StoreEvent::Failed { seq, error } => self.on_failed(seq, &error),
            StoreEvent::BarrierDone { tag } => self.on_barrier_done(tag),
            StoreEvent::SnapshotReady { stream, count } => self.on_snapshot_ready(stream, count),
            StoreEvent::Page {
                stream,
                contacts,
                more,
            } => self.on_page(stream, contacts, more),
            StoreEvent::Digest { tag, count, sha512 } => self.on_digest(now_ms, tag, count, sha512),
            StoreEvent::Cursor { tag, line } => self.on_cursor(tag, line),
            StoreEvent::JournalPage { tag, entries, read } => {
                self.on_journal_page(tag, &entries, read);
            }
            StoreEvent::Ids { tag, items } => self.on_ids(now_ms, tag, items),
            StoreEvent::StreamFailed { stream, error } => self.on_read_failed(stream, &error),
        }
        // A stream that ended frees its slot; an applied batch frees room for writes.
        self.wake_stream_waiters(now_ms);
        self.wake_write_waiters(now_ms);
    }

    /// Any store read can fail: a stream, a cursor, a status digest (all answers on a
    /// connection: refused at once, 503) or a journal page (a link: dropped; it redials and
    /// retries). Nothing is left waiting forever.
    fn on_read_failed(&mut self, tag: u64, error: &str) {
        tracing::error!(tag, error, "a store read failed");
        if let Some(conn) = self.reads.take_conn(tag) {
            self.fail_now(
                conn,
                SERVICE_UNAVAILABLE,
                0xFF,
                "store failure while reading",
            );
        } else if let Some(i) = self.reads.page_reads.remove(&tag) {
            if let Some(LinkState::Up { conn, .. }) = self.links.get(i).map(|l| &l.state) {
                let conn = *conn;
                self.close_link(conn, "a store read for it failed");
            }
        }
    }
}

impl TcpCore {
    /// Ends a loop turn: the writes gathered in it go to the store as one batch.
    pub fn end_turn(&mut self) {
        self.flush_batch();
    }

    /// The next request for the store thread, in order.
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        self.out.requests.pop_front()
    }

    /// Takes every pending store request, in order.
    pub fn drain_store(&mut self) -> Vec<StoreRequest> {
        std::mem::take(&mut self.out.requests).into()
    }

    /// Puts an action back at the front (the loop could not do it now).
    pub fn requeue(&mut self, action: TcpAction) {
        self.out.actions.push_front(action);
    }

    /// True when actions wait for the loop.
    pub fn has_actions(&self) -> bool {
        !self.out.actions.is_empty()
    }

    /// The next thing the loop must do.
    pub fn poll_action(&mut self) -> Option<TcpAction> {
        self.out.actions.pop_front()
    }

    /// Bytes waiting to be written on `conn`.
    pub fn output(&self, conn: ConnId) -> &[u8] {
        self.conns.get(&conn).map_or(&[], |c| c.out.unwritten())
    }

    /// `n` bytes of [`Self::output`] were written.
    pub fn consumed(&mut self, now_ms: u64, conn: ConnId, n: usize) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.out.consumed(now_ms, n);
        if let Some(l) = c.link.and_then(|i| self.links.get_mut(i)) {
            l.journal.bytes_sent += n as u64;
        }
        self.pump(conn);
        if let Some(i) = self.conns.get(&conn).and_then(|c| c.link) {
            self.next_page(i);
            self.next_dir_page(i);
        }
        // Answers that were held back may let more requests be parsed.
        self.parse(now_ms, conn);
        self.wake_stream_waiters(now_ms);
    }

    /// Connection ids the core knows (for the loop's bookkeeping).
    pub fn conn_ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// Hello timeouts, stalled readers, heartbeats and reconnects.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let mut late = Vec::new();
        let mut stalled = Vec::new();
        for (&id, c) in &self.conns {
            if c.role.is_none()
                && now_ms >= c.accepted_ms + self.cfg.timers.hello_timeout_ms
                && !c.input.refused
            {
                late.push(id);
            } else if c.out.pending() > 0
                && now_ms >= c.out.last_progress_ms + self.cfg.timers.stall_ms
            {
                stalled.push(id);
            }
        }
        for id in late {
            let secs = self.cfg.timers.hello_timeout_ms / 1000;
            self.fail(
                id,
                REQUEST_TIMEOUT,
                0,
                &format!("no complete hello within {secs} s"),
            );
        }
        for id in stalled {
            tracing::info!(conn = id, "dropping a connection that stopped reading");
            self.out.actions.push_back(TcpAction::Close(id));
        }
        self.link_timeouts(now_ms);
        self.reconcile_retries(now_ms);
        self.anti_entropy(now_ms);
    }

    /// The next time (ms) [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let conns = self.conns.values().filter_map(|c| {
            if c.role.is_none() && !c.input.refused {
                Some(c.accepted_ms + self.cfg.timers.hello_timeout_ms)
            } else if c.out.pending() > 0 {
                Some(c.out.last_progress_ms + self.cfg.timers.stall_ms)
            } else {
                None
            }
        });
        let links = self.links.iter().filter_map(Link::deadline);
        conns.chain(links).chain(self.reconcile_deadline()).min()
    }
}
