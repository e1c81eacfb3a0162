//! The opener's commands of both roles, after the hello: their command bytes, their
//! framing ([`command_len`]) and their bodies (docs/PROTOCOL.md §8.3, §8.4). Every frame's
//! length follows from its command byte and, for frames 10-12, 16-18 and 21, from length
//! fields; there are no other length prefixes.
//!
//! ```text
//! +---------+-------------------------------------------+
//! | command | body (layout per role and command)        |
//! |   u8    |                                           |
//! +---------+-------------------------------------------+
//!
//! client role (hello role 2)            server role (hello role 1)
//!  1 Update   [fields 532]       533     1 Update        [clock u32][fields 532]      537
//!  2 ListAll  -                  1       2 HeartBeat     [health u8][clock u32]       6
//!  5 Barrier  -                  1       3 UpdateClock   [clock u32]                  5
//!  6 Status   -                  1       4 AskForUpdate  -                            1
//! 20 AuthChallenge -             1
//! 21 AuthProof [len u16][body] 3 + len
//!                                        5 Barrier, 6 Status  -                       1
//!                                       13 JournalUpdate [line u64][clock u32][fields] 545
//!                                       14 CursorQuery   [journal_id u64]             9
//!                                       15 JournalMark   [line u64]                   9
//!                                       19 JournalSince  [journal_id u64][since u64]
//!                                                        [limit u32]                  21
//!                                       20 AuthChallenge -                            1
//!                                       10-12 node-list frames (nodelist.rs)
//!                                       16 DirRecord, 17 DirRequest, 18 Forward,
//!                                       21 AuthProof     [len u16][body len]     3 + len
//!                                       22 Reconcile     [len u16][set u8][message]  3 + len
//!                                       23 DirWant       [len u16][ids 32 x k]   3 + len
//!   frame lengths include the command byte; fields = contact fields (contact.rs)
//! ```
//!
//! [`command_len`] looks at the first bytes of a stream buffer and says "need more"
//! (`Ok(None)`), "a frame of `n` bytes" or "this is no frame" (an error that closes the
//! connection); the frame's bytes then go to [`ClientCommand::parse`] or
//! [`ServerCommand::parse`], which take exactly one frame, command byte included.
//! Invariants: no parser panics on any input; a frame cut short is
//! [`WireError::Truncated`] (or `Ok(None)` from [`command_len`]), never a different frame;
//! an emit checks every field before it writes a byte and refuses text longer than its
//! field ([`WireError::NameTooLong`]) rather than cut it.

use super::contact::{ContactFields, CLIENT_UPDATE_LEN, SERVER_UPDATE_LEN};
use super::hello::Role;
use super::nodelist::{self, CMD_NODE_LIST, CMD_NODE_LIST_DIFF, CMD_NODE_LIST_HASH, CMD_NODE_SYNC};
use crate::wire::bytes::{exact, room};
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};

