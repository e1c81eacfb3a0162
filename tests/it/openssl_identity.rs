//! Interoperability of `rendezvous::identity` with the `openssl` command: identities that
//! OpenSSL makes load and verify, and signatures cross-check both ways for Ed25519,
//! ECDSA P-256 and RSA-2048 (docs/PROTOCOL.md
//! §2.4: the signature algorithms).
//!
//! Without the `openssl` command these tests skip with a note, or fail when `CI=true`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use rendezvous::identity::{
    certs_from_pem, fingerprint, verify_self_signed, Identity, KeyAlgorithm, VerifyingKey,
};

/// The message signed in every test: a Root packet's `timestamp || payload`.
const MESSAGE: &[u8] = b"\x00\x00\x00\x00\x66\x00\x00\x01register me\x00\xff";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// True when openssl can be run; otherwise fails under CI or prints a note.
fn openssl_or_skip() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "the openssl command is not installed; with CI=true this is a failure: \
             install the openssl package"
        );
        eprintln!("note: skipping: the openssl command is not installed");
    }
    ok
}

/// Runs `openssl ARGS` in `dir`, panicking with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Makes `cert.pem` + `key.pem` in `dir` with `openssl req -x509 -newkey <newkey>`.
fn openssl_identity(dir: &Path, newkey: &[&str]) {
    let mut args = vec!["req", "-x509"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=x",
    ]);
    openssl(dir, &args);
    fs::write(dir.join("msg"), MESSAGE).expect("write msg");
    openssl(
        dir,
        &[
            "x509", "-in", "cert.pem", "-pubkey", "-noout", "-out", "pub.pem",
        ],
    );
}

