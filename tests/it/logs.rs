//! What `serve` logs (docs/OPERATIONS.md §6; docs/PROTOCOL.md §7, "Logs"), on the real
//! binary: registrations, lookups, punch requests, relays and expiries at debug, with a
//! client's address only under `--log-addresses` (its network otherwise); refusals as one
//! summary line per interval, not a line per packet, in JSON with a field per reason; and
//! a peer link going down, with the peer's address and alias.

use crate::common::{bin, field, status_field, status_lines, Server};
use rendezvous::client::{Client, Incoming};
use rendezvous::identity::{Identity, KeyAlgorithm};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

/// `serve` on loopback, memory only, logging at debug, with `extra` flags.
fn serve_debug(name: &str, extra: &[&str]) -> Server {
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--memory-only"])
        .args(extra)
        .env("RUST_LOG", "debug");
    Server::spawn(name, cmd)
}

fn client(server: &Server, name: &str) -> Client {
    let id = Identity::generate(KeyAlgorithm::Ed25519, name).expect("identity");
    Client::new(server.addr, id, Some("127.0.0.1:0".parse().unwrap())).expect("socket")
}

/// The stderr line with `message` whose `key=` is `value` (text format), waited for.
fn logged(server: &mut Server, message: &str, key: &str, value: &str) -> String {
    let what = format!("{message:?} with {key}={value}");
    server.proc.expect_stderr(&what, T, |l| {
        l.contains(message) && field(l, key) == Some(value)
    })
}

/// At debug a client's registration, its lookup (with the punch request it causes), a
/// relayed event and its expiry each make a line naming the fingerprints; its address is
/// shown whole only with `--log-addresses`, else as its /24, and nowhere else in the log.
#[test]
fn client_events_are_debug_lines_with_the_address_only_under_log_addresses() {
    for whole in [false, true] {
        let mut args = vec!["--ttl", "3", "--keepalive", "1"];
        if whole {
            args.push("--log-addresses");
        }
        let mut server = serve_debug("logs", &args);
        let mut a = client(&server, "a");
        let mut b = client(&server, "b");
        a.register(3, T).expect("a registers").expect("OK");
        b.register(3, T).expect("b registers").expect("OK");
        let (fa, fb) = (a.identity().fingerprint(), b.identity().fingerprint());
        let a_addr = a.local_addr().unwrap();
        let line = logged(
            &mut server,
            "client registered",
            "fingerprint",
            &fa.to_hex(),
        );
        let shown = field(&line, "addr").expect("addr= in the registration line");
        if whole {
            assert_eq!(shown, a_addr.to_string(), "{line}");
        } else {
            assert_eq!(shown, "127.0.0.0/24", "{line}");
        }
        assert_eq!(field(&line, "new"), Some("true"), "{line}");
        assert!(line.contains("DEBUG"), "{line}");

        a.lookup(fb, T).expect("a looks b up");
        let line = logged(&mut server, "lookup answered", "target", &fb.to_hex());
        assert_eq!(field(&line, "result"), Some("online"), "{line}");
        assert_eq!(field(&line, "asker"), Some(fa.to_hex().as_str()), "{line}");
        logged(&mut server, "punch request sent", "target", &fb.to_hex());
        a.send_event(fb, b"hello").expect("send");
        crate::common::next_arrival(&mut b, "the relayed event", T, |m| {
            matches!(m, Incoming::Relay { .. })
        });
        logged(&mut server, "event relayed", "to", &fb.to_hex());
        if !whole {
            // Neither keeps alive: both expire after the 3 s TTL.
            logged(&mut server, "client expired", "fingerprint", &fa.to_hex());
        }

        let lines = server.proc.stderr_lines();
        let b_addr = b.local_addr().unwrap();
        let whole_addresses = lines
            .iter()
            .filter(|l| l.contains(&a_addr.to_string()) || l.contains(&b_addr.to_string()))
            .count();
        if whole {
            assert!(whole_addresses >= 2, "{lines:#?}");
        } else {
            assert_eq!(
                whole_addresses, 0,
                "a client address in the log: {lines:#?}"
            );
        }
        server.proc.kill();
    }
}

