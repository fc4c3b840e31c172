//! The epoll backend: a completion emulator with the io_uring backend's
//! calls, for hosts where io_uring is refused. Each operation is queued
//! with its opaque user data like an SQE; at the turn's enter it is
//! performed with a non-blocking syscall (`read`/`write` with
//! `RWF_NOWAIT`, `splice`/`tee` with `SPLICE_F_NONBLOCK`); one that would
//! wait is parked on its fd's interest in one epoll instance and retried
//! when the fd is ready; each answers with one [`Completion`], as a CQE
//! would. Polls complete with the events epoll reports, timeouts through
//! one timerfd in the same epoll set, so the epoll fd alone says when
//! there is work (it nests in any loop).
//!
//! What it keeps of io_uring's semantics, and the proactor relies on:
//! - a linked chain (`IOSQE_IO_LINK`) starts each link when the one
//!   before completed in full; a short or failed link, or a cancel,
//!   completes the rest with -ECANCELED;
//! - a read of a FIFO with no writer yet waits (io_uring's READ of a
//!   blocking FIFO does), while a read after a writer left returns 0;
//! - a splice or tee is tried once: -EAGAIN comes back, never a wait;
//! - a cancel completes its target with -ECANCELED, itself with 0, or
//!   -ENOENT when the target already completed.
//!
//! Every fd is epoll-registered one-shot (`EPOLLONESHOT`) and re-armed
//! with `EPOLL_CTL_MOD` when an operation parks on it: epoll keys an entry
//! by fd and open file, so a closed fd whose number came back with another
//! file is never taken for the old one (MOD fails, ADD follows), and an
//! entry left behind fires at most once, harmlessly. The proactor closes
//! no fd while an operation on it is in flight.
//!
//! The file table stands in for io_uring's registered files: a
//! transport's fd is made `O_NONBLOCK` when it joins (FIFOs refuse
//! `RWF_NOWAIT`), and leaves before it closes; an operation that names
//! such an fd raw (a multishot read) reads it plain too. No kernel
//! resource, the table grows past its configured size. Reads that select a
//! buffer, multishot ones included, take it from the pool's provided
//! rings when data is there, as the kernel would: a waiting receiver
//! holds none. Not emulated, because the proactor does without them:
//! registered buffers (any memory will do), batched waits.

mod ops;
mod perform;
mod sys;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

use perform::{Step, Work, perform};

use super::{Completion, OpId, RingConfig, UserData};
use crate::buffers::{Buf, Pool};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const ERR: u32 = libc::EPOLLERR as u32;
const HUP: u32 = libc::EPOLLHUP as u32;

/// The most reads a multishot read makes in one turn; the last ends it
/// (a final completion with its bytes) and its receiver arms a fresh one.
/// So a writer that keeps pace with it cannot keep one read going for
/// ever, starving the other fds and holding ever more buffers, and a
/// pause takes effect within this many reads (io_uring's multishot read
/// also retries a bounded number of times per wake-up).
const MULTISHOT_BUDGET: u32 = 8;

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Pushed, performed at the next enter.
    Queued,
    /// Behind a link of its chain that has not completed yet.
    Linked,
    /// Waiting for its fd to be ready.
    Parked,
    /// A timeout waiting for its deadline.
    Timer,
}

#[derive(Debug)]
struct Op {
    data: UserData,
    seq: u32,
    work: Work,
    stage: Stage,
    buf: Option<Buf>,
    /// The next link of its chain, started when this one completes in full.
    next: Option<OpId>,
}

/// The operations parked on one fd.
#[derive(Debug, Default)]
struct FdWaits {
    ops: Vec<OpId>,
    /// Believed to have an epoll entry (MOD first, else ADD first).
    registered: bool,
    /// Parked on since the last arming: re-armed before the next wait.
    dirty: bool,
    /// In the file table: registered edge-triggered for as long as it is
    /// there, so parking costs no syscall (see `register_file`).
    edge: bool,
    /// In the file table, so `O_NONBLOCK`: an operation that names it by
    /// its raw fd (a multishot read does) transfers with a plain `read` or
    /// `write`, not `RWF_NOWAIT` first, which FIFOs refuse.
    nonblocking: bool,
}

