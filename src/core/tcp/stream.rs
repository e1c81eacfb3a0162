//! Streamed answers: ListAll (client) and AskForUpdate (server), and the full push of our
//! contacts on a link, read from one store snapshot page by page and written as the reader
//! takes them, never held whole in memory (docs/PROTOCOL.md §8.5, §8.11).

use super::conn::{Answer, Output, PumpCtx, Step};
use super::{ConnId, StoreRequest, TcpCore};
use crate::store::ContactPage;
use crate::wire::tcp::answer::AnswerPiece;
use crate::wire::tcp::{self, ContactFields, Role};
use std::collections::VecDeque;

/// A streamed answer in a connection's queue.
#[derive(Debug)]
pub(super) struct Stream {
    /// Stream id (a tag).
    pub(super) id: u64,
    /// Client records (ListAll) or server records with their clocks (AskForUpdate).
    pub(super) kind: Role,
    /// `[count u32]` first (an answer); else the records go alone (a full push).
    pub(super) counted: bool,
    pub(super) state: StreamState,
}

/// Where a stream stands.
#[derive(Debug)]
pub(super) enum StreamState {
    /// Waiting for the snapshot.
    Opening,
    /// Snapshot open: `count` is written when this answer reaches the head; `buffered`
    /// are read but not yet written; `more` pages follow; `page_asked` when one is on its
    /// way.
    Open {
        count: Option<u32>,
        buffered: Buffered,
        more: bool,
        page_asked: bool,
    },
}

/// Pages read from the store and not yet written: at most two (the one being written and
/// the one read ahead, docs/PROTOCOL.md §8.11), as the store packed them.
#[derive(Debug, Default)]
pub(super) struct Buffered {
    pages: VecDeque<ContactPage>,
    /// The next contact to write in the front page.
    at: usize,
}

