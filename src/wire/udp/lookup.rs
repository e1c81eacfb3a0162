//! Type 5, lookup (client to server), and type 6, lookup answer (server to client)
//! (docs/PROTOCOL.md §3 types 5 and 6, §5.6).
//!
//! ```text
//! type 5, exactly 32 bytes:
//! +--------------------+
//! | target fingerprint |
//! | 32                 |
//! +--------------------+
//!
//! type 6, 41 + A + H bytes (A = 4, 16 or 0):
//! +--------+--------+--------+---------+------+-------+----------+------------+
//! | target | status | family | addr    | port | age_s | home_len | home alias |
//! | 32     |   u8   |   u8   | A bytes | u16  |  u32  |  u8 = H  | H, UTF-8   |
//! +--------+--------+--------+---------+------+-------+----------+------------+
//!   status 0 online (family 4 or 6), 1 offline, 2 unknown (family 0, port 0;
//!   age 0 for status 2)
//! ```

use super::addr::{addr_len, emit_addr, parse_addr};
use crate::wire::bytes::{done, room, take, take_short_text, take_u8};
use crate::wire::{Fingerprint, WireError};
use byteorder::{BigEndian, ByteOrder};
use std::net::SocketAddr;

/// Lookup answer status byte: online.
pub const STATUS_ONLINE: u8 = 0;
/// Lookup answer status byte: known but offline.
pub const STATUS_OFFLINE: u8 = 1;
/// Lookup answer status byte: unknown.
pub const STATUS_UNKNOWN: u8 = 2;

/// Type 5 payload: `[target fingerprint 32]`, exactly (docs/PROTOCOL.md §3, type 5).
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
        /// Public (reflexive) address (family 4 for IPv4-mapped).
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

/// Type 6 payload (docs/PROTOCOL.md §3, type 6):
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

/// Reads the status, address and age of a lookup answer at `*pos`.
fn parse_status(buf: &[u8], pos: &mut usize) -> Result<LookupStatus, WireError> {
    let status = take_u8(buf, pos)?;
    match status {
        STATUS_ONLINE => {
            let addr = parse_addr(buf, pos)?;
            let age_s = BigEndian::read_u32(take(buf, pos, 4)?);
            Ok(LookupStatus::Online { addr, age_s })
        }
        STATUS_OFFLINE | STATUS_UNKNOWN => {
            if take_u8(buf, pos)? != 0 {
                return Err(WireError::BadFamily);
            }
            if take(buf, pos, 2)? != [0, 0] {
                return Err(WireError::BadFamily); // no address: port must be 0
            }
            let age_s = BigEndian::read_u32(take(buf, pos, 4)?);
            Ok(if status == STATUS_OFFLINE {
                LookupStatus::Offline { age_s }
            } else {
                LookupStatus::Unknown
            })
        }
        _ => Err(WireError::BadStatus),
    }
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
        let status = parse_status(buf, &mut pos)?;
        let home = take_short_text(buf, &mut pos)?;
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

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(datagrams_of(&[
    crate::wire::PacketType::Lookup,
    crate::wire::PacketType::LookupAnswer
]));
