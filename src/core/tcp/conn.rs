//! One TCP connection: its input buffer, its output buffer, and the queue of answers in the
//! order asked, written by the answer pump as each becomes ready (docs/PROTOCOL.md §8.7,
//! §8.14); on a link this server opened, also what it expects back, in order.

use super::config::TcpConfig;
use super::directory::DirAnswer;
use super::links::Link;
use super::outbox::{Outbox, Reads};
use super::stream::Stream;
use super::{ConnId, TcpAction, TcpCore};
use crate::wire::status;
use crate::wire::tcp::answer::{AnswerPiece, AnswerReader, Asked};
use crate::wire::tcp::nodelist::Uid;
use crate::wire::tcp::{self, Role, ServerCommand, StatusFrame};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// A connection, accepted or opened to a peer.
#[derive(Debug)]
pub(super) struct Conn {
    /// The other end.
    pub(super) addr: SocketAddr,
    /// When it was accepted (ms): the hello is due 10 s later.
    pub(super) accepted_ms: u64,
    /// The hello's role, once read.
    pub(super) role: Option<Role>,
    /// The hello's name (or, once proved, the node's alias).
    pub(super) name: String,
    pub(super) input: Input,
    pub(super) out: Output,
    /// Answers in the order asked.
    pub(super) answers: VecDeque<Answer>,
    /// Set for links this server opened to a peer.
    pub(super) link: Option<usize>,
    /// On a link: what the peer's answers will be, in order.
    pub(super) due: Due,
    /// On a connection a peer opened: the journal id it pushes from (after CursorQuery).
    pub(super) peer_journal: Option<u64>,
    pub(super) auth: Auth,
}

/// Bytes read and not yet parsed.
#[derive(Debug)]
pub(super) struct Input {
    pub(super) buf: Vec<u8>,
    /// A refusal is queued: no more input is read or parsed.
    pub(super) refused: bool,
    /// When bytes last came in (ms).
    pub(super) last_in_ms: u64,
}

/// Bytes to write: `buf[pos..]` is pending.
#[derive(Debug)]
pub(super) struct Output {
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    /// Close once everything is written.
    pub(super) close_when_flushed: bool,
    /// When output last moved, or a request came in on an idle connection (ms).
    pub(super) last_progress_ms: u64,
}

/// Proof of a key by the opener: a role-1 opener's node key (docs/PROTOCOL.md §8.17), a
/// role-2 opener's certificate key (§8.18).
#[derive(Debug, Default)]
pub(super) struct Auth {
    /// Admitted only because the node list knows its address: it must prove its node key
    /// (commands 20, 21) before anything else.
    pub(super) required: bool,
    /// It has proved its node key.
    pub(super) proved: bool,
    /// The node uid it proved (AuthProof, or a TLS key the node list publishes): where
    /// the records it pushes come from (docs/PROTOCOL.md §8.10, "not sent back").
    pub(super) uid: Option<Uid>,
    /// The nonce we sent it (AuthChallenge), until it answers.
    pub(super) nonce: Option<[u8; tcp::NONCE_LEN]>,
    /// A client's proof is being checked (by the UDP plane's certificate cache): its
    /// next commands wait, unparsed.
    pub(super) checking: bool,
    /// The username a client owns once it proved its key: its fingerprint (SHA-256 of
    /// the certificate) in lowercase hex, made once; the connection reads and writes
    /// that username's contacts only.
    pub(super) client: Option<String>,
    /// Clear text or TLS, and the key the TLS peer proved (docs/PROTOCOL.md §8.19).
    pub(super) transport: Transport,
}

/// How a connection's bytes travel (docs/PROTOCOL.md §8.19).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) enum Transport {
    /// The seed's clear-text framing.
    #[default]
    Plain,
    /// TLS 1.3 (RFC 8446); `key` is the raw public key of the certificate the peer
    /// presented and proved in its handshake (32 bytes for Ed25519), `None` when it
    /// presented none (a client).
    Tls {
        /// The peer certificate's public key.
        key: Option<Vec<u8>>,
    },
}

