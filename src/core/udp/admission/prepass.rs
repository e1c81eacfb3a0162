//! Batch verification of first registrations (docs/PROTOCOL.md §5.2, "Batch
//! verification"): before a batch of datagrams is handled one by one, the Ed25519
//! registrations whose certificate the cache does not hold have their certificate's
//! self-signature and their packet signature verified all together, with one
//! ed25519-dalek `verify_batch`. Each verdict is then used where the one-at-a-time path
//! would verify that signature, so the answers and the state are those of one at a time.
//!
//! A verdict is a pure function of the datagram's bytes and `now` (the certificate check
//! of docs/PROTOCOL.md §5.4 and the signature over `timestamp || payload` with the
//! certificate's key), so working it out early changes nothing; a packet that an earlier
//! step refuses just leaves its verdict unused. The pre-pass applies the cheap steps first
//! (window, cookie, and a guess at the prefix's rate, taking no token) so speculative work
//! stays within what the rate limit allows. When the batch does not verify, every
//! signature of it is verified alone with ring, the one-at-a-time check.
//!
//! The equation differs from ring's only for a key or a signature's `R` with a small-order
//! component, which no honest signer makes and only the key's holder can craft (its own
//! certificate, whose fingerprint is the hash of its bytes): such a signature may verify
//! in a batch and not alone. Keys of small order and encodings that are not canonical are
//! left to the one-at-a-time check.

use super::{Admission, PER_PREFIX};
use crate::core::udp::limits::{prefix_of, site_of};
use crate::core::Now;
use crate::identity::{self, IdentityError, VerifiedCertificate, VerifyingKey};
use crate::wire::udp::root::MAX_DATAGRAM;
use crate::wire::udp::{canonical_addr, Register};
use crate::wire::{PacketType, Root};
use ed25519_dalek::{Signature, VerifyingKey as DalekKey};
use std::net::SocketAddr;
use std::ops::Range;

/// Fewest registrations worth a batch: below this each is verified alone.
const MIN_BATCH: usize = 2;

/// What the pre-pass learned about one registration of the batch.
#[derive(Debug)]
struct Entry {
    /// Index of the datagram in the batch.
    index: usize,
    /// The source's /24 or /64 (the rate guess counts the batch's own registrations).
    prefix: [u8; 9],
    /// The certificate; `Err(BadSelfSignature)` once its self-signature is refused.
    cert: Result<VerifiedCertificate, IdentityError>,
    /// Whether the packet signature verifies with the certificate's key.
    packet_ok: bool,
    key: DalekKey,
    /// The certificate's self-signature, and its signed bytes in [`Prepass::bytes`].
    cert_sig: (Signature, Range<usize>),
    /// The packet signature, and `timestamp || payload` in [`Prepass::bytes`].
    packet_sig: (Signature, Range<usize>),
}

/// A registration of the batch whose certificate the cache holds: its packet signature
/// alone to check, with the cached key (any algorithm).
#[derive(Debug)]
struct Cached {
    /// Index of the datagram in the batch.
    index: usize,
    /// The source's /24 or /64.
    prefix: [u8; 9],
    key: VerifyingKey,
    /// The packet signature and `timestamp || payload`, in [`Prepass::bytes`].
    sig: Range<usize>,
    msg: Range<usize>,
    /// Whether the packet signature verifies with `key`.
    ok: bool,
}

/// The verdicts of the batch being handled, and buffers kept from batch to batch. Empty
/// between batches: none of it outlives [`Admission::end_batch`].
#[derive(Debug, Default)]
pub(in crate::core::udp) struct Prepass {
    entries: Vec<Entry>,
    cached: Vec<Cached>,
    /// Signed bytes (TBSCertificates, signed messages) back to back.
    bytes: Vec<u8>,
    keys: Vec<DalekKey>,
    sigs: Vec<Signature>,
    /// Index of the datagram being handled, while a batch is.
    at: Option<usize>,
}

/// The verdicts taken for the datagram being handled: the certificate check (`None`: the
/// cache answers), and whether the packet signature verifies with its key (`None`: not
/// checked yet).
pub(super) type Verdict = (
    Option<Result<VerifiedCertificate, IdentityError>>,
    Option<bool>,
);

impl Prepass {
    /// The verdicts of the datagram being handled, once (none outside a batch).
    pub(super) fn take(&mut self) -> Verdict {
        let Some(at) = self.at.take() else {
            return (None, None);
        };
        if let Some(e) = self.entries.iter_mut().find(|e| e.index == at) {
            let cert = std::mem::replace(&mut e.cert, Err(IdentityError::BadSelfSignature));
            return (Some(cert), Some(e.packet_ok));
        }
        match self.cached.iter().find(|c| c.index == at) {
            Some(c) => (None, Some(c.ok)),
            None => (None, None),
        }
    }

