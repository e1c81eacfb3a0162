//! Federation in proportion to change (docs/PROTOCOL.md §8.20), whole servers on the
//! in-memory network: a server joining a mesh receives each record about once (one copy
//! from one peer, and from the others only what reconciliation finds missing), and a gap
//! the journal does not cover is repaired in bytes proportional to the differences, not to
//! the list. Each test prints its figures; `RDV_SIM_CONTACTS` sets the list's size (3,000
//! by default, so the suite stays fast; the figures in docs/CAPACITY.md ran 100,000).

use crate::sim::{all_equal, field, open, recs, status, write_recs};
use rendezvous::core::tcp::Cidr;
use rendezvous::sim::{HostId, HostSpec, Net};

/// Bytes of one server-role record on the wire (an Update of a full push, §8.4).
const RECORD_LEN: u64 = 537;

/// How many contacts the mesh holds: `RDV_SIM_CONTACTS`, or 3,000.
fn contacts_n() -> usize {
    std::env::var("RDV_SIM_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

/// A server of the test's networks: open contacts, peers admitted from the sim's range.
fn server(alias: &str, peers: &[HostId]) -> HostSpec {
    open(HostSpec {
        alias: Some(alias.to_string()),
        allow_peers: vec![Cidr::parse("192.0.2.0/24").expect("cidr")],
        ..HostSpec::peered(peers)
    })
}

/// `servers` servers in a mesh (each dials s0 and learns the rest from the node list),
/// holding `n` contacts written at every server in turn, converged.
fn mesh_with_contacts(seed: u64, servers: usize, n: usize) -> Net {
    let mut net = Net::new(seed, crate::sim::unix_now());
    net.add_host(server("s0", &[]));
    for i in 1..servers {
        net.add_host(server(&format!("s{i}"), &[0]));
    }
    let per = n / servers;
    for i in 0..servers {
        let keys = i * per..if i + 1 == servers { n } else { (i + 1) * per };
        write_recs(
            &mut net,
            i,
            &recs(&format!("owner{i}"), keys, |k| format!("+{k:09}")),
        );
    }
    let hosts: Vec<HostId> = (0..servers).collect();
    run_checking(&mut net, 600_000, |net| {
        net.contacts_digest(0).0 == n as u64 && all_equal(net, &hosts)
    })
    .expect("the mesh converges");
    net
}

/// Runs `net` in steps of 250 ms of virtual time until `done` holds (checked between
/// steps, as digests cost a pass over every list), at most `max_ms`; returns the time it
/// took to the step, or `None`.
fn run_checking(net: &mut Net, max_ms: u64, mut done: impl FnMut(&mut Net) -> bool) -> Option<u64> {
    let mut t = 0;
    while t <= max_ms {
        if done(net) {
            return Some(t);
        }
        net.run_for(250);
        t += 250;
    }
    None
}

/// Every link of host `h` up and live.
fn links_live(net: &mut Net, h: HostId) -> bool {
    status(net, h)
        .lines()
        .filter(|l| l.starts_with("peer="))
        .all(|l| field(l, "state") == Some("up") && field(l, "journal") == Some("live"))
}

/// Links of host `h` with the given key's value, summed over its `peer=` lines.
fn link_sum(net: &mut Net, h: HostId, key: &str) -> u64 {
    status(net, h)
        .lines()
        .filter(|l| l.starts_with("peer="))
        .filter_map(|l| field(l, key)?.parse::<u64>().ok())
        .sum()
}

/// Joins a server to a mesh of `servers` holding `n` contacts; returns the bytes it
/// received from the mesh until its digests matched, over one copy of the records.
fn join(seed: u64, servers: usize, n: usize) -> f64 {
    let mut net = mesh_with_contacts(seed, servers, n);
    let mesh: Vec<HostId> = (0..servers).collect();
    let j = net.add_host(server("joiner", &[0]));
    let mut all = mesh.clone();
    all.push(j);
    let took = run_checking(&mut net, 600_000, |net| {
        net.contacts_digest(j).0 == n as u64 && all_equal(net, &all)
    })
    .expect("the joiner converges");
    // Measured once every link is live again (the late reconciliations included).
    run_checking(&mut net, 120_000, |net| {
        all.iter().all(|&h| links_live(net, h))
    })
    .expect("every link live after the join");
    let into = net.bytes_sent(&mesh, &[j]);
    let out_of = net.bytes_sent(&[j], &mesh);
    let copy = n as u64 * RECORD_LEN;
    let ratio = into as f64 / copy as f64;
    let reconciled = link_sum(&mut net, 0, "reconciliations");
    eprintln!(
        "join: mesh of {servers}, {n} contacts: {into} bytes into the joiner, one copy {copy}: {ratio:.3} x; {out_of} bytes out of it; converged in {took} ms ({reconciled} reconciliations on s0's links)"
    );
    ratio
}

#[test]
fn a_joiner_receives_each_record_about_once_from_a_mesh_of_3() {
    let ratio = join(31, 3, contacts_n());
    assert!(ratio <= 1.2, "{ratio:.3} copies into the joiner");
    assert!(
        ratio >= 1.0,
        "{ratio:.3}: less than one copy cannot hold the list"
    );
}

#[test]
fn a_joiner_receives_each_record_about_once_from_a_mesh_of_10() {
    let ratio = join(32, 10, contacts_n());
    assert!(ratio <= 1.2, "{ratio:.3} copies into the joiner");
}
