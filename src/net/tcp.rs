//! The TCP plane's I/O: the listener on the UDP plane's port, each connection's reads and
//! writes, outbound connections to peers (with a connect timeout), and the store thread's
//! requests and wake-ups, all in the one mio loop. It makes no protocol decision: bytes,
//! connects, closes and store work go to and come from the [`Node`].
//!
//! TLS (docs/PROTOCOL.md §8.19): an accepted connection whose first byte is a TLS
//! handshake record (0x16) runs TLS 1.3 ([`super::tls`]), any other first byte the seed's
//! clear-text framing; links run TLS when the node's connect says so. The node gets
//! plaintext either way, and the peer's proved key once a handshake is done.

use super::tls::{TlsConfigs, TlsConn, TlsRead, TLS_HANDSHAKE_BYTE};
use crate::core::node::{Node, NodeAction};
use crate::core::tcp::ConnId;
use crate::core::{Now, Out};
use crate::store::thread::StoreThread;
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
/// A connect to a peer not established within this long (its TLS handshake included) is
/// abandoned and retried, ms.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Connections accepted past the core's cap while it closes others to make room
/// (docs/PROTOCOL.md §8.11); past it plus this, new ones are closed at accept.
const ACCEPT_SPARE: usize = 64;
/// A closed TLS connection may take this long to send its last records (the refusal's
/// status frame, close_notify) before its socket is closed, ms.
const LINGER_MS: u64 = 2_000;

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
    /// Clear text, TLS, or not known yet (an accepted connection's first byte).
    wire: Wire,
    /// Closed by the node; its last TLS records are sent until this time (ms).
    closing: Option<u64>,
}

/// How a connection's bytes travel (docs/PROTOCOL.md §8.19).
enum Wire {
    /// Accepted, first byte not read yet: TLS if it is 0x16.
    Sniff,
    /// The seed's clear-text framing.
    Raw,
    /// TLS 1.3; `link` is the peer link whose handshake is not done yet (the node hears of
    /// the connection only then).
    Tls {
        tls: Box<TlsConn>,
        link: Option<usize>,
    },
}

/// One step of reading a connection.
enum ReadStep {
    /// Plaintext for the node in the buffer.
    Data(usize),
    /// A TLS handshake is done.
    Secured,
    /// The node takes no more now: read again when it has room.
    Full,
    /// Nothing more from the socket now.
    WouldBlock,
    /// The peer closed, or an error.
    Lost,
}

/// The TCP side of the loop.
pub struct TcpIo {
    listener: TcpListener,
    store: StoreThread,
    conns: HashMap<ConnId, ConnIo>,
    next_id: ConnId,
    buf: Vec<u8>,
    /// The core's cap on accepted connections ([`super::fdlimit::max_tcp_conns`]); the core
    /// makes room past it, and this loop closes at accept only past it plus
    /// [`ACCEPT_SPARE`].
    max_conns: usize,
    /// TLS with the node identity; `None`: clear text only.
    tls: Option<TlsConfigs>,
}

fn token(id: ConnId) -> Token {
    Token(FIRST_CONN + id as usize)
}

impl TcpIo {
    /// Registers `listener` and takes the store thread; raises the open-files limit and
    /// sizes the connection cap to it. With `tls`, accepted connections may speak TLS and
    /// links may be dialled with it (docs/PROTOCOL.md §8.19).
    ///
    /// # Errors
    /// Registration errors.
    pub fn new(
        listener: std::net::TcpListener,
        store: StoreThread,
        registry: &Registry,
        tls: Option<TlsConfigs>,
    ) -> io::Result<TcpIo> {
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        let nofile = super::fdlimit::raise_fd_limit();
        let max_conns = super::fdlimit::max_tcp_conns(nofile);
        tracing::info!(nofile, max_conns, "open-files limit and TCP connection cap");
        Ok(TcpIo {
            listener,
            store,
            conns: HashMap::new(),
            next_id: 1,
            buf: vec![0; 64 * 1024],
            max_conns,
            tls,
        })
    }

    /// The cap on accepted connections, from the open-files limit: the node's
    /// [`Node::set_max_tcp_conns`].
    pub fn max_conns(&self) -> usize {
        self.max_conns
    }

