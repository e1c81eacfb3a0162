//! The process's open-files limit: raised to its hard limit at start, and the number of
//! TCP connections that leaves room for (docs/PROTOCOL.md §8.11).

/// Raises the soft limit on open files to the hard limit (at most 65 536) and returns the
/// soft limit in force afterwards (the old one when raising fails).
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // `None` is "unlimited".
    let lim = getrlimit(Resource::Nofile);
    let (current, maximum) = (
        lim.current.unwrap_or(u64::MAX),
        lim.maximum.unwrap_or(u64::MAX),
    );
    let want = maximum.min(65_536);
    if current >= want {
        return current;
    }
    let raised = Rlimit {
        current: Some(want),
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => want,
        Err(_) => current,
    }
}

/// Most TCP connections at once under an open-files limit of `nofile`: 4096, or fewer so
/// that half of what is left after 64 descriptors (sockets, the store's files, peer links)
/// stays for the store's read snapshots (one per streamed answer). At least 16.
pub fn max_tcp_conns(nofile: u64) -> usize {
    let half = usize::try_from(nofile.saturating_sub(64) / 2).unwrap_or(usize::MAX);
    half.clamp(16, 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_snapshots() {
        assert_eq!(max_tcp_conns(65_536), 4096);
        assert_eq!(max_tcp_conns(1024), 480);
        assert_eq!(max_tcp_conns(0), 16);
    }
}
