//! The hello: the first 257 bytes of every TCP connection, from the opener to the
//! acceptor, saying which role the opener speaks (docs/PROTOCOL.md §8.2). A valid hello is
//! not answered; a malformed one is refused with 400 (request 0) and close.
//!
//! ```text
//! +------+---------------------------------------------+
//! | role | name                                        |
//! |  u8  | 256 bytes, UTF-8 padded with NUL            |
//! +------+---------------------------------------------+
//!   role 1 = server (a federated peer), 2 = client; 257 bytes in all
//! ```

use super::contact::{check_text, put_text};
use crate::wire::bytes::{exact, room};
use crate::wire::name::{parse_padded, NAME_LEN};
use crate::wire::WireError;

/// Length of the hello, in bytes: role (1) + name (256) = 257 (docs/PROTOCOL.md §8.2).
pub const HELLO_LEN: usize = 1 + NAME_LEN;
/// Hello role byte: the opener is a server, a federated peer (docs/PROTOCOL.md §8.2).
pub const ROLE_SERVER: u8 = 1;
/// Hello role byte: the opener is a client (docs/PROTOCOL.md §8.2).
pub const ROLE_CLIENT: u8 = 2;

/// Offset of the role byte.
const ROLE: usize = 0;
/// Offsets of the name.
const NAME: core::ops::Range<usize> = 1..1 + NAME_LEN;

/// The role an opener announces in its hello (docs/PROTOCOL.md §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Byte 1: a federated server; speaks the server-role commands (docs/PROTOCOL.md §8.4).
    Server,
    /// Byte 2: a client; speaks the client-role commands (docs/PROTOCOL.md §8.3).
    Client,
}

impl TryFrom<u8> for Role {
    type Error = WireError;

    /// Reads a role byte.
    ///
    /// # Errors
    /// [`WireError::BadRole`] for any byte other than 1 or 2.
    fn try_from(b: u8) -> Result<Self, WireError> {
        match b {
            ROLE_SERVER => Ok(Role::Server),
            ROLE_CLIENT => Ok(Role::Client),
            _ => Err(WireError::BadRole),
        }
    }
}

impl From<Role> for u8 {
    fn from(r: Role) -> u8 {
        match r {
            Role::Server => ROLE_SERVER,
            Role::Client => ROLE_CLIENT,
        }
    }
}

/// Length of the hello at the start of `buf`: `Ok(None)` until all 257 bytes are there,
/// `Ok(Some(257))` then.
///
/// Reads only the first byte before the hello is complete, so a connection whose first
/// byte is no role can be refused at once (docs/PROTOCOL.md §8.14).
///
/// # Errors
/// [`WireError::BadRole`] when the first byte is neither 1 nor 2.
pub fn hello_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    match buf.first() {
        None => Ok(None),
        Some(&b) => {
            Role::try_from(b)?;
            Ok((buf.len() >= HELLO_LEN).then_some(HELLO_LEN))
        }
    }
}

/// The hello `[role u8][name 256]` that opens every connection: 257 bytes
/// (docs/PROTOCOL.md §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Who opened the connection.
    pub role: Role,
    /// The opener's name (server alias or client name), at most 256 bytes of UTF-8 with no
    /// NUL; may be empty (the wire does not forbid it).
    pub name: &'a str,
}

impl<'a> Hello<'a> {
    /// Parses a hello of exactly [`HELLO_LEN`] (257) bytes.
    ///
    /// # Errors
    /// [`WireError::Truncated`] under 257 bytes, [`WireError::TrailingData`] over;
    /// [`WireError::BadRole`] for a role byte other than 1 or 2; [`WireError::InteriorNul`]
    /// or [`WireError::BadUtf8`] for a malformed name.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        exact(buf, HELLO_LEN)?;
        let role = Role::try_from(buf[ROLE])?;
        let name = parse_padded(&buf[NAME])?;
        Ok(Hello { role, name })
    }

    /// Bytes [`Self::emit`] writes: always 257.
    pub fn buffer_len(&self) -> usize {
        HELLO_LEN
    }

    /// Writes the hello; returns 257.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] for a name over 256 bytes (never cut);
    /// [`WireError::InteriorNul`] for a name containing NUL; [`WireError::BufferTooSmall`].
    /// Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        check_text(self.name, NAME_LEN)?;
        room(buf, HELLO_LEN)?;
        buf[ROLE] = self.role.into();
        put_text(self.name, &mut buf[NAME]);
        Ok(HELLO_LEN)
    }
}

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(check_where(
    |f| f.frame == crate::wire::fixtures::Frame::Hello
));
