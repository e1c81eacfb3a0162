//! Client identities: self-signed X.509 certificates, their SHA-256 fingerprints, and the
//! signatures that prove a packet came from a certificate's key (Ed25519, ECDSA P-256,
//! RSA; docs/PROTOCOL.md §2.4 and §5.4).
//!
//! The server side is [`verify_self_signed`] plus [`VerifyingKey::verify`]; the client
//! side is [`Identity`] (generate, load, save, sign). Nothing here panics on any input.

mod cert;
mod error;
mod key;
mod keyfile;
mod pem;
mod signer;

pub(crate) use cert::ed25519_self_signature;
pub use cert::{
    fingerprint, parse_certificate, verify_self_signed, CertificateInfo, VerifiedCertificate,
};
pub use error::{IdentityError, SignerError};
pub use key::{KeyAlgorithm, VerifyingKey, RSA_MAX_BITS, RSA_MIN_BITS};
pub use keyfile::{CERT_DER_FILE, CERT_FILE, KEY_FILE};
pub use pem::{certs_from_pem, pem_encode};
pub use signer::Identity;
