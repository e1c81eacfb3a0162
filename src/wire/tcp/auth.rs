//! The node-key proof (docs/PROTOCOL.md §8.17): the body of an AuthProof (command 21) and
//! the message its signature covers. The challenge's answer, `[20][nonce 32]`, is an
//! [`AnswerPiece::Nonce`](super::answer::AnswerPiece::Nonce).
//!
//! ```text
//! AuthProof body   [node entry 28..792 (nodelist.rs)][sig_len u8][signature sig_len]
//! signed message   AUTH_CONTEXT (23 bytes) || nonce (32) || the node entry's bytes
//! ```

use super::command::{AUTH_CONTEXT, MAX_VAR_BODY, NONCE_LEN};
use super::nodelist::NodeEntry;
use crate::wire::bytes::room;
use crate::wire::WireError;

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
