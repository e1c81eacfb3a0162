//! The STUN codec against RFC 5769's test vectors and its own responses.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Bytes from hex, whitespace ignored.
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 5769 §2.1, sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
/// MESSAGE-INTEGRITY, FINGERPRINT).
const REQUEST: &str = "0001 0058 2112a442 b7e7a701 bc34d686 fa87dfae
    8022 0010 5354554e 20746573 7420636c 69656e74
    0024 0004 6e0001ff
    8029 0008 932ff9b1 51263b36
    0006 0009 6576746a 3a683676 59202020
    0008 0014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
    8028 0004 e57a3bcf";

/// RFC 5769 §2.2, sample IPv4 response: 192.0.2.1 port 32853.
const RESPONSE_V4: &str = "0101 003c 2112a442 b7e7a701 bc34d686 fa87dfae
    8022 000b 74657374 20766563 746f7220
    0020 0008 0001a147 e112a643
    0008 0014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
    8028 0004 c07d4c96";

/// RFC 5769 §2.3, sample IPv6 response: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
const RESPONSE_V6: &str = "0101 0048 2112a442 b7e7a701 bc34d686 fa87dfae
    8022 000b 74657374 20766563 746f7220
    0020 0014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
    0008 0014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
    8028 0004 c8fb0b4c";

