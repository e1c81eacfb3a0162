//! Property tests of the UDP wire codecs (`src/wire/udp/`): every Root layout
//! and every payload type round-trips through emit and parse; no input, arbitrary or
//! truncated, makes a parser panic; a truncated packet is an error unless its prefix is
//! itself a valid packet of the layout (listed in [`prefix_may_parse`]). Plus byte-exact
//! fixtures written by hand from docs/PROTOCOL.md §3's type table, checked in both
//! directions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use rendezvous::wire::udp::{
    canonical_addr, parse_cookie, parse_lookup, ErrorReply, LookupAnswer, LookupStatus, OkInfo,
    Payload, Register, Relay, ServerEvent, COOKIE_LEN, FLAG_UNLISTED, MAX_EVENT,
};
use rendezvous::wire::{Fingerprint, PacketType, Root, RootHeader, WireError, MAX_DATAGRAM};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn sock_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        // IPv4-mapped IPv6, which the wire writes as family 4.
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(
            IpAddr::V6(Ipv4Addr::from(ip).to_ipv6_mapped()),
            port
        )),
    ]
}

fn fingerprint() -> impl Strategy<Value = Fingerprint> {
    any::<[u8; 32]>().prop_map(Fingerprint)
}

fn bytes(range: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), range)
}

/// UTF-8 text of at most `max` bytes (multi-byte characters included).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=max).prop_map(move |cs| {
        let mut s = String::new();
        for c in cs {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    })
}

/// An owned payload of every type (the strategies cannot hand out borrowed views).
#[derive(Debug, Clone)]
enum Owned {
    Keepalive,
    OkEmpty,
    Ok(OkInfo),
    Register {
        cert: Vec<u8>,
        cookie: Option<[u8; 16]>,
        unlisted: bool,
    },
    Punch {
        peer: Fingerprint,
        addr: SocketAddr,
    },
    OtherEvent {
        code: u8,
        body: Vec<u8>,
    },
    Relay {
        peer: Fingerprint,
        event: Vec<u8>,
    },
    Lookup(Fingerprint),
    Answer {
        target: Fingerprint,
        status: LookupStatus,
        home: String,
    },
    Error {
        status: u16,
        request_type: u8,
        detail: String,
    },
    Fetch,
    Cookie([u8; 16]),
}

impl Owned {
    fn view(&self) -> Payload<'_> {
        match self {
            Owned::Keepalive => Payload::Keepalive,
            Owned::OkEmpty => Payload::Ok(None),
            Owned::Ok(o) => Payload::Ok(Some(*o)),
            Owned::Register {
                cert,
                cookie,
                unlisted,
            } => Payload::Register(Register {
                cert,
                cookie: cookie.as_ref(),
                unlisted: *unlisted,
            }),
            Owned::Punch { peer, addr } => Payload::ServerEvent(ServerEvent::Punch {
                peer: *peer,
                addr: *addr,
            }),
            Owned::OtherEvent { code, body } => {
                Payload::ServerEvent(ServerEvent::Unknown { code: *code, body })
            }
            Owned::Relay { peer, event } => Payload::Relay(Relay { peer: *peer, event }),
            Owned::Lookup(fp) => Payload::Lookup(*fp),
            Owned::Answer {
                target,
                status,
                home,
            } => Payload::LookupAnswer(LookupAnswer {
                target: *target,
                status: *status,
                home,
            }),
            Owned::Error {
                status,
                request_type,
                detail,
            } => Payload::Error(ErrorReply {
                status: *status,
                request_type: *request_type,
                detail,
            }),
            Owned::Fetch => Payload::Fetch,
            Owned::Cookie(c) => Payload::Cookie(*c),
        }
    }

    /// What parsing the emitted bytes gives: the same, with addresses in canonical form.
    fn expected(&self) -> Owned {
        match self {
            Owned::Ok(o) => Owned::Ok(OkInfo {
                reflexive: canonical_addr(o.reflexive),
                ..*o
            }),
            Owned::Punch { peer, addr } => Owned::Punch {
                peer: *peer,
                addr: canonical_addr(*addr),
            },
            Owned::Answer {
                target,
                status: LookupStatus::Online { addr, age_s },
                home,
            } => Owned::Answer {
                target: *target,
                status: LookupStatus::Online {
                    addr: canonical_addr(*addr),
                    age_s: *age_s,
                },
                home: home.clone(),
            },
            other => other.clone(),
        }
    }
}

