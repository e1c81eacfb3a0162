//! Batched datagram I/O: `recvmmsg`/`sendmmsg` on Linux (32 datagrams per system call), with
//! fixed buffers allocated once, so the datagram-in/reply-out path allocates nothing. A
//! reply the kernel refuses with EAGAIN waits in a bounded overflow queue.

use crate::core::node::Node;
use crate::core::Now;
use mio::net::UdpSocket;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
const N: usize = 32;
/// Receive buffer per datagram: larger than the 1400-byte limit so oversized datagrams are
/// seen as such (and answered 413) rather than silently cut.
const RX_LEN: usize = 1536;
/// Largest datagram the core emits.
const TX_LEN: usize = crate::wire::MAX_DATAGRAM;
/// Most replies held back while the socket is not writable; more are dropped.
const MAX_OVERFLOW: usize = 4096;

struct Tx {
    bufs: Box<[[u8; TX_LEN]; N]>,
    lens: [usize; N],
    addrs: Box<[libc::sockaddr_storage; N]>,
    addr_lens: [libc::socklen_t; N],
    start: usize,
    len: usize,
    overflow: VecDeque<(SocketAddr, Vec<u8>)>,
    v6: bool,
    dropped: u64,
}

/// Receive and send buffers for one socket.
pub struct Batch {
    rx: Box<[[u8; RX_LEN]; N]>,
    rx_addrs: Box<[libc::sockaddr_storage; N]>,
    tx: Tx,
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Reads a kernel socket address; `None` for a family other than IPv4/IPv6.
fn to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it can contain.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
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
    *out = zeroed_storage();
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Tx {
    /// Queues one datagram for sending, flushing first when the batch is full.
    fn push(&mut self, fd: i32, dst: SocketAddr, bytes: &[u8]) {
        if bytes.len() > TX_LEN {
            self.dropped += 1;
            return;
        }
        if self.len == N {
            self.send(fd);
        }
        if self.len == N || !self.overflow.is_empty() {
            // The kernel is not taking datagrams now: hold a copy, within the bound.
            if self.overflow.len() < MAX_OVERFLOW {
                self.overflow.push_back((dst, bytes.to_vec()));
            } else {
                self.dropped += 1;
            }
            return;
        }
        let i = self.len;
        self.bufs[i][..bytes.len()].copy_from_slice(bytes);
        self.lens[i] = bytes.len();
        self.addr_lens[i] = from_std(dst, self.v6, &mut self.addrs[i]);
        self.len += 1;
    }

    /// Sends the batched datagrams; stops at EAGAIN. Returns true when all were sent.
    fn send(&mut self, fd: i32) -> bool {
        while self.start < self.len {
            let count = self.len - self.start;
            let mut iov: [libc::iovec; N] = unsafe { std::mem::zeroed() };
            // SAFETY: mmsghdr is plain old data; zero is valid before we fill it.
            let mut hdrs: [libc::mmsghdr; N] = unsafe { std::mem::zeroed() };
            for k in 0..count {
                let i = self.start + k;
                iov[k].iov_base = self.bufs[i].as_mut_ptr().cast();
                iov[k].iov_len = self.lens[i];
                hdrs[k].msg_hdr.msg_name =
                    (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                hdrs[k].msg_hdr.msg_namelen = self.addr_lens[i];
                hdrs[k].msg_hdr.msg_iov = &mut iov[k];
                hdrs[k].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: hdrs[..count] point at live buffers owned by self for the call.
            let n =
                unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), count as u32, libc::MSG_DONTWAIT) };
            if n < 0 {
                match errno() {
                    libc::EAGAIN => return false,
                    libc::EINTR => continue,
                    e => {
                        // This datagram cannot be sent (unreachable, bad address): skip it.
                        tracing::debug!(errno = e, "sendmmsg failed; dropping one datagram");
                        self.dropped += 1;
                        self.start += 1;
                    }
                }
            } else {
                self.start += n as usize;
            }
        }
        self.start = 0;
        self.len = 0;
        true
    }
}

impl Batch {
    /// Buffers for a socket; `v6_socket` when it is an IPv6 (dual-stack) socket.
    pub fn new(v6_socket: bool) -> Self {
        Batch {
            rx: Box::new([[0; RX_LEN]; N]),
            rx_addrs: Box::new([zeroed_storage(); N]),
            tx: Tx {
                bufs: Box::new([[0; TX_LEN]; N]),
                lens: [0; N],
                addrs: Box::new([zeroed_storage(); N]),
                addr_lens: [0; N],
                start: 0,
                len: 0,
                overflow: VecDeque::new(),
                v6: v6_socket,
                dropped: 0,
            },
        }
    }

    /// Reads datagrams until the socket is empty or `budget` were read, handing each to the
    /// core; returns true when the budget ran out first (more may be waiting).
    pub fn drain(&mut self, socket: &UdpSocket, node: &mut Node, now: Now, budget: usize) -> bool {
        let fd = socket.as_raw_fd();
        let mut total = 0;
        let Batch { rx, rx_addrs, tx } = self;
        loop {
            let mut iov: [libc::iovec; N] = unsafe { std::mem::zeroed() };
            // SAFETY: plain old data, filled below.
            let mut hdrs: [libc::mmsghdr; N] = unsafe { std::mem::zeroed() };
            for i in 0..N {
                iov[i].iov_base = rx[i].as_mut_ptr().cast();
                iov[i].iov_len = RX_LEN;
                hdrs[i].msg_hdr.msg_name = (&mut rx_addrs[i] as *mut libc::sockaddr_storage).cast();
                hdrs[i].msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                hdrs[i].msg_hdr.msg_iov = &mut iov[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: every header points at a live buffer of the stated size.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    N as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                match errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN => return false,
                    e => {
                        tracing::debug!(errno = e, "recvmmsg failed");
                        return false;
                    }
                }
            }
            let n = n as usize;
            for i in 0..n {
                let Some(src) = to_std(&rx_addrs[i]) else {
                    continue;
                };
                let len = (hdrs[i].msg_len as usize).min(RX_LEN);
                node.handle_datagram(now, src, &rx[i][..len], &mut |dst, bytes| {
                    tx.push(fd, dst, bytes)
                });
            }
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
        self.tx.push(socket.as_raw_fd(), dst, bytes);
    }

    /// Sends everything batched (and held back); returns true when something still waits
    /// for the socket to become writable.
    pub fn flush(&mut self, socket: &UdpSocket) -> bool {
        let fd = socket.as_raw_fd();
        loop {
            if !self.tx.send(fd) {
                return true;
            }
            if self.tx.overflow.is_empty() {
                return false;
            }
            while self.tx.len < N {
                let Some((dst, bytes)) = self.tx.overflow.pop_front() else {
                    break;
                };
                let i = self.tx.len;
                self.tx.bufs[i][..bytes.len()].copy_from_slice(&bytes);
                self.tx.lens[i] = bytes.len();
                self.tx.addr_lens[i] = from_std(dst, self.tx.v6, &mut self.tx.addrs[i]);
                self.tx.len += 1;
            }
        }
    }

    /// Datagrams dropped because the kernel would not take them or the overflow was full.
    #[allow(dead_code)]
    pub fn dropped(&self) -> u64 {
        self.tx.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        let mut ss = zeroed_storage();
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
}
