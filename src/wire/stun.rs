//! STUN on the UDP port (docs/PROTOCOL.md §11): which datagrams are STUN messages
//! ([`classify`]), a zero-copy view of one ([`Stun`]), and the emitter of the server's
//! Binding responses ([`Response`]). Sources: RFC 8489 (STUN), RFC 7983 §7
//! (demultiplexing by the first byte), RFC 5389 §12.2 (answering RFC 3489 clients),
//! RFC 5769 (test vectors, checked below).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |   Message Length (bytes after |
//! |   |                           |   the header, a multiple of 4)|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Magic Cookie 0x2112A442 (RFC 8489)            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                Transaction ID (96 bits)                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | attributes: [type u16][length u16][value, padded to 4] ...    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! An RFC 3489 message has no magic cookie: bytes 4..20 are its 128-bit transaction id.
//! Parsing never panics and allocates nothing; emitting writes into a caller buffer.

use crate::wire::bytes::room;
use crate::wire::udp::canonical_addr;
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};
use std::net::{IpAddr, SocketAddr};

/// The magic cookie of RFC 8489 §5, bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// Bytes of the STUN header (RFC 8489 §5).
pub const HEADER_LEN: usize = 20;
/// Message type of a Binding request (RFC 8489 §18.2, class request, method 0x001).
pub const BINDING_REQUEST: u16 = 0x0001;
/// Message type of a Binding success response.
pub const BINDING_SUCCESS: u16 = 0x0101;
/// Message type of a Binding error response.
pub const BINDING_ERROR: u16 = 0x0111;
/// What FINGERPRINT's CRC-32 is XORed with: "STUN" in ASCII (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Bytes of the FINGERPRINT attribute, header included.
pub const FINGERPRINT_LEN: usize = 8;

/// Attribute types this crate reads or writes (RFC 8489 §18.3, RFC 5780 §9, RFC 3489
/// §11.2). Types 0x0000-0x7FFF are comprehension-required, 0x8000-0xFFFF optional.
pub mod attr {
    /// MAPPED-ADDRESS (RFC 8489 §14.1): the reflexive address, not XORed (RFC 3489 clients).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// CHANGE-REQUEST (RFC 5780 §7.2, RFC 3489 §11.2.4): 4 bytes, flags 0x04 change IP,
    /// 0x02 change port.
    pub const CHANGE_REQUEST: u16 = 0x0003;
    /// ERROR-CODE (RFC 8489 §14.8).
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.9).
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// SOFTWARE (RFC 8489 §14.14).
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT (RFC 8489 §14.7).
    pub const FINGERPRINT: u16 = 0x8028;
}

/// Which STUN a datagram speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 5389/8489: the magic cookie at bytes 4..8.
    Rfc8489,
    /// RFC 3489 ("classic STUN"): no magic cookie; only its Binding request is recognised.
    Rfc3489,
}

/// Tells whether datagram `data` is a STUN message, and which kind, by the rule of
/// docs/PROTOCOL.md §11.1: at least 20 bytes, first byte 0-3 (RFC 7983 §7), the message
/// length field (bytes 2..4) equal to the datagram's length less 20, and either the magic
/// cookie at bytes 4..8 ([`Dialect::Rfc8489`], any message type) or the type 0x0001, a
/// Binding request ([`Dialect::Rfc3489`]). Anything else is `None` and is read as a Root
/// packet. O(1); looks at 8 bytes.
#[inline]
pub fn classify(data: &[u8]) -> Option<Dialect> {
    if data.len() < HEADER_LEN || data[0] > 3 {
        return None;
    }
    if usize::from(BigEndian::read_u16(&data[2..4])) != data.len() - HEADER_LEN {
        return None;
    }
    if data[4..8] == MAGIC_COOKIE {
        Some(Dialect::Rfc8489)
    } else if BigEndian::read_u16(&data[0..2]) == BINDING_REQUEST {
        Some(Dialect::Rfc3489)
    } else {
        None
    }
}

/// The FINGERPRINT value of the message bytes `msg` that precede the attribute (their
/// length field already counting it): CRC-32 (ISO HDLC, as zlib) XOR 0x5354554E
/// (RFC 8489 §14.7).
#[inline]
pub fn fingerprint(msg: &[u8]) -> u32 {
    crc32fast::hash(msg) ^ FINGERPRINT_XOR
}

/// One attribute of a parsed message: its type and its value (padding not included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The attribute type (RFC 8489 §18.3).
    pub kind: u16,
    /// The value, `length` bytes (0-65535), without the padding to 4.
    pub value: &'a [u8],
}

impl Attribute<'_> {
    /// True for types 0x0000-0x7FFF, which a receiver must understand or refuse
    /// (RFC 8489 §14).
    pub fn comprehension_required(&self) -> bool {
        self.kind < 0x8000
    }
}

/// The attributes of a parsed message in order (FINGERPRINT included), each checked to
/// lie within the message by [`Stun::parse`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        let (a, padded) = split_attribute(self.rest).ok()?;
        self.rest = self.rest.get(padded..).unwrap_or(&[]);
        Some(a)
    }
}

