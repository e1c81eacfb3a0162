//! Journals (docs/PROTOCOL.md §8.10): ours pushed on the links this server opened (the
//! peer's cursor, pages of lines, live pushes; lines withheld from the peer that sent
//! their records, or left to their origin; a reconciliation, `reconcile.rs`, when the
//! cursor is gone or far behind), and peers' journals received on connections they opened
//! (cursor queries, lines held to drop copies, JournalSince answers).

use super::config::canonical_ip;
use super::config::TcpConfig;
use super::conn::{status_bytes, Answer, Output, PumpCtx, PushRoom, Step};
use super::links::{LinkState, MAX_LINKS};
use super::reconcile::{ReconcileNote, Reconciles, Set, NEW_PEER_GAP, RECONCILE_GAP};
use super::{ConnId, StoreRequest, TcpAction, TcpCore};
use crate::store::{Contact, JournalRead};
use crate::wire::status;
use crate::wire::tcp::answer::AnswerPiece;
use crate::wire::tcp::nodelist::Uid;
use crate::wire::tcp::{self, ContactFields, ServerCommand};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Our journal, and what we hold of peers' journals.
#[derive(Debug, Default)]
pub(super) struct Journal {
    /// Our journal's id.
    pub(super) id: u64,
    /// Our journal's last line, as the store has it (lines are made in the order the store
    /// applies changed merges, so the core numbers them the same way).
    pub(super) head: u64,
    /// Per peer journal id: the highest line applied from it (to drop copies); at most
    /// 1024 journals.
    pub(super) lines_held: HashMap<u64, u64>,
    /// Per peer name (its hello name): journal lines and full-push records received on
    /// connections it opened, since start; at most 1024 names.
    pub(super) received: BTreeMap<String, (u64, u64)>,
    /// Reconciliations in progress: our links', and the one we answer (§8.20).
    pub(super) recon: Reconciles,
    /// The server each recent line came from, so it is not pushed back there.
    pub(super) sources: LineSources,
}

/// The server each of our newest journal lines came from (`None`: a client of ours, or
/// unknown), at most [`LineSources::CAP`] lines: older lines, and lines from before a
/// restart, are pushed to every peer as before (docs/PROTOCOL.md §8.10, "not sent back").
#[derive(Debug, Default)]
pub(super) struct LineSources {
    /// The line of `from[0]`.
    first: u64,
    from: VecDeque<Option<Uid>>,
}

impl LineSources {
    /// Lines remembered: 65,536 (17 bytes each, about 1.1 MB).
    const CAP: usize = 1 << 16;

    /// Line `line` (the next after the last pushed, or a new start) came from `from`.
    pub(super) fn push(&mut self, line: u64, from: Option<Uid>) {
        if self.first + self.from.len() as u64 != line {
            self.from.clear();
            self.first = line;
        }
        self.from.push_back(from);
        if self.from.len() > Self::CAP {
            self.from.pop_front();
            self.first += 1;
        }
    }

    /// Where line `line` came from, if remembered.
    pub(super) fn get(&self, line: u64) -> Option<Uid> {
        let i = usize::try_from(line.checked_sub(self.first)?).ok()?;
        self.from.get(i).copied().flatten()
    }
}

/// Where a link this server opened stands in pushing our journal to its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not connected, or waiting for the peer's cursor.
    AwaitCursor,
    /// Sending journal lines after `since`; `asked` when a page is on its way.
    Paging { since: u64, asked: bool },
    /// The peer is far behind, or the journal no longer holds its cursor: comparing
    /// record ids with it (docs/PROTOCOL.md §8.20).
    Reconcile,
    /// Pushing the records the peer lacks from one snapshot; `mark` is our journal head
    /// when our ids (or the snapshot) were read.
    FullPush { mark: Option<u64> },
    /// Caught up: every new line is pushed as it is made.
    Live,
}

