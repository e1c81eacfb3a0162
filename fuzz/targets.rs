// The bodies of the fuzz targets (docs/SECURITY.md, "Fuzzing"), shared by the cargo-fuzz
// targets in `fuzz_targets/` (nightly, libFuzzer) and by the stable smoke test
// `tests/it/fuzz_smoke.rs`, which `include!` this file. Each takes arbitrary bytes and
// must never panic; where a parse succeeds, what it emits must parse back the same.

use rendezvous::core::tcp::{Cidr, TcpAction, TcpConfig, TcpCore};
use rendezvous::core::udp::{UdpConfig, UdpCore};
use rendezvous::core::Now;
use rendezvous::store::{Executor, MemoryStore};
use rendezvous::wire::tcp::answer::{AnswerReader, Asked};
use rendezvous::wire::tcp::auth::AuthProof;
use rendezvous::wire::tcp::dir::{DirRecord, Forward};
use rendezvous::wire::tcp::nodelist::NodeListFrame;
use rendezvous::wire::tcp::{command_len, ClientCommand, Hello, Role, ServerCommand, StatusFrame};
use rendezvous::wire::udp::Payload;
use rendezvous::wire::Root;
use std::net::SocketAddr;

/// A fuzz target: arbitrary bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `cargo fuzz run NAME` knows them.
pub const TARGETS: [(&str, Target); 6] = [
    ("udp_datagram", udp_datagram),
    ("tcp_frames", tcp_frames),
    ("answer_stream", answer_stream),
    ("certificate", certificate),
    ("udp_core", udp_core),
    ("tcp_core", tcp_core),
];

/// A Root packet and its payload: parse, and when both parse, emit and parse again.
pub fn udp_datagram(data: &[u8]) {
    let Ok(root) = Root::parse(data) else {
        return;
    };
    let Ok(payload) = Payload::parse(root.packet_type, root.payload) else {
        return;
    };
    let mut buf = vec![0u8; payload.buffer_len()];
    if let Ok(n) = payload.emit(&mut buf) {
        let again = Payload::parse(root.packet_type, &buf[..n]).expect("emitted payload parses");
        assert_eq!(again, payload, "payload round trip");
    }
}

/// Every TCP frame reader on the same bytes: hello, commands of both roles (framed by
/// `command_len` first), the status frame, node-list frames, DirRecord, Forward and the
/// AuthProof body.
pub fn tcp_frames(data: &[u8]) {
    let _ = Hello::parse(data);
    for role in [Role::Client, Role::Server] {
        if let Ok(Some(n)) = command_len(role, data) {
            let frame = &data[..n];
            match role {
                Role::Client => {
                    if let Ok(c) = ClientCommand::parse(frame) {
                        let mut buf = vec![0u8; c.buffer_len()];
                        if let Ok(m) = c.emit(&mut buf) {
                            assert_eq!(ClientCommand::parse(&buf[..m]), Ok(c));
                        }
                    }
                }
                Role::Server => {
                    if let Ok(c) = ServerCommand::parse(frame) {
                        let mut buf = vec![0u8; c.buffer_len()];
                        if let Ok(m) = c.emit(&mut buf) {
                            assert_eq!(ServerCommand::parse(&buf[..m]), Ok(c));
                        }
                    }
                }
            }
        }
    }
    let _ = StatusFrame::frame_len(data);
    let _ = StatusFrame::parse(data);
    let _ = NodeListFrame::parse(data);
    let _ = DirRecord::parse(data);
    let _ = Forward::parse(data);
    let _ = AuthProof::parse(data);
}

/// The answer stream: the first byte picks up to 4 requests asked, the rest is read as
/// their answers piece by piece.
pub fn answer_stream(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let mut reader: AnswerReader = AnswerReader::new();
    for i in 0..4 {
        let asked = Asked::ALL[usize::from(pick >> (2 * i)) % Asked::ALL.len()];
        let _ = reader.ask(asked, ());
    }
    while let Ok(Some(piece)) = reader.read(rest) {
        if piece.len == 0 {
            break;
        }
        rest = &rest[piece.len..];
    }
}

/// The full certificate check, at a fixed time (2026-01-01).
pub fn certificate(data: &[u8]) {
    let _ = rendezvous::identity::verify_self_signed(data, 1_767_225_600);
}

/// The UDP core's datagram entry on a virtual clock: the bytes are cut into datagrams
/// (`[len u8][source u8][bytes]`), each from one of 4 sources, 100 ms apart.
pub fn udp_core(data: &[u8]) {
    let mut now = Now {
        mono_ms: 1_000,
        unix_s: 1_767_225_600,
    };
    // Small tables, so that building the core does not dominate each run.
    let mut cfg = UdpConfig::default();
    cfg.tables.max_clients = 64;
    cfg.tables.max_offline = 64;
    cfg.tables.max_remote = 64;
    let mut core = UdpCore::new(cfg, [7; 32], now);
    let mut rest = data;
    while let [len, src, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let addr = SocketAddr::from(([192, 0, 2, src % 4], 40_000));
        core.handle_datagram(now, addr, &tail[..n], &mut |_, b| {
            assert!(b.len() <= 1400, "datagram too large");
        });
        rest = &tail[n..];
        now.mono_ms += 100;
        core.handle_timeout(now);
    }
}

/// The TCP core's byte-stream entry with arbitrary chunking: connection 1 (client role
/// unless the first byte is odd) gets a hello, then the bytes in chunks whose sizes come
/// from the bytes themselves; the store requests are carried out by the RAM store.
pub fn tcp_core(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut cfg = TcpConfig::default();
    cfg.peering.allow_peers = vec![Cidr::parse("192.0.2.0/24").expect("cidr")];
    // Bit 1: the open contacts plane; else a client proves its key, and bit 2 decides
    // whether the proof is taken (the certificate check itself is the `certificate`
    // target's).
    cfg.open_contacts = first & 2 == 0;
    let proof_holds = first & 4 == 0;
    let mut core = TcpCore::new(cfg, 1, 0);
    let mut exec = Executor::new(Box::new(MemoryStore::new()));
    let mut hello = vec![if first % 2 == 1 { 1 } else { 2 }];
    hello.extend_from_slice(&[0u8; 256]);
    core.handle_accept(0, 1, SocketAddr::from(([192, 0, 2, 1], 40_000)));
    core.handle_data(0, 1, &hello);
    let mut rest = rest;
    let mut t = 0;
    while !rest.is_empty() {
        let n = (usize::from(rest[0]) % 64 + 1).min(rest.len());
        t += 10;
        core.handle_data(t, 1, &rest[..n]);
        rest = &rest[n..];
        for _ in 0..1000 {
            core.end_turn();
            let reqs = core.drain_store();
            if reqs.is_empty() {
                break;
            }
            for r in reqs {
                if let Some(ev) = exec.execute(r) {
                    core.handle_store(t, ev);
                }
            }
        }
        let out = core.output(1).len();
        core.consumed(t, 1, out);
        while let Some(a) = core.poll_action() {
            if let TcpAction::VerifyClient { conn, .. } = a {
                let r = if proof_holds {
                    Ok([7; 32])
                } else {
                    Err((401, "bad signature".to_string()))
                };
                core.client_verified(t, conn, r);
            }
        }
    }
    core.handle_timeout(t + 200_000);
}
