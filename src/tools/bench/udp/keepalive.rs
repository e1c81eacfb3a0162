//! The keepalive workload: keepalives sent open loop for the run's duration (they get no
//! answer), then one lookup of itself per socket, an in-order barrier: the server reads its
//! one socket in order, so when every probe is answered it has read every keepalive sent
//! before it (docs/PROTOCOL.md §10, "Benchmarking"). Kernel drops at the server's socket
//! are read from `/proc/net/udp`.

use super::io::{send_all, send_gso, Rx, KEEPALIVE_GSO_BURST};
use super::setup::{lookup_packet, packet, unix_now, Client};
use super::POLL_MAX;
use super::{classify, note_other, Answer, Extra, Pacer, Tally, Value, BATCH, KEEPALIVE_LEN};
use crate::tools::bench::stats::{udp_drops, Histogram};
use crate::tools::bench::{BenchError, BenchOptions};
use crate::wire::PacketType;
use mio::{Events, Poll};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often unanswered probes are sent again.
const PROBE_RESEND: Duration = Duration::from_millis(200);
/// Shortest time the probes are waited for.
const PROBE_WAIT_MIN: Duration = Duration::from_secs(2);

/// The keepalives every socket sends, plain and laid back to back for GSO.
struct Bursts {
    plain: Vec<u8>,
    gso: Vec<u8>,
}

/// What the final probes found.
struct Probes {
    /// Latency of each probe from its first send to its answer.
    hist: Histogram,
    /// When the last probe was answered.
    last_answer: Instant,
    /// Probes sent, resends included.
    sent: u64,
    /// Sockets whose probe was never answered.
    lost: u64,
}

/// Keepalive: open loop for `--duration`, then one lookup of itself per socket, answered
/// only once the server has read everything sent before it.
pub(super) fn keepalive(
    args: &BenchOptions,
    target: SocketAddr,
    clients: &mut [Client],
    poll: &mut Poll,
    rx: &mut Rx,
) -> Result<(Tally, u64, Extra), BenchError> {
    let mut t = Tally::default();
    let drops0 = udp_drops(target.port());
    let start = Instant::now();
    let send_end = send_keepalives(args, clients, poll, rx, &mut t, start)?;
    let probes = probe_barrier(args, clients, poll, rx, &mut t, send_end)?;
    let drops = match (drops0, udp_drops(target.port())) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    t.c.received = t.c.sent.saturating_sub(drops.unwrap_or(0));
    t.c.secs = probes.last_answer.duration_since(start).as_secs_f64();
    t.c.hist = probes.hist;
    t.c.lost = probes.lost;
    let send_secs = send_end.duration_since(start).as_secs_f64();
    let send_rate = if send_secs > 0.0 {
        t.c.sent as f64 / send_secs
    } else {
        0.0
    };
    let extra: Extra = vec![
        ("send_rate_per_s", Value::Num(send_rate)),
        (
            "server_drops",
            drops.map_or_else(|| Value::Text("unknown".into()), Value::Int),
        ),
        ("probes", Value::Int(probes.sent)),
    ];
    let count = t.c.received;
    Ok((t, count, extra))
}

/// Sends keepalives from every socket, round robin and paced, until `--duration` after
/// `start`; anything that comes back is counted as noise. Returns when sending ended.
fn send_keepalives(
    args: &BenchOptions,
    clients: &mut [Client],
    poll: &mut Poll,
    rx: &mut Rx,
    t: &mut Tally,
    start: Instant,
) -> Result<Instant, BenchError> {
    let mut plain = packet(PacketType::Keepalive, &[], unix_now(), &[]);
    plain.resize(KEEPALIVE_LEN, 0);
    // With GSO, one pass sends up to KEEPALIVE_GSO_BURST datagrams per socket, back to back.
    let bursts = Bursts {
        gso: plain.repeat(KEEPALIVE_GSO_BURST),
        plain,
    };
    let n = clients.len();
    let mut events = Events::with_capacity(1024);
    let end = start + args.duration();
    let mut pacer = Pacer {
        rate: args.load.rate,
        start,
        sent: 0,
    };
    let mut rr = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(now);
        }
        let mut budget = pacer.budget(now);
        for k in 0..n {
            if budget == 0 {
                break;
            }
            let sent = send_burst(&mut clients[(rr + k) % n], &bursts, budget) as u64;
            t.c.sent += sent;
            pacer.sent += sent;
            budget -= sent.min(budget);
        }
        rr = (rr + 1) % n;
        let wait = if budget == 0 {
            pacer.wait(Instant::now()).min(POLL_MAX)
        } else {
            Duration::ZERO
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::io("poll failed")(e)),
        }
        for ev in events.iter() {
            drain_noise(&clients[ev.token().0], rx, t);
        }
    }
}

