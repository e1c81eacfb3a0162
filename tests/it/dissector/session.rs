//! The Wireshark dissector `tools/rendezvous.lua` against captures of the real binary.
//!
//! Each test starts `rendezvous serve` on a loopback port, captures that port with `tcpdump`
//! while a session runs, then reads the capture back with
//! `tshark -X lua_script:tools/rendezvous.lua` and checks the decoded fields one by one:
//! every UDP packet type 0-9 (plain and shifted), fingerprints equal to the identities'
//! fingerprints, the lookup answer's address and home alias, the 403 error, the TCP plane's
//! hello, contact names in Updates and records, the status frame 200 after a Barrier, the
//! UpdateClock answering a HeartBeat, directory records, and that no frame of a well-formed
//! session carries a malformed mark; then that a deliberately malformed datagram and a
//! malformed TCP command are marked, and nothing else.
//!
//! Needs root (to capture on `lo`), `tcpdump` and `tshark`. Every wait has a deadline;
//! every process started is stopped by its pid.

use super::{decode_rows, frames_matching, keep, marked_frames, rows, tools_or_skip, tshark, Row};
use crate::common::{Proc, Server};
use rendezvous::client::contacts::ContactsClient;
use rendezvous::client::{decode, Client, Incoming};
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::tcp::answer::{AnswerPiece, AnswerReader, Outcome};
use rendezvous::wire::tcp::{ContactFields, Hello, Role, ServerCommand};
use rendezvous::wire::udp::root::PARAM_TO_SERVER;
use rendezvous::wire::udp::LookupStatus;
use rendezvous::wire::{Fingerprint, PacketType, RootHeader};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server's `--alias`: the home alias in lookup answers and directory records.
const ALIAS: &str = "dissector-test";
/// Deadline for each answer the session waits for.
const T: Duration = Duration::from_secs(5);
/// The relayed event.
const EVENT: &str = "hello through the dissector";

/// The real Unix time, seconds.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A running `tcpdump -i lo ... port P` writing a pcap file.
struct Capture {
    /// The tcpdump process (killed by pid if the test panics before [`Capture::stop`]).
    proc: Proc,
    /// The pcap file it writes.
    path: PathBuf,
}

impl Capture {
    /// Starts capturing UDP and TCP on `port` of `lo` into `path`; returns once tcpdump says
    /// it is listening.
    fn start(path: &Path, port: u16) -> Capture {
        let mut cmd = Command::new("tcpdump");
        // -U and --immediate-mode: every packet reaches the file as it is seen; -B: a
        // 64 MiB kernel buffer (in KiB), so a burst of 64 KiB loopback segments is not
        // dropped ("previous segment not captured" would mark frames malformed); -Z root:
        // keep the privileges to write into a root-owned temporary directory.
        cmd.args([
            "-i",
            "lo",
            "-n",
            "-s",
            "0",
            "-B",
            "65536",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
        ])
        .arg("-w")
        .arg(path)
        .args(["port", &port.to_string()]);
        let mut proc = Proc::spawn("tcpdump", cmd);
        proc.expect_stderr("`listening on`", Duration::from_secs(10), |l| {
            l.contains("listening on")
        });
        Capture {
            proc,
            path: path.to_path_buf(),
        }
    }

