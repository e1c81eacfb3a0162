//! Freshness and replays of registrations (409, the 60 s window, last accepted timestamp),
//! registrations signed by another key, and moving a fingerprint to a new address
//! (docs/PROTOCOL.md §5.3).

use rendezvous::wire::status;
use rendezvous::wire::udp::root::{signed_message, PARAM_TO_SERVER};

use super::{addr, answer, error, online_at, punch, relayed, to, Net, Reply, HOME};

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
