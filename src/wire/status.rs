//! The HTTP-like status codes of both planes: the `status` of a type-7 error on the UDP
//! plane (docs/PROTOCOL.md §4.1) and of the status frame on the TCP plane
//! (docs/PROTOCOL.md §8.6). One table, so a code means the same on both.
//!
//! ```text
//! type 7 error payload:  [status u16][request type u8][detail_len u8][detail]
//! TCP status frame:      [0x07][status u16][request u8][detail_len u8][detail]
//!                               ^^^^^^^^^^ one of the codes below, big-endian
//! ```
//!
//! What it owns: the numbers and their names. What it never does: decide when a code is
//! sent (the core's rules, docs/PROTOCOL.md §5 and §8).

/// 200: the TCP status frame's "done": a Barrier's writes are durable, an AuthProof is
/// accepted (docs/PROTOCOL.md §8.6). Never sent on the UDP plane.
pub const OK: u16 = 200;
/// 400: malformed (an unreadable Root packet, an unknown packet type or command, a
/// malformed payload, hello or frame; docs/PROTOCOL.md §4.1, §8.6).
pub const BAD_REQUEST: u16 = 400;
/// 401: a certificate or signature refused (UDP), a node key not proven (TCP;
/// docs/PROTOCOL.md §4.1, §8.6, §8.17).
pub const UNAUTHORIZED: u16 = 401;
/// 403: not allowed from this source: lookup, relay or fetch before registering (UDP), the
/// server role from an address that is no peer (TCP; docs/PROTOCOL.md §4.1, §8.6).
pub const FORBIDDEN: u16 = 403;
/// 404: unknown: a keepalive from an address not in the directory (UDP), a journal id or
/// line the server no longer holds (TCP; docs/PROTOCOL.md §4.1, §8.6).
pub const NOT_FOUND: u16 = 404;
/// 408: no complete hello within 10 s (TCP only; docs/PROTOCOL.md §8.2, §8.6).
pub const REQUEST_TIMEOUT: u16 = 408;
/// 409: stale or replayed (UDP: timestamp outside the freshness window, older than the
/// last accepted, replayed), or a Lamport clock implausibly far ahead (TCP;
/// docs/PROTOCOL.md §4.1, §8.6, §8.9).
pub const CONFLICT: u16 = 409;
/// 413: too large: a datagram over 1400 bytes, a relayed event over 1200 bytes or too large
/// for the recipient's layout (UDP only; docs/PROTOCOL.md §4.1).
pub const PAYLOAD_TOO_LARGE: u16 = 413;
/// 429: rate limited: registrations from one network, events waiting for offline
/// recipients (UDP only; docs/PROTOCOL.md §4.1, §5.9).
pub const TOO_MANY_REQUESTS: u16 = 429;
/// 503: full or failing: the directory, freshness table or a relay queue is full (UDP);
/// the Lamport clock is exhausted or the store failed (TCP; docs/PROTOCOL.md §4.1, §8.6).
pub const SERVICE_UNAVAILABLE: u16 = 503;

/// The standard reason phrase of a code this protocol sends (RFC 9110 §15), for people:
/// `None` for any other code.
pub fn reason(code: u16) -> Option<&'static str> {
    Some(match code {
        OK => "OK",
        BAD_REQUEST => "Bad Request",
        UNAUTHORIZED => "Unauthorized",
        FORBIDDEN => "Forbidden",
        NOT_FOUND => "Not Found",
        REQUEST_TIMEOUT => "Request Timeout",
        CONFLICT => "Conflict",
        PAYLOAD_TOO_LARGE => "Content Too Large",
        TOO_MANY_REQUESTS => "Too Many Requests",
        SERVICE_UNAVAILABLE => "Service Unavailable",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons() {
        let all = [
            OK,
            BAD_REQUEST,
            UNAUTHORIZED,
            FORBIDDEN,
            NOT_FOUND,
            REQUEST_TIMEOUT,
            CONFLICT,
            PAYLOAD_TOO_LARGE,
            TOO_MANY_REQUESTS,
            SERVICE_UNAVAILABLE,
        ];
        assert_eq!(all, [200, 400, 401, 403, 404, 408, 409, 413, 429, 503]);
        assert!(all.iter().all(|&c| reason(c).is_some()));
        assert_eq!(reason(404), Some("Not Found"));
        assert_eq!(reason(418), None);
    }
}
