//! `rendezvous`: a rendezvous server for decentralized messengers and peer-to-peer apps.
//!
//! Clients register their self-signed X.509 certificate over UDP; the server maps its
//! SHA-256 fingerprint to the client's public address (after NAT), clients keep the NAT
//! mapping open with keepalives, look each other up, punch holes and relay events. On TCP,
//! contacts are kept with Lamport clocks and servers federate. The protocol is in
//! `docs/PROTOCOL.md`.
//!
//! # Layout
//! Layers, each depending only on those above it:
//! - [`wire`]: every byte format, parsed as a zero-copy view and emitted, in one place; no
//!   I/O, nothing else of the crate. Named byte fixtures in [`wire::fixtures`].
//! - [`identity`]: certificates, fingerprints, signatures, keys.
//! - [`store`]: contacts, the Lamport clock, the journal and cursors behind the
//!   [`store::Store`] trait (SQLite, or RAM only); the requests the core makes of it and
//!   the one [`store::Executor`] that carries them out.
//! - [`federation`]: the node list as a value (SHA-512 hash, loop-free merge and sync).
//! - [`core`]: the I/O-free server. [`core::node::Node`] is one whole server: the UDP plane
//!   ([`core::udp::UdpCore`]) and the TCP plane ([`core::tcp::TcpCore`]) and the routing
//!   between them; fed time, bytes and store answers, it returns what to send.
//! - `net` (feature `net`, default): the mio event loop around a [`core::node::Node`], the
//!   only code that touches sockets and the clock; `net::mmsg` (recvmmsg/sendmmsg) holds
//!   the crate's only `unsafe` code.
//!
//! Beside them: [`sim`], an in-memory network of nodes on a virtual clock (seeded delays,
//! cuts and heals) for tests and simulations; [`client`], the blocking client library the
//! CLI and the tests use; `tools` (feature `tools`, default; needs `net`): captures,
//! `decode`, `replay` and the `bench` load generator (docs/PROTOCOL.md §10). The CLI lives
//! in `src/bin/rendezvous/`. README.md, "Architecture", follows one datagram and one TCP
//! command through the layers.

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
