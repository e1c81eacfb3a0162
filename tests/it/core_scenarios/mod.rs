//! Scenario tests of the I/O-free UDP core on a virtual clock (the shape of firezone's
//! `tests/regression.rs`): no sockets, no sleeps.
//!
//! A [`Net`] owns one [`UdpCore`] and a hand-advanced [`Now`]; fake [`Client`]s build real,
//! signed packets with the wire module, every datagram the core emits is collected and
//! decoded, and each test asserts the exact replies (destination, layout, payload).
//!
//! Every datagram that passes through [`Net::send`] is also checked against the rules that
//! hold whatever the scenario (docs/PROTOCOL.md §2.5, §4.2, §5.5, §11.4):
//! - every datagram out is a well-formed, unsigned server packet (params 0x01) of at most
//!   1400 bytes, or a well-formed STUN response to a STUN request;
//! - no reply to a source that has not passed the address check is larger than the request
//!   that caused it (a STUN answer: under 3 times it), and nothing is sent to an unchecked
//!   address other than that source;
//! - after `handle_timeout(now)` the core has no work left at or before `now`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rendezvous::core::udp::{QueueBounds, RateLimits, TableBounds, UdpConfig, UdpCore, UdpTimers};
use rendezvous::core::Now;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::status;
use rendezvous::wire::stun::{classify, Stun, BINDING_SUCCESS};
use rendezvous::wire::udp::root::{
    signed_message, PARAM_FROM_SERVER, PARAM_SHIFTED, PARAM_TO_SERVER,
};
use rendezvous::wire::udp::{canonical_addr, LookupStatus, OkInfo, Payload, ServerEvent};
use rendezvous::wire::{Fingerprint, PacketType, Root, RootHeader, MAX_DATAGRAM};

const SEED: [u8; 32] = [0x5e; 32];
/// Where the monotonic clock starts (any origin will do).
const MONO0: u64 = 1_000_000;

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// Unix seconds at the start of a test: the generated certificates are valid from a day
/// before the real time, so the virtual clock starts there and is then advanced by hand.
fn unix0() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------
// Decoded server datagrams
// ---------------------------------------------------------------------------------------

/// What a server datagram says, decoded with the wire module (owned, for comparisons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Type 1.
    Ok(OkInfo),
    /// Type 9.
    Cookie([u8; 16]),
    /// Type 3, code 1.
    Punch { peer: Fingerprint, addr: SocketAddr },
    /// Type 4, s->c.
    Relay { from: Fingerprint, event: Vec<u8> },
    /// Type 6.
    Answer {
        target: Fingerprint,
        status: LookupStatus,
        home: String,
    },
    /// Type 7 (the detail text is kept in [`Sent::detail`], not compared).
    Error { status: u16, request_type: u8 },
    /// A STUN response to a STUN request (docs/PROTOCOL.md §11; its contents are checked in
    /// tests/it/stun.rs): the message type, 0x0101 or 0x0111.
    Stun { message_type: u16 },
}

/// One datagram the core sent.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    dst: SocketAddr,
    /// The layout it was sent in (`Some(n)`: shifted with `n` junk bytes per shift).
    shift: Option<u8>,
    pub(crate) reply: Reply,
    /// Error detail text (type 7 only).
    detail: String,
    /// Bytes on the wire.
    len: usize,
}

/// Equality on what a test asserts: destination, layout and payload (not the error text).
impl PartialEq for Sent {
    fn eq(&self, other: &Self) -> bool {
        self.dst == other.dst && self.shift == other.shift && self.reply == other.reply
    }
}

/// The expected datagram `reply` to client `c` (its canonical address, its layout).
pub(crate) fn to(c: &Client, reply: Reply) -> Sent {
    to_addr(c.addr, c.shift, reply)
}

fn to_addr(dst: SocketAddr, shift: Option<u8>, reply: Reply) -> Sent {
    Sent {
        dst: canonical_addr(dst),
        shift,
        reply,
        detail: String::new(),
        len: 0,
    }
}

pub(crate) fn error(status: u16, request_type: u8) -> Reply {
    Reply::Error {
        status,
        request_type,
    }
}

/// Decodes a datagram from the server, asserting the invariants of every server packet.
/// Decodes a STUN response with the wire module (a malformed one fails the test).
fn decode_stun(dst: SocketAddr, bytes: &[u8]) -> Sent {
    let msg = Stun::parse(bytes).unwrap_or_else(|e| panic!("server sent a malformed STUN: {e}"));
    Sent {
        dst,
        shift: None,
        reply: Reply::Stun {
            message_type: msg.message_type(),
        },
        detail: String::new(),
        len: bytes.len(),
    }
}

fn decode(dst: SocketAddr, bytes: &[u8]) -> Sent {
    assert!(bytes.len() <= MAX_DATAGRAM, "datagram over 1400 bytes");
    let root = Root::parse(bytes).unwrap_or_else(|e| panic!("server sent an unparsable root: {e}"));
    assert_eq!(
        root.params & (PARAM_FROM_SERVER | PARAM_TO_SERVER),
        PARAM_FROM_SERVER,
        "server packets set params 0x01 and not 0x02"
    );
    assert_eq!(root.params & PARAM_SHIFTED != 0, root.shift_len.is_some());
    assert!(
        root.signature.is_empty(),
        "server packets are unsigned (sig_len 0) in this version"
    );
    let payload = Payload::parse(root.packet_type, root.payload)
        .unwrap_or_else(|e| panic!("server sent an unparsable {:?}: {e}", root.packet_type));
    let mut detail = String::new();
    let reply = match payload {
        Payload::Ok(Some(info)) => Reply::Ok(info),
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
        Payload::Error(e) => {
            detail = e.detail.to_string();
            error(e.status, e.request_type)
        }
        other => panic!("unexpected server packet {other:?}"),
    };
    Sent {
        dst,
        shift: root.shift_len,
        reply,
        detail,
        len: bytes.len(),
    }
}

// ---------------------------------------------------------------------------------------
// Fake clients
// ---------------------------------------------------------------------------------------

/// A client: an Ed25519 identity at a (public, post-NAT) address, plain or shifted.
pub(crate) struct Client {
    pub(crate) id: Identity,
    pub(crate) addr: SocketAddr,
    pub(crate) shift: Option<u8>,
}

impl Client {
    pub(crate) fn fp(&self) -> Fingerprint {
        self.id.fingerprint()
    }

    /// The same identity at another address (a NAT rebinding, or someone replaying).
    pub(crate) fn at(&self, addr: SocketAddr) -> Client {
        Client {
            id: self.id.clone(),
            addr,
            shift: self.shift,
        }
    }

    fn header_len(&self, sig_len: usize) -> usize {
        RootHeader {
            params: PARAM_TO_SERVER,
            shift_len: self.shift,
            packet_type: PacketType::Keepalive,
            signature: &vec![0; sig_len],
            timestamp: 0,
        }
        .len()
    }

    /// A Root packet with explicit params (0x02 for a client) and signature.
    fn raw(&self, params: u8, ty: u8, sig: &[u8], ts: u64, payload: &[u8]) -> Vec<u8> {
        RootHeader {
            params,
            shift_len: self.shift,
            packet_type: PacketType::from(ty),
            signature: sig,
            timestamp: ts,
        }
        .to_vec(payload)
        .expect("emit root")
    }

    fn unsigned(&self, ty: u8, ts: u64, payload: &[u8]) -> Vec<u8> {
        self.raw(PARAM_TO_SERVER, ty, &[], ts, payload)
    }

    /// Signed by this client's key over `timestamp || payload`.
    fn signed(&self, ty: u8, ts: u64, payload: &[u8]) -> Vec<u8> {
        let sig = self.id.sign(&signed_message(ts, payload));
        assert!(!sig.is_empty());
        self.raw(PARAM_TO_SERVER, ty, &sig, ts, payload)
    }

    fn register_payload(&self, cookie: Option<&[u8; 16]>) -> Vec<u8> {
        let cert = self.id.cert_der();
        let mut p = Vec::with_capacity(2 + cert.len() + 16);
        p.extend_from_slice(&u16::try_from(cert.len()).expect("cert len").to_be_bytes());
        p.extend_from_slice(cert);
        if let Some(c) = cookie {
            p.extend_from_slice(c);
        }
        p
    }

    fn register(&self, ts: u64, cookie: Option<&[u8; 16]>) -> Vec<u8> {
        self.signed(2, ts, &self.register_payload(cookie))
    }

    /// An unlisted registration (flags 0x01 after the cookie; docs/PROTOCOL.md §5.2).
    pub(crate) fn register_unlisted(&self, ts: u64, cookie: Option<&[u8; 16]>) -> Vec<u8> {
        let mut p = self.register_payload(cookie);
        p.push(0x01);
        self.signed(2, ts, &p)
    }

    /// An unsigned keepalive of exactly `total` bytes (padding in the payload).
    pub(crate) fn keepalive(&self, total: usize) -> Vec<u8> {
        let pad = total
            .checked_sub(self.header_len(0))
            .expect("keepalive too short");
        self.unsigned(0, 0, &vec![0; pad])
    }

    pub(crate) fn lookup(&self, target: Fingerprint) -> Vec<u8> {
        self.unsigned(5, 0, &target.0)
    }

    fn relay_payload(dest: Fingerprint, event: &[u8]) -> Vec<u8> {
        let mut p = dest.0.to_vec();
        p.extend_from_slice(event);
        p
    }

    pub(crate) fn relay(&self, ts: u64, dest: Fingerprint, event: &[u8]) -> Vec<u8> {
        self.signed(4, ts, &Self::relay_payload(dest, event))
    }

    pub(crate) fn fetch(&self) -> Vec<u8> {
        self.unsigned(8, 0, &[])
    }
}

// ---------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------

/// One server core on a virtual clock, and the fingerprints of the clients made for it.
pub(crate) struct Net {
    pub(crate) server: UdpCore,
    pub(crate) now: Now,
    unix0: u64,
    known: Vec<Fingerprint>,
    /// Sources bound by unlisted registrations the harness made (address-checked too).
    unlisted: HashSet<SocketAddr>,
}

