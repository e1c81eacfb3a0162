//! The `rendezvous` command: `serve` runs the server; `identity`, `register`, `lookup`,
//! `send` and `punch` are a client, so the server can be used without writing code.
//! Thin: everything real lives in the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rendezvous::client::contacts::ContactsClient;
use rendezvous::client::{Client, ClientError, Incoming};
use rendezvous::core::tcp::{Cidr, NodeSigner, TcpConfig, TcpCore};
use rendezvous::core::{Config, Server};
use rendezvous::federation::nodelist::NodeEntry;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::store::thread::StoreThread;
use rendezvous::store::{MemoryStore, SqliteStore, Store};
use rendezvous::wire::udp::LookupStatus;
use rendezvous::wire::Fingerprint;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default port, shared by the UDP plane and (later) the TCP plane.
const DEFAULT_PORT: u16 = 4747;

#[derive(Parser)]
#[command(
    name = "rendezvous",
    version,
    about = "Rendezvous server for peer-to-peer apps: fingerprint -> public address, keepalives, lookups, hole punching, relay"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (UDP, dual-stack on [::] by default).
    Serve(ServeArgs),
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
    /// Print a server's status: name, Lamport clock, contacts and directory with their
    /// SHA-512 digests, and each peer link (state, last heartbeat, the peer's clock).
    Status {
        /// Server address, HOST:PORT.
        #[arg(long)]
        server: String,
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
    Replay(rendezvous::tools::replay::ReplayArgs),
    /// Print the project's packets of a capture (pcap, pcapng), one line each.
    Decode(rendezvous::tools::decode::DecodeArgs),
    /// Load a server: keepalives, lookups, registrations, contact updates.
    Bench(rendezvous::tools::bench::BenchArgs),
}

#[derive(Subcommand)]
enum ContactsCmd {
    /// Set one contact; returns once the server says it is durable.
    Update {
        /// Server address, HOST:PORT.
        #[arg(long)]
        server: String,
        /// Owner (at most 256 bytes).
        user: String,
        /// Contact name (at most 256 bytes).
        contact: String,
        /// Phone number (at most 20 bytes).
        phone: String,
    },
    /// Print every contact: `USER<TAB>CONTACT<TAB>PHONE`, in (user, contact) order.
    List {
        /// Server address, HOST:PORT.
        #[arg(long)]
        server: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address and port to listen on (UDP).
    #[arg(long, default_value_t = SocketAddr::from(([0u16; 8], DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Directory for durable state (contacts and the Lamport clock, in SQLite). The UDP
    /// plane's directory stays in RAM and never touches the disk.
    #[arg(
        long,
        conflicts_with = "memory_only",
        default_value = "rendezvous-data"
    )]
    data_dir: PathBuf,
    /// Keep everything in RAM; nothing is written to disk.
    #[arg(long)]
    memory_only: bool,
    /// A peer server to federate with, HOST:PORT (repeatable): connected to as role 1,
    /// with heartbeats and reconnects; it may also connect to us.
    #[arg(long)]
    peer: Vec<String>,
    /// A network whose hosts may connect as servers (role 1), CIDR (repeatable); a new
    /// server's node key is learned on its first contact. Servers in the node list may
    /// also connect, proving their node key. See the README on what is authenticated.
    #[arg(long)]
    allow_peer: Vec<String>,
    /// Connect only to the --peer servers, not to every server learned from the node list.
    #[arg(long)]
    no_mesh: bool,
    /// Accept replayed captures: no freshness window and no address check (cookie), so a
    /// capture's old signed registrations work days later. Refused unless --listen is a
    /// loopback address.
    #[arg(long)]
    accept_replayed: bool,
    /// Where other servers reach this one, HOST:PORT, published in the node list
    /// (default: --listen, unless it is a wildcard address).
    #[arg(long)]
    announce: Option<String>,
    /// Seconds without a keepalive after which a client is offline.
    #[arg(long, default_value_t = 75)]
    ttl: u64,
    /// Keepalive interval advised to clients, seconds (at most a third of --ttl).
    #[arg(long, default_value_t = 25)]
    keepalive: u16,
    /// This server's alias, sent as the home server in lookup answers (<= 255 bytes).
    #[arg(long, default_value = "rendezvous")]
    alias: String,
    /// Freshness window for signed packets, seconds either side of the server's clock.
    #[arg(long, default_value_t = 60)]
    freshness: u64,
    /// Most clients online at once.
    #[arg(long, default_value_t = 1_000_000)]
    max_clients: usize,
    /// Registrations per second per source /24 or /64 (loopback is exempt).
    #[arg(long, default_value_t = 20)]
    register_rate: u32,
    /// Lookup answer bytes per second per source IP (loopback is exempt).
    #[arg(long, default_value_t = 16384)]
    lookup_bytes: u32,
    /// At most one punch request per (asker, target) pair per this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    punch_interval_ms: u64,
    /// Most events queued for one offline recipient.
    #[arg(long, default_value_t = 32)]
    queue_depth: usize,
    /// Most events one sender may have queued for offline recipients.
    #[arg(long, default_value_t = 256)]
    queue_per_sender: usize,
    /// Seconds a queued event waits before it is dropped.
    #[arg(long, default_value_t = 600)]
    queue_age: u64,
    /// Total bytes of queued events, all recipients together.
    #[arg(long, default_value_t = 16 << 20)]
    queue_bytes: usize,
}