    /// Handles one readiness event for a TCP token.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        ev: &mio::event::Event,
        node: &mut Node,
        now: Now,
    ) {
        match ev.token() {
            LISTENER => self.accept(registry, node, now),
            WAKER => {}
            Token(t) if t >= FIRST_CONN => {
                let id = (t - FIRST_CONN) as ConnId;
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                if let Some(peer) = c.connecting {
                    if !(ev.is_writable() || ev.is_error() || ev.is_write_closed()) {
                        return;
                    }
                    let ok = c.stream.take_error().ok().flatten().is_none()
                        && c.stream.peer_addr().is_ok();
                    if !ok {
                        self.lose(registry, node, id, now);
                        return;
                    }
                    c.connecting = None;
                    c.read_pending = true;
                    if matches!(c.wire, Wire::Raw) {
                        node.handle_connected(now, peer, id);
                    } // a TLS link is reported once its handshake is done
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    c.read_pending = true;
                }
            }
            _ => {}
        }
    }

    fn accept(&mut self, registry: &Registry, node: &mut Node, now: Now) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, addr)) => {
                    if self.conns.len() >= self.max_conns + ACCEPT_SPARE {
                        // Per connection, so at debug (counted in the summary of refusals
                        // only when the core answers; these are closed unanswered).
                        let from = crate::core::logs::ClientAddr(addr);
                        tracing::debug!(%from, "too many TCP connections; refusing");
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
                    let wire = if self.tls.is_some() {
                        Wire::Sniff
                    } else {
                        Wire::Raw
                    };
                    self.conns.insert(
                        id,
                        ConnIo {
                            stream,
                            connecting: None,
                            started_ms: now.mono_ms,
                            read_pending: true,
                            writable_interest: false,
                            wire,
                            closing: None,
                        },
                    );
                    node.handle_accept(now, id, crate::wire::udp::canonical_addr(addr));
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

    /// The connection failed or its peer closed it: dropped, and the node told (a link
    /// still connecting or in its TLS handshake as a failed connect).
    fn lose(&mut self, registry: &Registry, node: &mut Node, id: ConnId, now: Now) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let pending_link = match &c.wire {
            Wire::Tls { link, .. } => c.connecting.or(*link),
            _ => c.connecting,
        };
        let closing = c.closing.is_some();
        self.drop_conn(registry, id);
        match pending_link {
            Some(peer) => node.handle_connect_failed(now, peer),
            None if !closing => node.handle_closed(now, id),
            None => {} // the node closed it already
        }
    }

    /// The node closed `id`: the node is told, and the socket closed, after its last TLS
    /// records (at most [`LINGER_MS`]).
    fn close(&mut self, registry: &Registry, node: &mut Node, id: ConnId, now: Now) {
        node.handle_closed(now, id);
        if let Some(c) = self.conns.get_mut(&id) {
            if let Wire::Tls { tls, .. } = &mut c.wire {
                if tls.close() {
                    c.closing = Some(now.mono_ms + LINGER_MS);
                    return;
                }
            }
        }
        self.drop_conn(registry, id);
    }

    /// One loop turn of TCP work after the events: store answers, reads, connect
    /// timeouts and the node's timers, then rounds of routing (through `out` for the
    /// datagrams forwards deliver), store requests, connects and closes, and writes, until
    /// nothing new comes of them (a write can free room for a directory page; at most 8).
    pub fn turn(&mut self, registry: &Registry, now: Now, node: &mut Node, out: &mut Out<'_>) {
        while let Some(ev) = self.store.try_recv() {
            node.handle_store(now, ev);
        }
        // Reads, within each connection's budget (backpressure).
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.read_pending && c.connecting.is_none() && c.closing.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.read(registry, node, id, now);
        }
        self.connect_timeouts(registry, node, now);
        node.handle_timeout(now);
        for _ in 0..8 {
            node.end_turn(now, out);
            self.send_store_requests(node);
            self.actions(registry, node, now);
            self.write_all(registry, node, now);
            if !node.busy() {
                break;
            }
        }
        // Writing may have freed room for streamed answers: their page requests go out now.
        self.send_store_requests(node);
    }

    /// A connect to a host that drops our SYNs would hang for the kernel's ~2 minutes: one
    /// not established (its TLS handshake done) within [`CONNECT_TIMEOUT_MS`] fails. A
    /// closed TLS connection whose last records are not out after [`LINGER_MS`] is dropped.
    fn connect_timeouts(&mut self, registry: &Registry, node: &mut Node, now: Now) {
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let handshaking = matches!(c.wire, Wire::Tls { link: Some(_), .. });
                let connecting = c.connecting.is_some() || handshaking;
                (connecting && now.mono_ms.saturating_sub(c.started_ms) > CONNECT_TIMEOUT_MS)
                    || c.closing.is_some_and(|t| now.mono_ms >= t)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            self.lose(registry, node, id, now);
        }
    }

    fn send_store_requests(&mut self, node: &mut Node) {
        while let Some(req) = node.poll_store() {
            self.store.send(req);
        }
    }

    /// Carries out the node's connects and closes.
    fn actions(&mut self, registry: &Registry, node: &mut Node, now: Now) {
        while let Some(action) = node.poll_action() {
            match action {
                NodeAction::Connect { peer, addr, tls } => {
                    self.connect(registry, node, now, (peer, addr), tls)
                }
                NodeAction::Close(id) => self.close(registry, node, id, now),
            }
        }
    }

    /// Connects to link `peer` at `addr`, with TLS when `tls` (and a TLS configuration).
    fn connect(
        &mut self,
        registry: &Registry,
        node: &mut Node,
        now: Now,
        (peer, addr): (usize, SocketAddr),
        tls: bool,
    ) {
        let wire = match (&self.tls, tls) {
            (Some(cfg), true) => match TlsConn::client(&cfg.client, addr) {
                Ok(t) => Wire::Tls {
                    tls: Box::new(t),
                    link: Some(peer),
                },
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot start TLS to a peer");
                    node.handle_connect_failed(now, peer);
                    return;
                }
            },
            (None, true) => {
                tracing::warn!(%addr, "a TLS link asked of a loop without TLS");
                node.handle_connect_failed(now, peer);
                return;
            }
            (_, false) => Wire::Raw,
        };
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                let id = self.next_id;
                self.next_id += 1;
                let _ = stream.set_nodelay(true);
                let interest = Interest::READABLE | Interest::WRITABLE;
                if registry.register(&mut stream, token(id), interest).is_err() {
                    node.handle_connect_failed(now, peer);
                    return;
                }
                self.conns.insert(
                    id,
                    ConnIo {
                        stream,
                        connecting: Some(peer),
                        started_ms: now.mono_ms,
                        read_pending: false,
                        writable_interest: true,
                        wire,
                        closing: None,
                    },
                );
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connecting to a peer failed");
                node.handle_connect_failed(now, peer);
            }
        }
    }

    fn read(&mut self, registry: &Registry, node: &mut Node, id: ConnId, now: Now) {
        loop {
            let budget = node.read_budget(id).min(self.buf.len());
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if matches!(c.wire, Wire::Sniff) {
                match sniff(&c.stream, self.tls.as_ref()) {
                    Ok(Some(wire)) => c.wire = wire,
                    Ok(None) => c.read_pending = false,
                    Err(_) => self.lose(registry, node, id, now),
                }
                if matches!(
                    self.conns.get(&id).map(|c| &c.wire),
                    Some(Wire::Sniff) | None
                ) {
                    return;
                }
                continue;
            }
            let step = match &mut c.wire {
                Wire::Sniff => ReadStep::WouldBlock,
                Wire::Raw => read_raw(&mut c.stream, &mut self.buf[..budget]),
                Wire::Tls { tls, .. } => match tls.read(&mut c.stream, &mut self.buf, budget) {
                    Ok(TlsRead::Plain(n)) => ReadStep::Data(n),
                    Ok(TlsRead::Secured) => ReadStep::Secured,
                    Ok(TlsRead::Full) => ReadStep::Full,
                    Ok(TlsRead::WouldBlock) => ReadStep::WouldBlock,
                    Ok(TlsRead::Closed) => ReadStep::Lost,
                    Err(e) => {
                        tracing::debug!(conn = id, error = %e, "TLS failed");
                        ReadStep::Lost
                    }
                },
            };
            match step {
                ReadStep::Data(n) => node.handle_data(now, id, &self.buf[..n]),
                ReadStep::Secured => self.secured(registry, node, id, now),
                ReadStep::Full => return, // keep read_pending: retried when the node has room
                ReadStep::WouldBlock => {
                    c.read_pending = false;
                    return;
                }
                ReadStep::Lost => {
                    self.lose(registry, node, id, now);
                    return;
                }
            }
        }
    }

    /// `id`'s TLS handshake is done: the node hears of the peer's proved key (a link we
    /// opened: only now of the connection itself).
    fn secured(&mut self, registry: &Registry, node: &mut Node, id: ConnId, now: Now) {
        let Some(Wire::Tls { tls, link }) = self.conns.get_mut(&id).map(|c| &mut c.wire) else {
            return;
        };
        let key = tls.peer_key(now.unix_s);
        match (link.take(), key) {
            (Some(peer), Some(key)) => node.handle_connected_tls(now, peer, id, &key),
            (Some(peer), None) => {
                // Our verifier asks every server for its certificate: never without one.
                self.drop_conn(registry, id);
                node.handle_connect_failed(now, peer);
            }
            (None, key) => node.handle_secured(now, id, key),
        }
    }

    /// Writes every connection's pending output until the kernel takes no more (then waits
    /// for writability), and carries out the closes that writing leads to.
    fn write_all(&mut self, registry: &Registry, node: &mut Node, now: Now) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.write(registry, node, id, now);
            // Closing after the last byte, and reads unblocked by the writes.
            while let Some(NodeAction::Close(cid)) = node.poll_close() {
                self.close(registry, node, cid, now);
            }
        }
    }

    fn write(&mut self, registry: &Registry, node: &mut Node, id: ConnId, now: Now) {
        while let Some(c) = self.conns.get_mut(&id) {
            if c.connecting.is_some() {
                return;
            }
            let out = if c.closing.is_some() {
                &[][..]
            } else {
                node.output(id)
            };
            let res = match &mut c.wire {
                Wire::Tls { tls, .. } => tls.write(&mut c.stream, out),
                _ => write_raw(&mut c.stream, out),
            };
            match res {
                Ok((n, false)) if n > 0 => node.consumed(now, id, n),
                Ok((n, blocked)) => {
                    if n > 0 {
                        node.consumed(now, id, n);
                    }
                    if blocked != c.writable_interest {
                        c.writable_interest = blocked;
                        let interest = if blocked {
                            Interest::READABLE | Interest::WRITABLE
                        } else {
                            Interest::READABLE
                        };
                        let _ = registry.reregister(&mut c.stream, token(id), interest);
                    }
                    if !blocked && c.closing.is_some() {
                        self.drop_conn(registry, id); // its last records are out
                    }
                    return;
                }
                Err(_) => {
                    self.lose(registry, node, id, now);
                    return;
                }
            }
        }
    }

    /// True when a connection still has unread input the node can take, or the node has
    /// work waiting (the loop should not sleep).
    pub fn busy(&self, node: &Node) -> bool {
        node.busy()
            || self.conns.iter().any(|(&id, c)| {
                c.read_pending
                    && c.connecting.is_none()
                    && c.closing.is_none()
                    && node.read_budget(id) > 0
            })
    }
}

