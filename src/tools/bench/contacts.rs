//! The TCP workload of `rendezvous bench`: `--clients` connections in the client role
//! (docs/PROTOCOL.md §8.3), each sending Updates with a Barrier (command 5) after every
//! `--barrier-every`, with `--in-flight` such batches outstanding; the latency reported is
//! from the end of a batch's write to its Barrier's status 200 ("durable"), read with the
//! wire's answer codec ([`crate::wire::tcp::answer::AnswerReader`]).
//!
//! Each connection first proves the key of an Ed25519 identity made for it (docs/PROTOCOL.md
//! §8.18), so the workload runs against a default server; a server with `--open-contacts`
//! takes it as well.
//!
//! One thread per connection, blocking I/O with deadlines (so every connection stops by
//! itself); nothing shared but the start and end instants. Contact keys: username the
//! connection's fingerprint in hex (new for every run), contact names cycling through
//! [`KEYS_PER_CONNECTION`] per connection, and a phone that changes on every Update, so every
//! Update alters state and a run leaves at most `clients x KEYS_PER_CONNECTION` contacts.

use super::report::{add_cpu, Common, Report};
use super::stats::{cpu_secs, Histogram};
use super::{BenchError, BenchOptions};
use crate::client::contacts::ContactsClient;
use crate::identity::{Identity, KeyAlgorithm};
use crate::wire::tcp::answer::{AnswerPiece, AnswerReader, Asked};
use crate::wire::tcp::{self, ClientCommand, ContactFields, StatusFrame};
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Distinct contact names one connection writes (then it updates them again).
pub const KEYS_PER_CONNECTION: u64 = 1000;

/// What one connection did.
#[derive(Default)]
struct ConnResult {
    sent: u64,
    confirmed: u64,
    barriers: u64,
    lost_barriers: u64,
    errors: BTreeMap<u16, u64>,
    hist: Histogram,
    keys: u64,
    last_answer: Option<Instant>,
    io_error: Option<String>,
}

#[derive(Clone)]
struct Plan {
    target: SocketAddr,
    user: String,
    batch: usize,
    in_flight: usize,
    /// Updates per second for this connection (0: unlimited).
    rate: f64,
    start: Instant,
    end: Instant,
    timeout: Duration,
}

/// One batch: `batch` Updates then a Barrier.
fn batch_bytes(plan: &Plan, next: &mut u64, buf: &mut Vec<u8>) {
    buf.clear();
    for _ in 0..plan.batch {
        let i = *next;
        *next += 1;
        let contact = format!("contact{}", i % KEYS_PER_CONNECTION);
        let phone = format!("+{i}");
        let _ = ClientCommand::Update(ContactFields {
            username: &plan.user,
            contact: &contact,
            phone: &phone,
        })
        .append_to(buf);
    }
    let _ = ClientCommand::Barrier.append_to(buf);
}

/// The Barriers' answers on one connection, read with the wire's answer codec.
struct Statuses {
    reader: AnswerReader,
    /// Bytes received and not read yet.
    buf: Vec<u8>,
}

impl Statuses {
    /// Notes a Barrier sent.
    fn asked(&mut self) -> std::io::Result<()> {
        self.reader
            .ask(Asked::Barrier, ())
            .map_err(|e| invalid(e.to_string()))
    }

    /// Reads the next status frame (from `s`, within its read timeout); returns its
    /// status.
    fn next(&mut self, s: &mut TcpStream) -> std::io::Result<u16> {
        loop {
            match self.reader.read(&self.buf) {
                Ok(Some(p)) => {
                    let frame = &self.buf[..p.len];
                    let status = match p.piece {
                        AnswerPiece::Status(f) => Some(f.status),
                        // A detail that is not UTF-8: the status still counts.
                        _ => StatusFrame::peek_status(frame),
                    };
                    let (len, kind) = (p.len, p.piece.kind());
                    self.buf.drain(..len);
                    return status.ok_or_else(|| {
                        invalid(format!("expected a status frame, got {}", kind.name()))
                    });
                }
                Ok(None) => {
                    let mut chunk = [0u8; 512];
                    let n = s.read(&mut chunk)?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) => return Err(invalid(format!("expected a status frame: {e}"))),
            }
        }
    }
}

