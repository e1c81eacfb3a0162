//! The TCP plane's I/O: the listener on the UDP plane's port, each connection's reads and
//! writes, outbound connections to peers, and the store thread's wake-ups, all in the one
//! mio loop. Protocol decisions live in [`crate::core::tcp::TcpCore`].

use crate::core::tcp::{ConnId, TcpAction, TcpCore};
use crate::core::udp::UdpCore;
use crate::core::{Now, Out, PeerOut};
use crate::store::thread::StoreThread;
use crate::wire::tcp::{CMD_DIR_RECORD, CMD_FORWARD};
use crate::wire::Fingerprint;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// Token of the TCP listener.
pub const LISTENER: Token = Token(1);
/// Token of the store thread's waker.
pub const WAKER: Token = Token(2);
const FIRST_CONN: usize = 16;
/// A connect to a peer not established within this long is abandoned and retried, ms.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Most TCP connections at once; more are closed at accept.
const MAX_CONNS: usize = 4096;

/// Binds a TCP listener on `addr` (dual-stack for `[::]`).
///
/// # Errors
/// The OS error of `socket`, `bind` or `listen`.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

struct ConnIo {
    stream: TcpStream,
    /// Outbound link still connecting: the peer index.
    connecting: Option<usize>,
    /// When the connect started (ms); one that takes over 5 s is abandoned and retried.
    started_ms: u64,
    /// Readable data may remain (we stopped before WouldBlock).
    read_pending: bool,
    writable_interest: bool,
}

/// The TCP side of the loop.
pub struct TcpIo {
    listener: TcpListener,
    core: TcpCore,
    store: StoreThread,
    conns: HashMap<ConnId, ConnIo>,
    next_id: ConnId,
    buf: Vec<u8>,
}

fn token(id: ConnId) -> Token {
    Token(FIRST_CONN + id as usize)
}

