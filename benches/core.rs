//! Criterion benches of the I/O-free server core (`rendezvous::core::udp::UdpCore`), driven on a
//! virtual clock: how long one `handle_datagram` takes for a keepalive, a lookup, a
//! registration (certificate cached, and the full certificate check) for each key
//! algorithm, a registration with a refused certificate (checked in full, and answered from
//! the refusal cache), and a relayed event. Throughput is in packets. The wire codecs, fingerprints
//! and signature checks alone are in `benches/wire.rs`.
//!
//! Signed packets (registrations, relays) cannot be replayed (409), so they come from a
//! pool of pre-signed packets with increasing timestamps while the virtual clock follows
//! them; when a pool is used up, a fresh server takes over, set up outside the timed part
//! ([`timed_pool`]). Every handled packet's output is counted, and a bench panics if the
//! server did not answer as expected (so a refusal path is never measured by mistake).
//!
//! Batch verification: 64 Ed25519 signatures one at a time and in one batch
//! (`verify_64/*`), 32 first registrations through `handle_datagram` and `handle_batch`
//! (`register_first_32/*`).
//!
//! Run: `cargo bench --bench core` (add `-- --quick` for a short run).
// `criterion_main!` defines an undocumented `pub fn main`; the 100-line limit on functions
// is for src/.
#![allow(missing_docs, clippy::too_many_lines)]

mod common;

use common::{cookie, now, packet, register, register_packet, unix_base, Identities};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rendezvous::client::{decode, Incoming};
use rendezvous::core::udp::{RateLimits, UdpConfig, UdpCore, UdpTimers};
use rendezvous::core::Now;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::root::signed_message;
use rendezvous::wire::udp::{Payload, Register, Relay};
use rendezvous::wire::PacketType;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Signed packets per pool: one per virtual second, inside the 60 s freshness window and
/// the 75 s TTL of the clients the server was set up with.
const POOL: u64 = 60;

/// The bench configuration: punch requests and lookup answers unlimited (a bench sends the
/// same lookup again and again), cookies that never rotate (pool packets carry one).
fn config() -> UdpConfig {
    UdpConfig {
        limits: RateLimits {
            punch_interval_ms: u64::MAX / 4,
            lookup_bytes_per_s: u32::MAX,
            ..RateLimits::default()
        },
        timers: UdpTimers {
            cookie_period_ms: u64::MAX / 4,
            ..UdpTimers::default()
        },
        ..UdpConfig::default()
    }
}

/// Runs `iters` packets from `pool` (each with the virtual time it is sent at) from `src`
/// through servers made by `fresh`, timing only `handle_datagram`. A new server takes over
/// (untimed) whenever the pool is used up. Panics unless every packet produced exactly
/// `outputs_each` datagrams.
fn timed_pool(
    iters: u64,
    pool: &[(Now, Vec<u8>)],
    src: SocketAddr,
    fresh: &mut dyn FnMut() -> UdpCore,
    outputs_each: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    let mut outputs = 0u64;
    while done < iters {
        let mut server = fresh();
        let n = (iters - done).min(pool.len() as u64) as usize;
        let start = Instant::now();
        for (at, p) in &pool[..n] {
            server.handle_datagram(*at, src, black_box(p), &mut |_, b| {
                outputs += 1;
                black_box(b);
            });
        }
        total += start.elapsed();
        done += n as u64;
    }
    assert_eq!(
        outputs,
        iters * outputs_each,
        "the server did not answer every packet as expected"
    );
    total
}

/// A fresh server at virtual time 0 with `ids` registered (each from its address).
fn server_with(
    cfg: &UdpConfig,
    base: u64,
    seed: [u8; 32],
    ids: &[(&Identity, SocketAddr)],
) -> UdpCore {
    let mut s = UdpCore::new(cfg.clone(), seed, now(base, 0));
    for (id, addr) in ids {
        register(&mut s, id, *addr, now(base, 0));
    }
    s
}