fn lookup_status() -> impl Strategy<Value = LookupStatus> {
    prop_oneof![
        (sock_addr(), any::<u32>()).prop_map(|(addr, age_s)| LookupStatus::Online { addr, age_s }),
        any::<u32>().prop_map(|age_s| LookupStatus::Offline { age_s }),
        Just(LookupStatus::Unknown),
    ]
}

fn payload() -> impl Strategy<Value = Owned> {
    prop_oneof![
        Just(Owned::Keepalive),
        Just(Owned::OkEmpty),
        (any::<u16>(), any::<u32>(), sock_addr()).prop_map(|(k, e, a)| Owned::Ok(OkInfo {
            keepalive_s: k,
            boot_epoch: e,
            reflexive: a,
        })),
        (
            bytes(1..=1300),
            proptest::option::of(any::<[u8; COOKIE_LEN]>()),
            any::<bool>()
        )
            .prop_map(|(cert, cookie, unlisted)| Owned::Register {
                cert,
                cookie,
                unlisted
            }),
        (fingerprint(), sock_addr()).prop_map(|(peer, addr)| Owned::Punch { peer, addr }),
        (2u8.., bytes(0..=200)).prop_map(|(code, body)| Owned::OtherEvent { code, body }),
        (fingerprint(), bytes(1..=MAX_EVENT))
            .prop_map(|(peer, event)| Owned::Relay { peer, event }),
        fingerprint().prop_map(Owned::Lookup),
        (fingerprint(), lookup_status(), text(255)).prop_map(|(target, status, home)| {
            Owned::Answer {
                target,
                status,
                home,
            }
        }),
        (any::<u16>(), any::<u8>(), text(255)).prop_map(|(status, request_type, detail)| {
            Owned::Error {
                status,
                request_type,
                detail,
            }
        }),
        Just(Owned::Fetch),
        any::<[u8; COOKIE_LEN]>().prop_map(Owned::Cookie),
    ]
}

/// A Root header whose whole datagram (with `payload_len`) stays within 1400 bytes.
#[derive(Debug, Clone)]
struct Header {
    params: u8,
    shift: Option<u8>,
    ty: u8,
    sig: Vec<u8>,
    ts: u64,
}

impl Header {
    fn root(&self) -> RootHeader<'_> {
        RootHeader {
            params: self.params,
            shift_len: self.shift,
            packet_type: PacketType::from(self.ty),
            signature: &self.sig,
            timestamp: self.ts,
        }
    }
}

fn fixed_len(shift: Option<u8>) -> usize {
    match shift {
        None => 12,
        Some(s) => 13 + 4 * usize::from(s),
    }
}

/// A header of any layout leaving room for `room` payload bytes (`room` <= 1387).
fn header(ty: impl Strategy<Value = u8>, room: usize) -> impl Strategy<Value = Header> {
    let max_shift = u8::try_from((MAX_DATAGRAM - 13 - room) / 4).unwrap_or(u8::MAX);
    (
        prop::sample::select(vec![0u8, 1, 2, 3]),
        proptest::option::of(0..=max_shift),
        ty,
        any::<u64>(),
    )
        .prop_flat_map(move |(params, shift, ty, ts)| {
            let max_sig = MAX_DATAGRAM - fixed_len(shift) - room;
            bytes(0..=max_sig.min(600)).prop_map(move |sig| Header {
                params,
                shift,
                ty,
                sig,
                ts,
            })
        })
}

/// A full datagram: a header of any layout and a payload of the type it names.
fn packet() -> impl Strategy<Value = (Header, Owned)> {
    payload().prop_flat_map(|p| {
        let ty = u8::from(p.view().packet_type());
        let room = p.view().buffer_len();
        header(Just(ty), room).prop_map(move |h| (h, p.clone()))
    })
}

fn emit_payload(p: &Payload<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut buf).expect("emit payload");
    assert_eq!(n, p.buffer_len(), "emit wrote buffer_len bytes");
    buf
}

