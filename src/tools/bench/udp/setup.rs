//! Setting up the UDP workloads: the packets the bench sends (docs/PROTOCOL.md §2, §3),
//! one connected socket per simulated client, each registered as the bundled client does it
//! (signed registration, cookie round trip; §5.1, §5.2). Not timed.

use super::{classify, Answer};
use crate::identity::{Identity, KeyAlgorithm};
use crate::tools::bench::{BenchError, BenchOptions, RegisterError};
use crate::wire::udp::root::{signed_message, PARAM_TO_SERVER};
use crate::wire::udp::{Payload, Register, COOKIE_LEN};
use crate::wire::{Fingerprint, PacketType, RootHeader};
use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Kernel receive buffer asked for each client socket, in bytes.
const CLIENT_RCVBUF: usize = 1 << 20;
/// Receive buffer of the setup's blocking reads, in bytes (more than the 1400-byte limit).
const SETUP_RX_LEN: usize = 1536;
/// Registrations sent (a second apart) before a client gives up.
const REGISTER_TRIES: usize = 4;

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One request in flight: when it left (open loop: when it was due, if that was earlier)
/// and what answers it (index of the looked-up target).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) at: Instant,
    pub(super) tag: u32,
}

/// An identity of the register pool and the next timestamp it may sign (Unix s).
pub(super) struct PoolId {
    pub(super) id: Identity,
    pub(super) next_ts: u64,
}

/// One simulated client: its socket and identities.
pub(super) struct Client {
    pub(super) sock: UdpSocket,
    pub(super) fp: Fingerprint,
    pub(super) cookie: Option<[u8; COOKIE_LEN]>,
    pub(super) pool: Vec<PoolId>,
    pub(super) pending: VecDeque<Pending>,
    /// Requests sent so far (picks the next lookup target).
    pub(super) seq: usize,
    /// The pool identity to try next (register).
    pub(super) next_id: usize,
    /// Sends go out as GSO messages (every datagram the workload sends has one size).
    pub(super) gso: bool,
}

/// A client packet: params 0x02, plain layout.
pub(super) fn packet(ty: PacketType, signature: &[u8], timestamp: u64, payload: &[u8]) -> Vec<u8> {
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
pub(super) fn register_packet(
    id: &Identity,
    ts: u64,
    cookie: Option<&[u8; COOKIE_LEN]>,
) -> Vec<u8> {
    let p = Payload::Register(Register::listed(id.cert_der(), cookie));
    let mut body = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut body).unwrap_or(0);
    body.truncate(n);
    let sig = id.sign(&signed_message(ts, &body));
    packet(PacketType::Register, &sig, ts, &body)
}

pub(super) fn lookup_packet(target: &Fingerprint) -> Vec<u8> {
    packet(PacketType::Lookup, &[], unix_now(), &target.0)
}

/// A socket connected to `target`, bound to loopback when the target is loopback.
pub(super) fn open_socket(target: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let (domain, bind): (Domain, SocketAddr) = match (target.is_ipv6(), target.ip().is_loopback()) {
        (false, true) => (Domain::IPV4, (Ipv4Addr::LOCALHOST, 0).into()),
        (false, false) => (Domain::IPV4, (Ipv4Addr::UNSPECIFIED, 0).into()),
        (true, true) => (Domain::IPV6, (Ipv6Addr::LOCALHOST, 0).into()),
        (true, false) => (Domain::IPV6, (Ipv6Addr::UNSPECIFIED, 0).into()),
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(CLIENT_RCVBUF);
    s.bind(&bind.into())?;
    s.connect(&target.into())?;
    Ok(s.into())
}

/// Registers `id` from `sock` as the bundled client does: without a cookie, then again with
/// the cookie of the type-9 answer, until the OK. Returns the cookie (none from a sink that
/// answers OK at once) and the timestamp of the accepted registration.
pub(super) fn handshake(
    sock: &std::net::UdpSocket,
    id: &Identity,
    target: SocketAddr,
) -> Result<(Option<[u8; COOKIE_LEN]>, u64), RegisterError> {
    let mut cookie: Option<[u8; COOKIE_LEN]> = None;
    let mut buf = [0u8; SETUP_RX_LEN];
    for _ in 0..REGISTER_TRIES {
        let mut ts = unix_now();
        sock.send(&register_packet(id, ts, cookie.as_ref()))
            .map_err(RegisterError::Socket)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))
                .map_err(RegisterError::Socket)?;
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
                Err(e) => return Err(RegisterError::Socket(e)),
            };
            match classify(&buf[..n]) {
                Answer::Ok => return Ok((cookie, ts)),
                Answer::Cookie(c) => {
                    cookie = Some(c);
                    ts = unix_now();
                    sock.send(&register_packet(id, ts, cookie.as_ref()))
                        .map_err(RegisterError::Socket)?;
                }
                Answer::Error { status, request }
                    if request == u8::from(PacketType::Register) || request == 0xFF =>
                {
                    return Err(RegisterError::Refused { target, status });
                }
                _ => {}
            }
        }
    }
    Err(RegisterError::NoAnswer { target })
}

/// Opens the clients, each registered with the first of `pool` fresh identities; says on
/// `notes` how long it took.
pub(super) fn open_clients(
    args: &BenchOptions,
    target: SocketAddr,
    pool: usize,
    notes: &mut dyn Write,
) -> Result<Vec<Client>, BenchError> {
    let started = Instant::now();
    let out = (0..args.load.clients)
        .map(|i| open_client(i, target, pool))
        .collect::<Result<Vec<_>, _>>()?;
    let _ = writeln!(
        notes,
        "bench: {} clients registered at {target} ({} identities) in {:.2} s",
        out.len(),
        out.len() * pool,
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Client number `i`: its `pool` identities, its socket, registered with the first.
fn open_client(i: usize, target: SocketAddr, pool: usize) -> Result<Client, BenchError> {
    let tag = std::process::id();
    let ids = (0..pool)
        .map(|k| Identity::generate(KeyAlgorithm::Ed25519, &format!("bench {tag} {i}.{k}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BenchError::Identity)?;
    let std_sock = open_socket(target).map_err(BenchError::io("cannot open a client socket"))?;
    let (cookie, ts) = handshake(&std_sock, &ids[0], target)
        .map_err(|source| BenchError::Register { client: i, source })?;
    std_sock
        .set_nonblocking(true)
        .map_err(BenchError::io("cannot make a client socket non-blocking"))?;
    let fp = ids[0].fingerprint();
    let pool = ids
        .into_iter()
        .enumerate()
        .map(|(k, id)| PoolId {
            id,
            next_ts: if k == 0 { ts + 1 } else { 0 },
        })
        .collect();
    Ok(Client {
        sock: UdpSocket::from_std(std_sock),
        fp,
        cookie,
        pool,
        pending: VecDeque::new(),
        seq: 0,
        next_id: 1,
        gso: false,
    })
}