/// The worst RSA certificates a server is sent (docs/SECURITY.md T7), by bench name:
/// 4096 bits, the cap, with public exponent 65537 and with 2^33 - 1 (the largest ring
/// takes, the slowest to verify), each with its self-signature altered in its last byte;
/// and a valid one of 4352 bits, over the cap. None without openssl.
fn worst_rsa_certificates() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (name, bits, e, flip) in [
        ("rsa4096", 4096, 65_537, true),
        ("rsa4096_e33", 4096, (1u64 << 33) - 1, true),
        ("rsa4352_over_cap", 4352, 65_537, false),
    ] {
        if let Some((mut der, _)) = common::openssl_rsa(bits, e) {
            if flip {
                let last = der.len() - 1;
                der[last] ^= 0x01;
            }
            eprintln!("{name}: certificate of {} bytes", der.len());
            v.push((name.to_string(), der));
        }
    }
    v
}

/// Every bench of this file.
fn benches(c: &mut Criterion) {
    // Certificates first: openssl's are valid from the second they are made, so the
    // virtual clock starts after the last of them (RSA-4096 keys take seconds to make).
    let ids = Identities::new();
    let worst_rsa = worst_rsa_certificates();
    let base = unix_base();
    let a = &ids.ed25519;
    let b = &ids.p256;
    let addr_a: SocketAddr = "192.0.2.1:4000".parse().expect("literal");
    let addr_b: SocketAddr = "198.51.100.1:5000".parse().expect("literal");
    let seed = [9; 32];
    let cfg = config();

    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));

    // Keepalive from a registered address: refresh, no answer.
    let mut server = server_with(&cfg, base, seed, &[(a, addr_a), (b, addr_b)]);
    let keepalive = packet(PacketType::Keepalive, &[0; 52], &[], base, None);
    let mut t = 0u64;
    g.bench_function("keepalive", |bn| {
        bn.iter(|| {
            t += 1;
            server.handle_datagram(
                now(base, t / 1000),
                addr_a,
                black_box(&keepalive),
                &mut |_, b| {
                    black_box(b);
                },
            )
        })
    });
    // Lookup of an online client: the answer (and the punch request, rate-limited per pair,
    // so sent only the first time).
    let lookup = packet(PacketType::Lookup, &b.fingerprint().0, &[], base, None);
    g.bench_function("lookup", |bn| {
        let mut answers = 0u64;
        bn.iter(|| {
            server.handle_datagram(now(base, 1), addr_a, black_box(&lookup), &mut |to, b| {
                answers += u64::from(to == addr_a);
                black_box(b);
            })
        });
        assert!(answers > 0, "lookups were answered");
    });

    // The one signature check a cached re-registration costs, alone: the baseline of
    // `register_cached_cert` (issue 12: at least 0.85 times this rate; docs/CAPACITY.md).
    for (name, id) in ids.all() {
        // As long as a registration's signed message: timestamp, certificate, cookie.
        let msg = vec![0x5au8; 8 + 2 + id.cert_der().len() + 2 + 32];
        let sig = id.sign(&msg);
        let key = id.verifying_key().clone();
        g.bench_function(format!("verify_only/{name}"), |bn| {
            bn.iter(|| {
                key.verify(black_box(&msg), black_box(&sig))
                    .expect("verifies")
            })
        });
    }

    // Registrations: with the certificate cached (the usual re-registration), and with the
    // full certificate check every time (cache off).
    for (name, id) in ids.all() {
        let mut first = UdpCore::new(cfg.clone(), seed, now(base, 0));
        let ck = cookie(&mut first, id, addr_a, now(base, 0));
        let warm = register_packet(id, Some(&ck), base);
        let pool: Vec<(Now, Vec<u8>)> = (1..=POOL)
            .map(|s| {
                (
                    now(base, s * 1000),
                    register_packet(id, Some(&ck), base + s),
                )
            })
            .collect();
        for (bench, cache) in [
            ("register_cached_cert", true),
            ("register_full_check", false),
        ] {
            let mut cfg = cfg.clone();
            if !cache {
                cfg.tables.max_cert_cache = 0;
            }
            let mut fresh = || {
                let mut s = UdpCore::new(cfg.clone(), seed, now(base, 0));
                // Caches the certificate (or not) and sets the newest timestamp to `base`.
                s.handle_datagram(now(base, 0), addr_a, &warm, &mut |_, _| {});
                s
            };
            g.bench_function(format!("{bench}/{name}"), |bn| {
                bn.iter_custom(|iters| timed_pool(iters, &pool, addr_a, &mut fresh, 1))
            });
        }
    }

    // T7 (docs/SECURITY.md): a registration whose certificate is refused (its
    // self-signature altered in its last byte), checked in full every time (refusal cache
    // off, as before it existed) and answered from the refusal cache. Each answers one 401.
    // Besides the three algorithms, the worst RSA certificates a server is sent: 4096 bits
    // (the cap) with exponent 65537 and with 2^33 - 1 (the largest ring takes, and the
    // slowest to verify), and one over the cap (4352 bits), refused from its key size
    // before any signature math. These carry no packet signature: the certificate is
    // refused first (docs/PROTOCOL.md §5.2, steps 7 and 8), and an RSA-4096 certificate
    // with its 512-byte signature would not fit the 1400-byte datagram anyway.
    let flip_last = |der: &[u8]| {
        let mut cert = der.to_vec();
        let last = cert.len() - 1;
        cert[last] ^= 0x01;
        cert
    };
    let mut refused: Vec<(String, Vec<u8>, Option<&Identity>)> = ids
        .all()
        .into_iter()
        .map(|(name, id)| (name.to_string(), flip_last(id.cert_der()), Some(id)))
        .collect();
    refused.extend(worst_rsa.into_iter().map(|(name, cert)| (name, cert, None)));
    for (name, cert, signer) in &refused {
        let mut first = UdpCore::new(cfg.clone(), seed, now(base, 0));
        let ck = cookie(&mut first, a, addr_a, now(base, 0));
        let p = Payload::Register(Register::listed(cert, Some(&ck)));
        let mut body = vec![0; p.buffer_len()];
        p.emit(&mut body).expect("register payload");
        let pool: Vec<(Now, Vec<u8>)> = (1..=POOL)
            .map(|s| {
                let ts = base + s;
                let sig = signer.map_or_else(Vec::new, |id| id.sign(&signed_message(ts, &body)));
                let bytes = packet(PacketType::Register, &body, &sig, ts, None);
                assert!(
                    bytes.len() <= 1400,
                    "{name}: a {}-byte datagram",
                    bytes.len()
                );
                (now(base, s * 1000), bytes)
            })
            .collect();
        let mut check = UdpCore::new(cfg.clone(), seed, now(base, 0));
        let mut replies = Vec::new();
        check.handle_datagram(pool[0].0, addr_a, &pool[0].1, &mut |_, b| {
            replies.push(decode(b));
        });
        match replies.as_slice() {
            [Incoming::Error {
                status: 401,
                detail,
                ..
            }] if !detail.contains("valid yet") && !detail.contains("expired") => {
                eprintln!("{name}: refused with 401 {detail:?}");
            }
            other => panic!("{name}: expected one 401, not for the time, got {other:?}"),
        }
        for (bench, cache) in [
            ("register_refused_cert_cached", true),
            ("register_refused_cert_checked", false),
        ] {
            let mut cfg = cfg.clone();
            if !cache {
                cfg.tables.max_cert_cache = 0;
            }
            let mut fresh = || {
                let mut s = UdpCore::new(cfg.clone(), seed, now(base, 0));
                s.handle_datagram(now(base, 0), addr_a, &pool[0].1, &mut |_, _| {});
                s
            };
            g.bench_function(format!("{bench}/{name}"), |bn| {
                bn.iter_custom(|iters| timed_pool(iters, &pool, addr_a, &mut fresh, 1))
            });
        }
    }

    // A relayed event (100 bytes) from A to online B: signature check with A's key from its
    // directory entry, freshness, and the forward to B.
    let event = [0x42u8; 100];
    let pool: Vec<(Now, Vec<u8>)> = (1..=POOL)
        .map(|s| {
            let p = Payload::Relay(Relay {
                peer: b.fingerprint(),
                event: &event,
            });
            let mut body = vec![0; p.buffer_len()];
            p.emit(&mut body).expect("relay payload");
            let ts = base + s;
            let sig = a.sign(&signed_message(ts, &body));
            (
                now(base, s * 1000),
                packet(PacketType::Relay, &body, &sig, ts, None),
            )
        })
        .collect();
    let mut fresh = || server_with(&cfg, base, seed, &[(a, addr_a), (b, addr_b)]);
    g.bench_function("relay", |bn| {
        bn.iter_custom(|iters| timed_pool(iters, &pool, addr_a, &mut fresh, 1))
    });
    g.finish();
}

