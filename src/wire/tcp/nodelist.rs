//! The node-list codec (docs/PROTOCOL.md §8.15): the canonical encoding of one entry and
//! of a list, the order on entries that decides every conflict ([`NodeEntry`]'s `Ord`), and
//! the four server-role frames 10-12 and 24 that carry the sync ([`NodeListFrame`],
//! [`frame_len`]).
//!
//! What it owns: bytes and their bounds. What it never does: hold or merge a list, hash it,
//! or decide what to answer (the federation layer's node list does, with this codec).
//!
//! ```text
//! one entry (27 + alias_len + location_len + key_len bytes: 28 to 792):
//! +--------+---------+-----------+-------+--------------+----------+---------+-----+
//! | uid    | version | alias_len | alias | location_len | location | key_len | key |
//! | 16     | u64     | u8        | UTF-8 | u8           | UTF-8    | u8 1-255| raw |
//! +--------+---------+-----------+-------+--------------+----------+---------+-----+
//!   0..16    16..24    24          25..    then           then       then      then
//!
//! the list, its canonical form (4 + the entries' lengths):
//! +-------------+---------+---------+-----+
//! | count u32   | entry 0 | entry 1 | ... |   entries sorted by uid, bytewise ascending,
//! +-------------+---------+---------+-----+   one per uid, count <= 4096
//!
//! frames (server role):
//! 10 NodeListHash  [0x0a][hash_len u8 = 64][hash 64]     66 bytes
//! 11 NodeList      [0x0b][count u32][entry]*count       5 + entries; count <= 4096
//! 12 NodeListDiff  [0x0c][count u32][entry]*count       5 + entries; count <= 4096
//! 24 NodeSync      [0x18][count u32][entry]*count[want u16][id 32]*want
//!                                                       7 + entries + 32 x want;
//!                                                       count, want <= 4096
//!
//! opener A                                      acceptor B
//!   10 NodeListHash (A's)          ->
//!                                  <-   10 NodeListHash (B's)        the answer to 10
//!   only if the two hashes differ, a reconciliation of the lists (frame 22, set 3),
//!   then:
//!   24 NodeSync (what B lacks, and  ->          B merges the entries
//!      the ids of what A lacks)
//!                                  <-   12 NodeListDiff              the answer to 24:
//!                                                                    the entries wanted
//!   A merges the diff; nothing answers a diff. A whole NodeList (11) is answered with
//!   the diff against it (servers of earlier versions send it instead of 22 and 24).
//! ```
//!
//! An entry's id (what the reconciliation compares and a NodeSync asks for) is SHA-256 of
//! its canonical bytes: `crate::federation::reconcile::node_record_id`.
//!
//! `alias` is the server's name (at most 255 bytes, may be empty; not NUL-padded: the
//! length says where it ends). `location` is where it listens, `HOST:PORT` as text (at most
//! 255 bytes; its syntax is checked by whoever dials it, not here). `key` is the node's
//! public key, raw (32 bytes for Ed25519; 1 to 255 accepted). `version` is set by the node
//! itself and increases each time it changes its own entry.
//!
//! A received list or diff may be in any order and may hold two entries for one uid: it
//! parses ([`NodeListFrame::has_duplicate_uids`] lets a caller refuse it with 400).

use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};
use core::cmp::Ordering;

/// A node's unique id: 16 opaque bytes (a UUID's bytes, for instance).
pub type Uid = [u8; UID_LEN];

/// Length of a uid, in bytes: 16.
pub const UID_LEN: usize = 16;
/// Length of the hash of a node list (SHA-512), in bytes: 64.
pub const HASH_LEN: usize = 64;
/// The most entries a node list holds, and a NodeList or NodeListDiff frame carries: 4096.
pub const MAX_ENTRIES: usize = 4096;
/// The longest alias or location, in bytes of UTF-8: 255 (a u8 length prefix).
pub const MAX_TEXT_LEN: usize = 255;
/// The longest public key, in bytes: 255 (a u8 length prefix; Ed25519 keys are 32).
pub const MAX_KEY_LEN: usize = 255;
/// Bytes of an entry besides its alias, location and key: uid (16) + version (8) + three
/// length bytes (3) = 27.
pub const ENTRY_FIXED_LEN: usize = UID_LEN + 8 + 3;
/// The shortest encoded entry: 27 fixed bytes + a 1-byte key = 28.
pub const MIN_ENTRY_LEN: usize = ENTRY_FIXED_LEN + 1;
/// The longest encoded entry: 27 + 255 + 255 + 255 = 792.
pub const MAX_ENTRY_LEN: usize = ENTRY_FIXED_LEN + 2 * MAX_TEXT_LEN + MAX_KEY_LEN;
/// Length of the entry count that starts a list, in bytes: 4.
pub const COUNT_LEN: usize = 4;

