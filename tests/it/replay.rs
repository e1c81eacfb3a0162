//! `rendezvous replay` and `serve --accept-replayed` with the real binaries
//! (docs/PROTOCOL.md §10).
//!
//! A real session (two clients register, a lookup, a relayed event, three contact updates)
//! runs against a server A while tcpdump (`-i any`, Linux cooked v2) and tshark (`-i lo`,
//! pcapng) capture it. Each capture is replayed to a fresh server B started with
//! `--accept-replayed`: B must end with A's contacts (the (user, contact, phone) triples;
//! B stamps them with its own clock) and A's registrations (directory count, and a lookup
//! of each fingerprint answers online). Replayed to a server without the flag, the summary
//! shows the cookie challenges and the server holds no registration. A cut capture is
//! replayed up to the cut and exits 1, naming the file and the offset. Without `--port`,
//! replay finds the server's (random) port by its traffic, and sends nothing from a
//! capture of other traffic only.
//!
//! Tests that capture need tcpdump or tshark and root: they skip (with a message) when
//! either is missing, but fail when the environment says `CI=true`. Every wait has a
//! deadline; every process started is killed by pid when dropped.

use crate::common;

use common::{bin, field, run, Finished, Identity, Proc, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Deadline of one short command (register, lookup, contacts, status).
const T: Duration = Duration::from_secs(20);
/// Deadline of a whole replay.
const REPLAY_T: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// Capturers
// ---------------------------------------------------------------------------------------

/// A capture tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `tcpdump -i any -y LINUX_SLL2 -w F port P` (pcap, Linux cooked v2).
    Tcpdump,
    /// `tshark -i lo -f "port P" -w F.pcapng` (pcapng).
    Tshark,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Tool::Tcpdump => "tcpdump",
            Tool::Tshark => "tshark",
        }
    }

    /// The line on stderr that says the capture is running.
    fn ready_line(self) -> &'static str {
        match self {
            Tool::Tcpdump => "listening on",
            Tool::Tshark => "Capturing on",
        }
    }
}

/// True when `tool` can capture here (installed, and we are root). Otherwise prints why
/// and returns false, or panics when `CI=true` (CI must run every test).
fn can_capture(tool: Tool) -> bool {
    let root = rustix::process::geteuid().is_root();
    let found = Command::new(tool.program())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && found {
        return true;
    }
    let why = if found {
        format!("{} needs root to capture", tool.program())
    } else {
        format!("{} is not installed", tool.program())
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}; CI=true requires this test to run");
    }
    eprintln!("skipped: {why}");
    false
}

/// A running capture of `port` on loopback into `file`. Stopped with SIGINT (so the tool
/// writes everything out). The tool runs in its own process group (tshark runs dumpcap),
/// which is killed if the capture is dropped before it was stopped (a failed test).
struct Capture {
    tool: Tool,
    file: PathBuf,
    proc: Proc,
    stopped: bool,
}

