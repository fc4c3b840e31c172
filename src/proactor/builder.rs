//! Configuration of a proactor and its construction: ring, buffers,
//! probes, and the locked-memory budget.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use super::Proactor;
use super::io::Io;
use super::receiver::Reads;
use super::registry::Table;
use super::splice::Splicing;
use super::wait::WaitPolicy;
use super::waiting::{RETRY_START, Waiting};
use crate::buffers::{self, Lent, Memlock, Pool};
use crate::error::{Error, Result};
use crate::ring::{self, Backend, Ring, RingConfig};

/// The most completions one turn of `poll` takes in when a wave of them is
/// queued. More per turn means fewer enters, but every message read in
/// the turn waits for the whole turn to be handed out: at 128 the fan-in
/// of 256 FIFOs had 1.5-2.1x epoll's p99, at 64 0.75-0.96x, for about 10%
/// more CPU per message (`ringpipe-bench fanin --fifos 256 --engines
/// uring,epoll --msgs 300000 --runs 5 --warmup 1`, builds taking turns;
/// BENCHMARKS.md, "Fan-in tail: a turn's size"). With `batch_wait` a turn takes
/// up to the provided buffers: there the cap cost 20% more CPU per message
/// and raised the p99 (the same command with `--engines uring-batch,epoll`).
const MAX_WAVE: usize = 64;

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
    provided: (u16, usize),
    splice_direct: bool,
    relay_pipe_size: usize,
    batch: Option<(u32, Duration)>,
    echo_hold: Duration,
    backend: Backend,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ring: RingConfig {
                sq_entries: 256,
                cq_entries: 1024,
                sqpoll_idle: None,
                files: 4096,
                defer_taskrun: true,
                min_wait: true,
                register_ring_fd: true,
            },
            buffers: None,
            ignore_sigpipe: true,
            open_retry_max: Duration::from_millis(50),
            iowq_max_workers: [2, 2],
            provided: (128, 64 * 1024),
            splice_direct: true,
            relay_pipe_size: super::relay_pipes::RELAY_PIPE_SIZE,
            batch: None,
            echo_hold: Duration::ZERO,
            backend: Backend::Auto,
        }
    }
}

impl Builder {
    /// Which backend to build on (default [`Backend::Auto`]: io_uring,
    /// falling back to epoll where io_uring cannot be set up, unless the
    /// `RINGPIPE_BACKEND` environment variable says otherwise).
    /// [`Proactor::backend`] says which one runs, and why.
    ///
    /// ```
    /// use ringpipe::{Backend, Proactor};
    /// let proactor = Proactor::builder().backend(Backend::Epoll).build()?;
    /// assert_eq!(proactor.backend().backend(), Backend::Epoll);
    /// # Ok::<(), ringpipe::Error>(())
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Submission queue size (default 256). A turn with more operations
    /// than this flushes early, once per full queue. On epoll it only
    /// bounds a sender's chain of writes, as on io_uring.
    pub fn sq_entries(mut self, n: u32) -> Self {
        self.ring.sq_entries = n;
        self
    }

    /// Completion queue size (default 1024, at least twice the SQ). When
    /// it overflows the kernel keeps completions aside and the proactor
    /// fetches them: none are lost. io_uring only (epoll has no queue).
    pub fn cq_entries(mut self, n: u32) -> Self {
        self.ring.cq_entries = n;
        self
    }

    /// Use a kernel submission thread (SQPOLL) that polls for `idle` before
    /// sleeping: fewer syscalls and lower latency, for a core's worth of CPU.
    /// Default: off; the ring then runs single-issuer with deferred task work.
    /// io_uring only: no effect on epoll.
    pub fn sqpoll(mut self, idle: Duration) -> Self {
        self.ring.sqpoll_idle = Some(idle);
        self
    }

