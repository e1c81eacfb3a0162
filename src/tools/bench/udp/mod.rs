//! The UDP workloads of `rendezvous bench` (docs/PROTOCOL.md §10, "Benchmarking"):
//! keepalive (open loop, final in-order probe), lookup and register (closed loop, or paced
//! open loop), over one connected UDP socket per simulated client, with
//! `sendmmsg`/`recvmmsg` (32 datagrams per system call) and one epoll (mio) over all
//! sockets.
//!
//! Owns the sockets it opens and closes them when the run ends. Never sends anything but
//! client packets (params 0x02) to the one target; writes and reads every datagram with the
//! wire's codecs ([`crate::wire::Root`], [`crate::wire::udp::Payload`]). Invariants: a socket's requests are
//! answered in the order sent (the server reads one socket in order), so its in-flight
//! queue is FIFO, and an answer that skips queued requests proves them lost; every loop
//! has a deadline.
//!
//! # Layout
//! - `setup`: packets, sockets, registering the clients. `io`: batched sends and receives.
//! - `requests`: lookup and register. `keepalive`: keepalives and the final probes.

mod io;
mod keepalive;
mod requests;
mod setup;

use super::report::{add_cpu, Common, Report, Value};
use super::stats::cpu_secs;
use super::{BenchError, BenchOptions, Workload};
use crate::net::mmsg::BATCH;
use crate::wire::udp::{LookupStatus, Payload, ServerEvent, COOKIE_LEN};
use crate::wire::{Fingerprint, Root};
use io::{set_gso, Rx};
use mio::{Interest, Poll, Token};
use setup::{lookup_packet, open_clients, Client};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Receive buffer per datagram, in bytes (more than the 1400-byte protocol limit).
const RX_LEN: usize = 1536;
/// Bytes a keepalive is padded to, as the bundled client does (a 404 then fits).
const KEEPALIVE_LEN: usize = crate::client::KEEPALIVE_LEN;
/// Longest wait in one poll while requests are in flight.
const POLL_MAX: Duration = Duration::from_millis(5);

/// Counters of one run.
#[derive(Default)]
struct Tally {
    c: Common,
    /// Answers that matched no request in flight (late, or unexpected).
    unmatched: u64,
    online: u64,
    offline: u64,
    unknown: u64,
    /// Punch requests (type 3) received: lookups of online clients cause them.
    punches: u64,
    /// Other datagrams (malformed, relayed events, OKs out of place).
    other: u64,
    /// register: OKs.
    accepted: u64,
    /// register: new cookies (type 9) received in answer to a registration.
    cookies: u64,
    /// register: sends skipped because every identity of a socket had used its timestamps.
    pool_stalls: u64,
}

