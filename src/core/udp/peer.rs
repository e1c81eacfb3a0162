//! What a peer server's DirRecord or Forward does here (docs/PROTOCOL.md §8.16, "What a
//! server does"): records go to the directory after the admission part verified what
//! needs verifying, forwards reach a local client through the emitter or the offline
//! queue, and whatever changed something is passed on through the federation part.

use super::directory::{Refresh, Verdict};
use super::emit::{wire_detail, Refusal};
use super::remote::{Remote, Signed};
use super::{Now, Out, UdpCore};
use crate::identity;
use crate::wire::status;
use crate::wire::tcp::dir::{DirRecord, Forward, ForwardBody, RecordBody, Registration};
use crate::wire::tcp::dir::{MAX_FORWARD_HOPS, MAX_RECORD_HOPS};
use crate::wire::udp::root::MAX_DATAGRAM;
use crate::wire::udp::{canonical_addr, Payload, Register, Relay, ServerEvent};
use crate::wire::WireError;
use std::net::SocketAddr;

/// A refresh that moves a remote entry's last-seen time by less than this changes nothing
/// worth passing on, ms.
const REFRESH_STEP_MS: u64 = 1000;

/// Why a peer's DirRecord or Forward body was refused; nothing changed. `status` is one of
/// the HTTP-like codes of [`status`]: 400 malformed (or too many hops, or a fingerprint that
/// is not the certificate's), 401 bad certificate or signature, 503 remote table full.
/// Source: docs/PROTOCOL.md §8.16 (status codes as on the UDP plane, §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status} {detail}")]
pub struct PeerRecordError {
    /// HTTP-like status code (400, 401 or 503).
    pub status: u16,
    /// What was wrong, for logs and status frames (at most 255 bytes).
    pub detail: &'static str,
}

fn peer_err(status: u16, detail: &'static str) -> PeerRecordError {
    PeerRecordError { status, detail }
}

impl From<Refusal> for PeerRecordError {
    fn from(r: Refusal) -> Self {
        peer_err(r.status, r.detail)
    }
}

