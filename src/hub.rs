//! Framed fan-out: frames from one receiver, or published on the
//! proactor's thread, to many senders, each subscriber with a bounded
//! queue of its own, built on the public [`Proactor`] API.
//!
//! [`Proactor::fan_out`] tees raw bytes inside the kernel: every
//! destination moves at the pace of the slowest, and one that is detached
//! (its reader left, [`FanOutPolicy::Detach`](crate::FanOutPolicy::Detach))
//! cannot come back. A [`Hub`] works with whole frames instead. The frames
//! of each batch are copied once into a shared, reference-counted chunk;
//! every subscriber's queue holds references to chunks, not copies. Each
//! subscriber's [`Sender`] is fed from its queue with [`Proactor::send`],
//! whole frames at a time, only up to the sender's high watermark, so the
//! sender holds at most about one watermark of copied bytes and the
//! backlog stays shared. A slow subscriber fills only its own queue; what
//! happens when that queue passes its limit is the [`Full`] policy: drop
//! its oldest frames and count them, pause the source, or evict the
//! subscriber.
//!
//! Where the frames come from, and how to hand them to the hub:
//!
//! | frames from | make it with | hand it |
//! |---|---|---|
//! | a receiver opened with [`FifoOptions::frames`](crate::FifoOptions::frames) | [`Hub::new`] | every event of every poll: [`Hub::handle_events`]; or, for a source of the hub's own codec, one copy per run: [`Hub::handle`] each event of [`Events::runs`], then [`Hub::flush`] |
//! | a plain receiver ([`Event::Data`]) | [`Hub::new`] | every event of every poll, as above: the hub decodes the frames, one writer's session at a time |
//! | your code on the proactor's thread (other threads: a [`Mailbox`](crate::Mailbox), as in `examples/hub_handoff.rs`) | [`Hub::without_source`] (or [`Hub::new`], to mix both) | [`Hub::publish`] each frame, and every event of every poll as above (the subscribers' `Writable` and `Closed`); [`Hub::end`] when no more come |
//!
//! Frames are re-encoded in the hub's codec, so a source may also read
//! lines and publish length-prefixed frames.
//!
//! Every frame the source delivers reaches every subscriber's queue, or is
//! counted, and reported ([`HubEvent::Rejected`], [`HubEvent::Truncated`]):
//!
//! - [`Hub::rejected_frames`]: a payload the hub's codec cannot carry (a
//!   newline, for [`Codec::Lines`]: that frame alone is lost, the frames
//!   around it are published); a run of [`Events::runs`] that is not whole
//!   frames of the hub's codec (the whole run); a frame a raw source sends
//!   over [`HubOptions::max_frame`], which also ends the framing of its
//!   writer's session (the rest of that session has no frame boundaries to
//!   trust and is skipped, as a framed receiver would close); a frame
//!   published after the end.
//! - [`Hub::truncated_frames`]: a frame its writer left unfinished. A
//!   writer's session ends at the source's [`Event::PeerGone`] (every
//!   writer closed): the hub then drops the partial frame and decodes the
//!   next session from a clean start, so no frame joins two writers'
//!   bytes.
//!
//! A framed source's own decoder finds bad and truncated frames before the
//! hub sees them; its [`Event::Error`]s are counted the same way.
//!
//! Memory: the bytes a subscriber holds are its queued frames plus, at
//! most, the rest of the one chunk it is part way through; a chunk is
//! freed (or kept for reuse) when the last queue moves past it.
//!
//! A subscriber whose reader leaves keeps its sender, which keeps every
//! byte it was handed and resumes at the exact byte when a reader comes
//! back; meanwhile its queue fills. So a reader that leaves on a frame
//! boundary and comes back gets every frame once, in order, unless its
//! queue overflowed under [`Full::DropOldest`], in which case
//! [`SubscriberStats::dropped_frames`] says how many it missed (always the
//! oldest queued, never a frame partly handed to the sender). Subscribers
//! may be added and removed at any time; one added gets the frames
//! published from then on.
//!
//! ```no_run
//! use ringpipe::frame::Codec;
//! use ringpipe::hub::{Full, Hub, HubOptions};
//! use ringpipe::{Events, FifoOptions, Proactor};
//!
//! let mut p = Proactor::new()?;
//! let opts = FifoOptions::new().create(true);
//! let source = p.open_receiver("in.fifo", &opts.clone().frames(Codec::Lines, 4095))?;
//! let mut hub = Hub::new(source, HubOptions::new(Codec::Lines).full(Full::DropOldest));
//! for name in ["a.fifo", "b.fifo", "c.fifo"] {
//!     let tx = p.open_sender(name, &opts)?;
//!     hub.add(&mut p, tx)?;
//! }
//! let mut events = Events::with_capacity(256);
//! // At the source's end each sender closes once its reader has it all,
//! // and a closed sender leaves the hub.
//! while hub.subscribers().next().is_some() {
//!     p.poll(&mut events, None)?;
//!     hub.handle_events(&mut p, &events);
//!     for report in hub.reports() {
//!         eprintln!("{report:?}");
//!     }
//! }
//! eprintln!(
//!     "{} frames published, {} rejected, {} truncated",
//!     hub.published_frames(),
//!     hub.rejected_frames(),
//!     hub.truncated_frames()
//! );
//! # Ok::<(), ringpipe::Error>(())
//! ```

