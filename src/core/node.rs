//! One whole server, free of I/O: the UDP plane ([`UdpCore`]) and the TCP plane
//! ([`TcpCore`]) and the conversation between them (directory records, forwards, directory
//! pages and digests; docs/PROTOCOL.md §8.16). The event loop in `net`, the in-memory
//! network in [`crate::sim`] and the tests drive a [`Node`] alike; none of them routes.
//!
//! What it never does: read a clock, touch a socket or the store. Time comes in as [`Now`],
//! datagrams go out through an [`Out`] callback, connection bytes through
//! [`Node::output`] / [`Node::consumed`], store work through [`Node::poll_store`] /
//! [`Node::handle_store`], and what only the loop can do (open or close a connection) through
//! [`Node::poll_action`].

use super::logs::{RefusalLog, Refusals};
use super::tcp::{ConnId, Peering, TcpAction, TcpCore};
use super::udp::{QueueBounds, RateLimits, UdpCore};
use super::{Now, Out, PeerOut};
use crate::store::{Store, StoreError, StoreEvent, StoreRequest};
use crate::wire::tcp::{CMD_DIR_RECORD, CMD_FORWARD};
use crate::wire::Fingerprint;
use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// The UDP plane as the node shares it with the loop's UDP workers (docs/PROTOCOL.md §7,
/// "Workers"): one lock, taken once per received batch of datagrams by a worker and for
/// each routing step by the node.
pub type SharedUdp = Arc<Mutex<UdpCore>>;

/// What only the event loop can do for a [`Node`]: open or close a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// Open a TCP connection to configured or learned peer number `peer` at `addr`; report
    /// with [`Node::handle_connected`] or [`Node::handle_connect_failed`].
    Connect {
        /// Index of the peer link (stable for the node's life).
        peer: usize,
        /// Where to connect.
        addr: SocketAddr,
        /// Run TLS 1.3 on the connection (docs/PROTOCOL.md §8.19); report with
        /// [`Node::handle_connected_tls`] once the handshake is done.
        tls: bool,
    },
    /// Close this connection now (its output is flushed or abandoned), then report it with
    /// [`Node::handle_closed`].
    Close(ConnId),
}

/// What the store holds when a server starts: the Lamport clock, the journal's id and last
/// line, and the node list's canonical bytes (empty when none was stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The persisted Lamport clock (0 for a new store).
    pub clock: u32,
    /// The journal's id (random, non-zero).
    pub journal_id: u64,
    /// The journal's last line (0 when it never had one).
    pub journal_head: u64,
    /// The node list's canonical bytes (docs/PROTOCOL.md §8.15), or empty.
    pub node_list: Vec<u8>,
}

impl Stored {
    /// Reads what a server starts from out of `store`.
    ///
    /// # Errors
    /// The store's error, for the first of the four reads that fails.
    pub fn read(store: &dyn Store) -> Result<Stored, StoreError> {
        Ok(Stored {
            clock: store.clock()?,
            journal_id: store.journal_id()?,
            journal_head: store.journal_head()?,
            node_list: store.node_list()?,
        })
    }
}

/// The settings a running [`Node`] takes without a restart (docs/PROTOCOL.md §7,
/// "Reload"): who it federates with and trusts, and the UDP plane's limits.
#[derive(Debug, Clone)]
pub struct Reloadable {
    /// `--peer`, `--allow-peer`, `--no-mesh`, `--peer-key` (its `tls_links` is ignored:
    /// fixed at start).
    pub peering: Peering,
    /// `--register-rate`, `--lookup-bytes`, `--relay-bytes`, `--punch-interval-ms` (its
    /// `max_entries` and `exempt_loopback` are ignored: fixed at start).
    pub limits: RateLimits,
    /// `--max-clients`: most local clients online at once.
    pub max_clients: usize,
    /// `--queue-depth`, `--queue-per-sender`, `--queue-age`, `--queue-bytes`.
    pub queue: QueueBounds,
}

