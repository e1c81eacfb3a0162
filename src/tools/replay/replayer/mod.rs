//! The replay's I/O: one local UDP socket per original client address, one TCP connection
//! per captured flow, one poll loop that plays the timeline and reads every reply
//! (docs/PROTOCOL.md §10, `rendezvous replay`, "What is sent").
//!
//! Owns every socket it opens and closes them when dropped. The loop ends once every step
//! is sent, every connection is finished, and no reply has come for the wait.

mod tcp;
mod udp;

use super::limits::Limits;
use super::plan::{Action, Pacing, Step};
use super::tally::Tally;
use crate::tools::capture::CaptureRead;
use crate::tools::replay::ReplayError;
use mio::{Events, Poll};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tcp::TcpSide;
use udp::UdpSide;

/// Timeline steps dispatched per turn of the loop before replies are read again.
const STEP_BUDGET: usize = 256;
/// Token offset of TCP flows (UDP sockets use the tokens below it).
const TCP_TOKEN_BASE: usize = 1 << 24;
/// Bytes read per `recv` or `read`.
const READ_BUF: usize = 64 * 1024;

/// The replay's sockets and counters.
pub(super) struct Replayer {
    target: SocketAddr,
    /// How long replies are waited for, and how long a connection may idle.
    wait: Duration,
    poll: Poll,
    udp: UdpSide,
    tcp: TcpSide,
    buf: Vec<u8>,
    /// What was sent and received.
    pub(super) tally: Tally,
}

/// Where the timeline is: its first capture time, when the replay started, the pacing.
struct Clock {
    t0_us: u64,
    start: Instant,
    pacing: Pacing,
}

impl Clock {
    /// When `step` is due.
    fn due(&self, step: &Step) -> Instant {
        self.start + self.pacing.due(self.t0_us, step.ts_us)
    }
}

impl Replayer {
    /// Sockets for a replay of `read` to `target`, within `limits`; replies are waited for
    /// `wait_ms` after the last one.
    pub(super) fn new(
        read: &CaptureRead,
        target: SocketAddr,
        limits: Limits,
        wait_ms: u64,
    ) -> Result<Self, ReplayError> {
        let mut tally = Tally::default();
        tally.tcp.flows = read.flows.len() as u64;
        Ok(Replayer {
            target,
            wait: Duration::from_millis(wait_ms),
            poll: Poll::new().map_err(ReplayError::io("cannot create the poller"))?,
            udp: UdpSide::new(limits.udp),
            tcp: TcpSide::new(read.flows.len(), limits.tcp),
            buf: vec![0; READ_BUF],
            tally,
        })
    }

    /// The most sockets the replay may open for UDP.
    pub(super) fn udp_limit(&self) -> usize {
        self.udp.limit
    }

    /// Plays `steps` with `pacing`, then reads replies until the end condition (module
    /// header).
    pub(super) fn play(
        &mut self,
        read: &CaptureRead,
        steps: &[Step],
        pacing: Pacing,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<(), ReplayError> {
        self.tcp.count_chunks(steps);
        let clock = Clock {
            t0_us: steps.first().map_or(0, |s| s.ts_us),
            start: Instant::now(),
            pacing,
        };
        let mut next = 0;
        let mut events = Events::with_capacity(1024);
        loop {
            self.flush_backlog(read)?;
            let before = next;
            next = self.dispatch_due(read, steps, next, &clock)?;
            if let Some(b) = bar {
                b.inc((next - before) as u64);
            }
            self.tcp_turn();
            let now = Instant::now();
            let all_sent = next >= steps.len() && self.udp.backlog.is_empty();
            let quiet_for = now.saturating_duration_since(self.udp.last_reply);
            if all_sent && self.tcp.all_done() && quiet_for >= self.wait {
                return Ok(());
            }
            let budget_used = next - before >= STEP_BUDGET;
            let timeout = self.sleep_for(steps.get(next), &clock, budget_used, now);
            self.poll_once(&mut events, timeout)?;
        }
    }

    /// Dispatches the steps from `next` on that are due, at most [`STEP_BUDGET`], while no
    /// datagram waits for the kernel; returns the index of the next step.
    fn dispatch_due(
        &mut self,
        read: &CaptureRead,
        steps: &[Step],
        mut next: usize,
        clock: &Clock,
    ) -> Result<usize, ReplayError> {
        let now = Instant::now();
        let end = steps.len().min(next + STEP_BUDGET);
        while next < end && self.udp.backlog.is_empty() {
            if clock.due(&steps[next]) > now {
                break;
            }
            self.dispatch(read, steps[next].action)?;
            next += 1;
        }
        Ok(next)
    }

    fn dispatch(&mut self, read: &CaptureRead, action: Action) -> Result<(), ReplayError> {
        match action {
            Action::Udp(i) => {
                let sock = self.socket_for(read.datagrams[i].src)?;
                self.udp.backlog.push_back((sock, i));
                self.flush_backlog(read)?;
            }
            Action::Connect(i) => self.tcp.queue(i),
            Action::Chunk { flow, start, end } => {
                let data = &read.flows[flow].client_data[start..end];
                self.tcp.chunk_due(flow, data, &mut self.tally.tcp);
            }
        }
        Ok(())
    }

    /// How long the loop may sleep: until the next step is due, a connection's idle
    /// deadline, or the end of the wait for replies (1 ms to 500 ms).
    fn sleep_for(
        &self,
        next: Option<&Step>,
        clock: &Clock,
        budget_used: bool,
        now: Instant,
    ) -> Duration {
        let timeout = if !self.udp.backlog.is_empty() || budget_used {
            Duration::from_millis(1)
        } else if let Some(step) = next {
            clock.due(step).saturating_duration_since(now)
        } else {
            let quiet_for = now.saturating_duration_since(self.udp.last_reply);
            self.wait.saturating_sub(quiet_for)
        };
        timeout
            .min(self.tcp.idle_deadline(self.wait, now))
            .clamp(Duration::from_millis(1), Duration::from_millis(500))
    }

    /// Waits up to `timeout` for readiness and handles every event.
    fn poll_once(&mut self, events: &mut Events, timeout: Duration) -> Result<(), ReplayError> {
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(ReplayError::io("poll failed")(e)),
        }
        for ev in events.iter() {
            let t = ev.token().0;
            if t < TCP_TOKEN_BASE {
                if ev.is_readable() {
                    self.read_udp(t);
                }
            } else {
                self.on_tcp_event(t - TCP_TOKEN_BASE, ev.is_readable(), ev.is_writable());
            }
        }
        Ok(())
    }
}
