//! TCP stream reassembly for captures: each direction of each connection becomes the bytes
//! the receiving application read, in sequence order.
//!
//! Per direction: the first SYN fixes the stream's start (its sequence number + 1); a
//! connection seen from the middle, without its SYN, starts at the first sequence number
//! seen in that direction. Segments are placed by their offset from that start, computed
//! modulo 2^32 relative to the next expected byte (so streams longer than 4 GiB and
//! sequence wrap-around work). A segment entirely before the next expected byte is a
//! retransmission and dropped; the part of one that overlaps bytes already taken is cut;
//! one beyond a hole waits until the hole is filled. Bytes that never arrive (lost, or cut
//! by the snapshot length) are skipped at the end and counted in [`TcpFlow::gaps`].
//!
//! A client SYN with another initial sequence number on a 4-tuple already seen starts a
//! new flow (port reuse). Memory: the kept bytes and the segments waiting for a hole, both
//! bounded by the capture's own size.

use super::{FlowView, TcpFlow};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// One TCP segment as captured.
pub(super) struct Segment<'a> {
    /// Capture time, µs since the Unix epoch.
    pub ts_us: u64,
    /// Sequence number of the first payload byte (of the SYN itself when `syn`).
    pub seq: u32,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag: `ack_no` is meaningful.
    pub ack: bool,
    /// The acknowledgment number (of the other direction's bytes).
    pub ack_no: u32,
    /// FIN flag: the stream ends after this segment's bytes.
    pub fin: bool,
    /// The captured payload.
    pub data: &'a [u8],
    /// Payload bytes the segment carried on the wire after `data` that were not captured.
    pub missing: u64,
}

/// A [`Segment`] that owns its bytes (kept by a survey of the whole capture).
pub(super) struct OwnedSegment {
    ts_us: u64,
    seq: u32,
    syn: bool,
    ack: bool,
    ack_no: u32,
    fin: bool,
    data: Vec<u8>,
    missing: u64,
}

impl OwnedSegment {
    /// A copy of `seg`.
    pub(super) fn of(seg: &Segment<'_>) -> Self {
        OwnedSegment {
            ts_us: seg.ts_us,
            seq: seg.seq,
            syn: seg.syn,
            ack: seg.ack,
            ack_no: seg.ack_no,
            fin: seg.fin,
            data: seg.data.to_vec(),
            missing: seg.missing,
        }
    }

    /// The segment, borrowing the bytes.
    pub(super) fn as_segment(&self) -> Segment<'_> {
        Segment {
            ts_us: self.ts_us,
            seq: self.seq,
            syn: self.syn,
            ack: self.ack,
            ack_no: self.ack_no,
            fin: self.fin,
            data: &self.data,
            missing: self.missing,
        }
    }
}

/// A waiting segment: capture time, captured bytes, uncaptured bytes after them.
type Waiting = (u64, Vec<u8>, u64);

/// One direction of a connection.
#[derive(Default)]
struct Direction {
    /// Sequence number of stream offset 0, once known.
    start: Option<u32>,
    /// Stream offset of the next byte expected.
    next: u64,
    data: Vec<u8>,
    chunks: Vec<(u64, usize)>,
    /// Segments beyond a hole, by stream offset.
    waiting: BTreeMap<u64, Waiting>,
    gaps: u64,
    /// How far the stream is known to reach (a FIN, or the peer's acknowledgment): bytes
    /// before it that never arrived are gaps too, even with no segment after them.
    end: u64,
    /// Stream offset of the FIN, once seen: the FIN takes one sequence number that is no
    /// data, so an acknowledgment never shows bytes beyond it.
    fin_at: Option<u64>,
}

impl Direction {
    fn segment(&mut self, seg: &Segment<'_>) {
        if seg.syn {
            let first = seg.seq.wrapping_add(1);
            if self.start.is_none() {
                self.start = Some(first);
            }
            // A SYN carries no data the application reads (no TCP Fast Open here).
            return;
        }
        self.start.get_or_insert(seg.seq);
        let at = self.offset_of(seg.seq).unwrap_or(0);
        if seg.fin {
            let end = (at + (seg.data.len() as u64 + seg.missing) as i64).max(0) as u64;
            self.end = self.end.max(end);
            self.fin_at = Some(end);
        }
        if seg.data.is_empty() && seg.missing == 0 {
            return;
        }
        let (at, data, missing) = if at < 0 {
            // Starts before the stream does (a mid-stream capture's earlier bytes).
            let cut = at.unsigned_abs();
            let len = seg.data.len() as u64;
            if cut >= len + seg.missing {
                return;
            }
            if cut >= len {
                (0, &[][..], seg.missing - (cut - len))
            } else {
                (0, &seg.data[cut as usize..], seg.missing)
            }
        } else {
            (at as u64, seg.data, seg.missing)
        };
        self.place(at, seg.ts_us, data, missing);
        self.drain(seg.ts_us);
    }

