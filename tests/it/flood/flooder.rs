//! The T4 attacker (docs/SECURITY.md): one thread in the attackers' namespace that gets a
//! cookie for each owned socket, then sends registrations with fresh identities and
//! lookups from every source, owned and spoofed, at a set pace, and counts the answers by
//! rate-limit key.

use super::{
    budget_keys, t4_owned, t4_spoofed, unix_now, FloodReport, Source, FLOOD_MAX, FLOOD_PACE,
    REGS_EACH, SPOOFED_EACH, V4_PORTS, V6_PORTS,
};
use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token};
use rendezvous::client;
use rendezvous::client::Incoming;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::{Payload, Register};
use rendezvous::wire::Fingerprint;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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
pub(super) fn flood(servers: (SocketAddr, SocketAddr), mut ids: Vec<Identity>) -> FloodReport {
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
