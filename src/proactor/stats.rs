//! Counters a dashboard can read: per transport ([`Stats`], kept in each
//! transport's [`Counters`]) and proactor-wide ([`Snapshot`], computed on
//! demand from the transport table, the ring and the pool).
//!
//! Counting costs an add per frame and a compare per `send`; the clock is
//! read only when a transport starts or stops waiting for its peer, never
//! per operation.

use std::time::{Duration, Instant};

use super::Proactor;
use super::registry::Role;
use crate::error::{Error, Result};
use crate::token::{Sender, Token};
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
    /// Sender: frames accepted by [`Proactor::send_frame`] and
    /// [`Proactor::send_frames`] (not `send_framed`; queued, not
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
    /// proactor's own included: as [`Proactor::in_flight`].
    pub ops_in_flight: usize,
    /// The part of `ops_in_flight` owned by transports (reads, writes,
    /// polls, splices and their cancels): 0 once every transport is
    /// closed. The rest are the proactor's own: the open watch and the
    /// retry timer of senders waiting for a reader, which end on their
    /// own within a `poll` or two once no sender waits (the timer within
    /// [`Builder::open_retry_max`](crate::Builder::open_retry_max)).
    pub transport_ops: usize,
    /// Transports holding a registered file slot: as
    /// [`Proactor::registered_files`].
    pub registered_files: usize,
    /// Buffers of the proactor's registered pool lent out right now: to
    /// reads and writes in flight, to queued sends, and to the `Data` and
    /// `Frame` events of the last `poll` until the next one.
    pub buffers_in_use: usize,
    /// Buffers in the registered pool (fixed when the proactor is built).
    pub buffers_total: usize,
    /// `io_uring_enter` calls made since the proactor was built: as
    /// [`Proactor::enter_count`].
    pub enters: u64,
}

impl Snapshot {
    /// Every live transport: `opening + open + peer_gone + closing`.
    pub fn transports(&self) -> usize {
        self.opening + self.open + self.peer_gone + self.closing
    }
}

/// What a transport counts beyond bytes: one field of [`Transport`],
/// updated by a call where each event happens. Boxed at the first count
/// (or at birth for a transport born waiting): most idle receivers count
/// nothing, and hold 8 bytes instead of the 56 of the counts.
///
/// [`Transport`]: super::registry::Transport
#[derive(Debug)]
pub(super) struct Counters(Option<Box<Tally>>);

/// The counts themselves.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    frames_in: u64,
    frames_out: u64,
    bytes_spliced: u64,
    reconnects: u64,
    /// Waits that ended, in nanoseconds (a `Duration` takes 8 bytes more).
    waited_ns: u64,
    /// Start of the wait going on, if any.
    waiting_since: Option<Instant>,
    queue_high_water: u64,
}

/// The states in which a transport waits for its peer.
fn waits(state: State) -> bool {
    matches!(state, State::Opening | State::PeerGone)
}

impl Counters {
    /// Counters of a transport born in `state`.
    pub(super) fn new(state: State) -> Counters {
        Counters(waits(state).then(|| {
            Box::new(Tally {
                waiting_since: Some(Instant::now()),
                ..Tally::default()
            })
        }))
    }

    /// The counts, boxed now if nothing was counted yet.
    #[inline]
    fn tally(&mut self) -> &mut Tally {
        self.0.get_or_insert_with(Box::default)
    }

    /// The counts so far (all zero if nothing was counted).
    fn get(&self) -> Tally {
        self.0.as_deref().copied().unwrap_or_default()
    }

    /// A frame was reported to the user.
    #[inline]
    pub(super) fn frame_in(&mut self) {
        self.tally().frames_in += 1;
    }

    /// `n` frames were queued.
    #[inline]
    pub(super) fn frames_out(&mut self, n: u64) {
        if n > 0 {
            self.tally().frames_out += n;
        }
    }

    /// `n` bytes were spliced out of (or into) this transport's pipe.
    #[inline]
    pub(super) fn spliced(&mut self, n: u64) {
        if n > 0 {
            self.tally().bytes_spliced += n;
        }
    }

    /// The send queue holds `unsent` bytes after an enqueue.
    #[inline]
    pub(super) fn queue_len(&mut self, unsent: u64) {
        if unsent > self.0.as_ref().map_or(0, |t| t.queue_high_water) {
            self.tally().queue_high_water = unsent;
        }
    }

