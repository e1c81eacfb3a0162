//! The client library the CLI and tests use: a blocking UDP client that registers an
//! [`Identity`] (answering the address-check cookie), keeps its NAT mapping alive, looks
//! peers up, relays events and exchanges datagrams with peers directly (hole punching).
//! Source: docs/PROTOCOL.md §6 (client behaviour) and §2-§3 (the packets).

pub mod contacts;

use crate::identity::Identity;
use crate::wire::udp::root::{signed_message, PARAM_TO_SERVER};
use crate::wire::udp::{
    canonical_addr, ErrorReply, LookupAnswer, LookupStatus, OkInfo, Payload, Register, Relay,
    ServerEvent, COOKIE_LEN,
};
use crate::wire::{Fingerprint, PacketType, Root, RootHeader, MAX_DATAGRAM};
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes a keepalive is padded to, so that a server that lost our registration can answer
/// with a 404 no larger than the keepalive (docs/PROTOCOL.md §6, and §3 type 0).
pub const KEEPALIVE_LEN: usize = 64;

/// What arrived at the client's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Type 1 OK (with the brief's payload, or `None` from a seed-only server).
    Ok(Option<OkInfo>),
    /// Type 9: register again with this cookie.
    Cookie([u8; COOKIE_LEN]),
    /// Type 3 code 1: `peer` at `addr` is about to send to us; send to it now.
    Punch {
        /// The peer's fingerprint.
        peer: Fingerprint,
        /// The peer's public address.
        addr: SocketAddr,
    },
    /// Type 4: an event relayed from `from`.
    Relay {
        /// The sender's fingerprint.
        from: Fingerprint,
        /// The opaque event (1..=1200 bytes).
        event: Vec<u8>,
    },
    /// Type 6.
    LookupAnswer {
        /// Who was looked up.
        target: Fingerprint,
        /// Online, offline or unknown.
        status: LookupStatus,
        /// Home server alias.
        home: String,
    },
    /// Type 7.
    Error {
        /// HTTP-like status code.
        status: u16,
        /// Type of the request refused (0xFF when unreadable).
        request_type: u8,
        /// Why.
        detail: String,
    },
    /// A datagram from an address other than the server's (a peer, after hole punching).
    Direct {
        /// Where it came from.
        from: SocketAddr,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A datagram from the server that does not decode (kept for diagnostics).
    Malformed(Vec<u8>),
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    /// No answer from the server after the attempts allowed.
    #[error("no answer from the server at {0} (is it running, and is UDP reachable?)")]
    Unavailable(SocketAddr),
    /// The server refused with a type-7 error.
    #[error("server refused: {status} {detail}")]
    Refused {
        /// HTTP-like status code.
        status: u16,
        /// The server's explanation.
        detail: String,
    },
}

