//! The directory federation frames 16-18 (docs/PROTOCOL.md §8.16): the bodies of
//! DirRecord (16) and Forward (18), and the end frame (17) that closes the answer to a
//! DirRequest. Zero-copy views with an emit side; no I/O, no allocation on the parse path.
//! The TCP plane frames each body as `[cmd u8][len u16][body]` ([`super::command_len`]);
//! this file sees the body. Big-endian throughout.
//!
//! ```text
//! frames:  16 DirRecord  [0x10][len u16][DirRecord body]       3 + len, len <= 4096
//!          17 DirRequest [0x11][len u16 = 0]                   3 (opener to acceptor)
//!          17 end        [0x11][len u16 = 4][count u32]        7 (ends the answer)
//!          18 Forward    [0x12][len u16][Forward body]         3 + len, len <= 4096
//!
//! DirRecord body (46 bytes for kinds 2 and 3; kind 1 continues):
//! +------+------+-------------+-----------+--------+
//! | kind | hops | fingerprint | timestamp | age_ms |
//! |  u8  |  u8  |     32      |    u64    |  u32   |
//! +------+------+-------------+-----------+--------+
//!   kind 1 registration, 2 refresh, 3 expiry; timestamp: Unix s of the signed registration
//! kind 1 continues:
//! +--------+------+------+----------+----------+------+---------+-----------+-------------+---------+
//! | family | addr | port | home_uid | home_len | home | sig_len | signature | payload_len | payload |
//! |   u8   | 16   | u16  |    16    |    u8    | UTF-8|   u16   |           |     u16     |         |
//! +--------+------+------+----------+----------+------+---------+-----------+-------------+---------+
//!   family 4: 4 address bytes then 12 zero bytes; home_uid: the home server's node uid
//!   (its identity in federation); home: its alias (a display name); payload: the type-2
//!   register payload
//!
//! Forward body (74 fixed bytes; kind 1 continues with 19, kind 2 with 1..=1200):
//! +------+------+-----+--------+--------+----------------------------------------+
//! | kind | hops | id  | target | source | kind 1: [family u8][addr 16][port u16] |
//! |  u8  |  u8  | u64 |   32   |   32   | kind 2: [event 1..=1200 bytes]         |
//! +------+------+-----+--------+--------+----------------------------------------+
//! ```
//!
//! Invariants: no parser panics on any input; bytes after the last field are
//! [`WireError::TrailingData`]; the hop limits ([`MAX_RECORD_HOPS`], [`MAX_FORWARD_HOPS`])
//! are policy checked by the core, not here.

