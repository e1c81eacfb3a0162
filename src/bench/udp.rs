//! The UDP workloads of `rendezvous bench`: keepalive (open loop, final in-order probe),
//! lookup and register (closed loop, or paced open loop), over one connected UDP socket per
//! simulated client, with `sendmmsg`/`recvmmsg` (32 datagrams per system call) and one
//! epoll (mio) over all sockets.
//!
//! Owns the sockets it opens and closes them when the run ends. Never sends anything but
//! client packets (params 0x02) to the one target. Invariants: a socket's requests are
//! answered in the order sent (the server reads one socket in order), so its in-flight
//! queue is FIFO, and an answer that skips queued requests proves them lost; every loop
//! has a deadline.

use super::stats::{cpu_secs, udp_drops, Histogram};
use super::{add_cpu, BenchArgs, Common, Report, Workload};
use crate::identity::{Identity, KeyAlgorithm};
use crate::wire::udp::root::{signed_message, PARAM_TO_SERVER};
use crate::wire::udp::{Payload, Register, COOKIE_LEN};
use crate::wire::{Fingerprint, PacketType, Root, RootHeader};
use anyhow::{bail, Context, Result};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Datagrams per `sendmmsg`/`recvmmsg` call.
const BATCH: usize = 32;
/// Receive buffer per datagram, in bytes (more than the 1400-byte protocol limit).
const RX_LEN: usize = 1536;
/// Bytes a keepalive is padded to, as the bundled client does (a 404 then fits).
const KEEPALIVE_LEN: usize = crate::client::KEEPALIVE_LEN;
/// Kernel receive buffer asked for each client socket, in bytes.
const CLIENT_RCVBUF: usize = 1 << 20;
/// How often lost requests are looked for.
const EXPIRY_EVERY: Duration = Duration::from_millis(10);
/// Longest wait in one poll while requests are in flight.
const POLL_MAX: Duration = Duration::from_millis(5);
/// Most requests one socket keeps in flight in the open loop; older ones count as lost.
const OPEN_LOOP_MAX_PENDING: usize = 1 << 16;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One request in flight: when it left and what answers it (index of the looked-up target).
#[derive(Debug, Clone, Copy)]
struct Pending {
    at: Instant,
    tag: u32,
}

/// An identity of the register pool and the next timestamp it may sign (Unix s).
struct PoolId {
    id: Identity,
    next_ts: u64,
}

/// One simulated client: its socket and identities.
struct Client {
    sock: UdpSocket,
    fd: RawFd,
    fp: Fingerprint,
    cookie: Option<[u8; COOKIE_LEN]>,
    pool: Vec<PoolId>,
    pending: VecDeque<Pending>,
    /// Requests sent so far (picks the next lookup target).
    seq: usize,
    /// The pool identity to try next (register).
    next_id: usize,
    /// Sends go out as GSO messages (every datagram the workload sends has one size).
    gso: bool,
}

/// Counters of one run.
#[derive(Default)]
struct Tally {
    c: Common,
    /// Answers that matched no request in flight (late, or unexpected).
    unmatched: u64,
    online: u64,
    offline: u64,
    unknown: u64,
    /// Punch requests (type 3) received: lookups of online clients cause them.
    punches: u64,
    /// Other datagrams (malformed, relayed events, OKs out of place).
    other: u64,
    /// register: OKs.
    accepted: u64,
    /// register: new cookies (type 9) received in answer to a registration.
    cookies: u64,
    /// register: sends skipped because every identity of a socket had used its timestamps.
    pool_stalls: u64,
}

/// A client packet: params 0x02, plain layout.
fn packet(ty: PacketType, signature: &[u8], timestamp: u64, payload: &[u8]) -> Vec<u8> {
    RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: ty,
        signature,
        timestamp,
    }
    .to_vec(payload)
    .unwrap_or_default()
}

/// A registration of `id` signed at `ts` (Unix s), with `cookie` appended when given.
fn register_packet(id: &Identity, ts: u64, cookie: Option<&[u8; COOKIE_LEN]>) -> Vec<u8> {
    let p = Payload::Register(Register {
        cert: id.cert_der(),
        cookie,
    });
    let mut body = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut body).unwrap_or(0);
    body.truncate(n);
    let sig = id.sign(&signed_message(ts, &body));
    packet(PacketType::Register, &sig, ts, &body)
}

