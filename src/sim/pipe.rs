//! One simulated TCP connection: two byte streams, each with segments in flight (delivered
//! in order, held while the link is cut, as TCP retransmission would), bytes arrived but not
//! yet read (the receiver's socket buffer), and a close that follows the last byte.

use std::collections::VecDeque;

/// Most bytes one direction holds in flight and unread: the sender takes no more output
/// until the reader drains (a socket buffer's worth of flow control), in bytes.
pub const WINDOW: usize = 256 * 1024;

/// One direction of a connection.
#[derive(Debug, Default)]
pub struct Stream {
    /// Segments sent and not yet arrived: `(arrival time ms, first sent ms, bytes)`, in
    /// order.
    in_flight: VecDeque<(u64, u64, Vec<u8>)>,
    in_flight_bytes: usize,
    /// Arrived, not yet read.
    arrived: VecDeque<u8>,
    /// The sender closed: the close arrives at this time (after the last segment).
    fin_at: Option<u64>,
    /// The close has arrived (the reader sees it once `arrived` is empty).
    fin_arrived: bool,
    /// Bytes sent in this direction since the connection opened.
    sent_total: u64,
}

impl Stream {
    /// How many more bytes the sender may put in flight now.
    pub fn room(&self) -> usize {
        if self.fin_at.is_some() {
            return 0;
        }
        WINDOW.saturating_sub(self.in_flight_bytes + self.arrived.len())
    }

    /// Sends `bytes` at `now_ms`, arriving at `at_ms` (never before an earlier segment).
    pub fn send(&mut self, now_ms: u64, at_ms: u64, bytes: &[u8]) {
        let at = self.last_at().map_or(at_ms, |last| last.max(at_ms));
        self.in_flight_bytes += bytes.len();
        self.sent_total += bytes.len() as u64;
        self.in_flight.push_back((at, now_ms, bytes.to_vec()));
    }

    /// A cut on this stream's link healed at `heal_ms`: what would have arrived during the
    /// cut arrives at its first retransmission at or after the heal (a retransmission
    /// timeout of 200 ms doubling up to 120 s from the first send, as Linux does after
    /// RFC 6298), plus `delay_ms`; the rest keeps its order behind it.
    pub fn heal(&mut self, heal_ms: u64, delay_ms: u64) {
        let mut floor = 0;
        for (at, sent, _) in self.in_flight.iter_mut() {
            if *at <= heal_ms {
                *at = retransmission_at(*sent, heal_ms) + delay_ms;
            }
            *at = (*at).max(floor);
            floor = *at;
        }
        if let Some(fin) = self.fin_at.as_mut() {
            if *fin <= heal_ms && !self.fin_arrived {
                *fin = (heal_ms + delay_ms).max(floor);
            }
        }
    }

    /// Closes this direction; the close arrives after every segment in flight.
    pub fn close(&mut self, at_ms: u64) {
        if self.fin_at.is_none() {
            let at = self.last_at().map_or(at_ms, |last| last.max(at_ms));
            self.fin_at = Some(at);
        }
    }

    fn last_at(&self) -> Option<u64> {
        self.in_flight.back().map(|&(at, _, _)| at)
    }

    /// Moves what has arrived by `now_ms` into the reader's buffer; returns the bytes
    /// moved, and whether the close arrived. A cut link delivers nothing (the caller does
    /// not call this then).
    pub fn deliver(&mut self, now_ms: u64) -> (usize, bool) {
        let mut moved = 0;
        while self
            .in_flight
            .front()
            .is_some_and(|&(at, _, _)| at <= now_ms)
        {
            if let Some((_, _, bytes)) = self.in_flight.pop_front() {
                self.in_flight_bytes -= bytes.len();
                moved += bytes.len();
                self.arrived.extend(bytes);
            }
        }
        let fin = self.in_flight.is_empty()
            && !self.fin_arrived
            && self.fin_at.is_some_and(|t| t <= now_ms);
        if fin {
            self.fin_arrived = true;
        }
        (moved, fin)
    }

    /// The earliest arrival still to come (a segment, or the close), ms.
    pub fn next_arrival(&self) -> Option<u64> {
        match self.in_flight.front() {
            Some(&(at, _, _)) => Some(at),
            None if !self.fin_arrived => self.fin_at,
            None => None,
        }
    }

    /// Takes up to `max` arrived bytes.
    pub fn read(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.arrived.len());
        self.arrived.drain(..n).collect()
    }

    /// Bytes arrived and not yet read.
    pub fn unread(&self) -> usize {
        self.arrived.len()
    }

    /// True when the close has arrived and every byte before it was read.
    pub fn finished(&self) -> bool {
        self.fin_arrived && self.arrived.is_empty()
    }

    /// Bytes sent in this direction so far.
    pub fn sent_total(&self) -> u64 {
        self.sent_total
    }
}

/// The first retransmission at or after `heal_ms` of a segment first sent at `sent_ms`:
/// timeouts of 200 ms doubling up to 120 s (Linux's `TCP_RTO_MIN` and `TCP_RTO_MAX`).
fn retransmission_at(sent_ms: u64, heal_ms: u64) -> u64 {
    let mut rto = 200;
    let mut t = sent_ms + rto;
    while t < heal_ms {
        rto = (rto * 2).min(120_000);
        t += rto;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_window_and_close_after_the_last_byte() {
        let mut s = Stream::default();
        s.send(0, 10, b"abc");
        s.send(0, 5, b"de"); // never overtakes the earlier segment
        s.close(0);
        assert_eq!(s.room(), 0, "closed: nothing more to send");
        assert_eq!(s.next_arrival(), Some(10));
        assert_eq!(s.deliver(9), (0, false));
        assert_eq!(s.deliver(10), (5, true));
        assert_eq!(s.read(4), b"abcd");
        assert!(!s.finished(), "one byte still unread");
        assert_eq!(s.read(10), b"e");
        assert!(s.finished());
        assert_eq!(s.sent_total(), 5);
        let mut w = Stream::default();
        w.send(0, 0, &vec![0; WINDOW - 1]);
        assert_eq!(w.room(), 1);
    }

    #[test]
    fn a_healed_cut_delivers_at_the_next_retransmission() {
        // Sent at 1000 into a cut that heals at 5000: retransmissions at 1200, 1600, 2400,
        // 4000, 7200: the first at or after the heal is 7200.
        assert_eq!(retransmission_at(1000, 5000), 7200);
        assert_eq!(retransmission_at(1000, 1100), 1200);
        let mut s = Stream::default();
        s.send(1000, 1003, b"held");
        s.send(6000, 6003, b"after");
        s.heal(5000, 3);
        assert_eq!(s.deliver(7202), (0, false));
        assert_eq!(s.deliver(7203), (9, false));
        assert_eq!(
            s.read(100),
            b"heldafter",
            "order kept behind the retransmission"
        );
    }
}