fn emit_packet(h: &Header, p: &Payload<'_>) -> Vec<u8> {
    h.root().to_vec(&emit_payload(p)).expect("emit root")
}

/// Whether the first `k` bytes of payload `p` may parse as a valid payload of its type
/// (the layout allows it): an empty OK is an OK without payload, a registration cut just before its
/// cookie or flags is one without (and cut one byte into a cookie starting 0x01, one with
/// flags), a relay cut after at least one event byte is a shorter event,
/// keepalive padding and unknown event bodies are free.
fn prefix_may_parse(p: &Owned, k: usize) -> bool {
    match p {
        Owned::Keepalive | Owned::OtherEvent { .. } => true,
        Owned::Ok(_) | Owned::OkEmpty => k == 0,
        Owned::Register {
            cert,
            cookie,
            unlisted,
        } => {
            let at = 2 + cert.len();
            (k == at && (cookie.is_some() || *unlisted))
                || (k == at + 1 && cookie.is_some_and(|c| c[0] == FLAG_UNLISTED))
                || (k == at + COOKIE_LEN && cookie.is_some() && *unlisted)
        }
        Owned::Relay { .. } => k >= 33,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Root: plain and shifted, any shift_len, any signature and payload within 1400 bytes.
    #[test]
    fn root_round_trip(
        (h, payload) in header(any::<u8>(), 0).prop_flat_map(|h| {
            let room = MAX_DATAGRAM - h.root().len();
            (Just(h), bytes(0..=room))
        })
    ) {
        let v = h.root().to_vec(&payload).unwrap();
        prop_assert_eq!(v.len(), h.root().len() + payload.len());
        prop_assert!(v.len() <= MAX_DATAGRAM);
        let r = Root::parse(&v).unwrap();
        let shifted = if h.shift.is_some() { 0x04 } else { 0 };
        prop_assert_eq!(r.params, h.params | shifted);
        prop_assert_eq!(r.shift_len, h.shift);
        prop_assert_eq!(r.packet_type, PacketType::from(h.ty));
        prop_assert_eq!(u8::from(r.packet_type), h.ty);
        prop_assert_eq!(r.signature, &h.sig[..]);
        prop_assert_eq!(r.timestamp, h.ts);
        prop_assert_eq!(r.payload, &payload[..]);
        prop_assert_eq!(r.from_server(), h.params & 1 != 0);
        // The signed message is timestamp || payload.
        let mut scratch = vec![0u8; 8 + payload.len()];
        let m = r.signed_message(&mut scratch).unwrap();
        prop_assert_eq!(&m[..8], &h.ts.to_be_bytes()[..]);
        prop_assert_eq!(&m[8..], &payload[..]);
        prop_assert!(r.signed_message(&mut scratch[..7 + payload.len()]).is_none());
        // emit into a buffer one byte short fails cleanly.
        let mut short = vec![0u8; h.root().len() - 1];
        prop_assert_eq!(h.root().emit(&mut short, &mut 1), Err(WireError::BufferTooSmall));
    }

    /// Every payload type, emitted and parsed alone and inside a Root of any layout.
    #[test]
    fn payload_round_trip((h, p) in packet()) {
        let view = p.view();
        let bytes = emit_payload(&view);
        let expected = p.expected();
        let parsed = Payload::parse(view.packet_type(), &bytes).unwrap();
        prop_assert_eq!(parsed, expected.view());
        // Inside a Root.
        let v = emit_packet(&h, &view);
        prop_assert!(v.len() <= MAX_DATAGRAM);
        let r = Root::parse(&v).unwrap();
        prop_assert_eq!(r.packet_type, view.packet_type());
        prop_assert_eq!(Payload::parse(r.packet_type, r.payload).unwrap(), expected.view());
        // A buffer one byte short is refused, never overrun.
        if !bytes.is_empty() {
            let mut short = vec![0u8; bytes.len() - 1];
            prop_assert_eq!(view.emit(&mut short), Err(WireError::BufferTooSmall));
        }
    }

    /// Cutting a valid datagram at every offset: an error (or, where the layout allows it,
    /// a valid shorter packet), never a panic.
    #[test]
    fn truncation_is_an_error((h, p) in packet()) {
        let view = p.view();
        let v = emit_packet(&h, &view);
        let hl = h.root().len();
        for k in 0..v.len() {
            let cut = &v[..k];
            match Root::parse(cut) {
                Err(e) => prop_assert!(k < hl, "root refused at {} >= header {}: {:?}", k, hl, e),
                Ok(r) => {
                    prop_assert!(k >= hl, "a root parsed from {} < {} header bytes", k, hl);
                    let res = Payload::parse(r.packet_type, r.payload);
                    if !prefix_may_parse(&p, k - hl) {
                        prop_assert!(res.is_err(), "{:?} cut to {} payload bytes parsed: {:?}", p, k - hl, res);
                    }
                }
            }
        }
    }

    /// Arbitrary bytes never make a parser panic; a Root that parses is consistent.
    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(0..=1500)) {
        match Root::parse(&data) {
            Ok(r) => {
                prop_assert!(data.len() <= MAX_DATAGRAM);
                prop_assert_eq!(r.params & !0x07, 0);
                prop_assert!(data.ends_with(r.payload));
                let header = RootHeader {
                    params: r.params & 0x03,
                    shift_len: r.shift_len,
                    packet_type: r.packet_type,
                    signature: r.signature,
                    timestamp: r.timestamp,
                };
                prop_assert_eq!(header.len() + r.payload.len(), data.len());
            }
            Err(e) => prop_assert!(
                matches!(e, WireError::Truncated | WireError::BadParams | WireError::TooLarge),
                "unexpected root error {:?}", e
            ),
        }
        for ty in 0..=255u8 {
            let res = Payload::parse(PacketType::from(ty), &data);
            if ty > 9 {
                prop_assert_eq!(res, Err(WireError::UnknownType));
            }
            // Whatever parses can be emitted again, and that form is stable.
            if let Ok(p) = res {
                let once = emit_payload(&p);
                let again = Payload::parse(PacketType::from(ty), &once).unwrap();
                prop_assert_eq!(emit_payload(&again), once);
            }
        }
        let _ = parse_lookup(&data);
        let _ = parse_cookie(&data);
        let _ = OkInfo::parse(&data);
        let _ = LookupAnswer::parse(&data);
        let _ = ErrorReply::parse(&data);
        let _ = Register::parse(&data);
        let _ = Relay::parse(&data);
        let _ = ServerEvent::parse(&data);
    }

    /// Payload bytes shaped like the real thing (a valid prefix then noise) reach deeper
    /// into the parsers than uniform noise does.
    #[test]
    fn mutated_payloads_never_panic((h, p) in packet(), at in any::<prop::sample::Index>(), noise in bytes(0..=40)) {
        let v = emit_packet(&h, &p.view());
        let cut = at.index(v.len() + 1);
        let mut m = v[..cut].to_vec();
        m.extend_from_slice(&noise);
        if let Ok(r) = Root::parse(&m) {
            for ty in 0..=10u8 {
                let _ = Payload::parse(PacketType::from(ty), r.payload);
            }
        }
    }

    /// An error detail longer than its 255-byte field is cut at a character boundary.
    #[test]
    fn error_detail_is_cut_at_a_char_boundary(detail in text(400), room in 4usize..300) {
        let e = ErrorReply { status: 400, request_type: 0xFF, detail: &detail };
        let mut buf = vec![0u8; room];
        let n = e.emit(&mut buf).unwrap();
        prop_assert!(n <= room);
        let back = ErrorReply::parse(&buf[..n]).unwrap();
        prop_assert!(detail.starts_with(back.detail));
        prop_assert!(back.detail.len() <= 255);
        prop_assert!(back.detail.len() + 4 == n);
        // The cut is the longest that fits.
        let fits = (room - 4).min(255);
        if let Some(c) = detail[back.detail.len()..].chars().next() {
            prop_assert!(back.detail.len() + c.len_utf8() > fits);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Byte-exact fixtures, written by hand from docs/PROTOCOL.md §3
// ---------------------------------------------------------------------------------------

const TS: [u8; 8] = [0, 0, 0, 0, 0x66, 0x00, 0x00, 0x01];
const TS_U64: u64 = 0x6600_0001;

/// A plain s->c Root: params 0x01, `ty`, sig_len 0, TS, then `payload`.
fn server_packet(ty: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x01, ty, 0x00, 0x00];
    v.extend_from_slice(&TS);
    v.extend_from_slice(payload);
    v
}

/// Checks `bytes` both ways: parses to `expected`, and `expected` emits exactly `bytes`.
fn fixture(bytes: &[u8], expected: Payload<'_>) {
    let r = Root::parse(bytes).unwrap();
    assert_eq!(
        (r.params, r.shift_len, r.signature, r.timestamp),
        (0x01, None, &[][..], TS_U64)
    );
    assert_eq!(r.packet_type, expected.packet_type());
    assert_eq!(Payload::parse(r.packet_type, r.payload).unwrap(), expected);
    let h = RootHeader {
        params: 0x01,
        shift_len: None,
        packet_type: expected.packet_type(),
        signature: &[],
        timestamp: TS_U64,
    };
    assert_eq!(h.to_vec(&emit_payload(&expected)).unwrap(), bytes);
}

const FP: [u8; 32] = [0xAB; 32];

#[test]
fn fixture_type6_online_answer_ipv4() {
    // target | status 0 | family 4 | 192.0.2.1 | port 4747 | age 7 | home_len 3 | "eu1"
    let mut p = FP.to_vec();
    p.extend_from_slice(&[0x00, 0x04, 192, 0, 2, 1, 0x12, 0x8B, 0, 0, 0, 7, 3]);
    p.extend_from_slice(b"eu1");
    assert_eq!(p.len(), 32 + 1 + 7 + 4 + 1 + 3);
    fixture(
        &server_packet(6, &p),
        Payload::LookupAnswer(LookupAnswer {
            target: Fingerprint(FP),
            status: LookupStatus::Online {
                addr: "192.0.2.1:4747".parse().unwrap(),
                age_s: 7,
            },
            home: "eu1",
        }),
    );
}

#[test]
fn fixture_type6_online_answer_ipv6_and_mapped() {
    let mut p = FP.to_vec();
    p.extend_from_slice(&[0x00, 0x06]);
    p.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ]);
    p.extend_from_slice(&[0x12, 0x8B, 0, 0, 0, 0, 0]);
    let v6 = Payload::LookupAnswer(LookupAnswer {
        target: Fingerprint(FP),
        status: LookupStatus::Online {
            addr: "[2001:db8::1]:4747".parse().unwrap(),
            age_s: 0,
        },
        home: "",
    });
    fixture(&server_packet(6, &p), v6);
    // An IPv4-mapped address is written as family 4.
    let mapped = LookupAnswer {
        target: Fingerprint(FP),
        status: LookupStatus::Online {
            addr: "[::ffff:192.0.2.1]:4747".parse().unwrap(),
            age_s: 7,
        },
        home: "",
    };
    let mut want = FP.to_vec();
    want.extend_from_slice(&[0x00, 0x04, 192, 0, 2, 1, 0x12, 0x8B, 0, 0, 0, 7, 0]);
    assert_eq!(emit_payload(&Payload::LookupAnswer(mapped)), want);
}

