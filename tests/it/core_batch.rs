//! `UdpCore::handle_batch` (docs/PROTOCOL.md §5.2, "Batch verification") against
//! `handle_datagram` one at a time: two servers with the same seed, configuration and
//! clock are fed the same datagrams, one as a batch and one datagram after another, and
//! must send the same bytes to the same addresses and end in the same state.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use rendezvous::client::{decode, Incoming};
use rendezvous::core::udp::{UdpConfig, UdpCore};
use rendezvous::core::Now;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::root::{signed_message, PARAM_TO_SERVER};
use rendezvous::wire::{PacketType, RootHeader};

const SEED: [u8; 32] = [0x3c; 32];

/// Every datagram a server sent: destination and exact bytes.
type Sent = Vec<(SocketAddr, Vec<u8>)>;

/// Two servers in the same state: `single` is fed one datagram at a time, `batched` whole
/// batches.
struct Twins {
    single: UdpCore,
    batched: UdpCore,
    now: Now,
}

impl Twins {
    fn new() -> Twins {
        let unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let now = Now {
            mono_ms: 1_000_000,
            unix_s,
        };
        let cfg = UdpConfig::default();
        Twins {
            single: UdpCore::new(cfg.clone(), SEED, now),
            batched: UdpCore::new(cfg, SEED, now),
            now,
        }
    }

    /// Feeds `datagrams` to both (one at a time, and as one batch); asserts they sent the
    /// same bytes and returns them.
    fn feed(&mut self, datagrams: &[(SocketAddr, Vec<u8>)]) -> Sent {
        let mut one = Sent::new();
        for (src, d) in datagrams {
            self.single
                .handle_datagram(self.now, *src, d, &mut |to, b| one.push((to, b.to_vec())));
        }
        let mut batch = Sent::new();
        let items = datagrams.iter().map(|(src, d)| (*src, d.as_slice()));
        self.batched
            .handle_batch(self.now, items, &mut |to, b| batch.push((to, b.to_vec())));
        assert_eq!(
            one, batch,
            "a batch answered differently from one at a time"
        );
        self.assert_same_state();
        one
    }

    fn assert_same_state(&self) {
        let (a, b) = (&self.single, &self.batched);
        assert_eq!(a.directory_digest(), b.directory_digest());
        assert_eq!(a.online(), b.online());
        assert_eq!(a.unlisted(), b.unlisted());
        assert_eq!(
            format!("{:?}", a.stats()),
            format!("{:?}", b.stats()),
            "counters"
        );
    }

    /// The cookie for `src` (the same at both: same seed, same clock), from a
    /// registration without one that both answer alike.
    fn cookie(&mut self, id: &Identity, src: SocketAddr) -> [u8; 16] {
        let sent = self.feed(&[(src, register(id, id.cert_der(), self.now.unix_s, None))]);
        let [(_, bytes)] = sent.as_slice() else {
            panic!("one challenge expected, got {sent:?}");
        };
        let Incoming::Cookie(cookie) = decode(bytes) else {
            panic!("a challenge expected, got {bytes:?}");
        };
        cookie
    }
}

fn packet(ty: PacketType, payload: &[u8], signature: &[u8], ts: u64) -> Vec<u8> {
    RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: ty,
        signature,
        timestamp: ts,
    }
    .to_vec(payload)
    .expect("emit root")
}

/// A listed registration carrying `cert`, signed by `id`.
fn register(id: &Identity, cert: &[u8], ts: u64, cookie: Option<&[u8; 16]>) -> Vec<u8> {
    let mut p = u16::try_from(cert.len())
        .expect("len")
        .to_be_bytes()
        .to_vec();
    p.extend_from_slice(cert);
    p.extend(cookie.into_iter().flatten());
    packet(
        PacketType::Register,
        &p,
        &id.sign(&signed_message(ts, &p)),
        ts,
    )
}

fn ed25519() -> Identity {
    Identity::generate(KeyAlgorithm::Ed25519, "batch").expect("identity")
}

fn at(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 51, (i / 200) as u8, (i % 200 + 1) as u8], 4000))
}

