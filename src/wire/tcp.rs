//! The TCP plane: the hello, the opener's commands of both roles, and the answers the
//! accepting side sends back. Zero-copy views with an emit side; no I/O, no allocation.
//!
//! Source: seed 003 (hello, client commands 1-2, server commands 1-4 and the answers to
//! ListAll, AskForUpdate and HeartBeat) and BRIEF.md, "TCP plane" (health values, the
//! durability barrier, status codes). Command 5 (Barrier) and the status frame (byte 7) are
//! this project's. Big-endian throughout; names and phones are NUL-padded UTF-8
//! ([`super::name`]).
//!
//! ```text
//! hello, the first 257 bytes of every connection (opener -> accepting side):
//! +------+---------------------------------------------+
//! | role | name                                        |
//! |  u8  | 256 bytes, UTF-8 padded with NUL            |
//! +------+---------------------------------------------+
//!   role 1 = server (a federated peer), 2 = client
//!
//! then a loop of frames from the opener, each of a fixed length set by its command byte:
//! +---------+-------------------------------------------+
//! | command | body (fixed layout, per role and command) |
//! |   u8    |                                           |
//! +---------+-------------------------------------------+
//!
//! contact fields (532 bytes):
//! +------------------+------------------+----------+
//! | username         | contactname      | phone    |
//! | 256, NUL-padded  | 256, NUL-padded  | 20       |
//! +------------------+------------------+----------+
//!
//! client role (opener is a client)     server role (opener is a federated peer)
//!  1 Update   [fields 532]   533        1 Update       [clock u32][fields 532]  537
//!  2 ListAll  -              1          2 HeartBeat    [health u8][clock u32]   6
//!  5 Barrier  -              1          3 UpdateClock  [clock u32]              5
//!                                       4 AskForUpdate -                        1
//!                                       5 Barrier      -                        1
//!   (frame lengths include the command byte)
//!
//! answers, accepting side -> opener, on the same connection, in the order asked:
//!  to ListAll       [count u32], then count records  0x01 [fields 532]             (533 each)
//!  to AskForUpdate  [count u32], then count records  0x01 [clock u32][fields 532]  (537 each)
//!  to HeartBeat     UpdateClock 0x03 [clock u32], or nothing
//!  status frame (to Barrier with 200, or to any refused command):
//! +------+--------+---------+------------+---------------------------+
//! | 0x07 | status | request | detail_len | detail                    |
//! |  u8  |  u16   |   u8    |     u8     | UTF-8, detail_len bytes   |
//! +------+--------+---------+------------+---------------------------+
//!   request = the command byte answered, 0 for the hello, 0xFF when unreadable
//! ```
//!
//! Framing (STYLE.md, "Stream framing"): [`hello_len`] and [`command_len`] look at the
//! first bytes of a stream buffer and say "need more" (`Ok(None)`), "a frame of `n` bytes"
//! or "this is no frame" (an error that closes the connection); the frame's bytes then go to
//! [`Hello::parse`], [`ClientCommand::parse`] or [`ServerCommand::parse`], which take exactly
//! one frame, command byte included. [`StatusFrame::frame_len`] does the same for a reader
//! of answers.
//!
//! Invariants: no parser panics on any input; a frame cut short is
//! [`WireError::Truncated`] (or `Ok(None)` from a length function), never a different
//! frame; an emit checks every field before it writes a byte and refuses text longer than
//! its field ([`WireError::NameTooLong`]) rather than cut it.

use super::bytes::{exact, room};
use super::name::cut_utf8;
use super::name::{parse_padded, NAME_LEN, PHONE_LEN};
use super::WireError;
use byteorder::{BigEndian, ByteOrder};

/// Length of the hello, in bytes: role (1) + name (256) = 257 (seed 003).
pub const HELLO_LEN: usize = 1 + NAME_LEN;
/// Body of a client-role Update (the contact fields), in bytes: 256 + 256 + 20 = 532
/// (seed 003).
pub const CLIENT_UPDATE_LEN: usize = 2 * NAME_LEN + PHONE_LEN;
/// Body of a server-role Update, in bytes: clock (4) + contact fields (532) = 536 (seed 003).
pub const SERVER_UPDATE_LEN: usize = 4 + CLIENT_UPDATE_LEN;
/// Body of a HeartBeat, in bytes: health (1) + clock (4) = 5 (seed 003).
pub const HEARTBEAT_LEN: usize = 5;
/// Body of an UpdateClock, in bytes: clock (4) (seed 003).
pub const UPDATE_CLOCK_LEN: usize = 4;
/// Length of the count that starts a ListAll or AskForUpdate answer, in bytes (seed 003).
pub const COUNT_LEN: usize = 4;
/// Length of one record of a ListAll answer: 0x01 + 532 = 533 bytes (seed 003).
pub const CLIENT_RECORD_LEN: usize = 1 + CLIENT_UPDATE_LEN;
/// Length of one record of an AskForUpdate answer: 0x01 + 536 = 537 bytes (seed 003).
pub const SERVER_RECORD_LEN: usize = 1 + SERVER_UPDATE_LEN;
/// The longest fixed-length opener frame of either role (a JournalUpdate), command byte
/// included: 545. Frames 10-12 and 16-18 carry their own length ([`MAX_FRAME_LEN`]).
pub const MAX_COMMAND_LEN: usize = 1 + JOURNAL_UPDATE_LEN;
/// The longest status frame: 5 fixed bytes + 255 bytes of detail = 260.
pub const MAX_STATUS_LEN: usize = StatusFrame::FIXED_LEN + StatusFrame::MAX_DETAIL;