#[test]
fn fixture_type6_offline_and_unknown() {
    // status 1: family 0, no address, port 0, age 3600, home "h"
    let mut p = FP.to_vec();
    p.extend_from_slice(&[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0E, 0x10, 0x01, b'h']);
    fixture(
        &server_packet(6, &p),
        Payload::LookupAnswer(LookupAnswer {
            target: Fingerprint(FP),
            status: LookupStatus::Offline { age_s: 3600 },
            home: "h",
        }),
    );
    // status 2: family 0, port 0, age 0, no home
    let mut p = FP.to_vec();
    p.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0x00]);
    fixture(
        &server_packet(6, &p),
        Payload::LookupAnswer(LookupAnswer {
            target: Fingerprint(FP),
            status: LookupStatus::Unknown,
            home: "",
        }),
    );
}

#[test]
fn fixture_type7_error_404_detail_x() {
    // status 404 = 0x0194 | request type 0 (keepalive) | detail_len 1 | "x"
    let bytes = server_packet(7, &[0x01, 0x94, 0x00, 0x01, b'x']);
    assert_eq!(bytes.len(), 17);
    fixture(
        &bytes,
        Payload::Error(ErrorReply {
            status: 404,
            request_type: 0,
            detail: "x",
        }),
    );
    // 400 for an unreadable type: request type 0xFF, empty detail.
    fixture(
        &server_packet(7, &[0x01, 0x90, 0xFF, 0x00]),
        Payload::Error(ErrorReply {
            status: 400,
            request_type: 0xFF,
            detail: "",
        }),
    );
}

