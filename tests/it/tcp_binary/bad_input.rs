//! Malformed input: typed refusals, no state change, the server keeps serving (client and
//! server roles, the federation plane's frames), and the 10 s hello deadline (408).

use super::{
    assert_alive, client_update, expect_refusal, heartbeat, hello, hex, peer_conn, read_clock,
    server_update, start_memory, Raw, BARRIER, LIST_ALL, ROLE_CLIENT, ROLE_SERVER, T,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Malformed input: typed refusals, no state change, the server keeps serving
// ---------------------------------------------------------------------------------------

#[test]
fn bad_input() {
    let mut server = start_memory("server", &["--allow-peer", "127.0.0.1/32"]);
    let addr = server.addr;

    // A healthy client stays connected through all of it.
    let mut good = Raw::connect(addr, "good client");
    good.send(&hello(ROLE_CLIENT, b"good"));
    good.send(&client_update(b"alice", b"bob", b"555"));
    good.send(&[BARRIER]);
    assert_eq!(good.read_status(T).status, 200);

    // The hello cut at every offset, then closed by the client.
    let full = hello(ROLE_CLIENT, b"Beloin");
    for cut in 0..full.len() {
        let mut c = Raw::connect(addr, format!("hello cut at {cut}"));
        c.send(&full[..cut]);
        c.s.shutdown(Shutdown::Write).unwrap();
        c.drain_to_close(T);
    }
    // A client Update cut at every 37th offset, then closed: nothing of it is stored.
    let upd = client_update(b"mallory", b"cut", b"000");
    for cut in (0..upd.len()).step_by(37) {
        let mut c = Raw::connect(addr, format!("update cut at {cut}"));
        c.send(&hello(ROLE_CLIENT, b"cutter"));
        c.send(&upd[..cut]);
        c.s.shutdown(Shutdown::Write).unwrap();
        c.drain_to_close(T);
    }

    // Unknown commands after a good hello, client role and server role.
    for (role, bytes) in [
        (
            ROLE_CLIENT,
            &[0x00u8, 0x03, 0x04, 0x07, 0x08, 0x80, 0xFF][..],
        ),
        (ROLE_SERVER, &[0x00u8, 0x07, 0x08, 0x80, 0xFF][..]),
    ] {
        for &b in bytes {
            let mut c = Raw::connect(addr, format!("role {role} command {b:#04x}"));
            c.send(&hello(role, b"garbage"));
            c.send(&[b]);
            let st = expect_refusal(&mut c, 400, None);
            assert!(
                st.request == b || st.request == 0xFF,
                "role {role} command {b:#04x}: request byte {:#04x} is neither the command \
                 nor 0xFF ({st:?})",
                st.request
            );
        }
    }

    // Bad hellos: unknown role bytes, a name with an interior NUL, a name that is not UTF-8.
    for role in [0u8, 3, 0xFF] {
        let mut c = Raw::connect(addr, format!("hello role {role}"));
        c.send(&hello(role, b"who"));
        expect_refusal(&mut c, 400, Some(0));
    }
    let mut c = Raw::connect(addr, "hello name with interior NUL");
    c.send(&hello(ROLE_CLIENT, b"Bel\0oin"));
    expect_refusal(&mut c, 400, Some(0));
    let mut c = Raw::connect(addr, "hello name not UTF-8");
    c.send(&hello(ROLE_CLIENT, &hex("42 ff fe 6c")));
    expect_refusal(&mut c, 400, Some(0));
    let mut c = Raw::connect(addr, "peer hello name with interior NUL");
    c.send(&hello(ROLE_SERVER, b"peer\0x"));
    expect_refusal(&mut c, 400, Some(0));

    // Bad fields inside an Update: refused with 400 naming command 1, nothing stored.
    for (what, frame) in [
        (
            "username with interior NUL",
            client_update(b"mal\0lory", b"x", b"1"),
        ),
        (
            "contact not UTF-8",
            client_update(b"mallory", &hex("c3 28"), b"1"),
        ),
        (
            "phone with interior NUL",
            client_update(b"mallory", b"y", b"12\x003"),
        ),
    ] {
        let mut c = Raw::connect(addr, format!("client update, {what}"));
        c.send(&hello(ROLE_CLIENT, b"bad-fields"));
        c.send(&frame);
        expect_refusal(&mut c, 400, Some(1));
    }
    let mut c = Raw::connect(addr, "peer update, username with interior NUL");
    c.send(&hello(ROLE_SERVER, b"bad-peer"));
    c.send(&server_update(1, b"mal\0lory", b"x", b"1"));
    expect_refusal(&mut c, 400, Some(1));

    // A peer claiming an implausible clock (a fresh server accepts at most 2^31).
    let mut c = peer_conn(addr, "peer heartbeat 0xffffffff");
    c.send(&heartbeat(1, 0xFFFF_FFFF));
    expect_refusal(&mut c, 409, Some(2));
    let mut c = peer_conn(addr, "peer update clock 0xffffffff");
    c.send(&server_update(0xFFFF_FFFF, b"mallory", b"clock", b"1"));
    expect_refusal(&mut c, 409, Some(1));
    let mut c = peer_conn(addr, "peer updateclock 0xffffffff");
    c.send(&[vec![0x03], 0xFFFF_FFFFu32.to_be_bytes().to_vec()].concat());
    expect_refusal(&mut c, 409, Some(3));
    // ... and the clock did not move.
    let mut p = peer_conn(addr, "clock-probe");
    let clock = read_clock(&mut p);
    assert!(
        clock < 1000,
        "an implausible clock moved the server's clock to {clock}"
    );

    // A server role from an address that is not allowed: a server without --allow-peer.
    let closed = start_memory("server-closed", &[]);
    let mut c = Raw::connect(closed.addr, "peer hello, not allowed");
    c.send(&hello(ROLE_SERVER, b"intruder"));
    expect_refusal(&mut c, 403, Some(0));
    // Even when the hello comes with commands right behind it.
    let mut c = Raw::connect(closed.addr, "peer hello + commands, not allowed");
    c.send(&[hello(ROLE_SERVER, b"intruder"), heartbeat(1, 0)].concat());
    let st = c.read_status(T);
    assert_eq!((st.status, st.request), (403, 0), "{st:?}");
    let rest = c.drain_to_close(T);
    assert!(rest.is_empty(), "bytes after the 403: {rest:02x?}");

    // After all of it: the same server still serves the healthy client and a new one.
    assert_alive(&mut server);
    good.send(&client_update(b"alice", b"carol", b"777"));
    good.send(&[LIST_ALL]);
    let expected = [
        hex("00 00 00 02"),
        client_update(b"alice", b"bob", b"555"),
        client_update(b"alice", b"carol", b"777"),
    ]
    .concat();
    assert!(
        good.read_n(expected.len(), T) == expected,
        "ListAll on the long-lived connection after the bad input"
    );
    let mut fresh = Raw::connect(addr, "fresh client");
    fresh.send(&hello(ROLE_CLIENT, b"fresh"));
    fresh.send(&client_update(b"dave", b"erin", b"888"));
    fresh.send(&[LIST_ALL, BARRIER]);
    let expected = [
        hex("00 00 00 03"),
        client_update(b"alice", b"bob", b"555"),
        client_update(b"alice", b"carol", b"777"),
        client_update(b"dave", b"erin", b"888"),
    ]
    .concat();
    assert!(
        fresh.read_n(expected.len(), T) == expected,
        "ListAll on a new connection after the bad input"
    );
    assert_eq!(fresh.read_status(T).status, 200);
    assert_alive(&mut server);
}

// ---------------------------------------------------------------------------------------
// A hello trickled byte by byte is cut off at 10 s with 408
// ---------------------------------------------------------------------------------------

#[test]
fn hello_timeout() {
    let server = start_memory("server", &[]);
    let mut c = Raw::connect(server.addr, "trickler");
    let accepted = Instant::now();
    let full = hello(ROLE_CLIENT, b"slowpoke");
    let mut sent = 0;
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = accepted + Duration::from_secs(20);
    // Offset the writes from the 10 s mark by a quarter period.
    let mut next_write = accepted + Duration::from_millis(250);
    let closed_at = loop {
        let now = Instant::now();
        assert!(
            now < deadline,
            "no close within 20 s of connecting (sent {sent} bytes, got {got:02x?})"
        );
        // Keep trickling until the server has said something.
        if got.is_empty() && now >= next_write && sent < full.len() {
            match c.s.write(&full[sent..sent + 1]) {
                Ok(_) => sent += 1,
                Err(e) => panic!("write of hello byte {sent} failed before any answer: {e}"),
            }
            next_write += Duration::from_millis(500);
        }
        let wait = if got.is_empty() {
            next_write.saturating_duration_since(Instant::now())
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        c.s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        match c.s.read(&mut buf) {
            Ok(0) => break accepted.elapsed(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !got.is_empty() => {
                break accepted.elapsed()
            }
            Err(e) => panic!("read failed (sent {sent}, got {got:02x?}): {e}"),
        }
    };
    eprintln!(
        "hello_timeout: sent {sent} hello bytes; closed after {closed_at:.2?}; got {got:02x?}"
    );
    assert!(
        got.len() >= 5,
        "no status frame before the close: {got:02x?}"
    );
    assert_eq!(got[0], 0x07, "not a status frame: {got:02x?}");
    assert_eq!(u16::from_be_bytes([got[1], got[2]]), 408, "{got:02x?}");
    assert_eq!(
        got.len(),
        5 + usize::from(got[4]),
        "bytes after the 408 frame: {got:02x?}"
    );
    assert!(
        sent < full.len(),
        "the whole hello went out before the deadline"
    );
    assert!(
        closed_at >= Duration::from_millis(9_500),
        "closed after {closed_at:?}, before the 10 s hello deadline"
    );
    assert!(
        closed_at <= Duration::from_secs(13),
        "closed after {closed_at:?}, well after the 10 s hello deadline"
    );
}

// ---------------------------------------------------------------------------------------
// Bad peer input on the federation plane: refused, the state unchanged
// ---------------------------------------------------------------------------------------

/// The server's status lines (command 6 on a fresh client connection).
fn status_lines(addr: SocketAddr) -> Vec<String> {
    let mut c = Raw::connect(addr, "status");
    c.send(&hello(ROLE_CLIENT, b"status"));
    c.send(&[0x06]);
    let head = c.read_n(5, T);
    assert_eq!(head[0], 0x06, "status answer: {head:02x?}");
    let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let text = String::from_utf8(c.read_n(n, T)).expect("UTF-8 status");
    text.lines().map(str::to_string).collect()
}

/// What must not change when a peer's bad input is refused: the contacts, the journal,
/// the clock, the node list and the directory.
fn state_of(addr: SocketAddr) -> Vec<String> {
    status_lines(addr)
        .into_iter()
        .filter(|l| !l.starts_with("peer="))
        .collect()
}

#[test]
fn bad_peer_input_on_the_federation_plane() {
    let server = start_memory("server", &["--allow-peer", "127.0.0.1/32"]);
    let addr = server.addr;
    let mut w = Raw::connect(addr, "writer");
    w.send(&hello(ROLE_CLIENT, b"writer"));
    for i in 0..3u8 {
        w.send(&client_update(b"alice", &[b'c', b'0' + i], b"555"));
    }
    w.send(&[BARRIER]);
    assert_eq!(w.read_status(T).status, 200);
    let before = state_of(addr);
    let journal = before
        .iter()
        .find_map(|l| l.strip_prefix("journal="))
        .expect("journal line")
        .to_string();
    let (id_hex, head) = journal.split_once(':').unwrap();
    let id = u64::from_str_radix(id_hex, 16).unwrap();
    assert_eq!(head, "3");
    let since = |id: u64, since: u64, limit: u32| {
        let mut v = vec![19u8];
        v.extend(id.to_be_bytes());
        v.extend(since.to_be_bytes());
        v.extend(limit.to_be_bytes());
        v
    };
    // One node-list entry (uid 0x33 x 16, version 1, alias "x", location "", key 1 byte).
    let entry = |version: u8| {
        let mut e = vec![0x33; 16];
        e.extend([0, 0, 0, 0, 0, 0, 0, version]);
        e.extend([1, b'x', 0, 1, 0x42]);
        e
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "hash of 63 bytes",
            [vec![10, 63], vec![7; 63]].concat(),
            400,
        ),
        (
            "hash of 65 bytes",
            [vec![10, 65], vec![7; 65]].concat(),
            400,
        ),
        (
            "node list with duplicate uids",
            [vec![11, 0, 0, 0, 2], entry(1), entry(2)].concat(),
            400,
        ),
        ("limit 0xFFFFFFFF", since(id, 0, u32::MAX), 400),
        ("since beyond the journal's end", since(id, 4, 10), 400),
        ("since in another journal", since(id ^ 1, 0, 10), 404),
        (
            "a directory record of garbage",
            vec![16, 0, 3, 1, 2, 3],
            400,
        ),
        ("a proof without a challenge", vec![21, 0, 1, 0], 400),
        ("a frame length over 4096", vec![18, 0x10, 0x01], 400),
    ];
    for (what, frame, status) in cases {
        let mut c = peer_conn(addr, what);
        c.send(&frame);
        let st = expect_refusal(&mut c, status, Some(frame[0]));
        assert!(!st.detail.is_empty(), "{what}");
        assert_eq!(state_of(addr), before, "{what}: state changed");
    }
    // The good forms are answered: since 1 limit 1 gives line 2, a 64-byte hash a hash.
    let mut c = peer_conn(addr, "good peer");
    c.send(&since(id, 1, 1));
    let head = c.read_n(5, T);
    assert_eq!(head, [19, 0, 0, 0, 1]);
    let line = c.read_n(545, T);
    assert_eq!(line[0], 13);
    assert_eq!(u64::from_be_bytes(line[1..9].try_into().unwrap()), 2);
    c.send(&[[10u8, 64].as_slice(), &[0u8; 64]].concat());
    let h = c.read_n(66, T);
    assert_eq!(&h[..2], &[10, 64]);
    let ours = before
        .iter()
        .find_map(|l| l.strip_prefix("node_list_sha512="))
        .unwrap();
    let got: String = h[2..].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, ours, "the answer is our node-list hash");
}
