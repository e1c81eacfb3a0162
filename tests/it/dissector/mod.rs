//! The Wireshark dissector `tools/rendezvous.lua`, read by `tshark -X lua_script:...`:
//! - `session`: against captures of the real binary (every UDP type, the TCP plane of both
//!   roles, malformed packets marked and nothing else);
//! - `fixtures`: against every fixture of `rendezvous::wire::fixtures` (the codecs' own
//!   test data), field by field, so that the dissector reads the bytes as the codecs do.
//!
//! Needs `tshark` (and for `session` root and `tcpdump`): without them the tests skip with
//! a note, or fail when `CI=true`. Set `RDV_KEEP_CAPTURES=DIR` to keep the captures for a
//! look in Wireshark.

mod fixtures;
mod session;

use crate::common::run;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The dissector under test.
const LUA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/rendezvous.lua");
/// Field separator and occurrence aggregator of `tshark -T fields` (control characters that
/// no decoded text here contains).
const SEP: char = '\u{1f}';
/// See [`SEP`].
const AGG: char = '\u{1e}';

/// True when `CI` is `true` (or `1`): missing tools are then a failure, not a skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// True when the test can run `tools` (and, with `root`, capture on `lo`); otherwise fails
/// under CI or prints a note.
fn tools_or_skip(root: bool, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if root && !rustix::process::geteuid().is_root() {
        missing.push("root (to capture on lo)");
    }
    for &tool in tools {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            missing.push(tool);
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        !in_ci(),
        "dissector tests need {}; with CI=true this is a failure (apt-get install tcpdump \
         tshark, run as root)",
        missing.join(", ")
    );
    eprintln!("note: skipping: missing {}", missing.join(", "));
    false
}

/// Copies a capture to `$RDV_KEEP_CAPTURES` when that is set.
fn keep(path: &Path) {
    if let Ok(dir) = std::env::var("RDV_KEEP_CAPTURES") {
        let dest = Path::new(&dir).join(path.file_name().expect("file name"));
        if std::fs::create_dir_all(&dir).is_ok() && std::fs::copy(path, &dest).is_ok() {
            eprintln!("capture kept as {}", dest.display());
        }
    }
}

/// Runs `tshark -X lua_script:tools/rendezvous.lua -o rendezvous.port:PORT -r PCAP ARGS`;
/// returns its stdout lines. Fails on a non-zero exit or a Lua error on stderr.
fn tshark(pcap: &Path, port: u16, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-X")
        .arg(format!("lua_script:{LUA}"))
        .arg("-o")
        .arg(format!("rendezvous.port:{port}"))
        .arg("-r")
        .arg(pcap)
        .args(args);
    let done = run("tshark", cmd, Duration::from_secs(120));
    done.assert_success("tshark");
    let lua_errors: Vec<&String> = done
        .stderr
        .iter()
        .filter(|l| l.contains("rendezvous.lua") || l.contains("Lua"))
        .collect();
    assert!(
        lua_errors.is_empty(),
        "tshark reported Lua errors: {lua_errors:#?}"
    );
    done.stdout
}

/// Frame numbers of the frames tshark marks malformed or with an error-level expert info
/// (or a Lua error), with the dissector's preferences `prefs` (`NAME:VALUE`, as `-o`).
fn marked_frames(pcap: &Path, port: u16, prefs: &[&str]) -> BTreeSet<u32> {
    let mut args = Vec::new();
    for p in prefs {
        args.extend(["-o", p]);
    }
    args.extend([
        "-Y",
        "_ws.malformed || _ws.expert.severity == error || _ws.lua.error",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]);
    tshark(pcap, port, &args)
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().expect("frame number"))
        .collect()
}

/// Frame numbers of the frames matching a display filter.
fn frames_matching(pcap: &Path, port: u16, filter: &str) -> BTreeSet<u32> {
    tshark(
        pcap,
        port,
        &["-Y", filter, "-T", "fields", "-e", "frame.number"],
    )
    .iter()
    .filter(|l| !l.trim().is_empty())
    .map(|l| l.trim().parse().expect("frame number"))
    .collect()
}

/// One decoded frame: every value of every field asked for (several occurrences when a TCP
/// segment carries several frames).
#[derive(Debug)]
struct Row(BTreeMap<&'static str, Vec<String>>);

impl Row {
    /// Every value of `field` in this frame.
    fn all(&self, field: &str) -> &[String] {
        self.0.get(field).map_or(&[], |v| v.as_slice())
    }

    /// True when `field` has the value `value` in this frame.
    fn has(&self, field: &str, value: &str) -> bool {
        self.all(field).iter().any(|v| v == value)
    }

    /// The first value of `field`, if any.
    fn one(&self, field: &str) -> Option<&str> {
        self.all(field).first().map(String::as_str)
    }

    /// The frame number.
    fn number(&self) -> u32 {
        self.one("frame.number")
            .and_then(|n| n.parse().ok())
            .expect("frame number")
    }
}

/// Every frame of the capture with the values of `fields` (`-T fields`, every occurrence).
fn decode_rows(pcap: &Path, port: u16, fields: &[&'static str]) -> Vec<Row> {
    let mut args = vec![
        "-T".to_string(),
        "fields".to_string(),
        "-E".to_string(),
        format!("separator={SEP}"),
        "-E".to_string(),
        format!("aggregator={AGG}"),
        "-E".to_string(),
        "occurrence=a".to_string(),
    ];
    for f in fields {
        args.push("-e".to_string());
        args.push((*f).to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tshark(pcap, port, &args)
        .iter()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split(SEP).collect();
            assert_eq!(cols.len(), fields.len(), "tshark row {line:?}");
            Row(fields
                .iter()
                .zip(cols)
                .map(|(f, c)| {
                    let values = if c.is_empty() {
                        Vec::new()
                    } else {
                        c.split(AGG).map(str::to_string).collect()
                    };
                    (*f, values)
                })
                .collect())
        })
        .collect()
}

/// Rows matching `pred`; panics with `what` and every row when there is none.
fn rows<'a>(all: &'a [Row], what: &str, pred: impl Fn(&Row) -> bool) -> Vec<&'a Row> {
    let found: Vec<&Row> = all.iter().filter(|r| pred(r)).collect();
    assert!(!found.is_empty(), "no frame with {what}; frames:\n{all:#?}");
    found
}
