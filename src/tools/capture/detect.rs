//! Finding the protocol's server ports in a capture by the structure of its traffic, as
//! Wireshark's heuristic dissectors do (docs/PROTOCOL.md §10, "Finding the server port"),
//! for `decode` and `replay` when no `--port` is given.
//!
//! Each port is judged on all of its traffic, never on one packet:
//! - UDP: a datagram votes for its server's port when it reads whole as a Root packet
//!   (§2) with a payload of its type (§3), a timestamp of 0 or within the years 2000-2099,
//!   and a direction that fits its type: params bit 0x02 alone on a client type (0, 2, 4,
//!   5, 8) names the destination port, bit 0x01 alone on a server type (1, 3, 4, 6, 7, 9)
//!   names the source port. A port carries the protocol when more than half of the whole
//!   datagrams to or from it vote for it.
//! - TCP: each direction of a connection is a stream into its destination port; a stream
//!   votes for that port when its first 257 bytes are a valid hello (§8.2). Streams whose
//!   start was captured (a SYN) count; streams seen from the middle count only when they
//!   still open with a hello. A port carries the protocol when more than half of the
//!   streams into it vote for it.
//!
//! DNS and other UDP traffic may now and then read as a Root packet by chance, but never
//! as most of a port's datagrams; answers and other protocols' streams never open with a
//! hello. Never allocates more than a few bytes per port and per stream.

use super::link::Record;
use super::tcp::Segment;
use crate::wire::tcp::{Hello, HELLO_LEN};
use crate::wire::udp::root::{PARAM_FROM_SERVER, PARAM_TO_SERVER};
use crate::wire::udp::Payload;
use crate::wire::{PacketType, Root};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z, Unix seconds: the Root timestamps (other
/// than 0) a real sender writes.
const PLAUSIBLE_TIMESTAMPS: std::ops::Range<u64> = 946_684_800..4_102_444_800;

/// What a capture's traffic says about one port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortEvidence {
    /// The port.
    pub port: u16,
    /// Whole UDP datagrams that read as Root packets naming this port as their server's.
    pub udp_root: u64,
    /// Whole UDP datagrams from or to this port.
    pub udp_datagrams: u64,
    /// TCP streams into this port that open with a valid hello.
    pub tcp_hellos: u64,
    /// TCP streams into this port that count (their start was captured, or they open with
    /// a hello) and carry at least one byte.
    pub tcp_streams: u64,
}

impl PortEvidence {
    /// True when most of the port's UDP datagrams, or most of the TCP streams into it, are
    /// this protocol's.
    pub fn carries_protocol(&self) -> bool {
        majority(self.udp_root, self.udp_datagrams) || majority(self.tcp_hellos, self.tcp_streams)
    }

    /// `udp: A of B datagrams are Root packets; tcp: C of D connections open with a hello`
    /// (each part only when the port has traffic of that kind).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.udp_datagrams > 0 {
            parts.push(format!(
                "udp: {} of {} datagrams are Root packets",
                self.udp_root, self.udp_datagrams
            ));
        }
        if self.tcp_streams > 0 {
            parts.push(format!(
                "tcp: {} of {} connections open with a hello",
                self.tcp_hellos, self.tcp_streams
            ));
        }
        parts.join("; ")
    }
}

/// More than half, and at least one.
fn majority(votes: u64, total: u64) -> bool {
    votes > 0 && votes * 2 > total
}

/// The evidence of every port that carries the protocol, ascending by port.
pub(super) fn server_ports(records: &[Record]) -> Vec<PortEvidence> {
    let mut d = Detector::default();
    for r in records {
        d.take(&r.as_transport());
    }
    d.found()
}

/// The evidence of each port so far, record by record: what [`server_ports`] judges a
/// whole capture on, and a streamed read judges its traffic on as it comes
/// (docs/PROTOCOL.md §10).
#[derive(Default)]
pub(super) struct Detector {
    ports: BTreeMap<u16, PortEvidence>,
    /// The opening of each direction of each connection, and how it counts so far
    /// ([`Opening::verdict`]).
    openings: HashMap<(SocketAddr, SocketAddr), (Opening, Option<bool>)>,
}

