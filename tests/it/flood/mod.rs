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

use crate::common;

use common::netns::{self, Netns};
use common::{Server, BIN};
use mio::net::{TcpStream as MioTcp, UdpSocket as MioUdp};
use mio::{Events, Interest, Poll, Token};
use rendezvous::client::contacts::ContactsClient;
use rendezvous::client::{self, Client, Incoming};
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::{LookupStatus, Payload, Register};
use rendezvous::wire::Fingerprint;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
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

/// A UDP socket bound to `ip`. A spoofed IPv4 source needs IP_TRANSPARENT besides
/// `ip_nonlocal_bind`: without it Linux finds no route from an address it does not have.
fn udp_from(ip: IpAddr, spoofed: bool) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind = SocketAddr::new(ip, 0);
    let sock = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if spoofed && ip.is_ipv4() {
        sock.set_ip_transparent(true)?;
    }
    sock.bind(&bind.into())?;
    Ok(sock.into())
}

/// The flood, run on a thread inside the attackers' namespace: binds every socket, gets a
/// cookie for each owned one, then sends `REGS_EACH` registrations (fresh identities from
/// `ids`) and a lookup from each, and cookie-less registrations and lookups from the
/// spoofed ones, at `FLOOD_PACE`; counts every answer by rate-limit key.
fn flood(servers: (SocketAddr, SocketAddr), mut ids: Vec<Identity>) -> FloodReport {
    let mut report = FloodReport::default();
    let mut sources = Vec::new();
    for ip in t4_owned() {
        let ports = if ip.is_ipv4() { V4_PORTS } else { V6_PORTS };
        for _ in 0..ports {
            sources.push((ip, false));
        }
    }
    sources.extend(t4_spoofed().into_iter().map(|ip| (ip, true)));
    let poll = Poll::new().expect("poll");
    let mut src: Vec<Source> = sources
        .into_iter()
        .enumerate()
        .map(|(i, (ip, spoofed))| {
            let std = udp_from(ip, spoofed).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
            std.set_nonblocking(true).expect("nonblocking");
            let mut sock = MioUdp::from_std(std);
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .expect("register socket");
            Source {
                sock,
                ip,
                spoofed,
                cookie: None,
                admitted: false,
            }
        })
        .collect();
    report.sockets = src.len();
    report.spoofed = src.iter().filter(|s| s.spoofed).count();
    let dest = |ip: IpAddr| if ip.is_ipv4() { servers.0 } else { servers.1 };
    let any = Identity::generate(KeyAlgorithm::Ed25519, "flood").expect("identity");
    let cookieless = |ts| {
        let p = Payload::Register(Register::listed(any.cert_der(), None));
        client::packet(&any, None, ts, &p, true)
    };
    let mut fl = Flooder {
        poll,
        events: Events::with_capacity(1024),
        buf: vec![0; 2048],
        report,
    };

    // The cookie exchange of every owned socket, in chunks, each asked again while missing.
    let started = Instant::now();
    let owned = src.iter().filter(|s| !s.spoofed).count();
    let first = cookieless(unix_now());
    for attempt in 0..5 {
        let missing: Vec<usize> = (0..src.len())
            .filter(|&i| !src[i].spoofed && src[i].cookie.is_none())
            .collect();
        if missing.is_empty() {
            break;
        }
        for chunk in missing.chunks(128) {
            for &i in chunk {
                fl.send(&src[i], &first, dest(src[i].ip));
            }
            let until =
                Instant::now() + Duration::from_millis(if attempt == 0 { 300 } else { 1000 });
            fl.collect(&mut src, until, |s, _| {
                chunk.iter().all(|&i| s[i].cookie.is_some())
            });
        }
    }
    let with_cookie = src.iter().filter(|s| s.cookie.is_some()).count();
    assert_eq!(
        with_cookie, owned,
        "owned sockets without a cookie after 5 tries"
    );
    fl.report.cookie_phase = started.elapsed();

    // The flood: round by round over every socket, paced, bounded in count and time.
    let t0 = Instant::now();
    let mut rng = rendezvous::sim::Rng::new(0x9e37_79b9_7f4a_7c15);
    let spoofed_reg = cookieless(unix_now());
    let mut sent = 0u64;
    for _round in 0..REGS_EACH {
        for chunk in (0..src.len()).collect::<Vec<_>>().chunks(64) {
            if t0.elapsed() > FLOOD_MAX {
                break;
            }
            for &i in chunk {
                let to = dest(src[i].ip);
                if src[i].spoofed {
                    for k in 0..SPOOFED_EACH {
                        let p = if k % 2 == 0 {
                            spoofed_reg.clone()
                        } else {
                            client::packet(
                                &any,
                                None,
                                0,
                                &Payload::Lookup(Fingerprint(rng.bytes32())),
                                false,
                            )
                        };
                        fl.send(&src[i], &p, to);
                        sent += 1;
                    }
                    continue;
                }
                let id = ids.pop().expect("an identity per registration");
                let p = Payload::Register(Register::listed(id.cert_der(), src[i].cookie.as_ref()));
                let reg = client::packet(&id, None, unix_now(), &p, true);
                fl.send(&src[i], &reg, to);
                fl.report.registrations += 1;
                for key in budget_keys(src[i].ip) {
                    let t = fl.report.per_key.entry(key.0).or_default();
                    t.budget = key.1;
                    t.sent += 1;
                }
                let look = client::packet(
                    &id,
                    None,
                    0,
                    &Payload::Lookup(Fingerprint(rng.bytes32())),
                    false,
                );
                fl.send(&src[i], &look, to);
                fl.report.lookups += 1;
                sent += 2;
            }
            // The pace: wait for answers until this chunk's share of time has passed.
            let due = t0 + Duration::from_secs_f64(sent as f64 / FLOOD_PACE);
            fl.collect(&mut src, due, |_, _| false);
        }
    }
    // The last answers: until every registration has its own or 3 s have passed.
    fl.collect(&mut src, Instant::now() + Duration::from_secs(3), |_, r| {
        r.replies_to_registrations >= r.registrations
    });
    fl.report.span = t0.elapsed();
    fl.report.admitted_sockets = src.iter().filter(|s| s.admitted).count();
    fl.report
}

