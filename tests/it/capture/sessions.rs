//! Real sessions of the binary on a random port, captured by tcpdump (Linux cooked v1 and
//! v2) and tshark (pcapng), then decoded with and without `--port`. Needs root and the
//! tools: skips without them, fails when `CI=true`.

use super::{decode, decode_with, expect_lines, parse_json, summary, tmp, T};
use crate::common::{bin, run, Identity, Proc, Server};
use rendezvous::tools::capture::{read_capture, CaptureRead};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// True when `tool` can capture here (installed, and we are root); otherwise skips (false)
/// or, under `CI=true`, panics.
fn can_capture(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    let root = rustix::process::geteuid().is_root();
    if found && root {
        return true;
    }
    let why = if found {
        "not root".to_string()
    } else {
        format!("{tool} not installed")
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: cannot capture with {tool}: {why}");
    }
    eprintln!("skipping: cannot capture with {tool}: {why}");
    false
}

/// A running capturer, stopped with SIGINT so that it writes out what it holds.
struct Capturer {
    proc: Proc,
    file: PathBuf,
}

impl Capturer {
    /// Starts `cmd` and waits until its stderr says it is capturing (`ready`), then until
    /// the file holds a datagram the test sends from `probe` to itself (the capturer's
    /// filter must take `probe`'s port): a capturer may announce itself before its capture
    /// is live.
    fn start(name: &str, cmd: Command, ready: &str, file: PathBuf, probe: &UdpSocket) -> Capturer {
        // Built at once, so that its drop stops the capturer with SIGINT on every path.
        let mut cap = Capturer {
            proc: Proc::spawn(name, cmd),
            file,
        };
        let deadline = Instant::now() + T;
        let probe_addr = probe.local_addr().expect("probe address");
        let mut announced = false;
        loop {
            let err = cap.proc.stderr_lines();
            announced = announced || err.iter().any(|l| l.contains(ready));
            if announced {
                probe.send_to(b"probe", probe_addr).expect("probe datagram");
                let live = read_capture(&cap.file, probe_addr.port())
                    .is_ok_and(|r| !r.datagrams.is_empty());
                if live {
                    return cap;
                }
            }
            if let Some(status) = cap.proc.wait_exit(Duration::ZERO) {
                panic!("{name} exited ({status}) before capturing: {err:?}");
            }
            assert!(
                Instant::now() < deadline,
                "{name}: not capturing within {T:?} (announced: {announced}): {err:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (with a deadline) until the file holds what `done` asks for, then stops the
    /// capturer with SIGINT and waits for it to exit. Returns the file and whether the
    /// capturer reported packets dropped by the kernel (then the capture may lack some).
    fn stop_when(mut self, port: u16, done: impl Fn(&CaptureRead) -> bool) -> (PathBuf, bool) {
        let deadline = Instant::now() + T;
        while Instant::now() < deadline {
            if read_capture(&self.file, port).is_ok_and(|r| done(&r)) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let sent = interrupt(self.proc.pid());
        assert!(sent.is_ok(), "SIGINT to {}: {sent:?}", self.proc.name());
        let status = self.proc.wait_exit(T);
        assert!(
            status.is_some(),
            "{} did not exit after SIGINT: {:?}",
            self.proc.name(),
            self.proc.stderr_lines()
        );
        // The stderr reader may still be taking the last lines: wait for the statistics.
        let stats_deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < stats_deadline
            && !self
                .proc
                .stderr_lines()
                .iter()
                .any(|l| l.contains("captured"))
        {
            thread::sleep(Duration::from_millis(20));
        }
        let dropped = self.proc.stderr_lines().iter().any(|l| {
            l.contains("dropped")
                && l.split(|c: char| !c.is_ascii_digit())
                    .any(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
        });
        if dropped {
            eprintln!(
                "{} dropped packets: {:?}",
                self.proc.name(),
                self.proc.stderr_lines()
            );
        }
        (self.file.clone(), dropped)
    }
}

impl Drop for Capturer {
    /// On every path (a failed assertion too): SIGINT first, so that tshark stops its
    /// dumpcap child instead of leaving it running; `Proc` then kills what is left.
    fn drop(&mut self) {
        if self.proc.wait_exit(Duration::ZERO).is_none() {
            let _ = interrupt(self.proc.pid());
            let _ = self.proc.wait_exit(Duration::from_secs(5));
        }
    }
}

/// Sends SIGINT to our child `pid` (so a capturer writes out what it holds).
fn interrupt(pid: u32) -> rustix::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or(rustix::io::Errno::SRCH)?;
    rustix::process::kill_process(pid, rustix::process::Signal::INT)
}

/// Runs a session against `server`: a `register` of B, A's `lookup` and `send` to B, a
/// `contacts update` and a `contacts list`. Returns (A, B).
fn session(server: &Server) -> (Identity, Identity) {
    let addr = server.addr.to_string();
    let a = Identity::new("a");
    let b = Identity::new("b");
    let client = |args: &[&str], id: &Identity| {
        let mut cmd = bin();
        cmd.args(args)
            .args(["--server", &addr, "--identity"])
            .arg(id.dir_arg());
        cmd
    };
    let mut reg = Proc::spawn("register-b", client(&["register"], &b));
    reg.out
        .expect("registered", T, |l| l.starts_with("registered "));
    let done = run("lookup", client(&["lookup", &b.fingerprint], &a), T);
    done.assert_success("lookup");
    assert!(done.stdout.iter().any(|l| l.starts_with("online addr=")));
    let done = run(
        "send",
        client(&["send", &b.fingerprint, "hello capture"], &a),
        T,
    );
    done.assert_success("send");
    reg.out.expect("the relayed event", T, |l| {
        l.starts_with("event from=") && l.contains("hello capture")
    });
    let mut cmd = bin();
    cmd.args([
        "contacts", "update", "--server", &addr, "--user", "alice", "bob", "555",
    ]);
    run("contacts update", cmd, T).assert_success("contacts update");
    let mut cmd = bin();
    cmd.args(["contacts", "list", "--server", &addr, "--all"]);
    let done = run("contacts list", cmd, T);
    done.assert_success("contacts list");
    assert!(done.stdout.iter().any(|l| l == "alice\tbob\t555"));
    reg.kill();
    (a, b)
}

/// The capture holds the whole session: the relay to B and both contacts connections
/// with their answers (200 to the barrier, the list).
fn session_captured(read: &CaptureRead) -> bool {
    let relayed = read
        .datagrams
        .iter()
        .any(|d| !d.to_server && d.payload.get(1) == Some(&4));
    let answered = read.flows.len() >= 2
        && read.flows[0].server_data.len() >= 12
        && read.flows[1].server_data.len() >= 4 + 533;
    relayed && answered
}

/// Decodes the captured session and checks both renderings.
fn check_session_decode(file: &Path, port: u16, a: &Identity, b: &Identity) {
    let done = decode(file, port, false);
    done.assert_success("decode");
    let out = &done.stdout;
    let fp_a = format!("fp={}", a.fingerprint);
    let fp_b = format!("fp={}", b.fingerprint);
    // Each client command registers from its own socket, first without the cookie, then
    // with it: A twice (lookup, send), B once (register).
    for (fp, n) in [(&fp_a, 2), (&fp_b, 1)] {
        expect_lines(out, &["udp", "register(2)", fp, "cookie=false"], n);
        expect_lines(out, &["udp", "register(2)", fp, "cookie=true"], n);
    }
    expect_lines(out, &["register(2)", "layout=plain", "sig_len=64"], 6);
    expect_lines(out, &["cookie(9)", "params=0x01", "cookie="], 3);
    expect_lines(out, &["ok(1)", "keepalive=25", "public=127.0.0.1:"], 3);
    let target_b = format!("target={}", b.fingerprint);
    expect_lines(out, &["lookup(5)", &target_b], 1);
    expect_lines(
        out,
        &[
            "lookup-answer(6)",
            &target_b,
            "status=online",
            "home=\"rendezvous\"",
        ],
        1,
    );
    expect_lines(
        out,
        &[
            "server-event(3)",
            "event=punch",
            &format!("peer={}", a.fingerprint),
        ],
        1,
    );
    expect_lines(
        out,
        &[
            "relay(4)",
            "params=0x02",
            &format!("to={}", b.fingerprint),
            "len=13",
        ],
        1,
    );
    expect_lines(
        out,
        &[
            "relay(4)",
            "params=0x01",
            &format!("from={}", a.fingerprint),
            "len=13",
        ],
        1,
    );
    expect_lines(
        out,
        &["tcp", "hello role=client name=\"rendezvous-cli\""],
        2,
    );
    expect_lines(
        out,
        &[
            "tcp",
            "update(1) user=\"alice\" contact=\"bob\" phone=\"555\"",
        ],
        1,
    );
    expect_lines(out, &["tcp", "status(7) status=200 request=5"], 1);
    expect_lines(out, &["tcp", "list-all-answer(2) count=1 records=1"], 1);
    assert!(
        !out.iter().any(|l| l.contains("malformed")),
        "malformed lines:\n{}",
        out.join("\n")
    );
    assert!(
        done.stderr.iter().any(|l| l.starts_with("decode: ")),
        "no summary: {:?}",
        done.stderr
    );

    let json = decode(file, port, true);
    json.assert_success("decode --json");
    let objs = parse_json(&json.stdout);
    assert_eq!(objs.len(), out.len(), "one JSON object per text line");
    for (o, text) in objs.iter().zip(out) {
        for key in ["ts", "proto", "src", "dst", "type"] {
            let v = o[key].as_str().unwrap_or_else(|| panic!("no {key} in {o}"));
            assert!(text.contains(v), "{key}={v} not in the text line {text:?}");
        }
    }
    let registers: Vec<_> = objs
        .iter()
        .filter(|o| o["type"] == "register" && o["fp"] == b.fingerprint.as_str())
        .collect();
    assert_eq!(registers.len(), 2, "B's two registrations");
    assert_eq!(registers[1]["cookie"], true);
    assert_eq!(registers[1]["type_num"], 2);
    assert!(objs
        .iter()
        .any(|o| o["type"] == "lookup-answer" && o["status"] == "online"));
    let update = objs
        .iter()
        .find(|o| o["type"] == "update")
        .expect("update in JSON");
    assert_eq!(update["user"], "alice");
    assert_eq!(update["contact"], "bob");
    assert_eq!(update["phone"], "555");
}

/// Decodes the captured session without `--port`: the server's port (a random one, not
/// 4747) is found by its traffic, among the probe's datagrams on another port, and the
/// lines are those of `--port`. `--port` still overrides: the probe's port gives only the
/// probe's datagrams.
fn check_port_found(file: &Path, port: u16, probe_port: u16) {
    assert_ne!(
        port, 4747,
        "the server runs on a port other than the default"
    );
    let given = decode(file, port, false);
    given.assert_success("decode --port");
    let found = decode_with(file, None, false);
    found.assert_success("decode without --port");
    assert_eq!(found.stdout, given.stdout, "the same lines as with --port");
    assert_eq!(summary(&found), summary(&given), "the same counts");
    let note = format!("decode: port {port} carries the protocol (udp: ");
    let notes: Vec<&String> = found
        .stderr
        .iter()
        .filter(|l| l.contains("carries the protocol"))
        .collect();
    assert!(
        notes.len() == 1 && notes[0].starts_with(&note) && notes[0].contains("; tcp: 2 of 2 "),
        "{:?}",
        found.stderr
    );
    let probe = decode(file, probe_port, false);
    probe.assert_success("decode --port of the probe's port");
    assert!(!probe.stdout.is_empty());
    assert!(
        probe
            .stdout
            .iter()
            .all(|l| l.contains(&format!(":{probe_port} ")) && l.contains("len=5 malformed")),
        "{}",
        probe.stdout.join("\n")
    );
}

/// Captures a whole session with the capturer `start` makes (given the file, the capture
/// filter and the probe socket), checks the file's bytes with `check_file`, then its decoding. A capture the
/// kernel dropped packets from (a loaded machine) is taken again, up to 3 times.
fn captured_session(
    name: &str,
    start: impl Fn(&Path, &str, &UdpSocket) -> Capturer,
    check_file: impl Fn(&[u8]),
) {
    let dir = tmp();
    for attempt in 1..=3 {
        // The session writes and lists contacts as the design notes' open client role.
        let server = Server::start(&["--open-contacts"]);
        let port = server.addr.port();
        let file = dir.path().join(format!("{name}-{attempt}"));
        let probe = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        let probe_port = probe.local_addr().expect("probe address").port();
        // Both ends on 127.0.0.1, as every socket of the session: another test's client on
        // 127.1.x.y may have drawn the server's port as its source port.
        let filter = format!(
            "(port {port} or port {probe_port}) and src host 127.0.0.1 and dst host 127.0.0.1"
        );
        let cap = start(&file, &filter, &probe);
        let (a, b) = session(&server);
        let (file, dropped) = cap.stop_when(port, session_captured);
        if dropped && attempt < 3 {
            continue;
        }
        check_file(&std::fs::read(&file).expect("capture file"));
        check_session_decode(&file, port, &a, &b);
        check_port_found(&file, port, probe_port);
        return;
    }
}

/// tcpdump on `any` with link type `link` and the given filter; a large kernel buffer
/// and a snapshot length that fits every packet of the session.
fn tcpdump(link: &'static str) -> impl Fn(&Path, &str, &UdpSocket) -> Capturer {
    move |file, filter, probe| {
        let mut cmd = Command::new("tcpdump");
        cmd.args(["-i", "any", "-y", link, "-U", "--immediate-mode"])
            .args(["-B", "32768", "-s", "16384", "-w"])
            .arg(file)
            .arg(filter);
        Capturer::start("tcpdump", cmd, "listening on", file.to_path_buf(), probe)
    }
}

fn tcpdump_session(link: &'static str, expect_link: i32) {
    if !can_capture("tcpdump") {
        return;
    }
    captured_session(&format!("tcpdump-{link}"), tcpdump(link), |bytes| {
        assert!(bytes.len() >= 24, "tcpdump wrote {} bytes", bytes.len());
        let link_type = i32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        assert_eq!(link_type, expect_link, "the capture's link type");
    });
}

#[test]
fn tcpdump_cooked_v2_session_decodes() {
    tcpdump_session("LINUX_SLL2", 276);
}

#[test]
fn tcpdump_cooked_v1_session_decodes() {
    // What `tcpdump -i any` writes by default before libpcap 1.10 (and with -y LINUX_SLL).
    tcpdump_session("LINUX_SLL", 113);
}

#[test]
fn tshark_pcapng_session_decodes() {
    if !can_capture("tshark") {
        return;
    }
    let tshark = |file: &Path, filter: &str, probe: &UdpSocket| {
        let mut cmd = Command::new("tshark");
        cmd.args(["-i", "lo", "-B", "32", "-s", "16384", "-w"])
            .arg(file)
            .args(["-f", filter]);
        Capturer::start("tshark", cmd, "Capturing on", file.to_path_buf(), probe)
    };
    captured_session("tshark", tshark, |bytes| {
        assert_eq!(&bytes[..4], &[0x0a, 0x0d, 0x0d, 0x0a], "a pcapng file");
    });
}
