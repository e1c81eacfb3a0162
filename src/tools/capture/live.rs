//! Reading a capture as a stream (docs/PROTOCOL.md §10, `decode` of a pipe): each packet
//! is handed on as soon as it is read, so `tcpdump -U -w - | rendezvous decode -` shows
//! the traffic while it happens. What the whole-file read keeps to the end is handed out
//! on the way instead: each datagram of a server port as it is read, each connection
//! whenever a segment adds to it, and every connection once more at the end (its holes
//! then skipped).
//!
//! Without a port, the ports are looked for as the traffic comes, on the evidence so far
//! ([`super::detect`]): every datagram and segment is kept until the first port carries
//! the protocol; the ports that carry it then are taken for the rest of the read, and the
//! traffic kept so far is handed out first. A port that shows the protocol only later is
//! not taken.

use super::detect::Detector;
use super::link::Demux;
use super::read::{self, Packets};
use super::{CaptureError, CaptureRead, CaptureStats, FlowView, PortEvidence, UdpDatagram};
use std::io::Read;
use std::path::Path;

/// What a streamed read hands on, as it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// No port was given: these ports carry the protocol on the evidence so far, and only
    /// their traffic follows. Handed on once, before their first datagram or connection.
    Ports(&'a [PortEvidence]),
    /// A UDP datagram of a server port, as read.
    Datagram(&'a UdpDatagram),
    /// Connection `index` (numbered in order of first packet, from 0) as far as it is
    /// reassembled: after each segment that reaches it, and once more with `last` at the
    /// end of the read, whole (holes skipped and counted).
    Flow {
        /// The connection's number.
        index: usize,
        /// Its bytes so far.
        view: FlowView<'a>,
        /// True at the end of the read: no more bytes will come.
        last: bool,
    },
}

/// What a streamed read found, once it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    /// Counts and connections as [`super::read_capture`] gives them; `datagrams` is empty
    /// (each was handed on as [`Event::Datagram`]).
    pub read: CaptureRead,
    /// Details of the read.
    pub stats: CaptureStats,
    /// The server ports: the one given, or those found (empty when none was).
    pub ports: Vec<u16>,
    /// UDP datagrams handed on.
    pub datagrams: u64,
}

/// The packet taker of a streamed read.
struct Live<'a> {
    demux: Demux,
    /// While no port is known: the evidence so far, and how many surveyed records it has
    /// counted.
    detector: Option<(Detector, usize)>,
    ports: Vec<u16>,
    datagrams: u64,
    /// True once `on` said stop.
    halted: bool,
    on: &'a mut dyn FnMut(Event<'_>) -> bool,
}

impl Packets for Live<'_> {
    fn packet(&mut self, link: i32, ts_us: u64, frame: &[u8]) -> bool {
        self.demux.packet(link, ts_us, frame);
        let going = if self.detector.is_some() {
            self.survey()
        } else {
            self.hand_on()
        };
        self.halted = !going;
        going
    }
}

impl Live<'_> {
    /// Counts the new surveyed record; once a port it touches carries the protocol, takes
    /// the ports that do and hands on what was kept of their traffic.
    fn survey(&mut self) -> bool {
        let Some((detector, counted)) = &mut self.detector else {
            return true;
        };
        let mut found = false;
        for r in &self.demux.surveyed()[*counted..] {
            let touched = detector.take(&r.as_transport());
            found |= touched.iter().flatten().any(|&p| detector.carries(p));
        }
        *counted = self.demux.surveyed().len();
        if !found {
            return true;
        }
        let evidence = detector.found();
        self.detector = None;
        self.ports = evidence.iter().map(|e| e.port).collect();
        if !(self.on)(Event::Ports(&evidence)) {
            return false;
        }
        let survey = std::mem::replace(&mut self.demux, Demux::new(&[])).into_survey();
        let (demux, records) = survey.into_ports(&self.ports);
        self.demux = demux;
        for r in &records {
            self.demux.replay(r);
            if !self.hand_on() {
                return false;
            }
        }
        true
    }

    /// Hands on what the last packet added: its datagram, the connection it reached.
    fn hand_on(&mut self) -> bool {
        let (datagram, flow) = self.demux.take_new();
        if let Some(d) = datagram {
            self.datagrams += 1;
            if !(self.on)(Event::Datagram(&d)) {
                return false;
            }
        }
        match flow.and_then(|i| self.demux.flow_view(i).map(|v| (i, v))) {
            Some((index, view)) => (self.on)(Event::Flow {
                index,
                view,
                last: false,
            }),
            None => true,
        }
    }
}

/// Reads a pcap or pcapng capture from `source` (a pipe, standard input; `name` is the
/// file named in errors) a packet at a time, handing each on to `on` as it is read (see
/// [`Event`]); `on` returns false to stop the read there. `port`: the server port, or
/// `None` to find the ports as the traffic comes (module header). Memory: the reassembled
/// connections' bytes (as [`super::read_capture`]), and, until a port is found, every
/// datagram and segment read.
///
/// # Errors
/// As [`super::read_capture`]: only when nothing could be read at all. A capture cut or
/// corrupt part-way gives `Ok`, with [`CaptureRead::error`] set.
pub fn stream_capture<R: Read>(
    source: R,
    name: &Path,
    port: Option<u16>,
    on: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<Streamed, CaptureError> {
    let (demux, detector, ports) = match port {
        Some(p) => (Demux::new(&[p]), None, vec![p]),
        None => (Demux::survey(), Some((Detector::default(), 0)), Vec::new()),
    };
    let mut live = Live {
        demux,
        detector,
        ports,
        datagrams: 0,
        halted: false,
        on,
    };
    let error = read::read(source, None, name, &mut live)?;
    let Live {
        demux,
        detector,
        ports,
        datagrams,
        halted,
        on,
    } = live;
    // Still looking: nothing is the protocol's; every record is counted as skipped.
    let demux = match detector {
        Some(_) => demux.into_survey().select(&[]),
        None => demux,
    };
    let (read, stats) = demux.finish(error);
    if !halted {
        for (index, f) in read.flows.iter().enumerate() {
            let view = f.view();
            if !on(Event::Flow {
                index,
                view,
                last: true,
            }) {
                break;
            }
        }
    }
    Ok(Streamed {
        read,
        stats,
        ports,
        datagrams,
    })
}