/// Server-role command 10: NodeListHash `[hash_len u8 = 64][hash 64]`
/// (docs/PROTOCOL.md §8.15).
pub const CMD_NODE_LIST_HASH: u8 = 10;
/// Server-role command 11: NodeList `[count u32][entries]` (docs/PROTOCOL.md §8.15).
pub const CMD_NODE_LIST: u8 = 11;
/// Server-role command 12: NodeListDiff `[count u32][entries]`, the answer to a NodeList
/// (docs/PROTOCOL.md §8.15).
pub const CMD_NODE_LIST_DIFF: u8 = 12;
/// Length of a NodeListHash frame, command byte and length byte included: 66.
pub const HASH_FRAME_LEN: usize = 2 + HASH_LEN;
/// Server-role command 24: NodeSync `[count u32][entries][want u16][ids 32 x want]`,
/// after a reconciliation of the node lists: the entries the acceptor lacks and the ids of
/// those the opener lacks; answered with a NodeListDiff of the entries wanted
/// (docs/PROTOCOL.md §8.15).
pub const CMD_NODE_SYNC: u8 = 24;
/// Length of an entry's id, as a NodeSync asks for it, in bytes: 32 (SHA-256).
pub const ENTRY_ID_LEN: usize = 32;
/// Length of a NodeSync's count of ids wanted, in bytes: 2.
pub const WANT_LEN: usize = 2;
/// The longest node-list frame, a NodeSync of 4096 entries of 792 bytes and 4096 ids:
/// 1 + 4 + 4096 x 792 + 2 + 4096 x 32 = 3,375,111 bytes (a NodeList or NodeListDiff is at
/// most 3,244,037).
pub const MAX_FRAME_LEN: usize =
    1 + COUNT_LEN + MAX_ENTRIES * MAX_ENTRY_LEN + WANT_LEN + MAX_ENTRIES * ENTRY_ID_LEN;

/// An entry's id: SHA-256 of its canonical bytes (32 bytes).
pub type EntryId = [u8; ENTRY_ID_LEN];

/// Byte offsets within an encoded entry (smoltcp's `mod field`).
mod field {
    use core::ops::Range;

    /// The uid.
    pub const UID: Range<usize> = 0..16;
    /// The version.
    pub const VERSION: Range<usize> = 16..24;
    /// The alias length; the alias follows.
    pub const ALIAS_LEN: usize = 24;
}

/// One known server: who it is (uid, public key), what it is called (alias), where it
/// listens (location), and which edition of its own entry this is (version).
///
/// Always valid: built by [`NodeEntry::new`] or by parsing, both of which check the
/// bounds. Entries compare (`Ord`) exactly as their encodings compare bytewise: by uid,
/// then version, then alias length, alias, location length, location, key length, key.
/// That order decides which of two entries with one uid survives (the greater).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeEntry {
    uid: Uid,
    version: u64,
    alias: String,
    location: String,
    public_key: Vec<u8>,
}