/// An accepted connection's first byte, peeked: TLS if it is a handshake record (0x16),
/// else the clear-text framing (docs/PROTOCOL.md §8.19); `None` while nothing came.
///
/// # Errors
/// The socket's error, or [`io::ErrorKind::UnexpectedEof`] when it closed first.
fn sniff(stream: &TcpStream, tls: Option<&TlsConfigs>) -> io::Result<Option<Wire>> {
    let mut first = [0u8; 1];
    loop {
        return match stream.peek(&mut first) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => match tls {
                Some(cfg) if first[0] == TLS_HANDSHAKE_BYTE => Ok(Some(Wire::Tls {
                    tls: Box::new(TlsConn::server(&cfg.server)?),
                    link: None,
                })),
                _ => Ok(Some(Wire::Raw)),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Reads clear text into `buf` (the node's budget long).
fn read_raw(stream: &mut TcpStream, buf: &mut [u8]) -> ReadStep {
    if buf.is_empty() {
        return ReadStep::Full;
    }
    loop {
        return match stream.read(buf) {
            Ok(0) => ReadStep::Lost,
            Ok(n) => ReadStep::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadStep::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => ReadStep::Lost,
        };
    }
}

/// Writes clear text: the bytes taken, and true when the socket would block.
///
/// # Errors
/// The socket's error.
fn write_raw(stream: &mut TcpStream, out: &[u8]) -> io::Result<(usize, bool)> {
    if out.is_empty() {
        return Ok((0, false));
    }
    loop {
        return match stream.write(out) {
            Ok(n) => Ok((n, false)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((0, true)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}
