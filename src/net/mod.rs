//! The only code that touches sockets, mio or the clock: binds the UDP sockets (dual-stack
//! `[::]` by default) and the TCP listener, and runs the UDP workers and the TCP loop around
//! the I/O-free [`Node`]; it makes no protocol decision.
//!
//! Each UDP worker (`worker`, docs/PROTOCOL.md §7, "Workers") owns one socket of the port's
//! `SO_REUSEPORT` group: it drains it under a budget with `recvmmsg` (up to 32 datagrams per
//! system call on Linux), hands each batch to the shared UDP plane under one lock, and sends
//! the replies with `sendmmsg`; a reply the kernel cannot take now waits in a bounded queue
//! until the socket is writable, or is dropped when full. The TCP loop, on the calling
//! thread, runs the TCP plane, the store's answers, the timers and the routing between the
//! planes.

mod batch;
pub mod fdlimit;
pub mod metrics;
pub mod mmsg;
pub mod tcp;
pub mod tls;
mod worker;

use crate::core::node::Node;
use crate::core::Now;
use batch::Sender;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use worker::{LoopWake, Worker};

/// The TCP loop's send-only handle of the first UDP socket (forwards from peers).
const UDP: Token = Token(0);
/// Socket buffer size asked of the kernel, in bytes.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a non-blocking UDP socket on `addr`. For the IPv6 unspecified address `[::]` the
/// socket is dual-stack (IPv4 clients arrive as IPv4-mapped addresses).
///
/// # Errors
/// The OS error of `socket`, `bind` or a socket option.
pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    bind_udp_with(addr, false)
}

/// Binds `n` non-blocking UDP sockets on `addr` as one `SO_REUSEPORT` group (`n` = 1: one
/// plain socket, as [`bind_udp`]), one per UDP worker: the kernel hands each datagram to
/// one of them by a hash of its source and destination, so one client's datagrams always
/// reach the same worker (docs/PROTOCOL.md §7, "Workers"). With port 0 the first socket's
/// port is the group's. Linux lets only sockets of the same user join a group.
///
/// # Errors
/// The OS error of `socket`, `bind` or a socket option, for the first socket that fails.
pub fn bind_udp_group(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let first = bind_udp_with(addr, n > 1)?;
    let local = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..n {
        group.push(bind_udp_with(local, true)?);
    }
    Ok(group)
}

/// [`bind_udp`], with `SO_REUSEPORT` set before the bind when `reuse_port`.
fn bind_udp_with(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    // Larger buffers absorb bursts; the kernel caps them at net.core.rmem_max.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    sock.set_nonblocking(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// The core's clock reading: monotonic milliseconds since `origin` and Unix seconds.
pub fn now(origin: Instant) -> Now {
    let unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Now {
        mono_ms: u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX),
        unix_s,
    }
}

/// Starts the store thread, given the function that wakes the loop.
pub type StartStore = Box<dyn FnOnce(Box<dyn Fn() + Send>) -> crate::store::thread::StoreThread>;

/// What [`run`] serves: the UDP sockets and the TCP listener (bound to one port), the node,
/// and a function that starts the store thread given a wake-up.
pub struct Serve {
    /// The UDP sockets, one per worker ([`bind_udp_group`]); at least one.
    pub udp: Vec<std::net::UdpSocket>,
    /// The TCP listener (same port as UDP).
    pub tcp: std::net::TcpListener,
    /// The whole server, I/O-free.
    pub node: Node,
    /// Starts the store thread; its argument wakes the loop.
    pub store: StartStore,
    /// TLS with the node identity (docs/PROTOCOL.md §8.19): accepted connections that
    /// start with a TLS record, and links the node dials with TLS. `None`: clear text only.
    pub tls: Option<tls::TlsConfigs>,
    /// The longest a drain may take once `stop` is set, ms (`--drain-timeout`).
    pub drain_ms: u64,
    /// Where the loop publishes the node's counters for `serve --metrics`
    /// ([`metrics::Publisher`]); `None`: metrics are off.
    pub metrics: Option<metrics::Publisher>,
}

