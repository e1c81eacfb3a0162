//! Tests of the contact store, run against both implementations (RAM-only and SQLite):
//! last-writer-wins merges, the clock, bytewise order, snapshots and paging; then SQLite's
//! durability (reopen, SIGKILL mid-write) and a 1,000,000-contact streaming check. The
//! journal and cursors have their own tests in `tests/journal.rs`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Instant;

use rendezvous::store::{Contact, MemoryStore, Snapshot, SqliteStore, Store, Write};

/// Runs `test` on a fresh [`MemoryStore`] and on a fresh [`SqliteStore`] in a temporary
/// directory; `test` gets the implementation's name for its messages.
fn each(test: impl Fn(&str, &mut dyn Store)) {
    let mut mem = MemoryStore::new();
    test("memory", &mut mem);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sql = SqliteStore::open(dir.path()).expect("open sqlite store");
    test("sqlite", &mut sql);
}

fn contact(username: &str, contact: &str, phone: &str, clock: u32) -> Contact {
    Contact {
        username: username.into(),
        contact: contact.into(),
        phone: phone.into(),
        clock,
    }
}

fn merge(username: &str, c: &str, phone: &str, clock: u32) -> Write {
    Write::Merge(contact(username, c, phone, clock))
}

/// Applies `batch`, returning the `changed` vector.
fn apply(store: &mut dyn Store, batch: &[Write]) -> Vec<bool> {
    let mut changed = Vec::new();
    store.apply(batch, &mut changed).expect("apply");
    changed
}

/// Reads a whole snapshot with pages of `page` records.
fn read_all(snap: &mut dyn Snapshot, page: usize) -> Vec<Contact> {
    let mut out = Vec::new();
    let mut calls = 0usize;
    loop {
        let before = out.len();
        let more = snap.next_page(page, &mut out).expect("next_page");
        assert!(out.len() - before <= page, "page larger than asked");
        calls += 1;
        assert!(calls <= out.len() + 2, "paging does not progress");
        if !more {
            return out;
        }
    }
}

fn all(store: &dyn Store) -> Vec<Contact> {
    let mut snap = store.snapshot().expect("snapshot");
    let rows = read_all(&mut *snap, 100);
    assert_eq!(rows.len() as u64, snap.count());
    rows
}

#[test]
fn higher_clock_wins() {
    each(|name, s| {
        assert_eq!(apply(s, &[merge("ann", "bob", "222", 5)]), [true], "{name}");
        assert_eq!(apply(s, &[merge("ann", "bob", "111", 6)]), [true], "{name}");
        assert_eq!(
            s.get("ann", "bob").unwrap(),
            Some(contact("ann", "bob", "111", 6))
        );
    });
}

#[test]
fn equal_clock_larger_phone_wins() {
    each(|name, s| {
        assert_eq!(apply(s, &[merge("ann", "bob", "123", 5)]), [true], "{name}");
        // "1234" > "123" (a longer text with the same prefix is larger, as padded fields are).
        assert_eq!(
            apply(s, &[merge("ann", "bob", "1234", 5)]),
            [true],
            "{name}"
        );
        assert_eq!(
            apply(s, &[merge("ann", "bob", "123", 5)]),
            [false],
            "{name}"
        );
        assert_eq!(
            apply(s, &[merge("ann", "bob", "0999", 5)]),
            [false],
            "{name}"
        );
        assert_eq!(apply(s, &[merge("ann", "bob", "2", 5)]), [true], "{name}");
        assert_eq!(
            s.get("ann", "bob").unwrap(),
            Some(contact("ann", "bob", "2", 5))
        );
    });
}

#[test]
fn equal_record_is_no_change() {
    each(|name, s| {
        assert_eq!(apply(s, &[merge("ann", "bob", "1", 5)]), [true], "{name}");
        assert_eq!(apply(s, &[merge("ann", "bob", "1", 5)]), [false], "{name}");
        assert_eq!(all(s), [contact("ann", "bob", "1", 5)], "{name}");
    });
}

