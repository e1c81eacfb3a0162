//! Unlisted registrations (docs/PROTOCOL.md §5.2): a second, short-lived socket of a client
//! (`lookup`, `send`, `punch` while `register` runs with the same identity) is answered
//! there without moving the client's address in the directory, so a lookup never costs the
//! client its reachability. On the core with the virtual clock of `core_scenarios`, and
//! on the real binary.

use crate::common::{self, bin, field, Proc, Server};
use crate::core_scenarios::{addr, answer, error, online_at, punch, relayed, to, Net, Reply, HOME};
use rendezvous::core::udp::{UdpConfig, UdpTimers};
use rendezvous::wire::status;
use rendezvous::wire::udp::{canonical_addr, LookupStatus};
use std::time::Duration;

#[test]
fn an_unlisted_socket_is_answered_and_the_listed_address_stays() {
    let mut net = Net::with(UdpConfig {
        timers: UdpTimers {
            ttl_ms: 6_000,
            ..UdpTimers::default()
        },
        ..UdpConfig::default()
    });
    let a = net.client("198.51.100.1:40000", None); // A's `register`
    let b = net.client("203.0.113.9:50000", None);
    net.online(&a);
    net.online(&b);
    // A's `lookup`, same NAT, another port.
    let a2 = a.at(addr("198.51.100.1:40001"));
    assert!(
        net.register_unlisted(&a2).is_empty(),
        "no events after the OK"
    );
    assert_eq!(net.where_is(&a), Some(a.addr), "the listed address stays");
    assert_eq!(net.server.unlisted(), 1);

    // The second socket's lookup is answered there, and B is told to punch toward it.
    let got = net.send(a2.addr, &a2.lookup(b.fp()));
    assert_eq!(
        got,
        vec![
            to(&a2, answer(&b, online_at(&b, 0), HOME)),
            to(&b, punch(&a2))
        ]
    );
    // Anyone looking A up gets A's `register` socket, whose keepalives are no 404s.
    let got = net.send(b.addr, &b.lookup(a.fp()));
    assert_eq!(
        got,
        vec![
            to(&b, answer(&a, online_at(&a, 0), HOME)),
            to(&a, punch(&b))
        ]
    );
    net.advance(2_000);
    net.keep_alive(&[&a, &b]);
    assert_eq!(net.age_ms(&a), Some(0));
    // A relay from the second socket is A's, checked with A's key; B's relay goes to the
    // listed socket.
    let ts = net.ts();
    let got = net.send(a2.addr, &a2.relay(ts, b.fp(), b"from the side"));
    assert_eq!(got, vec![to(&b, relayed(&a, b"from the side"))]);
    let got = net.send(b.addr, &b.relay(ts, a.fp(), b"to the register"));
    assert_eq!(got, vec![to(&a, relayed(&b, b"to the register"))]);

    // A keepalive from the second socket extends its binding (never answered) ...
    assert!(net.send(a2.addr, &a2.keepalive(64)).is_empty());
    net.advance(4_000);
    net.keep_alive(&[&a, &b]);
    let got = net.send(a2.addr, &a2.lookup(b.fp()));
    assert_eq!(
        got,
        vec![
            to(&a2, answer(&b, online_at(&b, 0), HOME)),
            to(&b, punch(&a2))
        ],
        "6 s after its registration, 4 s after its keepalive: still bound"
    );
    // ... and without one the binding lapses a TTL later: the socket is a stranger again.
    net.advance(2_000);
    net.keep_alive(&[&a, &b]);
    let got = net.send(a2.addr, &a2.lookup(b.fp()));
    assert_eq!(got, vec![to(&a2, error(status::FORBIDDEN, 5))]);
    assert_eq!(net.where_is(&a), Some(a.addr));
    net.advance(10_000);
    assert_eq!(net.server.unlisted(), 0, "swept");
}

