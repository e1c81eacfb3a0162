//! The replay's timeline: every client-to-server datagram, TCP connection start and TCP
//! chunk of a capture, ordered by capture time, and how fast it is played
//! (docs/PROTOCOL.md §10, `rendezvous replay`, "Timeline").

use crate::tools::capture::CaptureRead;
use std::time::Duration;

/// How the timeline is played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// As fast as possible, in capture order.
    Fast,
    /// The capture's own gaps divided by this factor (> 0).
    Speed(f64),
}

impl Pacing {
    /// The capture's own pacing scaled by `factor` (2.0 plays twice as fast); `None`
    /// unless `factor` is a finite number above 0.
    pub fn speed(factor: f64) -> Option<Pacing> {
        (factor.is_finite() && factor > 0.0).then_some(Pacing::Speed(factor))
    }

    /// When the step captured at `ts_us` is due, counted from the start of the replay;
    /// `t0_us` is the capture time of the first step (µs since the epoch).
    pub fn due(self, t0_us: u64, ts_us: u64) -> Duration {
        match self {
            Pacing::Fast => Duration::ZERO,
            Pacing::Speed(f) => {
                let secs = ts_us.saturating_sub(t0_us) as f64 / 1e6 / f;
                Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
            }
        }
    }
}

/// One thing to do on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send UDP datagram `i` of [`CaptureRead::datagrams`].
    Udp(usize),
    /// Open the connection of TCP flow `i` of [`CaptureRead::flows`].
    Connect(usize),
    /// Write bytes `start..end` of flow `flow`'s client data.
    Chunk {
        /// Index in [`CaptureRead::flows`].
        flow: usize,
        /// First byte, offset in the flow's client data.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
}

/// A timeline step: an action and its capture time (µs since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Capture time, µs since the epoch.
    pub ts_us: u64,
    /// What to do.
    pub action: Action,
}

/// The timeline of a capture: the client-to-server UDP datagrams, each TCP flow's start and
/// its client chunks (empty ones left out), ordered by capture time; steps with one time
/// keep the order of the capture (datagrams first, then flows, a flow's start before its
/// chunks).
pub fn plan(read: &CaptureRead) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, d) in read.datagrams.iter().enumerate() {
        if d.to_server {
            steps.push(Step {
                ts_us: d.ts_us,
                action: Action::Udp(i),
            });
        }
    }
    for (i, f) in read.flows.iter().enumerate() {
        steps.push(Step {
            ts_us: f.first_ts_us,
            action: Action::Connect(i),
        });
        let mut chunks = f.client_chunks.clone();
        chunks.sort_by_key(|&(_, off)| off);
        let len = f.client_data.len();
        for (j, &(ts, off)) in chunks.iter().enumerate() {
            let start = off.min(len);
            let end = chunks.get(j + 1).map_or(len, |&(_, next)| next.min(len));
            if end > start {
                steps.push(Step {
                    // A chunk never goes before its connection's start.
                    ts_us: ts.max(f.first_ts_us),
                    action: Action::Chunk {
                        flow: i,
                        start,
                        end,
                    },
                });
            }
        }
        // Bytes before the first chunk's offset (a reader that gives none): at the start.
        let first = chunks.first().map_or(len, |&(_, off)| off.min(len));
        if first > 0 {
            steps.push(Step {
                ts_us: f.first_ts_us,
                action: Action::Chunk {
                    flow: i,
                    start: 0,
                    end: first,
                },
            });
        }
    }
    // Stable: equal times keep the order pushed.
    steps.sort_by_key(|s| s.ts_us);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::capture::{TcpFlow, UdpDatagram};
    use std::net::SocketAddr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn datagram(ts_us: u64, src: &str, to_server: bool) -> UdpDatagram {
        let (src, dst) = if to_server {
            (addr(src), addr("127.0.0.1:4747"))
        } else {
            (addr("127.0.0.1:4747"), addr(src))
        };
        UdpDatagram {
            ts_us,
            src,
            dst,
            payload: vec![2, 0, 0, 0],
            to_server,
        }
    }

    fn read_of(datagrams: Vec<UdpDatagram>, flows: Vec<TcpFlow>) -> CaptureRead {
        CaptureRead {
            datagrams,
            flows,
            packets: 0,
            skipped: 0,
            error: None,
        }
    }

    fn flow(first_ts_us: u64, data: &[u8], chunks: Vec<(u64, usize)>) -> TcpFlow {
        TcpFlow {
            client: addr("127.0.0.1:50000"),
            server: addr("127.0.0.1:4747"),
            first_ts_us,
            client_data: data.to_vec(),
            client_chunks: chunks,
            server_data: Vec::new(),
            server_chunks: Vec::new(),
            gaps: 0,
        }
    }

    #[test]
    fn plan_merges_udp_and_tcp_by_time_and_skips_server_datagrams() {
        let read = read_of(
            vec![
                datagram(100, "127.0.0.1:1000", true),
                datagram(150, "127.0.0.1:1000", false),
                datagram(300, "127.0.0.1:1001", true),
            ],
            vec![flow(120, b"abcdef", vec![(200, 0), (400, 4)])],
        );
        let steps = plan(&read);
        let got: Vec<(u64, Action)> = steps.iter().map(|s| (s.ts_us, s.action)).collect();
        assert_eq!(
            got,
            vec![
                (100, Action::Udp(0)),
                (120, Action::Connect(0)),
                (
                    200,
                    Action::Chunk {
                        flow: 0,
                        start: 0,
                        end: 4
                    }
                ),
                (300, Action::Udp(2)),
                (
                    400,
                    Action::Chunk {
                        flow: 0,
                        start: 4,
                        end: 6
                    }
                ),
            ]
        );
    }

    #[test]
    fn plan_keeps_capture_order_on_equal_times_and_covers_every_byte() {
        let read = read_of(
            vec![
                datagram(5, "127.0.0.1:1000", true),
                datagram(5, "127.0.0.1:1001", true),
            ],
            // Chunks out of order, one empty, data before the first offset.
            vec![flow(5, b"0123456789", vec![(9, 6), (7, 2), (8, 6)])],
        );
        let steps = plan(&read);
        assert_eq!(steps[0].action, Action::Udp(0));
        assert_eq!(steps[1].action, Action::Udp(1));
        assert_eq!(steps[2].action, Action::Connect(0));
        let mut covered = Vec::new();
        for s in &steps {
            if let Action::Chunk { start, end, .. } = s.action {
                covered.push((start, end));
            }
        }
        covered.sort_unstable();
        assert_eq!(covered, vec![(0, 2), (2, 6), (6, 10)]);
        assert!(steps.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
    }

    #[test]
    fn pacing_scales_the_capture_gaps() {
        assert_eq!(Pacing::Fast.due(1_000, 9_000_000), Duration::ZERO);
        assert_eq!(
            Pacing::Speed(1.0).due(1_000_000, 3_500_000),
            Duration::from_millis(2_500)
        );
        assert_eq!(
            Pacing::Speed(2.0).due(1_000_000, 3_000_000),
            Duration::from_secs(1)
        );
        assert_eq!(Pacing::Speed(1.0).due(5, 1), Duration::ZERO);
    }
}
