//! Setup shared by the criterion benches (`benches/core.rs`, `benches/wire.rs`): identities
//! of the three key algorithms, a virtual clock anchored at the real one, client packets
//! built with the crate's own emitters, and a registration through the cookie exchange.
//!
//! Nothing here is measured; every helper panics on failure (a bench with a broken setup
//! must not report numbers).

#![allow(dead_code)]

use rendezvous::client::{decode, Incoming};
use rendezvous::core::udp::UdpCore;
use rendezvous::core::Now;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::root::{signed_message, PARAM_TO_SERVER};
use rendezvous::wire::udp::{Payload, Register};
use rendezvous::wire::{PacketType, RootHeader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time (seconds) the virtual clock starts at: the real time when the bench started,
/// so that freshly made certificates (valid from a day ago) are valid at the virtual time.
pub fn unix_base() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The virtual time `ms` milliseconds after `base` (Unix seconds).
pub fn now(base: u64, ms: u64) -> Now {
    Now {
        mono_ms: ms,
        unix_s: base + ms / 1000,
    }
}

/// A client packet (params 0x02) of type `ty`, plain or shifted by `shift`.
pub fn packet(ty: PacketType, payload: &[u8], sig: &[u8], ts: u64, shift: Option<u8>) -> Vec<u8> {
    RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: shift,
        packet_type: ty,
        signature: sig,
        timestamp: ts,
    }
    .to_vec(payload)
    .expect("packet fits")
}

/// A registration of `id` (with `cookie` if given), signed with timestamp `ts`.
pub fn register_packet(id: &Identity, cookie: Option<&[u8; 16]>, ts: u64) -> Vec<u8> {
    let p = Payload::Register(Register::listed(id.cert_der(), cookie));
    let mut body = vec![0; p.buffer_len()];
    p.emit(&mut body).expect("register payload");
    let sig = id.sign(&signed_message(ts, &body));
    packet(PacketType::Register, &body, &sig, ts, None)
}

/// The cookie `server` issues to `addr` at `at` (a registration without one).
pub fn cookie(server: &mut UdpCore, id: &Identity, addr: SocketAddr, at: Now) -> [u8; 16] {
    let mut replies = Vec::new();
    let first = register_packet(id, None, at.unix_s);
    server.handle_datagram(at, addr, &first, &mut |_, b| replies.push(b.to_vec()));
    match replies.first().map(|r| decode(r)) {
        Some(Incoming::Cookie(c)) => c,
        other => panic!("expected a cookie, got {other:?}"),
    }
}

/// Registers `id` from `addr` at `at` through the cookie exchange; panics unless OK.
pub fn register(server: &mut UdpCore, id: &Identity, addr: SocketAddr, at: Now) {
    let c = cookie(server, id, addr, at);
    let mut replies = Vec::new();
    let second = register_packet(id, Some(&c), at.unix_s);
    server.handle_datagram(at, addr, &second, &mut |_, b| replies.push(b.to_vec()));
    match replies.first().map(|r| decode(r)) {
        Some(Incoming::Ok(_)) => {}
        other => panic!("expected OK, got {other:?}"),
    }
}

/// One identity per key algorithm the protocol accepts (docs/PROTOCOL.md §5.4).
pub struct Identities {
    /// Ed25519 (rcgen).
    pub ed25519: Identity,
    /// ECDSA P-256 (rcgen).
    pub p256: Identity,
    /// RSA-2048, made with `openssl req -x509 -newkey rsa:2048` (ring cannot generate RSA
    /// keys); `None`, with a note on stderr, when the openssl command is missing.
    pub rsa2048: Option<Identity>,
}

impl Identities {
    /// Makes the three identities.
    pub fn new() -> Identities {
        Identities {
            ed25519: Identity::generate(KeyAlgorithm::Ed25519, "bench ed25519")
                .expect("ed25519 identity"),
            p256: Identity::generate(KeyAlgorithm::EcdsaP256, "bench p256").expect("p256 identity"),
            rsa2048: rsa2048(),
        }
    }

    /// `(name, identity)` for every identity available, in a fixed order.
    pub fn all(&self) -> Vec<(&'static str, &Identity)> {
        let mut v = vec![("ed25519", &self.ed25519), ("p256", &self.p256)];
        if let Some(rsa) = &self.rsa2048 {
            v.push(("rsa2048", rsa));
        }
        v
    }
}

/// An RSA-2048 identity made by openssl in a temporary directory, or `None` (with a note)
/// when openssl is not installed.
fn rsa2048() -> Option<Identity> {
    let dir = tempfile::tempdir().expect("temp dir");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=bench rsa",
        ])
        .current_dir(dir.path())
        .output();
    match made {
        Ok(out) if out.status.success() => Some(load(dir.path())),
        Ok(out) => panic!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("note: no RSA-2048 benches: cannot run openssl ({e})");
            None
        }
    }
}

/// Loads the identity in `dir` (panics on failure).
fn load(dir: &Path) -> Identity {
    Identity::load(dir).expect("load the openssl identity")
}

/// A self-signed RSA certificate made by openssl with a `bits`-bit modulus and public
/// exponent `pubexp`, as DER, with its identity when the crate can load it (not for a
/// modulus outside 2048-4096 bits); `None`, with a note, when openssl is missing. For the
/// worst certificates a server examines (docs/SECURITY.md T7).
pub fn openssl_rsa(bits: u32, pubexp: u64) -> Option<(Vec<u8>, Option<Identity>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| -> Option<()> {
        match Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
        {
            Ok(out) if out.status.success() => Some(()),
            Ok(out) => panic!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => {
                eprintln!("note: no RSA-{bits} benches: cannot run openssl ({e})");
                None
            }
        }
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        &format!("rsa_keygen_bits:{bits}"),
        "-pkeyopt",
        &format!("rsa_keygen_pubexp:{pubexp}"),
        "-out",
        "key.pem",
    ])?;
    run(&[
        "req", "-x509", "-key", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=r",
        "-sha256",
    ])?;
    run(&[
        "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
    ])?;
    let der = std::fs::read(dir.path().join("cert.der")).expect("read cert.der");
    Some((der, Identity::load(dir.path()).ok()))
}
