//! The real `rendezvous` binary on loopback: registration, lookup, relay, offline queueing,
//! replay and wrong-key refusals, TTL expiry, restart detection, openssl-made identities.
//! Every wait is an event with a deadline; the only wall-clock waits are the ones the
//! behaviour under test is about (TTL expiry).

use crate::common;

use common::{bin, field, Proc, Server};
use rendezvous::client::{Client, Incoming};
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::wire::udp::root::{signed_message, PARAM_TO_SERVER};
use rendezvous::wire::udp::{LookupStatus, Payload, Register};
use rendezvous::wire::{Fingerprint, PacketType, RootHeader};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const T: Duration = Duration::from_secs(5);

fn client(server: &Server, alg: KeyAlgorithm) -> Client {
    let id = Identity::generate(alg, "test").expect("identity");
    Client::new(server.addr, id, Some("127.0.0.1:0".parse().unwrap())).expect("socket")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits for the next arrival matching `pred`, skipping others, until the deadline.
fn wait_for(c: &mut Client, what: &str, pred: impl FnMut(&Incoming) -> bool) -> Incoming {
    crate::common::next_arrival(c, what, T, pred)
}

/// Looks `target` up from `c` and returns the status.
fn status_of(c: &mut Client, target: Fingerprint) -> LookupStatus {
    c.lookup(target, T).expect("lookup answer").0
}

/// Privacy (docs/SECURITY.md): a lookup answers the exact fingerprint asked for and no
/// other (one bit off is "unknown", with no address), and at the default log level the
/// server's log carries no client address, whatever the clients do (register, look up,
/// send garbage, open TCP connections, try the server role).
#[test]
fn lookups_reveal_only_the_exact_fingerprint_and_logs_carry_no_client_address() {
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--memory-only"])
        .env_remove("RUST_LOG");
    let server = Server::spawn("server", cmd);
    let mut a = client(&server, KeyAlgorithm::Ed25519);
    let mut b = client(&server, KeyAlgorithm::Ed25519);
    a.register(3, T).expect("A registers").expect("OK payload");
    b.register(3, T).expect("B registers").expect("OK payload");
    let fb = b.identity().fingerprint();
    let mut near = fb;
    near.0[31] ^= 1;
    assert!(
        matches!(status_of(&mut a, fb), LookupStatus::Online { addr, .. } if addr == b.local_addr().unwrap())
    );
    assert_eq!(status_of(&mut a, near), LookupStatus::Unknown);
    // Things an operator's log might mention.
    let junk = UdpSocket::bind("127.0.0.1:0").expect("socket");
    for bytes in [
        &b"garbage"[..],
        &[0x02, 0x02, 0xff, 0xff][..],
        &[0u8; 1500][..],
    ] {
        junk.send_to(bytes, server.addr).expect("send");
    }
    let mut tcp = std::net::TcpStream::connect(server.addr).expect("tcp");
    let mut hello = vec![1u8]; // the server role, from an address that is no peer
    hello.extend_from_slice(&[0u8; 256]);
    std::io::Write::write_all(&mut tcp, &hello).expect("hello");
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut tcp, &mut answer); // 403, then close
    assert_eq!(answer.first(), Some(&0x07), "a status frame");
    // One more round trip: everything above has been handled (and logged) by now.
    assert!(matches!(
        status_of(&mut b, a.identity().fingerprint()),
        LookupStatus::Online { .. }
    ));
    let common::Server { proc, .. } = server;
    let mut proc = proc;
    proc.kill();
    let log = proc.finish(T).stderr;
    let ports = [
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
        junk.local_addr().unwrap().port(),
        tcp.local_addr().unwrap().port(),
    ];
    println!(
        "privacy: {} log lines, none with a client address",
        log.len()
    );
    for line in &log {
        for p in ports {
            assert!(
                !line.contains(&format!("127.0.0.1:{p}")),
                "a client address in the log: {line}"
            );
        }
    }
}

