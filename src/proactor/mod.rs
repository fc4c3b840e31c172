//! The event loop: the [`Proactor`] type, its public calls, `poll` and
//! `Drop`. Each concern behind them has a room of its own:
//!
//! - `builder`: configuration and construction (ring, buffers, probes);
//! - `registry`: what a transport is, handles and their lookup;
//! - `read`, `multishot`: the two read paths, EOF and reopen;
//! - `write`: queueing, the write pump, the reader leaving, flush;
//! - `splice`: bytes moved between pipes by SPLICE and TEE (relays and
//!   fan-outs);
//! - `relay_pipes`: relays' pipes grown within one budget per process;
//! - `waiting`: senders waiting for a reader (inotify, retry timer);
//! - `watch`: crate-internal waits on other fds (a child's pidfd);
//! - `close`: state changes, cancelling, finishing a close;
//! - `stats`: per-transport counters and the proactor-wide snapshot;
//! - `dispatch`: each completion routed to its step.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::buffers::{Buf, Pool};
use crate::error::{Error, Result};
use crate::event::{CloseReason, Events, Item};
use crate::fifo::{self, FifoOptions, OpenWatch, ReadMode};
use crate::ring::{Completion, Ring};
use crate::token::{Receiver, Sender, Token};
use crate::transport::State;

mod builder;
mod close;
mod dispatch;
mod multishot;
mod nest;
mod notify;
mod read;
mod registry;
mod relay_pipes;
mod route;
mod splice;
mod stats;
mod waiting;
mod watch;
mod write;

pub use builder::Builder;
pub use notify::Notifier;
use registry::{Role, SendSide, Transport, receiver_role};
pub use splice::FanOutPolicy;
pub use stats::{Snapshot, Stats};
pub(crate) use watch::Watch;

const ECANCELED: i32 = -libc::ECANCELED;
/// What an op that was running in io-wq completes with when cancelled.
const ERESTARTSYS: i32 = -512;

