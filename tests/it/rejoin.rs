//! A restarted server rejoins and catches up from its journal cursor (docs/PROTOCOL.md
//! §8.10).
//!
//! Three real servers A, B and C on loopback, each durable in its own data directory,
//! peered in a line A <-> B <-> C (each names its neighbours with `--peer`). 2,000 contacts
//! written at A reach all three. C is SIGKILLed; while it is down 300 changes are made at
//! A and 200 at B (some overwrite contacts, some are new). C restarts on the same data
//! directory and port and must end with the same contacts as A and B, and its peers must
//! have caught it up from C's persisted cursors on their journals: the journal lines and
//! records sent to C after the restart are at most twice the changes made while C was
//! down, and the records are at most those changes (a sender more than 4096 lines ahead
//! reconciles, §8.20, and pushes only what C lacks; never the whole list). C's own journal
//! id survives the crash.
//!
//! Two variants: the default (where servers may also link to every server learned from
//! the node list, so A links to C too and both A and B push to it: every link toward C is
//! counted) and a strict line (`--no-mesh`, when the binary has that flag), where B is
//! C's only source.
//!
//! Every wait has a deadline (status polled over TCP); no fixed sleeps pace the test.
//! Every server is a `Proc`, killed by its pid when dropped, also when the test panics.

use crate::common;
use crate::common::free_port;

use common::{bin, field, Server};
use rendezvous::client::contacts::ContactsClient;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Deadline of one client round trip on a loaded box.
const T: Duration = Duration::from_secs(20);
/// Deadline of each convergence wait.
const CONVERGE: Duration = Duration::from_secs(60);
/// Pause between two polls of the servers' status (a poll interval, not a wait).
const POLL: Duration = Duration::from_millis(100);

const INITIAL: usize = 2000;
const A_OVERWRITES: usize = 150;
const A_NEW: usize = 150;
const B_OVERWRITES: usize = 100;
const B_NEW: usize = 100;
const CHANGES_WHILE_DOWN: u64 = (A_OVERWRITES + A_NEW + B_OVERWRITES + B_NEW) as u64;

fn serve_cmd(name: &str, port: u16, dir: &Path, peers: &[u16], extra: &[String]) -> Command {
    let mut cmd = bin();
    cmd.args(["serve", "--open-contacts"])
        .args(extra)
        .args(["--alias", name])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir);
    for p in peers {
        cmd.args(["--peer", &format!("127.0.0.1:{p}")]);
    }
    cmd
}

/// One server of the line: its fixed port, data directory and peers, and the running
/// process (if any).
struct Node {
    name: &'static str,
    port: u16,
    dir: PathBuf,
    peers: Vec<u16>,
    extra: Vec<String>,
    server: Option<Server>,
}

impl Node {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn start(&mut self) -> Result<(), Vec<String>> {
        let s = Server::try_spawn(
            self.name,
            serve_cmd(self.name, self.port, &self.dir, &self.peers, &self.extra),
        )?;
        assert_eq!(s.addr, self.addr(), "{}: listening address", self.name);
        self.server = Some(s);
        Ok(())
    }
}

/// Starts A, B and C peered A <-> B <-> C, each on a fresh data directory under `root`.
/// Ports are chosen first so that each can name its neighbours; a port taken in between
/// makes a server fail to start, and the whole line is tried again on new ports.
fn start_line(root: &Path, extra: &[String]) -> [Node; 3] {
    for attempt in 0..5 {
        let [pa, pb, pc] = [free_port(), free_port(), free_port()];
        if pa == pb || pb == pc || pa == pc {
            continue;
        }
        let dir = |n: &str| root.join(format!("{n}-{attempt}"));
        let mut nodes = [
            Node {
                name: "A",
                port: pa,
                dir: dir("a"),
                peers: vec![pb],
                extra: extra.to_vec(),
                server: None,
            },
            Node {
                name: "B",
                port: pb,
                dir: dir("b"),
                peers: vec![pa, pc],
                extra: extra.to_vec(),
                server: None,
            },
            Node {
                name: "C",
                port: pc,
                dir: dir("c"),
                peers: vec![pb],
                extra: extra.to_vec(),
                server: None,
            },
        ];
        let mut ok = true;
        for n in &mut nodes {
            if let Err(stderr) = n.start() {
                eprintln!(
                    "{} did not start on port {} (attempt {attempt}): {stderr:?}",
                    n.name, n.port
                );
                ok = false;
                break;
            }
        }
        if ok {
            return nodes;
        }
    }
    panic!("could not start the three servers in 5 attempts");
}

