//! The event loop: the transport registry, operation dispatch and events.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::inotify::WatchDescriptor;
use slab::Slab;

use crate::buffers::{self, Buf, Memlock, Pool};
use crate::error::{Error, Result};
use crate::event::{CloseReason, Events, FrameBytes, Item};
use crate::fifo::{self, FifoOptions, OpenWatch, ReadMode, Reconnect};
use crate::frame::{Codec, FrameDecoder, FrameError};
use crate::ring::{self, Completion, FileRef, OpId, OpKind, Ring, RingConfig};
use crate::token::{Receiver, Sender, Token};
use crate::transport::{Chunk, Input, Notice, State, WriteQueue, transition};

mod fanout;

pub use fanout::FanOutPolicy;

/// Owners of the proactor's own operations (transport owners are tokens,
/// whose slot index never reaches this range).
const INTERNAL: u64 = u64::MAX - 15;
const OWNER_RETRY_TIMER: u64 = INTERNAL;
const OWNER_OPEN_WATCH: u64 = INTERNAL + 1;

const ECANCELED: i32 = -libc::ECANCELED;
/// What an op that was running in io-wq completes with when cancelled.
const ERESTARTSYS: i32 = -512;

/// First delay of the retry timer of senders waiting for a reader.
const RETRY_START: Duration = Duration::from_millis(1);

/// Configures and builds a [`Proactor`].
///
/// The defaults work for any user. Registered buffers, the ring's queues
/// and the provided ring count against `RLIMIT_MEMLOCK` (8 MiB for most
/// users, shared by all their processes; root and `CAP_IPC_LOCK` are
/// exempt), so the default buffer pool is sized to it: see
/// [`buffers`](Self::buffers).
///
/// ```
/// let proactor = ringpipe::Proactor::builder()
///     .sq_entries(512)
///     .buffers(128, 64 * 1024)
///     .build()?;
/// # Ok::<(), ringpipe::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    ring: RingConfig,
    /// `None`: the default pool, sized to `RLIMIT_MEMLOCK` at build.
    buffers: Option<(u16, usize)>,
    ignore_sigpipe: bool,
    open_retry_max: Duration,
    iowq_max_workers: [u32; 2],
    read_mode: ReadMode,
    provided: (u16, usize),
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ring: RingConfig {
                sq_entries: 256,
                cq_entries: 1024,
                sqpoll_idle: None,
                files: 4096,
            },
            buffers: None,
            ignore_sigpipe: true,
            open_retry_max: Duration::from_millis(50),
            iowq_max_workers: [2, 2],
            read_mode: ReadMode::Fixed,
            provided: (128, 64 * 1024),
        }
    }
}

impl Builder {
    /// Submission queue size (default 256). A turn with more operations
    /// than this flushes early, once per full queue.
    pub fn sq_entries(mut self, n: u32) -> Self {
        self.ring.sq_entries = n;
        self
    }

    /// Completion queue size (default 1024, at least twice the SQ). When
    /// it overflows the kernel keeps completions aside and the proactor
    /// fetches them: none are lost.
    pub fn cq_entries(mut self, n: u32) -> Self {
        self.ring.cq_entries = n;
        self
    }

    /// Use a kernel submission thread (SQPOLL) that polls for `idle` before
    /// sleeping: fewer syscalls and lower latency, for a core's worth of CPU.
    /// Default: off; the ring then runs single-issuer with deferred task work.
    pub fn sqpoll(mut self, idle: Duration) -> Self {
        self.ring.sqpoll_idle = Some(idle);
        self
    }

    /// The registered buffer pool: `count` buffers of `size` bytes,
    /// registered once. Reads land in these; sends are copied into them.
    /// When all are in use, owned heap buffers stand in.
    ///
    /// Registered buffers are locked in memory and count against
    /// `RLIMIT_MEMLOCK`, which all of a user's processes share and which
    /// the kernel refills only some milliseconds after a ring closes. So
    /// the default depends on who runs the program:
    ///
    /// - with `CAP_IPC_LOCK` (root) or an unlimited limit: 64 x 64 KiB;
    /// - otherwise 64 KiB buffers filling 1/16 of the limit, less what the
    ///   ring's queues lock (7 with the usual 8 MiB), so 8 proactors take
    ///   half of it. If even these cannot be locked (other rings of the
    ///   user hold the rest), the same buffers are used unregistered
    ///   (plain `READ` / `WRITE` instead of `READ_FIXED` / `WRITE_FIXED`),
    ///   and [`build`](Self::build) still succeeds.
    ///
    /// Set explicitly, the pool is registered or `build` fails with
    /// [`Error::MemlockLimit`]. `count` 0 registers nothing.
    pub fn buffers(mut self, count: u16, size: usize) -> Self {
        self.buffers = Some((count, size));
        self
    }

    /// Size of the registered file table (default 4096; 0 disables it).
    /// Transports beyond it use plain descriptors.
    pub fn registered_files(mut self, n: u32) -> Self {
        self.ring.files = n;
        self
    }

    /// SIGPIPE policy. An io_uring write submitted after the reader left
    /// fails with `EPIPE` **and raises SIGPIPE in the submitting thread**,
    /// whose default action kills the process. With `true` (the default) the
    /// builder sets SIGPIPE to ignored if, and only if, its disposition is
    /// still the default; a handler you installed is kept. Rust programs
    /// already start with SIGPIPE ignored. With `false` nothing is changed.
    pub fn ignore_sigpipe(mut self, yes: bool) -> Self {
        self.ignore_sigpipe = yes;
        self
    }

    /// Longest pause between retries of a sender waiting for its first
    /// reader (default 50 ms). Readers that open non-blocking, or while a
    /// writer is present, are seen at once through inotify; a reader blocked
    /// in `open(2)` is invisible to inotify until it has a writer, and is
    /// found by the retry timer, which backs off from 1 ms to this.
    pub fn open_retry_max(mut self, max: Duration) -> Self {
        self.open_retry_max = max.max(RETRY_START);
        self
    }

    /// Caps the kernel's io-wq worker threads of this ring: `bounded` for
    /// regular-file work, `unbounded` for pipes (default 2 and 2). Splices
    /// and tees always run on these workers; the cap keeps thread count
    /// flat however many relays exist.
    pub fn iowq_max_workers(mut self, bounded: u32, unbounded: u32) -> Self {
        self.iowq_max_workers = [bounded.max(1), unbounded.max(1)];
        self
    }

    /// How receivers read unless their options say otherwise (default
    /// [`ReadMode::Fixed`]).
    pub fn read_mode(mut self, mode: ReadMode) -> Self {
        self.read_mode = mode;
        self
    }

    /// The provided buffer ring shared by multishot receivers: `count`
    /// buffers (rounded up to a power of two) of `size` bytes (default
    /// 128 x 64 KiB, so one read can take a whole 64 KiB pipe). When it
    /// runs dry, multishot reads pause until the buffers lent in events
    /// come back at the next poll.
    pub fn provided_buffers(mut self, count: u16, size: usize) -> Self {
        self.provided = (count.max(1), size.max(1));
        self
    }

