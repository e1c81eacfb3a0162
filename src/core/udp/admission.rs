//! The checks a signed packet passes before it may change the directory: registrations in
//! the order of docs/PROTOCOL.md §5.2 (layout, freshness window, cookie, rate per prefix,
//! certificate through a cache, signature, freshness and replay), relays (§3 type 4,
//! §5.3) and the registrations embedded in peer records (§8.16). It answers with a
//! verified packet or a refusal; it never touches the directory and never sends.

use super::config::UdpConfig;
use super::cookie::CookieJar;
use super::directory::slab::SlotIndex;
use super::emit::{wire_detail, Refusal};
use super::fresh::{packet_digest, FreshTable};
use super::limits::{is_loopback, prefix_of, site_of, Buckets};
use crate::core::Now;
use crate::identity::{self, IdentityError, VerifiedCertificate, VerifyingKey};
use crate::wire::status;
use crate::wire::udp::root::MAX_DATAGRAM;
use crate::wire::udp::{Register, COOKIE_LEN};
use crate::wire::{Fingerprint, Root};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

mod prepass;
pub(super) use prepass::Prepass;

/// A registration that passed every check of docs/PROTOCOL.md §5.2 up to step 10.
#[derive(Debug, Clone)]
pub(super) struct Admitted {
    /// SHA-256 of the certificate.
    pub(super) fp: Fingerprint,
    /// The certificate's key.
    pub(super) key: VerifyingKey,
    /// The signed timestamp, Unix seconds.
    pub(super) ts: u64,
    /// The packet's replay digest, to record once the registration is accepted.
    pub(super) digest: u64,
    /// An unlisted registration (flags 0x01, docs/PROTOCOL.md §5.2).
    pub(super) unlisted: bool,
}

/// Why a registration was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejected {
    /// No valid cookie: answer with this new one (type 9) and stop (§5.2 step 5).
    Challenge([u8; COOKIE_LEN]),
    /// Answer with a type-7 error.
    Refused(Refusal),
}

impl From<Refusal> for Rejected {
    fn from(r: Refusal) -> Self {
        Rejected::Refused(r)
    }
}

/// Verified certificates by fingerprint, at most `cap`, the oldest inserted evicted first
/// (docs/PROTOCOL.md §5.4): a ring of `cap` slots indexed by fingerprint, about 90 bytes a
/// certificate plus its key's heap bytes.
#[derive(Debug)]
struct CertCache {
    /// The ring: grows to `cap`, then the slot at `next` is the oldest and is reused.
    certs: Vec<VerifiedCertificate>,
    /// Ring slots by fingerprint.
    index: SlotIndex,
    /// The next slot to fill once the ring is full.
    next: usize,
    cap: usize,
    /// Certificates refused, with the error and the Unix second until which it stands
    /// (a time-dependent refusal for 60 s, any other for good): a refused certificate sent
    /// again costs a lookup, not a signature check (docs/PROTOCOL.md §5.11).
    rejected: HashMap<Fingerprint, (IdentityError, u64)>,
    rejected_order: VecDeque<Fingerprint>,
}

/// Reads the fingerprint of a ring slot (the key of [`CertCache::index`]).
fn fp_at(certs: &[VerifiedCertificate]) -> impl Fn(u32) -> Option<Fingerprint> + '_ {
    |s| certs.get(s as usize).map(|c| c.fingerprint)
}

/// A registration costs this many tokens from its /24 or /64 bucket and 1 from its IPv6
/// /48 bucket, so a /48 as a whole gets `PER_PREFIX` times a /64's rate (docs/PROTOCOL.md
/// §5.9).
const PER_PREFIX: u64 = 4;
/// How many /64s' worth of registrations one IPv6 /48 gets.
const SITE_SHARE: u32 = PER_PREFIX as u32;

/// How long a refusal that depends on the time (not valid yet, expired) is remembered, s.
const TIMED_REFUSAL_S: u64 = 60;