fn lookup_packet(target: &Fingerprint) -> Vec<u8> {
    packet(PacketType::Lookup, &[], unix_now(), &target.0)
}

/// A socket connected to `target`, bound to loopback when the target is loopback.
fn open_socket(target: SocketAddr) -> Result<std::net::UdpSocket> {
    let (domain, bind): (Domain, SocketAddr) = match (target.is_ipv6(), target.ip().is_loopback()) {
        (false, true) => (Domain::IPV4, "127.0.0.1:0".parse()?),
        (false, false) => (Domain::IPV4, "0.0.0.0:0".parse()?),
        (true, true) => (Domain::IPV6, "[::1]:0".parse()?),
        (true, false) => (Domain::IPV6, "[::]:0".parse()?),
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(CLIENT_RCVBUF);
    s.bind(&bind.into())?;
    s.connect(&target.into())?;
    Ok(s.into())
}

/// What a datagram from the server says, as far as the bench cares.
enum Answer<'a> {
    Ok,
    Cookie([u8; COOKIE_LEN]),
    Lookup { target: &'a [u8], status: u8 },
    Error { status: u16, request: u8 },
    Punch,
    Other,
}

fn classify(data: &[u8]) -> Answer<'_> {
    let Ok(root) = Root::parse(data) else {
        return Answer::Other;
    };
    let p = root.payload;
    match root.packet_type {
        PacketType::Ok => Answer::Ok,
        PacketType::Cookie if p.len() == COOKIE_LEN => {
            let mut c = [0u8; COOKIE_LEN];
            c.copy_from_slice(p);
            Answer::Cookie(c)
        }
        PacketType::LookupAnswer if p.len() > 32 => Answer::Lookup {
            target: &p[..32],
            status: p[32],
        },
        PacketType::Error if p.len() >= 3 => Answer::Error {
            status: u16::from_be_bytes([p[0], p[1]]),
            request: p[2],
        },
        PacketType::ServerEvent => Answer::Punch,
        _ => Answer::Other,
    }
}

/// Registers `id` from `sock` as the bundled client does: without a cookie, then again with
/// the cookie of the type-9 answer, until the OK. Returns the cookie (none from a sink that
/// answers OK at once) and the timestamp of the accepted registration.
fn handshake(
    sock: &std::net::UdpSocket,
    id: &Identity,
    target: SocketAddr,
) -> Result<(Option<[u8; COOKIE_LEN]>, u64)> {
    let mut cookie: Option<[u8; COOKIE_LEN]> = None;
    let mut buf = [0u8; RX_LEN];
    for _ in 0..4 {
        let mut ts = unix_now();
        sock.send(&register_packet(id, ts, cookie.as_ref()))?;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            match classify(&buf[..n]) {
                Answer::Ok => return Ok((cookie, ts)),
                Answer::Cookie(c) => {
                    cookie = Some(c);
                    ts = unix_now();
                    sock.send(&register_packet(id, ts, cookie.as_ref()))?;
                }
                Answer::Error { status, request }
                    if request == u8::from(PacketType::Register) || request == 0xFF =>
                {
                    bail!("the server at {target} refused a registration: status {status}")
                }
                _ => {}
            }
        }
    }
    bail!("no answer to registrations from {target} (is it running, and is UDP reachable?)")
}

