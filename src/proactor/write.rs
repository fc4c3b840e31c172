//! The write path: queueing with watermarks, one write in flight per
//! sender, short writes resumed at the exact byte, the reader leaving, and
//! close after flush.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use super::registry::{RelayedRange, Role, SendSide};
use super::route::{self, Part};
use super::splice::FanOutPolicy;
use super::{ECANCELED, ERESTARTSYS, Proactor};
use crate::buffers::Pool;
use crate::error::{Error, Result};
use crate::event::{CloseReason, Item};
use crate::fifo::Reconnect;
use crate::frame::{Codec, FrameError, PIPE_BUF};
use crate::ring::OpId;
use crate::token::{Receiver, Sender};
use crate::transport::{Chunk, Input, State, WriteQueue};

/// Most writes in one chain: a pipe's default capacity in `PIPE_BUF`
/// chunks of frames.
const CHAIN_WRITES: usize = 16;
/// Most bytes in one chain (its first chunk aside): a pipe's default
/// capacity. More would only wait in the kernel for room.
const CHAIN_BYTES: usize = 64 * 1024;

/// A write in flight: its place in the chain and its chunk's range.
#[derive(Debug)]
pub(super) struct Writing {
    pub(super) op: OpId,
    pub(super) seq: u32,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) atomic: bool,
}

impl SendSide {
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

/// Why a frame call queued nothing (see [`Proactor::enqueue`]).
pub(super) enum Refused {
    /// The codec cannot carry a payload, or `wire` is not whole frames.
    Frame(FrameError),
    /// A frame of this many bytes on the wire is over `PIPE_BUF` and the
    /// sender keeps frames atomic.
    TooLarge(usize),
}

impl Proactor {
    /// Queues one frame: `payload` encoded with `codec`. A frame of at most
    /// [`PIPE_BUF`](crate::frame::PIPE_BUF) bytes, header included, goes out
    /// in a single write, with other whole frames only, so frames from many
    /// processes writing to one FIFO never interleave. A larger frame
    /// cannot be written atomically: it is refused with
    /// [`Error::FrameTooLarge`], unless the sender allows large frames
    /// ([`FifoOptions::large_frames`](crate::FifoOptions::large_frames),
    /// for a FIFO with one writer), which writes it like
    /// [`send`](Self::send) bytes. Backpressure as for `send`.
    pub fn send_frame(&mut self, to: Sender, codec: Codec, payload: &[u8]) -> Result<()> {
        self.enqueue(to, |q, pool, large| {
            let frame = codec.pieces(payload).map_err(Refused::Frame)?;
            if frame.len() > PIPE_BUF && !large {
                return Err(Refused::TooLarge(frame.len()));
            }
            q.push_message(pool, &frame.as_slices());
            Ok(())
        })?;
        self.count_frames_out(to, 1);
        Ok(())
    }

    /// Queues many frames at once: each payload in `payloads` encoded with
    /// `codec`, in order, as by [`send_frame`](Self::send_frame) called
    /// for each, but at the cost of one call. Frames of at most
    /// [`PIPE_BUF`](crate::frame::PIPE_BUF) bytes are packed densely,
    /// whole, into atomic writes of at most `PIPE_BUF` bytes: never
    /// interleaved with other writers of the FIFO.
    ///
    /// All or nothing: a payload the codec cannot carry (a newline in a
    /// line, say) fails the call with [`Error::Frame`], a frame over
    /// `PIPE_BUF` with [`Error::FrameTooLarge`] (unless the sender allows
    /// large frames), and none of them is queued. Backpressure as for
    /// [`send`](Self::send): below the high watermark every frame is
    /// accepted, at or above it none.
    pub fn send_frames<P: AsRef<[u8]>>(
        &mut self,
        to: Sender,
        codec: Codec,
        payloads: &[P],
    ) -> Result<()> {
        self.enqueue(to, |q, pool, large| {
            let mark = q.mark();
            for payload in payloads {
                let payload = payload.as_ref();
                let pushed = match codec {
                    // The common case without the general pieces: a check
                    // for a newline, then payload and newline.
                    Codec::Lines => match memchr::memchr(b'\n', payload) {
                        None if payload.len() >= PIPE_BUF && !large => {
                            Err(Refused::TooLarge(payload.len() + 1))
                        }
                        None => {
                            q.push_message(pool, &[payload, b"\n"]);
                            Ok(())
                        }
                        Some(at) => Err(Refused::Frame(FrameError::NewlineInPayload { at })),
                    },
                    _ => match codec.pieces(payload) {
                        Ok(frame) if frame.len() > PIPE_BUF && !large => {
                            Err(Refused::TooLarge(frame.len()))
                        }
                        Ok(frame) => {
                            q.push_message(pool, &frame.as_slices());
                            Ok(())
                        }
                        Err(e) => Err(Refused::Frame(e)),
                    },
                };
                if let Err(refused) = pushed {
                    q.rollback(mark);
                    return Err(refused);
                }
            }
            Ok(())
        })?;
        self.count_frames_out(to, payloads.len() as u64);
        Ok(())
    }

