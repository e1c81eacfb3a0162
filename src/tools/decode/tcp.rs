//! TCP lines of the opener's side: the hello, then each frame of its role (docs/PROTOCOL.md
//! §8.2-§8.4, §8.15-§8.17), each read with the wire's codecs ([`crate::wire::tcp`]), noting
//! in order the requests that get an answer (§8.7), which [`super::answers`] then reads.

use super::answers::Answers;
use super::line::{hex, Line};
use crate::tools::capture::{FlowView, TcpFlow};
use crate::wire::tcp::answer::Asked;
use crate::wire::tcp::auth::{AuthProof, ClientProof};
use crate::wire::tcp::dir::{DirRecord, Forward, ForwardBody, RecordBody};
use crate::wire::tcp::nodelist::{NodeEntry, NodeListFrame};
use crate::wire::tcp::{
    self, command_name, ClientCommand, ContactFields, Hello, Role, ServerCommand, HELLO_LEN,
};
use crate::wire::WireError;

/// Time at which the byte at `offset` of a reassembled direction was captured.
pub(super) fn ts_at(chunks: &[(u64, usize)], first_ts: u64, offset: usize) -> u64 {
    match chunks.partition_point(|&(_, o)| o <= offset) {
        0 => first_ts,
        i => chunks[i - 1].0,
    }
}

pub(super) fn contact_fields(line: &mut Line, f: &ContactFields<'_>) {
    line.text("user", f.username)
        .text("contact", f.contact)
        .text("phone", f.phone);
}

/// Lines of one whole TCP connection: the opener's hello and commands, the acceptor's
/// answers.
pub(super) fn tcp_lines(flow: &TcpFlow, out: &mut Vec<Line>) {
    FlowDecoder::default().advance(flow.view(), true, out);
}

/// One TCP connection followed frame by frame as its bytes arrive (docs/PROTOCOL.md §10,
/// streaming): each call reads what has become whole since the last and leaves a frame or
/// answer that is not whole yet for the next; the last call (`last`, when no more bytes
/// will come) reads everything, as [`tcp_lines`] does at once.
#[derive(Default)]
pub(super) struct FlowDecoder {
    /// The opener's role, once its hello is read.
    role: Option<Role>,
    /// Offset in the opener's stream of its next frame.
    pos: usize,
    /// True once the opener's stream cannot be read further (malformed, or cut).
    done: bool,
    /// The requests that get an answer, in the order sent.
    asked: Vec<Asked>,
    answers: Answers,
}

impl FlowDecoder {
    /// Reads what `flow` holds beyond the last call: the opener's frames, then the
    /// acceptor's answers to them; appends a line per frame or answer.
    pub(super) fn advance(&mut self, flow: FlowView<'_>, last: bool, out: &mut Vec<Line>) {
        if !self.done {
            self.opener(flow, last, out);
        }
        // Answers wait for the request they answer unless none can come any more.
        let final_asks = last || self.done;
        self.answers
            .advance(flow, &self.asked, final_asks, last, out);
    }

    /// The opener's hello, then its frames, as far as they are whole.
    fn opener(&mut self, flow: FlowView<'_>, last: bool, out: &mut Vec<Line>) {
        let c2s = |offset: usize| {
            Line::new(
                ts_at(flow.client_chunks, flow.first_ts_us, offset),
                "tcp",
                flow.client,
                flow.server,
            )
        };
        let data = flow.client_data;
        let role = match self.role {
            Some(role) => role,
            None if data.is_empty() => {
                self.done = last;
                return;
            }
            None => {
                let hello = match tcp::hello_len(data) {
                    Ok(Some(n)) => Hello::parse(&data[..n]),
                    Ok(None) if !last => return,
                    Ok(None) => Err(WireError::Truncated),
                    Err(e) => Err(e),
                };
                let mut line = c2s(0);
                line.kind = "hello";
                match hello {
                    Ok(h) => {
                        line.word(
                            "role",
                            match h.role {
                                Role::Server => "server",
                                Role::Client => "client",
                            },
                        )
                        .text("name", h.name);
                        out.push(line);
                        self.role = Some(h.role);
                        self.pos = HELLO_LEN;
                        h.role
                    }
                    Err(e) => {
                        line.num("len", data.len().min(HELLO_LEN) as u64)
                            .malformed(e);
                        out.push(line);
                        self.done = true;
                        return;
                    }
                }
            }
        };
        self.frames(data, role, &c2s, last, out);
    }