    /// Sets up the ring, probes the kernel and registers the buffers.
    /// Fails with [`Error::Unsupported`] when io_uring is missing, disabled
    /// or lacks an opcode, naming which, and with [`Error::MemlockLimit`]
    /// when buffers set with [`buffers`](Self::buffers) cannot be locked.
    /// Without locked memory for the provided ring, multishot reads are
    /// off ([`ReadMode::Fixed`] is used).
    ///
    /// Where locked memory is counted, a ring setup refused for lack of it,
    /// and explicit buffers that fit the limit, are retried for up to 2 s:
    /// the kernel gives a closed ring's locked memory back to its user only
    /// some milliseconds after the close, so back-to-back proactors (in
    /// this process or the user's others) can find the budget full for a
    /// moment.
    pub fn build(self) -> Result<Proactor> {
        let id = crate::token::next_proactor_id().ok_or_else(|| Error::Ring {
            op: "proactor identity (every one of 2^32 - 1 is used)",
            source: io::Error::from_raw_os_error(libc::EOVERFLOW),
        })?;
        let mut ring = Ring::new(&self.ring)?;
        let multishot_ok = ring.supports_read_multishot();
        let provided = multishot_ok.then_some(self.provided);
        let memlock = Memlock::current();
        let ring_locked = self.ring.locked_bytes()
            + provided.map_or(0, |(n, _)| buffers::provided_locked_bytes(n));
        let (count, size) = self.buffers.unwrap_or_else(|| {
            let size = buffers::DEFAULT_BUF_SIZE;
            (buffers::auto_count(memlock, ring_locked, size), size)
        });
        let pool = Pool::with_provided(count, size, provided).map_err(|e| Error::Ring {
            op: "mmap of the buffer pool",
            source: e,
        })?;
        let multishot_ok = multishot_ok
            && match ring.register_provided(&pool) {
                Ok(_) => true,
                Err(e) if buffers::is_memlock_error(&e) => false,
                Err(e) => {
                    return Err(Error::Ring {
                        op: "register_buf_ring",
                        source: e,
                    });
                }
            };
        if count > 0 {
            // Buffers asked for that fit the limit are worth waiting for
            // closed rings to give back their memory; the default pool
            // does not wait: it works unregistered.
            let fits = memlock
                .limit
                .is_some_and(|l| pool.registered_bytes() + ring_locked <= l);
            match ring.register_pool(&pool, self.buffers.is_some() && fits) {
                Ok(()) => {}
                // The default pool works unregistered.
                Err(e) if buffers::is_memlock_error(&e) && self.buffers.is_none() => {}
                Err(e) if buffers::is_memlock_error(&e) && memlock.is_counted() => {
                    return Err(Error::MemlockLimit {
                        requested: pool.registered_bytes(),
                        limit: memlock.limit,
                        source: e,
                    });
                }
                Err(e) => {
                    return Err(Error::Ring {
                        op: "register_buffers",
                        source: e,
                    });
                }
            }
        }
        let [bounded, unbounded] = self.iowq_max_workers;
        ring.set_iowq_max_workers(bounded, unbounded)
            .map_err(|e| Error::Ring {
                op: "register_iowq_max_workers",
                source: e,
            })?;
        if self.ignore_sigpipe {
            ring::ignore_sigpipe_if_default();
        }
        Ok(Proactor {
            id,
            ring,
            pool,
            transports: Slab::new(),
            generations: Vec::new(),
            completions: Vec::new(),
            pending: Vec::new(),
            waiting: Vec::new(),
            watch: None,
            watch_armed: false,
            timer_armed: false,
            retry_delay: RETRY_START,
            open_retry_max: self.open_retry_max,
            multishot_ok,
            read_mode: self.read_mode,
            starved: Vec::new(),
        })
    }
}

/// Per-transport byte counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes handed to [`Proactor::send`].
    pub bytes_queued: u64,
    /// Bytes the kernel accepted into the pipe.
    pub bytes_accepted: u64,
    /// Bytes delivered by `Data` events.
    pub bytes_read: u64,
}

impl Stats {
    /// Bytes queued and not yet accepted by the kernel.
    pub fn bytes_unsent(&self) -> u64 {
        self.bytes_queued - self.bytes_accepted
    }
}

#[derive(Debug)]
enum Role {
    Receiver {
        read: Option<OpId>,
        poll: Option<OpId>,
        bytes_read: u64,
        /// Survive writers leaving: reopen at EOF instead of closing.
        persistent: bool,
        /// Arm no read: the data waits in the pipe.
        paused: bool,
        /// Spliced into a sender instead of read.
        relay: Option<Box<Relay>>,
        /// Teed and spliced into several senders instead of read.
        fan: Option<Box<fanout::FanOut>>,
        /// Reads with one multishot read from the shared buffer ring.
        multishot: bool,
        /// A multishot receiver's poll for its writers leaving.
        hup: Option<OpId>,
        /// Writers left: single-shot reads until EOF.
        draining: bool,
        /// Delivers whole frames instead of byte chunks.
        decoder: Option<Box<FrameDecoder>>,
    },
    Sender(Box<SendSide>),
}

/// A receiver's bytes moved to a sender by splice(2), never through
/// user space.
#[derive(Debug)]
struct Relay {
    to: Token,
    poll: Option<OpId>,
    splice: Option<OpId>,
}

/// Bytes one splice may move; the pipes' contents bound it anyway.
const SPLICE_LEN: u32 = 1 << 20;

#[derive(Debug)]
struct SendSide {
    queue: WriteQueue,
    /// `start`, `end` and `limit` of the chunk whose write is in flight.
    writing: Option<(usize, usize, usize)>,
    write: Option<OpId>,
    poll: Option<OpId>,
    close_after_flush: bool,
    pipe_size: Option<usize>,
    /// When waiting for a reader must end, and the wait it stands for.
    deadline: Option<(Instant, Duration)>,
    watch: Option<WatchDescriptor>,
    reconnect: Reconnect,
    high: u64,
    low: u64,
    /// The queue went above `high`: report `Writable` once it is at `low`.
    above_high: bool,
    /// The receiver relaying into this sender.
    relayed_from: Option<Token>,
}

impl SendSide {
    fn new(opts: &FifoOptions) -> SendSide {
        SendSide {
            queue: WriteQueue::default(),
            writing: None,
            write: None,
            poll: None,
            close_after_flush: false,
            pipe_size: opts.pipe_size,
            deadline: None,
            watch: None,
            reconnect: opts.reconnect,
            high: opts.high_watermark as u64,
            low: opts.low_watermark as u64,
            above_high: false,
            relayed_from: None,
        }
    }
}

#[derive(Debug)]
struct Transport {
    token: Token,
    state: State,
    role: Role,
    fd: Option<OwnedFd>,
    fixed: Option<u32>,
    anchor: Option<OwnedFd>,
    path: Option<PathBuf>,
    /// Ring operations owned by this transport (cancels included).
    inflight: u32,
    reason: CloseReason,
}

impl Transport {
    fn file(&self) -> Option<FileRef> {
        match (self.fixed, &self.fd) {
            (Some(slot), _) => Some(FileRef::Fixed(slot)),
            (None, Some(fd)) => Some(FileRef::Raw(fd.as_raw_fd())),
            (None, None) => None,
        }
    }

    /// The send side of a transport known to be a sender: every public
    /// call checks the role of its handle first (`live_sender`), and the
    /// proactor only stores senders' indices where senders are expected.
    fn sender(&mut self) -> &mut SendSide {
        match &mut self.role {
            Role::Sender(s) => s,
            Role::Receiver { .. } => unreachable!("internal: sender index maps to a receiver"),
        }
    }

    fn describe(&self) -> String {
        match (&self.path, &self.fd) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(fd)) => format!("fd {}", fd.as_raw_fd()),
            (None, None) => format!("{:?}", self.token),
        }
    }
}

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
}

