//! From a captured frame to the project's traffic: strips the link layer of each supported
//! link type, reads the IP header with `etherparse` (IPv4 and IPv6, lax about lengths so a
//! frame cut by the snapshot length is still read), and keeps UDP datagrams and TCP
//! segments of the server ports, or (a survey, to find those ports) every one of them.
//!
//! Link types (<https://www.tcpdump.org/linktypes.html>): 0 NULL and 108 LOOP (a 4-byte
//! address family, then IP), 1 Ethernet (with 802.1Q / 802.1ad tags), 12, 14 and 101 raw IP,
//! 228 raw IPv4, 229 raw IPv6, 113 Linux cooked v1 (16-byte header, protocol at bytes
//! 14-15) and 276 Linux cooked v2 (20-byte header, protocol at bytes 0-1), the last two as
//! `tcpdump -i any` writes them. Anything else is skipped and counted per link type.
//!
//! Never panics on any input: every length is checked before it is used.

use super::tcp::{Flows, OwnedSegment, Segment};
use super::{CaptureError, CaptureRead, CaptureStats, FlowView, UdpDatagram};
use etherparse::{IpNumber, LaxIpSlice, TcpSlice, UdpSlice};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Link type 0: BSD loopback, a 4-byte address family in the capturing host's byte order.
pub const LINK_NULL: i32 = 0;
/// Link type 1: Ethernet.
pub const LINK_ETHERNET: i32 = 1;
/// Link type 12: raw IP (DLT_RAW on most systems).
pub const LINK_RAW_12: i32 = 12;
/// Link type 14: raw IP (DLT_RAW on OpenBSD).
pub const LINK_RAW_14: i32 = 14;
/// Link type 101: raw IP (LINKTYPE_RAW).
pub const LINK_RAW: i32 = 101;
/// Link type 108: OpenBSD loopback, a 4-byte address family in network byte order.
pub const LINK_LOOP: i32 = 108;
/// Link type 113: Linux cooked capture v1 (LINUX_SLL).
pub const LINK_LINUX_SLL: i32 = 113;
/// Link type 228: raw IPv4.
pub const LINK_IPV4: i32 = 228;
/// Link type 229: raw IPv6.
pub const LINK_IPV6: i32 = 229;
/// Link type 276: Linux cooked capture v2 (LINUX_SLL2).
pub const LINK_LINUX_SLL2: i32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// What the link layer of one frame held.
enum Link<'a> {
    /// An IPv4 or IPv6 packet (from its first header byte to the end of the frame).
    Ip(&'a [u8]),
    /// Something else (ARP, another protocol, a frame too short for its header).
    Other,
    /// A link type this reader does not know.
    Unsupported,
}

/// The IP packet inside a frame of link type `link`.
fn strip_link(link: i32, frame: &[u8]) -> Link<'_> {
    let be16 = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
    match link {
        LINK_NULL | LINK_LOOP => frame.get(4..).map_or(Link::Other, by_version),
        LINK_RAW_12 | LINK_RAW_14 | LINK_RAW | LINK_IPV4 | LINK_IPV6 => by_version(frame),
        LINK_ETHERNET => {
            let mut at = 12;
            loop {
                let Some(ethertype) = be16(frame, at) else {
                    return Link::Other;
                };
                if ETHERTYPE_VLAN.contains(&ethertype) {
                    at += 4;
                    continue;
                }
                return by_ethertype(ethertype, &frame[at + 2..]);
            }
        }
        LINK_LINUX_SLL => match (be16(frame, 14), frame.get(16..)) {
            (Some(proto), Some(ip)) => by_ethertype(proto, ip),
            _ => Link::Other,
        },
        LINK_LINUX_SLL2 => match (be16(frame, 0), frame.get(20..)) {
            (Some(proto), Some(ip)) => by_ethertype(proto, ip),
            _ => Link::Other,
        },
        _ => Link::Unsupported,
    }
}

/// An IP packet if `ip` starts with an IPv4 or IPv6 header's version nibble.
fn by_version(ip: &[u8]) -> Link<'_> {
    match ip.first().map(|b| b >> 4) {
        Some(4 | 6) => Link::Ip(ip),
        _ => Link::Other,
    }
}

