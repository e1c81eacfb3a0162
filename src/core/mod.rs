//! The I/O-free server core: the UDP plane ([`udp::UdpCore`]: the fingerprint -> address
//! directory, relay queues, rate limits, cookies, federation records) and the TCP plane
//! ([`tcp`]), fed time and bytes and returning what to send. It never reads a clock or
//! touches a socket (see `net` for the event loop).

pub mod logs;
pub mod node;
pub mod snapshot;
pub mod tcp;
pub mod udp;

pub use udp::{Out, PeerOut, PeerRecordError};

/// The time the core is fed: a monotonic clock for expiry and rate limits, and Unix time
/// for the freshness window and certificate validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (any origin; never goes backwards).
    pub mono_ms: u64,
    /// Unix time, seconds (UTC).
    pub unix_s: u64,
}
