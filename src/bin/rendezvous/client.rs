//! The client commands of `rendezvous` (docs/PROTOCOL.md §6, §7): `identity`, `register`,
//! `lookup`, `send`, `punch`, and on the TCP plane `contacts` and `status`. Each prints its
//! result on stdout, one line per fact, and leaves the protocol to the library's client.

use crate::args::{Alg, Conn, ContactsCmd, IdentityCmd};
use crate::{resolve, say};
use anyhow::{bail, Context, Result};
use rendezvous::client::contacts::{ContactsClient, StatusAnswer};
use rendezvous::client::{Client, ClientError, Incoming};
use rendezvous::identity::{Identity, KeyAlgorithm, SignerError};
use rendezvous::wire::tcp::{self, ContactFields};
use rendezvous::wire::udp::LookupStatus;
use rendezvous::wire::Fingerprint;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Registrations sent in one round of `register` before it says the server is unreachable.
const REGISTER_TRIES: u32 = 5;
/// How long each registration of the first round waits for an answer; each later round
/// waits twice as long, up to [`REGISTER_WAIT_MAX`].
const REGISTER_WAIT: Duration = Duration::from_secs(2);
/// The longest wait for one registration's answer.
const REGISTER_WAIT_MAX: Duration = Duration::from_secs(16);

/// Hellos sent to a peer after its punch request.
const PUNCH_HELLOS: u32 = 20;
/// Time between two hellos to a peer.
const PUNCH_EVERY: Duration = Duration::from_millis(250);
/// The exit status of `status` when the server drains (docs/PROTOCOL.md §7): 3, apart from
/// 1 (an error: unreachable) and 2 (a usage error).
pub(crate) const EXIT_DRAINING: u8 = 3;

