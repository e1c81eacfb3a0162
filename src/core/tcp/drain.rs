//! Stopping gracefully (docs/PROTOCOL.md §7, "Signals"): on a drain, peers are told at
//! once (a HeartBeat with health 3, draining, on every link; later ones say the same),
//! every new hello is refused (503 `draining`), status answers say `health=draining`, and
//! the loop goes on until nothing is in flight: every write the store has not answered,
//! every queued store request, every answer and byte owed to a connection.

use super::{LinkState, TcpCore};

/// What a core carries besides its parts: the nonces made, and whether it drains.
#[derive(Debug, Default)]
pub(super) struct Life {
    /// Authentication nonces made so far (docs/PROTOCOL.md §8.17, §8.18).
    pub(super) nonces: u64,
    /// A drain began: heartbeats say health 3 (draining).
    pub(super) draining: bool,
}

impl TcpCore {
    /// Begins a drain at `now_ms`: every link that is up gets a HeartBeat with health 3
    /// (draining) now, and every later HeartBeat says the same (docs/PROTOCOL.md §8.4);
    /// from now on a hello is refused with 503 `draining` and a status answer says
    /// `health=draining`. Connections already admitted are answered as before.
    pub fn begin_drain(&mut self, now_ms: u64) {
        self.life.draining = true;
        for l in &mut self.links {
            if let LinkState::Up {
                next_heartbeat_ms, ..
            } = &mut l.state
            {
                *next_heartbeat_ms = now_ms;
            }
        }
        self.link_timeouts(now_ms);
    }

    /// True once a drain began ([`Self::begin_drain`]).
    pub fn draining(&self) -> bool {
        self.life.draining
    }

    /// The health our HeartBeats carry: 3 (draining) once a drain began, else 1 (ok).
    pub(super) fn health(&self) -> u8 {
        if self.life.draining {
            crate::wire::tcp::HEALTH_DRAINING
        } else {
            crate::wire::tcp::HEALTH_OK
        }
    }

    /// True when nothing is in flight: no write waits for the store (in this turn's batch
    /// or unanswered), no store request is queued, and no connection is owed an answer or
    /// holds unwritten bytes.
    pub fn drained(&self) -> bool {
        self.batch.writes.is_empty()
            && self.batch.by_seq.is_empty()
            && self.out.requests.is_empty()
            && self
                .conns
                .values()
                .all(|c| c.answers.is_empty() && c.out.pending() == 0)
    }
}
