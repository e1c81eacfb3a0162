//! Tests of the TCP-plane wire codecs (`src/wire/tcp/`): byte fixtures written by hand
//! from docs/PROTOCOL.md §8's layouts (§8.13's examples) and checked in both
//! directions; emit-then-parse round trips of every frame; arbitrary and mutated bytes never
//! make a parser or a length function panic, and whatever parses re-emits to the same bytes;
//! a frame cut at any offset is "need more" (`Ok(None)`) from the length functions and
//! `Truncated` from the parsers, never a different frame.

use proptest::prelude::*;
use rendezvous::wire::tcp::{
    body_len, command_len, emit_client_record, emit_count, emit_server_record, emit_update_clock,
    hello_len, is_command, parse_client_record, parse_count, parse_server_record,
    parse_update_clock, ClientCommand, ContactFields, Hello, Role, ServerCommand, StatusFrame,
    CLIENT_RECORD_LEN, CLIENT_UPDATE_LEN, CMD_ASK_FOR_UPDATE, CMD_BARRIER, CMD_HEARTBEAT,
    CMD_LIST_ALL, CMD_STATUS, CMD_STATUS_REQUEST, CMD_UPDATE, CMD_UPDATE_CLOCK, COUNT_LEN,
    HEALTH_DEGRADED, HEALTH_DRAINING, HEALTH_OK, HELLO_LEN, MAX_COMMAND_LEN, MAX_FRAME_LEN,
    MAX_STATUS_LEN, REQUEST_HELLO, REQUEST_UNKNOWN, SERVER_RECORD_LEN, SERVER_UPDATE_LEN,
};
use rendezvous::wire::WireError;

// ---------------------------------------------------------------------------------------
// Fixture helpers
// ---------------------------------------------------------------------------------------

/// Bytes from hand-written hex (whitespace ignored).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd hex fixture");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn zeros(n: usize) -> Vec<u8> {
    vec![0; n]
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// "Beloin", then NUL padding to 256 (an example username).
fn beloin_256() -> Vec<u8> {
    cat(&[hex("42 65 6c 6f 69 6e"), zeros(250)])
}

/// "Juan", then NUL padding to 256.
fn juan_256() -> Vec<u8> {
    cat(&[hex("4a 75 61 6e"), zeros(252)])
}

/// "85999999999" (11 bytes), then NUL padding to 20.
fn phone_20() -> Vec<u8> {
    cat(&[hex("38 35 39 39 39 39 39 39 39 39 39"), zeros(9)])
}

fn example_fields() -> ContactFields<'static> {
    ContactFields {
        username: "Beloin",
        contact: "Juan",
        phone: "85999999999",
    }
}

fn emitted(f: impl Fn(&mut [u8]) -> Result<usize, WireError>) -> Vec<u8> {
    let mut buf = vec![0xAA; 1024];
    let n = f(&mut buf).expect("emit");
    buf.truncate(n);
    buf
}

// ---------------------------------------------------------------------------------------
// Fixtures, both directions
// ---------------------------------------------------------------------------------------

#[test]
fn hello_fixtures() {
    // Client "Beloin".
    let bytes = cat(&[hex("02"), beloin_256()]);
    assert_eq!(bytes.len(), HELLO_LEN);
    let hello = Hello {
        role: Role::Client,
        name: "Beloin",
    };
    assert_eq!(hello_len(&bytes), Ok(Some(257)));
    assert_eq!(Hello::parse(&bytes), Ok(hello));
    assert_eq!(emitted(|b| hello.emit(b)), bytes);
    assert_eq!(hello.buffer_len(), 257);

    // Server "Жюль" (multi-byte UTF-8: D0 96 D1 8E D0 BB D1 8C).
    let bytes = cat(&[hex("01 d0 96 d1 8e d0 bb d1 8c"), zeros(248)]);
    let hello = Hello {
        role: Role::Server,
        name: "Жюль",
    };
    assert_eq!(Hello::parse(&bytes), Ok(hello));
    assert_eq!(emitted(|b| hello.emit(b)), bytes);

    // A name that fills all 256 bytes (no NUL at all) is fine.
    let bytes = cat(&[hex("01"), vec![b'x'; 256]]);
    let name = "x".repeat(256);
    assert_eq!(
        Hello::parse(&bytes),
        Ok(Hello {
            role: Role::Server,
            name: &name
        })
    );

    // Empty name: all padding.
    let bytes = cat(&[hex("02"), zeros(256)]);
    assert_eq!(
        Hello::parse(&bytes),
        Ok(Hello {
            role: Role::Client,
            name: ""
        })
    );
}