impl CertCache {
    /// An empty cache of at most `cap` certificates (and `cap` refusals).
    fn new(cap: usize) -> Self {
        CertCache {
            certs: Vec::new(),
            index: SlotIndex::default(),
            next: 0,
            cap,
            rejected: HashMap::new(),
            rejected_order: VecDeque::new(),
        }
    }

    /// The slot of certificate `fp`.
    fn slot(&self, fp: &Fingerprint) -> Option<u32> {
        let certs = &self.certs;
        self.index.find(&Some(*fp), fp_at(certs))
    }

    /// The key of certificate `cert` (whose fingerprint is `fp`): from the cache while the
    /// cached certificate is in date at `now`, else verified (self-signed, valid at `now`)
    /// and cached.
    fn key(
        &mut self,
        now: Now,
        fp: Fingerprint,
        cert: &[u8],
    ) -> Result<VerifyingKey, IdentityError> {
        self.key_or(now, fp, cert, None)
    }

    /// The cached certificate `fp` while it is in date at `now`.
    fn cached(&self, now: Now, fp: &Fingerprint) -> Option<&VerifiedCertificate> {
        let vc = self.slot(fp).and_then(|s| self.certs.get(s as usize))?;
        vc.is_valid_at(now.unix_s).then_some(vc)
    }

    /// The key of certificate `fp` while the cache holds it in date at `now`.
    fn cached_key(&self, now: Now, fp: &Fingerprint) -> Option<&VerifyingKey> {
        self.cached(now, fp).map(|vc| &vc.key)
    }

    /// Whether [`Self::key`] of `fp` at `now` would answer from the cache (the
    /// certificate, or its refusal).
    fn known(&self, now: Now, fp: &Fingerprint) -> bool {
        self.cached(now, fp).is_some() || self.rejected.get(fp).is_some_and(|r| now.unix_s < r.1)
    }

    /// [`Self::key`], with the verdict of the full check when a batch made it already
    /// (`verify_self_signed(cert, now)`, docs/PROTOCOL.md §5.2, "Batch verification").
    fn key_or(
        &mut self,
        now: Now,
        fp: Fingerprint,
        cert: &[u8],
        verdict: Option<Result<VerifiedCertificate, IdentityError>>,
    ) -> Result<VerifyingKey, IdentityError> {
        if let Some(vc) = self.cached(now, &fp) {
            return Ok(vc.key.clone());
        }
        if let Some(&(e, until)) = self.rejected.get(&fp) {
            if now.unix_s < until {
                return Err(e);
            }
        }
        match verdict.unwrap_or_else(|| identity::verify_self_signed(cert, now.unix_s)) {
            Ok(vc) => {
                let key = vc.key.clone();
                self.insert(fp, vc);
                Ok(key)
            }
            Err(e) => {
                self.reject(now, fp, e);
                Err(e)
            }
        }
    }

    /// Remembers that certificate `fp` was refused with `e` at `now`.
    fn reject(&mut self, now: Now, fp: Fingerprint, e: IdentityError) {
        if self.cap == 0 {
            return;
        }
        let until = match e {
            IdentityError::NotYetValid | IdentityError::Expired => {
                now.unix_s.saturating_add(TIMED_REFUSAL_S)
            }
            _ => u64::MAX,
        };
        while self.rejected.len() >= self.cap {
            match self.rejected_order.pop_front() {
                Some(old) => {
                    self.rejected.remove(&old);
                }
                None => break,
            }
        }
        if self.rejected.insert(fp, (e, until)).is_none() {
            self.rejected_order.push_back(fp);
        }
    }

    /// Caches `vc` (whose fingerprint is `fp`): in place of the entry of `fp` if there is
    /// one, else in a new slot or, the ring full, in place of the oldest.
    fn insert(&mut self, fp: Fingerprint, vc: VerifiedCertificate) {
        if self.cap == 0 {
            return;
        }
        let vc = VerifiedCertificate {
            fingerprint: fp,
            ..vc
        };
        if let Some(s) = self.slot(&fp) {
            self.certs[s as usize] = vc;
            return;
        }
        let s = if self.certs.len() < self.cap {
            self.certs.push(vc);
            self.certs.len() - 1
        } else {
            let s = self.next % self.certs.len();
            self.next = s + 1;
            let old = self.certs[s].fingerprint;
            let certs = &self.certs;
            self.index.remove(&Some(old), s as u32, fp_at(certs));
            self.certs[s] = vc;
            s
        };
        let certs = &self.certs;
        self.index.insert(&Some(fp), s as u32, fp_at(certs));
    }
}

