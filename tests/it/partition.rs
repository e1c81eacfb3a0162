//! Network partitions between federated servers, across real network namespaces.
//!
//! ```text
//!            s0 203.0.113.2 ─┐                 ┌─ 203.0.113.10 s2
//!   group A                  ├── net (router) ─┤                   group B
//!            s1 203.0.113.6 ─┘   .1 .5 .9 .13  └─ 203.0.113.14 s3
//! ```
//!
//! Four `rendezvous serve --memory-only` processes, each in its own namespace with one veth
//! to a router namespace `net` (link i is 203.0.113.4i+1/30 on the router, .4i+2/30 on the
//! server), in a ring s0 - s1 - s3 - s2 - s0: each server a `--peer` of its two neighbours,
//! with `--no-mesh`, so two links cross the cut (s0 - s2 and s1 - s3) and every server
//! receives each change from its two neighbours, at most twice. The router forwards
//! everything; a `table inet rdvpart` counts the bytes that cross between the groups
//! {s0, s1} and {s2, s3} (named counters `a_to_b`, `b_to_a`, IP packet lengths), and a
//! partition is a second table, `inet rdvcut`, whose forward chain (earlier priority)
//! drops whatever would cross. The processes keep running; healing deletes `rdvcut`.
//!
//! The test process talks to the servers over TCP sockets made inside the servers' own
//! namespaces (a helper thread does `setns`), so none of its traffic crosses the router or
//! the counters: status (command 6) in the client role, writes in the client role followed
//! by a Barrier, and, in the server role (the servers run with `--allow-peer
//! 203.0.113.0/24`), AskForUpdate dumps with clocks and the bulk load of the figures test.
//!
//! A partition is held `RDV_PARTITION_HOLD_S` seconds (default 15) after the writes on
//! both sides. The drop is silent (no RST, no ICMP), as in a real outage: the links stay
//! established and their unacknowledged pushes wait in TCP retransmission, so the time
//! from the heal to convergence follows TCP's retransmission backoff, and grows with the
//! length of the partition.
//!
//! Needs root, `ip`, `nft` and `sysctl`; without them the tests print a note and pass,
//! except with `CI=true`, where they fail. Only 203.0.113.0/24, inside namespaces these
//! tests create; every namespace and process is removed when a test ends or panics.

use crate::common;

use common::netns::{can_run, Netns};
use common::{run, Server, BIN};
use sha2::{Digest, Sha512};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// TCP and UDP port of every server (each has its own namespace).
const PORT: u16 = 4747;

/// Servers in the mesh; 0 and 1 form group A, 2 and 3 group B.
const N: usize = 4;

/// Peer links per server: its two neighbours in the ring s0 - s1 - s3 - s2 - s0.
const LINKS: usize = 2;

/// Server `i`'s neighbours in the ring: one in its own group, one across the cut.
fn neighbours(i: usize) -> [usize; 2] {
    [[1, 2], [0, 3], [0, 3], [1, 2]][i]
}

/// Deadline for the mesh to converge (after writes, or after a heal).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the digests are polled while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Read and write timeout of the test's own TCP connections.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a partition is held (after the writes on both sides), unless
/// `RDV_PARTITION_HOLD_S` says otherwise: several heartbeat intervals (5 s), so the links
/// see heartbeats go unanswered and TCP backs its retransmissions off, as in a real outage.
const DEFAULT_HOLD: Duration = Duration::from_secs(15);

/// The size of a server-role Update frame: `[0x01][clock u32][user 256][contact 256][phone 20]`.
const RECORD_LEN: usize = 537;

/// A journal push (command 13): `[0x0d][line u64][clock u32][user 256][contact 256][phone 20]`.
const JOURNAL_FRAME_LEN: usize = 545;

const NAME_LEN: usize = 256;
const PHONE_LEN: usize = 20;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A contact's key and (clock, phone).
type Key = (String, String);
type Contacts = BTreeMap<Key, (u32, String)>;

fn host_ip(i: usize) -> String {
    format!("203.0.113.{}", 4 * i + 2)
}

fn router_ip(i: usize) -> String {
    format!("203.0.113.{}", 4 * i + 1)
}

fn server_addr(i: usize) -> SocketAddr {
    format!("{}:{PORT}", host_ip(i)).parse().expect("literal")
}

fn group_a() -> String {
    format!("{}, {}", host_ip(0), host_ip(1))
}

