//! Federation of the fingerprint directory, several I/O-free cores wired together in memory
//! on a virtual clock (docs/PROTOCOL.md §8.16): no sockets, no sleeps.
//!
//! A [`Fed`] holds up to five [`UdpCore`]s named A..E joined in a line A-B-C-D-E. What one
//! core puts in its peer outbox goes to each of its neighbours only, through one FIFO of
//! messages in flight (so each link keeps its order, as TCP does); `WantDirectory` is
//! answered at once with the neighbours' `directory_page`s. Clients build real, signed
//! registrations (cookie round trip) as in tests/it/core_scenarios.rs, and every datagram a
//! core sends is decoded with the wire module.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rendezvous::core::udp::{
    DirectoryPage, FederationConfig, UdpConfig, UdpCore, UdpIdentity, UdpTimers,
};
use rendezvous::core::{Now, PeerOut, PeerRecordError};
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::status;
use rendezvous::wire::tcp::dir::{
    DirRecord, Forward, ForwardBody, RecordBody, Registration, CMD_DIR_RECORD, FRAME_HEADER_LEN,
    MAX_DIR_RECORD_LEN,
};
use rendezvous::wire::udp::root::{signed_message, PARAM_FROM_SERVER, PARAM_TO_SERVER};
use rendezvous::wire::udp::{canonical_addr, LookupStatus, Payload, ServerEvent};
use rendezvous::wire::{Fingerprint, PacketType, Root, RootHeader};

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

// ---------------------------------------------------------------------------------------
// Byte fixtures
// ---------------------------------------------------------------------------------------

#[test]
fn registration_record_bytes() {
    let mut fed = Fed::line(1);
    let x = Client::new("192.0.2.10:40000");
    let ts = fed.now.unix_s;
    let first = x.signed(PacketType::Register, ts, &x.register_payload(None));
    let got = fed.send(0, x.addr, &first);
    let [(_, Reply::Cookie(cookie))] = got[..] else {
        panic!("{got:?}")
    };
    let payload = x.register_payload(Some(&cookie));
    let sig = x.id.sign(&signed_message(ts, &payload));
    let reg = x.packet(PacketType::Register, &sig, ts, &payload);
    assert_eq!(fed.send(0, x.addr, &reg)[0].1, Reply::Ok);
    let records = drain_records(&mut fed.nodes[0]);
    assert_eq!(records.len(), 1, "one record per registration");

    // kind 1, hops 0, fingerprint, timestamp, age 0,
    let mut want = vec![1, 0];
    want.extend_from_slice(&x.fp().0);
    want.extend_from_slice(&ts.to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0]);
    // family 4, 192.0.2.10 and 12 zero bytes, port 40000,
    want.extend_from_slice(&[4, 192, 0, 2, 10]);
    want.extend_from_slice(&[0; 12]);
    want.extend_from_slice(&[0x9c, 0x40]);
    // home uid (A's), home alias "A", the client's signature (Ed25519: deterministic) and
    // payload as received.
    want.extend_from_slice(&[b'A'; 16]);
    want.extend_from_slice(&[1, b'A']);
    want.extend_from_slice(&u16::try_from(sig.len()).unwrap().to_be_bytes());
    want.extend_from_slice(&sig);
    want.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    want.extend_from_slice(&payload);
    assert_eq!(records[0], want);

    // The refresh and expiry records of the same client: 46 bytes, fixed layout.
    fed.set_clock(10_000);
    fed.keepalive(0, &x);
    fed.set_clock(25_000); // the announce interval passes
    fed.tick(0);
    let refresh = drain_records(&mut fed.nodes[0]);
    assert_eq!(refresh.len(), 1);
    let mut want = vec![2, 0];
    want.extend_from_slice(&x.fp().0);
    want.extend_from_slice(&ts.to_be_bytes());
    want.extend_from_slice(&15_000u32.to_be_bytes()); // heard 15 s before the announce
    assert_eq!(refresh[0], want);
}

