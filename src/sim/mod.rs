//! An in-memory network of whole servers ([`Node`]s), for tests and simulations: each host
//! runs its node with its store carried out in line, connections are byte pipes whose
//! segments a seeded schedule delays, and links between hosts can be cut and healed. Virtual
//! time: no sockets, no threads, no sleeps; one seed gives one schedule.
//!
//! Host `i` listens at [`host_addr`]`(i)` (documentation addresses, never sent to). A
//! partition is silent, as a dropped link in a real outage: segments wait and arrive after
//! the heal (TCP retransmission), connects time out after 5 s as the event loop's do.
//! The test itself plays clients: datagrams with [`Net::datagram`], TCP connections with
//! [`Net::open`] / [`Net::write`] / [`Net::read`].

mod host;
pub mod pipe;
mod rng;
mod wires;

pub use host::HostSpec;
pub use rng::Rng;

use crate::core::node::{Node, NodeAction};
use crate::core::tcp::ConnId;
use crate::core::Now;
use host::Host;
use pipe::Stream;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use wires::{Agenda, End, Event, Pipe, Wires};

/// Index of a host in the network (in the order added).
pub type HostId = usize;

/// A connection end the test drives (a client, or a server the test plays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtConn(u64);

/// A connect that does not complete within this long is abandoned, as the event loop's
/// (`src/net/tcp.rs`), in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Rounds of work at one instant before time moves on (a bound, not a target).
const SETTLE_ROUNDS: usize = 10_000;
/// Bytes handed to a node per read, as the event loop's read buffer.
const READ_CHUNK: usize = 64 * 1024;

/// The well-known UDP/TCP port of every host.
pub const PORT: u16 = 4747;

/// Where host `i` listens: 192.0.2.(i+1), then 198.51.100.x and 203.0.113.x (documentation
/// ranges, RFC 5737); at most 762 hosts.
///
/// # Panics
/// For `i >= 762`.
pub fn host_addr(i: HostId) -> SocketAddr {
    let (net, n) = match i {
        0..=253 => ([192, 0, 2], i),
        254..=507 => ([198, 51, 100], i - 254),
        508..=761 => ([203, 0, 113], i - 508),
        _ => panic!("at most 762 hosts"),
    };
    let ip = Ipv4Addr::new(net[0], net[1], net[2], (n + 1) as u8);
    SocketAddr::new(IpAddr::V4(ip), PORT)
}

/// One-way link delays, milliseconds: a range for every link, and ranges of their own for
/// some pairs of hosts.
#[derive(Debug)]
struct Delays {
    default: (u64, u64),
    links: BTreeMap<(HostId, HostId), (u64, u64)>,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            default: (1, 5),
            links: BTreeMap::new(),
        }
    }
}

impl Delays {
    /// The delay range between hosts `a` and `b`.
    fn between(&self, a: HostId, b: HostId) -> (u64, u64) {
        self.links
            .get(&(a.min(b), a.max(b)))
            .copied()
            .unwrap_or(self.default)
    }
}

/// The network: hosts, pipes, cuts and the virtual clock.
pub struct Net {
    now_ms: u64,
    unix_base: u64,
    rng: Rng,
    delays: Delays,
    hosts: Vec<Host>,
    wires: Wires,
    agenda: Agenda,
    cuts: BTreeSet<(HostId, HostId)>,
    /// Datagrams sent to addresses that are not hosts (the test's clients), in order.
    inboxes: BTreeMap<SocketAddr, VecDeque<Vec<u8>>>,
    /// Bytes that arrived from one host at another, per (sender, receiver), for figures.
    link_bytes: BTreeMap<(HostId, HostId), u64>,
}

impl Net {
    /// An empty network whose schedule follows from `seed`; its Unix clock starts at
    /// `unix_base` seconds (give the real time when clients bring real certificates, whose
    /// validity starts now). Link delays are 1 to 5 ms per segment.
    pub fn new(seed: u64, unix_base: u64) -> Self {
        Net {
            now_ms: 0,
            unix_base,
            rng: Rng::new(seed),
            delays: Delays::default(),
            hosts: Vec::new(),
            wires: Wires::new(),
            agenda: Agenda::default(),
            cuts: BTreeSet::new(),
            inboxes: BTreeMap::new(),
            link_bytes: BTreeMap::new(),
        }
    }

