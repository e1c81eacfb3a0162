//! The one door to batched datagram system calls (Linux): `recvmmsg` and `sendmmsg` over
//! preallocated batches of buffers and addresses, and the UDP GSO socket option
//! (`UDP_SEGMENT`). Every `unsafe` block of the crate is in this module; the server's loop
//! (`net::batch`), the bench (docs/PROTOCOL.md §10, "Benchmarking") and `loadgen` use it.
//!
//! Owns no socket: every call borrows one. Allocates only in the constructors; a receive
//! or a send copies datagrams between the caller's bytes and the batch's own buffers (or
//! none at all, for [`send_connected`]) and allocates nothing. Never blocks unless asked to
//! ([`recv_batch_wait`]).
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

/// Datagrams (or messages) per system call, and the capacity of every batch.
pub const BATCH: usize = 32;

/// Received datagrams: up to [`BATCH`] buffers of a fixed size, with the source address
/// and length of each, filled by [`recv_batch`].
pub struct RecvBatch {
    /// `BATCH` buffers of `buf_len` bytes, back to back.
    bufs: Box<[u8]>,
    buf_len: usize,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    /// Bytes the kernel reported for each datagram (more than `buf_len` when one was cut).
    lens: [usize; BATCH],
    /// Datagrams held, from the last receive.
    count: usize,
}

impl RecvBatch {
    /// A batch of [`BATCH`] buffers of `buf_len` bytes each (a larger datagram is cut to
    /// `buf_len`; ask for one byte more than the largest datagram wanted to see it as too
    /// large).
    pub fn new(buf_len: usize) -> Self {
        let buf_len = buf_len.max(1);
        RecvBatch {
            bufs: vec![0; BATCH * buf_len].into_boxed_slice(),
            buf_len,
            addrs: Box::new([empty_storage(); BATCH]),
            lens: [0; BATCH],
            count: 0,
        }
    }

    /// Datagrams held from the last receive.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes of datagram `i` (cut to the buffer size); empty beyond [`Self::len`].
    pub fn datagram(&self, i: usize) -> &[u8] {
        if i >= self.count {
            return &[];
        }
        let len = self.lens[i].min(self.buf_len);
        &self.bufs[i * self.buf_len..i * self.buf_len + len]
    }

    /// The source of datagram `i`; `None` beyond [`Self::len`] or for an address family
    /// other than IPv4 and IPv6.
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        (i < self.count).then(|| to_std(&self.addrs[i])).flatten()
    }

    /// Every datagram held, with its source (those of another address family skipped).
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        (0..self.count).filter_map(|i| Some((self.source(i)?, self.datagram(i))))
    }
}

/// Datagrams to send: up to [`BATCH`] copies of the caller's bytes, each with its own
/// destination, sent in order by [`send_batch`].
pub struct SendBatch {
    /// `BATCH` buffers of `buf_len` bytes, back to back.
    bufs: Box<[u8]>,
    buf_len: usize,
    lens: [usize; BATCH],
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    addr_lens: [libc::socklen_t; BATCH],
    /// The first datagram not sent yet.
    start: usize,
    /// Datagrams held.
    len: usize,
    /// The socket is IPv6 (dual-stack): IPv4 destinations are written IPv4-mapped.
    v6: bool,
}

impl SendBatch {
    /// An empty batch for datagrams of at most `buf_len` bytes, to be sent on an IPv6
    /// (dual-stack) socket when `v6_socket`, else on an IPv4 one.
    pub fn new(buf_len: usize, v6_socket: bool) -> Self {
        SendBatch {
            bufs: vec![0; BATCH * buf_len].into_boxed_slice(),
            buf_len,
            lens: [0; BATCH],
            addrs: Box::new([empty_storage(); BATCH]),
            addr_lens: [0; BATCH],
            start: 0,
            len: 0,
            v6: v6_socket,
        }
    }

    /// True when no datagram waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.start == self.len
    }

    /// True when no datagram can be added until the batch is sent.
    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// Copies `bytes` into the batch, to be sent to `dst`. Returns false (and copies
    /// nothing) when the batch is full or `bytes` is longer than the buffers.
    pub fn push(&mut self, dst: SocketAddr, bytes: &[u8]) -> bool {
        if self.is_full() || bytes.len() > self.buf_len {
            return false;
        }
        let i = self.len;
        self.bufs[i * self.buf_len..i * self.buf_len + bytes.len()].copy_from_slice(bytes);
        self.lens[i] = bytes.len();
        self.addr_lens[i] = from_std(dst, self.v6, &mut self.addrs[i]);
        self.len += 1;
        true
    }

    /// Drops the first datagram not sent yet (one the kernel refuses for good).
    pub fn skip(&mut self) {
        if !self.is_empty() {
            self.start += 1;
        }
        self.reset_when_sent();
    }

    /// Starts over once every datagram is sent.
    fn reset_when_sent(&mut self) {
        if self.start == self.len {
            self.start = 0;
            self.len = 0;
        }
    }
}

