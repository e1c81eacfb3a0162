//! The dissector against the codecs' own test data: every fixture of
//! `rendezvous::wire::fixtures` is written into a pcap (UDP fixtures as datagrams to or
//! from the server's port; TCP fixtures as the streams of `fixtures::exchanges()`, a
//! connection each, one segment per fixture, every answer after the requests it answers),
//! read back by `tshark` with the dissector, and each fixture's fields are compared with
//! what the dissector shows in its frame, through one table ([`MAPPING`]) from the
//! fixtures' field names to the dissector's. No frame is marked malformed but those made
//! malformed on purpose from fixtures (a datagram cut by one byte, an unknown command, an
//! answer that is not the one due) or from bytes out of the bounds of frames 22-24; a
//! ListAll count whose first byte is not 0 reads as a count, as the answer codec reads it.
//!
//! The codecs are the contract (their tests read and emit the same fixtures); where the
//! dissector shows something else, the dissector is wrong.

use super::{decode_rows, keep, marked_frames, tools_or_skip, Row};
use etherparse::PacketBuilder;
use rendezvous::wire::fixtures::{self, Direction, Fixture, Frame};
use rendezvous::wire::tcp::command_name;
use rendezvous::wire::PacketType;
use std::collections::{BTreeMap, BTreeSet};

/// The server's port and address, and the first client port (documentation addresses,
/// RFC 5737: nothing is sent, the packets only exist in the file).
const PORT: u16 = 4747;
const SERVER: [u8; 4] = [192, 0, 2, 1];
const CLIENT: [u8; 4] = [192, 0, 2, 10];
const FIRST_CLIENT_PORT: u16 = 40000;

