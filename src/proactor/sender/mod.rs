//! A sender: its queue with watermarks, the writes it has in flight (one
//! linked chain, `pump`), short writes resumed at the exact byte, its
//! reader leaving, and close after flush. It owns its operations and
//! handles their completions; what follows that it cannot do alone
//! (closing, waiting for a reader, a relay going on) it returns for the
//! proactor to route.

pub(super) mod frames;
mod pump;

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::inotify::WatchDescriptor;

use super::link::FedBy;
use super::name::Name;
use crate::buffers::Pool;
use crate::error::{Error, Result};
use crate::event::Item;
use crate::fifo::{FifoOptions, Reconnect};
use crate::ring::OpId;
use crate::token::{Receiver, Sender};
use crate::transport::{Chunk, WriteQueue};

pub(super) use frames::Refused;
pub(super) use pump::{Pumped, Written};

#[derive(Debug)]
pub(super) struct SendSide {
    pub(super) queue: WriteQueue,
    /// The writes in flight, one linked chain, in order.
    writing: VecDeque<pump::Writing>,
    /// Chunks of the chain not written in full, back from their writes,
    /// with the first one's result: they return to the queue's front in
    /// order once the whole chain has completed.
    returned: Vec<(u32, Chunk)>,
    failed: Option<(u32, i32)>,
    /// The poll in flight: for room after EAGAIN, or, while a flush
    /// lingers, for the reader leaving.
    poll: Option<OpId>,
    pub(super) close_after_flush: bool,
    pub(super) pipe_size: Option<usize>,
    /// Most bytes one chain of writes carries: the pipe's size, asked of
    /// the kernel at the first pump (0 until then).
    pub(super) chain_bytes: usize,
    /// When waiting for a reader must end, and the wait it stands for.
    pub(super) deadline: Option<(Instant, Duration)>,
    /// Its FIFO's inotify watch while it waits for a reader.
    pub(super) watch: Option<WatchDescriptor>,
    reconnect: Reconnect,
    high: u64,
    low: u64,
    /// The queue went above `high`: report `Writable` once it is at `low`.
    above_high: bool,
    /// The receiver relaying into this sender (see `link`).
    pub(super) fed_by: FedBy,
    /// Bytes of relays queued here (read before a relay took over, or
    /// filled in for a fan-out destination that fell short), by stream
    /// position: reported as `Relayed`, not `Sent`, once written.
    relayed: VecDeque<RelayedRange>,
    /// Frames longer than `PIPE_BUF` are accepted (written non-atomically).
    pub(super) large_frames: bool,
}

/// Queued bytes of a relay: positions `start..end` of a sender's stream
/// (`WriteQueue::queued_total` counts them), from receiver `from`.
#[derive(Debug, Clone, Copy)]
struct RelayedRange {
    from: Receiver,
    start: u64,
    end: u64,
}

/// What the sender's reader leaving leads to, by its reconnect policy.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Gone {
    /// Close now (`Reconnect::Fail`).
    Close,
    /// Wait for the next reader.
    Wait,
}

impl SendSide {
    pub(super) fn new(opts: &FifoOptions) -> SendSide {
        SendSide {
            queue: WriteQueue::new(opts.sole_writer),
            writing: VecDeque::new(),
            returned: Vec::new(),
            failed: None,
            poll: None,
            close_after_flush: false,
            pipe_size: opts.pipe_size,
            chain_bytes: 0,
            deadline: None,
            watch: None,
            reconnect: opts.reconnect,
            high: opts.high_watermark as u64,
            low: opts.low_watermark as u64,
            above_high: false,
            fed_by: FedBy::default(),
            relayed: VecDeque::new(),
            large_frames: opts.large_frames,
        }
    }

    pub(super) fn set_watermarks(&mut self, high: usize, low: usize) {
        self.high = high.max(1) as u64;
        self.low = low.min(high) as u64;
    }

    /// Nothing of its own queued or in flight: a splice into it may move.
    pub(super) fn idle(&self) -> bool {
        self.writing.is_empty() && self.poll.is_none() && self.queue.is_empty()
    }

