//! TLS on the TCP plane (docs/PROTOCOL.md §8.19, docs/SECURITY.md T12).
//!
//! - The core's decisions, on a virtual clock: a link checks the acceptor's key against the
//!   node list before it sends a byte; a server hello in clear text is refused when TLS is
//!   required; a TLS opener whose key is in the node list is authenticated without the
//!   node-key proof; an unknown key from a `--peer`'s IP is taken on first use.
//! - The real binary on loopback: a raw server hello gets 403 without `--plain-peers` and
//!   works with it (which `serve` warns about); a rustls client gets a status answer on the
//!   server's one port, where the raw framing still works; two servers federating through
//!   recording TCP proxies converge, and no contact's name or phone is in the bytes; when
//!   the proxies turn into a man in the middle with their own node identity, both servers
//!   refuse its key on their links before sending a byte: no link, nothing read, nothing
//!   relayed or injected into the link.
//!
//! Every wait has a deadline; every process is killed by its pid when dropped.

use crate::common;
use crate::common::{free_port, status_field as value, status_lines as status};

use common::{bin, field, Server};
use rendezvous::core::node::node_uid;
use rendezvous::core::tcp::{NodeSigner, Peering, TcpAction, TcpConfig, TcpCore, TcpIdentity};
use rendezvous::federation::nodelist::NodeList;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::tcp::nodelist::NodeEntry;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Deadline of one round trip or awaited line on a loaded box.
const T: Duration = Duration::from_secs(20);
/// Deadline of a convergence wait.
const CONVERGE: Duration = Duration::from_secs(60);
/// Pause between two polls of a condition (a poll interval, not a wait).
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------
// Bytes (written by hand from docs/PROTOCOL.md §8.2-§8.6)
// ---------------------------------------------------------------------------------------

/// A 257-byte hello: role, then the name NUL-padded to 256 bytes.
fn hello(role: u8, name: &str) -> Vec<u8> {
    let mut b = vec![role];
    b.extend_from_slice(name.as_bytes());
    b.resize(257, 0);
    b
}

/// HeartBeat (2): health 1, `clock`.
fn heartbeat(clock: u32) -> Vec<u8> {
    let mut b = vec![2, 1];
    b.extend_from_slice(&clock.to_be_bytes());
    b
}

/// A status frame at the start of `b`: (status, request, detail), if it is one.
fn status_frame(b: &[u8]) -> Option<(u16, u8, String)> {
    if b.len() < 5 || b[0] != 7 {
        return None;
    }
    let len = usize::from(b[4]);
    let detail = b.get(5..5 + len)?;
    Some((
        u16::from_be_bytes([b[1], b[2]]),
        b[3],
        String::from_utf8_lossy(detail).into_owned(),
    ))
}

// ---------------------------------------------------------------------------------------
// The core's decisions (virtual clock)
// ---------------------------------------------------------------------------------------

/// A node identity: its key, its entry located at `location`, and a signer.
struct NodeKey {
    id: Identity,
    entry: NodeEntry,
}

impl NodeKey {
    fn new(alias: &str, location: SocketAddr) -> NodeKey {
        let id = Identity::generate(KeyAlgorithm::Ed25519, alias).expect("node identity");
        let key = id.verifying_key().public_key().to_vec();
        let entry = NodeEntry::new(node_uid(&key), 1, alias, location.to_string(), key)
            .expect("node entry");
        NodeKey { id, entry }
    }

    fn key(&self) -> Vec<u8> {
        self.entry.public_key().to_vec()
    }
}

/// A TCP core with TLS links required, identity `me`, `--peer`s `peers`, and a node list
/// holding `known`.
fn tls_core(me: &NodeKey, peers: Vec<SocketAddr>, known: &[&NodeKey]) -> TcpCore {
    pinned_core(me, peers, known, &[])
}

