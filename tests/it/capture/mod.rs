//! Reading captures and `rendezvous decode` (docs/PROTOCOL.md §10): real sessions of the
//! binary, on a random port, captured by tcpdump (Linux cooked v1 and v2) and tshark
//! (pcapng), and captures written byte by byte here for every supported link type, byte
//! order and timestamp precision, mixed with other traffic, cut in the middle, or not
//! captures at all. Without `--port`, decode must find the server's port by its traffic,
//! and refuse a capture of other traffic only.
//!
//! Tests that need tcpdump or tshark and root skip when those are missing, but fail when
//! `CI=true`. Every wait has a deadline; the capturers and clients are killed by pid on
//! every path (`Proc` kills on drop).

use crate::common;

use common::{bin, run, Finished, Identity, Proc, Server};
use rendezvous::tools::capture::{read_capture, CaptureRead};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Deadline of one step (a command, a capturer starting or stopping).
const T: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Bytes written by hand: IP, UDP, TCP, link headers, pcap and pcapng files
// ---------------------------------------------------------------------------------------

pub(crate) const PORT: u16 = 4747;
const CLIENT_PORT: u16 = 40000;
/// Capture time of the first packet of the scenario: 2026-01-01T00:00:00Z, in µs.
const T0: u64 = 1_767_225_600_000_000;

/// Documentation addresses (never sent anywhere: these packets only live in files).
const C4: [u8; 4] = [192, 0, 2, 10];
const S4: [u8; 4] = [198, 51, 100, 1];
const C6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const S6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// IPv4 header (no options, checksum 0: readers of captures do not check it) + payload.
/// `frag` is the flags/fragment-offset word (0x4000 = don't fragment).
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8], frag: u16) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut v = vec![0x45, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0x12, 0x34]);
    v.extend_from_slice(&frag.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

/// IPv6 header + payload.
fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ack.to_be_bytes());
    v.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    v.extend_from_slice(payload);
    v
}

/// Client -> server or server -> client IP packet of the scenario, IPv4 or IPv6.
fn ip(v6: bool, to_server: bool, proto: u8, transport: &[u8]) -> Vec<u8> {
    match (v6, to_server) {
        (false, true) => ipv4(C4, S4, proto, transport, 0x4000),
        (false, false) => ipv4(S4, C4, proto, transport, 0x4000),
        (true, true) => ipv6(C6, S6, proto, transport),
        (true, false) => ipv6(S6, C6, proto, transport),
    }
}

/// The link layers a test capture can use, with their pcap link type numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Ethernet,
    /// Ethernet with an 802.1Q tag.
    EthernetVlan,
    /// BSD loopback: 4-byte family in the writer's byte order.
    Null,
    /// OpenBSD loopback: 4-byte family, network order.
    Loop,
    Raw101,
    Raw12,
    Ipv4Only228,
    Ipv6Only229,
    Sll,
    Sll2,
}

impl Link {
    pub(crate) fn number(self) -> u32 {
        match self {
            Link::Ethernet | Link::EthernetVlan => 1,
            Link::Null => 0,
            Link::Loop => 108,
            Link::Raw101 => 101,
            Link::Raw12 => 12,
            Link::Ipv4Only228 => 228,
            Link::Ipv6Only229 => 229,
            Link::Sll => 113,
            Link::Sll2 => 276,
        }
    }

    /// The frame carrying `ip` (or, with `ethertype` other than IP, any payload).
    fn frame(self, ip: &[u8], big_endian_file: bool) -> Vec<u8> {
        let v6 = ip.first().map(|b| b >> 4) == Some(6);
        let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
        self.frame_of(ethertype, ip, big_endian_file)
    }

    fn frame_of(self, ethertype: u16, payload: &[u8], big_endian_file: bool) -> Vec<u8> {
        let v6 = ethertype == 0x86dd;
        let mut v = Vec::new();
        match self {
            Link::Ethernet | Link::EthernetVlan => {
                v.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]);
                if self == Link::EthernetVlan {
                    v.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
                }
                v.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::Null => {
                let family: u32 = if v6 { 10 } else { 2 };
                if big_endian_file {
                    v.extend_from_slice(&family.to_be_bytes());
                } else {
                    v.extend_from_slice(&family.to_le_bytes());
                }
            }
            Link::Loop => {
                let family: u32 = if v6 { 24 } else { 2 };
                v.extend_from_slice(&family.to_be_bytes());
            }
            Link::Raw101 | Link::Raw12 | Link::Ipv4Only228 | Link::Ipv6Only229 => {}
            Link::Sll => {
                // packet type 0 (to us), ARPHRD_LOOPBACK 772, address length 6, address 8.
                v.extend_from_slice(&[0, 0, 0x03, 0x04, 0, 6]);
                v.extend_from_slice(&[0u8; 8]);
                v.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::Sll2 => {
                v.extend_from_slice(&ethertype.to_be_bytes());
                v.extend_from_slice(&[0, 0]); // reserved
                v.extend_from_slice(&1u32.to_be_bytes()); // interface index
                v.extend_from_slice(&[0x03, 0x04, 0, 6]); // ARPHRD 772, packet type, addr len
                v.extend_from_slice(&[0u8; 8]);
            }
        }
        v.extend_from_slice(payload);
        v
    }
}

/// A pcap file: `[magic][2][4][zone 0][sigfigs 0][snaplen][link]`, then records
/// `[ts_sec][ts_usec or ts_nsec][caplen][origlen][data]`. Returns the bytes and the offset
/// of each record.
pub(crate) fn pcap(
    big: bool,
    nanos: bool,
    link: u32,
    packets: &[(u64, Vec<u8>)],
) -> (Vec<u8>, Vec<usize>) {
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut f = Vec::new();
    f.extend_from_slice(&u32b(magic));
    f.extend_from_slice(&u16b(2));
    f.extend_from_slice(&u16b(4));
    f.extend_from_slice(&u32b(0));
    f.extend_from_slice(&u32b(0));
    f.extend_from_slice(&u32b(262_144));
    f.extend_from_slice(&u32b(link));
    let mut offsets = Vec::new();
    for (ts_us, data) in packets {
        offsets.push(f.len());
        let frac = if nanos {
            // Sub-microsecond digits the reader must drop.
            (ts_us % 1_000_000) * 1000 + 999
        } else {
            ts_us % 1_000_000
        };
        f.extend_from_slice(&u32b((ts_us / 1_000_000) as u32));
        f.extend_from_slice(&u32b(frac as u32));
        f.extend_from_slice(&u32b(data.len() as u32));
        f.extend_from_slice(&u32b(data.len() as u32));
        f.extend_from_slice(data);
    }
    (f, offsets)
}