/// Rounds of routing per [`Node::end_turn`]: a directory page asked for by a write can lead
/// to another; the rest waits for the next turn.
const ROUTE_ROUNDS: usize = 8;

/// One whole rendezvous server: both planes and the routing between them.
pub struct Node {
    udp: SharedUdp,
    tcp: TcpCore,
    /// Connects and closes for the loop, in order.
    io: VecDeque<NodeAction>,
    /// Reused buffer of directory-page frames.
    frames: Vec<u8>,
    /// When the next summary of refusals is due (docs/OPERATIONS.md §6).
    refusals: RefusalLog,
}

impl Node {
    /// A node of the two planes, as built from the configuration and the store's state
    /// (`TcpCore::with_journal`, `TcpCore::with_nodes`).
    pub fn new(udp: UdpCore, tcp: TcpCore) -> Self {
        Node {
            udp: Arc::new(Mutex::new(udp)),
            tcp,
            io: VecDeque::new(),
            frames: Vec::new(),
            refusals: RefusalLog::new(RefusalLog::DEFAULT_EVERY_MS),
        }
    }

    /// Logs the summary of refusals every `every_ms` instead of every
    /// [`RefusalLog::DEFAULT_EVERY_MS`] (`serve --log-summary-interval`).
    pub fn with_summary_every(mut self, every_ms: u64) -> Self {
        self.refusals = RefusalLog::new(every_ms);
        self
    }

