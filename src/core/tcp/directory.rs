//! Directory federation on the TCP plane (docs/PROTOCOL.md §8.16): DirRecord and Forward
//! frames pushed on links, DirRequest answers paged from the UDP core, and the full push of
//! our directory when a link opens. The directory itself lives in the UDP core; this part
//! only moves its records.

use super::conn::{Answer, Output, PumpCtx, PushRoom, Step};
use super::links::LinkState;
use super::reconcile::{ReconcileNote, Set};
use super::{ConnId, TcpAction, TcpCore};
use crate::federation::reconcile::RecordId;
use crate::wire::tcp::answer::{AnswerPiece, Asked};
use crate::wire::tcp::ServerCommand;
use std::collections::HashSet;
use std::sync::Arc;

/// The fingerprints a directory page keeps (a push or a DirWant answer after a
/// reconciliation, docs/PROTOCOL.md §8.20): shared, not copied; its `Debug` shows its size.
#[derive(Clone, PartialEq, Eq)]
pub struct FpFilter(pub Arc<HashSet<[u8; 32]>>);

impl std::fmt::Debug for FpFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FpFilter({} fingerprints)", self.0.len())
    }
}

/// Directory records asked per page (a full directory goes out in pages as the reader
/// drains them).
pub(super) const DIR_PAGE: usize = 256;

/// Where a page of directory records goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirDest {
    /// The answer to a DirRequest on this connection.
    Answer(ConnId),
    /// A full push on link `i`.
    Push(usize),
}

/// A push of our directory on a link this server opened: the entries its peer lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DirPush {
    /// None under way.
    Idle,
    /// Paging: `after` the last fingerprint sent; `asked` when a page is on its way; only
    /// the entries in `only` (all when `None`).
    Paging {
        after: Option<[u8; 32]>,
        asked: bool,
        only: Option<FpFilter>,
    },
}

/// A link's directory pushes.
#[derive(Debug)]
pub(super) struct LinkDir {
    /// The push of what the peer lacks, after a reconciliation.
    pub(super) push: DirPush,
    /// Directory records sent on this link (live and pushes) since the server started.
    pub(super) sent: u64,
    /// What the link's reconciliations of directories found (docs/PROTOCOL.md §8.20).
    pub(super) recon: ReconcileNote,
    /// The ids to ask for once the push ends (its DirWant frames close the peer's side of
    /// the reconciliation, so they go after the entries pushed).
    pub(super) wants: Option<Vec<RecordId>>,
}

/// The answer to a DirRequest (17) in a connection's queue: pages of DirRecord frames
/// asked from the UDP core as the reader drains them, then `[17][0004][count]`.
#[derive(Debug)]
pub(super) struct DirAnswer {
    /// The tag of its pages.
    pub(super) tag: u64,
    /// The last fingerprint written.
    pub(super) after: Option<[u8; 32]>,
    /// A page is on its way.
    pub(super) asked: bool,
    /// Records may follow.
    pub(super) more: bool,
    /// Records so far.
    pub(super) count: u32,
    /// Frames read and not yet written.
    pub(super) buffered: Vec<u8>,
    /// Only these entries (a DirWant's); `None`: all (a DirRequest's).
    pub(super) only: Option<FpFilter>,
}

impl DirAnswer {
    /// An answer not started, of the entries in `only` (all when `None`).
    pub(super) fn new(tag: u64, only: Option<FpFilter>) -> Self {
        DirAnswer {
            tag,
            after: None,
            asked: false,
            more: true,
            count: 0,
            buffered: Vec::new(),
            only,
        }
    }
}

