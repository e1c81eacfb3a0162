//! Client certificates: the SHA-256 fingerprint and the full check a server runs on the
//! certificate in a registration (exactly one DER certificate, self-signed, in date, with
//! a supported key). Source: docs/PROTOCOL.md §5.4.

use sha2::{Digest, Sha256};
use x509_parser::der_parser::asn1_rs::Any;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{IdentityError, KeyAlgorithm, VerifyingKey};
use crate::wire::Fingerprint;
use x509_parser::oid_registry::OID_SIG_ED25519;

/// The fingerprint of a certificate: SHA-256 of its exact DER bytes, as
/// `openssl x509 -outform DER | sha256sum` gives it (docs/PROTOCOL.md §5.4).
///
/// The bytes are not parsed; hash only what was checked with [`verify_self_signed`] or
/// [`parse_certificate`] when the result names a client.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(der).into())
}

/// What a structural parse learns about a certificate ([`parse_certificate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// SHA-256 of the certificate's exact DER bytes.
    pub fingerprint: Fingerprint,
    /// The subject name in RFC 4514-like text (`CN=example, O=Org`), as x509-parser
    /// prints it.
    pub subject: String,
    /// Whether the issuer name equals the subject name, byte for byte (the signature is
    /// not checked).
    pub self_issued: bool,
}

/// A client certificate that passed [`verify_self_signed`].
///
/// Cheap to clone; a server may cache it by fingerprint (docs/PROTOCOL.md §5.4: verified
/// certificates may be cached) but must still compare `now` with the validity period
/// when it reuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    /// SHA-256 of the certificate's exact DER bytes.
    pub fingerprint: Fingerprint,
    /// The certificate's public key, to check packet signatures with.
    pub key: VerifyingKey,
    /// Start of the validity period, Unix seconds (UTC).
    pub not_before: i64,
    /// End of the validity period, Unix seconds (UTC), inclusive.
    pub not_after: i64,
}

impl VerifiedCertificate {
    /// Whether `now_unix` (seconds) lies within `[not_before, not_after]`.
    pub fn is_valid_at(&self, now_unix: u64) -> bool {
        let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
        self.not_before <= now && now <= self.not_after
    }
}

/// Parses `der` as exactly one DER certificate with nothing left over, inside or after.
pub(crate) fn parse_exact(der: &[u8]) -> Result<X509Certificate<'_>, IdentityError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::CertMalformed)?;
    if !rest.is_empty() {
        return Err(IdentityError::CertTrailingData);
    }
    // x509-parser ignores bytes after the signature inside the outer SEQUENCE; they are
    // unsigned, so refuse them: the content must be exactly tbs, algorithm, signature.
    let (_, outer) = Any::from_der(der).map_err(|_| IdentityError::CertMalformed)?;
    let mut inner: &[u8] = outer.data;
    for _ in 0..3 {
        let (rest, _) = Any::from_der(inner).map_err(|_| IdentityError::CertMalformed)?;
        inner = rest;
    }
    if !inner.is_empty() {
        return Err(IdentityError::CertMalformed);
    }
    // RFC 5280 4.1.1.2: the outer signatureAlgorithm must equal the one inside tbs.
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(IdentityError::CertMalformed);
    }
    Ok(cert)
}

/// Structural parse of one certificate, for the CA-bundle check and tools: `der` must be
/// exactly one DER X.509 certificate with no bytes left over. Signature, dates and key
/// type are not checked.
///
/// # Errors
/// [`IdentityError::CertMalformed`] if the bytes are not a well-formed certificate;
/// [`IdentityError::CertTrailingData`] if one is followed by extra bytes.
pub fn parse_certificate(der: &[u8]) -> Result<CertificateInfo, IdentityError> {
    let cert = parse_exact(der)?;
    Ok(CertificateInfo {
        fingerprint: fingerprint(der),
        subject: cert.subject().to_string(),
        self_issued: cert.issuer().as_raw() == cert.subject().as_raw(),
    })
}

