//! The TCP side of a replay: one fresh connection per captured flow (at most a limit open
//! at once, the rest queued), the client's bytes written as their chunks come due, and the
//! server's answers followed by a [`Tracker`].

use super::{Replayer, TCP_TOKEN_BASE};
use crate::tools::replay::plan::{Action, Step};
use crate::tools::replay::tally::TcpTally;
use crate::tools::replay::tracker::Tracker;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// The state of one TCP flow's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowState {
    /// Its start is not due yet.
    NotYet,
    /// Due, waiting for a free connection slot.
    Queued,
    /// Connecting.
    Connecting,
    /// Established.
    Open,
    /// Finished (closed by us or the server, or failed).
    Done,
}

/// One TCP flow being replayed.
#[derive(Debug)]
struct Flow {
    state: FlowState,
    stream: Option<TcpStream>,
    /// Client bytes due and not yet written.
    out: VecDeque<u8>,
    /// Chunks not yet due.
    chunks_left: usize,
    tracker: Tracker,
    last_activity: Instant,
}

/// The replay's TCP connections.
pub(super) struct TcpSide {
    flows: Vec<Flow>,
    /// Most connections connecting or open at once.
    limit: usize,
    /// Flows due and waiting for a connection slot.
    queued: VecDeque<usize>,
    /// Flows connecting or open (at most `limit`).
    active: Vec<usize>,
    /// Flows finished.
    done: usize,
}

impl TcpSide {
    /// `flows` flows, none started; at most `limit` open at once.
    pub(super) fn new(flows: usize, limit: usize) -> Self {
        let now = Instant::now();
        TcpSide {
            flows: (0..flows)
                .map(|_| Flow {
                    state: FlowState::NotYet,
                    stream: None,
                    out: VecDeque::new(),
                    chunks_left: 0,
                    tracker: Tracker::new(),
                    last_activity: now,
                })
                .collect(),
            limit,
            queued: VecDeque::new(),
            active: Vec::new(),
            done: 0,
        }
    }

    /// Notes how many chunks each flow has on the timeline.
    pub(super) fn count_chunks(&mut self, steps: &[Step]) {
        for s in steps {
            if let Action::Chunk { flow, .. } = s.action {
                self.flows[flow].chunks_left += 1;
            }
        }
    }

    /// Flow `i`'s start is due: it waits for a connection slot.
    pub(super) fn queue(&mut self, i: usize) {
        self.flows[i].state = FlowState::Queued;
        self.queued.push_back(i);
    }

    /// A chunk of flow `i`'s client bytes is due: queued for writing (counted unsent when
    /// the flow is finished already).
    pub(super) fn chunk_due(&mut self, i: usize, data: &[u8], tally: &mut TcpTally) {
        let f = &mut self.flows[i];
        f.chunks_left = f.chunks_left.saturating_sub(1);
        if f.state == FlowState::Done {
            tally.bytes_unsent += data.len() as u64;
        } else {
            f.out.extend(data);
        }
    }

    /// True when every flow is finished.
    pub(super) fn all_done(&self) -> bool {
        self.done == self.flows.len()
    }

    /// Time until the first open connection has been idle for `wait` (`Duration::MAX`
    /// when none is open).
    pub(super) fn idle_deadline(&self, wait: Duration, now: Instant) -> Duration {
        self.active
            .iter()
            .map(|&i| {
                wait.saturating_sub(now.saturating_duration_since(self.flows[i].last_activity))
            })
            .min()
            .unwrap_or(Duration::MAX)
    }
}

impl Replayer {
    /// One turn for the connections: opens due ones, writes what is due, closes finished
    /// ones.
    pub(super) fn tcp_turn(&mut self) {
        self.start_queued();
        for i in self.tcp.active.clone() {
            self.pump(i);
        }
        let now = Instant::now();
        for i in self.tcp.active.clone() {
            self.maybe_finish(i, now);
        }
    }

