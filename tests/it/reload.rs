//! SIGHUP on the real binary (docs/PROTOCOL.md §7, "Reload"): the configuration file is
//! read again; peers, limits and the log level change without dropping a client or a
//! connection; other settings wait for a restart; a bad file changes nothing.

use crate::common::{self, bin, field, status_field, status_lines, Identity, Proc, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn hup(server: &Server) {
    let pid = rustix::process::Pid::from_raw(server.pid() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP");
}

/// `serve --config FILE` on loopback, with `extra` flags.
fn serve_with(config: &Path, extra: &[&str]) -> Server {
    let mut cmd = bin();
    cmd.args(["serve", "--config"]).arg(config).args(extra);
    Server::spawn("reloaded", cmd)
}

/// Sends SIGHUP and waits for the `reps`-th line containing `end` (the reload's last line).
fn reload_and_wait(server: &mut Server, end: &str, reps: usize) {
    hup(server);
    let deadline = Instant::now() + T;
    while count(server, end) < reps {
        assert!(
            Instant::now() < deadline,
            "no {end:?} after SIGHUP; stderr: {:#?}",
            server.proc.stderr_lines()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(server: &Server, needle: &str) -> usize {
    let lines = server.proc.stderr_lines();
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// The status line of the link to `peer`, once `pred` holds for it (within `T`).
fn link_line(server: SocketAddr, peer: SocketAddr, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + T;
    loop {
        let lines = status_lines(server);
        let tag = format!("peer={peer} ");
        let line = lines.iter().find(|l| l.starts_with(&tag)).cloned();
        if let Some(l) = line.filter(|l| pred(l)) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no such link to {peer}: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client-role hello on the open contacts plane, left open.
fn open_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    let mut hello = vec![2u8];
    hello.resize(257, 0);
    s.write_all(&hello).unwrap();
    s
}

/// Asks for the status on `s` and returns its text (docs/PROTOCOL.md §8.5).
fn status_over(s: &mut TcpStream) -> String {
    s.write_all(&[6]).expect("status request");
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("status answer");
    assert_eq!(head[0], 6, "{head:02x?}");
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut text = vec![0u8; len];
    s.read_exact(&mut text).unwrap();
    String::from_utf8_lossy(&text).into_owned()
}

/// `register --identity ID` against `server`, until its first line.
fn register(server: SocketAddr, id: &Identity) -> (Proc, String) {
    let mut cmd = bin();
    cmd.args(["register", "--server", &server.to_string(), "--identity"])
        .arg(id.dir_arg());
    let mut p = Proc::spawn("register", cmd);
    let line = p.out.expect("a first line", T, |l| {
        l.starts_with("registered ") || l.starts_with("error ")
    });
    (p, line)
}

#[test]
fn sighup_applies_peers_limits_and_log_level_and_keeps_clients_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rendezvous.toml");
    let base = "listen = \"127.0.0.1:0\"\nmemory-only = true\nopen-contacts = true\n";
    std::fs::write(&cfg, format!("{base}max-clients = 100\n")).unwrap();
    let mut a = serve_with(&cfg, &[]);
    let b = Server::start(&["--allow-peer", "127.0.0.1/32"]);
    let dead: SocketAddr = ([127, 0, 0, 1], common::free_port()).into();

    let x = Identity::new("x");
    let (_x_reg, line) = register(a.addr, &x);
    assert!(line.starts_with("registered "), "{line}");
    let mut held = open_client(a.addr);
    assert!(status_over(&mut held).contains("directory=1"));

    // Peers, a limit and the log level change; the alias needs a restart.
    let peers = format!("peer = [\"{}\", \"{dead}\"]\n", b.addr);
    let text = format!("{base}{peers}max-clients = 1\nlog-level = \"debug\"\nalias = \"eu-1\"\n");
    std::fs::write(&cfg, text).unwrap();
    reload_and_wait(&mut a, "configuration reloaded", 1);
    for key in ["key=peer", "key=max-clients", "key=log-level"] {
        assert_eq!(count(&a, key), 1, "{key}: {:#?}", a.proc.stderr_lines());
    }
    assert_eq!(count(&a, "takes effect at the next restart key=alias"), 1);

    let up = link_line(a.addr, b.addr, |l| field(l, "state") == Some("up"));
    assert_eq!(field(&up, "learned"), Some("false"), "{up}");
    // Debug lines are written from now on (none before).
    a.proc
        .expect_stderr("a debug line", T, |l| l.contains(" DEBUG "));
    // max-clients 1: a second client takes the place of the first, which never kept
    // alive (docs/PROTOCOL.md §5.11); under the old bound both would be online.
    let (_y_reg, line) = register(a.addr, &Identity::new("y"));
    assert!(line.starts_with("registered "), "{line}");
    let lines = status_lines(a.addr);
    assert_eq!(status_field(&lines, "directory"), "1", "{lines:#?}");
    assert_eq!(
        status_field(&lines, "name"),
        "rendezvous",
        "the alias waits"
    );
    // The connection opened before the reload still answers.
    assert!(status_over(&mut held).contains("directory=1"));

    // Removing the peers retires the dead one's link; B, which the node list publishes,
    // stays linked as learned while mesh is on.
    std::fs::write(&cfg, format!("{base}max-clients = 1\n")).unwrap();
    reload_and_wait(&mut a, "configuration reloaded", 2);
    link_line(a.addr, dead, |l| field(l, "state") == Some("retired"));
    let b_link = link_line(a.addr, b.addr, |l| field(l, "learned") == Some("true"));
    assert_eq!(field(&b_link, "state"), Some("up"), "{b_link}");
    // --no-mesh retires it too; the connection opened before any reload still answers.
    std::fs::write(&cfg, format!("{base}max-clients = 1\nno-mesh = true\n")).unwrap();
    reload_and_wait(&mut a, "configuration reloaded", 3);
    link_line(a.addr, b.addr, |l| field(l, "state") == Some("retired"));
    assert!(status_over(&mut held).contains("directory=1"));
}

#[test]
fn a_bad_file_on_reload_is_refused_and_the_old_settings_stay() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rendezvous.toml");
    let b = Server::start(&["--allow-peer", "127.0.0.1/32"]);
    let good = format!(
        "listen = \"127.0.0.1:0\"\nmemory-only = true\npeer = [\"{}\"]\n",
        b.addr
    );
    std::fs::write(&cfg, &good).unwrap();
    let mut a = serve_with(&cfg, &[]);
    link_line(a.addr, b.addr, |l| field(l, "state") == Some("up"));

    // Each bad file: the peer removed too, and yet nothing changes.
    let bad = [
        ("peer = []\ncolour = \"blue\"\n", "unknown key `colour`"),
        ("peer = []\nmax-clients = \"many\"\n", "key `max-clients`"),
        ("peer = [\n", "not a valid configuration"),
    ];
    for (i, (tail, why)) in bad.iter().enumerate() {
        let text = "listen = \"127.0.0.1:0\"\nmemory-only = true\n".to_string() + tail;
        std::fs::write(&cfg, text).unwrap();
        reload_and_wait(&mut a, "reload refused", i + 1);
        let refusal = a
            .proc
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("reload refused"))
            .nth(i)
            .unwrap();
        assert!(refusal.contains(why), "{refusal}");
        assert!(refusal.contains(&cfg.display().to_string()), "{refusal}");
        let up = link_line(a.addr, b.addr, |_| true);
        assert_eq!(field(&up, "state"), Some("up"), "after {tail:?}: {up}");
    }
    assert_eq!(count(&a, "configuration reloaded"), 0);
    assert!(a.proc.wait_exit(Duration::ZERO).is_none(), "still running");
    // A good file again is taken.
    std::fs::write(&cfg, &good).unwrap();
    reload_and_wait(&mut a, "configuration reloaded", 1);
    assert_eq!(count(&a, "setting changed"), 0, "nothing changed");
}
