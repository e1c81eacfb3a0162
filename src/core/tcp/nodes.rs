//! The node list (docs/PROTOCOL.md §8.15) and node-key proof (§8.17): answering node-list
//! frames 10-12 and reading the answers to ours, the challenge and proof on both sides,
//! and learning the servers to link to. The list's codec is `crate::wire::tcp::nodelist`.

use super::config::{canonical_ip, NodeSigner};
use super::conn::{status_bytes, Answer};
use super::links::{Link, LinkState, MAX_LINKS};
use super::{ConnId, TcpCore};
use crate::federation::nodelist::{self as list, NodeList};
use crate::store::Write;
use crate::wire::status;
use crate::wire::tcp;
use crate::wire::tcp::answer::{AnswerPiece, Asked};
use crate::wire::tcp::auth::{self, AuthProof};
use crate::wire::tcp::nodelist::{self, EntryId, NodeEntry, NodeListFrame, Uid, HASH_LEN};
use crate::wire::tcp::ServerCommand;
use crate::wire::WireError;
use std::net::{IpAddr, SocketAddr};

impl TcpCore {
    /// Adds the node list the store kept (its canonical bytes, [`crate::store::Store::
    /// node_list`]) at start, and links to the servers in it (unless `no_mesh`). Our own
    /// entry is the one configured, unless the stored list holds a greater one for our uid
    /// (ours from an earlier run: a restart within the second under another alias or
    /// location, or after the clock stepped back): then it starts just above that one
    /// (docs/PROTOCOL.md §8.15 "own entry"). Bytes that do not parse are ignored (logged).
    pub fn with_nodes(mut self, canonical: &[u8], now_ms: u64) -> Self {
        if canonical.is_empty() {
            return self;
        }
        let mut frame = Vec::with_capacity(1 + canonical.len());
        frame.push(tcp::CMD_NODE_LIST);
        frame.extend_from_slice(canonical);
        match NodeListFrame::parse(&frame) {
            Ok(NodeListFrame::List(entries)) => {
                self.start_above_stored(&entries);
                let own = self.own_uid();
                let entries: Vec<NodeEntry> = entries
                    .into_iter()
                    .filter(|e| Some(*e.uid()) != own)
                    .collect();
                let changed = self.nodes.merge(&entries);
                self.nodes_changed(now_ms, changed.len());
            }
            _ => tracing::warn!("the stored node list does not parse; starting without it"),
        }
        self
    }

    /// At start: when `stored` holds an entry for our uid greater than our configured one,
    /// our entry (configured and in the list) becomes ours with that version + 1 (saturating
    /// at `u64::MAX`; should ours still lose there, it is kept and the greater one ignored,
    /// as every entry for our uid that is not ours). Not bounded by
    /// [`list::REISSUE_REACH`]: only we write our uid's entries to our stored list.
    fn start_above_stored(&mut self, stored: &[NodeEntry]) {
        let Some(own) = self.cfg.identity.node.as_ref() else {
            return;
        };
        let Some(old) = stored.iter().filter(|e| e.uid() == own.uid()).max() else {
            return;
        };
        if old <= own {
            return;
        }
        let version = old.version().saturating_add(1);
        let Ok(again) = NodeEntry::new(
            *own.uid(),
            version,
            own.alias(),
            own.location(),
            own.public_key(),
        ) else {
            return;
        };
        if again > *old {
            tracing::info!(version, "our stored entry was greater: starting above it");
        } else {
            tracing::warn!("our stored entry is at the greatest version: ours may lose to it");
        }
        self.nodes.merge(std::slice::from_ref(&again));
        self.cfg.identity.node = Some(again);
    }

    /// Our entry as it stands: the one in our list (re-issued, §8.15 "own uid"), else the
    /// one we started with.
    fn own_entry(&self) -> Option<&NodeEntry> {
        let start = self.cfg.identity.node.as_ref()?;
        self.nodes.get(start.uid()).or(Some(start))
    }

    /// When `seen` (a peer's list or diff) holds an entry for our uid that beats ours, within
    /// reach: our entry re-issued just above it, in our list ([`list::reissue`],
    /// docs/PROTOCOL.md §8.15 "own uid"). Returns whether it was; the caller stores the list
    /// and spreads the new hash, as after any change.
    fn reissue_own(&mut self, seen: &[NodeEntry]) -> bool {
        let (Some(own), Some(start)) = (self.own_entry(), self.cfg.identity.node.as_ref()) else {
            return false;
        };
        let beaten = seen.iter().any(|e| e.supersedes(own));
        match list::reissue(own, start.version(), seen) {
            Some(again) => {
                let version = again.version();
                tracing::info!(
                    version,
                    "a peer holds an entry for our uid beating ours: re-issued ours above it"
                );
                self.nodes.merge(&[again]);
                true
            }
            None if beaten => {
                tracing::warn!("a peer holds an entry for our uid beating ours, out of re-issue reach; ignored");
                false
            }
            None => false,
        }
    }

