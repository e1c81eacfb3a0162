//! Properties of every TCP-plane frame: emit-then-parse round trips, a frame cut at any
//! offset is "need more" / `Truncated`, streams split back, oversized text is refused, and
//! arbitrary and mutated bytes never panic and re-emit to the same bytes when they parse.

use proptest::prelude::*;
use rendezvous::wire::tcp::{
    body_len, command_len, emit_client_record, emit_count, emit_server_record, emit_update_clock,
    hello_len, parse_client_record, parse_count, parse_server_record, parse_update_clock,
    ClientCommand, ContactFields, Hello, Role, ServerCommand, StatusFrame, CLIENT_RECORD_LEN,
    CMD_UPDATE, HELLO_LEN, MAX_COMMAND_LEN, MAX_FRAME_LEN, MAX_STATUS_LEN, SERVER_RECORD_LEN,
};
use rendezvous::wire::WireError;

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// UTF-8 text without NUL of at most `max` bytes; often exactly full, often multi-byte.
fn text(max: usize) -> impl Strategy<Value = String> {
    let any_text = proptest::collection::vec(any::<char>(), 0..=max).prop_map(move |cs| {
        let mut s = String::new();
        for c in cs.into_iter().filter(|&c| c != '\0') {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    });
    let full = prop_oneof![Just('x'), Just('é'), Just('€'), Just('😀')].prop_map(move |c| {
        let mut s = String::new();
        while s.len() + c.len_utf8() <= max {
            s.push(c);
        }
        s
    });
    prop_oneof![3 => any_text, 1 => full, 1 => Just(String::new())]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedFields {
    username: String,
    contact: String,
    phone: String,
}

impl OwnedFields {
    fn view(&self) -> ContactFields<'_> {
        ContactFields {
            username: &self.username,
            contact: &self.contact,
            phone: &self.phone,
        }
    }
}

fn fields() -> impl Strategy<Value = OwnedFields> {
    (text(256), text(256), text(20)).prop_map(|(username, contact, phone)| OwnedFields {
        username,
        contact,
        phone,
    })
}

/// Every kind of TCP-plane frame, owned.
#[derive(Debug, Clone)]
enum Frame {
    Hello(Role, String),
    ClientUpdate(OwnedFields),
    ListAll,
    ClientBarrier,
    ServerUpdate(u32, OwnedFields),
    HeartBeat(u8, u32),
    UpdateClock(u32),
    AskForUpdate,
    ServerBarrier,
    Status(u16, u8, String),
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Server), Just(Role::Client)]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (role(), text(256)).prop_map(|(r, n)| Frame::Hello(r, n)),
        fields().prop_map(Frame::ClientUpdate),
        Just(Frame::ListAll),
        Just(Frame::ClientBarrier),
        (any::<u32>(), fields()).prop_map(|(c, f)| Frame::ServerUpdate(c, f)),
        (any::<u8>(), any::<u32>()).prop_map(|(h, c)| Frame::HeartBeat(h, c)),
        any::<u32>().prop_map(Frame::UpdateClock),
        Just(Frame::AskForUpdate),
        Just(Frame::ServerBarrier),
        (any::<u16>(), any::<u8>(), text(255)).prop_map(|(s, r, d)| Frame::Status(s, r, d)),
    ]
}

/// What a reader of `frame` uses to delimit it in a stream.
fn frame_len_of(frame: &Frame, buf: &[u8]) -> Result<Option<usize>, WireError> {
    match frame {
        Frame::Hello(..) => hello_len(buf),
        Frame::ClientUpdate(_) | Frame::ListAll | Frame::ClientBarrier => {
            command_len(Role::Client, buf)
        }
        Frame::Status(..) => StatusFrame::frame_len(buf),
        _ => command_len(Role::Server, buf),
    }
}

