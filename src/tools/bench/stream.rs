//! The streaming workloads of `rendezvous bench` (docs/PROTOCOL.md §10, "Streaming: the
//! AskForUpdate and ListAll bench"): a whole contact list streamed by the server, measured
//! beside a plain TCP sender of the same bytes in the same run.
//!
//! - `askforupdate`: a server-role connection (hello role 1) asks AskForUpdate (4) and reads
//!   `[count u32]` + `count` x 537-byte records (docs/PROTOCOL.md §8.4, §8.5).
//! - `listall`: a client-role connection proves the key of the bench's identity (§8.18) and
//!   asks ListAll (2): `[count u32]` + `count` x 533-byte records of that identity's contacts.
//!
//! First, unless `--contacts 0`, the bench loads `--contacts` N contacts into the server
//! through a server-role connection (N server Updates then a Barrier; the server needs
//! `--allow-peer 127.0.0.1/32 --plain-peers`), all owned by the bench's identity (username:
//! its fingerprint in hex, 64 bytes; contact `contact%07d`, 14 bytes; phone `+1555%07d`, 12
//! bytes), so both workloads stream N records from a fresh server. The load is timed and,
//! with `--pid`, the server's peak resident set (VmHWM) after it is reported.
//!
//! Then `--rounds` R rounds, each: the server's answer, then the baseline: a thread of this
//! process listening on loopback sends the same number of bytes (`[count]` + the same
//! records, prebuilt) in 8 KiB writes. Both are read by the same reader (128 KiB reads, bytes
//! counted, not parsed), timed from the request's write to the last byte. The report gives
//! the medians of the two rates and of the per-round ratio server/plain; with `--pid`, the
//! largest rise of the server's VmRSS over its value before the request, sampled every 2 ms
//! while the answer streams (`server_rss_extra_kib`).

use super::report::Report;
use super::stats::rss_kib;
use super::{BenchError, BenchOptions, Workload};
use crate::client::contacts::ContactsClient;
use crate::identity::{Identity, KeyAlgorithm};
use crate::wire::tcp::{
    self, emit_count, ClientCommand, ContactFields, Hello, Role, ServerCommand, StatusFrame,
    CLIENT_RECORD_LEN, COUNT_LEN, SERVER_RECORD_LEN,
};
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The baseline's write size, bytes.
pub const PLAIN_WRITE: usize = 8 * 1024;
/// The reader's buffer, bytes.
const READ_BUF: usize = 128 * 1024;
/// Records in the baseline's prebuilt buffer, sent over and over: 8192 records are a whole
/// number of [`PLAIN_WRITE`]s, so every write is exactly 8 KiB.
const PREBUILT: usize = 8192;
/// How often the server's VmRSS is sampled while an answer streams.
const RSS_EVERY: Duration = Duration::from_millis(2);
/// Longest any read or write of the bench waits.
const IO_TIMEOUT: Duration = Duration::from_secs(600);

/// What one streamed answer cost: seconds from the request to the last byte, records, and
/// the largest rise of the server's VmRSS seen meanwhile (KiB, when sampled).
#[derive(Debug, Clone, Copy)]
struct Streamed {
    secs: f64,
    count: u32,
    rss_extra_kib: Option<u64>,
}

/// The bytes of an answer of `count` records of `rec_len` bytes, with its count.
fn answer_bytes(count: u32, rec_len: usize) -> u64 {
    COUNT_LEN as u64 + u64::from(count) * rec_len as u64
}

/// The record length of `workload`'s answer: 537 (AskForUpdate) or 533 (ListAll).
fn record_len(workload: Workload) -> usize {
    match workload {
        Workload::ListAll => CLIENT_RECORD_LEN,
        _ => SERVER_RECORD_LEN,
    }
}

/// Contact `i` of the load, owned by `owner`: (contact, phone).
fn contact_of(i: u32) -> (String, String) {
    (format!("contact{i:07}"), format!("+1555{i:07}"))
}

