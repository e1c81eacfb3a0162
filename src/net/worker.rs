//! A UDP worker (docs/PROTOCOL.md §7, "Workers"): one thread with one socket of the port's
//! `SO_REUSEPORT` group, its own poll and batches. It reads datagrams, hands each batch to
//! the shared UDP plane under one lock, sends the replies once the lock is released, and
//! wakes the TCP loop when the plane has news for the peer links. It decides nothing.

use super::batch::Batch;
use super::now;
use crate::core::node::SharedUdp;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SOCKET: Token = Token(0);
const STOP: Token = Token(1);
/// Datagrams read before the worker looks at its poll again (another socket's turn is the
/// kernel's business; this only bounds how long a stop waits).
const READ_BUDGET: usize = 1024;
/// The longest an idle worker waits before it looks at its stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// How a worker wakes the TCP loop: its waker, and a flag that says a wake is already on
/// its way (so a busy worker makes one `eventfd` write per loop turn, not one per batch).
#[derive(Clone)]
pub struct LoopWake {
    /// The TCP loop's waker.
    pub waker: Arc<Waker>,
    /// Set by the worker that wakes the loop; cleared by the loop at the start of a turn.
    pub due: Arc<AtomicBool>,
}

impl LoopWake {
    /// Wakes the TCP loop unless a wake is already due.
    fn wake(&self) {
        if !self.due.load(Ordering::Relaxed) && !self.due.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// A running worker: its thread and the waker that tells it to stop.
pub struct Worker {
    thread: JoinHandle<()>,
    stop: Arc<Waker>,
}

impl Worker {
    /// Starts worker `index` on `socket` (non-blocking, bound), serving `udp` on the clock
    /// that starts at `origin`, until `stop` is set and the worker is woken
    /// ([`Self::stop`]).
    ///
    /// # Errors
    /// The OS error of creating the poll, registering the socket or spawning the thread.
    pub fn spawn(
        index: usize,
        socket: std::net::UdpSocket,
        udp: SharedUdp,
        origin: Instant,
        stop: Arc<AtomicBool>,
        main: LoopWake,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let mut socket = UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let thread = std::thread::Builder::new()
            .name(format!("udp-{index}"))
            .spawn(move || serve(poll, socket, &udp, origin, &stop, &main))?;
        Ok(Worker {
            thread,
            stop: waker,
        })
    }

    /// Wakes the worker (whose stop flag is set) and waits for its thread to end; its
    /// last replies are sent first, as far as the kernel takes them.
    pub fn stop(self) {
        let _ = self.stop.wake();
        if self.thread.join().is_err() {
            tracing::error!("a UDP worker panicked");
        }
    }
}

/// The worker's loop: wait for readiness, read under a budget, send; until `stop`.
fn serve(
    mut poll: Poll,
    mut socket: UdpSocket,
    udp: &SharedUdp,
    origin: Instant,
    stop: &AtomicBool,
    main: &LoopWake,
) {
    let v6_socket = socket.local_addr().is_ok_and(|a| a.is_ipv6());
    let mut batch = Batch::new(v6_socket);
    let mut events = Events::with_capacity(8);
    let (mut more, mut want_write) = (true, false);
    let clock = || now(origin);
    while !stop.load(Ordering::Relaxed) {
        // Not at all while datagrams may wait; else until readiness or a stop (at most
        // IDLE_WAIT, a bound on a missed wake).
        let wait = if more { Duration::ZERO } else { IDLE_WAIT };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(error = %e, "a UDP worker cannot poll; it stops");
                return;
            }
        }
        more |= events
            .iter()
            .any(|ev| ev.token() == SOCKET && ev.is_readable());
        if more {
            let (left, peer_out) = batch.drain(&socket, udp, &clock, READ_BUDGET);
            more = left;
            if peer_out {
                main.wake();
            }
        }
        let pending = batch.flush(&socket);
        if pending != want_write {
            want_write = pending;
            let interest = match pending {
                true => Interest::READABLE | Interest::WRITABLE,
                false => Interest::READABLE,
            };
            if let Err(e) = poll.registry().reregister(&mut socket, SOCKET, interest) {
                tracing::error!(error = %e, "a UDP worker cannot poll its socket; it stops");
                return;
            }
        }
    }
    batch.flush(&socket);
}