#[test]
fn fixture_type1_ok() {
    // keepalive 25 | epoch 0xDEADBEEF | family 4 | 192.0.2.1 | 4747
    fixture(
        &server_packet(
            1,
            &[
                0x00, 0x19, 0xDE, 0xAD, 0xBE, 0xEF, 0x04, 192, 0, 2, 1, 0x12, 0x8B,
            ],
        ),
        Payload::Ok(Some(OkInfo {
            keepalive_s: 25,
            boot_epoch: 0xDEAD_BEEF,
            reflexive: "192.0.2.1:4747".parse().unwrap(),
        })),
    );
    // An OK without payload.
    fixture(&server_packet(1, &[]), Payload::Ok(None));
    // family 6
    let mut p = vec![0x00, 0x19, 0, 0, 0, 1, 0x06];
    p.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
    ]);
    p.extend_from_slice(&[0xFF, 0xFF]);
    fixture(
        &server_packet(1, &p),
        Payload::Ok(Some(OkInfo {
            keepalive_s: 25,
            boot_epoch: 1,
            reflexive: "[2001:db8::2]:65535".parse().unwrap(),
        })),
    );
}

#[test]
fn fixture_type3_punch_and_type4_relay_and_type9_cookie() {
    // code 1 | peer fp | family 4 | 198.51.100.7 | 40000
    let mut p = vec![0x01];
    p.extend_from_slice(&FP);
    p.extend_from_slice(&[0x04, 198, 51, 100, 7, 0x9C, 0x40]);
    assert_eq!(p.len(), 40);
    fixture(
        &server_packet(3, &p),
        Payload::ServerEvent(ServerEvent::Punch {
            peer: Fingerprint(FP),
            addr: "198.51.100.7:40000".parse().unwrap(),
        }),
    );
    // s->c relay: source fp | event "hi"
    let mut p = FP.to_vec();
    p.extend_from_slice(b"hi");
    fixture(
        &server_packet(4, &p),
        Payload::Relay(Relay {
            peer: Fingerprint(FP),
            event: b"hi",
        }),
    );
    let cookie: [u8; 16] = core::array::from_fn(|i| i as u8);
    fixture(&server_packet(9, &cookie), Payload::Cookie(cookie));
}