impl NodeEntry {
    /// Builds an entry, checking every bound of the encoding.
    ///
    /// `alias`: the server's name, at most 255 bytes of UTF-8 (may be empty). `location`:
    /// `HOST:PORT` as text, at most 255 bytes (syntax not checked here). `public_key`: raw,
    /// 1 to 255 bytes (32 for Ed25519). `version`: set by the node itself, higher for each
    /// change of its own entry.
    ///
    /// # Errors
    /// [`WireError::NameTooLong`] for an alias or location over 255 bytes (refused, never
    /// cut); [`WireError::BadLength`] for an empty key or a key over 255 bytes.
    pub fn new(
        uid: Uid,
        version: u64,
        alias: impl Into<String>,
        location: impl Into<String>,
        public_key: impl Into<Vec<u8>>,
    ) -> Result<Self, WireError> {
        let (alias, location, public_key) = (alias.into(), location.into(), public_key.into());
        if alias.len() > MAX_TEXT_LEN || location.len() > MAX_TEXT_LEN {
            return Err(WireError::NameTooLong);
        }
        if public_key.is_empty() || public_key.len() > MAX_KEY_LEN {
            return Err(WireError::BadLength);
        }
        Ok(NodeEntry {
            uid,
            version,
            alias,
            location,
            public_key,
        })
    }

    /// The node's uid (16 bytes).
    pub fn uid(&self) -> &Uid {
        &self.uid
    }

    /// The edition of this entry, set by the node itself; higher wins.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The node's alias (at most 255 bytes).
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// Where the node listens, `HOST:PORT` as sent (at most 255 bytes).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The node's raw public key (1 to 255 bytes; 32 for Ed25519).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// True when `self` replaces `other` under the rule for one uid: same uid, and greater
    /// (higher version, then bytewise larger encoding). False for an equal entry.
    pub fn supersedes(&self, other: &NodeEntry) -> bool {
        self.uid == other.uid && self > other
    }

    /// Length of the encoded entry, in bytes: 27 + alias + location + key (28 to 792).
    pub fn encoded_len(&self) -> usize {
        ENTRY_FIXED_LEN + self.alias.len() + self.location.len() + self.public_key.len()
    }

    /// Appends the encoded entry (the layout in the module header) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.uid);
        out.extend_from_slice(&self.version.to_be_bytes());
        for blob in self.blobs() {
            // Bounds checked at construction: every blob is at most 255 bytes.
            out.push(blob.len() as u8);
            out.extend_from_slice(blob);
        }
    }

    /// The encoded entry as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Writes the encoded entry at the start of `buf`; returns its length.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] when `buf` is shorter than [`Self::encoded_len`];
    /// nothing is written then.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.encoded_len();
        if buf.len() < n {
            return Err(WireError::BufferTooSmall);
        }
        buf[field::UID].copy_from_slice(&self.uid);
        BigEndian::write_u64(&mut buf[field::VERSION], self.version);
        let mut p = field::ALIAS_LEN;
        for blob in self.blobs() {
            buf[p] = blob.len() as u8;
            buf[p + 1..p + 1 + blob.len()].copy_from_slice(blob);
            p += 1 + blob.len();
        }
        Ok(n)
    }

    /// Parses exactly one encoded entry.
    ///
    /// # Errors
    /// Those of [`Self::parse_prefix`]; [`WireError::TrailingData`] when bytes follow it.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let (entry, n) = Self::parse_prefix(buf)?;
        if n != buf.len() {
            return Err(WireError::TrailingData);
        }
        Ok(entry)
    }

    /// Parses the encoded entry at the start of `buf`; returns it and its length.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when `buf` ends inside the entry; [`WireError::BadLength`]
    /// for a key length of 0; [`WireError::BadUtf8`] for an alias or location that is not
    /// UTF-8. A field's length is checked before its content, so a valid entry cut short is
    /// always `Truncated`.
    pub fn parse_prefix(buf: &[u8]) -> Result<(Self, usize), WireError> {
        let mut p = field::ALIAS_LEN;
        if buf.len() < p {
            return Err(WireError::Truncated);
        }
        let alias = take_blob(buf, &mut p)?;
        let location = take_blob(buf, &mut p)?;
        let key_len = *buf.get(p).ok_or(WireError::Truncated)?;
        if key_len == 0 {
            return Err(WireError::BadLength);
        }
        let key = take_blob(buf, &mut p)?;
        let text = |b: &[u8]| core::str::from_utf8(b).map(str::to_owned);
        let mut uid = [0u8; UID_LEN];
        uid.copy_from_slice(&buf[field::UID]);
        let entry = NodeEntry {
            uid,
            version: BigEndian::read_u64(&buf[field::VERSION]),
            alias: text(alias).map_err(|_| WireError::BadUtf8)?,
            location: text(location).map_err(|_| WireError::BadUtf8)?,
            public_key: key.to_vec(),
        };
        Ok((entry, p))
    }

    /// The three length-prefixed fields, in wire order.
    fn blobs(&self) -> [&[u8]; 3] {
        [
            self.alias.as_bytes(),
            self.location.as_bytes(),
            &self.public_key,
        ]
    }
}