#[test]
fn hello_errors() {
    for role in [0x00u8, 0x03, 0x07, 0xff] {
        let bytes = cat(&[vec![role], beloin_256()]);
        assert_eq!(Hello::parse(&bytes), Err(WireError::BadRole), "role {role}");
        assert_eq!(hello_len(&bytes[..1]), Err(WireError::BadRole));
    }
    // "Bel\0in": a NUL followed by text.
    let bytes = cat(&[hex("02 42 65 6c 00 69 6e"), zeros(250)]);
    assert_eq!(Hello::parse(&bytes), Err(WireError::InteriorNul));
    // Invalid UTF-8 (a lone continuation byte).
    let bytes = cat(&[hex("02 42 80"), zeros(254)]);
    assert_eq!(Hello::parse(&bytes), Err(WireError::BadUtf8));
    // A multi-byte character cut by the field's end.
    let bytes = cat(&[hex("02"), vec![b'a'; 255], hex("d0")]);
    assert_eq!(Hello::parse(&bytes), Err(WireError::BadUtf8));
    // Lengths.
    let good = cat(&[hex("02"), beloin_256()]);
    assert_eq!(Hello::parse(&good[..256]), Err(WireError::Truncated));
    assert_eq!(Hello::parse(&[]), Err(WireError::Truncated));
    let long = cat(&[good.clone(), hex("02")]);
    assert_eq!(Hello::parse(&long), Err(WireError::TrailingData));
    // hello_len never looks past the hello.
    assert_eq!(hello_len(&long), Ok(Some(257)));
    assert_eq!(hello_len(&[]), Ok(None));

    // Emit: refused, never cut; nothing written.
    let name = "x".repeat(257);
    let mut buf = [0xAAu8; 300];
    let h = Hello {
        role: Role::Client,
        name: &name,
    };
    assert_eq!(h.emit(&mut buf), Err(WireError::NameTooLong));
    let h = Hello {
        role: Role::Client,
        name: "a\0b",
    };
    assert_eq!(h.emit(&mut buf), Err(WireError::InteriorNul));
    let h = Hello {
        role: Role::Client,
        name: "ok",
    };
    assert_eq!(h.emit(&mut buf[..256]), Err(WireError::BufferTooSmall));
    assert!(buf.iter().all(|&b| b == 0xAA));
}

#[test]
fn role_bytes() {
    assert_eq!(Role::try_from(1), Ok(Role::Server));
    assert_eq!(Role::try_from(2), Ok(Role::Client));
    assert_eq!(Role::try_from(0), Err(WireError::BadRole));
    assert_eq!(u8::from(Role::Server), 1);
    assert_eq!(u8::from(Role::Client), 2);
}

#[test]
fn client_command_fixtures() {
    // 1 Update Beloin / Juan / 85999999999.
    let bytes = cat(&[hex("01"), beloin_256(), juan_256(), phone_20()]);
    assert_eq!(bytes.len(), 1 + CLIENT_UPDATE_LEN);
    let cmd = ClientCommand::Update(example_fields());
    assert_eq!(command_len(Role::Client, &bytes), Ok(Some(533)));
    assert_eq!(ClientCommand::parse(&bytes), Ok(cmd));
    assert_eq!(emitted(|b| cmd.emit(b)), bytes);
    assert_eq!(cmd.buffer_len(), 533);
    assert_eq!(cmd.command_byte(), CMD_UPDATE);

    // 2 ListAll, 5 Barrier.
    for (hx, cmd, byte) in [
        ("02", ClientCommand::ListAll, CMD_LIST_ALL),
        ("05", ClientCommand::Barrier, CMD_BARRIER),
        ("06", ClientCommand::Status, CMD_STATUS_REQUEST),
    ] {
        let bytes = hex(hx);
        assert_eq!(command_len(Role::Client, &bytes), Ok(Some(1)));
        assert_eq!(ClientCommand::parse(&bytes), Ok(cmd));
        assert_eq!(emitted(|b| cmd.emit(b)), bytes);
        assert_eq!(cmd.buffer_len(), 1);
        assert_eq!(cmd.command_byte(), byte);
    }
}