/// The admission checks and their state: cookies, per-prefix registration rate, the
/// certificate cache and the freshness table.
pub(super) struct Admission {
    /// [`UdpConfig::accept_replayed`]: no address check (and no window, in `fresh`).
    accept_replayed: bool,
    /// [`RateLimits::exempt_loopback`](super::config::RateLimits::exempt_loopback): no registration rate for loopback sources.
    exempt_loopback: bool,
    cookies: CookieJar,
    /// Registrations per prefix (cost [`PER_PREFIX`] each) and per IPv6 /48 (cost 1),
    /// at [`SITE_SHARE`] times the configured rate.
    register_rate: Buckets<[u8; 9]>,
    certs: CertCache,
    fresh: FreshTable,
    /// Where signed messages (`timestamp || payload`) are put together to be verified.
    scratch: Box<[u8; MAX_DATAGRAM]>,
    /// The verdicts of the batch being handled (docs/PROTOCOL.md §5.2, "Batch
    /// verification"); empty between batches.
    batch: Prepass,
}

impl Admission {
    /// The checks of `cfg`, with address-check cookies keyed by `cookie_key` (32 bytes
    /// derived from the server's seed, docs/PROTOCOL.md §5.1).
    pub(super) fn new(cfg: &UdpConfig, cookie_key: [u8; 32]) -> Self {
        Admission {
            accept_replayed: cfg.accept_replayed,
            exempt_loopback: cfg.limits.exempt_loopback,
            cookies: CookieJar::new(cookie_key, cfg.timers.cookie_period_ms),
            register_rate: Buckets::new(
                cfg.limits.register_per_s.saturating_mul(SITE_SHARE),
                cfg.limits.register_per_s.saturating_mul(2 * SITE_SHARE),
                cfg.limits.max_entries,
            ),
            certs: CertCache::new(cfg.tables.max_cert_cache),
            fresh: FreshTable::new(cfg),
            scratch: Box::new([0; MAX_DATAGRAM]),
            batch: Prepass::default(),
        }
    }

    /// Takes the registration rate and the freshness table's bound of `cfg` (a reload,
    /// docs/PROTOCOL.md §7, "Reload"); the cookies, cached certificates and each source's
    /// tokens stay.
    pub(super) fn set_limits(&mut self, cfg: &UdpConfig) {
        self.register_rate.set_rate(
            cfg.limits.register_per_s.saturating_mul(SITE_SHARE),
            cfg.limits.register_per_s.saturating_mul(2 * SITE_SHARE),
        );
        self.fresh.set_cap(cfg.tables.max_clients);
    }

    /// Whether `src` is exempt from rate limits (a loopback source, when so configured).
    pub(super) fn exempt(&self, src: SocketAddr) -> bool {
        self.exempt_loopback && is_loopback(src.ip())
    }

