//! The pieces of the answer stream: what [`super::AnswerReader`] returns and what an
//! acceptor writes, one frame (or one count, or one record) at a time
//! (docs/PROTOCOL.md §8.5, §8.6, §8.15-§8.17).
//!
//! ```text
//! piece          bytes                                          answers
//! Status         [07][status u16][request u8][len u8][detail]   Barrier, AuthProof; refusals
//! Count          [count u32]                                    ListAll, AskForUpdate
//! ClientRecord   [01][fields 532]                               ListAll, one record
//! ServerRecord   [01][clock u32][fields 532]                    AskForUpdate, one record
//! UpdateClock    [03][clock u32]                                HeartBeat
//! NoUpdateClock  nothing (0 bytes)                              HeartBeat
//! StatusText     [06][len u32][len bytes of UTF-8]              Status
//! Cursor         [0e][line u64]                                 CursorQuery
//! NodeListHash   [0a][hash_len u8 = 64][hash 64]                NodeListHash
//! NodeListDiff   [0c][count u32][entries]                       NodeList
//! DirRecord      [10][len u16][DirRecord body]                  DirRequest, one record
//! DirEnd         [11][len u16 = 4][count u32]                   DirRequest, the end
//! JournalCount   [13][count u32]                                JournalSince
//! JournalLine    [0d][line u64][clock u32][fields 532]          JournalSince, one line
//! Nonce          [20][nonce 32]                                 AuthChallenge
//! Reconcile      [16][len u16][message len]                     Reconcile (0 bytes: busy)
//! ```

use super::{
    CURSOR_ANSWER_LEN, JOURNAL_COUNT_LEN, MAX_STATUS_TEXT_LEN, NONCE_ANSWER_LEN,
    STATUS_TEXT_HEADER_LEN, UPDATE_CLOCK_ANSWER_LEN,
};
use crate::wire::bytes::room;
use crate::wire::tcp::dir::{emit_dir_end, DIR_END_LEN};
use crate::wire::tcp::nodelist::{self, CMD_NODE_LIST_HASH, HASH_FRAME_LEN, HASH_LEN};
use crate::wire::tcp::{
    emit_client_record, emit_count, emit_server_record, emit_update_clock, ContactFields,
    ServerCommand, StatusFrame, CLIENT_RECORD_LEN, CMD_AUTH_CHALLENGE, CMD_CURSOR_QUERY,
    CMD_DIR_RECORD, CMD_JOURNAL_SINCE, CMD_NODE_LIST_DIFF, CMD_STATUS_REQUEST, MAX_COMMAND_LEN,
    MAX_VAR_BODY, NONCE_LEN, SERVER_RECORD_LEN,
};
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};

