//! Several real servers federated over TCP: contacts written at either end of a line of
//! five servers (each peered only with its neighbours) reach every server, and every
//! server's `rendezvous status` ends with the same contacts digest.

use crate::common;
use crate::common::{free_port, status_field as value, status_lines as status};

use common::{bin, field, Identity, Proc, Server};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Deadline of one command or awaited line.
const T: Duration = Duration::from_secs(20);

fn update(addr: SocketAddr, user: &str, contact: &str, phone: &str) {
    let mut cmd = bin();
    cmd.args([
        "contacts",
        "update",
        "--server",
        &addr.to_string(),
        "--user",
        user,
        contact,
        phone,
    ]);
    common::run("update", cmd, Duration::from_secs(20)).assert_success("contacts update");
}

/// `n` servers in a line on loopback, each a `--peer` of its neighbours only
/// (`--memory-only --no-mesh`), with `alias(i)` as `--alias` when given (none: the
/// default name).
fn line(n: usize, alias: impl Fn(usize) -> Option<String>) -> Vec<Server> {
    // Ports first, so each server can name its neighbours with --peer. A port taken in
    // between makes that server fail to start: try again with new ports.
    'attempt: loop {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut started = Vec::new();
        for i in 0..n {
            let mut cmd = bin();
            cmd.args(["serve", "--memory-only", "--no-mesh", "--open-contacts"])
                .args(["--listen", &format!("127.0.0.1:{}", ports[i])]);
            if let Some(a) = alias(i) {
                cmd.args(["--alias", &a]);
            }
            if i > 0 {
                cmd.args(["--peer", &format!("127.0.0.1:{}", ports[i - 1])]);
            }
            if i + 1 < n {
                cmd.args(["--peer", &format!("127.0.0.1:{}", ports[i + 1])]);
            }
            let name = format!("s{i}");
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Server::spawn(&name, cmd)
            })) {
                Ok(s) => started.push(s),
                Err(_) => continue 'attempt,
            }
        }
        return started;
    }
}