/// A flood of refused datagrams (malformed: each answered 400) makes one JSON summary line
/// per interval with a count per reason, not a line per packet, even at debug; the
/// interval is `--log-summary-interval`.
#[test]
fn refusals_are_summarised_per_interval_in_json() {
    const SENT: usize = 300;
    let mut server = serve_debug(
        "flood",
        &["--log-format", "json", "--log-summary-interval", "1"],
    );
    let junk = UdpSocket::bind("127.0.0.1:0").expect("socket");
    junk.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 2048];
    for _ in 0..SENT {
        // Params 0x02, then nothing that parses: 400, and the reply fits in 32 bytes.
        junk.send_to(&[0x02; 32], server.addr).expect("send");
        if junk.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
    }
    assert!(
        answered > SENT * 9 / 10,
        "only {answered} of {SENT} answered"
    );
    // The summaries of the intervals the flood spanned add up to what was refused.
    let deadline = Instant::now() + T;
    let (summaries, refused) = loop {
        let summaries: Vec<serde_json::Value> = server
            .proc
            .stderr_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "requests refused in the last interval")
            .collect();
        let refused: u64 = summaries
            .iter()
            .map(|v| v["fields"]["bad_request"].as_u64().expect("a count"))
            .sum();
        if refused >= answered as u64 {
            break (summaries, refused);
        }
        assert!(
            Instant::now() < deadline,
            "{refused} of {answered} refusals summarised: {:#?}",
            server.proc.stderr_lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refused <= SENT as u64, "{summaries:#?}");
    for v in &summaries {
        let f = &v["fields"];
        assert!(matches!(v["level"].as_str(), Some("INFO" | "WARN")), "{v}");
        assert_eq!(f["total"], f["bad_request"], "only 400s: {v}");
        for reason in ["rate_limited", "unavailable", "dropped", "tcp_refused"] {
            assert_eq!(f[reason], 0, "{reason} in {v}");
        }
        assert!(
            f["interval_ms"].as_u64().is_some_and(|ms| ms >= 1000),
            "{v}"
        );
    }
    // One line per interval, not per packet: the whole log is a few lines, every one JSON.
    let lines = server.proc.stderr_lines();
    assert!(lines.len() < 20, "{} lines for {SENT} packets", lines.len());
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    server.proc.kill();
}

/// A peer link coming up and going down (its peer killed) is logged at info and warn with
/// the peer's address and alias, and the failed redial once at warn.
#[test]
fn a_peer_link_going_down_is_a_warning_with_the_peer_and_why() {
    let mut s0 = Server::start(&["--alias", "s0", "--allow-peer", "127.0.0.0/8"]);
    let peer = s0.addr.to_string();
    let mut s1 = Server::start(&["--alias", "s1", "--peer", &peer]);
    let up = logged(&mut s1, "peer link up", "peer", &peer);
    assert!(up.contains("INFO"), "{up}");
    // Once s1 has s0's node-list entry, its lines name s0 by alias too.
    let deadline = Instant::now() + T;
    while status_field(&status_lines(s1.addr), "nodes") != "2" {
        assert!(Instant::now() < deadline, "s1 never learned s0's entry");
        std::thread::sleep(Duration::from_millis(50));
    }
    s0.proc.kill();
    let down = logged(&mut s1, "peer link down", "peer", &peer);
    assert!(down.contains("WARN"), "{down}");
    assert_eq!(field(&down, "alias"), Some("s0"), "{down}");
    assert!(field(&down, "reason").is_some(), "{down}");
    let redial = logged(&mut s1, "cannot connect to a peer", "peer", &peer);
    assert!(redial.contains("WARN"), "{redial}");
}
