//! Lookup and register workloads: closed loop (`--in-flight` requests per socket) or paced
//! open loop; each answer is matched to the oldest request in flight that it answers
//! (docs/PROTOCOL.md §10, "Benchmarking").
//!
//! Open loop (docs/PROTOCOL.md §10, "How to measure"): request k is due `k / rate` seconds
//! after the start, whatever the answers; a bench that falls behind sends what is due at
//! once (the schedule never slips), and a request's latency runs from its due time, or
//! from when it left if that was earlier (the pacer lets a few leave early). So a stall of
//! the bench or a full socket buffer counts against the latency instead of hiding it
//! (no coordinated omission). How late requests left is reported (`send_late_*`).
//! Requests leave in bursts of a millisecond's worth (at most [`BATCH`]), each burst when
//! its first request is due. Between bursts due within a millisecond (finer than epoll's
//! timeout) the loop polls without waiting, so it keeps its core busy.

use super::io::{send_all, send_gso, Rx};
use super::setup::{lookup_packet, register_packet, unix_now, Client, Pending};
use super::{classify, note_other, Answer, Extra, Pacer, Tally, BATCH, POLL_MAX};
use crate::tools::bench::report::Value;
use crate::tools::bench::stats::Histogram;
use crate::tools::bench::{BenchError, BenchOptions, Workload};
use crate::wire::udp::LookupStatus;
use crate::wire::{Fingerprint, PacketType};
use mio::{Events, Poll};
use std::io;
use std::time::{Duration, Instant};

/// Below this wait for the next due send, the open loop polls without sleeping (epoll
/// waits in whole milliseconds).
const SPIN_BELOW: Duration = Duration::from_millis(1);
/// How often lost requests are looked for.
const EXPIRY_EVERY: Duration = Duration::from_millis(10);
/// Most requests one socket keeps in flight in the open loop; older ones count as lost.
const OPEN_LOOP_MAX_PENDING: usize = 1 << 16;

/// The shape of the run, fixed from the arguments.
struct Shape {
    /// Lookups (else registrations).
    lookup: bool,
    /// Most requests in flight per socket.
    window: usize,
    /// Most requests one socket sends per pass.
    per_pass: usize,
    /// register: timestamps range over now +- this many seconds.
    spread: u64,
    /// The target is the baseline sink: answers match in order.
    sink: bool,
    /// Send without waiting for answers, as fast as the rate allows.
    open_loop: bool,
    /// Requests per second in all (0: no limit).
    rate: u64,
}

/// Buffers reused from pass to pass.
#[derive(Default)]
struct Scratch {
    /// What each request of the pass answers (the looked-up client's index).
    tags: Vec<u32>,
    /// The pass's registrations.
    regs: Vec<Vec<u8>>,
    /// The pass's lookups laid back to back, for GSO.
    gso: Vec<u8>,
}

/// One run of lookups or registrations.
struct Requests {
    shape: Shape,
    /// Every client's fingerprint, and a lookup of each.
    fps: Vec<Fingerprint>,
    lookups: Vec<Vec<u8>>,
    scratch: Scratch,
    t: Tally,
    pacer: Pacer,
    /// When sending ends.
    end: Instant,
    last_answer: Instant,
    /// The client that goes first in the next pass (round robin).
    rr: usize,
    /// Open loop: how long after its due time each request left (0 when on time or
    /// early).
    late: Histogram,
}

/// Lookup and register: closed loop (`--in-flight` per socket) or paced open loop.
pub(super) fn requests(
    args: &BenchOptions,
    clients: &mut [Client],
    poll: &mut Poll,
    rx: &mut Rx,
) -> Result<(Tally, u64, Extra), BenchError> {
    let mut run = Requests::new(args, clients);
    let timeout = args.timeout();
    let drain_end = run.end + timeout.min(Duration::from_secs(1));
    let mut next_expiry = run.pacer.start + EXPIRY_EVERY;
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let sending = now < run.end;
        if !sending && (now >= drain_end || clients.iter().all(|c| c.pending.is_empty())) {
            break;
        }
        let budget = if sending {
            run.send_pass(clients, now)
        } else {
            0
        };
        let wait = run.wait(now, sending, budget, drain_end);
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::io("poll failed")(e)),
        }
        for ev in events.iter() {
            run.read_answers(&mut clients[ev.token().0], rx);
        }
        let now = Instant::now();
        if now >= next_expiry {
            next_expiry = now + EXPIRY_EVERY;
            run.expire(clients, now, timeout);
        }
    }
    Ok(run.finish(clients))
}

