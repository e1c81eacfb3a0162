//! The typed errors of [`crate::identity`]: [`IdentityError`], what every certificate, key
//! and signature check returns (a small `Copy` enum, so the UDP core can map it to a status
//! code, 401, and a short detail text without allocating; docs/PROTOCOL.md §5.4), and
//! [`SignerError`], what making, loading and saving a client's own identity returns (each
//! message names the file and what is wrong).

use super::KeyAlgorithm;
use std::path::PathBuf;

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

/// Why an [`super::Identity`] could not be made, loaded or saved. Each message names the
/// file (or "the generated certificate" / "the generated key") and what is wrong, and where
/// there is one, what to do about it; I/O and rcgen failures carry their cause as
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// [`super::Identity::generate`] with [`KeyAlgorithm::Rsa`]: ring cannot make RSA keys.
    #[error(
        "cannot generate RSA keys; use ed25519 or ecdsa-p256, or make an RSA key \
         with `openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem` \
         and load it"
    )]
    CannotGenerateRsa,
    /// An empty common name for a new certificate.
    #[error("the certificate's common name must not be empty")]
    EmptyCommonName,
    /// A common name over `max` characters (X.520 `ub-common-name`: 64).
    #[error("the certificate's common name is longer than {max} characters")]
    CommonNameTooLong {
        /// The longest allowed, in characters.
        max: usize,
    },
    /// The system clock reads before 1970, or too far ahead for a certificate date.
    #[error("the system clock is {0}")]
    Clock(&'static str),
    /// A validity date of a new certificate could not be made (`which`: "start" or "end").
    #[error("certificate {which} time: {reason}")]
    Validity {
        /// "start" (`notBefore`) or "end" (`notAfter`).
        which: &'static str,
        /// What the date library said.
        reason: String,
    },
    /// Making a new key pair failed.
    #[error("generating a {alg} key")]
    KeyGeneration {
        /// The algorithm asked for.
        alg: KeyAlgorithm,
        /// What rcgen said.
        source: rcgen::Error,
    },
    /// Signing a new certificate failed.
    #[error("signing the new certificate")]
    SelfSign(#[source] rcgen::Error),
    /// Neither `DIR/cert.pem` nor `DIR/cert.der` exists.
    #[error("no certificate in {}: neither {} nor {} exists", dir.display(), super::CERT_FILE, super::CERT_DER_FILE)]
    NoCertificate {
        /// The identity directory.
        dir: PathBuf,
    },
    /// A certificate file exists but could not be read.
    #[error("reading {}", path.display())]
    ReadCert {
        /// The certificate file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The private key file is missing or could not be read.
    #[error("reading the private key {}", path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key that fails a check: malformed PEM, a malformed certificate, an
    /// unsupported key (`file` names it).
    #[error("{file}: {reason}")]
    Refused {
        /// The file (or "the generated certificate").
        file: String,
        /// What is wrong with it.
        reason: super::IdentityError,
    },
    /// A PEM certificate file without a `CERTIFICATE` block.
    #[error("{}: no CERTIFICATE PEM block found", path.display())]
    NoCertificateBlock {
        /// The certificate file.
        path: PathBuf,
    },
    /// A PEM certificate file with `count` certificates instead of one.
    #[error(
        "{}: holds {count} certificates; expected exactly one (the self-signed client \
         certificate)",
        path.display()
    )]
    SeveralCertificates {
        /// The certificate file.
        path: PathBuf,
        /// How many it holds (2 or more).
        count: usize,
    },
    /// The private key is encrypted (`ENCRYPTED PRIVATE KEY`).
    #[error(
        "{}: the private key is encrypted; write it unencrypted with \
         `openssl pkey -in key.pem -out key.pem` (or make it with -nodes)",
        path.display()
    )]
    EncryptedKey {
        /// The key file.
        path: PathBuf,
    },
    /// The key file holds no private key block this crate reads.
    #[error(
        "{}: no PEM block labelled PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY",
        path.display()
    )]
    NoKeyBlock {
        /// The key file.
        path: PathBuf,
    },
    /// The key is not of the kind the certificate's public key needs.
    #[error("{key}: not a {kind} private key ({rejected}), but {cert} holds an {alg} public key")]
    WrongKeyKind {
        /// The key file (or "the generated key").
        key: String,
        /// The kind tried, e.g. "PKCS#8 Ed25519".
        kind: &'static str,
        /// What ring said of the key.
        rejected: ring::error::KeyRejected,
        /// The certificate file.
        cert: String,
        /// The certificate's key algorithm.
        alg: KeyAlgorithm,
    },
    /// A SEC1 `EC PRIVATE KEY` that is malformed or not on P-256.
    #[error("{key}: {reason}")]
    BadSec1Key {
        /// The key file.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key's PEM label cannot hold the certificate's kind of key.
    #[error("{key}: a {label:?} PEM block cannot hold the {alg} key {cert} needs")]
    WrongLabel {
        /// The key file.
        key: String,
        /// The key's PEM label.
        label: &'static str,
        /// The certificate's key algorithm.
        alg: KeyAlgorithm,
        /// The certificate file.
        cert: String,
    },
    /// A SEC1 private key that ring refuses with the certificate's public key: it belongs
    /// to another certificate.
    #[error("{key}: this private key does not belong to {cert}")]
    KeyMismatch {
        /// The key file.
        key: String,
        /// The certificate file.
        cert: String,
    },
    /// The private key's public key differs from the certificate's.
    #[error("{key}: this private key does not belong to {cert} (public keys differ)")]
    PublicKeysDiffer {
        /// The key file (or "the generated key").
        key: String,
        /// The certificate file (or "the generated certificate").
        cert: String,
    },
    /// [`super::Identity::save_new`]: the directory already holds an identity file, which
    /// is kept as it is (a new identity would replace the fingerprint its owner is known
    /// by).
    #[error("{} already exists: the directory holds an identity; not overwritten", path.display())]
    AlreadyExists {
        /// The file found (`cert.pem`, `cert.der` or `key.pem` in the directory).
        path: PathBuf,
    },
    /// A path to write to that does not end in a file name.
    #[error("{}: not a file path", path.display())]
    NotAFilePath {
        /// The path.
        path: PathBuf,
    },
    /// The identity directory could not be created.
    #[error("creating {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stale temporary file could not be removed before writing.
    #[error("removing {}", path.display())]
    RemoveTemp {
        /// The temporary file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written, synced or renamed into place.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
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
