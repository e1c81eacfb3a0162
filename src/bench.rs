//! `rendezvous bench`: a load generator for a running server.

use std::process::ExitCode;

/// Arguments of `rendezvous bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Runs `rendezvous bench`.
///
/// # Errors
/// Any failure, with a message for people.
pub fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