/// The epoll backend (see the module docs).
#[derive(Debug)]
pub(crate) struct Epoll {
    ep: OwnedFd,
    /// Expires at the earliest timeout's deadline.
    timer: OwnedFd,
    /// Readable while completions wait to be taken after a `submit`, so
    /// a loop sleeping on the epoll fd wakes for them.
    wake: OwnedFd,
    woken: bool,
    /// The deadline `timer` is armed for.
    timer_at: Option<Instant>,
    ops: Slab<Op>,
    seq: u32,
    queued: Vec<OpId>,
    /// Cancels pushed since the last enter: run before `queued`, so an
    /// operation cancelled before it ever ran is not performed (a read its
    /// receiver's `pause` cancelled takes no more bytes).
    cancels: Vec<OpId>,
    /// The last op pushed asked for its successor to be linked to it.
    link_from: Option<OpId>,
    /// Indexed by fd.
    waits: Vec<FdWaits>,
    dirty: Vec<RawFd>,
    timers: Vec<(Instant, OpId)>,
    done: std::collections::VecDeque<Completion>,
    events: Vec<libc::epoll_event>,
    spare: Vec<OpId>,
    waits_syscalls: u64,
    sq_entries: usize,
    /// The file table: slot -> fd (-1: free), every fd in it `O_NONBLOCK`.
    files: Vec<RawFd>,
    free_slots: Vec<u32>,
    /// The pool whose provided rings reads take buffers from.
    provided: Option<Rc<Pool>>,
}

