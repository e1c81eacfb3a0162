//! Payloads of the UDP plane's Root packet types 0-9: zero-copy views with an emit side.
//!
//! Source: seed 001 (types 0-4) and BRIEF.md, "UDP plane" (types 5-9 and the OK payload).
//! Every `parse` takes the Root payload slice; every `emit` writes into a caller buffer and
//! returns the bytes written. Addresses are `[family u8 (4|6)][addr 4|16][port u16]`, and an
//! IPv4-mapped IPv6 address is written as family 4.

use super::{Fingerprint, PacketType, WireError};
use byteorder::{BigEndian, ByteOrder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Length of an address-check cookie, in bytes.
pub const COOKIE_LEN: usize = 16;
/// Largest relayed event, in bytes (the smallest is 1).
pub const MAX_EVENT: usize = 1200;
/// Server event code 1: punch request.
pub const EVENT_PUNCH: u8 = 1;

/// Lookup answer status byte: online.
pub const STATUS_ONLINE: u8 = 0;
/// Lookup answer status byte: known but offline.
pub const STATUS_OFFLINE: u8 = 1;
/// Lookup answer status byte: unknown.
pub const STATUS_UNKNOWN: u8 = 2;

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], WireError> {
    let end = pos.checked_add(n).ok_or(WireError::Truncated)?;
    let s = buf.get(*pos..end).ok_or(WireError::Truncated)?;
    *pos = end;
    Ok(s)
}

fn room(buf: &[u8], n: usize) -> Result<(), WireError> {
    if buf.len() < n {
        Err(WireError::BufferTooSmall)
    } else {
        Ok(())
    }
}

/// Canonical form of an address for the wire: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Bytes `[family][addr][port]` take for `addr`: 7 for IPv4 (or mapped), 19 for IPv6.
pub fn addr_len(addr: SocketAddr) -> usize {
    match canonical_addr(addr) {
        SocketAddr::V4(_) => 7,
        SocketAddr::V6(_) => 19,
    }
}

/// Writes `[family u8][addr 4|16][port u16]`; returns the bytes written (7 or 19).
///
/// # Errors
/// [`WireError::BufferTooSmall`].
pub fn emit_addr(addr: SocketAddr, buf: &mut [u8]) -> Result<usize, WireError> {
    let addr = canonical_addr(addr);
    let n = addr_len(addr);
    room(buf, n)?;
    match addr.ip() {
        IpAddr::V4(ip) => {
            buf[0] = 4;
            buf[1..5].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf[0] = 6;
            buf[1..17].copy_from_slice(&ip.octets());
        }
    }
    BigEndian::write_u16(&mut buf[n - 2..n], addr.port());
    Ok(n)
}

/// Reads `[family u8][addr 4|16][port u16]` at `*pos`.
///
/// # Errors
/// [`WireError::BadFamily`] for a family other than 4 or 6; [`WireError::Truncated`].
pub fn parse_addr(buf: &[u8], pos: &mut usize) -> Result<SocketAddr, WireError> {
    let family = take(buf, pos, 1)?[0];
    let ip = match family {
        4 => {
            let b: [u8; 4] = take(buf, pos, 4)?
                .try_into()
                .map_err(|_| WireError::Truncated)?;
            IpAddr::V4(Ipv4Addr::from(b))
        }
        6 => {
            let b: [u8; 16] = take(buf, pos, 16)?
                .try_into()
                .map_err(|_| WireError::Truncated)?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return Err(WireError::BadFamily),
    };
    let port = BigEndian::read_u16(take(buf, pos, 2)?);
    Ok(SocketAddr::new(ip, port))
}

/// `Ok` when `pos` is the end of `buf`, else [`WireError::TrailingData`].
pub(crate) fn done(buf: &[u8], pos: usize) -> Result<(), WireError> {
    if pos == buf.len() {
        Ok(())
    } else {
        Err(WireError::TrailingData)
    }
}

/// Type 1 OK payload (BRIEF.md): `[keepalive_s u16][boot_epoch u32][family u8][addr][port u16]`,
/// 13 or 25 bytes. The seed's OK is empty; [`OkInfo::parse`] accepts both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkInfo {
    /// Advised keepalive interval, seconds.
    pub keepalive_s: u16,
    /// Changes when the server restarts.
    pub boot_epoch: u32,
    /// The client's own public (reflexive) address as the server sees it.
    pub reflexive: SocketAddr,
}

