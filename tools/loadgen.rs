//! `loadgen`: a small load generator for one `rendezvous serve` on loopback, and a plain
//! UDP sink server that answers the same packets with the least possible work (the
//! same-run baseline the figures are reported against).
//!
//! ```text
//! loadgen sink --listen 127.0.0.1:5000              # baseline server
//! loadgen keepalive --target 127.0.0.1:4747 --secs 5 # open loop + in-order probe
//! loadgen lookup    --target 127.0.0.1:4747 --secs 5 # closed loop, window per socket
//! ```
//! Keepalives get no answer, so their rate is measured open-loop: each socket sends
//! bursts with `sendmmsg`, then a lookup whose answer proves the server has processed
//! everything before it on that socket; kernel receive-buffer drops (from /proc/net/snmp)
//! are subtracted. Lookups are measured closed-loop with a window of requests in flight.
//! Every run is bounded by `--secs` and stops by itself. Packets, hellos, records and
//! status frames are written and read with the wire's codecs (`rendezvous::wire`); `stream`
//! counts an AskForUpdate answer's records in bytes without reading them.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rendezvous::client::Client;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::net::mmsg::{self, RecvBatch};
use rendezvous::wire::tcp::{
    self, emit_count, parse_count, ContactFields, Hello, Role, ServerCommand, StatusFrame,
    COUNT_LEN, SERVER_RECORD_LEN,
};
use rendezvous::wire::udp::root::{signed_message, PARAM_FROM_SERVER, PARAM_TO_SERVER};
use rendezvous::wire::udp::{LookupAnswer, LookupStatus, OkInfo, Payload, Register, COOKIE_LEN};
use rendezvous::wire::{Fingerprint, PacketType, Root, RootHeader};
use socket2::{SockAddr, SockRef};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Receive buffer per datagram, in bytes.
const RX_LEN: usize = 1500;

#[derive(Parser)]
#[command(about = "Load generator and baseline sink for rendezvous (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A baseline UDP server: answers lookups (type 5) with a datagram of a lookup
    /// answer's size, ignores everything else; registrations get a fake OK.
    Sink {
        #[arg(long)]
        listen: SocketAddr,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 120)]
        secs: u64,
    },
    /// Keepalives per second the target sustains.
    Keepalive(Load),
    /// Lookups per second the target answers.
    Lookup(Load),
    /// Loads `count` contacts into a server through a role-1 (peer) connection (the
    /// server needs --allow-peer 127.0.0.1/32), then waits for its durability barrier.
    Fill {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 1_000_000)]
        count: u32,
    },
    /// Registers `count` distinct fresh Ed25519 identities at a loopback `target`, each
    /// from its own source address (127.1.0.0 upwards), `window` registrations in flight,
    /// and leaves them registered (the sockets close; the server keeps each client until
    /// its TTL): what `scripts/memory` measures the RSS per client with.
    Clients {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 100_000)]
        count: u32,
        #[arg(long, default_value_t = 256)]
        window: usize,
    },
    /// Streams AskForUpdate from `target` (role 1) and times it; with --pid, reports the
    /// server's peak memory (VmHWM) before and after.
    Stream {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Baseline: a plain TCP sender that answers any connection with `[count u32]` and
    /// `count` 537-byte records from one prebuilt buffer (what the kernel allows).
    TcpSender {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1_000_000)]
        count: u32,
        /// Serve this many connections, then stop.
        #[arg(long, default_value_t = 1)]
        conns: u32,
    },
}

#[derive(clap::Args)]
struct Load {
    #[arg(long)]
    target: SocketAddr,
    /// Client sockets (each a registered identity).
    #[arg(long, default_value_t = 32)]
    sockets: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Lookups in flight per socket (lookup mode) / keepalive bursts per probe (keepalive).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// The target is the baseline sink (skip real registration).
    #[arg(long)]
    sink: bool,
    /// The target's process id: report its CPU use and the rate per core-second.
    #[arg(long)]
    pid: Option<u32>,
}

/// CPU seconds (user + system) used so far by process `pid` (Linux /proc).
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    pid.and_then(rendezvous::tools::bench::stats::cpu_secs)
}

