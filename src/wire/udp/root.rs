//! The Root packet that carries every UDP datagram of the protocol, in both directions,
//! plain or shifted (docs/PROTOCOL.md §2). Big-endian throughout. What it owns: the header
//! fields and the bytes the signature covers; the payload is [`super`]'s.
//!
//! ```text
//! plain (params bit 0x04 clear), header 12 + S bytes:
//!  0        1        2        3        4            4+S           12+S
//!  +--------+--------+--------+--------+---- ... ----+---- ... ----+---- ... ----+
//!  | params |  type  |     sig_len     |  signature  |  timestamp  |  payload    |
//!  |   u8   |   u8   |    u16 (= S)    |   S bytes   | u64 Unix s  | to the end  |
//!  +--------+--------+--------+--------+---- ... ----+---- ... ----+---- ... ----+
//!
//! shifted (params bit 0x04 set), header 13 + 4k + S bytes; each shift is k junk bytes:
//!  0        1           2      3          3+k       5+k        5+2k        5+2k+S
//!  +--------+-----------+------+-- ... ---+---------+-- ... ---+--- ... ---+-- ... ---+
//!  | params | shift_len | type |  shift   | sig_len |  shift   | signature |  shift   |
//!  |   u8   |  u8 (= k) |  u8  |  k bytes |   u16   |  k bytes |  S bytes  |  k bytes |
//!  +--------+-----------+------+-- ... ---+---------+-- ... ---+--- ... ---+-- ... ---+
//!  5+3k+S       13+3k+S    13+4k+S
//!  +--- ... ---+-- ... ---+--- ... ---+
//!  | timestamp |  shift   |  payload  |
//!  | u64       |  k bytes | to the end|
//!  +--- ... ---+-- ... ---+--- ... ---+
//!
//! params bits: 0x01 sender is a server, 0x02 receiver is a server, 0x04 shifted,
//! 0xF8 reserved (must be 0)
//! ```
//! The signature covers exactly `timestamp (8 bytes) || payload` as they appear on the wire
//! (docs/PROTOCOL.md §2.4).

use crate::wire::bytes::take;
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};

/// Largest datagram the protocol accepts, in bytes (larger ones are answered with 413;
/// docs/PROTOCOL.md §2.3).
pub const MAX_DATAGRAM: usize = 1400;

/// `params` bit: the sender is a server.
pub const PARAM_FROM_SERVER: u8 = 0x01;
/// `params` bit: the receiver is a server (clients set it).
pub const PARAM_TO_SERVER: u8 = 0x02;
/// `params` bit: the packet uses the shifted layout.
pub const PARAM_SHIFTED: u8 = 0x04;
const PARAM_KNOWN: u8 = PARAM_FROM_SERVER | PARAM_TO_SERVER | PARAM_SHIFTED;

/// The type byte of a Root packet: an open enum (unknown values are kept, never a panic).
/// Types 0-9 are defined (docs/PROTOCOL.md §3); 10-255 parse and are answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 0, c->s: keepalive.
    Keepalive,
    /// 1, s->c: OK.
    Ok,
    /// 2, c->s: register a certificate.
    Register,
    /// 3, s->c: event from the server itself (punch request).
    ServerEvent,
    /// 4, both ways: relayed opaque event.
    Relay,
    /// 5, c->s: look a fingerprint up.
    Lookup,
    /// 6, s->c: lookup answer.
    LookupAnswer,
    /// 7, s->c: error with an HTTP-like status.
    Error,
    /// 8, c->s: fetch queued events.
    Fetch,
    /// 9, s->c: address-check cookie.
    Cookie,
    /// Any other value.
    Unknown(u8),
}

impl PacketType {
    /// The type's name as this project's tools show it (`keepalive`, `ok`, `register`,
    /// `server-event`, `relay`, `lookup`, `lookup-answer`, `error`, `fetch`, `cookie`;
    /// `unknown` for 10-255; docs/PROTOCOL.md §3).
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Keepalive => "keepalive",
            PacketType::Ok => "ok",
            PacketType::Register => "register",
            PacketType::ServerEvent => "server-event",
            PacketType::Relay => "relay",
            PacketType::Lookup => "lookup",
            PacketType::LookupAnswer => "lookup-answer",
            PacketType::Error => "error",
            PacketType::Fetch => "fetch",
            PacketType::Cookie => "cookie",
            PacketType::Unknown(_) => "unknown",
        }
    }

    /// True for the types only a server sends (1, 3, 6, 7, 9): never answered.
    pub fn is_reply(self) -> bool {
        matches!(
            self,
            PacketType::Ok
                | PacketType::ServerEvent
                | PacketType::LookupAnswer
                | PacketType::Error
                | PacketType::Cookie
        )
    }
}

