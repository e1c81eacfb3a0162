//! Rough edges a new user hits with the client commands, on the real binary
//! (docs/PROTOCOL.md §7): `identity new` keeps an identity it would replace unless told to
//! (`--force`); `contacts update` names the field that does not fit and its width, before
//! connecting; `register` says when the server does not answer, and keeps trying.

use crate::common::{bin, field, free_port, run, Identity, Proc, Server};
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

#[test]
fn contacts_update_names_the_field_that_does_not_fit() {
    let server = Server::start(&["--open-contacts"]);
    let srv = server.addr.to_string();
    let id = Identity::new("writer");
    let dir = id.dir.to_str().expect("UTF-8 temp path");
    let long_user = "u".repeat(257);
    let long_contact = "c".repeat(300);
    let cases = [
        (
            vec!["--identity", dir, "bob", "123456789012345678901"],
            "phone is 21 bytes, longer than its field of 20 bytes",
        ),
        (
            vec!["--identity", dir, &long_contact, "1"],
            "contact is 300 bytes, longer than its field of 256 bytes",
        ),
        (
            vec!["--user", &long_user, "bob", "1"],
            "username is 257 bytes, longer than its field of 256 bytes",
        ),
    ];
    for (args, want) in cases {
        let mut cmd = bin();
        cmd.args(["contacts", "update", "--server", &srv])
            .args(&args);
        let done = run("contacts update", cmd, T);
        assert_eq!(done.status.code(), Some(1), "{done:?}");
        assert!(done.stdout.is_empty(), "{done:?}");
        let err = done.stderr.join("\n");
        assert_eq!(
            err,
            format!("error: {want} (text is refused, not cut)"),
            "{args:?}"
        );
    }
    // Nothing was written.
    let mut cmd = bin();
    cmd.args(["contacts", "list", "--server", &srv, "--all"]);
    let list = run("contacts list", cmd, T);
    list.assert_success("contacts list");
    assert!(list.stdout.is_empty(), "{list:?}");
}

#[test]
fn register_says_the_server_is_unreachable_and_keeps_trying() {
    // Nobody listens on the port yet.
    let port = free_port();
    let srv = format!("127.0.0.1:{port}");
    let id = Identity::new("patient");
    let mut cmd = bin();
    cmd.args(["register", "--server", &srv, "--identity"])
        .arg(&id.dir);
    let mut reg = Proc::spawn("register", cmd);
    // A first round of 5 registrations, 2 s each, without an answer.
    let line = reg
        .out
        .expect("unreachable line", Duration::from_secs(30), |l| {
            l.starts_with("unreachable ")
        });
    assert_eq!(field(&line, "server"), Some(srv.as_str()), "{line}");
    let waited: u64 = field(&line, "waited")
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("waited=S in {line}"));
    assert!((9..=15).contains(&waited), "{line}");
    assert!(reg.wait_exit(Duration::ZERO).is_none(), "register gave up");
    // The server comes up: a registration of the next round gets through.
    let mut serve = bin();
    serve.args(["serve", "--listen", &srv, "--memory-only"]);
    let _server = Server::spawn("server", serve);
    let line = reg
        .out
        .expect("registered line", Duration::from_secs(30), |l| {
            l.starts_with("registered ")
        });
    assert_eq!(field(&line, "fingerprint"), Some(id.fingerprint.as_str()));
}
