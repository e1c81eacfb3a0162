//! The contact fields of the TCP plane, and the records and count of the ListAll and
//! AskForUpdate answers that carry them (docs/PROTOCOL.md §8.3-§8.5, §8.13). A record is
//! byte for byte an Update frame of its role, so the same layout serves both.
//!
//! ```text
//! contact fields (532 bytes):
//! +------------------+------------------+----------+
//! | username         | contactname      | phone    |
//! | 256, NUL-padded  | 256, NUL-padded  | 20       |
//! +------------------+------------------+----------+
//!
//! ListAll answer:      [count u32] then count x  0x01 [fields 532]             533 each
//! AskForUpdate answer: [count u32] then count x  0x01 [clock u32][fields 532]  537 each
//! ```

use crate::wire::bytes::{exact, room};
use crate::wire::name::{parse_padded, NAME_LEN, PHONE_LEN};
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};
use core::ops::Range;

/// Body of a client-role Update (the contact fields), in bytes: 256 + 256 + 20 = 532
/// (docs/PROTOCOL.md §8.3).
pub const CLIENT_UPDATE_LEN: usize = 2 * NAME_LEN + PHONE_LEN;
/// Body of a server-role Update, in bytes: clock (4) + contact fields (532) = 536
/// (docs/PROTOCOL.md §8.4).
pub const SERVER_UPDATE_LEN: usize = 4 + CLIENT_UPDATE_LEN;
/// Length of the count that starts a ListAll or AskForUpdate answer, in bytes
/// (docs/PROTOCOL.md §8.5).
pub const COUNT_LEN: usize = 4;
/// Length of one record of a ListAll answer: 0x01 + 532 = 533 bytes (docs/PROTOCOL.md §8.5).
pub const CLIENT_RECORD_LEN: usize = 1 + CLIENT_UPDATE_LEN;
/// Length of one record of an AskForUpdate answer: 0x01 + 536 = 537 bytes
/// (docs/PROTOCOL.md §8.5).
pub const SERVER_RECORD_LEN: usize = 1 + SERVER_UPDATE_LEN;

/// The command byte that starts every record (an Update frame, docs/PROTOCOL.md §8.5).
const RECORD_BYTE: u8 = 1;
/// Offsets within the contact fields: username.
const USERNAME: Range<usize> = 0..NAME_LEN;
/// Contact name.
const CONTACT: Range<usize> = NAME_LEN..2 * NAME_LEN;
/// Phone.
const PHONE: Range<usize> = 2 * NAME_LEN..2 * NAME_LEN + PHONE_LEN;

/// Checks that `text` fits a NUL-padded field of `width` bytes (what
/// [`crate::wire::name::emit_padded`] checks, done up front so that an emit writes nothing
/// when it fails).
#[inline]
pub(crate) fn check_text(text: &str, width: usize) -> Result<(), WireError> {
    if text.len() > width {
        return Err(WireError::NameTooLong);
    }
    if text.as_bytes().contains(&0) {
        return Err(WireError::InteriorNul);
    }
    Ok(())
}

/// Writes checked text into a field, padding with NUL.
#[inline]
pub(crate) fn put_text(text: &str, field: &mut [u8]) {
    let b = text.as_bytes();
    field[..b.len()].copy_from_slice(b);
    field[b.len()..].fill(0);
}

/// Why a contact field does not fit the wire, naming the field (docs/PROTOCOL.md §1
/// "Names", §8.3): text is refused, never cut. [`ContactFields::check_each`] returns it;
/// [`Self::wire_error`] is the same refusal as a [`WireError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// `field` is `len` bytes of UTF-8, more than its `max` bytes (256 for the username
    /// and the contact name, 20 for the phone).
    #[error(
        "{field} is {len} bytes, longer than its field of {max} bytes (text is refused, not cut)"
    )]
    TooLong {
        /// `username`, `contact` or `phone`.
        field: &'static str,
        /// The text's length, in bytes.
        len: usize,
        /// The field's width, in bytes.
        max: usize,
    },
    /// `field` contains a NUL byte, which the padding cannot carry.
    #[error("{field} contains a NUL byte")]
    Nul {
        /// `username`, `contact` or `phone`.
        field: &'static str,
    },
}