#[test]
fn two_clients_look_each_other_up_and_relay() {
    let server = Server::start(&[]);
    let mut a = client(&server, KeyAlgorithm::Ed25519);
    let mut b = client(&server, KeyAlgorithm::EcdsaP256);
    let ok_a = a.register(3, T).expect("A registers").expect("OK payload");
    let ok_b = b.register(3, T).expect("B registers").expect("OK payload");
    assert_eq!(ok_a.reflexive, a.local_addr().unwrap());
    assert_eq!(ok_a.boot_epoch, ok_b.boot_epoch);
    let (fa, fb) = (a.identity().fingerprint(), b.identity().fingerprint());

    match a.lookup(fb, T).expect("answer") {
        (LookupStatus::Online { addr, .. }, home) => {
            assert_eq!(addr, b.local_addr().unwrap());
            assert_eq!(home, "rendezvous");
        }
        other => panic!("B should be online: {other:?}"),
    }
    // B is told to punch toward A.
    let punch = wait_for(&mut b, "punch request", |m| {
        matches!(m, Incoming::Punch { .. })
    });
    assert_eq!(
        punch,
        Incoming::Punch {
            peer: fa,
            addr: a.local_addr().unwrap()
        }
    );
    assert!(
        matches!(status_of(&mut b, fa), LookupStatus::Online { addr, .. } if addr == a.local_addr().unwrap())
    );

    a.send_event(fb, b"hello B").unwrap();
    let ev = wait_for(&mut b, "relayed event", |m| {
        matches!(m, Incoming::Relay { .. })
    });
    assert_eq!(
        ev,
        Incoming::Relay {
            from: fa,
            event: b"hello B".to_vec()
        }
    );
}

#[test]
fn cli_register_lookup_send() {
    let server = Server::start(&[]);
    let srv = server.addr.to_string();
    let a = common::Identity::new("a");
    let b = common::Identity::new("b");
    let mut cmd = bin();
    cmd.args(["register", "--server", &srv, "--identity"])
        .arg(a.dir_arg());
    let mut reg = Proc::spawn("register-a", cmd);
    let line = reg
        .out
        .expect("registered line", T, |l| l.starts_with("registered "));
    assert_eq!(field(&line, "fingerprint"), Some(a.fingerprint.as_str()));
    let public = field(&line, "public").unwrap().to_string();

    let mut cmd = bin();
    cmd.args(["lookup", "--server", &srv, "--identity"])
        .arg(b.dir_arg())
        .arg(&a.fingerprint);
    let done = common::run("lookup", cmd, T * 2);
    done.assert_success("lookup");
    let ans = done.stdout.join("\n");
    assert!(ans.starts_with("online "), "{ans}");
    assert_eq!(field(&ans, "addr"), Some(public.as_str()));

    let mut cmd = bin();
    cmd.args(["send", "--server", &srv, "--identity"])
        .arg(b.dir_arg())
        .args([&a.fingerprint, "hi from the CLI"]);
    common::run("send", cmd, T * 2).assert_success("send");
    let ev = reg.out.expect("event line", T, |l| l.starts_with("event "));
    assert_eq!(field(&ev, "from"), Some(b.fingerprint.as_str()));
    assert_eq!(field(&ev, "text"), Some("hi from the CLI"));

    // A fingerprint nobody registered is unknown.
    let mut cmd = bin();
    cmd.args(["lookup", "--server", &srv, "--identity"])
        .arg(b.dir_arg())
        .arg("00".repeat(32));
    let done = common::run("lookup-unknown", cmd, T * 2);
    assert_eq!(done.stdout, vec!["unknown".to_string()]);
}

#[test]
fn offline_client_gets_event_when_it_registers_again() {
    let server = Server::start(&["--ttl", "3", "--keepalive", "1"]);
    let mut a = client(&server, KeyAlgorithm::Ed25519);
    let mut b = client(&server, KeyAlgorithm::Ed25519);
    a.register(3, T).unwrap();
    b.register(3, T).unwrap();
    let fa = a.identity().fingerprint();
    // A stops keeping alive; B keeps alive and waits until the server says A is offline.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        b.keepalive().unwrap();
        if matches!(status_of(&mut b, fa), LookupStatus::Offline { .. }) {
            break;
        }
        assert!(Instant::now() < deadline, "A never went offline");
        let _ = b.recv(Duration::from_millis(500)).unwrap();
    }
    b.send_event(fa, b"while you were away").unwrap();
    b.send_event(fa, b"second").unwrap();
    // Nothing reaches A while it is offline ...
    // ... and both events arrive, in order, right after it registers again.
    a.register(3, T).unwrap();
    let e1 = wait_for(&mut a, "first queued event", |m| {
        matches!(m, Incoming::Relay { .. })
    });
    let e2 = wait_for(&mut a, "second queued event", |m| {
        matches!(m, Incoming::Relay { .. })
    });
    assert_eq!(
        e1,
        Incoming::Relay {
            from: b.identity().fingerprint(),
            event: b"while you were away".to_vec()
        }
    );
    assert_eq!(
        e2,
        Incoming::Relay {
            from: b.identity().fingerprint(),
            event: b"second".to_vec()
        }
    );
    // Delivered once: a fetch brings nothing more.
    a.fetch().unwrap();
    assert_eq!(a.recv(Duration::from_millis(300)).unwrap(), None);
}