    /// The opener's frames from [`Self::pos`] on, as far as they are whole (all of them
    /// when `last`). Done when the stream cannot be read further: a frame that cannot be
    /// framed, or one the stream ends inside when `last`.
    fn frames(
        &mut self,
        data: &[u8],
        role: Role,
        c2s: &dyn Fn(usize) -> Line,
        last: bool,
        out: &mut Vec<Line>,
    ) {
        while self.pos < data.len() {
            let rest = &data[self.pos..];
            let mut line = c2s(self.pos);
            let n = match tcp::command_len(role, rest) {
                Ok(Some(n)) => n,
                Ok(None) if !last => return,
                Ok(None) => {
                    line.kind("truncated", rest[0])
                        .num("len", rest.len() as u64)
                        .malformed("the stream ends inside this frame");
                    out.push(line);
                    self.done = true;
                    return;
                }
                Err(e) => {
                    line.kind("unframed", rest[0])
                        .num("len", rest.len() as u64)
                        .malformed(format!("{e}; the rest of the stream cannot be framed"));
                    out.push(line);
                    self.done = true;
                    return;
                }
            };
            let frame = &rest[..n];
            match role {
                Role::Client => client_command(frame, &mut line, &mut self.asked),
                Role::Server => server_command(frame, &mut line, &mut self.asked),
            }
            out.push(line);
            self.pos += n;
        }
        self.done = last;
    }
}

/// A client-role command; notes the answer it asks for.
pub(super) fn client_command(frame: &[u8], line: &mut Line, asked: &mut Vec<Asked>) {
    let cmd = frame[0];
    line.kind(command_name(Role::Client, cmd).unwrap_or("unknown"), cmd);
    match ClientCommand::parse(frame) {
        Ok(parsed) => {
            match parsed {
                ClientCommand::Update(f) => contact_fields(line, &f),
                ClientCommand::AuthProof(body) => client_proof_fields(body, line),
                _ => {}
            }
            asked.extend(parsed.asked());
        }
        Err(e) => {
            line.malformed(e);
        }
    }
}

/// A server-role command (a federated peer's); notes the answer it asks for.
pub(super) fn server_command(frame: &[u8], line: &mut Line, asked: &mut Vec<Asked>) {
    let cmd = frame[0];
    line.kind(command_name(Role::Server, cmd).unwrap_or("unknown"), cmd);
    match ServerCommand::parse(frame) {
        Ok(parsed) => {
            server_command_fields(&parsed, line);
            asked.extend(parsed.asked());
        }
        Err(e) => {
            line.malformed(e);
        }
    }
}

/// The fields of a parsed server-role command.
fn server_command_fields(parsed: &ServerCommand<'_>, line: &mut Line) {
    match *parsed {
        ServerCommand::Update { clock, ref fields } => {
            line.num("clock", clock);
            contact_fields(line, fields);
        }
        ServerCommand::HeartBeat { health, clock } => {
            match health {
                1 => line.word("health", "ok"),
                2 => line.word("health", "degraded"),
                3 => line.word("health", "draining"),
                h => line.num("health", h),
            };
            line.num("clock", clock);
        }
        ServerCommand::UpdateClock(clock) => {
            line.num("clock", clock);
        }
        ServerCommand::JournalUpdate {
            line: n,
            clock,
            ref fields,
        } => {
            line.num("line", n).num("clock", clock);
            contact_fields(line, fields);
        }
        ServerCommand::CursorQuery { journal_id } => {
            line.word("journal", format!("{journal_id:016x}"));
        }
        ServerCommand::JournalMark { line: n } => {
            line.num("line", n);
        }
        ServerCommand::NodeList(f) => node_list_fields(f, line),
        ServerCommand::DirRecord(body) => dir_record_fields(body, line),
        ServerCommand::Forward(body) => forward_fields(body, line),
        ServerCommand::JournalSince {
            journal_id,
            since,
            limit,
        } => {
            line.word("journal", format!("{journal_id:016x}"))
                .num("since", since)
                .num("limit", limit);
        }
        ServerCommand::AuthProof(body) => auth_proof_fields(body, line),
        ServerCommand::Reconcile(m) => {
            line.num("len", m.len() as u64);
        }
        ServerCommand::DirWant(ids) => {
            line.num("ids", (ids.len() / 32) as u64);
        }
        ServerCommand::AskForUpdate
        | ServerCommand::Barrier
        | ServerCommand::Status
        | ServerCommand::DirRequest
        | ServerCommand::AuthChallenge => {}
    }
}

/// Fields of a Forward body (command 18).
fn forward_fields(body: &[u8], line: &mut Line) {
    let f = match Forward::parse(body) {
        Ok(f) => f,
        Err(e) => {
            line.malformed(e);
            return;
        }
    };
    let kind = match f.body {
        ForwardBody::Punch(_) => "punch",
        ForwardBody::Relay(_) => "relay",
    };
    line.word("kind", kind)
        .num("hops", f.hops)
        .word("id", format!("{:016x}", f.id))
        .word("target", f.target)
        .word("source", f.source);
    match f.body {
        ForwardBody::Punch(addr) => line.word("addr", addr),
        ForwardBody::Relay(e) => line.num("len", e.len() as u64),
    };
}