impl Net {
    pub(crate) fn new() -> Net {
        Net::with(UdpConfig::default())
    }

    pub(crate) fn with(cfg: UdpConfig) -> Net {
        Net::with_seed(cfg, SEED)
    }

    fn with_seed(cfg: UdpConfig, seed: [u8; 32]) -> Net {
        let unix0 = unix0();
        let now = Now {
            mono_ms: MONO0,
            unix_s: unix0,
        };
        Net {
            server: UdpCore::new(cfg, seed, now),
            now,
            unix0,
            known: Vec::new(),
            unlisted: HashSet::new(),
        }
    }

    /// A new client with a fresh Ed25519 identity at `at`.
    pub(crate) fn client(&mut self, at: &str, shift: Option<u8>) -> Client {
        self.client_with(KeyAlgorithm::Ed25519, at, shift)
    }

    fn client_with(&mut self, alg: KeyAlgorithm, at: &str, shift: Option<u8>) -> Client {
        let id = Identity::generate(alg, "scenario").expect("identity");
        self.known.push(id.fingerprint());
        Client {
            id,
            addr: addr(at),
            shift,
        }
    }

    /// Moves both clocks forward by `ms` and runs the core's timers if they are due.
    pub(crate) fn advance(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.unix_s = self.unix0 + (self.now.mono_ms - MONO0) / 1000;
        self.tick();
    }

    fn tick(&mut self) {
        if self
            .server
            .poll_timeout()
            .is_some_and(|t| t <= self.now.mono_ms)
        {
            self.server.handle_timeout(self.now);
        }
        let next = self.server.poll_timeout();
        assert!(
            !matches!(next, Some(t) if t <= self.now.mono_ms),
            "handle_timeout left work due at {next:?} <= now {}",
            self.now.mono_ms
        );
    }

    pub(crate) fn ts(&self) -> u64 {
        self.now.unix_s
    }

    /// Addresses the directory holds now (for the clients this harness made), and the
    /// sources it bound by unlisted registrations.
    fn checked_addrs(&self) -> HashSet<SocketAddr> {
        self.known
            .iter()
            .filter_map(|fp| self.server.client(fp, self.now))
            .map(|c| c.addr)
            .chain(self.unlisted.iter().copied())
            .collect()
    }

    /// Feeds one datagram from `src` to the core; returns what it sent, decoded, after
    /// checking the no-amplification rule.
    pub(crate) fn send(&mut self, src: SocketAddr, bytes: &[u8]) -> Vec<Sent> {
        let before = self.checked_addrs();
        let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        self.server
            .handle_datagram(self.now, src, bytes, &mut |dst, b| {
                out.push((dst, b.to_vec()))
            });
        let after = self.checked_addrs();
        let src_c = canonical_addr(src);
        for (dst, b) in &out {
            if !before.contains(dst) && !after.contains(dst) {
                assert_eq!(
                    *dst, src_c,
                    "datagram to an address that never passed the address check"
                );
                // docs/PROTOCOL.md §4 and §11.4: no reply larger than its request, but a
                // STUN Binding answer, which stays under 3 times its request.
                let bound_ok = match classify(bytes) {
                    Some(_) => b.len() < 3 * bytes.len(),
                    None => b.len() <= bytes.len(),
                };
                assert!(
                    bound_ok,
                    "amplification: {}-byte reply to a {}-byte request from unchecked {src}",
                    b.len(),
                    bytes.len()
                );
            }
        }
        let stun = classify(bytes).is_some();
        out.iter()
            .map(|(d, b)| {
                if stun {
                    decode_stun(*d, b)
                } else {
                    decode(*d, b)
                }
            })
            .collect()
    }

    /// The advised keepalive, as the OK should carry it.
    fn ok_for(&self, c: &Client) -> Reply {
        Reply::Ok(OkInfo {
            keepalive_s: self.server.config().advised_keepalive_s(),
            boot_epoch: self.server.boot_epoch(),
            reflexive: canonical_addr(c.addr),
        })
    }

    /// A registration without a cookie: expects exactly the type-9 challenge, returns it.
    fn cookie_for(&mut self, c: &Client) -> [u8; 16] {
        let ts = self.ts();
        let got = self.send(c.addr, &c.register(ts, None));
        assert_eq!(got.len(), 1, "expected one cookie challenge, got {got:?}");
        let Reply::Cookie(cookie) = got[0].reply else {
            panic!("expected a cookie challenge, got {got:?}");
        };
        assert_eq!(got[0], to(c, Reply::Cookie(cookie)));
        cookie
    }

    /// The whole registration (cookie challenge, then the registration with the cookie);
    /// asserts the OK comes first and returns what followed it (queued events).
    pub(crate) fn register(&mut self, c: &Client) -> Vec<Sent> {
        let cookie = self.cookie_for(c);
        let ts = self.ts();
        let mut got = self.send(c.addr, &c.register(ts, Some(&cookie)));
        assert!(
            !got.is_empty(),
            "no OK for a registration with a valid cookie"
        );
        assert_eq!(got[0], to(c, self.ok_for(c)), "detail: {}", got[0].detail);
        let view = self
            .server
            .client(&c.fp(), self.now)
            .expect("in the directory");
        assert_eq!(view.addr, canonical_addr(c.addr));
        assert_eq!(view.shift, c.shift);
        got.remove(0);
        got
    }

    /// The whole unlisted registration of `c` (cookie challenge, then the unlisted
    /// registration with the cookie); asserts the OK comes first and returns what followed
    /// it.
    pub(crate) fn register_unlisted(&mut self, c: &Client) -> Vec<Sent> {
        let cookie = self.cookie_for(c);
        let ts = self.ts();
        let mut got = self.send(c.addr, &c.register_unlisted(ts, Some(&cookie)));
        assert!(!got.is_empty(), "no OK for an unlisted registration");
        assert_eq!(got[0], to(c, self.ok_for(c)), "detail: {}", got[0].detail);
        self.unlisted.insert(canonical_addr(c.addr));
        got.remove(0);
        got
    }

    /// Registers `c` and asserts nothing was queued for it.
    pub(crate) fn online(&mut self, c: &Client) {
        let rest = self.register(c);
        assert!(rest.is_empty(), "unexpected events after the OK: {rest:?}");
    }

    /// A 64-byte keepalive from each of `clients`, none answered.
    pub(crate) fn keep_alive(&mut self, clients: &[&Client]) {
        for c in clients {
            let got = self.send(c.addr, &c.keepalive(64));
            assert!(got.is_empty(), "a keepalive was answered: {got:?}");
        }
    }

    pub(crate) fn age_ms(&self, c: &Client) -> Option<u64> {
        self.server.client(&c.fp(), self.now).map(|v| v.age_ms)
    }

    pub(crate) fn where_is(&self, c: &Client) -> Option<SocketAddr> {
        self.server.client(&c.fp(), self.now).map(|v| v.addr)
    }
}

pub(crate) fn answer(target: &Client, status: LookupStatus, home: &str) -> Reply {
    Reply::Answer {
        target: target.fp(),
        status,
        home: home.to_string(),
    }
}

pub(crate) fn online_at(c: &Client, age_s: u32) -> LookupStatus {
    LookupStatus::Online {
        addr: canonical_addr(c.addr),
        age_s,
    }
}

pub(crate) fn punch(from: &Client) -> Reply {
    Reply::Punch {
        peer: from.fp(),
        addr: canonical_addr(from.addr),
    }
}

pub(crate) fn relayed(from: &Client, event: &[u8]) -> Reply {
    Reply::Relay {
        from: from.fp(),
        event: event.to_vec(),
    }
}

pub(crate) const HOME: &str = "rendezvous"; // UdpIdentity::default().alias

// ---------------------------------------------------------------------------------------
// Registration and the address check
// ---------------------------------------------------------------------------------------

#[test]
fn register_flow_with_cookie() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let ts = net.ts();

    // First attempt: no cookie -> exactly one type-9 challenge, nothing in the directory.
    let first = a.register(ts, None);
    let got = net.send(a.addr, &first);
    assert_eq!(got.len(), 1);
    let Reply::Cookie(cookie) = got[0].reply else {
        panic!("expected a cookie, got {got:?}")
    };
    assert_eq!(got, vec![to(&a, Reply::Cookie(cookie))]);
    assert_eq!(got[0].len, 12 + 16);
    assert_eq!(net.where_is(&a), None);
    assert_eq!(net.server.stats().datagrams.cookies_sent, 1);
    assert_eq!(net.server.stats().datagrams.registrations, 0);

    // A wrong cookie is not an error: just the challenge again, with the right cookie.
    let got = net.send(a.addr, &a.register(ts, Some(&[0xAA; 16])));
    assert_eq!(got, vec![to(&a, Reply::Cookie(cookie))]);
    assert_eq!(net.where_is(&a), None);

    // With the cookie: the OK with keepalive, epoch and the reflexive address.
    let got = net.send(a.addr, &a.register(ts, Some(&cookie)));
    assert_eq!(
        got,
        vec![to(
            &a,
            Reply::Ok(OkInfo {
                keepalive_s: 25,
                boot_epoch: net.server.boot_epoch(),
                reflexive: a.addr,
            })
        )]
    );
    assert_eq!(got[0].len, 12 + 13);
    assert_eq!(net.where_is(&a), Some(a.addr));
    assert_eq!(net.server.stats().datagrams.registrations, 1);
    assert_eq!(net.server.online(), 1);
}