/// `cpu=.. per_core=..` for a rate over `secs` given CPU readings before and after.
fn cpu_report(before: Option<f64>, after: Option<f64>, secs: f64, count: u64) -> String {
    match (before, after) {
        (Some(b), Some(a)) if a > b => {
            let cpu = (a - b) / secs;
            format!(
                " server_cpu={:.0}% per_core_second={:.0}",
                cpu * 100.0,
                count as f64 / (a - b)
            )
        }
        _ => String::new(),
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Sink { listen, secs } => sink(listen, secs),
        Cmd::Keepalive(l) => keepalive(&l),
        Cmd::Lookup(l) => lookup(&l),
        Cmd::Fill { target, count } => fill(target, count),
        Cmd::Clients {
            target,
            count,
            window,
        } => many_clients(target, count, window),
        Cmd::Stream { target, pid } => stream(target, pid),
        Cmd::TcpSender {
            listen,
            count,
            conns,
        } => tcp_sender(listen, count, conns),
    }
}

/// The hello of a server-role opener named `loadgen` (docs/PROTOCOL.md §8.2).
fn server_hello() -> Vec<u8> {
    let mut h = vec![0u8; tcp::HELLO_LEN];
    Hello {
        role: Role::Server,
        name: "loadgen",
    }
    .emit(&mut h)
    .expect("a hello fits");
    h
}

/// One server-role Update record for contact number `i` (`0x01` + 536 bytes; the same
/// bytes as an AskForUpdate answer's record).
fn record(i: u32, clock: u32, out: &mut [u8]) {
    let (user, contact, phone) = (
        format!("user{:07}", i / 10),
        format!("contact{:07}", i),
        format!("+1555{:07}", i),
    );
    ServerCommand::Update {
        clock,
        fields: ContactFields {
            username: &user,
            contact: &contact,
            phone: &phone,
        },
    }
    .emit(out)
    .expect("short names fit");
}

