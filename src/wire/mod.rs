//! Zero-copy views and emitters for every wire format; no I/O, and no allocation on the
//! parse path. One file per packet family.
//!
//! Contract (as smoltcp's `wire`): a `parse` checks lengths once and returns a view that
//! borrows the input; it never panics on any input and refuses what the layout forbids
//! with a [`WireError`]. An `emit` writes into a caller buffer and returns the length.

mod bytes;

mod error;
mod fingerprint;
pub mod name;
pub mod status;
pub mod tcp;
pub mod udp;

pub use error::WireError;
pub use fingerprint::{Fingerprint, FingerprintParseError};
pub use udp::root::{PacketType, Root, RootHeader, MAX_DATAGRAM};