#[test]
fn ok_reports_ipv4_mapped_source_as_family_4() {
    let mut net = Net::new();
    let m = net.client("[::ffff:192.0.2.7]:5000", None);
    let mut raw = Vec::new();
    let ts = net.ts();
    let cookie = net.cookie_for(&m);
    net.server.handle_datagram(
        net.now,
        m.addr,
        &m.register(ts, Some(&cookie)),
        &mut |d, b| raw.push((d, b.to_vec())),
    );
    assert_eq!(raw.len(), 1);
    let (dst, bytes) = &raw[0];
    assert_eq!(*dst, addr("192.0.2.7:5000"));
    // [01][01][00 00][ts 8] | [keepalive 00 19][epoch 4][04][c0 00 02 07][13 88]
    assert_eq!(bytes.len(), 12 + 13);
    let payload = &bytes[12..];
    assert_eq!(&payload[..2], &[0, 25]);
    assert_eq!(&payload[6..], &[4, 192, 0, 2, 7, 0x13, 0x88]);
    assert_eq!(net.where_is(&m), Some(addr("192.0.2.7:5000")));

    // The plain IPv4 form and the mapped form are the same client.
    net.advance(3_000);
    let v4 = m.at(addr("192.0.2.7:5000"));
    assert!(net.send(v4.addr, &v4.keepalive(12)).is_empty());
    assert_eq!(net.age_ms(&m), Some(0));
}

#[test]
fn ok_reports_ipv6_source_as_family_6() {
    let mut net = Net::new();
    let c = net.client("[2001:db8::7]:6000", None);
    net.online(&c);
    assert_eq!(net.where_is(&c), Some(c.addr));
    // Also check the raw family byte: a re-registration from the same address.
    net.advance(1_000);
    let cookie = net.cookie_for(&c);
    let ts = net.ts();
    let mut raw = Vec::new();
    net.server.handle_datagram(
        net.now,
        c.addr,
        &c.register(ts, Some(&cookie)),
        &mut |d, b| raw.push((d, b.to_vec())),
    );
    assert_eq!(raw.len(), 1);
    let p = &raw[0].1[12..];
    assert_eq!(p.len(), 25);
    assert_eq!(p[6], 6);
    let ip: std::net::Ipv6Addr = "2001:db8::7".parse().expect("ip");
    assert_eq!(&p[7..23], &ip.octets());
    assert_eq!(&p[23..], &6000u16.to_be_bytes());
}

#[test]
fn new_boot_epoch_after_restart() {
    let mut first = Net::new();
    let a = first.client("192.0.2.10:40000", None);
    first.online(&a);
    // The "restarted" server has another seed, so another epoch, and does not know `a`.
    let mut second = Net::with_seed(UdpConfig::default(), [0x11; 32]);
    second.known.push(a.fp());
    assert_ne!(first.server.boot_epoch(), second.server.boot_epoch());
    let got = second.send(a.addr, &a.keepalive(64));
    assert_eq!(got, vec![to(&a, error(status::NOT_FOUND, 0))]);
    second.online(&a); // the OK carries the new epoch (asserted by `register`)
}

/// A server that takes 1 registration a second per /24 (burst 2).
fn one_registration_a_second() -> Net {
    Net::with(UdpConfig {
        limits: RateLimits {
            register_per_s: 1,
            ..RateLimits::default()
        },
        ..UdpConfig::default()
    })
}

#[test]
fn registration_rate_limit_per_prefix_is_429() {
    let mut net = one_registration_a_second();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.11:40000", None);
    let c = net.client("192.0.2.12:40000", None);
    net.online(&a);
    net.online(&b);
    let cookie = net.cookie_for(&c); // cookie challenges come before the rate check
    let ts = net.ts();
    let got = net.send(c.addr, &c.register(ts, Some(&cookie)));
    assert_eq!(got, vec![to(&c, error(status::TOO_MANY_REQUESTS, 2))]);
    assert_eq!(net.where_is(&c), None);
    // Another /24 is not affected; after a second the bucket has a token again.
    let d = net.client("198.51.100.1:40000", None);
    net.online(&d);
    net.advance(1_000);
    net.online(&c);
}

/// A reload (docs/PROTOCOL.md §7, "Reload") changes the limits of the running core: the
/// next registration is limited at the new rate and bound, and no client is dropped.
#[test]
fn set_limits_takes_effect_at_the_next_datagram_and_keeps_the_directory() {
    let mut net = one_registration_a_second();
    let [a, b, c, d] = [
        "192.0.2.10:1",
        "192.0.2.11:1",
        "192.0.2.12:1",
        "192.0.2.13:1",
    ]
    .map(|addr| net.client(addr, None));
    net.online(&a);
    net.online(&b);
    let cookie = net.cookie_for(&c);
    let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
    assert_eq!(got, vec![to(&c, error(status::TOO_MANY_REQUESTS, 2))]);
    // Ten a second: 200 ms later c gets in (at 1 a second, it would wait a second).
    let faster = RateLimits {
        register_per_s: 10,
        ..RateLimits::default()
    };
    net.server
        .set_limits(faster.clone(), 3, QueueBounds::default());
    net.advance(200);
    net.online(&c);
    // At most 3 clients, all kept alive: d is refused, and nobody was dropped.
    net.advance(1_000);
    for x in [&a, &b, &c] {
        assert!(net.send(x.addr, &x.keepalive(12)).is_empty());
    }
    let cookie = net.cookie_for(&d);
    let got = net.send(d.addr, &d.register(net.ts(), Some(&cookie)));
    assert_eq!(got, vec![to(&d, error(status::SERVICE_UNAVAILABLE, 2))]);
    // Lowered below the clients online: nobody is dropped either.
    net.server.set_limits(faster, 1, QueueBounds::default());
    assert_eq!(net.server.online(), 3);
    assert_eq!(
        [&a, &b, &c].map(|x| net.where_is(x)),
        [Some(a.addr), Some(b.addr), Some(c.addr)]
    );
}

#[test]
fn cookie_is_valid_one_to_two_minutes() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let cookie = net.cookie_for(&a); // made at mono 1 000 000, in the 60 s period from 960 000
    net.advance(79_000); // still the next period: accepted
    let got = net.send(a.addr, &a.register(net.ts(), Some(&cookie)));
    assert_eq!(got, vec![to(&a, net.ok_for(&a))]);
    net.advance(1_000); // two periods on: a fresh challenge, the client stays where it was
    let got = net.send(a.addr, &a.register(net.ts(), Some(&cookie)));
    assert_eq!(got.len(), 1);
    assert!(
        matches!(got[0].reply, Reply::Cookie(c) if c != cookie),
        "{got:?}"
    );
}

#[test]
fn ecdsa_client_registers_relays_and_resigned_replays_are_409() {
    let mut net = Net::new();
    let e = net.client_with(KeyAlgorithm::EcdsaP256, "192.0.2.40:4000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&b);
    let cookie = net.cookie_for(&e);
    let ts = net.ts();
    let first = e.register(ts, Some(&cookie));
    assert_eq!(net.send(e.addr, &first), vec![to(&e, net.ok_for(&e))]);
    // ECDSA signatures are randomised: the same message signed again has other bytes, and
    // is still a replay (same fingerprint, type, timestamp and payload).
    net.advance(1_000);
    let again = e.register(ts, Some(&cookie));
    assert_ne!(again, first);
    assert_eq!(
        net.send(e.addr, &again),
        vec![to(&e, error(status::CONFLICT, 2))]
    );
    let r1 = e.relay(ts + 1, b.fp(), b"ecdsa");
    assert_eq!(net.send(e.addr, &r1), vec![to(&b, relayed(&e, b"ecdsa"))]);
    let r2 = e.relay(ts + 1, b.fp(), b"ecdsa");
    assert_ne!(r1, r2);
    assert_eq!(
        net.send(e.addr, &r2),
        vec![to(&e, error(status::CONFLICT, 4))]
    );
}

#[test]
fn expired_certificate_is_401_also_when_cached() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let fresh = net.client("192.0.2.11:40000", None);
    net.online(&a); // a's certificate is now verified and cached
    net.advance(11 * 365 * 86_400_000); // the certificates are valid for 10 years
    assert_eq!(net.where_is(&a), None);
    for c in [&a, &fresh] {
        let cookie = net.cookie_for(c);
        let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
        assert_eq!(got, vec![to(c, error(status::UNAUTHORIZED, 2))]);
        assert_eq!(net.where_is(c), None);
    }
}

// ---------------------------------------------------------------------------------------
// Keepalive
// ---------------------------------------------------------------------------------------

#[test]
fn keepalive_refreshes_and_is_never_answered() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    net.online(&a);
    net.advance(5_000);
    assert_eq!(net.age_ms(&a), Some(5_000));
    assert!(net.send(a.addr, &a.keepalive(12)).is_empty());
    assert_eq!(net.age_ms(&a), Some(0));
    net.advance(1_000);
    assert!(
        net.send(a.addr, &a.keepalive(64)).is_empty(),
        "padding is ignored"
    );
    assert_eq!(net.age_ms(&a), Some(0));
    net.advance(1_000);
    // A signed keepalive (allowed, not required) is treated the same; so is a stale one.
    assert!(net.send(a.addr, &a.signed(0, 0, &[])).is_empty());
    assert_eq!(net.age_ms(&a), Some(0));
    assert_eq!(net.server.stats().datagrams.keepalives, 3);
    assert_eq!(
        net.server.stats().emitted.datagrams_out,
        2,
        "only the cookie and the OK"
    );
}

#[test]
fn keepalive_from_unknown_address_404_only_when_large_enough() {
    let mut net = Net::new();
    let u = net.client("198.51.100.5:1000", None);
    // A 12-byte keepalive is smaller than any 404: no answer.
    assert!(net.send(u.addr, &u.keepalive(12)).is_empty());
    assert!(net.send(u.addr, &u.keepalive(15)).is_empty());
    // 16 bytes: exactly the 404 with an empty detail fits.
    let got = net.send(u.addr, &u.keepalive(16));
    assert_eq!(got, vec![to(&u, error(status::NOT_FOUND, 0))]);
    assert_eq!((got[0].len, got[0].detail.as_str()), (16, ""));
    // A padded 64-byte keepalive: a 404 with as much detail as fits.
    let got = net.send(u.addr, &u.keepalive(64));
    assert_eq!(got, vec![to(&u, error(status::NOT_FOUND, 0))]);
    assert!(got[0].len <= 64 && !got[0].detail.is_empty());
    assert_eq!(net.server.stats().emitted.errors[3], 2);
    assert_eq!(net.server.online(), 0);

    // The same from a shifted client: the 404 comes back shifted.
    let s = net.client("198.51.100.6:1000", Some(5));
    assert!(net.send(s.addr, &s.keepalive(s.header_len(0))).is_empty());
    let got = net.send(s.addr, &s.keepalive(64));
    assert_eq!(got, vec![to(&s, error(status::NOT_FOUND, 0))]);
}