impl FieldError {
    /// The same refusal as the codecs report it: [`WireError::NameTooLong`] or
    /// [`WireError::InteriorNul`].
    pub fn wire_error(self) -> WireError {
        match self {
            FieldError::TooLong { .. } => WireError::NameTooLong,
            FieldError::Nul { .. } => WireError::InteriorNul,
        }
    }
}

/// The contact fields `[username 256][contactname 256][phone 20]` shared by both roles'
/// Update, JournalUpdate and the answer records: 532 bytes (docs/PROTOCOL.md §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContactFields<'a> {
    /// The owner of the contact list, at most 256 bytes of UTF-8.
    pub username: &'a str,
    /// The contact's name, at most 256 bytes of UTF-8.
    pub contact: &'a str,
    /// The phone number, at most 20 bytes of UTF-8.
    pub phone: &'a str,
}

impl<'a> ContactFields<'a> {
    /// Length of the fields on the wire: 532 bytes.
    pub const LEN: usize = CLIENT_UPDATE_LEN;

    /// Parses exactly 532 bytes of contact fields.
    ///
    /// # Errors
    /// [`WireError::Truncated`] under 532 bytes, [`WireError::TrailingData`] over;
    /// [`WireError::InteriorNul`] for a field with a NUL followed by text;
    /// [`WireError::BadUtf8`] for a field that is not UTF-8.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        exact(buf, Self::LEN)?;
        Ok(ContactFields {
            username: parse_padded(&buf[USERNAME])?,
            contact: parse_padded(&buf[CONTACT])?,
            phone: parse_padded(&buf[PHONE])?,
        })
    }

    /// Checks that every field fits its width and holds no NUL.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] for a username or contact over 256 bytes or a phone over
    /// 20; [`WireError::InteriorNul`] for a field containing NUL.
    pub fn check(&self) -> Result<(), WireError> {
        self.check_each().map_err(FieldError::wire_error)
    }

    /// As [`Self::check`], naming the first field that does not fit (username, contact,
    /// phone, in that order) and its width: for messages to people.
    ///
    /// # Errors
    /// [`FieldError::TooLong`] or [`FieldError::Nul`].
    pub fn check_each(&self) -> Result<(), FieldError> {
        let fields = [
            ("username", self.username, NAME_LEN),
            ("contact", self.contact, NAME_LEN),
            ("phone", self.phone, PHONE_LEN),
        ];
        for (field, text, max) in fields {
            match check_text(text, max) {
                Ok(()) => {}
                Err(WireError::NameTooLong) => {
                    let len = text.len();
                    return Err(FieldError::TooLong { field, len, max });
                }
                Err(_) => return Err(FieldError::Nul { field }),
            }
        }
        Ok(())
    }

    /// Writes the 532 bytes; returns 532.
    ///
    /// # Errors
    /// Those of [`Self::check`] (text is refused, never cut); [`WireError::BufferTooSmall`].
    /// Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        room(buf, Self::LEN)?;
        self.put(&mut buf[..Self::LEN]);
        Ok(Self::LEN)
    }

    /// Writes checked fields into exactly 532 bytes.
    pub(crate) fn put(&self, buf: &mut [u8]) {
        put_text(self.username, &mut buf[USERNAME]);
        put_text(self.contact, &mut buf[CONTACT]);
        put_text(self.phone, &mut buf[PHONE]);
    }
}

/// Writes the `[count u32]` that starts a ListAll or AskForUpdate answer; returns 4
/// (docs/PROTOCOL.md §8.5).
///
/// # Errors
/// [`WireError::BufferTooSmall`].
pub fn emit_count(count: u32, buf: &mut [u8]) -> Result<usize, WireError> {
    room(buf, COUNT_LEN)?;
    BigEndian::write_u32(&mut buf[..COUNT_LEN], count);
    Ok(COUNT_LEN)
}

/// Reads the `[count u32]` that starts a ListAll or AskForUpdate answer: exactly 4 bytes
/// (docs/PROTOCOL.md §8.5).
///
/// # Errors
/// [`WireError::Truncated`] under 4 bytes, [`WireError::TrailingData`] over.
pub fn parse_count(buf: &[u8]) -> Result<u32, WireError> {
    exact(buf, COUNT_LEN)?;
    Ok(BigEndian::read_u32(buf))
}

