//! Authenticated clients (docs/PROTOCOL.md §8.18), the default contacts plane: without a
//! proof only Status, a proof of the certificate key reaches only the client's own
//! contacts, and bad or unchallenged proofs are refused.

use super::*;

/// The client-role proof frame, built by hand: `15 [len u16][cert_len u16][cert][sig_len
/// u16][signature]`.
fn client_proof(cert: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut body = (cert.len() as u16).to_be_bytes().to_vec();
    body.extend(cert);
    body.extend((sig.len() as u16).to_be_bytes());
    body.extend(sig);
    let mut v = vec![0x15];
    v.extend((body.len() as u16).to_be_bytes());
    v.extend(body);
    v
}

/// What a client signs for `nonce`: "rendezvous client auth v1" || nonce.
fn client_signed(nonce: &[u8]) -> Vec<u8> {
    let mut m = b"rendezvous client auth v1".to_vec();
    m.extend(nonce);
    m
}

impl Node {
    /// Carries out the core's certificate checks as the UDP plane would (the full check
    /// of docs/PROTOCOL.md §5.4 at the real time, then the signature); returns how many.
    fn verify_clients(&mut self) -> usize {
        let mut n = 0;
        for a in self.actions() {
            if let TcpAction::VerifyClient {
                conn,
                cert,
                message,
                signature,
            } = a
            {
                n += 1;
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let r = match rendezvous::identity::verify_self_signed(&cert, unix) {
                    Ok(vc) if vc.key.verify(&message, &signature).is_ok() => Ok(vc.fingerprint.0),
                    Ok(_) => Err((401, "bad signature".to_string())),
                    Err(e) => Err((401, e.to_string())),
                };
                let now = self.now;
                self.core.client_verified(now, conn, r);
                self.settle();
            }
        }
        n
    }
}

/// A default (authenticated) node holding alice's contact and two of `owner`'s.
fn authenticated_node(owner: &str) -> Node {
    let mut n = Node::new(TcpConfig::default(), 0);
    n.seed(&[
        contact("alice", "bob", "111", 1),
        contact(owner, "carol", "222", 2),
        contact(owner, "dave", "333", 3),
    ]);
    n
}

#[test]
fn without_a_proof_a_client_gets_401_and_changes_nothing_but_may_ask_the_status() {
    let id = rendezvous::identity::Identity::generate(
        rendezvous::identity::KeyAlgorithm::Ed25519,
        "auth-test",
    )
    .unwrap();
    let mut n = authenticated_node(&id.fingerprint().to_hex());
    let before = n.contacts();
    // An Update before any proof: 401 for its command byte, and close.
    n.client(1);
    n.send(1, &client_update("alice", "bob", "999"));
    let st = status_frame(&n.read(1));
    assert_eq!((st.status, st.request), (401, 0x01), "{st:?}");
    assert!(n.closed(1));
    // A ListAll likewise: no snapshot is taken.
    n.client(2);
    n.send(2, &[LIST_ALL]);
    assert_eq!(status_frame(&n.read(2)).status, 401);
    assert!(!n
        .log
        .iter()
        .any(|r| matches!(r, StoreRequest::Snapshot { .. })));
    // The status needs no proof (a health check).
    n.client(3);
    n.send(3, &[0x06]);
    for a in n.actions() {
        if let TcpAction::DirectoryDigest { tag } = a {
            let now = n.now;
            n.core.handle_directory_digest(now, tag, 0, &[0; 64]);
            n.settle();
        }
    }
    let out = n.read(3);
    assert_eq!(out[0], 0x06, "a status text answer: {out:02x?}");
    assert!(!n.closed(3));
    assert_eq!(n.contacts(), before, "nothing changed");
    assert!(!n
        .log
        .iter()
        .any(|r| matches!(r, StoreRequest::Apply { .. })));
}