/// Servers started without `--alias` all carry the default name; federation identifies a
/// server by its node uid, so they still share their directories: a client registered at
/// one end of a line of three is found online from the other end.
#[test]
fn default_named_servers_share_their_directories() {
    let servers = line(3, |_| None);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let a = Identity::new("a");
    let mut cmd = bin();
    cmd.args(["register", "--server", &addrs[0].to_string(), "--identity"])
        .arg(a.dir_arg());
    let mut reg = Proc::spawn("register-a", cmd);
    let line = reg
        .out
        .expect("registered line", T, |l| l.starts_with("registered "));
    let public = field(&line, "public").unwrap().to_string();
    let c = Identity::new("c");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut cmd = bin();
        cmd.args(["lookup", "--server", &addrs[2].to_string(), "--identity"])
            .arg(c.dir_arg())
            .arg(&a.fingerprint);
        let done = common::run("lookup", cmd, T);
        done.assert_success("lookup at s2");
        let ans = done.stdout.join("\n");
        if ans.starts_with("online ") {
            assert_eq!(field(&ans, "addr"), Some(public.as_str()), "{ans}");
            assert_eq!(field(&ans, "home"), Some("rendezvous"), "{ans}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a's registration never reached the third default-named server: {ans}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The asker's lookup registered unlisted (docs/PROTOCOL.md §5.2): it is in no
    // directory. Registered at s2, both clients reach every directory.
    let counts: Vec<String> = addrs
        .iter()
        .map(|s| value(&status(*s), "directory"))
        .collect();
    assert_eq!(counts, ["1", "1", "1"], "the lookup listed nobody");
    let mut cmd = bin();
    cmd.args(["register", "--server", &addrs[2].to_string(), "--identity"])
        .arg(c.dir_arg());
    let mut reg_c = Proc::spawn("register-c", cmd);
    reg_c
        .out
        .expect("registered line", T, |l| l.starts_with("registered "));
    loop {
        let st: Vec<Vec<String>> = addrs.iter().map(|s| status(*s)).collect();
        let counts: Vec<String> = st.iter().map(|s| value(s, "directory")).collect();
        let digests: Vec<String> = st.iter().map(|s| value(s, "directory_sha512")).collect();
        if counts.iter().all(|c| c == "2") && digests.iter().all(|d| *d == digests[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "directories differ: {counts:?} {digests:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn five_servers_in_a_line_converge() {
    let servers = line(5, |i| Some(format!("s{i}")));
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    // A client registered at s0 (it keeps alive, and prints what reaches it).
    let a = Identity::new("a");
    let mut cmd = bin();
    cmd.args(["register", "--server", &addrs[0].to_string(), "--identity"])
        .arg(a.dir_arg());
    let mut reg = Proc::spawn("register-a", cmd);
    let line = reg
        .out
        .expect("registered line", T, |l| l.starts_with("registered "));
    let public = field(&line, "public").unwrap().to_string();
    update(addrs[0], "alice", "bob", "111");
    update(addrs[4], "zoe", "yan", "999");
    update(addrs[2], "mid", "dle", "555");
    // Wait (with a deadline) until every server reports 3 contacts and one digest.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st: Vec<Vec<String>> = addrs.iter().map(|a| status(*a)).collect();
        let counts: Vec<String> = st.iter().map(|s| value(s, "contacts")).collect();
        let digests: Vec<String> = st.iter().map(|s| value(s, "contacts_sha512")).collect();
        let nodes: Vec<String> = st.iter().map(|s| value(s, "node_list_sha512")).collect();
        let node_counts: Vec<String> = st.iter().map(|s| value(s, "nodes")).collect();
        let dirs: Vec<String> = st.iter().map(|s| value(s, "directory_sha512")).collect();
        let dir_counts: Vec<String> = st.iter().map(|s| value(s, "directory")).collect();
        if counts.iter().all(|c| c == "3")
            && dir_counts.iter().all(|c| c == "1")
            && dirs.iter().all(|d| *d == dirs[0])
            && digests.iter().all(|d| *d == digests[0])
            && node_counts.iter().all(|c| c == "5")
            && nodes.iter().all(|h| *h == nodes[0])
        {
            assert_eq!(digests[0].len(), 128, "SHA-512 in hex");
            // The middle server has both neighbours up and has heard their heartbeats or
            // will; its clock is at least the number of writes it has seen.
            let mid = &st[2];
            assert_eq!(
                mid.iter().filter(|l| l.starts_with("peer=")).count(),
                2,
                "{mid:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence in 60 s: counts {counts:?} digests {digests:?} nodes {node_counts:?} \
             {nodes:?} directory {dir_counts:?} {dirs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A lookup at the far end answers for the client registered at s0, home s0, and s0
    // (which the client's NAT mapping is open to) sends it the punch request.
    let b = Identity::new("b");
    let mut cmd = bin();
    cmd.args(["lookup", "--server", &addrs[4].to_string(), "--identity"])
        .arg(b.dir_arg())
        .arg(&a.fingerprint);
    let done = common::run("lookup", cmd, T);
    done.assert_success("lookup at s4");
    let ans = done.stdout.join("\n");
    assert!(ans.starts_with("online "), "{ans}");
    assert_eq!(field(&ans, "addr"), Some(public.as_str()), "{ans}");
    assert_eq!(field(&ans, "home"), Some("s0"), "{ans}");
    let punch = reg
        .out
        .expect("punch request via s0", T, |l| l.starts_with("punch "));
    assert_eq!(
        field(&punch, "from"),
        Some(b.fingerprint.as_str()),
        "{punch}"
    );
    // An event sent at s4 is forwarded along the line and delivered by s0.
    let mut cmd = bin();
    cmd.args(["send", "--server", &addrs[4].to_string(), "--identity"])
        .arg(b.dir_arg())
        .args([&a.fingerprint, "across five servers"]);
    common::run("send", cmd, T).assert_success("send at s4");
    let ev = reg
        .out
        .expect("event via s0", T, |l| l.starts_with("event "));
    assert_eq!(field(&ev, "from"), Some(b.fingerprint.as_str()));
    assert_eq!(field(&ev, "text"), Some("across five servers"));

    // A conflicting write at both ends: last-writer-wins picks one value everywhere.
    update(addrs[0], "alice", "bob", "222");
    update(addrs[4], "alice", "bob", "333");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let digests: Vec<String> = addrs
            .iter()
            .map(|a| value(&status(*a), "contacts_sha512"))
            .collect();
        if digests.iter().all(|d| *d == digests[0]) {
            let mut cmd = bin();
            cmd.args([
                "contacts",
                "list",
                "--server",
                &addrs[2].to_string(),
                "--all",
            ]);
            let list = common::run("list", cmd, Duration::from_secs(20)).stdout;
            let alice = list.iter().find(|l| l.starts_with("alice\tbob\t")).unwrap();
            assert!(
                alice.ends_with("333"),
                "the later write (higher clock) wins: {alice}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence after the conflict: {digests:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `peer=` lines of a status whose state is `up`.
fn peers_up(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with("peer=") && field(l, "state") == Some("up"))
        .count()
}

#[test]
fn one_peer_each_ends_meshed_with_all() {
    // s0 admits new servers by network (their keys are learned on first contact); s1-s3
    // each name only s0. From s0's node list they learn of each other, connect, prove
    // their node keys, and every server ends with a link up to each of the three others.
    let s0 = Server::start(&[
        "--alias",
        "s0",
        "--allow-peer",
        "127.0.0.0/8",
        "--open-contacts",
    ]);
    let peer = s0.addr.to_string();
    let others: Vec<Server> = (1..4)
        .map(|i| {
            let alias = format!("s{i}");
            Server::start(&["--alias", &alias, "--peer", &peer, "--open-contacts"])
        })
        .collect();
    let addrs: Vec<SocketAddr> = std::iter::once(s0.addr)
        .chain(others.iter().map(|s| s.addr))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st: Vec<Vec<String>> = addrs.iter().map(|a| status(*a)).collect();
        let up: Vec<usize> = st.iter().map(|s| peers_up(s)).collect();
        let nodes: Vec<String> = st.iter().map(|s| value(s, "node_list_sha512")).collect();
        if up.iter().all(|&n| n == 3) && nodes.iter().all(|h| *h == nodes[0]) {
            assert!(st.iter().all(|s| value(s, "nodes") == "4"));
            // s1 learned s2 and s3 from the node list.
            let learned = st[1]
                .iter()
                .filter(|l| l.starts_with("peer=") && field(l, "learned") == Some("true"))
                .count();
            assert_eq!(learned, 2, "{:?}", st[1]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no full mesh in 60 s: links up {up:?}, node lists {nodes:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