    /// Sets the one-way delay of every later segment to `lo..=hi` milliseconds (drawn from
    /// the seed), on every link without a delay of its own ([`Self::set_link_delay`]).
    pub fn set_delay(&mut self, lo_ms: u64, hi_ms: u64) {
        self.delays.default = (lo_ms, hi_ms.max(lo_ms));
    }

    /// Sets the one-way delay of later segments between hosts `a` and `b` (both ways) to
    /// `lo..=hi` milliseconds: a slow or distant link.
    pub fn set_link_delay(&mut self, a: HostId, b: HostId, lo_ms: u64, hi_ms: u64) {
        self.delays
            .links
            .insert((a.min(b), a.max(b)), (lo_ms, hi_ms.max(lo_ms)));
    }

    /// A one-way delay drawn for a segment between `a` and `b`, in milliseconds.
    fn delay(&mut self, a: End, b: End) -> u64 {
        let (lo, hi) = match (a, b) {
            (End::Host(x, _), End::Host(y, _)) => self.delays.between(x, y),
            _ => self.delays.default,
        };
        self.rng.range(lo, hi)
    }

    /// The virtual time now.
    pub fn now(&self) -> Now {
        Now {
            mono_ms: self.now_ms,
            unix_s: self.unix_base + self.now_ms / 1000,
        }
    }

    /// Adds a host started as `spec` says; returns its id. Its address is
    /// [`host_addr`] of that id.
    pub fn add_host(&mut self, spec: HostSpec) -> HostId {
        let id = self.hosts.len();
        let seed = self.rng.bytes32();
        let host = Host::start(spec, host_addr(id), seed, self.now());
        self.hosts.push(host);
        id
    }

    /// The node of host `h` (read-only: its planes, counters, clock and node list).
    ///
    /// # Panics
    /// When `h` is not a host.
    pub fn node(&self, h: HostId) -> &Node {
        &self.hosts[h].node
    }

    /// Host `h`'s contacts: `(count, SHA-512 of their canonical form)` as `status` reports
    /// them (docs/PROTOCOL.md §8.6).
    pub fn contacts_digest(&mut self, h: HostId) -> (u64, Vec<u8>) {
        self.hosts[h].contacts_digest()
    }

