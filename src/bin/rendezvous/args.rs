//! The command line of `rendezvous` (docs/PROTOCOL.md §7, and §10 for the tools): every
//! subcommand and flag, parsed by clap. Only parsing lives here; `serve.rs`, `client.rs`
//! and `tools.rs` do the work.
//!
//! The clap types carry plain `//` comments: a `///` doc comment would become help text.

#[cfg(feature = "tools")]
use crate::tools::{BenchArgs, DecodeArgs, ReplayArgs};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// Default `--listen`: every interface, IPv4 and IPv6 (dual stack), port 4747, shared by
/// the UDP plane and the TCP plane.
const DEFAULT_LISTEN: &str = "[::]:4747";

/// The exit statuses of every command (docs/PROTOCOL.md §7), shown after `--help` and as
/// the man page's EXIT STATUS section: a heading line, then one `  N  meaning` line each.
pub(crate) const EXIT_STATUS: &str = "Exit status:
  0  success (status: the server serves)
  1  the command failed, with `error: MESSAGE` on stderr (status: the server cannot be reached or does not answer)
  2  usage error: an unknown flag or command, a missing or malformed value, a serve value out of range
  3  status: the server is draining (it is stopping)";

// `rendezvous` and its subcommands.
#[derive(Parser)]
#[command(
    name = "rendezvous",
    version,
    about = "Rendezvous server for peer-to-peer apps: fingerprint -> public address, keepalives, lookups, hole punching, relay",
    after_help = EXIT_STATUS
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

// What to do.
#[derive(Subcommand)]
// Parsed once at start: the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cmd {
    /// Run the server (UDP, dual-stack on [::] by default).
    Serve(ServeArgs),
    /// Check a configuration file, or print an example of one (docs/PROTOCOL.md §7).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the man page (roff), generated from these commands' help:
    /// `rendezvous man > rendezvous.1`.
    Man,
    /// Make or show a client identity (self-signed certificate and key).
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// Register with a server, keep alive, and print events, punch requests and direct
    /// datagrams as they arrive, one line each (runs until killed).
    Register {
        #[command(flatten)]
        conn: Conn,
        /// Seconds between keepalives; 0 sends none (default: what the server advises).
        #[arg(long)]
        keepalive: Option<u64>,
    },
    /// Look a fingerprint up: prints `online addr=.. age=.. home=..`, `offline ..` or `unknown`.
    Lookup {
        #[command(flatten)]
        conn: Conn,
        /// The fingerprint (64 hex digits).
        fingerprint: String,
    },
    /// Relay a text event to a fingerprint (queued by the server if it is offline).
    Send {
        #[command(flatten)]
        conn: Conn,
        /// The recipient's fingerprint (64 hex digits).
        fingerprint: String,
        /// The event text (1 to 1200 bytes).
        text: String,
    },
    /// Contacts on the TCP plane (client role).
    #[command(subcommand)]
    Contacts(ContactsCmd),
    /// Print a server's status: name, health, Lamport clock, contacts and directory with
    /// their SHA-512 digests, and each peer link (state, last heartbeat, the peer's clock).
    ///
    /// A health check by its exit status: 0 when the server serves, 3 when it is draining
    /// (stopping), 1 when it cannot be reached or does not answer.
    Status {
        /// Server address, HOST:PORT.
        #[arg(long)]
        server: String,
        /// Speak TLS 1.3 on the server's port (docs/PROTOCOL.md §8.19).
        #[arg(long)]
        tls: bool,
    },
    /// Look a peer up and exchange a datagram with it directly (UDP hole punching).
    Punch {
        #[command(flatten)]
        conn: Conn,
        /// The peer's fingerprint (64 hex digits).
        fingerprint: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Send the project's packets of a capture (pcap, pcapng) to a server again.
    #[cfg(feature = "tools")]
    Replay(ReplayArgs),
    /// Print the project's packets of a capture (pcap, pcapng), one line each.
    #[cfg(feature = "tools")]
    Decode(DecodeArgs),
    /// Load a server: keepalives, lookups, registrations, contact updates.
    #[cfg(feature = "tools")]
    Bench(BenchArgs),
}

