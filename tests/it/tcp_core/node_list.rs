//! The node list (docs/PROTOCOL.md §8.15, seeds 000 and 004): convergence along a line
//! and the mesh of learned servers, proving a node key (§8.17), bad node-list input, the
//! list kept in the store, and a stale entry for our own uid outbid.

use super::*;

use rendezvous::core::tcp::NodeSigner;
use rendezvous::federation::nodelist::NodeList;
use rendezvous::wire::tcp::nodelist::NodeEntry;
use ring::signature::KeyPair;

/// A node identity for tests: an Ed25519 key, and node `i`'s entry (location
/// [`node_addr`]`(i)`, uid `[i + 1; 16]`).
fn identity(i: usize) -> (NodeEntry, NodeSigner) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let entry = NodeEntry::new(
        [i as u8 + 1; 16],
        1,
        format!("node{i}"),
        node_addr(i).to_string(),
        key.public_key().as_ref().to_vec(),
    )
    .unwrap();
    let signer = NodeSigner(std::sync::Arc::new(move |m: &[u8]| {
        key.sign(m).as_ref().to_vec()
    }));
    (entry, signer)
}

/// A mesh of `n` nodes with identities, `links` as [`Mesh::new`], `no_mesh` for all.
fn identified_mesh(n: usize, links: &[(usize, usize)], no_mesh: bool) -> Mesh {
    let mut m = Mesh::new(n, links);
    for i in 0..n {
        let (entry, signer) = identity(i);
        m.set_node(i, 0, |c| {
            c.identity.node = Some(entry);
            c.identity.signer = Some(signer);
            c.peering.no_mesh = no_mesh;
            c.identity.seed = [i as u8; 32];
        });
    }
    m
}

#[test]
fn node_lists_converge_along_a_line_and_learned_servers_are_meshed() {
    // 0 <-> 1 <-> 2: node 0 and node 2 learn of each other through node 1.
    let mut m = identified_mesh(3, &[(0, 1), (1, 0), (1, 2), (2, 1)], false);
    m.run_until(20_000);
    let hashes: Vec<_> = m.nodes.iter().map(|n| n.core.node_list().hash()).collect();
    assert_eq!(m.nodes[0].core.node_list().len(), 3);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "node lists differ");
    // Node 0 connected to node 2 (and back), proving its node key there: node 2 admits
    // node 0's address only because the node list knows it.
    let learned: Vec<_> = m.pipes.iter().map(|p| (p.opener.0, p.acceptor.0)).collect();
    assert!(learned.contains(&(0, 2)), "{learned:?}");
    assert!(learned.contains(&(2, 0)), "{learned:?}");
    assert_eq!(m.nodes[2].core.stats().errors, 0);
    assert!(m.nodes[0].core.link_up(1), "the learned link is up");
}

#[test]
fn no_mesh_keeps_to_configured_peers_but_node_lists_still_converge() {
    let mut m = identified_mesh(3, &[(0, 1), (1, 0), (1, 2), (2, 1)], true);
    m.run_until(20_000);
    let hashes: Vec<_> = m.nodes.iter().map(|n| n.core.node_list().hash()).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "node lists differ");
    assert_eq!(m.nodes[0].core.node_list().len(), 3);
    assert!(m
        .pipes
        .iter()
        .all(|p| p.opener.0.abs_diff(p.acceptor.0) == 1));
}

/// A connection from `from` to node 1 of a 2-node identified mesh (node 1 knows node 0
/// through the node list), hello sent.
fn known_node_conn(m: &mut Mesh, from: &str) -> ConnId {
    let c = m.conn_id();
    m.nodes[1].accept(c, from);
    m.nodes[1].send(c, &hello(1, "stranger"));
    c
}

/// `[21][len][entry][sig_len][sig]` over `nonce` with `sign`.
fn proof(entry: &NodeEntry, nonce: &[u8], sign: &NodeSigner) -> Vec<u8> {
    let e = entry.to_bytes();
    let mut msg = b"rendezvous node auth v1".to_vec();
    msg.extend(nonce);
    msg.extend(&e);
    let sig = (sign.0)(&msg);
    let mut body = e;
    body.push(sig.len() as u8);
    body.extend(sig);
    let mut v = vec![21];
    v.extend((body.len() as u16).to_be_bytes());
    v.extend(body);
    v
}

