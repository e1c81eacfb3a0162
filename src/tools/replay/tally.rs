//! What a replay counts, and its summary (docs/PROTOCOL.md §10, `rendezvous replay`,
//! "Summary"): UDP datagrams by type and errors by status, TCP answers by kind and status
//! frames by code, sockets and connections.

use crate::wire::udp::ErrorReply;
use crate::wire::{PacketType, Root};
use std::collections::BTreeMap;

/// UDP error statuses always shown in the summary's `errors` line (others as they come).
const UDP_STATUSES: [u16; 8] = [400, 401, 403, 404, 409, 413, 429, 503];
/// TCP status frame codes always shown in the `tcp_status` line.
const TCP_STATUSES: [u16; 9] = [200, 400, 401, 403, 404, 408, 409, 413, 503];

/// Counters of one replay: the UDP side and the TCP side.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Datagrams sent and received.
    pub udp: UdpTally,
    /// Connections made, bytes written and read, answers counted.
    pub tcp: TcpTally,
}

/// The UDP side of a replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UdpTally {
    /// Datagrams sent, by Root type byte; `None` for datagrams that are no Root packet.
    pub sent: BTreeMap<Option<u8>, u64>,
    /// Datagrams the kernel refused (not counted as sent).
    pub send_errors: u64,
    /// Datagrams received from the target, by Root type byte (`None`: unreadable).
    pub received: BTreeMap<Option<u8>, u64>,
    /// Type-7 errors received, by status.
    pub errors: BTreeMap<u16, u64>,
    /// Datagrams from addresses other than the target (ignored otherwise).
    pub foreign: u64,
    /// Local sockets made.
    pub sockets: usize,
    /// True when client addresses had to share sockets.
    pub reused: bool,
}

/// The TCP side of a replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TcpTally {
    /// Flows in the capture (each replayed on its own connection).
    pub flows: u64,
    /// Connections that were established.
    pub connected: u64,
    /// Connections that could not be made.
    pub failed: u64,
    /// Connections the server closed (or reset) before we were done.
    pub closed_by_server: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Bytes of client data not written (the connection failed or was closed first).
    pub bytes_unsent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// What the connections sent and got back, summed over all flows.
    pub counts: TcpCounts,
}

/// Counts of what one TCP connection (or all of them) sent and got back, as far as a
/// [`super::Tracker`] could follow it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TcpCounts {
    /// Hellos sent.
    pub hellos: u64,
    /// Client role: Update commands sent.
    pub updates: u64,
    /// Client role: ListAll commands sent.
    pub list_alls: u64,
    /// Barrier commands sent (either role).
    pub barriers: u64,
    /// Status requests (command 6) sent (either role).
    pub status_requests: u64,
    /// Other server-role commands sent (Update, HeartBeat, AskForUpdate, journal,
    /// directory and node-list frames, ...).
    pub server_commands: u64,
    /// Bytes sent that could not be framed (not the project's protocol, or cut).
    pub sent_unparsed: u64,
    /// Status frames received, by code.
    pub status: BTreeMap<u16, u64>,
    /// Contact records received (in ListAll and AskForUpdate answers).
    pub records: u64,
    /// Status texts (answers to command 6) received.
    pub status_texts: u64,
    /// Other answer frames received (UpdateClock, cursors, node-list, directory and
    /// journal frames, nonces).
    pub frames: u64,
    /// Bytes received that could not be followed.
    pub received_unparsed: u64,
}

impl TcpCounts {
    /// Adds every count of `o`.
    pub fn add(&mut self, o: &TcpCounts) {
        self.hellos += o.hellos;
        self.updates += o.updates;
        self.list_alls += o.list_alls;
        self.barriers += o.barriers;
        self.status_requests += o.status_requests;
        self.server_commands += o.server_commands;
        self.sent_unparsed += o.sent_unparsed;
        for (k, v) in &o.status {
            *self.status.entry(*k).or_default() += v;
        }
        self.records += o.records;
        self.status_texts += o.status_texts;
        self.frames += o.frames;
        self.received_unparsed += o.received_unparsed;
    }
}

