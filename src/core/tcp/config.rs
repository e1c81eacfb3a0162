//! The TCP plane's configuration: its tunables ([`TcpConfig`], grouped into identity,
//! peering, timers and bounds; docs/PROTOCOL.md §8.10 and §8.11 give the defaults), the
//! networks allowed to open server-role connections ([`Cidr`], `--allow-peer`) and the node
//! key's signer ([`NodeSigner`], §8.17). Plain data and pure checks: no state of the core.

use crate::wire::tcp::nodelist::NodeEntry;
use std::net::{IpAddr, SocketAddr};

/// An IP network (`--allow-peer CIDR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` (or a bare address: a /32 or /128).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (a, p) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{text:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0..={max}"))?
        };
        Ok(Cidr { addr, prefix })
    }

    /// True when `ip` (IPv4-mapped IPv6 counts as IPv4) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(i)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), self.prefix),
            _ => return false,
        };
        if bits == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - u32::from(bits));
        a & mask == b & mask
    }
}

/// Tunables of the TCP plane, one group per job. Times in milliseconds. `Default` gives
/// the values of docs/PROTOCOL.md §8.10 and §8.11.
#[derive(Debug, Clone, Default)]
pub struct TcpConfig {
    /// Who this server is: its name, node-list entry, node key and nonce seed.
    pub identity: TcpIdentity,
    /// The peers to dial and who may open server-role connections.
    pub peering: Peering,
    /// Hello timeout, heartbeats, reconnect backoff and stalls.
    pub timers: TcpTimers,
    /// Per-connection bounds and the Lamport clock's plausible jump.
    pub bounds: TcpBounds,
    /// `--open-contacts`: clients may read and write every contact without proving a key,
    /// as the design notes define the client role (docs/PROTOCOL.md §8.18). Off by
    /// default: a client proves its certificate key and reaches its own contacts only.
    pub open_contacts: bool,
}

/// Who a TCP core is (docs/PROTOCOL.md §8.2, §8.15, §8.17).
#[derive(Debug, Clone)]
pub struct TcpIdentity {
    /// This server's name, sent in its hellos (at most 256 bytes). Default `rendezvous`.
    pub name: String,
    /// This server's own node-list entry (uid, alias, location, public key), if it has a
    /// node identity; the node list starts with it (docs/PROTOCOL.md §8.15).
    pub node: Option<NodeEntry>,
    /// Signs with this server's node key (Ed25519), to prove it to peers (commands 20-21).
    pub signer: Option<NodeSigner>,
    /// 32 random bytes from the OS: the authentication nonces are derived from them.
    pub seed: [u8; 32],
}

impl Default for TcpIdentity {
    fn default() -> Self {
        TcpIdentity {
            name: "rendezvous".into(),
            node: None,
            signer: None,
            seed: [0; 32],
        }
    }
}

/// The servers this one federates with (docs/PROTOCOL.md §8.10, §8.12).
#[derive(Debug, Clone, Default)]
pub struct Peering {
    /// Peers to connect to (`--peer`); their addresses may also open role-1 connections.
    pub peers: Vec<SocketAddr>,
    /// Networks whose hosts may open role-1 (server) connections (`--allow-peer`).
    pub allow_peers: Vec<Cidr>,
    /// Keep to the configured peers: do not connect to servers learned from the node list.
    pub no_mesh: bool,
    /// Federation over TLS only (docs/PROTOCOL.md §8.19): links are dialled with TLS 1.3
    /// (the loop runs it, RFC 8446) and a server-role hello that did not come over TLS is
    /// refused with 403. Off in `Default`, for the in-memory simulation and the core's
    /// tests, which speak the clear-text framing; `rendezvous serve` turns it on unless
    /// `--plain-peers`.
    pub tls_links: bool,
    /// `--peer-key`: node keys (32-byte Ed25519 public keys) trusted from the start. When
    /// any is given, no key is trusted on first use (docs/PROTOCOL.md §8.19): a server
    /// opener over TLS must prove a pinned key or one the node list publishes, and a link
    /// accepts only such a key at the address it dialled.
    pub pinned_keys: Vec<Vec<u8>>,
}