// `rendezvous contacts ...` (docs/PROTOCOL.md §7, "Contacts commands"; §8.18).
#[derive(Subcommand)]
pub(crate) enum ContactsCmd {
    /// Set one contact; returns once the server says it is durable.
    Update {
        /// Server address, HOST:PORT.
        #[arg(long)]
        server: String,
        #[command(flatten)]
        who: UpdateAs,
        /// Speak TLS 1.3 on the server's port, and sign a challenge only if it is bound to
        /// the node key of the server's certificate (docs/PROTOCOL.md §8.18, §8.19).
        #[arg(long)]
        tls: bool,
        /// Contact name (at most 256 bytes).
        contact: String,
        /// Phone number (at most 20 bytes).
        phone: String,
    },
    /// Print contacts: `USER<TAB>CONTACT<TAB>PHONE`, in (user, contact) order: your own
    /// (--identity), or every contact of a server run with --open-contacts (--all).
    List {
        /// Server address, HOST:PORT.
        #[arg(long)]
        server: String,
        #[command(flatten)]
        who: ListAs,
        /// Speak TLS 1.3 on the server's port, and sign a challenge only if it is bound to
        /// the node key of the server's certificate (docs/PROTOCOL.md §8.18, §8.19).
        #[arg(long)]
        tls: bool,
    },
}

// Who writes: an authenticated identity (the default), or a username on an open server.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct UpdateAs {
    /// Prove this identity's key (DIR with cert.pem + key.pem) and write its own contacts:
    /// the username is its fingerprint in hex.
    #[arg(long)]
    pub(crate) identity: Option<PathBuf>,
    /// Write as USER without proving a key (at most 256 bytes): only a server run with
    /// --open-contacts accepts it.
    #[arg(long)]
    pub(crate) user: Option<String>,
}

// Who reads: an authenticated identity (the default), or everything on an open server.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ListAs {
    /// Prove this identity's key (DIR with cert.pem + key.pem) and list its own contacts.
    #[arg(long)]
    pub(crate) identity: Option<PathBuf>,
    /// List every contact without proving a key: only a server run with --open-contacts
    /// accepts it.
    #[arg(long)]
    pub(crate) all: bool,
}

// `rendezvous config ...` (docs/PROTOCOL.md §7, "Configuration").
#[derive(Subcommand)]
pub(crate) enum ConfigCmd {
    /// Validate FILE (with RENDEZVOUS_* variables over it) and print the effective
    /// settings of `serve`, one `key = value` line each; exit 1 on an error.
    Check {
        /// The TOML file (none: the defaults and the environment alone).
        file: Option<PathBuf>,
    },
    /// Print a commented example with every key and its default.
    Example,
}

// `rendezvous serve` (docs/PROTOCOL.md §7). The flags come in groups by job, flattened in
// the order `serve --help` lists them.
#[derive(Args)]
pub(crate) struct ServeArgs {
    // The configuration file, operations.
    #[command(flatten)]
    pub(crate) ops: OpsArgs,
    /// Address and port to listen on, UDP and TCP: ADDR:PORT or HOST:PORT. A host name is
    /// resolved at start and the first of its addresses that exists on this host is bound.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_LISTEN, value_parser = listen_at)]
    pub(crate) listen: String,
    // Where durable state goes.
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    // Federation: peers and who may connect as a server.
    #[command(flatten)]
    pub(crate) peering: PeeringArgs,
    /// Accept replayed captures: no freshness window and no address check (cookie), so a
    /// capture's old signed registrations work days later. Refused unless --listen is a
    /// loopback address.
    #[arg(long)]
    pub(crate) accept_replayed: bool,
    /// Let TCP clients read and write every contact without proving a key, as the seed
    /// protocol does (closed networks and legacy clients only; logged as a warning). By
    /// default a client proves its certificate key and reaches only its own contacts.
    #[arg(long)]
    pub(crate) open_contacts: bool,
    /// Where other servers reach this one, HOST:PORT, published in the node list
    /// (default: --listen, unless it is a wildcard address). At most 255 bytes.
    #[arg(long, value_name = "HOST:PORT", value_parser = announce_at)]
    pub(crate) announce: Option<String>,
    // TTL and keepalive.
    #[command(flatten)]
    pub(crate) timers: TimerArgs,
    /// This server's alias, sent as the home server in lookup answers (<= 255 bytes).
    #[arg(long, default_value = "rendezvous", value_parser = alias_text)]
    pub(crate) alias: String,
    /// Freshness window for signed packets, seconds either side of the server's clock.
    #[arg(long, default_value_t = 60, value_parser = at_least_one::<u64>)]
    pub(crate) freshness: u64,
    // The directory's bound and the rate limits.
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    // The offline relay queues' bounds.
    #[command(flatten)]
    pub(crate) queue: QueueArgs,
}