/// What reaches the loop from outside it (the signal handlers of `rendezvous serve`,
/// docs/PROTOCOL.md §7, "Signals" and "Reload").
pub struct Control {
    /// Set by SIGTERM or SIGINT: drain and return.
    pub stop: Arc<AtomicBool>,
    /// Set by SIGHUP: between two turns the loop clears it and calls `on_reload` once.
    pub reload: Arc<AtomicBool>,
    /// Re-reads the configuration and gives the node what changed
    /// ([`Node::reconfigure`]); the loop decides nothing about it.
    pub on_reload: Box<OnReload>,
}

/// What [`Control::on_reload`] is: given the node and the time, it reconfigures the node.
pub type OnReload = dyn FnMut(&mut Node, Now);

/// Starts one UDP worker per socket, then runs the TCP loop on this thread until
/// `control.stop` is set (checked at least every 500 ms, and at once after a signal: it
/// interrupts the wait). Each TCP turn: wait for readiness, a wake from a worker (news
/// for the peer links) or the node's next deadline; then the TCP turn (store answers,
/// reads, timers, routing, store requests, connects and closes, writes); then flush the
/// datagrams that forwards deliver. The workers serve datagrams all along, also during the
/// drain; they stop once it is over, after their last replies.
///
/// # Errors
/// Only setup errors (poll creation, registration, a thread that cannot start);
/// per-datagram and per-connection errors are logged and the loops go on.
pub fn run(serve: Serve, origin: Instant, mut control: Control) -> io::Result<()> {
    let drain_ms = serve.drain_ms;
    let (mut l, sockets) = EventLoop::start(serve)?;
    let stop_workers = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        let (udp, wake) = (l.node.shared_udp(), l.wake.clone());
        match Worker::spawn(i, socket, udp, origin, Arc::clone(&stop_workers), wake) {
            Ok(w) => workers.push(w),
            Err(e) => {
                stop_all(&stop_workers, workers);
                return Err(e);
            }
        }
    }
    let served = serve_until_stopped(&mut l, origin, &mut control, drain_ms);
    stop_all(&stop_workers, workers);
    served
}

/// Tells every worker to stop and waits for them.
fn stop_all(stop: &AtomicBool, workers: Vec<Worker>) {
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.stop();
    }
}

/// The TCP loop until `control.stop`, then the drain.
fn serve_until_stopped(
    l: &mut EventLoop,
    origin: Instant,
    control: &mut Control,
    drain_ms: u64,
) -> io::Result<()> {
    while !control.stop.load(Ordering::Relaxed) {
        // A load first: the swap (a locked write) only when a reload was asked for.
        if control.reload.load(Ordering::Relaxed) && control.reload.swap(false, Ordering::Relaxed) {
            (control.on_reload)(&mut l.node, now(origin));
        }
        l.wait_and_turn(origin)?;
    }
    l.drain(origin, drain_ms)
}

/// The state of [`run`]'s TCP loop: the poll with its events, a send-only handle of the
/// first UDP socket with its queue of datagrams, the TCP side and the node.
struct EventLoop {
    poll: Poll,
    events: Events,
    /// A duplicate of the first worker's socket, for the datagrams forwards deliver.
    socket: UdpSocket,
    tx: Sender,
    /// The socket is registered for writability (datagrams wait in `tx`).
    want_write: bool,
    /// How the workers wake this loop when the UDP plane has news for the peers.
    wake: LoopWake,
    tcp: tcp::TcpIo,
    node: Node,
    metrics: Option<metrics::Publisher>,
}