/// Opens `n` clients, each registered with the first of `pool` fresh identities.
fn open_clients(args: &BenchArgs, target: SocketAddr, pool: usize) -> Result<Vec<Client>> {
    let started = Instant::now();
    let tag = std::process::id();
    let mut out = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let ids = (0..pool)
            .map(|k| Identity::generate(KeyAlgorithm::Ed25519, &format!("bench {tag} {i}.{k}")))
            .collect::<Result<Vec<_>>>()?;
        let std_sock = open_socket(target).context("opening a client socket")?;
        let (cookie, ts) = handshake(&std_sock, &ids[0], target)
            .with_context(|| format!("registering bench client {i}"))?;
        std_sock.set_nonblocking(true)?;
        let fd = std_sock.as_raw_fd();
        let fp = ids[0].fingerprint();
        let pool = ids
            .into_iter()
            .enumerate()
            .map(|(k, id)| PoolId {
                id,
                next_ts: if k == 0 { ts + 1 } else { 0 },
            })
            .collect();
        out.push(Client {
            sock: UdpSocket::from_std(std_sock),
            fd,
            fp,
            cookie,
            pool,
            pending: VecDeque::new(),
            seq: 0,
            next_id: 1,
            gso: false,
        });
    }
    eprintln!(
        "bench: {} clients registered at {target} ({} identities) in {:.2} s",
        out.len(),
        out.len() * pool,
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Sends `pkts` on a connected socket with `sendmmsg`, in batches of [`BATCH`]; returns
/// how many the kernel took (it stops at the first refusal, e.g. a full send buffer).
fn send_all(fd: RawFd, pkts: &[&[u8]]) -> usize {
    let mut sent = 0;
    for chunk in pkts.chunks(BATCH) {
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid before filling.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, p) in chunk.iter().enumerate() {
            iov[i].iov_base = p.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = p.len();
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at one iovec over a live packet for the call; the
        // socket is connected, so no address is given.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                chunk.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r <= 0 {
            break;
        }
        sent += r as usize;
        if (r as usize) < chunk.len() {
            break;
        }
    }
    sent
}

/// Datagrams per GSO message (the kernel's limit is 64 on older kernels).
const GSO_SEGMENTS: usize = 64;
/// Keepalives one socket sends per pass with GSO (4 messages).
const KEEPALIVE_GSO_BURST: usize = 4 * GSO_SEGMENTS;

/// Asks the kernel to cut every later send on `fd` larger than `size` bytes into datagrams
/// of `size` bytes (UDP generic segmentation offload, `UDP_SEGMENT`, Linux 4.18+), so one
/// system call and one pass down the stack carry up to [`GSO_SEGMENTS`] datagrams; the
/// server still receives them one by one. Returns false when the kernel refuses.
fn set_gso(fd: RawFd, size: usize) -> bool {
    let v = size as libc::c_int;
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Sends the datagrams of `size` bytes laid back to back in `buf` as GSO messages of up to
/// [`GSO_SEGMENTS`] datagrams, [`BATCH`] messages per `sendmmsg`; returns how many
/// datagrams the kernel took.
///
/// # Errors
/// The OS error when the very first message is refused for another reason than a full
/// buffer (the caller then sends without GSO).
fn send_gso(fd: RawFd, buf: &[u8], size: usize) -> io::Result<usize> {
    let mut sent = 0;
    let msgs: Vec<&[u8]> = buf.chunks(size * GSO_SEGMENTS).collect();
    for chunk in msgs.chunks(BATCH) {
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid before filling.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, m) in chunk.iter().enumerate() {
            iov[i].iov_base = m.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = m.len();
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at one iovec over live bytes of `buf` for the call;
        // the socket is connected, so no address is given.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                chunk.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r <= 0 {
            let e = io::Error::last_os_error();
            let full = matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS));
            if sent == 0 && !full {
                return Err(e);
            }
            break;
        }
        let r = r as usize;
        sent += chunk[..r]
            .iter()
            .map(|m| m.len().div_ceil(size))
            .sum::<usize>();
        if r < chunk.len() {
            break;
        }
    }
    Ok(sent)
}

/// Fixed receive buffers for `recvmmsg`.
struct Rx {
    bufs: Box<[[u8; RX_LEN]; BATCH]>,
    lens: [usize; BATCH],
}

impl Rx {
    fn new() -> Self {
        Rx {
            bufs: Box::new([[0u8; RX_LEN]; BATCH]),
            lens: [0; BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; returns how many.
    fn recv(&mut self, fd: RawFd) -> usize {
        // SAFETY: plain old data, as in `send_all`.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = RX_LEN;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer of RX_LEN bytes for the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return 0;
        }
        let r = r as usize;
        for (len, h) in self.lens.iter_mut().zip(&hdrs[..r]) {
            *len = h.msg_len as usize;
        }
        r
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i].min(RX_LEN)]
    }
}

