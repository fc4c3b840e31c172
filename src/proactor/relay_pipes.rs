//! The pipes of relays and fan-outs: grown before their first move (a
//! wake-up then moves more), within one budget for the whole process, so
//! that however many proactors relay, the user's other pipes keep their
//! size.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::fcntl::FcntlArg;

/// The pipe size a relay or fan-out grows its FIFOs to by default
/// (`Builder::relay_pipe_size`): fewer, larger moves per wake-up.
pub(super) const RELAY_PIPE_SIZE: usize = 1 << 20;

/// Bytes by which the running relays of every proactor of this process
/// have grown pipes: the user's pipe limits are per user, not per ring.
static GRANTED: AtomicUsize = AtomicUsize::new(0);

/// Bytes by which one splice grew its pipes, taken from the process's
/// budget and given back when it is dropped (the relay ended).
#[derive(Debug, Default)]
pub(super) struct PipeGrant(usize);

impl PipeGrant {
    /// Takes up to `want` bytes while the process has used less than
    /// `limit`; returns what it took.
    fn take(&mut self, want: usize, limit: usize) -> usize {
        let before = GRANTED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_add(want.min(limit.saturating_sub(used))))
            })
            .unwrap_or_else(|used| used);
        let took = want.min(limit.saturating_sub(before));
        self.0 += took;
        took
    }

    /// Settles a take of `took` bytes that grew a pipe by `grown`.
    fn settle(&mut self, took: usize, grown: usize) {
        if grown < took {
            GRANTED.fetch_sub(took - grown, Ordering::AcqRel);
            self.0 -= took - grown;
        } else {
            GRANTED.fetch_add(grown - took, Ordering::AcqRel);
            self.0 += grown - took;
        }
    }
}

impl Drop for PipeGrant {
    fn drop(&mut self) {
        GRANTED.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// Bytes the relays of this process may grow pipes by in all: half of
/// `pipe-user-pages-soft` (unbounded where the kernel sets no soft limit).
fn process_budget() -> usize {
    match crate::fifo::PipeLimits::read().user_pages_soft {
        0 => usize::MAX,
        soft => soft.saturating_mul(crate::fifo::page_size()) / 2,
    }
}

/// Grows each pipe of `fds` to `want` bytes where it is smaller, taking
/// what it grows by from the process's budget into `grant`; stops when
/// the budget is spent. A failure leaves a pipe as it was.
pub(super) fn grow<'a>(
    grant: &mut PipeGrant,
    want: usize,
    fds: impl Iterator<Item = BorrowedFd<'a>>,
) {
    let limit = process_budget();
    for fd in fds {
        let Ok(now) = nix::fcntl::fcntl(fd, FcntlArg::F_GETPIPE_SZ) else {
            continue;
        };
        let now = now as usize;
        if want <= now {
            continue;
        }
        let took = grant.take(want - now, limit);
        if took == 0 {
            break;
        }
        // Rounded down to a power of two: never more than was taken.
        let (before, after) = crate::fifo::grow_pipe(fd, now + took);
        grant.settle(took, after.saturating_sub(before));
    }
}
