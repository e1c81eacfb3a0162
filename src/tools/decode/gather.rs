//! The answers `decode` shows in one line each although they come in many pieces: a ListAll
//! or AskForUpdate answer (a count, then records), a JournalSince answer (a count, then
//! journal lines) and a DirRequest answer (records, then the end frame), as docs/PROTOCOL.md
//! §10 shows them. The pieces are read by the wire's answer codec
//! ([`crate::wire::tcp::answer::AnswerReader`]); this module only adds them up.

use super::line::Line;
use crate::wire::tcp::answer::{AnswerPiece, Asked, PieceKind};
use crate::wire::tcp::dir::DirRecord;
use crate::wire::tcp::{CMD_ASK_FOR_UPDATE, CMD_DIR_REQUEST, CMD_JOURNAL_SINCE, CMD_LIST_ALL};

/// One gathered answer, while its pieces are read.
pub(super) struct Gather {
    /// The line, with its kind and (once read) its count.
    line: Line,
    /// What was asked.
    asked: Asked,
    /// Offset of the answer's first byte in the acceptor's stream.
    pub(super) start: usize,
    /// Records or lines read so far.
    items: u64,
    /// The first and last journal line numbers read.
    lines: Option<(u64, u64)>,
    /// The directory answer's closing count, once read.
    end_count: Option<u32>,
    /// Why the first malformed piece is malformed.
    bad: Option<String>,
}

impl Gather {
    /// The line's kind and number for an answer to `asked` that is gathered: the asking
    /// command's byte (`list-all-answer(2)`, `ask-for-update-answer(4)`, `directory(17)`,
    /// `journal-since-answer(19)`); `None` for answers shown a piece a line.
    pub(super) fn kind_of(asked: Asked) -> Option<(&'static str, u8)> {
        Some(match asked {
            Asked::ListAll => ("list-all-answer", CMD_LIST_ALL),
            Asked::AskForUpdate => ("ask-for-update-answer", CMD_ASK_FOR_UPDATE),
            Asked::DirRequest => ("directory", CMD_DIR_REQUEST),
            Asked::JournalSince => ("journal-since-answer", CMD_JOURNAL_SINCE),
            _ => return None,
        })
    }

    /// Starts gathering the answer to `asked` whose first byte is at `start`, on `line`
    /// (the line of that byte); `None` when `asked` is not gathered.
    pub(super) fn open(asked: Asked, mut line: Line, start: usize) -> Option<Gather> {
        let (kind, num) = Self::kind_of(asked)?;
        line.kind(kind, num);
        Some(Gather {
            line,
            asked,
            start,
            items: 0,
            lines: None,
            end_count: None,
            bad: None,
        })
    }

    /// The name of what is counted: `lines` in a journal answer, `records` elsewhere.
    fn item_name(&self) -> &'static str {
        if self.asked == Asked::JournalSince {
            "lines"
        } else {
            "records"
        }
    }

    /// True once the items' count is known: after the count of a counted answer, always in
    /// a directory answer (its records are counted as they come).
    fn counting(&self) -> bool {
        self.asked == Asked::DirRequest || self.line.fields.iter().any(|(k, _)| *k == "count")
    }

    /// Adds one piece of the answer.
    pub(super) fn add(&mut self, piece: &AnswerPiece<'_>) {
        match *piece {
            AnswerPiece::Count(n) | AnswerPiece::JournalCount(n) => {
                self.line.num("count", n);
            }
            AnswerPiece::ClientRecord(_) | AnswerPiece::ServerRecord { .. } => self.items += 1,
            AnswerPiece::JournalLine { line, .. } => {
                let first = self.lines.map_or(line, |(f, _)| f);
                self.lines = Some((first, line));
                self.items += 1;
            }
            AnswerPiece::DirRecord(body) => {
                if let Err(e) = DirRecord::parse(body) {
                    self.note_bad(format!("record {}: {e}", self.items));
                }
                self.items += 1;
            }
            AnswerPiece::DirEnd(n) => self.end_count = Some(n),
            AnswerPiece::Malformed { kind, error } => {
                let what = match kind {
                    PieceKind::DirEnd => "end".to_string(),
                    PieceKind::JournalLine => format!("line {}", self.items),
                    _ => format!("record {}", self.items),
                };
                self.note_bad(format!("{what}: {error}"));
                if kind != PieceKind::DirEnd {
                    self.items += 1;
                }
            }
            _ => {}
        }
    }

    /// Remembers the first malformed piece.
    fn note_bad(&mut self, why: String) {
        self.bad.get_or_insert(why);
    }

    /// The line of a complete answer whose last byte ends at `end`.
    pub(super) fn finish(mut self, end: usize) -> Line {
        let items = self.items;
        self.line.num(self.item_name(), items);
        match self.asked {
            Asked::ListAll | Asked::AskForUpdate => {
                self.line.num("bytes", (end - self.start) as u64);
            }
            Asked::JournalSince => {
                if let Some((first, last)) = self.lines {
                    self.line.num("first_line", first).num("last_line", last);
                }
            }
            _ => {
                if let Some(n) = self.end_count {
                    self.line.num("count", n);
                }
            }
        }
        self.with_bad()
    }

    /// The line of an answer a refusal (a status frame) came in the middle of: a store
    /// failure while streaming.
    pub(super) fn cut_by_status(mut self) -> Line {
        let items = self.items;
        self.line
            .num(self.item_name(), items)
            .flag("cut_by_status", true);
        self.with_bad()
    }

    /// The line of an answer the acceptor's stream ends inside (its bytes run to `end`).
    pub(super) fn cut(mut self, end: usize) -> Line {
        self.counted();
        self.line
            .num("len", (end - self.start) as u64)
            .malformed("the stream ends inside this answer");
        self.line
    }

    /// The line of an answer followed by bytes that are not its next piece (the stream
    /// runs to `end`): `unframed(B)` with `B` the answer's first byte.
    pub(super) fn unframed(mut self, first: u8, end: usize, why: &str) -> Line {
        self.counted();
        self.line
            .kind("unframed", first)
            .num("len", (end - self.start) as u64)
            .malformed(format!("{why}; the rest of the answers cannot be framed"));
        self.line
    }

    /// Adds the items read so far, once their count is known.
    fn counted(&mut self) {
        if self.counting() {
            let items = self.items;
            self.line.num(self.item_name(), items);
        }
    }

    /// The line, with the first malformed piece's reason.
    fn with_bad(mut self) -> Line {
        if let Some(why) = self.bad.take() {
            self.line.malformed(why);
        }
        self.line
    }
}
