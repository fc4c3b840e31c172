//! The send family, and what a sender asks of the proactor next: its
//! writes started (`pump`), `Writable`, a flushed close, its reader
//! leaving, and the wait for a reader (inotify and the retry timer, kept
//! armed by `waiting`). A sender's own state and completions are in
//! `sender`; these steps need the whole proactor (the table, the link,
//! the waiting list, closing).

use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Instant;

use super::Proactor;
use super::registry::{Role, Transport};
use super::sender::{Gone, Pumped, Refused, SendSide, Written, frames};
use crate::buffers::Pool;
use crate::error::{Error, Result};
use crate::event::CloseReason;
use crate::fifo;
use crate::frame::{Checked, Codec, PIPE_BUF};
use crate::token::Sender;
use crate::transport::{Input, State, WriteQueue};

impl Proactor {
    /// Queues a copy of `data`. It is written in order, exactly once, from
    /// the next [`poll`](Self::poll) on; short writes resume at the exact
    /// byte. Bytes sent while the sender waits for a reader wait with it.
    ///
    /// Backpressure: while the bytes not yet accepted by the kernel are at
    /// or above the sender's high watermark, `send` queues nothing and
    /// returns [`Error::WouldBlock`]; [`Event::Writable`](crate::Event::Writable)
    /// follows once they are down to the low watermark. Below the high
    /// watermark the whole of `data` is accepted.
    pub fn send(&mut self, to: Sender, data: &[u8]) -> Result<()> {
        self.enqueue(to, 0, |queue, pool, _| {
            queue.push(pool, data);
            Ok(())
        })
    }

    /// Queues frames: each payload in `payloads` encoded with `codec`, in
    /// order (one frame is a slice of one: `&[payload]`). A frame of at
    /// most [`PIPE_BUF`](crate::frame::PIPE_BUF) bytes, header included,
    /// goes out in a single write, with other whole frames only, packed
    /// densely: frames from many processes writing to one FIFO never
    /// interleave. A larger frame cannot be written atomically: it is
    /// refused with [`Error::FrameTooLarge`], unless the sender allows
    /// large frames ([`FifoOptions::large_frames`](crate::FifoOptions::large_frames),
    /// for a FIFO with one writer), which writes it like [`send`](Self::send)
    /// bytes.
    ///
    /// All or nothing: a payload the codec cannot carry (a newline in a
    /// line, say) fails the call with [`Error::Frame`], a refused large
    /// frame with [`Error::FrameTooLarge`], and none of them is queued.
    /// Backpressure as for [`send`](Self::send): below the high watermark
    /// every frame is accepted, at or above it none.
    pub fn send_frames<P: AsRef<[u8]>>(
        &mut self,
        to: Sender,
        codec: Codec,
        payloads: &[P],
    ) -> Result<()> {
        self.enqueue(to, payloads.len() as u64, |q, pool, large| {
            frames::push_frames(q, pool, large, codec, payloads)
        })
    }

    /// Queues `wire`: whole frames already encoded with `codec` (read from
    /// a FIFO, say, up to the last frame boundary, or an
    /// [`Event::Frames`](crate::Event::Frames) run). They are cut at frame
    /// boundaries into atomic writes of at most
    /// [`PIPE_BUF`](crate::frame::PIPE_BUF) bytes, packed densely, with
    /// the cost of a copy and a few boundary searches per `PIPE_BUF`, not
    /// a call per frame: a framed relay or fan-out at about the cost of
    /// [`send`](Self::send). A frame longer than `PIPE_BUF` is refused as
    /// by [`send_frames`](Self::send_frames), or, where the sender allows
    /// large frames, written like `send` bytes.
    ///
    /// All or nothing: `wire` ending inside a frame fails the call with
    /// [`Error::Frame`] ([`FrameError::Truncated`](crate::frame::FrameError::Truncated)),
    /// a refused large frame with [`Error::FrameTooLarge`], and nothing is
    /// queued. Backpressure as for `send`. Its frames are not counted in
    /// [`Stats::frames_out`](crate::Stats::frames_out) (that would cost a
    /// scan); its bytes are, in `bytes_queued`.
    ///
    /// To queue the same frames on several senders, check them once with
    /// [`Checked::new`] and use [`send_checked`](Self::send_checked).
    pub fn send_encoded(&mut self, to: Sender, codec: Codec, wire: &[u8]) -> Result<()> {
        self.enqueue(to, 0, |q, pool, large| {
            frames::push_encoded(q, pool, large, codec, wire)
        })
    }