/// An IP packet if `ethertype` says IPv4 or IPv6.
fn by_ethertype(ethertype: u16, ip: &[u8]) -> Link<'_> {
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Link::Ip(ip),
        _ => Link::Other,
    }
}

/// A UDP datagram or TCP segment of one frame, with its addresses.
pub(super) enum Transport<'a> {
    /// A UDP datagram.
    Udp {
        /// Capture time, µs since the Unix epoch.
        ts_us: u64,
        /// Source address and port.
        src: SocketAddr,
        /// Destination address and port.
        dst: SocketAddr,
        /// The captured payload.
        payload: &'a [u8],
        /// False when the snapshot length cut the datagram.
        whole: bool,
    },
    /// A TCP segment.
    Tcp {
        /// Source address and port.
        src: SocketAddr,
        /// Destination address and port.
        dst: SocketAddr,
        /// The segment (its capture time inside).
        seg: Segment<'a>,
    },
}

/// What an IP packet held.
enum IpContent<'a> {
    Transport(Transport<'a>),
    /// An IPv4 fragment or an IPv6 packet with a fragment header (not reassembled).
    Fragment,
    /// Another protocol, or headers that do not parse.
    Other,
}

/// Reads the IP header of `bytes` and the UDP or TCP header after it.
fn parse_ip(ts_us: u64, bytes: &[u8]) -> IpContent<'_> {
    let Ok((ip, _)) = LaxIpSlice::from_slice(bytes) else {
        return IpContent::Other;
    };
    let payload = ip.payload();
    if payload.fragmented {
        return IpContent::Fragment;
    }
    // Bytes the IP header says the packet has beyond what was captured (snaplen).
    let declared = match &ip {
        LaxIpSlice::Ipv4(v4) => usize::from(v4.header().total_len()),
        LaxIpSlice::Ipv6(v6) => 40 + usize::from(v6.header().payload_length()),
    };
    let missing = if payload.incomplete {
        declared.saturating_sub(bytes.len()) as u64
    } else {
        0
    };
    let (src_ip, dst_ip) = (ip.source_addr(), ip.destination_addr());
    let transport = match payload.ip_number {
        IpNumber::UDP => UdpSlice::from_slice_lax(payload.payload)
            .ok()
            .map(|udp| Transport::Udp {
                ts_us,
                src: SocketAddr::new(src_ip, udp.source_port()),
                dst: SocketAddr::new(dst_ip, udp.destination_port()),
                whole: missing == 0 && usize::from(udp.length()) <= udp.slice().len(),
                payload: udp.payload(),
            }),
        IpNumber::TCP => TcpSlice::from_slice(payload.payload)
            .ok()
            .map(|tcp| Transport::Tcp {
                src: SocketAddr::new(src_ip, tcp.source_port()),
                dst: SocketAddr::new(dst_ip, tcp.destination_port()),
                seg: Segment {
                    ts_us,
                    seq: tcp.sequence_number(),
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    ack_no: tcp.acknowledgment_number(),
                    fin: tcp.fin(),
                    data: tcp.payload(),
                    missing,
                },
            }),
        _ => None,
    };
    transport.map_or(IpContent::Other, IpContent::Transport)
}

/// What a read keeps of the UDP datagrams and TCP segments.
enum Keep {
    /// The traffic of these server ports, sorted into datagrams and reassembled flows.
    Ports(PortTraffic),
    /// Everything, as it came, to find the server ports in afterwards.
    Survey(Vec<Record>),
}

/// The traffic of the server ports.
struct PortTraffic {
    ports: Vec<u16>,
    datagrams: Vec<UdpDatagram>,
    flows: Flows,
    /// The connection the last segment kept went to (for a streamed read).
    touched: Option<usize>,
    segments: u64,
    truncated: u64,
}

/// Sorts frames into the project's UDP datagrams and TCP flows, counting the rest.
pub(super) struct Demux {
    /// Packet records read.
    pub(super) packets: u64,
    skipped: u64,
    fragments: u64,
    unsupported: BTreeMap<i32, u64>,
    keep: Keep,
}

