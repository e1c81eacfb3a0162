//! The crash-safety campaign (docs/SECURITY.md, docs/PROTOCOL.md §8.8): the real server,
//! on its SQLite store, SIGKILLed at a seeded random moment while a client streams contact
//! Updates and Barriers; after each restart every write a Barrier acknowledged is there,
//! and the journal is lines 1 to its head, each exactly once.
//!
//! `RDV_CRASH_RUNS` sets the number of runs (default 10, so the suite stays quick; the
//! campaign in the closing notes runs 200). Each run starts from an empty data directory.

use crate::common::{bin, Server};
use rendezvous::client::contacts::ContactsClient;
use rendezvous::sim::Rng;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
/// Updates between two Barriers.
const BATCH: usize = 50;

fn serve(dir: &Path) -> Server {
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--allow-peer", "127.0.0.1/32", "--open-contacts"])
        // The seed's clear-text server role, spoken below (docs/PROTOCOL.md §8.19).
        .arg("--plain-peers");
    Server::spawn("crash-server", cmd)
}

/// Writes batches of Updates, each followed by a Barrier, until the connection breaks;
/// every batch whose Barrier was answered 200 goes into `acked` (contact -> phone).
fn write_until_killed(addr: SocketAddr, run: usize, acked: &Mutex<HashMap<String, String>>) {
    let Ok(mut c) = ContactsClient::connect(addr, "crash-writer", T) else {
        return;
    };
    for b in 0.. {
        let batch: Vec<(String, String)> = (0..BATCH)
            .map(|i| (format!("r{run:03}-{b:05}-{i:02}"), format!("{b}{i:02}")))
            .collect();
        for (contact, phone) in &batch {
            if c.update("crash", contact, phone).is_err() {
                return;
            }
        }
        if c.barrier().is_err() {
            return;
        }
        acked.lock().expect("lock").extend(batch);
    }
}

/// `journal=ID:HEAD` of the server's status.
fn journal_of(addr: SocketAddr) -> (u64, u64) {
    let text = ContactsClient::connect(addr, "crash-status", T)
        .and_then(|mut c| c.status())
        .expect("status");
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("journal="))
        .expect("a journal= line");
    let (id, head) = v.split_once(':').expect("ID:HEAD");
    (
        u64::from_str_radix(id, 16).expect("hex id"),
        head.parse().expect("head"),
    )
}

/// Every line number of journal `id`, read with JournalSince (19) pages of 4096 on a
/// server-role connection: `[19][count u32]` then `count` 545-byte JournalUpdates.
fn journal_lines(addr: SocketAddr, id: u64, head: u64) -> Vec<u64> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut hello = vec![1u8];
    hello.extend_from_slice(&[0u8; 256]);
    s.write_all(&hello).expect("hello");
    let mut lines = Vec::new();
    let mut since = 0u64;
    while since < head {
        let mut ask = vec![19u8];
        ask.extend_from_slice(&id.to_be_bytes());
        ask.extend_from_slice(&since.to_be_bytes());
        ask.extend_from_slice(&4096u32.to_be_bytes());
        s.write_all(&ask).expect("JournalSince");
        let mut top = [0u8; 5];
        s.read_exact(&mut top).expect("answer");
        assert_eq!(top[0], 19, "not a JournalSince answer: {top:02x?}");
        let count = u32::from_be_bytes([top[1], top[2], top[3], top[4]]);
        assert!(count > 0, "no line after {since} below the head {head}");
        let mut frame = [0u8; 545];
        for _ in 0..count {
            s.read_exact(&mut frame).expect("JournalUpdate");
            let line = u64::from_be_bytes(frame[1..9].try_into().expect("8 bytes"));
            lines.push(line);
            since = line;
        }
    }
    lines
}

/// One run: write, SIGKILL after `kill_ms`, restart, check. Returns (acknowledged
/// writes, restart time).
fn one_run(run: usize, kill_ms: u64) -> (usize, Duration) {
    let tmp = tempfile::Builder::new()
        .prefix("rdv-crash-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path().join("data");
    let server = serve(&dir);
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let writer = {
        let (addr, acked) = (server.addr, Arc::clone(&acked));
        thread::spawn(move || write_until_killed(addr, run, &acked))
    };
    // The kill moment is the point of the test, not a wait for an event.
    thread::sleep(Duration::from_millis(kill_ms));
    let Server { mut proc, .. } = server;
    proc.kill();
    writer.join().expect("writer");
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));

    let started = Instant::now();
    let server = serve(&dir);
    let restart = started.elapsed();
    let mut listed = HashMap::new();
    ContactsClient::connect(server.addr, "crash-reader", T)
        .and_then(|mut c| {
            c.list_each(|_, contact, phone| {
                listed.insert(contact.to_string(), phone.to_string());
            })
        })
        .expect("ListAll after the restart");
    for (contact, phone) in &acked {
        assert_eq!(
            listed.get(contact),
            Some(phone),
            "run {run} (kill at {kill_ms} ms): acknowledged write {contact} lost"
        );
    }
    let (id, head) = journal_of(server.addr);
    assert!(
        head >= acked.len() as u64,
        "run {run}: journal head {head} below {} acknowledged writes",
        acked.len()
    );
    let lines = journal_lines(server.addr, id, head);
    let want: Vec<u64> = (1..=head).collect();
    assert!(
        lines == want,
        "run {run}: the journal is not lines 1..={head} once each ({} lines read)",
        lines.len()
    );
    (acked.len(), restart)
}

#[test]
fn acknowledged_writes_and_the_journal_survive_sigkill_at_random_moments() {
    let runs: usize = std::env::var("RDV_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut total = 0;
    let mut restarts = Vec::new();
    for run in 0..runs {
        // 30 to 300 ms into the writes, the same moments on every run of the suite.
        let kill_ms = Rng::new(run as u64).range(30, 300);
        let (acked, restart) = one_run(run, kill_ms);
        total += acked;
        restarts.push(restart);
    }
    restarts.sort();
    let median = restarts
        .get(restarts.len() / 2)
        .copied()
        .unwrap_or_default();
    let worst = restarts.last().copied().unwrap_or_default();
    println!(
        "crash campaign: {runs} SIGKILLs, {total} acknowledged writes, 0 lost, journals \
         gap-free; restart to listening: median {median:.2?}, worst {worst:.2?}"
    );
}
