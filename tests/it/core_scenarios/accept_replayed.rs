//! `serve --accept-replayed` (docs/PROTOCOL.md §10): no freshness window, no address
//! check; exact replays, certificates and signatures are still checked.

use rendezvous::core::udp::UdpConfig;
use rendezvous::wire::status;
use rendezvous::wire::udp::root::{signed_message, PARAM_TO_SERVER};

use super::{addr, answer, error, online_at, punch, relayed, to, Net, Reply, Sent, HOME};

fn replaying() -> Net {
    Net::with(UdpConfig {
        accept_replayed: true,
        ..UdpConfig::default()
    })
}

#[test]
fn accept_replayed_registers_without_a_cookie_and_with_a_foreign_one() {
    let mut net = replaying();
    let a = net.client("127.0.0.1:40000", None);
    let b = net.client("127.0.0.1:40001", Some(3));
    // No cookie: no type-9 challenge, the OK at once.
    let got = net.send(a.addr, &a.register(net.ts(), None));
    assert_eq!(got, vec![to(&a, net.ok_for(&a))]);
    // A cookie minted by another server (for another address): not checked.
    let got = net.send(b.addr, &b.register(net.ts(), Some(&[0xA5; 16])));
    assert_eq!(got, vec![to(&b, net.ok_for(&b))]);
    assert_eq!(net.where_is(&a), Some(a.addr));
    assert_eq!(net.where_is(&b), Some(b.addr));
    assert_eq!(net.server.stats().datagrams.cookies_sent, 0);
    // The registered clients work as usual.
    let got = net.send(a.addr, &a.lookup(b.fp()));
    assert_eq!(
        got,
        vec![
            to(&a, answer(&b, online_at(&b, 0), HOME)),
            to(&b, punch(&a))
        ]
    );
}

#[test]
fn accept_replayed_takes_timestamps_days_old_or_ahead() {
    let mut net = replaying();
    let a = net.client("127.0.0.1:40000", None);
    let b = net.client("127.0.0.1:40001", None);
    let days = 3 * 86_400;
    let got = net.send(a.addr, &a.register(net.ts() - days, None));
    assert_eq!(got, vec![to(&a, net.ok_for(&a))]);
    let got = net.send(b.addr, &b.register(net.ts() + 3_600, None));
    assert_eq!(got, vec![to(&b, net.ok_for(&b))]);
    // Relays too: an old signed event is forwarded.
    let got = net.send(
        a.addr,
        &a.relay(net.ts() - days + 1, b.fp(), b"from the capture"),
    );
    assert_eq!(got, vec![to(&b, relayed(&a, b"from the capture"))]);
}

#[test]
fn accept_replayed_still_refuses_exact_replays_and_older_packets_after_sweeps() {
    let mut net = replaying();
    let a = net.client("127.0.0.1:40000", None);
    let b = net.client("127.0.0.1:40001", None);
    let t = net.ts() - 86_400;
    let first = a.register(t, None);
    let second = a.register(t, Some(&[7; 16])); // the capture's retry with its cookie
    assert_eq!(net.send(a.addr, &first), vec![to(&a, net.ok_for(&a))]);
    assert_eq!(net.send(a.addr, &second), vec![to(&a, net.ok_for(&a))]);
    let got = net.send(b.addr, &b.register(net.ts(), None));
    assert_eq!(got, vec![to(&b, net.ok_for(&b))]);
    let ev = a.relay(t + 1, b.fp(), b"once");
    assert_eq!(net.send(a.addr, &ev), vec![to(&b, relayed(&a, b"once"))]);
    // Well past the freshness sweep (every 10 s): the state of day-old timestamps is kept.
    net.advance(65_000);
    net.send(a.addr, &a.keepalive(64));
    let stats = net.server.stats().clone();
    for pkt in [&first, &second] {
        assert_eq!(
            net.send(a.addr, pkt),
            vec![to(&a, error(status::CONFLICT, 2))]
        );
    }
    assert_eq!(
        net.send(a.addr, &ev),
        vec![to(&a, error(status::CONFLICT, 4))]
    );
    // Older than the newest accepted for the fingerprint.
    assert_eq!(
        net.send(a.addr, &a.register(t - 10, None)),
        vec![to(&a, error(status::CONFLICT, 2))]
    );
    // The same packet from another source port is a replay too: it moves nothing.
    let elsewhere = a.at(addr("127.0.0.1:40999"));
    assert_eq!(
        net.send(elsewhere.addr, &first),
        vec![to(&elsewhere, error(status::CONFLICT, 2))]
    );
    assert_eq!(net.where_is(&a), Some(a.addr));
    assert_eq!(
        net.server.stats().datagrams.registrations,
        stats.datagrams.registrations
    );
    // A newer one from there moves it (no address check).
    let got = net.send(elsewhere.addr, &a.register(t + 2, None));
    assert_eq!(got, vec![to(&elsewhere, net.ok_for(&elsewhere))]);
    assert_eq!(net.where_is(&a), Some(elsewhere.addr));
}

#[test]
fn accept_replayed_keeps_the_certificate_and_signature_checks() {
    let mut net = replaying();
    let a = net.client("127.0.0.1:40000", None);
    let mallory = net.client("127.0.0.1:40666", None);
    let ts = net.ts() - 86_400;
    let payload = a.register_payload(None);
    let sig = mallory.id.sign(&signed_message(ts, &payload));
    let got = net.send(a.addr, &a.raw(PARAM_TO_SERVER, 2, &sig, ts, &payload));
    assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 2))]);
    let got = net.send(a.addr, &a.unsigned(2, ts, &payload));
    assert_eq!(got, vec![to(&a, error(status::UNAUTHORIZED, 2))]);
    assert_eq!(net.server.online(), 0);
    // Malformed payloads are still 400 (a cookie of 5 bytes is no cookie).
    let mut bad = payload.clone();
    bad.extend_from_slice(&[1; 5]);
    let got = net.send(a.addr, &a.signed(2, ts, &bad));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 2))]);
}

#[test]
fn without_accept_replayed_a_capture_replay_gets_challenges_and_409s() {
    // The default server: what `rendezvous replay` reports against it.
    let mut net = Net::new();
    let a = net.client("127.0.0.1:40000", None);
    let got = net.send(a.addr, &a.register(net.ts(), Some(&[0xA5; 16])));
    assert!(
        matches!(
            got[..],
            [Sent {
                reply: Reply::Cookie(_),
                ..
            }]
        ),
        "{got:?}"
    );
    let got = net.send(a.addr, &a.register(net.ts() - 86_400, None));
    assert_eq!(got, vec![to(&a, error(status::CONFLICT, 2))]);
    assert_eq!(net.server.online(), 0);
}
