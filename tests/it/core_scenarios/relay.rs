//! Relay, the offline queue and fetch: delivery to online and offline recipients, depth,
//! size and per-recipient byte limits, the signature and replay checks on relays
//! (docs/PROTOCOL.md §5.7, §5.8).

use rendezvous::core::udp::{QueueBounds, UdpConfig};
use rendezvous::wire::udp::root::PARAM_TO_SERVER;
use rendezvous::wire::{status, MAX_DATAGRAM};

use super::{decode, error, relayed, to, Client, Net};

#[test]
fn relay_to_online_destination() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    let mut raw = Vec::new();
    net.server.handle_datagram(
        net.now,
        a.addr,
        &a.relay(ts, b.fp(), b"hello"),
        &mut |d, x| raw.push((d, x.to_vec())),
    );
    assert_eq!(raw.len(), 1, "relayed, not acknowledged");
    let (dst, bytes) = &raw[0];
    assert_eq!(*dst, b.addr);
    // [params 0x01][type 4][sig_len 0 0][ts 8][source fp 32]["hello"]
    assert_eq!(&bytes[..4], &[0x01, 4, 0, 0]);
    assert_eq!(&bytes[4..12], &ts.to_be_bytes());
    assert_eq!(&bytes[12..44], &a.fp().0);
    assert_eq!(&bytes[44..], b"hello");
    assert_eq!(decode(*dst, bytes), to(&b, relayed(&a, b"hello")));

    // The largest event (1200 bytes) goes through.
    let big = vec![0x42; 1200];
    let got = net.send(a.addr, &a.relay(ts, b.fp(), &big));
    assert_eq!(got, vec![to(&b, relayed(&a, &big))]);
    assert_eq!(net.server.stats().datagrams.relayed, 2);
}

#[test]
fn relay_to_offline_destination_is_queued_and_delivered_once_after_ok() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    net.online(&a);
    let ts = net.ts();
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"first")).is_empty());
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"second")).is_empty());
    assert_eq!(net.server.queued_for(&c.fp()), 2);
    assert_eq!(net.server.stats().datagrams.queued, 2);

    net.advance(3_000);
    let after_ok = net.register(&c);
    assert_eq!(
        after_ok,
        vec![
            to(&c, relayed(&a, b"first")),
            to(&c, relayed(&a, b"second"))
        ]
    );
    assert_eq!(net.server.queued_for(&c.fp()), 0);
    // Exactly once: neither a fetch nor a new registration brings them again.
    assert!(net.send(c.addr, &c.fetch()).is_empty());
    net.advance(1_000);
    assert!(net.register(&c).is_empty());
    assert_eq!(net.server.stats().datagrams.delivered, 2);
}

#[test]
fn fetch() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    // Nothing queued: no answer at all.
    assert!(net.send(a.addr, &a.fetch()).is_empty());
    // A fetch has no payload.
    let got = net.send(a.addr, &a.unsigned(8, 0, &[1]));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 8))]);
    // From an unregistered source: 403 when it fits in the request, else nothing.
    assert!(net.send(u.addr, &u.fetch()).is_empty());
    let got = net.send(u.addr, &u.unsigned(8, 0, &[0; 30]));
    assert_eq!(got, vec![to(&u, error(status::FORBIDDEN, 8))]);
}

