//! Whole servers on the in-memory network (`rendezvous::sim`): the federation scenarios of
//! the real-binary and network-namespace tests (`federation`, `partition`), run
//! deterministically from a seed in virtual time, in well under a second each.
//!
//! The test plays the clients: UDP datagrams built with the client library's
//! `client::packet` and read with `client::decode`, and client-role TCP connections
//! carrying wire-codec frames.

use rendezvous::client::{self, Incoming};
use rendezvous::core::tcp::Cidr;
use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::sim::{host_addr, ExtConn, HostId, HostSpec, Net};
use rendezvous::wire::tcp::answer::{AnswerPiece, AnswerReader};
use rendezvous::wire::tcp::dir::{DirRecord, RecordBody, Registration};
use rendezvous::wire::tcp::{ClientCommand, ContactFields, Hello, Role};
use rendezvous::wire::udp::{LookupStatus, Payload, Register, Relay};
use rendezvous::wire::Fingerprint;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

pub(crate) fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A client the test plays: an identity and the public address it sends from.
pub(crate) struct Client {
    id: Identity,
    addr: SocketAddr,
}

impl Client {
    pub(crate) fn new(name: &str, addr: &str) -> Client {
        Client {
            id: Identity::generate(KeyAlgorithm::Ed25519, name).expect("identity"),
            addr: sa(addr),
        }
    }

    fn fp(&self) -> Fingerprint {
        self.id.fingerprint()
    }

    fn send(&self, net: &mut Net, h: HostId, p: &Payload<'_>, sign: bool) -> Vec<Incoming> {
        let bytes = client::packet(&self.id, None, net.now().unix_s, p, sign);
        net.datagram(h, self.addr, &bytes)
            .iter()
            .map(|d| client::decode(d))
            .collect()
    }

    /// Registers at host `h` through the cookie challenge; panics unless it ends with OK.
    pub(crate) fn register(&self, net: &mut Net, h: HostId) {
        let cert = self.id.cert_der();
        let first = self.send(
            net,
            h,
            &Payload::Register(Register::listed(cert, None)),
            true,
        );
        let Some(Incoming::Cookie(cookie)) = first.first() else {
            panic!("expected a cookie challenge, got {first:?}");
        };
        let reg = Payload::Register(Register::listed(cert, Some(cookie)));
        let second = self.send(net, h, &reg, true);
        assert!(
            matches!(second.first(), Some(Incoming::Ok(_))),
            "expected OK, got {second:?}"
        );
    }

    fn lookup(&self, net: &mut Net, h: HostId, target: Fingerprint) -> (LookupStatus, String) {
        let answers = self.send(net, h, &Payload::Lookup(target), false);
        match answers.first() {
            Some(Incoming::LookupAnswer { status, home, .. }) => (*status, home.clone()),
            other => panic!("expected a lookup answer, got {other:?}"),
        }
    }

    fn relay(&self, net: &mut Net, h: HostId, dest: Fingerprint, event: &[u8]) {
        let replies = self.send(net, h, &Payload::Relay(Relay { peer: dest, event }), true);
        assert!(replies.is_empty(), "a relay is not answered: {replies:?}");
    }

    fn inbox(&self, net: &mut Net) -> Vec<Incoming> {
        net.take_inbox(self.addr)
            .iter()
            .map(|d| client::decode(d))
            .collect()
    }
}

/// A host whose clients need not prove a key (`--open-contacts`): the scenarios here are
/// about federation, and write contacts as the design notes' client role does.
pub(crate) fn open(mut spec: HostSpec) -> HostSpec {
    spec.tcp.open_contacts = true;
    spec
}

/// A client-role TCP connection's hello.
pub(crate) fn client_hello() -> Vec<u8> {
    let mut b = vec![0u8; 257];
    Hello {
        role: Role::Client,
        name: "sim-test",
    }
    .emit(&mut b)
    .expect("hello");
    b
}

fn update_frame(user: &str, contact: &str, phone: &str) -> Vec<u8> {
    let cmd = ClientCommand::Update(ContactFields {
        username: user,
        contact,
        phone,
    });
    let mut b = vec![0u8; cmd.buffer_len()];
    cmd.emit(&mut b).expect("update");
    b
}

