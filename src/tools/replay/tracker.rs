//! Following one replayed TCP connection: the opener's frames (the hello, then commands of
//! its role) and, against what each command is owed, the server's answers
//! (docs/PROTOCOL.md §8.5, §8.7), counted by kind.

use super::tally::TcpCounts;
use crate::wire::tcp::{
    command_len, Role, StatusFrame, CLIENT_RECORD_LEN, CMD_ASK_FOR_UPDATE, CMD_AUTH_CHALLENGE,
    CMD_AUTH_PROOF, CMD_BARRIER, CMD_CURSOR_QUERY, CMD_DIR_RECORD, CMD_DIR_REQUEST, CMD_HEARTBEAT,
    CMD_JOURNAL_SINCE, CMD_JOURNAL_UPDATE, CMD_LIST_ALL, CMD_NODE_LIST, CMD_NODE_LIST_HASH,
    CMD_STATUS, CMD_STATUS_REQUEST, CMD_UPDATE, CMD_UPDATE_CLOCK, HELLO_LEN, JOURNAL_UPDATE_LEN,
    NONCE_LEN, SERVER_RECORD_LEN,
};
use std::collections::VecDeque;

/// What the accepting side owes for one command, in order (PROTOCOL.md §8.5, §8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// A status frame (Barrier, AuthProof).
    Status,
    /// `[count u32]`, then `count` records of this many bytes (ListAll, AskForUpdate).
    List(usize),
    /// `[06][len u32][text]` (Status request).
    Text,
    /// `[03][clock u32]` or nothing (HeartBeat).
    MaybeClock,
    /// One frame of fixed length starting with this byte (CursorQuery, AuthChallenge).
    Fixed(u8, usize),
    /// One node-list frame (NodeListHash -> hash, NodeList -> NodeListDiff).
    NodeFrame,
    /// DirRecord frames, then `[17][len u16 = 4][count u32]` (DirRequest).
    Directory,
    /// `[19][count u32]`, then `count` JournalUpdate frames (JournalSince).
    Journal,
}

/// Where the reader of answers is inside a multi-part answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inside {
    /// At the start of an answer.
    Start,
    /// In a list: this many records of this length still to come.
    List(u32, usize),
    /// In a directory answer, before its closing count frame.
    Directory,
    /// In a journal answer: this many JournalUpdate frames still to come.
    Journal(u32),
}

/// Follows one TCP connection of the replay: frames the opener's bytes (the hello, then
/// commands of its role, with [`command_len`]), notes what each command is owed, and frames
/// the server's bytes against that, counting status frames by code and the other answers
/// by kind. Anything it cannot follow is counted as unparsed bytes and ends the following
/// in that direction.
#[derive(Debug)]
pub struct Tracker {
    role: Option<Role>,
    sent: Vec<u8>,
    sent_lost: bool,
    owed: VecDeque<Owed>,
    recv: Vec<u8>,
    recv_lost: bool,
    inside: Inside,
    /// What was counted so far.
    pub counts: TcpCounts,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// A tracker for a new connection (nothing sent yet).
    pub fn new() -> Self {
        Tracker {
            role: None,
            sent: Vec::new(),
            sent_lost: false,
            owed: VecDeque::new(),
            recv: Vec::new(),
            recv_lost: false,
            inside: Inside::Start,
            counts: TcpCounts::default(),
        }
    }

    /// True when every answer owed so far has arrived whole and every byte sent was a
    /// whole frame (a HeartBeat's optional UpdateClock is not waited for). False once
    /// either direction could not be followed.
    pub fn complete(&self) -> bool {
        !self.sent_lost
            && !self.recv_lost
            && self.sent.is_empty()
            && self.recv.is_empty()
            && self.inside == Inside::Start
            && self.owed.iter().all(|o| *o == Owed::MaybeClock)
    }

