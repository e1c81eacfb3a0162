//! UDP lines: each datagram read with the wire's codecs as a Root packet
//! ([`crate::wire::Root`], docs/PROTOCOL.md §2) and its payload by type
//! ([`crate::wire::udp::Payload`], §3), one line per datagram.

use super::line::{hex, Line};
use crate::tools::capture::UdpDatagram;
use crate::wire::stun::{self, Dialect, Stun};
use crate::wire::udp::root::Root;
use crate::wire::udp::{LookupAnswer, LookupStatus, Payload, ServerEvent};

/// One UDP datagram: the Root header, then the payload by type.
pub(super) fn udp_line(d: &UdpDatagram) -> Line {
    let mut line = Line::new(d.ts_us, "udp", d.src, d.dst);
    // STUN on the same port (docs/PROTOCOL.md §11.1) is not a Root packet.
    if let Some(dialect) = stun::classify(&d.payload) {
        return stun_line(line, dialect, &d.payload);
    }
    let root = match Root::parse(&d.payload) {
        Ok(r) => r,
        Err(e) => {
            line.num("len", d.payload.len() as u64).malformed(e);
            return line;
        }
    };
    line.kind(root.packet_type.name(), root.packet_type.into());
    match root.shift_len {
        None => line.word("layout", "plain"),
        Some(k) => line.word("layout", "shifted").num("shift", k),
    };
    line.word("params", format!("0x{:02x}", root.params))
        .num("timestamp", root.timestamp)
        .num("sig_len", root.signature.len() as u64);
    match Payload::parse(root.packet_type, root.payload) {
        Ok(payload) => payload_fields(&payload, &root, &mut line),
        Err(e) => {
            line.num("payload_len", root.payload.len() as u64)
                .malformed(e);
        }
    }
    line
}

/// A STUN datagram (docs/PROTOCOL.md §11): kind `stun`, its message type and dialect.
fn stun_line(mut line: Line, dialect: Dialect, data: &[u8]) -> Line {
    line.kind("stun", data[1]);
    let rfc = match dialect {
        Dialect::Rfc8489 => "8489",
        Dialect::Rfc3489 => "3489",
    };
    line.word("rfc", rfc).num("len", data.len() as u64);
    match Stun::parse(data) {
        Ok(m) => line.word("stun_type", format!("0x{:04x}", m.message_type())),
        Err(e) => line.malformed(e),
    };
    line
}

/// The fields of a payload by type (docs/PROTOCOL.md §3).
fn payload_fields(payload: &Payload<'_>, root: &Root<'_>, line: &mut Line) {
    match payload {
        Payload::Keepalive => {
            line.num("pad", root.payload.len() as u64);
        }
        Payload::Ok(None) => {
            line.flag("empty", true);
        }
        Payload::Ok(Some(ok)) => {
            line.num("keepalive", ok.keepalive_s)
                .num("epoch", ok.boot_epoch)
                .word("public", ok.reflexive);
        }
        Payload::Register(r) => {
            line.word("fp", crate::identity::fingerprint(r.cert))
                .num("cert_len", r.cert.len() as u64)
                .flag("cookie", r.cookie.is_some())
                .flag("unlisted", r.unlisted);
        }
        Payload::ServerEvent(ServerEvent::Punch { peer, addr }) => {
            line.word("event", "punch")
                .word("peer", peer)
                .word("addr", addr);
        }
        Payload::ServerEvent(ServerEvent::Unknown { code, body }) => {
            line.num("code", *code).num("len", body.len() as u64);
        }
        Payload::Relay(r) => {
            let key = if root.from_server() { "from" } else { "to" };
            line.word(key, r.peer).num("len", r.event.len() as u64);
        }
        Payload::Lookup(target) => {
            line.word("target", target);
        }
        Payload::LookupAnswer(a) => lookup_answer_fields(a, line),
        Payload::Error(e) => {
            line.num("status", e.status)
                .num("request", e.request_type)
                .text("detail", e.detail);
        }
        Payload::Fetch => {}
        Payload::Cookie(c) => {
            line.word("cookie", hex(c));
        }
    }
}

/// The fields of a lookup answer (type 6): target, status, address and age, home server.
fn lookup_answer_fields(a: &LookupAnswer<'_>, line: &mut Line) {
    line.word("target", a.target);
    match a.status {
        LookupStatus::Online { addr, age_s } => {
            line.word("status", "online")
                .word("addr", addr)
                .num("age", age_s);
        }
        LookupStatus::Offline { age_s } => {
            line.word("status", "offline").num("age", age_s);
        }
        LookupStatus::Unknown => {
            line.word("status", "unknown");
        }
    }
    line.text("home", a.home);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::udp::parse_lookup;
    use crate::wire::{Fingerprint, PacketType, RootHeader};
    use std::net::SocketAddr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn udp_lookup_line_text_and_json() {
        let payload = RootHeader {
            params: 0x02,
            shift_len: None,
            packet_type: PacketType::Lookup,
            signature: &[],
            timestamp: 1_767_225_600,
        }
        .to_vec(&[0x11; 32])
        .unwrap();
        assert_eq!(
            parse_lookup(&payload[12..]).unwrap(),
            Fingerprint([0x11; 32])
        );
        let d = UdpDatagram {
            ts_us: 1_767_225_600_000_000,
            src: addr("127.0.0.1:5000"),
            dst: addr("127.0.0.1:4747"),
            payload,
            to_server: true,
        };
        let line = udp_line(&d);
        assert_eq!(
            line.to_text(),
            format!(
                "2026-01-01T00:00:00.000000Z udp 127.0.0.1:5000 -> 127.0.0.1:4747 lookup(5) \
                 layout=plain params=0x02 timestamp=1767225600 sig_len=0 target={}",
                "11".repeat(32)
            )
        );
        let v: serde_json::Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(v["type"], "lookup");
        assert_eq!(v["type_num"], 5);
        assert_eq!(v["target"], "11".repeat(32));
        assert_eq!(v["proto"], "udp");
        let bad = udp_line(&UdpDatagram {
            payload: vec![0x08],
            ..d
        });
        assert!(bad
            .to_text()
            .ends_with("-> 127.0.0.1:4747 len=1 malformed: params byte has reserved bits set"));
    }
}