/// An `InvalidData` error.
fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Writes batches for one connection.
struct Writer {
    /// Updates written so far (numbers the next contact and phone).
    next: u64,
    buf: Vec<u8>,
}

impl Writer {
    /// Writes the next batch unless the run is over (waiting first when paced); returns
    /// whether it did.
    fn send(
        &mut self,
        plan: &Plan,
        s: &mut TcpStream,
        r: &mut ConnResult,
        q: &mut VecDeque<Instant>,
    ) -> std::io::Result<bool> {
        if plan.rate > 0.0 {
            // Pacing: this batch may leave once the rate allows its Updates.
            let at = plan.start + Duration::from_secs_f64(r.sent as f64 / plan.rate);
            if at >= plan.end {
                return Ok(false);
            }
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
        }
        if Instant::now() >= plan.end {
            return Ok(false);
        }
        batch_bytes(plan, &mut self.next, &mut self.buf);
        let left = (plan.end + plan.timeout).saturating_duration_since(Instant::now());
        s.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        s.write_all(&self.buf)?;
        q.push_back(Instant::now());
        r.sent += plan.batch as u64;
        Ok(true)
    }
}

fn connection(plan: &Plan) -> ConnResult {
    let mut r = ConnResult::default();
    if let Err(e) = drive(plan, &mut r) {
        r.io_error = Some(e.to_string());
    }
    r
}

/// Connects to the target, says hello in the client role (docs/PROTOCOL.md §8.2) and
/// proves the key of a new identity (§8.18); returns the stream and the plan with the
/// username that identity owns.
fn open(plan: &Plan) -> std::io::Result<(TcpStream, Plan)> {
    let id = Identity::generate(KeyAlgorithm::Ed25519, &plan.user)
        .map_err(|e| std::io::Error::other(format!("cannot make an identity: {e}")))?;
    let timeout = plan.timeout.max(Duration::from_secs(2));
    let mut cl = ContactsClient::connect(plan.target, &plan.user, timeout)?;
    cl.authenticate(&id)?;
    let (s, _) = cl.into_parts()?;
    s.set_read_timeout(None)?;
    let plan = Plan {
        user: ContactsClient::owner(&id),
        ..plan.clone()
    };
    Ok((s, plan))
}

/// Keeps `in_flight` batches outstanding on one connection until the run ends, then waits
/// for the last Barriers (at most the timeout).
fn drive(plan: &Plan, r: &mut ConnResult) -> std::io::Result<()> {
    let (mut s, plan) = open(plan)?;
    let plan = &plan;
    let mut w = Writer {
        next: 0,
        buf: Vec::with_capacity(plan.batch * tcp::CLIENT_RECORD_LEN + 1),
    };
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let mut statuses = Statuses {
        reader: AnswerReader::new(),
        buf: Vec::new(),
    };
    let hard_end = plan.end + plan.timeout;
    while in_flight.len() < plan.in_flight && w.send(plan, &mut s, r, &mut in_flight)? {
        statuses.asked()?;
    }
    while let Some(&t0) = in_flight.front() {
        let left = hard_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left))?;
        let status = match statuses.next(&mut s) {
            Ok(st) => st,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => {
                r.lost_barriers += in_flight.len() as u64;
                in_flight.clear();
                r.keys = w.next.min(KEYS_PER_CONNECTION);
                return Err(e);
            }
        };
        in_flight.pop_front();
        let now = Instant::now();
        r.last_answer = Some(now);
        if status != 200 {
            // A refusal closes the connection (PROTOCOL.md 8.14).
            *r.errors.entry(status).or_default() += 1;
            r.lost_barriers += in_flight.len() as u64;
            in_flight.clear();
            break;
        }
        r.barriers += 1;
        r.confirmed += plan.batch as u64;
        r.hist.record(now.duration_since(t0));
        if now < plan.end && w.send(plan, &mut s, r, &mut in_flight)? {
            statuses.asked()?;
        }
    }
    r.lost_barriers += in_flight.len() as u64;
    r.keys = w.next.min(KEYS_PER_CONNECTION);
    Ok(())
}

