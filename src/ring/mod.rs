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
use std::os::fd::{AsRawFd, RawFd};
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

/// One operation in flight: one per idle receiver, so kept small (48
/// bytes, see `layout`).
struct InFlight {
    data: UserData,
    /// The low half of the operation's id; the high half is its key in the
    /// table.
    seq: u32,
    kind: Kind,
    held: Held,
}

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

// `io_uring_enter` flags (kernel ABI, include/uapi/linux/io_uring.h).
/// Wait for or reap completions (and run deferred task work).
const IORING_ENTER_GETEVENTS: u32 = 1;
/// Wake the SQPOLL thread.
const IORING_ENTER_SQ_WAKEUP: u32 = 2;
/// The argument is an `io_uring_getevents_arg` (timeout, min-wait).
const IORING_ENTER_EXT_ARG: u32 = 8;
/// The fd argument is an index into this thread's registered rings.
const IORING_ENTER_REGISTERED_RING: u32 = 16;

/// The wait a `poll` with no timeout hands the kernel when a min-wait
/// needs an overall timeout beside it (the kernel ends a min-wait with no
/// overall timeout at the min-wait, events or not). Long enough never to
/// matter: `poll` waits again when it expires.
const LONG_WAIT: Duration = Duration::from_secs(3600);

pub(crate) struct Ring {
    /// Closed by hand in `Drop`, before `memory` may go.
    uring: ManuallyDrop<IoUring>,
    ops: Slab<InFlight>,
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
    sqpoll: bool,
    /// Set up with `DEFER_TASKRUN`: completions are posted only inside
    /// this thread's own enters, so nothing wakes a waiter on the fd.
    deferred: bool,
    pool_registered: bool,
    file_slots: Vec<u32>,
    file_table: u32,
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
            .field("deferred", &self.deferred)
            .field("ring_index", &self.ring_index)
            .field("min_wait", &self.min_wait)
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

    /// Registers the pool's provided buffer rings, if it has them: plain,
    /// not incremental (see `bufring` for why).
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
    pub(crate) fn read_multishot(&mut self, file: FileRef, data: UserData) -> io::Result<OpId> {
        let sqe = with_file!(file, |fd| opcode::ReadMulti::new(fd, 0, PROVIDED_GROUP)
            .build());
        self.push(sqe, data, Kind::Other, Held::Nothing)
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
        self.ops.len()
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

    /// Reads up to the buffer's capacity at the file's current position.
    pub(crate) fn read(&mut self, file: FileRef, mut buf: Buf, data: UserData) -> io::Result<OpId> {
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
        self.push(sqe, data, Kind::Other, Held::Buf(buf))
    }

    /// Writes `buf[range]` at the file's current position. With `link`,
    /// the next SQE pushed starts only after this write completed in full
    /// (a short write or an error cancels it): a chain of writes in order.
    pub(crate) fn write(
        &mut self,
        file: FileRef,
        mut buf: Buf,
        range: Range<usize>,
        data: UserData,
        link: bool,
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
        let sqe = if link {
            sqe.flags(squeue::Flags::IO_LINK)
        } else {
            sqe
        };
        self.push(sqe, data, Kind::Write, Held::Buf(buf))
    }

    /// One-shot poll for `mask` (POLLERR and POLLHUP are always reported).
    pub(crate) fn poll_add(&mut self, fd: RawFd, mask: u32, data: UserData) -> io::Result<OpId> {
        let sqe = opcode::PollAdd::new(types::Fd(fd), mask).build();
        self.push(sqe, data, Kind::Other, Held::Nothing)
    }

    /// Moves up to `len` bytes from pipe `from` to pipe `to` in the kernel,
    /// without blocking (`SPLICE_F_NONBLOCK`: -EAGAIN when the source is
    /// empty or the destination full). With `after_poll`, the splice is
    /// linked behind a POLL_ADD for POLLIN on that fd, so it only runs once
    /// data is there: a splice always runs on an io-wq worker, and one left
    /// waiting on an empty pipe would park that worker. The poll's
    /// completions carry `after_poll`'s user data, the splice's `data`.
    pub(crate) fn splice(
        &mut self,
        from: FileRef,
        to: FileRef,
        len: u32,
        after_poll: Option<(RawFd, UserData)>,
        data: UserData,
    ) -> io::Result<(Option<OpId>, OpId)> {
        let splice = splice_sqe(from, to, len);
        let Some((fd, poll_data)) = after_poll else {
            let splice = self.push(splice, data, Kind::Other, Held::Nothing)?;
            return Ok((None, splice));
        };
        // Both SQEs must go out in one submission for the link to hold.
        self.reserve(2)?;
        let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .flags(squeue::Flags::IO_LINK);
        let poll = self.push(poll, poll_data, Kind::Other, Held::Nothing)?;
        let splice = self.push(splice, data, Kind::Other, Held::Nothing)?;
        Ok((Some(poll), splice))
    }

    /// A link of a fan-out round: TEE (copy without
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
        data: UserData,
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
        self.push(sqe, data, Kind::Other, Held::Nothing)
    }