/// Hello role byte: the opener is a server, a federated peer (seed 003).
pub const ROLE_SERVER: u8 = 1;
/// Hello role byte: the opener is a client (seed 003).
pub const ROLE_CLIENT: u8 = 2;

/// Command 1, both roles: Update (seed 003).
pub const CMD_UPDATE: u8 = 1;
/// Command 2, client role: ListAll (seed 003).
pub const CMD_LIST_ALL: u8 = 2;
/// Command 2, server role: HeartBeat (seed 003).
pub const CMD_HEARTBEAT: u8 = 2;
/// Command 3, server role: UpdateClock; also the answer to a HeartBeat (seed 003).
pub const CMD_UPDATE_CLOCK: u8 = 3;
/// Command 4, server role: AskForUpdate (seed 003).
pub const CMD_ASK_FOR_UPDATE: u8 = 4;
/// Command 5, both roles: Barrier, answered with status 200 once every earlier command on
/// the connection is durable (this project's; BRIEF.md asks for a cheap barrier).
pub const CMD_BARRIER: u8 = 5;
/// Byte 6, no body, both roles: ask for the server's status (this project's); answered
/// with `[0x06][len u32][len bytes of UTF-8 key=value lines]`.
pub const CMD_STATUS_REQUEST: u8 = 6;
/// Byte 13, server role: one journal line pushed by the opener (this project's; seed 004):
/// `[line u64][clock u32][username 256][contactname 256][phone 20]` (545-byte frame).
pub const CMD_JOURNAL_UPDATE: u8 = 13;
/// Byte 14, server role: `[journal_id u64]`, "what is the last line of my journal you
/// hold?"; answered with `[14][line u64]` (0 when none).
pub const CMD_CURSOR_QUERY: u8 = 14;
/// Byte 15, server role: `[line u64]`: "you now hold my journal up to this line" (sent after
/// a full push or a catch-up, this project's).
pub const CMD_JOURNAL_MARK: u8 = 15;
/// Byte 10, 11, 12, server role: the node-list sync frames (this project's; seed 000),
/// framed and parsed by [`crate::federation::nodelist`].
pub use crate::federation::nodelist::{CMD_NODE_LIST, CMD_NODE_LIST_DIFF, CMD_NODE_LIST_HASH};
/// Byte 16, server role: one directory record pushed by the opener, `[len u16][body]`
/// (this project's; seed 002's client_update; body: [`super::dir`]).
pub const CMD_DIR_RECORD: u8 = 16;
/// Byte 17, server role: `[len u16 = 0]`, "send me your whole directory" (seed 002's
/// client_update_request); answered with DirRecord frames and `[17][len u16 = 4][count u32]`.
pub const CMD_DIR_REQUEST: u8 = 17;
/// Byte 18, server role: a punch request or relayed event forwarded toward the target's home
/// server, `[len u16][body]` (this project's; body: [`super::dir`]).
pub const CMD_FORWARD: u8 = 18;
/// Byte 19, server role: `[journal_id u64][since u64][limit u32]`, "send me at most `limit`
/// lines of your journal after `since`" (seed 004); answered with `[19][count u32]` and
/// `count` JournalUpdate frames (13), or a status frame (400, 404).
pub const CMD_JOURNAL_SINCE: u8 = 19;
/// Byte 20, server role, no body: "challenge me" (this project's); answered with
/// `[20][nonce 32]`. The first step of proving a node key (BRIEF.md, "Trust").
pub const CMD_AUTH_CHALLENGE: u8 = 20;
/// Byte 21, server role: `[len u16][node entry][sig_len u8][signature]`, the proof: the
/// opener's node-list entry and its Ed25519 signature over [`AUTH_CONTEXT`] || nonce ||
/// the entry's canonical bytes; answered with status 200, or 401 and close.
pub const CMD_AUTH_PROOF: u8 = 21;
/// Length of an authentication nonce, in bytes: 32.
pub const NONCE_LEN: usize = 32;
/// The domain-separation prefix of an authentication signature (23 bytes of ASCII).
pub const AUTH_CONTEXT: &[u8] = b"rendezvous node auth v1";
/// The largest `limit` a JournalSince may ask for: 4096 lines (more is refused with 400).
pub const MAX_SINCE_LIMIT: u32 = 4096;
/// Body of a JournalSince: journal id (8) + since (8) + limit (4) = 20 bytes.
pub const JOURNAL_SINCE_LEN: usize = 20;
/// The longest body of a length-prefixed frame (16, 17, 18), in bytes: 4096.
pub const MAX_VAR_BODY: usize = 4096;
/// The longest frame an opener may send, in bytes: a NodeList of 4096 entries of 792 bytes
/// (3,244,037); every other frame is at most [`MAX_VAR_BODY`] + 3.
pub const MAX_FRAME_LEN: usize = crate::federation::nodelist::MAX_FRAME_LEN;
/// Body of a JournalUpdate: line, clock and the contact fields.
pub const JOURNAL_UPDATE_LEN: usize = 8 + SERVER_UPDATE_LEN;
/// Byte 7: the status frame, sent by the accepting side only (this project's).
pub const CMD_STATUS: u8 = 7;