/// Command 1, both roles: Update (docs/PROTOCOL.md §8.3, §8.4).
pub const CMD_UPDATE: u8 = 1;
/// Command 2, client role: ListAll (docs/PROTOCOL.md §8.3).
pub const CMD_LIST_ALL: u8 = 2;
/// Command 2, server role: HeartBeat (docs/PROTOCOL.md §8.4).
pub const CMD_HEARTBEAT: u8 = 2;
/// Command 3, server role: UpdateClock; also the answer to a HeartBeat
/// (docs/PROTOCOL.md §8.4, §8.5).
pub const CMD_UPDATE_CLOCK: u8 = 3;
/// Command 4, server role: AskForUpdate (docs/PROTOCOL.md §8.4).
pub const CMD_ASK_FOR_UPDATE: u8 = 4;
/// Command 5, both roles: Barrier, answered with status 200 once every earlier command on
/// the connection is durable (docs/PROTOCOL.md §8.3, §8.8).
pub const CMD_BARRIER: u8 = 5;
/// Byte 6, no body, both roles: ask for the server's status; answered with
/// `[0x06][len u32][len bytes of UTF-8 key=value lines]` (docs/PROTOCOL.md §8.5).
pub const CMD_STATUS_REQUEST: u8 = 6;
/// Byte 13, server role: one journal line pushed by the opener:
/// `[line u64][clock u32][username 256][contactname 256][phone 20]` (545-byte frame;
/// docs/PROTOCOL.md §8.4, §8.10).
pub const CMD_JOURNAL_UPDATE: u8 = 13;
/// Byte 14, server role: `[journal_id u64]`, "what is the last line of my journal you
/// hold?"; answered with `[14][line u64]` (0 when none; docs/PROTOCOL.md §8.4).
pub const CMD_CURSOR_QUERY: u8 = 14;
/// Byte 15, server role: `[line u64]`: "you now hold my journal up to this line" (sent after
/// a full push or a catch-up; docs/PROTOCOL.md §8.4, §8.10).
pub const CMD_JOURNAL_MARK: u8 = 15;
/// Byte 16, server role: one directory record pushed by the opener, `[len u16][body]`
/// (docs/PROTOCOL.md §8.16; body: [`super::dir`]).
pub const CMD_DIR_RECORD: u8 = 16;
/// Byte 17, server role: `[len u16 = 0]`, "send me your whole directory"; answered with
/// DirRecord frames and `[17][len u16 = 4][count u32]` (docs/PROTOCOL.md §8.16).
pub const CMD_DIR_REQUEST: u8 = 17;
/// Byte 18, server role: a punch request or relayed event forwarded toward the target's home
/// server, `[len u16][body]` (docs/PROTOCOL.md §8.16; body: [`super::dir`]).
pub const CMD_FORWARD: u8 = 18;
/// Byte 19, server role: `[journal_id u64][since u64][limit u32]`, "send me at most `limit`
/// lines of your journal after `since`"; answered with `[19][count u32]` and `count`
/// JournalUpdate frames (13), or a status frame (400, 404) (docs/PROTOCOL.md §8.4).
pub const CMD_JOURNAL_SINCE: u8 = 19;
/// Byte 20, both roles, no body: "challenge me"; answered with `[20][nonce 32]`. The first
/// step of proving a node key (server role, docs/PROTOCOL.md §8.17) or a client's
/// certificate key (client role, §8.18).
pub const CMD_AUTH_CHALLENGE: u8 = 20;
/// Byte 21, both roles: `[len u16][body]`, the proof; answered with status 200, or 401 and
/// close. Server role: the body is `[node entry][sig_len u8][signature]`, the opener's
/// node-list entry and its Ed25519 signature over [`AUTH_CONTEXT`] || nonce || the entry's
/// canonical bytes (docs/PROTOCOL.md §8.17). Client role: the body is
/// `[cert_len u16][certificate][sig_len u16][signature]` (docs/PROTOCOL.md §8.18,
/// [`super::auth::ClientProof`]).
pub const CMD_AUTH_PROOF: u8 = 21;
/// Byte 22, server role: `[len u16][set u8][message]`, one message of a range-based set
/// reconciliation (set 1 contacts, 2 the directory, 3 the node list; negentropy version 1, at
/// most [`MAX_RECONCILE_LEN`] bytes in all); answered with `[22][len u16][set u8]
/// [message]`, or `[22][len u16 = 1][set]` when the acceptor is reconciling that set
/// with another server (docs/PROTOCOL.md §8.20).
pub const CMD_RECONCILE: u8 = 22;
/// The longest reconciliation body (set byte and message), in bytes: 60,000, both ways
/// (docs/PROTOCOL.md §8.20). A frame is at most 60,003 bytes, within the 64 KiB of
/// unparsed input a connection may hold (§8.11).
pub const MAX_RECONCILE_LEN: usize = 60_000;
/// Byte 23, server role: `[len u16][ids]`, "send me the directory entries with these
/// ids" (32 bytes each, at most 128; ids of the acceptor's directory reconciliation on
/// this connection); answered as a DirRequest, DirRecord frames then `[17][len u16 = 4]
/// [count u32]` (docs/PROTOCOL.md §8.20).
pub const CMD_DIR_WANT: u8 = 23;

/// Body of a HeartBeat, in bytes: health (1) + clock (4) = 5 (docs/PROTOCOL.md §8.4).
pub const HEARTBEAT_LEN: usize = 5;
/// Body of an UpdateClock, in bytes: clock (4) (docs/PROTOCOL.md §8.4).
pub const UPDATE_CLOCK_LEN: usize = 4;
/// Body of a JournalUpdate: line (8), clock (4) and the contact fields (532) = 544 bytes.
pub const JOURNAL_UPDATE_LEN: usize = 8 + SERVER_UPDATE_LEN;
/// Body of a JournalSince: journal id (8) + since (8) + limit (4) = 20 bytes.
pub const JOURNAL_SINCE_LEN: usize = 20;
/// The longest fixed-length opener frame of either role (a JournalUpdate), command byte
/// included: 545. Frames 10-12, 16-18, 21-24 carry their own length ([`MAX_FRAME_LEN`]).
pub const MAX_COMMAND_LEN: usize = 1 + JOURNAL_UPDATE_LEN;
/// Length of an authentication nonce, in bytes: 32 (docs/PROTOCOL.md §8.17).
pub const NONCE_LEN: usize = 32;
/// The domain-separation prefix of an authentication signature (23 bytes of ASCII;
/// docs/PROTOCOL.md §8.17).
pub const AUTH_CONTEXT: &[u8] = b"rendezvous node auth v1";
/// The largest `limit` a JournalSince may ask for: 4096 lines (more is refused with 400;
/// docs/PROTOCOL.md §8.4).
pub const MAX_SINCE_LIMIT: u32 = 4096;
/// The longest body of a length-prefixed frame (16, 17, 18, 21), in bytes: 4096
/// (docs/PROTOCOL.md §8.11).
pub const MAX_VAR_BODY: usize = 4096;
/// The longest frame an opener may send, in bytes: a NodeSync of 4096 entries of 792 bytes
/// and 4096 ids (3,375,111); every frame but 11, 12 and 24 is at most 60,003.
pub const MAX_FRAME_LEN: usize = nodelist::MAX_FRAME_LEN;