impl OkInfo {
    /// Parses an OK payload: `Ok(None)` when empty (the seed's OK).
    ///
    /// # Errors
    /// [`WireError::Truncated`], [`WireError::BadFamily`], [`WireError::TrailingData`].
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, WireError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let mut pos = 0;
        let keepalive_s = BigEndian::read_u16(take(buf, &mut pos, 2)?);
        let boot_epoch = BigEndian::read_u32(take(buf, &mut pos, 4)?);
        let reflexive = parse_addr(buf, &mut pos)?;
        done(buf, pos)?;
        Ok(Some(OkInfo {
            keepalive_s,
            boot_epoch,
            reflexive,
        }))
    }

    /// Bytes [`Self::emit`] writes: 13 or 25.
    pub fn buffer_len(&self) -> usize {
        6 + addr_len(self.reflexive)
    }

    /// Writes the payload; returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        room(buf, self.buffer_len())?;
        BigEndian::write_u16(&mut buf[0..2], self.keepalive_s);
        BigEndian::write_u32(&mut buf[2..6], self.boot_epoch);
        Ok(6 + emit_addr(self.reflexive, &mut buf[6..])?)
    }
}

/// Type 2 register payload: `[cert_len u16][cert DER][cookie 16]?` (seed 001; the cookie is
/// BRIEF.md's address check, absent on the first attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register<'a> {
    /// The certificate's DER bytes (1..=65535 bytes).
    pub cert: &'a [u8],
    /// The address-check cookie, if the client has one.
    pub cookie: Option<&'a [u8; COOKIE_LEN]>,
}

impl<'a> Register<'a> {
    /// Parses a register payload.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when `cert_len` runs past the end; [`WireError::BadLength`]
    /// for `cert_len` 0 or for 1..=15 or over 16 bytes after the certificate.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut pos = 0;
        let cert_len = usize::from(BigEndian::read_u16(take(buf, &mut pos, 2)?));
        if cert_len == 0 {
            return Err(WireError::BadLength);
        }
        let cert = take(buf, &mut pos, cert_len)?;
        let cookie = match buf.len() - pos {
            0 => None,
            COOKIE_LEN => Some(buf[pos..].try_into().map_err(|_| WireError::BadLength)?),
            _ => return Err(WireError::BadLength),
        };
        Ok(Register { cert, cookie })
    }

    /// Bytes [`Self::emit`] writes: 2 + cert + 0 or 16.
    pub fn buffer_len(&self) -> usize {
        2 + self.cert.len() + self.cookie.map_or(0, |_| COOKIE_LEN)
    }

    /// Writes the payload; returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`]; [`WireError::BadLength`] for an empty or over-65535-byte
    /// certificate.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.buffer_len();
        room(buf, n)?;
        let len = u16::try_from(self.cert.len()).map_err(|_| WireError::BadLength)?;
        if len == 0 {
            return Err(WireError::BadLength);
        }
        BigEndian::write_u16(&mut buf[0..2], len);
        buf[2..2 + self.cert.len()].copy_from_slice(self.cert);
        if let Some(c) = self.cookie {
            buf[2 + self.cert.len()..n].copy_from_slice(c);
        }
        Ok(n)
    }
}

/// Type 3 payload `[code u8][body]`: an event from the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    /// Code 1: `[peer fingerprint 32][family][addr][port]`, "this peer is about to send to
    /// you, send to it now" (40 or 52 bytes with the code).
    Punch {
        /// The peer that asked.
        peer: Fingerprint,
        /// The peer's public address.
        addr: SocketAddr,
    },
    /// Any other code, body kept as is.
    Unknown {
        /// The code byte.
        code: u8,
        /// The rest.
        body: &'a [u8],
    },
}

impl<'a> ServerEvent<'a> {
    /// Parses a type-3 payload.
    ///
    /// # Errors
    /// [`WireError::Truncated`], [`WireError::BadFamily`], [`WireError::TrailingData`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut pos = 0;
        let code = take(buf, &mut pos, 1)?[0];
        if code != EVENT_PUNCH {
            return Ok(ServerEvent::Unknown {
                code,
                body: &buf[1..],
            });
        }
        let peer = Fingerprint::from_slice(take(buf, &mut pos, 32)?).ok_or(WireError::Truncated)?;
        let addr = parse_addr(buf, &mut pos)?;
        done(buf, pos)?;
        Ok(ServerEvent::Punch { peer, addr })
    }

    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            ServerEvent::Punch { addr, .. } => 33 + addr_len(*addr),
            ServerEvent::Unknown { body, .. } => 1 + body.len(),
        }
    }

    /// Writes the payload; returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        room(buf, self.buffer_len())?;
        match self {
            ServerEvent::Punch { peer, addr } => {
                buf[0] = EVENT_PUNCH;
                buf[1..33].copy_from_slice(&peer.0);
                Ok(33 + emit_addr(*addr, &mut buf[33..])?)
            }
            ServerEvent::Unknown { code, body } => {
                buf[0] = *code;
                buf[1..1 + body.len()].copy_from_slice(body);
                Ok(1 + body.len())
            }
        }
    }
}

