//! One TCP connection: its input buffer, its output buffer, and the queue of answers in the
//! order asked, written by the answer pump as each becomes ready (docs/PROTOCOL.md §8.7,
//! §8.14); on a link this server opened, also what it expects back, in order.

use crate::store::Contact;
use crate::wire::tcp::{self, Role};
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
    pub(super) expects: VecDeque<Expect>,
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

/// Node-key proof by a role-1 opener (docs/PROTOCOL.md §8.17).
#[derive(Debug, Default)]
pub(super) struct Auth {
    /// Admitted only because the node list knows its address: it must prove its node key
    /// (commands 20, 21) before anything else.
    pub(super) required: bool,
    /// It has proved its node key.
    pub(super) proved: bool,
    /// The nonce we sent it (AuthChallenge), until it answers.
    pub(super) nonce: Option<[u8; tcp::NONCE_LEN]>,
}

#[derive(Debug)]
pub(super) enum StreamState {
    /// Waiting for a slot or the snapshot.
    Opening,
    /// Snapshot open: `count` is written when this answer reaches the head; `buffered`
    /// are read but not yet written.
    Open {
        count: Option<u32>,
        buffered: VecDeque<Contact>,
        more: bool,
        page_asked: bool,
    },
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
    Directory {
        tag: u64,
        after: Option<[u8; 32]>,
        asked: bool,
        more: bool,
        count: u32,
        buffered: Vec<u8>,
    },
    /// The answer to a JournalSince, once the store has read the lines.
    Since { tag: u64 },
    /// ListAll (client) or AskForUpdate (server) streamed from a snapshot; `counted` puts
    /// the `[count u32]` first (an answer), else the records go alone (a push of the whole
    /// list on a link this server opened).
    Stream {
        id: u64,
        kind: Role,
        counted: bool,
        state: StreamState,
    },
}

/// What the opener of a peer link expects back, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// CursorQuery: `[14][line u64]`.
    Cursor,
    /// HeartBeat: an optional UpdateClock frame.
    HeartBeat,
    /// Barrier: a status frame; a 200 confirms our journal up to `confirms`.
    Status { confirms: u64 },
    /// NodeListHash: the peer's hash (10).
    NodeHash,
    /// NodeList: the peer's diff (12).
    NodeDiff,
    /// DirRequest: DirRecord frames, then the end frame (17).
    Directory,
    /// AuthChallenge: `[20][nonce 32]`; the proof and the link's opening requests follow.
    Nonce,
}

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
            expects: VecDeque::new(),
            peer_journal: None,
            auth: Auth::default(),
        }
    }

    /// On a link: sends our node-list hash frame `h` (10) unless a hash is already awaiting
    /// its answer (one outstanding is enough; its answer compares with the list as it is).
    pub(super) fn ask_node_hash(&mut self, h: &[u8]) {
        if !self.expects.iter().any(|e| *e == Expect::NodeHash) {
            self.out.extend_from_slice(h);
            self.expects.push_back(Expect::NodeHash);
        }
    }

    /// Output pending plus what the pending short answers will add (at most 16 bytes each:
    /// a barrier's status frame or an UpdateClock), so that parsing stops before the
    /// connection's output can pass its bound. Streams bound themselves.
    pub(super) fn committed_out(&self) -> usize {
        self.out.pending() + 16 * self.answers.len()
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

    /// Appends `bytes`.
    pub(super) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends one byte.
    pub(super) fn push(&mut self, byte: u8) {
        self.buf.push(byte);
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