#[test]
fn lower_clock_is_no_change() {
    each(|name, s| {
        assert_eq!(apply(s, &[merge("ann", "bob", "1", 5)]), [true], "{name}");
        assert_eq!(apply(s, &[merge("ann", "bob", "9", 4)]), [false], "{name}");
        assert_eq!(apply(s, &[merge("ann", "bob", "9", 0)]), [false], "{name}");
        assert_eq!(
            s.get("ann", "bob").unwrap(),
            Some(contact("ann", "bob", "1", 5))
        );
        assert_eq!(s.get("ann", "nobody").unwrap(), None, "{name}");
        assert_eq!(s.get("bob", "ann").unwrap(), None, "{name}");
    });
}

#[test]
fn changed_vector_follows_merges_in_order() {
    each(|name, s| {
        let mut changed = vec![true, false]; // earlier content is kept
        let batch = [
            merge("a", "x", "1", 1),
            Write::Clock(5),
            merge("a", "x", "1", 1), // equal to the one just merged in this batch
            merge("a", "x", "1", 2),
            merge("b", "x", "1", 1),
            Write::Clock(2),
            merge("a", "x", "zzz", 1), // loses to clock 2
        ];
        s.apply(&batch, &mut changed).unwrap();
        assert_eq!(
            changed,
            [true, false, true, false, true, true, false],
            "{name}"
        );
        assert_eq!(s.clock().unwrap(), 5, "{name}");
        assert_eq!(
            all(s),
            [contact("a", "x", "1", 2), contact("b", "x", "1", 1)]
        );
        // An empty batch changes nothing and pushes nothing.
        s.apply(&[], &mut changed).unwrap();
        assert_eq!(changed.len(), 7, "{name}");
    });
}

#[test]
fn refused_batch_applies_nothing() {
    let long_name = "n".repeat(257);
    let max_name = "é".repeat(128); // 256 bytes: the largest allowed
    let bad = [
        contact(&long_name, "x", "1", 1),
        contact("x", &long_name, "1", 1),
        contact("x", "y", &"1".repeat(21), 1),
        contact("x\0y", "y", "1", 1),
        contact("x", "y\0", "1", 1),
        contact("x", "y", "1\0", 1),
    ];
    each(|name, s| {
        for b in &bad {
            let mut changed = vec![true];
            let batch = [
                merge("ok", "ok", "1", 1),
                Write::Clock(9),
                Write::Merge(b.clone()),
            ];
            let err = s.apply(&batch, &mut changed).expect_err("must refuse");
            assert!(err.to_string().starts_with("store: "), "{name}: {err}");
            assert_eq!(
                changed,
                [true],
                "{name}: changed touched by a refused batch"
            );
            assert_eq!(s.get("ok", "ok").unwrap(), None, "{name}");
            assert_eq!(s.clock().unwrap(), 0, "{name}");
        }
        let limit = contact(&max_name, &max_name, &"9".repeat(20), 1);
        assert_eq!(apply(s, &[Write::Merge(limit.clone())]), [true], "{name}");
        assert_eq!(s.get(&max_name, &max_name).unwrap(), Some(limit), "{name}");
        // Empty fields are valid text too.
        assert_eq!(apply(s, &[merge("", "", "", 0)]), [true], "{name}");
        assert_eq!(
            s.get("", "").unwrap(),
            Some(contact("", "", "", 0)),
            "{name}"
        );
    });
}