/// Runs the contacts workload against the TCP plane at `target`.
pub(crate) fn run(
    args: &BenchOptions,
    target: SocketAddr,
    notes: &mut dyn Write,
) -> Result<Report, BenchError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // The hello names; each connection writes as the identity it proves.
    let prefix = format!("bench-{}-{nanos}", std::process::id());
    let cpu0 = args.pid.and_then(cpu_secs);
    let start = Instant::now();
    let plan = |c: usize| Plan {
        target,
        user: format!("{prefix}-{c}"),
        batch: args.barrier_every,
        in_flight: args.load.in_flight,
        rate: args.load.rate as f64 / args.load.clients as f64,
        start,
        end: start + args.duration(),
        timeout: args.timeout(),
    };
    let results = run_connections(args.load.clients, plan)?;
    let cpu1 = args.pid.and_then(cpu_secs);
    let sum = Sum::of(&results, args.barrier_every as u64, start + args.duration());
    if sum.io_errors == results.len() {
        return Err(BenchError::AllConnectionsFailed {
            target,
            first: sum.first_error.unwrap_or_default(),
        });
    }
    let mut c = sum.common;
    c.secs = sum.last.duration_since(start).as_secs_f64();
    let mut rep = c.report(args, target);
    rep.int("barriers", sum.barriers);
    rep.int("barrier_every", args.barrier_every as u64);
    rep.int("keys", sum.keys);
    rep.int("io_errors", sum.io_errors as u64);
    add_cpu(&mut rep, cpu0, cpu1, c.secs, c.received);
    if let Some(e) = sum.first_error {
        let _ = writeln!(
            notes,
            "bench: {} connection(s) failed; the first: {e}",
            sum.io_errors
        );
    }
    Ok(rep)
}

/// Runs `clients` connections, each on its own thread with the plan `plan(n)` makes for
/// it, and waits for all of them.
fn run_connections(
    clients: usize,
    plan: impl Fn(usize) -> Plan,
) -> Result<Vec<ConnResult>, BenchError> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let plan = plan(c);
                std::thread::Builder::new()
                    .name(format!("bench-conn-{c}"))
                    .spawn_scoped(scope, move || connection(&plan))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.map_err(BenchError::io("cannot start a connection thread"))?
                    .join()
                    .map_err(|_| BenchError::ThreadPanicked)
            })
            .collect::<Result<Vec<_>, _>>()
    })
}

/// What every connection did, summed.
struct Sum {
    common: Common,
    barriers: u64,
    keys: u64,
    io_errors: usize,
    first_error: Option<String>,
    /// The last answer, or the end of the run if later.
    last: Instant,
}

impl Sum {
    /// Sums `results` (Barriers every `batch` Updates; the run ended at `end`).
    fn of(results: &[ConnResult], batch: u64, end: Instant) -> Sum {
        let mut sum = Sum {
            common: Common::default(),
            barriers: 0,
            keys: 0,
            io_errors: 0,
            first_error: None,
            last: end,
        };
        let c = &mut sum.common;
        for r in results {
            c.sent += r.sent;
            c.received += r.confirmed;
            c.lost += r.lost_barriers * batch;
            for (s, n) in &r.errors {
                *c.errors.entry(*s).or_default() += n;
            }
            c.hist.merge(&r.hist);
            sum.barriers += r.barriers;
            sum.keys += r.keys;
            if let Some(e) = &r.io_error {
                sum.io_errors += 1;
                sum.first_error.get_or_insert_with(|| e.clone());
            }
            if let Some(t) = r.last_answer {
                sum.last = sum.last.max(t);
            }
        }
        sum
    }
}
