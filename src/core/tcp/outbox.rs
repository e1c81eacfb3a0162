//! What the core asks of the outside and who waits for the answers: the ordered queue of
//! store requests (docs/PROTOCOL.md §8.8), the queue of actions for the loop, the tag
//! counter that names each request, and the table of pending store reads (tag -> the
//! connection or link waiting for it).

use super::conn::Answer;
use super::directory::DirDest;
use super::reconcile::IdsFor;
use super::{ConnId, StoreRequest, TcpAction};
use std::collections::{HashMap, VecDeque};

/// The queues to the store and the loop.
#[derive(Debug)]
pub(super) struct Outbox {
    /// Store requests, in the order issued (taken from the front).
    pub(super) requests: VecDeque<StoreRequest>,
    /// Actions for the loop, in order.
    pub(super) actions: VecDeque<TcpAction>,
    /// The next tag (stream id, barrier, read); from 1.
    pub(super) next_tag: u64,
}

/// Pending store reads and directory pages, by tag: who waits for each.
#[derive(Debug, Default)]
pub(super) struct Reads {
    /// Streamed answers (stream id -> connection).
    pub(super) streams: HashMap<u64, ConnId>,
    /// Barriers and status digests (tag -> connection).
    pub(super) barriers: HashMap<u64, ConnId>,
    /// Cursor reads (tag -> connection).
    pub(super) cursor_reads: HashMap<u64, ConnId>,
    /// Journal pages pushed on links (tag -> link).
    pub(super) page_reads: HashMap<u64, usize>,
    /// Full-push streams of links (stream id -> link), to note the journal head.
    pub(super) push_streams: HashMap<u64, usize>,
    /// Directory pages (tag -> where they go).
    pub(super) dir_pages: HashMap<u64, DirDest>,
    /// JournalSince reads (tag -> connection).
    pub(super) since_reads: HashMap<u64, ConnId>,
    /// Record-id reads for reconciliations (tag -> a link, or the one we answer).
    pub(super) ids_reads: HashMap<u64, IdsFor>,
    /// Connections whose next command opens a stream while every stream slot is taken
    /// ([`super::TcpBounds::max_streams`]), in the order they came; parsed again as slots
    /// free.
    pub(super) stream_waiters: VecDeque<ConnId>,
}

impl Outbox {
    /// Empty queues; the first tag is 1.
    pub(super) fn new() -> Self {
        Outbox {
            requests: VecDeque::new(),
            actions: VecDeque::new(),
            next_tag: 1,
        }
    }

    /// Queues a request for the store, after those issued before it.
    pub(super) fn request(&mut self, req: StoreRequest) {
        self.requests.push_back(req);
    }

    /// A new tag.
    pub(super) fn tag(&mut self) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        tag
    }
}

impl Reads {
    /// Forgets the reads an abandoned answer waited for; a stream's snapshot is closed.
    pub(super) fn release(&mut self, a: &Answer, out: &mut Outbox) {
        match a {
            Answer::Stream(s) => {
                self.streams.remove(&s.id);
                out.request(StoreRequest::CloseStream { stream: s.id });
            }
            Answer::Barrier { tag, .. } | Answer::Status { tag, .. } => {
                self.barriers.remove(tag);
            }
            Answer::Cursor { tag, .. } => {
                self.cursor_reads.remove(tag);
            }
            Answer::Directory(d) => {
                self.dir_pages.remove(&d.tag);
            }
            Answer::Since { tag, .. } => {
                self.since_reads.remove(tag);
            }
            Answer::Reconcile { tag } => {
                self.ids_reads.remove(tag);
            }
            Answer::Ready(_) | Answer::Refusal(_) | Answer::Mark { .. } => {}
        }
    }

    /// The connection waiting for read `tag` (a stream, cursor, JournalSince or status
    /// digest), forgotten here.
    pub(super) fn take_conn(&mut self, tag: u64) -> Option<ConnId> {
        self.streams
            .remove(&tag)
            .or_else(|| self.cursor_reads.remove(&tag))
            .or_else(|| self.since_reads.remove(&tag))
            .or_else(|| self.barriers.remove(&tag))
    }
}