/// Receives up to [`BATCH`] datagrams without blocking (`recvmmsg`, `MSG_DONTWAIT`) into
/// `batch`, replacing what it held; returns how many. An interrupted call is retried.
///
/// # Errors
/// The system's error; [`io::ErrorKind::WouldBlock`] when nothing is waiting.
pub fn recv_batch(socket: &impl AsFd, batch: &mut RecvBatch) -> io::Result<usize> {
    recvmmsg(socket, batch, libc::MSG_DONTWAIT)
}

/// As [`recv_batch`], but waits for the first datagram (`MSG_WAITFORONE`): at most the
/// socket's read timeout on a blocking socket.
///
/// # Errors
/// As [`recv_batch`]; [`io::ErrorKind::WouldBlock`] when the read timeout passed.
pub fn recv_batch_wait(socket: &impl AsFd, batch: &mut RecvBatch) -> io::Result<usize> {
    recvmmsg(socket, batch, libc::MSG_WAITFORONE)
}

/// Sends the datagrams of `batch` not sent yet, in order, with one `sendmmsg` (retried when
/// interrupted) without blocking; returns how many the kernel took. Once all are sent the
/// batch is empty again.
///
/// # Errors
/// The system's error for the first datagram not taken: [`io::ErrorKind::WouldBlock`]
/// when the socket's buffer is full; another error means that datagram cannot be sent
/// (the caller may [`SendBatch::skip`] it).
pub fn send_batch(socket: &impl AsFd, batch: &mut SendBatch) -> io::Result<usize> {
    let count = batch.len - batch.start;
    if count == 0 {
        return Ok(0);
    }
    let mut iov = [empty_iovec(); BATCH];
    let mut hdrs = empty_headers();
    for k in 0..count {
        let i = batch.start + k;
        let at = i * batch.buf_len;
        iov[k].iov_base = batch.bufs[at..at + batch.lens[i]].as_mut_ptr().cast();
        iov[k].iov_len = batch.lens[i];
        hdrs[k].msg_hdr.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_storage).cast();
        hdrs[k].msg_hdr.msg_namelen = batch.addr_lens[i];
        hdrs[k].msg_hdr.msg_iov = &mut iov[k];
        hdrs[k].msg_hdr.msg_iovlen = 1;
    }
    let fd = socket.as_fd().as_raw_fd();
    let n = retry(|| {
        // SAFETY: `hdrs[..count]` each point at one iovec over `lens[i]` bytes of the
        // batch's own buffer and at its own address of `addr_lens[i]` bytes; all of them
        // live (and are not moved) for the call, and the kernel only reads them.
        unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), count as u32, libc::MSG_DONTWAIT) }
    })?;
    batch.start += n;
    batch.reset_when_sent();
    Ok(n)
}

/// Sends up to [`BATCH`] messages of `msgs` on a connected socket with one `sendmmsg`,
/// without blocking and without copying them; returns how many the kernel took (it stops
/// at the first it refuses). A message is one datagram, or after [`set_udp_segment`] a GSO
/// message of several.
///
/// # Errors
/// The system's error when not even the first message was taken
/// ([`io::ErrorKind::WouldBlock`] for a full buffer).
pub fn send_connected<'a>(
    socket: &impl AsFd,
    msgs: impl IntoIterator<Item = &'a [u8]>,
) -> io::Result<usize> {
    let mut iov = [empty_iovec(); BATCH];
    let mut hdrs = empty_headers();
    let mut count = 0;
    for (k, m) in msgs.into_iter().take(BATCH).enumerate() {
        // The kernel never writes through a send's iovec: the pointer is mutable only
        // because the C struct has one field for both directions.
        iov[k].iov_base = m.as_ptr().cast_mut().cast();
        iov[k].iov_len = m.len();
        hdrs[k].msg_hdr.msg_iov = &mut iov[k];
        hdrs[k].msg_hdr.msg_iovlen = 1;
        count = k + 1;
    }
    if count == 0 {
        return Ok(0);
    }
    let fd = socket.as_fd().as_raw_fd();
    retry(|| {
        // SAFETY: `hdrs[..count]` each point at one iovec over a message the caller
        // lends for the whole call (the kernel only reads it); no address is given, as
        // the socket is connected.
        unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), count as u32, libc::MSG_DONTWAIT) }
    })
}

