//! The TCP plane's I/O: the listener on the UDP plane's port, each connection's reads and
//! writes, outbound connections to peers (with a connect timeout), and the store thread's
//! requests and wake-ups, all in the one mio loop. It makes no protocol decision: bytes,
//! connects, closes and store work go to and come from the [`Node`].

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
/// A connect to a peer not established within this long is abandoned and retried, ms.
const CONNECT_TIMEOUT_MS: u64 = 5_000;

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
    store: StoreThread,
    conns: HashMap<ConnId, ConnIo>,
    next_id: ConnId,
    buf: Vec<u8>,
    /// Most TCP connections at once ([`super::fdlimit::max_tcp_conns`]); more are closed at
    /// accept.
    max_conns: usize,
}

fn token(id: ConnId) -> Token {
    Token(FIRST_CONN + id as usize)
}

impl TcpIo {
    /// Registers `listener` and takes the store thread; raises the open-files limit and
    /// sizes the connection cap to it.
    ///
    /// # Errors
    /// Registration errors.
    pub fn new(
        listener: std::net::TcpListener,
        store: StoreThread,
        registry: &Registry,
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
        })
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
                    if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                        let ok = c.stream.take_error().ok().flatten().is_none()
                            && c.stream.peer_addr().is_ok();
                        if ok {
                            c.connecting = None;
                            node.handle_connected(now, peer, id);
                        } else {
                            self.drop_conn(registry, id);
                            node.handle_connect_failed(now, peer);
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

    fn accept(&mut self, registry: &Registry, node: &mut Node, now: Now) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, addr)) => {
                    if self.conns.len() >= self.max_conns {
                        // Per connection, so at debug (with the address, which the default
                        // level never logs).
                        tracing::debug!(%addr, "too many TCP connections; refusing");
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
                            started_ms: now.mono_ms,
                            read_pending: true,
                            writable_interest: false,
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
            .filter(|(_, c)| c.read_pending && c.connecting.is_none())
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
    /// not established within [`CONNECT_TIMEOUT_MS`] fails.
    fn connect_timeouts(&mut self, registry: &Registry, node: &mut Node, now: Now) {
        let late: Vec<(ConnId, usize)> = self
            .conns
            .iter()
            .filter_map(|(&id, c)| c.connecting.map(|p| (id, p, c.started_ms)))
            .filter(|&(_, _, t)| now.mono_ms.saturating_sub(t) > CONNECT_TIMEOUT_MS)
            .map(|(id, p, _)| (id, p))
            .collect();
        for (id, peer) in late {
            self.drop_conn(registry, id);
            node.handle_connect_failed(now, peer);
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
                NodeAction::Connect { peer, addr } => self.connect(registry, node, now, peer, addr),
                NodeAction::Close(id) => {
                    self.drop_conn(registry, id);
                    node.handle_closed(now, id);
                }
            }
        }
    }

    fn connect(
        &mut self,
        registry: &Registry,
        node: &mut Node,
        now: Now,
        peer: usize,
        addr: SocketAddr,
    ) {
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
            if budget == 0 {
                return; // keep read_pending: retried when the node has room
            }
            match c.stream.read(&mut self.buf[..budget]) {
                Ok(0) => {
                    self.drop_conn(registry, id);
                    node.handle_closed(now, id);
                    return;
                }
                Ok(n) => node.handle_data(now, id, &self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.read_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_conn(registry, id);
                    node.handle_closed(now, id);
                    return;
                }
            }
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
                self.drop_conn(registry, cid);
                node.handle_closed(now, cid);
            }
        }
    }

    fn write(&mut self, registry: &Registry, node: &mut Node, id: ConnId, now: Now) {
        while let Some(c) = self.conns.get_mut(&id) {
            if c.connecting.is_some() {
                return;
            }
            let out = node.output(id);
            if out.is_empty() {
                if c.writable_interest {
                    c.writable_interest = false;
                    let _ = registry.reregister(&mut c.stream, token(id), Interest::READABLE);
                }
                return;
            }
            match c.stream.write(out) {
                Ok(n) => node.consumed(now, id, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !c.writable_interest {
                        c.writable_interest = true;
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        let _ = registry.reregister(&mut c.stream, token(id), interest);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_conn(registry, id);
                    node.handle_closed(now, id);
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
                c.read_pending && c.connecting.is_none() && node.read_budget(id) > 0
            })
    }
}