/// Paces sends at `rate` per second in all (0: unlimited).
struct Pacer {
    rate: u64,
    start: Instant,
    sent: u64,
}

impl Pacer {
    /// Requests that may leave now.
    fn budget(&self, now: Instant) -> u64 {
        if self.rate == 0 {
            return u64::MAX;
        }
        let allowed = (self.rate as f64 * now.duration_since(self.start).as_secs_f64()) as u64
            + (self.rate / 1000).clamp(1, BATCH as u64);
        allowed.saturating_sub(self.sent)
    }

    /// Time until the next request may leave.
    fn wait(&self, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let at = self.start + Duration::from_secs_f64((self.sent + 1) as f64 / self.rate as f64);
        at.saturating_duration_since(now)
    }
}

/// Runs a UDP workload against `target`.
pub(crate) fn run(args: &BenchArgs, target: SocketAddr) -> Result<Report> {
    let pool = if args.workload == Workload::Register {
        args.identities
    } else {
        1
    };
    let mut clients = open_clients(args, target, pool)?;
    let mut poll = Poll::new()?;
    for (i, c) in clients.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.sock, Token(i), Interest::READABLE)?;
    }
    let gso_size = match args.workload {
        Workload::Keepalive => Some(KEEPALIVE_LEN),
        Workload::Lookup => Some(lookup_packet(&clients[0].fp).len()),
        _ => None,
    };
    if let (Some(size), false) = (gso_size, args.no_gso) {
        for c in clients.iter_mut() {
            c.gso = set_gso(c.fd, size);
        }
    }
    let mut rx = Rx::new();
    // Answers to the setup are gone by now; drop anything left (e.g. punch requests).
    for c in &clients {
        while rx.recv(c.fd) > 0 {}
    }
    let cpu0 = args.pid.and_then(cpu_secs);
    let (tally, count_for_cpu, mut extra) = match args.workload {
        Workload::Keepalive => keepalive(args, target, &mut clients, &mut poll, &mut rx)?,
        _ => requests(args, &mut clients, &mut poll, &mut rx)?,
    };
    let cpu1 = args.pid.and_then(cpu_secs);
    let mut r = tally.c.report(args, target);
    r.int("unmatched", tally.unmatched);
    r.int("gso", u64::from(clients.iter().all(|c| c.gso)));
    match args.workload {
        Workload::Keepalive => {}
        Workload::Lookup => {
            r.int("online", tally.online);
            r.int("offline", tally.offline);
            r.int("unknown", tally.unknown);
            r.int("punches", tally.punches);
        }
        Workload::Register => {
            r.int("accepted", tally.accepted);
            r.num(
                "accepted_per_s",
                if tally.c.secs > 0.0 {
                    tally.accepted as f64 / tally.c.secs
                } else {
                    0.0
                },
            );
            r.int("cookies", tally.cookies);
            r.int("pool_stalls", tally.pool_stalls);
            r.int("identities", (args.clients * args.identities) as u64);
        }
        Workload::Contacts => {}
    }
    r.int(
        "other",
        tally.other
            + if args.workload == Workload::Lookup {
                0
            } else {
                tally.punches
            },
    );
    for (k, v) in extra.drain(..) {
        r.set(k, v);
    }
    add_cpu(&mut r, cpu0, cpu1, tally.c.secs, count_for_cpu);
    Ok(r)
}

