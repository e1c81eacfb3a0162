//! The files of an identity directory and the key forms in them: `cert.pem` (or
//! `cert.der`) and `key.pem` read with errors that name the file, SEC1 and PKCS#8 Ed25519
//! key bodies, and atomic writes (temporary file, fsync, rename). No signing here: that is
//! `signer`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use x509_parser::der_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::oid_registry::OID_EC_P256;
use x509_parser::prelude::FromDer;

use super::pem::pem_blocks;
use super::{IdentityError, SignerError};

/// File name of the certificate inside an identity directory (PEM).
pub const CERT_FILE: &str = "cert.pem";
/// Alternative certificate file name, read when [`CERT_FILE`] is absent (raw DER).
pub const CERT_DER_FILE: &str = "cert.der";
/// File name of the private key inside an identity directory (PEM, mode 0600).
pub const KEY_FILE: &str = "key.pem";

/// PEM label of a PKCS#8 private key (any of the three algorithms).
pub(super) const PKCS8_LABEL: &str = "PRIVATE KEY";
/// PEM label of a SEC1 EC private key (P-256 only).
pub(super) const SEC1_LABEL: &str = "EC PRIVATE KEY";
/// PEM label of a PKCS#1 RSA private key.
pub(super) const PKCS1_LABEL: &str = "RSA PRIVATE KEY";
/// PEM label of an encrypted PKCS#8 key: refused, with how to decrypt it.
pub(super) const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// Private key bytes, overwritten with zeros when dropped (best effort).
pub(super) struct SecretBytes(pub(super) Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keep the compiler from treating the zeroing as a dead store.
        std::hint::black_box(&self.0);
    }
}

