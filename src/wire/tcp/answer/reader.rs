//! The incremental reader of the answer stream: given what the opener asked, in order, it
//! frames the next piece of the acceptor's bytes and says whether it completes an answer
//! (docs/PROTOCOL.md §8.5, §8.7, §8.14).
//!
//! ```text
//! asked (front of the queue)   the answer, piece by piece            then
//! ListAll, AskForUpdate        Count(n), n x ClientRecord/ServerRecord  Answered at the last
//! JournalSince                 JournalCount(n), n x JournalLine         Answered at the last
//! DirRequest                   DirRecord ... (any number), DirEnd       Answered at DirEnd
//! HeartBeat                    UpdateClock, or NoUpdateClock (0 bytes)  Answered
//! every other request          one piece                                Answered
//! in place of any of them      a status frame other than 200            Refused: all dropped
//! ```

use super::piece::{AnswerPiece, PieceKind};
use super::{
    Asked, CURSOR_ANSWER_LEN, JOURNAL_COUNT_LEN, MAX_PENDING, MAX_STATUS_TEXT_LEN,
    NONCE_ANSWER_LEN, STATUS_TEXT_HEADER_LEN, UPDATE_CLOCK_ANSWER_LEN,
};
use crate::wire::status::OK;
use crate::wire::tcp::command::{reconcile_frame_len, var_frame_len};
use crate::wire::tcp::dir::parse_dir_end;
use crate::wire::tcp::nodelist::{self, HASH_LEN};
use crate::wire::tcp::{
    parse_client_record, parse_server_record, ServerCommand, StatusFrame, CLIENT_RECORD_LEN,
    CMD_AUTH_CHALLENGE, CMD_CURSOR_QUERY, CMD_DIR_RECORD, CMD_DIR_REQUEST, CMD_JOURNAL_SINCE,
    CMD_JOURNAL_UPDATE, CMD_NODE_LIST_DIFF, CMD_NODE_LIST_HASH, CMD_RECONCILE, CMD_STATUS,
    CMD_STATUS_REQUEST, CMD_UPDATE_CLOCK, MAX_COMMAND_LEN, SERVER_RECORD_LEN,
};
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};
use std::collections::VecDeque;

/// What a piece did to the answer it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<T> {
    /// More of this answer follows: the count or a record of a counted answer that is not
    /// its last, or a record of a directory answer.
    Partial,
    /// The piece completes the answer to the request asked with this tag; the reader now
    /// reads the answer to the next request.
    Answered(T),
    /// A refusal (a status frame other than 200) in place of an answer: the acceptor closes
    /// the connection after it, so every request still owed is dropped with its tag
    /// (docs/PROTOCOL.md §8.14).
    Refused,
}

/// One piece read by [`AnswerReader::read`]: borrows the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a, T> {
    /// The request whose answer this piece belongs to (`None` for a refusal when nothing
    /// was asked, e.g. the refusal of a hello).
    pub asked: Option<Asked>,
    /// The piece.
    pub piece: AnswerPiece<'a>,
    /// Bytes it took at the start of the buffer: the caller consumes exactly these (0 for
    /// [`AnswerPiece::NoUpdateClock`]).
    pub len: usize,
    /// Whether it completes the answer.
    pub outcome: Outcome<T>,
}

/// What a framed piece does to the reader's state.
enum Effect {
    /// A count: this many records or lines follow (0: the answer is complete).
    Begin(u32),
    /// One record or line of a counted answer.
    Item,
    /// The piece completes the answer.
    Done,
    /// The piece is part of an answer of no known length (a directory record).
    More,
    /// A refusal: nothing more is answered.
    Refusal,
}

/// A framed piece, before the reader's state moves.
struct Step<'a> {
    piece: AnswerPiece<'a>,
    len: usize,
    effect: Effect,
}

impl<'a> Step<'a> {
    fn new(piece: AnswerPiece<'a>, len: usize, effect: Effect) -> Option<Self> {
        Some(Step { piece, len, effect })
    }
}

/// The reader of one connection's answer stream (docs/PROTOCOL.md §8.5, §8.7): the opener
/// tells it what it asked ([`Self::ask`], in the order sent), then feeds it the acceptor's
/// bytes ([`Self::read`]), which come back as [`Piece`]s, one at a time, without copying
/// and without holding more than one piece: a counted answer of a million records is read
/// record by record.
///
/// `T` is a tag the caller attaches to each request and gets back with the piece that
/// completes its answer ([`Outcome::Answered`]); `()` when none is needed.
///
/// Bounds: at most [`MAX_PENDING`] requests await their answers; the longest piece is a
/// NodeListDiff of [`nodelist::MAX_FRAME_LEN`] bytes (3,244,037), then a status text of
/// [`MAX_STATUS_TEXT_LEN`] + 5 bytes; every other piece is at most 4099 bytes.
#[derive(Debug, Clone)]
pub struct AnswerReader<T = ()> {
    /// Requests whose answers are due, oldest first, with their tags.
    pending: VecDeque<(Asked, T)>,
    /// Records or lines still due in the counted answer being read (`None` at the start
    /// of an answer).
    left: Option<u32>,
}