type Extra = Vec<(&'static str, super::Value)>;

/// Records an answer that is not a lookup answer: errors by status, punches, others.
/// Returns the status of an error for request type `req` (or unreadable, 0xFF).
fn note_other(t: &mut Tally, a: &Answer<'_>, req: u8) -> Option<u16> {
    match *a {
        Answer::Error { status, request } => {
            *t.c.errors.entry(status).or_default() += 1;
            (request == req || request == 0xFF).then_some(status)
        }
        Answer::Punch => {
            t.punches += 1;
            None
        }
        _ => {
            t.other += 1;
            None
        }
    }
}

/// Lookup and register: closed loop (`--in-flight` per socket) or paced open loop.
fn requests(
    args: &BenchArgs,
    clients: &mut [Client],
    poll: &mut Poll,
    rx: &mut Rx,
) -> Result<(Tally, u64, Extra)> {
    let lookup = args.workload == Workload::Lookup;
    let fps: Vec<Fingerprint> = clients.iter().map(|c| c.fp).collect();
    let lookups: Vec<Vec<u8>> = fps.iter().map(lookup_packet).collect();
    let n = clients.len();
    let window = if args.open_loop {
        OPEN_LOOP_MAX_PENDING
    } else {
        args.in_flight
    };
    let per_pass = if args.open_loop {
        BATCH
    } else {
        args.in_flight
    };
    let timeout = args.timeout();
    let spread = args.timestamp_spread;
    let mut t = Tally::default();
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let end = start + args.duration();
    let drain_end = end + timeout.min(Duration::from_secs(1));
    let mut pacer = Pacer {
        rate: args.rate,
        start,
        sent: 0,
    };
    let mut last_answer = start;
    let mut next_expiry = start + EXPIRY_EVERY;
    let mut rr = 0usize;
    let mut regs: Vec<Vec<u8>> = Vec::with_capacity(per_pass);
    let mut tags: Vec<u32> = Vec::with_capacity(per_pass.min(BATCH * 4));
    let mut gbuf: Vec<u8> = Vec::new();
    loop {
        let now = Instant::now();
        let sending = now < end;
        if !sending && (now >= drain_end || clients.iter().all(|c| c.pending.is_empty())) {
            break;
        }
        let mut budget = if sending { pacer.budget(now) } else { 0 };
        if sending {
            let unix = unix_now();
            for k in 0..n {
                if budget == 0 {
                    break;
                }
                let i = (rr + k) % n;
                let c = &mut clients[i];
                let room = window.saturating_sub(c.pending.len()).min(per_pass);
                let want = (room as u64).min(budget) as usize;
                if want == 0 {
                    continue;
                }
                tags.clear();
                let sent = if lookup {
                    for j in 0..want {
                        tags.push(((i + 1 + c.seq + j) % n) as u32);
                    }
                    let pkts: Vec<&[u8]> = tags
                        .iter()
                        .map(|&x| lookups[x as usize].as_slice())
                        .collect();
                    let mut sent = None;
                    if c.gso {
                        gbuf.clear();
                        pkts.iter().for_each(|p| gbuf.extend_from_slice(p));
                        match send_gso(c.fd, &gbuf, pkts[0].len()) {
                            Ok(k) => sent = Some(k),
                            Err(_) => c.gso = false,
                        }
                    }
                    sent.unwrap_or_else(|| send_all(c.fd, &pkts))
                } else {
                    regs.clear();
                    for _ in 0..want {
                        match next_registration(c, unix, spread) {
                            Some(p) => regs.push(p),
                            None => {
                                t.pool_stalls += 1;
                                break;
                            }
                        }
                    }
                    tags.resize(regs.len(), 0);
                    let pkts: Vec<&[u8]> = regs.iter().map(|p| p.as_slice()).collect();
                    send_all(c.fd, &pkts)
                };
                let at = Instant::now();
                for &tag in &tags[..sent] {
                    c.pending.push_back(Pending { at, tag });
                }
                c.seq += sent;
                t.c.sent += sent as u64;
                pacer.sent += sent as u64;
                budget = budget.saturating_sub(sent as u64);
            }
            rr = (rr + 1) % n;
        }
        let wait = if !sending {
            POLL_MAX.min(drain_end.saturating_duration_since(now))
        } else if args.open_loop && args.rate == 0 {
            Duration::ZERO
        } else if args.rate > 0 && budget == 0 {
            pacer.wait(now).min(POLL_MAX)
        } else {
            POLL_MAX.min(end.saturating_duration_since(now))
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut clients[i];
            loop {
                let got = rx.recv(c.fd);
                let now = Instant::now();
                for k in 0..got {
                    let data = rx.get(k);
                    let a = classify(data);
                    let matched = if lookup {
                        on_lookup_answer(&mut t, c, &fps, args.sink, &a)
                    } else {
                        on_register_answer(&mut t, c, &a)
                    };
                    if let Some(p) = matched {
                        t.c.received += 1;
                        t.c.hist.record(now.duration_since(p.at));
                        last_answer = now;
                    }
                }
                if got < BATCH {
                    break;
                }
            }
        }
        let now = Instant::now();
        if now >= next_expiry {
            next_expiry = now + EXPIRY_EVERY;
            for c in clients.iter_mut() {
                while c
                    .pending
                    .front()
                    .is_some_and(|p| now.duration_since(p.at) > timeout)
                {
                    c.pending.pop_front();
                    t.c.lost += 1;
                }
            }
        }
    }
    for c in clients.iter_mut() {
        t.c.lost += c.pending.len() as u64;
        c.pending.clear();
    }
    t.c.secs = last_answer.max(end).duration_since(start).as_secs_f64();
    let count = t.c.received;
    Ok((t, count, Vec::new()))
}

/// The next registration of client `c`: its identities in turn, each with a timestamp one
/// second after its last, at least `now - spread` and at most `now + spread` (Unix s).
/// `None` when every identity has used its timestamps up to `now + spread`.
fn next_registration(c: &mut Client, now: u64, spread: u64) -> Option<Vec<u8>> {
    let n = c.pool.len();
    for k in 0..n {
        let idx = (c.next_id + k) % n;
        let e = &mut c.pool[idx];
        let ts = e.next_ts.max(now.saturating_sub(spread));
        if ts > now + spread {
            continue;
        }
        e.next_ts = ts + 1;
        c.next_id = idx + 1;
        return Some(register_packet(&e.id, ts, c.cookie.as_ref()));
    }
    None
}

/// Matches a lookup answer to the oldest request in flight for its target; requests
/// queued before it were lost. Returns the request answered.
fn on_lookup_answer(
    t: &mut Tally,
    c: &mut Client,
    fps: &[Fingerprint],
    sink: bool,
    a: &Answer<'_>,
) -> Option<Pending> {
    match *a {
        Answer::Lookup { target, status } => {
            let pos = if sink {
                (!c.pending.is_empty()).then_some(0)
            } else {
                c.pending
                    .iter()
                    .position(|p| fps[p.tag as usize].0 == target)
            };
            let Some(pos) = pos else {
                t.unmatched += 1;
                return None;
            };
            t.c.lost += pos as u64;
            c.pending.drain(..pos);
            match status {
                0 => t.online += 1,
                1 => t.offline += 1,
                _ => t.unknown += 1,
            }
            c.pending.pop_front()
        }
        _ => {
            note_other(t, a, u8::from(PacketType::Lookup))?;
            let p = c.pending.pop_front();
            if p.is_none() {
                t.unmatched += 1;
            }
            p
        }
    }
}

/// Matches an answer to a registration (OK, cookie, error) to the oldest in flight.
fn on_register_answer(t: &mut Tally, c: &mut Client, a: &Answer<'_>) -> Option<Pending> {
    match *a {
        Answer::Ok => t.accepted += 1,
        Answer::Cookie(k) => {
            // The cookie expired (they last 60-120 s): later registrations carry the new one.
            c.cookie = Some(k);
            t.cookies += 1;
        }
        _ => {
            note_other(t, a, u8::from(PacketType::Register))?;
        }
    }
    let p = c.pending.pop_front();
    if p.is_none() {
        t.unmatched += 1;
    }
    p
}

/// Keepalive: open loop for `--duration`, then one lookup of itself per socket, answered
/// only once the server has read everything sent before it.
fn keepalive(
    args: &BenchArgs,
    target: SocketAddr,
    clients: &mut [Client],
    poll: &mut Poll,
    rx: &mut Rx,
) -> Result<(Tally, u64, Extra)> {
    let mut ka = packet(PacketType::Keepalive, &[], unix_now(), &[]);
    ka.resize(KEEPALIVE_LEN, 0);
    let burst: Vec<&[u8]> = vec![ka.as_slice(); BATCH];
    // With GSO, one pass sends up to KEEPALIVE_GSO_BURST datagrams per socket, back to back.
    let gso_burst: Vec<u8> = ka.repeat(KEEPALIVE_GSO_BURST);
    let n = clients.len();
    let mut t = Tally::default();
    let mut events = Events::with_capacity(1024);
    let drops0 = udp_drops(target.port());
    let start = Instant::now();
    let end = start + args.duration();
    let mut pacer = Pacer {
        rate: args.rate,
        start,
        sent: 0,
    };
    let mut rr = 0;
    let send_end = loop {
        let now = Instant::now();
        if now >= end {
            break now;
        }
        let mut budget = pacer.budget(now);
        for k in 0..n {
            if budget == 0 {
                break;
            }
            let c = &mut clients[(rr + k) % n];
            let mut sent = None;
            if c.gso {
                let want = (KEEPALIVE_GSO_BURST as u64).min(budget) as usize;
                match send_gso(c.fd, &gso_burst[..want * KEEPALIVE_LEN], KEEPALIVE_LEN) {
                    Ok(k) => sent = Some(k),
                    Err(_) => c.gso = false,
                }
            }
            let sent = sent.unwrap_or_else(|| {
                let want = (BATCH as u64).min(budget) as usize;
                send_all(c.fd, &burst[..want])
            }) as u64;
            t.c.sent += sent;
            pacer.sent += sent;
            budget -= sent.min(budget);
        }
        rr = (rr + 1) % n;
        let wait = if budget == 0 {
            pacer.wait(Instant::now()).min(POLL_MAX)
        } else {
            Duration::ZERO
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let c = &clients[ev.token().0];
            loop {
                let got = rx.recv(c.fd);
                for k in 0..got {
                    // Keepalives get no answer: anything here is an error (e.g. 404) or noise.
                    let a = classify(rx.get(k));
                    note_other(&mut t, &a, 0);
                }
                if got < BATCH {
                    break;
                }
            }
        }
    };
    // The barrier: one lookup of itself per socket (no punch request), resent while
    // unanswered; its answer proves the server has read every earlier datagram.
    let probes: Vec<Vec<u8>> = clients.iter().map(|c| lookup_packet(&c.fp)).collect();
    let mut answered = vec![false; n];
    let mut first_sent: Vec<Option<Instant>> = vec![None; n];
    let mut probes_sent = 0u64;
    let mut last_answer = send_end;
    let probe_end = send_end + args.timeout().max(Duration::from_secs(2));
    let mut resend_at = send_end;
    let mut probe_hist = Histogram::new();
    while answered.iter().any(|a| !a) {
        let now = Instant::now();
        if now >= probe_end {
            break;
        }
        if now >= resend_at {
            for (i, c) in clients.iter().enumerate() {
                if !answered[i] && send_all(c.fd, &[probes[i].as_slice()]) == 1 {
                    first_sent[i].get_or_insert_with(Instant::now);
                    probes_sent += 1;
                }
            }
            resend_at = Instant::now() + Duration::from_millis(200);
        }
        let wait = resend_at
            .min(probe_end)
            .saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &clients[i];
            loop {
                let got = rx.recv(c.fd);
                let now = Instant::now();
                for k in 0..got {
                    match classify(rx.get(k)) {
                        Answer::Lookup { .. } if !answered[i] => {
                            answered[i] = true;
                            let at = first_sent[i].unwrap_or(send_end);
                            probe_hist.record(now.duration_since(at));
                            last_answer = now;
                        }
                        a => {
                            note_other(&mut t, &a, 0);
                        }
                    }
                }
                if got < BATCH {
                    break;
                }
            }
        }
    }
    let lost_probes = answered.iter().filter(|a| !**a).count() as u64;
    let drops = match (drops0, udp_drops(target.port())) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    t.c.received = t.c.sent.saturating_sub(drops.unwrap_or(0));
    t.c.secs = last_answer.duration_since(start).as_secs_f64();
    t.c.hist = probe_hist;
    t.c.lost = lost_probes;
    let send_secs = send_end.duration_since(start).as_secs_f64();
    let mut extra: Extra = Vec::new();
    extra.push((
        "send_rate_per_s",
        super::Value::Num(if send_secs > 0.0 {
            t.c.sent as f64 / send_secs
        } else {
            0.0
        }),
    ));
    extra.push((
        "server_drops",
        match drops {
            Some(d) => super::Value::Int(d),
            None => super::Value::Text("unknown".into()),
        },
    ));
    extra.push(("probes", super::Value::Int(probes_sent)));
    let count = t.c.received;
    Ok((t, count, extra))
}