// `serve`: how it is run (docs/PROTOCOL.md §7, "Configuration").
#[derive(Args)]
pub(crate) struct OpsArgs {
    /// A TOML file with any of these flags as keys (`listen = "[::]:4747"`); RENDEZVOUS_*
    /// variables override it, flags override both. Standard path:
    /// /etc/rendezvous/rendezvous.toml (not read unless named here or in
    /// RENDEZVOUS_CONFIG).
    #[arg(long, env = "RENDEZVOUS_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// On SIGTERM or SIGINT: at most this many seconds to finish what is in flight (a
    /// second signal stops at once).
    #[arg(long, default_value_t = 10)]
    pub(crate) drain_timeout: u64,
    /// UDP worker threads, each with its own socket on the port (SO_REUSEPORT); they share
    /// the directory. Default: the number of cores (1 with --accept-replayed, so a replayed
    /// capture is handled in the order sent). The TCP plane runs on its own thread.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>)]
    pub(crate) workers: Option<usize>,
    /// Log lines on stderr as `text` (colour only on a terminal) or `json` (one object a
    /// line, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// What to log: a level (error, warn, info, debug, trace) or a RUST_LOG filter
    /// (`info,rendezvous=debug`). Default: RUST_LOG, else info. SIGHUP reloads it.
    #[arg(long, value_parser = parse_log_level)]
    pub(crate) log_level: Option<String>,
    /// Write client addresses (IP:PORT) in log lines. Off by default: a log line shows a
    /// client's network only (its /24, or /48 for IPv6) and no port. Peer servers'
    /// addresses are always logged whole.
    #[arg(long)]
    pub(crate) log_addresses: bool,
    /// Seconds between summaries of refused requests and rate limiting: one log line per
    /// interval in which anything was refused, with a count per reason (at least 1).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = at_least_one::<u64>)]
    pub(crate) log_summary_interval: u64,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (a PORT alone is 127.0.0.1:PORT;
    /// docs/METRICS.md). Off by default.
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = rendezvous::net::metrics::parse_listen)]
    pub(crate) metrics: Option<SocketAddr>,
}

/// `--log-level`: `s` when tracing's filter syntax takes it.
fn parse_log_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a log level or filter ({e}); try info or debug"))
}

// How `serve` writes its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

// `serve`: where durable state goes.
#[derive(Args)]
pub(crate) struct StoreArgs {
    /// Directory for durable state (contacts and the Lamport clock, in SQLite). The UDP
    /// plane's directory stays in RAM and never touches the disk.
    #[arg(
        long,
        conflicts_with = "memory_only",
        default_value = "rendezvous-data"
    )]
    pub(crate) data_dir: PathBuf,
    /// Keep everything in RAM; nothing is written to disk.
    #[arg(long)]
    pub(crate) memory_only: bool,
}