impl<T> Default for AnswerReader<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> AnswerReader<T> {
    /// A reader with nothing asked.
    pub fn new() -> Self {
        AnswerReader {
            pending: VecDeque::new(),
            left: None,
        }
    }

    /// Notes that the opener sent a request that gets an answer (in the order sent),
    /// with the tag to give back when its answer is complete.
    ///
    /// # Errors
    /// [`WireError::TooManyPending`] when [`MAX_PENDING`] requests already await their
    /// answers (nothing is noted).
    pub fn ask(&mut self, asked: Asked, tag: T) -> Result<(), WireError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(WireError::TooManyPending);
        }
        self.pending.push_back((asked, tag));
        Ok(())
    }

    /// The request whose answer is read next (or being read).
    pub fn front(&self) -> Option<Asked> {
        self.pending.front().map(|(a, _)| *a)
    }

    /// True when a request of kind `asked` awaits its answer (the one being read
    /// included).
    pub fn is_asked(&self, asked: Asked) -> bool {
        self.pending.iter().any(|(a, _)| *a == asked)
    }

    /// How many requests await their answers (the one being read included).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Records or lines still due in the counted answer being read; `None` between
    /// answers and in answers that are not counted.
    pub fn remaining(&self) -> Option<u32> {
        self.left
    }

    /// True when an answer is certainly still due: one is being read, or a request other
    /// than a HeartBeat awaits its answer (a HeartBeat may be answered with nothing, known
    /// only from the next answer's first byte).
    pub fn owes(&self) -> bool {
        self.left.is_some() || self.pending.iter().any(|(a, _)| *a != Asked::HeartBeat)
    }

    /// Reads the next piece at the start of `buf`: `Ok(None)` when more bytes are needed
    /// (nothing changes), `Ok(Some(piece))` when the first `piece.len` bytes are one whole
    /// piece, which the caller consumes before the next call.
    ///
    /// A piece whose length is known but whose content is malformed comes back as
    /// [`AnswerPiece::Malformed`] and counts as read, so a reader may go on past it.
    ///
    /// # Errors
    /// [`WireError::UnexpectedAnswer`] for bytes that are not the answer due (a byte that
    /// starts no answer to the request in front, bytes when nothing was asked, a status 200
    /// where another answer is due); [`WireError::BadLength`] for a length field over its
    /// bound (a status text over 1 MiB, a directory record over 4096 bytes, a node list of
    /// over 4096 entries). The stream cannot be followed after an error; nothing changes.
    pub fn read<'a>(&mut self, buf: &'a [u8]) -> Result<Option<Piece<'a, T>>, WireError> {
        let asked = self.front();
        let Some(step) = self.step(asked, buf)? else {
            return Ok(None);
        };
        let outcome = self.apply(step.effect);
        Ok(Some(Piece {
            asked,
            piece: step.piece,
            len: step.len,
            outcome,
        }))
    }

    /// Moves the state past a framed piece.
    fn apply(&mut self, effect: Effect) -> Outcome<T> {
        let done = match effect {
            Effect::Begin(0) | Effect::Done => true,
            Effect::Begin(n) => {
                self.left = Some(n);
                false
            }
            Effect::Item => {
                let n = self.left.unwrap_or(1).saturating_sub(1);
                self.left = (n > 0).then_some(n);
                n == 0
            }
            Effect::More => false,
            Effect::Refusal => {
                self.pending.clear();
                self.left = None;
                return Outcome::Refused;
            }
        };
        if !done {
            return Outcome::Partial;
        }
        self.left = None;
        match self.pending.pop_front() {
            Some((_, tag)) => Outcome::Answered(tag),
            None => Outcome::Partial, // never: a completed answer had a request
        }
    }

    /// Frames the piece at the start of `buf` for the request `asked`, without moving.
    fn step<'a>(&self, asked: Option<Asked>, buf: &'a [u8]) -> Result<Option<Step<'a>>, WireError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if asked == Some(Asked::HeartBeat) && first != CMD_UPDATE_CLOCK {
            // The opener always follows a HeartBeat with another request: this byte starts
            // that answer, so the acceptor took the opener's clock and answered nothing.
            return Ok(Step::new(AnswerPiece::NoUpdateClock, 0, Effect::Done));
        }
        let status_due = matches!(asked, Some(Asked::Barrier | Asked::AuthProof));
        if first == CMD_STATUS || status_due {
            return status_step(buf, status_due);
        }
        match asked.ok_or(WireError::UnexpectedAnswer)? {
            a @ (Asked::ListAll | Asked::AskForUpdate) => Ok(self.record_step(a, buf)),
            Asked::JournalSince => self.journal_step(buf),
            Asked::HeartBeat => Ok(fixed_step(buf, UPDATE_CLOCK_ANSWER_LEN, |f| {
                AnswerPiece::UpdateClock(BigEndian::read_u32(&f[1..]))
            })),
            Asked::Status => status_text_step(buf),
            Asked::CursorQuery => tagged_step(buf, CMD_CURSOR_QUERY, CURSOR_ANSWER_LEN, |f| {
                AnswerPiece::Cursor(BigEndian::read_u64(&f[1..]))
            }),
            Asked::AuthChallenge => tagged_step(buf, CMD_AUTH_CHALLENGE, NONCE_ANSWER_LEN, |f| {
                f[1..].try_into().map_or(
                    AnswerPiece::Malformed {
                        kind: PieceKind::Nonce,
                        error: WireError::Truncated,
                    },
                    AnswerPiece::Nonce,
                )
            }),
            Asked::NodeListHash => hash_step(buf),
            Asked::NodeList => diff_step(buf),
            Asked::DirRequest => dir_step(buf),
            Asked::Reconcile => reconcile_step(buf),
            Asked::Barrier | Asked::AuthProof => Err(WireError::UnexpectedAnswer),
        }
    }

    /// The count, or one record, of a ListAll or AskForUpdate answer.
    fn record_step<'a>(&self, asked: Asked, buf: &'a [u8]) -> Option<Step<'a>> {
        if self.left.is_none() {
            return fixed_step_with(buf, 4, Effect::Begin(read_u32(buf, 0)?), |f| {
                AnswerPiece::Count(BigEndian::read_u32(f))
            });
        }
        let (len, kind) = if asked == Asked::ListAll {
            (CLIENT_RECORD_LEN, PieceKind::ClientRecord)
        } else {
            (SERVER_RECORD_LEN, PieceKind::ServerRecord)
        };
        let rec = buf.get(..len)?;
        let piece = if asked == Asked::ListAll {
            parse_client_record(rec).map(AnswerPiece::ClientRecord)
        } else {
            parse_server_record(rec)
                .map(|(clock, fields)| AnswerPiece::ServerRecord { clock, fields })
        };
        Step::new(malformed_as(kind, piece), len, Effect::Item)
    }

    /// The `[19][count u32]`, or one JournalUpdate line, of a JournalSince answer.
    fn journal_step<'a>(&self, buf: &'a [u8]) -> Result<Option<Step<'a>>, WireError> {
        if self.left.is_none() {
            expect_first(buf, CMD_JOURNAL_SINCE)?;
            let Some(count) = read_u32(buf, 1) else {
                return Ok(None);
            };
            return Ok(Step::new(
                AnswerPiece::JournalCount(count),
                JOURNAL_COUNT_LEN,
                Effect::Begin(count),
            ));
        }
        expect_first(buf, CMD_JOURNAL_UPDATE)?;
        let Some(frame) = buf.get(..MAX_COMMAND_LEN) else {
            return Ok(None);
        };
        let piece = match ServerCommand::parse(frame) {
            Ok(ServerCommand::JournalUpdate {
                line,
                clock,
                fields,
            }) => Ok(AnswerPiece::JournalLine {
                line,
                clock,
                fields,
            }),
            Ok(_) => Err(WireError::UnknownCommand),
            Err(e) => Err(e),
        };
        let piece = malformed_as(PieceKind::JournalLine, piece);
        Ok(Step::new(piece, MAX_COMMAND_LEN, Effect::Item))
    }
}

