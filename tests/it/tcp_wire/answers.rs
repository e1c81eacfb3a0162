//! Answers (docs/PROTOCOL.md §8.5) and the status frame (§8.6): fixtures in both
//! directions, and the status detail's bound.

use rendezvous::wire::tcp::{
    command_len, emit_client_record, emit_count, emit_server_record, emit_update_clock,
    parse_client_record, parse_count, parse_server_record, parse_update_clock, Role, StatusFrame,
    CLIENT_RECORD_LEN, CMD_BARRIER, CMD_UPDATE, COUNT_LEN, MAX_STATUS_LEN, REQUEST_HELLO,
    REQUEST_UNKNOWN, SERVER_RECORD_LEN,
};
use rendezvous::wire::WireError;

use super::{beloin_256, cat, emitted, example_fields, hex, juan_256, phone_20};

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