#[test]
fn keepalive_from_other_address_does_not_refresh() {
    let mut net = Net::with(UdpConfig {
        timers: UdpTimers {
            ttl_ms: 6_000,
            ..UdpTimers::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    net.online(&a);
    let elsewhere = a.at(addr("192.0.2.99:40001"));
    for step in 1..=2u64 {
        net.advance(2_000);
        // Signed by the right key, padded: still only the 404 for an unknown address.
        let pad = vec![0u8; 40];
        let got = net.send(elsewhere.addr, &elsewhere.signed(0, net.ts(), &pad));
        assert_eq!(got, vec![to(&elsewhere, error(status::NOT_FOUND, 0))]);
        assert_eq!(net.where_is(&a), Some(a.addr));
        assert_eq!(net.age_ms(&a), Some(2_000 * step));
    }
    net.advance(2_000); // 6 s without a keepalive from its own address: expired
    assert_eq!(net.where_is(&a), None);
    assert_eq!(net.server.stats().datagrams.keepalives, 0);
}

// ---------------------------------------------------------------------------------------
// TTL expiry
// ---------------------------------------------------------------------------------------

#[test]
fn ttl_expiry_via_handle_timeout() {
    let mut net = Net::with(UdpConfig {
        timers: UdpTimers {
            ttl_ms: 6_000,
            ..UdpTimers::default()
        },
        ..UdpConfig::default()
    });
    assert_eq!(net.server.config().advised_keepalive_s(), 2);
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let never = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    let t0 = net.now.mono_ms;
    assert!(net.server.poll_timeout().is_some_and(|t| t <= t0 + 6_000));

    // a keeps alive every 2 s; b went silent after registering.
    for second in 1..=15u64 {
        net.advance(1_000);
        if second % 2 == 0 {
            assert!(net.send(a.addr, &a.keepalive(12)).is_empty());
        }
        assert!(net.where_is(&a).is_some(), "a expired at {second} s");
        assert_eq!(net.where_is(&b).is_some(), second < 6, "b at {second} s");
    }
    assert_eq!(net.age_ms(&a), Some(1_000));
    assert_eq!(net.server.stats().datagrams.expired, 1);
    assert_eq!(net.server.online(), 1);

    // Known but offline: status 1 with the seconds since it was last seen.
    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(
        got,
        vec![to(
            &a,
            answer(&b, LookupStatus::Offline { age_s: 15 }, HOME)
        )]
    );
    // Never seen: status 2, no address, no home.
    let got = net.send(a.addr, &a.lookup(never.fp()));
    assert_eq!(got, vec![to(&a, answer(&never, LookupStatus::Unknown, ""))]);
    // Online: status 0, no punch for looking oneself up.
    let got = net.send(a.addr, &a.lookup(a.fp()));
    assert_eq!(got, vec![to(&a, answer(&a, online_at(&a, 1), HOME))]);

    // b comes back: registering again makes it online at once.
    net.online(&b);
    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(
        got,
        vec![
            to(&a, answer(&b, online_at(&b, 0), HOME)),
            to(&b, punch(&a))
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Lookup and punch requests
// ---------------------------------------------------------------------------------------

#[test]
fn lookup_from_unregistered_source_is_403_no_larger() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    let req = u.lookup(a.fp());
    assert_eq!(req.len(), 44);
    let got = net.send(u.addr, &req);
    assert_eq!(got, vec![to(&u, error(status::FORBIDDEN, 5))]);
    assert!(got[0].len <= req.len());
    // The target learns nothing about the stranger.
    assert_eq!(net.server.stats().datagrams.lookups, 0);
}

#[test]
fn malformed_lookup_from_registered_client_is_400() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    net.online(&a);
    let got = net.send(a.addr, &a.unsigned(5, 0, &[7; 31]));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 5))]);
    let got = net.send(a.addr, &a.unsigned(5, 0, &[7; 33]));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 5))]);
}

#[test]
fn lookup_signature_is_not_needed_nor_checked() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let garbage_sig = a.raw(PARAM_TO_SERVER, 5, &[0xEE; 64], 0, &b.fp().0);
    let got = net.send(a.addr, &garbage_sig);
    assert_eq!(
        got,
        vec![
            to(&a, answer(&b, online_at(&b, 0), HOME)),
            to(&b, punch(&a))
        ]
    );
}

#[test]
fn lookup_online_punches_target_once_per_pair_per_second() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("[2001:db8::b]:7000", None);
    net.online(&a);
    net.online(&b);
    net.advance(2_000);

    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(
        got,
        vec![
            to(&a, answer(&b, online_at(&b, 2), HOME)),
            to(&b, punch(&a))
        ]
    );
    // Within 1 s: the answer again, but no second punch for the pair.
    net.advance(500);
    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(got, vec![to(&a, answer(&b, online_at(&b, 2), HOME))]);
    // The other direction is another pair.
    let got = net.send(b.addr, &b.lookup(a.fp()));
    assert_eq!(
        got,
        vec![
            to(&b, answer(&a, online_at(&a, 2), HOME)),
            to(&a, punch(&b))
        ]
    );
    // A full second after the first punch: punched again.
    net.advance(500);
    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(
        got,
        vec![
            to(&a, answer(&b, online_at(&b, 3), HOME)),
            to(&b, punch(&a))
        ]
    );
    assert_eq!(net.server.stats().datagrams.lookups, 4);
}

// ---------------------------------------------------------------------------------------
// Relay, queues and fetch
// ---------------------------------------------------------------------------------------

#[test]
fn relay_to_online_destination() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    let mut raw = Vec::new();
    net.server.handle_datagram(
        net.now,
        a.addr,
        &a.relay(ts, b.fp(), b"hello"),
        &mut |d, x| raw.push((d, x.to_vec())),
    );
    assert_eq!(raw.len(), 1, "relayed, not acknowledged");
    let (dst, bytes) = &raw[0];
    assert_eq!(*dst, b.addr);
    // [params 0x01][type 4][sig_len 0 0][ts 8][source fp 32]["hello"]
    assert_eq!(&bytes[..4], &[0x01, 4, 0, 0]);
    assert_eq!(&bytes[4..12], &ts.to_be_bytes());
    assert_eq!(&bytes[12..44], &a.fp().0);
    assert_eq!(&bytes[44..], b"hello");
    assert_eq!(decode(*dst, bytes), to(&b, relayed(&a, b"hello")));

    // The largest event (1200 bytes) goes through.
    let big = vec![0x42; 1200];
    let got = net.send(a.addr, &a.relay(ts, b.fp(), &big));
    assert_eq!(got, vec![to(&b, relayed(&a, &big))]);
    assert_eq!(net.server.stats().datagrams.relayed, 2);
}

#[test]
fn relay_to_offline_destination_is_queued_and_delivered_once_after_ok() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    net.online(&a);
    let ts = net.ts();
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"first")).is_empty());
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"second")).is_empty());
    assert_eq!(net.server.queued_for(&c.fp()), 2);
    assert_eq!(net.server.stats().datagrams.queued, 2);

    net.advance(3_000);
    let after_ok = net.register(&c);
    assert_eq!(
        after_ok,
        vec![
            to(&c, relayed(&a, b"first")),
            to(&c, relayed(&a, b"second"))
        ]
    );
    assert_eq!(net.server.queued_for(&c.fp()), 0);
    // Exactly once: neither a fetch nor a new registration brings them again.
    assert!(net.send(c.addr, &c.fetch()).is_empty());
    net.advance(1_000);
    assert!(net.register(&c).is_empty());
    assert_eq!(net.server.stats().datagrams.delivered, 2);
}

#[test]
fn fetch() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    // Nothing queued: no answer at all.
    assert!(net.send(a.addr, &a.fetch()).is_empty());
    // A fetch has no payload.
    let got = net.send(a.addr, &a.unsigned(8, 0, &[1]));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 8))]);
    // From an unregistered source: 403 when it fits in the request, else nothing.
    assert!(net.send(u.addr, &u.fetch()).is_empty());
    let got = net.send(u.addr, &u.unsigned(8, 0, &[0; 30]));
    assert_eq!(got, vec![to(&u, error(status::FORBIDDEN, 8))]);
}

#[test]
fn relay_depth_limit_is_503() {
    let mut net = Net::with(UdpConfig {
        queue: QueueBounds {
            depth: 2,
            ..QueueBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    net.online(&a);
    let ts = net.ts();
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"1")).is_empty());
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"2")).is_empty());
    let got = net.send(a.addr, &a.relay(ts, c.fp(), b"3"));
    assert_eq!(got, vec![to(&a, error(status::SERVICE_UNAVAILABLE, 4))]);
    assert_eq!(net.server.queued_for(&c.fp()), 2);
    assert_eq!(
        net.register(&c),
        vec![to(&c, relayed(&a, b"1")), to(&c, relayed(&a, b"2"))]
    );
}

/// T10 (docs/SECURITY.md): one sender once pushed 3,800 events of 1 KB to one online
/// recipient in 1.1 s. Each recipient has a byte budget (16 KiB/s, burst 32 KiB) for all
/// senders together; over it, 429. Another recipient is not affected; the budget refills.
#[test]
fn relays_to_one_recipient_are_rate_limited() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    net.online(&c);
    let ts = net.ts();
    let mut delivered = 0;
    let mut refused = 0;
    for i in 0..60u32 {
        let mut event = vec![0x42; 1000];
        event[..4].copy_from_slice(&i.to_be_bytes());
        let got = net.send(a.addr, &a.relay(ts, b.fp(), &event));
        if got == vec![to(&b, relayed(&a, &event))] {
            delivered += 1;
        } else {
            assert_eq!(got, vec![to(&a, error(status::TOO_MANY_REQUESTS, 4))]);
            refused += 1;
        }
    }
    println!("relay flood: {delivered} of 60 events of 1000 bytes delivered, {refused} refused");
    assert_eq!(delivered, 32, "the 32 KiB burst");
    let got = net.send(a.addr, &a.relay(ts, c.fp(), b"to c"));
    assert_eq!(got, vec![to(&c, relayed(&a, b"to c"))], "another recipient");
    net.advance(1_000);
    let got = net.send(a.addr, &a.relay(net.ts(), b.fp(), &[7; 1000]));
    assert_eq!(got, vec![to(&b, relayed(&a, &[7; 1000]))], "refilled");
}