impl DirAnswer {
    /// Writes the frames buffered; asks for the next page while the output is within
    /// `max_out`; ends with the count once no record follows.
    pub(super) fn write(&mut self, conn: ConnId, out: &mut Output, ctx: &mut PumpCtx<'_>) -> Step {
        if !self.buffered.is_empty() {
            out.extend_from_slice(&self.buffered);
            self.buffered.clear();
        }
        if self.asked {
            return Step::Wait;
        }
        if !self.more {
            out.piece(&AnswerPiece::DirEnd(self.count));
            return Step::Done;
        }
        if out.pending() > ctx.cfg.bounds.max_out {
            return Step::Wait; // resumed from `consumed` when the peer reads
        }
        self.asked = true;
        ctx.reads.dir_pages.insert(self.tag, DirDest::Answer(conn));
        ctx.out.actions.push_back(TcpAction::DirectoryPage {
            tag: self.tag,
            after: self.after,
            max: DIR_PAGE,
            only: self.only.clone(),
        });
        Step::Wait
    }

    /// A page came: `count` frames, `last` the last fingerprint, `more` records may follow.
    fn page(&mut self, frames: &[u8], count: usize, last: Option<[u8; 32]>, more: bool) {
        self.buffered.extend_from_slice(frames);
        self.count = self.count.saturating_add(count as u32);
        if last.is_some() {
            self.after = last;
        }
        self.more = more && count > 0;
        self.asked = false;
    }
}

impl TcpCore {
    /// Pushes a directory record (a DirRecord body from the UDP core: a local change, or
    /// one learned from a peer that changed state) on every link that is up. A link more
    /// than 2 × `max_out` behind is dropped; it pushes our whole directory on reconnect
    /// (docs/PROTOCOL.md §8.16, "On the links").
    pub fn push_directory(&mut self, body: &[u8]) {
        self.push_framed(&ServerCommand::DirRecord(body));
    }

    /// Pushes a forwarded punch request or relayed event (a Forward body) on every link
    /// that is up; the receivers drop duplicates by the forward's id.
    pub fn push_forward(&mut self, body: &[u8]) {
        self.push_framed(&ServerCommand::Forward(body));
    }

    /// Pushes `cmd`, a DirRecord or a Forward `[cmd][len u16][body]`, on every link that is
    /// up (a body over 4096 bytes is not sent).
    fn push_framed(&mut self, cmd: &ServerCommand<'_>) {
        // Emitted once (when some link is up), copied to every link that is up.
        if !self
            .links
            .iter()
            .any(|l| matches!(l.state, LinkState::Up { .. }))
        {
            return;
        }
        let mut frame = Vec::with_capacity(cmd.buffer_len());
        if cmd.append_to(&mut frame).is_err() {
            return;
        }
        let mut overfull = Vec::new();
        for l in &mut self.links {
            let LinkState::Up { conn, .. } = l.state else {
                continue;
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            match c.push_room(self.cfg.bounds.max_out) {
                PushRoom::Refused => continue,
                PushRoom::Overfull => {
                    overfull.push(conn);
                    continue;
                }
                PushRoom::Room => {}
            }
            c.out.extend_from_slice(&frame);
            if matches!(cmd, ServerCommand::DirRecord(_)) {
                l.dir.sent += 1;
            }
        }
        for conn in overfull {
            tracing::info!(conn, "a peer link is too far behind; dropping it to resync");
            self.note_conn_closing(conn, "too far behind with the directory");
            self.out.actions.push_back(TcpAction::Close(conn));
        }
    }

    /// Asks every link that is up for the peer's whole directory again (the UDP core saw a
    /// refresh for an entry it does not hold: a record was lost).
    pub fn request_directory(&mut self) {
        for l in &self.links {
            if let LinkState::Up { conn, .. } = l.state {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if !c.input.refused && !c.due.is_asked(Asked::DirRequest) {
                        c.out.command(&ServerCommand::DirRequest);
                        c.expect(Asked::DirRequest, 0);
                    }
                }
            }
        }
    }

