//! A real NAT on one Linux machine: network namespaces, veth pairs and nftables masquerade.
//!
//! ```text
//!  c1 192.0.2.2/24 ── lan|nat1|wan 203.0.113.2/30 ── n1|inet|n2 ── 203.0.113.6/30 wan|nat2|lan ── c2 198.51.100.2/24
//!       (client A)     192.0.2.1   masquerade       203.0.113.1    203.0.113.5    masquerade  198.51.100.1   (client B)
//!                                                (server, routes)
//! ```
//!
//! Each NAT namespace masquerades what leaves its WAN side (`table ip nat`, postrouting) and,
//! like any home router, drops unsolicited packets addressed to itself (`table inet filter`,
//! input, policy drop, established/related accepted). The drop matters for hole punching: a
//! peer's packet that arrives before our own outbound packet would otherwise be delivered
//! locally and leave a conntrack entry that collides with the mapping we are about to create,
//! and Linux would then masquerade us to a *different* port (symmetric behaviour, so
//! punching fails). Dropped before conntrack confirms it, the packet leaves no entry, and the
//! NAT behaves as endpoint-independent mapping with address-and-port-dependent filtering.
//!
//! UDP conntrack timeouts in the NAT namespaces are 5 s (both unreplied and stream), so a
//! mapping without traffic expires in seconds.
//!
//! Only documentation addresses are used (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24),
//! inside namespaces that have no link to the host: nothing can leave the machine.
//! Namespace names carry the test process id, a per-test tag and a counter; every namespace
//! (and any process still inside it) is removed on drop, also when the test panics.

use super::{run, Proc};
use std::ffi::OsStr;
use std::fs::File;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// Prefix of every namespace these helpers create: `rdv<pid>-<tag><n>-<role>`.
const PREFIX: &str = "rdv";

const CMD_TIMEOUT: Duration = Duration::from_secs(20);

pub const SERVER_IP: &str = "203.0.113.1";
pub const INET_TO_NAT2_IP: &str = "203.0.113.5";
pub const NAT1_WAN_IP: &str = "203.0.113.2";
pub const NAT2_WAN_IP: &str = "203.0.113.6";
pub const NAT1_LAN_IP: &str = "192.0.2.1";
pub const NAT2_LAN_IP: &str = "198.51.100.1";
pub const C1_IP: &str = "192.0.2.2";
pub const C2_IP: &str = "198.51.100.2";

/// Conntrack UDP timeout set in the NAT namespaces, in seconds.
pub const UDP_TIMEOUT_S: u64 = 5;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn in_path(prog: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(prog).is_file())
}

/// Whether this process can build namespaces: root, and `ip`, `nft` and `sysctl` installed.
/// Returns false (after printing a note) when the test should be skipped; panics instead
/// when `CI=true`, where skipping would hide a failure.
pub fn can_run(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    let problem = if !root {
        Some("needs root (network namespaces and nftables)".to_string())
    } else {
        ["ip", "nft", "sysctl"]
            .into_iter()
            .find(|p| !in_path(p))
            .map(|p| format!("`{p}` is not installed (apt-get install iproute2 nftables procps)"))
    };
    match problem {
        None => true,
        Some(why) if ci() => panic!("NAT test {test}: {why}, and CI=true forbids skipping"),
        Some(why) => {
            eprintln!("note: skipping NAT test {test}: {why}");
            false
        }
    }
}

/// Runs a command to completion and panics with its output if it fails.
fn sh(what: &str, mut cmd: Command) {
    cmd.env("LC_ALL", "C");
    run(what, cmd, CMD_TIMEOUT).assert_success(what);
}

fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    sh(&format!("ip {}", args.join(" ")), cmd);
}

