//! T4 (docs/SECURITY.md): registrations and lookups from many sources, owned and spoofed,
//! against the directory's cap, the registration budgets per /24, /64 and /48 and the
//! server's memory, while honest clients register, keep alive and look up.

use super::flooder::flood;
use super::{
    proc_kib, raise_nofile, t4_owned, udp_counters, FloodNet, MAX_CLIENTS, NETS_PER_SITE,
    REGS_EACH, SITES, SRV_A4, SRV_A6, SRV_H4, SRV_H6, V4_ADDRS, V4_PORTS, V6_PORTS,
};
use crate::common::netns;
use rendezvous::client::contacts::ContactsClient;
use rendezvous::client::Client;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::LookupStatus;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

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
