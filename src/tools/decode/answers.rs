//! TCP lines of the acceptor's side: its answers, read with the wire's answer codec
//! ([`AnswerReader`], docs/PROTOCOL.md §8.5-§8.7) against what the opener asked, in order.
//! One line per piece (status frames, UpdateClocks, status texts, cursors, node-list
//! frames, nonces), except the counted answers and the directory answer, which
//! [`super::gather`] shows in one line each. Never frames an answer's bytes itself.

use super::gather::Gather;
use super::line::{hex, Line};
use super::tcp::{node_list_fields, ts_at};
use crate::tools::capture::FlowView;
use crate::wire::tcp::answer::{
    AnswerPiece, AnswerReader, Asked, Outcome, Piece, PieceKind, STATUS_TEXT_HEADER_LEN,
};
use crate::wire::tcp::{CMD_STATUS, CMD_STATUS_REQUEST};
use crate::wire::WireError;

/// Following one connection's answers, as far as the acceptor's stream has been read
/// (docs/PROTOCOL.md §10, streaming): what is not whole yet is read on a later call.
#[derive(Default)]
pub(super) struct Answers {
    /// How many requests of the opener's (in the order sent) were told to the reader:
    /// requests are told one at a time, as their answers become due, so the reader's
    /// queue never grows past one.
    next: usize,
    reader: AnswerReader,
    /// The answer being gathered into one line, if any.
    gather: Option<Gather>,
    /// Offset of the next piece in the acceptor's stream.
    pos: usize,
    /// True once the stream cannot be read further (unframed, or cut at the end).
    done: bool,
    /// True after a refusal: the acceptor closes then, so no later request is answered.
    refused: bool,
}

