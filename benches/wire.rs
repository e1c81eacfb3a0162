//! Criterion benches of the wire codecs and the identity checks on the hot paths (issue 5):
//!
//! - `udp_parse/<type>/<layout>` and `udp_emit/<type>/<layout>`: every UDP packet type 0-9,
//!   plain and shifted (3 junk bytes per shift): [`Root::parse`] + [`Payload::parse`], and
//!   [`RootHeader::emit`] + [`Payload::emit`] into a caller buffer.
//! - `tcp_parse/<frame>` and `tcp_emit/<frame>`: every TCP frame kind the hot paths see:
//!   hello, client Update, server Update, HeartBeat, JournalUpdate, the status frame, and
//!   the directory federation bodies (`rendezvous::wire::tcp::dir`) DirRecord (registration and
//!   refresh) and Forward (punch and relay), each framed as a TCP frame. A parse includes
//!   the framing call (`hello_len`, `command_len`, `StatusFrame::frame_len`).
//! - `answer/<what>`: the TCP answer stream read piece by piece by
//!   `rendezvous::wire::tcp::answer::AnswerReader`: a ListAll of 1000 records, a
//!   heartbeat's UpdateClock and barrier 200.
//! - `identity/fingerprint/<alg>` (SHA-256 of the certificate's DER),
//!   `identity/verify_self_signed/<alg>` (the full certificate check),
//!   `identity/verify_signature/<alg>` (one Root signature over `timestamp || payload`),
//!   for Ed25519, ECDSA P-256 and RSA-2048 (RSA only when the openssl command is there).
//! - `reconcile/record_id`: a contact's reconciliation id, beside `reconcile/sha256_body`
//!   (SHA-256 of its 536-byte record, the id before it named contact and clock).
//!
//! Throughput is in bytes (the packet or frame, or the certificate). The server core's
//! handling of keepalive, lookup, register and relay is in `benches/core.rs`.
//!
//! Run: `cargo bench --bench wire` (add `-- --quick` for a short run, or a filter such as
//! `-- udp_parse`).
// `criterion_main!` defines an undocumented `pub fn main`; the 100-line limit on functions
// is for src/.
#![allow(missing_docs, clippy::too_many_lines)]

mod common;

use common::{unix_base, Identities};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rendezvous::identity::{self, Identity};
use rendezvous::wire::tcp::answer::{AnswerReader, Asked};
use rendezvous::wire::tcp::dir::{DirRecord, Forward, ForwardBody, RecordBody, Registration};
use rendezvous::wire::tcp::{
    command_len, emit_client_record, hello_len, ClientCommand, ContactFields, Hello, Role,
    ServerCommand, StatusFrame, CLIENT_RECORD_LEN,
};
use rendezvous::wire::udp::root::{signed_message, PARAM_FROM_SERVER, PARAM_TO_SERVER};
use rendezvous::wire::udp::{
    ErrorReply, LookupAnswer, LookupStatus, OkInfo, Payload, Register, Relay, ServerEvent,
};
use rendezvous::wire::{Fingerprint, Root, RootHeader, MAX_DATAGRAM};
use std::net::SocketAddr;

/// Junk bytes per shift in the shifted layout.
const SHIFT: u8 = 3;

/// One UDP packet to bench: its header fields and payload.
struct UdpCase<'a> {
    /// The bench name: `<type>_<what>`.
    name: &'static str,
    /// 0x02 for a client's packet, 0x01 for a server's.
    params: u8,
    /// The signature (registrations and relays), else empty.
    signature: Vec<u8>,
    /// The payload.
    payload: Payload<'a>,
}

/// The payload's bytes.
fn payload_bytes(p: &Payload<'_>) -> Vec<u8> {
    let mut v = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut v).expect("payload emits");
    v.truncate(n);
    v
}

