//! `rendezvous`: a rendezvous server for decentralized messengers and peer-to-peer apps.
//!
//! Clients register their self-signed X.509 certificate over UDP; the server maps its
//! SHA-256 fingerprint to the client's public address (after NAT), clients keep the NAT
//! mapping open with keepalives, look each other up, punch holes and relay events. On TCP,
//! contacts are kept with Lamport clocks and servers federate. The protocol is in
//! `docs/PROTOCOL.md`.
//!
//! # Layout
//! - [`wire`]: zero-copy views and emitters of every packet and frame; no I/O.
//! - [`identity`]: certificates, fingerprints, signatures, keys.
//! - [`core`]: the I/O-free server: the UDP directory ([`core::udp::UdpCore`]) and the TCP plane
//!   ([`core::tcp::TcpCore`]), fed time and bytes, returning what to send.
//! - [`federation`]: what servers sync, I/O-free: the node list (canonical form, SHA-512
//!   hash, loop-free merge and sync; [`federation::nodelist`]; its bytes are
//!   [`wire::tcp::nodelist`]'s).
//! - [`store`]: contacts and the Lamport clock behind a trait (SQLite, or RAM only).
//! - `net` (feature `net`, default): the only code that touches sockets and the clock;
//!   `net::mmsg` (recvmmsg/sendmmsg) holds the crate's only `unsafe` code.
//! - [`client`]: the blocking client library the CLI and the tests use.
//! - `tools` (feature `tools`, default; needs `net`): captures, `decode`, `replay` and the
//!   `bench` load generator (docs/PROTOCOL.md §10).

pub mod client;
pub mod core;
pub mod federation;
pub mod identity;
#[cfg(feature = "net")]
pub mod net;
pub mod sim;
pub mod store;
#[cfg(feature = "tools")]
pub mod tools;
pub mod wire;
