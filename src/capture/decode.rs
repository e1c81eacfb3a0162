//! `rendezvous decode`: every packet of the project's two planes in a capture, one line
//! each, as text or JSON.
//!
//! UDP: each datagram of the port is read as a Root packet ([`crate::wire::udp::root`]) and its
//! payload by type ([`crate::wire::udp`]). TCP: each reassembled connection is framed as
//! the accepting side frames it ([`crate::wire::tcp::command_len`] after the hello), and
//! the acceptor's answers are framed by what was asked, in order (the protocol's "answers
//! in the order asked", docs/PROTOCOL.md section 8.7). Lines of both planes are sorted by
//! capture time (a TCP frame takes the time its first byte was captured).
//!
//! A line is a kind, an optional type or command number and named fields; text and JSON
//! are two renderings of the same line, so they always carry the same content.

use super::{read_capture_with_stats, CaptureRead, TcpFlow, UdpDatagram};
use crate::wire::tcp::dir::{DirRecord, Forward, ForwardBody, RecordBody};
use crate::wire::tcp::nodelist::{self, NodeEntry, NodeListFrame};
use crate::wire::tcp::{
    self, ClientCommand, ContactFields, Hello, Role, ServerCommand, StatusFrame, CLIENT_RECORD_LEN,
    CMD_DIR_RECORD, CMD_DIR_REQUEST, CMD_JOURNAL_SINCE, CMD_JOURNAL_UPDATE, CMD_NODE_LIST,
    CMD_NODE_LIST_HASH, CMD_STATUS, CMD_UPDATE_CLOCK, HELLO_LEN, JOURNAL_UPDATE_LEN,
    SERVER_RECORD_LEN,
};
use crate::wire::udp::root::Root;
use crate::wire::udp::{LookupStatus, Payload, ServerEvent};
use crate::wire::{PacketType, WireError};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `rendezvous decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The capture: a pcap or pcapng file (tcpdump -w, tshark -w, dumpcap, Wireshark).
    pub capture: PathBuf,
    /// The server's port: UDP datagrams from or to it, and TCP connections to it, are
    /// decoded; everything else is skipped and counted.
    #[arg(long, default_value_t = 4747)]
    pub port: u16,
    /// One JSON object per line (keys ts, ts_us, proto, src, dst, type, type_num and the
    /// fields) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `rendezvous decode`: prints one line per project packet (UDP) or frame (TCP) on
/// stdout, then a summary line on stderr.
///
/// Exit status 0 when the whole capture was read; 1 (after printing what was readable,
/// then the error naming the file and byte offset on stderr) for a cut or corrupt capture.
///
/// # Errors
/// A file that is not a capture at all or cannot be read (`FILE: at byte 0: not a pcap or
/// pcapng file (magic 0x....)`); a failure to write to stdout other than a closed pipe.
pub fn run_decode(args: DecodeArgs) -> anyhow::Result<ExitCode> {
    let (read, stats) = read_capture_with_stats(&args.capture, args.port)?;
    let lines = decode_lines(&read);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let written = lines.iter().try_for_each(|l| {
        let text = if args.json { l.to_json() } else { l.to_text() };
        writeln!(out, "{text}")
    });
    let written = written.and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        other => other?,
    }
    let udp = read.datagrams.len() as u64;
    eprintln!(
        "decode: {} packets read, {} of the project (port {}: {} udp datagrams, {} tcp \
         segments in {} connections), {} skipped ({} ip fragments, {} udp datagrams cut by \
         the snapshot length); {} lines",
        read.packets,
        udp + stats.segments,
        args.port,
        udp,
        stats.segments,
        read.flows.len(),
        read.skipped,
        stats.fragments,
        stats.truncated,
        lines.len()
    );
    for (link, n) in &stats.unsupported_links {
        eprintln!("decode: {n} packets of link type {link} skipped: link type not supported");
    }
    for f in read.flows.iter().filter(|f| f.gaps > 0) {
        eprintln!(
            "decode: tcp {} -> {}: {} bytes missing from the capture (lost or cut by the \
             snapshot length)",
            f.client, f.server, f.gaps
        );
    }
    match read.error {
        Some(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// One field value of a decoded line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// Free text (names, details): quoted and escaped in the text rendering.
    Text(String),
    /// A token without spaces (addresses, hex, enum names): bare in the text rendering.
    Word(String),
    /// A number.
    Num(u64),
    /// A flag.
    Bool(bool),
}

/// One decoded packet (UDP) or frame (TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// Capture time, µs since the Unix epoch.
    ts_us: u64,
    /// "udp" or "tcp".
    proto: &'static str,
    src: SocketAddr,
    dst: SocketAddr,
    /// The type or command name ("register", "update", "status", "malformed", ...).
    kind: &'static str,
    /// The type byte (UDP) or command byte (TCP), when there is one.
    num: Option<u8>,
    fields: Vec<(&'static str, Value)>,
}

/// Key of the field that says why a packet could not be decoded; rendered last, as
/// `malformed: REASON`.
const MALFORMED: &str = "malformed";

impl Line {
    fn new(ts_us: u64, proto: &'static str, src: SocketAddr, dst: SocketAddr) -> Self {
        Line {
            ts_us,
            proto,
            src,
            dst,
            kind: MALFORMED,
            num: None,
            fields: Vec::new(),
        }
    }

    fn kind(&mut self, kind: &'static str, num: u8) -> &mut Self {
        self.kind = kind;
        self.num = Some(num);
        self
    }

    fn text(&mut self, key: &'static str, v: impl Into<String>) -> &mut Self {
        self.fields.push((key, Value::Text(v.into())));
        self
    }

    fn word(&mut self, key: &'static str, v: impl ToString) -> &mut Self {
        self.fields.push((key, Value::Word(v.to_string())));
        self
    }

    fn num(&mut self, key: &'static str, v: impl Into<u64>) -> &mut Self {
        self.fields.push((key, Value::Num(v.into())));
        self
    }

    fn flag(&mut self, key: &'static str, v: bool) -> &mut Self {
        self.fields.push((key, Value::Bool(v)));
        self
    }

    fn malformed(&mut self, why: impl ToString) -> &mut Self {
        self.text(MALFORMED, why.to_string())
    }

    /// `TIME PROTO SRC -> DST KIND(NUM) key=value ... [malformed: REASON]`.
    fn to_text(&self) -> String {
        let mut s = format!(
            "{} {} {} -> {}",
            rfc3339_us(self.ts_us),
            self.proto,
            self.src,
            self.dst,
        );
        // A packet that is not even a Root packet has no kind but its reason, shown last.
        if self.num.is_some() || self.kind != MALFORMED {
            let _ = write!(s, " {}", self.kind);
        }
        if let Some(n) = self.num {
            let _ = write!(s, "({n})");
        }
        let mut why = None;
        for (k, v) in &self.fields {
            if *k == MALFORMED {
                why = Some(v);
                continue;
            }
            let _ = match v {
                Value::Text(t) => write!(s, " {k}={t:?}"),
                Value::Word(w) => write!(s, " {k}={w}"),
                Value::Num(n) => write!(s, " {k}={n}"),
                Value::Bool(b) => write!(s, " {k}={b}"),
            };
        }
        if let Some(Value::Text(t) | Value::Word(t)) = why {
            let _ = write!(s, " malformed: {t}");
        }
        s
    }

    /// One JSON object: ts (RFC 3339), ts_us, proto, src, dst, type, type_num (when there
    /// is one), then the fields.
    fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("ts".into(), rfc3339_us(self.ts_us).into());
        m.insert("ts_us".into(), self.ts_us.into());
        m.insert("proto".into(), self.proto.into());
        m.insert("src".into(), self.src.to_string().into());
        m.insert("dst".into(), self.dst.to_string().into());
        m.insert("type".into(), self.kind.into());
        if let Some(n) = self.num {
            m.insert("type_num".into(), n.into());
        }
        for (k, v) in &self.fields {
            let v = match v {
                Value::Text(t) | Value::Word(t) => serde_json::Value::from(t.as_str()),
                Value::Num(n) => (*n).into(),
                Value::Bool(b) => (*b).into(),
            };
            m.insert((*k).into(), v);
        }
        serde_json::Value::Object(m).to_string()
    }
}