/// Reads `[len u8][len bytes]` at `*p`, advancing `*p` past it.
fn take_blob<'a>(buf: &'a [u8], p: &mut usize) -> Result<&'a [u8], WireError> {
    let len = usize::from(*buf.get(*p).ok_or(WireError::Truncated)?);
    let blob = buf.get(*p + 1..*p + 1 + len).ok_or(WireError::Truncated)?;
    *p += 1 + len;
    Ok(blob)
}

impl Ord for NodeEntry {
    /// The bytewise order of the encodings, computed field by field without encoding:
    /// uid, version (big-endian bytes order as the number does), then each length-prefixed
    /// field as its length and then its bytes.
    fn cmp(&self, other: &Self) -> Ordering {
        self.uid
            .cmp(&other.uid)
            .then_with(|| self.version.cmp(&other.version))
            .then_with(|| {
                let (a, b) = (self.blobs(), other.blobs());
                a.iter()
                    .zip(b.iter())
                    .map(|(x, y)| x.len().cmp(&y.len()).then_with(|| x.cmp(y)))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            })
    }
}

impl PartialOrd for NodeEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// True when two of `entries` share a uid (a list a caller may refuse with 400; merging
/// it would keep the greater of the two).
pub fn has_duplicate_uids(entries: &[NodeEntry]) -> bool {
    let mut uids: Vec<&Uid> = entries.iter().map(NodeEntry::uid).collect();
    uids.sort_unstable();
    uids.windows(2).any(|w| w[0] == w[1])
}

/// One frame of the node list sync (server role, commands 10-12 and 24; docs/PROTOCOL.md
/// §8.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeListFrame {
    /// 10 `[hash_len u8][hash 64]`: the sender's list hash; sent by the opener, and
    /// answered by the acceptor with its own (66-byte frame; `hash_len` must be 64).
    Hash([u8; HASH_LEN]),
    /// 11 `[count u32][entries]`: the opener's whole list; answered with a
    /// [`NodeListFrame::Diff`].
    List(Vec<NodeEntry>),
    /// 12 `[count u32][entries]`: the acceptor's answer to a list, the entries the opener
    /// lacks or holds in a losing form, or to a sync, the entries wanted; never answered.
    Diff(Vec<NodeEntry>),
    /// 24 `[count u32][entries][want u16][ids 32 x want]`: the opener's entries the
    /// acceptor lacks and the ids of the acceptor's entries the opener lacks, as a
    /// reconciliation found them; answered with a [`NodeListDiff`](NodeListFrame::Diff) of
    /// the entries wanted.
    Sync {
        /// Entries the acceptor lacks (at most 4096).
        entries: Vec<NodeEntry>,
        /// Ids of the entries the opener lacks (at most 4096).
        want: Vec<EntryId>,
    },
}

impl NodeListFrame {
    /// The command byte: 10, 11, 12 or 24.
    pub fn command_byte(&self) -> u8 {
        match self {
            NodeListFrame::Hash(_) => CMD_NODE_LIST_HASH,
            NodeListFrame::List(_) => CMD_NODE_LIST,
            NodeListFrame::Diff(_) => CMD_NODE_LIST_DIFF,
            NodeListFrame::Sync { .. } => CMD_NODE_SYNC,
        }
    }

    /// The entries a List, Diff or Sync carries, as sent (empty for a Hash).
    pub fn entries(&self) -> &[NodeEntry] {
        match self {
            NodeListFrame::Hash(_) => &[],
            NodeListFrame::List(e) | NodeListFrame::Diff(e) => e,
            NodeListFrame::Sync { entries, .. } => entries,
        }
    }

    /// True when the List, Diff or Sync carries two entries for one uid: it parsed, and merging
    /// it keeps the greater, but a caller may refuse it with 400 instead.
    pub fn has_duplicate_uids(&self) -> bool {
        has_duplicate_uids(self.entries())
    }

