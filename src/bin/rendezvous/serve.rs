//! `rendezvous serve`: checks the flags, opens the store, loads or makes the node identity,
//! binds UDP and TCP on one port, builds the node (both planes) from the flags and the
//! store, and runs the event loop until killed (docs/PROTOCOL.md §7, `rendezvous serve`; §8.15 for
//! the node list).

use crate::args::{LogFormat, ServeArgs};
use crate::reload::{log_filter, LogHandle, Reloader};
use crate::{hex_of, resolve, resolve_all, say};
use anyhow::{bail, Context, Result};
use rendezvous::core::node::{node_uid, Node, Stored};
use rendezvous::core::tcp::{Cidr, NodeSigner, Peering, TcpConfig, TcpCore, TcpIdentity};
use rendezvous::core::udp::{
    QueueBounds, RateLimits, TableBounds, UdpConfig, UdpCore, UdpIdentity, UdpTimers,
};
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::net::metrics::Metrics;
use rendezvous::store::thread::StoreThread;
use rendezvous::store::{MemoryStore, SqliteStore, Store};
use rendezvous::wire::tcp::nodelist::NodeEntry;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Tries of [`bind_both`] on port 0 before giving up.
const BIND_TRIES: usize = 32;

/// Runs `rendezvous serve` until a signal stops it; `settings` are the effective settings
/// (`key = value` lines) and `argv` the command line as given, read again on SIGHUP.
pub(crate) fn serve(a: ServeArgs, settings: Vec<String>, argv: Vec<OsString>) -> Result<ExitCode> {
    let log = init_tracing(a.ops.log_format, a.ops.log_level.as_deref());
    rendezvous::core::logs::set_log_addresses(a.ops.log_addresses);
    let listen = check(&a)?;
    tracing::info!(settings = %settings.join("; "), "effective settings");
    let peering = peering(&a)?;
    let store = open_store(&a)?;
    let stored = Stored::read(&*store)
        .context("cannot read the Lamport clock, the journal or the node list from the store")?;
    let seed = boot_seed()?;
    let node_id = if a.store.memory_only {
        Identity::generate(KeyAlgorithm::Ed25519, &a.alias)?
    } else {
        node_identity(&a.store.data_dir.join("node"), &a.alias)?
    };
    let tls = rendezvous::net::tls::TlsConfigs::new(&node_id)
        .context("cannot set up TLS with the node identity")?;
    if a.peering.plain_peers {
        tracing::warn!(
            "--plain-peers: federation links run in clear text and accept clear-text server \
             hellos; anyone on the path can read and inject contacts (closed networks only)"
        );
    }
    // A replayed capture's datagrams come from several sockets whose order matters; one
    // worker handles them in the order sent (docs/PROTOCOL.md §7, "Workers").
    let workers = match (a.ops.workers, a.accept_replayed) {
        (Some(n), _) => n,
        (None, true) => 1,
        (None, false) => default_workers(),
    };
    let (sockets, listener) = bind_listen(&listen, workers)?;
    let local = listener.local_addr()?;
    let node = this_node(&a, &node_id, local)?;
    let tcp_cfg = tcp_config(&a, peering, node.clone(), &node_id, &seed);
    let (ttl, memory_only, metrics_at) = (a.timers.ttl, a.store.memory_only, a.ops.metrics);
    let drain_ms = a.ops.drain_timeout.saturating_mul(1000);
    let summary_ms = a.ops.log_summary_interval.saturating_mul(1000);
    let data_dir = std::path::absolute(&a.store.data_dir).unwrap_or(a.store.data_dir.clone());
    let cfg = udp_config(a, *node.uid());
    let origin = Instant::now();
    let now = rendezvous::net::now(origin);
    let udp = UdpCore::new(cfg, seed, now);
    let (alias, node_uid) = (&udp.config().identity.alias, hex_of(node.uid()));
    tracing::info!(%local, %alias, %node_uid, ttl_s = ttl, keepalive_s = udp.config().advised_keepalive_s(), epoch = udp.boot_epoch(), clock = stored.clock, memory_only, "serving");
    if tcp_cfg.open_contacts {
        tracing::warn!(
            "--open-contacts: any TCP client can read and write every contact; use it only on a closed network"
        );
    }
    say(&format!("listening udp {local}"));
    say(&format!("udp workers {workers}"));
    say(&format!("listening tcp {}", listener.local_addr()?));
    say(&match memory_only {
        true => "data-dir none (--memory-only)".to_string(),
        false => format!("data-dir {}", data_dir.display()),
    });
    let metrics = metrics_at.map(start_metrics).transpose()?;
    let observe = metrics.as_ref().map(|m| m.store_observer());
    let tcp = TcpCore::new(tcp_cfg, stored.clock, now.mono_ms)
        .with_journal(stored.journal_id, stored.journal_head)
        .with_nodes(&stored.node_list, now.mono_ms);
    let serve = rendezvous::net::Serve {
        udp: sockets,
        tcp: listener,
        node: Node::new(udp, tcp).with_summary_every(summary_ms),
        store: Box::new(move |wake| StoreThread::spawn_observed(store, wake, observe)),
        tls: Some(tls),
        drain_ms,
        metrics: metrics.map(|m| m.publisher()),
    };
    let mut reloader = Reloader::new(argv, settings, log);
    let control = rendezvous::net::Control {
        stop: stop_on_signals()?,
        reload: reload_on_sighup()?,
        on_reload: Box::new(move |node, now| reloader.reload(node, now)),
    };
    notify_ready();
    rendezvous::net::run(serve, origin, control)?;
    tracing::info!(uptime_s = origin.elapsed().as_secs(), "stopped");
    Ok(ExitCode::SUCCESS)
}

