//! The answer stream: everything the acceptor of a TCP connection sends back, framed by
//! what the opener asked, in order (docs/PROTOCOL.md §8.5-§8.7, §8.14-§8.17). The one
//! codec of it: the server's links, the bundled client, `decode` and `replay` all read
//! answers with [`AnswerReader`], and an acceptor can write every piece with
//! [`AnswerPiece::emit`].
//!
//! ```text
//! request (opener)       answer (acceptor), in the order asked
//! 2 ListAll (client)     [count u32], then count x [01][fields 532]                 533 each
//! 4 AskForUpdate         [count u32], then count x [01][clock u32][fields 532]      537 each
//! 2 HeartBeat (server)   [03][clock u32], or nothing (the peer took our clock)
//! 5 Barrier              [07][status u16 = 200][request u8][len u8][detail]
//! 6 Status               [06][len u32][len bytes of UTF-8 key=value lines]
//! 14 CursorQuery         [0e][line u64]
//! 10 NodeListHash        [0a][hash_len u8 = 64][hash 64]
//! 11 NodeList            [0c][count u32][entries]                          (NodeListDiff)
//! 17 DirRequest          [10][len u16][record] ... then [11][len u16 = 4][count u32]
//! 19 JournalSince        [13][count u32], then count x [0d][line u64][clock u32][fields]
//! 20 AuthChallenge       [14][nonce 32]
//! 21 AuthProof           [07][status u16 = 200][request u8][len u8][detail]
//! 22 Reconcile           [16][len u16][set u8][message], message empty: busy
//! 23 DirWant             as DirRequest: [10][len u16][record] ... [11][len u16 = 4][count u32]
//! in place of any answer: a status frame other than 200, then the acceptor closes
//! (refused hellos and commands, and a store failure while streaming)
//! ```
//!
//! Updates, UpdateClock, JournalUpdate, JournalMark, DirRecord and Forward get no answer.
//!
//! # Reading answers
//!
//! Tell the reader each request that gets an answer, in the order sent
//! ([`AnswerReader::ask`], with [`Asked::of_command`], [`ClientCommand::asked`] or
//! [`ServerCommand::asked`]), then call [`AnswerReader::read`] on the bytes received so
//! far: `Ok(None)` asks for more bytes, `Ok(Some(piece))` gives one [`Piece`], borrowed
//! from the buffer, of `piece.len` bytes, which the caller consumes before reading again.
//! A piece's [`Outcome`] says whether it completes the answer (with the tag given to
//! `ask`) or was a refusal (every request still owed is dropped). An error means the bytes
//! are not the answer due: the stream cannot be followed after it.
//!
//! ```
//! use rendezvous::wire::tcp::answer::{AnswerPiece, AnswerReader, Asked, Outcome};
//!
//! let mut reader = AnswerReader::new();
//! reader.ask(Asked::HeartBeat, "heartbeat").unwrap();
//! reader.ask(Asked::Barrier, "barrier").unwrap();
//! // UpdateClock 7, then the barrier's 200 "ok", arriving in one piece of bytes.
//! let bytes = [3, 0, 0, 0, 7, 7, 0, 200, 5, 2, b'o', b'k'];
//! let mut at = 0;
//! let mut seen = Vec::new();
//! while let Some(p) = reader.read(&bytes[at..]).unwrap() {
//!     at += p.len;
//!     seen.push((p.piece, p.outcome));
//! }
//! assert_eq!(seen[0], (AnswerPiece::UpdateClock(7), Outcome::Answered("heartbeat")));
//! assert!(matches!(seen[1], (AnswerPiece::Status(s), Outcome::Answered("barrier")) if s.status == 200));
//! assert_eq!(at, bytes.len());
//! ```
//!
//! Ambiguities the protocol leaves, resolved as its readers always have: a HeartBeat's
//! answer is known to be nothing from the next byte (the opener always follows a
//! HeartBeat with another request, docs/PROTOCOL.md §8.7); a first byte 7 where a count
//! is due is read as a status frame (a count of 117,440,512 or more contacts cannot be
//! told from a refusal), and a first byte 3 after a HeartBeat as its UpdateClock.

mod piece;
mod reader;

#[cfg(test)]
mod tests;

pub use piece::{AnswerPiece, PieceKind};
pub use reader::{AnswerReader, Outcome, Piece};

use super::{
    ClientCommand, Role, ServerCommand, CMD_ASK_FOR_UPDATE, CMD_AUTH_CHALLENGE, CMD_AUTH_PROOF,
    CMD_BARRIER, CMD_CURSOR_QUERY, CMD_DIR_REQUEST, CMD_DIR_WANT, CMD_HEARTBEAT, CMD_JOURNAL_SINCE,
    CMD_LIST_ALL, CMD_NODE_LIST, CMD_NODE_LIST_HASH, CMD_NODE_SYNC, CMD_RECONCILE,
    CMD_STATUS_REQUEST, NONCE_LEN,
};

