//! The backends below the proactor, behind one boundary ([`Ring`], in
//! `backend`): the calls the proactor acts through, knowing no purposes.
//! An operation (`ops`: reads, writes, polls, splices and tees, cancels,
//! an eventfd read, a timeout) is submitted with opaque [`UserData`] and
//! answers with one [`Completion`] carrying it back (more for a multishot
//! read); files are registered and released; one enter per loop turn
//! submits and waits (`enter`); `drain` hands over what completed. What
//! the user data means is the proactor's (its `route` room).
//!
//! This file is the io_uring backend, [`Uring`]: setup and feature
//! probing are in `setup`, the provided buffer rings in `bufring`. The
//! epoll backend, a completion emulator with the same calls, is `epoll`.
//!
//! Every operation is entered in the table before its SQE is pushed and leaves
//! it only with its final CQE, taking back the buffer it owned. So no buffer is
//! freed while the kernel may touch it. (The operations holding memory have a
//! table of their own, so the many that hold none take 16 bytes each.) The
//! SQE's `user_data` is the table key plus a sequence number, unique among
//! live operations, so a cancel never hits a later operation that reused the
//! key.

mod backend;
mod epoll;
mod setup;
mod sigpipe;

pub(crate) use backend::Ring;
pub use backend::{BACKEND_ENV, Backend, BackendInUse};
pub(crate) use setup::RingConfig;
pub(crate) use sigpipe::ignore_sigpipe_if_default;

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, squeue, types};
use slab::Slab;

use crate::buffers::{Buf, Pool};

macro_rules! with_file {
    ($file:expr, |$fd:ident| $body:expr) => {
        match $file {
            FileRef::Raw(raw) => {
                let $fd = types::Fd(raw);
                $body
            }
            FileRef::Fixed(slot) => {
                let $fd = types::Fixed(slot);
                $body
            }
        }
    };
}

mod bufring;
mod enter;
mod ops;
mod untracked;

use untracked::{UNTRACKED, Untracked};

/// A file as an operation names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileRef {
    Raw(RawFd),
    Fixed(u32),
}

/// The user data that comes back with every completion of an operation:
/// opaque here. The proactor encodes in it whose operation it is and what
/// for, and reserves values for its own operations; the ring only keeps
/// it, and [`SHUTDOWN`] for the cancels it makes itself when dropped.
pub(crate) type UserData = u64;

/// User data of the cancels the ring submits itself at drop: their
/// completions reach nobody.
pub(crate) const SHUTDOWN: UserData = u64::MAX;

/// What the ring itself must know of an operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Other,
    /// A WRITE: `unsubmitted_writes` counts it.
    Write,
    /// An ASYNC_CANCEL: never cancelled itself at drop.
    Cancel,
}

/// Names a live operation (its SQE `user_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpId(std::num::NonZeroU64);

impl OpId {
    /// The id of the operation at `key` in the table, entered as `seq`.
    fn of(key: usize, seq: u32) -> OpId {
        let raw = ((key as u64) << 32) | u64::from(seq);
        // seq >= 1: the fallback is never taken.
        OpId(std::num::NonZeroU64::new(raw).unwrap_or(std::num::NonZeroU64::MIN))
    }
}

/// One operation in flight. An idle receiver has two (its multishot read
/// and its hang-up poll), neither holding memory and both untracked
/// (`push_untracked`: in no table); the other operations holding nothing
/// live in a table of 16-byte entries (see `layout`), the few that hold
/// memory in another.
struct InFlight {
    data: UserData,
    /// The low half of the operation's id; the high half is its key in its
    /// table ([`HOLDING`] set for the table of operations holding memory).
    seq: u32,
    kind: Kind,
}

/// An operation in flight that holds memory the kernel uses.
struct Holding {
    op: InFlight,
    held: Held,
}

/// The key bit of an operation in the `holding` table.
const HOLDING: usize = 1 << 31;

/// How long a shutdown waits for a completion before it takes the
/// untracked operations still in flight as ones nobody named.
const UNNAMED_AFTER: Duration = Duration::from_millis(50);

/// The largest sequence number of a tracked operation (below `UNTRACKED`).
const SEQ_MAX: u32 = (1 << 31) - 1;

/// The memory an operation's SQE points into, held at a stable heap
/// address until its final completion (one at most per operation).
enum Held {
    Nothing,
    Buf(Buf),
    /// The kernel reads the timespec while submitting.
    Timespec {
        _ts: Box<types::Timespec>,
    },
    /// An eventfd counter the kernel writes into (`read_counter`).
    Counter {
        _word: Box<u64>,
    },
}