/// A blocking client of one rendezvous server.
pub struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    identity: Identity,
    shift: Option<u8>,
    pending: VecDeque<Incoming>,
    buf: Vec<u8>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Client {
    /// A client bound to `bind` (default: an ephemeral port of the server's family) that
    /// talks to `server`.
    ///
    /// # Errors
    /// The socket's bind error.
    pub fn new(
        server: SocketAddr,
        identity: Identity,
        bind: Option<SocketAddr>,
    ) -> io::Result<Self> {
        let bind = bind.unwrap_or_else(|| {
            if server.is_ipv6() {
                "[::]:0".parse().expect("literal")
            } else {
                "0.0.0.0:0".parse().expect("literal")
            }
        });
        let sock = UdpSocket::bind(bind)?;
        Ok(Client {
            sock,
            server,
            identity,
            shift: None,
            pending: VecDeque::new(),
            buf: vec![0; 2048],
        })
    }

    /// Uses the shifted layout with `n` junk bytes per shift for every packet (DPI evasion).
    pub fn set_shift(&mut self, shift: Option<u8>) {
        self.shift = shift;
    }

    /// The local socket address.
    ///
    /// # Errors
    /// The OS error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Gives up the client, keeping its (registered) socket, e.g. for a load generator that
    /// drives the socket itself.
    pub fn into_socket(self) -> UdpSocket {
        self.sock
    }

    /// The server this client talks to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// This client's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Builds a Root packet of `payload`, signed when `sign` (timestamp = now, Unix s).
    pub fn packet(&self, payload: &Payload<'_>, sign: bool) -> Vec<u8> {
        packet(&self.identity, self.shift, unix_now(), payload, sign)
    }

    fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        self.sock.send_to(bytes, self.server).map(|_| ())
    }

    /// Sends a (listed) registration (with `cookie` if given).
    ///
    /// # Errors
    /// The socket's send error.
    pub fn send_register(&self, cookie: Option<&[u8; COOKIE_LEN]>) -> io::Result<()> {
        self.send_register_as(cookie, false)
    }

    /// Sends a registration, unlisted when `unlisted` (docs/PROTOCOL.md §3 type 2).
    fn send_register_as(
        &self,
        cookie: Option<&[u8; COOKIE_LEN]>,
        unlisted: bool,
    ) -> io::Result<()> {
        let p = Payload::Register(Register {
            cert: self.identity.cert_der(),
            cookie,
            unlisted,
        });
        self.send_raw(&self.packet(&p, true))
    }

    /// Registers: sends the certificate, answers the cookie challenge, and waits for the OK;
    /// retries `attempts` times, `timeout` each (docs/PROTOCOL.md §6: after a few failed
    /// attempts the server is reported unavailable). The server lists this socket's
    /// address as the identity's: lookups of it answer with it, and events and punch
    /// requests for it go there.
    ///
    /// # Errors
    /// [`ClientError::Unavailable`] after the attempts; [`ClientError::Refused`] when the
    /// server answers with an error; [`ClientError::Io`].
    pub fn register(
        &mut self,
        attempts: u32,
        timeout: Duration,
    ) -> Result<Option<OkInfo>, ClientError> {
        self.register_as(false, attempts, timeout)
    }

    /// As [`Self::register`], unlisted (docs/PROTOCOL.md §5.2, "Unlisted registrations"):
    /// the server takes this socket's lookups, relays and fetches as the identity's, but
    /// the identity's address in its directory stays where it was (a `register` running
    /// elsewhere keeps its reachability), no events queued for it are delivered, and
    /// nothing is told to the peers.
    ///
    /// # Errors
    /// As [`Self::register`].
    pub fn register_unlisted(
        &mut self,
        attempts: u32,
        timeout: Duration,
    ) -> Result<Option<OkInfo>, ClientError> {
        self.register_as(true, attempts, timeout)
    }

    /// The registration exchange of [`Self::register`], unlisted when `unlisted`.
    fn register_as(
        &mut self,
        unlisted: bool,
        attempts: u32,
        timeout: Duration,
    ) -> Result<Option<OkInfo>, ClientError> {
        let mut cookie: Option<[u8; COOKIE_LEN]> = None;
        for _ in 0..attempts.max(1) {
            self.send_register_as(cookie.as_ref(), unlisted)?;
            let deadline = Instant::now() + timeout;
            while let Some(msg) = self.recv_server_until(deadline)? {
                match msg {
                    Incoming::Cookie(c) => {
                        cookie = Some(c);
                        self.send_register_as(cookie.as_ref(), unlisted)?;
                    }
                    Incoming::Ok(info) => return Ok(info),
                    Incoming::Error {
                        status,
                        request_type,
                        detail,
                    } if request_type == u8::from(PacketType::Register) || request_type == 0xFF => {
                        return Err(ClientError::Refused { status, detail })
                    }
                    other => self.pending.push_back(other),
                }
            }
        }
        Err(ClientError::Unavailable(self.server))
    }

    /// Sends a keepalive, unsigned, padded to [`KEEPALIVE_LEN`] bytes plus the 4 shifts of
    /// the shifted layout, so a 404 in the same layout fits.
    ///
    /// # Errors
    /// The socket's send error.
    pub fn keepalive(&self) -> io::Result<()> {
        let mut p = self.packet(&Payload::Keepalive, false);
        let want = KEEPALIVE_LEN + 4 * usize::from(self.shift.unwrap_or(0));
        if p.len() < want {
            p.resize(want, 0);
        }
        self.send_raw(&p)
    }

    /// Sends a lookup of `target` (unsigned: the registered source identifies the asker).
    ///
    /// # Errors
    /// The socket's send error.
    pub fn send_lookup(&self, target: Fingerprint) -> io::Result<()> {
        self.send_raw(&self.packet(&Payload::Lookup(target), false))
    }

    /// Looks `target` up and waits up to `timeout` for the answer (other arrivals are kept
    /// for [`Self::recv`]).
    ///
    /// # Errors
    /// [`ClientError::Unavailable`] on timeout, [`ClientError::Refused`] on an error reply.
    pub fn lookup(
        &mut self,
        target: Fingerprint,
        timeout: Duration,
    ) -> Result<(LookupStatus, String), ClientError> {
        self.send_lookup(target)?;
        let deadline = Instant::now() + timeout;
        while let Some(msg) = self.recv_server_until(deadline)? {
            match msg {
                Incoming::LookupAnswer {
                    target: t,
                    status,
                    home,
                } if t == target => return Ok((status, home)),
                Incoming::Error {
                    status,
                    request_type: 5,
                    detail,
                } => return Err(ClientError::Refused { status, detail }),
                other => self.pending.push_back(other),
            }
        }
        Err(ClientError::Unavailable(self.server))
    }

    /// Relays `event` (1..=1200 bytes) to `dest`, signed.
    ///
    /// # Errors
    /// The socket's send error. The server does not acknowledge accepted events; a refusal
    /// arrives later as [`Incoming::Error`].
    pub fn send_event(&self, dest: Fingerprint, event: &[u8]) -> io::Result<()> {
        let p = Payload::Relay(Relay { peer: dest, event });
        self.send_raw(&self.packet(&p, true))
    }

    /// Asks for events still queued for us (type 8).
    ///
    /// # Errors
    /// The socket's send error.
    pub fn fetch(&self) -> io::Result<()> {
        self.send_raw(&self.packet(&Payload::Fetch, false))
    }

    /// Sends `data` straight to a peer (not through the server).
    ///
    /// # Errors
    /// The socket's send error.
    pub fn send_direct(&self, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        let to = match (to, self.sock.local_addr()) {
            (SocketAddr::V4(v4), Ok(SocketAddr::V6(_))) => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            _ => to,
        };
        self.sock.send_to(data, to).map(|_| ())
    }

    /// Waits up to `timeout` for the next arrival (kept arrivals first).
    ///
    /// # Errors
    /// The socket's receive error.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<Incoming>> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        self.recv_once(Instant::now() + timeout)
    }

    fn recv_server_until(&mut self, deadline: Instant) -> io::Result<Option<Incoming>> {
        loop {
            match self.recv_once(deadline)? {
                None => return Ok(None),
                Some(m @ Incoming::Direct { .. }) => self.pending.push_back(m),
                Some(m) => return Ok(Some(m)),
            }
        }
    }

    fn recv_once(&mut self, deadline: Instant) -> io::Result<Option<Incoming>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.sock.set_read_timeout(Some(left))?;
            let (n, from) = match self.sock.recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP port unreachable from an earlier send surfaces here on Linux.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let data = &self.buf[..n];
            if canonical_addr(from) != canonical_addr(self.server) {
                return Ok(Some(Incoming::Direct {
                    from: canonical_addr(from),
                    data: data.to_vec(),
                }));
            }
            return Ok(Some(decode(data)));
        }
    }
}