#[test]
fn relay_event_over_1200_bytes_is_413() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    for dest in [&b, &c] {
        let req = a.relay(ts, dest.fp(), &[0x42; 1201]);
        assert!(req.len() <= MAX_DATAGRAM);
        let got = net.send(a.addr, &req);
        assert_eq!(got, vec![to(&a, error(status::PAYLOAD_TOO_LARGE, 4))]);
    }
    assert_eq!(net.server.queued_for(&c.fp()), 0);
    // An empty event is malformed.
    let got = net.send(a.addr, &a.relay(ts, b.fp(), &[]));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 4))]);
}

#[test]
fn relay_must_be_signed_by_the_registered_key() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    let mallory = net.client("198.51.100.66:6666", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    for dest in [&b, &c] {
        // Unsigned.
        let p = Client::relay_payload(dest.fp(), b"x");
        let got = net.send(a.addr, &a.unsigned(4, ts, &p));
        assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 4))]);
        // Signed by another key, sent from a's (registered) address.
        let forged = mallory.relay(ts, dest.fp(), b"x");
        let got = net.send(a.addr, &forged);
        assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 4))]);
        // A signature that is garbage.
        let got = net.send(a.addr, &a.raw(PARAM_TO_SERVER, 4, &[9; 64], ts, &p));
        assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 4))]);
    }
    assert_eq!(net.server.queued_for(&c.fp()), 0);
    assert_eq!(net.server.stats().datagrams.relayed, 0);
    // From an unregistered source, even correctly signed: 403.
    let got = net.send(mallory.addr, &mallory.relay(ts, b.fp(), b"hi"));
    assert_eq!(got, vec![to(&mallory, error(status::FORBIDDEN, 4))]);
    // The legitimate one still goes through (the refusals recorded nothing).
    let got = net.send(a.addr, &a.relay(ts, b.fp(), b"x"));
    assert_eq!(got, vec![to(&b, relayed(&a, b"x"))]);
}

#[test]
fn replayed_relay_is_409() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let pkt = a.relay(net.ts(), b.fp(), b"once");
    assert_eq!(net.send(a.addr, &pkt), vec![to(&b, relayed(&a, b"once"))]);
    assert_eq!(
        net.send(a.addr, &pkt),
        vec![to(&a, error(status::CONFLICT, 4))]
    );
    let old = a.relay(net.ts() - 61, b.fp(), b"old");
    assert_eq!(
        net.send(a.addr, &old),
        vec![to(&a, error(status::CONFLICT, 4))]
    );
}

// ---------------------------------------------------------------------------------------
// Freshness, replays and moving a fingerprint
// ---------------------------------------------------------------------------------------

#[test]
fn replayed_registration_is_409_and_changes_nothing() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let cookie = net.cookie_for(&a);
    let pkt = a.register(net.ts(), Some(&cookie));
    assert_eq!(net.send(a.addr, &pkt), vec![to(&a, net.ok_for(&a))]);
    net.advance(2_000);
    let stats = net.server.stats().clone();
    let got = net.send(a.addr, &pkt);
    assert_eq!(got, vec![to(&a, error(status::CONFLICT, 2))]);
    assert_eq!(net.where_is(&a), Some(a.addr));
    assert_eq!(net.age_ms(&a), Some(2_000), "a replay does not refresh");
    assert_eq!(
        net.server.stats().datagrams.registrations,
        stats.datagrams.registrations
    );
    assert_eq!(net.server.online(), 1);
}

#[test]
fn registration_61_s_old_is_409() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let cookie = net.cookie_for(&a);
    let got = net.send(a.addr, &a.register(net.ts() - 61, Some(&cookie)));
    assert_eq!(got, vec![to(&a, error(status::CONFLICT, 2))]);
    // Without a cookie too: freshness is a cheap check that comes before the challenge.
    let got = net.send(a.addr, &a.register(net.ts() - 61, None));
    assert_eq!(got, vec![to(&a, error(status::CONFLICT, 2))]);
    // ... and from the future.
    let got = net.send(a.addr, &a.register(net.ts() + 61, Some(&cookie)));
    assert_eq!(got, vec![to(&a, error(status::CONFLICT, 2))]);
    assert_eq!(net.where_is(&a), None);
    // 60 s is still inside the window.
    let got = net.send(a.addr, &a.register(net.ts() - 60, Some(&cookie)));
    assert_eq!(got, vec![to(&a, net.ok_for(&a))]);
}

#[test]
fn registration_older_than_last_accepted_is_409() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    net.advance(10_000);
    net.online(&a);
    net.advance(1_000);
    let cookie = net.cookie_for(&a);
    let got = net.send(a.addr, &a.register(net.ts() - 5, Some(&cookie)));
    assert_eq!(got, vec![to(&a, error(status::CONFLICT, 2))]);
    assert_eq!(net.age_ms(&a), Some(1_000));
}

#[test]
fn registration_signed_by_another_key_is_401() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let mallory = net.client("198.51.100.66:6666", None);
    let cookie = net.cookie_for(&a);
    let ts = net.ts();
    let payload = a.register_payload(Some(&cookie));
    let sig = mallory.id.sign(&signed_message(ts, &payload));
    let got = net.send(a.addr, &a.raw(PARAM_TO_SERVER, 2, &sig, ts, &payload));
    assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 2))]);
    // Unsigned, and a certificate that is not one: 401 too.
    let got = net.send(a.addr, &a.unsigned(2, ts, &payload));
    assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 2))]);
    let mut junk_cert = vec![0, 40];
    junk_cert.extend_from_slice(&[0x30; 40]);
    junk_cert.extend_from_slice(&cookie);
    let got = net.send(a.addr, &a.signed(2, ts, &junk_cert));
    assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 2))]);
    assert_eq!(net.where_is(&a), None);
    assert_eq!(net.server.online(), 0);
    // Nothing was recorded: the genuine registration with the same timestamp goes through.
    let got = net.send(a.addr, &a.register(ts, Some(&cookie)));
    assert_eq!(got, vec![to(&a, net.ok_for(&a))]);
}

#[test]
fn newer_registration_from_new_address_moves_the_fingerprint() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    net.advance(1_000);
    let moved = a.at(addr("203.0.113.10:50000"));
    net.online(&moved);
    assert_eq!(net.where_is(&a), Some(moved.addr));
    assert_eq!(net.server.online(), 2);
    // The old address is not registered any more.
    assert_eq!(
        net.send(a.addr, &a.keepalive(64)),
        vec![to(&a, error(status::NOT_FOUND, 0))]
    );
    assert_eq!(
        net.send(a.addr, &a.lookup(b.fp())),
        vec![to(&a, error(status::FORBIDDEN, 5))]
    );
    // Lookups and relays now reach the new address.
    let got = net.send(b.addr, &b.lookup(a.fp()));
    assert_eq!(
        got,
        vec![
            to(&b, answer(&moved, online_at(&moved, 0), HOME)),
            to(&moved, punch(&b))
        ]
    );
    let got = net.send(b.addr, &b.relay(net.ts(), a.fp(), b"follow"));
    assert_eq!(got, vec![to(&moved, relayed(&b, b"follow"))]);
}

#[test]
fn registration_replayed_from_another_address_gets_a_cookie_and_moves_nothing() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let cookie = net.cookie_for(&a);
    let pkt = a.register(net.ts(), Some(&cookie));
    assert_eq!(net.send(a.addr, &pkt), vec![to(&a, net.ok_for(&a))]);

    let thief = a.at(addr("198.51.100.66:6666"));
    for wait in [0, 1_000, 30_000] {
        net.advance(wait);
        let got = net.send(thief.addr, &pkt);
        assert_eq!(got.len(), 1, "{got:?}");
        let Reply::Cookie(c) = got[0].reply else {
            panic!("expected a fresh cookie challenge, got {got:?}")
        };
        assert_ne!(c, cookie);
        assert_eq!(got, vec![to(&thief, Reply::Cookie(c))]);
        assert_eq!(net.where_is(&a), Some(a.addr));
    }
}

#[test]
fn another_fingerprint_registering_from_a_taken_address_replaces_it() {
    // A NAT reassigns a public port: the newest address-checked registration wins, and the
    // old holder of the address goes offline.
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.10:40000", None);
    net.online(&a);
    net.advance(1_000);
    net.online(&b);
    assert_eq!(net.where_is(&a), None);
    assert_eq!(net.where_is(&b), Some(b.addr));
    assert_eq!(net.server.online(), 1);
}

// ---------------------------------------------------------------------------------------
// Packets that get no answer, malformed and oversized packets
// ---------------------------------------------------------------------------------------

