//! Federation in proportion to change (docs/PROTOCOL.md §8.20), whole servers on the
//! in-memory network: a server joining a mesh receives each record about once (one copy
//! from one peer, and from the others only what reconciliation finds missing), and a gap
//! the journal does not cover is repaired in bytes proportional to the differences, not to
//! the list. Each test prints its figures; `RDV_SIM_CONTACTS` sets the list's size (3,000
//! by default, so the suite stays fast; the figures in docs/CAPACITY.md ran 100,000).

use crate::sim::{all_equal, field, open, recs, status, write_recs};
use rendezvous::core::tcp::Cidr;
use rendezvous::federation::reconcile::{record_id, Initiator, Item, Responder};
use rendezvous::sim::{HostId, HostSpec, Net};
use rendezvous::store::Contact;
use rendezvous::wire::tcp::ContactFields;
use std::sync::Arc;

/// Bytes of one server-role record on the wire (an Update of a full push, §8.4).
const RECORD_LEN: u64 = 537;
/// Bytes of a JournalUpdate frame (13): the record with its journal line number
/// (docs/PROTOCOL.md §8.4).
const JOURNAL_LINE_LEN: u64 = 545;

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

/// `n` contacts of one owner, clocks 1..=n: what every server of a preloaded mesh holds.
fn contacts(n: usize) -> Arc<Vec<Contact>> {
    Arc::new(
        (0..n)
            .map(|k| Contact {
                username: "shared".into(),
                contact: format!("c{k:07}"),
                phone: format!("+{k:09}"),
                clock: k as u32 + 1,
            })
            .collect(),
    )
}

/// `servers` servers in a mesh, each preloaded with the same `list` (as if restarted on
/// data directories that hold it), keeping `keep` journal lines; linked and caught up.
fn preloaded_mesh(seed: u64, servers: usize, list: &Arc<Vec<Contact>>, keep: Option<u64>) -> Net {
    let mut net = Net::new(seed, crate::sim::unix_now());
    for i in 0..servers {
        let peers: &[HostId] = if i == 0 { &[] } else { &[0] };
        net.add_host(HostSpec {
            preload: Arc::clone(list),
            journal_keep: keep,
            ..server(&format!("s{i}"), peers)
        });
    }
    let hosts: Vec<HostId> = (0..servers).collect();
    run_checking(&mut net, 600_000, |net| {
        hosts
            .iter()
            .all(|&h| links_live(net, h) && link_count(net, h) == servers - 1)
    })
    .expect("the preloaded mesh links up");
    net
}

/// Links of host `h`.
fn link_count(net: &mut Net, h: HostId) -> usize {
    status(net, h)
        .lines()
        .filter(|l| l.starts_with("peer="))
        .count()
}

/// What a heal cost: bytes across the cut, over the changed records' size; heartbeat
/// intervals from the heal to equal digests everywhere.
struct Heal {
    /// Records changed on each side of the cut.
    changed_a_side: usize,
    bytes: u64,
    over_changed: f64,
    over_copy: f64,
    heartbeats: f64,
}

/// Partitions a preloaded mesh into halves, changes `d` records on each side (other keys
/// on each), holds the partition 30 s (the links across it drop), heals, and measures until every server holds the same contacts, directory
/// and node list.
fn heal(net: &mut Net, n: usize, d: usize) -> Heal {
    let all: Vec<HostId> = (0..net.len()).collect();
    let (left, right) = all.split_at(all.len() / 2);
    net.partition(left, right);
    if d > 0 {
        write_recs(net, left[0], &recs("shared", 0..d, |k| format!("L{k:09}")));
        write_recs(
            net,
            right[0],
            &recs("shared", d..2 * d, |k| format!("R{k:09}")),
        );
    }
    run_checking(net, 120_000, |net| {
        all_equal(net, left) && all_equal(net, right) && links_idle(net, &all)
    })
    .expect("each side converges on its own");
    // Held past four heartbeats: the links across the cut are dropped (a silent
    // partition) and, after the heal, redialled: they catch up from the peers' cursors.
    net.run_for(30_000);
    let before = net.bytes_between(left, right);
    net.heal_all();
    let took = run_checking(net, 600_000, |net| all_equal(net, &all))
        .expect("the mesh converges after the heal");
    // Every link across redialled and caught up: with nothing changed, the reopening alone.
    run_checking(net, 120_000, |net| all.iter().all(|&h| links_live(net, h)))
        .expect("every link live again");
    let bytes = net.bytes_between(left, right) - before;
    if std::env::var("RDV_DEBUG").is_ok() {
        for &h in &all {
            for l in status(net, h)
                .lines()
                .filter(|l| l.starts_with("peer=") || l.starts_with("received"))
            {
                eprintln!("s{h}: {l}");
            }
        }
        for &a in &all {
            for &b in &all {
                eprintln!("{a}->{b}: {}", net.bytes_sent(&[a], &[b]));
            }
        }
    }
    let changed = (2 * d as u64).max(1) * RECORD_LEN;
    Heal {
        changed_a_side: d,
        bytes,
        over_changed: bytes as f64 / changed as f64,
        over_copy: bytes as f64 / (n as u64 * RECORD_LEN) as f64,
        heartbeats: took as f64 / 5_000.0,
    }
}