/// How much of the buffer pool is registered with the ring.
#[derive(Debug)]
enum Pinned {
    /// Nothing: every buffer is used with plain `READ` / `WRITE`.
    Nothing,
    /// The whole pool, at once (`Builder::buffers`).
    Whole,
    /// A sparse table of the pool's size, each buffer registered into its
    /// slot at its first use (`true`): only the buffers used are pinned.
    Sparse(Box<[bool]>),
}

/// One final completion.
#[derive(Debug)]
pub(crate) struct Completion {
    /// The user data the operation was submitted with.
    pub data: UserData,
    pub op: OpId,
    pub result: i32,
    pub buf: Option<Buf>,
    /// A multishot operation goes on: more completions will follow.
    pub more: bool,
    /// The provided buffer the kernel filled, if any.
    pub provided: Option<u16>,
}

/// The io_uring backend: one ring, its operation table, its registered
/// files and memory.
pub(crate) struct Uring {
    /// Closed by hand in `Drop`, before `memory` may go.
    uring: ManuallyDrop<IoUring>,
    /// Operations holding nothing (reads into provided buffers, polls,
    /// cancels, splices): most of them, so kept apart and small.
    ops: Slab<InFlight>,
    /// Operations holding a buffer, a timespec or an eventfd word.
    holding: Slab<Holding>,
    /// Operations kept in no table (`push_untracked`): counted.
    untracked: Untracked,
    seq: u32,
    /// SQEs pushed and not yet consumed by an enter (always 0 with SQPOLL,
    /// whose kernel thread consumes them on its own).
    unsubmitted: usize,
    /// Of those, WRITEs: `poll` may wait for them and one completion more
    /// in the same enter (see `Proactor::poll`).
    unsubmitted_writes: usize,
    enters: u64,
    /// This thread's registered-ring index of the ring fd
    /// (`IORING_REGISTER_RING_FDS`): enters pass it with
    /// `IORING_ENTER_REGISTERED_RING` and skip the kernel's fd lookup.
    /// Unregistered in `Drop`, before the fd closes (the registration holds
    /// a reference to the ring).
    ring_index: Option<u32>,
    /// The kernel has `IORING_FEAT_MIN_TIMEOUT` (and it was not turned off).
    min_wait: bool,
    /// Flags every enter that waits adds: `IORING_ENTER_NO_IOWAIT` where
    /// the kernel has it.
    enter_flags: u32,
    sqpoll: bool,
    /// Set up with `DEFER_TASKRUN`: completions are posted only inside
    /// this thread's own enters, so nothing wakes a waiter on the fd.
    deferred: bool,
    /// Which of the pool's buffers fixed operations may name.
    pinned: Pinned,
    /// Completions one turn takes in at most when it runs the rest of a
    /// wave's task work (see `enter`); 0: one pass only.
    wave: usize,
    file_slots: Vec<u32>,
    file_table: u32,
    /// The pool whose memory is registered with the ring (buffers or the
    /// provided ring): kept alive by the ring itself until it is closed,
    /// whoever else holds the pool.
    memory: Option<Rc<Pool>>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("in_flight", &self.in_flight())
            .field("enters", &self.enters)
            .field("sqpoll", &self.sqpoll)
            .field("deferred", &self.deferred)
            .field("ring_index", &self.ring_index)
            .field("min_wait", &self.min_wait)
            .finish()
    }
}

impl Uring {
    /// Registers every buffer of `pool` once. Until this succeeds, reads
    /// and writes use the pool's buffers with plain `READ` / `WRITE`. With
    /// `wait`, a refusal for lack of locked memory is retried while closed
    /// rings may still be giving theirs back.
    pub(crate) fn register_pool(&mut self, pool: &Rc<Pool>, wait: bool) -> io::Result<()> {
        let iovecs = pool.iovecs();
        let submitter = self.uring.submitter();
        // SAFETY: the iovecs describe the pool's mapping, which stays mapped
        // until the ring is closed: the ring keeps the pool (`memory`) and
        // drops it only after closing the io_uring fd (see `Drop`).
        let register = || unsafe { submitter.register_buffers(&iovecs) };
        if wait {
            setup::retry_while_memlock_drains(register)?;
        } else {
            register()?;
        }
        self.pinned = Pinned::Whole;
        self.memory = Some(Rc::clone(pool));
        Ok(())
    }

    /// Lets one turn take in up to `completions` completions of a wave
    /// (more than the kernel's 20 task-work items per enter): set to what
    /// the reads can take at once, the provided buffers.
    pub(crate) fn set_wave(&mut self, completions: usize) {
        self.wave = completions;
    }

    /// Registers the pool's provided buffer rings, if it has them: plain,
    /// not incremental (see `bufring` for why).
    pub(crate) fn register_provided(&mut self, pool: &Rc<Pool>) -> io::Result<bool> {
        if !bufring::register_all(&self.uring.submitter(), pool)? {
            return Ok(false);
        }
        self.memory = Some(Rc::clone(pool));
        Ok(true)
    }