    /// The UDP plane (directory, counters), for status and tests: locked until the guard
    /// is dropped, so a caller must not hold it across another call into the node.
    pub fn udp(&self) -> MutexGuard<'_, UdpCore> {
        self.udp.lock()
    }

    /// The UDP plane itself, for the loop's UDP workers: each locks it once per batch of
    /// datagrams it read ([`UdpCore::handle_datagram`] for each), while the node's own
    /// calls lock it for each step (docs/PROTOCOL.md §7, "Workers").
    pub fn shared_udp(&self) -> SharedUdp {
        Arc::clone(&self.udp)
    }

    /// The TCP plane (clock, links, node list, counters), for status and tests.
    pub fn tcp(&self) -> &TcpCore {
        &self.tcp
    }

    /// Begins a drain (docs/PROTOCOL.md §7, "Signals"): peers are told at once that this
    /// server is draining (HeartBeat health 3), new hellos are refused (503 `draining`);
    /// everything else goes on ([`TcpCore::begin_drain`]).
    pub fn begin_drain(&mut self, now: Now) {
        self.tcp.begin_drain(now.mono_ms);
    }

    /// True when nothing is in flight on the TCP plane: no unanswered write, store request,
    /// answer or unwritten byte ([`TcpCore::drained`]).
    pub fn drained(&self) -> bool {
        self.tcp.drained()
    }

    /// Takes `r` at `now` (a reload, docs/PROTOCOL.md §7, "Reload"): the directory, the
    /// contacts, the queued events and every live connection stay; links to peers no
    /// longer configured close ([`TcpCore::set_peering`], [`UdpCore::set_limits`]).
    pub fn reconfigure(&mut self, r: Reloadable, now: Now) {
        self.udp.lock().set_limits(r.limits, r.max_clients, r.queue);
        self.tcp.set_peering(r.peering, now.mono_ms);
    }

    /// Sets how many TCP connections may be accepted at once (the loop's descriptor
    /// budget; docs/PROTOCOL.md §8.11): past it, the busiest address makes room.
    pub fn set_max_tcp_conns(&mut self, max: usize) {
        self.tcp.set_max_conns(max);
    }

    /// Handles one datagram from `src` at `now`; each datagram to send goes to `out`
    /// (docs/PROTOCOL.md §2-§5). Allocates nothing for keepalives and lookups.
    pub fn handle_datagram(&mut self, now: Now, src: SocketAddr, data: &[u8], out: &mut Out<'_>) {
        self.udp.lock().handle_datagram(now, src, data, out);
    }

    /// A TCP connection was accepted from `addr` as `conn`.
    pub fn handle_accept(&mut self, now: Now, conn: ConnId, addr: SocketAddr) {
        self.tcp.handle_accept(now.mono_ms, conn, addr);
    }

    /// The connection to peer link `peer` is established as `conn`.
    pub fn handle_connected(&mut self, now: Now, peer: usize, conn: ConnId) {
        self.tcp.handle_connected(now.mono_ms, peer, conn);
    }

    /// The TLS connection to peer link `peer` is established as `conn` and its handshake
    /// done; the acceptor's certificate carries `peer_key` (its raw public key). The core
    /// checks it against the node list before it sends anything (docs/PROTOCOL.md §8.19).
    pub fn handle_connected_tls(&mut self, now: Now, peer: usize, conn: ConnId, peer_key: &[u8]) {
        self.tcp
            .handle_connected_tls(now.mono_ms, peer, conn, peer_key);
    }

    /// The TLS handshake on accepted connection `conn` is done; the opener's certificate
    /// carried `peer_key` (its raw public key), or it sent none (a client). Comes before
    /// any of the connection's bytes (docs/PROTOCOL.md §8.19).
    pub fn handle_secured(&mut self, now: Now, conn: ConnId, peer_key: Option<Vec<u8>>) {
        self.tcp.handle_secured(now.mono_ms, conn, peer_key);
    }

    /// Connecting to peer link `peer` failed (refused, or no answer within the loop's
    /// connect timeout): it is retried after a backoff.
    pub fn handle_connect_failed(&mut self, now: Now, peer: usize) {
        self.tcp.handle_connect_failed(now.mono_ms, peer);
    }

    /// The connection was closed (by the other side, an error, or a [`NodeAction::Close`]).
    pub fn handle_closed(&mut self, now: Now, conn: ConnId) {
        self.tcp.handle_closed(now.mono_ms, conn);
    }

    /// How many more bytes the node takes from `conn` now; 0 means stop reading
    /// (backpressure; docs/PROTOCOL.md §8.11).
    pub fn read_budget(&self, conn: ConnId) -> usize {
        self.tcp.read_budget(conn)
    }

    /// Bytes read from `conn` (at most [`Self::read_budget`]).
    pub fn handle_data(&mut self, now: Now, conn: ConnId, data: &[u8]) {
        self.tcp.handle_data(now.mono_ms, conn, data);
    }

    /// Bytes waiting to be written on `conn`.
    pub fn output(&self, conn: ConnId) -> &[u8] {
        self.tcp.output(conn)
    }

    /// `n` bytes of [`Self::output`] were written to `conn`.
    pub fn consumed(&mut self, now: Now, conn: ConnId, n: usize) {
        self.tcp.consumed(now.mono_ms, conn, n);
    }

    /// The next request for the store, in the order they must be carried out.
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        self.tcp.poll_store()
    }

    /// What the store answered to a request.
    pub fn handle_store(&mut self, now: Now, ev: StoreEvent) {
        self.tcp.handle_store(now.mono_ms, ev);
    }

    /// Expires clients and remote entries, re-announces, drops aged queued events, sweeps
    /// rate limits (UDP); hello timeouts, stalled readers, heartbeats and reconnects (TCP);
    /// logs the summary of refusals when an interval with any has ended.
    pub fn handle_timeout(&mut self, now: Now) {
        self.udp.lock().handle_timeout(now);
        self.tcp.handle_timeout(now.mono_ms);
        let (udp, tcp) = (&self.udp, &self.tcp);
        let counts = || Refusals::of(&udp.lock().stats().emitted, tcp.stats().errors);
        if let Some(summary) = self.refusals.tick(now.mono_ms, counts) {
            summary.log();
        }
    }

    /// The next monotonic time (ms) at which [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.udp.lock().poll_timeout(),
            self.tcp.poll_timeout(),
            self.refusals.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Ends a loop turn: routes what each plane has for the other (directory records and
    /// forwards from peers to the UDP plane, its news and forwards to the peer links,
    /// directory pages and digests), and hands the turn's contact writes to the store as
    /// one batch. Datagrams that forwards deliver go to `out`.
    pub fn end_turn(&mut self, now: Now, out: &mut Out<'_>) {
        for _ in 0..ROUTE_ROUNDS {
            let routed = self.route_tcp_actions(now, out) + self.route_peer_out();
            if routed == 0 {
                break;
            }
        }
        self.tcp.end_turn();
    }

    /// The next connect or close for the loop; routing work found on the way stays for the
    /// next [`Self::end_turn`].
    pub fn poll_action(&mut self) -> Option<NodeAction> {
        if let Some(a) = self.io.pop_front() {
            return Some(a);
        }
        match self.tcp.poll_action()? {
            TcpAction::Connect { peer, addr, tls } => Some(NodeAction::Connect { peer, addr, tls }),
            TcpAction::Close(conn) => Some(NodeAction::Close(conn)),
            other => {
                self.tcp.requeue(other);
                None
            }
        }
    }

    /// The next action if it is a close: writing a refused connection's last bytes
    /// closes it at once, before the next [`Self::end_turn`]; anything else waits.
    pub fn poll_close(&mut self) -> Option<NodeAction> {
        match self.io.front() {
            Some(NodeAction::Close(_)) => return self.io.pop_front(),
            Some(_) => return None,
            None => {}
        }
        match self.tcp.poll_action()? {
            TcpAction::Close(conn) => Some(NodeAction::Close(conn)),
            other => {
                self.tcp.requeue(other);
                None
            }
        }
    }

    /// True when routing or loop actions wait ([`Self::end_turn`] or
    /// [`Self::poll_action`] has work): the loop should not sleep.
    pub fn busy(&self) -> bool {
        !self.io.is_empty() || self.tcp.has_actions()
    }

    /// Carries out the TCP plane's requests of the UDP plane; connects and closes are kept
    /// for the loop. Returns how many were routed.
    fn route_tcp_actions(&mut self, now: Now, out: &mut Out<'_>) -> usize {
        let mut routed = 0;
        while let Some(action) = self.tcp.poll_action() {
            routed += 1;
            match action {
                TcpAction::Connect { peer, addr, tls } => {
                    self.io.push_back(NodeAction::Connect { peer, addr, tls })
                }
                TcpAction::Close(conn) => self.io.push_back(NodeAction::Close(conn)),
                TcpAction::DirectoryDigest { tag } => {
                    let (online, sha) = self.udp.lock().directory_digest();
                    self.tcp
                        .handle_directory_digest(now.mono_ms, tag, online, &sha);
                }
                TcpAction::PeerRecord { conn, body } => self.peer_record(now, conn, &body),
                TcpAction::VerifyClient {
                    conn,
                    cert,
                    message,
                    signature,
                } => {
                    let r = self
                        .udp
                        .lock()
                        .verify_client_proof(now, &cert, &message, &signature)
                        .map_err(|e| (e.status, e.detail.to_string()));
                    self.tcp.client_verified(now.mono_ms, conn, r);
                }
                TcpAction::Forward { conn, body } => self.forward(now, conn, &body, out),
                TcpAction::DirectoryIds { tag } => {
                    let items = self.udp.lock().directory_ids();
                    self.tcp.handle_directory_ids(now.mono_ms, tag, &items);
                }
                TcpAction::DirectoryPage {
                    tag,
                    after,
                    max,
                    only,
                } => {
                    self.frames.clear();
                    let udp = self.udp.lock();
                    let after = after.map(Fingerprint);
                    let page = match &only {
                        Some(o) => udp.directory_page_of(now, after, max, &o.0, &mut self.frames),
                        None => udp.directory_page(now, after, max, &mut self.frames),
                    };
                    drop(udp);
                    self.tcp.handle_directory_page(
                        tag,
                        &self.frames,
                        page.records,
                        page.last.map(|f| f.0),
                        page.more,
                    );
                }
            }
        }
        routed
    }

    /// A DirRecord body from a peer: applied to the directory, or refused on its connection.
    fn peer_record(&mut self, now: Now, conn: ConnId, body: &[u8]) {
        let applied = self.udp.lock().apply_peer_record(now, body);
        if let Err(e) = applied {
            tracing::warn!(
                status = e.status,
                detail = e.detail,
                "refused a directory record from a peer"
            );
            self.tcp
                .refuse_peer(now.mono_ms, conn, CMD_DIR_RECORD, e.status, e.detail);
        }
    }

    /// A Forward body from a peer: delivered here, passed on, or refused.
    fn forward(&mut self, now: Now, conn: ConnId, body: &[u8], out: &mut Out<'_>) {
        let handled = self.udp.lock().handle_forward(now, body, out);
        if let Err(e) = handled {
            tracing::warn!(
                status = e.status,
                detail = e.detail,
                "refused a forward from a peer"
            );
            self.tcp
                .refuse_peer(now.mono_ms, conn, CMD_FORWARD, e.status, e.detail);
        }
    }

    /// Hands the UDP plane's news for the peers (records, forwards, a resync request) to the
    /// links. Returns how many items moved.
    fn route_peer_out(&mut self) -> usize {
        let mut routed = 0;
        loop {
            let Some(item) = self.udp.lock().poll_peer_out() else {
                break;
            };
            routed += 1;
            match item {
                PeerOut::Record(b) => self.tcp.push_directory(&b),
                PeerOut::Forward(b) => self.tcp.push_forward(&b),
                PeerOut::WantDirectory => self.tcp.request_directory(),
            }
        }
        routed
    }
}