/// A link's push of our journal.
#[derive(Debug)]
pub(super) struct LinkJournal {
    /// Where the push stands.
    pub(super) phase: Phase,
    /// Last journal line written to the link.
    pub(super) pushed_line: u64,
    /// The last line the peer confirmed durable (a heartbeat barrier's 200 after it).
    pub(super) confirmed_line: u64,
    /// Journal lines sent on this link since the server started.
    pub(super) entries_sent: u64,
    /// Snapshot records (pushes after a reconciliation) sent on this link since the
    /// server started.
    pub(super) records_sent: u64,
    /// What the link's reconciliations found.
    pub(super) recon: ReconcileNote,
    /// Bytes written on the link's connections since the server started.
    pub(super) bytes_sent: u64,
    /// Bytes read from the link's connections (the peer's answers) since start.
    pub(super) bytes_received: u64,
    /// Journal lines not pushed on this link because its peer sent them to us.
    pub(super) not_sent_back: u64,
    /// Journal lines not pushed on this link because the server they came from links to
    /// its peer itself (meshed).
    pub(super) left_to_origin: u64,
    /// The last line the peer was told of (a JournalUpdate or a JournalMark): lines
    /// withheld past it are marked at the next heartbeat, so its cursor keeps up.
    pub(super) told_line: u64,
}

/// Where a line's record came from (docs/PROTOCOL.md §8.10, "relays").
#[derive(Debug, Clone, Copy)]
pub(super) struct Source {
    /// The peer that sent it (`None`: a client of ours, or unknown).
    from: Option<Uid>,
    /// That peer is a located server of our node list.
    located: bool,
}

/// Whom our lines go to: see [`TcpCore::relay`].
#[derive(Debug)]
pub(super) struct Relay {
    /// By link index: the node uid of the server the link reaches, if located.
    uids: Vec<Option<Uid>>,
    /// Mesh on, and at most [`MAX_LINKS`] located servers: each links to every other.
    meshed: bool,
}

impl Relay {
    /// True when the peers of our links link to us themselves (meshed: a server linked to
    /// learns the linker's entry and links back, docs/PROTOCOL.md §8.10): what a peer holds
    /// and we lack, its own link pushes.
    pub(super) fn links_back(&self) -> bool {
        self.meshed
    }

    /// True when a line from `src` is not pushed on link `i` (counted in `journal`): its
    /// peer sent the record to us, or, meshed, the located server that sent it links to
    /// that peer itself. Anything a link so misses is found by the next reconciliation
    /// (docs/PROTOCOL.md §8.20, "anti-entropy").
    fn withhold(&self, i: usize, src: Source, journal: &mut LinkJournal) -> bool {
        let Some(from) = src.from else {
            return false;
        };
        let peer = self.uids.get(i).copied().flatten();
        if peer == Some(from) {
            journal.not_sent_back += 1;
            true
        } else if self.meshed && src.located && peer.is_some() {
            journal.left_to_origin += 1;
            true
        } else {
            false
        }
    }
}

impl LinkJournal {
    /// A link that has pushed nothing.
    pub(super) fn new() -> Self {
        LinkJournal {
            phase: Phase::AwaitCursor,
            pushed_line: 0,
            confirmed_line: 0,
            entries_sent: 0,
            records_sent: 0,
            recon: ReconcileNote::default(),
            bytes_sent: 0,
            bytes_received: 0,
            not_sent_back: 0,
            left_to_origin: 0,
            told_line: 0,
        }
    }
}

impl TcpCore {
    /// Whom our lines go to (docs/PROTOCOL.md §8.10, "relays"): the server each link
    /// reaches, and whether every located server links to every other.
    ///
    /// Once per applied batch: one pass over the node list (by address, the first uid in
    /// uid order, as the TLS checks locate a server), then a lookup per link.
    pub(super) fn relay(&self) -> Relay {
        let own = self.cfg.identity.node.as_ref().map(|n| *n.uid());
        let mut at: HashMap<(IpAddr, u16), Uid> = HashMap::new();
        let mut located = 0;
        for e in self.nodes.entries() {
            let Ok(a) = e.location().parse::<SocketAddr>() else {
                continue;
            };
            located += 1;
            if Some(*e.uid()) != own {
                at.entry((canonical_ip(a.ip()), a.port()))
                    .or_insert(*e.uid());
            }
        }
        let uids = self
            .links
            .iter()
            .map(|l| at.get(&(canonical_ip(l.addr.ip()), l.addr.port())).copied())
            .collect();
        Relay {
            uids,
            meshed: !self.cfg.peering.no_mesh && located <= MAX_LINKS,
        }
    }

