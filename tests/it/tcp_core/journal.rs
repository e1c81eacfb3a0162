//! The journal catch-up (docs/PROTOCOL.md §8.4, §8.10): JournalSince answers bounded by the
//! output and by `limit`, bad requests refused, a trimmed journal (404), and a journal line
//! that comes twice (by CursorQuery's cursor) applied once.

use super::*;

fn journal_since(id: u64, since: u64, limit: u32) -> Vec<u8> {
    let mut v = vec![19];
    v.extend(id.to_be_bytes());
    v.extend(since.to_be_bytes());
    v.extend(limit.to_be_bytes());
    v
}

/// T9 (docs/SECURITY.md): 200 pipelined JournalSince of 4096 lines on one connection
/// that never reads once held 64 whole answers (2.2 MB each, +165 MB measured on the
/// binary). An answer not yet built counts for its `limit` lines against the output
/// bound, so at most one is built past it; a reader that comes back gets all 200.
#[test]
fn pipelined_journal_since_answers_are_bounded_by_the_output() {
    let mut n = with_peer_conn(0, 1);
    let id = n.store().journal_id().unwrap();
    n.client(2);
    let mut writes = Vec::new();
    for i in 0..4096 {
        writes.extend(client_update("alice", &format!("c{i}"), "555"));
    }
    writes.push(BARRIER);
    n.send(2, &writes);
    assert_eq!(n.read(2), BARRIER_OK);
    let asks: Vec<u8> = (0..200).flat_map(|_| journal_since(id, 0, 4096)).collect();
    n.send(1, &asks);
    let held = n.pending(1);
    let one = 5 + 4096 * 545;
    println!("200 unread JournalSince(4096): {held} bytes held (one answer is {one})");
    assert!(held <= one + (1 << 20), "{held} bytes held");
    assert_eq!(n.read(1).len(), 200 * one, "every answer, once read");
}

#[test]
fn journal_since_returns_at_most_limit_lines_and_refuses_bad_requests() {
    let mut n = with_peer_conn(0, 1);
    let id = n.store().journal_id().unwrap();
    n.client(2);
    for i in 0..5 {
        n.send(2, &client_update("alice", &format!("c{i}"), "555"));
    }
    n.send(2, &[BARRIER]);
    assert_eq!(n.read(2), BARRIER_OK);
    assert_eq!(n.store().journal_head().unwrap(), 5);

    // Lines 3 and 4 (limit 2 after line 2), as JournalUpdate frames.
    n.send(1, &journal_since(id, 2, 2));
    let out = n.read(1);
    let mut want = vec![19, 0, 0, 0, 2];
    want.extend(journal_update(3, 3, "alice", "c2", "555"));
    want.extend(journal_update(4, 4, "alice", "c3", "555"));
    assert_eq!(out, want);
    // Up to the end: one line after 4; none after 5.
    n.send(1, &journal_since(id, 4, 4096));
    assert_eq!(&n.read(1)[..5], &[19, 0, 0, 0, 1]);
    n.send(1, &journal_since(id, 5, 10));
    assert_eq!(n.read(1), [19, 0, 0, 0, 0]);

    let contacts = n.contacts();
    let clock = n.core.clock();
    // Each refusal on its own connection: a status frame, then close; nothing changes.
    for (what, req, status) in [
        ("limit 0xFFFFFFFF", journal_since(id, 0, u32::MAX), 400u16),
        ("limit 0", journal_since(id, 0, 0), 400),
        ("since beyond the end", journal_since(id, 6, 10), 400),
        ("another journal", journal_since(id ^ 1, 0, 10), 404),
    ] {
        let c = 100 + status as u64 + req[20] as u64;
        n.accept(c, PEER);
        n.send(c, &hello(1, "peer"));
        n.send(c, &req);
        let st = status_frame(&n.read(c));
        assert_eq!(
            (st.status, st.request),
            (status, 19),
            "{what}: {}",
            st.detail
        );
        assert!(
            n.acted.contains(&TcpAction::Close(c)) || n.actions().contains(&TcpAction::Close(c)),
            "{what}: closed"
        );
        assert_eq!(n.contacts(), contacts, "{what}");
        assert_eq!(n.core.clock(), clock, "{what}");
    }
}

#[test]
fn journal_since_older_than_the_journal_keeps_is_404() {
    let mut n = with_peer_conn(0, 1);
    n.exec = Executor::new(Box::new(MemoryStore::with_keep(3)));
    n.core.set_journal(n.store().journal_id().unwrap(), 0);
    let id = n.store().journal_id().unwrap();
    n.client(2);
    for i in 0..10 {
        n.send(2, &client_update("bob", &format!("c{i}"), "1"));
    }
    n.send(2, &[BARRIER]);
    assert_eq!(n.read(2), BARRIER_OK);
    n.send(1, &journal_since(id, 1, 10));
    let st = status_frame(&n.read(1));
    assert_eq!((st.status, st.request), (404, 19), "{}", st.detail);
    // What it still holds is served.
    n.accept(3, PEER);
    n.send(3, &hello(1, "peer"));
    n.send(3, &journal_since(id, 8, 10));
    assert_eq!(&n.read(3)[..5], &[19, 0, 0, 0, 2]);
}

/// CursorQuery (14) for journal `id`.
fn cursor_query(id: u64) -> Vec<u8> {
    let mut v = vec![14];
    v.extend(id.to_be_bytes());
    v
}

#[test]
fn a_journal_line_that_comes_twice_is_applied_once() {
    // One peer, two connections for its journal 77 (an old one still delivering after a
    // partition healed, and the new one resending from the cursor).
    let mut n = with_peer_conn(0, 1);
    n.accept(2, PEER);
    n.send(2, &hello(1, "peer"));
    for c in [1, 2] {
        n.send(c, &cursor_query(77));
        assert_eq!(n.read(c), [14, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    n.send(1, &journal_update(1, 5, "u", "c", "1"));
    n.send(1, &journal_update(2, 6, "u", "d", "1"));
    // Lines 1 and 2 again on the other connection: copies by line number, not applied
    // (the second even carries a record that would win, to show it is not merged).
    n.send(2, &journal_update(1, 5, "u", "c", "1"));
    n.send(2, &journal_update(2, 9, "u", "d", "2"));
    n.send(2, &journal_update(3, 7, "u", "e", "1"));
    n.send(2, &[BARRIER]);
    assert_eq!(n.read(2), BARRIER_OK);
    let got: Vec<_> = n.contacts().iter().map(triple).collect();
    assert_eq!(
        got,
        [
            ("u".into(), "c".into(), "1".into()),
            ("u".into(), "d".into(), "1".into()),
            ("u".into(), "e".into(), "1".into())
        ]
    );
    assert_eq!(n.core.stats().duplicate_lines, 2);
    assert_eq!(
        n.store()
            .cursor("journal:000000000000004d")
            .unwrap()
            .map(|c| c.1),
        Some(3)
    );
}
