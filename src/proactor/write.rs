//! The write path: queueing with watermarks, one write in flight per
//! sender, short writes resumed at the exact byte, the reader leaving, and
//! close after flush.

use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::Instant;

use super::registry::Role;
use super::splice::FanOutPolicy;
use super::{ECANCELED, ERESTARTSYS, Proactor};
use crate::buffers::Pool;
use crate::error::{Error, Result};
use crate::event::{CloseReason, Item};
use crate::fifo::Reconnect;
use crate::ring::{OpId, Purpose};
use crate::token::Sender;
use crate::transport::{Chunk, Input, State, WriteQueue};

impl Proactor {
    pub(super) fn enqueue(
        &mut self,
        to: Sender,
        push: impl FnOnce(&mut WriteQueue, &Rc<Pool>),
    ) -> Result<()> {
        let idx = self.live_sender(to)?;
        let pool = Rc::clone(&self.pool);
        let side = self.transports[idx].sender();
        if side.close_after_flush {
            return Err(Error::Closed { token: to.0 });
        }
        if side.relayed_from.is_some() {
            return Err(Error::Relayed { token: to.0 });
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
        push(&mut side.queue, &pool);
        // At the watermark the next send is refused: promise `Writable`.
        side.above_high |= side.queue.unsent() >= side.high;
        self.pump(idx);
        self.count_queued(idx);
        Ok(())
    }

    /// Starts the next write if the sender is open and none is in flight.
    pub(super) fn pump(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        if t.state != State::Open {
            return;
        }
        let Some(file) = t.file() else { return };
        let owner = t.token.to_owner();
        let side = t.sender();
        if side.writing.is_some() || side.poll.is_some() {
            return;
        }
        let Some(chunk) = side.queue.pop_front() else {
            // Queue written: a relay or fan-out into this sender may go on.
            if let Some(from) = side.relayed_from {
                self.arm_splice(from.index as usize);
            }
            return;
        };
        let (start, end, limit) = (chunk.start, chunk.end, chunk.limit);
        match self.ring.write(file, chunk.buf, start..end, owner) {
            Ok(op) => {
                let t = &mut self.transports[idx];
                t.inflight += 1;
                let side = t.sender();
                side.writing = Some((start, end, limit));
                side.write = Some(op);
            }
            Err(e) => self.submit_failed(idx, e),
        }
    }

    pub(super) fn on_write(&mut self, idx: usize, result: i32, buf: Option<crate::buffers::Buf>) {
        let t = &mut self.transports[idx];
        let token = t.token;
        let closing = t.state == State::Closing;
        let side = t.sender();
        side.write = None;
        let (start, end, limit) = side
            .writing
            .take()
            .expect("a write completion has its range");
        let mut chunk = Chunk {
            buf: buf.expect("a write owns its buffer"),
            start,
            end,
            limit,
        };
        if result >= 0 {
            let n = result as usize;
            side.queue.accepted_total += n as u64;
            chunk.start += n;
            if chunk.start < chunk.end {
                side.queue.push_front(chunk);
            }
            if n > 0 {
                self.pending.push(Item::Sent {
                    to: Sender(token),
                    bytes: n,
                });
            }
            if closing {
                return;
            }
            self.apply(idx, Input::PeerReady);
            self.pump(idx);
            self.maybe_writable(idx);
            self.maybe_flushed(idx);
            return;
        }
        // Nothing was written: the chunk goes back to the front, intact.
        side.queue.push_front(chunk);
        if closing {
            return;
        }
        match result {
            // The reader left. The kernel took nothing of this write (a
            // partial write reports its count instead), so the queue is exact.
            r if r == -libc::EPIPE => self.on_reader_gone(idx),
            r if r == -libc::EAGAIN => {
                let t = &self.transports[idx];
                let Some(fd) = t.fd.as_ref() else { return };
                let poll = self.ring.poll_add(
                    fd.as_raw_fd(),
                    libc::POLLOUT as u32,
                    token.to_owner(),
                    Purpose::WritePoll,
                );
                if let Some(op) = self.track(idx, poll) {
                    self.transports[idx].sender().poll = Some(op);
                }
            }
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => self.pump(idx),
            r => self.io_fail(idx, "write", r),
        }
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
            && side.writing.is_none()
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
            let poll =
                self.ring
                    .poll_add(fd.as_raw_fd(), 0, t.token.to_owner(), Purpose::WritePoll);
            if let Some(op) = self.track(idx, poll) {
                self.transports[idx].sender().poll = Some(op);
            }
        }
    }
}