/// `--metrics`: binds the metrics listener and starts its thread; prints
/// `metrics http://ADDR:PORT/metrics` (docs/METRICS.md).
fn start_metrics(at: SocketAddr) -> Result<Arc<Metrics>> {
    let metrics = Metrics::new();
    let local = rendezvous::net::metrics::serve(at, Arc::clone(&metrics))
        .with_context(|| format!("cannot serve metrics on {at}"))?;
    tracing::info!(%local, "serving Prometheus metrics at http://{local}/metrics");
    say(&format!("metrics http://{local}/metrics"));
    Ok(metrics)
}

/// Tells systemd the server is ready (`READY=1` to `$NOTIFY_SOCKET`, sd_notify(3)) once
/// its sockets are bound, for `Type=notify` units (dist/rendezvous.service). Without the
/// variable, nothing; a socket that cannot be reached is logged, not fatal.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(b"READY=1", &addr)?;
        } else {
            sock.send_to(b"READY=1", &path)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot tell systemd we are ready (NOTIFY_SOCKET)");
    }
}

/// A flag set by the first SIGTERM or SIGINT (the loop then drains); a second one while it
/// is set ends the process at once with status 130 (docs/PROTOCOL.md §7, "Signals").
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // Registered first, so it sees the flag as the first signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }
    Ok(stop)
}

/// A flag set by each SIGHUP: the loop then reloads the configuration
/// (docs/PROTOCOL.md §7, "Reload").
fn reload_on_sighup() -> Result<Arc<AtomicBool>> {
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("cannot install the SIGHUP handler")?;
    Ok(reload)
}

/// Logs to stderr as text (in colour only on a terminal) or JSON lines, at `--log-level`
/// (else `RUST_LOG`, else `info`); returns the handle a reload changes the level with.
fn init_tracing(format: LogFormat, level: Option<&str>) -> LogHandle {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(level));
    let logs = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        // One JSON object per line, fields as keys, for log shippers.
        LogFormat::Json => logs.with(layer.json()).init(),
        // Colour only for a terminal: files and journals get plain text.
        LogFormat::Text => logs
            .with(layer.with_ansi(std::io::stderr().is_terminal()))
            .init(),
    }
    handle
}