/// Every line of a capture, sorted by capture time (stable: UDP in capture order, each TCP
/// direction in stream order).
fn decode_lines(read: &CaptureRead) -> Vec<Line> {
    let mut lines: Vec<Line> = read.datagrams.iter().map(udp_line).collect();
    for flow in &read.flows {
        tcp_lines(flow, &mut lines);
    }
    lines.sort_by_key(|l| l.ts_us);
    lines
}

/// `2026-01-01T00:00:00.000000Z` from µs since the Unix epoch.
fn rfc3339_us(ts_us: u64) -> String {
    let secs = ts_us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ts_us % 1_000_000
    )
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Name of a Root packet type, as lines show it.
fn type_name(t: PacketType) -> &'static str {
    match t {
        PacketType::Keepalive => "keepalive",
        PacketType::Ok => "ok",
        PacketType::Register => "register",
        PacketType::ServerEvent => "server-event",
        PacketType::Relay => "relay",
        PacketType::Lookup => "lookup",
        PacketType::LookupAnswer => "lookup-answer",
        PacketType::Error => "error",
        PacketType::Fetch => "fetch",
        PacketType::Cookie => "cookie",
        PacketType::Unknown(_) => "unknown",
    }
}

/// One UDP datagram: the Root header, then the payload by type.
fn udp_line(d: &UdpDatagram) -> Line {
    let mut line = Line::new(d.ts_us, "udp", d.src, d.dst);
    let root = match Root::parse(&d.payload) {
        Ok(r) => r,
        Err(e) => {
            line.num("len", d.payload.len() as u64).malformed(e);
            return line;
        }
    };
    line.kind(type_name(root.packet_type), root.packet_type.into());
    match root.shift_len {
        None => line.word("layout", "plain"),
        Some(k) => line.word("layout", "shifted").num("shift", k),
    };
    line.word("params", format!("0x{:02x}", root.params))
        .num("timestamp", root.timestamp)
        .num("sig_len", root.signature.len() as u64);
    let payload = match Payload::parse(root.packet_type, root.payload) {
        Ok(p) => p,
        Err(e) => {
            line.num("payload_len", root.payload.len() as u64)
                .malformed(e);
            return line;
        }
    };
    match payload {
        Payload::Keepalive => {
            line.num("pad", root.payload.len() as u64);
        }
        Payload::Ok(None) => {
            line.flag("empty", true);
        }
        Payload::Ok(Some(ok)) => {
            line.num("keepalive", ok.keepalive_s)
                .num("epoch", ok.boot_epoch)
                .word("public", ok.reflexive);
        }
        Payload::Register(r) => {
            line.word("fp", crate::identity::fingerprint(r.cert))
                .num("cert_len", r.cert.len() as u64)
                .flag("cookie", r.cookie.is_some());
        }
        Payload::ServerEvent(ServerEvent::Punch { peer, addr }) => {
            line.word("event", "punch")
                .word("peer", peer)
                .word("addr", addr);
        }
        Payload::ServerEvent(ServerEvent::Unknown { code, body }) => {
            line.num("code", code).num("len", body.len() as u64);
        }
        Payload::Relay(r) => {
            let key = if root.from_server() { "from" } else { "to" };
            line.word(key, r.peer).num("len", r.event.len() as u64);
        }
        Payload::Lookup(target) => {
            line.word("target", target);
        }
        Payload::LookupAnswer(a) => {
            line.word("target", a.target);
            match a.status {
                LookupStatus::Online { addr, age_s } => {
                    line.word("status", "online")
                        .word("addr", addr)
                        .num("age", age_s);
                }
                LookupStatus::Offline { age_s } => {
                    line.word("status", "offline").num("age", age_s);
                }
                LookupStatus::Unknown => {
                    line.word("status", "unknown");
                }
            }
            line.text("home", a.home);
        }
        Payload::Error(e) => {
            line.num("status", e.status)
                .num("request", e.request_type)
                .text("detail", e.detail);
        }
        Payload::Fetch => {}
        Payload::Cookie(c) => {
            line.word("cookie", hex(&c));
        }
    }
    line
}