/// How a fixture's value shows in the dissector's field.
#[derive(Debug, Clone, Copy)]
enum Shows {
    /// The same text.
    Same,
    /// A name the dissector shows as its number, from this table.
    Number(&'static [(&'static str, &'static str)]),
    /// A packet type's name (`PacketType::name`) as its number.
    PacketType,
    /// A command's name (`command_name` of the fixture's role) as its byte.
    Command,
    /// A decimal number shown in hex as 8 digits (`base.HEX` u32).
    Hex32,
    /// Hex digits shown with `0x` (`base.HEX` u64).
    Hex0x,
    /// `IP:PORT` (`[IPv6]:PORT`) as `rendezvous.addr` or `rendezvous.addr6`, and
    /// `rendezvous.port`.
    Address,
    /// Hex bytes as their count.
    ByteCount,
    /// A count of padding bytes as those bytes (the fixture's last bytes), absent when 0.
    Padding,
    /// `none` as an absent field, anything else as itself.
    NoneAbsent,
    /// Nothing: the field must be absent.
    Absent,
}

/// The answer pieces (`PieceKind::name`) as the dissector numbers them
/// (`rendezvous.answer`: the piece's first byte; 0 for the count, which has none).
const PIECES: &[(&str, &str)] = &[
    ("count", "0"),
    ("client-record", "1"),
    ("server-record", "1"),
    ("update-clock", "3"),
    ("status-text", "6"),
    ("status", "7"),
    ("node-list-hash", "10"),
    ("node-list-diff", "12"),
    ("journal-line", "13"),
    ("cursor", "14"),
    ("dir-record", "16"),
    ("dir-end", "17"),
    ("journal-count", "19"),
    ("nonce", "20"),
    ("reconcile", "22"),
    ("no-update-clock", ""),
];

/// Fixture field -> dissector field: `(scope, key, field, how)`, the first row whose scope
/// starts the fixture's name and whose key is the field's name wins.
const MAPPING: &[(&str, &str, &str, Shows)] = &[
    // UDP: the Root packet (docs/PROTOCOL.md §2).
    ("udp/", "type", "rendezvous.type", Shows::PacketType),
    (
        "udp/",
        "layout",
        "rendezvous.params.shifted",
        Shows::Number(&[("plain", "0"), ("shifted", "1")]),
    ),
    ("udp/", "shift", "rendezvous.shift_len", Shows::Same),
    ("udp/", "params", "rendezvous.params", Shows::Same),
    ("udp/", "sig_len", "rendezvous.sig_len", Shows::Same),
    ("udp/", "timestamp", "rendezvous.timestamp", Shows::Same),
    // UDP payloads (§3).
    ("udp/", "pad", "rendezvous.padding", Shows::Padding),
    ("udp/", "empty", "rendezvous.keepalive", Shows::Absent),
    ("udp/", "keepalive", "rendezvous.keepalive", Shows::Same),
    ("udp/", "epoch", "rendezvous.epoch", Shows::Hex32),
    ("udp/", "public", "", Shows::Address),
    ("udp/", "cert_len", "rendezvous.cert_len", Shows::Same),
    ("udp/", "cookie", "rendezvous.cookie", Shows::NoneAbsent),
    ("udp/", "flags", "rendezvous.register_flags", Shows::Same),
    (
        "udp/server-event/",
        "event",
        "rendezvous.event_code",
        Shows::Number(&[("punch", "1")]),
    ),
    ("udp/", "peer", "rendezvous.peer", Shows::Same),
    ("udp/", "to", "rendezvous.destination", Shows::Same),
    ("udp/", "from", "rendezvous.source", Shows::Same),
    (
        "udp/lookup-answer/",
        "status",
        "rendezvous.lookup.status",
        Shows::Number(&[("online", "0"), ("offline", "1"), ("unknown", "2")]),
    ),
    ("udp/", "age", "rendezvous.age", Shows::Same),
    // TCP: the hello, commands and answers (§8).
    (
        "tcp/",
        "role",
        "rendezvous.hello.role",
        Shows::Number(&[("server", "1"), ("client", "2")]),
    ),
    ("tcp/", "name", "rendezvous.hello.name", Shows::Same),
    ("tcp/", "command", "rendezvous.command", Shows::Command),
    ("tcp/", "piece", "rendezvous.answer", Shows::Number(PIECES)),
    ("tcp/", "user", "rendezvous.username", Shows::Same),
    ("tcp/", "contact", "rendezvous.contact", Shows::Same),
    ("tcp/", "phone", "rendezvous.phone", Shows::Same),
    ("tcp/", "clock", "rendezvous.clock", Shows::Same),
    (
        "tcp/",
        "health",
        "rendezvous.health",
        Shows::Number(&[("ok", "1"), ("degraded", "2"), ("draining", "3")]),
    ),
    // NodeSync (24): entries, then the ids wanted (docs/PROTOCOL.md §8.15).
    (
        "tcp/server/node-sync",
        "count",
        "rendezvous.nodelist.count",
        Shows::Same,
    ),
    (
        "tcp/server/node-sync",
        "want",
        "rendezvous.nodelist.want",
        Shows::Same,
    ),
    (
        "tcp/server/node-sync",
        "id",
        "rendezvous.nodelist.want_id",
        Shows::Same,
    ),
    // DirWant (23) and Reconcile (22), and its answer (§8.20).
    (
        "tcp/server/dir-want",
        "want",
        "rendezvous.dir.want_count",
        Shows::Same,
    ),
    (
        "tcp/server/dir-want",
        "id",
        "rendezvous.dir.want_id",
        Shows::Same,
    ),
    (
        "tcp/",
        "set",
        "rendezvous.reconcile.set",
        Shows::Number(&[("contacts", "1"), ("directory", "2"), ("node-list", "3")]),
    ),
    (
        "tcp/",
        "message",
        "rendezvous.reconcile.message",
        Shows::Same,
    ),
    (
        "tcp/server/node-list",
        "count",
        "rendezvous.nodelist.count",
        Shows::Same,
    ),
    (
        "tcp/answer/node-list",
        "count",
        "rendezvous.nodelist.count",
        Shows::Same,
    ),
    ("tcp/", "count", "rendezvous.count", Shows::Same),
    ("tcp/", "uid", "rendezvous.node.uid", Shows::Same),
    ("tcp/", "version", "rendezvous.node.version", Shows::Same),
    ("tcp/", "alias", "rendezvous.node.alias", Shows::Same),
    ("tcp/", "location", "rendezvous.node.location", Shows::Same),
    ("tcp/", "key", "rendezvous.node.key", Shows::Same),
    ("tcp/", "hash", "rendezvous.nodelist.hash", Shows::Same),
    ("tcp/", "line", "rendezvous.journal.line", Shows::Same),
    ("tcp/", "journal", "rendezvous.journal.id", Shows::Hex0x),
    ("tcp/", "since", "rendezvous.journal.since", Shows::Same),
    ("tcp/", "limit", "rendezvous.journal.limit", Shows::Same),
    (
        "tcp/server/forward/",
        "kind",
        "rendezvous.forward.kind",
        Shows::Number(&[("punch", "1"), ("relay", "2")]),
    ),
    (
        "tcp/",
        "kind",
        "rendezvous.dir.kind",
        Shows::Number(&[("registration", "1"), ("refresh", "2"), ("expiry", "3")]),
    ),
    ("tcp/", "hops", "rendezvous.hops", Shows::Same),
    ("tcp/", "fp", "rendezvous.dir.fingerprint", Shows::Same),
    ("tcp/", "timestamp", "rendezvous.dir.timestamp", Shows::Same),
    ("tcp/", "age_ms", "rendezvous.dir.age_ms", Shows::Same),
    ("tcp/", "home_uid", "rendezvous.dir.home_uid", Shows::Same),
    ("tcp/", "signature", "rendezvous.signature", Shows::Same),
    // A client's proof (docs/PROTOCOL.md §8.18).
    (
        "tcp/client/",
        "cert_len",
        "rendezvous.cert_len",
        Shows::Same,
    ),
    ("tcp/client/", "sig_len", "rendezvous.sig_len", Shows::Same),
    (
        "tcp/",
        "payload",
        "rendezvous.dir.payload_len",
        Shows::ByteCount,
    ),
    ("tcp/", "id", "rendezvous.forward.id", Shows::Hex0x),
    ("tcp/", "source", "rendezvous.source", Shows::Same),
    ("tcp/", "nonce", "rendezvous.nonce", Shows::Same),
    ("tcp/", "text", "rendezvous.status_text", Shows::Same),
    // Both planes.
    ("", "addr", "", Shows::Address),
    ("", "event", "rendezvous.event", Shows::Same),
    ("", "target", "rendezvous.target", Shows::Same),
    ("", "home", "rendezvous.home", Shows::Same),
    ("", "status", "rendezvous.status", Shows::Same),
    ("", "request", "rendezvous.request", Shows::Same),
    ("", "detail", "rendezvous.detail", Shows::Same),
];

/// What the dissector should show in one fixture's frame: every field the fixture's keys
/// map to, with its values in order (none: the field must be absent).
type Expected = BTreeMap<&'static str, Vec<String>>;

/// The fixture's fields through [`MAPPING`]; panics on a key the table does not map, so a
/// new fixture field needs a row.
fn expected(f: &Fixture) -> Expected {
    let mut out = Expected::new();
    for (key, value) in f.fields {
        let &(_, _, field, shows) = MAPPING
            .iter()
            .find(|(scope, k, _, _)| f.name.starts_with(scope) && k == key)
            .unwrap_or_else(|| panic!("no row of MAPPING for {key} of {}", f.name));
        for (field, value) in shown(f, field, shows, value) {
            let values = out.entry(field).or_default();
            values.extend(value);
        }
    }
    out
}

/// One fixture value as the dissector shows it: `(field, value)` pairs (`None`: the field
/// is absent).
fn shown(
    f: &Fixture,
    field: &'static str,
    shows: Shows,
    value: &str,
) -> Vec<(&'static str, Option<String>)> {
    let one = |v: String| vec![(field, Some(v))];
    match shows {
        Shows::Same => one(value.to_string()),
        Shows::Number(table) => {
            let n = table.iter().find(|(name, _)| *name == value);
            let n = n.unwrap_or_else(|| panic!("{value} of {} not in its table", f.name));
            vec![(field, Some(n.1.to_string()).filter(|s| !s.is_empty()))]
        }
        Shows::PacketType => {
            let t = (0..=255u8).find(|t| PacketType::from(*t).name() == value);
            one(t.expect("a packet type").to_string())
        }
        Shows::Command => {
            let Frame::Command(role) = f.frame else {
                panic!("{} is no command", f.name)
            };
            let b = (0..=255u8).find(|b| command_name(role, *b) == Some(value));
            one(b.expect("a command").to_string())
        }
        Shows::Hex32 => one(format!("0x{:08x}", value.parse::<u32>().expect("u32"))),
        Shows::Hex0x => one(format!("0x{value}")),
        Shows::Address => address(value),
        Shows::ByteCount => one((value.len() / 2).to_string()),
        Shows::Padding => {
            let n: usize = value.parse().expect("a count");
            let bytes = f.bytes();
            let pad: String = bytes[bytes.len() - n..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            vec![(field, Some(pad).filter(|p| !p.is_empty()))]
        }
        Shows::NoneAbsent => vec![(field, Some(value.to_string()).filter(|v| v != "none"))],
        Shows::Absent => vec![(field, None)],
    }
}

/// `IP:PORT` as the dissector's address and port fields.
fn address(value: &str) -> Vec<(&'static str, Option<String>)> {
    let a: std::net::SocketAddr = value.parse().expect("IP:PORT");
    let ip_field = if a.is_ipv4() {
        "rendezvous.addr"
    } else {
        "rendezvous.addr6"
    };
    vec![
        (ip_field, Some(a.ip().to_string())),
        ("rendezvous.port", Some(a.port().to_string())),
    ]
}

/// A pcap file being written: Ethernet frames, one record each (microsecond timestamps,
/// one second apart from 2026-01-01).
struct Pcap {
    bytes: Vec<u8>,
    /// Frames written so far (the last one's number).
    frames: u32,
}

impl Pcap {
    /// The global header: magic, version 2.4, no time zone, snapshot length 65535, link
    /// type 1 (Ethernet).
    fn new() -> Pcap {
        let mut bytes = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        for word in [0u32, 0, 65_535, 1] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        Pcap { bytes, frames: 0 }
    }

    /// Writes one frame; returns its number (from 1, as tshark counts).
    fn frame(&mut self, frame: &[u8]) -> u32 {
        self.frames += 1;
        let len = u32::try_from(frame.len()).expect("small frame");
        for word in [1_767_225_600 + self.frames, 0, len, len] {
            self.bytes.extend_from_slice(&word.to_le_bytes());
        }
        self.bytes.extend_from_slice(frame);
        self.frames
    }

    /// One UDP datagram between the client port `client` and the server.
    fn datagram(&mut self, client: u16, to_server: bool, payload: &[u8]) -> u32 {
        let (from, to) = if to_server {
            (client, PORT)
        } else {
            (PORT, client)
        };
        let mut frame = Vec::new();
        ip(to_server)
            .udp(from, to)
            .write(&mut frame, payload)
            .expect("a datagram of the test's own making");
        self.frame(&frame)
    }
}

/// Ethernet and IPv4 headers, client to server or back.
fn ip(to_server: bool) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let (client_mac, server_mac) = ([2, 0, 0, 0, 0, 10], [2, 0, 0, 0, 0, 1]);
    if to_server {
        PacketBuilder::ethernet2(client_mac, server_mac).ipv4(CLIENT, SERVER, 64)
    } else {
        PacketBuilder::ethernet2(server_mac, client_mac).ipv4(SERVER, CLIENT, 64)
    }
}

/// One TCP connection between a client port and the server: the next sequence number of
/// each side.
struct Connection {
    client: u16,
    /// Next sequence number of the client, then of the server.
    seq: [u32; 2],
}

impl Connection {
    /// The three-way handshake.
    fn open(pcap: &mut Pcap, client: u16) -> Connection {
        let mut c = Connection {
            client,
            seq: [1000, 5000],
        };
        c.segment(pcap, true, Flags::Syn, &[]);
        c.segment(pcap, false, Flags::SynAck, &[]);
        c.segment(pcap, true, Flags::Ack, &[]);
        c
    }

