//! The I/O-free server core: the fingerprint -> address directory, relay queues, rate
//! limits and cookies, fed `(now, source, bytes)` and returning datagrams to send.
//! It never reads a clock or touches a socket (see `net` for the event loop).

pub mod config;
pub mod cookie;
mod directory;
pub mod limits;
pub mod node;
pub mod queue;
mod server;
pub mod tcp;

pub use config::Config;
pub use server::{
    status, ClientView, Now, Out, PeerOut, PeerRecordError, RemoteView, Server, Stats,
};