    /// Queues whole frames checked once ([`Checked::new`]), as
    /// [`send_encoded`](Self::send_encoded) would queue their wire, without
    /// looking at the frames again where the sender is its FIFO's sole
    /// writer ([`FifoOptions::sole_writer`](crate::FifoOptions::sole_writer)):
    /// a fan-out of one read's run to many subscribers pays for one check,
    /// not one per subscriber. For other senders the frames are cut into
    /// atomic writes as by `send_encoded`, and a frame longer than
    /// `PIPE_BUF` is refused the same way. Backpressure as for
    /// [`send`](Self::send).
    pub fn send_checked(&mut self, to: Sender, checked: &Checked<'_>) -> Result<()> {
        self.enqueue(to, 0, |q, pool, large| {
            frames::push_checked(q, pool, large, checked)
        })
    }

    /// Allows (or refuses again) frames longer than `PIPE_BUF` on a
    /// sender: as [`FifoOptions::large_frames`](crate::FifoOptions::large_frames),
    /// for a sender made from an fd or one already open.
    pub fn set_large_frames(&mut self, sender: Sender, yes: bool) -> Result<()> {
        self.sender_side(sender)?.large_frames = yes;
        Ok(())
    }

    /// Changes a sender's watermarks (see [`FifoOptions::watermarks`](crate::FifoOptions::watermarks)).
    pub fn set_watermarks(&mut self, sender: Sender, high: usize, low: usize) -> Result<()> {
        self.sender_side(sender)?.set_watermarks(high, low);
        self.maybe_writable(sender.0.index as usize);
        Ok(())
    }

    /// Closes a sender once everything sent has been read: its queue is
    /// written and the reader has drained the pipe (reason
    /// [`CloseReason::Flushed`]). If the reader leaves first, the sender
    /// keeps the pipe open and waits for the next one, so no byte is lost
    /// between reader sessions. Further sends fail with [`Error::Closed`].
    ///
    /// On the destination of a [`relay`](Self::relay) or
    /// [`fan_out`](crate::Proactor::fan_out), the relayed stream counts as
    /// sent: the sender closes once the relay has ended (its receiver
    /// reached EOF or closed, or this destination was detached) and the
    /// reader has drained the pipe. So `relay(rx, tx)` then
    /// `close_after_flush(tx)` passes EOF on: the reader of `tx` sees EOF
    /// after the last byte that reached `rx`.
    ///
    /// If no reader drains the pipe, what ends the wait:
    /// - no reader ever opened the FIFO: only
    ///   [`FifoOptions::open_timeout`](crate::FifoOptions::open_timeout) ([`Error::OpenTimeout`]);
    /// - the reader left, with bytes still queued or after the kernel
    ///   accepted them all: the sender's [`Reconnect`](crate::Reconnect) policy, as for any
    ///   departure (`Wait`: the next reader; `WaitUpTo`:
    ///   [`Error::ReaderTimeout`]; `Fail`: closes at once). `Closed` hands
    ///   back the bytes the kernel never accepted; those in the pipe are
    ///   lost with it;
    /// - a reader that stays and never reads: nothing; call
    ///   [`close`](Self::close) when your own deadline passes.
    pub fn close_after_flush(&mut self, sender: Sender) -> Result<()> {
        self.sender_side(sender)?.close_after_flush = true;
        self.maybe_flushed(sender.0.index as usize);
        Ok(())
    }

    /// The send side of a live sender.
    fn sender_side(&mut self, sender: Sender) -> Result<&mut SendSide> {
        let (_, t) = self.table.live_sender(sender)?;
        t.sender().ok_or(Error::Stale { token: sender.0 })
    }

