//! Scenario tests of the I/O-free TCP core on a virtual clock: no sockets, no threads, no
//! sleeps.
//!
//! A [`Node`] owns one [`TcpCore`], the store's own request [`Executor`] over a
//! [`MemoryStore`], and a hand-advanced clock (ms). It takes `drain_store()` and carries
//! each request out with that executor (the one the store thread runs), feeding the events
//! back with `handle_store` until the core asks for nothing more. Its fake wire is the test
//! itself: [`Node::read`] plays a reader that takes everything (`output()` + `consumed()`),
//! and not calling it plays a reader that never reads.
//!
//! A [`Mesh`] wires several nodes together in memory: a `Connect` action becomes
//! `handle_connected` on the opener and `handle_accept` on the target, bytes are shuttled
//! between the two ends, a `Close` on one end closes the other.
//!
//! Expected bytes are built by hand here (not with `rendezvous::wire`), so the wire module
//! is checked too. Source: docs/PROTOCOL.md §8 (the TCP plane).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rendezvous::core::tcp::{
    Cidr, ConnId, Peering, TcpAction, TcpBounds, TcpConfig, TcpCore, TcpIdentity,
};
use rendezvous::store::{Contact, Executor, MemoryStore, Store, StoreEvent, StoreRequest, Write};

// ---------------------------------------------------------------------------------------
// Bytes on the wire, built by hand
// ---------------------------------------------------------------------------------------

const HELLO_LEN: usize = 257;
const CLIENT_RECORD: usize = 533;
const SERVER_RECORD: usize = 537;
const MAX_OUT: usize = 1 << 20;

/// `text` NUL-padded to `width` bytes.
fn pad(text: &str, width: usize) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    assert!(v.len() <= width, "test text too long");
    v.resize(width, 0);
    v
}

fn hello(role: u8, name: &str) -> Vec<u8> {
    let mut v = vec![role];
    v.extend(pad(name, 256));
    v
}

fn fields(user: &str, contact: &str, phone: &str) -> Vec<u8> {
    let mut v = pad(user, 256);
    v.extend(pad(contact, 256));
    v.extend(pad(phone, 20));
    v
}

/// Client-role Update, also a ListAll answer record: `01 [fields 532]`.
fn client_update(user: &str, contact: &str, phone: &str) -> Vec<u8> {
    let mut v = vec![0x01];
    v.extend(fields(user, contact, phone));
    v
}

/// Server-role Update, also an AskForUpdate answer record: `01 [clock][fields 532]`.
fn server_update(clock: u32, user: &str, contact: &str, phone: &str) -> Vec<u8> {
    let mut v = vec![0x01];
    v.extend(clock.to_be_bytes());
    v.extend(fields(user, contact, phone));
    v
}

/// JournalUpdate (13): `0d [line u64][clock u32][fields 532]`, a line of the pusher's journal.
fn journal_update(line: u64, clock: u32, user: &str, contact: &str, phone: &str) -> Vec<u8> {
    let mut v = vec![0x0d];
    v.extend(line.to_be_bytes());
    v.extend(clock.to_be_bytes());
    v.extend(fields(user, contact, phone));
    v
}

fn heartbeat(health: u8, clock: u32) -> Vec<u8> {
    let mut v = vec![0x02, health];
    v.extend(clock.to_be_bytes());
    v
}

fn update_clock(clock: u32) -> Vec<u8> {
    let mut v = vec![0x03];
    v.extend(clock.to_be_bytes());
    v
}

/// The seed's open contacts plane (`--open-contacts`): most scenarios here are the
/// design notes' client role; the authenticated one has its own tests.
fn open() -> TcpConfig {
    TcpConfig {
        open_contacts: true,
        ..TcpConfig::default()
    }
}

const LIST_ALL: u8 = 0x02;
const ASK_FOR_UPDATE: u8 = 0x04;
const BARRIER: u8 = 0x05;

/// The 200 answer to a barrier: `07 00 c8 05 07 "durable"`.
const BARRIER_OK: [u8; 12] = [
    0x07, 0x00, 0xc8, 0x05, 0x07, b'd', b'u', b'r', b'a', b'b', b'l', b'e',
];

/// A status frame read back: (status, request byte, detail).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    status: u16,
    request: u8,
    detail: String,
}

/// Reads one whole status frame that must be all of `buf`.
fn status_frame(buf: &[u8]) -> Status {
    assert!(buf.len() >= 5, "status frame too short: {buf:02x?}");
    assert_eq!(buf[0], 0x07, "not a status frame: {buf:02x?}");
    let n = 5 + usize::from(buf[4]);
    assert_eq!(buf.len(), n, "status frame length: {buf:02x?}");
    Status {
        status: u16::from_be_bytes([buf[1], buf[2]]),
        request: buf[3],
        detail: String::from_utf8(buf[5..].to_vec()).expect("UTF-8 detail"),
    }
}

fn unpad(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    assert!(field[end..].iter().all(|&b| b == 0), "interior NUL");
    String::from_utf8(field[..end].to_vec()).expect("UTF-8 field")
}

/// Reads a ListAll answer (`[count]` + count client records) at the start of `buf`;
/// returns the (user, contact, phone) triples and the bytes after the answer.
fn list_answer(buf: &[u8]) -> (Vec<(String, String, String)>, &[u8]) {
    assert!(buf.len() >= 4, "no count");
    let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let mut rest = &buf[4..];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        assert!(rest.len() >= CLIENT_RECORD, "record {i} of {n} cut short");
        let (rec, more) = rest.split_at(CLIENT_RECORD);
        assert_eq!(rec[0], 0x01, "record {i} does not start with 0x01");
        out.push((
            unpad(&rec[1..257]),
            unpad(&rec[257..513]),
            unpad(&rec[513..533]),
        ));
        rest = more;
    }
    (out, rest)
}

