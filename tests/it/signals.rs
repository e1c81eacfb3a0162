//! Stopping the real binary (docs/PROTOCOL.md §7, "Signals"): SIGTERM or SIGINT drains
//! (new hellos refused with 503 `draining`, peers told, writes in flight made durable and
//! answered) and exits 0 within `--drain-timeout`; a second signal stops at once.
//! `rendezvous status` is a health check: 0 serving, 3 draining, 1 unreachable.

use crate::common::drain::{client, signal, status_code, status_frame, stuck_reader, update};
use crate::common::{bin, free_port, run, status_field, Finished, Server};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

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

/// `rendezvous status --server SERVER [--tls]`, run to its end.
fn status(server: &str, tls: bool) -> Finished {
    let mut cmd = bin();
    cmd.args(["status", "--server", server]);
    if tls {
        cmd.arg("--tls");
    }
    run("status", cmd, T)
}

#[test]
fn status_exits_0_serving_3_draining_and_1_unreachable() {
    // Unreachable: nothing listens on the port.
    let nobody = format!("127.0.0.1:{}", free_port());
    let done = status(&nobody, false);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(
        done.stderr.join("\n").contains("cannot connect"),
        "{done:?}"
    );
    // Serving: 0, and the answer says so.
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &["--drain-timeout", "60"]);
    let addr = server.addr.to_string();
    for tls in [false, true] {
        let done = status(&addr, tls);
        assert_eq!(done.status.code(), Some(0), "tls {tls}: {done:?}");
        assert_eq!(status_field(&done.stdout, "health"), "ok");
    }
    // Draining: a reader that never reads holds the drain open; one more connection is
    // admitted before it begins.
    let _stuck = stuck_reader(&server);
    let mut admitted = client(&server);
    admitted.write_all(&[5]).unwrap();
    assert_eq!(status_code(&mut admitted), 200, "admitted before the drain");
    signal(&server, rustix::process::Signal::TERM);
    server
        .proc
        .expect_stderr("the drain began", T, |l| l.contains("draining"));
    // A new hello is refused at once, on the wire and to `status`, with TLS or without.
    let mut late = client(&server);
    assert_eq!(status_frame(&mut late), (503, "draining".to_string()));
    for tls in [false, true] {
        let done = status(&addr, tls);
        assert_eq!(done.status.code(), Some(3), "tls {tls}: {done:?}");
        assert!(done.stdout.is_empty(), "{done:?}");
        assert!(done.stderr.join("\n").contains("draining"), "{done:?}");
    }
    // The connection admitted before the drain is still answered: health=draining.
    admitted.write_all(&[6]).unwrap();
    let mut head = [0u8; 5];
    admitted.read_exact(&mut head).expect("a status answer");
    assert_eq!(head[0], 6, "{head:02x?}");
    let mut text = vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize];
    admitted.read_exact(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.lines().any(|l| l == "health=draining"), "{text}");
    // The server is still there, draining, until a second signal.
    assert!(server.proc.wait_exit(Duration::ZERO).is_none());
    signal(&server, rustix::process::Signal::INT);
    let code = server.proc.wait_exit(T).expect("exits").code();
    assert_eq!(code, Some(130));
}
