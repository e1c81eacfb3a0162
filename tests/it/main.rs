//! The integration tests, linked into one binary so that a test run links once (the
//! counting-allocator test, `tests/alloc.rs`, needs its own global allocator and stays a
//! binary of its own). Each module is one group, in layers:
//!
//! - byte formats: `wire_props`, `tcp_wire` (fixtures written by hand, round trips,
//!   arbitrary input);
//! - the I/O-free core on a virtual clock: `core_scenarios`, `core_batch` (batches against
//!   one datagram at a time), `tcp_core`, `directory`,
//!   `nodelist`, `nodelist_props` (the exchange between many servers, random topologies
//!   and interleavings), `journal`, `store`; `unlisted` (there and on the real binary);
//! - whole servers on the in-memory network (`rendezvous::sim`): `sim` (the
//!   five-servers-in-a-line and partition-and-heal scenarios, default names, slow links);
//! - identities: `ca_bundle`, `openssl_identity`;
//! - TLS on the TCP plane, the core's decisions and the binary: `tls`;
//! - STUN on the UDP port, the core and the real binary against the distribution's STUN
//!   clients: `stun`;
//! - the real binary on loopback: `cli` (exit statuses, values refused as parsed),
//!   `client_cli` (rough edges of the client commands), `udp_binary`, `tcp_binary`,
//!   `contacts_auth`, `federation`,
//!   `rejoin`, `metrics` (`serve --metrics` scraped, and checked with promtool),
//!   `capture`, `decode_stream` (decode of a pipe as it is written), `replay`,
//!   `dissector`, `bench`, `crash` (SIGKILL at random moments; `RDV_CRASH_RUNS` sets how
//!   many);
//! - real NATs and partitions in network namespaces (root; under `CI=true` they fail rather
//!   than skip): `nat`, `partition`, `flood` (floods of datagrams from many sources and of
//!   idle TCP connections, honest clients counted).
//!
//! `common` has the helpers: child processes read with deadlines, the server binary on a
//! free port, and network namespaces.
//!
//! Reading what the server sends goes through the crate's codecs (`rendezvous::wire`),
//! except where a test is an independent oracle of the bytes: `tcp_core`, `tcp_binary`,
//! `directory`, `partition` and `crash` write and read some frames by hand from
//! docs/PROTOCOL.md on purpose, so that a codec bug cannot hide behind itself.

// Scenario tests read top to bottom; the 100-line limit on functions is for src/.
#![allow(clippy::too_many_lines)]

mod common;

mod bench;
mod ca_bundle;
mod capture;
mod cli;
mod client_cli;
mod config;
mod contacts_auth;
mod core_batch;
mod core_scenarios;
mod crash;
mod decode_stream;
mod directory;
mod dissector;
mod federation;
mod flood;
mod fuzz_smoke;
mod journal;
mod logs;
mod metrics;
mod nat;
mod nodelist;
mod nodelist_props;
mod nodelist_sync;
mod openssl_identity;
mod partition;
mod reconcile;
mod rejoin;
mod reload;
mod replay;
mod service;
mod signals;
mod sim;
mod store;
mod stun;
mod tcp_binary;
mod tcp_core;
mod tcp_wire;
mod tls;
mod udp_binary;
mod unlisted;
mod wire_props;
mod workers;