    /// Steps 3 to 10 of docs/PROTOCOL.md §5.2 for a type-2 `root` from `src`, cheapest
    /// first; `online` says which fingerprints are in the directory (their freshness state
    /// is kept when the table is full). Changes nothing but the cookie keys, the rate
    /// bucket of `src`'s prefix, the certificate cache and room in the freshness table;
    /// [`Self::record`] the admitted packet once it is accepted.
    ///
    /// # Errors
    /// [`Rejected::Challenge`] without a valid cookie; else a refusal: 400 malformed
    /// payload, 409 outside the window, 429 over the prefix's rate, 401 certificate or
    /// signature, 413 too large to verify, 409 stale or replayed, 503 freshness table full.
    pub(super) fn check_registration(
        &mut self,
        now: Now,
        src: SocketAddr,
        root: &Root<'_>,
        online: impl Fn(&Fingerprint) -> bool,
    ) -> Result<Admitted, Rejected> {
        let reg = Register::parse(root.payload)
            .map_err(|e| Refusal::new(status::BAD_REQUEST, wire_detail(e)))?;
        self.check_window(now, root.timestamp)?;
        if !self.cookie_ok(now, src, reg.cookie) {
            return Err(Rejected::Challenge(self.cookies.make(src, now.mono_ms)));
        }
        if !self.exempt(src) && !self.take_register_rate(src, now) {
            return Err(Refusal::new(
                status::TOO_MANY_REQUESTS,
                "too many registrations from this network; slow down",
            )
            .into());
        }
        let fp = identity::fingerprint(reg.cert);
        let (cert_verdict, signature_verdict) = self.batch.take();
        let key = self
            .certs
            .key_or(now, fp, reg.cert, cert_verdict)
            .map_err(|e| Refusal::new(status::UNAUTHORIZED, e.detail()))?;
        let why = "signature does not verify with the certificate's key";
        match signature_verdict {
            Some(true) => {}
            Some(false) => return Err(Refusal::new(status::UNAUTHORIZED, why).into()),
            None => self.verify(root, Some(&key), why)?,
        }
        let digest = self.check_fresh(now, root, fp, online)?;
        Ok(Admitted {
            fp,
            key,
            ts: root.timestamp,
            digest,
            unlisted: reg.unlisted,
        })
    }

    /// The checks of a type-4 relay `root` from registered client `from`, whose key is
    /// `key`: signed, within the window, signature by `key`, fresh (docs/PROTOCOL.md §3
    /// type 4, §5.3). Returns the packet's replay digest: [`Self::record`] it once the
    /// event is sent, forwarded or queued.
    ///
    /// # Errors
    /// A refusal: 401 unsigned or a bad signature, 409 outside the window, 413 too large to
    /// verify, 409 stale or replayed, 503 freshness table full.
    pub(super) fn check_relay(
        &mut self,
        now: Now,
        root: &Root<'_>,
        from: Fingerprint,
        key: Option<&VerifyingKey>,
        online: impl Fn(&Fingerprint) -> bool,
    ) -> Result<u64, Refusal> {
        if root.signature.is_empty() {
            return Err(Refusal::new(status::UNAUTHORIZED, "relay must be signed"));
        }
        self.check_window(now, root.timestamp)?;
        let why = "signature does not verify with the registered certificate";
        self.verify(root, key, why)?;
        self.check_fresh(now, root, from, online)
    }

