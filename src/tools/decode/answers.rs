//! TCP lines of the acceptor's side: its answers, framed by what the opener asked, in the
//! order asked (docs/PROTOCOL.md §8.5-§8.7): status frames, counted record lists, status
//! texts, cursors, nonces, node-list frames, directory records and journal lines.

use super::line::{hex, Line, Value};
use super::tcp::{be32, be64, node_list_fields, server_command_name, ts_at};
use crate::tools::capture::TcpFlow;
use crate::wire::tcp::dir::DirRecord;
use crate::wire::tcp::nodelist;
use crate::wire::tcp::{
    self, StatusFrame, CLIENT_RECORD_LEN, CMD_DIR_RECORD, CMD_DIR_REQUEST, CMD_JOURNAL_SINCE,
    CMD_JOURNAL_UPDATE, CMD_STATUS, CMD_UPDATE_CLOCK, JOURNAL_UPDATE_LEN,
};
use std::collections::VecDeque;

/// An answer the acceptor owes, in the order the opener asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// `[count u32]` then `count` records of `record_len` bytes (ListAll 533, AskForUpdate
    /// 537), answering command `cmd`.
    Records { cmd: u8, record_len: usize },
    /// UpdateClock, or nothing (a HeartBeat whose clock was higher).
    MaybeClock,
    /// A status frame (Barrier, AuthProof).
    Status,
    /// `[06][len u32][text]` (Status request).
    StatusText,
    /// `[14][line u64]` (CursorQuery).
    Cursor,
    /// `[20][nonce 32]` (AuthChallenge).
    Nonce,
    /// A node-list frame: the hash (10) for a hash, the diff (12) for a list.
    NodeList,
    /// DirRecord frames, then `[17][len u16 = 4][count u32]` (DirRequest).
    Directory,
    /// `[19][count u32]` then `count` JournalUpdate frames (JournalSince).
    JournalLines,
}

/// The acceptor's answers, framed by what was asked.
pub(super) fn server_frames(flow: &TcpFlow, mut expect: VecDeque<Expect>, out: &mut Vec<Line>) {
    let data = &flow.server_data;
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let mut line = Line::new(
            ts_at(&flow.server_chunks, flow.first_ts_us, pos),
            "tcp",
            flow.server,
            flow.client,
        );
        let front = expect.front().copied();
        if front == Some(Expect::MaybeClock) && rest[0] != CMD_UPDATE_CLOCK {
            expect.pop_front(); // the heartbeat's clock was higher: no answer
            continue;
        }
        let status_here = rest[0] == CMD_STATUS && front != Some(Expect::Status);
        let step = match front {
            Some(due) if !status_here && due != Expect::Status => answer(due, rest, &mut line),
            _ => status_answer(rest, &mut line),
        };
        let Step::Took(n) = step else {
            out.push(unframed(line, step, rest));
            return;
        };
        let refused =
            line.kind == "status" && line.fields.first() != Some(&("status", Value::Num(200)));
        out.push(line);
        pos += n;
        if line_is_answer(status_here, front) {
            expect.pop_front();
        }
        if refused {
            // Every refusal is followed by the acceptor closing: nothing more is answered.
            expect.clear();
        }
    }
}

