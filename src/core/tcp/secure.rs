//! TLS on the TCP plane as the core sees it (docs/PROTOCOL.md §8.19). The loop runs TLS
//! 1.3 (RFC 8446) and, once a handshake is done, reports the raw public key of the
//! certificate the peer proved in it (its CertificateVerify); this part decides what that
//! key is worth:
//!
//! - on a connection we accepted, a server-role opener whose key is in our node list is
//!   that server, authenticated (no node-key proof needed); any other key is admitted by
//!   address as in clear text (a `--peer`'s IP or an `--allow-peer` network: trust on first
//!   use, its key learned from its proof, which must be made with the TLS key);
//! - with `tls_links` (every `serve` without `--plain-peers`), a server-role hello that
//!   did not come over TLS is refused with 403;
//! - on a link we opened, the acceptor's key must be one the node list publishes for a
//!   server located at the address we dialled, when it knows one there; else the key is
//!   taken on first use. A mismatch closes the connection before we send a byte, and the
//!   link is redialled after its backoff;
//! - with `--peer-key`s (pinned keys), nothing is taken on first use: only a pinned key or
//!   one the node list publishes is admitted, on links and from openers.

use super::config::canonical_ip;
use super::conn::Transport;
use super::{ConnId, TcpAction, TcpCore};
use crate::wire::tcp::nodelist::NodeEntry;
use std::net::SocketAddr;

impl TcpCore {
    /// The TLS handshake on accepted connection `conn` is done; the opener's certificate
    /// carries `peer_key` (its raw public key: 32 bytes for Ed25519), or it presented none
    /// (a client). The loop reports it before any byte of the connection
    /// (docs/PROTOCOL.md §8.19).
    pub fn handle_secured(&mut self, _now_ms: u64, conn: ConnId, peer_key: Option<Vec<u8>>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.auth.transport = Transport::Tls { key: peer_key };
        }
    }

    /// The TLS connection to link `peer` is established as `conn`, its handshake done; the
    /// acceptor's certificate carries `peer_key` (its raw public key). When the node list
    /// locates a server at the link's address, the key must be one it publishes there
    /// (else the connection is closed before anything is sent, and the link redialled
    /// after its backoff); otherwise it is taken on first use. Then the link opens as
    /// [`Self::handle_connected`] does (docs/PROTOCOL.md §8.10, §8.19).
    pub fn handle_connected_tls(
        &mut self,
        now_ms: u64,
        peer: usize,
        conn: ConnId,
        peer_key: &[u8],
    ) {
        let Some(addr) = self.links.get(peer).map(|l| l.addr) else {
            self.out.actions.push_back(TcpAction::Close(conn));
            return;
        };
        if !self.link_key_ok(addr, peer_key) {
            tracing::warn!(
                %addr,
                "the server at a link's address presents a key the node list does not \
                 publish for it (a man in the middle?); link refused"
            );
            self.out.actions.push_back(TcpAction::Close(conn));
            self.note_link_closing(peer, "its key is not the one published for its address");
            self.link_down(now_ms, peer);
            return;
        }
        self.handle_connected(now_ms, peer, conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.auth.transport = Transport::Tls {
                key: Some(peer_key.to_vec()),
            };
        }
    }

    /// True when `key` may answer at link address `addr`: one of the servers the node list
    /// locates there has it, or it is pinned (`--peer-key`); without pinned keys, also any
    /// key when the node list locates no server there other than us (trust on first use).
    fn link_key_ok(&self, addr: SocketAddr, key: &[u8]) -> bool {
        if self.key_pinned(key) {
            return true;
        }
        let mut located = self.located_keys(addr).peekable();
        let first_use = located.peek().is_none() && !self.strict_peers();
        first_use || located.any(|k| k == key)
    }

    /// True when `--peer-key`s are given: no key is trusted on first use.
    pub(super) fn strict_peers(&self) -> bool {
        !self.cfg.peering.pinned_keys.is_empty()
    }

    /// True when `key` is one of the `--peer-key`s.
    fn key_pinned(&self, key: &[u8]) -> bool {
        self.cfg.peering.pinned_keys.iter().any(|k| k == key)
    }

    /// Why a server-role hello on `conn` is refused for its transport (403), if it is:
    /// with `tls_links`, one that did not come over TLS, or over TLS without a certificate.
    pub(super) fn transport_refusal(&self, conn: ConnId) -> Option<&'static str> {
        let c = self.conns.get(&conn)?;
        if !self.cfg.peering.tls_links {
            return None;
        }
        match c.auth.transport {
            Transport::Plain => Some(
                "server role needs TLS (docs/PROTOCOL.md 8.19); clear text only between \
                 servers started with --plain-peers",
            ),
            Transport::Tls { key: None } => {
                Some("server role over TLS needs the node's certificate (docs/PROTOCOL.md 8.19)")
            }
            Transport::Tls { key: Some(_) } => None,
        }
    }

    /// The servers other than us that the node list locates at `addr`.
    fn located(&self, addr: SocketAddr) -> impl Iterator<Item = &NodeEntry> + '_ {
        let own = self.cfg.identity.node.as_ref().map(|n| *n.uid());
        let same = move |l: SocketAddr| {
            canonical_ip(l.ip()) == canonical_ip(addr.ip()) && l.port() == addr.port()
        };
        self.nodes
            .entries()
            .iter()
            .filter(move |e| Some(*e.uid()) != own)
            .filter(move |e| e.location().parse::<SocketAddr>().is_ok_and(same))
    }

    /// The keys of the servers other than us that the node list locates at `addr`.
    fn located_keys(&self, addr: SocketAddr) -> impl Iterator<Item = &[u8]> + '_ {
        self.located(addr).map(|e| e.public_key())
    }

    /// The alias of the server the node list locates at `addr`, for log lines; `None`
    /// when it locates none there (yet), or one without an alias.
    pub(super) fn located_alias(&self, addr: SocketAddr) -> Option<&str> {
        self.located(addr)
            .next()
            .map(|e| e.alias())
            .filter(|a| !a.is_empty())
    }

    /// True when the TLS peer on `conn` proved a key our node list publishes for a server
    /// other than us, or a pinned one (`--peer-key`): it is that server, authenticated by
    /// its handshake.
    pub(super) fn tls_key_known(&self, conn: ConnId) -> bool {
        let Some(key) = self.conns.get(&conn).and_then(|c| c.auth.transport.key()) else {
            return false;
        };
        let own = self.cfg.identity.node.as_ref().map(|n| *n.uid());
        self.key_pinned(key)
            || self
                .nodes
                .entries()
                .iter()
                .any(|e| Some(*e.uid()) != own && e.public_key() == key)
    }

    /// The key the TLS peer on `conn` proved, if it came over TLS with a certificate.
    pub(super) fn tls_key(&self, conn: ConnId) -> Option<&[u8]> {
        self.conns.get(&conn).and_then(|c| c.auth.transport.key())
    }
}
