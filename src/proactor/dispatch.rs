//! Completions: each one routed, by its user data (see `route`), to the
//! part that owns its operation; and what the part asks for next (bytes
//! to deliver, a read to arm, an EOF, a failure) routed on to whoever does
//! it.

use super::Proactor;
use super::receiver::{Armed, Eof, Next};
use super::registry::{Role, Transport};
use super::route::{self, Part, Route};
use crate::buffers::PROVIDED_GROUP;
use crate::event::CloseReason;
use crate::ring::Completion;

impl Proactor {
    #[inline]
    pub(super) fn dispatch(&mut self, c: Completion) {
        match Route::of(c.data) {
            Route::Transport {
                index,
                generation,
                part,
            } => self.on_transport_op(index as usize, generation, part, c),
            route => self.on_own_op(route, c),
        }
    }

    /// A completion of one of the proactor's own operations: rare, so out
    /// of the line a transport's completion takes.
    #[cold]
    #[inline(never)]
    fn on_own_op(&mut self, route: Route, c: Completion) {
        match route {
            Route::Transport { .. } => {}
            Route::RetryTimer => {
                self.waiting.on_timer();
                self.retry_waiting();
                self.arm_retry_timer();
            }
            Route::OpenWatch => {
                self.waiting.on_watch();
                self.retry_waiting();
                if !self.waiting.is_empty() {
                    self.waiting.arm_watch(&mut self.io.ring);
                }
            }
            Route::Watch(n) => self.watches.on_fired(n),
            Route::Notify => {
                let token = self.notify_token();
                if let Some(state) = self.notify.as_mut() {
                    state.on_complete(&mut self.io, token, c.op, c.result);
                }
            }
            Route::StarvedWake => self.reads.wake_armed = false,
            Route::Nobody => {}
        }
    }

    /// A completion of an operation of the transport in slot `idx`: its
    /// part handles it, then a close waiting for it may finish.
    #[inline]
    fn on_transport_op(&mut self, idx: usize, generation: u32, part: Part, c: Completion) {
        let t = match self.table.get_mut(idx) {
            Some(t) if Route::names(generation, t.end.token) => t,
            // Cannot happen: a slot is freed only when nothing is in flight.
            _ => return,
        };
        t.end.inflight -= u32::from(!c.more);
        // The usual completion (a multishot read's data) takes the short
        // way: no splice to look at, the rest out of line.
        if let (
            Part::ReadMulti,
            Transport {
                end,
                role: Role::Receiver(rx),
            },
        ) = (part, t)
        {
            let io = &mut self.io;
            // Usually data, and nothing follows: the read goes on.
            if !rx.on_read_multi_data(end, io, c.result, c.more, c.provided) {
                match rx.on_read_multi(end, io, c.result, c.more, c.provided) {
                    Next::Done => {}
                    next => self.after_read_out_of_line(idx, next),
                }
            }
            self.maybe_finish_after(idx, Vec::new());
            return;
        }
        self.on_part_op(idx, part, c);
    }

    /// [`on_transport_op`](Self::on_transport_op) for any other part.
    #[inline(never)]
    fn on_part_op(&mut self, idx: usize, part: Part, c: Completion) {
        // Closing senders a splice operation may have kept waiting (its
        // moves use their fds); no other operation touches another
        // transport's fd.
        let waiting = match part {
            Part::SpliceRound | Part::SplicePoll => self.closing_dests(idx),
            _ => Vec::new(),
        };
        let Transport { end, role } = &mut self.table[idx];
        let io = &mut self.io;
        match (part, role) {
            (Part::Read, Role::Receiver(rx)) => {
                let next = rx.on_read(end, io, c);
                self.after_read(idx, next);
            }
            (Part::ReadMulti, Role::Receiver(rx)) => {
                let next = rx.on_read_multi(end, io, c.result, c.more, c.provided);
                self.after_read(idx, next);
            }
            (Part::ReadPoll, Role::Receiver(rx)) => {
                let next = rx.on_read_poll(end, io, c.op, c.result);
                self.after_read(idx, next);
            }
            (Part::HangUp, Role::Receiver(rx)) => {
                let next = rx.on_hup(end, io, c.op, route::arm_of(c.data), c.result);
                self.after_read(idx, next);
            }
            (Part::Write, Role::Sender(s)) => {
                let written = s.on_write(end, io, c.op, c.result, c.buf);
                self.after_write(idx, written);
            }
            (Part::WritePoll, Role::Sender(s)) => {
                let written = s.on_write_poll(end, c.op, c.result);
                self.after_write(idx, written);
            }
            (Part::SpliceRound, Role::Receiver(_)) => self.on_splice_move(idx, c.op, c.result),
            (Part::SplicePoll, Role::Receiver(_)) => self.on_splice_poll(idx, c.op, c.result),
            _ => {}
        }
        self.maybe_finish_after(idx, waiting);
    }

