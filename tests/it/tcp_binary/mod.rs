//! The real `rendezvous` binary's TCP plane on loopback (docs/PROTOCOL.md §8):
//! a client speaking raw bytes written by hand, durability across SIGKILL, two federated
//! servers converging under conflicting writes, a slow AskForUpdate reader that must not
//! grow the server's memory nor block other clients, malformed input of every kind, and
//! the 10 s hello deadline.
//!
//! Every wait has a deadline; the only wall-clock pacing is where the behaviour under test
//! is about time (the hello trickle, the slow reader). Child processes are killed by pid
//! when their owner is dropped, also when a test panics.

use crate::common;

use common::{bin, Server};
use rendezvous::client::contacts::ContactsClient;
use rendezvous::client::Client;
use rendezvous::identity::{Identity, KeyAlgorithm};
use std::collections::BTreeMap;
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Default deadline of one network round trip on a loaded box.
const T: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Raw bytes, written by hand from docs/PROTOCOL.md §8 (not the project's codec)
// ---------------------------------------------------------------------------------------

/// Bytes from hand-written hex (whitespace ignored).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd hex fixture {s:?}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// `text`, then NUL bytes up to `width`.
fn padded(text: &[u8], width: usize) -> Vec<u8> {
    assert!(text.len() <= width, "fixture text longer than its field");
    let mut v = text.to_vec();
    v.resize(width, 0);
    v
}

/// Hello: `[role u8][name 256]` = 257 bytes.
fn hello(role: u8, name: &[u8]) -> Vec<u8> {
    let v = [vec![role], padded(name, 256)].concat();
    assert_eq!(v.len(), 257);
    v
}

/// Client-role Update (and a ListAll record): `01 [user 256][contact 256][phone 20]` = 533.
fn client_update(user: &[u8], contact: &[u8], phone: &[u8]) -> Vec<u8> {
    let v = [
        vec![0x01],
        padded(user, 256),
        padded(contact, 256),
        padded(phone, 20),
    ]
    .concat();
    assert_eq!(v.len(), 533);
    v
}

/// Server-role Update (and an AskForUpdate record):
/// `01 [clock u32][user 256][contact 256][phone 20]` = 537.
fn server_update(clock: u32, user: &[u8], contact: &[u8], phone: &[u8]) -> Vec<u8> {
    let v = [
        vec![0x01],
        clock.to_be_bytes().to_vec(),
        padded(user, 256),
        padded(contact, 256),
        padded(phone, 20),
    ]
    .concat();
    assert_eq!(v.len(), 537);
    v
}

/// HeartBeat: `02 [health u8][clock u32]`.
fn heartbeat(health: u8, clock: u32) -> Vec<u8> {
    [vec![0x02, health], clock.to_be_bytes().to_vec()].concat()
}

const ROLE_SERVER: u8 = 1;
const ROLE_CLIENT: u8 = 2;
const LIST_ALL: u8 = 0x02;
const ASK_FOR_UPDATE: u8 = 0x04;
const BARRIER: u8 = 0x05;

/// A parsed status frame `[0x07][status u16][request u8][detail_len u8][detail]`.
#[derive(Debug)]
struct Status {
    status: u16,
    request: u8,
    detail: String,
    raw: Vec<u8>,
}

/// A TCP connection read with deadlines.
struct Raw {
    s: TcpStream,
    what: String,
}

impl Raw {
    fn connect(addr: SocketAddr, what: impl Into<String>) -> Raw {
        let what = what.into();
        let s = TcpStream::connect_timeout(&addr, T)
            .unwrap_or_else(|e| panic!("{what}: connect {addr}: {e}"));
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(T)).unwrap();
        Raw { s, what }
    }

    fn send(&mut self, b: &[u8]) {
        self.s
            .write_all(b)
            .unwrap_or_else(|e| panic!("{}: write {} bytes: {e}", self.what, b.len()));
    }

    /// Reads into `buf` until full or `deadline`; returns how many bytes came (fewer on
    /// EOF). Panics on a timeout or an error.
    fn read_full(&mut self, buf: &mut [u8], deadline: Instant) -> usize {
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: timed out with {got} of {} bytes",
                self.what,
                buf.len()
            );
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf[got..]) {
                Ok(0) => return got,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!(
                    "{}: read failed after {got} of {} bytes: {e}",
                    self.what,
                    buf.len()
                ),
            }
        }
        got
    }

    fn read_n(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        let got = self.read_full(&mut buf, Instant::now() + timeout);
        assert_eq!(
            got,
            n,
            "{}: connection closed after {got} of {n} bytes: {:02x?}",
            self.what,
            &buf[..got]
        );
        buf
    }

    fn read_u32(&mut self, timeout: Duration) -> u32 {
        let b = self.read_n(4, timeout);
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    fn read_status(&mut self, timeout: Duration) -> Status {
        let deadline = Instant::now() + timeout;
        let mut head = [0u8; 5];
        let got = self.read_full(&mut head, deadline);
        assert_eq!(
            got,
            5,
            "{}: closed before a status frame ({:02x?})",
            self.what,
            &head[..got]
        );
        assert_eq!(
            head[0], 0x07,
            "{}: expected a status frame (0x07), got {:02x?}",
            self.what, head
        );
        let mut detail = vec![0u8; usize::from(head[4])];
        let got = self.read_full(&mut detail, deadline);
        assert_eq!(got, detail.len(), "{}: status detail cut short", self.what);
        Status {
            status: u16::from_be_bytes([head[1], head[2]]),
            request: head[3],
            detail: String::from_utf8_lossy(&detail).into_owned(),
            raw: [head.to_vec(), detail].concat(),
        }
    }

    /// Reads until the server closes; panics if it sends anything or stays open.
    fn expect_closed(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: the server did not close the connection within {timeout:?}",
                self.what
            );
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "{}: unexpected bytes before close: {:02x?}",
                    self.what,
                    &buf[..n]
                ),
                // A reset also means closed (the frame before it was already read).
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("{}: read failed while waiting for close: {e}", self.what),
            }
        }
    }

    /// Reads and discards until the server closes (any bytes allowed).
    fn drain_to_close(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut all = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: the server did not close the connection within {timeout:?} (got {:02x?})",
                self.what,
                all
            );
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("{}: read failed while draining: {e}", self.what),
            }
        }
    }
}