/// `identity new` and `identity show`.
pub(crate) fn identity(c: IdentityCmd) -> Result<ExitCode> {
    match c {
        IdentityCmd::New {
            out,
            algorithm,
            name,
            force,
        } => {
            let alg = match algorithm {
                Alg::Ed25519 => KeyAlgorithm::Ed25519,
                Alg::P256 => KeyAlgorithm::EcdsaP256,
            };
            let id = Identity::generate(alg, &name)?;
            let saved = if force {
                id.save(&out)
            } else {
                id.save_new(&out)
            };
            if let Err(e @ SignerError::AlreadyExists { .. }) = &saved {
                bail!("{e} (give --force to replace it; its fingerprint is then lost)");
            }
            saved?;
            say(&id.fingerprint().to_hex());
        }
        IdentityCmd::Show { dir } => {
            let id = Identity::load(&dir)?;
            say(&id.fingerprint().to_hex());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `register`: registers (until the server answers, saying so while it does not), keeps
/// alive, and prints events, punch requests and direct datagrams as they arrive (runs until
/// killed).
pub(crate) fn register(conn: Conn, keepalive: Option<u64>) -> Result<ExitCode> {
    let mut s = Session::start(connect(&conn)?, keepalive)?;
    loop {
        let now = Instant::now();
        let wake = s.tick(now)?;
        if let Some(msg) = s.c.recv(wake.saturating_duration_since(now))? {
            s.on_message(msg)?;
        }
    }
}

/// A registered client of `register`: its keepalives, the peers it punches holes to.
struct Session {
    c: Client,
    /// The keepalive interval asked for with `--keepalive` (else the server's advice).
    chosen: Option<u64>,
    /// Seconds between keepalives (0: none).
    interval: u64,
    /// The server's boot epoch at the last registration.
    epoch: u32,
    next_ka: Instant,
    /// Hole punching: (peer address, hellos left, next send time).
    punches: Vec<(SocketAddr, u32, Instant)>,
    /// Peers whose hello was answered.
    answered: Vec<SocketAddr>,
}

impl Session {
    /// Registers `c`.
    fn start(mut c: Client, chosen: Option<u64>) -> Result<Session> {
        let (interval, epoch) = do_register(&mut c, chosen)?;
        Ok(Session {
            c,
            chosen,
            interval,
            epoch,
            next_ka: Instant::now() + Duration::from_secs(interval.max(1)),
            punches: Vec::new(),
            answered: Vec::new(),
        })
    }

    fn hello(&self) -> String {
        format!("hello from {}", self.c.identity().fingerprint())
    }

    /// Sends what is due (a keepalive, hellos to peers); returns when to wake next.
    fn tick(&mut self, now: Instant) -> Result<Instant> {
        if self.interval > 0 && now >= self.next_ka {
            self.c.keepalive()?;
            self.next_ka = now + Duration::from_secs(self.interval);
        }
        let hello = self.hello();
        for p in self.punches.iter_mut().filter(|p| p.1 > 0 && p.2 <= now) {
            let _ = self.c.send_direct(p.0, hello.as_bytes());
            p.1 -= 1;
            p.2 = now + PUNCH_EVERY;
        }
        self.punches.retain(|p| p.1 > 0);
        let mut wake = now + Duration::from_secs(1);
        if self.interval > 0 {
            wake = wake.min(self.next_ka);
        }
        for p in &self.punches {
            wake = wake.min(p.2);
        }
        Ok(wake)
    }

    /// Prints what arrived and acts on it: punches back, answers hellos, registers again
    /// after the server restarted.
    fn on_message(&mut self, msg: Incoming) -> Result<()> {
        match msg {
            Incoming::Relay { from, event } => {
                say(&format!("event from={from} text={}", text_of(&event)))
            }
            Incoming::Punch { peer, addr } => {
                say(&format!("punch from={peer} addr={addr}"));
                self.punches.push((addr, PUNCH_HELLOS, Instant::now()));
            }
            Incoming::Direct { from, data } => {
                say(&format!("direct from={from} text={}", text_of(&data)));
                if data.starts_with(b"hello from ") && !self.answered.contains(&from) {
                    self.answered.push(from);
                    let me = self.c.identity().fingerprint();
                    let _ = self
                        .c
                        .send_direct(from, format!("hello back from {me}").as_bytes());
                }
            }
            Incoming::Error {
                status,
                request_type,
                detail,
            } => {
                say(&format!(
                    "error status={status} request={request_type} detail={detail}"
                ));
                if status == 404 && request_type == 0 {
                    // The server does not know our address: it restarted. Register again.
                    (self.interval, self.epoch) = do_register(&mut self.c, self.chosen)?;
                }
            }
            Incoming::Ok(Some(info)) if info.boot_epoch != self.epoch => {
                (self.interval, self.epoch) = do_register(&mut self.c, self.chosen)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A fingerprint given on the command line (64 hex digits).
fn parse_fp(text: &str) -> Result<Fingerprint> {
    Fingerprint::from_hex(text).with_context(|| format!("bad fingerprint {text:?}"))
}

/// A client of `conn.server` with the identity in `conn.identity`.
fn connect(conn: &Conn) -> Result<Client> {
    let server = resolve(&conn.server)?;
    let id = Identity::load(&conn.identity)?;
    let mut c = Client::new(server, id, conn.bind)
        .with_context(|| "cannot open a UDP socket".to_string())?;
    c.set_shift(conn.shift);
    Ok(c)
}

/// Registers and prints the `registered` line with the keepalive interval this client
/// uses (`chosen`, else the server's advice); returns that interval (s) and the epoch.
/// Never gives up on a server that does not answer: after each round of
/// [`REGISTER_TRIES`] registrations without an answer it prints `unreachable server=ADDR
/// waited=S` (S: seconds since the first) and starts another, waiting longer
/// (docs/PROTOCOL.md §7).
///
/// # Errors
/// A refusal by the server; a socket error.
fn do_register(c: &mut Client, chosen: Option<u64>) -> Result<(u64, u32), ClientError> {
    let started = Instant::now();
    let mut wait = REGISTER_WAIT;
    let info = loop {
        match c.register(REGISTER_TRIES, wait) {
            Ok(info) => break info,
            Err(ClientError::Unavailable(server)) => {
                let waited = started.elapsed().as_secs();
                say(&format!("unreachable server={server} waited={waited}"));
                wait = (wait * 2).min(REGISTER_WAIT_MAX);
            }
            Err(e) => return Err(e),
        }
    };
    let fp = c.identity().fingerprint();
    let (advised, epoch, public) = match info {
        Some(i) => (
            u64::from(i.keepalive_s),
            i.boot_epoch,
            i.reflexive.to_string(),
        ),
        None => (25, 0, "?".to_string()),
    };
    let ka = chosen.unwrap_or(advised);
    say(&format!(
        "registered fingerprint={fp} public={public} keepalive={ka} epoch={epoch}"
    ));
    Ok((ka, epoch))
}

/// Event or datagram bytes as one printable line (lossy UTF-8, `\\`, `\n`, `\r` escaped).
fn text_of(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// `lookup`: registers unlisted (so a `register` of the same identity keeps its address;
/// docs/PROTOCOL.md §5.2), then prints `online ...`, `offline ...` or `unknown`.
pub(crate) fn lookup(conn: Conn, fingerprint: &str) -> Result<ExitCode> {
    let target = parse_fp(fingerprint)?;
    let mut c = connect(&conn)?;
    c.register_unlisted(5, Duration::from_secs(2))?;
    let (status, home) = c.lookup(target, Duration::from_secs(3))?;
    say(&match status {
        LookupStatus::Online { addr, age_s } => {
            format!("online addr={addr} age={age_s} home={home}")
        }
        LookupStatus::Offline { age_s } => format!("offline age={age_s} home={home}"),
        LookupStatus::Unknown => "unknown".to_string(),
    });
    Ok(ExitCode::SUCCESS)
}

/// `send`: registers unlisted, relays one event, and fails if the server refuses it.
pub(crate) fn send(conn: Conn, fingerprint: &str, text: &str) -> Result<ExitCode> {
    let dest = parse_fp(fingerprint)?;
    if text.is_empty() || text.len() > 1200 {
        bail!("event text must be 1 to 1200 bytes, got {}", text.len());
    }
    let mut c = connect(&conn)?;
    c.register_unlisted(5, Duration::from_secs(2))?;
    c.send_event(dest, text.as_bytes())?;
    // Accepted events are not acknowledged; a refusal comes back as an error. Wait briefly.
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Some(m) = c.recv(deadline.saturating_duration_since(Instant::now()))? {
        if let Incoming::Error {
            status,
            request_type: 4,
            detail,
        } = m
        {
            bail!("server refused the event: {status} {detail}");
        }
    }
    say("sent");
    Ok(ExitCode::SUCCESS)
}

/// `punch`: registers unlisted, looks the peer up and exchanges a datagram with it
/// directly.
pub(crate) fn punch(conn: Conn, fingerprint: &str, timeout: u64) -> Result<ExitCode> {
    let target = parse_fp(fingerprint)?;
    let mut c = connect(&conn)?;
    c.register_unlisted(5, Duration::from_secs(2))?;
    let me = c.identity().fingerprint();
    let (status, _) = c.lookup(target, Duration::from_secs(3))?;
    let LookupStatus::Online { addr, .. } = status else {
        bail!("peer {target} is not online at this server ({status:?})");
    };
    let hello = format!("hello from {me}");
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut next = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next {
            c.send_direct(addr, hello.as_bytes())?;
            next = Instant::now() + Duration::from_millis(250);
        }
        let wait = next.min(deadline).saturating_duration_since(Instant::now());
        if let Some(Incoming::Direct { from, data }) = c.recv(wait)? {
            // Only the peer's hello counts (it names the fingerprint we looked up).
            let text = String::from_utf8_lossy(&data);
            if !text.ends_with(&target.to_hex()) || !text.starts_with("hello ") {
                continue;
            }
            say(&format!("direct from={from} text={}", text_of(&data)));
            // Make sure the peer hears from us too.
            c.send_direct(from, format!("hello back from {me}").as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    eprintln!(
        "error: no datagram from {target} at {addr} within {timeout} s (hole punching failed)"
    );
    Ok(ExitCode::FAILURE)
}

/// `contacts update` (returns once durable) and `contacts list`.
pub(crate) fn contacts(c: ContactsCmd) -> Result<ExitCode> {
    match c {
        ContactsCmd::Update {
            server,
            who,
            tls,
            contact,
            phone,
        } => {
            // Fields that cannot fit are refused before connecting (the username of an
            // identity, its fingerprint in hex, always fits).
            let user = who.user.as_deref().unwrap_or_default();
            let fields = ContactFields {
                username: user,
                contact: &contact,
                phone: &phone,
            };
            fields.check_each()?;
            let (mut cl, owner) = contacts_conn(&server, who.identity.as_deref(), tls)?;
            let user = owner.or(who.user).unwrap_or_default();
            cl.update(&user, &contact, &phone)?;
            cl.barrier()
                .context("the server did not confirm the write")?;
            say("ok");
        }
        ContactsCmd::List { server, who, tls } => {
            let (mut cl, _) = contacts_conn(&server, who.identity.as_deref(), tls)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            cl.list_each(|u, c, p| {
                let _ = writeln!(out, "{u}\t{c}\t{p}");
            })?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A client-role connection to `server`, over TLS when `tls` (docs/PROTOCOL.md §8.19).
fn open_conn(server: &str, tls: bool) -> Result<ContactsClient> {
    let t = Duration::from_secs(30);
    let addr = resolve(server)?;
    let cl = if tls {
        ContactsClient::connect_tls(addr, "rendezvous-cli", t)
    } else {
        ContactsClient::connect(addr, "rendezvous-cli", t)
    };
    cl.with_context(|| format!("cannot connect to TCP {addr}"))
}

/// A client-role connection to `server` (over TLS when `tls`), authenticated as the
/// identity in `identity` (docs/PROTOCOL.md §8.18) when one is given, with the username it
/// owns.
fn contacts_conn(
    server: &str,
    identity: Option<&std::path::Path>,
    tls: bool,
) -> Result<(ContactsClient, Option<String>)> {
    let mut cl = open_conn(server, tls)?;
    let Some(dir) = identity else {
        return Ok((cl, None));
    };
    let id = Identity::load(dir)
        .with_context(|| format!("cannot load the identity in {}", dir.display()))?;
    cl.authenticate(&id)
        .context("the server did not accept this identity's proof")?;
    Ok((cl, Some(ContactsClient::owner(&id))))
}

/// `status`: prints the server's status text; a health check by its exit status
/// (docs/PROTOCOL.md §7): 0 when the server answered and serves, [`EXIT_DRAINING`] when it
/// drains (its hello refused with 503 `draining`, or `health=draining` in the text), and an
/// error (exit 1) when it cannot be reached, does not answer, or refuses otherwise.
pub(crate) fn status(server: &str, tls: bool) -> Result<ExitCode> {
    let mut cl = open_conn(server, tls)?;
    let answer = cl
        .status_answer()
        .context("the server did not answer the status request")?;
    match answer {
        StatusAnswer::Text(text) => {
            print!("{text}");
            let _ = std::io::stdout().flush();
            if text.lines().any(|l| l == "health=draining") {
                return Ok(ExitCode::from(EXIT_DRAINING));
            }
            Ok(ExitCode::SUCCESS)
        }
        StatusAnswer::Refused { status, detail, .. }
            if status == 503 && detail == tcp::DETAIL_DRAINING =>
        {
            eprintln!("error: the server at {server} is draining (503 {detail}): it is stopping");
            Ok(ExitCode::from(EXIT_DRAINING))
        }
        StatusAnswer::Refused { status, detail, .. } => {
            bail!("the server refused the status request: {status} {detail}")
        }
    }
}
