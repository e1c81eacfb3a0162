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
//!
//! This file holds the harness: the captures written by hand (IP, UDP, TCP, link headers,
//! pcap and pcapng files, the scenario) and `rendezvous decode` run on them. The tests are
//! in `hand_built`, `other_traffic`, `malformed` and `sessions`.

mod hand_built;
mod malformed;
mod other_traffic;
mod sessions;

use crate::common::{bin, run, Finished};
use rendezvous::tools::capture::CaptureRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// The captures of other traffic that `replay` reads, at their old path.
pub(crate) use other_traffic::{empty_capture, foreign_capture};

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