/// The TCP plane's timers, milliseconds (docs/PROTOCOL.md §8.2, §8.10, §8.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTimers {
    /// A connection without a complete hello this long after accept is closed with 408
    /// (default 10 000).
    pub hello_timeout_ms: u64,
    /// Heartbeat interval on links to peers (default 5 000).
    pub heartbeat_ms: u64,
    /// Reconnect backoff after a failed or lost link: starts here, doubles... (default
    /// 250)
    pub backoff_min_ms: u64,
    /// ... up to here (default 5 000, one heartbeat interval: a healed partition is
    /// crossed within about two intervals, docs/PROTOCOL.md §8.10).
    pub backoff_max_ms: u64,
    /// A connection whose pending output made no progress for this long is dropped
    /// (default 120 000).
    pub stall_ms: u64,
    /// Each live link reconciles with its peer this long after it came up or last did
    /// (anti-entropy, docs/PROTOCOL.md §8.20; default 120 000; 0: never).
    pub anti_entropy_ms: u64,
}

impl Default for TcpTimers {
    fn default() -> Self {
        TcpTimers {
            hello_timeout_ms: 10_000,
            heartbeat_ms: 5_000,
            backoff_min_ms: 250,
            backoff_max_ms: 5_000,
            stall_ms: 120_000,
            anti_entropy_ms: 120_000,
        }
    }
}

/// Bounds of the TCP plane (docs/PROTOCOL.md §8.9, §8.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpBounds {
    /// Bytes of unsent output per connection; a connection over it is dropped (except a
    /// streamed answer, which waits for the reader). Default 1 MiB.
    pub max_out: usize,
    /// Contacts per store page when streaming ListAll / AskForUpdate (default 2048).
    pub page: usize,
    /// Answers waiting per connection before the core stops reading its requests
    /// (default 64).
    pub max_pending: usize,
    /// A received clock more than this far ahead of ours is refused (409), except by a
    /// fresh server (clock 0), which accepts up to 2^31 to catch up with an older mesh
    /// (default 2^24).
    pub max_clock_jump: u32,
    /// Connections accepted from one IPv4 address or one IPv6 /64 at once; the next gets
    /// 503 and is closed (default 64; loopback is exempt; docs/PROTOCOL.md §8.11).
    pub max_conns_per_prefix: usize,
    /// Streamed answers (ListAll, AskForUpdate, a link's full push) reading from store
    /// snapshots at once, all connections together; a ListAll or AskForUpdate beyond it
    /// waits, unparsed, for a free slot (default 128; docs/PROTOCOL.md §8.11).
    pub max_streams: usize,
    /// Contact writes parsed and not yet applied by the store, all connections together
    /// (default 131 072): at this many, the batch is sent and parsing waits for the store,
    /// so a bulk load holds at most this many contacts in memory; a batch is sent once it
    /// holds half of it, so one batch is applied while the next is parsed
    /// (docs/PROTOCOL.md §8.8, §8.11).
    pub max_held_writes: usize,
    /// Connections accepted at once, all addresses together (default 4096; the loop sets
    /// it from the open-files limit). Past it, the longest-idle client connection of the
    /// address prefix that holds the most is closed with 503 to make room, unless the
    /// newcomer's prefix holds as many: then the newcomer gets 503 (docs/PROTOCOL.md
    /// §8.11).
    pub max_conns: usize,
}

impl Default for TcpBounds {
    fn default() -> Self {
        TcpBounds {
            max_out: 1 << 20,
            page: 2048,
            max_pending: 64,
            max_clock_jump: 1 << 24,
            max_conns_per_prefix: 64,
            max_streams: 128,
            max_held_writes: 131_072,
            max_conns: 4096,
        }
    }
}

/// A signing function: `message -> signature` (64 bytes for Ed25519).
pub type SignFn = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

/// Signs a message with the node key: `sign(message) -> 64-byte Ed25519 signature`.
#[derive(Clone)]
pub struct NodeSigner(pub std::sync::Arc<SignFn>);

impl std::fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeSigner")
    }
}

impl Peering {
    /// True when `ip` may open a server-role connection by the operator's trust: the IP of a
    /// `--peer` (any port) or inside an `--allow-peer` network (docs/PROTOCOL.md §8.2,
    /// §8.12). IPv4-mapped IPv6 counts as IPv4.
    pub fn peer_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.peers.iter().any(|p| canonical_ip(p.ip()) == ip)
            || self.allow_peers.iter().any(|n| n.contains(ip))
    }
}

/// `ip` with an IPv4-mapped IPv6 address turned into the IPv4 address it maps.
/// The key connections are counted under for [`TcpBounds::max_conns_per_prefix`]: an IPv4
/// address, or an IPv6 address cut to its /64 (IPv4-mapped addresses count as IPv4).
pub(super) fn conn_prefix(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

pub(super) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