/// HeartBeat health: ok (BRIEF.md).
pub const HEALTH_OK: u8 = 1;
/// HeartBeat health: degraded (BRIEF.md).
pub const HEALTH_DEGRADED: u8 = 2;
/// HeartBeat health: draining (BRIEF.md).
pub const HEALTH_DRAINING: u8 = 3;

/// Status frame `request` byte for an answer to the hello (this project's).
pub const REQUEST_HELLO: u8 = 0;
/// Status frame `request` byte when there is no command byte to name (a store failure
/// while streaming); an unknown command is answered with its own byte (this project's).
pub const REQUEST_UNKNOWN: u8 = 0xFF;

/// Byte ranges of the fixed layouts (smoltcp's `mod field`).
mod field {
    use super::{NAME_LEN, PHONE_LEN};
    use core::ops::Range;

    /// Hello: the role byte.
    pub const ROLE: usize = 0;
    /// Hello: the name.
    pub const HELLO_NAME: Range<usize> = 1..1 + NAME_LEN;

    /// Contact fields (offsets within the 532 bytes): username.
    pub const USERNAME: Range<usize> = 0..NAME_LEN;
    /// Contact fields: contact name.
    pub const CONTACT: Range<usize> = NAME_LEN..2 * NAME_LEN;
    /// Contact fields: phone.
    pub const PHONE: Range<usize> = 2 * NAME_LEN..2 * NAME_LEN + PHONE_LEN;

    /// Frames: the command byte.
    pub const COMMAND: usize = 0;
    /// Server Update / UpdateClock: the clock, right after the command byte.
    pub const CLOCK: Range<usize> = 1..5;
    /// Server Update: the contact fields.
    pub const SERVER_FIELDS: usize = 5;
    /// Client Update: the contact fields.
    pub const CLIENT_FIELDS: usize = 1;
    /// HeartBeat: health byte, then the clock.
    pub const HEALTH: usize = 1;
    /// HeartBeat: the clock.
    pub const HEARTBEAT_CLOCK: Range<usize> = 2..6;

    /// Status frame: status code.
    pub const STATUS: Range<usize> = 1..3;
    /// Status frame: the request byte.
    pub const REQUEST: usize = 3;
    /// Status frame: the detail length.
    pub const DETAIL_LEN: usize = 4;
    /// Status frame: first byte of the detail.
    pub const DETAIL: usize = 5;
}

/// Checks that `text` fits a NUL-padded field of `width` bytes (what `emit_padded` checks,
/// done up front so that an emit writes nothing when it fails).
fn check_text(text: &str, width: usize) -> Result<(), WireError> {
    if text.len() > width {
        return Err(WireError::NameTooLong);
    }
    if text.as_bytes().contains(&0) {
        return Err(WireError::InteriorNul);
    }
    Ok(())
}

/// Writes checked text into a field, padding with NUL.
fn put_text(text: &str, field: &mut [u8]) {
    let b = text.as_bytes();
    field[..b.len()].copy_from_slice(b);
    field[b.len()..].fill(0);
}

/// The role an opener announces in its hello (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Byte 1: a federated server; speaks the server-role commands.
    Server,
    /// Byte 2: a client; speaks the client-role commands.
    Client,
}

impl TryFrom<u8> for Role {
    type Error = WireError;

    /// Reads a role byte.
    ///
    /// # Errors
    /// [`WireError::BadRole`] for any byte other than 1 or 2.
    fn try_from(b: u8) -> Result<Self, WireError> {
        match b {
            ROLE_SERVER => Ok(Role::Server),
            ROLE_CLIENT => Ok(Role::Client),
            _ => Err(WireError::BadRole),
        }
    }
}

impl From<Role> for u8 {
    fn from(r: Role) -> u8 {
        match r {
            Role::Server => ROLE_SERVER,
            Role::Client => ROLE_CLIENT,
        }
    }
}

/// Length of the hello at the start of `buf`: `Ok(None)` until all 257 bytes are there,
/// `Ok(Some(257))` then.
///
/// Reads only the first byte before the hello is complete, so a connection whose first
/// byte is no role can be refused at once.
///
/// # Errors
/// [`WireError::BadRole`] when the first byte is neither 1 nor 2.
pub fn hello_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    match buf.first() {
        None => Ok(None),
        Some(&b) => {
            Role::try_from(b)?;
            Ok((buf.len() >= HELLO_LEN).then_some(HELLO_LEN))
        }
    }
}

/// The hello `[role u8][name 256]` that opens every connection (seed 003): 257 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Who opened the connection.
    pub role: Role,
    /// The opener's name (server alias or client name), at most 256 bytes of UTF-8 with no
    /// NUL; may be empty (the wire does not forbid it).
    pub name: &'a str,
}

