//! The command line of the real binary (docs/PROTOCOL.md §7): exit statuses (0 success, 1
//! failure, 2 usage error), as `--help` and the man page list them; `serve` values refused
//! as they are parsed, from a flag, the configuration file or a `RENDEZVOUS_*` variable
//! alike; host names for `--listen`, as for `--peer`.

use crate::common::{bin, run, status_field, Finished, Server};
use std::ffi::OsStr;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn rendezvous<S: AsRef<OsStr>>(args: &[S]) -> Finished {
    let mut cmd = bin();
    cmd.args(args);
    run("rendezvous", cmd, T)
}

#[test]
fn usage_errors_exit_2_failures_exit_1_as_help_and_the_man_page_say() {
    for args in [
        &["serve", "--no-such-flag"][..],
        &["frobnicate"],
        &["status"],
        &["serve", "--ttl", "soon"],
    ] {
        let done = rendezvous(args);
        assert_eq!(done.status.code(), Some(2), "{args:?}: {done:?}");
        assert!(done.stderr[0].starts_with("error: "), "{done:?}");
    }
    let missing = tempfile::tempdir().unwrap().path().join("nothing");
    let done = rendezvous(&[OsStr::new("identity"), OsStr::new("show"), missing.as_ref()]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(done.stderr[0].starts_with("error: "), "{done:?}");
    let help = rendezvous(&["--help"]);
    help.assert_success("--help");
    let help = help.stdout.join("\n");
    for line in [
        "Exit status:",
        "  1  the command failed",
        "  2  usage error",
        "  3  status",
    ] {
        assert!(help.contains(line), "{line:?} in {help}");
    }
    let man = rendezvous(&["man"]);
    man.assert_success("man");
    let man = man.stdout.join("\n");
    assert!(man.contains(".SH \"EXIT STATUS\"\n.TP\n0\n"), "{man}");
    assert!(man.contains(".TP\n2\n\\&usage error"), "{man}");
}

/// `serve` flags and values it refuses as it parses them, and what the refusal names.
const REFUSED: [(&str, &str, &str); 17] = [
    ("max-clients", "0", "at least 1"),
    ("ttl", "0", "at least 1"),
    ("keepalive", "0", "at least 1"),
    ("freshness", "0", "at least 1"),
    ("register-rate", "0", "at least 1"),
    ("lookup-bytes", "0", "at least 1"),
    ("relay-bytes", "0", "at least 1"),
    ("queue-depth", "0", "at least 1"),
    ("queue-per-sender", "0", "at least 1"),
    ("queue-age", "0", "at least 1"),
    ("queue-bytes", "0", "at least 1"),
    ("announce", "foo", "no port"),
    ("announce", "foo.example:0", "port 0"),
    ("peer", "foo.example", "no port"),
    ("listen", "localhost", "no port"),
    ("listen", "::1:4747", "brackets"),
    ("listen", "[::1]:99999", "not a port"),
];

#[test]
fn zero_and_portless_values_are_refused_from_flags_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value, why) in REFUSED {
        // A flag: a usage error, before anything is bound.
        let flag = format!("--{key}={value}");
        let listen = ["--listen", "127.0.0.1:0"];
        let listen = if key == "listen" {
            &[][..]
        } else {
            &listen[..]
        };
        let mut cmd = bin();
        cmd.args(["serve", "--memory-only"]).args(listen).arg(&flag);
        let done = run("serve", cmd, T);
        assert_eq!(done.status.code(), Some(2), "{flag}: {done:?}");
        let err = done.stderr.join("\n");
        assert!(
            err.contains(&format!("'--{key} ")) && err.contains(why),
            "{flag}: {err}"
        );
        // The file: exit 1, naming the file, the line and the key.
        let file = dir.path().join(format!("{key}.toml"));
        let toml = format!("memory-only = true\n{key} = {}\n", toml_value(key, value));
        std::fs::write(&file, toml).unwrap();
        let done = rendezvous(&[OsStr::new("config"), OsStr::new("check"), file.as_ref()]);
        assert_eq!(done.status.code(), Some(1), "{key} in a file: {done:?}");
        let err = done.stderr.join("\n");
        let at = format!("{key}.toml:2: key `{key}`");
        assert!(err.contains(&at) && err.contains(why), "{at}: {err}");
        // A variable: exit 1, naming it.
        let var = format!("RENDEZVOUS_{}", key.to_uppercase().replace('-', "_"));
        let mut cmd = bin();
        cmd.args(["config", "check"]).env(&var, value);
        let done = run("config check", cmd, T);
        assert_eq!(done.status.code(), Some(1), "{var}={value}: {done:?}");
        let err = done.stderr.join("\n");
        assert!(err.contains(&var) && err.contains(why), "{var}: {err}");
    }
}

/// `value` as TOML: a list for a repeatable key, a number or a string.
fn toml_value(key: &str, value: &str) -> String {
    let text = if value.parse::<u64>().is_ok() {
        value.to_string()
    } else {
        format!("{value:?}")
    };
    match key {
        "peer" => format!("[{text}]"),
        _ => text,
    }
}

#[test]
fn listen_takes_a_host_name_as_peer_does() {
    let mut cmd = bin();
    cmd.args(["serve", "--memory-only", "--listen", "localhost:0"]);
    let server = Server::spawn("localhost", cmd);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    let named = format!("localhost:{}", server.addr.port());
    let mut cmd = bin();
    cmd.args(["status", "--server", &named]);
    let done = run("status", cmd, T);
    done.assert_success("status by host name");
    assert_eq!(status_field(&done.stdout, "health"), "ok");
    // A name that does not resolve stops the start with the flag named (exit 1).
    let done = rendezvous(&[
        "serve",
        "--memory-only",
        "--listen",
        "no-such-host.invalid:0",
    ]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(
        done.stderr.join("\n").contains("cannot resolve --listen"),
        "{done:?}"
    );
}