    /// The server a record came from, and whether it is a located server of our node
    /// list (so, meshed, it links to every other located server itself).
    pub(super) fn source(&self, from: Option<Uid>) -> Source {
        let located = from.is_some_and(|u| {
            self.nodes
                .get(&u)
                .is_some_and(|e| e.location().parse::<SocketAddr>().is_ok())
        });
        Source { from, located }
    }

    /// Pushes journal line `line` on every link that is live (caught up), unless `relay`
    /// withholds it from that link's peer (`source`: where its record came from).
    pub(super) fn push_live(&mut self, line: u64, contact: &Contact, src: Source, relay: &Relay) {
        // Emitted once (when some link is live), copied to every live link.
        if !self.links.iter().any(|l| l.journal.phase == Phase::Live) {
            return;
        }
        let mut rec = Vec::with_capacity(tcp::MAX_COMMAND_LEN);
        if journal_update(line, contact).append_to(&mut rec).is_err() {
            return;
        }
        let mut overfull = Vec::new();
        for (i, l) in self.links.iter_mut().enumerate() {
            if l.journal.phase != Phase::Live {
                continue;
            }
            if relay.withhold(i, src, &mut l.journal) {
                l.journal.pushed_line = line;
                continue;
            }
            let LinkState::Up { conn, .. } = l.state else {
                continue;
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            match c.push_room(self.cfg.bounds.max_out) {
                PushRoom::Refused => {}
                PushRoom::Overfull => overfull.push(conn),
                PushRoom::Room => {
                    c.out.extend_from_slice(&rec);
                    l.journal.pushed_line = line;
                    l.journal.told_line = line;
                    l.journal.entries_sent += 1;
                }
            }
        }
        // A peer that does not keep up is dropped; it catches up from its cursor.
        for conn in overfull {
            tracing::info!(
                conn,
                "a peer link is more than 2 MiB behind; dropping it to resume from its cursor"
            );
            self.note_conn_closing(conn, "more than 2 MiB behind with the journal");
            self.out.actions.push_back(TcpAction::Close(conn));
        }
    }

    /// Lines withheld from a live link's peer (it sent them, or their origin sends them)
    /// still move its cursor: a JournalMark after each batch that withheld some, so a
    /// reconnect resumes after them (docs/PROTOCOL.md §8.10).
    pub(super) fn mark_withheld(&mut self) {
        for l in &mut self.links {
            let j = &mut l.journal;
            if j.phase != Phase::Live || j.pushed_line <= j.told_line {
                continue;
            }
            let LinkState::Up { conn, .. } = l.state else {
                continue;
            };
            if let Some(c) = self.conns.get_mut(&conn) {
                c.out.command(&ServerCommand::JournalMark {
                    line: j.pushed_line,
                });
                j.told_line = j.pushed_line;
            }
        }
    }

    /// Asks the store for the next page of our journal for link `i`, if its output has room.
    pub(super) fn next_page(&mut self, i: usize) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        let Phase::Paging {
            since,
            asked: false,
        } = l.journal.phase
        else {
            return;
        };
        if self.link_room(i).is_none() {
            return; // resumed from `consumed` when the peer reads
        }
        let l = &mut self.links[i];
        l.journal.phase = Phase::Paging { since, asked: true };
        let tag = self.out.tag();
        self.reads.page_reads.insert(tag, i);
        self.out.request(StoreRequest::JournalPage {
            tag,
            since,
            limit: page_limit(&self.cfg),
        });
    }

    /// A full push's snapshot is open (`stream`, `count` records): it holds every line up
    /// to our head now (the store answers in order, after every earlier batch), the line
    /// its JournalMark will carry.
    pub(super) fn note_full_push(&mut self, stream: u64, count: u64) {
        let Some(i) = self.reads.push_streams.remove(&stream) else {
            return;
        };
        if let Some(l) = self.links.get_mut(i) {
            // After a reconciliation the mark is when our ids were read: records changed
            // since are not in the push, but in the lines after it.
            let mark = match l.journal.phase {
                Phase::FullPush { mark: Some(m) } => m,
                _ => self.journal.head,
            };
            l.journal.phase = Phase::FullPush { mark: Some(mark) };
            l.journal.records_sent += count;
        }
    }
}

