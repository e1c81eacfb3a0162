//! `serve --metrics` (docs/METRICS.md) on the real binary: a client registers and looks
//! up, a contact is written, and scrapes over a plain TCP connection show the counters
//! moving (registrations, lookups by result, the store latency histogram, process
//! metrics); `promtool check metrics` accepts a scrape (skipped only when promtool is
//! missing and `CI` is not `true`); Prometheus' OpenMetrics `Accept` gets OpenMetrics;
//! anything but `GET /metrics` and `GET /healthz` is 404; `/healthz` is 200 `ok` while the
//! server serves and 503 `draining` once a drain begins. Waits are events with deadlines:
//! a scrape is repeated until the loop's published counters show what the test did.

use crate::common;

use common::{bin, run, Server};
use rendezvous::client::Client;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::LookupStatus;
use rendezvous::wire::Fingerprint;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// The address of `metrics http://ADDR/metrics` on the server's stdout.
fn metrics_addr(server: &mut Server) -> SocketAddr {
    let line = server
        .proc
        .out
        .expect("metrics line", T, |l| l.starts_with("metrics http://"));
    line.trim()["metrics http://".len()..]
        .trim_end_matches("/metrics")
        .parse()
        .unwrap_or_else(|e| panic!("bad metrics address in {line:?}: {e}"))
}

/// One HTTP request (the request line and extra header lines); `(status line, headers,
/// body)`.
fn http(addr: SocketAddr, target: &str, headers: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).expect("read the answer");
    let (head, body) = all.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// The value of the sample `series` (name and labels exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Asks `GET target` until `done` holds for the status line and the body (the loop
/// publishes its counters a few times a second), or panics at the deadline with the last
/// answer; returns its body.
fn ask_until(
    addr: SocketAddr,
    target: &str,
    what: &str,
    done: impl Fn(&str, &str) -> bool,
) -> String {
    let deadline = Instant::now() + T;
    loop {
        let (status, _, body) = http(addr, target, "");
        if done(&status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {T:?}: {status}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Scrapes `/metrics` (each answer 200) until `done` holds for the body.
fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    ask_until(addr, "/metrics", what, |status, body| {
        assert_eq!(status, "HTTP/1.1 200 OK");
        done(body)
    })
}

/// `promtool check metrics` on `text`: must pass; skipped (with a note) only when promtool
/// is missing and `CI` is not `true`.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("promtool: {e}; CI=true forbids skipping (apt-get install prometheus)")
        }
        Err(e) => {
            println!("note: promtool check skipped: {e} (apt-get install prometheus)");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed: {said}\non:\n{text}"
    );
    println!("promtool check metrics: ok {}", said.trim());
}

fn client(server: &Server) -> Client {
    let id = Identity::generate(KeyAlgorithm::Ed25519, "test").expect("identity");
    Client::new(server.addr, id, Some("127.0.0.1:0".parse().unwrap())).expect("socket")
}