#[test]
fn clock_is_raised_never_lowered() {
    each(|name, s| {
        assert_eq!(s.clock().unwrap(), 0, "{name}");
        apply(s, &[Write::Clock(5)]);
        assert_eq!(s.clock().unwrap(), 5, "{name}");
        apply(s, &[Write::Clock(3)]);
        assert_eq!(s.clock().unwrap(), 5, "{name}");
        apply(s, &[Write::Clock(7), Write::Clock(6)]);
        assert_eq!(s.clock().unwrap(), 7, "{name}");
        // Merges do not touch the clock: the caller stamps and raises it explicitly.
        apply(s, &[merge("a", "b", "1", 100)]);
        assert_eq!(s.clock().unwrap(), 7, "{name}");
        apply(s, &[Write::Clock(u32::MAX)]);
        assert_eq!(s.clock().unwrap(), u32::MAX, "{name}");
        apply(s, &[Write::Clock(0)]);
        assert_eq!(s.clock().unwrap(), u32::MAX, "{name}");
    });
}

#[test]
fn order_is_bytewise() {
    let names = [
        "b", "a", "ab", "abc", "", "Z", "z", "é", "e", "ä", "日本", "日", "a\u{7f}", "a b",
        "\u{1}", "Ω", "😀", "ａ",
    ];
    each(|name, s| {
        let mut batch = Vec::new();
        for (i, u) in names.iter().enumerate() {
            for c in ["x", "", "xy", "é", "X"] {
                batch.push(merge(u, c, &i.to_string(), i as u32));
            }
        }
        apply(s, &batch);
        let got: Vec<(Vec<u8>, Vec<u8>)> = all(s)
            .into_iter()
            .map(|c| (c.username.into_bytes(), c.contact.into_bytes()))
            .collect();
        let mut want = got.clone();
        want.sort();
        want.dedup();
        assert_eq!(got.len(), names.len() * 5, "{name}");
        assert_eq!(
            got, want,
            "{name}: not in bytewise (username, contact) order"
        );
        // Spot checks: a prefix sorts first; "Z" (0x5A) before "a"; "é" (C3 A9) after "z".
        let pos = |u: &str, c: &str| {
            got.iter()
                .position(|k| k.0 == u.as_bytes() && k.1 == c.as_bytes())
                .unwrap()
        };
        assert!(pos("", "") == 0, "{name}");
        assert!(pos("a", "xy") < pos("ab", ""), "{name}");
        assert!(pos("Z", "x") < pos("a", ""), "{name}");
        assert!(pos("z", "x") < pos("é", ""), "{name}");
        assert!(pos("日", "X") < pos("日本", ""), "{name}");
    });
}

#[test]
fn empty_store_snapshot() {
    each(|name, s| {
        let mut snap = s.snapshot().unwrap();
        assert_eq!(snap.count(), 0, "{name}");
        let mut out = Vec::new();
        assert!(!snap.next_page(10, &mut out).unwrap(), "{name}");
        assert!(!snap.next_page(0, &mut out).unwrap(), "{name}");
        assert!(out.is_empty(), "{name}");
    });
}

#[test]
fn snapshot_is_unaffected_by_later_writes() {
    each(|name, s| {
        let old: Vec<Write> = (0..500)
            .map(|i| merge(&format!("u{i:04}"), "c", "old", 10))
            .collect();
        apply(s, &old);
        apply(s, &[Write::Clock(10)]);
        let mut snap = s.snapshot().unwrap();
        // Read one page before the writes, the rest after.
        let mut seen = Vec::new();
        assert!(snap.next_page(7, &mut seen).unwrap(), "{name}");
        let newer: Vec<Write> = (0..500)
            .map(|i| merge(&format!("u{i:04}"), "c", "new", 11))
            .chain((0..500).map(|i| merge(&format!("v{i:04}"), "c", "new", 11)))
            .chain((0..500).map(|i| merge(&format!("u{i:04}"), "", "new", 11)))
            .collect();
        for chunk in newer.chunks(100) {
            apply(s, chunk);
        }
        assert_eq!(snap.count(), 500, "{name}");
        seen.extend(read_all(&mut *snap, 13));
        let want: Vec<Contact> = (0..500)
            .map(|i| contact(&format!("u{i:04}"), "c", "old", 10))
            .collect();
        assert_eq!(seen, want, "{name}");
        // The store itself moved on, and a new snapshot sees that.
        assert_eq!(s.snapshot().unwrap().count(), 1500, "{name}");
        assert_eq!(s.get("u0000", "c").unwrap().unwrap().phone, "new", "{name}");
    });
}