/// An answer the acceptor owes, in the order the opener asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `[count u32]` then `count` records of `record_len` bytes (ListAll 533, AskForUpdate
    /// 537), answering command `cmd`.
    Records { cmd: u8, record_len: usize },
    /// UpdateClock, or nothing (a HeartBeat whose clock was higher).
    MaybeClock,
    /// A status frame (Barrier, AuthProof).
    Status,
    /// `[06][len u32][text]` (Status request).
    StatusText,
    /// `[14][line u64]` (CursorQuery).
    Cursor,
    /// `[20][nonce 32]` (AuthChallenge).
    Nonce,
    /// A node-list frame: the hash (10) for a hash, the diff (12) for a list.
    NodeList,
    /// DirRecord frames, then `[17][len u16 = 4][count u32]` (DirRequest).
    Directory,
    /// `[19][count u32]` then `count` JournalUpdate frames (JournalSince).
    JournalLines,
}

/// Time at which the byte at `offset` of a reassembled direction was captured.
fn ts_at(chunks: &[(u64, usize)], first_ts: u64, offset: usize) -> u64 {
    match chunks.partition_point(|&(_, o)| o <= offset) {
        0 => first_ts,
        i => chunks[i - 1].0,
    }
}

fn contact_fields(line: &mut Line, f: &ContactFields<'_>) {
    line.text("user", f.username)
        .text("contact", f.contact)
        .text("phone", f.phone);
}