#[test]
fn mixed_batch_answers_as_one_at_a_time() {
    let mut t = Twins::new();
    let ts = t.now.unix_s;
    // K is online before the batch (for its keepalive and lookup in it).
    let k = ed25519();
    let ck = t.cookie(&k, at(0));
    let ok = t.feed(&[(at(0), register(&k, k.cert_der(), ts, Some(&ck)))]);
    assert_eq!(ok.len(), 1);
    assert_eq!(t.single.online(), 1);

    let good = ed25519();
    let other_good = ed25519();
    let forged = ed25519();
    let bad_cert = ed25519();
    let ecdsa = Identity::generate(KeyAlgorithm::EcdsaP256, "batch").expect("identity");
    let ids = [&good, &other_good, &forged, &bad_cert, &ecdsa];
    let cookies: Vec<[u8; 16]> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| t.cookie(id, at(i + 1)))
        .collect();
    let reg = |i: usize, id: &Identity, cert: &[u8]| {
        (at(i + 1), register(id, cert, ts, Some(&cookies[i])))
    };
    // The certificate's self-signature altered in its last byte.
    let mut altered = bad_cert.cert_der().to_vec();
    *altered.last_mut().expect("cert") ^= 0x01;
    let keepalive = packet(PacketType::Keepalive, &[0; 20], &[], 0);
    let lookup = packet(PacketType::Lookup, &good.fingerprint().0, &[], 0);
    let batch = vec![
        reg(0, &good, good.cert_der()),
        // Packet signature by another key: 401.
        reg(2, &other_good, forged.cert_der()),
        // Bad certificate self-signature: 401.
        reg(3, &bad_cert, &altered),
        (at(0), keepalive),
        (at(0), lookup),
        reg(1, &other_good, other_good.cert_der()),
        reg(4, &ecdsa, ecdsa.cert_der()),
        // The same registration again: its certificate cached now, a replay (409).
        reg(0, &good, good.cert_der()),
        // No cookie: a challenge.
        (at(9), register(&good, good.cert_der(), ts, None)),
    ];
    let sent = t.feed(&batch);
    // OKs to good, other_good and the ECDSA client; 401, 401, 409; the lookup's answer
    // and the punch request to good; the challenge. The keepalive is not answered.
    assert_eq!(sent.len(), 9, "{sent:?}");
    assert_eq!(t.single.online(), 4);
    for id in [&good, &other_good, &ecdsa] {
        assert!(t.batched.client(&id.fingerprint(), t.now).is_some());
    }
    for id in [&forged, &bad_cert] {
        assert!(t.batched.client(&id.fingerprint(), t.now).is_none());
    }
    // The refused certificate stays refused, the accepted ones cached, the same at both.
    t.now.mono_ms += 2_000;
    t.now.unix_s += 2;
    let ts = t.now.unix_s;
    let again = vec![
        (at(4), register(&bad_cert, &altered, ts, Some(&cookies[3]))),
        (
            at(2),
            register(&other_good, other_good.cert_der(), ts, Some(&cookies[1])),
        ),
    ];
    assert_eq!(t.feed(&again).len(), 2);
    // Re-registrations of cached certificates, Ed25519 and ECDSA, and one signed by
    // another key: their packet signatures are checked in the pre-pass (docs/PROTOCOL.md
    // §7, "Workers"), with the answers of one at a time: OK, OK, 401.
    t.now.mono_ms += 2_000;
    t.now.unix_s += 2;
    let ts = t.now.unix_s;
    let cached = vec![
        reg_at(0, &good, good.cert_der(), ts, &cookies[0]),
        reg_at(4, &ecdsa, ecdsa.cert_der(), ts, &cookies[4]),
        reg_at(1, &forged, other_good.cert_der(), ts, &cookies[1]),
    ];
    let sent = t.feed(&cached);
    let kinds: Vec<bool> = sent
        .iter()
        .map(|(_, b)| matches!(decode(b), Incoming::Ok(_)))
        .collect();
    assert_eq!(kinds, [true, true, false], "{sent:?}");
    t.assert_same_state();
}

/// A registration from `at(i + 1)` with cookie `ck` (as the mixed batch's).
fn reg_at(i: usize, id: &Identity, cert: &[u8], ts: u64, ck: &[u8; 16]) -> (SocketAddr, Vec<u8>) {
    (at(i + 1), register(id, cert, ts, Some(ck)))
}

#[test]
fn batch_of_first_registrations_registers_all() {
    let mut t = Twins::new();
    let ts = t.now.unix_s;
    let ids: Vec<Identity> = (0..32).map(|_| ed25519()).collect();
    let cookies: Vec<[u8; 16]> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| t.cookie(id, at(i)))
        .collect();
    let batch: Vec<(SocketAddr, Vec<u8>)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (at(i), register(id, id.cert_der(), ts, Some(&cookies[i]))))
        .collect();
    let sent = t.feed(&batch);
    assert_eq!(sent.len(), 32);
    for (i, (to, bytes)) in sent.iter().enumerate() {
        assert_eq!(*to, at(i));
        assert!(matches!(decode(bytes), Incoming::Ok(_)), "an OK");
    }
    assert_eq!(t.batched.online(), 32);
    for id in &ids {
        assert!(t.batched.client(&id.fingerprint(), t.now).is_some());
    }
}