    /// Appends `parts` to [`Self::bytes`]; returns where they are.
    fn push_bytes(&mut self, parts: &[&[u8]]) -> Range<usize> {
        let start = self.bytes.len();
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        start..self.bytes.len()
    }

    /// Verifies every entry's two signatures: all in one batch, else each alone with ring.
    /// Reads no server state: a worker runs it without the UDP plane's lock
    /// (docs/PROTOCOL.md §7, "Workers"). No-op below [`MIN_BATCH`] entries (each is then
    /// verified alone when its datagram is handled).
    pub(in crate::core::udp) fn verify(&mut self) {
        for c in &mut self.cached {
            c.ok = c
                .key
                .verify(&self.bytes[c.msg.clone()], &self.bytes[c.sig.clone()])
                .is_ok();
        }
        if self.entries.len() < MIN_BATCH {
            self.verify_each();
            return;
        }
        self.keys.clear();
        self.sigs.clear();
        let mut msgs: Vec<&[u8]> = Vec::with_capacity(2 * self.entries.len());
        for e in &self.entries {
            for (sig, range) in [&e.cert_sig, &e.packet_sig] {
                self.keys.push(e.key);
                self.sigs.push(*sig);
                msgs.push(&self.bytes[range.clone()]);
            }
        }
        if ed25519_dalek::verify_batch(&msgs, &self.sigs, &self.keys).is_ok() {
            for e in &mut self.entries {
                e.packet_ok = true;
            }
            return;
        }
        // Some signature does not verify: find which, exactly as one at a time does.
        self.verify_each();
    }

    /// Verifies every entry's two signatures alone with ring (the one-at-a-time check).
    fn verify_each(&mut self) {
        for e in &mut self.entries {
            let Ok(cert) = &e.cert else { continue };
            let alone = |(sig, range): &(Signature, Range<usize>)| {
                cert.key
                    .verify(&self.bytes[range.clone()], &sig.to_bytes())
                    .is_ok()
            };
            let cert_ok = alone(&e.cert_sig);
            e.packet_ok = alone(&e.packet_sig);
            if !cert_ok {
                e.cert = Err(IdentityError::BadSelfSignature);
            }
        }
    }
}

/// Whether a 32-byte Edwards point encoding has its y coordinate below 2^255 - 19 and is
/// not the negative zero x (the encodings ring takes only as they are).
fn canonical(p: &[u8; 32]) -> bool {
    let sign = p[31] & 0x80 != 0;
    let top = p[31] & 0x7f;
    let middle = |b: u8| p[1..31].iter().all(|&x| x == b);
    // y >= 2^255 - 19.
    let y_too_large = top == 0x7f && middle(0xff) && p[0] >= 0xed;
    // x = 0 only for y = 1 and y = -1 (both small order): with the sign bit set, an
    // encoding that decodes but is not the point's own.
    let y_one = top == 0 && middle(0) && p[0] == 1;
    let y_minus_one = top == 0x7f && middle(0xff) && p[0] == 0xec;
    !y_too_large && !(sign && (y_one || y_minus_one))
}

impl Admission {
    /// The pre-pass over a batch of datagrams `(source, bytes)` at `now` (at most 64):
    /// gathers the Ed25519 registrations whose certificate is not cached and that pass the
    /// window, the cookie and (as a guess) the rate, and returns them to be verified
    /// ([`Prepass::verify`], which needs no server state) and handed back with
    /// [`Self::put_batch`]. Takes the buffers kept from the last batch; allocates only
    /// when the batch has registrations. Source: docs/PROTOCOL.md §5.2, "Batch
    /// verification".
    pub(in crate::core::udp) fn gather_batch(
        &mut self,
        now: Now,
        batch: &[(SocketAddr, &[u8])],
    ) -> Prepass {
        self.end_batch();
        for (index, &(src, data)) in batch.iter().enumerate() {
            self.gather(now, index, canonical_addr(src), data);
        }
        std::mem::take(&mut self.batch)
    }

    /// Takes back the verified pre-pass of the batch about to be handled.
    pub(in crate::core::udp) fn put_batch(&mut self, verified: Prepass) {
        self.batch = verified;
    }

    /// Handling datagram `index` of the batch now: its verdicts, if any, are for it.
    pub(in crate::core::udp) fn batch_at(&mut self, index: usize) {
        self.batch.at = Some(index);
    }

    /// Forgets the batch's verdicts (keeps the buffers).
    pub(in crate::core::udp) fn end_batch(&mut self) {
        let b = &mut self.batch;
        b.entries.clear();
        b.cached.clear();
        b.bytes.clear();
        b.at = None;
    }