/// Every type 0-9 as the client or the server sends it; registrations and relays signed.
fn udp_cases<'a>(
    id: &'a Identity,
    peer: Fingerprint,
    event: &'a [u8],
    cookie: &'a [u8; 16],
    ts: u64,
) -> Vec<UdpCase<'a>> {
    let addr: SocketAddr = "203.0.113.5:51000".parse().expect("literal");
    let sign = |p: &Payload<'_>| id.sign(&signed_message(ts, &payload_bytes(p)));
    let register = Payload::Register(Register::listed(id.cert_der(), Some(cookie)));
    let relay = Payload::Relay(Relay { peer, event });
    vec![
        UdpCase {
            name: "0_keepalive",
            params: PARAM_TO_SERVER,
            signature: Vec::new(),
            payload: Payload::Keepalive,
        },
        UdpCase {
            name: "1_ok",
            params: PARAM_FROM_SERVER,
            signature: Vec::new(),
            payload: Payload::Ok(Some(OkInfo {
                keepalive_s: 25,
                boot_epoch: 0x1234_5678,
                reflexive: addr,
            })),
        },
        UdpCase {
            name: "2_register",
            params: PARAM_TO_SERVER,
            signature: sign(&register),
            payload: register,
        },
        UdpCase {
            name: "3_punch",
            params: PARAM_FROM_SERVER,
            signature: Vec::new(),
            payload: Payload::ServerEvent(ServerEvent::Punch { peer, addr }),
        },
        UdpCase {
            name: "4_relay",
            params: PARAM_TO_SERVER,
            signature: sign(&relay),
            payload: relay,
        },
        UdpCase {
            name: "5_lookup",
            params: PARAM_TO_SERVER,
            signature: Vec::new(),
            payload: Payload::Lookup(peer),
        },
        UdpCase {
            name: "6_lookup_answer",
            params: PARAM_FROM_SERVER,
            signature: Vec::new(),
            payload: Payload::LookupAnswer(LookupAnswer {
                target: peer,
                status: LookupStatus::Online { addr, age_s: 3 },
                home: "rendezvous",
            }),
        },
        UdpCase {
            name: "7_error",
            params: PARAM_FROM_SERVER,
            signature: Vec::new(),
            payload: Payload::Error(ErrorReply {
                status: 404,
                request_type: 0,
                detail: "unknown address: register again",
            }),
        },
        UdpCase {
            name: "8_fetch",
            params: PARAM_TO_SERVER,
            signature: Vec::new(),
            payload: Payload::Fetch,
        },
        UdpCase {
            name: "9_cookie",
            params: PARAM_FROM_SERVER,
            signature: Vec::new(),
            payload: Payload::Cookie(*cookie),
        },
    ]
}

/// `udp_parse/*` and `udp_emit/*`.
fn udp_benches(c: &mut Criterion, ids: &Identities, ts: u64) {
    let peer = ids.p256.fingerprint();
    let event = [0x42u8; 100];
    let cookie = [0xc0u8; 16];
    let cases = udp_cases(&ids.ed25519, peer, &event, &cookie, ts);
    let mut parse = c.benchmark_group("udp_parse");
    for case in &cases {
        let body = payload_bytes(&case.payload);
        for (layout, shift) in [("plain", None), ("shifted", Some(SHIFT))] {
            let header = RootHeader {
                params: case.params,
                shift_len: shift,
                packet_type: case.payload.packet_type(),
                signature: &case.signature,
                timestamp: ts,
            };
            let bytes = header.to_vec(&body).expect("packet");
            assert!(bytes.len() <= MAX_DATAGRAM, "{} fits a datagram", case.name);
            let check = Root::parse(&bytes).expect("parses");
            assert_eq!(
                Payload::parse(check.packet_type, check.payload).expect("payload parses"),
                case.payload
            );
            parse.throughput(Throughput::Bytes(bytes.len() as u64));
            parse.bench_with_input(BenchmarkId::new(case.name, layout), &bytes, |bn, bytes| {
                bn.iter(|| {
                    let r = Root::parse(black_box(bytes)).expect("parses");
                    let p = Payload::parse(r.packet_type, r.payload).expect("payload");
                    // By reference: moving the whole enum into black_box costs more
                    // than parsing it.
                    black_box(&p);
                })
            });
        }
    }
    parse.finish();

    let mut emit = c.benchmark_group("udp_emit");
    for case in &cases {
        for (layout, shift) in [("plain", None), ("shifted", Some(SHIFT))] {
            let header = RootHeader {
                params: case.params,
                shift_len: shift,
                packet_type: case.payload.packet_type(),
                signature: &case.signature,
                timestamp: ts,
            };
            let len = header.len() + case.payload.buffer_len();
            emit.throughput(Throughput::Bytes(len as u64));
            let mut buf = [0u8; MAX_DATAGRAM];
            let mut junk = 0x9e37_79b9_7f4a_7c15u64;
            emit.bench_function(BenchmarkId::new(case.name, layout), |bn| {
                bn.iter(|| {
                    let n = black_box(&header)
                        .emit(&mut buf, &mut junk)
                        .expect("header");
                    let m = black_box(&case.payload)
                        .emit(&mut buf[n..])
                        .expect("payload");
                    black_box(n + m)
                })
            });
        }
    }
    emit.finish();
}

