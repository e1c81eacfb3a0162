//! The authenticated contacts plane against the real binary (docs/PROTOCOL.md §8.18): a
//! default server answers a client that has not proved its certificate key with a status
//! frame and closes; a client that has proved it reads and writes its own contacts only,
//! across federated servers too; `status` stays open; `--open-contacts` keeps the design
//! notes' open client role and warns.

use crate::common::{self, bin, run, Identity, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn contacts(server: SocketAddr, args: &[&str]) -> common::Finished {
    let mut cmd = bin();
    cmd.args(["contacts", args[0], "--server", &server.to_string()])
        .args(&args[1..]);
    run(&format!("contacts {}", args[0]), cmd, T)
}

fn as_id(id: &Identity) -> &str {
    id.dir.to_str().expect("a UTF-8 temp path")
}

/// A client-role hello, then `bytes`; everything the server writes until it closes.
fn raw_client(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    let mut hello = vec![2u8];
    hello.resize(257, 0);
    s.write_all(&hello).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("the server closes");
    out
}

#[test]
fn each_identity_reads_and_writes_only_its_own_contacts() {
    let server = Server::start(&[]);
    let (a, b) = (Identity::new("alice"), Identity::new("bob"));
    contacts(
        server.addr,
        &["update", "--identity", as_id(&a), "carol", "+1-555-0111"],
    )
    .assert_success("alice writes");
    contacts(
        server.addr,
        &["update", "--identity", as_id(&b), "dave", "+1-555-0222"],
    )
    .assert_success("bob writes");
    let mine = contacts(server.addr, &["list", "--identity", as_id(&a)]);
    mine.assert_success("alice lists");
    assert_eq!(
        mine.stdout,
        [format!("{}\tcarol\t+1-555-0111", a.fingerprint)]
    );
    let theirs = contacts(server.addr, &["list", "--identity", as_id(&b)]);
    assert_eq!(
        theirs.stdout,
        [format!("{}\tdave\t+1-555-0222", b.fingerprint)]
    );
    // Without a proof: refused, and the CLI says so with a nonzero exit.
    let all = contacts(server.addr, &["list", "--all"]);
    assert_ne!(all.status.code(), Some(0), "{all:?}");
    let open = contacts(
        server.addr,
        &["update", "--user", &b.fingerprint, "eve", "666"],
    );
    assert_ne!(open.status.code(), Some(0), "{open:?}");
    // The status needs no proof, and names no contact.
    let mut cmd = bin();
    cmd.args(["status", "--server", &server.addr.to_string()]);
    let st = run("status", cmd, T);
    st.assert_success("status without a proof");
    assert!(
        st.stdout.iter().any(|l| l.starts_with("contacts=2")),
        "{st:?}"
    );
    let text = st.stdout.join("\n");
    for secret in ["carol", "dave", "+1-555-0111", "+1-555-0222", "eve"] {
        assert!(!text.contains(secret), "status shows {secret}: {text}");
    }
    let theirs = contacts(server.addr, &["list", "--identity", as_id(&b)]);
    assert_eq!(theirs.stdout.len(), 1, "the refused write changed nothing");
}

#[test]
fn an_unauthenticated_client_gets_401_and_the_connection_closes() {
    let server = Server::start(&[]);
    let mut update = vec![1u8];
    update.extend(b"alice");
    update.resize(1 + 532, 0);
    let t0 = Instant::now();
    let out = raw_client(server.addr, &update);
    let ms = t0.elapsed().as_millis();
    assert!(
        out.len() >= 5 && out[0] == 0x07,
        "a status frame: {out:02x?}"
    );
    assert_eq!(u16::from_be_bytes([out[1], out[2]]), 401);
    assert_eq!(out[3], 1, "refusing the Update");
    assert_eq!(out.len(), 5 + usize::from(out[4]), "then nothing: closed");
    let out = raw_client(server.addr, &[2]);
    assert_eq!(u16::from_be_bytes([out[1], out[2]]), 401, "ListAll too");
    println!("figure: unauthenticated Update and ListAll: 401 and close in {ms} ms");
    let mut cmd = bin();
    cmd.args(["status", "--server", &server.addr.to_string()]);
    let st = run("status", cmd, T);
    assert!(
        st.stdout.iter().any(|l| l.starts_with("contacts=0")),
        "{st:?}"
    );
}

#[test]
fn open_contacts_keeps_the_seed_client_role_and_warns() {
    let mut server = Server::start(&["--open-contacts"]);
    contacts(server.addr, &["update", "--user", "alice", "bob", "555"])
        .assert_success("an open write");
    let id = Identity::new("carol");
    contacts(
        server.addr,
        &["update", "--identity", as_id(&id), "dan", "777"],
    )
    .assert_success("an authenticated write on an open server");
    let all = contacts(server.addr, &["list", "--all"]);
    all.assert_success("an open list");
    assert_eq!(all.stdout.len(), 2, "{all:?}");
    assert!(all.stdout.contains(&"alice\tbob\t555".to_string()));
    // An identity that proved its key is scoped even here.
    let mine = contacts(server.addr, &["list", "--identity", as_id(&id)]);
    assert_eq!(mine.stdout, [format!("{}\tdan\t777", id.fingerprint)]);
    server
        .proc
        .expect_stderr("the --open-contacts warning", T, |l| {
            l.contains("WARN") && l.contains("--open-contacts")
        });
    server.proc.kill();
}

#[test]
fn a_clients_contacts_follow_it_to_a_federated_server() {
    let s0 = Server::start(&["--alias", "s0", "--allow-peer", "127.0.0.0/8"]);
    let peer = s0.addr.to_string();
    let s1 = Server::start(&["--alias", "s1", "--peer", &peer]);
    let id = Identity::new("roamer");
    contacts(
        s0.addr,
        &["update", "--identity", as_id(&id), "home", "123"],
    )
    .assert_success("write at s0");
    let want = [format!("{}\thome\t123", id.fingerprint)];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let at_s1 = contacts(s1.addr, &["list", "--identity", as_id(&id)]);
        if at_s1.stdout == want {
            break;
        }
        assert!(Instant::now() < deadline, "never reached s1: {at_s1:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn over_tls_the_cli_authenticates_and_a_relayed_challenge_is_not_signed() {
    let server = Server::start(&[]);
    let id = Identity::new("tls-alice");
    let addr = server.addr;
    contacts(
        addr,
        &[
            "update",
            "--tls",
            "--identity",
            as_id(&id),
            "bob",
            "+1-555-0100",
        ],
    )
    .assert_success("a write over TLS");
    let mine = contacts(addr, &["list", "--tls", "--identity", as_id(&id)]);
    assert_eq!(
        mine.stdout,
        [format!("{}\tbob\t+1-555-0100", id.fingerprint)]
    );
    let mut cmd = bin();
    cmd.args(["status", "--tls", "--server", &addr.to_string()]);
    run("status --tls", cmd, T).assert_success("status over TLS");
    // A man in the middle terminates the client's TLS with a key of its own and relays
    // the bytes to the server: the server's challenge names the server's uid, not the
    // relay's key, so the client signs nothing and the write never happens.
    let relay = tls_relay(addr);
    let done = contacts(
        relay,
        &["update", "--tls", "--identity", as_id(&id), "eve", "666"],
    );
    assert_ne!(done.status.code(), Some(0), "{done:?}");
    assert!(
        done.stderr.iter().any(|l| l.contains("not bound")),
        "{:?}",
        done.stderr
    );
    let mine = contacts(addr, &["list", "--tls", "--identity", as_id(&id)]);
    assert_eq!(mine.stdout.len(), 1, "nothing written through the relay");
}

/// A man in the middle for one connection: TLS toward the client with its own node key,
/// the bytes relayed in clear to `server`. Stops when either side closes, or after `T`.
fn tls_relay(server: SocketAddr) -> SocketAddr {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let Ok((sock, _)) = listener.accept() else {
            return;
        };
        let id = rendezvous::identity::Identity::generate(
            rendezvous::identity::KeyAlgorithm::Ed25519,
            "relay",
        )
        .expect("identity");
        let cfg = rendezvous::net::tls::server_config(&id).expect("server config");
        let conn = rustls::ServerConnection::new(cfg).expect("server connection");
        let tick = Some(Duration::from_millis(10));
        sock.set_read_timeout(tick).unwrap();
        let mut down = rustls::StreamOwned::new(conn, sock);
        let mut up = TcpStream::connect(server).expect("connect to the server");
        up.set_read_timeout(tick).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let end = Instant::now() + T;
        while Instant::now() < end {
            match down.read(&mut buf) {
                Ok(0) => return,
                Ok(n) if up.write_all(&buf[..n]).is_err() => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => {}
                Err(_) => return,
            }
            match up.read(&mut buf) {
                Ok(0) => return,
                Ok(n) if down.write_all(&buf[..n]).is_err() => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => {}
                Err(_) => return,
            }
        }
    });
    addr
}
