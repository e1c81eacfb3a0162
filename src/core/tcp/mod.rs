//! The I/O-free TCP plane (seed 003, BRIEF.md "TCP plane"): connections as byte streams in
//! and out, the Lamport clock, last-writer-wins merges, answers in the order asked, and
//! federated peer links. It never touches a socket, a clock or the database: the event
//! loop feeds it bytes, time and store events, and carries out what it asks (bytes to
//! write, connections to open or close, requests for the store thread).
//!
//! Durability before reads: every store request goes through one ordered channel, so a
//! snapshot or barrier queued behind a write batch runs only after that batch committed.

use crate::federation::nodelist::{NodeEntry, NodeList, NodeListFrame, HASH_LEN};
use crate::store::{Contact, JournalRead, Write};
/// The store's request API, which this core speaks (defined in [`crate::store`]).
pub use crate::store::{StoreEvent, StoreRequest};
use crate::wire::tcp::{self, ClientCommand, Hello, Role, ServerCommand, StatusFrame};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

mod config;
mod conn;
mod contacts;
mod directory;
mod journal;
mod links;
mod outbox;
mod stream;

use config::canonical_ip;
pub use config::{Cidr, NodeSigner, SignFn, TcpConfig};
use conn::{status_bytes, status_detail, Answer, Conn, Expect, STATUS_OK};
use contacts::{to_contact, Batch, Clock};
use directory::DirPush;
use journal::{cursor_key, journal_frame, Journal, Phase};
use links::{Link, LinkState, MAX_LINKS};
use outbox::{Outbox, Reads};

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
    /// Write up to `max` directory records after fingerprint `after` (ascending order) as
    /// DirRecord frames, and report them with [`TcpCore::handle_directory_page`].
    DirectoryPage {
        /// Echo it back.
        tag: u64,
        /// Last fingerprint already sent (`None`: from the start).
        after: Option<[u8; 32]>,
        /// Most records.
        max: usize,
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
    /// Authentication nonces made so far.
    nonces: u64,
    stats: TcpStats,
}

impl TcpCore {
    /// A core starting with the persisted Lamport `clock`, at `now_ms`.
    pub fn new(cfg: TcpConfig, clock: u32, now_ms: u64) -> Self {
        let cfg_peers_empty = cfg.peers.is_empty();
        let max_clock_jump = cfg.max_clock_jump;
        let links = cfg
            .peers
            .iter()
            .map(|&addr| Link::new(addr, now_ms, cfg.backoff_min_ms, false))
            .collect();
        let nodes = NodeList::from_entries(cfg.node.iter().cloned().collect());
        TcpCore {
            cfg,
            clock: Clock::new(clock, max_clock_jump, !cfg_peers_empty),
            batch: Batch::new(),
            conns: HashMap::new(),
            links,
            out: Outbox::new(),
            reads: Reads::default(),
            journal: Journal::default(),
            nodes,
            nonces: 0,
            stats: TcpStats::default(),
        }
    }

    /// Adds the node list the store kept (its canonical bytes, [`crate::store::Store::
    /// node_list`]) at start, and links to the servers in it (unless `no_mesh`). Our own
    /// entry is always the one configured; bytes that do not parse are ignored (logged).
    pub fn with_nodes(mut self, canonical: &[u8], now_ms: u64) -> Self {
        if canonical.is_empty() {
            return self;
        }
        let mut frame = Vec::with_capacity(1 + canonical.len());
        frame.push(tcp::CMD_NODE_LIST);
        frame.extend_from_slice(canonical);
        match NodeListFrame::parse(&frame) {
            Ok(NodeListFrame::List(entries)) => {
                let own = self.cfg.node.as_ref().map(|n| *n.uid());
                let entries: Vec<NodeEntry> = entries
                    .into_iter()
                    .filter(|e| Some(*e.uid()) != own)
                    .collect();
                let changed = self.nodes.merge(&entries);
                self.nodes_changed(now_ms, changed.len());
            }
            _ => tracing::warn!("the stored node list does not parse; starting without it"),
        }
        self
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

    /// True when link `peer` is up.
    pub fn link_up(&self, peer: usize) -> bool {
        matches!(
            self.links.get(peer).map(|l| &l.state),
            Some(LinkState::Up { .. })
        )
    }

    /// A connection was accepted from `addr`.
    pub fn handle_accept(&mut self, now_ms: u64, conn: ConnId, addr: SocketAddr) {
        self.conns.insert(conn, Conn::new(addr, now_ms, None));
    }

    /// The connection was closed by the other side or failed.
    pub fn handle_closed(&mut self, now_ms: u64, conn: ConnId) {
        self.drop_answers(conn);
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(i) = c.link {
                self.link_down(now_ms, i);
            }
        }
    }

    fn link_down(&mut self, now_ms: u64, i: usize) {
        if let Some(l) = self.links.get_mut(i) {
            l.journal.phase = Phase::AwaitCursor;
            l.dir.push = DirPush::Idle;
            l.state = LinkState::Down {
                retry_ms: now_ms + l.backoff_ms,
            };
            l.backoff_ms = (l.backoff_ms * 2).min(self.cfg.backoff_max_ms);
        }
    }

    /// The connection to peer `peer` is established as `conn`: send the hello and ask for
    /// the full list.
    pub fn handle_connected(&mut self, now_ms: u64, peer: usize, conn: ConnId) {
        let Some(link) = self.links.get_mut(peer) else {
            self.out.actions.push_back(TcpAction::Close(conn));
            return;
        };
        link.state = LinkState::Up {
            conn,
            next_heartbeat_ms: now_ms + self.cfg.heartbeat_ms,
        };
        let mut c = Conn::new(link.addr, now_ms, Some(peer));
        c.role = Some(Role::Server);
        let mut hello = [0u8; tcp::HELLO_LEN];
        let hello_ok = Hello {
            role: Role::Server,
            name: &self.cfg.name,
        }
        .emit(&mut hello)
        .is_ok();
        if hello_ok {
            c.out.extend_from_slice(&hello);
        }
        if self.cfg.signer.is_some() && self.cfg.node.is_some() {
            // Prove our node key first; the rest follows the nonce (`link_start`).
            c.out.push(tcp::CMD_AUTH_CHALLENGE);
            c.expects.push_back(Expect::Nonce);
            self.conns.insert(conn, c);
            if let Some(l) = self.links.get_mut(peer) {
                l.journal.phase = Phase::AwaitCursor;
                l.up_since_ms = now_ms;
            }
            return;
        }
        self.conns.insert(conn, c);
        self.link_start(now_ms, peer, conn);
    }

