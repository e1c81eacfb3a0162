//! Forwards between homes: the punch request of a lookup (hole punching) and relayed
//! events, delivered by the client's home, queued while it is offline, duplicates dropped.

use super::{Client, Fed, Reply, MONO0};
use rendezvous::core::PeerOut;
use rendezvous::wire::udp::LookupStatus;
use rendezvous::wire::{PacketType, Root};

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
