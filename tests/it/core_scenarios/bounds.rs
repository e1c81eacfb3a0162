//! Bounds: the directory's size and eviction, lying lengths, IPv6 registration budgets,
//! the relay queues' byte and age limits, and the lookup answers' byte budget
//! (docs/PROTOCOL.md §5.8, §5.9, §5.11).

use rendezvous::core::udp::{QueueBounds, RateLimits, TableBounds, UdpConfig, UdpTimers};
use rendezvous::wire::status;

use super::{answer, error, online_at, relayed, to, Client, Net, Reply, HOME, MONO0};

#[test]
fn full_directory_of_kept_alive_clients_is_503_and_evicts_nobody() {
    let mut net = Net::with(UdpConfig {
        tables: TableBounds {
            max_clients: 2,
            ..TableBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    net.advance(1_000);
    assert!(net.send(a.addr, &a.keepalive(12)).is_empty());
    assert!(net.send(b.addr, &b.keepalive(12)).is_empty());
    let cookie = net.cookie_for(&c);
    let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
    assert_eq!(got, vec![to(&c, error(status::SERVICE_UNAVAILABLE, 2))]);
    assert_eq!(
        (net.where_is(&a), net.where_is(&b)),
        (Some(a.addr), Some(b.addr))
    );
    assert_eq!(net.where_is(&c), None);
}

/// A full directory evicts a client that never kept alive to admit a newcomer; the
/// evicted fingerprint's freshness state must not block the newcomer (regression: it once
/// answered 503 "freshness table full" after evicting).
#[test]
fn full_directory_evicts_a_client_that_never_kept_alive() {
    let mut net = Net::with(UdpConfig {
        tables: TableBounds {
            max_clients: 2,
            ..TableBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    net.advance(1_000);
    assert!(net.send(a.addr, &a.keepalive(12)).is_empty()); // a kept alive, b never did
    let cookie = net.cookie_for(&c);
    let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
    assert_eq!(
        got,
        vec![to(&c, net.ok_for(&c))],
        "detail: {:?}",
        got.first().map(|s| &s.detail)
    );
    assert_eq!(net.where_is(&a), Some(a.addr));
    assert_eq!(net.where_is(&b), None);
    assert_eq!(net.where_is(&c), Some(c.addr));
}

/// T6 (docs/SECURITY.md): every length field of the UDP plane lying (0, past the
/// datagram, at its largest value), from a registered client: each packet gets a typed
/// refusal (400 or 413) or nothing, never more bytes than it had, and nothing changes.
#[test]
fn lying_lengths_in_datagrams_are_refused_and_change_nothing() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    let cert_len = |n: u16, rest: &[u8]| [n.to_be_bytes().to_vec(), rest.to_vec()].concat();
    let mut sig_past = a.unsigned(0, ts, &[]);
    sig_past[2..4].copy_from_slice(&0xffffu16.to_be_bytes()); // sig_len past the datagram
                                                              // Shifted (params 0x06), shift_len 200: the datagram ends inside the first shift.
    let shift_past = vec![0x06, 200, 5, 1, 2, 3];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("sig_len 0xFFFF", sig_past),
        ("shifted, cut short", shift_past),
        ("register, cert_len 0", a.signed(2, ts, &cert_len(0, &[]))),
        (
            "register, cert_len 0xFFFF",
            a.signed(2, ts, &cert_len(0xffff, &[1; 40])),
        ),
        (
            "register, cert_len 1 and 100 bytes after",
            a.signed(2, ts, &cert_len(1, &[0x30; 101])),
        ),
        ("lookup of 31 bytes", a.unsigned(5, ts, &[7; 31])),
        ("lookup of 33 bytes", a.unsigned(5, ts, &[7; 33])),
        ("relay with no event", a.signed(4, ts, &b.fp().0)),
        (
            "relay of 1201 bytes",
            a.signed(4, ts, &[b.fp().0.to_vec(), vec![1; 1201]].concat()),
        ),
        ("fetch with a payload", a.unsigned(8, ts, &[0; 8])),
    ];
    let before = (
        net.server.directory_digest(),
        net.where_is(&a),
        net.where_is(&b),
    );
    for (what, bytes) in cases {
        let got = net.send(a.addr, &bytes);
        for sent in &got {
            assert!(
                matches!(sent.reply, Reply::Error { status, .. } if status == 400 || status == 413),
                "{what}: {sent:?}"
            );
        }
        let after = (
            net.server.directory_digest(),
            net.where_is(&a),
            net.where_is(&b),
        );
        assert_eq!(before, after, "{what}: nothing changes");
    }
}

/// T4 (docs/SECURITY.md): registration budgets were per /64 only, so one IPv6 /48 had
/// 65,536 of them. A /48 as a whole now gets 4 times a /64's budget; another /48 is not
/// affected.
#[test]
fn one_ipv6_site_shares_one_registration_budget() {
    let mut net = Net::with(UdpConfig {
        limits: RateLimits {
            register_per_s: 1, // a /64: 1/s, burst 2; a /48: 4/s, burst 8
            ..RateLimits::default()
        },
        ..UdpConfig::default()
    });
    let mut accepted = 0;
    for i in 1..=20 {
        let c = net.client(&format!("[2001:db8:1:{i:x}::1]:40000"), None);
        let cookie = net.cookie_for(&c);
        let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
        if got == vec![to(&c, net.ok_for(&c))] {
            accepted += 1;
        } else {
            assert_eq!(got, vec![to(&c, error(status::TOO_MANY_REQUESTS, 2))]);
        }
    }
    println!("one /48, 20 /64s: {accepted} of 20 registrations accepted at once");
    assert_eq!(accepted, 8, "the /48's burst");
    let other = net.client("[2001:db8:2::1]:40000", None);
    let cookie = net.cookie_for(&other);
    let got = net.send(other.addr, &other.register(net.ts(), Some(&cookie)));
    assert_eq!(got, vec![to(&other, net.ok_for(&other))], "another /48");
    // A /64 still has its own, smaller budget: 2 at once.
    let mut same = 0;
    for i in 1..=3 {
        let c = net.client(&format!("[2001:db8:3::{i:x}]:40000"), None);
        let cookie = net.cookie_for(&c);
        let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
        same += usize::from(got == vec![to(&c, net.ok_for(&c))]);
    }
    assert_eq!(same, 2, "one /64's burst");
}

/// Eviction keeps working past its first victims (regression: evicted clients left their
/// element in the expiry index, the scan looked only at the first 64, and after 64
/// evictions every newcomer got 503 until the TTL passed). 100 silent clients fill the
/// directory, then 200 more register: each evicts the longest-silent one.
#[test]
fn eviction_never_stops_while_silent_clients_remain() {
    let mut net = Net::with(UdpConfig {
        tables: TableBounds {
            max_clients: 100,
            ..TableBounds::default()
        },
        limits: RateLimits {
            register_per_s: 1_000,
            ..RateLimits::default()
        },
        ..UdpConfig::default()
    });
    let clients: Vec<Client> = (0..300)
        .map(|i| net.client(&format!("192.0.2.{}:{}", 1 + i % 200, 40_000 + i), None))
        .collect();
    let mut ok = 0;
    for c in &clients {
        net.advance(1); // the longest silent goes first; ties go by fingerprint
        let cookie = net.cookie_for(c);
        let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
        ok += usize::from(got == vec![to(c, net.ok_for(c))]);
    }
    println!("eviction: {ok} of 300 registrations accepted into a directory of 100");
    assert_eq!(ok, 300, "every newcomer evicts a silent client");
    assert_eq!(net.server.online(), 100);
    assert!(clients[..200].iter().all(|c| net.where_is(c).is_none()));
    assert!(clients[200..]
        .iter()
        .all(|c| net.where_is(c) == Some(c.addr)));
}

/// Clients that expired within the last 60 s still have freshness state; it must not keep
/// new clients out of an emptied directory (regression: 503 until the window passed).
#[test]
fn expired_clients_make_room_for_new_ones() {
    let mut net = Net::with(UdpConfig {
        timers: UdpTimers {
            ttl_ms: 6_000,
            ..UdpTimers::default()
        },
        tables: TableBounds {
            max_clients: 2,
            ..TableBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    net.advance(7_000);
    assert_eq!(net.server.online(), 0);
    let cookie = net.cookie_for(&c);
    let got = net.send(c.addr, &c.register(net.ts(), Some(&cookie)));
    assert_eq!(
        got,
        vec![to(&c, net.ok_for(&c))],
        "detail: {:?}",
        got.first().map(|s| &s.detail)
    );
}

/// The global byte limit: 503 for the sender holding the most; a sender with less gets in
/// by evicting that sender's oldest event (docs/PROTOCOL.md §5.8).
#[test]
fn global_queue_byte_limit_is_503() {
    let mut net = Net::with(UdpConfig {
        queue: QueueBounds {
            bytes: 10,
            ..QueueBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    let d = net.client("203.0.113.4:3000", None);
    net.online(&a);
    let ts = net.ts();
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"123456")).is_empty());
    let got = net.send(a.addr, &a.relay(ts, d.fp(), b"12345"));
    assert_eq!(got, vec![to(&a, error(status::SERVICE_UNAVAILABLE, 4))]);
    assert!(net.send(a.addr, &a.relay(ts, d.fp(), b"1234")).is_empty());
    assert_eq!(
        (
            net.server.queued_for(&c.fp()),
            net.server.queued_for(&d.fp())
        ),
        (1, 1)
    );
    // Another sender gets its share: the oldest event of the sender holding the most goes.
    let b = net.client("192.0.2.20:40000", None);
    net.online(&b);
    assert!(net.send(b.addr, &b.relay(ts, d.fp(), b"12345")).is_empty());
    assert_eq!(
        (
            net.server.queued_for(&c.fp()),
            net.server.queued_for(&d.fp())
        ),
        (0, 2)
    );
}

#[test]
fn queued_events_expire_by_age() {
    let mut net = Net::with(UdpConfig {
        queue: QueueBounds {
            age_ms: 5_000,
            ..QueueBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    net.online(&a);
    assert!(net
        .send(a.addr, &a.relay(net.ts(), c.fp(), b"old"))
        .is_empty());
    net.advance(3_000);
    assert!(net
        .send(a.addr, &a.relay(net.ts(), c.fp(), b"new"))
        .is_empty());
    assert!(net
        .server
        .poll_timeout()
        .is_some_and(|t| t <= MONO0 + 5_000));
    net.advance(2_000); // "old" is 5 s old: dropped by handle_timeout
    assert_eq!(net.server.queued_for(&c.fp()), 1);
    assert_eq!(net.register(&c), vec![to(&c, relayed(&a, b"new"))]);
}

#[test]
fn relay_too_large_for_the_recipients_shifted_layout_is_413() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let s = net.client("192.0.2.50:5555", Some(60)); // 13 + 240 bytes of header
    net.online(&a);
    net.online(&s);
    let ts = net.ts();
    let got = net.send(a.addr, &a.relay(ts, s.fp(), &[1; 1200]));
    assert_eq!(got, vec![to(&a, error(status::PAYLOAD_TOO_LARGE, 4))]);
    let fits = vec![2; 1400 - 13 - 240 - 32];
    let got = net.send(a.addr, &a.relay(ts, s.fp(), &fits));
    assert_eq!(got, vec![to(&s, relayed(&a, &fits))]);
    assert_eq!(got[0].len, 1400);
}

#[test]
fn lookup_answers_are_held_to_a_byte_budget_per_source() {
    let mut net = Net::with(UdpConfig {
        limits: RateLimits {
            lookup_bytes_per_s: 200, // an answer to a plain client costs 12 + 49 + 10 bytes
            ..RateLimits::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let mut answered = 0;
    for _ in 0..5 {
        answered += net
            .send(a.addr, &a.lookup(b.fp()))
            .iter()
            .filter(|s| s.dst == a.addr)
            .count();
    }
    assert_eq!(answered, 2, "200 bytes hold two 71-byte answers");
    net.advance(1_000);
    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(got[0], to(&a, answer(&b, online_at(&b, 1), HOME)));
    // Loopback sources are exempt.
    let l = net.client("127.0.0.1:9000", None);
    net.online(&l);
    for _ in 0..10 {
        let got = net.send(l.addr, &l.lookup(b.fp()));
        assert_eq!(got.iter().filter(|s| s.dst == l.addr).count(), 1);
    }
}
