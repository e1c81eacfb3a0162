//! Every answer kind read from hand-written bytes, whole and cut at every offset, emitted
//! back byte for byte; refusals, malformed pieces, errors and bounds; arbitrary bytes never
//! make the reader panic.

use super::*;
use crate::wire::tcp::{ContactFields, StatusFrame};
use crate::wire::WireError;
use proptest::prelude::*;

/// `text` NUL-padded to `width` bytes.
fn padded(text: &str, width: usize) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.resize(width, 0);
    v
}

/// The 532 bytes of contact fields.
fn fields(user: &str, contact: &str, phone: &str) -> Vec<u8> {
    [padded(user, 256), padded(contact, 256), padded(phone, 20)].concat()
}

/// A status frame's bytes.
fn status(code: u16, request: u8, detail: &str) -> Vec<u8> {
    let mut v = vec![7];
    v.extend_from_slice(&code.to_be_bytes());
    v.push(request);
    v.push(detail.len() as u8);
    v.extend_from_slice(detail.as_bytes());
    v
}

/// What one read gave: the piece (debug text, so that pieces of different buffers
/// compare), its length and outcome.
type Seen = (Option<Asked>, String, usize, Outcome<usize>);

fn seen(p: &Piece<'_, usize>) -> Seen {
    (p.asked, format!("{:?}", p.piece), p.len, p.outcome)
}

fn reader(asked: &[Asked]) -> AnswerReader<usize> {
    let mut r = AnswerReader::new();
    for (i, a) in asked.iter().enumerate() {
        r.ask(*a, i).unwrap();
    }
    r
}

/// Reads `bytes` after asking `asked`: first only `bytes[..cut]`, then all of it. Checks
/// that no piece reaches past what was given and that each well-formed piece emits back
/// to exactly its bytes. Returns every piece and where the reader stopped.
fn read_cut(asked: &[Asked], bytes: &[u8], cut: usize) -> (Vec<Seen>, usize) {
    let mut r = reader(asked);
    let mut out = Vec::new();
    let mut at = 0;
    for end in [cut, bytes.len()] {
        while let Some(p) = r.read(&bytes[at..end]).unwrap() {
            assert!(at + p.len <= end, "a piece past the cut at {cut}");
            check_emit(&p.piece, &bytes[at..at + p.len]);
            out.push(seen(&p));
            at += p.len;
        }
    }
    (out, at)
}

/// A well-formed piece writes back its own bytes.
fn check_emit(piece: &AnswerPiece<'_>, bytes: &[u8]) {
    if let AnswerPiece::Malformed { .. } = piece {
        return;
    }
    assert_eq!(piece.buffer_len(), bytes.len(), "{piece:?}");
    let mut out = vec![0u8; bytes.len()];
    assert_eq!(piece.emit(&mut out), Ok(bytes.len()), "{piece:?}");
    assert_eq!(out, bytes, "{piece:?}");
}