impl Epoll {
    /// An epoll instance with its timerfd and wake-up eventfd.
    pub(crate) fn new(cfg: &RingConfig) -> io::Result<Epoll> {
        let ep = sys::epoll_create()?;
        let timer = sys::timerfd()?;
        let wake = sys::eventfd()?;
        for fd in [&timer, &wake] {
            sys::epoll_ctl(&ep, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), IN)?;
        }
        Ok(Epoll {
            ep,
            timer,
            wake,
            woken: false,
            timer_at: None,
            ops: Slab::new(),
            seq: 0,
            queued: Vec::new(),
            cancels: Vec::new(),
            link_from: None,
            waits: Vec::new(),
            dirty: Vec::new(),
            timers: Vec::new(),
            done: std::collections::VecDeque::new(),
            events: Vec::with_capacity(256),
            spare: Vec::new(),
            waits_syscalls: 0,
            sq_entries: cfg.sq_entries.max(1) as usize,
            files: vec![-1; cfg.files as usize],
            free_slots: (0..cfg.files).rev().collect(),
            provided: None,
        })
    }

    fn push(&mut self, work: Work, data: UserData, buf: Option<Buf>, link: bool) -> OpId {
        let key = self.ops.vacant_key();
        self.seq = self.seq.wrapping_add(1).max(1);
        let id = OpId::of(key, self.seq);
        let stage = match self.link_from.take() {
            Some(prev) => match self.get_mut(prev) {
                Some(p) => {
                    p.next = Some(id);
                    Stage::Linked
                }
                // The link before already failed: so does this one, at
                // the enter (io_uring would fail it at once too).
                None => Stage::Queued,
            },
            None => Stage::Queued,
        };
        if stage == Stage::Queued {
            match work {
                Work::Cancel { .. } => self.cancels.push(id),
                _ => self.queued.push(id),
            }
        }
        self.ops.insert(Op {
            data,
            seq: self.seq,
            work,
            stage,
            buf,
            next: None,
        });
        if link {
            self.link_from = Some(id);
        }
        id
    }

    fn get_mut(&mut self, id: OpId) -> Option<&mut Op> {
        op_mut(&mut self.ops, id)
    }

    /// Performs `id` for the first time.
    fn start(&mut self, id: OpId) {
        let Some(op) = self.get_mut(id) else {
            return;
        };
        match op.work {
            Work::Cancel { target } => {
                let result = self.cancel_now(target);
                self.finish(id, result);
            }
            Work::Timeout { after } => {
                op.stage = Stage::Timer;
                let at = Instant::now() + after;
                self.timers.push((at, id));
                if self.timer_at.is_none_or(|t| at < t)
                    && sys::timerfd_arm(&self.timer, after).is_ok()
                {
                    self.timer_at = Some(at);
                }
            }
            _ => self.attempt(id, None, false),
        }
    }

    /// Tries `id` (again, with epoll's `revents`): completes it, or parks
    /// it (`parked`: it was on its fd's list) until its fd is ready.
    fn attempt(&mut self, id: OpId, revents: Option<u32>, parked: bool) {
        // A multishot read reads until the pipe is empty (an edge-triggered
        // fd says nothing of bytes left behind) or the ring runs dry, or
        // for at most MULTISHOT_BUDGET reads (see there).
        let mut reads = 0;
        loop {
            let Some(op) = op_mut(&mut self.ops, id) else {
                return;
            };
            let data = op.data;
            // An edge-triggered fd reports no readiness it already had:
            // a poll asks the fd itself on its first try.
            let first_poll = match (revents, &op.work) {
                (None, &Work::Poll { fd, mask }) => Some((fd, mask)),
                _ => None,
            };
            let revents = match first_poll {
                Some((fd, mask)) if self.is_edge(fd) => Some(sys::poll_now(fd, mask)),
                _ => revents,
            };
            let Some(op) = op_mut(&mut self.ops, id) else {
                return;
            };
            match perform(op, revents, self.provided.as_ref()) {
                Step::Done(result, provided) => return self.finish_with(id, result, provided),
                Step::More(result, bid) if reads + 1 >= MULTISHOT_BUDGET => {
                    return self.finish_with(id, result, Some(bid));
                }
                Step::More(result, bid) => {
                    reads += 1;
                    self.done.push_back(Completion {
                        data,
                        op: id,
                        result,
                        buf: None,
                        more: true,
                        provided: Some(bid),
                    });
                }
                Step::Park => break,
            }
        }
        if !parked {
            self.park(id);
        } else if let Some((fd, _)) = self.get_mut(id).and_then(|op| op.work.interest())
            && let Some(w) = usize::try_from(fd).ok().and_then(|i| self.waits.get_mut(i))
        {
            w.ops.push(id);
        }
    }

    fn park(&mut self, id: OpId) {
        let Some(op) = self.get_mut(id) else {
            return;
        };
        op.stage = Stage::Parked;
        let Some((fd, _)) = op.work.interest() else {
            return;
        };
        let Ok(slot) = usize::try_from(fd) else {
            self.finish(id, -libc::EBADF);
            return;
        };
        if self.waits.len() <= slot {
            self.waits.resize_with(slot + 1, FdWaits::default);
        }
        let w = &mut self.waits[slot];
        w.ops.push(id);
        if !w.dirty && !w.edge {
            w.dirty = true;
            self.dirty.push(fd);
        }
    }

    /// The fd's waits, grown to hold it.
    fn waits_of(&mut self, fd: RawFd) -> Option<&mut FdWaits> {
        let slot = usize::try_from(fd).ok()?;
        if self.waits.len() <= slot {
            self.waits.resize_with(slot + 1, FdWaits::default);
        }
        self.waits.get_mut(slot)
    }

    /// Whether `fd` is in the file table, so known `O_NONBLOCK`.
    fn in_table(&self, fd: RawFd) -> bool {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.waits.get(i))
            .is_some_and(|w| w.nonblocking)
    }

    /// Whether `fd` is registered edge-triggered (in the file table).
    fn is_edge(&self, fd: RawFd) -> bool {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.waits.get(i))
            .is_some_and(|w| w.edge)
    }

    /// Completes `id` with `result`, and starts or fails the rest of its
    /// chain.
    fn finish(&mut self, id: OpId, result: i32) {
        self.finish_with(id, result, None);
    }

    /// `finish`, naming the provided buffer the operation filled.
    fn finish_with(&mut self, id: OpId, result: i32, provided: Option<u16>) {
        let key = (id.0.get() >> 32) as usize;
        if self.get_mut(id).is_none() {
            return;
        }
        let op = self.ops.remove(key);
        let whole = result >= 0
            && match &op.work {
                Work::Write { range, .. } => result as usize == range.len(),
                Work::Splice { len, .. } | Work::Tee { len, .. } => result as u32 == *len,
                _ => true,
            };
        self.done.push_back(Completion {
            data: op.data,
            op: id,
            result,
            buf: op.buf,
            more: false,
            provided,
        });
        if let Some(next) = op.next {
            if whole {
                self.start(next);
            } else {
                self.finish(next, -libc::ECANCELED);
            }
        }
    }

    /// Cancels `target` now: 0, or -ENOENT if it is not in flight.
    fn cancel_now(&mut self, target: OpId) -> i32 {
        let Some(op) = self.get_mut(target) else {
            return -libc::ENOENT;
        };
        if matches!(op.work, Work::Cancel { .. }) {
            return -libc::ENOENT;
        }
        match (op.stage, op.work.interest()) {
            (Stage::Parked, Some((fd, _))) => {
                if let Some(w) = usize::try_from(fd).ok().and_then(|i| self.waits.get_mut(i)) {
                    w.ops.retain(|id| *id != target);
                }
            }
            (Stage::Timer, _) => self.timers.retain(|(_, id)| *id != target),
            _ => {}
        }
        self.finish(target, -libc::ECANCELED);
        0
    }

    /// Re-arms the epoll entry of every fd parked on since the last time.
    fn arm_dirty(&mut self) -> io::Result<()> {
        while let Some(fd) = self.dirty.pop() {
            let Some(w) = usize::try_from(fd).ok().and_then(|i| self.waits.get_mut(i)) else {
                continue;
            };
            w.dirty = false;
            if w.edge {
                // Registered edge-triggered for as long as it is in the table.
                continue;
            }
            let mut mask = 0;
            for id in &w.ops {
                let key = (id.0.get() >> 32) as usize;
                if let Some((_, m)) = self.ops.get(key).and_then(|op| op.work.interest()) {
                    mask |= m;
                }
            }
            if w.ops.is_empty() {
                continue;
            }
            let events = mask | libc::EPOLLONESHOT as u32;
            let (first, second) = match w.registered {
                true => (libc::EPOLL_CTL_MOD, libc::EPOLL_CTL_ADD),
                false => (libc::EPOLL_CTL_ADD, libc::EPOLL_CTL_MOD),
            };
            let armed = sys::epoll_ctl(&self.ep, first, fd, events)
                .or_else(|_| sys::epoll_ctl(&self.ep, second, fd, events));
            match armed {
                Ok(()) => w.registered = true,
                Err(e) => {
                    // Not pollable (or closed): every op on it fails.
                    w.registered = false;
                    let errno = -e.raw_os_error().unwrap_or(libc::EBADF);
                    let ops = std::mem::take(&mut w.ops);
                    for id in ops {
                        self.finish(id, errno);
                    }
                }
            }
        }
        Ok(())
    }

    /// Retries what is parked on `fd`, which epoll reported with `revents`.
    fn ready(&mut self, fd: RawFd, revents: u32) {
        let Some(slot) = usize::try_from(fd).ok().filter(|&i| i < self.waits.len()) else {
            return;
        };
        let mut list = std::mem::take(&mut self.spare);
        std::mem::swap(&mut list, &mut self.waits[slot].ops);
        for &id in &list {
            self.attempt(id, Some(revents), true);
        }
        list.clear();
        self.spare = list;
        let w = &mut self.waits[slot];
        if !w.ops.is_empty() && !w.dirty && !w.edge {
            w.dirty = true;
            self.dirty.push(fd);
        }
    }

    /// Completes every timeout whose deadline passed; re-arms the timer.
    fn expire_timers(&mut self) {
        sys::clear_counter(&self.timer);
        self.timer_at = None;
        let now = Instant::now();
        let mut i = 0;
        while i < self.timers.len() {
            let (at, id) = self.timers[i];
            if at <= now {
                self.timers.swap_remove(i);
                self.finish(id, -libc::ETIME);
            } else {
                i += 1;
            }
        }
        if let Some(at) = self.timers.iter().map(|(at, _)| *at).min()
            && sys::timerfd_arm(&self.timer, at.saturating_duration_since(now)).is_ok()
        {
            self.timer_at = Some(at);
        }
    }

    /// Performs what was queued since the last enter, then one
    /// `epoll_wait`: up to `timeout` when `wait` is set and nothing has
    /// completed yet, else without waiting.
    pub(crate) fn submit_and_wait(
        &mut self,
        wait: bool,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.start_queued()?;
        if self.ops.is_empty() && !self.woken {
            // Nothing parked, no timer: epoll has nothing to say.
            return Ok(());
        }
        let timeout = match wait && self.done.is_empty() {
            true => timeout,
            false => Some(Duration::ZERO),
        };
        self.waits_syscalls += 1;
        let mut events = std::mem::take(&mut self.events);
        let waited = sys::epoll_wait(&self.ep, &mut events, timeout);
        for ev in &events {
            let (fd, revents) = (ev.u64 as RawFd, ev.events);
            if fd == self.timer.as_raw_fd() {
                self.expire_timers();
            } else if fd == self.wake.as_raw_fd() {
                sys::clear_counter(&self.wake);
                self.woken = false;
            } else {
                self.ready(fd, revents);
            }
        }
        self.events = events;
        waited?;
        self.arm_dirty()
    }

    /// Performs what was queued, without waiting; completions it leaves
    /// make the epoll fd readable until the next wait.
    pub(crate) fn submit(&mut self) -> io::Result<()> {
        self.start_queued()?;
        if !self.done.is_empty() && !self.woken {
            sys::signal(&self.wake);
            self.woken = true;
        }
        Ok(())
    }

    fn start_queued(&mut self) -> io::Result<()> {
        // A chain never spans enters.
        self.link_from = None;
        // Cancels first: a target they finish leaves the table, and the
        // pass below skips it.
        for id in std::mem::take(&mut self.cancels) {
            self.start(id);
        }
        let mut queued = std::mem::take(&mut self.queued);
        for &id in &queued {
            self.start(id);
        }
        queued.clear();
        if self.queued.is_empty() {
            self.queued = queued;
        }
        self.arm_dirty()
    }

    /// Moves every completion to `out`.
    /// The next completion, in the order they happened; `None` once
    /// there is none.
    pub(crate) fn next_completion(&mut self) -> io::Result<Option<Completion>> {
        Ok(self.done.pop_front())
    }

    /// Drops every operation: none is in the kernel, so nothing waits.
    pub(crate) fn cancel_all_and_drain(&mut self, _grace: Duration, _untracked: &[OpId]) -> bool {
        self.ops.clear();
        self.queued.clear();
        self.cancels.clear();
        self.timers.clear();
        self.done.clear();
        self.waits.clear();
        self.dirty.clear();
        true
    }
}

/// The live operation `id` names (its key, and its sequence number).
fn op_mut(ops: &mut Slab<Op>, id: OpId) -> Option<&mut Op> {
    let key = (id.0.get() >> 32) as usize;
    ops.get_mut(key).filter(|op| OpId::of(key, op.seq) == id)
}