/// One piece of the answer stream, borrowing the reader's buffer (nothing copied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerPiece<'a> {
    /// A status frame: the answer to a Barrier or an AuthProof (200), or a refusal (any
    /// other status) in place of any answer, after which the acceptor closes.
    Status(StatusFrame<'a>),
    /// The `[count u32]` that starts a ListAll or AskForUpdate answer; that many records
    /// follow.
    Count(u32),
    /// One record of a ListAll answer (533 bytes).
    ClientRecord(ContactFields<'a>),
    /// One record of an AskForUpdate answer (537 bytes).
    ServerRecord {
        /// The Lamport clock the record is stamped with.
        clock: u32,
        /// The contact.
        fields: ContactFields<'a>,
    },
    /// The UpdateClock `[03][clock u32]` that answers a HeartBeat: the acceptor's clock.
    UpdateClock(u32),
    /// A HeartBeat answered with nothing (the acceptor took the opener's clock): 0 bytes,
    /// known from the next byte, which starts the answer to the next request.
    NoUpdateClock,
    /// The answer to a Status request: `key=value` lines (docs/PROTOCOL.md §8.5).
    StatusText(&'a str),
    /// The answer to a CursorQuery: the last line of the opener's journal the acceptor
    /// holds, 0 when none.
    Cursor(u64),
    /// The answer to a NodeListHash: the acceptor's node-list hash (SHA-512, 64 bytes).
    NodeListHash(&'a [u8; HASH_LEN]),
    /// The answer to a NodeList: the whole NodeListDiff frame, command byte included,
    /// framed by [`nodelist::frame_len`] but not read: its entries are read
    /// by [`crate::wire::tcp::nodelist::NodeListFrame::parse`] (which allocates them).
    NodeListDiff(&'a [u8]),
    /// One record of a directory answer: the DirRecord body (without `[16][len]`), to be
    /// read by [`crate::wire::tcp::dir::DirRecord::parse`].
    DirRecord(&'a [u8]),
    /// The end of a directory answer: the number of records the acceptor sent.
    DirEnd(u32),
    /// The `[19][count u32]` that starts a JournalSince answer; that many lines follow.
    JournalCount(u32),
    /// One line of a JournalSince answer, a JournalUpdate frame (545 bytes).
    JournalLine {
        /// Line number in the acceptor's journal.
        line: u64,
        /// The record's Lamport clock.
        clock: u32,
        /// The contact.
        fields: ContactFields<'a>,
    },
    /// The answer to an AuthChallenge: the nonce to sign (docs/PROTOCOL.md §8.17).
    Nonce(&'a [u8; NONCE_LEN]),
    /// The answer to a Reconcile: the acceptor's reconciliation message (0 to 60,000
    /// bytes, without `[22][len]`); empty when the acceptor is busy reconciling with
    /// another server (docs/PROTOCOL.md §8.20).
    Reconcile(&'a [u8]),
    /// A piece whose bytes were framed (their length is known, so the stream goes on) but
    /// whose content is malformed: a record or line with a bad field, a status frame or
    /// status text that is not UTF-8, a hash whose length byte is not 64, an end frame
    /// whose length is not 4. The reader counts it as read.
    Malformed {
        /// What the bytes were framed as.
        kind: PieceKind,
        /// What is wrong with them.
        error: WireError,
    },
}

/// The kind of an [`AnswerPiece`], without its content (for names, counts and
/// [`AnswerPiece::Malformed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PieceKind {
    /// [`AnswerPiece::Status`].
    Status,
    /// [`AnswerPiece::Count`].
    Count,
    /// [`AnswerPiece::ClientRecord`].
    ClientRecord,
    /// [`AnswerPiece::ServerRecord`].
    ServerRecord,
    /// [`AnswerPiece::UpdateClock`].
    UpdateClock,
    /// [`AnswerPiece::NoUpdateClock`].
    NoUpdateClock,
    /// [`AnswerPiece::StatusText`].
    StatusText,
    /// [`AnswerPiece::Cursor`].
    Cursor,
    /// [`AnswerPiece::NodeListHash`].
    NodeListHash,
    /// [`AnswerPiece::NodeListDiff`].
    NodeListDiff,
    /// [`AnswerPiece::DirRecord`].
    DirRecord,
    /// [`AnswerPiece::DirEnd`].
    DirEnd,
    /// [`AnswerPiece::JournalCount`].
    JournalCount,
    /// [`AnswerPiece::JournalLine`].
    JournalLine,
    /// [`AnswerPiece::Nonce`].
    Nonce,
    /// [`AnswerPiece::Reconcile`].
    Reconcile,
}

impl PieceKind {
    /// The piece's name as this project's tools show it: `status`, `count`,
    /// `client-record`, `server-record`, `update-clock`, `no-update-clock`, `status-text`,
    /// `cursor`, `node-list-hash`, `node-list-diff`, `dir-record`, `dir-end`,
    /// `journal-count`, `journal-line`, `nonce`, `reconcile`.
    pub fn name(self) -> &'static str {
        match self {
            PieceKind::Status => "status",
            PieceKind::Count => "count",
            PieceKind::ClientRecord => "client-record",
            PieceKind::ServerRecord => "server-record",
            PieceKind::UpdateClock => "update-clock",
            PieceKind::NoUpdateClock => "no-update-clock",
            PieceKind::StatusText => "status-text",
            PieceKind::Cursor => "cursor",
            PieceKind::NodeListHash => "node-list-hash",
            PieceKind::NodeListDiff => "node-list-diff",
            PieceKind::DirRecord => "dir-record",
            PieceKind::DirEnd => "dir-end",
            PieceKind::JournalCount => "journal-count",
            PieceKind::JournalLine => "journal-line",
            PieceKind::Nonce => "nonce",
            PieceKind::Reconcile => "reconcile",
        }
    }
}

impl AnswerPiece<'_> {
    /// The piece's kind (for a malformed piece, what its bytes were framed as).
    pub fn kind(&self) -> PieceKind {
        match self {
            AnswerPiece::Status(_) => PieceKind::Status,
            AnswerPiece::Count(_) => PieceKind::Count,
            AnswerPiece::ClientRecord(_) => PieceKind::ClientRecord,
            AnswerPiece::ServerRecord { .. } => PieceKind::ServerRecord,
            AnswerPiece::UpdateClock(_) => PieceKind::UpdateClock,
            AnswerPiece::NoUpdateClock => PieceKind::NoUpdateClock,
            AnswerPiece::StatusText(_) => PieceKind::StatusText,
            AnswerPiece::Cursor(_) => PieceKind::Cursor,
            AnswerPiece::NodeListHash(_) => PieceKind::NodeListHash,
            AnswerPiece::NodeListDiff(_) => PieceKind::NodeListDiff,
            AnswerPiece::DirRecord(_) => PieceKind::DirRecord,
            AnswerPiece::DirEnd(_) => PieceKind::DirEnd,
            AnswerPiece::JournalCount(_) => PieceKind::JournalCount,
            AnswerPiece::JournalLine { .. } => PieceKind::JournalLine,
            AnswerPiece::Nonce(_) => PieceKind::Nonce,
            AnswerPiece::Reconcile(_) => PieceKind::Reconcile,
            AnswerPiece::Malformed { kind, .. } => *kind,
        }
    }

    /// True for a status frame other than 200 (well formed or not): a refusal, after which
    /// the acceptor closes (docs/PROTOCOL.md §8.6).
    pub fn is_refusal(&self) -> bool {
        match self {
            AnswerPiece::Status(f) => f.status != crate::wire::status::OK,
            _ => false,
        }
    }

    /// Bytes [`Self::emit`] writes (0 for [`AnswerPiece::NoUpdateClock`] and for a
    /// malformed piece, which cannot be written).
    pub fn buffer_len(&self) -> usize {
        match self {
            AnswerPiece::Status(f) => f.buffer_len(),
            AnswerPiece::Count(_) => 4,
            AnswerPiece::ClientRecord(_) => CLIENT_RECORD_LEN,
            AnswerPiece::ServerRecord { .. } => SERVER_RECORD_LEN,
            AnswerPiece::UpdateClock(_) => UPDATE_CLOCK_ANSWER_LEN,
            AnswerPiece::NoUpdateClock | AnswerPiece::Malformed { .. } => 0,
            AnswerPiece::StatusText(t) => STATUS_TEXT_HEADER_LEN + t.len(),
            AnswerPiece::Cursor(_) => CURSOR_ANSWER_LEN,
            AnswerPiece::NodeListHash(_) => HASH_FRAME_LEN,
            AnswerPiece::NodeListDiff(f) => f.len(),
            AnswerPiece::DirRecord(b) => 3 + b.len(),
            AnswerPiece::DirEnd(_) => DIR_END_LEN,
            AnswerPiece::JournalCount(_) => JOURNAL_COUNT_LEN,
            AnswerPiece::JournalLine { .. } => MAX_COMMAND_LEN,
            AnswerPiece::Nonce(_) => NONCE_ANSWER_LEN,
            AnswerPiece::Reconcile(m) => 3 + m.len(),
        }
    }

    /// Writes the piece as the acceptor sends it; returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] when `buf` is shorter than [`Self::buffer_len`];
    /// [`WireError::NameTooLong`] or [`WireError::InteriorNul`] for contact fields that do
    /// not fit; [`WireError::BadLength`] for a status text over 1 MiB, a DirRecord body over
    /// 4096 bytes, a reconciliation message over 60,000 bytes or a NodeListDiff that is not one whole frame 12; a malformed piece's own
    /// error (it cannot be written). Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        match *self {
            AnswerPiece::Status(f) => f.emit(buf),
            AnswerPiece::Count(c) => emit_count(c, buf),
            AnswerPiece::ClientRecord(f) => emit_client_record(&f, buf),
            AnswerPiece::ServerRecord { clock, fields } => emit_server_record(clock, &fields, buf),
            AnswerPiece::UpdateClock(c) => emit_update_clock(c, buf),
            AnswerPiece::NoUpdateClock => Ok(0),
            AnswerPiece::StatusText(t) => emit_status_text(t, buf),
            AnswerPiece::Cursor(line) => emit_tagged(CMD_CURSOR_QUERY, &line.to_be_bytes(), buf),
            AnswerPiece::NodeListHash(h) => {
                room(buf, HASH_FRAME_LEN)?;
                buf[0] = CMD_NODE_LIST_HASH;
                buf[1] = HASH_LEN as u8;
                buf[2..HASH_FRAME_LEN].copy_from_slice(h);
                Ok(HASH_FRAME_LEN)
            }
            AnswerPiece::NodeListDiff(f) => emit_diff(f, buf),
            AnswerPiece::DirRecord(b) if b.len() > MAX_VAR_BODY => Err(WireError::BadLength),
            AnswerPiece::DirRecord(b) => {
                room(buf, 3 + b.len())?;
                buf[0] = CMD_DIR_RECORD;
                BigEndian::write_u16(&mut buf[1..3], b.len() as u16); // <= 4096
                buf[3..3 + b.len()].copy_from_slice(b);
                Ok(3 + b.len())
            }
            AnswerPiece::DirEnd(c) => emit_dir_end(c, buf),
            AnswerPiece::JournalCount(c) => emit_tagged(CMD_JOURNAL_SINCE, &c.to_be_bytes(), buf),
            AnswerPiece::JournalLine {
                line,
                clock,
                fields,
            } => ServerCommand::JournalUpdate {
                line,
                clock,
                fields,
            }
            .emit(buf),
            AnswerPiece::Nonce(n) => emit_tagged(CMD_AUTH_CHALLENGE, n, buf),
            AnswerPiece::Reconcile(m) => ServerCommand::Reconcile(m).emit(buf),
            AnswerPiece::Malformed { error, .. } => Err(error),
        }
    }

    /// Appends the piece to `out` (as [`Self::emit`] writes it); returns its length.
    ///
    /// # Errors
    /// Those of [`Self::emit`] but [`WireError::BufferTooSmall`]; `out` is left as it was.
    pub fn append_to(&self, out: &mut Vec<u8>) -> Result<usize, WireError> {
        crate::wire::bytes::append(out, self.buffer_len(), |buf| self.emit(buf))
    }
}

/// Writes `[tag][bytes]`; returns its length.
fn emit_tagged(tag: u8, bytes: &[u8], buf: &mut [u8]) -> Result<usize, WireError> {
    let n = 1 + bytes.len();
    room(buf, n)?;
    buf[0] = tag;
    buf[1..n].copy_from_slice(bytes);
    Ok(n)
}

/// Writes `[06][len u32][text]`.
fn emit_status_text(text: &str, buf: &mut [u8]) -> Result<usize, WireError> {
    if text.len() > MAX_STATUS_TEXT_LEN {
        return Err(WireError::BadLength);
    }
    let n = STATUS_TEXT_HEADER_LEN + text.len();
    room(buf, n)?;
    buf[0] = CMD_STATUS_REQUEST;
    BigEndian::write_u32(&mut buf[1..5], text.len() as u32); // <= 1 MiB
    buf[5..n].copy_from_slice(text.as_bytes());
    Ok(n)
}

/// Copies a whole NodeListDiff frame, checking that it is one.
fn emit_diff(frame: &[u8], buf: &mut [u8]) -> Result<usize, WireError> {
    let whole = frame.first() == Some(&CMD_NODE_LIST_DIFF)
        && nodelist::frame_len(frame) == Ok(Some(frame.len()));
    if !whole {
        return Err(WireError::BadLength);
    }
    room(buf, frame.len())?;
    buf[..frame.len()].copy_from_slice(frame);
    Ok(frame.len())
}