    /// A link's opening requests: cursor query, node list hash, directory request, and the
    /// full push of our directory.
    fn link_start(&mut self, now_ms: u64, peer: usize, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // Ask the peer how much of our journal it holds; we push from there (seed 004).
        c.out.push(tcp::CMD_CURSOR_QUERY);
        c.out.extend_from_slice(&self.journal.id.to_be_bytes());
        c.expects.push_back(Expect::Cursor);
        // Compare node lists (seed 000), and ask for the peer's whole directory (seed 002's
        // client_update_request); our own goes to it as a full push, paged below.
        if let Ok(h) = self.nodes.hash_frame().to_vec() {
            c.ask_node_hash(&h);
        }
        c.out.extend_from_slice(&[tcp::CMD_DIR_REQUEST, 0, 0]);
        c.expects.push_back(Expect::Directory);
        if let Some(l) = self.links.get_mut(peer) {
            l.journal.phase = Phase::AwaitCursor;
            l.up_since_ms = now_ms;
        }
        self.start_dir_push(peer);
    }

    /// Connecting to peer `peer` failed: retry after the backoff.
    pub fn handle_connect_failed(&mut self, now_ms: u64, peer: usize) {
        self.link_down(now_ms, peer);
    }

    /// How many more bytes the core takes from `conn` now (0: stop reading, backpressure).
    pub fn read_budget(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn) {
            // Output backpressure is applied per command in `parse` (only commands that
            // produce an answer wait); unparsed input is what stops reading.
            Some(c) if !c.input.refused => {
                // A node list may be up to 3.2 MB: take a whole frame once it has started.
                let cap = match c.input.buf.first() {
                    Some(&(tcp::CMD_NODE_LIST | tcp::CMD_NODE_LIST_DIFF)) => tcp::MAX_FRAME_LEN,
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
        self.parse(now_ms, conn);
    }

    fn parse(&mut self, now_ms: u64, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.input.refused || c.out.close_when_flushed {
                return;
            }
            // A link's incoming bytes are answers to us: always read them (gating them on
            // our own output could deadlock two servers pushing to each other).
            if c.link.is_some() {
                if !self.parse_answer(now_ms, conn) {
                    return;
                }
                continue;
            }
            let Some(role) = c.role else {
                if let Some(&b) = c.input.buf.first() {
                    if b != tcp::ROLE_SERVER && b != tcp::ROLE_CLIENT {
                        let detail = format!("malformed hello: role byte {b} (1 server, 2 client)");
                        self.fail(conn, 400, tcp::REQUEST_HELLO, &detail);
                        return;
                    }
                }
                if c.input.buf.len() < tcp::HELLO_LEN {
                    return;
                }
                let hello: Vec<u8> = c.input.buf.drain(..tcp::HELLO_LEN).collect();
                let addr = c.addr;
                match Hello::parse(&hello) {
                    Ok(h) => {
                        let configured = self.cfg.peer_allowed(addr.ip());
                        let known = self.known_node_ip(addr.ip());
                        let allowed = h.role == Role::Client || configured || known;
                        let must_auth = h.role == Role::Server && !configured;
                        let name = h.name.to_string();
                        let role = h.role;
                        if !allowed {
                            tracing::warn!(%addr, name, "refused a server hello from an address that is not a configured or allowed peer");
                            self.fail(
                                conn,
                                403,
                                0,
                                "server role is accepted only from configured or allowed peers",
                            );
                            return;
                        }
                        let c = self.conns.get_mut(&conn).expect("present");
                        c.role = Some(role);
                        c.name = name;
                        c.auth.required = must_auth;
                    }
                    Err(e) => {
                        self.fail(conn, 400, 0, &format!("malformed hello: {e}"));
                        return;
                    }
                }
                continue;
            };
            let len = match tcp::command_len(role, &c.input.buf) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    let b = c.input.buf.first().copied().unwrap_or(0xFF);
                    let detail = match e {
                        crate::wire::WireError::UnknownCommand => "unknown command".to_string(),
                        e => format!("malformed frame: {e}"),
                    };
                    self.fail(conn, 400, b, &detail);
                    return;
                }
            };
            // A command that produces an answer waits while this connection's output (plus
            // the short answers already due) is at its bound: a client that never reads
            // cannot grow the server's memory. Updates produce none and always go through.
            let answers = !matches!(
                (role, c.input.buf[0]),
                (_, tcp::CMD_UPDATE)
                    | (
                        Role::Server,
                        tcp::CMD_UPDATE_CLOCK | tcp::CMD_DIR_RECORD | tcp::CMD_FORWARD
                    )
            );
            if answers
                && (c.answers.len() >= self.cfg.max_pending
                    || c.committed_out() >= self.cfg.max_out)
            {
                return;
            }
            let frame: Vec<u8> = c.input.buf.drain(..len).collect();
            match role {
                Role::Client => self.client_command(now_ms, conn, &frame),
                Role::Server => self.server_command(now_ms, conn, &frame),
            }
        }
    }

    /// True when `ip` is the address of a server in our node list (other than us): it may
    /// open a role-1 connection, but must prove the node key published there.
    fn known_node_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        let own = self.cfg.node.as_ref().map(|n| *n.uid());
        self.nodes
            .entries()
            .iter()
            .filter(|e| Some(*e.uid()) != own)
            .filter_map(|e| e.location().parse::<SocketAddr>().ok())
            .any(|a| canonical_ip(a.ip()) == ip)
    }

    fn client_command(&mut self, _now_ms: u64, conn: ConnId, frame: &[u8]) {
        let cmd = match ClientCommand::parse(frame) {
            Ok(c) => c,
            Err(e) => return self.fail(conn, 400, frame[0], &format!("malformed command: {e}")),
        };
        match cmd {
            ClientCommand::Update(f) => self.client_update(conn, &f),
            ClientCommand::ListAll => self.open_stream(conn, Role::Client),
            ClientCommand::Barrier => self.barrier(conn),
            ClientCommand::Status => self.status(conn),
        }
    }

    fn server_command(&mut self, now_ms: u64, conn: ConnId, frame: &[u8]) {
        let cmd = match ServerCommand::parse(frame) {
            Ok(c) => c,
            Err(e) => return self.fail(conn, 400, frame[0], &format!("malformed command: {e}")),
        };
        let gated = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.auth.required && !c.auth.proved);
        if gated
            && !matches!(
                cmd,
                ServerCommand::AuthChallenge | ServerCommand::AuthProof(_)
            )
        {
            return self.fail(
                conn,
                401,
                frame[0],
                "prove the node key first (commands 20 and 21)",
            );
        }
        match cmd {
            ServerCommand::AuthChallenge => {
                self.nonces += 1;
                let mut h = <sha2::Sha256 as sha2::Digest>::new();
                sha2::Digest::update(&mut h, self.cfg.seed);
                sha2::Digest::update(&mut h, b"auth nonce");
                sha2::Digest::update(&mut h, self.nonces.to_be_bytes());
                let nonce: [u8; 32] = sha2::Digest::finalize(h).into();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.auth.nonce = Some(nonce);
                }
                let mut b = vec![tcp::CMD_AUTH_CHALLENGE];
                b.extend_from_slice(&nonce);
                self.push_answer(conn, Answer::Ready(b));
            }
            ServerCommand::AuthProof(body) => self.auth_proof(now_ms, conn, body),
            ServerCommand::Update { clock, fields } => {
                if !self.accept_clock(conn, tcp::CMD_UPDATE, clock) {
                    return;
                }
                self.clock.observe(clock);
                self.batch.merge(to_contact(&fields, clock));
                self.stats.peer_updates += 1;
                self.count_received(conn, false);
            }
            ServerCommand::HeartBeat { clock, .. } => {
                if !self.accept_clock(conn, tcp::CMD_HEARTBEAT, clock) {
                    return;
                }
                if self.clock.now >= clock {
                    let mut b = [0u8; 5];
                    if tcp::emit_update_clock(self.clock.now, &mut b).is_ok() {
                        self.push_answer(conn, Answer::Ready(b.to_vec()));
                    }
                } else {
                    self.clock.observe(clock);
                }
            }
            ServerCommand::UpdateClock(clock) => {
                if !self.accept_clock(conn, tcp::CMD_UPDATE_CLOCK, clock) {
                    return;
                }
                self.clock.observe(clock);
            }
            ServerCommand::AskForUpdate => self.open_stream(conn, Role::Server),
            ServerCommand::Barrier => self.barrier(conn),
            ServerCommand::Status => self.status(conn),
            ServerCommand::CursorQuery { journal_id } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer_journal = Some(journal_id);
                }
                // The peer opened a new link for this journal: an older connection of its
                // that has been silent for two heartbeats (dead on its side, e.g. dropped
                // in a partition) must not deliver retransmitted lines after this cursor is
                // read, or they would come twice. A live one (heartbeats) is left alone.
                let quiet = 2 * self.cfg.heartbeat_ms;
                let stale: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(&id, c)| {
                        id != conn
                            && c.link.is_none()
                            && c.peer_journal == Some(journal_id)
                            && now_ms.saturating_sub(c.input.last_in_ms) >= quiet
                    })
                    .map(|(&id, _)| id)
                    .collect();
                for id in stale {
                    tracing::info!(
                        conn = id,
                        "closing a peer's older connection for the same journal"
                    );
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.input.refused = true;
                        c.input.buf.clear();
                    }
                    self.drop_answers(id);
                    self.out.actions.push_back(TcpAction::Close(id));
                }
                self.flush_batch();
                let tag = self.out.tag();
                self.reads.cursor_reads.insert(tag, conn);
                self.out.requests.push(StoreRequest::Cursor {
                    tag,
                    peer: cursor_key(journal_id),
                });
                self.push_answer(conn, Answer::Cursor { tag, line: None });
            }
            ServerCommand::JournalUpdate {
                line,
                clock,
                fields,
            } => {
                let Some(id) = self.conns.get(&conn).and_then(|c| c.peer_journal) else {
                    return self.fail(
                        conn,
                        400,
                        tcp::CMD_JOURNAL_UPDATE,
                        "journal update before a cursor query",
                    );
                };
                if !self.accept_clock(conn, tcp::CMD_JOURNAL_UPDATE, clock) {
                    return;
                }
                if self
                    .journal
                    .lines_held
                    .get(&id)
                    .is_some_and(|&held| line <= held)
                {
                    // Already applied, from another connection of the same peer (an old
                    // one still delivering after a partition healed while the new one
                    // resent from the cursor): lines of one journal come in order, so
                    // whatever is at or below the highest applied line is a copy.
                    self.stats.duplicate_lines += 1;
                    return;
                }
                self.note_line(id, line);
                self.clock.observe(clock);
                self.batch.merge(to_contact(&fields, clock));
                self.batch.writes.push(Write::Cursor {
                    peer: cursor_key(id),
                    journal_id: id,
                    line,
                });
                self.stats.peer_updates += 1;
                self.count_received(conn, true);
            }
            ServerCommand::JournalMark { line } => {
                let Some(id) = self.conns.get(&conn).and_then(|c| c.peer_journal) else {
                    return self.fail(
                        conn,
                        400,
                        tcp::CMD_JOURNAL_MARK,
                        "journal mark before a cursor query",
                    );
                };
                self.batch.writes.push(Write::Cursor {
                    peer: cursor_key(id),
                    journal_id: id,
                    line,
                });
                self.note_line(id, line);
                // A peer says we hold its journal: the first catch-up is over.
                self.clock.catching_up = false;
            }
            ServerCommand::NodeList(frame) => self.node_list_command(now_ms, conn, frame),
            ServerCommand::DirRecord(body) => self.dir_record(conn, body),
            ServerCommand::DirRequest => self.dir_request(conn),
            ServerCommand::Forward(body) => self.forward_in(conn, body),
            ServerCommand::JournalSince {
                journal_id,
                since,
                limit,
            } => self.journal_since(conn, journal_id, since, limit),
        }
    }

    /// Notes that we hold peer journal `id` up to `line` (the highest line applied or
    /// recorded; at most 1024 journals are tracked, the rest are merged unchecked).
    fn note_line(&mut self, id: u64, line: u64) {
        if !self.journal.lines_held.contains_key(&id) && self.journal.lines_held.len() >= 1024 {
            return;
        }
        let held = self.journal.lines_held.entry(id).or_insert(0);
        *held = (*held).max(line);
    }

    /// Counts a journal line (`line`) or a full-push record received from the peer on
    /// `conn`, under its hello name (for `status`: what catching up cost).
    fn count_received(&mut self, conn: ConnId, line: bool) {
        let Some(name) = self.conns.get(&conn).map(|c| c.name.as_str()) else {
            return;
        };
        // A name is allocated once, when first seen, not for every line.
        if !self.journal.received.contains_key(name) {
            if self.journal.received.len() >= 1024 {
                return;
            }
            self.journal.received.insert(name.to_string(), (0, 0));
        }
        let Some(e) = self.journal.received.get_mut(name) else {
            return;
        };
        if line {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// Frames 10-12 from a peer: answer a hash with ours, a whole list with the diff.
    fn node_list_command(&mut self, now_ms: u64, conn: ConnId, frame: &[u8]) {
        let cmd = frame[0];
        let parsed = match NodeListFrame::parse(frame) {
            Ok(f) => f,
            Err(crate::wire::WireError::BadLength) if cmd == tcp::CMD_NODE_LIST_HASH => {
                let detail = format!(
                    "node list hash must be {HASH_LEN} bytes, not {}",
                    frame.get(1).copied().unwrap_or(0)
                );
                return self.fail(conn, 400, cmd, &detail);
            }
            Err(e) => return self.fail(conn, 400, cmd, &format!("malformed node list: {e}")),
        };
        match parsed {
            NodeListFrame::Hash(_) => {
                if let Ok(h) = self.nodes.hash_frame().to_vec() {
                    self.push_answer(conn, Answer::Ready(h));
                }
            }
            NodeListFrame::List(entries) => {
                if crate::federation::nodelist::has_duplicate_uids(&entries) {
                    return self.fail(conn, 400, cmd, "node list with duplicate uids");
                }
                if let Some(e) = entries.iter().find(|e| self.is_own_uid_forged(e)) {
                    tracing::warn!(
                        alias = e.alias(),
                        "a peer sent a newer entry for our own uid; ignored"
                    );
                }
                let entries: Vec<NodeEntry> = entries
                    .into_iter()
                    .filter(|e| !self.is_own_uid_forged(e))
                    .collect();
                let changed = self.nodes.merge(&entries);
                let diff = self.nodes.diff_for(&entries);
                if let Ok(d) = NodeListFrame::Diff(diff).to_vec() {
                    self.push_answer(conn, Answer::Ready(d));
                }
                self.nodes_changed(now_ms, changed.len());
            }
            NodeListFrame::Diff(_) => {
                self.fail(conn, 400, cmd, "a node list diff is only ever an answer");
            }
        }
    }

    /// AuthProof (21): checks the opener's signature over our nonce with the key the node
    /// list publishes for its uid (or, for a server admitted by `--peer`/`--allow-peer`
    /// whose uid is new, the key it presents, learned on first contact).
    fn auth_proof(&mut self, now_ms: u64, conn: ConnId, body: &[u8]) {
        let cmd = tcp::CMD_AUTH_PROOF;
        let Some(nonce) = self.conns.get_mut(&conn).and_then(|c| c.auth.nonce.take()) else {
            return self.fail(
                conn,
                400,
                cmd,
                "a proof needs a challenge first (command 20)",
            );
        };
        let Ok((entry, n)) = NodeEntry::parse_prefix(body) else {
            return self.fail(conn, 400, cmd, "malformed node entry in the proof");
        };
        let rest = &body[n..];
        let Some((&sig_len, sig)) = rest.split_first() else {
            return self.fail(conn, 400, cmd, "proof without a signature");
        };
        if sig.len() != usize::from(sig_len) {
            return self.fail(conn, 400, cmd, "signature length does not match");
        }
        let own = self.cfg.node.as_ref().map(|n| *n.uid());
        if Some(*entry.uid()) == own {
            return self.fail(conn, 401, cmd, "that uid is ours");
        }
        let ip = self.conns.get(&conn).map(|c| c.addr.ip());
        match self.nodes.get(entry.uid()) {
            Some(k) if k.public_key() != entry.public_key() => {
                return self.fail(conn, 401, cmd, "key does not match the node list");
            }
            Some(_) => {}
            None if ip.is_some_and(|ip| self.cfg.peer_allowed(ip)) => {}
            None => {
                return self.fail(
                    conn,
                    401,
                    cmd,
                    "unknown node: admit it with --allow-peer or --peer",
                );
            }
        }
        let mut msg = Vec::with_capacity(tcp::AUTH_CONTEXT.len() + 32 + n);
        msg.extend_from_slice(tcp::AUTH_CONTEXT);
        msg.extend_from_slice(&nonce);
        msg.extend_from_slice(&body[..n]);
        let key =
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, entry.public_key());
        if key.verify(&msg, sig).is_err() {
            return self.fail(conn, 401, cmd, "bad signature over the nonce");
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.auth.proved = true;
            c.name = entry.alias().to_string();
        }
        let changed = self.nodes.merge(std::slice::from_ref(&entry));
        self.nodes_changed(now_ms, changed.len());
        self.push_answer(
            conn,
            Answer::Ready(status_bytes(STATUS_OK, cmd, "node key proved")),
        );
    }

    /// An entry for our own uid that is not ours: only we change our entry.
    fn is_own_uid_forged(&self, e: &NodeEntry) -> bool {
        self.cfg
            .node
            .as_ref()
            .is_some_and(|own| own.uid() == e.uid() && own != e)
    }

    /// After the node list changed: connect to servers newly learned (unless `--no-mesh`)
    /// and tell every live link our new hash, so the change spreads hop by hop.
    fn nodes_changed(&mut self, now_ms: u64, changed: usize) {
        if changed == 0 {
            return;
        }
        self.stats.nodes_learned += changed as u64;
        // Durable with the next batch (BRIEF.md "State"; not a journal line: the hash
        // exchange brings peers up to date).
        self.batch
            .writes
            .push(Write::NodeList(self.nodes.canonical_bytes()));
        if !self.cfg.no_mesh {
            let own = self.cfg.node.as_ref().map(|n| *n.uid());
            let wanted: Vec<SocketAddr> = self
                .nodes
                .entries()
                .iter()
                .filter(|e| Some(*e.uid()) != own)
                .filter_map(|e| e.location().parse::<SocketAddr>().ok())
                .collect();
            for addr in wanted {
                if self.links.len() >= MAX_LINKS || self.links.iter().any(|l| l.addr == addr) {
                    continue;
                }
                tracing::info!(%addr, "connecting to a server learned from the node list");
                self.links
                    .push(Link::new(addr, now_ms, self.cfg.backoff_min_ms, true));
            }
        }
        let Ok(h) = self.nodes.hash_frame().to_vec() else {
            return;
        };
        for l in &self.links {
            if let LinkState::Up { conn, .. } = l.state {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if !c.input.refused {
                        c.ask_node_hash(&h);
                    }
                }
            }
        }
    }

    /// JournalSince (19): at most `limit` lines after `since`, from one store read.
    fn journal_since(&mut self, conn: ConnId, journal_id: u64, since: u64, limit: u32) {
        let cmd = tcp::CMD_JOURNAL_SINCE;
        if limit == 0 || limit > tcp::MAX_SINCE_LIMIT {
            let detail = format!("limit {limit} out of range 1 to {}", tcp::MAX_SINCE_LIMIT);
            return self.fail(conn, 400, cmd, &detail);
        }
        if journal_id != self.journal.id {
            let detail = format!(
                "unknown journal {journal_id:016x} (ours is {:016x}): ask for the full list",
                self.journal.id
            );
            return self.fail(conn, 404, cmd, &detail);
        }
        self.flush_batch();
        if since > self.journal.head {
            let detail = format!(
                "since {since} is beyond the journal's end ({})",
                self.journal.head
            );
            return self.fail(conn, 400, cmd, &detail);
        }
        let tag = self.out.tag();
        self.reads.since_reads.insert(tag, conn);
        self.out
            .requests
            .push(StoreRequest::JournalPage { tag, since, limit });
        self.push_answer(conn, Answer::Since { tag });
    }

    /// The node list as it stands (for status and tests).
    pub fn node_list(&self) -> &NodeList {
        &self.nodes
    }

    /// Refuses what a peer sent on `conn` (a bad directory record or forward): on a
    /// connection it opened, a status frame then close; on our own link, the link is
    /// dropped and redialled.
    pub fn refuse_peer(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        request: u8,
        status: u16,
        detail: &str,
    ) {
        let link = self.conns.get(&conn).and_then(|c| c.link);
        if link.is_some() {
            tracing::warn!(
                status,
                detail,
                "a peer's answer was refused; dropping the link"
            );
            self.close_link(now_ms, conn);
        } else {
            self.fail(conn, status, request, detail);
        }
    }

    fn status(&mut self, conn: ConnId) {
        self.flush_batch();
        let tag = self.out.tag();
        self.reads.barriers.insert(tag, conn);
        self.out.requests.push(StoreRequest::Digest { tag });
        self.out
            .actions
            .push_back(TcpAction::DirectoryDigest { tag });
        self.push_answer(
            conn,
            Answer::Status {
                tag,
                contacts: None,
                directory: None,
            },
        );
    }

    /// The UDP directory's digest for status answer `tag`: `online` entries and the
    /// SHA-512 of their canonical form.
    pub fn handle_directory_digest(&mut self, now_ms: u64, tag: u64, online: u64, sha512: &[u8]) {
        let Some(&conn) = self.reads.barriers.get(&tag) else {
            return;
        };
        if let Some(Answer::Status { directory, .. }) = self.find_status(conn, tag) {
            *directory = Some((online, sha512.to_vec()));
        }
        self.finish_status(now_ms, conn, tag);
    }

    fn find_status(&mut self, conn: ConnId, tag: u64) -> Option<&mut Answer> {
        self.conns
            .get_mut(&conn)?
            .answers
            .iter_mut()
            .find(|a| matches!(a, Answer::Status { tag: t, .. } if *t == tag))
    }

    /// Renders a status answer once both digests are in.
    fn finish_status(&mut self, now_ms: u64, conn: ConnId, tag: u64) {
        let name = self.cfg.name.clone();
        let clock = self.clock.now;
        let (journal_id, journal_head) = (self.journal.id, self.journal.head);
        let (nodes, node_hash) = (self.nodes.len(), self.nodes.hash_hex());
        let duplicates = self.stats.duplicate_lines;
        let mut peers = String::new();
        for l in &self.links {
            let state = match l.state {
                LinkState::Up { .. } => "up",
                LinkState::Connecting => "connecting",
                LinkState::Down { .. } => "down",
            };
            let hb = l.last_heartbeat_ms.map_or("never".to_string(), |t| {
                now_ms.saturating_sub(t).to_string()
            });
            let phase = match l.journal.phase {
                Phase::AwaitCursor => "await_cursor",
                Phase::Paging { .. } => "catching_up",
                Phase::FullPush { .. } => "full_push",
                Phase::Live => "live",
            };
            peers.push_str(&format!(
                "peer={} state={state} last_heartbeat_ms_ago={hb} peer_clock={} journal={phase} pushed_line={} confirmed_line={} entries_sent={} records_sent={} directory_sent={} learned={}\n",
                l.addr, l.peer_clock, l.journal.pushed_line, l.journal.confirmed_line, l.journal.entries_sent, l.journal.records_sent, l.dir.sent, l.learned
            ));
        }
        for (name, (lines, records)) in &self.journal.received {
            peers.push_str(&format!(
                "received_from={} entries={lines} records={records}\n",
                name.replace(char::is_whitespace, "_")
            ));
        }
        let Some(a) = self.find_status(conn, tag) else {
            return;
        };
        let Answer::Status {
            contacts: Some((count, csum)),
            directory: Some((online, dsum)),
            ..
        } = a
        else {
            return;
        };
        let text = format!(
            "name={name}\nclock={clock}\njournal={:016x}:{}\ncontacts={count}\ncontacts_sha512={}\ndirectory={online}\ndirectory_sha512={}\nnodes={}\nnode_list_sha512={}\nduplicate_lines={}\n{peers}",
            journal_id,
            journal_head,
            hex(csum),
            hex(dsum),
            nodes,
            node_hash,
            duplicates,
        );
        let mut bytes = Vec::with_capacity(5 + text.len());
        bytes.push(tcp::CMD_STATUS_REQUEST);
        bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
        bytes.extend_from_slice(text.as_bytes());
        *a = Answer::Ready(bytes);
        self.reads.barriers.remove(&tag);
        self.pump(conn);
    }

    /// A report from the store thread.
    pub fn handle_store(&mut self, now_ms: u64, ev: StoreEvent) {
        let _ = now_ms;
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
            StoreEvent::Digest { tag, count, sha512 } => {
                let Some(&conn) = self.reads.barriers.get(&tag) else {
                    return;
                };
                if let Some(Answer::Status { contacts, .. }) = self.find_status(conn, tag) {
                    *contacts = Some((count, sha512));
                }
                self.finish_status(now_ms, conn, tag);
            }
            StoreEvent::Cursor { tag, line } => {
                let Some(conn) = self.reads.cursor_reads.remove(&tag) else {
                    return;
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    for a in c.answers.iter_mut() {
                        if let Answer::Cursor { tag: t, line: l } = a {
                            if *t == tag {
                                *l = Some(line);
                            }
                        }
                    }
                    if let Some(id) = c.peer_journal {
                        self.note_line(id, line);
                    }
                }
                self.pump(conn);
            }
            StoreEvent::JournalPage { tag, entries, read } => {
                if let Some(conn) = self.reads.since_reads.remove(&tag) {
                    return self.finish_since(conn, tag, &entries, read);
                }
                let Some(i) = self.reads.page_reads.remove(&tag) else {
                    return;
                };
                let Some(LinkState::Up { conn, .. }) = self.links.get(i).map(|l| &l.state) else {
                    return; // the link went down meanwhile: it starts over on reconnect
                };
                let conn = *conn;
                match read {
                    JournalRead::Entries { more } => {
                        let Some(c) = self.conns.get_mut(&conn) else {
                            return;
                        };
                        let l = &mut self.links[i];
                        let mut since = match l.journal.phase {
                            Phase::Paging { since, .. } => since,
                            _ => return,
                        };
                        for (line, contact) in &entries {
                            if let Some(rec) = journal_frame(*line, contact) {
                                c.out.extend_from_slice(&rec);
                                l.journal.entries_sent += 1;
                            }
                            since = *line;
                            l.journal.pushed_line = *line;
                        }
                        if more {
                            l.journal.phase = Phase::Paging {
                                since,
                                asked: false,
                            };
                            self.next_page(i);
                        } else {
                            // Caught up: mark it, and push every new line from now on.
                            c.out.push(tcp::CMD_JOURNAL_MARK);
                            c.out.extend_from_slice(&since.to_be_bytes());
                            l.journal.pushed_line = since;
                            l.journal.phase = Phase::Live;
                        }
                    }
                    JournalRead::Gone | JournalRead::Beyond => {
                        // The journal no longer holds (or never held) the peer's cursor: push
                        // everything from one snapshot, then mark and page what came since.
                        if let Some(l) = self.links.get_mut(i) {
                            l.journal.phase = Phase::FullPush { mark: None };
                        }
                        let id = self.out.next_tag;
                        self.reads.push_streams.insert(id, i);
                        self.open_stream_with_id(conn, Role::Server, false, id);
                        self.push_answer(conn, Answer::Mark { link: i });
                    }
                }
            }
            StoreEvent::StreamFailed { stream, error } => {
                // Any store read can fail: a stream, a cursor, a status digest (all answers
                // on a connection: refuse at once) or a journal page (a link: drop it, it
                // redials and retries). Nothing is left waiting forever.
                tracing::error!(tag = stream, error, "a store read failed");
                if let Some(conn) = self.reads.take_conn(stream) {
                    self.fail_now(conn, 503, 0xFF, "store failure while reading");
                } else if let Some(i) = self.reads.page_reads.remove(&stream) {
                    if let Some(LinkState::Up { conn, .. }) = self.links.get(i).map(|l| &l.state) {
                        let conn = *conn;
                        self.close_link(now_ms, conn);
                    }
                }
            }
        }
    }
}