impl TcpIo {
    /// Registers `listener` and wraps the core and its store thread.
    ///
    /// # Errors
    /// Registration errors.
    pub fn new(
        listener: std::net::TcpListener,
        core: TcpCore,
        store: StoreThread,
        registry: &Registry,
    ) -> io::Result<TcpIo> {
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(TcpIo {
            listener,
            core,
            store,
            conns: HashMap::new(),
            next_id: 1,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The core's next deadline (monotonic ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.core.poll_timeout()
    }

    /// Handles one readiness event for a TCP token.
    pub fn on_event(&mut self, registry: &Registry, ev: &mio::event::Event, now_ms: u64) {
        match ev.token() {
            LISTENER => self.accept(registry, now_ms),
            WAKER => {}
            Token(t) if t >= FIRST_CONN => {
                let id = (t - FIRST_CONN) as ConnId;
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                if let Some(peer) = c.connecting {
                    if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                        let ok = c.stream.take_error().ok().flatten().is_none()
                            && c.stream.peer_addr().is_ok();
                        if ok {
                            c.connecting = None;
                            self.core.handle_connected(now_ms, peer, id);
                        } else {
                            self.drop_conn(registry, id);
                            self.core.handle_connect_failed(now_ms, peer);
                            return;
                        }
                    } else {
                        return;
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.read_pending = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn accept(&mut self, registry: &Registry, now_ms: u64) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, addr)) => {
                    if self.conns.len() >= MAX_CONNS {
                        tracing::warn!(%addr, "too many TCP connections; refusing");
                        continue; // dropped: closed
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let _ = stream.set_nodelay(true);
                    if registry
                        .register(&mut stream, token(id), Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.conns.insert(
                        id,
                        ConnIo {
                            stream,
                            connecting: None,
                            started_ms: now_ms,
                            read_pending: true,
                            writable_interest: false,
                        },
                    );
                    self.core
                        .handle_accept(now_ms, id, crate::wire::udp::canonical_addr(addr));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn drop_conn(&mut self, registry: &Registry, id: ConnId) {
        if let Some(mut c) = self.conns.remove(&id) {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// One loop turn of TCP work after events: store events, reads, timeouts, store
    /// requests, actions and writes.
    ///
    /// `udp` is the UDP core: directory records and forwards from peers go to it, and what
    /// it has for peers goes out on the links; `out` sends the datagrams that produces.
    pub fn turn(&mut self, registry: &Registry, now: Now, udp: &mut UdpCore, out: &mut Out<'_>) {
        let now_ms = now.mono_ms;
        while let Some(ev) = self.store.try_recv() {
            self.core.handle_store(now_ms, ev);
        }
        // Reads, within each connection's budget (backpressure).
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.read_pending && c.connecting.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.read(registry, id, now_ms);
        }
        // A connect to a host that drops our SYNs would hang for the kernel's ~2 minutes.
        let late: Vec<(ConnId, usize)> = self
            .conns
            .iter()
            .filter_map(|(&id, c)| c.connecting.map(|p| (id, p, c.started_ms)))
            .filter(|&(_, _, t)| now_ms.saturating_sub(t) > CONNECT_TIMEOUT_MS)
            .map(|(id, p, _)| (id, p))
            .collect();
        for (id, peer) in late {
            self.drop_conn(registry, id);
            self.core.handle_connect_failed(now_ms, peer);
        }
        self.core.handle_timeout(now_ms);
        self.core.end_turn();
        for req in self.core.drain_store() {
            self.store.send(req);
        }
        // Actions, the UDP core's news for peers, and writes, until nothing new comes of
        // them (a write can free room for a directory page; bounded per turn).
        for _ in 0..8 {
            self.actions(registry, now, udp, out);
            self.write_all(registry, now_ms);
            if !self.core.has_actions() {
                break;
            }
        }
        // Writing may have freed room for streamed answers: their page requests go out now.
        for req in self.core.drain_store() {
            self.store.send(req);
        }
    }

    /// Carries out the core's actions, then hands what the UDP core has for peers to the
    /// links.
    fn actions(&mut self, registry: &Registry, now: Now, udp: &mut UdpCore, out: &mut Out<'_>) {
        let now_ms = now.mono_ms;
        while let Some(action) = self.core.poll_action() {
            match action {
                TcpAction::Connect { peer, addr } => match TcpStream::connect(addr) {
                    Ok(mut stream) => {
                        let id = self.next_id;
                        self.next_id += 1;
                        let _ = stream.set_nodelay(true);
                        if registry
                            .register(
                                &mut stream,
                                token(id),
                                Interest::READABLE | Interest::WRITABLE,
                            )
                            .is_err()
                        {
                            self.core.handle_connect_failed(now_ms, peer);
                            continue;
                        }
                        self.conns.insert(
                            id,
                            ConnIo {
                                stream,
                                connecting: Some(peer),
                                started_ms: now_ms,
                                read_pending: false,
                                writable_interest: true,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "connecting to a peer failed");
                        self.core.handle_connect_failed(now_ms, peer);
                    }
                },
                TcpAction::Close(id) => {
                    self.drop_conn(registry, id);
                    self.core.handle_closed(now_ms, id);
                }
                TcpAction::DirectoryDigest { tag } => {
                    let (online, sha) = udp.directory_digest();
                    self.core.handle_directory_digest(now_ms, tag, online, &sha);
                }
                TcpAction::PeerRecord { conn, body } => {
                    if let Err(e) = udp.apply_peer_record(now, &body) {
                        tracing::warn!(
                            status = e.status,
                            detail = e.detail,
                            "refused a directory record from a peer"
                        );
                        self.core
                            .refuse_peer(now_ms, conn, CMD_DIR_RECORD, e.status, e.detail);
                    }
                }
                TcpAction::Forward { conn, body } => {
                    if let Err(e) = udp.handle_forward(now, &body, out) {
                        tracing::warn!(
                            status = e.status,
                            detail = e.detail,
                            "refused a forward from a peer"
                        );
                        self.core
                            .refuse_peer(now_ms, conn, CMD_FORWARD, e.status, e.detail);
                    }
                }
                TcpAction::DirectoryPage { tag, after, max } => {
                    let mut frames = Vec::new();
                    let (last, more) =
                        udp.directory_page(now, after.map(Fingerprint), max, &mut frames);
                    let count = count_frames(&frames);
                    self.core
                        .handle_directory_page(tag, &frames, count, last.map(|f| f.0), more);
                }
            }
        }
        while let Some(p) = udp.poll_peer_out() {
            match p {
                PeerOut::Record(b) => self.core.push_directory(&b),
                PeerOut::Forward(b) => self.core.push_forward(&b),
                PeerOut::WantDirectory => self.core.request_directory(),
            }
        }
    }

    fn read(&mut self, registry: &Registry, id: ConnId, now_ms: u64) {
        loop {
            let budget = self.core.read_budget(id).min(self.buf.len());
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if budget == 0 {
                return; // keep read_pending: retried when the core has room
            }
            match c.stream.read(&mut self.buf[..budget]) {
                Ok(0) => {
                    self.drop_conn(registry, id);
                    self.core.handle_closed(now_ms, id);
                    return;
                }
                Ok(n) => self.core.handle_data(now_ms, id, &self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.read_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_conn(registry, id);
                    self.core.handle_closed(now_ms, id);
                    return;
                }
            }
        }
    }

    fn write_all(&mut self, registry: &Registry, now_ms: u64) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            while let Some(c) = self.conns.get_mut(&id) {
                if c.connecting.is_some() {
                    break;
                }
                let out = self.core.output(id);
                if out.is_empty() {
                    if c.writable_interest {
                        c.writable_interest = false;
                        let _ = registry.reregister(&mut c.stream, token(id), Interest::READABLE);
                    }
                    break;
                }
                match c.stream.write(out) {
                    Ok(n) => self.core.consumed(now_ms, id, n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if !c.writable_interest {
                            c.writable_interest = true;
                            let _ = registry.reregister(
                                &mut c.stream,
                                token(id),
                                Interest::READABLE | Interest::WRITABLE,
                            );
                        }
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.drop_conn(registry, id);
                        self.core.handle_closed(now_ms, id);
                        break;
                    }
                }
            }
            // Closing after the last byte, and reads unblocked by the writes.
            while let Some(action) = self.core.poll_action() {
                match action {
                    TcpAction::Close(cid) => {
                        self.drop_conn(registry, cid);
                        self.core.handle_closed(now_ms, cid);
                    }
                    TcpAction::Connect { .. }
                    | TcpAction::DirectoryDigest { .. }
                    | TcpAction::PeerRecord { .. }
                    | TcpAction::Forward { .. }
                    | TcpAction::DirectoryPage { .. } => {
                        // Not something a write leads to: put it back for the next turn.
                        self.core.requeue(action);
                        break;
                    }
                }
            }
        }
    }

    /// True when a connection still has unread input, or the core has actions waiting
    /// (the loop should not sleep).
    pub fn busy(&self) -> bool {
        self.core.has_actions()
            || self.conns.iter().any(|(&id, c)| {
                c.read_pending && c.connecting.is_none() && self.core.read_budget(id) > 0
            })
    }
}

/// Number of whole `[cmd][len u16][body]` frames in `frames`.
fn count_frames(frames: &[u8]) -> usize {
    let mut n = 0;
    let mut p = 0;
    while p + 3 <= frames.len() {
        p += 3 + usize::from(u16::from_be_bytes([frames[p + 1], frames[p + 2]]));
        n += 1;
    }
    n
}
