//! The `rendezvous` command: `serve` runs the server; `identity`, `register`, `lookup`,
//! `send`, `punch`, `contacts` and `status` are a client, so the server can be used without
//! writing code; `decode`, `replay` and `bench` are the tools (feature `tools`). Thin:
//! everything real lives in the library (docs/PROTOCOL.md §7, §10).
//!
//! # Layout
//! - `args`: the command line (clap). `serve`: the server. `client`: the client commands.
//! - `tools`: `decode`, `replay`, `bench`.

mod args;
mod client;
mod config;
mod reload;
mod serve;
#[cfg(feature = "tools")]
mod tools;

use anyhow::{bail, Context, Result};
use args::{Cli, Cmd, ConfigCmd};
use clap::{CommandFactory, FromArgMatches};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `serve`: the configuration file and RENDEZVOUS_* variables become flags first.
    let given = argv.clone();
    let argv = if argv.get(1).is_some_and(|a| a == "serve") {
        match config::layered(argv) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        argv
    };
    let matches = Cli::command().get_matches_from(&argv);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.cmd {
        Cmd::Serve(a) => {
            let settings = matches
                .subcommand_matches("serve")
                .map(config::effective)
                .unwrap_or_default();
            serve::serve(a, settings, given)
        }
        Cmd::Config(ConfigCmd::Check { file }) => config::check(file.as_deref()).map(|lines| {
            for l in lines {
                say(&l);
            }
            ExitCode::SUCCESS
        }),
        Cmd::Man => man(&mut std::io::stdout().lock())
            .map(|()| ExitCode::SUCCESS)
            .context("cannot write the man page"),
        Cmd::Config(ConfigCmd::Example) => {
            print!("{}", config::example());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Identity(c) => client::identity(c),
        Cmd::Register { conn, keepalive } => client::register(conn, keepalive),
        Cmd::Lookup { conn, fingerprint } => client::lookup(conn, &fingerprint),
        Cmd::Contacts(c) => client::contacts(c),
        Cmd::Status { server, tls } => client::status(&server, tls),
        Cmd::Send {
            conn,
            fingerprint,
            text,
        } => client::send(conn, &fingerprint, &text),
        Cmd::Punch {
            conn,
            fingerprint,
            timeout,
        } => client::punch(conn, &fingerprint, timeout),
        #[cfg(feature = "tools")]
        Cmd::Replay(a) => tools::replay(a),
        #[cfg(feature = "tools")]
        Cmd::Decode(a) => tools::decode(a),
        #[cfg(feature = "tools")]
        Cmd::Bench(a) => tools::bench(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `rendezvous man`: the man page clap_mangen makes of the commands, with an EXIT STATUS
/// section from [`args::EXIT_STATUS`] in place of clap_mangen's EXTRA one.
fn man(out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(Cli::command());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for line in args::EXIT_STATUS.lines().skip(1) {
        let (code, meaning) = line.trim().split_once("  ").unwrap_or(("", line));
        // `\&` first: a line starting with `.` or `'` would be a roff request.
        writeln!(out, ".TP\n{code}\n\\&{meaning}")?;
    }
    man.render_version_section(out)
}

/// Prints one line on stdout and flushes it (scripts and tests read lines as they come).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Lowercase hex of `bytes`.
fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server address, HOST:PORT, resolved (the first address, as the resolver orders them).
fn resolve(server: &str) -> Result<SocketAddr> {
    Ok(resolve_all("server address", server)?[0])
}

/// `what` (a flag's or an argument's name), HOST:PORT, resolved: every address, in the
/// resolver's order (getaddrinfo(3)), at least one.
fn resolve_all(what: &str, text: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {what} {text:?} (want HOST:PORT)"))?
        .collect();
    if addrs.is_empty() {
        bail!("{what} {text:?} resolves to nothing");
    }
    Ok(addrs)
}