    /// The node list as it stands (for status and tests).
    pub fn node_list(&self) -> &NodeList {
        &self.nodes
    }

    /// Our node's uid, if we have a node identity.
    fn own_uid(&self) -> Option<Uid> {
        self.cfg.identity.node.as_ref().map(|n| *n.uid())
    }

    /// The addresses of the servers in our node list other than us (their locations that
    /// parse as `IP:PORT`).
    fn node_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let own = self.own_uid();
        self.nodes
            .entries()
            .iter()
            .filter(move |e| Some(*e.uid()) != own)
            .filter_map(|e| e.location().parse::<SocketAddr>().ok())
    }

    /// True when `ip` is the address of a server in our node list (other than us): it may
    /// open a role-1 connection, but must prove the node key published there.
    pub(super) fn known_node_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.node_addrs().any(|a| canonical_ip(a.ip()) == ip)
    }

    /// Frames 10-12 from a peer: answer a hash with ours, a whole list with the diff.
    pub(super) fn node_list_command(&mut self, now_ms: u64, conn: ConnId, frame: &[u8]) {
        let cmd = frame[0];
        let parsed = match NodeListFrame::parse(frame) {
            Ok(f) => f,
            Err(WireError::BadLength) if cmd == tcp::CMD_NODE_LIST_HASH => {
                let detail = format!(
                    "node list hash must be {HASH_LEN} bytes, not {}",
                    frame.get(1).copied().unwrap_or(0)
                );
                return self.fail(conn, status::BAD_REQUEST, cmd, &detail);
            }
            Err(e) => {
                return self.fail(
                    conn,
                    status::BAD_REQUEST,
                    cmd,
                    &format!("malformed node list: {e}"),
                )
            }
        };
        match parsed {
            NodeListFrame::Hash(_) => {
                if let Ok(h) = self.nodes.hash_frame().to_vec() {
                    self.push_answer(conn, Answer::Ready(h));
                }
            }
            NodeListFrame::List(entries) => self.node_list_in(now_ms, conn, entries),
            NodeListFrame::Sync { entries, want } => {
                self.node_sync_in(now_ms, conn, entries, &want);
            }
            NodeListFrame::Diff(_) => {
                self.fail(
                    conn,
                    status::BAD_REQUEST,
                    cmd,
                    "a node list diff is only ever an answer",
                );
            }
        }
    }

    /// A peer's whole node list (11): merged, and answered with the diff (12).
    fn node_list_in(&mut self, now_ms: u64, conn: ConnId, entries: Vec<NodeEntry>) {
        if nodelist::has_duplicate_uids(&entries) {
            let detail = "node list with duplicate uids";
            return self.fail(conn, status::BAD_REQUEST, tcp::CMD_NODE_LIST, detail);
        }
        // Before the diff, so that it carries our re-issued entry (§8.15 "own uid").
        let (entries, merged) = self.merge_sent(entries);
        let diff = self.nodes.diff_for(&entries);
        self.answer_diff(conn, diff);
        self.list_changed(now_ms, merged.changed());
    }

    /// A peer's NodeSync (24), after its reconciliation of our lists: the entries we lacked,
    /// merged, and the ids it lacks, answered with a diff (12) of those entries as they
    /// stand, and of our entry when the sync made us re-issue it (§8.15 "own uid").
    fn node_sync_in(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        entries: Vec<NodeEntry>,
        want: &[EntryId],
    ) {
        if nodelist::has_duplicate_uids(&entries) {
            let detail = "node sync with duplicate uids";
            return self.fail(conn, status::BAD_REQUEST, tcp::CMD_NODE_SYNC, detail);
        }
        let (_, merged) = self.merge_sent(entries);
        let mut diff = self.nodes.with_ids(want);
        if let Some(own) = self.own_entry().filter(|_| merged.reissued).cloned() {
            if !diff.contains(&own) {
                diff.push(own);
            }
        }
        self.answer_diff(conn, diff);
        self.list_changed(now_ms, merged.changed());
    }

    /// Answers `conn` with the NodeListDiff (12) of `diff`.
    fn answer_diff(&mut self, conn: ConnId, diff: Vec<NodeEntry>) {
        if let Ok(d) = NodeListFrame::Diff(diff).to_vec() {
            self.push_answer(conn, Answer::Ready(d));
        }
    }

    /// Entries a peer sent (a list, sync or diff), merged: first our entry re-issued above
    /// one for our uid that beats it (§8.15 "own uid"), then the entries but those forged
    /// for our uid. Returns the entries merged and what changed; the caller stores the
    /// list and spreads its hash ([`Self::list_changed`]).
    fn merge_sent(&mut self, entries: Vec<NodeEntry>) -> (Vec<NodeEntry>, Merged) {
        let reissued = self.reissue_own(&entries);
        let entries = self.without_forged(entries);
        let learned = self.nodes.merge(&entries).len();
        self.stats.nodes_learned += learned as u64;
        (entries, Merged { reissued, learned })
    }

    /// On link `i` (connection `conn`): the peer's hash answering ours; when the lists
    /// differ, reconcile them, or send ours whole when it is short (docs/PROTOCOL.md §8.15:
    /// the NodeSync or NodeList that follows is answered with a diff).
    pub(super) fn peer_node_hash(&mut self, i: usize, conn: ConnId, hash: &[u8; HASH_LEN]) {
        if *hash == self.nodes.hash() {
            return;
        }
        self.reconcile_nodes(i, conn);
    }

    /// On a link: the peer's diff, merged (and our entry re-issued above one for our uid
    /// that beats it, §8.15 "own uid").
    pub(super) fn merge_nodes(&mut self, now_ms: u64, entries: Vec<NodeEntry>) {
        let (_, merged) = self.merge_sent(entries);
        self.list_changed(now_ms, merged.changed());
    }

    /// An entry for our own uid that is not ours as it stands: only we change our entry.
    fn is_own_uid_forged(&self, e: &NodeEntry) -> bool {
        self.own_entry()
            .is_some_and(|own| own.uid() == e.uid() && own != e)
    }

    /// `entries` without forged entries of our own uid.
    fn without_forged(&self, entries: Vec<NodeEntry>) -> Vec<NodeEntry> {
        entries
            .into_iter()
            .filter(|e| !self.is_own_uid_forged(e))
            .collect()
    }

    /// After `changed` entries of the node list changed: store it with the next batch (not
    /// a journal line: the hash exchange brings peers up to date), connect to servers newly
    /// learned (unless `--no-mesh`) and tell every live link our new hash, so the change
    /// spreads hop by hop.
    pub(super) fn nodes_changed(&mut self, now_ms: u64, changed: usize) {
        self.stats.nodes_learned += changed as u64;
        self.list_changed(now_ms, changed > 0);
    }

    /// [`Self::nodes_changed`] without the count: nothing unless `changed`.
    fn list_changed(&mut self, now_ms: u64, changed: bool) {
        if !changed {
            return;
        }
        self.batch
            .writes
            .push(Write::NodeList(self.nodes.canonical_bytes()));
        if !self.cfg.peering.no_mesh {
            self.link_to_learned(now_ms);
        }
        let Ok(h) = self.nodes.hash_frame().to_vec() else {
            return;
        };
        for l in &self.links {
            if let LinkState::Up { conn, .. } = l.state {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if !c.input.refused {
                        c.ask_node_hash(&h);
                    }
                }
            }
        }
    }

    /// Adds a link to each server of the node list not linked yet (at most 256 links).
    pub(super) fn link_to_learned(&mut self, now_ms: u64) {
        let wanted: Vec<SocketAddr> = self.node_addrs().collect();
        for addr in wanted {
            if let Some(i) = self.links.iter().position(|l| l.addr == addr) {
                // Retired by a reload, but the node list publishes it: a learned link.
                if self.links[i].retired {
                    self.links[i].learned = true;
                    self.revive_link(i, now_ms);
                }
                continue;
            }
            if self.links.len() >= MAX_LINKS {
                continue;
            }
            tracing::info!(%addr, "connecting to a server learned from the node list");
            self.links.push(Link::new(
                addr,
                now_ms,
                self.cfg.timers.backoff_min_ms,
                true,
            ));
        }
    }

    /// AuthChallenge (20), both roles: a fresh nonce, bound to this server and to the
    /// connection: our node uid (16 zero bytes without a node identity), then 16 bytes
    /// from the per-boot seed and a counter (docs/PROTOCOL.md §8.17, §8.18).
    pub(super) fn auth_challenge(&mut self, conn: ConnId) {
        self.life.nonces += 1;
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, self.cfg.identity.seed);
        sha2::Digest::update(&mut h, b"auth nonce");
        sha2::Digest::update(&mut h, self.life.nonces.to_be_bytes());
        let unique: [u8; 32] = sha2::Digest::finalize(h).into();
        let mut nonce = [0u8; 32];
        nonce[..16].copy_from_slice(&self.own_uid().unwrap_or_default());
        nonce[16..].copy_from_slice(&unique[..16]);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.auth.nonce = Some(nonce);
        }
        let mut b = Vec::new();
        let _ = AnswerPiece::Nonce(&nonce).append_to(&mut b); // fixed length: cannot fail
        self.push_answer(conn, Answer::Ready(b));
    }

    /// AuthProof (21): checks the opener's signature over our nonce with the key the node
    /// list publishes for its uid (or, for a server admitted by `--peer`/`--allow-peer`
    /// whose uid is new, the key it presents, learned on first contact); 200 and the
    /// entry merged, or 400 / 401 and close.
    pub(super) fn auth_proof(&mut self, now_ms: u64, conn: ConnId, body: &[u8]) {
        let cmd = tcp::CMD_AUTH_PROOF;
        let entry = match self.check_proof(conn, body) {
            Ok(entry) => entry,
            Err((status, detail)) => return self.fail(conn, status, cmd, detail),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.auth.proved = true;
            c.auth.uid = Some(*entry.uid());
            c.name = entry.alias().to_string();
        }
        let changed = self.nodes.merge(std::slice::from_ref(&entry));
        self.nodes_changed(now_ms, changed.len());
        let ok = status_bytes(status::OK, cmd, "node key proved");
        self.push_answer(conn, Answer::Ready(ok));
    }

    /// The proved entry of an AuthProof body, or the status and detail to refuse it with
    /// (docs/PROTOCOL.md §8.17, in the order checked). The nonce is used once.
    fn check_proof(&mut self, conn: ConnId, body: &[u8]) -> Result<NodeEntry, (u16, &'static str)> {
        let Some(nonce) = self.conns.get_mut(&conn).and_then(|c| c.auth.nonce.take()) else {
            return Err((
                status::BAD_REQUEST,
                "a proof needs a challenge first (command 20)",
            ));
        };
        let Ok(proof) = AuthProof::parse(body) else {
            return Err((
                status::BAD_REQUEST,
                "malformed proof: a node entry, then [sig_len u8][signature]",
            ));
        };
        let entry = &proof.entry;
        if Some(*entry.uid()) == self.own_uid() {
            return Err((status::UNAUTHORIZED, "that uid is ours"));
        }
        // Over TLS the proof must be made with the key the handshake proved (§8.18).
        if self.tls_key(conn).is_some_and(|k| k != entry.public_key()) {
            return Err((
                status::UNAUTHORIZED,
                "key does not match the TLS certificate",
            ));
        }
        let ip = self.conns.get(&conn).map(|c| c.addr.ip());
        match self.nodes.get(entry.uid()) {
            Some(k) if k.public_key() != entry.public_key() => {
                return Err((status::UNAUTHORIZED, "key does not match the node list"));
            }
            Some(_) => {}
            None if ip.is_some_and(|ip| self.cfg.peering.peer_allowed(ip)) => {}
            None => {
                return Err((
                    status::UNAUTHORIZED,
                    "unknown node: admit it with --allow-peer or --peer",
                ))
            }
        }
        let key =
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, entry.public_key());
        if key.verify(&proof.message(&nonce), proof.signature).is_err() {
            return Err((status::UNAUTHORIZED, "bad signature over the nonce"));
        }
        Ok(proof.entry)
    }

    /// On link `peer` (connection `conn`): the peer's nonce came; send our AuthProof (21),
    /// then the link's opening requests.
    pub(super) fn send_proof(
        &mut self,
        now_ms: u64,
        peer: usize,
        conn: ConnId,
        nonce: &[u8; tcp::NONCE_LEN],
    ) {
        let (Some(signer), Some(node)) =
            (self.cfg.identity.signer.clone(), self.own_entry().cloned())
        else {
            return;
        };
        let body = proof_body(&signer, &node, nonce);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.out.command(&ServerCommand::AuthProof(&body));
        c.expect(Asked::AuthProof, 0);
        self.link_start(now_ms, peer, conn);
    }
}

/// What merging a peer's entries did to our node list.
struct Merged {
    /// Our entry was re-issued above one for our uid that beat it.
    reissued: bool,
    /// Entries that changed (new, or a greater version).
    learned: usize,
}

impl Merged {
    /// True when our list changed.
    fn changed(&self) -> bool {
        self.reissued || self.learned > 0
    }
}

/// An AuthProof body: our entry and our signature over the proof message for `nonce`.
fn proof_body(signer: &NodeSigner, node: &NodeEntry, nonce: &[u8; tcp::NONCE_LEN]) -> Vec<u8> {
    let entry = node.to_bytes();
    let sig = (signer.0)(&auth::signed_message(nonce, &entry));
    let mut body = vec![0u8; auth::proof_body_len(node, sig.len())];
    let n = auth::emit_proof_body(node, &sig, &mut body).unwrap_or(0);
    body.truncate(n);
    body
}
