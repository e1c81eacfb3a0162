//! T5 (docs/SECURITY.md): connections held open without a hello, or with one trickled,
//! from few addresses: capped per address and in all, closed at the hello deadline with
//! 408, the idlest closed for newcomers, honest clients served throughout.

use super::{owned_v6, FloodNet, SRV_A4, SRV_A6, SRV_H4};
use crate::common::netns;
use mio::net::TcpStream as MioTcp;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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