impl Buffered {
    /// Contacts read and not yet written.
    fn len(&self) -> usize {
        self.pages.iter().map(ContactPage::len).sum::<usize>() - self.at
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Stream {
    /// Writes what fits of the stream (at most `max_out` pending), keeps the next page
    /// coming, and says whether the stream is done.
    pub(super) fn write(&mut self, out: &mut Output, ctx: &mut PumpCtx<'_>) -> Step {
        let StreamState::Open {
            count,
            buffered,
            more,
            page_asked,
        } = &mut self.state
        else {
            return Step::Wait;
        };
        if let Some(n) = count.take() {
            out.piece(&AnswerPiece::Count(n));
        }
        write_records(self.kind, buffered, out, ctx.cfg.bounds.max_out);
        // Read ahead: keep the next page coming while this one is written, so the reader
        // never waits for a round trip to the store thread.
        let page = ctx.cfg.bounds.page;
        if *more && !*page_asked && buffered.len() < page {
            *page_asked = true;
            ctx.out.request(StoreRequest::NextPage {
                stream: self.id,
                max: page,
            });
        }
        if !buffered.is_empty() || *more {
            return Step::Wait; // output full, or the next page is on its way
        }
        ctx.reads.streams.remove(&self.id);
        ctx.out
            .request(StoreRequest::CloseStream { stream: self.id });
        Step::Done
    }
}

/// Writes buffered records while the output stays within `max_out`; a page written out is
/// dropped.
fn write_records(kind: Role, buffered: &mut Buffered, out: &mut Output, max_out: usize) {
    let rec_len = match kind {
        Role::Client => 1 + tcp::CLIENT_UPDATE_LEN,
        Role::Server => 1 + tcp::SERVER_UPDATE_LEN,
    };
    out.reserve(max_out.saturating_sub(out.pending()));
    while out.pending() + rec_len <= max_out {
        let Some(page) = buffered.pages.front() else {
            break;
        };
        let Some(ct) = page.get(buffered.at) else {
            buffered.pages.pop_front();
            buffered.at = 0;
            continue;
        };
        buffered.at += 1;
        let fields = ContactFields {
            username: ct.username,
            contact: ct.contact,
            phone: ct.phone,
        };
        out.piece(&match kind {
            Role::Client => AnswerPiece::ClientRecord(fields),
            Role::Server => AnswerPiece::ServerRecord {
                clock: ct.clock,
                fields,
            },
        });
    }
    if buffered
        .pages
        .front()
        .is_some_and(|p| buffered.at >= p.len())
    {
        buffered.pages.pop_front();
        buffered.at = 0;
    }
}

impl TcpCore {
    /// ListAll (client) or AskForUpdate (server): a counted answer from a new snapshot; a
    /// client that proved its key lists its own contacts only (docs/PROTOCOL.md §8.18).
    pub(super) fn open_stream(&mut self, conn: ConnId, kind: Role) {
        let id = self.out.next_tag;
        let owner = match kind {
            Role::Client => self.client_scope(conn),
            Role::Server => None,
        };
        self.open_stream_with_id(conn, kind, (true, owner), id);
    }

    /// Queues stream `id` on `conn`, `counted` as an answer or not, of `owner`'s contacts
    /// or all: the snapshot is taken after every write accepted before it
    /// (docs/PROTOCOL.md §8.8).
    pub(super) fn open_stream_with_id(
        &mut self,
        conn: ConnId,
        kind: Role,
        (counted, owner): (bool, Option<String>),
        id: u64,
    ) {
        self.flush_batch();
        self.out.next_tag = self.out.next_tag.max(id + 1);
        self.reads.streams.insert(id, conn);
        self.out
            .request(StoreRequest::Snapshot { stream: id, owner });
        let state = StreamState::Opening;
        let stream = Stream {
            id,
            kind,
            counted,
            state,
        };
        self.push_answer(conn, Answer::Stream(stream));
    }

    /// Parses again the connections that waited for a stream slot, oldest first, while
    /// slots are free (docs/PROTOCOL.md §8.11).
    pub(super) fn wake_stream_waiters(&mut self, now_ms: u64) {
        while self.reads.streams.len() < self.cfg.bounds.max_streams {
            let Some(conn) = self.reads.stream_waiters.pop_front() else {
                return;
            };
            self.parse(now_ms, conn);
        }
    }

    /// The snapshot of `stream` is open with `count` contacts.
    pub(super) fn on_snapshot_ready(&mut self, stream: u64, count: u64) {
        self.note_full_push(stream, count);
        let Some(&conn) = self.reads.streams.get(&stream) else {
            self.out.request(StoreRequest::CloseStream { stream });
            return;
        };
        let count32 = u32::try_from(count).unwrap_or(u32::MAX);
        if let Some(s) = self.find_stream(conn, stream) {
            s.state = StreamState::Open {
                count: s.counted.then_some(count32),
                buffered: Buffered::default(),
                more: count32 > 0,
                page_asked: false,
            };
        }
        self.pump(conn);
    }

    /// A page of `stream`'s contacts; `more` pages follow.
    pub(super) fn on_page(&mut self, stream: u64, contacts: ContactPage, more: bool) {
        let Some(&conn) = self.reads.streams.get(&stream) else {
            return;
        };
        if let Some(Stream {
            state:
                StreamState::Open {
                    buffered,
                    more: m,
                    page_asked,
                    ..
                },
            ..
        }) = self.find_stream(conn, stream)
        {
            if !contacts.is_empty() {
                buffered.pages.push_back(contacts);
            }
            *m = more;
            *page_asked = false;
        }
        self.pump(conn);
    }

    fn find_stream(&mut self, conn: ConnId, stream: u64) -> Option<&mut Stream> {
        self.conns
            .get_mut(&conn)?
            .answers
            .iter_mut()
            .find_map(|a| match a {
                Answer::Stream(s) if s.id == stream => Some(s),
                _ => None,
            })
    }
}