impl Drop for Capture {
    fn drop(&mut self) {
        if !self.stopped {
            // The process group our unreaped child leads.
            if let Some(pgid) = pid_of(self.proc.pid()) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// A child's process id as the kernel's type.
fn pid_of(pid: u32) -> Option<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
}

impl Capture {
    /// Starts `tool` and waits for its "listening" line on stderr.
    fn start(tool: Tool, port: u16, dir: &Path) -> Capture {
        let filter = format!("port {port}");
        let (file, mut cmd) = match tool {
            Tool::Tcpdump => {
                let file = dir.join("session.pcap");
                let mut cmd = Command::new("tcpdump");
                // -Z root: write as root into our private temp dir; -U: each packet goes to
                // the file as soon as tcpdump has it; -B: a 64 MiB kernel buffer (KiB), so a
                // burst is not dropped. (Not --immediate-mode: with the default snapshot
                // length its ring holds a handful of packets and drops.)
                cmd.args([
                    "-i",
                    "any",
                    "-y",
                    "LINUX_SLL2",
                    "-Z",
                    "root",
                    "-U",
                    "-B",
                    "65536",
                ])
                .arg("-w")
                .arg(&file)
                .arg(&filter);
                (file, cmd)
            }
            Tool::Tshark => {
                let file = dir.join("session.pcapng");
                let mut cmd = Command::new("tshark");
                cmd.args(["-i", "lo", "-f", &filter, "-w"]).arg(&file);
                (file, cmd)
            }
        };
        cmd.env("LC_ALL", "C");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let proc = Proc::spawn(tool.program(), cmd);
        let mut capture = Capture {
            tool,
            file,
            proc,
            stopped: false,
        };
        capture
            .proc
            .expect_stderr(tool.ready_line(), T, |l| l.contains(tool.ready_line()));
        capture
    }

    /// Waits until the file holds the whole session (so nothing is lost in the tool's
    /// buffers), then stops the tool with SIGINT and waits for it to exit.
    fn stop(
        mut self,
        port: u16,
        done: impl Fn(&rendezvous::tools::capture::CaptureRead) -> bool,
    ) -> PathBuf {
        let deadline = Instant::now() + T;
        loop {
            let read = rendezvous::tools::capture::read_capture(&self.file, port);
            if read.as_ref().is_ok_and(&done) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the capture file never held the whole session: {:?}",
                self.tool.program(),
                read.map(|r| {
                    let flows: Vec<(usize, usize, u64)> = r
                        .flows
                        .iter()
                        .map(|f| (f.client_data.len(), f.server_data.len(), f.gaps))
                        .collect();
                    (r.datagrams.len(), flows, r.error)
                })
            );
            thread::sleep(Duration::from_millis(50));
        }
        let pid = pid_of(self.proc.pid()).expect("pid fits pid_t");
        // A child we spawned and have not reaped.
        let sent = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        assert!(sent.is_ok(), "SIGINT to {}: {sent:?}", self.tool.program());
        let status = self.proc.wait_exit(T);
        self.stopped = status.is_some();
        assert!(
            status.is_some(),
            "{} did not exit within {T:?} after SIGINT",
            self.tool.program()
        );
        self.file.clone()
    }
}

// ---------------------------------------------------------------------------------------
// The session
// ---------------------------------------------------------------------------------------

/// The three contacts the session writes.
const CONTACTS: [(&str, &str, &str); 3] = [
    ("alice", "bob", "5551234"),
    ("alice", "carol", "5550001"),
    ("dave", "erin", "+4915100"),
];

/// A recorded session: server A (still running), the captures, the identities.
struct Session {
    a: Server,
    files: Vec<(Tool, PathBuf)>,
    x: Identity,
    y: Identity,
    /// `contacts list` at A after the session.
    contacts: Vec<String>,
    dir: tempfile::TempDir,
}

fn cmd(args: &[&str]) -> Command {
    let mut c = bin();
    c.args(args);
    c
}

fn conn(c: &mut Command, server: SocketAddr, id: &Identity) {
    c.arg("--server")
        .arg(server.to_string())
        .arg("--identity")
        .arg(id.dir_arg());
}

/// `rendezvous register` until it prints `registered`, then killed.
fn register_once(server: SocketAddr, id: &Identity, name: &str) {
    let mut c = cmd(&["register"]);
    conn(&mut c, server, id);
    let mut p = Proc::spawn(name, c);
    p.out
        .expect("registered", T, |l| l.starts_with("registered "));
    p.kill();
}

fn lookup(server: SocketAddr, id: &Identity, fp: &str) -> String {
    let mut c = cmd(&["lookup"]);
    conn(&mut c, server, id);
    c.arg(fp);
    let done = run("lookup", c, T);
    done.assert_success("lookup");
    done.stdout.join("\n")
}

fn contacts_list(server: SocketAddr) -> Vec<String> {
    let c = cmd(&["contacts", "list", "--server", &server.to_string(), "--all"]);
    let done = run("contacts list", c, T);
    done.assert_success("contacts list");
    let mut v = done.stdout;
    v.sort();
    v
}

/// The value of `key=` in `rendezvous status` at `server`.
fn status_value(server: SocketAddr, key: &str) -> String {
    let c = cmd(&["status", "--server", &server.to_string()]);
    let done = run("status", c, T);
    done.assert_success("status");
    let tag = format!("{key}=");
    done.stdout
        .iter()
        .find_map(|l| l.strip_prefix(&tag))
        .unwrap_or_else(|| panic!("no {key}= in status: {:?}", done.stdout))
        .to_string()
}

/// Bytes a `contacts update` connection writes: the hello, one Update, one Barrier.
const UPDATE_CONN_BYTES: usize = 257 + 533 + 1;
/// Bytes it reads back: the 200 status frame (`07 00 c8 05 07 "durable"`).
const UPDATE_ANSWER_BYTES: usize = 12;

/// True when the capture holds the session up to its last answer: three TCP flows, each
/// with every byte both sides wrote, and the relayed event.
fn whole_session(r: &rendezvous::tools::capture::CaptureRead) -> bool {
    let relays = r
        .datagrams
        .iter()
        .filter(|d| d.to_server && d.payload.get(1) == Some(&4))
        .count();
    r.flows.len() >= 3
        && r.flows.iter().all(|f| {
            f.client_data.len() == UPDATE_CONN_BYTES && f.server_data.len() == UPDATE_ANSWER_BYTES
        })
        && relays >= 1
}

impl Session {
    /// Runs the session at a fresh server A while each of `tools` captures it.
    fn record(tools: &[Tool]) -> Session {
        let dir = tempfile::Builder::new()
            .prefix("rdv-replay-")
            .tempdir()
            .expect("temp dir");
        let a = Server::start(&["--open-contacts"]);
        let port = a.addr.port();
        let captures: Vec<Capture> = tools
            .iter()
            .map(|&t| {
                let sub = dir.path().join(t.program());
                std::fs::create_dir_all(&sub).expect("capture dir");
                Capture::start(t, port, &sub)
            })
            .collect();
        let x = Identity::new("x");
        let y = Identity::new("y");
        register_once(a.addr, &x, "register-x");
        register_once(a.addr, &y, "register-y");
        let got = lookup(a.addr, &x, &y.fingerprint);
        assert!(got.starts_with("online "), "lookup at A: {got}");
        let mut c = cmd(&["send"]);
        conn(&mut c, a.addr, &y);
        c.args([&x.fingerprint, "hello from the capture"]);
        run("send", c, T).assert_success("send");
        for (user, contact, phone) in CONTACTS {
            let c = cmd(&[
                "contacts",
                "update",
                "--server",
                &a.addr.to_string(),
                "--user",
                user,
                contact,
                phone,
            ]);
            run("contacts update", c, T).assert_success("contacts update");
        }
        let files = captures
            .into_iter()
            .map(|c| (c.tool, c.stop(port, whole_session)))
            .collect();
        let contacts = contacts_list(a.addr);
        assert_eq!(contacts.len(), 3, "contacts at A: {contacts:?}");
        assert_eq!(status_value(a.addr, "directory"), "2", "directory at A");
        Session {
            a,
            files,
            x,
            y,
            contacts,
            dir,
        }
    }

