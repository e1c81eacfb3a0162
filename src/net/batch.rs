//! Batched datagram I/O for the server's sockets, on [`super::mmsg`]: up to 32 datagrams
//! per system call, with buffers allocated once, so the datagram-in/reply-out path
//! allocates nothing. A reply the kernel refuses with EAGAIN waits in a bounded overflow
//! queue. A UDP worker reads a batch, hands it to the UDP plane under one lock, and sends
//! the replies once the lock is released (docs/PROTOCOL.md §7, "Workers").

use super::mmsg::{recv_batch, send_batch, RecvBatch, SendBatch, BATCH};
use crate::core::udp::{BatchChecks, UdpCore};
use crate::core::Now;
use mio::net::UdpSocket;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

/// Receive buffer per datagram: larger than the 1400-byte limit so oversized datagrams are
/// seen as such (and answered 413) rather than silently cut.
const RX_LEN: usize = 1536;
/// Largest datagram the core emits.
const TX_LEN: usize = crate::wire::MAX_DATAGRAM;
/// Most replies held back while the socket is not writable; more are dropped.
const MAX_OVERFLOW: usize = 4096;

/// Datagrams waiting to be sent on one socket: a `sendmmsg` batch and a bounded overflow.
pub struct Sender {
    batch: SendBatch,
    /// Replies the batch had no room for while the kernel was not taking datagrams.
    overflow: VecDeque<(SocketAddr, Vec<u8>)>,
    dropped: u64,
}

/// Receive and send buffers for one socket.
pub struct Batch {
    rx: RecvBatch,
    tx: Sender,
}

impl Sender {
    /// An empty sender for a socket; `v6_socket` when it is an IPv6 (dual-stack) socket.
    pub fn new(v6_socket: bool) -> Self {
        Sender {
            batch: SendBatch::new(TX_LEN, v6_socket),
            overflow: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues one datagram for sending, flushing first when the batch is full.
    pub fn queue(&mut self, socket: &UdpSocket, dst: SocketAddr, bytes: &[u8]) {
        if self.batch.is_full() {
            self.send(socket);
        }
        self.hold(dst, bytes);
    }

    /// Queues one datagram without a system call (under the UDP plane's lock): into the
    /// batch while it has room and nothing waits before it, else a copy into the overflow,
    /// within its bound.
    fn hold(&mut self, dst: SocketAddr, bytes: &[u8]) {
        if bytes.len() > TX_LEN {
            self.dropped += 1;
            return;
        }
        if self.batch.is_full() || !self.overflow.is_empty() {
            // The kernel is not taking datagrams now: hold a copy, within the bound.
            if self.overflow.len() < MAX_OVERFLOW {
                self.overflow.push_back((dst, bytes.to_vec()));
            } else {
                self.dropped += 1;
            }
            return;
        }
        self.batch.push(dst, bytes);
    }

    /// Sends the batched datagrams; stops at EAGAIN. Returns true when all were sent.
    fn send(&mut self, socket: &UdpSocket) -> bool {
        while !self.batch.is_empty() {
            match send_batch(socket, &mut self.batch) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // This datagram cannot be sent (unreachable, bad address): skip it.
                    tracing::debug!(error = %e, "sendmmsg failed; dropping one datagram");
                    self.dropped += 1;
                    self.batch.skip();
                }
            }
        }
        true
    }

    /// Datagrams dropped because the kernel would not take them or the overflow was full.
    #[allow(dead_code)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sends everything batched (and held back); returns true when something still waits
    /// for the socket to become writable.
    pub fn flush(&mut self, socket: &UdpSocket) -> bool {
        loop {
            if !self.send(socket) {
                return true;
            }
            if self.overflow.is_empty() {
                return false;
            }
            for _ in 0..BATCH {
                let Some((dst, bytes)) = self.overflow.pop_front() else {
                    break;
                };
                self.batch.push(dst, &bytes);
            }
        }
    }
}

impl Batch {
    /// Buffers for a socket; `v6_socket` when it is an IPv6 (dual-stack) socket.
    pub fn new(v6_socket: bool) -> Self {
        Batch {
            rx: RecvBatch::new(RX_LEN),
            tx: Sender::new(v6_socket),
        }
    }

    /// Reads datagrams until the socket is empty or `budget` were read. Each `recvmmsg`
    /// batch goes to `udp` under one lock, at the time `clock()` gives then; its replies
    /// are sent after the lock is released. Returns `(more, peer_out)`: `more` when the
    /// budget ran out first (more may be waiting), `peer_out` when the UDP plane has news
    /// for the peer links (the TCP loop should route it).
    pub fn drain(
        &mut self,
        socket: &UdpSocket,
        udp: &Mutex<UdpCore>,
        clock: &dyn Fn() -> Now,
        budget: usize,
    ) -> (bool, bool) {
        let (mut total, mut peer_out) = (0, false);
        let Batch { rx, tx } = self;
        loop {
            let n = match recv_batch(socket, rx) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (false, peer_out),
                Err(e) => {
                    tracing::debug!(error = %e, "recvmmsg failed");
                    return (false, peer_out);
                }
            };
            if n == 0 {
                return (false, peer_out);
            }
            let none = (SocketAddr::from(([0, 0, 0, 0], 0)), &[][..]);
            let mut datagrams = [none; BATCH];
            let mut k = 0;
            for (slot, d) in datagrams.iter_mut().zip(rx.iter()) {
                *slot = d;
                k += 1;
            }
            let datagrams = &datagrams[..k];
            let now = clock();
            // The signature checks of registrations run between two holds of the lock
            // (docs/PROTOCOL.md §7, "Workers"): the other workers go on meanwhile. A batch
            // without registrations takes the lock once.
            let mut checks = BatchChecks::default();
            if BatchChecks::wanted(datagrams) {
                checks = udp.lock().gather_batch(now, datagrams);
                checks.verify();
            }
            let mut core = udp.lock();
            core.handle_verified(now, datagrams, checks, &mut |dst, bytes| {
                tx.hold(dst, bytes)
            });
            peer_out |= core.peer_out_pending();
            drop(core);
            tx.flush(socket);
            total += n;
            if total >= budget {
                return (true, peer_out);
            }
        }
    }

    /// Sends the replies still held (the kernel was not taking them); returns true when
    /// something still waits for the socket to become writable.
    pub fn flush(&mut self, socket: &UdpSocket) -> bool {
        self.tx.flush(socket)
    }
}