impl Detector {
    /// Counts one datagram or segment; returns the ports whose evidence it changed (none,
    /// one or two).
    pub(super) fn take(&mut self, t: &super::link::Transport<'_>) -> [Option<u16>; 2] {
        match *t {
            super::link::Transport::Udp {
                src,
                dst,
                payload,
                whole: true,
                ..
            } => {
                for p in [src.port(), dst.port()] {
                    entry(&mut self.ports, p).udp_datagrams += 1;
                }
                if let Some(p) = udp_server_port(src, dst, payload) {
                    entry(&mut self.ports, p).udp_root += 1;
                }
                [Some(src.port()), Some(dst.port())]
            }
            super::link::Transport::Udp { .. } => [None, None],
            super::link::Transport::Tcp { src, dst, ref seg } => {
                let (o, counted) = self.openings.entry((src, dst)).or_default();
                o.take(seg);
                let now = o.verdict();
                if now == *counted {
                    return [None, None];
                }
                let e = entry(&mut self.ports, dst.port());
                if let Some(hello) = counted.take() {
                    e.tcp_streams -= 1;
                    e.tcp_hellos -= u64::from(hello);
                }
                if let Some(hello) = now {
                    e.tcp_streams += 1;
                    e.tcp_hellos += u64::from(hello);
                }
                *counted = now;
                [Some(dst.port()), None]
            }
        }
    }

    /// Whether `port` carries the protocol on the evidence so far.
    pub(super) fn carries(&self, port: u16) -> bool {
        self.ports
            .get(&port)
            .is_some_and(PortEvidence::carries_protocol)
    }

    /// The evidence of every port that carries the protocol so far, ascending by port.
    pub(super) fn found(&self) -> Vec<PortEvidence> {
        self.ports
            .values()
            .filter(|e| e.carries_protocol())
            .cloned()
            .collect()
    }
}

fn entry(ports: &mut BTreeMap<u16, PortEvidence>, port: u16) -> &mut PortEvidence {
    ports.entry(port).or_insert_with(|| PortEvidence {
        port,
        ..PortEvidence::default()
    })
}

