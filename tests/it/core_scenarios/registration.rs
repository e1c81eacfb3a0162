//! Registration and the address check: the cookie challenge, the OK's reflexive address
//! and family, the boot epoch, registration rate limits per prefix and their reload, the
//! cookie's lifetime, ECDSA clients, expired certificates (docs/PROTOCOL.md §5.1, §5.2).

use rendezvous::core::udp::{QueueBounds, RateLimits, UdpConfig};
use rendezvous::identity::KeyAlgorithm;
use rendezvous::wire::status;
use rendezvous::wire::udp::OkInfo;

use super::{addr, error, relayed, to, Net, Reply};

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
