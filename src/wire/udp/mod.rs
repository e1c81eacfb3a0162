//! The UDP plane: the Root packet that carries every datagram ([`root`]) and the payloads
//! of its types 0-9, as zero-copy views with an emit side (docs/PROTOCOL.md §2, §3).
//!
//! Every payload `parse` takes the Root payload slice; every `emit` writes into a caller
//! buffer and returns the bytes written. [`Payload`] reads any of them by its Root type.
//!
//! ```text
//! one datagram = one Root packet (root.rs):
//! +--------+------+---------+-----------+-----------+----------------------------+
//! | params | type | sig_len | signature | timestamp | payload (this module)      |
//! +--------+------+---------+-----------+-----------+----------------------------+
//!
//! type  name            direction  payload                                  module
//!  0    keepalive       c->s       anything, ignored                        -
//!  1    OK              s->c       [keepalive_s u16][boot_epoch u32][addr]  ok.rs
//!  2    register        c->s       [cert_len u16][cert][cookie 16]?         register.rs
//!  3    server event    s->c       [code u8 = 1][peer 32][addr]             event.rs
//!  4    relayed event   both       [fingerprint 32][event 1..1200]          event.rs
//!  5    lookup          c->s       [target 32]                              lookup.rs
//!  6    lookup answer   s->c       [target 32][status][addr][age][home]     lookup.rs
//!  7    error           s->c       [status u16][request u8][detail_len][..] error_reply.rs
//!  8    fetch           c->s       empty                                    -
//!  9    cookie          s->c       [cookie 16]                              register.rs
//!
//! addr = [family u8 4|6][addr 4|16][port u16] (addr.rs)
//! ```

mod addr;
mod error_reply;
mod event;
mod lookup;
mod ok;
mod register;
pub mod root;

pub(crate) use addr::put_family_ip;
pub use addr::{addr_len, canonical_addr, emit_addr, parse_addr};
pub use error_reply::ErrorReply;
pub use event::{Relay, ServerEvent, EVENT_PUNCH, MAX_EVENT};
pub use lookup::{
    parse_lookup, LookupAnswer, LookupStatus, STATUS_OFFLINE, STATUS_ONLINE, STATUS_UNKNOWN,
};
pub use ok::OkInfo;
pub use register::{parse_cookie, Register, COOKIE_LEN, FLAG_UNLISTED};

use super::bytes::{done, room};
use super::{Fingerprint, PacketType, WireError};

/// Any UDP payload, decoded by its Root packet type (docs/PROTOCOL.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Type 0; the padding is ignored.
    Keepalive,
    /// Type 1, with its payload or empty.
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

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(datagrams_of(&[
    crate::wire::PacketType::Keepalive,
    crate::wire::PacketType::Fetch
]));
