//! The io_uring instance: SQ push with flush-when-full, one `io_uring_enter`
//! per loop turn, CQ drain, cancellation, registered memory and files, and
//! the operation table. Setup and feature probing are in `setup`.
//!
//! Every operation is entered in the table before its SQE is pushed and leaves
//! it only with its final CQE, taking back the buffer it owned. So no buffer is
//! freed while the kernel may touch it. The SQE's `user_data` is the table key
//! plus a sequence number, unique among live operations, so a cancel never
//! hits a later operation that reused the key.

mod setup;
mod sigpipe;

pub(crate) use setup::RingConfig;
pub(crate) use sigpipe::ignore_sigpipe_if_default;

use std::io;
use std::mem::ManuallyDrop;
use std::ops::Range;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;

use crate::buffers::{Buf, PROVIDED_GROUP, Pool};

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

/// A file as an operation names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileRef {
    Raw(RawFd),
    Fixed(u32),
}

/// What an operation is for: recorded in the operation table when it is
/// submitted and reported back with its completion, so the proactor routes
/// every completion with one `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// READ or READ_FIXED of a receiver.
    Read,
    /// READ_MULTISHOT of a receiver, from the provided buffer ring.
    ReadMulti,
    /// POLL of a receiver for data, before a read into whatever buffer is
    /// free then.
    ReadPoll,
    /// POLL of a multishot receiver for POLLHUP: its writers left.
    HangUp,
    /// WRITE or WRITE_FIXED of a sender.
    Write,
    /// POLL of a sender: for room after EAGAIN, or for its reader leaving.
    WritePoll,
    /// A round of a receiver spliced into senders: TEE to all destinations
    /// but the last, SPLICE to the last (alone for one destination).
    SpliceRound,
    /// POLL of a spliced receiver: for data in the source (linked before a
    /// single splice, or before sizing a round), or room in a destination.
    SplicePoll,
    /// ASYNC_CANCEL.
    Cancel,
    /// TIMEOUT of the retry timer of senders waiting for a reader.
    RetryTimer,
    /// POLL on the inotify fd that watches for readers opening FIFOs.
    OpenWatch,
    /// POLL for POLLIN on an fd the crate watches for itself (a child's
    /// pidfd, for `process`).
    Readable,
}

/// Names a live operation (its SQE `user_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpId(std::num::NonZeroU64);

struct InFlight {
    owner: u64,
    purpose: Purpose,
    id: OpId,
    buf: Option<Buf>,
    // The kernel reads the timespec while submitting: keep it at a stable address.
    _timespec: Option<Box<types::Timespec>>,
}

/// One final completion.
#[derive(Debug)]
pub(crate) struct Completion {
    pub owner: u64,
    pub purpose: Purpose,
    pub op: OpId,
    pub result: i32,
    pub buf: Option<Buf>,
    /// A multishot operation goes on: more completions will follow.
    pub more: bool,
    /// The provided buffer the kernel filled, if any.
    pub provided: Option<u16>,
    /// `IORING_CQE_F_BUF_MORE`: the kernel keeps using that buffer (an
    /// incremental provided ring).
    pub buf_more: bool,
}

/// `io_uring_enter` flag: wait for or reap completions (kernel ABI).
const IORING_ENTER_GETEVENTS: u32 = 1;

pub(crate) struct Ring {
    /// Closed by hand in `Drop`, before `memory` may go.
    uring: ManuallyDrop<IoUring>,
    ops: Slab<InFlight>,
    seq: u32,
    /// SQEs pushed and not yet consumed by an enter (always 0 with SQPOLL,
    /// whose kernel thread consumes them on its own).
    unsubmitted: usize,
    enters: u64,
    sqpoll: bool,
    pool_registered: bool,
    file_slots: Vec<u32>,
    file_table: u32,
    cqes: Vec<cqueue::Entry>,
    /// The pool whose memory is registered with the ring (buffers or the
    /// provided ring): kept alive by the ring itself until it is closed,
    /// whoever else holds the pool.
    memory: Option<Rc<Pool>>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.ops.len())
            .field("enters", &self.enters)
            .field("sqpoll", &self.sqpoll)
            .finish()
    }
}