/// The JournalMark after a full push on link `i` (once its snapshot is taken): the peer
/// holds our journal up to the mark; then the lines since are paged.
pub(super) fn write_mark(i: usize, out: &mut Output, ctx: &mut PumpCtx<'_>) -> Step {
    let Some(l) = ctx.links.get_mut(i) else {
        return Step::Done;
    };
    let Phase::FullPush { mark: Some(mark) } = l.journal.phase else {
        return Step::Wait; // the snapshot is not taken yet
    };
    out.command(&ServerCommand::JournalMark { line: mark });
    l.journal.pushed_line = mark;
    l.journal.told_line = mark;
    l.journal.phase = Phase::Paging {
        since: mark,
        asked: true,
    };
    let tag = ctx.out.tag();
    ctx.reads.page_reads.insert(tag, i);
    ctx.out.request(StoreRequest::JournalPage {
        tag,
        since: mark,
        limit: page_limit(ctx.cfg),
    });
    Step::Done
}

/// Journal lines asked per store read: the configured page.
fn page_limit(cfg: &TcpConfig) -> u32 {
    u32::try_from(cfg.bounds.page).unwrap_or(u32::MAX)
}

/// The wire fields of stored contact `contact` (docs/PROTOCOL.md §8.3).
pub(super) fn fields(contact: &Contact) -> ContactFields<'_> {
    ContactFields {
        username: &contact.username,
        contact: &contact.contact,
        phone: &contact.phone,
    }
}

/// The JournalUpdate (13) of journal line `line` holding `contact`.
fn journal_update(line: u64, contact: &Contact) -> ServerCommand<'_> {
    ServerCommand::JournalUpdate {
        line,
        clock: contact.clock,
        fields: fields(contact),
    }
}

/// The cursor key under which we keep how much of journal `id` we hold.
pub(super) fn cursor_key(id: u64) -> String {
    format!("journal:{id:016x}")
}

impl TcpCore {
    /// The peer's cursor came (the answer to our CursorQuery on link `i`): push our journal
    /// lines after `since`, or reconcile when that is more than [`RECONCILE_GAP`] lines,
    /// or [`NEW_PEER_GAP`] for a peer that holds none of them (docs/PROTOCOL.md §8.20).
    pub(super) fn start_journal_push(&mut self, i: usize, since: u64) {
        if let Some(l) = self.links.get_mut(i) {
            l.journal.phase = Phase::Paging {
                since,
                asked: false,
            };
            l.journal.pushed_line = since;
            l.journal.told_line = since;
            l.journal.confirmed_line = since;
            // A full exchange with the peer is under way: the link is healthy.
            l.backoff_ms = self.cfg.timers.backoff_min_ms;
        }
        let gap = self.journal.head.saturating_sub(since);
        if gap > RECONCILE_GAP || (since == 0 && gap > NEW_PEER_GAP) {
            return self.start_reconcile(i, Set::Contacts);
        }
        self.next_page(i);
    }

    /// Journal lines read for read `tag`: a JournalSince answer, or a page pushed on a link.
    pub(super) fn on_journal_page(
        &mut self,
        tag: u64,
        entries: &[(u64, Contact)],
        read: JournalRead,
    ) {
        if let Some(conn) = self.reads.since_reads.remove(&tag) {
            return self.finish_since(conn, tag, entries, read);
        }
        let Some(i) = self.reads.page_reads.remove(&tag) else {
            return;
        };
        let Some(LinkState::Up { conn, .. }) = self.links.get(i).map(|l| &l.state) else {
            return; // the link went down meanwhile: it starts over on reconnect
        };
        let conn = *conn;
        match read {
            JournalRead::Entries { more } => self.write_page(i, conn, entries, more),
            JournalRead::Gone | JournalRead::Beyond => self.start_reconcile(i, Set::Contacts),
        }
    }