/// A pcapng file: a section header, one interface (with `if_tsresol` 9, nanoseconds, when
/// `nanos`), then one enhanced packet block per packet.
fn pcapng(big: bool, nanos: bool, link: u32, packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let block = |f: &mut Vec<u8>, ty: u32, body: &[u8]| {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        f.extend_from_slice(&u32b(ty));
        f.extend_from_slice(&u32b(len));
        f.extend_from_slice(body);
        f.resize(f.len() + padded - body.len(), 0);
        f.extend_from_slice(&u32b(len));
    };
    let mut f = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&u32b(0x1a2b_3c4d));
    shb.extend_from_slice(&u16b(1));
    shb.extend_from_slice(&u16b(0));
    shb.extend_from_slice(&[0xff; 8]); // section length unknown
    block(&mut f, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&u16b(link as u16));
    idb.extend_from_slice(&u16b(0));
    idb.extend_from_slice(&u32b(262_144));
    if nanos {
        idb.extend_from_slice(&u16b(9)); // if_tsresol
        idb.extend_from_slice(&u16b(1));
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    }
    block(&mut f, 1, &idb);
    for (ts_us, data) in packets {
        let ts = if nanos { ts_us * 1000 + 999 } else { *ts_us };
        let mut epb = Vec::new();
        epb.extend_from_slice(&u32b(0));
        epb.extend_from_slice(&u32b((ts >> 32) as u32));
        epb.extend_from_slice(&u32b(ts as u32));
        epb.extend_from_slice(&u32b(data.len() as u32));
        epb.extend_from_slice(&u32b(data.len() as u32));
        epb.extend_from_slice(data);
        epb.resize(epb.len().div_ceil(4) * 4, 0);
        block(&mut f, 6, &epb);
    }
    f
}

/// `text` then NUL bytes up to `width`.
fn padded(text: &[u8], width: usize) -> Vec<u8> {
    let mut v = text.to_vec();
    v.resize(width, 0);
    v
}

/// A type-5 lookup of `11 11 .. 11` (docs/PROTOCOL.md, type 5 example): 44 bytes.
fn lookup_bytes() -> Vec<u8> {
    let mut v = vec![
        0x02, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x69, 0x55, 0xb9, 0x00,
    ];
    v.extend_from_slice(&[0x11; 32]);
    v
}

/// A type-9 cookie from the server (28 bytes).
fn cookie_bytes() -> Vec<u8> {
    let mut v = vec![
        0x01, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x69, 0x55, 0xb9, 0x00,
    ];
    v.extend(0xc0..=0xcf);
    v
}

/// The client's stream: hello (role 2, "cli"), Update alice/bob/555, Barrier: 791 bytes.
fn client_stream() -> Vec<u8> {
    let mut v = vec![2];
    v.extend(padded(b"cli", 256));
    v.push(1);
    v.extend(padded(b"alice", 256));
    v.extend(padded(b"bob", 256));
    v.extend(padded(b"555", 20));
    v.push(5);
    assert_eq!(v.len(), 791);
    v
}

/// The server's answer to the Barrier: status 200 "durable" (12 bytes).
fn server_stream() -> Vec<u8> {
    let mut v = vec![0x07, 0x00, 0xc8, 0x05, 0x07];
    v.extend_from_slice(b"durable");
    v
}

/// Where the client's stream is split: the Update straddles the two segments.
const SPLIT: usize = 400;
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 0xffff_fff0; // the server's sequence numbers wrap around 2^32

/// The scenario's IP packets with their capture times: a lookup, a TCP connection whose
/// client stream arrives as two out-of-order segments plus a retransmission, the server's
/// answer, and a cookie datagram back to the client.
fn scenario(v6: bool) -> Vec<(u64, Vec<u8>)> {
    let c = client_stream();
    let (cp, sp) = (CLIENT_PORT, PORT);
    let seg = |to_server: bool, t: u64, seq: u32, ack: u32, flags: u8, data: &[u8]| {
        let (a, b) = if to_server { (cp, sp) } else { (sp, cp) };
        (
            T0 + t,
            ip(v6, to_server, PROTO_TCP, &tcp(a, b, seq, ack, flags, data)),
        )
    };
    let second = CLIENT_ISN + 1 + SPLIT as u32;
    vec![
        (T0, ip(v6, true, PROTO_UDP, &udp(cp, sp, &lookup_bytes()))),
        seg(true, 1000, CLIENT_ISN, 0, SYN, &[]),
        seg(false, 1100, SERVER_ISN, CLIENT_ISN + 1, SYN | ACK, &[]),
        seg(true, 2000, second, SERVER_ISN + 1, PSH | ACK, &c[SPLIT..]),
        seg(
            true,
            2100,
            CLIENT_ISN + 1,
            SERVER_ISN + 1,
            PSH | ACK,
            &c[..SPLIT],
        ),
        seg(
            true,
            2200,
            CLIENT_ISN + 1,
            SERVER_ISN + 1,
            PSH | ACK,
            &c[..SPLIT],
        ),
        seg(
            false,
            3000,
            SERVER_ISN.wrapping_add(1),
            CLIENT_ISN + 1 + c.len() as u32,
            PSH | ACK,
            &server_stream(),
        ),
        (
            T0 + 4000,
            ip(v6, false, PROTO_UDP, &udp(sp, cp, &cookie_bytes())),
        ),
    ]
}