#[test]
fn snapshot_can_be_read_on_another_thread_while_writing() {
    each(|name, s| {
        let rows: Vec<Write> = (0..2000)
            .map(|i| merge(&format!("{i:05}"), "c", "p", 1))
            .collect();
        apply(s, &rows);
        let snap = s.snapshot().unwrap();
        let reader = std::thread::spawn(move || {
            let mut snap = snap;
            read_all(&mut *snap, 17)
        });
        for i in 0..50 {
            apply(
                s,
                &[
                    merge(&format!("{i:05}"), "c", "q", 2),
                    merge("new", &i.to_string(), "p", 1),
                ],
            );
        }
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 2000, "{name}");
        assert!(
            got.iter().all(|c| c.phone == "p" && c.username != "new"),
            "{name}"
        );
    });
}

#[test]
fn every_page_size_yields_every_row_once() {
    each(|name, s| {
        let batch: Vec<Write> = (0..257u32)
            .map(|i| {
                merge(
                    &format!("user{}", i % 17),
                    &format!("c{i}"),
                    &i.to_string(),
                    i,
                )
            })
            .collect();
        apply(s, &batch);
        let mut want: Vec<Contact> = batch
            .iter()
            .map(|w| match w {
                Write::Merge(c) => c.clone(),
                Write::Clock(_) | Write::Cursor { .. } | Write::NodeList(_) => unreachable!(),
            })
            .collect();
        want.sort_by(|a, b| (&a.username, &a.contact).cmp(&(&b.username, &b.contact)));
        for page in [1, 2, 3, 7, 64, 256, 257, 258, 100_000, usize::MAX] {
            let mut snap = s.snapshot().unwrap();
            assert_eq!(snap.count(), 257, "{name}");
            assert_eq!(read_all(&mut *snap, page), want, "{name}: page size {page}");
        }
        // Interleaved empty pages do not disturb the cursor.
        let mut snap = s.snapshot().unwrap();
        let mut out = Vec::new();
        let mut more = true;
        while more {
            assert!(snap.next_page(0, &mut out).unwrap(), "{name}");
            more = snap.next_page(50, &mut out).unwrap();
        }
        assert_eq!(out, want, "{name}");
        assert!(
            !snap.next_page(50, &mut out).unwrap(),
            "{name}: exhausted stays exhausted"
        );
        assert_eq!(out.len(), 257, "{name}");
    });
}

/// A tiny deterministic generator (xorshift64*), so the model test needs no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn merges_match_wins_over_model() {
    let phones = ["", "1", "10", "2", "19", "99", "٣"];
    each(|name, s| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut model: BTreeMap<(String, String), Contact> = BTreeMap::new();
        let mut clock = 0u32;
        for _ in 0..300 {
            let mut batch = Vec::new();
            let mut want_changed = Vec::new();
            for _ in 0..rng.below(8) {
                if rng.below(5) == 0 {
                    let c = rng.below(40) as u32;
                    clock = clock.max(c);
                    batch.push(Write::Clock(c));
                    continue;
                }
                let new = contact(
                    ["a", "b", "ab"][rng.below(3) as usize],
                    ["x", "y"][rng.below(2) as usize],
                    phones[rng.below(phones.len() as u64) as usize],
                    rng.below(6) as u32,
                );
                let key = (new.username.clone(), new.contact.clone());
                let wins = match model.get(&key) {
                    None => true,
                    Some(old) => new.wins_over(old),
                };
                if wins {
                    model.insert(key, new.clone());
                }
                want_changed.push(wins);
                batch.push(Write::Merge(new));
            }
            assert_eq!(apply(s, &batch), want_changed, "{name}");
        }
        assert_eq!(all(s), model.into_values().collect::<Vec<_>>(), "{name}");
        assert_eq!(s.clock().unwrap(), clock, "{name}");
    });
}