/// The first attribute of `rest` and the bytes it takes padded to 4.
fn split_attribute(rest: &[u8]) -> Result<(Attribute<'_>, usize), WireError> {
    if rest.len() < 4 {
        return Err(WireError::Truncated);
    }
    let kind = BigEndian::read_u16(&rest[0..2]);
    let len = usize::from(BigEndian::read_u16(&rest[2..4]));
    let padded = 4 + len.div_ceil(4) * 4;
    if rest.len() < padded {
        return Err(WireError::Truncated);
    }
    let value = &rest[4..4 + len];
    Ok((Attribute { kind, value }, padded))
}

/// A zero-copy view of one STUN message (RFC 8489 §5), checked whole by [`Stun::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stun<'a> {
    bytes: &'a [u8],
}

impl<'a> Stun<'a> {
    /// Reads datagram `data` as one STUN message: the header (top two bits 0, length field
    /// = the datagram's length less 20, a multiple of 4), then attributes that each fit
    /// with their padding; a FINGERPRINT must be the last attribute, 4 bytes, and match the
    /// CRC-32 of the bytes before it (RFC 8489 §6.3, §14.7). O(attributes), no allocation.
    ///
    /// # Errors
    /// [`WireError::Truncated`] under 20 bytes or an attribute running past the end;
    /// [`WireError::NotStun`] when the top two bits are set; [`WireError::BadLength`] for a
    /// length field that is not the rest of the datagram or not a multiple of 4;
    /// [`WireError::BadFingerprint`].
    pub fn parse(data: &'a [u8]) -> Result<Self, WireError> {
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if data[0] & 0xC0 != 0 {
            return Err(WireError::NotStun);
        }
        let len = usize::from(BigEndian::read_u16(&data[2..4]));
        if len != data.len() - HEADER_LEN || len % 4 != 0 {
            return Err(WireError::BadLength);
        }
        let mut pos = HEADER_LEN;
        while pos < data.len() {
            let (a, padded) = split_attribute(&data[pos..])?;
            if a.kind == attr::FINGERPRINT {
                let last = pos + padded == data.len();
                let ok =
                    a.value.len() == 4 && BigEndian::read_u32(a.value) == fingerprint(&data[..pos]);
                if !last || !ok {
                    return Err(WireError::BadFingerprint);
                }
            }
            pos += padded;
        }
        Ok(Stun { bytes: data })
    }

    /// The message type (14 bits: method and class, RFC 8489 §5).
    pub fn message_type(&self) -> u16 {
        BigEndian::read_u16(&self.bytes[0..2])
    }

    /// RFC 8489 when bytes 4..8 are the magic cookie, else RFC 3489.
    pub fn dialect(&self) -> Dialect {
        if self.bytes[4..8] == MAGIC_COOKIE {
            Dialect::Rfc8489
        } else {
            Dialect::Rfc3489
        }
    }

    /// Bytes 4..20: the magic cookie and the 96-bit transaction id (RFC 8489), or the
    /// 128-bit transaction id (RFC 3489). A response copies them.
    pub fn transaction(&self) -> &'a [u8; 16] {
        self.bytes[4..HEADER_LEN].try_into().unwrap_or(&[0; 16])
    }

    /// The attributes in order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            rest: &self.bytes[HEADER_LEN..],
        }
    }

    /// Bytes of the whole message (20 + the length field).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a message has its 20-byte header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a Binding response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A success response (type 0x0101) with the requester's reflexive address:
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2), or MAPPED-ADDRESS to an RFC 3489 client
    /// (RFC 5389 §12.2).
    Mapped(SocketAddr),
    /// An error response (type 0x0111): ERROR-CODE `code` (300-699) with `reason` (at most
    /// 127 bytes, RFC 8489 §14.8), and UNKNOWN-ATTRIBUTES listing `unknown` when it is not
    /// empty (RFC 8489 §14.9).
    Error {
        /// The error code, 300-699 (420: unknown comprehension-required attribute).
        code: u16,
        /// The reason phrase, UTF-8, at most 127 bytes.
        reason: &'a str,
        /// The attribute types not understood (at most 32 listed).
        unknown: &'a [u16],
    },
}

/// A Binding response to emit: its dialect (FINGERPRINT only in RFC 8489; RFC 3489 has no
/// such attribute), the request's bytes 4..20, and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The request's dialect.
    pub dialect: Dialect,
    /// The request's bytes 4..20 ([`Stun::transaction`]).
    pub transaction: &'a [u8; 16],
    /// Success or error.
    pub reply: Reply<'a>,
}