#[test]
fn server_command_fixtures() {
    // 1 Update, clock 11 (docs/PROTOCOL.md §8.13's clock).
    let bytes = cat(&[hex("01 00 00 00 0b"), beloin_256(), juan_256(), phone_20()]);
    assert_eq!(bytes.len(), 1 + SERVER_UPDATE_LEN);
    let cmd = ServerCommand::Update {
        clock: 11,
        fields: example_fields(),
    };
    assert_eq!(command_len(Role::Server, &bytes), Ok(Some(537)));
    assert_eq!(ServerCommand::parse(&bytes), Ok(cmd));
    assert_eq!(emitted(|b| cmd.emit(b)), bytes);

    let cases = [
        (
            "02 01 00 00 00 0b",
            ServerCommand::HeartBeat {
                health: HEALTH_OK,
                clock: 11,
            },
        ),
        (
            "02 03 00 00 01 00",
            ServerCommand::HeartBeat {
                health: HEALTH_DRAINING,
                clock: 256,
            },
        ),
        (
            "02 02 12 34 56 78",
            ServerCommand::HeartBeat {
                health: HEALTH_DEGRADED,
                clock: 0x1234_5678,
            },
        ),
        ("03 ff ff ff ff", ServerCommand::UpdateClock(u32::MAX)),
        ("03 00 00 00 00", ServerCommand::UpdateClock(0)),
        ("04", ServerCommand::AskForUpdate),
        ("05", ServerCommand::Barrier),
        // This project's federation frames (docs/PROTOCOL.md §8).
        ("11 0000", ServerCommand::DirRequest),
        ("10 0003 010203", ServerCommand::DirRecord(&[1, 2, 3])),
        ("10 0000", ServerCommand::DirRecord(&[])),
        ("12 0002 aabb", ServerCommand::Forward(&[0xaa, 0xbb])),
        ("14", ServerCommand::AuthChallenge),
        ("15 0001 09", ServerCommand::AuthProof(&[9])),
        ("16 0002 6100", ServerCommand::Reconcile(&[0x61, 0])),
        ("16 0000", ServerCommand::Reconcile(&[])),
        ("17 0000", ServerCommand::DirWant(&[])),
        (
            "13 0000000000000007 0000000000000064 00001000",
            ServerCommand::JournalSince {
                journal_id: 7,
                since: 100,
                limit: 4096,
            },
        ),
    ];
    for (hx, cmd) in cases {
        let bytes = hex(hx);
        assert_eq!(
            command_len(Role::Server, &bytes),
            Ok(Some(bytes.len())),
            "{hx}"
        );
        assert_eq!(ServerCommand::parse(&bytes), Ok(cmd), "{hx}");
        assert_eq!(emitted(|b| cmd.emit(b)), bytes, "{hx}");
        assert_eq!(cmd.buffer_len(), bytes.len());
        assert_eq!(cmd.command_byte(), bytes[0]);
    }
    assert_eq!(CMD_HEARTBEAT, 2);
    assert_eq!(CMD_UPDATE_CLOCK, 3);
    assert_eq!(CMD_ASK_FOR_UPDATE, 4);
}