impl From<u8> for PacketType {
    fn from(v: u8) -> Self {
        match v {
            0 => PacketType::Keepalive,
            1 => PacketType::Ok,
            2 => PacketType::Register,
            3 => PacketType::ServerEvent,
            4 => PacketType::Relay,
            5 => PacketType::Lookup,
            6 => PacketType::LookupAnswer,
            7 => PacketType::Error,
            8 => PacketType::Fetch,
            9 => PacketType::Cookie,
            other => PacketType::Unknown(other),
        }
    }
}

impl From<PacketType> for u8 {
    fn from(t: PacketType) -> u8 {
        match t {
            PacketType::Keepalive => 0,
            PacketType::Ok => 1,
            PacketType::Register => 2,
            PacketType::ServerEvent => 3,
            PacketType::Relay => 4,
            PacketType::Lookup => 5,
            PacketType::LookupAnswer => 6,
            PacketType::Error => 7,
            PacketType::Fetch => 8,
            PacketType::Cookie => 9,
            PacketType::Unknown(v) => v,
        }
    }
}

/// A parsed Root packet: a view of the datagram's bytes, nothing copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root<'a> {
    /// The params byte as sent (only bits 0x01, 0x02, 0x04 can be set).
    pub params: u8,
    /// `Some(n)` for the shifted layout with `n` junk bytes per shift (0..=255).
    pub shift_len: Option<u8>,
    /// The packet type.
    pub packet_type: PacketType,
    /// The signature bytes (empty when `sig_len` is 0).
    pub signature: &'a [u8],
    /// Unix time in seconds, UTC.
    pub timestamp: u64,
    /// Everything after the timestamp (and its shift).
    pub payload: &'a [u8],
}

impl<'a> Root<'a> {
    /// Smallest plain Root packet (empty signature and payload), in bytes.
    pub const MIN_LEN: usize = 12;

    /// Parses a datagram as a Root packet, plain or shifted.
    ///
    /// # Errors
    /// [`WireError::TooLarge`] over 1400 bytes; [`WireError::BadParams`] for reserved bits;
    /// [`WireError::Truncated`] when a field or the signature runs past the end.
    /// An unknown type byte is not an error: it parses as [`PacketType::Unknown`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() > MAX_DATAGRAM {
            return Err(WireError::TooLarge);
        }
        let mut pos = 0;
        let params = take(buf, &mut pos, 1)?[0];
        if params & !PARAM_KNOWN != 0 {
            return Err(WireError::BadParams);
        }
        let shift_len = if params & PARAM_SHIFTED != 0 {
            Some(take(buf, &mut pos, 1)?[0])
        } else {
            None
        };
        let shift = usize::from(shift_len.unwrap_or(0));
        let packet_type = PacketType::from(take(buf, &mut pos, 1)?[0]);
        take(buf, &mut pos, shift)?;
        let sig_len = usize::from(BigEndian::read_u16(take(buf, &mut pos, 2)?));
        take(buf, &mut pos, shift)?;
        let signature = take(buf, &mut pos, sig_len)?;
        take(buf, &mut pos, shift)?;
        let timestamp = BigEndian::read_u64(take(buf, &mut pos, 8)?);
        take(buf, &mut pos, shift)?;
        Ok(Root {
            params,
            shift_len,
            packet_type,
            signature,
            timestamp,
            payload: &buf[pos..],
        })
    }

    /// The type byte of `buf` read where [`Self::parse`] reads it (offset 1, or 2 in the
    /// shifted layout), without parsing the rest: a filter for batch work that only some
    /// types need. `None` when `buf` is shorter than that or its params byte has reserved
    /// bits; [`Self::parse`] still decides whether the packet is valid.
    pub fn peek_type(buf: &[u8]) -> Option<PacketType> {
        let params = *buf.first()?;
        if params & !PARAM_KNOWN != 0 {
            return None;
        }
        let at = if params & PARAM_SHIFTED != 0 { 2 } else { 1 };
        buf.get(at).map(|&t| PacketType::from(t))
    }

    /// True when params bit 0x01 (sent by a server) is set.
    pub fn from_server(&self) -> bool {
        self.params & PARAM_FROM_SERVER != 0
    }

    /// Writes the signed message `timestamp (8 bytes BE) || payload` into `scratch` and
    /// returns it; `None` if `scratch` is shorter than `8 + payload.len()` bytes.
    pub fn signed_message<'b>(&self, scratch: &'b mut [u8]) -> Option<&'b [u8]> {
        let n = 8 + self.payload.len();
        let out = scratch.get_mut(..n)?;
        BigEndian::write_u64(&mut out[..8], self.timestamp);
        out[8..].copy_from_slice(self.payload);
        Some(out)
    }
}

