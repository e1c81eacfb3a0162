//! What each client datagram does (docs/PROTOCOL.md §3, §5): keepalive, register, relay,
//! lookup and fetch. Each handler routes its packet through the parts of [`UdpCore`]
//! (admission, directory, relay queues, federation, emitter) and holds no state of its own.

use super::admission::{Admitted, Rejected};
use super::directory::{PunchVia, Room};
use super::emit::{self, wire_detail, Refusal, Req};
use super::queue::QueueError;
use super::stats::LookupResult;
use super::{Now, Out, UdpCore};
use crate::core::logs::ClientAddr;
use crate::wire::status;
use crate::wire::tcp::dir::ForwardBody;
use crate::wire::udp::root::MAX_DATAGRAM;
use crate::wire::udp::{
    parse_lookup, LookupAnswer, LookupStatus, OkInfo, Payload, Relay, ServerEvent,
};
use crate::wire::{Fingerprint, Root, WireError};
use std::net::SocketAddr;

impl UdpCore {
    /// Type 0 (docs/PROTOCOL.md §3, §5.10): refreshes the client listed at the source, or
    /// the source's unlisted binding (§5.2); from an unknown address, a 404 tells a client
    /// that the server restarted, but only when the keepalive (`len` bytes) is at least as
    /// large as the answer.
    #[inline]
    pub(super) fn keepalive(&mut self, now: Now, req: Req, len: usize, out: &mut Out<'_>) {
        if self.directory.keepalive(now, &req.src) {
            self.counters.keepalives += 1;
            return;
        }
        let req = Req { limit: len, ..req };
        let detail = "unknown address: register again";
        self.emitter.refuse(out, req, status::NOT_FOUND, detail);
    }

    /// Type 2 (docs/PROTOCOL.md §5.2): the admission checks (steps 3 to 10), then
    /// [`Self::accept`] (or [`Self::accept_unlisted`]); a missing or stale cookie gets a
    /// type-9 challenge.
    pub(super) fn register(&mut self, now: Now, req: Req, root: &Root<'_>, out: &mut Out<'_>) {
        let directory = &self.directory;
        let online = |fp: &Fingerprint| directory.client(fp).is_some();
        match self
            .admission
            .check_registration(now, req.src, root, online)
        {
            Ok(admitted) if admitted.unlisted => self.accept_unlisted(now, req, admitted, out),
            Ok(admitted) => self.accept(now, req, root, admitted, out),
            Err(Rejected::Challenge(cookie)) => {
                let cookie = Payload::Cookie(cookie);
                if self
                    .emitter
                    .send(out, now.unix_s, req.src, req.shift, &cookie, req.limit)
                {
                    self.counters.cookies_sent += 1;
                }
            }
            Err(Rejected::Refused(r)) => self.emitter.reject(out, req, r),
        }
    }

    /// Steps 11 and 12 of docs/PROTOCOL.md §5.2 for an admitted registration: the newest
    /// timestamp wins across the federation (409), room in the directory (evicting a client
    /// that never kept alive, else 503); then the fingerprint is bound to the source (any
    /// other fingerprint bound there goes offline), news is announced to the peers, the OK
    /// is sent and queued events follow it.
    fn accept(&mut self, now: Now, req: Req, root: &Root<'_>, a: Admitted, out: &mut Out<'_>) {
        if self
            .directory
            .remote()
            .get(&a.fp)
            .is_some_and(|r| r.ts >= a.ts)
        {
            let why = "a registration at least as new is held at another server";
            return self.emitter.refuse(out, req, status::CONFLICT, why);
        }
        match self.directory.room_for(&a.fp) {
            Room::Free => {}
            Room::Evict(victim) => self.go_offline(now, victim),
            Room::Full => {
                return self
                    .emitter
                    .refuse(out, req, status::SERVICE_UNAVAILABLE, "directory full")
            }
        }
        self.admission.record(a.fp, a.ts, a.digest);
        if let Some(other) = self.directory.at(&req.src).filter(|o| *o != a.fp) {
            self.go_offline(now, other);
        }
        let new = self.directory.client(&a.fp).is_none();
        let news = self.directory.register(now, a.fp, req.src, root);
        self.counters.registrations += 1;
        tracing::debug!(fingerprint = %a.fp, addr = %ClientAddr(req.src), new, "client registered");
        if news {
            if let Some(rec) = self.directory.announce(now, a.fp) {
                self.federation.push_record(&rec);
            }
        }
        self.send_ok(now, req, out);
        let Some((addr, shift)) = self.directory.client(&a.fp).map(|c| (c.addr, c.shift)) else {
            return;
        };
        self.deliver_queued(now, a.fp, (addr, shift), out);
    }