mod intake;
mod options;
mod queue;

use crate::error::{Error, Result};
use crate::event::{Event, Events};
#[cfg(doc)]
use crate::frame::Codec;
use crate::frame::FrameError;
use crate::proactor::Proactor;
use crate::token::{Receiver, Sender, Token};
use intake::{Intake, Refused};
pub use options::{Full, HubOptions};
use queue::{Spares, Subscriber};

/// Counters of one subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Frames in the hub's queue, not yet handed to the sender.
    pub queued_frames: u64,
    /// Their bytes, on the wire.
    pub queued_bytes: u64,
    /// Frames dropped by [`Full::DropOldest`].
    pub dropped_frames: u64,
    /// Their bytes, on the wire.
    pub dropped_bytes: u64,
    /// Frames handed to the sender (which writes each exactly once, in
    /// order, or hands it back when it closes).
    pub handed_frames: u64,
    /// Their bytes, on the wire.
    pub handed_bytes: u64,
}

/// Something the hub did on its own, taken with [`Hub::reports`].
#[derive(Debug)]
#[non_exhaustive]
pub enum HubEvent {
    /// A subscriber was evicted by [`Full::Evict`]; its sender is left
    /// open. `stats.queued_frames` were never handed to it.
    Evicted {
        /// The subscriber.
        to: Sender,
        /// Its counters when it was evicted.
        stats: SubscriberStats,
    },
    /// A subscriber's sender closed (or failed) and the hub let it go.
    Gone {
        /// The subscriber.
        to: Sender,
        /// Its counters then.
        stats: SubscriberStats,
        /// The error a send met, if that is how the hub found out.
        error: Option<Error>,
    },
    /// [`Full::PauseSource`] paused the source.
    Paused,
    /// [`Full::PauseSource`] resumed the source.
    Resumed,
    /// The source closed: no frame comes any more.
    SourceEnded,
    /// Frames the hub could not publish (see the module docs): counted in
    /// [`Hub::rejected_frames`].
    Rejected {
        /// How many: one, or a whole run of [`Events::runs`].
        frames: u64,
        /// Why (the first reason, for a run).
        error: FrameError,
    },
    /// A writer's session (or the source) ended inside a frame: its start
    /// is dropped, counted in [`Hub::truncated_frames`].
    Truncated {
        /// Bytes of the frame that came, header or partial line included.
        buffered: usize,
    },
}

/// Whether [`Hub::handle`] used an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The event was the source's or a subscriber's, and the hub acted on
    /// it (you may still look at it).
    Used,
    /// Nothing for the hub.
    Ignored,
}

/// Frames fanned out to many senders (see the module docs).
///
/// Pass it every event of every poll with
/// [`handle_events`](Self::handle_events) (or each with
/// [`handle`](Self::handle), then [`flush`](Self::flush)); it takes what
/// concerns its source and subscribers and ignores the rest.
#[derive(Debug)]
pub struct Hub {
    source: Option<Receiver>,
    opts: HubOptions,
    /// Frames taken in and not yet published, and what was refused.
    intake: Intake,
    spares: Spares,
    subs: Vec<Subscriber>,
    reports: Vec<HubEvent>,
    paused: bool,
    ended: bool,
    published_frames: u64,
}