// `serve`: the servers this one federates with (docs/PROTOCOL.md §8.10, §8.12).
#[derive(Args)]
pub(crate) struct PeeringArgs {
    /// A peer server to federate with, HOST:PORT (repeatable): connected to as role 1,
    /// with heartbeats and reconnects; it may also connect to us.
    #[arg(long, value_name = "HOST:PORT", value_parser = peer_at)]
    pub(crate) peer: Vec<String>,
    /// A network whose hosts may connect as servers (role 1), CIDR (repeatable); a new
    /// server's node key is learned on its first contact. Servers in the node list may
    /// also connect, proving their node key. See the README on what is authenticated.
    #[arg(long)]
    pub(crate) allow_peer: Vec<String>,
    /// Connect only to the --peer servers, not to every server learned from the node list.
    #[arg(long)]
    pub(crate) no_mesh: bool,
    /// Federate in clear text, as the seed does: links are dialled without TLS and server
    /// hellos in clear text are accepted (off by default: links run TLS 1.3 with node
    /// keys). For closed networks only: anyone on the path reads and injects contacts.
    #[arg(long)]
    pub(crate) plain_peers: bool,
    /// A peer's node key, 64 hex digits as its `serve` prints (`node key=`), trusted from
    /// the start (repeatable). With any, no key is trusted on first use: servers must
    /// prove a pinned key or one a trusted peer's node list publishes.
    #[arg(long, conflicts_with = "plain_peers")]
    pub(crate) peer_key: Vec<String>,
}

// `serve`: the UDP plane's TTL and keepalive, seconds (docs/PROTOCOL.md §5.10).
#[derive(Args)]
pub(crate) struct TimerArgs {
    /// Seconds without a keepalive after which a client is offline.
    #[arg(long, default_value_t = 75, value_parser = at_least_one::<u64>)]
    pub(crate) ttl: u64,
    /// Keepalive interval advised to clients, seconds (at most a third of --ttl).
    #[arg(long, default_value_t = 25, value_parser = at_least_one::<u16>)]
    pub(crate) keepalive: u16,
}

// `serve`: the directory's bound and the rate limits (docs/PROTOCOL.md §5.9, §5.11).
#[derive(Args)]
pub(crate) struct LimitArgs {
    /// Most clients online at once.
    #[arg(long, default_value_t = 1_000_000, value_parser = at_least_one::<usize>)]
    pub(crate) max_clients: usize,
    /// Registrations per second per source /24 or /64, and 4 times that per IPv6 /48
    /// (loopback is exempt).
    #[arg(long, default_value_t = 20, value_parser = at_least_one::<u32>)]
    pub(crate) register_rate: u32,
    /// Lookup answer bytes per second per source IP (loopback is exempt).
    #[arg(long, default_value_t = 16384, value_parser = at_least_one::<u32>)]
    pub(crate) lookup_bytes: u32,
    /// Relayed event bytes per second to one recipient, all senders together; burst twice
    /// that (senders on loopback are exempt).
    #[arg(long, default_value_t = 16384, value_parser = at_least_one::<u32>)]
    pub(crate) relay_bytes: u32,
    /// At most one punch request per (asker, target) pair per this many milliseconds (0:
    /// one per lookup).
    #[arg(long, default_value_t = 1000)]
    pub(crate) punch_interval_ms: u64,
}

// `serve`: the bounds of the offline relay queues (docs/PROTOCOL.md §5.8).
#[derive(Args)]
pub(crate) struct QueueArgs {
    /// Most events queued for one offline recipient.
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    pub(crate) queue_depth: usize,
    /// Most events one sender may have queued for offline recipients.
    #[arg(long, default_value_t = 256, value_parser = at_least_one::<usize>)]
    pub(crate) queue_per_sender: usize,
    /// Seconds a queued event waits before it is dropped.
    #[arg(long, default_value_t = 600, value_parser = at_least_one::<u64>)]
    pub(crate) queue_age: u64,
    /// Total bytes of queued events, all recipients together.
    #[arg(long, default_value_t = 16 << 20, value_parser = at_least_one::<usize>)]
    pub(crate) queue_bytes: usize,
}

// `rendezvous identity ...`.
#[derive(Subcommand)]
pub(crate) enum IdentityCmd {
    /// Create a new identity: DIR/cert.pem and DIR/key.pem; prints the fingerprint.
    New {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Key algorithm.
        #[arg(long, value_enum, default_value_t = Alg::Ed25519)]
        algorithm: Alg,
        /// Common name in the certificate.
        #[arg(long, default_value = "rendezvous client")]
        name: String,
        /// Replace an identity already in DIR (its fingerprint, and so the address others
        /// know it by, is lost). Without it, an existing cert.pem, cert.der or key.pem is
        /// an error and nothing is written.
        #[arg(long)]
        force: bool,
    },
    /// Print the fingerprint of the identity in DIR.
    Show {
        /// Directory holding cert.pem and key.pem.
        dir: PathBuf,
    },
}