    /// Puts `fd` in the registered file table; `None` when the table is full.
    pub(crate) fn register_file(&mut self, fd: RawFd) -> Option<u32> {
        let slot = self.file_slots.pop()?;
        match self.uring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => Some(slot),
            Err(_) => {
                self.file_slots.push(slot);
                None
            }
        }
    }

    /// Empties a registered file slot. The slot holds its own reference to the
    /// file: until this runs, the peer never sees the end close.
    pub(crate) fn unregister_file(&mut self, slot: u32) -> io::Result<()> {
        debug_assert!(slot < self.file_table);
        self.uring.submitter().register_files_update(slot, &[-1])?;
        self.file_slots.push(slot);
        Ok(())
    }

    /// Registered file slots in use.
    pub(crate) fn files_in_use(&self) -> usize {
        self.file_table as usize - self.file_slots.len()
    }

    /// `io_uring_enter` calls made so far.
    pub(crate) fn enters(&self) -> u64 {
        self.enters
    }

    /// Whether SQEs wait in the SQ for an enter (never with SQPOLL).
    pub(crate) fn has_unsubmitted(&self) -> bool {
        self.unsubmitted > 0
    }

    /// Whether a kernel thread submits (SQPOLL).
    pub(crate) fn is_sqpoll(&self) -> bool {
        self.sqpoll
    }

    /// Whether the ring defers its task work (`DEFER_TASKRUN`).
    pub(crate) fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// Operations submitted and not yet finally completed.
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len() + self.holding.len() + self.untracked.in_flight
    }

    /// WRITEs pushed since the last enter.
    pub(crate) fn unsubmitted_writes(&self) -> usize {
        self.unsubmitted_writes
    }

    /// Whether the kernel waits with a min-wait itself (Linux >= 6.12).
    pub(crate) fn has_min_wait(&self) -> bool {
        self.min_wait
    }

    /// Whether enters name the ring by its registered index.
    pub(crate) fn ring_fd_registered(&self) -> bool {
        self.ring_index.is_some()
    }

    /// The ring's fd, for polling it from another event loop.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.uring.as_fd()
    }

    fn push(
        &mut self,
        sqe: squeue::Entry,
        data: UserData,
        kind: Kind,
        held: Held,
    ) -> io::Result<OpId> {
        let key = match held {
            Held::Nothing => self.ops.vacant_key(),
            _ => self.holding.vacant_key() | HOLDING,
        };
        // Never 0, so an `Option<OpId>` (one per receiver, and more) takes
        // no more room than the id; never `UNTRACKED`'s bit.
        self.seq = match self.seq {
            SEQ_MAX => 1,
            seq => seq + 1,
        };
        let id = OpId::of(key, self.seq);
        let sqe = sqe.user_data(id.0.get());
        // SAFETY: every pointer in `sqe` points into `held`, which is moved
        // into the `holding` table right below and stays there (at a stable
        // heap address) until the final CQE for `id` is reaped.
        unsafe { self.queue(&sqe) }?;
        if !self.sqpoll && kind == Kind::Write {
            self.unsubmitted_writes += 1;
        }
        let op = InFlight {
            data,
            seq: self.seq,
            kind,
        };
        let inserted = match held {
            Held::Nothing => self.ops.insert(op),
            held => self.holding.insert(Holding { op, held }) | HOLDING,
        };
        debug_assert_eq!(inserted, key);
        Ok(id)
    }

    /// Puts `sqe` on the SQ, flushing it first if it is full (the only
    /// case where one turn enters twice), and counts it unsubmitted.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must stay valid until the final completion
    /// of its operation is reaped.
    unsafe fn queue(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        // SAFETY: the caller keeps what `sqe` points to alive (see above).
        while unsafe { self.uring.submission().push(sqe) }.is_err() {
            self.enter(0, None, None)?;
        }
        if !self.sqpoll {
            self.unsubmitted += 1;
        }
        Ok(())
    }

    /// Moves every available completion to `out`, flushing CQEs the kernel
    /// kept aside on overflow. Multishot continuations are not final and do
    /// not leave the table.
    pub(crate) fn drain(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        while let Some(c) = self.next_completion()? {
            out.push(c);
        }
        Ok(())
    }

    /// The next completion, taken off the CQ at once, or `None` once the
    /// CQ is empty (CQEs the kernel kept aside on overflow flushed first).
    /// `poll` routes each as it comes: nothing is staged.
    #[inline]
    pub(crate) fn next_completion(&mut self) -> io::Result<Option<Completion>> {
        loop {
            // The CQ's head moves when the queue handle drops, right here.
            let Some(cqe) = self.uring.completion().next() else {
                if self.uring.submission().cq_overflow() {
                    self.flush_overflow()?;
                    continue;
                }
                return Ok(None);
            };
            if let Some(c) = self.complete(&cqe) {
                return Ok(Some(c));
            }
        }
    }

    /// The completion `cqe` reports, its operation leaving the table if it
    /// is final; `None` for a CQE of no live operation.
    #[inline]
    fn complete(&mut self, cqe: &cqueue::Entry) -> Option<Completion> {
        if cqe.user_data() & UNTRACKED != 0 {
            return Some(self.complete_untracked(cqe));
        }
        let key = (cqe.user_data() >> 32) as usize;
        let op = match key & HOLDING {
            0 => self.ops.get(key)?,
            _ => &self.holding.get(key & !HOLDING)?.op,
        };
        let id = OpId::of(key, op.seq);
        if id.0.get() != cqe.user_data() {
            return None;
        }
        let completion = Completion {
            data: op.data,
            op: id,
            result: cqe.result(),
            buf: None,
            more: cqueue::more(cqe.flags()),
            provided: cqueue::buffer_select(cqe.flags()),
        };
        if completion.more {
            return Some(completion);
        }
        if key & HOLDING == 0 {
            self.ops.remove(key);
            return Some(completion);
        }
        let buf = match self.holding.remove(key & !HOLDING).held {
            Held::Buf(buf) => Some(buf),
            Held::Nothing | Held::Timespec { .. } | Held::Counter { .. } => None,
        };
        Some(Completion { buf, ..completion })
    }

    /// Cancels every operation and waits for all final completions, up to
    /// `grace`. `untracked` names the untracked operations the caller has
    /// in flight (other ids in it are skipped: the tracked ones are
    /// cancelled from the tables). Returns false if some are still in
    /// flight afterwards.
    pub(crate) fn cancel_all_and_drain(&mut self, grace: Duration, untracked: &[OpId]) -> bool {
        // Nothing reached the kernel yet (dropped before any enter): free it
        // all without entering, so no queued read takes bytes from a pipe.
        if !self.sqpoll && self.unsubmitted == self.in_flight() {
            self.ops.clear();
            self.holding.clear();
            self.untracked.in_flight = 0;
            return true;
        }
        let holding = self.holding.iter().map(|(key, h)| (key | HOLDING, &h.op));
        let targets: Vec<OpId> = (self.ops.iter().chain(holding))
            .filter(|(_, op)| op.kind != Kind::Cancel)
            .map(|(key, op)| OpId::of(key, op.seq))
            .collect();
        for target in targets {
            if self.cancel(target, SHUTDOWN).is_err() {
                break;
            }
        }
        // The untracked ones by name; those nobody named once the named
        // ones are done (a wait that brings nothing), or at once if none
        // were named (see `cancel_named`).
        let mut every = self.cancel_named(untracked);
        let deadline = Instant::now() + grace;
        let mut sink = Vec::new();
        while self.in_flight() > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = if every {
                deadline - now
            } else {
                (deadline - now).min(UNNAMED_AFTER)
            };
            let before = self.in_flight();
            if self.submit_and_wait(true, Some(wait)).is_err() {
                return false;
            }
            if self.drain(&mut sink).is_err() {
                return false;
            }
            sink.clear();
            if !every && self.in_flight() == before {
                every = self.cancel_unnamed();
            }
        }
        true
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if self.in_flight() > 0 && !self.cancel_all_and_drain(Duration::from_secs(5), &[]) {
            // The kernel may still write into these buffers: leak them, and
            // the registered memory, rather than free memory it owns.
            std::mem::forget(std::mem::take(&mut self.holding));
            std::mem::forget(self.memory.take());
        }
        if let Some(index) = self.ring_index.take() {
            setup::unregister_ring_fd(&self.uring, index);
        }
        // The order matters and is explicit: first close the ring, which
        // ends the kernel's use of the registered buffers and provided ring,
        // then let that memory go.
        // SAFETY: `uring` is dropped once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.uring) };
        drop(self.memory.take());
    }
}

#[cfg(test)]
mod layout {
    /// The table of operations holding nothing has one per receiver that
    /// reads single-shot (its read into a provided buffer, or its poll for
    /// data; a multishot receiver's read and hang-up poll are untracked).
    #[test]
    fn an_operation_holding_nothing_takes_16_bytes() {
        // Its slab entry too: the kind's spare values tell a vacant one.
        assert_eq!(std::mem::size_of::<super::InFlight>(), 16);
        assert_eq!(std::mem::size_of::<Option<super::InFlight>>(), 16);
    }
}