    /// Feeds bytes the opener wrote.
    pub fn sent(&mut self, bytes: &[u8]) {
        if self.sent_lost {
            self.counts.sent_unparsed += bytes.len() as u64;
            return;
        }
        self.sent.extend_from_slice(bytes);
        let mut pos = 0;
        let lost = loop {
            let rest = &self.sent[pos..];
            let Some(role) = self.role else {
                if rest.len() < HELLO_LEN {
                    break false;
                }
                match Role::try_from(rest[0]) {
                    Ok(r) => {
                        self.role = Some(r);
                        self.counts.hellos += 1;
                        pos += HELLO_LEN;
                        continue;
                    }
                    Err(_) => break true,
                }
            };
            match command_len(role, rest) {
                Ok(Some(n)) => {
                    let cmd = rest[0];
                    self.note_command(role, cmd);
                    pos += n;
                }
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        self.sent.drain(..pos);
        if lost {
            self.lose_sent();
        }
    }

    fn lose_sent(&mut self) {
        self.sent_lost = true;
        self.counts.sent_unparsed += self.sent.len() as u64;
        self.sent.clear();
    }

    fn note_command(&mut self, role: Role, cmd: u8) {
        let c = &mut self.counts;
        let owed = match (role, cmd) {
            (_, CMD_BARRIER) => {
                c.barriers += 1;
                Some(Owed::Status)
            }
            (_, CMD_STATUS_REQUEST) => {
                c.status_requests += 1;
                Some(Owed::Text)
            }
            (Role::Client, CMD_UPDATE) => {
                c.updates += 1;
                None
            }
            (Role::Client, CMD_LIST_ALL) => {
                c.list_alls += 1;
                Some(Owed::List(CLIENT_RECORD_LEN))
            }
            (Role::Client, _) => None, // command_len knows no other
            (Role::Server, cmd) => {
                c.server_commands += 1;
                match cmd {
                    CMD_HEARTBEAT => Some(Owed::MaybeClock),
                    CMD_ASK_FOR_UPDATE => Some(Owed::List(SERVER_RECORD_LEN)),
                    CMD_CURSOR_QUERY => Some(Owed::Fixed(CMD_CURSOR_QUERY, 9)),
                    CMD_AUTH_CHALLENGE => Some(Owed::Fixed(CMD_AUTH_CHALLENGE, 1 + NONCE_LEN)),
                    CMD_AUTH_PROOF => Some(Owed::Status),
                    CMD_NODE_LIST_HASH | CMD_NODE_LIST => Some(Owed::NodeFrame),
                    CMD_DIR_REQUEST => Some(Owed::Directory),
                    CMD_JOURNAL_SINCE => Some(Owed::Journal),
                    _ => None,
                }
            }
        };
        if let Some(o) = owed {
            self.owed.push_back(o);
        }
    }

    /// Feeds bytes the server sent.
    pub fn received(&mut self, bytes: &[u8]) {
        if self.recv_lost {
            self.counts.received_unparsed += bytes.len() as u64;
            return;
        }
        self.recv.extend_from_slice(bytes);
        let mut pos = 0;
        let lost = loop {
            match self.next_answer(pos) {
                Some(0) => break true,
                Some(n) => pos += n,
                None => break false,
            }
        };
        self.recv.drain(..pos);
        if lost {
            self.lose_recv();
        }
    }

    fn lose_recv(&mut self) {
        self.recv_lost = true;
        self.counts.received_unparsed += self.recv.len() as u64;
        self.recv.clear();
    }

    /// Counts the next whole piece of the answer stream, at `pos` in the buffer: `Some(len)`
    /// to consume, `None` when more bytes are needed, `Some(0)` when the stream cannot be
    /// followed.
    fn next_answer(&mut self, pos: usize) -> Option<usize> {
        let first = *self.recv.get(pos)?;
        if self.inside != Inside::Start {
            return self.inside_answer(pos, first);
        }
        // A HeartBeat answered with nothing: skip it unless an UpdateClock is here.
        while self.owed.front() == Some(&Owed::MaybeClock) && first != CMD_UPDATE_CLOCK {
            self.owed.pop_front();
        }
        if first == CMD_STATUS {
            return self.status_frame(pos);
        }
        let Some(&owed) = self.owed.front() else {
            return Some(0); // bytes nobody asked for
        };
        if owed == Owed::Directory {
            self.owed.pop_front();
            self.inside = Inside::Directory;
            return self.next_answer(pos);
        }
        let n = self.answer_start(owed, pos, first)?;
        if n > 0 {
            self.owed.pop_front();
        }
        Some(n)
    }

    /// The next piece inside a multi-part answer (a record of a list, a journal line, a
    /// directory record or its closing count). A status frame there abandons the answer
    /// (a store failure).
    fn inside_answer(&mut self, pos: usize, first: u8) -> Option<usize> {
        if first == CMD_STATUS {
            return self.status_frame(pos);
        }
        let buf = &self.recv[pos..];
        match self.inside {
            Inside::List(left, rec) => {
                let n = need(buf, rec)?;
                self.counts.records += 1;
                self.inside = countdown(left, |l| Inside::List(l, rec));
                Some(n)
            }
            Inside::Journal(left) if first == CMD_JOURNAL_UPDATE => {
                let n = need(buf, 1 + JOURNAL_UPDATE_LEN)?;
                self.counts.frames += 1;
                self.inside = countdown(left, Inside::Journal);
                Some(n)
            }
            Inside::Directory if matches!(first, CMD_DIR_RECORD | CMD_DIR_REQUEST) => {
                let b = buf.get(1..3)?;
                let n = need(buf, 3 + usize::from(u16::from_be_bytes([b[0], b[1]])))?;
                self.counts.frames += 1;
                if first == CMD_DIR_REQUEST {
                    self.inside = Inside::Start;
                }
                Some(n)
            }
            _ => Some(0),
        }
    }

    /// The first piece of the answer `owed` (the front of the queue), at `pos`: its length
    /// (0 when these bytes are not that answer), `None` when more bytes are needed.
    fn answer_start(&mut self, owed: Owed, pos: usize, first: u8) -> Option<usize> {
        let buf = &self.recv[pos..];
        let n = match owed {
            Owed::Status | Owed::Directory => 0, // a status frame starts with 7
            Owed::List(rec) => {
                let count = be_u32(buf, 0)?;
                if count > 0 {
                    self.inside = Inside::List(count, rec);
                }
                4
            }
            Owed::Text if first == CMD_STATUS_REQUEST => {
                let len = usize::try_from(be_u32(buf, 1)?).unwrap_or(usize::MAX);
                let n = need(buf, 5usize.saturating_add(len))?;
                self.counts.status_texts += 1;
                n
            }
            Owed::MaybeClock => self.frame(need(buf, 5)?),
            Owed::Fixed(cmd, len) if first == cmd => self.frame(need(buf, len)?),
            Owed::NodeFrame => match crate::wire::tcp::nodelist::frame_len(buf) {
                Ok(Some(n)) => self.frame(n),
                Ok(None) => return None,
                Err(_) => 0,
            },
            Owed::Journal if first == CMD_JOURNAL_SINCE => {
                let count = be_u32(buf, 1)?;
                if count > 0 {
                    self.inside = Inside::Journal(count);
                }
                self.frame(5)
            }
            Owed::Text | Owed::Fixed(..) | Owed::Journal => 0,
        };
        Some(n)
    }

    /// Counts one answer frame of `len` bytes; returns `len`.
    fn frame(&mut self, len: usize) -> usize {
        self.counts.frames += 1;
        len
    }

    /// A status frame at the start of the buffer: counted by code. It answers a Barrier or
    /// AuthProof owed; any other status is a refusal, after which the server closes and
    /// owes nothing more.
    fn status_frame(&mut self, pos: usize) -> Option<usize> {
        let buf = &self.recv[pos..];
        let n = match StatusFrame::frame_len(buf) {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(_) => return Some(0),
        };
        let Ok(f) = StatusFrame::parse(&buf[..n]) else {
            return Some(0);
        };
        *self.counts.status.entry(f.status).or_default() += 1;
        if f.status == 200 && self.owed.front() == Some(&Owed::Status) {
            self.owed.pop_front();
        } else if f.status != 200 {
            self.owed.clear();
        }
        self.inside = Inside::Start;
        Some(n)
    }
}

/// `Some(n)` when `buf` holds at least `n` bytes.
fn need(buf: &[u8], n: usize) -> Option<usize> {
    (buf.len() >= n).then_some(n)
}

/// The big-endian u32 at `at`, if `buf` holds it.
fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// What is left of a multi-part answer with `left` parts to come, this one included:
/// `more(left - 1)` while any remain after it, else the start of the next answer.
fn countdown(left: u32, more: impl FnOnce(u32) -> Inside) -> Inside {
    if left > 1 {
        more(left - 1)
    } else {
        Inside::Start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::{ClientCommand, ContactFields, Hello};

    fn emitted(
        len: usize,
        emit: impl FnOnce(&mut [u8]) -> Result<usize, crate::wire::WireError>,
    ) -> Vec<u8> {
        let mut buf = vec![0; len];
        let n = emit(&mut buf).expect("emit");
        buf.truncate(n);
        buf
    }

    fn hello() -> Vec<u8> {
        let h = Hello {
            role: Role::Client,
            name: "cli",
        };
        emitted(h.buffer_len(), |b| h.emit(b))
    }

    fn update(user: &str) -> Vec<u8> {
        let c = ClientCommand::Update(ContactFields {
            username: user,
            contact: "bob",
            phone: "555",
        });
        emitted(c.buffer_len(), |b| c.emit(b))
    }

    fn status_frame(code: u16, request: u8, detail: &str) -> Vec<u8> {
        let f = StatusFrame {
            status: code,
            request,
            detail,
        };
        emitted(f.buffer_len(), |b| f.emit(b))
    }

    #[test]
    fn tracker_follows_updates_barriers_and_lists_in_pieces() {
        let mut t = Tracker::new();
        let mut sent = hello();
        sent.extend(update("alice"));
        sent.push(CMD_BARRIER);
        sent.push(CMD_LIST_ALL);
        sent.push(CMD_STATUS_REQUEST);
        for piece in sent.chunks(100) {
            t.sent(piece);
        }
        assert_eq!(t.counts.hellos, 1);
        assert_eq!(t.counts.updates, 1);
        assert_eq!(t.counts.barriers, 1);
        assert_eq!(t.counts.list_alls, 1);
        assert_eq!(t.counts.status_requests, 1);
        assert!(!t.complete());
        let mut answer = status_frame(200, CMD_BARRIER, "durable");
        answer.extend(2u32.to_be_bytes());
        answer.extend(update("alice"));
        answer.extend(update("carol"));
        let text = b"name=x\nclock=3\n";
        answer.push(CMD_STATUS_REQUEST);
        answer.extend(u32::try_from(text.len()).expect("len").to_be_bytes());
        answer.extend(text);
        for b in &answer {
            assert!(!t.complete());
            t.received(std::slice::from_ref(b));
        }
        assert!(t.complete(), "{t:?}");
        assert_eq!(t.counts.status.get(&200), Some(&1));
        assert_eq!(t.counts.records, 2);
        assert_eq!(t.counts.status_texts, 1);
        assert_eq!(t.counts.received_unparsed, 0);
    }

    #[test]
    fn tracker_counts_a_refusal_and_owes_nothing_after_it() {
        let mut t = Tracker::new();
        t.sent(&hello());
        t.sent(&[CMD_LIST_ALL, CMD_BARRIER]);
        t.received(&status_frame(503, 0xFF, "store failure while streaming"));
        assert!(t.complete());
        assert_eq!(t.counts.status.get(&503), Some(&1));
        // A bad hello: 400 for request 0.
        let mut t = Tracker::new();
        let mut bad = hello();
        bad[0] = 9;
        t.sent(&bad);
        assert_eq!(t.counts.sent_unparsed, HELLO_LEN as u64);
        t.received(&status_frame(400, 0, "malformed hello"));
        assert_eq!(t.counts.status.get(&400), Some(&1));
        assert!(!t.complete(), "what was sent could not be followed");
    }

    #[test]
    fn tracker_handles_heartbeats_with_and_without_update_clock() {
        let mut t = Tracker::new();
        let mut h = hello();
        h[0] = 1; // server role
        t.sent(&h);
        t.sent(&[CMD_HEARTBEAT, 1, 0, 0, 0, 9, CMD_BARRIER]);
        t.sent(&[CMD_HEARTBEAT, 1, 0, 0, 0, 1, CMD_BARRIER]);
        assert_eq!(t.counts.server_commands, 2);
        t.received(&status_frame(200, CMD_BARRIER, "durable")); // took our clock
        t.received(&[CMD_UPDATE_CLOCK, 0, 0, 0, 9]);
        t.received(&status_frame(200, CMD_BARRIER, "durable"));
        assert!(t.complete(), "{t:?}");
        assert_eq!(t.counts.frames, 1);
        assert_eq!(t.counts.status.get(&200), Some(&2));
    }

    #[test]
    fn tracker_gives_up_on_bytes_nobody_asked_for() {
        let mut t = Tracker::new();
        t.sent(&hello());
        t.received(&[0x42, 1, 2, 3]);
        assert_eq!(t.counts.received_unparsed, 4);
        t.received(&[5]);
        assert_eq!(t.counts.received_unparsed, 5);
        assert!(!t.complete());
    }
}
