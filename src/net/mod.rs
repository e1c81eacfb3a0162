//! The only code that touches sockets, mio or the clock: binds the UDP socket (dual-stack
//! `[::]` by default) and the TCP listener, and runs the event loop around the I/O-free
//! [`Node`]; it makes no protocol decision.
//!
//! Each wake drains the socket under a budget with `recvmmsg` (up to 32 datagrams per system
//! call on Linux) and sends the core's replies with `sendmmsg`; a reply the kernel cannot
//! take now waits in a bounded queue until the socket is writable, or is dropped when full.

mod batch;
pub mod fdlimit;
pub mod metrics;
pub mod mmsg;
pub mod tcp;
pub mod tls;

use crate::core::node::Node;
use crate::core::Now;
use batch::Batch;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const UDP: Token = Token(0);
/// Datagrams read per wake before the loop checks timers again.
const READ_BUDGET: usize = 1024;
/// Socket buffer size asked of the kernel, in bytes.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a non-blocking UDP socket on `addr`. For the IPv6 unspecified address `[::]` the
/// socket is dual-stack (IPv4 clients arrive as IPv4-mapped addresses).
///
/// # Errors
/// The OS error of `socket`, `bind` or a socket option.
pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
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

/// What [`run`] serves: the UDP socket and the TCP listener (bound to one port), the node,
/// and a function that starts the store thread given a wake-up.
pub struct Serve {
    /// The UDP socket.
    pub udp: std::net::UdpSocket,
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

/// Runs the event loop until `control.stop` is set (checked at least every 500 ms, and at
/// once after a signal: it interrupts the wait). Each turn:
/// wait for readiness or the node's next deadline; drain the UDP socket under a budget
/// (each datagram to the node, its replies batched); then the TCP turn (store answers,
/// reads, timers, routing, store requests, connects and closes, writes); then flush the
/// datagrams. The node's timers run after the turn's reads.
///
/// # Errors
/// Only setup errors (poll creation, registration); per-datagram and per-connection errors
/// are logged and the loop goes on.
pub fn run(serve: Serve, origin: Instant, mut control: Control) -> io::Result<()> {
    let drain_ms = serve.drain_ms;
    let mut l = EventLoop::start(serve)?;
    while !control.stop.load(Ordering::Relaxed) {
        // A load first: the swap (a locked write) only when a reload was asked for.
        if control.reload.load(Ordering::Relaxed) && control.reload.swap(false, Ordering::Relaxed) {
            (control.on_reload)(&mut l.node, now(origin));
        }
        l.wait_and_turn(origin)?;
    }
    l.drain(origin, drain_ms)
}

/// The state of [`run`]'s loop: the poll with its events, the UDP socket with its batch of
/// datagrams in and out, the TCP side and the node.
struct EventLoop {
    poll: Poll,
    events: Events,
    socket: UdpSocket,
    /// `recvmmsg` / `sendmmsg` buffers and the queue of replies waiting for room.
    batch: Batch,
    /// The socket is registered for writability (replies wait in `batch`).
    want_write: bool,
    /// The last drain stopped at its budget (or the socket became readable): read again.
    more_to_read: bool,
    tcp: tcp::TcpIo,
    node: Node,
    metrics: Option<metrics::Publisher>,
}

impl EventLoop {
    /// Registers the UDP socket, starts the store thread with a waker of this poll, and
    /// takes over the TCP listener.
    fn start(serve: Serve) -> io::Result<EventLoop> {
        let Serve {
            udp,
            tcp: listener,
            node,
            store,
            tls,
            metrics,
            ..
        } = serve;
        let mut socket = UdpSocket::from_std(udp);
        let v6_socket = socket.local_addr()?.is_ipv6();
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut socket, UDP, Interest::READABLE)?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), tcp::WAKER)?);
        let store = store(Box::new(move || {
            let _ = waker.wake();
        }));
        let tcp = tcp::TcpIo::new(listener, store, poll.registry(), tls)?;
        let mut node = node;
        node.set_max_tcp_conns(tcp.max_conns());
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(64),
            socket,
            batch: Batch::new(v6_socket),
            want_write: false,
            more_to_read: true,
            tcp,
            node,
            metrics,
        })
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

    /// Polls without waiting and runs one turn; true when no TCP socket had anything and
    /// the UDP socket's backlog was read. Datagrams arriving all the time (a busy server)
    /// do not count: each turn answers those it read, and none is work in flight.
    fn poll_now_and_turn(&mut self, origin: Instant) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let tcp_events = self.events.iter().any(|ev| ev.token() != UDP);
        let quiet = !tcp_events && !self.more_to_read;
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

    /// How long to wait for readiness: not at all while there is work (datagrams left to
    /// read, TCP work pending), else until the node's next deadline, at most 500 ms.
    fn wait_for(&self, origin: Instant) -> Duration {
        if self.more_to_read || self.tcp.busy(&self.node) {
            return Duration::ZERO;
        }
        let now_ms = now(origin).mono_ms;
        let until = self
            .node
            .poll_timeout()
            .map_or(500, |d| d.saturating_sub(now_ms).min(500));
        Duration::from_millis(until)
    }

    /// One turn after a wait: the events (UDP readiness noted, TCP events handled), the UDP
    /// socket drained under a budget, the TCP turn, then the datagrams flushed.
    fn turn(&mut self, now_: Now) -> io::Result<()> {
        for ev in self.events.iter() {
            if ev.token() == UDP {
                self.more_to_read |= ev.is_readable();
            } else {
                self.tcp
                    .on_event(self.poll.registry(), ev, &mut self.node, now_);
            }
        }
        if self.more_to_read {
            self.more_to_read = self
                .batch
                .drain(&self.socket, &mut self.node, now_, READ_BUDGET);
        }
        self.tcp.turn(
            self.poll.registry(),
            now_,
            &mut self.node,
            &mut |dst, bytes| self.batch.queue(&self.socket, dst, bytes),
        );
        if let Some(p) = &mut self.metrics {
            p.tick(now_.mono_ms, &self.node);
        }
        self.flush_udp()
    }

    /// Flushes what the node produced; keeps the rest for when the socket is writable, and
    /// asks for writability only while something waits.
    fn flush_udp(&mut self) -> io::Result<()> {
        let pending = self.batch.flush(&self.socket);
        if pending != self.want_write {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            self.poll
                .registry()
                .reregister(&mut self.socket, UDP, interest)?;
            self.want_write = pending;
        }
        Ok(())
    }
}