    fn file(&self, tool: Tool) -> &Path {
        &self
            .files
            .iter()
            .find(|(t, _)| *t == tool)
            .expect("captured by that tool")
            .1
    }
}

// ---------------------------------------------------------------------------------------
// Replaying
// ---------------------------------------------------------------------------------------

/// `rendezvous replay FILE --target B --port P EXTRA...`, run to completion.
fn replay(file: &Path, target: SocketAddr, port: u16, extra: &[&str]) -> Finished {
    replay_with(file, target, Some(port), extra)
}

/// `rendezvous replay FILE --target B [--port P] EXTRA...`: without a port, replay finds
/// the server's ports by their traffic.
fn replay_with(file: &Path, target: SocketAddr, port: Option<u16>, extra: &[&str]) -> Finished {
    let mut c = bin();
    c.arg("replay")
        .arg(file)
        .args(["--target", &target.to_string()]);
    if let Some(port) = port {
        c.args(["--port", &port.to_string()]);
    }
    c.args(extra);
    run("replay", c, REPLAY_T)
}

/// The summary line that starts with `name ` (or is `name`).
fn line<'a>(done: &'a Finished, name: &str) -> &'a str {
    let tag = format!("{name} ");
    done.stdout
        .iter()
        .find(|l| l.starts_with(&tag))
        .unwrap_or_else(|| {
            panic!(
                "no {name:?} line in the summary:\n{}",
                done.stdout.join("\n")
            )
        })
}

/// The number `key=N` in the summary line `name`.
fn num(done: &Finished, name: &str, key: &str) -> u64 {
    let l = line(done, name);
    field(l, key)
        .unwrap_or_else(|| panic!("no {key}= in {l:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}= in {l:?}: {e}"))
}