impl EventLoop {
    /// Starts the store thread with a waker of this poll, takes over the TCP listener and
    /// keeps a send-only duplicate of the first UDP socket; returns the sockets for the
    /// workers.
    fn start(serve: Serve) -> io::Result<(EventLoop, Vec<std::net::UdpSocket>)> {
        let Serve {
            udp: sockets,
            tcp: listener,
            node,
            store,
            tls,
            metrics,
            ..
        } = serve;
        let first = sockets
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no UDP socket to serve"))?;
        let socket = UdpSocket::from_std(first.try_clone()?);
        let v6_socket = socket.local_addr()?.is_ipv6();
        let poll = Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), tcp::WAKER)?);
        let wake = LoopWake {
            waker: Arc::clone(&waker),
            due: Arc::new(AtomicBool::new(false)),
        };
        let store = store(Box::new(move || {
            let _ = waker.wake();
        }));
        let tcp = tcp::TcpIo::new(listener, store, poll.registry(), tls)?;
        let mut node = node;
        node.set_max_tcp_conns(tcp.max_conns());
        let l = EventLoop {
            poll,
            events: Events::with_capacity(64),
            socket,
            tx: Sender::new(v6_socket),
            want_write: false,
            wake,
            tcp,
            node,
            metrics,
        };
        Ok((l, sockets))
    }

    /// Waits for readiness (at most [`Self::wait_for`]) and runs one turn.
    fn wait_and_turn(&mut self, origin: Instant) -> io::Result<()> {
        let timeout = self.wait_for(origin);
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        self.turn(now(origin))
    }

    /// Polls without waiting and runs one turn; true when no TCP socket had anything.
    /// Datagrams arriving all the time (a busy server) do not count: the workers answer
    /// those, and none is work in flight.
    fn poll_now_and_turn(&mut self, origin: Instant) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let quiet = !self
            .events
            .iter()
            .any(|ev| ev.token() != UDP && ev.token() != tcp::WAKER);
        self.turn(now(origin))?;
        Ok(quiet)
    }
    /// The drain (docs/PROTOCOL.md §7, "Signals"): peers are told, new connections are
    /// still accepted but their hellos refused (503 `draining`, by the node), and turns go
    /// on until nothing is in flight and every reply is sent, or `drain_ms` passed.
    fn drain(&mut self, origin: Instant, drain_ms: u64) -> io::Result<()> {
        let start = now(origin);
        tracing::info!(
            bound_ms = drain_ms,
            "draining: new connections refused, finishing what is in flight"
        );
        self.node.begin_drain(start);
        loop {
            // A look at the sockets without waiting, and a turn: bytes already sent to us
            // are read (and answered), the draining heartbeats go out.
            let quiet = self.poll_now_and_turn(origin)?;
            let t = now(origin).mono_ms;
            let idle = quiet && !self.want_write && !self.tcp.busy(&self.node);
            if idle && self.node.drained() {
                tracing::info!(
                    ms = t - start.mono_ms,
                    "drained: every write durable, every answer sent"
                );
                return Ok(());
            }
            if t >= start.mono_ms + drain_ms {
                tracing::warn!(
                    ms = t - start.mono_ms,
                    "drain bound reached; stopping with work in flight"
                );
                return Ok(());
            }
            self.wait_and_turn(origin)?;
        }
    }

    /// How long to wait for readiness: not at all while there is TCP work pending, else
    /// until the node's next deadline, at most 500 ms (a deadline a worker's datagram made
    /// earlier than that is late by at most that much; none of the UDP plane's is shorter
    /// than seconds).
    fn wait_for(&self, origin: Instant) -> Duration {
        if self.tcp.busy(&self.node) {
            return Duration::ZERO;
        }
        let now_ms = now(origin).mono_ms;
        let until = self
            .node
            .poll_timeout()
            .map_or(500, |d| d.saturating_sub(now_ms).min(500));
        Duration::from_millis(until)
    }

    /// One turn after a wait: the TCP events handled, the TCP turn (which routes what the
    /// workers' datagrams left for the peers), then the datagrams flushed.
    fn turn(&mut self, now_: Now) -> io::Result<()> {
        self.wake.due.store(false, Ordering::Release);
        for ev in self.events.iter() {
            if ev.token() != UDP {
                self.tcp
                    .on_event(self.poll.registry(), ev, &mut self.node, now_);
            }
        }
        let (socket, tx) = (&self.socket, &mut self.tx);
        self.tcp.turn(
            self.poll.registry(),
            now_,
            &mut self.node,
            &mut |dst, bytes| tx.queue(socket, dst, bytes),
        );
        if let Some(p) = &mut self.metrics {
            p.tick(now_.mono_ms, &self.node);
        }
        self.flush_udp()
    }

    /// Flushes what the node produced; keeps the rest for when the socket is writable, and
    /// asks for writability only while something waits (the workers read the socket; this
    /// loop never does).
    fn flush_udp(&mut self) -> io::Result<()> {
        let pending = self.tx.flush(&self.socket);
        if pending != self.want_write {
            let registry = self.poll.registry();
            match pending {
                true => registry.register(&mut self.socket, UDP, Interest::WRITABLE)?,
                false => registry.deregister(&mut self.socket)?,
            }
            self.want_write = pending;
        }
        Ok(())
    }
}