/// HeartBeat health: ok (docs/PROTOCOL.md §8.4).
pub const HEALTH_OK: u8 = 1;
/// HeartBeat health: degraded (docs/PROTOCOL.md §8.4).
pub const HEALTH_DEGRADED: u8 = 2;
/// HeartBeat health: draining (docs/PROTOCOL.md §8.4).
pub const HEALTH_DRAINING: u8 = 3;

/// Body length of `command` for an opener of `role`, command byte excluded: `None` for a
/// byte that is no fixed-length command of that role (docs/PROTOCOL.md §8.3, §8.4).
///
/// Client role: 1 -> 532, 2, 5, 6, 20 -> 0. Server role: 1 -> 536, 2 -> 5, 3 -> 4, 4, 5, 6,
/// 20 -> 0, 13 -> 544, 14, 15 -> 8, 19 -> 20. The status frame (7) is never sent by an
/// opener, so it is `None` here, as are the frames that carry their own length.
pub fn body_len(role: Role, command: u8) -> Option<usize> {
    match (role, command) {
        (Role::Client, CMD_UPDATE) => Some(CLIENT_UPDATE_LEN),
        (Role::Client, CMD_LIST_ALL) => Some(0),
        (Role::Server, CMD_UPDATE) => Some(SERVER_UPDATE_LEN),
        (Role::Server, CMD_HEARTBEAT) => Some(HEARTBEAT_LEN),
        (Role::Server, CMD_UPDATE_CLOCK) => Some(UPDATE_CLOCK_LEN),
        (Role::Server, CMD_ASK_FOR_UPDATE) => Some(0),
        (Role::Server, CMD_JOURNAL_UPDATE) => Some(JOURNAL_UPDATE_LEN),
        (Role::Server, CMD_CURSOR_QUERY) => Some(8),
        (Role::Server, CMD_JOURNAL_MARK) => Some(8),
        (Role::Server, CMD_JOURNAL_SINCE) => Some(JOURNAL_SINCE_LEN),
        (_, CMD_AUTH_CHALLENGE) => Some(0),
        (_, CMD_BARRIER) => Some(0),
        (_, CMD_STATUS_REQUEST) => Some(0),
        _ => None,
    }
}

/// The name of command byte `command` of `role`, as this project's tools show it
/// (`update`, `list-all`, `heartbeat`, ... `auth-proof`; docs/PROTOCOL.md §8.3, §8.4):
/// `None` for a byte that is no command of that role. NodeListDiff (12) is named, although
/// an opener that sends it is refused.
pub fn command_name(role: Role, command: u8) -> Option<&'static str> {
    Some(match (role, command) {
        (_, CMD_UPDATE) => "update",
        (Role::Client, CMD_LIST_ALL) => "list-all",
        (_, CMD_BARRIER) => "barrier",
        (_, CMD_STATUS_REQUEST) => "status-request",
        (_, CMD_AUTH_CHALLENGE) => "auth-challenge",
        (_, CMD_AUTH_PROOF) => "auth-proof",
        (Role::Client, _) => return None,
        (_, CMD_HEARTBEAT) => "heartbeat",
        (_, CMD_UPDATE_CLOCK) => "update-clock",
        (_, CMD_ASK_FOR_UPDATE) => "ask-for-update",
        (_, CMD_NODE_LIST_HASH) => "node-list-hash",
        (_, CMD_NODE_LIST) => "node-list",
        (_, CMD_NODE_LIST_DIFF) => "node-list-diff",
        (_, CMD_NODE_SYNC) => "node-sync",
        (_, CMD_JOURNAL_UPDATE) => "journal-update",
        (_, CMD_CURSOR_QUERY) => "cursor-query",
        (_, CMD_JOURNAL_MARK) => "journal-mark",
        (_, CMD_DIR_RECORD) => "dir-record",
        (_, CMD_DIR_REQUEST) => "dir-request",
        (_, CMD_FORWARD) => "forward",
        (_, CMD_JOURNAL_SINCE) => "journal-since",
        (_, CMD_RECONCILE) => "reconcile",
        (_, CMD_DIR_WANT) => "dir-want",
        _ => return None,
    })
}

