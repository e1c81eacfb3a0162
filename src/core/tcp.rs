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
use crate::wire::tcp::{
    self, ClientCommand, ContactFields, Hello, Role, ServerCommand, StatusFrame,
};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Identifies a TCP connection between the loop and the core.
pub type ConnId = u64;

/// An IP network (`--allow-peer CIDR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` (or a bare address: a /32 or /128).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (a, p) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{text:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0..={max}"))?
        };
        Ok(Cidr { addr, prefix })
    }

    /// True when `ip` (IPv4-mapped IPv6 counts as IPv4) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(i)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), self.prefix),
            _ => return false,
        };
        if bits == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - u32::from(bits));
        a & mask == b & mask
    }
}

/// Tunables of the TCP plane. Times in milliseconds.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// This server's name, sent in its hellos (at most 256 bytes).
    pub name: String,
    /// A connection without a complete hello this long after accept is closed with 408.
    pub hello_timeout_ms: u64,
    /// Bytes of unsent output per connection; a connection over it is dropped (except a
    /// streamed answer, which waits for the reader).
    pub max_out: usize,
    /// Contacts per store page when streaming ListAll / AskForUpdate.
    pub page: usize,
    /// Heartbeat interval on links to peers.
    pub heartbeat_ms: u64,
    /// Reconnect backoff after a failed or lost link: starts here, doubles...
    pub backoff_min_ms: u64,
    /// ... up to here.
    pub backoff_max_ms: u64,
    /// Peers to connect to (`--peer`); their addresses may also open role-1 connections.
    pub peers: Vec<SocketAddr>,
    /// Networks whose hosts may open role-1 (server) connections (`--allow-peer`).
    pub allow_peers: Vec<Cidr>,
    /// A received clock more than this far ahead of ours is refused (409), except by a
    /// fresh server (clock 0), which accepts up to 2^31 to catch up with an older mesh.
    pub max_clock_jump: u32,
    /// A connection whose pending output made no progress for this long is dropped.
    pub stall_ms: u64,
    /// Answers waiting per connection before the core stops reading its requests.
    pub max_pending: usize,
    /// This server's own node-list entry (uid, alias, location, public key), if it has a
    /// node identity; the node list starts with it (seed 000).
    pub node: Option<NodeEntry>,
    /// Keep to the configured peers: do not connect to servers learned from the node list.
    pub no_mesh: bool,
    /// Signs with this server's node key (Ed25519), to prove it to peers (commands 20-21).
    pub signer: Option<NodeSigner>,
    /// 32 random bytes from the OS: the authentication nonces are derived from them.
    pub seed: [u8; 32],
}

/// A signing function: `message -> signature` (64 bytes for Ed25519).
pub type SignFn = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

/// Signs a message with the node key: `sign(message) -> 64-byte Ed25519 signature`.
#[derive(Clone)]
pub struct NodeSigner(pub std::sync::Arc<SignFn>);

impl std::fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeSigner")
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            name: "rendezvous".into(),
            hello_timeout_ms: 10_000,
            max_out: 1 << 20,
            page: 2048,
            heartbeat_ms: 5_000,
            backoff_min_ms: 250,
            backoff_max_ms: 30_000,
            peers: Vec::new(),
            allow_peers: Vec::new(),
            max_clock_jump: 1 << 24,
            stall_ms: 120_000,
            max_pending: 64,
            node: None,
            no_mesh: false,
            signer: None,
            seed: [0; 32],
        }
    }
}

/// A request for the store thread, carried out in the order issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRequest {
    /// Apply a batch atomically and durably.
    Apply {
        /// Increasing batch number.
        seq: u64,
        /// The writes.
        batch: Vec<Write>,
    },
    /// Answer [`StoreEvent::BarrierDone`] (everything before is durable).
    Barrier {
        /// Echoed back.
        tag: u64,
    },
    /// Open a consistent snapshot for a streamed answer.
    Snapshot {
        /// Stream id, echoed back.
        stream: u64,
    },
    /// Read the next page of a stream.
    NextPage {
        /// Stream id.
        stream: u64,
        /// Most contacts to return.
        max: usize,
    },
    /// Count the contacts and hash their canonical form (SHA-512 over the 536-byte
    /// server-role Update bodies in (username, contact) order) from one snapshot.
    Digest {
        /// Echoed back.
        tag: u64,
    },
    /// Read a peer's cursor for one of our journals (`peer` is the cursor key).
    Cursor {
        /// Echoed back.
        tag: u64,
        /// Cursor key: `journal:<journal id in hex>`.
        peer: String,
    },
    /// Read our journal's lines after `since`, at most `limit`.
    JournalPage {
        /// Echoed back.
        tag: u64,
        /// The last line the peer holds.
        since: u64,
        /// Most lines to return.
        limit: u32,
    },
    /// Drop a stream's snapshot.
    CloseStream {
        /// Stream id.
        stream: u64,
    },
}

/// What the store thread reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A batch is durable; `changed[i]` tells whether its i-th merge altered state.
    Applied {
        /// The batch number.
        seq: u64,
        /// Per merge.
        changed: Vec<bool>,
    },
    /// A batch failed (nothing of it applied).
    Failed {
        /// The batch number.
        seq: u64,
        /// The store's message.
        error: String,
    },
    /// Everything before the barrier is durable.
    BarrierDone {
        /// The tag.
        tag: u64,
    },
    /// A snapshot is open.
    SnapshotReady {
        /// Stream id.
        stream: u64,
        /// Contacts in it.
        count: u64,
    },
    /// Contacts of a stream, in order.
    Page {
        /// Stream id.
        stream: u64,
        /// The contacts.
        contacts: Vec<Contact>,
        /// More pages follow.
        more: bool,
    },
    /// The contacts digest asked for with [`StoreRequest::Digest`].
    Digest {
        /// The tag.
        tag: u64,
        /// Contacts counted.
        count: u64,
        /// SHA-512 of their canonical form (64 bytes).
        sha512: Vec<u8>,
    },
    /// The cursor asked for with [`StoreRequest::Cursor`]: the line held, 0 when none.
    Cursor {
        /// The tag.
        tag: u64,
        /// Line.
        line: u64,
    },
    /// Journal lines asked for with [`StoreRequest::JournalPage`].
    JournalPage {
        /// The tag.
        tag: u64,
        /// `(line, contact)` in line order.
        entries: Vec<(u64, Contact)>,
        /// Entries (with `more`), or the journal no longer holds / never held `since`.
        read: JournalRead,
    },
    /// A stream could not be read.
    StreamFailed {
        /// Stream id.
        stream: u64,
        /// The store's message.
        error: String,
    },
}

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

/// Directory records asked per page (a full directory goes out in pages as the reader
/// drains them).
const DIR_PAGE: usize = 256;
/// Most links, configured and learned from the node list together.
const MAX_LINKS: usize = 256;

/// Where a page of directory records goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirDest {
    /// The answer to a DirRequest on this connection.
    Answer(ConnId),
    /// A full push on link `i`.
    Push(usize),
}

/// A full push of our directory on a link this server opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirPush {
    Idle,
    Paging {
        after: Option<[u8; 32]>,
        asked: bool,
    },
}

#[derive(Debug)]
enum StreamState {
    /// Waiting for a slot or the snapshot.
    Opening,
    /// Snapshot open: `count` is written when this answer reaches the head; `buffered`
    /// are read but not yet written.
    Open {
        count: Option<u32>,
        buffered: VecDeque<Contact>,
        more: bool,
        page_asked: bool,
    },
}