/// Reads one status frame from `s` (all it expects to receive) and returns it parsed.
fn read_status(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    use std::io::Read;
    loop {
        if let Some(n) = StatusFrame::frame_len(buf)? {
            return Ok(StatusFrame::parse(&buf[..n])?.status);
        }
        let mut chunk = [0u8; 512];
        let got = s.read(&mut chunk)?;
        if got == 0 {
            bail!("the server closed the connection before its status frame");
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// VmHWM (peak resident set) of process `pid`, KiB.
fn vm_hwm_kib(pid: Option<u32>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fill(target: SocketAddr, count: u32) -> Result<()> {
    use std::io::Write;
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(target)?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, s.try_clone()?);
    w.write_all(&server_hello())?;
    let mut rec = [0u8; SERVER_RECORD_LEN];
    for i in 0..count {
        record(i, i + 1, &mut rec);
        w.write_all(&rec)?;
    }
    w.write_all(&[tcp::CMD_BARRIER])?;
    w.flush()?;
    let status = read_status(&mut s, &mut Vec::new())?;
    if status != 200 {
        bail!("the server did not confirm the load: status {status}");
    }
    println!(
        "fill: count={count} secs={:.2}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn stream(target: SocketAddr, pid: Option<u32>) -> Result<()> {
    use std::io::{Read, Write};
    let hwm0 = vm_hwm_kib(pid);
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(target)?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    s.write_all(&server_hello())?;
    s.write_all(&[tcp::CMD_ASK_FOR_UPDATE])?;
    let mut count = [0u8; COUNT_LEN];
    s.read_exact(&mut count)?;
    let count = parse_count(&count)?;
    // The records are counted in bytes, not read: this measures the stream, not a reader.
    let record = SERVER_RECORD_LEN as u64;
    let mut buf = vec![0u8; SERVER_RECORD_LEN * 256];
    let mut left = u64::from(count) * record;
    while left > 0 {
        let n = (left as usize).min(buf.len());
        s.read_exact(&mut buf[..n])?;
        left -= n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = COUNT_LEN as u64 + u64::from(count) * record;
    let mem = match (hwm0, vm_hwm_kib(pid)) {
        (Some(a), Some(b)) => format!(" server_vmhwm_before={a}KiB after={b}KiB"),
        _ => String::new(),
    };
    println!(
        "stream: count={count} bytes={bytes} secs={secs:.3} MB/s={:.0}{mem}",
        bytes as f64 / secs / 1e6
    );
    Ok(())
}

fn tcp_sender(listen: SocketAddr, count: u32, conns: u32) -> Result<()> {
    use std::io::{Read, Write};
    if !listen.ip().is_loopback() {
        bail!("the baseline sender listens on loopback only");
    }
    let l = std::net::TcpListener::bind(listen)?;
    println!("listening tcp {}", l.local_addr()?);
    // One 1,000-record chunk, sent over and over: the bytes cost nothing to produce.
    let mut chunk = vec![0u8; SERVER_RECORD_LEN * 1000];
    for (i, rec) in chunk.chunks_mut(SERVER_RECORD_LEN).enumerate() {
        record(i as u32, 1, rec);
    }
    let mut count_bytes = [0u8; COUNT_LEN];
    emit_count(count, &mut count_bytes)?;
    for _ in 0..conns {
        let (mut s, _) = l.accept()?;
        let mut hello = vec![0u8; tcp::HELLO_LEN + 1];
        s.read_exact(&mut hello)?;
        s.write_all(&count_bytes)?;
        let mut left = count as usize;
        while left > 0 {
            let n = left.min(1000);
            s.write_all(&chunk[..n * SERVER_RECORD_LEN])?;
            left -= n;
        }
    }
    Ok(())
}

/// Kernel-wide UDP receive-buffer drops so far (Linux), for drop accounting.
fn udp_rcvbuf_errors() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(h), Some(v)) = (lines.next(), lines.next()) else {
        return 0;
    };
    h.split_whitespace()
        .zip(v.split_whitespace())
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A server's packet (params 0x01) with `payload`, for the sink.
fn reply(payload: Payload<'_>) -> Result<Vec<u8>> {
    let mut body = vec![0u8; payload.buffer_len()];
    let n = payload.emit(&mut body)?;
    Ok(RootHeader {
        params: PARAM_FROM_SERVER,
        shift_len: None,
        packet_type: payload.packet_type(),
        signature: &[],
        timestamp: 0,
    }
    .to_vec(&body[..n])?)
}

fn packet(ty: PacketType, payload: &[u8]) -> Vec<u8> {
    RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: ty,
        signature: &[],
        timestamp: 0,
    }
    .to_vec(payload)
    .expect("small packet")
}

/// Sends `pkt` up to `n` times (at most one batch) on a connected socket with sendmmsg;
/// returns how many went.
fn send_many(sock: &UdpSocket, pkt: &[u8], n: usize) -> usize {
    mmsg::send_connected(sock, std::iter::repeat(pkt).take(n)).unwrap_or(0)
}

/// Receives up to a batch of datagrams (non-blocking); returns how many, and how many of
/// them were lookup answers (type 6).
fn recv_many(sock: &UdpSocket, rx: &mut RecvBatch) -> (usize, usize) {
    let n = mmsg::recv_batch(sock, rx).unwrap_or(0);
    let answers = (0..n)
        .filter(|&i| rx.datagram(i).get(1) == Some(&u8::from(PacketType::LookupAnswer)))
        .count();
    (n, answers)
}

/// Opens `n` client sockets connected to `target`, registered (unless `sink`).
fn clients(l: &Load) -> Result<Vec<(UdpSocket, Fingerprint)>> {
    let mut out = Vec::with_capacity(l.sockets);
    for i in 0..l.sockets {
        let id = Identity::generate(KeyAlgorithm::Ed25519, &format!("load{i}"))?;
        let fp = id.fingerprint();
        let bind: SocketAddr = if l.target.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        }
        .parse()?;
        let sock = if l.sink {
            UdpSocket::bind(bind)?
        } else {
            let mut c = Client::new(l.target, id, Some(bind))?;
            c.register(3, Duration::from_secs(2))
                .with_context(|| format!("registering load client {i} at {}", l.target))?;
            c.into_socket()
        };
        sock.connect(l.target)?;
        sock.set_nonblocking(true)?;
        out.push((sock, fp));
    }
    Ok(out)
}

fn drain(socks: &[(UdpSocket, Fingerprint)], rx: &mut RecvBatch) {
    for (s, _) in socks {
        while recv_many(s, rx).0 > 0 {}
    }
}

fn keepalive(l: &Load) -> Result<()> {
    let socks = clients(l)?;
    let mut rx = RecvBatch::new(RX_LEN);
    drain(&socks, &mut rx);
    let ka = packet(PacketType::Keepalive, &[]);
    let drops0 = udp_rcvbuf_errors();
    let cpu0 = cpu_secs(l.pid);
    let start = Instant::now();
    let end = start + Duration::from_secs(l.secs);
    let mut sent = 0u64;
    let mut probes = 0u64;
    let mut lost_probes = 0u64;
    'run: while Instant::now() < end {
        for (i, (s, _)) in socks.iter().enumerate() {
            for _ in 0..l.window {
                sent += send_many(s, &ka, mmsg::BATCH) as u64;
            }
            // Probe: a lookup answered only after this socket's keepalives were handled.
            let target = socks[(i + 1) % socks.len()].1;
            let probe = packet(PacketType::Lookup, &target.0);
            let _ = s.send(&probe);
            probes += 1;
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                let (_, answers) = recv_many(s, &mut rx);
                if answers > 0 {
                    break;
                }
                if Instant::now() > deadline {
                    lost_probes += 1;
                    break;
                }
                if Instant::now() > end + Duration::from_secs(1) {
                    break 'run;
                }
                std::hint::spin_loop();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let drops = udp_rcvbuf_errors().saturating_sub(drops0);
    let handled = sent.saturating_sub(drops);
    println!(
        "keepalive: sent={sent} kernel_drops={drops} handled={handled} secs={secs:.2} rate={:.0}/s probes={probes} lost_probes={lost_probes}{}",
        handled as f64 / secs,
        cpu_report(cpu0, cpu_secs(l.pid), secs, handled)
    );
    Ok(())
}

fn lookup(l: &Load) -> Result<()> {
    let socks = clients(l)?;
    let mut rx = RecvBatch::new(RX_LEN);
    drain(&socks, &mut rx);
    let pkts: Vec<Vec<u8>> = (0..socks.len())
        .map(|i| packet(PacketType::Lookup, &socks[(i + 1) % socks.len()].1 .0))
        .collect();
    let mut inflight = vec![0usize; socks.len()];
    let mut last_answer = vec![Instant::now(); socks.len()];
    let cpu0 = cpu_secs(l.pid);
    let start = Instant::now();
    let end = start + Duration::from_secs(l.secs);
    let mut answers = 0u64;
    let mut sent = 0u64;
    while Instant::now() < end {
        for (i, (s, _)) in socks.iter().enumerate() {
            let now = Instant::now();
            if inflight[i] > 0 && now.duration_since(last_answer[i]) > Duration::from_millis(200) {
                inflight[i] = 0; // lost: refill the window
            }
            if inflight[i] < l.window {
                let n = send_many(s, &pkts[i], l.window - inflight[i]);
                inflight[i] += n;
                sent += n as u64;
            }
            let (_, a) = recv_many(s, &mut rx);
            if a > 0 {
                answers += a as u64;
                inflight[i] = inflight[i].saturating_sub(a);
                last_answer[i] = Instant::now();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "lookup: sent={sent} answers={answers} secs={secs:.2} rate={:.0}/s{}",
        answers as f64 / secs,
        cpu_report(cpu0, cpu_secs(l.pid), secs, answers)
    );
    Ok(())
}

fn sink(listen: SocketAddr, secs: u64) -> Result<()> {
    if !listen.ip().is_loopback() {
        bail!("the sink listens on loopback only");
    }
    let sock = rendezvous::net::bind_udp(listen)?;
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    println!("listening udp {}", sock.local_addr()?);
    // A lookup answer for an IPv4 client with alias "rendezvous" (the usual size); an OK.
    let loopback: SocketAddr = "127.0.0.1:1".parse()?;
    let answer = reply(Payload::LookupAnswer(LookupAnswer {
        target: Fingerprint([0; 32]),
        status: LookupStatus::Online {
            addr: loopback,
            age_s: 0,
        },
        home: "rendezvous",
    }))?;
    let ok = reply(Payload::Ok(Some(OkInfo {
        keepalive_s: 25,
        boot_epoch: 1,
        reflexive: loopback,
    })))?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut rx = RecvBatch::new(RX_LEN);
    let replies = SockRef::from(&sock);
    while Instant::now() < end {
        // Waits for the first datagram at most the read timeout, then takes what is queued.
        if mmsg::recv_batch_wait(&sock, &mut rx).is_err() {
            continue;
        }
        for (from, data) in rx.iter() {
            let reply = match Root::parse(data).map(|r| r.packet_type) {
                Ok(PacketType::Lookup) => &answer,
                Ok(PacketType::Register) => &ok,
                _ => continue,
            };
            let _ = replies.send_to_with_flags(reply, &SockAddr::from(from), libc::MSG_DONTWAIT);
        }
    }
    Ok(())
}

/// One registration in flight for `loadgen clients`.
struct Pending {
    sock: UdpSocket,
    id: Identity,
    /// When the last datagram went (resent after a second without an answer).
    sent: Instant,
    /// The cookie, once the server sent one.
    cookie: Option<[u8; COOKIE_LEN]>,
}

/// A registration of `id` at the current time, with `cookie` when there is one (without,
/// the signature is left out: the server asks for a cookie before it looks at it).
fn registration(id: &Identity, cookie: Option<&[u8; COOKIE_LEN]>) -> Result<Vec<u8>> {
    let p = Payload::Register(Register::listed(id.cert_der(), cookie));
    let mut body = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut body)?;
    body.truncate(n);
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let sig = match cookie {
        Some(_) => id.sign(&signed_message(ts, &body)),
        None => vec![0; 64],
    };
    Ok(RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: PacketType::Register,
        signature: &sig,
        timestamp: ts,
    }
    .to_vec(&body)?)
}

/// Opens the socket of client `i` (source 127.1.0.0 + i) and sends its first datagram.
fn start_client(target: SocketAddr, i: u32) -> Result<Pending> {
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(127, 1, 0, 0)) + i);
    let sock = UdpSocket::bind((ip, 0))?;
    sock.connect(target)?;
    sock.set_nonblocking(true)?;
    let id = Identity::generate(KeyAlgorithm::Ed25519, &format!("clients {i}"))?;
    sock.send(&registration(&id, None)?)?;
    Ok(Pending {
        sock,
        id,
        sent: Instant::now(),
        cookie: None,
    })
}

/// `loadgen clients`: see [`Cmd::Clients`]. Gives up on a client after 10 resends.
fn many_clients(target: SocketAddr, count: u32, window: usize) -> Result<()> {
    if !target.ip().is_loopback() || target.is_ipv6() {
        bail!("clients registers from 127.1.0.0 upwards: the target must be IPv4 loopback");
    }
    if count > 16_000_000 {
        bail!("--count must be at most 16000000");
    }
    let start = Instant::now();
    let (mut next, mut done, mut refused, mut resent) = (0u32, 0u64, 0u64, 0u64);
    let mut flight: Vec<Pending> = Vec::with_capacity(window);
    let mut buf = [0u8; RX_LEN];
    let cert_len = Identity::generate(KeyAlgorithm::Ed25519, "clients 0")?
        .cert_der()
        .len();
    while next < count || !flight.is_empty() {
        while flight.len() < window.max(1) && next < count {
            flight.push(start_client(target, next)?);
            next += 1;
        }
        let mut k = 0;
        let mut progress = false;
        while k < flight.len() {
            let p = &mut flight[k];
            let Ok(n) = p.sock.recv(&mut buf) else {
                if p.sent.elapsed() > Duration::from_secs(1) {
                    resent += 1;
                    if resent > 10 * u64::from(count).max(1) {
                        bail!("no answers from {target}");
                    }
                    p.sock.send(&registration(&p.id, p.cookie.as_ref())?)?;
                    p.sent = Instant::now();
                }
                k += 1;
                continue;
            };
            progress = true;
            let answer = Root::parse(&buf[..n])
                .ok()
                .and_then(|r| Payload::parse(r.packet_type, r.payload).ok());
            match answer {
                Some(Payload::Cookie(c)) => {
                    p.cookie = Some(c);
                    p.sock.send(&registration(&p.id, Some(&c))?)?;
                    p.sent = Instant::now();
                    k += 1;
                }
                Some(Payload::Ok(_)) => {
                    done += 1;
                    flight.swap_remove(k);
                }
                Some(Payload::Error(_)) => {
                    refused += 1;
                    flight.swap_remove(k);
                }
                _ => k += 1,
            }
        }
        if !progress {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    println!(
        "clients: registered={done} refused={refused} resent={resent} cert_der_bytes={cert_len} secs={:.1}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