/// Frames the answer `due` (not a status frame) at the start of `rest`.
fn answer(due: Expect, rest: &[u8], line: &mut Line) -> Step {
    match due {
        Expect::Records { cmd, record_len } => records_answer(rest, cmd, record_len, line),
        Expect::MaybeClock => fixed_answer(rest, 5, line, |f, l| {
            l.kind("update-clock", CMD_UPDATE_CLOCK)
                .num("clock", be32(f, 1).unwrap_or(0));
        }),
        Expect::StatusText => status_text_answer(rest, line),
        Expect::Cursor => fixed_answer(rest, 9, line, |f, l| {
            l.kind("cursor", f[0]).num("line", be64(f, 1).unwrap_or(0));
        }),
        Expect::Nonce => fixed_answer(rest, 33, line, |f, l| {
            l.kind("nonce", f[0]).word("nonce", hex(&f[1..]));
        }),
        Expect::NodeList => match nodelist::frame_len(rest) {
            Ok(Some(n)) => {
                line.kind(server_command_name(rest[0]), rest[0]);
                node_list_fields(&rest[..n], line);
                Step::Took(n)
            }
            Ok(None) => Step::Cut,
            Err(e) => Step::Bad(e.to_string()),
        },
        Expect::Directory => directory_answer(rest, line),
        Expect::JournalLines => journal_answer(rest, line),
        Expect::Status => status_answer(rest, line),
    }
}

/// The last line of a stream whose answers cannot be framed further: cut inside an answer
/// (`truncated`, or the answer's own name) or not the answer that was due (`unframed`).
fn unframed(mut line: Line, step: Step, rest: &[u8]) -> Line {
    match step {
        Step::Cut => {
            if line.num.is_none() {
                line.kind("truncated", rest[0]);
            }
            line.num("len", rest.len() as u64)
                .malformed("the stream ends inside this answer");
        }
        Step::Bad(why) => {
            line.kind("unframed", rest[0])
                .num("len", rest.len() as u64)
                .malformed(format!("{why}; the rest of the answers cannot be framed"));
        }
        Step::Took(_) => {}
    }
    line
}

/// Whether a framed answer used up the expectation at the front of the queue: a status
/// frame that came where another answer was due does not (it is a refusal, after which
/// nothing is answered anyway), anything else does.
pub(super) fn line_is_answer(status_here: bool, front: Option<Expect>) -> bool {
    !status_here && front.is_some()
}

/// How one answer was framed.
pub(super) enum Step {
    /// The answer took this many bytes.
    Took(usize),
    /// The stream ends inside it.
    Cut,
    /// These bytes are not the answer that was due.
    Bad(String),
}

/// A status frame (7).
pub(super) fn status_answer(rest: &[u8], line: &mut Line) -> Step {
    match StatusFrame::frame_len(rest) {
        Ok(Some(n)) => {
            line.kind("status", CMD_STATUS);
            match StatusFrame::parse(&rest[..n]) {
                Ok(s) => {
                    line.num("status", s.status)
                        .num("request", s.request)
                        .text("detail", s.detail);
                }
                Err(e) => {
                    line.malformed(e);
                }
            }
            Step::Took(n)
        }
        Ok(None) => Step::Cut,
        Err(e) => Step::Bad(format!("{e} (expected a status frame)")),
    }
}

/// A fixed-length answer whose first byte names it.
pub(super) fn fixed_answer(
    rest: &[u8],
    n: usize,
    line: &mut Line,
    fill: impl Fn(&[u8], &mut Line),
) -> Step {
    if rest.len() < n {
        return Step::Cut;
    }
    fill(&rest[..n], line);
    Step::Took(n)
}

/// `[count u32]` then `count` records of `record_len` bytes, summarised in one line.
pub(super) fn records_answer(rest: &[u8], cmd: u8, record_len: usize, line: &mut Line) -> Step {
    line.kind(
        if record_len == CLIENT_RECORD_LEN {
            "list-all-answer"
        } else {
            "ask-for-update-answer"
        },
        cmd,
    );
    let Some(count) = be32(rest, 0) else {
        return Step::Cut;
    };
    line.num("count", count);
    let mut pos = 4;
    let mut bad = None;
    for i in 0..count {
        if rest.get(pos) == Some(&CMD_STATUS) {
            // A store failure while streaming: the status frame comes in the records' place.
            line.num("records", i).flag("cut_by_status", true);
            return Step::Took(pos);
        }
        let Some(rec) = rest.get(pos..pos + record_len) else {
            line.num("records", i);
            return Step::Cut;
        };
        let ok = if record_len == CLIENT_RECORD_LEN {
            tcp::parse_client_record(rec).err()
        } else {
            tcp::parse_server_record(rec).err()
        };
        if let (Some(e), None) = (ok, bad) {
            bad = Some((i, e));
        }
        pos += record_len;
    }
    line.num("records", count).num("bytes", pos as u64);
    if let Some((i, e)) = bad {
        line.malformed(format!("record {i}: {e}"));
    }
    Step::Took(pos)
}

