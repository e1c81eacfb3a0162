//! Reconciliation of node lists (docs/PROTOCOL.md §8.15, §8.20, set 3): when a link's hash
//! exchange finds the lists differ, the opener compares entry ids with the acceptor and
//! sends one NodeSync (24), the entries the acceptor lacks and the ids of those it lacks,
//! answered with a diff (12). The acceptor answers each message from its list as it
//! stands (at most 4096 entries): no session, no busy answer.

use super::{frame, Set, TcpCore};
use crate::core::tcp::conn::Answer;
use crate::core::tcp::ConnId;
use crate::federation::nodelist::WHOLE_LIST_MAX;
use crate::federation::reconcile::{Initiator, Responder};
use crate::wire::status;
use crate::wire::tcp;
use crate::wire::tcp::answer::Asked;
use crate::wire::tcp::nodelist::NodeListFrame;

impl TcpCore {
    /// On link `i` (connection `conn`), the peer's hash differs from ours: reconcile the
    /// lists, unless a reconciliation of them is under way on the link (then it is done
    /// again once that one ends, its NodeSync sent, so a change made meanwhile is not
    /// missed); a list of at most [`WHOLE_LIST_MAX`] entries is sent whole instead.
    pub(in crate::core::tcp) fn reconcile_nodes(&mut self, i: usize, conn: ConnId) {
        if let Some(r) = self.journal.recon.links.get_mut(&(i, Set::Nodes)) {
            r.again = true;
            return;
        }
        if self.nodes.len() > WHOLE_LIST_MAX {
            return self.start_reconcile(i, Set::Nodes);
        }
        if let (Some(c), Ok(list)) = (self.conns.get_mut(&conn), self.nodes.list_frame().to_vec()) {
            c.out.extend_from_slice(&list);
            c.expect(Asked::NodeList, 0);
        }
    }

    /// Reconcile (22) of set 3 from a peer on `conn`: `msg` answered from our node list
    /// as it stands; 400 and close for a message that is not negentropy version 1.
    pub(super) fn answer_nodes(&mut self, conn: ConnId, msg: &[u8]) {
        match Responder::new(&self.nodes.items()).and_then(|mut r| r.answer(msg)) {
            Ok(ans) => self.push_answer(conn, Answer::Ready(frame(Set::Nodes, &ans))),
            Err(e) => {
                let detail = format!("malformed command: {e}");
                self.fail(conn, status::BAD_REQUEST, tcp::CMD_RECONCILE, &detail);
            }
        }
    }

    /// Link `i`'s reconciliation of node lists is complete: send the NodeSync (24) of the
    /// entries the peer lacks (as our list holds them now) and the ids we lack, awaiting
    /// its diff (nothing when both are empty); then the hash again when the lists were
    /// found to differ meanwhile (`again`).
    pub(super) fn sync_nodes(&mut self, conn: ConnId, init: &Initiator, again: bool) {
        let (entries, want) = self.nodes.sync_parts(init.have(), init.need_ids());
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !(entries.is_empty() && want.is_empty()) {
            if let Ok(f) = (NodeListFrame::Sync { entries, want }).to_vec() {
                c.out.extend_from_slice(&f);
                c.expect(Asked::NodeList, 0);
            }
        }
        if again {
            if let Ok(h) = self.nodes.hash_frame().to_vec() {
                c.ask_node_hash(&h);
            }
        }
    }
}
