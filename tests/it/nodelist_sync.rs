//! Node lists reconciled in proportion to their differences (docs/PROTOCOL.md §8.15,
//! §8.20 set 3), whole servers on the in-memory network: two servers start from stored
//! lists of the same servers, `d` of them at a newer version on one side, and link up; the
//! bytes between them until their lists are equal, less those of the same run with no
//! difference, are what the differences cost. Beside it, what the whole-list exchange this
//! replaced sent: the opener's NodeList frame (11) and the diff (12). `RDV_SIM_NODES` sets
//! the list's size (1,000 by default; 4,096 is the cap, as in docs/CAPACITY.md).

use crate::sim::{field, open, status};
use rendezvous::core::tcp::Cidr;
use rendezvous::federation::NodeList;
use rendezvous::sim::{HostId, HostSpec, Net};
use rendezvous::wire::tcp::nodelist::{NodeEntry, NodeListFrame};

/// How many servers the stored lists name: `RDV_SIM_NODES`, or 1,000.
fn nodes_n() -> usize {
    std::env::var("RDV_SIM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
        .min(4_094)
}

/// Entry `i` of the stored lists, at `version`: an alias, a location in 198.51.100.0/24
/// that no host listens at, a 32-byte key (about 80 bytes encoded).
fn entry(i: usize, version: u64) -> NodeEntry {
    let mut uid = [0x5a; 16];
    uid[..8].copy_from_slice(&(i as u64).to_be_bytes());
    let location = format!("198.51.100.{}:{}", i % 250 + 1, 7000 + i / 250);
    let key: Vec<u8> = (0..32).map(|k| (i + k) as u8).collect();
    NodeEntry::new(uid, version, format!("node{i:04}"), location, key).expect("entry fits")
}

/// What one run found.
struct Run {
    /// Bytes between the two servers until their lists were equal and the link idle.
    bytes: u64,
    /// What the whole-list exchange would have sent: the opener's list frame and the diff.
    whole: u64,
    /// The opener's node-list reconciliations, from `status`: (how many, entries sent in
    /// the last one's NodeSync, entries the acceptor held that it lacked).
    note: (u64, u64, u64),
}

/// Two servers; `b` dials `a` (both `--no-mesh`), both stored `n` entries, `d` of them a
/// version newer at `b`; run until the lists are equal and the link is live.
fn run(n: usize, d: usize) -> Run {
    let mut net = Net::new(13, crate::sim::unix_now());
    let spec = |alias: &str, peers: &[HostId], nodes: Vec<NodeEntry>| {
        open(HostSpec {
            alias: Some(alias.to_string()),
            allow_peers: vec![Cidr::parse("192.0.2.0/24").expect("cidr")],
            no_mesh: true,
            nodes,
            ..HostSpec::peered(peers)
        })
    };
    let older: Vec<NodeEntry> = (0..n).map(|i| entry(i, 1)).collect();
    let newer: Vec<NodeEntry> = (0..n).map(|i| entry(i, 1 + u64::from(i < d))).collect();
    let a = net.add_host(spec("a", &[], older));
    let b = net.add_host(spec("b", &[a], newer));
    let mut t = 0;
    loop {
        assert!(t <= 120_000, "the node lists converge within 2 minutes");
        let equal = net.node(a).tcp().node_list() == net.node(b).tcp().node_list();
        if equal && link_live(&mut net, b) {
            break;
        }
        net.run_for(250);
        t += 250;
    }
    let list = net.node(b).tcp().node_list().clone();
    assert_eq!(
        list.len(),
        n + 2,
        "both servers hold every entry and each other's"
    );
    for i in 0..n {
        let want = entry(i, 1 + u64::from(i < d));
        assert_eq!(list.get(want.uid()), Some(&want), "the newer version wins");
    }
    let line = status(&mut net, b);
    let peer = line
        .lines()
        .find(|l| l.starts_with("peer="))
        .expect("b's link");
    let num = |k: &str| field(peer, k).and_then(|v| v.parse().ok()).expect(k);
    Run {
        bytes: net.bytes_between(&[a], &[b]),
        whole: whole_list_bytes(&list),
        note: (
            num("nodes_reconciliations"),
            num("nodes_last_sent"),
            num("nodes_last_missing"),
        ),
    }
}

/// Host `h`'s link up and live.
fn link_live(net: &mut Net, h: HostId) -> bool {
    status(net, h)
        .lines()
        .filter(|l| l.starts_with("peer="))
        .all(|l| field(l, "state") == Some("up") && field(l, "journal") == Some("live"))
}

/// The whole-list exchange of the same sync: the opener's NodeList frame (all of `list`
/// but the acceptor's entry, which it learns from this exchange) and the acceptor's diff of
/// its own entry; the newer entries ride in the list.
fn whole_list_bytes(list: &NodeList) -> u64 {
    let frame = |e: Vec<NodeEntry>| NodeListFrame::List(e).buffer_len() as u64;
    let all = list.entries().to_vec();
    let (own_a, rest): (Vec<NodeEntry>, Vec<NodeEntry>) =
        all.into_iter().partition(|e| e.alias() == "a");
    frame(rest) + frame(own_a)
}

#[test]
fn node_lists_reconcile_in_bytes_of_the_differences() {
    let n = nodes_n();
    let base = run(n, 0);
    eprintln!(
        "node list of {n} servers, no difference: {} bytes between the two servers in all (hellos, proofs, reconciliations of every set, heartbeats); the whole-list exchange alone: {} bytes",
        base.bytes, base.whole
    );
    let mut last = 0;
    for d in [1, 10, 100, n / 10, n] {
        let r = run(n, d);
        let cost = r.bytes.saturating_sub(base.bytes);
        let entries = d as u64 * entry(0, 2).encoded_len() as u64;
        eprintln!(
            "node list of {n} servers, {d} newer at the opener: {cost} bytes more than none ({:.2} x the {d} entries' {entries} bytes; {:.4} of the whole-list exchange, {} bytes); {} reconciliation(s), the last sent {} entries and found {} the acceptor held (older versions among them, not asked for)",
            cost as f64 / entries as f64,
            cost as f64 / r.whole as f64,
            r.whole,
            r.note.0,
            r.note.1,
            r.note.2
        );
        assert!(r.note.0 >= 1, "the lists were reconciled");
        assert!(r.note.1 >= d as u64, "each newer entry was sent");
        assert!(cost >= entries, "the newer entries crossed");
        assert!(cost >= last, "more differences cost more");
        if d <= n / 10 {
            // The differences, not the list: a tenth of the list changed costs at most 3
            // times its entries, against the whole list every time before.
            assert!(cost <= 3 * entries + 4_096, "{d}: {cost} bytes");
            assert!(cost < r.whole / 2, "{d}: {cost} of {}", r.whole);
        }
        last = cost;
    }
}