fn client(addr: SocketAddr, name: &str) -> ContactsClient {
    ContactsClient::connect(addr, name, T).unwrap_or_else(|e| panic!("{name}: connect: {e}"))
}

/// A server's status: the `key=value` lines (top-level keys on their own lines, then one
/// `peer=` line per peer link).
struct Status {
    lines: Vec<String>,
}

impl Status {
    fn get(addr: SocketAddr) -> Status {
        let text = client(addr, "status")
            .status()
            .unwrap_or_else(|e| panic!("status of {addr}: {e}"));
        Status {
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    /// The value of a top-level key (a line starting with `key=`), if there is one.
    fn value_opt(&self, key: &str) -> Option<&str> {
        let tag = format!("{key}=");
        self.lines.iter().find_map(|l| l.strip_prefix(&tag))
    }

    /// The value of a top-level key (a line starting with `key=`).
    fn value(&self, key: &str) -> &str {
        self.value_opt(key)
            .unwrap_or_else(|| panic!("no {key}= line in {:?}", self.lines))
    }

    fn head(&self) -> u64 {
        self.journal().1
    }

    fn contacts(&self) -> u64 {
        self.value("contacts").parse().expect("contacts=N")
    }

    fn digest(&self) -> &str {
        self.value("contacts_sha512")
    }

    /// `journal=ID:HEAD` of this server's own journal.
    fn journal(&self) -> (String, u64) {
        let v = self.value("journal");
        let (id, head) = v
            .split_once(':')
            .unwrap_or_else(|| panic!("journal={v} is not ID:HEAD"));
        (id.to_string(), head.parse().expect("journal head"))
    }

    /// The link line toward `peer`, if this server has a link to it.
    fn peer_opt(&self, peer: SocketAddr) -> Option<PeerLine> {
        let tag = format!("peer={peer} ");
        let line = self.lines.iter().find(|l| l.starts_with(&tag))?.clone();
        let num = |k: &str| -> u64 {
            field(&line, k)
                .unwrap_or_else(|| panic!("no {k}= in {line:?}"))
                .parse()
                .unwrap_or_else(|e| panic!("{k}= in {line:?}: {e}"))
        };
        Some(PeerLine {
            state: field(&line, "state").expect("state=").to_string(),
            // On a peer line `journal=` is the link's phase (live, catching_up, ...).
            phase: field(&line, "journal").expect("journal=").to_string(),
            pushed_line: num("pushed_line"),
            confirmed_line: num("confirmed_line"),
            entries_sent: num("entries_sent"),
            records_sent: num("records_sent"),
            line,
        })
    }
}

#[derive(Debug)]
struct PeerLine {
    state: String,
    phase: String,
    pushed_line: u64,
    confirmed_line: u64,
    entries_sent: u64,
    records_sent: u64,
    line: String,
}

/// Polls the status of every node until all report `want` contacts and one digest, and
/// `extra` holds; returns the last statuses.
fn wait_converged(
    what: &str,
    nodes: &[&Node],
    want: u64,
    mut extra: impl FnMut(&[Status]) -> bool,
) -> Vec<Status> {
    let started = Instant::now();
    let deadline = started + CONVERGE;
    loop {
        let st: Vec<Status> = nodes.iter().map(|n| Status::get(n.addr())).collect();
        let counts: Vec<u64> = st.iter().map(Status::contacts).collect();
        let same = st.iter().all(|s| s.digest() == st[0].digest());
        if same && counts.iter().all(|&c| c == want) && extra(&st) {
            eprintln!("rejoin: {what}: converged in {:.2?}", started.elapsed());
            return st;
        }
        if Instant::now() >= deadline {
            let report: Vec<String> = nodes
                .iter()
                .zip(&st)
                .map(|(n, s)| format!("{}:\n    {}", n.name, s.lines.join("\n    ")))
                .collect();
            panic!(
                "{what}: no convergence in {CONVERGE:?} (want {want} contacts everywhere); \
                 counts {counts:?}; statuses:\n{}",
                report.join("\n")
            );
        }
        thread::sleep(POLL);
    }
}

/// Polls `cond` on a node's status until it holds, with a deadline.
fn wait_status(what: &str, addr: SocketAddr, mut cond: impl FnMut(&Status) -> bool) -> Status {
    let deadline = Instant::now() + T;
    loop {
        let s = Status::get(addr);
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {T:?}; status of {addr}: {:?}",
            s.lines
        );
        thread::sleep(POLL);
    }
}

type Expected = BTreeMap<(String, String), String>;

/// Writes `(user, contact, phone)` rows at `addr` on one connection, then a barrier.
fn write_all(
    addr: SocketAddr,
    who: &str,
    rows: &[(String, String, String)],
    expected: &mut Expected,
) {
    let mut w = client(addr, who);
    for (u, c, p) in rows {
        w.update(u, c, p)
            .unwrap_or_else(|e| panic!("{who}: update: {e}"));
        expected.insert((u.clone(), c.clone()), p.clone());
    }
    w.barrier()
        .unwrap_or_else(|e| panic!("{who}: barrier: {e}"));
}

fn key(i: usize) -> (String, String) {
    (format!("user{:02}", i % 61), format!("contact{i:05}"))
}

fn rows(range: std::ops::Range<usize>, prefix: char) -> Vec<(String, String, String)> {
    range
        .map(|i| {
            let (u, c) = key(i);
            (u, c, format!("{prefix}{i:010}"))
        })
        .collect()
}

/// True when the binary under test has `serve --no-mesh` (keep to the `--peer` links).
fn has_no_mesh_flag() -> bool {
    let mut cmd = bin();
    cmd.args(["serve", "--help"]);
    let done = common::run("serve-help", cmd, T);
    done.assert_success("rendezvous serve --help");
    done.stdout.iter().any(|l| l.contains("--no-mesh"))
}

/// What one server's link toward C had sent, at some moment.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    entries: u64,
    records: u64,
}