impl<'a> Hello<'a> {
    /// Parses a hello of exactly [`HELLO_LEN`] (257) bytes.
    ///
    /// # Errors
    /// [`WireError::Truncated`] under 257 bytes, [`WireError::TrailingData`] over;
    /// [`WireError::BadRole`] for a role byte other than 1 or 2; [`WireError::InteriorNul`]
    /// or [`WireError::BadUtf8`] for a malformed name.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        exact(buf, HELLO_LEN)?;
        let role = Role::try_from(buf[field::ROLE])?;
        let name = parse_padded(&buf[field::HELLO_NAME])?;
        Ok(Hello { role, name })
    }

    /// Bytes [`Self::emit`] writes: always 257.
    pub fn buffer_len(&self) -> usize {
        HELLO_LEN
    }

    /// Writes the hello; returns 257.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] for a name over 256 bytes (never cut);
    /// [`WireError::InteriorNul`] for a name containing NUL; [`WireError::BufferTooSmall`].
    /// Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        check_text(self.name, NAME_LEN)?;
        room(buf, HELLO_LEN)?;
        buf[field::ROLE] = self.role.into();
        put_text(self.name, &mut buf[field::HELLO_NAME]);
        Ok(HELLO_LEN)
    }
}

/// Body length of `command` for an opener of `role`, command byte excluded: `None` for a
/// byte that is no command of that role (seed 003; 5 is this project's Barrier).
///
/// Client role: 1 -> 532, 2 -> 0, 5 -> 0. Server role: 1 -> 536, 2 -> 5, 3 -> 4, 4 -> 0,
/// 5 -> 0. The status frame (7) is never sent by an opener, so it is `None` here.
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
        (Role::Server, CMD_AUTH_CHALLENGE) => Some(0),
        (_, CMD_BARRIER) => Some(0),
        (_, CMD_STATUS_REQUEST) => Some(0),
        _ => None,
    }
}

/// True when `command` is a command of `role`: one of fixed length ([`body_len`]) or, for
/// the server role, a node-list frame (10-12) or a length-prefixed frame (16-18).
pub fn is_command(role: Role, command: u8) -> bool {
    body_len(role, command).is_some()
        || (role == Role::Server
            && matches!(
                command,
                CMD_NODE_LIST_HASH
                    | CMD_NODE_LIST
                    | CMD_NODE_LIST_DIFF
                    | CMD_DIR_RECORD
                    | CMD_DIR_REQUEST
                    | CMD_FORWARD
                    | CMD_AUTH_PROOF
            ))
}

/// Length of the next complete frame at the start of `buf` for a connection of `role`,
/// speaking as the opener: `Ok(None)` when more bytes are needed, `Ok(Some(n))` when the
/// first `n` bytes are one whole frame (command byte included; at most [`MAX_FRAME_LEN`]).
///
/// Fixed-length commands: reads only the command byte. Frames 16-18: `[cmd][len u16]`
/// then `len` bytes. Frames 10-12: [`crate::federation::nodelist::frame_len`]. A frame's
/// length never depends on anything but these length fields.
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
    if role != Role::Server {
        return Err(WireError::UnknownCommand);
    }
    match command {
        CMD_NODE_LIST_HASH | CMD_NODE_LIST | CMD_NODE_LIST_DIFF => {
            crate::federation::nodelist::frame_len(buf)
        }
        CMD_DIR_RECORD | CMD_DIR_REQUEST | CMD_FORWARD | CMD_AUTH_PROOF => {
            let Some(b) = buf.get(1..3) else {
                return Ok(None);
            };
            let len = usize::from(BigEndian::read_u16(b));
            if len > MAX_VAR_BODY {
                return Err(WireError::BadLength);
            }
            Ok((buf.len() >= 3 + len).then_some(3 + len))
        }
        _ => Err(WireError::UnknownCommand),
    }
}

/// The contact fields `[username 256][contactname 256][phone 20]` shared by both roles'
/// Update and by the answer records (seed 003): 532 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContactFields<'a> {
    /// The owner of the contact list, at most 256 bytes of UTF-8.
    pub username: &'a str,
    /// The contact's name, at most 256 bytes of UTF-8.
    pub contact: &'a str,
    /// The phone number, at most 20 bytes of UTF-8.
    pub phone: &'a str,
}

impl<'a> ContactFields<'a> {
    /// Length of the fields on the wire: 532 bytes.
    pub const LEN: usize = CLIENT_UPDATE_LEN;

    /// Parses exactly 532 bytes of contact fields.
    ///
    /// # Errors
    /// [`WireError::Truncated`] under 532 bytes, [`WireError::TrailingData`] over;
    /// [`WireError::InteriorNul`] for a field with a NUL followed by text;
    /// [`WireError::BadUtf8`] for a field that is not UTF-8.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        exact(buf, Self::LEN)?;
        Ok(ContactFields {
            username: parse_padded(&buf[field::USERNAME])?,
            contact: parse_padded(&buf[field::CONTACT])?,
            phone: parse_padded(&buf[field::PHONE])?,
        })
    }

    /// Checks that every field fits its width and holds no NUL.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] for a username or contact over 256 bytes or a phone over
    /// 20; [`WireError::InteriorNul`] for a field containing NUL.
    pub fn check(&self) -> Result<(), WireError> {
        check_text(self.username, NAME_LEN)?;
        check_text(self.contact, NAME_LEN)?;
        check_text(self.phone, PHONE_LEN)
    }

    /// Writes the 532 bytes; returns 532.
    ///
    /// # Errors
    /// Those of [`Self::check`] (text is refused, never cut); [`WireError::BufferTooSmall`].
    /// Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        room(buf, Self::LEN)?;
        self.put(&mut buf[..Self::LEN]);
        Ok(Self::LEN)
    }

    /// Writes checked fields into exactly 532 bytes.
    fn put(&self, buf: &mut [u8]) {
        put_text(self.username, &mut buf[field::USERNAME]);
        put_text(self.contact, &mut buf[field::CONTACT]);
        put_text(self.phone, &mut buf[field::PHONE]);
    }
}

