//! The Lamport clock's bounds on the real binary: a durable server whose clock is past
//! 2^31 rejoins its peer after a restart, and a clock walk by a peer is refused while
//! client writes go on.

use super::{
    assert_alive, client_update, contacts, expect_refusal, hello, hex, peer_conn, probe_port,
    read_clock, serve_cmd, start, start_memory, Listing, Raw, BARRIER, LIST_ALL, ROLE_CLIENT, T,
};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// A durable server whose clock is past 2^31 rejoins its peer after a restart
// ---------------------------------------------------------------------------------------

/// Walks a server's clock up to `target` with UpdateClock frames within the plausibility
/// bounds (2^31 for a fresh server, then the raise budget: 2^24 an hour); returns the
/// clock read back.
fn walk_clock(addr: SocketAddr, target: u32) -> u32 {
    let mut p = peer_conn(addr, "clock-walker");
    let mut frames = Vec::new();
    let mut clock: u32 = 1 << 31;
    while clock < target {
        frames.extend_from_slice(&[vec![0x03], clock.to_be_bytes().to_vec()].concat());
        clock = clock.saturating_add(1 << 24).min(target);
    }
    frames.extend_from_slice(&[vec![0x03], target.to_be_bytes().to_vec()].concat());
    p.send(&frames);
    read_clock(&mut p)
}

#[test]
fn high_clock_server_rejoins_after_restart() {
    const HIGH: u32 = (1 << 31) + (1 << 24);
    let tmp = tempfile::Builder::new()
        .prefix("rdv-high-")
        .tempdir()
        .expect("temp dir");
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let allow = vec!["--allow-peer".to_string(), "127.0.0.1/32".to_string()];

    // Peers name each other (pushes go over the links a server opens): B's port is
    // chosen first so that A can name it.
    let port_b = probe_port();
    let listen_b = format!("127.0.0.1:{port_b}");
    // A: its clock walked past 2^31, one contact written at that clock.
    let mut extra_a = allow.clone();
    extra_a.extend(["--peer".to_string(), listen_b.clone()]);
    let a = start("server-A", || {
        serve_cmd("127.0.0.1:0", Some(&dir_a), &extra_a)
    });
    assert_eq!(walk_clock(a.addr, HIGH), HIGH, "A's clock after the walk");
    let mut w = contacts(a.addr, "writer-A");
    w.update("fromA", "x", "1").expect("update A");
    w.barrier().expect("barrier A");

    // B: the same (A may already push to it), then stopped.
    let mut b = start("server-B1", || serve_cmd(&listen_b, Some(&dir_b), &allow));
    assert_eq!(walk_clock(b.addr, HIGH), HIGH, "B's clock after the walk");
    let mut w = contacts(b.addr, "writer-B");
    w.update("fromB", "y", "2").expect("update B");
    w.barrier().expect("barrier B");
    drop(w);
    b.proc.kill();

    // B restarts on its data (clock HIGH + 1) with A as its peer: the two must exchange
    // their contacts, whose clocks are near B's own clock.
    let mut extra = allow.clone();
    extra.extend(["--peer".to_string(), a.addr.to_string()]);
    let b = start("server-B2", || serve_cmd(&listen_b, Some(&dir_b), &extra));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let want: Listing = vec![
        ("fromA".into(), "x".into(), "1".into()),
        ("fromB".into(), "y".into(), "2".into()),
    ];
    loop {
        let la = contacts(a.addr, "list-A").list_all().expect("list A");
        let lb = contacts(b.addr, "list-B").list_all().expect("list B");
        if la == want && lb == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s: A lists {la:?}, B lists {lb:?}; both should list {want:?} (B's \
             clock is {:#x}, A's records carry clock {:#x})",
            HIGH + 1,
            HIGH + 1
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "high_clock_server_rejoins_after_restart: converged {:.2?} after B's restart",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// An exhausted Lamport clock refuses writes (503) instead of wrapping
// ---------------------------------------------------------------------------------------

/// T8 (docs/SECURITY.md), on the real binary: one allowed peer pipelines 256 UpdateClock
/// frames, each 2^24 ahead of the last (this once took the clock from 1 to 0xFFFFFFFF in
/// 0.01 s, after which every client write was 503). The raise budget takes the first and
/// refuses the rest; clients keep writing.
#[test]
fn a_clock_walk_is_refused_and_writes_go_on() {
    let mut server = start_memory("server", &["--allow-peer", "127.0.0.1/32"]);
    let mut c = Raw::connect(server.addr, "client");
    c.send(&hello(ROLE_CLIENT, b"early"));
    c.send(&client_update(b"alice", b"bob", b"555"));
    c.send(&[BARRIER]);
    assert_eq!(c.read_status(T).status, 200);

    let mut p = peer_conn(server.addr, "clock-walker");
    let mut frames = Vec::new();
    let mut clock: u32 = 1;
    for _ in 0..256 {
        clock = clock.saturating_add(1 << 24);
        frames.extend_from_slice(&[vec![0x03], clock.to_be_bytes().to_vec()].concat());
    }
    p.send(&frames);
    expect_refusal(&mut p, 409, Some(3));
    let mut q = peer_conn(server.addr, "clock-reader");
    let after = read_clock(&mut q);
    eprintln!("a_clock_walk_is_refused: 256 frames of +2^24 moved the clock from 1 to {after}");
    assert_eq!(after, 1 + (1 << 24), "one step taken, the rest refused");

    // A client write still gets a clock and is stored.
    let mut w = Raw::connect(server.addr, "late writer");
    w.send(&hello(ROLE_CLIENT, b"late"));
    w.send(&client_update(b"alice", b"bob", b"999"));
    w.send(&[BARRIER]);
    assert_eq!(w.read_status(T).status, 200);
    let mut r = Raw::connect(server.addr, "reader");
    r.send(&hello(ROLE_CLIENT, b"reader"));
    r.send(&[LIST_ALL]);
    let expected = [hex("00 00 00 01"), client_update(b"alice", b"bob", b"999")].concat();
    assert!(
        r.read_n(expected.len(), T) == expected,
        "ListAll after the walk"
    );
    assert_alive(&mut server);
}