/// Lines of one TCP connection: the opener's hello and commands, the acceptor's answers.
fn tcp_lines(flow: &TcpFlow, out: &mut Vec<Line>) {
    let c2s = |offset: usize| {
        Line::new(
            ts_at(&flow.client_chunks, flow.first_ts_us, offset),
            "tcp",
            flow.client,
            flow.server,
        )
    };
    let data = &flow.client_data;
    let mut expect = VecDeque::new();
    if !data.is_empty() {
        let hello = match tcp::hello_len(data) {
            Ok(Some(n)) => Hello::parse(&data[..n]),
            Ok(None) => Err(WireError::Truncated),
            Err(e) => Err(e),
        };
        match hello {
            Ok(h) => {
                let mut line = c2s(0);
                line.kind = "hello";
                line.word(
                    "role",
                    match h.role {
                        Role::Server => "server",
                        Role::Client => "client",
                    },
                )
                .text("name", h.name);
                out.push(line);
                client_frames(flow, h.role, &c2s, &mut expect, out);
            }
            Err(e) => {
                let mut line = c2s(0);
                line.kind = "hello";
                line.num("len", data.len().min(HELLO_LEN) as u64)
                    .malformed(e);
                out.push(line);
            }
        }
    }
    server_frames(flow, expect, out);
}

/// The opener's frames after the hello.
fn client_frames(
    flow: &TcpFlow,
    role: Role,
    c2s: &dyn Fn(usize) -> Line,
    expect: &mut VecDeque<Expect>,
    out: &mut Vec<Line>,
) {
    let data = &flow.client_data;
    let mut pos = HELLO_LEN;
    while pos < data.len() {
        let rest = &data[pos..];
        let mut line = c2s(pos);
        let n = match tcp::command_len(role, rest) {
            Ok(Some(n)) => n,
            Ok(None) => {
                line.kind("truncated", rest[0])
                    .num("len", rest.len() as u64)
                    .malformed("the stream ends inside this frame");
                out.push(line);
                return;
            }
            Err(e) => {
                line.kind("unframed", rest[0])
                    .num("len", rest.len() as u64)
                    .malformed(format!("{e}; the rest of the stream cannot be framed"));
                out.push(line);
                return;
            }
        };
        let frame = &rest[..n];
        match role {
            Role::Client => client_command(frame, &mut line, expect),
            Role::Server => server_command(frame, &mut line, expect),
        }
        out.push(line);
        pos += n;
    }
}

/// A client-role command.
fn client_command(frame: &[u8], line: &mut Line, expect: &mut VecDeque<Expect>) {
    let cmd = frame[0];
    let cmd_name = match cmd {
        1 => "update",
        2 => "list-all",
        5 => "barrier",
        _ => "status-request",
    };
    line.kind(cmd_name, cmd);
    match ClientCommand::parse(frame) {
        Ok(ClientCommand::Update(f)) => contact_fields(line, &f),
        Ok(ClientCommand::ListAll) => expect.push_back(Expect::Records {
            cmd,
            record_len: CLIENT_RECORD_LEN,
        }),
        Ok(ClientCommand::Barrier) => expect.push_back(Expect::Status),
        Ok(ClientCommand::Status) => expect.push_back(Expect::StatusText),
        Err(e) => {
            line.malformed(e);
        }
    }
}

/// Name of a server-role command byte.
fn server_command_name(cmd: u8) -> &'static str {
    match cmd {
        1 => "update",
        2 => "heartbeat",
        3 => "update-clock",
        4 => "ask-for-update",
        5 => "barrier",
        6 => "status-request",
        10 => "node-list-hash",
        11 => "node-list",
        12 => "node-list-diff",
        13 => "journal-update",
        14 => "cursor-query",
        15 => "journal-mark",
        16 => "dir-record",
        17 => "dir-request",
        18 => "forward",
        19 => "journal-since",
        20 => "auth-challenge",
        21 => "auth-proof",
        _ => "unknown",
    }
}