/// The flood's sockets' poll and what it counted.
struct Flooder {
    poll: Poll,
    events: Events,
    buf: Vec<u8>,
    report: FloodReport,
}

impl Flooder {
    fn send(&mut self, s: &Source, bytes: &[u8], to: SocketAddr) {
        self.report.datagrams += 1;
        if let Err(e) = s.sock.send_to(bytes, to) {
            self.report.send_errors += 1;
            if self.report.unexpected.len() < 3 {
                self.report
                    .unexpected
                    .push(format!("send from {}: {e}", s.ip));
            }
        }
    }

    /// Reads and counts answers until `until`, or until `done(sources, report)` holds.
    fn collect(
        &mut self,
        src: &mut [Source],
        until: Instant,
        done: impl Fn(&[Source], &FloodReport) -> bool,
    ) {
        loop {
            if done(src, &self.report) {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.poll
                .poll(&mut self.events, Some(left))
                .or_else(|e| {
                    if e.kind() == ErrorKind::Interrupted {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .expect("poll");
            let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
            for i in ready {
                loop {
                    let n = match src[i].sock.recv_from(&mut self.buf) {
                        Ok((n, _)) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => continue,
                    };
                    let reply = client::decode(&self.buf[..n]);
                    self.count(&mut src[i], reply);
                }
            }
        }
    }

    fn count(&mut self, s: &mut Source, reply: Incoming) {
        let r = &mut self.report;
        let reg_answer = match &reply {
            Incoming::Cookie(c) => {
                s.cookie.get_or_insert(*c);
                return;
            }
            Incoming::LookupAnswer { .. } => {
                r.lookup_answers += 1;
                return;
            }
            Incoming::Ok(_) => {
                s.admitted = true;
                Some(0)
            }
            Incoming::Error {
                status,
                request_type: 2,
                ..
            } => Some(*status),
            // From a socket whose registrations were all refused, or since evicted.
            Incoming::Error {
                status: 403,
                request_type: 5,
                ..
            } => {
                r.lookups_refused += 1;
                return;
            }
            Incoming::Punch { .. } => return,
            other => {
                if r.unexpected.len() < 10 {
                    r.unexpected.push(format!("{}: {other:?}", s.ip));
                }
                None
            }
        };
        let Some(status) = reg_answer else { return };
        r.replies_to_registrations += 1;
        for (key, _) in budget_keys(s.ip) {
            let t = r.per_key.entry(key).or_default();
            match status {
                0 => t.ok += 1,
                429 => t.limited += 1,
                503 => t.full += 1,
                _ => t.other += 1,
            }
        }
    }
}

/// What the honest clients saw.
#[derive(Debug, Default)]
struct HonestReport {
    /// Rounds (register, keepalive, lookup of the anchor) begun during the flood, and how
    /// many of them fully succeeded.
    tried: u32,
    ok: u32,
    failures: Vec<String>,
}

/// Honest clients inside `hon`: an anchor registered first (and kept alive), then round
/// after round a client of a pool of 40 per family registers, keeps alive once and looks
/// the anchor up (it must be online), 20 rounds a second (10 per family, under each
/// prefix's budget of 20), until `stop` (at most 60 s). Counts the rounds begun while
/// `flooding`. `ready` is sent once the anchor is registered.
fn honest(
    servers: (SocketAddr, SocketAddr),
    flooding: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<()>,
) -> HonestReport {
    let id = |name: String| Identity::generate(KeyAlgorithm::Ed25519, &name).expect("identity");
    let mut anchor = Client::new(servers.0, id("anchor".into()), None).expect("anchor socket");
    anchor
        .register(5, Duration::from_secs(1))
        .expect("the anchor registers before the flood");
    anchor.keepalive().expect("keepalive");
    let anchor_fp = anchor.identity().fingerprint();
    let mut pool: Vec<Client> = (0..80)
        .map(|i| {
            let server = if i % 2 == 0 { servers.0 } else { servers.1 };
            Client::new(server, id(format!("honest{i}")), None).expect("honest socket")
        })
        .collect();
    ready.send(()).expect("main thread waits");
    let mut report = HonestReport::default();
    let start = Instant::now();
    for round in 0..1200u32 {
        if stop.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        // The pace, waiting on the anchor's socket (punch requests from the lookups).
        let due = start + Duration::from_millis(50) * round;
        while Instant::now() < due {
            let _ = anchor.recv(due.saturating_duration_since(Instant::now()));
        }
        let during = flooding.load(Ordering::SeqCst);
        let c = &mut pool[round as usize % 80];
        let outcome = (|| -> Result<(), String> {
            c.register(3, Duration::from_millis(700))
                .map_err(|e| format!("register: {e}"))?;
            c.keepalive().map_err(|e| format!("keepalive: {e}"))?;
            match c.lookup(anchor_fp, Duration::from_secs(1)) {
                Ok((LookupStatus::Online { .. }, _)) => Ok(()),
                Ok((other, _)) => Err(format!("lookup of the anchor: {other:?}")),
                Err(e) => Err(format!("lookup of the anchor: {e}")),
            }
        })();
        if during {
            report.tried += 1;
            match outcome {
                Ok(()) => report.ok += 1,
                Err(e) => report.failures.push(format!("round {round}: {e}")),
            }
        }
    }
    report
}

/// The largest `directory=N` the server reported over TCP until `stop` fires, asked about
/// every 50 ms from inside `hon`; with the number of answers.
fn watch_directory(server: SocketAddr, stop: mpsc::Receiver<()>) -> (usize, u32) {
    let mut c = ContactsClient::connect(server, "flood-watch", Duration::from_secs(10))
        .expect("status connection");
    let mut max = 0;
    let mut samples = 0;
    let started = Instant::now();
    loop {
        let text = c.status().expect("status");
        let n: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("directory="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no directory= in the status: {text}"));
        max = max.max(n);
        samples += 1;
        if started.elapsed() > Duration::from_secs(120) {
            return (max, samples);
        }
        match stop.recv_timeout(Duration::from_millis(50)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return (max, samples),
        }
    }
}

/// The server's `directory=` now, asked from inside `hon`.
fn directory_now(net: &FloodNet, server: SocketAddr) -> usize {
    let (tx, rx) = mpsc::channel();
    drop(tx);
    net.hon
        .thread("status", move || watch_directory(server, rx).0)
        .join()
        .expect("status thread")
}

/// T4 (docs/SECURITY.md): registrations with fresh identities and lookups from 1 280
/// sockets on 48 owned addresses (two IPv4 /24s, eight IPv6 /48s of four /64s each) and
/// from 128 spoofed addresses, while honest clients register and look up. The directory
/// never exceeds `--max-clients`, no /24, /64 or /48 gets more registrations past the
/// rate check than its budget allows in the time the flood took, the server's memory
/// stays within a bound, and the honest clients keep working.
#[test]
fn a_flood_from_many_sources_is_bounded_and_honest_clients_are_served() {
    if !netns::can_run("flood_t4") {
        return;
    }
    let nofile = raise_nofile();
    let needed = (t4_owned().len() * V6_PORTS + 512) as u64;
    assert!(
        nofile >= needed,
        "the flood needs about {needed} open files; the limit is {nofile}"
    );
    let net = FloodNet::create("udp", &t4_owned());
    let max = MAX_CLIENTS.to_string();
    let server = net.serve(&[], &["--max-clients", &max]);
    let port = server.addr.port();
    let to_atk = (
        SocketAddr::new(SRV_A4.into(), port),
        SocketAddr::new(SRV_A6.into(), port),
    );
    let to_hon = (
        SocketAddr::new(SRV_H4.into(), port),
        SocketAddr::new(SRV_H6.into(), port),
    );

    // Fresh identities for every registration of the flood, made in this process.
    let made = Instant::now();
    let n_ids = (2 * usize::from(V4_ADDRS) * V4_PORTS
        + usize::from(SITES * NETS_PER_SITE) * V6_PORTS)
        * REGS_EACH;
    let ids: Vec<Identity> = (0..n_ids)
        .map(|i| Identity::generate(KeyAlgorithm::Ed25519, &format!("f{i}")).expect("identity"))
        .collect();
    let made = made.elapsed();

    let flooding = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let honest_thread = {
        let (f, s) = (Arc::clone(&flooding), Arc::clone(&stop));
        net.hon
            .thread("honest", move || honest(to_hon, f, s, ready_tx))
    };
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the honest anchor registered");
    let (watch_tx, watch_rx) = mpsc::channel();
    let watcher = net
        .hon
        .thread("watch", move || watch_directory(to_hon.0, watch_rx));

    let pid = server.pid();
    let rss_before = proc_kib(pid, "VmRSS");
    let hwm_before = proc_kib(pid, "VmHWM");
    let udp_before = udp_counters(&net.srv);
    flooding.store(true, Ordering::SeqCst);
    let report = net
        .atk
        .thread("flood", move || flood(to_atk, ids))
        .join()
        .expect("flood thread");
    flooding.store(false, Ordering::SeqCst);
    let udp_after = udp_counters(&net.srv);
    let (received, dropped) = (udp_after.0 - udp_before.0, udp_after.1 - udp_before.1);
    let rss_peak = proc_kib(pid, "VmHWM");
    let rss_after = proc_kib(pid, "VmRSS");
    stop.store(true, Ordering::SeqCst);
    let _ = watch_tx.send(());
    let (dir_max, samples) = watcher.join().expect("watch thread");
    let honest = honest_thread.join().expect("honest thread");
    let dir_end = directory_now(&net, to_hon.0);

    // Budgets: what got past the rate check, against burst + rate x the flood's span.
    let span = report.span.as_secs_f64();
    let mut worst = (String::new(), 0.0f64);
    for (key, t) in &report.per_key {
        let (rate, burst) = t.budget;
        let allowed = burst + rate * span + 1.0;
        assert!(
            t.passed() as f64 <= allowed,
            "{key}: {} registrations past the rate check in {span:.2} s, budget {allowed:.0} \
             ({t:?})",
            t.passed()
        );
        assert!(
            t.limited > 0,
            "{key}: the flood never reached its budget ({t:?}), so it tested nothing"
        );
        let used = t.passed() as f64 / allowed;
        if used > worst.1 {
            worst = (key.clone(), used);
        }
    }
    let keys = |suffix: &str| {
        report
            .per_key
            .iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, t)| t.passed())
            .max()
            .unwrap_or(0)
    };
    let ok: u64 = report
        .per_key
        .iter()
        .filter(|(k, _)| !k.ends_with("/48"))
        .map(|(_, t)| t.ok)
        .sum();
    let limited: u64 = report
        .per_key
        .iter()
        .filter(|(k, _)| !k.ends_with("/48"))
        .map(|(_, t)| t.limited)
        .sum();
    assert!(
        report.unexpected.is_empty(),
        "unexpected answers: {:?}",
        report.unexpected
    );
    assert!(
        report.admitted_sockets > MAX_CLIENTS,
        "only {} sockets were admitted: the flood did not push the directory past its cap",
        report.admitted_sockets
    );
    assert!(
        dir_max <= MAX_CLIENTS && dir_end <= MAX_CLIENTS,
        "directory above --max-clients {MAX_CLIENTS}: max seen {dir_max}, at the end {dir_end}"
    );
    assert_eq!(
        dir_end, MAX_CLIENTS,
        "more sockets were admitted than the directory holds, so it should be full"
    );
    // Memory: see docs/SECURITY.md T4. Per admitted registration the server keeps a
    // directory or offline entry, a cached certificate and a freshness entry (well under
    // 2 KiB together), and the admitted are bounded by the budgets above (a few thousand):
    // under 8 MiB. 32 MiB leaves room for tables doubling and allocator slack; the
    // server's preallocated buffers are in `rss_before`.
    let bound_kib = 32 * 1024;
    assert!(
        rss_peak <= rss_before.max(hwm_before) + bound_kib,
        "server RSS grew from {rss_before} KiB to a peak of {rss_peak} KiB (bound +{bound_kib})"
    );
    assert!(
        honest.tried >= 10,
        "only {} honest rounds ran during the flood",
        honest.tried
    );
    assert!(
        f64::from(honest.ok) >= 0.9 * f64::from(honest.tried),
        "honest clients: {}/{} rounds succeeded during the flood; failures: {:?}",
        honest.ok,
        honest.tried,
        honest.failures
    );
    eprintln!(
        "flood: {} identities made in {made:.2?}; cookie phase {:.2?}; per key: {:?}",
        n_ids, report.cookie_phase, report.per_key
    );
    if !honest.failures.is_empty() {
        eprintln!("honest failures: {:?}", honest.failures);
    }
    println!(
        "figure: T4 sockets={} (spoofed {}) datagrams={} in {:.2}s ({:.0}/s, send errors {}; server received {received}, \
         dropped {dropped} for a full buffer) \
         registrations={} ok={ok} 429={limited} admitted_sockets={} lookups={} answered={} \
         403={} \
         max_clients={MAX_CLIENTS} directory_max={dir_max} directory_end={dir_end} \
         (status samples {samples}) most_passed_per_24_or_64={} per_48={} \
         budget_use_max={:.2} ({}) rss_before={rss_before}KiB rss_peak={rss_peak}KiB \
         rss_after={rss_after}KiB honest_ok={}/{}",
        report.sockets,
        report.spoofed,
        report.datagrams,
        span,
        report.datagrams as f64 / span,
        report.send_errors,
        report.registrations,
        report.admitted_sockets,
        report.lookups,
        report.lookup_answers,
        report.lookups_refused,
        keys("/24").max(keys("/64")),
        keys("/48"),
        worst.1,
        worst.0,
        honest.ok,
        honest.tried
    );
    drop(server);
}

// ---------------------------------------------------------------------------------------
// T5: connections held open without a hello, or with one trickled, from few addresses
// ---------------------------------------------------------------------------------------

/// The hello deadline (docs/PROTOCOL.md §8.2).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one IPv4 address or IPv6 /64 may hold (§8.11).
const PER_ADDRESS: usize = 64;
/// The server's open-files limit: (448 - 64) / 2 = 192 connections in all (§8.11).
const NOFILE: &str = "--nofile=448:448";
const TOTAL_CAP: usize = 192;
/// How long any attack connection may stay open before the test gives up on it.
const HELD_MAX: Duration = Duration::from_secs(40);

const X1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const X2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const X3: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const X4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 13);
const X5: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 14);

/// A hello (`[role][name 256]`, docs/PROTOCOL.md §8.2), written by hand.
fn hello(role: u8, name: &[u8]) -> Vec<u8> {
    let mut v = vec![role];
    v.extend_from_slice(name);
    v.resize(257, 0);
    v
}

/// A TCP connection from `src` (any port) to `dst`, made on the calling thread, so inside
/// its namespace.
fn connect_from(src: IpAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    sock.connect_timeout(&dst.into(), Duration::from_secs(10))?;
    let s: TcpStream = sock.into();
    s.set_nodelay(true)?;
    Ok(s)
}

/// One attack connection and what came of it.
struct Held {
    from: IpAddr,
    s: MioTcp,
    opened: Instant,
    /// Sends its hello one byte a second instead of nothing.
    trickle: bool,
    trickled: usize,
    got: Vec<u8>,
    /// Since `opened`, when the server closed it.
    closed: Option<Duration>,
}

impl Held {
    /// The status code of the frame the server sent before closing, if it sent one.
    fn status(&self) -> Option<u16> {
        (self.got.len() >= 5 && self.got[0] == 0x07)
            .then(|| u16::from_be_bytes([self.got[1], self.got[2]]))
    }
}

/// `n` connections from `src` to the server, opened one after another inside `net.atk`.
fn open(net: &FloodNet, src: IpAddr, port: u16, n: usize, trickle: usize) -> Vec<Held> {
    let dst = match src {
        IpAddr::V4(_) => SocketAddr::new(SRV_A4.into(), port),
        IpAddr::V6(_) => SocketAddr::new(SRV_A6.into(), port),
    };
    let conns = net
        .atk
        .thread("connect", move || {
            (0..n)
                .map(|i| {
                    let s = connect_from(src, dst)
                        .unwrap_or_else(|e| panic!("connection {i} from {src}: {e}"));
                    (s, Instant::now())
                })
                .collect::<Vec<_>>()
        })
        .join()
        .expect("connect thread");
    conns
        .into_iter()
        .enumerate()
        .map(|(i, (s, opened))| {
            s.set_nonblocking(true).expect("nonblocking");
            Held {
                from: src,
                s: MioTcp::from_std(s),
                opened,
                trickle: i < trickle,
                trickled: 0,
                got: Vec::new(),
                closed: None,
            }
        })
        .collect()
}

/// A client-role hello and a Status command (6) from inside `hon`; Ok when the status
/// text came back (docs/PROTOCOL.md §8.3, §8.5).
fn honest_status(dst: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(&[hello(2, b"honest"), vec![6]].concat())
        .map_err(|e| format!("write: {e}"))?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head).map_err(|e| format!("read: {e}"))?;
    if head[0] != 6 {
        return Err(format!("not a status answer: {head:02x?}"));
    }
    let mut text = vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize];
    s.read_exact(&mut text)
        .map_err(|e| format!("read status text: {e}"))?;
    if String::from_utf8_lossy(&text).contains("name=") {
        Ok(())
    } else {
        Err("status text without name=".into())
    }
}