/// The `[22][len u16][message]` answer to a Reconcile.
fn reconcile_step(buf: &[u8]) -> Result<Option<Step<'_>>, WireError> {
    expect_first(buf, CMD_RECONCILE)?;
    let Some(n) = reconcile_frame_len(buf)? else {
        return Ok(None);
    };
    Ok(Step::new(
        AnswerPiece::Reconcile(&buf[3..n]),
        n,
        Effect::Done,
    ))
}

/// A big-endian u32 at `at`, if there.
fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4).map(BigEndian::read_u32)
}

/// `piece`, or a malformed piece of `kind` with its error.
fn malformed_as(kind: PieceKind, piece: Result<AnswerPiece<'_>, WireError>) -> AnswerPiece<'_> {
    piece.unwrap_or_else(|error| AnswerPiece::Malformed { kind, error })
}

/// `Ok` when `buf` starts with `byte`, else the bytes are not the answer due.
fn expect_first(buf: &[u8], byte: u8) -> Result<(), WireError> {
    if buf.first() == Some(&byte) {
        Ok(())
    } else {
        Err(WireError::UnexpectedAnswer)
    }
}

/// A piece of fixed length `len` that completes its answer.
fn fixed_step<'a>(
    buf: &'a [u8],
    len: usize,
    read: impl FnOnce(&'a [u8]) -> AnswerPiece<'a>,
) -> Option<Step<'a>> {
    fixed_step_with(buf, len, Effect::Done, read)
}

