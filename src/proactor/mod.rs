//! The event loop: the [`Proactor`] type, its public calls, `poll` and
//! `Drop`. The proactor routes; each part owns its state and handles the
//! completions of its own operations:
//!
//! - `receiver`: a receiver's reads (single-shot, multishot), delivery as
//!   `Data` or frames, EOF and reopen;
//! - `sender`: a sender's queue, its chain of writes, watermarks, the
//!   reader leaving, close after flush;
//! - `splice`: a receiver spliced into senders (relays and fan-outs) and
//!   its strategies; `relay_pipes`: their pipes, grown within one budget
//!   per process;
//! - `waiting`: senders waiting for a reader (inotify, retry timer);
//! - `wait`: how `poll` holds a blocking wait (batches, echo hold);
//! - `link`: which receiver feeds which senders, both sides at once;
//! - `notify`: the `Notifier`'s eventfd; `watch`: crate-internal waits on
//!   other fds (a child's pidfd);
//! - `end`: what every transport is (handle, state, fd, ops in flight,
//!   counters from `counters`); `registry`: the transport table and handle
//!   lookup; `io`: the ring, the pool and the pending events every part
//!   acts through; `route`: what the ring's user data means.
//!
//! This file holds the proactor's public calls, `poll` and `Drop`. Where a
//! step needs the whole proactor it is an `impl Proactor` of its own room:
//! `dispatch` (a completion routed to its part, and what the part asks
//! for next routed on), `send` (the send family and what a sender asks
//! for next: its writes, a close, the waiting list), `relay` (relays and
//! fan-outs: two transports at once), `close` (a close touches the link,
//! the waiting list and the ring), `stats` (reads every transport);
//! `builder` builds it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{CloseReason, Events, Item};
use crate::fifo::{self, FifoOptions, ReadMode};
use crate::ring::{BackendInUse, OpId};
use crate::token::{Receiver, Sender, Token};
use crate::transport::State;

mod builder;
mod close;
mod counters;
mod dispatch;
mod end;
mod io;
mod link;
mod mailbox;
mod name;
mod notify;
mod receiver;
mod registry;
mod relay;
mod relay_pipes;
mod route;
mod send;
mod sender;
mod splice;
mod stats;
mod wait;
mod waiting;
mod watch;

pub use builder::Builder;
pub use mailbox::{MailSender, Mailbox};
pub use notify::Notifier;
use receiver::{Reads, ReceiverSide};
use registry::{Role, Table};
use sender::SendSide;
pub use splice::FanOutPolicy;
pub use stats::{Snapshot, Stats};
pub(crate) use watch::Watch;

const ECANCELED: i32 = -libc::ECANCELED;
/// What an op that was running in io-wq completes with when cancelled.
const ERESTARTSYS: i32 = -512;

/// A single-threaded io_uring proactor over pipes and FIFOs.
///
/// Open ends with [`open_receiver`](Self::open_receiver) and
/// [`open_sender`](Self::open_sender), queue bytes with
/// [`send`](Self::send), and call [`poll`](Self::poll) in a loop: each call
/// submits everything queued since the last one in a single
/// `io_uring_enter`, waits, and reports finished work as [`Events`].
///
/// A `Proactor` is neither `Send` nor `Sync`: the ring is set up for one
/// issuing thread. Dropping it cancels every operation in flight and waits
/// for their completions before any fd or buffer is released. Receivers are
/// abandoned with it: a read the kernel completes before its cancel takes
/// its bytes out of the pipe with it. (A proactor dropped before its first
/// poll submits nothing at all.) Close receivers and poll until `Closed` to
/// stop reading without losing anything.
#[derive(Debug)]
pub struct Proactor {
    /// The ring, the buffer pool and the events of the next poll.
    io: io::Io,
    /// Every transport, by slot; stamps this proactor's identity on
    /// handles.
    table: Table,
    /// The read configuration, and receivers starved of buffers.
    reads: Reads,
    /// Senders waiting for a reader.
    waiting: waiting::Waiting,
    /// How `poll` holds a blocking wait.
    wait: wait::WaitPolicy,
    /// How relays and fan-outs splice.
    splicing: splice::Splicing,
    /// Senders with bytes queued since the last `poll` and no write in
    /// flight: their writes start at the next `poll`, all of the turn's
    /// sends in one chain (see `send::pump_queued`).
    unpumped: Vec<Token>,
    /// Crate-internal watches (`watch_readable`).
    watches: watch::Watches,
    /// The eventfd that `Notifier`s write, once `notifier` made one.
    notify: Option<notify::NotifyState>,
}