/// A server-role command (a federated peer's).
fn server_command(frame: &[u8], line: &mut Line, expect: &mut VecDeque<Expect>) {
    let cmd = frame[0];
    line.kind(server_command_name(cmd), cmd);
    let parsed = match ServerCommand::parse(frame) {
        Ok(c) => c,
        Err(e) => {
            line.malformed(e);
            return;
        }
    };
    match parsed {
        ServerCommand::Update { clock, fields } => {
            line.num("clock", clock);
            contact_fields(line, &fields);
        }
        ServerCommand::HeartBeat { health, clock } => {
            match health {
                1 => line.word("health", "ok"),
                2 => line.word("health", "degraded"),
                3 => line.word("health", "draining"),
                h => line.num("health", h),
            };
            line.num("clock", clock);
            expect.push_back(Expect::MaybeClock);
        }
        ServerCommand::UpdateClock(clock) => {
            line.num("clock", clock);
        }
        ServerCommand::AskForUpdate => expect.push_back(Expect::Records {
            cmd,
            record_len: SERVER_RECORD_LEN,
        }),
        ServerCommand::Barrier => expect.push_back(Expect::Status),
        ServerCommand::Status => expect.push_back(Expect::StatusText),
        ServerCommand::JournalUpdate {
            line: n,
            clock,
            fields,
        } => {
            line.num("line", n).num("clock", clock);
            contact_fields(line, &fields);
        }
        ServerCommand::CursorQuery { journal_id } => {
            line.word("journal", format!("{journal_id:016x}"));
            expect.push_back(Expect::Cursor);
        }
        ServerCommand::JournalMark { line: n } => {
            line.num("line", n);
        }
        ServerCommand::NodeList(f) => {
            node_list_fields(f, line);
            if cmd == CMD_NODE_LIST_HASH || cmd == CMD_NODE_LIST {
                expect.push_back(Expect::NodeList);
            }
        }
        ServerCommand::DirRecord(body) => dir_record_fields(body, line),
        ServerCommand::DirRequest => expect.push_back(Expect::Directory),
        ServerCommand::Forward(body) => match Forward::parse(body) {
            Ok(f) => {
                line.word(
                    "kind",
                    match f.body {
                        ForwardBody::Punch(_) => "punch",
                        ForwardBody::Relay(_) => "relay",
                    },
                )
                .num("hops", f.hops)
                .word("id", format!("{:016x}", f.id))
                .word("target", f.target)
                .word("source", f.source);
                match f.body {
                    ForwardBody::Punch(addr) => line.word("addr", addr),
                    ForwardBody::Relay(e) => line.num("len", e.len() as u64),
                };
            }
            Err(e) => {
                line.malformed(e);
            }
        },
        ServerCommand::JournalSince {
            journal_id,
            since,
            limit,
        } => {
            line.word("journal", format!("{journal_id:016x}"))
                .num("since", since)
                .num("limit", limit);
            expect.push_back(Expect::JournalLines);
        }
        ServerCommand::AuthChallenge => expect.push_back(Expect::Nonce),
        ServerCommand::AuthProof(body) => {
            match NodeEntry::parse_prefix(body) {
                Ok((entry, n)) => {
                    line.word("uid", hex(entry.uid()))
                        .text("alias", entry.alias())
                        .text("location", entry.location())
                        .num("sig_len", body.get(n).copied().unwrap_or(0));
                }
                Err(e) => {
                    line.malformed(e);
                }
            }
            expect.push_back(Expect::Status);
        }
    }
}

/// Fields of a node-list frame (10, 11, 12).
fn node_list_fields(frame: &[u8], line: &mut Line) {
    match NodeListFrame::parse(frame) {
        Ok(NodeListFrame::Hash(h)) => {
            line.word("hash", hex(&h));
        }
        Ok(NodeListFrame::List(e) | NodeListFrame::Diff(e)) => {
            line.num("count", e.len() as u64);
            let aliases: Vec<&str> = e.iter().map(NodeEntry::alias).collect();
            line.text("aliases", aliases.join(","));
        }
        Err(e) => {
            line.malformed(e);
        }
    }
}

/// Fields of a DirRecord body (command 16).
fn dir_record_fields(body: &[u8], line: &mut Line) {
    match DirRecord::parse(body) {
        Ok(r) => {
            line.word(
                "kind",
                match r.body {
                    RecordBody::Registration(_) => "registration",
                    RecordBody::Refresh => "refresh",
                    RecordBody::Expiry => "expiry",
                },
            )
            .num("hops", r.hops)
            .word("fp", r.fingerprint)
            .num("timestamp", r.timestamp)
            .num("age_ms", r.age_ms);
            if let RecordBody::Registration(reg) = r.body {
                line.word("addr", reg.addr)
                    .text("home", reg.home)
                    .num("sig_len", reg.signature.len() as u64)
                    .num("payload_len", reg.payload.len() as u64);
            }
        }
        Err(e) => {
            line.malformed(e);
        }
    }
}

/// Reads a big-endian u32 at `at`, if there.
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads a big-endian u64 at `at`, if there.
fn be64(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(s))
}

