//! Batched sends and receives on the bench's connected client sockets: `sendmmsg` (plain,
//! or UDP GSO messages) and `recvmmsg`, [`BATCH`] messages per system call.

use super::{BATCH, RX_LEN};
use std::io;
use std::os::fd::RawFd;

/// Sends `pkts` on a connected socket with `sendmmsg`, in batches of [`BATCH`]; returns
/// how many the kernel took (it stops at the first refusal, e.g. a full send buffer).
pub(super) fn send_all(fd: RawFd, pkts: &[&[u8]]) -> usize {
    let mut sent = 0;
    for chunk in pkts.chunks(BATCH) {
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid before filling.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, p) in chunk.iter().enumerate() {
            iov[i].iov_base = p.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = p.len();
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at one iovec over a live packet for the call; the
        // socket is connected, so no address is given.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                chunk.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r <= 0 {
            break;
        }
        sent += r as usize;
        if (r as usize) < chunk.len() {
            break;
        }
    }
    sent
}

/// Datagrams per GSO message (the kernel's limit is 64 on older kernels).
pub(super) const GSO_SEGMENTS: usize = 64;
/// Keepalives one socket sends per pass with GSO (4 messages).
pub(super) const KEEPALIVE_GSO_BURST: usize = 4 * GSO_SEGMENTS;

/// Asks the kernel to cut every later send on `fd` larger than `size` bytes into datagrams
/// of `size` bytes (UDP generic segmentation offload, `UDP_SEGMENT`, Linux 4.18+), so one
/// system call and one pass down the stack carry up to [`GSO_SEGMENTS`] datagrams; the
/// server still receives them one by one. Returns false when the kernel refuses.
pub(super) fn set_gso(fd: RawFd, size: usize) -> bool {
    let v = size as libc::c_int;
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Sends the datagrams of `size` bytes laid back to back in `buf` as GSO messages of up to
/// [`GSO_SEGMENTS`] datagrams, [`BATCH`] messages per `sendmmsg`; returns how many
/// datagrams the kernel took.
///
/// # Errors
/// The OS error when the very first message is refused for another reason than a full
/// buffer (the caller then sends without GSO).
pub(super) fn send_gso(fd: RawFd, buf: &[u8], size: usize) -> io::Result<usize> {
    let mut sent = 0;
    let msgs: Vec<&[u8]> = buf.chunks(size * GSO_SEGMENTS).collect();
    for chunk in msgs.chunks(BATCH) {
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid before filling.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, m) in chunk.iter().enumerate() {
            iov[i].iov_base = m.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = m.len();
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at one iovec over live bytes of `buf` for the call;
        // the socket is connected, so no address is given.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                chunk.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r <= 0 {
            let e = io::Error::last_os_error();
            let full = matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS));
            if sent == 0 && !full {
                return Err(e);
            }
            break;
        }
        let r = r as usize;
        sent += chunk[..r]
            .iter()
            .map(|m| m.len().div_ceil(size))
            .sum::<usize>();
        if r < chunk.len() {
            break;
        }
    }
    Ok(sent)
}

/// Fixed receive buffers for `recvmmsg`.
pub(super) struct Rx {
    bufs: Box<[[u8; RX_LEN]; BATCH]>,
    lens: [usize; BATCH],
}

impl Rx {
    pub(super) fn new() -> Self {
        Rx {
            bufs: Box::new([[0u8; RX_LEN]; BATCH]),
            lens: [0; BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; returns how many.
    pub(super) fn recv(&mut self, fd: RawFd) -> usize {
        // SAFETY: plain old data, as in `send_all`.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = RX_LEN;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer of RX_LEN bytes for the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return 0;
        }
        let r = r as usize;
        for (len, h) in self.lens.iter_mut().zip(&hdrs[..r]) {
            *len = h.msg_len as usize;
        }
        r
    }

    pub(super) fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i].min(RX_LEN)]
    }
}