/// Reads an AskForUpdate answer (`[count]` + count server records).
fn full_answer(buf: &[u8]) -> (Vec<Contact>, &[u8]) {
    assert!(buf.len() >= 4, "no count");
    let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let mut rest = &buf[4..];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        assert!(rest.len() >= SERVER_RECORD, "record {i} of {n} cut short");
        let (rec, more) = rest.split_at(SERVER_RECORD);
        assert_eq!(rec[0], 0x01, "record {i} does not start with 0x01");
        out.push(Contact {
            clock: u32::from_be_bytes([rec[1], rec[2], rec[3], rec[4]]),
            username: unpad(&rec[5..261]),
            contact: unpad(&rec[261..517]),
            phone: unpad(&rec[517..537]),
        });
        rest = more;
    }
    (out, rest)
}

fn contact(user: &str, contact: &str, phone: &str, clock: u32) -> Contact {
    Contact {
        username: user.into(),
        contact: contact.into(),
        phone: phone.into(),
        clock,
    }
}

fn triple(c: &Contact) -> (String, String, String) {
    (c.username.clone(), c.contact.clone(), c.phone.clone())
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A client's address (documentation range).
const CLIENT: &str = "203.0.113.10:50000";

// ---------------------------------------------------------------------------------------
// One core with a synchronous store executor
// ---------------------------------------------------------------------------------------

struct Node {
    core: TcpCore,
    /// The store's request executor, over a [`MemoryStore`].
    exec: Executor,
    now: u64,
    /// Every store request the core made, in order.
    log: Vec<StoreRequest>,
    /// Every action the core asked for and [`Node::actions`] took, in order.
    acted: Vec<TcpAction>,
    /// Contacts handed to the core in pages so far.
    contacts_read: usize,
    /// Fail every `Apply` (a broken disk).
    fail_applies: bool,
    /// Hold the store's requests here instead of carrying them out (a slow disk), until
    /// [`Node::release`].
    held: Option<Vec<StoreRequest>>,
}

impl Node {
    fn new(cfg: TcpConfig, clock: u32) -> Node {
        let mut store = MemoryStore::new();
        store
            .apply(&[Write::Clock(clock)], &mut Vec::new())
            .expect("memory store");
        let core = TcpCore::new(cfg, clock, 0).with_journal(
            store.journal_id().expect("journal id"),
            store.journal_head().expect("journal head"),
        );
        Node {
            core,
            exec: Executor::new(Box::new(store)),
            now: 0,
            log: Vec::new(),
            acted: Vec::new(),
            contacts_read: 0,
            fail_applies: false,
            held: None,
        }
    }

    /// A node with the default configuration and `clock`.
    fn plain(clock: u32) -> Node {
        Node::new(open(), clock)
    }

    /// Puts contacts straight into the store (as if merged long ago).
    fn seed(&mut self, contacts: &[Contact]) {
        let batch: Vec<Write> = contacts.iter().cloned().map(Write::Merge).collect();
        self.exec
            .store_mut()
            .apply(&batch, &mut Vec::new())
            .expect("seed");
        // The store had these at start: the core numbers its journal from there.
        let (id, head) = (
            self.store().journal_id().unwrap(),
            self.store().journal_head().unwrap(),
        );
        self.core.set_journal(id, head);
    }

    /// Carries out one request with the store's own executor (as the store thread does),
    /// failing every batch when `fail_applies` is set, and counting the contacts read.
    fn exec(&mut self, req: StoreRequest) -> Option<StoreEvent> {
        if let (true, StoreRequest::Apply { seq, .. }) = (self.fail_applies, &req) {
            return Some(StoreEvent::Failed {
                seq: *seq,
                error: "disk on fire".into(),
            });
        }
        let ev = self.exec.execute(req);
        if let Some(StoreEvent::Page { contacts, .. }) = &ev {
            self.contacts_read += contacts.len();
        }
        ev
    }

    /// The store the executor serves.
    fn store(&self) -> &dyn Store {
        self.exec.store()
    }

    /// Ends the loop turn and runs the store until the core asks for nothing more.
    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            self.core.end_turn();
            let reqs = self.core.drain_store();
            if let Some(held) = &mut self.held {
                held.extend(reqs);
                return;
            }
            if reqs.is_empty() {
                return;
            }
            for r in reqs {
                self.log.push(r.clone());
                if let Some(ev) = self.exec(r) {
                    self.core.handle_store(self.now, ev);
                }
            }
        }
        panic!("the core never stops asking the store");
    }

    /// Carries out the requests held since [`Node::held`] was set, and every one after.
    fn release(&mut self) {
        for r in self.held.take().unwrap_or_default() {
            self.log.push(r.clone());
            if let Some(ev) = self.exec(r) {
                self.core.handle_store(self.now, ev);
            }
        }
        self.settle();
    }

    fn accept(&mut self, conn: ConnId, addr: &str) {
        self.core.handle_accept(self.now, conn, sa(addr));
    }

    /// A client connection with its hello sent.
    fn client(&mut self, conn: ConnId) {
        self.accept(conn, CLIENT);
        self.send(conn, &hello(2, "cli"));
    }

    fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        self.core.handle_data(self.now, conn, bytes);
        self.settle();
    }

    /// Bytes waiting on `conn`, not consumed (a reader that does not read).
    fn pending(&self, conn: ConnId) -> usize {
        self.core.output(conn).len()
    }

    /// Reads everything `conn` has to say, as a reader that keeps up.
    fn read(&mut self, conn: ConnId) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let out = self.core.output(conn).to_vec();
            if out.is_empty() {
                return all;
            }
            self.core.consumed(self.now, conn, out.len());
            self.settle();
            all.extend(out);
        }
    }

    /// The actions the core asks for now.
    fn actions(&mut self) -> Vec<TcpAction> {
        let mut v = Vec::new();
        while let Some(a) = self.core.poll_action() {
            v.push(a);
        }
        self.acted.extend(v.iter().cloned());
        v
    }

    fn advance_to(&mut self, t: u64) {
        assert!(t >= self.now);
        self.now = t;
        self.core.handle_timeout(t);
        self.settle();
    }

    /// Every contact in the store, in (username, contact) order.
    fn contacts(&self) -> Vec<Contact> {
        let mut s = self.store().snapshot().expect("snapshot");
        let mut out = Vec::new();
        while s.next_page(1000, &mut out).expect("page") {}
        out
    }

    fn store_clock(&self) -> u32 {
        self.store().clock().expect("clock")
    }
}