/// The full check of a client certificate (docs/PROTOCOL.md §5.4), cheapest steps first:
/// 1. `der` is exactly one DER certificate with nothing left over;
/// 2. its key is Ed25519, ECDSA P-256 (`ecPublicKey` + `prime256v1`, uncompressed point)
///    or `rsaEncryption` with a 2048..=4096-bit modulus;
/// 3. issuer equals subject (byte for byte);
/// 4. `now_unix` (Unix seconds, UTC) lies within `[notBefore, notAfter]`;
/// 5. the signature on the certificate verifies with the certificate's own key.
///
/// # Errors
/// The first failed step: [`IdentityError::CertMalformed`] /
/// [`IdentityError::CertTrailingData`]; [`IdentityError::UnsupportedKey`] /
/// [`IdentityError::RsaKeySize`] / [`IdentityError::KeyMalformed`];
/// [`IdentityError::NotSelfSigned`]; [`IdentityError::NotYetValid`] /
/// [`IdentityError::Expired`]; [`IdentityError::BadSelfSignature`].
pub fn verify_self_signed(der: &[u8], now_unix: u64) -> Result<VerifiedCertificate, IdentityError> {
    let (cert, verified) = checked_but_signature(der, now_unix)?;
    cert.verify_signature(None)
        .map_err(|_| IdentityError::BadSelfSignature)?;
    Ok(verified)
}

/// Steps 1 to 4 of [`verify_self_signed`]: the parsed certificate and what it will be once
/// its self-signature (step 5) verifies.
fn checked_but_signature(
    der: &[u8],
    now_unix: u64,
) -> Result<(X509Certificate<'_>, VerifiedCertificate), IdentityError> {
    let cert = parse_exact(der)?;
    let key = VerifyingKey::from_spki(cert.public_key())?;
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return Err(IdentityError::NotSelfSigned);
    }
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
    if now < not_before {
        return Err(IdentityError::NotYetValid);
    }
    if now > not_after {
        return Err(IdentityError::Expired);
    }
    let verified = VerifiedCertificate {
        fingerprint: fingerprint(der),
        key,
        not_before,
        not_after,
    };
    Ok((cert, verified))
}

/// An Ed25519 certificate that passed steps 1 to 4 of [`verify_self_signed`], with what
/// step 5 checks, so that several self-signatures can be verified together
/// (docs/PROTOCOL.md §5.2, "Batch verification").
#[derive(Debug, Clone)]
pub(crate) struct Ed25519SelfSignature<'a> {
    /// The certificate as [`verify_self_signed`] returns it once `signature` verifies.
    pub(crate) cert: VerifiedCertificate,
    /// The signed bytes: the DER TBSCertificate, inside `der`.
    pub(crate) signed: &'a [u8],
    /// The 64-byte Ed25519 signature (the signatureValue BIT STRING's bytes).
    pub(crate) signature: [u8; 64],
}

