//! Packets that get no answer (from servers, reply types), malformed and oversized
//! packets (400, 413), and unknown packet types (docs/PROTOCOL.md §4).

use rendezvous::wire::status;

use super::{error, to, to_addr, Client, Net};

#[test]
fn packets_from_servers_are_never_answered() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    let ts = net.ts();
    let stats = net.server.stats().clone();
    for params in [0x01, 0x03] {
        for c in [&a, &u] {
            let pad = vec![0u8; 60];
            let pkts = [
                c.raw(params, 0, &[], 0, &pad),                       // keepalive
                c.raw(params, 2, &[], ts, &c.register_payload(None)), // register
                c.raw(
                    params,
                    4,
                    &[1; 64],
                    ts,
                    &Client::relay_payload(a.fp(), b"x"),
                ),
                c.raw(params, 5, &[], 0, &a.fp().0), // lookup
                c.raw(params, 8, &[], 0, &[]),       // fetch
                c.raw(params, 200, &[], 0, &pad),    // unknown type
                c.raw(params, 5, &[], 0, &[1; 3]),   // malformed payload
            ];
            for p in pkts {
                assert!(
                    net.send(c.addr, &p).is_empty(),
                    "answered params {params:#x}"
                );
            }
        }
    }
    // Malformed roots with bit 0x01: reserved bits, truncated, too large, shifted.
    let bad: [Vec<u8>; 5] = [
        vec![0x09; 100],
        vec![0x01, 5, 0xFF, 0xFF, 0, 0],
        vec![0x01; 1401],
        vec![0x05, 200, 5],
        vec![0x01],
    ];
    for p in bad {
        assert!(net.send(u.addr, &p).is_empty());
        assert!(net.send(a.addr, &p).is_empty());
    }
    assert_eq!(
        net.server.stats().emitted.datagrams_out,
        stats.emitted.datagrams_out
    );
    assert_eq!(
        net.server.stats().datagrams.registrations,
        stats.datagrams.registrations
    );
}

#[test]
fn reply_types_are_never_answered() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    net.advance(2_000);
    for ty in [1u8, 3, 6, 7, 9] {
        for c in [&a, &u] {
            for payload in [vec![], vec![0xEE; 80]] {
                assert!(net.send(c.addr, &c.unsigned(ty, 0, &payload)).is_empty());
                assert!(net
                    .send(c.addr, &c.signed(ty, net.ts(), &payload))
                    .is_empty());
            }
        }
    }
    assert_eq!(
        net.age_ms(&a),
        Some(2_000),
        "a reply type is not a keepalive"
    );
}

#[test]
fn datagram_over_1400_bytes_is_413() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    for c in [&u, &a] {
        let big = c.keepalive(1401);
        let got = net.send(c.addr, &big);
        assert_eq!(
            got,
            vec![to_addr(
                c.addr,
                None,
                error(status::PAYLOAD_TOO_LARGE, 0xFF)
            )]
        );
        assert!(got[0].len <= 1401);
        // 1400 bytes is fine (a padded keepalive: refreshes or 404s).
        let ok = net.send(c.addr, &c.keepalive(1400));
        assert_eq!(ok.is_empty(), std::ptr::eq(c, &a));
    }
}

#[test]
fn garbage_gets_a_400_no_larger_than_itself_or_nothing() {
    let mut net = Net::new();
    let u = net.client("198.51.100.5:1000", None);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0xFF],
        vec![0x02, 0x05],
        vec![0xF0; 100],
        vec![0x02, 0x02, 0x01, 0x2C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // sig_len past end
        vec![0x06, 0xFF, 0x02, 1, 2, 3],                                  // shift past end
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec(),
    ];
    for bytes in cases {
        let got = net.send(u.addr, &bytes);
        assert!(got.len() <= 1, "{got:?}");
        if let Some(s) = got.first() {
            assert_eq!(
                *s,
                to(&u, error(status::BAD_REQUEST, 0xFF)),
                "for {bytes:?}"
            );
            assert!(s.len <= bytes.len());
        }
    }
    assert_eq!(net.server.online(), 0);
    // A malformed registration payload (cookie of the wrong length): 400, type 2.
    let mut p = u.register_payload(None);
    p.extend_from_slice(&[1; 7]);
    let got = net.send(u.addr, &u.signed(2, net.ts(), &p));
    assert_eq!(got, vec![to(&u, error(status::BAD_REQUEST, 2))]);
}

#[test]
fn unknown_type_200_is_400_with_request_type_200() {
    let mut net = Net::new();
    let a = net.client("192.0.2.10:40000", None);
    let u = net.client("198.51.100.5:1000", None);
    net.online(&a);
    // From an unknown source: only if the 400 fits in the request.
    assert!(net.send(u.addr, &u.unsigned(200, 0, &[])).is_empty());
    let got = net.send(u.addr, &u.unsigned(200, 0, &[0; 40]));
    assert_eq!(got, vec![to(&u, error(status::BAD_REQUEST, 200))]);
    // From a registered client: always.
    let got = net.send(a.addr, &a.unsigned(200, 0, &[]));
    assert_eq!(got, vec![to(&a, error(status::BAD_REQUEST, 200))]);
    assert!(!got[0].detail.is_empty());
}
