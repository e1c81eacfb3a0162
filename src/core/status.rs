//! HTTP-like status codes of the type-7 error (docs/PROTOCOL.md §3 "Type 7" and §4.1),
//! also used in the refusals of peer records and forwards (docs/PROTOCOL.md §8.16).

/// Malformed.
pub const BAD_REQUEST: u16 = 400;
/// Bad or missing signature or certificate.
pub const UNAUTHORIZED: u16 = 401;
/// Not allowed (e.g. lookup from an unregistered source).
pub const FORBIDDEN: u16 = 403;
/// Unknown (e.g. keepalive from an address the server does not know).
pub const NOT_FOUND: u16 = 404;
/// Stale or replayed.
pub const CONFLICT: u16 = 409;
/// Too large.
pub const TOO_LARGE: u16 = 413;
/// Rate limited.
pub const RATE_LIMITED: u16 = 429;
/// Full.
pub const FULL: u16 = 503;
