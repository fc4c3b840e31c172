//! Crate-internal waits on fds the proactor does not own, such as the
//! pidfd through which `process` learns that its child exited: a one-shot
//! POLL for POLLIN on the ring, so `poll` wakes when it fires instead of
//! the caller polling on a timer.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{NO_TRANSPORT, Proactor};
use crate::error::{Error, Result};
use crate::ring::{OpId, Purpose};

impl Proactor {
    /// Waits through the ring until `fd` is readable; the next `poll` then
    /// returns, and [`took_readable`](Self::took_readable) says so. The
    /// ring holds its own reference to the file until the poll completes
    /// or the proactor is dropped.
    pub(crate) fn watch_readable(&mut self, fd: BorrowedFd<'_>) -> Result<OpId> {
        self.ring
            .poll_add(
                fd.as_raw_fd(),
                libc::POLLIN as u32,
                NO_TRANSPORT,
                Purpose::Readable,
            )
            .map_err(|source| Error::Ring {
                op: "submit",
                source,
            })
    }

    /// Whether the watch `op` has fired; forgets it if so.
    pub(crate) fn took_readable(&mut self, op: OpId) -> bool {
        let before = self.readable.len();
        self.readable.retain(|o| *o != op);
        self.readable.len() != before
    }
}