    /// Adds datagram `index` from `src` to the batch if it is an Ed25519 registration that
    /// may get as far as its signatures and whose certificate is not cached.
    fn gather(&mut self, now: Now, index: usize, src: SocketAddr, data: &[u8]) {
        // The type byte is after params (and the shift length): parse only registrations.
        if Root::peek_type(data) != Some(PacketType::Register) {
            return;
        }
        let Ok(root) = Root::parse(data) else { return };
        if root.packet_type != PacketType::Register || root.from_server() {
            return;
        }
        if 8 + root.payload.len() > MAX_DATAGRAM {
            return; // 413 on the one-at-a-time path
        }
        let Ok(reg) = Register::parse(root.payload) else {
            return;
        };
        if !self.fresh.in_window(now, root.timestamp) || !self.cookie_ok(now, src, reg.cookie) {
            return;
        }
        let prefix = prefix_of(src.ip());
        if !self.rate_allows(now, src, prefix) {
            return;
        }
        let fp = identity::fingerprint(reg.cert);
        if let Some(key) = self.certs.cached_key(now, &fp) {
            let key = key.clone();
            let sig = self.batch.push_bytes(&[root.signature]);
            let msg = self
                .batch
                .push_bytes(&[&root.timestamp.to_be_bytes(), root.payload]);
            let ok = false;
            let c = Cached {
                index,
                prefix,
                key,
                sig,
                msg,
                ok,
            };
            return self.batch.cached.push(c);
        }
        if self.certs.known(now, &fp) {
            return;
        }
        let Ok(packet_sig) = <[u8; 64]>::try_from(root.signature) else {
            return;
        };
        let Ok(Some(pending)) = identity::ed25519_self_signature(reg.cert, now.unix_s) else {
            return;
        };
        let Ok(key_bytes) = <[u8; 32]>::try_from(pending.cert.key.public_key()) else {
            return;
        };
        let Ok(key) = DalekKey::from_bytes(&key_bytes) else {
            return;
        };
        let r_of = |s: &[u8; 64]| <[u8; 32]>::try_from(&s[..32]).unwrap_or([0xff; 32]);
        if key.is_weak()
            || !canonical(&key_bytes)
            || !canonical(&r_of(&pending.signature))
            || !canonical(&r_of(&packet_sig))
        {
            return;
        }
        let tbs = self.batch.push_bytes(&[pending.signed]);
        let msg = self
            .batch
            .push_bytes(&[&root.timestamp.to_be_bytes(), root.payload]);
        self.batch.entries.push(Entry {
            index,
            prefix,
            cert: Ok(pending.cert),
            packet_ok: false,
            key,
            cert_sig: (Signature::from_bytes(&pending.signature), tbs),
            packet_sig: (Signature::from_bytes(&packet_sig), msg),
        });
    }