    /// Every contact host `h` stores, in `(username, contact)` order.
    pub fn contacts(&mut self, h: HostId) -> Vec<crate::store::Contact> {
        self.hosts[h].contacts()
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True when there is no host.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Cuts the link between hosts `a` and `b`: segments wait, connects time out.
    pub fn cut(&mut self, a: HostId, b: HostId) {
        self.cuts.insert((a.min(b), a.max(b)));
    }

    /// Heals the link between `a` and `b`: what waited arrives at its next retransmission
    /// (see [`pipe::Stream::heal`]).
    pub fn heal(&mut self, a: HostId, b: HostId) {
        if !self.cuts.remove(&(a.min(b), a.max(b))) {
            return;
        }
        let now = self.now_ms;
        let (lo, hi) = self.delays.between(a, b);
        for p in self.wires.pipes.values_mut() {
            let between = matches!(
                (p.ends[0], p.ends[1]),
                (End::Host(x, _), End::Host(y, _)) if (x, y) == (a, b) || (x, y) == (b, a)
            );
            if between {
                for s in &mut p.streams {
                    let delay = self.rng.range(lo, hi);
                    s.heal(now, delay);
                }
            }
        }
    }

    /// Cuts every link between a host of `left` and a host of `right`.
    pub fn partition(&mut self, left: &[HostId], right: &[HostId]) {
        for &a in left {
            for &b in right {
                self.cut(a, b);
            }
        }
    }

    /// Heals every cut.
    pub fn heal_all(&mut self) {
        let cuts: Vec<(HostId, HostId)> = self.cuts.iter().copied().collect();
        for (a, b) in cuts {
            self.heal(a, b);
        }
    }

    /// Bytes that arrived over connections from a host of `left` at a host of `right` and
    /// back, since the start: what crossed the line between the two groups (nothing while
    /// they are partitioned; retransmissions count once).
    pub fn bytes_between(&self, left: &[HostId], right: &[HostId]) -> u64 {
        self.link_bytes
            .iter()
            .filter(|((a, b), _)| {
                (left.contains(a) && right.contains(b)) || (right.contains(a) && left.contains(b))
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Bytes that arrived over connections from a host of `from` at a host of `to`, since
    /// the start: one direction of [`Self::bytes_between`] (what `to` received).
    pub fn bytes_sent(&self, from: &[HostId], to: &[HostId]) -> u64 {
        self.link_bytes
            .iter()
            .filter(|((a, b), _)| from.contains(a) && to.contains(b))
            .map(|(_, n)| n)
            .sum()
    }

    fn is_cut(&self, a: HostId, b: HostId) -> bool {
        self.cuts.contains(&(a.min(b), a.max(b)))
    }

    fn pipe_cut(&self, p: &Pipe) -> bool {
        match (p.ends[0], p.ends[1]) {
            (End::Host(a, _), End::Host(b, _)) => self.is_cut(a, b),
            _ => false,
        }
    }

    /// Runs the network for `ms` milliseconds of virtual time.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now_ms + ms;
        loop {
            self.settle();
            match self.next_time() {
                Some(t) if t <= until => self.now_ms = t.max(self.now_ms + 1),
                _ => {
                    self.now_ms = until;
                    self.settle();
                    return;
                }
            }
        }
    }

    /// Runs until `done(self)` holds, checking after every step of time, or until `ms`
    /// milliseconds have passed; returns the virtual milliseconds it took, or `None` when
    /// it did not happen in time.
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&mut Net) -> bool) -> Option<u64> {
        let start = self.now_ms;
        let until = start + ms;
        loop {
            self.settle();
            if done(self) {
                return Some(self.now_ms - start);
            }
            match self.next_time() {
                Some(t) if t <= until => self.now_ms = t.max(self.now_ms + 1),
                _ => {
                    self.now_ms = until;
                    self.settle();
                    return done(self).then_some(self.now_ms - start);
                }
            }
        }
    }

    /// The next time something is due: an event, an arrival on a link that is not cut, or
    /// a node's timer.
    fn next_time(&self) -> Option<u64> {
        let events = self.agenda.next_time();
        let arrivals = self
            .wires
            .pipes
            .values()
            .filter(|p| !self.pipe_cut(p))
            .flat_map(|p| p.streams.iter().filter_map(Stream::next_arrival));
        let timers = self.hosts.iter().filter_map(|h| h.node.poll_timeout());
        events.into_iter().chain(arrivals).chain(timers).min()
    }

    /// Does everything due now, until nothing more happens.
    fn settle(&mut self) {
        for _ in 0..SETTLE_ROUNDS {
            let mut progress = self.deliver();
            progress |= self.fire_events();
            for h in 0..self.hosts.len() {
                progress |= self.step(h);
            }
            if !progress {
                return;
            }
        }
        tracing::warn!(
            now_ms = self.now_ms,
            "sim: work at one instant did not settle"
        );
    }

    /// Moves arrived segments into the readers' buffers (links not cut), counting the bytes
    /// that arrive from one host at another.
    fn deliver(&mut self) -> bool {
        let now = self.now_ms;
        let mut progress = false;
        let ids: Vec<u64> = self.wires.pipes.keys().copied().collect();
        for id in ids {
            let Some(p) = self.wires.pipes.get(&id) else {
                continue;
            };
            if self.pipe_cut(p) {
                continue;
            }
            let Some(p) = self.wires.pipes.get_mut(&id) else {
                continue;
            };
            for side in 0..2 {
                let (bytes, fin) = p.streams[side].deliver(now);
                progress |= bytes > 0 || fin;
                if let (End::Host(a, _), End::Host(b, _)) = (p.ends[side], p.ends[1 - side]) {
                    if bytes > 0 {
                        *self.link_bytes.entry((a, b)).or_default() += bytes as u64;
                    }
                }
            }
        }
        progress
    }

    fn schedule(&mut self, at_ms: u64, ev: Event) {
        self.agenda.push(at_ms, ev);
    }

    fn fire_events(&mut self) -> bool {
        let mut fired = false;
        while let Some(ev) = self.agenda.pop_due(self.now_ms) {
            fired = true;
            match ev {
                Event::Established { from, peer, to } => self.establish(from, peer, to),
                Event::ConnectFailed { host, peer } => {
                    let now = self.now();
                    self.hosts[host].node.handle_connect_failed(now, peer);
                }
            }
        }
        fired
    }

    /// A connect arrives: both ends get their connection ids; a cut or a stopped host
    /// makes it fail instead.
    fn establish(&mut self, from: HostId, peer: usize, to: HostId) {
        let now = self.now();
        if self.is_cut(from, to) {
            self.schedule(
                self.now_ms + CONNECT_TIMEOUT_MS,
                Event::ConnectFailed { host: from, peer },
            );
            return;
        }
        let a = self.hosts[from].new_conn();
        let b = self.hosts[to].new_conn();
        let port = 32768 + (self.rng.next_u64() % 28000) as u16;
        let src = SocketAddr::new(self.hosts[from].addr.ip(), port);
        self.wires.add(End::Host(from, a), End::Host(to, b));
        self.hosts[to].node.handle_accept(now, b, src);
        self.hosts[from].node.handle_connected(now, peer, a);
    }

    /// One turn of host `h`: timers, reads, routing and the store, actions, writes.
    fn step(&mut self, h: HostId) -> bool {
        let now = self.now();
        self.hosts[h].node.handle_timeout(now);
        let mut progress = self.feed(h);
        let (worked, datagrams) = self.hosts[h].turn(now);
        progress |= worked;
        for (dst, bytes) in datagrams {
            self.post(dst, bytes);
        }
        progress |= self.act(h);
        progress |= self.flush(h);
        progress
    }

    /// Hands host `h` what arrived on its connections (within each read budget), and the
    /// closes that follow the last byte.
    fn feed(&mut self, h: HostId) -> bool {
        let now = self.now();
        let mine: Vec<(End, u64, usize)> = self
            .wires
            .ends
            .range(End::Host(h, 0)..=End::Host(h, ConnId::MAX))
            .map(|(&e, &(p, side))| (e, p, side))
            .collect();
        let mut progress = false;
        for (end, pid, side) in mine {
            let End::Host(_, conn) = end else { continue };
            let Some(pipe) = self.wires.pipes.get_mut(&pid) else {
                continue;
            };
            let inbound = &mut pipe.streams[1 - side];
            while inbound.unread() > 0 {
                let budget = self.hosts[h].node.read_budget(conn).min(READ_CHUNK);
                if budget == 0 {
                    break;
                }
                let bytes = inbound.read(budget);
                self.hosts[h].node.handle_data(now, conn, &bytes);
                progress = true;
            }
            if inbound.finished() {
                self.hosts[h].node.handle_closed(now, conn);
                self.close_end(end);
                progress = true;
            }
        }
        progress
    }

    /// Carries out host `h`'s connects and closes.
    fn act(&mut self, h: HostId) -> bool {
        let now = self.now();
        let mut progress = false;
        while let Some(action) = self.hosts[h].node.poll_action() {
            progress = true;
            match action {
                NodeAction::Connect { peer, addr, .. } => self.connect(h, peer, addr),
                NodeAction::Close(conn) => {
                    self.close_end(End::Host(h, conn));
                    self.hosts[h].node.handle_closed(now, conn);
                }
            }
        }
        progress
    }

    fn connect(&mut self, from: HostId, peer: usize, addr: SocketAddr) {
        let target = self.hosts.iter().position(|h| h.addr == addr);
        let (lo, hi) = self.delays.between(from, target.unwrap_or(from));
        let rtt = 2 * self.rng.range(lo, hi);
        match target {
            Some(to) if to != from && self.is_cut(from, to) => self.schedule(
                self.now_ms + CONNECT_TIMEOUT_MS,
                Event::ConnectFailed { host: from, peer },
            ),
            Some(to) if to != from => {
                self.schedule(self.now_ms + rtt, Event::Established { from, peer, to })
            }
            // Nobody listens there: refused after a round trip.
            _ => self.schedule(self.now_ms + rtt, Event::ConnectFailed { host: from, peer }),
        }
    }

    /// Closes `end`: its sending side closes after what is in flight; it reads no more.
    fn close_end(&mut self, end: End) {
        let Some((pid, side)) = self.wires.ends.remove(&end) else {
            return;
        };
        let other = match self.wires.pipes.get(&pid) {
            Some(p) => p.ends[1 - side],
            None => return,
        };
        let at = self.now_ms + self.delay(end, other);
        if let Some(p) = self.wires.pipes.get_mut(&pid) {
            p.open[side] = false;
            p.streams[side].close(at);
            if !p.open[0] && !p.open[1] {
                self.wires.pipes.remove(&pid);
            }
        }
    }

    /// Takes what host `h` has to write on each connection, within each pipe's window.
    fn flush(&mut self, h: HostId) -> bool {
        let now = self.now();
        let mine: Vec<(ConnId, u64, usize)> = self
            .wires
            .ends
            .range(End::Host(h, 0)..=End::Host(h, ConnId::MAX))
            .filter_map(|(&e, &(p, side))| match e {
                End::Host(_, c) => Some((c, p, side)),
                End::Ext(_) => None,
            })
            .collect();
        let mut progress = false;
        for (conn, pid, side) in mine {
            let Some(other) = self.wires.pipes.get(&pid).map(|p| p.ends[1 - side]) else {
                continue;
            };
            let delay = self.delay(End::Host(h, conn), other);
            let Some(pipe) = self.wires.pipes.get_mut(&pid) else {
                continue;
            };
            let node = &mut self.hosts[h].node;
            let out = node.output(conn);
            let n = out.len().min(pipe.streams[side].room());
            if n == 0 {
                continue;
            }
            pipe.streams[side].send(self.now_ms, self.now_ms + delay, &out[..n]);
            node.consumed(now, conn, n);
            progress = true;
        }
        progress
    }

    /// A datagram from a node: to a client's inbox (nodes never send each other UDP).
    fn post(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        self.inboxes.entry(dst).or_default().push_back(bytes);
    }

    /// Sends a datagram from client address `from` to host `h` now; returns the replies
    /// to `from` it produced (other datagrams, such as punch requests to other clients, wait
    /// in their inboxes: [`Self::take_inbox`]).
    pub fn datagram(&mut self, h: HostId, from: SocketAddr, bytes: &[u8]) -> Vec<Vec<u8>> {
        let now = self.now();
        let mut out = Vec::new();
        self.hosts[h]
            .node
            .handle_datagram(now, from, bytes, &mut |dst, b| out.push((dst, b.to_vec())));
        let mut replies = Vec::new();
        for (dst, b) in out {
            if dst == from {
                replies.push(b);
            } else {
                self.post(dst, b);
            }
        }
        self.settle();
        replies
    }

    /// Takes every datagram waiting for client address `addr`, oldest first.
    pub fn take_inbox(&mut self, addr: SocketAddr) -> Vec<Vec<u8>> {
        self.inboxes
            .remove(&addr)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Opens a TCP connection from `from` (a client, or a server the test plays) to host `h`;
    /// the host accepts it at once.
    pub fn open(&mut self, h: HostId, from: SocketAddr) -> ExtConn {
        let now = self.now();
        let ext = ExtConn(self.wires.next);
        let conn = self.hosts[h].new_conn();
        self.wires.add(End::Ext(ext.0), End::Host(h, conn));
        self.hosts[h].node.handle_accept(now, conn, from);
        ext
    }

    /// Writes `bytes` on `c` (they arrive after the link delay).
    pub fn write(&mut self, c: ExtConn, bytes: &[u8]) {
        let (lo, hi) = self.delays.default;
        let delay = self.rng.range(lo, hi);
        if let Some(&(pid, side)) = self.wires.ends.get(&End::Ext(c.0)) {
            if let Some(p) = self.wires.pipes.get_mut(&pid) {
                p.streams[side].send(self.now_ms, self.now_ms + delay, bytes);
            }
        }
    }

    /// Takes every byte that has arrived on `c`.
    pub fn read(&mut self, c: ExtConn) -> Vec<u8> {
        match self.wires.ends.get(&End::Ext(c.0)) {
            Some(&(pid, side)) => self
                .wires
                .pipes
                .get_mut(&pid)
                .map(|p| p.streams[1 - side].read(usize::MAX))
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// True when the host closed `c` and every byte before the close was read.
    pub fn is_closed(&self, c: ExtConn) -> bool {
        match self.wires.ends.get(&End::Ext(c.0)) {
            Some(&(pid, side)) => self
                .wires
                .pipes
                .get(&pid)
                .map_or(true, |p| p.streams[1 - side].finished()),
            None => true,
        }
    }

    /// Closes `c` from the test's side.
    pub fn close(&mut self, c: ExtConn) {
        self.close_end(End::Ext(c.0));
    }
}