/// Reads the answer whole, checks the pieces against `want` (debug texts and outcomes),
/// then cut at every offset, which must read the same.
fn check_answer(asked: &[Asked], bytes: &[u8], want: &[(AnswerPiece<'_>, Outcome<usize>)]) {
    let (whole, at) = read_cut(asked, bytes, bytes.len());
    assert_eq!(at, bytes.len(), "the whole answer is read");
    let got: Vec<(String, Outcome<usize>)> = whole.iter().map(|s| (s.1.clone(), s.3)).collect();
    let want: Vec<(String, Outcome<usize>)> =
        want.iter().map(|(p, o)| (format!("{p:?}"), *o)).collect();
    assert_eq!(got, want);
    for cut in 0..bytes.len() {
        assert_eq!(
            read_cut(asked, bytes, cut),
            (whole.clone(), at),
            "cut at {cut}"
        );
    }
}

const ALICE: ContactFields<'static> = ContactFields {
    username: "alice",
    contact: "bob",
    phone: "555",
};

#[test]
fn list_all_record_by_record() {
    let bytes = [
        vec![0, 0, 0, 2, 1],
        fields("alice", "bob", "555"),
        vec![1],
        fields("alice", "carol", "12"),
    ]
    .concat();
    let carol = ContactFields {
        contact: "carol",
        phone: "12",
        ..ALICE
    };
    check_answer(
        &[Asked::ListAll],
        &bytes,
        &[
            (AnswerPiece::Count(2), Outcome::Partial),
            (AnswerPiece::ClientRecord(ALICE), Outcome::Partial),
            (AnswerPiece::ClientRecord(carol), Outcome::Answered(0)),
        ],
    );
}

#[test]
fn empty_list_then_barrier() {
    let bytes = [vec![0, 0, 0, 0], status(200, 5, "durable")].concat();
    check_answer(
        &[Asked::ListAll, Asked::Barrier],
        &bytes,
        &[
            (AnswerPiece::Count(0), Outcome::Answered(0)),
            (
                AnswerPiece::Status(StatusFrame {
                    status: 200,
                    request: 5,
                    detail: "durable",
                }),
                Outcome::Answered(1),
            ),
        ],
    );
}

#[test]
fn ask_for_update_records_carry_clocks() {
    let bytes = [
        vec![0, 0, 0, 1, 1, 0, 0, 0, 11],
        fields("alice", "bob", "555"),
    ]
    .concat();
    check_answer(
        &[Asked::AskForUpdate],
        &bytes,
        &[
            (AnswerPiece::Count(1), Outcome::Partial),
            (
                AnswerPiece::ServerRecord {
                    clock: 11,
                    fields: ALICE,
                },
                Outcome::Answered(0),
            ),
        ],
    );
}

#[test]
fn heartbeat_with_and_without_update_clock() {
    let ok = status(200, 5, "durable");
    let ok_piece = AnswerPiece::Status(StatusFrame {
        status: 200,
        request: 5,
        detail: "durable",
    });
    let asked = [Asked::HeartBeat, Asked::Barrier];
    let with = [vec![3, 0, 0, 0, 7], ok.clone()].concat();
    check_answer(
        &asked,
        &with,
        &[
            (AnswerPiece::UpdateClock(7), Outcome::Answered(0)),
            (ok_piece, Outcome::Answered(1)),
        ],
    );
    check_answer(
        &asked,
        &ok,
        &[
            (AnswerPiece::NoUpdateClock, Outcome::Answered(0)),
            (ok_piece, Outcome::Answered(1)),
        ],
    );
    // A HeartBeat last, with nothing after it yet: nothing is known, nothing is owed.
    let mut r = reader(&[Asked::HeartBeat]);
    assert_eq!(r.read(&[]), Ok(None));
    assert!(!r.owes());
    assert_eq!(r.pending(), 1);
}

#[test]
fn status_text_cursor_nonce_and_proof() {
    let text = "name=a\nclock=3\n";
    let mut bytes = vec![6, 0, 0, 0, text.len() as u8];
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(&[14, 0, 0, 0, 0, 0, 0, 1, 0]);
    bytes.push(20);
    bytes.extend_from_slice(&[0x5a; 32]);
    bytes.extend_from_slice(&status(200, 21, ""));
    check_answer(
        &[
            Asked::Status,
            Asked::CursorQuery,
            Asked::AuthChallenge,
            Asked::AuthProof,
        ],
        &bytes,
        &[
            (AnswerPiece::StatusText(text), Outcome::Answered(0)),
            (AnswerPiece::Cursor(256), Outcome::Answered(1)),
            (AnswerPiece::Nonce(&[0x5a; 32]), Outcome::Answered(2)),
            (
                AnswerPiece::Status(StatusFrame {
                    status: 200,
                    request: 21,
                    detail: "",
                }),
                Outcome::Answered(3),
            ),
        ],
    );
}

#[test]
fn node_list_hash_and_diff() {
    let mut bytes = vec![10, 64];
    bytes.extend_from_slice(&[0xab; 64]);
    // A diff of one entry: uid 16 x 01, version 2, alias "a", location "", key [9].
    let mut diff = vec![12, 0, 0, 0, 1];
    diff.extend_from_slice(&[1; 16]);
    diff.extend_from_slice(&2u64.to_be_bytes());
    diff.extend_from_slice(&[1, b'a', 0, 1, 9]);
    bytes.extend_from_slice(&diff);
    check_answer(
        &[Asked::NodeListHash, Asked::NodeList],
        &bytes,
        &[
            (AnswerPiece::NodeListHash(&[0xab; 64]), Outcome::Answered(0)),
            (AnswerPiece::NodeListDiff(&diff), Outcome::Answered(1)),
        ],
    );
}

/// A refresh DirRecord body (kind 2, hops 1, fingerprint 11.., timestamp 5, age 1000 ms).
fn refresh_body() -> Vec<u8> {
    let mut b = vec![2, 1];
    b.extend_from_slice(&[0x11; 32]);
    b.extend_from_slice(&5u64.to_be_bytes());
    b.extend_from_slice(&1000u32.to_be_bytes());
    b
}

#[test]
fn directory_records_then_end() {
    let body = refresh_body();
    let mut bytes = Vec::new();
    for _ in 0..2 {
        bytes.extend_from_slice(&[16, 0, body.len() as u8]);
        bytes.extend_from_slice(&body);
    }
    bytes.extend_from_slice(&[17, 0, 4, 0, 0, 0, 2]);
    check_answer(
        &[Asked::DirRequest],
        &bytes,
        &[
            (AnswerPiece::DirRecord(&body), Outcome::Partial),
            (AnswerPiece::DirRecord(&body), Outcome::Partial),
            (AnswerPiece::DirEnd(2), Outcome::Answered(0)),
        ],
    );
}

#[test]
fn journal_since_lines() {
    let mut bytes = vec![19, 0, 0, 0, 1, 13];
    bytes.extend_from_slice(&9u64.to_be_bytes());
    bytes.extend_from_slice(&4u32.to_be_bytes());
    bytes.extend_from_slice(&fields("alice", "bob", "555"));
    bytes.extend_from_slice(&[19, 0, 0, 0, 0]);
    check_answer(
        &[Asked::JournalSince, Asked::JournalSince],
        &bytes,
        &[
            (AnswerPiece::JournalCount(1), Outcome::Partial),
            (
                AnswerPiece::JournalLine {
                    line: 9,
                    clock: 4,
                    fields: ALICE,
                },
                Outcome::Answered(0),
            ),
            (AnswerPiece::JournalCount(0), Outcome::Answered(1)),
        ],
    );
}

#[test]
fn refusal_ends_every_answer_owed() {
    // A store failure in the middle of a list: the 503 comes in a record's place.
    let refusal = status(503, 0xff, "store failure while streaming");
    let bytes = [
        vec![0, 0, 0, 3, 1],
        fields("alice", "bob", "555"),
        refusal.clone(),
    ]
    .concat();
    let piece = AnswerPiece::Status(StatusFrame {
        status: 503,
        request: 0xff,
        detail: "store failure while streaming",
    });
    assert!(piece.is_refusal());
    check_answer(
        &[Asked::ListAll, Asked::Barrier, Asked::Status],
        &bytes,
        &[
            (AnswerPiece::Count(3), Outcome::Partial),
            (AnswerPiece::ClientRecord(ALICE), Outcome::Partial),
            (piece, Outcome::Refused),
        ],
    );
    // In place of a count, of a cursor, or of a barrier's 200; and of nothing (a hello).
    for asked in [
        Asked::ListAll,
        Asked::CursorQuery,
        Asked::Barrier,
        Asked::DirRequest,
    ] {
        let mut r = reader(&[asked, Asked::Status]);
        let p = r.read(&refusal).unwrap().unwrap();
        assert_eq!(
            (p.asked, p.len, p.outcome),
            (Some(asked), refusal.len(), Outcome::Refused)
        );
        assert_eq!(r.pending(), 0);
        assert!(!r.owes());
    }
    let hello = status(408, 0, "no complete hello within 10 s");
    let mut r = AnswerReader::<()>::new();
    let p = r.read(&hello).unwrap().unwrap();
    assert_eq!((p.asked, p.outcome), (None, Outcome::Refused));
    // After a refusal nothing more is owed: further bytes are unexpected.
    assert_eq!(r.read(&[0]), Err(WireError::UnexpectedAnswer));
}

#[test]
fn malformed_pieces_are_framed_and_counted() {
    let mut bad = fields("alice", "bob", "555");
    bad[0] = 0xff;
    let bytes = [vec![0, 0, 0, 1, 1], bad, vec![6, 0, 0, 0, 1, 0xff]].concat();
    let (pieces, at) = read_cut(&[Asked::ListAll, Asked::Status], &bytes, bytes.len());
    assert_eq!(at, bytes.len());
    let kinds: Vec<(String, Outcome<usize>)> = pieces.into_iter().map(|s| (s.1, s.3)).collect();
    let malformed = |kind, error| format!("{:?}", AnswerPiece::Malformed { kind, error });
    assert_eq!(
        kinds,
        vec![
            (format!("{:?}", AnswerPiece::Count(1)), Outcome::Partial),
            (
                malformed(PieceKind::ClientRecord, WireError::BadUtf8),
                Outcome::Answered(0)
            ),
            (
                malformed(PieceKind::StatusText, WireError::BadUtf8),
                Outcome::Answered(1)
            ),
        ]
    );
    // A hash of the wrong length, an end frame of the wrong length, a refusal whose detail
    // is not UTF-8 (still a refusal).
    let mut r = reader(&[Asked::NodeListHash, Asked::DirRequest, Asked::Status]);
    let mut short = vec![10, 63];
    short.extend_from_slice(&[0; 63]);
    let p = r.read(&short).unwrap().unwrap();
    assert_eq!((p.piece.kind(), p.len), (PieceKind::NodeListHash, 65));
    assert!(matches!(
        p.piece,
        AnswerPiece::Malformed {
            error: WireError::BadLength,
            ..
        }
    ));
    let p = r.read(&[17, 0, 5, 0, 0, 0, 1, 0]).unwrap().unwrap();
    assert_eq!(
        (p.piece.kind(), p.len, p.outcome),
        (PieceKind::DirEnd, 8, Outcome::Answered(1))
    );
    let p = r.read(&[7, 1, 0x90, 0, 1, 0xff]).unwrap().unwrap();
    assert_eq!(
        (p.piece.kind(), p.outcome),
        (PieceKind::Status, Outcome::Refused)
    );
    assert_eq!(p.piece.emit(&mut [0u8; 8]), Err(WireError::BadUtf8));
}

#[test]
fn bytes_that_are_not_the_answer_due() {
    let err = Err(WireError::UnexpectedAnswer);
    // Nothing asked; a 200 where a count is due; a wrong first byte for a cursor,
    // a nonce, a hash, a journal answer, a directory answer; not a status for a barrier.
    assert_eq!(
        AnswerReader::<()>::new()
            .read(&[0])
            .map(|p| p.map(|p| p.len)),
        err
    );
    let cases: [(Asked, &[u8]); 8] = [
        (Asked::ListAll, &[7, 0, 200, 2, 0]),
        (Asked::CursorQuery, &[15, 0]),
        (Asked::AuthChallenge, &[21]),
        (Asked::NodeListHash, &[12]),
        (Asked::NodeList, &[10]),
        (Asked::JournalSince, &[13]),
        (Asked::DirRequest, &[18, 0, 0]),
        (Asked::Barrier, &[3, 0, 0, 0, 1]),
    ];
    for (asked, bytes) in cases {
        let mut r = reader(&[asked]);
        assert_eq!(r.read(bytes).map(|p| p.map(|p| p.len)), err, "{asked:?}");
        assert_eq!(r.pending(), 1, "an error changes nothing");
    }
    // Inside a journal answer, a byte that starts no line.
    let mut r = reader(&[Asked::JournalSince]);
    assert_eq!(r.read(&[19, 0, 0, 0, 1]).unwrap().unwrap().len, 5);
    assert_eq!(r.remaining(), Some(1));
    assert_eq!(r.read(&[1]).map(|p| p.map(|p| p.len)), err);
}

#[test]
fn bounds() {
    // A status text over 1 MiB and a directory record over 4096 bytes are refused as soon
    // as their length is in; so is a node list of 4097 entries.
    let mut r = reader(&[Asked::Status]);
    assert_eq!(
        r.read(&[6, 0, 0x10, 0, 1]).map(|p| p.map(|p| p.len)),
        Err(WireError::BadLength)
    );
    assert_eq!(
        r.read(&[6, 0, 0x10, 0, 0]).map(|p| p.map(|p| p.len)),
        Ok(None)
    );
    let mut r = reader(&[Asked::DirRequest]);
    assert_eq!(
        r.read(&[16, 0x10, 1]).map(|p| p.map(|p| p.len)),
        Err(WireError::BadLength)
    );
    let mut r = reader(&[Asked::NodeList]);
    assert_eq!(
        r.read(&[12, 0, 0, 0x10, 1]).map(|p| p.map(|p| p.len)),
        Err(WireError::BadLength)
    );
    // At most MAX_PENDING requests await answers.
    let mut r = AnswerReader::new();
    for _ in 0..MAX_PENDING {
        r.ask(Asked::Barrier, ()).unwrap();
    }
    assert_eq!(r.ask(Asked::Barrier, ()), Err(WireError::TooManyPending));
    assert_eq!(r.pending(), MAX_PENDING);
    // Pieces that cannot be written.
    let big = "x".repeat(MAX_STATUS_TEXT_LEN + 1);
    assert_eq!(
        AnswerPiece::StatusText(&big).emit(&mut []),
        Err(WireError::BadLength)
    );
    assert_eq!(
        AnswerPiece::DirRecord(&[0; 4097]).emit(&mut []),
        Err(WireError::BadLength)
    );
    assert_eq!(
        AnswerPiece::NodeListDiff(&[12, 0]).emit(&mut [0; 2]),
        Err(WireError::BadLength)
    );
    assert_eq!(
        AnswerPiece::Cursor(1).emit(&mut [0; 8]),
        Err(WireError::BufferTooSmall)
    );
}

#[test]
fn what_each_command_asks() {
    use crate::wire::tcp::{ClientCommand, Role, ServerCommand};
    assert_eq!(ClientCommand::ListAll.asked(), Some(Asked::ListAll));
    assert_eq!(ClientCommand::Update(ALICE).asked(), None);
    assert_eq!(ServerCommand::Barrier.asked(), Some(Asked::Barrier));
    assert_eq!(ServerCommand::UpdateClock(1).asked(), None);
    assert_eq!(ServerCommand::NodeList(&[12, 0, 0, 0, 0]).asked(), None);
    assert_eq!(
        ServerCommand::NodeList(&[11, 0, 0, 0, 0]).asked(),
        Some(Asked::NodeList)
    );
    let server: Vec<Option<Asked>> = (0..=22)
        .map(|b| Asked::of_command(Role::Server, b))
        .collect();
    let answered = server.iter().filter(|a| a.is_some()).count();
    assert_eq!(answered, 12);
    assert_eq!(Asked::of_command(Role::Client, 4), None);
    assert_eq!(Asked::of_command(Role::Client, 6), Some(Asked::Status));
}

/// Every answer fixture (`crate::wire::fixtures`) reads to its fields and emits back, whole
/// and cut at every offset.
#[test]
fn fixtures_read_alike_cut_anywhere() {
    use crate::wire::fixtures::{all, check::check_where, Frame};
    assert!(check_where(|f| matches!(f.frame, Frame::Answer(_))) > 0);
    for f in all() {
        let Frame::Answer(asked) = f.frame else {
            continue;
        };
        let bytes = f.bytes();
        let whole = read_cut(asked, &bytes, bytes.len());
        assert_eq!(whole.1, bytes.len(), "{}", f.name);
        for cut in 0..bytes.len() {
            assert_eq!(
                read_cut(asked, &bytes, cut),
                whole,
                "{} cut at {cut}",
                f.name
            );
        }
    }
}

/// Every kind of request, for the property tests.
fn any_asked() -> impl Strategy<Value = Asked> {
    prop::sample::select(Asked::ALL.to_vec())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        asked in prop::collection::vec(any_asked(), 0..6),
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut r = reader(&asked);
        let mut at = 0;
        let mut zero_len = 0;
        while let Ok(Some(p)) = r.read(&bytes[at..]) {
            prop_assert!(at + p.len <= bytes.len());
            zero_len = if p.len == 0 { zero_len + 1 } else { 0 };
            prop_assert!(zero_len <= asked.len(), "no endless run of empty pieces");
            at += p.len;
        }
    }

    #[test]
    fn records_split_anywhere_read_the_same(cut in 0usize..1074, n in 0u32..3) {
        let mut bytes = n.to_be_bytes().to_vec();
        for _ in 0..n {
            bytes.push(1);
            bytes.extend_from_slice(&fields("u", "c", "1"));
        }
        let cut = cut.min(bytes.len());
        let (pieces, at) = read_cut(&[Asked::ListAll], &bytes, cut);
        prop_assert_eq!(at, bytes.len());
        prop_assert_eq!(pieces.len(), 1 + n as usize);
    }
}