    /// One segment carrying `payload`; returns its frame number.
    fn send(&mut self, pcap: &mut Pcap, to_server: bool, payload: &[u8]) -> u32 {
        self.segment(pcap, to_server, Flags::PshAck, payload)
    }

    fn segment(&mut self, pcap: &mut Pcap, to_server: bool, flags: Flags, payload: &[u8]) -> u32 {
        let (me, peer) = if to_server { (0, 1) } else { (1, 0) };
        let (from, to) = if to_server {
            (self.client, PORT)
        } else {
            (PORT, self.client)
        };
        let b = ip(to_server).tcp(from, to, self.seq[me], 65_535);
        let b = match flags {
            Flags::Syn => b.syn(),
            Flags::SynAck => b.syn().ack(self.seq[peer]),
            Flags::Ack => b.ack(self.seq[peer]),
            Flags::PshAck => b.psh().ack(self.seq[peer]),
        };
        let mut frame = Vec::new();
        b.write(&mut frame, payload)
            .expect("a segment of the test's own making");
        let len = u32::try_from(payload.len()).expect("small segment");
        self.seq[me] += len + u32::from(matches!(flags, Flags::Syn | Flags::SynAck));
        pcap.frame(&frame)
    }
}

/// The flags of a segment.
#[derive(Clone, Copy)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    PshAck,
}

