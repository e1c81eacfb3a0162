//! Links between servers (docs/PROTOCOL.md §8.10): the exact bytes a link opens with,
//! heartbeats and barriers, convergence of conflicting writes, reconnects with backoff,
//! overfull links dropped and caught up, and changes passed along a line of servers.

use super::*;

#[test]
fn a_link_opens_with_hello_and_cursor_query_exact_bytes() {
    let mut m = Mesh::new(2, &[(0, 1)]);
    m.hold_new_answers = true;
    m.nodes[1].seed(&[contact("alice", "bob", "555", 0)]);
    m.advance_to(0);
    assert_eq!(m.connects, vec![(0, 0, 0, true)]);
    let p = m.link(0, 1);
    let (a, b) = (p.opener.1, p.acceptor.1);
    assert_eq!(m.nodes[0].pending(a), 0, "delivered");
    // What node 1 sends back: its cursor for node 0's journal, 0 (it holds none of it);
    // its node-list hash (of an empty list: no node identity here); the answer to the
    // reconciliation of directories, both empty (docs/PROTOCOL.md §8.20): `[22][len 6]`,
    // set 2, then negentropy version 1 (`61`): up to the end (bound timestamp 0 = infinity,
    // no id prefix) an id list (mode 2) of 0 ids.
    let out = m.nodes[1].core.output(b).to_vec();
    let mut want = vec![14, 0, 0, 0, 0, 0, 0, 0, 0];
    want.extend(empty_node_hash_frame());
    want.extend([22, 0, 6, 2, 0x61, 0, 0, 2, 0]);
    assert_eq!(out, want);

    // What node 0 said: its hello (role 1, its name), then CursorQuery with its journal id.
    let mut solo = Node::new(
        TcpConfig {
            identity: TcpIdentity {
                name: "node0".into(),
                ..TcpIdentity::default()
            },
            peering: Peering {
                peers: vec![node_addr(1)],
                ..Peering::default()
            },
            ..open()
        },
        0,
    );
    solo.advance_to(0);
    assert_eq!(
        solo.actions(),
        vec![TcpAction::Connect {
            peer: 0,
            addr: node_addr(1),
            tls: false,
        }]
    );
    solo.core.handle_connected(0, 0, 9);
    let mut want = hello(1, "node0");
    want.push(14);
    want.extend(solo.store().journal_id().unwrap().to_be_bytes());
    // Then its node-list hash; its directory's ids are asked of the UDP plane, and the
    // reconciliation of directories (§8.20) starts once they come: two empty ones here,
    // `[22][len 6]`, set 2, negentropy version 1, an id list of 0 ids up to the end.
    want.extend(empty_node_hash_frame());
    assert_eq!(solo.core.output(9), &want[..]);
    let Some(TcpAction::DirectoryIds { tag }) = solo.actions().into_iter().next() else {
        panic!("the directory's ids are asked for");
    };
    solo.core.handle_directory_ids(0, tag, &[]);
    want.extend([22, 0, 6, 2, 0x61, 0, 0, 2, 0]);
    assert_eq!(solo.core.output(9), &want[..]);
}

/// NodeListHash (10) of an empty node list: `0a 40` and SHA-512 of `00000000`.
fn empty_node_hash_frame() -> Vec<u8> {
    let hash = "ec2d57691d9b2d40182ac565032054b7d784ba96b18bcb5be0bb4e70e3fb041e\
                ff582c8af66ee50256539f2181d7f9e53627c0189da7e75a4d5ef10ea93b20b3";
    let mut v = vec![0x0a, 0x40];
    v.extend((0..64).map(|i| u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).unwrap()));
    v
}

