//! `rendezvous decode` of a stream (docs/PROTOCOL.md §10, "Streams"): a capture written
//! into a pipe that stays open is decoded as it arrives, each line out as soon as its
//! packet (or the last byte of its TCP frame) is read, long before the writer closes; the
//! hand-built scenario of `capture` serves, its records written a few at a time.

use crate::capture::{frames, pcap, Link, PORT};
use crate::common::{bin, Proc};
use std::io::Write;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Runs `rendezvous decode ARGS` with the scenario's pcap (byte order `big`) written into
/// its stdin in steps, and checks that each step's lines come while stdin is still open.
fn streams_as_written(args: &[&str], big: bool) {
    let (bytes, offsets) = pcap(
        big,
        false,
        Link::Ethernet.number(),
        &frames(Link::Ethernet, false, big),
    );
    let mut cmd = bin();
    cmd.arg("decode").args(args);
    let (mut p, mut stdin) = Proc::spawn_with_stdin("decode", cmd);
    // Records: 0 lookup, 1 SYN, 2 SYN-ACK, 3 and 4 the client's stream (out of order),
    // 5 a retransmission, 6 the answer, 7 a cookie. After each step, the lines it makes.
    let steps: [(usize, &[&str]); 4] = [
        (1, &["udp", "lookup(5)"]),
        (5, &["tcp", "barrier(5)"]),
        (7, &["tcp", "status(7) status=200"]),
        (8, &["udp", "cookie(9)"]),
    ];
    let mut from = 0;
    for (upto, want) in steps {
        let to = offsets.get(upto).copied().unwrap_or(bytes.len());
        stdin.write_all(&bytes[from..to]).expect("write to decode");
        stdin.flush().expect("flush");
        from = to;
        let what = format!("{want:?} after {upto} records, stdin still open");
        p.out
            .expect(&what, T, |l| want.iter().all(|w| l.contains(w)));
    }
    // Every line of the scenario came before the writer closed.
    let seen = p.out.history().len();
    assert_eq!(seen, 6, "lines: {:?}", p.out.history());
    drop(stdin);
    let done = p.finish(T);
    done.assert_success("decode of a stream");
    assert_eq!(done.stdout.len(), 6, "{done:?}");
    assert!(
        done.stderr.iter().any(|l| l.contains("8 packets read")),
        "summary: {:?}",
        done.stderr
    );
}

#[test]
fn decode_dash_reads_stdin_as_it_comes() {
    streams_as_written(&["-", "--port", &PORT.to_string()], false);
}

#[test]
fn decode_dev_stdin_finds_the_port_from_the_first_packets_and_streams() {
    streams_as_written(&["/dev/stdin"], true);
}