/// `m` honest clients one after another; how many were served, and why the others were not.
fn honest_round(net: &FloodNet, port: u16, m: usize) -> (usize, Vec<String>) {
    let dst = SocketAddr::new(SRV_H4.into(), port);
    let results = net
        .hon
        .thread("honest", move || {
            (0..m).map(|_| honest_status(dst)).collect::<Vec<_>>()
        })
        .join()
        .expect("honest thread");
    let served = results.iter().filter(|r| r.is_ok()).count();
    (
        served,
        results.into_iter().filter_map(Result::err).collect(),
    )
}

/// Waits until the server has closed every connection of `held` (at most `HELD_MAX` after
/// each was opened), reading what it sends and trickling hello bytes, one a second, on the
/// connections that trickle.
fn wait_all_closed(held: &mut [Held]) {
    let mut poll = Poll::new().expect("poll");
    for (i, h) in held.iter_mut().enumerate() {
        poll.registry()
            .register(&mut h.s, Token(i), Interest::READABLE)
            .expect("register connection");
    }
    let mut events = Events::with_capacity(256);
    let deadline = held.iter().map(|h| h.opened).max().expect("connections") + HELD_MAX;
    let trickle_bytes = hello(2, b"slowloris");
    let mut buf = [0u8; 512];
    // A closed connection has been seen at EOF (or reset), so it is read once more.
    let mut readable: Vec<usize> = (0..held.len()).collect();
    loop {
        for i in readable.drain(..) {
            let h = &mut held[i];
            while h.closed.is_none() {
                match h.s.read(&mut buf) {
                    Ok(0) => h.closed = Some(h.opened.elapsed()),
                    Ok(n) => h.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => h.closed = Some(h.opened.elapsed()),
                }
            }
        }
        let now = Instant::now();
        // Trickle: byte k of the hello at 0.5 s + k seconds after the connection opened.
        let mut next = deadline;
        for h in held.iter_mut().filter(|h| h.trickle && h.closed.is_none()) {
            let due =
                h.opened + Duration::from_millis(500) + Duration::from_secs(1) * h.trickled as u32;
            if due <= now
                && h.trickled < trickle_bytes.len()
                && h.s.write(&trickle_bytes[h.trickled..=h.trickled]).is_ok()
            {
                h.trickled += 1;
            }
            let due =
                h.opened + Duration::from_millis(500) + Duration::from_secs(1) * h.trickled as u32;
            next = next.min(due);
        }
        if held.iter().all(|h| h.closed.is_some()) || now >= deadline {
            return;
        }
        let wait = next
            .max(now)
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => readable.extend(events.iter().map(|e| e.token().0)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// `n` client connections from `src`, each with its hello sent at once (idle clients, which
/// the server keeps however long they stay silent), made inside `net.atk`.
fn open_idle(net: &FloodNet, src: IpAddr, port: u16, n: usize) -> Vec<TcpStream> {
    let dst = SocketAddr::new(SRV_A4.into(), port);
    net.atk
        .thread("connect", move || {
            (0..n)
                .map(|i| {
                    let mut s = connect_from(src, dst)
                        .unwrap_or_else(|e| panic!("connection {i} from {src}: {e}"));
                    // A refused connection may already be closed: its fate is read later.
                    let _ = s.write_all(&hello(2, b"idle"));
                    s
                })
                .collect()
        })
        .join()
        .expect("connect thread")
}

/// Whether the server serves `s` now: a Status command (6) is answered, rather than the
/// connection found closed.
fn served(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if s.write_all(&[6]).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    if s.read_exact(&mut head).is_err() || head[0] != 6 {
        return false;
    }
    let mut text = vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize];
    s.read_exact(&mut text).is_ok()
}

/// T5 (docs/SECURITY.md): a slowloris and a connection flood from few addresses against a
/// server whose open-files limit allows 192 connections. One IPv4 address opens 72
/// connections (16 trickle a hello byte a second, the rest send nothing), two addresses of
/// one IPv6 /64 open 40 each: 64 are held for each, the rest get 503 at once, and honest
/// clients are served meanwhile. Every held connection gets 408 at the hello deadline and
/// is closed; honest clients are served after. Then idle clients (a hello, nothing more)
/// from three addresses fill the total cap; a fourth address's and the honest clients get
/// in by closing the busiest addresses' idlest (docs/PROTOCOL.md §8.11): of the 200 held
/// open at once, at most the cap answer a Status command, and honest clients are served.
#[test]
fn a_slowloris_is_capped_per_address_and_in_all_and_closed_at_the_hello_deadline() {
    if !netns::can_run("flood_t5") {
        return;
    }
    let v6a = owned_v6(0, 0, 1);
    let v6b = owned_v6(0, 0, 2);
    let owned = [X1, X2, X3, X4, X5]
        .map(IpAddr::V4)
        .into_iter()
        .chain([v6a, v6b])
        .collect::<Vec<_>>();
    let net = FloodNet::create("tcp", &owned);
    let mut server = net.serve(&["prlimit", NOFILE], &[]);
    let port = server.addr.port();
    let line = server.proc.expect_stderr(
        "with the TCP connection cap",
        Duration::from_secs(10),
        |l| l.contains("max_conns="),
    );
    let cap: usize = line
        .split("max_conns=")
        .nth(1)
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no max_conns=N in {line:?}"));
    assert_eq!(cap, TOTAL_CAP, "the cap the open-files limit gives: {line}");

    // Per address: 64 held, then 503; honest clients served meanwhile.
    let t0 = Instant::now();
    let mut held = open(&net, IpAddr::V4(X1), port, PER_ADDRESS + 8, 16);
    let (ok1, why1) = honest_round(&net, port, 10);
    held.extend(open(&net, v6a, port, 40, 0));
    held.extend(open(&net, v6b, port, 40, 0));
    let (ok2, why2) = honest_round(&net, port, 10);
    let honest_flood = (ok1 + ok2, 20, [why1, why2].concat());
    let attack_opened = t0.elapsed();
    wait_all_closed(&mut held);
    let honest_after = honest_round(&net, port, 10);

    let count = |from: &[IpAddr], status: Option<u16>| {
        held.iter()
            .filter(|h| from.contains(&h.from) && h.status() == status)
            .count()
    };
    let open_left: Vec<String> = held
        .iter()
        .filter(|h| h.closed.is_none())
        .map(|h| {
            format!(
                "{} after {:.1?} ({:02x?})",
                h.from,
                h.opened.elapsed(),
                h.got
            )
        })
        .collect();
    assert!(
        open_left.is_empty(),
        "connections still open: {open_left:?}"
    );
    let odd: Vec<String> = held
        .iter()
        .filter(|h| !matches!(h.status(), Some(408 | 503)))
        .map(|h| format!("{}: {:02x?}", h.from, h.got))
        .collect();
    assert!(odd.is_empty(), "answers other than 408 or 503: {odd:?}");
    let x1 = [IpAddr::V4(X1)];
    let v6 = [v6a, v6b];
    assert_eq!(count(&x1, Some(408)), PER_ADDRESS, "{X1}: connections held");
    assert_eq!(
        count(&x1, Some(503)),
        8,
        "{X1}: connections refused with 503"
    );
    assert_eq!(
        count(&v6, Some(408)),
        PER_ADDRESS,
        "one /64: connections held"
    );
    assert_eq!(
        count(&v6, Some(503)),
        16,
        "one /64: connections refused with 503"
    );
    let closes: Vec<Duration> = held
        .iter()
        .filter(|h| h.status() == Some(408))
        .filter_map(|h| h.closed)
        .collect();
    let (first, last) = (
        closes.iter().min().copied().unwrap_or_default(),
        closes.iter().max().copied().unwrap_or_default(),
    );
    assert!(
        first + Duration::from_millis(500) >= HELLO_TIMEOUT,
        "a 408 came {first:.2?} after connecting, before the hello deadline"
    );
    let tricklers = held
        .iter()
        .filter(|h| h.trickle && h.status() == Some(408))
        .count();
    let trickled = held
        .iter()
        .filter(|h| h.trickle)
        .map(|h| h.trickled)
        .max()
        .unwrap_or(0);

    // In all: idle clients from three addresses fill the cap, a fourth finds it full. Every
    // connection stays open on our side until each has been asked for the status.
    let mut idle = Vec::new();
    for x in [X2, X3, X4] {
        idle.extend(open_idle(&net, IpAddr::V4(x), port, PER_ADDRESS));
    }
    idle.extend(open_idle(&net, IpAddr::V4(X5), port, 8));
    let honest_cap = honest_round(&net, port, 10);
    let answered = idle.iter_mut().map(served).filter(|&ok| ok).count();
    let closed_at_accept = idle.len() - answered;
    assert!(
        answered <= cap,
        "{answered} connections served at once, over the cap of {cap}"
    );
    assert!(
        closed_at_accept > 0,
        "all {} connections were served: the total cap was not reached",
        idle.len()
    );
    drop(idle);

    assert!(
        honest_flood.0 * 10 >= honest_flood.1 * 9,
        "honest clients served under the per-address flood: {}/{}: {:?}",
        honest_flood.0,
        honest_flood.1,
        honest_flood.2
    );
    assert!(
        honest_after.0 * 10 >= 10 * 9,
        "honest clients served after the 408s: {}/10: {:?}",
        honest_after.0,
        honest_after.1
    );
    // At the total cap the busiest address makes room: honest clients are served.
    assert!(
        honest_cap.0 * 10 >= 10 * 9,
        "honest clients served at the total cap: {}/10: {:?}",
        honest_cap.0,
        honest_cap.1
    );
    println!(
        "figure: T5 per_address: {X1} held={} 503={}; one /64 from 2 addresses held={} \
         503={} (opened in {attack_opened:.2?}); 408 to all {} held ({tricklers} trickling, \
         up to {trickled} hello bytes) {:.3}-{:.3} s after connect; total_cap={cap}: of {} \
         idle clients from 4 addresses {answered} served, {closed_at_accept} closed to \
         make room or at accept; honest_served={}/{} under the per-address flood, {}/10 after the 408s, \
         {}/10 at the total cap",
        count(&x1, Some(408)),
        count(&x1, Some(503)),
        count(&v6, Some(408)),
        count(&v6, Some(503)),
        closes.len(),
        first.as_secs_f64(),
        last.as_secs_f64(),
        answered + closed_at_accept,
        honest_flood.0,
        honest_flood.1,
        honest_after.0,
        honest_cap.0
    );
}