/// The scenario's frames for `link`.
pub(crate) fn frames(link: Link, v6: bool, big: bool) -> Vec<(u64, Vec<u8>)> {
    scenario(v6)
        .into_iter()
        .map(|(t, p)| (t, link.frame(&p, big)))
        .collect()
}

fn client_addr(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::from((C6, CLIENT_PORT))
    } else {
        SocketAddr::from((C4, CLIENT_PORT))
    }
}

fn server_addr(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::from((S6, PORT))
    } else {
        SocketAddr::from((S4, PORT))
    }
}

/// Checks that `read` holds exactly the scenario.
fn assert_scenario(name: &str, read: &CaptureRead, v6: bool) {
    assert!(read.error.is_none(), "{name}: {:?}", read.error);
    assert_eq!(read.packets, 8, "{name}: packets");
    assert_eq!(read.skipped, 0, "{name}: skipped");
    assert_eq!(read.datagrams.len(), 2, "{name}: datagrams");
    let (c, s) = (client_addr(v6), server_addr(v6));
    let d = &read.datagrams[0];
    assert_eq!(
        (d.ts_us, d.src, d.dst, d.to_server),
        (T0, c, s, true),
        "{name}: lookup datagram"
    );
    assert_eq!(d.payload, lookup_bytes(), "{name}: lookup payload");
    let d = &read.datagrams[1];
    assert_eq!(
        (d.ts_us, d.src, d.dst, d.to_server),
        (T0 + 4000, s, c, false),
        "{name}: cookie datagram"
    );
    assert_eq!(d.payload, cookie_bytes(), "{name}: cookie payload");
    assert_eq!(read.flows.len(), 1, "{name}: flows");
    let f = &read.flows[0];
    assert_eq!((f.client, f.server), (c, s), "{name}: flow ends");
    assert_eq!(f.first_ts_us, T0 + 1000, "{name}: first_ts_us");
    assert_eq!(f.client_data, client_stream(), "{name}: client stream");
    assert_eq!(
        f.client_chunks,
        vec![(T0 + 2100, 0), (T0 + 2100, SPLIT)],
        "{name}: client chunks"
    );
    assert_eq!(f.server_data, server_stream(), "{name}: server stream");
    assert_eq!(
        f.server_chunks,
        vec![(T0 + 3000, 0)],
        "{name}: server chunks"
    );
    assert_eq!(f.gaps, 0, "{name}: gaps");
}

/// A temporary directory for capture files, removed on drop.
fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rdv-capture-")
        .tempdir()
        .expect("temp dir")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write capture");
    p
}

/// `rendezvous decode FILE --port PORT [--json]`.
fn decode(file: &Path, port: u16, json: bool) -> Finished {
    decode_with(file, Some(port), json)
}

/// `rendezvous decode FILE [--port PORT] [--json]`: without a port, decode finds the
/// server's ports by their traffic.
fn decode_with(file: &Path, port: Option<u16>, json: bool) -> Finished {
    let mut cmd = bin();
    cmd.arg("decode").arg(file);
    if let Some(port) = port {
        cmd.args(["--port", &port.to_string()]);
    }
    if json {
        cmd.arg("--json");
    }
    run("decode", cmd, T)
}

/// The summary line decode writes on stderr.
fn summary(done: &Finished) -> &str {
    done.stderr
        .iter()
        .find(|l| l.starts_with("decode: ") && l.contains(" packets read, "))
        .unwrap_or_else(|| panic!("no summary in {:?}", done.stderr))
}

fn lines_with<'a>(lines: &'a [String], parts: &[&str]) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// Panics unless exactly `n` lines contain every one of `parts`.
fn expect_lines(lines: &[String], parts: &[&str], n: usize) {
    let found = lines_with(lines, parts);
    assert_eq!(
        found.len(),
        n,
        "expected {n} lines with {parts:?}; lines:\n{}",
        lines.join("\n")
    );
}

