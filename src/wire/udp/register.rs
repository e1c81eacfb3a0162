//! Type 2, register (client to server): the client's certificate, once it has one the
//! address-check cookie, and for an unlisted registration a flags byte; and type 9, the
//! cookie the server answers a registration without a valid one with (docs/PROTOCOL.md §3
//! types 2 and 9, §5.1, §5.2). A registration must be signed with the certificate's key.
//!
//! ```text
//! type 2:
//! +----------+------------------+-----------+---------+
//! | cert_len | certificate      | cookie    | flags   |
//! | u16 = C  | C bytes, DER     | 0 or 16   | 0 or 1  |
//! +----------+------------------+-----------+---------+
//!   C is 1..65535; after the certificate: nothing, 16 bytes (cookie), 1 byte (flags) or
//!   17 (cookie, flags), anything else is malformed; flags is 0x01 (unlisted), exactly
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

/// The register flags bit of an unlisted registration (docs/PROTOCOL.md §3 type 2, §5.2):
/// the source is bound to the fingerprint for its own requests, and the directory's
/// address of the fingerprint does not move.
pub const FLAG_UNLISTED: u8 = 0x01;

/// Type 2 register payload: `[cert_len u16][cert DER][cookie 16]?[flags u8]?`
/// (docs/PROTOCOL.md §3, type 2; the cookie is absent on a first attempt, the flags byte
/// on a listed registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register<'a> {
    /// The certificate's DER bytes (1..=65535 bytes).
    pub cert: &'a [u8],
    /// The address-check cookie, if the client has one.
    pub cookie: Option<&'a [u8; COOKIE_LEN]>,
    /// An unlisted registration (flags byte 0x01): it binds its source for the client's
    /// own requests without moving the fingerprint's address in the directory.
    pub unlisted: bool,
}

impl<'a> Register<'a> {
    /// A listed registration of `cert` (the directory's address of the fingerprint moves
    /// to its source), with `cookie` if the client has one.
    pub fn listed(cert: &'a [u8], cookie: Option<&'a [u8; COOKIE_LEN]>) -> Self {
        Register {
            cert,
            cookie,
            unlisted: false,
        }
    }

    /// Parses a register payload.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when `cert_len` runs past the end; [`WireError::BadLength`]
    /// for `cert_len` 0 or for a number of bytes after the certificate other than 0, 1, 16
    /// or 17; [`WireError::BadFlags`] for a flags byte other than 0x01.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut pos = 0;
        let cert_len = usize::from(BigEndian::read_u16(take(buf, &mut pos, 2)?));
        if cert_len == 0 {
            return Err(WireError::BadLength);
        }
        let cert = take(buf, &mut pos, cert_len)?;
        let rest = &buf[pos..];
        let (cookie, flags) = match rest.len() {
            0 => (None, None),
            1 => (None, Some(rest[0])),
            COOKIE_LEN => (Some(rest), None),
            n if n == COOKIE_LEN + 1 => (Some(&rest[..COOKIE_LEN]), Some(rest[COOKIE_LEN])),
            _ => return Err(WireError::BadLength),
        };
        let cookie = match cookie {
            Some(c) => Some(c.try_into().map_err(|_| WireError::BadLength)?),
            None => None,
        };
        let unlisted = match flags {
            None => false,
            Some(FLAG_UNLISTED) => true,
            Some(_) => return Err(WireError::BadFlags),
        };
        Ok(Register {
            cert,
            cookie,
            unlisted,
        })
    }

    /// Bytes [`Self::emit`] writes: 2 + cert + 0 or 16 (cookie) + 0 or 1 (flags).
    pub fn buffer_len(&self) -> usize {
        2 + self.cert.len() + self.cookie.map_or(0, |_| COOKIE_LEN) + usize::from(self.unlisted)
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
        let at = 2 + self.cert.len();
        if let Some(c) = self.cookie {
            buf[at..at + COOKIE_LEN].copy_from_slice(c);
        }
        if self.unlisted {
            buf[n - 1] = FLAG_UNLISTED;
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
