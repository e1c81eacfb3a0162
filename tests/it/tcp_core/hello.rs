//! The hello (docs/PROTOCOL.md §8.2): 408 without one in 10 s, a hello trickled byte by byte,
//! malformed hellos and unknown commands (400), and the server role only from configured
//! or allowed peers (§8.4, §8.12).

use super::*;

#[test]
fn no_hello_in_10_s_is_408_then_closed_once_the_frame_is_read() {
    let mut n = Node::plain(0);
    n.accept(1, CLIENT);
    n.send(1, &hello(2, "cli")[..100]);
    assert_eq!(n.core.poll_timeout(), Some(10_000));
    n.advance_to(9_999);
    assert_eq!(n.pending(1), 0);
    n.advance_to(10_000);
    let out = n.core.output(1).to_vec();
    let st = status_frame(&out);
    assert_eq!((st.status, st.request), (408, 0x00), "{st:?}");
    assert!(
        n.actions().is_empty(),
        "the Close waits until the 408 is written"
    );
    // The rest of the hello, too late, changes nothing.
    n.send(1, &hello(2, "cli")[100..]);
    assert_eq!(n.core.output(1), &out[..]);
    assert_eq!(n.read(1), out);
    assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
    n.core.handle_closed(n.now, 1);
    assert_eq!(n.core.connections(), 0);
    assert_eq!(n.core.poll_timeout(), None);
}

#[test]
fn a_silent_connection_is_408_too() {
    let mut n = Node::plain(0);
    n.accept(1, CLIENT);
    n.advance_to(10_000);
    assert_eq!(status_frame(&n.read(1)).status, 408);
    assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
}

#[test]
fn a_hello_trickled_one_byte_at_a_time_works() {
    let mut n = Node::plain(0);
    n.accept(1, CLIENT);
    let h = hello(2, "slow client");
    for (i, b) in h.iter().enumerate() {
        // 257 bytes, one every 38 ms: the last at 9 728 ms, before the 10 s deadline.
        n.advance_to(i as u64 * 38);
        n.send(1, &[*b]);
        assert_eq!(n.pending(1), 0, "byte {i}");
    }
    n.advance_to(20_000);
    assert_eq!(n.pending(1), 0, "a complete hello is not timed out");
    assert!(n.actions().is_empty());
    let mut bytes = client_update("alice", "bob", "555");
    bytes.push(LIST_ALL);
    // The commands trickle too.
    for b in &bytes {
        n.send(1, &[*b]);
    }
    let out = n.read(1);
    let (list, rest) = list_answer(&out);
    assert_eq!(list, vec![("alice".into(), "bob".into(), "555".into())]);
    assert!(rest.is_empty());
}

#[test]
fn a_hello_trickled_past_10_s_is_408() {
    let mut n = Node::plain(0);
    n.accept(1, CLIENT);
    let h = hello(2, "slow client");
    for (i, b) in h.iter().enumerate().take(200) {
        n.advance_to(i as u64 * 60); // byte 167 would come at 10 020 ms
        n.send(1, &[*b]);
    }
    let st = status_frame(&n.read(1));
    assert_eq!(st.status, 408);
    assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
}

#[test]
fn malformed_hellos_are_400_and_closed() {
    let mut bad_role = hello(2, "cli");
    bad_role[0] = 3;
    let mut interior_nul = hello(2, "cli");
    interior_nul[10] = b'x'; // "cli", NULs, then text
    let mut bad_utf8 = hello(2, "cli");
    bad_utf8[2] = 0xff;
    let zero_role = hello(0, "cli");
    for h in [bad_role, interior_nul, bad_utf8, zero_role] {
        let mut n = Node::plain(0);
        n.accept(1, CLIENT);
        n.send(1, &h);
        let st = status_frame(&n.read(1));
        assert_eq!((st.status, st.request), (400, 0x00), "{st:?}");
        assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
        // Whatever follows is ignored.
        n.send(1, &[LIST_ALL]);
        assert_eq!(n.pending(1), 0);
    }
}

#[test]
fn unknown_command_is_400_and_closed() {
    // Client role: 3, 4 (server commands), 0, 7 (the status byte), 8, 0xff.
    for b in [0u8, 3, 4, 7, 8, 0xff] {
        let mut n = Node::plain(0);
        n.client(1);
        n.send(1, &[b, 0, 0, 0]);
        let st = status_frame(&n.read(1));
        assert_eq!((st.status, st.request), (400, b), "byte {b}");
        assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
    }
    // Server role: 0, 7, 8, 0xff.
    for b in [0u8, 7, 8, 0xff] {
        let mut n = with_peer_conn(0, 7);
        n.send(7, &[b]);
        let st = status_frame(&n.read(7));
        assert_eq!((st.status, st.request), (400, b), "byte {b}");
        assert_eq!(n.actions(), vec![TcpAction::Close(7)]);
    }
    // A malformed field inside a known command is 400 too.
    let mut n = Node::plain(0);
    n.client(1);
    let mut up = client_update("alice", "bob", "555");
    up[520] = b'!'; // text after the phone's padding
    n.send(1, &up);
    let st = status_frame(&n.read(1));
    assert_eq!((st.status, st.request), (400, 0x01));
    assert!(n.contacts().is_empty());
}

#[test]
fn server_hello_only_from_configured_or_allowed_peers() {
    let cfg = TcpConfig {
        peering: Peering {
            peers: vec![sa("192.0.2.2:4747")],
            allow_peers: vec![Cidr::parse("198.51.100.0/24").unwrap()],
            ..Peering::default()
        },
        ..open()
    };
    for (addr, ok) in [
        ("203.0.113.9:5555", false),
        ("192.0.2.3:4747", false),
        ("[2001:db8::1]:4747", false),
        ("192.0.2.2:61000", true), // a configured peer's IP, any port
        ("198.51.100.200:1", true),
        ("[::ffff:198.51.100.5]:1", true), // IPv4-mapped counts as IPv4
    ] {
        let mut n = Node::new(cfg.clone(), 5);
        n.accept(1, addr);
        n.send(1, &hello(1, "someone"));
        n.send(1, &heartbeat(1, 1));
        let out = n.read(1);
        if ok {
            assert_eq!(out, update_clock(5), "{addr}");
            assert!(n.actions().is_empty());
        } else {
            let st = status_frame(&out);
            assert_eq!((st.status, st.request), (403, 0x00), "{addr}");
            assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
        }
    }
    // The same addresses may always speak the client role.
    let mut n = Node::new(cfg, 5);
    n.accept(1, "203.0.113.9:5555");
    n.send(1, &hello(2, "x"));
    n.send(1, &[BARRIER]);
    assert_eq!(n.read(1), BARRIER_OK);
}
