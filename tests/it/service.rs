//! Running under systemd (docs/PROTOCOL.md §7, "Service"): the unit in dist/ verifies and
//! is sandboxed (systemd-analyze), `serve` sends READY=1 to `$NOTIFY_SOCKET` once its
//! sockets are bound, and `rendezvous man` prints the man page generated from the CLI.

use crate::common::{bin, run, Server};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The unit, with ExecStart pointing at the binary under test.
fn unit_for_test(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/rendezvous.service"),
    )
    .expect("dist/rendezvous.service");
    let exe = Path::new(env!("CARGO_BIN_EXE_rendezvous"));
    let unit = unit.replace("/usr/bin/rendezvous", &exe.display().to_string());
    let path = dir.join("rendezvous.service");
    std::fs::write(&path, unit).expect("write the unit");
    path
}

fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_unit_verifies_and_its_exposure_is_ok() {
    if !have("systemd-analyze") {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing and CI=true forbids skipping (apt-get install systemd)"
        );
        eprintln!("note: skipping: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let mut cmd = std::process::Command::new("systemd-analyze");
    cmd.arg("verify").arg(&unit);
    let done = run("systemd-analyze verify", cmd, T);
    done.assert_success("systemd-analyze verify");
    assert!(
        done.stderr
            .iter()
            .all(|l| !l.contains(unit.to_str().unwrap())),
        "warnings about the unit: {:?}",
        done.stderr
    );
    let mut cmd = std::process::Command::new("systemd-analyze");
    cmd.args(["security", "--offline=true", "--no-pager"])
        .arg(&unit);
    let done = run("systemd-analyze security", cmd, T);
    let line = done
        .stdout
        .iter()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in {done:?}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line}"));
    println!("figure: systemd-analyze security: {}", line.trim());
    assert!(score < 2.0, "exposure {score} (OK is below 2.0): {line}");
}

#[test]
fn serve_tells_systemd_it_is_ready_once_its_sockets_are_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(T)).unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--memory-only"])
        .env("NOTIFY_SOCKET", &path);
    let server = Server::spawn("notify", cmd);
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 arrives");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: the TCP plane answers.
    let mut cmd = bin();
    cmd.args(["status", "--server", &server.addr.to_string()]);
    run("status", cmd, T).assert_success("status right after READY=1");
}

#[test]
fn the_man_page_is_generated_from_the_commands() {
    let mut cmd = bin();
    cmd.arg("man");
    let done = run("man", cmd, T);
    done.assert_success("rendezvous man");
    let page = done.stdout.join("\n");
    assert!(page.contains(".TH rendezvous 1"), "{page}");
    for command in ["serve", "contacts", "status", "config", "identity"] {
        assert!(page.contains(command), "{command} in the man page");
    }
}

#[test]
fn logs_are_plain_text_off_a_terminal_or_json_lines() {
    for format in ["text", "json"] {
        let mut cmd = bin();
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--memory-only",
            "--log-format",
            format,
        ]);
        let mut server = Server::spawn("logs", cmd);
        // The "serving" line comes after the settings; stderr is read by its own thread.
        server
            .proc
            .expect_stderr("the serving line", T, |l| l.contains("serving"));
        let lines = server.proc.stderr_lines();
        assert!(!lines.is_empty());
        for l in &lines {
            assert!(!l.contains('\u{1b}'), "a colour code in a log file: {l:?}");
            if format == "json" {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
                assert!(
                    v["level"].is_string() && v["fields"]["message"].is_string(),
                    "{l}"
                );
            }
        }
        server.proc.kill();
    }
}
