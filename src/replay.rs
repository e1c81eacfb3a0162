//! `rendezvous replay`: sends the project's packets of a capture to a server again.

use std::process::ExitCode;

/// Arguments of `rendezvous replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

/// Runs `rendezvous replay`.
///
/// # Errors
/// Any failure, with a message for people.
pub fn run(_args: ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
