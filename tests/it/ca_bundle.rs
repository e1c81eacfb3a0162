//! Every certificate in the system CA store parses with `identity::parse_certificate`, and
//! its fingerprint equals what `openssl x509 -fingerprint -sha256` prints.
//!
//! A broad real-world corpus for the DER parser and the fingerprint rule (docs/PROTOCOL.md
//! §1: fingerprint = SHA-256 of the exact DER bytes). Needs the
//! `ca-certificates` package; with `CI=true` a missing store is a failure.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rendezvous::identity::{certs_from_pem, parse_certificate};
use rendezvous::wire::Fingerprint;

/// The store; `CA_CERT_DIR` overrides it (to test the missing-store path).
fn cert_dir() -> PathBuf {
    std::env::var_os("CA_CERT_DIR").map_or_else(|| PathBuf::from("/etc/ssl/certs"), PathBuf::from)
}
/// Fewer certificates than this means the store is not really there.
const MIN_CERTS: usize = 50;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Fails under CI, otherwise prints a note; returns so the caller can skip.
fn missing(what: &str) {
    assert!(
        !in_ci(),
        "{what}; with CI=true this is a failure: install the ca-certificates and openssl packages \
         (apt-get install ca-certificates openssl)"
    );
    eprintln!("note: skipping: {what} (install ca-certificates and openssl to run this test)");
}

fn openssl_fingerprint(path: &Path) -> Fingerprint {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl x509 failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // "sha256 Fingerprint=AB:CD:..." (older versions: "SHA256 Fingerprint=...")
    let hex = text
        .trim()
        .split_once('=')
        .map(|(_, h)| h)
        .unwrap_or_else(|| panic!("unexpected openssl output: {text:?}"));
    Fingerprint::from_hex(hex).unwrap_or_else(|e| panic!("openssl hex {hex:?}: {e}"))
}

fn openssl_present() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn pem_files() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(cert_dir()) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_system_ca_certificate_parses_with_openssl_fingerprint() {
    let files = pem_files();
    if files.is_empty() {
        missing(&format!(
            "no *.pem certificates in {}",
            cert_dir().display()
        ));
        return;
    }
    let openssl = openssl_present();
    if !openssl {
        missing("the openssl command is not installed; checking parsing only");
    }

    let mut seen_content: HashSet<Vec<u8>> = HashSet::new();
    let mut fingerprints: BTreeSet<Fingerprint> = BTreeSet::new();
    let mut checked = 0usize;
    for path in &files {
        let Ok(text) = fs::read(path) else {
            // A dangling symlink is the store's problem, not the parser's.
            eprintln!("note: cannot read {}", path.display());
            continue;
        };
        if !seen_content.insert(text.clone()) {
            continue;
        }
        let ders = certs_from_pem(&text)
            .unwrap_or_else(|e| panic!("{}: PEM not readable: {e}", path.display()));
        assert_eq!(
            ders.len(),
            1,
            "{}: expected one certificate",
            path.display()
        );
        let der = &ders[0];
        let info = parse_certificate(der)
            .unwrap_or_else(|e| panic!("{}: parse_certificate failed: {e}", path.display()));
        assert!(
            !info.subject.is_empty(),
            "{}: empty subject",
            path.display()
        );
        if openssl {
            assert_eq!(
                info.fingerprint,
                openssl_fingerprint(path),
                "{}: fingerprint differs from openssl's",
                path.display()
            );
        }
        fingerprints.insert(info.fingerprint);
        checked += 1;
    }
    let dir = cert_dir();
    let dir = dir.display();
    eprintln!("checked {checked} distinct CA certificates from {dir}/*.pem");
    assert!(
        checked >= MIN_CERTS,
        "only {checked} certificates in {dir}; expected at least {MIN_CERTS}"
    );

    // The concatenated bundle, if present: every certificate in it parses too.
    let bundle_path = cert_dir().join("ca-certificates.crt");
    let bundle_name = bundle_path.display();
    if let Ok(bundle) = fs::read(&bundle_path) {
        let ders = certs_from_pem(&bundle).expect("bundle PEM readable");
        let mut from_bundle = BTreeSet::new();
        for (i, der) in ders.iter().enumerate() {
            let info = parse_certificate(der)
                .unwrap_or_else(|e| panic!("{bundle_name}: certificate #{i}: {e}"));
            from_bundle.insert(info.fingerprint);
        }
        eprintln!("checked {} certificates from {bundle_name}", ders.len());
        assert!(from_bundle.len() >= MIN_CERTS);
        // Not asserted equal: a store may hold files (local CAs) the bundle lacks.
        eprintln!(
            "{} of them also in {dir}/*.pem",
            fingerprints.intersection(&from_bundle).count()
        );
    }
}

#[test]
fn system_ca_certificates_refuse_trailing_and_truncated_bytes() {
    let files = pem_files();
    if files.is_empty() {
        missing(&format!(
            "no *.pem certificates in {}",
            cert_dir().display()
        ));
        return;
    }
    let mut checked = 0usize;
    for path in files.iter().take(20) {
        let Ok(text) = fs::read(path) else { continue };
        let Ok(ders) = certs_from_pem(&text) else {
            continue;
        };
        let Some(der) = ders.first() else { continue };
        let mut long = der.clone();
        long.push(0);
        assert!(parse_certificate(&long).is_err(), "{}", path.display());
        for cut in [0, 1, der.len() / 2, der.len() - 1] {
            assert!(
                parse_certificate(&der[..cut]).is_err(),
                "{}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 0);
}