/// Every link of `hosts` live, or down (a side of a partition): nothing in flight.
fn links_idle(net: &mut Net, hosts: &[HostId]) -> bool {
    hosts.iter().all(|&h| {
        status(net, h)
            .lines()
            .filter(|l| l.starts_with("peer=") && field(l, "state") == Some("up"))
            .all(|l| field(l, "journal") == Some("live"))
    })
}

/// Runs [`heal`] on a preloaded mesh of 4 (`keep`: the journal's bound), 1% changed a
/// side, and prints its figures under `label`.
fn heal_figures(seed: u64, keep: Option<u64>, label: &str) -> (Arc<Vec<Contact>>, Heal) {
    let n = contacts_n();
    let d = (n / 100).max(1);
    let list = contacts(n);
    let mut net = preloaded_mesh(seed, 4, &list, keep);
    let h = heal(&mut net, n, d);
    eprintln!(
        "heal, {label}: 4 servers, {n} contacts, {d} changed a side: {} bytes across the cut, {:.2} x the changed records, {:.4} of a copy; equal {:.2} heartbeat intervals after the heal",
        h.bytes, h.over_changed, h.over_copy, h.heartbeats
    );
    assert!(
        h.heartbeats <= 2.0,
        "{:.2} heartbeat intervals",
        h.heartbeats
    );
    (list, h)
}

/// A cut healed while the journal covers the gap (1% changed, at most 4096 lines a side):
/// the lines are paged, and meshed only their origin sends them. The same mesh healed with
/// nothing changed gives the links' reopening (hellos, proofs, cursors, heartbeats), which
/// does not grow with the changes; beyond it each change costs the 2 journal lines that
/// carry it to the 2 servers across (docs/CAPACITY.md "Federation").
#[test]
fn a_healed_cut_the_journal_covers_costs_two_lines_a_change() {
    let (list, h) = heal_figures(41, None, "journal covers");
    let reopening = heal(&mut preloaded_mesh(41, 4, &list, None), list.len(), 0).bytes;
    let per_change = h.bytes.saturating_sub(reopening) as f64 / (2 * h.changed_a_side) as f64;
    eprintln!(
        "heal, nothing changed: {reopening} bytes across the cut (the links' reopening); beyond it {per_change:.1} bytes a change, {:.4} journal lines of {JOURNAL_LINE_LEN} bytes",
        per_change / JOURNAL_LINE_LEN as f64
    );
    // 2 lines, and the pages' asks and answer headers (a few bytes per 4,096 lines).
    assert!(
        per_change <= 2.01 * JOURNAL_LINE_LEN as f64,
        "{per_change:.1} bytes a change beyond the reopening's {reopening}"
    );
    assert!(
        h.over_changed <= 3.0,
        "{:.2} x the changed records",
        h.over_changed
    );
}

/// A cut healed after the journal was trimmed (each server keeps 4 lines): the links
/// reconcile, and the bytes follow the differences, not the list.
#[test]
fn a_healed_cut_the_journal_lost_is_reconciled_in_proportion_to_the_differences() {
    let (list, h) = heal_figures(42, Some(4), "journal trimmed");
    let n = list.len();
    // The bound is for 100,000 contacts and 1% changed (RDV_SIM_CONTACTS=100000);
    // on a smaller list the reconnects' fixed bytes weigh more.
    if n >= 100_000 {
        assert!(h.over_copy <= 0.05, "{:.4} of a full copy", h.over_copy);
    }
    assert!(
        h.over_changed <= 4.0,
        "{:.2} x the changed records",
        h.over_changed
    );
}