/// True for the server-role frames `[cmd][len u16][body]` (16, 17, 18, 21, 23).
fn is_var_frame(command: u8) -> bool {
    matches!(
        command,
        CMD_DIR_RECORD | CMD_DIR_REQUEST | CMD_FORWARD | CMD_AUTH_PROOF | CMD_DIR_WANT
    )
}

/// True for the node-list frames (10, 11, 12, 24).
fn is_node_list_frame(command: u8) -> bool {
    matches!(
        command,
        CMD_NODE_LIST_HASH | CMD_NODE_LIST | CMD_NODE_LIST_DIFF | CMD_NODE_SYNC
    )
}

/// True when `command` is a command of `role`: one of fixed length ([`body_len`]), the
/// AuthProof (21) of either role, or, for the server role, a node-list frame (10-12, 24), a
/// length-prefixed frame (16-18) or a Reconcile (22).
pub fn is_command(role: Role, command: u8) -> bool {
    body_len(role, command).is_some()
        || command == CMD_AUTH_PROOF
        || (role == Role::Server
            && (is_node_list_frame(command) || is_var_frame(command) || command == CMD_RECONCILE))
}

/// Length of the `[22][len u16][message]` frame at the start of `buf` (a Reconcile, or
/// its answer): `Ok(None)` when more bytes are needed.
///
/// # Errors
/// [`WireError::BadLength`] for a message over [`MAX_RECONCILE_LEN`].
pub(crate) fn reconcile_frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    prefixed_len(buf, MAX_RECONCILE_LEN)
}

/// Length of the `[cmd][len u16][body]` frame at the start of `buf` whose body may be at
/// most `max` bytes: `Ok(None)` when more bytes are needed; [`WireError::BadLength`] past
/// `max`.
fn prefixed_len(buf: &[u8], max: usize) -> Result<Option<usize>, WireError> {
    let Some(b) = buf.get(1..3) else {
        return Ok(None);
    };
    let len = usize::from(BigEndian::read_u16(b));
    if len > max {
        return Err(WireError::BadLength);
    }
    Ok((buf.len() >= 3 + len).then_some(3 + len))
}

/// Length of the `[cmd][len u16][body]` frame at the start of `buf`: `Ok(None)` when more
/// bytes are needed.
///
/// # Errors
/// [`WireError::BadLength`] for a body over [`MAX_VAR_BODY`].
pub(crate) fn var_frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    prefixed_len(buf, MAX_VAR_BODY)
}

/// Length of the next complete frame at the start of `buf` for a connection of `role`,
/// speaking as the opener: `Ok(None)` when more bytes are needed, `Ok(Some(n))` when the
/// first `n` bytes are one whole frame (command byte included; at most [`MAX_FRAME_LEN`]).
///
/// Fixed-length commands: reads only the command byte. Frames 16-18 and 21 (21 in both
/// roles): `[cmd][len u16]` then `len` bytes. Frames 10-12 and 24: [`nodelist::frame_len`]. A frame's length never
/// depends on anything but these length fields.
///
/// # Errors
/// [`WireError::UnknownCommand`] for a first byte that is no command of `role` (see
/// [`is_command`]); [`WireError::BadLength`] for a length-prefixed body over
/// [`MAX_VAR_BODY`] or a node list of over 4096 entries. The connection cannot be
/// resynchronised after either.
pub fn command_len(role: Role, buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(&command) = buf.first() else {
        return Ok(None);
    };
    if let Some(body) = body_len(role, command) {
        let n = 1 + body;
        return Ok((buf.len() >= n).then_some(n));
    }
    match (role, command) {
        (Role::Server, c) if is_node_list_frame(c) => nodelist::frame_len(buf),
        (Role::Server, c) if is_var_frame(c) => var_frame_len(buf),
        (Role::Server, CMD_RECONCILE) => reconcile_frame_len(buf),
        (Role::Client, CMD_AUTH_PROOF) => var_frame_len(buf),
        _ => Err(WireError::UnknownCommand),
    }
}