/// As [`tls_core`], with `pinned` as `--peer-key`s: nothing trusted on first use.
fn pinned_core(
    me: &NodeKey,
    peers: Vec<SocketAddr>,
    known: &[&NodeKey],
    pinned: &[&NodeKey],
) -> TcpCore {
    let signer = me.id.clone();
    let cfg = TcpConfig {
        identity: TcpIdentity {
            name: me.entry.alias().into(),
            node: Some(me.entry.clone()),
            signer: Some(NodeSigner(Arc::new(move |m: &[u8]| signer.sign(m)))),
            seed: [7; 32],
        },
        peering: Peering {
            peers,
            no_mesh: true,
            tls_links: true,
            pinned_keys: pinned.iter().map(|k| k.key()).collect(),
            ..Peering::default()
        },
        ..TcpConfig::default()
    };
    let list = NodeList::from_entries(known.iter().map(|k| k.entry.clone()).collect());
    let mut core = TcpCore::new(cfg, 0, 0).with_nodes(&list.canonical_bytes(), 0);
    core.drain_store();
    core
}

fn next_connect(core: &mut TcpCore, now_ms: u64) -> (usize, SocketAddr, bool) {
    core.handle_timeout(now_ms);
    loop {
        match core.poll_action() {
            Some(TcpAction::Connect { peer, addr, tls }) => return (peer, addr, tls),
            Some(_) => {}
            None => panic!("no connect at {now_ms} ms"),
        }
    }
}

#[test]
fn a_link_refuses_an_acceptor_whose_key_the_node_list_does_not_publish_there() {
    let b_addr: SocketAddr = "192.0.2.20:4747".parse().unwrap();
    let a = NodeKey::new("a", "192.0.2.10:4747".parse().unwrap());
    let b = NodeKey::new("b", b_addr);
    let mallory = NodeKey::new("mallory", "192.0.2.66:4747".parse().unwrap());
    let mut core = tls_core(&a, vec![b_addr], &[&b]);

    let (peer, addr, tls) = next_connect(&mut core, 0);
    assert_eq!(
        (peer, addr, tls),
        (0, b_addr, true),
        "links are dialled with TLS"
    );
    // A man in the middle at B's address: closed before a byte is sent, link down.
    core.handle_connected_tls(0, peer, 1, &mallory.key());
    assert!(core.output(1).is_empty(), "bytes sent to a wrong key");
    assert_eq!(core.poll_action(), Some(TcpAction::Close(1)));
    assert!(!core.link_up(0), "a link up on a wrong key");

    // The redial after the backoff finds B itself: the hello and the proof go out.
    let (peer, _, _) = next_connect(&mut core, 10_000);
    core.handle_connected_tls(10_000, peer, 2, &b.key());
    assert!(core.link_up(0));
    assert_eq!(core.output(2).first(), Some(&1), "a server hello first");

    // An address the node list locates no server at: the key is taken on first use.
    let c_addr: SocketAddr = "192.0.2.30:4747".parse().unwrap();
    let mut core = tls_core(&a, vec![c_addr], &[&b]);
    let (peer, _, _) = next_connect(&mut core, 0);
    core.handle_connected_tls(0, peer, 3, &mallory.key());
    assert!(
        core.link_up(0),
        "no key known at that address: trust on first use"
    );
}