#[test]
fn sqlite_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    {
        let mut s = crate::common::open_sqlite(&data);
        assert_eq!(s.path(), data.join("rendezvous.db"));
        apply(
            &mut s,
            &[
                merge("ann", "bob", "1", 3),
                merge("ann", "cy", "2", 4),
                Write::Clock(4),
            ],
        );
        apply(&mut s, &[merge("ann", "bob", "5", 5), Write::Clock(5)]);
    }
    let mut s = crate::common::open_sqlite(&data);
    assert_eq!(s.clock().unwrap(), 5);
    assert_eq!(
        all(&s),
        [contact("ann", "bob", "5", 5), contact("ann", "cy", "2", 4)]
    );
    // And the merge rules still hold against what was persisted.
    assert_eq!(apply(&mut s, &[merge("ann", "bob", "4", 5)]), [false]);
}

#[test]
fn sqlite_refuses_bad_directories() {
    let dir = tempfile::tempdir().unwrap();
    let held = crate::common::open_sqlite(dir.path());
    let err = SqliteStore::open(dir.path()).expect_err("second open of one directory");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(held);
    // Released on drop (retried a moment: see `open_sqlite`).
    crate::common::open_sqlite(dir.path());

    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file).expect_err("a file is not a directory");
    assert!(err.to_string().contains("data directory"), "{err}");

    let junk = tempfile::tempdir().unwrap();
    std::fs::write(junk.path().join("rendezvous.db"), vec![0x55u8; 8192]).unwrap();
    let err = SqliteStore::open(junk.path()).expect_err("not a database");
    assert!(err.to_string().contains("rendezvous.db"), "{err}");
}

/// Env var naming the data directory of [`crash_child`].
const CRASH_DIR: &str = "RENDEZVOUS_TEST_CRASH_DIR";
const CRASH_BATCHES: u32 = 2000;

/// Batch `i` of the crash test: three contacts and the clock, all stamped `i + 1`.
fn crash_batch(i: u32) -> Vec<Write> {
    let user = format!("user{i:05}");
    let mut b: Vec<Write> = ["a", "b", "c"]
        .iter()
        .map(|c| merge(&user, c, &i.to_string(), i + 1))
        .collect();
    b.push(Write::Clock(i + 1));
    b
}