#[test]
fn a_server_known_only_from_the_node_list_must_prove_its_node_key() {
    let mut m = identified_mesh(2, &[], true);
    let entry0 = m.nodes[0].config.identity.node.clone().unwrap();
    // A fresh node 1 that trusts only 198.51.100.0/24 by configuration learns of node 0
    // from a peer there.
    m.set_node(1, 0, |c| {
        c.peering.peers.clear();
        c.peering.allow_peers = vec![Cidr::parse("198.51.100.0/24").unwrap()];
    });
    let t = m.conn_id();
    m.nodes[1].accept(t, PEER);
    m.nodes[1].send(t, &hello(1, "teacher"));
    m.nodes[1].send(
        t,
        &NodeList::from_entries(vec![entry0.clone()])
            .list_frame()
            .to_vec()
            .unwrap(),
    );
    assert_eq!(m.nodes[1].read(t)[0], 12, "a diff answers the list");
    assert!(m.nodes[1].core.node_list().get(entry0.uid()).is_some());

    // A command before the proof: 401, closed.
    let c = known_node_conn(&mut m, "192.0.2.1:50000");
    m.nodes[1].send(c, &[ASK_FOR_UPDATE]);
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (401, ASK_FOR_UPDATE));
    // The start of a node list (up to 3.2 MB) before the proof: 401 at its first bytes,
    // nothing buffered (it once held the partial frame, 3.1 MB per connection).
    let c = known_node_conn(&mut m, "192.0.2.1:50004");
    assert_eq!(
        m.nodes[1].core.read_budget(c),
        64 * 1024,
        "no node-list budget"
    );
    m.nodes[1].send(c, &[11, 0, 0, 0x0f, 0xff]);
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (401, 11));
    assert_eq!(
        m.nodes[1].core.read_budget(c),
        0,
        "refused: nothing more is read"
    );

    // A proof signed by another key: 401.
    let c = known_node_conn(&mut m, "192.0.2.1:50001");
    m.nodes[1].send(c, &[20]);
    let nonce = m.nodes[1].read(c);
    assert_eq!((nonce[0], nonce.len()), (20, 33));
    let (_, other) = identity(0);
    m.nodes[1].send(c, &proof(&entry0, &nonce[1..], &other));
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (401, 21), "{}", st.detail);

    // The right key: 200, then the connection works.
    let signer0 = m.nodes[0].config.identity.signer.clone().unwrap();
    let c = known_node_conn(&mut m, "192.0.2.1:50002");
    m.nodes[1].send(c, &[20]);
    let nonce = m.nodes[1].read(c);
    m.nodes[1].send(c, &proof(&entry0, &nonce[1..], &signer0));
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (200, 21), "{}", st.detail);
    m.nodes[1].send(c, &[BARRIER]);
    assert_eq!(m.nodes[1].read(c), BARRIER_OK);

    // A replayed proof (the nonce is spent): 400.
    m.nodes[1].send(c, &proof(&entry0, &nonce[1..], &signer0));
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!(st.status, 400);

    // An address neither configured nor in the node list: 403 at the hello.
    let c = known_node_conn(&mut m, "192.0.2.77:50003");
    let st = status_frame(&m.nodes[1].read(c));
    assert_eq!((st.status, st.request), (403, 0));
}

#[test]
fn bad_node_list_input_is_400_and_changes_nothing() {
    let (entry, _) = identity(5);
    for (what, frame) in [
        ("hash of 63 bytes", [vec![10, 63], vec![1; 63]].concat()),
        ("hash of 65 bytes", [vec![10, 65], vec![1; 65]].concat()),
        ("hash of 0 bytes", vec![10, 0]),
        ("duplicate uids", {
            let mut e2 = entry.to_bytes();
            e2[16..24].copy_from_slice(&2u64.to_be_bytes()); // same uid, version 2
            [vec![11, 0, 0, 0, 2], entry.to_bytes(), e2].concat()
        }),
        (
            "an unsolicited diff",
            [vec![12, 0, 0, 0, 1], entry.to_bytes()].concat(),
        ),
    ] {
        let mut n = with_peer_conn(0, 1);
        let before = n.core.node_list().hash();
        n.send(1, &frame);
        let st = status_frame(&n.read(1));
        assert_eq!(
            (st.status, st.request),
            (400, frame[0]),
            "{what}: {}",
            st.detail
        );
        assert_eq!(n.core.node_list().hash(), before, "{what}");
        assert_eq!(n.core.node_list().len(), 0, "{what}");
    }
}

