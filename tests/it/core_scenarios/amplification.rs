//! No amplification toward unchecked sources (docs/PROTOCOL.md §5.5, §11.4): arbitrary
//! datagrams (property tests), a classic STUN request, and every request type cut at
//! every length from a source that never passed the address check.

use std::net::SocketAddr;

use proptest::prelude::*;
use rendezvous::core::udp::{RateLimits, TableBounds, UdpConfig};
use rendezvous::wire::stun::BINDING_SUCCESS;

use super::{addr, Net, Reply};

/// Bytes that look like client packets often enough to reach the handlers.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1500),
        (
            prop::sample::select(vec![0u8, 2, 6]),
            0u8..12,
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(params, ty, rest)| {
                let mut v = vec![params];
                if params & 4 != 0 {
                    v.push(rest.first().copied().unwrap_or(0) % 4);
                }
                v.push(ty);
                v.extend_from_slice(&[0, 0]);
                v.extend_from_slice(&rest);
                v
            }),
    ]
}

/// The input CI's random seed found (stop 20): `datagram()` can build `[0, 1, 0, 0]` and 16
/// more bytes, an RFC 3489 Binding request, which the server answers with MAPPED-ADDRESS
/// (32 bytes, 1.6 times; docs/PROTOCOL.md §11.4). The harness holds it to STUN's bound.
#[test]
fn classic_stun_request_from_a_stranger_is_answered_under_three_times() {
    let mut net = Net::new();
    let mut req = vec![0u8; 20];
    req[1] = 1;
    let got = net.send(addr("198.51.100.5:1000"), &req);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].dst, addr("198.51.100.5:1000"));
    assert_eq!(
        got[0].reply,
        Reply::Stun {
            message_type: BINDING_SUCCESS
        }
    );
    assert_eq!(got[0].len, 32);
    // Anything else of 20 bytes from the stranger (here a Root keepalive-shaped header) gets
    // nothing larger than itself.
    req[1] = 0;
    for s in net.send(addr("198.51.100.5:1000"), &req) {
        assert!(s.len <= 20, "{s:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_never_amplify_nor_change_state(bytes in datagram()) {
        let mut net = Net::with(UdpConfig {
            tables: TableBounds { max_clients: 64, ..TableBounds::default() },
            limits: RateLimits { max_entries: 64, ..RateLimits::default() },
            ..UdpConfig::default()
        });
        let a = net.client("192.0.2.10:40000", None);
        net.online(&a);
        net.advance(1_000);
        let before = net.server.client(&a.fp(), net.now);
        // `send` asserts no amplification and that nothing goes to a third address.
        let got = net.send(addr("198.51.100.5:1000"), &bytes);
        prop_assert!(got.len() <= 1);
        if bytes.first().is_some_and(|p| p & 1 != 0) {
            prop_assert!(got.is_empty());
        }
        prop_assert_eq!(net.server.client(&a.fp(), net.now), before);
        prop_assert_eq!(net.server.online(), 1);
    }

    #[test]
    fn arbitrary_datagrams_from_a_client_never_move_it(bytes in datagram()) {
        let mut net = Net::with(UdpConfig {
            tables: TableBounds { max_clients: 64, ..TableBounds::default() },
            limits: RateLimits { max_entries: 64, ..RateLimits::default() },
            ..UdpConfig::default()
        });
        let a = net.client("192.0.2.10:40000", None);
        let b = net.client("192.0.2.20:40000", None);
        net.online(&a);
        net.online(&b);
        net.advance(1_000);
        let got = net.send(a.addr, &bytes);
        // An answer to a, and at most a punch request for b (a lookup of b's fingerprint).
        let elsewhere = got.iter().filter(|s| s.dst != a.addr);
        prop_assert!(elsewhere.clone().all(|s| matches!(s.reply, Reply::Punch { .. })), "{:?}", got);
        prop_assert_eq!(net.where_is(&a), Some(a.addr));
        prop_assert_eq!(net.where_is(&b), Some(b.addr));
        prop_assert_eq!(net.age_ms(&b), Some(1_000));
    }
}

/// T3 (docs/SECURITY.md): every request a client sends, whole and cut at every length,
/// plus every type byte with an empty body, each from its own address that never passed
/// the address check (loopback, so no rate limit hides an answer): no reply goes anywhere
/// else, and none is larger than its request. The worst ratio is printed.
#[test]
fn every_request_type_from_an_unchecked_source_gets_at_most_its_own_size_back() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let b = net.client("192.0.2.20:40000", None);
    net.online(&a);
    net.online(&b);
    let ts = net.ts();
    let mut requests: Vec<(String, Vec<u8>)> = vec![
        ("register".into(), a.register(ts, None)),
        ("register+cookie".into(), a.register(ts, Some(&[7; 16]))),
        ("keepalive".into(), a.keepalive(a.header_len(0) + 4)),
        ("lookup".into(), a.lookup(b.fp())),
        ("relay".into(), a.relay(ts, b.fp(), b"hello")),
        ("fetch".into(), a.fetch()),
    ];
    for ty in 0..=255u8 {
        requests.push((format!("type {ty} unsigned"), a.unsigned(ty, ts, &[])));
        requests.push((format!("type {ty} signed"), a.signed(ty, ts, &[0; 8])));
    }
    let (mut probes, mut answered) = (0u32, 0u32);
    let mut worst = (0.0f64, String::new());
    for (name, req) in &requests {
        for n in 1..=req.len() {
            probes += 1;
            let src = SocketAddr::from((
                [127, 0, 1, (probes % 250) as u8 + 1],
                1024 + (probes % 60_000) as u16,
            ));
            let mut out: Vec<(SocketAddr, usize)> = Vec::new();
            net.server
                .handle_datagram(net.now, src, &req[..n], &mut |dst, bytes| {
                    out.push((dst, bytes.len()))
                });
            for (dst, len) in out {
                assert_eq!(dst, src, "{name} cut at {n}: a reply to another address");
                answered += 1;
                let ratio = len as f64 / n as f64;
                assert!(ratio <= 1.0, "{name} cut at {n}: {len} bytes back");
                if ratio > worst.0 {
                    worst = (ratio, format!("{name}, {n} bytes in, {len} out"));
                }
            }
        }
    }
    println!(
        "figure: T3 {probes} probes ({} requests at every length), {answered} answered, \
         worst reply/request {:.2} ({}); QUIC's bound is 3",
        requests.len(),
        worst.0,
        worst.1
    );
}
