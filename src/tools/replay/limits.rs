//! How many sockets a replay may open: bounded by the process's open-files limit, which is
//! raised to its hard limit first.

use super::{MAX_TCP_OPEN, MAX_UDP_SOCKETS};

/// Bounds on open sockets, from the file descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Most UDP sockets.
    pub(super) udp: usize,
    /// Most TCP connections open at once.
    pub(super) tcp: usize,
}

impl Limits {
    /// Leaves 64 descriptors for everything else; UDP gets at most half of the rest.
    pub(super) fn from_fd_limit(nofile: u64) -> Self {
        let avail = usize::try_from(nofile.saturating_sub(64))
            .unwrap_or(usize::MAX)
            .max(2);
        let udp = MAX_UDP_SOCKETS.min(avail / 2).max(1);
        let tcp = MAX_TCP_OPEN.min(avail - udp).max(1);
        Limits { udp, tcp }
    }
}

/// Raises the soft limit on open files to the hard limit (at most 65 536) and returns the
/// soft limit in force.
pub(super) fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    let want = lim.rlim_max.min(65_536);
    if lim.rlim_cur < want {
        let new = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            lim.rlim_cur = want;
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_fd_limit() {
        assert_eq!(
            Limits::from_fd_limit(65_536),
            Limits {
                udp: MAX_UDP_SOCKETS,
                tcp: MAX_TCP_OPEN
            }
        );
        let small = Limits::from_fd_limit(1024);
        assert_eq!(small.udp, 480);
        assert_eq!(small.tcp, 480);
        assert!(Limits::from_fd_limit(0).udp >= 1);
    }
}
