//! The hot paths allocate nothing: after warm-up, keepalives and lookups (answer plus punch
//! request) go through `UdpCore::handle_datagram`, and through `UdpCore::handle_batch` as
//! the event loop hands them over (every other round here), without one heap allocation
//! (the core's module contract, src/core/udp/mod.rs: "Keepalive and lookup allocate
//! nothing per packet").
//!
//! Logging is on as `serve` sets it up by default (an `info` filter; lines to a sink): the
//! hot paths allocate nothing with it either (their debug lines are not even formatted).
//!
//! A counting `#[global_allocator]` wraps the system allocator. Only allocations made on a
//! thread that has switched counting on are counted, so the test harness's own threads do
//! not disturb the count; this file holds one test, so only one thread ever counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rendezvous::core::udp::{UdpConfig, UdpCore};
use rendezvous::core::Now;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::root::{signed_message, PARAM_TO_SERVER};
use rendezvous::wire::udp::{Payload, COOKIE_LEN};
use rendezvous::wire::{PacketType, Root, RootHeader, MAX_DATAGRAM};

/// Counts allocations (alloc, alloc_zeroed, realloc) made while [`COUNTING`] is on.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// A global allocator is unsafe to implement by nature: the one place outside
// src/net/mmsg.rs where the crate's lints allow `unsafe`.
#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to `System`; counting touches only an atomic
// and a const-initialised thread-local `Cell<bool>` (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with counting on for this thread; returns how many allocations it made.
fn count<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let start = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCS.load(Ordering::Relaxed) - start, r)
}

struct Peer {
    id: Identity,
    addr: SocketAddr,
}

fn packet(id: &Identity, ty: PacketType, ts: u64, payload: &[u8], signed: bool) -> Vec<u8> {
    let sig = if signed {
        id.sign(&signed_message(ts, payload))
    } else {
        Vec::new()
    };
    RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: ty,
        signature: &sig,
        timestamp: ts,
    }
    .to_vec(payload)
    .expect("emit")
}

fn register_payload(id: &Identity, cookie: Option<&[u8; COOKIE_LEN]>) -> Vec<u8> {
    let cert = id.cert_der();
    let mut p = (cert.len() as u16).to_be_bytes().to_vec();
    p.extend_from_slice(cert);
    if let Some(c) = cookie {
        p.extend_from_slice(c);
    }
    p
}

/// Registers `peer` (cookie round trip) and asserts the OK.
fn register(server: &mut UdpCore, now: Now, peer: &Peer) {
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let first = packet(
        &peer.id,
        PacketType::Register,
        now.unix_s,
        &register_payload(&peer.id, None),
        true,
    );
    server.handle_datagram(now, peer.addr, &first, &mut |_, b| replies.push(b.to_vec()));
    let r = Root::parse(&replies[0]).expect("cookie");
    let Ok(Payload::Cookie(cookie)) = Payload::parse(r.packet_type, r.payload) else {
        panic!("expected a cookie challenge");
    };
    replies.clear();
    let p = register_payload(&peer.id, Some(&cookie));
    let second = packet(&peer.id, PacketType::Register, now.unix_s, &p, true);
    server.handle_datagram(now, peer.addr, &second, &mut |_, b| {
        replies.push(b.to_vec())
    });
    let r = Root::parse(&replies[0]).expect("ok");
    assert_eq!(r.packet_type, PacketType::Ok);
}