#[test]
fn heartbeat_then_barrier_every_5_s_on_links_this_server_opened() {
    let mut m = Mesh::new(2, &[(0, 1)]);
    m.set_node(1, 7, |_| {});
    m.set_node(0, 0, |c| {
        c.peering.allow_peers = vec![Cidr::parse("192.0.2.99/32").unwrap()];
    });
    m.run_until(1_000);
    assert!(m.nodes[0].core.link_up(0));
    assert_eq!(
        m.nodes[0].core.clock(),
        0,
        "an empty catch-up carries no clock"
    );
    let (a, b) = {
        let p = m.link(0, 1);
        (p.opener.1, p.acceptor.1)
    };
    m.link(0, 1).hold_to_acceptor = true;
    m.link(0, 1).hold_to_opener = true;
    assert_eq!(m.nodes[0].core.poll_timeout(), Some(5_000));
    m.advance_to(5_000);
    // HeartBeat (health 1, our clock), then a Barrier, then the node-list hash again.
    let mut want = heartbeat(1, 0);
    want.push(BARRIER);
    assert_eq!(want, [0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x05]);
    want.extend(empty_node_hash_frame());
    assert_eq!(m.nodes[0].core.output(a), &want[..]);
    m.link(0, 1).hold_to_acceptor = false;
    m.run();
    // Node 1 (clock 7 >= 0) answers UpdateClock, then the barrier's 200, then its hash.
    let mut want = update_clock(7);
    want.extend(BARRIER_OK);
    want.extend(empty_node_hash_frame());
    assert_eq!(m.nodes[1].core.output(b), &want[..]);
    m.link(0, 1).hold_to_opener = false;
    m.run();
    assert_eq!(m.nodes[0].core.clock(), 7, "the UpdateClock is taken");
    assert!(m.nodes[0].core.link_up(0));
    assert_eq!(m.nodes[0].core.poll_timeout(), Some(10_000));

    // Node 0 learns a higher clock elsewhere; at the next heartbeat node 1 takes it and
    // answers only the 200, which tells node 0 that no UpdateClock is coming.
    let x = m.conn_id();
    m.nodes[0].accept(x, "192.0.2.99:5000");
    m.nodes[0].send(x, &hello(1, "elsewhere"));
    m.nodes[0].send(x, &update_clock(100));
    assert_eq!(m.nodes[0].core.clock(), 100);
    m.link(0, 1).hold_to_opener = true;
    m.advance_to(10_000);
    let mut want = BARRIER_OK.to_vec();
    want.extend(empty_node_hash_frame());
    assert_eq!(m.nodes[1].core.output(b), &want[..]);
    assert_eq!(m.nodes[1].core.clock(), 100);
    m.link(0, 1).hold_to_opener = false;
    m.run();
    assert!(m.nodes[0].core.link_up(0));
    assert_eq!(m.nodes[0].core.clock(), 100);
    assert!(m.nodes[0]
        .acted
        .iter()
        .all(|a| !matches!(a, TcpAction::Close(_))));
}

#[test]
fn peers_both_ways_with_conflicting_writes_converge() {
    let mut m = Mesh::new(2, &[(0, 1), (1, 0)]);
    m.run_until(1_000);
    assert!(m.nodes[0].core.link_up(0) && m.nodes[1].core.link_up(0));
    let (ca, cb) = (m.client(0), m.client(1));
    // Same clock (1) on both sides for (alice, bob): the larger phone wins everywhere.
    m.write(0, ca, "alice", "bob", "111");
    m.write(1, cb, "alice", "bob", "222");
    m.write(0, ca, "alice", "carol", "500");
    m.write(1, cb, "alice", "dave", "700");
    m.run();
    let want = vec![
        contact("alice", "bob", "222", 1),
        contact("alice", "carol", "500", 2),
        contact("alice", "dave", "700", 2),
    ];
    assert_eq!(m.nodes[0].contacts(), want);
    assert_eq!(m.nodes[1].contacts(), want);

    // A partition: both sides write, one side more often (a higher clock).
    m.cut_all();
    m.nodes[0].reachable = false;
    m.nodes[1].reachable = false;
    m.run_until(20_000);
    let (ca, cb) = (m.client(0), m.client(1));
    m.write(0, ca, "alice", "bob", "000");
    m.write(0, ca, "alice", "bob", "001");
    m.write(0, ca, "alice", "bob", "002"); // clock 5
    m.write(1, cb, "alice", "bob", "999"); // clock 3: loses despite its phone
    m.write(1, cb, "alice", "erin", "9"); // clock 4
    m.write(0, ca, "alice", "erin", "1"); // clock 6: wins
    m.write(1, cb, "bob", "x", "1");
    m.run_until(40_000);
    assert_ne!(m.nodes[0].contacts(), m.nodes[1].contacts());
    m.nodes[0].reachable = true;
    m.nodes[1].reachable = true;
    m.run_until(100_000);
    assert!(m.nodes[0].core.link_up(0) && m.nodes[1].core.link_up(0));
    let a = m.nodes[0].contacts();
    assert_eq!(a, m.nodes[1].contacts(), "identical stores");
    let phones: Vec<(&str, &str, &str)> = a
        .iter()
        .map(|c| (c.username.as_str(), c.contact.as_str(), c.phone.as_str()))
        .collect();
    assert_eq!(
        phones,
        [
            ("alice", "bob", "002"),
            ("alice", "carol", "500"),
            ("alice", "dave", "700"),
            ("alice", "erin", "1"),
            ("bob", "x", "1"),
        ]
    );
    // Heartbeats have brought the clocks together.
    assert_eq!(m.nodes[0].core.clock(), m.nodes[1].core.clock());
}