#[test]
fn fixture_client_packets() {
    // Register, plain, params 0x02, signature "SIG": cert_len 3 | "abc" | cookie 16
    let cookie = [0xC0; 16];
    let mut bytes = vec![0x02, 0x02, 0x00, 0x03, b'S', b'I', b'G'];
    bytes.extend_from_slice(&TS);
    bytes.extend_from_slice(&[0x00, 0x03, b'a', b'b', b'c']);
    bytes.extend_from_slice(&cookie);
    let r = Root::parse(&bytes).unwrap();
    assert_eq!(
        (r.params, r.packet_type, r.signature),
        (0x02, PacketType::Register, &b"SIG"[..])
    );
    let reg = Register::parse(r.payload).unwrap();
    assert_eq!(reg, Register::listed(b"abc", Some(&cookie)));
    // Lookup: exactly 32 bytes.
    assert_eq!(parse_lookup(&FP), Ok(Fingerprint(FP)));
    // Shifted keepalive, shift_len 2, junk "jj": params 0x06 | 2 | type 0 | jj | sig_len 0 |
    // jj | (no signature) jj | ts | jj | padding
    let mut s = vec![
        0x06, 0x02, 0x00, b'j', b'j', 0x00, 0x00, b'j', b'j', b'j', b'j',
    ];
    s.extend_from_slice(&TS);
    s.extend_from_slice(&[b'j', b'j', 0, 0, 0]);
    let r = Root::parse(&s).unwrap();
    assert_eq!(
        (
            r.params,
            r.shift_len,
            r.packet_type,
            r.signature,
            r.timestamp,
            r.payload
        ),
        (
            0x06,
            Some(2),
            PacketType::Keepalive,
            &[][..],
            TS_U64,
            &[0u8, 0, 0][..]
        )
    );
}