/// What a summary says about the capture itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CaptureInfo {
    /// Packets read from the capture (all, not only the project's).
    pub packets: u64,
    /// Packets skipped (other protocols or ports, unreadable headers).
    pub skipped: u64,
    /// True when the capture ended with an error (cut or corrupt).
    pub cut: bool,
    /// Bytes missing from the reassembled TCP streams (both directions).
    pub tcp_gaps: u64,
    /// Wall time of the replay, ms.
    pub elapsed_ms: u64,
}

fn get<K: Ord>(m: &BTreeMap<K, u64>, k: &K) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// `400=N 401=N ...` for the `always` codes, then any other code seen.
fn codes(m: &BTreeMap<u16, u64>, always: &[u16]) -> String {
    let mut parts: Vec<String> = always
        .iter()
        .map(|c| format!("{c}={}", get(m, c)))
        .collect();
    for (c, n) in m {
        if !always.contains(c) {
            parts.push(format!("{c}={n}"));
        }
    }
    parts.join(" ")
}

impl UdpTally {
    /// Counts a datagram sent: by type (`None` when it is no Root packet).
    pub fn count_sent(&mut self, payload: &[u8]) {
        let ty = Root::parse(payload).ok().map(|r| u8::from(r.packet_type));
        *self.sent.entry(ty).or_default() += 1;
    }

    /// Counts a datagram received from the target: by type, type-7 errors by status.
    pub fn count_received(&mut self, data: &[u8]) {
        let root = Root::parse(data).ok();
        let ty = root.map(|r| u8::from(r.packet_type));
        *self.received.entry(ty).or_default() += 1;
        if let Some(r) = root {
            if r.packet_type == PacketType::Error {
                if let Ok(e) = ErrorReply::parse(r.payload) {
                    *self.errors.entry(e.status).or_default() += 1;
                }
            }
        }
    }

    /// `sent_udp`, `received_udp`, `errors` and `cookie` lines.
    fn lines(&self) -> [String; 4] {
        let sent = |t: u8| get(&self.sent, &Some(t));
        let recv = |t: u8| get(&self.received, &Some(t));
        let others = |m: &BTreeMap<Option<u8>, u64>, known: &[u8]| -> u64 {
            m.iter()
                .filter(|(k, _)| !k.is_some_and(|t| known.contains(&t)))
                .map(|(_, v)| v)
                .sum()
        };
        [
            format!(
                "sent_udp keepalive={} register={} relay={} lookup={} fetch={} other={}",
                sent(0),
                sent(2),
                sent(4),
                sent(5),
                sent(8),
                others(&self.sent, &[0, 2, 4, 5, 8])
            ),
            format!(
                "received_udp ok={} punch={} relay={} answer={} error={} cookie={} other={}",
                recv(1),
                recv(3),
                recv(4),
                recv(6),
                recv(7),
                recv(9),
                others(&self.received, &[1, 3, 4, 6, 7, 9])
            ),
            format!("errors {}", codes(&self.errors, &UDP_STATUSES)),
            format!("cookie challenges={}", recv(9)),
        ]
    }
}

impl TcpTally {
    /// `sent_tcp`, `received_tcp` and `tcp_status` lines.
    fn lines(&self) -> [String; 3] {
        let t = &self.counts;
        let status_frames: u64 = t.status.values().sum();
        [
            format!(
                "sent_tcp hello={} update={} list_all={} barrier={} status={} server={} \
                 unparsed_bytes={}",
                t.hellos,
                t.updates,
                t.list_alls,
                t.barriers,
                t.status_requests,
                t.server_commands,
                t.sent_unparsed
            ),
            format!(
                "received_tcp status={status_frames} records={} status_text={} frames={} \
                 unparsed_bytes={}",
                t.records, t.status_texts, t.frames, t.received_unparsed
            ),
            format!("tcp_status {}", codes(&t.status, &TCP_STATUSES)),
        ]
    }
}