#[test]
fn server_hellos_over_tls_are_admitted_by_node_key_and_clear_text_is_refused() {
    let a_addr: SocketAddr = "192.0.2.10:4747".parse().unwrap();
    let a = NodeKey::new("a", a_addr);
    let b = NodeKey::new("b", "192.0.2.20:4747".parse().unwrap());
    let mallory = NodeKey::new("mallory", "192.0.2.66:4747".parse().unwrap());
    let from_a: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let frames = [hello(1, "peer"), heartbeat(0)].concat();

    // B knows A (its --peer, located at a_addr in its node list).
    let mut core = tls_core(&b, vec![a_addr], &[&a]);
    // Clear text: 403, whoever it is.
    core.handle_accept(0, 1, from_a);
    core.handle_data(0, 1, &frames);
    let (st, req, detail) = status_frame(core.output(1)).expect("a status frame");
    assert_eq!((st, req), (403, 0), "{detail}");
    assert!(detail.contains("TLS"), "{detail}");

    // Over TLS with A's key: admitted without the node-key proof; the heartbeat answered.
    core.handle_accept(0, 2, from_a);
    core.handle_secured(0, 2, Some(a.key()));
    core.handle_data(0, 2, &frames);
    assert_eq!(core.output(2), [3, 0, 0, 0, 0], "UpdateClock 0");

    // A key nobody knows from an address nobody allowed: 403.
    core.handle_accept(0, 3, "198.51.100.9:40000".parse().unwrap());
    core.handle_secured(0, 3, Some(mallory.key()));
    core.handle_data(0, 3, &frames);
    assert_eq!(status_frame(core.output(3)).map(|s| s.0), Some(403));

    // A key nobody knows from a --peer's IP: trust on first use, as in clear text (its
    // key is learned from its proof, which must then be made with that key).
    core.handle_accept(0, 4, from_a);
    core.handle_secured(0, 4, Some(mallory.key()));
    core.handle_data(0, 4, &frames);
    assert_eq!(core.output(4), [3, 0, 0, 0, 0], "admitted on first use");
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

/// The `state=` of the link to `peer` in status `lines`.
fn link_state(lines: &[String], peer: SocketAddr) -> Option<String> {
    let p = peer.to_string();
    lines
        .iter()
        .find(|l| field(l, "peer") == Some(p.as_str()))
        .and_then(|l| field(l, "state").map(str::to_string))
}

/// Writes one contact at `addr` and waits until it is durable.
fn write_contact(addr: SocketAddr, user: &str, contact: &str, phone: &str) {
    let mut c = rendezvous::client::contacts::ContactsClient::connect(addr, "tls-test", T)
        .expect("connect");
    c.update(user, contact, phone).expect("update");
    c.barrier().expect("barrier");
}

/// The users in `addr`'s contacts.
fn users(addr: SocketAddr) -> Vec<String> {
    let mut c = rendezvous::client::contacts::ContactsClient::connect(addr, "tls-list", T)
        .expect("connect");
    let list = c.list_all().expect("list");
    list.into_iter().map(|l| l.0).collect()
}

/// Polls `cond` every [`POLL`] until it holds; panics naming `what` after `within`.
fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        thread::sleep(POLL);
    }
}

/// A raw TCP connection that sends `bytes` and reads what comes back until the server
/// closes (or `T` passes).
fn raw_exchange(addr: SocketAddr, bytes: &[u8], want: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(bytes).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

#[test]
fn a_clear_text_server_hello_needs_plain_peers_which_serve_warns_about() {
    let frames = [hello(1, "raw-peer"), heartbeat(0)].concat();
    let strict = Server::start(&["--allow-peer", "127.0.0.1/32"]);
    let got = raw_exchange(strict.addr, &frames, 1 << 16);
    let (st, req, detail) = status_frame(&got).expect("a status frame");
    assert_eq!((st, req), (403, 0), "{detail}");
    assert!(detail.contains("--plain-peers"), "{detail}");
    assert!(
        !strict
            .proc
            .stderr_lines()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("--plain-peers:")),
        "a warning without --plain-peers"
    );

    let mut plain = Server::start(&["--allow-peer", "127.0.0.1/32", "--plain-peers"]);
    plain
        .proc
        .expect_stderr("the --plain-peers warning", T, |l| {
            l.contains("WARN") && l.contains("--plain-peers:") && l.contains("clear text")
        });
    let got = raw_exchange(plain.addr, &frames, 5);
    assert_eq!(
        got,
        [3, 0, 0, 0, 0],
        "the seed's server role: UpdateClock 0"
    );
}

#[test]
fn a_tls_client_gets_a_status_answer_and_the_raw_framing_still_works() {
    let server = Server::start(&[]);
    let cfg = rendezvous::net::tls::client_config(None).expect("client config");
    let name = rustls::pki_types::ServerName::IpAddress(server.addr.ip().into());
    let conn = rustls::ClientConnection::new(cfg, name).expect("client");
    let sock = TcpStream::connect(server.addr).expect("connect");
    sock.set_read_timeout(Some(T)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(&[hello(2, "tls-client"), vec![6]].concat())
        .expect("hello and Status over TLS");
    let mut head = [0u8; 5];
    tls.read_exact(&mut head).expect("status answer head");
    assert_eq!(head[0], 6, "a status answer");
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut text = vec![0u8; len];
    tls.read_exact(&mut text).expect("status answer text");
    let text = String::from_utf8(text).expect("UTF-8");
    assert!(
        text.contains("clock=0\n") && text.contains("contacts=0\n"),
        "{text}"
    );
    let version = tls.conn.protocol_version();
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));

    // The same port, clear text, as the seed.
    let mut c = rendezvous::client::contacts::ContactsClient::connect(server.addr, "raw", T)
        .expect("raw connect");
    assert!(c.status().expect("raw status").contains("clock=0"));
}