fn emit_frame(frame: &Frame, buf: &mut [u8]) -> Result<usize, WireError> {
    match frame {
        Frame::Hello(role, name) => Hello { role: *role, name }.emit(buf),
        Frame::ClientUpdate(f) => ClientCommand::Update(f.view()).emit(buf),
        Frame::ListAll => ClientCommand::ListAll.emit(buf),
        Frame::ClientBarrier => ClientCommand::Barrier.emit(buf),
        Frame::ServerUpdate(clock, f) => ServerCommand::Update {
            clock: *clock,
            fields: f.view(),
        }
        .emit(buf),
        Frame::HeartBeat(health, clock) => ServerCommand::HeartBeat {
            health: *health,
            clock: *clock,
        }
        .emit(buf),
        Frame::UpdateClock(c) => ServerCommand::UpdateClock(*c).emit(buf),
        Frame::AskForUpdate => ServerCommand::AskForUpdate.emit(buf),
        Frame::ServerBarrier => ServerCommand::Barrier.emit(buf),
        Frame::Status(status, request, detail) => StatusFrame {
            status: *status,
            request: *request,
            detail,
        }
        .emit(buf),
    }
}

/// Parses `buf` with the parser for `frame`'s kind and checks it equals `frame`.
fn parse_matches(frame: &Frame, buf: &[u8]) -> Result<bool, WireError> {
    Ok(match frame {
        Frame::Hello(role, name) => Hello::parse(buf)? == Hello { role: *role, name },
        Frame::ClientUpdate(f) => ClientCommand::parse(buf)? == ClientCommand::Update(f.view()),
        Frame::ListAll => ClientCommand::parse(buf)? == ClientCommand::ListAll,
        Frame::ClientBarrier => ClientCommand::parse(buf)? == ClientCommand::Barrier,
        Frame::ServerUpdate(clock, f) => {
            ServerCommand::parse(buf)?
                == ServerCommand::Update {
                    clock: *clock,
                    fields: f.view(),
                }
        }
        Frame::HeartBeat(health, clock) => {
            ServerCommand::parse(buf)?
                == ServerCommand::HeartBeat {
                    health: *health,
                    clock: *clock,
                }
        }
        Frame::UpdateClock(c) => ServerCommand::parse(buf)? == ServerCommand::UpdateClock(*c),
        Frame::AskForUpdate => ServerCommand::parse(buf)? == ServerCommand::AskForUpdate,
        Frame::ServerBarrier => ServerCommand::parse(buf)? == ServerCommand::Barrier,
        Frame::Status(status, request, detail) => {
            StatusFrame::parse(buf)?
                == StatusFrame {
                    status: *status,
                    request: *request,
                    detail,
                }
        }
    })
}

fn emit_vec(frame: &Frame) -> Vec<u8> {
    let mut buf = vec![0u8; 600];
    let n = emit_frame(frame, &mut buf).expect("strategy frames fit");
    buf.truncate(n);
    buf
}

