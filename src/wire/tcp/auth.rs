//! The proofs of commands 21: a server's node key (server role, docs/PROTOCOL.md §8.17)
//! and a client's certificate key (client role, §8.18): their bodies and the messages
//! their signatures cover. The challenge's answer, `[20][nonce 32]`, is an
//! [`AnswerPiece::Nonce`](super::answer::AnswerPiece::Nonce).
//!
//! ```text
//! server AuthProof body  [node entry 28..792 (nodelist.rs)][sig_len u8][signature sig_len]
//! signed message         AUTH_CONTEXT (23 bytes) || nonce (32) || the node entry's bytes
//! client AuthProof body  [cert_len u16][certificate DER][sig_len u16][signature]
//! signed message         CLIENT_AUTH_CONTEXT (25 bytes) || nonce (32)
//!                        (the nonce's first 16 bytes are the server's node uid)
//! ```

use super::command::{AUTH_CONTEXT, MAX_VAR_BODY, NONCE_LEN};
use super::nodelist::NodeEntry;
use crate::wire::bytes::{done, room, take};
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};

/// The domain-separation prefix of a client's proof signature: 25 bytes of ASCII
/// (docs/PROTOCOL.md §8.18).
pub const CLIENT_AUTH_CONTEXT: &[u8] = b"rendezvous client auth v1";
/// Length of the message a client's proof signs: 25 + 32 = 57 bytes.
pub const CLIENT_SIGNED_LEN: usize = CLIENT_AUTH_CONTEXT.len() + NONCE_LEN;

/// A parsed client-role AuthProof body (docs/PROTOCOL.md §8.18): the client's self-signed
/// certificate and its signature over [`client_signed_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientProof<'a> {
    /// The certificate's DER bytes (1 to 4092 bytes; its SHA-256 is the fingerprint the
    /// connection is bound to).
    pub cert: &'a [u8],
    /// The signature with the certificate's key (Ed25519 64 bytes, ECDSA P-256 DER up to
    /// 72, RSA the modulus length).
    pub signature: &'a [u8],
}

impl<'a> ClientProof<'a> {
    /// Parses a whole client AuthProof body `[cert_len u16][cert][sig_len u16][signature]`
    /// (without the `[21][len u16]` frame header).
    ///
    /// # Errors
    /// [`WireError::Truncated`] when a length field or what it counts is cut short;
    /// [`WireError::BadLength`] for an empty certificate or signature;
    /// [`WireError::TrailingData`] when bytes follow the signature.
    pub fn parse(body: &'a [u8]) -> Result<Self, WireError> {
        let mut pos = 0;
        let cert_len = BigEndian::read_u16(take(body, &mut pos, 2)?);
        let cert = take(body, &mut pos, usize::from(cert_len))?;
        let sig_len = BigEndian::read_u16(take(body, &mut pos, 2)?);
        let signature = take(body, &mut pos, usize::from(sig_len))?;
        done(body, pos)?;
        if cert.is_empty() || signature.is_empty() {
            return Err(WireError::BadLength);
        }
        Ok(ClientProof { cert, signature })
    }

    /// Bytes [`Self::emit`] writes: 4 + the certificate + the signature.
    pub fn encoded_len(&self) -> usize {
        4 + self.cert.len() + self.signature.len()
    }

    /// Writes the body; returns its length. Frame it with
    /// [`ClientCommand::AuthProof`](super::ClientCommand::AuthProof).
    ///
    /// # Errors
    /// [`WireError::BadLength`] for an empty certificate or signature or a body over 4096
    /// bytes; [`WireError::BufferTooSmall`]. Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.encoded_len();
        if self.cert.is_empty() || self.signature.is_empty() || n > MAX_VAR_BODY {
            return Err(WireError::BadLength);
        }
        room(buf, n)?;
        let c = self.cert.len();
        BigEndian::write_u16(&mut buf[..2], c as u16); // < 4096, checked
        buf[2..2 + c].copy_from_slice(self.cert);
        BigEndian::write_u16(&mut buf[2 + c..4 + c], self.signature.len() as u16);
        buf[4 + c..n].copy_from_slice(self.signature);
        Ok(n)
    }
}

/// What a client's proof signs for the server's `nonce`: [`CLIENT_AUTH_CONTEXT`] (25
/// bytes) || nonce (32), 57 bytes (docs/PROTOCOL.md §8.18). The nonce's first 16 bytes
/// are the server's node uid, its last 16 unique to the connection.
pub fn client_signed_message(nonce: &[u8; NONCE_LEN]) -> [u8; CLIENT_SIGNED_LEN] {
    let mut msg = [0u8; CLIENT_SIGNED_LEN];
    msg[..CLIENT_AUTH_CONTEXT.len()].copy_from_slice(CLIENT_AUTH_CONTEXT);
    msg[CLIENT_AUTH_CONTEXT.len()..].copy_from_slice(nonce);
    msg
}

/// A parsed AuthProof body: the opener's node-list entry and its signature over
/// [`signed_message`] (docs/PROTOCOL.md §8.17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthProof<'a> {
    /// The entry, parsed.
    pub entry: NodeEntry,
    /// The entry's bytes as sent (what the signature covers).
    pub entry_bytes: &'a [u8],
    /// The signature (0 to 255 bytes; 64 for Ed25519).
    pub signature: &'a [u8],
}

