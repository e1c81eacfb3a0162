//! Commands on connections a client or a peer opened: the hello and who may speak which
//! role (docs/PROTOCOL.md §8.2), framing and the read backpressure (§8.11), then each
//! command of the client role (§8.3) and the server role (§8.4), handed to the part that
//! owns it. Any malformed input is a status frame and close, never a panic.

use super::conn::Answer;
use super::contacts::to_contact;
use super::{ConnId, TcpCore};
use crate::wire::status;
use crate::wire::tcp::{self, ClientCommand, ContactFields, Hello, Role, ServerCommand};
use crate::wire::WireError;
use std::net::SocketAddr;

impl TcpCore {
    /// Parses and carries out what `conn`'s input holds, while it can.
    pub(super) fn parse(&mut self, now_ms: u64, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get(&conn) else {
                return;
            };
            if c.input.refused || c.out.close_when_flushed {
                return;
            }
            // Merges the store has not applied are bounded: past the bound, every
            // connection with input waits (the store always progresses, so this cannot
            // deadlock) and its unparsed input stops its reads.
            let has_input = !c.input.buf.is_empty();
            if has_input && self.store_behind(conn) {
                return;
            }
            let Some(c) = self.conns.get(&conn) else {
                return;
            };
            // A link's incoming bytes are answers to us: always read them (gating them on
            // our own output could deadlock two servers pushing to each other).
            let more = if c.link.is_some() {
                self.parse_answer(now_ms, conn)
            } else if let Some(role) = c.role {
                self.next_command(now_ms, conn, role)
            } else {
                self.read_hello(now_ms, conn)
            };
            if !more {
                return;
            }
        }
    }

    /// The hello (257 bytes): true when it is read and its opener admitted. The role byte
    /// is checked as soon as it arrives (400 at once).
    fn read_hello(&mut self, now_ms: u64, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if let Some(&b) = c.input.buf.first() {
            if b != tcp::ROLE_SERVER && b != tcp::ROLE_CLIENT {
                let detail = format!("malformed hello: role byte {b} (1 server, 2 client)");
                self.fail(conn, status::BAD_REQUEST, tcp::REQUEST_HELLO, &detail);
                return false;
            }
        }
        if c.input.buf.len() < tcp::HELLO_LEN {
            return false;
        }
        let hello: Vec<u8> = c.input.buf.drain(..tcp::HELLO_LEN).collect();
        let addr = c.addr;
        match Hello::parse(&hello) {
            Ok(h) => self.admit(now_ms, conn, addr, h.role, h.name),
            Err(e) => {
                self.fail(
                    conn,
                    status::BAD_REQUEST,
                    0,
                    &format!("malformed hello: {e}"),
                );
                false
            }
        }
    }

    /// Admits the opener of `conn` from `addr` in `role`: a client always; a server from a
    /// configured or allowed peer, or from a server in our node list, which must then
    /// prove its node key first (docs/PROTOCOL.md §8.12), or over TLS with a key of our
    /// node list (§8.19); else 403. With TLS links on, a server hello in clear text: 403.
    /// While this server drains, no one: 503 `draining` (§7, "Signals").
    fn admit(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        addr: SocketAddr,
        role: Role,
        name: &str,
    ) -> bool {
        if self.life.draining {
            tracing::debug!(name, "refused a hello: draining");
            let detail = tcp::DETAIL_DRAINING;
            self.fail(
                conn,
                status::SERVICE_UNAVAILABLE,
                tcp::REQUEST_HELLO,
                detail,
            );
            return false;
        }
        if role == Role::Server && self.gate.banned_until(addr.ip(), now_ms).is_some() {
            let detail = "cut off for 10 minutes after input that was refused";
            self.fail(conn, status::FORBIDDEN, 0, detail);
            return false;
        }
        let refusal = (role == Role::Server).then(|| self.transport_refusal(conn));
        if let Some(Some(detail)) = refusal {
            tracing::warn!(
                name,
                "refused a server hello in clear text (TLS is required)"
            );
            self.fail(conn, status::FORBIDDEN, 0, detail);
            return false;
        }
        // Over TLS, a key of our node list (or pinned) is that server, authenticated
        // (§8.19); with pinned keys, an address alone admits no server.
        let proved = role == Role::Server && self.tls_key_known(conn);
        let configured = self.cfg.peering.peer_allowed(addr.ip()) && !self.strict_peers();
        let known = self.known_node_ip(addr.ip());
        if !(role == Role::Client || configured || known || proved) {
            // Whoever sent it is no peer of ours: its address is a client's
            // (`--log-addresses`).
            tracing::warn!(
                name,
                from = %crate::core::logs::ClientAddr(addr),
                "refused a server hello from an address that is not a configured or allowed peer"
            );
            let detail = "server role is accepted only from configured or allowed peers";
            self.fail(conn, status::FORBIDDEN, 0, detail);
            return false;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.role = Some(role);
        c.name = name.to_string();
        c.auth.required = role == Role::Server && !configured && !proved;
        c.auth.proved = proved;
        if proved {
            c.auth.uid = c.auth.transport.key().map(crate::core::node::node_uid);
        }
        if role == Role::Server {
            self.redial_now(now_ms, addr);
        }
        true
    }

    /// Frames the next command of `role` on `conn` and carries it out: false when it is
    /// not complete, must wait (its answer would pass the output bound), or is refused.
    fn next_command(&mut self, now_ms: u64, conn: ConnId, role: Role) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        // An opener admitted only through the node list may send nothing but the proof
        // until it is proved: refused at its first byte, before a frame of up to 3.2 MB
        // would be buffered.
        if let (true, Some(&b)) = (c.auth.required && !c.auth.proved, c.input.buf.first()) {
            if b != tcp::CMD_AUTH_CHALLENGE && b != tcp::CMD_AUTH_PROOF {
                let detail = "prove the node key first (commands 20 and 21)";
                self.fail(conn, status::UNAUTHORIZED, b, detail);
                return false;
            }
        }
        // A client's proof being checked holds its next commands; a client that has not
        // proved its key may send only the proof and a status request (§8.18).
        if c.auth.checking {
            return false;
        }
        if let (Role::Client, Some(&b)) = (role, c.input.buf.first()) {
            if let Err((code, detail)) = self.client_may_send(conn, b) {
                self.fail(conn, code, b, detail);
                return false;
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let len = match tcp::command_len(role, &c.input.buf) {
            Ok(Some(n)) => n,
            Ok(None) => return false,
            Err(e) => {
                let b = c.input.buf.first().copied().unwrap_or(0xFF);
                let detail = match e {
                    WireError::UnknownCommand => "unknown command".to_string(),
                    e => format!("malformed frame: {e}"),
                };
                self.fail(conn, status::BAD_REQUEST, b, &detail);
                return false;
            }
        };
        // A command that produces an answer waits while this connection's output (plus
        // the short answers already due) is at its bound: a client that never reads
        // cannot grow the server's memory. Updates produce none and always go through.
        // A streamed answer holds a store snapshot (a file descriptor, a read transaction
        // and up to two pages) until written: one per connection at a time, and at most
        // `max_streams` in all (the connection waits, unparsed, for a free slot).
        let cmd = c.input.buf[0];
        let opens = opens_stream(role, cmd);
        if answered(role, cmd)
            && (c.answers.len() >= self.cfg.bounds.max_pending
                || c.committed_out() >= self.cfg.bounds.max_out
                || (opens && c.streams_waiting() > 0))
        {
            return false;
        }
        if opens && self.reads.streams.len() >= self.cfg.bounds.max_streams {
            if !self.reads.stream_waiters.contains(&conn) {
                self.reads.stream_waiters.push_back(conn);
            }
            return false;
        }
        let frame: Vec<u8> = c.input.buf.drain(..len).collect();
        match role {
            Role::Client => self.client_command(conn, &frame),
            Role::Server => self.server_command(now_ms, conn, &frame),
        }
        true
    }

    /// One client-role command (docs/PROTOCOL.md §8.3, §8.18).
    fn client_command(&mut self, conn: ConnId, frame: &[u8]) {
        let cmd = match ClientCommand::parse(frame) {
            Ok(c) => c,
            Err(e) => return self.malformed_command(conn, frame, e),
        };
        match cmd {
            ClientCommand::Update(f) => self.scoped_update(conn, &f),
            ClientCommand::ListAll => self.open_stream(conn, Role::Client),
            ClientCommand::Barrier => self.barrier(conn),
            ClientCommand::Status => self.status(conn),
            ClientCommand::AuthChallenge => self.auth_challenge(conn),
            ClientCommand::AuthProof(body) => self.client_proof(conn, body),
        }
    }

    /// Refuses a command frame that does not parse: 400 for its command byte, and close.
    fn malformed_command(&mut self, conn: ConnId, frame: &[u8], e: WireError) {
        let detail = format!("malformed command: {e}");
        self.fail(conn, status::BAD_REQUEST, frame[0], &detail);
    }

    /// One server-role command (docs/PROTOCOL.md §8.4); an opener admitted only through
    /// the node list gets here with nothing but the node-key proof until it is proved
    /// (`next_command` refuses the rest with 401).
    fn server_command(&mut self, now_ms: u64, conn: ConnId, frame: &[u8]) {
        let cmd = match ServerCommand::parse(frame) {
            Ok(c) => c,
            Err(e) => return self.malformed_command(conn, frame, e),
        };
        match cmd {
            ServerCommand::AuthChallenge => self.auth_challenge(conn),
            ServerCommand::AuthProof(body) => self.auth_proof(now_ms, conn, body),
            ServerCommand::Update { clock, fields } => {
                self.peer_update(now_ms, conn, clock, &fields)
            }
            ServerCommand::HeartBeat { clock, .. } => self.heartbeat_in(now_ms, conn, clock),
            ServerCommand::UpdateClock(clock) => {
                if self.accept_clock(now_ms, conn, tcp::CMD_UPDATE_CLOCK, clock) {
                    self.clock.observe(clock);
                }
            }
            ServerCommand::AskForUpdate => self.open_stream(conn, Role::Server),
            ServerCommand::Barrier => self.barrier(conn),
            ServerCommand::Status => self.status(conn),
            ServerCommand::CursorQuery { journal_id } => {
                self.cursor_query(now_ms, conn, journal_id)
            }
            ServerCommand::JournalUpdate {
                line,
                clock,
                fields,
            } => self.journal_update(now_ms, conn, line, clock, &fields),
            ServerCommand::JournalMark { line } => {
                self.end_session(conn, super::reconcile::Set::Contacts);
                self.journal_mark(conn, line);
            }
            ServerCommand::NodeList(frame) => self.node_list_command(now_ms, conn, frame),
            ServerCommand::DirRecord(body) => self.dir_record(conn, body),
            ServerCommand::DirRequest => self.dir_request(conn),
            ServerCommand::Forward(body) => self.forward_in(conn, body),
            ServerCommand::JournalSince {
                journal_id,
                since,
                limit,
            } => self.journal_since(conn, journal_id, since, limit),
            ServerCommand::Reconcile(body) => self.reconcile_in(now_ms, conn, body),
            ServerCommand::DirWant(ids) => self.dir_want(conn, ids),
        }
    }

    /// Server-role Update (1): merged by last-writer-wins with its clock.
    fn peer_update(&mut self, now_ms: u64, conn: ConnId, clock: u32, fields: &ContactFields<'_>) {
        if !self.accept_clock(now_ms, conn, tcp::CMD_UPDATE, clock) {
            return;
        }
        self.clock.observe(clock);
        let from = self.conns.get(&conn).and_then(|c| c.auth.uid);
        self.batch.merge(to_contact(fields, clock), from);
        self.stats.peer_updates += 1;
        self.count_received(conn, false);
    }

    /// HeartBeat (2): answered with our clock when it is at least the peer's, else we
    /// take the peer's and answer nothing.
    fn heartbeat_in(&mut self, now_ms: u64, conn: ConnId, clock: u32) {
        if !self.accept_clock(now_ms, conn, tcp::CMD_HEARTBEAT, clock) {
            return;
        }
        if self.clock.now >= clock {
            let mut b = [0u8; 5];
            if tcp::emit_update_clock(self.clock.now, &mut b).is_ok() {
                self.push_answer(conn, Answer::Ready(b.to_vec()));
            }
        } else {
            self.clock.observe(clock);
        }
    }
}

/// True when command byte `cmd` of `role` is answered with a streamed answer read from a
/// store snapshot: ListAll (client), AskForUpdate (server).
fn opens_stream(role: Role, cmd: u8) -> bool {
    matches!(
        (role, cmd),
        (Role::Client, tcp::CMD_LIST_ALL) | (Role::Server, tcp::CMD_ASK_FOR_UPDATE)
    )
}

/// True when command byte `cmd` of `role` is answered (and so waits for room in the
/// output); Updates, UpdateClock, DirRecord and Forward are not.
fn answered(role: Role, cmd: u8) -> bool {
    !matches!(
        (role, cmd),
        (_, tcp::CMD_UPDATE)
            | (
                Role::Server,
                tcp::CMD_UPDATE_CLOCK | tcp::CMD_DIR_RECORD | tcp::CMD_FORWARD
            )
    )
}
