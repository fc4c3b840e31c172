//! Counters a dashboard can read: per transport ([`Stats`], from each
//! transport's counters, see `counters`) and proactor-wide ([`Snapshot`],
//! computed on demand from the transport table, the ring and the pool).
//! The one room besides `mod.rs` with public calls that read every
//! transport.

use std::time::Duration;

use super::Proactor;
use super::registry::Role;
use crate::error::{Error, Result};
use crate::ring::Backend;
use crate::token::Token;
use crate::transport::State;

/// Counters of one transport, for its lifetime: all start at zero when it
/// is opened (by [`open_receiver`](Proactor::open_receiver),
/// [`open_sender`](Proactor::open_sender) or a `*_from_fd` call), only
/// grow, never reset, and go with it once it is
/// [`Closed`](State::Closed) (then [`Proactor::stats`] fails with
/// [`Error::Closed`]). Fields that do not apply to a transport's kind
/// stay zero (a receiver queues nothing, a sender reads nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Sender: bytes put in its queue: by [`Proactor::send`] and the
    /// frame calls (frame headers and delimiters included), and by a relay
    /// or fan-out for the few bytes that go through user space (see
    /// [`bytes_spliced`](Self::bytes_spliced)).
    pub bytes_queued: u64,
    /// Sender: bytes of its queue the kernel accepted into the pipe.
    /// Bytes spliced in are not among them: they are in `bytes_spliced`.
    pub bytes_accepted: u64,
    /// Receiver: bytes read out of the pipe into user space: delivered as
    /// `Data`, decoded into frames, or, for a relay or fan-out, read to be
    /// queued on its destinations (the bytes read before a relay took
    /// over, and those a fan-out fills in for a destination that fell
    /// short). Bytes spliced out are not among them: they are in
    /// `bytes_spliced`.
    pub bytes_read: u64,
    /// Bytes a relay or fan-out moved inside the kernel, by `splice(2)`
    /// or `tee(2)`, never through user space: on a receiver, those spliced
    /// out of its pipe (a tee copies without taking out: not counted
    /// here); on a sender, those spliced or teed into its pipe. So every
    /// byte that left a receiver's pipe is in exactly one of `bytes_read`
    /// and `bytes_spliced`, and every byte that entered a sender's pipe
    /// in exactly one of `bytes_accepted` and `bytes_spliced`. Their sum
    /// on a relay's destination is the sum of its
    /// [`Event::Relayed`](crate::Event::Relayed) and
    /// [`Event::Sent`](crate::Event::Sent) bytes.
    pub bytes_spliced: u64,
    /// Receiver decoding frames: frames reported as
    /// [`Event::Frame`](crate::Event::Frame). Zero for a byte receiver.
    pub frames_in: u64,
    /// Sender: frames accepted by [`Proactor::send_frames`] (not
    /// `send_encoded`; queued, not
    /// necessarily written yet: compare `bytes_accepted` for what the
    /// kernel took). A refused call ([`Error::WouldBlock`], a bad payload)
    /// counts nothing.
    pub frames_out: u64,
    /// Times the peer came back after leaving: a sender's reader returned
    /// ([`Event::PeerBack`](crate::Event::PeerBack)), or the next writer of
    /// a persistent receiver delivered its first bytes. The first peer is
    /// no reconnect: a receiver across three writer sessions counts 2.
    pub reconnects: u64,
    /// Total time spent waiting for a peer: a sender from its open until
    /// its first reader ([`State::Opening`]), and any transport from its
    /// peer leaving until the next one is there ([`State::PeerGone`]; for
    /// a receiver: until the next writer's first bytes). A wait still
    /// going on counts up to the moment of the [`Proactor::stats`] call.
    /// A receiver's wait for its very first writer is not counted (it is
    /// [`State::Open`] from the start).
    pub waiting: Duration,
    /// Sender: the most bytes ever queued and not yet accepted by the
    /// kernel ([`bytes_unsent`](Self::bytes_unsent)), as measured right
    /// after each accepted send. Never above the high watermark plus the
    /// largest single send.
    pub queue_high_water: u64,
}

impl Stats {
    /// Bytes queued and not yet accepted by the kernel.
    pub fn bytes_unsent(&self) -> u64 {
        self.bytes_queued - self.bytes_accepted
    }
}