/// Type 4 payload `[fingerprint 32][event 1..=1200]`: c->s the fingerprint is the
/// destination, s->c it is the source (seed 001, BRIEF.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay<'a> {
    /// Destination (client to server) or source (server to client).
    pub peer: Fingerprint,
    /// The opaque event, 1..=1200 bytes.
    pub event: &'a [u8],
}

impl<'a> Relay<'a> {
    /// Parses a type-4 payload.
    ///
    /// # Errors
    /// [`WireError::Truncated`] under 33 bytes; [`WireError::BadLength`] for an event over
    /// 1200 bytes.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let peer = Fingerprint::from_slice(buf).ok_or(WireError::Truncated)?;
        let event = &buf[32..];
        if event.is_empty() {
            return Err(WireError::Truncated);
        }
        if event.len() > MAX_EVENT {
            return Err(WireError::BadLength);
        }
        Ok(Relay { peer, event })
    }

    /// Bytes [`Self::emit`] writes: 32 + event.
    pub fn buffer_len(&self) -> usize {
        32 + self.event.len()
    }

    /// Writes the payload; returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`]; [`WireError::BadLength`] for an empty or oversized event.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        if self.event.is_empty() || self.event.len() > MAX_EVENT {
            return Err(WireError::BadLength);
        }
        room(buf, self.buffer_len())?;
        buf[..32].copy_from_slice(&self.peer.0);
        buf[32..32 + self.event.len()].copy_from_slice(self.event);
        Ok(self.buffer_len())
    }
}

/// Type 5 payload: `[target fingerprint 32]`, exactly.
///
/// # Errors
/// [`WireError::Truncated`] under 32 bytes, [`WireError::TrailingData`] over.
pub fn parse_lookup(buf: &[u8]) -> Result<Fingerprint, WireError> {
    let fp = Fingerprint::from_slice(buf).ok_or(WireError::Truncated)?;
    done(buf, 32)?;
    Ok(fp)
}

/// The status part of a lookup answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupStatus {
    /// Status 0: online at `addr`, last seen `age_s` seconds ago.
    Online {
        /// Public address (family 4 for IPv4-mapped).
        addr: SocketAddr,
        /// Seconds since last seen.
        age_s: u32,
    },
    /// Status 1: known but offline, last seen `age_s` seconds ago.
    Offline {
        /// Seconds since last seen.
        age_s: u32,
    },
    /// Status 2: unknown.
    Unknown,
}

/// Type 6 payload (BRIEF.md):
/// `[target 32][status u8][family u8][addr 0|4|16][port u16][age_s u32][home_len u8][home]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupAnswer<'a> {
    /// The fingerprint asked about.
    pub target: Fingerprint,
    /// Online, offline or unknown.
    pub status: LookupStatus,
    /// Alias of the client's home server (UTF-8, at most 255 bytes).
    pub home: &'a str,
}