/// Writes contacts at host `h` as a client would, and closes.
pub(crate) fn write_contacts(net: &mut Net, h: HostId, contacts: &[(&str, &str, &str)]) -> ExtConn {
    let c = net.open(h, sa("203.0.113.200:40000"));
    let mut bytes = client_hello();
    for (u, k, p) in contacts {
        bytes.extend(update_frame(u, k, p));
    }
    net.write(c, &bytes);
    c
}

/// What `status` compares across servers: contacts, directory and node list.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Digests {
    pub(crate) contacts: (u64, Vec<u8>),
    pub(crate) directory: (u64, [u8; 64]),
    pub(crate) nodes: (usize, [u8; 64]),
}

pub(crate) fn digests(net: &mut Net, h: HostId) -> Digests {
    let contacts = net.contacts_digest(h);
    let node = net.node(h);
    Digests {
        contacts,
        directory: node.udp().directory_digest(),
        nodes: (node.tcp().node_list().len(), node.tcp().node_list().hash()),
    }
}

pub(crate) fn all_equal(net: &mut Net, hosts: &[HostId]) -> bool {
    let d: Vec<Digests> = hosts.iter().map(|&h| digests(net, h)).collect();
    d.iter().all(|x| *x == d[0])
}

/// Five servers in a line s0 - s1 - s2 - s3 - s4, each peered with its neighbours only.
fn line_of_five(seed: u64) -> Net {
    let mut net = Net::new(seed, unix_now());
    for i in 0..5 {
        let mut peers = Vec::new();
        if i > 0 {
            peers.push(i - 1);
        }
        if i < 4 {
            peers.push(i + 1);
        }
        net.add_host(open(HostSpec {
            alias: Some(format!("s{i}")),
            no_mesh: true,
            ..HostSpec::peered(&peers)
        }));
    }
    net
}

/// The in-memory twin of `federation::five_servers_in_a_line_converge`, plus the UDP side:
/// a client registered at one end is found, punched and relayed to from the other.
#[test]
fn five_servers_in_a_line_converge() {
    let mut net = line_of_five(1);
    net.run_for(1_000);
    let a = Client::new("a", "198.51.100.10:50000");
    a.register(&mut net, 0);
    write_contacts(&mut net, 0, &[("alice", "bob", "111")]);
    write_contacts(&mut net, 4, &[("zoe", "yan", "999")]);
    write_contacts(&mut net, 2, &[("mid", "dle", "555")]);
    let hosts: Vec<HostId> = (0..5).collect();
    let took = net.run_until(30_000, |n| {
        all_equal(n, &hosts)
            && n.contacts_digest(0).0 == 3
            && n.node(4).udp().directory_digest().0 == 1
    });
    let took = took.expect("the line converges within 30 s of virtual time");
    let d = digests(&mut net, 0);
    assert_eq!(d.contacts.0, 3);
    assert_eq!(d.directory.0, 1, "one client in every server's directory");
    assert_eq!(d.nodes.0, 5, "every server knows all five");
    eprintln!("five in a line: converged after {took} ms of virtual time");

    // From the far end: a lookup answers with a's home, and a gets a punch request from
    // s0; an event relayed at s4 reaches a through s0.
    let e = Client::new("e", "198.51.100.20:50000");
    e.register(&mut net, 4);
    net.run_for(1_000);
    let (status, home) = e.lookup(&mut net, 4, a.fp());
    assert_eq!(home, "s0");
    assert!(
        matches!(status, LookupStatus::Online { addr, .. } if addr == a.addr),
        "{status:?}"
    );
    e.relay(&mut net, 4, a.fp(), b"across five servers");
    net.run_for(1_000);
    let got = a.inbox(&mut net);
    assert!(
        got.iter().any(
            |m| matches!(m, Incoming::Punch { peer, addr } if *peer == e.fp() && *addr == e.addr)
        ),
        "punch request from s0 for e: {got:?}"
    );
    assert!(
        got.iter().any(|m| matches!(m, Incoming::Relay { from, event } if *from == e.fp() && event == b"across five servers")),
        "relayed event: {got:?}"
    );
}

