//! What a transport counts beyond bytes (frames, bytes spliced,
//! reconnects, time waiting for its peer, queue high water), kept in its
//! `End` and read by `Proactor::stats`.
//!
//! Counting costs an add per frame and a compare per `send`; the clock is
//! read only when a transport starts or stops waiting for its peer, never
//! per operation.

use std::time::{Duration, Instant};

use crate::transport::State;

/// What a transport counts beyond bytes: one field of every transport,
/// updated by a call where each event happens. Boxed at the first count
/// (or at birth for a transport born waiting): most idle receivers count
/// nothing, and hold 8 bytes instead of the 56 of the counts.
///
#[derive(Debug)]
pub(super) struct Counters(Option<Box<Tally>>);

/// The counts themselves.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    pub(super) frames_in: u64,
    pub(super) frames_out: u64,
    pub(super) bytes_spliced: u64,
    pub(super) reconnects: u64,
    /// Waits that ended, in nanoseconds (a `Duration` takes 8 bytes more).
    waited_ns: u64,
    /// Start of the wait going on, if any.
    waiting_since: Option<Instant>,
    pub(super) queue_high_water: u64,
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
    fn counts(&mut self) -> &mut Tally {
        self.0.get_or_insert_with(Box::default)
    }

    /// The counts so far (all zero if nothing was counted).
    pub(super) fn tally(&self) -> Tally {
        self.0.as_deref().copied().unwrap_or_default()
    }

    /// A frame was reported to the user.
    #[inline]
    pub(super) fn frame_in(&mut self) {
        self.counts().frames_in += 1;
    }

    /// `n` frames were decoded.
    #[inline]
    pub(super) fn frames_in(&mut self, n: u64) {
        self.counts().frames_in += n;
    }

    /// `n` frames were queued.
    #[inline]
    pub(super) fn frames_out(&mut self, n: u64) {
        if n > 0 {
            self.counts().frames_out += n;
        }
    }

    /// `n` bytes were spliced out of (or into) this transport's pipe.
    #[inline]
    pub(super) fn spliced(&mut self, n: u64) {
        if n > 0 {
            self.counts().bytes_spliced += n;
        }
    }

    /// The send queue holds `unsent` bytes after an enqueue.
    #[inline]
    pub(super) fn queue_len(&mut self, unsent: u64) {
        if unsent > self.0.as_ref().map_or(0, |t| t.queue_high_water) {
            self.counts().queue_high_water = unsent;
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
            self.counts().reconnects += 1;
        }
        match (waits(from), waits(to)) {
            (false, true) => self.counts().waiting_since = Some(Instant::now()),
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
    pub(super) fn waiting(&self) -> Duration {
        Duration::from_nanos(self.waited_ns)
            + self.waiting_since.map_or(Duration::ZERO, |s| s.elapsed())
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
        assert_eq!(c.tally().reconnects, 0);
        c.state_change(State::PeerGone, State::Open);
        c.state_change(State::Open, State::PeerGone);
        c.state_change(State::PeerGone, State::Open);
        assert_eq!(c.tally().reconnects, 2);
        // Opening to Open is a first reader, not a return.
        let mut c = Counters::new(State::Opening);
        c.state_change(State::Opening, State::Open);
        assert_eq!(c.tally().reconnects, 0);
    }

    #[test]
    fn waiting_runs_only_in_waiting_states() {
        let c = Counters::new(State::Open);
        assert_eq!(c.tally().waiting(), Duration::ZERO);
        let mut c = Counters::new(State::Opening);
        assert!(c.tally().waiting_since.is_some());
        c.state_change(State::Opening, State::Open);
        assert!(c.tally().waiting_since.is_none());
        let after_open = c.tally().waiting();
        // Open time adds nothing.
        assert_eq!(c.tally().waiting(), after_open);
        c.state_change(State::Open, State::PeerGone);
        assert!(c.tally().waiting_since.is_some());
        c.state_change(State::PeerGone, State::Closing);
        assert!(c.tally().waiting_since.is_none());
        assert!(c.tally().waiting() >= after_open);
    }

    #[test]
    fn high_water_keeps_the_maximum() {
        let mut c = Counters::new(State::Open);
        for n in [5, 100, 7, 0, 99] {
            c.queue_len(n);
        }
        assert_eq!(c.tally().queue_high_water, 100);
    }

    #[test]
    fn nothing_counted_holds_no_box() {
        let mut c = Counters::new(State::Open);
        c.queue_len(0);
        c.frames_out(0);
        c.state_change(State::Open, State::Closing);
        assert!(c.0.is_none());
        c.frame_in();
        assert_eq!(c.tally().frames_in, 1);
        assert!(Counters::new(State::Opening).0.is_some());
    }
}
