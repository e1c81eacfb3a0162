//! Batched datagram I/O for the server's socket, on [`super::mmsg`]: up to 32 datagrams
//! per system call, with buffers allocated once, so the datagram-in/reply-out path
//! allocates nothing. A reply the kernel refuses with EAGAIN waits in a bounded overflow
//! queue.

use super::mmsg::{recv_batch, send_batch, RecvBatch, SendBatch, BATCH};
use crate::core::node::Node;
use crate::core::Now;
use mio::net::UdpSocket;
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

/// Replies waiting to be sent.
struct Tx {
    batch: SendBatch,
    /// Replies the batch had no room for while the kernel was not taking datagrams.
    overflow: VecDeque<(SocketAddr, Vec<u8>)>,
    dropped: u64,
}

/// Receive and send buffers for one socket.
pub struct Batch {
    rx: RecvBatch,
    tx: Tx,
}

impl Tx {
    /// Queues one datagram for sending, flushing first when the batch is full.
    fn push(&mut self, socket: &UdpSocket, dst: SocketAddr, bytes: &[u8]) {
        if bytes.len() > TX_LEN {
            self.dropped += 1;
            return;
        }
        if self.batch.is_full() {
            self.send(socket);
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
}

impl Batch {
    /// Buffers for a socket; `v6_socket` when it is an IPv6 (dual-stack) socket.
    pub fn new(v6_socket: bool) -> Self {
        Batch {
            rx: RecvBatch::new(RX_LEN),
            tx: Tx {
                batch: SendBatch::new(TX_LEN, v6_socket),
                overflow: VecDeque::new(),
                dropped: 0,
            },
        }
    }

    /// Reads datagrams until the socket is empty or `budget` were read, handing each to the
    /// core; returns true when the budget ran out first (more may be waiting).
    pub fn drain(&mut self, socket: &UdpSocket, node: &mut Node, now: Now, budget: usize) -> bool {
        let mut total = 0;
        let Batch { rx, tx } = self;
        loop {
            let n = match recv_batch(socket, rx) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    tracing::debug!(error = %e, "recvmmsg failed");
                    return false;
                }
            };
            node.handle_batch(now, rx.iter(), &mut |dst, bytes| {
                tx.push(socket, dst, bytes)
            });
            total += n;
            if n == 0 {
                return false;
            }
            if total >= budget {
                return true;
            }
        }
    }

    /// Queues one datagram from `socket` to `dst` (sent by the next [`Self::flush`]).
    pub fn queue(&mut self, socket: &UdpSocket, dst: SocketAddr, bytes: &[u8]) {
        self.tx.push(socket, dst, bytes);
    }

    /// Sends everything batched (and held back); returns true when something still waits
    /// for the socket to become writable.
    pub fn flush(&mut self, socket: &UdpSocket) -> bool {
        loop {
            if !self.tx.send(socket) {
                return true;
            }
            if self.tx.overflow.is_empty() {
                return false;
            }
            for _ in 0..BATCH {
                let Some((dst, bytes)) = self.tx.overflow.pop_front() else {
                    break;
                };
                self.tx.batch.push(dst, &bytes);
            }
        }
    }

    /// Datagrams dropped because the kernel would not take them or the overflow was full.
    #[allow(dead_code)]
    pub fn dropped(&self) -> u64 {
        self.tx.dropped
    }
}