impl Answers {
    /// Reads the pieces of `flow`'s acceptor stream that are whole, against `asked` (the
    /// opener's requests so far, in the order sent). Until `final_asks` (no more requests
    /// will come), bytes with no request told are left for a later call; until `last` (no
    /// more bytes will come), so is a piece not whole yet. At `last`, a stream that stops
    /// inside an answer ends with a line that says so.
    pub(super) fn advance<'f>(
        &mut self,
        flow: FlowView<'f>,
        asked: &[Asked],
        final_asks: bool,
        last: bool,
        out: &mut Vec<Line>,
    ) {
        let data: &'f [u8] = flow.server_data;
        while !self.done && self.pos < data.len() {
            if self.reader.pending() == 0 && !self.refused {
                if self.next < asked.len() {
                    let _ = self.reader.ask(asked[self.next], ());
                    self.next += 1;
                } else if !final_asks {
                    return; // its request has not been read yet
                }
            }
            match self.reader.read(&data[self.pos..]) {
                Ok(Some(p)) => {
                    let len = p.len;
                    self.piece(flow, p, out);
                    self.pos += len;
                }
                Ok(None) if !last => return,
                Ok(None) => {
                    self.cut(flow, out);
                    self.done = true;
                }
                Err(e) => {
                    out.push(self.unframed(flow, e));
                    self.done = true;
                }
            }
        }
        if last {
            if let Some(g) = self.gather.take() {
                out.push(g.cut(data.len()));
            }
            self.done = true;
        }
    }

    /// The line of the byte at `offset` of the acceptor's stream.
    fn line_at(flow: FlowView<'_>, offset: usize) -> Line {
        Line::new(
            ts_at(flow.server_chunks, flow.first_ts_us, offset),
            "tcp",
            flow.server,
            flow.client,
        )
    }

    /// One piece read by the codec, at [`Self::pos`].
    fn piece<'f>(&mut self, flow: FlowView<'f>, p: Piece<'f, ()>, out: &mut Vec<Line>) {
        if p.outcome == Outcome::Refused {
            // The acceptor closes after a refusal: nothing more is answered.
            self.refused = true;
        }
        let kind = p.piece.kind();
        if kind == PieceKind::NoUpdateClock {
            return; // the HeartBeat's clock was higher: nothing was sent
        }
        if kind == PieceKind::Status {
            if let Some(g) = self.gather.take() {
                out.push(g.cut_by_status());
            }
        } else if let Some(a) = p.asked.filter(|a| Gather::kind_of(*a).is_some()) {
            let at = self.pos;
            let g = self.gather.take();
            if let Some(g) = g.or_else(|| Gather::open(a, Self::line_at(flow, at), at)) {
                return self.gathered(g, &p, out);
            }
        }
        let bytes = &flow.server_data[self.pos..self.pos + p.len];
        let mut line = Self::line_at(flow, self.pos);
        piece_line(&p.piece, bytes, &mut line);
        out.push(line);
    }

    /// Adds a piece to the answer being gathered; its line when the piece completes it.
    fn gathered(&mut self, mut g: Gather, p: &Piece<'_, ()>, out: &mut Vec<Line>) {
        g.add(&p.piece);
        match p.outcome {
            Outcome::Answered(()) => out.push(g.finish(self.pos + p.len)),
            _ => self.gather = Some(g),
        }
    }

    /// The last lines of a stream that ends inside an answer: the answer being gathered
    /// (cut by a refusal when the piece cut short is a status frame), then the piece.
    fn cut(&mut self, flow: FlowView<'_>, out: &mut Vec<Line>) {
        let end = flow.server_data.len();
        let first = flow.server_data[self.pos];
        match self.gather.take() {
            Some(g) if first == CMD_STATUS => out.push(g.cut_by_status()),
            Some(g) => return out.push(g.cut(end)),
            None => {}
        }
        let front = self.reader.front();
        let opened = front
            .filter(|a| opens(*a, first))
            .and_then(|a| Gather::open(a, Self::line_at(flow, self.pos), self.pos));
        if let Some(g) = opened {
            return out.push(g.cut(end));
        }
        let mut line = Self::line_at(flow, self.pos);
        if front == Some(Asked::Status) && first == CMD_STATUS_REQUEST {
            line.kind(PieceKind::StatusText.name(), first);
        } else {
            line.kind("truncated", first);
        }
        line.num("len", (end - self.pos) as u64)
            .malformed("the stream ends inside this answer");
        out.push(line);
    }

    /// The last line of a stream whose bytes are not the answer due: the rest cannot be
    /// framed.
    fn unframed(&mut self, flow: FlowView<'_>, e: WireError) -> Line {
        let data = flow.server_data;
        let due = match self.reader.front() {
            Some(a) => format!("where the answer to {a:?} was due"),
            None => "when nothing was asked".to_string(),
        };
        let why = format!("{e}: byte {} {due}", data[self.pos]);
        if let Some(g) = self.gather.take() {
            let first = data[g.start];
            return g.unframed(first, data.len(), &why);
        }
        let mut line = Self::line_at(flow, self.pos);
        line.kind("unframed", data[self.pos])
            .num("len", (data.len() - self.pos) as u64)
            .malformed(format!("{why}; the rest of the answers cannot be framed"));
        line
    }
}
/// True when the answer to `asked` that starts with `first` is gathered (a status frame
/// in its place is a line of its own).
fn opens(asked: Asked, first: u8) -> bool {
    match asked {
        Asked::JournalSince => first == crate::wire::tcp::CMD_JOURNAL_SINCE,
        _ => first != CMD_STATUS && Gather::kind_of(asked).is_some(),
    }
}

