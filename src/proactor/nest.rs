//! Driving the proactor from another event loop (epoll, tokio, ...)
//! through the ring's fd: `AsRawFd`/`AsFd`, and [`Proactor::submit`], which
//! hands queued work to the kernel before that loop goes to sleep.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use super::Proactor;
use crate::error::{Error, Result};

impl Proactor {
    /// Hands everything queued to the kernel now, without waiting and
    /// without reaping: one `io_uring_enter` if anything is queued, none
    /// otherwise.
    ///
    /// [`poll`](Self::poll) submits what was queued before it, but work
    /// queued while it handles completions (a read armed again, the rest
    /// of a short write) and by your `send`s waits for the next call. A
    /// loop that calls `poll` again and again never notices; a foreign
    /// loop that sleeps on the ring fd must call `submit` before it
    /// sleeps, or that work never starts and no completion wakes it.
    pub fn submit(&mut self) -> Result<()> {
        // Sends made since the last poll start their writes here.
        self.pump_queued();
        if !self.ring.has_unsubmitted() && !self.ring.is_sqpoll() {
            return Ok(());
        }
        self.ring
            .submit_and_wait(false, None)
            .map_err(|source| Error::Ring {
                op: "io_uring_enter",
                source,
            })
    }
}

/// The ring's fd, to drive the proactor from another event loop: register
/// it for readability (level-triggered, or edge-triggered with the loop
/// below run until it finds nothing), and when it is readable:
///
/// 1. [`poll`](Proactor::poll) with `Some(Duration::ZERO)` and handle the
///    events;
/// 2. [`submit`](Proactor::submit), so the work queued meanwhile is in
///    the kernel;
/// 3. go back to sleep in your loop.
///
/// When it is readable (Linux 6.18, measured): `poll(2)` reports `POLLIN`
/// while completions wait in the completion queue, or deferred task work
/// waits for this thread (a read whose data arrived, on a ring with
/// `DEFER_TASKRUN`). But a waiter is *woken* only when a completion is
/// posted, and a `DEFER_TASKRUN` ring posts completions only while its
/// thread is inside `poll`: a loop asleep on the fd of such a ring sleeps
/// through every completion. So build a proactor that another loop drives
/// with [`Builder::defer_taskrun(false)`](crate::Builder::defer_taskrun):
/// its task work then interrupts the sleeping thread (the wait returns
/// `EINTR`, which epoll users retry and tokio does), runs on the way out
/// of the kernel, and posts the completion, which wakes the loop. A ring
/// with [`Builder::sqpoll`](crate::Builder::sqpoll) never defers and
/// works as it is.
///
/// A [`Notifier`](crate::Notifier) wakes such a loop too: its READ
/// completes like any other.
impl AsRawFd for Proactor {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.fd().as_raw_fd()
    }
}

/// The ring's fd: see [`AsRawFd for Proactor`](#impl-AsRawFd-for-Proactor).
impl AsFd for Proactor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.fd()
    }
}
