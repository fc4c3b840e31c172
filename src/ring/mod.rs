//! The io_uring instance: setup and feature probe, SQ push with flush-when-full,
//! one `io_uring_enter` per loop turn, CQ drain, and the operation table.
//!
//! Every operation is entered in the table before its SQE is pushed and leaves
//! it only with its final CQE, taking back the buffer it owned. So no buffer is
//! freed while the kernel may touch it. The SQE's `user_data` is the table key
//! plus a sequence number, unique among live operations, so a cancel never
//! hits a later operation that reused the key.

mod sigpipe;

pub(crate) use sigpipe::ignore_sigpipe_if_default;

use std::io;
use std::mem::ManuallyDrop;
use std::ops::Range;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use slab::Slab;

use crate::buffers::{Buf, PROVIDED_GROUP, Pool};
use crate::error::Error;

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

/// How the ring is set up. Built by [`crate::Builder`].
#[derive(Debug, Clone)]
pub(crate) struct RingConfig {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub sqpoll_idle: Option<Duration>,
    pub files: u32,
}

impl RingConfig {
    /// Bytes of the ring's queues, which the kernel (6.14 and later)
    /// charges to `RLIMIT_MEMLOCK` like registered buffers: the CQ ring
    /// (a 64-byte header, 16-byte CQEs, the 4-byte SQ index array) and the
    /// 64-byte SQEs, each in whole pages, with the kernel's power-of-two
    /// rounding. Measured on 6.18: 9 pages for 256 / 1024 entries, 2 for
    /// 1 / 2. The registered file table is not charged.
    pub(crate) fn locked_bytes(&self) -> u64 {
        let sq = u64::from(self.sq_entries.max(1).next_power_of_two());
        let cq = u64::from(self.cq_entries.max(2 * self.sq_entries.max(1))).next_power_of_two();
        let pages = |bytes: u64| bytes.div_ceil(4096) * 4096;
        pages((64 + cq * 16).next_multiple_of(64) + sq * 4) + pages(sq * 64)
    }
}

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
}

/// Names a live operation (its SQE `user_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpId(u64);

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
}