/// Builds a registration of `cert` with `cookie`, signed by `signer`, at `ts`.
fn registration(cert: &[u8], cookie: &[u8; 16], signer: &Identity, ts: u64) -> Vec<u8> {
    let reg = Payload::Register(Register::listed(cert, Some(cookie)));
    let mut body = vec![0; reg.buffer_len()];
    reg.emit(&mut body).unwrap();
    let sig = signer.sign(&signed_message(ts, &body));
    RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: PacketType::Register,
        signature: &sig,
        timestamp: ts,
    }
    .to_vec(&body)
    .unwrap()
}

/// Gets a cookie for `sock`'s address by sending a cookie-less registration.
fn cookie_for(sock: &UdpSocket, server: SocketAddr, cert: &[u8], signer: &Identity) -> [u8; 16] {
    let reg = Payload::Register(Register::listed(cert, None));
    let mut body = vec![0; reg.buffer_len()];
    reg.emit(&mut body).unwrap();
    let ts = unix_now();
    let sig = signer.sign(&signed_message(ts, &body));
    let pkt = RootHeader {
        params: PARAM_TO_SERVER,
        shift_len: None,
        packet_type: PacketType::Register,
        signature: &sig,
        timestamp: ts,
    }
    .to_vec(&body)
    .unwrap();
    sock.send_to(&pkt, server).unwrap();
    match recv_decoded(sock) {
        Incoming::Cookie(c) => c,
        other => panic!("expected a cookie challenge, got {other:?}"),
    }
}

fn recv_decoded(sock: &UdpSocket) -> Incoming {
    sock.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("a reply from the server");
    rendezvous::client::decode(&buf[..n])
}

fn where_is(server: &Server, target: Fingerprint) -> LookupStatus {
    let mut asker = client(server, KeyAlgorithm::Ed25519);
    asker.register(3, T).unwrap();
    status_of(&mut asker, target)
}

#[test]
fn replayed_and_wrong_key_registrations_are_refused_and_change_nothing() {
    let server = Server::start(&[]);
    let id = Identity::generate(KeyAlgorithm::Ed25519, "victim").unwrap();
    let other = Identity::generate(KeyAlgorithm::Ed25519, "attacker").unwrap();
    let fp = id.fingerprint();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cookie = cookie_for(&sock, server.addr, id.cert_der(), &id);
    let pkt = registration(id.cert_der(), &cookie, &id, unix_now());
    sock.send_to(&pkt, server.addr).unwrap();
    assert!(matches!(recv_decoded(&sock), Incoming::Ok(Some(_))));
    let home = sock.local_addr().unwrap();

    // The same bytes again, from the same address: 409, nothing moves.
    sock.send_to(&pkt, server.addr).unwrap();
    match recv_decoded(&sock) {
        Incoming::Error {
            status,
            request_type,
            ..
        } => assert_eq!((status, request_type), (409, 2)),
        other => panic!("replay must be refused with 409: {other:?}"),
    }
    // The same bytes from another address: the cookie is bound to the first address, so
    // the server only challenges; the fingerprint does not move.
    let thief = UdpSocket::bind("127.0.0.1:0").unwrap();
    thief.send_to(&pkt, server.addr).unwrap();
    assert!(matches!(recv_decoded(&thief), Incoming::Cookie(_)));
    assert!(matches!(where_is(&server, fp), LookupStatus::Online { addr, .. } if addr == home));

    // The victim's certificate signed by another key, with a valid cookie: 401.
    let cookie2 = cookie_for(&thief, server.addr, id.cert_der(), &other);
    let forged = registration(id.cert_der(), &cookie2, &other, unix_now() + 1);
    thief.send_to(&forged, server.addr).unwrap();
    match recv_decoded(&thief) {
        Incoming::Error { status, .. } => assert_eq!(status, 401),
        other => panic!("wrong-key registration must be refused with 401: {other:?}"),
    }
    assert!(matches!(where_is(&server, fp), LookupStatus::Online { addr, .. } if addr == home));
}