#[test]
fn packets_from_servers_are_never_answered() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    let ts = net.ts();
    let stats = net.server.stats().clone();
    for params in [0x01, 0x03] {
        for c in [&a, &u] {
            let pad = vec![0u8; 60];
            let pkts = [
                c.raw(params, 0, &[], 0, &pad),                       // keepalive
                c.raw(params, 2, &[], ts, &c.register_payload(None)), // register
                c.raw(
                    params,
                    4,
                    &[1; 64],
                    ts,
                    &Client::relay_payload(a.fp(), b"x"),
                ),
                c.raw(params, 5, &[], 0, &a.fp().0), // lookup
                c.raw(params, 8, &[], 0, &[]),       // fetch
                c.raw(params, 200, &[], 0, &pad),    // unknown type
                c.raw(params, 5, &[], 0, &[1; 3]),   // malformed payload
            ];
            for p in pkts {
                assert!(
                    net.send(c.addr, &p).is_empty(),
                    "answered params {params:#x}"
                );
            }
        }
    }
    // Malformed roots with bit 0x01: reserved bits, truncated, too large, shifted.
    let bad: [Vec<u8>; 5] = [
        vec![0x09; 100],
        vec![0x01, 5, 0xFF, 0xFF, 0, 0],
        vec![0x01; 1401],
        vec![0x05, 200, 5],
        vec![0x01],
    ];
    for p in bad {
        assert!(net.send(u.addr, &p).is_empty());
        assert!(net.send(a.addr, &p).is_empty());
    }
    assert_eq!(
        net.server.stats().emitted.datagrams_out,
        stats.emitted.datagrams_out
    );
    assert_eq!(
        net.server.stats().datagrams.registrations,
        stats.datagrams.registrations
    );
}

#[test]
fn reply_types_are_never_answered() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    net.advance(2_000);
    for ty in [1u8, 3, 6, 7, 9] {
        for c in [&a, &u] {
            for payload in [vec![], vec![0xEE; 80]] {
                assert!(net.send(c.addr, &c.unsigned(ty, 0, &payload)).is_empty());
                assert!(net
                    .send(c.addr, &c.signed(ty, net.ts(), &payload))
                    .is_empty());
            }
        }
    }
    assert_eq!(
        net.age_ms(&a),
        Some(2_000),
        "a reply type is not a keepalive"
    );
}

#[test]
fn datagram_over_1400_bytes_is_413() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    for c in [&u, &a] {
        let big = c.keepalive(1401);
        let got = net.send(c.addr, &big);
        assert_eq!(
            got,
            vec![to_addr(
                c.addr,
                None,
                error(status::PAYLOAD_TOO_LARGE, 0xFF)
            )]
        );
        assert!(got[0].len <= 1401);
        // 1400 bytes is fine (a padded keepalive: refreshes or 404s).
        let ok = net.send(c.addr, &c.keepalive(1400));
        assert_eq!(ok.is_empty(), std::ptr::eq(c, &a));
    }
}

#[test]
fn garbage_gets_a_400_no_larger_than_itself_or_nothing() {
    let mut net = Net::new();
    let u = net.client("198.51.100.5:1000", None);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0xFF],
        vec![0x02, 0x05],
        vec![0xF0; 100],
        vec![0x02, 0x02, 0x01, 0x2C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // sig_len past end
        vec![0x06, 0xFF, 0x02, 1, 2, 3],                                  // shift past end
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec(),
    ];
    for bytes in cases {
        let got = net.send(u.addr, &bytes);
        assert!(got.len() <= 1, "{got:?}");
        if let Some(s) = got.first() {
            assert_eq!(
                *s,
                to(&u, error(status::BAD_REQUEST, 0xFF)),
                "for {bytes:?}"
            );
            assert!(s.len <= bytes.len());
        }
    }
    assert_eq!(net.server.online(), 0);
    // A malformed registration payload (cookie of the wrong length): 400, type 2.
    let mut p = u.register_payload(None);
    p.extend_from_slice(&[1; 7]);
    let got = net.send(u.addr, &u.signed(2, net.ts(), &p));
    assert_eq!(got, vec![to(&u, error(status::BAD_REQUEST, 2))]);
}

#[test]
fn unknown_type_200_is_400_with_request_type_200() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    // From an unknown source: only if the 400 fits in the request.
    assert!(net.send(u.addr, &u.unsigned(200, 0, &[])).is_empty());
    let got = net.send(u.addr, &u.unsigned(200, 0, &[0; 40]));
    assert_eq!(got, vec![to(&u, error(status::BAD_REQUEST, 200))]);
    // From a registered client: always.
    let got = net.send(a.addr, &a.unsigned(200, 0, &[]));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 200))]);
    assert!(!got[0].detail.is_empty());
}

// ---------------------------------------------------------------------------------------
// The shifted layout
// ---------------------------------------------------------------------------------------

#[test]
fn shifted_client_gets_everything_shifted() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let s = net.client("192.0.2.50:5555", Some(5));
    net.online(&a);
    let ts = net.ts();
    // An event queued while s is offline comes after the OK, shifted.
    assert!(net.send(a.addr, &a.relay(ts, s.fp(), b"early")).is_empty());
    // `register` asserts the cookie and the OK came shifted with shift_len 5.
    let rest = net.register(&s);
    assert_eq!(rest, vec![to(&s, relayed(&a, b"early"))]);
    assert_eq!(rest[0].shift, Some(5));

    // Later relayed events, punch requests and answers are shifted too.
    let got = net.send(a.addr, &a.relay(ts, s.fp(), b"later"));
    assert_eq!(got, vec![to(&s, relayed(&a, b"later"))]);
    let got = net.send(a.addr, &a.lookup(s.fp()));
    assert_eq!(
        got,
        vec![
            to(&a, answer(&s, online_at(&s, 0), HOME)),
            to(&s, punch(&a))
        ]
    );
    let got = net.send(s.addr, &s.lookup(a.fp()));
    assert_eq!(
        got,
        vec![
            to(&s, answer(&a, online_at(&a, 0), HOME)),
            to(&a, punch(&s))
        ]
    );
    let got = net.send(s.addr, &s.relay(ts, a.fp(), b"back"));
    assert_eq!(
        got,
        vec![to(&a, relayed(&s, b"back"))],
        "a registered plain"
    );
    // Shifted keepalives refresh; shifted errors are shifted.
    net.advance(1_000);
    assert!(net.send(s.addr, &s.keepalive(s.header_len(0))).is_empty());
    assert_eq!(net.age_ms(&s), Some(0));
    let got = net.send(s.addr, &s.unsigned(200, 0, &[]));
    assert_eq!(got, vec![to(&s, error(status::BAD_REQUEST, 200))]);
}

#[test]
fn shifted_registration_with_any_shift_len() {
    let mut net = Net::new();
    for (i, shift) in [0u8, 1, 17, 100].into_iter().enumerate() {
        let c = net.client(&format!("192.0.2.{}:4000", 60 + i), Some(shift));
        net.online(&c);
    }
}

// ---------------------------------------------------------------------------------------
// Property: arbitrary datagrams from an unchecked source
// ---------------------------------------------------------------------------------------

/// Bytes that look like client packets often enough to reach the handlers.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1500),
        (
            prop::sample::select(vec![0u8, 2, 6]),
            0u8..12,
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(params, ty, rest)| {
                let mut v = vec![params];
                if params & 4 != 0 {
                    v.push(rest.first().copied().unwrap_or(0) % 4);
                }
                v.push(ty);
                v.extend_from_slice(&[0, 0]);
                v.extend_from_slice(&rest);
                v
            }),
    ]
}

/// The input CI's random seed found (stop 20): `datagram()` can build `[0, 1, 0, 0]` and 16
/// more bytes, an RFC 3489 Binding request, which the server answers with MAPPED-ADDRESS
/// (32 bytes, 1.6 times; docs/PROTOCOL.md §11.4). The harness holds it to STUN's bound.
#[test]
fn classic_stun_request_from_a_stranger_is_answered_under_three_times() {
    let mut net = Net::new();
    let mut req = vec![0u8; 20];
    req[1] = 1;
    let got = net.send(addr("198.51.100.5:1000"), &req);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].dst, addr("198.51.100.5:1000"));
    assert_eq!(
        got[0].reply,
        Reply::Stun {
            message_type: BINDING_SUCCESS
        }
    );
    assert_eq!(got[0].len, 32);
    // Anything else of 20 bytes from the stranger (here a Root keepalive-shaped header) gets
    // nothing larger than itself.
    req[1] = 0;
    for s in net.send(addr("198.51.100.5:1000"), &req) {
        assert!(s.len <= 20, "{s:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_never_amplify_nor_change_state(bytes in datagram()) {
        let mut net = Net::with(UdpConfig {
            tables: TableBounds { max_clients: 64, ..TableBounds::default() },
            limits: RateLimits { max_entries: 64, ..RateLimits::default() },
            ..UdpConfig::default()
        });
        let a = net.client("192.0.2.10:40000", None);
        net.online(&a);
        net.advance(1_000);
        let before = net.server.client(&a.fp(), net.now);
        // `send` asserts no amplification and that nothing goes to a third address.
        let got = net.send(addr("198.51.100.5:1000"), &bytes);
        prop_assert!(got.len() <= 1);
        if bytes.first().is_some_and(|p| p & 1 != 0) {
            prop_assert!(got.is_empty());
        }
        prop_assert_eq!(net.server.client(&a.fp(), net.now), before);
        prop_assert_eq!(net.server.online(), 1);
    }

    #[test]
    fn arbitrary_datagrams_from_a_client_never_move_it(bytes in datagram()) {
        let mut net = Net::with(UdpConfig {
            tables: TableBounds { max_clients: 64, ..TableBounds::default() },
            limits: RateLimits { max_entries: 64, ..RateLimits::default() },
            ..UdpConfig::default()
        });
        let a = net.client("192.0.2.10:40000", None);
        let b = net.client("192.0.2.20:40000", None);
        net.online(&a);
        net.online(&b);
        net.advance(1_000);
        let got = net.send(a.addr, &bytes);
        // An answer to a, and at most a punch request for b (a lookup of b's fingerprint).
        let elsewhere = got.iter().filter(|s| s.dst != a.addr);
        prop_assert!(elsewhere.clone().all(|s| matches!(s.reply, Reply::Punch { .. })), "{:?}", got);
        prop_assert_eq!(net.where_is(&a), Some(a.addr));
        prop_assert_eq!(net.where_is(&b), Some(b.addr));
        prop_assert_eq!(net.age_ms(&b), Some(1_000));
    }
}

// ---------------------------------------------------------------------------------------
// Bounds: directory, queues, budgets
// ---------------------------------------------------------------------------------------

