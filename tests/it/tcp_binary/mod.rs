//! The real `rendezvous` binary's TCP plane on loopback (docs/PROTOCOL.md §8):
//! a client speaking raw bytes written by hand, durability across SIGKILL, two federated
//! servers converging under conflicting writes, a slow AskForUpdate reader that must not
//! grow the server's memory nor block other clients, malformed input of every kind, and
//! the 10 s hello deadline.
//!
//! Every wait has a deadline; the only wall-clock pacing is where the behaviour under test
//! is about time (the hello trickle, the slow reader). Child processes are killed by pid
//! when their owner is dropped, also when a test panics.
//!
//! This file holds the harness (frames written by hand from docs/PROTOCOL.md §8, a raw
//! connection read with deadlines, the servers); the tests are in `seed_client`,
//! `durability`, `federation`, `lamport_clock`, `slow_reader` and `bad_input`.

mod bad_input;
mod durability;
mod federation;
mod lamport_clock;
mod seed_client;
mod slow_reader;

use crate::common::{bin, Server};
use rendezvous::client::contacts::ContactsClient;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
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

/// A ListAll answer: (user, contact, phone) in key order.
type Listing = Vec<(String, String, String)>;
