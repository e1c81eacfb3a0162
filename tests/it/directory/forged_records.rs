//! Forged, rolled-back, truncated and random directory records and forwards: refused,
//! and the state (online, remote online, directory digest) unchanged.

use super::{addr, drain_records, lone, pages, state, unix0, Client, Fed, MONO0};
use proptest::prelude::*;
use rendezvous::core::udp::{UdpConfig, UdpCore, UdpIdentity};
use rendezvous::core::{Now, PeerOut};
use rendezvous::wire::tcp::dir::{DirRecord, RecordBody, Registration};
use rendezvous::wire::udp::root::signed_message;

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
