//! Floods against the real binary inside network namespaces (docs/SECURITY.md, T4 and T5):
//! many source addresses, owned and spoofed, registering fresh identities and looking up
//! (UDP), and connections held open without a hello or with one trickled (TCP), while
//! honest clients in a namespace of their own keep working. Each test prints one
//! `figure: T4 ...` / `figure: T5 ...` line.
//!
//! ```text
//!  atk (attackers)                         srv (server, [::]:PORT)                   hon (honest)
//!  eth0 192.0.2.2/30, 2001:db8::2/64 ── atk0 192.0.2.1/30  hon0 192.0.2.5/30 ── eth0 192.0.2.6/30
//!       + owned sources: 198.51.100.x,       2001:db8::1/64     2001:db8:1::1/64      2001:db8:1::2/64
//!         203.0.113.x, 2001:db8:4xx:y::z   routes 198.51.100.0/24, 203.0.113.0/24,
//!       + spoofed (ip_nonlocal_bind,          2001:db8:400::/40, 2001:db8:500::/40 via atk
//!         IP_TRANSPARENT): 203.0.113.128+, 2001:db8:5xx::1
//! ```
//!
//! Owned sources answer the address-check cookie and get as far as the rate limits and the
//! directory; spoofed ones never see the cookie (the answers go to `atk`, which does not
//! forward), as an attacker forging source addresses would not. Each side talks to the
//! server address on its own link, so the replies of the wildcard listener leave from the
//! address that was asked. Only documentation addresses, in namespaces without a link to
//! the host. Every loop is bounded in count and time; the server is killed by pid and the
//! namespaces removed when the test ends or panics. Root only: skipped otherwise, failed
//! under `CI=true` (`netns::can_run`).
//!
//! This file holds the namespaces, the server in them and the T4 flood's sources, budgets
//! and report; the tests are in `registrations` (T4, with the attacker's flood in
//! `flooder`) and `slowloris` (T5).

mod flooder;
mod registrations;
mod slowloris;

use crate::common::netns::Netns;
use crate::common::{netns, Server, BIN};
use mio::net::UdpSocket as MioUdp;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SRV_A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ATK_A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const SRV_H4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
const HON_H4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 6);
const SRV_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const ATK_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const SRV_H6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const HON_H6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// An attacker-owned IPv6 address: `2001:db8:4SS:N::H`, site (/48) `s`, network (/64) `n`.
fn owned_v6(s: u16, n: u16, h: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x400 + s, n, 0, 0, 0, h))
}

/// The three namespaces of the module docs. Dropping it removes them.
struct FloodNet {
    srv: Netns,
    atk: Netns,
    hon: Netns,
}