impl<'a> LookupAnswer<'a> {
    /// Parses a type-6 payload.
    ///
    /// # Errors
    /// [`WireError::BadStatus`], [`WireError::BadFamily`] (an address or a non-zero port with
    /// status 1 or 2, or no address with status 0), [`WireError::BadUtf8`], [`WireError::Truncated`],
    /// [`WireError::TrailingData`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut pos = 0;
        let target =
            Fingerprint::from_slice(take(buf, &mut pos, 32)?).ok_or(WireError::Truncated)?;
        let status = take(buf, &mut pos, 1)?[0];
        let status = match status {
            STATUS_ONLINE => {
                let addr = parse_addr(buf, &mut pos)?;
                let age_s = BigEndian::read_u32(take(buf, &mut pos, 4)?);
                LookupStatus::Online { addr, age_s }
            }
            STATUS_OFFLINE | STATUS_UNKNOWN => {
                if take(buf, &mut pos, 1)?[0] != 0 {
                    return Err(WireError::BadFamily);
                }
                if take(buf, &mut pos, 2)? != [0, 0] {
                    return Err(WireError::BadFamily); // no address: port must be 0
                }
                let age_s = BigEndian::read_u32(take(buf, &mut pos, 4)?);
                if status == STATUS_OFFLINE {
                    LookupStatus::Offline { age_s }
                } else {
                    LookupStatus::Unknown
                }
            }
            _ => return Err(WireError::BadStatus),
        };
        let home_len = usize::from(take(buf, &mut pos, 1)?[0]);
        let home =
            core::str::from_utf8(take(buf, &mut pos, home_len)?).map_err(|_| WireError::BadUtf8)?;
        done(buf, pos)?;
        Ok(LookupAnswer {
            target,
            status,
            home,
        })
    }

    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let addr = match self.status {
            LookupStatus::Online { addr, .. } => addr_len(addr),
            _ => 3,
        };
        32 + 1 + addr + 4 + 1 + self.home.len()
    }

    /// Writes the payload; returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`]; [`WireError::NameTooLong`] for a home alias over 255
    /// bytes (never cut).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let home_len = u8::try_from(self.home.len()).map_err(|_| WireError::NameTooLong)?;
        room(buf, self.buffer_len())?;
        buf[..32].copy_from_slice(&self.target.0);
        let mut pos = 33;
        let age = match self.status {
            LookupStatus::Online { addr, age_s } => {
                buf[32] = STATUS_ONLINE;
                pos += emit_addr(addr, &mut buf[33..])?;
                age_s
            }
            LookupStatus::Offline { age_s } => {
                buf[32] = STATUS_OFFLINE;
                buf[33..36].fill(0);
                pos += 3;
                age_s
            }
            LookupStatus::Unknown => {
                buf[32] = STATUS_UNKNOWN;
                buf[33..36].fill(0);
                pos += 3;
                0
            }
        };
        BigEndian::write_u32(&mut buf[pos..pos + 4], age);
        pos += 4;
        buf[pos] = home_len;
        pos += 1;
        buf[pos..pos + self.home.len()].copy_from_slice(self.home.as_bytes());
        Ok(pos + self.home.len())
    }
}

/// Type 7 payload (BRIEF.md): `[status u16][request type u8][detail_len u8][detail UTF-8]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    /// HTTP-like status: 400, 401, 403, 404, 409, 413, 429, 503.
    pub status: u16,
    /// The type byte of the request, 0xFF when it could not be read.
    pub request_type: u8,
    /// Human-readable detail, at most 255 bytes.
    pub detail: &'a str,
}

impl<'a> ErrorReply<'a> {
    /// Fixed bytes before the detail text.
    pub const FIXED_LEN: usize = 4;

    /// Parses a type-7 payload.
    ///
    /// # Errors
    /// [`WireError::Truncated`], [`WireError::BadUtf8`], [`WireError::TrailingData`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut pos = 0;
        let status = BigEndian::read_u16(take(buf, &mut pos, 2)?);
        let request_type = take(buf, &mut pos, 1)?[0];
        let n = usize::from(take(buf, &mut pos, 1)?[0]);
        let detail =
            core::str::from_utf8(take(buf, &mut pos, n)?).map_err(|_| WireError::BadUtf8)?;
        done(buf, pos)?;
        Ok(ErrorReply {
            status,
            request_type,
            detail,
        })
    }

    /// Bytes [`Self::emit`] writes: 4 + detail (detail cut to 255 bytes at a char boundary).
    pub fn buffer_len(&self) -> usize {
        Self::FIXED_LEN + cut_utf8(self.detail, 255).len()
    }

    /// Writes the payload, cutting the detail text at a character boundary so that the
    /// whole payload fits `buf` (an error reply may be shortened to stay no larger than the
    /// request). Returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] when not even the 4 fixed bytes fit.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        room(buf, Self::FIXED_LEN)?;
        let detail = cut_utf8(self.detail, (buf.len() - Self::FIXED_LEN).min(255));
        BigEndian::write_u16(&mut buf[0..2], self.status);
        buf[2] = self.request_type;
        buf[3] = detail.len() as u8; // <= 255 by cut_utf8
        buf[4..4 + detail.len()].copy_from_slice(detail.as_bytes());
        Ok(4 + detail.len())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Type 9 payload: `[cookie 16]`, exactly.
///
/// # Errors
/// [`WireError::Truncated`] under 16 bytes, [`WireError::TrailingData`] over.
pub fn parse_cookie(buf: &[u8]) -> Result<[u8; COOKIE_LEN], WireError> {
    let c: [u8; COOKIE_LEN] = buf
        .get(..COOKIE_LEN)
        .ok_or(WireError::Truncated)?
        .try_into()
        .map_err(|_| WireError::Truncated)?;
    done(buf, COOKIE_LEN)?;
    Ok(c)
}