/// Bytes of an address value (MAPPED- or XOR-MAPPED-ADDRESS, RFC 8489 §14.1): 8 for IPv4,
/// 20 for IPv6.
fn addr_value_len(addr: SocketAddr) -> usize {
    match canonical_addr(addr) {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

/// Rounds `n` up to a multiple of 4.
fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl Response<'_> {
    /// Bytes on the wire: 20 + attributes. A success is 32 (IPv4) or 44 (IPv6) bytes to an
    /// RFC 3489 client, 40 or 52 with XOR-MAPPED-ADDRESS and FINGERPRINT; an error is
    /// 20 + 8 + the reason padded + (4 + 2 x unknown types, padded) + 8.
    pub fn len(&self) -> usize {
        let body = match self.reply {
            Reply::Mapped(a) => 4 + addr_value_len(a),
            Reply::Error {
                reason, unknown, ..
            } => {
                let list = if unknown.is_empty() {
                    0
                } else {
                    4 + pad4(2 * unknown.len())
                };
                8 + pad4(reason.len()) + list
            }
        };
        let fp = match self.dialect {
            Dialect::Rfc8489 => FINGERPRINT_LEN,
            Dialect::Rfc3489 => 0,
        };
        HEADER_LEN + body + fp
    }

    /// Never true: a response has its 20-byte header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the response into `buf`; returns its length ([`Self::len`]). Padding bytes
    /// are 0.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`]; [`WireError::BadLength`] for an error code outside
    /// 300-699, a reason over 127 bytes or more than 32 unknown types. Nothing is written
    /// then.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        if let Reply::Error {
            code,
            reason,
            unknown,
        } = self.reply
        {
            if !(300..700).contains(&code) || reason.len() > 127 || unknown.len() > 32 {
                return Err(WireError::BadLength);
            }
        }
        let total = self.len();
        room(buf, total)?;
        let buf = &mut buf[..total];
        buf.fill(0);
        let ty = match self.reply {
            Reply::Mapped(_) => BINDING_SUCCESS,
            Reply::Error { .. } => BINDING_ERROR,
        };
        BigEndian::write_u16(&mut buf[0..2], ty);
        BigEndian::write_u16(&mut buf[2..4], (total - HEADER_LEN) as u16);
        buf[4..HEADER_LEN].copy_from_slice(self.transaction);
        let mut pos = HEADER_LEN;
        match self.reply {
            Reply::Mapped(a) => pos += self.put_address(a, &mut buf[pos..]),
            Reply::Error {
                code,
                reason,
                unknown,
            } => pos += put_error(code, reason, unknown, &mut buf[pos..]),
        }
        if self.dialect == Dialect::Rfc8489 {
            let fp = fingerprint(&buf[..pos]);
            put_header(attr::FINGERPRINT, 4, &mut buf[pos..]);
            BigEndian::write_u32(&mut buf[pos + 4..pos + 8], fp);
        }
        Ok(total)
    }

    /// Writes XOR-MAPPED-ADDRESS (RFC 8489) or MAPPED-ADDRESS (RFC 3489) of `addr` at the
    /// start of `buf` (room checked by the caller); returns the bytes written (12 or 24).
    fn put_address(&self, addr: SocketAddr, buf: &mut [u8]) -> usize {
        let addr = canonical_addr(addr);
        let n = addr_value_len(addr);
        let v = &mut buf[4..4 + n];
        let mut port = addr.port();
        let kind = match self.dialect {
            Dialect::Rfc8489 => {
                port ^= 0x2112;
                attr::XOR_MAPPED_ADDRESS
            }
            Dialect::Rfc3489 => attr::MAPPED_ADDRESS,
        };
        BigEndian::write_u16(&mut v[2..4], port);
        match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = 0x01;
                v[4..8].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                v[1] = 0x02;
                v[4..20].copy_from_slice(&ip.octets());
            }
        }
        if self.dialect == Dialect::Rfc8489 {
            // The address XOR the magic cookie and the transaction id (RFC 8489 §14.2):
            // exactly bytes 4..20 of the header, of which IPv4 uses the first 4.
            for (b, k) in v[4..].iter_mut().zip(self.transaction.iter()) {
                *b ^= k;
            }
        }
        put_header(kind, n as u16, buf);
        4 + n
    }
}

/// Writes an attribute header `[kind][len]` at the start of `buf`.
fn put_header(kind: u16, len: u16, buf: &mut [u8]) {
    BigEndian::write_u16(&mut buf[0..2], kind);
    BigEndian::write_u16(&mut buf[2..4], len);
}

/// Writes ERROR-CODE and (when `unknown` is not empty) UNKNOWN-ATTRIBUTES at the start of
/// the zeroed `buf` (room checked by the caller); returns the bytes written.
fn put_error(code: u16, reason: &str, unknown: &[u16], buf: &mut [u8]) -> usize {
    let n = 4 + reason.len();
    put_header(attr::ERROR_CODE, n as u16, buf);
    buf[6] = (code / 100) as u8;
    buf[7] = (code % 100) as u8;
    buf[8..8 + reason.len()].copy_from_slice(reason.as_bytes());
    let mut pos = 4 + pad4(n);
    if !unknown.is_empty() {
        put_header(
            attr::UNKNOWN_ATTRIBUTES,
            (2 * unknown.len()) as u16,
            &mut buf[pos..],
        );
        for (i, t) in unknown.iter().enumerate() {
            BigEndian::write_u16(&mut buf[pos + 4 + 2 * i..pos + 6 + 2 * i], *t);
        }
        pos += 4 + pad4(2 * unknown.len());
    }
    pos
}

#[cfg(test)]
mod tests;