    /// Whether the registration rate of `src`'s prefix (and IPv6 /48) would let one more
    /// registration through, counting those of its prefix gathered already.
    fn rate_allows(&self, now: Now, src: SocketAddr, prefix: [u8; 9]) -> bool {
        if self.exempt(src) {
            return true;
        }
        let b = &self.batch;
        let fresh = b.entries.iter().filter(|e| e.prefix == prefix).count();
        let cached = b.cached.iter().filter(|c| c.prefix == prefix).count();
        let n = 1 + (fresh + cached) as u64;
        let rate = &self.register_rate;
        site_of(src.ip()).map_or(true, |site| rate.would_take(&site, n, now.mono_ms))
            && rate.would_take(&prefix, n * PER_PREFIX, now.mono_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::udp::UdpConfig;
    use crate::identity::{Identity, KeyAlgorithm};
    use crate::wire::udp::root::{signed_message, PARAM_TO_SERVER};
    use crate::wire::RootHeader;

    /// A new admission state and the time now (monotonic 1000 s in).
    fn fresh() -> (Admission, Now) {
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let now = Now {
            mono_ms: 1_000_000,
            unix_s,
        };
        (Admission::new(&UdpConfig::default(), [7; 32]), now)
    }

    fn register(id: &Identity, cert: &[u8], ts: u64, cookie: [u8; 16]) -> Vec<u8> {
        let mut p = u16::try_from(cert.len()).unwrap().to_be_bytes().to_vec();
        p.extend_from_slice(cert);
        p.extend_from_slice(&cookie);
        let signature = id.sign(&signed_message(ts, &p));
        let header = RootHeader {
            params: PARAM_TO_SERVER,
            shift_len: None,
            packet_type: PacketType::Register,
            signature: &signature,
            timestamp: ts,
        };
        header.to_vec(&p).unwrap()
    }

    /// The pre-pass gathers the Ed25519 registrations (not the ECDSA one, not the one
    /// without a valid cookie), verifies them in one batch, and on a failed batch finds the
    /// bad signatures one by one; each verdict goes to its own datagram, once.
    #[test]
    fn verdicts_of_a_batch() {
        let (mut a, now) = fresh();
        let ed = |_| Identity::generate(KeyAlgorithm::Ed25519, "p").unwrap();
        let ids: Vec<Identity> = (0..3).map(ed).collect();
        let p256 = Identity::generate(KeyAlgorithm::EcdsaP256, "p").unwrap();
        let src: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let ck = a.cookies.make(src, now.mono_ms);
        let ts = now.unix_s;
        let mut packets: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| register(id, id.cert_der(), ts, ck))
            .collect();
        packets.push(register(&p256, p256.cert_der(), ts, ck));
        packets.push(register(&ids[0], ids[0].cert_der(), ts, [0; 16]));
        let batch: Vec<(SocketAddr, &[u8])> = packets.iter().map(|p| (src, &p[..])).collect();
        let mut p = a.gather_batch(now, &batch);
        p.verify();
        a.put_batch(p);
        let indexes: Vec<usize> = a.batch.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [0, 1, 2]);
        for i in [2, 0, 3] {
            a.batch_at(i);
            let v = a.batch.take();
            assert_eq!(v.0.is_some(), i < 3, "datagram {i}");
            if let (Some(cert), Some(packet_ok)) = v {
                assert_eq!(cert.map(|c| c.fingerprint), Ok(ids[i].fingerprint()));
                assert!(packet_ok);
            }
        }
        assert!(
            matches!(a.batch.take(), (None, None)),
            "once, and only for the datagram at hand"
        );
        // One forged packet signature (index 1) and one altered certificate (index 2).
        let mut altered = ids[2].cert_der().to_vec();
        *altered.last_mut().unwrap() ^= 1;
        packets[1] = register(&ids[0], ids[1].cert_der(), ts, ck);
        packets[2] = register(&ids[2], &altered, ts, ck);
        let batch: Vec<(SocketAddr, &[u8])> = packets.iter().map(|p| (src, &p[..])).collect();
        let mut p = a.gather_batch(now, &batch);
        p.verify();
        a.put_batch(p);
        let verdicts: Vec<(bool, bool)> = (0..3)
            .map(|i| {
                a.batch_at(i);
                let (cert, packet_ok) = a.batch.take();
                (cert.unwrap().is_ok(), packet_ok.unwrap())
            })
            .collect();
        assert_eq!(verdicts, [(true, true), (true, false), (false, true)]);
        a.end_batch();
        a.batch_at(0);
        assert!(
            matches!(a.batch.take(), (None, None)),
            "nothing outlives the batch"
        );
    }

    /// A registration whose certificate is cached gets its packet signature checked in the
    /// pre-pass too (no batch: alone, with the cached key, whatever the algorithm), so a
    /// worker checks it outside the lock; a forged one is refused as one at a time would.
    #[test]
    fn cached_certificates_get_their_packet_signature_checked() {
        let (mut a, now) = fresh();
        let ed = Identity::generate(KeyAlgorithm::Ed25519, "p").unwrap();
        let p256 = Identity::generate(KeyAlgorithm::EcdsaP256, "p").unwrap();
        for id in [&ed, &p256] {
            let fp = id.fingerprint();
            assert!(a.certs.key(now, fp, id.cert_der()).is_ok(), "cached");
        }
        let src: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let ck = a.cookies.make(src, now.mono_ms);
        let ts = now.unix_s;
        let packets = [
            register(&ed, ed.cert_der(), ts, ck),
            register(&p256, p256.cert_der(), ts, ck),
            register(&ed, p256.cert_der(), ts, ck), // signed by another key
        ];
        let batch: Vec<(SocketAddr, &[u8])> = packets.iter().map(|p| (src, &p[..])).collect();
        let mut p = a.gather_batch(now, &batch);
        p.verify();
        a.put_batch(p);
        let verdicts: Vec<(bool, Option<bool>)> = (0..3)
            .map(|i| {
                a.batch_at(i);
                let (cert, packet_ok) = a.batch.take();
                (cert.is_some(), packet_ok)
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                (false, Some(true)),
                (false, Some(true)),
                (false, Some(false))
            ]
        );
    }

    #[test]
    fn canonical_encodings() {
        let mut p = [0u8; 32];
        p[0] = 9;
        assert!(canonical(&p));
        // p = 2^255 - 19 itself and above are not canonical.
        let mut big = [0xffu8; 32];
        big[31] = 0x7f;
        big[0] = 0xed;
        assert!(!canonical(&big));
        big[0] = 0xec; // p - 1
        assert!(canonical(&big));
        big[31] = 0xff;
        assert!(!canonical(&big), "y = -1 with the sign bit");
        // y = 1 with the sign bit: negative zero.
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(canonical(&one));
        one[31] = 0x80;
        assert!(!canonical(&one));
    }
}
