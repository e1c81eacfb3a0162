//! What a reconciliation of directories moves (docs/PROTOCOL.md §8.20): the entries we
//! hold that the peer lacks, pushed as DirRecord frames paged from the UDP core through a
//! filter of fingerprints, and the ids of those it holds that we lack, asked for with
//! DirWant (23) and answered from the answering side's ids.

use super::{Set, TcpCore};
use crate::core::tcp::conn::Answer;
use crate::core::tcp::directory::{DirAnswer, DirDest, FpFilter};
use crate::core::tcp::ConnId;
use crate::federation::reconcile::{DirItem, Initiator, Item, RecordId};
use crate::wire::tcp::answer::Asked;
use crate::wire::tcp::ServerCommand;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Directory entries' fingerprints by record id (shared, not copied).
pub(in crate::core::tcp) type FpMap = Arc<HashMap<RecordId, [u8; 32]>>;

/// Ids a DirWant carries at most: 128 (4096 bytes); a DirWant with fewer ends the
/// reconciliation it belongs to.
const WANT_IDS: usize = 128;

impl TcpCore {
    /// Our directory's ids for [`super::super::TcpAction::DirectoryIds`] `tag`: `(timestamp,
    /// id, fingerprint)` of every entry, from the UDP core.
    pub fn handle_directory_ids(&mut self, now_ms: u64, tag: u64, items: &[DirItem]) {
        let ids: Vec<Item> = items.iter().map(|&(ts, id, _)| (ts, id)).collect();
        let fps: FpMap = Arc::new(items.iter().map(|&(_, id, fp)| (id, fp)).collect());
        self.ids_read(now_ms, tag, &ids, Some(fps));
    }

    /// Link `i`'s reconciliation of directories is complete: push the entries the peer
    /// lacks (paged through a filter), and ask for those we lack (DirWant frames, the last
    /// with fewer than 128 ids, which ends the peer's side) unless the peer links to us
    /// itself (meshed): then its own link pushes them, and one empty DirWant ends its side,
    /// so a server being filled gets each entry from one peer at a time.
    pub(super) fn move_entries(
        &mut self,
        i: usize,
        conn: ConnId,
        init: &Initiator,
        fps: Option<&FpMap>,
    ) {
        let have: HashSet<[u8; 32]> = init
            .have()
            .iter()
            .filter_map(|id| fps.and_then(|m| m.get(id)).copied())
            .collect();
        let pull = !self.relay().links_back();
        let wants = if pull {
            init.need_ids().to_vec()
        } else {
            Vec::new()
        };
        if have.is_empty() {
            return self.send_wants(conn, &wants);
        }
        // The DirWant frames go after the entries pushed: they end the peer's side.
        if let Some(l) = self.links.get_mut(i) {
            l.dir.wants = Some(wants);
        }
        self.start_dir_push(i, Some(FpFilter(Arc::new(have))));
    }

    /// Asks for the entries `need` on `conn` (DirWant frames of 128 ids, the last with
    /// fewer, maybe none, which ends the peer's side of the reconciliation).
    pub(in crate::core::tcp) fn send_wants(&mut self, conn: ConnId, need: &[RecordId]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut at = 0;
        loop {
            let end = (at + WANT_IDS).min(need.len());
            let chunk = &need[at..end];
            let ids: Vec<u8> = chunk.iter().flatten().copied().collect();
            c.out.command(&ServerCommand::DirWant(&ids));
            c.expect(Asked::DirRequest, 0);
            at = end;
            if chunk.len() < WANT_IDS {
                break; // the last: fewer than 128 (maybe none)
            }
        }
    }

    /// DirWant (23) from a peer on `conn`: the entries of our directory reconciliation on
    /// that connection with these ids (ids we do not know are skipped), as a DirRequest is
    /// answered; fewer than 128 ids end that reconciliation.
    pub(in crate::core::tcp) fn dir_want(&mut self, conn: ConnId, ids: &[u8]) {
        let fps = self
            .session_on(conn, Set::Directory)
            .and_then(|s| s.fps.clone());
        let wanted: HashSet<[u8; 32]> = ids
            .chunks_exact(32)
            .filter_map(|id| {
                let id: RecordId = id.try_into().ok()?;
                fps.as_ref()?.get(&id).copied()
            })
            .collect();
        if ids.len() / 32 < WANT_IDS {
            self.end_session(conn, Set::Directory);
        }
        let tag = self.out.tag();
        self.reads.dir_pages.insert(tag, DirDest::Answer(conn));
        let answer = DirAnswer::new(tag, Some(FpFilter(Arc::new(wanted))));
        self.push_answer(conn, Answer::Directory(answer));
    }
}