/// Replays `tool`'s capture of a session to a fresh `--accept-replayed` server and checks
/// that it ends with the session's contacts and registrations. With `given_port` false, no
/// `--port` is given: replay finds the server's port (a random one, not 4747) by its
/// traffic and says so.
fn replay_reproduces_the_session(tool: Tool, pacing: &[&str], given_port: bool) {
    if !can_capture(tool) {
        return;
    }
    let s = Session::record(&[tool]);
    let b = Server::start(&["--accept-replayed", "--open-contacts"]);
    let port = s.a.addr.port();
    assert_ne!(
        port, 4747,
        "the server runs on a port other than the default"
    );
    let done = replay_with(s.file(tool), b.addr, given_port.then_some(port), pacing);
    done.assert_success("replay to an --accept-replayed server");
    let found = format!("replay: port {port} carries the protocol (udp: ");
    let notes: Vec<&String> = done
        .stderr
        .iter()
        .filter(|l| l.contains("carries the protocol"))
        .collect();
    if given_port {
        assert!(notes.is_empty(), "{:?}", done.stderr);
    } else {
        assert!(
            notes.len() == 1 && notes[0].starts_with(&found) && notes[0].contains("; tcp: 3 of 3 "),
            "{:?}",
            done.stderr
        );
    }
    let summary = done.stdout.join("\n");
    assert_eq!(
        field(line(&done, "replay"), "cut"),
        Some("false"),
        "{summary}"
    );
    assert!(num(&done, "sent_udp", "register") >= 4, "{summary}");
    assert!(num(&done, "received_udp", "ok") >= 4, "{summary}");
    assert_eq!(num(&done, "cookie", "challenges"), 0, "{summary}");
    assert_eq!(num(&done, "sent", "tcp_flows"), 3, "{summary}");
    assert_eq!(num(&done, "sent_tcp", "update"), 3, "{summary}");
    assert_eq!(num(&done, "tcp_status", "200"), 3, "{summary}");
    assert_eq!(num(&done, "sent_udp", "relay"), 1, "{summary}");
    // The relayed event reached the replayed recipient's socket.
    assert_eq!(num(&done, "received_udp", "relay"), 1, "{summary}");

    // Same contacts (B stamps them with its own clock, so compare the triples).
    assert_eq!(contacts_list(b.addr), s.contacts, "{summary}");
    // Same registrations: both identities, online at B.
    assert_eq!(status_value(b.addr, "directory"), "2", "{summary}");
    // One asker per lookup: at an --accept-replayed server a registration carries no
    // cookie, so the same identity registering twice within one second sends the same
    // signed bytes twice, and the second is refused as a replay (409).
    for (id, asker) in [(&s.x, "z1"), (&s.y, "z2")] {
        let z = Identity::new(asker);
        let got = lookup(b.addr, &z, &id.fingerprint);
        assert!(
            got.starts_with("online "),
            "lookup at B of {}: {got}",
            id.fingerprint
        );
    }
}

#[test]
fn tcpdump_capture_replayed_at_speed_2_without_port_reproduces_the_session() {
    replay_reproduces_the_session(Tool::Tcpdump, &["--speed", "2.0"], false);
}

#[test]
fn tshark_capture_replayed_fast_reproduces_the_session() {
    replay_reproduces_the_session(Tool::Tshark, &["--fast", "--quiet"], true);
}

#[test]
fn without_a_port_a_capture_of_other_traffic_or_none_sends_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A server that counts what it gets: the replay must send it nothing.
    let b = Server::start(&["--accept-replayed", "--open-contacts"]);
    for (name, bytes, packets) in [
        ("foreign.pcap", crate::capture::foreign_capture(), 428),
        ("empty.pcap", crate::capture::empty_capture(), 0),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).expect("write");
        let done = replay_with(&file, b.addr, None, &["--fast"]);
        assert_eq!(done.status.code(), Some(1), "{done:?}");
        assert!(done.stdout.is_empty(), "no summary: {:?}", done.stdout);
        let err = done.stderr.join("\n");
        let want = format!(
            "error: {}: no traffic of this protocol in its {packets} packets",
            file.display()
        );
        assert!(err.starts_with(&want), "{err}");
        assert!(err.contains("give --port N"), "{err}");
    }
    // --port overrides: the DNS queries of port 53 are sent (and refused at B, 400).
    let file = dir.path().join("foreign.pcap");
    let done = replay_with(&file, b.addr, Some(53), &["--fast"]);
    done.assert_success("replay --port 53");
    let summary = done.stdout.join("\n");
    assert_eq!(num(&done, "sent", "udp"), 64, "{summary}");
    assert_eq!(num(&done, "sent_udp", "other"), 64, "{summary}");
    assert_eq!(status_value(b.addr, "directory"), "0", "{summary}");
}