/// The server port a datagram names when it reads as this protocol's (module header);
/// `None` when it does not.
fn udp_server_port(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Option<u16> {
    // STUN shares the port (docs/PROTOCOL.md §11) but is no evidence of the protocol.
    if crate::wire::stun::classify(payload).is_some() {
        return None;
    }
    let root = Root::parse(payload).ok()?;
    if root.timestamp != 0 && !PLAUSIBLE_TIMESTAMPS.contains(&root.timestamp) {
        return None;
    }
    Payload::parse(root.packet_type, root.payload).ok()?;
    let client_type = matches!(
        root.packet_type,
        PacketType::Keepalive
            | PacketType::Register
            | PacketType::Relay
            | PacketType::Lookup
            | PacketType::Fetch
    );
    let server_type = root.packet_type.is_reply() || root.packet_type == PacketType::Relay;
    let direction = root.params & (PARAM_FROM_SERVER | PARAM_TO_SERVER);
    match direction {
        PARAM_TO_SERVER if client_type => Some(dst.port()),
        PARAM_FROM_SERVER if server_type => Some(src.port()),
        _ => None,
    }
}

/// The first [`HELLO_LEN`] bytes of one direction of a TCP connection, placed by
/// sequence number.
#[derive(Default)]
struct Opening {
    /// Sequence number of stream offset 0: after the SYN, else the first one seen.
    start: Option<u32>,
    /// A SYN was seen: the stream's start was captured.
    syn: bool,
    /// Some data was seen.
    data: bool,
    /// The opening bytes (allocated with the first data).
    bytes: Vec<u8>,
    filled: Vec<bool>,
}

impl Opening {
    fn take(&mut self, seg: &Segment<'_>) {
        if seg.syn {
            if self.start.is_none() {
                self.start = Some(seg.seq.wrapping_add(1));
                self.syn = true;
            }
            return;
        }
        if seg.data.is_empty() {
            return;
        }
        self.data = true;
        let start = *self.start.get_or_insert(seg.seq);
        let offset = seg.seq.wrapping_sub(start) as usize;
        if offset >= HELLO_LEN {
            return; // beyond the opening, or before the start
        }
        if self.bytes.is_empty() {
            self.bytes = vec![0; HELLO_LEN];
            self.filled = vec![false; HELLO_LEN];
        }
        let n = seg.data.len().min(HELLO_LEN - offset);
        self.bytes[offset..offset + n].copy_from_slice(&seg.data[..n]);
        self.filled[offset..offset + n].fill(true);
    }

    /// `None` when the stream does not count (no data, or seen from the middle without a
    /// hello); else whether it opens with a valid hello.
    fn verdict(&self) -> Option<bool> {
        if !self.data {
            return None;
        }
        let hello = !self.filled.is_empty()
            && self.filled.iter().all(|&f| f)
            && Hello::parse(&self.bytes).is_ok();
        (self.syn || hello).then_some(hello)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::RootHeader;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn root(params: u8, ty: PacketType, timestamp: u64, payload: &[u8]) -> Vec<u8> {
        RootHeader {
            params,
            shift_len: None,
            packet_type: ty,
            signature: &[],
            timestamp,
        }
        .to_vec(payload)
        .unwrap()
    }

    #[test]
    fn a_datagram_names_its_servers_port_by_direction_and_type() {
        let (c, s) = (addr("192.0.2.1:40000"), addr("198.51.100.1:4800"));
        let lookup = root(0x02, PacketType::Lookup, 1_767_225_600, &[7; 32]);
        assert_eq!(udp_server_port(c, s, &lookup), Some(4800));
        let cookie = root(0x01, PacketType::Cookie, 1_767_225_600, &[1; 16]);
        assert_eq!(udp_server_port(s, c, &cookie), Some(4800));
        // A server type sent as a client's, a timestamp from 1970, a bad payload: no vote.
        let wrong_way = root(0x02, PacketType::Cookie, 0, &[1; 16]);
        assert_eq!(udp_server_port(c, s, &wrong_way), None);
        let old = root(0x02, PacketType::Lookup, 12_345, &[7; 32]);
        assert_eq!(udp_server_port(c, s, &old), None);
        let short = root(0x02, PacketType::Lookup, 0, &[7; 31]);
        assert_eq!(udp_server_port(c, s, &short), None);
        // A DNS query.
        let dns = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
        ];
        assert_eq!(udp_server_port(c, addr("198.51.100.1:53"), &dns), None);
    }

    #[test]
    fn majority_of_a_port_decides() {
        let e = PortEvidence {
            port: 53,
            udp_root: 1,
            udp_datagrams: 2,
            ..PortEvidence::default()
        };
        assert!(!e.carries_protocol(), "half is not a majority");
        let e = PortEvidence {
            udp_root: 2,
            udp_datagrams: 3,
            ..e
        };
        assert!(e.carries_protocol());
        let e = PortEvidence {
            port: 4800,
            tcp_hellos: 0,
            tcp_streams: 0,
            ..PortEvidence::default()
        };
        assert!(!e.carries_protocol(), "no evidence");
    }

    fn seg(seq: u32, syn: bool, data: &[u8]) -> Segment<'_> {
        Segment {
            ts_us: 0,
            seq,
            syn,
            ack: false,
            ack_no: 0,
            fin: false,
            data,
            missing: 0,
        }
    }

    #[test]
    fn an_opening_is_placed_by_sequence_number() {
        let mut hello = vec![2u8];
        hello.extend_from_slice(b"cli");
        hello.resize(HELLO_LEN, 0);
        let mut o = Opening::default();
        o.take(&seg(99, true, &[]));
        o.take(&seg(200, false, &hello[100..]));
        assert_eq!(o.verdict(), Some(false), "a hole at the start");
        o.take(&seg(100, false, &hello[..100]));
        assert_eq!(o.verdict(), Some(true));
        // Seen from the middle: counts only with a hello.
        let mut mid = Opening::default();
        mid.take(&seg(5000, false, b"GET / HTTP/1.0\r\n\r\n"));
        assert_eq!(mid.verdict(), None);
        let mut http = Opening::default();
        http.take(&seg(1, true, &[]));
        http.take(&seg(2, false, b"GET / HTTP/1.0\r\n\r\n"));
        assert_eq!(http.verdict(), Some(false));
    }
}
