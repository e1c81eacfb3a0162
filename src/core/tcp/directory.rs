//! Directory federation on the TCP plane (docs/PROTOCOL.md §8.16): DirRecord and Forward
//! frames pushed on links, DirRequest answers paged from the UDP core, and the full push of
//! our directory when a link opens. The directory itself lives in the UDP core; this part
//! only moves its records.

use super::ConnId;

/// Directory records asked per page (a full directory goes out in pages as the reader
/// drains them).
pub(super) const DIR_PAGE: usize = 256;

/// Where a page of directory records goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirDest {
    /// The answer to a DirRequest on this connection.
    Answer(ConnId),
    /// A full push on link `i`.
    Push(usize),
}

/// A full push of our directory on a link this server opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirPush {
    /// None under way.
    Idle,
    /// Paging: `after` the last fingerprint sent; `asked` when a page is on its way.
    Paging {
        after: Option<[u8; 32]>,
        asked: bool,
    },
}

/// A link's directory pushes.
#[derive(Debug)]
pub(super) struct LinkDir {
    /// The full push of our directory after (re)connecting.
    pub(super) push: DirPush,
    /// Directory records sent on this link (live and full pushes) since the server started.
    pub(super) sent: u64,
}
