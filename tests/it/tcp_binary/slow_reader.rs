//! A slow AskForUpdate reader of 1,000,000 contacts: the server's memory stays bounded and
//! other clients (TCP writes, a UDP registration) are not held up.

use super::{
    assert_alive, contacts, peer_conn, proc_status_kib, read_clock, record_fields, serve_cmd,
    start, ASK_FOR_UPDATE, BARRIER, T,
};
use rendezvous::client::Client;
use rendezvous::identity::{Identity, KeyAlgorithm};
use std::io::{BufWriter, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

const BIG: u32 = 1_000_000;

/// The i-th preloaded record (clock i + 1), in key order.
fn big_record(i: u32, out: &mut [u8; 537]) {
    out.fill(0);
    out[0] = 0x01;
    out[1..5].copy_from_slice(&(i + 1).to_be_bytes());
    let u = format!("user{:04}", i / 1000);
    let c = format!("contact{:04}", i % 1000);
    let p = format!("{i:011}");
    out[5..5 + u.len()].copy_from_slice(u.as_bytes());
    out[261..261 + c.len()].copy_from_slice(c.as_bytes());
    out[517..517 + p.len()].copy_from_slice(p.as_bytes());
}

/// Checks a streamed AskForUpdate answer (after the count) record by record against
/// [`big_record`], whatever the chunking of the reads.
#[derive(Default)]
struct RecordChecker {
    next: u32,
    carry: Vec<u8>,
}

impl RecordChecker {
    fn feed(&mut self, mut bytes: &[u8]) {
        let mut expect = [0u8; 537];
        while !bytes.is_empty() {
            let take = (537 - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < 537 {
                return;
            }
            assert!(self.next < BIG, "more records than the count");
            big_record(self.next, &mut expect);
            if self.carry[..] != expect[..] {
                panic!(
                    "record {} differs: got {:?}, want {:?}",
                    self.next,
                    record_fields(&self.carry),
                    record_fields(&expect)
                );
            }
            self.carry.clear();
            self.next += 1;
        }
    }
}

#[test]
fn slow_reader_bounded_memory() {
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("rdv-slow-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path().join("data");
    let extra = vec!["--allow-peer".to_string(), "127.0.0.1/32".to_string()];
    let mut server = start("server", || serve_cmd("127.0.0.1:0", Some(&dir), &extra));
    let pid = server.pid();

    // Load 1,000,000 contacts as a peer pushing server-role Updates, then a barrier.
    let mut loader = peer_conn(server.addr, "loader");
    loader
        .s
        .set_write_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    {
        let mut w = BufWriter::with_capacity(1 << 20, &loader.s);
        let mut rec = [0u8; 537];
        for i in 0..BIG {
            big_record(i, &mut rec);
            w.write_all(&rec).expect("load write");
        }
        w.write_all(&[BARRIER]).expect("load barrier");
        w.flush().expect("load flush");
    }
    let sent = t0.elapsed();
    let st = loader.read_status(Duration::from_secs(600));
    assert_eq!(st.status, 200, "load barrier: {st:?}");
    assert_eq!(st.request, BARRIER);
    let loaded = t0.elapsed();
    let hwm_load = proc_status_kib(pid, "VmHWM");
    let rss_before = proc_status_kib(pid, "VmRSS");
    eprintln!(
        "slow_reader: 1,000,000 contacts sent in {sent:.2?}, durable (barrier) after \
         {loaded:.2?}; server VmRSS {rss_before} KiB, VmHWM so far {hwm_load} KiB"
    );
    drop(loader);

    // Reset the server's peak RSS so that VmHWM measures the streaming phase alone.
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let hwm_before = proc_status_kib(pid, "VmHWM");
    let baseline = if reset {
        rss_before.max(hwm_before)
    } else {
        hwm_before
    };

    // The slow reader: AskForUpdate, then a trickle.
    let t_stream = Instant::now();
    let mut slow = peer_conn(server.addr, "slow-reader");
    slow.s.set_read_timeout(Some(T)).unwrap();
    slow.send(&[ASK_FOR_UPDATE]);
    let count = slow.read_u32(Duration::from_secs(60));
    assert_eq!(count, BIG, "AskForUpdate count");
    let t_count = t_stream.elapsed();

    // Meanwhile, other clients: an overwrite of a streamed key and a new key, each
    // confirmed by a barrier, and a UDP registration.
    let addr = server.addr;
    let side = thread::spawn(move || -> Vec<(String, Duration)> {
        let mut times = Vec::new();
        let mut c = contacts(addr, "side-client");
        for round in 0..5 {
            let t = Instant::now();
            c.update("user0000", "contact0000", &format!("new{round}"))
                .expect("side update");
            c.update("zzz-side", &format!("k{round}"), "1")
                .expect("side update");
            c.barrier().expect("side barrier");
            times.push((format!("update+barrier #{round}"), t.elapsed()));
        }
        let t = Instant::now();
        let id = Identity::generate(KeyAlgorithm::Ed25519, "side").expect("identity");
        let mut u = Client::new(addr, id, Some("127.0.0.1:0".parse().unwrap())).expect("udp");
        u.register(5, Duration::from_secs(2))
            .expect("UDP registration");
        times.push(("udp register".to_string(), t.elapsed()));
        times
    });

    let mut received: u64 = 4;
    let mut buf = vec![0u8; 16 * 1024];
    let mut stream_bytes: Vec<u8> = Vec::new();
    let trickle_start = Instant::now();
    let trickle_deadline = trickle_start + Duration::from_secs(60);
    while trickle_start.elapsed() < Duration::from_secs(3) || !side.is_finished() {
        assert!(
            Instant::now() < trickle_deadline,
            "the side clients did not finish within 60 s while a reader was slow"
        );
        let n = slow.read_full(&mut buf, Instant::now() + T);
        assert_eq!(n, buf.len(), "stream ended early");
        stream_bytes.extend_from_slice(&buf[..n]);
        received += n as u64;
        thread::sleep(Duration::from_millis(20));
    }
    let trickled = trickle_start.elapsed();
    let side_times = side.join().expect("side clients");
    for (what, d) in &side_times {
        assert!(
            *d < Duration::from_secs(10),
            "{what} took {d:?} while a reader was slow"
        );
    }
    let hwm_mid = proc_status_kib(pid, "VmHWM");

    // Now read the rest fast and check every record against what was loaded: the
    // snapshot predates the side writes, so key 0 keeps its old phone and no extra keys.
    let total = 4 + u64::from(BIG) * 537;
    let mut checker = RecordChecker::default();
    checker.feed(&stream_bytes);
    drop(stream_bytes);
    let t_fast = Instant::now();
    let mut big = vec![0u8; 1 << 20];
    while received < total {
        let want = big.len().min((total - received) as usize);
        let n = slow.read_full(&mut big[..want], Instant::now() + Duration::from_secs(60));
        assert!(n > 0, "stream closed after {received} of {total} bytes");
        checker.feed(&big[..n]);
        received += n as u64;
    }
    assert_eq!(
        (checker.next, checker.carry.len()),
        (BIG, 0),
        "records received"
    );
    let fast = t_fast.elapsed();
    let streamed = t_stream.elapsed();
    // Nothing follows the answer.
    slow.s
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut one = [0u8; 1];
    match slow.s.read(&mut one) {
        Ok(0) => panic!("the server closed the reader's connection after the answer"),
        Ok(_) => panic!(
            "unexpected byte after the AskForUpdate answer: {:#04x}",
            one[0]
        ),
        Err(_) => {}
    }

    let hwm_end = proc_status_kib(pid, "VmHWM");
    let rss_end = proc_status_kib(pid, "VmRSS");
    assert_alive(&mut server);
    let growth = hwm_end.saturating_sub(baseline);
    eprintln!(
        "slow_reader: memory (KiB): after load VmRSS {rss_before}, VmHWM {hwm_load}; peak \
         reset {}; VmHWM at stream start {hwm_before}, after the trickle {hwm_mid}, at the \
         end {hwm_end}; VmRSS at the end {rss_end}; growth while streaming {growth} KiB",
        if reset {
            "ok"
        } else {
            "NOT possible (HWM includes the load)"
        }
    );
    eprintln!(
        "slow_reader: timings: load sent {sent:.2?}, durable {loaded:.2?}; count after \
         {t_count:.2?}; trickle {trickled:.2?}; rest at full speed {fast:.2?}; whole stream \
         {streamed:.2?}; side clients: {side_times:?}; test total {:.2?}",
        t0.elapsed()
    );
    assert!(
        growth < 128 * 1024,
        "server peak RSS grew by {growth} KiB while streaming 1,000,000 contacts to a slow reader"
    );

    // The side writes are visible after the stream.
    let mut p = peer_conn(server.addr, "clock-probe");
    let clock = read_clock(&mut p);
    assert!(
        clock >= BIG + 10,
        "clock {clock} after 1,000,000 loads and 10 writes"
    );
}