/// What a proxy does with the connections it accepts.
const TRANSPARENT: usize = 0;
const MITM: usize = 1;

/// A TCP proxy on loopback in front of `upstream`: transparent (every byte copied and
/// recorded), or a man in the middle that terminates TLS with its own node identity.
struct Proxy {
    addr: SocketAddr,
    /// What its threads share: the mode, what crossed, the open sockets.
    ctx: ProxyCtx,
}

impl Proxy {
    fn start(upstream: SocketAddr, mitm: Identity) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).unwrap();
        let ctx = ProxyCtx {
            upstream,
            mitm,
            mode: Arc::new(AtomicUsize::new(TRANSPARENT)),
            seen: Arc::default(),
            open: Arc::default(),
            mitm_handshakes: Arc::default(),
            mitm_plain: Arc::default(),
            stop: Arc::default(),
        };
        let p = Proxy {
            addr: listener.local_addr().unwrap(),
            ctx: ctx.clone(),
        };
        thread::spawn(move || {
            while !ctx.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let ctx = ctx.clone();
                        thread::spawn(move || ctx.serve(s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        p
    }

    /// Turns into a man in the middle and cuts the connections open now.
    fn become_mitm(&self) {
        self.ctx.mode.store(MITM, Ordering::Relaxed);
        for s in self.ctx.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.ctx.stop.store(true, Ordering::Relaxed);
        for s in self.ctx.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[derive(Clone)]
struct ProxyCtx {
    upstream: SocketAddr,
    mitm: Identity,
    mode: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    mitm_handshakes: Arc<AtomicUsize>,
    mitm_plain: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl ProxyCtx {
    fn serve(&self, down: TcpStream) {
        if self.mode.load(Ordering::Relaxed) == MITM {
            return self.mitm(down);
        }
        let Ok(up) = TcpStream::connect(self.upstream) else {
            return;
        };
        for s in [&down, &up] {
            self.open.lock().unwrap().push(s.try_clone().unwrap());
        }
        let pump = |mut from: TcpStream, mut to: TcpStream, seen: Arc<Mutex<Vec<Vec<u8>>>>| {
            let slot = {
                let mut v = seen.lock().unwrap();
                v.push(Vec::new());
                v.len() - 1
            };
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
                seen.lock().unwrap()[slot].extend_from_slice(&buf[..n]);
            }
            let _ = to.shutdown(Shutdown::Both);
        };
        let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
        let seen = Arc::clone(&self.seen);
        thread::spawn(move || pump(d2, u2, seen));
        pump(up, down, Arc::clone(&self.seen));
    }

    /// Terminates the downstream's TLS with the proxy's own node identity and records
    /// what the downstream says in plaintext (to relay it upstream, were there any).
    fn mitm(&self, down: TcpStream) {
        down.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let cfg = rendezvous::net::tls::server_config(&self.mitm).expect("mitm server");
        let conn = rustls::ServerConnection::new(cfg).expect("mitm server conn");
        let mut down = rustls::StreamOwned::new(conn, down);
        while down.conn.is_handshaking() {
            if down.conn.complete_io(&mut down.sock).is_err() {
                return;
            }
        }
        self.mitm_handshakes.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 4096];
        while let Ok(n) = down.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.mitm_plain.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    }
}

/// Two servers A and B, each reachable only through its proxy (each announces its
/// proxy's address and names the other's proxy with `--peer`).
fn proxied_pair() -> (Server, Server, Proxy, Proxy) {
    let mitm = Identity::generate(KeyAlgorithm::Ed25519, "mallory").expect("mitm identity");
    for _ in 0..5 {
        let (pa, pb) = (free_port(), free_port());
        let a_addr: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
        let b_addr: SocketAddr = format!("127.0.0.1:{pb}").parse().unwrap();
        let (proxy_a, proxy_b) = (
            Proxy::start(a_addr, mitm.clone()),
            Proxy::start(b_addr, mitm.clone()),
        );
        let cmd = |alias: &str, listen: SocketAddr, own: &Proxy, other: &Proxy| {
            let mut cmd = bin();
            // --open-contacts: the test writes and lists contacts by name without a proof
            // (docs/PROTOCOL.md §8.18); what it checks is the links.
            cmd.args([
                "serve",
                "--memory-only",
                "--open-contacts",
                "--alias",
                alias,
            ])
            .args(["--listen", &listen.to_string()])
            .args(["--announce", &own.addr.to_string()])
            .args(["--peer", &other.addr.to_string()]);
            cmd
        };
        let Ok(a) = Server::try_spawn("tls-a", cmd("tls-a", a_addr, &proxy_a, &proxy_b)) else {
            continue;
        };
        let Ok(b) = Server::try_spawn("tls-b", cmd("tls-b", b_addr, &proxy_b, &proxy_a)) else {
            continue;
        };
        return (a, b, proxy_a, proxy_b);
    }
    panic!("could not start two proxied servers");
}

const SECRETS: [&str; 6] = [
    "alice-secret-user",
    "bob-secret-contact",
    "555-0199-7",
    "carol-secret-user",
    "dave-secret-contact",
    "555-0177-3",
];

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn federation_over_tls_hides_contacts_and_refuses_a_man_in_the_middle() {
    let (mut a, mut b, proxy_a, proxy_b) = proxied_pair();
    write_contact(a.addr, SECRETS[0], SECRETS[1], SECRETS[2]);
    write_contact(b.addr, SECRETS[3], SECRETS[4], SECRETS[5]);
    wait_until("A and B converge through the proxies", CONVERGE, || {
        let (sa, sb) = (status(a.addr), status(b.addr));
        value(&sa, "contacts") == "2"
            && value(&sb, "contacts") == "2"
            && value(&sa, "contacts_sha512") == value(&sb, "contacts_sha512")
            && link_state(&sa, proxy_b.addr).as_deref() == Some("up")
            && link_state(&sb, proxy_a.addr).as_deref() == Some("up")
    });
    // Every byte the proxies carried: TLS records, no contact in them.
    for proxy in [&proxy_a, &proxy_b] {
        let seen = proxy.ctx.seen.lock().unwrap();
        let streams: Vec<&Vec<u8>> = seen.iter().filter(|s| !s.is_empty()).collect();
        assert!(
            streams.len() >= 2,
            "both directions of a link crossed the proxy"
        );
        for s in &streams {
            assert_eq!(
                s[0], 0x16,
                "a stream that does not start with a TLS handshake"
            );
            for secret in SECRETS {
                assert!(!contains(s, secret), "{secret:?} in clear on the wire");
            }
        }
        let total: usize = streams.iter().map(|s| s.len()).sum();
        eprintln!(
            "tls: {total} bytes crossed proxy {}, none of the contacts in clear",
            proxy.addr
        );
    }

    // The proxies turn into a man in the middle with a node identity of their own.
    proxy_a.become_mitm();
    proxy_b.become_mitm();
    write_contact(a.addr, "alice-after", "x", "1");
    write_contact(b.addr, "carol-after", "y", "2");
    wait_until("both servers refuse the MITM's key twice", CONVERGE, || {
        let refused = |s: &Server| {
            s.proc
                .stderr_lines()
                .iter()
                .filter(|l| l.contains("link refused"))
                .count()
        };
        refused(&a) >= 2 && refused(&b) >= 2
    });
    for proxy in [&proxy_a, &proxy_b] {
        assert!(proxy.ctx.mitm_handshakes.load(Ordering::Relaxed) >= 1);
        let plain = proxy.ctx.mitm_plain.lock().unwrap();
        assert!(
            plain.is_empty(),
            "the MITM read {} bytes of plaintext",
            plain.len()
        );
    }
    assert!(
        !users(a.addr).contains(&"carol-after".to_string()),
        "crossed the MITM"
    );
    assert!(
        !users(b.addr).contains(&"alice-after".to_string()),
        "crossed the MITM"
    );
    a.proc.kill();
    b.proc.kill();
}

#[test]
fn with_pinned_peer_keys_nothing_is_trusted_on_first_use() {
    let a_addr: SocketAddr = "192.0.2.10:4747".parse().unwrap();
    let a = NodeKey::new("a", a_addr);
    let b = NodeKey::new("b", "192.0.2.20:4747".parse().unwrap());
    let mallory = NodeKey::new("mallory", "192.0.2.66:4747".parse().unwrap());
    let from_a: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let frames = [hello(1, "peer"), heartbeat(0)].concat();

    // B has A as its --peer and A's key pinned, and knows nothing else yet.
    let mut core = pinned_core(&b, vec![a_addr], &[], &[&a]);
    // Mallory at A's address (a man in the middle on A's path), with its own key: in
    // trust-on-first-use mode it would be admitted; pinned, it is refused.
    core.handle_accept(0, 1, from_a);
    core.handle_secured(0, 1, Some(mallory.key()));
    core.handle_data(0, 1, &frames);
    let (st, _, detail) = status_frame(core.output(1)).expect("a status frame");
    assert_eq!(st, 403, "{detail}");
    // A itself, from anywhere: authenticated by its pinned key.
    core.handle_accept(0, 2, "198.51.100.3:40000".parse().unwrap());
    core.handle_secured(0, 2, Some(a.key()));
    core.handle_data(0, 2, &frames);
    assert_eq!(core.output(2), [3, 0, 0, 0, 0], "A is admitted");

    // B's link to A: mallory answering at A's address is refused, though the node list
    // locates nobody there; A's pinned key is taken.
    let (peer, _, _) = next_connect(&mut core, 0);
    core.handle_connected_tls(0, peer, 3, &mallory.key());
    assert!(!core.link_up(0), "no first use with pinned keys");
    let (peer, _, _) = next_connect(&mut core, 10_000);
    core.handle_connected_tls(10_000, peer, 4, &a.key());
    assert!(core.link_up(0));
}

/// The `node key=` a server printed at start.
fn node_key(s: &Server) -> String {
    s.proc
        .out
        .history()
        .iter()
        .find_map(|l| l.strip_prefix("node key=").map(str::to_string))
        .expect("serve prints node key=")
}

#[test]
fn peer_key_pins_a_link_and_bad_keys_are_refused_at_start() {
    let s0 = Server::start(&["--allow-peer", "127.0.0.1/32"]);
    let key = node_key(&s0);
    assert_eq!(key.len(), 64, "{key}");
    let peer = s0.addr.to_string();
    // Pinned to s0's key: the link comes up.
    let good = Server::start(&["--peer", &peer, "--peer-key", &key]);
    // Pinned to another key: s0 answers with its own, the link is refused.
    let wrong = "ab".repeat(32);
    let bad = Server::start(&["--peer", &peer, "--peer-key", &wrong]);
    let deadline = Instant::now() + T;
    while link_state(&status(good.addr), s0.addr).as_deref() != Some("up") {
        assert!(Instant::now() < deadline, "the pinned link never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The wrongly pinned link is refused at every attempt (redialled after its backoff):
    // wait for two refusals, then it is still not up.
    let refusals = |s: &Server| {
        s.proc
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("link refused"))
            .count()
    };
    while refusals(&bad) < 2 {
        assert!(Instant::now() < deadline, "{:?}", bad.proc.stderr_lines());
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = link_state(&status(bad.addr), s0.addr);
    assert_ne!(st.as_deref(), Some("up"), "a link up on a key not pinned");
    // A key that is not 64 hex digits, or pinned keys in clear text: refused at start.
    for extra in [
        &["--peer-key", "xyz"][..],
        &["--peer-key", &key, "--plain-peers"][..],
    ] {
        let mut cmd = bin();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--memory-only"])
            .args(extra);
        let done = common::run("serve", cmd, T);
        assert_ne!(done.status.code(), Some(0), "{extra:?}: {done:?}");
    }
}