/// The command bytes of the frames that carry these bodies (16 DirRecord, 17 DirRequest,
/// 18 Forward), defined with the rest of the TCP plane's commands.
pub use super::{CMD_DIR_RECORD, CMD_DIR_REQUEST, CMD_FORWARD};
use crate::wire::bytes::{done, take};
use crate::wire::udp::root::{Root, MAX_DATAGRAM};
use crate::wire::udp::{canonical_addr, put_family_ip, MAX_EVENT};
use crate::wire::{Fingerprint, WireError};
use byteorder::{BigEndian, ByteOrder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
/// Bytes of the TCP frame header in front of a body: command (1) + length (2).
pub const FRAME_HEADER_LEN: usize = 3;

/// DirRecord kind 1: a registration (carries the address and the signed registration).
pub const KIND_REGISTRATION: u8 = 1;
/// DirRecord kind 2: a refresh ("still heard from", by timestamp).
pub const KIND_REFRESH: u8 = 2;
/// DirRecord kind 3: an expiry (the home server no longer holds the client).
pub const KIND_EXPIRY: u8 = 3;
/// Forward kind 1: a punch request.
pub const FORWARD_PUNCH: u8 = 1;
/// Forward kind 2: a relayed event.
pub const FORWARD_RELAY: u8 = 2;

/// Offset of the hops byte in both bodies (a server that passes a body on rewrites it).
pub const HOPS_OFFSET: usize = 1;
/// A DirRecord with more hops than this is refused (400); one is passed on only while
/// `hops + 1` stays within it.
pub const MAX_RECORD_HOPS: u8 = 16;
/// A Forward with more hops than this is refused (400); one is passed on only while
/// `hops + 1` stays within it.
pub const MAX_FORWARD_HOPS: u8 = 8;

/// Fixed part of every DirRecord body: kind, hops, fingerprint, timestamp, age = 46 bytes
/// (the whole body of kinds 2 and 3).
pub const RECORD_FIXED_LEN: usize = 1 + 1 + 32 + 8 + 4;
/// The wire address of both bodies: family (1) + address (16) + port (2) = 19 bytes.
pub const WIRE_ADDR_LEN: usize = 19;
/// Longest home alias, in bytes.
pub const MAX_HOME_LEN: usize = 255;
/// Length of a home server's node uid in a registration record, in bytes (16, the node
/// list's uid: docs/PROTOCOL.md §8.15).
pub const HOME_UID_LEN: usize = 16;
/// Most bytes of signature plus payload a registration record may carry: what a plain
/// 1400-byte Root datagram leaves after its 12 fixed header bytes (1388).
pub const MAX_SIGNED_LEN: usize = MAX_DATAGRAM - Root::MIN_LEN;
/// Longest DirRecord body: 46 + 19 + 16 + 1 + 255 + 2 + 2 + 1388 = 1729 bytes.
pub const MAX_DIR_RECORD_LEN: usize =
    RECORD_FIXED_LEN + WIRE_ADDR_LEN + HOME_UID_LEN + 1 + MAX_HOME_LEN + 2 + 2 + MAX_SIGNED_LEN;
/// Fixed part of every Forward body: kind, hops, id, target, source = 74 bytes.
pub const FORWARD_FIXED_LEN: usize = 1 + 1 + 8 + 32 + 32;
/// Length of a punch Forward body: 74 + 19 = 93 bytes.
pub const FORWARD_PUNCH_LEN: usize = FORWARD_FIXED_LEN + WIRE_ADDR_LEN;
/// Longest Forward body (a relayed event of 1200 bytes): 1274 bytes.
pub const MAX_FORWARD_LEN: usize = FORWARD_FIXED_LEN + MAX_EVENT;

fn fingerprint(buf: &[u8], pos: &mut usize) -> Result<Fingerprint, WireError> {
    Fingerprint::from_slice(take(buf, pos, 32)?).ok_or(WireError::Truncated)
}

/// Reads the fixed 19-byte address `[family u8 4|6][addr 16][port u16]`.
///
/// # Errors
/// [`WireError::Truncated`]; [`WireError::BadFamily`] for a family other than 4 or 6, or
/// family 4 with a non-zero byte in the 12 bytes after the IPv4 address.
fn parse_wire_addr(buf: &[u8], pos: &mut usize) -> Result<SocketAddr, WireError> {
    let family = take(buf, pos, 1)?[0];
    let a = take(buf, pos, 16)?;
    let port = BigEndian::read_u16(take(buf, pos, 2)?);
    let ip = match family {
        4 => {
            if a[4..].iter().any(|&b| b != 0) {
                return Err(WireError::BadFamily);
            }
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        }
        6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(a);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(WireError::BadFamily),
    };
    Ok(canonical_addr(SocketAddr::new(ip, port)))
}

/// Writes the fixed 19-byte address (IPv4-mapped IPv6 as family 4); `buf` has 19 bytes.
#[inline]
fn emit_wire_addr(addr: SocketAddr, buf: &mut [u8]) {
    let addr = canonical_addr(addr);
    buf[..WIRE_ADDR_LEN].fill(0);
    put_family_ip(addr.ip(), buf);
    BigEndian::write_u16(&mut buf[17..19], addr.port());
}

/// What a kind-1 DirRecord carries after the fixed part: the client's reflexive address,
/// its home server's alias and its original signed registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration<'a> {
    /// The client's public (reflexive) address as its home server saw it (IPv4-mapped
    /// IPv6 is read and written as IPv4).
    pub addr: SocketAddr,
    /// The home server's node uid (docs/PROTOCOL.md §8.15): who the home is, in
    /// federation. Two servers with one alias are two homes.
    pub home_uid: [u8; HOME_UID_LEN],
    /// The home server's alias, 0..=255 bytes of UTF-8: a display name, for lookup
    /// answers.
    pub home: &'a str,
    /// The registration's signature (the Root packet's signature bytes).
    pub signature: &'a [u8],
    /// The type-2 payload `[cert_len u16][cert DER][cookie 16]`, exactly as received.
    /// Signature and payload together are at most [`MAX_SIGNED_LEN`] bytes.
    pub payload: &'a [u8],
}