    /// SQEs the submission queue holds: the longest chain that one
    /// submission can carry.
    pub(crate) fn sq_entries(&mut self) -> usize {
        self.uring.submission().capacity()
    }

    /// Makes sure `n` SQEs fit in the SQ, flushing it early if not, so a
    /// linked chain goes out in one submission.
    pub(crate) fn reserve(&mut self, n: usize) -> io::Result<()> {
        let room = {
            let sq = self.uring.submission();
            sq.capacity() - sq.len()
        };
        if room < n {
            self.enter(0, None, None)?;
        }
        Ok(())
    }

    /// Asks the kernel to cancel `target`. Both complete: `target` with
    /// -ECANCELED (or -ERESTARTSYS if it ran in io-wq) unless it had finished.
    pub(crate) fn cancel(&mut self, target: OpId, data: UserData) -> io::Result<OpId> {
        let sqe = opcode::AsyncCancel::new(target.0.get()).build();
        self.push(sqe, data, Kind::Cancel, Held::Nothing)
    }

    /// An 8-byte READ of an eventfd's counter, into a word the operation
    /// owns until its final completion.
    pub(crate) fn read_counter(&mut self, fd: RawFd, data: UserData) -> io::Result<OpId> {
        let mut counter = Box::new(0u64);
        let ptr: *mut u8 = (&mut *counter as *mut u64).cast();
        let sqe = opcode::Read::new(types::Fd(fd), ptr, 8)
            .offset(u64::MAX)
            .build();
        // The word joins its operation; the heap address `ptr` names stays
        // put when the box moves.
        self.push(sqe, data, Kind::Other, Held::Counter { _word: counter })
    }