/// Frames and parses one TCP frame at the start of the buffer; returns the frame's length.
type ParseFn<'a> = Box<dyn Fn(&[u8]) -> usize + 'a>;
/// Emits one TCP frame at the start of the buffer; returns its length.
type EmitFn<'a> = Box<dyn Fn(&mut [u8]) -> usize + 'a>;

/// A TCP frame to bench: its bytes, how to parse them, and how to emit them.
struct TcpCase<'a> {
    /// The bench name.
    name: &'static str,
    /// The frame as `emit` writes it.
    bytes: Vec<u8>,
    /// Framing and parsing.
    parse: ParseFn<'a>,
    /// Emitting.
    emit: EmitFn<'a>,
}

/// Parses a length-prefixed server-role frame (16 or 18) and returns its body.
fn var_body(frame: &[u8]) -> &[u8] {
    let n = command_len(Role::Server, frame)
        .expect("frames")
        .expect("whole");
    match ServerCommand::parse(&frame[..n]).expect("frame parses") {
        ServerCommand::DirRecord(b) | ServerCommand::Forward(b) => b,
        other => panic!("not a body frame: {other:?}"),
    }
}

/// Frames and parses one server-role command; returns its length.
fn parse_server(b: &[u8]) -> usize {
    let n = command_len(Role::Server, b)
        .expect("frames")
        .expect("whole");
    black_box(&ServerCommand::parse(&b[..n]).expect("parses"));
    n
}

/// Writes `[cmd][len u16]` then the body `emit` writes; returns the frame length.
fn emit_var(cmd: u8, buf: &mut [u8], emit: impl FnOnce(&mut [u8]) -> usize) -> usize {
    let n = emit(&mut buf[3..]);
    buf[0] = cmd;
    buf[1..3].copy_from_slice(&u16::try_from(n).expect("body fits").to_be_bytes());
    3 + n
}

/// The TCP frames of `tcp_parse/*` and `tcp_emit/*`, each checked to parse back whole.
fn tcp_cases<'a>(
    fields: ContactFields<'a>,
    record: DirRecord<'a>,
    refresh: DirRecord<'a>,
    punch: Forward<'a>,
    relay: Forward<'a>,
) -> Vec<TcpCase<'a>> {
    let to_vec = |emit: &dyn Fn(&mut [u8]) -> usize| {
        let mut v = vec![0u8; 4096];
        let n = emit(&mut v);
        v.truncate(n);
        v
    };
    let server_cmd = |cmd: ServerCommand<'a>| -> EmitFn<'a> {
        Box::new(move |buf| cmd.emit(buf).expect("emits"))
    };
    let mut cases = Vec::new();
    let mut push = |name, parse: ParseFn<'a>, emit: EmitFn<'a>| {
        let bytes = to_vec(&*emit);
        assert_eq!(parse(&bytes), bytes.len(), "{name} parses back whole");
        cases.push(TcpCase {
            name,
            bytes,
            parse,
            emit,
        });
    };
    push(
        "hello",
        Box::new(|b| {
            let n = hello_len(b).expect("hello").expect("whole");
            black_box(&Hello::parse(&b[..n]).expect("parses"));
            n
        }),
        Box::new(|buf| {
            Hello {
                role: Role::Server,
                name: "rendezvous-a",
            }
            .emit(buf)
            .expect("emits")
        }),
    );
    push(
        "client_update",
        Box::new(|b| {
            let n = command_len(Role::Client, b)
                .expect("frames")
                .expect("whole");
            black_box(&ClientCommand::parse(&b[..n]).expect("parses"));
            n
        }),
        Box::new(move |buf| ClientCommand::Update(fields).emit(buf).expect("emits")),
    );
    push(
        "server_update",
        Box::new(parse_server),
        server_cmd(ServerCommand::Update { clock: 11, fields }),
    );
    push(
        "heartbeat",
        Box::new(parse_server),
        server_cmd(ServerCommand::HeartBeat {
            health: 1,
            clock: 11,
        }),
    );
    push(
        "journal_update",
        Box::new(parse_server),
        server_cmd(ServerCommand::JournalUpdate {
            line: 42,
            clock: 11,
            fields,
        }),
    );
    push(
        "status_frame",
        Box::new(|b| {
            let n = StatusFrame::frame_len(b).expect("frames").expect("whole");
            black_box(&StatusFrame::parse(&b[..n]).expect("parses"));
            n
        }),
        Box::new(|buf| {
            StatusFrame {
                status: 200,
                request: 5,
                detail: "durable",
            }
            .emit(buf)
            .expect("emits")
        }),
    );
    for (name, rec) in [
        ("dir_record_registration", record),
        ("dir_record_refresh", refresh),
    ] {
        push(
            name,
            Box::new(|b| {
                let body = var_body(b);
                black_box(&DirRecord::parse(body).expect("record parses"));
                3 + body.len()
            }),
            Box::new(move |buf| emit_var(16, buf, |b| rec.emit(b).expect("emits"))),
        );
    }
    for (name, fwd) in [("forward_punch", punch), ("forward_relay", relay)] {
        push(
            name,
            Box::new(|b| {
                let body = var_body(b);
                black_box(&Forward::parse(body).expect("forward parses"));
                3 + body.len()
            }),
            Box::new(move |buf| emit_var(18, buf, |b| fwd.emit(b).expect("emits"))),
        );
    }
    cases
}

