//! Rough edges a new user hits with the client commands, on the real binary
//! (docs/PROTOCOL.md §7): `identity new` keeps an identity it would replace unless told to
//! (`--force`).

use crate::common::{bin, run, Identity};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// `rendezvous identity new --out DIR EXTRA...`, run to its end.
fn identity_new(dir: &std::path::Path, extra: &[&str]) -> crate::common::Finished {
    let mut cmd = bin();
    cmd.args(["identity", "new", "--out"]).arg(dir).args(extra);
    run("identity new", cmd, T)
}

/// `rendezvous identity show DIR`: the fingerprint.
fn identity_show(dir: &std::path::Path) -> String {
    let mut cmd = bin();
    cmd.args(["identity", "show"]).arg(dir);
    let done = run("identity show", cmd, T);
    done.assert_success("identity show");
    done.stdout.join("\n")
}

#[test]
fn identity_new_refuses_to_replace_an_identity_without_force() {
    let id = Identity::new("kept");
    let before = std::fs::read(id.dir.join("key.pem")).expect("key.pem");
    let again = identity_new(&id.dir, &[]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(again.stdout.is_empty(), "no fingerprint printed: {again:?}");
    let err = again.stderr.join("\n");
    let cert = id.dir.join("cert.pem");
    assert!(
        err.starts_with(&format!("error: {} already exists", cert.display())),
        "names the file: {err}"
    );
    assert!(err.contains("--force"), "says how to replace it: {err}");
    assert_eq!(
        identity_show(&id.dir),
        id.fingerprint,
        "the identity is kept"
    );
    assert_eq!(std::fs::read(id.dir.join("key.pem")).unwrap(), before);

    // A key alone (a half-made identity, or one made by openssl) is kept too.
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("key.pem"), b"not mine to replace").unwrap();
    let keyed = identity_new(tmp.path(), &[]);
    assert_eq!(keyed.status.code(), Some(1), "{keyed:?}");
    assert!(keyed.stderr.join("\n").contains("key.pem already exists"));
    assert!(!tmp.path().join("cert.pem").exists(), "nothing written");

    // --force replaces it: a new fingerprint.
    let forced = identity_new(&id.dir, &["--force"]);
    forced.assert_success("identity new --force");
    let new_fp = forced.stdout.join("\n");
    assert_eq!(new_fp.len(), 64, "{forced:?}");
    assert_ne!(new_fp, id.fingerprint);
    assert_eq!(identity_show(&id.dir), new_fp);
}
