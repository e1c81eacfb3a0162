//! The emitter of outgoing datagrams: builds each server packet (params 0x01, unsigned,
//! docs/PROTOCOL.md §2.5) in one reply buffer, with fresh junk for shifted layouts (§2.2),
//! holds every reply to its size limit (no amplification, §5.5) and cuts error details to
//! fit (§4.2). It keeps the datagrams-out, dropped and error counters; it never decides
//! what to answer.

use super::stats::EmitStats;
use super::Out;
use crate::core::logs::ClientAddr;
use crate::wire::name::cut_utf8;
use crate::wire::stun::Response as StunResponse;
use crate::wire::udp::root::{MAX_DATAGRAM, PARAM_FROM_SERVER};
use crate::wire::udp::{ErrorReply, Payload};
use crate::wire::{PacketType, RootHeader, WireError};
use std::net::SocketAddr;

/// A refusal: the status of the type-7 error to send (docs/PROTOCOL.md §4.1) and its detail
/// text (at most 255 bytes on the wire, and cut further to fit the reply's limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) detail: &'static str,
}

impl Refusal {
    pub(super) fn new(status: u16, detail: &'static str) -> Self {
        Refusal { status, detail }
    }
}

/// The detail text of a refusal for a malformed packet (docs/PROTOCOL.md §4.1).
pub(super) fn wire_detail(e: WireError) -> &'static str {
    match e {
        WireError::Truncated => "malformed: packet ends inside a field",
        WireError::TrailingData => "malformed: trailing bytes after the last field",
        WireError::TooLarge => "datagram larger than 1400 bytes",
        WireError::BadParams => "malformed: reserved params bits set",
        WireError::BadLength => "malformed: a length field does not fit",
        WireError::BadFlags => "malformed: register flags byte must be 0x01 (unlisted)",
        WireError::UnknownType => "unknown packet type",
        _ => "malformed",
    }
}

/// Whom a refusal answers and how: the request's source and layout, the most bytes the
/// answer may have (see [`reply_limit`]), and the request's type byte (0xFF when the Root
/// packet itself was unreadable, docs/PROTOCOL.md §4.1).
#[derive(Debug, Clone, Copy)]
pub(super) struct Req {
    pub(super) src: SocketAddr,
    pub(super) shift: Option<u8>,
    pub(super) limit: usize,
    pub(super) ty: u8,
}

/// How large a reply to a source may be, bytes: 1400 for an address-checked (registered)
/// source, else no larger than its request (docs/PROTOCOL.md §5.5).
pub(super) fn reply_limit(address_checked: bool, request_len: usize) -> usize {
    if address_checked {
        MAX_DATAGRAM
    } else {
        request_len.min(MAX_DATAGRAM)
    }
}

/// Bytes on the wire of the server packet carrying `payload` in layout `shift`.
pub(super) fn packet_len(shift: Option<u8>, payload: &Payload<'_>) -> usize {
    header(shift, payload.packet_type(), 0).len() + payload.buffer_len()
}

fn header(shift: Option<u8>, packet_type: PacketType, timestamp: u64) -> RootHeader<'static> {
    RootHeader {
        params: PARAM_FROM_SERVER,
        shift_len: shift,
        packet_type,
        signature: &[],
        timestamp,
    }
}

/// Writes server packets into one 1400-byte buffer and hands them to `out`.
pub(super) struct Emitter {
    buf: Box<[u8; MAX_DATAGRAM]>,
    /// State of the junk bytes of shifted layouts (from the seed; never 0).
    junk: u64,
    stats: EmitStats,
}

impl Emitter {
    /// An emitter whose shifted-layout junk starts from `junk` (odd, from the seed).
    pub(super) fn new(junk: u64) -> Self {
        Emitter {
            buf: Box::new([0; MAX_DATAGRAM]),
            junk,
            stats: EmitStats::default(),
        }
    }

    /// Counters so far.
    pub(super) fn stats(&self) -> &EmitStats {
        &self.stats
    }

    /// Counts a datagram dropped without an answer (decided elsewhere: a server's packet,
    /// a reply type, a budget, a full queue).
    pub(super) fn drop_one(&mut self) {
        self.stats.dropped += 1;
    }

    /// Emits a server packet of `payload` to `dst` in layout `shift`, timestamped
    /// `now_unix`, if the whole packet fits in `limit` bytes (and 1400); returns whether it
    /// was sent. A packet that does not fit is dropped and counted.
    pub(super) fn send(
        &mut self,
        out: &mut Out<'_>,
        now_unix: u64,
        dst: SocketAddr,
        shift: Option<u8>,
        payload: &Payload<'_>,
        limit: usize,
    ) -> bool {
        let header = header(shift, payload.packet_type(), now_unix);
        let total = header.len() + payload.buffer_len();
        if total > limit.min(MAX_DATAGRAM) {
            self.stats.dropped += 1;
            return false;
        }
        let Ok(h) = header.emit(&mut self.buf[..], &mut self.junk) else {
            self.stats.dropped += 1;
            return false;
        };
        match payload.emit(&mut self.buf[h..total]) {
            Ok(n) => {
                out(dst, &self.buf[..h + n]);
                self.stats.datagrams_out += 1;
                true
            }
            Err(_) => {
                self.stats.dropped += 1;
                false
            }
        }
    }