    /// Every operation in flight, for a close to cancel.
    pub(super) fn ops(&self) -> Vec<OpId> {
        self.writing.iter().map(|w| w.op).chain(self.poll).collect()
    }

    /// Checks every send shares, before anything is queued: not flushing,
    /// not relayed into, under the high watermark (a refusal there
    /// promises `Writable`). `name` is named only in an error.
    pub(super) fn admit(&mut self, to: Sender, name: Option<&Name>) -> Result<()> {
        if self.close_after_flush {
            return Err(Error::Closed { token: to.0 });
        }
        if self.fed_by.is_fed() {
            let path = name.map(Name::to_path_buf);
            return Err(Error::Relayed { token: to.0, path });
        }
        let unsent = self.queue.unsent();
        if unsent >= self.high {
            self.above_high = true;
            return Err(Error::WouldBlock {
                token: to.0,
                unsent,
                high: self.high,
            });
        }
        Ok(())
    }

    /// After a send queued bytes: at the watermark the next send is
    /// refused, so `Writable` is promised. Returns whether the writes wait
    /// for the next `poll` to start (nothing was queued or in flight).
    pub(super) fn admitted(&mut self, was_empty: bool) -> bool {
        self.above_high |= self.queue.unsent() >= self.high;
        was_empty && self.writing.is_empty()
    }

    /// Reports `Writable` if the queue went down to the low watermark
    /// since a send was refused (or reached the high one).
    pub(super) fn maybe_writable(&mut self, to: Sender, pending: &mut Vec<Item>) {
        if self.above_high && self.queue.unsent() <= self.low {
            self.above_high = false;
            pending.push(Item::Writable(to));
        }
    }

    /// Whether a flushing sender has nothing of its own left: its queue is
    /// written and no relay feeds it any more (a relay into it is part of
    /// what it sends).
    pub(super) fn flushed(&self) -> bool {
        self.close_after_flush
            && self.queue.is_empty()
            && self.writing.is_empty()
            && !self.fed_by.is_fed()
    }

    /// The reader left: what the reconnect policy says, with the deadline
    /// of the wait set.
    pub(super) fn reader_gone(&mut self) -> Gone {
        match self.reconnect {
            Reconnect::Fail => return Gone::Close,
            Reconnect::Wait => self.deadline = None,
            Reconnect::WaitUpTo(limit) => self.deadline = Some((Instant::now() + limit, limit)),
        }
        Gone::Wait
    }

    /// Queues bytes of a relay from `from`: reported as `Relayed` once
    /// written, as the spliced bytes of the same relay are.
    pub(super) fn push_relayed(&mut self, pool: &Rc<Pool>, from: Receiver, data: &[u8]) {
        let start = self.queue.queued_total;
        self.queue.push(pool, data);
        let end = self.queue.queued_total;
        match self.relayed.back_mut() {
            Some(last) if last.from == from && last.end == start => last.end = end,
            _ => self.relayed.push_back(RelayedRange { from, start, end }),
        }
    }

    /// The kernel accepted the next `n` bytes of the queue: reported in
    /// stream order, the sender's own as `Sent`, a relay's as `Relayed`.
    fn written(&mut self, to: Sender, n: usize, pending: &mut Vec<Item>) {
        let mut at = self.queue.accepted_total;
        let end = at + n as u64;
        self.queue.accepted_total = end;
        while at < end {
            match self.relayed.front_mut() {
                // Bytes never written (none are, but a range must not
                // outlive its bytes).
                Some(r) if r.end <= at => {
                    self.relayed.pop_front();
                }
                Some(r) if r.start <= at => {
                    let upto = r.end.min(end);
                    let from = r.from;
                    if r.end <= upto {
                        self.relayed.pop_front();
                    }
                    let bytes = (upto - at) as usize;
                    pending.push(Item::Relayed { from, to, bytes });
                    at = upto;
                }
                next => {
                    let upto = next.map_or(end, |r| r.start.min(end));
                    let bytes = (upto - at) as usize;
                    pending.push(Item::Sent { to, bytes });
                    at = upto;
                }
            }
        }
    }
}
