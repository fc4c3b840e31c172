//! Entering the kernel: one `io_uring_enter` per loop turn that submits
//! everything queued and waits as `poll` asks (for one completion, a
//! batch with the kernel's min-wait, or a two-wait fallback), by the
//! ring's registered index where it has one; and room in the SQ for a
//! linked chain.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::types;

use super::Uring;

// `io_uring_enter` flags (kernel ABI, include/uapi/linux/io_uring.h).
/// Wait for or reap completions (and run deferred task work).
const IORING_ENTER_GETEVENTS: u32 = 1;
/// Wake the SQPOLL thread.
const IORING_ENTER_SQ_WAKEUP: u32 = 2;
/// The argument is an `io_uring_getevents_arg` (timeout, min-wait).
const IORING_ENTER_EXT_ARG: u32 = 8;
/// The fd argument is an index into this thread's registered rings.
const IORING_ENTER_REGISTERED_RING: u32 = 16;
/// A wait that is not counted as iowait (`IORING_FEAT_NO_IOWAIT`).
pub(super) const IORING_ENTER_NO_IOWAIT: u32 = 128;

/// The task-work items the kernel runs per enter with `DEFER_TASKRUN`
/// (`IO_LOCAL_TW_DEFAULT_MAX`): at most max(this, wait_nr).
const TASK_WORK_PASS: usize = 20;

/// The wait a `poll` with no timeout hands the kernel when a min-wait
/// needs an overall timeout beside it (the kernel ends a min-wait with no
/// overall timeout at the min-wait, events or not). Long enough never to
/// matter: `poll` waits again when it expires.
const LONG_WAIT: Duration = Duration::from_secs(3600);

impl Uring {
    /// Moves the completions the kernel kept aside on CQ overflow into
    /// the CQ: an enter with GETEVENTS (submitting what is queued too).
    pub(super) fn flush_overflow(&mut self) -> io::Result<()> {
        self.enters += 1;
        let to_submit = self.uring.submission().len() as u32;
        let submitted = self.raw_enter(to_submit, 0, IORING_ENTER_GETEVENTS, None)?;
        self.unsubmitted = self.unsubmitted.saturating_sub(submitted);
        self.unsubmitted_writes = 0;
        Ok(())
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

    /// One `io_uring_enter`: submits every queued SQE and, when `wait` is set,
    /// waits for at least one completion or until `timeout`.
    #[inline]
    pub(crate) fn submit_and_wait(
        &mut self,
        wait: bool,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if timeout.is_none() && !self.sqpoll {
            return self.enter_plain(u32::from(wait));
        }
        self.enter(u32::from(wait), timeout, None)
    }

    /// [`enter`](Self::enter) with no timeout on a ring without SQPOLL:
    /// a paced `poll`'s turn, kept small (no argument to build).
    #[inline]
    fn enter_plain(&mut self, want: u32) -> io::Result<()> {
        self.enters += 1;
        let to_submit = self.uring.submission().len() as u32;
        match self.raw_enter(to_submit, want, IORING_ENTER_GETEVENTS, None) {
            Ok(submitted) => {
                self.entered(submitted);
                Ok(())
            }
            Err(e) => self.enter_failed(e),
        }
    }

    /// After an enter that submitted `submitted` SQEs.
    #[inline]
    fn entered(&mut self, submitted: usize) {
        self.unsubmitted = self.unsubmitted.saturating_sub(submitted);
        self.unsubmitted_writes = 0;
        if self.deferred && self.uring.completion().len() >= TASK_WORK_PASS {
            self.run_rest_of_wave();
        }
    }

    /// An enter failed: a timeout, an interruption or a full CQ are no
    /// failure of the turn.
    #[cold]
    fn enter_failed(&mut self, e: io::Error) -> io::Result<()> {
        match e.raw_os_error() {
            // Timed out, interrupted, or completions must be reaped first.
            Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {
                // Whether any SQE went in is unknown: assume all did.
                self.unsubmitted = 0;
                self.unsubmitted_writes = 0;
                Ok(())
            }
            _ => Err(e),
        }
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

    pub(super) fn enter(
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
                self.entered(submitted);
                Ok(())
            }
            Err(e) => self.enter_failed(e),
        }
    }

    /// Runs the task work a wave left queued. With `DEFER_TASKRUN` an
    /// enter runs at most max(20, wait_nr) task-work items (each multishot
    /// read woken is one), so a wave over hundreds of FIFOs would take an
    /// enter per 20 FIFOs. When the CQ came back with a full pass, enter
    /// again asking for at most as many completions as the CQ already
    /// holds, unreaped: the kernel runs that many more items and returns
    /// at once, since the CQ holds enough (it never sleeps here). The
    /// passes double, up to the wave a turn may take (`set_wave`) and half
    /// the CQ; a paced turn (a completion or a few) enters once.
    #[inline(never)]
    fn run_rest_of_wave(&mut self) {
        let mut ready = self.uring.completion().len();
        let most = self.wave.min(self.uring.completion().capacity() / 2);
        while ready >= TASK_WORK_PASS && ready + TASK_WORK_PASS <= most {
            let want = ready.min(most - ready);
            self.enters += 1;
            // Nothing is queued: the enter that came before submitted it.
            // A failure only leaves the rest to the next poll.
            let wait_nr = u32::try_from(want).unwrap_or(u32::MAX);
            if self
                .raw_enter(0, wait_nr, IORING_ENTER_GETEVENTS, None)
                .is_err()
            {
                return;
            }
            let now = self.uring.completion().len();
            // Less than the pass asked for: the queued work ran out.
            if now - ready < want.max(TASK_WORK_PASS) {
                return;
            }
            ready = now;
        }
    }

    /// `io_uring_enter(2)`, naming the ring by its registered index when it
    /// has one. The crate's `Submitter` can do that only for the `Submitter`
    /// that registered it, and `IoUring::submitter` makes a new one per call.
    #[inline]
    fn raw_enter(
        &self,
        to_submit: u32,
        want: u32,
        flags: u32,
        args: Option<&types::SubmitArgs<'_, '_>>,
    ) -> io::Result<usize> {
        let flags = if flags & IORING_ENTER_GETEVENTS != 0 {
            flags | self.enter_flags
        } else {
            flags
        };
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
}
