//! `rendezvous bench`: a load generator for a running server (docs/PROTOCOL.md §10,
//! "Benchmarking"). It plays many clients at once, each with its own UDP socket (source
//! port) and its own freshly generated Ed25519 identity, registered the way the bundled
//! client does it (signed registration, cookie round trip), and reports one summary: what
//! was sent, what came back, the rate, latency percentiles from send to answer (monotonic
//! clock) and errors by status.
//!
//! Workloads (docs/PROTOCOL.md §3 for the packets):
//! - `keepalive`: open loop, keepalives only (they get no answer); ends with one lookup per
//!   socket, an in-order barrier (the server reads its one socket in order), so the rate of
//!   keepalives the server handled is measured, not guessed; kernel drops at the server's
//!   socket are read from `/proc/net/udp`.
//! - `lookup`: closed loop, `--in-flight` lookups per socket, each answer matched to its
//!   request by the target fingerprint it carries.
//! - `register`: closed loop of fresh signed registrations. Each socket does the cookie
//!   round trip once, then signs new registrations in the loop, round robin over a pool of
//!   identities with increasing timestamps (the server's per-fingerprint "newer than the
//!   last" rule).
//! - `contacts`: TCP client role: Updates with a Barrier every `--barrier-every` on
//!   `--clients` connections; the barrier's latency is the one reported. The contacts
//!   written stay in the server (the protocol has no delete), so a target not on loopback
//!   is refused without `--allow-remote`.
//! - `askforupdate`, `listall`: `--contacts` contacts loaded, then the whole list streamed
//!   `--rounds` times, each time beside a plain TCP sender of the same bytes in 8 KiB
//!   writes (the same-run baseline); see [`stream`].
//!
//! Every loop is bounded by `--duration` (plus at most `--timeout-ms` to collect late
//! answers) and stops by itself. Setup (identities, registrations) is not timed.
//!
//! # Layout
//! - this file: the options and [`measure`].
//! - [`report`]: the [`Report`] (one `key=value` line, or one JSON object).
//! - [`plot`]: `--plot FILE.svg`, the latency percentile curve.
//! - [`stats`]: the latency histogram, server CPU time and socket drops (Linux `/proc`).
//! - [`udp`]: the UDP workloads over many sockets, `sendmmsg`/`recvmmsg` batched.
//! - [`contacts`]: the TCP workload.
//! - [`stream`]: the streaming workloads and their plain-sender baseline.

pub mod contacts;
pub mod plot;
pub mod report;
pub mod stats;
pub mod stream;
pub mod udp;

pub use report::{Report, Value};

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Why `rendezvous bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option out of range, named by its flag (e.g. `--clients must be between 1 and
    /// 100000`).
    #[error("{0}")]
    BadOption(&'static str),
    /// The target does not resolve.
    #[error("cannot resolve --target {target} (HOST:PORT)")]
    Resolve {
        /// The target as given.
        target: String,
        /// Why it did not resolve.
        #[source]
        source: io::Error,
    },
    /// The target resolves to no address.
    #[error("--target {0} resolves to no address")]
    NoAddress(String),
    /// A bench identity could not be made.
    #[error("cannot make a bench identity")]
    Identity(#[source] crate::identity::SignerError),
    /// A simulated client could not register (setup, before anything is measured).
    #[error("registering bench client {client}")]
    Register {
        /// The client's number, from 0.
        client: usize,
        /// What went wrong.
        #[source]
        source: RegisterError,
    },
    /// Every TCP connection of the contacts workload failed.
    #[error("every connection to {target} failed; the first: {first}")]
    AllConnectionsFailed {
        /// The target.
        target: SocketAddr,
        /// The first connection's error.
        first: String,
    },
    /// A workload that writes contacts (`contacts`; `askforupdate` and `listall` with
    /// `--contacts` above 0) against a target not on loopback without
    /// [`BenchOptions::allow_remote`]: the contacts it writes would stay there (and at the
    /// server's peers), as the protocol cannot delete a contact (docs/PROTOCOL.md §10).
    #[error(
        "--workload {workload} writes up to {max} contacts to {target}, which stay there and \
         at its peers (the protocol cannot delete them); it runs against a loopback target \
         only, unless --allow-remote is given"
    )]
    RemoteContacts {
        /// The workload's name.
        workload: &'static str,
        /// The target, resolved.
        target: SocketAddr,
        /// The most contacts the run would write: `--clients` x 1000, or `--contacts`.
        max: u64,
    },
    /// A connection thread of the contacts workload panicked.
    #[error("a connection thread panicked")]
    ThreadPanicked,
    /// A socket, the poller or a thread failed (`what` says which).
    #[error("{what}")]
    Io {
        /// What could not be done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl BenchError {
    /// A closure wrapping an I/O error with what could not be done.
    fn io(what: &'static str) -> impl FnOnce(io::Error) -> BenchError {
        move |source| BenchError::Io { what, source }
    }
}