/// The child of [`sqlite_acknowledged_writes_survive_sigkill`]: applies the batches and
/// prints `ACK i` once `apply` of batch `i` has returned. Does nothing unless started by
/// the parent (it is `#[ignore]`d and needs the env var).
#[test]
#[ignore = "helper process for sqlite_acknowledged_writes_survive_sigkill"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let mut s = crate::common::open_sqlite(std::path::Path::new(&dir));
    let stdout = std::io::stdout();
    for i in 0..CRASH_BATCHES {
        apply(&mut s, &crash_batch(i));
        let mut out = stdout.lock();
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sqlite_acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Option<u32> = None;
    let ack = |line: &str| {
        line.strip_prefix("ACK ")
            .map(|n| n.trim().parse::<u32>().unwrap())
    };
    for line in lines.by_ref() {
        if let Some(i) = ack(&line.unwrap()) {
            acked = Some(i);
            if i >= CRASH_BATCHES / 8 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Acknowledgements still in the pipe were printed after `apply` returned: count them too.
    for line in lines {
        if let Some(i) = ack(&line.unwrap()) {
            acked = Some(i);
        }
    }
    let acked = acked.expect("child acknowledged nothing");

    let s = crate::common::open_sqlite(dir.path());
    let rows = all(&s);
    // Whole batches only, a prefix of them, and at least every acknowledged one.
    assert_eq!(rows.len() % 3, 0, "a batch was applied in part");
    let present = (rows.len() / 3) as u32;
    assert!(
        present > acked,
        "acknowledged batch {acked} lost ({present} present)"
    );
    let want: Vec<Contact> = (0..present)
        .flat_map(|i| match crash_batch(i).as_slice() {
            [Write::Merge(a), Write::Merge(b), Write::Merge(c), _] => {
                [a.clone(), b.clone(), c.clone()]
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(rows, want);
    assert_eq!(s.clock().unwrap(), present);
    eprintln!("crash test: killed after ack {acked} of {CRASH_BATCHES}; {present} batches present");
}

/// A field of `/proc/self/status` in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

const MILLION: u32 = 1_000_000;

/// Record number `j` of the streaming test; its key sorts at position `j`.
fn million_contact(j: u32) -> Contact {
    contact(
        &format!("user-{:06}@example.org", j / 8),
        &format!("contact {}", j % 8),
        &format!("+1555{j:07}"),
        j % 1000 + 1,
    )
}

#[test]
fn sqlite_streams_a_million_contacts_in_bounded_memory() {
    // The peak RSS is the whole process's: the measurement runs in a test process of its
    // own, so no test running beside it in this one can raise the peak.
    if std::env::var_os("RDV_MEASURE_ALONE").is_none() {
        let name = "store::sqlite_streams_a_million_contacts_in_bounded_memory";
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env("RDV_MEASURE_ALONE", "1")
            .output()
            .expect("run the measurement alone");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "the measurement failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = crate::common::open_sqlite(dir.path());
    let t = Instant::now();
    // Insert in a scrambled order (7919 is coprime with 10^6), 50,000 per transaction.
    for start in (0..MILLION).step_by(50_000) {
        let batch: Vec<Write> = (start..start + 50_000)
            .map(|i| Write::Merge(million_contact((i as u64 * 7919 % MILLION as u64) as u32)))
            .collect();
        let changed = apply(&mut s, &batch);
        assert!(changed.iter().all(|&c| c));
    }
    let insert = t.elapsed();

    let t = Instant::now();
    let mut snap = s.snapshot().unwrap();
    let pinned = t.elapsed();
    assert_eq!(snap.count(), u64::from(MILLION));
    // Give the insert phase's freed heap back to the OS, so the streaming phase cannot hide
    // inside it, then reset the peak (VmHWM) to the current RSS so the figure is its own.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // glibc's malloc_trim has no safe binding (rustix makes system calls, not libc calls).
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases free heap memory; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = proc_status_kib("VmRSS");
    let hwm_before = proc_status_kib("VmHWM");
    let t = Instant::now();
    let mut page = Vec::with_capacity(1000);
    let mut next = 0u32;
    loop {
        page.clear();
        let more = snap.next_page(1000, &mut page).unwrap();
        for c in &page {
            assert_eq!(
                *c,
                million_contact(next),
                "row {next} out of order or wrong"
            );
            next += 1;
        }
        if !more {
            break;
        }
    }
    let stream = t.elapsed();
    let hwm_after = proc_status_kib("VmHWM");
    let rss_after = proc_status_kib("VmRSS");
    assert_eq!(next, MILLION);
    let base = if reset { rss_before } else { hwm_before };
    let grew_kib = hwm_after.saturating_sub(base);
    eprintln!(
        "1M contacts: insert {insert:.2?}, pin snapshot {pinned:.2?}, stream {stream:.2?}; \
         VmRSS before {rss_before} KiB, VmHWM before {hwm_before} KiB; after: VmHWM {hwm_after} KiB, \
         VmRSS {rss_after} KiB (peak reset: {reset}); streaming added {grew_kib} KiB"
    );
    assert!(
        grew_kib < 64 * 1024,
        "streaming grew the peak by {grew_kib} KiB"
    );
}
