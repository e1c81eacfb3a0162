//! The UDP side of a replay: one local socket per original client address (shared round
//! robin beyond the limit), the datagrams the kernel could not take yet, and the replies.

use super::Replayer;
use crate::tools::capture::CaptureRead;
use crate::tools::replay::ReplayError;
use crate::wire::udp::canonical_addr;
use mio::net::UdpSocket;
use mio::{Interest, Token};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

/// Errors in a row a socket may report on read before it is left until its next wake-up.
const READ_ERRORS_MAX: usize = 64;

/// The replay's UDP sockets.
pub(super) struct UdpSide {
    sockets: Vec<UdpSocket>,
    /// Most sockets made; beyond, addresses share them.
    pub(super) limit: usize,
    /// The socket of each original client address.
    by_src: HashMap<SocketAddr, usize>,
    next_shared: usize,
    /// Datagrams the kernel could not take yet: (socket, datagram index).
    pub(super) backlog: VecDeque<(usize, usize)>,
    /// When the last datagram was sent or a reply came.
    pub(super) last_reply: Instant,
}

impl UdpSide {
    /// No sockets yet; at most `limit`.
    pub(super) fn new(limit: usize) -> Self {
        UdpSide {
            sockets: Vec::new(),
            limit,
            by_src: HashMap::new(),
            next_shared: 0,
            backlog: VecDeque::new(),
            last_reply: Instant::now(),
        }
    }
}

impl Replayer {
    /// The socket for original client address `src`: its own, a new one, or (beyond the
    /// limit) a shared one, round robin.
    pub(super) fn socket_for(&mut self, src: SocketAddr) -> Result<usize, ReplayError> {
        if let Some(&i) = self.udp.by_src.get(&src) {
            return Ok(i);
        }
        let u = &mut self.udp;
        let i = if u.sockets.len() < u.limit {
            let local: SocketAddr = if self.target.is_ipv6() {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let mut s = UdpSocket::bind(local).map_err(ReplayError::io(format!(
                "cannot bind a UDP socket on {local}"
            )))?;
            let i = u.sockets.len();
            self.poll
                .registry()
                .register(&mut s, Token(i), Interest::READABLE)
                .map_err(ReplayError::io("cannot register a UDP socket"))?;
            u.sockets.push(s);
            self.tally.udp.sockets = u.sockets.len();
            i
        } else {
            self.tally.udp.reused = true;
            let i = u.next_shared % u.sockets.len();
            u.next_shared += 1;
            i
        };
        u.by_src.insert(src, i);
        Ok(i)
    }

    /// Sends the datagrams waiting, in order, until the kernel says "not now".
    pub(super) fn flush_backlog(&mut self, read: &CaptureRead) -> Result<(), ReplayError> {
        let u = &mut self.udp;
        while let Some(&(sock, i)) = u.backlog.front() {
            let payload = &read.datagrams[i].payload;
            match u.sockets[sock].send_to(payload, self.target) {
                Ok(_) => {
                    self.tally.udp.count_sent(payload);
                    u.last_reply = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.tally.udp.send_errors += 1,
            }
            u.backlog.pop_front();
        }
        Ok(())
    }

    /// Reads every datagram waiting on socket `sock` and counts those from the target.
    pub(super) fn read_udp(&mut self, sock: usize) {
        let target = canonical_addr(self.target);
        let mut errors = 0;
        loop {
            match self.udp.sockets[sock].recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    if canonical_addr(from) == target {
                        self.tally.udp.count_received(&self.buf[..n]);
                        self.udp.last_reply = Instant::now();
                    } else {
                        self.tally.udp.foreign += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Interrupted, or an error the kernel queued (ICMP): read on, so that no
                // datagram is left behind an edge-triggered wake-up.
                Err(_) => {
                    errors += 1;
                    if errors > READ_ERRORS_MAX {
                        return;
                    }
                }
            }
        }
    }
}