/// The kind of a DirRecord and what follows its fixed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordBody<'a> {
    /// Kind 1.
    Registration(Registration<'a>),
    /// Kind 2: the home server heard from the client `age_ms` ago.
    Refresh,
    /// Kind 3: the home server no longer holds the client (`age_ms` is ignored).
    Expiry,
}

/// A DirRecord body (command 16): one change to a client's entry, made by its home server
/// and passed on by every server it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirRecord<'a> {
    /// 0 when made by the home server; each server that passes it on adds 1.
    pub hops: u8,
    /// The client's certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// Unix seconds: the signed timestamp of the registration this record is about.
    pub timestamp: u64,
    /// Milliseconds since the home server last heard from the client (saturating).
    pub age_ms: u32,
    /// The kind and its fields.
    pub body: RecordBody<'a>,
}

impl<'a> DirRecord<'a> {
    /// Parses a DirRecord body (without the frame's command and length).
    ///
    /// # Errors
    /// [`WireError::Truncated`] when a field runs past the end; [`WireError::UnknownCommand`]
    /// for a kind byte other than 1, 2 or 3; [`WireError::BadFamily`]; [`WireError::BadUtf8`]
    /// for a home alias that is not UTF-8; [`WireError::BadLength`] for signature plus
    /// payload over [`MAX_SIGNED_LEN`] bytes; [`WireError::TrailingData`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut pos = 0;
        let kind = take(buf, &mut pos, 1)?[0];
        if !(KIND_REGISTRATION..=KIND_EXPIRY).contains(&kind) {
            return Err(WireError::UnknownCommand);
        }
        let hops = take(buf, &mut pos, 1)?[0];
        let fingerprint = fingerprint(buf, &mut pos)?;
        let timestamp = BigEndian::read_u64(take(buf, &mut pos, 8)?);
        let age_ms = BigEndian::read_u32(take(buf, &mut pos, 4)?);
        let body = match kind {
            KIND_REGISTRATION => {
                let addr = parse_wire_addr(buf, &mut pos)?;
                let mut home_uid = [0u8; HOME_UID_LEN];
                home_uid.copy_from_slice(take(buf, &mut pos, HOME_UID_LEN)?);
                let home_len = usize::from(take(buf, &mut pos, 1)?[0]);
                let home = std::str::from_utf8(take(buf, &mut pos, home_len)?)
                    .map_err(|_| WireError::BadUtf8)?;
                let sig_len = usize::from(BigEndian::read_u16(take(buf, &mut pos, 2)?));
                if sig_len > MAX_SIGNED_LEN {
                    return Err(WireError::BadLength);
                }
                let signature = take(buf, &mut pos, sig_len)?;
                let payload_len = usize::from(BigEndian::read_u16(take(buf, &mut pos, 2)?));
                if sig_len + payload_len > MAX_SIGNED_LEN {
                    return Err(WireError::BadLength);
                }
                let payload = take(buf, &mut pos, payload_len)?;
                RecordBody::Registration(Registration {
                    addr,
                    home_uid,
                    home,
                    signature,
                    payload,
                })
            }
            KIND_REFRESH => RecordBody::Refresh,
            _ => RecordBody::Expiry,
        };
        done(buf, pos)?;
        Ok(DirRecord {
            hops,
            fingerprint,
            timestamp,
            age_ms,
            body,
        })
    }

    /// The kind byte: 1, 2 or 3.
    pub fn kind(&self) -> u8 {
        match self.body {
            RecordBody::Registration(_) => KIND_REGISTRATION,
            RecordBody::Refresh => KIND_REFRESH,
            RecordBody::Expiry => KIND_EXPIRY,
        }
    }

    /// Bytes [`Self::emit`] writes: 46 for kinds 2 and 3, 46 + 40 + home + signature +
    /// payload for kind 1 (at most [`MAX_DIR_RECORD_LEN`]).
    pub fn buffer_len(&self) -> usize {
        match self.body {
            RecordBody::Registration(r) => {
                RECORD_FIXED_LEN
                    + WIRE_ADDR_LEN
                    + HOME_UID_LEN
                    + 1
                    + r.home.len()
                    + 2
                    + r.signature.len()
                    + 2
                    + r.payload.len()
            }
            RecordBody::Refresh | RecordBody::Expiry => RECORD_FIXED_LEN,
        }
    }

    /// Writes the body into `buf`; returns its length. Every field is checked before a
    /// byte is written.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] for a home alias over 255 bytes (refused, never cut);
    /// [`WireError::BadLength`] for signature plus payload over [`MAX_SIGNED_LEN`];
    /// [`WireError::BufferTooSmall`] when `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        if let RecordBody::Registration(r) = self.body {
            if r.home.len() > MAX_HOME_LEN {
                return Err(WireError::NameTooLong);
            }
            if r.signature.len() + r.payload.len() > MAX_SIGNED_LEN {
                return Err(WireError::BadLength);
            }
        }
        let n = self.buffer_len();
        let buf = buf.get_mut(..n).ok_or(WireError::BufferTooSmall)?;
        buf[0] = self.kind();
        buf[1] = self.hops;
        buf[2..34].copy_from_slice(&self.fingerprint.0);
        BigEndian::write_u64(&mut buf[34..42], self.timestamp);
        BigEndian::write_u32(&mut buf[42..46], self.age_ms);
        if let RecordBody::Registration(r) = self.body {
            let mut pos = RECORD_FIXED_LEN;
            emit_wire_addr(r.addr, &mut buf[pos..pos + WIRE_ADDR_LEN]);
            pos += WIRE_ADDR_LEN;
            buf[pos..pos + HOME_UID_LEN].copy_from_slice(&r.home_uid);
            pos += HOME_UID_LEN;
            // Lengths checked above: home <= 255, signature and payload <= 1388.
            buf[pos] = r.home.len() as u8;
            pos += 1;
            buf[pos..pos + r.home.len()].copy_from_slice(r.home.as_bytes());
            pos += r.home.len();
            for blob in [r.signature, r.payload] {
                BigEndian::write_u16(&mut buf[pos..pos + 2], blob.len() as u16);
                pos += 2;
                buf[pos..pos + blob.len()].copy_from_slice(blob);
                pos += blob.len();
            }
            debug_assert_eq!(pos, n);
        }
        Ok(n)
    }

    /// Emits the body into a new vector (what the core hands the TCP plane).
    ///
    /// # Errors
    /// As [`Self::emit`].
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit(&mut v)?;
        Ok(v)
    }

    /// Appends the record framed as a DirRecord command or answer, `[16][len u16][body]`,
    /// to `out`; returns the frame's length (3 + [`Self::buffer_len`]).
    ///
    /// # Errors
    /// As [`Self::emit`] (but [`WireError::BufferTooSmall`]); `out` is left as it was.
    pub fn append_frame(&self, out: &mut Vec<u8>) -> Result<usize, WireError> {
        crate::wire::bytes::append(out, FRAME_HEADER_LEN + self.buffer_len(), |buf| {
            let n = self.emit(&mut buf[FRAME_HEADER_LEN..])?;
            buf[0] = CMD_DIR_RECORD;
            BigEndian::write_u16(&mut buf[1..FRAME_HEADER_LEN], n as u16); // <= MAX_DIR_RECORD_LEN < 65,536
            Ok(FRAME_HEADER_LEN + n)
        })
    }
}

