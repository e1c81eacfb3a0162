//! What a barrier confirmed survives SIGKILL: contacts and the Lamport clock after a
//! restart on the same data directory.

use super::{contacts, peer_conn, read_clock, serve_cmd, start};
use std::collections::BTreeMap;
use std::time::Instant;

#[test]
fn crash_safety() {
    const N: usize = 2000;
    let tmp = tempfile::Builder::new()
        .prefix("rdv-crash-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path().join("data");
    let extra = vec!["--allow-peer".to_string(), "127.0.0.1/32".to_string()];
    let mut server = start("server-1", || serve_cmd("127.0.0.1:0", Some(&dir), &extra));

    let started = Instant::now();
    let mut expected: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut w = contacts(server.addr, "writer");
    let mut writes = 0u32;
    // N distinct keys; the first quarter is written twice, the later value must win.
    for i in 0..N {
        let (u, c) = (format!("user{:03}", i % 97), format!("contact{i:05}"));
        let p = format!("1{i:010}");
        w.update(&u, &c, &p).expect("update");
        writes += 1;
        expected.insert((u, c), p);
    }
    for i in 0..N / 4 {
        let (u, c) = (format!("user{:03}", i % 97), format!("contact{i:05}"));
        let p = format!("2{i:010}");
        w.update(&u, &c, &p).expect("update");
        writes += 1;
        expected.insert((u, c), p);
    }
    w.barrier().expect("barrier");
    let wrote = started.elapsed();
    // The barrier answered: everything is durable. Crash now, without any warning.
    let pid = server.pid();
    server.proc.kill();
    drop(w);
    eprintln!("crash_safety: {writes} updates + barrier in {wrote:.2?}; SIGKILLed pid {pid}");

    let restarted = Instant::now();
    let server = start("server-2", || serve_cmd("127.0.0.1:0", Some(&dir), &extra));
    let mut r = contacts(server.addr, "reader");
    let listed = r.list_all().expect("list after restart");
    eprintln!(
        "crash_safety: restart + ListAll of {} in {:.2?}",
        listed.len(),
        restarted.elapsed()
    );
    assert_eq!(listed.len(), N, "contacts after the crash");
    let got: BTreeMap<(String, String), String> =
        listed.into_iter().map(|(u, c, p)| ((u, c), p)).collect();
    assert_eq!(got.len(), N, "duplicate keys in ListAll");
    for (k, v) in &expected {
        assert_eq!(got.get(k), Some(v), "contact {k:?} after the crash");
    }
    // The Lamport clock survived too: it is at least the number of local writes.
    let mut p = peer_conn(server.addr, "clock-probe");
    let clock = read_clock(&mut p);
    assert!(
        clock >= writes,
        "clock after restart is {clock}, below the {writes} writes made before the crash"
    );
}
