//! The TCP plane: the hello, the opener's commands of both roles, and every answer the
//! accepting side sends back, as zero-copy views with an emit side; no I/O, no allocation
//! on the parse path (docs/PROTOCOL.md §8). Big-endian throughout; names and phones are
//! NUL-padded UTF-8 ([`crate::wire::name`]).
//!
//! ```text
//! opener -> acceptor                               acceptor -> opener
//! hello [role u8][name 256]          hello.rs
//! commands [cmd u8][body]            command.rs    answers, in the order asked  answer/
//!   contact fields, records          contact.rs      status frame [07][status]  status.rs
//!   node-list frames 10-12           nodelist.rs     node-list answers 10, 12   nodelist.rs
//!   DirRecord 16, Forward 18 bodies  dir.rs          directory: 16..., then 17  dir.rs
//! ```
//!
//! Every connection has an opener (a client, or a peer server) and an acceptor. The
//! opener sends the hello, then commands, and may pipeline them; the acceptor sends nothing
//! but answers, in the order asked; a non-200 status frame is a refusal, after which the
//! acceptor closes (docs/PROTOCOL.md §8.7, §8.14).
//!
//! Invariants: no parser panics on any input; a frame cut short is
//! [`WireError`](crate::wire::WireError)`::Truncated` (or `Ok(None)` from a length
//! function), never a different frame; an emit checks every field before it writes a byte.

pub mod answer;
pub mod auth;
mod command;
mod contact;
pub mod dir;
mod hello;
pub mod nodelist;
mod status;

pub use command::{
    body_len, command_len, command_name, emit_update_clock, is_command, parse_update_clock,
    ClientCommand, ServerCommand, AUTH_CONTEXT, CMD_ASK_FOR_UPDATE, CMD_AUTH_CHALLENGE,
    CMD_AUTH_PROOF, CMD_BARRIER, CMD_CURSOR_QUERY, CMD_DIR_RECORD, CMD_DIR_REQUEST, CMD_DIR_WANT,
    CMD_FORWARD, CMD_HEARTBEAT, CMD_JOURNAL_MARK, CMD_JOURNAL_SINCE, CMD_JOURNAL_UPDATE,
    CMD_LIST_ALL, CMD_RECONCILE, CMD_STATUS_REQUEST, CMD_UPDATE, CMD_UPDATE_CLOCK, HEALTH_DEGRADED,
    HEALTH_DRAINING, HEALTH_OK, HEARTBEAT_LEN, JOURNAL_SINCE_LEN, JOURNAL_UPDATE_LEN,
    MAX_COMMAND_LEN, MAX_FRAME_LEN, MAX_RECONCILE_LEN, MAX_SINCE_LIMIT, MAX_VAR_BODY, NONCE_LEN,
    UPDATE_CLOCK_LEN,
};
pub use contact::{
    emit_client_record, emit_count, emit_server_record, parse_client_record, parse_count,
    parse_server_record, ContactFields, FieldError, CLIENT_RECORD_LEN, CLIENT_UPDATE_LEN,
    COUNT_LEN, SERVER_RECORD_LEN, SERVER_UPDATE_LEN,
};
pub use hello::{hello_len, Hello, Role, HELLO_LEN, ROLE_CLIENT, ROLE_SERVER};
/// The node-list command bytes 10, 11, 12, with the other command bytes.
pub use nodelist::{CMD_NODE_LIST, CMD_NODE_LIST_DIFF, CMD_NODE_LIST_HASH, CMD_NODE_SYNC};
pub use status::{
    StatusFrame, CMD_STATUS, DETAIL_DRAINING, MAX_STATUS_LEN, REQUEST_HELLO, REQUEST_UNKNOWN,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

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
        assert_eq!(ContactFields::LEN, CLIENT_UPDATE_LEN);
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