#[test]
fn the_node_list_is_kept_in_the_store_and_read_back_at_start() {
    // Node 0 learns node 1 from a peer; the list goes to the store with that batch.
    let (e0, s0) = identity(0);
    let (e1, _) = identity(1);
    let cfg = TcpConfig {
        identity: TcpIdentity {
            node: Some(e0.clone()),
            signer: Some(s0),
            ..TcpIdentity::default()
        },
        peering: Peering {
            allow_peers: vec![Cidr::parse("198.51.100.0/24").unwrap()],
            ..Peering::default()
        },
        ..open()
    };
    let mut n = Node::new(cfg.clone(), 0);
    n.accept(1, PEER);
    n.send(1, &hello(1, "peer"));
    n.send(
        1,
        &NodeList::from_entries(vec![e1.clone()])
            .list_frame()
            .to_vec()
            .unwrap(),
    );
    n.read(1);
    let stored = n.store().node_list().unwrap();
    let want = NodeList::from_entries(vec![e0.clone(), e1.clone()]);
    assert_eq!(stored, want.canonical_bytes());

    // A restart reads it back: the list is whole at once, and node 1 is linked to. An
    // older entry of our own uid in the stored bytes is replaced by the configured one.
    let mut newer = cfg.clone();
    let e0v2 = NodeEntry::new(
        *e0.uid(),
        2,
        "node0",
        e0.location(),
        e0.public_key().to_vec(),
    )
    .unwrap();
    newer.identity.node = Some(e0v2.clone());
    let mut fresh = TcpCore::new(newer, 0, 0).with_nodes(&stored, 0);
    assert_eq!(
        fresh.node_list(),
        &NodeList::from_entries(vec![e0v2, e1.clone()])
    );
    fresh.handle_timeout(0);
    let mut connects = Vec::new();
    while let Some(a) = fresh.poll_action() {
        if let TcpAction::Connect { addr, .. } = a {
            connects.push(addr);
        }
    }
    assert_eq!(connects, [node_addr(1)]);
    // Bytes that are no node list are ignored.
    let junk = TcpCore::new(cfg, 0, 0).with_nodes(&[0, 0, 0, 9, 1], 0);
    assert_eq!(junk.node_list().len(), 1);
}

/// Node `i` of `m` lets a peer at [`PEER`] in, which sends it `entries` as its node list.
fn teach(m: &mut Mesh, i: usize, entries: Vec<NodeEntry>) {
    let t = m.conn_id();
    m.nodes[i].accept(t, PEER);
    m.nodes[i].send(t, &hello(1, "teacher"));
    let list = NodeList::from_entries(entries)
        .list_frame()
        .to_vec()
        .unwrap();
    m.nodes[i].send(t, &list);
    assert_eq!(m.nodes[i].read(t)[0], 12, "a diff answers the list");
}

/// An identified mesh where node 1 also lets in a peer at [`PEER`].
fn mesh_with_teacher(links: &[(usize, usize)]) -> Mesh {
    let mut m = identified_mesh(2, links, true);
    m.set_node(1, 0, |c| {
        c.peering
            .allow_peers
            .push(Cidr::parse("198.51.100.0/24").unwrap())
    });
    m
}

/// Node 0's entry, and a stale one for its uid beating it: the same version, and a longer
/// alias (a restart within the second under another `--alias`).
fn own_and_stale(m: &Mesh) -> (NodeEntry, NodeEntry) {
    let own = m.nodes[0].config.identity.node.clone().unwrap();
    let stale = NodeEntry::new(
        *own.uid(),
        own.version(),
        "node0 before its restart",
        own.location(),
        own.public_key(),
    )
    .unwrap();
    assert!(stale > own);
    (own, stale)
}