#[test]
fn three_servers_fully_peered_converge() {
    // Every server has --peer for both others (pushes go one hop: a full mesh).
    let links = [(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0)];
    let mut m = Mesh::new(3, &links);
    m.run_until(1_000);
    let cs: Vec<ConnId> = (0..3).map(|i| m.client(i)).collect();
    for round in 0..5 {
        for (i, &c) in cs.iter().enumerate() {
            m.write(i, c, "u", "shared", &format!("{i}-{round}"));
            m.write(i, c, "u", &format!("own{i}"), &format!("{round}"));
        }
    }
    m.run_until(30_000);
    let s0 = m.nodes[0].contacts();
    assert_eq!(s0.len(), 4);
    assert_eq!(s0, m.nodes[1].contacts());
    assert_eq!(s0, m.nodes[2].contacts());
}

#[test]
fn link_down_reconnects_with_backoff_reset_after_a_completed_catch_up() {
    let mut m = Mesh::new(2, &[(0, 1)]);
    m.nodes[1].reachable = false;
    m.run_until(100_000);
    let tries: Vec<u64> = m
        .connects
        .iter()
        .filter(|c| c.1 == 0)
        .map(|c| c.0)
        .collect();
    let gaps: Vec<u64> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(tries[0], 0, "the first try is at start");
    // Doubling up to 5 s, one heartbeat interval (docs/PROTOCOL.md §8.10).
    assert_eq!(gaps[..6], [250, 500, 1_000, 2_000, 4_000, 5_000]);
    assert!(gaps[6..].iter().all(|&g| g == 5_000), "{gaps:?}");
    let last = *tries.last().unwrap();
    assert_eq!(last, 97_750);

    // The peer comes back: the next try (5 s later) connects and catches up.
    m.nodes[1].reachable = true;
    m.run_until(last + 5_000);
    assert_eq!(m.connects.last(), Some(&(last + 5_000, 0, 0, true)));
    assert!(m.nodes[0].core.link_up(0));

    // Lost after a completed catch-up: the backoff starts again at 250 ms.
    m.run_until(130_000);
    m.cut_all();
    m.run_until(140_000);
    let after: Vec<(u64, bool)> = m
        .connects
        .iter()
        .filter(|c| c.0 >= 130_000)
        .map(|c| (c.0, c.3))
        .collect();
    assert_eq!(after, [(130_250, true)]);

    // Connected but lost before the catch-up completed: no reset, the backoff grows.
    m.hold_new_answers = true;
    m.cut_all(); // at 140 000: retry at +250, next backoff 500
    m.run_until(140_250); // connects, the answer is held
    assert!(m.nodes[0].core.link_up(0));
    m.cut_all(); // at 140 250: retry at +500
    m.run_until(141_000);
    m.cut_all(); // at 140 750 it connected again; cut at 141 000: retry at +1 000
    m.run_until(150_000);
    let after: Vec<u64> = m
        .connects
        .iter()
        .filter(|c| c.0 >= 140_000)
        .map(|c| c.0)
        .collect();
    assert_eq!(after, [140_250, 140_750, 142_000]);
}

#[test]
fn local_writes_are_pushed_to_every_link_that_is_up() {
    let mut m = Mesh::new(3, &[(0, 1), (0, 2)]);
    m.run_until(1_000);
    let c = m.client(0);
    m.write(0, c, "alice", "bob", "555");
    // One journal line (line 1, clock 1) on each of node 0's links.
    let (a1, a2) = {
        let p1 = m.link(0, 1).opener.1;
        let p2 = m.link(0, 2).opener.1;
        (p1, p2)
    };
    assert_eq!(
        m.nodes[0].core.output(a1),
        &journal_update(1, 1, "alice", "bob", "555")[..]
    );
    assert_eq!(
        m.nodes[0].core.output(a2),
        &journal_update(1, 1, "alice", "bob", "555")[..]
    );
    m.run();
    assert_eq!(m.nodes[1].contacts(), m.nodes[0].contacts());
    assert_eq!(m.nodes[2].contacts(), m.nodes[0].contacts());
}

/// docs/PROTOCOL.md: a link whose output exceeds 2 x max_out (2 MiB) is dropped and catches up on reconnect.
/// The pushes node 0 dropped must reach node 1 once the link is back.
#[test]

fn an_overfull_link_is_dropped_and_the_peer_catches_up() {
    let mut m = Mesh::new(2, &[(0, 1), (1, 0)]);
    m.run_until(1_000);
    m.link(0, 1).hold_to_acceptor = true; // node 1 stops reading node 0's link
    let c = m.client(0);
    let mut bytes = Vec::new();
    for i in 0..4_200 {
        bytes.extend(client_update("bulk", &format!("c{i:05}"), "1"));
    }
    m.nodes[0].send(c, &bytes);
    let id = m.link(0, 1).opener.1;
    let closes = m.nodes[0].actions();
    assert!(!closes.is_empty(), "the overfull link is dropped");
    assert!(
        closes.iter().all(|a| *a == TcpAction::Close(id)),
        "{closes:?}"
    );
    m.close_pipe((0, id));
    m.run_until(60_000);
    assert!(m.nodes[0].core.link_up(0) && m.nodes[1].core.link_up(0));
    assert_eq!(m.nodes[1].contacts().len(), 4_200);
    assert_eq!(m.nodes[0].contacts(), m.nodes[1].contacts());
}