/// A server's node uid: the first 16 bytes of SHA-256 of its public node key
/// (docs/PROTOCOL.md §8.15).
pub fn node_uid(public_key: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(public_key);
    let mut uid = [0u8; 16];
    uid.copy_from_slice(&d[..16]);
    uid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::logs::capture;
    use crate::core::tcp::TcpConfig;
    use crate::core::udp::UdpConfig;

    /// Malformed datagrams are counted by the UDP plane and summarised by the node once,
    /// when the interval on its clock ends; an interval without refusals logs nothing.
    #[test]
    fn refusals_are_summarised_once_per_interval_on_the_node_clock() {
        let now = Now {
            mono_ms: 1_000,
            unix_s: 1_700_000_000,
        };
        let at = |mono_ms| Now { mono_ms, ..now };
        let udp = UdpCore::new(UdpConfig::default(), [1; 32], now);
        let tcp = TcpCore::new(TcpConfig::default(), 0, now.mono_ms);
        let mut node = Node::new(udp, tcp).with_summary_every(5_000);
        node.handle_timeout(now); // the first interval begins
        assert!(node.poll_timeout().is_some_and(|t| t <= 6_000));
        let src: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut replies = 0;
        for _ in 0..5 {
            node.handle_datagram(now, src, &[0x02; 32], &mut |_, _| replies += 1);
        }
        assert_eq!(replies, 5, "each answered 400");
        let lines = capture::json_lines(|| {
            for ms in [5_999, 6_000, 11_000] {
                node.handle_timeout(at(ms));
            }
        });
        let summaries: Vec<_> = lines
            .iter()
            .filter(|v| v["fields"]["message"] == "requests refused in the last interval")
            .collect();
        assert_eq!(summaries.len(), 1, "{lines:?}");
        let f = &summaries[0]["fields"];
        assert_eq!((&f["bad_request"], &f["total"]), (&5.into(), &5.into()));
        assert_eq!(f["interval_ms"], 5_000);
    }
}