#[test]
fn relay_depth_limit_is_503() {
    let mut net = Net::with(UdpConfig {
        queue: QueueBounds {
            depth: 2,
            ..QueueBounds::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("192.0.2.10:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    net.online(&a);
    let ts = net.ts();
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"1")).is_empty());
    assert!(net.send(a.addr, &a.relay(ts, c.fp(), b"2")).is_empty());
    let got = net.send(a.addr, &a.relay(ts, c.fp(), b"3"));
    assert_eq!(got, vec![to(&a, error(status::SERVICE_UNAVAILABLE, 4))]);
    assert_eq!(net.server.queued_for(&c.fp()), 2);
    assert_eq!(
        net.register(&c),
        vec![to(&c, relayed(&a, b"1")), to(&c, relayed(&a, b"2"))]
    );
}

/// T10 (docs/SECURITY.md): one sender once pushed 3,800 events of 1 KB to one online
/// recipient in 1.1 s. Each recipient has a byte budget (16 KiB/s, burst 32 KiB) for all
/// senders together; over it, 429. Another recipient is not affected; the budget refills.
#[test]
fn relays_to_one_recipient_are_rate_limited() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("192.0.2.30:40000", None);
    net.online(&a);
    net.online(&b);
    net.online(&c);
    let ts = net.ts();
    let mut delivered = 0;
    let mut refused = 0;
    for i in 0..60u32 {
        let mut event = vec![0x42; 1000];
        event[..4].copy_from_slice(&i.to_be_bytes());
        let got = net.send(a.addr, &a.relay(ts, b.fp(), &event));
        if got == vec![to(&b, relayed(&a, &event))] {
            delivered += 1;
        } else {
            assert_eq!(got, vec![to(&a, error(status::TOO_MANY_REQUESTS, 4))]);
            refused += 1;
        }
    }
    println!("relay flood: {delivered} of 60 events of 1000 bytes delivered, {refused} refused");
    assert_eq!(delivered, 32, "the 32 KiB burst");
    let got = net.send(a.addr, &a.relay(ts, c.fp(), b"to c"));
    assert_eq!(got, vec![to(&c, relayed(&a, b"to c"))], "another recipient");
    net.advance(1_000);
    let got = net.send(a.addr, &a.relay(net.ts(), b.fp(), &[7; 1000]));
    assert_eq!(got, vec![to(&b, relayed(&a, &[7; 1000]))], "refilled");
}

#[test]
fn relay_event_over_1200_bytes_is_413() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    for dest in [&b, &c] {
        let req = a.relay(ts, dest.fp(), &[0x42; 1201]);
        assert!(req.len() <= MAX_DATAGRAM);
        let got = net.send(a.addr, &req);
        assert_eq!(got, vec![to(&a, error(status::PAYLOAD_TOO_LARGE, 4))]);
    }
    assert_eq!(net.server.queued_for(&c.fp()), 0);
    // An empty event is malformed.
    let got = net.send(a.addr, &a.relay(ts, b.fp(), &[]));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 4))]);
}

#[test]
fn relay_must_be_signed_by_the_registered_key() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    let c = net.client("203.0.113.3:3000", None);
    let mallory = net.client("198.51.100.66:6666", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    for dest in [&b, &c] {
        // Unsigned.
        let p = Client::relay_payload(dest.fp(), b"x");
        let got = net.send(a.addr, &a.unsigned(4, ts, &p));
        assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 4))]);
        // Signed by another key, sent from a's (registered) address.
        let forged = mallory.relay(ts, dest.fp(), b"x");
        let got = net.send(a.addr, &forged);
        assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 4))]);
        // A signature that is garbage.
        let got = net.send(a.addr, &a.raw(PARAM_TO_SERVER, 4, &[9; 64], ts, &p));
        assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 4))]);
    }
    assert_eq!(net.server.queued_for(&c.fp()), 0);
    assert_eq!(net.server.stats().datagrams.relayed, 0);
    // From an unregistered source, even correctly signed: 403.
    let got = net.send(mallory.addr, &mallory.relay(ts, b.fp(), b"hi"));
    assert_eq!(got, vec![to(&mallory, error(status::FORBIDDEN, 4))]);
    // The legitimate one still goes through (the refusals recorded nothing).
    let got = net.send(a.addr, &a.relay(ts, b.fp(), b"x"));
    assert_eq!(got, vec![to(&b, relayed(&a, b"x"))]);
}

#[test]
fn replayed_relay_is_409() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let pkt = a.relay(net.ts(), b.fp(), b"once");
    assert_eq!(net.send(a.addr, &pkt), vec![to(&b, relayed(&a, b"once"))]);
    assert_eq!(
        net.send(a.addr, &pkt),
        vec![to(&a, error(status::CONFLICT, 4))]
    );
    let old = a.relay(net.ts() - 61, b.fp(), b"old");
    assert_eq!(
        net.send(a.addr, &old),
        vec![to(&a, error(status::CONFLICT, 4))]
    );
}
