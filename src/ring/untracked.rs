//! Operations kept in no table: a receiver's multishot read and its
//! hang-up poll, one each in flight per receiver, so that many idle FIFOs
//! do not take a table entry each. Their id is their user data with
//! [`UNTRACKED`] set; the ring only counts them, and at shutdown cancels
//! the ones its caller names.

use std::io;

use io_uring::{cqueue, opcode, squeue, types};

use super::{Completion, Held, Kind, OpId, SHUTDOWN, Uring, UserData};

/// The bit of an untracked operation's id (a tracked id's low half, its
/// sequence number, stays below it; no user data has it set).
pub(super) const UNTRACKED: u64 = 1 << 31;

/// What a ring knows of its untracked operations.
#[derive(Debug, Default)]
pub(super) struct Untracked {
    /// Pushed, their final completion not yet reaped.
    pub(super) in_flight: usize,
    /// Cancels of every operation sent: at shutdown, only for untracked
    /// operations nobody named.
    cancels_every: u32,
}

impl OpId {
    /// The id of an untracked operation of user data `data`: `data` with
    /// [`UNTRACKED`] set (so never 0).
    pub(super) fn untracked(data: UserData) -> OpId {
        let raw = data | UNTRACKED;
        OpId(std::num::NonZeroU64::new(raw).unwrap_or(std::num::NonZeroU64::MIN))
    }

    /// Whether this is an untracked operation's id.
    fn is_untracked(self) -> bool {
        self.0.get() & UNTRACKED != 0
    }
}

impl Uring {
    /// Pushes an operation that holds nothing and is kept in no table: its
    /// id is `data` with [`UNTRACKED`] set, its completions carry `data`.
    /// For operations of which the caller has at most one in flight per
    /// `data` (a receiver's multishot read and its hang-up poll).
    pub(super) fn push_untracked(
        &mut self,
        sqe: squeue::Entry,
        data: UserData,
    ) -> io::Result<OpId> {
        debug_assert_eq!(data & UNTRACKED, 0, "user data with the untracked bit");
        let id = OpId::untracked(data);
        let sqe = sqe.user_data(id.0.get());
        // SAFETY: the operation holds nothing of ours: no pointer in `sqe`
        // outlives this call (its buffers come from the provided ring).
        unsafe { self.queue(&sqe) }?;
        self.untracked.in_flight += 1;
        Ok(id)
    }

    /// The completion of an untracked operation: its user data is its id
    /// less the bit.
    #[inline]
    pub(super) fn complete_untracked(&mut self, cqe: &cqueue::Entry) -> Completion {
        let more = cqueue::more(cqe.flags());
        self.untracked.in_flight -= usize::from(!more);
        let data = cqe.user_data() & !UNTRACKED;
        Completion {
            data,
            op: OpId::untracked(data),
            result: cqe.result(),
            buf: None,
            more,
            provided: cqueue::buffer_select(cqe.flags()),
        }
    }

    /// At shutdown: cancels each untracked operation among `named` by its
    /// id, one lookup each (other ids are skipped: the tracked ones are
    /// cancelled from the tables). One ASYNC_CANCEL with ANY and ALL would
    /// take them all, but it finds them one at a time, each search passing
    /// every one it already cancelled (they stay in the kernel's poll table
    /// until their completion is posted): 12 s of kernel time for 10,000
    /// idle receivers. Returns whether that cancel was sent all the same,
    /// because untracked operations are in flight and none was named.
    pub(super) fn cancel_named(&mut self, named: &[OpId]) -> bool {
        let mut sent = 0;
        for id in named.iter().filter(|id| id.is_untracked()) {
            if self.cancel(*id, SHUTDOWN).is_err() {
                break;
            }
            sent += 1;
        }
        sent == 0 && self.cancel_unnamed()
    }

    /// At shutdown, once the named ones are done: the untracked operations
    /// still in flight are ones nobody named, cancelled with one cancel of
    /// every operation. Returns whether it was sent.
    pub(super) fn cancel_unnamed(&mut self) -> bool {
        if self.untracked.in_flight == 0 {
            return false;
        }
        let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::any().all()).build();
        self.untracked.cancels_every += 1;
        self.push(sqe, SHUTDOWN, Kind::Cancel, Held::Nothing)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use io_uring::{opcode, types};