/// A node that accepts role 1 from `allowed`.
fn node_allowing(allowed: &str, clock: u32) -> Node {
    Node::new(
        TcpConfig {
            peering: Peering {
                allow_peers: vec![Cidr::parse(allowed).expect("cidr")],
                ..Peering::default()
            },
            ..open()
        },
        clock,
    )
}

/// A peer's address inside 198.51.100.0/24.
const PEER: &str = "198.51.100.7:40001";

/// A node at `clock` with a server-role connection `conn` from [`PEER`], hello done.
fn with_peer_conn(clock: u32, conn: ConnId) -> Node {
    let mut n = node_allowing("198.51.100.0/24", clock);
    n.accept(conn, PEER);
    n.send(conn, &hello(1, "peer"));
    assert_eq!(
        n.pending(conn),
        0,
        "the acceptor says nothing after a hello"
    );
    n
}

// ---------------------------------------------------------------------------------------
// Client role: hello, Update, ListAll, Barrier
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Lamport clock
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Hello
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Slow readers and bounds
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Several cores wired together
// ---------------------------------------------------------------------------------------

struct MeshNode {
    node: Node,
    config: TcpConfig,
    /// False: connections to this node fail.
    reachable: bool,
}

impl std::ops::Deref for MeshNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl std::ops::DerefMut for MeshNode {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

/// One TCP connection between two nodes.
struct Pipe {
    opener: (usize, ConnId),
    acceptor: (usize, ConnId),
    /// Bytes from the opener are not delivered (the acceptor does not read).
    hold_to_acceptor: bool,
    /// Bytes from the acceptor are not delivered (the opener does not read).
    hold_to_opener: bool,
}

struct Mesh {
    nodes: Vec<MeshNode>,
    pipes: Vec<Pipe>,
    next_conn: ConnId,
    now: u64,
    /// (time, opener, peer index, connected)
    connects: Vec<(u64, usize, usize, bool)>,
    /// New pipes hold the acceptor's answers (to cut a link before its catch-up).
    hold_new_answers: bool,
}

fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + i as u8)), 4747)
}

impl Mesh {
    /// `n` nodes; node `a` has `--peer` node `b` for each `(a, b)` in `links`.
    fn new(n: usize, links: &[(usize, usize)]) -> Mesh {
        let nodes = (0..n)
            .map(|i| {
                let config = TcpConfig {
                    identity: TcpIdentity {
                        name: format!("node{i}"),
                        ..TcpIdentity::default()
                    },
                    peering: Peering {
                        peers: links
                            .iter()
                            .filter(|l| l.0 == i)
                            .map(|l| node_addr(l.1))
                            .collect(),
                        // The operator of the accepting side lets its peers in.
                        allow_peers: links
                            .iter()
                            .filter(|l| l.1 == i)
                            .map(|l| Cidr::parse(&node_addr(l.0).ip().to_string()).unwrap())
                            .collect(),
                        ..Peering::default()
                    },
                    ..open()
                };
                MeshNode {
                    node: Node::new(config.clone(), 0),
                    config,
                    reachable: true,
                }
            })
            .collect();
        Mesh {
            nodes,
            pipes: Vec::new(),
            next_conn: 1000,
            now: 0,
            connects: Vec::new(),
            hold_new_answers: false,
        }
    }

    /// Replaces node `i` (before anything ran) with one at `clock` and a changed config.
    fn set_node(&mut self, i: usize, clock: u32, f: impl FnOnce(&mut TcpConfig)) {
        let mut cfg = self.nodes[i].config.clone();
        f(&mut cfg);
        self.nodes[i].config = cfg.clone();
        self.nodes[i].node = Node::new(cfg, clock);
    }

    fn conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    fn close_pipe(&mut self, at: (usize, ConnId)) {
        let Some(p) = self
            .pipes
            .iter()
            .position(|p| p.opener == at || p.acceptor == at)
        else {
            return;
        };
        let p = self.pipes.remove(p);
        let now = self.now;
        for (i, c) in [p.opener, p.acceptor] {
            self.nodes[i].core.handle_closed(now, c);
        }
    }