/// Any UDP payload, decoded by its Root packet type (for clients, tools and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Type 0; the padding is ignored.
    Keepalive,
    /// Type 1, with the brief's payload or empty (seed).
    Ok(Option<OkInfo>),
    /// Type 2.
    Register(Register<'a>),
    /// Type 3.
    ServerEvent(ServerEvent<'a>),
    /// Type 4.
    Relay(Relay<'a>),
    /// Type 5: the target fingerprint.
    Lookup(Fingerprint),
    /// Type 6.
    LookupAnswer(LookupAnswer<'a>),
    /// Type 7.
    Error(ErrorReply<'a>),
    /// Type 8 (empty).
    Fetch,
    /// Type 9.
    Cookie([u8; COOKIE_LEN]),
}

impl<'a> Payload<'a> {
    /// Parses `buf` as the payload of a packet of type `ty`.
    ///
    /// # Errors
    /// The payload's own errors; [`WireError::TrailingData`] for a non-empty fetch;
    /// [`WireError::UnknownType`] for a type outside 0-9.
    pub fn parse(ty: PacketType, buf: &'a [u8]) -> Result<Self, WireError> {
        Ok(match ty {
            PacketType::Keepalive => Payload::Keepalive,
            PacketType::Ok => Payload::Ok(OkInfo::parse(buf)?),
            PacketType::Register => Payload::Register(Register::parse(buf)?),
            PacketType::ServerEvent => Payload::ServerEvent(ServerEvent::parse(buf)?),
            PacketType::Relay => Payload::Relay(Relay::parse(buf)?),
            PacketType::Lookup => Payload::Lookup(parse_lookup(buf)?),
            PacketType::LookupAnswer => Payload::LookupAnswer(LookupAnswer::parse(buf)?),
            PacketType::Error => Payload::Error(ErrorReply::parse(buf)?),
            PacketType::Fetch => {
                done(buf, 0)?;
                Payload::Fetch
            }
            PacketType::Cookie => Payload::Cookie(parse_cookie(buf)?),
            PacketType::Unknown(_) => return Err(WireError::UnknownType),
        })
    }

    /// The Root packet type this payload travels in.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Payload::Keepalive => PacketType::Keepalive,
            Payload::Ok(_) => PacketType::Ok,
            Payload::Register(_) => PacketType::Register,
            Payload::ServerEvent(_) => PacketType::ServerEvent,
            Payload::Relay(_) => PacketType::Relay,
            Payload::Lookup(_) => PacketType::Lookup,
            Payload::LookupAnswer(_) => PacketType::LookupAnswer,
            Payload::Error(_) => PacketType::Error,
            Payload::Fetch => PacketType::Fetch,
            Payload::Cookie(_) => PacketType::Cookie,
        }
    }

    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Payload::Keepalive | Payload::Fetch | Payload::Ok(None) => 0,
            Payload::Ok(Some(o)) => o.buffer_len(),
            Payload::Register(r) => r.buffer_len(),
            Payload::ServerEvent(e) => e.buffer_len(),
            Payload::Relay(r) => r.buffer_len(),
            Payload::Lookup(_) => 32,
            Payload::LookupAnswer(a) => a.buffer_len(),
            Payload::Error(e) => e.buffer_len(),
            Payload::Cookie(_) => COOKIE_LEN,
        }
    }

    /// Writes the payload into `buf`; returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] and each payload's own emit errors.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        match self {
            Payload::Keepalive | Payload::Fetch | Payload::Ok(None) => Ok(0),
            Payload::Ok(Some(o)) => o.emit(buf),
            Payload::Register(r) => r.emit(buf),
            Payload::ServerEvent(e) => e.emit(buf),
            Payload::Relay(r) => r.emit(buf),
            Payload::Lookup(fp) => {
                room(buf, 32)?;
                buf[..32].copy_from_slice(&fp.0);
                Ok(32)
            }
            Payload::LookupAnswer(a) => a.emit(buf),
            Payload::Error(e) => {
                room(buf, e.buffer_len())?;
                e.emit(buf)
            }
            Payload::Cookie(c) => {
                room(buf, COOKIE_LEN)?;
                buf[..COOKIE_LEN].copy_from_slice(c);
                Ok(COOKIE_LEN)
            }
        }
    }
}
