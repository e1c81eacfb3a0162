//! Federation of the fingerprint directory, several I/O-free cores wired together in memory
//! on a virtual clock (docs/PROTOCOL.md §8.16): no sockets, no sleeps.
//!
//! A [`Fed`] holds up to five [`UdpCore`]s named A..E joined in a line A-B-C-D-E. What one
//! core puts in its peer outbox goes to each of its neighbours only, through one FIFO of
//! messages in flight (so each link keeps its order, as TCP does); `WantDirectory` is
//! answered at once with the neighbours' `directory_page`s. Clients build real, signed
//! registrations (cookie round trip) as in tests/it/core_scenarios/, and every datagram a
//! core sends is decoded with the wire module.
//!
//! This file holds the harness (clients, decoded datagrams, the federation of cores); the
//! tests are in `fixtures`, `propagation`, `forged_records`, `forwards` and
//! `directory_pages`.

mod directory_pages;
mod fixtures;
mod forged_records;
mod forwards;
mod propagation;

use rendezvous::core::udp::{UdpConfig, UdpCore, UdpIdentity};
use rendezvous::core::{Now, PeerOut, PeerRecordError};
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::tcp::dir::{
    DirRecord, RecordBody, CMD_DIR_RECORD, FRAME_HEADER_LEN, MAX_DIR_RECORD_LEN,
};
use rendezvous::wire::udp::root::{signed_message, PARAM_FROM_SERVER, PARAM_TO_SERVER};
use rendezvous::wire::udp::{canonical_addr, LookupStatus, Payload, ServerEvent};
use rendezvous::wire::{Fingerprint, PacketType, Root, RootHeader};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the monotonic clock starts (any origin will do).
const MONO0: u64 = 1_000_000;
const NAMES: [&str; 5] = ["A", "B", "C", "D", "E"];

/// The alias of server `i` (for messages).
fn name(i: usize) -> &'static str {
    NAMES[i]
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// Unix seconds now: the generated certificates are valid from a day before real time.
fn unix0() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------
// Clients and decoded datagrams
// ---------------------------------------------------------------------------------------

/// A client: an Ed25519 identity at a public (post-NAT) address.
struct Client {
    id: Identity,
    addr: SocketAddr,
}

impl Client {
    fn new(at: &str) -> Client {
        Client {
            id: Identity::generate(KeyAlgorithm::Ed25519, "federated").expect("identity"),
            addr: addr(at),
        }
    }

    fn fp(&self) -> Fingerprint {
        self.id.fingerprint()
    }

    fn at(&self, at: &str) -> Client {
        Client {
            id: self.id.clone(),
            addr: addr(at),
        }
    }

    fn packet(&self, ty: PacketType, sig: &[u8], ts: u64, payload: &[u8]) -> Vec<u8> {
        RootHeader {
            params: PARAM_TO_SERVER,
            shift_len: None,
            packet_type: ty,
            signature: sig,
            timestamp: ts,
        }
        .to_vec(payload)
        .expect("emit root")
    }

    fn signed(&self, ty: PacketType, ts: u64, payload: &[u8]) -> Vec<u8> {
        let sig = self.id.sign(&signed_message(ts, payload));
        self.packet(ty, &sig, ts, payload)
    }

    fn register_payload(&self, cookie: Option<&[u8; 16]>) -> Vec<u8> {
        let cert = self.id.cert_der();
        let mut p = u16::try_from(cert.len())
            .expect("cert")
            .to_be_bytes()
            .to_vec();
        p.extend_from_slice(cert);
        if let Some(c) = cookie {
            p.extend_from_slice(c);
        }
        p
    }

    fn keepalive(&self) -> Vec<u8> {
        self.packet(PacketType::Keepalive, &[], 0, &[])
    }

    fn lookup(&self, target: Fingerprint) -> Vec<u8> {
        self.packet(PacketType::Lookup, &[], 0, &target.0)
    }

    fn relay(&self, ts: u64, dest: Fingerprint, event: &[u8]) -> Vec<u8> {
        let mut p = dest.0.to_vec();
        p.extend_from_slice(event);
        self.signed(PacketType::Relay, ts, &p)
    }
}