    /// One round of actions and bytes; false when nothing happened.
    fn step(&mut self) -> bool {
        let mut moved = false;
        let now = self.now;
        for i in 0..self.nodes.len() {
            for action in self.nodes[i].actions() {
                moved = true;
                match action {
                    TcpAction::DirectoryDigest { tag } => {
                        self.nodes[i]
                            .core
                            .handle_directory_digest(now, tag, 0, &[0; 64]);
                    }
                    // No UDP plane here: an empty directory, records go nowhere.
                    TcpAction::DirectoryPage { tag, .. } => {
                        self.nodes[i]
                            .core
                            .handle_directory_page(tag, &[], 0, None, false);
                    }
                    TcpAction::DirectoryIds { tag } => {
                        self.nodes[i].core.handle_directory_ids(now, tag, &[]);
                    }
                    TcpAction::PeerRecord { .. }
                    | TcpAction::Forward { .. }
                    | TcpAction::VerifyClient { .. } => {}
                    TcpAction::Connect { peer, addr, .. } => {
                        let j = (0..self.nodes.len())
                            .find(|&j| node_addr(j) == addr)
                            .expect("a node at that address");
                        if self.nodes[j].reachable {
                            let (co, ca) = (self.conn_id(), self.conn_id());
                            self.nodes[i].core.handle_connected(now, peer, co);
                            let from = SocketAddr::new(node_addr(i).ip(), 40_000 + co as u16);
                            self.nodes[j].core.handle_accept(now, ca, from);
                            self.pipes.push(Pipe {
                                opener: (i, co),
                                acceptor: (j, ca),
                                hold_to_acceptor: false,
                                hold_to_opener: self.hold_new_answers,
                            });
                            self.connects.push((now, i, peer, true));
                        } else {
                            self.nodes[i].core.handle_connect_failed(now, peer);
                            self.connects.push((now, i, peer, false));
                        }
                    }
                    TcpAction::Close(c) => {
                        if self
                            .pipes
                            .iter()
                            .any(|p| p.opener == (i, c) || p.acceptor == (i, c))
                        {
                            self.close_pipe((i, c));
                        } else {
                            self.nodes[i].core.handle_closed(now, c);
                        }
                    }
                }
            }
        }
        for n in &mut self.nodes {
            n.settle();
        }
        for k in 0..self.pipes.len() {
            let p = &self.pipes[k];
            let dirs = [
                (p.opener, p.acceptor, p.hold_to_acceptor),
                (p.acceptor, p.opener, p.hold_to_opener),
            ];
            for ((si, sc), (di, dc), hold) in dirs {
                if hold {
                    continue;
                }
                let bytes = self.nodes[si].core.output(sc).to_vec();
                if bytes.is_empty() {
                    continue;
                }
                moved = true;
                self.nodes[si].core.consumed(now, sc, bytes.len());
                self.nodes[di].core.handle_data(now, dc, &bytes);
            }
        }
        for n in &mut self.nodes {
            n.settle();
        }
        moved
    }

    fn run(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the mesh never settles");
    }

    fn advance_to(&mut self, t: u64) {
        self.now = t;
        for n in &mut self.nodes {
            n.advance_to(t);
        }
        self.run();
    }

    /// Runs every deadline up to `t`, then `t`.
    fn run_until(&mut self, t: u64) {
        self.advance_to(self.now);
        for _ in 0..100_000 {
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.core.poll_timeout())
                .min();
            match next {
                Some(d) if d <= t => self.advance_to(d.max(self.now)),
                _ => break,
            }
            if self.now == t {
                break;
            }
        }
        self.advance_to(t);
    }

    /// Cuts every connection (both ends see it closed).
    fn cut_all(&mut self) {
        while let Some(p) = self.pipes.first() {
            let at = p.opener;
            self.close_pipe(at);
        }
    }

    /// The pipe that node `a` opened to node `b`.
    fn link(&mut self, a: usize, b: usize) -> &mut Pipe {
        self.pipes
            .iter_mut()
            .find(|p| p.opener.0 == a && p.acceptor.0 == b)
            .expect("link up")
    }

    /// A client connection on node `i`, hello done.
    fn client(&mut self, i: usize) -> ConnId {
        let c = self.conn_id();
        self.nodes[i].now = self.now;
        self.nodes[i].client(c);
        c
    }

    fn write(&mut self, i: usize, conn: ConnId, user: &str, contact: &str, phone: &str) {
        self.nodes[i].send(conn, &client_update(user, contact, phone));
    }
}

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

// ---------------------------------------------------------------------------------------
// Federation: node list sync, mesh, node-key proof, JournalSince, bad peer input
// (docs/PROTOCOL.md §8, seeds 000 and 004)
// ---------------------------------------------------------------------------------------

use rendezvous::core::tcp::NodeSigner;
use rendezvous::federation::nodelist::NodeList;
use rendezvous::wire::tcp::nodelist::NodeEntry;
use ring::signature::KeyPair;

/// A node identity for tests: an Ed25519 key, and node `i`'s entry (location
/// [`node_addr`]`(i)`, uid `[i + 1; 16]`).
fn identity(i: usize) -> (NodeEntry, NodeSigner) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let entry = NodeEntry::new(
        [i as u8 + 1; 16],
        1,
        format!("node{i}"),
        node_addr(i).to_string(),
        key.public_key().as_ref().to_vec(),
    )
    .unwrap();
    let signer = NodeSigner(std::sync::Arc::new(move |m: &[u8]| {
        key.sign(m).as_ref().to_vec()
    }));
    (entry, signer)
}

/// A mesh of `n` nodes with identities, `links` as [`Mesh::new`], `no_mesh` for all.
fn identified_mesh(n: usize, links: &[(usize, usize)], no_mesh: bool) -> Mesh {
    let mut m = Mesh::new(n, links);
    for i in 0..n {
        let (entry, signer) = identity(i);
        m.set_node(i, 0, |c| {
            c.identity.node = Some(entry);
            c.identity.signer = Some(signer);
            c.peering.no_mesh = no_mesh;
            c.identity.seed = [i as u8; 32];
        });
    }
    m
}