/// Both lists equal, holding node 0's entry re-issued one version above `stale` (alias,
/// location and key kept), and node 0's store holding its list.
fn assert_outbid(m: &Mesh, own: &NodeEntry, stale: &NodeEntry) {
    let again = NodeEntry::new(
        *own.uid(),
        stale.version() + 1,
        own.alias(),
        own.location(),
        own.public_key(),
    )
    .unwrap();
    for n in &m.nodes {
        assert_eq!(n.core.node_list().get(own.uid()), Some(&again));
    }
    let lists: Vec<_> = m.nodes.iter().map(|n| n.core.node_list().hash()).collect();
    assert_eq!(lists[0], lists[1], "the lists agree");
    let stored = m.nodes[0].store().node_list().unwrap();
    assert_eq!(stored, m.nodes[0].core.node_list().canonical_bytes());
}

/// docs/PROTOCOL.md §8.15 "own uid": node 1 learns, from a peer, a stale entry for node 0's
/// uid that beats node 0's own. Its change spreads on its link to node 0: in that one
/// exchange node 0 re-issues its entry above the stale one and answers it in the diff;
/// both lists agree before any heartbeat, and the next heartbeats find equal hashes.
#[test]
fn a_stale_entry_for_our_uid_is_outbid_within_one_exchange() {
    let mut m = mesh_with_teacher(&[(1, 0)]);
    m.run_until(1_000);
    let (own, stale) = own_and_stale(&m);
    teach(&mut m, 1, vec![stale.clone()]);
    assert_eq!(m.nodes[1].core.node_list().get(own.uid()), Some(&stale));
    m.run(); // no time passes: no heartbeat
    assert_outbid(&m, &own, &stale);
    m.run_until(30_000);
    assert_outbid(&m, &own, &stale);
    assert_eq!(
        m.nodes[0].core.stats().errors + m.nodes[1].core.stats().errors,
        0
    );
}

/// The same as the opener: node 0 links to node 1, which learned the stale entry; node 0's
/// next heartbeat brings it in node 1's diff, node 0 re-issues and spreads its hash at once,
/// and its list carries the re-issued entry to node 1 (no second heartbeat needed).
#[test]
fn a_stale_entry_for_our_uid_in_a_diff_is_outbid_at_once() {
    let mut m = mesh_with_teacher(&[(0, 1)]);
    m.run_until(1_000);
    let (own, stale) = own_and_stale(&m);
    teach(&mut m, 1, vec![stale.clone()]);
    m.run();
    assert_eq!(m.nodes[0].core.node_list().get(own.uid()), Some(&own));
    assert_eq!(m.nodes[1].core.node_list().get(own.uid()), Some(&stale));
    let t = m.nodes[0].core.poll_timeout().expect("a heartbeat is due");
    m.advance_to(t);
    assert_outbid(&m, &own, &stale);
}

/// At start (docs/PROTOCOL.md §8.15 "own entry"): a stored list holding a greater entry
/// for our uid (ours from an earlier run) makes us start one version above it.
#[test]
fn a_greater_stored_own_entry_is_started_above() {
    let (own, _) = identity(0);
    let old = NodeEntry::new(
        *own.uid(),
        own.version() + 41,
        "old",
        "198.51.100.9:1",
        own.public_key(),
    )
    .unwrap();
    let (other, _) = identity(1);
    let stored = NodeList::from_entries(vec![old, other.clone()]).canonical_bytes();
    let cfg = TcpConfig {
        identity: TcpIdentity {
            node: Some(own.clone()),
            ..TcpIdentity::default()
        },
        ..open()
    };
    let core = TcpCore::new(cfg, 0, 0).with_nodes(&stored, 0);
    let mine = core.node_list().get(own.uid()).unwrap();
    assert_eq!(mine.version(), own.version() + 42);
    assert_eq!(
        (mine.alias(), mine.location()),
        (own.alias(), own.location())
    );
    assert_eq!(core.node_list().get(other.uid()), Some(&other));
}
