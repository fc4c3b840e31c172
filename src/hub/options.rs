//! How a hub frames, bounds and feeds its subscribers.

#[cfg(doc)]
use super::{Hub, HubEvent, SubscriberStats};
use crate::frame::Codec;
#[cfg(doc)]
use crate::{Event, FifoOptions, Proactor};

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
    /// [`HubEvent::Resumed`]). A caller of [`Hub::publish`] holds back the
    /// same way: while [`Hub::is_paused`], publish nothing (the hub takes
    /// it, but its queues grow past the limit).
    PauseSource,
    /// Evict that subscriber: stop feeding it and forget its queue
    /// ([`HubEvent::Evicted`]). Its sender stays open with what it was
    /// handed; [`Hub::add`] it again to get the frames from then on. (Not
    /// a fan-out's [`Detach`](crate::FanOutPolicy::Detach), which drops a
    /// destination whose reader left, not one that fell behind.)
    Evict,
}

/// How a [`Hub`] frames, bounds and feeds its subscribers.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub(super) codec: Codec,
    pub(super) max_frame: usize,
    pub(super) queue_bytes: usize,
    pub(super) full: Full,
    pub(super) sender_high: usize,
    pub(super) sender_low: usize,
    pub(super) close_at_end: bool,
}

impl HubOptions {
    /// Defaults for frames of `codec`: payloads up to
    /// `PIPE_BUF - overhead` (for a raw source, see [`max_frame`](Self::max_frame)),
    /// 1 MiB queued per subscriber, [`Full::DropOldest`], sender watermarks
    /// of 64 KiB / 16 KiB, subscribers closed after the hub ends.
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
    /// opened with [`FifoOptions::frames`]
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
    /// [`Proactor::close_after_flush`] once the hub has ended (its source
    /// closed, or [`Hub::end`]) and its queue is empty, so its reader sees
    /// EOF after the last frame (default: yes).
    pub fn close_at_end(mut self, yes: bool) -> Self {
        self.close_at_end = yes;
        self
    }
}
