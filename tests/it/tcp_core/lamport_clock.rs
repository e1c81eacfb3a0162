//! The Lamport clock and last-writer-wins (docs/PROTOCOL.md §8.9): client writes stamp and
//! raise the clock, received clocks raise it and never lower it; the clock's limits
//! (exhaustion, implausible jumps, the raise budget) and a fresh server's big clock.

use super::*;

#[test]
fn client_update_increments_the_clock_and_stamps_the_record() {
    let mut n = Node::plain(41);
    n.client(1);
    n.send(1, &client_update("alice", "bob", "555"));
    assert_eq!(n.core.clock(), 42);
    n.send(1, &client_update("alice", "bob", "556"));
    assert_eq!(n.core.clock(), 43);
    assert_eq!(
        n.log,
        vec![
            StoreRequest::Apply {
                seq: 1,
                batch: vec![
                    Write::Merge(contact("alice", "bob", "555", 42)),
                    Write::Clock(42)
                ],
            },
            StoreRequest::Apply {
                seq: 2,
                batch: vec![
                    Write::Merge(contact("alice", "bob", "556", 43)),
                    Write::Clock(43)
                ],
            },
        ]
    );
    assert_eq!(n.contacts(), vec![contact("alice", "bob", "556", 43)]);
    assert_eq!(n.store_clock(), 43, "the clock is persisted with the write");
    assert_eq!(n.core.stats().client_updates, 2);
}

#[test]
fn received_clocks_raise_ours_and_never_lower_it() {
    let mut n = with_peer_conn(10, 7);
    n.send(7, &server_update(100, "alice", "bob", "555"));
    assert_eq!(n.core.clock(), 100);
    assert_eq!(n.contacts(), vec![contact("alice", "bob", "555", 100)]);
    n.send(7, &update_clock(150));
    assert_eq!(n.core.clock(), 150);
    n.send(7, &server_update(20, "alice", "carol", "1"));
    n.send(7, &update_clock(30));
    assert_eq!(n.core.clock(), 150, "lower clocks do not lower ours");
    assert_eq!(n.store_clock(), 150);
    assert_eq!(n.pending(7), 0, "Update and UpdateClock are not answered");
    // A local write after that goes on from the raised clock.
    n.client(1);
    n.send(1, &client_update("x", "y", "z"));
    assert_eq!(n.core.clock(), 151);
}

#[test]
fn heartbeat_lower_or_equal_gets_update_clock_higher_is_adopted_silently() {
    let mut n = with_peer_conn(500, 7);
    n.send(7, &heartbeat(1, 499));
    assert_eq!(n.read(7), [0x03, 0x00, 0x00, 0x01, 0xf4]);
    n.send(7, &heartbeat(2, 500));
    assert_eq!(
        n.read(7),
        update_clock(500),
        "equal clocks: mine is >= the peer's"
    );
    assert_eq!(n.core.clock(), 500);
    n.send(7, &heartbeat(3, 900));
    assert_eq!(n.pending(7), 0, "a higher clock is taken, not answered");
    assert_eq!(n.core.clock(), 900);
    assert_eq!(n.store_clock(), 900, "an adopted clock is persisted");
    n.send(7, &heartbeat(1, 600));
    assert_eq!(n.read(7), update_clock(900));
    assert!(n.actions().is_empty());
}

// ---------------------------------------------------------------------------------------
// Last-writer-wins
// ---------------------------------------------------------------------------------------

