//! State changes and the close path: failing a transport, cancelling its
//! operations, and finishing the close once nothing is in flight. A close
//! needs the whole proactor: it leaves the waiting list, cancels splices
//! into a sender, and hands a relay's ends back to their other sides.

use std::io;

use super::Proactor;
use super::link;
use super::registry::{Role, Transport};
use crate::error::Error;
use crate::event::{CloseReason, Item};
use crate::ring::OpId;
use crate::token::Token;
use crate::transport::{Input, Notice, State, transition};

impl Proactor {
    /// Moves transport `idx`'s state machine (see `End::apply`).
    pub(super) fn apply(&mut self, idx: usize, input: Input) {
        self.table[idx].end.apply(input, &mut self.io.pending);
    }

    pub(super) fn begin_close(&mut self, idx: usize, reason: CloseReason) {
        let end = &mut self.table[idx].end;
        if end.state == State::Closing {
            return;
        }
        end.reason = reason;
        self.apply(idx, Input::Close);
        self.cancel_ops(idx);
        self.maybe_finish(idx);
    }

    pub(super) fn fail(&mut self, idx: usize, error: Error) {
        let end = &mut self.table[idx].end;
        if end.state == State::Closing {
            return;
        }
        end.reason = CloseReason::Error;
        let token = end.token;
        self.io.report_error(token, error);
        self.apply(idx, Input::Fail);
        self.cancel_ops(idx);
        self.maybe_finish(idx);
    }

    /// Fails transport `idx`: its operation `op` failed with `result`.
    pub(super) fn io_fail(&mut self, idx: usize, op: &'static str, result: i32) {
        let error = self.table[idx].end.io_error(op, result);
        self.fail(idx, error);
    }

    /// Counts a just-submitted operation of transport `idx` as in flight,
    /// or fails the transport if it could not be submitted.
    pub(super) fn track(&mut self, idx: usize, submitted: io::Result<OpId>) -> Option<OpId> {
        match self.table[idx].end.track(submitted) {
            Ok(op) => Some(op),
            Err(e) => {
                self.submit_failed(idx, e);
                None
            }
        }
    }

    /// Asks the kernel to cancel `ops` of transport `idx` (see
    /// `End::cancel`).
    pub(super) fn cancel(&mut self, idx: usize, ops: impl IntoIterator<Item = Option<OpId>>) {
        self.table[idx].end.cancel(&mut self.io.ring, ops);
    }

    /// Fails transport `idx` because an operation could not be submitted.
    pub(super) fn submit_failed(&mut self, idx: usize, source: io::Error) {
        self.fail(
            idx,
            Error::Ring {
                op: "submit",
                source,
            },
        );
    }

    fn cancel_ops(&mut self, idx: usize) {
        self.leave_waiting(idx);
        let ops = match &self.table[idx].role {
            Role::Receiver(rx) => rx.ops(),
            Role::Sender(s) => s.ops(),
        };
        self.cancel(idx, ops.into_iter().map(Some));
        // A splice into this sender uses its fd: stop it too (it is the
        // receiver's operation; `maybe_finish` waits for it).
        for (rx, op) in self.splice_ops_into(idx) {
            self.cancel(rx, [Some(op)]);
        }
    }

    #[inline]
    pub(super) fn maybe_finish(&mut self, idx: usize) {
        let end = &self.table[idx].end;
        if end.state == State::Closing && end.inflight == 0 && self.splice_ops_into(idx).is_empty()
        {
            self.finish_close(idx);
        }
    }

    /// After an operation of transport `idx` completed: it, and the closing
    /// destinations of its splice (`waiting`), may finish closing now.
    // Once per completion: inlined into dispatch, as it was written there.
    #[inline(always)]
    pub(super) fn maybe_finish_after(&mut self, idx: usize, waiting: Vec<Token>) {
        // Only a closing transport can finish: the usual case is one check.
        if self
            .table
            .get(idx)
            .is_some_and(|t| t.end.state == State::Closing)
        {
            self.maybe_finish(idx);
        }
        for to in waiting {
            if self.table.find_mut(to).is_some() {
                self.maybe_finish(to.index as usize);
            }
        }
    }

    /// The last step of close: nothing is in flight any more.
    fn finish_close(&mut self, idx: usize) {
        let Transport { mut end, mut role } = self.table.remove(idx);
        debug_assert_eq!(
            transition(end.state, Input::Drained),
            Some((State::Closed, Notice::Closed))
        );
        end.release_fd(&mut self.io.ring);
        let mut unsent = Vec::new();
        let mut freed = Vec::new();
        match &mut role {
            Role::Sender(s) => {
                s.queue.take_bytes(&mut unsent);
                // The splice into this sender loses this destination; its
                // receiver reads again when none is left.
                if let Some(from) = s.fed_by.source()
                    && let Some(Transport {
                        role: Role::Receiver(r),
                        ..
                    }) = self.table.get_mut(from.index as usize)
                {
                    if let Some(f) = r.splice_mut()
                        && link::unlink(&mut f.feeds, Some(&mut s.fed_by), end.token)
                    {
                        r.end_splice();
                    }
                    if r.splice().is_none() {
                        self.arm_read(from.index as usize);
                    } else {
                        self.arm_splice(from.index as usize);
                    }
                }
            }
            Role::Receiver(rx) => {
                // Its token may stay in the starved queue: skipped there.
                if std::mem::take(&mut rx.starved) {
                    self.reads.starved_live -= 1;
                }
                if let Some(error) = rx.truncated_at_close(&end) {
                    self.io.report_error(end.token, error);
                }
                if let Some(mut splice) = rx.take_splice() {
                    for to in splice.feeds.to_vec() {
                        let dest = self.table.find_mut(to).and_then(|d| d.sender());
                        let found = dest.is_some();
                        link::unlink(&mut splice.feeds, dest.map(|s| &mut s.fed_by), to);
                        if found {
                            self.pump(to.index as usize);
                            freed.push(to);
                        }
                    }
                }
            }
        }
        let unsent = self.io.pending_owned.bytes(unsent);
        self.io.pending.push(Item::Closed {
            token: end.token,
            reason: end.reason,
            unsent,
        });
        // Destinations flushing may close now, after their source's Closed.
        for to in freed {
            if self.table.find_mut(to).is_some() {
                self.maybe_flushed(to.index as usize);
            }
        }
    }
}