impl Requests {
    fn new(args: &BenchOptions, clients: &[Client]) -> Self {
        let fps: Vec<Fingerprint> = clients.iter().map(|c| c.fp).collect();
        let lookups = fps.iter().map(lookup_packet).collect();
        let start = Instant::now();
        let (window, per_pass) = if args.load.open_loop {
            (OPEN_LOOP_MAX_PENDING, BATCH)
        } else {
            (args.load.in_flight, args.load.in_flight)
        };
        Requests {
            shape: Shape {
                lookup: args.workload == Workload::Lookup,
                window,
                per_pass,
                spread: args.register.timestamp_spread,
                sink: args.sink,
                open_loop: args.load.open_loop,
                rate: args.load.rate,
            },
            fps,
            lookups,
            scratch: Scratch::default(),
            t: Tally::default(),
            pacer: Pacer {
                rate: args.load.rate,
                start,
                sent: 0,
            },
            end: start + args.duration(),
            last_answer: start,
            rr: 0,
            late: Histogram::new(),
        }
    }

    /// One pass over the clients, round robin, each sending what its window and the pacer
    /// allow; returns the pacer's budget left.
    fn send_pass(&mut self, clients: &mut [Client], now: Instant) -> u64 {
        let mut budget = self.pacer.budget(now);
        if self.shape.open_loop && self.shape.rate > 0 && budget < self.pacer.burst() {
            // Paced open loop: whole bursts only, each as its first request falls due (the
            // rest leave early and are timed from when they left); one request a system
            // call would cap the bench well below a server core's rate.
            return 0;
        }
        let unix = unix_now();
        let n = clients.len();
        for k in 0..n {
            if budget == 0 {
                break;
            }
            let i = (self.rr + k) % n;
            let c = &mut clients[i];
            let room = self.shape.window.saturating_sub(c.pending.len());
            let want = (room.min(self.shape.per_pass) as u64).min(budget) as usize;
            if want == 0 {
                continue;
            }
            let sent = if self.shape.lookup {
                self.send_lookups(c, i, n, want)
            } else {
                self.send_registrations(c, unix, want)
            };
            let left = Instant::now();
            for (j, &tag) in self.scratch.tags[..sent].iter().enumerate() {
                let at = if self.shape.open_loop {
                    let due = self.pacer.scheduled(self.pacer.sent + j as u64);
                    self.late.record(left.saturating_duration_since(due));
                    left.min(due)
                } else {
                    left
                };
                c.pending.push_back(Pending { at, tag });
            }
            c.seq += sent;
            self.t.c.sent += sent as u64;
            self.pacer.sent += sent as u64;
            budget = budget.saturating_sub(sent as u64);
        }
        self.rr = (self.rr + 1) % n;
        budget
    }

    /// Sends `want` lookups of the next clients after client `i` (of `n`); returns how
    /// many the kernel took.
    fn send_lookups(&mut self, c: &mut Client, i: usize, n: usize, want: usize) -> usize {
        let s = &mut self.scratch;
        s.tags.clear();
        s.tags
            .extend((0..want).map(|j| ((i + 1 + c.seq + j) % n) as u32));
        let pkts: Vec<&[u8]> = s
            .tags
            .iter()
            .map(|&x| self.lookups[x as usize].as_slice())
            .collect();
        if c.gso {
            s.gso.clear();
            pkts.iter().for_each(|p| s.gso.extend_from_slice(p));
            match send_gso(&c.sock, &s.gso, pkts[0].len()) {
                Ok(k) => return k,
                Err(_) => c.gso = false,
            }
        }
        send_all(&c.sock, &pkts)
    }

    /// Signs and sends up to `want` fresh registrations; returns how many the kernel took.
    fn send_registrations(&mut self, c: &mut Client, unix: u64, want: usize) -> usize {
        let s = &mut self.scratch;
        s.regs.clear();
        for _ in 0..want {
            match next_registration(c, unix, self.shape.spread) {
                Some(p) => s.regs.push(p),
                None => {
                    self.t.pool_stalls += 1;
                    break;
                }
            }
        }
        s.tags.clear();
        s.tags.resize(s.regs.len(), 0);
        let pkts: Vec<&[u8]> = s.regs.iter().map(|p| p.as_slice()).collect();
        send_all(&c.sock, &pkts)
    }

    /// How long the next poll may wait.
    fn wait(&self, now: Instant, sending: bool, budget: u64, drain_end: Instant) -> Duration {
        if !sending {
            POLL_MAX.min(drain_end.saturating_duration_since(now))
        } else if self.shape.open_loop && (self.shape.rate == 0 || budget > 0) {
            Duration::ZERO
        } else if self.shape.open_loop {
            let due = self
                .pacer
                .scheduled(self.pacer.sent)
                .saturating_duration_since(now);
            if due < SPIN_BELOW {
                Duration::ZERO
            } else {
                due.min(POLL_MAX)
            }
        } else if self.shape.rate > 0 && budget == 0 {
            self.pacer.wait(now).min(POLL_MAX)
        } else {
            POLL_MAX.min(self.end.saturating_duration_since(now))
        }
    }