    /// Stream offset of sequence number `seq` (negative: before the stream's start), as a
    /// signed 32-bit distance from the next expected byte; `None` before the start is known.
    fn offset_of(&self, seq: u32) -> Option<i64> {
        let expected = self.start?.wrapping_add(self.next as u32);
        Some(self.next as i64 + i64::from(seq.wrapping_sub(expected) as i32))
    }

    /// Notes that the peer acknowledged the bytes before sequence number `ack_no`.
    fn acknowledged(&mut self, ack_no: u32) {
        if let Some(at) = self.offset_of(ack_no) {
            let at = at.max(0) as u64;
            self.end = self.end.max(self.fin_at.map_or(at, |f| at.min(f)));
        }
    }

    /// Takes bytes at stream offset `at`, or keeps them waiting for a hole before them.
    fn place(&mut self, at: u64, ts_us: u64, data: &[u8], missing: u64) {
        let len = data.len() as u64;
        let end = at + len + missing;
        if end <= self.next {
            return; // a retransmission of bytes already taken
        }
        if at > self.next {
            let keep = match self.waiting.get(&at) {
                Some((_, d, m)) => (d.len() as u64 + m) < len + missing,
                None => true,
            };
            if keep {
                self.waiting.insert(at, (ts_us, data.to_vec(), missing));
            }
            return;
        }
        let skip = self.next - at;
        let (data, missing) = if skip >= len {
            (&[][..], missing - (skip - len))
        } else {
            (&data[skip as usize..], missing)
        };
        self.deliver(ts_us, data, missing);
    }

    /// Appends bytes at the next expected offset, then skips `missing` uncaptured bytes.
    fn deliver(&mut self, ts_us: u64, data: &[u8], missing: u64) {
        if !data.is_empty() {
            let ts = self.chunks.last().map_or(ts_us, |&(t, _)| t.max(ts_us));
            self.chunks.push((ts, self.data.len()));
            self.data.extend_from_slice(data);
            self.next += data.len() as u64;
        }
        self.gaps += missing;
        self.next += missing;
    }

    /// Places every waiting segment that the next expected byte has reached.
    fn drain(&mut self, ts_us: u64) {
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (at, (_, data, missing)) = entry.remove_entry();
            self.place(at, ts_us, &data, missing);
        }
    }

    /// At the end of the capture: skips every remaining hole, counting it as a gap.
    fn finish(&mut self) {
        while let Some((at, (ts, data, missing))) = self.waiting.pop_first() {
            if at > self.next {
                self.gaps += at - self.next;
                self.next = at;
            }
            self.place(at, ts, &data, missing);
        }
        if let Some(f) = self.fin_at {
            // An acknowledgment seen before the FIN counted the FIN's sequence number.
            self.end = self.end.min(f.max(self.next));
        }
        if self.end > self.next {
            self.gaps += self.end - self.next;
            self.next = self.end;
        }
    }
}

/// A connection being reassembled.
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    first_ts_us: u64,
    to_server: Direction,
    to_client: Direction,
}

/// Every connection of a capture, in order of first packet.
#[derive(Default)]
pub(super) struct Flows {
    flows: Vec<Flow>,
    /// The current flow of each (client, server) pair.
    index: HashMap<(SocketAddr, SocketAddr), usize>,
}

