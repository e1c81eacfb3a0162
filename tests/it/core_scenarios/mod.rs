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

use rendezvous::core::udp::{UdpConfig, UdpCore};
use rendezvous::core::Now;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::stun::{classify, Stun};
use rendezvous::wire::udp::root::{
    signed_message, PARAM_FROM_SERVER, PARAM_SHIFTED, PARAM_TO_SERVER,
};
use rendezvous::wire::udp::{canonical_addr, LookupStatus, OkInfo, Payload, ServerEvent};
use rendezvous::wire::{Fingerprint, PacketType, Root, RootHeader, MAX_DATAGRAM};

mod accept_replayed;
mod amplification;
mod bounds;
mod freshness;
mod keepalive;
mod lookup;
mod malformed;
mod registration;
mod relay;
mod shifted;

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
        let stun = classify(bytes).is_some();
        for (dst, b) in &out {
            if !before.contains(dst) && !after.contains(dst) {
                assert_eq!(
                    *dst, src_c,
                    "datagram to an address that never passed the address check"
                );
                // docs/PROTOCOL.md §4 and §11.4: no reply larger than its request, but a
                // STUN Binding answer, which stays under 3 times its request.
                let bound_ok = if stun {
                    b.len() < 3 * bytes.len()
                } else {
                    b.len() <= bytes.len()
                };
                assert!(
                    bound_ok,
                    "amplification: {}-byte reply to a {}-byte request from unchecked {src}",
                    b.len(),
                    bytes.len()
                );
            }
        }
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
