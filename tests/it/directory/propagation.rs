//! Propagation of registrations along the line A-B-C-D-E: found everywhere with their
//! home, each link crossed at most twice, re-registrations, moves and expiry followed,
//! remote entries kept by refreshes and lapsing without them.

use super::{name, pages, Client, Fed, Msg, Reply};
use rendezvous::core::udp::{UdpConfig, UdpTimers};
use rendezvous::wire::udp::LookupStatus;
use rendezvous::wire::{status, PacketType};

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