impl Hub {
    /// A hub for the frames of `source`: a receiver opened with
    /// [`FifoOptions::frames`](crate::FifoOptions::frames) (its
    /// [`Event::Frame`]s are used), or a plain one (its [`Event::Data`] is
    /// decoded by the hub in its codec). It ends when the source closes.
    /// [`publish`](Self::publish) adds frames of your own.
    pub fn new(source: Receiver, opts: HubOptions) -> Hub {
        let mut hub = Hub::without_source(opts);
        hub.source = Some(source);
        hub
    }

    /// A hub fed only by [`publish`](Self::publish); it ends at
    /// [`end`](Self::end).
    pub fn without_source(opts: HubOptions) -> Hub {
        Hub {
            source: None,
            intake: Intake::new(opts.codec, opts.max_frame),
            opts,
            spares: Spares::default(),
            subs: Vec::new(),
            reports: Vec::new(),
            paused: false,
            ended: false,
            published_frames: 0,
        }
    }

    /// The source receiver, if the hub has one.
    pub fn source(&self) -> Option<Receiver> {
        self.source
    }

    /// Adds a subscriber: it gets every frame published from now on. Sets
    /// its watermarks to [`HubOptions::sender_watermarks`]. Returns
    /// `false`, changing nothing, if it already is one.
    pub fn add(&mut self, p: &mut Proactor, tx: Sender) -> Result<bool> {
        if self.position(tx.token()).is_some() {
            return Ok(false);
        }
        p.set_watermarks(tx, self.opts.sender_high, self.opts.sender_low)?;
        self.subs.push(Subscriber::new(tx));
        if self.ended {
            self.feed(p, self.subs.len() - 1);
        }
        Ok(true)
    }

    /// Stops feeding a subscriber and forgets its queue; its sender stays
    /// open with what it was handed. Returns its counters, or `None` if it
    /// was none.
    pub fn remove(&mut self, p: &mut Proactor, tx: Sender) -> Option<SubscriberStats> {
        let i = self.position(tx.token())?;
        let sub = self.subs.swap_remove(i);
        self.check_pause(p);
        Some(sub.stats)
    }

    /// A subscriber's counters, or `None` if it is none.
    pub fn stats(&self, tx: Sender) -> Option<SubscriberStats> {
        let i = self.position(tx.token())?;
        self.subs.get(i).map(|s| s.stats)
    }