/// A command from an opener of the client role (docs/PROTOCOL.md §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCommand<'a> {
    /// 1 `[username 256][contactname 256][phone 20]`: set one contact (533-byte frame).
    Update(ContactFields<'a>),
    /// 2, no body: list every contact; answered with a count and 533-byte records.
    ListAll,
    /// 5, no body: answered with status 200 once every earlier command is durable.
    Barrier,
    /// 6, no body: the server's status.
    Status,
    /// 20, no body: "challenge me"; answered with `[20][nonce 32]` (docs/PROTOCOL.md
    /// §8.18).
    AuthChallenge,
    /// 21 `[len u16][body len]`: the proof of the client's certificate key, its body
    /// (0-4096 bytes) read by [`super::auth::ClientProof`] (docs/PROTOCOL.md §8.18).
    AuthProof(&'a [u8]),
}

impl<'a> ClientCommand<'a> {
    /// The command byte: 1, 2, 5, 6, 20 or 21.
    pub fn command_byte(&self) -> u8 {
        match self {
            ClientCommand::Update(_) => CMD_UPDATE,
            ClientCommand::ListAll => CMD_LIST_ALL,
            ClientCommand::Barrier => CMD_BARRIER,
            ClientCommand::Status => CMD_STATUS_REQUEST,
            ClientCommand::AuthChallenge => CMD_AUTH_CHALLENGE,
            ClientCommand::AuthProof(_) => CMD_AUTH_PROOF,
        }
    }

    /// Parses one whole frame, command byte included (as delimited by [`command_len`]).
    ///
    /// # Errors
    /// [`WireError::Truncated`] for an empty or short frame, [`WireError::TrailingData`]
    /// for a long one; [`WireError::UnknownCommand`] for a command byte other than 1, 2, 5,
    /// 6, 20 or 21; [`WireError::BadLength`] for an AuthProof body over 4096 bytes; the
    /// errors of [`ContactFields::parse`] for an Update.
    pub fn parse(frame: &'a [u8]) -> Result<Self, WireError> {
        let (&command, body) = frame.split_first().ok_or(WireError::Truncated)?;
        if command == CMD_AUTH_PROOF {
            return match ServerCommand::parse_var(command, body)? {
                ServerCommand::AuthProof(b) => Ok(ClientCommand::AuthProof(b)),
                _ => Err(WireError::BadLength), // not reached: 21 is always a proof
            };
        }
        let len = body_len(Role::Client, command).ok_or(WireError::UnknownCommand)?;
        exact(body, len)?;
        Ok(match command {
            CMD_UPDATE => ClientCommand::Update(ContactFields::parse(body)?),
            CMD_LIST_ALL => ClientCommand::ListAll,
            CMD_STATUS_REQUEST => ClientCommand::Status,
            CMD_AUTH_CHALLENGE => ClientCommand::AuthChallenge,
            _ => ClientCommand::Barrier,
        })
    }

    /// Bytes [`Self::emit`] writes: 533 for an Update, 3 + the body for an AuthProof, 1
    /// otherwise.
    pub fn buffer_len(&self) -> usize {
        match self {
            ClientCommand::AuthProof(b) => 3 + b.len(),
            _ => 1 + body_len(Role::Client, self.command_byte()).unwrap_or(0),
        }
    }

    /// Writes the frame, command byte included; returns its length.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] or [`WireError::InteriorNul`] for contact fields that do
    /// not fit (never cut); [`WireError::BadLength`] for an AuthProof body over 4096
    /// bytes; [`WireError::BufferTooSmall`]. Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.buffer_len();
        match self {
            ClientCommand::Update(f) => f.check()?,
            ClientCommand::AuthProof(b) if b.len() > MAX_VAR_BODY => {
                return Err(WireError::BadLength)
            }
            _ => {}
        }
        room(buf, n)?;
        buf[0] = self.command_byte();
        match self {
            ClientCommand::Update(f) => f.put(&mut buf[1..n]),
            ClientCommand::AuthProof(b) => {
                BigEndian::write_u16(&mut buf[1..3], b.len() as u16); // <= 4096, checked
                buf[3..n].copy_from_slice(b);
            }
            _ => {}
        }
        Ok(n)
    }

    /// Appends the frame to `out` (as [`Self::emit`] writes it); returns its length.
    ///
    /// # Errors
    /// Those of [`Self::emit`] but [`WireError::BufferTooSmall`]; `out` is left as it was.
    pub fn append_to(&self, out: &mut Vec<u8>) -> Result<usize, WireError> {
        crate::wire::bytes::append(out, self.buffer_len(), |buf| self.emit(buf))
    }
}

