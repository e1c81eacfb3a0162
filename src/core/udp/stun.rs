//! STUN Binding requests on the UDP port (docs/PROTOCOL.md §11): a datagram that
//! [`crate::wire::stun::classify`] takes for STUN is answered here, never read as a Root
//! packet. Only Binding requests get an answer: the requester's reflexive address, under
//! the lookup answer budget of its source IP (§5.6, §5.9) and always under 3 times the
//! request's size. Nothing here changes the directory; nothing allocates.

use super::{Now, Out, UdpCore};
use crate::wire::stun::{attr, classify, Dialect, Reply, Response, Stun, BINDING_REQUEST};
use crate::wire::MAX_DATAGRAM;
use std::net::SocketAddr;

/// At most this many unknown attribute types are listed in a 420 (the rest still make it
/// a 420; docs/PROTOCOL.md §11.3).
const MAX_UNKNOWN: usize = 8;

/// An answer is always smaller than this many times its request (the amplification bound
/// of QUIC, RFC 9000 §8; docs/PROTOCOL.md §11.4, docs/SECURITY.md T3).
pub(super) const MAX_AMPLIFICATION: usize = 3;

/// The comprehension-required attributes of `msg` that this server does not act on
/// (docs/PROTOCOL.md §11.3): all but a CHANGE-REQUEST that asks for no change (4 zero
/// flag bytes, RFC 5780 §7.2). Fills `list` with the first [`MAX_UNKNOWN`] and returns
/// how many there are in all.
fn unknown_required(msg: &Stun<'_>, list: &mut [u16; MAX_UNKNOWN]) -> usize {
    let mut n = 0;
    for a in msg.attributes().filter(|a| a.comprehension_required()) {
        if a.kind == attr::CHANGE_REQUEST && a.value == [0, 0, 0, 0] {
            continue;
        }
        if n < MAX_UNKNOWN {
            list[n] = a.kind;
        }
        n += 1;
    }
    n
}

impl UdpCore {
    /// Answers `data` from `src` if it is a STUN message; returns false when it is not
    /// (then it is a Root packet). Malformed messages and anything but a Binding request
    /// are dropped unanswered (RFC 8489 §6.3); an RFC 8489 request with attributes it must
    /// understand and does not gets 420 with UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1), an
    /// RFC 3489 one nothing (docs/PROTOCOL.md §11.3).
    #[inline]
    pub(super) fn stun(
        &mut self,
        now: Now,
        src: SocketAddr,
        data: &[u8],
        out: &mut Out<'_>,
    ) -> bool {
        let Some(dialect) = classify(data) else {
            return false;
        };
        let msg = match Stun::parse(data) {
            Ok(m) if m.message_type() == BINDING_REQUEST => m,
            _ => {
                self.counters.stun_dropped += 1;
                self.emitter.drop_one();
                return true;
            }
        };
        let mut list = [0u16; MAX_UNKNOWN];
        let unknown = unknown_required(&msg, &mut list);
        let reply = match (unknown, dialect) {
            (0, _) => Reply::Mapped(src),
            (_, Dialect::Rfc8489) => Reply::Error {
                code: 420,
                reason: "",
                unknown: &list[..unknown.min(MAX_UNKNOWN)],
            },
            (_, Dialect::Rfc3489) => {
                self.counters.stun_dropped += 1;
                self.emitter.drop_one();
                return true;
            }
        };
        let response = Response {
            dialect,
            transaction: msg.transaction(),
            reply,
        };
        let cost = response.len();
        let over_bound = cost >= MAX_AMPLIFICATION * data.len();
        let over_budget = !self.admission.exempt(src)
            && !self.lookup_budget.take(src.ip(), cost as u64, now.mono_ms);
        if over_bound || over_budget {
            self.counters.stun_dropped += 1;
            self.emitter.drop_one();
            return true;
        }
        if self.emitter.send_stun(out, src, &response, MAX_DATAGRAM) {
            self.counters.stun_answered += 1;
        }
        true
    }
}