/// Asserts a refusal: a status frame with `status` (and `request`, when given), then close.
fn expect_refusal(c: &mut Raw, status: u16, request: Option<u8>) -> Status {
    let st = c.read_status(T);
    assert_eq!(
        st.status, status,
        "{}: expected status {status}, got {st:?}",
        c.what
    );
    if let Some(r) = request {
        assert_eq!(
            st.request, r,
            "{}: expected request byte {r:#04x}, got {st:?}",
            c.what
        );
    }
    assert!(
        !st.detail.is_empty(),
        "{}: a refusal should say why: {st:?}",
        c.what
    );
    c.expect_closed(T);
    st
}

/// A role-1 connection that has said hello.
fn peer_conn(addr: SocketAddr, what: &str) -> Raw {
    let mut c = Raw::connect(addr, what);
    c.send(&hello(ROLE_SERVER, what.as_bytes()));
    c
}

/// HeartBeat with clock 0 on a role-1 connection: reads the server's clock.
fn read_clock(c: &mut Raw) -> u32 {
    c.send(&heartbeat(1, 0));
    let b = c.read_n(5, T);
    assert_eq!(
        b[0], 0x03,
        "{}: a HeartBeat with clock 0 must be answered with UpdateClock, got {b:02x?}",
        c.what
    );
    u32::from_be_bytes([b[1], b[2], b[3], b[4]])
}

/// AskForUpdate on a role-1 connection: the whole answer, as 537-byte records.
fn ask_for_update(c: &mut Raw, timeout: Duration) -> Vec<Vec<u8>> {
    c.send(&[ASK_FOR_UPDATE]);
    let n = c.read_u32(timeout);
    let body = c.read_n(n as usize * 537, timeout);
    body.chunks(537).map(<[u8]>::to_vec).collect()
}