    /// Parses one whole frame, command byte included (as delimited by [`frame_len`]).
    /// Entries may come in any order and share uids.
    ///
    /// # Errors
    /// [`WireError::Truncated`] for an empty or short frame (a hash under 64 bytes, a list
    /// ending inside its count or an entry, a sync inside its ids), [`WireError::
    /// TrailingData`] for bytes after the hash, the last entry or the last id;
    /// [`WireError::UnknownCommand`] for a first byte other than 10, 11, 12 or 24;
    /// [`WireError::BadLength`] for a count or want over 4096 (checked before any entry
    /// or id) or an entry whose key length is 0; [`WireError::BadUtf8`] for an alias or
    /// location that is not UTF-8.
    pub fn parse(frame: &[u8]) -> Result<Self, WireError> {
        let (&command, body) = frame.split_first().ok_or(WireError::Truncated)?;
        match command {
            CMD_NODE_LIST_HASH => {
                let (&len, hash) = body.split_first().ok_or(WireError::Truncated)?;
                if usize::from(len) != HASH_LEN {
                    return Err(WireError::BadLength);
                }
                match hash.len().cmp(&HASH_LEN) {
                    Ordering::Less => Err(WireError::Truncated),
                    Ordering::Greater => Err(WireError::TrailingData),
                    Ordering::Equal => {
                        let mut h = [0u8; HASH_LEN];
                        h.copy_from_slice(hash);
                        Ok(NodeListFrame::Hash(h))
                    }
                }
            }
            CMD_NODE_LIST | CMD_NODE_LIST_DIFF => {
                let (entries, rest) = parse_entries(body)?;
                if !rest.is_empty() {
                    return Err(WireError::TrailingData);
                }
                Ok(if command == CMD_NODE_LIST {
                    NodeListFrame::List(entries)
                } else {
                    NodeListFrame::Diff(entries)
                })
            }
            CMD_NODE_SYNC => {
                // An oversized want count wins over a bad entry, as in [`frame_len`]; the
                // framing is scanned again only when an entry was bad.
                let (entries, rest) = parse_entries(body).map_err(|e| {
                    match entries_end(frame) {
                        Ok(Some(p)) => read_want(frame.get(p..).unwrap_or_default()).err(),
                        Ok(None) => None,
                        Err(framing) => Some(framing),
                    }
                    .unwrap_or(e)
                })?;
                let want = parse_want(rest)?;
                Ok(NodeListFrame::Sync { entries, want })
            }
            _ => Err(WireError::UnknownCommand),
        }
    }

    /// Bytes [`Self::emit`] writes: 66 for a Hash, 5 + the entries' lengths for a List or
    /// Diff, 7 + the entries' lengths + 32 a wanted id for a Sync.
    pub fn buffer_len(&self) -> usize {
        let entries = 1
            + COUNT_LEN
            + self
                .entries()
                .iter()
                .map(NodeEntry::encoded_len)
                .sum::<usize>();
        match self {
            NodeListFrame::Hash(_) => HASH_FRAME_LEN,
            NodeListFrame::List(_) | NodeListFrame::Diff(_) => entries,
            NodeListFrame::Sync { want, .. } => entries + WANT_LEN + want.len() * ENTRY_ID_LEN,
        }
    }

    /// Writes the frame, command byte included, entries in the order held; returns its
    /// length.
    ///
    /// # Errors
    /// [`WireError::BadLength`] for a List, Diff or Sync of more than 4096 entries, or a
    /// Sync wanting more than 4096 ids; [`WireError::BufferTooSmall`] when `buf` is
    /// shorter than [`Self::buffer_len`]. Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let entries = self.entries();
        let want: &[EntryId] = match self {
            NodeListFrame::Sync { want, .. } => want,
            _ => &[],
        };
        if entries.len() > MAX_ENTRIES || want.len() > MAX_ENTRIES {
            return Err(WireError::BadLength);
        }
        let n = self.buffer_len();
        if buf.len() < n {
            return Err(WireError::BufferTooSmall);
        }
        buf[0] = self.command_byte();
        if let NodeListFrame::Hash(hash) = self {
            buf[1] = HASH_LEN as u8;
            buf[2..HASH_FRAME_LEN].copy_from_slice(hash);
            return Ok(n);
        }
        BigEndian::write_u32(&mut buf[1..1 + COUNT_LEN], entries.len() as u32);
        let mut p = 1 + COUNT_LEN;
        for e in entries {
            p += e.emit(&mut buf[p..])?;
        }
        if let NodeListFrame::Sync { want, .. } = self {
            BigEndian::write_u16(&mut buf[p..p + WANT_LEN], want.len() as u16);
            p += WANT_LEN;
            for id in want {
                buf[p..p + ENTRY_ID_LEN].copy_from_slice(id);
                p += ENTRY_ID_LEN;
            }
        }
        Ok(n)
    }

    /// The frame as a new vector.
    ///
    /// # Errors
    /// [`WireError::BadLength`] for a List, Diff or Sync of more than 4096 entries, or a
    /// Sync wanting more than 4096 ids.
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit(&mut v)?;
        Ok(v)
    }
}

