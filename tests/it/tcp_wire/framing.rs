//! Framing: a stream of frames split by the length functions, and length-prefixed frames
//! bounded and checked (docs/PROTOCOL.md §8.11's bounds).

use rendezvous::wire::tcp::{command_len, hello_len, ClientCommand, Hello, Role, ServerCommand};
use rendezvous::wire::WireError;

use super::{beloin_256, cat, example_fields, hex, juan_256, phone_20};

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
