//! The peer's answers on links this server opened (docs/PROTOCOL.md §8.7, §8.10): read in
//! the order asked (`Conn::expects`) and handed to the part that asked. Anything the
//! opener did not ask for, or a refusal, drops the link (it is redialled).

use super::conn::{status_detail, Expect, STATUS_OK};
use super::{ConnId, TcpAction, TcpCore};
use crate::wire::tcp::nodelist::{self, NodeListFrame};
use crate::wire::tcp::{self, Role, StatusFrame};

impl TcpCore {
    /// Reads one answer on link `conn`; false when more bytes are needed (or the link was
    /// closed for a protocol error).
    pub(super) fn parse_answer(&mut self, now_ms: u64, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Some(&expect) = c.expects.front() else {
            if c.input.buf.is_empty() {
                return false;
            }
            // The acceptor speaks only when asked: anything else is a protocol error (or
            // its status frame before it closes).
            let detail = status_detail(&c.input.buf);
            tracing::warn!(peer = %c.addr, detail, "unexpected bytes from a peer; closing the link");
            self.out.actions.push_back(TcpAction::Close(conn));
            c.out.close_when_flushed = true;
            return false;
        };
        match expect {
            Expect::Nonce => self.answer_nonce(now_ms, conn),
            Expect::Cursor => self.answer_cursor(conn),
            Expect::HeartBeat => self.answer_heartbeat(conn),
            Expect::Status { confirms } => self.answer_status(now_ms, conn, confirms),
            Expect::NodeHash => self.answer_node_list(now_ms, conn, tcp::CMD_NODE_LIST_HASH),
            Expect::NodeDiff => self.answer_node_list(now_ms, conn, tcp::CMD_NODE_LIST_DIFF),
            Expect::Directory => self.answer_directory(conn),
        }
    }