    /// [`after_read`](Self::after_read), kept out of the multishot read's
    /// short way.
    #[inline(never)]
    fn after_read_out_of_line(&mut self, idx: usize, next: Next) {
        self.after_read(idx, next);
    }

    /// What a receiver asks for after a completion.
    #[inline(always)]
    fn after_read(&mut self, idx: usize, next: Next) {
        match next {
            Next::Done => {}
            Next::Rearm(last) => self.arm_read_sized(idx, last),
            Next::Forward { buf, n, rearm } => {
                // Ahead of every spliced byte.
                self.forward(idx, &buf.as_slice()[..n]);
                if let Some(t) = self.table.get_mut(idx) {
                    t.end.data_arrived(&mut self.io.pending);
                }
                if let Some(last) = rearm {
                    self.arm_read_sized(idx, last);
                }
            }
            Next::Arm => self.arm_read(idx),
            Next::Eof => self.eof(idx),
            Next::Starved => {
                if let Some((end, rx)) = self.table.receiver_mut(idx)
                    && !std::mem::replace(&mut rx.starved, true)
                {
                    self.reads.starved.push_back(end.token);
                    self.reads.starved_live += 1;
                }
            }
            Next::Fail(e) => self.fail(idx, e),
            Next::Unsubmitted(e) => self.submit_failed(idx, e),
        }
    }

    /// Arms the reads that starved for buffers, oldest first, as many as
    /// the ring has buffers for (one at least). Re-arming them all would
    /// cost a submission each for nothing: past the free buffers each ends
    /// again with -ENOBUFS. With thousands of receivers ready at once (a
    /// batched wait over 4096 FIFOs) that was a storm of submissions per
    /// poll for a hundred reads, and messages waited behind it.
    pub(super) fn rearm_starved(&mut self) {
        let mut room = self.io.pool.provided_free(PROVIDED_GROUP).max(1);
        while room > 0 && self.reads.starved_live > 0 {
            let Some(token) = self.reads.starved.pop_front() else {
                break;
            };
            // A token left by a receiver that closed: skipped, free.
            let Ok(idx) = self.table.live(token) else {
                continue;
            };
            let Some((_, rx)) = self.table.receiver_mut(idx) else {
                continue;
            };
            if std::mem::take(&mut rx.starved) {
                self.reads.starved_live -= 1;
                self.arm_read(idx);
                room -= 1;
            }
        }
        if self.reads.starved_live == 0 {
            self.reads.starved.clear();
        }
    }

    pub(super) fn arm_read(&mut self, idx: usize) {
        self.arm_read_sized(idx, 0);
    }

    /// Arms what receiver `idx` lacks: its read, or its splice. `last` is
    /// the size of its read that just completed (0 if none).
    fn arm_read_sized(&mut self, idx: usize, last: usize) {
        // Delivering may have failed the transport and freed its slot.
        let Some((end, rx)) = self.table.receiver_mut(idx) else {
            return;
        };
        match rx.arm(end, &mut self.io, &self.reads, last) {
            Ok(Armed::Done) => {}
            Ok(Armed::Splice) => self.arm_splice(idx),
            Err(e) => self.submit_failed(idx, e),
        }
    }

    /// Every writer of receiver `idx` left (see `ReceiverSide::eof`).
    pub(super) fn eof(&mut self, idx: usize) {
        let Some((end, rx)) = self.table.receiver_mut(idx) else {
            return;
        };
        match rx.eof(end, &mut self.io) {
            Eof::Reopened => self.arm_read(idx),
            Eof::Close => self.begin_close(idx, CloseReason::Eof),
            Eof::Fail(e) => self.fail(idx, e),
        }
    }
}