/// Batch verification (docs/PROTOCOL.md §5.2, "Batch verification"; issue 12: at least 1.5
/// times one at a time for Ed25519): 64 signatures by 64 keys verified one at a time
/// (ring, as a server does without batches) and in one ed25519-dalek batch (the key
/// decoding timed too), then 32 first registrations (fresh identities, certificates not
/// cached) through `handle_datagram` one at a time and through one `handle_batch`.
fn batch_benches(c: &mut Criterion) {
    let base = unix_base();
    let ids: Vec<Identity> = (0..64)
        .map(|_| Identity::generate(KeyAlgorithm::Ed25519, "batch").expect("identity"))
        .collect();
    let mut g = c.benchmark_group("core");

    // As long as a registration's signed message: timestamp, certificate, cookie.
    let msgs: Vec<Vec<u8>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| vec![i as u8; 8 + 2 + id.cert_der().len() + 16])
        .collect();
    let sigs: Vec<Vec<u8>> = ids.iter().zip(&msgs).map(|(id, m)| id.sign(m)).collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_64/one_at_a_time", |bn| {
        bn.iter(|| {
            for ((id, m), sig) in ids.iter().zip(&msgs).zip(&sigs) {
                id.verifying_key()
                    .verify(black_box(m), black_box(sig))
                    .expect("verifies");
            }
        })
    });
    let dalek_sigs: Vec<ed25519_dalek::Signature> = sigs
        .iter()
        .map(|s| ed25519_dalek::Signature::from_slice(s).expect("64 bytes"))
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    g.bench_function("verify_64/batch", |bn| {
        bn.iter(|| {
            let keys: Vec<ed25519_dalek::VerifyingKey> = ids
                .iter()
                .map(|id| {
                    let raw = id
                        .verifying_key()
                        .public_key()
                        .try_into()
                        .expect("32 bytes");
                    ed25519_dalek::VerifyingKey::from_bytes(&raw).expect("key")
                })
                .collect();
            ed25519_dalek::verify_batch(black_box(&refs), &dalek_sigs, &keys).expect("verifies")
        })
    });

    // 32 first registrations, each from its own /24 with its cookie, through a fresh
    // server (made untimed) each time.
    let cfg = config();
    let seed = [9; 32];
    let at = now(base, 1000);
    let packets: Vec<(SocketAddr, Vec<u8>)> = ids[..32]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let addr = SocketAddr::from(([198, 18, i as u8, 1], 4000));
            let mut s = UdpCore::new(cfg.clone(), seed, at);
            let ck = cookie(&mut s, id, addr, at);
            (addr, register_packet(id, Some(&ck), base + 1))
        })
        .collect();
    g.throughput(Throughput::Elements(32));
    for (bench, batched) in [
        ("register_first_32/one_at_a_time", false),
        ("register_first_32/batch", true),
    ] {
        g.bench_function(bench, |bn| {
            bn.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut server = UdpCore::new(cfg.clone(), seed, at);
                    let mut oks = 0usize;
                    let mut out = |_: SocketAddr, b: &[u8]| {
                        oks += 1;
                        black_box(b);
                    };
                    let start = Instant::now();
                    if batched {
                        let items = packets.iter().map(|(a, p)| (*a, p.as_slice()));
                        server.handle_batch(at, items, &mut out);
                    } else {
                        for (a, p) in &packets {
                            server.handle_datagram(at, *a, black_box(p), &mut out);
                        }
                    }
                    total += start.elapsed();
                    assert_eq!((oks, server.online()), (32, 32), "all registered");
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(core_benches, benches, batch_benches);
criterion_main!(core_benches);
