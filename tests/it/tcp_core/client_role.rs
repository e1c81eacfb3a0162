//! The client role (docs/PROTOCOL.md §8.3): hello then Update, ListAll, AskForUpdate, Barrier
//! and Status in exact bytes, answers in the order asked (§8.14), a barrier answered once
//! what came before it is durable (§8.8), and a failed store write or read is 503.

use super::*;

#[test]
fn hello_then_update_and_list_all_exact_bytes() {
    let mut n = Node::plain(0);
    n.accept(1, CLIENT);
    let h = hello(2, "cli");
    assert_eq!(&h[..4], &[0x02, 0x63, 0x6c, 0x69]);
    assert!(h[4..].iter().all(|&b| b == 0) && h.len() == HELLO_LEN);
    n.send(1, &h);
    assert_eq!(
        n.pending(1),
        0,
        "no greeting: the acceptor speaks only when asked"
    );

    let up = client_update("alice", "bob", "555");
    assert_eq!(up.len(), CLIENT_RECORD);
    assert_eq!(&up[..6], &[0x01, 0x61, 0x6c, 0x69, 0x63, 0x65]);
    assert_eq!(&up[257..260], b"bob");
    assert_eq!(&up[513..516], b"555");
    let mut bytes = up.clone();
    bytes.push(LIST_ALL);
    n.send(1, &bytes);
    assert!(n.actions().is_empty());

    // The ListAll answer: count 1, then the record exactly as the client sent it.
    let mut want = vec![0, 0, 0, 1];
    want.extend(&up);
    assert_eq!(n.read(1), want);

    // The write went first and carried the new clock; the snapshot came after it.
    assert_eq!(
        n.log,
        vec![
            StoreRequest::Apply {
                seq: 1,
                batch: vec![
                    Write::Merge(contact("alice", "bob", "555", 1)),
                    Write::Clock(1)
                ],
            },
            StoreRequest::Snapshot {
                stream: 1,
                owner: None
            },
            StoreRequest::NextPage {
                stream: 1,
                max: TcpBounds::default().page
            },
            StoreRequest::CloseStream { stream: 1 },
        ]
    );
    assert_eq!(n.contacts(), vec![contact("alice", "bob", "555", 1)]);
    assert_eq!(n.store_clock(), 1);
}

#[test]
fn list_all_is_ordered_by_user_then_contact_and_an_empty_list_is_count_zero() {
    let mut n = Node::plain(0);
    n.client(1);
    n.send(1, &[LIST_ALL]);
    assert_eq!(n.read(1), vec![0, 0, 0, 0]);
    // Written out of order, read back in bytewise (username, contact) order.
    let mut bytes = Vec::new();
    for (u, c, p) in [
        ("bob", "zed", "3"),
        ("alice", "carol", "2"),
        ("Zoe", "x", "4"),
        ("alice", "bob", "1"),
    ] {
        bytes.extend(client_update(u, c, p));
    }
    bytes.push(LIST_ALL);
    n.send(1, &bytes);
    let out = n.read(1);
    let (list, rest) = list_answer(&out);
    assert!(rest.is_empty());
    let names: Vec<(&str, &str)> = list
        .iter()
        .map(|(u, c, _)| (u.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("Zoe", "x"),
            ("alice", "bob"),
            ("alice", "carol"),
            ("bob", "zed")
        ]
    );
}

#[test]
fn barrier_is_answered_only_after_the_apply_before_it() {
    let mut n = Node::plain(0);
    n.client(1);
    let mut bytes = client_update("alice", "bob", "555");
    bytes.push(BARRIER);
    n.core.handle_data(0, 1, &bytes);
    n.core.end_turn();
    // Apply precedes the barrier in the one ordered channel to the store.
    let reqs = n.core.drain_store();
    assert_eq!(
        reqs,
        vec![
            StoreRequest::Apply {
                seq: 1,
                batch: vec![
                    Write::Merge(contact("alice", "bob", "555", 1)),
                    Write::Clock(1)
                ],
            },
            StoreRequest::Barrier { tag: 1 },
        ]
    );
    assert_eq!(n.pending(1), 0, "nothing before the store answered");
    let applied = n.exec(reqs[0].clone()).expect("applied");
    n.core.handle_store(0, applied);
    assert_eq!(n.pending(1), 0, "the barrier waits for its own event");
    assert_eq!(
        n.contacts().len(),
        1,
        "the write is in the store before the 200"
    );
    let done = n.exec(reqs[1].clone()).expect("barrier done");
    n.core.handle_store(0, done);
    assert_eq!(n.read(1), BARRIER_OK);
    assert!(n.actions().is_empty(), "a 200 does not close");

    // A barrier with nothing before it is still answered, and cheaply (no Apply).
    n.log.clear();
    n.send(1, &[BARRIER]);
    assert_eq!(n.read(1), BARRIER_OK);
    assert_eq!(n.log, vec![StoreRequest::Barrier { tag: 2 }]);
}

#[test]
fn barrier_after_a_failed_write_is_503_and_closes() {
    let mut n = Node::plain(0);
    n.fail_applies = true;
    n.client(1);
    let mut bytes = client_update("alice", "bob", "555");
    bytes.push(BARRIER);
    n.send(1, &bytes);
    let out = n.read(1);
    let st = status_frame(&out);
    assert_eq!((st.status, st.request), (503, BARRIER), "{st:?}");
    assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
    assert_eq!(n.core.stats().store_failures, 1);
}

