//! Authenticated clients of the contacts plane (docs/PROTOCOL.md §8.18): a client proves
//! the key of its certificate (commands 20 and 21 of the client role), the connection is
//! bound to that fingerprint, and it reads and writes only the contacts whose username is
//! the fingerprint in lowercase hex. Without `--open-contacts`, anything else before the
//! proof is refused with 401 and the connection closed.

use super::conn::status_bytes;
use super::conn::Answer;
use super::{ConnId, TcpAction, TcpCore};
use crate::wire::status;
use crate::wire::tcp::auth::{client_signed_message, ClientProof};
use crate::wire::tcp::{self, ContactFields};
use crate::wire::Fingerprint;

/// Why a client command is refused before it is read: status, detail.
type Refusal = (u16, &'static str);

/// The username of the contacts a client with fingerprint `fp` owns: its 64 lowercase hex
/// digits (docs/PROTOCOL.md §8.18).
pub fn owner_name(fp: &[u8; 32]) -> String {
    Fingerprint(*fp).to_hex()
}

impl TcpCore {
    /// Whether a client-role opener on `conn` may send command byte `cmd` now: `Ok` when
    /// it has proved its key, when contacts are open, or for the commands allowed before
    /// the proof (20, 21 and the status request 6); else 401 (docs/PROTOCOL.md §8.18).
    pub(super) fn client_may_send(&self, conn: ConnId, cmd: u8) -> Result<(), Refusal> {
        let proved = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.auth.client.is_some());
        if proved
            || self.cfg.open_contacts
            || matches!(
                cmd,
                tcp::CMD_AUTH_CHALLENGE | tcp::CMD_AUTH_PROOF | tcp::CMD_STATUS_REQUEST
            )
        {
            return Ok(());
        }
        Err((
            status::UNAUTHORIZED,
            "prove your certificate key first (commands 20 and 21)",
        ))
    }

    /// The contacts `conn` may list: `Some(owner)` for a client that proved its key,
    /// `None` (every contact) on an open contacts plane.
    pub(super) fn client_scope(&self, conn: ConnId) -> Option<String> {
        let c = self.conns.get(&conn)?;
        c.auth.client.clone()
    }

    /// A client's Update: a client that proved its key writes only its own contacts
    /// (403 and close otherwise; nothing is written).
    pub(super) fn scoped_update(&mut self, conn: ConnId, fields: &ContactFields<'_>) {
        let owner = self.conns.get(&conn).and_then(|c| c.auth.client.as_deref());
        if let Some(owner) = owner {
            if fields.username != owner {
                let detail = "you write only your own contacts: username = your fingerprint in hex";
                return self.fail(conn, status::FORBIDDEN, tcp::CMD_UPDATE, detail);
            }
        }
        self.client_update(conn, fields);
    }

    /// A client's AuthProof (21): checks it has a challenge and a well-formed body, then
    /// asks the UDP plane to check the certificate and signature
    /// ([`TcpAction::VerifyClient`]); its next commands wait for the answer
    /// ([`Self::client_verified`]). 400 and close for a proof without a challenge, a
    /// malformed body or a second proof.
    pub(super) fn client_proof(&mut self, conn: ConnId, body: &[u8]) {
        let cmd = tcp::CMD_AUTH_PROOF;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.auth.client.is_some() {
            return self.fail(conn, status::BAD_REQUEST, cmd, "already authenticated");
        }
        let Some(nonce) = c.auth.nonce.take() else {
            let detail = "a proof needs a challenge first (command 20)";
            return self.fail(conn, status::BAD_REQUEST, cmd, detail);
        };
        let Ok(proof) = ClientProof::parse(body) else {
            let detail = "malformed proof: [cert_len u16][cert][sig_len u16][signature]";
            return self.fail(conn, status::BAD_REQUEST, cmd, detail);
        };
        c.auth.checking = true;
        self.out.actions.push_back(TcpAction::VerifyClient {
            conn,
            cert: proof.cert.to_vec(),
            message: client_signed_message(&nonce).to_vec(),
            signature: proof.signature.to_vec(),
        });
    }

    /// The answer to [`TcpAction::VerifyClient`] for `conn`: `Ok(fingerprint)` binds the
    /// connection to that client (200, "authenticated as HEX") and reads on; `Err((status,
    /// detail))` refuses the proof (that status, normally 401, and close). Nothing is
    /// written to the store either way (docs/PROTOCOL.md §8.18).
    pub fn client_verified(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        result: Result<[u8; 32], (u16, String)>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.auth.checking = false;
        match result {
            Ok(fp) => {
                let owner = owner_name(&fp);
                let detail = format!("authenticated as {owner}");
                c.auth.client = Some(owner);
                let ok = status_bytes(status::OK, tcp::CMD_AUTH_PROOF, &detail);
                self.push_answer(conn, Answer::Ready(ok));
                self.parse(now_ms, conn);
            }
            Err((code, detail)) => self.fail(conn, code, tcp::CMD_AUTH_PROOF, &detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owner_name;

    #[test]
    fn the_owner_is_the_fingerprint_in_lowercase_hex() {
        let mut fp = [0u8; 32];
        fp[0] = 0xab;
        fp[31] = 0x0f;
        let name = owner_name(&fp);
        assert_eq!(name.len(), 64);
        assert!(name.starts_with("ab00"));
        assert!(name.ends_with("000f"));
    }
}