/// A piece of fixed length `len` with the given effect.
fn fixed_step_with<'a>(
    buf: &'a [u8],
    len: usize,
    effect: Effect,
    read: impl FnOnce(&'a [u8]) -> AnswerPiece<'a>,
) -> Option<Step<'a>> {
    let frame = buf.get(..len)?;
    Step::new(read(frame), len, effect)
}

/// A piece of fixed length `len` whose first byte must be `tag`.
fn tagged_step<'a>(
    buf: &'a [u8],
    tag: u8,
    len: usize,
    read: impl FnOnce(&'a [u8]) -> AnswerPiece<'a>,
) -> Result<Option<Step<'a>>, WireError> {
    expect_first(buf, tag)?;
    Ok(fixed_step(buf, len, read))
}

/// A status frame: the answer due (`due`: to a Barrier or an AuthProof), or a refusal in
/// place of another answer.
fn status_step(buf: &[u8], due: bool) -> Result<Option<Step<'_>>, WireError> {
    let n = match StatusFrame::frame_len(buf) {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(None),
        Err(_) => return Err(WireError::UnexpectedAnswer),
    };
    let frame = &buf[..n];
    let effect = match StatusFrame::peek_status(frame) {
        Some(OK) if due => Effect::Done,
        Some(OK) => return Err(WireError::UnexpectedAnswer),
        _ => Effect::Refusal,
    };
    let piece = malformed_as(
        PieceKind::Status,
        StatusFrame::parse(frame).map(AnswerPiece::Status),
    );
    Ok(Step::new(piece, n, effect))
}

/// `[06][len u32][text]`: the answer to a Status request.
fn status_text_step(buf: &[u8]) -> Result<Option<Step<'_>>, WireError> {
    expect_first(buf, CMD_STATUS_REQUEST)?;
    let Some(len) = read_u32(buf, 1) else {
        return Ok(None);
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_STATUS_TEXT_LEN {
        return Err(WireError::BadLength);
    }
    let n = STATUS_TEXT_HEADER_LEN + len;
    let Some(text) = buf.get(STATUS_TEXT_HEADER_LEN..n) else {
        return Ok(None);
    };
    let piece = core::str::from_utf8(text)
        .map(AnswerPiece::StatusText)
        .map_err(|_| WireError::BadUtf8);
    Ok(Step::new(
        malformed_as(PieceKind::StatusText, piece),
        n,
        Effect::Done,
    ))
}

/// `[10][hash_len u8][hash]`: the answer to a NodeListHash.
fn hash_step(buf: &[u8]) -> Result<Option<Step<'_>>, WireError> {
    expect_first(buf, CMD_NODE_LIST_HASH)?;
    let Some(n) = nodelist::frame_len(buf)? else {
        return Ok(None);
    };
    let piece = match buf[2..n].try_into() {
        Ok(hash) if usize::from(buf[1]) == HASH_LEN => AnswerPiece::NodeListHash(hash),
        _ => AnswerPiece::Malformed {
            kind: PieceKind::NodeListHash,
            error: WireError::BadLength,
        },
    };
    Ok(Step::new(piece, n, Effect::Done))
}

/// `[12][count u32][entries]`: the answer to a NodeList, framed.
fn diff_step(buf: &[u8]) -> Result<Option<Step<'_>>, WireError> {
    expect_first(buf, CMD_NODE_LIST_DIFF)?;
    let Some(n) = nodelist::frame_len(buf)? else {
        return Ok(None);
    };
    Ok(Step::new(
        AnswerPiece::NodeListDiff(&buf[..n]),
        n,
        Effect::Done,
    ))
}

/// A DirRecord frame (16), or the end frame (17), of a directory answer.
fn dir_step(buf: &[u8]) -> Result<Option<Step<'_>>, WireError> {
    let first = buf.first().copied();
    if first != Some(CMD_DIR_RECORD) && first != Some(CMD_DIR_REQUEST) {
        return Err(WireError::UnexpectedAnswer);
    }
    let Some(n) = var_frame_len(buf)? else {
        return Ok(None);
    };
    if first == Some(CMD_DIR_RECORD) {
        return Ok(Step::new(
            AnswerPiece::DirRecord(&buf[3..n]),
            n,
            Effect::More,
        ));
    }
    let piece = parse_dir_end(&buf[..n]).map(AnswerPiece::DirEnd);
    Ok(Step::new(
        malformed_as(PieceKind::DirEnd, piece),
        n,
        Effect::Done,
    ))
}