    /// Queues what `push` puts in a sender's queue (given whether the
    /// sender takes frames over `PIPE_BUF`), after the checks every send
    /// shares; counts `frames` frames out once it is queued.
    fn enqueue(
        &mut self,
        to: Sender,
        frames: u64,
        push: impl FnOnce(&mut WriteQueue, &Rc<Pool>, bool) -> Result<(), Refused>,
    ) -> Result<()> {
        let (_, Transport { end, role }) = self.table.live_sender(to)?;
        let Role::Sender(side) = role else {
            return Err(Error::Stale { token: to.0 });
        };
        // Named only in an error: a send allocates nothing for it.
        let name = end.path.as_ref();
        side.admit(to, name)?;
        let was_empty = side.queue.is_empty();
        // A sole writer's frames stay whole at any size.
        let large = side.large_frames || side.queue.sole_writer;
        push(&mut side.queue, &self.io.pool, large).map_err(|refused| {
            let path = end.name();
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
        // The writes start at the next `poll`, with whatever else this
        // turn queues: one chain, not a short one and the rest behind it.
        if side.admitted(was_empty) {
            self.unpumped.push(to.0);
        }
        end.counters.queue_len(side.queue.unsent());
        end.counters.frames_out(frames);
        Ok(())
    }

    /// Starts the writes of senders that queued bytes since the last poll.
    pub(super) fn pump_queued(&mut self) {
        let mut queued = std::mem::take(&mut self.unpumped);
        for token in queued.drain(..) {
            if let Ok(idx) = self.table.live(token) {
                self.pump(idx);
            }
        }
        // Keep the allocation for the next turn's sends.
        if self.unpumped.is_empty() {
            self.unpumped = queued;
        }
    }

    /// Starts sender `idx`'s next writes, if it can (see `SendSide::pump`).
    pub(super) fn pump(&mut self, idx: usize) {
        let Some((end, side)) = self.table.sender_mut(idx) else {
            return;
        };
        match side.pump(end, &mut self.io) {
            Pumped::Done | Pumped::Drained(None) => {}
            Pumped::Drained(Some(from)) => self.arm_splice(from.index as usize),
            Pumped::Unsubmitted(e) => self.submit_failed(idx, e),
        }
    }

    /// What a sender's write or poll completion asks for next.
    pub(super) fn after_write(&mut self, idx: usize, written: Written) {
        match written {
            Written::Done => {}
            Written::Progress => {
                let t = &mut self.table[idx];
                t.end.apply(Input::PeerReady, &mut self.io.pending);
                self.pump(idx);
                self.maybe_writable(idx);
                self.maybe_flushed(idx);
            }
            Written::Pump => self.pump(idx),
            Written::ReaderGone => self.reader_gone(idx),
            Written::Fail(e) => self.fail(idx, e),
            Written::Unsubmitted(e) => self.submit_failed(idx, e),
        }
    }

    /// Sender `idx`'s reader left: its reconnect policy applies, and a
    /// fan-out that detaches such destinations drops it.
    pub(super) fn reader_gone(&mut self, idx: usize) {
        let t = &mut self.table[idx];
        t.end.apply(Input::PeerLeft, &mut self.io.pending);
        self.detach_gone(idx);
        let t = &mut self.table[idx];
        let has_path = t.end.anchor.is_some();
        let Some(side) = t.sender() else {
            return;
        };
        if side.reader_gone() == Gone::Close {
            return self.begin_close(idx, CloseReason::PeerGone);
        }
        if has_path {
            self.join_waiting(idx);
        }
    }

    pub(super) fn maybe_writable(&mut self, idx: usize) {
        let Transport { end, role } = &mut self.table[idx];
        if let Role::Sender(side) = role {
            side.maybe_writable(Sender(end.token), &mut self.io.pending);
        }
    }

    /// Closes a flushing sender once nothing of its data is left: its queue
    /// is written and the reader has drained the pipe. Until then it keeps
    /// its fd, which keeps the pipe, so if the reader leaves the bytes still
    /// in the pipe reach the next one. Checked on the retry timer.
    pub(super) fn maybe_flushed(&mut self, idx: usize) {
        let Some((end, side)) = self.table.sender_mut(idx) else {
            return;
        };
        if !side.flushed() {
            return;
        }
        let in_pipe = match (&end.anchor, &end.fd) {
            (Some(_), Some(fd)) => fifo::pipe_bytes(fd.as_fd()).unwrap_or(0),
            // Nobody can come back to an anonymous pipe: nothing to keep.
            _ => 0,
        };
        if in_pipe == 0 {
            self.leave_waiting(idx);
            self.begin_close(idx, CloseReason::Flushed);
            return;
        }
        self.join_waiting(idx);
        let Transport { end, role } = &mut self.table[idx];
        if let Role::Sender(side) = role
            && let Err(e) = side.watch_reader(end, &mut self.io)
        {
            self.submit_failed(idx, e);
        }
    }

    /// Puts sender `idx` on the waiting list (if it has a path and is not
    /// on it): inotify and the retry timer look for its reader.
    pub(super) fn join_waiting(&mut self, idx: usize) {
        let Transport { end, role } = &mut self.table[idx];
        let (Some(anchor), Role::Sender(side)) = (end.anchor.as_ref(), role) else {
            return;
        };
        if let Some(wd) = self.waiting.join(&mut self.io.ring, end.token, anchor) {
            side.watch = wd;
            self.arm_retry_timer();
        }
    }

    pub(super) fn leave_waiting(&mut self, idx: usize) {
        let t = &mut self.table[idx];
        let wd = t.sender().and_then(|s| s.watch.take());
        self.waiting.leave(t.end.token, wd);
    }

    /// Arms the retry timer, sooner than its backoff if a waiting
    /// sender's deadline comes first.
    pub(super) fn arm_retry_timer(&mut self) {
        let table = &self.table;
        let deadline = |token: crate::token::Token| match table.get(token.index as usize) {
            Some(Transport {
                role: Role::Sender(s),
                ..
            }) => s.deadline.map(|(d, _)| d),
            _ => None,
        };
        self.waiting.arm_timer(&mut self.io.ring, deadline);
    }

    /// Looks for readers of every waiting sender.
    pub(super) fn retry_waiting(&mut self) {
        let now = Instant::now();
        for token in self.waiting.senders() {
            let idx = token.index as usize;
            let Some(Transport {
                end,
                role: Role::Sender(side),
            }) = self.table.find_mut(token)
            else {
                continue;
            };
            let Some(anchor) = end.anchor.as_ref() else {
                self.leave_waiting(idx);
                continue;
            };
            match end.state {
                State::Opening => match fifo::try_open_writer(anchor) {
                    Ok(Some(fd)) => {
                        if let Some(size) = side.pipe_size
                            && let Err(e) = fifo::set_pipe_size(fd.as_fd(), size, end.describe())
                        {
                            self.fail(idx, e);
                            continue;
                        }
                        side.deadline = None;
                        end.install_fd(&mut self.io.ring, fd);
                        self.reader_found(idx);
                    }
                    Ok(None) => {
                        if let Some((deadline, waited)) = side.deadline
                            && now >= deadline
                        {
                            let path = end.path_buf();
                            self.fail(idx, Error::OpenTimeout { path, waited });
                        }
                    }
                    Err(e) => {
                        let path = end.path_buf();
                        self.fail(idx, fifo::open_error(&path, e));
                    }
                },
                State::PeerGone => {
                    if let Ok(true) = fifo::has_reader(anchor) {
                        side.deadline = None;
                        self.reader_found(idx);
                    } else if let Some((deadline, waited)) = side.deadline
                        && now >= deadline
                    {
                        let path = end.path_buf();
                        self.fail(idx, Error::ReaderTimeout { path, waited });
                    }
                }
                // Open and lingering until the reader drains the pipe.
                State::Open if side.close_after_flush => self.maybe_flushed(idx),
                _ => self.leave_waiting(idx),
            }
        }
    }

    /// A waiting sender has its reader: it writes again.
    fn reader_found(&mut self, idx: usize) {
        self.leave_waiting(idx);
        let t = &mut self.table[idx];
        t.end.apply(Input::PeerReady, &mut self.io.pending);
        self.pump(idx);
        self.maybe_flushed(idx);
    }
}