#[test]
fn replay_without_accept_replayed_gets_challenges_and_registers_nothing() {
    let tool = if can_capture(Tool::Tcpdump) {
        Tool::Tcpdump
    } else if can_capture(Tool::Tshark) {
        Tool::Tshark
    } else {
        return;
    };
    let s = Session::record(&[tool]);
    let c = Server::start(&["--open-contacts"]);
    let done = replay(s.file(tool), c.addr, s.a.addr.port(), &["--fast"]);
    // Refusals are the expected outcome here, not a failure of the replay.
    done.assert_success("replay to a server without --accept-replayed");
    let summary = done.stdout.join("\n");
    let registrations = num(&done, "sent_udp", "register");
    assert!(registrations >= 4, "{summary}");
    assert_eq!(
        num(&done, "cookie", "challenges"),
        registrations,
        "every registration is challenged: {summary}"
    );
    assert_eq!(num(&done, "received_udp", "ok"), 0, "{summary}");
    // The lookup and the relay come from unregistered sources.
    assert_eq!(num(&done, "errors", "403"), 2, "{summary}");
    assert_eq!(status_value(c.addr, "directory"), "0", "{summary}");
    // The contacts plane has no such checks.
    assert_eq!(contacts_list(c.addr), s.contacts);
}

/// Offsets of the records of a pcap file (after the 24-byte file header).
fn pcap_records(bytes: &[u8]) -> Vec<usize> {
    let le = bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || bytes[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let mut at = 24;
    let mut v = Vec::new();
    while at + 16 <= bytes.len() {
        v.push(at);
        let l = [bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]];
        let caplen = if le {
            u32::from_le_bytes(l)
        } else {
            u32::from_be_bytes(l)
        };
        at += 16 + caplen as usize;
    }
    v
}

#[test]
fn cut_capture_is_replayed_up_to_the_cut_and_exits_1() {
    if !can_capture(Tool::Tcpdump) {
        return;
    }
    let s = Session::record(&[Tool::Tcpdump]);
    let whole = std::fs::read(s.file(Tool::Tcpdump)).expect("read the capture");
    let records = pcap_records(&whole);
    assert!(
        records.len() > 20,
        "a session has more packets: {}",
        records.len()
    );
    // Cut inside the header of a record in the middle of the TCP part: the UDP session
    // and part of the contacts come before it.
    let cut_at = records[records.len() * 3 / 4];
    let cut = s.dir.path().join("cut.pcap");
    std::fs::write(&cut, &whole[..cut_at + 10]).expect("write the cut capture");
    let b = Server::start(&["--accept-replayed", "--open-contacts"]);
    let done = replay(&cut, b.addr, s.a.addr.port(), &["--fast"]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    let summary = done.stdout.join("\n");
    assert_eq!(
        field(line(&done, "replay"), "cut"),
        Some("true"),
        "{summary}"
    );
    assert!(num(&done, "sent_udp", "register") >= 4, "{summary}");
    assert!(num(&done, "received_udp", "ok") >= 4, "{summary}");
    let err = done.stderr.join("\n");
    let expected = format!("{}: at byte {cut_at}: ", cut.display());
    assert!(
        err.contains(&expected),
        "stderr names the file and offset {expected:?}: {err}"
    );
    // What was readable was replayed: both identities are registered at B.
    assert_eq!(status_value(b.addr, "directory"), "2", "{summary}");
}

#[test]
fn not_a_capture_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "this is not a capture, just some text\n").expect("write");
    let target: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let done = replay(&file, target, 4747, &["--fast"]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(done.stdout.is_empty(), "no summary: {:?}", done.stdout);
    let err = done.stderr.join("\n");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("notes.txt"), "names the file: {err}");
    // A missing file too.
    let done = replay(&dir.path().join("missing.pcap"), target, 4747, &[]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
}

#[test]
fn bad_speed_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("x.pcap");
    std::fs::write(&file, b"").expect("write");
    let target: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    for speed in ["0", "-1", "NaN"] {
        let done = replay(&file, target, 4747, &[&format!("--speed={speed}")]);
        assert_eq!(done.status.code(), Some(1), "--speed {speed}: {done:?}");
        assert!(
            done.stderr.join("\n").contains("--speed"),
            "--speed {speed}: {:?}",
            done.stderr
        );
    }
    let done = replay(&file, target, 4747, &["--speed", "2", "--fast"]);
    assert_eq!(
        done.status.code(),
        Some(2),
        "clap refuses --speed with --fast"
    );
}

#[test]
fn accept_replayed_needs_a_loopback_listener() {
    let c = cmd(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--memory-only",
        "--accept-replayed",
    ]);
    let done = run("serve", c, T);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(
        done.stderr.join("\n").contains("loopback"),
        "{:?}",
        done.stderr
    );
}