/// First delay of the retry timer of senders waiting for a reader.
const RETRY_START: Duration = Duration::from_millis(1);

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
    /// Stamped on every handle; a handle with another identity is foreign.
    id: u32,
    ring: Ring,
    pool: Rc<Pool>,
    transports: Slab<Transport>,
    generations: Vec<u32>,
    completions: Vec<Completion>,
    pending: Vec<Item>,
    /// Read buffers that `pending`'s frames are lent from.
    pending_bufs: Vec<Buf>,
    /// Senders waiting for a reader (Opening, or PeerGone with a path).
    waiting: Vec<Token>,
    watch: Option<OpenWatch>,
    watch_armed: bool,
    timer_armed: bool,
    retry_delay: Duration,
    open_retry_max: Duration,
    /// The kernel has multishot reads and the provided ring is registered.
    multishot_ok: bool,
    read_mode: ReadMode,
    /// Multishot receivers whose read ended for lack of buffers.
    starved: Vec<Token>,
    /// Senders with bytes queued since the last `poll` and no write in
    /// flight: their writes start at the next `poll`, all of the turn's
    /// sends in one chain (see `write::pump_queued`).
    unpumped: Vec<Token>,
    /// Crate-internal watches (`watch_readable`).
    watches: watch::Watches,
    /// Single-destination splices call `splice(2)` from this thread.
    splice_direct: bool,
    /// `Proactor::set_relay_pipe_size` (0: relays leave pipe sizes alone).
    relay_pipe: usize,
    /// The eventfd that `Notifier`s write, once `notifier` made one.
    notify: Option<notify::NotifyState>,
    /// `Builder::batch_wait`: completions to wait for, and the budget.
    batch: Option<(u32, Duration)>,
    /// `Builder::echo_hold`.
    echo_hold: Duration,
    /// The last `poll` delivered data: its caller is likely to answer it
    /// with a send, and to want the next data next (see `hold`).
    delivered: bool,
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
        self.id
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
        let role = receiver_role(opts.persistent, self.multishot(opts), opts.frames);
        // Only a persistent receiver reopens: a one-shot one spares the fd.
        let anchor = opts.persistent.then_some(anchor);
        let token = self.insert(State::Open, role, anchor, Some(path.into()));
        self.install_fd(token.index as usize, fd);
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
        let token = self.insert(
            state,
            Role::Sender(Box::new(side)),
            Some(anchor),
            Some(path.into()),
        );
        let idx = token.index as usize;
        match fd {
            Some(fd) => {
                self.install_fd(idx, fd);
                self.pending.push(Item::Opened(Sender(token)));
            }
            None => self.join_waiting(idx),
        }
        Ok(Sender(token))
    }

    /// Makes a receiver of an already open read end (an anonymous pipe,
    /// stdin...). Its flags are left as they are. It closes at EOF.
    pub fn receiver_from_fd(&mut self, fd: OwnedFd) -> Result<Receiver> {
        let multishot = self.multishot(&FifoOptions::new());
        let token = self.insert(
            State::Open,
            receiver_role(false, multishot, None),
            None,
            None,
        );
        self.install_fd(token.index as usize, fd);
        self.arm_read(token.index as usize);
        Ok(Receiver(token))
    }

    /// Makes a sender of an already open write end (an anonymous pipe,
    /// stdout...). It is open at once; its flags are left as they are.
    /// Watermarks and policy are those of [`FifoOptions::new`].
    pub fn sender_from_fd(&mut self, fd: OwnedFd) -> Result<Sender> {
        let role = Role::Sender(Box::new(SendSide::new(&FifoOptions::new())));
        let token = self.insert(State::Open, role, None, None);
        self.install_fd(token.index as usize, fd);
        self.pending.push(Item::Opened(Sender(token)));
        Ok(Sender(token))
    }

    /// Queues a copy of `data`. It is written in order, exactly once, from
    /// the next [`poll`](Self::poll) on; short writes resume at the exact
    /// byte. Bytes sent while the sender waits for a reader wait with it.
    ///
    /// Backpressure: while the bytes not yet accepted by the kernel are at
    /// or above the sender's high watermark, `send` queues nothing and
    /// returns [`Error::WouldBlock`]; [`Event::Writable`](crate::Event::Writable)
    /// follows once they are down to the low watermark. Below the high
    /// watermark the whole of `data` is accepted.
    pub fn send(&mut self, to: Sender, data: &[u8]) -> Result<()> {
        self.enqueue(to, |queue, pool, _| {
            queue.push(pool, data);
            Ok(())
        })
    }

    /// Changes a sender's watermarks (see [`FifoOptions::watermarks`]).
    pub fn set_watermarks(&mut self, sender: Sender, high: usize, low: usize) -> Result<()> {
        let idx = self.live_sender(sender)?;
        let side = self.transports[idx].sender();
        side.high = high.max(1) as u64;
        side.low = low.min(high) as u64;
        self.maybe_writable(idx);
        Ok(())
    }

    /// Closes a transport: cancels its operations, waits for their final
    /// completions, releases its registered file slot and fd, then reports
    /// [`Event::Closed`](crate::Event::Closed) with every unsent byte.
    pub fn close(&mut self, token: impl Into<Token>) -> Result<()> {
        let idx = self.live(token.into())?;
        self.begin_close(idx, CloseReason::Requested);
        Ok(())
    }

    /// Closes a sender once everything sent has been read: its queue is
    /// written and the reader has drained the pipe (reason
    /// [`CloseReason::Flushed`]). If the reader leaves first, the sender
    /// keeps the pipe open and waits for the next one, so no byte is lost
    /// between reader sessions. Further sends fail with [`Error::Closed`].
    ///
    /// On the destination of a [`relay`](Self::relay) or
    /// [`fan_out`](crate::Proactor::fan_out), the relayed stream counts as
    /// sent: the sender closes once the relay has ended (its receiver
    /// reached EOF or closed, or this destination was detached) and the
    /// reader has drained the pipe. So `relay(rx, tx)` then
    /// `close_after_flush(tx)` passes EOF on: the reader of `tx` sees EOF
    /// after the last byte that reached `rx`.
    ///
    /// If no reader drains the pipe, what ends the wait:
    /// - no reader ever opened the FIFO: only
    ///   [`FifoOptions::open_timeout`] ([`Error::OpenTimeout`]);
    /// - the reader left, with bytes still queued or after the kernel
    ///   accepted them all: the sender's [`Reconnect`](crate::Reconnect) policy, as for any
    ///   departure (`Wait`: the next reader; `WaitUpTo`:
    ///   [`Error::ReaderTimeout`]; `Fail`: closes at once). `Closed` hands
    ///   back the bytes the kernel never accepted; those in the pipe are
    ///   lost with it;
    /// - a reader that stays and never reads: nothing; call
    ///   [`close`](Self::close) when your own deadline passes.
    pub fn close_after_flush(&mut self, sender: Sender) -> Result<()> {
        let idx = self.live_sender(sender)?;
        self.transports[idx].sender().close_after_flush = true;
        self.maybe_flushed(idx);
        Ok(())
    }

    /// Moves everything `from` receives into `to` inside the kernel
    /// (`splice(2)`), with no copy through user space; reported as
    /// [`Event::Relayed`](crate::Event::Relayed), every byte of it: a read
    /// that completed before the splice took over (up to one buffer, when
    /// the writer was quicker than the relay) is queued on `to`, written
    /// first, and reported as `Relayed` too (counted in the receiver's
    /// `bytes_read` and the sender's `bytes_accepted`; spliced bytes in
    /// their `bytes_spliced`, see [`Stats`]). The receiver's data no
    /// longer comes as `Data` events and the sender takes no more `send`s
    /// ([`Error::Relayed`]). Bytes already queued on `to` go first, and
    /// are reported as `Sent`.
    ///
    /// A splice never waits inside the kernel: it follows a poll for data,
    /// runs non-blocking (from this thread by default, see
    /// [`Builder::splice_direct`]), and io-wq workers are capped (see
    /// [`Builder::iowq_max_workers`]), so idle relays hold no threads. Both
    /// FIFOs' pipes are grown to 1 MiB where the limits allow
    /// ([`set_relay_pipe_size`](Self::set_relay_pipe_size)). If
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
        let idx = self.live_receiver(rx)?;
        let t = &mut self.transports[idx];
        let Role::Receiver {
            read,
            poll,
            path,
            paused,
            splice,
            ..
        } = &mut t.role
        else {
            return Err(Error::Stale { token: rx.0 });
        };
        *paused = true;
        // A splice stops waiting for data (see `Splice::pause_ops`).
        let spliced = splice.as_ref().map_or(Vec::new(), |s| s.pause_ops());
        let ops = [*read, *poll, path.hup()];
        self.cancel(idx, ops.into_iter().chain(spliced.into_iter().map(Some)));
        Ok(())
    }

    /// Reads again after [`pause`](Self::pause).
    pub fn resume(&mut self, rx: Receiver) -> Result<()> {
        let idx = self.live_receiver(rx)?;
        let t = &mut self.transports[idx];
        let Role::Receiver {
            read, poll, paused, ..
        } = &mut t.role
        else {
            return Err(Error::Stale { token: rx.0 });
        };
        let armed = read.is_some() || poll.is_some();
        *paused = false;
        if !armed && t.state != State::Closing {
            self.arm_read(idx);
        }
        Ok(())
    }

    /// Where a transport is in its life.
    pub fn state(&self, token: impl Into<Token>) -> Result<State> {
        let token = token.into();
        match self.slot(token)? {
            Some(t) => Ok(t.state),
            None => Ok(State::Closed),
        }
    }

    /// The name errors give a transport: its FIFO's path, or the label
    /// given with [`set_label`](Self::set_label); `None` for a transport
    /// made from an fd and not labelled (errors then name its handle).
    /// Fails with [`Error::Closed`] once it is closed.
    pub fn path(&self, token: impl Into<Token>) -> Result<Option<&Path>> {
        let token = token.into();
        let t = self.slot(token)?.ok_or(Error::Closed { token })?;
        Ok(t.path.as_deref())
    }

    /// Names a transport in the errors about it ([`Error::Io`],
    /// [`Error::Frame`], ...) and in [`path`](Self::path): for one made
    /// from an fd (`"stdin"`, `"child 42 stdout"`), which has no path, or
    /// to replace a FIFO's path in messages. Only a name: a persistent
    /// receiver or a sender still reopens the FIFO it opened.
    pub fn set_label(&mut self, token: impl Into<Token>, label: impl Into<PathBuf>) -> Result<()> {
        let idx = self.live(token.into())?;
        self.transports[idx].path = Some(label.into().into_boxed_path());
        Ok(())
    }

    /// Sets the capacity of a transport's pipe (`F_SETPIPE_SZ`); returns
    /// the size the kernel chose.
    pub fn set_pipe_size(&mut self, token: impl Into<Token>, bytes: usize) -> Result<usize> {
        let token = token.into();
        let idx = self.live(token)?;
        let t = &mut self.transports[idx];
        if let Some(fd) = &t.fd {
            return fifo::set_pipe_size(fd.as_fd(), bytes, t.describe());
        }
        // Not open yet: checked now, applied when the reader appears.
        fifo::check_pipe_size(bytes, || t.describe())?;
        match &mut t.role {
            Role::Sender(side) => {
                side.pipe_size = Some(bytes);
                Ok(bytes)
            }
            // A receiver always holds its fd.
            Role::Receiver { .. } => Err(Error::Closed { token }),
        }
    }

    /// `io_uring_enter` calls made so far (for syscalls-per-message figures).
    pub fn enter_count(&self) -> u64 {
        self.ring.enters()
    }

    /// Ring operations submitted and not yet finally completed.
    pub fn in_flight(&self) -> usize {
        self.ring.in_flight()
    }

    /// Transports currently using a registered file slot.
    pub fn registered_files(&self) -> usize {
        self.ring.files_in_use()
    }

    /// Whether the kernel holds a `poll` wait itself
    /// (`IORING_FEAT_MIN_TIMEOUT`: Linux 6.12 and later, or 6.19 and later
    /// on an SQPOLL ring): a batched wait ([`Builder::batch_wait`]) is
    /// then one `io_uring_enter`, and [`Builder::echo_hold`] works
    /// (without, it is ignored).
    pub fn kernel_min_wait(&self) -> bool {
        self.ring.has_min_wait()
    }

    /// Whether this proactor's enters name its ring by a registered index
    /// (`IORING_REGISTER_RING_FDS`, 16 per thread) rather than its fd.
    #[doc(hidden)]
    pub fn ring_fd_registered(&self) -> bool {
        self.ring.ring_fd_registered()
    }

    /// Waits through the ring until `fd` is readable (see [`Watch`]).
    pub(crate) fn watch_readable(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> Result<Watch> {
        self.watches.arm(&mut self.ring, fd)
    }

    /// Whether `watch` has fired; true once.
    pub(crate) fn fired(&mut self, watch: &Watch) -> bool {
        self.watches.take(watch)
    }

    /// How a blocking wait is held, if at all: the completions to wait for
    /// and how long at most before any one will do.
    ///
    /// Two cases hold it. A batch (`Builder::batch_wait`). And an answer
    /// (`Builder::echo_hold`): the last poll delivered
    /// data and this one submits writes, as an echo or a relay does; with
    /// the kernel's min-wait, the enter waits for those writes and one
    /// completion more (the next data), so a round trip costs one
    /// `io_uring_enter`, not one for the write and one for the wait. A
    /// write's completion is held back `echo_hold` at most.
    fn hold(&self) -> Option<(u32, Duration)> {
        let in_flight = u32::try_from(self.ring.in_flight()).unwrap_or(u32::MAX);
        let batch = self.batch;
        let writes = u32::try_from(self.ring.unsubmitted_writes()).unwrap_or(u32::MAX);
        let answer = (self.delivered
            && writes > 0
            && !self.echo_hold.is_zero()
            && in_flight > writes
            && self.ring.has_min_wait())
        .then_some(writes.saturating_add(1));
        match (batch, answer) {
            (Some((n, budget)), Some(m)) => Some((n.max(m), budget)),
            (Some(b), None) => Some(b),
            (None, Some(m)) => Some((m, self.echo_hold)),
            (None, None) => None,
        }
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
        for token in std::mem::take(&mut self.starved) {
            if let Ok(idx) = self.live(token) {
                self.arm_read(idx);
            }
        }
        self.pump_queued();
        let deadline = timeout.map(|t| Instant::now() + t);
        let watches_fired = self.watches.fired();
        loop {
            let wait = self.pending.is_empty()
                && timeout != Some(Duration::ZERO)
                && self.ring.in_flight() > 0;
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let entered = match self.hold().filter(|_| wait) {
                Some((want, hold)) => self.ring.submit_and_wait_batch(want, hold, remaining),
                None => self.ring.submit_and_wait(wait, remaining),
            };
            entered.map_err(|e| Error::Ring {
                op: "io_uring_enter",
                source: e,
            })?;
            let mut completions = std::mem::take(&mut self.completions);
            self.ring.drain(&mut completions).map_err(|e| Error::Ring {
                op: "io_uring_enter (CQ overflow flush)",
                source: e,
            })?;
            for c in completions.drain(..) {
                self.dispatch(c);
            }
            self.completions = completions;
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            let watched = self.watches.fired() != watches_fired;
            if !wait || expired || watched || !self.pending.is_empty() {
                break;
            }
            // Only internal work finished (a timer, a cancel): wait again.
        }
        self.delivered = !self.echo_hold.is_zero()
            && self
                .pending
                .iter()
                .any(|i| matches!(i, Item::Data { .. } | Item::Frame { .. }));
        // `events.bufs` was empty: the frames' indices stay right.
        events.items.append(&mut self.pending);
        events.bufs.append(&mut self.pending_bufs);
        Ok(())
    }
}

impl Drop for Proactor {
    fn drop(&mut self) {
        // Cancel and reap everything before any fd closes or buffer frees.
        if !self.ring.cancel_all_and_drain(Duration::from_secs(5)) {
            // The kernel still owns some operations: leak their fds too.
            std::mem::forget(std::mem::take(&mut self.transports));
        }
    }
}