    /// An admitted unlisted registration (docs/PROTOCOL.md §5.2, "Unlisted
    /// registrations"): any other fingerprint listed at the source goes offline, the source
    /// is bound to the fingerprint for the client's own requests, and the OK is sent. The
    /// fingerprint's address in the directory, the peers and the queued events are left as
    /// they are.
    fn accept_unlisted(&mut self, now: Now, req: Req, a: Admitted, out: &mut Out<'_>) {
        self.admission.record(a.fp, a.ts, a.digest);
        if let Some(other) = self.directory.at(&req.src).filter(|o| *o != a.fp) {
            self.go_offline(now, other);
        }
        self.directory
            .bind_unlisted(now, req.src, a.fp, a.key, req.shift);
        self.counters.registrations += 1;
        self.send_ok(now, req, out);
    }

    /// The OK to an accepted registration from `req`: the advised keepalive, the boot
    /// epoch and the source address (docs/PROTOCOL.md §3 type 1).
    fn send_ok(&mut self, now: Now, req: Req, out: &mut Out<'_>) {
        let ok = Payload::Ok(Some(OkInfo {
            keepalive_s: self.cfg.advised_keepalive_s(),
            boot_epoch: self.boot_epoch,
            reflexive: req.src,
        }));
        self.emitter
            .send(out, now.unix_s, req.src, req.shift, &ok, MAX_DATAGRAM);
    }

    /// Type 4 from a client (docs/PROTOCOL.md §3, §5.7): a registered source, listed or
    /// unlisted (403), a well-formed event (413, 400), the relay checks of admission with
    /// the key of the client the source speaks for; then [`Self::route_relay`].
    pub(super) fn relay(&mut self, now: Now, req: Req, root: &Root<'_>, out: &mut Out<'_>) {
        let directory = &self.directory;
        let Some((from, key)) = directory.speaker_key(now, &req.src) else {
            let why = "register before relaying";
            return self.emitter.refuse(out, req, status::FORBIDDEN, why);
        };
        let relay = match Relay::parse(root.payload) {
            Ok(r) => r,
            Err(WireError::BadLength) => {
                let why = "event larger than 1200 bytes";
                return self
                    .emitter
                    .refuse(out, req, status::PAYLOAD_TOO_LARGE, why);
            }
            Err(e) => {
                let why = wire_detail(e);
                return self.emitter.refuse(out, req, status::BAD_REQUEST, why);
            }
        };
        let online = |fp: &Fingerprint| directory.client(fp).is_some();
        match self
            .admission
            .check_relay(now, root, from, key.as_ref(), online)
        {
            Ok(digest) => self.route_relay(now, req, from, relay, (root.timestamp, digest), out),
            Err(r) => self.emitter.reject(out, req, r),
        }
    }

    /// Where a verified relay from `from` goes, within the recipient's byte budget (429):
    /// to the recipient online here (413 when it would not fit its shifted layout), as a
    /// Forward toward its home server when it is homed elsewhere, else into the offline
    /// queue (503, 429 when full). The packet's
    /// timestamp and replay digest (`fresh`) are recorded once it went somewhere.
    fn route_relay(
        &mut self,
        now: Now,
        req: Req,
        from: Fingerprint,
        relay: Relay<'_>,
        fresh: (u64, u64),
        out: &mut Out<'_>,
    ) {
        let (ts, digest) = fresh;
        let dest = relay.peer;
        let cost = relay.event.len() as u64;
        if !self.admission.exempt(req.src) && !self.relay_budget.take(dest, cost, now.mono_ms) {
            let why = "the recipient is receiving too many events; slow down";
            return self
                .emitter
                .refuse(out, req, status::TOO_MANY_REQUESTS, why);
        }
        let event = Payload::Relay(Relay {
            peer: from,
            event: relay.event,
        });
        if let Some((addr, shift)) = self.directory.client(&dest).map(|c| (c.addr, c.shift)) {
            if emit::packet_len(shift, &event) > MAX_DATAGRAM {
                let why = "event too large for the recipient's shifted layout";
                return self
                    .emitter
                    .refuse(out, req, status::PAYLOAD_TOO_LARGE, why);
            }
            self.admission.record(from, ts, digest);
            self.emitter
                .send(out, now.unix_s, addr, shift, &event, MAX_DATAGRAM);
            self.counters.relayed += 1;
            tracing::debug!(from = %from, to = %dest, bytes = cost, "event relayed");
        } else if self.directory.remote().contains(&dest) {
            // Homed elsewhere: its NAT mapping is open to its home server only.
            self.admission.record(from, ts, digest);
            self.federation
                .forward(dest, from, ForwardBody::Relay(relay.event));
            tracing::debug!(from = %from, to = %dest, bytes = cost, "event forwarded to the recipient's home server");
        } else {
            match self.queues.push(dest, from, relay.event, now.mono_ms) {
                Ok(()) => {
                    self.admission.record(from, ts, digest);
                    self.counters.queued += 1;
                    tracing::debug!(from = %from, to = %dest, bytes = cost, "event queued for an offline recipient");
                }
                Err(e) => self.emitter.reject(out, req, queue_refusal(e)),
            }
        }
    }