    /// The current subscribers.
    pub fn subscribers(&self) -> impl Iterator<Item = Sender> + '_ {
        self.subs.iter().map(|s| s.tx)
    }

    /// Frames published so far (from the source and by
    /// [`publish`](Self::publish)), each queued for every subscriber there
    /// was then.
    pub fn published_frames(&self) -> u64 {
        self.published_frames
    }

    /// Frames refused so far: not valid in the hub's codec, over a raw
    /// source's maximum, or after the end (see the module docs).
    pub fn rejected_frames(&self) -> u64 {
        self.intake.rejected
    }

    /// Frames cut short so far by the end of their writer's session (or of
    /// the source), their start dropped.
    pub fn truncated_frames(&self) -> u64 {
        self.intake.truncated
    }

    /// Whether [`Full::PauseSource`] holds the publishers back.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether the hub has ended (its source closed, or
    /// [`end`](Self::end)) and every subscriber's queue is handed over
    /// (with [`HubOptions::close_at_end`], every sender is then closing;
    /// wait for their `Closed` to know the readers have it all).
    pub fn is_finished(&self) -> bool {
        self.ended && self.subs.iter().all(Subscriber::is_empty)
    }

    /// What the hub did on its own since the last call.
    pub fn reports(&mut self) -> std::vec::Drain<'_, HubEvent> {
        self.reports.drain(..)
    }

    /// Publishes one frame made on the proactor's thread (frames from
    /// other threads come through a [`Mailbox`](crate::Mailbox):
    /// `examples/hub_handoff.rs`): encoded in the hub's codec and queued
    /// for every subscriber at once, under the same queues, [`Full`]
    /// policy and counters as the source's frames, in order with them;
    /// each call is a chunk of its own. A payload the codec cannot carry,
    /// or a frame after the hub's end ([`FrameError::Ended`]), is
    /// returned, counted in [`rejected_frames`](Self::rejected_frames)
    /// (not reported: you have the error), and publishes nothing.
    pub fn publish(&mut self, p: &mut Proactor, frame: &[u8]) -> Result<(), FrameError> {
        let taken = if self.ended {
            Err(self.intake.too_late())
        } else {
            self.intake.frame(frame)
        };
        taken.map_err(|r| r.error)?;
        self.flush(p);
        Ok(())
    }

    /// Ends the hub: no frame is published after this. With
    /// [`HubOptions::close_at_end`], each subscriber's sender closes once
    /// its queue is handed over. A source's partial frame is counted
    /// truncated, and the source's events are no longer the hub's (close
    /// it yourself). A hub with a source ends by itself when it closes.
    pub fn end(&mut self, p: &mut Proactor) {
        if self.ended {
            return;
        }
        self.session_end();
        self.flush(p);
        if let Some(source) = self.source.filter(|_| self.paused) {
            // Leave the source as it was before the hub held it back.
            let _ = p.resume(source);
        }
        self.stream_ended(p);
    }

    /// Handles every event of a poll, then [`flush`](Self::flush)es. A
    /// frame the hub refuses loses only itself (counted, reported); the
    /// other events are all handled. Frames are taken one by one and
    /// re-encoded in the hub's codec; a source of that same codec can be
    /// taken by runs instead, one copy per run:
    /// `for e in events.runs(codec) { hub.handle(p, e); }` then
    /// `hub.flush(p)`.
    pub fn handle_events(&mut self, p: &mut Proactor, events: &Events) {
        for event in events {
            self.handle(p, event);
        }
        self.flush(p);
    }

    /// Handles one event. The source's frames are staged, and published
    /// to every subscriber at the next [`flush`](Self::flush) (or the next
    /// event that is not the source's data), so the frames of one poll
    /// share one chunk. A frame the hub cannot take is counted and
    /// reported, never returned: the hub goes on with the next event.
    pub fn handle(&mut self, p: &mut Proactor, event: Event<'_>) -> Handled {
        // After the end, the source's events are not the hub's.
        let source = self.source.filter(|_| !self.ended);
        let from_source = source.is_some_and(|s| s.token() == event.token());
        if from_source {
            let taken = match event {
                Event::Frame { frame, .. } => Some(self.intake.frame(frame)),
                Event::Frames { wire, frames, .. } => Some(self.intake.run(wire, frames)),
                Event::Data { data, .. } => Some(self.intake.data(data)),
                _ => None,
            };
            if let Some(taken) = taken {
                if let Err(Refused { frames, error }) = taken {
                    self.reports.push(HubEvent::Rejected { frames, error });
                }
                return Handled::Used;
            }
        }
        self.flush(p);
        match event {
            // Every writer left: the next one starts a new stream.
            Event::PeerGone(_) if from_source => {
                self.session_end();
                Handled::Used
            }
            Event::Error {
                error: Error::Frame { source: error, .. },
                ..
            } if from_source => {
                let report = match *error {
                    FrameError::Truncated { buffered } => HubEvent::Truncated { buffered },
                    ref e => HubEvent::Rejected {
                        frames: 1,
                        error: e.clone(),
                    },
                };
                self.intake.source_error(error);
                self.reports.push(report);
                Handled::Used
            }
            Event::Closed { .. } if from_source => {
                self.session_end();
                self.reports.push(HubEvent::SourceEnded);
                self.stream_ended(p);
                Handled::Used
            }
            Event::Writable(tx) => match self.position(tx.token()) {
                Some(i) => {
                    self.feed(p, i);
                    self.check_pause(p);
                    Handled::Used
                }
                None => Handled::Ignored,
            },
            Event::Closed { token, .. } => match self.position(token) {
                Some(i) => {
                    self.let_go(i, None);
                    self.check_pause(p);
                    Handled::Used
                }
                None => Handled::Ignored,
            },
            _ => Handled::Ignored,
        }
    }

    /// Publishes the frames staged since the last call to every
    /// subscriber: one shared chunk, a reference in each queue. Each
    /// subscriber's sender takes what it can at once; the [`Full`] policy
    /// then bounds what is left queued.
    pub fn flush(&mut self, p: &mut Proactor) {
        let Some(chunk) = self.intake.take(&mut self.spares) else {
            return;
        };
        self.published_frames += chunk.ends.len() as u64;
        for sub in &mut self.subs {
            sub.push(&chunk, &mut self.spares);
        }
        // Kept for reuse only if no queue holds it (no subscribers).
        self.spares.give(chunk);
        let limit = self.opts.queue_bytes as u64;
        // Backwards: `feed` and `Evict` may remove the one at `i`.
        for i in (0..self.subs.len()).rev() {
            if !self.feed(p, i) {
                continue;
            }
            let Some(sub) = self.subs.get_mut(i) else {
                continue;
            };
            if sub.stats.queued_bytes <= limit {
                continue;
            }
            match self.opts.full {
                Full::DropOldest => sub.drop_oldest(limit, &mut self.spares),
                Full::PauseSource => {}
                Full::Evict => {
                    let sub = self.subs.swap_remove(i);
                    self.reports.push(HubEvent::Evicted {
                        to: sub.tx,
                        stats: sub.stats,
                    });
                }
            }
        }
        self.check_pause(p);
    }

    fn position(&self, token: Token) -> Option<usize> {
        self.subs.iter().position(|s| s.tx.token() == token)
    }

    /// The source's writer session ended: a partial frame is reported.
    fn session_end(&mut self) {
        if let Some(buffered) = self.intake.session_end() {
            self.reports.push(HubEvent::Truncated { buffered });
        }
    }

    /// No frame comes any more: subscribers with nothing queued close now.
    fn stream_ended(&mut self, p: &mut Proactor) {
        self.ended = true;
        self.paused = false;
        for i in (0..self.subs.len()).rev() {
            self.feed(p, i);
        }
    }

    /// Hands subscriber `i`'s sender whole frames while it is below its
    /// high watermark. The last send of a round takes it to the watermark
    /// or past it (by less than a frame), so the sender promises
    /// `Writable`, which resumes the round. Returns whether the subscriber
    /// is still there (a send that fails lets it go).
    fn feed(&mut self, p: &mut Proactor, i: usize) -> bool {
        let high = self.opts.sender_high as u64;
        let Some(sub) = self.subs.get_mut(i) else {
            return false;
        };
        let mut failed = None;
        while !sub.is_empty() {
            let unsent = match p.stats(sub.tx) {
                Ok(s) => s.bytes_unsent(),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            // At or over the watermark the send below is refused: that
            // refusal is what promises `Writable` (the sender may have
            // been over it before the hub set its watermarks).
            let room = high.saturating_sub(unsent).max(1) as usize;
            let Some((run, frames)) = sub.next_run(room) else {
                break;
            };
            let bytes = run.len();
            match p.send(sub.tx, run) {
                Ok(()) => sub.handed(frames, bytes, &mut self.spares),
                Err(Error::WouldBlock { .. }) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none()
            && self.ended
            && self.opts.close_at_end
            && sub.is_empty()
            && !sub.closing
        {
            sub.closing = true;
            failed = p.close_after_flush(sub.tx).err();
        }
        match failed {
            Some(error) => {
                self.let_go(i, Some(error));
                false
            }
            None => true,
        }
    }

    /// Forgets subscriber `i`, whose sender closed or failed.
    fn let_go(&mut self, i: usize, error: Option<Error>) {
        if i < self.subs.len() {
            let sub = self.subs.swap_remove(i);
            self.reports.push(HubEvent::Gone {
                to: sub.tx,
                stats: sub.stats,
                error,
            });
        }
    }

    /// Under [`Full::PauseSource`]: holds the publishers back while any
    /// queue is over the limit (pausing the source, if any), lets them go
    /// once all are down to half of it.
    fn check_pause(&mut self, p: &mut Proactor) {
        if self.opts.full != Full::PauseSource || self.ended {
            return;
        }
        let limit = self.opts.queue_bytes as u64;
        let most = self
            .subs
            .iter()
            .map(|s| s.stats.queued_bytes)
            .max()
            .unwrap_or(0);
        // A source that is gone reports `Closed`, which ends the hub.
        if !self.paused && most > limit {
            if self.source.is_none_or(|s| p.pause(s).is_ok()) {
                self.paused = true;
                self.reports.push(HubEvent::Paused);
            }
        } else if self.paused
            && most <= limit / 2
            && self.source.is_none_or(|s| p.resume(s).is_ok())
        {
            self.paused = false;
            self.reports.push(HubEvent::Resumed);
        }
    }
}

#[cfg(test)]
mod tests;