    /// Whether the ring defers its task work (`IORING_SETUP_DEFER_TASKRUN`,
    /// default on where the kernel has it): completions are then posted
    /// only while this thread is inside [`poll`](Proactor::poll), the
    /// cheapest mode for a thread that loops on `poll`. Turn it off to
    /// drive the proactor from another event loop through its fd (see
    /// [`Proactor::submit`]): deferred work never wakes a waiter on the
    /// ring fd (Linux 6.18), so such a loop would sleep through it. The
    /// ring then runs cooperative task work (`COOP_TASKRUN`), or plain.
    /// io_uring only: an epoll backend's fd nests either way.
    pub fn defer_taskrun(mut self, on: bool) -> Self {
        self.ring.defer_taskrun = on;
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
    /// The default pool is registered when a buffer is first used (a
    /// send, or a receiver that streams), not at build: registration pins
    /// every page, and receivers that wait hold no buffer (see
    /// [`ReadMode`](crate::ReadMode)), so an idle proactor pins none.
    ///
    /// Set explicitly, the pool is registered at build or `build` fails with
    /// [`Error::MemlockLimit`]. `count` 0 registers nothing.
    ///
    /// On epoll the same buffers are used, never registered nor locked.
    pub fn buffers(mut self, count: u16, size: usize) -> Self {
        self.buffers = Some((count, size));
        self
    }

    /// Size of the registered file table (default 4096; 0 disables it).
    /// Transports beyond it use plain descriptors. On epoll the table
    /// holds the fds the backend has made `O_NONBLOCK` (a FIFO takes no
    /// `RWF_NOWAIT`); it is no kernel resource there, so it grows past `n`
    /// as transports join (0 still disables it: each transfer then sets
    /// the flag itself).
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

    /// How a relay (a splice into one sender) moves its bytes. `true` (the
    /// default): it waits for data with a POLL on the ring, then calls
    /// non-blocking `splice(2)` itself, from this thread, until a pipe is
    /// empty or full: no io-wq hand-off, the least CPU per byte. `false`:
    /// an io_uring SPLICE linked behind the POLL, which the kernel always
    /// runs on an io-wq worker, beside this thread (a hand-off and a
    /// wake-up per move, for parallelism where a core is free). Measured
    /// side by side in BENCHMARKS.md (Relay). Fan-outs to several senders
    /// always use io_uring TEE and SPLICE. On epoll every splice and tee
    /// runs from this thread, whatever this says. Like an io_uring write, a
    /// `splice(2)` into a pipe whose reader left raises SIGPIPE in this
    /// thread: see [`ignore_sigpipe`](Self::ignore_sigpipe).
    pub fn splice_direct(mut self, yes: bool) -> Self {
        self.splice_direct = yes;
        self
    }

    /// The pipe size each relay and fan-out grows its FIFOs to (the
    /// source's and every destination's), before its first move and again
    /// after a FIFO is reopened; 0 leaves the sizes as they are. Default
    /// 1 MiB: a wake-up then moves up to 1 MiB where a 64 KiB pipe moves
    /// 64 KiB, so the relay spends less CPU per byte (measured in
    /// BENCHMARKS.md, Relay). A builder option, like
    /// [`splice_direct`](Self::splice_direct): how this proactor's relays
    /// move their bytes, fixed for its life. Pipes only grow, each up to
    /// `/proc/sys/fs/pipe-max-size`, and where the kernel grants less the
    /// relay goes on with what it got. A pipe is shared with the peer
    /// processes, and its pages count against the user's pipe limits
    /// ([`PipeLimits`](crate::PipeLimits)): past `pipe-user-pages-soft`,
    /// every new pipe of that user gets two pages. So the relays of all
    /// the proactors of a process grow pipes by at most half that limit
    /// in all (32 MiB with the kernel's default); beyond it, pipes keep
    /// their size. A relay's share is given back when it ends (its pipes
    /// keep their size while they stay open). Other processes of the same
    /// user have budgets of their own. Set 0 to size the FIFOs yourself
    /// ([`FifoOptions::pipe_size`](crate::FifoOptions::pipe_size)).
    pub fn relay_pipe_size(mut self, bytes: usize) -> Self {
        self.relay_pipe_size = bytes;
        self
    }

    /// Caps the kernel's io-wq worker threads of this ring: `bounded` for
    /// regular-file work, `unbounded` for pipes (default 2 and 2). Splices
    /// and tees always run on these workers; the cap keeps thread count
    /// flat however many relays exist. io_uring only (epoll has no workers).
    pub fn iowq_max_workers(mut self, bounded: u32, unbounded: u32) -> Self {
        self.iowq_max_workers = [bounded.max(1), unbounded.max(1)];
        self
    }

    /// The provided buffer rings: one shared by multishot reads, one by
    /// the single-shot reads of receivers that are not streaming, each of
    /// `count` buffers (rounded up to a power of two) of `size` bytes
    /// (default 128 x 64 KiB, so one multishot read can take a whole
    /// 64 KiB pipe; single-shot reads use at most 16 KiB of each, and a
    /// read that fills one marks its receiver as streaming).
    /// The kernel picks a buffer only when data is there, so memory is
    /// touched as data passes. When a ring runs dry, its reads wait until
    /// the buffers lent in events come back at the next poll. io_uring
    /// only: on epoll receivers read single-shot into the pool's buffers
    /// (a waiting one holds none: it polls first when none is free).
    pub fn provided_buffers(mut self, count: u16, size: usize) -> Self {
        self.provided = (count.max(1), size.max(1));
        self
    }

    /// Batched waiting: when [`Proactor::poll`] sleeps, it sleeps until
    /// `completions` operations have completed, or until `budget` has
    /// passed and at least one has; then it returns at the first completion
    /// (or at its own timeout). So a busy loop gets its work in batches,
    /// one wake-up per batch, and no completion waits more than about
    /// `budget` to be reported. With fewer operations in flight than
    /// `completions` (one busy FIFO, say), every wait that sees a
    /// completion lasts `budget`, and the reads then take what came in the
    /// meantime at once: a trickle costs one wake-up per `budget`. Default:
    /// off (`poll` wakes for the first completion); 0 or 1 `completions`
    /// turns it off, as does a zero `budget`. io_uring only: on epoll
    /// `poll` wakes for the first completion.
    ///
    /// When many reads complete at once (hundreds of busy FIFOs), a turn
    /// with batched waits takes in as many as the provided buffers hold;
    /// without, at most 64, so that what was read first is not held back
    /// long behind the rest (the fan-in tail).
    ///
    /// On Linux >= 6.12 (`IORING_FEAT_MIN_TIMEOUT`, see
    /// [`Proactor::kernel_min_wait`]) the kernel does this in the one
    /// `io_uring_enter` of the turn, and with deferred task work (the
    /// default ring) it does not even wake the thread before the batch is
    /// complete or the budget is spent. On older kernels, and on SQPOLL
    /// rings before Linux 6.19 (whose min-wait can miss a late wake-up),
    /// `poll` does the same with a wait of at most `budget` for the batch,
    /// then, if nothing came, a second wait for one completion.
    ///
    /// ```
    /// use std::time::Duration;
    /// let proactor = ringpipe::Proactor::builder()
    ///     .batch_wait(16, Duration::from_micros(500))
    ///     .build()?;
    /// # Ok::<(), ringpipe::Error>(())
    /// ```
    pub fn batch_wait(mut self, completions: u32, budget: Duration) -> Self {
        self.batch = (completions > 1 && !budget.is_zero()).then_some((completions, budget));
        self
    }

    /// Lets [`Proactor::poll`] hold back the completion of writes that
    /// answer data, for up to `hold` (default zero: never). With it, a poll
    /// after one that delivered data, which submits writes (an echo, a
    /// relay), waits in the same `io_uring_enter` for those writes and one
    /// completion more, the next data: one enter per round trip instead of
    /// one for the write and one for the wait. If nothing else completes,
    /// the writes' events (`Sent`, `Writable`, a flushed close) come up to
    /// `hold` later. Only where the kernel has a min-wait
    /// ([`Proactor::kernel_min_wait`]).
    ///
    /// Off by default: the min-wait arms a timer, and where programming a
    /// timer is dear (a virtual machine whose timer writes trap to the
    /// host) it costs more than the enter it saves: measure before turning
    /// it on (BENCHMARKS.md, "Cheaper enters and one enter per round
    /// trip", has the figures of one such guest). io_uring only: no
    /// effect on epoll.
    pub fn echo_hold(mut self, hold: Duration) -> Self {
        self.echo_hold = hold;
        self
    }

    /// Whether to use the kernel's min-wait where it has one (default
    /// true). Off, `poll` does without, as on a kernel that lacks it: for
    /// tests of that path.
    #[doc(hidden)]
    pub fn kernel_min_wait(mut self, yes: bool) -> Self {
        self.ring.min_wait = yes;
        self
    }

    /// Whether to register the ring fd for cheaper enters (default true):
    /// for measurements and tests of the path without.
    #[doc(hidden)]
    pub fn register_ring_fd(mut self, yes: bool) -> Self {
        self.ring.register_ring_fd = yes;
        self
    }

    /// Sets up the backend ([`backend`](Self::backend)), probes the kernel
    /// and registers the buffers. With [`Backend::Auto`] an io_uring that
    /// is missing, disabled, denied, out of locked memory or lacking an
    /// opcode means epoll; with [`Backend::IoUring`] it fails with
    /// [`Error::Unsupported`], naming which. Fails with [`Error::MemlockLimit`]
    /// when buffers set with [`buffers`](Self::buffers) cannot be locked.
    /// Without locked memory for the provided ring, multishot reads are
    /// off ([`ReadMode::Fixed`](crate::ReadMode::Fixed) is used).
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
        let (mut ring, backend) = Ring::new(&self.ring, self.backend)?;
        let multishot_ok = ring.supports_read_multishot();
        let provided = multishot_ok.then_some(self.provided);
        let memlock = Memlock::current();
        let ring_locked = self.ring.locked_bytes()
            + provided.map_or(0, |(n, _)| 2 * buffers::provided_locked_bytes(n));
        let (count, size) = self.buffers.unwrap_or_else(|| {
            let size = buffers::DEFAULT_BUF_SIZE;
            (buffers::auto_count(memlock, ring_locked, size), size)
        });
        let pool = Pool::with_provided(count, size, provided).map_err(|e| Error::Ring {
            op: "mmap of the buffer pool",
            source: e,
        })?;
        // A turn takes in no more of a wave than the provided buffers hold
        // (past them, reads would run dry and wait for the next poll), and
        // unless batched waits trade latency for fewer turns, no more than
        // `MAX_WAVE`.
        let most = match self.batch {
            Some(_) => usize::MAX,
            None => MAX_WAVE,
        };
        ring.set_wave(provided.map_or(0, |(n, _)| usize::from(n).min(most)));
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
            // The default pool registers at its first use: pinned now, its
            // pages would stay resident however idle the receivers are.
            let registered = match self.buffers {
                None => {
                    pool.register_later();
                    Ok(())
                }
                Some(_) => ring.register_pool(&pool, fits),
            };
            match registered {
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
            io: Io {
                ring,
                backend,
                pool,
                pending: Vec::new(),
                pending_bufs: Lent::default(),
                pending_owned: Default::default(),
            },
            table: Table::new(id),
            reads: Reads {
                multishot_ok,
                starved: VecDeque::new(),
                starved_live: 0,
                wake_armed: false,
            },
            waiting: Waiting::new(self.open_retry_max),
            wait: WaitPolicy::new(self.batch, self.echo_hold),
            splicing: Splicing {
                direct: self.splice_direct,
                pipe_size: self.relay_pipe_size,
            },
            unpumped: Vec::new(),
            watches: Default::default(),
            notify: None,
        })
    }
}
