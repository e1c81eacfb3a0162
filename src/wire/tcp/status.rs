//! The status frame (byte 7): the acceptor's answer to a Barrier (200) or an AuthProof,
//! and its refusal of any hello or command, after which it closes (docs/PROTOCOL.md §8.6,
//! §8.14). Status codes are the UDP plane's ([`crate::wire::status`]).
//!
//! ```text
//! +------+--------+---------+------------+---------------------------+
//! | 0x07 | status | request | detail_len | detail                    |
//! |  u8  |  u16   |   u8    |   u8 = D   | UTF-8, D bytes            |
//! +------+--------+---------+------------+---------------------------+
//!   5 + D bytes; request = the command byte answered, 0 for the hello,
//!   0xFF when no single command is meant
//! ```

use crate::wire::bytes::{exact, room};
use crate::wire::name::cut_utf8;
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};
use core::ops::Range;

/// Byte 7: the status frame, sent by the accepting side only (docs/PROTOCOL.md §8.6).
pub const CMD_STATUS: u8 = 7;
/// Status frame `request` byte for an answer to the hello (docs/PROTOCOL.md §8.6).
pub const REQUEST_HELLO: u8 = 0;
/// Status frame `request` byte when there is no command byte to name (a store failure
/// while streaming); an unknown command is answered with its own byte
/// (docs/PROTOCOL.md §8.6).
pub const REQUEST_UNKNOWN: u8 = 0xFF;
/// The detail of the 503 that refuses every hello while the acceptor drains (stops on
/// SIGTERM or SIGINT; docs/PROTOCOL.md §7, "Signals", and §8.6): `draining`. Unlike other
/// details it is a contract: `rendezvous status` keys on it.
pub const DETAIL_DRAINING: &str = "draining";
/// The longest status frame: 5 fixed bytes + 255 bytes of detail = 260.
pub const MAX_STATUS_LEN: usize = StatusFrame::FIXED_LEN + StatusFrame::MAX_DETAIL;

/// Offset of the status code.
const STATUS: Range<usize> = 1..3;
/// Offset of the request byte.
const REQUEST: usize = 3;
/// Offset of the detail length.
const DETAIL_LEN: usize = 4;
/// Offset of the first byte of the detail.
const DETAIL: usize = 5;

/// The status frame `[0x07][status u16][request u8][detail_len u8][detail]`, sent by the
/// accepting side only (docs/PROTOCOL.md §8.6): 200 (a Barrier or AuthProof), or a refusal
/// 400, 401, 403, 404, 408, 409, 503 ([`crate::wire::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFrame<'a> {
    /// HTTP-like status code; any value parses.
    pub status: u16,
    /// The command byte answered: [`REQUEST_HELLO`] (0) for the hello,
    /// [`REQUEST_UNKNOWN`] (0xFF) when it could not be read.
    pub request: u8,
    /// Human-readable detail, UTF-8, at most 255 bytes on the wire.
    pub detail: &'a str,
}

impl<'a> StatusFrame<'a> {
    /// Fixed bytes before the detail, command byte included: 5.
    pub const FIXED_LEN: usize = 5;
    /// Longest detail on the wire, in bytes: 255.
    pub const MAX_DETAIL: usize = 255;

    /// Length of the status frame at the start of `buf`, for a reader of answers:
    /// `Ok(None)` when more bytes are needed, `Ok(Some(n))` (5 to 260) when the first `n`
    /// bytes are the whole frame. Reads the first byte, then the detail length once the 5
    /// fixed bytes are there.
    ///
    /// # Errors
    /// [`WireError::UnknownCommand`] when the first byte is not 7.
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
        match buf.first() {
            None => return Ok(None),
            Some(&CMD_STATUS) => {}
            Some(_) => return Err(WireError::UnknownCommand),
        }
        let Some(&detail_len) = buf.get(DETAIL_LEN) else {
            return Ok(None);
        };
        let n = Self::FIXED_LEN + usize::from(detail_len);
        Ok((buf.len() >= n).then_some(n))
    }

    /// Parses one whole status frame, 0x07 byte included.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when the frame ends before its detail does,
    /// [`WireError::TrailingData`] when bytes follow it; [`WireError::UnknownCommand`] when
    /// the first byte is not 7; [`WireError::BadUtf8`] for a detail that is not UTF-8.
    pub fn parse(frame: &'a [u8]) -> Result<Self, WireError> {
        match frame.first() {
            None => return Err(WireError::Truncated),
            Some(&CMD_STATUS) => {}
            Some(_) => return Err(WireError::UnknownCommand),
        }
        if frame.len() < Self::FIXED_LEN {
            return Err(WireError::Truncated);
        }
        let n = Self::FIXED_LEN + usize::from(frame[DETAIL_LEN]);
        exact(frame, n)?;
        let detail = core::str::from_utf8(&frame[DETAIL..n]).map_err(|_| WireError::BadUtf8)?;
        Ok(StatusFrame {
            status: BigEndian::read_u16(&frame[STATUS]),
            request: frame[REQUEST],
            detail,
        })
    }

    /// The status code of the whole frame `frame` without reading its detail (a refusal
    /// is a refusal even when its detail is not UTF-8); `None` under 3 bytes or when the
    /// first byte is not 7.
    pub fn peek_status(frame: &[u8]) -> Option<u16> {
        match frame.first() {
            Some(&CMD_STATUS) => frame.get(STATUS).map(BigEndian::read_u16),
            _ => None,
        }
    }

    /// Bytes [`Self::emit`] writes: 5 + the detail cut to 255 bytes at a char boundary.
    pub fn buffer_len(&self) -> usize {
        Self::FIXED_LEN + cut_utf8(self.detail, Self::MAX_DETAIL).len()
    }

    /// Writes the frame, cutting the detail to at most 255 bytes at a character boundary
    /// (the detail is advisory text, so it is cut where names are refused); returns its
    /// length (5 to 260).
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] when `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let detail = cut_utf8(self.detail, Self::MAX_DETAIL);
        let n = Self::FIXED_LEN + detail.len();
        room(buf, n)?;
        buf[0] = CMD_STATUS;
        BigEndian::write_u16(&mut buf[STATUS], self.status);
        buf[REQUEST] = self.request;
        buf[DETAIL_LEN] = detail.len() as u8; // <= 255 by cut_utf8
        buf[DETAIL..n].copy_from_slice(detail.as_bytes());
        Ok(n)
    }
}

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(frames_of(&[], &["status"]));