/// Reads `[count u32][entries]` at the start of `body`; returns them and the bytes after.
fn parse_entries(body: &[u8]) -> Result<(Vec<NodeEntry>, &[u8]), WireError> {
    let count = read_count(body)?.ok_or(WireError::Truncated)?;
    let mut entries = Vec::with_capacity(count.min(body.len() / MIN_ENTRY_LEN));
    let mut rest = &body[COUNT_LEN..];
    for _ in 0..count {
        let (e, n) = NodeEntry::parse_prefix(rest)?;
        entries.push(e);
        rest = &rest[n..];
    }
    Ok((entries, rest))
}

/// Reads `[want u16][ids 32 x want]` filling exactly `body` (a NodeSync's tail).
fn parse_want(body: &[u8]) -> Result<Vec<EntryId>, WireError> {
    let want = read_want(body)?.ok_or(WireError::Truncated)?;
    let ids = &body[WANT_LEN..];
    match ids.len().cmp(&(want * ENTRY_ID_LEN)) {
        Ordering::Less => Err(WireError::Truncated),
        Ordering::Greater => Err(WireError::TrailingData),
        Ordering::Equal => Ok(ids
            .chunks_exact(ENTRY_ID_LEN)
            .map(|c| {
                let mut id = [0u8; ENTRY_ID_LEN];
                id.copy_from_slice(c);
                id
            })
            .collect()),
    }
}

/// The want count at the start of `body`: `Ok(None)` when under 2 bytes.
fn read_want(body: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(b) = body.get(..WANT_LEN) else {
        return Ok(None);
    };
    let want = usize::from(BigEndian::read_u16(b));
    if want > MAX_ENTRIES {
        return Err(WireError::BadLength);
    }
    Ok(Some(want))
}

/// The count at the start of `body`: `Ok(None)` when under 4 bytes.
fn read_count(body: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(b) = body.get(..COUNT_LEN) else {
        return Ok(None);
    };
    let count = BigEndian::read_u32(b) as usize;
    if count > MAX_ENTRIES {
        return Err(WireError::BadLength);
    }
    Ok(Some(count))
}

/// Length of the node-list frame (10, 11, 12 or 24) at the start of a stream buffer:
/// `Ok(None)` when more bytes are needed, `Ok(Some(n))` when the first `n` bytes are one
/// whole frame (2 + hash_len for a hash, 66 when well formed; 5 to 3,244,037 for a list or
/// diff; 7 to [`MAX_FRAME_LEN`] for a sync).
///
/// Reads only length bytes (the command, the count, each entry's three length bytes and a
/// sync's want count), never an entry's content: a frame with a malformed entry still has a length, and
/// [`NodeListFrame::parse`] refuses it. A list's length is bounded, so a reader never
/// buffers more than [`MAX_FRAME_LEN`] bytes for one frame.
///
/// # Errors
/// [`WireError::UnknownCommand`] for a first byte other than 10, 11, 12 or 24;
/// [`WireError::BadLength`] for a count or want over 4096 (as soon as it is in).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(&command) = buf.first() else {
        return Ok(None);
    };
    match command {
        CMD_NODE_LIST_HASH => {
            // The length byte frames the hash whatever it says, so a hash of the wrong
            // length is one whole frame that [`NodeListFrame::parse`] refuses.
            let Some(&len) = buf.get(1) else {
                return Ok(None);
            };
            let n = 2 + usize::from(len);
            Ok((buf.len() >= n).then_some(n))
        }
        CMD_NODE_LIST | CMD_NODE_LIST_DIFF => {
            let p = entries_end(buf)?;
            Ok(p.filter(|&p| buf.len() >= p))
        }
        CMD_NODE_SYNC => {
            let Some(p) = entries_end(buf)? else {
                return Ok(None);
            };
            let Some(want) = read_want(buf.get(p..).unwrap_or_default())? else {
                return Ok(None);
            };
            let n = p + WANT_LEN + want * ENTRY_ID_LEN;
            Ok((buf.len() >= n).then_some(n))
        }
        _ => Err(WireError::UnknownCommand),
    }
}