#[test]
fn last_writer_wins_whatever_the_order_of_delivery() {
    // (clock, phone) pairs for one key; the winner is the highest clock, then the bytewise
    // larger phone.
    type Stamp = (u32, &'static str);
    let cases: &[(&[Stamp], Stamp)] = &[
        (&[(5, "111"), (6, "000")], (6, "000")),
        (&[(5, "111"), (5, "222")], (5, "222")),
        (&[(5, "9"), (5, "10")], (5, "9")), // bytewise, not numeric
        (&[(5, "12"), (5, "123")], (5, "123")), // a prefix loses to the longer text
        (&[(7, "a"), (7, "a")], (7, "a")),
        (&[(3, "x"), (9, "a"), (9, "b"), (4, "z")], (9, "b")),
    ];
    for (writes, (wclock, wphone)) in cases {
        let mut stores = Vec::new();
        let mut forward: Vec<_> = writes.to_vec();
        let mut orders = vec![forward.clone()];
        forward.reverse();
        orders.push(forward);
        for order in orders {
            let mut n = with_peer_conn(1, 7);
            for (clock, phone) in order {
                n.send(7, &server_update(clock, "alice", "bob", phone));
            }
            stores.push(n.contacts());
        }
        assert_eq!(stores[0], stores[1], "case {writes:?}");
        assert_eq!(
            stores[0],
            vec![contact("alice", "bob", wphone, *wclock)],
            "case {writes:?}"
        );
    }
}

#[test]
fn local_write_against_a_replicated_record_follows_the_same_rule() {
    // The peer's record carries clock 10; our clock is then >= 10, so a later local write
    // gets 11 and wins whatever its phone.
    let mut n = with_peer_conn(0, 7);
    n.send(7, &server_update(10, "alice", "bob", "999"));
    n.client(1);
    n.send(1, &client_update("alice", "bob", "000"));
    assert_eq!(n.contacts(), vec![contact("alice", "bob", "000", 11)]);
}

// ---------------------------------------------------------------------------------------
// Clock limits
// ---------------------------------------------------------------------------------------

#[test]
fn exhausted_clock_refuses_client_writes_with_503() {
    let mut n = Node::plain(u32::MAX);
    n.client(1);
    n.send(1, &client_update("alice", "bob", "555"));
    let out = n.read(1);
    let st = status_frame(&out);
    assert_eq!((st.status, st.request), (503, 0x01), "{st:?}");
    assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
    assert_eq!(n.core.clock(), u32::MAX, "no wrap");
    assert!(n.contacts().is_empty());
    assert!(
        !n.log
            .iter()
            .any(|r| matches!(r, StoreRequest::Apply { .. })),
        "nothing written"
    );
    // One below the limit still takes exactly one write.
    let mut n = Node::plain(u32::MAX - 1);
    n.client(1);
    n.send(1, &client_update("alice", "bob", "555"));
    assert_eq!(n.core.clock(), u32::MAX);
    assert_eq!(n.pending(1), 0);
    n.send(1, &client_update("alice", "bob", "556"));
    let st = status_frame(&n.read(1));
    assert_eq!(st.status, 503);
    assert_eq!(n.contacts(), vec![contact("alice", "bob", "555", u32::MAX)]);
}

#[test]
fn implausible_clock_jump_is_409_and_closed() {
    const JUMP: u32 = 1 << 24;
    for (frame, request) in [
        (server_update(1000 + JUMP + 1, "alice", "bob", "1"), 0x01),
        (heartbeat(1, 1000 + JUMP + 1), 0x02),
        (update_clock(1000 + JUMP + 1), 0x03),
    ] {
        let mut n = with_peer_conn(1000, 7);
        n.send(7, &frame);
        let st = status_frame(&n.read(7));
        assert_eq!((st.status, st.request), (409, request), "{st:?}");
        assert_eq!(n.actions(), vec![TcpAction::Close(7)]);
        assert_eq!(n.core.clock(), 1000);
        assert!(n.contacts().is_empty());
        assert_eq!(n.core.stats().clocks_refused, 1);
        // Bytes after the refusal are ignored.
        n.send(7, &update_clock(1001));
        assert_eq!(n.core.clock(), 1000);
    }
    // Exactly 2^24 ahead is still plausible.
    let mut n = with_peer_conn(1000, 7);
    n.send(7, &server_update(1000 + JUMP, "alice", "bob", "1"));
    assert_eq!(n.core.clock(), 1000 + JUMP);
    assert_eq!(n.pending(7), 0);
}

/// T8 (docs/SECURITY.md): one peer pipelining UpdateClock frames, each 2^24 ahead of the
/// last, once walked the clock from 1000 to 0xFFFFFFFF in one read (the bound was checked
/// per frame). The raise budget takes the first 2^24 and refuses the next; client writes
/// go on; an hour later the budget has refilled.
#[test]
fn a_clock_walk_is_refused_once_the_raise_budget_is_spent() {
    const JUMP: u32 = 1 << 24;
    let mut n = with_peer_conn(1000, 7);
    let walk: Vec<u8> = (1..=256u32)
        .flat_map(|i| update_clock(1000u32.saturating_add(i.saturating_mul(JUMP))))
        .collect();
    n.send(7, &walk);
    let st = status_frame(&n.read(7));
    assert_eq!((st.status, st.request), (409, 0x03), "{st:?}");
    assert_eq!(n.actions(), vec![TcpAction::Close(7)]);
    println!(
        "clock walk: 256 frames of +2^24 moved the clock from 1000 to {} (refused: {})",
        n.core.clock(),
        n.core.stats().clocks_refused
    );
    assert_eq!(
        n.core.clock(),
        1000 + JUMP,
        "one step taken, the rest refused"
    );
    // The walker's address is cut off for 10 minutes: its next server hello is 403.
    n.accept(11, PEER);
    n.send(11, &hello(1, "peer"));
    assert_eq!(status_frame(&n.read(11)).status, 403, "cut off");
    // Small raises within what is left are refused too (from another peer): the budget
    // is spent.
    n.accept(8, "198.51.100.8:40001");
    n.send(8, &hello(1, "peer"));
    n.send(8, &update_clock(1000 + JUMP + 1));
    assert_eq!(status_frame(&n.read(8)).status, 409);
    // Clients still write.
    n.client(1);
    n.send(1, &client_update("alice", "bob", "1"));
    assert_eq!(
        n.contacts(),
        vec![contact("alice", "bob", "1", 1001 + JUMP)]
    );
    // Half an hour earns half the budget back; an hour, all of it.
    let t = n.now;
    n.advance_to(t + 1_800_000);
    n.accept(9, "198.51.100.9:40001");
    n.send(9, &hello(1, "peer"));
    n.send(9, &update_clock(1001 + JUMP + JUMP / 2));
    assert_eq!(n.pending(9), 0, "half the budget back");
    n.send(9, &update_clock(1002 + JUMP + JUMP / 2));
    assert_eq!(status_frame(&n.read(9)).status, 409, "and no more");
    n.advance_to(t + 1_800_000 + 3_600_000);
    n.accept(10, "198.51.100.10:40001");
    n.send(10, &hello(1, "peer"));
    n.send(10, &update_clock(1001 + 2 * JUMP + JUMP / 2));
    assert_eq!(n.pending(10), 0, "the whole budget back after an hour");
}

#[test]
fn fresh_server_accepts_a_big_clock() {
    // A fresh (or memory-only) server, clock 0, joining an older mesh.
    let mut n = with_peer_conn(0, 7);
    n.send(7, &server_update(1 << 31, "alice", "bob", "1"));
    assert_eq!(n.core.clock(), 1 << 31);
    assert_eq!(n.pending(7), 0);
    assert_eq!(n.contacts(), vec![contact("alice", "bob", "1", 1 << 31)]);
    // From then on the steady-state bound applies.
    n.send(7, &heartbeat(1, (1 << 31) + (1 << 24) + 1));
    assert_eq!(status_frame(&n.read(7)).status, 409);
    // Past 2^31 is too much even for a fresh server.
    let mut n = with_peer_conn(0, 7);
    n.send(7, &heartbeat(1, (1 << 31) + 1));
    assert_eq!(status_frame(&n.read(7)).status, 409);
}

/// docs/PROTOCOL.md §8.9 ("catching up"): a fresh or memory-only server catching up with an
/// older mesh must still be able to join. The catch-up stream is in (username, contact)
/// order, not clock order, so its first record may carry a small clock and a later one a
/// clock far beyond it.
#[test]

fn fresh_server_catches_up_with_an_older_mesh_whatever_the_order_of_clocks() {
    // The older server pushes its journal to the fresh one over its own link (peers name
    // each other); the lines come in journal order, not clock order.
    let mut m = Mesh::new(2, &[(0, 1), (1, 0)]);
    m.set_node(1, 1 << 30, |_| {});
    m.nodes[1].seed(&[
        contact("a-old", "x", "1", 5),
        contact("b-new", "y", "2", 1 << 30),
    ]);
    m.run_until(60_000);
    assert_eq!(m.nodes[0].node.contacts(), m.nodes[1].node.contacts());
    assert_eq!(m.nodes[0].node.core.clock(), 1 << 30);
}