/// What a Forward carries after its fixed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardBody<'a> {
    /// Kind 1: the asker's public (reflexive) address, for the punch request the home
    /// server sends the target.
    Punch(SocketAddr),
    /// Kind 2: the opaque event (1..=1200 bytes) the source relays to the target.
    Relay(&'a [u8]),
}

/// A Forward body (command 18): a punch request or relayed event on its way to the
/// target's home server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward<'a> {
    /// 0 when made; each server that passes it on adds 1.
    pub hops: u8,
    /// Random per forward, for dropping the copies a flood brings back.
    pub id: u64,
    /// The client homed elsewhere that the forward is for.
    pub target: Fingerprint,
    /// The asker (punch) or the sender (relay).
    pub source: Fingerprint,
    /// The kind and its fields.
    pub body: ForwardBody<'a>,
}

impl<'a> Forward<'a> {
    /// Parses a Forward body (without the frame's command and length).
    ///
    /// # Errors
    /// [`WireError::Truncated`] when a field runs past the end or a relayed event is empty;
    /// [`WireError::UnknownCommand`] for a kind byte other than 1 or 2;
    /// [`WireError::BadFamily`]; [`WireError::BadLength`] for an event over 1200 bytes;
    /// [`WireError::TrailingData`] after a punch's address.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut pos = 0;
        let kind = take(buf, &mut pos, 1)?[0];
        if kind != FORWARD_PUNCH && kind != FORWARD_RELAY {
            return Err(WireError::UnknownCommand);
        }
        let hops = take(buf, &mut pos, 1)?[0];
        let id = BigEndian::read_u64(take(buf, &mut pos, 8)?);
        let target = fingerprint(buf, &mut pos)?;
        let source = fingerprint(buf, &mut pos)?;
        let body = if kind == FORWARD_PUNCH {
            let addr = parse_wire_addr(buf, &mut pos)?;
            done(buf, pos)?;
            ForwardBody::Punch(addr)
        } else {
            let event = &buf[pos..];
            if event.is_empty() {
                return Err(WireError::Truncated);
            }
            if event.len() > MAX_EVENT {
                return Err(WireError::BadLength);
            }
            ForwardBody::Relay(event)
        };
        Ok(Forward {
            hops,
            id,
            target,
            source,
            body,
        })
    }

    /// The kind byte: 1 or 2.
    pub fn kind(&self) -> u8 {
        match self.body {
            ForwardBody::Punch(_) => FORWARD_PUNCH,
            ForwardBody::Relay(_) => FORWARD_RELAY,
        }
    }

    /// Bytes [`Self::emit`] writes: 93 for a punch, 74 + event for a relay.
    pub fn buffer_len(&self) -> usize {
        FORWARD_FIXED_LEN
            + match self.body {
                ForwardBody::Punch(_) => WIRE_ADDR_LEN,
                ForwardBody::Relay(e) => e.len(),
            }
    }

    /// Writes the body into `buf`; returns its length.
    ///
    /// # Errors
    /// [`WireError::BadLength`] for an empty or over-1200-byte event;
    /// [`WireError::BufferTooSmall`] when `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        if let ForwardBody::Relay(e) = self.body {
            if e.is_empty() || e.len() > MAX_EVENT {
                return Err(WireError::BadLength);
            }
        }
        let n = self.buffer_len();
        let buf = buf.get_mut(..n).ok_or(WireError::BufferTooSmall)?;
        buf[0] = self.kind();
        buf[1] = self.hops;
        BigEndian::write_u64(&mut buf[2..10], self.id);
        buf[10..42].copy_from_slice(&self.target.0);
        buf[42..74].copy_from_slice(&self.source.0);
        match self.body {
            ForwardBody::Punch(addr) => emit_wire_addr(addr, &mut buf[74..]),
            ForwardBody::Relay(e) => buf[74..].copy_from_slice(e),
        }
        Ok(n)
    }

    /// Emits the body into a new vector (what the core hands the TCP plane).
    ///
    /// # Errors
    /// As [`Self::emit`].
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit(&mut v)?;
        Ok(v)
    }
}