#[test]
fn keepalive_and_lookup_allocate_nothing() {
    const ROUNDS: u64 = 10_000;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();
    // The counter itself works, so a zero below means something.
    let (n, v) = count(|| vec![1u8; 100]);
    assert_eq!(n, 1);
    drop(v);
    let unix0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut now = Now {
        mono_ms: 1_000_000,
        unix_s: unix0,
    };
    let mut server = UdpCore::new(UdpConfig::default(), [3; 32], now);
    let a = Peer {
        id: Identity::generate(KeyAlgorithm::Ed25519, "alloc-a").expect("identity"),
        addr: "192.0.2.10:40000".parse().unwrap(),
    };
    let b = Peer {
        id: Identity::generate(KeyAlgorithm::Ed25519, "alloc-b").expect("identity"),
        addr: "[2001:db8::b]:7000".parse().unwrap(),
    };
    register(&mut server, now, &a);
    register(&mut server, now, &b);

    let keepalive_a = packet(&a.id, PacketType::Keepalive, 0, &[], false);
    let keepalive_b = packet(&b.id, PacketType::Keepalive, 0, &[0; 52], false);
    let lookup = packet(&a.id, PacketType::Lookup, 0, &b.id.fingerprint().0, false);

    // Where the core's datagrams go: a preallocated buffer, never grown.
    let mut sink = vec![0u8; MAX_DATAGRAM];
    let mut sent = 0u64;
    let mut sent_bytes = 0u64;
    let mut out = |_dst: SocketAddr, bytes: &[u8]| {
        sink[..bytes.len()].copy_from_slice(bytes);
        sent += 1;
        sent_bytes += bytes.len() as u64;
    };

    // Warm-up: every table entry these packets touch exists afterwards (rate buckets,
    // punch pairs), and the core's buffers are built.
    for _ in 0..3 {
        server.handle_datagram(now, a.addr, &keepalive_a, &mut out);
        server.handle_datagram(now, b.addr, &keepalive_b, &mut out);
        server.handle_datagram(now, a.addr, &lookup, &mut out);
        now.mono_ms += 1_000;
    }
    server.handle_timeout(now);
    let stats0 = server.stats().clone();

    // 5 ms per round: 10 000 rounds are 50 s of virtual time, the keepalives keep both
    // clients inside the 75 s TTL; the lookup budget (16 KiB/s) refills 80 bytes per round,
    // more than one answer costs; the punch pair limit (1 s) lets one punch request through
    // every 200 rounds. Timers run between datagrams, outside the counted sections.
    let mut keepalive_allocs = 0;
    let mut lookup_allocs = 0;
    let mut batch_allocs = 0;
    for round in 0..ROUNDS {
        now.mono_ms += 5;
        now.unix_s = unix0 + (now.mono_ms - 1_000_000) / 1000;
        if server.poll_timeout().is_some_and(|t| t <= now.mono_ms) {
            server.handle_timeout(now);
        }
        if round % 2 == 1 {
            let batch = [
                (a.addr, &keepalive_a[..]),
                (b.addr, &keepalive_b[..]),
                (a.addr, &lookup[..]),
            ];
            batch_allocs += count(|| server.handle_batch(now, batch, &mut out)).0;
            continue;
        }
        keepalive_allocs += count(|| {
            server.handle_datagram(now, a.addr, &keepalive_a, &mut out);
            server.handle_datagram(now, b.addr, &keepalive_b, &mut out);
        })
        .0;
        lookup_allocs += count(|| server.handle_datagram(now, a.addr, &lookup, &mut out)).0;
    }
    let stats = server.stats().clone();

    // The loops did what they claim: every keepalive refreshed, every lookup answered,
    // punch requests went out, nothing was refused.
    assert_eq!(
        stats.datagrams.keepalives - stats0.datagrams.keepalives,
        2 * ROUNDS
    );
    assert_eq!(stats.datagrams.lookups - stats0.datagrams.lookups, ROUNDS);
    let punches = sent - ROUNDS;
    assert!(punches >= 40, "only {punches} punch requests in 50 s");
    assert_eq!(
        stats.emitted.dropped, stats0.emitted.dropped,
        "something was refused"
    );
    assert_eq!(stats.emitted.errors, stats0.emitted.errors);
    assert!(sent_bytes > 0);

    assert_eq!(
        keepalive_allocs,
        0,
        "{keepalive_allocs} allocations in {} keepalives",
        2 * ROUNDS
    );
    assert_eq!(
        lookup_allocs, 0,
        "{lookup_allocs} allocations in {ROUNDS} lookups ({punches} with a punch request)"
    );
    assert_eq!(
        batch_allocs, 0,
        "{batch_allocs} allocations in {ROUNDS} batches of keepalives and a lookup"
    );
}