/// Fields of a 537-byte AskForUpdate record: (clock, user, contact, phone), text unpadded.
fn record_fields(r: &[u8]) -> (u32, String, String, String) {
    assert_eq!(r.len(), 537);
    assert_eq!(r[0], 0x01, "record does not start with Update (0x01)");
    let text = |b: &[u8]| {
        let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
        String::from_utf8(b[..end].to_vec()).expect("UTF-8 field")
    };
    (
        u32::from_be_bytes([r[1], r[2], r[3], r[4]]),
        text(&r[5..261]),
        text(&r[261..517]),
        text(&r[517..537]),
    )
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// `rendezvous serve --listen LISTEN --open-contacts --plain-peers` with `--data-dir DIR`
/// (or `--memory-only`) and `extra`: the scenarios here speak the design notes' client role
/// and the seed's clear-text server role byte for byte (docs/PROTOCOL.md §8.4); the
/// authenticated client role (the default) has its tests in `contacts_auth`, TLS links in
/// `tls`.
fn serve_cmd(listen: &str, data_dir: Option<&Path>, extra: &[String]) -> Command {
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--plain-peers",
        "--open-contacts",
        "--listen",
        listen,
    ]);
    match data_dir {
        Some(d) => {
            cmd.arg("--data-dir").arg(d);
        }
        None => {
            cmd.arg("--memory-only");
        }
    }
    cmd.args(extra);
    cmd
}

/// Starts a server, retrying (at most 5 times) when it exits because its port was in use:
/// with `--listen 127.0.0.1:0` the server takes an ephemeral UDP port and then binds TCP on
/// the same number, which another socket on the box may hold.
fn start(name: &str, make: impl Fn() -> Command) -> Server {
    let mut failures = Vec::new();
    for _ in 0..5 {
        match Server::try_spawn(name, make()) {
            Ok(s) => return s,
            Err(stderr) => {
                let in_use = stderr.iter().any(|l| l.contains("Address already in use"));
                eprintln!("{name}: exited before listening (retrying: {in_use}): {stderr:?}");
                failures.push(stderr);
                if !in_use {
                    break;
                }
            }
        }
    }
    panic!("{name}: could not start: {failures:?}");
}

/// `rendezvous serve --listen 127.0.0.1:0 --memory-only EXTRA...`, started.
fn start_memory(name: &str, extra: &[&str]) -> Server {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    start(name, || serve_cmd("127.0.0.1:0", None, &extra))
}

/// A loopback port free for both TCP and UDP right now.
fn probe_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind probe");
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn assert_alive(s: &mut Server) {
    let pid = s.pid();
    assert!(
        s.proc.wait_exit(Duration::ZERO).is_none(),
        "server (pid {pid}) exited; stderr: {:?}",
        s.proc.stderr_lines()
    );
}

fn contacts(addr: SocketAddr, name: &str) -> ContactsClient {
    ContactsClient::connect(addr, name, T).unwrap_or_else(|e| panic!("{name}: connect: {e}"))
}

/// A value of `Key: N kB` from /proc/PID/status, in KiB.
fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------------------
// 1. A client written from the seed's byte layout
// ---------------------------------------------------------------------------------------

#[test]
fn raw_seed_client() {
    let server = start_memory("server", &[]);
    let mut c = Raw::connect(server.addr, "raw client");

    // 02 "Beloin" + 250 x 00
    let hello_bytes = [hex("02 42 65 6c 6f 69 6e"), vec![0; 250]].concat();
    assert_eq!(hello_bytes.len(), 257);
    // 01 "alice" ... "bob" ... "555"
    let alice = hex("61 6c 69 63 65");
    let bob = hex("62 6f 62");
    let carol = hex("63 61 72 6f 6c");
    let p555 = hex("35 35 35");
    let p777 = hex("37 37 37");
    let upd_bob = [
        hex("01"),
        alice.clone(),
        vec![0; 251],
        bob.clone(),
        vec![0; 253],
        p555.clone(),
        vec![0; 17],
    ]
    .concat();
    let upd_carol = [
        hex("01"),
        alice.clone(),
        vec![0; 251],
        carol.clone(),
        vec![0; 251],
        p777.clone(),
        vec![0; 17],
    ]
    .concat();
    assert_eq!(upd_bob.len(), 533);
    assert_eq!(upd_bob, client_update(b"alice", b"bob", b"555"));
    assert_eq!(upd_carol, client_update(b"alice", b"carol", b"777"));

    c.send(&hello_bytes);
    // Written in reverse key order: the answer must still be ordered by (user, contact).
    c.send(&upd_carol);
    c.send(&upd_bob);
    c.send(&[LIST_ALL]);
    c.send(&[BARRIER]);

    let expected = [hex("00 00 00 02"), upd_bob, upd_carol].concat();
    let got = c.read_n(expected.len(), T);
    assert_eq!(
        got.len(),
        4 + 2 * 533,
        "ListAll answer has the wrong length"
    );
    assert_eq!(&got[..4], &hex("00 00 00 02")[..], "ListAll count");
    assert!(
        got == expected,
        "ListAll answer differs from the hand-written bytes; first difference at byte {}",
        got.iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(0)
    );

    let st = c.read_status(T);
    assert_eq!(
        &st.raw[..4],
        &hex("07 00 c8 05")[..],
        "barrier answer {st:?}"
    );
    assert_eq!(st.status, 200);
    assert_eq!(st.request, 5);
    assert_eq!(st.raw.len(), 5 + usize::from(st.raw[4]));

    // A second ListAll after an overwrite: the newer phone wins.
    c.send(&client_update(b"alice", b"bob", b"999"));
    c.send(&[LIST_ALL]);
    let expected = [
        hex("00 00 00 02"),
        client_update(b"alice", b"bob", b"999"),
        client_update(b"alice", b"carol", b"777"),
    ]
    .concat();
    assert!(
        c.read_n(expected.len(), T) == expected,
        "ListAll after an overwrite"
    );
}