/// The pcap of every fixture.
struct Capture {
    bytes: Vec<u8>,
    /// Which frame holds which fixture.
    frames: Vec<(u32, &'static Fixture)>,
    /// The frames malformed on purpose.
    on_purpose: BTreeSet<u32>,
    /// The frame of a ListAll answer's count 16,777,216 (first byte 1).
    big_count: u32,
}

/// The pcap of every fixture, then frames made from fixtures: two malformed on purpose
/// (a lookup cut by one byte; a client hello, then command 9), one answer that is not the
/// answer due (a cursor where a nonce is due), a count whose first byte is not 0, the
/// answers to a Reconcile, a DirWant and a NodeSync asked in a row, and frames 22-24 out
/// of bounds (malformed on purpose).
fn capture() -> Capture {
    let mut pcap = Pcap::new();
    let mut frames = Vec::new();
    let mut client = FIRST_CLIENT_PORT;
    for f in fixtures::all().filter(|f| f.frame == Frame::Datagram) {
        let to_server = f.direction == Direction::ToServer;
        frames.push((pcap.datagram(client, to_server, &f.bytes()), f));
    }
    for e in fixtures::exchanges() {
        client += 1;
        let mut c = Connection::open(&mut pcap, client);
        for f in e.opener {
            frames.push((c.send(&mut pcap, true, &f.bytes()), f));
        }
        for f in e.acceptor {
            frames.push((c.send(&mut pcap, false, &f.bytes()), f));
        }
    }
    let named = |name| fixtures::named(name).expect("fixture").bytes();
    let mut on_purpose = BTreeSet::new();
    let lookup = named("udp/lookup/plain");
    on_purpose.insert(pcap.datagram(FIRST_CLIENT_PORT, true, &lookup[..lookup.len() - 1]));
    let mut c = Connection::open(&mut pcap, client + 1);
    c.send(&mut pcap, true, &named("tcp/hello/client"));
    on_purpose.insert(c.send(&mut pcap, true, &[9]));
    let mut c = Connection::open(&mut pcap, client + 2);
    c.send(&mut pcap, true, &named("tcp/hello/server"));
    c.send(&mut pcap, true, &named("tcp/server/auth-challenge"));
    on_purpose.insert(c.send(&mut pcap, false, &named("tcp/answer/cursor")));
    let mut c = Connection::open(&mut pcap, client + 3);
    c.send(&mut pcap, true, &named("tcp/hello/client"));
    c.send(&mut pcap, true, &named("tcp/client/list-all"));
    let big_count = c.send(&mut pcap, false, &0x0100_0000u32.to_be_bytes());
    // The answers to a Reconcile, a DirWant and a NodeSync asked in a row, each framed by
    // what was asked (busy; DirRecord frames then the end, as to a DirRequest; the diff, as
    // to a NodeList): `exchanges()` pairs those answers with 22, 17 and 11.
    let mut c = Connection::open(&mut pcap, client + 4);
    c.send(&mut pcap, true, &named("tcp/hello/server"));
    for name in [
        "tcp/server/reconcile",
        "tcp/server/dir-want",
        "tcp/server/node-sync",
    ] {
        let f = fixtures::named(name).expect("fixture");
        frames.push((c.send(&mut pcap, true, &f.bytes()), f));
    }
    for name in [
        "tcp/answer/reconcile/busy",
        "tcp/answer/directory",
        "tcp/answer/node-list-diff",
    ] {
        let f = fixtures::named(name).expect("fixture");
        frames.push((c.send(&mut pcap, false, &f.bytes()), f));
    }
    // Frames 22-24 out of bounds, each on a server connection of its own: a Reconcile
    // over 60,000 bytes, of set 4, without a message; a DirWant whose length is not a
    // multiple of 32, one over 4096; a NodeSync of 4097 entries, one wanting 4097 ids.
    let mut dir_want_33 = vec![23, 0, 33];
    dir_want_33.extend([0xd1; 33]);
    let bad: [&[u8]; 7] = [
        &[22, 0xea, 0x61, 1, 0x61],
        &[22, 0, 6, 4, 0x61, 0, 0, 2, 0],
        &[22, 0, 1, 1],
        &dir_want_33,
        &[23, 0x10, 0x20],
        &[24, 0, 0, 0x10, 0x01],
        &[24, 0, 0, 0, 0, 0x10, 0x01],
    ];
    for (k, bytes) in (5..).zip(bad) {
        let mut c = Connection::open(&mut pcap, client + k);
        c.send(&mut pcap, true, &named("tcp/hello/server"));
        on_purpose.insert(c.send(&mut pcap, true, bytes));
    }
    Capture {
        bytes: pcap.bytes,
        frames,
        on_purpose,
        big_count,
    }
}

/// A text value as `tshark -T fields` prints it: backslash, newline, carriage return and
/// tab escaped.
fn as_printed(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}

/// What the dissector shows of `want`'s fields in `row`, where it differs.
fn differences(f: &Fixture, want: &Expected, row: &Row) -> Vec<String> {
    want.iter()
        .filter_map(|(field, want)| {
            let got: Vec<String> = row
                .all(field)
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect();
            let want: Vec<String> = want
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| as_printed(s))
                .collect();
            (got != want).then(|| {
                format!(
                    "{}: {field}: the dissector shows {got:?}, the codecs read {want:?}",
                    f.name
                )
            })
        })
        .collect()
}