    /// A client's proof on the TCP plane (docs/PROTOCOL.md §8.18): `cert` checked as a
    /// registration's is (self-signed, in date at `now`, an allowed key; through the same
    /// cache), `signature` over `message` by its key. Returns the certificate's
    /// fingerprint.
    ///
    /// # Errors
    /// A refusal: 401 for the certificate or the signature.
    pub(super) fn verify_proof(
        &mut self,
        now: Now,
        cert: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<Fingerprint, Refusal> {
        let fp = identity::fingerprint(cert);
        let key = self
            .certs
            .key(now, fp, cert)
            .map_err(|e| Refusal::new(status::UNAUTHORIZED, e.detail()))?;
        if key.verify(message, signature).is_err() {
            return Err(Refusal::new(
                status::UNAUTHORIZED,
                "signature does not verify with the certificate's key",
            ));
        }
        Ok(fp)
    }

    /// The certificate and signature of a registration embedded in a peer's DirRecord
    /// (docs/PROTOCOL.md §8.16): `cert` self-signed and in date at `now` (through the
    /// cache), `signature` over `ts || payload` by its key. No window and no cookie: those
    /// apply where the client's packet arrived.
    ///
    /// # Errors
    /// A refusal: 401 certificate or signature, 400 a payload too large to verify.
    pub(super) fn verify_record(
        &mut self,
        now: Now,
        fp: Fingerprint,
        cert: &[u8],
        ts: u64,
        signed: (&[u8], &[u8]),
    ) -> Result<VerifyingKey, Refusal> {
        let (signature, payload) = signed;
        let key = self
            .certs
            .key(now, fp, cert)
            .map_err(|e| Refusal::new(status::UNAUTHORIZED, e.detail()))?;
        let Some(msg) = self.scratch.get_mut(..8 + payload.len()) else {
            return Err(Refusal::new(status::BAD_REQUEST, "registration too large"));
        };
        msg[..8].copy_from_slice(&ts.to_be_bytes());
        msg[8..].copy_from_slice(payload);
        if key.verify(msg, signature).is_err() {
            return Err(Refusal::new(
                status::UNAUTHORIZED,
                "signature does not verify with the certificate's key",
            ));
        }
        Ok(key)
    }

    /// Records an accepted signed packet of `fp` (its timestamp and replay digest).
    pub(super) fn record(&mut self, fp: Fingerprint, ts: u64, digest: u64) {
        self.fresh.record(fp, ts, digest);
    }

    /// Takes one registration from the budgets of `src`'s /24 or /64 and, for IPv6, its
    /// /48 (the /48 first, so a refused one costs the /64 nothing).
    fn take_register_rate(&mut self, src: SocketAddr, now: Now) -> bool {
        let ip = src.ip();
        if let Some(site) = site_of(ip) {
            if !self.register_rate.take(site, 1, now.mono_ms) {
                return false;
            }
        }
        self.register_rate
            .take(prefix_of(ip), PER_PREFIX, now.mono_ms)
    }

    /// Forgets idle rate buckets and freshness state that has left the window.
    pub(super) fn sweep(&mut self, now: Now) {
        self.register_rate.sweep(now.mono_ms);
        self.fresh.sweep(now);
    }

    fn check_window(&self, now: Now, ts: u64) -> Result<(), Refusal> {
        if self.fresh.in_window(now, ts) {
            Ok(())
        } else {
            Err(Refusal::new(
                status::CONFLICT,
                "timestamp outside the freshness window; check the clock",
            ))
        }
    }

    /// The address check (docs/PROTOCOL.md §5.1). With `accept_replayed` there is none: the
    /// cookie bytes, if any, are whatever the capture had (minted by another server, for
    /// another address), covered by the signature but not checked.
    fn cookie_ok(&mut self, now: Now, src: SocketAddr, cookie: Option<&[u8; COOKIE_LEN]>) -> bool {
        self.accept_replayed || cookie.is_some_and(|c| self.cookies.check(src, c, now.mono_ms))
    }

    /// Verifies `root`'s signature over `timestamp || payload` with `key` (none: fails with
    /// `why`).
    fn verify(
        &mut self,
        root: &Root<'_>,
        key: Option<&VerifyingKey>,
        why: &'static str,
    ) -> Result<(), Refusal> {
        let Some(msg) = root.signed_message(&mut self.scratch[..]) else {
            return Err(Refusal::new(status::PAYLOAD_TOO_LARGE, "too large"));
        };
        if key.is_some_and(|k| k.verify(msg, root.signature).is_ok()) {
            Ok(())
        } else {
            Err(Refusal::new(status::UNAUTHORIZED, why))
        }
    }

    /// Per-fingerprint freshness and room for its state (§5.2 steps 9 and 10); returns the
    /// replay digest.
    fn check_fresh(
        &mut self,
        now: Now,
        root: &Root<'_>,
        fp: Fingerprint,
        online: impl Fn(&Fingerprint) -> bool,
    ) -> Result<u64, Refusal> {
        let digest = packet_digest(root.packet_type, root.payload);
        self.fresh
            .check(&fp, root.timestamp, digest)
            .map_err(|why| Refusal::new(status::CONFLICT, why))?;
        if !self.fresh.make_room(now, &fp, online) {
            return Err(Refusal::new(
                status::SERVICE_UNAVAILABLE,
                "freshness table full",
            ));
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::udp::RateLimits;
    use crate::identity::{Identity, KeyAlgorithm};
    use crate::wire::udp::root::{signed_message, PARAM_TO_SERVER};
    use crate::wire::{PacketType, RootHeader};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Certificates are valid from a day before the real time, so the clock starts there.
    fn start() -> Now {
        let unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        Now {
            mono_ms: 1_000_000,
            unix_s,
        }
    }

    fn src() -> SocketAddr {
        "192.0.2.1:4000".parse().unwrap()
    }

    /// A client packet in the plain layout, signed by `id` when `signed`.
    fn packet(id: &Identity, ty: PacketType, ts: u64, payload: &[u8], signed: bool) -> Vec<u8> {
        let signature = signed.then(|| id.sign(&signed_message(ts, payload)));
        let header = RootHeader {
            params: PARAM_TO_SERVER,
            shift_len: None,
            packet_type: ty,
            signature: signature.as_deref().unwrap_or_default(),
            timestamp: ts,
        };
        header.to_vec(payload).unwrap()
    }

    fn register(id: &Identity, cert: &[u8], ts: u64, cookie: Option<[u8; 16]>) -> Vec<u8> {
        let mut p = u16::try_from(cert.len()).unwrap().to_be_bytes().to_vec();
        p.extend_from_slice(cert);
        p.extend(cookie.iter().flatten());
        packet(id, PacketType::Register, ts, &p, true)
    }

    fn check(a: &mut Admission, now: Now, bytes: &[u8]) -> Result<Admitted, Rejected> {
        let root = Root::parse(bytes).unwrap();
        a.check_registration(now, src(), &root, |_| true)
    }

    fn status_of(r: Result<Admitted, Rejected>) -> Option<u16> {
        match r {
            Err(Rejected::Refused(r)) => Some(r.status),
            Err(Rejected::Challenge(_)) => None,
            Ok(a) => panic!("admitted {:?}", a.fp),
        }
    }

    /// A certificate refused once is refused again from the cache, without a check: the
    /// cached refusal stands even for other bytes under its fingerprint (which the real
    /// path cannot send: the fingerprint is the hash of the bytes). A time-dependent
    /// refusal is checked again after 60 s.
    #[test]
    fn refused_certificates_are_remembered() {
        let mut c = CertCache::new(2);
        let good = Identity::generate(KeyAlgorithm::Ed25519, "good").unwrap();
        let now = start();
        let garbage = [0x30, 0x03, 1, 2, 3];
        let fp = identity::fingerprint(&garbage);
        assert_eq!(c.key(now, fp, &garbage), Err(IdentityError::CertMalformed));
        assert_eq!(
            c.key(now, fp, good.cert_der()),
            Err(IdentityError::CertMalformed),
            "from the cache, not checked"
        );
        // Not valid yet (the clock a year back): remembered for 60 s only.
        let early = Now {
            unix_s: now.unix_s - 365 * 86_400,
            ..now
        };
        let gfp = identity::fingerprint(good.cert_der());
        assert_eq!(
            c.key(early, gfp, good.cert_der()),
            Err(IdentityError::NotYetValid)
        );
        let later = Now {
            unix_s: early.unix_s + 59,
            ..early
        };
        assert_eq!(
            c.key(later, gfp, good.cert_der()),
            Err(IdentityError::NotYetValid)
        );
        assert!(c.key(now, gfp, good.cert_der()).is_ok(), "checked again");
        // Bounded: a third refusal forgets the oldest.
        for junk in [[0x30, 0x01, 9], [0x30, 0x01, 8]] {
            let _ = c.key(now, identity::fingerprint(&junk), &junk);
        }
        assert!(c.rejected.len() <= 2 && !c.rejected.contains_key(&fp));
    }

    #[test]
    fn registration_checks_come_in_the_documented_order() {
        let cfg = UdpConfig {
            limits: RateLimits {
                register_per_s: 1, // burst 2
                exempt_loopback: false,
                ..RateLimits::default()
            },
            ..UdpConfig::default()
        };
        let mut a = Admission::new(&cfg, [7; 32]);
        let id = Identity::generate(KeyAlgorithm::Ed25519, "admission").unwrap();
        let other = Identity::generate(KeyAlgorithm::Ed25519, "other").unwrap();
        let mut now = start();
        let ts = now.unix_s;
        // Step 3, layout: no certificate is 400, before any cookie check.
        let empty = packet(&id, PacketType::Register, ts, &[0, 0], true);
        assert_eq!(status_of(check(&mut a, now, &empty)), Some(400));
        // Step 4, window: 409 before the cookie check.
        let old = register(&id, id.cert_der(), ts - 61, None);
        assert_eq!(status_of(check(&mut a, now, &old)), Some(409));
        // Step 5, cookie: none, or one made for another address, gets a challenge.
        let cookie = a.cookies.make(src(), now.mono_ms);
        let elsewhere = a
            .cookies
            .make("192.0.2.1:4001".parse().unwrap(), now.mono_ms);
        let challenge = check(&mut a, now, &register(&id, id.cert_der(), ts, None));
        assert_eq!(status_of(challenge), None);
        let wrong = register(&id, id.cert_der(), ts, Some(elsewhere));
        assert_eq!(status_of(check(&mut a, now, &wrong)), None);
        // Steps 7 and 8 spend the prefix's two tokens: a bad certificate, a bad signature.
        let bogus = register(&id, b"not a certificate", ts, Some(cookie));
        assert_eq!(status_of(check(&mut a, now, &bogus)), Some(401));
        let forged = register(&other, id.cert_der(), ts, Some(cookie));
        assert_eq!(status_of(check(&mut a, now, &forged)), Some(401));
        // Step 6, rate per prefix: now 429, before the certificate is looked at.
        let good = register(&id, id.cert_der(), ts, Some(cookie));
        assert_eq!(status_of(check(&mut a, now, &good)), Some(429));
        now.mono_ms += 1_000;
        let admitted = check(&mut a, now, &good).expect("admitted");
        assert_eq!((admitted.fp, admitted.ts), (id.fingerprint(), ts));
        a.record(admitted.fp, admitted.ts, admitted.digest);
        // Step 9, freshness: the same packet again is a replay.
        now.mono_ms += 1_000;
        assert_eq!(status_of(check(&mut a, now, &good)), Some(409));
    }

    #[test]
    fn relays_and_peer_records_verify_with_the_right_key() {
        let mut a = Admission::new(&UdpConfig::default(), [7; 32]);
        let id = Identity::generate(KeyAlgorithm::Ed25519, "relay").unwrap();
        let other = Identity::generate(KeyAlgorithm::Ed25519, "other").unwrap();
        let now = start();
        let ts = now.unix_s;
        let fp = id.fingerprint();
        let key = Some(id.verifying_key());
        let payload = [[9u8; 32].as_slice(), b"event"].concat();
        let relay = |signer: &Identity, signed: bool| {
            packet(signer, PacketType::Relay, ts, &payload, signed)
        };
        let mut check = |bytes: &[u8], key: Option<&VerifyingKey>| {
            let root = Root::parse(bytes).unwrap();
            a.check_relay(now, &root, fp, key, |_| true)
                .map_err(|r| r.status)
        };
        assert_eq!(check(&relay(&id, false), key), Err(401), "unsigned");
        assert_eq!(check(&relay(&other, true), key), Err(401), "another key");
        assert_eq!(check(&relay(&id, true), None), Err(401), "no key");
        let digest = check(&relay(&id, true), key).expect("verified");
        a.record(fp, ts, digest);
        let bytes = relay(&id, true);
        let root = Root::parse(&bytes).unwrap();
        let again = a.check_relay(now, &root, fp, key, |_| true);
        assert_eq!(again, Err(Refusal::new(409, "replayed packet")));

        let signature = id.sign(&signed_message(ts, b"payload"));
        let cert = id.cert_der();
        let ok = a.verify_record(now, fp, cert, ts, (&signature, b"payload"));
        assert!(ok.is_ok());
        let bad = a.verify_record(now, fp, cert, ts + 1, (&signature, b"payload"));
        assert_eq!(bad.map(|_| ()).map_err(|r| r.status), Err(401));
    }
}