/// What a server datagram says (owned, for comparisons).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ok,
    Cookie([u8; 16]),
    Punch {
        peer: Fingerprint,
        addr: SocketAddr,
    },
    Relay {
        from: Fingerprint,
        event: Vec<u8>,
    },
    Answer {
        target: Fingerprint,
        status: LookupStatus,
        home: String,
    },
    Error(u16),
}

fn decode(bytes: &[u8]) -> Reply {
    let root = Root::parse(bytes).expect("server root");
    assert_eq!(root.params, PARAM_FROM_SERVER, "plain, from a server");
    assert!(root.signature.is_empty());
    match Payload::parse(root.packet_type, root.payload).expect("server payload") {
        Payload::Ok(_) => Reply::Ok,
        Payload::Cookie(c) => Reply::Cookie(c),
        Payload::ServerEvent(ServerEvent::Punch { peer, addr }) => Reply::Punch { peer, addr },
        Payload::Relay(r) => Reply::Relay {
            from: r.peer,
            event: r.event.to_vec(),
        },
        Payload::LookupAnswer(a) => Reply::Answer {
            target: a.target,
            status: a.status,
            home: a.home.to_string(),
        },
        Payload::Error(e) => Reply::Error(e.status),
        other => panic!("unexpected server packet {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The federation harness
// ---------------------------------------------------------------------------------------

enum Msg {
    Record(Vec<u8>),
    Forward(Vec<u8>),
}

/// Servers in a line on one virtual clock, with the peer links simulated in memory.
struct Fed {
    nodes: Vec<UdpCore>,
    now: Now,
    unix0: u64,
    /// Messages in flight: (from, to, message), delivered in order.
    wire: VecDeque<(usize, usize, Msg)>,
    /// Partitioned servers: their outbox is lost and nothing reaches them.
    cut: HashSet<usize>,
    /// Datagrams sent by a core while handling peer input: (server, destination, bytes).
    datagrams: Vec<(usize, SocketAddr, Vec<u8>)>,
    /// Crossings per (lower end, upper end, message with its hops byte zeroed).
    crossings: HashMap<(usize, usize, Vec<u8>), usize>,
    /// Errors the cores returned for peer input.
    errors: Vec<(usize, PeerRecordError)>,
    /// How often each server asked for the directory.
    want: Vec<usize>,
}

impl Fed {
    /// `n` servers in a line, named A.., with the default config.
    fn line(n: usize) -> Fed {
        Fed::line_with(n, |_| UdpConfig::default())
    }

    /// `n` servers in a line; `cfg(i)` gives server i's config (its alias, and its node uid
    /// 16 bytes of the alias's letter, are set here, so uids order as the aliases do).
    fn line_with(n: usize, cfg: impl Fn(usize) -> UdpConfig) -> Fed {
        let unix0 = unix0();
        let now = Now {
            mono_ms: MONO0,
            unix_s: unix0,
        };
        let nodes = (0..n)
            .map(|i| {
                let c = UdpConfig {
                    identity: UdpIdentity {
                        alias: NAMES[i].to_string(),
                        node_uid: Some(uid_of(NAMES[i])),
                    },
                    ..cfg(i)
                };
                UdpCore::new(c, [i as u8 + 1; 32], now)
            })
            .collect();
        Fed {
            nodes,
            now,
            unix0,
            wire: VecDeque::new(),
            cut: HashSet::new(),
            datagrams: Vec::new(),
            crossings: HashMap::new(),
            errors: Vec::new(),
            want: vec![0; n],
        }
    }

    fn neighbours(&self, i: usize) -> Vec<usize> {
        let mut v = Vec::new();
        if i > 0 {
            v.push(i - 1);
        }
        if i + 1 < self.nodes.len() {
            v.push(i + 1);
        }
        v.retain(|j| !self.cut.contains(j));
        v
    }

    /// Moves every outbox item onto the links (or answers a directory request).
    fn collect(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(item) = self.nodes[i].poll_peer_out() {
                if self.cut.contains(&i) {
                    continue;
                }
                match item {
                    PeerOut::Record(b) => {
                        for j in self.neighbours(i) {
                            self.wire.push_back((i, j, Msg::Record(b.clone())));
                        }
                    }
                    PeerOut::Forward(b) => {
                        for j in self.neighbours(i) {
                            self.wire.push_back((i, j, Msg::Forward(b.clone())));
                        }
                    }
                    PeerOut::WantDirectory => {
                        self.want[i] += 1;
                        for j in self.neighbours(i) {
                            self.sync(j, i);
                        }
                    }
                }
            }
        }
    }

    /// Server `to` applies the whole directory of server `from`, page by page.
    fn sync(&mut self, from: usize, to: usize) {
        let now = self.now;
        for (body, _) in pages(&self.nodes[from], now, 3) {
            if let Err(e) = self.nodes[to].apply_peer_record(now, &body) {
                self.errors.push((to, e));
            }
        }
    }

    /// Delivers messages until nothing is in flight and every outbox is empty.
    fn pump(&mut self) {
        for _ in 0..1_000_000 {
            self.collect();
            let Some((from, to, msg)) = self.wire.pop_front() else {
                return;
            };
            let (tag, body) = match &msg {
                Msg::Record(b) => (0u8, b),
                Msg::Forward(b) => (1u8, b),
            };
            let mut key = vec![tag];
            key.extend_from_slice(body);
            key[2] = 0; // the hops byte
            *self
                .crossings
                .entry((from.min(to), from.max(to), key))
                .or_default() += 1;
            let now = self.now;
            let r = match msg {
                Msg::Record(b) => self.nodes[to].apply_peer_record(now, &b).map(|_| ()),
                Msg::Forward(b) => {
                    let mut sent = Vec::new();
                    let r = self.nodes[to].handle_forward(now, &b, &mut |d, bytes| {
                        sent.push((to, d, bytes.to_vec()))
                    });
                    self.datagrams.extend(sent);
                    r
                }
            };
            if let Err(e) = r {
                self.errors.push((to, e));
            }
        }
        panic!("the peers never went quiet");
    }

    /// Moves the clock forward by `ms` in steps of one second, running every due timer and
    /// delivering what the cores say to each other after each step.
    fn advance(&mut self, ms: u64) {
        let end = self.now.mono_ms + ms;
        while self.now.mono_ms < end {
            self.now.mono_ms = (self.now.mono_ms + 1000).min(end);
            self.now.unix_s = self.unix0 + (self.now.mono_ms - MONO0) / 1000;
            for i in 0..self.nodes.len() {
                self.tick(i);
            }
            self.pump();
        }
    }

    /// Sets the clock to `ms` after the start, running no timer.
    fn set_clock(&mut self, ms: u64) {
        self.now.mono_ms = MONO0 + ms;
        self.now.unix_s = self.unix0 + ms / 1000;
    }

    /// Runs server `i`'s timers if due (nothing delivered).
    fn tick(&mut self, i: usize) {
        let s = &mut self.nodes[i];
        if s.poll_timeout().is_some_and(|t| t <= self.now.mono_ms) {
            s.handle_timeout(self.now);
        }
        assert!(!s.poll_timeout().is_some_and(|t| t <= self.now.mono_ms));
    }

    /// One datagram from `src` to server `i`; returns the datagrams it sent (not pumped).
    fn send(&mut self, i: usize, src: SocketAddr, bytes: &[u8]) -> Vec<(SocketAddr, Reply)> {
        let mut out = Vec::new();
        self.nodes[i].handle_datagram(self.now, src, bytes, &mut |d, b| out.push((d, decode(b))));
        out
    }

    /// The cookie round trip and the registration of `c` at server `i` (not pumped);
    /// returns what followed the OK.
    fn register_only(&mut self, i: usize, c: &Client) -> Vec<(SocketAddr, Reply)> {
        let ts = self.now.unix_s;
        let first = c.signed(PacketType::Register, ts, &c.register_payload(None));
        let got = self.send(i, c.addr, &first);
        let [(_, Reply::Cookie(cookie))] = got[..] else {
            panic!("expected a cookie challenge, got {got:?}");
        };
        let p = c.register_payload(Some(&cookie));
        let mut got = self.send(i, c.addr, &c.signed(PacketType::Register, ts, &p));
        assert_eq!(
            got.first(),
            Some(&(canonical_addr(c.addr), Reply::Ok)),
            "{got:?}"
        );
        got.remove(0);
        got
    }

    /// Registers `c` at server `i` and lets the federation settle.
    fn register(&mut self, i: usize, c: &Client) {
        let rest = self.register_only(i, c);
        assert!(rest.is_empty(), "{rest:?}");
        self.pump();
    }

    fn keepalive(&mut self, i: usize, c: &Client) {
        let got = self.send(i, c.addr, &c.keepalive());
        assert!(got.is_empty(), "{got:?}");
    }

    /// Where server `i` says `fp` is: `(address, home alias)`.
    fn locate(&self, i: usize, fp: &Fingerprint) -> Option<(SocketAddr, String)> {
        let s = &self.nodes[i];
        if let Some(c) = s.client(fp, self.now) {
            return Some((c.addr, s.config().identity.alias.clone()));
        }
        s.remote(fp, self.now).map(|r| (r.addr, r.home.to_string()))
    }

    fn digests(&self) -> Vec<(u64, [u8; 64])> {
        self.nodes.iter().map(|s| s.directory_digest()).collect()
    }

    fn assert_converged(&self) {
        let d = self.digests();
        assert!(
            d.iter().all(|x| *x == d[0]),
            "digests differ: {:?}",
            counts(&d)
        );
    }

    fn take_datagrams(&mut self) -> Vec<(usize, SocketAddr, Reply)> {
        self.datagrams
            .drain(..)
            .map(|(i, d, b)| (i, d, decode(&b)))
            .collect()
    }
}

fn counts(d: &[(u64, [u8; 64])]) -> Vec<u64> {
    d.iter().map(|x| x.0).collect()
}

/// All of `s`'s directory, `max` records per page: each record body with its fingerprint,
/// checking the frames and the order as it goes.
fn pages(s: &UdpCore, now: Now, max: usize) -> Vec<(Vec<u8>, Fingerprint)> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let mut buf = Vec::new();
        let page = s.directory_page(now, after, max, &mut buf);
        let (last, more) = (page.last, page.more);
        let mut rest = &buf[..];
        let mut n = 0;
        while !rest.is_empty() {
            assert_eq!(rest[0], CMD_DIR_RECORD);
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            assert!(len <= MAX_DIR_RECORD_LEN);
            let body = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
            let rec = DirRecord::parse(body).expect("page record");
            assert!(matches!(rec.body, RecordBody::Registration(_)));
            if let Some((_, prev)) = all.last() {
                assert!(rec.fingerprint > *prev, "pages out of order");
            }
            all.push((body.to_vec(), rec.fingerprint));
            rest = &rest[FRAME_HEADER_LEN + len..];
            n += 1;
        }
        assert!(n <= max);
        assert_eq!(page.records, n, "the page counts the frames it wrote");
        assert_eq!(last, all.last().map(|x| x.1).filter(|_| n > 0));
        if !more {
            return all;
        }
        assert_eq!(n, max, "a page short of max must be the last");
        after = last;
    }
}

/// Registration record bodies from a lone server's outbox (other items dropped).
fn drain_records(s: &mut UdpCore) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Some(item) = s.poll_peer_out() {
        if let PeerOut::Record(b) = item {
            v.push(b);
        }
    }
    v
}

/// A lone server named `alias` on the clock of `fed`.
/// The node uid the tests give the server named `alias`: its first byte, 16 times.
fn uid_of(alias: &str) -> [u8; 16] {
    [alias.as_bytes()[0]; 16]
}

fn lone(fed: &Fed, alias: &str) -> UdpCore {
    UdpCore::new(
        UdpConfig {
            identity: UdpIdentity {
                alias: alias.into(),
                node_uid: Some(uid_of(alias)),
            },
            ..UdpConfig::default()
        },
        [0xf0; 32],
        fed.now,
    )
}

/// The state that no refused input may change.
fn state(s: &UdpCore) -> (usize, usize, (u64, [u8; 64])) {
    (s.online(), s.remote_online(), s.directory_digest())
}