// A key algorithm of `identity new`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Alg {
    // Ed25519 (the default).
    Ed25519,
    // ECDSA on P-256.
    P256,
}

// How a client command reaches its server, and as whom.
#[derive(Args)]
pub(crate) struct Conn {
    /// Server address, HOST:PORT.
    #[arg(long)]
    pub(crate) server: String,
    /// Identity directory (cert.pem + key.pem, from `rendezvous identity new` or openssl).
    #[arg(long)]
    pub(crate) identity: PathBuf,
    /// Use the shifted layout with this many junk bytes per shift.
    #[arg(long)]
    pub(crate) shift: Option<u8>,
    /// Local address to bind (default: any, ephemeral port).
    #[arg(long)]
    pub(crate) bind: Option<SocketAddr>,
}

// Values checked as they are parsed, so a bad one is refused the same way from a flag, the
// configuration file or a RENDEZVOUS_* variable (config.rs parses those with this parser;
// docs/PROTOCOL.md §7). The messages follow clap's `invalid value 'V' for '--FLAG'`.

/// A count, rate, size or time of at least 1: `0` would make the server refuse everything
/// or forget at once (`--max-clients`, `--ttl`, `--register-rate`, ...).
fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err = std::num::ParseIntError> + From<u8> + PartialOrd,
{
    let n: T = s.parse().map_err(|e| format!("{e}"))?;
    if n < T::from(1) {
        return Err("0 is not allowed here: at least 1".to_string());
    }
    Ok(n)
}

/// `--listen`: `HOST:PORT`, port 0 allowed (the kernel picks one).
fn listen_at(s: &str) -> Result<String, String> {
    host_port(s, true)
}

/// `--peer`: `HOST:PORT` with a port other than 0.
fn peer_at(s: &str) -> Result<String, String> {
    host_port(s, false)
}

/// `--announce`: `HOST:PORT` with a port other than 0, at most 255 bytes (the `location`
/// of a node-list entry, docs/PROTOCOL.md §8.15).
fn announce_at(s: &str) -> Result<String, String> {
    if s.len() > 255 {
        return Err(format!("{} bytes; at most 255", s.len()));
    }
    host_port(s, false)
}

/// `--alias`: at most 255 bytes (the home alias of lookup answers, docs/PROTOCOL.md §3).
fn alias_text(s: &str) -> Result<String, String> {
    if s.len() > 255 {
        return Err(format!("{} bytes; at most 255", s.len()));
    }
    Ok(s.to_string())
}

/// `HOST:PORT` as text, checked for its shape only (resolved when `serve` starts): HOST a
/// host name (letters, digits, `-`, `.`, `_`), an IPv4 address or an IPv6 address in
/// brackets; PORT 0 to 65535, 0 only when `zero_port`.
fn host_port(s: &str, zero_port: bool) -> Result<String, String> {
    const WANT: &str = "want HOST:PORT (example.org:4747, 192.0.2.1:4747 or [2001:db8::1]:4747)";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("no port; {WANT}"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port (0 to 65535); {WANT}"))?;
    if port == 0 && !zero_port {
        return Err("port 0 cannot be reached; give the port the server listens on".into());
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) if v6.parse::<Ipv6Addr>().is_ok() => Ok(s.to_string()),
        Some(v6) => Err(format!("{v6:?} in brackets is not an IPv6 address; {WANT}")),
        None if host.is_empty() => Err(format!("no host; {WANT}")),
        None if host.contains(':') => Err(format!("an IPv6 address goes in brackets; {WANT}")),
        None if !host.chars().all(name_char) => {
            Err(format!("{host:?} is not a host name or an address; {WANT}"))
        }
        None => Ok(s.to_string()),
    }
}
