//! `rendezvous bench` against the real server on loopback: each workload for about a second
//! with a few clients. Only sanity is checked (rates above zero, nothing answered that was
//! not sent, every lookup answer matched, registrations accepted, contacts durable); no
//! timing threshold decides a pass, since these machines are shared and noisy.

use crate::common;

use common::{bin, field, run, Server};
use rendezvous::client::contacts::ContactsClient;
use std::time::Duration;

/// Longest a one-second run may take, setup and the final drain included.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `rendezvous bench --target <server> --workload <workload> --duration 1 EXTRA...`
/// and returns its one summary line.
fn bench(server: &Server, workload: &str, extra: &[&str]) -> String {
    let mut cmd = bin();
    cmd.args(["bench", "--target", &server.addr.to_string()])
        .args(["--workload", workload, "--duration", "1"])
        .args(extra);
    let done = run(&format!("bench-{workload}"), cmd, RUN_LIMIT);
    done.assert_success("rendezvous bench");
    assert_eq!(
        done.stdout.len(),
        1,
        "one summary line expected: {:?}",
        done.stdout
    );
    done.stdout[0].clone()
}

/// The numeric value of `key` in the summary line.
fn num(line: &str, key: &str) -> f64 {
    let v = field(line, key).unwrap_or_else(|| panic!("no {key}= in {line}"));
    v.parse()
        .unwrap_or_else(|e| panic!("{key}={v} is not a number ({e}) in {line}"))
}

/// Runs `cmd`, which must fail with `text` in a line of its stderr.
fn fails_saying(name: &str, cmd: std::process::Command, text: &str) {
    let done = run(name, cmd, RUN_LIMIT);
    assert!(!done.status.success(), "{done:?}");
    assert!(
        done.stderr.iter().any(|l| l.contains(text)),
        "no {text:?} in {:?}",
        done.stderr
    );
}

/// The fields every workload reports, with sane values.
fn common_checks(line: &str, workload: &str) {
    assert_eq!(field(line, "workload"), Some(workload), "{line}");
    for key in [
        "sent",
        "received",
        "rate_per_s",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "errors",
        "lost",
        "secs",
    ] {
        assert!(num(line, key) >= 0.0, "{key} in {line}");
    }
    assert!(field(line, "errors_by_status").is_some(), "{line}");
    let (sent, received) = (num(line, "sent"), num(line, "received"));
    assert!(sent > 0.0, "nothing sent: {line}");
    assert!(received > 0.0, "nothing received: {line}");
    assert!(received <= sent, "more received than sent: {line}");
    assert!(num(line, "rate_per_s") > 0.0, "{line}");
    assert!(num(line, "secs") >= 1.0, "{line}");
    let (p50, p90, p99, p999, max) = (
        num(line, "p50_us"),
        num(line, "p90_us"),
        num(line, "p99_us"),
        num(line, "p999_us"),
        num(line, "max_us"),
    );
    assert!(
        p50 > 0.0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{line}"
    );
}

#[test]
fn keepalive_open_loop_ends_with_every_probe_answered() {
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let line = bench(&server, "keepalive", &["--clients", "4", "--pid", &pid]);
    common_checks(&line, "keepalive");
    assert_eq!(num(&line, "open_loop"), 1.0, "{line}");
    assert!(num(&line, "send_rate_per_s") > 0.0, "{line}");
    // Every socket's final lookup came back: the server read everything sent before it.
    assert_eq!(num(&line, "lost"), 0.0, "a probe went unanswered: {line}");
    assert!(num(&line, "probes") >= 4.0, "{line}");
    // Registered sources: no keepalive is answered, not even with a 404.
    assert_eq!(num(&line, "errors"), 0.0, "{line}");
    // The server runs here: its socket's drops and its CPU share are known.
    assert!(num(&line, "server_drops") >= 0.0, "{line}");
    assert!(num(&line, "server_cpu_pct") >= 0.0, "{line}");
}

#[test]
fn keepalive_paced_without_gso() {
    let server = Server::start(&[]);
    let line = bench(
        &server,
        "keepalive",
        &["--clients", "3", "--rate", "20000", "--no-gso"],
    );
    common_checks(&line, "keepalive");
    assert_eq!(num(&line, "gso"), 0.0, "{line}");
    // Paced at 20,000/s for a second (with a small initial burst).
    assert!(num(&line, "sent") <= 21_000.0, "{line}");
    assert_eq!(num(&line, "lost"), 0.0, "{line}");
}

#[test]
fn lookup_answers_are_all_matched() {
    let server = Server::start(&[]);
    let line = bench(&server, "lookup", &["--clients", "4", "--in-flight", "4"]);
    common_checks(&line, "lookup");
    assert_eq!(num(&line, "open_loop"), 0.0, "{line}");
    assert_eq!(num(&line, "unmatched"), 0.0, "{line}");
    assert_eq!(num(&line, "lost"), 0.0, "{line}");
    assert_eq!(num(&line, "errors"), 0.0, "{line}");
    assert_eq!(num(&line, "received"), num(&line, "sent"), "{line}");
    // The targets are the other bench clients, all registered: every answer says online.
    assert_eq!(num(&line, "online"), num(&line, "received"), "{line}");
}