/// Where the entries of the list, diff or sync frame at the start of `buf` end (an
/// offset from the command byte): `Ok(None)` while a length byte is still to come.
fn entries_end(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(count) = read_count(&buf[1..])? else {
        return Ok(None);
    };
    let mut p = 1 + COUNT_LEN;
    for _ in 0..count {
        p += UID_LEN + 8;
        for _ in 0..3 {
            let Some(&len) = buf.get(p) else {
                return Ok(None);
            };
            p += 1 + usize::from(len);
        }
    }
    Ok(Some(p))
}

/// Entries for the tests of this codec and of the list logic that uses it.
#[cfg(test)]
pub(crate) mod test_entries {
    use super::NodeEntry;
    use proptest::prelude::*;

    /// An entry with uid `[uid; 16]`, location `h:1` and key `[uid; 32]`.
    pub(crate) fn entry(uid: u8, version: u64, alias: &str) -> NodeEntry {
        NodeEntry::new([uid; 16], version, alias, "h:1", vec![uid; 32]).unwrap()
    }

    /// Small entries over 4 uids and 3 versions, so that conflicts are frequent.
    pub(crate) fn arb_entry() -> impl Strategy<Value = NodeEntry> {
        (
            0u8..4,
            0u64..3,
            prop::sample::select(vec!["", "a", "b", "ab", "é"]),
            prop::sample::select(vec!["h:1", "h:2"]),
            prop::collection::vec(any::<u8>(), 1..3),
        )
            .prop_map(|(u, v, a, l, k)| NodeEntry::new([u; 16], v, a, l, k).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::test_entries::{arb_entry, entry};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_checks_bounds() {
        let ok = |a: usize, l: usize, k: usize| {
            NodeEntry::new([0; 16], 0, "a".repeat(a), "l".repeat(l), vec![7; k])
        };
        assert!(ok(255, 255, 255).is_ok());
        assert_eq!(ok(255, 255, 255).unwrap().encoded_len(), MAX_ENTRY_LEN);
        assert_eq!(ok(0, 0, 1).unwrap().encoded_len(), MIN_ENTRY_LEN);
        assert_eq!(ok(256, 0, 1), Err(WireError::NameTooLong));
        assert_eq!(ok(0, 256, 1), Err(WireError::NameTooLong));
        assert_eq!(ok(0, 0, 0), Err(WireError::BadLength));
        assert_eq!(ok(0, 0, 256), Err(WireError::BadLength));
    }

    #[test]
    fn entry_parse_errors() {
        let e = entry(3, 9, "nvp");
        let bytes = e.to_bytes();
        assert_eq!(NodeEntry::parse(&bytes), Ok(e.clone()));
        for cut in 0..bytes.len() {
            assert_eq!(
                NodeEntry::parse(&bytes[..cut]),
                Err(WireError::Truncated),
                "{cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(NodeEntry::parse(&long), Err(WireError::TrailingData));
        let mut bad = bytes.clone();
        bad[field::ALIAS_LEN + 1] = 0xff;
        assert_eq!(NodeEntry::parse(&bad), Err(WireError::BadUtf8));
        let mut nokey = bytes[..ENTRY_FIXED_LEN + 3 + 3 - 1].to_vec();
        nokey.push(0);
        assert_eq!(NodeEntry::parse(&nokey), Err(WireError::BadLength));
    }

    #[test]
    fn a_sync_frames_parses_and_emits_back() {
        let f = NodeListFrame::Sync {
            entries: vec![entry(1, 2, "a"), entry(2, 7, "")],
            want: vec![[9; ENTRY_ID_LEN], [8; ENTRY_ID_LEN]],
        };
        let bytes = f.to_vec().unwrap();
        assert_eq!(bytes[0], CMD_NODE_SYNC);
        assert_eq!(bytes.len(), f.buffer_len());
        assert_eq!(NodeListFrame::parse(&bytes), Ok(f.clone()));
        // Every prefix needs more bytes; the whole frame is one frame, whatever follows.
        for cut in 0..bytes.len() {
            assert_eq!(frame_len(&bytes[..cut]), Ok(None), "{cut}");
            assert!(NodeListFrame::parse(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut more = bytes.clone();
        more.extend_from_slice(&[CMD_NODE_LIST_HASH, 64]);
        assert_eq!(frame_len(&more), Ok(Some(bytes.len())));
        assert_eq!(
            NodeListFrame::parse(&more[..bytes.len() + 1]),
            Err(WireError::TrailingData)
        );
        let empty = NodeListFrame::Sync {
            entries: vec![],
            want: vec![],
        };
        assert_eq!(empty.to_vec().unwrap(), [CMD_NODE_SYNC, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_sync_wanting_over_4096_ids_is_refused_from_its_count() {
        let mut bytes = vec![CMD_NODE_SYNC, 0, 0, 0, 0];
        bytes.extend_from_slice(&4097u16.to_be_bytes());
        assert_eq!(frame_len(&bytes), Err(WireError::BadLength));
        assert_eq!(NodeListFrame::parse(&bytes), Err(WireError::BadLength));
        let f = NodeListFrame::Sync {
            entries: vec![],
            want: vec![[0; ENTRY_ID_LEN]; MAX_ENTRIES + 1],
        };
        assert_eq!(f.to_vec(), Err(WireError::BadLength));
        let most = NodeListFrame::Sync {
            entries: vec![],
            want: vec![[0; ENTRY_ID_LEN]; MAX_ENTRIES],
        };
        assert!(most.buffer_len() <= MAX_FRAME_LEN);
        assert_eq!(MAX_FRAME_LEN, 3_375_111);
    }

    /// The want count is judged before the entries, by the parser as by [`frame_len`]: an
    /// entry whose alias is not UTF-8, then a want of 4097, is BadLength from both (found by
    /// tests/it/nodelist.rs `arbitrary_bytes_never_panic`).
    #[test]
    fn a_sync_wanting_over_4096_ids_is_refused_before_its_entries_are_read() {
        let mut bytes = NodeListFrame::Sync {
            entries: vec![entry(1, 2, "a")],
            want: vec![],
        }
        .to_vec()
        .unwrap();
        let alias = 1 + COUNT_LEN + UID_LEN + 8 + 1;
        assert_eq!(bytes[alias], b'a');
        bytes[alias] = 0xff;
        assert_eq!(NodeListFrame::parse(&bytes), Err(WireError::BadUtf8));
        let n = bytes.len();
        bytes[n - WANT_LEN..].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(frame_len(&bytes), Err(WireError::BadLength));
        assert_eq!(NodeListFrame::parse(&bytes), Err(WireError::BadLength));
    }

    proptest! {
        #[test]
        fn ord_is_bytewise_order_of_encodings(a in arb_entry(), b in arb_entry()) {
            prop_assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
            prop_assert_eq!(a.cmp(&b) == Ordering::Equal, a == b);
        }

        #[test]
        fn entry_round_trip(e in arb_entry()) {
            let bytes = e.to_bytes();
            prop_assert_eq!(bytes.len(), e.encoded_len());
            let mut buf = vec![0u8; e.encoded_len()];
            prop_assert_eq!(e.emit(&mut buf), Ok(bytes.len()));
            prop_assert_eq!(&buf, &bytes);
            prop_assert_eq!(NodeEntry::parse(&bytes), Ok(e));
        }
    }
}

#[cfg(test)]
crate::wire::fixtures::check::fixture_test!(frames_of(
    &[10, 11, 21, 24],
    &["node-list-hash", "node-list-diff"]
));
