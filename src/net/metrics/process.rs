//! The process metrics every Prometheus client exports (CPU time, memory, descriptors, start
//! time), read from `/proc/self` on each scrape. prometheus-client has no process collector
//! and the `procfs` crate would be a large dependency for six numbers: the few lines of
//! `/proc` parsing are here.

use std::fs;

/// What the kernel says of this process, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ProcessStats {
    /// User and system CPU time, seconds.
    pub(super) cpu_seconds: f64,
    /// Resident set size, bytes.
    pub(super) resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub(super) virtual_bytes: u64,
    /// Open file descriptors.
    pub(super) open_fds: u64,
    /// The soft limit on open files (`None`: unlimited).
    pub(super) max_fds: Option<u64>,
    /// When the process started, Unix seconds.
    pub(super) start_time_seconds: f64,
}

/// The fields of `/proc/self/stat` these metrics use, in clock ticks and pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Reads this process's numbers; `None` where `/proc` is not there (not Linux).
pub(super) fn read() -> Option<ProcessStats> {
    let stat = parse_stat(&fs::read_to_string("/proc/self/stat").ok()?)?;
    let btime = parse_btime(&fs::read_to_string("/proc/stat").ok()?)?;
    let open_fds = fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
    let page = rustix::param::page_size() as u64;
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: stat.rss_pages.saturating_mul(page),
        virtual_bytes: stat.vsize,
        open_fds,
        max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
        start_time_seconds: btime as f64 + stat.starttime as f64 / ticks,
    })
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so the split is at the last `)`): fields 14, 15, 22, 23 and 24 of proc(5).
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: num(14)?,
        stime: num(15)?,
        starttime: num(22)?,
        vsize: num(23)?,
        rss_pages: num(24)?,
    })
}

/// The boot time (Unix seconds) from `/proc/stat`'s `btime` line.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    150 50 0 0 20 0 3 0 123456 104857600 2560 18446744073709551615";
        let s = parse_stat(line).expect("parsed");
        assert_eq!(
            s,
            Stat {
                utime: 150,
                stime: 50,
                starttime: 123_456,
                vsize: 104_857_600,
                rss_pages: 2560,
            }
        );
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_has_memory_descriptors_and_a_start_time() {
        let p = read().expect("/proc on Linux");
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.open_fds >= 3);
        assert!(p.start_time_seconds > 1_500_000_000.0);
        assert!(p.cpu_seconds >= 0.0);
    }
}