    /// Emits STUN `response` to `dst` (docs/PROTOCOL.md §11) if it fits in `limit` bytes
    /// (and 1400); returns whether it was sent. Written into the reply buffer, like every
    /// server packet: no allocation.
    pub(super) fn send_stun(
        &mut self,
        out: &mut Out<'_>,
        dst: SocketAddr,
        response: &StunResponse<'_>,
        limit: usize,
    ) -> bool {
        if response.len() > limit.min(MAX_DATAGRAM) {
            self.stats.dropped += 1;
            return false;
        }
        match response.emit(&mut self.buf[..]) {
            Ok(n) => {
                out(dst, &self.buf[..n]);
                self.stats.datagrams_out += 1;
                true
            }
            Err(_) => {
                self.stats.dropped += 1;
                false
            }
        }
    }

    /// Answers `req` with the type-7 error of refusal `r` (see [`Self::refuse`]).
    pub(super) fn reject(&mut self, out: &mut Out<'_>, req: Req, r: Refusal) {
        self.refuse(out, req, r.status, r.detail);
    }

    /// Answers `req` with a type-7 error of status `code`, its detail cut (at a character
    /// boundary) so the whole reply fits `req.limit` bytes; nothing (counted as dropped)
    /// when not even the 4 fixed bytes fit (docs/PROTOCOL.md §4.2).
    pub(super) fn refuse(&mut self, out: &mut Out<'_>, req: Req, code: u16, detail: &str) {
        let fixed = header(req.shift, PacketType::Error, 0).len();
        let room = req.limit.min(MAX_DATAGRAM).saturating_sub(fixed);
        if room < ErrorReply::FIXED_LEN {
            self.stats.dropped += 1;
            return;
        }
        let detail = cut_utf8(detail, room - ErrorReply::FIXED_LEN);
        let reply = Payload::Error(ErrorReply {
            status: code,
            request_type: req.ty,
            detail,
        });
        // Errors carry timestamp 0: a server packet's timestamp is informational, and an
        // error's bytes then never depend on the clock.
        if self.send(out, 0, req.src, req.shift, &reply, req.limit) {
            self.stats.count_error(code);
            // Per packet, so at trace only; the summary of refusals is logged per interval
            // (`core::logs`).
            tracing::trace!(status = code, request = req.ty, detail, src = %ClientAddr(req.src), "request refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Root;

    const SRC: &str = "192.0.2.1:4000";

    /// Runs `f` with an `out` that collects what the emitter sends.
    fn sent(e: &mut Emitter, f: impl FnOnce(&mut Emitter, &mut Out<'_>)) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        f(e, &mut |dst, bytes| {
            assert_eq!(dst, SRC.parse().unwrap());
            got.push(bytes.to_vec());
        });
        got
    }

    fn req(limit: usize, shift: Option<u8>) -> Req {
        Req {
            src: SRC.parse().unwrap(),
            shift,
            limit,
            ty: 0,
        }
    }

    fn error_of(bytes: &[u8]) -> (u16, String) {
        let root = Root::parse(bytes).unwrap();
        assert!(root.from_server());
        match Payload::parse(root.packet_type, root.payload).unwrap() {
            Payload::Error(e) => (e.status, e.detail.to_string()),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn errors_are_cut_to_the_limit_and_dropped_when_the_fixed_part_does_not_fit() {
        let mut e = Emitter::new(1);
        let detail = "unknown address: register again";
        // Plain layout: 12 header bytes + 4 fixed bytes + the detail.
        let full = sent(&mut e, |e, out| e.refuse(out, req(1400, None), 404, detail));
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), 12 + 4 + detail.len());
        assert_eq!(error_of(&full[0]), (404, detail.to_string()));
        let cut = sent(&mut e, |e, out| e.refuse(out, req(20, None), 404, detail));
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].len(), 20, "no larger than the request");
        assert_eq!(error_of(&cut[0]), (404, "unkn".to_string()));
        let none = sent(&mut e, |e, out| e.refuse(out, req(15, None), 404, detail));
        assert!(none.is_empty(), "not even the fixed part fits in 15 bytes");
        // Shifted by 1: 13 + 4 header bytes, so 21 bytes hold no detail at all.
        let shifted = sent(&mut e, |e, out| {
            e.refuse(out, req(21, Some(1)), 429, detail)
        });
        assert_eq!(shifted.len(), 1);
        assert_eq!(error_of(&shifted[0]), (429, String::new()));
        let s = e.stats();
        assert_eq!((s.datagrams_out, s.dropped), (3, 1));
        assert_eq!(s.errors, [0, 0, 0, 2, 0, 0, 1, 0]);
    }

    #[test]
    fn packets_over_the_limit_are_dropped_and_shifted_junk_changes() {
        let mut e = Emitter::new(0x1234_5677);
        let cookie = Payload::Cookie([7; 16]);
        let len = packet_len(Some(2), &cookie);
        assert_eq!(len, 13 + 8 + 16);
        let src = SRC.parse().unwrap();
        let over = sent(&mut e, |e, out| {
            assert!(!e.send(out, 5, src, Some(2), &cookie, len - 1));
        });
        assert!(over.is_empty());
        let two = sent(&mut e, |e, out| {
            assert!(e.send(out, 5, src, Some(2), &cookie, len));
            assert!(e.send(out, 5, src, Some(2), &cookie, MAX_DATAGRAM));
        });
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].len(), len);
        assert_ne!(two[0], two[1], "fresh junk in each shifted packet");
        for bytes in &two {
            let root = Root::parse(bytes).unwrap();
            assert_eq!(root.shift_len, Some(2));
            assert_eq!(root.timestamp, 5);
            assert_eq!(
                Payload::parse(root.packet_type, root.payload).unwrap(),
                cookie
            );
        }
        assert_eq!((e.stats().datagrams_out, e.stats().dropped), (2, 1));
        assert_eq!(reply_limit(false, 30), 30);
        assert_eq!(reply_limit(false, 5000), MAX_DATAGRAM);
        assert_eq!(reply_limit(true, 30), MAX_DATAGRAM);
    }
}