/// One network namespace, deleted on drop (after killing any process left inside it).
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add NAME`, then brings `lo` up.
    pub fn create(name: &str) -> Netns {
        assert!(
            name.starts_with(PREFIX),
            "namespace names start with {PREFIX}"
        );
        ip(&["netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME PROG`: add arguments, then spawn or run it.
    pub fn command(&self, prog: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(prog);
        cmd
    }

    /// Spawns `PROG ARGS...` inside the namespace with stdout piped (see `Proc`).
    pub fn spawn<I, S>(&self, name: &str, prog: impl AsRef<OsStr>, args: I) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(prog);
        cmd.args(args);
        Proc::spawn(name, cmd)
    }

    /// `ip -n NAME ARGS...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Runs `PROG ARGS...` inside the namespace to completion, panicking on failure.
    pub fn exec(&self, prog: &str, args: &[&str]) -> Vec<String> {
        let mut cmd = self.command(prog);
        cmd.args(args).env("LC_ALL", "C");
        let what = format!("[{}] {prog} {}", self.name, args.join(" "));
        run(&what, cmd, CMD_TIMEOUT)
            .assert_success(&what)
            .stdout
            .clone()
    }

    /// `sysctl -w KEY=VALUE` inside the namespace, then reads it back and checks it.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-w", &format!("{key}={value}")]);
        let back = self.exec("sysctl", &["-n", key]);
        assert_eq!(
            back.first().map(|s| s.trim()),
            Some(value),
            "[{}] sysctl {key} reads back {back:?}, not {value}",
            self.name
        );
    }

    /// Loads an nftables ruleset (text) inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("rules.nft");
        std::fs::write(&file, ruleset).expect("write nft rules");
        self.exec("nft", &["-f", file.to_str().expect("utf-8 temp path")]);
    }

    /// A UDP socket bound to `addr` inside this namespace, usable from the test process
    /// itself: a helper thread enters the namespace (`setns` changes only the calling
    /// thread), binds, and hands the socket back; a socket keeps the namespace it was made in.
    pub fn udp_socket(&self, addr: &str) -> UdpSocket {
        let path = format!("/run/netns/{}", self.name);
        let addr = addr.to_string();
        thread::spawn(move || -> std::io::Result<UdpSocket> {
            let file = File::open(&path)?;
            // setns changes this helper thread only.
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            UdpSocket::bind(addr.as_str())
        })
        .join()
        .expect("setns thread panicked")
        .unwrap_or_else(|e| panic!("[{}] UDP socket: {e}", self.name))
    }

    /// Runs `f` on a new thread that first enters this namespace (`setns` changes that
    /// thread only); every socket `f` makes keeps this namespace, also when handed back.
    pub fn thread<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        let ns = self.name.clone();
        thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
                f()
            })
            .expect("spawn namespace thread")
    }

    /// Runs `ip -batch` inside the namespace: one `ip` command per line (`addr add ...`,
    /// `route add ...`), so hundreds of addresses cost one process.
    pub fn ip_batch(&self, lines: &[String]) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("ip.batch");
        std::fs::write(&file, lines.join("\n") + "\n").expect("write ip batch");
        self.ip(&["-batch", file.to_str().expect("utf-8 temp path")]);
    }

    /// Pids of the processes whose network namespace is this one.
    fn pids(name: &str) -> Vec<i32> {
        let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    fn destroy(name: &str) {
        // Processes started in the namespace by these tests are killed by their owners;
        // this catches any that leaked (for example a grandchild), by pid.
        for pid in Self::pids(name) {
            // A pid read from the namespace we created.
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Self::destroy(&self.name);
    }
}

/// Removes namespaces left behind by earlier test processes that were killed before they
/// could clean up (`rdv<pid>-...` whose pid no longer exists).
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            Netns::destroy(&name);
        }
    }
}

fn nat_ruleset() -> String {
    // Interfaces inside a NAT namespace are called `wan` and `lan`.
    "table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"wan\" masquerade
    }
}
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        iifname \"lo\" accept
        ct state established,related accept
        iifname \"lan\" accept
    }
}
"
    .to_string()
}