    /// Sends a marker datagram (a keepalive marked as sent by a server, which the server
    /// never answers), waits until the file holds it (so everything sent before is in),
    /// then stops tcpdump with SIGINT and waits for it to exit.
    fn stop(mut self, server: SocketAddr) -> PathBuf {
        let marker = format!("dissector-marker-{}-{}", std::process::id(), unix_now());
        let packet = RootHeader {
            params: 0x01,
            shift_len: None,
            packet_type: PacketType::Keepalive,
            signature: &[],
            timestamp: unix_now(),
        }
        .to_vec(marker.as_bytes())
        .expect("marker packet");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("marker socket");
        sock.send_to(&packet, server).expect("send marker");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bytes = std::fs::read(&self.path).unwrap_or_default();
            if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the capture {} never received the marker datagram",
                self.path.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
        let pid = i32::try_from(self.proc.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("pid fits pid_t");
        // A child we spawned and have not reaped yet.
        let sent = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        assert!(sent.is_ok(), "SIGINT to tcpdump: {sent:?}");
        let status = self
            .proc
            .wait_exit(Duration::from_secs(10))
            .expect("tcpdump exits within 10 s of SIGINT");
        assert!(status.success(), "tcpdump exited with {status}");
        keep(&self.path);
        self.path.clone()
    }
}

/// The fields every row of [`decode_rows`] carries.
const FIELDS: &[&str] = &[
    "frame.number",
    "udp.srcport",
    "udp.dstport",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.len",
    "tcp.reassembled_in",
    "rendezvous.type",
    "rendezvous.shift_len",
    "rendezvous.sig_len",
    "rendezvous.timestamp",
    "rendezvous.cert_len",
    "rendezvous.cert.fingerprint",
    "rendezvous.cookie",
    "rendezvous.keepalive",
    "rendezvous.peer",
    "rendezvous.source",
    "rendezvous.destination",
    "rendezvous.event_text",
    "rendezvous.target",
    "rendezvous.lookup.status",
    "rendezvous.addr",
    "rendezvous.port",
    "rendezvous.home",
    "rendezvous.status",
    "rendezvous.request",
    "rendezvous.detail",
    "rendezvous.direction",
    "rendezvous.hello.role",
    "rendezvous.hello.name",
    "rendezvous.command",
    "rendezvous.answer",
    "rendezvous.username",
    "rendezvous.contact",
    "rendezvous.phone",
    "rendezvous.clock",
    "rendezvous.health",
    "rendezvous.count",
    "rendezvous.journal.line",
    "rendezvous.nodelist.hash_len",
    "rendezvous.nonce",
    "rendezvous.dir.kind",
    "rendezvous.dir.fingerprint",
];

/// Waits for the next arrival at `c` matching `pred`, skipping others, until the deadline.
fn wait_for(c: &mut Client, what: &str, pred: impl FnMut(&Incoming) -> bool) -> Incoming {
    crate::common::next_arrival(c, what, T, pred)
}

/// What the UDP session did, for the checks.
struct UdpFacts {
    /// A's fingerprint (Ed25519, plain layout), 64 hex digits.
    fp_a: String,
    /// B's fingerprint (P-256, shifted by 3), 64 hex digits.
    fp_b: String,
    /// A's UDP port.
    port_a: u16,
    /// B's UDP port.
    port_b: u16,
    /// The unregistered socket's port (the 403 goes there).
    port_stranger: u16,
    /// The fingerprint nobody registered, 64 hex digits.
    unknown: String,
}

/// Every UDP packet type: A (Ed25519, plain) and B (P-256, shifted 3) register through the
/// cookie (2, 9, 2, 1); A keeps alive (0), looks B up (5, 6, and 3 to B), looks an unknown
/// fingerprint up (5, 6), relays to B (4 both ways) and fetches (8); a stranger's lookup gets
/// 403 (7).
fn udp_session(server: SocketAddr) -> UdpFacts {
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let id_a = Identity::generate(KeyAlgorithm::Ed25519, "dissector a").expect("identity a");
    let id_b = Identity::generate(KeyAlgorithm::EcdsaP256, "dissector b").expect("identity b");
    let (fp_a, fp_b) = (id_a.fingerprint(), id_b.fingerprint());
    let mut a = Client::new(server, id_a, Some(bind)).expect("socket a");
    let mut b = Client::new(server, id_b, Some(bind)).expect("socket b");
    b.set_shift(Some(3));
    let port_a = a.local_addr().expect("addr a").port();
    let port_b = b.local_addr().expect("addr b").port();

    a.register(3, T).expect("A registers");
    b.register(3, T).expect("B registers");
    a.keepalive().expect("keepalive");
    let (status, home) = a.lookup(fp_b, T).expect("lookup B");
    assert_eq!(home, ALIAS);
    assert!(
        matches!(status, LookupStatus::Online { addr, .. } if addr == b.local_addr().unwrap()),
        "{status:?}"
    );
    wait_for(
        &mut b,
        "punch request naming A",
        |m| matches!(m, Incoming::Punch { peer, .. } if *peer == fp_a),
    );
    let unknown = Fingerprint([0x5a; 32]);
    let (status, _) = a.lookup(unknown, T).expect("lookup unknown");
    assert_eq!(status, LookupStatus::Unknown);
    a.send_event(fp_b, EVENT.as_bytes()).expect("relay");
    wait_for(&mut b, "relayed event from A", |m| match m {
        Incoming::Relay { from, event } => *from == fp_a && event == EVENT.as_bytes(),
        _ => false,
    });
    a.fetch().expect("fetch");

    // A lookup from a socket that never registered: 403.
    let stranger = UdpSocket::bind(bind).expect("stranger socket");
    stranger.set_read_timeout(Some(T)).expect("timeout");
    let lookup = RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: PacketType::Lookup,
        signature: &[],
        timestamp: unix_now(),
    }
    .to_vec(&fp_b.0)
    .expect("lookup packet");
    stranger.send_to(&lookup, server).expect("send lookup");
    let mut buf = [0u8; 1500];
    let (n, _) = stranger.recv_from(&mut buf).expect("403 for the stranger");
    assert!(
        matches!(
            decode(&buf[..n]),
            Incoming::Error {
                status: 403,
                request_type: 5,
                ..
            }
        ),
        "{:?}",
        decode(&buf[..n])
    );
    UdpFacts {
        fp_a: fp_a.to_hex(),
        fp_b: fp_b.to_hex(),
        port_a,
        port_b,
        port_stranger: stranger.local_addr().expect("addr").port(),
        unknown: unknown.to_hex(),
    }
}