impl Demux {
    /// A demultiplexer keeping the traffic of the server ports `ports`: UDP datagrams from
    /// or to one of them, TCP connections where one side has one of them (that side is
    /// the server).
    pub(super) fn new(ports: &[u16]) -> Self {
        Demux {
            packets: 0,
            skipped: 0,
            fragments: 0,
            unsupported: BTreeMap::new(),
            keep: Keep::Ports(PortTraffic {
                ports: ports.to_vec(),
                datagrams: Vec::new(),
                flows: Flows::default(),
                touched: None,
                segments: 0,
                truncated: 0,
            }),
        }
    }

    /// A demultiplexer keeping every UDP datagram and TCP segment, for
    /// [`Demux::into_survey`].
    pub(super) fn survey() -> Self {
        Demux {
            keep: Keep::Survey(Vec::new()),
            ..Demux::new(&[])
        }
    }

    /// Takes one captured frame: link type, capture time (µs since the Unix epoch) and the
    /// captured bytes (what the snapshot length cut is found from the IP header).
    pub(super) fn packet(&mut self, link: i32, ts_us: u64, frame: &[u8]) {
        self.packets += 1;
        match strip_link(link, frame) {
            Link::Ip(ip) => match parse_ip(ts_us, ip) {
                IpContent::Transport(t) => {
                    if !self.take(t) {
                        self.skipped += 1;
                    }
                }
                IpContent::Fragment => {
                    self.fragments += 1;
                    self.skipped += 1;
                }
                IpContent::Other => self.skipped += 1,
            },
            Link::Other => self.skipped += 1,
            Link::Unsupported => {
                self.skipped += 1;
                *self.unsupported.entry(link).or_default() += 1;
            }
        }
    }

    /// Keeps a datagram or segment; false when it is skipped.
    fn take(&mut self, t: Transport<'_>) -> bool {
        match &mut self.keep {
            Keep::Ports(p) => p.take(t),
            Keep::Survey(records) => {
                records.push(Record::of(t));
                true
            }
        }
    }

    /// The result, with `error` when the read stopped early (a survey has kept nothing of
    /// any port: see [`Demux::into_survey`]).
    pub(super) fn finish(self, error: Option<CaptureError>) -> (CaptureRead, CaptureStats) {
        let (datagrams, flows, segments, truncated) = match self.keep {
            Keep::Ports(p) => (p.datagrams, p.flows.finish(), p.segments, p.truncated),
            Keep::Survey(_) => (Vec::new(), Vec::new(), 0, 0),
        };
        let read = CaptureRead {
            datagrams,
            flows,
            packets: self.packets,
            skipped: self.skipped,
            error,
        };
        let stats = CaptureStats {
            segments,
            fragments: self.fragments,
            truncated,
            unsupported_links: self.unsupported.into_iter().collect(),
        };
        (read, stats)
    }

    /// For a streamed read, after each packet: the datagram it kept, taken out (so
    /// none accumulate), and the connection it added a segment to, if any.
    pub(super) fn take_new(&mut self) -> (Option<UdpDatagram>, Option<usize>) {
        match &mut self.keep {
            Keep::Ports(p) => (p.datagrams.pop(), p.touched.take()),
            Keep::Survey(_) => (None, None),
        }
    }

    /// Connection `index` (in order of first packet) as far as it is reassembled.
    pub(super) fn flow_view(&self, index: usize) -> Option<FlowView<'_>> {
        match &self.keep {
            Keep::Ports(p) => p.flows.view(index),
            Keep::Survey(_) => None,
        }
    }

    /// What a survey has kept so far (empty when the read keeps ports).
    pub(super) fn surveyed(&self) -> &[Record] {
        match &self.keep {
            Keep::Survey(records) => records,
            Keep::Ports(_) => &[],
        }
    }

    /// Keeps a record of a survey as a read with this demultiplexer's ports would have
    /// (counted as skipped when it is not theirs).
    pub(super) fn replay(&mut self, r: &Record) {
        if !self.take(r.as_transport()) {
            self.skipped += 1;
        }
    }

    /// What a survey kept, to find the server ports in and then keep their traffic.
    pub(super) fn into_survey(self) -> Survey {
        let records = match self.keep {
            Keep::Survey(records) => records,
            Keep::Ports(_) => Vec::new(),
        };
        Survey {
            base: Demux {
                keep: Keep::Survey(Vec::new()),
                ..self
            },
            records,
        }
    }
}

