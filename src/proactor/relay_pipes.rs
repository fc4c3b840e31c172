//! The pipes of relays and fan-outs: grown before their first move (a
//! wake-up then moves more), within one budget for the whole process, so
//! that however many proactors relay, the user's other pipes keep their
//! size.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::fcntl::FcntlArg;

use super::Proactor;

/// The pipe size a relay or fan-out grows its FIFOs to by default
/// ([`Proactor::set_relay_pipe_size`]): fewer, larger moves per wake-up.
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

impl Proactor {
    /// Sets the pipe size each relay and fan-out grows its FIFOs to (the
    /// source's and every destination's), before its first move and again
    /// after a FIFO is reopened; 0 leaves the sizes as they are. Default
    /// 1 MiB: a wake-up then moves up to 1 MiB, where a 64 KiB pipe moves
    /// 64 KiB, which cuts the relay's CPU per byte several times (measured
    /// in BENCHMARKS.md, Relay). Pipes only grow, each up to
    /// `/proc/sys/fs/pipe-max-size`, and where the kernel grants less the
    /// relay goes on with what it got. A pipe is shared with the peer
    /// processes, and its pages count against the user's pipe limits
    /// ([`PipeLimits`](crate::PipeLimits)): past `pipe-user-pages-soft`,
    /// every new pipe of that user gets two pages. So the relays of all
    /// the proactors of a process grow pipes by at most half that limit
    /// in all (32 MiB with the kernel's default); beyond it, pipes keep
    /// their size. A relay's share is given back when it ends (its pipes
    /// keep their size while they stay open). Other processes of the same
    /// user have budgets of their own. Set 0 to size the FIFOs yourself
    /// ([`FifoOptions::pipe_size`](crate::FifoOptions::pipe_size)).
    pub fn set_relay_pipe_size(&mut self, bytes: usize) {
        self.splicing.pipe_size = bytes;
    }

    /// Grows the pipes of `rx`'s splice and of its (open) destinations to
    /// the relay pipe size, within the process's budget; a failure leaves
    /// a pipe as it was.
    pub(super) fn grow_pipes(&mut self, rx: usize) {
        let want = self.splicing.pipe_size;
        let Some(splice) = self.splice_of(rx) else {
            return;
        };
        splice.sized = true;
        if want == 0 {
            return;
        }
        let dests: Vec<usize> = splice.feeds.iter().map(|t| t.index as usize).collect();
        let mut grant = std::mem::take(&mut splice.grown);
        let limit = process_budget();
        for idx in std::iter::once(rx).chain(dests) {
            let Some(fd) = self.table.get(idx).and_then(|t| t.end.fd.as_ref()) else {
                continue;
            };
            let Ok(now) = nix::fcntl::fcntl(fd.as_fd(), FcntlArg::F_GETPIPE_SZ) else {
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
            let (before, after) = crate::fifo::grow_pipe(fd.as_fd(), now + took);
            grant.settle(took, after.saturating_sub(before));
        }
        if let Some(splice) = self.splice_of(rx) {
            splice.grown = grant;
        }
    }

    /// A FIFO of `rx`'s splice was (or will be) reopened: a new pipe, to
    /// be grown again before the next move.
    pub(super) fn resize_later(&mut self, rx: usize) {
        if let Some(splice) = self.splice_of(rx) {
            splice.sized = false;
        }
    }
}
