//! The tools around the server (feature `tools`, on by default): reading captures,
//! decoding them, replaying them to a server, and loading a server with many clients
//! (docs/PROTOCOL.md §10).
//!
//! They use the protocol's codecs ([`crate::wire`]) and the client's pieces, and never
//! touch the server's core: a tool talks to a server only over its sockets, like any
//! client.
//!
//! # Layout
//! - [`capture`]: pcap and pcapng files, link layers, TCP reassembly, and finding the
//!   protocol's ports in a capture (docs/PROTOCOL.md §10, `rendezvous decode`).
//! - [`decode`]: `rendezvous decode`, one line per packet or frame, as text or JSON.
//! - [`replay`]: `rendezvous replay`, a capture sent to a server again, with a summary of
//!   what came back.
//! - [`bench`](mod@bench): `rendezvous bench`, the load generator (keepalive, lookup, register and
//!   contacts workloads).

pub mod bench;
pub mod capture;
pub mod decode;
pub mod replay;