/// `tcp_parse/*` and `tcp_emit/*`.
fn tcp_benches(c: &mut Criterion, ids: &Identities, ts: u64) {
    let id = &ids.ed25519;
    let fields = ContactFields {
        username: "alice",
        contact: "bob",
        phone: "+15551234567",
    };
    let cookie = [0xc0u8; 16];
    let reg = Payload::Register(Register::listed(id.cert_der(), Some(&cookie)));
    let reg_payload = payload_bytes(&reg);
    let reg_sig = id.sign(&signed_message(ts, &reg_payload));
    let addr: SocketAddr = "198.51.100.7:40000".parse().expect("literal");
    let record = DirRecord {
        hops: 0,
        fingerprint: id.fingerprint(),
        timestamp: ts,
        age_ms: 1500,
        body: RecordBody::Registration(Registration {
            addr,
            home_uid: [0xa1; 16],
            home: "rendezvous-a",
            signature: &reg_sig,
            payload: &reg_payload,
        }),
    };
    let refresh = DirRecord {
        body: RecordBody::Refresh,
        ..record
    };
    let event = [0x42u8; 100];
    let punch = Forward {
        hops: 0,
        id: 0x0123_4567_89ab_cdef,
        target: id.fingerprint(),
        source: ids.p256.fingerprint(),
        body: ForwardBody::Punch(addr),
    };
    let relay = Forward {
        body: ForwardBody::Relay(&event),
        ..punch
    };
    let cases = tcp_cases(fields, record, refresh, punch, relay);

    let mut parse = c.benchmark_group("tcp_parse");
    for case in &cases {
        parse.throughput(Throughput::Bytes(case.bytes.len() as u64));
        parse.bench_function(case.name, |bn| {
            bn.iter(|| black_box((case.parse)(black_box(&case.bytes))))
        });
    }
    parse.finish();
    let mut emit = c.benchmark_group("tcp_emit");
    for case in &cases {
        emit.throughput(Throughput::Bytes(case.bytes.len() as u64));
        let mut buf = vec![0u8; 4096];
        emit.bench_function(case.name, |bn| {
            bn.iter(|| black_box((case.emit)(black_box(&mut buf))))
        });
    }
    emit.finish();
}

/// Reads a whole answer after asking `asked`; returns the pieces read.
fn read_answer(asked: &[Asked], bytes: &[u8]) -> usize {
    let mut reader = AnswerReader::new();
    for a in asked {
        reader.ask(*a, ()).expect("room");
    }
    let (mut at, mut pieces) = (0, 0);
    while let Some(p) = reader.read(&bytes[at..]).expect("the answer due") {
        at += p.len;
        pieces += 1;
    }
    pieces
}