#[test]
fn ttl_expiry_keeps_the_live_and_drops_the_silent() {
    let server = Server::start(&["--ttl", "6"]);
    let srv = server.addr.to_string();
    let live = common::Identity::new("live");
    let silent = common::Identity::new("silent");
    let asker = common::Identity::new("asker");
    let mut procs = Vec::new();
    for (id, ka) in [(&live, "2"), (&silent, "0")] {
        let mut cmd = bin();
        cmd.args([
            "register",
            "--server",
            &srv,
            "--keepalive",
            ka,
            "--identity",
        ])
        .arg(id.dir_arg());
        let mut p = Proc::spawn("register", cmd);
        p.out
            .expect("registered", T, |l| l.starts_with("registered "));
        procs.push(p);
    }
    // The point of this test is wall-clock expiry: 15 s is 2.5 TTLs.
    std::thread::sleep(Duration::from_secs(15));
    let look = |fp: &str| {
        let mut cmd = bin();
        cmd.args(["lookup", "--server", &srv, "--identity"])
            .arg(asker.dir_arg())
            .arg(fp);
        let done = common::run("lookup", cmd, T * 2);
        done.assert_success("lookup");
        done.stdout.join("\n")
    };
    let l = look(&live.fingerprint);
    assert!(
        l.starts_with("online "),
        "kept-alive client must be online: {l}"
    );
    let s = look(&silent.fingerprint);
    assert!(
        s.starts_with("offline "),
        "silent client must be offline: {s}"
    );
    let age: u64 = field(&s, "age").unwrap().parse().unwrap();
    assert!(
        age >= 6,
        "offline age counts from the last time it was seen: {s}"
    );
}

#[test]
fn client_notices_a_server_restart_and_registers_again() {
    let first = Server::start(&[]);
    let port = first.addr.port().to_string();
    let srv = first.addr.to_string();
    let id = common::Identity::new("r");
    let mut cmd = bin();
    cmd.args([
        "register",
        "--server",
        &srv,
        "--keepalive",
        "1",
        "--identity",
    ])
    .arg(id.dir_arg());
    let mut reg = Proc::spawn("register", cmd);
    let l1 = reg
        .out
        .expect("registered", T, |l| l.starts_with("registered "));
    drop(first);
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--memory-only",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let _second = Server::spawn("server-2", cmd);
    reg.out.expect("404 to the keepalive", T, |l| {
        l.starts_with("error status=404")
    });
    let l2 = reg
        .out
        .expect("registered again", T, |l| l.starts_with("registered "));
    assert_ne!(
        field(&l1, "epoch"),
        field(&l2, "epoch"),
        "a restart changes the boot epoch"
    );
}

