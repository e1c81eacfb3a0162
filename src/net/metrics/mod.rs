//! `serve --metrics ADDR:PORT` (docs/METRICS.md): the Prometheus exposition of the node's
//! counters, the store latency and the process, and a health check (`/healthz`), on its
//! own small HTTP listener.
//!
//! Threads and bounds: the event loop owns the node and is never blocked by a scrape. At
//! most every [`PUBLISH_EVERY_MS`] (at the end of a turn; an idle loop turns at least every
//! 500 ms) a [`Publisher`] copies the node's counters ([`Node::snapshot`]: a struct copy
//! and the list of links) into a mutex it only `try_lock`s, so the loop never waits. The
//! store thread records each request's time into a prometheus-client histogram (atomics).
//! One `metrics` thread accepts scrapes one at a time (blocking `std::net`, bounded
//! request size and read time; see `http`), clones the latest snapshot out of the mutex
//! and renders it with prometheus-client (`render`). The process metrics come from
//! `/proc/self` (`process`).

mod http;
mod process;
mod render;

use crate::core::node::Node;
use crate::core::snapshot::NodeSnapshot;
use crate::store::thread::Observe;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How often the loop publishes its counters at most, ms.
pub const PUBLISH_EVERY_MS: u64 = 250;

/// The store latency histograms, by request kind.
type StoreLatency = Family<[(&'static str, &'static str); 1], Histogram, fn() -> Histogram>;

/// Buckets from 50 µs to about 1.6 s, doubling: a memory-only apply takes microseconds, an
/// fsync on a slow disk tens of milliseconds.
fn store_latency() -> StoreLatency {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 16)))
}

/// What the loop, the store thread and the metrics thread share.
pub struct Metrics {
    /// The loop's latest counters and when they were taken.
    latest: Mutex<Option<(NodeSnapshot, Instant)>>,
    store: StoreLatency,
}

impl Metrics {
    /// Nothing published yet, empty histograms.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            latest: Mutex::new(None),
            store: store_latency(),
        })
    }

    /// The store thread's observer: each request's time into the histogram of its kind.
    pub fn store_observer(&self) -> Observe {
        let store = self.store.clone();
        Box::new(move |kind, took| {
            store
                .get_or_create(&[("op", kind)])
                .observe(took.as_secs_f64());
        })
    }

    /// The event loop's publisher of the node's counters.
    pub fn publisher(self: &Arc<Self>) -> Publisher {
        Publisher {
            metrics: Arc::clone(self),
            next_ms: 0,
            draining: false,
        }
    }

    /// The server's health for `GET /healthz` (docs/METRICS.md): from the loop's latest
    /// copy of the node.
    fn health(&self) -> Health {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match latest.as_ref() {
            None => Health::Starting,
            Some((snap, _)) if snap.draining => Health::Draining,
            Some(_) => Health::Serving,
        }
    }

    /// A scrape: OpenMetrics text when `openmetrics`, else the Prometheus text format 0.0.4.
    pub fn render(&self, openmetrics: bool) -> String {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let scrape = render::Scrape {
            node: latest
                .as_ref()
                .map(|(snap, at)| (snap, at.elapsed().as_secs_f64())),
            store: &self.store,
            process: process::read(),
        };
        let text = render::openmetrics(&scrape);
        if openmetrics {
            text
        } else {
            render::prometheus_text(&text)
        }
    }
}

/// What `GET /healthz` answers (docs/METRICS.md, "Health").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// The event loop has not published yet: 503 `starting`.
    Starting,
    /// The loop runs and no drain began: 200 `ok`.
    Serving,
    /// A drain began (SIGTERM or SIGINT): 503 `draining`.
    Draining,
}

/// Kept by the event loop: copies the node's counters for the metrics thread now and then.
pub struct Publisher {
    metrics: Arc<Metrics>,
    /// When the next copy is due (monotonic ms).
    next_ms: u64,
    /// Whether the last copy published said the node drains.
    draining: bool,
}

impl Publisher {
    /// At the end of a loop turn: publishes [`Node::snapshot`] if the last copy is older
    /// than [`PUBLISH_EVERY_MS`], or the node began draining since, and no scrape holds the
    /// lock (else it tries next turn).
    pub fn tick(&mut self, now_ms: u64, node: &Node) {
        let changed = node.tcp().draining() != self.draining;
        if now_ms < self.next_ms && !changed {
            return;
        }
        if let Ok(mut latest) = self.metrics.latest.try_lock() {
            let snap = node.snapshot();
            self.draining = snap.draining;
            *latest = Some((snap, Instant::now()));
            self.next_ms = now_ms + PUBLISH_EVERY_MS;
        }
    }
}

/// `--metrics`: `PORT` alone is `127.0.0.1:PORT` (loopback), else `ADDR:PORT` as given
/// (`[::1]:9100` for IPv6).
///
/// # Errors
/// A text that is neither a port nor an address with a port.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is neither PORT nor ADDR:PORT (e.g. 9100, 0.0.0.0:9100)"))
}

/// Binds `addr` and starts the `metrics` thread answering `GET /metrics` and `GET /healthz`
/// there. Returns the
/// address bound (the real port when asked for port 0).
///
/// # Errors
/// The OS error of binding, or of starting the thread.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    http::spawn(listener, metrics)?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_is_loopback() {
        assert_eq!(parse_listen("9100"), Ok("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(
            parse_listen("0.0.0.0:9100"),
            Ok("0.0.0.0:9100".parse().unwrap())
        );
        assert_eq!(parse_listen("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        assert!(parse_listen("localhost").is_err());
        assert!(parse_listen("70000").is_err());
    }
}
