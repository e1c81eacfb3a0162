//! Text on the wire: the TCP plane's fixed-width, NUL-padded UTF-8 fields (256-byte names,
//! 20-byte phone numbers; docs/PROTOCOL.md §1 "Names"), and the cut of advisory detail
//! texts at a character boundary (docs/PROTOCOL.md §3 type 7, §8.6).
//!
//! ```text
//! +---------------------------+----------------------------+
//! | text, UTF-8, no NUL       | NUL bytes up to the width  |
//! +---------------------------+----------------------------+
//!   name: 256 bytes in all; phone: 20 bytes in all
//! ```
//!
//! Text longer than the field is refused, not cut; invalid UTF-8 or a NUL followed by a
//! non-NUL byte is malformed. Only detail texts (errors, status frames) are ever cut.

use super::WireError;

/// Width of a name field (usernames, contact names, server names), in bytes.
pub const NAME_LEN: usize = 256;
/// Width of a phone-number field, in bytes.
pub const PHONE_LEN: usize = 20;

/// Reads a NUL-padded field (any width) as text, without copying.
///
/// # Errors
/// [`WireError::InteriorNul`] when a NUL is followed by a non-NUL byte;
/// [`WireError::BadUtf8`] when the text before the padding is not UTF-8.
pub fn parse_padded(field: &[u8]) -> Result<&str, WireError> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    if field[end..].iter().any(|&b| b != 0) {
        return Err(WireError::InteriorNul);
    }
    core::str::from_utf8(&field[..end]).map_err(|_| WireError::BadUtf8)
}

/// Writes `text` into `field`, padding the rest with NUL bytes.
///
/// # Errors
/// [`WireError::NameTooLong`] when `text` is longer than the field;
/// [`WireError::InteriorNul`] when `text` itself contains a NUL byte.
pub fn emit_padded(text: &str, field: &mut [u8]) -> Result<(), WireError> {
    let bytes = text.as_bytes();
    if bytes.len() > field.len() {
        return Err(WireError::NameTooLong);
    }
    if bytes.contains(&0) {
        return Err(WireError::InteriorNul);
    }
    field[..bytes.len()].copy_from_slice(bytes);
    field[bytes.len()..].fill(0);
    Ok(())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary
/// (how detail texts of errors and status frames are shortened; docs/PROTOCOL.md §3
/// type 7, §8.6).
pub fn cut_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_fields() {
        let mut f = [0u8; NAME_LEN];
        emit_padded("Beloin", &mut f).unwrap();
        assert_eq!(&f[..7], b"Beloin\0");
        assert_eq!(parse_padded(&f), Ok("Beloin"));
        let full = "é".repeat(128);
        emit_padded(&full, &mut f).unwrap();
        assert_eq!(parse_padded(&f), Ok(full.as_str()));
        assert_eq!(
            emit_padded(&"x".repeat(257), &mut f),
            Err(WireError::NameTooLong)
        );
        let mut p = [0u8; PHONE_LEN];
        p[0] = b'1';
        p[2] = b'2';
        assert_eq!(parse_padded(&p), Err(WireError::InteriorNul));
        p[2] = 0;
        p[0] = 0xff;
        assert_eq!(parse_padded(&p), Err(WireError::BadUtf8));
    }

    #[test]
    fn cut_at_char_boundary() {
        assert_eq!(cut_utf8("abc", 5), "abc");
        assert_eq!(cut_utf8("abc", 2), "ab");
        assert_eq!(cut_utf8("aé", 2), "a");
        assert_eq!(cut_utf8("é", 0), "");
    }
}
