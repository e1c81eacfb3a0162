//! SIGHUP: `serve` reads its configuration again (file, variables, flags, as at start) and
//! gives the running node what changed: peers, allowed networks, pinned keys, limits and
//! the log level (docs/PROTOCOL.md §7, "Reload"). A bad configuration is refused whole.

use crate::args::ServeArgs;
use crate::config;
use anyhow::Result;
use rendezvous::core::node::{Node, Reloadable};
use rendezvous::core::Now;
use std::collections::BTreeMap;
use std::ffi::OsString;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The settings a reload applies (keys of the configuration file); any other setting
/// changed is logged as waiting for a restart.
const RELOADABLE: [&str; 15] = [
    "peer",
    "allow-peer",
    "no-mesh",
    "peer-key",
    "max-clients",
    "register-rate",
    "lookup-bytes",
    "relay-bytes",
    "punch-interval-ms",
    "queue-depth",
    "queue-per-sender",
    "queue-age",
    "queue-bytes",
    "log-level",
    "log-addresses",
];

/// Changes the log filter of the running subscriber.
pub(crate) type LogHandle = reload::Handle<EnvFilter, Registry>;

/// The log filter of `--log-level`, else of `RUST_LOG`, else `info`.
pub(crate) fn log_filter(level: Option<&str>) -> EnvFilter {
    match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    }
}

/// What a reload needs: the command line `serve` started with, the settings in force
/// (`key = value` lines as `config check` prints them) and the log filter's handle.
pub(crate) struct Reloader {
    argv: Vec<OsString>,
    in_force: Vec<String>,
    log: LogHandle,
}

impl Reloader {
    /// A reloader for a server started with `argv` (before the configuration was layered
    /// in) and running with the effective settings `in_force`.
    pub(crate) fn new(argv: Vec<OsString>, in_force: Vec<String>, log: LogHandle) -> Self {
        Reloader {
            argv,
            in_force,
            log,
        }
    }

    /// Reads the configuration again and applies it to `node` at `now`; logs each change,
    /// or why the whole configuration was refused (then nothing changes).
    pub(crate) fn reload(&mut self, node: &mut Node, now: Now) {
        tracing::info!("SIGHUP: reading the configuration again");
        let read = config::read_serve(self.argv.clone())
            .and_then(|(args, settings)| Ok((reloadable(&args)?, args, settings)));
        let (reloadable, args, settings) = match read {
            Ok(read) => read,
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(%error, "reload refused; the settings in force stay");
                return;
            }
        };
        let changes = self.take(settings);
        if changes.iter().any(|k| k == "log-level") {
            let level = args.ops.log_level.as_deref();
            match self.log.reload(log_filter(level)) {
                Ok(()) => tracing::debug!(level, "log filter changed"),
                Err(e) => tracing::error!(error = %e, "cannot change the log level"),
            }
        }
        rendezvous::core::logs::set_log_addresses(args.ops.log_addresses);
        node.reconfigure(reloadable, now);
        tracing::info!(changed = changes.len(), "configuration reloaded");
    }

    /// Takes the reloadable settings of `settings` into those in force, logging each
    /// change; returns the keys applied. Other changed keys are logged, not taken.
    fn take(&mut self, settings: Vec<String>) -> Vec<String> {
        let new: BTreeMap<String, (String, String)> = settings
            .into_iter()
            .map(|l| {
                let (k, v) = key_value(&l);
                (k, (v, l))
            })
            .collect();
        let mut applied = Vec::new();
        for line in &mut self.in_force {
            let (key, old) = key_value(line);
            let Some((value, new_line)) = new.get(&key).filter(|(v, _)| *v != old) else {
                continue;
            };
            if RELOADABLE.contains(&key.as_str()) {
                tracing::info!(key = %key, from = %old, to = %value, "setting changed");
                line.clone_from(new_line);
                applied.push(key);
            } else {
                tracing::warn!(key = %key, in_force = %old, configured = %value,
                    "setting changed in the configuration; it takes effect at the next restart");
            }
        }
        applied
    }
}

/// The key and value of a settings line: `key = value`, or `# key is not set` (value
/// `not set`).
fn key_value(line: &str) -> (String, String) {
    if let Some(rest) = line.strip_prefix("# ") {
        let key = rest.trim_end_matches(" is not set");
        return (key.to_string(), "not set".to_string());
    }
    match line.split_once(" = ") {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (line.to_string(), String::new()),
    }
}

/// What the node takes from `a`; host names in `--peer` are resolved now.
fn reloadable(a: &ServeArgs) -> Result<Reloadable> {
    let cfg = crate::serve::udp_limits(a);
    Ok(Reloadable {
        peering: crate::serve::peering(a)?,
        limits: cfg.0,
        max_clients: a.limits.max_clients,
        queue: cfg.1,
    })
}