/// Writes one ListAll record, `0x01` + the 532-byte contact fields (a complete client
/// Update); returns 533 (docs/PROTOCOL.md §8.5).
///
/// # Errors
/// Those of [`ContactFields::emit`]. Nothing is written on error.
pub fn emit_client_record(fields: &ContactFields<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    fields.check()?;
    room(buf, CLIENT_RECORD_LEN)?;
    buf[0] = RECORD_BYTE;
    fields.put(&mut buf[1..CLIENT_RECORD_LEN]);
    Ok(CLIENT_RECORD_LEN)
}

/// The record byte at the start of `rec`, checked.
fn record_byte(rec: &[u8]) -> Result<(), WireError> {
    match rec.first() {
        None => Err(WireError::Truncated),
        Some(&RECORD_BYTE) => Ok(()),
        Some(_) => Err(WireError::UnknownCommand),
    }
}

/// Reads one ListAll record of exactly 533 bytes: `0x01` + the contact fields
/// (docs/PROTOCOL.md §8.5).
///
/// # Errors
/// [`WireError::UnknownCommand`] when the first byte is not 1; [`WireError::Truncated`]
/// or [`WireError::TrailingData`] for any length but 533; the errors of
/// [`ContactFields::parse`].
pub fn parse_client_record(rec: &[u8]) -> Result<ContactFields<'_>, WireError> {
    record_byte(rec)?;
    ContactFields::parse(&rec[1..])
}

/// Writes one AskForUpdate record, `0x01 [clock u32]` + the 532-byte contact fields (a
/// complete server Update); returns 537 (docs/PROTOCOL.md §8.5).
///
/// # Errors
/// Those of [`ContactFields::emit`]. Nothing is written on error.
pub fn emit_server_record(
    clock: u32,
    fields: &ContactFields<'_>,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    fields.check()?;
    room(buf, SERVER_RECORD_LEN)?;
    buf[0] = RECORD_BYTE;
    BigEndian::write_u32(&mut buf[1..5], clock);
    fields.put(&mut buf[5..SERVER_RECORD_LEN]);
    Ok(SERVER_RECORD_LEN)
}

/// Reads one AskForUpdate record of exactly 537 bytes: `0x01 [clock u32]` + the contact
/// fields (docs/PROTOCOL.md §8.5). Returns the clock and the fields.
///
/// # Errors
/// [`WireError::UnknownCommand`] when the first byte is not 1; [`WireError::Truncated`]
/// or [`WireError::TrailingData`] for any length but 537; the errors of
/// [`ContactFields::parse`].
pub fn parse_server_record(rec: &[u8]) -> Result<(u32, ContactFields<'_>), WireError> {
    record_byte(rec)?;
    if rec.len() < 5 {
        return Err(WireError::Truncated);
    }
    let fields = ContactFields::parse(&rec[5..])?;
    Ok((BigEndian::read_u32(&rec[1..5]), fields))
}

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(frames_of(
    &[1, 13],
    &["count", "client-record", "server-record"]
));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_that_does_not_fit_is_named_with_its_width() {
        let f = |username, contact, phone| ContactFields {
            username,
            contact,
            phone,
        };
        let long = "9".repeat(21);
        let e = f("alice", "bob", &long).check_each().expect_err("phone");
        assert_eq!(
            e,
            FieldError::TooLong {
                field: "phone",
                len: 21,
                max: 20
            }
        );
        assert_eq!(
            e.to_string(),
            "phone is 21 bytes, longer than its field of 20 bytes (text is refused, not cut)"
        );
        let name = "é".repeat(129);
        let e = f("alice", &name, "1").check_each().expect_err("contact");
        assert_eq!(
            e,
            FieldError::TooLong {
                field: "contact",
                len: 258,
                max: 256
            }
        );
        let e = f("a\0b", "bob", "1").check_each().expect_err("nul");
        assert_eq!(e, FieldError::Nul { field: "username" });
        assert_eq!(f("a\0b", "b", "1").check(), Err(WireError::InteriorNul));
        assert_eq!(f("a", "b", &long).check(), Err(WireError::NameTooLong));
        assert_eq!(
            f(&"u".repeat(256), "b", &"9".repeat(20)).check_each(),
            Ok(())
        );
    }
}