impl Tally {
    /// The summary, one line each, `NAME key=value ...` (docs/PROTOCOL.md §10, `rendezvous
    /// replay`, "Summary"):
    ///
    /// ```text
    /// replay packets=N skipped=N cut=false tcp_gaps=N elapsed_ms=N
    /// sent udp=N tcp_flows=N tcp_bytes=N
    /// received udp=N tcp_bytes=N
    /// sent_udp keepalive=N register=N relay=N lookup=N fetch=N other=N
    /// received_udp ok=N punch=N relay=N answer=N error=N cookie=N other=N
    /// errors 400=N 401=N 403=N 404=N 409=N 413=N 429=N 503=N
    /// cookie challenges=N
    /// sent_tcp hello=N update=N list_all=N barrier=N status=N server=N unparsed_bytes=N
    /// received_tcp status=N records=N status_text=N frames=N unparsed_bytes=N
    /// tcp_status 200=N 400=N 401=N 403=N 404=N 408=N 409=N 413=N 503=N
    /// sockets udp=N reused=false tcp_connected=N tcp_failed=N tcp_closed_by_server=N tcp_unsent_bytes=N udp_send_errors=N udp_foreign=N
    /// ```
    pub fn summary(&self, info: &CaptureInfo) -> Vec<String> {
        let (u, t) = (&self.udp, &self.tcp);
        let mut lines = vec![
            format!(
                "replay packets={} skipped={} cut={} tcp_gaps={} elapsed_ms={}",
                info.packets, info.skipped, info.cut, info.tcp_gaps, info.elapsed_ms
            ),
            format!(
                "sent udp={} tcp_flows={} tcp_bytes={}",
                u.sent.values().sum::<u64>(),
                t.flows,
                t.bytes_sent
            ),
            format!(
                "received udp={} tcp_bytes={}",
                u.received.values().sum::<u64>(),
                t.bytes_received
            ),
        ];
        lines.extend(u.lines());
        lines.extend(t.lines());
        lines.push(format!(
            "sockets udp={} reused={} tcp_connected={} tcp_failed={} tcp_closed_by_server={} \
             tcp_unsent_bytes={} udp_send_errors={} udp_foreign={}",
            u.sockets,
            u.reused,
            t.connected,
            t.failed,
            t.closed_by_server,
            t.bytes_unsent,
            u.send_errors,
            u.foreign
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_replies_are_counted_by_type_and_status() {
        use crate::wire::udp::Payload;
        use crate::wire::RootHeader;
        let emit = |p: &Payload<'_>| {
            let mut body = vec![0; p.buffer_len()];
            let n = p.emit(&mut body).expect("emit");
            body.truncate(n);
            RootHeader {
                params: 1,
                shift_len: None,
                packet_type: p.packet_type(),
                signature: &[],
                timestamp: 0,
            }
            .to_vec(&body)
            .expect("root")
        };
        let mut t = Tally::default();
        t.udp.count_received(&emit(&Payload::Cookie([1; 16])));
        t.udp.count_received(&emit(&Payload::Error(ErrorReply {
            status: 409,
            request_type: 2,
            detail: "replayed packet",
        })));
        t.udp.count_received(&emit(&Payload::Error(ErrorReply {
            status: 418,
            request_type: 2,
            detail: "",
        })));
        t.udp.count_received(b"junk");
        t.udp.count_sent(&[2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let lines = t.summary(&CaptureInfo {
            packets: 7,
            cut: true,
            ..CaptureInfo::default()
        });
        let has = |l: &str| lines.iter().any(|x| x == l);
        assert!(
            has("replay packets=7 skipped=0 cut=true tcp_gaps=0 elapsed_ms=0"),
            "{lines:#?}"
        );
        assert!(has("sent udp=1 tcp_flows=0 tcp_bytes=0"), "{lines:#?}");
        assert!(has(
            "sent_udp keepalive=0 register=1 relay=0 lookup=0 fetch=0 other=0"
        ));
        assert!(has("received udp=4 tcp_bytes=0"));
        assert!(has(
            "received_udp ok=0 punch=0 relay=0 answer=0 error=2 cookie=1 other=1"
        ));
        assert!(has(
            "errors 400=0 401=0 403=0 404=0 409=1 413=0 429=0 503=0 418=1"
        ));
        assert!(has("cookie challenges=1"));
    }
}