// ---------------------------------------------------------------------------------------
// Bytes against differences: the reconciliation alone (federation::reconcile)
// ---------------------------------------------------------------------------------------

/// `n` records' ids as a server holds them, and the same list with `d` of its records
/// replaced by newer versions (new clocks, new ids): `2 d` differences.
fn two_sides(n: usize, d: usize) -> (Vec<Item>, Vec<Item>) {
    let id = |k: usize, clock: u32| {
        let fields = ContactFields {
            username: "shared",
            contact: &format!("c{k:07}"),
            phone: &format!("+{clock:09}"),
        };
        (clock, record_id(clock, &fields))
    };
    let ours: Vec<Item> = (0..n).map(|k| id(k, k as u32 + 1)).collect();
    let mut theirs = ours.clone();
    // Every (n / d)-th record changed on their side, with clocks above every other.
    for (j, k) in (0..n).step_by((n / d.max(1)).max(1)).take(d).enumerate() {
        theirs[k] = id(k, (n + 1 + j) as u32);
    }
    (ours, theirs)
}

/// Bytes of a whole reconciliation of `ours` against `theirs` both ways, its rounds, and
/// how many records each side found the other lacked.
fn reconcile_bytes(ours: &[Item], theirs: &[Item]) -> (u64, u32, usize, u64) {
    let mut a = Initiator::new(ours).expect("index");
    let mut b = Responder::new(theirs).expect("index");
    let mut msg = a.first().to_vec();
    let mut bytes = 0u64;
    loop {
        bytes += 3 + msg.len() as u64; // frame 22
        let answer = b.answer(&msg).expect("answer");
        bytes += 3 + answer.len() as u64;
        match a.step(&answer).expect("step") {
            Some(next) => msg = next,
            None => return (bytes, a.rounds(), a.have().len(), a.need()),
        }
    }
}

/// The bytes of reconciliation grow with the differences d, not with the list n: about
/// O(d log n) (docs/PROTOCOL.md §8.20). With `RDV_RECONCILE_PLOT=FILE` it runs n =
/// 100,000 and writes the plot of bytes against d (docs/reconcile-bytes.svg).
#[test]
fn reconciliation_bytes_follow_the_differences_not_the_list() {
    let plot = std::env::var("RDV_RECONCILE_PLOT").ok();
    let n = if plot.is_some() { 100_000 } else { 20_000 };
    let ds: &[usize] = if plot.is_some() {
        &[1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000]
    } else {
        &[1, 10, 100, 1_000]
    };
    let copy = n as u64 * RECORD_LEN;
    let mut rows = Vec::new();
    for &d in ds {
        let (ours, theirs) = two_sides(n, d);
        let (bytes, rounds, have, need) = reconcile_bytes(&ours, &theirs);
        assert_eq!(
            (have, need),
            (d, d as u64),
            "d = {d}: every difference found"
        );
        let pushed = bytes + d as u64 * RECORD_LEN;
        eprintln!(
            "reconcile: n {n}, d {d}: {bytes} bytes of messages in {rounds} rounds ({:.1} a difference); with the {d} records pushed {pushed} = {:.4} of a copy",
            bytes as f64 / (2 * d) as f64,
            pushed as f64 / copy as f64
        );
        rows.push((d, bytes, pushed, rounds));
    }
    // O(d log n): a single difference costs a few hundred bytes, not the list.
    let one = rows[0].1;
    assert!(one < 4_000, "one difference cost {one} bytes");
    // Spread over the list, a difference costs the ids of the smallest range that holds it
    // (up to 32 ids of 32 bytes, shared with its neighbours) and the fingerprints above
    // it: 1,000 a side cost at most about a record (537) each, and nothing like the list.
    let (d, bytes, pushed, _) = *rows.iter().find(|r| r.0 == 1_000).expect("d = 1000");
    assert!(
        bytes / (2 * d as u64) <= 600,
        "{bytes} bytes for {d} differences a side"
    );
    if n == 100_000 {
        assert!(
            pushed as f64 <= 0.05 * copy as f64,
            "1%: {pushed} of {copy}"
        );
    }
    if let Some(path) = plot {
        write_plot(std::path::Path::new(&path), n, &rows, copy);
    }
}

