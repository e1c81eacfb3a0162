//! Commands of the client and server roles (docs/PROTOCOL.md §8.3, §8.4, §8.13's
//! examples): fixtures in both directions, the command bytes each role has, malformed
//! fields as typed errors, and text that does not fit refused on emit.

use rendezvous::wire::tcp::{
    body_len, command_len, emit_client_record, emit_count, emit_server_record, emit_update_clock,
    is_command, ClientCommand, ContactFields, Role, ServerCommand, CLIENT_UPDATE_LEN,
    CMD_ASK_FOR_UPDATE, CMD_BARRIER, CMD_HEARTBEAT, CMD_LIST_ALL, CMD_STATUS, CMD_STATUS_REQUEST,
    CMD_UPDATE, CMD_UPDATE_CLOCK, HEALTH_DEGRADED, HEALTH_DRAINING, HEALTH_OK, SERVER_UPDATE_LEN,
};
use rendezvous::wire::WireError;

use super::{beloin_256, cat, emitted, example_fields, hex, juan_256, phone_20};

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