/// Why a simulated client could not register (docs/PROTOCOL.md §5.1, §5.2).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The server answered a registration with an error.
    #[error("the server at {target} refused a registration: status {status}")]
    Refused {
        /// The server.
        target: SocketAddr,
        /// The error's status (docs/PROTOCOL.md §4.1).
        status: u16,
    },
    /// No OK within four tries of a second each.
    #[error("no answer to registrations from {target} (is it running, and is UDP reachable?)")]
    NoAnswer {
        /// The server.
        target: SocketAddr,
    },
    /// The client's socket failed.
    #[error("the client socket failed")]
    Socket(#[source] io::Error),
}

/// What `rendezvous bench` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Keepalives (type 0), open loop; the server's handling rate is measured with a final
    /// lookup per socket.
    Keepalive,
    /// Lookups (type 5) of the other bench clients, closed loop.
    Lookup,
    /// Fresh signed registrations (type 2), closed loop.
    Register,
    /// Contact Updates with Barriers on TCP connections (client role).
    Contacts,
    /// The whole list streamed with AskForUpdate (server role), beside a plain sender.
    AskForUpdate,
    /// The bench identity's list streamed with ListAll (client role), beside a plain
    /// sender.
    ListAll,
}

impl Workload {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Keepalive => "keepalive",
            Workload::Lookup => "lookup",
            Workload::Register => "register",
            Workload::Contacts => "contacts",
            Workload::AskForUpdate => "askforupdate",
            Workload::ListAll => "listall",
        }
    }
}

/// How much load, and how it is paced.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Seconds of load (fractions allowed). Late answers are collected for at most
    /// [`BenchOptions::timeout_ms`] more.
    pub duration: f64,
    /// Simulated clients: UDP sockets, each with its own identity and source port (TCP
    /// connections for `contacts`).
    pub clients: usize,
    /// Requests in flight per socket in the closed loop (lookup, register); batches of
    /// Updates + Barrier in flight per connection (contacts).
    pub in_flight: usize,
    /// Pacing: at most this many requests per second in all (Updates for `contacts`);
    /// 0 = as fast as possible.
    pub rate: u64,
    /// Send at `rate` without waiting for answers (lookup, register); keepalive is always
    /// open loop, contacts always closed loop.
    pub open_loop: bool,
}

/// The register workload's pool of identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterPool {
    /// Identities per client, used round robin (each fingerprint's timestamps must
    /// increase, so the pool bounds the rate: about identities x clients x
    /// (2 x timestamp_spread + duration) registrations per run).
    pub identities: usize,
    /// Timestamps range over now +- this many seconds; keep it under the server's
    /// freshness window (60 s by default).
    pub timestamp_spread: u64,
}

/// The streaming workloads' options (`askforupdate`, `listall`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// Contacts loaded into the server first (0: none, stream what it holds).
    pub contacts: u32,
    /// Rounds of (server answer, plain sender); medians are reported.
    pub rounds: usize,
}

/// Everything `rendezvous bench` is told (docs/PROTOCOL.md §10, "Flags").
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// The server, HOST:PORT (UDP; TCP on the same port for `contacts`).
    pub target: String,
    /// What to send.
    pub workload: Workload,
    /// How much load.
    pub load: Load,
    /// register: the identities.
    pub register: RegisterPool,
    /// contacts: a Barrier after every this many Updates.
    pub barrier_every: usize,
    /// askforupdate, listall: what is loaded and how many rounds.
    pub stream: StreamOptions,
    /// A request without an answer after this many milliseconds counts as lost.
    pub timeout_ms: u64,
    /// The server's process id, when it runs on this host: adds its CPU share and the rate
    /// per CPU-second of the server to the report.
    pub pid: Option<u32>,
    /// keepalive and lookup send UDP GSO messages when the kernel allows (many equal-size
    /// datagrams per pass down the stack, so the bench can outrun a server on one core).
    pub gso: bool,
    /// The target is the baseline `loadgen sink` (answers registrations with a fake OK and
    /// lookups with a placeholder): answers are matched in order instead of by target.
    pub sink: bool,
    /// contacts: run against a target that is not on loopback (else refused with
    /// [`BenchError::RemoteContacts`]).
    pub allow_remote: bool,
}