    /// Reads every answer waiting on client `c`'s socket and matches it to a request.
    fn read_answers(&mut self, c: &mut Client, rx: &mut Rx) {
        loop {
            let got = rx.recv(&c.sock);
            let now = Instant::now();
            for k in 0..got {
                let a = classify(rx.get(k));
                let matched = if self.shape.lookup {
                    on_lookup_answer(&mut self.t, c, &self.fps, self.shape.sink, &a)
                } else {
                    on_register_answer(&mut self.t, c, &a)
                };
                if let Some(p) = matched {
                    self.t.c.received += 1;
                    self.t.c.hist.record(now.duration_since(p.at));
                    self.last_answer = now;
                }
            }
            if got < BATCH {
                break;
            }
        }
    }

    /// Counts as lost the requests in flight for longer than `timeout`.
    fn expire(&mut self, clients: &mut [Client], now: Instant, timeout: Duration) {
        for c in clients.iter_mut() {
            while c
                .pending
                .front()
                .is_some_and(|p| now.duration_since(p.at) > timeout)
            {
                c.pending.pop_front();
                self.t.c.lost += 1;
            }
        }
    }

    /// The counters, once the run is over: what is still in flight is lost.
    fn finish(mut self, clients: &mut [Client]) -> (Tally, u64, Extra) {
        for c in clients.iter_mut() {
            self.t.c.lost += c.pending.len() as u64;
            c.pending.clear();
        }
        let start = self.pacer.start;
        self.t.c.secs = self
            .last_answer
            .max(self.end)
            .duration_since(start)
            .as_secs_f64();
        let count = self.t.c.received;
        let extra = if self.shape.open_loop {
            vec![
                ("send_late_p99_us", Value::Num(self.late.quantile_us(0.99))),
                ("send_late_max_us", Value::Num(self.late.max_us())),
            ]
        } else {
            Vec::new()
        };
        (self.t, count, extra)
    }
}

/// The next registration of client `c`: its identities in turn, each with a timestamp one
/// second after its last, at least `now - spread` and at most `now + spread` (Unix s).
/// `None` when every identity has used its timestamps up to `now + spread`.
fn next_registration(c: &mut Client, now: u64, spread: u64) -> Option<Vec<u8>> {
    let n = c.pool.len();
    for k in 0..n {
        let idx = (c.next_id + k) % n;
        let e = &mut c.pool[idx];
        let ts = e.next_ts.max(now.saturating_sub(spread));
        if ts > now + spread {
            continue;
        }
        e.next_ts = ts + 1;
        c.next_id = idx + 1;
        return Some(register_packet(&e.id, ts, c.cookie.as_ref()));
    }
    None
}

/// Matches a lookup answer to the oldest request in flight for its target; requests
/// queued before it were lost. Returns the request answered.
fn on_lookup_answer(
    t: &mut Tally,
    c: &mut Client,
    fps: &[Fingerprint],
    sink: bool,
    a: &Answer,
) -> Option<Pending> {
    match *a {
        Answer::Lookup { target, status } => {
            let pos = if sink {
                (!c.pending.is_empty()).then_some(0)
            } else {
                c.pending.iter().position(|p| fps[p.tag as usize] == target)
            };
            let Some(pos) = pos else {
                t.unmatched += 1;
                return None;
            };
            t.c.lost += pos as u64;
            c.pending.drain(..pos);
            match status {
                LookupStatus::Online { .. } => t.online += 1,
                LookupStatus::Offline { .. } => t.offline += 1,
                LookupStatus::Unknown => t.unknown += 1,
            }
            c.pending.pop_front()
        }
        _ => {
            note_other(t, a, u8::from(PacketType::Lookup))?;
            let p = c.pending.pop_front();
            if p.is_none() {
                t.unmatched += 1;
            }
            p
        }
    }
}

/// Matches an answer to a registration (OK, cookie, error) to the oldest in flight.
fn on_register_answer(t: &mut Tally, c: &mut Client, a: &Answer) -> Option<Pending> {
    match *a {
        Answer::Ok => t.accepted += 1,
        Answer::Cookie(k) => {
            // The cookie expired (they last 60-120 s): later registrations carry the new one.
            c.cookie = Some(k);
            t.cookies += 1;
        }
        _ => {
            note_other(t, a, u8::from(PacketType::Register))?;
        }
    }
    let p = c.pending.pop_front();
    if p.is_none() {
        t.unmatched += 1;
    }
    p
}