impl PortTraffic {
    /// Keeps a datagram or segment of one of the ports; false when it is skipped.
    fn take(&mut self, t: Transport<'_>) -> bool {
        match t {
            Transport::Udp {
                ts_us,
                src,
                dst,
                payload,
                whole,
            } => {
                let to_server = self.ports.contains(&dst.port());
                if !to_server && !self.ports.contains(&src.port()) {
                    return false;
                }
                if !whole {
                    self.truncated += 1;
                    return false;
                }
                self.datagrams.push(UdpDatagram {
                    ts_us,
                    src,
                    dst,
                    payload: payload.to_vec(),
                    to_server,
                });
                true
            }
            Transport::Tcp { src, dst, seg } => {
                let (client, server, to_server) = if self.ports.contains(&dst.port()) {
                    (src, dst, true)
                } else if self.ports.contains(&src.port()) {
                    (dst, src, false)
                } else {
                    return false;
                };
                self.touched = Some(self.flows.segment(client, server, to_server, seg));
                self.segments += 1;
                true
            }
        }
    }
}

/// Every UDP datagram and TCP segment of a capture, kept by [`Demux::survey`], and the
/// counts of everything else.
pub(super) struct Survey {
    /// The counts of what is no datagram or segment (nothing kept).
    base: Demux,
    /// The datagrams and segments, in capture order.
    pub(super) records: Vec<Record>,
}

impl Survey {
    /// The traffic of `ports`, exactly as a read with that filter keeps and counts it.
    pub(super) fn select(self, ports: &[u16]) -> Demux {
        let (mut d, records) = self.into_ports(ports);
        for r in &records {
            d.replay(r);
        }
        d
    }

    /// A demultiplexer of `ports` with the counts of what is no datagram or segment so
    /// far, and the records, for the caller to [`Demux::replay`].
    pub(super) fn into_ports(self, ports: &[u16]) -> (Demux, Vec<Record>) {
        let d = Demux {
            keep: Demux::new(ports).keep,
            ..self.base
        };
        (d, self.records)
    }
}

/// An owned copy of a [`Transport`].
pub(super) enum Record {
    /// A UDP datagram.
    Udp {
        ts_us: u64,
        src: SocketAddr,
        dst: SocketAddr,
        payload: Vec<u8>,
        whole: bool,
    },
    /// A TCP segment.
    Tcp {
        src: SocketAddr,
        dst: SocketAddr,
        seg: OwnedSegment,
    },
}

impl Record {
    fn of(t: Transport<'_>) -> Record {
        match t {
            Transport::Udp {
                ts_us,
                src,
                dst,
                payload,
                whole,
            } => Record::Udp {
                ts_us,
                src,
                dst,
                payload: payload.to_vec(),
                whole,
            },
            Transport::Tcp { src, dst, seg } => Record::Tcp {
                src,
                dst,
                seg: OwnedSegment::of(&seg),
            },
        }
    }

    /// The record as the demultiplexer takes it.
    pub(super) fn as_transport(&self) -> Transport<'_> {
        match self {
            Record::Udp {
                ts_us,
                src,
                dst,
                payload,
                whole,
            } => Transport::Udp {
                ts_us: *ts_us,
                src: *src,
                dst: *dst,
                payload,
                whole: *whole,
            },
            Record::Tcp { src, dst, seg } => Transport::Tcp {
                src: *src,
                dst: *dst,
                seg: seg.as_segment(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_are_stripped() {
        let ip = [0x45u8, 0, 0, 20];
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0, 1, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert!(matches!(strip_link(LINK_ETHERNET, &eth), Link::Ip(b) if b == ip));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x86, 0xdd, 0x60]);
        assert!(matches!(strip_link(LINK_LINUX_SLL, &sll), Link::Ip(b) if b == [0x60]));
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        assert!(matches!(strip_link(LINK_LINUX_SLL2, &sll2), Link::Ip(b) if b == ip));
        let null = [2, 0, 0, 0, 0x45];
        assert!(matches!(strip_link(LINK_NULL, &null), Link::Ip(b) if b == [0x45]));
        assert!(matches!(strip_link(LINK_RAW, &[0x12]), Link::Other));
        assert!(matches!(strip_link(LINK_ETHERNET, &[0; 13]), Link::Other));
        assert!(matches!(strip_link(127, &ip), Link::Unsupported));
    }
}
