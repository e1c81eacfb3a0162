//! Bounds of the TCP plane (docs/PROTOCOL.md §8.11): slow and stalled readers, connections
//! per address prefix and in all, store snapshots and streams, answers waiting, unapplied
//! writes, and lying length fields refused from the header (T6 of docs/SECURITY.md).

use super::*;

fn many(n: usize) -> Vec<Contact> {
    (0..n)
        .map(|i| contact(&format!("user{:05}", i / 10), &format!("c{i:05}"), "555", 1))
        .collect()
}

#[test]
fn slow_reader_output_is_bounded_and_other_connections_go_on() {
    let mut n = Node::plain(1);
    let all = many(10_000);
    n.seed(&all);
    n.client(1);
    n.send(1, &[LIST_ALL]);
    // Never read: the core holds at most max_out (+ one record) for it.
    let held = n.pending(1);
    assert!(held >= MAX_OUT - CLIENT_RECORD, "{held}");
    assert!(held <= MAX_OUT + CLIENT_RECORD, "{held}");
    // ... and reads from the store at most two pages ahead of what it wrote (the page
    // being written and the one read ahead), not the whole list.
    let written = (held - 4) / CLIENT_RECORD;
    let page = TcpBounds::default().page;
    assert!(
        n.contacts_read <= written + 2 * page,
        "{} read, {written} written",
        n.contacts_read
    );
    assert!(n.contacts_read < all.len());

    // Another client is served meanwhile.
    n.client(2);
    let mut bytes = client_update("zz", "late", "1");
    bytes.push(BARRIER);
    n.send(2, &bytes);
    assert_eq!(n.read(2), BARRIER_OK);
    n.send(2, &[LIST_ALL]);
    let out2 = n.read(2);
    let (list2, _) = list_answer(&out2);
    assert_eq!(list2.len(), 10_001);
    assert_eq!(n.pending(1), held, "still waiting for its reader");

    // Time passes (less than the stall limit): nothing changes.
    n.advance_to(119_999);
    assert!(n.actions().is_empty());
    assert_eq!(n.pending(1), held);

    // The reader comes back: the rest streams, from the snapshot taken before the write.
    let out = n.read(1);
    let (list1, rest) = list_answer(&out);
    assert!(rest.is_empty());
    assert_eq!(list1, all.iter().map(triple).collect::<Vec<_>>());
    assert!(n.core.output(1).is_empty());
    assert!(n.actions().is_empty());
}

#[test]
fn a_reader_stalled_for_120_s_is_dropped() {
    let mut n = Node::plain(1);
    n.seed(&many(3_000));
    n.client(1);
    n.send(1, &[LIST_ALL]);
    assert!(n.pending(1) > 0);
    // Some progress at 60 s restarts the stall clock.
    n.advance_to(60_000);
    n.core.consumed(60_000, 1, 1000);
    n.settle();
    assert_eq!(n.core.poll_timeout(), Some(180_000));
    n.advance_to(179_999);
    assert!(n.actions().is_empty());
    n.advance_to(180_000);
    assert_eq!(n.actions(), vec![TcpAction::Close(1)]);
    n.core.handle_closed(n.now, 1);
    n.settle();
    assert!(
        n.log
            .iter()
            .any(|r| matches!(r, StoreRequest::CloseStream { .. })),
        "the snapshot is released"
    );
}

