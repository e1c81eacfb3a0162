//! The wiring of the in-memory network: which connection ends exist, the pipe (a pair of
//! byte streams) between each two, and the agenda of connects due. Bookkeeping only: the
//! network ([`super::Net`]) decides what moves when.

use super::pipe::Stream;
use super::HostId;
use crate::core::tcp::ConnId;
use std::collections::BTreeMap;

/// One end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum End {
    Host(HostId, ConnId),
    Ext(u64),
}

/// A connection: `ends[0]` sends on `streams[0]`, `ends[1]` on `streams[1]`.
#[derive(Debug)]
pub(super) struct Pipe {
    pub(super) ends: [End; 2],
    pub(super) streams: [Stream; 2],
    /// An end that closed no longer reads or sends.
    pub(super) open: [bool; 2],
}

/// Something due at a time.
#[derive(Debug)]
pub(super) enum Event {
    /// A connect from `from` (peer link `peer`) reaches `to`.
    Established {
        from: HostId,
        peer: usize,
        to: HostId,
    },
    /// A connect of `host`'s peer link `peer` failed (refused, or timed out).
    ConnectFailed { host: HostId, peer: usize },
}

/// The pipes of the network, and which pipe and side each open end is on.
#[derive(Debug)]
pub(super) struct Wires {
    /// The pipes by id.
    pub(super) pipes: BTreeMap<u64, Pipe>,
    /// Each open end's pipe id and side.
    pub(super) ends: BTreeMap<End, (u64, usize)>,
    /// The id of the next pipe (from 1; an [`super::ExtConn`] takes the id of its pipe).
    pub(super) next: u64,
}

impl Wires {
    pub(super) fn new() -> Self {
        Wires {
            pipes: BTreeMap::new(),
            ends: BTreeMap::new(),
            next: 1,
        }
    }

    /// A new pipe between `a` (side 0) and `b` (side 1); returns its id.
    pub(super) fn add(&mut self, a: End, b: End) -> u64 {
        let id = self.next;
        self.next += 1;
        self.pipes.insert(
            id,
            Pipe {
                ends: [a, b],
                streams: [Stream::default(), Stream::default()],
                open: [true, true],
            },
        );
        self.ends.insert(a, (id, 0));
        self.ends.insert(b, (id, 1));
        id
    }
}

/// What is due when: connects that complete or fail, in time order (ties in the order
/// scheduled).
#[derive(Debug, Default)]
pub(super) struct Agenda {
    events: BTreeMap<(u64, u64), Event>,
    next: u64,
}

impl Agenda {
    pub(super) fn push(&mut self, at_ms: u64, ev: Event) {
        self.events.insert((at_ms, self.next), ev);
        self.next += 1;
    }

    /// When the next event is due.
    pub(super) fn next_time(&self) -> Option<u64> {
        self.events.keys().next().map(|&(t, _)| t)
    }

    /// The first event due at or before `now_ms`, taken off the agenda.
    pub(super) fn pop_due(&mut self, now_ms: u64) -> Option<Event> {
        let (&(at, seq), _) = self.events.iter().next()?;
        if at > now_ms {
            return None;
        }
        self.events.remove(&(at, seq))
    }
}
