//! `serve`'s settings in three layers (docs/PROTOCOL.md §7, "Configuration"): a TOML file
//! (`--config FILE`) whose keys are the long flags' names, `RENDEZVOUS_*` environment
//! variables over it, and flags over both; and the `config check` / `config example`
//! commands. The layers are merged by rewriting the command line, so every value goes
//! through the same clap parser and the same checks as a flag.

use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use crate::args::Cli;

/// Arguments of `serve` that are not settings.
const NOT_SETTINGS: [&str; 3] = ["config", "help", "version"];

/// The `serve` subcommand's definition.
fn serve_command() -> Command {
    Cli::command()
        .find_subcommand("serve")
        .cloned()
        .expect("serve is a subcommand")
}

/// The settings of `serve`: every argument with a long name but `--config`.
fn settings(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_SETTINGS.contains(&a.get_id().as_str()))
}

/// The environment variable of setting `long`: `RENDEZVOUS_` and the name in capitals,
/// `-` as `_` (`--data-dir`: `RENDEZVOUS_DATA_DIR`).
fn env_name(long: &str) -> String {
    format!("RENDEZVOUS_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// True for a flag without a value (`--memory-only`).
fn is_switch(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::SetTrue)
}

/// True for a repeatable setting (`--peer`).
fn is_list(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::Append)
}

/// `argv` (the process's, `serve` first after the program) with the settings of the file
/// named by `--config` (or `RENDEZVOUS_CONFIG`) and of `RENDEZVOUS_*` variables added as
/// flags, where no flag sets them: flags over variables over the file.
///
/// # Errors
/// The file cannot be read or is not TOML; a key that is no setting, or a value the
/// setting refuses (naming the file, line and key); a variable with a bad value.
pub(crate) fn layered(argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let cmd = serve_command();
    // `--help` and `--version` stop even an error-ignoring parse: the real parse prints them
    // (an empty `ArgMatches` in their place made debug builds panic on the first id asked).
    let Ok(given) = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv[1..])
    else {
        return Ok(argv);
    };
    let file = match given.get_one::<std::path::PathBuf>("config") {
        Some(path) => Some(read_file(path)?),
        None => None,
    };
    let mut extra = Vec::new();
    for a in settings(&cmd) {
        let id = a.get_id().as_str();
        if given.value_source(id) == Some(ValueSource::CommandLine) {
            continue;
        }
        let long = a.get_long().unwrap_or(id);
        if let Ok(v) = std::env::var(env_name(long)) {
            extra.extend(env_flags(&cmd, a, long, &v)?);
        } else if let Some((path, table)) = &file {
            if let Some(v) = table.get(long) {
                extra.extend(file_flags(&cmd, a, long, v, path)?);
            }
        }
    }
    if let Some((path, table)) = &file {
        for (key, v) in table {
            if !settings(&cmd).any(|a| a.get_long() == Some(key.as_str())) {
                bail!(
                    "{}:{}: unknown key `{key}` (`rendezvous config example` lists them)",
                    path.display(),
                    v.1
                );
            }
        }
    }
    let mut out = vec![argv[0].clone(), argv[1].clone()];
    out.extend(extra);
    out.extend(argv[2..].iter().cloned());
    Ok(out)
}

/// A file's settings: key -> (value, line).
type Table = BTreeMap<String, (toml::Value, usize)>;

/// Reads and parses the TOML file at `path`.
fn read_file(path: &Path) -> Result<(std::path::PathBuf, Table)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    let raw: BTreeMap<String, toml::Spanned<toml::Value>> = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: not a valid configuration: {e}", path.display()))?;
    let line = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let table = raw
        .into_iter()
        .map(|(k, v)| {
            let l = line(v.span().start);
            (k, (v.into_inner(), l))
        })
        .collect();
    Ok((path.to_path_buf(), table))
}

/// The flags for setting `a` (`--LONG`) from the file's `value` at its line.
fn file_flags(
    cmd: &Command,
    a: &Arg,
    long: &str,
    value: &(toml::Value, usize),
    path: &Path,
) -> Result<Vec<OsString>> {
    let (v, line) = value;
    let at = || format!("{}:{line}: key `{long}`", path.display());
    let texts: Vec<String> = match v {
        toml::Value::Boolean(b) if is_switch(a) => return Ok(switch(long, *b)),
        toml::Value::Array(items) if is_list(a) => items
            .iter()
            .map(scalar)
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow!("{}: a list of strings or numbers", at()))?,
        _ if is_switch(a) => bail!("{}: true or false", at()),
        other => vec![scalar(other).ok_or_else(|| anyhow!("{}: a string or a number", at()))?],
    };
    flags(cmd, a, long, &texts).map_err(|e| anyhow!("{}: {e}", at()))
}