/// The certificate in `dir/cert.pem`, as DER, checked as a server checks it; also checks
/// the fingerprint against `openssl x509 -fingerprint -sha256`.
fn checked_cert(dir: &Path, alg: KeyAlgorithm) -> (Vec<u8>, VerifyingKey) {
    let pem = fs::read(dir.join("cert.pem")).expect("read cert.pem");
    let mut ders = certs_from_pem(&pem).expect("PEM");
    assert_eq!(ders.len(), 1);
    let der = ders.remove(0);
    let verified = verify_self_signed(&der, now()).expect("openssl cert passes the full check");
    assert_eq!(verified.key.algorithm(), alg);
    let text = openssl(
        dir,
        &[
            "x509",
            "-in",
            "cert.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let hex = text.trim().split_once('=').expect("fingerprint line").1;
    assert_eq!(
        verified.fingerprint.to_hex(),
        hex.replace(':', "").to_lowercase()
    );
    assert_eq!(verified.fingerprint, fingerprint(&der));
    (der, verified.key)
}

/// Our signature over MESSAGE, written to `dir/oursig`.
fn write_our_signature(dir: &Path, id: &Identity) {
    let sig = id.sign(MESSAGE);
    assert!(!sig.is_empty());
    fs::write(dir.join("oursig"), sig).expect("write sig");
}

/// `Identity::save` of an OpenSSL-made identity writes files OpenSSL reads back.
fn saved_files_read_by_openssl(dir: &Path, id: &Identity) {
    let saved = dir.join("saved");
    id.save(&saved).expect("save");
    openssl(&saved, &["pkey", "-in", "key.pem", "-noout"]);
    openssl(&saved, &["x509", "-in", "cert.pem", "-noout"]);
    let again = Identity::load(&saved).expect("reload");
    assert_eq!(again.fingerprint(), id.fingerprint());
}

#[test]
fn ed25519_identity_made_by_openssl() {
    if !openssl_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    openssl_identity(dir, &["-newkey", "ed25519"]);
    let (der, key) = checked_cert(dir, KeyAlgorithm::Ed25519);

    // OpenSSL writes a PKCS#8 v1 key without the public key; it must still load.
    let id = Identity::load(dir).expect("load openssl ed25519 identity");
    assert_eq!(id.algorithm(), KeyAlgorithm::Ed25519);
    assert_eq!(id.cert_der(), der.as_slice());

    // openssl signs, we verify.
    openssl(
        dir,
        &[
            "pkeyutl", "-sign", "-rawin", "-inkey", "key.pem", "-in", "msg", "-out", "sig",
        ],
    );
    let sig = fs::read(dir.join("sig")).expect("read sig");
    assert_eq!(sig.len(), 64);
    key.verify(MESSAGE, &sig)
        .expect("openssl signature verifies");
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert!(key.verify(MESSAGE, &bad).is_err());

    // We sign, openssl verifies.
    write_our_signature(dir, &id);
    let out = openssl(
        dir,
        &[
            "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg",
            "-sigfile", "oursig",
        ],
    );
    assert!(out.contains("Signature Verified Successfully"), "{out}");

    saved_files_read_by_openssl(dir, &id);
}

#[test]
fn p256_identity_made_by_openssl() {
    if !openssl_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    openssl_identity(
        dir,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (der, key) = checked_cert(dir, KeyAlgorithm::EcdsaP256);

    let id = Identity::load(dir).expect("load openssl P-256 identity");
    assert_eq!(id.algorithm(), KeyAlgorithm::EcdsaP256);
    assert_eq!(id.cert_der(), der.as_slice());

    // openssl signs (DER ECDSA-Sig-Value), we verify.
    openssl(
        dir,
        &["dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "msg"],
    );
    let sig = fs::read(dir.join("sig")).expect("read sig");
    assert!(sig.len() <= 72);
    key.verify(MESSAGE, &sig)
        .expect("openssl signature verifies");
    assert!(key.verify(b"another message", &sig).is_err());

    // We sign, openssl verifies.
    write_our_signature(dir, &id);
    let out = openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "oursig",
            "msg",
        ],
    );
    assert!(out.contains("Verified OK"), "{out}");

    saved_files_read_by_openssl(dir, &id);

    // The same key as SEC1 "EC PRIVATE KEY" (what `openssl ec` writes) loads too.
    let sec1 = dir.join("sec1");
    fs::create_dir(&sec1).expect("mkdir");
    fs::copy(dir.join("cert.pem"), sec1.join("cert.pem")).expect("copy");
    openssl(dir, &["ec", "-in", "key.pem", "-out", "sec1/key.pem"]);
    let text = fs::read_to_string(sec1.join("key.pem")).expect("read");
    assert!(text.contains("BEGIN EC PRIVATE KEY"), "{text}");
    let from_sec1 = Identity::load(&sec1).expect("load SEC1 key");
    key.verify(MESSAGE, &from_sec1.sign(MESSAGE))
        .expect("SEC1-loaded key signs");
}

#[test]
fn rsa2048_identity_made_by_openssl() {
    if !openssl_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    openssl_identity(dir, &["-newkey", "rsa:2048"]);
    let (_, key) = checked_cert(dir, KeyAlgorithm::Rsa);

    openssl(
        dir,
        &["dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "msg"],
    );
    let sig = fs::read(dir.join("sig")).expect("read sig");
    assert_eq!(sig.len(), 256);
    key.verify(MESSAGE, &sig)
        .expect("openssl RSA signature verifies");
    let mut bad = sig.clone();
    bad[0] ^= 1;
    assert!(key.verify(MESSAGE, &bad).is_err());

    // RSA identities load (PKCS#8 and PKCS#1) and sign, though they cannot be generated.
    let id = Identity::load(dir).expect("load openssl RSA identity");
    assert_eq!(id.algorithm(), KeyAlgorithm::Rsa);
    write_our_signature(dir, &id);
    let out = openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "oursig",
            "msg",
        ],
    );
    assert!(out.contains("Verified OK"), "{out}");
    let pkcs1 = dir.join("pkcs1");
    fs::create_dir(&pkcs1).expect("mkdir");
    fs::copy(dir.join("cert.pem"), pkcs1.join("cert.pem")).expect("copy");
    openssl(
        dir,
        &[
            "rsa",
            "-in",
            "key.pem",
            "-traditional",
            "-out",
            "pkcs1/key.pem",
        ],
    );
    let from_pkcs1 = Identity::load(&pkcs1).expect("load PKCS#1 key");
    key.verify(MESSAGE, &from_pkcs1.sign(MESSAGE))
        .expect("PKCS#1-loaded key signs");
}

#[test]
fn small_rsa_and_other_curves_are_refused() {
    if !openssl_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, newkey) in [
        ("rsa1024", vec!["-newkey", "rsa:1024"]),
        (
            "p384",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
    ] {
        let dir = tmp.path().join(name);
        fs::create_dir(&dir).expect("mkdir");
        openssl_identity(&dir, &newkey);
        let pem = fs::read(dir.join("cert.pem")).expect("read");
        let der = certs_from_pem(&pem).expect("pem").remove(0);
        let err = verify_self_signed(&der, now()).expect_err(name);
        let expected = if name == "rsa1024" {
            rendezvous::identity::IdentityError::RsaKeySize
        } else {
            rendezvous::identity::IdentityError::UnsupportedKey
        };
        assert_eq!(err, expected, "{name}");
        assert!(Identity::load(&dir).is_err(), "{name}");
    }
}

#[test]
fn generated_identity_is_read_by_openssl() {
    if !openssl_or_skip() {
        return;
    }
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let id = Identity::generate(alg, "made-by-rcgen").expect("generate");
        id.save(dir).expect("save");
        openssl(dir, &["pkey", "-in", "key.pem", "-noout"]);
        let subject = openssl(dir, &["x509", "-in", "cert.pem", "-noout", "-subject"]);
        assert!(subject.contains("made-by-rcgen"), "{subject}");
        let text = openssl(
            dir,
            &[
                "x509",
                "-in",
                "cert.pem",
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
        );
        let hex = text.trim().split_once('=').expect("fingerprint line").1;
        assert_eq!(
            id.fingerprint().to_hex(),
            hex.replace(':', "").to_lowercase()
        );
        // openssl checks the self-signature too.
        openssl(dir, &["verify", "-CAfile", "cert.pem", "cert.pem"]);
    }
}
