//! Type 1, OK (server to client): the answer to an accepted registration
//! (docs/PROTOCOL.md §3, type 1). The bundled client also accepts an empty OK.
//!
//! ```text
//! +-------------+------------+--------+--------------+------+
//! | keepalive_s | boot_epoch | family | addr         | port |
//! |     u16     |    u32     |   u8   | 4 or 16      | u16  |
//! +-------------+------------+--------+--------------+------+
//!   13 bytes (IPv4) or 25 bytes (IPv6); the address is the client's reflexive address
//! ```

use super::addr::{addr_len, emit_addr, parse_addr};
use crate::wire::bytes::{done, room, take};
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};
use std::net::SocketAddr;

/// Type 1 OK payload: `[keepalive_s u16][boot_epoch u32][family u8][addr][port u16]`,
/// 13 or 25 bytes (docs/PROTOCOL.md §3, type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkInfo {
    /// Advised keepalive interval, seconds.
    pub keepalive_s: u16,
    /// Random per server start: changes when the server restarts.
    pub boot_epoch: u32,
    /// The client's own public (reflexive) address as the server sees it.
    pub reflexive: SocketAddr,
}

impl OkInfo {
    /// Parses an OK payload: `Ok(None)` when empty (an OK without the payload).
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

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(datagrams_of(&[crate::wire::PacketType::Ok]));