#[derive(Debug)]
enum Answer {
    /// Bytes ready to go (UpdateClock).
    Ready(Vec<u8>),
    /// A refusal (non-200 status frame): written in its turn, then the connection closes.
    Refusal(Vec<u8>),
    /// A barrier: status 200 once done.
    Barrier { tag: u64, done: bool },
    /// A cursor answer `[14][line u64]`, once the store has read it.
    Cursor { tag: u64, line: Option<u64> },
    /// On a link: after a full push, mark the peer as holding our journal up to the line
    /// recorded when the pushed snapshot was taken, then page the lines since.
    Mark { link: usize },
    /// A status answer, written once both digests are in.
    Status {
        tag: u64,
        contacts: Option<(u64, Vec<u8>)>,
        directory: Option<(u64, Vec<u8>)>,
    },
    /// The answer to a DirRequest: pages of DirRecord frames, then `[17][0004][count]`.
    Directory {
        tag: u64,
        after: Option<[u8; 32]>,
        asked: bool,
        more: bool,
        count: u32,
        buffered: Vec<u8>,
    },
    /// The answer to a JournalSince, once the store has read the lines.
    Since { tag: u64 },
    /// ListAll (client) or AskForUpdate (server) streamed from a snapshot; `counted` puts
    /// the `[count u32]` first (an answer), else the records go alone (a push of the whole
    /// list on a link this server opened).
    Stream {
        id: u64,
        kind: Role,
        counted: bool,
        state: StreamState,
    },
}

/// What the opener of a peer link expects back, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// CursorQuery: `[14][line u64]`.
    Cursor,
    /// HeartBeat: an optional UpdateClock frame.
    HeartBeat,
    /// Barrier: a status frame; a 200 confirms our journal up to `confirms`.
    Status { confirms: u64 },
    /// NodeListHash: the peer's hash (10).
    NodeHash,
    /// NodeList: the peer's diff (12).
    NodeDiff,
    /// DirRequest: DirRecord frames, then the end frame (17).
    Directory,
    /// AuthChallenge: `[20][nonce 32]`; the proof and the link's opening requests follow.
    Nonce,
}

/// Where a link this server opened stands in pushing our journal to its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected, or waiting for the peer's cursor.
    AwaitCursor,
    /// Sending journal lines after `since`; `asked` when a page is on its way.
    Paging { since: u64, asked: bool },
    /// The journal no longer holds the peer's cursor: pushing a whole snapshot; `mark` is
    /// our journal head when it was taken.
    FullPush { mark: Option<u64> },
    /// Caught up: every new line is pushed as it is made.
    Live,
}

#[derive(Debug)]
struct Conn {
    addr: SocketAddr,
    accepted_ms: u64,
    role: Option<Role>,
    name: String,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    answers: VecDeque<Answer>,
    close_when_flushed: bool,
    /// A refusal is queued: no more input is read or parsed.
    refused: bool,
    last_progress_ms: u64,
    /// Set for links this server opened to a peer.
    link: Option<usize>,
    /// On a connection a peer opened: the journal id it pushes from (after CursorQuery).
    peer_journal: Option<u64>,
    expects: VecDeque<Expect>,
    /// A role-1 opener admitted only because the node list knows its address: it must
    /// prove its node key (commands 20, 21) before anything else.
    must_auth: bool,
    /// It has proved its node key.
    authed: bool,
    /// The nonce we sent it (AuthChallenge), until it answers.
    nonce: Option<[u8; tcp::NONCE_LEN]>,
    /// When bytes last came in (ms).
    last_in_ms: u64,
}

#[derive(Debug)]
enum LinkState {
    Down {
        retry_ms: u64,
    },
    Connecting,
    Up {
        conn: ConnId,
        next_heartbeat_ms: u64,
    },
}

#[derive(Debug)]
struct Link {
    addr: SocketAddr,
    state: LinkState,
    backoff_ms: u64,
    /// When the peer last answered a heartbeat (ms), if ever.
    last_heartbeat_ms: Option<u64>,
    /// When the link last came up (ms).
    up_since_ms: u64,
    /// The peer's clock as it last told us (UpdateClock), 0 if never.
    peer_clock: u32,
    phase: Phase,
    /// Last journal line written to the link, and the last one the peer confirmed durable
    /// (a heartbeat barrier's 200 after it).
    pushed_line: u64,
    confirmed_line: u64,
    /// Journal lines and snapshot records sent on this link since the server started.
    entries_sent: u64,
    records_sent: u64,
    /// Directory records sent on this link (live and full pushes) since the server started.
    dir_sent: u64,
    /// The full push of our directory after (re)connecting.
    dir_push: DirPush,
    /// Learned from the node list (not configured with `--peer`).
    learned: bool,
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

/// The TCP plane's state machine.
pub struct TcpCore {
    cfg: TcpConfig,
    clock: u32,
    clock_dirty: bool,
    conns: HashMap<ConnId, Conn>,
    links: Vec<Link>,
    batch: Vec<Write>,
    next_seq: u64,
    next_tag: u64,
    streams: HashMap<u64, ConnId>,
    barriers: HashMap<u64, ConnId>,
    requests: Vec<StoreRequest>,
    actions: VecDeque<TcpAction>,
    store_broken: bool,
    /// Merges in the batch being built, in order (with their index among the merges).
    batch_merges: usize,
    batch_forward: Vec<(usize, Contact)>,
    /// Per batch sent to the store: its merges, to journal and push those that changed.
    forward: HashMap<u64, Vec<(usize, Contact)>>,
    /// Our journal: its id and the last line the store has (lines are made in the order
    /// the store applies changed merges, so the core numbers them the same way).
    journal_id: u64,
    journal_head: u64,
    /// Pending store reads of cursors (tag -> connection) and journal pages (tag -> link).
    cursor_reads: HashMap<u64, ConnId>,
    page_reads: HashMap<u64, usize>,
    /// Full-push streams of links (stream id -> link), to note the journal head.
    push_streams: HashMap<u64, usize>,
    /// Until the first full catch-up from a peer completes, received clocks are bounded
    /// only by 2^31 (a fresh or memory-only server joining an older mesh).
    catching_up: bool,
    /// The node list (seed 000): our own entry and every server learned.
    nodes: NodeList,
    /// Pending directory pages (tag -> where they go).
    dir_pages: HashMap<u64, DirDest>,
    /// Pending JournalSince reads (tag -> connection, since, limit).
    since_reads: HashMap<u64, ConnId>,
    /// Authentication nonces made so far.
    nonces: u64,
    /// Per peer journal id: the highest line applied from it (to drop copies).
    lines_held: HashMap<u64, u64>,
    /// Per peer name (its hello name): journal lines and full-push records received on
    /// connections it opened, since start; at most 1024 names.
    received: std::collections::BTreeMap<String, (u64, u64)>,
    stats: TcpStats,
}

const STATUS_OK: u16 = 200;

impl TcpCore {
    /// A core starting with the persisted Lamport `clock`, at `now_ms`.
    pub fn new(cfg: TcpConfig, clock: u32, now_ms: u64) -> Self {
        let cfg_peers_empty = cfg.peers.is_empty();
        let links = cfg
            .peers
            .iter()
            .map(|&addr| Link::new(addr, now_ms, cfg.backoff_min_ms, false))
            .collect();
        let nodes = NodeList::from_entries(cfg.node.iter().cloned().collect());
        TcpCore {
            cfg,
            clock,
            clock_dirty: false,
            conns: HashMap::new(),
            links,
            batch: Vec::new(),
            next_seq: 1,
            next_tag: 1,
            streams: HashMap::new(),
            barriers: HashMap::new(),
            requests: Vec::new(),
            actions: VecDeque::new(),
            store_broken: false,
            batch_merges: 0,
            batch_forward: Vec::new(),
            forward: HashMap::new(),
            journal_id: 0,
            journal_head: 0,
            cursor_reads: HashMap::new(),
            page_reads: HashMap::new(),
            push_streams: HashMap::new(),
            catching_up: !cfg_peers_empty,
            nodes,
            dir_pages: HashMap::new(),
            since_reads: HashMap::new(),
            nonces: 0,
            received: std::collections::BTreeMap::new(),
            lines_held: HashMap::new(),
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
        self.journal_id = journal_id;
        self.journal_head = head;
    }

    /// The Lamport clock now.
    pub fn clock(&self) -> u32 {
        self.clock
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
            l.phase = Phase::AwaitCursor;
            l.dir_push = DirPush::Idle;
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
            self.actions.push_back(TcpAction::Close(conn));
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
                l.phase = Phase::AwaitCursor;
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
        c.out.extend_from_slice(&self.journal_id.to_be_bytes());
        c.expects.push_back(Expect::Cursor);
        // Compare node lists (seed 000), and ask for the peer's whole directory (seed 002's
        // client_update_request); our own goes to it as a full push, paged below.
        if let Ok(h) = self.nodes.hash_frame().to_vec() {
            c.ask_node_hash(&h);
        }
        c.out.extend_from_slice(&[tcp::CMD_DIR_REQUEST, 0, 0]);
        c.expects.push_back(Expect::Directory);
        if let Some(l) = self.links.get_mut(peer) {
            l.phase = Phase::AwaitCursor;
            l.up_since_ms = now_ms;
            l.dir_push = DirPush::Paging {
                after: None,
                asked: false,
            };
        }
        self.next_dir_page(peer);
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
            Some(c) if !c.refused => {
                // A node list may be up to 3.2 MB: take a whole frame once it has started.
                let cap = match c.inbuf.first() {
                    Some(&(tcp::CMD_NODE_LIST | tcp::CMD_NODE_LIST_DIFF)) => tcp::MAX_FRAME_LEN,
                    _ => 64 * 1024,
                };
                cap.saturating_sub(c.inbuf.len())
            }
            _ => 0,
        }
    }