/// The most requests an [`AnswerReader`] tracks awaiting their answers: 65,536.
pub const MAX_PENDING: usize = 1 << 16;
/// The longest status text a reader accepts, and a writer writes: 1 MiB (1,048,576 bytes).
/// Today's is a few hundred bytes per peer link (docs/PROTOCOL.md §8.5).
pub const MAX_STATUS_TEXT_LEN: usize = 1 << 20;
/// Bytes before the text of a Status answer: `[06][len u32]` = 5.
pub const STATUS_TEXT_HEADER_LEN: usize = 5;
/// Length of the UpdateClock that answers a HeartBeat: `[03][clock u32]` = 5 bytes.
pub const UPDATE_CLOCK_ANSWER_LEN: usize = 5;
/// Length of a CursorQuery's answer: `[14][line u64]` = 9 bytes.
pub const CURSOR_ANSWER_LEN: usize = 9;
/// Length of an AuthChallenge's answer: `[20][nonce 32]` = 33 bytes.
pub const NONCE_ANSWER_LEN: usize = 1 + NONCE_LEN;
/// Length of the start of a JournalSince answer: `[19][count u32]` = 5 bytes.
pub const JOURNAL_COUNT_LEN: usize = 5;

/// A request that gets an answer (docs/PROTOCOL.md §8.5): what an [`AnswerReader`] is told
/// the opener asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asked {
    /// Client command 2: a count and 533-byte records.
    ListAll,
    /// Server command 4: a count and 537-byte records.
    AskForUpdate,
    /// Server command 2: an UpdateClock, or nothing.
    HeartBeat,
    /// Command 5, both roles: a status frame (200 once durable).
    Barrier,
    /// Command 6, both roles: the status text.
    Status,
    /// Server command 14: the cursor.
    CursorQuery,
    /// Server command 10: the acceptor's node-list hash.
    NodeListHash,
    /// Server command 11 or 24: a NodeListDiff.
    NodeList,
    /// Server command 17: DirRecord frames, then the end frame.
    DirRequest,
    /// Server command 19: a count and JournalUpdate lines.
    JournalSince,
    /// Command 20, both roles: a nonce.
    AuthChallenge,
    /// Command 21, both roles: a status frame (200 when the proof holds).
    AuthProof,
    /// Server command 22: the acceptor's reconciliation message.
    Reconcile,
}

impl Asked {
    /// Every kind of request, in declaration order (for property tests and fuzzing).
    pub const ALL: [Asked; 13] = [
        Asked::ListAll,
        Asked::AskForUpdate,
        Asked::HeartBeat,
        Asked::Barrier,
        Asked::Status,
        Asked::CursorQuery,
        Asked::NodeListHash,
        Asked::NodeList,
        Asked::DirRequest,
        Asked::JournalSince,
        Asked::AuthChallenge,
        Asked::AuthProof,
        Asked::Reconcile,
    ];

    /// What a command of `role` asks, by its command byte: `None` for a command that gets
    /// no answer (Update, UpdateClock, JournalUpdate, JournalMark, NodeListDiff, DirRecord,
    /// Forward) and for a byte that is no command of that role.
    pub fn of_command(role: Role, command: u8) -> Option<Asked> {
        Some(match (role, command) {
            (_, CMD_BARRIER) => Asked::Barrier,
            (_, CMD_STATUS_REQUEST) => Asked::Status,
            (Role::Client, CMD_LIST_ALL) => Asked::ListAll,
            (Role::Server, CMD_HEARTBEAT) => Asked::HeartBeat,
            (Role::Server, CMD_ASK_FOR_UPDATE) => Asked::AskForUpdate,
            (Role::Server, CMD_CURSOR_QUERY) => Asked::CursorQuery,
            (Role::Server, CMD_NODE_LIST_HASH) => Asked::NodeListHash,
            (Role::Server, CMD_NODE_LIST | CMD_NODE_SYNC) => Asked::NodeList,
            (Role::Server, CMD_DIR_REQUEST | CMD_DIR_WANT) => Asked::DirRequest,
            (Role::Server, CMD_JOURNAL_SINCE) => Asked::JournalSince,
            (_, CMD_AUTH_CHALLENGE) => Asked::AuthChallenge,
            (_, CMD_AUTH_PROOF) => Asked::AuthProof,
            (Role::Server, CMD_RECONCILE) => Asked::Reconcile,
            _ => return None,
        })
    }
}

impl ClientCommand<'_> {
    /// What this command asks: `None` for an Update, which gets no answer.
    pub fn asked(&self) -> Option<Asked> {
        Asked::of_command(Role::Client, self.command_byte())
    }
}

impl ServerCommand<'_> {
    /// What this command asks: `None` for the commands that get no answer.
    pub fn asked(&self) -> Option<Asked> {
        Asked::of_command(Role::Server, self.command_byte())
    }
}
