//! Type 3, server event (server to client: the punch request), and type 4, relayed event
//! (both ways) (docs/PROTOCOL.md §3 types 3 and 4, §5.6, §5.7).
//!
//! ```text
//! type 3, code 1 (punch request), 40 or 52 bytes:
//! +------+------------------+--------+---------+------+
//! | code | peer fingerprint | family | addr    | port |
//! |  u8  | 32               |   u8   | 4 or 16 | u16  |
//! +------+------------------+--------+---------+------+
//!
//! type 4, 33..1232 bytes:
//! +-------------+-----------------------------+
//! | fingerprint | event                       |
//! | 32          | 1..1200 bytes, opaque       |
//! +-------------+-----------------------------+
//!   client to server: the destination; server to client: the source
//! ```

use super::addr::{addr_len, emit_addr, parse_addr};
use crate::wire::bytes::{done, room, take, take_u8};
use crate::wire::{Fingerprint, WireError};
use std::net::SocketAddr;

/// Largest relayed event, in bytes (the smallest is 1; docs/PROTOCOL.md §3, type 4).
pub const MAX_EVENT: usize = 1200;
/// Server event code 1: punch request (docs/PROTOCOL.md §3, type 3).
pub const EVENT_PUNCH: u8 = 1;

/// Type 3 payload `[code u8][body]`: an event from the server itself (docs/PROTOCOL.md §3,
/// type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    /// Code 1: `[peer fingerprint 32][family][addr][port]`, "this peer is about to send to
    /// you, send to it now" (40 or 52 bytes with the code).
    Punch {
        /// The peer that asked.
        peer: Fingerprint,
        /// The peer's public (reflexive) address.
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
        let code = take_u8(buf, &mut pos)?;
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

/// Type 4 payload `[fingerprint 32][event 1..=1200]`: client to server the fingerprint is
/// the destination, server to client it is the source (docs/PROTOCOL.md §3, type 4).
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

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(datagrams_of(&[
    crate::wire::PacketType::ServerEvent,
    crate::wire::PacketType::Relay
]));