    /// The transport moves from `from` to `to`. Reads the clock only when
    /// a wait for the peer starts or ends.
    #[inline]
    pub(super) fn state_change(&mut self, from: State, to: State) {
        if from == to {
            return;
        }
        if from == State::PeerGone && to == State::Open {
            self.tally().reconnects += 1;
        }
        match (waits(from), waits(to)) {
            (false, true) => self.tally().waiting_since = Some(Instant::now()),
            (true, false) => {
                if let Some(t) = self.0.as_deref_mut()
                    && let Some(since) = t.waiting_since.take()
                {
                    let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    t.waited_ns = t.waited_ns.saturating_add(ns);
                }
            }
            _ => {}
        }
    }
}

impl Tally {
    /// Time waited so far, the wait going on included.
    fn waiting(&self) -> Duration {
        Duration::from_nanos(self.waited_ns)
            + self.waiting_since.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

impl Proactor {
    /// Counters of a live transport (see [`Stats`] for what each counts).
    /// Fails with [`Error::Closed`] once it is closed.
    pub fn stats(&self, token: impl Into<Token>) -> Result<Stats> {
        let token = token.into();
        let t = self.slot(token)?.ok_or(Error::Closed { token })?;
        let c = t.counters.get();
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
            Role::Receiver { bytes_read, .. } => stats.bytes_read = *bytes_read,
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
            ops_in_flight: self.ring.in_flight(),
            registered_files: self.ring.files_in_use(),
            buffers_total: self.pool.fixed_total(),
            buffers_in_use: self.pool.fixed_in_use(),
            enters: self.ring.enters(),
            ..Snapshot::default()
        };
        for (_, t) in &self.transports {
            match t.state {
                State::Opening => s.opening += 1,
                State::Open => s.open += 1,
                State::PeerGone => s.peer_gone += 1,
                State::Closing => s.closing += 1,
                // Never held by a transport in the table.
                State::Closed => {}
            }
            s.transport_ops += t.inflight as usize;
            match t.role {
                Role::Sender(_) => s.senders += 1,
                Role::Receiver { .. } => s.receivers += 1,
            }
        }
        s
    }

    /// Notes a sender's queue length after an enqueue, for its high-water
    /// mark.
    pub(super) fn count_queued(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        if let Role::Sender(s) = &t.role {
            let unsent = s.queue.unsent();
            t.counters.queue_len(unsent);
        }
    }

    /// Counts `n` frames queued on sender `to`, a handle the enqueue just
    /// checked (so no second lookup by generation).
    pub(super) fn count_frames_out(&mut self, to: Sender, n: u64) {
        if let Some(t) = self.transports.get_mut(to.0.index as usize) {
            t.counters.frames_out(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_count_returns_of_the_peer_only() {
        let mut c = Counters::new(State::Open);
        c.state_change(State::Open, State::Open);
        c.state_change(State::Open, State::PeerGone);
        c.state_change(State::PeerGone, State::PeerGone);
        assert_eq!(c.get().reconnects, 0);
        c.state_change(State::PeerGone, State::Open);
        c.state_change(State::Open, State::PeerGone);
        c.state_change(State::PeerGone, State::Open);
        assert_eq!(c.get().reconnects, 2);
        // Opening to Open is a first reader, not a return.
        let mut c = Counters::new(State::Opening);
        c.state_change(State::Opening, State::Open);
        assert_eq!(c.get().reconnects, 0);
    }

    #[test]
    fn waiting_runs_only_in_waiting_states() {
        let c = Counters::new(State::Open);
        assert_eq!(c.get().waiting(), Duration::ZERO);
        let mut c = Counters::new(State::Opening);
        assert!(c.get().waiting_since.is_some());
        c.state_change(State::Opening, State::Open);
        assert!(c.get().waiting_since.is_none());
        let after_open = c.get().waiting();
        // Open time adds nothing.
        assert_eq!(c.get().waiting(), after_open);
        c.state_change(State::Open, State::PeerGone);
        assert!(c.get().waiting_since.is_some());
        c.state_change(State::PeerGone, State::Closing);
        assert!(c.get().waiting_since.is_none());
        assert!(c.get().waiting() >= after_open);
    }

    #[test]
    fn high_water_keeps_the_maximum() {
        let mut c = Counters::new(State::Open);
        for n in [5, 100, 7, 0, 99] {
            c.queue_len(n);
        }
        assert_eq!(c.get().queue_high_water, 100);
    }

    #[test]
    fn nothing_counted_holds_no_box() {
        let mut c = Counters::new(State::Open);
        c.queue_len(0);
        c.frames_out(0);
        c.state_change(State::Open, State::Closing);
        assert!(c.0.is_none());
        c.frame_in();
        assert_eq!(c.get().frames_in, 1);
        assert!(Counters::new(State::Opening).0.is_some());
    }
}
