//! Keepalives (never answered; refresh only from the registered address; 404 to an
//! unknown one only when large enough) and TTL expiry via `handle_timeout`
//! (docs/PROTOCOL.md §5.10).

use rendezvous::core::udp::{UdpConfig, UdpTimers};
use rendezvous::wire::status;
use rendezvous::wire::udp::LookupStatus;

use super::{addr, answer, error, online_at, punch, to, Net, HOME};

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