    /// Queues `wire`: whole frames already encoded with `codec` (read from
    /// a FIFO, say, up to the last frame boundary). They are cut at frame
    /// boundaries into atomic writes of at most
    /// [`PIPE_BUF`](crate::frame::PIPE_BUF) bytes, packed densely, with
    /// the cost of a copy and a few boundary searches per `PIPE_BUF`, not
    /// a call per frame: a framed relay or fan-out at about the cost of
    /// [`send`](Self::send). A frame longer than `PIPE_BUF` is refused as
    /// by [`send_frame`](Self::send_frame), or, where the sender allows
    /// large frames, written like `send` bytes.
    ///
    /// All or nothing: `wire` ending inside a frame fails the call with
    /// [`Error::Frame`] ([`FrameError::Truncated`](crate::frame::FrameError::Truncated)),
    /// a refused large frame with [`Error::FrameTooLarge`], and nothing is
    /// queued. Backpressure as for `send`. Its frames are not counted in
    /// [`Stats::frames_out`](crate::Stats::frames_out) (that would cost a
    /// scan); its bytes are, in `bytes_queued`.
    pub fn send_framed(&mut self, to: Sender, codec: Codec, wire: &[u8]) -> Result<()> {
        self.enqueue(to, |q, pool, large| {
            let mark = q.mark();
            let mut too_large = None;
            codec
                .atomic_runs(wire, |run, atomic| match (atomic, too_large) {
                    (_, Some(_)) => {}
                    (true, None) => q.push_message(pool, &[run]),
                    (false, None) if large => q.push(pool, run),
                    (false, None) => too_large = Some(run.len()),
                })
                .map_err(Refused::Frame)?;
            match too_large {
                Some(len) => {
                    q.rollback(mark);
                    Err(Refused::TooLarge(len))
                }
                None => Ok(()),
            }
        })
    }

    /// Allows (or refuses again) frames longer than `PIPE_BUF` on a
    /// sender: as [`FifoOptions::large_frames`](crate::FifoOptions::large_frames),
    /// for a sender made from an fd or one already open.
    pub fn set_large_frames(&mut self, sender: Sender, yes: bool) -> Result<()> {
        let idx = self.live_sender(sender)?;
        self.transports[idx].sender().large_frames = yes;
        Ok(())
    }