    /// The ring's fd, for polling it from another event loop.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.uring.as_fd()
    }

    /// Completes with -ETIME after `after`.
    pub(crate) fn timeout(&mut self, after: Duration, data: UserData) -> io::Result<OpId> {
        let ts = Box::new(
            types::Timespec::new()
                .sec(after.as_secs())
                .nsec(after.subsec_nanos()),
        );
        let sqe = opcode::Timeout::new(&*ts).build();
        self.push(sqe, data, Kind::Other, Held::Timespec { _ts: ts })
    }

    fn push(
        &mut self,
        sqe: squeue::Entry,
        data: UserData,
        kind: Kind,
        held: Held,
    ) -> io::Result<OpId> {
        let key = self.ops.vacant_key();
        // Never 0, so an `Option<OpId>` (one per receiver, and more) takes
        // no more room than the id.
        self.seq = self.seq.wrapping_add(1).max(1);
        let id = OpId::of(key, self.seq);
        let sqe = sqe.user_data(id.0.get());
        // SAFETY: every pointer in `sqe` points into `held`, which is moved
        // into the operation table right below and stays there (at a stable
        // heap address) until the final CQE for `id` is reaped.
        while unsafe { self.uring.submission().push(&sqe) }.is_err() {
            // SQ full: flush early, the only case where one turn enters twice.
            self.enter(0, None, None)?;
        }
        if !self.sqpoll {
            self.unsubmitted += 1;
            if kind == Kind::Write {
                self.unsubmitted_writes += 1;
            }
        }
        let inserted = self.ops.insert(InFlight {
            data,
            seq: self.seq,
            kind,
            held,
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
        self.enter(u32::from(wait), timeout, None)
    }

    /// Submits every queued SQE and waits for `want` completions for up
    /// to `hold`; once `hold` has passed, returns as soon as any completion
    /// is there, or at `timeout`. One `io_uring_enter` with the kernel's
    /// min-wait (Linux >= 6.12); before that, a wait for `want` of at most
    /// `hold`, and a second wait for one if nothing came.
    ///
    /// With deferred task work the kernel does not even wake the thread
    /// before `want` completions are ready or `hold` is over.
    pub(crate) fn submit_and_wait_batch(
        &mut self,
        want: u32,
        hold: Duration,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if self.min_wait {
            // Past the timeout, no min-wait: the timeout ends the wait.
            let hold = timeout.map_or(hold, |t| hold.min(t));
            return self.enter(want, Some(timeout.unwrap_or(LONG_WAIT)), Some(hold));
        }
        let first = timeout.map_or(hold, |t| hold.min(t));
        self.enter(want, Some(first), None)?;
        let rest = timeout.map(|t| t.saturating_sub(first));
        if self.uring.completion().is_empty() && rest != Some(Duration::ZERO) {
            self.enter(1, rest, None)?;
        }
        Ok(())
    }

    fn enter(
        &mut self,
        want: u32,
        timeout: Option<Duration>,
        min_wait: Option<Duration>,
    ) -> io::Result<()> {
        // Always GETEVENTS: with DEFER_TASKRUN, completions are only posted
        // by task work, which only an enter carrying GETEVENTS runs; without
        // it a busy-polling loop would never see its completions.
        let mut flags = IORING_ENTER_GETEVENTS;
        if self.sqpoll {
            // The kernel thread picks SQEs up by itself: skip the syscall
            // unless it must wait, wake the thread or flush the CQ, so the
            // counter counts real syscalls only.
            let mut sq = self.uring.submission();
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if sq.need_wakeup() {
                flags |= IORING_ENTER_SQ_WAKEUP;
            } else if want == 0 && !(sq.cq_overflow() || sq.taskrun()) {
                sq.sync();
                return Ok(());
            }
        }
        self.enters += 1;
        let to_submit = self.uring.submission().len() as u32;
        let res = if timeout.is_some() || min_wait.is_some() {
            let t = timeout.unwrap_or(LONG_WAIT);
            let ts = types::Timespec::new()
                .sec(t.as_secs())
                .nsec(t.subsec_nanos());
            let mut args = types::SubmitArgs::new().timespec(&ts);
            if let Some(m) = min_wait {
                // 0 would mean no min-wait at all.
                let usec = m.as_micros().clamp(1, u128::from(u32::MAX)) as u32;
                args = args.min_wait_usec(usec);
            }
            self.raw_enter(to_submit, want, flags | IORING_ENTER_EXT_ARG, Some(&args))
        } else {
            self.raw_enter(to_submit, want, flags, None)
        };
        match res {
            Ok(submitted) => {
                self.unsubmitted = self.unsubmitted.saturating_sub(submitted);
                self.unsubmitted_writes = 0;
                Ok(())
            }
            Err(e) => match e.raw_os_error() {
                // Timed out, interrupted, or completions must be reaped first.
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {
                    // Whether any SQE went in is unknown: assume all did.
                    self.unsubmitted = 0;
                    self.unsubmitted_writes = 0;
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// `io_uring_enter(2)`, naming the ring by its registered index when it
    /// has one. The crate's `Submitter` can do that only for the `Submitter`
    /// that registered it, and `IoUring::submitter` makes a new one per call.
    fn raw_enter(
        &self,
        to_submit: u32,
        want: u32,
        flags: u32,
        args: Option<&types::SubmitArgs<'_, '_>>,
    ) -> io::Result<usize> {
        let (fd, flags) = match self.ring_index {
            Some(index) => (index as libc::c_int, flags | IORING_ENTER_REGISTERED_RING),
            None => (self.uring.as_raw_fd(), flags),
        };
        let (arg, size) = match args {
            Some(a) => (
                std::ptr::from_ref(a).cast::<libc::c_void>(),
                std::mem::size_of::<types::SubmitArgs<'_, '_>>(),
            ),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `fd` names this ring (its fd, or its index in this
        // thread's registered rings: the proactor is `!Send`, so the thread
        // that registered it is the one entering). With EXT_ARG, `arg`
        // points to a `SubmitArgs`, `repr(transparent)` over the kernel's
        // `io_uring_getevents_arg`, and `size` is its size; it and the
        // timespec it points to outlive the call. Without EXT_ARG no
        // argument is passed. Every SQE it submits was made valid by `push`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit,
                want,
                flags,
                arg,
                size,
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret as usize)
        }
    }

    /// Moves every available completion to `out`, flushing CQEs the kernel
    /// kept aside on overflow. Multishot continuations are not final and do
    /// not leave the table.
    pub(crate) fn drain(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        loop {
            // One pass over the CQ (its head moves when the queue handle
            // drops): `uring` and `ops` are borrowed apart.
            let ops = &mut self.ops;
            for cqe in self.uring.completion() {
                let key = (cqe.user_data() >> 32) as usize;
                let Some(op) = ops.get(key) else {
                    continue;
                };
                let id = OpId::of(key, op.seq);
                if id.0.get() != cqe.user_data() {
                    continue;
                }
                let provided = cqueue::buffer_select(cqe.flags());
                if cqueue::more(cqe.flags()) {
                    out.push(Completion {
                        data: op.data,
                        op: id,
                        result: cqe.result(),
                        buf: None,
                        more: true,
                        provided,
                    });
                    continue;
                }
                let op = ops.remove(key);
                out.push(Completion {
                    data: op.data,
                    op: id,
                    result: cqe.result(),
                    buf: match op.held {
                        Held::Buf(buf) => Some(buf),
                        Held::Nothing | Held::Timespec { .. } | Held::Counter { .. } => None,
                    },
                    more: false,
                    provided,
                });
            }
            if self.uring.submission().cq_overflow() {
                // The kernel holds completions that did not fit: an enter
                // with GETEVENTS moves them into the CQ.
                self.enters += 1;
                let to_submit = self.uring.submission().len() as u32;
                let submitted = self.raw_enter(to_submit, 0, IORING_ENTER_GETEVENTS, None)?;
                self.unsubmitted = self.unsubmitted.saturating_sub(submitted);
                self.unsubmitted_writes = 0;
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
            .filter(|(_, op)| op.kind != Kind::Cancel)
            .map(|(key, op)| OpId::of(key, op.seq))
            .collect();
        for target in targets {
            if self.cancel(target, SHUTDOWN).is_err() {
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
    /// The table holds one operation per idle receiver (its armed read):
    /// its size is most of the ring's memory with many FIFOs.
    #[test]
    fn an_operation_in_flight_takes_48_bytes() {
        assert_eq!(std::mem::size_of::<super::InFlight>(), 48);
    }
}
