//! Driving the proactor from another event loop (epoll, tokio, ...)
//! through the ring's fd: [`Proactor::nest_fd`], given only by a ring that
//! can wake such a loop, and [`Proactor::submit`], which hands queued work
//! to the kernel before that loop goes to sleep.

use std::os::fd::BorrowedFd;

use super::Proactor;
use crate::error::{Error, Result};

impl Proactor {
    /// The ring's fd, to drive the proactor from another event loop:
    /// register it for readability (level-triggered, or edge-triggered
    /// with the loop below run until it finds nothing), and when it is
    /// readable:
    ///
    /// 1. [`poll`](Proactor::poll) with `Some(Duration::ZERO)` and handle
    ///    the events;
    /// 2. [`submit`](Proactor::submit), so the work queued meanwhile is
    ///    in the kernel;
    /// 3. go back to sleep in your loop.
    ///
    /// Only a ring that wakes such a loop gives its fd: one built with
    /// [`Builder::defer_taskrun(false)`](crate::Builder::defer_taskrun) or
    /// [`Builder::sqpoll`](crate::Builder::sqpoll). The default ring
    /// defers its task work (`DEFER_TASKRUN`), and fails with
    /// [`Error::NotNestable`]: its fd polls readable (Linux 6.18,
    /// measured) while completions wait in the completion queue or
    /// deferred task work waits for this thread, but a waiter is *woken*
    /// only when a completion is posted, and such a ring posts completions
    /// only while its thread is inside `poll`: a loop asleep on its fd
    /// would sleep through every completion. Without it the task work
    /// interrupts the sleeping thread (the wait returns `EINTR`, which
    /// epoll users retry and tokio does), runs on the way out of the
    /// kernel, and posts the completion, which wakes the loop.
    ///
    /// The fd is the proactor's: it stays open as long as the proactor
    /// lives. For tokio, `AsyncFd::new(fd.as_raw_fd())` (a `RawFd` is
    /// `AsRawFd`) next to the proactor. A [`Notifier`](crate::Notifier)
    /// wakes such a loop too: its READ completes like any other.
    pub fn nest_fd(&self) -> Result<BorrowedFd<'_>> {
        if self.io.ring.is_deferred() {
            return Err(Error::NotNestable {
                proactor: self.id(),
            });
        }
        Ok(self.io.ring.fd())
    }

    /// The ring's fd whatever its mode, for tests of what the kernel does
    /// to a ring fd; drive a proactor through [`nest_fd`](Self::nest_fd).
    #[doc(hidden)]
    pub fn ring_fd_unchecked(&self) -> BorrowedFd<'_> {
        self.io.ring.fd()
    }

    /// Hands everything queued to the kernel now, without waiting and
    /// without reaping: one `io_uring_enter` if anything is queued, none
    /// otherwise.
    ///
    /// [`poll`](Self::poll) submits what was queued before it, but work
    /// queued while it handles completions (a read armed again, the rest
    /// of a short write) and by your `send`s waits for the next call. A
    /// loop that calls `poll` again and again never notices; a foreign
    /// loop that sleeps on the ring fd ([`nest_fd`](Self::nest_fd)) must
    /// call `submit` before it sleeps, or that work never starts and no
    /// completion wakes it.
    pub fn submit(&mut self) -> Result<()> {
        // Sends made since the last poll start their writes here.
        self.pump_queued();
        if !self.io.ring.has_unsubmitted() && !self.io.ring.is_sqpoll() {
            return Ok(());
        }
        self.io
            .ring
            .submit_and_wait(false, None)
            .map_err(|source| Error::Ring {
                op: "io_uring_enter",
                source,
            })
    }
}