/// A point-in-time view of a whole proactor, for a metrics exporter.
///
/// A plain `Copy` value computed by [`Proactor::snapshot`] without
/// allocating. Counts of transports are of those in the table at the
/// moment of the call: a transport leaves them when its `Closed` event is
/// produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Senders waiting for their first reader ([`State::Opening`]).
    pub opening: usize,
    /// Transports with their peer there, or a receiver not yet told
    /// otherwise ([`State::Open`]).
    pub open: usize,
    /// Transports whose peer left and that wait for the next one
    /// ([`State::PeerGone`]).
    pub peer_gone: usize,
    /// Transports whose close is under way: operations being cancelled
    /// and reaped ([`State::Closing`]).
    pub closing: usize,
    /// Live senders, whatever their state.
    pub senders: usize,
    /// Live receivers, whatever their state.
    pub receivers: usize,
    /// Ring operations submitted and not yet finally completed (a
    /// multishot read counts once until its last completion), the
    /// proactor's own included.
    pub ops_in_flight: usize,
    /// The part of `ops_in_flight` owned by transports (reads, writes,
    /// polls, splices and their cancels): 0 once every transport is
    /// closed. The rest are the proactor's own: the open watch and the
    /// retry timer of senders waiting for a reader, which end on their
    /// own within a `poll` or two once no sender waits (the timer within
    /// [`Builder::open_retry_max`](crate::Builder::open_retry_max)).
    pub transport_ops: usize,
    /// Transports holding a registered file slot.
    pub registered_files: usize,
    /// Buffers of the proactor's registered pool lent out right now: to
    /// reads and writes in flight, to queued sends, and to the `Data` and
    /// `Frame` events of the last `poll` until the next one.
    pub buffers_in_use: usize,
    /// Buffers in the registered pool (fixed when the proactor is built).
    pub buffers_total: usize,
    /// `io_uring_enter` calls made since the proactor was built (for
    /// syscalls-per-message figures); `epoll_wait` calls on the epoll
    /// backend.
    pub enters: u64,
    /// The backend the proactor runs on: [`Backend::IoUring`] or
    /// [`Backend::Epoll`] (as [`Proactor::backend`], without the why).
    pub backend: Backend,
}

impl Snapshot {
    /// Every live transport: `opening + open + peer_gone + closing`.
    pub fn transports(&self) -> usize {
        self.opening + self.open + self.peer_gone + self.closing
    }
}

impl Proactor {
    /// Counters of a live transport (see [`Stats`] for what each counts).
    /// Fails with [`Error::Closed`] once it is closed.
    pub fn stats(&self, token: impl Into<Token>) -> Result<Stats> {
        let token = token.into();
        let t = self.table.slot(token)?.ok_or(Error::Closed { token })?;
        let c = t.end.counters.tally();
        let mut stats = Stats {
            frames_in: c.frames_in,
            frames_out: c.frames_out,
            bytes_spliced: c.bytes_spliced,
            reconnects: c.reconnects,
            waiting: c.waiting(),
            queue_high_water: c.queue_high_water,
            ..Stats::default()
        };
        match &t.role {
            Role::Receiver(rx) => stats.bytes_read = rx.bytes_read,
            Role::Sender(s) => {
                stats.bytes_queued = s.queue.queued_total;
                stats.bytes_accepted = s.queue.accepted_total;
            }
        }
        Ok(stats)
    }

    /// A view of the whole proactor: transports by state and kind,
    /// operations in flight, registered buffers in use. It allocates
    /// nothing and walks the transport table once, so an exporter can
    /// call it every second.
    ///
    /// ```
    /// use ringpipe::{FifoOptions, Proactor, State};
    /// # let dir = std::env::temp_dir().join(format!("ringpipe-snap-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let mut proactor = Proactor::new()?;
    /// let opts = FifoOptions::new().create(true);
    /// // No reader yet: the sender waits, without blocking.
    /// let tx = proactor.open_sender(dir.join("metrics.fifo"), &opts)?;
    ///
    /// let s = proactor.snapshot();
    /// assert_eq!((s.opening, s.senders, s.transports()), (1, 1, 1));
    /// println!(
    ///     "transports={} opening={} ops_in_flight={} buffers={}/{}",
    ///     s.transports(), s.opening, s.ops_in_flight, s.buffers_in_use, s.buffers_total,
    /// );
    /// // Per transport: how long it has waited for its reader so far.
    /// let waited = proactor.stats(tx)?.waiting;
    /// # let _ = waited;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), ringpipe::Error>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            ops_in_flight: self.io.ring.in_flight(),
            registered_files: self.io.ring.files_in_use(),
            buffers_total: self.io.pool.fixed_total(),
            buffers_in_use: self.io.pool.fixed_in_use(),
            enters: self.io.ring.enters(),
            backend: self.io.backend.backend(),
            ..Snapshot::default()
        };
        for t in self.table.iter() {
            match t.end.state {
                State::Opening => s.opening += 1,
                State::Open => s.open += 1,
                State::PeerGone => s.peer_gone += 1,
                State::Closing => s.closing += 1,
                // Never held by a transport in the table.
                State::Closed => {}
            }
            s.transport_ops += t.end.inflight as usize;
            match t.role {
                Role::Sender(_) => s.senders += 1,
                Role::Receiver(_) => s.receivers += 1,
            }
        }
        s
    }
}