/// A blocking role-1 (server) connection that reads answers with a deadline, with the
/// wire's answer codec.
struct Peer {
    /// The connection, with a read timeout of [`T`].
    stream: TcpStream,
    /// What was asked, and the answers' bytes.
    answers: AnswerReader,
    /// Bytes received and not read as answers yet.
    buf: Vec<u8>,
}

impl Peer {
    /// Connects and says hello as server `name` (the server must allow 127.0.0.1).
    fn connect(server: SocketAddr, name: &str) -> Peer {
        let mut stream = TcpStream::connect_timeout(&server, T).expect("connect as a peer");
        stream.set_read_timeout(Some(T)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let mut hello = [0u8; 257];
        Hello {
            role: Role::Server,
            name,
        }
        .emit(&mut hello)
        .expect("hello");
        stream.write_all(&hello).expect("send hello");
        Peer {
            stream,
            answers: AnswerReader::new(),
            buf: Vec::new(),
        }
    }

    /// Sends one command, telling the reader what it asks.
    fn send(&mut self, cmd: ServerCommand<'_>) {
        let mut buf = vec![0u8; cmd.buffer_len()];
        cmd.emit(&mut buf).expect("emit command");
        if let Some(asked) = cmd.asked() {
            self.answers.ask(asked, ()).expect("ask");
        }
        self.stream.write_all(&buf).expect("send command");
    }

    /// Reads the whole answer to the oldest request, handing each piece to `f` (panics at
    /// the read timeout, on a refusal and on bytes that are not the answer due).
    fn answer(&mut self, mut f: impl FnMut(AnswerPiece<'_>)) {
        loop {
            match self.answers.read(&self.buf).expect("the answer due") {
                Some(p) => {
                    let (len, outcome) = (p.len, p.outcome);
                    assert_ne!(outcome, Outcome::Refused, "refused: {:?}", p.piece);
                    f(p.piece);
                    self.buf.drain(..len);
                    if outcome != Outcome::Partial {
                        return;
                    }
                }
                None => {
                    let mut more = [0u8; 4096];
                    let n = self.stream.read(&mut more).expect("reading an answer");
                    assert!(n > 0, "the server closed before answering");
                    self.buf.extend_from_slice(&more[..n]);
                }
            }
        }
    }

    /// Reads a status frame and checks it is 200 for `request`.
    fn expect_200(&mut self, request: u8) {
        self.answer(|p| {
            assert!(
                matches!(p, AnswerPiece::Status(s) if s.status == 200 && s.request == request),
                "status frame {p:?}"
            );
        });
    }
}

/// The TCP plane: a client (Updates, Barrier, ListAll, Status) and a server-role peer
/// (HeartBeat, Barrier, Update, CursorQuery, JournalUpdate, JournalMark, AskForUpdate,
/// NodeListHash, AuthChallenge, DirRequest, Status). Returns the server's Lamport clock as
/// the UpdateClock reported it.
fn tcp_session(server: SocketAddr) -> u32 {
    let mut c = ContactsClient::connect(server, "dissector-cli", T).expect("client connects");
    c.update("alice", "bob", "555").expect("update");
    c.update("alice", "carol", "777").expect("update");
    c.barrier().expect("barrier 200");
    let listed = c.list_all().expect("list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let status = c.status().expect("status");
    assert!(status.starts_with(&format!("name={ALIAS}\n")), "{status}");
    drop(c);

    let mut p = Peer::connect(server, "dissector-peer");
    p.send(ServerCommand::HeartBeat {
        health: 1,
        clock: 0,
    });
    let mut clock = None;
    p.answer(|a| match a {
        AnswerPiece::UpdateClock(c) => clock = Some(c),
        a => panic!("UpdateClock answers a HeartBeat with clock 0, not {a:?}"),
    });
    let clock = clock.expect("the server's clock");
    p.send(ServerCommand::Barrier);
    p.expect_200(5);
    let fields = |u, c, ph| ContactFields {
        username: u,
        contact: c,
        phone: ph,
    };
    p.send(ServerCommand::Update {
        clock: 1,
        fields: fields("dave", "erin", "999"),
    });
    p.send(ServerCommand::CursorQuery {
        journal_id: 0x0123_4567_89ab_cdef,
    });
    p.answer(|a| assert_eq!(a, AnswerPiece::Cursor(0), "cursor answer"));
    p.send(ServerCommand::JournalUpdate {
        line: 1,
        clock: 2,
        fields: fields("frank", "gina", "123"),
    });
    p.send(ServerCommand::JournalMark { line: 1 });
    p.send(ServerCommand::Barrier);
    p.expect_200(5);
    p.send(ServerCommand::AskForUpdate);
    let (mut count, mut records) = (None, 0);
    p.answer(|a| match a {
        AnswerPiece::Count(n) => count = Some(n),
        AnswerPiece::ServerRecord { .. } => records += 1,
        a => panic!("server-role record, not {a:?}"),
    });
    assert_eq!(
        (count, records),
        (Some(4), 4),
        "alice/bob, alice/carol, dave/erin, frank/gina"
    );
    let mut hash = vec![10u8, 64];
    hash.extend_from_slice(&[0u8; 64]);
    p.send(ServerCommand::NodeList(&hash));
    p.answer(|a| {
        assert!(
            matches!(a, AnswerPiece::NodeListHash(_)),
            "NodeListHash answer: {a:?}"
        );
    });
    p.send(ServerCommand::AuthChallenge);
    p.answer(|a| assert!(matches!(a, AnswerPiece::Nonce(_)), "nonce: {a:?}"));
    p.send(ServerCommand::DirRequest);
    let (mut records, mut end) = (0, None);
    p.answer(|a| match a {
        AnswerPiece::DirRecord(_) => records += 1,
        AnswerPiece::DirEnd(n) => end = Some(n),
        a => panic!("unexpected answer to DirRequest: {a:?}"),
    });
    assert_eq!(end, Some(2), "directory end");
    assert_eq!(records, 2, "A and B in the directory");
    p.send(ServerCommand::Status);
    p.answer(|a| assert!(matches!(a, AnswerPiece::StatusText(_)), "{a:?}"));
    clock
}

#[test]
fn a_full_session_decodes_field_by_field() {
    if !tools_or_skip(true, &["tcpdump", "tshark"]) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("rdv-dissector-")
        .tempdir()
        .expect("temp dir");
    // --plain-peers: the session speaks the seed's clear-text server role, which the
    // dissector reads (docs/PROTOCOL.md §8.19).
    let server = Server::start(&[
        "--alias",
        ALIAS,
        "--allow-peer",
        "127.0.0.1/32",
        "--open-contacts",
        "--plain-peers",
    ]);
    let port = server.addr.port();
    let capture = Capture::start(&dir.path().join("session.pcap"), port);
    let udp = udp_session(server.addr);
    let clock = tcp_session(server.addr);
    let pcap = capture.stop(server.addr);

    // Nothing is marked malformed, and no Lua error.
    let marked = marked_frames(&pcap, port, &[]);
    assert!(
        marked.is_empty(),
        "frames marked malformed or with errors in a well-formed session: {marked:?}"
    );

    let all = decode_rows(&pcap, port, FIELDS);
    let p = port.to_string();
    let (pa, pb) = (udp.port_a.to_string(), udp.port_b.to_string());
    let from = |r: &Row, port: &str| r.has("udp.srcport", port) || r.has("tcp.srcport", port);
    let to = |r: &Row, port: &str| r.has("udp.dstport", port) || r.has("tcp.dstport", port);

    // Every UDP datagram to or from the server decodes as a Root packet; every type 0-9.
    for r in all
        .iter()
        .filter(|r| r.has("udp.srcport", &p) || r.has("udp.dstport", &p))
    {
        assert!(
            r.one("rendezvous.type").is_some(),
            "undecoded datagram {r:?}"
        );
    }
    let types: BTreeSet<&str> = all
        .iter()
        .flat_map(|r| r.all("rendezvous.type"))
        .map(String::as_str)
        .collect();
    for t in 0..=9 {
        assert!(
            types.contains(t.to_string().as_str()),
            "type {t} missing: {types:?}"
        );
    }
    // B's packets, both ways, are shifted by 3: register, cookie, OK, punch, relay.
    let shifted: BTreeSet<&str> = all
        .iter()
        .filter(|r| r.has("rendezvous.shift_len", "3"))
        .flat_map(|r| r.all("rendezvous.type"))
        .map(String::as_str)
        .collect();
    for t in ["1", "2", "3", "4", "9"] {
        assert!(shifted.contains(t), "no shifted type {t}: {shifted:?}");
    }

    // Registrations: the computed certificate fingerprint is the identity's; the second
    // attempt carries the cookie of the type 9 answer.
    for (port_x, fp) in [(&pa, &udp.fp_a), (&pb, &udp.fp_b)] {
        let regs = rows(&all, "a registration", |r| {
            r.has("rendezvous.type", "2") && from(r, port_x)
        });
        assert!(regs.len() >= 2, "cookie round trip: {regs:?}");
        for r in &regs {
            assert!(r.has("rendezvous.cert.fingerprint", fp), "{r:?}");
            assert!(
                r.one("rendezvous.sig_len").is_some_and(|s| s != "0"),
                "{r:?}"
            );
        }
        let cookie = rows(&all, "a cookie", |r| {
            r.has("rendezvous.type", "9") && to(r, port_x)
        })[0]
            .one("rendezvous.cookie")
            .expect("cookie value")
            .to_string();
        assert_eq!(cookie.len(), 32, "16-byte cookie");
        assert!(
            regs.iter().any(|r| r.has("rendezvous.cookie", &cookie)),
            "registration with the cookie {cookie}: {regs:?}"
        );
        let ok = rows(&all, "an OK", |r| {
            r.has("rendezvous.type", "1") && to(r, port_x)
        });
        assert!(ok[0].has("rendezvous.addr", "127.0.0.1"), "{:?}", ok[0]);
        assert!(ok[0].has("rendezvous.port", port_x), "{:?}", ok[0]);
        assert!(ok[0].has("rendezvous.keepalive", "25"), "{:?}", ok[0]);
    }
    rows(&all, "A's keepalive", |r| {
        r.has("rendezvous.type", "0") && from(r, &pa)
    });
    rows(&all, "A's fetch", |r| {
        r.has("rendezvous.type", "8") && from(r, &pa)
    });

    // Lookups and their answers: B online at its address with our alias; unknown.
    rows(&all, "A's lookup of B", |r| {
        r.has("rendezvous.type", "5") && from(r, &pa) && r.has("rendezvous.target", &udp.fp_b)
    });
    let online = rows(&all, "the lookup answer for B", |r| {
        r.has("rendezvous.type", "6") && to(r, &pa) && r.has("rendezvous.target", &udp.fp_b)
    });
    let online = online[0];
    assert!(online.has("rendezvous.lookup.status", "0"), "{online:?}");
    assert!(online.has("rendezvous.addr", "127.0.0.1"), "{online:?}");
    assert!(online.has("rendezvous.port", &pb), "{online:?}");
    assert!(online.has("rendezvous.home", ALIAS), "{online:?}");
    let unknown = rows(&all, "the lookup answer for the unknown", |r| {
        r.has("rendezvous.type", "6") && r.has("rendezvous.target", &udp.unknown)
    });
    assert!(
        unknown[0].has("rendezvous.lookup.status", "2"),
        "{:?}",
        unknown[0]
    );

    // The punch request to B names A at A's address.
    let punch = rows(&all, "the punch request", |r| {
        r.has("rendezvous.type", "3") && to(r, &pb)
    });
    assert!(punch[0].has("rendezvous.peer", &udp.fp_a), "{:?}", punch[0]);
    assert!(punch[0].has("rendezvous.port", &pa), "{:?}", punch[0]);

    // The relay: to B from A, then from A to B.
    let sent = rows(&all, "A's relay", |r| {
        r.has("rendezvous.type", "4") && from(r, &pa)
    });
    assert!(
        sent[0].has("rendezvous.destination", &udp.fp_b),
        "{:?}",
        sent[0]
    );
    assert!(sent[0].has("rendezvous.event_text", EVENT), "{:?}", sent[0]);
    let got = rows(&all, "the relay to B", |r| {
        r.has("rendezvous.type", "4") && to(r, &pb)
    });
    assert!(got[0].has("rendezvous.source", &udp.fp_a), "{:?}", got[0]);
    assert!(got[0].has("rendezvous.event_text", EVENT), "{:?}", got[0]);

    // The stranger's 403.
    let err = rows(&all, "the 403", |r| {
        r.has("rendezvous.type", "7") && to(r, &udp.port_stranger.to_string())
    });
    assert!(err[0].has("rendezvous.status", "403"), "{:?}", err[0]);
    assert!(err[0].has("rendezvous.request", "5"), "{:?}", err[0]);

    // TCP: every segment with payload is decoded, or is part of a frame decoded later.
    for r in all
        .iter()
        .filter(|r| r.has("tcp.srcport", &p) || r.has("tcp.dstport", &p))
        .filter(|r| r.one("tcp.len").is_some_and(|l| l != "0"))
    {
        assert!(
            r.one("rendezvous.direction").is_some() || r.one("tcp.reassembled_in").is_some(),
            "undecoded TCP segment {r:?}"
        );
    }
    // The client: hello, the Updates, Barrier -> 200, ListAll -> count 2 and the records.
    rows(&all, "the client hello", |r| {
        r.has("rendezvous.hello.role", "2") && r.has("rendezvous.hello.name", "dissector-cli")
    });
    for (contact, phone) in [("bob", "555"), ("carol", "777")] {
        rows(&all, "a client Update", |r| {
            to(r, &p)
                && r.has("rendezvous.command", "1")
                && r.has("rendezvous.username", "alice")
                && r.has("rendezvous.contact", contact)
                && r.has("rendezvous.phone", phone)
        });
        rows(&all, "a ListAll record", |r| {
            from(r, &p)
                && r.has("rendezvous.answer", "1")
                && r.has("rendezvous.contact", contact)
                && r.has("rendezvous.phone", phone)
        });
    }
    let barrier = rows(&all, "a Barrier", |r| {
        to(r, &p) && r.has("rendezvous.command", "5")
    })[0]
        .number();
    rows(&all, "the status frame 200 after the Barrier", |r| {
        from(r, &p)
            && r.number() > barrier
            && r.has("rendezvous.answer", "7")
            && r.has("rendezvous.status", "200")
            && r.has("rendezvous.request", "5")
    });
    rows(&all, "the ListAll count", |r| {
        from(r, &p) && r.has("rendezvous.answer", "0") && r.has("rendezvous.count", "2")
    });
    // The peer: hello, HeartBeat -> UpdateClock with the server's clock, server-role
    // records with clocks, journal frames, the cursor, hash, nonce and directory answers.
    rows(&all, "the peer hello", |r| {
        r.has("rendezvous.hello.role", "1") && r.has("rendezvous.hello.name", "dissector-peer")
    });
    rows(&all, "the HeartBeat", |r| {
        to(r, &p)
            && r.has("rendezvous.command", "2")
            && r.has("rendezvous.health", "1")
            && r.has("rendezvous.clock", "0")
    });
    rows(&all, "the UpdateClock", |r| {
        from(r, &p)
            && r.has("rendezvous.answer", "3")
            && r.has("rendezvous.clock", &clock.to_string())
    });
    rows(&all, "the peer's JournalUpdate", |r| {
        to(r, &p)
            && r.has("rendezvous.command", "13")
            && r.has("rendezvous.journal.line", "1")
            && r.has("rendezvous.username", "frank")
    });
    rows(&all, "the AskForUpdate count", |r| {
        from(r, &p) && r.has("rendezvous.answer", "0") && r.has("rendezvous.count", "4")
    });
    rows(&all, "a server-role record of the peer's Update", |r| {
        from(r, &p)
            && r.has("rendezvous.answer", "1")
            && r.has("rendezvous.username", "dave")
            && r.has("rendezvous.clock", "1")
    });
    rows(&all, "the cursor answer", |r| {
        from(r, &p) && r.has("rendezvous.answer", "14") && r.has("rendezvous.journal.line", "0")
    });
    rows(&all, "the node-list hash answer", |r| {
        from(r, &p)
            && r.has("rendezvous.answer", "10")
            && r.has("rendezvous.nodelist.hash_len", "64")
    });
    rows(&all, "the nonce", |r| {
        from(r, &p) && r.has("rendezvous.answer", "20") && r.one("rendezvous.nonce").is_some()
    });
    for fp in [&udp.fp_a, &udp.fp_b] {
        let rec = rows(&all, "a directory record", |r| {
            from(r, &p) && r.has("rendezvous.dir.fingerprint", fp)
        });
        assert!(rec[0].has("rendezvous.dir.kind", "1"), "{:?}", rec[0]);
        assert!(
            rec[0].has("rendezvous.cert.fingerprint", fp),
            "{:?}",
            rec[0]
        );
        assert!(rec[0].has("rendezvous.home", ALIAS), "{:?}", rec[0]);
    }
    rows(&all, "the directory end", |r| {
        from(r, &p) && r.has("rendezvous.answer", "17") && r.has("rendezvous.count", "2")
    });
    let status = frames_matching(
        &pcap,
        port,
        &format!("rendezvous.status_text contains \"name={ALIAS}\""),
    );
    assert_eq!(
        status.len(),
        2,
        "two Status answers (client and peer): {status:?}"
    );
}

#[test]
fn malformed_packets_are_marked_and_nothing_else() {
    if !tools_or_skip(true, &["tcpdump", "tshark"]) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("rdv-dissector-")
        .tempdir()
        .expect("temp dir");
    let server = Server::start(&["--alias", ALIAS, "--open-contacts"]);
    let port = server.addr.port();
    let capture = Capture::start(&dir.path().join("malformed.pcap"), port);

    // A well-formed keepalive from an unknown address, answered 404.
    let good = UdpSocket::bind("127.0.0.1:0").expect("socket");
    good.set_read_timeout(Some(T)).expect("timeout");
    let mut keepalive = RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: PacketType::Keepalive,
        signature: &[],
        timestamp: unix_now(),
    }
    .to_vec(&[])
    .expect("keepalive");
    keepalive.resize(64, 0);
    good.send_to(&keepalive, server.addr)
        .expect("send keepalive");
    let mut buf = [0u8; 1500];
    let (n, _) = good.recv_from(&mut buf).expect("404");
    assert!(
        matches!(decode(&buf[..n]), Incoming::Error { status: 404, .. }),
        "{:?}",
        decode(&buf[..n])
    );

    // A relay (type 4) whose sig_len (64) runs past the end of its 9 bytes.
    let bad = UdpSocket::bind("127.0.0.1:0").expect("socket");
    bad.send_to(&[0x02, 0x04, 0x00, 0x40, 1, 2, 3, 4, 5], server.addr)
        .expect("send garbage");

    // A client hello followed by command 9, which no client role has, in one segment: the
    // server answers 400 for request 9 and closes.
    let mut tcp = TcpStream::connect_timeout(&server.addr, T).expect("connect");
    tcp.set_read_timeout(Some(T)).expect("timeout");
    let mut frame = [0u8; 258];
    Hello {
        role: Role::Client,
        name: "dissector-bad",
    }
    .emit(&mut frame)
    .expect("hello");
    frame[257] = 9;
    tcp.write_all(&frame).expect("send hello and command 9");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer)
        .expect("status frame, then close");
    assert_eq!(
        answer[..4],
        [7, 1, 0x90, 9],
        "400 for request 9: {answer:?}"
    );
    let tcp_port = tcp.local_addr().expect("addr").port();
    drop(tcp);

    let pcap = capture.stop(server.addr);
    let bad_port = bad.local_addr().expect("addr").port();
    let udp_bad = frames_matching(&pcap, port, &format!("udp.srcport == {bad_port}"));
    assert_eq!(udp_bad.len(), 1, "one garbage datagram: {udp_bad:?}");
    let tcp_bad = frames_matching(
        &pcap,
        port,
        &format!("tcp.srcport == {tcp_port} && tcp.len > 0"),
    );
    assert_eq!(
        tcp_bad.len(),
        1,
        "hello and command 9 in one segment: {tcp_bad:?}"
    );
    let expected: BTreeSet<u32> = udp_bad.union(&tcp_bad).copied().collect();
    assert_eq!(
        marked_frames(&pcap, port, &[]),
        expected,
        "exactly the garbage datagram and the segment with command 9 are marked"
    );
    // Why: the messages of the marks.
    let messages = tshark(
        &pcap,
        port,
        &[
            "-Y",
            "rendezvous.malformed",
            "-T",
            "fields",
            "-e",
            "_ws.expert.message",
        ],
    )
    .join("\n");
    assert!(
        messages.contains("signature runs past the end"),
        "{messages}"
    );
    assert!(
        messages.contains("unknown command 9 for a client opener"),
        "{messages}"
    );
    // The well-formed frames around them still decode: the 404 and the 400 status frame.
    let ok = frames_matching(
        &pcap,
        port,
        &format!(
            "(rendezvous.type == 7 && rendezvous.status == 404 && udp.dstport == {}) || \
             (rendezvous.status == 400 && rendezvous.request == 9 && tcp.dstport == {tcp_port})",
            good.local_addr().expect("addr").port()
        ),
    );
    assert_eq!(ok.len(), 2, "the 404 and the status frame 400: {ok:?}");
}