impl UdpCore {
    /// A TCP client's proof of its certificate key (docs/PROTOCOL.md §8.18): `cert`
    /// (DER) checked as a registration's certificate is, through the same cache of
    /// verified and refused certificates (§5.4, §5.11), and `signature` over `message` with
    /// its key. Returns the certificate's fingerprint.
    ///
    /// # Errors
    /// 401 with what failed: the certificate (malformed, not self-signed, out of date, an
    /// unsupported key) or the signature.
    pub fn verify_client_proof(
        &mut self,
        now: Now,
        cert: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<[u8; 32], PeerRecordError> {
        let fp = self.admission.verify_proof(now, cert, message, signature)?;
        Ok(fp.0)
    }

    /// Applies one DirRecord body from a peer (the body of a command-16 frame, or of a
    /// directory page); returns whether it changed the directory. A record that changed
    /// something is passed on (hops + 1, while within 16) through [`Self::poll_peer_out`]; an
    /// unchanged one never is, which is what ends a flood.
    ///
    /// Kind 1: the embedded certificate must hash to the fingerprint (400), be self-signed
    /// and in date at `now.unix_s` (401), and the signature must verify over
    /// `timestamp || payload` (401); no freshness window or cookie check (those apply where
    /// the client's packet arrived). The newest timestamp per fingerprint wins, local or
    /// remote; on equal timestamps the same home and address is a refresh, the same home
    /// with another address replaces, and between two homes the bytewise larger alias wins.
    /// A local client beaten by a record has moved: its local entry goes (no expiry record).
    /// A record naming our own alias as home is ignored. Kind 2: moves the last-seen time of
    /// a remote entry with that timestamp to `now - age_ms` (changed when it moved by at
    /// least 1 s); a refresh of a registration we do not know makes the server ask the
    /// peers for their directory (at most once per announce interval). Kind 3: removes the
    /// remote entry with exactly that timestamp.
    ///
    /// # Errors
    /// [`PeerRecordError`] 400 (malformed, hops over 16, fingerprint not the certificate's,
    /// an embedded payload that is no registration), 401 (certificate or signature), 503
    /// (remote table full, [`super::config::TableBounds::max_remote`]); nothing changes then.
    ///
    /// Source: docs/PROTOCOL.md §8.16.
    pub fn apply_peer_record(&mut self, now: Now, body: &[u8]) -> Result<bool, PeerRecordError> {
        self.federation.stats.peer_records_in += 1;
        let r = self.apply_record(now, body);
        match r {
            Ok(true) => self.federation.stats.peer_records_applied += 1,
            Ok(false) => {}
            Err(_) => self.federation.stats.peer_records_refused += 1,
        }
        r
    }

    fn apply_record(&mut self, now: Now, body: &[u8]) -> Result<bool, PeerRecordError> {
        let rec =
            DirRecord::parse(body).map_err(|e| peer_err(status::BAD_REQUEST, dir_detail(e)))?;
        if rec.hops > MAX_RECORD_HOPS {
            let why = "record passed on more than 16 times";
            return Err(peer_err(status::BAD_REQUEST, why));
        }
        let (fp, ts) = (rec.fingerprint, rec.timestamp);
        let seen = now.mono_ms.saturating_sub(u64::from(rec.age_ms));
        let changed = match rec.body {
            RecordBody::Registration(reg) => self.apply_registration(now, &rec, reg, seen)?,
            RecordBody::Refresh => match self.directory.refresh_remote(fp, ts, seen) {
                Refresh::Moved(step) => step >= REFRESH_STEP_MS,
                Refresh::Known => false,
                Refresh::Unknown => {
                    self.federation.request_directory(now);
                    false
                }
            },
            RecordBody::Expiry => self.directory.expire_remote(fp, ts),
        };
        if changed {
            self.federation.pass_on_record(body, rec.hops);
        }
        Ok(changed)
    }

    /// Kind 1 of [`Self::apply_peer_record`]: cheap checks and the directory's verdict
    /// first, the certificate and signature only when the record would change more than a
    /// last-seen time.
    fn apply_registration(
        &mut self,
        now: Now,
        rec: &DirRecord<'_>,
        reg: Registration<'_>,
        seen: u64,
    ) -> Result<bool, PeerRecordError> {
        let (fp, ts) = (rec.fingerprint, rec.timestamp);
        let payload = Register::parse(reg.payload).map_err(|_| {
            let why = "malformed: the embedded payload is no type-2 registration";
            peer_err(status::BAD_REQUEST, why)
        })?;
        if payload.unlisted {
            // Its source was never the client's address for others (docs/PROTOCOL.md §5.2).
            let why = "an unlisted registration gives no address to list";
            return Err(peer_err(status::BAD_REQUEST, why));
        }
        if identity::fingerprint(payload.cert) != fp {
            let why = "fingerprint is not the SHA-256 of the embedded certificate";
            return Err(peer_err(status::BAD_REQUEST, why));
        }
        let addr = canonical_addr(reg.addr);
        let moved = match self
            .directory
            .judge_registration(fp, ts, reg.home_uid, addr, seen)
        {
            Verdict::Unchanged => return Ok(false),
            Verdict::Refreshed(step) => return Ok(step >= REFRESH_STEP_MS),
            Verdict::Full => return Err(self.remote_full()),
            Verdict::Install { moved } => moved,
        };
        let signed = (reg.signature, reg.payload);
        let key = self
            .admission
            .verify_record(now, fp, payload.cert, ts, signed)?;
        let entry = Remote {
            ts,
            addr,
            home_uid: reg.home_uid,
            home: reg.home.to_owned(),
            last_seen_ms: seen,
            deadline_ms: seen.saturating_add(self.cfg.timers.ttl_ms),
            hops: rec.hops,
            key,
            signed: Signed::new(reg.signature, reg.payload),
        };
        if self.directory.install_remote(fp, entry, moved).is_err() {
            return Err(self.remote_full());
        }
        Ok(true)
    }

    /// Counts and makes the refusal of a record for a new remote entry while the remote
    /// table is full.
    fn remote_full(&mut self) -> PeerRecordError {
        self.federation.stats.remote_full += 1;
        peer_err(status::SERVICE_UNAVAILABLE, "remote directory full")
    }

    /// Handles one Forward body from a peer (the body of a command-18 frame). A copy of a
    /// forward already seen (same id; the last 4096 are remembered) is dropped. For a local
    /// client online here: a punch request (type 3 naming the source and the carried
    /// address, rate-limited per pair) or the relayed event (type 4 `[source][event]`) is
    /// sent through `out`; for a local client that went offline here, an event is queued
    /// as a local relay would be. Anything else (homed elsewhere, or unknown) is passed on
    /// with hops + 1 while within 8; the loop floods it to every peer link.
    ///
    /// # Errors
    /// [`PeerRecordError`] 400 for a malformed body or hops over 8; nothing changes then.
    /// Drops (a full queue, an event too large for the recipient's shifted layout) are
    /// counted in [`super::EmitStats::dropped`], not errors.
    ///
    /// Source: docs/PROTOCOL.md §8.16, "Forward from a peer".
    pub fn handle_forward(
        &mut self,
        now: Now,
        body: &[u8],
        out: &mut Out<'_>,
    ) -> Result<(), PeerRecordError> {
        self.federation.stats.forwards_in += 1;
        let f = Forward::parse(body).map_err(|e| peer_err(status::BAD_REQUEST, dir_detail(e)))?;
        if f.hops > MAX_FORWARD_HOPS {
            let why = "forward passed on more than 8 times";
            return Err(peer_err(status::BAD_REQUEST, why));
        }
        if !self.federation.first_sight(f.id) {
            return Ok(());
        }
        let target = self.directory.client(&f.target).map(|c| (c.addr, c.shift));
        if let Some(to) = target {
            self.deliver_forward(now, &f, to, out);
        } else if self.directory.is_offline_here(&f.target) {
            // Ours, offline: it comes back here; a punch request has no one to go to.
            if let ForwardBody::Relay(event) = f.body {
                match self.queues.push(f.target, f.source, event, now.mono_ms) {
                    Ok(()) => {
                        self.counters.queued += 1;
                        self.federation.stats.forwards_delivered += 1;
                    }
                    Err(_) => self.emitter.drop_one(),
                }
            }
        } else {
            self.federation.pass_on_forward(body, f.hops);
        }
        Ok(())
    }

    /// Sends forward `f` to its target, a local client online at `to` (address, layout):
    /// a punch request (per-pair limit, never to itself) or the relayed event.
    fn deliver_forward(
        &mut self,
        now: Now,
        f: &Forward<'_>,
        to: (SocketAddr, Option<u8>),
        out: &mut Out<'_>,
    ) {
        let payload = match f.body {
            ForwardBody::Punch(from) => {
                if f.source == f.target
                    || !self.punch_pairs.allow((f.source, f.target), now.mono_ms)
                {
                    return;
                }
                Payload::ServerEvent(ServerEvent::Punch {
                    peer: f.source,
                    addr: from,
                })
            }
            ForwardBody::Relay(event) => Payload::Relay(Relay {
                peer: f.source,
                event,
            }),
        };
        let (addr, shift) = to;
        if self
            .emitter
            .send(out, now.unix_s, addr, shift, &payload, MAX_DATAGRAM)
        {
            self.federation.stats.forwards_delivered += 1;
            if matches!(f.body, ForwardBody::Relay(_)) {
                self.counters.relayed += 1;
            }
        }
    }
}

/// The detail text of a refusal for a malformed DirRecord or Forward body.
fn dir_detail(e: WireError) -> &'static str {
    match e {
        WireError::UnknownCommand => "malformed: unknown kind",
        WireError::BadFamily => "malformed: address family must be 4 or 6 (IPv4 zero-padded)",
        WireError::BadUtf8 => "malformed: home alias is not UTF-8",
        WireError::BadLength => {
            "malformed: signature and payload over 1388 bytes, or event over 1200"
        }
        other => wire_detail(other),
    }
}