impl Ring {
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
        self.pool_registered = true;
        self.memory = Some(Rc::clone(pool));
        Ok(())
    }

    /// Registers the pool's provided buffer rings, if it has them:
    /// incremental where the kernel has it (see `bufring`).
    pub(crate) fn register_provided(&mut self, pool: &Rc<Pool>) -> io::Result<bool> {
        if !bufring::register_all(&self.uring.submitter(), pool)? {
            return Ok(false);
        }
        self.memory = Some(Rc::clone(pool));
        Ok(true)
    }

    /// A multishot read into buffers the kernel takes from the provided
    /// ring: one SQE, then a completion per read until it ends (ring empty:
    /// -ENOBUFS; cancelled; EOF on an anonymous pipe, never on a FIFO).
    pub(crate) fn read_multishot(&mut self, file: FileRef, owner: u64) -> io::Result<OpId> {
        let sqe = with_file!(file, |fd| opcode::ReadMulti::new(fd, 0, PROVIDED_GROUP)
            .build());
        self.push(sqe, owner, Purpose::ReadMulti, None, None)
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

    /// Operations submitted and not yet finally completed.
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// Reads up to the buffer's capacity at the file's current position.
    pub(crate) fn read(&mut self, file: FileRef, mut buf: Buf, owner: u64) -> io::Result<OpId> {
        self.register_on_first_use(&buf);
        let ptr = buf.as_mut_ptr();
        let len = buf.capacity() as u32;
        let sqe = match (buf.fixed_index(), self.pool_registered) {
            (Some(index), true) => {
                with_file!(file, |fd| opcode::ReadFixed::new(fd, ptr, len, index)
                    .offset(u64::MAX)
                    .build())
            }
            _ => with_file!(file, |fd| opcode::Read::new(fd, ptr, len)
                .offset(u64::MAX)
                .build()),
        };
        self.push(sqe, owner, Purpose::Read, Some(buf), None)
    }

    /// Writes `buf[range]` at the file's current position.
    pub(crate) fn write(
        &mut self,
        file: FileRef,
        mut buf: Buf,
        range: Range<usize>,
        owner: u64,
    ) -> io::Result<OpId> {
        assert!(range.start <= range.end && range.end <= buf.capacity());
        self.register_on_first_use(&buf);
        // SAFETY: range.start <= capacity, checked above.
        let ptr = unsafe { buf.as_mut_ptr().add(range.start) };
        let len = (range.end - range.start) as u32;
        let sqe = match (buf.fixed_index(), self.pool_registered) {
            (Some(index), true) => {
                with_file!(file, |fd| opcode::WriteFixed::new(fd, ptr, len, index)
                    .offset(u64::MAX)
                    .build())
            }
            _ => with_file!(file, |fd| opcode::Write::new(fd, ptr, len)
                .offset(u64::MAX)
                .build()),
        };
        self.push(sqe, owner, Purpose::Write, Some(buf), None)
    }

    /// One-shot poll for `mask` (POLLERR and POLLHUP are always reported).
    pub(crate) fn poll_add(
        &mut self,
        fd: RawFd,
        mask: u32,
        owner: u64,
        purpose: Purpose,
    ) -> io::Result<OpId> {
        let sqe = opcode::PollAdd::new(types::Fd(fd), mask).build();
        self.push(sqe, owner, purpose, None, None)
    }

    /// Moves up to `len` bytes from pipe `from` to pipe `to` in the kernel,
    /// without blocking (`SPLICE_F_NONBLOCK`: -EAGAIN when the source is
    /// empty or the destination full). With `after_poll`, the splice is
    /// linked behind a POLL_ADD for POLLIN on that fd, so it only runs once
    /// data is there: a splice always runs on an io-wq worker, and one left
    /// waiting on an empty pipe would park that worker. A relay's: the
    /// splice is [`Purpose::SpliceRound`], the poll [`Purpose::SplicePoll`].
    pub(crate) fn splice(
        &mut self,
        from: FileRef,
        to: FileRef,
        len: u32,
        after_poll: Option<RawFd>,
        owner: u64,
    ) -> io::Result<(Option<OpId>, OpId)> {
        let splice = splice_sqe(from, to, len);
        let Some(fd) = after_poll else {
            let splice = self.push(splice, owner, Purpose::SpliceRound, None, None)?;
            return Ok((None, splice));
        };
        // Both SQEs must go out in one submission for the link to hold.
        self.reserve(2)?;
        let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .flags(squeue::Flags::IO_LINK);
        let poll = self.push(poll, owner, Purpose::SplicePoll, None, None)?;
        let splice = self.push(splice, owner, Purpose::SpliceRound, None, None)?;
        Ok((Some(poll), splice))
    }

    /// A link of a fan-out round ([`Purpose::SpliceRound`]): TEE (copy without
    /// consuming) or SPLICE (move) of `len` bytes from pipe `from` to pipe
    /// `to`, non-blocking. With `link`, the next SQE runs only if this one
    /// moved all `len`.
    pub(crate) fn tee_or_splice(
        &mut self,
        tee: bool,
        from: FileRef,
        to: FileRef,
        len: u32,
        link: bool,
        owner: u64,
    ) -> io::Result<OpId> {
        let sqe = if tee {
            let flags = libc::SPLICE_F_NONBLOCK;
            match (from, to) {
                (FileRef::Raw(i), FileRef::Raw(o)) => {
                    opcode::Tee::new(types::Fd(i), types::Fd(o), len)
                        .flags(flags)
                        .build()
                }
                (FileRef::Raw(i), FileRef::Fixed(o)) => {
                    opcode::Tee::new(types::Fd(i), types::Fixed(o), len)
                        .flags(flags)
                        .build()
                }
                (FileRef::Fixed(i), FileRef::Raw(o)) => {
                    opcode::Tee::new(types::Fixed(i), types::Fd(o), len)
                        .flags(flags)
                        .build()
                }
                (FileRef::Fixed(i), FileRef::Fixed(o)) => {
                    opcode::Tee::new(types::Fixed(i), types::Fixed(o), len)
                        .flags(flags)
                        .build()
                }
            }
        } else {
            splice_sqe(from, to, len)
        };
        let sqe = if link {
            sqe.flags(squeue::Flags::IO_LINK)
        } else {
            sqe
        };
        self.push(sqe, owner, Purpose::SpliceRound, None, None)
    }

    /// Makes sure `n` SQEs fit in the SQ, flushing it early if not, so a
    /// linked chain goes out in one submission.
    pub(crate) fn reserve(&mut self, n: usize) -> io::Result<()> {
        let room = {
            let sq = self.uring.submission();
            sq.capacity() - sq.len()
        };
        if room < n {
            self.enter(0, None)?;
        }
        Ok(())
    }

    /// Asks the kernel to cancel `target`. Both complete: `target` with
    /// -ECANCELED (or -ERESTARTSYS if it ran in io-wq) unless it had finished.
    pub(crate) fn cancel(&mut self, target: OpId, owner: u64) -> io::Result<OpId> {
        let sqe = opcode::AsyncCancel::new(target.0.get()).build();
        self.push(sqe, owner, Purpose::Cancel, None, None)
    }

    /// Completes with -ETIME after `after`.
    pub(crate) fn timeout(&mut self, after: Duration, owner: u64) -> io::Result<OpId> {
        let ts = Box::new(
            types::Timespec::new()
                .sec(after.as_secs())
                .nsec(after.subsec_nanos()),
        );
        let sqe = opcode::Timeout::new(&*ts).build();
        self.push(sqe, owner, Purpose::RetryTimer, None, Some(ts))
    }

    fn push(
        &mut self,
        sqe: squeue::Entry,
        owner: u64,
        purpose: Purpose,
        buf: Option<Buf>,
        timespec: Option<Box<types::Timespec>>,
    ) -> io::Result<OpId> {
        let key = self.ops.vacant_key();
        // Never 0, so an `Option<OpId>` (one per receiver, and more) takes
        // no more room than the id.
        self.seq = self.seq.wrapping_add(1).max(1);
        let raw = ((key as u64) << 32) | u64::from(self.seq);
        // seq >= 1: the fallback is never taken.
        let id = OpId(std::num::NonZeroU64::new(raw).unwrap_or(std::num::NonZeroU64::MIN));
        let sqe = sqe.user_data(id.0.get());
        // SAFETY: every pointer in `sqe` points into `buf` or `timespec`, which
        // are moved into the operation table right below and stay there (at a
        // stable heap address) until the final CQE for `id` is reaped.
        while unsafe { self.uring.submission().push(&sqe) }.is_err() {
            // SQ full: flush early, the only case where one turn enters twice.
            self.enter(0, None)?;
        }
        if !self.sqpoll {
            self.unsubmitted += 1;
        }
        let inserted = self.ops.insert(InFlight {
            owner,
            purpose,
            id,
            buf,
            _timespec: timespec,
        });
        debug_assert_eq!(inserted, key);
        Ok(id)
    }

    /// One `io_uring_enter`: submits every queued SQE and, when `wait` is set,
    /// waits for at least one completion or until `timeout`.
    pub(crate) fn submit_and_wait(
        &mut self,
        wait: bool,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let want = usize::from(wait);
        match (wait, timeout) {
            (true, Some(t)) => self.enter(want, Some(t)),
            _ => self.enter(want, None),
        }
    }

    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        // With SQPOLL the kernel thread picks SQEs up by itself; the crate
        // skips the syscall unless it must wait, wake the thread or flush the
        // CQ. Mirror that test so the counter counts real syscalls only.
        if self.sqpoll && want == 0 {
            let mut sq = self.uring.submission();
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if !(sq.need_wakeup() || sq.cq_overflow() || sq.taskrun()) {
                sq.sync();
                return Ok(());
            }
        }
        self.enters += 1;
        let to_submit = self.uring.submission().len() as u32;
        let submitter = self.uring.submitter();
        let res = match timeout {
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(want, &args)
            }
            None if want == 0 && !self.sqpoll => {
                // Always GETEVENTS: with DEFER_TASKRUN, completions are
                // only posted by task work, which only an enter carrying
                // GETEVENTS runs; without it a busy-polling loop would
                // never see its completions.
                // SAFETY: no argument pointer is passed.
                unsafe {
                    submitter.enter::<libc::sigset_t>(to_submit, 0, IORING_ENTER_GETEVENTS, None)
                }
            }
            None => submitter.submit_and_wait(want),
        };
        match res {
            Ok(submitted) => {
                self.unsubmitted = self.unsubmitted.saturating_sub(submitted);
                Ok(())
            }
            Err(e) => match e.raw_os_error() {
                // Timed out, interrupted, or completions must be reaped first.
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {
                    // Whether any SQE went in is unknown: assume all did.
                    self.unsubmitted = 0;
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// Moves every available completion to `out`, flushing CQEs the kernel
    /// kept aside on overflow. Multishot continuations are not final and do
    /// not leave the table.
    pub(crate) fn drain(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        loop {
            self.cqes.clear();
            self.cqes.extend(self.uring.completion());
            for cqe in self.cqes.drain(..) {
                let key = (cqe.user_data() >> 32) as usize;
                let Some(op) = self.ops.get(key) else {
                    continue;
                };
                if op.id.0.get() != cqe.user_data() {
                    continue;
                }
                let provided = cqueue::buffer_select(cqe.flags());
                if cqueue::more(cqe.flags()) {
                    out.push(Completion {
                        owner: op.owner,
                        purpose: op.purpose,
                        op: op.id,
                        result: cqe.result(),
                        buf: None,
                        more: true,
                        provided,
                        buf_more: cqueue::buffer_more(cqe.flags()),
                    });
                    continue;
                }
                let op = self.ops.remove(key);
                out.push(Completion {
                    owner: op.owner,
                    purpose: op.purpose,
                    op: op.id,
                    result: cqe.result(),
                    buf: op.buf,
                    more: false,
                    provided,
                    buf_more: cqueue::buffer_more(cqe.flags()),
                });
            }
            if self.uring.submission().cq_overflow() {
                // The kernel holds completions that did not fit: an enter
                // with GETEVENTS moves them into the CQ.
                self.enters += 1;
                // The crate adds GETEVENTS when it sees the overflow flag.
                let submitted = self.uring.submitter().submit_and_wait(0)?;
                self.unsubmitted = self.unsubmitted.saturating_sub(submitted);
                continue;
            }
            return Ok(());
        }
    }

    /// Cancels every operation and waits for all final completions, up to
    /// `grace`. Returns false if some are still in flight afterwards.
    pub(crate) fn cancel_all_and_drain(&mut self, grace: Duration) -> bool {
        // Nothing reached the kernel yet (dropped before any enter): free it
        // all without entering, so no queued read takes bytes from a pipe.
        if !self.sqpoll && self.unsubmitted == self.ops.len() {
            self.ops.clear();
            return true;
        }
        let targets: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, op)| op.purpose != Purpose::Cancel)
            .map(|(_, op)| op.id)
            .collect();
        for target in targets {
            if self.cancel(target, u64::MAX).is_err() {
                break;
            }
        }
        let deadline = Instant::now() + grace;
        let mut sink = Vec::new();
        while !self.ops.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if self.submit_and_wait(true, Some(deadline - now)).is_err() {
                return false;
            }
            if self.drain(&mut sink).is_err() {
                return false;
            }
            sink.clear();
        }
        true
    }
}