/// Builds a client's Root packet (params 0x02, docs/PROTOCOL.md §2) of `payload` at Unix
/// time `unix_s`, in the shifted layout when `shift` is given, signed with `identity` over
/// `timestamp || payload` when `sign` (§2.4). Empty when the payload cannot be emitted.
pub fn packet(
    identity: &Identity,
    shift: Option<u8>,
    unix_s: u64,
    payload: &Payload<'_>,
    sign: bool,
) -> Vec<u8> {
    let mut body = vec![0u8; payload.buffer_len()];
    let n = payload.emit(&mut body).unwrap_or(0);
    body.truncate(n);
    let sig = if sign {
        identity.sign(&signed_message(unix_s, &body))
    } else {
        Vec::new()
    };
    let header = RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: shift,
        packet_type: payload.packet_type(),
        signature: &sig,
        timestamp: unix_s,
    };
    header.to_vec(&body).unwrap_or_default()
}

/// Decodes a datagram from the server.
pub fn decode(data: &[u8]) -> Incoming {
    let Ok(root) = Root::parse(data) else {
        return Incoming::Malformed(data.to_vec());
    };
    match Payload::parse(root.packet_type, root.payload) {
        Ok(Payload::Ok(info)) => Incoming::Ok(info),
        Ok(Payload::Cookie(c)) => Incoming::Cookie(c),
        Ok(Payload::ServerEvent(ServerEvent::Punch { peer, addr })) => {
            Incoming::Punch { peer, addr }
        }
        Ok(Payload::Relay(r)) => Incoming::Relay {
            from: r.peer,
            event: r.event.to_vec(),
        },
        Ok(Payload::LookupAnswer(LookupAnswer {
            target,
            status,
            home,
        })) => Incoming::LookupAnswer {
            target,
            status,
            home: home.to_string(),
        },
        Ok(Payload::Error(ErrorReply {
            status,
            request_type,
            detail,
        })) => Incoming::Error {
            status,
            request_type,
            detail: detail.to_string(),
        },
        _ => Incoming::Malformed(data.to_vec()),
    }
}

/// Largest datagram the client reads, in bytes.
pub const MAX_IN: usize = MAX_DATAGRAM;