fn group_b() -> String {
    format!("{}, {}", host_ip(2), host_ip(3))
}

fn counters_ruleset() -> String {
    format!(
        "table inet rdvpart {{
    counter a_to_b {{ }}
    counter b_to_a {{ }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ip saddr {{ {a} }} ip daddr {{ {b} }} counter name \"a_to_b\"
        ip saddr {{ {b} }} ip daddr {{ {a} }} counter name \"b_to_a\"
    }}
}}
",
        a = group_a(),
        b = group_b()
    )
}

fn cut_ruleset() -> String {
    format!(
        "table inet rdvcut {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip saddr {{ {a} }} ip daddr {{ {b} }} drop
        ip saddr {{ {b} }} ip daddr {{ {a} }} drop
    }}
}}
",
        a = group_a(),
        b = group_b()
    )
}

/// Bytes and packets that crossed between the groups (both directions), from the router.
#[derive(Debug, Clone, Copy, Default)]
struct Cross {
    a_to_b: (u64, u64),
    b_to_a: (u64, u64),
}

impl Cross {
    fn since(&self, before: &Cross) -> Cross {
        Cross {
            a_to_b: (
                self.a_to_b.0 - before.a_to_b.0,
                self.a_to_b.1 - before.a_to_b.1,
            ),
            b_to_a: (
                self.b_to_a.0 - before.b_to_a.0,
                self.b_to_a.1 - before.b_to_a.1,
            ),
        }
    }

    fn packets(&self) -> u64 {
        self.a_to_b.0 + self.b_to_a.0
    }

    fn bytes(&self) -> u64 {
        self.a_to_b.1 + self.b_to_a.1
    }

    fn describe(&self) -> String {
        // IPv4 20 + TCP 32 (timestamps) per packet: what is left is (about) TCP payload.
        let payload = self.bytes().saturating_sub(52 * self.packets());
        format!(
            "A->B {} packets {} bytes, B->A {} packets {} bytes; total {} bytes \
             (= ~{} frames of {RECORD_LEN} bytes; ~{} bytes of TCP payload = ~{} frames of \
             {RECORD_LEN} or ~{} journal frames of {JOURNAL_FRAME_LEN})",
            self.a_to_b.0,
            self.a_to_b.1,
            self.b_to_a.0,
            self.b_to_a.1,
            self.bytes(),
            self.bytes() / RECORD_LEN as u64,
            payload,
            payload / RECORD_LEN as u64,
            payload / JOURNAL_FRAME_LEN as u64
        )
    }
}

/// Four servers in four namespaces behind one router namespace, in a ring.
/// Fields drop in order: the servers (killed by pid) before the namespaces.
struct Mesh {
    servers: Vec<Server>,
    hosts: Vec<Netns>,
    router: Netns,
}

impl Mesh {
    fn create(tag: &str, extra: &[&str]) -> Mesh {
        let started = Instant::now();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("rdv{}-{tag}{n}", std::process::id());
        let router = Netns::create(&format!("{base}-net"));
        let mut hosts = Vec::new();
        for i in 0..N {
            hosts.push(Netns::create(&format!("{base}-s{i}")));
        }
        for (i, host) in hosts.iter().enumerate() {
            let dev = format!("s{i}");
            let mut cmd = Command::new("ip");
            cmd.args(["link", "add", &dev, "netns", router.name()])
                .args(["type", "veth", "peer", "name", "eth0", "netns", host.name()]);
            run("ip link add", cmd, Duration::from_secs(20)).assert_success("ip link add veth");
            router.ip(&["addr", "add", &format!("{}/30", router_ip(i)), "dev", &dev]);
            router.ip(&["link", "set", &dev, "up"]);
            host.ip(&["addr", "add", &format!("{}/30", host_ip(i)), "dev", "eth0"]);
            host.ip(&["link", "set", "eth0", "up"]);
            host.ip(&["route", "add", "default", "via", &router_ip(i)]);
        }
        router.sysctl("net.ipv4.ip_forward", "1");
        router.nft(&counters_ruleset());
        let mut mesh = Mesh {
            servers: Vec::new(),
            hosts,
            router,
        };
        for i in 0..N {
            let mut cmd = mesh.hosts[i].command(BIN);
            cmd.args(["serve", "--memory-only", "--alias", &format!("s{i}")])
                .args(["--listen", &server_addr(i).to_string()]);
            for j in neighbours(i) {
                cmd.args(["--peer", &server_addr(j).to_string()]);
            }
            cmd.args(["--no-mesh", "--open-contacts"]);
            // The test speaks the seed's clear-text server role to the servers (AskForUpdate
            // dumps, the bulk load), and counts the links' bytes: clear text, as the seed
            // (docs/PROTOCOL.md §8.19; tests/it/tls.rs covers TLS links).
            cmd.arg("--plain-peers");
            cmd.args(extra);
            let server = Server::spawn(&format!("s{i}"), cmd);
            assert_eq!(server.addr, server_addr(i), "s{i} bound elsewhere");
            mesh.servers.push(server);
        }
        eprintln!("mesh {base}: built in {:.1?}", started.elapsed());
        mesh
    }

