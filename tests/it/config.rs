//! `serve`'s configuration (docs/PROTOCOL.md §7, "Configuration"): a TOML file whose keys
//! are the flags, `RENDEZVOUS_*` variables over it, flags over both; `config check` and
//! `config example`; errors that name the file, the line and the key.

use crate::common::{bin, run, Server};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write the file");
    p
}

fn config(args: &[&std::ffi::OsStr]) -> crate::common::Finished {
    let mut cmd = bin();
    cmd.arg("config").args(args);
    run("config", cmd, T)
}

#[test]
fn the_example_lists_every_setting_at_its_default_and_checks_as_the_defaults() {
    let example = config(&["example".as_ref()]);
    example.assert_success("config example");
    // Uncommented, the example is a valid file that changes nothing.
    let uncommented: String = example
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| !l.ends_with("(not set by default)"))
        .filter(|l| {
            l.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "example.toml", &uncommented);
    let from_file = config(&["check".as_ref(), file.as_os_str()]);
    from_file.assert_success("config check of the example");
    let defaults = config(&["check".as_ref()]);
    defaults.assert_success("config check without a file");
    assert_eq!(from_file.stdout, defaults.stdout);
    assert!(defaults.stdout.len() >= 20, "{:?}", defaults.stdout);
    for key in [
        "listen = ",
        "ttl = 75",
        "open-contacts = false",
        "peer = []",
        "log-addresses = false",
        "log-summary-interval = 60",
    ] {
        assert!(
            defaults.stdout.iter().any(|l| l.starts_with(key)),
            "{key} in {:?}",
            defaults.stdout
        );
    }
}

#[test]
fn unknown_keys_and_bad_values_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = write(&dir, "unknown.toml", "ttl = 90\n\nlisten-on = \"x\"\n");
    let done = config(&["check".as_ref(), unknown.as_os_str()]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    let err = done.stderr.join("\n");
    assert!(
        err.contains("unknown.toml:3: unknown key `listen-on`"),
        "{err}"
    );
    let bad = write(&dir, "bad.toml", "memory-only = true\nttl = \"soon\"\n");
    let done = config(&["check".as_ref(), bad.as_os_str()]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    let err = done.stderr.join("\n");
    assert!(err.contains("bad.toml:2: key `ttl`"), "{err}");
    // serve refuses to start on it, with the same message.
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&bad);
    let done = run("serve", cmd, T);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(done.stderr.join("\n").contains("bad.toml:2: key `ttl`"));
    // Values serve itself refuses together (replayed captures on a public listener).
    let refused = write(
        &dir,
        "refused.toml",
        "listen = \"0.0.0.0:0\"\naccept-replayed = true\n",
    );
    let done = config(&["check".as_ref(), refused.as_os_str()]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
}

#[test]
fn flags_override_variables_which_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "serve.toml",
        "memory-only = true\nttl = 90\nkeepalive = 20\nalias = \"from-file\"\nfreshness = 30\n",
    );
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ttl",
        "120",
        "--config",
    ])
    .arg(&file)
    .env("RENDEZVOUS_ALIAS", "from-env")
    .env("RENDEZVOUS_FRESHNESS", "45");
    let mut server = Server::spawn("configured", cmd);
    // Waited for: stderr is read by its own thread, behind the stdout lines.
    let line = server.proc.expect_stderr("the effective settings", T, |l| {
        l.contains("effective settings")
    });
    for want in [
        "ttl = 120",            // flag over file
        "alias = \"from-env\"", // variable over file
        "freshness = 45",       // variable over file
        "keepalive = 20",       // file over default
        "memory-only = true",   // file
    ] {
        assert!(line.contains(want), "{want} in {line}");
    }
    let line = server
        .proc
        .out
        .wait_for(T, |l| l.starts_with("data-dir"))
        .expect("serve prints its data directory");
    assert_eq!(line, "data-dir none (--memory-only)");
    server.proc.kill();
}
