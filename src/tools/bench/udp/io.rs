//! Batched sends and receives on the bench's connected client sockets, through the crate's
//! one door to `sendmmsg`/`recvmmsg` ([`crate::net::mmsg`]): plain datagrams, or UDP GSO
//! messages of many equal-size datagrams, [`BATCH`] messages per system call.

use super::RX_LEN;
use crate::net::mmsg::{self, RecvBatch, BATCH};
use mio::net::UdpSocket;
use std::io;

/// Datagrams per GSO message (the kernel's limit is 64 on older kernels).
pub(super) const GSO_SEGMENTS: usize = 64;
/// Keepalives one socket sends per pass with GSO (4 messages).
pub(super) const KEEPALIVE_GSO_BURST: usize = 4 * GSO_SEGMENTS;

/// Sends `pkts` on a connected socket, [`BATCH`] per `sendmmsg`; returns how many the
/// kernel took (it stops at the first refusal, e.g. a full send buffer).
pub(super) fn send_all(sock: &UdpSocket, pkts: &[&[u8]]) -> usize {
    let mut sent = 0;
    for chunk in pkts.chunks(BATCH) {
        match mmsg::send_connected(sock, chunk.iter().copied()) {
            Ok(r) => {
                sent += r;
                if r < chunk.len() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    sent
}

/// Asks the kernel to cut every later send on `sock` larger than `size` bytes into
/// datagrams of `size` bytes (UDP GSO, [`mmsg::set_udp_segment`]), so one system call and
/// one pass down the stack carry up to [`GSO_SEGMENTS`] datagrams; the server still
/// receives them one by one. Returns false when the kernel refuses.
pub(super) fn set_gso(sock: &UdpSocket, size: usize) -> bool {
    u16::try_from(size).is_ok_and(|size| mmsg::set_udp_segment(sock, size).is_ok())
}

/// Sends the datagrams of `size` bytes laid back to back in `buf` as GSO messages of up to
/// [`GSO_SEGMENTS`] datagrams, [`BATCH`] messages per `sendmmsg`; returns how many
/// datagrams the kernel took.
///
/// # Errors
/// The OS error when the very first message is refused for another reason than a full
/// buffer (the caller then sends without GSO).
pub(super) fn send_gso(sock: &UdpSocket, buf: &[u8], size: usize) -> io::Result<usize> {
    let msg_len = size * GSO_SEGMENTS;
    let mut sent = 0;
    for group in buf.chunks(msg_len * BATCH) {
        match mmsg::send_connected(sock, group.chunks(msg_len)) {
            Ok(r) => {
                let taken = group.len().min(r * msg_len);
                sent += taken.div_ceil(size);
                if taken < group.len() {
                    break;
                }
            }
            Err(e) => {
                let full = e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOBUFS);
                if sent == 0 && !full {
                    return Err(e);
                }
                break;
            }
        }
    }
    Ok(sent)
}

/// Receive buffers for the bench's sockets, allocated once.
pub(super) struct Rx(RecvBatch);

impl Rx {
    /// [`BATCH`] buffers of [`RX_LEN`] bytes.
    pub(super) fn new() -> Self {
        Rx(RecvBatch::new(RX_LEN))
    }

    /// Receives up to [`BATCH`] datagrams without blocking; returns how many.
    pub(super) fn recv(&mut self, sock: &UdpSocket) -> usize {
        mmsg::recv_batch(sock, &mut self.0).unwrap_or(0)
    }

    /// Datagram `i` of the last receive.
    pub(super) fn get(&self, i: usize) -> &[u8] {
        self.0.datagram(i)
    }
}
