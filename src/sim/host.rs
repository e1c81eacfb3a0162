//! One simulated server: a [`Node`] built as `rendezvous serve --memory-only` builds it, a
//! RAM store whose requests are carried out in line (durable at once), and the host's
//! connection ids. Every random choice (node key, boot seed) comes from the network's seed.

use super::{host_addr, HostId};
use crate::core::node::{node_uid, Node, Stored};
use crate::core::tcp::{Cidr, NodeSigner, Peering, TcpConfig, TcpCore, TcpIdentity};
use crate::core::udp::{UdpConfig, UdpCore, UdpIdentity};
use crate::core::Now;
use crate::store::{Executor, MemoryStore, StoreEvent, StoreRequest};
use crate::wire::tcp::nodelist::NodeEntry;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// How a host is started: the flags of `rendezvous serve` the network cares about. The
/// default is a server started with no flags at all (default alias, no peers).
#[derive(Clone, Default)]
pub struct HostSpec {
    /// `--alias`; `None` for a server started without one (the default name).
    pub alias: Option<String>,
    /// `--peer`: the hosts this one dials (and admits as servers).
    pub peers: Vec<HostId>,
    /// `--allow-peer`: networks whose hosts may open server connections.
    pub allow_peers: Vec<Cidr>,
    /// `--no-mesh`: keep to `peers`, dial no server learned from the node list.
    pub no_mesh: bool,
    /// The UDP plane's tunables; its identity (alias, node uid) is set by the host.
    pub udp: UdpConfig,
    /// The TCP plane's tunables; its identity (name, node entry, signer, seed) and peering
    /// are set by the host.
    pub tcp: TcpConfig,
    /// Journal lines the store keeps (`None`: the default, 1,000,000).
    pub journal_keep: Option<u64>,
    /// Contacts the store holds at start, as a server restarted on a data directory that
    /// holds them (each gets a line of the host's journal; the clock starts at the
    /// highest). Shared, not copied, between the hosts given the same list.
    pub preload: Arc<Vec<crate::store::Contact>>,
    /// Node-list entries the store holds at start, as a server restarted on a data
    /// directory that knew those servers (their locations are not dialled unless a host
    /// listens there and the mesh is on).
    pub nodes: Vec<NodeEntry>,
}

impl HostSpec {
    /// A default server that dials `peers`.
    pub fn peered(peers: &[HostId]) -> Self {
        HostSpec {
            peers: peers.to_vec(),
            ..HostSpec::default()
        }
    }
}

/// Bounded rounds of store work in one turn.
const STORE_ROUNDS: usize = 64;

pub(crate) struct Host {
    pub(crate) node: Node,
    pub(crate) addr: SocketAddr,
    store: Executor,
    next_conn: u64,
}

fn derive(seed: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(label);
    h.finalize().into()
}

/// Writes `contacts` into `store` in batches, with the clock at the highest of theirs.
fn preload(store: &mut Executor, contacts: &[crate::store::Contact]) {
    use crate::store::Write;
    for chunk in contacts.chunks(65_536) {
        let mut batch: Vec<Write> = chunk.iter().cloned().map(Write::Merge).collect();
        if let Some(max) = chunk.iter().map(|c| c.clock).max() {
            batch.push(Write::Clock(max));
        }
        let mut changed = Vec::new();
        store
            .store_mut()
            .apply(&batch, &mut changed)
            .expect("a RAM store applies");
    }
}

/// Writes `entries` into `store` as its node list.
fn preload_nodes(store: &mut Executor, entries: &[NodeEntry]) {
    if entries.is_empty() {
        return;
    }
    let list = crate::federation::NodeList::from_entries(entries.to_vec());
    let batch = [crate::store::Write::NodeList(list.canonical_bytes())];
    store
        .store_mut()
        .apply(&batch, &mut Vec::new())
        .expect("a RAM store applies");
}