/// One seed, one schedule: the same scenario twice gives the same bytes on every link and
/// the same state, in the same virtual time.
#[test]
fn same_seed_same_run() {
    let run = |seed: u64| {
        let mut net = line_of_five(seed);
        net.run_for(500);
        write_contacts(&mut net, 0, &[("alice", "bob", "111")]);
        write_contacts(&mut net, 4, &[("zoe", "yan", "999")]);
        net.run_for(20_000);
        let per_link: Vec<u64> = (0..4).map(|i| net.bytes_between(&[i], &[i + 1])).collect();
        let d = digests(&mut net, 2);
        (per_link, d.contacts, d.nodes.0, net.now().mono_ms)
    };
    let first = run(7);
    assert_eq!(first, run(7));
    assert_eq!(first.1 .0, 2);
    assert!(first.0.iter().all(|&b| b > 0), "{first:?}");
}

/// Contacts as a map `(user, contact) -> (clock, phone)`.
pub(crate) type Contacts = BTreeMap<(String, String), (u32, String)>;

pub(crate) fn dump(net: &mut Net, h: HostId) -> Contacts {
    net.contacts(h)
        .into_iter()
        .map(|c| ((c.username, c.contact), (c.clock, c.phone)))
        .collect()
}

/// Last-writer-wins (docs/PROTOCOL.md §8.9): the higher clock, then the larger phone.
pub(crate) fn merge(a: &Contacts, b: &Contacts) -> Contacts {
    let mut out = a.clone();
    for (k, v) in b {
        let keep = match out.get(k) {
            Some(w) if (w.0, w.1.as_bytes()) >= (v.0, v.1.as_bytes()) => w.clone(),
            _ => v.clone(),
        };
        out.insert(k.clone(), keep);
    }
    out
}

/// `(user, contact, phone)` triples: `user`, contacts `c000000..`, phones from `phone(k)`.
pub(crate) fn recs(
    user: &str,
    keys: impl IntoIterator<Item = usize>,
    phone: impl Fn(usize) -> String,
) -> Vec<(String, String, String)> {
    keys.into_iter()
        .map(|k| (user.to_string(), format!("c{k:06}"), phone(k)))
        .collect()
}

pub(crate) fn write_recs(net: &mut Net, h: HostId, recs: &[(String, String, String)]) {
    let view: Vec<(&str, &str, &str)> = recs
        .iter()
        .map(|(u, c, p)| (u.as_str(), c.as_str(), p.as_str()))
        .collect();
    write_contacts(net, h, &view);
}

/// The status text of host `h` (command 6, docs/PROTOCOL.md §8.6), asked as a client.
pub(crate) fn status(net: &mut Net, h: HostId) -> String {
    let c = net.open(h, sa("203.0.113.201:40001"));
    let mut bytes = client_hello();
    let ask = ClientCommand::Status;
    bytes.push(ask.command_byte());
    net.write(c, &bytes);
    let mut answers = AnswerReader::new();
    answers
        .ask(ask.asked().expect("Status is answered"), ())
        .expect("one request");
    let mut got = Vec::new();
    let mut text = None;
    net.run_until(1_000, |n| {
        got.extend(n.read(c));
        match answers.read(&got) {
            Ok(Some(p)) => {
                if let AnswerPiece::StatusText(t) = p.piece {
                    text = Some(t.to_string());
                }
                true
            }
            Ok(None) => false,
            Err(e) => panic!("status answer: {e}"),
        }
    })
    .expect("a status answer");
    net.close(c);
    text.expect("the status text")
}

pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Journal lines and full-push records host `h` received from its peers since it started.
pub(crate) fn received(net: &mut Net, h: HostId) -> (u64, u64) {
    status(net, h)
        .lines()
        .filter(|l| l.starts_with("received_from="))
        .map(|l| {
            let n = |k| field(l, k).and_then(|v| v.parse().ok()).unwrap_or(0u64);
            (n("entries"), n("records"))
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Every link of every host up, live, and confirmed up to what it pushed.
fn caught_up(net: &mut Net, hosts: &[HostId]) -> bool {
    hosts.iter().all(|&h| {
        let text = status(net, h);
        let peers: Vec<&str> = text.lines().filter(|l| l.starts_with("peer=")).collect();
        peers.len() == 2
            && peers.iter().all(|l| {
                field(l, "state") == Some("up")
                    && field(l, "journal") == Some("live")
                    && field(l, "pushed_line") == field(l, "confirmed_line")
            })
    })
}

/// The in-memory twin of `partition::partition_and_heal_converges` (network namespaces):
/// four servers in a ring s0 - s1 - s3 - s2 - s0, groups {s0, s1} and {s2, s3}. During a
/// partition held past the silent-link timeout, clients register and contacts are written
/// on both sides, 50 of them conflicting; nothing crosses. After the heal every server
/// holds the last-writer-wins merge and both clients, and caught up from the journal (each
/// server received at most twice the changes, and no full push).
#[test]
fn partition_and_heal_converge() {
    let mut net = Net::new(3, unix_now());
    let ring: [[HostId; 2]; 4] = [[1, 2], [0, 3], [0, 3], [1, 2]];
    for (i, peers) in ring.iter().enumerate() {
        net.add_host(open(HostSpec {
            alias: Some(format!("s{i}")),
            no_mesh: true,
            allow_peers: vec![Cidr::parse("192.0.2.0/24").expect("cidr")],
            ..HostSpec::peered(peers)
        }));
    }
    let all = [0, 1, 2, 3];
    let (left, right) = ([0, 1], [2, 3]);
    for i in 0..4 {
        write_recs(
            &mut net,
            i,
            &recs(&format!("init{i}"), 0..10, |k| format!("+{i}{k:04}")),
        );
    }
    net.run_until(20_000, |n| {
        all_equal(n, &all) && n.contacts_digest(0).0 == 40
    })
    .expect("40 contacts everywhere before the partition");

    net.partition(&left, &right);
    let before = net.bytes_between(&left, &right);
    let (ca, cb) = (
        Client::new("ca", "198.51.100.10:50000"),
        Client::new("cb", "198.51.100.11:50000"),
    );
    ca.register(&mut net, 0);
    cb.register(&mut net, 3);
    // The same 50 keys on s0 and s2, side B in reverse order so the clocks cross over.
    write_recs(
        &mut net,
        0,
        &recs("conflict", 0..50, |k| format!("A{k:04}")),
    );
    write_recs(
        &mut net,
        2,
        &recs("conflict", (0..50).rev(), |k| format!("B{k:04}")),
    );
    for i in 0..4 {
        write_recs(
            &mut net,
            i,
            &recs(&format!("only{i}"), 0..25, |k| format!("+9{i}{k:04}")),
        );
    }
    net.run_until(20_000, |n| {
        all_equal(n, &left)
            && all_equal(n, &right)
            && n.contacts_digest(0).0 == 140
            && n.contacts_digest(3).0 == 140
    })
    .expect("each group converges on its own");
    assert_ne!(digests(&mut net, 0).contacts, digests(&mut net, 2).contacts);
    let (d0, d2) = (
        digests(&mut net, 0).directory,
        digests(&mut net, 2).directory,
    );
    assert_eq!((d0.0, d2.0), (1, 1), "each side knows only its own client");
    assert_ne!(d0.1, d2.1);
    // Held past four heartbeats: s0's link to s2 (its second peer) is dropped and
    // redialled in vain; the one inside the group stays.
    assert!(net.node(0).tcp().link_up(1));
    net.run_for(30_000);
    assert!(!net.node(0).tcp().link_up(1), "a silent link is dropped");
    assert!(net.node(0).tcp().link_up(0));
    assert_eq!(
        net.bytes_between(&left, &right),
        before,
        "nothing crosses a partition"
    );

    let want = merge(&dump(&mut net, 0), &dump(&mut net, 2));
    assert_eq!(want.len(), 40 + 50 + 100);
    let a_wins = (0..50)
        .filter(|k| {
            want[&("conflict".to_string(), format!("c{k:06}"))]
                .1
                .starts_with('A')
        })
        .count();
    assert!(
        a_wins > 0 && a_wins < 50,
        "each side wins some conflicts: A won {a_wins}"
    );
    let received_before: Vec<(u64, u64)> = all.iter().map(|&h| received(&mut net, h)).collect();
    let before_heal = net.bytes_between(&left, &right);

    net.heal_all();
    let took = net
        .run_until(60_000, |n| {
            all_equal(n, &all) && n.contacts_digest(0).0 == want.len() as u64
        })
        .expect("every server converges within 60 s of the heal");
    for h in all {
        assert!(
            dump(&mut net, h) == want,
            "s{h} holds the last-writer-wins merge"
        );
    }
    net.run_until(30_000, |n| {
        all_equal(n, &all) && n.node(0).udp().directory_digest().0 == 2
    })
    .expect("every directory holds both clients");
    net.run_until(30_000, |n| caught_up(n, &all))
        .expect("every link live again");
    let changes: u64 = 2 * (50 + 2 * 25);
    for (h, &(e0, r0)) in received_before.iter().enumerate() {
        let (e, r) = received(&mut net, h);
        assert!(
            e - e0 <= 2 * changes,
            "s{h}: {} entries for {changes} changes",
            e - e0
        );
        assert!(e - e0 >= changes / 2, "s{h}: too few entries");
        assert_eq!(r - r0, 0, "s{h}: a full push instead of the journal");
    }
    let crossed = net.bytes_between(&left, &right) - before_heal;
    eprintln!("partition: converged {took} ms after the heal; {crossed} bytes crossed the cut");
}

/// Addresses of the sim are documentation addresses.
#[test]
fn hosts_listen_on_documentation_addresses() {
    assert_eq!(host_addr(0), sa("192.0.2.1:4747"));
    assert_eq!(host_addr(254), sa("198.51.100.1:4747"));
    assert_eq!(host_addr(761), sa("203.0.113.254:4747"));
}

/// Servers started with no `--alias` all carry the default name: federation must still
/// share their directories (a server's identity is its node uid, not its name).
#[test]
fn default_named_servers_federate_their_directories() {
    let mut net = Net::new(5, unix_now());
    for i in 0..3usize {
        let peers: Vec<HostId> = [i.checked_sub(1), (i < 2).then_some(i + 1)]
            .into_iter()
            .flatten()
            .collect();
        net.add_host(open(HostSpec::peered(&peers)));
    }
    let a = Client::new("a", "198.51.100.10:50000");
    let c = Client::new("c", "198.51.100.30:50000");
    a.register(&mut net, 0);
    c.register(&mut net, 2);
    net.run_until(30_000, |n| {
        (0..3).all(|h| n.node(h).udp().directory_digest().0 == 2)
    })
    .expect("every directory holds both clients");
    let (status, _home) = c.lookup(&mut net, 2, a.fp());
    assert!(
        matches!(status, LookupStatus::Online { addr, .. } if addr == a.addr),
        "{status:?}"
    );
}

/// A link can be slower than the rest: a write crossing a 300 ms link reaches the far end
/// no sooner than 300 ms later; over 1-5 ms links, within a few tens of milliseconds.
#[test]
fn a_slow_link_delays_what_crosses_it() {
    let reach_far_end = |slow: bool| {
        let mut net = line_of_five(11);
        if slow {
            net.set_link_delay(1, 2, 300, 300);
        }
        net.run_for(5_000);
        write_contacts(&mut net, 0, &[("alice", "bob", "111")]);
        net.run_until(10_000, |n| n.contacts_digest(4).0 == 1)
            .expect("the write reaches s4")
    };
    let (fast, slow) = (reach_far_end(false), reach_far_end(true));
    assert!(fast < 100, "{fast} ms over fast links");
    assert!(slow >= 300, "{slow} ms across a 300 ms link");
}

/// A server-role hello from the sim's test code.
pub(crate) fn server_hello(name: &str) -> Vec<u8> {
    let mut b = vec![0u8; 257];
    Hello {
        role: Role::Server,
        name,
    }
    .emit(&mut b)
    .expect("hello");
    b
}

/// `[16][len u16][record]` for `rec`.
fn dir_record_frame(rec: &DirRecord<'_>) -> Vec<u8> {
    let mut frame = Vec::new();
    rec.append_frame(&mut frame).expect("record");
    frame
}

/// The first status frame's code in `bytes`, if it starts with one.
pub(crate) fn status_code(bytes: &[u8]) -> Option<u16> {
    (bytes.first() == Some(&7) && bytes.len() >= 3)
        .then(|| u16::from_be_bytes([bytes[1], bytes[2]]))
}

/// T11 (docs/SECURITY.md): an admitted peer gone bad. It pushes a registration record
/// whose signature is forged, an expiry and a refresh for a client registered directly
/// with us, and (from a second address) a clock at 0xFFFFFFFF. Nothing forged is taken,
/// the local client stays online, each address is cut off (its next server hello is 403),
/// and the honest servers still converge.
#[test]
fn a_rogue_peer_is_refused_cut_off_and_the_mesh_converges() {
    let mut net = Net::new(11, unix_now());
    for i in 0..3usize {
        let peers: Vec<HostId> = [i.checked_sub(1), (i < 2).then_some(i + 1)]
            .into_iter()
            .flatten()
            .collect();
        net.add_host(open(HostSpec {
            allow_peers: vec![Cidr::parse("203.0.113.64/26").expect("cidr")],
            no_mesh: true,
            ..HostSpec::peered(&peers)
        }));
    }
    net.run_for(1_000);
    let a = Client::new("a", "198.51.100.10:50000");
    a.register(&mut net, 0);
    net.run_for(1_000);
    let ts = net.now().unix_s;
    let at_a = |net: &mut Net| net.node(0).udp().directory_digest();
    let before = at_a(&mut net);

    // Rogue 1: an expiry and a refresh for a, then a forged registration.
    let rogue = sa("203.0.113.66:40000");
    let r = net.open(0, rogue);
    let expiry = DirRecord {
        hops: 0,
        fingerprint: a.fp(),
        timestamp: ts + 5,
        age_ms: 0,
        body: RecordBody::Expiry,
    };
    let refresh = DirRecord {
        body: RecordBody::Refresh,
        ..expiry
    };
    let mut bytes = server_hello("rogue");
    bytes.extend(dir_record_frame(&expiry));
    bytes.extend(dir_record_frame(&refresh));
    net.write(r, &bytes);
    net.run_for(100);
    assert_eq!(at_a(&mut net), before, "a's own server keeps a as it is");
    assert!(
        net.read(r).is_empty() && !net.is_closed(r),
        "ignored, not refused"
    );
    let cert = a.id.cert_der();
    let mut payload = u16::try_from(cert.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    payload.extend_from_slice(cert);
    let forged = DirRecord {
        body: RecordBody::Registration(Registration {
            addr: sa("203.0.113.66:1"),
            home_uid: [0x66; 16],
            home: "rogue",
            signature: &[0x42; 64],
            payload: &payload,
        }),
        ..expiry
    };
    net.write(r, &dir_record_frame(&forged));
    net.run_for(100);
    let answer = net.read(r);
    assert!(
        matches!(status_code(&answer), Some(400 | 401)),
        "the forged record is refused: {answer:02x?}"
    );
    assert!(net.is_closed(r), "and the connection closed");
    assert_eq!(at_a(&mut net), before, "nothing forged is taken");
    let again = net.open(0, rogue);
    net.write(again, &server_hello("rogue"));
    net.run_for(100);
    assert_eq!(status_code(&net.read(again)), Some(403), "cut off");

    // Rogue 2: a clock at the top.
    let r2 = net.open(0, sa("203.0.113.67:40000"));
    let mut bytes = server_hello("rogue2");
    bytes.extend([3, 0xff, 0xff, 0xff, 0xff]);
    net.write(r2, &bytes);
    net.run_for(100);
    assert_eq!(status_code(&net.read(r2)), Some(409));
    let again = net.open(0, sa("203.0.113.67:40001"));
    net.write(again, &server_hello("rogue2"));
    net.run_for(100);
    assert_eq!(status_code(&net.read(again)), Some(403), "cut off");

    // The honest servers go on and converge.
    write_contacts(&mut net, 0, &[("alice", "bob", "111")]);
    write_contacts(&mut net, 2, &[("zoe", "yan", "999")]);
    let hosts = [0, 1, 2];
    let took = net
        .run_until(30_000, |n| {
            all_equal(n, &hosts)
                && n.contacts_digest(0).0 == 2
                && n.node(2).udp().directory_digest().0 == 1
        })
        .expect("the honest servers converge");
    let (status, _) = a.lookup(&mut net, 0, a.fp());
    assert!(
        matches!(status, LookupStatus::Online { addr, .. } if addr == a.addr),
        "{status:?}"
    );
    eprintln!("rogue peer: refused, cut off; the honest mesh converged {took} ms later");
}
