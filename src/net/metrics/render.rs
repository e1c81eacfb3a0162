//! Renders a scrape: a fresh prometheus-client [`Registry`] filled from the latest
//! [`NodeSnapshot`], the store latency histogram and the process's numbers, encoded as
//! OpenMetrics text, or turned into the Prometheus text format 0.0.4 (what `promtool check
//! metrics` and older scrapers read). Names and units: docs/METRICS.md.

use super::process::ProcessStats;
use super::StoreLatency;
use crate::core::snapshot::NodeSnapshot;
use crate::core::tcp::{LinkStatus, TcpGauges, TcpStats};
use crate::core::udp::{EmitStats, LookupResult, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// One label, with a value known at compile time.
type Label = [(&'static str, &'static str); 1];

/// A registry being filled, with shorthands for the plain integer metrics.
struct Reg(Registry);

impl Reg {
    fn counter(&mut self, name: &str, help: &str, v: u64) {
        let c: Counter = Counter::default();
        c.inc_by(v);
        self.0.register(name, help, c);
    }

    fn counters(
        &mut self,
        name: &str,
        help: &str,
        key: &'static str,
        vals: &[(&'static str, u64)],
    ) {
        let f: Family<Label, Counter> = Family::default();
        for &(label, v) in vals {
            f.get_or_create(&[(key, label)]).inc_by(v);
        }
        self.0.register(name, help, f);
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        self.0.register(name, help, g);
    }

    fn gauges(&mut self, name: &str, help: &str, key: &'static str, vals: &[(&'static str, u64)]) {
        let f: Family<Label, Gauge> = Family::default();
        for &(label, v) in vals {
            f.get_or_create(&[(key, label)])
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        self.0.register(name, help, f);
    }

    fn seconds(&mut self, name: &str, help: &str, v: f64) {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(v);
        self.0.register_with_unit(name, help, Unit::Seconds, g);
    }
}

/// What a scrape shows: the node's snapshot with its age in seconds (none before the loop's
/// first publication), the store latency and the process.
pub(super) struct Scrape<'a> {
    pub(super) node: Option<(&'a NodeSnapshot, f64)>,
    pub(super) store: &'a StoreLatency,
    pub(super) process: Option<ProcessStats>,
}

/// The scrape as OpenMetrics text (ending in `# EOF`).
pub(super) fn openmetrics(s: &Scrape<'_>) -> String {
    let mut reg = Reg(Registry::default());
    if let Some((snap, age_s)) = s.node {
        udp_metrics(&mut reg, &snap.udp, snap.local_clients, snap.remote_clients);
        federation_metrics(&mut reg, &snap.udp);
        tcp_metrics(&mut reg, &snap.tcp, &snap.tcp_gauges);
        reg.seconds(
            "rendezvous_metrics_snapshot_age",
            "Age of the event loop's counters shown",
            age_s,
        );
    }
    reg.0.register_with_unit(
        "rendezvous_store_request_duration",
        "Time the store took over each request, by kind (apply: a batch of contact writes)",
        Unit::Seconds,
        s.store.clone(),
    );
    if let Some(p) = s.process {
        process_metrics(&mut reg, &p);
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &reg.0);
    text
}

/// The UDP plane: datagrams, what they did, refusals, lookups, events, the directory.
fn udp_metrics(reg: &mut Reg, s: &Stats, local: u64, remote: u64) {
    let d = &s.datagrams;
    reg.counter(
        "rendezvous_udp_datagrams_received",
        "UDP datagrams handled",
        d.datagrams_in,
    );
    reg.counter(
        "rendezvous_udp_datagrams_sent",
        "UDP datagrams sent",
        s.emitted.datagrams_out,
    );
    let rejected: Vec<(&str, u64)> = EmitStats::ERROR_REASONS
        .iter()
        .copied()
        .zip(s.emitted.errors)
        .collect();
    reg.counters(
        "rendezvous_udp_rejected",
        "UDP requests refused with an error reply, by reason",
        "reason",
        &rejected,
    );
    reg.counter(
        "rendezvous_udp_dropped",
        "UDP datagrams dropped without an answer (server packets, replies, budgets)",
        s.emitted.dropped,
    );
    reg.counter(
        "rendezvous_registrations",
        "Registrations accepted",
        d.registrations,
    );
    reg.counter(
        "rendezvous_keepalives",
        "Keepalives that refreshed a client",
        d.keepalives,
    );
    reg.counter(
        "rendezvous_cookies_sent",
        "Address-check cookies sent",
        d.cookies_sent,
    );
    reg.counter(
        "rendezvous_clients_expired",
        "Clients expired by the TTL",
        d.expired,
    );
    let lookups: Vec<(&str, u64)> = LookupResult::ALL
        .iter()
        .map(|r| (r.label(), d.lookup.results[*r as usize]))
        .collect();
    reg.counters(
        "rendezvous_lookups",
        "Lookups answered, by result",
        "result",
        &lookups,
    );
    reg.counters(
        "rendezvous_punch_requests",
        "Punch requests sent to a target here (direct) or forwarded to its home server",
        "via",
        &[
            ("direct", d.lookup.punches_sent),
            ("home", d.lookup.punches_forwarded),
        ],
    );
    reg.gauges(
        "rendezvous_directory_clients",
        "Clients online in the directory: registered here (local) or at a peer (remote)",
        "location",
        &[("local", local), ("remote", remote)],
    );
    event_metrics(reg, s);
}

/// Relayed events and the offline queues.
fn event_metrics(reg: &mut Reg, s: &Stats) {
    let d = &s.datagrams;
    reg.counter(
        "rendezvous_events_relayed",
        "Events relayed at once to an online client",
        d.relayed,
    );
    reg.counter(
        "rendezvous_events_queued",
        "Events queued for an offline client",
        d.queued,
    );
    reg.counter(
        "rendezvous_events_delivered",
        "Queued events delivered",
        d.delivered,
    );
    reg.counters(
        "rendezvous_events_dropped",
        "Queued events dropped undelivered, by reason",
        "reason",
        &[("evicted", s.queue.evicted), ("expired", s.queue.expired)],
    );
    reg.gauge(
        "rendezvous_relay_queue_events",
        "Events queued now",
        s.queue.events,
    );
    reg.gauge(
        "rendezvous_relay_queue_bytes",
        "Event bytes queued now",
        s.queue.bytes,
    );
}

/// Directory records and forwards exchanged with peer servers.
fn federation_metrics(reg: &mut Reg, s: &Stats) {
    let f = &s.federation;
    reg.counter(
        "rendezvous_federation_records_received",
        "Directory records received from peers",
        f.peer_records_in,
    );
    reg.counter(
        "rendezvous_federation_records_applied",
        "Directory records from peers that changed the directory",
        f.peer_records_applied,
    );
    reg.counter(
        "rendezvous_federation_records_refused",
        "Directory records from peers refused",
        f.peer_records_refused,
    );
    reg.counter(
        "rendezvous_federation_forwards_received",
        "Forwards (punch requests, events) received from peers",
        f.forwards_in,
    );
    reg.counter(
        "rendezvous_federation_forwards_sent",
        "Forwards put in the peer outbox",
        f.forwards_out,
    );
    reg.counter(
        "rendezvous_federation_outbox_dropped",
        "Peer outbox items dropped because it was full",
        f.peer_out_dropped,
    );
}

/// The TCP plane: contacts, errors, connections, links, clock and journal.
fn tcp_metrics(reg: &mut Reg, s: &TcpStats, g: &TcpGauges) {
    reg.counters(
        "rendezvous_contact_updates",
        "Contact writes accepted, from clients or received from peers",
        "source",
        &[("client", s.client_updates), ("peer", s.peer_updates)],
    );
    reg.counter(
        "rendezvous_tcp_errors",
        "TCP status frames sent with an error status",
        s.errors,
    );
    reg.counter(
        "rendezvous_store_failures",
        "Store batches that failed",
        s.store_failures,
    );
    reg.counter(
        "rendezvous_clocks_refused",
        "Peer clocks refused as implausible",
        s.clocks_refused,
    );
    reg.counter(
        "rendezvous_journal_duplicate_lines",
        "Journal lines received twice and dropped",
        s.duplicate_lines,
    );
    let c = &g.conns;
    reg.gauges(
        "rendezvous_tcp_connections",
        "Open TCP connections by role (pending: no hello yet; link: opened by this server)",
        "role",
        &[
            ("pending", c.pending),
            ("client", c.client),
            ("server", c.server),
            ("link", c.link),
        ],
    );
    let states: Vec<(&str, u64)> = LinkStatus::ALL
        .iter()
        .map(|st| {
            (
                st.label(),
                g.links.iter().filter(|l| l.status == *st).count() as u64,
            )
        })
        .collect();
    reg.gauges(
        "rendezvous_federation_links",
        "Peer links this server opens, by state",
        "state",
        &states,
    );
    let lag: Family<[(&'static str, String); 1], Gauge> = Family::default();
    for l in &g.links {
        lag.get_or_create(&[("peer", l.peer.to_string())])
            .set(i64::try_from(l.lag_lines).unwrap_or(i64::MAX));
    }
    reg.0.register(
        "rendezvous_federation_link_lag_lines",
        "Journal lines a peer has not confirmed durable, per link",
        lag,
    );
    reg.gauge(
        "rendezvous_lamport_clock",
        "The Lamport clock",
        u64::from(g.clock),
    );
    reg.gauge(
        "rendezvous_journal_head",
        "The journal's last line",
        g.journal_head,
    );
}

/// The standard process metrics.
fn process_metrics(reg: &mut Reg, p: &ProcessStats) {
    let cpu: Counter<f64, AtomicU64> = Counter::default();
    cpu.inc_by(p.cpu_seconds);
    reg.0.register_with_unit(
        "process_cpu",
        "Total user and system CPU time spent",
        Unit::Seconds,
        cpu,
    );
    let bytes = |v: u64| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    reg.0.register_with_unit(
        "process_resident_memory",
        "Resident memory size",
        Unit::Bytes,
        bytes(p.resident_bytes),
    );
    reg.0.register_with_unit(
        "process_virtual_memory",
        "Virtual memory size",
        Unit::Bytes,
        bytes(p.virtual_bytes),
    );
    reg.gauge(
        "process_open_fds",
        "Number of open file descriptors",
        p.open_fds,
    );
    if let Some(max) = p.max_fds {
        reg.gauge(
            "process_max_fds",
            "Maximum number of open file descriptors",
            max,
        );
    }
    reg.seconds(
        "process_start_time",
        "Start time of the process since the Unix epoch",
        p.start_time_seconds,
    );
}

/// OpenMetrics text as prometheus-client writes it, in the Prometheus text format 0.0.4:
/// a counter family's `# HELP` and `# TYPE` name the `_total` series, and the `# UNIT`
/// and `# EOF` lines (which 0.0.4 has not) go. Samples and histograms are the same in
/// both.
pub(super) fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(h) = help.replace(rest) {
                push_line(&mut out, &["# HELP ", h]);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, ty) = match ty {
                "counter" => ("_total", ty),
                "unknown" => ("", "untyped"),
                _ => ("", ty),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                push_line(&mut out, &["# HELP ", name, suffix, " ", text]);
            }
            push_line(&mut out, &["# TYPE ", name, suffix, " ", ty]);
            continue;
        }
        if let Some(h) = help.take() {
            push_line(&mut out, &["# HELP ", h]);
        }
        push_line(&mut out, &[line]);
    }
    out
}

fn push_line(out: &mut String, parts: &[&str]) {
    for p in parts {
        out.push_str(p);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_and_units_and_eof_go() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total{k=\"v\"} 3\n\
                  # HELP b_seconds Time.\n# TYPE b_seconds gauge\n# UNIT b_seconds seconds\n\
                  b_seconds 1.5\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total{k=\"v\"} 3\n\
             # HELP b_seconds Time.\n# TYPE b_seconds gauge\nb_seconds 1.5\n"
        );
    }

    #[test]
    fn a_scrape_has_the_node_store_and_process_metrics() {
        let store = super::super::store_latency();
        store.get_or_create(&[("op", "apply")]).observe(0.002);
        let s = Scrape {
            node: Some((&NodeSnapshot::default(), 0.25)),
            store: &store,
            process: super::super::process::read(),
        };
        let om = openmetrics(&s);
        assert!(om.ends_with("# EOF\n"), "{om}");
        let text = prometheus_text(&om);
        for needle in [
            "# TYPE rendezvous_registrations_total counter\n",
            "rendezvous_lookups_total{result=\"unknown\"} 0\n",
            "rendezvous_store_request_duration_seconds_count{op=\"apply\"} 1\n",
            "# TYPE process_cpu_seconds_total counter\n",
            "rendezvous_metrics_snapshot_age_seconds 0.25\n",
            "rendezvous_tcp_connections{role=\"client\"} 0\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }
}