    /// Queues what `push` puts in a sender's queue (given whether the
    /// sender takes frames over `PIPE_BUF`), after the checks every send
    /// shares: a live sender, not flushing or relayed, under its high
    /// watermark.
    pub(super) fn enqueue(
        &mut self,
        to: Sender,
        push: impl FnOnce(&mut WriteQueue, &Rc<Pool>, bool) -> Result<(), Refused>,
    ) -> Result<()> {
        let idx = self.live_sender(to)?;
        let pool = Rc::clone(&self.pool);
        let t = &mut self.transports[idx];
        // Named only in an error: a send allocates nothing for it.
        let name = t.path.as_deref();
        let Role::Sender(side) = &mut t.role else {
            return Err(Error::Stale { token: to.0 });
        };
        if side.close_after_flush {
            return Err(Error::Closed { token: to.0 });
        }
        if side.relayed_from.is_some() {
            let path = name.map(Path::to_path_buf);
            return Err(Error::Relayed { token: to.0, path });
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
        let was_empty = side.queue.is_empty();
        push(&mut side.queue, &pool, side.large_frames).map_err(|refused| {
            let path = name.map(Path::to_path_buf);
            match refused {
                Refused::Frame(source) => Error::Frame {
                    token: to.0,
                    path,
                    source,
                },
                Refused::TooLarge(len) => Error::FrameTooLarge {
                    token: to.0,
                    path,
                    len,
                    max: PIPE_BUF,
                },
            }
        })?;
        // At the watermark the next send is refused: promise `Writable`.
        side.above_high |= side.queue.unsent() >= side.high;
        // The writes start at the next `poll`, with whatever else this
        // turn queues: one chain, not a short one and the rest behind it.
        if was_empty && side.writing.is_empty() {
            self.unpumped.push(to.0);
        }
        self.count_queued(idx);
        Ok(())
    }

    /// Starts the writes of senders that queued bytes since the last poll.
    pub(super) fn pump_queued(&mut self) {
        let mut queued = std::mem::take(&mut self.unpumped);
        for token in queued.drain(..) {
            if let Ok(idx) = self.live(token) {
                self.pump(idx);
            }
        }
        // Keep the allocation for the next turn's sends.
        if self.unpumped.is_empty() {
            self.unpumped = queued;
        }
    }

    /// Starts the next writes if the sender is open and none is in flight:
    /// a chain of linked writes, one per chunk from the queue's front, up
    /// to [`CHAIN_BYTES`] (the first chunk always). Linked, they run in
    /// order, each only after the one before completed in full, so a chunk
    /// of whole frames stays one atomic write and one submission carries
    /// a pipe's worth of them.
    pub(super) fn pump(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        if t.state != State::Open {
            return;
        }
        let Some(file) = t.file() else { return };
        let data = route::data(t.token, Part::Write);
        let side = t.sender();
        if !side.writing.is_empty() || side.poll.is_some() {
            return;
        }
        if side.queue.is_empty() {
            // Queue written: a relay or fan-out into this sender may go on.
            if let Some(from) = side.relayed_from {
                self.arm_splice(from.index as usize);
            }
            return;
        }
        let max = self.ring.sq_entries().clamp(1, CHAIN_WRITES);
        let side = self.transports[idx].sender();
        let n = side.queue.front_run(max, CHAIN_BYTES);
        // The whole chain in one submission: a chain cut by an early flush
        // would run as two, unordered.
        if let Err(e) = self.ring.reserve(n) {
            return self.submit_failed(idx, e);
        }
        for seq in 0..n {
            let side = self.transports[idx].sender();
            let Some(chunk) = side.queue.pop_front() else {
                break;
            };
            let (start, end, atomic) = (chunk.start, chunk.end, chunk.atomic);
            let link = seq + 1 < n;
            match self.ring.write(file, chunk.buf, start..end, data, link) {
                Ok(op) => {
                    let t = &mut self.transports[idx];
                    t.inflight += 1;
                    t.sender().writing.push_back(Writing {
                        op,
                        seq: seq as u32,
                        start,
                        end,
                        atomic,
                    });
                }
                Err(e) => return self.submit_failed(idx, e),
            }
        }
    }

    pub(super) fn on_write(
        &mut self,
        idx: usize,
        op: OpId,
        result: i32,
        buf: Option<crate::buffers::Buf>,
    ) {
        let t = &mut self.transports[idx];
        let token = t.token;
        let closing = t.state == State::Closing;
        let Role::Sender(side) = &mut t.role else {
            return;
        };
        let Some(at) = side.writing.iter().position(|w| w.op == op) else {
            return;
        };
        let Some(w) = side.writing.remove(at) else {
            return;
        };
        let mut chunk = Chunk {
            buf: buf.expect("a write owns its buffer"),
            start: w.start,
            end: w.end,
            atomic: w.atomic,
        };
        if result > 0 {
            let n = result as usize;
            chunk.start += n;
            side.written(Sender(token), n, &mut self.pending);
        }
        let side = self.transports[idx].sender();
        if chunk.start < chunk.end {
            // Not written in full: a short write or an error, which cancels
            // the rest of the chain. The first such result decides.
            if side.failed.is_none_or(|(seq, _)| w.seq < seq) {
                side.failed = Some((w.seq, result));
            }
            side.returned.push((w.seq, chunk));
        }
        if !side.writing.is_empty() {
            return;
        }
        // The whole chain completed: what it did not write goes back to the
        // front, in order, intact from the first unwritten byte.
        side.returned.sort_unstable_by_key(|&(seq, _)| seq);
        for (_, chunk) in side.returned.drain(..).rev() {
            side.queue.push_front(chunk);
        }
        let failed = side.failed.take().map(|(_, r)| r);
        if closing {
            return;
        }
        match failed {
            // Written, in full or in part: resume from the first byte left.
            None => {}
            Some(r) if r >= 0 => {}
            // The reader left. The kernel took nothing of this write (a
            // partial write reports its count instead), so the queue is exact.
            Some(r) if r == -libc::EPIPE => return self.on_reader_gone(idx),
            Some(r) if r == -libc::EAGAIN => {
                let t = &self.transports[idx];
                let Some(fd) = t.fd.as_ref() else { return };
                let poll = self.ring.poll_add(
                    fd.as_raw_fd(),
                    libc::POLLOUT as u32,
                    route::data(token, Part::WritePoll),
                );
                if let Some(op) = self.track(idx, poll) {
                    self.transports[idx].sender().poll = Some(op);
                }
                return;
            }
            Some(r) if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => {
                return self.pump(idx);
            }
            Some(r) => return self.io_fail(idx, "write", r),
        }
        self.apply(idx, Input::PeerReady);
        self.pump(idx);
        self.maybe_writable(idx);
        self.maybe_flushed(idx);
    }

    /// A sender's poll: for room after EAGAIN, or, while a flush lingers,
    /// for its reader leaving (POLLERR).
    pub(super) fn on_write_poll(&mut self, idx: usize, op: OpId, result: i32) {
        let t = &mut self.transports[idx];
        let Role::Sender(side) = &mut t.role else {
            return;
        };
        if side.poll != Some(op) {
            return;
        }
        side.poll = None;
        match (t.state, result) {
            (State::Closing, _) | (_, ECANCELED) => {}
            (_, r) if r < 0 => self.io_fail(idx, "poll", r),
            // The pipe has no reader: as a write's EPIPE would say.
            (State::Open, r) if r & i32::from(libc::POLLERR) != 0 => self.on_reader_gone(idx),
            _ => self.pump(idx),
        }
    }

    pub(super) fn on_reader_gone(&mut self, idx: usize) {
        self.apply(idx, Input::PeerLeft);
        // A fan-out destination whose reader left, by any path (a round or
        // its own queued bytes): detached if the fan-out says so.
        if let Role::Sender(s) = &self.transports[idx].role
            && let Some(from) = s.relayed_from
            && let Some(Role::Receiver {
                splice: Some(f), ..
            }) = self.transports.get(from.index as usize).map(|t| &t.role)
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

    pub(super) fn maybe_writable(&mut self, idx: usize) {
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
    pub(super) fn maybe_flushed(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        let side = t.sender();
        // A relay or fan-out into this sender is part of what it sends:
        // the flush waits until that source has ended too.
        if !(side.close_after_flush
            && side.queue.is_empty()
            && side.writing.is_empty()
            && side.relayed_from.is_none())
        {
            return;
        }
        let in_pipe = match (&t.anchor, &t.fd) {
            (Some(_), Some(fd)) => crate::fifo::pipe_bytes(fd.as_fd()).unwrap_or(0),
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
            let poll = self
                .ring
                .poll_add(fd.as_raw_fd(), 0, route::data(t.token, Part::WritePoll));
            if let Some(op) = self.track(idx, poll) {
                self.transports[idx].sender().poll = Some(op);
            }
        }
    }
}