impl FloodNet {
    /// Builds the namespaces, with `owned` as extra addresses of the attackers' side.
    fn create(tag: &str, owned: &[IpAddr]) -> FloodNet {
        netns::sweep_stale();
        let started = Instant::now();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("rdv{}-fl{tag}{n}", std::process::id());
        let net = FloodNet {
            srv: Netns::create(&format!("{base}-srv")),
            atk: Netns::create(&format!("{base}-atk")),
            hon: Netns::create(&format!("{base}-hon")),
        };
        // No duplicate address detection: addresses are usable at once.
        for ns in [&net.srv, &net.atk, &net.hon] {
            ns.exec(
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            );
        }
        // Spoofing: the attackers may send from addresses they do not have.
        net.atk.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv4.ip_nonlocal_bind=1",
                "net.ipv6.ip_nonlocal_bind=1",
            ],
        );
        for (dev, peer) in [("atk0", &net.atk), ("hon0", &net.hon)] {
            net.srv.ip(&[
                "link",
                "add",
                "name",
                dev,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer.name(),
            ]);
        }
        let mut atk = vec![
            format!("addr add {ATK_A4}/30 dev eth0"),
            format!("addr add {ATK_A6}/64 dev eth0 nodad"),
        ];
        atk.extend(owned.iter().map(|ip| match ip {
            IpAddr::V4(_) => format!("addr add {ip}/32 dev eth0"),
            IpAddr::V6(_) => format!("addr add {ip}/128 dev eth0 nodad"),
        }));
        atk.push("link set dev eth0 up".to_string());
        net.atk.ip_batch(&atk);
        net.hon.ip_batch(&[
            format!("addr add {HON_H4}/30 dev eth0"),
            format!("addr add {HON_H6}/64 dev eth0 nodad"),
            "link set dev eth0 up".to_string(),
        ]);
        net.srv.ip_batch(&[
            format!("addr add {SRV_A4}/30 dev atk0"),
            format!("addr add {SRV_A6}/64 dev atk0 nodad"),
            "link set dev atk0 up".to_string(),
            format!("addr add {SRV_H4}/30 dev hon0"),
            format!("addr add {SRV_H6}/64 dev hon0 nodad"),
            "link set dev hon0 up".to_string(),
        ]);
        // Routes once every link is up.
        net.atk.ip_batch(&[
            format!("route add 0.0.0.0/0 via {SRV_A4}"),
            format!("route add ::/0 via {SRV_A6}"),
        ]);
        net.hon.ip_batch(&[
            format!("route add 0.0.0.0/0 via {SRV_H4}"),
            format!("route add ::/0 via {SRV_H6}"),
        ]);
        net.srv.ip_batch(&[
            format!("route add 198.51.100.0/24 via {ATK_A4}"),
            format!("route add 203.0.113.0/24 via {ATK_A4}"),
            format!("route add 2001:db8:400::/40 via {ATK_A6}"),
            format!("route add 2001:db8:500::/40 via {ATK_A6}"),
        ]);
        eprintln!(
            "flood namespaces {base}: {} attacker addresses, built in {:.1?}",
            owned.len(),
            started.elapsed()
        );
        net
    }

    /// `rendezvous serve --listen [::]:0 --memory-only EXTRA...` inside `srv`, started
    /// through `wrap` (for example `prlimit ...`) when given.
    fn serve(&self, wrap: &[&str], extra: &[&str]) -> Server {
        let mut cmd = match wrap.split_first() {
            Some((prog, args)) => {
                let mut c = self.srv.command(prog);
                c.args(args).arg(BIN);
                c
            }
            None => self.srv.command(BIN),
        };
        cmd.args(["serve", "--listen", "[::]:0", "--memory-only"])
            .args(extra)
            .env("NO_COLOR", "1");
        let server = Server::spawn("server", cmd);
        // `ip netns exec` and `prlimit` exec the server: the pid is the server's own.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", server.pid()))
            .expect("server's /proc comm");
        assert_eq!(comm.trim(), "rendezvous", "the pid is not the server's");
        server
    }
}

/// A value of `Key:   N kB` from /proc/PID/status, in KiB.
fn proc_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// UDP datagrams the kernel of `ns` delivered to sockets, and dropped for a full receive
/// buffer, IPv4 and IPv6 together (/proc/net/snmp and snmp6 as seen inside it).
fn udp_counters(ns: &Netns) -> (u64, u64) {
    let snmp = ns.exec("cat", &["/proc/net/snmp"]);
    let udp: Vec<&String> = snmp.iter().filter(|l| l.starts_with("Udp: ")).collect();
    assert_eq!(udp.len(), 2, "Udp lines of /proc/net/snmp: {snmp:?}");
    let v4 = |name: &str| -> u64 {
        let i = udp[0]
            .split_whitespace()
            .position(|f| f == name)
            .unwrap_or_else(|| panic!("no {name} in {}", udp[0]));
        udp[1]
            .split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .expect("counter")
    };
    let snmp6 = ns.exec("cat", &["/proc/net/snmp6"]);
    let v6 = |name: &str| -> u64 {
        snmp6
            .iter()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {name} in /proc/net/snmp6"))
    };
    (
        v4("InDatagrams") + v6("Udp6InDatagrams"),
        v4("RcvbufErrors") + v6("Udp6RcvbufErrors"),
    )
}