const TID: [u8; 16] = [
    0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// The value of attribute `kind` in `msg`.
fn value(msg: &Stun<'_>, kind: u16) -> Vec<u8> {
    msg.attributes()
        .find(|a| a.kind == kind)
        .map(|a| a.value.to_vec())
        .unwrap()
}

#[test]
fn rfc5769_vectors_parse_and_their_fingerprints_match() {
    for (v, ty) in [
        (REQUEST, BINDING_REQUEST),
        (RESPONSE_V4, BINDING_SUCCESS),
        (RESPONSE_V6, BINDING_SUCCESS),
    ] {
        let bytes = hex(v);
        assert_eq!(classify(&bytes), Some(Dialect::Rfc8489));
        let msg = Stun::parse(&bytes).unwrap();
        assert_eq!(msg.message_type(), ty);
        assert_eq!(msg.dialect(), Dialect::Rfc8489);
        assert_eq!(msg.transaction(), &TID);
        let n = bytes.len();
        let fp = BigEndian::read_u32(&bytes[n - 4..]);
        assert_eq!(fingerprint(&bytes[..n - 8]), fp, "the CRC of RFC 5769");
        // One bit flipped anywhere before the FINGERPRINT: refused.
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert_eq!(Stun::parse(&bad), Err(WireError::BadFingerprint));
    }
    let req = hex(REQUEST);
    let kinds: Vec<u16> = Stun::parse(&req)
        .unwrap()
        .attributes()
        .map(|a| a.kind)
        .collect();
    assert_eq!(kinds, [0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
}

#[test]
fn xor_mapped_address_matches_rfc5769_byte_for_byte() {
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32853);
    let ip6: Ipv6Addr = "2001:db8:1234:5678:11:2233:4455:6677".parse().unwrap();
    let v6 = SocketAddr::new(IpAddr::V6(ip6), 32853);
    for (vector, addr, len) in [(RESPONSE_V4, v4, 40), (RESPONSE_V6, v6, 52)] {
        let want = hex(vector);
        let want = Stun::parse(&want).unwrap();
        let r = Response {
            dialect: Dialect::Rfc8489,
            transaction: &TID,
            reply: Reply::Mapped(addr),
        };
        let mut buf = [0u8; 64];
        let n = r.emit(&mut buf).unwrap();
        assert_eq!((n, r.len()), (len, len));
        let got = Stun::parse(&buf[..n]).unwrap();
        assert_eq!(got.message_type(), BINDING_SUCCESS);
        assert_eq!(
            value(&got, attr::XOR_MAPPED_ADDRESS),
            value(&want, attr::XOR_MAPPED_ADDRESS)
        );
        // Our FINGERPRINT: the CRC of our own bytes before it, as RFC 5769's are.
        let fp = BigEndian::read_u32(&buf[n - 4..n]);
        assert_eq!(fp, fingerprint(&buf[..n - 8]));
        assert_eq!(&buf[n - 8..n - 4], &[0x80, 0x28, 0, 4]);
    }
    // An IPv4-mapped IPv6 source is answered as IPv4 (family 1).
    let mapped = SocketAddr::new(
        IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
        32853,
    );
    let r = Response {
        dialect: Dialect::Rfc8489,
        transaction: &TID,
        reply: Reply::Mapped(mapped),
    };
    let mut buf = [0u8; 64];
    let n = r.emit(&mut buf).unwrap();
    assert_eq!(&buf[20..32], &hex("0020 0008 0001a147 e112a643")[..]);
    assert_eq!(n, 40);
}

#[test]
fn rfc3489_requests_get_mapped_address_without_fingerprint() {
    // What stun-client 0.97 sends: no cookie, CHANGE-REQUEST 0.
    let req = hex("0001 0008 015bfd3d b1427a22 ec0e437c b1f5a618 0003 0004 00000000");
    assert_eq!(classify(&req), Some(Dialect::Rfc3489));
    let msg = Stun::parse(&req).unwrap();
    assert_eq!(msg.dialect(), Dialect::Rfc3489);
    let a = msg.attributes().next().unwrap();
    assert_eq!((a.kind, a.value), (attr::CHANGE_REQUEST, &[0u8; 4][..]));
    assert!(a.comprehension_required());
    let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 0x1234);
    let r = Response {
        dialect: Dialect::Rfc3489,
        transaction: msg.transaction(),
        reply: Reply::Mapped(src),
    };
    let mut buf = [0u8; 64];
    let n = r.emit(&mut buf).unwrap();
    assert_eq!(n, 32);
    assert_eq!(&buf[..4], &[0x01, 0x01, 0x00, 0x0c]);
    assert_eq!(&buf[4..20], &req[4..20]);
    assert_eq!(&buf[20..32], &hex("0001 0008 0001 1234 7f000001")[..]);
    assert_eq!(
        classify(&buf[..n]),
        None,
        "a classic response is not a request"
    );
}

#[test]
fn error_response_lists_unknown_attributes() {
    let r = Response {
        dialect: Dialect::Rfc8489,
        transaction: &TID,
        reply: Reply::Error {
            code: 420,
            reason: "",
            unknown: &[0x0003],
        },
    };
    let mut buf = [0u8; 64];
    let n = r.emit(&mut buf).unwrap();
    assert_eq!(n, 20 + 8 + 8 + 8);
    let msg = Stun::parse(&buf[..n]).unwrap();
    assert_eq!(msg.message_type(), BINDING_ERROR);
    assert_eq!(value(&msg, attr::ERROR_CODE), [0, 0, 4, 20]);
    assert_eq!(value(&msg, attr::UNKNOWN_ATTRIBUTES), [0, 3]);
    let long = "x".repeat(128);
    let bad = Response {
        reply: Reply::Error {
            code: 420,
            reason: &long,
            unknown: &[],
        },
        ..r
    };
    assert_eq!(bad.emit(&mut buf), Err(WireError::BadLength));
    assert_eq!(r.emit(&mut buf[..43]), Err(WireError::BufferTooSmall));
}

#[test]
fn malformed_messages_are_refused_never_panic() {
    let good = hex("0001 0000 2112a442 000000000000000000000000");
    assert!(Stun::parse(&good).is_ok());
    assert_eq!(Stun::parse(&good[..19]), Err(WireError::Truncated));
    let mut top = good.clone();
    top[0] = 0x40;
    assert_eq!(Stun::parse(&top), Err(WireError::NotStun));
    assert_eq!(classify(&top), None, "first byte over 3: a Root packet");
    let odd = hex("0001 0002 2112a442 000000000000000000000000 0000");
    assert_eq!(Stun::parse(&odd), Err(WireError::BadLength));
    let long = hex("0001 0008 2112a442 000000000000000000000000 0003 0008 00000000");
    assert_eq!(Stun::parse(&long), Err(WireError::Truncated));
    // FINGERPRINT not last.
    let mut m =
        hex("0001 0010 2112a442 000000000000000000000000 8028 0004 00000000 8022 0000 0000 0000");
    m.truncate(20 + 16);
    BigEndian::write_u16(&mut m[2..4], 16);
    let fp = fingerprint(&m[..20]);
    BigEndian::write_u32(&mut m[24..28], fp);
    assert_eq!(Stun::parse(&m), Err(WireError::BadFingerprint));
    // Every prefix and every single-byte change of a vector: no panic.
    let v = hex(REQUEST);
    for i in 0..=v.len() {
        let _ = Stun::parse(&v[..i]);
        let _ = classify(&v[..i]);
    }
    for i in 0..v.len() {
        let mut w = v.clone();
        w[i] = w[i].wrapping_add(0x5b);
        if let Ok(m) = Stun::parse(&w) {
            let _ = m.attributes().count();
        }
    }
}

#[test]
fn classification_needs_the_length_and_the_cookie_or_a_classic_binding() {
    let mut d = hex("0001 0000 2112a442 000000000000000000000000");
    assert_eq!(classify(&d), Some(Dialect::Rfc8489));
    d.push(0);
    assert_eq!(
        classify(&d),
        None,
        "length field not the rest of the datagram"
    );
    let ind = hex("0011 0000 2112a442 000000000000000000000000");
    assert_eq!(
        classify(&ind),
        Some(Dialect::Rfc8489),
        "any type with the cookie"
    );
    let classic_ind = hex("0011 0000 01020304 000000000000000000000000");
    assert_eq!(
        classify(&classic_ind),
        None,
        "no cookie: only a Binding request"
    );
    // A plain Root keepalive (params 0x02, type 0, sig_len 0, timestamp): timestamp's
    // high bytes are 0, never the cookie.
    let root = hex("02 00 0000 00000000 6955b900");
    assert_eq!(classify(&root), None);
}