impl<'a> AuthProof<'a> {
    /// Parses a whole AuthProof body (without the `[21][len u16]` frame header).
    ///
    /// # Errors
    /// The errors of [`NodeEntry::parse_prefix`] for the entry; [`WireError::Truncated`]
    /// when the signature length byte is missing or the signature is shorter than it says;
    /// [`WireError::TrailingData`] when bytes follow the signature.
    pub fn parse(body: &'a [u8]) -> Result<Self, WireError> {
        let (entry, n) = NodeEntry::parse_prefix(body)?;
        let (&sig_len, signature) = body[n..].split_first().ok_or(WireError::Truncated)?;
        crate::wire::bytes::exact(signature, usize::from(sig_len))?;
        Ok(AuthProof {
            entry,
            entry_bytes: &body[..n],
            signature,
        })
    }

    /// The message the signature must cover for `nonce` (see [`signed_message`]).
    pub fn message(&self, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        signed_message(nonce, self.entry_bytes)
    }
}

/// What a proof signs: [`AUTH_CONTEXT`] (23 bytes), the acceptor's nonce (32) and the
/// entry's bytes (docs/PROTOCOL.md §8.17).
pub fn signed_message(nonce: &[u8; NONCE_LEN], entry_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(AUTH_CONTEXT.len() + NONCE_LEN + entry_bytes.len());
    msg.extend_from_slice(AUTH_CONTEXT);
    msg.extend_from_slice(nonce);
    msg.extend_from_slice(entry_bytes);
    msg
}

/// Length of the AuthProof body for `entry` and a `sig_len`-byte signature: the entry,
/// 1, and the signature.
pub fn proof_body_len(entry: &NodeEntry, sig_len: usize) -> usize {
    entry.encoded_len() + 1 + sig_len
}

/// Writes the AuthProof body `[entry][sig_len u8][signature]` into `buf`; returns its
/// length. Frame it with [`ServerCommand::AuthProof`](super::ServerCommand::AuthProof).
///
/// # Errors
/// [`WireError::BadLength`] for a signature over 255 bytes or a body over 4096 bytes;
/// [`WireError::BufferTooSmall`]. Nothing is written on error.
pub fn emit_proof_body(
    entry: &NodeEntry,
    signature: &[u8],
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let n = proof_body_len(entry, signature.len());
    if signature.len() > usize::from(u8::MAX) || n > MAX_VAR_BODY {
        return Err(WireError::BadLength);
    }
    room(buf, n)?;
    let e = entry.emit(buf)?;
    buf[e] = signature.len() as u8; // <= 255, checked
    buf[e + 1..n].copy_from_slice(signature);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> NodeEntry {
        NodeEntry::new([7; 16], 3, "a", "127.0.0.1:4747", vec![9; 32]).unwrap()
    }

    #[test]
    fn body_both_ways() {
        let e = entry();
        let mut buf = vec![0u8; proof_body_len(&e, 64)];
        assert_eq!(emit_proof_body(&e, &[5; 64], &mut buf), Ok(buf.len()));
        let p = AuthProof::parse(&buf).unwrap();
        assert_eq!(p.entry, e);
        assert_eq!(p.entry_bytes, &e.to_bytes()[..]);
        assert_eq!(p.signature, &[5; 64][..]);
        let msg = p.message(&[1; 32]);
        assert_eq!(&msg[..23], b"rendezvous node auth v1");
        assert_eq!(&msg[23..55], &[1; 32]);
        assert_eq!(&msg[55..], p.entry_bytes);
    }

    #[test]
    fn every_cut_and_extension_is_refused() {
        let e = entry();
        let mut buf = vec![0u8; proof_body_len(&e, 64)];
        emit_proof_body(&e, &[5; 64], &mut buf).unwrap();
        for n in 0..buf.len() {
            assert!(AuthProof::parse(&buf[..n]).is_err(), "cut at {n}");
        }
        buf.push(0);
        assert_eq!(AuthProof::parse(&buf), Err(WireError::TrailingData));
    }

    #[test]
    fn client_proof_both_ways_and_every_cut_refused() {
        let p = ClientProof {
            cert: &[3; 300],
            signature: &[4; 64],
        };
        let mut buf = vec![0u8; p.encoded_len()];
        assert_eq!(p.emit(&mut buf), Ok(368));
        assert_eq!(&buf[..2], &[1, 44]);
        assert_eq!(&buf[302..304], &[0, 64]);
        assert_eq!(ClientProof::parse(&buf), Ok(p));
        for n in 0..buf.len() {
            assert!(ClientProof::parse(&buf[..n]).is_err(), "cut at {n}");
        }
        buf.push(0);
        assert_eq!(ClientProof::parse(&buf), Err(WireError::TrailingData));
        let empty = ClientProof {
            cert: &[],
            signature: &[4; 64],
        };
        assert_eq!(empty.emit(&mut buf), Err(WireError::BadLength));
        assert_eq!(
            ClientProof::parse(&[0, 0, 0, 1, 9]),
            Err(WireError::BadLength)
        );
        let huge = ClientProof {
            cert: &[3; 4000],
            signature: &[4; 512],
        };
        assert_eq!(huge.emit(&mut [0u8; 5000]), Err(WireError::BadLength));
        let msg = client_signed_message(&[7; 32]);
        assert_eq!(&msg[..25], b"rendezvous client auth v1");
        assert_eq!(&msg[25..], &[7; 32]);
    }

    #[test]
    fn oversized_signature_or_small_buffer_writes_nothing() {
        let e = entry();
        let mut buf = vec![0xaa; 2000];
        assert_eq!(
            emit_proof_body(&e, &[5; 256], &mut buf),
            Err(WireError::BadLength)
        );
        assert_eq!(
            emit_proof_body(&e, &[5; 64], &mut buf[..10]),
            Err(WireError::BufferTooSmall)
        );
        assert!(buf.iter().all(|&b| b == 0xaa));
    }
}
