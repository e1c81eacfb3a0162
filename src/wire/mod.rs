//! Every byte format of the protocol, exactly once: zero-copy views and emitters of the
//! UDP plane's datagrams and the TCP plane's frames and answers, with no I/O and no
//! allocation on the parse path (docs/PROTOCOL.md §2-§4, §8). It depends on nothing else
//! in the crate; everything else reads and writes the wire through it.
//!
//! ```text
//! wire/
//!   udp/        root.rs (the Root packet, plain and shifted), the payloads of types 0-9
//!   tcp/        hello, commands of both roles, contact fields and records, the status
//!               frame, nodelist (frames 10-12), dir (frames 16-18), answer (the answer
//!               stream, read piece by piece)
//!   status.rs   the HTTP-like status codes of both planes
//!   stun.rs     STUN Binding requests and responses on the UDP port (RFC 8489)
//!   name.rs     NUL-padded text fields; fingerprint.rs; error.rs (WireError)
//!   fixtures/   named bytes of every packet and frame, with the fields a reader sees
//! ```
//!
//! Contract (as smoltcp's `wire`): a `parse` checks lengths once and returns a view that
//! borrows the input; it never panics on any input and refuses what the layout forbids
//! with a [`WireError`]. An `emit` writes into a caller buffer and returns the length; it
//! checks every field before it writes a byte.

mod bytes;
mod error;
mod fingerprint;
pub mod fixtures;
pub mod name;
pub mod status;
pub mod stun;
pub mod tcp;
pub mod udp;

pub use error::WireError;
pub use fingerprint::{Fingerprint, FingerprintParseError};
pub use udp::root::{PacketType, Root, RootHeader, MAX_DATAGRAM};