#[test]
fn node_lists_converge_along_a_line_and_learned_servers_are_meshed() {
    // 0 <-> 1 <-> 2: node 0 and node 2 learn of each other through node 1.
    let mut m = identified_mesh(3, &[(0, 1), (1, 0), (1, 2), (2, 1)], false);
    m.run_until(20_000);
    let hashes: Vec<_> = m.nodes.iter().map(|n| n.core.node_list().hash()).collect();
    assert_eq!(m.nodes[0].core.node_list().len(), 3);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "node lists differ");
    // Node 0 connected to node 2 (and back), proving its node key there: node 2 admits
    // node 0's address only because the node list knows it.
    let learned: Vec<_> = m.pipes.iter().map(|p| (p.opener.0, p.acceptor.0)).collect();
    assert!(learned.contains(&(0, 2)), "{learned:?}");
    assert!(learned.contains(&(2, 0)), "{learned:?}");
    assert_eq!(m.nodes[2].core.stats().errors, 0);
    assert!(m.nodes[0].core.link_up(1), "the learned link is up");
}

#[test]
fn no_mesh_keeps_to_configured_peers_but_node_lists_still_converge() {
    let mut m = identified_mesh(3, &[(0, 1), (1, 0), (1, 2), (2, 1)], true);
    m.run_until(20_000);
    let hashes: Vec<_> = m.nodes.iter().map(|n| n.core.node_list().hash()).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "node lists differ");
    assert_eq!(m.nodes[0].core.node_list().len(), 3);
    assert!(m
        .pipes
        .iter()
        .all(|p| p.opener.0.abs_diff(p.acceptor.0) == 1));
}

/// A connection from `from` to node 1 of a 2-node identified mesh (node 1 knows node 0
/// through the node list), hello sent.
fn known_node_conn(m: &mut Mesh, from: &str) -> ConnId {
    let c = m.conn_id();
    m.nodes[1].accept(c, from);
    m.nodes[1].send(c, &hello(1, "stranger"));
    c
}

/// `[21][len][entry][sig_len][sig]` over `nonce` with `sign`.
fn proof(entry: &NodeEntry, nonce: &[u8], sign: &NodeSigner) -> Vec<u8> {
    let e = entry.to_bytes();
    let mut msg = b"rendezvous node auth v1".to_vec();
    msg.extend(nonce);
    msg.extend(&e);
    let sig = (sign.0)(&msg);
    let mut body = e;
    body.push(sig.len() as u8);
    body.extend(sig);
    let mut v = vec![21];
    v.extend((body.len() as u16).to_be_bytes());
    v.extend(body);
    v
}

#[test]
fn a_server_known_only_from_the_node_list_must_prove_its_node_key() {
    let mut m = identified_mesh(2, &[], true);
    let entry0 = m.nodes[0].config.identity.node.clone().unwrap();
    // A fresh node 1 that trusts only 198.51.100.0/24 by configuration learns of node 0
    // from a peer there.
    m.set_node(1, 0, |c| {
        c.peering.peers.clear();
        c.peering.allow_peers = vec![Cidr::parse("198.51.100.0/24").unwrap()];
    });
    let t = m.conn_id();
    m.nodes[1].accept(t, PEER);
    m.nodes[1].send(t, &hello(1, "teacher"));
    m.nodes[1].send(
        t,
        &NodeList::from_entries(vec![entry0.clone()])
            .list_frame()
            .to_vec()
            .unwrap(),
    );
    assert_eq!(m.nodes[1].read(t)[0], 12, "a diff answers the list");
    assert!(m.nodes[1].core.node_list().get(entry0.uid()).is_some());

    // A command before the proof: 401, closed.
    let c = known_node_conn(&mut m, "192.0.2.1:50000");
    m.nodes[1].send(c, &[ASK_FOR_UPDATE]);
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (401, ASK_FOR_UPDATE));
    // The start of a node list (up to 3.2 MB) before the proof: 401 at its first bytes,
    // nothing buffered (it once held the partial frame, 3.1 MB per connection).
    let c = known_node_conn(&mut m, "192.0.2.1:50004");
    assert_eq!(
        m.nodes[1].core.read_budget(c),
        64 * 1024,
        "no node-list budget"
    );
    m.nodes[1].send(c, &[11, 0, 0, 0x0f, 0xff]);
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (401, 11));
    assert_eq!(
        m.nodes[1].core.read_budget(c),
        0,
        "refused: nothing more is read"
    );

    // A proof signed by another key: 401.
    let c = known_node_conn(&mut m, "192.0.2.1:50001");
    m.nodes[1].send(c, &[20]);
    let nonce = m.nodes[1].read(c);
    assert_eq!((nonce[0], nonce.len()), (20, 33));
    let (_, other) = identity(0);
    m.nodes[1].send(c, &proof(&entry0, &nonce[1..], &other));
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (401, 21), "{}", st.detail);

    // The right key: 200, then the connection works.
    let signer0 = m.nodes[0].config.identity.signer.clone().unwrap();
    let c = known_node_conn(&mut m, "192.0.2.1:50002");
    m.nodes[1].send(c, &[20]);
    let nonce = m.nodes[1].read(c);
    m.nodes[1].send(c, &proof(&entry0, &nonce[1..], &signer0));
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (200, 21), "{}", st.detail);
    m.nodes[1].send(c, &[BARRIER]);
    assert_eq!(m.nodes[1].read(c), BARRIER_OK);

    // A replayed proof (the nonce is spent): 400.
    m.nodes[1].send(c, &proof(&entry0, &nonce[1..], &signer0));
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!(st.status, 400);

    // An address neither configured nor in the node list: 403 at the hello.
    let c = known_node_conn(&mut m, "192.0.2.77:50003");
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (403, 0));
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
fn bad_node_list_input_is_400_and_changes_nothing() {
    let (entry, _) = identity(5);
    for (what, frame) in [
        ("hash of 63 bytes", [vec![10, 63], vec![1; 63]].concat()),
        ("hash of 65 bytes", [vec![10, 65], vec![1; 65]].concat()),
        ("hash of 0 bytes", vec![10, 0]),
        ("duplicate uids", {
            let mut e2 = entry.to_bytes();
            e2[16..24].copy_from_slice(&2u64.to_be_bytes()); // same uid, version 2
            [vec![11, 0, 0, 0, 2], entry.to_bytes(), e2].concat()
        }),
        (
            "an unsolicited diff",
            [vec![12, 0, 0, 0, 1], entry.to_bytes()].concat(),
        ),
    ] {
        let mut n = with_peer_conn(0, 1);
        let before = n.core.node_list().hash();
        n.send(1, &frame);
        let st = status_frame(&n.read(1));
        assert_eq!(
            (st.status, st.request),
            (400, frame[0]),
            "{what}: {}",
            st.detail
        );
        assert_eq!(n.core.node_list().hash(), before, "{what}");
        assert_eq!(n.core.node_list().len(), 0, "{what}");
    }
}

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