impl Proactor {
    fn multishot(&self, opts: &FifoOptions) -> bool {
        self.multishot_ok && opts.read_mode.unwrap_or(self.read_mode) == ReadMode::Multishot
    }

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
        self.enqueue(to, |queue, pool| queue.push(pool, data))
    }

    /// Queues one frame: `payload` encoded with `codec`. A frame of at most
    /// [`PIPE_BUF`](crate::frame::PIPE_BUF) bytes, header included, goes out
    /// in a single write, with other whole frames only, so frames from many
    /// processes writing to one FIFO never interleave. Larger frames are
    /// written like [`send`](Self::send) bytes: safe with one writer only.
    /// Backpressure as for `send`.
    pub fn send_frame(&mut self, to: Sender, codec: Codec, payload: &[u8]) -> Result<()> {
        let frame_error = |source| Error::Frame {
            token: to.0,
            source,
        };
        match codec {
            Codec::Lines => {
                if let Some(at) = memchr::memchr(b'\n', payload) {
                    return Err(frame_error(FrameError::NewlineInPayload { at }));
                }
                self.enqueue(to, |q, pool| q.push_message(pool, &[payload, b"\n"]))
            }
            Codec::LengthPrefixed => {
                let len = u32::try_from(payload.len()).map_err(|_| {
                    frame_error(FrameError::TooLong {
                        len: payload.len(),
                        max: u32::MAX as usize,
                    })
                })?;
                let header = len.to_le_bytes();
                self.enqueue(to, |q, pool| q.push_message(pool, &[&header, payload]))
            }
        }
    }

    fn enqueue(&mut self, to: Sender, push: impl FnOnce(&mut WriteQueue, &Rc<Pool>)) -> Result<()> {
        let idx = self.live_sender(to)?;
        let pool = Rc::clone(&self.pool);
        let side = self.transports[idx].sender();
        if side.close_after_flush {
            return Err(Error::Closed { token: to.0 });
        }
        if side.relayed_from.is_some() {
            return Err(Error::Relayed { token: to.0 });
        }
        let unsent = side.queue.unsent();
        if unsent >= side.high {
            side.above_high = true;
            return Err(Error::WouldBlock {
                token: to.0,
                unsent,
                high: side.high,
            });
        }
        push(&mut side.queue, &pool);
        // At the watermark the next send is refused: promise `Writable`.
        side.above_high |= side.queue.unsent() >= side.high;
        self.pump(idx);
        Ok(())
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
    ///   accepted them all: the sender's [`Reconnect`] policy, as for any
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
    /// [`Event::Relayed`](crate::Event::Relayed). The receiver's data no
    /// longer comes as `Data` events and the sender takes no more `send`s
    /// ([`Error::Relayed`]). Bytes already queued on `to` go first.
    ///
    /// A splice never waits inside the kernel: it is linked behind a poll
    /// for data, runs non-blocking, and io-wq workers are capped (see
    /// [`Builder::iowq_max_workers`]), so idle relays hold no threads. If
    /// `to`'s reader leaves, the bytes stay in `from`'s pipe (nothing is
    /// consumed) until a reader comes back. The relay ends when either end
    /// closes; `from` then goes back to `Data` events. To end a pipeline
    /// cleanly, call [`close_after_flush`](Self::close_after_flush) on `to`:
    /// it closes after `from`'s EOF, once its reader has every byte.
    pub fn relay(&mut self, from: Receiver, to: Sender) -> Result<()> {
        let rx = self.live_receiver(from)?;
        let tx = self.live_sender(to)?;
        if self.transports[tx].sender().relayed_from.is_some() {
            return Err(Error::Relayed { token: to.0 });
        }
        let Role::Receiver {
            read,
            poll,
            hup,
            relay,
            ..
        } = &mut self.transports[rx].role
        else {
            return Err(Error::Stale { token: from.0 });
        };
        if relay.is_some() {
            return Err(Error::Relayed { token: from.0 });
        }
        *relay = Some(Box::new(Relay {
            to: to.0,
            poll: None,
            splice: None,
        }));
        // A read in flight is cancelled; if it completed first, its bytes
        // are queued on `to` ahead of everything spliced. (A splice sees
        // EOF itself: no hang-up poll is needed.)
        let ops: Vec<OpId> = [*read, *poll, *hup].into_iter().flatten().collect();
        let owner = from.0.to_owner();
        for op in ops {
            if self.ring.cancel(op, owner).is_ok() {
                self.transports[rx].inflight += 1;
            }
        }
        self.transports[tx].sender().relayed_from = Some(from.0);
        self.arm_relay(rx, true);
        Ok(())
    }

    /// Stops reading a receiver: no read is armed, so data waits in the
    /// pipe (and its writers feel the pipe's backpressure). A read already
    /// in flight is cancelled; if it completed first, its data is still
    /// delivered. Nothing is lost.
    pub fn pause(&mut self, rx: Receiver) -> Result<()> {
        let idx = self.live_receiver(rx)?;
        let t = &mut self.transports[idx];
        let owner = t.token.to_owner();
        let Role::Receiver {
            read,
            poll,
            hup,
            paused,
            fan,
            relay,
            ..
        } = &mut t.role
        else {
            return Err(Error::Stale { token: rx.0 });
        };
        *paused = true;
        // A fan-out round in flight completes; only its wait for data stops.
        // A relay's armed poll and splice stop.
        let fan_poll = fan.as_ref().and_then(|f| f.poll);
        let (relay_poll, relay_splice) =
            relay.as_ref().map_or((None, None), |r| (r.poll, r.splice));
        let ops: Vec<OpId> = [*read, *poll, *hup, fan_poll, relay_poll, relay_splice]
            .into_iter()
            .flatten()
            .collect();
        for op in ops {
            if self.ring.cancel(op, owner).is_ok() {
                self.transports[idx].inflight += 1;
            }
        }
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

    /// Byte counters of a live transport.
    pub fn stats(&self, token: impl Into<Token>) -> Result<Stats> {
        let token = token.into();
        let t = self.slot(token)?.ok_or(Error::Closed { token })?;
        Ok(match &t.role {
            Role::Receiver { bytes_read, .. } => Stats {
                bytes_read: *bytes_read,
                ..Stats::default()
            },
            Role::Sender(s) => Stats {
                bytes_queued: s.queue.queued_total,
                bytes_accepted: s.queue.accepted_total,
                bytes_read: 0,
            },
        })
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
    pub fn poll(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<()> {
        // Lent buffers go back first: multishot reads starved of them resume.
        events.items.clear();
        for token in std::mem::take(&mut self.starved) {
            if let Ok(idx) = self.live(token) {
                self.arm_read(idx);
            }
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let wait = self.pending.is_empty()
                && timeout != Some(Duration::ZERO)
                && self.ring.in_flight() > 0;
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            self.ring
                .submit_and_wait(wait, remaining)
                .map_err(|e| Error::Ring {
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
            if !wait || expired || !self.pending.is_empty() {
                break;
            }
            // Only internal work finished (a timer, a cancel): wait again.
        }
        events.items.append(&mut self.pending);
        Ok(())
    }

    // ----- registry -----

    fn insert(
        &mut self,
        state: State,
        role: Role,
        anchor: Option<OwnedFd>,
        path: Option<PathBuf>,
    ) -> Token {
        let entry = self.transports.vacant_entry();
        let index = entry.key();
        if index >= self.generations.len() {
            self.generations.resize(index + 1, 0);
        }
        let token = Token {
            index: index as u32,
            generation: self.generations[index],
            proactor: self.id,
        };
        entry.insert(Transport {
            token,
            state,
            role,
            fd: None,
            fixed: None,
            anchor,
            path,
            inflight: 0,
            reason: CloseReason::Requested,
        });
        token
    }

    /// The live transport of `token` (`None`: closed, slot not reused).
    fn slot(&self, token: Token) -> Result<Option<&Transport>> {
        if token.proactor != self.id {
            return Err(Error::Foreign {
                token,
                this: self.id,
            });
        }
        let index = token.index as usize;
        let current = *self.generations.get(index).ok_or(Error::Stale { token })?;
        match self.transports.get(index) {
            Some(t) if t.token == token => Ok(Some(t)),
            None if token.generation.wrapping_add(1) == current => Ok(None),
            _ => Err(Error::Stale { token }),
        }
    }

    /// Index of a transport that accepts operations (not closing or closed).
    fn live(&self, token: Token) -> Result<usize> {
        match self.slot(token)? {
            Some(t) if t.state != State::Closing => Ok(token.index as usize),
            _ => Err(Error::Closed { token }),
        }
    }

    /// Index of a live sender. Within one proactor a `Sender` always names
    /// a sender's slot (a reused slot has a new generation); the role is
    /// checked anyway, so no handle can reach the wrong kind of transport.
    fn live_sender(&self, s: Sender) -> Result<usize> {
        let idx = self.live(s.0)?;
        match self.transports[idx].role {
            Role::Sender(_) => Ok(idx),
            Role::Receiver { .. } => Err(Error::Stale { token: s.0 }),
        }
    }

    /// Index of a live receiver (see [`live_sender`](Self::live_sender)).
    fn live_receiver(&self, r: Receiver) -> Result<usize> {
        let idx = self.live(r.0)?;
        match self.transports[idx].role {
            Role::Receiver { .. } => Ok(idx),
            Role::Sender(_) => Err(Error::Stale { token: r.0 }),
        }
    }

    fn install_fd(&mut self, idx: usize, fd: OwnedFd) {
        let fixed = self.ring.register_file(fd.as_raw_fd());
        let t = &mut self.transports[idx];
        t.fixed = fixed;
        t.fd = Some(fd);
    }

    // ----- state changes -----

    fn apply(&mut self, idx: usize, input: Input) {
        let t = &mut self.transports[idx];
        let Some((next, notice)) = transition(t.state, input) else {
            return;
        };
        t.state = next;
        let token = t.token;
        match notice {
            Notice::None => {}
            Notice::Opened => self.pending.push(Item::Opened(Sender(token))),
            Notice::PeerBack => self.pending.push(Item::PeerBack(token)),
            Notice::PeerGone => self.pending.push(Item::PeerGone(token)),
            Notice::Closed => unreachable!("Closed is only reached in finish_close"),
        }
    }

    fn begin_close(&mut self, idx: usize, reason: CloseReason) {
        let t = &mut self.transports[idx];
        if t.state == State::Closing {
            return;
        }
        t.reason = reason;
        self.apply(idx, Input::Close);
        self.cancel_ops(idx);
        self.maybe_finish(idx);
    }

    fn fail(&mut self, idx: usize, error: Error) {
        let t = &mut self.transports[idx];
        if t.state == State::Closing {
            return;
        }
        let token = t.token;
        t.reason = CloseReason::Error;
        self.pending.push(Item::Error { token, error });
        self.apply(idx, Input::Fail);
        self.cancel_ops(idx);
        self.maybe_finish(idx);
    }

    fn io_fail(&mut self, idx: usize, op: &'static str, result: i32) {
        let token = self.transports[idx].token;
        let source = io::Error::from_raw_os_error(-result);
        self.fail(idx, Error::Io { token, op, source });
    }

    /// Counts a just-submitted operation of transport `idx` as in flight,
    /// or fails the transport if it could not be submitted.
    fn track(&mut self, idx: usize, submitted: io::Result<OpId>) -> Option<OpId> {
        match submitted {
            Ok(op) => {
                self.transports[idx].inflight += 1;
                Some(op)
            }
            Err(e) => {
                self.fail(
                    idx,
                    Error::Ring {
                        op: "submit",
                        source: e,
                    },
                );
                None
            }
        }
    }

    fn cancel_ops(&mut self, idx: usize) {
        self.leave_waiting(idx);
        let t = &mut self.transports[idx];
        let owner = t.token.to_owner();
        let ops: Vec<OpId> = match &t.role {
            Role::Receiver {
                read,
                poll,
                relay,
                fan,
                hup,
                ..
            } => {
                let (rp, rs) = relay.as_ref().map_or((None, None), |r| (r.poll, r.splice));
                let fan_ops = fan.iter().flat_map(|f| f.ops());
                [*read, *poll, *hup, rp, rs]
                    .into_iter()
                    .flatten()
                    .chain(fan_ops)
                    .collect()
            }
            Role::Sender(s) => [s.write, s.poll].into_iter().flatten().collect(),
        };
        for op in ops {
            if self.ring.cancel(op, owner).is_ok() {
                self.transports[idx].inflight += 1;
            }
        }
        // A splice into this sender uses its fd: stop it too (it is the
        // receiver's operation; `maybe_finish` waits for it).
        for (rx, op) in self.relay_ops_of_sender(idx) {
            let owner = self.transports[rx].token.to_owner();
            if self.ring.cancel(op, owner).is_ok() {
                self.transports[rx].inflight += 1;
            }
        }
    }

    fn maybe_finish(&mut self, idx: usize) {
        let t = &self.transports[idx];
        if t.state == State::Closing && t.inflight == 0 && self.relay_ops_of_sender(idx).is_empty()
        {
            self.finish_close(idx);
        }
    }

    /// The last step of close: nothing is in flight any more.
    fn finish_close(&mut self, idx: usize) {
        let mut t = self.transports.remove(idx);
        debug_assert_eq!(
            transition(t.state, Input::Drained),
            Some((State::Closed, Notice::Closed))
        );
        if let Some(slot) = t.fixed.take() {
            // A registered slot holds its own reference to the pipe end:
            // empty it, or the peer never sees this end close.
            let _ = self.ring.unregister_file(slot);
        }
        drop(t.fd.take());
        self.generations[idx] = self.generations[idx].wrapping_add(1);
        let mut unsent = Vec::new();
        let mut freed = Vec::new();
        match &mut t.role {
            Role::Sender(s) => {
                s.queue.take_bytes(&mut unsent);
                // The relay into this sender ends (a fan-out loses this
                // destination); its receiver reads again when none is left.
                if let Some(from) = s.relayed_from.take()
                    && let Some(r) = self.transports.get_mut(from.index as usize)
                    && let Role::Receiver { relay, fan, .. } = &mut r.role
                {
                    *relay = None;
                    if let Some(f) = fan {
                        f.to.retain(|d| *d != t.token);
                        if f.to.is_empty() {
                            *fan = None;
                        }
                    }
                    if fan.is_none() {
                        self.arm_read(from.index as usize);
                    } else {
                        self.arm_fan(from.index as usize);
                    }
                }
            }
            Role::Receiver {
                relay,
                fan,
                decoder,
                ..
            } => {
                // Part of a frame read before the close: its bytes left the
                // pipe, so say how many rather than drop them unseen.
                // (A decoder that failed has had its error reported.)
                if let Some(decoder) = decoder
                    && !decoder.is_failed()
                    && decoder.buffered() > 0
                {
                    let source = FrameError::Truncated {
                        buffered: decoder.buffered(),
                    };
                    let token = t.token;
                    let error = Error::Frame { token, source };
                    self.pending.push(Item::Error { token, error });
                }
                let dests: Vec<Token> = match (relay.take(), fan.take()) {
                    (Some(r), _) => vec![r.to],
                    (None, Some(f)) => f.to,
                    (None, None) => Vec::new(),
                };
                for to in dests {
                    if let Some(r) = self.transports.get_mut(to.index as usize)
                        && r.token == to
                    {
                        r.sender().relayed_from = None;
                        self.pump(to.index as usize);
                        freed.push(to);
                    }
                }
            }
        }
        self.pending.push(Item::Closed {
            token: t.token,
            reason: t.reason,
            unsent,
        });
        // Destinations flushing may close now, after their source's Closed.
        for to in freed {
            if matches!(self.transports.get(to.index as usize), Some(d) if d.token == to) {
                self.maybe_flushed(to.index as usize);
            }
        }
    }

    // ----- reads -----

    fn arm_read(&mut self, idx: usize) {
        // Delivering may have failed the transport and freed its slot.
        let Some(t) = self.transports.get(idx) else {
            return;
        };
        if t.state == State::Closing {
            return;
        }
        let (Some(file), Some(fd)) = (t.file(), t.fd.as_ref()) else {
            return;
        };
        match &t.role {
            Role::Receiver { paused: true, .. } => return,
            Role::Receiver { relay: Some(_), .. } => return self.arm_relay(idx, true),
            Role::Receiver { fan: Some(_), .. } => return self.arm_fan(idx),
            Role::Receiver {
                multishot: true,
                draining: false,
                ..
            } => return self.arm_multishot(idx),
            _ => {}
        }
        let raw = fd.as_raw_fd();
        let owner = t.token.to_owner();
        // No free registered buffer: wait for data without holding memory,
        // then read into whatever buffer is free at that moment.
        let (read, poll) = match self.pool.take_fixed() {
            Some(buf) => (self.ring.read(file, buf, owner).map(Some), Ok(None)),
            None => (
                Ok(None),
                self.ring
                    .poll_add(raw, libc::POLLIN as u32, owner)
                    .map(Some),
            ),
        };
        self.record_recv_ops(idx, read, poll);
    }

    fn arm_read_now(&mut self, idx: usize) {
        let t = &self.transports[idx];
        let Some(file) = t.file() else { return };
        if matches!(t.role, Role::Receiver { paused: true, .. }) {
            return;
        }
        let owner = t.token.to_owner();
        let read = self.ring.read(file, self.pool.take(), owner).map(Some);
        self.record_recv_ops(idx, read, Ok(None));
    }

    fn arm_read_poll(&mut self, idx: usize) {
        let t = &self.transports[idx];
        let Some(fd) = t.fd.as_ref() else { return };
        let poll = self
            .ring
            .poll_add(fd.as_raw_fd(), libc::POLLIN as u32, t.token.to_owner());
        self.record_recv_ops(idx, Ok(None), poll.map(Some));
    }

    fn record_recv_ops(
        &mut self,
        idx: usize,
        read: io::Result<Option<OpId>>,
        poll: io::Result<Option<OpId>>,
    ) {
        match (read, poll) {
            (Ok(r), Ok(p)) => {
                let t = &mut self.transports[idx];
                t.inflight += 1;
                if let Role::Receiver { read, poll, .. } = &mut t.role {
                    *read = r;
                    *poll = p;
                }
            }
            (Err(e), _) | (_, Err(e)) => self.fail(
                idx,
                Error::Ring {
                    op: "submit",
                    source: e,
                },
            ),
        }
    }

    fn on_read(&mut self, idx: usize, result: i32, buf: Option<crate::buffers::Buf>) {
        let t = &mut self.transports[idx];
        if let Role::Receiver { read, .. } = &mut t.role {
            *read = None;
        }
        let closing = t.state == State::Closing;
        match (result, buf) {
            // The kernel took these bytes out of the pipe: they reach the
            // user even if the read's cancel came too late (close, pause).
            (n, Some(buf)) if n > 0 => {
                self.deliver(idx, buf, n as usize);
                self.arm_read(idx);
            }
            (n, None) if n > 0 => self.io_fail(idx, "read (no buffer)", -libc::EIO),
            _ if closing => {}
            (0, _) => self.on_eof(idx),
            (r, _) if r == -libc::EAGAIN => self.arm_read_poll(idx),
            (r, _) if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => self.arm_read(idx),
            (r, _) => self.io_fail(idx, "read", r),
        }
    }

    /// Hands `buf[..n]` read by a receiver to the user, or to the sender it
    /// relays to (bytes read just before the relay began go first).
    fn deliver(&mut self, idx: usize, buf: Buf, n: usize) {
        let t = &mut self.transports[idx];
        let Role::Receiver {
            bytes_read,
            relay,
            fan,
            ..
        } = &mut t.role
        else {
            return;
        };
        *bytes_read += n as u64;
        let forward: Vec<Token> = match (relay, fan) {
            (Some(r), _) => vec![r.to],
            (None, Some(f)) => f.to.clone(),
            (None, None) => Vec::new(),
        };
        if !forward.is_empty() {
            let pool = Rc::clone(&self.pool);
            for to in forward {
                let to = to.index as usize;
                self.transports[to]
                    .sender()
                    .queue
                    .push(&pool, &buf.as_slice()[..n]);
                self.pump(to);
            }
        } else if self.deliver_frames(idx, buf, n) {
            return;
        }
        self.apply(idx, Input::PeerReady);
    }

    /// Reports `buf[..n]` as Data, or as the frames it completes if the
    /// receiver decodes frames. Returns true if it failed the transport.
    fn deliver_frames(&mut self, idx: usize, buf: Buf, n: usize) -> bool {
        let Proactor {
            transports,
            pending,
            ..
        } = self;
        let t = &mut transports[idx];
        let (token, from) = (t.token, Receiver(t.token));
        let Role::Receiver {
            decoder: Some(decoder),
            ..
        } = &mut t.role
        else {
            pending.push(Item::Data { from, buf, len: n });
            return false;
        };
        let buf = Rc::new(buf);
        let chunk = &buf.as_slice()[..n];
        let base = chunk.as_ptr() as usize;
        let decoded = decoder.feed(chunk, |frame| {
            let at = (frame.as_ptr() as usize).wrapping_sub(base);
            // Lent if it lies inside this read, copied if it was split.
            let frame = if !frame.is_empty() && at < n && at + frame.len() <= n {
                FrameBytes::Lent(Rc::clone(&buf), at..at + frame.len())
            } else {
                FrameBytes::Owned(frame.to_vec())
            };
            pending.push(Item::Frame { from, frame });
        });
        match decoded {
            Ok(()) => false,
            // Bytes read while closing are still reported, bad ones too.
            Err(source) if self.transports[idx].state == State::Closing => {
                let error = Error::Frame { token, source };
                self.pending.push(Item::Error { token, error });
                false
            }
            Err(source) => {
                self.fail(idx, Error::Frame { token, source });
                true
            }
        }
    }

    /// Arms what a multishot receiver lacks: its multishot read and its
    /// hang-up poll (a FIFO's multishot read never reports EOF).
    fn arm_multishot(&mut self, idx: usize) {
        let t = &self.transports[idx];
        let Some(fd) = t.fd.as_ref() else {
            return;
        };
        let (raw, owner) = (fd.as_raw_fd(), t.token.to_owner());
        let Role::Receiver { read, hup, .. } = &t.role else {
            return;
        };
        // Measured on Linux 6.18: READ_MULTISHOT on a registered (fixed)
        // file fails with -EBADFD; on the plain descriptor it works.
        let read = match read {
            None => Some(self.ring.read_multishot(FileRef::Raw(raw), owner)),
            Some(_) => None,
        };
        // Events 0: POLLHUP and POLLERR only, never data.
        let hup = match hup {
            None => Some(self.ring.poll_add(raw, 0, owner)),
            Some(_) => None,
        };
        for (slot, op) in [(0, read), (1, hup)] {
            match op {
                None => {}
                Some(Ok(op)) => {
                    let t = &mut self.transports[idx];
                    t.inflight += 1;
                    if let Role::Receiver { read, hup, .. } = &mut t.role {
                        *(if slot == 0 { read } else { hup }) = Some(op);
                    }
                }
                Some(Err(e)) => {
                    return self.fail(
                        idx,
                        Error::Ring {
                            op: "submit",
                            source: e,
                        },
                    );
                }
            }
        }
    }

    fn on_read_multi(&mut self, idx: usize, c: &Completion) {
        // Take the kernel's buffer first: dropped unused, it goes back.
        let buf = c.provided.and_then(|bid| self.pool.take_provided(bid));
        let t = &mut self.transports[idx];
        let token = t.token;
        if let (false, Role::Receiver { read, .. }) = (c.more, &mut t.role) {
            *read = None;
        }
        let closing = t.state == State::Closing;
        match c.result {
            // Delivered even while closing: the bytes left the pipe.
            n if n > 0 => {
                let Some(buf) = buf else {
                    return self.io_fail(idx, "read (no buffer)", -libc::EIO);
                };
                self.deliver(idx, buf, n as usize);
                if !c.more {
                    self.arm_read(idx);
                }
            }
            _ if closing => {}
            // EOF: only ever seen on an anonymous pipe.
            0 => self.on_eof(idx),
            // The shared ring ran dry: re-armed once buffers come back.
            r if r == -libc::ENOBUFS => self.starved.push(token),
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => self.arm_read(idx),
            r => self.io_fail(idx, "read", r),
        }
    }

    /// Every writer of a multishot receiver left. Drain what is left with
    /// single-shot reads, whose 0 is the EOF.
    fn on_hup(&mut self, idx: usize, result: i32) {
        let t = &mut self.transports[idx];
        let owner = t.token.to_owner();
        let Role::Receiver {
            hup,
            draining,
            read,
            ..
        } = &mut t.role
        else {
            return;
        };
        *hup = None;
        if t.state == State::Closing || result < 0 {
            return;
        }
        *draining = true;
        match *read {
            // Its last completion (-ECANCELED) arms the single-shot read.
            Some(op) => {
                if self.ring.cancel(op, owner).is_ok() {
                    self.transports[idx].inflight += 1;
                }
            }
            None => self.arm_read(idx),
        }
    }

    /// Every writer closed. Never re-arm a read on this fd: on a FIFO it
    /// would return 0 again at once, thousands of times a second. A
    /// persistent receiver opens a fresh read end instead (before closing
    /// the old one, so the pipe and anything written meanwhile survive),
    /// whose read waits quietly for the next writer.
    fn on_eof(&mut self, idx: usize) {
        // A writer that left inside a frame: reported; a persistent receiver
        // drops the partial frame and goes on, a one-shot one fails.
        let t = &mut self.transports[idx];
        let token = t.token;
        if let Role::Receiver {
            decoder: Some(decoder),
            persistent,
            ..
        } = &mut t.role
            && let Err(source) = decoder.finish()
        {
            let error = Error::Frame { token, source };
            if !*persistent {
                return self.fail(idx, error);
            }
            self.pending.push(Item::Error { token, error });
        }
        self.apply(idx, Input::PeerLeft);
        let t = &self.transports[idx];
        let persistent = matches!(
            t.role,
            Role::Receiver {
                persistent: true,
                ..
            }
        );
        let reopened = match (&t.anchor, persistent) {
            (Some(anchor), true) => Some(fifo::open_reader(anchor)),
            _ => None,
        };
        match reopened {
            None => self.begin_close(idx, CloseReason::Eof),
            Some(Ok(fd)) => {
                let t = &mut self.transports[idx];
                let owner = t.token.to_owner();
                if let Role::Receiver { draining, hup, .. } = &mut t.role {
                    // The new read end waits quietly, multishot or not.
                    *draining = false;
                    // Nothing may keep watching the old fd.
                    if let Some(op) = hup.take()
                        && self.ring.cancel(op, owner).is_ok()
                    {
                        t.inflight += 1;
                    }
                }
                if let Some(slot) = self.transports[idx].fixed.take() {
                    let _ = self.ring.unregister_file(slot);
                }
                drop(self.transports[idx].fd.take());
                self.install_fd(idx, fd);
                self.arm_read(idx);
            }
            Some(Err(e)) => {
                let path = self.transports[idx].path.clone().unwrap_or_default();
                self.fail(idx, fifo::open_error(&path, e));
            }
        }
    }

    fn on_poll(&mut self, idx: usize, result: i32) {
        let t = &mut self.transports[idx];
        let is_receiver = match &mut t.role {
            Role::Receiver { poll, .. } => {
                *poll = None;
                true
            }
            Role::Sender(s) => {
                s.poll = None;
                false
            }
        };
        if t.state == State::Closing {
            return;
        }
        let open = t.state == State::Open;
        match (result, is_receiver) {
            // Cancelled by pause or relay: `arm_read` does what they want.
            (ECANCELED, true) => self.arm_read(idx),
            (ECANCELED, false) => {}
            (r, _) if r < 0 => self.io_fail(idx, "poll", r),
            (_, true) => self.arm_read_now(idx),
            // The pipe has no reader: as a write's EPIPE would say.
            (r, false) if open && r & i32::from(libc::POLLERR) != 0 => self.on_reader_gone(idx),
            (_, false) => self.pump(idx),
        }
    }

    // ----- relays -----

    /// Submits the relay's next splice if both ends are ready: the receiver
    /// open and not paused or reading, the sender open with nothing of its
    /// own queued or being written.
    fn arm_relay(&mut self, rx: usize, poll_first: bool) {
        let t = &self.transports[rx];
        if t.state == State::Closing {
            return;
        }
        let Role::Receiver {
            relay: Some(relay),
            paused: false,
            read: None,
            poll: None,
            ..
        } = &t.role
        else {
            return;
        };
        let (Some(from), Some(fd)) = (t.file(), t.fd.as_ref()) else {
            return;
        };
        if relay.poll.is_some() || relay.splice.is_some() {
            return;
        }
        let (raw, owner, to) = (fd.as_raw_fd(), t.token.to_owner(), relay.to);
        let Some(tt) = self.transports.get(to.index as usize) else {
            return;
        };
        let Role::Sender(side) = &tt.role else { return };
        let busy = side.writing.is_some() || side.poll.is_some() || !side.queue.is_empty();
        let (true, Some(to_file), false) = (tt.state == State::Open, tt.file(), busy) else {
            return;
        };
        match self
            .ring
            .splice(from, to_file, SPLICE_LEN, poll_first.then_some(raw), owner)
        {
            Ok((poll, splice)) => {
                let t = &mut self.transports[rx];
                t.inflight += 1 + u32::from(poll.is_some());
                if let Role::Receiver {
                    relay: Some(relay), ..
                } = &mut t.role
                {
                    relay.poll = poll;
                    relay.splice = Some(splice);
                }
            }
            Err(e) => self.fail(
                rx,
                Error::Ring {
                    op: "submit",
                    source: e,
                },
            ),
        }
    }

    fn relay_of(&mut self, rx: usize) -> Option<&mut Relay> {
        match &mut self.transports[rx].role {
            Role::Receiver { relay: Some(r), .. } => Some(r),
            _ => None,
        }
    }

    fn on_splice(&mut self, rx: usize, result: i32) {
        let Some(relay) = self.relay_of(rx) else {
            return;
        };
        relay.splice = None;
        let to = relay.to;
        let tx = to.index as usize;
        let closing = self.transports[rx].state == State::Closing;
        match result {
            // Counted and reported even while closing: the bytes moved.
            n if n > 0 => {
                let n = n as u64;
                if let Role::Receiver { bytes_read, .. } = &mut self.transports[rx].role {
                    *bytes_read += n;
                }
                let side = self.transports[tx].sender();
                side.queue.queued_total += n;
                side.queue.accepted_total += n;
                self.pending.push(Item::Relayed {
                    from: Receiver(self.transports[rx].token),
                    to: Sender(to),
                    bytes: n as usize,
                });
                self.apply(rx, Input::PeerReady);
                self.apply(tx, Input::PeerReady);
                // More is likely there: splice again without polling first.
                self.arm_relay(rx, false);
            }
            _ if closing => {}
            0 => self.on_eof(rx),
            r if r == -libc::EAGAIN => {
                let in_pipe = self.transports[rx]
                    .fd
                    .as_ref()
                    .map_or(0, |fd| ring::pipe_bytes(fd.as_fd()).unwrap_or(0));
                if in_pipe == 0 {
                    return self.arm_relay(rx, true);
                }
                // The destination is full: wait until it has room.
                let Some(fd) = self.transports[tx].fd.as_ref() else {
                    return;
                };
                let owner = self.transports[rx].token.to_owner();
                let poll = self
                    .ring
                    .poll_add(fd.as_raw_fd(), libc::POLLOUT as u32, owner);
                if let Some(op) = self.track(rx, poll)
                    && let Some(relay) = self.relay_of(rx)
                {
                    relay.poll = Some(op);
                }
            }
            // The reader of the destination left; splice consumed nothing,
            // so the bytes wait in the source pipe. Resumes on its return.
            r if r == -libc::EPIPE => {
                if self.transports[tx].state != State::Closing {
                    self.on_reader_gone(tx);
                }
            }
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => {
                self.arm_relay(rx, true)
            }
            r => self.io_fail(rx, "splice", r),
        }
    }

    /// A relay's poll completed: linked to a splice (which completes on its
    /// own), or waiting for room in the destination.
    fn on_relay_poll(&mut self, rx: usize, result: i32) {
        let Some(relay) = self.relay_of(rx) else {
            return;
        };
        relay.poll = None;
        if relay.splice.is_none() && result >= 0 {
            self.arm_relay(rx, false);
        }
    }

    /// Relay operations of the receiver relaying into sender `tx`.
    fn relay_ops_of_sender(&self, tx: usize) -> Vec<(usize, OpId)> {
        let Role::Sender(side) = &self.transports[tx].role else {
            return Vec::new();
        };
        let Some(from) = side.relayed_from else {
            return Vec::new();
        };
        let rx = from.index as usize;
        match self.transports.get(rx).map(|t| &t.role) {
            Some(Role::Receiver { relay: Some(r), .. }) => [r.poll, r.splice]
                .into_iter()
                .flatten()
                .map(|op| (rx, op))
                .collect(),
            // A round uses every destination's fd.
            Some(Role::Receiver { fan: Some(f), .. }) => f.ops().map(|op| (rx, op)).collect(),
            _ => Vec::new(),
        }
    }

    // ----- writes -----

    /// Starts the next write if the sender is open and none is in flight.
    fn pump(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        if t.state != State::Open {
            return;
        }
        let Some(file) = t.file() else { return };
        let owner = t.token.to_owner();
        let side = t.sender();
        if side.writing.is_some() || side.poll.is_some() {
            return;
        }
        let Some(chunk) = side.queue.pop_front() else {
            // Queue written: a relay or fan-out into this sender may go on.
            if let Some(from) = side.relayed_from {
                let rx = from.index as usize;
                match &self.transports[rx].role {
                    Role::Receiver { fan: Some(_), .. } => self.arm_fan(rx),
                    _ => self.arm_relay(rx, true),
                }
            }
            return;
        };
        let (start, end, limit) = (chunk.start, chunk.end, chunk.limit);
        match self.ring.write(file, chunk.buf, start..end, owner) {
            Ok(op) => {
                let t = &mut self.transports[idx];
                t.inflight += 1;
                let side = t.sender();
                side.writing = Some((start, end, limit));
                side.write = Some(op);
            }
            Err(e) => self.fail(
                idx,
                Error::Ring {
                    op: "submit",
                    source: e,
                },
            ),
        }
    }

    fn on_write(&mut self, idx: usize, result: i32, buf: Option<crate::buffers::Buf>) {
        let t = &mut self.transports[idx];
        let token = t.token;
        let closing = t.state == State::Closing;
        let side = t.sender();
        side.write = None;
        let (start, end, limit) = side
            .writing
            .take()
            .expect("a write completion has its range");
        let mut chunk = Chunk {
            buf: buf.expect("a write owns its buffer"),
            start,
            end,
            limit,
        };
        if result >= 0 {
            let n = result as usize;
            side.queue.accepted_total += n as u64;
            chunk.start += n;
            if chunk.start < chunk.end {
                side.queue.push_front(chunk);
            }
            if n > 0 {
                self.pending.push(Item::Sent {
                    to: Sender(token),
                    bytes: n,
                });
            }
            if closing {
                return;
            }
            self.apply(idx, Input::PeerReady);
            self.pump(idx);
            self.maybe_writable(idx);
            self.maybe_flushed(idx);
            return;
        }
        // Nothing was written: the chunk goes back to the front, intact.
        side.queue.push_front(chunk);
        if closing {
            return;
        }
        match result {
            // The reader left. The kernel took nothing of this write (a
            // partial write reports its count instead), so the queue is exact.
            r if r == -libc::EPIPE => self.on_reader_gone(idx),
            r if r == -libc::EAGAIN => {
                let t = &self.transports[idx];
                let Some(fd) = t.fd.as_ref() else { return };
                let poll =
                    self.ring
                        .poll_add(fd.as_raw_fd(), libc::POLLOUT as u32, token.to_owner());
                if let Some(op) = self.track(idx, poll) {
                    self.transports[idx].sender().poll = Some(op);
                }
            }
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => self.pump(idx),
            r => self.io_fail(idx, "write", r),
        }
    }

    fn on_reader_gone(&mut self, idx: usize) {
        self.apply(idx, Input::PeerLeft);
        // A fan-out destination whose reader left, by any path (a round or
        // its own queued bytes): detached if the fan-out says so.
        if let Role::Sender(s) = &self.transports[idx].role
            && let Some(from) = s.relayed_from
            && let Some(Role::Receiver { fan: Some(f), .. }) =
                self.transports.get(from.index as usize).map(|t| &t.role)
            && f.policy == FanOutPolicy::Detach
        {
            let to = self.transports[idx].token;
            self.detach(from.index as usize, to);
        }
        let t = &mut self.transports[idx];
        let has_path = t.anchor.is_some();
        let side = t.sender();
        match side.reconnect {
            Reconnect::Fail => return self.begin_close(idx, CloseReason::PeerGone),
            Reconnect::Wait => side.deadline = None,
            Reconnect::WaitUpTo(limit) => side.deadline = Some((Instant::now() + limit, limit)),
        }
        if has_path {
            self.join_waiting(idx);
        }
    }

    fn maybe_writable(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        let token = t.token;
        let side = t.sender();
        if side.above_high && side.queue.unsent() <= side.low {
            side.above_high = false;
            self.pending.push(Item::Writable(Sender(token)));
        }
    }

    /// Closes a flushing sender once nothing of its data is left: its queue
    /// is written and the reader has drained the pipe. Until then it keeps
    /// its fd, which keeps the pipe, so if the reader leaves the bytes still
    /// in the pipe reach the next one. Checked on the retry timer.
    fn maybe_flushed(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        let side = t.sender();
        // A relay or fan-out into this sender is part of what it sends:
        // the flush waits until that source has ended too.
        if !(side.close_after_flush
            && side.queue.is_empty()
            && side.writing.is_none()
            && side.relayed_from.is_none())
        {
            return;
        }
        let in_pipe = match (&t.anchor, &t.fd) {
            (Some(_), Some(fd)) => ring::pipe_bytes(fd.as_fd()).unwrap_or(0),
            // Nobody can come back to an anonymous pipe: nothing to keep.
            _ => 0,
        };
        if in_pipe == 0 {
            self.leave_waiting(idx);
            self.begin_close(idx, CloseReason::Flushed);
            return;
        }
        self.join_waiting(idx);
        // No write is left to meet EPIPE if the reader leaves without
        // draining the pipe: wait for that on the ring (a writer's poll
        // reports POLLERR once the pipe has no reader), so the reconnect
        // policy applies to it as to a failed write.
        let t = &self.transports[idx];
        if let (State::Open, Role::Sender(s), Some(fd)) = (t.state, &t.role, &t.fd)
            && s.poll.is_none()
        {
            let poll = self.ring.poll_add(fd.as_raw_fd(), 0, t.token.to_owner());
            if let Some(op) = self.track(idx, poll) {
                self.transports[idx].sender().poll = Some(op);
            }
        }
    }

    // ----- waiting for a reader -----

    fn join_waiting(&mut self, idx: usize) {
        let token = self.transports[idx].token;
        if self.transports[idx].anchor.is_none() || self.waiting.contains(&token) {
            return;
        }
        self.waiting.push(token);
        if self.watch.is_none() {
            self.watch = OpenWatch::new().ok();
        }
        if let (Some(watch), Some(anchor)) =
            (self.watch.as_mut(), self.transports[idx].anchor.as_ref())
        {
            let wd = watch.add(anchor).ok();
            self.transports[idx].sender().watch = wd;
        }
        self.arm_watch();
        self.retry_delay = RETRY_START;
        self.arm_retry_timer();
    }

    fn leave_waiting(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        let token = t.token;
        if let Role::Sender(s) = &mut t.role
            && let Some(wd) = s.watch.take()
            && let Some(watch) = self.watch.as_mut()
        {
            watch.remove(wd);
        }
        self.waiting.retain(|w| *w != token);
    }

    fn arm_watch(&mut self) {
        if self.watch_armed {
            return;
        }
        if let Some(watch) = &self.watch
            && self
                .ring
                .poll_add(watch.fd(), libc::POLLIN as u32, OWNER_OPEN_WATCH)
                .is_ok()
        {
            self.watch_armed = true;
        }
    }

    fn arm_retry_timer(&mut self) {
        if self.timer_armed || self.waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut delay = self.retry_delay;
        for token in &self.waiting {
            if let Some(t) = self.transports.get(token.index as usize)
                && let Role::Sender(s) = &t.role
                && let Some((deadline, _)) = s.deadline
            {
                delay = delay.min(deadline.saturating_duration_since(now));
            }
        }
        if self.ring.timeout(delay, OWNER_RETRY_TIMER).is_ok() {
            self.timer_armed = true;
            self.retry_delay = (self.retry_delay * 2).min(self.open_retry_max);
        }
    }

    /// Looks for readers of every waiting sender.
    fn retry_waiting(&mut self) {
        let now = Instant::now();
        for token in self.waiting.clone() {
            let idx = token.index as usize;
            let t = &mut self.transports[idx];
            let anchor = t.anchor.as_ref().expect("waiting senders have a path");
            match t.state {
                State::Opening => match fifo::try_open_writer(anchor) {
                    Ok(Some(fd)) => {
                        let size = t.sender().pipe_size;
                        if let Some(size) = size
                            && let Err(e) = fifo::set_pipe_size(fd.as_fd(), size, t.describe())
                        {
                            self.fail(idx, e);
                            continue;
                        }
                        t.sender().deadline = None;
                        self.install_fd(idx, fd);
                        self.leave_waiting(idx);
                        self.apply(idx, Input::PeerReady);
                        self.pump(idx);
                        self.maybe_flushed(idx);
                    }
                    Ok(None) => {
                        if let Some((deadline, waited)) = t.sender().deadline
                            && now >= deadline
                        {
                            let path = t.path.clone().unwrap_or_default();
                            self.fail(idx, Error::OpenTimeout { path, waited });
                        }
                    }
                    Err(e) => {
                        let path = t.path.clone().unwrap_or_default();
                        self.fail(idx, fifo::open_error(&path, e));
                    }
                },
                State::PeerGone => {
                    if let Ok(true) = fifo::has_reader(anchor) {
                        t.sender().deadline = None;
                        self.leave_waiting(idx);
                        self.apply(idx, Input::PeerReady);
                        self.pump(idx);
                        self.maybe_flushed(idx);
                    } else if let Some((deadline, waited)) = t.sender().deadline
                        && now >= deadline
                    {
                        let path = t.path.clone().unwrap_or_default();
                        self.fail(idx, Error::ReaderTimeout { path, waited });
                    }
                }
                // Open and lingering until the reader drains the pipe.
                State::Open if matches!(&t.role, Role::Sender(s) if s.close_after_flush) => {
                    self.maybe_flushed(idx)
                }
                _ => self.leave_waiting(idx),
            }
        }
    }

    // ----- completions -----

    fn dispatch(&mut self, c: Completion) {
        match c.owner {
            OWNER_RETRY_TIMER => {
                self.timer_armed = false;
                self.retry_waiting();
                self.arm_retry_timer();
                return;
            }
            OWNER_OPEN_WATCH => {
                self.watch_armed = false;
                if let Some(watch) = self.watch.as_mut() {
                    watch.drain();
                }
                self.retry_waiting();
                if !self.waiting.is_empty() {
                    self.arm_watch();
                }
                return;
            }
            o if o >= INTERNAL => return,
            _ => {}
        }
        let token = Token::from_owner(c.owner, self.id);
        let idx = token.index as usize;
        match self.transports.get_mut(idx) {
            Some(t) if t.token == token => t.inflight -= u32::from(!c.more),
            // Cannot happen: a slot is freed only when nothing is in flight.
            _ => return,
        }
        let relay_to = match &self.transports[idx].role {
            Role::Receiver { relay: Some(r), .. } => Some((r.to, r.poll == Some(c.op))),
            _ => None,
        };
        // Only closing destinations may wait on this op: usually none, and
        // an empty collect does not allocate.
        let (is_fan, is_fan_poll, closing_dests) = match &self.transports[idx].role {
            Role::Receiver { fan: Some(f), .. } => {
                let closing: Vec<Token> =
                    f.to.iter()
                        .filter(|d| {
                            matches!(self.transports.get(d.index as usize),
                            Some(t) if t.token == **d && t.state == State::Closing)
                        })
                        .copied()
                        .collect();
                (true, f.poll == Some(c.op), closing)
            }
            _ => (false, false, Vec::new()),
        };
        let (is_hup, is_own_poll) = match &self.transports[idx].role {
            Role::Receiver { hup, poll, .. } => (*hup == Some(c.op), *poll == Some(c.op)),
            Role::Sender(s) => (false, s.poll == Some(c.op)),
        };
        match c.kind {
            OpKind::Read => self.on_read(idx, c.result, c.buf),
            OpKind::Write => self.on_write(idx, c.result, c.buf),
            OpKind::Poll if relay_to.is_some_and(|(_, is_relay_poll)| is_relay_poll) => {
                self.on_relay_poll(idx, c.result)
            }
            OpKind::Poll if is_fan_poll => self.on_fan_poll(idx, c.result),
            OpKind::Poll if is_hup => self.on_hup(idx, c.result),
            OpKind::Poll if is_own_poll => self.on_poll(idx, c.result),
            // A poll that was replaced (a cancelled hang-up poll of an old fd).
            OpKind::Poll => {}
            OpKind::Splice | OpKind::Tee if is_fan => self.on_fan_op(idx, c.op, c.result),
            OpKind::Splice => self.on_splice(idx, c.result),
            OpKind::Tee => {}
            OpKind::ReadMulti => self.on_read_multi(idx, &c),
            OpKind::Cancel | OpKind::Timeout => {}
        }
        if self.transports.contains(idx) {
            self.maybe_finish(idx);
        }
        // A closing sender may have been waiting for this relay operation.
        let dests = relay_to.map(|(to, _)| to).into_iter().chain(closing_dests);
        for to in dests {
            if matches!(self.transports.get(to.index as usize), Some(t) if t.token == to) {
                self.maybe_finish(to.index as usize);
            }
        }
    }
}

fn receiver_role(persistent: bool, multishot: bool, frames: Option<(Codec, usize)>) -> Role {
    Role::Receiver {
        read: None,
        poll: None,
        bytes_read: 0,
        persistent,
        paused: false,
        relay: None,
        fan: None,
        multishot,
        hup: None,
        draining: false,
        decoder: frames.map(|(codec, max)| Box::new(FrameDecoder::new(codec, max))),
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