#[test]
fn an_unlisted_registration_lists_nothing_and_leaves_queued_events() {
    let mut net = Net::new();
    let a = net.client("198.51.100.1:40000", None);
    let b = net.client("203.0.113.9:50000", None);
    net.online(&b);
    let ts = net.ts();
    assert!(net.send(b.addr, &b.relay(ts, a.fp(), b"queued")).is_empty());
    assert_eq!(net.server.queued_for(&a.fp()), 1);

    // Registered unlisted only: answered, but neither listed nor handed its events.
    assert!(net.register_unlisted(&a).is_empty());
    assert_eq!(net.where_is(&a), None);
    assert_eq!(net.server.queued_for(&a.fp()), 1);
    let got = net.send(b.addr, &b.lookup(a.fp()));
    assert_eq!(
        got,
        vec![to(&b, answer(&a, LookupStatus::Unknown, ""))],
        "not online: no address to give, no punch request"
    );
    assert_eq!(net.server.stats().datagrams.registrations, 2);

    // A fetch from the unlisted socket asks for them: they come there.
    let got = net.send(a.addr, &a.fetch());
    assert_eq!(got, vec![to(&a, relayed(&b, b"queued"))]);
    assert_eq!(net.server.queued_for(&a.fp()), 0);

    // A listed registration from the same socket lists it (and ends the unlisted binding).
    net.advance(1_000);
    assert!(net.register(&a).is_empty());
    assert_eq!(net.where_is(&a), Some(canonical_addr(a.addr)));
    assert_eq!(net.server.unlisted(), 0);
}

#[test]
fn an_unlisted_registration_takes_its_source_from_another_listed_client() {
    // The source address was another fingerprint's (its NAT mapping was reused): that one
    // goes offline, as for a listed registration.
    let mut net = Net::new();
    let old = net.client("198.51.100.1:40000", None);
    let a = net.client("198.51.100.1:40000", None);
    net.online(&old);
    assert!(net.register_unlisted(&a).is_empty());
    assert_eq!(net.where_is(&old), None);
    let got = net.send(a.addr, &a.lookup(old.fp()));
    let Reply::Answer { status, .. } = &got[0].reply else {
        panic!("an answer: {got:?}");
    };
    assert!(matches!(status, LookupStatus::Offline { .. }), "{got:?}");
}

/// `rendezvous CMD --server SRV --identity DIR ARGS...`.
fn client_cmd(cmd: &str, srv: &str, id: &common::Identity, args: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.args([cmd, "--server", srv, "--identity"])
        .arg(id.dir_arg())
        .args(args);
    c
}

#[test]
fn a_lookup_with_the_identity_of_a_running_register_leaves_it_reachable() {
    const T: Duration = Duration::from_secs(20);
    let server = Server::start(&[]);
    let srv = server.addr.to_string();
    let x = common::Identity::new("x");
    let y = common::Identity::new("y");
    let mut reg = Proc::spawn("register-x", client_cmd("register", &srv, &x, &[]));
    let line = reg
        .out
        .expect("registered", T, |l| l.starts_with("registered "));
    let public = field(&line, "public").expect("public=").to_string();

    // X looks itself up from a second socket: the answer is its `register` socket.
    let done = common::run(
        "lookup-x",
        client_cmd("lookup", &srv, &x, &[&x.fingerprint]),
        T,
    );
    done.assert_success("lookup by x");
    assert_eq!(done.stdout.len(), 1, "{done:?}");
    assert_eq!(
        field(&done.stdout[0], "addr"),
        Some(public.as_str()),
        "{done:?}"
    );

    // A third client's lookup of X still gets the register socket's address ...
    let done = common::run(
        "lookup-y",
        client_cmd("lookup", &srv, &y, &[&x.fingerprint]),
        T,
    );
    done.assert_success("lookup by y");
    let ans = done.stdout.join("\n");
    assert!(ans.starts_with("online "), "{ans}");
    assert_eq!(field(&ans, "addr"), Some(public.as_str()), "{ans}");
    // ... and an event reaches it there at once (no keepalive needed to get it back).
    common::run(
        "send-y",
        client_cmd("send", &srv, &y, &[&x.fingerprint, "still here?"]),
        T,
    )
    .assert_success("send by y");
    let ev = reg.out.expect("event line", T, |l| l.starts_with("event "));
    assert_eq!(field(&ev, "from"), Some(y.fingerprint.as_str()));
    assert_eq!(field(&ev, "text"), Some("still here?"));
    // The register never had to register again.
    let again: Vec<&String> = reg
        .out
        .history()
        .iter()
        .filter(|l| l.starts_with("registered ") || l.starts_with("error "))
        .collect();
    assert_eq!(again.len(), 1, "{:?}", reg.out.history());
}
