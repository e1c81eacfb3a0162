//! Lookups and hole punching: the lookup answer, the address check on its source, and the
//! punch request sent to the online target, once per pair per second (docs/PROTOCOL.md §5.6).

use rendezvous::wire::status;
use rendezvous::wire::udp::root::PARAM_TO_SERVER;

use super::{answer, error, online_at, punch, to, Net, HOME};

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