#[test]
fn hand_written_bodies_parse() {
    // A refresh from hops 2, and a punch forward toward an IPv4 asker.
    let refresh = hex(concat!(
        "0202",
        "abababababababababababababababababababababababababababababababab",
        "0000000066000000",
        "00002710"
    ));
    let r = DirRecord::parse(&refresh).expect("refresh");
    assert_eq!(
        (r.hops, r.fingerprint, r.timestamp, r.age_ms, r.body),
        (
            2,
            Fingerprint([0xab; 32]),
            0x6600_0000,
            10_000,
            RecordBody::Refresh
        )
    );
    let punch = hex(concat!(
        "0100",
        "0000000000000007",
        "0101010101010101010101010101010101010101010101010101010101010101",
        "0202020202020202020202020202020202020202020202020202020202020202",
        "04cb007105000000000000000000000000",
        "1388"
    ));
    let f = Forward::parse(&punch).expect("punch");
    assert_eq!(f.id, 7);
    assert_eq!(f.body, ForwardBody::Punch(addr("203.0.113.5:5000")));
    assert_eq!(f.to_vec().unwrap(), punch);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Propagation
// ---------------------------------------------------------------------------------------

#[test]
fn registration_at_a_is_found_at_e_with_home_a() {
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    fed.register(0, &x);
    for i in 1..5 {
        let r = fed.nodes[i].remote(&x.fp(), fed.now).expect("remote entry");
        assert_eq!(r.addr, x.addr);
        assert_eq!(r.home, "A");
        assert_eq!(r.hops, (i - 1) as u8, "hops grow by one per server");
        assert_eq!(fed.nodes[i].remote_online(), 1);
        assert_eq!(fed.nodes[i].online(), 0);
    }
    // A lookup at E from a client of E: online at X's address, home "A".
    let y = Client::new("198.51.100.20:5000");
    fed.register(4, &y);
    fed.advance(3_000);
    let got = fed.send(4, y.addr, &y.lookup(x.fp()));
    assert_eq!(
        got,
        vec![(
            y.addr,
            Reply::Answer {
                target: x.fp(),
                status: LookupStatus::Online {
                    addr: x.addr,
                    age_s: 3
                },
                home: "A".into(),
            }
        )]
    );
    // And A's lookup of Y names E.
    let got = fed.send(0, x.addr, &x.lookup(y.fp()));
    let Reply::Answer { home, .. } = &got[0].1 else {
        panic!("{got:?}")
    };
    assert_eq!(home, "E");
    fed.assert_converged();
    assert!(fed.errors.is_empty(), "{:?}", fed.errors);
    assert_eq!(fed.nodes[2].stats().federation.peer_records_applied, 2);
}

#[test]
fn flood_crosses_each_link_at_most_twice() {
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    fed.register(0, &x);
    // One registration record: A-B, B-C, C-D, D-E each crossed once each way.
    assert_eq!(
        fed.crossings.len(),
        4,
        "{:?}",
        fed.crossings.keys().map(|k| (k.0, k.1)).collect::<Vec<_>>()
    );
    assert!(
        fed.crossings.values().all(|&n| n == 2),
        "{:?}",
        fed.crossings.values().collect::<Vec<_>>()
    );
    // Refreshes, a move and an expiry: still at most twice per link per record.
    for _ in 0..4 {
        fed.advance(20_000);
        fed.keepalive(0, &x);
    }
    fed.advance(2_000);
    fed.register(0, &x.at("192.0.2.11:40001"));
    fed.advance(100_000);
    assert!(fed
        .nodes
        .iter()
        .all(|s| s.online() + s.remote_online() == 0));
    assert!(
        fed.crossings.values().all(|&n| n <= 2),
        "{:?}",
        fed.crossings.values().collect::<Vec<_>>()
    );
    let records: usize = fed.crossings.values().sum();
    assert!(
        records > 8 * 4,
        "refreshes flowed too ({records} crossings)"
    );
    assert!(fed.errors.is_empty(), "{:?}", fed.errors);
    assert_eq!(fed.want, vec![0; 5], "nobody missed anything");
}

#[test]
fn reregistration_at_a_new_address_propagates() {
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    fed.register(0, &x);
    fed.advance(2_000);
    let moved = x.at("[2001:db8::10]:41000");
    fed.register(0, &moved);
    for i in 0..5 {
        assert_eq!(
            fed.locate(i, &x.fp()),
            Some((moved.addr, "A".to_string())),
            "server {}",
            name(i)
        );
    }
    let ts = fed.nodes[4].remote(&x.fp(), fed.now).unwrap().timestamp;
    assert_eq!(ts, fed.now.unix_s);
    fed.assert_converged();
}

#[test]
fn expiry_propagates() {
    // B..E would keep the entry three times longer: only A's expiry record removes it.
    let mut fed = Fed::line_with(5, |i| UdpConfig {
        timers: UdpTimers {
            ttl_ms: if i == 0 { 75_000 } else { 225_000 },
            ..UdpTimers::default()
        },
        ..UdpConfig::default()
    });
    let x = Client::new("192.0.2.10:40000");
    let y = Client::new("192.0.2.20:40000");
    fed.register(0, &x);
    fed.register(0, &y);
    for _ in 0..5 {
        fed.advance(15_000);
        fed.keepalive(0, &y);
    }
    // X went silent 75 s ago: expired at A, and so everywhere.
    for i in 0..5 {
        assert_eq!(fed.locate(i, &x.fp()), None, "server {}", name(i));
        assert!(fed.locate(i, &y.fp()).is_some());
        assert_eq!(fed.nodes[i].stats().federation.remote_expired, 0);
    }
    assert_eq!(fed.nodes[0].stats().datagrams.expired, 1);
    fed.assert_converged();
    assert_eq!(fed.digests()[0].0, 1);
}

#[test]
fn remote_entries_stay_with_refreshes_and_lapse_without() {
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    fed.register(0, &x);
    // 4 TTLs of keepalives: the refreshes keep every remote entry.
    for _ in 0..15 {
        fed.advance(20_000);
        fed.keepalive(0, &x);
        for i in 1..5 {
            let r = fed.nodes[i].remote(&x.fp(), fed.now).expect("still there");
            assert!(r.age_ms < 75_000);
        }
    }
    assert!(fed.nodes[4].stats().federation.peer_records_applied >= 10);
    // A is cut off: X keeps alive at A, but nothing reaches the others; within a TTL and
    // an announce interval their entries lapse (no record sent).
    fed.cut.insert(0);
    for _ in 0..6 {
        fed.advance(20_000);
        fed.keepalive(0, &x);
    }
    assert!(fed.nodes[0].client(&x.fp(), fed.now).is_some());
    for i in 1..5 {
        assert_eq!(fed.locate(i, &x.fp()), None);
        assert_eq!(
            fed.nodes[i].stats().federation.remote_expired,
            1,
            "server {}",
            name(i)
        );
    }
    // Healed: A's next refresh is news to B, which asks for the directory and passes what
    // it learns on.
    fed.cut.clear();
    for _ in 0..2 {
        fed.advance(20_000);
        fed.keepalive(0, &x);
    }
    assert_eq!(fed.want[1], 1, "B asked its neighbours once");
    for i in 1..5 {
        assert_eq!(fed.locate(i, &x.fp()), Some((x.addr, "A".into())));
    }
    fed.assert_converged();
    assert!(fed.errors.is_empty(), "{:?}", fed.errors);
}

#[test]
fn a_client_moving_from_a_to_e_is_homed_at_e_everywhere() {
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    fed.register(0, &x);
    // The same second: E holds a registration as new (A's), so E refuses with 409.
    let at_e = x.at("203.0.113.9:6000");
    let ts = fed.now.unix_s;
    let first = at_e.signed(PacketType::Register, ts, &at_e.register_payload(None));
    let got = fed.send(4, at_e.addr, &first);
    let [(_, Reply::Cookie(cookie))] = got[..] else {
        panic!("{got:?}")
    };
    let p = at_e.register_payload(Some(&cookie));
    let got = fed.send(4, at_e.addr, &at_e.signed(PacketType::Register, ts, &p));
    assert_eq!(got, vec![(at_e.addr, Reply::Error(status::CONFLICT))]);
    // A second later it registers at E: it has moved.
    fed.advance(1_000);
    fed.register(4, &at_e);
    assert_eq!(fed.nodes[0].online(), 0, "A let go of it");
    for i in 0..4 {
        assert_eq!(
            fed.locate(i, &x.fp()),
            Some((at_e.addr, "E".to_string())),
            "server {}",
            name(i)
        );
    }
    assert!(fed.nodes[4].client(&x.fp(), fed.now).is_some());
    // A keepalive from its old address at A is unknown there now.
    let got = fed.send(
        0,
        x.addr,
        &x.packet(PacketType::Keepalive, &[], 0, &[0; 64]),
    );
    assert_eq!(got, vec![(x.addr, Reply::Error(status::NOT_FOUND))]);
    fed.assert_converged();
    // A's TTL passes: A must not announce an expiry of a client it gave up.
    fed.advance(80_000);
    assert_eq!(fed.nodes[0].stats().datagrams.expired, 0);
    assert!(fed.errors.is_empty(), "{:?}", fed.errors);
}

#[test]
fn same_second_registrations_at_two_homes_converge() {
    // A and E each accept X in the same second, before they know of each other; once their
    // records meet, the larger alias (E) wins everywhere and A drops its entry.
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    fed.cut.extend([1, 2, 3]);
    fed.register(0, &x);
    fed.register(4, &x.at("203.0.113.9:6000"));
    fed.cut.clear();
    for i in [0, 4] {
        // Both re-send everything they hold, as after a reconnect.
        let now = fed.now;
        for (body, _) in pages(&fed.nodes[i], now, 10) {
            for j in fed.neighbours(i) {
                fed.wire.push_back((i, j, Msg::Record(body.clone())));
            }
        }
    }
    fed.pump();
    for i in 0..5 {
        assert_eq!(fed.locate(i, &x.fp()).map(|l| l.1), Some("E".into()));
    }
    assert_eq!(fed.nodes[0].online(), 0);
    fed.assert_converged();
}

// ---------------------------------------------------------------------------------------
// Forged, stale and malformed records
// ---------------------------------------------------------------------------------------

/// X's registration record from a lone server "A", and X.
fn one_record(fed: &mut Fed, at: &str) -> (Vec<u8>, Client) {
    let x = Client::new(at);
    fed.register(0, &x);
    let now = fed.now;
    let body = pages(&fed.nodes[0], now, 1).remove(0).0;
    (body, x)
}

/// `body` (a kind-1 record) with its registration fields changed by `f`.
fn edit(body: &[u8], f: impl FnOnce(&mut DirRecord<'_>, &mut Vec<u8>, &mut Vec<u8>)) -> Vec<u8> {
    let mut rec = DirRecord::parse(body).expect("record");
    let RecordBody::Registration(reg) = rec.body else {
        panic!("kind 1")
    };
    let mut sig = reg.signature.to_vec();
    let mut payload = reg.payload.to_vec();
    let (home, home_uid, a) = (reg.home.to_string(), reg.home_uid, reg.addr);
    f(&mut rec, &mut sig, &mut payload);
    let addr = match rec.body {
        RecordBody::Registration(r) => r.addr,
        _ => a,
    };
    DirRecord {
        body: RecordBody::Registration(Registration {
            addr,
            home_uid,
            home: &home,
            signature: &sig,
            payload: &payload,
        }),
        ..rec
    }
    .to_vec()
    .expect("emit")
}

#[test]
fn forged_records_change_nothing() {
    let mut fed = Fed::line(1);
    let (good, x) = one_record(&mut fed, "192.0.2.10:40000");
    let mut f = lone(&fed, "F");
    let empty = state(&f);
    let now = fed.now;
    let refused =
        |f: &mut UdpCore, body: &[u8]| f.apply_peer_record(now, body).map_err(|e| e.status);

    let bad_sig = edit(&good, |_, sig, _| *sig.last_mut().unwrap() ^= 1);
    assert_eq!(refused(&mut f, &bad_sig), Err(401));
    let bad_payload = edit(&good, |_, _, p| *p.last_mut().unwrap() ^= 1); // the cookie
    assert_eq!(refused(&mut f, &bad_payload), Err(401));
    let bad_ts = edit(&good, |r, _, _| r.timestamp += 1);
    assert_eq!(refused(&mut f, &bad_ts), Err(401));
    let wrong_fp = edit(&good, |r, _, _| r.fingerprint.0[0] ^= 1);
    assert_eq!(refused(&mut f, &wrong_fp), Err(400));
    let bad_cert = edit(&good, |_, _, p| p[10] ^= 1); // inside the certificate
    assert_eq!(
        refused(&mut f, &bad_cert),
        Err(400),
        "its hash is no longer the fingerprint"
    );
    let mut hops = good.clone();
    hops[1] = 17;
    assert_eq!(refused(&mut f, &hops), Err(400));
    // An unlisted registration (flags 0x01, docs/PROTOCOL.md §5.2), signed by the client
    // itself: its source was never an address to list.
    let unlisted = edit(&good, |r, sig, p| {
        p.push(0x01);
        *sig = x.id.sign(&signed_message(r.timestamp, p));
    });
    assert_eq!(refused(&mut f, &unlisted), Err(400));
    assert_eq!(state(&f), empty);
    assert!(f.poll_peer_out().is_none(), "nothing refused is passed on");
    assert_eq!(f.stats().federation.peer_records_refused, 7);

    // The address is not signed: a peer may state another one (the home server vouches).
    let other = addr("198.51.100.1:1");
    let moved = edit(&good, |r, _, _| {
        if let RecordBody::Registration(ref mut g) = r.body {
            g.addr = other;
        }
    });
    assert_eq!(f.apply_peer_record(now, &moved), Ok(true));
    assert_eq!(f.remote(&x.fp(), now).map(|r| r.addr), Some(other));
    // A forged newer timestamp against a held entry changes nothing either.
    let held = state(&f);
    assert_eq!(refused(&mut f, &bad_ts), Err(401));
    assert_eq!(state(&f), held);
}

#[test]
fn rolled_back_records_are_ignored() {
    let mut fed = Fed::line(1);
    let (old, x) = one_record(&mut fed, "192.0.2.10:40000");
    fed.advance(2_000);
    let moved = x.at("192.0.2.10:40001");
    fed.register(0, &moved);
    let now = fed.now;
    let new = pages(&fed.nodes[0], now, 1).remove(0).0;
    let mut f = lone(&fed, "F");
    assert_eq!(f.apply_peer_record(now, &new), Ok(true));
    let _ = drain_records(&mut f);
    assert_eq!(f.apply_peer_record(now, &old), Ok(false));
    assert_eq!(f.remote(&x.fp(), now).map(|r| r.addr), Some(moved.addr));
    assert!(
        f.poll_peer_out().is_none(),
        "an unchanged record is never passed on"
    );
    // The same record again is a refresh: unchanged unless it moves last-seen by >= 1 s.
    assert_eq!(f.apply_peer_record(now, &new), Ok(false));
    let mut later = new.clone();
    later[42..46].copy_from_slice(&0u32.to_be_bytes());
    let now2 = Now {
        mono_ms: now.mono_ms + 5_000,
        ..now
    };
    assert_eq!(f.apply_peer_record(now2, &later), Ok(true));
    assert_eq!(f.remote(&x.fp(), now2).map(|r| r.age_ms), Some(0));
    // Hops 16 is accepted but goes no further.
    let mut g = lone(&fed, "G");
    let mut far = new;
    far[1] = 16;
    assert_eq!(g.apply_peer_record(now, &far), Ok(true));
    assert!(g.poll_peer_out().is_none());
    // Our own uid as home, for a client we do not hold: ignored.
    let mut a2 = lone(&fed, "A");
    assert_eq!(a2.apply_peer_record(now, &old), Ok(false));
    assert_eq!(a2.remote_online(), 0);
    // Our alias with another uid is another home (servers may share a name): taken.
    let namesake_cfg = UdpConfig {
        identity: UdpIdentity {
            alias: "A".into(),
            node_uid: Some([0x77; 16]),
        },
        ..UdpConfig::default()
    };
    let mut namesake = UdpCore::new(namesake_cfg, [0xf1; 32], now);
    assert_eq!(namesake.apply_peer_record(now, &old), Ok(true));
    assert_eq!(namesake.remote(&x.fp(), now).map(|r| r.home), Some("A"));
}

#[test]
fn truncated_and_random_bodies_change_nothing() {
    let mut fed = Fed::line(2);
    let x = Client::new("192.0.2.10:40000");
    let y = Client::new("198.51.100.20:5000");
    fed.register(0, &x);
    fed.register(1, &y);
    let now = fed.now;
    let record = pages(&fed.nodes[0], now, 1)
        .into_iter()
        .find(|r| r.1 == x.fp())
        .expect("x's record")
        .0;
    let mut fwd = Vec::new();
    let _ = fed.send(1, y.addr, &y.relay(now.unix_s, x.fp(), b"hello"));
    while let Some(item) = fed.nodes[1].poll_peer_out() {
        if let PeerOut::Forward(b) = item {
            fwd = b;
        }
    }
    assert!(!fwd.is_empty());
    let mut s = lone(&fed, "F");
    assert_eq!(s.apply_peer_record(now, &record), Ok(true));
    let held = state(&s);
    let mut sent = 0;
    for n in 0..record.len() {
        assert!(s.apply_peer_record(now, &record[..n]).is_err(), "{n}");
    }
    // A relayed event may be cut to any length >= 1, so only the fixed part.
    for n in 0..75 {
        assert!(
            s.handle_forward(now, &fwd[..n], &mut |_, _| sent += 1)
                .is_err(),
            "{n}"
        );
    }
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..5_000 {
        let base = if round % 2 == 0 { &record } else { &fwd };
        let mut b = base.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        let before = state(&s);
        let r1 = s.apply_peer_record(now, &b);
        if r1.is_err() {
            assert_eq!(state(&s), before);
        }

        let before = state(&s);
        if s.handle_forward(now, &b, &mut |_, _| sent += 1).is_err() {
            assert_eq!(state(&s), before);
        }
    }
    // Mutations may have stated another address or home (neither is signed) or been
    // refreshes; the entry for x is still the one signed registration.
    assert_eq!(
        s.remote(&x.fp(), now).map(|r| r.timestamp),
        Some(now.unix_s)
    );
    assert_eq!(held.1, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..1800)) {
        let now = Now { mono_ms: MONO0, unix_s: unix0() };
        let mut s = UdpCore::new(UdpConfig::default(), [7; 32], now);
        let before = state(&s);
        let r = s.apply_peer_record(now, &body);
        if r.is_err() {
            prop_assert_eq!(state(&s), before);
        }
        let mut sent = 0;
        let r = s.handle_forward(now, &body, &mut |_, _| sent += 1);
        if r.is_err() {
            prop_assert_eq!(state(&s), before);
        }
        prop_assert_eq!(sent, 0, "nobody is registered here");
    }
}

// ---------------------------------------------------------------------------------------
// Forwards: punch requests and relayed events
// ---------------------------------------------------------------------------------------

#[test]
fn lookup_at_e_makes_a_send_the_punch_request() {
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    let y = Client::new("198.51.100.20:5000");
    fed.register(0, &x);
    fed.register(4, &y);
    let got = fed.send(4, y.addr, &y.lookup(x.fp()));
    assert_eq!(got.len(), 1, "only the answer leaves E: {got:?}");
    let Reply::Answer { home, status, .. } = &got[0].1 else {
        panic!("{got:?}")
    };
    assert_eq!(home, "A");
    assert!(matches!(status, LookupStatus::Online { addr, .. } if *addr == x.addr));
    assert_eq!(fed.nodes[4].stats().federation.forwards_out, 1);
    fed.pump();
    let sent = fed.take_datagrams();
    assert_eq!(
        sent,
        vec![(
            0,
            x.addr,
            Reply::Punch {
                peer: y.fp(),
                addr: y.addr
            }
        )]
    );
    assert_eq!(fed.nodes[0].stats().federation.forwards_delivered, 1);
    // Copies that came back around were dropped by id, none delivered twice.
    assert!(fed.errors.is_empty(), "{:?}", fed.errors);
    // The pair limit: a second lookup within a second makes no new forward.
    let _ = fed.send(4, y.addr, &y.lookup(x.fp()));
    fed.pump();
    assert!(fed.take_datagrams().is_empty());
    assert_eq!(fed.nodes[4].stats().federation.forwards_out, 1);
    fed.advance(1_000);
    let _ = fed.send(4, y.addr, &y.lookup(x.fp()));
    fed.pump();
    assert_eq!(fed.take_datagrams().len(), 1);
}

#[test]
fn relay_from_e_is_delivered_by_a() {
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    let y = Client::new("198.51.100.20:5000");
    fed.register(0, &x);
    fed.register(4, &y);
    let event = b"an opaque event \x00\xff";
    let got = fed.send(4, y.addr, &y.relay(fed.now.unix_s, x.fp(), event));
    assert!(got.is_empty(), "a relay is not acknowledged: {got:?}");
    fed.pump();
    let raw: Vec<_> = fed.datagrams.drain(..).collect();
    assert_eq!(raw.len(), 1);
    let (server, dst, bytes) = &raw[0];
    assert_eq!((*server, *dst), (0, x.addr));
    // The exact type-4 s->c payload: [source fingerprint][event].
    let root = Root::parse(bytes).unwrap();
    assert_eq!(root.packet_type, PacketType::Relay);
    let mut want = y.fp().0.to_vec();
    want.extend_from_slice(event);
    assert_eq!(root.payload, &want[..]);
    assert_eq!(fed.nodes[0].stats().federation.forwards_delivered, 1);
    assert_eq!(fed.nodes[4].queued_for(&x.fp()), 0);
}

#[test]
fn relay_for_a_client_offline_at_its_home_is_queued_there() {
    let mut fed = Fed::line(5);
    let x = Client::new("192.0.2.10:40000");
    let y = Client::new("198.51.100.20:5000");
    fed.register(0, &x);
    fed.register(4, &y);
    for _ in 0..4 {
        fed.advance(18_000);
        fed.keepalive(4, &y);
    }
    // X went silent: A expires it, but before A's expiry record travels, Y relays to X
    // from E, which still holds X's entry.
    fed.set_clock(fed.now.mono_ms - MONO0 + 4_000);
    fed.tick(0);
    assert_eq!(fed.nodes[0].online(), 0);
    assert!(fed.nodes[4].remote(&x.fp(), fed.now).is_some());
    let got = fed.send(4, y.addr, &y.relay(fed.now.unix_s, x.fp(), b"later"));
    assert!(got.is_empty(), "{got:?}");
    fed.pump();
    assert!(fed.take_datagrams().is_empty());
    assert_eq!(fed.nodes[0].queued_for(&x.fp()), 1, "queued at X's home");
    assert_eq!(fed.nodes[4].remote(&x.fp(), fed.now), None);
    // X comes back to A and gets it after the OK.
    fed.advance(1_000);
    let after_ok = fed.register_only(0, &x);
    assert_eq!(
        after_ok,
        vec![(
            x.addr,
            Reply::Relay {
                from: y.fp(),
                event: b"later".to_vec()
            }
        )]
    );
}

#[test]
fn duplicate_forward_ids_are_dropped() {
    let mut fed = Fed::line(2);
    let x = Client::new("192.0.2.10:40000");
    let y = Client::new("198.51.100.20:5000");
    fed.register(0, &x);
    fed.register(1, &y);
    let _ = fed.send(1, y.addr, &y.relay(fed.now.unix_s, x.fp(), b"once"));
    let Some(PeerOut::Forward(body)) = fed.nodes[1].poll_peer_out() else {
        panic!("a forward")
    };
    let now = fed.now;
    let mut sent = 0;
    for _ in 0..3 {
        assert_eq!(
            fed.nodes[0].handle_forward(now, &body, &mut |_, _| sent += 1),
            Ok(())
        );
    }
    assert_eq!(sent, 1);
    assert_eq!(fed.nodes[0].stats().federation.forwards_duplicate, 2);
    // Its own forward coming back to the server that made it is a copy too.
    assert_eq!(
        fed.nodes[1].handle_forward(now, &body, &mut |_, _| sent += 1),
        Ok(())
    );
    assert_eq!(fed.nodes[1].stats().federation.forwards_duplicate, 1);
    assert!(fed.nodes[1].poll_peer_out().is_none());
    // Too many hops is refused.
    let mut far = body.clone();
    far[1] = 9;
    far[2] ^= 0xff; // another id
    let r = fed.nodes[0].handle_forward(now, &far, &mut |_, _| sent += 1);
    assert_eq!(r.map_err(|e| e.status), Err(400));
    assert_eq!(sent, 1);
}

// ---------------------------------------------------------------------------------------
// Full directory
// ---------------------------------------------------------------------------------------

#[test]
fn directory_pages_cover_everything_once_in_order_and_digests_agree() {
    let mut fed = Fed::line(5);
    let mut all = BTreeSet::new();
    for i in 0..5 {
        for k in 0..3 {
            let c = Client::new(&format!("192.0.2.{}:{}", 10 + i, 4000 + k));
            fed.register(i, &c);
            all.insert(c.fp());
        }
    }
    fed.advance(2_000);
    fed.assert_converged();
    assert_eq!(fed.digests()[0].0, 15);
    let now = fed.now;
    for max in [1, 4, 15, 100] {
        let got = pages(&fed.nodes[2], now, max);
        let fps: Vec<_> = got.iter().map(|x| x.1).collect();
        assert_eq!(fps, all.iter().copied().collect::<Vec<_>>(), "max {max}");
        for (body, fp) in &got {
            let rec = DirRecord::parse(body).unwrap();
            let RecordBody::Registration(reg) = rec.body else {
                unreachable!()
            };
            let local = fed.nodes[2].client(fp, now).is_some();
            assert_eq!(reg.home == "C", local);
            if local {
                assert_eq!(rec.hops, 0);
            } else {
                let stored = fed.nodes[2].remote(fp, now).unwrap().hops;
                assert_eq!(rec.hops, stored + 1);
            }
        }
    }
    let mut none = Vec::new();
    assert_eq!(
        fed.nodes[2].directory_page(now, None, 0, &mut none),
        DirectoryPage {
            last: None,
            more: true,
            records: 0
        }
    );
    let last = *all.iter().last().unwrap();
    assert_eq!(
        fed.nodes[2].directory_page(now, Some(last), 5, &mut none),
        DirectoryPage {
            last: None,
            more: false,
            records: 0
        }
    );
    assert!(none.is_empty());
    // A newcomer fed C's pages agrees with everybody.
    let mut f = lone(&fed, "F");
    for (body, _) in pages(&fed.nodes[2], now, 7) {
        assert_eq!(f.apply_peer_record(now, &body), Ok(true));
    }
    assert_eq!(f.directory_digest(), fed.digests()[0]);
    assert_eq!(f.remote_online(), 15);
}

#[test]
fn refresh_pass_waits_for_outbox_room_and_overflow_drops_the_oldest() {
    let mut fed = Fed::line_with(1, |_| UdpConfig {
        federation: FederationConfig {
            max_peer_out: 8,
            ..FederationConfig::default()
        },
        ..UdpConfig::default()
    });
    let clients: Vec<_> = (0..20)
        .map(|k| Client::new(&format!("192.0.2.{}:4000", 10 + k)))
        .collect();
    for c in &clients {
        let _ = fed.register_only(0, c);
        assert_eq!(drain_records(&mut fed.nodes[0]).len(), 1);
    }
    fed.set_clock(10_000);
    for c in &clients {
        fed.keepalive(0, c);
    }
    // The refresh pass fills at most half the outbox, then goes on 10 ms later.
    fed.set_clock(25_000);
    let mut refreshed = BTreeSet::new();
    for _ in 0..10 {
        fed.tick(0);
        let got = drain_records(&mut fed.nodes[0]);
        assert!(got.len() <= 4, "{}", got.len());
        for b in got {
            let r = DirRecord::parse(&b).unwrap();
            assert_eq!(r.body, RecordBody::Refresh);
            assert!(refreshed.insert(r.fingerprint), "announced twice");
        }
        fed.set_clock(fed.now.mono_ms - MONO0 + 10);
    }
    assert_eq!(refreshed.len(), 20);
    assert_eq!(fed.nodes[0].stats().federation.peer_out_dropped, 0);
    // Ten registrations with nobody draining: the two oldest records are dropped and the
    // server asks for a resync first.
    let more: Vec<_> = (0..10)
        .map(|k| Client::new(&format!("198.51.100.{}:4000", 10 + k)))
        .collect();
    for c in &more {
        let _ = fed.register_only(0, c);
    }
    assert_eq!(fed.nodes[0].stats().federation.peer_out_dropped, 2);
    assert_eq!(fed.nodes[0].poll_peer_out(), Some(PeerOut::WantDirectory));
    let left = drain_records(&mut fed.nodes[0]);
    assert_eq!(left.len(), 8);
    assert_eq!(
        DirRecord::parse(&left[0]).unwrap().fingerprint,
        more[2].fp(),
        "the oldest went first"
    );
}