#[test]
fn answers_come_in_the_order_asked() {
    // Server role: AskForUpdate, then a HeartBeat with a lower clock: the UpdateClock comes
    // after the whole list, even though it was ready first. Pages of 2 force several
    // round trips to the store.
    let mut n = Node::new(
        TcpConfig {
            peering: Peering {
                allow_peers: vec![Cidr::parse("198.51.100.0/24").unwrap()],
                ..Peering::default()
            },
            bounds: TcpBounds {
                page: 2,
                ..TcpBounds::default()
            },
            ..open()
        },
        50,
    );
    n.seed(&[
        contact("a", "1", "p1", 10),
        contact("a", "2", "p2", 20),
        contact("b", "1", "p3", 30),
        contact("c", "1", "p4", 40),
        contact("c", "2", "p5", 50),
    ]);
    n.accept(7, PEER);
    n.send(7, &hello(1, "peer"));
    let mut bytes = vec![ASK_FOR_UPDATE];
    bytes.extend(heartbeat(1, 3));
    n.core.handle_data(0, 7, &bytes);
    assert_eq!(n.pending(7), 0, "the UpdateClock waits behind the list");
    n.settle();
    let out = n.read(7);
    let (list, rest) = full_answer(&out);
    assert_eq!(list, n.contacts());
    assert_eq!(rest, update_clock(50));
    let pages = n
        .log
        .iter()
        .filter(|r| matches!(r, StoreRequest::NextPage { max: 2, .. }))
        .count();
    assert_eq!(pages, 3);

    // Client role: ListAll, Barrier, ListAll; a write between the two lists is seen only by
    // the second, and the 200 sits between the two answers.
    let mut n = Node::plain(0);
    n.client(1);
    let mut bytes = client_update("u", "c1", "1");
    bytes.push(LIST_ALL);
    bytes.push(BARRIER);
    bytes.extend(client_update("u", "c2", "2"));
    bytes.push(LIST_ALL);
    n.send(1, &bytes);
    let out = n.read(1);
    let (first, rest) = list_answer(&out);
    assert_eq!(first.len(), 1);
    assert_eq!(&rest[..BARRIER_OK.len()], BARRIER_OK);
    let (second, rest) = list_answer(&rest[BARRIER_OK.len()..]);
    assert!(rest.is_empty());
    assert_eq!(second.len(), 2);
    // Every snapshot is taken after the writes before it are applied.
    let kinds: Vec<&str> = n
        .log
        .iter()
        .filter_map(|r| match r {
            StoreRequest::Apply { .. } => Some("apply"),
            StoreRequest::Snapshot { .. } => Some("snapshot"),
            StoreRequest::Barrier { .. } => Some("barrier"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["apply", "snapshot", "barrier", "apply", "snapshot"]);
}

/// docs/PROTOCOL.md §8.7, §8.14: the acceptor answers in the order asked, status frames
/// included. A refusal of a later command must come after the answers to the commands
/// before it.
#[test]

fn a_refusal_comes_after_the_answers_asked_before_it() {
    let mut n = Node::plain(0);
    n.seed(&[contact("alice", "bob", "555", 1)]);
    n.client(1);
    n.send(1, &[LIST_ALL, 0x04]); // ListAll, then a byte that is no client command
    let out = n.read(1);
    let (list, rest) = list_answer(&out);
    assert_eq!(list.len(), 1);
    let st = status_frame(rest);
    assert_eq!((st.status, st.request), (400, 0x04));
    assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
}

/// What holds in the case above whether or not the earlier answer is sent first: the
/// output ends with the 400, the connection closes, and no snapshot is left open.
#[test]
fn a_refusal_after_a_pending_answer_closes_and_releases_its_snapshot() {
    let mut n = Node::plain(0);
    n.seed(&[contact("alice", "bob", "555", 1)]);
    n.client(1);
    n.send(1, &[LIST_ALL, 0x04]);
    let out = n.read(1);
    let at = out
        .windows(4)
        .rposition(|w| w == [0x07, 0x01, 0x90, 0x04])
        .expect("a 400 for request 4");
    let st = status_frame(&out[at..]);
    assert_eq!((st.status, st.request), (400, 0x04));
    assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
    n.core.handle_closed(n.now, 1);
    n.settle();
    assert!(
        n.log.contains(&StoreRequest::CloseStream { stream: 1 }),
        "the snapshot is released"
    );
    assert_eq!(n.exec.open_snapshots(), 0, "no snapshot left open");
}

/// A store read that fails (here the status digest) is answered with 503 and a close,
/// never left waiting (regression: only streams were matched to their failure).
#[test]
fn a_failed_store_read_is_503_not_a_hang() {
    let mut core = TcpCore::new(open(), 0, 0);
    core.handle_accept(0, 1, "192.0.2.1:40000".parse().unwrap());
    let mut bytes = hello(2, "cli");
    bytes.push(0x06); // Status
    core.handle_data(0, 1, &bytes);
    core.end_turn();
    let tag = core
        .drain_store()
        .into_iter()
        .find_map(|r| match r {
            StoreRequest::Digest { tag } => Some(tag),
            _ => None,
        })
        .expect("a digest request");
    core.handle_store(
        0,
        StoreEvent::StreamFailed {
            stream: tag,
            error: "disk on fire".into(),
        },
    );
    let st = status_frame(core.output(1));
    assert_eq!(st.status, 503, "{st:?}");
    let n = core.output(1).len();
    core.consumed(0, 1, n);
    let mut actions = Vec::new();
    while let Some(a) = core.poll_action() {
        actions.push(a);
    }
    assert!(actions.contains(&TcpAction::Close(1)), "{actions:?}");
}
