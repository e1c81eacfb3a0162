//! Criterion benches of the hot paths, driven straight into the I/O-free core: parsing and
//! emitting Root packets, fingerprinting and signature checks, and the server's handling of
//! keepalive, lookup and register. Throughput is in packets.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rendezvous::client::{decode, Incoming};
use rendezvous::core::{Config, Now, Server};
use rendezvous::identity::{self, Identity, KeyAlgorithm};
use rendezvous::wire::root::{signed_message, PARAM_TO_SERVER};
use rendezvous::wire::udp::{Payload, Register};
use rendezvous::wire::{PacketType, Root, RootHeader};
use std::net::SocketAddr;

const UNIX: u64 = 1_800_000_000;

fn now(ms: u64) -> Now {
    Now {
        mono_ms: ms,
        unix_s: UNIX + ms / 1000,
    }
}

fn packet(ty: PacketType, payload: &[u8], sig: &[u8], ts: u64) -> Vec<u8> {
    RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: ty,
        signature: sig,
        timestamp: ts,
    }
    .to_vec(payload)
    .unwrap()
}

fn register_packet(id: &Identity, cookie: Option<&[u8; 16]>, ts: u64) -> Vec<u8> {
    let p = Payload::Register(Register {
        cert: id.cert_der(),
        cookie,
    });
    let mut body = vec![0; p.buffer_len()];
    p.emit(&mut body).unwrap();
    let sig = id.sign(&signed_message(ts, &body));
    packet(PacketType::Register, &body, &sig, ts)
}

/// Registers `id` from `addr` through the cookie exchange.
fn register(server: &mut Server, id: &Identity, addr: SocketAddr, ts: u64) {
    let mut replies = Vec::new();
    let first = register_packet(id, None, ts);
    server.handle_datagram(now(0), addr, &first, &mut |_, b| replies.push(b.to_vec()));
    let Incoming::Cookie(c) = decode(&replies[0]) else {
        panic!("no cookie")
    };
    let second = register_packet(id, Some(&c), ts);
    replies.clear();
    server.handle_datagram(now(0), addr, &second, &mut |_, b| replies.push(b.to_vec()));
    assert!(matches!(decode(&replies[0]), Incoming::Ok(_)));
}

fn benches(c: &mut Criterion) {
    let a = Identity::generate(KeyAlgorithm::Ed25519, "a").unwrap();
    let b = Identity::generate(KeyAlgorithm::Ed25519, "b").unwrap();
    let p256 = Identity::generate(KeyAlgorithm::EcdsaP256, "p").unwrap();
    let addr_a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let addr_b: SocketAddr = "198.51.100.1:5000".parse().unwrap();
    let cfg = Config {
        punch_interval_ms: u64::MAX / 4,
        ..Config::default()
    };
    let mut server = Server::new(cfg, [9; 32], now(0));
    register(&mut server, &a, addr_a, UNIX);
    register(&mut server, &b, addr_b, UNIX);
    let keepalive = packet(PacketType::Keepalive, &[], &[], 0);
    let lookup = packet(PacketType::Lookup, &b.fingerprint().0, &[], 0);

    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    let reg = register_packet(&a, Some(&[1; 16]), UNIX);
    g.bench_function("parse_register", |bn| {
        bn.iter(|| {
            let r = Root::parse(black_box(&reg)).unwrap();
            black_box(Payload::parse(r.packet_type, r.payload).unwrap());
        })
    });
    g.bench_function("emit_lookup", |bn| {
        let mut buf = [0u8; 1400];
        let mut junk = 1u64;
        let h = RootHeader {
            params: PARAM_TO_SERVER,
            shift_len: Some(3),
            packet_type: PacketType::Lookup,
            signature: &[],
            timestamp: UNIX,
        };
        bn.iter(|| {
            let n = h.emit(&mut buf, &mut junk).unwrap();
            black_box(
                Payload::Lookup(b.fingerprint())
                    .emit(&mut buf[n..])
                    .unwrap(),
            );
        })
    });
    g.finish();

    let mut g = c.benchmark_group("identity");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fingerprint", |bn| {
        bn.iter(|| black_box(identity::fingerprint(black_box(a.cert_der()))))
    });
    g.bench_function("verify_self_signed_ed25519", |bn| {
        bn.iter(|| black_box(identity::verify_self_signed(a.cert_der(), UNIX).unwrap()))
    });
    let msg = signed_message(UNIX, b"payload of a relay event");
    for (name, id) in [("ed25519", &a), ("p256", &p256)] {
        let sig = id.sign(&msg);
        let key = id.verifying_key().clone();
        g.bench_function(format!("verify_signature_{name}"), |bn| {
            bn.iter(|| key.verify(black_box(&msg), black_box(&sig)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    let mut t = 1u64;
    g.bench_function("keepalive", |bn| {
        bn.iter(|| {
            t += 1;
            server.handle_datagram(now(t / 1000), addr_a, black_box(&keepalive), &mut |_, b| {
                black_box(b);
            })
        })
    });
    g.bench_function("lookup", |bn| {
        bn.iter(|| {
            server.handle_datagram(now(1), addr_a, black_box(&lookup), &mut |_, b| {
                black_box(b);
            })
        })
    });
    // A full registration with a valid cookie: certificate (cached after the first) and
    // signature check; each iteration uses a newer timestamp so none is a replay.
    let cookie = {
        let mut replies = Vec::new();
        server.handle_datagram(
            now(1),
            addr_a,
            &register_packet(&a, None, UNIX),
            &mut |_, b| replies.push(b.to_vec()),
        );
        match decode(&replies[0]) {
            Incoming::Cookie(c) => c,
            other => panic!("{other:?}"),
        }
    };
    let regs: Vec<Vec<u8>> = (0..60)
        .map(|i| register_packet(&a, Some(&cookie), UNIX + i))
        .collect();
    let mut i = 0usize;
    g.bench_function("register_cached_cert", |bn| {
        bn.iter(|| {
            // Stay inside the freshness window: the virtual clock follows the timestamps.
            i = (i + 1) % regs.len();
            if i == 0 {
                // Start over with a fresh server so timestamps are newer again.
                server = Server::new(Config::default(), [9; 32], now(1));
            }
            server.handle_datagram(now(1), addr_a, black_box(&regs[i]), &mut |_, b| {
                black_box(b);
            })
        })
    });
    g.finish();
}

criterion_group!(core_benches, benches);
criterion_main!(core_benches);
