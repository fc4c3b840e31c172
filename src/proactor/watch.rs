//! Crate-internal waits on fds the proactor does not own, such as the
//! pidfd through which `process` learns that its child exited: a one-shot
//! POLL for POLLIN on the ring, so `poll` wakes when it fires instead of
//! the caller polling on a timer.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::route;
use crate::error::{Error, Result};
use crate::ring::Ring;

/// A wait, made by `Proactor::watch_readable`, until an fd is readable.
/// The `poll` after it fires returns, and `Proactor::fired` then says so,
/// once. The ring holds its own reference to the file until the wait
/// completes or the proactor is dropped, so the fd may be closed at any
/// time. Crate-internal: `process` watches its children's pidfds with it.
#[derive(Debug)]
pub(crate) struct Watch(u32);

/// The proactor's watches: the next number, and those that fired and were
/// not yet asked about.
#[derive(Debug, Default)]
pub(super) struct Watches {
    next: u32,
    fired: Vec<u32>,
}

impl Watches {
    /// Arms a watch of `fd` on the ring.
    pub(super) fn arm(&mut self, ring: &mut Ring, fd: BorrowedFd<'_>) -> Result<Watch> {
        // Numbers wrap at 2^30; by then the first have long fired.
        let n = self.next & ((1 << 30) - 1);
        ring.poll_add(fd.as_raw_fd(), libc::POLLIN as u32, route::watch(n))
            .map_err(|source| Error::Ring {
                op: "submit",
                source,
            })?;
        self.next = n.wrapping_add(1);
        Ok(Watch(n))
    }

    /// Watch `n` fired.
    pub(super) fn on_fired(&mut self, n: u32) {
        self.fired.push(n);
    }

    /// Whether `watch` has fired; forgets it if so.
    pub(super) fn take(&mut self, watch: &Watch) -> bool {
        let before = self.fired.len();
        self.fired.retain(|n| *n != watch.0);
        self.fired.len() != before
    }

    /// Watches fired so far and not yet taken: `poll` returns when it grows.
    pub(super) fn fired(&self) -> usize {
        self.fired.len()
    }
}