/// Runs `askforupdate` or `listall` against the server at `target`.
pub(crate) fn run(
    args: &BenchOptions,
    target: SocketAddr,
    notes: &mut dyn Write,
) -> Result<Report, BenchError> {
    let id =
        Identity::generate(KeyAlgorithm::Ed25519, "bench-stream").map_err(BenchError::Identity)?;
    let owner = ContactsClient::owner(&id);
    let n = args.stream.contacts;
    let mut rep = Report::default();
    rep.text("workload", args.workload.name());
    rep.text("target", &target.to_string());
    if n > 0 {
        let _ = writeln!(notes, "bench: loading {n} contacts into {target}");
        let rss0 = args.pid.and_then(|p| rss_kib(p, "VmRSS"));
        let secs = load(target, &owner, n).map_err(BenchError::io("loading the contacts"))?;
        rep.int("loaded", u64::from(n));
        rep.num("load_secs", secs);
        rep.num("load_rate_per_s", f64::from(n) / secs.max(1e-9));
        // The bytes of the fields stored, and their clocks (docs/CAPACITY.md "raw size").
        let raw = (0..n).fold(0u64, |a, i| {
            let (c, p) = contact_of(i);
            a + (owner.len() + c.len() + p.len() + 4) as u64
        });
        rep.int("raw_kib", raw / 1024);
        if let (Some(p), Some(r0)) = (args.pid, rss0) {
            if let Some(hwm) = rss_kib(p, "VmHWM") {
                rep.int("server_rss_before_load_kib", r0);
                rep.int("server_vmhwm_kib", hwm);
                rep.num("vmhwm_over_raw", hwm as f64 * 1024.0 / raw.max(1) as f64);
            }
        }
    }
    let rounds = rounds(args, target, &id, notes)?;
    summarise(&mut rep, args.workload, &rounds);
    Ok(rep)
}

/// R rounds of (server, plain sender); returns the pairs.
fn rounds(
    args: &BenchOptions,
    target: SocketAddr,
    id: &Identity,
    notes: &mut dyn Write,
) -> Result<Vec<(Streamed, Streamed)>, BenchError> {
    let mut out = Vec::with_capacity(args.stream.rounds);
    for r in 0..args.stream.rounds {
        let server = match args.workload {
            Workload::ListAll => list_all(target, id, args.pid),
            _ => ask_for_update(target, args.pid),
        }
        .map_err(BenchError::io("streaming the server's answer"))?;
        let plain = plain(server.count, record_len(args.workload))
            .map_err(BenchError::io("streaming from the plain sender"))?;
        let _ = writeln!(
            notes,
            "bench: round {} count={} server {:.3} s, plain {:.3} s",
            r + 1,
            server.count,
            server.secs,
            plain.secs
        );
        out.push((server, plain));
    }
    Ok(out)
}

/// The median of `v` (the upper one of an even count); 0 for none.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The report's stream fields from the rounds.
fn summarise(rep: &mut Report, workload: Workload, rounds: &[(Streamed, Streamed)]) {
    let count = rounds.first().map_or(0, |(s, _)| s.count);
    let bytes = answer_bytes(count, record_len(workload));
    let mb = |secs: f64| bytes as f64 / secs.max(1e-9) / 1e6;
    rep.int("count", u64::from(count));
    rep.int("bytes", bytes);
    rep.int("rounds", rounds.len() as u64);
    rep.int("plain_write", PLAIN_WRITE as u64);
    let ms = |secs: f64| secs * 1000.0;
    rep.num(
        "server_ms",
        median(rounds.iter().map(|r| ms(r.0.secs)).collect()),
    );
    rep.num(
        "plain_ms",
        median(rounds.iter().map(|r| ms(r.1.secs)).collect()),
    );
    rep.num(
        "server_mb_per_s",
        median(rounds.iter().map(|r| mb(r.0.secs)).collect()),
    );
    rep.num(
        "plain_mb_per_s",
        median(rounds.iter().map(|r| mb(r.1.secs)).collect()),
    );
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|(s, p)| p.secs / s.secs.max(1e-9))
        .collect();
    // In percent, so the one decimal printed keeps three digits of the ratio.
    rep.num("server_over_plain_pct", median(ratios) * 100.0);
    if let Some(max) = rounds.iter().filter_map(|r| r.0.rss_extra_kib).max() {
        rep.int("server_rss_extra_kib", max);
    }
}