#[test]
fn command_bytes_per_role() {
    let client: Vec<u8> = (0..=255u8)
        .filter(|&b| body_len(Role::Client, b).is_some())
        .collect();
    let server: Vec<u8> = (0..=255u8)
        .filter(|&b| body_len(Role::Server, b).is_some())
        .collect();
    assert_eq!(client, [1, 2, 5, 6, 20]);
    assert_eq!(server, [1, 2, 3, 4, 5, 6, 13, 14, 15, 19, 20]);
    // A client's proof (21) carries its own length, as a server's does.
    let client_all: Vec<u8> = (0..=255u8)
        .filter(|&b| is_command(Role::Client, b))
        .collect();
    assert_eq!(client_all, [1, 2, 5, 6, 20, 21]);
    // Frames that carry their own length: node list (10-12), directory, forward, proof,
    // reconcile (22), directory wants (23), node sync (24).
    let all: Vec<u8> = (0..=255u8)
        .filter(|&b| is_command(Role::Server, b))
        .collect();
    assert_eq!(
        all,
        [1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
    );
    for b in 0..=255u8 {
        let known = is_command(Role::Client, b);
        assert_eq!(
            command_len(Role::Client, &[b]).is_err(),
            !known,
            "client byte {b}"
        );
        assert_eq!(
            ClientCommand::parse(&[b]) == Err(WireError::UnknownCommand),
            !known
        );
        let known = is_command(Role::Server, b);
        assert_eq!(
            command_len(Role::Server, &[b]).is_err(),
            !known,
            "server byte {b}"
        );
        assert_eq!(
            ServerCommand::parse(&[b]) == Err(WireError::UnknownCommand),
            !known
        );
    }
    // HeartBeat (server 2) is ListAll for a client: the role decides the length.
    assert_eq!(command_len(Role::Client, &hex("02 01")), Ok(Some(1)));
    assert_eq!(command_len(Role::Server, &hex("02 01")), Ok(None));
    // An opener never sends a status frame.
    assert_eq!(
        command_len(Role::Client, &[CMD_STATUS]),
        Err(WireError::UnknownCommand)
    );
    assert_eq!(
        command_len(Role::Server, &[CMD_STATUS]),
        Err(WireError::UnknownCommand)
    );
    assert_eq!(command_len(Role::Server, &[]), Ok(None));
}

#[test]
fn malformed_fields_are_typed_errors() {
    let base = cat(&[hex("01"), beloin_256(), juan_256(), phone_20()]);
    // Phone "85\0" then "9": a NUL followed by text.
    let mut bad = base.clone();
    bad[1 + 512 + 2] = 0;
    assert_eq!(ClientCommand::parse(&bad), Err(WireError::InteriorNul));
    // Text after the padding of the contact name, in its last byte.
    let mut bad = base.clone();
    bad[1 + 511] = b'z';
    assert_eq!(ClientCommand::parse(&bad), Err(WireError::InteriorNul));
    // Invalid UTF-8 in the username.
    let mut bad = base.clone();
    bad[1] = 0xff;
    assert_eq!(ClientCommand::parse(&bad), Err(WireError::BadUtf8));
    // Same in the server role, behind the clock.
    let sbase = cat(&[hex("01 00 00 00 0b"), beloin_256(), juan_256(), phone_20()]);
    let mut bad = sbase.clone();
    bad[5 + 512 + 19] = b'9'; // "85999999999", NUL padding, then "9" in the last byte
    assert_eq!(ServerCommand::parse(&bad), Err(WireError::InteriorNul));
    let mut bad = sbase.clone();
    bad[5 + 256] = 0xc0; // overlong-encoding lead byte: never valid UTF-8
    assert_eq!(ServerCommand::parse(&bad), Err(WireError::BadUtf8));
    // A phone of exactly 20 bytes is fine.
    let mut full = base.clone();
    full[1 + 512..].copy_from_slice(b"+0123456789012345678");
    assert_eq!(
        ClientCommand::parse(&full),
        Ok(ClientCommand::Update(ContactFields {
            username: "Beloin",
            contact: "Juan",
            phone: "+0123456789012345678",
        }))
    );
    // Lengths.
    assert_eq!(
        ClientCommand::parse(&base[..532]),
        Err(WireError::Truncated)
    );
    assert_eq!(
        ClientCommand::parse(&cat(&[base.clone(), hex("00")])),
        Err(WireError::TrailingData)
    );
    assert_eq!(
        ClientCommand::parse(&hex("02 00")),
        Err(WireError::TrailingData)
    );
    assert_eq!(ClientCommand::parse(&[]), Err(WireError::Truncated));
    assert_eq!(
        ServerCommand::parse(&hex("02 01 00 00")),
        Err(WireError::Truncated)
    );
    assert_eq!(ServerCommand::parse(&[]), Err(WireError::Truncated));
    assert_eq!(
        ContactFields::parse(&base[1..]),
        Ok(example_fields()),
        "the fields alone"
    );
}

#[test]
fn emit_refuses_text_that_does_not_fit() {
    let long_name = "é".repeat(129); // 258 bytes
    let name_256 = "é".repeat(128);
    let cases: [(ContactFields<'_>, Result<(), WireError>); 6] = [
        (
            ContactFields {
                username: &long_name,
                contact: "Juan",
                phone: "1",
            },
            Err(WireError::NameTooLong),
        ),
        (
            ContactFields {
                username: "Beloin",
                contact: &long_name,
                phone: "1",
            },
            Err(WireError::NameTooLong),
        ),
        (
            ContactFields {
                username: "Beloin",
                contact: "Juan",
                phone: "123456789012345678901",
            },
            Err(WireError::NameTooLong),
        ),
        (
            ContactFields {
                username: "Bel\0oin",
                contact: "Juan",
                phone: "1",
            },
            Err(WireError::InteriorNul),
        ),
        (
            ContactFields {
                username: "Beloin",
                contact: "Juan",
                phone: "85\09",
            },
            Err(WireError::InteriorNul),
        ),
        (
            ContactFields {
                username: &name_256,
                contact: &name_256,
                phone: "12345678901234567890",
            },
            Ok(()),
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(fields.check(), want);
        let mut buf = [0xAAu8; 600];
        let r1 = ClientCommand::Update(fields).emit(&mut buf).map(|_| ());
        let r2 = ServerCommand::Update { clock: 1, fields }
            .emit(&mut buf)
            .map(|_| ());
        let r3 = emit_client_record(&fields, &mut buf).map(|_| ());
        let r4 = emit_server_record(7, &fields, &mut buf).map(|_| ());
        let r5 = fields.emit(&mut buf).map(|_| ());
        for r in [r1, r2, r3, r4, r5] {
            assert_eq!(r, want);
        }
        if want.is_err() {
            assert!(buf.iter().all(|&b| b == 0xAA), "nothing written on error");
        }
    }
    // Too small a buffer, nothing written.
    let mut buf = [0xAAu8; 536];
    assert_eq!(
        emit_server_record(1, &example_fields(), &mut buf),
        Err(WireError::BufferTooSmall)
    );
    assert_eq!(
        ClientCommand::Update(example_fields()).emit(&mut buf[..532]),
        Err(WireError::BufferTooSmall)
    );
    assert_eq!(
        ClientCommand::Barrier.emit(&mut []),
        Err(WireError::BufferTooSmall)
    );
    assert_eq!(
        emit_update_clock(1, &mut buf[..4]),
        Err(WireError::BufferTooSmall)
    );
    assert_eq!(emit_count(1, &mut buf[..3]), Err(WireError::BufferTooSmall));
    assert!(buf.iter().all(|&b| b == 0xAA));
}

#[test]
fn answer_fixtures() {
    // ListAll answer: count 2, then two client records.
    let count = hex("00 00 00 02");
    assert_eq!(emitted(|b| emit_count(2, b)), count);
    assert_eq!(parse_count(&count), Ok(2));
    assert_eq!(parse_count(&count[..3]), Err(WireError::Truncated));
    assert_eq!(
        parse_count(&hex("00 00 00 02 01")),
        Err(WireError::TrailingData)
    );
    assert_eq!(COUNT_LEN, 4);

    let rec = cat(&[hex("01"), beloin_256(), juan_256(), phone_20()]);
    assert_eq!(rec.len(), CLIENT_RECORD_LEN);
    assert_eq!(emitted(|b| emit_client_record(&example_fields(), b)), rec);
    assert_eq!(parse_client_record(&rec), Ok(example_fields()));
    // A record is a complete client Update: the client role's framing delimits it.
    assert_eq!(command_len(Role::Client, &rec), Ok(Some(533)));
    let mut bad = rec.clone();
    bad[0] = 0x02;
    assert_eq!(parse_client_record(&bad), Err(WireError::UnknownCommand));
    assert_eq!(parse_client_record(&rec[..532]), Err(WireError::Truncated));
    assert_eq!(parse_client_record(&[]), Err(WireError::Truncated));

    // AskForUpdate answer record: clock 0x01020304.
    let rec = cat(&[hex("01 01 02 03 04"), beloin_256(), juan_256(), phone_20()]);
    assert_eq!(rec.len(), SERVER_RECORD_LEN);
    assert_eq!(
        emitted(|b| emit_server_record(0x0102_0304, &example_fields(), b)),
        rec
    );
    assert_eq!(
        parse_server_record(&rec),
        Ok((0x0102_0304, example_fields()))
    );
    assert_eq!(command_len(Role::Server, &rec), Ok(Some(537)));
    let mut bad = rec.clone();
    bad[0] = 0x03;
    assert_eq!(parse_server_record(&bad), Err(WireError::UnknownCommand));
    assert_eq!(
        parse_server_record(&cat(&[rec.clone(), hex("00")])),
        Err(WireError::TrailingData)
    );
    assert_eq!(parse_server_record(&[]), Err(WireError::Truncated));

    // UpdateClock answering a HeartBeat.
    let uc = hex("03 00 00 00 2a");
    assert_eq!(emitted(|b| emit_update_clock(42, b)), uc);
    assert_eq!(parse_update_clock(&uc), Ok(42));
    assert_eq!(
        parse_update_clock(&hex("02 00 00 00 2a")),
        Err(WireError::UnknownCommand)
    );
    assert_eq!(parse_update_clock(&uc[..4]), Err(WireError::Truncated));
    assert_eq!(parse_update_clock(&[]), Err(WireError::Truncated));
}

#[test]
fn status_frame_fixtures() {
    let cases = [
        // Barrier done.
        (
            "07 00 c8 05 00",
            StatusFrame {
                status: 200,
                request: CMD_BARRIER,
                detail: "",
            },
        ),
        // 408 hello timeout, answering the hello.
        (
            "07 01 98 00 02 31 30", // "10"
            StatusFrame {
                status: 408,
                request: REQUEST_HELLO,
                detail: "10",
            },
        ),
        // 503 for an Update: "clock exhausted" (15 bytes).
        (
            "07 01 f7 01 0f 63 6c 6f 63 6b 20 65 78 68 61 75 73 74 65 64",
            StatusFrame {
                status: 503,
                request: CMD_UPDATE,
                detail: "clock exhausted",
            },
        ),
        // 400 for an unknown command, detail "Жюль".
        (
            "07 01 90 ff 08 d0 96 d1 8e d0 bb d1 8c",
            StatusFrame {
                status: 400,
                request: REQUEST_UNKNOWN,
                detail: "Жюль",
            },
        ),
    ];
    for (hx, st) in cases {
        let bytes = hex(hx);
        assert_eq!(
            StatusFrame::frame_len(&bytes),
            Ok(Some(bytes.len())),
            "{hx}"
        );
        assert_eq!(StatusFrame::parse(&bytes), Ok(st), "{hx}");
        assert_eq!(emitted(|b| st.emit(b)), bytes, "{hx}");
        assert_eq!(st.buffer_len(), bytes.len());
    }
    assert_eq!(StatusFrame::FIXED_LEN, 5);

    // Errors.
    assert_eq!(
        StatusFrame::parse(&hex("06 00 c8 05 00")),
        Err(WireError::UnknownCommand)
    );
    assert_eq!(
        StatusFrame::frame_len(&hex("06")),
        Err(WireError::UnknownCommand)
    );
    assert_eq!(
        StatusFrame::parse(&hex("07 00 c8 05 02 6f")),
        Err(WireError::Truncated)
    );
    assert_eq!(
        StatusFrame::parse(&hex("07 00 c8 05 00 00")),
        Err(WireError::TrailingData)
    );
    assert_eq!(
        StatusFrame::parse(&hex("07 00 c8 05 01 ff")),
        Err(WireError::BadUtf8)
    );
    assert_eq!(StatusFrame::parse(&hex("07 00")), Err(WireError::Truncated));
    assert_eq!(StatusFrame::parse(&[]), Err(WireError::Truncated));
    // frame_len never looks past the frame.
    assert_eq!(
        StatusFrame::frame_len(&hex("07 00 c8 05 00 07 01")),
        Ok(Some(5))
    );

    // The detail is cut to 255 bytes at a character boundary: 100 x "é" (200 bytes) +
    // 100 x "€" (300 bytes) -> 200 + 18 x 3 = 254 bytes.
    let detail = format!("{}{}", "é".repeat(100), "€".repeat(100));
    let st = StatusFrame {
        status: 413,
        request: CMD_UPDATE,
        detail: &detail,
    };
    assert_eq!(st.buffer_len(), 5 + 254);
    let bytes = emitted(|b| st.emit(b));
    assert_eq!(bytes.len(), 259);
    assert_eq!(bytes[4], 254);
    let back = StatusFrame::parse(&bytes).unwrap();
    assert_eq!(back.detail, &detail[..254]);
    let mut small = [0xAAu8; 258];
    assert_eq!(st.emit(&mut small), Err(WireError::BufferTooSmall));
    assert!(small.iter().all(|&b| b == 0xAA));
    assert_eq!(MAX_STATUS_LEN, 260);
}

#[test]
fn a_stream_of_frames_is_split_by_command_len() {
    // A client connection: hello, Update, ListAll, Barrier, then half an Update.
    let mut stream = cat(&[hex("02"), beloin_256()]);
    stream.extend(cat(&[hex("01"), beloin_256(), juan_256(), phone_20()]));
    stream.extend(hex("02 05"));
    stream.extend(cat(&[hex("01"), beloin_256()]));
    let n = hello_len(&stream).unwrap().unwrap();
    assert_eq!(Hello::parse(&stream[..n]).unwrap().name, "Beloin");
    let mut rest = &stream[n..];
    let mut got = Vec::new();
    while let Some(n) = command_len(Role::Client, rest).unwrap() {
        got.push(ClientCommand::parse(&rest[..n]).unwrap());
        rest = &rest[n..];
    }
    assert_eq!(
        got,
        [
            ClientCommand::Update(example_fields()),
            ClientCommand::ListAll,
            ClientCommand::Barrier
        ]
    );
    assert_eq!(rest.len(), 257);
}

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

#[test]
fn length_prefixed_frames_are_bounded_and_checked() {
    // `[cmd][len u16]`: the length decides the frame, up to 4096 bytes of body.
    assert_eq!(command_len(Role::Server, &hex("10")), Ok(None));
    assert_eq!(command_len(Role::Server, &hex("10 00")), Ok(None));
    assert_eq!(command_len(Role::Server, &hex("10 0002 aa")), Ok(None));
    assert_eq!(
        command_len(Role::Server, &hex("10 0002 aabb cc")),
        Ok(Some(5))
    );
    let mut max = hex("12 1000");
    max.extend([7u8; 4096]);
    assert_eq!(command_len(Role::Server, &max), Ok(Some(4099)));
    assert_eq!(
        ServerCommand::parse(&max),
        Ok(ServerCommand::Forward(&max[3..]))
    );
    assert_eq!(
        command_len(Role::Server, &hex("12 1001")),
        Err(WireError::BadLength)
    );
    // A reconciliation message (22) may be up to 60,000 bytes, not one more.
    let mut rec = hex("16 ea60");
    rec.extend([0x61u8; 60_000]);
    assert_eq!(command_len(Role::Server, &rec), Ok(Some(60_003)));
    assert_eq!(
        ServerCommand::parse(&rec),
        Ok(ServerCommand::Reconcile(&rec[3..]))
    );
    assert_eq!(command_len(Role::Server, &rec[..60_002]), Ok(None));
    assert_eq!(
        command_len(Role::Server, &hex("16 ea61")),
        Err(WireError::BadLength)
    );
    let (long, mut buf) = (vec![0u8; 60_001], vec![0u8; 70_000]);
    assert_eq!(
        ServerCommand::Reconcile(&long).emit(&mut buf),
        Err(WireError::BadLength)
    );
    // A directory request carries nothing.
    assert_eq!(command_len(Role::Server, &hex("11 0001 00")), Ok(Some(4)));
    assert_eq!(
        ServerCommand::parse(&hex("11 0001 00")),
        Err(WireError::BadLength)
    );
    // None of them exists for a client (21, the proof, does: docs/PROTOCOL.md §8.18).
    for b in [0x10, 0x11, 0x12, 0x13, 0x0a, 0x16] {
        assert_eq!(
            command_len(Role::Client, &[b, 0, 0]),
            Err(WireError::UnknownCommand)
        );
    }
    // A node-list hash frame is 0a, its length, the hash; any length frames, only 64 parses
    // as a hash (the core refuses the others with 400).
    let mut h = hex("0a 40");
    h.extend([0x11; 64]);
    assert_eq!(command_len(Role::Server, &h), Ok(Some(66)));
    assert_eq!(ServerCommand::parse(&h), Ok(ServerCommand::NodeList(&h)));
    let short = hex("0a 03 010203");
    assert_eq!(command_len(Role::Server, &short), Ok(Some(5)));
}

/// The public fixtures (`rendezvous::wire::fixtures`), read as any reader of the protocol
/// reads them: every datagram, hello, command and answer parses whole with the public
/// codecs, under the name its `type`, `command` or `piece` fields give.
#[test]
fn public_fixtures_read_with_the_public_codecs() {
    use rendezvous::wire::fixtures::{self, Frame};
    use rendezvous::wire::tcp::answer::AnswerReader;
    use rendezvous::wire::tcp::command_name;
    use rendezvous::wire::udp::Payload;
    use rendezvous::wire::Root;
    let mut seen = 0;
    for f in fixtures::all() {
        let bytes = f.bytes();
        match f.frame {
            Frame::Datagram => {
                let root = Root::parse(&bytes).expect(f.name);
                assert!(
                    Payload::parse(root.packet_type, root.payload).is_ok(),
                    "{}",
                    f.name
                );
                assert_eq!(f.field("type"), Some(root.packet_type.name()), "{}", f.name);
            }
            Frame::Hello => {
                assert_eq!(hello_len(&bytes), Ok(Some(bytes.len())), "{}", f.name);
                assert!(Hello::parse(&bytes).is_ok(), "{}", f.name);
            }
            Frame::Command(role) => {
                assert_eq!(
                    command_len(role, &bytes),
                    Ok(Some(bytes.len())),
                    "{}",
                    f.name
                );
                assert_eq!(
                    f.field("command"),
                    command_name(role, bytes[0]),
                    "{}",
                    f.name
                );
                let parsed = match role {
                    Role::Client => ClientCommand::parse(&bytes).map(|_| ()),
                    Role::Server => ServerCommand::parse(&bytes).map(|_| ()),
                };
                assert_eq!(parsed, Ok(()), "{}", f.name);
            }
            Frame::Answer(asked) => {
                let mut reader = AnswerReader::new();
                for a in asked {
                    reader.ask(*a, ()).unwrap();
                }
                let (mut at, mut names) = (0, Vec::new());
                while let Some(p) = reader.read(&bytes[at..]).expect(f.name) {
                    names.push(p.piece.kind().name());
                    at += p.len;
                }
                assert_eq!(at, bytes.len(), "{}", f.name);
                let want: Vec<&str> = f
                    .fields
                    .iter()
                    .filter(|(k, _)| *k == "piece")
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(names, want, "{}", f.name);
            }
        }
        seen += 1;
    }
    assert!(seen >= 60, "{seen} fixtures");
}