    /// Bytes read from `conn`.
    pub fn handle_data(&mut self, now_ms: u64, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.refused || c.close_when_flushed {
            return; // a refused connection: ignore what follows
        }
        // The stall clock measures how long output waits for a reader; a new request
        // starts it afresh (an idle connection that asks again is not stalled).
        if c.pending_out() == 0 {
            c.last_progress_ms = now_ms;
        }
        c.last_in_ms = now_ms;
        c.inbuf.extend_from_slice(data);
        self.parse(now_ms, conn);
    }

    fn parse(&mut self, now_ms: u64, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.refused || c.close_when_flushed {
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
                if let Some(&b) = c.inbuf.first() {
                    if b != tcp::ROLE_SERVER && b != tcp::ROLE_CLIENT {
                        let detail = format!("malformed hello: role byte {b} (1 server, 2 client)");
                        self.fail(conn, 400, tcp::REQUEST_HELLO, &detail);
                        return;
                    }
                }
                if c.inbuf.len() < tcp::HELLO_LEN {
                    return;
                }
                let hello: Vec<u8> = c.inbuf.drain(..tcp::HELLO_LEN).collect();
                let addr = c.addr;
                match Hello::parse(&hello) {
                    Ok(h) => {
                        let configured = self.peer_allowed(addr.ip());
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
                        c.must_auth = must_auth;
                    }
                    Err(e) => {
                        self.fail(conn, 400, 0, &format!("malformed hello: {e}"));
                        return;
                    }
                }
                continue;
            };
            let len = match tcp::command_len(role, &c.inbuf) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    let b = c.inbuf.first().copied().unwrap_or(0xFF);
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
                (role, c.inbuf[0]),
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
            let frame: Vec<u8> = c.inbuf.drain(..len).collect();
            match role {
                Role::Client => self.client_command(now_ms, conn, &frame),
                Role::Server => self.server_command(now_ms, conn, &frame),
            }
        }
    }