impl Transport {
    /// The key the TLS peer proved, if any.
    pub(super) fn key(&self) -> Option<&[u8]> {
        match self {
            Transport::Tls { key } => key.as_deref(),
            Transport::Plain => None,
        }
    }
}

/// An answer waiting in a connection's queue.
#[derive(Debug)]
pub(super) enum Answer {
    /// Bytes ready to go (UpdateClock).
    Ready(Vec<u8>),
    /// A refusal (non-200 status frame): written in its turn, then the connection closes.
    Refusal(Vec<u8>),
    /// A barrier: status 200 once done.
    Barrier { tag: u64, done: bool },
    /// A cursor answer `[14][line u64]`, once the store has read it.
    Cursor { tag: u64, line: Option<u64> },
    /// On a link: after a full push, mark the peer as holding our journal up to the line
    /// recorded when the pushed snapshot was taken, then page the lines since.
    Mark { link: usize },
    /// A status answer, written once both digests are in.
    Status {
        tag: u64,
        contacts: Option<(u64, Vec<u8>)>,
        directory: Option<(u64, Vec<u8>)>,
    },
    /// The answer to a DirRequest: pages of DirRecord frames, then `[17][0004][count]`.
    Directory(DirAnswer),
    /// The answer to a JournalSince of `limit` lines, once the store has read them.
    Since { tag: u64, limit: u32 },
    /// The answer to the first message of a reconciliation, once our record ids are read
    /// (docs/PROTOCOL.md §8.20).
    Reconcile { tag: u64 },
    /// ListAll (client) or AskForUpdate (server) streamed from a snapshot, or a full push
    /// of our contacts on a link.
    Stream(Stream),
}

/// What the opener of a peer link awaits, in the order asked: the answer codec's reader,
/// each request tagged with the journal line its 200 confirms (a heartbeat's Barrier; 0
/// for any other request).
pub(super) type Due = AnswerReader<u64>;

impl Conn {
    /// A connection from (or to) `addr` at `now_ms`; `link` for one this server opened.
    pub(super) fn new(addr: SocketAddr, now_ms: u64, link: Option<usize>) -> Self {
        Conn {
            addr,
            accepted_ms: now_ms,
            role: None,
            name: String::new(),
            input: Input {
                buf: Vec::new(),
                refused: false,
                last_in_ms: now_ms,
            },
            out: Output {
                buf: Vec::new(),
                pos: 0,
                close_when_flushed: false,
                last_progress_ms: now_ms,
            },
            answers: VecDeque::new(),
            link,
            due: Due::new(),
            peer_journal: None,
            auth: Auth::default(),
        }
    }

    /// On a link: sends our node-list hash frame `h` (10) unless a hash is already awaiting
    /// its answer (one outstanding is enough; its answer compares with the list as it is).
    pub(super) fn ask_node_hash(&mut self, h: &[u8]) {
        if !self.due.is_asked(Asked::NodeListHash) {
            self.out.extend_from_slice(h);
            self.expect(Asked::NodeListHash, 0);
        }
    }

    /// On a link: notes a request sent, whose answer comes back in order; a 200 to it
    /// confirms our journal up to `confirms` (0: nothing). The reader's bound (65,536
    /// requests) is never reached: a peer that answers nothing for 4 heartbeats (a few
    /// requests each) is dropped first.
    pub(super) fn expect(&mut self, asked: Asked, confirms: u64) {
        let _ = self.due.ask(asked, confirms);
    }

    /// Streamed answers (ListAll, AskForUpdate, a full push) in the queue.
    pub(super) fn streams_waiting(&self) -> usize {
        self.answers
            .iter()
            .filter(|a| matches!(a, Answer::Stream(_)))
            .count()
    }