/// Fields a workload adds to the report, in order.
type Extra = Vec<(&'static str, Value)>;

/// What a datagram from the server says, as far as the bench cares.
enum Answer {
    /// An OK (type 1).
    Ok,
    /// A cookie (type 9).
    Cookie([u8; COOKIE_LEN]),
    /// A lookup answer (type 6): the target's fingerprint and its status.
    Lookup {
        target: Fingerprint,
        status: LookupStatus,
    },
    /// An error (type 7): its status and the refused request type.
    Error { status: u16, request: u8 },
    /// A server event (type 3), a punch request.
    Punch,
    /// Anything else.
    Other,
}

/// What `data` from the server says, read with the wire's codecs ([`Root`], [`Payload`]);
/// a datagram they do not read is [`Answer::Other`].
fn classify(data: &[u8]) -> Answer {
    let Ok(root) = Root::parse(data) else {
        return Answer::Other;
    };
    match Payload::parse(root.packet_type, root.payload) {
        Ok(Payload::Ok(_)) => Answer::Ok,
        Ok(Payload::Cookie(c)) => Answer::Cookie(c),
        Ok(Payload::LookupAnswer(a)) => Answer::Lookup {
            target: a.target,
            status: a.status,
        },
        Ok(Payload::Error(e)) => Answer::Error {
            status: e.status,
            request: e.request_type,
        },
        Ok(Payload::ServerEvent(ServerEvent::Punch { .. })) => Answer::Punch,
        _ => Answer::Other,
    }
}

/// Paces sends at `rate` per second in all (0: unlimited).
struct Pacer {
    /// Requests per second in all; 0 for no limit.
    rate: u64,
    /// When sending began.
    start: Instant,
    /// Requests sent so far.
    sent: u64,
}

impl Pacer {
    /// Requests that may leave at once: a millisecond's worth, 1 to [`BATCH`].
    fn burst(&self) -> u64 {
        (self.rate / 1000).clamp(1, BATCH as u64)
    }

    /// Requests that may leave now: those due by now, plus up to [`Self::burst`] early.
    fn budget(&self, now: Instant) -> u64 {
        if self.rate == 0 {
            return u64::MAX;
        }
        let allowed =
            (self.rate as f64 * now.duration_since(self.start).as_secs_f64()) as u64 + self.burst();
        allowed.saturating_sub(self.sent)
    }

    /// When request `k` (from 0) is due on the schedule: `k / rate` seconds after
    /// [`Self::start`] (the start itself with no rate).
    fn scheduled(&self, k: u64) -> Instant {
        if self.rate == 0 {
            return self.start;
        }
        self.start + Duration::from_secs_f64(k as f64 / self.rate as f64)
    }

    /// Time until the next request may leave.
    fn wait(&self, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let at = self.start + Duration::from_secs_f64((self.sent + 1) as f64 / self.rate as f64);
        at.saturating_duration_since(now)
    }
}

/// Runs a UDP workload against `target`.
pub(crate) fn run(
    args: &BenchOptions,
    target: SocketAddr,
    notes: &mut dyn Write,
) -> Result<Report, BenchError> {
    let pool = if args.workload == Workload::Register {
        args.register.identities
    } else {
        1
    };
    let mut clients = open_clients(args, target, pool, notes)?;
    let mut poll = Poll::new().map_err(BenchError::io("cannot create the poller"))?;
    for (i, c) in clients.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.sock, Token(i), Interest::READABLE)
            .map_err(BenchError::io("cannot register a client socket"))?;
    }
    if args.gso {
        use_gso(args.workload, &mut clients);
    }
    let mut rx = Rx::new();
    // Answers to the setup are gone by now; drop anything left (e.g. punch requests).
    for c in &clients {
        while rx.recv(&c.sock) > 0 {}
    }
    let cpu0 = args.pid.and_then(cpu_secs);
    let (tally, count_for_cpu, extra) = match args.workload {
        Workload::Keepalive => {
            keepalive::keepalive(args, target, &mut clients, &mut poll, &mut rx)?
        }
        _ => requests::requests(args, &mut clients, &mut poll, &mut rx)?,
    };
    let cpu1 = args.pid.and_then(cpu_secs);
    let mut r = report(args, target, &tally, &clients);
    for (k, v) in extra {
        r.set(k, v);
    }
    add_cpu(&mut r, cpu0, cpu1, tally.c.secs, count_for_cpu);
    Ok(r)
}

/// Turns UDP GSO on for every client of a workload whose datagrams have one size
/// (keepalive, lookup), as far as the kernel allows.
fn use_gso(workload: Workload, clients: &mut [Client]) {
    let size = match workload {
        Workload::Keepalive => KEEPALIVE_LEN,
        Workload::Lookup => lookup_packet(&clients[0].fp).len(),
        _ => return,
    };
    for c in clients.iter_mut() {
        c.gso = set_gso(&c.sock, size);
    }
}

/// The common fields, then the workload's own.
fn report(args: &BenchOptions, target: SocketAddr, tally: &Tally, clients: &[Client]) -> Report {
    let mut r = tally.c.report(args, target);
    r.int("unmatched", tally.unmatched);
    r.int("gso", u64::from(clients.iter().all(|c| c.gso)));
    match args.workload {
        Workload::Lookup => {
            r.int("online", tally.online);
            r.int("offline", tally.offline);
            r.int("unknown", tally.unknown);
            r.int("punches", tally.punches);
        }
        Workload::Register => {
            r.int("accepted", tally.accepted);
            let per_s = if tally.c.secs > 0.0 {
                tally.accepted as f64 / tally.c.secs
            } else {
                0.0
            };
            r.num("accepted_per_s", per_s);
            r.int("cookies", tally.cookies);
            r.int("pool_stalls", tally.pool_stalls);
            r.int(
                "identities",
                (args.load.clients * args.register.identities) as u64,
            );
        }
        Workload::Keepalive | Workload::Contacts | Workload::AskForUpdate | Workload::ListAll => {}
    }
    let punches_are_other = args.workload != Workload::Lookup;
    r.int(
        "other",
        tally.other + if punches_are_other { tally.punches } else { 0 },
    );
    r
}

/// Records an answer that is not a lookup answer: errors by status, punches, others.
/// Returns the status of an error for request type `req` (or unreadable, 0xFF).
fn note_other(t: &mut Tally, a: &Answer, req: u8) -> Option<u16> {
    match *a {
        Answer::Error { status, request } => {
            *t.c.errors.entry(status).or_default() += 1;
            (request == req || request == 0xFF).then_some(status)
        }
        Answer::Punch => {
            t.punches += 1;
            None
        }
        _ => {
            t.other += 1;
            None
        }
    }
}
