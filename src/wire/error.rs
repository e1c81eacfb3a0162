//! The one error type of the wire layer: a small `Copy` enum with static context. Every
//! parser and emitter of [`crate::wire`] returns it; none panics on any input.

/// Why bytes could not be read as (or written into) a wire format.
///
/// Every parser in [`crate::wire`] returns this; none panics on any input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ends before a fixed field or a length-prefixed blob does.
    #[error("truncated: the packet ends inside a field")]
    Truncated,
    /// Bytes remain after the last field of a fixed layout.
    #[error("trailing data after the last field")]
    TrailingData,
    /// The datagram is over 1400 bytes (answered with 413).
    #[error("datagram larger than 1400 bytes")]
    TooLarge,
    /// A Root packet type outside 0-9 (the Root parses; its payload cannot).
    #[error("unknown packet type")]
    UnknownType,
    /// A params byte with a bit other than 0x01, 0x02 or 0x04 set.
    #[error("params byte has reserved bits set")]
    BadParams,
    /// A length field that contradicts the layout (zero-length certificate, relay event over
    /// 1200 bytes, bytes after a registration's certificate that are no cookie and flags). An empty relay event is
    /// [`WireError::Truncated`].
    #[error("a length field does not fit the layout")]
    BadLength,
    /// A register flags byte other than 0x01 (unlisted; docs/PROTOCOL.md §3 type 2).
    #[error("register flags byte must be 0x01 (unlisted)")]
    BadFlags,
    /// An address family byte other than 4 or 6 (or other than 0 where no address is sent).
    #[error("address family must be 4 or 6")]
    BadFamily,
    /// A lookup status byte other than 0, 1 or 2.
    #[error("unknown lookup status")]
    BadStatus,
    /// A text field that is not UTF-8.
    #[error("text field is not valid UTF-8")]
    BadUtf8,
    /// A fixed-width name with a NUL followed by a non-NUL byte.
    #[error("name field has a NUL byte followed by text")]
    InteriorNul,
    /// Text longer than its fixed-width field (names are refused, never cut).
    #[error("text longer than its fixed field")]
    NameTooLong,
    /// The output buffer is too small for what is being emitted.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A TCP-plane command byte that is no command of the connection's role (or, for a
    /// record or status frame, not the byte that starts one).
    #[error("unknown command")]
    UnknownCommand,
    /// A TCP-plane hello whose role byte is neither 1 (server) nor 2 (client).
    #[error("hello role must be 1 (server) or 2 (client)")]
    BadRole,
    /// Bytes on the TCP answer stream that are not the answer due: a byte that starts no
    /// answer to what was asked, bytes when nothing was asked, or a status 200 where
    /// another answer is due (docs/PROTOCOL.md §8.7). The stream cannot be followed after.
    #[error("bytes that are not the answer due")]
    UnexpectedAnswer,
    /// More requests await their answers than an answer reader tracks (65,536).
    #[error("too many requests await their answers")]
    TooManyPending,
    /// Bytes that are not a STUN message as RFC 8489 §5 frames it: under 20 bytes, the
    /// top two bits of the type set, or a message length that is not the datagram's length
    /// less 20 or not a multiple of 4 (docs/PROTOCOL.md §11.1).
    #[error("not a STUN message")]
    NotStun,
    /// A STUN FINGERPRINT attribute (RFC 8489 §14.7) that is not the last attribute, is not
    /// 4 bytes long, or does not match the CRC-32 of the message before it.
    #[error("STUN FINGERPRINT does not match the message")]
    BadFingerprint,
}
