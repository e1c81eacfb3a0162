//! Two federated servers converge under conflicting concurrent writes (last-writer-wins
//! by Lamport clock), their clocks never going back while they do.

use super::{
    ask_for_update, contacts, heartbeat, peer_conn, probe_port, read_clock, record_fields,
    serve_cmd, start, Listing, T,
};
use crate::common::Server;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Reads a server's clock over and over (HeartBeat with clock 0) until `stop`; asserts it
/// never decreases. Returns every value read. A connection lost after `stop` (the test
/// ended, maybe by a panic, and its servers were killed) ends it quietly.
fn watch_clocks(
    addr: SocketAddr,
    name: &str,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
) -> thread::JoinHandle<Vec<u32>> {
    let name = name.to_string();
    thread::spawn(move || {
        let mut c = peer_conn(addr, &name);
        c.s.set_read_timeout(Some(T)).unwrap();
        let mut seen: Vec<u32> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut b = [0u8; 5];
            let r =
                c.s.write_all(&heartbeat(1, 0))
                    .and_then(|()| c.s.read_exact(&mut b));
            if let Err(e) = r {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                panic!("{name}: HeartBeat round trip failed: {e}");
            }
            assert_eq!(b[0], 0x03, "{name}: not an UpdateClock: {b:02x?}");
            let clock = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
            if let Some(&last) = seen.last() {
                assert!(
                    clock >= last,
                    "{name}: the Lamport clock went back from {last} to {clock}"
                );
            }
            seen.push(clock);
            reads.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

/// Sets the flag when dropped (also while unwinding from a panic).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn two_servers_converge() {
    const SHARED: usize = 200;
    const OWN: usize = 200;
    const ROUNDS: usize = 5;
    let allow = ["--allow-peer".to_string(), "127.0.0.1/32".to_string()];

    // A on an ephemeral port, peering with B's (probed) port; then B on that port, peering
    // with A. Writes start as soon as both listen.
    let (a, b) = {
        let mut attempt = 0;
        loop {
            attempt += 1;
            assert!(attempt <= 5, "could not start two peered servers");
            let port_b = probe_port();
            let addr_b = format!("127.0.0.1:{port_b}");
            let mut extra = allow.to_vec();
            extra.extend(["--peer".to_string(), addr_b.clone()]);
            let a = start("server-A", || serve_cmd("127.0.0.1:0", None, &extra));
            let mut extra = allow.to_vec();
            extra.extend(["--peer".to_string(), a.addr.to_string()]);
            match Server::try_spawn("server-B", serve_cmd(&addr_b, None, &extra)) {
                Ok(b) => break (a, b),
                Err(stderr) => eprintln!("server-B on {addr_b} did not start: {stderr:?}"),
            }
        }
    };
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    // Dropped before the servers: the watchers stop before their servers are killed.
    let _stop_guard = SetOnDrop(Arc::clone(&stop));
    let (reads_a, reads_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let watch_a = watch_clocks(a.addr, "watch-A", Arc::clone(&stop), Arc::clone(&reads_a));
    let watch_b = watch_clocks(b.addr, "watch-B", Arc::clone(&stop), Arc::clone(&reads_b));

    // Each writer: ROUNDS rounds over its keys, a barrier after each. The shared keys
    // conflict (A writes them upwards, B downwards, so either side wins some); the own keys
    // are written by one side only, so their last round must win.
    let writer = |addr: SocketAddr, tag: &'static str| {
        thread::spawn(move || {
            let mut w = contacts(addr, &format!("writer-{tag}"));
            for round in 0..ROUNDS {
                for j in 0..SHARED.max(OWN) {
                    if j < SHARED {
                        let i = if tag == "A" { j } else { SHARED - 1 - j };
                        w.update("shared", &format!("k{i:04}"), &format!("{tag}{round}-{i}"))
                            .expect("update shared");
                    }
                    if j < OWN {
                        w.update(
                            &format!("only{tag}"),
                            &format!("k{j:04}"),
                            &format!("{tag}{round}-{j}"),
                        )
                        .expect("update own");
                    }
                }
                w.barrier().expect("barrier");
            }
        })
    };
    let wa = writer(a.addr, "A");
    let wb = writer(b.addr, "B");
    wa.join().expect("writer A");
    wb.join().expect("writer B");
    let written = started.elapsed();

    // Poll both ListAll answers until equal and complete.
    let want = SHARED + 2 * OWN;
    let last = ROUNDS - 1;
    let complete = |l: &Listing| {
        l.len() == want
            && l.iter().all(|(u, c, p)| {
                let i: usize = c[1..].parse().unwrap();
                match u.as_str() {
                    "shared" => {
                        (0..ROUNDS).any(|r| *p == format!("A{r}-{i}") || *p == format!("B{r}-{i}"))
                    }
                    "onlyA" => *p == format!("A{last}-{i}"),
                    "onlyB" => *p == format!("B{last}-{i}"),
                    _ => false,
                }
            })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut la, mut lb): (Listing, Listing);
    let mut polls = 0;
    loop {
        polls += 1;
        la = contacts(a.addr, "list-A").list_all().expect("list A");
        lb = contacts(b.addr, "list-B").list_all().expect("list B");
        if la == lb && complete(&la) {
            break;
        }
        if Instant::now() >= deadline {
            let only_a: Vec<_> = la.iter().filter(|x| !lb.contains(x)).collect();
            let only_b: Vec<_> = lb.iter().filter(|x| !la.contains(x)).collect();
            panic!(
                "no convergence within 90 s: A lists {} contacts, B lists {} (want {want}); \
                 {} listed by A only (first 5: {:?}); {} listed by B only (first 5: {:?})",
                la.len(),
                lb.len(),
                only_a.len(),
                &only_a[..only_a.len().min(5)],
                only_b.len(),
                &only_b[..only_b.len().min(5)],
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
    let converged = started.elapsed();
    let a_wins = la
        .iter()
        .filter(|(u, _, p)| u == "shared" && p.starts_with('A'))
        .count();

    // The records with their clocks are the same on both (polled with a deadline in case a
    // push is still in flight, though none should be).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pa = peer_conn(a.addr, "ask-A");
    let mut pb = peer_conn(b.addr, "ask-B");
    let (ra, rb) = loop {
        let ra = ask_for_update(&mut pa, T);
        let rb = ask_for_update(&mut pb, T);
        if ra == rb || Instant::now() >= deadline {
            break (ra, rb);
        }
        thread::sleep(Duration::from_millis(200));
    };
    if ra != rb {
        let diff: Vec<_> = ra
            .iter()
            .zip(&rb)
            .filter(|(x, y)| x != y)
            .take(5)
            .map(|(x, y)| (record_fields(x), record_fields(y)))
            .collect();
        panic!(
            "AskForUpdate answers differ: A {} records, B {}; first differences (A, B): {diff:?}",
            ra.len(),
            rb.len()
        );
    }
    assert_eq!(ra.len(), want);
    // AskForUpdate lists what ListAll lists, with clocks.
    let from_records: Listing = ra
        .iter()
        .map(|r| {
            let (_, u, c, p) = record_fields(r);
            (u, c, p)
        })
        .collect();
    assert_eq!(from_records, la, "AskForUpdate and ListAll disagree");
    let max_clock = ra.iter().map(|r| record_fields(r).0).max().unwrap();

    // Let the watchers take a few more readings, then stop them.
    let deadline = Instant::now() + T;
    while (reads_a.load(Ordering::Relaxed) < 20 || reads_b.load(Ordering::Relaxed) < 20)
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let seen_a = watch_a.join().expect("clock watcher A");
    let seen_b = watch_b.join().expect("clock watcher B");
    assert!(
        seen_a.len() >= 20 && seen_b.len() >= 20,
        "too few clock readings"
    );
    let (clock_a, clock_b) = (read_clock(&mut pa), read_clock(&mut pb));
    for (name, clock) in [("A", clock_a), ("B", clock_b)] {
        assert!(
            clock >= max_clock,
            "server {name}'s clock {clock} is below the newest record's clock {max_clock}"
        );
        assert!(
            clock as usize >= ROUNDS * (SHARED + OWN),
            "server {name}'s clock {clock} is below its own {} writes",
            ROUNDS * (SHARED + OWN)
        );
    }
    eprintln!(
        "two_servers_converge: writes {written:.2?}, converged after {converged:.2?} \
         ({polls} polls); shared keys won by A: {a_wins}/{SHARED}; clocks A {clock_a} B \
         {clock_b}, newest record {max_clock}; clock readings: A {} (first {:?}, last {:?}), \
         B {} (first {:?}, last {:?})",
        seen_a.len(),
        seen_a.first(),
        seen_a.last(),
        seen_b.len(),
        seen_b.first(),
        seen_b.last(),
    );
}