/// A non-blocking SPLICE of up to `len` bytes between two pipes.
fn splice_sqe(from: FileRef, to: FileRef, len: u32) -> squeue::Entry {
    let splice = match (from, to) {
        (FileRef::Raw(i), FileRef::Raw(o)) => {
            opcode::Splice::new(types::Fd(i), -1, types::Fd(o), -1, len)
        }
        (FileRef::Raw(i), FileRef::Fixed(o)) => {
            opcode::Splice::new(types::Fd(i), -1, types::Fixed(o), -1, len)
        }
        (FileRef::Fixed(i), FileRef::Raw(o)) => {
            opcode::Splice::new(types::Fixed(i), -1, types::Fd(o), -1, len)
        }
        (FileRef::Fixed(i), FileRef::Fixed(o)) => {
            opcode::Splice::new(types::Fixed(i), -1, types::Fixed(o), -1, len)
        }
    };
    splice.flags(libc::SPLICE_F_NONBLOCK).build()
}

impl Drop for Ring {
    fn drop(&mut self) {
        if !self.ops.is_empty() && !self.cancel_all_and_drain(Duration::from_secs(5)) {
            // The kernel may still write into these buffers: leak them, and
            // the registered memory, rather than free memory it owns.
            std::mem::forget(std::mem::take(&mut self.ops));
            std::mem::forget(self.memory.take());
        }
        // The order matters and is explicit: first close the ring, which
        // ends the kernel's use of the registered buffers and provided ring,
        // then let that memory go.
        // SAFETY: `uring` is dropped once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.uring) };
        drop(self.memory.take());
    }
}