impl Proactor {
    /// A proactor with default settings (see [`Builder`]).
    pub fn new() -> Result<Proactor> {
        Builder::default().build()
    }

    /// A builder to configure the ring, buffers and policies.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// This proactor's identity, carried by every handle it issues
    /// ([`Token::proactor`]): unique in the process and never reused while
    /// it lives. Any call given a handle of another proactor fails with
    /// [`Error::Foreign`].
    pub fn id(&self) -> u32 {
        self.table.id()
    }

    /// Opens the read end of the FIFO at `path`. Never blocks: the receiver
    /// is open at once and its first read waits quietly for a writer.
    pub fn open_receiver(
        &mut self,
        path: impl AsRef<Path>,
        opts: &FifoOptions,
    ) -> Result<Receiver> {
        let path = path.as_ref();
        let anchor = fifo::anchor(path, opts)?;
        let fd = fifo::open_reader(&anchor).map_err(|e| fifo::open_error(path, e))?;
        if let Some(size) = opts.pipe_size {
            fifo::set_pipe_size(fd.as_fd(), size, path.display().to_string())?;
        }
        let multishot = self.reads.multishot(opts.read_mode);
        self.reads
            .reserve(&self.io.pool, multishot, self.table.len() + 1);
        let rx = ReceiverSide::new(opts.persistent, multishot, opts.frames);
        // Only a persistent receiver reopens: a one-shot one spares the fd.
        let anchor = opts.persistent.then_some(anchor);
        let token = self
            .table
            .insert(State::Open, Role::Receiver(rx), anchor, Some(path));
        self.install(token, fd);
        self.arm_read(token.index as usize);
        Ok(Receiver(token))
    }

    /// Opens the write end of the FIFO at `path`. Never blocks and takes no
    /// thread: with no reader yet the sender stays [`State::Opening`], keeps
    /// whatever is sent, and reports [`Event::Opened`](crate::Event::Opened)
    /// once a reader opens the FIFO (or [`Error::OpenTimeout`] after the
    /// open timeout).
    pub fn open_sender(&mut self, path: impl AsRef<Path>, opts: &FifoOptions) -> Result<Sender> {
        let path = path.as_ref();
        let anchor = fifo::anchor(path, opts)?;
        // Its identity once: checked against the other writers, then
        // counted among them.
        let written = fifo::identity(anchor.as_fd());
        if let Some(other) =
            written.and_then(|f| self.table.shares_with_sole_writer(f, opts.sole_writer))
        {
            let path = path.to_path_buf();
            return Err(Error::SoleWriter { path, other });
        }
        let fd = fifo::try_open_writer(&anchor).map_err(|e| fifo::open_error(path, e))?;
        if let (Some(fd), Some(size)) = (&fd, opts.pipe_size) {
            fifo::set_pipe_size(fd.as_fd(), size, path.display().to_string())?;
        }
        let mut side = SendSide::new(opts);
        // The open timeout bounds the wait for a first reader, if any.
        if fd.is_none() {
            side.deadline = opts.open_timeout.map(|t| (Instant::now() + t, t));
        }
        let state = if fd.is_some() {
            State::Open
        } else {
            State::Opening
        };
        let token = self.table.insert(
            state,
            Role::Sender(Box::new(side)),
            Some(anchor),
            Some(path),
        );
        if let Some(fifo) = written {
            self.table.add_writer(fifo, token, opts.sole_writer);
        }
        match fd {
            Some(fd) => {
                self.install(token, fd);
                self.io.pending.push(Item::Opened(Sender(token)));
            }
            None => self.join_waiting(token.index as usize),
        }
        Ok(Sender(token))
    }

