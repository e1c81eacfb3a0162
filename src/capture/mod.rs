//! Reading captures (pcap and pcapng, as tcpdump, tshark and Wireshark write them) and
//! decoding the project's packets in them, for `rendezvous replay` and `rendezvous decode`.
//! Source: issue 5; BRIEF.md (both planes).

use std::process::ExitCode;

/// Arguments of `rendezvous decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {}

/// Runs `rendezvous decode`.
///
/// # Errors
/// Any failure, with a message for people.
pub fn run_decode(_args: DecodeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