impl Flows {
    /// Takes one segment of the connection between `client` and `server`; returns the
    /// connection's index (in order of first packet).
    pub(super) fn segment(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        to_server: bool,
        seg: Segment<'_>,
    ) -> usize {
        let key = (client, server);
        let existing = self.index.get(&key).copied();
        let new_connection = match existing {
            None => true,
            Some(i) => {
                // A client SYN with another initial sequence number: the 4-tuple is reused.
                to_server
                    && seg.syn
                    && !seg.ack
                    && self.flows[i]
                        .to_server
                        .start
                        .is_some_and(|s| s != seg.seq.wrapping_add(1))
            }
        };
        let i = if new_connection {
            self.flows.push(Flow {
                client,
                server,
                first_ts_us: seg.ts_us,
                to_server: Direction::default(),
                to_client: Direction::default(),
            });
            self.index.insert(key, self.flows.len() - 1);
            self.flows.len() - 1
        } else {
            existing.unwrap_or_default()
        };
        let flow = &mut self.flows[i];
        let (this, other) = if to_server {
            (&mut flow.to_server, &mut flow.to_client)
        } else {
            (&mut flow.to_client, &mut flow.to_server)
        };
        this.segment(&seg);
        if seg.ack {
            other.acknowledged(seg.ack_no);
        }
        i
    }

