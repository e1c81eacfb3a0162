//! The signing side: a client's own certificate and private key, made fresh with rcgen or
//! loaded from the files OpenSSL and rcgen write, used to sign Root packets (the signature
//! covers `timestamp || payload`, docs/PROTOCOL.md §2.4). Errors are [`SignerError`]s that
//! name the file and what is wrong.

use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    RSA_PKCS1_SHA256,
};
use x509_parser::time::ASN1Time;

use super::cert::{fingerprint, parse_exact};
use super::keyfile::{
    ed25519_pkcs8_v1, read_cert, read_key_block, refused, sec1_private_key, sync_dir,
    warn_if_readable_by_others, write_atomic, SecretBytes, CERT_DER_FILE, CERT_FILE, KEY_FILE,
    PKCS1_LABEL, PKCS8_LABEL, SEC1_LABEL,
};
use super::pem::{pem_encode, CERTIFICATE_LABEL};
use super::{IdentityError, KeyAlgorithm, SignerError, VerifyingKey};
use crate::wire::Fingerprint;

/// Validity of a generated certificate: starts this many seconds before now (clock skew).
const BACKDATE_SECS: i64 = 86_400;
/// Validity of a generated certificate: ends this many seconds after now (10 years).
const LIFETIME_SECS: i64 = 3_652 * 86_400;
/// Longest common name accepted by [`Identity::generate`] (X.520 `ub-common-name`).
const MAX_COMMON_NAME: usize = 64;

enum Signer {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    fn public_key(&self) -> &[u8] {
        match self {
            Signer::Ed25519(k) => k.public_key().as_ref(),
            Signer::EcdsaP256(k) => k.public_key().as_ref(),
            Signer::Rsa(k) => k.public_key().as_ref(),
        }
    }
}

struct Inner {
    cert_der: Vec<u8>,
    fingerprint: Fingerprint,
    verifying_key: VerifyingKey,
    signer: Signer,
    /// The private key file's PEM label and DER body, written back unchanged by `save`.
    key_label: &'static str,
    key_der: SecretBytes,
    rng: SystemRandom,
}

/// A client's identity: its self-signed certificate and the matching private key.
///
/// Cheap to clone (the key is shared) and safe to share between threads. The key pair is
/// parsed once, when the identity is made or loaded. `Debug` shows the algorithm and
/// fingerprint only, never key material.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("algorithm", &self.algorithm())
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> Result<i64, SignerError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SignerError::Clock("before 1970"))?
        .as_secs();
    i64::try_from(secs).map_err(|_| SignerError::Clock("out of range"))
}

impl Identity {
    /// Makes a new self-signed certificate (rcgen) with a fresh key: subject and issuer
    /// `CN=<common_name>`, valid from now minus 1 day to now plus 10 years.
    ///
    /// # Errors
    /// [`SignerError::CannotGenerateRsa`] for [`KeyAlgorithm::Rsa`] (ring cannot generate
    /// RSA keys: make one with `openssl req -x509 -newkey rsa:2048 -nodes ...` and
    /// [`Identity::load`] it); [`SignerError::EmptyCommonName`] or
    /// [`SignerError::CommonNameTooLong`] for an empty common name or one longer than 64
    /// characters; [`SignerError::KeyGeneration`], [`SignerError::SelfSign`],
    /// [`SignerError::Clock`] or [`SignerError::Validity`] if making the key or the
    /// certificate fails.
    pub fn generate(alg: KeyAlgorithm, common_name: &str) -> Result<Identity, SignerError> {
        let rcgen_alg = match alg {
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Rsa => return Err(SignerError::CannotGenerateRsa),
        };
        if common_name.is_empty() {
            return Err(SignerError::EmptyCommonName);
        }
        if common_name.chars().count() > MAX_COMMON_NAME {
            return Err(SignerError::CommonNameTooLong {
                max: MAX_COMMON_NAME,
            });
        }
        let key_pair = rcgen::KeyPair::generate_for(rcgen_alg)
            .map_err(|source| SignerError::KeyGeneration { alg, source })?;
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let now = unix_now()?;
        // A validity date, `unix_s` seconds; `which` is "start" or "end".
        let validity_date = |which, unix_s| {
            ASN1Time::from_timestamp(unix_s)
                .map(|t| t.to_datetime())
                .map_err(|e| SignerError::Validity {
                    which,
                    reason: e.to_string(),
                })
        };
        params.not_before = validity_date("start", now.saturating_sub(BACKDATE_SECS))?;
        params.not_after = validity_date("end", now.saturating_add(LIFETIME_SECS))?;
        let cert = params
            .self_signed(&key_pair)
            .map_err(SignerError::SelfSign)?;
        let mut key_der = SecretBytes(key_pair.serialize_der());
        if alg == KeyAlgorithm::Ed25519 {
            // ring writes PKCS#8 v2 with the public key in a form OpenSSL 3.0 cannot read;
            // keep the v1 form OpenSSL itself writes (the seed alone).
            if let Some(v1) = ed25519_pkcs8_v1(&key_der.0) {
                key_der = v1;
            }
        }
        Self::from_parts(
            cert.der().to_vec(),
            PKCS8_LABEL,
            key_der,
            "the generated certificate",
            "the generated key",
        )
    }