/// `[06][len u32][text]`: the Status answer.
pub(super) fn status_text_answer(rest: &[u8], line: &mut Line) -> Step {
    line.kind("status-text", rest[0]);
    let Some(len) = be32(rest, 1) else {
        return Step::Cut;
    };
    let n = 5 + len as usize;
    let Some(text) = rest.get(5..n) else {
        return Step::Cut;
    };
    line.num("len", len)
        .text("text", String::from_utf8_lossy(text));
    Step::Took(n)
}

/// DirRecord frames, then `[17][len u16 = 4][count u32]`: the DirRequest answer, in one
/// line.
pub(super) fn directory_answer(rest: &[u8], line: &mut Line) -> Step {
    line.kind("directory", CMD_DIR_REQUEST);
    let mut pos = 0;
    let mut records = 0u64;
    let mut bad = None;
    loop {
        match rest.get(pos) {
            None => {
                line.num("records", records);
                return Step::Cut;
            }
            Some(&CMD_DIR_RECORD) => {
                let Some(len) = rest.get(pos + 1..pos + 3) else {
                    line.num("records", records);
                    return Step::Cut;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let Some(body) = rest.get(pos + 3..pos + 3 + len) else {
                    line.num("records", records);
                    return Step::Cut;
                };
                if let (Err(e), None) = (DirRecord::parse(body), &bad) {
                    bad = Some((records, e));
                }
                records += 1;
                pos += 3 + len;
            }
            Some(&CMD_DIR_REQUEST) => {
                let Some(count) = be32(rest, pos + 3) else {
                    line.num("records", records);
                    return Step::Cut;
                };
                line.num("records", records).num("count", count);
                if let Some((i, e)) = bad {
                    line.malformed(format!("record {i}: {e}"));
                }
                return Step::Took(pos + 7);
            }
            Some(&CMD_STATUS) if records > 0 => {
                line.num("records", records).flag("cut_by_status", true);
                return Step::Took(pos);
            }
            Some(b) => {
                return Step::Bad(format!(
                    "byte {b} where a directory record (16) or its end (17) was due"
                ))
            }
        }
    }
}

/// `[19][count u32]` then `count` JournalUpdate frames: the JournalSince answer, in one
/// line.
pub(super) fn journal_answer(rest: &[u8], line: &mut Line) -> Step {
    if rest[0] != CMD_JOURNAL_SINCE {
        return Step::Bad(format!(
            "byte {} where a journal answer (19) was due",
            rest[0]
        ));
    }
    line.kind("journal-since-answer", CMD_JOURNAL_SINCE);
    let Some(count) = be32(rest, 1) else {
        return Step::Cut;
    };
    line.num("count", count);
    let frame = 1 + JOURNAL_UPDATE_LEN;
    let mut pos = 5;
    let (mut first, mut last) = (None, 0);
    for i in 0..count {
        let Some(f) = rest.get(pos..pos + frame) else {
            line.num("lines", i);
            return Step::Cut;
        };
        if f[0] != CMD_JOURNAL_UPDATE {
            return Step::Bad(format!("byte {} where a journal line (13) was due", f[0]));
        }
        let n = be64(f, 1).unwrap_or(0);
        first.get_or_insert(n);
        last = n;
        pos += frame;
    }
    line.num("lines", count);
    if let Some(first) = first {
        line.num("first_line", first).num("last_line", last);
    }
    Step::Took(pos)
}
