//! The shifted layout (docs/PROTOCOL.md §2.2): a shifted client gets every reply shifted,
//! with any shift length.

use rendezvous::wire::status;

use super::{answer, error, online_at, punch, relayed, to, Net, HOME};

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