    /// Output pending plus what the answers waiting will add (see
    /// [`Answer::committed_len`]), so that parsing stops before the connection's output can
    /// pass its bound (docs/PROTOCOL.md §8.11).
    pub(super) fn committed_out(&self) -> usize {
        let waiting: usize = self.answers.iter().map(Answer::committed_len).sum();
        self.out.pending() + waiting
    }
}

/// Whether a link's connection takes a push now.
pub(super) enum PushRoom {
    /// It is being dropped already: skip it.
    Refused,
    /// More than 2 × `max_out` is pending: it is now refused; close it (the peer resumes
    /// from its cursor when it reconnects).
    Overfull,
    /// Push.
    Room,
}

impl Conn {
    /// Whether this link connection takes a push now (docs/PROTOCOL.md §8.11: a link more
    /// than 2 MiB behind is dropped).
    pub(super) fn push_room(&mut self, max_out: usize) -> PushRoom {
        if self.input.refused {
            PushRoom::Refused
        } else if self.out.pending() > 2 * max_out {
            self.input.refused = true;
            PushRoom::Overfull
        } else {
            PushRoom::Room
        }
    }
}

impl Output {
    /// Bytes not yet written.
    pub(super) fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes not yet written.
    pub(super) fn unwritten(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Makes room for `n` more bytes without moving what is there more than once.
    pub(super) fn reserve(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    /// Appends `bytes`.
    pub(super) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends a request of ours on a link (docs/PROTOCOL.md §8.4); one that cannot be
    /// written (a body over 4096 bytes) is not sent, and logged.
    pub(super) fn command(&mut self, cmd: &ServerCommand<'_>) {
        if let Err(e) = cmd.append_to(&mut self.buf) {
            tracing::warn!(command = cmd.command_byte(), %e, "a request of ours not sent");
        }
    }

    /// Appends a piece of an answer (docs/PROTOCOL.md §8.7); one that cannot be written is
    /// not sent, and logged.
    pub(super) fn piece(&mut self, piece: &AnswerPiece<'_>) {
        if let Err(e) = piece.append_to(&mut self.buf) {
            tracing::warn!(piece = piece.kind().name(), %e, "an answer piece not sent");
        }
    }

    /// `n` bytes were written at `now_ms`: the buffer is emptied when all is written, and
    /// compacted past 64 KiB written.
    pub(super) fn consumed(&mut self, now_ms: u64, n: usize) {
        self.pos += n;
        if n > 0 {
            self.last_progress_ms = now_ms;
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// What writing an answer may touch besides its connection's output.
pub(super) struct PumpCtx<'a> {
    pub(super) cfg: &'a TcpConfig,
    pub(super) links: &'a mut [Link],
    pub(super) reads: &'a mut Reads,
    pub(super) out: &'a mut Outbox,
}

/// What the pump does after writing (some of) the answer at the head.
pub(super) enum Step {
    /// It is complete: the next one may go.
    Done,
    /// It waits (for the store, the loop or the reader); so do the ones behind it.
    Wait,
}

impl Answer {
    /// Bytes this answer will still add to the output, at most: its bytes once built, a
    /// JournalSince's `limit` whole lines (545 bytes each) until it is, 16 for a short
    /// answer (a barrier's status frame, a cursor). Streams and directory answers bound
    /// themselves (they wait for the reader) and count as short.
    pub(super) fn committed_len(&self) -> usize {
        match self {
            Answer::Ready(b) | Answer::Refusal(b) => b.len(),
            Answer::Since { limit, .. } => {
                1 + 4 + *limit as usize * tcp::MAX_COMMAND_LEN // <= 2.2 MB (limit <= 4096)
            }
            Answer::Reconcile { .. } => 3 + tcp::MAX_RECONCILE_LEN,
            _ => 16,
        }
    }

    /// Writes what is ready of this answer on `conn`'s output.
    fn write(&mut self, conn: ConnId, out: &mut Output, ctx: &mut PumpCtx<'_>) -> Step {
        match self {
            Answer::Ready(bytes) => out.extend_from_slice(bytes),
            Answer::Refusal(bytes) => {
                out.extend_from_slice(bytes);
                out.close_when_flushed = true;
            }
            Answer::Barrier { done: true, .. } => out.piece(&AnswerPiece::Status(StatusFrame {
                status: status::OK,
                request: tcp::CMD_BARRIER,
                detail: "durable",
            })),
            Answer::Cursor { line: Some(l), .. } => out.piece(&AnswerPiece::Cursor(*l)),
            Answer::Barrier { done: false, .. }
            | Answer::Status { .. }
            | Answer::Since { .. }
            | Answer::Reconcile { .. }
            | Answer::Cursor { line: None, .. } => return Step::Wait,
            Answer::Directory(d) => return d.write(conn, out, ctx),
            Answer::Mark { link } => return super::journal::write_mark(*link, out, ctx),
            Answer::Stream(s) => return s.write(out, ctx),
        }
        Step::Done
    }
}

impl TcpCore {
    /// Queues answer `a` on `conn` and writes what is ready.
    pub(super) fn push_answer(&mut self, conn: ConnId, a: Answer) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.answers.push_back(a);
        }
        self.pump(conn);
    }

    /// Writes what is ready at the head of `conn`'s answers, in order; closes the
    /// connection once a refusal is written out.
    pub(super) fn pump(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut ctx = PumpCtx {
            cfg: &self.cfg,
            links: &mut self.links,
            reads: &mut self.reads,
            out: &mut self.out,
        };
        while let Some(front) = c.answers.front_mut() {
            match front.write(conn, &mut c.out, &mut ctx) {
                Step::Done => {
                    c.answers.pop_front();
                }
                Step::Wait => return,
            }
        }
        if c.out.close_when_flushed && c.out.pending() == 0 {
            self.out.actions.push_back(TcpAction::Close(conn));
        }
    }

    /// Refuses with a non-200 status frame, after the answers already asked for (in the
    /// order asked); then the connection is closed. Nothing more is read from it
    /// (docs/PROTOCOL.md §8.14).
    pub(super) fn fail(&mut self, conn: ConnId, status: u16, request: u8, detail: &str) {
        self.stats.errors += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.input.refused {
            return;
        }
        c.input.refused = true;
        c.input.buf.clear();
        c.answers
            .push_back(Answer::Refusal(status_bytes(status, request, detail)));
        self.pump(conn);
    }

    /// Refuses at once: the pending answers cannot be completed (store failure).
    pub(super) fn fail_now(&mut self, conn: ConnId, status: u16, request: u8, detail: &str) {
        self.drop_answers(conn);
        self.fail(conn, status, request, detail);
    }

    /// Abandons `conn`'s pending answers, releasing their streams and reads.
    pub(super) fn drop_answers(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for a in std::mem::take(&mut c.answers) {
            self.reads.release(&a, &mut self.out);
        }
    }
}

/// A status frame's bytes (docs/PROTOCOL.md §8.6).
pub(super) fn status_bytes(status: u16, request: u8, detail: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = AnswerPiece::Status(StatusFrame {
        status,
        request,
        detail,
    })
    .append_to(&mut buf); // a status frame always emits: its detail is cut to fit
    buf
}

/// For a log line: the status frame at the head of `buf` ("status detail"), or its length.
pub(super) fn status_detail(buf: &[u8]) -> String {
    match buf.first() {
        Some(&tcp::CMD_STATUS) => {
            let end = buf
                .len()
                .min(StatusFrame::FIXED_LEN + usize::from(*buf.get(4).unwrap_or(&0)));
            StatusFrame::parse(&buf[..end])
                .map(|f| format!("{} {}", f.status, f.detail))
                .unwrap_or_else(|_| "status frame".into())
        }
        _ => format!("{} bytes", buf.len()),
    }
}