    /// A page of directory records for [`TcpAction::DirectoryPage`] `tag`: `frames` holds
    /// `count` whole DirRecord frames, `last` the last fingerprint written, `more` whether
    /// records may follow.
    pub fn handle_directory_page(
        &mut self,
        tag: u64,
        frames: &[u8],
        count: usize,
        last: Option<[u8; 32]>,
        more: bool,
    ) {
        match self.reads.dir_pages.remove(&tag) {
            Some(DirDest::Answer(conn)) => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                for a in c.answers.iter_mut() {
                    if let Answer::Directory(d) = a {
                        if d.tag == tag {
                            d.page(frames, count, last, more);
                        }
                    }
                }
                self.pump(conn);
            }
            Some(DirDest::Push(i)) => self.dir_push_page(i, frames, count, last, more),
            None => {}
        }
    }

    /// A page of our full directory push on link `i`: written, and the next one asked.
    fn dir_push_page(
        &mut self,
        i: usize,
        frames: &[u8],
        count: usize,
        last: Option<[u8; 32]>,
        more: bool,
    ) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        let LinkState::Up { conn, .. } = l.state else {
            return;
        };
        let DirPush::Paging {
            asked: true, only, ..
        } = &l.dir.push
        else {
            return;
        };
        let only = only.clone();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.extend_from_slice(frames);
            l.dir.sent += count as u64;
        }
        l.dir.push = if more && count > 0 {
            DirPush::Paging {
                after: last,
                asked: false,
                only,
            }
        } else {
            DirPush::Idle
        };
        if l.dir.push == DirPush::Idle {
            if let Some(wants) = l.dir.wants.take() {
                self.send_wants(conn, &wants);
            }
        }
        self.next_dir_page(i);
    }

    /// Starts pushing our directory on link `i` (it opened): the entries in `only`, or all.
    pub(super) fn start_dir_push(&mut self, i: usize, only: Option<FpFilter>) {
        if let Some(l) = self.links.get_mut(i) {
            l.dir.push = DirPush::Paging {
                after: None,
                asked: false,
                only,
            };
        }
        self.next_dir_page(i);
    }

    /// Asks for the next page of a link's full directory push if its output has room.
    pub(super) fn next_dir_page(&mut self, i: usize) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        let DirPush::Paging {
            after,
            asked: false,
            only,
        } = &l.dir.push
        else {
            return;
        };
        let (after, only) = (*after, only.clone());
        if self.link_room(i).is_none() {
            return;
        }
        let l = &mut self.links[i];
        l.dir.push = DirPush::Paging {
            after,
            asked: true,
            only: only.clone(),
        };
        let tag = self.out.tag();
        self.reads.dir_pages.insert(tag, DirDest::Push(i));
        self.out.actions.push_back(TcpAction::DirectoryPage {
            tag,
            after,
            max: DIR_PAGE,
            only,
        });
    }

    /// Link `i` opened: its directory is reconciled with its peer's (docs/PROTOCOL.md
    /// §8.20), which pushes what the peer lacks and asks for what we lack.
    pub(super) fn start_dir_reconcile(&mut self, i: usize) {
        self.start_reconcile(i, Set::Directory);
    }

    /// DirRecord (16) from a peer: for the UDP core.
    pub(super) fn dir_record(&mut self, conn: ConnId, body: &[u8]) {
        self.stats.dir_records_in += 1;
        self.out.actions.push_back(TcpAction::PeerRecord {
            conn,
            body: body.to_vec(),
        });
    }

    /// DirRequest (17) from a peer: our whole directory, paged from the UDP core.
    pub(super) fn dir_request(&mut self, conn: ConnId) {
        let tag = self.out.tag();
        self.reads.dir_pages.insert(tag, DirDest::Answer(conn));
        self.push_answer(conn, Answer::Directory(DirAnswer::new(tag, None)));
    }

    /// Forward (18) from a peer: for the UDP core.
    pub(super) fn forward_in(&mut self, conn: ConnId, body: &[u8]) {
        self.out.actions.push_back(TcpAction::Forward {
            conn,
            body: body.to_vec(),
        });
    }
}
