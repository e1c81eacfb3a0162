pub mod client;
pub mod core;
pub mod identity;
#[cfg(feature = "net")]
pub mod net;
pub mod wire;
pub mod store;