/// The line of a piece shown on its own (`bytes`: the piece's bytes): its name
/// ([`PieceKind::name`]), its first byte, its fields.
fn piece_line(piece: &AnswerPiece<'_>, bytes: &[u8], line: &mut Line) {
    line.kind(piece.kind().name(), bytes.first().copied().unwrap_or(0));
    match *piece {
        AnswerPiece::Status(s) => {
            line.num("status", s.status)
                .num("request", s.request)
                .text("detail", s.detail);
        }
        AnswerPiece::UpdateClock(clock) => {
            line.num("clock", clock);
        }
        AnswerPiece::StatusText(text) => {
            line.num("len", text.len() as u64).text("text", text);
        }
        AnswerPiece::Cursor(n) => {
            line.num("line", n);
        }
        AnswerPiece::NodeListHash(h) => {
            line.word("hash", hex(h));
        }
        AnswerPiece::NodeListDiff(frame) => node_list_fields(frame, line),
        AnswerPiece::Nonce(n) => {
            line.word("nonce", hex(n));
        }
        AnswerPiece::Reconcile(m) => {
            line.num("len", m.len() as u64);
        }
        AnswerPiece::Malformed { kind, error } => {
            if kind == PieceKind::StatusText {
                // The text as far as it reads, to show what is wrong with it.
                let text = bytes.get(STATUS_TEXT_HEADER_LEN..).unwrap_or_default();
                line.num("len", text.len() as u64)
                    .text("text", String::from_utf8_lossy(text));
            }
            line.malformed(error);
        }
        // Gathered (super::gather), or nothing to show.
        AnswerPiece::Count(_)
        | AnswerPiece::ClientRecord(_)
        | AnswerPiece::ServerRecord { .. }
        | AnswerPiece::NoUpdateClock
        | AnswerPiece::DirRecord(_)
        | AnswerPiece::DirEnd(_)
        | AnswerPiece::JournalCount(_)
        | AnswerPiece::JournalLine { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::tcp::{tcp_lines, FlowDecoder};
    use super::*;
    use crate::tools::capture::TcpFlow;
    use crate::wire::fixtures::{exchanges, Exchange};

    /// A connection whose streams hold `client_data` and `server_data`.
    fn flow_of(client_data: Vec<u8>, server_data: Vec<u8>) -> TcpFlow {
        TcpFlow {
            client: "192.0.2.10:40000".parse().unwrap(),
            server: "192.0.2.1:4747".parse().unwrap(),
            first_ts_us: 1,
            client_chunks: vec![(1, 0)],
            client_data,
            server_chunks: vec![(2, 0)],
            server_data,
            gaps: 0,
        }
    }

    /// The lines of the acceptor's side of `e`, its streams cut at `cut` bytes.
    fn answer_lines(e: &Exchange, cut: usize) -> Vec<Line> {
        let mut server_data = e.acceptor_bytes();
        server_data.truncate(cut);
        let flow = flow_of(e.opener_bytes(), server_data);
        let mut lines = Vec::new();
        tcp_lines(&flow, &mut lines);
        lines.retain(|l| l.src == flow.server);
        lines
    }

    /// Each side's lines, as text, in the order made.
    fn sides(lines: &[Line], flow: &TcpFlow) -> (Vec<String>, Vec<String>) {
        let of = |src| {
            lines
                .iter()
                .filter(|l| l.src == src)
                .map(Line::to_text)
                .collect()
        };
        (of(flow.client), of(flow.server))
    }

    /// Read as it arrives, a byte at a time on each side (the acceptor's bytes sometimes
    /// ahead of the request they answer), every exchange and every cut of it reads as the
    /// same lines as read whole.
    #[test]
    fn streamed_a_byte_at_a_time_reads_as_whole() {
        for e in exchanges() {
            let (c, s) = (e.opener_bytes(), e.acceptor_bytes());
            for cut in [s.len(), s.len() / 2, 1] {
                let s = &s[..cut.min(s.len())];
                let whole = flow_of(c.clone(), s.to_vec());
                let mut want = Vec::new();
                tcp_lines(&whole, &mut want);
                let mut decoder = FlowDecoder::default();
                let mut got = Vec::new();
                for k in 0..=c.len().max(s.len()) {
                    let part = flow_of(c[..k.min(c.len())].to_vec(), s[..k.min(s.len())].to_vec());
                    decoder.advance(part.view(), false, &mut got);
                }
                decoder.advance(whole.view(), true, &mut got);
                assert_eq!(sides(&got, &whole), sides(&want, &whole), "{cut} {e:?}");
            }
        }
    }

    fn tail(l: &Line) -> String {
        l.to_text()
            .split_once(" -> 192.0.2.10:40000 ")
            .unwrap()
            .1
            .to_string()
    }

    /// Every answer fixture reads as one line per piece, gathered answers in one line,
    /// nothing malformed.
    #[test]
    fn every_answer_fixture_decodes_line_by_piece() {
        let gathered = [
            "count",
            "client-record",
            "server-record",
            "journal-count",
            "journal-line",
            "dir-record",
            "dir-end",
        ];
        for e in exchanges().iter().filter(|e| !e.acceptor.is_empty()) {
            let lines = answer_lines(e, usize::MAX);
            let f = e.acceptor[0];
            let mut kinds: Vec<&str> = f
                .fields
                .iter()
                .filter(|(k, v)| *k == "piece" && *v != "no-update-clock")
                .map(|(_, v)| if gathered.contains(v) { "gathered" } else { v })
                .collect();
            kinds.dedup();
            let got: Vec<&str> = lines
                .iter()
                .map(|l| match l.kind {
                    "list-all-answer"
                    | "ask-for-update-answer"
                    | "directory"
                    | "journal-since-answer" => "gathered",
                    k => k,
                })
                .collect();
            assert_eq!(got, kinds, "{}", f.name);
            for l in &lines {
                assert!(
                    !l.to_text().contains("malformed"),
                    "{}: {}",
                    f.name,
                    tail(l)
                );
            }
        }
    }

    /// The gathered answers and the pieces around them, as text.
    #[test]
    fn gathered_answers_read_as_decode_shows_them() {
        let expect = [
            (
                "tcp/answer/list-all",
                vec!["list-all-answer(2) count=1 records=1 bytes=537"],
            ),
            (
                "tcp/answer/list-all/empty",
                vec!["list-all-answer(2) count=0 records=0 bytes=4"],
            ),
            (
                "tcp/answer/ask-for-update",
                vec!["ask-for-update-answer(4) count=1 records=1 bytes=541"],
            ),
            (
                "tcp/answer/journal-since",
                vec!["journal-since-answer(19) count=1 lines=1 first_line=9 last_line=9"],
            ),
            (
                "tcp/answer/directory",
                vec!["directory(17) records=1 count=1"],
            ),
            (
                "tcp/answer/refusal/store-failure-mid-list",
                vec![
                    "list-all-answer(2) count=2 records=1 cut_by_status=true",
                    "status(7) status=503 request=255 detail=\"store failure while streaming\"",
                ],
            ),
            (
                "tcp/answer/heartbeat/update-clock",
                vec![
                    "update-clock(3) clock=7",
                    "status(7) status=200 request=5 detail=\"durable\"",
                ],
            ),
            (
                "tcp/answer/status",
                vec!["status-text(6) len=25 text=\"name=rendezvous\\nclock=11\\n\""],
            ),
        ];
        let all = exchanges();
        for (name, want) in expect {
            let e = all
                .iter()
                .find(|e| e.acceptor.first().is_some_and(|f| f.name == name))
                .unwrap();
            let got: Vec<String> = answer_lines(e, usize::MAX).iter().map(tail).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    /// Cut anywhere, an answer stream is never `unframed`: its last line says the stream
    /// ends inside an answer, or it ends between answers.
    #[test]
    fn answers_cut_anywhere_end_inside_an_answer_never_unframed() {
        for e in exchanges().iter().filter(|e| !e.acceptor.is_empty()) {
            let len = e.acceptor_bytes().len();
            for cut in 0..len {
                let lines = answer_lines(e, cut);
                for l in &lines {
                    let text = tail(l);
                    assert!(!text.starts_with("unframed"), "{cut}: {text}");
                }
                if let Some(last) = lines.last().filter(|l| l.to_text().contains("malformed")) {
                    assert!(
                        tail(last).ends_with("malformed: the stream ends inside this answer"),
                        "{} cut at {cut}: {}",
                        e.acceptor[0].name,
                        tail(last)
                    );
                }
            }
        }
        // Cut inside the first record of a list: the count and the records read so far.
        let e = exchanges()
            .into_iter()
            .find(|e| {
                e.acceptor
                    .first()
                    .is_some_and(|f| f.name.ends_with("mid-list"))
            })
            .unwrap();
        let lines = answer_lines(&e, 300);
        assert_eq!(
            tail(&lines[0]),
            "list-all-answer(2) count=2 records=0 len=300 malformed: the stream ends inside \
             this answer"
        );
    }

    /// Bytes that are not the answer due end the reading with an `unframed` line.
    #[test]
    fn bytes_not_due_are_unframed() {
        let mut e = exchanges()
            .into_iter()
            .find(|e| {
                e.acceptor
                    .first()
                    .is_some_and(|f| f.name == "tcp/answer/cursor")
            })
            .unwrap();
        e.opener.pop(); // the CursorQuery was never sent
        let lines = answer_lines(&e, usize::MAX);
        assert_eq!(
            tail(&lines[0]),
            "unframed(14) len=9 malformed: bytes that are not the answer due: byte 14 when \
             nothing was asked; the rest of the answers cannot be framed"
        );
    }
}