/// The acceptor's answers, framed by what was asked.
fn server_frames(flow: &TcpFlow, mut expect: VecDeque<Expect>, out: &mut Vec<Line>) {
    let data = &flow.server_data;
    let s2c = |offset: usize| {
        Line::new(
            ts_at(&flow.server_chunks, flow.first_ts_us, offset),
            "tcp",
            flow.server,
            flow.client,
        )
    };
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let mut line = s2c(pos);
        let front = expect.front().copied();
        if front == Some(Expect::MaybeClock) && rest[0] != CMD_UPDATE_CLOCK {
            expect.pop_front(); // the heartbeat's clock was higher: no answer
            continue;
        }
        let status_here = rest[0] == CMD_STATUS && front != Some(Expect::Status);
        let step = if status_here || front.is_none() || front == Some(Expect::Status) {
            status_answer(rest, &mut line)
        } else {
            match front {
                Some(Expect::Records { cmd, record_len }) => {
                    records_answer(rest, cmd, record_len, &mut line)
                }
                Some(Expect::MaybeClock) => fixed_answer(rest, 5, &mut line, |f, l| {
                    l.kind("update-clock", CMD_UPDATE_CLOCK)
                        .num("clock", be32(f, 1).unwrap_or(0));
                }),
                Some(Expect::StatusText) => status_text_answer(rest, &mut line),
                Some(Expect::Cursor) => fixed_answer(rest, 9, &mut line, |f, l| {
                    l.kind("cursor", f[0]).num("line", be64(f, 1).unwrap_or(0));
                }),
                Some(Expect::Nonce) => fixed_answer(rest, 33, &mut line, |f, l| {
                    l.kind("nonce", f[0]).word("nonce", hex(&f[1..]));
                }),
                Some(Expect::NodeList) => match nodelist::frame_len(rest) {
                    Ok(Some(n)) => {
                        line.kind(server_command_name(rest[0]), rest[0]);
                        node_list_fields(&rest[..n], &mut line);
                        Step::Took(n)
                    }
                    Ok(None) => Step::Cut,
                    Err(e) => Step::Bad(e.to_string()),
                },
                Some(Expect::Directory) => directory_answer(rest, &mut line),
                Some(Expect::JournalLines) => journal_answer(rest, &mut line),
                Some(Expect::Status) | None => Step::Bad("unexpected".into()),
            }
        };
        match step {
            Step::Took(n) => {
                let refused = line.kind == "status"
                    && line.fields.first() != Some(&("status", Value::Num(200)));
                out.push(line);
                pos += n;
                if line_is_answer(status_here, front) {
                    expect.pop_front();
                }
                if refused {
                    // Every refusal is followed by the acceptor closing: nothing more is
                    // answered.
                    expect.clear();
                }
            }
            Step::Cut => {
                if line.num.is_none() {
                    line.kind("truncated", rest[0]);
                }
                line.num("len", rest.len() as u64)
                    .malformed("the stream ends inside this answer");
                out.push(line);
                return;
            }
            Step::Bad(why) => {
                line.kind("unframed", rest[0])
                    .num("len", rest.len() as u64)
                    .malformed(format!("{why}; the rest of the answers cannot be framed"));
                out.push(line);
                return;
            }
        }
    }
}

/// Whether a framed answer used up the expectation at the front of the queue: a status
/// frame that came where another answer was due does not (it is a refusal, after which
/// nothing is answered anyway), anything else does.
fn line_is_answer(status_here: bool, front: Option<Expect>) -> bool {
    !status_here && front.is_some()
}

/// How one answer was framed.
enum Step {
    /// The answer took this many bytes.
    Took(usize),
    /// The stream ends inside it.
    Cut,
    /// These bytes are not the answer that was due.
    Bad(String),
}

/// A status frame (7).
fn status_answer(rest: &[u8], line: &mut Line) -> Step {
    match StatusFrame::frame_len(rest) {
        Ok(Some(n)) => {
            line.kind("status", CMD_STATUS);
            match StatusFrame::parse(&rest[..n]) {
                Ok(s) => {
                    line.num("status", s.status)
                        .num("request", s.request)
                        .text("detail", s.detail);
                }
                Err(e) => {
                    line.malformed(e);
                }
            }
            Step::Took(n)
        }
        Ok(None) => Step::Cut,
        Err(e) => Step::Bad(format!("{e} (expected a status frame)")),
    }
}

/// A fixed-length answer whose first byte names it.
fn fixed_answer(rest: &[u8], n: usize, line: &mut Line, fill: impl Fn(&[u8], &mut Line)) -> Step {
    if rest.len() < n {
        return Step::Cut;
    }
    fill(&rest[..n], line);
    Step::Took(n)
}