    /// Makes a receiver of an already open read end (an anonymous pipe,
    /// stdin...), reading as `mode` says (as
    /// [`FifoOptions::read_mode`] for a FIFO, whose default is
    /// [`ReadMode::Multishot`]). Its flags are left as they are. It closes
    /// at EOF.
    pub fn receiver_from_fd(&mut self, fd: OwnedFd, mode: ReadMode) -> Result<Receiver> {
        let multishot = self.reads.multishot(mode);
        self.reads
            .reserve(&self.io.pool, multishot, self.table.len() + 1);
        let rx = ReceiverSide::new(false, multishot, None);
        let token = self
            .table
            .insert(State::Open, Role::Receiver(rx), None, None);
        self.install(token, fd);
        self.arm_read(token.index as usize);
        Ok(Receiver(token))
    }

    /// Makes a sender of an already open write end (an anonymous pipe,
    /// stdout...). It is open at once; its flags are left as they are.
    /// Watermarks and policy are those of [`FifoOptions::new`].
    pub fn sender_from_fd(&mut self, fd: OwnedFd) -> Result<Sender> {
        let role = Role::Sender(Box::new(SendSide::new(&FifoOptions::new())));
        let token = self.table.insert(State::Open, role, None, None);
        self.install(token, fd);
        self.io.pending.push(Item::Opened(Sender(token)));
        Ok(Sender(token))
    }

    /// Closes a transport: cancels its operations, waits for their final
    /// completions, releases its registered file slot and fd, then reports
    /// [`Event::Closed`](crate::Event::Closed) with every unsent byte.
    pub fn close(&mut self, token: impl Into<Token>) -> Result<()> {
        let idx = self.table.live(token.into())?;
        self.begin_close(idx, CloseReason::Requested);
        Ok(())
    }

    /// Moves everything `from` receives into `to` inside the kernel
    /// (`splice(2)`), with no copy through user space; reported as
    /// [`Event::Relayed`](crate::Event::Relayed), every byte of it: what a
    /// read took before the splice took over (when the writer was quicker
    /// than the relay: one buffer at most with single-shot reads, what the
    /// writer added until the cancel landed with multishot ones) is queued
    /// on `to`, written first, and reported as `Relayed` too (counted in
    /// the receiver's `bytes_read` and the sender's `bytes_accepted`;
    /// spliced bytes in their `bytes_spliced`, see [`Stats`]). The
    /// receiver's data no longer comes as `Data` events and the sender
    /// takes no more `send`s ([`Error::Relayed`]). Bytes already queued on
    /// `to` go first, and are reported as `Sent`.
    ///
    /// A splice never waits inside the kernel: it follows a poll for data,
    /// runs non-blocking (from this thread by default, see
    /// [`Builder::splice_direct`]), and io-wq workers are capped (see
    /// [`Builder::iowq_max_workers`]), so idle relays hold no threads. Both
    /// FIFOs' pipes are grown to 1 MiB where the limits allow
    /// ([`Builder::relay_pipe_size`]). If
    /// `to`'s reader leaves, the bytes stay in `from`'s pipe (nothing is
    /// consumed) until a reader comes back. The relay ends when either end
    /// closes; `from` then goes back to `Data` events. To end a pipeline
    /// cleanly, call [`close_after_flush`](Self::close_after_flush) on `to`:
    /// it closes after `from`'s EOF, once its reader has every byte.
    pub fn relay(&mut self, from: Receiver, to: Sender) -> Result<()> {
        // A relay is a fan-out to one destination that waits for its reader.
        self.fan_out(from, &[to], FanOutPolicy::Wait)
    }

    /// Stops reading a receiver: no read is armed, so data waits in the
    /// pipe (and its writers feel the pipe's backpressure). A read already
    /// in flight is cancelled; if it completed first, its data is still
    /// delivered. Nothing is lost.
    pub fn pause(&mut self, rx: Receiver) -> Result<()> {
        let (_, t) = self.table.live_receiver(rx)?;
        let Role::Receiver(side) = &mut t.role else {
            return Err(Error::Stale { token: rx.0 });
        };
        let ops = side.pause();
        t.end.cancel(&mut self.io.ring, ops);
        Ok(())
    }

