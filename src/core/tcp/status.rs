//! The status answer (command 6, docs/PROTOCOL.md §8.5): `key=value` lines about this
//! server (its health: `ok`, or `draining` once it stops), its contacts and UDP directory digests, its node list, each link and what each
//! peer has sent. Written once both digests are in (the store's and the UDP core's).

use super::conn::{status_bytes, Answer};
use super::journal::Phase;
use super::links::{Link, LinkState};
use super::{ConnId, StoreRequest, TcpAction, TcpCore};
use crate::wire::status;
use crate::wire::tcp;
use crate::wire::tcp::answer::AnswerPiece;

/// A digest: entries counted and the SHA-512 of their canonical form.
type Digest = (u64, Vec<u8>);

impl TcpCore {
    /// Status (6): asks the store for the contacts digest and the loop for the directory's.
    pub(super) fn status(&mut self, conn: ConnId) {
        self.flush_batch();
        let tag = self.out.tag();
        self.reads.barriers.insert(tag, conn);
        self.out.request(StoreRequest::Digest { tag });
        self.out
            .actions
            .push_back(TcpAction::DirectoryDigest { tag });
        self.push_answer(
            conn,
            Answer::Status {
                tag,
                contacts: None,
                directory: None,
            },
        );
    }

    /// The UDP directory's digest for status answer `tag`: `online` entries and the
    /// SHA-512 of their canonical form (64 bytes; docs/PROTOCOL.md §8.5).
    pub fn handle_directory_digest(&mut self, now_ms: u64, tag: u64, online: u64, sha512: &[u8]) {
        let Some(&conn) = self.reads.barriers.get(&tag) else {
            return;
        };
        if let Some(Answer::Status { directory, .. }) = self.find_status(conn, tag) {
            *directory = Some((online, sha512.to_vec()));
        }
        self.finish_status(now_ms, conn, tag);
    }

    /// The store's contacts digest for status answer `tag`.
    pub(super) fn on_digest(&mut self, now_ms: u64, tag: u64, count: u64, sha512: Vec<u8>) {
        let Some(&conn) = self.reads.barriers.get(&tag) else {
            return;
        };
        if let Some(Answer::Status { contacts, .. }) = self.find_status(conn, tag) {
            *contacts = Some((count, sha512));
        }
        self.finish_status(now_ms, conn, tag);
    }

    fn find_status(&mut self, conn: ConnId, tag: u64) -> Option<&mut Answer> {
        self.conns
            .get_mut(&conn)?
            .answers
            .iter_mut()
            .find(|a| matches!(a, Answer::Status { tag: t, .. } if *t == tag))
    }

    /// Renders status answer `tag` once both digests are in.
    fn finish_status(&mut self, now_ms: u64, conn: ConnId, tag: u64) {
        let Some(Answer::Status {
            contacts: contacts @ Some(_),
            directory: directory @ Some(_),
            ..
        }) = self.find_status(conn, tag)
        else {
            return;
        };
        let (Some(contacts), Some(directory)) = (contacts.take(), directory.take()) else {
            return;
        };
        let text = self.status_text(now_ms, &contacts, &directory);
        let mut bytes = Vec::new();
        if let Err(e) = AnswerPiece::StatusText(&text).append_to(&mut bytes) {
            tracing::warn!(%e, "the status text does not fit its frame");
            bytes = status_bytes(
                status::SERVICE_UNAVAILABLE,
                tcp::CMD_STATUS_REQUEST,
                "status too long",
            );
        }
        if let Some(a) = self.find_status(conn, tag) {
            *a = Answer::Ready(bytes);
        }
        self.reads.barriers.remove(&tag);
        self.pump(conn);
    }

    /// The status text (docs/PROTOCOL.md §8.5).
    fn status_text(&self, now_ms: u64, contacts: &Digest, directory: &Digest) -> String {
        let (count, csum) = contacts;
        let (online, dsum) = directory;
        let mut text = format!(
            "name={}\nhealth={}\nclock={}\njournal={:016x}:{}\ncontacts={count}\ncontacts_sha512={}\ndirectory={online}\ndirectory_sha512={}\nnodes={}\nnode_list_sha512={}\nduplicate_lines={}\n",
            self.cfg.identity.name,
            if self.draining() { "draining" } else { "ok" },
            self.clock.now,
            self.journal.id,
            self.journal.head,
            hex(csum),
            hex(dsum),
            self.nodes.len(),
            self.nodes.hash_hex(),
            self.stats.duplicate_lines,
        );
        for l in &self.links {
            text.push_str(&link_line(l, now_ms));
        }
        for (name, (lines, records)) in &self.journal.received {
            text.push_str(&format!(
                "received_from={} entries={lines} records={records}\n",
                name.replace(char::is_whitespace, "_")
            ));
        }
        text
    }
}

/// One link's status line.
fn link_line(l: &Link, now_ms: u64) -> String {
    let state = match l.state {
        _ if l.retired => "retired",
        LinkState::Up { .. } => "up",
        LinkState::Connecting => "connecting",
        LinkState::Down { .. } => "down",
    };
    let hb = l.last_heartbeat_ms.map_or("never".to_string(), |t| {
        now_ms.saturating_sub(t).to_string()
    });
    let phase = match l.journal.phase {
        Phase::AwaitCursor => "await_cursor",
        Phase::Paging { .. } => "catching_up",
        Phase::Reconcile => "reconciling",
        Phase::FullPush { .. } => "full_push",
        Phase::Live => "live",
    };
    let j = &l.journal;
    let r = &j.recon;
    format!(
        "peer={} state={state} last_heartbeat_ms_ago={hb} peer_clock={} journal={phase} pushed_line={} confirmed_line={} entries_sent={} records_sent={} directory_sent={} learned={} not_sent_back={} left_to_origin={} bytes_sent={} bytes_received={} reconciliations={} last_reconcile_rounds={} last_reconcile_sent={} last_reconcile_missing={} last_reconcile_bytes={} dir_reconciliations={} dir_last_sent={} dir_last_missing={} nodes_reconciliations={} nodes_last_sent={} nodes_last_missing={} nodes_last_bytes={}\n",
        l.addr, l.peer_clock, j.pushed_line, j.confirmed_line, j.entries_sent, j.records_sent, l.dir.sent, l.learned,
        j.not_sent_back, j.left_to_origin, j.bytes_sent, j.bytes_received, r.count, r.rounds, r.sent, r.missing, r.bytes,
        l.dir.recon.count, l.dir.recon.sent, l.dir.recon.missing,
        l.nodes_recon.count, l.nodes_recon.sent, l.nodes_recon.missing, l.nodes_recon.bytes
    )
}

/// Lowercase hex digits.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