#[test]
fn full_directory_of_kept_alive_clients_is_503_and_evicts_nobody() {
    let mut net = Net::with(UdpConfig {
        tables: TableBounds {
            max_clients: 2,
            ..TableBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    net.advance(1_000);
    assert!(net.send(a.addr, &a.keepalive(12)).is_empty());
    assert!(net.send(b.addr, &b.keepalive(12)).is_empty());
    let cookie = net.cookie_for(&c);
    let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
    assert_eq!(got, vec![to(&c, error(status::SERVICE_UNAVAILABLE, 2))]);
    assert_eq!(
        (net.where_is(&a), net.where_is(&b)),
        (Some(a.addr), Some(b.addr))
    );
    assert_eq!(net.where_is(&c), None);
}

/// A full directory evicts a client that never kept alive to admit a newcomer; the
/// evicted fingerprint's freshness state must not block the newcomer (regression: it once
/// answered 503 "freshness table full" after evicting).
#[test]
fn full_directory_evicts_a_client_that_never_kept_alive() {
    let mut net = Net::with(UdpConfig {
        tables: TableBounds {
            max_clients: 2,
            ..TableBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    net.advance(1_000);
    assert!(net.send(a.addr, &a.keepalive(12)).is_empty()); // a kept alive, b never did
    let cookie = net.cookie_for(&c);
    let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
    assert_eq!(
        got,
        vec![to(&c, net.ok_for(&c))],
        "detail: {:?}",
        got.first().map(|s| &s.detail)
    );
    assert_eq!(net.where_is(&a), Some(a.addr));
    assert_eq!(net.where_is(&b), None);
    assert_eq!(net.where_is(&c), Some(c.addr));
}

/// T6 (docs/SECURITY.md): every length field of the UDP plane lying (0, past the
/// datagram, at its largest value), from a registered client: each packet gets a typed
/// refusal (400 or 413) or nothing, never more bytes than it had, and nothing changes.
#[test]
fn lying_lengths_in_datagrams_are_refused_and_change_nothing() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    let cert_len = |n: u16, rest: &[u8]| [n.to_be_bytes().to_vec(), rest.to_vec()].concat();
    let mut sig_past = a.unsigned(0, ts, &[]);
    sig_past[2..4].copy_from_slice(&0xffffu16.to_be_bytes()); // sig_len past the datagram
                                                              // Shifted (params 0x06), shift_len 200: the datagram ends inside the first shift.
    let shift_past = vec![0x06, 200, 5, 1, 2, 3];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("sig_len 0xFFFF", sig_past),
        ("shifted, cut short", shift_past),
        ("register, cert_len 0", a.signed(2, ts, &cert_len(0, &[]))),
        (
            "register, cert_len 0xFFFF",
            a.signed(2, ts, &cert_len(0xffff, &[1; 40])),
        ),
        (
            "register, cert_len 1 and 100 bytes after",
            a.signed(2, ts, &cert_len(1, &[0x30; 101])),
        ),
        ("lookup of 31 bytes", a.unsigned(5, ts, &[7; 31])),
        ("lookup of 33 bytes", a.unsigned(5, ts, &[7; 33])),
        ("relay with no event", a.signed(4, ts, &b.fp().0)),
        (
            "relay of 1201 bytes",
            a.signed(4, ts, &[b.fp().0.to_vec(), vec![1; 1201]].concat()),
        ),
        ("fetch with a payload", a.unsigned(8, ts, &[0; 8])),
    ];
    let before = (
        net.server.directory_digest(),
        net.where_is(&a),
        net.where_is(&b),
    );
    for (what, bytes) in cases {
        let got = net.send(a.addr, &bytes);
        for sent in &got {
            assert!(
                matches!(sent.reply, Reply::Error { status, .. } if status == 400 || status == 413),
                "{what}: {sent:?}"
            );
        }
        let after = (
            net.server.directory_digest(),
            net.where_is(&a),
            net.where_is(&b),
        );
        assert_eq!(before, after, "{what}: nothing changes");
    }
}

/// T4 (docs/SECURITY.md): registration budgets were per /64 only, so one IPv6 /48 had
/// 65,536 of them. A /48 as a whole now gets 4 times a /64's budget; another /48 is not
/// affected.
#[test]
fn one_ipv6_site_shares_one_registration_budget() {
    let mut net = Net::with(UdpConfig {
        limits: RateLimits {
            register_per_s: 1, // a /64: 1/s, burst 2; a /48: 4/s, burst 8
            ..RateLimits::default()
        },
        ..UdpConfig::default()
    });
    let mut accepted = 0;
    for i in 1..=20 {
        let c = net.client(&format!("[2001:db8:1:{i:x}::1]:40000"), None);
        let cookie = net.cookie_for(&c);
        let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
        if got == vec![to(&c, net.ok_for(&c))] {
            accepted += 1;
        } else {
            assert_eq!(got, vec![to(&c, error(status::TOO_MANY_REQUESTS, 2))]);
        }
    }
    println!("one /48, 20 /64s: {accepted} of 20 registrations accepted at once");
    assert_eq!(accepted, 8, "the /48's burst");
    let other = net.client("[2001:db8:2::1]:40000", None);
    let cookie = net.cookie_for(&other);
    let got = net.send(other.addr, &other.register(net.ts(), Some(&cookie)));
    assert_eq!(got, vec![to(&other, net.ok_for(&other))], "another /48");
    // A /64 still has its own, smaller budget: 2 at once.
    let mut same = 0;
    for i in 1..=3 {
        let c = net.client(&format!("[2001:db8:3::{i:x}]:40000"), None);
        let cookie = net.cookie_for(&c);
        let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
        same += usize::from(got == vec![to(&c, net.ok_for(&c))]);
    }
    assert_eq!(same, 2, "one /64's burst");
}

/// Eviction keeps working past its first victims (regression: evicted clients left their
/// element in the expiry index, the scan looked only at the first 64, and after 64
/// evictions every newcomer got 503 until the TTL passed). 100 silent clients fill the
/// directory, then 200 more register: each evicts the longest-silent one.
#[test]
fn eviction_never_stops_while_silent_clients_remain() {
    let mut net = Net::with(UdpConfig {
        tables: TableBounds {
            max_clients: 100,
            ..TableBounds::default()
        },
        limits: RateLimits {
            register_per_s: 1_000,
            ..RateLimits::default()
        },
        ..UdpConfig::default()
    });
    let clients: Vec<Client> = (0..300)
        .map(|i| net.client(&format!("192.0.2.{}:{}", 1 + i % 200, 40_000 + i), None))
        .collect();
    let mut ok = 0;
    for c in &clients {
        net.advance(1); // the longest silent goes first; ties go by fingerprint
        let cookie = net.cookie_for(c);
        let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
        ok += usize::from(got == vec![to(c, net.ok_for(c))]);
    }
    println!("eviction: {ok} of 300 registrations accepted into a directory of 100");
    assert_eq!(ok, 300, "every newcomer evicts a silent client");
    assert_eq!(net.server.online(), 100);
    assert!(clients[..200].iter().all(|c| net.where_is(c).is_none()));
    assert!(clients[200..]
        .iter()
        .all(|c| net.where_is(c) == Some(c.addr)));
}

/// Clients that expired within the last 60 s still have freshness state; it must not keep
/// new clients out of an emptied directory (regression: 503 until the window passed).
#[test]
fn expired_clients_make_room_for_new_ones() {
    let mut net = Net::with(UdpConfig {
        timers: UdpTimers {
            ttl_ms: 6_000,
            ..UdpTimers::default()
        },
        tables: TableBounds {
            max_clients: 2,
            ..TableBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    net.advance(7_000);
    assert_eq!(net.server.online(), 0);
    let cookie = net.cookie_for(&c);
    let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
    assert_eq!(
        got,
        vec![to(&c, net.ok_for(&c))],
        "detail: {:?}",
        got.first().map(|s| &s.detail)
    );
}

/// The global byte limit: 503 for the sender holding the most; a sender with less gets in
/// by evicting that sender's oldest event (docs/PROTOCOL.md §5.8).
#[test]
fn global_queue_byte_limit_is_503() {
    let mut net = Net::with(UdpConfig {
        queue: QueueBounds {
            bytes: 10,
            ..QueueBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    let d = net.client("203.0.113.4:3000", None);
    net.online(&a);
    let ts = net.ts();
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"123456")).is_empty());
    let got = net.send(a.addr, &a.relay(ts, d.fp(), b"12345"));
    assert_eq!(got, vec![to(&a, error(status::SERVICE_UNAVAILABLE, 4))]);
    assert!(net.send(a.addr, &a.relay(ts, d.fp(), b"1234")).is_empty());
    assert_eq!(
        (
            net.server.queued_for(&c.fp()),
            net.server.queued_for(&d.fp())
        ),
        (1, 1)
    );
    // Another sender gets its share: the oldest event of the sender holding the most goes.
    let b = net.client("192.0.2.20:40000", None);
    net.online(&b);
    assert!(net.send(b.addr, &b.relay(ts, d.fp(), b"12345")).is_empty());
    assert_eq!(
        (
            net.server.queued_for(&c.fp()),
            net.server.queued_for(&d.fp())
        ),
        (0, 2)
    );
}

#[test]
fn queued_events_expire_by_age() {
    let mut net = Net::with(UdpConfig {
        queue: QueueBounds {
            age_ms: 5_000,
            ..QueueBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    net.online(&a);
    assert!(net
        .send(a.addr, &a.relay(net.ts(), c.fp(), b"old"))
        .is_empty());
    net.advance(3_000);
    assert!(net
        .send(a.addr, &a.relay(net.ts(), c.fp(), b"new"))
        .is_empty());
    assert!(net
        .server
        .poll_timeout()
        .is_some_and(|t| t <= MONO0 + 5_000));
    net.advance(2_000); // "old" is 5 s old: dropped by handle_timeout
    assert_eq!(net.server.queued_for(&c.fp()), 1);
    assert_eq!(net.register(&c), vec![to(&c, relayed(&a, b"new"))]);
}

#[test]
fn relay_too_large_for_the_recipients_shifted_layout_is_413() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let s = net.client("192.0.2.50:5555", Some(60)); // 13 + 240 bytes of header
    net.online(&a);
    net.online(&s);
    let ts = net.ts();
    let got = net.send(a.addr, &a.relay(ts, s.fp(), &[1; 1200]));
    assert_eq!(got, vec![to(&a, error(status::PAYLOAD_TOO_LARGE, 4))]);
    let fits = vec![2; 1400 - 13 - 240 - 32];
    let got = net.send(a.addr, &a.relay(ts, s.fp(), &fits));
    assert_eq!(got, vec![to(&s, relayed(&a, &fits))]);
    assert_eq!(got[0].len, 1400);
}

#[test]
fn lookup_answers_are_held_to_a_byte_budget_per_source() {
    let mut net = Net::with(UdpConfig {
        limits: RateLimits {
            lookup_bytes_per_s: 200, // an answer to a plain client costs 12 + 49 + 10 bytes
            ..RateLimits::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let mut answered = 0;
    for _ in 0..5 {
        answered += net
            .send(a.addr, &a.lookup(b.fp()))
            .iter()
            .filter(|s| s.dst == a.addr)
            .count();
    }
    assert_eq!(answered, 2, "200 bytes hold two 71-byte answers");
    net.advance(1_000);
    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(got[0], to(&a, answer(&b, online_at(&b, 1), HOME)));
    // Loopback sources are exempt.
    let l = net.client("127.0.0.1:9000", None);
    net.online(&l);
    for _ in 0..10 {
        let got = net.send(l.addr, &l.lookup(b.fp()));
        assert_eq!(got.iter().filter(|s| s.dst == l.addr).count(), 1);
    }
}

// ---------------------------------------------------------------------------------------
// `serve --accept-replayed` (docs/PROTOCOL.md §10): no freshness window, no address check
// ---------------------------------------------------------------------------------------

fn replaying() -> Net {
    Net::with(UdpConfig {
        accept_replayed: true,
        ..UdpConfig::default()
    })
}

#[test]
fn accept_replayed_registers_without_a_cookie_and_with_a_foreign_one() {
    let mut net = replaying();
    let a = net.client("127.0.0.1:40000", None);
    let b = net.client("127.0.0.1:40001", Some(3));
    // No cookie: no type-9 challenge, the OK at once.
    let got = net.send(a.addr, &a.register(net.ts(), None));
    assert_eq!(got, vec![to(&a, net.ok_for(&a))]);
    // A cookie minted by another server (for another address): not checked.
    let got = net.send(b.addr, &b.register(net.ts(), Some(&[0xA5; 16])));
    assert_eq!(got, vec![to(&b, net.ok_for(&b))]);
    assert_eq!(net.where_is(&a), Some(a.addr));
    assert_eq!(net.where_is(&b), Some(b.addr));
    assert_eq!(net.server.stats().datagrams.cookies_sent, 0);
    // The registered clients work as usual.
    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(
        got,
        vec![
            to(&a, answer(&b, online_at(&b, 0), HOME)),
            to(&b, punch(&a))
        ]
    );
}

#[test]
fn accept_replayed_takes_timestamps_days_old_or_ahead() {
    let mut net = replaying();
    let a = net.client("127.0.0.1:40000", None);
    let b = net.client("127.0.0.1:40001", None);
    let days = 3 * 86_400;
    let got = net.send(a.addr, &a.register(net.ts() - days, None));
    assert_eq!(got, vec![to(&a, net.ok_for(&a))]);
    let got = net.send(b.addr, &b.register(net.ts() + 3_600, None));
    assert_eq!(got, vec![to(&b, net.ok_for(&b))]);
    // Relays too: an old signed event is forwarded.
    let got = net.send(
        a.addr,
        &a.relay(net.ts() - days + 1, b.fp(), b"from the capture"),
    );
    assert_eq!(got, vec![to(&b, relayed(&a, b"from the capture"))]);
}

#[test]
fn accept_replayed_still_refuses_exact_replays_and_older_packets_after_sweeps() {
    let mut net = replaying();
    let a = net.client("127.0.0.1:40000", None);
    let b = net.client("127.0.0.1:40001", None);
    let t = net.ts() - 86_400;
    let first = a.register(t, None);
    let second = a.register(t, Some(&[7; 16])); // the capture's retry with its cookie
    assert_eq!(net.send(a.addr, &first), vec![to(&a, net.ok_for(&a))]);
    assert_eq!(net.send(a.addr, &second), vec![to(&a, net.ok_for(&a))]);
    let got = net.send(b.addr, &b.register(net.ts(), None));
    assert_eq!(got, vec![to(&b, net.ok_for(&b))]);
    let ev = a.relay(t + 1, b.fp(), b"once");
    assert_eq!(net.send(a.addr, &ev), vec![to(&b, relayed(&a, b"once"))]);
    // Well past the freshness sweep (every 10 s): the state of day-old timestamps is kept.
    net.advance(65_000);
    net.send(a.addr, &a.keepalive(64));
    let stats = net.server.stats().clone();
    for pkt in [&first, &second] {
        assert_eq!(
            net.send(a.addr, pkt),
            vec![to(&a, error(status::CONFLICT, 2))]
        );
    }
    assert_eq!(
        net.send(a.addr, &ev),
        vec![to(&a, error(status::CONFLICT, 4))]
    );
    // Older than the newest accepted for the fingerprint.
    assert_eq!(
        net.send(a.addr, &a.register(t - 10, None)),
        vec![to(&a, error(status::CONFLICT, 2))]
    );
    // The same packet from another source port is a replay too: it moves nothing.
    let elsewhere = a.at(addr("127.0.0.1:40999"));
    assert_eq!(
        net.send(elsewhere.addr, &first),
        vec![to(&elsewhere, error(status::CONFLICT, 2))]
    );
    assert_eq!(net.where_is(&a), Some(a.addr));
    assert_eq!(
        net.server.stats().datagrams.registrations,
        stats.datagrams.registrations
    );
    // A newer one from there moves it (no address check).
    let got = net.send(elsewhere.addr, &a.register(t + 2, None));
    assert_eq!(got, vec![to(&elsewhere, net.ok_for(&elsewhere))]);
    assert_eq!(net.where_is(&a), Some(elsewhere.addr));
}

#[test]
fn accept_replayed_keeps_the_certificate_and_signature_checks() {
    let mut net = replaying();
    let a = net.client("127.0.0.1:40000", None);
    let mallory = net.client("127.0.0.1:40666", None);
    let ts = net.ts() - 86_400;
    let payload = a.register_payload(None);
    let sig = mallory.id.sign(&signed_message(ts, &payload));
    let got = net.send(a.addr, &a.raw(PARAM_TO_SERVER, 2, &sig, ts, &payload));
    assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 2))]);
    let got = net.send(a.addr, &a.unsigned(2, ts, &payload));
    assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 2))]);
    assert_eq!(net.server.online(), 0);
    // Malformed payloads are still 400 (a cookie of 5 bytes is no cookie).
    let mut bad = payload.clone();
    bad.extend_from_slice(&[1; 5]);
    let got = net.send(a.addr, &a.signed(2, ts, &bad));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 2))]);
}