#[test]
fn fixture_refusals() {
    let ok = |p: &[u8]| OkInfo::parse(p);
    assert_eq!(
        ok(&[0, 25, 0, 0, 0, 1, 5, 1, 2, 3, 4, 0, 1]),
        Err(WireError::BadFamily)
    );
    assert_eq!(
        ok(&[0, 25, 0, 0, 0, 1, 4, 1, 2, 3, 4, 0, 1, 9]),
        Err(WireError::TrailingData)
    );
    let mut a = FP.to_vec();
    a.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(LookupAnswer::parse(&a), Err(WireError::BadStatus));
    let mut a = FP.to_vec();
    a.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(LookupAnswer::parse(&a), Err(WireError::BadFamily));
    let mut a = FP.to_vec();
    a.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF]);
    assert_eq!(LookupAnswer::parse(&a), Err(WireError::BadUtf8));
    assert_eq!(
        ErrorReply::parse(&[1, 0x94, 0, 1, 0xC3]),
        Err(WireError::BadUtf8)
    );
    assert_eq!(
        ErrorReply::parse(&[1, 0x94, 0, 2, b'x']),
        Err(WireError::Truncated)
    );
    assert_eq!(Register::parse(&[0, 0]), Err(WireError::BadLength));
    assert_eq!(
        Register::parse(&[0, 1, b'c', 1, 2]),
        Err(WireError::BadLength)
    );
    assert_eq!(Register::parse(&[0, 2, b'c']), Err(WireError::Truncated));
    // One byte after the certificate is the flags: 0x01 (unlisted), nothing else.
    assert_eq!(
        Register::parse(&[0, 1, b'c', 1]),
        Ok(Register {
            cert: b"c",
            cookie: None,
            unlisted: true
        })
    );
    assert_eq!(Register::parse(&[0, 1, b'c', 2]), Err(WireError::BadFlags));
    assert_eq!(Register::parse(&[0, 1, b'c', 0]), Err(WireError::BadFlags));
    let mut r = vec![0, 1, b'c'];
    r.extend_from_slice(&[9; COOKIE_LEN]);
    r.push(1);
    assert_eq!(
        Register::parse(&r),
        Ok(Register {
            cert: b"c",
            cookie: Some(&[9; COOKIE_LEN]),
            unlisted: true
        })
    );
    r.push(1);
    assert_eq!(Register::parse(&r), Err(WireError::BadLength));
    let mut r = FP.to_vec();
    r.extend_from_slice(&[0; 1201]);
    assert_eq!(Relay::parse(&r), Err(WireError::BadLength));
    assert!(Relay::parse(&FP).is_err(), "an empty event is refused");
    assert_eq!(parse_lookup(&FP[..31]), Err(WireError::Truncated));
    assert_eq!(parse_cookie(&[0; 17]), Err(WireError::TrailingData));
    assert_eq!(
        Payload::parse(PacketType::Fetch, &[0]),
        Err(WireError::TrailingData)
    );
    assert_eq!(
        Payload::parse(PacketType::Unknown(200), &[]),
        Err(WireError::UnknownType)
    );
    // Relay emit refuses what parse refuses.
    let big = [0u8; 1201];
    let mut buf = [0u8; 1300];
    assert_eq!(
        Relay {
            peer: Fingerprint(FP),
            event: &big
        }
        .emit(&mut buf),
        Err(WireError::BadLength)
    );
    // A home alias over 255 bytes is refused, never cut.
    let home = "h".repeat(256);
    let a = LookupAnswer {
        target: Fingerprint(FP),
        status: LookupStatus::Unknown,
        home: &home,
    };
    assert_eq!(a.emit(&mut [0u8; 400]), Err(WireError::NameTooLong));
    // Root: 1400 bytes parse, 1401 do not; reserved params bits.
    let mut max = server_packet(0, &[]);
    max.resize(1400, 0);
    assert!(Root::parse(&max).is_ok());
    max.push(0);
    assert_eq!(Root::parse(&max), Err(WireError::TooLarge));
    for p in [0x08u8, 0x10, 0x80, 0xFF] {
        assert_eq!(
            Root::parse(&[p, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::BadParams)
        );
    }
}