    /// A TCP connection to server `i`, made inside its own namespace.
    fn connect(&self, i: usize) -> std::io::Result<TcpStream> {
        connect_in(&self.hosts[i], server_addr(i))
    }

    /// Server `i`'s status lines (command 6 in the client role).
    fn status(&self, i: usize) -> Vec<String> {
        let text = (|| -> std::io::Result<String> {
            let mut s = self.connect(i)?;
            s.write_all(&hello(2, "partition-status"))?;
            s.write_all(&[6])?;
            let mut head = [0u8; 5];
            s.read_exact(&mut head)?;
            if head[0] != 6 {
                return Err(std::io::Error::other(format!("status answer {head:?}")));
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut text = vec![0u8; len];
            s.read_exact(&mut text)?;
            Ok(String::from_utf8_lossy(&text).into_owned())
        })()
        .unwrap_or_else(|e| panic!("status of s{i}: {e}"));
        text.lines().map(str::to_string).collect()
    }

    /// (contacts, contacts_sha512) of every server.
    fn digests(&self) -> Vec<(u64, String)> {
        (0..N)
            .map(|i| {
                let st = self.status(i);
                let count = value(&st, "contacts").parse().expect("contacts=N");
                (count, value(&st, "contacts_sha512"))
            })
            .collect()
    }

    /// (directory, directory_sha512) of every server: its UDP directory, local and remote
    /// entries.
    fn directories(&self) -> Vec<(u64, String)> {
        (0..N)
            .map(|i| {
                let st = self.status(i);
                let count = value(&st, "directory").parse().expect("directory=N");
                (count, value(&st, "directory_sha512"))
            })
            .collect()
    }

    /// Journal lines and full-push records server `j` has received from its peers since
    /// it started (status `received_from=sK entries=N records=M`, summed).
    fn received(&self, j: usize) -> (u64, u64) {
        self.status(j)
            .iter()
            .filter(|l| l.starts_with("received_from="))
            .map(|l| {
                let n = |k: &str| {
                    common::field(l, k)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                (n("entries"), n("records"))
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Waits until every link is up, live, and confirmed up to what it pushed (the journal
    /// catch-up after a heal is complete everywhere, not just the digests equal).
    fn wait_caught_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let done = (0..N).all(|i| {
                let peers = peer_lines(&self.status(i));
                peers.len() == LINKS
                    && peers.iter().all(|l| {
                        common::field(l, "state") == Some("up")
                            && common::field(l, "journal") == Some("live")
                            && common::field(l, "pushed_line") == common::field(l, "confirmed_line")
                    })
            });
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "links not caught up after {timeout:?}: {}",
                self.link_states()
            );
            thread::sleep(POLL);
        }
    }

    /// Polls [`Self::directories`] until `done`, or panics after `timeout`.
    fn wait_directories(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[(u64, String)]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let d = self.directories();
            if done(&d) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{what}: not reached after {timeout:?}: {:?}",
                short(&d)
            );
            thread::sleep(POLL);
        }
    }

    /// A client registered at server `i` with a fresh identity, run inside the server's
    /// namespace (it keeps alive until dropped).
    fn register(&self, i: usize, id: &common::Identity) -> common::Proc {
        let srv = server_addr(i).to_string();
        let mut p = self.hosts[i].spawn(
            &format!("register-s{i}"),
            BIN,
            [
                std::ffi::OsStr::new("register"),
                std::ffi::OsStr::new("--server"),
                std::ffi::OsStr::new(&srv),
                std::ffi::OsStr::new("--identity"),
                id.dir_arg(),
            ],
        );
        p.out.expect("registered", Duration::from_secs(20), |l| {
            l.starts_with("registered ")
        });
        p
    }

    /// Waits until every server has 3 peer links up.
    fn wait_links_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let all: Vec<Vec<String>> = (0..N).map(|i| peer_lines(&self.status(i))).collect();
            let up = all.iter().all(|p| {
                p.len() == LINKS && p.iter().all(|l| common::field(l, "state") == Some("up"))
            });
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "peer links not all up after {timeout:?}: {all:#?}"
            );
            thread::sleep(POLL);
        }
    }

    /// Polls until `done(digests)` holds; returns the time it took. Panics with the last
    /// digests and peer states at the deadline.
    fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[(u64, String)]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        let mut last_states = String::new();
        loop {
            let d = self.digests();
            if done(&d) {
                return started.elapsed();
            }
            // Report changes of the peer links while waiting (a drop, a reconnect).
            let states = self.link_states();
            if states != last_states {
                eprintln!("[{:>6.1?}] {what}: links {states}", started.elapsed());
                last_states = states;
            }
            if started.elapsed() >= timeout {
                let peers: Vec<Vec<String>> = (0..N).map(|i| peer_lines(&self.status(i))).collect();
                panic!(
                    "{what}: not reached after {timeout:?}; counts/digests: {:#?}\npeers: {peers:#?}",
                    short(&d)
                );
            }
            thread::sleep(POLL);
        }
    }

    /// A compact view of every link's state: `s0[up up] s1[...]`.
    fn link_states(&self) -> String {
        (0..N)
            .map(|i| {
                let states: Vec<String> = peer_lines(&self.status(i))
                    .iter()
                    .map(|l| common::field(l, "state").unwrap_or("?").to_string())
                    .collect();
                format!("s{i}[{}]", states.join(" "))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn cross(&self) -> Cross {
        let read = |name: &str| -> (u64, u64) {
            let out = self
                .router
                .exec("nft", &["list", "counter", "inet", "rdvpart", name]);
            let line = out
                .iter()
                .find(|l| l.contains("packets"))
                .unwrap_or_else(|| panic!("no counter {name} in {out:?}"));
            let words: Vec<&str> = line.split_whitespace().collect();
            let num = |key: &str| -> u64 {
                let i = words.iter().position(|w| *w == key).expect(key);
                words[i + 1].parse().expect("counter value")
            };
            (num("packets"), num("bytes"))
        };
        Cross {
            a_to_b: read("a_to_b"),
            b_to_a: read("b_to_a"),
        }
    }

    fn partition(&self) {
        self.router.nft(&cut_ruleset());
    }

    fn heal(&self) {
        self.router
            .exec("nft", &["delete", "table", "inet", "rdvcut"]);
    }

    /// Writes contacts to server `i` in the client role, then waits for the Barrier's 200.
    fn write(&self, i: usize, records: &[(String, String, String)]) {
        let result = (|| -> std::io::Result<()> {
            let s = self.connect(i)?;
            let mut w = BufWriter::with_capacity(1 << 20, s.try_clone()?);
            w.write_all(&hello(2, "partition-writer"))?;
            for (user, contact, phone) in records {
                w.write_all(&[1])?;
                w.write_all(&pad(user, NAME_LEN))?;
                w.write_all(&pad(contact, NAME_LEN))?;
                w.write_all(&pad(phone, PHONE_LEN))?;
            }
            w.write_all(&[5])?;
            w.flush()?;
            drop(w);
            expect_200(&s)
        })();
        result.unwrap_or_else(|e| panic!("writing {} contacts to s{i}: {e}", records.len()));
    }

    /// Every contact of server `i` with its clock (AskForUpdate in the server role).
    fn dump(&self, i: usize) -> Contacts {
        let result = (|| -> std::io::Result<Contacts> {
            let mut s = self.connect(i)?;
            s.write_all(&hello(1, "partition-dump"))?;
            s.write_all(&[4])?;
            let mut r = std::io::BufReader::with_capacity(1 << 20, s);
            let mut count = [0u8; 4];
            r.read_exact(&mut count)?;
            if count[0] == 7 {
                return Err(std::io::Error::other(format!(
                    "refused with a status frame starting {count:02x?}"
                )));
            }
            let count = u32::from_be_bytes(count);
            let mut out = Contacts::new();
            let mut rec = [0u8; RECORD_LEN];
            for _ in 0..count {
                r.read_exact(&mut rec)?;
                if rec[0] != 1 {
                    return Err(std::io::Error::other(format!("record tag {}", rec[0])));
                }
                let clock = u32::from_be_bytes([rec[1], rec[2], rec[3], rec[4]]);
                let user = unpad(&rec[5..5 + NAME_LEN]);
                let contact = unpad(&rec[5 + NAME_LEN..5 + 2 * NAME_LEN]);
                let phone = unpad(&rec[5 + 2 * NAME_LEN..]);
                out.insert((user, contact), (clock, phone));
            }
            Ok(out)
        })();
        result.unwrap_or_else(|e| panic!("AskForUpdate from s{i}: {e}"))
    }

    /// Prints the warnings and errors the servers logged, and checks they are all alive.
    fn report_logs(&mut self) {
        for s in &mut self.servers {
            let name = s.proc.name().to_string();
            if let Some(status) = s.proc.wait_exit(Duration::ZERO) {
                panic!(
                    "{name} exited ({status}); stderr:\n{}",
                    s.proc.stderr_lines().join("\n")
                );
            }
            let lines = s.proc.stderr_lines();
            let notable: Vec<&String> = lines
                .iter()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("dropping"))
                .collect();
            eprintln!(
                "{name}: {} stderr lines kept, {} warnings/errors",
                lines.len(),
                notable.len()
            );
            for l in notable.iter().take(20) {
                eprintln!("    {l}");
            }
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // Servers first (by pid), then the namespaces (the fields' own drops), which takes
        // the partition's nftables table with them.
        for s in &mut self.servers {
            s.proc.kill();
        }
    }
}

/// A TCP connection to `addr` made inside `ns`: a helper thread enters the namespace
/// (`setns` changes only the calling thread) and connects; the socket keeps its namespace.
fn connect_in(ns: &Netns, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let path = format!("/run/netns/{}", ns.name());
    thread::spawn(move || -> std::io::Result<TcpStream> {
        let file = File::open(&path)?;
        // setns changes this helper thread only.
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(s)
    })
    .join()
    .expect("setns thread panicked")
}

fn hold() -> Duration {
    std::env::var("RDV_PARTITION_HOLD_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(DEFAULT_HOLD, Duration::from_secs)
}

/// Keeps the partition until `hold()` has passed since `cut_at`, then prints server 0's
/// view of its links (a silent partition: are they still `up`?).
fn hold_partition(mesh: &Mesh, cut_at: Instant) {
    let until = cut_at + hold();
    let left = until.saturating_duration_since(Instant::now());
    thread::sleep(left);
    eprintln!("s0's links after {:.1?} of partition:", cut_at.elapsed());
    for l in peer_lines(&mesh.status(0)) {
        eprintln!("    {l}");
    }
    eprintln!("    all links: {}", mesh.link_states());
}

fn pad(text: &str, len: usize) -> Vec<u8> {
    assert!(text.len() <= len, "{text:?} longer than {len}");
    let mut v = text.as_bytes().to_vec();
    v.resize(len, 0);
    v
}

fn unpad(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn hello(role: u8, name: &str) -> Vec<u8> {
    let mut v = vec![role];
    v.extend_from_slice(&pad(name, NAME_LEN));
    v
}

/// Reads one status frame and requires `07 00 c8 05` (200 to a Barrier).
fn expect_200(mut s: &TcpStream) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    let mut detail = vec![0u8; head[4] as usize];
    s.read_exact(&mut detail)?;
    if head[..4] != [7, 0, 200, 5] {
        return Err(std::io::Error::other(format!(
            "expected 200 to the Barrier, got {:02x?} {:?}",
            &head[..4],
            String::from_utf8_lossy(&detail)
        )));
    }
    Ok(())
}

fn value(lines: &[String], key: &str) -> String {
    lines
        .iter()
        .find_map(|l| common::field(l, key).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key}= in {lines:?}"))
}

fn peer_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with("peer="))
        .cloned()
        .collect()
}

fn short(d: &[(u64, String)]) -> Vec<String> {
    d.iter()
        .enumerate()
        .map(|(i, (n, h))| format!("s{i}: {n} {}", &h[..16.min(h.len())]))
        .collect()
}

fn all_equal(d: &[(u64, String)]) -> bool {
    d.iter().all(|x| *x == d[0])
}

/// Last-writer-wins: the higher clock, then the bytewise larger (NUL-padded) phone.
fn lww(a: &(u32, String), b: &(u32, String)) -> (u32, String) {
    let ka = (a.0, pad(&a.1, PHONE_LEN));
    let kb = (b.0, pad(&b.1, PHONE_LEN));
    if ka >= kb {
        a.clone()
    } else {
        b.clone()
    }
}

fn merge(a: &Contacts, b: &Contacts) -> Contacts {
    let mut out = a.clone();
    for (k, v) in b {
        let merged = match out.get(k) {
            Some(w) => lww(w, v),
            None => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

/// `contacts_sha512` as docs/PROTOCOL.md defines it: SHA-512 over every contact's 536-byte
/// server-role Update body, in (username, contactname) order.
fn digest(c: &Contacts) -> String {
    let mut h = Sha512::new();
    for ((user, contact), (clock, phone)) in c {
        h.update(clock.to_be_bytes());
        h.update(pad(user, NAME_LEN));
        h.update(pad(contact, NAME_LEN));
        h.update(pad(phone, PHONE_LEN));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn recs(
    user: &str,
    keys: impl IntoIterator<Item = usize>,
    phone: impl Fn(usize) -> String,
) -> Vec<(String, String, String)> {
    keys.into_iter()
        .map(|k| (user.to_string(), format!("c{k:06}"), phone(k)))
        .collect()
}

/// Describes where two dumps differ (first few keys).
fn diff(want: &Contacts, got: &Contacts) -> String {
    let mut out = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            Some(g) if g == v => {}
            other => out.push(format!("{k:?}: want {v:?}, got {other:?}")),
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        out.push(format!("{k:?}: not expected, got {:?}", got[k]));
    }
    let n = out.len();
    out.truncate(10);
    format!("{n} differences, first: {out:#?}")
}

#[test]
fn partition_and_heal_converges() {
    if !can_run("partition_and_heal_converges") {
        return;
    }
    let mut mesh = Mesh::create("part", &["--allow-peer", "203.0.113.0/24"]);
    mesh.wait_links_up(Duration::from_secs(60));

    // Before the partition: 10 contacts written on each server, everywhere.
    for i in 0..N {
        mesh.write(
            i,
            &recs(&format!("init{i}"), 0..10, |k| format!("+{i}{k:04}")),
        );
    }
    let t = mesh.wait_until("initial convergence", CONVERGE_TIMEOUT, |d| {
        d[0].0 == 40 && all_equal(d)
    });
    eprintln!("initial 40 contacts converged in {t:.1?}");

    mesh.partition();
    let cut_at = Instant::now();
    let before_writes = mesh.cross();
    // A client registers on each side: at s0 (group A) and at s3 (group B).
    let (ida, idb) = (common::Identity::new("ca"), common::Identity::new("cb"));
    let _client_a = mesh.register(0, &ida);
    let _client_b = mesh.register(3, &idb);
    // Conflicts: the same 50 keys on s0 and on s2, different phones. Side B writes them in
    // the reverse order, so the clocks cross over and each side wins some of them.
    mesh.write(0, &recs("conflict", 0..50, |k| format!("A{k:04}")));
    mesh.write(2, &recs("conflict", (0..50).rev(), |k| format!("B{k:04}")));
    // Disjoint keys on every server.
    for i in 0..N {
        mesh.write(
            i,
            &recs(&format!("only{i}"), 0..25, |k| format!("+9{i}{k:04}")),
        );
    }
    // Each group converges on its own; the groups differ.
    let t = mesh.wait_until("convergence inside each group", CONVERGE_TIMEOUT, |d| {
        d[0] == d[1] && d[2] == d[3] && d[0].0 == 40 + 50 + 50 && d[2].0 == 40 + 50 + 50
    });
    let d = mesh.digests();
    eprintln!("groups converged separately in {t:.1?}: {:?}", short(&d));
    assert_ne!(
        d[0].1, d[2].1,
        "the two sides must differ during the partition"
    );
    // Each group's directory holds its own client only, the same on both servers.
    let t = mesh.wait_directories("directories inside each group", CONVERGE_TIMEOUT, |d| {
        d[0] == d[1] && d[2] == d[3] && d[0].0 == 1 && d[2].0 == 1
    });
    let dirs = mesh.directories();
    eprintln!("directories converged in each group in {t:.1?}");
    assert_ne!(dirs[0].1, dirs[2].1, "each side knows only its own client");
    hold_partition(&mesh, cut_at);
    let during = mesh.cross().since(&before_writes);
    assert_eq!(
        during.bytes(),
        0,
        "nothing may cross the partition: {}",
        during.describe()
    );

    // What last-writer-wins must produce, from each side's records and clocks.
    let side_a = mesh.dump(0);
    let side_b = mesh.dump(2);
    let want = merge(&side_a, &side_b);
    assert_eq!(want.len(), 40 + 50 + 100);
    let (mut a_wins, mut b_wins) = (0, 0);
    for k in 0..50 {
        let key = ("conflict".to_string(), format!("c{k:06}"));
        let phone = &want[&key].1;
        if phone.starts_with('A') {
            a_wins += 1;
        } else {
            b_wins += 1;
        }
        if k % 10 == 0 || k == 24 || k == 25 {
            let (ca, cb) = (side_a[&key].0, side_b[&key].0);
            eprintln!(
                "  conflict c{k:06}: A clock {ca} {:?}, B clock {cb} {:?} -> {phone}",
                side_a[&key].1, side_b[&key].1
            );
        }
    }
    eprintln!("expected winners: {a_wins} from side A, {b_wins} from side B");
    let want_digest = digest(&want);
    println!("partition lasted {:.1?} before the heal", cut_at.elapsed());

    let before_heal = mesh.cross();
    let received_before: Vec<(u64, u64)> = (0..N).map(|j| mesh.received(j)).collect();
    mesh.heal();
    let healed = mesh.wait_until("convergence after the heal", CONVERGE_TIMEOUT, |d| {
        all_equal(d) && d[0].0 == want.len() as u64
    });
    let moved = mesh.cross().since(&before_heal);
    println!("partition_and_heal_converges: heal to equal digests in {healed:.2?}");
    println!("  crossed between the groups: {}", moved.describe());

    for i in 0..N {
        let got = mesh.dump(i);
        assert!(got == want, "s{i} after the heal: {}", diff(&want, &got));
    }
    // Every directory holds both clients, with equal digests.
    let t = mesh.wait_directories("directories after the heal", CONVERGE_TIMEOUT, |d| {
        d.iter().all(|e| *e == d[0]) && d[0].0 == 2
    });
    println!("  directories equal (2 clients) {t:.2?} after the contacts converged");
    let d = mesh.digests();
    assert_eq!(
        d[0].1, want_digest,
        "contacts_sha512 is not SHA-512 over the 536-byte bodies in key order"
    );
    // The catch-up used the journal: after the heal each server received from its two
    // neighbours at most twice the changes made during the partition (each neighbour
    // journals a change once and pushes it once), and no full push.
    mesh.wait_caught_up(CONVERGE_TIMEOUT);
    let changes: u64 = 2 * (50 + 2 * 25);
    for (j, &(e0, r0)) in received_before.iter().enumerate() {
        let (e, r) = mesh.received(j);
        println!(
            "  s{j} received after the heal: {} journal entries, {} full-push records \
             ({changes} changes made during the partition)",
            e - e0,
            r - r0
        );
        assert!(
            e - e0 <= 2 * changes,
            "s{j}: {} entries for {changes} changes",
            e - e0
        );
        assert!(
            e - e0 >= changes / 2,
            "s{j}: too few entries for the other side's changes"
        );
        assert_eq!(r - r0, 0, "s{j}: a full push instead of the journal");
    }
    mesh.wait_links_up(Duration::from_secs(30));
    mesh.report_logs();
}

/// The issue's measurement: 100,000 contacts, a partition, 1,000 changes (500 per side),
/// a heal; prints the time from the heal to equal digests and what crossed between the
/// groups meanwhile.
#[test]
fn partition_figures() {
    if !can_run("partition_figures") {
        return;
    }
    const TOTAL: usize = 100_000;
    const CHANGED_PER_SIDE: usize = 500;
    let mut mesh = Mesh::create("fig", &["--allow-peer", "203.0.113.0/24"]);
    mesh.wait_links_up(Duration::from_secs(60));

    // Load: one server-role connection to s0 from inside s0's namespace, clocks 1..=TOTAL.
    let load_started = Instant::now();
    let before_load = mesh.cross();
    (|| -> std::io::Result<()> {
        let s = mesh.connect(0)?;
        let mut w = BufWriter::with_capacity(1 << 20, s.try_clone()?);
        w.write_all(&hello(1, "partition-loader"))?;
        let mut rec = [0u8; RECORD_LEN];
        rec[0] = 1;
        for k in 0..TOTAL {
            rec[1..5].copy_from_slice(&(k as u32 + 1).to_be_bytes());
            rec[5..5 + NAME_LEN].copy_from_slice(&pad(&format!("user{:04}", k / 100), NAME_LEN));
            rec[5 + NAME_LEN..5 + 2 * NAME_LEN]
                .copy_from_slice(&pad(&format!("c{k:06}"), NAME_LEN));
            rec[5 + 2 * NAME_LEN..].copy_from_slice(&pad(&format!("+1555{k:07}"), PHONE_LEN));
            w.write_all(&rec)?;
        }
        w.write_all(&[5])?;
        w.flush()?;
        drop(w);
        expect_200(&s)
    })()
    .unwrap_or_else(|e| panic!("loading {TOTAL} contacts into s0: {e}"));
    println!(
        "partition_figures: {TOTAL} contacts loaded into s0 in {:.2?}",
        load_started.elapsed()
    );
    let t = mesh.wait_until("initial convergence", Duration::from_secs(300), |d| {
        d[0].0 == TOTAL as u64 && all_equal(d)
    });
    let initial = mesh.cross().since(&before_load);
    println!(
        "  all four converged {t:.2?} after the load ({:.2?} after it started)",
        load_started.elapsed()
    );
    println!(
        "  crossed between the groups for the initial copy: {}",
        initial.describe()
    );
    mesh.wait_links_up(Duration::from_secs(60));

    mesh.partition();
    let cut_at = Instant::now();
    // 500 changes on each side, to different keys (the first 500 on s0, the next 500 on s2).
    let user_of = |k: usize| format!("user{:04}", k / 100);
    let changes = |range: std::ops::Range<usize>, tag: char| -> Vec<(String, String, String)> {
        range
            .map(|k| (user_of(k), format!("c{k:06}"), format!("{tag}{k:07}")))
            .collect()
    };
    mesh.write(0, &changes(0..CHANGED_PER_SIDE, 'A'));
    mesh.write(2, &changes(CHANGED_PER_SIDE..2 * CHANGED_PER_SIDE, 'B'));
    mesh.wait_until("convergence inside each group", CONVERGE_TIMEOUT, |d| {
        d[0] == d[1] && d[2] == d[3] && d[0].1 != d[2].1
    });
    let side_a = mesh.dump(0);
    let side_b = mesh.dump(2);
    let want = merge(&side_a, &side_b);
    assert_eq!(want.len(), TOTAL);
    let changed = want.values().filter(|(_, p)| !p.starts_with('+')).count();
    assert_eq!(changed, 2 * CHANGED_PER_SIDE);
    hold_partition(&mesh, cut_at);
    println!(
        "  partition lasted {:.1?} before the heal",
        cut_at.elapsed()
    );

    let before_heal = mesh.cross();
    let received_before: Vec<(u64, u64)> = (0..N).map(|j| mesh.received(j)).collect();
    mesh.heal();
    let healed = mesh.wait_until("convergence after the heal", CONVERGE_TIMEOUT, |d| {
        all_equal(d) && d[0].0 == TOTAL as u64
    });
    let moved = mesh.cross().since(&before_heal);
    println!(
        "partition_figures: heal to equal digests in {healed:.2?} ({} changed records, {} per side)",
        2 * CHANGED_PER_SIDE,
        CHANGED_PER_SIDE
    );
    println!(
        "  crossed between the groups during the heal: {}",
        moved.describe()
    );
    mesh.wait_caught_up(CONVERGE_TIMEOUT);
    let changes = 2 * CHANGED_PER_SIDE as u64;
    let mut total = 0;
    for (j, &(e0, r0)) in received_before.iter().enumerate() {
        let (e, r) = mesh.received(j);
        total += e - e0;
        println!(
            "  s{j} received after the heal: {} journal entries ({} bytes as 545-byte frames), \
             {} full-push records ({changes} changes, {TOTAL} contacts in all)",
            e - e0,
            (e - e0) * 545,
            r - r0
        );
        assert!(e - e0 <= 2 * changes, "s{j}: {} entries", e - e0);
        assert_eq!(r - r0, 0, "s{j}: a full push instead of the journal");
    }
    println!("  all four servers together received {total} journal entries after the heal");
    let d = mesh.digests();
    assert_eq!(
        d[0].1,
        digest(&want),
        "the mesh converged to something else"
    );
    let got = mesh.dump(3);
    assert!(got == want, "s3 after the heal: {}", diff(&want, &got));
    mesh.report_logs();
}