/// `answer/*`: the answer stream read piece by piece ([`AnswerReader`]): a ListAll of
/// 1000 records, and a heartbeat's UpdateClock and barrier 200.
fn answer_benches(c: &mut Criterion) {
    let fields = ContactFields {
        username: "alice",
        contact: "bob",
        phone: "+15551234567",
    };
    let mut list = 1000u32.to_be_bytes().to_vec();
    let mut rec = [0u8; CLIENT_RECORD_LEN];
    emit_client_record(&fields, &mut rec).expect("emits");
    for _ in 0..1000 {
        list.extend_from_slice(&rec);
    }
    let mut heartbeat = vec![3, 0, 0, 0, 7];
    heartbeat.extend_from_slice(&[7, 0, 200, 5, 7]);
    heartbeat.extend_from_slice(b"durable");
    let cases: [(&str, &[Asked], Vec<u8>); 2] = [
        ("list_all_1000", &[Asked::ListAll], list),
        (
            "heartbeat_barrier",
            &[Asked::HeartBeat, Asked::Barrier],
            heartbeat,
        ),
    ];
    let mut g = c.benchmark_group("answer");
    for (name, asked, bytes) in &cases {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(*name, |bn| {
            bn.iter(|| black_box(read_answer(asked, black_box(bytes))))
        });
    }
    g.finish();
}

/// `identity/*`, for every key algorithm available.
fn identity_benches(c: &mut Criterion, ids: &Identities, ts: u64) {
    let mut g = c.benchmark_group("identity");
    // What a registration signs: timestamp || [cert_len][cert][cookie].
    for (alg, id) in ids.all() {
        let der = id.cert_der();
        g.throughput(Throughput::Bytes(der.len() as u64));
        g.bench_function(BenchmarkId::new("fingerprint", alg), |bn| {
            bn.iter(|| black_box(identity::fingerprint(black_box(der))))
        });
        g.bench_function(BenchmarkId::new("verify_self_signed", alg), |bn| {
            bn.iter(|| black_box(identity::verify_self_signed(black_box(der), ts).expect("valid")))
        });
        let reg = Payload::Register(Register::listed(der, Some(&[7; 16])));
        let msg = signed_message(ts, &payload_bytes(&reg));
        let sig = id.sign(&msg);
        let key = id.verifying_key().clone();
        key.verify(&msg, &sig).expect("own signature verifies");
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(BenchmarkId::new("verify_signature", alg), |bn| {
            bn.iter(|| {
                key.verify(black_box(&msg), black_box(&sig))
                    .expect("verifies")
            })
        });
    }
    g.finish();
}

/// `reconcile/record_id`: a contact's reconciliation id, as the store computes one per
/// contact each time it reads the ids (docs/PROTOCOL.md §8.20); beside it
/// `reconcile/sha256_body`, SHA-256 of the 536-byte server-role body, what an id cost
/// before it named its contact and clock (the baseline of the same run).
fn reconcile_benches(c: &mut Criterion) {
    use rendezvous::federation::reconcile::record_id;
    use rendezvous::wire::tcp::{emit_server_record, ContactFields, SERVER_RECORD_LEN};
    use sha2::{Digest, Sha256};
    let fields = ContactFields {
        username: "alice",
        contact: "bob",
        phone: "+15550100",
    };
    let mut rec = [0u8; SERVER_RECORD_LEN];
    emit_server_record(11, &fields, &mut rec).expect("fits");
    let mut g = c.benchmark_group("reconcile");
    g.bench_function("record_id", |bn| {
        bn.iter(|| black_box(record_id(black_box(11), black_box(&fields))))
    });
    g.bench_function("sha256_body", |bn| {
        bn.iter(|| black_box(Sha256::digest(black_box(&rec[1..]))))
    });
    g.finish();
}

/// Every bench of this file.
fn benches(c: &mut Criterion) {
    let ids = Identities::new();
    let ts = unix_base();
    udp_benches(c, &ids, ts);
    tcp_benches(c, &ids, ts);
    answer_benches(c);
    identity_benches(c, &ids, ts);
    reconcile_benches(c);
}

criterion_group!(wire_benches, benches);
criterion_main!(wire_benches);
