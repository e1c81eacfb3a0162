//! Type 2, register (client to server): the client's certificate and, once it has one,
//! the address-check cookie; and type 9, the cookie the server answers a registration
//! without a valid one with (docs/PROTOCOL.md §3 types 2 and 9, §5.1, §5.2). A
//! registration must be signed with the certificate's key.
//!
//! ```text
//! type 2:
//! +----------+------------------+-----------+
//! | cert_len | certificate      | cookie    |
//! | u16 = C  | C bytes, DER     | 0 or 16   |
//! +----------+------------------+-----------+
//!   C is 1..65535; anything after the certificate but nothing or 16 bytes is malformed
//!
//! type 9:
//! +--------------------------------------+
//! | cookie, 16 bytes                     |
//! +--------------------------------------+
//! ```

use crate::wire::bytes::{done, room, take};
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};

/// Length of an address-check cookie, in bytes (docs/PROTOCOL.md §5.1).
pub const COOKIE_LEN: usize = 16;

/// Type 2 register payload: `[cert_len u16][cert DER][cookie 16]?` (docs/PROTOCOL.md §3,
/// type 2; the cookie is absent on a first attempt).
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

/// Type 9 cookie payload: `[cookie 16]`, exactly (docs/PROTOCOL.md §3, type 9): the answer
/// to a registration without a valid cookie.
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

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(datagrams_of(&[
    crate::wire::PacketType::Register,
    crate::wire::PacketType::Cookie
]));