/// Runs every parser and length function on `buf`; whatever parses must re-emit to
/// exactly `buf` (a parse is canonical), and a parse agrees with the framing.
fn check_all_parsers(buf: &[u8]) -> Result<(), TestCaseError> {
    let mut out = vec![0u8; buf.len() + 600];
    let _ = hello_len(buf);
    let _ = StatusFrame::frame_len(buf);
    if let Ok(h) = Hello::parse(buf) {
        let n = h.emit(&mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
        prop_assert_eq!(hello_len(buf), Ok(Some(n)));
    }
    for role in [Role::Client, Role::Server] {
        let framed = command_len(role, buf);
        if let Ok(Some(n)) = framed {
            let bound = if role == Role::Client || body_len(role, buf[0]).is_some() {
                MAX_COMMAND_LEN
            } else {
                MAX_FRAME_LEN
            };
            prop_assert!(n <= buf.len() && n <= bound);
            // The framing and the parser agree on the length: a delimited frame never
            // parses as short, long or unknown.
            let e = match role {
                Role::Client => ClientCommand::parse(&buf[..n]).err(),
                Role::Server => ServerCommand::parse(&buf[..n]).err(),
            };
            prop_assert!(
                !matches!(
                    e,
                    Some(WireError::Truncated)
                        | Some(WireError::TrailingData)
                        | Some(WireError::UnknownCommand)
                ),
                "{:?}",
                e
            );
        }
    }
    if let Ok(c) = ClientCommand::parse(buf) {
        let n = c.emit(&mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
        prop_assert_eq!(command_len(Role::Client, buf), Ok(Some(n)));
    }
    if let Ok(c) = ServerCommand::parse(buf) {
        let n = c.emit(&mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
        prop_assert_eq!(command_len(Role::Server, buf), Ok(Some(n)));
    }
    if let Ok(s) = StatusFrame::parse(buf) {
        let n = s.emit(&mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
        prop_assert_eq!(StatusFrame::frame_len(buf), Ok(Some(n)));
    }
    if let Ok(f) = parse_client_record(buf) {
        let n = emit_client_record(&f, &mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
    }
    if let Ok((clock, f)) = parse_server_record(buf) {
        let n = emit_server_record(clock, &f, &mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
    }
    if let Ok(f) = ContactFields::parse(buf) {
        let n = f.emit(&mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
    }
    if let Ok(c) = parse_count(buf) {
        let n = emit_count(c, &mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
    }
    if let Ok(c) = parse_update_clock(buf) {
        let n = emit_update_clock(c, &mut out).unwrap();
        prop_assert_eq!(&out[..n], buf);
    }
    Ok(())
}

/// A valid frame of any kind with a few bytes overwritten (reaches deep into the fields,
/// which uniformly random bytes rarely do).
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        frame(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    )
        .prop_map(|(f, muts)| {
            let mut b = emit_vec(&f);
            for (i, v) in muts {
                let i = i.index(b.len());
                b[i] = v;
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Emit then parse gives the frame back, and the framing delimits exactly it even with
    /// bytes after it.
    #[test]
    fn round_trip(f in frame(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let bytes = emit_vec(&f);
        prop_assert_eq!(parse_matches(&f, &bytes), Ok(true));
        prop_assert_eq!(frame_len_of(&f, &bytes), Ok(Some(bytes.len())));
        let mut longer = bytes.clone();
        longer.extend(&tail);
        prop_assert_eq!(frame_len_of(&f, &longer), Ok(Some(bytes.len())));
        if !tail.is_empty() {
            prop_assert_eq!(parse_matches(&f, &longer), Err(WireError::TrailingData));
        }
        // A buffer one byte short is refused and left untouched.
        let mut small = vec![0xAAu8; bytes.len() - 1];
        prop_assert_eq!(emit_frame(&f, &mut small), Err(WireError::BufferTooSmall));
        prop_assert!(small.iter().all(|&b| b == 0xAA));
    }

    /// A frame cut at every offset is "need more" from its length function and Truncated
    /// from its parser: never a wrong parse.
    #[test]
    fn cut_at_every_offset_is_incomplete(f in frame()) {
        let bytes = emit_vec(&f);
        for k in 0..bytes.len() {
            let prefix = &bytes[..k];
            prop_assert_eq!(frame_len_of(&f, prefix), Ok(None), "cut at {}", k);
            prop_assert_eq!(parse_matches(&f, prefix), Err(WireError::Truncated), "cut at {}", k);
        }
    }

    /// Records and the other answer pieces round-trip, and cut short are Truncated.
    #[test]
    fn answers_round_trip(clock in any::<u32>(), count in any::<u32>(), f in fields()) {
        let mut buf = [0u8; 600];
        let n = emit_client_record(&f.view(), &mut buf).unwrap();
        prop_assert_eq!(n, CLIENT_RECORD_LEN);
        prop_assert_eq!(parse_client_record(&buf[..n]), Ok(f.view()));
        for k in 0..n {
            prop_assert_eq!(parse_client_record(&buf[..k]), Err(WireError::Truncated));
        }
        let n = emit_server_record(clock, &f.view(), &mut buf).unwrap();
        prop_assert_eq!(n, SERVER_RECORD_LEN);
        prop_assert_eq!(parse_server_record(&buf[..n]), Ok((clock, f.view())));
        for k in 0..n {
            prop_assert_eq!(parse_server_record(&buf[..k]), Err(WireError::Truncated));
        }
        let n = emit_count(count, &mut buf).unwrap();
        prop_assert_eq!(parse_count(&buf[..n]), Ok(count));
        let n = emit_update_clock(clock, &mut buf).unwrap();
        prop_assert_eq!(parse_update_clock(&buf[..n]), Ok(clock));
        prop_assert_eq!(
            ServerCommand::parse(&buf[..n]),
            Ok(ServerCommand::UpdateClock(clock))
        );
    }

    /// Several frames back to back split into the same frames, whatever the chunking.
    #[test]
    fn streams_split_back(
        role in role(),
        frames in proptest::collection::vec(frame(), 1..8),
        chunk in 1usize..700,
    ) {
        let frames: Vec<Frame> = frames
            .into_iter()
            .filter(|f| {
                matches!(
                    (role, f),
                    (Role::Client, Frame::ClientUpdate(_) | Frame::ListAll | Frame::ClientBarrier)
                        | (
                            Role::Server,
                            Frame::ServerUpdate(..)
                                | Frame::HeartBeat(..)
                                | Frame::UpdateClock(_)
                                | Frame::AskForUpdate
                                | Frame::ServerBarrier
                        )
                )
            })
            .collect();
        let stream: Vec<u8> = frames.iter().flat_map(emit_vec).collect();
        // Feed the stream in chunks, as a socket would.
        let mut pending: Vec<u8> = Vec::new();
        let mut got = 0usize;
        for piece in stream.chunks(chunk) {
            pending.extend_from_slice(piece);
            while let Some(n) = command_len(role, &pending).unwrap() {
                prop_assert_eq!(parse_matches(&frames[got], &pending[..n]), Ok(true));
                got += 1;
                pending.drain(..n);
            }
        }
        prop_assert_eq!(got, frames.len());
        prop_assert!(pending.is_empty());
    }

    /// Emitting text longer than its field is refused, never cut.
    #[test]
    fn oversized_text_is_refused(extra in 1usize..40, which in 0usize..4) {
        let long = |w: usize| "a".repeat(w + extra);
        let (u, c, p, n) = match which {
            0 => (long(256), String::new(), String::new(), String::new()),
            1 => (String::new(), long(256), String::new(), String::new()),
            2 => (String::new(), String::new(), long(20), String::new()),
            _ => (String::new(), String::new(), String::new(), long(256)),
        };
        let f = ContactFields { username: &u, contact: &c, phone: &p };
        let mut buf = [0u8; 600];
        if which < 3 {
            prop_assert_eq!(ClientCommand::Update(f).emit(&mut buf), Err(WireError::NameTooLong));
            prop_assert_eq!(
                ServerCommand::Update { clock: 0, fields: f }.emit(&mut buf),
                Err(WireError::NameTooLong)
            );
        } else {
            prop_assert_eq!(
                Hello { role: Role::Client, name: &n }.emit(&mut buf),
                Err(WireError::NameTooLong)
            );
        }
    }

    /// Arbitrary bytes never panic any parser or length function.
    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_all_parsers(&buf)?;
    }

    /// Arbitrary bytes behind each valid leading byte (so the body parsers run).
    #[test]
    fn arbitrary_bodies_never_panic(
        lead in prop_oneof![1u8..=7, Just(0xffu8)],
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut buf = vec![lead];
        buf.extend(body);
        check_all_parsers(&buf)?;
        for role in [Role::Client, Role::Server] {
            if let Ok(Some(n)) = command_len(role, &buf) {
                check_all_parsers(&buf[..n])?;
            }
        }
        if let Ok(Some(n)) = StatusFrame::frame_len(&buf) {
            check_all_parsers(&buf[..n])?;
        }
        if buf.len() >= HELLO_LEN {
            check_all_parsers(&buf[..HELLO_LEN])?;
        }
    }

    /// Valid frames with a few bytes changed: no panic, and anything that still parses is
    /// canonical.
    #[test]
    fn mutated_frames_never_panic(buf in mutated()) {
        check_all_parsers(&buf)?;
    }

    /// The maximum-size status frame: any detail, long or not, emits at most 260 bytes and
    /// parses back to a prefix of itself cut at a character boundary.
    #[test]
    fn status_detail_is_cut_at_a_char_boundary(detail in text(400), status in any::<u16>()) {
        let st = StatusFrame { status, request: CMD_UPDATE, detail: &detail };
        let mut buf = [0u8; MAX_STATUS_LEN];
        let n = st.emit(&mut buf).unwrap();
        prop_assert!(n <= MAX_STATUS_LEN);
        prop_assert_eq!(n, st.buffer_len());
        let back = StatusFrame::parse(&buf[..n]).unwrap();
        prop_assert!(detail.starts_with(back.detail));
        prop_assert!(detail.len() <= 255 || back.detail.len() > 255 - 4);
        prop_assert_eq!(back.detail.len() == detail.len(), detail.len() <= 255);
    }
}