/// The five namespaces of the NAT topology (see the module docs). Dropping it removes them.
pub struct NatTopology {
    /// The "internet": runs the server at `SERVER_IP`, routes between the two NATs.
    pub inet: Netns,
    /// Router of client A: WAN `NAT1_WAN_IP`, LAN 192.0.2.1/24, masquerade.
    pub nat1: Netns,
    /// Client A at `C1_IP`, behind nat1.
    pub c1: Netns,
    /// Router of client B: WAN `NAT2_WAN_IP`, LAN 198.51.100.1/24, masquerade.
    pub nat2: Netns,
    /// Client B at `C2_IP`, behind nat2.
    pub c2: Netns,
}

impl NatTopology {
    /// Builds the topology if this machine can (see `can_run`), else returns None after a
    /// note (or panics when `CI=true`). `tag` names the test in the namespace names.
    pub fn setup_or_skip(tag: &str) -> Option<NatTopology> {
        if !can_run(tag) {
            return None;
        }
        Some(NatTopology::create(tag))
    }

    /// Builds the topology; panics (removing what was built) if any step fails.
    pub fn create(tag: &str) -> NatTopology {
        assert!(
            tag.bytes().all(|b| b.is_ascii_alphanumeric()),
            "tag must be alphanumeric"
        );
        sweep_stale();
        let setup_started = std::time::Instant::now();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{tag}{n}", std::process::id());
        let ns = |role: &str| Netns::create(&format!("{base}-{role}"));
        // Each namespace is owned as soon as it exists, so a failure below removes it.
        let topo = NatTopology {
            inet: ns("inet"),
            nat1: ns("nat1"),
            c1: ns("c1"),
            nat2: ns("nat2"),
            c2: ns("c2"),
        };

        // veth pairs, created directly inside their namespaces (interface names are per
        // namespace, so these short names never collide between tests).
        let pair = |a: &Netns, an: &str, b: &Netns, bn: &str| {
            ip(&[
                "link", "add", an, "netns", &a.name, "type", "veth", "peer", "name", bn, "netns",
                &b.name,
            ]);
        };
        pair(&topo.inet, "n1", &topo.nat1, "wan");
        pair(&topo.inet, "n2", &topo.nat2, "wan");
        pair(&topo.nat1, "lan", &topo.c1, "eth0");
        pair(&topo.nat2, "lan", &topo.c2, "eth0");

        let addr = |ns: &Netns, dev: &str, cidr: &str| {
            ns.ip(&["addr", "add", cidr, "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        };

        // The internet: two links, forwards between them, no NAT.
        addr(&topo.inet, "n1", &format!("{SERVER_IP}/30"));
        addr(&topo.inet, "n2", &format!("{INET_TO_NAT2_IP}/30"));
        topo.inet.sysctl("net.ipv4.ip_forward", "1");

        for (nat, client, wan, gw, lan, client_ip) in [
            (
                &topo.nat1,
                &topo.c1,
                NAT1_WAN_IP,
                SERVER_IP,
                NAT1_LAN_IP,
                C1_IP,
            ),
            (
                &topo.nat2,
                &topo.c2,
                NAT2_WAN_IP,
                INET_TO_NAT2_IP,
                NAT2_LAN_IP,
                C2_IP,
            ),
        ] {
            addr(nat, "wan", &format!("{wan}/30"));
            addr(nat, "lan", &format!("{lan}/24"));
            nat.ip(&["route", "add", "default", "via", gw]);
            nat.sysctl("net.ipv4.ip_forward", "1");
            nat.nft(&nat_ruleset());
            // After the rule exists, so that the conntrack module is loaded and its
            // per-namespace sysctls exist.
            let t = UDP_TIMEOUT_S.to_string();
            nat.sysctl("net.netfilter.nf_conntrack_udp_timeout", &t);
            nat.sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", &t);

            addr(client, "eth0", &format!("{client_ip}/24"));
            client.ip(&["route", "add", "default", "via", lan]);
        }
        eprintln!(
            "NAT topology {base}: built in {:.1?}",
            setup_started.elapsed()
        );
        topo
    }
}
