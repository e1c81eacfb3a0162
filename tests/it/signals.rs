//! Stopping the real binary (docs/PROTOCOL.md §7, "Signals"): SIGTERM or SIGINT drains
//! (no new connections, peers told, writes in flight made durable and answered) and exits
//! 0 within `--drain-timeout`; a second signal stops at once.

use crate::common::{bin, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn signal(server: &Server, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(server.pid() as i32).expect("a pid");
    rustix::process::kill_process(pid, sig).expect("signal the server");
}

/// A client-role hello, on the open contacts plane.
fn client(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    let mut hello = vec![2u8];
    hello.resize(257, 0);
    s.write_all(&hello).unwrap();
    s
}

fn update(i: u32) -> Vec<u8> {
    let mut v = vec![1u8; 533];
    v[1..].fill(0);
    let (u, c) = (b"drainer".as_slice(), format!("c{i}"));
    v[1..1 + u.len()].copy_from_slice(u);
    v[257..257 + c.len()].copy_from_slice(c.as_bytes());
    v[513..514].copy_from_slice(b"1");
    v
}

/// Reads a status frame's code.
fn status_code(s: &mut TcpStream) -> u16 {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("a status frame");
    assert_eq!(head[0], 7, "{head:02x?}");
    let mut detail = vec![0u8; usize::from(head[4])];
    s.read_exact(&mut detail).unwrap();
    u16::from_be_bytes([head[1], head[2]])
}

/// True once a stderr line of `server` contains `needle` (read by its own thread, which
/// may still be behind the exit); false after `T`.
fn logged(server: &Server, needle: &str) -> bool {
    let deadline = Instant::now() + T;
    loop {
        if server
            .proc
            .stderr_lines()
            .iter()
            .any(|l| l.contains(needle))
        {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("{needle:?} not in {:?}", server.proc.stderr_lines());
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve(dir: &std::path::Path, extra: &[&str]) -> Server {
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--open-contacts",
        "--data-dir",
    ])
    .arg(dir)
    .args(extra);
    Server::spawn("drained", cmd)
}

#[test]
fn sigterm_makes_writes_in_flight_durable_answers_them_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[]);
    let mut c = client(&server);
    // Accepted and read (a Barrier answered), then writes and a Barrier in flight.
    c.write_all(&[5]).unwrap();
    assert_eq!(status_code(&mut c), 200);
    let mut bytes = Vec::new();
    for i in 0..2000 {
        bytes.extend(update(i));
    }
    bytes.push(5);
    c.write_all(&bytes).unwrap();
    let t0 = Instant::now();
    signal(&server, rustix::process::Signal::TERM);
    assert_eq!(
        status_code(&mut c),
        200,
        "the Barrier in flight is answered"
    );
    let status = server.proc.wait_exit(T).expect("the server exits");
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(0), "{:?}", server.proc.stderr_lines());
    assert!(logged(&server, "draining") && logged(&server, "drained"));
    println!("figure: SIGTERM with 2000 writes in flight: exit 0 in {took:.2?}");
    // Every write is there after a restart.
    let server = serve(dir.path(), &[]);
    let mut cmd = bin();
    cmd.args(["status", "--server", &server.addr.to_string()]);
    let st = crate::common::run("status", cmd, T);
    assert!(st.stdout.iter().any(|l| l == "contacts=2000"), "{st:?}");
}

/// A client that asks for every contact and never reads: the drain cannot finish.
fn stuck_reader(server: &Server) -> TcpStream {
    let mut c = client(server);
    let mut bytes = Vec::new();
    for i in 0..20_000 {
        bytes.extend(update(i));
    }
    bytes.push(5);
    c.write_all(&bytes).unwrap();
    assert_eq!(status_code(&mut c), 200, "20,000 contacts written");
    c.write_all(&[2]).unwrap(); // ListAll, about 10.7 MB, never read
    c
}

#[test]
fn the_drain_is_bounded_and_a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Bounded: one SIGTERM, a reader that never reads, exit 0 at the bound.
    let mut server = serve(dir.path(), &["--drain-timeout", "1"]);
    let _stuck = stuck_reader(&server);
    signal(&server, rustix::process::Signal::TERM);
    let status = server.proc.wait_exit(T).expect("exits at the bound");
    assert_eq!(status.code(), Some(0));
    assert!(logged(&server, "drain bound reached"));
    // A second signal during a long drain: at once, status 130.
    let mut server = serve(dir.path(), &["--drain-timeout", "60"]);
    let _stuck = stuck_reader(&server);
    signal(&server, rustix::process::Signal::INT);
    server
        .proc
        .expect_stderr("the drain began", T, |l| l.contains("draining"));
    let t0 = Instant::now();
    signal(&server, rustix::process::Signal::INT);
    let status = server
        .proc
        .wait_exit(T)
        .expect("exits on the second signal");
    assert_eq!(status.code(), Some(130), "{:?}", server.proc.stderr_lines());
    println!(
        "figure: second signal during a 60 s drain: exit 130 in {:.2?}",
        t0.elapsed()
    );
}