#[test]
fn every_fixture_reads_in_the_dissector_as_in_the_codecs() {
    if !tools_or_skip(false, &["tshark"]) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("rdv-dissector-")
        .tempdir()
        .expect("temp dir");
    let capture = capture();
    let path = dir.path().join("fixtures.pcap");
    std::fs::write(&path, &capture.bytes).expect("write the pcap");
    keep(&path);

    // The fixtures' certificates are a few bytes, not X.509: Wireshark's own dissector of
    // them would mark their frames.
    assert_eq!(
        marked_frames(&path, PORT, &["rendezvous.decode_cert:FALSE"]),
        capture.on_purpose,
        "frames marked malformed: those made so on purpose, and no fixture"
    );
    let mut fields = vec![
        "frame.number",
        "rendezvous.addr",
        "rendezvous.addr6",
        "rendezvous.port",
    ];
    fields.extend(MAPPING.iter().map(|m| m.2).filter(|f| !f.is_empty()));
    fields.sort_unstable();
    fields.dedup();
    let rows = decode_rows(&path, PORT, &fields);
    let mut wrong = Vec::new();
    let mut checked = BTreeSet::new();
    for (number, f) in &capture.frames {
        let row = rows
            .iter()
            .find(|r| r.number() == *number)
            .expect("a row per frame");
        wrong.extend(differences(f, &expected(f), row));
        checked.insert(f.name);
    }
    assert!(
        wrong.is_empty(),
        "{} differences:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // As the codec reads it: where a ListAll answer is due, 4 bytes are its count, whatever
    // their first byte.
    let row = rows.iter().find(|r| r.number() == capture.big_count);
    assert!(
        row.is_some_and(|r| r.has("rendezvous.count", "16777216")),
        "the count 16777216: {row:?}"
    );
    assert_eq!(
        checked.len(),
        fixtures::all().count(),
        "every fixture is in the capture"
    );
}