/// The links toward `c` on the senders (A and B): `Some` for those that have one.
fn links_to(st: &[Status], c: SocketAddr) -> Vec<Option<PeerLine>> {
    st.iter().map(|s| s.peer_opt(c)).collect()
}

/// True when sender `s`'s link toward `c` (if it has one) is up, live and has pushed its
/// whole journal; with `confirmed`, when C also confirmed all of it durable (a heartbeat
/// barrier answered after it, so C's cursor on that journal is at its head).
fn caught_up(s: &Status, c: SocketAddr, confirmed: bool) -> bool {
    match s.peer_opt(c) {
        None => true,
        Some(l) => {
            l.state == "up"
                && l.phase == "live"
                && l.pushed_line == s.head()
                && (!confirmed || l.confirmed_line == l.pushed_line)
        }
    }
}

/// The whole scenario; `extra` goes to every `serve`.
fn rejoin(variant: &str, extra: &[String]) {
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("rdv-rejoin-")
        .tempdir()
        .expect("temp dir");
    let mut nodes = start_line(tmp.path(), extra);
    let (a_addr, b_addr, c_addr) = (nodes[0].addr(), nodes[1].addr(), nodes[2].addr());
    let mut expected = Expected::new();

    // 1. 2,000 contacts at A reach B and C. Before the kill, wait until every link toward
    //    C is caught up and C confirmed it durable (its cursors are at the senders' heads),
    //    and, where servers keep a node list, until all three know all three (so no link
    //    toward C appears later and replays a journal from its start).
    write_all(a_addr, "writer-A", &rows(0..INITIAL, '1'), &mut expected);
    let st = {
        let [a, b, c] = &nodes;
        wait_converged(
            &format!("{variant}: initial 2,000 at A"),
            &[a, b, c],
            INITIAL as u64,
            |st| {
                let nodes_known = st
                    .iter()
                    .map(|s| {
                        s.value_opt("nodes")
                            .map(|n| n.parse::<u64>().expect("nodes=N"))
                    })
                    .all(|n| n.map_or(true, |n| n >= 3));
                nodes_known
                    && st[1].peer_opt(c_addr).is_some()
                    && st[..2].iter().all(|s| caught_up(s, c_addr, true))
            },
        )
    };
    let c_before = &st[2];
    let (c_journal_id, c_head_before) = c_before.journal();
    assert_eq!(
        c_head_before, INITIAL as u64,
        "C journaled each of the {INITIAL} contacts it learned once: {:?}",
        c_before.lines
    );
    let c_before_lines = c_before.lines.clone();

    // 2. SIGKILL C (by its pid) and wait until no link toward C is up.
    {
        let c = nodes[2].server.as_mut().expect("C runs");
        let pid = c.pid();
        c.proc.kill();
        let status = c.proc.wait_exit(Duration::ZERO).expect("C reaped");
        assert!(!status.success(), "C was killed: {status}");
        eprintln!("rejoin: {variant}: SIGKILLed C (pid {pid}, {status})");
    }
    nodes[2].server = None;
    for n in &nodes[..2] {
        wait_status(&format!("{} notices C is gone", n.name), n.addr(), |s| {
            s.peer_opt(c_addr).map_or(true, |l| l.state != "up")
        });
    }

    // 3. While C is down: 300 changes at A (150 overwrites, 150 new) and 200 at B (100
    //    overwrites, 100 new), on distinct keys so the result does not depend on order.
    let mut down_a = rows(0..A_OVERWRITES, '2');
    down_a.extend(rows(INITIAL..INITIAL + A_NEW, '2'));
    let mut down_b = rows(1000..1000 + B_OVERWRITES, '3');
    down_b.extend(rows(3000..3000 + B_NEW, '3'));
    write_all(a_addr, "writer-A2", &down_a, &mut expected);
    write_all(b_addr, "writer-B", &down_b, &mut expected);
    let total = expected.len() as u64;
    assert_eq!(total, (INITIAL + A_NEW + B_NEW) as u64);
    let ab = {
        let [a, b, _] = &nodes;
        wait_converged(
            &format!("{variant}: A and B while C is down"),
            &[a, b],
            total,
            |_| true,
        )
    };
    // The senders' counters toward C, frozen while the links are down (they count since
    // each sender started), and their journal heads.
    let before = links_to(&ab, c_addr);
    let heads_before: Vec<u64> = ab.iter().map(Status::head).collect();
    for l in before.iter().flatten() {
        assert_ne!(l.state, "up", "{l:?}");
    }

    // 4. C restarts on the same data directory and port.
    let restarted = Instant::now();
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match nodes[2].start() {
                Ok(()) => break,
                Err(stderr) => {
                    assert!(
                        Instant::now() < deadline,
                        "C did not restart on port {}: {stderr:?}",
                        nodes[2].port
                    );
                    eprintln!("rejoin: {variant}: C's restart failed, retrying: {stderr:?}");
                    thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }
    // 6 (first half). C's journal id survived the crash: the first status after the
    // restart names the same journal, not a fresh one, and its head did not go back.
    let c_first = Status::get(c_addr);
    let (c_id_after, c_head_at_restart) = c_first.journal();
    assert_eq!(
        c_id_after, c_journal_id,
        "C's journal id changed across the restart (journal reset): before {c_before_lines:?}, \
         after {:?}",
        c_first.lines
    );
    assert!(
        c_head_at_restart >= c_head_before,
        "C's journal head went back across the restart: {c_head_before} -> {c_head_at_restart}"
    );

    let st = {
        let [a, b, c] = &nodes;
        wait_converged(
            &format!("{variant}: A, B and C after C's restart"),
            &[a, b, c],
            total,
            |st| {
                // Every link toward C that was there before is back, caught up and live.
                before
                    .iter()
                    .zip(&st[..2])
                    .all(|(b, s)| b.is_none() || s.peer_opt(c_addr).is_some())
                    && st[..2].iter().all(|s| caught_up(s, c_addr, false))
            },
        )
    };
    let rejoin_time = restarted.elapsed();
    let node_counts: Vec<Option<&str>> = st.iter().map(|s| s.value_opt("nodes")).collect();
    eprintln!("rejoin: {variant}: nodes= after the restart (A, B, C): {node_counts:?}");

    // 5. The catch-up toward C came from the senders' journals, from C's cursors.
    let after = links_to(&st[..2], c_addr);
    let mut sent = Vec::new();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let name = nodes[i].name;
        let b = b.as_ref().map_or(Sent::default(), |l| Sent {
            entries: l.entries_sent,
            records: l.records_sent,
        });
        let a = a.as_ref().map_or(Sent::default(), |l| Sent {
            entries: l.entries_sent,
            records: l.records_sent,
        });
        assert!(
            a.entries >= b.entries && a.records >= b.records,
            "{name}'s counters toward C went back: before {:?}, after {:?}",
            before[i],
            after[i]
        );
        let d = Sent {
            entries: a.entries - b.entries,
            records: a.records - b.records,
        };
        eprintln!(
            "rejoin: {variant}: {name} -> C after the restart: {} journal entries, {} snapshot \
             records; before: {:?}; after: {:?}",
            d.entries,
            d.records,
            before[i].as_ref().map(|l| &l.line),
            after[i].as_ref().map(|l| &l.line)
        );
        sent.push((name, d));
    }
    let entries: u64 = sent.iter().map(|(_, d)| d.entries).sum();
    let records: u64 = sent.iter().map(|(_, d)| d.records).sum();
    eprintln!(
        "rejoin: {variant}: C rejoined in {rejoin_time:.2?}; {CHANGES_WHILE_DOWN} changes while \
         it was down; {entries} journal entries and {records} snapshot records sent to it \
         after the restart ({sent:?})"
    );
    let heads_after: Vec<u64> = st[..2].iter().map(Status::head).collect();
    assert_eq!(
        heads_after, heads_before,
        "A's and B's journals grew after C's restart (C sent them changes they lacked)"
    );
    // More than 4096 lines behind, the senders reconcile (docs/PROTOCOL.md §8.20) and
    // push only the records C lacks; at most 4096 behind, they page the journal. Either
    // way C gets what it missed, never the whole list.
    let got = entries + records;
    assert!(
        records <= CHANGES_WHILE_DOWN,
        "C was sent {records} snapshot records for {CHANGES_WHILE_DOWN} changes made while it \
         was down: a full snapshot of {total} contacts, not what it missed ({sent:?})"
    );
    assert!(
        got <= 2 * CHANGES_WHILE_DOWN,
        "C was sent {got} records and journal entries after the restart for \
         {CHANGES_WHILE_DOWN} changes made while it was down (at most {}): not a catch-up \
         from its cursor ({sent:?})",
        2 * CHANGES_WHILE_DOWN
    );
    assert!(
        got >= CHANGES_WHILE_DOWN,
        "C was sent only {got} records and journal entries after the restart, yet it learned \
         {CHANGES_WHILE_DOWN} changes from its peers ({sent:?})"
    );

    // 6 (second half). C's journal is still the one it had, and grew by what it learned.
    let (c_id_end, c_head_end) = st[2].journal();
    assert_eq!(c_id_end, c_journal_id, "C's journal id at the end");
    assert_eq!(
        c_head_end,
        c_head_before + CHANGES_WHILE_DOWN,
        "C journaled each of the {CHANGES_WHILE_DOWN} changes it caught up on once"
    );

    // C lists exactly what A lists, and what was written.
    let la = client(a_addr, "list-A").list_all().expect("ListAll at A");
    let lc = client(c_addr, "list-C").list_all().expect("ListAll at C");
    assert_eq!(lc.len(), la.len(), "C and A list as many contacts");
    assert!(lc == la, "C's contacts differ from A's");
    let want: Vec<(String, String, String)> =
        expected.into_iter().map(|((u, c), p)| (u, c, p)).collect();
    assert!(lc == want, "C's contacts differ from what was written");
    eprintln!(
        "rejoin: {variant}: C's journal {c_journal_id}: head {c_head_before} before the kill, \
         {c_head_at_restart} at restart, {c_head_end} at the end; total {:.2?}",
        t0.elapsed()
    );
}

/// The servers as they run by default: `--peer` links, plus (where the server meshes)
/// links to every server learned from the node list.
#[test]
fn restarted_server_catches_up_from_its_journal_cursor() {
    rejoin("default", &[]);
}

/// A strict line: only the `--peer` links, so B is C's only source and the catch-up is
/// B's journal since C's cursor on it.
#[test]
fn restarted_server_in_a_line_catches_up_from_its_journal_cursor() {
    let extra: Vec<String> = if has_no_mesh_flag() {
        vec!["--no-mesh".to_string()]
    } else {
        Vec::new() // a server without the flag keeps to its --peer links anyway
    };
    rejoin("line", &extra);
}