/// The plot of reconciliation bytes, and with the records pushed, against the differences
/// (log-log), beside one full copy.
fn write_plot(path: &std::path::Path, n: usize, rows: &[(usize, u64, u64, u32)], copy: u64) {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE).expect("fill");
    let x_max = rows.last().map_or(10, |r| r.0) as f64 * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Reconciliation of {n} contacts: bytes against differences a side"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (0.7f64..x_max).log_scale(),
            (100f64..copy as f64 * 2.0).log_scale(),
        )
        .expect("chart");
    chart
        .configure_mesh()
        .x_desc("records changed on each side (d)")
        .y_desc("bytes between the two servers")
        .draw()
        .expect("mesh");
    let series = [
        (
            "messages (frames 22)",
            BLUE,
            rows.iter()
                .map(|r| (r.0 as f64, r.1 as f64))
                .collect::<Vec<_>>(),
        ),
        (
            "messages + the d records pushed",
            RED,
            rows.iter().map(|r| (r.0 as f64, r.2 as f64)).collect(),
        ),
        (
            "one full copy",
            BLACK,
            vec![(0.7, copy as f64), (x_max, copy as f64)],
        ),
    ];
    for (name, color, pts) in series {
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .expect("series")
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .expect("legend");
    root.present().expect("write the plot");
}

// ---------------------------------------------------------------------------------------
// Simulation at scale
// ---------------------------------------------------------------------------------------

/// How the servers of a scenario are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// Mesh on: each dials s0 and links to every server it learns (a full mesh).
    Mesh,
    /// `--no-mesh`, each server peered both ways with its neighbours in a chain and with
    /// two more drawn from the seed: a random connected graph.
    Graph,
    /// `--no-mesh`, a line: s0 - s1 - ... each peered both ways with its neighbours.
    Line,
}

/// The peers of server `i` of `servers` in `topo` (both ends name each edge).
fn peers_of(topo: Topology, servers: usize, seed: u64) -> Vec<Vec<HostId>> {
    let mut peers = vec![Vec::new(); servers];
    let edge = |a: usize, b: usize, peers: &mut Vec<Vec<HostId>>| {
        if a != b && !peers[a].contains(&b) {
            peers[a].push(b);
            peers[b].push(a);
        }
    };
    match topo {
        Topology::Mesh => (1..servers).for_each(|i| peers[i].push(0)),
        Topology::Line => (1..servers).for_each(|i| edge(i - 1, i, &mut peers)),
        Topology::Graph => {
            (1..servers).for_each(|i| edge(i - 1, i, &mut peers));
            let mut x = seed | 1;
            for a in 0..servers {
                for _ in 0..2 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    edge(a, (x >> 33) as usize % servers, &mut peers);
                }
            }
        }
    }
    peers
}

/// Resident memory of this process, in bytes (`/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// One scenario's figures.
struct Row {
    /// Links between the two sides, counted each way (a link each way per peering).
    cut_links: usize,
    bytes_per_change: f64,
    /// The most copies of the changed records (545-byte journal lines) that crossed one
    /// link across the cut, both ways together.
    most_per_link: f64,
    rounds: u64,
    heal_ms: u64,
    mem_per_copy: u64,
}

/// Bytes between each pair of hosts across the cut, both ways: `(a, b, bytes)`.
fn pair_bytes(net: &Net, left: &[HostId], right: &[HostId]) -> Vec<(HostId, HostId, u64)> {
    let mut v = Vec::new();
    for &a in left {
        for &b in right {
            v.push((a, b, net.bytes_between(&[a], &[b])));
        }
    }
    v
}

/// Links (connections) between hosts `a` and `b`: one per peering either way; in a mesh,
/// each dials the other.
fn links_between(topo: Topology, peering: &[Vec<HostId>], a: HostId, b: HostId) -> usize {
    match topo {
        Topology::Mesh => 2,
        _ => usize::from(peering[a].contains(&b)) + usize::from(peering[b].contains(&a)),
    }
}

