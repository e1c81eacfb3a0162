//! Public keys of client certificates and the signature check on every signed packet.
//!
//! Turns a certificate's SubjectPublicKeyInfo into the bytes ring verifies with, for the
//! three algorithms the UDP plane allows. Source: docs/PROTOCOL.md §2.4 and §5.4.

use core::fmt;
use core::str::FromStr;

use ring::signature::{self, UnparsedPublicKey};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};

use super::IdentityError;

/// Smallest RSA modulus accepted, in bits (docs/PROTOCOL.md §5.4: 2048-4096-bit keys).
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (docs/PROTOCOL.md §5.4: 2048-4096-bit keys).
pub const RSA_MAX_BITS: usize = 4096;

/// Length of an Ed25519 public key, in bytes.
const ED25519_KEY_LEN: usize = 32;
/// Length of an uncompressed P-256 point (`0x04 || X || Y`), in bytes.
const P256_POINT_LEN: usize = 65;
/// Length of an Ed25519 signature, in bytes.
const ED25519_SIG_LEN: usize = 64;
/// Longest DER-encoded ECDSA P-256 signature, in bytes (SEQUENCE of two 33-byte INTEGERs).
const P256_SIG_MAX_LEN: usize = 72;

/// The signature algorithms a client certificate's key may use (docs/PROTOCOL.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519, pure: a 64-byte signature over the raw message bytes.
    Ed25519,
    /// ECDSA on NIST P-256 with SHA-256; the signature is DER (ASN.1) encoded, as
    /// `openssl dgst -sha256 -sign` writes it (at most 72 bytes).
    EcdsaP256,
    /// RSA PKCS#1 v1.5 with SHA-256, modulus of 2048 to 4096 bits; the signature is as
    /// long as the modulus.
    Rsa,
}

impl KeyAlgorithm {
    /// The short lowercase name used in CLI flags and logs: `ed25519`, `ecdsa-p256`, `rsa`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa => "rsa",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = IdentityError;

    /// Reads `ed25519`, `ecdsa-p256` (also `p256`, `p-256`, `ecdsa`) or `rsa`, any case.
    ///
    /// # Errors
    /// [`IdentityError::UnsupportedKey`] for any other text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            "ecdsa-p256" | "p256" | "p-256" | "ecdsa" | "ec" => Ok(KeyAlgorithm::EcdsaP256),
            "rsa" => Ok(KeyAlgorithm::Rsa),
            _ => Err(IdentityError::UnsupportedKey),
        }
    }
}

/// A certificate's public key, ready to check packet signatures with.
///
/// Holds the algorithm and the public key bytes in the form ring takes them: the 32-byte
/// Ed25519 key, the 65-byte uncompressed P-256 point, or the DER `RSAPublicKey`
/// (the contents of the certificate's subjectPublicKey BIT STRING in every case).
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    algorithm: KeyAlgorithm,
    public_key: Vec<u8>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .field("public_key_len", &self.public_key.len())
            .finish()
    }
}

impl VerifyingKey {
    /// Reads a DER SubjectPublicKeyInfo (the `PUBLIC KEY` PEM payload, as
    /// `openssl pkey -pubout -outform DER` writes it).
    ///
    /// # Errors
    /// [`IdentityError::KeyMalformed`] if it is not exactly one well-formed
    /// SubjectPublicKeyInfo, otherwise as for a certificate's key:
    /// [`IdentityError::UnsupportedKey`], [`IdentityError::RsaKeySize`].
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, IdentityError> {
        let (rest, info) =
            SubjectPublicKeyInfo::from_der(spki).map_err(|_| IdentityError::KeyMalformed)?;
        if !rest.is_empty() {
            return Err(IdentityError::KeyMalformed);
        }
        Self::from_spki(&info)
    }

    /// Extracts the key from a parsed SubjectPublicKeyInfo, accepting only the algorithms
    /// of docs/PROTOCOL.md §5.4: Ed25519 (no parameters, 32 bytes); `ecPublicKey` with
    /// `prime256v1` parameters and an uncompressed 65-byte point; `rsaEncryption` with a
    /// 2048..=4096-bit modulus.
    pub(crate) fn from_spki(info: &SubjectPublicKeyInfo<'_>) -> Result<Self, IdentityError> {
        let oid = &info.algorithm.algorithm;
        let bits = &info.subject_public_key;
        let data: &[u8] = &bits.data;
        let algorithm = if *oid == OID_SIG_ED25519 {
            // RFC 8410: the parameters MUST be absent.
            if info.algorithm.parameters.is_some() {
                return Err(IdentityError::KeyMalformed);
            }
            if data.len() != ED25519_KEY_LEN {
                return Err(IdentityError::KeyMalformed);
            }
            KeyAlgorithm::Ed25519
        } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve.as_ref() != Some(&OID_EC_P256) {
                return Err(IdentityError::UnsupportedKey);
            }
            match data.first() {
                // Compressed points (0x02/0x03) are valid SEC1 but ring cannot use them.
                Some(0x02) | Some(0x03) => return Err(IdentityError::UnsupportedKey),
                Some(0x04) if data.len() == P256_POINT_LEN => {}
                _ => return Err(IdentityError::KeyMalformed),
            }
            KeyAlgorithm::EcdsaP256
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            let modulus_bits = rsa_modulus_bits(data)?;
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&modulus_bits) {
                return Err(IdentityError::RsaKeySize);
            }
            KeyAlgorithm::Rsa
        } else {
            return Err(IdentityError::UnsupportedKey);
        };
        if bits.unused_bits != 0 {
            return Err(IdentityError::KeyMalformed);
        }
        Ok(VerifyingKey {
            algorithm,
            public_key: data.to_vec(),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key bytes as ring takes them: 32 bytes (Ed25519), 65 bytes
    /// (uncompressed P-256 point) or the DER `RSAPublicKey` (RSA).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Verifies `signature` over `message` (for a Root packet: `timestamp || payload` as
    /// on the wire; docs/PROTOCOL.md §2.4):
    /// - Ed25519: pure Ed25519, a 64-byte signature over the raw message bytes;
    /// - ECDSA P-256: SHA-256 of the message, DER (ASN.1) signature of at most 72 bytes,
    ///   as `openssl dgst -sha256 -sign` writes it;
    /// - RSA: PKCS#1 v1.5 with SHA-256, modulus 2048..=4096 bits (checked when the key
    ///   was read), signature as long as the modulus.
    ///
    /// # Errors
    /// [`IdentityError::BadSignature`] when the signature has the wrong size or does not
    /// verify.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let alg: &'static dyn signature::VerificationAlgorithm = match self.algorithm {
            KeyAlgorithm::Ed25519 => {
                if signature.len() != ED25519_SIG_LEN {
                    return Err(IdentityError::BadSignature);
                }
                &signature::ED25519
            }
            KeyAlgorithm::EcdsaP256 => {
                if signature.len() > P256_SIG_MAX_LEN {
                    return Err(IdentityError::BadSignature);
                }
                &signature::ECDSA_P256_SHA256_ASN1
            }
            KeyAlgorithm::Rsa => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(alg, &self.public_key)
            .verify(message, signature)
            .map_err(|_| IdentityError::BadSignature)
    }
}