    /// Loads an identity from a directory: `DIR/cert.pem` (one `CERTIFICATE` PEM block;
    /// or, when absent, `DIR/cert.der`, raw DER) and `DIR/key.pem`.
    ///
    /// The key may be PKCS#8 (`PRIVATE KEY`: as rcgen writes it, and as
    /// `openssl req -x509 -newkey ed25519 -nodes` or
    /// `-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes` or `-newkey rsa:2048 -nodes`
    /// write it, including OpenSSL's PKCS#8 v1 Ed25519 keys without a public key), SEC1
    /// (`EC PRIVATE KEY`, P-256) or PKCS#1 (`RSA PRIVATE KEY`). The key must belong to the
    /// certificate. Dates and the self-signature are not checked here (a server does that
    /// with [`super::verify_self_signed`]), so an expired identity still loads.
    ///
    /// # Errors
    /// A [`SignerError`] naming the file and what is wrong: a missing or unreadable file
    /// ([`SignerError::NoCertificate`], [`SignerError::ReadCert`],
    /// [`SignerError::ReadKey`]), malformed PEM or a certificate with an unsupported key
    /// ([`SignerError::Refused`]), no or several certificates, an encrypted key (decrypt it
    /// with `openssl pkey -in key.pem -out key.pem`), no key block, a key of another type
    /// than the certificate's, or a key that does not match the certificate.
    pub fn load(dir: &Path) -> Result<Identity, SignerError> {
        let (cert_der, cert_path) = read_cert(dir)?;
        // Report a bad certificate before looking at the key.
        parse_exact(&cert_der)
            .and_then(|c| VerifyingKey::from_spki(c.public_key()))
            .map_err(|reason| refused(&cert_path, reason))?;
        let key_path = dir.join(KEY_FILE);
        let key_text = fs::read(&key_path).map_err(|source| SignerError::ReadKey {
            path: key_path.clone(),
            source,
        })?;
        warn_if_readable_by_others(&key_path);
        let (label, key_der) = read_key_block(&key_text, &key_path)?;
        Self::from_parts(
            cert_der,
            label,
            key_der,
            &cert_path.display().to_string(),
            &key_path.display().to_string(),
        )
    }

    /// Writes `DIR/cert.pem` and `DIR/key.pem` (the key with mode 0600 on Unix), creating
    /// `DIR` if needed. Each file is written to a temporary name, synced and renamed over
    /// the old one, so a crash never leaves a half-written key. The key is written in the
    /// form it was loaded in (PKCS#8 for generated identities).
    ///
    /// # Errors
    /// [`SignerError::CreateDir`] if the directory cannot be created;
    /// [`SignerError::Write`] or [`SignerError::RemoveTemp`] if a file cannot be written or
    /// renamed.
    pub fn save(&self, dir: &Path) -> Result<(), SignerError> {
        fs::create_dir_all(dir).map_err(|source| SignerError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let cert_pem = pem_encode(CERTIFICATE_LABEL, &self.inner.cert_der);
        write_atomic(&dir.join(CERT_FILE), cert_pem.as_bytes(), 0o644)?;
        let key_pem =
            SecretBytes(pem_encode(self.inner.key_label, &self.inner.key_der.0).into_bytes());
        write_atomic(&dir.join(KEY_FILE), &key_pem.0, 0o600)?;
        sync_dir(dir);
        Ok(())
    }

    /// As [`Self::save`], but refuses a directory that already holds an identity: when
    /// `DIR/cert.pem`, `DIR/cert.der` or `DIR/key.pem` exists, nothing is written.
    ///
    /// # Errors
    /// [`SignerError::AlreadyExists`] naming the first of those files found; else those of
    /// [`Self::save`].
    pub fn save_new(&self, dir: &Path) -> Result<(), SignerError> {
        for name in [CERT_FILE, CERT_DER_FILE, KEY_FILE] {
            let path = dir.join(name);
            // `symlink_metadata`: a dangling link is a file in the way too.
            if fs::symlink_metadata(&path).is_ok() {
                return Err(SignerError::AlreadyExists { path });
            }
        }
        self.save(dir)
    }

    /// The certificate's exact DER bytes (what goes into a registration's `cert` field).
    pub fn cert_der(&self) -> &[u8] {
        &self.inner.cert_der
    }

    /// The certificate as one PEM `CERTIFICATE` block.
    pub fn cert_pem(&self) -> String {
        pem_encode(CERTIFICATE_LABEL, &self.inner.cert_der)
    }

    /// The fingerprint that names this client: SHA-256 of [`Identity::cert_der`].
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.inner.verifying_key.algorithm()
    }