/// Loads `n` contacts owned by `owner` through a server-role connection: server Updates
/// with clocks 1..=n, then a Barrier; returns the seconds until its 200.
fn load(target: SocketAddr, owner: &str, n: u32) -> std::io::Result<f64> {
    let start = Instant::now();
    let s = connect(target)?;
    let mut w = BufWriter::with_capacity(1 << 20, s.try_clone()?);
    w.write_all(&hello(Role::Server)?)?;
    let mut rec = [0u8; SERVER_RECORD_LEN];
    for i in 0..n {
        let (contact, phone) = contact_of(i);
        server_update(i + 1, owner, &contact, &phone, &mut rec)?;
        w.write_all(&rec)?;
    }
    w.write_all(&[tcp::CMD_BARRIER])?;
    w.flush()?;
    let status = read_status(&mut &s)?;
    if status != 200 {
        return Err(std::io::Error::other(format!(
            "the server did not confirm the load: status {status} (serve with \
             --allow-peer 127.0.0.1/32 --plain-peers)"
        )));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// One server Update (`0x01 [clock][fields 532]`), the same bytes as an AskForUpdate record.
fn server_update(
    clock: u32,
    username: &str,
    contact: &str,
    phone: &str,
    out: &mut [u8],
) -> std::io::Result<()> {
    ServerCommand::Update {
        clock,
        fields: ContactFields {
            username,
            contact,
            phone,
        },
    }
    .emit(out)
    .map(|_| ())
    .map_err(|e| std::io::Error::other(e.to_string()))
}

/// A connection to `target` with the bench's timeouts.
fn connect(target: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The hello of `role`, named `bench`.
fn hello(role: Role) -> std::io::Result<[u8; tcp::HELLO_LEN]> {
    let mut h = [0u8; tcp::HELLO_LEN];
    Hello {
        role,
        name: "bench",
    }
    .emit(&mut h)
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(h)
}

/// Reads one status frame (all the load expects back); returns its status.
fn read_status(s: &mut &TcpStream) -> std::io::Result<u16> {
    let mut buf = Vec::new();
    loop {
        let framed =
            StatusFrame::frame_len(&buf).map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(n) = framed {
            return StatusFrame::parse(&buf[..n])
                .map(|f| f.status)
                .map_err(|e| std::io::Error::other(e.to_string()));
        }
        let mut chunk = [0u8; 512];
        let got = s.read(&mut chunk)?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// AskForUpdate on a new server-role connection, read whole.
fn ask_for_update(target: SocketAddr, pid: Option<u32>) -> std::io::Result<Streamed> {
    let mut s = connect(target)?;
    s.write_all(&hello(Role::Server)?)?;
    timed_read(&mut s, &[tcp::CMD_ASK_FOR_UPDATE], SERVER_RECORD_LEN, pid)
}

/// ListAll on a new client-role connection that proved `id`'s key, read whole.
fn list_all(target: SocketAddr, id: &Identity, pid: Option<u32>) -> std::io::Result<Streamed> {
    let cl = ContactsClient::connect_as(target, id, Duration::from_secs(5))?;
    let (mut s, rest) = cl.into_parts()?;
    if !rest.is_empty() {
        return Err(std::io::Error::other(
            "bytes nobody asked for before ListAll",
        ));
    }
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut req = Vec::new();
    ClientCommand::ListAll
        .append_to(&mut req)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    timed_read(&mut s, &req, CLIENT_RECORD_LEN, pid)
}

/// Writes `request`, then reads `[count]` and `count` records of `rec_len` bytes; times it
/// and, with `pid`, samples the server's VmRSS meanwhile.
fn timed_read(
    s: &mut TcpStream,
    request: &[u8],
    rec_len: usize,
    pid: Option<u32>,
) -> std::io::Result<Streamed> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let done = &done;
        let sampler = pid.map(|p| scope.spawn(move || sample_rss(p, done)));
        let read = read_answer(s, request, rec_len);
        done.store(true, Ordering::Relaxed);
        let rss_extra_kib = sampler.and_then(|h| h.join().ok().flatten());
        let (secs, count) = read?;
        Ok(Streamed {
            secs,
            count,
            rss_extra_kib,
        })
    })
}

/// The largest rise of `pid`'s VmRSS over its first reading until `done`, KiB.
fn sample_rss(pid: u32, done: &AtomicBool) -> Option<u64> {
    let first = rss_kib(pid, "VmRSS")?;
    let mut max = first;
    while !done.load(Ordering::Relaxed) {
        max = max.max(rss_kib(pid, "VmRSS").unwrap_or(0));
        std::thread::sleep(RSS_EVERY);
    }
    Some(max - first)
}

/// Writes `request` and reads an answer of `[count]` + `count` x `rec_len` bytes; returns
/// the seconds from the write to the last byte, and the count.
fn read_answer(s: &mut TcpStream, request: &[u8], rec_len: usize) -> std::io::Result<(f64, u32)> {
    let start = Instant::now();
    s.write_all(request)?;
    let mut count = [0u8; COUNT_LEN];
    s.read_exact(&mut count)?;
    let count = tcp::parse_count(&count).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut left = u64::from(count) * rec_len as u64;
    let mut buf = vec![0u8; READ_BUF];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = s.read(&mut buf[..want])?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= got as u64;
    }
    Ok((start.elapsed().as_secs_f64(), count))
}

/// The baseline: a thread listening on loopback answers one request byte with `[count]` and
/// `count` records of `rec_len` bytes from a prebuilt buffer, in [`PLAIN_WRITE`]-byte writes;
/// read by [`read_answer`] as the server's answer is.
fn plain(count: u32, rec_len: usize) -> std::io::Result<Streamed> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let records = prebuilt(rec_len)?;
    std::thread::scope(|scope| {
        let sender = scope.spawn(move || send_plain(&l, count, &records));
        let mut s = connect(addr)?;
        let read = read_answer(&mut s, &[tcp::CMD_ASK_FOR_UPDATE], rec_len);
        let sent = sender
            .join()
            .map_err(|_| std::io::Error::other("the plain sender panicked"))?;
        sent?;
        let (secs, got) = read?;
        Ok(Streamed {
            secs,
            count: got,
            rss_extra_kib: None,
        })
    })
}

