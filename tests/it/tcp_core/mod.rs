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
//!
//! The harness is here ([`Node`], the bytes) and in `mesh` ([`Mesh`]); the tests are in
//! submodules by topic: `client_role`, `lamport_clock`, `hello`, `bounds`, `links`,
//! `node_list`, `journal` and `auth`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rendezvous::core::tcp::{
    Cidr, ConnId, Peering, TcpAction, TcpBounds, TcpConfig, TcpCore, TcpIdentity,
};
use rendezvous::store::{Contact, Executor, MemoryStore, Store, StoreEvent, StoreRequest, Write};

mod auth;
mod bounds;
mod client_role;
mod hello;
mod journal;
mod lamport_clock;
mod links;
mod mesh;
mod node_list;

use mesh::*;

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

    /// True once the core asked to close `conn`.
    fn closed(&mut self, conn: ConnId) -> bool {
        self.actions();
        self.acted.contains(&TcpAction::Close(conn))
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