    /// The certificate's public key, as a server sees it.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.inner.verifying_key
    }

    /// Signs `message` (for a Root packet: `timestamp || payload` as on the wire) the way
    /// [`VerifyingKey::verify`] checks it: Ed25519 pure (64 bytes), ECDSA P-256 with
    /// SHA-256 in DER (at most 72 bytes), RSA PKCS#1 v1.5 SHA-256 (modulus length).
    ///
    /// Returns an empty vector, which no server accepts, in the one case signing can fail:
    /// the system random generator is unavailable (ECDSA and RSA only). Use
    /// [`Identity::try_sign`] to see that error.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.try_sign(message).unwrap_or_default()
    }

    /// [`Identity::sign`], reporting a failure instead of returning an empty signature.
    ///
    /// # Errors
    /// [`IdentityError::SigningFailed`] if the system random generator fails.
    pub fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let inner = &self.inner;
        match &inner.signer {
            Signer::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            Signer::EcdsaP256(k) => k
                .sign(&inner.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| IdentityError::SigningFailed),
            Signer::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &inner.rng, message, &mut sig)
                    .map_err(|_| IdentityError::SigningFailed)?;
                Ok(sig)
            }
        }
    }

    /// Builds an identity from a certificate and a private key (PEM label + DER body),
    /// checking that the key belongs to the certificate. `cert_name`/`key_name` name the
    /// sources in error messages.
    fn from_parts(
        cert_der: Vec<u8>,
        key_label: &'static str,
        key_der: SecretBytes,
        cert_name: &str,
        key_name: &str,
    ) -> Result<Identity, SignerError> {
        let names = Sources {
            cert: cert_name,
            key: key_name,
        };
        let verifying_key = names.cert_key(&cert_der)?;
        let rng = SystemRandom::new();
        let signer = Signer::from_key(key_label, &key_der.0, &verifying_key, &rng, &names)?;
        if signer.public_key() != verifying_key.public_key() {
            return Err(SignerError::PublicKeysDiffer {
                key: key_name.to_string(),
                cert: cert_name.to_string(),
            });
        }
        Ok(Identity {
            inner: Arc::new(Inner {
                fingerprint: fingerprint(&cert_der),
                cert_der,
                verifying_key,
                signer,
                key_label,
                key_der,
                rng,
            }),
        })
    }
}

/// The names of a certificate and its key in error messages (file paths, or "the generated
/// certificate" / "the generated key").
struct Sources<'a> {
    cert: &'a str,
    key: &'a str,
}

impl Sources<'_> {
    /// The public key of the certificate `der`, which must be one well-formed DER
    /// certificate with a supported key.
    fn cert_key(&self, der: &[u8]) -> Result<VerifyingKey, SignerError> {
        let refused = |reason| SignerError::Refused {
            file: self.cert.to_string(),
            reason,
        };
        let cert = parse_exact(der).map_err(refused)?;
        VerifyingKey::from_spki(cert.public_key()).map_err(refused)
    }

    /// The key is not the `kind` the certificate's `alg` needs.
    fn wrong_kind(
        &self,
        kind: &'static str,
        alg: KeyAlgorithm,
    ) -> impl FnOnce(ring::error::KeyRejected) -> SignerError + '_ {
        move |rejected| SignerError::WrongKeyKind {
            key: self.key.to_string(),
            kind,
            rejected,
            cert: self.cert.to_string(),
            alg,
        }
    }
}