    fn peer_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let same = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4) == ip,
            v4 => v4 == ip,
        };
        self.cfg.peers.iter().any(|p| same(p.ip()))
            || self.cfg.allow_peers.iter().any(|n| n.contains(ip))
    }

    /// True when `ip` is the address of a server in our node list (other than us): it may
    /// open a role-1 connection, but must prove the node key published there.
    fn known_node_ip(&self, ip: IpAddr) -> bool {
        let canon = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        let ip = canon(ip);
        let own = self.cfg.node.as_ref().map(|n| *n.uid());
        self.nodes
            .entries()
            .iter()
            .filter(|e| Some(*e.uid()) != own)
            .filter_map(|e| e.location().parse::<SocketAddr>().ok())
            .any(|a| canon(a.ip()) == ip)
    }

    /// Refuses with a non-200 status frame, after the answers already asked for (in the
    /// order asked); then the connection is closed. Nothing more is read from it.
    fn fail(&mut self, conn: ConnId, status: u16, request: u8, detail: &str) {
        self.stats.errors += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.refused {
            return;
        }
        c.refused = true;
        c.inbuf.clear();
        c.answers
            .push_back(Answer::Refusal(status_bytes(status, request, detail)));
        self.pump(conn);
    }

    /// Refuses at once: the pending answers cannot be completed (store failure).
    fn fail_now(&mut self, conn: ConnId, status: u16, request: u8, detail: &str) {
        self.drop_answers(conn);
        self.fail(conn, status, request, detail);
    }

    /// Abandons `conn`'s pending answers, releasing their streams and barriers.
    fn drop_answers(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for a in std::mem::take(&mut c.answers) {
            match a {
                Answer::Stream { id, .. } => {
                    self.streams.remove(&id);
                    self.requests.push(StoreRequest::CloseStream { stream: id });
                }
                Answer::Barrier { tag, .. } => {
                    self.barriers.remove(&tag);
                }
                Answer::Status { tag, .. } => {
                    self.barriers.remove(&tag);
                }
                Answer::Cursor { tag, .. } => {
                    self.cursor_reads.remove(&tag);
                }
                Answer::Directory { tag, .. } => {
                    self.dir_pages.remove(&tag);
                }
                Answer::Since { tag } => {
                    self.since_reads.remove(&tag);
                }
                Answer::Ready(_) | Answer::Refusal(_) | Answer::Mark { .. } => {}
            }
        }
    }

    /// A received clock is plausible when it is at most 2^24 ahead of ours; while catching
    /// up (or with clock 0) anything up to 2^31 is too, so a fresh server can join an
    /// older mesh.
    fn plausible(&self, c: u32) -> bool {
        let steady = c <= self.clock.saturating_add(self.cfg.max_clock_jump);
        steady || ((self.catching_up || self.clock == 0) && c <= 1 << 31)
    }

    fn observe_clock(&mut self, c: u32) {
        if c > self.clock {
            self.clock = c;
            self.clock_dirty = true;
        }
    }

    fn client_command(&mut self, _now_ms: u64, conn: ConnId, frame: &[u8]) {
        let cmd = match ClientCommand::parse(frame) {
            Ok(c) => c,
            Err(e) => return self.fail(conn, 400, frame[0], &format!("malformed command: {e}")),
        };
        match cmd {
            ClientCommand::Update(f) => {
                let Some(next) = self.clock.checked_add(1) else {
                    return self.fail(
                        conn,
                        503,
                        tcp::CMD_UPDATE,
                        "Lamport clock exhausted: no more writes",
                    );
                };
                self.clock = next;
                self.clock_dirty = true;
                let contact = to_contact(&f, next);
                self.record_merge(contact);
                self.stats.client_updates += 1;
            }
            ClientCommand::ListAll => self.open_stream(conn, Role::Client),
            ClientCommand::Barrier => self.barrier(conn),
            ClientCommand::Status => self.status(conn),
        }
    }

    #[allow(clippy::too_many_lines)] // issue 9: to be split into named steps
    fn server_command(&mut self, now_ms: u64, conn: ConnId, frame: &[u8]) {
        let cmd = match ServerCommand::parse(frame) {
            Ok(c) => c,
            Err(e) => return self.fail(conn, 400, frame[0], &format!("malformed command: {e}")),
        };
        let gated = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.must_auth && !c.authed);
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
                    c.nonce = Some(nonce);
                }
                let mut b = vec![tcp::CMD_AUTH_CHALLENGE];
                b.extend_from_slice(&nonce);
                self.push_answer(conn, Answer::Ready(b));
            }
            ServerCommand::AuthProof(body) => self.auth_proof(now_ms, conn, body),
            ServerCommand::Update { clock, fields } => {
                if !self.plausible(clock) {
                    return self.refuse_clock(conn, tcp::CMD_UPDATE, clock);
                }
                self.observe_clock(clock);
                self.record_merge(to_contact(&fields, clock));
                self.stats.peer_updates += 1;
                self.count_received(conn, false);
            }
            ServerCommand::HeartBeat { clock, .. } => {
                if !self.plausible(clock) {
                    return self.refuse_clock(conn, tcp::CMD_HEARTBEAT, clock);
                }
                if self.clock >= clock {
                    let mut b = [0u8; 5];
                    if tcp::emit_update_clock(self.clock, &mut b).is_ok() {
                        self.push_answer(conn, Answer::Ready(b.to_vec()));
                    }
                } else {
                    self.observe_clock(clock);
                }
            }
            ServerCommand::UpdateClock(clock) => {
                if !self.plausible(clock) {
                    return self.refuse_clock(conn, tcp::CMD_UPDATE_CLOCK, clock);
                }
                self.observe_clock(clock);
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
                            && now_ms.saturating_sub(c.last_in_ms) >= quiet
                    })
                    .map(|(&id, _)| id)
                    .collect();
                for id in stale {
                    tracing::info!(
                        conn = id,
                        "closing a peer's older connection for the same journal"
                    );
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.refused = true;
                        c.inbuf.clear();
                    }
                    self.drop_answers(id);
                    self.actions.push_back(TcpAction::Close(id));
                }
                self.flush_batch();
                let tag = self.next_tag;
                self.next_tag += 1;
                self.cursor_reads.insert(tag, conn);
                self.requests.push(StoreRequest::Cursor {
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
                if !self.plausible(clock) {
                    return self.refuse_clock(conn, tcp::CMD_JOURNAL_UPDATE, clock);
                }
                if self.lines_held.get(&id).is_some_and(|&held| line <= held) {
                    // Already applied, from another connection of the same peer (an old
                    // one still delivering after a partition healed while the new one
                    // resent from the cursor): lines of one journal come in order, so
                    // whatever is at or below the highest applied line is a copy.
                    self.stats.duplicate_lines += 1;
                    return;
                }
                self.note_line(id, line);
                self.observe_clock(clock);
                self.record_merge(to_contact(&fields, clock));
                self.batch.push(Write::Cursor {
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
                self.batch.push(Write::Cursor {
                    peer: cursor_key(id),
                    journal_id: id,
                    line,
                });
                self.note_line(id, line);
                // A peer says we hold its journal: the first catch-up is over.
                self.catching_up = false;
            }
            ServerCommand::NodeList(frame) => self.node_list_command(now_ms, conn, frame),
            ServerCommand::DirRecord(body) => {
                self.stats.dir_records_in += 1;
                self.actions.push_back(TcpAction::PeerRecord {
                    conn,
                    body: body.to_vec(),
                });
            }
            ServerCommand::DirRequest => {
                let tag = self.next_tag;
                self.next_tag += 1;
                self.dir_pages.insert(tag, DirDest::Answer(conn));
                self.push_answer(
                    conn,
                    Answer::Directory {
                        tag,
                        after: None,
                        asked: false,
                        more: true,
                        count: 0,
                        buffered: Vec::new(),
                    },
                );
            }
            ServerCommand::Forward(body) => {
                self.actions.push_back(TcpAction::Forward {
                    conn,
                    body: body.to_vec(),
                });
            }
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
        if !self.lines_held.contains_key(&id) && self.lines_held.len() >= 1024 {
            return;
        }
        let held = self.lines_held.entry(id).or_insert(0);
        *held = (*held).max(line);
    }

    /// Counts a journal line (`line`) or a full-push record received from the peer on
    /// `conn`, under its hello name (for `status`: what catching up cost).
    fn count_received(&mut self, conn: ConnId, line: bool) {
        let Some(name) = self.conns.get(&conn).map(|c| c.name.as_str()) else {
            return;
        };
        // A name is allocated once, when first seen, not for every line.
        if !self.received.contains_key(name) {
            if self.received.len() >= 1024 {
                return;
            }
            self.received.insert(name.to_string(), (0, 0));
        }
        let Some(e) = self.received.get_mut(name) else {
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
        let Some(nonce) = self.conns.get_mut(&conn).and_then(|c| c.nonce.take()) else {
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
            None if ip.is_some_and(|ip| self.peer_allowed(ip)) => {}
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
            c.authed = true;
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
                    if !c.refused {
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
        if journal_id != self.journal_id {
            let detail = format!(
                "unknown journal {journal_id:016x} (ours is {:016x}): ask for the full list",
                self.journal_id
            );
            return self.fail(conn, 404, cmd, &detail);
        }
        self.flush_batch();
        if since > self.journal_head {
            let detail = format!(
                "since {since} is beyond the journal's end ({})",
                self.journal_head
            );
            return self.fail(conn, 400, cmd, &detail);
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        self.since_reads.insert(tag, conn);
        self.requests
            .push(StoreRequest::JournalPage { tag, since, limit });
        self.push_answer(conn, Answer::Since { tag });
    }

    /// The node list as it stands (for status and tests).
    pub fn node_list(&self) -> &NodeList {
        &self.nodes
    }

    /// Pushes a directory record (a DirRecord body from the UDP core: a local change, or
    /// one learned from a peer that changed state) on every link that is up. A link more
    /// than 2 × `max_out` behind is dropped; it pushes our whole directory on reconnect.
    pub fn push_directory(&mut self, body: &[u8]) {
        self.push_framed(tcp::CMD_DIR_RECORD, body);
    }

    /// Pushes a forwarded punch request or relayed event (a Forward body) on every link
    /// that is up; the receivers drop duplicates by the forward's id.
    pub fn push_forward(&mut self, body: &[u8]) {
        self.push_framed(tcp::CMD_FORWARD, body);
    }

    fn push_framed(&mut self, cmd: u8, body: &[u8]) {
        if body.len() > tcp::MAX_VAR_BODY {
            return;
        }
        let mut overfull = Vec::new();
        for l in &mut self.links {
            let LinkState::Up { conn, .. } = l.state else {
                continue;
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if c.refused {
                continue;
            }
            if c.pending_out() > 2 * self.cfg.max_out {
                c.refused = true;
                overfull.push(conn);
                continue;
            }
            c.out.push(cmd);
            c.out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            c.out.extend_from_slice(body);
            if cmd == tcp::CMD_DIR_RECORD {
                l.dir_sent += 1;
            }
        }
        for conn in overfull {
            tracing::info!(conn, "a peer link is too far behind; dropping it to resync");
            self.actions.push_back(TcpAction::Close(conn));
        }
    }

    /// Asks every link that is up for the peer's whole directory again (the UDP core saw a
    /// refresh for an entry it does not hold: a record was lost).
    pub fn request_directory(&mut self) {
        for l in &self.links {
            if let LinkState::Up { conn, .. } = l.state {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if !c.refused && !c.expects.iter().any(|e| *e == Expect::Directory) {
                        c.out.extend_from_slice(&[tcp::CMD_DIR_REQUEST, 0, 0]);
                        c.expects.push_back(Expect::Directory);
                    }
                }
            }
        }
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

    /// A page of directory records for [`TcpAction::DirectoryPage`] `tag`: `frames` holds
    /// `count` whole DirRecord frames, `last` the last fingerprint written, `more` whether
    /// records may follow.
    pub fn handle_directory_page(
        &mut self,
        tag: u64,
        frames: &[u8],
        count: usize,
        last: Option<[u8; 32]>,
        more: bool,
    ) {
        let Some(dest) = self.dir_pages.remove(&tag) else {
            return;
        };
        match dest {
            DirDest::Answer(conn) => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                for a in c.answers.iter_mut() {
                    if let Answer::Directory {
                        tag: t,
                        after,
                        asked,
                        more: m,
                        count: n,
                        buffered,
                    } = a
                    {
                        if *t == tag {
                            buffered.extend_from_slice(frames);
                            *n = n.saturating_add(count as u32);
                            if last.is_some() {
                                *after = last;
                            }
                            *m = more && count > 0;
                            *asked = false;
                        }
                    }
                }
                self.pump(conn);
            }
            DirDest::Push(i) => {
                let Some(l) = self.links.get_mut(i) else {
                    return;
                };
                let LinkState::Up { conn, .. } = l.state else {
                    return;
                };
                if !matches!(l.dir_push, DirPush::Paging { asked: true, .. }) {
                    return;
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.out.extend_from_slice(frames);
                    l.dir_sent += count as u64;
                }
                l.dir_push = if more && count > 0 {
                    DirPush::Paging {
                        after: last,
                        asked: false,
                    }
                } else {
                    DirPush::Idle
                };
                self.next_dir_page(i);
            }
        }
    }

    /// Link `i`'s connection, if the link is up and its output is within `max_out`.
    fn link_room(&self, i: usize) -> Option<ConnId> {
        let LinkState::Up { conn, .. } = self.links.get(i)?.state else {
            return None;
        };
        let c = self.conns.get(&conn)?;
        (c.pending_out() <= self.cfg.max_out).then_some(conn)
    }

    /// Asks for the next page of a link's full directory push if its output has room.
    fn next_dir_page(&mut self, i: usize) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        let DirPush::Paging {
            after,
            asked: false,
        } = l.dir_push
        else {
            return;
        };
        if self.link_room(i).is_none() {
            return;
        }
        let l = &mut self.links[i];
        l.dir_push = DirPush::Paging { after, asked: true };
        let tag = self.next_tag;
        self.next_tag += 1;
        self.dir_pages.insert(tag, DirDest::Push(i));
        self.actions.push_back(TcpAction::DirectoryPage {
            tag,
            after,
            max: DIR_PAGE,
        });
    }

    fn refuse_clock(&mut self, conn: ConnId, request: u8, clock: u32) {
        self.stats.clocks_refused += 1;
        let name = self
            .conns
            .get(&conn)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        tracing::warn!(
            peer = name,
            clock,
            ours = self.clock,
            "refused an implausible Lamport clock"
        );
        self.fail(conn, 409, request, "clock implausibly far ahead");
    }

    /// Pushes journal line `line` on every link that is live (caught up).
    fn push_live(&mut self, line: u64, contact: &Contact) {
        let Some(rec) = journal_frame(line, contact) else {
            return;
        };
        let mut overfull = Vec::new();
        for l in &mut self.links {
            if l.phase != Phase::Live {
                continue;
            }
            if let LinkState::Up { conn, .. } = l.state {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if c.refused {
                        continue; // already being dropped
                    }
                    if c.pending_out() > 2 * self.cfg.max_out {
                        c.refused = true;
                        overfull.push(conn);
                    } else {
                        c.out.extend_from_slice(&rec);
                        l.pushed_line = line;
                        l.entries_sent += 1;
                    }
                }
            }
        }
        // A peer that does not keep up is dropped; it catches up from its cursor.
        for conn in overfull {
            tracing::info!(
                conn,
                "a peer link is more than 2 MiB behind; dropping it to resume from its cursor"
            );
            self.actions.push_back(TcpAction::Close(conn));
        }
    }

    /// Asks the store for the next page of our journal for link `i`, if its output has room.
    fn next_page(&mut self, i: usize) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        let Phase::Paging {
            since,
            asked: false,
        } = l.phase
        else {
            return;
        };
        if self.link_room(i).is_none() {
            return; // resumed from `consumed` when the peer reads
        }
        let l = &mut self.links[i];
        l.phase = Phase::Paging { since, asked: true };
        let tag = self.next_tag;
        self.next_tag += 1;
        self.page_reads.insert(tag, i);
        self.requests.push(StoreRequest::JournalPage {
            tag,
            since,
            limit: u32::try_from(self.cfg.page).unwrap_or(u32::MAX),
        });
    }

    fn push_answer(&mut self, conn: ConnId, a: Answer) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.answers.push_back(a);
        }
        self.pump(conn);
    }

    /// Queues a merge; once the store says it changed state, it gets the next journal line
    /// and is pushed on every live link (multi-hop; an unchanged record goes no further,
    /// so a flood ends).
    fn record_merge(&mut self, contact: Contact) {
        self.batch_forward
            .push((self.batch_merges, contact.clone()));
        self.batch_merges += 1;
        self.batch.push(Write::Merge(contact));
    }

    fn flush_batch(&mut self) {
        if self.clock_dirty {
            self.batch.push(Write::Clock(self.clock));
            self.clock_dirty = false;
        }
        if !self.batch.is_empty() {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.batch_merges = 0;
            if !self.batch_forward.is_empty() {
                self.forward
                    .insert(seq, std::mem::take(&mut self.batch_forward));
            }
            self.requests.push(StoreRequest::Apply {
                seq,
                batch: std::mem::take(&mut self.batch),
            });
        }
    }

    fn barrier(&mut self, conn: ConnId) {
        self.flush_batch();
        let tag = self.next_tag;
        self.next_tag += 1;
        self.barriers.insert(tag, conn);
        self.requests.push(StoreRequest::Barrier { tag });
        self.push_answer(conn, Answer::Barrier { tag, done: false });
    }

    fn status(&mut self, conn: ConnId) {
        self.flush_batch();
        let tag = self.next_tag;
        self.next_tag += 1;
        self.barriers.insert(tag, conn);
        self.requests.push(StoreRequest::Digest { tag });
        self.actions.push_back(TcpAction::DirectoryDigest { tag });
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
        let Some(&conn) = self.barriers.get(&tag) else {
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
        let clock = self.clock;
        let (journal_id, journal_head) = (self.journal_id, self.journal_head);
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
            let phase = match l.phase {
                Phase::AwaitCursor => "await_cursor",
                Phase::Paging { .. } => "catching_up",
                Phase::FullPush { .. } => "full_push",
                Phase::Live => "live",
            };
            peers.push_str(&format!(
                "peer={} state={state} last_heartbeat_ms_ago={hb} peer_clock={} journal={phase} pushed_line={} confirmed_line={} entries_sent={} records_sent={} directory_sent={} learned={}\n",
                l.addr, l.peer_clock, l.pushed_line, l.confirmed_line, l.entries_sent, l.records_sent, l.dir_sent, l.learned
            ));
        }
        for (name, (lines, records)) in &self.received {
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
        self.barriers.remove(&tag);
        self.pump(conn);
    }

    fn open_stream(&mut self, conn: ConnId, kind: Role) {
        self.open_stream_as(conn, kind, true);
    }

    fn open_stream_as(&mut self, conn: ConnId, kind: Role, counted: bool) {
        let id = self.next_tag;
        self.open_stream_with_id(conn, kind, counted, id);
    }

    fn open_stream_with_id(&mut self, conn: ConnId, kind: Role, counted: bool, id: u64) {
        self.flush_batch();
        self.next_tag = self.next_tag.max(id + 1);
        self.streams.insert(id, conn);
        self.requests.push(StoreRequest::Snapshot { stream: id });
        self.push_answer(
            conn,
            Answer::Stream {
                id,
                kind,
                counted,
                state: StreamState::Opening,
            },
        );
    }

    /// Writes what is ready at the head of `conn`'s answers, in order.
    #[allow(clippy::too_many_lines)] // issue 9: to be split into named steps
    fn pump(&mut self, conn: ConnId) {
        let max_out = self.cfg.max_out;
        let page = self.cfg.page;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        while let Some(front) = c.answers.front_mut() {
            match front {
                Answer::Ready(bytes) => {
                    c.out.extend_from_slice(bytes);
                    c.answers.pop_front();
                }
                Answer::Refusal(bytes) => {
                    c.out.extend_from_slice(bytes);
                    c.answers.pop_front();
                    c.close_when_flushed = true;
                }
                Answer::Barrier { done: true, .. } => {
                    let f = StatusFrame {
                        status: STATUS_OK,
                        request: tcp::CMD_BARRIER,
                        detail: "durable",
                    };
                    let mut buf = [0u8; 16];
                    if let Ok(n) = f.emit(&mut buf) {
                        c.out.extend_from_slice(&buf[..n]);
                    }
                    c.answers.pop_front();
                }
                Answer::Barrier { done: false, .. }
                | Answer::Status { .. }
                | Answer::Since { .. }
                | Answer::Cursor { line: None, .. } => return,
                Answer::Directory {
                    tag,
                    after,
                    asked,
                    more,
                    count,
                    buffered,
                } => {
                    if !buffered.is_empty() {
                        c.out.extend_from_slice(buffered);
                        buffered.clear();
                    }
                    if *asked {
                        return;
                    }
                    if !*more {
                        c.out.extend_from_slice(&[tcp::CMD_DIR_REQUEST, 0, 4]);
                        c.out.extend_from_slice(&count.to_be_bytes());
                        c.answers.pop_front();
                        continue;
                    }
                    if c.out.len() - c.out_pos > max_out {
                        return; // resumed from `consumed` when the peer reads
                    }
                    *asked = true;
                    let tag = *tag;
                    self.dir_pages.insert(tag, DirDest::Answer(conn));
                    self.actions.push_back(TcpAction::DirectoryPage {
                        tag,
                        after: *after,
                        max: DIR_PAGE,
                    });
                    return;
                }
                Answer::Cursor { line: Some(l), .. } => {
                    c.out.push(tcp::CMD_CURSOR_QUERY);
                    c.out.extend_from_slice(&l.to_be_bytes());
                    c.answers.pop_front();
                }
                Answer::Mark { link } => {
                    let i = *link;
                    let Some(l) = self.links.get_mut(i) else {
                        c.answers.pop_front();
                        continue;
                    };
                    let Phase::FullPush { mark: Some(mark) } = l.phase else {
                        return; // the snapshot is not taken yet
                    };
                    c.out.push(tcp::CMD_JOURNAL_MARK);
                    c.out.extend_from_slice(&mark.to_be_bytes());
                    l.pushed_line = mark;
                    l.phase = Phase::Paging {
                        since: mark,
                        asked: true,
                    };
                    c.answers.pop_front();
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    self.page_reads.insert(tag, i);
                    self.requests.push(StoreRequest::JournalPage {
                        tag,
                        since: mark,
                        limit: u32::try_from(page).unwrap_or(u32::MAX),
                    });
                }
                Answer::Stream {
                    state: StreamState::Opening,
                    ..
                } => return,
                Answer::Stream {
                    id,
                    kind,
                    state:
                        StreamState::Open {
                            count,
                            buffered,
                            more,
                            page_asked,
                        },
                    ..
                } => {
                    if let Some(n) = count.take() {
                        c.out.extend_from_slice(&n.to_be_bytes());
                    }
                    let rec_len = match kind {
                        Role::Client => 1 + tcp::CLIENT_UPDATE_LEN,
                        Role::Server => 1 + tcp::SERVER_UPDATE_LEN,
                    };
                    while c.out.len() - c.out_pos + rec_len <= max_out {
                        let Some(ct) = buffered.pop_front() else {
                            break;
                        };
                        let fields = ContactFields {
                            username: &ct.username,
                            contact: &ct.contact,
                            phone: &ct.phone,
                        };
                        let mut rec = [0u8; 1 + tcp::SERVER_UPDATE_LEN];
                        let n = match kind {
                            Role::Client => tcp::emit_client_record(&fields, &mut rec),
                            Role::Server => tcp::emit_server_record(ct.clock, &fields, &mut rec),
                        };
                        if let Ok(n) = n {
                            c.out.extend_from_slice(&rec[..n]);
                        }
                    }
                    // Read ahead: keep the next page coming while this one is written, so
                    // the reader never waits for a round trip to the store thread.
                    if *more && !*page_asked && buffered.len() < page {
                        *page_asked = true;
                        self.requests.push(StoreRequest::NextPage {
                            stream: *id,
                            max: page,
                        });
                    }
                    if buffered.is_empty() {
                        if *more {
                            return;
                        }
                        let id = *id;
                        self.streams.remove(&id);
                        self.requests.push(StoreRequest::CloseStream { stream: id });
                        c.answers.pop_front();
                    } else {
                        return; // output full: wait for the reader
                    }
                }
            }
        }
        if c.close_when_flushed && c.pending_out() == 0 {
            self.actions.push_back(TcpAction::Close(conn));
        }
    }

    /// A report from the store thread.
    #[allow(clippy::too_many_lines)] // issue 9: to be split into named steps
    pub fn handle_store(&mut self, now_ms: u64, ev: StoreEvent) {
        let _ = now_ms;
        match ev {
            StoreEvent::Applied { seq, changed } => {
                if let Some(records) = self.forward.remove(&seq) {
                    for (i, contact) in records {
                        if changed.get(i).copied().unwrap_or(false) {
                            self.journal_head += 1;
                            self.stats.forwarded += 1;
                            self.push_live(self.journal_head, &contact);
                        }
                    }
                }
            }
            StoreEvent::Failed { seq, error } => {
                self.forward.remove(&seq);
                self.stats.store_failures += 1;
                self.store_broken = true;
                tracing::error!(seq, error, "store batch failed; writes are not durable");
            }
            StoreEvent::BarrierDone { tag } => {
                let Some(conn) = self.barriers.remove(&tag) else {
                    return;
                };
                if self.store_broken {
                    return self.fail_now(
                        conn,
                        503,
                        tcp::CMD_BARRIER,
                        "store failure: writes are not durable",
                    );
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    for a in c.answers.iter_mut() {
                        if let Answer::Barrier { tag: t, done } = a {
                            if *t == tag {
                                *done = true;
                            }
                        }
                    }
                }
                self.pump(conn);
            }
            StoreEvent::SnapshotReady { stream, count } => {
                // A full push on a link: the snapshot holds every line up to our head now
                // (the store answers in order, after every earlier batch).
                if let Some(i) = self.push_streams.remove(&stream) {
                    if let Some(l) = self.links.get_mut(i) {
                        l.phase = Phase::FullPush {
                            mark: Some(self.journal_head),
                        };
                        l.records_sent += count;
                    }
                }
                let Some(&conn) = self.streams.get(&stream) else {
                    self.requests.push(StoreRequest::CloseStream { stream });
                    return;
                };
                let count32 = u32::try_from(count).unwrap_or(u32::MAX);
                if let Some(Answer::Stream { state, counted, .. }) = self.find_stream(conn, stream)
                {
                    *state = StreamState::Open {
                        count: counted.then_some(count32),
                        buffered: VecDeque::new(),
                        more: count32 > 0,
                        page_asked: false,
                    };
                }
                self.pump(conn);
            }
            StoreEvent::Page {
                stream,
                contacts,
                more,
            } => {
                let Some(&conn) = self.streams.get(&stream) else {
                    return;
                };
                if let Some(Answer::Stream {
                    state:
                        StreamState::Open {
                            buffered,
                            more: m,
                            page_asked,
                            ..
                        },
                    ..
                }) = self.find_stream(conn, stream)
                {
                    buffered.extend(contacts);
                    *m = more;
                    *page_asked = false;
                }
                self.pump(conn);
            }
            StoreEvent::Digest { tag, count, sha512 } => {
                let Some(&conn) = self.barriers.get(&tag) else {
                    return;
                };
                if let Some(Answer::Status { contacts, .. }) = self.find_status(conn, tag) {
                    *contacts = Some((count, sha512));
                }
                self.finish_status(now_ms, conn, tag);
            }
            StoreEvent::Cursor { tag, line } => {
                let Some(conn) = self.cursor_reads.remove(&tag) else {
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
                if let Some(conn) = self.since_reads.remove(&tag) {
                    return self.finish_since(conn, tag, &entries, read);
                }
                let Some(i) = self.page_reads.remove(&tag) else {
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
                        let mut since = match l.phase {
                            Phase::Paging { since, .. } => since,
                            _ => return,
                        };
                        for (line, contact) in &entries {
                            if let Some(rec) = journal_frame(*line, contact) {
                                c.out.extend_from_slice(&rec);
                                l.entries_sent += 1;
                            }
                            since = *line;
                            l.pushed_line = *line;
                        }
                        if more {
                            l.phase = Phase::Paging {
                                since,
                                asked: false,
                            };
                            self.next_page(i);
                        } else {
                            // Caught up: mark it, and push every new line from now on.
                            c.out.push(tcp::CMD_JOURNAL_MARK);
                            c.out.extend_from_slice(&since.to_be_bytes());
                            l.pushed_line = since;
                            l.phase = Phase::Live;
                        }
                    }
                    JournalRead::Gone | JournalRead::Beyond => {
                        // The journal no longer holds (or never held) the peer's cursor: push
                        // everything from one snapshot, then mark and page what came since.
                        if let Some(l) = self.links.get_mut(i) {
                            l.phase = Phase::FullPush { mark: None };
                        }
                        let id = self.next_tag;
                        self.push_streams.insert(id, i);
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
                let conn = self
                    .streams
                    .remove(&stream)
                    .or_else(|| self.cursor_reads.remove(&stream))
                    .or_else(|| self.since_reads.remove(&stream))
                    .or_else(|| self.barriers.remove(&stream));
                if let Some(conn) = conn {
                    self.fail_now(conn, 503, 0xFF, "store failure while reading");
                } else if let Some(i) = self.page_reads.remove(&stream) {
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
    fn find_stream(&mut self, conn: ConnId, stream: u64) -> Option<&mut Answer> {
        self.conns
            .get_mut(&conn)?
            .answers
            .iter_mut()
            .find(|a| matches!(a, Answer::Stream { id, .. } if *id == stream))
    }

    /// Reads one answer on a link this server opened; false when more bytes are needed (or
    /// the link was closed for a protocol error).
    #[allow(clippy::too_many_lines)] // issue 9: to be split into named steps
    fn parse_answer(&mut self, now_ms: u64, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Some(&expect) = c.expects.front() else {
            if c.inbuf.is_empty() {
                return false;
            }
            // The acceptor speaks only when asked: anything else is a protocol error (or
            // its status frame before it closes).
            let detail = status_detail(&c.inbuf);
            tracing::warn!(peer = %c.addr, detail, "unexpected bytes from a peer; closing the link");
            self.actions.push_back(TcpAction::Close(conn));
            c.close_when_flushed = true;
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
                match c.inbuf.first() {
                    None => return false,
                    Some(&tcp::CMD_AUTH_CHALLENGE) => {}
                    Some(_) => {
                        let detail = status_detail(&c.inbuf);
                        tracing::warn!(peer = %c.addr, detail, "peer did not answer our challenge; closing the link");
                        self.close_link(now_ms, conn);
                        return false;
                    }
                }
                if c.inbuf.len() < 1 + tcp::NONCE_LEN {
                    return false;
                }
                let nonce: Vec<u8> = c.inbuf.drain(..1 + tcp::NONCE_LEN).skip(1).collect();
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
                if c.inbuf.len() < 9 {
                    return false;
                }
                if c.inbuf[0] != tcp::CMD_CURSOR_QUERY {
                    tracing::warn!(peer = %c.addr, "peer did not answer the cursor query; closing the link");
                    self.close_link(now_ms, conn);
                    return false;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&c.inbuf[1..9]);
                c.inbuf.drain(..9);
                c.expects.pop_front();
                let since = u64::from_be_bytes(b);
                let Some(i) = c.link else {
                    return true;
                };
                if let Some(l) = self.links.get_mut(i) {
                    l.phase = Phase::Paging {
                        since,
                        asked: false,
                    };
                    l.pushed_line = since;
                    l.confirmed_line = since;
                    // A full exchange with the peer is under way: the link is healthy.
                    l.backoff_ms = self.cfg.backoff_min_ms;
                }
                self.next_page(i);
                true
            }
            Expect::HeartBeat => {
                match c.inbuf.first() {
                    None => return false,
                    Some(&tcp::CMD_UPDATE_CLOCK) => {
                        if c.inbuf.len() < 5 {
                            return false;
                        }
                        let v =
                            u32::from_be_bytes([c.inbuf[1], c.inbuf[2], c.inbuf[3], c.inbuf[4]]);
                        if let Some(l) = c.link.and_then(|i| self.links.get_mut(i)) {
                            l.peer_clock = v;
                        }
                        c.inbuf.drain(..5);
                        c.expects.pop_front();
                        if self.plausible(v) {
                            self.observe_clock(v);
                        }
                    }
                    Some(_) => {
                        c.expects.pop_front(); // no UpdateClock: the peer took our clock
                    }
                }
                true
            }
            Expect::Status { .. } => {
                if c.inbuf.len() < StatusFrame::FIXED_LEN {
                    return false;
                }
                let len = StatusFrame::FIXED_LEN + usize::from(c.inbuf[4]);
                if c.inbuf.len() < len {
                    return false;
                }
                let frame: Vec<u8> = c.inbuf.drain(..len).collect();
                c.expects.pop_front();
                match StatusFrame::parse(&frame) {
                    Ok(f) if f.status == STATUS_OK => {
                        if let Some(l) = c.link.and_then(|i| self.links.get_mut(i)) {
                            l.last_heartbeat_ms = Some(now_ms);
                            if let Expect::Status { confirms } = expect {
                                l.confirmed_line = l.confirmed_line.max(confirms);
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
            c.refused = true;
            c.inbuf.clear();
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
        let first = c.inbuf.first().copied();
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
                        let detail = status_detail(&c.inbuf);
                        tracing::warn!(peer = %c.addr, detail, "peer did not answer the node list sync; closing the link");
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                }
                let n = match crate::federation::nodelist::frame_len(&c.inbuf) {
                    Ok(Some(n)) => n,
                    Ok(None) => return Some(false),
                    Err(_) => {
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                };
                let frame: Vec<u8> = c.inbuf.drain(..n).collect();
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
                        let detail = status_detail(&c.inbuf);
                        tracing::warn!(peer = %c.addr, detail, "peer did not answer the directory request; closing the link");
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                }
                let n = match tcp::command_len(Role::Server, &c.inbuf) {
                    Ok(Some(n)) => n,
                    Ok(None) => return Some(false),
                    Err(_) => {
                        self.close_link(now_ms, conn);
                        return Some(false);
                    }
                };
                let mut frame: Vec<u8> = c.inbuf.drain(..n).collect();
                if frame[0] == tcp::CMD_DIR_RECORD {
                    self.stats.dir_records_in += 1;
                    frame.drain(..3); // the body, without a second copy
                    self.actions
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
            c.close_when_flushed = true;
            c.inbuf.clear();
        }
        self.actions.push_back(TcpAction::Close(conn));
    }

    /// Ends a loop turn: the writes gathered in it go to the store as one batch.
    pub fn end_turn(&mut self) {
        self.flush_batch();
    }

    /// The next request for the store thread, in order.
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        if self.requests.is_empty() {
            None
        } else {
            Some(self.requests.remove(0))
        }
    }

    /// Takes every pending store request, in order.
    pub fn drain_store(&mut self) -> Vec<StoreRequest> {
        std::mem::take(&mut self.requests)
    }

    /// Puts an action back at the front (the loop could not do it now).
    pub fn requeue(&mut self, action: TcpAction) {
        self.actions.push_front(action);
    }

    /// True when actions wait for the loop.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next thing the loop must do.
    pub fn poll_action(&mut self) -> Option<TcpAction> {
        self.actions.pop_front()
    }

    /// Bytes waiting to be written on `conn`.
    pub fn output(&self, conn: ConnId) -> &[u8] {
        self.conns.get(&conn).map_or(&[], |c| &c.out[c.out_pos..])
    }

    /// `n` bytes of [`Self::output`] were written.
    pub fn consumed(&mut self, now_ms: u64, conn: ConnId, n: usize) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.out_pos += n;
        if n > 0 {
            c.last_progress_ms = now_ms;
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        } else if c.out_pos > 64 * 1024 {
            c.out.drain(..c.out_pos);
            c.out_pos = 0;
        }
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
            if c.role.is_none() && now_ms >= c.accepted_ms + self.cfg.hello_timeout_ms && !c.refused
            {
                late.push(id);
            } else if c.pending_out() > 0 && now_ms >= c.last_progress_ms + self.cfg.stall_ms {
                stalled.push(id);
            }
        }
        for id in late {
            let secs = self.cfg.hello_timeout_ms / 1000;
            self.fail(id, 408, 0, &format!("no complete hello within {secs} s"));
        }
        for id in stalled {
            tracing::info!(conn = id, "dropping a connection that stopped reading");
            self.actions.push_back(TcpAction::Close(id));
        }
        for i in 0..self.links.len() {
            match self.links[i].state {
                LinkState::Down { retry_ms } if now_ms >= retry_ms => {
                    self.links[i].state = LinkState::Connecting;
                    let addr = self.links[i].addr;
                    self.actions.push_back(TcpAction::Connect { peer: i, addr });
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
                            c.refused = true;
                        }
                        self.actions.push_back(TcpAction::Close(conn));
                        continue;
                    }
                    self.links[i].state = LinkState::Up {
                        conn,
                        next_heartbeat_ms: now_ms + self.cfg.heartbeat_ms,
                    };
                    let clock = self.clock;
                    let confirms = self.links[i].pushed_line;
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
            if c.role.is_none() && !c.refused {
                Some(c.accepted_ms + self.cfg.hello_timeout_ms)
            } else if c.pending_out() > 0 {
                Some(c.last_progress_ms + self.cfg.stall_ms)
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

impl Link {
    fn new(addr: SocketAddr, now_ms: u64, backoff_ms: u64, learned: bool) -> Self {
        Link {
            addr,
            state: LinkState::Down { retry_ms: now_ms },
            backoff_ms,
            last_heartbeat_ms: None,
            up_since_ms: 0,
            peer_clock: 0,
            phase: Phase::AwaitCursor,
            pushed_line: 0,
            confirmed_line: 0,
            entries_sent: 0,
            records_sent: 0,
            dir_sent: 0,
            dir_push: DirPush::Idle,
            learned,
        }
    }
}

/// A status frame's bytes.
fn status_bytes(status: u16, request: u8, detail: &str) -> Vec<u8> {
    let f = StatusFrame {
        status,
        request,
        detail,
    };
    let mut buf = vec![0u8; f.buffer_len()];
    let n = f.emit(&mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}

impl Conn {
    fn new(addr: SocketAddr, now_ms: u64, link: Option<usize>) -> Self {
        Conn {
            addr,
            accepted_ms: now_ms,
            role: None,
            name: String::new(),
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            answers: VecDeque::new(),
            close_when_flushed: false,
            refused: false,
            last_progress_ms: now_ms,
            link,
            peer_journal: None,
            expects: VecDeque::new(),
            must_auth: false,
            authed: false,
            nonce: None,
            last_in_ms: now_ms,
        }
    }

    fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// On a link: sends our node-list hash frame `h` (10) unless a hash is already awaiting
    /// its answer (one outstanding is enough; its answer compares with the list as it is).
    fn ask_node_hash(&mut self, h: &[u8]) {
        if !self.expects.iter().any(|e| *e == Expect::NodeHash) {
            self.out.extend_from_slice(h);
            self.expects.push_back(Expect::NodeHash);
        }
    }

    /// Output pending plus what the pending short answers will add (at most 16 bytes each:
    /// a barrier's status frame or an UpdateClock), so that parsing stops before the
    /// connection's output can pass its bound. Streams bound themselves.
    fn committed_out(&self) -> usize {
        self.pending_out() + 16 * self.answers.len()
    }
}

fn to_contact(f: &ContactFields<'_>, clock: u32) -> Contact {
    Contact {
        username: f.username.to_string(),
        contact: f.contact.to_string(),
        phone: f.phone.to_string(),
        clock,
    }
}

fn status_detail(buf: &[u8]) -> String {
    match buf.first() {
        Some(&tcp::CMD_STATUS) => {
            let end = buf
                .len()
                .min(StatusFrame::FIXED_LEN + usize::from(*buf.get(4).unwrap_or(&0)));
            StatusFrame::parse(&buf[..end])
                .map(|f| format!("{} {}", f.status, f.detail))
                .unwrap_or_else(|_| "status frame".into())
        }
        _ => format!("{} bytes", buf.len()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cursor key under which we keep how much of journal `id` we hold.
fn cursor_key(id: u64) -> String {
    format!("journal:{id:016x}")
}

/// A JournalUpdate frame (13) for `line`; `None` if the contact does not fit the wire.
fn journal_frame(line: u64, contact: &Contact) -> Option<Vec<u8>> {
    let cmd = ServerCommand::JournalUpdate {
        line,
        clock: contact.clock,
        fields: ContactFields {
            username: &contact.username,
            contact: &contact.contact,
            phone: &contact.phone,
        },
    };
    let mut buf = vec![0u8; cmd.buffer_len()];
    cmd.emit(&mut buf).ok()?;
    Some(buf)
}