#[test]
fn bad_input_does_not_stall_other_clients() {
    let server = Server::start(&[]);
    let mut good = client(&server, KeyAlgorithm::Ed25519);
    good.register(3, T).unwrap();
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u32 = 12345;
    for len in 0..1500usize {
        let mut d = vec![0u8; len % 1450];
        for b in &mut d {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let _ = junk.send_to(&d, server.addr);
    }
    // Every reply to the junk source is no larger than what provoked it (they were all
    // garbage, so a reply can only be an error or a cookie); and the good client is served.
    let me = good.identity().fingerprint();
    assert!(matches!(
        status_of(&mut good, me),
        LookupStatus::Online { .. }
    ));
    junk.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = junk.recv_from(&mut buf) {
        assert!(n <= 1450, "reply of {n} bytes to junk");
        assert!(matches!(
            rendezvous::client::decode(&buf[..n]),
            Incoming::Error { .. } | Incoming::Cookie(_)
        ));
    }
}

/// `openssl` or a failure when CI requires it.
fn have_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl is required in CI"
        );
        eprintln!("note: openssl not installed; skipping");
    }
    ok
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openssl_made_certificates_register_with_openssl_signatures() {
    if !have_openssl() {
        return;
    }
    let server = Server::start(&[]);
    for (name, newkey) in [
        ("ed25519", vec!["-newkey", "ed25519"]),
        (
            "p256",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut args = vec!["req", "-x509"];
        args.extend(&newkey);
        args.extend([
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=openssl-client",
        ]);
        openssl(&args, dir);
        openssl(
            &[
                "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
            ],
            dir,
        );
        let der = std::fs::read(dir.join("cert.der")).unwrap();

        // 1. The CLI registers with openssl's cert.pem and key.pem as they are.
        let mut cmd = bin();
        cmd.args([
            "register",
            "--server",
            &server.addr.to_string(),
            "--identity",
        ])
        .arg(dir);
        let mut reg = Proc::spawn(format!("register-{name}"), cmd);
        let line = reg
            .out
            .expect("registered", T, |l| l.starts_with("registered "));
        let fp = rendezvous::identity::fingerprint(&der);
        assert_eq!(
            field(&line, "fingerprint"),
            Some(fp.to_hex().as_str()),
            "{name}"
        );
        reg.kill();

        // 2. A registration signed by the openssl command itself.
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let loaded = Identity::load(dir).unwrap();
        let cookie = cookie_for(&sock, server.addr, &der, &loaded);
        let reg = Payload::Register(Register::listed(&der, Some(&cookie)));
        let mut body = vec![0; reg.buffer_len()];
        reg.emit(&mut body).unwrap();
        let ts = unix_now() + 1; // newer than the CLI's registration
        std::fs::write(dir.join("msg"), signed_message(ts, &body)).unwrap();
        if name == "ed25519" {
            openssl(
                &[
                    "pkeyutl", "-sign", "-rawin", "-inkey", "key.pem", "-in", "msg", "-out", "sig",
                ],
                dir,
            );
        } else {
            openssl(
                &["dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "msg"],
                dir,
            );
        }
        let sig = std::fs::read(dir.join("sig")).unwrap();
        let pkt = RootHeader {
            params: PARAM_TO_SERVER,
            shift_len: None,
            packet_type: PacketType::Register,
            signature: &sig,
            timestamp: ts,
        }
        .to_vec(&body)
        .unwrap();
        sock.send_to(&pkt, server.addr).unwrap();
        match recv_decoded(&sock) {
            Incoming::Ok(Some(ok)) => {
                assert_eq!(ok.reflexive, sock.local_addr().unwrap(), "{name}")
            }
            other => panic!("{name}: openssl-signed registration refused: {other:?}"),
        }
    }
}

#[test]
fn dual_stack_socket_serves_ipv4_and_ipv6_clients() {
    let mut cmd = bin();
    cmd.args(["serve", "--memory-only", "--listen", "[::]:0"]);
    let server = Server::spawn("server-dual", cmd);
    let port = server.addr.port();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mk = |srv: SocketAddr, bind: &str| {
        let id = Identity::generate(KeyAlgorithm::Ed25519, "dual").unwrap();
        Client::new(srv, id, Some(bind.parse().unwrap())).unwrap()
    };
    let mut a = mk(v4, "127.0.0.1:0");
    let mut b = mk(v6, "[::1]:0");
    // The IPv4 client is seen as IPv4 (not as an IPv4-mapped IPv6 address).
    let ok_a = a.register(3, T).unwrap().unwrap();
    assert_eq!(ok_a.reflexive, a.local_addr().unwrap());
    let ok_b = b.register(3, T).unwrap().unwrap();
    assert_eq!(ok_b.reflexive, b.local_addr().unwrap());
    let (fa, fb) = (a.identity().fingerprint(), b.identity().fingerprint());
    assert!(
        matches!(status_of(&mut a, fb), LookupStatus::Online { addr, .. } if addr == b.local_addr().unwrap())
    );
    assert!(
        matches!(status_of(&mut b, fa), LookupStatus::Online { addr, .. } if addr == a.local_addr().unwrap())
    );
    // Events cross families both ways.
    a.send_event(fb, b"4 to 6").unwrap();
    let ev = wait_for(&mut b, "event over IPv6", |m| {
        matches!(m, Incoming::Relay { .. })
    });
    assert_eq!(
        ev,
        Incoming::Relay {
            from: fa,
            event: b"4 to 6".to_vec()
        }
    );
    b.send_event(fa, b"6 to 4").unwrap();
    let ev = wait_for(&mut a, "event over IPv4", |m| {
        matches!(m, Incoming::Relay { .. })
    });
    assert_eq!(
        ev,
        Incoming::Relay {
            from: fb,
            event: b"6 to 4".to_vec()
        }
    );
}