/// Builds `timestamp (8 bytes BE) || payload`: the exact bytes a Root signature covers.
pub fn signed_message(timestamp: u64, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + payload.len());
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// The header fields of a Root packet to emit (everything before the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootHeader<'a> {
    /// Direction bits (0x01 and/or 0x02); 0x04 is set from `shift_len`.
    pub params: u8,
    /// `Some(n)` to emit the shifted layout with `n` junk bytes per shift.
    pub shift_len: Option<u8>,
    /// The packet type.
    pub packet_type: PacketType,
    /// Signature bytes (up to 65535).
    pub signature: &'a [u8],
    /// Unix seconds.
    pub timestamp: u64,
}

impl RootHeader<'_> {
    /// Length of the header in bytes: 12 + signature plain, 13 + signature + 4 shifts shifted.
    pub fn len(&self) -> usize {
        match self.shift_len {
            None => 12 + self.signature.len(),
            Some(s) => 13 + self.signature.len() + 4 * usize::from(s),
        }
    }

    /// Always false: a header has at least 12 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header at the start of `buf` and returns its length; the payload goes at
    /// `buf[len..]`. Junk bytes of the shifted layout come from `junk` (a xorshift state).
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] when `buf` is shorter than [`Self::len`];
    /// [`WireError::BadLength`] for a signature over 65535 bytes; [`WireError::BadParams`]
    /// for reserved bits in `params`.
    pub fn emit(&self, buf: &mut [u8], junk: &mut u64) -> Result<usize, WireError> {
        let len = self.len();
        if buf.len() < len {
            return Err(WireError::BufferTooSmall);
        }
        let sig_len = u16::try_from(self.signature.len()).map_err(|_| WireError::BadLength)?;
        if self.params & !(PARAM_FROM_SERVER | PARAM_TO_SERVER) != 0 {
            return Err(WireError::BadParams);
        }
        let mut pos = 0;
        let shift = usize::from(self.shift_len.unwrap_or(0));
        let mut fill = |buf: &mut [u8], pos: &mut usize| {
            for b in &mut buf[*pos..*pos + shift] {
                *junk ^= *junk << 13;
                *junk ^= *junk >> 7;
                *junk ^= *junk << 17;
                *b = *junk as u8;
            }
            *pos += shift;
        };
        match self.shift_len {
            None => {
                buf[0] = self.params;
                pos += 1;
            }
            Some(s) => {
                buf[0] = self.params | PARAM_SHIFTED;
                buf[1] = s;
                pos += 2;
            }
        }
        buf[pos] = self.packet_type.into();
        pos += 1;
        fill(buf, &mut pos);
        BigEndian::write_u16(&mut buf[pos..pos + 2], sig_len);
        pos += 2;
        fill(buf, &mut pos);
        buf[pos..pos + self.signature.len()].copy_from_slice(self.signature);
        pos += self.signature.len();
        fill(buf, &mut pos);
        BigEndian::write_u64(&mut buf[pos..pos + 8], self.timestamp);
        pos += 8;
        fill(buf, &mut pos);
        debug_assert_eq!(pos, len);
        Ok(len)
    }

    /// Emits header and `payload` into a new vector (for clients and tests; the server's
    /// hot path emits into its own buffers with [`Self::emit`]).
    ///
    /// # Errors
    /// As [`Self::emit`].
    pub fn to_vec(&self, payload: &[u8]) -> Result<Vec<u8>, WireError> {
        let mut v = vec![0u8; self.len() + payload.len()];
        let mut junk = 0x9e37_79b9_7f4a_7c15u64 ^ self.timestamp;
        let n = self.emit(&mut v, &mut junk)?;
        v[n..].copy_from_slice(payload);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_fixture_both_directions() {
        // params 0x02, type 5, sig_len 2 "SG", timestamp 0x0102030405060708, payload "P"
        let bytes = [2, 5, 0, 2, b'S', b'G', 1, 2, 3, 4, 5, 6, 7, 8, b'P'];
        let r = Root::parse(&bytes).unwrap();
        assert_eq!(r.params, 2);
        assert_eq!(r.shift_len, None);
        assert_eq!(r.packet_type, PacketType::Lookup);
        assert_eq!(r.signature, b"SG");
        assert_eq!(r.timestamp, 0x0102_0304_0506_0708);
        assert_eq!(r.payload, b"P");
        let h = RootHeader {
            params: 2,
            shift_len: None,
            packet_type: PacketType::Lookup,
            signature: b"SG",
            timestamp: 0x0102_0304_0506_0708,
        };
        assert_eq!(h.to_vec(b"P").unwrap(), bytes);
        let mut scratch = [0u8; 16];
        assert_eq!(
            r.signed_message(&mut scratch).unwrap(),
            &[1, 2, 3, 4, 5, 6, 7, 8, b'P']
        );
    }

    #[test]
    fn shifted_fixture() {
        // params 0x06, shift_len 2, type 0, [jj], sig_len 1, [jj], "S", [jj], ts 9, [jj], "xy"
        let bytes = [
            6, 2, 0, 0xAA, 0xBB, 0, 1, 0xCC, 0xDD, b'S', 0xEE, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2,
            b'x', b'y',
        ];
        let r = Root::parse(&bytes).unwrap();
        assert_eq!(r.shift_len, Some(2));
        assert_eq!(r.packet_type, PacketType::Keepalive);
        assert_eq!(r.signature, b"S");
        assert_eq!(r.timestamp, 9);
        assert_eq!(r.payload, b"xy");
        let h = RootHeader {
            params: 2,
            shift_len: Some(2),
            packet_type: PacketType::Keepalive,
            signature: b"S",
            timestamp: 9,
        };
        let v = h.to_vec(b"xy").unwrap();
        assert_eq!(v.len(), bytes.len());
        let r2 = Root::parse(&v).unwrap();
        assert_eq!(
            (r2.signature, r2.timestamp, r2.payload),
            (&b"S"[..], 9, &b"xy"[..])
        );
    }

    #[test]
    fn errors() {
        assert_eq!(Root::parse(&[]), Err(WireError::Truncated));
        assert_eq!(Root::parse(&[0x08, 0]), Err(WireError::BadParams));
        // sig_len claims 300 bytes that are not there
        assert_eq!(
            Root::parse(&[2, 2, 1, 44, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::Truncated)
        );
        assert_eq!(Root::parse(&[0u8; 1401]), Err(WireError::TooLarge));
        let r = Root::parse(&[2, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(r.packet_type, PacketType::Unknown(200));
    }

    /// The peek reads the type byte where parse does, in both layouts, and nothing from
    /// a short datagram or one with reserved params bits.
    #[test]
    fn peek_type_agrees_with_parse() {
        let plain = [2, 5, 0, 2, b'S', b'G', 1, 2, 3, 4, 5, 6, 7, 8, b'P'];
        let shifted = [
            6, 2, 2, 0xAA, 0xBB, 0, 1, 0xCC, 0xDD, b'S', 0xEE, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2,
        ];
        for bytes in [&plain[..], &shifted[..]] {
            let parsed = Root::parse(bytes).unwrap().packet_type;
            assert_eq!(Root::peek_type(bytes), Some(parsed));
        }
        assert_eq!(Root::peek_type(&shifted), Some(PacketType::Register));
        assert_eq!(Root::peek_type(&[]), None);
        assert_eq!(Root::peek_type(&[6, 2]), None);
        assert_eq!(Root::peek_type(&[0x08, 2]), None);
    }
}

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(check_where(
    |f| f.frame == crate::wire::fixtures::Frame::Datagram
));