    /// Writes a page of our journal on link `i` (connection `conn`); asks for the next one,
    /// or, caught up, marks it and goes live.
    fn write_page(&mut self, i: usize, conn: ConnId, entries: &[(u64, Contact)], more: bool) {
        let relay = self.relay();
        let sources: Vec<Source> = entries
            .iter()
            .map(|(line, _)| self.source(self.journal.sources.get(*line)))
            .collect();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let l = &mut self.links[i];
        let Phase::Paging { mut since, .. } = l.journal.phase else {
            return;
        };
        for ((line, contact), src) in entries.iter().zip(sources) {
            since = *line;
            l.journal.pushed_line = *line;
            if relay.withhold(i, src, &mut l.journal) {
                continue;
            }
            c.out.command(&journal_update(*line, contact));
            l.journal.told_line = *line;
            l.journal.entries_sent += 1;
        }
        if more {
            l.journal.phase = Phase::Paging {
                since,
                asked: false,
            };
            self.next_page(i);
        } else {
            // Caught up: mark it, and push every new line from now on.
            c.out.command(&ServerCommand::JournalMark { line: since });
            l.journal.pushed_line = since;
            l.journal.told_line = since;
            l.journal.phase = Phase::Live;
        }
    }

    /// JournalSince (19): at most `limit` lines after `since`, from one store read.
    pub(super) fn journal_since(&mut self, conn: ConnId, journal_id: u64, since: u64, limit: u32) {
        let cmd = tcp::CMD_JOURNAL_SINCE;
        if limit == 0 || limit > tcp::MAX_SINCE_LIMIT {
            let detail = format!("limit {limit} out of range 1 to {}", tcp::MAX_SINCE_LIMIT);
            return self.fail(conn, status::BAD_REQUEST, cmd, &detail);
        }
        if journal_id != self.journal.id {
            let detail = format!(
                "unknown journal {journal_id:016x} (ours is {:016x}): ask for the full list",
                self.journal.id
            );
            return self.fail(conn, status::NOT_FOUND, cmd, &detail);
        }
        self.flush_batch();
        if since > self.journal.head {
            let detail = format!(
                "since {since} is beyond the journal's end ({})",
                self.journal.head
            );
            return self.fail(conn, status::BAD_REQUEST, cmd, &detail);
        }
        let tag = self.out.tag();
        self.reads.since_reads.insert(tag, conn);
        self.out
            .request(StoreRequest::JournalPage { tag, since, limit });
        self.push_answer(conn, Answer::Since { tag, limit });
    }

    /// Completes a JournalSince answer: `[19][count u32]` and the lines, or 404 when the
    /// journal no longer holds `since` (the asker falls back to AskForUpdate).
    fn finish_since(
        &mut self,
        conn: ConnId,
        tag: u64,
        entries: &[(u64, Contact)],
        read: JournalRead,
    ) {
        let answer = since_answer(entries, read);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(answer, Answer::Refusal(_)) {
            self.stats.errors += 1;
            c.input.refused = true;
            c.input.buf.clear();
        }
        if let Some(a) = c
            .answers
            .iter_mut()
            .find(|a| matches!(a, Answer::Since { tag: t, .. } if *t == tag))
        {
            *a = answer;
        }
        self.pump(conn);
    }
}

/// The answer to a JournalSince once read: `[19][count u32]` and the JournalUpdate frames,
/// or a refusal (404 for a line no longer held, 400 beyond the end).
fn since_answer(entries: &[(u64, Contact)], read: JournalRead) -> Answer {
    match read {
        JournalRead::Entries { .. } => {
            let mut b = Vec::with_capacity(5 + entries.len() * tcp::MAX_COMMAND_LEN);
            let _ = AnswerPiece::JournalCount(entries.len() as u32).append_to(&mut b);
            for (line, contact) in entries {
                let _ = AnswerPiece::JournalLine {
                    line: *line,
                    clock: contact.clock,
                    fields: fields(contact),
                }
                .append_to(&mut b);
            }
            Answer::Ready(b)
        }
        JournalRead::Gone => Answer::Refusal(status_bytes(
            status::NOT_FOUND,
            tcp::CMD_JOURNAL_SINCE,
            "the journal no longer holds that line: ask for the full list",
        )),
        JournalRead::Beyond => Answer::Refusal(status_bytes(
            status::BAD_REQUEST,
            tcp::CMD_JOURNAL_SINCE,
            "since is beyond the journal's end",
        )),
    }
}