/// Steps 1 to 4 of [`verify_self_signed`] on `der` at `now_unix`, and what step 5 would
/// verify when the certificate is signed with Ed25519 by an Ed25519 key and its signature
/// is 64 bytes (`Ok(None)` otherwise: only [`verify_self_signed`] can tell).
/// `verify_self_signed(der, now_unix)` is `Ok(cert)` exactly when
/// `cert.key.verify(signed, &signature)` is `Ok`, and `Err(BadSelfSignature)` otherwise.
///
/// # Errors
/// The first failed step of 1 to 4, as [`verify_self_signed`] gives it.
pub(crate) fn ed25519_self_signature(
    der: &[u8],
    now_unix: u64,
) -> Result<Option<Ed25519SelfSignature<'_>>, IdentityError> {
    let (cert, verified) = checked_but_signature(der, now_unix)?;
    let ed25519 = cert.signature_algorithm.algorithm == OID_SIG_ED25519
        && verified.key.algorithm() == KeyAlgorithm::Ed25519;
    let Ok(signature) = <[u8; 64]>::try_from(cert.signature_value.data.as_ref()) else {
        return Ok(None);
    };
    // The TBSCertificate as signed: the first element of the outer SEQUENCE, header and
    // all (what x509-parser verifies; parse_exact has checked the layout).
    let (_, outer) = Any::from_der(der).map_err(|_| IdentityError::CertMalformed)?;
    let (rest, _) = Any::from_der(outer.data).map_err(|_| IdentityError::CertMalformed)?;
    let signed = &outer.data[..outer.data.len() - rest.len()];
    debug_assert_eq!(signed, cert.tbs_certificate.as_ref());
    Ok(ed25519.then_some(Ed25519SelfSignature {
        cert: verified,
        signed,
        signature,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, KeyAlgorithm};
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    }

    fn params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        let fp = fingerprint(b"abc");
        assert_eq!(
            fp.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn generated_certs_verify_and_report_validity() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let id = Identity::generate(alg, "alice").expect("generate");
            let v = verify_self_signed(id.cert_der(), now()).expect("verify");
            assert_eq!(v.fingerprint, fingerprint(id.cert_der()));
            assert_eq!(v.key.algorithm(), alg);
            assert!(v.is_valid_at(now()));
            let n = i64::try_from(now()).expect("now");
            assert!(v.not_before <= n - 86_000 && v.not_after >= n + 3650 * 86_400);
            // Boundaries are inclusive.
            let nb = u64::try_from(v.not_before).expect("nb");
            let na = u64::try_from(v.not_after).expect("na");
            assert!(verify_self_signed(id.cert_der(), nb).is_ok());
            assert!(verify_self_signed(id.cert_der(), na).is_ok());
            assert_eq!(
                verify_self_signed(id.cert_der(), nb - 1),
                Err(IdentityError::NotYetValid)
            );
            assert_eq!(
                verify_self_signed(id.cert_der(), na + 1),
                Err(IdentityError::Expired)
            );
            assert_eq!(
                verify_self_signed(id.cert_der(), u64::MAX),
                Err(IdentityError::Expired)
            );
            let info = parse_certificate(id.cert_der()).expect("parse");
            assert_eq!(info.subject, "CN=alice");
            assert!(info.self_issued);
            assert_eq!(info.fingerprint, v.fingerprint);
        }
    }

    /// What a batch verifies for an Ed25519 certificate is what `verify_self_signed` does;
    /// other algorithms are left to it.
    #[test]
    fn ed25519_self_signature_is_step_five() {
        let id = Identity::generate(KeyAlgorithm::Ed25519, "batch").expect("generate");
        let s = ed25519_self_signature(id.cert_der(), now())
            .expect("checks")
            .expect("ed25519");
        assert_eq!(
            Ok(&s.cert),
            verify_self_signed(id.cert_der(), now()).as_ref()
        );
        assert!(s.cert.key.verify(s.signed, &s.signature).is_ok());
        let mut bad = id.cert_der().to_vec();
        *bad.last_mut().expect("der") ^= 1;
        let s = ed25519_self_signature(&bad, now())
            .expect("checks")
            .expect("ed");
        assert!(s.cert.key.verify(s.signed, &s.signature).is_err());
        assert_eq!(
            verify_self_signed(&bad, now()),
            Err(IdentityError::BadSelfSignature)
        );
        assert_eq!(
            ed25519_self_signature(id.cert_der(), u64::MAX).map(|_| ()),
            Err(IdentityError::Expired)
        );
        let p256 = Identity::generate(KeyAlgorithm::EcdsaP256, "batch").expect("generate");
        assert!(ed25519_self_signature(p256.cert_der(), now())
            .expect("checks")
            .is_none());
    }

    #[test]
    fn trailing_byte_is_refused() {
        let id = Identity::generate(KeyAlgorithm::Ed25519, "t").expect("generate");
        let mut der = id.cert_der().to_vec();
        der.push(0);
        assert_eq!(
            verify_self_signed(&der, now()),
            Err(IdentityError::CertTrailingData)
        );
        assert_eq!(
            parse_certificate(&der),
            Err(IdentityError::CertTrailingData)
        );
        // Two certificates back to back are also "left over".
        let mut two = id.cert_der().to_vec();
        two.extend_from_slice(id.cert_der());
        assert_eq!(
            parse_certificate(&two),
            Err(IdentityError::CertTrailingData)
        );
    }

    #[test]
    fn junk_inside_outer_sequence_is_refused() {
        let id = Identity::generate(KeyAlgorithm::Ed25519, "t").expect("generate");
        let der = id.cert_der();
        // Re-wrap the outer SEQUENCE's content plus two extra bytes in a new header.
        let (hdr, len) = match der[1] {
            0x81 => (3, usize::from(der[2])),
            0x82 => (4, usize::from(u16::from_be_bytes([der[2], der[3]]))),
            other => panic!("unexpected length form {other:#x}"),
        };
        let new_len = len + 2;
        let mut bad = vec![0x30];
        if new_len < 256 {
            bad.extend_from_slice(&[0x81, new_len as u8]);
        } else {
            bad.push(0x82);
            bad.extend_from_slice(&(new_len as u16).to_be_bytes());
        }
        bad.extend_from_slice(&der[hdr..]);
        bad.extend_from_slice(&[0x05, 0x00]); // a NULL after the signature
        assert!(
            X509Certificate::from_der(&bad).is_ok(),
            "x509-parser is lenient"
        );
        assert_eq!(parse_certificate(&bad), Err(IdentityError::CertMalformed));
        assert_eq!(
            verify_self_signed(&bad, now()),
            Err(IdentityError::CertMalformed)
        );
    }

    #[test]
    fn explicit_dates_not_yet_valid_and_expired() {
        let n = i64::try_from(now()).expect("now");
        let at = |secs: i64| {
            x509_parser::time::ASN1Time::from_timestamp(secs)
                .expect("time")
                .to_datetime()
        };
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let mut p = params("future");
        p.not_before = at(n + 86_400);
        p.not_after = at(n + 2 * 86_400);
        let future = p.self_signed(&key).expect("cert");
        assert_eq!(
            verify_self_signed(future.der(), now()),
            Err(IdentityError::NotYetValid)
        );
        let mut p = params("past");
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let past = p.self_signed(&key).expect("cert");
        assert_eq!(
            verify_self_signed(past.der(), now()),
            Err(IdentityError::Expired)
        );
        // Structural parse does not look at dates.
        assert!(parse_certificate(past.der()).is_ok());
    }

    #[test]
    fn cert_signed_by_another_key_is_refused() {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut ca_params = params("issuer");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        assert!(verify_self_signed(ca.der(), now()).is_ok());

        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let leaf = params("leaf")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf");
        assert_eq!(
            verify_self_signed(leaf.der(), now()),
            Err(IdentityError::NotSelfSigned)
        );
        let info = parse_certificate(leaf.der()).expect("parse");
        assert!(!info.self_issued);

        // Same name as the issuer, but signed by the issuer's key: names match, signature
        // does not verify with the leaf's own key.
        let twin = params("issuer")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("twin");
        assert_eq!(
            verify_self_signed(twin.der(), now()),
            Err(IdentityError::BadSelfSignature)
        );
    }

    #[test]
    fn unsupported_keys_are_refused() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let cert = params("p384").self_signed(&key).expect("cert");
        assert_eq!(
            verify_self_signed(cert.der(), now()),
            Err(IdentityError::UnsupportedKey)
        );
        assert!(parse_certificate(cert.der()).is_ok());
    }

    #[test]
    fn flipped_bytes_in_cert_never_verify_or_panic() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let id = Identity::generate(alg, "flip").expect("generate");
            let der = id.cert_der();
            for i in 0..der.len() {
                let mut bad = der.to_vec();
                bad[i] ^= 0x01;
                let r = verify_self_signed(&bad, now());
                // A flip in an unsigned part (e.g. an ECDSA signature's encoding) could in
                // principle still verify; that is fine as long as the fingerprint differs.
                if let Ok(v) = r {
                    assert_ne!(v.fingerprint, id.fingerprint());
                }
                let _ = parse_certificate(&bad);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Random edits of a valid certificate (overwrite, insert, cut) never panic, and
        /// anything that still verifies has a fingerprint of its own bytes.
        #[test]
        fn random_edits_never_panic(
            edits in proptest::collection::vec(
                (0usize..2000, proptest::prelude::any::<u8>(), 0u8..3),
                1..6,
            ),
            ed in proptest::prelude::any::<bool>(),
        ) {
            let alg = if ed { KeyAlgorithm::Ed25519 } else { KeyAlgorithm::EcdsaP256 };
            let id = Identity::generate(alg, "prop").expect("generate");
            let mut der = id.cert_der().to_vec();
            for (pos, byte, op) in edits {
                let at = pos % (der.len() + 1);
                match op {
                    0 if at < der.len() => der[at] = byte,
                    1 => der.insert(at, byte),
                    _ => der.truncate(at),
                }
            }
            if let Ok(v) = verify_self_signed(&der, now()) {
                proptest::prop_assert_eq!(v.fingerprint, fingerprint(&der));
            }
            let _ = parse_certificate(&der);
        }
    }

    #[test]
    fn truncation_at_every_offset_is_an_error() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let id = Identity::generate(alg, "trunc").expect("generate");
            let der = id.cert_der();
            for cut in 0..der.len() {
                assert!(verify_self_signed(&der[..cut], now()).is_err(), "cut {cut}");
                assert!(parse_certificate(&der[..cut]).is_err(), "cut {cut}");
            }
        }
    }
}