/// `io_uring_enter` flag: wait for or reap completions (kernel ABI).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// Opcodes the proactor cannot work without.
const REQUIRED: [(u8, &str); 9] = [
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::ReadFixed::CODE, "READ_FIXED"),
    (opcode::WriteFixed::CODE, "WRITE_FIXED"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Splice::CODE, "SPLICE"),
    (opcode::Tee::CODE, "TEE"),
];

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
    pub(crate) fn new(cfg: &RingConfig) -> Result<Ring, Error> {
        let sq = cfg.sq_entries.max(1);
        let cq = cfg.cq_entries.max(2 * sq);
        let uring = retry_while_memlock_drains(|| match cfg.sqpoll_idle {
            Some(idle) => IoUring::builder()
                .setup_single_issuer()
                .setup_sqpoll(idle.as_millis().clamp(1, u32::MAX as u128) as u32)
                .setup_cqsize(cq)
                .build(sq),
            None => build_deferred(sq, cq),
        })
        .map_err(setup_error)?;
        if !uring.params().is_feature_nodrop() || !uring.params().is_feature_ext_arg() {
            return Err(Error::Unsupported {
                what: "io_uring features NODROP and EXT_ARG (Linux >= 5.11)".into(),
                source: None,
            });
        }
        let mut probe = Probe::new();
        uring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| Error::Unsupported {
                what: "IORING_REGISTER_PROBE".into(),
                source: Some(e),
            })?;
        let missing: Vec<&str> = REQUIRED
            .iter()
            .filter(|(code, _)| !probe.is_supported(*code))
            .map(|(_, name)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(Error::Unsupported {
                what: format!("io_uring opcodes {}", missing.join(", ")),
                source: None,
            });
        }
        let file_table = cfg.files;
        if file_table > 0 {
            uring
                .submitter()
                .register_files_sparse(file_table)
                .map_err(|e| Error::Ring {
                    op: "register_files_sparse",
                    source: e,
                })?;
        }
        Ok(Ring {
            uring: ManuallyDrop::new(uring),
            ops: Slab::new(),
            seq: 0,
            unsubmitted: 0,
            enters: 0,
            sqpoll: cfg.sqpoll_idle.is_some(),
            pool_registered: false,
            file_slots: (0..file_table).rev().collect(),
            file_table,
            cqes: Vec::new(),
            memory: None,
        })
    }

    /// Whether multishot reads are supported (Linux >= 6.7).
    pub(crate) fn supports_read_multishot(&self) -> bool {
        let mut probe = Probe::new();
        self.uring.submitter().register_probe(&mut probe).is_ok()
            && probe.is_supported(opcode::ReadMulti::CODE)
    }

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
            retry_while_memlock_drains(register)?;
        } else {
            register()?;
        }
        self.pool_registered = true;
        self.memory = Some(Rc::clone(pool));
        Ok(())
    }

    /// Registers the pool's provided buffer ring, if it has one.
    pub(crate) fn register_provided(&mut self, pool: &Rc<Pool>) -> io::Result<bool> {
        let Some((addr, entries)) = pool.provided_ring() else {
            return Ok(false);
        };
        // SAFETY: the entries and buffers live in the pool's mapping, which
        // the ring keeps (`memory`) until after it has closed the io_uring
        // fd, which ends the registration (see `Drop`).
        unsafe {
            self.uring.submitter().register_buf_ring_with_flags(
                addr,
                entries,
                PROVIDED_GROUP,
                0,
            )?;
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

    /// Caps io-wq worker threads per NUMA node: `[bounded, unbounded]`
    /// (pipe work is unbounded). Splices run there.
    pub(crate) fn set_iowq_max_workers(&self, bounded: u32, unbounded: u32) -> io::Result<()> {
        let mut max = [bounded, unbounded];
        self.uring.submitter().register_iowq_max_workers(&mut max)
    }

    /// Asks the kernel to cancel `target`. Both complete: `target` with
    /// -ECANCELED (or -ERESTARTSYS if it ran in io-wq) unless it had finished.
    pub(crate) fn cancel(&mut self, target: OpId, owner: u64) -> io::Result<OpId> {
        let sqe = opcode::AsyncCancel::new(target.0).build();
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
        self.seq = self.seq.wrapping_add(1);
        let id = OpId(((key as u64) << 32) | u64::from(self.seq));
        let sqe = sqe.user_data(id.0);
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
                if op.id.0 != cqe.user_data() {
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

/// Longest wait for locked memory of closed rings to come back.
const MEMLOCK_DRAIN: Duration = Duration::from_secs(2);

/// Runs `lock` again while it fails with ENOMEM and the kernel counts
/// this user's locked memory, for up to [`MEMLOCK_DRAIN`]: ring queues and
/// registered buffers count against `RLIMIT_MEMLOCK`, and a closed ring's
/// share comes back only when the kernel's exit work has run (5 to 110 ms
/// measured on 6.18, longer under load), so a program that closes and
/// opens rings back to back, or its sibling processes, can find the budget
/// full for a moment.
fn retry_while_memlock_drains<T>(mut lock: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match lock() {
            Err(e)
                if e.raw_os_error() == Some(libc::ENOMEM)
                    && start.elapsed() < MEMLOCK_DRAIN
                    && crate::buffers::Memlock::current().is_counted() =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn build_deferred(sq: u32, cq: u32) -> io::Result<IoUring> {
    // Newest mode first; fall back when a flag is refused with EINVAL.
    let attempts: [fn(&mut io_uring::Builder) -> &mut io_uring::Builder; 3] = [
        |b| b.setup_single_issuer().setup_defer_taskrun(),
        |b| b.setup_single_issuer().setup_coop_taskrun(),
        |b| b,
    ];
    let mut last = None;
    for set in attempts {
        let mut builder = IoUring::builder();
        set(&mut builder).setup_cqsize(cq);
        match builder.build(sq) {
            Ok(ring) => return Ok(ring),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Turns an `io_uring_setup` failure into one error that names the cause.
fn setup_error(e: io::Error) -> Error {
    let what = match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "io_uring_setup: the kernel has no io_uring (or seccomp blocks it)".to_string()
        }
        Some(libc::EPERM) => {
            let knob = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            format!(
                "io_uring_setup refused: kernel.io_uring_disabled = {knob} \
                 (0 enables it for everyone), or a seccomp filter denies it"
            )
        }
        Some(libc::ENOMEM) => {
            let limit = crate::buffers::Memlock::current().limit;
            format!(
                "io_uring_setup: out of memory or of locked memory: the ring's queues count \
                 against RLIMIT_MEMLOCK ({}), which all of this user's rings share, \
                 and closed rings give theirs back only some milliseconds later; \
                 fewer sq/cq entries need less",
                limit.map_or_else(|| "unlimited".to_string(), |l| format!("{l} bytes"))
            )
        }
        _ => "io_uring_setup".to_string(),
    };
    Error::Unsupported {
        what,
        source: Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_bytes_match_what_6_18_charges() {
        // (sq, cq, pages) measured as an unprivileged user on 6.18.
        for (sq, cq, pages) in [
            (1, 2, 2),
            (32, 64, 2),
            (128, 256, 4),
            (256, 512, 7),
            (256, 1024, 9),
            (512, 2048, 17),
            (1024, 4096, 34),
        ] {
            let cfg = RingConfig {
                sq_entries: sq,
                cq_entries: cq,
                sqpoll_idle: None,
                files: 4096,
            };
            assert_eq!(cfg.locked_bytes(), pages * 4096, "sq {sq} cq {cq}");
        }
    }
}