/// Sends at most `budget` keepalives from client `c` (GSO when it can); returns how many
/// the kernel took.
fn send_burst(c: &mut Client, bursts: &Bursts, budget: u64) -> usize {
    if c.gso {
        let want = (KEEPALIVE_GSO_BURST as u64).min(budget) as usize;
        match send_gso(&c.sock, &bursts.gso[..want * KEEPALIVE_LEN], KEEPALIVE_LEN) {
            Ok(k) => return k,
            Err(_) => c.gso = false,
        }
    }
    let want = (BATCH as u64).min(budget) as usize;
    let burst = [bursts.plain.as_slice(); BATCH];
    send_all(&c.sock, &burst[..want])
}

/// Reads everything waiting on client `c`'s socket: keepalives get no answer, so anything
/// here is an error (e.g. 404) or noise.
fn drain_noise(c: &Client, rx: &mut Rx, t: &mut Tally) {
    loop {
        let got = rx.recv(&c.sock);
        for k in 0..got {
            note_other(t, &classify(rx.get(k)), 0);
        }
        if got < BATCH {
            break;
        }
    }
}

/// The barrier: one lookup of itself per socket (no punch request), resent while
/// unanswered; its answer proves the server has read every earlier datagram.
fn probe_barrier(
    args: &BenchOptions,
    clients: &[Client],
    poll: &mut Poll,
    rx: &mut Rx,
    t: &mut Tally,
    send_end: Instant,
) -> Result<Probes, BenchError> {
    let probes: Vec<Vec<u8>> = clients.iter().map(|c| lookup_packet(&c.fp)).collect();
    let mut answered = vec![false; clients.len()];
    let mut first_sent: Vec<Option<Instant>> = vec![None; clients.len()];
    let mut out = Probes {
        hist: Histogram::new(),
        last_answer: send_end,
        sent: 0,
        lost: 0,
    };
    let probe_end = send_end + args.timeout().max(PROBE_WAIT_MIN);
    let mut resend_at = send_end;
    let mut events = Events::with_capacity(1024);
    while answered.iter().any(|a| !a) {
        let now = Instant::now();
        if now >= probe_end {
            break;
        }
        if now >= resend_at {
            for (i, c) in clients.iter().enumerate() {
                if !answered[i] && send_all(&c.sock, &[probes[i].as_slice()]) == 1 {
                    first_sent[i].get_or_insert_with(Instant::now);
                    out.sent += 1;
                }
            }
            resend_at = Instant::now() + PROBE_RESEND;
        }
        let wait = resend_at
            .min(probe_end)
            .saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::io("poll failed")(e)),
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let sent_at = first_sent[i].unwrap_or(send_end);
            read_probe_answer(&clients[i], rx, t, &mut answered[i], sent_at, &mut out);
        }
    }
    out.lost = answered.iter().filter(|a| !**a).count() as u64;
    Ok(out)
}

/// Reads what waits on client `c`'s socket: the first lookup answer answers its probe
/// (sent at `sent_at`); anything else is counted as noise.
fn read_probe_answer(
    c: &Client,
    rx: &mut Rx,
    t: &mut Tally,
    answered: &mut bool,
    sent_at: Instant,
    out: &mut Probes,
) {
    loop {
        let got = rx.recv(&c.sock);
        let now = Instant::now();
        for k in 0..got {
            match classify(rx.get(k)) {
                Answer::Lookup { .. } if !*answered => {
                    *answered = true;
                    out.hist.record(now.duration_since(sent_at));
                    out.last_answer = now;
                }
                a => {
                    note_other(t, &a, 0);
                }
            }
        }
        if got < BATCH {
            break;
        }
    }
}