/// Fields of a client's AuthProof body (command 21, docs/PROTOCOL.md §8.18): the
/// certificate's fingerprint and length and the signature's length.
fn client_proof_fields(body: &[u8], line: &mut Line) {
    match ClientProof::parse(body) {
        Ok(p) => {
            line.word("fingerprint", crate::identity::fingerprint(p.cert).to_hex())
                .num("cert_len", p.cert.len() as u64)
                .num("sig_len", p.signature.len() as u64);
        }
        Err(e) => {
            line.malformed(e);
        }
    }
}

/// Fields of an AuthProof body (command 21): the node entry and the signature's length.
fn auth_proof_fields(body: &[u8], line: &mut Line) {
    match AuthProof::parse(body) {
        Ok(p) => {
            line.word("uid", hex(p.entry.uid()))
                .text("alias", p.entry.alias())
                .text("location", p.entry.location())
                .num("sig_len", p.signature.len() as u64);
        }
        Err(e) => {
            line.malformed(e);
        }
    }
}

/// Fields of a node-list frame (10, 11, 12, 24).
pub(super) fn node_list_fields(frame: &[u8], line: &mut Line) {
    match NodeListFrame::parse(frame) {
        Ok(NodeListFrame::Hash(h)) => {
            line.word("hash", hex(&h));
        }
        Ok(NodeListFrame::List(e) | NodeListFrame::Diff(e)) => {
            line.num("count", e.len() as u64);
            let aliases: Vec<&str> = e.iter().map(NodeEntry::alias).collect();
            line.text("aliases", aliases.join(","));
        }
        Ok(NodeListFrame::Sync { entries, want }) => {
            line.num("count", entries.len() as u64);
            let aliases: Vec<&str> = entries.iter().map(NodeEntry::alias).collect();
            line.text("aliases", aliases.join(","));
            line.num("want", want.len() as u64);
        }
        Err(e) => {
            line.malformed(e);
        }
    }
}

/// Fields of a DirRecord body (command 16).
pub(super) fn dir_record_fields(body: &[u8], line: &mut Line) {
    match DirRecord::parse(body) {
        Ok(r) => {
            line.word(
                "kind",
                match r.body {
                    RecordBody::Registration(_) => "registration",
                    RecordBody::Refresh => "refresh",
                    RecordBody::Expiry => "expiry",
                },
            )
            .num("hops", r.hops)
            .word("fp", r.fingerprint)
            .num("timestamp", r.timestamp)
            .num("age_ms", r.age_ms);
            if let RecordBody::Registration(reg) = r.body {
                line.word("addr", reg.addr)
                    .word("home_uid", super::line::hex(&reg.home_uid))
                    .text("home", reg.home)
                    .num("sig_len", reg.signature.len() as u64)
                    .num("payload_len", reg.payload.len() as u64);
            }
        }
        Err(e) => {
            line.malformed(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_client_session_with_answers() {
        let mut c = vec![2u8];
        c.extend_from_slice(&[0u8; 256]);
        c[1..4].copy_from_slice(b"cli");
        let mut update = vec![0u8; 533];
        update[0] = 1;
        update[1..6].copy_from_slice(b"alice");
        update[257..260].copy_from_slice(b"bob");
        update[513..516].copy_from_slice(b"555");
        c.extend_from_slice(&update);
        c.push(5); // barrier
        c.push(2); // list all
        let mut s = vec![7, 0, 200, 5, 7];
        s.extend_from_slice(b"durable");
        s.extend_from_slice(&[0, 0, 0, 1]);
        s.extend_from_slice(&update);
        let flow = TcpFlow {
            client: addr("127.0.0.1:5000"),
            server: addr("127.0.0.1:4747"),
            first_ts_us: 1,
            client_chunks: vec![(1, 0)],
            client_data: c,
            server_chunks: vec![(2, 0)],
            server_data: s,
            gaps: 0,
        };
        let mut lines = Vec::new();
        tcp_lines(&flow, &mut lines);
        let text: Vec<String> = lines.iter().map(Line::to_text).collect();
        let tails: Vec<&str> = text
            .iter()
            .map(|t| t.split_once(" tcp ").unwrap().1)
            .collect();
        assert_eq!(
            tails,
            [
                "127.0.0.1:5000 -> 127.0.0.1:4747 hello role=client name=\"cli\"",
                "127.0.0.1:5000 -> 127.0.0.1:4747 update(1) user=\"alice\" contact=\"bob\" \
                 phone=\"555\"",
                "127.0.0.1:5000 -> 127.0.0.1:4747 barrier(5)",
                "127.0.0.1:5000 -> 127.0.0.1:4747 list-all(2)",
                "127.0.0.1:4747 -> 127.0.0.1:5000 status(7) status=200 request=5 \
                 detail=\"durable\"",
                "127.0.0.1:4747 -> 127.0.0.1:5000 list-all-answer(2) count=1 records=1 \
                 bytes=537",
            ]
        );
    }
}