#[test]
fn lookup_open_loop_paced_json() {
    let server = Server::start(&[]);
    let mut cmd = bin();
    cmd.args(["bench", "--target", &server.addr.to_string()])
        .args(["--workload", "lookup", "--duration", "1", "--clients", "2"])
        .args(["--open-loop", "--rate", "5000", "--json"]);
    let done = run("bench-json", cmd, RUN_LIMIT);
    done.assert_success("rendezvous bench --json");
    assert_eq!(done.stdout.len(), 1, "{:?}", done.stdout);
    let v: serde_json::Value = serde_json::from_str(&done.stdout[0]).expect("one JSON object");
    assert_eq!(v["workload"], "lookup");
    assert_eq!(v["open_loop"], 1);
    let sent = v["sent"].as_u64().expect("sent");
    let received = v["received"].as_u64().expect("received");
    assert!(sent > 0 && received > 0 && received <= sent, "{v}");
    assert!(sent <= 5_100, "paced at 5000/s for 1 s: {v}");
    assert_eq!(v["unmatched"], 0, "{v}");
    assert!(v["errors_by_status"].is_object(), "{v}");
    assert!(v["p99_us"].as_f64().expect("p99") > 0.0, "{v}");
    let p = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"));
    assert!(
        p("p50_us") <= p("p99_us") && p("p99_us") <= p("p999_us") && p("p999_us") <= p("max_us"),
        "{v}"
    );
    // The open loop says how late its sends left against the schedule.
    assert!(
        p("send_late_p99_us") >= 0.0 && p("send_late_max_us") >= 0.0,
        "{v}"
    );
}

#[test]
fn open_loop_plot_is_an_svg_with_its_axes() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("latency.svg");
    let mut cmd = bin();
    cmd.args(["bench", "--target", &server.addr.to_string()])
        .args(["--workload", "lookup", "--duration", "1", "--clients", "2"])
        .args(["--open-loop", "--rate", "5000", "--plot"])
        .arg(&svg);
    let done = run("bench-plot", cmd, RUN_LIMIT);
    done.assert_success("rendezvous bench --plot");
    common_checks(&done.stdout[0], "lookup");
    let text = std::fs::read_to_string(&svg).expect("the plot was written");
    assert!(
        text.starts_with("<svg") || text.starts_with("<?xml"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.trim_end().ends_with("</svg>"), "a whole SVG document");
    for label in ["percentile", "latency (us)", "p99.9", "99%"] {
        assert!(text.contains(label), "no {label:?} in the plot");
    }
}

#[test]
fn plot_other_than_svg_is_refused_before_the_run() {
    let mut cmd = bin();
    cmd.args(["bench", "--target", "127.0.0.1:9", "--workload", "lookup"])
        .args(["--duration", "1", "--plot", "latency.png"]);
    fails_saying("bench-plot-png", cmd, "FILE.svg");
}

#[test]
fn register_signs_fresh_registrations_that_are_accepted() {
    let server = Server::start(&[]);
    let line = bench(
        &server,
        "register",
        &["--clients", "3", "--identities", "4", "--in-flight", "2"],
    );
    common_checks(&line, "register");
    let accepted = num(&line, "accepted");
    assert!(accepted > 0.0, "{line}");
    assert!(accepted <= num(&line, "received"), "{line}");
    assert_eq!(num(&line, "identities"), 12.0, "{line}");
    assert_eq!(num(&line, "unmatched"), 0.0, "{line}");
    // Loopback is exempt from the per-/24 limit and every timestamp is new: no refusals.
    assert_eq!(num(&line, "errors"), 0.0, "{line}");
    assert_eq!(field(&line, "errors_by_status"), Some("none"), "{line}");
}

#[test]
fn register_pool_limits_the_rate_and_says_so() {
    // One identity per client and a spread of 1 s: at most about 3 timestamps per
    // identity in a one-second run, so the pool runs dry and the report says so.
    let server = Server::start(&[]);
    let line = bench(
        &server,
        "register",
        &[
            "--clients",
            "2",
            "--identities",
            "1",
            "--timestamp-spread",
            "1",
        ],
    );
    common_checks(&line, "register");
    assert!(num(&line, "pool_stalls") > 0.0, "{line}");
    assert!(num(&line, "accepted") <= 2.0 * 4.0, "{line}");
    assert_eq!(num(&line, "errors"), 0.0, "{line}");
}