#[test]
fn without_accept_replayed_a_capture_replay_gets_challenges_and_409s() {
    // The default server: what `rendezvous replay` reports against it.
    let mut net = Net::new();
    let a = net.client("127.0.0.1:40000", None);
    let got = net.send(a.addr, &a.register(net.ts(), Some(&[0xA5; 16])));
    assert!(
        matches!(
            got[..],
            [Sent {
                reply: Reply::Cookie(_),
                ..
            }]
        ),
        "{got:?}"
    );
    let got = net.send(a.addr, &a.register(net.ts() - 86_400, None));
    assert_eq!(got, vec![to(&a, error(status::CONFLICT, 2))]);
    assert_eq!(net.server.online(), 0);
}

/// T3 (docs/SECURITY.md): every request a client sends, whole and cut at every length,
/// plus every type byte with an empty body, each from its own address that never passed
/// the address check (loopback, so no rate limit hides an answer): no reply goes anywhere
/// else, and none is larger than its request. The worst ratio is printed.
#[test]
fn every_request_type_from_an_unchecked_source_gets_at_most_its_own_size_back() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    let mut requests: Vec<(String, Vec<u8>)> = vec![
        ("register".into(), a.register(ts, None)),
        ("register+cookie".into(), a.register(ts, Some(&[7; 16]))),
        ("keepalive".into(), a.keepalive(a.header_len(0) + 4)),
        ("lookup".into(), a.lookup(b.fp())),
        ("relay".into(), a.relay(ts, b.fp(), b"hello")),
        ("fetch".into(), a.fetch()),
    ];
    for ty in 0..=255u8 {
        requests.push((format!("type {ty} unsigned"), a.unsigned(ty, ts, &[])));
        requests.push((format!("type {ty} signed"), a.signed(ty, ts, &[0; 8])));
    }
    let (mut probes, mut answered) = (0u32, 0u32);
    let mut worst = (0.0f64, String::new());
    for (name, req) in &requests {
        for n in 1..=req.len() {
            probes += 1;
            let src = SocketAddr::from((
                [127, 0, 1, (probes % 250) as u8 + 1],
                1024 + (probes % 60_000) as u16,
            ));
            let mut out: Vec<(SocketAddr, usize)> = Vec::new();
            net.server
                .handle_datagram(net.now, src, &req[..n], &mut |dst, bytes| {
                    out.push((dst, bytes.len()))
                });
            for (dst, len) in out {
                assert_eq!(dst, src, "{name} cut at {n}: a reply to another address");
                answered += 1;
                let ratio = len as f64 / n as f64;
                assert!(ratio <= 1.0, "{name} cut at {n}: {len} bytes back");
                if ratio > worst.0 {
                    worst = (ratio, format!("{name}, {n} bytes in, {len} out"));
                }
            }
        }
    }
    println!(
        "figure: T3 {probes} probes ({} requests at every length), {answered} answered, \
         worst reply/request {:.2} ({}); QUIC's bound is 3",
        requests.len(),
        worst.0,
        worst.1
    );
}