/// Asks the kernel to cut every later send on `socket` that is larger than `size` bytes
/// into datagrams of `size` bytes (UDP generic segmentation offload, `UDP_SEGMENT`, Linux
/// 4.18+): one system call and one pass down the stack carry up to 64 datagrams, which
/// the receiver still gets one by one.
///
/// # Errors
/// The system's error when the kernel or the socket refuses GSO.
pub fn set_udp_segment(socket: &impl AsFd, size: u16) -> io::Result<()> {
    let value = libc::c_int::from(size);
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local `c_int`.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `recvmmsg` into every buffer of `batch` with `flags`.
fn recvmmsg(socket: &impl AsFd, batch: &mut RecvBatch, flags: libc::c_int) -> io::Result<usize> {
    batch.count = 0;
    let mut iov = [empty_iovec(); BATCH];
    let mut hdrs = empty_headers();
    let buf_len = batch.buf_len;
    for (i, buf) in batch.bufs.chunks_exact_mut(buf_len).enumerate() {
        iov[i].iov_base = buf.as_mut_ptr().cast();
        iov[i].iov_len = buf_len;
        hdrs[i].msg_hdr.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    let fd = socket.as_fd().as_raw_fd();
    let n = retry(|| {
        // SAFETY: each of the `BATCH` headers points at one iovec over its own
        // `buf_len`-byte buffer of the batch and at its own `sockaddr_storage`, with the
        // sizes stated; all are live and exclusively borrowed for the call.
        unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                flags,
                std::ptr::null_mut(),
            )
        }
    })?;
    for (len, h) in batch.lens.iter_mut().zip(&hdrs[..n]) {
        *len = h.msg_len as usize;
    }
    batch.count = n;
    Ok(n)
}

/// Runs a `*mmsg` call until it is not interrupted; its count, or the OS error.
fn retry(mut call: impl FnMut() -> libc::c_int) -> io::Result<usize> {
    loop {
        let r = call();
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

/// [`BATCH`] message headers, all zero (no name, no iovec, no control data).
fn empty_headers() -> [libc::mmsghdr; BATCH] {
    // SAFETY: mmsghdr is plain old data (integers and raw pointers, and padding on some
    // targets); all-zero bytes are a valid value of it.
    unsafe { std::mem::zeroed() }
}

/// An all-zero socket address (family `AF_UNSPEC`).
fn empty_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Reads a kernel socket address; `None` for a family other than IPv4 and IPv6.
fn to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which is smaller
            // than sockaddr_storage and needs no stricter alignment.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` as a kernel socket address for a socket of the given family (IPv4
/// destinations become IPv4-mapped on an IPv6 socket); returns its length.
fn from_std(
    addr: SocketAddr,
    v6_socket: bool,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    let addr = match (addr, v6_socket) {
        (SocketAddr::V4(v4), true) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        (a, _) => a,
    };
    *out = empty_storage();
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in, and
            // `out` is exclusively borrowed.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn sockaddr_round_trip() {
        let mut ss = empty_storage();
        for (a, v6) in [("192.0.2.7:4747", false), ("[2001:db8::1]:9", true)] {
            let a: SocketAddr = a.parse().unwrap();
            from_std(a, v6, &mut ss);
            assert_eq!(to_std(&ss), Some(a));
        }
        let v4: SocketAddr = "192.0.2.7:4747".parse().unwrap();
        from_std(v4, true, &mut ss);
        let back = to_std(&ss).unwrap();
        assert_eq!(
            back,
            "[::ffff:192.0.2.7]:4747".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn batches_go_through_loopback_in_order_with_their_sources() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut tx = SendBatch::new(8, false);
        assert!(tx.push(b_addr, b"one"));
        assert!(tx.push(b_addr, b"two"));
        assert!(!tx.push(b_addr, b"far too long"), "longer than the buffers");
        assert_eq!(send_batch(&a, &mut tx).unwrap(), 2);
        assert!(tx.is_empty());
        b.connect(a_addr).unwrap();
        assert_eq!(send_connected(&b, [&b"three"[..], b"four"]).unwrap(), 2);
        let mut rx = RecvBatch::new(4);
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            recv_batch_wait(&b, &mut rx).unwrap();
            got.extend(rx.iter().map(|(from, d)| (from, d.to_vec())));
        }
        assert_eq!(got, [(a_addr, b"one".to_vec()), (a_addr, b"two".to_vec())]);
        a.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            recv_batch_wait(&a, &mut rx).unwrap();
            got.extend((0..rx.len()).map(|i| rx.datagram(i).to_vec()));
        }
        assert_eq!(got, [b"thre".to_vec(), b"four".to_vec()], "cut to 4 bytes");
        let e = recv_batch(&a, &mut rx).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(rx.is_empty());
    }
}