/// A command from an opener of the server role, a federated peer (docs/PROTOCOL.md §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCommand<'a> {
    /// 1 `[clock u32][username 256][contactname 256][phone 20]`: a replicated contact
    /// (537-byte frame).
    Update {
        /// The Lamport clock the record was stamped with.
        clock: u32,
        /// The contact.
        fields: ContactFields<'a>,
    },
    /// 2 `[health u8][clock u32]` (6-byte frame). `health` is kept as sent: 1 ok,
    /// 2 degraded, 3 draining; other values are the core's to judge.
    HeartBeat {
        /// [`HEALTH_OK`], [`HEALTH_DEGRADED`], [`HEALTH_DRAINING`], or another byte.
        health: u8,
        /// The peer's Lamport clock.
        clock: u32,
    },
    /// 3 `[clock u32]` (5-byte frame): the peer's clock.
    UpdateClock(u32),
    /// 4, no body: send me every contact; answered with a count and 537-byte records.
    AskForUpdate,
    /// 5, no body: answered with status 200 once every earlier command is durable.
    Barrier,
    /// 6, no body: the server's status.
    Status,
    /// 13: one journal line of the opener's journal (545-byte frame).
    JournalUpdate {
        /// Line number in the opener's journal.
        line: u64,
        /// The record's Lamport clock.
        clock: u32,
        /// The contact.
        fields: ContactFields<'a>,
    },
    /// 14: the acceptor's cursor for journal `journal_id` (9-byte frame).
    CursorQuery {
        /// The opener's journal id.
        journal_id: u64,
    },
    /// 15: the acceptor now holds the opener's journal up to `line` (9-byte frame).
    JournalMark {
        /// Line number.
        line: u64,
    },
    /// 10, 11, 12 or 24: a node-list sync frame, whole (command byte included), to be read by
    /// [`nodelist::NodeListFrame::parse`].
    NodeList(&'a [u8]),
    /// 16 `[len u16][body]`: one directory record; `body` is the record (0 to 4096 bytes).
    DirRecord(&'a [u8]),
    /// 17 `[len u16 = 0]`: send me your whole directory (3-byte frame).
    DirRequest,
    /// 18 `[len u16][body]`: a forwarded punch request or relayed event.
    Forward(&'a [u8]),
    /// 20, no body: send me a nonce to sign (1-byte frame).
    AuthChallenge,
    /// 21 `[len u16][node entry][sig_len u8][signature]`: proof of the node key.
    AuthProof(&'a [u8]),
    /// 19 `[journal_id u64][since u64][limit u32]` (21-byte frame).
    JournalSince {
        /// The journal the asker's cursor belongs to.
        journal_id: u64,
        /// The last line the asker holds.
        since: u64,
        /// The most lines wanted.
        limit: u32,
    },
    /// 22 `[len u16][body]`: a reconciliation body, `[set u8][message]` (0 to
    /// [`MAX_RECONCILE_LEN`] bytes; the message read by [`crate::federation::reconcile`]).
    Reconcile(&'a [u8]),
    /// 23 `[len u16][ids]`: directory entry ids wanted, 32 bytes each (at most 128).
    DirWant(&'a [u8]),
}

impl<'a> ServerCommand<'a> {
    /// The command byte: 1-6, 10-24.
    pub fn command_byte(&self) -> u8 {
        match self {
            ServerCommand::Update { .. } => CMD_UPDATE,
            ServerCommand::HeartBeat { .. } => CMD_HEARTBEAT,
            ServerCommand::UpdateClock(_) => CMD_UPDATE_CLOCK,
            ServerCommand::AskForUpdate => CMD_ASK_FOR_UPDATE,
            ServerCommand::Barrier => CMD_BARRIER,
            ServerCommand::Status => CMD_STATUS_REQUEST,
            ServerCommand::JournalUpdate { .. } => CMD_JOURNAL_UPDATE,
            ServerCommand::CursorQuery { .. } => CMD_CURSOR_QUERY,
            ServerCommand::JournalMark { .. } => CMD_JOURNAL_MARK,
            ServerCommand::NodeList(f) => f.first().copied().unwrap_or(CMD_NODE_LIST_HASH),
            ServerCommand::DirRecord(_) => CMD_DIR_RECORD,
            ServerCommand::DirRequest => CMD_DIR_REQUEST,
            ServerCommand::Forward(_) => CMD_FORWARD,
            ServerCommand::JournalSince { .. } => CMD_JOURNAL_SINCE,
            ServerCommand::AuthChallenge => CMD_AUTH_CHALLENGE,
            ServerCommand::AuthProof(_) => CMD_AUTH_PROOF,
            ServerCommand::Reconcile(_) => CMD_RECONCILE,
            ServerCommand::DirWant(_) => CMD_DIR_WANT,
        }
    }

    /// Parses one whole frame, command byte included (as delimited by [`command_len`]).
    ///
    /// # Errors
    /// [`WireError::Truncated`] for an empty or short frame, [`WireError::TrailingData`]
    /// for a long one; [`WireError::UnknownCommand`] for a byte that is no server-role
    /// command; [`WireError::BadLength`] for a length-prefixed body over 4096 bytes or a
    /// DirRequest with a body; the errors of [`ContactFields::parse`] for an Update or a
    /// JournalUpdate.
    pub fn parse(frame: &'a [u8]) -> Result<Self, WireError> {
        let (&command, body) = frame.split_first().ok_or(WireError::Truncated)?;
        if is_node_list_frame(command) {
            // Framing only; the entries are read by the node list's own parser.
            return match nodelist::frame_len(frame)? {
                None => Err(WireError::Truncated),
                Some(n) if n < frame.len() => Err(WireError::TrailingData),
                Some(_) => Ok(ServerCommand::NodeList(frame)),
            };
        }
        if is_var_frame(command) {
            return Self::parse_var(command, body);
        }
        if command == CMD_RECONCILE {
            return match reconcile_frame_len(frame)? {
                None => Err(WireError::Truncated),
                Some(n) if n < frame.len() => Err(WireError::TrailingData),
                Some(_) => Ok(ServerCommand::Reconcile(&frame[3..])),
            };
        }
        let len = body_len(Role::Server, command).ok_or(WireError::UnknownCommand)?;
        exact(body, len)?;
        Self::parse_fixed(command, body)
    }

    /// The body of a `[cmd][len u16][body]` frame (16, 17, 18, 21).
    fn parse_var(command: u8, body: &'a [u8]) -> Result<Self, WireError> {
        let b = body.get(..2).ok_or(WireError::Truncated)?;
        let len = usize::from(BigEndian::read_u16(b));
        if len > MAX_VAR_BODY {
            return Err(WireError::BadLength);
        }
        let rest = &body[2..];
        exact(rest, len)?;
        match command {
            CMD_DIR_RECORD => Ok(ServerCommand::DirRecord(rest)),
            CMD_FORWARD => Ok(ServerCommand::Forward(rest)),
            CMD_AUTH_PROOF => Ok(ServerCommand::AuthProof(rest)),
            CMD_DIR_WANT if len % 32 == 0 => Ok(ServerCommand::DirWant(rest)),
            CMD_DIR_WANT => Err(WireError::BadLength),
            _ if len == 0 => Ok(ServerCommand::DirRequest),
            _ => Err(WireError::BadLength),
        }
    }

    /// The body of a fixed-length command, its length already checked.
    fn parse_fixed(command: u8, body: &'a [u8]) -> Result<Self, WireError> {
        let u64_at = |at: usize| BigEndian::read_u64(&body[at..at + 8]);
        let u32_at = |at: usize| BigEndian::read_u32(&body[at..at + 4]);
        Ok(match command {
            CMD_UPDATE => ServerCommand::Update {
                clock: u32_at(0),
                fields: ContactFields::parse(&body[4..])?,
            },
            CMD_HEARTBEAT => ServerCommand::HeartBeat {
                health: body[0],
                clock: u32_at(1),
            },
            CMD_UPDATE_CLOCK => ServerCommand::UpdateClock(u32_at(0)),
            CMD_ASK_FOR_UPDATE => ServerCommand::AskForUpdate,
            CMD_STATUS_REQUEST => ServerCommand::Status,
            CMD_JOURNAL_UPDATE => ServerCommand::JournalUpdate {
                line: u64_at(0),
                clock: u32_at(8),
                fields: ContactFields::parse(&body[12..])?,
            },
            CMD_CURSOR_QUERY => ServerCommand::CursorQuery {
                journal_id: u64_at(0),
            },
            CMD_JOURNAL_MARK => ServerCommand::JournalMark { line: u64_at(0) },
            CMD_JOURNAL_SINCE => ServerCommand::JournalSince {
                journal_id: u64_at(0),
                since: u64_at(8),
                limit: u32_at(16),
            },
            CMD_AUTH_CHALLENGE => ServerCommand::AuthChallenge,
            _ => ServerCommand::Barrier,
        })
    }

    /// Bytes [`Self::emit`] writes: the fixed length of the command, the node-list frame's
    /// length, or 3 + the body for frames 16-18 and 21.
    pub fn buffer_len(&self) -> usize {
        match self {
            ServerCommand::NodeList(f) => f.len(),
            ServerCommand::DirRecord(b)
            | ServerCommand::Forward(b)
            | ServerCommand::AuthProof(b)
            | ServerCommand::DirWant(b)
            | ServerCommand::Reconcile(b) => 3 + b.len(),
            ServerCommand::DirRequest => 3,
            _ => 1 + body_len(Role::Server, self.command_byte()).unwrap_or(0),
        }
    }

    /// Checks what an emit would otherwise write half of: contact fields that fit,
    /// length-prefixed bodies within 4096 bytes, a node-list frame that parses as itself.
    fn check(&self) -> Result<(), WireError> {
        match self {
            ServerCommand::Update { fields, .. } | ServerCommand::JournalUpdate { fields, .. } => {
                fields.check()
            }
            ServerCommand::DirRecord(b)
            | ServerCommand::Forward(b)
            | ServerCommand::AuthProof(b)
            | ServerCommand::DirWant(b)
                if b.len() > MAX_VAR_BODY =>
            {
                Err(WireError::BadLength)
            }
            ServerCommand::DirWant(b) if b.len() % 32 != 0 => Err(WireError::BadLength),
            ServerCommand::Reconcile(b) if b.len() > MAX_RECONCILE_LEN => Err(WireError::BadLength),
            ServerCommand::NodeList(f) if ServerCommand::parse(f) != Ok(*self) => {
                Err(WireError::BadLength)
            }
            _ => Ok(()),
        }
    }

    /// Writes the frame, command byte included; returns its length.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] or [`WireError::InteriorNul`] for contact fields that do
    /// not fit (never cut); [`WireError::BadLength`] for a length-prefixed body over 4096
    /// bytes or a node-list frame that is not one whole frame; [`WireError::BufferTooSmall`].
    /// Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.buffer_len();
        self.check()?;
        room(buf, n)?;
        let buf = &mut buf[..n];
        buf[0] = self.command_byte();
        let body = &mut buf[1..];
        match self {
            ServerCommand::Update { clock, fields } => {
                BigEndian::write_u32(&mut body[..4], *clock);
                fields.put(&mut body[4..]);
            }
            ServerCommand::HeartBeat { health, clock } => {
                body[0] = *health;
                BigEndian::write_u32(&mut body[1..5], *clock);
            }
            ServerCommand::UpdateClock(clock) => BigEndian::write_u32(body, *clock),
            ServerCommand::AskForUpdate
            | ServerCommand::Barrier
            | ServerCommand::Status
            | ServerCommand::AuthChallenge => {}
            ServerCommand::JournalUpdate {
                line,
                clock,
                fields,
            } => {
                BigEndian::write_u64(&mut body[..8], *line);
                BigEndian::write_u32(&mut body[8..12], *clock);
                fields.put(&mut body[12..]);
            }
            ServerCommand::CursorQuery { journal_id: v }
            | ServerCommand::JournalMark { line: v } => {
                BigEndian::write_u64(body, *v);
            }
            ServerCommand::NodeList(f) => buf.copy_from_slice(f),
            ServerCommand::DirRecord(b)
            | ServerCommand::Forward(b)
            | ServerCommand::AuthProof(b)
            | ServerCommand::DirWant(b)
            | ServerCommand::Reconcile(b) => {
                // <= 4096 or <= 60,000 (a Reconcile), checked
                BigEndian::write_u16(&mut body[..2], b.len() as u16);
                body[2..].copy_from_slice(b);
            }
            ServerCommand::DirRequest => BigEndian::write_u16(body, 0),
            ServerCommand::JournalSince {
                journal_id,
                since,
                limit,
            } => {
                BigEndian::write_u64(&mut body[..8], *journal_id);
                BigEndian::write_u64(&mut body[8..16], *since);
                BigEndian::write_u32(&mut body[16..20], *limit);
            }
        }
        Ok(n)
    }

    /// Appends the frame to `out` (as [`Self::emit`] writes it); returns its length.
    ///
    /// # Errors
    /// Those of [`Self::emit`] but [`WireError::BufferTooSmall`]; `out` is left as it was.
    pub fn append_to(&self, out: &mut Vec<u8>) -> Result<usize, WireError> {
        crate::wire::bytes::append(out, self.buffer_len(), |buf| self.emit(buf))
    }
}

/// Writes the UpdateClock `0x03 [clock u32]` (a server-role command, and the answer to a
/// HeartBeat); returns 5 (docs/PROTOCOL.md §8.4, §8.5).
///
/// # Errors
/// [`WireError::BufferTooSmall`].
pub fn emit_update_clock(clock: u32, buf: &mut [u8]) -> Result<usize, WireError> {
    ServerCommand::UpdateClock(clock).emit(buf)
}

/// Reads an UpdateClock frame `0x03 [clock u32]` of exactly 5 bytes, the answer to a
/// HeartBeat (docs/PROTOCOL.md §8.5).
///
/// # Errors
/// [`WireError::UnknownCommand`] when the first byte is not 3; [`WireError::Truncated`]
/// or [`WireError::TrailingData`] for any length but 5.
pub fn parse_update_clock(frame: &[u8]) -> Result<u32, WireError> {
    match frame.first() {
        None => Err(WireError::Truncated),
        Some(&CMD_UPDATE_CLOCK) => {
            exact(frame, 1 + UPDATE_CLOCK_LEN)?;
            Ok(BigEndian::read_u32(&frame[1..]))
        }
        Some(_) => Err(WireError::UnknownCommand),
    }
}

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(check_where(|f| {
    matches!(f.frame, crate::wire::fixtures::Frame::Command(_))
        || f.field("piece") == Some("reconcile")
}));
