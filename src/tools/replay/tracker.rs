//! Following one replayed TCP connection with the wire's codecs: the opener's frames (the
//! hello, then commands of its role, framed by [`command_len`]) and, against what each
//! command asks, the server's answers, read by [`AnswerReader`] (docs/PROTOCOL.md §8.5,
//! §8.7), counted by kind. Frames nothing itself.

use super::tally::TcpCounts;
use crate::wire::tcp::answer::{AnswerPiece, AnswerReader, Asked, PieceKind};
use crate::wire::tcp::{
    command_len, hello_len, Role, CMD_BARRIER, CMD_LIST_ALL, CMD_STATUS_REQUEST, CMD_UPDATE,
};

/// Follows one TCP connection of the replay: frames the opener's bytes (the hello, then
/// commands of its role, with [`command_len`]), tells an [`AnswerReader`] what each command
/// asks, and counts the pieces it reads from the server's bytes: status frames by code, the
/// other answers by kind. Anything it cannot follow is counted as unparsed bytes and ends
/// the following in that direction.
#[derive(Debug)]
pub struct Tracker {
    role: Option<Role>,
    sent: Vec<u8>,
    sent_lost: bool,
    answers: AnswerReader,
    recv: Vec<u8>,
    recv_lost: bool,
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
            answers: AnswerReader::new(),
            recv: Vec::new(),
            recv_lost: false,
            counts: TcpCounts::default(),
        }
    }

    /// True when every answer owed so far has arrived whole and every byte sent was a
    /// whole frame (a HeartBeat's optional UpdateClock is not waited for:
    /// [`AnswerReader::owes`]). False once either direction could not be followed.
    pub fn complete(&self) -> bool {
        !self.sent_lost
            && !self.recv_lost
            && self.sent.is_empty()
            && self.recv.is_empty()
            && !self.answers.owes()
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
            let framed = match self.role {
                None => hello_len(rest),
                Some(role) => command_len(role, rest),
            };
            match framed {
                Ok(Some(n)) => {
                    let first = rest[0];
                    let noted = match self.role {
                        None => self.note_hello(first),
                        Some(role) => self.note_command(role, first),
                    };
                    if !noted {
                        break true;
                    }
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

    /// Notes a whole hello whose role byte is `role` (valid: [`hello_len`] framed it).
    fn note_hello(&mut self, role: u8) -> bool {
        self.role = Role::try_from(role).ok();
        self.counts.hellos += 1;
        self.role.is_some()
    }

    /// Counts a whole command and tells the reader what it asks; false when the reader
    /// tracks too many requests already (the rest cannot be followed).
    fn note_command(&mut self, role: Role, cmd: u8) -> bool {
        let c = &mut self.counts;
        match (role, cmd) {
            (_, CMD_BARRIER) => c.barriers += 1,
            (_, CMD_STATUS_REQUEST) => c.status_requests += 1,
            (Role::Client, CMD_UPDATE) => c.updates += 1,
            (Role::Client, CMD_LIST_ALL) => c.list_alls += 1,
            (Role::Client, _) => {} // command_len knows no other
            (Role::Server, _) => c.server_commands += 1,
        }
        match Asked::of_command(role, cmd) {
            Some(asked) => self.answers.ask(asked, ()).is_ok(),
            None => true,
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
            match self.answers.read(&self.recv[pos..]) {
                Ok(Some(p)) => {
                    if !count_piece(&mut self.counts, &p.piece) {
                        break true;
                    }
                    pos += p.len;
                }
                Ok(None) => break false,
                Err(_) => break true,
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
}

/// Counts one piece of the answer stream: status frames by code, contact records, status
/// texts, and every other piece as a frame (a HeartBeat answered with nothing and the count
/// of a ListAll or AskForUpdate answer are not counted). False for a status frame that
/// cannot be read (no code to count it by): the rest is not followed.
fn count_piece(c: &mut TcpCounts, piece: &AnswerPiece<'_>) -> bool {
    match piece {
        AnswerPiece::Status(f) => *c.status.entry(f.status).or_default() += 1,
        AnswerPiece::Malformed {
            kind: PieceKind::Status,
            ..
        } => return false,
        _ => match piece.kind() {
            PieceKind::ClientRecord | PieceKind::ServerRecord => c.records += 1,
            PieceKind::StatusText => c.status_texts += 1,
            PieceKind::Count | PieceKind::NoUpdateClock => {}
            _ => c.frames += 1,
        },
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::{
        ClientCommand, ContactFields, Hello, StatusFrame, CMD_HEARTBEAT, CMD_UPDATE_CLOCK,
        HELLO_LEN,
    };

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

    /// What a tracker should count of an answer fixture's pieces.
    fn counted(f: &crate::wire::fixtures::Fixture) -> TcpCounts {
        let mut c = TcpCounts::default();
        let mut pieces = f.fields.iter().peekable();
        while let Some((k, v)) = pieces.next() {
            match (*k, *v) {
                ("piece", "status") => {
                    let code = pieces.peek().map_or("", |(_, code)| *code);
                    *c.status.entry(code.parse().unwrap()).or_default() += 1;
                }
                ("piece", "client-record" | "server-record") => c.records += 1,
                ("piece", "status-text") => c.status_texts += 1,
                ("piece", "count" | "no-update-clock") => {}
                ("piece", _) => c.frames += 1,
                _ => {}
            }
        }
        c
    }

    #[test]
    fn tracker_follows_every_answer_fixture_byte_by_byte() {
        for e in crate::wire::fixtures::exchanges() {
            let Some(f) = e.acceptor.first() else {
                continue;
            };
            let mut t = Tracker::new();
            t.sent(&e.opener_bytes());
            for b in e.acceptor_bytes() {
                t.received(&[b]);
            }
            assert!(t.complete(), "{}: {t:?}", f.name);
            let want = counted(f);
            let got = &t.counts;
            assert_eq!(
                (&got.status, got.records, got.status_texts, got.frames),
                (&want.status, want.records, want.status_texts, want.frames),
                "{}",
                f.name
            );
            assert_eq!((got.sent_unparsed, got.received_unparsed), (0, 0));
        }
    }
}
