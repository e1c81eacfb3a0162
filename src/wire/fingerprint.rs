//! The 32-byte SHA-256 certificate fingerprint that names a client everywhere on the wire
//! (docs/PROTOCOL.md §1 "Fingerprint").
//!
//! ```text
//! +----------------------------------------------+
//! | SHA-256 of the certificate's DER bytes, 32   |
//! +----------------------------------------------+
//! ```
//!
//! Shown to people as 64 lowercase hex digits (what `openssl x509 -fingerprint -sha256`
//! prints, without the colons).

use core::fmt;

/// A certificate fingerprint: SHA-256 of the certificate's exact DER bytes (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fingerprint(pub [u8; 32]);

/// Why a fingerprint's hex text was refused by [`Fingerprint::from_hex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintParseError {
    /// The text is not 64 characters long (colons, as openssl prints them, are allowed).
    #[error("a fingerprint is 64 hex digits (SHA-256), got {0} digits")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("a fingerprint is 64 hex digits; found a non-hex character")]
    NotHex,
}

impl Fingerprint {
    /// Length of a fingerprint on the wire, in bytes.
    pub const LEN: usize = 32;

    /// Reads a fingerprint from 64 hex digits, either case, with or without `:` separators
    /// (so `openssl x509 -fingerprint -sha256` output after the `=` is accepted).
    ///
    /// # Errors
    /// [`FingerprintParseError`] when the text is not exactly 32 bytes of hex.
    pub fn from_hex(text: &str) -> Result<Self, FingerprintParseError> {
        let mut out = [0u8; 32];
        let mut n = 0usize;
        let mut hi: Option<u8> = None;
        for c in text.trim().bytes() {
            if c == b':' {
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(FingerprintParseError::NotHex),
            };
            match hi.take() {
                None => hi = Some(v),
                Some(h) => {
                    if n < 32 {
                        out[n] = (h << 4) | v;
                    }
                    n += 1;
                }
            }
        }
        let digits = n * 2 + usize::from(hi.is_some());
        if digits != 64 {
            return Err(FingerprintParseError::Length(digits));
        }
        Ok(Fingerprint(out))
    }

    /// The fingerprint as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        format!("{self}")
    }

    /// Takes the first 32 bytes of `bytes` as a fingerprint; `None` if fewer than 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let b: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
        Some(Fingerprint(b))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_openssl_colons() {
        let fp = Fingerprint([0xab; 32]);
        assert_eq!(fp.to_hex(), "ab".repeat(32));
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()).unwrap(), fp);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(Fingerprint::from_hex(&colons).unwrap(), fp);
        assert_eq!(
            Fingerprint::from_hex("abc"),
            Err(FingerprintParseError::Length(3))
        );
        assert_eq!(
            Fingerprint::from_hex(&"zz".repeat(32)),
            Err(FingerprintParseError::NotHex)
        );
    }
}