#[test]
fn the_node_list_is_kept_in_the_store_and_read_back_at_start() {
    // Node 0 learns node 1 from a peer; the list goes to the store with that batch.
    let (e0, s0) = identity(0);
    let (e1, _) = identity(1);
    let cfg = TcpConfig {
        identity: TcpIdentity {
            node: Some(e0.clone()),
            signer: Some(s0),
            ..TcpIdentity::default()
        },
        peering: Peering {
            allow_peers: vec![Cidr::parse("198.51.100.0/24").unwrap()],
            ..Peering::default()
        },
        ..open()
    };
    let mut n = Node::new(cfg.clone(), 0);
    n.accept(1, PEER);
    n.send(1, &hello(1, "peer"));
    n.send(
        1,
        &NodeList::from_entries(vec![e1.clone()])
            .list_frame()
            .to_vec()
            .unwrap(),
    );
    n.read(1);
    let stored = n.store().node_list().unwrap();
    let want = NodeList::from_entries(vec![e0.clone(), e1.clone()]);
    assert_eq!(stored, want.canonical_bytes());

    // A restart reads it back: the list is whole at once, and node 1 is linked to. An
    // older entry of our own uid in the stored bytes is replaced by the configured one.
    let mut newer = cfg.clone();
    let e0v2 = NodeEntry::new(
        *e0.uid(),
        2,
        "node0",
        e0.location(),
        e0.public_key().to_vec(),
    )
    .unwrap();
    newer.identity.node = Some(e0v2.clone());
    let mut fresh = TcpCore::new(newer, 0, 0).with_nodes(&stored, 0);
    assert_eq!(
        fresh.node_list(),
        &NodeList::from_entries(vec![e0v2, e1.clone()])
    );
    fresh.handle_timeout(0);
    let mut connects = Vec::new();
    while let Some(a) = fresh.poll_action() {
        if let TcpAction::Connect { addr, .. } = a {
            connects.push(addr);
        }
    }
    assert_eq!(connects, [node_addr(1)]);
    // Bytes that are no node list are ignored.
    let junk = TcpCore::new(cfg, 0, 0).with_nodes(&[0, 0, 0, 9, 1], 0);
    assert_eq!(junk.node_list().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Authenticated clients (docs/PROTOCOL.md §8.18): the default contacts plane
// ---------------------------------------------------------------------------------------

/// The client-role proof frame, built by hand: `15 [len u16][cert_len u16][cert][sig_len
/// u16][signature]`.
fn client_proof(cert: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut body = (cert.len() as u16).to_be_bytes().to_vec();
    body.extend(cert);
    body.extend((sig.len() as u16).to_be_bytes());
    body.extend(sig);
    let mut v = vec![0x15];
    v.extend((body.len() as u16).to_be_bytes());
    v.extend(body);
    v
}

/// What a client signs for `nonce`: "rendezvous client auth v1" || nonce.
fn client_signed(nonce: &[u8]) -> Vec<u8> {
    let mut m = b"rendezvous client auth v1".to_vec();
    m.extend(nonce);
    m
}

impl Node {
    /// Carries out the core's certificate checks as the UDP plane would (the full check
    /// of docs/PROTOCOL.md §5.4 at the real time, then the signature); returns how many.
    fn verify_clients(&mut self) -> usize {
        let mut n = 0;
        for a in self.actions() {
            if let TcpAction::VerifyClient {
                conn,
                cert,
                message,
                signature,
            } = a
            {
                n += 1;
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let r = match rendezvous::identity::verify_self_signed(&cert, unix) {
                    Ok(vc) if vc.key.verify(&message, &signature).is_ok() => Ok(vc.fingerprint.0),
                    Ok(_) => Err((401, "bad signature".to_string())),
                    Err(e) => Err((401, e.to_string())),
                };
                let now = self.now;
                self.core.client_verified(now, conn, r);
                self.settle();
            }
        }
        n
    }

    /// True once the core asked to close `conn`.
    fn closed(&mut self, conn: ConnId) -> bool {
        self.actions();
        self.acted.contains(&TcpAction::Close(conn))
    }
}

/// A default (authenticated) node holding alice's contact and two of `owner`'s.
fn authenticated_node(owner: &str) -> Node {
    let mut n = Node::new(TcpConfig::default(), 0);
    n.seed(&[
        contact("alice", "bob", "111", 1),
        contact(owner, "carol", "222", 2),
        contact(owner, "dave", "333", 3),
    ]);
    n
}

#[test]
fn without_a_proof_a_client_gets_401_and_changes_nothing_but_may_ask_the_status() {
    let id = rendezvous::identity::Identity::generate(
        rendezvous::identity::KeyAlgorithm::Ed25519,
        "auth-test",
    )
    .unwrap();
    let mut n = authenticated_node(&id.fingerprint().to_hex());
    let before = n.contacts();
    // An Update before any proof: 401 for its command byte, and close.
    n.client(1);
    n.send(1, &client_update("alice", "bob", "999"));
    let st = status_frame(&n.read(1));
    assert_eq!((st.status, st.request), (401, 0x01), "{st:?}");
    assert!(n.closed(1));
    // A ListAll likewise: no snapshot is taken.
    n.client(2);
    n.send(2, &[LIST_ALL]);
    assert_eq!(status_frame(&n.read(2)).status, 401);
    assert!(!n
        .log
        .iter()
        .any(|r| matches!(r, StoreRequest::Snapshot { .. })));
    // The status needs no proof (a health check).
    n.client(3);
    n.send(3, &[0x06]);
    for a in n.actions() {
        if let TcpAction::DirectoryDigest { tag } = a {
            let now = n.now;
            n.core.handle_directory_digest(now, tag, 0, &[0; 64]);
            n.settle();
        }
    }
    let out = n.read(3);
    assert_eq!(out[0], 0x06, "a status text answer: {out:02x?}");
    assert!(!n.closed(3));
    assert_eq!(n.contacts(), before, "nothing changed");
    assert!(!n
        .log
        .iter()
        .any(|r| matches!(r, StoreRequest::Apply { .. })));
}

#[test]
fn a_client_proves_its_key_and_reads_and_writes_only_its_own_contacts() {
    let id = rendezvous::identity::Identity::generate(
        rendezvous::identity::KeyAlgorithm::Ed25519,
        "auth-test",
    )
    .unwrap();
    let owner = id.fingerprint().to_hex();
    let mut n = authenticated_node(&owner);
    n.client(1);
    n.send(1, &[0x14]);
    let answer = n.read(1);
    assert_eq!(answer.len(), 33, "[20][nonce 32]: {answer:02x?}");
    assert_eq!(answer[0], 0x14);
    assert_eq!(
        &answer[1..17],
        &[0; 16],
        "no node identity: the uid part is zero"
    );
    let sig = id.sign(&client_signed(&answer[1..]));
    // The proof, then a ListAll, an Update of its own and one of alice's, pipelined: the
    // commands after the proof wait for the check.
    let mut bytes = client_proof(id.cert_der(), &sig);
    bytes.push(LIST_ALL);
    bytes.extend(client_update(&owner, "erin", "444"));
    bytes.push(BARRIER);
    n.send(1, &bytes);
    assert_eq!(n.pending(1), 0, "nothing before the check");
    assert!(!n
        .log
        .iter()
        .any(|r| matches!(r, StoreRequest::Snapshot { .. })));
    assert_eq!(n.verify_clients(), 1);
    let out = n.read(1);
    let ok_len = 5 + usize::from(out[4]);
    let ok = status_frame(&out[..ok_len]);
    assert_eq!((ok.status, ok.request), (200, 0x15));
    assert_eq!(ok.detail, format!("authenticated as {owner}"));
    // Its own two contacts only, then the barrier's 200.
    let rest = &out[ok_len..];
    assert_eq!(
        &rest[..4],
        &[0, 0, 0, 2][..],
        "count 2: {:02x?}",
        &rest[..4]
    );
    assert_eq!(
        &rest[4..4 + CLIENT_RECORD],
        &client_update(&owner, "carol", "222")[..]
    );
    let second = &rest[4 + CLIENT_RECORD..4 + 2 * CLIENT_RECORD];
    assert_eq!(second, &client_update(&owner, "dave", "333")[..]);
    assert_eq!(&rest[4 + 2 * CLIENT_RECORD..], &BARRIER_OK[..]);
    assert!(n
        .contacts()
        .iter()
        .any(|c| c.username == owner && c.contact == "erin" && c.phone == "444"));
    assert!(n.log.iter().any(|r| matches!(
        r,
        StoreRequest::Snapshot { owner: Some(o), .. } if *o == owner
    )));
    // Someone else's contact: 403, close, nothing written.
    let before = n.contacts();
    n.send(1, &client_update("alice", "bob", "999"));
    let st = status_frame(&n.read(1));
    assert_eq!((st.status, st.request), (403, 0x01), "{st:?}");
    assert!(n.closed(1));
    assert_eq!(n.contacts(), before);
}

#[test]
fn a_bad_proof_is_401_and_a_proof_without_a_challenge_is_400() {
    let id = rendezvous::identity::Identity::generate(
        rendezvous::identity::KeyAlgorithm::EcdsaP256,
        "auth-test",
    )
    .unwrap();
    let mut n = authenticated_node(&id.fingerprint().to_hex());
    // Signed over another nonce (a replayed proof from another connection).
    n.client(1);
    n.send(1, &[0x14]);
    let nonce = n.read(1);
    let mut other = nonce[1..].to_vec();
    other[31] ^= 1;
    let mut bytes = client_proof(id.cert_der(), &id.sign(&client_signed(&other)));
    bytes.push(LIST_ALL);
    n.send(1, &bytes);
    assert_eq!(n.verify_clients(), 1);
    let st = status_frame(&n.read(1));
    assert_eq!((st.status, st.request), (401, 0x15), "{st:?}");
    assert!(n.closed(1));
    // A proof with no challenge before it: refused at once, nothing to check.
    n.client(2);
    n.send(2, &client_proof(id.cert_der(), &[1; 64]));
    assert_eq!(n.verify_clients(), 0);
    let st = status_frame(&n.read(2));
    assert_eq!((st.status, st.request), (400, 0x15), "{st:?}");
    // Garbage where the certificate belongs: 401 from the check, the same as a bad key.
    n.client(3);
    n.send(3, &[0x14]);
    let nonce = n.read(3);
    let sig = id.sign(&client_signed(&nonce[1..]));
    n.send(3, &client_proof(&[0x30, 0x03, 1, 2, 3], &sig));
    assert_eq!(n.verify_clients(), 1);
    assert_eq!(status_frame(&n.read(3)).status, 401);
    assert!(!n
        .log
        .iter()
        .any(|r| matches!(r, StoreRequest::Apply { .. })));
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

/// Node `i` of `m` lets a peer at [`PEER`] in, which sends it `entries` as its node list.
fn teach(m: &mut Mesh, i: usize, entries: Vec<NodeEntry>) {
    let t = m.conn_id();
    m.nodes[i].accept(t, PEER);
    m.nodes[i].send(t, &hello(1, "teacher"));
    let list = NodeList::from_entries(entries)
        .list_frame()
        .to_vec()
        .unwrap();
    m.nodes[i].send(t, &list);
    assert_eq!(m.nodes[i].read(t)[0], 12, "a diff answers the list");
}

/// An identified mesh where node 1 also lets in a peer at [`PEER`].
fn mesh_with_teacher(links: &[(usize, usize)]) -> Mesh {
    let mut m = identified_mesh(2, links, true);
    m.set_node(1, 0, |c| {
        c.peering
            .allow_peers
            .push(Cidr::parse("198.51.100.0/24").unwrap())
    });
    m
}

/// Node 0's entry, and a stale one for its uid beating it: the same version, and a longer
/// alias (a restart within the second under another `--alias`).
fn own_and_stale(m: &Mesh) -> (NodeEntry, NodeEntry) {
    let own = m.nodes[0].config.identity.node.clone().unwrap();
    let stale = NodeEntry::new(
        *own.uid(),
        own.version(),
        "node0 before its restart",
        own.location(),
        own.public_key(),
    )
    .unwrap();
    assert!(stale > own);
    (own, stale)
}

/// Both lists equal, holding node 0's entry re-issued one version above `stale` (alias,
/// location and key kept), and node 0's store holding its list.
fn assert_outbid(m: &Mesh, own: &NodeEntry, stale: &NodeEntry) {
    let again = NodeEntry::new(
        *own.uid(),
        stale.version() + 1,
        own.alias(),
        own.location(),
        own.public_key(),
    )
    .unwrap();
    for n in &m.nodes {
        assert_eq!(n.core.node_list().get(own.uid()), Some(&again));
    }
    let lists: Vec<_> = m.nodes.iter().map(|n| n.core.node_list().hash()).collect();
    assert_eq!(lists[0], lists[1], "the lists agree");
    let stored = m.nodes[0].store().node_list().unwrap();
    assert_eq!(stored, m.nodes[0].core.node_list().canonical_bytes());
}

/// docs/PROTOCOL.md §8.15 "own uid": node 1 learns, from a peer, a stale entry for node 0's
/// uid that beats node 0's own. Its change spreads on its link to node 0: in that one
/// exchange node 0 re-issues its entry above the stale one and answers it in the diff;
/// both lists agree before any heartbeat, and the next heartbeats find equal hashes.
#[test]
fn a_stale_entry_for_our_uid_is_outbid_within_one_exchange() {
    let mut m = mesh_with_teacher(&[(1, 0)]);
    m.run_until(1_000);
    let (own, stale) = own_and_stale(&m);
    teach(&mut m, 1, vec![stale.clone()]);
    assert_eq!(m.nodes[1].core.node_list().get(own.uid()), Some(&stale));
    m.run(); // no time passes: no heartbeat
    assert_outbid(&m, &own, &stale);
    m.run_until(30_000);
    assert_outbid(&m, &own, &stale);
    assert_eq!(
        m.nodes[0].core.stats().errors + m.nodes[1].core.stats().errors,
        0
    );
}

/// The same as the opener: node 0 links to node 1, which learned the stale entry; node 0's
/// next heartbeat brings it in node 1's diff, node 0 re-issues and spreads its hash at once,
/// and its list carries the re-issued entry to node 1 (no second heartbeat needed).
#[test]
fn a_stale_entry_for_our_uid_in_a_diff_is_outbid_at_once() {
    let mut m = mesh_with_teacher(&[(0, 1)]);
    m.run_until(1_000);
    let (own, stale) = own_and_stale(&m);
    teach(&mut m, 1, vec![stale.clone()]);
    m.run();
    assert_eq!(m.nodes[0].core.node_list().get(own.uid()), Some(&own));
    assert_eq!(m.nodes[1].core.node_list().get(own.uid()), Some(&stale));
    let t = m.nodes[0].core.poll_timeout().expect("a heartbeat is due");
    m.advance_to(t);
    assert_outbid(&m, &own, &stale);
}

/// At start (docs/PROTOCOL.md §8.15 "own entry"): a stored list holding a greater entry
/// for our uid (ours from an earlier run) makes us start one version above it.
#[test]
fn a_greater_stored_own_entry_is_started_above() {
    let (own, _) = identity(0);
    let old = NodeEntry::new(
        *own.uid(),
        own.version() + 41,
        "old",
        "198.51.100.9:1",
        own.public_key(),
    )
    .unwrap();
    let (other, _) = identity(1);
    let stored = NodeList::from_entries(vec![old, other.clone()]).canonical_bytes();
    let cfg = TcpConfig {
        identity: TcpIdentity {
            node: Some(own.clone()),
            ..TcpIdentity::default()
        },
        ..open()
    };
    let core = TcpCore::new(cfg, 0, 0).with_nodes(&stored, 0);
    let mine = core.node_list().get(own.uid()).unwrap();
    assert_eq!(mine.version(), own.version() + 42);
    assert_eq!(
        (mine.alias(), mine.location()),
        (own.alias(), own.location())
    );
    assert_eq!(core.node_list().get(other.uid()), Some(&other));
}