fn parse_json(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Hand-built captures
// ---------------------------------------------------------------------------------------

#[test]
fn every_link_type_byte_order_and_precision_gives_the_exact_streams() {
    let dir = tmp();
    let cases: &[(&str, Link, bool, bool, bool)] = &[
        // name, link, IPv6, big-endian file, nanosecond timestamps
        ("ethernet-le", Link::Ethernet, false, false, false),
        ("ethernet-vlan-v6-be", Link::EthernetVlan, true, true, false),
        ("null-le", Link::Null, false, false, false),
        ("null-v6-be", Link::Null, true, true, false),
        ("loop-v6", Link::Loop, true, false, true),
        ("raw101-v4", Link::Raw101, false, false, false),
        ("raw101-v6-be", Link::Raw101, true, true, false),
        ("raw12-v4", Link::Raw12, false, true, true),
        ("raw228-v4-ns", Link::Ipv4Only228, false, false, true),
        ("raw229-v6", Link::Ipv6Only229, true, false, false),
        ("raw229-v6-be-ns", Link::Ipv6Only229, true, true, true),
        ("sll-v4-be", Link::Sll, false, true, false),
        ("sll-v6-ns", Link::Sll, true, false, true),
        ("sll2-v4-ns", Link::Sll2, false, false, true),
        ("sll2-v6-be", Link::Sll2, true, true, false),
    ];
    for &(name, link, v6, big, nanos) in cases {
        let (bytes, _) = pcap(big, nanos, link.number(), &frames(link, v6, big));
        let path = write(dir.path(), &format!("{name}.pcap"), &bytes);
        let read = read_capture(&path, PORT).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_scenario(name, &read, v6);
    }
    let ng: &[(&str, Link, bool, bool, bool)] = &[
        ("ng-ethernet-le", Link::Ethernet, false, false, false),
        ("ng-sll2-v6-be-ns", Link::Sll2, true, true, true),
        ("ng-raw229-be", Link::Ipv6Only229, true, true, false),
        ("ng-null-le-ns", Link::Null, false, false, true),
    ];
    for &(name, link, v6, big, nanos) in ng {
        let bytes = pcapng(big, nanos, link.number(), &frames(link, v6, big));
        let path = write(dir.path(), &format!("{name}.pcapng"), &bytes);
        let read = read_capture(&path, PORT).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_scenario(name, &read, v6);
    }
}

#[test]
fn decode_prints_the_hand_built_scenario_as_text_and_json() {
    let dir = tmp();
    let (bytes, _) = pcap(false, false, 1, &frames(Link::Ethernet, false, false));
    let path = write(dir.path(), "scenario.pcap", &bytes);
    let done = decode(&path, PORT, false);
    done.assert_success("decode");
    let out = &done.stdout;
    let target = "11".repeat(32);
    let (c, s) = ("192.0.2.10:40000", "198.51.100.1:4747");
    expect_lines(
        out,
        &[
            "2026-01-01T00:00:00.000000Z udp",
            &format!("{c} -> {s}"),
            "lookup(5) layout=plain params=0x02 timestamp=1767225600 sig_len=0",
            &format!("target={target}"),
        ],
        1,
    );
    expect_lines(
        out,
        &[&format!("udp {s} -> {c} cookie(9)"), "cookie=c0c1c2c3"],
        1,
    );
    expect_lines(
        out,
        &[&format!("tcp {c} -> {s} hello role=client name=\"cli\"")],
        1,
    );
    expect_lines(
        out,
        &[&format!(
            "tcp {c} -> {s} update(1) user=\"alice\" contact=\"bob\" phone=\"555\""
        )],
        1,
    );
    expect_lines(out, &[&format!("tcp {c} -> {s} barrier(5)")], 1);
    expect_lines(
        out,
        &[&format!(
            "tcp {s} -> {c} status(7) status=200 request=5 detail=\"durable\""
        )],
        1,
    );
    assert_eq!(out.len(), 6, "lines:\n{}", out.join("\n"));
    assert!(
        done.stderr.iter().any(|l| l.contains("8 packets read")),
        "summary: {:?}",
        done.stderr
    );

    let json = decode(&path, PORT, true);
    json.assert_success("decode --json");
    let objs = parse_json(&json.stdout);
    assert_eq!(objs.len(), out.len());
    let lookup = objs.iter().find(|o| o["type"] == "lookup").expect("lookup");
    assert_eq!(lookup["proto"], "udp");
    assert_eq!(lookup["type_num"], 5);
    assert_eq!(lookup["src"], c);
    assert_eq!(lookup["dst"], s);
    assert_eq!(lookup["target"], target.as_str());
    assert_eq!(lookup["ts"], "2026-01-01T00:00:00.000000Z");
    assert_eq!(lookup["ts_us"], T0);
    let update = objs.iter().find(|o| o["type"] == "update").expect("update");
    assert_eq!(update["proto"], "tcp");
    assert_eq!(
        (&update["user"], &update["contact"], &update["phone"]),
        (
            &serde_json::json!("alice"),
            &serde_json::json!("bob"),
            &serde_json::json!("555")
        )
    );
    let status = objs.iter().find(|o| o["type"] == "status").expect("status");
    assert_eq!(status["status"], 200);
    assert_eq!(status["request"], 5);
}

/// Raw IP packets of an HTTP connection to port 80: SYN, SYN-ACK, and a request.
fn http() -> Vec<(u64, Vec<u8>)> {
    let request = tcp(41000, 80, 2, 10, PSH | ACK, b"GET / HTTP/1.0\r\n\r\n");
    vec![
        (
            T0 + 12,
            ipv4(C4, S4, PROTO_TCP, &tcp(41000, 80, 1, 0, SYN, &[]), 0),
        ),
        (
            T0 + 13,
            ipv4(S4, C4, PROTO_TCP, &tcp(80, 41000, 9, 2, SYN | ACK, &[]), 0),
        ),
        (T0 + 14, ipv4(C4, S4, PROTO_TCP, &request, 0)),
    ]
}

#[test]
fn other_traffic_is_skipped_and_counted() {
    let dir = tmp();
    let eth = |p: &[u8]| Link::Ethernet.frame(p, false);
    let mut packets = frames(Link::Ethernet, false, false);
    // DNS query and answer (UDP 53).
    let dns = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    packets.push((
        T0 + 10,
        eth(&ipv4(C4, S4, PROTO_UDP, &udp(5353, 53, &dns), 0x4000)),
    ));
    packets.push((
        T0 + 11,
        eth(&ipv4(S4, C4, PROTO_UDP, &udp(53, 5353, &dns), 0x4000)),
    ));
    // TCP on port 80, both ways.
    packets.extend(http().into_iter().map(|(t, p)| (t, eth(&p))));
    // An IPv4 fragment of a datagram to the project's port (more fragments follow).
    packets.push((
        T0 + 15,
        eth(&ipv4(
            C4,
            S4,
            PROTO_UDP,
            &udp(CLIENT_PORT, PORT, &lookup_bytes()),
            0x2000,
        )),
    ));
    // ICMP, ARP, and an IPv6 UDP datagram between other ports.
    packets.push((
        T0 + 16,
        eth(&ipv4(C4, S4, PROTO_ICMP, &[8, 0, 0, 0, 0, 1, 0, 1], 0)),
    ));
    packets.push((T0 + 17, Link::Ethernet.frame_of(0x0806, &[0u8; 28], false)));
    packets.push((
        T0 + 18,
        eth(&ipv6(C6, S6, PROTO_UDP, &udp(1000, 2000, b"x"))),
    ));
    packets.sort_by_key(|(t, _)| *t);
    let (bytes, _) = pcap(false, false, 1, &packets);
    let path = write(dir.path(), "mixed.pcap", &bytes);
    let read = read_capture(&path, PORT).expect("read");
    assert!(read.error.is_none());
    assert_eq!(read.packets, 8 + 9);
    assert_eq!(read.skipped, 9);
    assert_eq!(read.datagrams.len(), 2);
    assert_eq!(read.datagrams[0].payload, lookup_bytes());
    assert_eq!(read.flows.len(), 1);
    assert_eq!(read.flows[0].client_data, client_stream());
    assert_eq!(read.flows[0].server_data, server_stream());

    let done = decode(&path, PORT, false);
    done.assert_success("decode");
    assert_eq!(done.stdout.len(), 6, "lines:\n{}", done.stdout.join("\n"));
    assert!(
        !done
            .stdout
            .iter()
            .any(|l| l.contains(":53") || l.contains(":80 ")),
        "other traffic decoded:\n{}",
        done.stdout.join("\n")
    );
    assert!(
        done.stderr
            .iter()
            .any(|l| l.contains("17 packets read") && l.contains("9 skipped")),
        "summary: {:?}",
        done.stderr
    );
}

/// A small deterministic generator (xorshift64*), for bytes that are no protocol at all.
fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Raw IP packets (link type 101) of other protocols' UDP, with capture times from `t0`:
/// 64 DNS queries to port 53 and their answers (IDs over the whole range of the first
/// byte), and 300 datagrams of random bytes (12 to 211 long) between ports 5000-5099 and
/// 9999, both ways.
pub(crate) fn foreign_udp(t0: u64) -> Vec<(u64, Vec<u8>)> {
    let mut packets = Vec::new();
    let mut t = t0;
    for i in 0..64u16 {
        let id = (i * 0x0405).to_be_bytes();
        let mut q = vec![id[0], id[1], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        let mut a = q.clone();
        a[2..4].copy_from_slice(&[0x81, 0x80]);
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1]);
        let port = 30_000 + i;
        packets.push((t, ipv4(C4, S4, PROTO_UDP, &udp(port, 53, &q), 0x4000)));
        packets.push((t + 1, ipv4(S4, C4, PROTO_UDP, &udp(53, port, &a), 0x4000)));
        t += 10;
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..300u64 {
        let len = 12 + (noise(&mut seed) % 200) as usize;
        let data: Vec<u8> = (0..len).map(|_| noise(&mut seed) as u8).collect();
        let port = 5000 + (i % 100) as u16;
        let (sp, dp, src, dst) = if i % 2 == 0 {
            (port, 9999, C4, S4)
        } else {
            (9999, port, S4, C4)
        };
        packets.push((t, ipv4(src, dst, PROTO_UDP, &udp(sp, dp, &data), 0x4000)));
        t += 10;
    }
    packets
}

/// A pcap (raw IP) of other protocols' UDP only.
pub(crate) fn foreign_capture() -> Vec<u8> {
    pcap(false, false, 101, &foreign_udp(T0)).0
}

/// An empty pcap: the file header and no packet.
pub(crate) fn empty_capture() -> Vec<u8> {
    pcap(false, false, 101, &[]).0
}

#[test]
fn without_a_port_decode_finds_the_server_port_among_dns_http_and_noise() {
    let dir = tmp();
    let eth = |p: &[u8]| Link::Ethernet.frame(p, false);
    let mut packets = frames(Link::Ethernet, false, false);
    packets.extend(
        foreign_udp(T0 + 5000)
            .into_iter()
            .map(|(t, p)| (t, eth(&p))),
    );
    // An HTTP connection (port 80), opened and with data, never a hello.
    packets.extend(http().into_iter().map(|(t, p)| (t, eth(&p))));
    packets.sort_by_key(|(t, _)| *t);
    let (bytes, _) = pcap(false, false, 1, &packets);
    let path = write(dir.path(), "mixed.pcap", &bytes);

    let given = decode(&path, PORT, false);
    given.assert_success("decode --port");
    let found = decode_with(&path, None, false);
    found.assert_success("decode without --port");
    assert_eq!(found.stdout, given.stdout, "the same lines as with --port");
    assert_eq!(found.stdout.len(), 6, "{}", found.stdout.join("\n"));
    assert_eq!(summary(&found), summary(&given), "the same counts");
    let note = format!(
        "decode: port {PORT} carries the protocol (udp: 2 of 2 datagrams are Root packets; \
         tcp: 1 of 1 connections open with a hello)"
    );
    assert!(found.stderr.contains(&note), "{:?}", found.stderr);
    let notes = found
        .stderr
        .iter()
        .filter(|l| l.contains("carries the protocol"))
        .count();
    assert_eq!(notes, 1, "only the server's port: {:?}", found.stderr);
    let json = decode_with(&path, None, true);
    json.assert_success("decode --json without --port");
    assert_eq!(json.stdout, decode(&path, PORT, true).stdout);
}

#[test]
fn without_a_port_a_capture_of_other_traffic_or_none_is_refused() {
    let dir = tmp();
    let foreign = write(dir.path(), "foreign.pcap", &foreign_capture());
    let empty = write(dir.path(), "empty.pcap", &empty_capture());
    for (path, packets) in [(&foreign, 428), (&empty, 0)] {
        let done = decode_with(path, None, false);
        assert_eq!(done.status.code(), Some(1), "{done:?}");
        assert!(done.stdout.is_empty(), "no lines: {:?}", done.stdout);
        let want = format!(
            "error: {}: no traffic of this protocol in its {packets} packets",
            path.display()
        );
        let err = done.stderr.join("\n");
        assert!(err.starts_with(&want), "{err}");
        assert!(err.contains("give --port N"), "{err}");
    }
    // --port overrides: port 53 is decoded as asked, every datagram malformed.
    let done = decode(&foreign, 53, false);
    done.assert_success("decode --port 53");
    assert_eq!(done.stdout.len(), 128, "{}", done.stdout.join("\n"));
    assert!(done
        .stdout
        .iter()
        .all(|l| l.contains(":53 ") && l.contains("malformed")));
    assert!(summary(&done).contains("(port 53: 128 udp datagrams"));
    let done = decode(&empty, PORT, false);
    done.assert_success("decode --port of an empty capture");
    assert!(done.stdout.is_empty());
}

#[test]
fn a_cut_capture_keeps_what_came_before_and_names_the_offset() {
    let dir = tmp();
    let (bytes, offsets) = pcap(false, false, 1, &frames(Link::Ethernet, false, false));
    // Cut inside record 6 (the server's status answer), after its header.
    let cut_at = offsets[6];
    let cut = &bytes[..cut_at + 16 + 10];
    let path = write(dir.path(), "cut.pcap", cut);
    let read = read_capture(&path, PORT).expect("a cut capture still reads");
    let err = read.error.clone().expect("the cut is reported");
    assert_eq!(err.offset, cut_at as u64);
    assert_eq!(err.file, path);
    assert!(err.message.contains("cut"), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: at byte {cut_at}: ", path.display())),
        "{err}"
    );
    assert_eq!(read.packets, 6);
    assert_eq!(read.datagrams.len(), 1);
    assert_eq!(read.flows.len(), 1);
    assert_eq!(read.flows[0].client_data, client_stream());
    assert!(read.flows[0].server_data.is_empty());

    let done = decode(&path, PORT, false);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    expect_lines(&done.stdout, &["lookup(5)"], 1);
    expect_lines(&done.stdout, &["update(1) user=\"alice\""], 1);
    let wanted = format!("error: {}: at byte {cut_at}: ", path.display());
    assert!(
        done.stderr.iter().any(|l| l.starts_with(&wanted)),
        "no {wanted:?} in {:?}",
        done.stderr
    );

    // A pcapng cut inside its last block, and a pcap cut inside a record header.
    let ng = pcapng(false, false, 1, &frames(Link::Ethernet, false, false));
    let path = write(dir.path(), "cut.pcapng", &ng[..ng.len() - 3]);
    let read = read_capture(&path, PORT).expect("a cut pcapng still reads");
    assert_eq!(read.packets, 7);
    assert!(read.error.expect("cut").offset > 0);
    let path = write(dir.path(), "cut-header.pcap", &bytes[..offsets[2] + 5]);
    let read = read_capture(&path, PORT).expect("read");
    assert_eq!(read.packets, 2);
    assert_eq!(read.error.expect("cut").offset, offsets[2] as u64);
}

#[test]
fn a_file_that_is_not_a_capture_is_refused_by_name() {
    let dir = tmp();
    let path = write(dir.path(), "notes.txt", b"hello, this is text\n");
    let err = read_capture(&path, PORT).expect_err("text is not a capture");
    assert_eq!(err.offset, 0);
    assert!(
        err.message
            .contains("not a pcap or pcapng file (magic 0x68656c6c)"),
        "{err}"
    );
    let done = decode(&path, PORT, false);
    assert_eq!(done.status.code(), Some(1));
    assert!(done.stdout.is_empty());
    let text = done.stderr.join("\n");
    assert!(
        text.contains(&path.display().to_string()) && text.contains("not a pcap or pcapng"),
        "{text}"
    );

    let empty = write(dir.path(), "empty.pcap", b"");
    let err = read_capture(&empty, PORT).expect_err("empty");
    assert!(err.message.contains("not a pcap or pcapng"), "{err}");

    let missing = dir.path().join("missing.pcap");
    let done = decode(&missing, PORT, false);
    assert_eq!(done.status.code(), Some(1));
    let text = done.stderr.join("\n");
    assert!(
        text.contains(&missing.display().to_string()) && text.contains("cannot open"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Real sessions captured by tcpdump and tshark
// ---------------------------------------------------------------------------------------

/// True when `tool` can capture here (installed, and we are root); otherwise skips (false)
/// or, under `CI=true`, panics.
fn can_capture(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    let root = rustix::process::geteuid().is_root();
    if found && root {
        return true;
    }
    let why = if found {
        "not root".to_string()
    } else {
        format!("{tool} not installed")
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: cannot capture with {tool}: {why}");
    }
    eprintln!("skipping: cannot capture with {tool}: {why}");
    false
}

/// A running capturer, stopped with SIGINT so that it writes out what it holds.
struct Capturer {
    proc: Proc,
    file: PathBuf,
}

impl Capturer {
    /// Starts `cmd` and waits until its stderr says it is capturing (`ready`), then until
    /// the file holds a datagram the test sends from `probe` to itself (the capturer's
    /// filter must take `probe`'s port): a capturer may announce itself before its capture
    /// is live.
    fn start(name: &str, cmd: Command, ready: &str, file: PathBuf, probe: &UdpSocket) -> Capturer {
        // Built at once, so that its drop stops the capturer with SIGINT on every path.
        let mut cap = Capturer {
            proc: Proc::spawn(name, cmd),
            file,
        };
        let deadline = Instant::now() + T;
        let probe_addr = probe.local_addr().expect("probe address");
        let mut announced = false;
        loop {
            let err = cap.proc.stderr_lines();
            announced = announced || err.iter().any(|l| l.contains(ready));
            if announced {
                probe.send_to(b"probe", probe_addr).expect("probe datagram");
                let live = read_capture(&cap.file, probe_addr.port())
                    .is_ok_and(|r| !r.datagrams.is_empty());
                if live {
                    return cap;
                }
            }
            if let Some(status) = cap.proc.wait_exit(Duration::ZERO) {
                panic!("{name} exited ({status}) before capturing: {err:?}");
            }
            assert!(
                Instant::now() < deadline,
                "{name}: not capturing within {T:?} (announced: {announced}): {err:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (with a deadline) until the file holds what `done` asks for, then stops the
    /// capturer with SIGINT and waits for it to exit. Returns the file and whether the
    /// capturer reported packets dropped by the kernel (then the capture may lack some).
    fn stop_when(mut self, port: u16, done: impl Fn(&CaptureRead) -> bool) -> (PathBuf, bool) {
        let deadline = Instant::now() + T;
        while Instant::now() < deadline {
            if read_capture(&self.file, port).is_ok_and(|r| done(&r)) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let sent = interrupt(self.proc.pid());
        assert!(sent.is_ok(), "SIGINT to {}: {sent:?}", self.proc.name());
        let status = self.proc.wait_exit(T);
        assert!(
            status.is_some(),
            "{} did not exit after SIGINT: {:?}",
            self.proc.name(),
            self.proc.stderr_lines()
        );
        // The stderr reader may still be taking the last lines: wait for the statistics.
        let stats_deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < stats_deadline
            && !self
                .proc
                .stderr_lines()
                .iter()
                .any(|l| l.contains("captured"))
        {
            thread::sleep(Duration::from_millis(20));
        }
        let dropped = self.proc.stderr_lines().iter().any(|l| {
            l.contains("dropped")
                && l.split(|c: char| !c.is_ascii_digit())
                    .any(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
        });
        if dropped {
            eprintln!(
                "{} dropped packets: {:?}",
                self.proc.name(),
                self.proc.stderr_lines()
            );
        }
        (self.file.clone(), dropped)
    }
}

impl Drop for Capturer {
    /// On every path (a failed assertion too): SIGINT first, so that tshark stops its
    /// dumpcap child instead of leaving it running; `Proc` then kills what is left.
    fn drop(&mut self) {
        if self.proc.wait_exit(Duration::ZERO).is_none() {
            let _ = interrupt(self.proc.pid());
            let _ = self.proc.wait_exit(Duration::from_secs(5));
        }
    }
}

/// Sends SIGINT to our child `pid` (so a capturer writes out what it holds).
fn interrupt(pid: u32) -> rustix::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or(rustix::io::Errno::SRCH)?;
    rustix::process::kill_process(pid, rustix::process::Signal::INT)
}

/// Runs a session against `server`: a `register` of B, A's `lookup` and `send` to B, a
/// `contacts update` and a `contacts list`. Returns (A, B).
fn session(server: &Server) -> (Identity, Identity) {
    let addr = server.addr.to_string();
    let a = Identity::new("a");
    let b = Identity::new("b");
    let client = |args: &[&str], id: &Identity| {
        let mut cmd = bin();
        cmd.args(args)
            .args(["--server", &addr, "--identity"])
            .arg(id.dir_arg());
        cmd
    };
    let mut reg = Proc::spawn("register-b", client(&["register"], &b));
    reg.out
        .expect("registered", T, |l| l.starts_with("registered "));
    let done = run("lookup", client(&["lookup", &b.fingerprint], &a), T);
    done.assert_success("lookup");
    assert!(done.stdout.iter().any(|l| l.starts_with("online addr=")));
    let done = run(
        "send",
        client(&["send", &b.fingerprint, "hello capture"], &a),
        T,
    );
    done.assert_success("send");
    reg.out.expect("the relayed event", T, |l| {
        l.starts_with("event from=") && l.contains("hello capture")
    });
    let mut cmd = bin();
    cmd.args([
        "contacts", "update", "--server", &addr, "--user", "alice", "bob", "555",
    ]);
    run("contacts update", cmd, T).assert_success("contacts update");
    let mut cmd = bin();
    cmd.args(["contacts", "list", "--server", &addr, "--all"]);
    let done = run("contacts list", cmd, T);
    done.assert_success("contacts list");
    assert!(done.stdout.iter().any(|l| l == "alice\tbob\t555"));
    reg.kill();
    (a, b)
}

/// The capture holds the whole session: the relay to B and both contacts connections
/// with their answers (200 to the barrier, the list).
fn session_captured(read: &CaptureRead) -> bool {
    let relayed = read
        .datagrams
        .iter()
        .any(|d| !d.to_server && d.payload.get(1) == Some(&4));
    let answered = read.flows.len() >= 2
        && read.flows[0].server_data.len() >= 12
        && read.flows[1].server_data.len() >= 4 + 533;
    relayed && answered
}

/// Decodes the captured session and checks both renderings.
fn check_session_decode(file: &Path, port: u16, a: &Identity, b: &Identity) {
    let done = decode(file, port, false);
    done.assert_success("decode");
    let out = &done.stdout;
    let fp_a = format!("fp={}", a.fingerprint);
    let fp_b = format!("fp={}", b.fingerprint);
    // Each client command registers from its own socket, first without the cookie, then
    // with it: A twice (lookup, send), B once (register).
    for (fp, n) in [(&fp_a, 2), (&fp_b, 1)] {
        expect_lines(out, &["udp", "register(2)", fp, "cookie=false"], n);
        expect_lines(out, &["udp", "register(2)", fp, "cookie=true"], n);
    }
    expect_lines(out, &["register(2)", "layout=plain", "sig_len=64"], 6);
    expect_lines(out, &["cookie(9)", "params=0x01", "cookie="], 3);
    expect_lines(out, &["ok(1)", "keepalive=25", "public=127.0.0.1:"], 3);
    let target_b = format!("target={}", b.fingerprint);
    expect_lines(out, &["lookup(5)", &target_b], 1);
    expect_lines(
        out,
        &[
            "lookup-answer(6)",
            &target_b,
            "status=online",
            "home=\"rendezvous\"",
        ],
        1,
    );
    expect_lines(
        out,
        &[
            "server-event(3)",
            "event=punch",
            &format!("peer={}", a.fingerprint),
        ],
        1,
    );
    expect_lines(
        out,
        &[
            "relay(4)",
            "params=0x02",
            &format!("to={}", b.fingerprint),
            "len=13",
        ],
        1,
    );
    expect_lines(
        out,
        &[
            "relay(4)",
            "params=0x01",
            &format!("from={}", a.fingerprint),
            "len=13",
        ],
        1,
    );
    expect_lines(
        out,
        &["tcp", "hello role=client name=\"rendezvous-cli\""],
        2,
    );
    expect_lines(
        out,
        &[
            "tcp",
            "update(1) user=\"alice\" contact=\"bob\" phone=\"555\"",
        ],
        1,
    );
    expect_lines(out, &["tcp", "status(7) status=200 request=5"], 1);
    expect_lines(out, &["tcp", "list-all-answer(2) count=1 records=1"], 1);
    assert!(
        !out.iter().any(|l| l.contains("malformed")),
        "malformed lines:\n{}",
        out.join("\n")
    );
    assert!(
        done.stderr.iter().any(|l| l.starts_with("decode: ")),
        "no summary: {:?}",
        done.stderr
    );

    let json = decode(file, port, true);
    json.assert_success("decode --json");
    let objs = parse_json(&json.stdout);
    assert_eq!(objs.len(), out.len(), "one JSON object per text line");
    for (o, text) in objs.iter().zip(out) {
        for key in ["ts", "proto", "src", "dst", "type"] {
            let v = o[key].as_str().unwrap_or_else(|| panic!("no {key} in {o}"));
            assert!(text.contains(v), "{key}={v} not in the text line {text:?}");
        }
    }
    let registers: Vec<_> = objs
        .iter()
        .filter(|o| o["type"] == "register" && o["fp"] == b.fingerprint.as_str())
        .collect();
    assert_eq!(registers.len(), 2, "B's two registrations");
    assert_eq!(registers[1]["cookie"], true);
    assert_eq!(registers[1]["type_num"], 2);
    assert!(objs
        .iter()
        .any(|o| o["type"] == "lookup-answer" && o["status"] == "online"));
    let update = objs
        .iter()
        .find(|o| o["type"] == "update")
        .expect("update in JSON");
    assert_eq!(update["user"], "alice");
    assert_eq!(update["contact"], "bob");
    assert_eq!(update["phone"], "555");
}

/// Decodes the captured session without `--port`: the server's port (a random one, not
/// 4747) is found by its traffic, among the probe's datagrams on another port, and the
/// lines are those of `--port`. `--port` still overrides: the probe's port gives only the
/// probe's datagrams.
fn check_port_found(file: &Path, port: u16, probe_port: u16) {
    assert_ne!(
        port, 4747,
        "the server runs on a port other than the default"
    );
    let given = decode(file, port, false);
    given.assert_success("decode --port");
    let found = decode_with(file, None, false);
    found.assert_success("decode without --port");
    assert_eq!(found.stdout, given.stdout, "the same lines as with --port");
    assert_eq!(summary(&found), summary(&given), "the same counts");
    let note = format!("decode: port {port} carries the protocol (udp: ");
    let notes: Vec<&String> = found
        .stderr
        .iter()
        .filter(|l| l.contains("carries the protocol"))
        .collect();
    assert!(
        notes.len() == 1 && notes[0].starts_with(&note) && notes[0].contains("; tcp: 2 of 2 "),
        "{:?}",
        found.stderr
    );
    let probe = decode(file, probe_port, false);
    probe.assert_success("decode --port of the probe's port");
    assert!(!probe.stdout.is_empty());
    assert!(
        probe
            .stdout
            .iter()
            .all(|l| l.contains(&format!(":{probe_port} ")) && l.contains("len=5 malformed")),
        "{}",
        probe.stdout.join("\n")
    );
}

/// Captures a whole session with the capturer `start` makes (given the file, the capture
/// filter and the probe socket), checks the file's bytes with `check_file`, then its decoding. A capture the
/// kernel dropped packets from (a loaded machine) is taken again, up to 3 times.
fn captured_session(
    name: &str,
    start: impl Fn(&Path, &str, &UdpSocket) -> Capturer,
    check_file: impl Fn(&[u8]),
) {
    let dir = tmp();
    for attempt in 1..=3 {
        // The session writes and lists contacts as the design notes' open client role.
        let server = Server::start(&["--open-contacts"]);
        let port = server.addr.port();
        let file = dir.path().join(format!("{name}-{attempt}"));
        let probe = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        let probe_port = probe.local_addr().expect("probe address").port();
        // Both ends on 127.0.0.1, as every socket of the session: another test's client on
        // 127.1.x.y may have drawn the server's port as its source port.
        let filter = format!(
            "(port {port} or port {probe_port}) and src host 127.0.0.1 and dst host 127.0.0.1"
        );
        let cap = start(&file, &filter, &probe);
        let (a, b) = session(&server);
        let (file, dropped) = cap.stop_when(port, session_captured);
        if dropped && attempt < 3 {
            continue;
        }
        check_file(&std::fs::read(&file).expect("capture file"));
        check_session_decode(&file, port, &a, &b);
        check_port_found(&file, port, probe_port);
        return;
    }
}

/// tcpdump on `any` with link type `link` and the given filter; a large kernel buffer
/// and a snapshot length that fits every packet of the session.
fn tcpdump(link: &'static str) -> impl Fn(&Path, &str, &UdpSocket) -> Capturer {
    move |file, filter, probe| {
        let mut cmd = Command::new("tcpdump");
        cmd.args(["-i", "any", "-y", link, "-U", "--immediate-mode"])
            .args(["-B", "32768", "-s", "16384", "-w"])
            .arg(file)
            .arg(filter);
        Capturer::start("tcpdump", cmd, "listening on", file.to_path_buf(), probe)
    }
}

fn tcpdump_session(link: &'static str, expect_link: i32) {
    if !can_capture("tcpdump") {
        return;
    }
    captured_session(&format!("tcpdump-{link}"), tcpdump(link), |bytes| {
        assert!(bytes.len() >= 24, "tcpdump wrote {} bytes", bytes.len());
        let link_type = i32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        assert_eq!(link_type, expect_link, "the capture's link type");
    });
}

#[test]
fn tcpdump_cooked_v2_session_decodes() {
    tcpdump_session("LINUX_SLL2", 276);
}

#[test]
fn tcpdump_cooked_v1_session_decodes() {
    // What `tcpdump -i any` writes by default before libpcap 1.10 (and with -y LINUX_SLL).
    tcpdump_session("LINUX_SLL", 113);
}

#[test]
fn tshark_pcapng_session_decodes() {
    if !can_capture("tshark") {
        return;
    }
    let tshark = |file: &Path, filter: &str, probe: &UdpSocket| {
        let mut cmd = Command::new("tshark");
        cmd.args(["-i", "lo", "-B", "32", "-s", "16384", "-w"])
            .arg(file)
            .args(["-f", filter]);
        Capturer::start("tshark", cmd, "Capturing on", file.to_path_buf(), probe)
    };
    captured_session("tshark", tshark, |bytes| {
        assert_eq!(&bytes[..4], &[0x0a, 0x0d, 0x0d, 0x0a], "a pcapng file");
    });
}
