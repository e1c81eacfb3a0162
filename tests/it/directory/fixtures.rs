//! Byte fixtures of the directory's peer frames (docs/PROTOCOL.md §8.16): a registration
//! record's bytes, and bodies written by hand that the parsers must read.

use super::{addr, drain_records, Client, Fed, Reply};
use rendezvous::wire::tcp::dir::{DirRecord, Forward, ForwardBody, RecordBody};
use rendezvous::wire::udp::root::signed_message;
use rendezvous::wire::{Fingerprint, PacketType};

#[test]
fn registration_record_bytes() {
    let mut fed = Fed::line(1);
    let x = Client::new("192.0.2.10:40000");
    let ts = fed.now.unix_s;
    let first = x.signed(PacketType::Register, ts, &x.register_payload(None));
    let got = fed.send(0, x.addr, &first);
    let [(_, Reply::Cookie(cookie))] = got[..] else {
        panic!("{got:?}")
    };
    let payload = x.register_payload(Some(&cookie));
    let sig = x.id.sign(&signed_message(ts, &payload));
    let reg = x.packet(PacketType::Register, &sig, ts, &payload);
    assert_eq!(fed.send(0, x.addr, &reg)[0].1, Reply::Ok);
    let records = drain_records(&mut fed.nodes[0]);
    assert_eq!(records.len(), 1, "one record per registration");

    // kind 1, hops 0, fingerprint, timestamp, age 0,
    let mut want = vec![1, 0];
    want.extend_from_slice(&x.fp().0);
    want.extend_from_slice(&ts.to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0]);
    // family 4, 192.0.2.10 and 12 zero bytes, port 40000,
    want.extend_from_slice(&[4, 192, 0, 2, 10]);
    want.extend_from_slice(&[0; 12]);
    want.extend_from_slice(&[0x9c, 0x40]);
    // home uid (A's), home alias "A", the client's signature (Ed25519: deterministic) and
    // payload as received.
    want.extend_from_slice(&[b'A'; 16]);
    want.extend_from_slice(&[1, b'A']);
    want.extend_from_slice(&u16::try_from(sig.len()).unwrap().to_be_bytes());
    want.extend_from_slice(&sig);
    want.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    want.extend_from_slice(&payload);
    assert_eq!(records[0], want);

    // The refresh and expiry records of the same client: 46 bytes, fixed layout.
    fed.set_clock(10_000);
    fed.keepalive(0, &x);
    fed.set_clock(25_000); // the announce interval passes
    fed.tick(0);
    let refresh = drain_records(&mut fed.nodes[0]);
    assert_eq!(refresh.len(), 1);
    let mut want = vec![2, 0];
    want.extend_from_slice(&x.fp().0);
    want.extend_from_slice(&ts.to_be_bytes());
    want.extend_from_slice(&15_000u32.to_be_bytes()); // heard 15 s before the announce
    assert_eq!(refresh[0], want);
}

#[test]
fn hand_written_bodies_parse() {
    // A refresh from hops 2, and a punch forward toward an IPv4 asker.
    let refresh = hex(concat!(
        "0202",
        "abababababababababababababababababababababababababababababababab",
        "0000000066000000",
        "00002710"
    ));
    let r = DirRecord::parse(&refresh).expect("refresh");
    assert_eq!(
        (r.hops, r.fingerprint, r.timestamp, r.age_ms, r.body),
        (
            2,
            Fingerprint([0xab; 32]),
            0x6600_0000,
            10_000,
            RecordBody::Refresh
        )
    );
    let punch = hex(concat!(
        "0100",
        "0000000000000007",
        "0101010101010101010101010101010101010101010101010101010101010101",
        "0202020202020202020202020202020202020202020202020202020202020202",
        "04cb007105000000000000000000000000",
        "1388"
    ));
    let f = Forward::parse(&punch).expect("punch");
    assert_eq!(f.id, 7);
    assert_eq!(f.body, ForwardBody::Punch(addr("203.0.113.5:5000")));
    assert_eq!(f.to_vec().unwrap(), punch);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