#[test]
fn a_scrape_counts_registrations_lookups_and_store_time_and_passes_promtool() {
    let mut server = Server::start(&["--metrics", "127.0.0.1:0", "--open-contacts"]);
    let at = metrics_addr(&mut server);
    let mut a = client(&server);
    let mut b = client(&server);
    a.register(3, T).expect("A registers").expect("OK payload");
    b.register(3, T).expect("B registers").expect("OK payload");
    let (found, _) = a.lookup(b.identity().fingerprint(), T).expect("answer");
    assert!(matches!(found, LookupStatus::Online { .. }), "{found:?}");
    let (nobody, _) = a.lookup(Fingerprint([7; 32]), T).expect("answer");
    assert_eq!(nobody, LookupStatus::Unknown);
    let mut cmd = bin();
    cmd.args(["contacts", "update", "--server", &server.addr.to_string()])
        .args(["--user", "alice", "bob", "555"]);
    run("contacts update", cmd, T).assert_success("a contact write");

    let body = scrape_until(
        at,
        "counters of the registrations, lookups and write",
        |b| {
            sample(b, "rendezvous_registrations_total") >= Some(2.0)
                && sample(b, "rendezvous_lookups_total{result=\"online\"}") >= Some(1.0)
                && sample(b, "rendezvous_lookups_total{result=\"unknown\"}") >= Some(1.0)
                && sample(b, "rendezvous_contact_updates_total{source=\"client\"}") >= Some(1.0)
        },
    );
    let checks = [
        ("rendezvous_directory_clients{location=\"local\"}", 2.0),
        ("rendezvous_punch_requests_total{via=\"direct\"}", 1.0),
        ("rendezvous_lamport_clock", 1.0),
        ("rendezvous_journal_head", 1.0),
        (
            "rendezvous_store_request_duration_seconds_count{op=\"apply\"}",
            1.0,
        ),
        ("process_resident_memory_bytes", 1.0),
        ("process_open_fds", 3.0),
        ("process_start_time_seconds", 1.0),
    ];
    for (series, at_least) in checks {
        let v = sample(&body, series);
        assert!(
            v >= Some(at_least),
            "{series} = {v:?}, want >= {at_least}:\n{body}"
        );
    }
    assert!(body.contains("# TYPE process_cpu_seconds_total counter\n"));
    assert!(body.contains("# TYPE rendezvous_store_request_duration_seconds histogram\n"));
    println!(
        "scrape: {} lines, {} series",
        body.lines().count(),
        body.lines().filter(|l| !l.starts_with('#')).count()
    );
    promtool_check(&body);

    let (status, headers, om) = http(
        at,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    assert!(om.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(om.contains("# UNIT rendezvous_store_request_duration_seconds seconds\n"));

    let (status, headers, _) = http(at, "/metrics", "");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(http(at, "/", "").0, "HTTP/1.1 404 Not Found");
    assert_eq!(http(at, "/metrics/x", "").0, "HTTP/1.1 404 Not Found");
}

#[test]
fn a_port_alone_serves_metrics_on_loopback_and_none_by_default() {
    let mut server = Server::start(&["--metrics", "0"]);
    let at = metrics_addr(&mut server);
    assert_eq!(at.ip(), std::net::Ipv4Addr::LOCALHOST);
    let body = scrape_until(at, "the loop's counters", |b| {
        b.contains("rendezvous_registrations_total ")
    });
    assert_eq!(sample(&body, "rendezvous_registrations_total"), Some(0.0));

    // Off by default: once the loop answers (so `serve` is past where it would print the
    // metrics line), everything the server printed, read to its end, has no metrics line.
    let Server { mut proc, addr } = Server::start(&[]);
    let mut cmd = bin();
    cmd.args(["status", "--server", &addr.to_string()]);
    run("status", cmd, T).assert_success("status from the running loop");
    proc.kill();
    let out = proc.finish(T).stdout;
    assert!(
        out.iter().any(|l| l.starts_with("listening tcp ")),
        "{out:?}"
    );
    assert!(!out.iter().any(|l| l.starts_with("metrics")), "{out:?}");
}

#[test]
fn healthz_is_ok_while_serving_and_503_draining_once_a_drain_begins() {
    use crate::common::drain::{signal, stuck_reader};
    let args = ["--metrics", "0", "--open-contacts", "--drain-timeout", "60"];
    let mut server = Server::start(&args);
    let at = metrics_addr(&mut server);
    // Serving once the loop has turned (503 `starting` only before its first turn).
    let body = ask_until(at, "/healthz", "200 ok", |s, _| s == "HTTP/1.1 200 OK");
    assert_eq!(body, "ok\n");
    let (_, headers, _) = http(at, "/healthz", "");
    assert!(headers.contains("Content-Type: text/plain"), "{headers}");
    // Draining: a reader that never reads holds the drain open.
    let _stuck = stuck_reader(&server);
    signal(&server, rustix::process::Signal::TERM);
    let body = ask_until(at, "/healthz", "503 draining", |s, _| {
        s == "HTTP/1.1 503 Service Unavailable"
    });
    assert_eq!(body, "draining\n");
    // Still scraped while it drains; still 404 for anything else.
    let (status, _, body) = http(at, "/metrics", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("rendezvous_registrations_total "), "{body}");
    assert_eq!(http(at, "/health", "").0, "HTTP/1.1 404 Not Found");
    assert!(
        server.proc.wait_exit(Duration::ZERO).is_none(),
        "still draining"
    );
    signal(&server, rustix::process::Signal::INT);
    let code = server.proc.wait_exit(T).expect("exits").code();
    assert_eq!(code, Some(130));
}