#[test]
fn contacts_updates_are_durable_and_visible_in_status() {
    let server = Server::start(&[]);
    let line = bench(
        &server,
        "contacts",
        &[
            "--clients",
            "3",
            "--barrier-every",
            "20",
            "--in-flight",
            "2",
        ],
    );
    common_checks(&line, "contacts");
    assert!(num(&line, "barriers") > 0.0, "{line}");
    assert_eq!(num(&line, "lost"), 0.0, "{line}");
    assert_eq!(num(&line, "io_errors"), 0.0, "{line}");
    assert_eq!(
        num(&line, "received"),
        num(&line, "barriers") * 20.0,
        "{line}"
    );
    // Every batch ended with a confirmed barrier, so every key written is in the store.
    let keys = num(&line, "keys") as u64;
    assert!(keys > 0, "{line}");
    let mut c = ContactsClient::connect(server.addr, "test", Duration::from_secs(5))
        .expect("connect to the TCP plane");
    let status = c.status().expect("status");
    let contacts: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("contacts="))
        .unwrap_or_else(|| panic!("no contacts= line in {status}"))
        .parse()
        .expect("count");
    // Each connection proved a new identity's key (a default server accepts nothing
    // else) and wrote its own contacts.
    assert_eq!(contacts, keys, "status:\n{status}\nbench: {line}");
}

#[test]
fn no_server_fails_with_a_message() {
    // A port nobody listens on: registration gets no answer; bench gives up by itself.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    drop(sock);
    let mut cmd = bin();
    cmd.args(["bench", "--target", &addr.to_string()]).args([
        "--workload",
        "lookup",
        "--duration",
        "1",
        "--clients",
        "1",
    ]);
    fails_saying("bench-nothing", cmd, "no answer");
}

#[test]
fn contacts_refuses_a_target_not_on_loopback_without_allow_remote() {
    // The contacts a run writes stay in the server (the protocol cannot delete them), so a
    // remote target is refused before anything is sent. 192.0.2.1 (TEST-NET-1) is never
    // reached: the refusal comes first.
    let mut cmd = bin();
    cmd.args(["bench", "--target", "192.0.2.1:4747"]).args([
        "--workload",
        "contacts",
        "--duration",
        "1",
        "--clients",
        "2",
    ]);
    let done = run("bench-remote-contacts", cmd, Duration::from_secs(10));
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(done.stdout.is_empty(), "{done:?}");
    let err = done.stderr.join("\n");
    assert!(
        err.starts_with(
            "error: --workload contacts writes up to 2000 contacts to 192.0.2.1:4747, which \
             stay there"
        ),
        "{err}"
    );
    assert!(err.contains("unless --allow-remote is given"), "{err}");
    // So do the streaming workloads, when they load contacts first.
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--target",
        "192.0.2.1:4747",
        "--workload",
        "askforupdate",
    ]);
    cmd.args(["--contacts", "5"]);
    let done = run("bench-remote-stream", cmd, Duration::from_secs(10));
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    let err = done.stderr.join("\n");
    assert!(
        err.starts_with("error: --workload askforupdate writes up to 5 contacts to 192.0.2.1"),
        "{err}"
    );
}

/// `askforupdate` and `listall` on a server that takes server-role connections in clear
/// text: the load is confirmed, each answer carries every loaded contact, and the baseline
/// sent as many bytes. Speed is not checked (docs/PROTOCOL.md §10 gives the figures).
#[test]
fn streaming_workloads_read_every_loaded_contact_beside_the_plain_sender() {
    let server = Server::start(&["--allow-peer", "127.0.0.1/32", "--plain-peers"]);
    let pid = server.proc.pid().to_string();
    let line = bench(
        &server,
        "askforupdate",
        &["--contacts", "3000", "--rounds", "2", "--pid", &pid],
    );
    assert_eq!(field(&line, "workload"), Some("askforupdate"), "{line}");
    assert_eq!(num(&line, "loaded"), 3000.0, "{line}");
    assert_eq!(num(&line, "count"), 3000.0, "{line}");
    assert_eq!(num(&line, "bytes"), 4.0 + 3000.0 * 537.0, "{line}");
    assert_eq!(num(&line, "rounds"), 2.0, "{line}");
    for key in ["server_mb_per_s", "plain_mb_per_s", "server_over_plain_pct"] {
        assert!(num(&line, key) > 0.0, "{key} in {line}");
    }
    assert!(num(&line, "server_vmhwm_kib") > 0.0, "{line}");
    assert!(field(&line, "server_rss_extra_kib").is_some(), "{line}");
    // ListAll lists the bench identity's own contacts: a new identity, with 2000 loaded.
    let line = bench(&server, "listall", &["--contacts", "2000", "--rounds", "1"]);
    assert_eq!(num(&line, "count"), 2000.0, "{line}");
    assert_eq!(num(&line, "bytes"), 4.0 + 2000.0 * 533.0, "{line}");
    // AskForUpdate now lists both loads.
    let line = bench(
        &server,
        "askforupdate",
        &["--contacts", "0", "--rounds", "1"],
    );
    assert_eq!(num(&line, "count"), 5000.0, "{line}");
    assert!(field(&line, "loaded").is_none(), "{line}");
}
