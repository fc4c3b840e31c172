//! Framed fan-out: one receiver's frames to many senders, each subscriber
//! with a bounded queue of its own, built on the public [`Proactor`] API.
//!
//! [`Proactor::fan_out`] tees raw bytes inside the kernel: every
//! destination moves at the pace of the slowest, and one that is detached
//! cannot come back. A [`Hub`] works with whole frames instead. The frames
//! of each batch the source delivers are copied once into a shared,
//! reference-counted chunk; every subscriber's queue holds references to
//! chunks, not copies. Each subscriber's [`Sender`] is fed from its queue
//! with [`Proactor::send`], whole frames at a time, only up to the sender's
//! high watermark, so the sender holds at most about one watermark of
//! copied bytes and the backlog stays shared. A slow subscriber fills only
//! its own queue; what happens when that queue passes its limit is the
//! [`Full`] policy: drop its oldest frames and count them, pause the
//! source, or detach the subscriber.
//!
//! A source's frames may come one by one ([`Event::Frame`], from iterating
//! [`Events`]) or as runs ([`Event::Frames`], from
//! [`Events::runs`] with the hub's codec: copied as they are, without a
//! call per frame).
//!
//! Memory: the bytes a subscriber holds are its queued frames plus, at
//! most, the rest of the one chunk it is part way through; a chunk is
//! freed when the last queue moves past it. Frames are re-encoded in the
//! hub's codec, so a source may also read lines and publish
//! length-prefixed frames.
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
//!     hub.handle_events(&mut p, &events)?;
//!     for report in hub.reports() {
//!         eprintln!("{report:?}");
//!     }
//! }
//! # Ok::<(), ringpipe::Error>(())
//! ```

use std::collections::VecDeque;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::frame::{Codec, FrameDecoder, FrameError};
use crate::proactor::Proactor;
use crate::token::{Receiver, Sender, Token};

/// What a [`Hub`] does when a subscriber's queue passes
/// [`HubOptions::queue_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Drop whole frames from the head of that subscriber's queue until it
    /// fits, and count them ([`SubscriberStats::dropped_frames`]). The
    /// others are not slowed.
    DropOldest,
    /// Pause the source ([`Proactor::pause`]) while any subscriber's queue
    /// is over the limit, and resume it once every queue is down to half
    /// of it: nothing is dropped, and the publisher feels the backpressure
    /// of the slowest subscriber (reported as [`HubEvent::Paused`] and
    /// [`HubEvent::Resumed`]).
    PauseSource,
    /// Stop feeding that subscriber and forget its queue
    /// ([`HubEvent::Detached`]). Its sender stays open with what it was
    /// handed; [`Hub::add`] it again to get the frames from then on.
    Detach,
}

/// How a [`Hub`] frames, bounds and feeds its subscribers.
#[derive(Debug, Clone)]
pub struct HubOptions {
    codec: Codec,
    max_frame: usize,
    queue_bytes: usize,
    full: Full,
    sender_high: usize,
    sender_low: usize,
    close_at_end: bool,
}

impl HubOptions {
    /// Defaults for frames of `codec`: payloads up to
    /// `PIPE_BUF - overhead` (for a raw source, see [`max_frame`](Self::max_frame)),
    /// 1 MiB queued per subscriber, [`Full::DropOldest`], sender watermarks
    /// of 64 KiB / 16 KiB, subscribers closed after the source ends.
    pub fn new(codec: Codec) -> HubOptions {
        HubOptions {
            codec,
            max_frame: crate::frame::PIPE_BUF - codec.overhead(),
            queue_bytes: 1 << 20,
            full: Full::DropOldest,
            sender_high: 64 * 1024,
            sender_low: 16 * 1024,
            close_at_end: true,
        }
    }