/// A command from an opener of the client role (seed 003; Barrier is this project's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCommand<'a> {
    /// 1 `[username 256][contactname 256][phone 20]`: set one contact (533-byte frame).
    Update(ContactFields<'a>),
    /// 2, no body: list every contact; answered with a count and 533-byte records.
    ListAll,
    /// 5, no body: answered with status 200 once every earlier command is durable.
    Barrier,
    /// 6, no body: the server's status (this project's).
    Status,
}

impl<'a> ClientCommand<'a> {
    /// The command byte: 1, 2 or 5.
    pub fn command_byte(&self) -> u8 {
        match self {
            ClientCommand::Update(_) => CMD_UPDATE,
            ClientCommand::ListAll => CMD_LIST_ALL,
            ClientCommand::Barrier => CMD_BARRIER,
            ClientCommand::Status => CMD_STATUS_REQUEST,
        }
    }

    /// Parses one whole frame, command byte included (as delimited by [`command_len`]).
    ///
    /// # Errors
    /// [`WireError::Truncated`] for an empty or short frame, [`WireError::TrailingData`]
    /// for a long one; [`WireError::UnknownCommand`] for a command byte other than 1, 2 or
    /// 5; the errors of [`ContactFields::parse`] for an Update.
    pub fn parse(frame: &'a [u8]) -> Result<Self, WireError> {
        let (&command, body) = frame.split_first().ok_or(WireError::Truncated)?;
        let len = body_len(Role::Client, command).ok_or(WireError::UnknownCommand)?;
        exact(body, len)?;
        Ok(match command {
            CMD_UPDATE => ClientCommand::Update(ContactFields::parse(body)?),
            CMD_LIST_ALL => ClientCommand::ListAll,
            CMD_STATUS_REQUEST => ClientCommand::Status,
            _ => ClientCommand::Barrier,
        })
    }

    /// Bytes [`Self::emit`] writes: 533 for an Update, 1 otherwise.
    pub fn buffer_len(&self) -> usize {
        1 + body_len(Role::Client, self.command_byte()).unwrap_or(0)
    }

    /// Writes the frame, command byte included; returns its length.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] or [`WireError::InteriorNul`] for contact fields that do
    /// not fit (never cut); [`WireError::BufferTooSmall`]. Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.buffer_len();
        if let ClientCommand::Update(f) = self {
            f.check()?;
        }
        room(buf, n)?;
        buf[field::COMMAND] = self.command_byte();
        if let ClientCommand::Update(f) = self {
            f.put(&mut buf[field::CLIENT_FIELDS..n]);
        }
        Ok(n)
    }
}

/// A command from an opener of the server role, a federated peer (seed 003; Barrier is
/// this project's).
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
    /// 2 degraded, 3 draining (BRIEF.md); other values are the core's to judge.
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
    /// 6, no body: the server's status (this project's).
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
    /// 10, 11 or 12: a node-list sync frame, whole (command byte included), to be read by
    /// [`crate::federation::nodelist::NodeListFrame::parse`].
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
}