    /// Connection `index` as far as it is reassembled: each direction's bytes up to its
    /// first hole.
    pub(super) fn view(&self, index: usize) -> Option<FlowView<'_>> {
        let f = self.flows.get(index)?;
        Some(FlowView {
            client: f.client,
            server: f.server,
            first_ts_us: f.first_ts_us,
            client_data: &f.to_server.data,
            client_chunks: &f.to_server.chunks,
            server_data: &f.to_client.data,
            server_chunks: &f.to_client.chunks,
        })
    }

    /// The reassembled flows, in order of first packet.
    pub(super) fn finish(self) -> Vec<TcpFlow> {
        self.flows
            .into_iter()
            .map(|mut f| {
                f.to_server.finish();
                f.to_client.finish();
                TcpFlow {
                    client: f.client,
                    server: f.server,
                    first_ts_us: f.first_ts_us,
                    gaps: f.to_server.gaps + f.to_client.gaps,
                    client_data: f.to_server.data,
                    client_chunks: f.to_server.chunks,
                    server_data: f.to_client.data,
                    server_chunks: f.to_client.chunks,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(ts_us: u64, seq: u32, data: &[u8]) -> Segment<'_> {
        Segment {
            ts_us,
            seq,
            syn: false,
            ack: false,
            ack_no: 0,
            fin: false,
            data,
            missing: 0,
        }
    }

    fn syn(seq: u32) -> Segment<'static> {
        Segment {
            ts_us: 0,
            seq,
            syn: true,
            ack: false,
            ack_no: 0,
            fin: false,
            data: &[],
            missing: 0,
        }
    }

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:4747".parse().unwrap(),
        )
    }

    #[test]
    fn out_of_order_retransmitted_and_overlapping_segments() {
        let (c, s) = addrs();
        let mut f = Flows::default();
        f.segment(c, s, true, syn(1000));
        f.segment(c, s, true, seg(10, 1006, b"world"));
        f.segment(c, s, true, seg(11, 1001, b"hello"));
        f.segment(c, s, true, seg(12, 1001, b"hello")); // retransmission
        f.segment(c, s, true, seg(13, 1009, b"ld!!")); // overlaps "ld"
        let flows = f.finish();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].client_data, b"helloworld!!");
        assert_eq!(flows[0].client_chunks, vec![(11, 0), (11, 5), (13, 10)]);
        assert_eq!(flows[0].gaps, 0);
    }

    #[test]
    fn wraparound_mid_stream_and_gaps() {
        let (c, s) = addrs();
        let mut f = Flows::default();
        // No SYN: starts at the first sequence number seen, across the 2^32 wrap.
        f.segment(c, s, false, seg(1, u32::MAX - 1, b"ab"));
        f.segment(c, s, false, seg(2, 0, b"cd"));
        // A hole of 3 bytes, never filled.
        f.segment(c, s, false, seg(3, 5, b"xy"));
        // Snaplen cut: 2 bytes captured of 6.
        f.segment(
            c,
            s,
            false,
            Segment {
                missing: 4,
                ..seg(4, 7, b"zz")
            },
        );
        f.segment(c, s, false, seg(5, 13, b"end"));
        let flows = f.finish();
        assert_eq!(flows[0].server_data, b"abcdxyzzend");
        assert_eq!(flows[0].gaps, 3 + 4);
        assert!(flows[0].client_data.is_empty());
    }

    #[test]
    fn a_lost_tail_is_a_gap_when_a_fin_or_an_ack_shows_it() {
        let (c, s) = addrs();
        let mut f = Flows::default();
        f.segment(c, s, true, syn(100));
        f.segment(c, s, true, seg(1, 101, b"abc"));
        // "def" (seq 104) never captured; the FIN comes at seq 107.
        f.segment(
            c,
            s,
            true,
            Segment {
                fin: true,
                ..seg(2, 107, b"")
            },
        );
        // The server's answer "xy" is lost, but the client acknowledges it.
        f.segment(
            c,
            s,
            false,
            Segment {
                syn: true,
                ..seg(0, 7000, b"")
            },
        );
        f.segment(
            c,
            s,
            true,
            Segment {
                ack: true,
                ack_no: 7003,
                ..seg(3, 108, b"")
            },
        );
        let flows = f.finish();
        assert_eq!(flows[0].client_data, b"abc");
        assert!(flows[0].server_data.is_empty());
        assert_eq!(flows[0].gaps, 3 + 2);
    }

    #[test]
    fn a_closed_flow_has_no_gap_for_its_fins() {
        let (c, s) = addrs();
        let mut f = Flows::default();
        f.segment(c, s, true, syn(100));
        f.segment(
            c,
            s,
            false,
            Segment {
                syn: true,
                ..seg(0, 7000, b"")
            },
        );
        f.segment(c, s, true, seg(1, 101, b"abc"));
        f.segment(c, s, false, seg(2, 7001, b"xy"));
        // Both FINs, each acknowledged by the peer (ack = FIN's sequence number + 1).
        f.segment(
            c,
            s,
            true,
            Segment {
                fin: true,
                ..seg(3, 104, b"")
            },
        );
        f.segment(
            c,
            s,
            false,
            Segment {
                fin: true,
                ack: true,
                ack_no: 105,
                ..seg(4, 7003, b"")
            },
        );
        f.segment(
            c,
            s,
            true,
            Segment {
                ack: true,
                ack_no: 7004,
                ..seg(5, 105, b"")
            },
        );
        let flows = f.finish();
        assert_eq!(flows[0].client_data, b"abc");
        assert_eq!(flows[0].server_data, b"xy");
        assert_eq!(flows[0].gaps, 0);
    }

    #[test]
    fn a_new_syn_on_the_same_ports_is_a_new_flow() {
        let (c, s) = addrs();
        let mut f = Flows::default();
        f.segment(c, s, true, syn(1));
        f.segment(c, s, true, seg(1, 2, b"one"));
        f.segment(c, s, true, syn(1)); // the SYN again: same connection
        f.segment(c, s, true, syn(500));
        f.segment(c, s, true, seg(2, 501, b"two"));
        let flows = f.finish();
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].client_data, b"one");
        assert_eq!(flows[1].client_data, b"two");
    }

    proptest::proptest! {
        /// Any mix of segments: no panic, and the chunks index the data in order.
        #[test]
        fn any_segments_keep_chunks_in_order(
            segs in proptest::collection::vec(
                (
                    proptest::prelude::any::<bool>(),
                    proptest::prelude::any::<u32>(),
                    0u8..8,
                    0usize..40,
                    0u64..20,
                    proptest::prelude::any::<u32>(),
                ),
                0..40,
            ),
        ) {
            let (c, s) = addrs();
            let mut f = Flows::default();
            for (i, (to_server, seq, flags, len, missing, ack_no)) in segs.into_iter().enumerate() {
                let data = vec![i as u8; len];
                f.segment(c, s, to_server, Segment {
                    ts_us: 1000 - i as u64,
                    seq: seq % 4096,
                    syn: flags & 1 != 0,
                    ack: flags & 2 != 0,
                    ack_no: ack_no % 4096,
                    fin: flags & 4 != 0,
                    data: &data,
                    missing,
                });
            }
            for flow in f.finish() {
                for (data, chunks) in [
                    (&flow.client_data, &flow.client_chunks),
                    (&flow.server_data, &flow.server_chunks),
                ] {
                    proptest::prop_assert_eq!(data.is_empty(), chunks.is_empty());
                    for w in chunks.windows(2) {
                        proptest::prop_assert!(w[0].1 < w[1].1 && w[0].0 <= w[1].0);
                    }
                    if let Some(&(_, last)) = chunks.last() {
                        proptest::prop_assert!(last < data.len());
                    }
                }
            }
        }
    }
}
