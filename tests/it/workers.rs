//! `serve --workers N` on the real binary (docs/PROTOCOL.md §7, "Workers"): N UDP threads
//! on one port's SO_REUSEPORT group share one directory, so clients that the kernel hands
//! to different workers register, find each other, punch and relay as on one; the default
//! is one worker per core; a second server on a port in use is refused before its UDP
//! sockets could take the first one's datagrams.

use crate::common::{bin, free_port, Server};
use rendezvous::client::{Client, Incoming};
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::LookupStatus;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

/// The names of the server's threads that are UDP workers (`udp-0`, `udp-1`, ...), once
/// `n` of them run (they start after the sockets are bound), or what runs at the deadline.
fn udp_threads(pid: u32, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the server's threads")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .filter(|n| n.starts_with("udp-"))
            .collect();
        names.sort();
        if names.len() >= n || std::time::Instant::now() > deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn clients(server: &Server, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let id = Identity::generate(KeyAlgorithm::Ed25519, "worker-test").expect("identity");
            Client::new(server.addr, id, Some("127.0.0.1:0".parse().unwrap())).expect("socket")
        })
        .collect()
}

/// 24 clients (24 source ports: all on one of 3 workers with odds 3^-23) register; each
/// looks up the next and finds its address, the next is told to punch, and an event sent
/// to the next arrives: every pair across workers sees one directory.
#[test]
fn clients_on_different_workers_share_one_directory() {
    let mut server = Server::start(&["--workers", "3"]);
    let line = server
        .proc
        .out
        .wait_for(T, |l| l.starts_with("udp workers "))
        .expect("serve says how many UDP workers it runs");
    assert_eq!(line, "udp workers 3");
    assert_eq!(
        udp_threads(server.pid(), 3),
        ["udp-0", "udp-1", "udp-2"],
        "one thread per worker"
    );
    let mut cs = clients(&server, 24);
    for c in &mut cs {
        c.register(3, T).expect("registers").expect("OK payload");
    }
    let n = cs.len();
    for i in 0..n {
        let next = (i + 1) % n;
        let (fp, addr) = (
            cs[next].identity().fingerprint(),
            cs[next].local_addr().unwrap(),
        );
        let from = cs[i].identity().fingerprint();
        match cs[i].lookup(fp, T).expect("lookup answer") {
            (LookupStatus::Online { addr: a, .. }, _) => {
                assert_eq!(a, addr, "client {i} -> {next}")
            }
            other => panic!("client {next} should be online for {i}: {other:?}"),
        }
        cs[i]
            .send_event(fp, format!("from {i}").as_bytes())
            .unwrap();
        let mut punched = false;
        let mut relayed = false;
        let deadline = std::time::Instant::now() + T;
        while !(punched && relayed) && std::time::Instant::now() < deadline {
            match crate::common::next_arrival(&mut cs[next], "punch or relay", T, |m| {
                matches!(m, Incoming::Punch { .. } | Incoming::Relay { .. })
            }) {
                Incoming::Punch { peer, .. } if peer == from => punched = true,
                Incoming::Relay { from: f, event } if f == from => {
                    assert_eq!(event, format!("from {i}").as_bytes());
                    relayed = true;
                }
                _ => {}
            }
        }
        assert!(
            punched && relayed,
            "client {next} got the punch and the event of {i}"
        );
    }
}

/// With no `--workers`, one worker per core this process may run on.
#[test]
fn the_default_is_one_worker_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut server = Server::start(&[]);
    let line = server
        .proc
        .out
        .wait_for(T, |l| l.starts_with("udp workers "))
        .expect("serve says how many UDP workers it runs");
    assert_eq!(line, format!("udp workers {cores}"));
    assert_eq!(udp_threads(server.pid(), cores).len(), cores);
    server.proc.kill();
}

/// A second server on a port in use fails (exit 1, the TCP port named) and the first one
/// keeps every datagram: its client still looks itself up.
#[test]
fn a_second_server_on_the_same_port_is_refused() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = || {
        let mut cmd = bin();
        cmd.args([
            "serve",
            "--memory-only",
            "--workers",
            "2",
            "--listen",
            &listen,
        ]);
        cmd
    };
    let first = Server::spawn("first", serve());
    let second = crate::common::run("second", serve(), T);
    assert_eq!(second.status.code(), Some(1), "{:?}", second.stderr);
    assert!(
        second
            .stderr
            .iter()
            .any(|l| l.contains("cannot listen on TCP")),
        "{:?}",
        second.stderr
    );
    let mut c = clients(&first, 8);
    for c in &mut c {
        c.register(3, T).expect("registers").expect("OK payload");
        let fp = c.identity().fingerprint();
        assert!(matches!(
            c.lookup(fp, T).expect("answer").0,
            LookupStatus::Online { .. }
        ));
    }
}