impl<'a> ServerCommand<'a> {
    /// The command byte: 1 to 5.
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
        }
    }

    /// Parses one whole frame, command byte included (as delimited by [`command_len`]).
    ///
    /// # Errors
    /// [`WireError::Truncated`] for an empty or short frame, [`WireError::TrailingData`]
    /// for a long one; [`WireError::UnknownCommand`] for a command byte outside 1-5; the
    /// errors of [`ContactFields::parse`] for an Update.
    pub fn parse(frame: &'a [u8]) -> Result<Self, WireError> {
        let (&command, body) = frame.split_first().ok_or(WireError::Truncated)?;
        match command {
            CMD_NODE_LIST_HASH | CMD_NODE_LIST | CMD_NODE_LIST_DIFF => {
                // Framing only; the entries are read by the node list's own parser.
                return match crate::federation::nodelist::frame_len(frame)? {
                    None => Err(WireError::Truncated),
                    Some(n) if n < frame.len() => Err(WireError::TrailingData),
                    Some(_) => Ok(ServerCommand::NodeList(frame)),
                };
            }
            CMD_DIR_RECORD | CMD_DIR_REQUEST | CMD_FORWARD | CMD_AUTH_PROOF => {
                let b = body.get(..2).ok_or(WireError::Truncated)?;
                let len = usize::from(BigEndian::read_u16(b));
                if len > MAX_VAR_BODY {
                    return Err(WireError::BadLength);
                }
                exact(&body[2..], len)?;
                let rest = &body[2..];
                return match command {
                    CMD_DIR_RECORD => Ok(ServerCommand::DirRecord(rest)),
                    CMD_FORWARD => Ok(ServerCommand::Forward(rest)),
                    CMD_AUTH_PROOF => Ok(ServerCommand::AuthProof(rest)),
                    _ if len == 0 => Ok(ServerCommand::DirRequest),
                    _ => Err(WireError::BadLength),
                };
            }
            _ => {}
        }
        let len = body_len(Role::Server, command).ok_or(WireError::UnknownCommand)?;
        exact(body, len)?;
        Ok(match command {
            CMD_UPDATE => ServerCommand::Update {
                clock: BigEndian::read_u32(&frame[field::CLOCK]),
                fields: ContactFields::parse(&frame[field::SERVER_FIELDS..])?,
            },
            CMD_HEARTBEAT => ServerCommand::HeartBeat {
                health: frame[field::HEALTH],
                clock: BigEndian::read_u32(&frame[field::HEARTBEAT_CLOCK]),
            },
            CMD_UPDATE_CLOCK => {
                ServerCommand::UpdateClock(BigEndian::read_u32(&frame[field::CLOCK]))
            }
            CMD_ASK_FOR_UPDATE => ServerCommand::AskForUpdate,
            CMD_STATUS_REQUEST => ServerCommand::Status,
            CMD_JOURNAL_UPDATE => ServerCommand::JournalUpdate {
                line: BigEndian::read_u64(&frame[1..9]),
                clock: BigEndian::read_u32(&frame[9..13]),
                fields: ContactFields::parse(&frame[13..])?,
            },
            CMD_CURSOR_QUERY => ServerCommand::CursorQuery {
                journal_id: BigEndian::read_u64(&frame[1..9]),
            },
            CMD_JOURNAL_MARK => ServerCommand::JournalMark {
                line: BigEndian::read_u64(&frame[1..9]),
            },
            CMD_JOURNAL_SINCE => ServerCommand::JournalSince {
                journal_id: BigEndian::read_u64(&frame[1..9]),
                since: BigEndian::read_u64(&frame[9..17]),
                limit: BigEndian::read_u32(&frame[17..21]),
            },
            CMD_AUTH_CHALLENGE => ServerCommand::AuthChallenge,
            _ => ServerCommand::Barrier,
        })
    }

    /// Bytes [`Self::emit`] writes: the fixed length of the command, the node-list frame's
    /// length, or 3 + the body for frames 16-18.
    pub fn buffer_len(&self) -> usize {
        match self {
            ServerCommand::NodeList(f) => f.len(),
            ServerCommand::DirRecord(b)
            | ServerCommand::Forward(b)
            | ServerCommand::AuthProof(b) => 3 + b.len(),
            ServerCommand::DirRequest => 3,
            _ => 1 + body_len(Role::Server, self.command_byte()).unwrap_or(0),
        }
    }

    /// Writes the frame, command byte included; returns its length.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] or [`WireError::InteriorNul`] for contact fields that do
    /// not fit (never cut); [`WireError::BufferTooSmall`]. Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.buffer_len();
        if let ServerCommand::Update { fields, .. } | ServerCommand::JournalUpdate { fields, .. } =
            self
        {
            fields.check()?;
        }
        if let ServerCommand::DirRecord(b)
        | ServerCommand::Forward(b)
        | ServerCommand::AuthProof(b) = self
        {
            if b.len() > MAX_VAR_BODY {
                return Err(WireError::BadLength);
            }
        }
        if let ServerCommand::NodeList(f) = self {
            if ServerCommand::parse(f) != Ok(*self) {
                return Err(WireError::BadLength);
            }
        }
        room(buf, n)?;
        buf[field::COMMAND] = self.command_byte();
        match self {
            ServerCommand::Update { clock, fields } => {
                BigEndian::write_u32(&mut buf[field::CLOCK], *clock);
                fields.put(&mut buf[field::SERVER_FIELDS..n]);
            }
            ServerCommand::HeartBeat { health, clock } => {
                buf[field::HEALTH] = *health;
                BigEndian::write_u32(&mut buf[field::HEARTBEAT_CLOCK], *clock);
            }
            ServerCommand::UpdateClock(clock) => {
                BigEndian::write_u32(&mut buf[field::CLOCK], *clock);
            }
            ServerCommand::AskForUpdate
            | ServerCommand::Barrier
            | ServerCommand::Status
            | ServerCommand::AuthChallenge => {}
            ServerCommand::JournalUpdate {
                line,
                clock,
                fields,
            } => {
                BigEndian::write_u64(&mut buf[1..9], *line);
                BigEndian::write_u32(&mut buf[9..13], *clock);
                fields.put(&mut buf[13..n]);
            }
            ServerCommand::CursorQuery { journal_id } => {
                BigEndian::write_u64(&mut buf[1..9], *journal_id);
            }
            ServerCommand::JournalMark { line } => BigEndian::write_u64(&mut buf[1..9], *line),
            ServerCommand::NodeList(f) => buf[..n].copy_from_slice(f),
            ServerCommand::DirRecord(b)
            | ServerCommand::Forward(b)
            | ServerCommand::AuthProof(b) => {
                BigEndian::write_u16(&mut buf[1..3], b.len() as u16);
                buf[3..n].copy_from_slice(b);
            }
            ServerCommand::DirRequest => BigEndian::write_u16(&mut buf[1..3], 0),
            ServerCommand::JournalSince {
                journal_id,
                since,
                limit,
            } => {
                BigEndian::write_u64(&mut buf[1..9], *journal_id);
                BigEndian::write_u64(&mut buf[9..17], *since);
                BigEndian::write_u32(&mut buf[17..21], *limit);
            }
        }
        Ok(n)
    }
}