impl BenchOptions {
    /// Options with the documented defaults for `workload` against `target` (HOST:PORT).
    pub fn new(target: &str, workload: Workload) -> Self {
        BenchOptions {
            target: target.to_string(),
            workload,
            load: Load {
                duration: 5.0,
                clients: 64,
                in_flight: 8,
                rate: 0,
                open_loop: false,
            },
            register: RegisterPool {
                identities: 32,
                timestamp_spread: 50,
            },
            barrier_every: 100,
            stream: StreamOptions {
                contacts: 1_000_000,
                rounds: 3,
            },
            timeout_ms: 1000,
            pid: None,
            gso: true,
            sink: false,
            allow_remote: false,
        }
    }

    /// The load's duration.
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.load.duration)
    }

    /// [`Self::timeout_ms`] as a `Duration`.
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Refuses options out of range.
    ///
    /// # Errors
    /// [`BenchError::BadOption`], naming the flag.
    pub fn check(&self) -> Result<(), BenchError> {
        let l = &self.load;
        let refusals = [
            (
                !(l.duration > 0.0 && l.duration <= 86_400.0),
                "--duration must be between 0 and 86400 seconds",
            ),
            (
                l.clients == 0 || l.clients > 100_000,
                "--clients must be between 1 and 100000",
            ),
            (
                l.in_flight == 0 || l.in_flight > 65_536,
                "--in-flight must be between 1 and 65536",
            ),
            (
                self.barrier_every == 0 || self.barrier_every > 1_000_000,
                "--barrier-every must be between 1 and 1000000",
            ),
            (
                self.register.identities == 0 || self.register.identities > 100_000,
                "--identities must be between 1 and 100000",
            ),
            (self.timeout_ms == 0, "--timeout-ms must be at least 1"),
            (
                self.stream.rounds == 0 || self.stream.rounds > 100,
                "--rounds must be between 1 and 100",
            ),
            (
                l.open_loop && l.rate == 0 && self.workload != Workload::Keepalive,
                "--open-loop needs a --rate (requests per second)",
            ),
        ];
        match refusals.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(BenchError::BadOption(why)),
            None => Ok(()),
        }
    }
}

/// The target, resolved (the first address).
fn resolve(target: &str) -> Result<SocketAddr, BenchError> {
    target
        .to_socket_addrs()
        .map_err(|source| BenchError::Resolve {
            target: target.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| BenchError::NoAddress(target.to_string()))
}

/// Runs one benchmark and returns its report; setup progress goes to `notes`.
///
/// # Errors
/// Bad options, an unresolvable target, socket errors, a server that does not register
/// the clients (refused, or no answer within a few seconds), every contacts connection
/// failing; the contacts workload against a target not on loopback without
/// [`BenchOptions::allow_remote`] (nothing is sent then).
pub fn measure(options: &BenchOptions, notes: &mut dyn Write) -> Result<Report, BenchError> {
    options.check()?;
    let target = resolve(&options.target)?;
    match options.workload {
        Workload::Keepalive | Workload::Lookup | Workload::Register => {
            udp::run(options, target, notes)
        }
        Workload::Contacts => {
            let max = options.load.clients as u64 * contacts::KEYS_PER_CONNECTION;
            refuse_remote_writes(options, target, "contacts", max)?;
            contacts::run(options, target, notes)
        }
        Workload::AskForUpdate | Workload::ListAll => {
            let name = match options.workload {
                Workload::ListAll => "listall",
                _ => "askforupdate",
            };
            refuse_remote_writes(options, target, name, options.stream.contacts.into())?;
            stream::run(options, target, notes)
        }
    }
}

/// [`BenchError::RemoteContacts`] when `workload` would write `max` contacts (more than 0)
/// to a `target` not on loopback without `--allow-remote`.
fn refuse_remote_writes(
    options: &BenchOptions,
    target: SocketAddr,
    workload: &'static str,
    max: u64,
) -> Result<(), BenchError> {
    if max > 0 && !options.allow_remote && !target.ip().to_canonical().is_loopback() {
        return Err(BenchError::RemoteContacts {
            workload,
            target,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let mut a = BenchOptions::new("127.0.0.1:1", Workload::Lookup);
        assert!(a.check().is_ok());
        a.load.open_loop = true;
        assert!(a.check().is_err());
        a.load.rate = 1000;
        assert!(a.check().is_ok());
        a.load.duration = 0.0;
        assert!(a.check().is_err());
    }
}