// ---------------------------------------------------------------------------------------
// 2. What a barrier confirmed survives SIGKILL
// ---------------------------------------------------------------------------------------

#[test]
fn crash_safety() {
    const N: usize = 2000;
    let tmp = tempfile::Builder::new()
        .prefix("rdv-crash-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path().join("data");
    let extra = vec!["--allow-peer".to_string(), "127.0.0.1/32".to_string()];
    let mut server = start("server-1", || serve_cmd("127.0.0.1:0", Some(&dir), &extra));

    let started = Instant::now();
    let mut expected: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut w = contacts(server.addr, "writer");
    let mut writes = 0u32;
    // N distinct keys; the first quarter is written twice, the later value must win.
    for i in 0..N {
        let (u, c) = (format!("user{:03}", i % 97), format!("contact{i:05}"));
        let p = format!("1{i:010}");
        w.update(&u, &c, &p).expect("update");
        writes += 1;
        expected.insert((u, c), p);
    }
    for i in 0..N / 4 {
        let (u, c) = (format!("user{:03}", i % 97), format!("contact{i:05}"));
        let p = format!("2{i:010}");
        w.update(&u, &c, &p).expect("update");
        writes += 1;
        expected.insert((u, c), p);
    }
    w.barrier().expect("barrier");
    let wrote = started.elapsed();
    // The barrier answered: everything is durable. Crash now, without any warning.
    let pid = server.pid();
    server.proc.kill();
    drop(w);
    eprintln!("crash_safety: {writes} updates + barrier in {wrote:.2?}; SIGKILLed pid {pid}");

    let restarted = Instant::now();
    let server = start("server-2", || serve_cmd("127.0.0.1:0", Some(&dir), &extra));
    let mut r = contacts(server.addr, "reader");
    let listed = r.list_all().expect("list after restart");
    eprintln!(
        "crash_safety: restart + ListAll of {} in {:.2?}",
        listed.len(),
        restarted.elapsed()
    );
    assert_eq!(listed.len(), N, "contacts after the crash");
    let got: BTreeMap<(String, String), String> =
        listed.into_iter().map(|(u, c, p)| ((u, c), p)).collect();
    assert_eq!(got.len(), N, "duplicate keys in ListAll");
    for (k, v) in &expected {
        assert_eq!(got.get(k), Some(v), "contact {k:?} after the crash");
    }
    // The Lamport clock survived too: it is at least the number of local writes.
    let mut p = peer_conn(server.addr, "clock-probe");
    let clock = read_clock(&mut p);
    assert!(
        clock >= writes,
        "clock after restart is {clock}, below the {writes} writes made before the crash"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Two federated servers converge under conflicting concurrent writes
// ---------------------------------------------------------------------------------------

type Listing = Vec<(String, String, String)>;

/// Reads a server's clock over and over (HeartBeat with clock 0) until `stop`; asserts it
/// never decreases. Returns every value read. A connection lost after `stop` (the test
/// ended, maybe by a panic, and its servers were killed) ends it quietly.
fn watch_clocks(
    addr: SocketAddr,
    name: &str,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
) -> thread::JoinHandle<Vec<u32>> {
    let name = name.to_string();
    thread::spawn(move || {
        let mut c = peer_conn(addr, &name);
        c.s.set_read_timeout(Some(T)).unwrap();
        let mut seen: Vec<u32> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut b = [0u8; 5];
            let r =
                c.s.write_all(&heartbeat(1, 0))
                    .and_then(|()| c.s.read_exact(&mut b));
            if let Err(e) = r {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                panic!("{name}: HeartBeat round trip failed: {e}");
            }
            assert_eq!(b[0], 0x03, "{name}: not an UpdateClock: {b:02x?}");
            let clock = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
            if let Some(&last) = seen.last() {
                assert!(
                    clock >= last,
                    "{name}: the Lamport clock went back from {last} to {clock}"
                );
            }
            seen.push(clock);
            reads.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

/// Sets the flag when dropped (also while unwinding from a panic).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn two_servers_converge() {
    const SHARED: usize = 200;
    const OWN: usize = 200;
    const ROUNDS: usize = 5;
    let allow = ["--allow-peer".to_string(), "127.0.0.1/32".to_string()];

    // A on an ephemeral port, peering with B's (probed) port; then B on that port, peering
    // with A. Writes start as soon as both listen.
    let (a, b) = {
        let mut attempt = 0;
        loop {
            attempt += 1;
            assert!(attempt <= 5, "could not start two peered servers");
            let port_b = probe_port();
            let addr_b = format!("127.0.0.1:{port_b}");
            let mut extra = allow.to_vec();
            extra.extend(["--peer".to_string(), addr_b.clone()]);
            let a = start("server-A", || serve_cmd("127.0.0.1:0", None, &extra));
            let mut extra = allow.to_vec();
            extra.extend(["--peer".to_string(), a.addr.to_string()]);
            match Server::try_spawn("server-B", serve_cmd(&addr_b, None, &extra)) {
                Ok(b) => break (a, b),
                Err(stderr) => eprintln!("server-B on {addr_b} did not start: {stderr:?}"),
            }
        }
    };
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    // Dropped before the servers: the watchers stop before their servers are killed.
    let _stop_guard = SetOnDrop(Arc::clone(&stop));
    let (reads_a, reads_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let watch_a = watch_clocks(a.addr, "watch-A", Arc::clone(&stop), Arc::clone(&reads_a));
    let watch_b = watch_clocks(b.addr, "watch-B", Arc::clone(&stop), Arc::clone(&reads_b));

    // Each writer: ROUNDS rounds over its keys, a barrier after each. The shared keys
    // conflict (A writes them upwards, B downwards, so either side wins some); the own keys
    // are written by one side only, so their last round must win.
    let writer = |addr: SocketAddr, tag: &'static str| {
        thread::spawn(move || {
            let mut w = contacts(addr, &format!("writer-{tag}"));
            for round in 0..ROUNDS {
                for j in 0..SHARED.max(OWN) {
                    if j < SHARED {
                        let i = if tag == "A" { j } else { SHARED - 1 - j };
                        w.update("shared", &format!("k{i:04}"), &format!("{tag}{round}-{i}"))
                            .expect("update shared");
                    }
                    if j < OWN {
                        w.update(
                            &format!("only{tag}"),
                            &format!("k{j:04}"),
                            &format!("{tag}{round}-{j}"),
                        )
                        .expect("update own");
                    }
                }
                w.barrier().expect("barrier");
            }
        })
    };
    let wa = writer(a.addr, "A");
    let wb = writer(b.addr, "B");
    wa.join().expect("writer A");
    wb.join().expect("writer B");
    let written = started.elapsed();

    // Poll both ListAll answers until equal and complete.
    let want = SHARED + 2 * OWN;
    let last = ROUNDS - 1;
    let complete = |l: &Listing| {
        l.len() == want
            && l.iter().all(|(u, c, p)| {
                let i: usize = c[1..].parse().unwrap();
                match u.as_str() {
                    "shared" => {
                        (0..ROUNDS).any(|r| *p == format!("A{r}-{i}") || *p == format!("B{r}-{i}"))
                    }
                    "onlyA" => *p == format!("A{last}-{i}"),
                    "onlyB" => *p == format!("B{last}-{i}"),
                    _ => false,
                }
            })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut la, mut lb): (Listing, Listing);
    let mut polls = 0;
    loop {
        polls += 1;
        la = contacts(a.addr, "list-A").list_all().expect("list A");
        lb = contacts(b.addr, "list-B").list_all().expect("list B");
        if la == lb && complete(&la) {
            break;
        }
        if Instant::now() >= deadline {
            let only_a: Vec<_> = la.iter().filter(|x| !lb.contains(x)).collect();
            let only_b: Vec<_> = lb.iter().filter(|x| !la.contains(x)).collect();
            panic!(
                "no convergence within 90 s: A lists {} contacts, B lists {} (want {want}); \
                 {} listed by A only (first 5: {:?}); {} listed by B only (first 5: {:?})",
                la.len(),
                lb.len(),
                only_a.len(),
                &only_a[..only_a.len().min(5)],
                only_b.len(),
                &only_b[..only_b.len().min(5)],
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
    let converged = started.elapsed();
    let a_wins = la
        .iter()
        .filter(|(u, _, p)| u == "shared" && p.starts_with('A'))
        .count();

    // The records with their clocks are the same on both (polled with a deadline in case a
    // push is still in flight, though none should be).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pa = peer_conn(a.addr, "ask-A");
    let mut pb = peer_conn(b.addr, "ask-B");
    let (ra, rb) = loop {
        let ra = ask_for_update(&mut pa, T);
        let rb = ask_for_update(&mut pb, T);
        if ra == rb || Instant::now() >= deadline {
            break (ra, rb);
        }
        thread::sleep(Duration::from_millis(200));
    };
    if ra != rb {
        let diff: Vec<_> = ra
            .iter()
            .zip(&rb)
            .filter(|(x, y)| x != y)
            .take(5)
            .map(|(x, y)| (record_fields(x), record_fields(y)))
            .collect();
        panic!(
            "AskForUpdate answers differ: A {} records, B {}; first differences (A, B): {diff:?}",
            ra.len(),
            rb.len()
        );
    }
    assert_eq!(ra.len(), want);
    // AskForUpdate lists what ListAll lists, with clocks.
    let from_records: Listing = ra
        .iter()
        .map(|r| {
            let (_, u, c, p) = record_fields(r);
            (u, c, p)
        })
        .collect();
    assert_eq!(from_records, la, "AskForUpdate and ListAll disagree");
    let max_clock = ra.iter().map(|r| record_fields(r).0).max().unwrap();

    // Let the watchers take a few more readings, then stop them.
    let deadline = Instant::now() + T;
    while (reads_a.load(Ordering::Relaxed) < 20 || reads_b.load(Ordering::Relaxed) < 20)
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let seen_a = watch_a.join().expect("clock watcher A");
    let seen_b = watch_b.join().expect("clock watcher B");
    assert!(
        seen_a.len() >= 20 && seen_b.len() >= 20,
        "too few clock readings"
    );
    let (clock_a, clock_b) = (read_clock(&mut pa), read_clock(&mut pb));
    for (name, clock) in [("A", clock_a), ("B", clock_b)] {
        assert!(
            clock >= max_clock,
            "server {name}'s clock {clock} is below the newest record's clock {max_clock}"
        );
        assert!(
            clock as usize >= ROUNDS * (SHARED + OWN),
            "server {name}'s clock {clock} is below its own {} writes",
            ROUNDS * (SHARED + OWN)
        );
    }
    eprintln!(
        "two_servers_converge: writes {written:.2?}, converged after {converged:.2?} \
         ({polls} polls); shared keys won by A: {a_wins}/{SHARED}; clocks A {clock_a} B \
         {clock_b}, newest record {max_clock}; clock readings: A {} (first {:?}, last {:?}), \
         B {} (first {:?}, last {:?})",
        seen_a.len(),
        seen_a.first(),
        seen_a.last(),
        seen_b.len(),
        seen_b.first(),
        seen_b.last(),
    );
}

// ---------------------------------------------------------------------------------------
// 3b. A durable server whose clock is past 2^31 rejoins its peer after a restart
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
// 4. A slow AskForUpdate reader: bounded server memory, other clients unaffected
// ---------------------------------------------------------------------------------------

const BIG: u32 = 1_000_000;

/// The i-th preloaded record (clock i + 1), in key order.
fn big_record(i: u32, out: &mut [u8; 537]) {
    out.fill(0);
    out[0] = 0x01;
    out[1..5].copy_from_slice(&(i + 1).to_be_bytes());
    let u = format!("user{:04}", i / 1000);
    let c = format!("contact{:04}", i % 1000);
    let p = format!("{i:011}");
    out[5..5 + u.len()].copy_from_slice(u.as_bytes());
    out[261..261 + c.len()].copy_from_slice(c.as_bytes());
    out[517..517 + p.len()].copy_from_slice(p.as_bytes());
}

/// Checks a streamed AskForUpdate answer (after the count) record by record against
/// [`big_record`], whatever the chunking of the reads.
#[derive(Default)]
struct RecordChecker {
    next: u32,
    carry: Vec<u8>,
}

impl RecordChecker {
    fn feed(&mut self, mut bytes: &[u8]) {
        let mut expect = [0u8; 537];
        while !bytes.is_empty() {
            let take = (537 - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < 537 {
                return;
            }
            assert!(self.next < BIG, "more records than the count");
            big_record(self.next, &mut expect);
            if self.carry[..] != expect[..] {
                panic!(
                    "record {} differs: got {:?}, want {:?}",
                    self.next,
                    record_fields(&self.carry),
                    record_fields(&expect)
                );
            }
            self.carry.clear();
            self.next += 1;
        }
    }
}

#[test]
fn slow_reader_bounded_memory() {
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("rdv-slow-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path().join("data");
    let extra = vec!["--allow-peer".to_string(), "127.0.0.1/32".to_string()];
    let mut server = start("server", || serve_cmd("127.0.0.1:0", Some(&dir), &extra));
    let pid = server.pid();

    // Load 1,000,000 contacts as a peer pushing server-role Updates, then a barrier.
    let mut loader = peer_conn(server.addr, "loader");
    loader
        .s
        .set_write_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    {
        let mut w = BufWriter::with_capacity(1 << 20, &loader.s);
        let mut rec = [0u8; 537];
        for i in 0..BIG {
            big_record(i, &mut rec);
            w.write_all(&rec).expect("load write");
        }
        w.write_all(&[BARRIER]).expect("load barrier");
        w.flush().expect("load flush");
    }
    let sent = t0.elapsed();
    let st = loader.read_status(Duration::from_secs(600));
    assert_eq!(st.status, 200, "load barrier: {st:?}");
    assert_eq!(st.request, BARRIER);
    let loaded = t0.elapsed();
    let hwm_load = proc_status_kib(pid, "VmHWM");
    let rss_before = proc_status_kib(pid, "VmRSS");
    eprintln!(
        "slow_reader: 1,000,000 contacts sent in {sent:.2?}, durable (barrier) after \
         {loaded:.2?}; server VmRSS {rss_before} KiB, VmHWM so far {hwm_load} KiB"
    );
    drop(loader);

    // Reset the server's peak RSS so that VmHWM measures the streaming phase alone.
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let hwm_before = proc_status_kib(pid, "VmHWM");
    let baseline = if reset {
        rss_before.max(hwm_before)
    } else {
        hwm_before
    };

    // The slow reader: AskForUpdate, then a trickle.
    let t_stream = Instant::now();
    let mut slow = peer_conn(server.addr, "slow-reader");
    slow.s.set_read_timeout(Some(T)).unwrap();
    slow.send(&[ASK_FOR_UPDATE]);
    let count = slow.read_u32(Duration::from_secs(60));
    assert_eq!(count, BIG, "AskForUpdate count");
    let t_count = t_stream.elapsed();

    // Meanwhile, other clients: an overwrite of a streamed key and a new key, each
    // confirmed by a barrier, and a UDP registration.
    let addr = server.addr;
    let side = thread::spawn(move || -> Vec<(String, Duration)> {
        let mut times = Vec::new();
        let mut c = contacts(addr, "side-client");
        for round in 0..5 {
            let t = Instant::now();
            c.update("user0000", "contact0000", &format!("new{round}"))
                .expect("side update");
            c.update("zzz-side", &format!("k{round}"), "1")
                .expect("side update");
            c.barrier().expect("side barrier");
            times.push((format!("update+barrier #{round}"), t.elapsed()));
        }
        let t = Instant::now();
        let id = Identity::generate(KeyAlgorithm::Ed25519, "side").expect("identity");
        let mut u = Client::new(addr, id, Some("127.0.0.1:0".parse().unwrap())).expect("udp");
        u.register(5, Duration::from_secs(2))
            .expect("UDP registration");
        times.push(("udp register".to_string(), t.elapsed()));
        times
    });

    let mut received: u64 = 4;
    let mut buf = vec![0u8; 16 * 1024];
    let mut stream_bytes: Vec<u8> = Vec::new();
    let trickle_start = Instant::now();
    let trickle_deadline = trickle_start + Duration::from_secs(60);
    while trickle_start.elapsed() < Duration::from_secs(3) || !side.is_finished() {
        assert!(
            Instant::now() < trickle_deadline,
            "the side clients did not finish within 60 s while a reader was slow"
        );
        let n = slow.read_full(&mut buf, Instant::now() + T);
        assert_eq!(n, buf.len(), "stream ended early");
        stream_bytes.extend_from_slice(&buf[..n]);
        received += n as u64;
        thread::sleep(Duration::from_millis(20));
    }
    let trickled = trickle_start.elapsed();
    let side_times = side.join().expect("side clients");
    for (what, d) in &side_times {
        assert!(
            *d < Duration::from_secs(10),
            "{what} took {d:?} while a reader was slow"
        );
    }
    let hwm_mid = proc_status_kib(pid, "VmHWM");

    // Now read the rest fast and check every record against what was loaded: the
    // snapshot predates the side writes, so key 0 keeps its old phone and no extra keys.
    let total = 4 + u64::from(BIG) * 537;
    let mut checker = RecordChecker::default();
    checker.feed(&stream_bytes);
    drop(stream_bytes);
    let t_fast = Instant::now();
    let mut big = vec![0u8; 1 << 20];
    while received < total {
        let want = big.len().min((total - received) as usize);
        let n = slow.read_full(&mut big[..want], Instant::now() + Duration::from_secs(60));
        assert!(n > 0, "stream closed after {received} of {total} bytes");
        checker.feed(&big[..n]);
        received += n as u64;
    }
    assert_eq!(
        (checker.next, checker.carry.len()),
        (BIG, 0),
        "records received"
    );
    let fast = t_fast.elapsed();
    let streamed = t_stream.elapsed();
    // Nothing follows the answer.
    slow.s
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut one = [0u8; 1];
    match slow.s.read(&mut one) {
        Ok(0) => panic!("the server closed the reader's connection after the answer"),
        Ok(_) => panic!(
            "unexpected byte after the AskForUpdate answer: {:#04x}",
            one[0]
        ),
        Err(_) => {}
    }

    let hwm_end = proc_status_kib(pid, "VmHWM");
    let rss_end = proc_status_kib(pid, "VmRSS");
    assert_alive(&mut server);
    let growth = hwm_end.saturating_sub(baseline);
    eprintln!(
        "slow_reader: memory (KiB): after load VmRSS {rss_before}, VmHWM {hwm_load}; peak \
         reset {}; VmHWM at stream start {hwm_before}, after the trickle {hwm_mid}, at the \
         end {hwm_end}; VmRSS at the end {rss_end}; growth while streaming {growth} KiB",
        if reset {
            "ok"
        } else {
            "NOT possible (HWM includes the load)"
        }
    );
    eprintln!(
        "slow_reader: timings: load sent {sent:.2?}, durable {loaded:.2?}; count after \
         {t_count:.2?}; trickle {trickled:.2?}; rest at full speed {fast:.2?}; whole stream \
         {streamed:.2?}; side clients: {side_times:?}; test total {:.2?}",
        t0.elapsed()
    );
    assert!(
        growth < 128 * 1024,
        "server peak RSS grew by {growth} KiB while streaming 1,000,000 contacts to a slow reader"
    );

    // The side writes are visible after the stream.
    let mut p = peer_conn(server.addr, "clock-probe");
    let clock = read_clock(&mut p);
    assert!(
        clock >= BIG + 10,
        "clock {clock} after 1,000,000 loads and 10 writes"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Malformed input: typed refusals, no state change, the server keeps serving
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
// 5b. An exhausted Lamport clock refuses writes (503) instead of wrapping
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

// ---------------------------------------------------------------------------------------
// 6. A hello trickled byte by byte is cut off at 10 s with 408
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
