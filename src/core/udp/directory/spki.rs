//! Where a client's key is in the registration the directory keeps (docs/PROTOCOL.md §3
//! type 2, §5.4): the certificate's SubjectPublicKeyInfo, found by walking the DER headers
//! of a certificate that admission has already verified. The directory stores these 4
//! bytes of offsets instead of a `VerifyingKey` per client (32 bytes plus a 48-byte
//! allocation); a relay's key is read from them ([`key_at`]) when it is checked.

use crate::identity::VerifyingKey;
use crate::wire::udp::Register;
use std::ops::Range;

/// The SubjectPublicKeyInfo of the certificate in type-2 `payload`, as byte offsets into
/// `payload`; `None` when the payload or the certificate's outer structure does not
/// parse, or the offsets do not fit a u16 (a datagram is shorter).
pub(super) fn spki_in(payload: &[u8]) -> Option<[u16; 2]> {
    let cert = Register::parse(payload).ok()?.cert;
    // The certificate follows its u16 length; its bytes are a slice of `payload`.
    let base = 2;
    debug_assert_eq!(payload.get(base..base + cert.len()), Some(cert));
    let r = spki_range(cert)?;
    let start = u16::try_from(base + r.start).ok()?;
    let end = u16::try_from(base + r.end).ok()?;
    Some([start, end])
}

/// The key stored at `at` in `payload` (see [`spki_in`]): parsed and checked as a
/// certificate's key is (Ed25519, P-256, RSA 2048..=4096); `None` when it does not parse.
pub(super) fn key_at(payload: &[u8], at: [u16; 2]) -> Option<VerifyingKey> {
    let spki = payload.get(usize::from(at[0])..usize::from(at[1]))?;
    VerifyingKey::from_spki_der(spki).ok()
}

/// `(tag, header length, content length)` of the DER element at the start of `b`
/// (definite lengths of at most 4 bytes).
fn tlv(b: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((tag, 2, usize::from(first)));
    }
    let n = usize::from(first & 0x7F);
    if n == 0 || n > 4 {
        return None;
    }
    let len = b
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
    Some((tag, 2 + n, len))
}

/// The SubjectPublicKeyInfo element of DER certificate `cert` (RFC 5280 §4.1:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, ... } ... }`).
fn spki_range(cert: &[u8]) -> Option<Range<usize>> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xA0;
    let (tag, h, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut at = h;
    let (tag, h, _) = tlv(cert.get(at..)?)?;
    if tag != SEQUENCE {
        return None;
    }
    at += h;
    let (tag, h, len) = tlv(cert.get(at..)?)?;
    if tag == VERSION {
        at += h + len;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        let (_, h, len) = tlv(cert.get(at..)?)?;
        at += h + len;
    }
    let (tag, h, len) = tlv(cert.get(at..)?)?;
    let end = at + h + len;
    (tag == SEQUENCE && end <= cert.len()).then_some(at..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, KeyAlgorithm};

    #[test]
    fn the_key_is_found_in_the_stored_registration() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let id = Identity::generate(alg, "spki").expect("identity");
            let cookie = [7u8; 16];
            let p =
                crate::wire::udp::Payload::Register(Register::listed(id.cert_der(), Some(&cookie)));
            let mut payload = vec![0u8; p.buffer_len()];
            let n = p.emit(&mut payload).expect("emit");
            payload.truncate(n);
            let at = spki_in(&payload).expect("found");
            let key = key_at(&payload, at).expect("parses");
            assert_eq!(
                format!("{key:?}"),
                format!("{:?}", id.verifying_key()),
                "{alg:?}"
            );
            let msg = b"relay";
            assert!(key.verify(msg, &id.sign(msg)).is_ok(), "{alg:?}");
        }
        assert_eq!(
            spki_in(&[0, 3, 0x30, 0x01, 0x00]),
            None,
            "not a certificate"
        );
        assert_eq!(key_at(&[1, 2, 3], [0, 9]), None, "out of range");
    }
}