impl Signer {
    /// The key pair of the private key `der` (PEM label `label`) for a certificate whose
    /// public key is `public`: PKCS#8 for each algorithm, SEC1 for P-256, PKCS#1 for RSA.
    fn from_key(
        label: &'static str,
        der: &[u8],
        public: &VerifyingKey,
        rng: &SystemRandom,
        names: &Sources<'_>,
    ) -> Result<Signer, SignerError> {
        let alg = public.algorithm();
        Ok(match (alg, label) {
            (KeyAlgorithm::Ed25519, PKCS8_LABEL) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(Signer::Ed25519)
                .map_err(names.wrong_kind("PKCS#8 Ed25519", alg))?,
            (KeyAlgorithm::EcdsaP256, PKCS8_LABEL) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, rng)
                    .map(Signer::EcdsaP256)
                    .map_err(names.wrong_kind("PKCS#8 ECDSA P-256", alg))?
            }
            (KeyAlgorithm::EcdsaP256, SEC1_LABEL) => Signer::from_sec1(der, public, rng, names)?,
            (KeyAlgorithm::Rsa, PKCS8_LABEL) => RsaKeyPair::from_pkcs8(der)
                .map(Signer::Rsa)
                .map_err(names.wrong_kind("PKCS#8 RSA (2048-4096 bits)", alg))?,
            (KeyAlgorithm::Rsa, PKCS1_LABEL) => RsaKeyPair::from_der(der)
                .map(Signer::Rsa)
                .map_err(names.wrong_kind("PKCS#1 RSA (2048-4096 bits)", alg))?,
            (alg, label) => {
                return Err(SignerError::WrongLabel {
                    key: names.key.to_string(),
                    label,
                    alg,
                    cert: names.cert.to_string(),
                })
            }
        })
    }

    /// A P-256 key pair from a SEC1 `EC PRIVATE KEY` and the certificate's public key.
    fn from_sec1(
        der: &[u8],
        public: &VerifyingKey,
        rng: &SystemRandom,
        names: &Sources<'_>,
    ) -> Result<Signer, SignerError> {
        let private = sec1_private_key(der).map_err(|reason| SignerError::BadSec1Key {
            key: names.key.to_string(),
            reason,
        })?;
        EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            private,
            public.public_key(),
            rng,
        )
        .map(Signer::EcdsaP256)
        .map_err(|_| SignerError::KeyMismatch {
            key: names.key.to_string(),
            cert: names.cert.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keyfile::ENCRYPTED_LABEL;
    use crate::identity::verify_self_signed;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    #[test]
    fn generate_save_load_round_trip() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let dir = tempfile::tempdir().expect("tempdir");
            let sub = dir.path().join("nested").join("id");
            let id = Identity::generate(alg, "round-trip").expect("generate");
            assert_eq!(id.algorithm(), alg);
            id.save(&sub).expect("save");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(sub.join(KEY_FILE))
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            let back = Identity::load(&sub).expect("load");
            assert_eq!(back.cert_der(), id.cert_der());
            assert_eq!(back.fingerprint(), id.fingerprint());
            assert_eq!(back.algorithm(), alg);
            // A signature by the loaded key verifies with the original certificate.
            let v = verify_self_signed(id.cert_der(), now()).expect("verify");
            let msg = b"\x00\x00\x00\x00\x65\x00\x00\x00payload";
            v.key
                .verify(msg, &back.sign(msg))
                .expect("loaded key signs");
            // Saving again over existing files works and keeps the key private.
            back.save(&sub).expect("save again");
            assert_eq!(
                Identity::load(&sub).expect("reload").fingerprint(),
                id.fingerprint()
            );
            let leftovers: Vec<_> = fs::read_dir(&sub)
                .expect("dir")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        }
    }

    #[test]
    fn sign_verify_and_flipped_byte() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let id = Identity::generate(alg, "signer").expect("generate");
            let key = verify_self_signed(id.cert_der(), now())
                .expect("verify")
                .key;
            assert_eq!(&key, id.verifying_key());
            let msg = b"timestamp and payload";
            let sig = id.sign(msg);
            match alg {
                KeyAlgorithm::Ed25519 => assert_eq!(sig.len(), 64),
                _ => assert!(sig.len() <= 72 && sig.len() >= 8, "{}", sig.len()),
            }
            key.verify(msg, &sig).expect("good signature");
            assert_eq!(
                key.verify(b"other message", &sig),
                Err(IdentityError::BadSignature)
            );
            for i in 0..sig.len() {
                let mut bad = sig.clone();
                bad[i] ^= 0x80;
                assert_eq!(
                    key.verify(msg, &bad),
                    Err(IdentityError::BadSignature),
                    "byte {i}"
                );
            }
            assert_eq!(
                key.verify(msg, &sig[..sig.len() - 1]),
                Err(IdentityError::BadSignature)
            );
            // Another identity's key does not accept it.
            let other = Identity::generate(alg, "other").expect("generate");
            assert_eq!(
                other.verifying_key().verify(msg, &sig),
                Err(IdentityError::BadSignature)
            );
        }
    }

    #[test]
    fn generate_refuses_rsa_and_bad_names() {
        assert!(matches!(
            Identity::generate(KeyAlgorithm::Rsa, "x"),
            Err(SignerError::CannotGenerateRsa)
        ));
        assert!(matches!(
            Identity::generate(KeyAlgorithm::Ed25519, ""),
            Err(SignerError::EmptyCommonName)
        ));
        let long = Identity::generate(KeyAlgorithm::Ed25519, &"n".repeat(65));
        assert!(matches!(
            long,
            Err(SignerError::CommonNameTooLong { max: 64 })
        ));
        assert!(Identity::generate(KeyAlgorithm::Ed25519, &"n".repeat(64)).is_ok());
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Identity::load(dir.path()).expect_err("empty dir");
        assert!(
            err.to_string().contains("neither cert.pem nor cert.der"),
            "{err}"
        );

        let a = Identity::generate(KeyAlgorithm::Ed25519, "a").expect("a");
        let b = Identity::generate(KeyAlgorithm::Ed25519, "b").expect("b");
        let c = Identity::generate(KeyAlgorithm::EcdsaP256, "c").expect("c");
        a.save(dir.path()).expect("save");
        // Mismatched key of the same type.
        let bdir = tempfile::tempdir().expect("tempdir");
        b.save(bdir.path()).expect("save");
        fs::copy(bdir.path().join(KEY_FILE), dir.path().join(KEY_FILE)).expect("copy");
        let err = format!("{:#}", Identity::load(dir.path()).expect_err("mismatch"));
        assert!(
            err.contains("key.pem") && err.contains("does not belong"),
            "{err}"
        );
        // Key of another type.
        let cdir = tempfile::tempdir().expect("tempdir");
        c.save(cdir.path()).expect("save");
        fs::copy(cdir.path().join(KEY_FILE), dir.path().join(KEY_FILE)).expect("copy");
        let err = format!("{:#}", Identity::load(dir.path()).expect_err("wrong type"));
        assert!(err.contains("key.pem") && err.contains("Ed25519"), "{err}");
        // Missing key.
        fs::remove_file(dir.path().join(KEY_FILE)).expect("rm");
        let err = format!("{:#}", Identity::load(dir.path()).expect_err("no key"));
        assert!(err.contains("key.pem"), "{err}");
        // Encrypted key.
        fs::write(
            dir.path().join(KEY_FILE),
            pem_encode(ENCRYPTED_LABEL, b"whatever"),
        )
        .expect("write");
        let err = format!("{:#}", Identity::load(dir.path()).expect_err("encrypted"));
        assert!(err.contains("encrypted"), "{err}");
        // Garbage certificate.
        fs::write(
            dir.path().join(CERT_FILE),
            pem_encode(CERTIFICATE_LABEL, b"junk"),
        )
        .expect("write");
        let err = format!("{:#}", Identity::load(dir.path()).expect_err("bad cert"));
        assert!(
            err.contains("cert.pem") && err.contains("well-formed"),
            "{err}"
        );
        // Two certificates.
        fs::write(dir.path().join(CERT_FILE), a.cert_pem() + &b.cert_pem()).expect("write");
        let err = format!("{:#}", Identity::load(dir.path()).expect_err("two certs"));
        assert!(err.contains("2 certificates"), "{err}");
    }

    #[test]
    fn load_cert_der_and_sec1_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = Identity::generate(KeyAlgorithm::EcdsaP256, "der").expect("generate");
        id.save(dir.path()).expect("save");
        fs::remove_file(dir.path().join(CERT_FILE)).expect("rm");
        fs::write(dir.path().join(CERT_DER_FILE), id.cert_der()).expect("write");
        let back = Identity::load(dir.path()).expect("load from cert.der");
        assert_eq!(back.fingerprint(), id.fingerprint());
        let err = sec1_private_key(b"\x30\x00").expect_err("empty seq");
        assert!(err.contains("SEC1"));
        assert!(sec1_private_key(&[]).is_err());
    }

    #[test]
    fn identity_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Identity>();
        assert_traits::<crate::identity::VerifiedCertificate>();
    }

    #[test]
    fn debug_shows_no_key_material() {
        let id = Identity::generate(KeyAlgorithm::Ed25519, "dbg").expect("generate");
        let text = format!("{id:?}");
        assert!(text.contains("Ed25519") && text.contains(&id.fingerprint().to_hex()));
        assert!(!text.contains("PRIVATE"));
    }
}