/// T5 (docs/SECURITY.md): one address could take every TCP slot. At most 64 connections
/// from one IPv4 address or one IPv6 /64 are open at once; the next gets 503 and is
/// closed; others are not affected; a slot comes back when a connection closes.
#[test]
fn connections_per_address_prefix_are_capped() {
    let mut n = Node::plain(1);
    for i in 0..64 {
        n.accept(i, &format!("198.51.100.7:{}", 40_000 + i));
    }
    assert!(n.actions().is_empty(), "64 from one address are accepted");
    n.accept(64, "198.51.100.7:50000");
    let st = status_frame(&n.read(64));
    assert_eq!((st.status, st.request), (503, 0), "{st:?}");
    assert_eq!(n.actions(), vec![TcpAction::Close(64)]);
    n.core.handle_closed(n.now, 64);
    n.accept(65, "198.51.100.8:40000");
    assert!(n.actions().is_empty(), "another address is not affected");
    // A slot comes back when one closes.
    n.core.handle_closed(n.now, 0);
    n.accept(66, "198.51.100.7:50001");
    assert!(n.actions().is_empty());
    // IPv6: one /64 counts as one address; IPv4-mapped counts as IPv4.
    for i in 0..64u64 {
        n.accept(100 + i, &format!("[2001:db8:0:1::{:x}]:40000", i + 1));
    }
    assert!(n.actions().is_empty());
    n.accept(200, "[2001:db8:0:1:ffff::1]:40000");
    assert_eq!(status_frame(&n.read(200)).status, 503);
    n.accept(201, "[2001:db8:0:2::1]:40000");
    n.accept(202, "[::ffff:198.51.100.7]:50002");
    assert_eq!(
        status_frame(&n.read(202)).status,
        503,
        "mapped = 198.51.100.7"
    );
    assert_eq!(
        n.actions(),
        vec![TcpAction::Close(200), TcpAction::Close(202)]
    );
    // Loopback is exempt (a local operator's tools, as from the UDP rate limits).
    for i in 0..100 {
        n.accept(300 + i, &format!("127.0.0.1:{}", 40_000 + i));
    }
    assert!(n.actions().is_empty(), "100 from loopback");
}

/// T9 (docs/SECURITY.md): each pipelined ListAll opened a store snapshot at once (a file
/// descriptor and a read transaction each; 64 per connection). Only one streamed answer
/// per connection holds a snapshot; the next ListAll is read once it is written.
#[test]
fn one_snapshot_per_connection_at_a_time() {
    let mut n = Node::plain(1);
    n.seed(&many(10));
    n.client(1);
    n.send(1, &[LIST_ALL; 10]);
    let snapshots = |n: &Node| {
        n.log
            .iter()
            .filter(|r| matches!(r, StoreRequest::Snapshot { .. }))
            .count()
    };
    assert_eq!(
        snapshots(&n),
        1,
        "one snapshot while the first answer waits"
    );
    let out = n.read(1);
    assert_eq!(snapshots(&n), 10);
    let mut rest = &out[..];
    for _ in 0..10 {
        let (list, after) = list_answer(rest);
        assert_eq!(list.len(), 10);
        rest = after;
    }
    assert!(rest.is_empty());
}

/// T9 (docs/SECURITY.md): an unread ListAll held about 1.75 MB (a snapshot, two pages
/// and 1 MiB of output) on every connection, 7 GB at 4,096 connections. At most
/// `max_streams` streams read from snapshots at once; a ListAll beyond them waits
/// unparsed (so an Update pipelined after it is not in its answer) until a slot frees.
#[test]
fn streams_beyond_the_cap_wait_for_a_slot() {
    let mut n = Node::new(
        TcpConfig {
            bounds: TcpBounds {
                max_out: 4096,
                max_streams: 2,
                ..TcpBounds::default()
            },
            ..open()
        },
        1,
    );
    n.seed(&many(20)); // more than 4096 bytes: each stream waits for its reader
    for conn in 1..=3 {
        n.accept(conn, &format!("198.51.100.{conn}:4000"));
        n.send(conn, &hello(2, "cli"));
    }
    n.send(1, &[LIST_ALL]);
    n.send(2, &[LIST_ALL]);
    let mut bytes = vec![LIST_ALL];
    bytes.extend(client_update("zz", "late", "1"));
    n.send(3, &bytes);
    let snapshots = |n: &Node| {
        n.log
            .iter()
            .filter(|r| matches!(r, StoreRequest::Snapshot { .. }))
            .count()
    };
    assert_eq!(snapshots(&n), 2, "the third waits for a slot");
    assert_eq!(n.pending(3), 0);
    assert_eq!(n.contacts().len(), 20, "the Update after it waits too");
    let out1 = n.read(1);
    let (list1, rest) = list_answer(&out1);
    assert_eq!((list1.len(), rest.len()), (20, 0));
    assert_eq!(snapshots(&n), 3, "a slot freed");
    let out3 = n.read(3);
    let (list3, rest) = list_answer(&out3);
    assert_eq!(
        (list3.len(), rest.len()),
        (20, 0),
        "the answer is from before the Update"
    );
    assert_eq!(n.contacts().len(), 21);
    assert_eq!(list_answer(&n.read(2)).0.len(), 20);
}

