//! Type 7, error (server to client): an HTTP-like status ([`crate::wire::status`]), the
//! type byte of the refused packet and a detail text for people (docs/PROTOCOL.md §3
//! type 7, §4.1). The Root timestamp of an error is 0.
//!
//! ```text
//! +--------+--------------+------------+-------------------+
//! | status | request type | detail_len | detail            |
//! |  u16   |      u8      |   u8 = D   | D bytes, UTF-8    |
//! +--------+--------------+------------+-------------------+
//!   request type 0xFF when the Root packet could not be read (400, 413)
//! ```

use crate::wire::bytes::{done, room, take, take_short_text, take_u8};
use crate::wire::name::cut_utf8;
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};

/// Type 7 payload (docs/PROTOCOL.md §3, type 7):
/// `[status u16][request type u8][detail_len u8][detail UTF-8]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    /// HTTP-like status ([`crate::wire::status`]): 400, 401, 403, 404, 409, 413, 429, 503.
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
        let request_type = take_u8(buf, &mut pos)?;
        let detail = take_short_text(buf, &mut pos)?;
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
    /// request, docs/PROTOCOL.md §5.5). Returns its length.
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

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(datagrams_of(&[crate::wire::PacketType::Error]));