#[derive(Subcommand)]
enum IdentityCmd {
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
    },
    /// Print the fingerprint of the identity in DIR.
    Show {
        /// Directory holding cert.pem and key.pem.
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Alg {
    Ed25519,
    P256,
}

#[derive(Args)]
struct Conn {
    /// Server address, HOST:PORT.
    #[arg(long)]
    server: String,
    /// Identity directory (cert.pem + key.pem, from `rendezvous identity new` or openssl).
    #[arg(long)]
    identity: PathBuf,
    /// Use the shifted layout with this many junk bytes per shift.
    #[arg(long)]
    shift: Option<u8>,
    /// Local address to bind (default: any, ephemeral port).
    #[arg(long)]
    bind: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve(a) => serve(a),
        Cmd::Identity(c) => identity(c),
        Cmd::Register { conn, keepalive } => register(conn, keepalive),
        Cmd::Lookup { conn, fingerprint } => lookup(conn, &fingerprint),
        Cmd::Contacts(c) => contacts(c),
        Cmd::Status { server } => status(&server),
        Cmd::Send {
            conn,
            fingerprint,
            text,
        } => send(conn, &fingerprint, &text),
        Cmd::Punch {
            conn,
            fingerprint,
            timeout,
        } => punch(conn, &fingerprint, timeout),
        Cmd::Replay(a) => rendezvous::tools::replay::run(a),
        Cmd::Decode(a) => rendezvous::tools::decode::run_decode(a),
        Cmd::Bench(a) => rendezvous::tools::bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if a.ttl == 0 {
        bail!("--ttl must be at least 1 second");
    }
    if a.keepalive == 0 {
        bail!("--keepalive must be at least 1 second");
    }
    if a.alias.len() > 255 {
        bail!("--alias is {} bytes; at most 255", a.alias.len());
    }
    if a.accept_replayed && !a.listen.ip().is_loopback() {
        bail!(
            "--accept-replayed turns off the freshness window and the address check: it is \
             allowed only with a loopback --listen (127.0.0.1:PORT or [::1]:PORT), not {}",
            a.listen
        );
    }
    let peers = a
        .peer
        .iter()
        .map(|p| resolve(p))
        .collect::<Result<Vec<_>>>()?;
    let allow_peers = a
        .allow_peer
        .iter()
        .map(|c| Cidr::parse(c).map_err(|e| anyhow::anyhow!("--allow-peer {e}")))
        .collect::<Result<Vec<_>>>()?;
    let store: Box<dyn Store> = if a.memory_only {
        Box::new(MemoryStore::new())
    } else {
        Box::new(
            SqliteStore::open(&a.data_dir)
                .with_context(|| format!("cannot open the store in {}", a.data_dir.display()))?,
        )
    };
    let clock = store
        .clock()
        .context("cannot read the Lamport clock from the store")?;
    let journal_id = store.journal_id().context("cannot read the journal id")?;
    let journal_head = store
        .journal_head()
        .context("cannot read the journal head")?;
    let stored_nodes = store.node_list().context("cannot read the node list")?;
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
    let node_id = if a.memory_only {
        Identity::generate(KeyAlgorithm::Ed25519, &a.alias)?
    } else {
        node_identity(&a.data_dir.join("node"), &a.alias)?
    };
    let (socket, listener) = bind_both(a.listen)?;
    let local = socket.local_addr()?;
    let location = match &a.announce {
        Some(l) => {
            if l.len() > 255 {
                bail!("--announce is {} bytes; at most 255", l.len());
            }
            l.clone()
        }
        None if local.ip().is_unspecified() => String::new(),
        None => local.to_string(),
    };
    let node_key = node_id.verifying_key().public_key().to_vec();
    let uid = node_uid(&node_key);
    let version = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let node = NodeEntry::new(uid, version, a.alias.clone(), location, node_key)
        .map_err(|e| anyhow::anyhow!("cannot make this server's node-list entry: {e}"))?;
    say(&format!("node uid={}", hex_of(&uid)));
    let signer_id = node_id.clone();
    let tcp_cfg = TcpConfig {
        name: a.alias.clone(),
        peers,
        allow_peers,
        node: Some(node),
        no_mesh: a.no_mesh,
        signer: Some(NodeSigner(Arc::new(move |m: &[u8]| signer_id.sign(m)))),
        seed: derive(&seed, b"tcp nonces"),
        ..TcpConfig::default()
    };
    let cfg = Config {
        alias: a.alias,
        accept_replayed: a.accept_replayed,
        keepalive_s: a.keepalive,
        ttl_ms: a.ttl.saturating_mul(1000),
        freshness_s: a.freshness,
        max_clients: a.max_clients,
        register_per_s: a.register_rate,
        lookup_bytes_per_s: a.lookup_bytes,
        punch_interval_ms: a.punch_interval_ms,
        queue_depth: a.queue_depth,
        queue_per_sender: a.queue_per_sender,
        queue_age_ms: a.queue_age.saturating_mul(1000),
        queue_bytes: a.queue_bytes,
        ..Config::default()
    };
    let origin = Instant::now();
    let mut server = Server::new(cfg, seed, rendezvous::net::now(origin));
    tracing::info!(%local, ttl_s = a.ttl, keepalive_s = server.config().advised_keepalive_s(), epoch = server.boot_epoch(), clock, memory_only = a.memory_only, "serving");
    say(&format!("listening udp {local}"));
    say(&format!("listening tcp {}", listener.local_addr()?));
    let start_ms = rendezvous::net::now(origin).mono_ms;
    let core = TcpCore::new(tcp_cfg, clock, start_ms)
        .with_journal(journal_id, journal_head)
        .with_nodes(&stored_nodes, start_ms);
    let tcp = rendezvous::net::TcpParts {
        listener,
        core,
        store: Box::new(move |wake| StoreThread::spawn(store, wake)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    rendezvous::net::run(socket, &mut server, Some(tcp), origin, stop)?;
    Ok(ExitCode::SUCCESS)
}

/// Binds UDP and TCP on one port. With port 0 the kernel picks the UDP port, and TCP may
/// find that number taken: then both are tried again on another port.
fn bind_both(listen: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener)> {
    for _ in 0..32 {
        let udp = rendezvous::net::bind_udp(listen)
            .with_context(|| format!("cannot listen on UDP {listen}"))?;
        let local = udp.local_addr()?;
        match rendezvous::net::tcp::bind_tcp(local) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot listen on TCP {local}")),
        }
    }
    bail!("no port free for both UDP and TCP on {}", listen.ip())
}

fn identity(c: IdentityCmd) -> Result<ExitCode> {
    match c {
        IdentityCmd::New {
            out,
            algorithm,
            name,
        } => {
            let alg = match algorithm {
                Alg::Ed25519 => KeyAlgorithm::Ed25519,
                Alg::P256 => KeyAlgorithm::EcdsaP256,
            };
            let id = Identity::generate(alg, &name)?;
            id.save(&out)?;
            say(&id.fingerprint().to_hex());
        }
        IdentityCmd::Show { dir } => {
            let id = Identity::load(&dir)?;
            say(&id.fingerprint().to_hex());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads this server's node identity (an Ed25519 key and self-signed certificate) from
/// `dir`, or makes and saves one on first start.
fn node_identity(dir: &std::path::Path, alias: &str) -> Result<Identity> {
    if dir.join("cert.pem").exists() {
        return Identity::load(dir)
            .with_context(|| format!("cannot load the node identity in {}", dir.display()));
    }
    let id = Identity::generate(KeyAlgorithm::Ed25519, alias)?;
    id.save(dir)
        .with_context(|| format!("cannot save the node identity in {}", dir.display()))?;
    Ok(id)
}

/// A node's uid: the first 16 bytes of SHA-256 of its public key (docs/PROTOCOL.md).
fn node_uid(public_key: &[u8]) -> [u8; 16] {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    let mut uid = [0u8; 16];
    uid.copy_from_slice(&d.as_ref()[..16]);
    uid
}

/// 32 bytes derived from the boot seed under `label`, independent of other uses.
fn derive(seed: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(seed);
    ctx.update(label);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn resolve(server: &str) -> Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server address {server:?} (want HOST:PORT)"))?
        .next()
        .with_context(|| format!("server address {server:?} resolves to nothing"))
}

fn parse_fp(text: &str) -> Result<Fingerprint> {
    Fingerprint::from_hex(text).with_context(|| format!("bad fingerprint {text:?}"))
}

fn connect(conn: &Conn) -> Result<Client> {
    let server = resolve(&conn.server)?;
    let id = Identity::load(&conn.identity)?;
    let mut c = Client::new(server, id, conn.bind)
        .with_context(|| "cannot open a UDP socket".to_string())?;
    c.set_shift(conn.shift);
    Ok(c)
}

/// Registers and prints the `registered` line with the keepalive interval this client
/// uses (`chosen`, else the server's advice); returns that interval (s) and the epoch.
fn do_register(c: &mut Client, chosen: Option<u64>) -> Result<(u64, u32), ClientError> {
    let info = c.register(5, Duration::from_secs(2))?;
    let fp = c.identity().fingerprint();
    let (advised, epoch, public) = match info {
        Some(i) => (
            u64::from(i.keepalive_s),
            i.boot_epoch,
            i.reflexive.to_string(),
        ),
        None => (25, 0, "?".to_string()),
    };
    let ka = chosen.unwrap_or(advised);
    say(&format!(
        "registered fingerprint={fp} public={public} keepalive={ka} epoch={epoch}"
    ));
    Ok((ka, epoch))
}

fn text_of(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn register(conn: Conn, keepalive: Option<u64>) -> Result<ExitCode> {
    let mut c = connect(&conn)?;
    let (mut interval, mut epoch) = do_register(&mut c, keepalive)?;
    let me = c.identity().fingerprint();
    let hello = format!("hello from {me}");
    let mut next_ka = Instant::now() + Duration::from_secs(interval.max(1));
    // Hole punching: (peer address, hellos left, next send time).
    let mut punches: Vec<(SocketAddr, u32, Instant)> = Vec::new();
    let mut answered: Vec<SocketAddr> = Vec::new();
    loop {
        let now = Instant::now();
        if interval > 0 && now >= next_ka {
            c.keepalive()?;
            next_ka = now + Duration::from_secs(interval);
        }
        for p in punches.iter_mut().filter(|p| p.1 > 0 && p.2 <= now) {
            let _ = c.send_direct(p.0, hello.as_bytes());
            p.1 -= 1;
            p.2 = now + Duration::from_millis(250);
        }
        punches.retain(|p| p.1 > 0);
        let mut wake = now + Duration::from_secs(1);
        if interval > 0 {
            wake = wake.min(next_ka);
        }
        for p in &punches {
            wake = wake.min(p.2);
        }
        let Some(msg) = c.recv(wake.saturating_duration_since(now))? else {
            continue;
        };
        match msg {
            Incoming::Relay { from, event } => {
                say(&format!("event from={from} text={}", text_of(&event)))
            }
            Incoming::Punch { peer, addr } => {
                say(&format!("punch from={peer} addr={addr}"));
                punches.push((addr, 20, Instant::now()));
            }
            Incoming::Direct { from, data } => {
                say(&format!("direct from={from} text={}", text_of(&data)));
                if data.starts_with(b"hello from ") && !answered.contains(&from) {
                    answered.push(from);
                    let _ = c.send_direct(from, format!("hello back from {me}").as_bytes());
                }
            }
            Incoming::Error {
                status,
                request_type,
                detail,
            } => {
                say(&format!(
                    "error status={status} request={request_type} detail={detail}"
                ));
                if status == 404 && request_type == 0 {
                    // The server does not know our address: it restarted. Register again.
                    (interval, epoch) = do_register(&mut c, keepalive)?;
                }
            }
            Incoming::Ok(Some(info)) if info.boot_epoch != epoch => {
                (interval, epoch) = do_register(&mut c, keepalive)?;
            }
            _ => {}
        }
    }
}

fn lookup(conn: Conn, fingerprint: &str) -> Result<ExitCode> {
    let target = parse_fp(fingerprint)?;
    let mut c = connect(&conn)?;
    c.register(5, Duration::from_secs(2))?;
    let (status, home) = c.lookup(target, Duration::from_secs(3))?;
    say(&match status {
        LookupStatus::Online { addr, age_s } => {
            format!("online addr={addr} age={age_s} home={home}")
        }
        LookupStatus::Offline { age_s } => format!("offline age={age_s} home={home}"),
        LookupStatus::Unknown => "unknown".to_string(),
    });
    Ok(ExitCode::SUCCESS)
}

fn send(conn: Conn, fingerprint: &str, text: &str) -> Result<ExitCode> {
    let dest = parse_fp(fingerprint)?;
    if text.is_empty() || text.len() > 1200 {
        bail!("event text must be 1 to 1200 bytes, got {}", text.len());
    }
    let mut c = connect(&conn)?;
    c.register(5, Duration::from_secs(2))?;
    c.send_event(dest, text.as_bytes())?;
    // Accepted events are not acknowledged; a refusal comes back as an error. Wait briefly.
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Some(m) = c.recv(deadline.saturating_duration_since(Instant::now()))? {
        if let Incoming::Error {
            status,
            request_type: 4,
            detail,
        } = m
        {
            bail!("server refused the event: {status} {detail}");
        }
    }
    say("sent");
    Ok(ExitCode::SUCCESS)
}

fn punch(conn: Conn, fingerprint: &str, timeout: u64) -> Result<ExitCode> {
    let target = parse_fp(fingerprint)?;
    let mut c = connect(&conn)?;
    c.register(5, Duration::from_secs(2))?;
    let me = c.identity().fingerprint();
    let (status, _) = c.lookup(target, Duration::from_secs(3))?;
    let LookupStatus::Online { addr, .. } = status else {
        bail!("peer {target} is not online at this server ({status:?})");
    };
    let hello = format!("hello from {me}");
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut next = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next {
            c.send_direct(addr, hello.as_bytes())?;
            next = Instant::now() + Duration::from_millis(250);
        }
        let wait = next.min(deadline).saturating_duration_since(Instant::now());
        if let Some(Incoming::Direct { from, data }) = c.recv(wait)? {
            // Only the peer's hello counts (it names the fingerprint we looked up).
            let text = String::from_utf8_lossy(&data);
            if !text.ends_with(&target.to_hex()) || !text.starts_with("hello ") {
                continue;
            }
            say(&format!("direct from={from} text={}", text_of(&data)));
            // Make sure the peer hears from us too.
            c.send_direct(from, format!("hello back from {me}").as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    eprintln!(
        "error: no datagram from {target} at {addr} within {timeout} s (hole punching failed)"
    );
    Ok(ExitCode::FAILURE)
}

fn contacts(c: ContactsCmd) -> Result<ExitCode> {
    let t = Duration::from_secs(30);
    match c {
        ContactsCmd::Update {
            server,
            user,
            contact,
            phone,
        } => {
            let addr = resolve(&server)?;
            let mut cl = ContactsClient::connect(addr, "rendezvous-cli", t)
                .with_context(|| format!("cannot connect to TCP {addr}"))?;
            cl.update(&user, &contact, &phone)?;
            cl.barrier()
                .context("the server did not confirm the write")?;
            say("ok");
        }
        ContactsCmd::List { server } => {
            let addr = resolve(&server)?;
            let mut cl = ContactsClient::connect(addr, "rendezvous-cli", t)
                .with_context(|| format!("cannot connect to TCP {addr}"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            cl.list_each(|u, c, p| {
                let _ = writeln!(out, "{u}\t{c}\t{p}");
            })?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status(server: &str) -> Result<ExitCode> {
    let addr = resolve(server)?;
    let mut cl = ContactsClient::connect(addr, "rendezvous-cli", Duration::from_secs(30))
        .with_context(|| format!("cannot connect to TCP {addr}"))?;
    let text = cl
        .status()
        .context("the server did not answer the status request")?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