/// With the store slow to answer, at most 64 answers wait per connection; the requests
/// after them stay unparsed (commands without answers still flow), and parsing resumes as
/// the answers complete.
#[test]
fn at_most_64_answers_wait_then_reading_stops() {
    let mut n = Node::plain(1);
    n.client(1);
    n.held = Some(Vec::new());
    n.send(1, &[BARRIER; 100]);
    let barriers = |n: &Node| {
        n.held
            .iter()
            .flatten()
            .chain(&n.log)
            .filter(|r| matches!(r, StoreRequest::Barrier { .. }))
            .count()
    };
    assert_eq!(barriers(&n), 64, "the other 36 requests are not parsed yet");
    // Reading stops only when 64 KiB of unparsed requests wait.
    assert_eq!(n.core.read_budget(1), 64 * 1024 - 36);
    assert_eq!(n.pending(1), 0);
    n.release();
    assert_eq!(
        n.read(1),
        BARRIER_OK.repeat(100),
        "parsing resumes as they are read"
    );
    assert_eq!(barriers(&n), 100);
    assert!(n.core.read_budget(1) > 0);
}

/// A bulk load holds at most `max_held_writes` contacts the store has not applied (it held
/// every contact that had arrived, 157-393 MB for 1,000,000): the batch is sent at half the
/// bound, parsing stops at the bound with the rest unparsed (so reading stops), and resumes
/// as the store applies; nothing is lost and the Barrier after them is answered in order.
#[test]
fn writes_the_store_has_not_applied_are_bounded() {
    let mut n = Node::new(
        TcpConfig {
            bounds: TcpBounds {
                max_held_writes: 8,
                ..TcpBounds::default()
            },
            ..open()
        },
        1,
    );
    n.client(1);
    n.held = Some(Vec::new()); // a slow disk
    let mut bytes = Vec::new();
    for i in 0..20 {
        bytes.extend(client_update("ann", &format!("c{i:02}"), "1"));
    }
    bytes.push(BARRIER);
    n.send(1, &bytes);
    let merges: Vec<usize> = n
        .held
        .iter()
        .flatten()
        .filter_map(|r| match r {
            StoreRequest::Apply { batch, .. } => Some(
                batch
                    .iter()
                    .filter(|w| matches!(w, Write::Merge(_)))
                    .count(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(
        merges,
        [4, 4],
        "two batches of half the bound, then parsing waits"
    );
    assert_eq!(
        n.core.read_budget(1),
        64 * 1024 - 12 * CLIENT_RECORD - 1,
        "the other 12 Updates and the Barrier wait unparsed"
    );
    n.release();
    assert_eq!(n.read(1), BARRIER_OK, "answered once all 20 are durable");
    let names: Vec<String> = n.contacts().iter().map(|c| c.contact.clone()).collect();
    let want: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    assert_eq!(names, want);
    assert_eq!(n.core.read_budget(1), 64 * 1024);
}

/// T6 (docs/SECURITY.md): every length field of the TCP plane at 0, past its maximum and
/// at the field's largest value is refused from the header alone (400 and close, with
/// the frame's command byte), before any of the claimed body is buffered; nothing
/// changes. A length within bounds but past what was sent waits, reading at most 64 KiB.
#[test]
fn lying_lengths_are_refused_from_the_header_and_change_nothing() {
    let cases: [(&str, Vec<u8>, u8); 9] = [
        ("DirRecord len 4097", vec![16, 0x10, 0x01], 16),
        ("DirRecord len 0xFFFF", vec![16, 0xff, 0xff], 16),
        ("Forward len 0xFFFF", vec![18, 0xff, 0xff], 18),
        ("AuthProof len 0xFFFF", vec![21, 0xff, 0xff], 21),
        ("DirRequest len 1", vec![17, 0, 1, 0], 17),
        ("DirRequest len 0xFFFF", vec![17, 0xff, 0xff], 17),
        ("NodeList count 4097", vec![11, 0, 0, 0x10, 0x01], 11),
        (
            "NodeList count 0xFFFFFFFF",
            vec![11, 0xff, 0xff, 0xff, 0xff],
            11,
        ),
        (
            "NodeListDiff count 0xFFFFFFFF",
            vec![12, 0xff, 0xff, 0xff, 0xff],
            12,
        ),
    ];
    for (what, header, request) in cases {
        let mut n = with_peer_conn(1000, 7);
        let before = (n.core.clock(), n.contacts(), n.core.node_list().hash());
        n.send(7, &header);
        let st = status_frame(&n.read(7));
        assert_eq!((st.status, st.request), (400, request), "{what}: {st:?}");
        assert_eq!(n.actions(), vec![TcpAction::Close(7)], "{what}");
        let after = (n.core.clock(), n.contacts(), n.core.node_list().hash());
        assert_eq!(before, after, "{what}: nothing changes");
        assert_eq!(n.core.read_budget(7), 0, "{what}: nothing more is read");
    }
    // Within bounds, past what was sent: it waits, with the usual 64 KiB of input.
    for (what, mut bytes) in [
        ("DirRecord of 4096", vec![16, 0x10, 0x00]),
        ("NodeList of one entry", vec![11, 0, 0, 0, 1]),
        ("hash of 255 bytes", vec![10, 0xff]),
    ] {
        let mut n = with_peer_conn(1000, 7);
        bytes.extend_from_slice(&[1; 20]);
        n.send(7, &bytes);
        assert_eq!(n.pending(7), 0, "{what}: no answer yet");
        let budget = n.core.read_budget(7);
        assert!(
            budget <= rendezvous::wire::tcp::MAX_FRAME_LEN - bytes.len(),
            "{what}: {budget}"
        );
        println!("{what}: waits, {budget} more bytes may be read");
    }
}

#[test]
fn at_the_total_cap_the_busiest_address_makes_room() {
    let mut n = Node::new(
        TcpConfig {
            bounds: TcpBounds {
                max_conns: 8,
                ..TcpBounds::default()
            },
            ..open()
        },
        0,
    );
    // One address takes every slot with connections that never say hello.
    for c in 1..=8 {
        n.advance_to(c * 10);
        n.accept(c, "198.51.100.7:40000");
    }
    assert!((1..=8).all(|c| n.pending(c) == 0 && !n.closed(c)));
    // A newcomer from another address: the busiest address's idlest connection (the
    // first) gets 503 and is closed; the newcomer is served.
    n.advance_to(100);
    n.client(9);
    let st = status_frame(&n.read(1));
    assert_eq!(st.status, 503, "{st:?}");
    assert!(n.closed(1));
    n.send(9, &[0x05]);
    assert_eq!(n.read(9), BARRIER_OK, "the newcomer is served");
    // The busy address again: it holds as many as any, so the newcomer is the one refused.
    n.accept(10, "198.51.100.7:40001");
    assert_eq!(status_frame(&n.read(10)).status, 503);
    assert!(n.closed(10));
    assert!((2..=8).all(|c| !n.closed(c)), "no one else was closed");
}
