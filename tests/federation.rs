//! Several real servers federated over TCP: contacts written at either end of a line of
//! five servers (each peered only with its neighbours) reach every server, and every
//! server's `rendezvous status` ends with the same contacts digest.

mod common;

use common::{bin, field, Server};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn status(addr: SocketAddr) -> Vec<String> {
    let mut cmd = bin();
    cmd.args(["status", "--server", &addr.to_string()]);
    let done = common::run("status", cmd, Duration::from_secs(20));
    done.assert_success("status");
    done.stdout.clone()
}

fn value(lines: &[String], key: &str) -> String {
    lines
        .iter()
        .find_map(|l| field(l, key).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key}= in {lines:?}"))
}

fn update(addr: SocketAddr, user: &str, contact: &str, phone: &str) {
    let mut cmd = bin();
    cmd.args([
        "contacts",
        "update",
        "--server",
        &addr.to_string(),
        user,
        contact,
        phone,
    ]);
    common::run("update", cmd, Duration::from_secs(20)).assert_success("contacts update");
}

#[test]
fn five_servers_in_a_line_converge() {
    // Ports first, so each server can name its neighbours with --peer. A port taken in
    // between makes that server fail to start: try again with new ports.
    let servers: Vec<Server> = 'attempt: loop {
        let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
        let mut started = Vec::new();
        for i in 0..5 {
            let mut cmd = bin();
            cmd.args(["serve", "--memory-only", "--alias", &format!("s{i}")])
                .args(["--listen", &format!("127.0.0.1:{}", ports[i])]);
            if i > 0 {
                cmd.args(["--peer", &format!("127.0.0.1:{}", ports[i - 1])]);
            }
            if i < 4 {
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
        break started;
    };
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    update(addrs[0], "alice", "bob", "111");
    update(addrs[4], "zoe", "yan", "999");
    update(addrs[2], "mid", "dle", "555");
    // Wait (with a deadline) until every server reports 3 contacts and one digest.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st: Vec<Vec<String>> = addrs.iter().map(|a| status(*a)).collect();
        let counts: Vec<String> = st.iter().map(|s| value(s, "contacts")).collect();
        let digests: Vec<String> = st.iter().map(|s| value(s, "contacts_sha512")).collect();
        if counts.iter().all(|c| c == "3") && digests.iter().all(|d| *d == digests[0]) {
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
            "no convergence in 60 s: counts {counts:?} digests {digests:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
            cmd.args(["contacts", "list", "--server", &addrs[2].to_string()]);
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