#[test]
fn a_client_proves_its_key_and_reads_and_writes_only_its_own_contacts() {
    let id = rendezvous::identity::Identity::generate(
        rendezvous::identity::KeyAlgorithm::Ed25519,
        "auth-test",
    )
    .unwrap();
    let owner = id.fingerprint().to_hex();
    let mut n = authenticated_node(&owner);
    n.client(1);
    n.send(1, &[0x14]);
    let answer = n.read(1);
    assert_eq!(answer.len(), 33, "[20][nonce 32]: {answer:02x?}");
    assert_eq!(answer[0], 0x14);
    assert_eq!(
        &answer[1..17],
        &[0; 16],
        "no node identity: the uid part is zero"
    );
    let sig = id.sign(&client_signed(&answer[1..]));
    // The proof, then a ListAll, an Update of its own and one of alice's, pipelined: the
    // commands after the proof wait for the check.
    let mut bytes = client_proof(id.cert_der(), &sig);
    bytes.push(LIST_ALL);
    bytes.extend(client_update(&owner, "erin", "444"));
    bytes.push(BARRIER);
    n.send(1, &bytes);
    assert_eq!(n.pending(1), 0, "nothing before the check");
    assert!(!n
        .log
        .iter()
        .any(|r| matches!(r, StoreRequest::Snapshot { .. })));
    assert_eq!(n.verify_clients(), 1);
    let out = n.read(1);
    let ok_len = 5 + usize::from(out[4]);
    let ok = status_frame(&out[..ok_len]);
    assert_eq!((ok.status, ok.request), (200, 0x15));
    assert_eq!(ok.detail, format!("authenticated as {owner}"));
    // Its own two contacts only, then the barrier's 200.
    let rest = &out[ok_len..];
    assert_eq!(
        &rest[..4],
        &[0, 0, 0, 2][..],
        "count 2: {:02x?}",
        &rest[..4]
    );
    assert_eq!(
        &rest[4..4 + CLIENT_RECORD],
        &client_update(&owner, "carol", "222")[..]
    );
    let second = &rest[4 + CLIENT_RECORD..4 + 2 * CLIENT_RECORD];
    assert_eq!(second, &client_update(&owner, "dave", "333")[..]);
    assert_eq!(&rest[4 + 2 * CLIENT_RECORD..], &BARRIER_OK[..]);
    assert!(n
        .contacts()
        .iter()
        .any(|c| c.username == owner && c.contact == "erin" && c.phone == "444"));
    assert!(n.log.iter().any(|r| matches!(
        r,
        StoreRequest::Snapshot { owner: Some(o), .. } if *o == owner
    )));
    // Someone else's contact: 403, close, nothing written.
    let before = n.contacts();
    n.send(1, &client_update("alice", "bob", "999"));
    let st = status_frame(&n.read(1));
    assert_eq!((st.status, st.request), (403, 0x01), "{st:?}");
    assert!(n.closed(1));
    assert_eq!(n.contacts(), before);
}

#[test]
fn a_bad_proof_is_401_and_a_proof_without_a_challenge_is_400() {
    let id = rendezvous::identity::Identity::generate(
        rendezvous::identity::KeyAlgorithm::EcdsaP256,
        "auth-test",
    )
    .unwrap();
    let mut n = authenticated_node(&id.fingerprint().to_hex());
    // Signed over another nonce (a replayed proof from another connection).
    n.client(1);
    n.send(1, &[0x14]);
    let nonce = n.read(1);
    let mut other = nonce[1..].to_vec();
    other[31] ^= 1;
    let mut bytes = client_proof(id.cert_der(), &id.sign(&client_signed(&other)));
    bytes.push(LIST_ALL);
    n.send(1, &bytes);
    assert_eq!(n.verify_clients(), 1);
    let st = status_frame(&n.read(1));
    assert_eq!((st.status, st.request), (401, 0x15), "{st:?}");
    assert!(n.closed(1));
    // A proof with no challenge before it: refused at once, nothing to check.
    n.client(2);
    n.send(2, &client_proof(id.cert_der(), &[1; 64]));
    assert_eq!(n.verify_clients(), 0);
    let st = status_frame(&n.read(2));
    assert_eq!((st.status, st.request), (400, 0x15), "{st:?}");
    // Garbage where the certificate belongs: 401 from the check, the same as a bad key.
    n.client(3);
    n.send(3, &[0x14]);
    let nonce = n.read(3);
    let sig = id.sign(&client_signed(&nonce[1..]));
    n.send(3, &client_proof(&[0x30, 0x03, 1, 2, 3], &sig));
    assert_eq!(n.verify_clients(), 1);
    assert_eq!(status_frame(&n.read(3)).status, 401);
    assert!(!n
        .log
        .iter()
        .any(|r| matches!(r, StoreRequest::Apply { .. })));
}