    /// Reads again after [`pause`](Self::pause).
    pub fn resume(&mut self, rx: Receiver) -> Result<()> {
        let (idx, t) = self.table.live_receiver(rx)?;
        let Role::Receiver(side) = &mut t.role else {
            return Err(Error::Stale { token: rx.0 });
        };
        if side.resume() && !t.end.closing() {
            self.arm_read(idx);
        }
        Ok(())
    }

    /// Where a transport is in its life.
    pub fn state(&self, token: impl Into<Token>) -> Result<State> {
        let token = token.into();
        match self.table.slot(token)? {
            Some(t) => Ok(t.end.state),
            None => Ok(State::Closed),
        }
    }

    /// The name errors give a transport: its FIFO's path, or the label
    /// given with [`set_label`](Self::set_label); `None` for a transport
    /// made from an fd and not labelled (errors then name its handle).
    /// A copy: names are kept packed, one per transport. Fails with
    /// [`Error::Closed`] once it is closed.
    pub fn path(&self, token: impl Into<Token>) -> Result<Option<PathBuf>> {
        let token = token.into();
        let t = self.table.slot(token)?.ok_or(Error::Closed { token })?;
        Ok(t.end.name())
    }

    /// Names a transport in the errors about it ([`Error::Io`],
    /// [`Error::Frame`], ...) and in [`path`](Self::path): for one made
    /// from an fd (`"stdin"`, `"child 42 stdout"`), which has no path, or
    /// to replace a FIFO's path in messages. Only a name: a persistent
    /// receiver or a sender still reopens the FIFO it opened.
    pub fn set_label(&mut self, token: impl Into<Token>, label: impl Into<PathBuf>) -> Result<()> {
        let idx = self.table.live(token.into())?;
        let label = name::Name::new(&label.into(), &mut name::Dirs::default());
        self.table[idx].end.path = Some(label);
        Ok(())
    }

    /// Sets the capacity of a transport's pipe (`F_SETPIPE_SZ`); returns
    /// the size the kernel chose.
    pub fn set_pipe_size(&mut self, token: impl Into<Token>, bytes: usize) -> Result<usize> {
        let token = token.into();
        let idx = self.table.live(token)?;
        let t = &mut self.table[idx];
        if let Some(fd) = &t.end.fd {
            return fifo::set_pipe_size(fd.as_fd(), bytes, t.end.describe());
        }
        // Not open yet: checked now, applied when the reader appears.
        fifo::check_pipe_size(bytes, || t.end.describe())?;
        match &mut t.role {
            Role::Sender(side) => {
                side.pipe_size = Some(bytes);
                Ok(bytes)
            }
            // A receiver always holds its fd.
            Role::Receiver(_) => Err(Error::Closed { token }),
        }
    }

    /// The backend this proactor runs on, and why: io_uring, or epoll
    /// because it was asked for (`Builder::backend`, `RINGPIPE_BACKEND`)
    /// or because io_uring could not be set up (the reason in
    /// [`BackendInUse::fallback`]). Its `Display` is one line for a log;
    /// [`Snapshot::backend`] has which one, without the why.
    pub fn backend(&self) -> &BackendInUse {
        &self.io.backend
    }

    /// Whether the kernel holds a `poll` wait itself
    /// (`IORING_FEAT_MIN_TIMEOUT`: Linux 6.12 and later, or 6.19 and later
    /// on an SQPOLL ring): a batched wait ([`Builder::batch_wait`]) is
    /// then one `io_uring_enter`, and [`Builder::echo_hold`] works
    /// (without, it is ignored).
    pub fn kernel_min_wait(&self) -> bool {
        self.io.ring.has_min_wait()
    }

    /// Whether this proactor's enters name its ring by a registered index
    /// (`IORING_REGISTER_RING_FDS`, 16 per thread) rather than its fd.
    #[doc(hidden)]
    pub fn ring_fd_registered(&self) -> bool {
        self.io.ring.ring_fd_registered()
    }