/// Raises this process's open-files soft limit to its hard one (the flood holds more
/// sockets than a 1024 default allows); returns the soft limit in force.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let want = lim.maximum.unwrap_or(65_536).min(65_536);
    let raised = Rlimit {
        current: Some(want),
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => want,
        Err(_) => lim.current.unwrap_or(0),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------
// T4: registrations and lookups from many sources
// ---------------------------------------------------------------------------------------

/// `--max-clients` of the flooded server.
const MAX_CLIENTS: usize = 1000;
/// Attacker IPv6 sites (/48s), networks (/64s) per site, and sockets (ports) per address.
const SITES: u16 = 8;
const NETS_PER_SITE: u16 = 4;
const V6_PORTS: usize = 36;
/// Attacker IPv4 addresses in each of 198.51.100.0/24 and 203.0.113.0/24, and sockets each.
const V4_ADDRS: u8 = 8;
const V4_PORTS: usize = 8;
/// Registrations, each with a fresh identity, sent from every owned socket.
const REGS_EACH: usize = 3;
/// Spoofed sources per family, and datagrams each sends per round.
const SPOOFED: u8 = 64;
const SPOOFED_EACH: usize = 4;
/// The flood's pace, datagrams per second (all sources together), and its longest run.
const FLOOD_PACE: f64 = 8000.0;
const FLOOD_MAX: Duration = Duration::from_secs(8);
/// Registration budgets of docs/PROTOCOL.md §5.9 at the default `--register-rate` 20:
/// (per second, burst) of a /24 or /64, and of an IPv6 /48 (4 times a /64's).
const PREFIX_BUDGET: (f64, f64) = (20.0, 40.0);
const SITE_BUDGET: (f64, f64) = (80.0, 160.0);

/// Every owned attacker address of the T4 flood.
fn t4_owned() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = Vec::new();
    for net in [[198, 51, 100], [203, 0, 113]] {
        for h in 0..V4_ADDRS {
            v.push(IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], 10 + h)));
        }
    }
    for s in 0..SITES {
        for n in 0..NETS_PER_SITE {
            v.push(owned_v6(s, n, 1));
        }
    }
    v
}

/// The spoofed sources: addresses nobody has, routed to the attackers' namespace.
fn t4_spoofed() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = Vec::new();
    for h in 0..SPOOFED {
        v.push(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 128 + h)));
        v.push(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x500 + u16::from(h),
            0,
            0,
            0,
            0,
            1,
        )));
    }
    v
}

/// The rate-limit keys of a source, each with its (rate, burst): the /24 (IPv4), or the
/// /64 and the /48 (IPv6).
fn budget_keys(ip: IpAddr) -> Vec<(String, (f64, f64))> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            vec![(format!("{}.{}.{}.0/24", o[0], o[1], o[2]), PREFIX_BUDGET)]
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            vec![
                (
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]),
                    PREFIX_BUDGET,
                ),
                (
                    format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]),
                    SITE_BUDGET,
                ),
            ]
        }
    }
}

/// Answers to the registrations of one rate-limit key.
#[derive(Debug, Default, Clone)]
struct Tally {
    budget: (f64, f64),
    sent: u64,
    ok: u64,
    limited: u64,
    full: u64,
    other: u64,
}

impl Tally {
    /// Registrations that got past the rate check (everything but 429).
    fn passed(&self) -> u64 {
        self.ok + self.full + self.other
    }
}

/// One attacker socket.
struct Source {
    sock: MioUdp,
    ip: IpAddr,
    spoofed: bool,
    cookie: Option<[u8; 16]>,
    /// Whether one of its registrations was accepted (it holds a directory entry).
    admitted: bool,
}

/// What the flood did and what came back.
#[derive(Debug, Default)]
struct FloodReport {
    sockets: usize,
    spoofed: usize,
    datagrams: u64,
    send_errors: u64,
    registrations: u64,
    lookups: u64,
    lookup_answers: u64,
    lookups_refused: u64,
    replies_to_registrations: u64,
    admitted_sockets: usize,
    per_key: BTreeMap<String, Tally>,
    unexpected: Vec<String>,
    /// From the first registration with a cookie to the last answer counted.
    span: Duration,
    /// The cookie exchange before it.
    cookie_phase: Duration,
}