    use super::super::*;
    use super::*;

    fn ring() -> Uring {
        let cfg = RingConfig {
            sq_entries: 8,
            cq_entries: 16,
            sqpoll_idle: None,
            files: 0,
            defer_taskrun: true,
            min_wait: true,
            register_ring_fd: true,
        };
        Uring::new(&cfg).expect("an io_uring here")
    }

    fn poll_in(fd: &impl AsRawFd) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32).build()
    }

    /// A tracked id never has the untracked bit, even where its sequence
    /// wraps; each kind of completion comes back with its own user data,
    /// and both count as in flight until then.
    #[test]
    fn tracked_and_untracked_ids_never_meet() {
        let mut ring = ring();
        let efd = nix::sys::eventfd::EventFd::new().unwrap();
        ring.seq = SEQ_MAX - 1;
        let a = ring
            .push(poll_in(&efd), 7, Kind::Other, Held::Nothing)
            .unwrap();
        let b = ring
            .push(poll_in(&efd), 8, Kind::Other, Held::Nothing)
            .unwrap();
        let u = ring.push_untracked(poll_in(&efd), 9 << 32 | 5).unwrap();
        assert_eq!(a.0.get() as u32, SEQ_MAX);
        assert_eq!(b.0.get() as u32, 1, "the sequence wraps below the bit");
        assert_eq!(u.0.get(), 9 << 32 | 5 | UNTRACKED);
        assert_eq!(ring.in_flight(), 3);
        efd.write(1).unwrap();
        let mut got = Vec::new();
        for _ in 0..20 {
            if got.len() == 3 {
                break;
            }
            ring.submit_and_wait(true, Some(Duration::from_millis(250)))
                .unwrap();
            ring.drain(&mut got).unwrap();
        }
        let mut seen: Vec<(UserData, OpId)> = got.iter().map(|c| (c.data, c.op)).collect();
        seen.sort_by_key(|(d, _)| *d);
        assert_eq!(seen, [(7, a), (8, b), (9 << 32 | 5, u)]);
        assert_eq!(ring.in_flight(), 0);
    }

    /// At shutdown the untracked operations the caller names are each
    /// cancelled by id (tracked ids among them are skipped), with no cancel
    /// of every operation; one nobody named is cancelled all the same, by
    /// the cancel of every operation, once the named ones are done.
    #[test]
    fn shutdown_cancels_named_untracked_operations_by_id() {
        let efd = nix::sys::eventfd::EventFd::new().unwrap();
        for unnamed in [0, 1] {
            let mut ring = ring();
            let ids: Vec<OpId> = (1..=3u64)
                .map(|i| ring.push_untracked(poll_in(&efd), i << 32 | 1).unwrap())
                .collect();
            let tracked = ring
                .push(poll_in(&efd), 4, Kind::Other, Held::Nothing)
                .unwrap();
            ring.submit_and_wait(false, None).unwrap();
            assert_eq!(ring.in_flight(), 4);
            let mut named = ids[unnamed..].to_vec();
            named.push(tracked);
            assert!(ring.cancel_all_and_drain(Duration::from_secs(5), &named));
            assert_eq!(ring.in_flight(), 0);
            assert_eq!(
                ring.untracked.cancels_every, unnamed as u32,
                "{unnamed} unnamed"
            );
        }
    }

    /// At shutdown an untracked operation, in no table, is cancelled too.
    #[test]
    fn shutdown_cancels_untracked_operations() {
        let mut ring = ring();
        let efd = nix::sys::eventfd::EventFd::new().unwrap();
        ring.push_untracked(poll_in(&efd), 3 << 32 | 1).unwrap();
        ring.push(poll_in(&efd), 4, Kind::Other, Held::Nothing)
            .unwrap();
        ring.submit_and_wait(false, None).unwrap();
        assert_eq!(ring.in_flight(), 2);
        assert!(ring.cancel_all_and_drain(Duration::from_secs(5), &[]));
        assert_eq!(ring.in_flight(), 0);
    }
}