    /// Waits through the ring until `fd` is readable (see [`Watch`]).
    pub(crate) fn watch_readable(&mut self, fd: BorrowedFd<'_>) -> Result<Watch> {
        self.watches.arm(&mut self.io.ring, fd)
    }

    /// A handle that wakes this proactor from any thread (see
    /// [`Notifier`]). The first call makes an eventfd and keeps an 8-byte
    /// READ of it armed on the ring from then on; every later call hands
    /// out a handle to the same one.
    ///
    /// With a notifier made, the ring always has work in flight: a
    /// [`poll`](Self::poll) with no timeout and nothing else to do sleeps
    /// until a notify (instead of returning at once).
    pub fn notifier(&mut self) -> Result<Notifier> {
        if let Some(state) = &self.notify {
            return Ok(state.notifier());
        }
        let mut state = notify::NotifyState::new()?;
        // No handle that could never wake the proactor: the next call
        // tries again.
        state.arm(&mut self.io.ring)?;
        let notifier = state.notifier();
        self.notify = Some(state);
        Ok(notifier)
    }

    /// A queue that other threads fill and this proactor empties in
    /// batches: the hand-off from producer threads to the I/O thread. Up to
    /// `capacity` items wait in it (rounded up to a power of two, at least
    /// 2: see [`Mailbox::capacity`]); a [`MailSender::send`] into a full
    /// mailbox waits for room.
    ///
    /// Items arrived since the proactor last looked make
    /// [`poll`](Self::poll) return [`Event::Notified`](crate::Event::Notified);
    /// [`Mailbox::take`] then moves them all out at once. A send writes the
    /// eventfd (the one [`notifier`](Self::notifier) uses) only while the
    /// proactor sleeps or is about to; while it is awake a send is one
    /// compare-exchange and a copy into the mailbox's ring.
    ///
    /// | hand-off | pick |
    /// |---|---|
    /// | items from other threads for this proactor to write | a mailbox |
    /// | a queue of your own, or a wake-up with no item (a flag, a timer of yours) | a [`Notifier`] after each push |
    ///
    /// ```
    /// # fn main() -> ringpipe::Result<()> {
    /// let mut p = ringpipe::Proactor::new()?;
    /// let (tx, mut mailbox) = p.mailbox::<u64>(1024)?;
    /// std::thread::spawn(move || {
    ///     for i in 0..10 {
    ///         tx.send(i).unwrap();
    ///     }
    /// });
    /// let mut events = ringpipe::Events::with_capacity(8);
    /// let mut got = Vec::new();
    /// while got.len() < 10 {
    ///     p.poll(&mut events, None)?;
    ///     mailbox.take(&mut got);
    /// }
    /// assert_eq!(got, (0..10).collect::<Vec<_>>());
    /// # Ok(())
    /// # }
    /// ```
    pub fn mailbox<T: Send + 'static>(
        &mut self,
        capacity: usize,
    ) -> Result<(MailSender<T>, Mailbox<T>)> {
        self.notifier()?;
        let Some(state) = self.notify.as_mut() else {
            return Err(Error::Unsupported {
                what: "a mailbox without the notifier's eventfd".into(),
                source: None,
            });
        };
        let (tx, rx, watch) = mailbox::new(capacity, state.wake());
        state.mailboxes.add(watch);
        Ok((tx, rx))
    }

    /// The token [`Event::Notified`](crate::Event::Notified) carries: it
    /// names no transport (slot `u32::MAX`).
    fn notify_token(&self) -> Token {
        Token {
            index: u32::MAX,
            generation: u32::MAX,
            proactor: self.table.id(),
        }
    }

    /// Takes `fd` as the file of the transport `token` just made.
    fn install(&mut self, token: Token, fd: OwnedFd) {
        let end = &mut self.table[token.index as usize].end;
        end.install_fd(&mut self.io.ring, fd);
    }

    /// Whether `watch` has fired; true once.
    pub(crate) fn fired(&mut self, watch: &Watch) -> bool {
        self.watches.take(watch)
    }

    /// The ring's fd, to drive the proactor from another event loop:
    /// register it for readability (level-triggered, or edge-triggered
    /// with the loop below run until it finds nothing), and when it is
    /// readable:
    ///
    /// 1. [`poll`](Proactor::poll) with `Some(Duration::ZERO)` and handle
    ///    the events;
    /// 2. [`submit`](Proactor::submit), so the work queued meanwhile is
    ///    in the kernel;
    /// 3. go back to sleep in your loop.
    ///
    /// On the epoll backend this is its epoll fd, which nests in any loop:
    /// readable when a parked operation's fd is ready, a timeout is due,
    /// or completions wait (after `submit`).
    ///
    /// On io_uring, only a ring that wakes such a loop gives its fd: one built with
    /// [`Builder::defer_taskrun(false)`](crate::Builder::defer_taskrun) or
    /// [`Builder::sqpoll`](crate::Builder::sqpoll). The default ring
    /// defers its task work (`DEFER_TASKRUN`), and fails with
    /// [`Error::NotNestable`]: its fd polls readable (Linux 6.18,
    /// measured) while completions wait in the completion queue or
    /// deferred task work waits for this thread, but a waiter is *woken*
    /// only when a completion is posted, and such a ring posts completions
    /// only while its thread is inside `poll`: a loop asleep on its fd
    /// would sleep through every completion. Without it the task work
    /// interrupts the sleeping thread (the wait returns `EINTR`, which
    /// epoll users retry and tokio does), runs on the way out of the
    /// kernel, and posts the completion, which wakes the loop.
    ///
    /// The fd is the proactor's: it stays open as long as the proactor
    /// lives. For tokio, `AsyncFd::new(fd.as_raw_fd())` (a `RawFd` is
    /// `AsRawFd`) next to the proactor. A [`Notifier`](crate::Notifier)
    /// wakes such a loop too: its READ completes like any other.
    pub fn nest_fd(&self) -> Result<BorrowedFd<'_>> {
        if self.io.ring.is_deferred() {
            return Err(Error::NotNestable {
                proactor: self.id(),
            });
        }
        Ok(self.io.ring.fd())
    }

    /// The ring's fd whatever its mode, for tests of what the kernel does
    /// to a ring fd; drive a proactor through [`nest_fd`](Self::nest_fd).
    #[doc(hidden)]
    pub fn ring_fd_unchecked(&self) -> BorrowedFd<'_> {
        self.io.ring.fd()
    }

    /// Hands everything queued to the kernel now, without waiting and
    /// without reaping: one `io_uring_enter` if anything is queued, none
    /// otherwise.
    ///
    /// [`poll`](Self::poll) submits what was queued before it, but work
    /// queued while it handles completions (a read armed again, the rest
    /// of a short write) and by your `send`s waits for the next call. A
    /// loop that calls `poll` again and again never notices; a foreign
    /// loop that sleeps on the ring fd ([`nest_fd`](Self::nest_fd)) must
    /// call `submit` before it sleeps, or that work never starts and no
    /// completion wakes it.
    pub fn submit(&mut self) -> Result<()> {
        // Sends made since the last poll start their writes here.
        self.pump_queued();
        if !self.io.ring.has_unsubmitted() && !self.io.ring.is_sqpoll() {
            return Ok(());
        }
        self.io.ring.submit().map_err(|source| Error::Ring {
            op: "io_uring_enter",
            source,
        })
    }

    /// Submits everything queued since the last call in one
    /// `io_uring_enter`, waits up to `timeout` for work to finish, and fills
    /// `events` with what finished. Events of the previous call are dropped
    /// first, and their buffers reused. Returns at once, with no events, if
    /// nothing is in flight.
    ///
    /// The timeout chooses the mode:
    /// - `None`: sleep in the kernel until something finishes (the lowest
    ///   CPU use).
    /// - `Some(d)`: the same, but return after `d` at the latest (with no
    ///   events if nothing finished).
    /// - `Some(Duration::ZERO)`: busy polling. Submit, reap what has
    ///   finished, never sleep. Called in a loop it gives the lowest
    ///   latency for a whole core of CPU; pair it with
    ///   [`Builder::sqpoll`] to spare the submit syscall as well.
    ///
    /// When it sleeps, [`Builder::batch_wait`] can make it wait for a
    /// batch of completions, and [`Builder::echo_hold`] for the next data
    /// in the enter that submits the writes answering the last.
    pub fn poll(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<()> {
        // Lent buffers go back first: multishot reads starved of them resume.
        events.clear();
        if self.reads.starved_live > 0 {
            self.rearm_starved();
        }
        if !self.unpumped.is_empty() {
            self.pump_queued();
        }
        // A busy poll never waits: no clock to read.
        let deadline = timeout.filter(|t| !t.is_zero()).map(|t| Instant::now() + t);
        let watches_fired = self.watches.fired();
        loop {
            let mut wait = self.io.pending.is_empty()
                && timeout != Some(Duration::ZERO)
                && self.io.ring.in_flight() > 0;
            if wait
                && self
                    .notify
                    .as_mut()
                    .is_some_and(|n| n.mailboxes.before_sleep())
            {
                self.io.pending.push(Item::Notified(self.notify_token()));
                wait = false;
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ring = &mut self.io.ring;
            let held = if wait { self.wait.hold(ring) } else { None };
            let entered = match held {
                Some((want, hold)) => ring.submit_and_wait_batch(want, hold, remaining),
                None => ring.submit_and_wait(wait, remaining),
            };
            entered.map_err(|e| Error::Ring {
                op: "io_uring_enter",
                source: e,
            })?;
            // Each completion routed as it comes off the CQ.
            loop {
                // Matched in place: a `map_err` would move each completion.
                let c = match self.io.ring.next_completion() {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(source) => {
                        return Err(Error::Ring {
                            op: "io_uring_enter (CQ overflow flush)",
                            source,
                        });
                    }
                };
                self.dispatch(c);
            }
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            let watched = self.watches.fired() != watches_fired;
            if !wait || expired || watched || !self.io.pending.is_empty() {
                break;
            }
            // Only internal work finished (a timer, a cancel): wait again.
        }
        if self
            .notify
            .as_mut()
            .is_some_and(|n| n.mailboxes.after_poll())
        {
            let token = self.notify_token();
            notify::report(&mut self.io.pending, token);
        }
        // Starved reads resume at the next `poll`, once the buffers lent
        // in `events` come back; a loop that nests this proactor polls only
        // when its fd is ready, so a completion must make it ready.
        if self.reads.starved_live > 0 && !self.reads.wake_armed {
            let ring = &mut self.io.ring;
            if ring.timeout(Duration::ZERO, route::STARVED_WAKE).is_ok() {
                self.reads.wake_armed = true;
                ring.submit().map_err(|e| Error::Ring {
                    op: "io_uring_enter",
                    source: e,
                })?;
            }
        }
        self.wait.delivering(&self.io.pending);
        // `events` was emptied above: swapped, not copied, so the frames'
        // indices stay right and each side keeps an allocation.
        std::mem::swap(&mut events.items, &mut self.io.pending);
        if !self.io.pending_bufs.is_empty() {
            std::mem::swap(&mut events.bufs, &mut self.io.pending_bufs);
        }
        if !self.io.pending_owned.is_empty() {
            std::mem::swap(&mut events.owned, &mut self.io.pending_owned);
        }
        Ok(())
    }
}

impl Drop for Proactor {
    fn drop(&mut self) {
        // Cancel and reap everything before any fd closes or buffer frees.
        // The ring names its tracked operations itself; the receivers name
        // their untracked ones.
        let untracked: Vec<OpId> = self
            .table
            .iter()
            .filter_map(|t| match &t.role {
                Role::Receiver(r) => Some(r.ops()),
                Role::Sender(_) => None,
            })
            .flatten()
            .collect();
        if !self
            .io
            .ring
            .cancel_all_and_drain(Duration::from_secs(5), &untracked)
        {
            // The kernel still owns some operations: leak their fds too.
            std::mem::forget(self.table.take_all());
        }
    }
}
