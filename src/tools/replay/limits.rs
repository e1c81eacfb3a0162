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

pub(super) use crate::net::fdlimit::raise_fd_limit;

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