/// Resolves `--listen` and refuses `--accept-replayed` unless every address it resolves to
/// is loopback (each flag's own range is checked as it is parsed, in args.rs). Returns the
/// `--listen` addresses in the resolver's order.
///
/// # Errors
/// `--listen` does not resolve; `--accept-replayed` with an address that is not loopback.
pub(crate) fn check(a: &ServeArgs) -> Result<Vec<SocketAddr>> {
    let listen = resolve_all("--listen", &a.listen)?;
    if a.accept_replayed && !listen.iter().all(|l| l.ip().is_loopback()) {
        bail!(
            "--accept-replayed turns off the freshness window and the address check: it is \
             allowed only with a loopback --listen (127.0.0.1:PORT or [::1]:PORT), not {}",
            a.listen
        );
    }
    Ok(listen)
}

/// The peering flags, resolved and parsed (docs/PROTOCOL.md §8.10, §8.12, §8.19).
pub(crate) fn peering(a: &ServeArgs) -> Result<Peering> {
    let (peers, allow_peers) = peer_lists(a)?;
    let pinned_keys = a
        .peering
        .peer_key
        .iter()
        .map(|k| {
            rendezvous::wire::Fingerprint::from_hex(k)
                .map(|f| f.0.to_vec())
                .map_err(|e| anyhow::anyhow!("--peer-key {k:?}: {e} (64 hex digits)"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Peering {
        peers,
        allow_peers,
        no_mesh: a.peering.no_mesh,
        tls_links: !a.peering.plain_peers,
        pinned_keys,
    })
}

/// `--peer` resolved and `--allow-peer` parsed.
fn peer_lists(a: &ServeArgs) -> Result<(Vec<SocketAddr>, Vec<Cidr>)> {
    let peers = a
        .peering
        .peer
        .iter()
        .map(|p| resolve(p))
        .collect::<Result<Vec<_>>>()?;
    let allow_peers = a
        .peering
        .allow_peer
        .iter()
        .map(|c| Cidr::parse(c).map_err(|e| anyhow::anyhow!("--allow-peer {e}")))
        .collect::<Result<Vec<_>>>()?;
    Ok((peers, allow_peers))
}

/// The store: SQLite in `--data-dir`, or RAM only with `--memory-only`.
fn open_store(a: &ServeArgs) -> Result<Box<dyn Store>> {
    let store: Box<dyn Store> =
        if a.store.memory_only {
            Box::new(MemoryStore::new())
        } else {
            Box::new(SqliteStore::open(&a.store.data_dir).with_context(|| {
                format!("cannot open the store in {}", a.store.data_dir.display())
            })?)
        };
    Ok(store)
}

/// 32 random bytes from the OS: the seed of this boot's secrets (cookies, nonces).
fn boot_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
    Ok(seed)
}

/// This server's node-list entry (docs/PROTOCOL.md §8.15): its uid, a version from the
/// clock, its alias, where peers reach it (`--announce`, else `local` unless it is a
/// wildcard address) and its node key. Prints `node uid=...`.
fn this_node(a: &ServeArgs, node_id: &Identity, local: SocketAddr) -> Result<NodeEntry> {
    let location = match &a.announce {
        Some(l) => l.clone(),
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
    say(&format!("node key={}", hex_of(node.public_key())));
    Ok(node)
}

/// The TCP core's configuration from the flags.
fn tcp_config(
    a: &ServeArgs,
    peering: Peering,
    node: NodeEntry,
    node_id: &Identity,
    seed: &[u8; 32],
) -> TcpConfig {
    let signer_id = node_id.clone();
    TcpConfig {
        identity: TcpIdentity {
            name: a.alias.clone(),
            node: Some(node),
            signer: Some(NodeSigner(Arc::new(move |m: &[u8]| signer_id.sign(m)))),
            seed: derive(seed, b"tcp nonces"),
        },
        peering,
        open_contacts: a.open_contacts,
        ..TcpConfig::default()
    }
}

/// The UDP core's configuration from the flags; `uid` is this server's node uid.
fn udp_config(a: ServeArgs, uid: [u8; 16]) -> UdpConfig {
    let (limits, queue) = udp_limits(&a);
    UdpConfig {
        identity: UdpIdentity {
            alias: a.alias,
            node_uid: Some(uid),
        },
        accept_replayed: a.accept_replayed,
        timers: UdpTimers {
            keepalive_s: a.timers.keepalive,
            ttl_ms: a.timers.ttl.saturating_mul(1000),
            freshness_s: a.freshness,
            ..UdpTimers::default()
        },
        tables: TableBounds {
            max_clients: a.limits.max_clients,
            ..TableBounds::default()
        },
        queue,
        limits,
        ..UdpConfig::default()
    }
}

/// The rate limits and relay-queue bounds of the flags (also what a reload applies).
pub(crate) fn udp_limits(a: &ServeArgs) -> (RateLimits, QueueBounds) {
    let limits = RateLimits {
        register_per_s: a.limits.register_rate,
        lookup_bytes_per_s: a.limits.lookup_bytes,
        relay_bytes_per_s: a.limits.relay_bytes,
        punch_interval_ms: a.limits.punch_interval_ms,
        ..RateLimits::default()
    };
    let queue = QueueBounds {
        depth: a.queue.queue_depth,
        per_sender: a.queue.queue_per_sender,
        age_ms: a.queue.queue_age.saturating_mul(1000),
        bytes: a.queue.queue_bytes,
    };
    (limits, queue)
}

/// Binds UDP and TCP on the first of `addrs` (`--listen`, resolved) that exists on this
/// host: an address that cannot be assigned here (`localhost` resolving to `::1` on a host
/// without IPv6) passes to the next; any other error (the port taken) stops the start.
fn bind_listen(addrs: &[SocketAddr], workers: usize) -> Result<Bound> {
    let mut last = None;
    for &addr in addrs {
        match bind_both(addr, workers) {
            Ok(bound) => return Ok(bound),
            Err(e) if not_here(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("--listen resolves to no address")))
}

/// True for a bind error that says the address is not on this host (EADDRNOTAVAIL) or its
/// family is not supported here (EAFNOSUPPORT).
fn not_here(e: &anyhow::Error) -> bool {
    e.root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| {
            io.kind() == std::io::ErrorKind::AddrNotAvailable
                || io.raw_os_error() == Some(rustix::io::Errno::AFNOSUPPORT.raw_os_error())
        })
}

/// The UDP sockets (one per worker, one port) and the TCP listener on that port.
type Bound = (Vec<std::net::UdpSocket>, std::net::TcpListener);

/// `--workers` when not given: the number of cores this process may run on (1 when the
/// system does not say).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Binds UDP (`workers` sockets in one `SO_REUSEPORT` group) and TCP on one port. A given
/// port is bound TCP first, so a second server on a port in use stops there, before its
/// UDP sockets could join the first one's group. With port 0 the kernel picks the UDP
/// port, and TCP may find that number taken: then both are tried again on another port.
fn bind_both(listen: SocketAddr, workers: usize) -> Result<Bound> {
    let udp_group = |at: SocketAddr| {
        rendezvous::net::bind_udp_group(at, workers)
            .with_context(|| format!("cannot listen on UDP {at}"))
    };
    if listen.port() != 0 {
        let tcp = rendezvous::net::tcp::bind_tcp(listen)
            .with_context(|| format!("cannot listen on TCP {listen}"))?;
        return Ok((udp_group(listen)?, tcp));
    }
    for _ in 0..BIND_TRIES {
        let udp = udp_group(listen)?;
        let local = udp[0].local_addr()?;
        match rendezvous::net::tcp::bind_tcp(local) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot listen on TCP {local}")),
        }
    }
    bail!("no port free for both UDP and TCP on {}", listen.ip())
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

/// 32 bytes derived from the boot seed under `label`, independent of other uses.
fn derive(seed: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(seed);
    ctx.update(label);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