/// `[count u32]` then `count` records of `record_len` bytes, summarised in one line.
fn records_answer(rest: &[u8], cmd: u8, record_len: usize, line: &mut Line) -> Step {
    line.kind(
        if record_len == CLIENT_RECORD_LEN {
            "list-all-answer"
        } else {
            "ask-for-update-answer"
        },
        cmd,
    );
    let Some(count) = be32(rest, 0) else {
        return Step::Cut;
    };
    line.num("count", count);
    let mut pos = 4;
    let mut bad = None;
    for i in 0..count {
        if rest.get(pos) == Some(&CMD_STATUS) {
            // A store failure while streaming: the status frame comes in the records' place.
            line.num("records", i).flag("cut_by_status", true);
            return Step::Took(pos);
        }
        let Some(rec) = rest.get(pos..pos + record_len) else {
            line.num("records", i);
            return Step::Cut;
        };
        let ok = if record_len == CLIENT_RECORD_LEN {
            tcp::parse_client_record(rec).err()
        } else {
            tcp::parse_server_record(rec).err()
        };
        if let (Some(e), None) = (ok, bad) {
            bad = Some((i, e));
        }
        pos += record_len;
    }
    line.num("records", count).num("bytes", pos as u64);
    if let Some((i, e)) = bad {
        line.malformed(format!("record {i}: {e}"));
    }
    Step::Took(pos)
}

/// `[06][len u32][text]`: the Status answer.
fn status_text_answer(rest: &[u8], line: &mut Line) -> Step {
    line.kind("status-text", rest[0]);
    let Some(len) = be32(rest, 1) else {
        return Step::Cut;
    };
    let n = 5 + len as usize;
    let Some(text) = rest.get(5..n) else {
        return Step::Cut;
    };
    line.num("len", len)
        .text("text", String::from_utf8_lossy(text));
    Step::Took(n)
}