/// `servers` servers linked as `topo`, preloaded with `n` contacts; a partition into
/// halves held 30 s while 1% of the records change on each side; the heal measured
/// until every server's contacts, directory and node list digests are equal.
fn scenario(seed: u64, topo: Topology, servers: usize, n: usize) -> Row {
    let list = contacts(n);
    let rss0 = rss();
    let mut net = Net::new(seed, crate::sim::unix_now());
    let peering = peers_of(topo, servers, seed);
    let peering_of = peering.clone();
    let half = servers / 2;
    let cut_links = match topo {
        // Every server links to every other: a link each way between each pair.
        Topology::Mesh => 2 * half * (servers - half),
        _ => peering
            .iter()
            .enumerate()
            .map(|(a, p)| p.iter().filter(|&&b| (a < half) != (b < half)).count())
            .sum(),
    };
    for (i, peers) in peering.into_iter().enumerate() {
        net.add_host(HostSpec {
            preload: Arc::clone(&list),
            no_mesh: topo != Topology::Mesh,
            ..server(&format!("s{i}"), &peers)
        });
    }
    let all: Vec<HostId> = (0..servers).collect();
    run_checking(&mut net, 600_000, |net| all_equal(net, &all)).expect("the network links up");
    net.run_for(10_000);
    let mem_per_copy = rss().saturating_sub(rss0) / servers as u64;
    let (left, right) = all.split_at(servers / 2);
    net.partition(left, right);
    let d = (n / 100).max(1);
    write_recs(
        &mut net,
        left[0],
        &recs("shared", 0..d, |k| format!("L{k:09}")),
    );
    write_recs(
        &mut net,
        right[0],
        &recs("shared", d..2 * d, |k| format!("R{k:09}")),
    );
    run_checking(&mut net, 600_000, |net| {
        all_equal(net, left) && all_equal(net, right)
    })
    .expect("each side converges on its own");
    net.run_for(30_000);
    let before = net.bytes_between(left, right);
    let pairs_before = pair_bytes(&net, left, right);
    net.heal_all();
    let heal_ms = run_checking(&mut net, 600_000, |net| all_equal(net, &all))
        .expect("the network converges after the heal");
    let bytes = net.bytes_between(left, right) - before;
    let changes = (2 * d as u64 * JOURNAL_LINE_LEN) as f64;
    let most_per_link = pair_bytes(&net, left, right)
        .iter()
        .zip(&pairs_before)
        .map(|(&(a, b, after), &(_, _, before))| {
            let links = links_between(topo, &peering_of, a, b).max(1);
            (after - before) as f64 / changes / links as f64
        })
        .fold(0.0, f64::max);
    let rounds = all
        .iter()
        .map(|&h| {
            let text = status(&mut net, h);
            text.lines()
                .filter_map(|l| field(l, "last_reconcile_rounds")?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0);
    Row {
        cut_links,
        bytes_per_change: bytes as f64 / (2 * d) as f64,
        most_per_link,
        rounds,
        heal_ms,
        mem_per_copy,
    }
}

/// Issue 13's simulation: servers in meshes, random graphs and lines, 1% of the records
/// changed on both sides of a partition; prints a row per scenario (docs/CAPACITY.md,
/// "Federation"). Bounded here (10 servers, 3,000 contacts); `RDV_SIM_SCALE=full` runs
/// 50 servers with 100,000 contacts and 5 with 1,000,000 (minutes, GBs of RAM);
/// `RDV_SIM_ONLY=K` runs the K-th row alone, so its memory column is its own.
#[test]
fn federation_at_scale() {
    let full = std::env::var("RDV_SIM_SCALE").is_ok_and(|v| v == "full");
    let runs: &[(Topology, usize, usize)] = if full {
        &[
            (Topology::Mesh, 50, 100_000),
            (Topology::Graph, 50, 100_000),
            (Topology::Line, 50, 100_000),
            (Topology::Mesh, 5, 1_000_000),
            (Topology::Line, 5, 1_000_000),
        ]
    } else {
        &[
            (Topology::Mesh, 10, 3_000),
            (Topology::Graph, 10, 3_000),
            (Topology::Line, 6, 3_000),
        ]
    };
    eprintln!("sim: | topology | servers | contacts | links across the cut (each way) | bytes across the cut per changed record | most copies on one link | reconciliation rounds (most) | heal to equal digests (ms, heartbeat intervals) | memory per server copy |");
    // RDV_SIM_ONLY=K runs the K-th scenario alone (its own process: the memory column).
    let only: Option<usize> = std::env::var("RDV_SIM_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    for (k, &(topo, servers, n)) in runs.iter().enumerate() {
        if only.is_some_and(|o| o != k) {
            continue;
        }
        let row = scenario(50 + k as u64, topo, servers, n);
        eprintln!(
            "sim: | {topo:?} | {servers} | {n} | {} | {:.0} | {:.2} | {} | {} ({:.2}) | {:.1} MB |",
            row.cut_links,
            row.bytes_per_change,
            row.most_per_link,
            row.rounds,
            row.heal_ms,
            row.heal_ms as f64 / 5_000.0,
            row.mem_per_copy as f64 / 1e6
        );
        // A change crosses each link across the cut at most once, each way (plus a
        // quarter for the reconnects, heartbeats and reconciliations); meshed, only from
        // its origin, so about once per server across.
        let bound = match topo {
            Topology::Mesh => 1.25 * (servers - servers / 2) as f64,
            _ => 1.25 * row.cut_links as f64,
        } * RECORD_LEN as f64;
        assert!(
            row.heal_ms <= 10_000,
            "{topo:?}: equal digests {} ms after the heal, over 2 heartbeat intervals",
            row.heal_ms
        );
        // And no link across carries a change more than once (both ways together; 10% for
        // the links' reopening, which is about 2% of the changes here).
        assert!(
            row.most_per_link <= 1.1,
            "{topo:?}: {:.2} copies of the changes crossed one link",
            row.most_per_link
        );
        assert!(
            row.bytes_per_change <= bound,
            "{topo:?}: {:.0} bytes a changed record, bound {bound:.0} ({} links across)",
            row.bytes_per_change,
            row.cut_links
        );
    }
}

// ---------------------------------------------------------------------------------------
// Frame 22 from a peer: refusals and one reconciliation at a time
// ---------------------------------------------------------------------------------------

/// `[22][len u16][set 1: contacts][message]`.
fn reconcile_frame(message: &[u8]) -> Vec<u8> {
    let mut f = vec![22];
    f.extend(
        u16::try_from(1 + message.len())
            .expect("short")
            .to_be_bytes(),
    );
    f.push(1);
    f.extend_from_slice(message);
    f
}

/// A server-role connection to host 0 from `from` (inside `--allow-peer`), hello sent.
fn peer_conn(net: &mut Net, from: &str) -> rendezvous::sim::ExtConn {
    let c = net.open(0, crate::sim::sa(from));
    net.write(c, &crate::sim::server_hello("tester"));
    c
}

/// A message that is not negentropy version 1, or a body that names no set (1 contacts, 2
/// the directory), is 400 (request 22) and close; nothing of
/// the server's state is held for it.
#[test]
fn a_malformed_reconcile_message_is_refused() {
    let list = contacts(100);
    let mut net = preloaded_mesh(61, 1, &list, None);
    let unknown_set = vec![22, 0, 2, 9, 0x61];
    let no_set = vec![22, 0, 0];
    let messages: [&[u8]; 3] = [&[0x10, 0, 0], &[], &[0x7f]];
    let frames = messages
        .into_iter()
        .map(reconcile_frame)
        .chain([unknown_set, no_set]);
    for bad in frames {
        let c = peer_conn(&mut net, "192.0.2.200:40000");
        net.write(c, &bad);
        net.run_for(200);
        let got = net.read(c);
        assert_eq!(crate::sim::status_code(&got), Some(400), "{bad:?}: {got:?}");
        assert_eq!(got.get(3), Some(&22), "request 22");
        assert!(net.is_closed(c), "{bad:?}: closed after the refusal");
    }
    // The server still answers a good one at once: nothing was left held.
    let c = peer_conn(&mut net, "192.0.2.201:40000");
    let init = Initiator::new(&[]).expect("index");
    net.write(c, &reconcile_frame(init.first()));
    net.run_for(200);
    let got = net.read(c);
    assert_eq!(got.first(), Some(&22), "an answer: {got:?}");
    assert!(got.len() > 4, "not busy: {got:?}");
}

/// While one server's reconciliation is answered, another's first message is answered
/// busy (`[22][0000]`); once the first ends with its JournalMark, the other is answered.
#[test]
fn a_second_reconciliation_is_told_busy_until_the_first_ends() {
    let list = contacts(1_000);
    let mut net = preloaded_mesh(62, 1, &list, None);
    let items: Vec<Item> = Vec::new();
    let (a, b) = (
        peer_conn(&mut net, "192.0.2.200:40000"),
        peer_conn(&mut net, "192.0.2.201:40000"),
    );
    // a: a cursor query (so that its JournalMark is taken), then its first message.
    let mut first_a = vec![14];
    first_a.extend(7u64.to_be_bytes());
    first_a.extend(reconcile_frame(
        Initiator::new(&items).expect("index").first(),
    ));
    net.write(a, &first_a);
    net.run_for(200);
    let got_a = net.read(a);
    assert_eq!(
        got_a.get(..9),
        Some(&[14, 0, 0, 0, 0, 0, 0, 0, 0][..]),
        "cursor 0"
    );
    assert_eq!(got_a.get(9), Some(&22), "then the answer: {got_a:?}");
    assert!(got_a.len() > 12, "answered, not busy: {got_a:?}");
    let b_first = reconcile_frame(Initiator::new(&items).expect("index").first());
    net.write(b, &b_first);
    net.run_for(200);
    assert_eq!(net.read(b), vec![22, 0, 1, 1], "busy: set 1, no message");
    // a ends its reconciliation: b is answered next time.
    let mut mark = vec![15];
    mark.extend(0u64.to_be_bytes());
    net.write(a, &mark);
    net.run_for(200);
    net.write(b, &b_first);
    net.run_for(200);
    let got_b = net.read(b);
    assert_eq!(got_b.first(), Some(&22));
    assert!(got_b.len() > 4, "answered, not busy: {got_b:?}");
}

// ---------------------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------------------

/// Bytes of host `h`'s answer to a DirRequest (every entry once, and the end frame): one
/// copy of its directory on the wire.
fn directory_copy(net: &mut Net, h: HostId) -> u64 {
    let c = net.open(h, crate::sim::sa("192.0.2.210:40000"));
    let mut ask = crate::sim::server_hello("counter");
    ask.extend([17, 0, 0]);
    net.write(c, &ask);
    let mut got = Vec::new();
    run_checking(net, 10_000, |net| {
        got.extend(net.read(c));
        got.len() >= 7 && got[got.len() - 7..got.len() - 4] == [17, 0, 4]
    })
    .expect("the directory answer");
    net.close(c);
    got.len() as u64
}

/// A server joining a mesh of 3 whose directories hold `RDV_SIM_CLIENTS` clients (60 by
/// default) receives about one copy of the directory: the links reconcile directories
/// (docs/PROTOCOL.md §8.20), where each link used to bring two whole copies (the answer to
/// its DirRequest and the peer's full push).
#[test]
fn a_joiner_receives_each_directory_entry_about_once() {
    let k: usize = std::env::var("RDV_SIM_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut net = Net::new(71, crate::sim::unix_now());
    net.add_host(server("s0", &[]));
    net.add_host(server("s1", &[0]));
    net.add_host(server("s2", &[0]));
    let mesh = [0, 1, 2];
    for i in 0..k {
        let net24 = ["198.51.100", "203.0.113"][i % 2];
        let addr = format!("{net24}.{}:{}", 1 + (i / 2) % 250, 40_000 + i);
        let c = crate::sim::Client::new(&format!("c{i}"), &addr);
        c.register(&mut net, i % 3);
        net.run_for(40); // within the registration rate of a network (§5.9)
    }
    run_checking(&mut net, 120_000, |net| {
        mesh.iter()
            .all(|&h| net.node(h).udp().directory_digest().0 == k as u64)
    })
    .expect("every directory holds every client");
    let copy = directory_copy(&mut net, 0);
    let j = net.add_host(server("joiner", &[0]));
    let all = [0, 1, 2, j];
    run_checking(&mut net, 120_000, |net| all_equal(net, &all)).expect("the joiner converges");
    run_checking(&mut net, 120_000, |net| {
        all.iter().all(|&h| links_live(net, h))
    })
    .expect("every link live after the join");
    let into = net.bytes_sent(&mesh, &[j]);
    let ratio = into as f64 / copy as f64;
    let sent = link_sum(&mut net, 0, "dir_last_sent");
    eprintln!(
        "join, directory: mesh of 3, {k} clients: {into} bytes into the joiner, one copy {copy}: {ratio:.2} x (s0's links pushed {sent} entries in their last reconciliations)"
    );
    assert!(
        ratio <= 1.3,
        "{ratio:.2} copies of the directory into the joiner"
    );
}