/// A link is dropped when its output passes 2 x max_out (a push stream may hold max_out,
/// pushes as much again), and reconnects after 250 ms.
#[test]
fn an_overfull_link_is_dropped_and_reconnects() {
    let mut m = Mesh::new(2, &[(0, 1), (1, 0)]);
    m.run_until(1_000);
    m.link(0, 1).hold_to_acceptor = true;
    let c = m.client(0);
    let mut bytes = Vec::new();
    for i in 0..4_200 {
        bytes.extend(client_update("bulk", &format!("c{i:05}"), "1"));
    }
    m.nodes[0].send(c, &bytes);
    let id = m.link(0, 1).opener.1;
    assert!(m.nodes[0].pending(id) <= 2 * MAX_OUT + SERVER_RECORD);
    // One Close per write that found the link over the limit; the loop ignores repeats.
    let closes = m.nodes[0].actions();
    assert!(!closes.is_empty());
    assert!(
        closes.iter().all(|a| *a == TcpAction::Close(id)),
        "{closes:?}"
    );
    let t = m.now;
    m.close_pipe((0, id));
    assert!(!m.nodes[0].core.link_up(0));
    m.run_until(5_000);
    assert!(m.nodes[0].core.link_up(0));
    assert!(m.connects.iter().any(|c| c.0 == t + 250 && c.1 == 0 && c.3));
}

/// Writes made while only the link this server opened is down (the peer's link to it stays
/// up) must reach the peer once the link is back.
#[test]

fn writes_during_a_one_way_outage_reach_the_peer() {
    let mut m = Mesh::new(2, &[(0, 1), (1, 0)]);
    m.run_until(1_000);
    let id = m.link(0, 1).opener.1;
    m.close_pipe((0, id)); // only node 0's link drops
    let c = m.client(0);
    m.write(0, c, "alice", "bob", "555");
    m.run_until(60_000);
    assert!(m.nodes[0].core.link_up(0) && m.nodes[1].core.link_up(0));
    assert_eq!(m.nodes[1].contacts(), m.nodes[0].contacts());
}

/// A client that sends barriers and never reads its answers, fed as the event loop feeds it
/// (within `read_budget`). TcpBounds::max_out says a connection over it is dropped; the
/// core's pending output for it must stay bounded either way.
#[test]

fn a_client_that_never_reads_its_barrier_answers_is_bounded() {
    let mut n = Node::plain(0);
    n.client(1);
    let mut sent = 0usize;
    while sent < 300_000 {
        let budget = n.core.read_budget(1).min(64 * 1024);
        if budget == 0 || !n.acted.is_empty() || !n.actions().is_empty() {
            break;
        }
        n.send(1, &vec![BARRIER; budget]);
        sent += budget;
    }
    let held = n.pending(1);
    assert!(
        held <= MAX_OUT + BARRIER_OK.len(),
        "{held} bytes of output held for a reader that never read ({sent} barriers taken)"
    );
}

/// Records cross servers that are not directly peered: a line 0 - 1 - 2 - 3, each peered
/// only with its neighbours. A change that alters state is passed on; an unchanged one is
/// not, so the flood ends (the forward count stays bounded however long the mesh runs).
#[test]
fn changes_cross_a_line_of_servers_and_the_flood_ends() {
    let mut m = Mesh::new(4, &[(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]);
    m.run_until(1_000);
    let c0 = m.client(0);
    m.write(0, c0, "alice", "bob", "111");
    let c3 = m.client(3);
    m.write(3, c3, "zoe", "yan", "999");
    m.run_until(10_000);
    let want = m.nodes[0].contacts();
    assert_eq!(want.len(), 2, "{want:?}");
    for i in 1..4 {
        assert_eq!(m.nodes[i].contacts(), want, "node {i}");
    }
    let forwarded: Vec<u64> = m.nodes.iter().map(|n| n.core.stats().forwarded).collect();
    m.run_until(60_000);
    let later: Vec<u64> = m.nodes.iter().map(|n| n.core.stats().forwarded).collect();
    assert_eq!(
        forwarded, later,
        "nothing more is forwarded once every server has it"
    );
    // Each server passes each new record on at most once per time it changed its store.
    assert!(later.iter().all(|&f| f <= 2), "{later:?}");
}