/// Reads `DIR/cert.pem`, or `DIR/cert.der` when there is no `cert.pem`; returns the DER
/// and the path it came from.
pub(super) fn read_cert(dir: &Path) -> Result<(Vec<u8>, PathBuf), SignerError> {
    let pem_path = dir.join(CERT_FILE);
    match fs::read(&pem_path) {
        Ok(text) => {
            // A DER file saved under the PEM name starts with a SEQUENCE tag, not text.
            if text.first() == Some(&0x30) {
                return Ok((text, pem_path));
            }
            let mut certs =
                super::certs_from_pem(&text).map_err(|reason| refused(&pem_path, reason))?;
            match certs.len() {
                1 => Ok((certs.remove(0), pem_path)),
                0 => Err(SignerError::NoCertificateBlock { path: pem_path }),
                count => Err(SignerError::SeveralCertificates {
                    path: pem_path,
                    count,
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let der_path = dir.join(CERT_DER_FILE);
            match fs::read(&der_path) {
                Ok(der) => Ok((der, der_path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(SignerError::NoCertificate {
                        dir: dir.to_path_buf(),
                    })
                }
                Err(source) => Err(SignerError::ReadCert {
                    path: der_path,
                    source,
                }),
            }
        }
        Err(source) => Err(SignerError::ReadCert {
            path: pem_path,
            source,
        }),
    }
}

/// The first private key block of `text` (the key file `path`): its label and DER body.
pub(super) fn read_key_block(
    text: &[u8],
    path: &Path,
) -> Result<(&'static str, SecretBytes), SignerError> {
    let blocks = pem_blocks(text).map_err(|reason| refused(path, reason))?;
    for block in blocks {
        let label = match block.label.as_str() {
            PKCS8_LABEL => PKCS8_LABEL,
            SEC1_LABEL => SEC1_LABEL,
            PKCS1_LABEL => PKCS1_LABEL,
            ENCRYPTED_LABEL => {
                return Err(SignerError::EncryptedKey {
                    path: path.to_path_buf(),
                })
            }
            _ => continue,
        };
        return Ok((label, SecretBytes(block.contents)));
    }
    Err(SignerError::NoKeyBlock {
        path: path.to_path_buf(),
    })
}

/// [`SignerError::Refused`] for the file `path`.
pub(super) fn refused(path: &Path, reason: IdentityError) -> SignerError {
    SignerError::Refused {
        file: path.display().to_string(),
        reason,
    }
}

/// The 32-byte private scalar of a SEC1 `ECPrivateKey` (RFC 5915) on P-256:
/// `SEQUENCE { version INTEGER (1), privateKey OCTET STRING, [0] parameters OPTIONAL,
/// [1] publicKey OPTIONAL }`. The public key is taken from the certificate instead.
pub(super) fn sec1_private_key(der: &[u8]) -> Result<&[u8], &'static str> {
    const BAD: &str = "not a SEC1 EC private key (RFC 5915)";
    let (rest, outer) = Any::from_der(der).map_err(|_| BAD)?;
    if !rest.is_empty() || outer.tag() != Tag::Sequence {
        return Err(BAD);
    }
    let (rest, version) = Any::from_der(outer.data).map_err(|_| BAD)?;
    if version.tag() != Tag::Integer || version.data != [1] {
        return Err(BAD);
    }
    let (mut rest, private) = Any::from_der(rest).map_err(|_| BAD)?;
    if private.tag() != Tag::OctetString || private.data.len() != 32 {
        return Err("not a P-256 private key (the private scalar is not 32 bytes)");
    }
    while !rest.is_empty() {
        let (next, field) = Any::from_der(rest).map_err(|_| BAD)?;
        if field.class() == Class::ContextSpecific && field.tag() == Tag(0) {
            let (_, curve) = Any::from_der(field.data).map_err(|_| BAD)?;
            if curve.tag() != Tag::Oid || curve.data != OID_EC_P256.as_bytes() {
                return Err("the EC private key is not on the P-256 curve (prime256v1)");
            }
        }
        rest = next;
    }
    Ok(private.data)
}

/// DER of the AlgorithmIdentifier `SEQUENCE { OID 1.3.101.112 (Ed25519) }`.
pub(super) const ED25519_ALG_ID: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

/// Re-encodes an Ed25519 PKCS#8 key (v1 or v2) as PKCS#8 v1 (RFC 8410):
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID Ed25519 }, OCTET STRING { OCTET STRING seed } }`.
/// `None` if `der` is not an Ed25519 PKCS#8 key of the expected shape.
pub(super) fn ed25519_pkcs8_v1(der: &[u8]) -> Option<SecretBytes> {
    let (rest, outer) = Any::from_der(der).ok()?;
    if !rest.is_empty() || outer.tag() != Tag::Sequence {
        return None;
    }
    let (rest, version) = Any::from_der(outer.data).ok()?;
    if version.tag() != Tag::Integer || !(version.data == [0] || version.data == [1]) {
        return None;
    }
    let alg_len = ED25519_ALG_ID.len();
    if rest.get(..alg_len)? != ED25519_ALG_ID {
        return None;
    }
    let (_, private) = Any::from_der(rest.get(alg_len..)?).ok()?;
    // The privateKey OCTET STRING wraps CurvePrivateKey ::= OCTET STRING (32-byte seed).
    if private.tag() != Tag::OctetString || private.data.len() != 34 {
        return None;
    }
    if private.data.get(..2)? != [0x04, 0x20] {
        return None;
    }
    let mut v1 = Vec::with_capacity(48);
    v1.extend_from_slice(&[0x30, 0x2e, 0x02, 0x01, 0x00]);
    v1.extend_from_slice(&ED25519_ALG_ID);
    v1.extend_from_slice(&[0x04, 0x22]);
    v1.extend_from_slice(private.data);
    Some(SecretBytes(v1))
}

/// Writes `data` to `path` via a temporary file in the same directory: created with
/// `mode` (Unix), synced, then renamed over `path`.
pub(super) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), SignerError> {
    let file_name =
        path.file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| SignerError::NotAFilePath {
                path: path.to_path_buf(),
            })?;
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    // A stale temporary file from a crashed run may have other permissions: start over.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SignerError::RemoveTemp { path: tmp, source }),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(SignerError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Syncs a directory so that renames in it are durable (best effort; Unix only).
pub(super) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Logs a warning when a private key file can be read by group or others (Unix).
pub(super) fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "private key {} is accessible by other users (mode {:o}); run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    #[test]
    fn ed25519_keys_are_kept_as_pkcs8_v1() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("keygen");
        let v2 = kp.serialize_der();
        let v1 = ed25519_pkcs8_v1(&v2).expect("convert");
        assert_eq!(v1.0.len(), 48);
        let a = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&v2).expect("v2");
        let b = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&v1.0).expect("v1");
        assert_eq!(a.public_key().as_ref(), b.public_key().as_ref());
        // Converting v1 again is the identity.
        assert_eq!(ed25519_pkcs8_v1(&v1.0).expect("again").0, v1.0);
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
        assert!(ed25519_pkcs8_v1(&ec.serialize_der()).is_none());
        for cut in 0..v2.len() {
            assert!(ed25519_pkcs8_v1(&v2[..cut]).is_none());
        }
    }
}