impl TcpCore {
    /// Reads one answer on a link this server opened; false when more bytes are needed (or
    /// the link was closed for a protocol error).
    fn parse_answer(&mut self, now_ms: u64, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Some(&expect) = c.expects.front() else {
            if c.input.buf.is_empty() {
                return false;
            }
            // The acceptor speaks only when asked: anything else is a protocol error (or
            // its status frame before it closes).
            let detail = status_detail(&c.input.buf);
            tracing::warn!(peer = %c.addr, detail, "unexpected bytes from a peer; closing the link");
            self.out.actions.push_back(TcpAction::Close(conn));
            c.out.close_when_flushed = true;
            return false;
        };
        if let Some(r) = self.parse_federation_answer(now_ms, conn, expect) {
            return r;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        match expect {
            Expect::NodeHash | Expect::NodeDiff | Expect::Directory => false,
            Expect::Nonce => {
                match c.input.buf.first() {
                    None => return false,
                    Some(&tcp::CMD_AUTH_CHALLENGE) => {}
                    Some(_) => {
                        let detail = status_detail(&c.input.buf);
                        tracing::warn!(peer = %c.addr, detail, "peer did not answer our challenge; closing the link");
                        self.close_link(now_ms, conn);
                        return false;
                    }
                }
                if c.input.buf.len() < 1 + tcp::NONCE_LEN {
                    return false;
                }
                let nonce: Vec<u8> = c.input.buf.drain(..1 + tcp::NONCE_LEN).skip(1).collect();
                c.expects.pop_front();
                let Some(peer) = c.link else {
                    return true;
                };
                let (Some(signer), Some(node)) = (self.cfg.signer.clone(), self.cfg.node.clone())
                else {
                    return true;
                };
                let entry = node.to_bytes();
                let mut msg = Vec::with_capacity(tcp::AUTH_CONTEXT.len() + 32 + entry.len());
                msg.extend_from_slice(tcp::AUTH_CONTEXT);
                msg.extend_from_slice(&nonce);
                msg.extend_from_slice(&entry);
                let sig = (signer.0)(&msg);
                let mut body = entry;
                body.push(sig.len() as u8);
                body.extend_from_slice(&sig);
                let c = self.conns.get_mut(&conn).expect("present");
                c.out.push(tcp::CMD_AUTH_PROOF);
                c.out.extend_from_slice(&(body.len() as u16).to_be_bytes());
                c.out.extend_from_slice(&body);
                c.expects.push_back(Expect::Status { confirms: 0 });
                self.link_start(now_ms, peer, conn);
                true
            }
            Expect::Cursor => {
                if c.input.buf.len() < 9 {
                    return false;
                }
                if c.input.buf[0] != tcp::CMD_CURSOR_QUERY {
                    tracing::warn!(peer = %c.addr, "peer did not answer the cursor query; closing the link");
                    self.close_link(now_ms, conn);
                    return false;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&c.input.buf[1..9]);
                c.input.buf.drain(..9);
                c.expects.pop_front();
                let since = u64::from_be_bytes(b);
                let Some(i) = c.link else {
                    return true;
                };
                if let Some(l) = self.links.get_mut(i) {
                    l.journal.phase = Phase::Paging {
                        since,
                        asked: false,
                    };
                    l.journal.pushed_line = since;
                    l.journal.confirmed_line = since;
                    // A full exchange with the peer is under way: the link is healthy.
                    l.backoff_ms = self.cfg.backoff_min_ms;
                }
                self.next_page(i);
                true
            }
            Expect::HeartBeat => {
                match c.input.buf.first() {
                    None => return false,
                    Some(&tcp::CMD_UPDATE_CLOCK) => {
                        if c.input.buf.len() < 5 {
                            return false;
                        }
                        let v = u32::from_be_bytes([
                            c.input.buf[1],
                            c.input.buf[2],
                            c.input.buf[3],
                            c.input.buf[4],
                        ]);
                        if let Some(l) = c.link.and_then(|i| self.links.get_mut(i)) {
                            l.peer_clock = v;
                        }
                        c.input.buf.drain(..5);
                        c.expects.pop_front();
                        if self.clock.plausible(v) {
                            self.clock.observe(v);
                        }
                    }
                    Some(_) => {
                        c.expects.pop_front(); // no UpdateClock: the peer took our clock
                    }
                }
                true
            }
            Expect::Status { .. } => {
                if c.input.buf.len() < StatusFrame::FIXED_LEN {
                    return false;
                }
                let len = StatusFrame::FIXED_LEN + usize::from(c.input.buf[4]);
                if c.input.buf.len() < len {
                    return false;
                }
                let frame: Vec<u8> = c.input.buf.drain(..len).collect();
                c.expects.pop_front();
                match StatusFrame::parse(&frame) {
                    Ok(f) if f.status == STATUS_OK => {
                        if let Some(l) = c.link.and_then(|i| self.links.get_mut(i)) {
                            l.last_heartbeat_ms = Some(now_ms);
                            if let Expect::Status { confirms } = expect {
                                l.journal.confirmed_line = l.journal.confirmed_line.max(confirms);
                            }
                        }
                        true
                    }
                    Ok(f) => {
                        tracing::warn!(
                            status = f.status,
                            detail = f.detail,
                            "peer refused; closing the link"
                        );
                        self.close_link(now_ms, conn);
                        false
                    }
                    Err(_) => {
                        self.close_link(now_ms, conn);
                        false
                    }
                }
            }
        }
    }

    /// Completes a JournalSince answer: `[19][count u32]` and the lines, or 404 when the
    /// journal no longer holds `since` (the asker falls back to AskForUpdate).
    fn finish_since(
        &mut self,
        conn: ConnId,
        tag: u64,
        entries: &[(u64, Contact)],
        read: JournalRead,
    ) {
        let bytes = match read {
            JournalRead::Entries { .. } => {
                let mut b = Vec::with_capacity(5 + entries.len() * tcp::MAX_COMMAND_LEN);
                b.push(tcp::CMD_JOURNAL_SINCE);
                b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for (line, contact) in entries {
                    if let Some(rec) = journal_frame(*line, contact) {
                        b.extend_from_slice(&rec);
                    }
                }
                Answer::Ready(b)
            }
            JournalRead::Gone => Answer::Refusal(status_bytes(
                404,
                tcp::CMD_JOURNAL_SINCE,
                "the journal no longer holds that line: ask for the full list",
            )),
            JournalRead::Beyond => Answer::Refusal(status_bytes(
                400,
                tcp::CMD_JOURNAL_SINCE,
                "since is beyond the journal's end",
            )),
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(bytes, Answer::Refusal(_)) {
            self.stats.errors += 1;
            c.input.refused = true;
            c.input.buf.clear();
        }
        for a in c.answers.iter_mut() {
            if matches!(a, Answer::Since { tag: t } if *t == tag) {
                *a = match &bytes {
                    Answer::Ready(b) => Answer::Ready(b.clone()),
                    Answer::Refusal(b) => Answer::Refusal(b.clone()),
                    _ => return,
                };
                break;
            }
        }
        self.pump(conn);
    }

    /// Reads the answers to our node-list and directory requests on link `conn`; `None`
    /// when `expect` is not one of those.
    fn parse_federation_answer(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        expect: Expect,
    ) -> Option<bool> {
        let c = self.conns.get_mut(&conn)?;
        let first = c.input.buf.first().copied();
        match expect {
            Expect::NodeHash | Expect::NodeDiff => {
                let want = if expect == Expect::NodeHash {
                    tcp::CMD_NODE_LIST_HASH
                } else {
                    tcp::CMD_NODE_LIST_DIFF
                };
                match first {
                    None => return Some(false),
                    Some(b) if b == want => {}
                    Some(_) => {
                        let detail = status_detail(&c.input.buf);
                        tracing::warn!(peer = %c.addr, detail, "peer did not answer the node list sync; closing the link");
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                }
                let n = match crate::federation::nodelist::frame_len(&c.input.buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => return Some(false),
                    Err(_) => {
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                };
                let frame: Vec<u8> = c.input.buf.drain(..n).collect();
                c.expects.pop_front();
                match NodeListFrame::parse(&frame) {
                    Ok(NodeListFrame::Hash(h)) => {
                        if h != self.nodes.hash() {
                            if let Ok(list) = self.nodes.list_frame().to_vec() {
                                c.out.extend_from_slice(&list);
                                c.expects.push_back(Expect::NodeDiff);
                            }
                        }
                    }
                    Ok(NodeListFrame::Diff(entries))
                        if !crate::federation::nodelist::has_duplicate_uids(&entries) =>
                    {
                        let entries: Vec<NodeEntry> = entries
                            .into_iter()
                            .filter(|e| !self.is_own_uid_forged(e))
                            .collect();
                        let changed = self.nodes.merge(&entries);
                        self.nodes_changed(now_ms, changed.len());
                    }
                    _ => {
                        tracing::warn!("malformed node list answer; closing the link");
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                }
                Some(true)
            }
            Expect::Directory => {
                match first {
                    None => return Some(false),
                    Some(tcp::CMD_DIR_RECORD | tcp::CMD_DIR_REQUEST) => {}
                    Some(_) => {
                        let detail = status_detail(&c.input.buf);
                        tracing::warn!(peer = %c.addr, detail, "peer did not answer the directory request; closing the link");
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                }
                let n = match tcp::command_len(Role::Server, &c.input.buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => return Some(false),
                    Err(_) => {
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                };
                let mut frame: Vec<u8> = c.input.buf.drain(..n).collect();
                if frame[0] == tcp::CMD_DIR_RECORD {
                    self.stats.dir_records_in += 1;
                    frame.drain(..3); // the body, without a second copy
                    self.out
                        .actions
                        .push_back(TcpAction::PeerRecord { conn, body: frame });
                } else if frame.len() == 7 {
                    c.expects.pop_front(); // [17][0004][count]: the answer is complete
                } else {
                    self.close_link(now_ms, conn);
                    return Some(false);
                }
                Some(true)
            }
            _ => None,
        }
    }

    fn close_link(&mut self, _now_ms: u64, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.close_when_flushed = true;
            c.input.buf.clear();
        }
        self.out.actions.push_back(TcpAction::Close(conn));
    }

    /// Ends a loop turn: the writes gathered in it go to the store as one batch.
    pub fn end_turn(&mut self) {
        self.flush_batch();
    }

    /// The next request for the store thread, in order.
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        if self.out.requests.is_empty() {
            None
        } else {
            Some(self.out.requests.remove(0))
        }
    }

    /// Takes every pending store request, in order.
    pub fn drain_store(&mut self) -> Vec<StoreRequest> {
        std::mem::take(&mut self.out.requests)
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
        self.pump(conn);
        if let Some(i) = self.conns.get(&conn).and_then(|c| c.link) {
            self.next_page(i);
            self.next_dir_page(i);
        }
        // Answers that were held back may let more requests be parsed.
        self.parse(now_ms, conn);
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
                && now_ms >= c.accepted_ms + self.cfg.hello_timeout_ms
                && !c.input.refused
            {
                late.push(id);
            } else if c.out.pending() > 0 && now_ms >= c.out.last_progress_ms + self.cfg.stall_ms {
                stalled.push(id);
            }
        }
        for id in late {
            let secs = self.cfg.hello_timeout_ms / 1000;
            self.fail(id, 408, 0, &format!("no complete hello within {secs} s"));
        }
        for id in stalled {
            tracing::info!(conn = id, "dropping a connection that stopped reading");
            self.out.actions.push_back(TcpAction::Close(id));
        }
        for i in 0..self.links.len() {
            match self.links[i].state {
                LinkState::Down { retry_ms } if now_ms >= retry_ms => {
                    self.links[i].state = LinkState::Connecting;
                    let addr = self.links[i].addr;
                    self.out
                        .actions
                        .push_back(TcpAction::Connect { peer: i, addr });
                }
                LinkState::Up {
                    conn,
                    next_heartbeat_ms,
                } if now_ms >= next_heartbeat_ms => {
                    // A peer that has answered no heartbeat for 4 intervals is unreachable
                    // (a silent partition): drop the link and redial, rather than wait for
                    // TCP to give up (~15 min). It resumes from the peer's cursor.
                    let l = &self.links[i];
                    let heard = l.last_heartbeat_ms.unwrap_or(0).max(l.up_since_ms);
                    if now_ms.saturating_sub(heard) > 4 * self.cfg.heartbeat_ms {
                        tracing::warn!(peer = %l.addr, silent_ms = now_ms - heard, "peer answers no heartbeat; dropping the link to redial");
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.input.refused = true;
                        }
                        self.out.actions.push_back(TcpAction::Close(conn));
                        continue;
                    }
                    self.links[i].state = LinkState::Up {
                        conn,
                        next_heartbeat_ms: now_ms + self.cfg.heartbeat_ms,
                    };
                    let clock = self.clock.now;
                    let confirms = self.links[i].journal.pushed_line;
                    if let Some(c) = self.conns.get_mut(&conn) {
                        // HeartBeat, then a barrier, so that an absent UpdateClock is seen.
                        c.out.extend_from_slice(&[tcp::CMD_HEARTBEAT, 1]);
                        c.out.extend_from_slice(&clock.to_be_bytes());
                        c.out.push(tcp::CMD_BARRIER);
                        c.expects.push_back(Expect::HeartBeat);
                        c.expects.push_back(Expect::Status { confirms });
                        // The node lists are compared again on every heartbeat, so a change
                        // anywhere reaches every server (one hash frame when they agree).
                        if let Ok(h) = self.nodes.hash_frame().to_vec() {
                            c.ask_node_hash(&h);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The next time (ms) [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let conns = self.conns.values().filter_map(|c| {
            if c.role.is_none() && !c.input.refused {
                Some(c.accepted_ms + self.cfg.hello_timeout_ms)
            } else if c.out.pending() > 0 {
                Some(c.out.last_progress_ms + self.cfg.stall_ms)
            } else {
                None
            }
        });
        let links = self.links.iter().filter_map(|l| match l.state {
            LinkState::Down { retry_ms } => Some(retry_ms),
            LinkState::Up {
                next_heartbeat_ms, ..
            } => Some(next_heartbeat_ms),
            LinkState::Connecting => None,
        });
        conns.chain(links).min()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