/// Length of the frame that ends the answer to a DirRequest, `[17][len u16 = 4][count
/// u32]`: 7 bytes (docs/PROTOCOL.md §8.16).
pub const DIR_END_LEN: usize = FRAME_HEADER_LEN + 4;

/// Writes the frame `[17][len u16 = 4][count u32]` that ends the answer to a DirRequest,
/// `count` being the records sent; returns 7 (docs/PROTOCOL.md §8.16).
///
/// # Errors
/// [`WireError::BufferTooSmall`] under 7 bytes.
pub fn emit_dir_end(count: u32, buf: &mut [u8]) -> Result<usize, WireError> {
    let buf = buf
        .get_mut(..DIR_END_LEN)
        .ok_or(WireError::BufferTooSmall)?;
    buf[0] = CMD_DIR_REQUEST;
    BigEndian::write_u16(&mut buf[1..3], 4);
    BigEndian::write_u32(&mut buf[3..7], count);
    Ok(DIR_END_LEN)
}

/// Reads the whole end frame `[17][len u16 = 4][count u32]` of a directory answer; returns
/// the count (docs/PROTOCOL.md §8.16).
///
/// # Errors
/// [`WireError::UnknownCommand`] when the first byte is not 17; [`WireError::BadLength`]
/// when the length field is not 4; [`WireError::Truncated`] or
/// [`WireError::TrailingData`] for a frame that is not `3 + len` bytes.
pub fn parse_dir_end(frame: &[u8]) -> Result<u32, WireError> {
    let mut pos = 0;
    if take(frame, &mut pos, 1)?[0] != CMD_DIR_REQUEST {
        return Err(WireError::UnknownCommand);
    }
    let len = BigEndian::read_u16(take(frame, &mut pos, 2)?);
    if len != 4 {
        return Err(WireError::BadLength);
    }
    let count = BigEndian::read_u32(take(frame, &mut pos, 4)?);
    done(frame, pos)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn end_frame_both_ways() {
        let bytes = [17, 0, 4, 0, 0, 1, 0];
        assert_eq!(parse_dir_end(&bytes), Ok(256));
        let mut out = [0u8; 7];
        assert_eq!(emit_dir_end(256, &mut out), Ok(7));
        assert_eq!(out, bytes);
        assert_eq!(
            parse_dir_end(&[17, 0, 5, 0, 0, 1, 0, 0]),
            Err(WireError::BadLength)
        );
        assert_eq!(
            parse_dir_end(&[16, 0, 4, 0, 0, 1, 0]),
            Err(WireError::UnknownCommand)
        );
        for n in 0..7 {
            assert_eq!(parse_dir_end(&bytes[..n]), Err(WireError::Truncated));
        }
        assert_eq!(
            emit_dir_end(1, &mut out[..6]),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn layout_sizes() {
        assert_eq!(RECORD_FIXED_LEN, 46);
        assert_eq!(MAX_SIGNED_LEN, 1388);
        assert_eq!(MAX_DIR_RECORD_LEN, 1729);
        assert_eq!(FORWARD_FIXED_LEN, 74);
        assert_eq!(FORWARD_PUNCH_LEN, 93);
        assert_eq!(MAX_FORWARD_LEN, 1274);
    }

    #[test]
    fn refresh_fixture_both_ways() {
        let bytes = hex("02 03
             1111111111111111111111111111111111111111111111111111111111111111
             0000000065000000 000003e8");
        let rec = DirRecord {
            hops: 3,
            fingerprint: Fingerprint([0x11; 32]),
            timestamp: 0x6500_0000,
            age_ms: 1000,
            body: RecordBody::Refresh,
        };
        assert_eq!(DirRecord::parse(&bytes), Ok(rec));
        assert_eq!(rec.to_vec(), Ok(bytes.clone()));
        let mut expiry = bytes.clone();
        expiry[0] = 3;
        assert_eq!(
            DirRecord::parse(&expiry).map(|r| r.body),
            Ok(RecordBody::Expiry)
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(DirRecord::parse(&trailing), Err(WireError::TrailingData));
        for n in 0..bytes.len() {
            assert_eq!(DirRecord::parse(&bytes[..n]), Err(WireError::Truncated));
        }
        let mut kind = bytes;
        kind[0] = 4;
        assert_eq!(DirRecord::parse(&kind), Err(WireError::UnknownCommand));
    }

    #[test]
    fn registration_fixture_both_ways() {
        let bytes = hex("01 00
             2222222222222222222222222222222222222222222222222222222222222222
             0000000065000001 00000000
             04 c0000207 000000000000000000000000 0fa0
             a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1
             01 41
             0002 aabb
             0003 000161");
        let rec = DirRecord {
            hops: 0,
            fingerprint: Fingerprint([0x22; 32]),
            timestamp: 0x6500_0001,
            age_ms: 0,
            body: RecordBody::Registration(Registration {
                addr: "192.0.2.7:4000".parse().unwrap(),
                home_uid: [0xa1; 16],
                home: "A",
                signature: &[0xaa, 0xbb],
                payload: &[0x00, 0x01, 0x61],
            }),
        };
        assert_eq!(rec.buffer_len(), bytes.len());
        assert_eq!(DirRecord::parse(&bytes), Ok(rec));
        assert_eq!(rec.to_vec(), Ok(bytes.clone()));
        // Non-zero padding after an IPv4 address, an unknown family, bad UTF-8.
        let mut pad = bytes.clone();
        pad[60] = 1;
        assert_eq!(DirRecord::parse(&pad), Err(WireError::BadFamily));
        let mut fam = bytes.clone();
        fam[46] = 5;
        assert_eq!(DirRecord::parse(&fam), Err(WireError::BadFamily));
        let mut utf = bytes.clone();
        utf[82] = 0xff;
        assert_eq!(DirRecord::parse(&utf), Err(WireError::BadUtf8));
        for n in 0..bytes.len() {
            assert_eq!(DirRecord::parse(&bytes[..n]), Err(WireError::Truncated));
        }
        // IPv6 and IPv4-mapped IPv6 (written as family 4).
        let v6: SocketAddr = "[2001:db8::1]:7".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
        for (addr, want) in [(v6, v6), (mapped, "192.0.2.7:4000".parse().unwrap())] {
            let mut r = rec;
            if let RecordBody::Registration(ref mut g) = r.body {
                g.addr = addr;
            }
            let v = r.to_vec().unwrap();
            let back = DirRecord::parse(&v).unwrap();
            let RecordBody::Registration(g) = back.body else {
                panic!("kind 1");
            };
            assert_eq!(g.addr, want);
        }
    }

    #[test]
    fn registration_limits() {
        let long = "x".repeat(256);
        let sig = [1u8; 1000];
        let payload = [2u8; 389];
        let mut rec = DirRecord {
            hops: 0,
            fingerprint: Fingerprint([0; 32]),
            timestamp: 1,
            age_ms: 0,
            body: RecordBody::Registration(Registration {
                addr: "192.0.2.1:1".parse().unwrap(),
                home_uid: [0; 16],
                home: &long,
                signature: &sig,
                payload: &payload[..388],
            }),
        };
        assert_eq!(rec.to_vec(), Err(WireError::NameTooLong));
        if let RecordBody::Registration(ref mut g) = rec.body {
            g.home = &long[..255];
        }
        let max = rec.to_vec().unwrap();
        assert_eq!(max.len(), MAX_DIR_RECORD_LEN);
        assert!(DirRecord::parse(&max).is_ok());
        if let RecordBody::Registration(ref mut g) = rec.body {
            g.payload = &payload;
        }
        assert_eq!(rec.to_vec(), Err(WireError::BadLength));
        // The same overflow on the parse side: payload_len one more than fits.
        let mut over = max.clone();
        let at = over.len() - 388 - 2;
        over[at..at + 2].copy_from_slice(&389u16.to_be_bytes());
        over.push(2);
        assert_eq!(DirRecord::parse(&over), Err(WireError::BadLength));
        let mut small = [0u8; 10];
        assert_eq!(
            DirRecord::parse(&max).unwrap().emit(&mut small),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn forward_fixtures_both_ways() {
        let punch = hex("01 02 0102030405060708
             3333333333333333333333333333333333333333333333333333333333333333
             4444444444444444444444444444444444444444444444444444444444444444
             06 20010db8000000000000000000000001 1f90");
        let f = Forward {
            hops: 2,
            id: 0x0102_0304_0506_0708,
            target: Fingerprint([0x33; 32]),
            source: Fingerprint([0x44; 32]),
            body: ForwardBody::Punch("[2001:db8::1]:8080".parse().unwrap()),
        };
        assert_eq!(punch.len(), FORWARD_PUNCH_LEN);
        assert_eq!(Forward::parse(&punch), Ok(f));
        assert_eq!(f.to_vec(), Ok(punch.clone()));
        let mut trailing = punch.clone();
        trailing.push(0);
        assert_eq!(Forward::parse(&trailing), Err(WireError::TrailingData));
        for n in 0..punch.len() {
            assert_eq!(Forward::parse(&punch[..n]), Err(WireError::Truncated));
        }

        let relay = hex("02 00 ffffffffffffffff
             3333333333333333333333333333333333333333333333333333333333333333
             4444444444444444444444444444444444444444444444444444444444444444
             686921");
        let r = Forward {
            hops: 0,
            id: u64::MAX,
            target: Fingerprint([0x33; 32]),
            source: Fingerprint([0x44; 32]),
            body: ForwardBody::Relay(b"hi!"),
        };
        assert_eq!(Forward::parse(&relay), Ok(r));
        assert_eq!(r.to_vec(), Ok(relay.clone()));
        assert_eq!(Forward::parse(&relay[..74]), Err(WireError::Truncated));
        let mut big = relay[..74].to_vec();
        big.extend_from_slice(&[0; 1201]);
        assert_eq!(Forward::parse(&big), Err(WireError::BadLength));
        big.pop();
        assert_eq!(big.len(), MAX_FORWARD_LEN);
        assert!(Forward::parse(&big).is_ok());
        let mut kind = relay;
        kind[0] = 3;
        assert_eq!(Forward::parse(&kind), Err(WireError::UnknownCommand));
        let empty = Forward {
            body: ForwardBody::Relay(&[]),
            ..r
        };
        assert_eq!(empty.to_vec(), Err(WireError::BadLength));
    }
}

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(frames_of(
    &[16, 17, 18, 23],
    &["dir-record", "dir-end"]
));
