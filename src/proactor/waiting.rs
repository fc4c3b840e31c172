//! Senders waiting for a reader: the list, inotify IN_OPEN for readers
//! that open non-blocking, and a backoff retry timer on the ring for
//! readers blocked in open(2), which inotify does not see. Who is found
//! and what follows is the proactor's (`send`); this part keeps the list
//! and its two wake-ups armed.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::inotify::WatchDescriptor;

use super::route::{OPEN_WATCH, RETRY_TIMER};
use crate::fifo::OpenWatch;
use crate::ring::Ring;
use crate::token::Token;

/// First delay of the retry timer of senders waiting for a reader.
pub(super) const RETRY_START: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub(super) struct Waiting {
    /// Senders waiting for a reader (Opening, or PeerGone with a path),
    /// or lingering until theirs drains the pipe.
    senders: Vec<Token>,
    watch: Option<OpenWatch>,
    watch_armed: bool,
    timer_armed: bool,
    delay: Duration,
    /// `Builder::open_retry_max`.
    max: Duration,
}

impl Waiting {
    pub(super) fn new(max: Duration) -> Waiting {
        Waiting {
            senders: Vec::new(),
            watch: None,
            watch_armed: false,
            timer_armed: false,
            delay: RETRY_START,
            max,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// The waiting senders, now (a copy: looking for readers changes it).
    pub(super) fn senders(&self) -> Vec<Token> {
        self.senders.clone()
    }

    /// Adds `token`, whose FIFO is `anchor`, and arms the watch and the
    /// timer from their first delay; returns its inotify watch. `None`
    /// (nothing changes) if it waits already.
    pub(super) fn join(
        &mut self,
        ring: &mut Ring,
        token: Token,
        anchor: &OwnedFd,
    ) -> Option<Option<WatchDescriptor>> {
        if self.senders.contains(&token) {
            return None;
        }
        self.senders.push(token);
        if self.watch.is_none() {
            self.watch = OpenWatch::new().ok();
        }
        let wd = self.watch.as_mut().and_then(|w| w.add(anchor).ok());
        self.arm_watch(ring);
        self.delay = RETRY_START;
        Some(wd)
    }

    /// Takes `token` (and its inotify watch `wd`) off the list.
    pub(super) fn leave(&mut self, token: Token, wd: Option<WatchDescriptor>) {
        if let (Some(wd), Some(watch)) = (wd, self.watch.as_mut()) {
            watch.remove(wd);
        }
        self.senders.retain(|w| *w != token);
    }

    /// Keeps a poll for IN_OPEN events armed.
    pub(super) fn arm_watch(&mut self, ring: &mut Ring) {
        if self.watch_armed {
            return;
        }
        if let Some(watch) = &self.watch
            && ring
                .poll_add(watch.fd(), libc::POLLIN as u32, OPEN_WATCH)
                .is_ok()
        {
            self.watch_armed = true;
        }
    }

    /// Arms the retry timer, if anybody waits: the next delay of the
    /// backoff, or sooner if a waiting sender's `deadline` comes first.
    pub(super) fn arm_timer(
        &mut self,
        ring: &mut Ring,
        deadline: impl Fn(Token) -> Option<Instant>,
    ) {
        if self.timer_armed || self.senders.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut delay = self.delay;
        for end in self.senders.iter().filter_map(|t| deadline(*t)) {
            delay = delay.min(end.saturating_duration_since(now));
        }
        if ring.timeout(delay, RETRY_TIMER).is_ok() {
            self.timer_armed = true;
            self.delay = (self.delay * 2).min(self.max);
        }
    }

    /// The retry timer fired.
    pub(super) fn on_timer(&mut self) {
        self.timer_armed = false;
    }

    /// The open watch fired: its events are read out (the proactor then
    /// looks for readers), and it is armed again while anybody waits.
    pub(super) fn on_watch(&mut self) {
        self.watch_armed = false;
        if let Some(watch) = self.watch.as_mut() {
            watch.drain();
        }
    }
}