    /// True when the answer on link `conn` starts with one of `want`; false when no byte is
    /// in yet, or when it starts otherwise (then the link is closed: the peer did not
    /// answer `what`).
    fn answer_starts(&mut self, conn: ConnId, want: &[u8], what: &str) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        match c.input.buf.first() {
            None => false,
            Some(b) if want.contains(b) => true,
            Some(_) => {
                let detail = status_detail(&c.input.buf);
                tracing::warn!(peer = %c.addr, detail, "peer did not answer {what}; closing the link");
                self.close_link(conn);
                false
            }
        }
    }

    /// AuthChallenge's answer `[20][nonce 32]`: send our proof, then the link's opening
    /// requests.
    fn answer_nonce(&mut self, now_ms: u64, conn: ConnId) -> bool {
        let want = [tcp::CMD_AUTH_CHALLENGE];
        if !self.answer_starts(conn, &want, "our challenge") {
            return false;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.input.buf.len() < 1 + tcp::NONCE_LEN {
            return false;
        }
        let nonce: Vec<u8> = c.input.buf.drain(..1 + tcp::NONCE_LEN).skip(1).collect();
        c.expects.pop_front();
        if let Some(peer) = c.link {
            self.send_proof(now_ms, peer, conn, &nonce);
        }
        true
    }

    /// CursorQuery's answer `[14][line u64]`: push our journal from there.
    fn answer_cursor(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.input.buf.len() < 9 {
            return false;
        }
        if c.input.buf[0] != tcp::CMD_CURSOR_QUERY {
            tracing::warn!(peer = %c.addr, "peer did not answer the cursor query; closing the link");
            self.close_link(conn);
            return false;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&c.input.buf[1..9]);
        c.input.buf.drain(..9);
        c.expects.pop_front();
        if let Some(i) = c.link {
            self.start_journal_push(i, u64::from_be_bytes(b));
        }
        true
    }

    /// HeartBeat's answer: an UpdateClock with the peer's clock, or nothing (the peer took
    /// ours; the barrier's status frame follows).
    fn answer_heartbeat(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        match c.input.buf.first() {
            None => return false,
            Some(&tcp::CMD_UPDATE_CLOCK) => {
                if c.input.buf.len() < 5 {
                    return false;
                }
                let b = &c.input.buf;
                let v = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
                if let Some(l) = c.link.and_then(|i| self.links.get_mut(i)) {
                    l.peer_clock = v;
                }
                c.input.buf.drain(..5);
                c.expects.pop_front();
                if self.clock.plausible(v) {
                    self.clock.observe(v);
                }
            }
            Some(_) => {
                c.expects.pop_front(); // no UpdateClock: the peer took our clock
            }
        }
        true
    }

    /// A status frame answering our Barrier (or AuthProof): a 200 is a heartbeat answered
    /// and confirms our journal up to `confirms`; anything else drops the link.
    fn answer_status(&mut self, now_ms: u64, conn: ConnId, confirms: u64) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.input.buf.len() < StatusFrame::FIXED_LEN {
            return false;
        }
        let len = StatusFrame::FIXED_LEN + usize::from(c.input.buf[4]);
        if c.input.buf.len() < len {
            return false;
        }
        let frame: Vec<u8> = c.input.buf.drain(..len).collect();
        c.expects.pop_front();
        match StatusFrame::parse(&frame) {
            Ok(f) if f.status == STATUS_OK => {
                if let Some(l) = c.link.and_then(|i| self.links.get_mut(i)) {
                    l.last_heartbeat_ms = Some(now_ms);
                    l.journal.confirmed_line = l.journal.confirmed_line.max(confirms);
                }
                true
            }
            Ok(f) => {
                tracing::warn!(
                    status = f.status,
                    detail = f.detail,
                    "peer refused; closing the link"
                );
                self.close_link(conn);
                false
            }
            Err(_) => {
                self.close_link(conn);
                false
            }
        }
    }

    /// The peer's node-list hash (`want` 10) or diff (12), answering ours.
    fn answer_node_list(&mut self, now_ms: u64, conn: ConnId, want: u8) -> bool {
        if !self.answer_starts(conn, &[want], "the node list sync") {
            return false;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let n = match nodelist::frame_len(&c.input.buf) {
            Ok(Some(n)) => n,
            Ok(None) => return false,
            Err(_) => {
                self.close_link(conn);
                return false;
            }
        };
        let frame: Vec<u8> = c.input.buf.drain(..n).collect();
        c.expects.pop_front();
        match NodeListFrame::parse(&frame) {
            Ok(NodeListFrame::Hash(h)) => self.peer_node_hash(conn, &h),
            Ok(NodeListFrame::Diff(entries)) if !nodelist::has_duplicate_uids(&entries) => {
                self.merge_nodes(now_ms, entries);
            }
            _ => {
                tracing::warn!("malformed node list answer; closing the link");
                self.close_link(conn);
                return false;
            }
        }
        true
    }

    /// DirRequest's answer: DirRecord frames (for the UDP core), then `[17][0004][count]`.
    fn answer_directory(&mut self, conn: ConnId) -> bool {
        let want = [tcp::CMD_DIR_RECORD, tcp::CMD_DIR_REQUEST];
        if !self.answer_starts(conn, &want, "the directory request") {
            return false;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let n = match tcp::command_len(Role::Server, &c.input.buf) {
            Ok(Some(n)) => n,
            Ok(None) => return false,
            Err(_) => {
                self.close_link(conn);
                return false;
            }
        };
        let mut frame: Vec<u8> = c.input.buf.drain(..n).collect();
        if frame[0] == tcp::CMD_DIR_RECORD {
            self.stats.dir_records_in += 1;
            frame.drain(..3); // the body, without a second copy
            self.out
                .actions
                .push_back(TcpAction::PeerRecord { conn, body: frame });
        } else if frame.len() == 7 {
            c.expects.pop_front(); // [17][0004][count]: the answer is complete
        } else {
            self.close_link(conn);
            return false;
        }
        true
    }
}
