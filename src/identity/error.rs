//! The typed error every certificate, key and signature check in [`crate::identity`] returns.
//!
//! A small `Copy` enum so the UDP core can map it to a status code (401) and a short
//! detail text without allocating. Source: BRIEF.md, "Conventions" and "UDP plane".

/// Why a certificate, public key, PEM text or signature was refused.
///
/// Each message says what is wrong and, where there is one, what to do about it; the
/// texts are short enough to go into a type-7 error's detail field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a well-formed DER X.509 certificate (including bytes left over
    /// inside its outer SEQUENCE, after the signature).
    #[error("certificate is not a well-formed DER X.509 certificate")]
    CertMalformed,
    /// A well-formed certificate is followed by extra bytes: the certificate field must
    /// hold exactly one DER certificate and nothing else.
    #[error("certificate is followed by extra bytes; send exactly one DER certificate")]
    CertTrailingData,
    /// The certificate's issuer differs from its subject, so it is not self-signed.
    #[error("certificate is not self-signed (issuer differs from subject)")]
    NotSelfSigned,
    /// Issuer equals subject, but the signature on the certificate does not verify with
    /// the certificate's own public key (or uses an algorithm that cannot be checked).
    #[error(
        "certificate's self-signature does not verify with its own key \
         (or uses an unsupported signature algorithm)"
    )]
    BadSelfSignature,
    /// The current time is before the certificate's `notBefore`.
    #[error("certificate is not valid yet (check the clock, or the certificate's notBefore)")]
    NotYetValid,
    /// The current time is after the certificate's `notAfter`.
    #[error("certificate has expired; make a new one")]
    Expired,
    /// The certificate's key is neither Ed25519, ECDSA on P-256 (uncompressed point) nor
    /// RSA.
    #[error("unsupported key type; use Ed25519, ECDSA P-256 or RSA 2048-4096")]
    UnsupportedKey,
    /// An RSA key whose modulus is shorter than 2048 or longer than 4096 bits.
    #[error("RSA key size must be 2048 to 4096 bits")]
    RsaKeySize,
    /// The public key's bytes do not have the shape its algorithm requires (for example an
    /// Ed25519 key that is not 32 bytes, or a BIT STRING with unused bits).
    #[error("public key is malformed for its algorithm")]
    KeyMalformed,
    /// A signature did not verify with the certificate's key over the given message.
    #[error("signature does not verify with the certificate's key")]
    BadSignature,
    /// PEM text could not be read: a block without its END line, bad base64, or text
    /// that is not UTF-8 lines.
    #[error("PEM text is malformed (missing END line, bad base64, or not text)")]
    PemMalformed,
    /// Making a signature failed (only possible if the system random generator fails).
    #[error("signing failed: the system random number generator is unavailable")]
    SigningFailed,
}

impl IdentityError {
    /// The same text as `Display`, as a `&'static str`: for error replies (a type-7
    /// detail field) and logs on paths that must not allocate.
    pub fn detail(self) -> &'static str {
        use IdentityError as E;
        match self {
            E::CertMalformed => "certificate is not a well-formed DER X.509 certificate",
            E::CertTrailingData => {
                "certificate is followed by extra bytes; send exactly one DER certificate"
            }
            E::NotSelfSigned => "certificate is not self-signed (issuer differs from subject)",
            E::BadSelfSignature => {
                "certificate's self-signature does not verify with its own key \
                 (or uses an unsupported signature algorithm)"
            }
            E::NotYetValid => {
                "certificate is not valid yet (check the clock, or the certificate's notBefore)"
            }
            E::Expired => "certificate has expired; make a new one",
            E::UnsupportedKey => "unsupported key type; use Ed25519, ECDSA P-256 or RSA 2048-4096",
            E::RsaKeySize => "RSA key size must be 2048 to 4096 bits",
            E::KeyMalformed => "public key is malformed for its algorithm",
            E::BadSignature => "signature does not verify with the certificate's key",
            E::PemMalformed => "PEM text is malformed (missing END line, bad base64, or not text)",
            E::SigningFailed => "signing failed: the system random number generator is unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_matches_display_and_fits_a_detail_field() {
        for e in [
            IdentityError::CertMalformed,
            IdentityError::CertTrailingData,
            IdentityError::NotSelfSigned,
            IdentityError::BadSelfSignature,
            IdentityError::NotYetValid,
            IdentityError::Expired,
            IdentityError::UnsupportedKey,
            IdentityError::RsaKeySize,
            IdentityError::KeyMalformed,
            IdentityError::BadSignature,
            IdentityError::PemMalformed,
            IdentityError::SigningFailed,
        ] {
            assert_eq!(e.detail(), e.to_string());
            assert!(e.detail().len() <= 255);
        }
    }
}