/// [`PREBUILT`] records of `rec_len` bytes (server records for 537, client records for 533).
fn prebuilt(rec_len: usize) -> std::io::Result<Vec<u8>> {
    let owner = "0".repeat(64);
    let mut buf = vec![0u8; PREBUILT * rec_len];
    for (i, rec) in buf.chunks_mut(rec_len).enumerate() {
        let (contact, phone) = contact_of(i as u32);
        if rec_len == SERVER_RECORD_LEN {
            server_update(i as u32 + 1, &owner, &contact, &phone, rec)?;
        } else {
            let fields = ContactFields {
                username: &owner,
                contact: &contact,
                phone: &phone,
            };
            tcp::emit_client_record(&fields, rec)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
    }
    Ok(buf)
}

/// Accepts one connection, waits for its request byte and sends the answer in
/// [`PLAIN_WRITE`]-byte writes.
fn send_plain(l: &TcpListener, count: u32, records: &[u8]) -> std::io::Result<()> {
    let (mut s, _) = l.accept()?;
    s.set_nodelay(true)?;
    let mut req = [0u8; 1];
    s.read_exact(&mut req)?;
    let mut head = [0u8; COUNT_LEN];
    emit_count(count, &mut head).map_err(|e| std::io::Error::other(e.to_string()))?;
    s.write_all(&head)?;
    let rec_len = records.len() / PREBUILT;
    let mut left = u64::from(count) * rec_len as u64;
    let mut at = 0;
    while left > 0 {
        let n = PLAIN_WRITE
            .min(records.len() - at)
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        s.write_all(&records[at..at + n])?;
        at = (at + n) % records.len();
        left -= n as u64;
    }
    Ok(())
}