/// DirRecord frames, then `[17][len u16 = 4][count u32]`: the DirRequest answer, in one
/// line.
fn directory_answer(rest: &[u8], line: &mut Line) -> Step {
    line.kind("directory", CMD_DIR_REQUEST);
    let mut pos = 0;
    let mut records = 0u64;
    let mut bad = None;
    loop {
        match rest.get(pos) {
            None => {
                line.num("records", records);
                return Step::Cut;
            }
            Some(&CMD_DIR_RECORD) => {
                let Some(len) = rest.get(pos + 1..pos + 3) else {
                    line.num("records", records);
                    return Step::Cut;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let Some(body) = rest.get(pos + 3..pos + 3 + len) else {
                    line.num("records", records);
                    return Step::Cut;
                };
                if let (Err(e), None) = (DirRecord::parse(body), &bad) {
                    bad = Some((records, e));
                }
                records += 1;
                pos += 3 + len;
            }
            Some(&CMD_DIR_REQUEST) => {
                let Some(count) = be32(rest, pos + 3) else {
                    line.num("records", records);
                    return Step::Cut;
                };
                line.num("records", records).num("count", count);
                if let Some((i, e)) = bad {
                    line.malformed(format!("record {i}: {e}"));
                }
                return Step::Took(pos + 7);
            }
            Some(&CMD_STATUS) if records > 0 => {
                line.num("records", records).flag("cut_by_status", true);
                return Step::Took(pos);
            }
            Some(b) => {
                return Step::Bad(format!(
                    "byte {b} where a directory record (16) or its end (17) was due"
                ))
            }
        }
    }
}

/// `[19][count u32]` then `count` JournalUpdate frames: the JournalSince answer, in one
/// line.
fn journal_answer(rest: &[u8], line: &mut Line) -> Step {
    if rest[0] != CMD_JOURNAL_SINCE {
        return Step::Bad(format!(
            "byte {} where a journal answer (19) was due",
            rest[0]
        ));
    }
    line.kind("journal-since-answer", CMD_JOURNAL_SINCE);
    let Some(count) = be32(rest, 1) else {
        return Step::Cut;
    };
    line.num("count", count);
    let frame = 1 + JOURNAL_UPDATE_LEN;
    let mut pos = 5;
    let (mut first, mut last) = (None, 0);
    for i in 0..count {
        let Some(f) = rest.get(pos..pos + frame) else {
            line.num("lines", i);
            return Step::Cut;
        };
        if f[0] != CMD_JOURNAL_UPDATE {
            return Step::Bad(format!("byte {} where a journal line (13) was due", f[0]));
        }
        let n = be64(f, 1).unwrap_or(0);
        first.get_or_insert(n);
        last = n;
        pos += frame;
    }
    line.num("lines", count);
    if let Some(first) = first {
        line.num("first_line", first).num("last_line", last);
    }
    Step::Took(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::udp::parse_lookup;
    use crate::wire::{Fingerprint, RootHeader};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_us(1_767_225_600_000_001),
            "2026-01-01T00:00:00.000001Z"
        );
        assert_eq!(
            rfc3339_us(951_782_400_500_000),
            "2000-02-29T00:00:00.500000Z"
        );
    }

    #[test]
    fn udp_lookup_line_text_and_json() {
        let payload = RootHeader {
            params: 0x02,
            shift_len: None,
            packet_type: PacketType::Lookup,
            signature: &[],
            timestamp: 1_767_225_600,
        }
        .to_vec(&[0x11; 32])
        .unwrap();
        assert_eq!(
            parse_lookup(&payload[12..]).unwrap(),
            Fingerprint([0x11; 32])
        );
        let d = UdpDatagram {
            ts_us: 1_767_225_600_000_000,
            src: addr("127.0.0.1:5000"),
            dst: addr("127.0.0.1:4747"),
            payload,
            to_server: true,
        };
        let line = udp_line(&d);
        assert_eq!(
            line.to_text(),
            format!(
                "2026-01-01T00:00:00.000000Z udp 127.0.0.1:5000 -> 127.0.0.1:4747 lookup(5) \
                 layout=plain params=0x02 timestamp=1767225600 sig_len=0 target={}",
                "11".repeat(32)
            )
        );
        let v: serde_json::Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(v["type"], "lookup");
        assert_eq!(v["type_num"], 5);
        assert_eq!(v["target"], "11".repeat(32));
        assert_eq!(v["proto"], "udp");
        let bad = udp_line(&UdpDatagram {
            payload: vec![0x08],
            ..d
        });
        assert!(bad
            .to_text()
            .ends_with("-> 127.0.0.1:4747 len=1 malformed: params byte has reserved bits set"));
    }

    #[test]
    fn tcp_client_session_with_answers() {
        let mut c = vec![2u8];
        c.extend_from_slice(&[0u8; 256]);
        c[1..4].copy_from_slice(b"cli");
        let mut update = vec![0u8; 533];
        update[0] = 1;
        update[1..6].copy_from_slice(b"alice");
        update[257..260].copy_from_slice(b"bob");
        update[513..516].copy_from_slice(b"555");
        c.extend_from_slice(&update);
        c.push(5); // barrier
        c.push(2); // list all
        let mut s = vec![7, 0, 200, 5, 7];
        s.extend_from_slice(b"durable");
        s.extend_from_slice(&[0, 0, 0, 1]);
        s.extend_from_slice(&update);
        let flow = TcpFlow {
            client: addr("127.0.0.1:5000"),
            server: addr("127.0.0.1:4747"),
            first_ts_us: 1,
            client_chunks: vec![(1, 0)],
            client_data: c,
            server_chunks: vec![(2, 0)],
            server_data: s,
            gaps: 0,
        };
        let mut lines = Vec::new();
        tcp_lines(&flow, &mut lines);
        let text: Vec<String> = lines.iter().map(Line::to_text).collect();
        let tails: Vec<&str> = text
            .iter()
            .map(|t| t.split_once(" tcp ").unwrap().1)
            .collect();
        assert_eq!(
            tails,
            [
                "127.0.0.1:5000 -> 127.0.0.1:4747 hello role=client name=\"cli\"",
                "127.0.0.1:5000 -> 127.0.0.1:4747 update(1) user=\"alice\" contact=\"bob\" \
                 phone=\"555\"",
                "127.0.0.1:5000 -> 127.0.0.1:4747 barrier(5)",
                "127.0.0.1:5000 -> 127.0.0.1:4747 list-all(2)",
                "127.0.0.1:4747 -> 127.0.0.1:5000 status(7) status=200 request=5 \
                 detail=\"durable\"",
                "127.0.0.1:4747 -> 127.0.0.1:5000 list-all-answer(2) count=1 records=1 \
                 bytes=537",
            ]
        );
    }

    proptest::proptest! {
        /// No input makes decoding panic: any datagram, any pair of streams, either role.
        #[test]
        fn any_bytes_decode_without_panic(
            udp in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            role in 1u8..=2,
            client in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            server in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let d = UdpDatagram {
                ts_us: 0,
                src: addr("127.0.0.1:1"),
                dst: addr("127.0.0.1:2"),
                payload: udp,
                to_server: true,
            };
            let _ = udp_line(&d).to_json();
            let mut c = vec![role];
            c.extend_from_slice(&[0u8; 256]);
            c.extend_from_slice(&client);
            for client_data in [client, c] {
                let flow = TcpFlow {
                    client: addr("127.0.0.1:1"),
                    server: addr("127.0.0.1:2"),
                    first_ts_us: 0,
                    client_chunks: vec![(0, 0)],
                    client_data,
                    server_chunks: vec![(0, 0)],
                    server_data: server.clone(),
                    gaps: 0,
                };
                let mut lines = Vec::new();
                tcp_lines(&flow, &mut lines);
                for l in &lines {
                    let _ = (l.to_text(), l.to_json());
                }
            }
        }
    }
}