    /// Opens the connections of due flows while slots are free.
    fn start_queued(&mut self) {
        while self.tcp.active.len() < self.tcp.limit {
            let Some(i) = self.tcp.queued.pop_front() else {
                return;
            };
            let f = &mut self.tcp.flows[i];
            f.last_activity = Instant::now();
            let Ok(mut s) = TcpStream::connect(self.target) else {
                self.fail_flow(i);
                continue;
            };
            let reg = self.poll.registry().register(
                &mut s,
                Token(TCP_TOKEN_BASE + i),
                Interest::READABLE | Interest::WRITABLE,
            );
            if reg.is_err() {
                self.fail_flow(i);
                continue;
            }
            f.stream = Some(s);
            f.state = FlowState::Connecting;
            self.tcp.active.push(i);
        }
    }

    fn fail_flow(&mut self, i: usize) {
        self.tally.tcp.failed += 1;
        self.close_flow(i);
    }

    /// Readiness of flow `i`: a connection completes, answers arrive, bytes may be written.
    pub(super) fn on_tcp_event(&mut self, i: usize, readable: bool, writable: bool) {
        let Some(f) = self.tcp.flows.get_mut(i) else {
            return;
        };
        if f.state == FlowState::Connecting && (writable || readable) {
            let Some(s) = f.stream.as_ref() else { return };
            match (s.take_error(), s.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    f.state = FlowState::Open;
                    f.last_activity = Instant::now();
                    self.tally.tcp.connected += 1;
                }
                (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => return,
                _ => return self.fail_flow(i),
            }
        }
        if readable {
            self.read_flow(i);
        }
        if writable {
            self.pump(i);
        }
    }

    /// Reads what the server sent on flow `i` until "not now"; the server closing ends it.
    fn read_flow(&mut self, i: usize) {
        loop {
            let f = &mut self.tcp.flows[i];
            let Some(s) = f.stream.as_mut() else { return };
            if f.state != FlowState::Open {
                return;
            }
            match s.read(&mut self.buf) {
                Ok(0) => return self.closed_by_server(i),
                Ok(n) => {
                    f.tracker.received(&self.buf[..n]);
                    f.last_activity = Instant::now();
                    self.tally.tcp.bytes_received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.closed_by_server(i),
            }
        }
    }

    /// Writes flow `i`'s due bytes until "not now".
    fn pump(&mut self, i: usize) {
        loop {
            let f = &mut self.tcp.flows[i];
            if f.state != FlowState::Open || f.out.is_empty() {
                return;
            }
            let Some(s) = f.stream.as_mut() else { return };
            let (due, _) = f.out.as_slices();
            match s.write(due) {
                Ok(0) => return,
                Ok(n) => {
                    f.tracker.sent(&due[..n]);
                    f.out.drain(..n);
                    f.last_activity = Instant::now();
                    self.tally.tcp.bytes_sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.closed_by_server(i),
            }
        }
    }

    /// Closes flow `i` once all its bytes are written and its answers are complete (or
    /// nothing has moved on it for the wait); a connection that never completes is given
    /// up after the same idle time.
    fn maybe_finish(&mut self, i: usize, now: Instant) {
        let f = &self.tcp.flows[i];
        let idle = now.saturating_duration_since(f.last_activity) >= self.wait;
        match f.state {
            FlowState::Open
                if f.chunks_left == 0 && f.out.is_empty() && (f.tracker.complete() || idle) =>
            {
                self.close_flow(i)
            }
            FlowState::Connecting if idle => self.fail_flow(i),
            _ => {}
        }
    }

    fn closed_by_server(&mut self, i: usize) {
        self.tally.tcp.closed_by_server += 1;
        self.close_flow(i);
    }

    fn close_flow(&mut self, i: usize) {
        let t = &mut self.tcp;
        let f = &mut t.flows[i];
        if let Some(mut s) = f.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
            t.active.retain(|&a| a != i);
        }
        if f.state != FlowState::Done {
            f.state = FlowState::Done;
            t.done += 1;
            self.tally.tcp.bytes_unsent += f.out.len() as u64;
            f.out.clear();
            self.tally.tcp.counts.add(&f.tracker.counts);
        }
    }
}