/// Size in bits of the modulus of a DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER,
/// publicExponent INTEGER }`, leading zero bytes not counted.
fn rsa_modulus_bits(der: &[u8]) -> Result<usize, IdentityError> {
    use x509_parser::public_key::RSAPublicKey;
    let (rest, key) = RSAPublicKey::from_der(der).map_err(|_| IdentityError::KeyMalformed)?;
    if !rest.is_empty() {
        return Err(IdentityError::KeyMalformed);
    }
    let mut digits = key.modulus.iter().skip_while(|&&b| b == 0);
    let Some(&top) = digits.next() else {
        return Err(IdentityError::KeyMalformed);
    };
    let top_bits = 8 - top.leading_zeros() as usize;
    Ok(digits.count() * 8 + top_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Rsa,
        ] {
            assert_eq!(alg.name().parse::<KeyAlgorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.name());
        }
        assert_eq!("P256".parse::<KeyAlgorithm>(), Ok(KeyAlgorithm::EcdsaP256));
        assert_eq!(
            "dsa".parse::<KeyAlgorithm>(),
            Err(IdentityError::UnsupportedKey)
        );
    }

    /// DER `RSAPublicKey` with the given modulus bytes (already a positive INTEGER body)
    /// and exponent 65537; lengths are long-form two-byte.
    fn rsa_key_der(modulus: &[u8]) -> Vec<u8> {
        let mut int = vec![0x02, 0x82];
        int.extend_from_slice(&(modulus.len() as u16).to_be_bytes());
        int.extend_from_slice(modulus);
        int.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
        let mut seq = vec![0x30, 0x82];
        seq.extend_from_slice(&(int.len() as u16).to_be_bytes());
        seq.extend_from_slice(&int);
        seq
    }

    #[test]
    fn rsa_modulus_bits_counts_exactly() {
        // 2048-bit: top bit set, DER adds a leading zero byte.
        let mut m = vec![0u8];
        m.extend(std::iter::repeat(0xff).take(256));
        assert_eq!(rsa_modulus_bits(&rsa_key_der(&m)), Ok(2048));
        // 2047-bit: 256 bytes, top byte 0x7f, no leading zero.
        let mut m = vec![0x7f];
        m.extend(std::iter::repeat(0xff).take(255));
        assert_eq!(rsa_modulus_bits(&rsa_key_der(&m)), Ok(2047));
        assert_eq!(
            rsa_modulus_bits(&[0x30, 0x00]),
            Err(IdentityError::KeyMalformed)
        );
        assert_eq!(rsa_modulus_bits(&[]), Err(IdentityError::KeyMalformed));
    }

    #[test]
    fn spki_der_of_generated_keys() {
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P256_SHA256] {
            let kp = rcgen::KeyPair::generate_for(alg).expect("keygen");
            let vk = VerifyingKey::from_spki_der(&kp.public_key_der()).expect("spki");
            assert_eq!(vk.public_key(), kp.public_key_raw());
            let mut long = kp.public_key_der();
            long.push(0);
            assert_eq!(
                VerifyingKey::from_spki_der(&long),
                Err(IdentityError::KeyMalformed)
            );
        }
        // A P-384 key is well-formed but not allowed.
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("keygen");
        assert_eq!(
            VerifyingKey::from_spki_der(&kp.public_key_der()),
            Err(IdentityError::UnsupportedKey)
        );
    }

    #[test]
    fn wrong_sized_signatures_are_bad_not_panics() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("keygen");
        let vk = VerifyingKey::from_spki_der(&kp.public_key_der()).expect("spki");
        for len in [0usize, 1, 63, 65, 200] {
            assert_eq!(
                vk.verify(b"m", &vec![0u8; len]),
                Err(IdentityError::BadSignature)
            );
        }
    }
}