/// The flags for setting `a` from environment variable value `v` (a list: comma-separated;
/// a switch: 1, true, yes or 0, false, no).
fn env_flags(cmd: &Command, a: &Arg, long: &str, v: &str) -> Result<Vec<OsString>> {
    let var = env_name(long);
    if is_switch(a) {
        return match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Ok(switch(long, true)),
            "0" | "false" | "no" | "" => Ok(switch(long, false)),
            _ => bail!("{var}={v:?}: 1, true, yes, 0, false or no"),
        };
    }
    let texts: Vec<String> = if is_list(a) {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        vec![v.to_string()]
    };
    flags(cmd, a, long, &texts).map_err(|e| anyhow!("{var}: {e}"))
}

/// `--LONG` when on, nothing when off.
fn switch(long: &str, on: bool) -> Vec<OsString> {
    if on {
        vec![format!("--{long}").into()]
    } else {
        Vec::new()
    }
}

/// A TOML string, integer or float as the text a flag would carry.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// `--LONG=TEXT` for each text, each checked first by parsing it alone as `serve` would.
fn flags(cmd: &Command, _a: &Arg, long: &str, texts: &[String]) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for t in texts {
        let flag: OsString = format!("--{long}={t}").into();
        cmd.clone()
            .try_get_matches_from([OsString::from("serve"), flag.clone()])
            .map_err(|e| anyhow!("{}", first_line(&e.to_string())))?;
        out.push(flag);
    }
    Ok(out)
}

/// The first line of a clap error, without its `error: ` prefix.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    line.trim_start_matches("error: ").to_string()
}

/// The effective settings of a parsed `serve` command line, one `key = value` TOML line
/// each (`# key is not set` for an option without a value), in the order `serve --help`
/// lists them.
pub(crate) fn effective(m: &ArgMatches) -> Vec<String> {
    let cmd = serve_command();
    settings(&cmd)
        .map(|a| {
            let id = a.get_id().as_str();
            let long = a.get_long().unwrap_or(id);
            let values: Vec<String> = m
                .get_raw(id)
                .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let value = if is_switch(a) {
                m.get_flag(id).to_string()
            } else if is_list(a) {
                let items: Vec<String> = values.iter().map(|v| toml_text(v)).collect();
                format!("[{}]", items.join(", "))
            } else if let Some(v) = values.first() {
                toml_text(v)
            } else {
                return format!("# {long} is not set");
            };
            format!("{long} = {value}")
        })
        .collect()
}

/// `v` as a TOML value: a number as it is, anything else a quoted string.
fn toml_text(v: &str) -> String {
    if v.parse::<i64>().is_ok() {
        v.to_string()
    } else {
        toml::Value::String(v.to_string()).to_string()
    }
}

/// `config check [FILE]`: the settings `serve --config FILE` would run with (the
/// environment included), validated as `serve` validates them.
///
/// # Errors
/// Those of [`layered`], clap's, and `serve`'s checks of the values.
pub(crate) fn check(file: Option<&Path>) -> Result<Vec<String>> {
    let mut argv: Vec<OsString> = vec!["rendezvous".into(), "serve".into()];
    if let Some(f) = file {
        argv.push("--config".into());
        argv.push(f.as_os_str().to_owned());
    }
    read_serve(argv).map(|(_, settings)| settings)
}

/// The `serve` arguments and effective settings of `argv` (the program, `serve`, its
/// flags) with the configuration file and variables layered in, checked as `serve` checks
/// them: what `config check` prints and what a reload (SIGHUP) applies.
///
/// # Errors
/// Those of [`layered`], clap's (its first line), and `serve`'s checks of the values.
pub(crate) fn read_serve(argv: Vec<OsString>) -> Result<(crate::args::ServeArgs, Vec<String>)> {
    let argv = layered(argv)?;
    let m = serve_command()
        .try_get_matches_from(&argv[1..])
        .map_err(|e| anyhow!("{}", first_line(&e.to_string())))?;
    let a = <crate::args::ServeArgs as clap::FromArgMatches>::from_arg_matches(&m)
        .map_err(|e| anyhow!("{}", first_line(&e.to_string())))?;
    crate::serve::check(&a)?;
    Ok((a, effective(&m)))
}

/// `config example`: every setting, commented out at its default, after its help.
pub(crate) fn example() -> String {
    let cmd = serve_command();
    let mut out = String::from(
        "# rendezvous serve: configuration (TOML). Every key is a flag of `rendezvous serve`;\n\
         # RENDEZVOUS_<KEY> variables override the file, flags override both.\n\
         # Usage: rendezvous serve --config /etc/rendezvous/rendezvous.toml\n",
    );
    for a in settings(&cmd) {
        let long = a.get_long().unwrap_or_default();
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.push('\n');
        for line in textwrap(&help, 86) {
            out.push_str(&format!("# {line}\n"));
        }
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| toml_text(&v.to_string_lossy()))
            .collect();
        let value = if is_switch(a) {
            "false".to_string()
        } else if is_list(a) {
            "[]".to_string()
        } else if let Some(d) = defaults.first() {
            d.clone()
        } else {
            let name = a
                .get_value_names()
                .and_then(|n| n.first())
                .map_or("VALUE".to_string(), |n| n.to_string());
            out.push_str(&format!("# {long} = \"{name}\"   (not set by default)\n"));
            continue;
        };
        out.push_str(&format!("# {long} = {value}\n"));
    }
    out
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}