impl Host {
    /// Starts a host at `addr` as `spec` says, its randomness drawn from `seed`.
    pub(crate) fn start(spec: HostSpec, addr: SocketAddr, seed: [u8; 32], now: Now) -> Host {
        let alias = spec
            .alias
            .clone()
            .unwrap_or_else(|| UdpIdentity::default().alias);
        let key = Ed25519KeyPair::from_seed_unchecked(&derive(&seed, b"node key"))
            .expect("a 32-byte seed is a valid Ed25519 seed");
        let public = key.public_key().as_ref().to_vec();
        let uid = node_uid(&public);
        let entry = NodeEntry::new(uid, now.unix_s, alias.as_str(), addr.to_string(), public)
            .expect("a sim host's entry fits");
        let key = Arc::new(key);
        let tcp_cfg = TcpConfig {
            identity: TcpIdentity {
                name: alias.clone(),
                node: Some(entry),
                signer: Some(NodeSigner(Arc::new(move |m: &[u8]| {
                    key.sign(m).as_ref().to_vec()
                }))),
                seed: derive(&seed, b"tcp nonces"),
            },
            peering: Peering {
                peers: spec.peers.iter().map(|&p| host_addr(p)).collect(),
                allow_peers: spec.allow_peers.clone(),
                no_mesh: spec.no_mesh,
                tls_links: false,
                pinned_keys: Vec::new(),
            },
            ..spec.tcp
        };
        let udp_cfg = UdpConfig {
            identity: UdpIdentity {
                alias,
                node_uid: Some(uid),
            },
            ..spec.udp
        };
        let mut store = Executor::new(Box::new(match spec.journal_keep {
            Some(keep) => MemoryStore::with_keep(keep),
            None => MemoryStore::new(),
        }));
        preload(&mut store, &spec.preload);
        preload_nodes(&mut store, &spec.nodes);
        let stored = Stored::read(store.store()).expect("a RAM store reads");
        let udp = UdpCore::new(udp_cfg, derive(&seed, b"udp"), now);
        let tcp = TcpCore::new(tcp_cfg, stored.clock, now.mono_ms)
            .with_journal(stored.journal_id, stored.journal_head)
            .with_nodes(&stored.node_list, now.mono_ms);
        Host {
            node: Node::new(udp, tcp),
            addr,
            store,
            next_conn: 1,
        }
    }

    /// A new connection id on this host.
    pub(crate) fn new_conn(&mut self) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// Ends a turn: routing, then the store's work carried out in line until the node asks
    /// for nothing more. Returns whether anything was done, and the datagrams sent.
    pub(crate) fn turn(&mut self, now: Now) -> (bool, Vec<(SocketAddr, Vec<u8>)>) {
        let mut datagrams = Vec::new();
        let mut worked = false;
        for _ in 0..STORE_ROUNDS {
            self.node
                .end_turn(now, &mut |dst, b| datagrams.push((dst, b.to_vec())));
            let mut asked = false;
            while let Some(req) = self.node.poll_store() {
                asked = true;
                if let Some(ev) = self.store.execute(req) {
                    self.node.handle_store(now, ev);
                }
            }
            if !asked {
                break;
            }
            worked = true;
        }
        worked |= !datagrams.is_empty();
        (worked, datagrams)
    }

    /// Every stored contact, in key order.
    pub(crate) fn contacts(&mut self) -> Vec<crate::store::Contact> {
        let mut all = Vec::new();
        if let Ok(mut snap) = self.store.store().snapshot() {
            while let Ok(true) = snap.next_page(4096, &mut all) {}
        }
        all
    }

    /// The contacts' count and SHA-512 digest, read from the store as `status` reads them.
    pub(crate) fn contacts_digest(&mut self) -> (u64, Vec<u8>) {
        match self.store.execute(StoreRequest::Digest { tag: 0 }) {
            Some(StoreEvent::Digest { count, sha512, .. }) => (count, sha512),
            _ => (0, Vec::new()),
        }
    }
}