    /// The largest payload accepted from a source that delivers raw
    /// [`Event::Data`] (the hub then decodes the frames itself). A source
    /// opened with [`FifoOptions::frames`](crate::FifoOptions::frames)
    /// enforces its own maximum.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Bytes of frames each subscriber's queue may hold beyond what its
    /// sender has taken, before the [`Full`] policy acts.
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes;
        self
    }

    /// The policy for a full subscriber queue.
    pub fn full(mut self, policy: Full) -> Self {
        self.full = policy;
        self
    }

    /// Watermarks set on every subscriber's sender
    /// ([`Proactor::set_watermarks`]): the hub hands a sender frames while
    /// its unsent bytes are below `high`, and again after
    /// [`Event::Writable`] (at `low`).
    pub fn sender_watermarks(mut self, high: usize, low: usize) -> Self {
        self.sender_high = high.max(1);
        self.sender_low = low.min(self.sender_high);
        self
    }

    /// Whether each subscriber's sender gets
    /// [`Proactor::close_after_flush`] once the source has closed and its
    /// queue is empty, so its reader sees EOF after the last frame
    /// (default: yes).
    pub fn close_at_end(mut self, yes: bool) -> Self {
        self.close_at_end = yes;
        self
    }
}

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
    /// A subscriber was detached by [`Full::Detach`]; its sender is left
    /// open. `stats.queued_frames` were never handed to it.
    Detached {
        /// The subscriber.
        to: Sender,
        /// Its counters when it was detached.
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

/// Whole frames on the wire, shared by every queue that holds them.
#[derive(Debug)]
struct Chunk {
    bytes: Vec<u8>,
    /// Where each frame ends in `bytes`.
    ends: Vec<usize>,
}

impl Chunk {
    fn start(&self, frame: usize) -> usize {
        match frame {
            0 => 0,
            i => self.ends[i - 1],
        }
    }
}

#[derive(Debug)]
struct Subscriber {
    tx: Sender,
    /// Chunks and the first of their frames still to hand over.
    queue: VecDeque<(Rc<Chunk>, usize)>,
    stats: SubscriberStats,
    /// `close_after_flush` was called on its sender.
    closing: bool,
}

/// One receiver's frames fanned out to many senders (see the module docs).
///
/// Pass it every event of every poll with
/// [`handle_events`](Self::handle_events) (or each with
/// [`handle`](Self::handle), then [`flush`](Self::flush)); it takes what
/// concerns its source and subscribers and ignores the rest.
#[derive(Debug)]
pub struct Hub {
    source: Receiver,
    opts: HubOptions,
    /// For a source that delivers raw bytes.
    decoder: FrameDecoder,
    /// Frames received since the last publish.
    staged: Chunk,
    subs: Vec<Subscriber>,
    reports: Vec<HubEvent>,
    paused: bool,
    ended: bool,
    published_frames: u64,
}

impl Hub {
    /// A hub for the frames of `source`: a receiver opened with
    /// [`FifoOptions::frames`](crate::FifoOptions::frames) in the same
    /// codec (its [`Event::Frame`]s are used), or a plain one (its
    /// [`Event::Data`] is decoded by the hub).
    pub fn new(source: Receiver, opts: HubOptions) -> Hub {
        Hub {
            source,
            decoder: FrameDecoder::new(opts.codec, opts.max_frame),
            opts,
            staged: Chunk {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
            subs: Vec::new(),
            reports: Vec::new(),
            paused: false,
            ended: false,
            published_frames: 0,
        }
    }

    /// The source receiver.
    pub fn source(&self) -> Receiver {
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
        self.subs.push(Subscriber {
            tx,
            queue: VecDeque::new(),
            stats: SubscriberStats::default(),
            closing: false,
        });
        if self.ended {
            let i = self.subs.len() - 1;
            self.feed(p, i);
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
        self.position(tx.token()).map(|i| self.subs[i].stats)
    }

    /// The current subscribers.
    pub fn subscribers(&self) -> impl Iterator<Item = Sender> + '_ {
        self.subs.iter().map(|s| s.tx)
    }

    /// Frames received from the source and published so far.
    pub fn published_frames(&self) -> u64 {
        self.published_frames
    }

    /// Whether [`Full::PauseSource`] holds the source paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether the source has closed and every subscriber's queue is
    /// handed over (with [`HubOptions::close_at_end`], every sender is
    /// then closing; wait for their `Closed` to know the readers have it
    /// all).
    pub fn is_finished(&self) -> bool {
        self.ended && self.subs.iter().all(|s| s.queue.is_empty())
    }

    /// What the hub did on its own since the last call.
    pub fn reports(&mut self) -> std::vec::Drain<'_, HubEvent> {
        self.reports.drain(..)
    }

    /// Handles every event of a poll, then [`flush`](Self::flush)es.
    /// Frames are taken one by one and re-encoded in the hub's codec; a
    /// source of that same codec can be taken by runs instead, one copy
    /// per run: `for e in events.runs(codec) { hub.handle(p, &e)?; }`
    /// then `hub.flush(p)`.
    pub fn handle_events(&mut self, p: &mut Proactor, events: &Events) -> Result<()> {
        for event in events {
            self.handle(p, &event)?;
        }
        self.flush(p);
        Ok(())
    }

    /// Handles one event. The source's frames are staged, and published
    /// to every subscriber at the next [`flush`](Self::flush) (or the next
    /// event that is not the source's data), so the frames of one poll
    /// share one chunk. Fails only on a frame the hub cannot take
    /// ([`Error::Frame`]): a bad frame from a raw source (its decoder
    /// then stays failed: close the source), or a payload the hub's codec
    /// cannot carry (a newline, for [`Codec::Lines`]).
    pub fn handle(&mut self, p: &mut Proactor, event: &Event<'_>) -> Result<Handled> {
        let source = self.source.token();
        match event {
            Event::Frame { from, frame } if from.token() == source => {
                let staged = &mut self.staged;
                self.opts
                    .codec
                    .encode(frame, &mut staged.bytes)
                    .map_err(|e| p.frame_error(source, e))?;
                staged.ends.push(staged.bytes.len());
                return Ok(Handled::Used);
            }
            Event::Frames { from, wire, frames } if from.token() == source => {
                // A run from `Events::runs`: already whole frames on the
                // wire, copied as they are.
                let staged = &mut self.staged;
                let (base, before) = (staged.bytes.len(), staged.ends.len());
                let walked = frame_ends(self.opts.codec, wire, base, &mut staged.ends);
                let counted = staged.ends.len() - before;
                if let Err(e) = walked.and(if counted == *frames {
                    Ok(())
                } else {
                    // Not this codec's framing: refuse the run whole.
                    Err(FrameError::Truncated {
                        buffered: wire.len(),
                    })
                }) {
                    staged.ends.truncate(before);
                    return Err(p.frame_error(source, e));
                }
                staged.bytes.extend_from_slice(wire);
                return Ok(Handled::Used);
            }
            Event::Data { from, data } if from.token() == source => {
                let (codec, staged) = (self.opts.codec, &mut self.staged);
                let mut bad = None;
                self.decoder
                    .feed(data, |frame| {
                        // Decoded in this codec, so it encodes in it too.
                        match codec.encode(frame, &mut staged.bytes) {
                            Ok(()) => staged.ends.push(staged.bytes.len()),
                            Err(e) => {
                                bad.get_or_insert(e);
                            }
                        }
                    })
                    .map_err(|e| p.frame_error(source, e))?;
                if let Some(e) = bad {
                    return Err(p.frame_error(source, e));
                }
                return Ok(Handled::Used);
            }
            _ => {}
        }
        self.flush(p);
        match event {
            Event::Writable(tx) => match self.position(tx.token()) {
                Some(i) => {
                    self.feed(p, i);
                    self.check_pause(p);
                    Ok(Handled::Used)
                }
                None => Ok(Handled::Ignored),
            },
            Event::Closed { token, .. } if *token == source => {
                self.ended = true;
                self.paused = false;
                self.reports.push(HubEvent::SourceEnded);
                // Subscribers with nothing queued close now.
                for i in (0..self.subs.len()).rev() {
                    self.feed(p, i);
                }
                Ok(Handled::Used)
            }
            Event::Closed { token, .. } => match self.position(*token) {
                Some(i) => {
                    self.let_go(i, None);
                    self.check_pause(p);
                    Ok(Handled::Used)
                }
                None => Ok(Handled::Ignored),
            },
            _ => Ok(Handled::Ignored),
        }
    }

    /// Publishes the frames staged since the last call to every
    /// subscriber: one shared chunk, a reference in each queue. Each
    /// subscriber's sender takes what it can at once; the [`Full`] policy
    /// then bounds what is left queued.
    pub fn flush(&mut self, p: &mut Proactor) {
        if self.staged.ends.is_empty() {
            return;
        }
        let chunk = Rc::new(std::mem::replace(
            &mut self.staged,
            Chunk {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
        ));
        let frames = chunk.ends.len() as u64;
        let bytes = chunk.bytes.len() as u64;
        self.published_frames += frames;
        for sub in &mut self.subs {
            sub.queue.push_back((Rc::clone(&chunk), 0));
            sub.stats.queued_frames += frames;
            sub.stats.queued_bytes += bytes;
        }
        drop(chunk);
        let limit = self.opts.queue_bytes as u64;
        // Backwards: `feed` and `Detach` may remove the one at `i`.
        for i in (0..self.subs.len()).rev() {
            if !self.feed(p, i) || self.subs[i].stats.queued_bytes <= limit {
                continue;
            }
            match self.opts.full {
                Full::DropOldest => drop_oldest(&mut self.subs[i], limit),
                Full::PauseSource => {}
                Full::Detach => {
                    let sub = self.subs.swap_remove(i);
                    self.reports.push(HubEvent::Detached {
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

    /// Hands subscriber `i`'s sender whole frames while it is below its
    /// high watermark. The last send of a round takes it to the watermark
    /// or past it (by less than a frame), so the sender promises
    /// `Writable`, which resumes the round. Returns whether the subscriber
    /// is still there (a send that fails lets it go).
    fn feed(&mut self, p: &mut Proactor, i: usize) -> bool {
        let high = self.opts.sender_high as u64;
        let sub = &mut self.subs[i];
        let mut failed = None;
        while let Some((chunk, first)) = sub.queue.front_mut() {
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
            let start = chunk.start(*first);
            let (mut last, mut end) = (*first, start);
            while last < chunk.ends.len() && end - start < room {
                end = chunk.ends[last];
                last += 1;
            }
            match p.send(sub.tx, &chunk.bytes[start..end]) {
                Ok(()) => {
                    let (frames, bytes) = ((last - *first) as u64, (end - start) as u64);
                    sub.stats.handed_frames += frames;
                    sub.stats.handed_bytes += bytes;
                    sub.stats.queued_frames -= frames;
                    sub.stats.queued_bytes -= bytes;
                    *first = last;
                    if last == chunk.ends.len() {
                        sub.queue.pop_front();
                    }
                }
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
            && sub.queue.is_empty()
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
        let sub = self.subs.swap_remove(i);
        self.reports.push(HubEvent::Gone {
            to: sub.tx,
            stats: sub.stats,
            error,
        });
    }

    /// Under [`Full::PauseSource`]: pauses the source while any queue is
    /// over the limit, resumes it once all are down to half of it.
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
            if p.pause(self.source).is_ok() {
                self.paused = true;
                self.reports.push(HubEvent::Paused);
            }
        } else if self.paused && most <= limit / 2 && p.resume(self.source).is_ok() {
            self.paused = false;
            self.reports.push(HubEvent::Resumed);
        }
    }
}

/// Pushes where each frame of `wire` (whole frames of `codec`) ends,
/// offset by `base`; fails if `wire` ends inside a frame.
fn frame_ends(
    codec: Codec,
    wire: &[u8],
    base: usize,
    ends: &mut Vec<usize>,
) -> std::result::Result<(), FrameError> {
    let mut at = 0;
    while at < wire.len() {
        let end = match codec {
            Codec::Lines => wire[at..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|i| at + i + 1),
            Codec::LengthPrefixed => wire
                .get(at..at + 4)
                .and_then(|h| h.try_into().ok())
                .map(|h| at + 4 + u32::from_le_bytes(h) as usize)
                .filter(|end| *end <= wire.len()),
        };
        let Some(end) = end else {
            return Err(FrameError::Truncated {
                buffered: wire.len() - at,
            });
        };
        ends.push(base + end);
        at = end;
    }
    Ok(())
}

/// Drops whole frames from the head of `sub`'s queue until it holds at
/// most `limit` bytes. The head was never partly handed over: the sender
/// takes whole frames only.
fn drop_oldest(sub: &mut Subscriber, limit: u64) {
    while sub.stats.queued_bytes > limit {
        let Some((chunk, first)) = sub.queue.front_mut() else {
            break;
        };
        let bytes = (chunk.ends[*first] - chunk.start(*first)) as u64;
        *first += 1;
        if *first == chunk.ends.len() {
            sub.queue.pop_front();
        }
        sub.stats.queued_frames -= 1;
        sub.stats.queued_bytes -= bytes;
        sub.stats.dropped_frames += 1;
        sub.stats.dropped_bytes += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Receiver;

    fn sub_with(frames: &[&[u8]]) -> Subscriber {
        let mut chunk = Chunk {
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        for f in frames {
            Codec::LengthPrefixed.encode(f, &mut chunk.bytes).unwrap();
            chunk.ends.push(chunk.bytes.len());
        }
        let mut sub = Subscriber {
            tx: Sender(Token {
                index: 0,
                generation: 0,
                proactor: 0,
            }),
            queue: VecDeque::new(),
            stats: SubscriberStats::default(),
            closing: false,
        };
        sub.stats.queued_frames = chunk.ends.len() as u64;
        sub.stats.queued_bytes = chunk.bytes.len() as u64;
        sub.queue.push_back((Rc::new(chunk), 0));
        sub
    }

    /// One chunk per flush, shared by every queue: the frames are in
    /// memory once however many subscribers hold them.
    #[test]
    fn subscribers_share_one_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let opts = crate::FifoOptions::new().create(true);
        let source = p.open_receiver(dir.path().join("src"), &opts).unwrap();
        // A high watermark of one byte: each sender takes one frame, the
        // rest stays queued in the hub.
        let mut hub = Hub::new(
            source,
            HubOptions::new(Codec::Lines).sender_watermarks(1, 0),
        );
        // No reader: the senders wait, holding what they are handed.
        let txs: Vec<Sender> = (0..3)
            .map(|i| {
                let tx = p
                    .open_sender(dir.path().join(format!("out{i}")), &opts)
                    .unwrap();
                assert!(hub.add(&mut p, tx).unwrap());
                tx
            })
            .collect();
        for frame in [&b"one"[..], b"two", b"three"] {
            let event = Event::Frame {
                from: source,
                frame,
            };
            assert_eq!(hub.handle(&mut p, &event).unwrap(), Handled::Used);
        }
        hub.flush(&mut p);
        assert_eq!(hub.published_frames(), 3);
        let first = &hub.subs[0].queue[0].0;
        assert_eq!(Rc::strong_count(first), 3);
        assert!(hub.subs.iter().all(|s| Rc::ptr_eq(&s.queue[0].0, first)));
        assert_eq!(first.bytes, b"one\ntwo\nthree\n");
        for tx in txs {
            let st = hub.stats(tx).unwrap();
            assert_eq!((st.handed_frames, st.handed_bytes), (1, 4));
            assert_eq!((st.queued_frames, st.queued_bytes), (2, 10));
            assert_eq!(p.stats(tx).unwrap().bytes_unsent(), 4);
        }
    }

    /// A run is copied as it is, one end per frame; a run that is not
    /// whole frames of the hub's codec is refused and stages nothing.
    #[test]
    fn runs_are_staged_whole_or_refused() {
        let mut p = Proactor::new().unwrap();
        let source = Receiver(Token {
            index: 7,
            generation: 0,
            proactor: p.id(),
        });
        let mut hub = Hub::new(source, HubOptions::new(Codec::LengthPrefixed));
        let mut wire = Vec::new();
        for f in [&b"ab"[..], b"", b"cde"] {
            Codec::LengthPrefixed.encode(f, &mut wire).unwrap();
        }
        let run = |wire, frames| Event::Frames {
            from: source,
            wire,
            frames,
        };
        assert_eq!(hub.handle(&mut p, &run(&wire, 3)).unwrap(), Handled::Used);
        assert_eq!(hub.staged.ends, [6, 10, 17]);
        for (bad, frames) in [(&wire[..16], 3), (&wire[..], 2)] {
            let err = hub.handle(&mut p, &run(bad, frames)).unwrap_err();
            assert!(matches!(err, Error::Frame { .. }), "{err}");
        }
        assert_eq!(hub.staged.bytes, wire);
        assert_eq!(hub.staged.ends.len(), 3);
    }

    #[test]
    fn drop_oldest_drops_whole_frames_from_the_head() {
        let mut sub = sub_with(&[b"aaaa", b"bb", b"c"]);
        assert_eq!(sub.stats.queued_bytes, 8 + 6 + 5);
        drop_oldest(&mut sub, 12);
        assert_eq!(sub.stats.dropped_frames, 1);
        assert_eq!(sub.stats.dropped_bytes, 8);
        assert_eq!(sub.stats.queued_frames, 2);
        assert_eq!(sub.queue.front().map(|q| q.1), Some(1));
        drop_oldest(&mut sub, 0);
        assert!(sub.queue.is_empty());
        assert_eq!(sub.stats.dropped_frames, 3);
        assert_eq!(sub.stats.queued_bytes, 0);
    }
}