    /// Type 5 (docs/PROTOCOL.md §5.6): from a registered source, listed or unlisted (403),
    /// the answer within the source IP's byte budget (else dropped), then a punch request
    /// for an online target naming the asker at the lookup's source: sent here, or
    /// forwarded to its home server. Allocates nothing.
    pub(super) fn lookup(&mut self, now: Now, req: Req, root: &Root<'_>, out: &mut Out<'_>) {
        let Some(asker) = self.directory.speaker(now, &req.src) else {
            let why = "register before looking up";
            return self.emitter.refuse(out, req, status::FORBIDDEN, why);
        };
        let target = match parse_lookup(root.payload) {
            Ok(fp) => fp,
            Err(e) => {
                let why = wire_detail(e);
                return self.emitter.refuse(out, req, status::BAD_REQUEST, why);
            }
        };
        let found = self.directory.locate(now, &target);
        let answer = Payload::LookupAnswer(LookupAnswer {
            target,
            status: found.status,
            home: found.home,
        });
        let cost = emit::packet_len(req.shift, &answer) as u64;
        if !self.admission.exempt(req.src)
            && !self.lookup_budget.take(req.src.ip(), cost, now.mono_ms)
        {
            return self.emitter.drop_one();
        }
        self.emitter
            .send(out, now.unix_s, req.src, req.shift, &answer, MAX_DATAGRAM);
        self.counters.lookups += 1;
        let result = match (found.status, found.punch) {
            (LookupStatus::Online { .. }, PunchVia::Home) => LookupResult::Remote,
            (LookupStatus::Online { .. }, _) => LookupResult::Online,
            (LookupStatus::Offline { .. }, _) => LookupResult::Offline,
            (LookupStatus::Unknown, _) => LookupResult::Unknown,
        };
        self.counters.lookup.results[result as usize] += 1;
        tracing::debug!(asker = %asker, target = %target, result = %result.label(), "lookup answered");
        if target == asker || found.punch == PunchVia::Nowhere {
            return;
        }
        if !self.punch_pairs.allow((asker, target), now.mono_ms) {
            return;
        }
        match found.punch {
            PunchVia::Direct(addr, shift) => {
                let punch = Payload::ServerEvent(ServerEvent::Punch {
                    peer: asker,
                    addr: req.src,
                });
                if self
                    .emitter
                    .send(out, now.unix_s, addr, shift, &punch, MAX_DATAGRAM)
                {
                    self.counters.lookup.punches_sent += 1;
                    tracing::debug!(asker = %asker, target = %target, via = %"direct", "punch request sent");
                }
            }
            // The target's NAT mapping is open to its home server only: the punch request
            // goes out from there.
            PunchVia::Home => {
                self.counters.lookup.punches_forwarded += 1;
                self.federation
                    .forward(target, asker, ForwardBody::Punch(req.src));
                tracing::debug!(asker = %asker, target = %target, via = %"home", "punch request forwarded to the target's home server");
            }
            PunchVia::Nowhere => {}
        }
    }

    /// Type 8 (docs/PROTOCOL.md §3, §5.8): a registered source, listed or unlisted (403),
    /// with an empty payload (400) gets the events queued for the client it speaks for,
    /// there, in its registration's layout.
    pub(super) fn fetch(&mut self, now: Now, req: Req, root: &Root<'_>, out: &mut Out<'_>) {
        let Some(fp) = self.directory.speaker(now, &req.src) else {
            let why = "register before fetching";
            return self.emitter.refuse(out, req, status::FORBIDDEN, why);
        };
        if !root.payload.is_empty() {
            let why = "fetch has no payload";
            return self.emitter.refuse(out, req, status::BAD_REQUEST, why);
        }
        let shift = match self.directory.unlisted_at(now, &req.src) {
            Some(b) => b.shift,
            None => self.directory.client(&fp).and_then(|c| c.shift),
        };
        self.deliver_queued(now, fp, (req.src, shift), out);
    }

    /// Sends the events queued for `fp` to `to` (address, layout), once (docs/PROTOCOL.md
    /// §5.8).
    fn deliver_queued(
        &mut self,
        now: Now,
        fp: Fingerprint,
        to: (SocketAddr, Option<u8>),
        out: &mut Out<'_>,
    ) {
        let (addr, shift) = to;
        for item in self.queues.take(&fp, now.mono_ms) {
            let p = Payload::Relay(Relay {
                peer: item.from,
                event: &item.event,
            });
            if self
                .emitter
                .send(out, now.unix_s, addr, shift, &p, MAX_DATAGRAM)
            {
                self.counters.delivered += 1;
            }
        }
    }
}

/// The refusal of a relay the offline queue would not take (docs/PROTOCOL.md §5.8).
fn queue_refusal(e: QueueError) -> Refusal {
    match e {
        QueueError::RecipientFull => {
            Refusal::new(status::SERVICE_UNAVAILABLE, "recipient's queue is full")
        }
        QueueError::GlobalFull => Refusal::new(status::SERVICE_UNAVAILABLE, "relay queue full"),
        QueueError::SenderFull => Refusal::new(
            status::TOO_MANY_REQUESTS,
            "too many of your events wait for offline recipients",
        ),
    }
}