/// The status frame `[0x07][status u16][request u8][detail_len u8][detail]`, sent by the
/// accepting side only (this project's; status codes as the UDP plane's, BRIEF.md): 200 OK
/// (a Barrier), 400 malformed, 403 not allowed, 408 hello timeout, 409, 413, 503 (e.g. the
/// Lamport clock is exhausted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFrame<'a> {
    /// HTTP-like status code; any value parses.
    pub status: u16,
    /// The command byte answered: [`REQUEST_HELLO`] (0) for the hello,
    /// [`REQUEST_UNKNOWN`] (0xFF) when it could not be read.
    pub request: u8,
    /// Human-readable detail, UTF-8, at most 255 bytes on the wire.
    pub detail: &'a str,
}

impl<'a> StatusFrame<'a> {
    /// Fixed bytes before the detail, command byte included: 5.
    pub const FIXED_LEN: usize = 5;
    /// Longest detail on the wire, in bytes: 255.
    pub const MAX_DETAIL: usize = 255;

    /// Length of the status frame at the start of `buf`, for a reader of answers:
    /// `Ok(None)` when more bytes are needed, `Ok(Some(n))` (5 to 260) when the first `n`
    /// bytes are the whole frame. Reads the first byte, then the detail length once the 5
    /// fixed bytes are there.
    ///
    /// # Errors
    /// [`WireError::UnknownCommand`] when the first byte is not 7.
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
        match buf.first() {
            None => return Ok(None),
            Some(&CMD_STATUS) => {}
            Some(_) => return Err(WireError::UnknownCommand),
        }
        let Some(&detail_len) = buf.get(field::DETAIL_LEN) else {
            return Ok(None);
        };
        let n = Self::FIXED_LEN + usize::from(detail_len);
        Ok((buf.len() >= n).then_some(n))
    }

    /// Parses one whole status frame, 0x07 byte included.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when the frame ends before its detail does,
    /// [`WireError::TrailingData`] when bytes follow it; [`WireError::UnknownCommand`] when
    /// the first byte is not 7; [`WireError::BadUtf8`] for a detail that is not UTF-8.
    pub fn parse(frame: &'a [u8]) -> Result<Self, WireError> {
        match frame.first() {
            None => return Err(WireError::Truncated),
            Some(&CMD_STATUS) => {}
            Some(_) => return Err(WireError::UnknownCommand),
        }
        if frame.len() < Self::FIXED_LEN {
            return Err(WireError::Truncated);
        }
        let n = Self::FIXED_LEN + usize::from(frame[field::DETAIL_LEN]);
        exact(frame, n)?;
        let detail =
            core::str::from_utf8(&frame[field::DETAIL..n]).map_err(|_| WireError::BadUtf8)?;
        Ok(StatusFrame {
            status: BigEndian::read_u16(&frame[field::STATUS]),
            request: frame[field::REQUEST],
            detail,
        })
    }

    /// Bytes [`Self::emit`] writes: 5 + the detail cut to 255 bytes at a char boundary.
    pub fn buffer_len(&self) -> usize {
        Self::FIXED_LEN + cut_utf8(self.detail, Self::MAX_DETAIL).len()
    }

    /// Writes the frame, cutting the detail to at most 255 bytes at a character boundary
    /// (the detail is advisory text, so it is cut where names are refused); returns its
    /// length (5 to 260).
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] when `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let detail = cut_utf8(self.detail, Self::MAX_DETAIL);
        let n = Self::FIXED_LEN + detail.len();
        room(buf, n)?;
        buf[field::COMMAND] = CMD_STATUS;
        BigEndian::write_u16(&mut buf[field::STATUS], self.status);
        buf[field::REQUEST] = self.request;
        buf[field::DETAIL_LEN] = detail.len() as u8; // <= 255 by cut_utf8
        buf[field::DETAIL..n].copy_from_slice(detail.as_bytes());
        Ok(n)
    }
}

/// Writes the `[count u32]` that starts a ListAll or AskForUpdate answer; returns 4
/// (seed 003).
///
/// # Errors
/// [`WireError::BufferTooSmall`].
pub fn emit_count(count: u32, buf: &mut [u8]) -> Result<usize, WireError> {
    room(buf, COUNT_LEN)?;
    BigEndian::write_u32(&mut buf[..COUNT_LEN], count);
    Ok(COUNT_LEN)
}

/// Reads the `[count u32]` that starts a ListAll or AskForUpdate answer: exactly 4 bytes
/// (seed 003).
///
/// # Errors
/// [`WireError::Truncated`] under 4 bytes, [`WireError::TrailingData`] over.
pub fn parse_count(buf: &[u8]) -> Result<u32, WireError> {
    exact(buf, COUNT_LEN)?;
    Ok(BigEndian::read_u32(buf))
}

/// Writes one ListAll record, `0x01` + the 532-byte contact fields (a complete client
/// Update); returns 533 (seed 003).
///
/// # Errors
/// Those of [`ContactFields::emit`]. Nothing is written on error.
pub fn emit_client_record(fields: &ContactFields<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    ClientCommand::Update(*fields).emit(buf)
}

/// Reads one ListAll record of exactly 533 bytes: `0x01` + the contact fields (seed 003).
///
/// # Errors
/// [`WireError::UnknownCommand`] when the first byte is not 1; [`WireError::Truncated`]
/// or [`WireError::TrailingData`] for any length but 533; the errors of
/// [`ContactFields::parse`].
pub fn parse_client_record(rec: &[u8]) -> Result<ContactFields<'_>, WireError> {
    match rec.first() {
        None => Err(WireError::Truncated),
        Some(&CMD_UPDATE) => ContactFields::parse(&rec[field::CLIENT_FIELDS..]),
        Some(_) => Err(WireError::UnknownCommand),
    }
}

/// Writes one AskForUpdate record, `0x01 [clock u32]` + the 532-byte contact fields (a
/// complete server Update); returns 537 (seed 003).
///
/// # Errors
/// Those of [`ContactFields::emit`]. Nothing is written on error.
pub fn emit_server_record(
    clock: u32,
    fields: &ContactFields<'_>,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    ServerCommand::Update {
        clock,
        fields: *fields,
    }
    .emit(buf)
}

/// Reads one AskForUpdate record of exactly 537 bytes: `0x01 [clock u32]` + the contact
/// fields (seed 003). Returns the clock and the fields.
///
/// # Errors
/// [`WireError::UnknownCommand`] when the first byte is not 1; [`WireError::Truncated`]
/// or [`WireError::TrailingData`] for any length but 537; the errors of
/// [`ContactFields::parse`].
pub fn parse_server_record(rec: &[u8]) -> Result<(u32, ContactFields<'_>), WireError> {
    match rec.first() {
        None => Err(WireError::Truncated),
        Some(&CMD_UPDATE) => match ServerCommand::parse(rec)? {
            ServerCommand::Update { clock, fields } => Ok((clock, fields)),
            _ => Err(WireError::UnknownCommand),
        },
        Some(_) => Err(WireError::UnknownCommand),
    }
}

/// Writes the UpdateClock `0x03 [clock u32]` that answers a HeartBeat; returns 5
/// (seed 003).
///
/// # Errors
/// [`WireError::BufferTooSmall`].
pub fn emit_update_clock(clock: u32, buf: &mut [u8]) -> Result<usize, WireError> {
    ServerCommand::UpdateClock(clock).emit(buf)
}

/// Reads an UpdateClock frame `0x03 [clock u32]` of exactly 5 bytes, the answer to a
/// HeartBeat (seed 003).
///
/// # Errors
/// [`WireError::UnknownCommand`] when the first byte is not 3; [`WireError::Truncated`]
/// or [`WireError::TrailingData`] for any length but 5.
pub fn parse_update_clock(frame: &[u8]) -> Result<u32, WireError> {
    match frame.first() {
        None => Err(WireError::Truncated),
        Some(&CMD_UPDATE_CLOCK) => {
            exact(frame, 1 + UPDATE_CLOCK_LEN)?;
            Ok(BigEndian::read_u32(&frame[field::CLOCK]))
        }
        Some(_) => Err(WireError::UnknownCommand),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_fixture_both_ways() {
        let bytes = [0x02, 0x01, 0x00, 0x00, 0x00, 0x0b];
        let hb = ServerCommand::HeartBeat {
            health: HEALTH_OK,
            clock: 11,
        };
        assert_eq!(command_len(Role::Server, &bytes), Ok(Some(6)));
        assert_eq!(ServerCommand::parse(&bytes), Ok(hb));
        let mut out = [0u8; 6];
        assert_eq!(hb.emit(&mut out), Ok(6));
        assert_eq!(out, bytes);
    }

    #[test]
    fn status_fixture_both_ways() {
        let bytes = [0x07, 0x00, 0xc8, 0x05, 0x02, b'o', b'k'];
        let st = StatusFrame {
            status: 200,
            request: CMD_BARRIER,
            detail: "ok",
        };
        assert_eq!(StatusFrame::frame_len(&bytes), Ok(Some(7)));
        assert_eq!(StatusFrame::parse(&bytes), Ok(st));
        let mut out = [0u8; 7];
        assert_eq!(st.emit(&mut out), Ok(7));
        assert_eq!(out, bytes);
    }

    #[test]
    fn layout_sizes() {
        assert_eq!(HELLO_LEN, 257);
        assert_eq!(CLIENT_UPDATE_LEN, 532);
        assert_eq!(SERVER_UPDATE_LEN, 536);
        assert_eq!(CLIENT_RECORD_LEN, 533);
        assert_eq!(SERVER_RECORD_LEN, 537);
        assert_eq!(MAX_STATUS_LEN, 260);
        assert_eq!(field::PHONE.end, CLIENT_UPDATE_LEN);
    }

    #[test]
    fn unknown_commands_per_role() {
        for b in [0u8, 3, 4, CMD_STATUS, 8, 0xff] {
            assert_eq!(
                command_len(Role::Client, &[b]),
                Err(WireError::UnknownCommand)
            );
        }
        for b in [0u8, CMD_STATUS, 8, 0xff] {
            assert_eq!(
                command_len(Role::Server, &[b]),
                Err(WireError::UnknownCommand)
            );
        }
        assert_eq!(command_len(Role::Client, &[]), Ok(None));
        assert_eq!(hello_len(&[3]), Err(WireError::BadRole));
        assert_eq!(hello_len(&[1]), Ok(None));
    }
}
