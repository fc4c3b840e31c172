//! State changes and the close path: failing a transport, cancelling its
//! operations, and finishing the close once nothing is in flight.

use std::io;

use super::Proactor;
use super::registry::Role;
use super::route::{self, Part};
use crate::error::Error;
use crate::event::{CloseReason, Item};
use crate::frame::FrameError;
use crate::ring::OpId;
use crate::token::{Sender, Token};
use crate::transport::{Input, Notice, State, transition};

impl Proactor {
    pub(super) fn apply(&mut self, idx: usize, input: Input) {
        let t = &mut self.transports[idx];
        let Some((next, notice)) = transition(t.state, input) else {
            return;
        };
        t.counters.state_change(t.state, next);
        t.state = next;
        let token = t.token;
        match notice {
            Notice::None => {}
            Notice::Opened => self.pending.push(Item::Opened(Sender(token))),
            Notice::PeerBack => self.pending.push(Item::PeerBack(token)),
            Notice::PeerGone => self.pending.push(Item::PeerGone(token)),
            Notice::Closed => unreachable!("Closed is only reached in finish_close"),
        }
    }

    pub(super) fn begin_close(&mut self, idx: usize, reason: CloseReason) {
        let t = &mut self.transports[idx];
        if t.state == State::Closing {
            return;
        }
        t.reason = reason;
        self.apply(idx, Input::Close);
        self.cancel_ops(idx);
        self.maybe_finish(idx);
    }

    pub(super) fn fail(&mut self, idx: usize, error: Error) {
        let t = &mut self.transports[idx];
        if t.state == State::Closing {
            return;
        }
        let token = t.token;
        t.reason = CloseReason::Error;
        self.pending.push(Item::Error {
            token,
            error: Box::new(error),
        });
        self.apply(idx, Input::Fail);
        self.cancel_ops(idx);
        self.maybe_finish(idx);
    }

    pub(super) fn io_fail(&mut self, idx: usize, op: &'static str, result: i32) {
        let t = &self.transports[idx];
        let (token, path) = (t.token, t.name());
        let source = io::Error::from_raw_os_error(-result);
        let error = Error::Io {
            token,
            path,
            op,
            source,
        };
        self.fail(idx, error);
    }

    /// Counts a just-submitted operation of transport `idx` as in flight,
    /// or fails the transport if it could not be submitted.
    pub(super) fn track(&mut self, idx: usize, submitted: io::Result<OpId>) -> Option<OpId> {
        match submitted {
            Ok(op) => {
                self.transports[idx].inflight += 1;
                Some(op)
            }
            Err(e) => {
                self.submit_failed(idx, e);
                None
            }
        }
    }

    /// Asks the kernel to cancel `ops` of transport `idx`. Each cancel is
    /// an operation of the transport too, so its close waits for them.
    pub(super) fn cancel(&mut self, idx: usize, ops: impl IntoIterator<Item = Option<OpId>>) {
        let data = route::data(self.transports[idx].token, Part::Cancel);
        for op in ops.into_iter().flatten() {
            if self.ring.cancel(op, data).is_ok() {
                self.transports[idx].inflight += 1;
            }
        }
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

    pub(super) fn cancel_ops(&mut self, idx: usize) {
        self.leave_waiting(idx);
        let t = &mut self.transports[idx];
        let ops: Vec<OpId> = match &t.role {
            Role::Receiver {
                read,
                poll,
                splice,
                path,
                ..
            } => [*read, *poll, path.hup()]
                .into_iter()
                .flatten()
                .chain(splice.iter().flat_map(|s| s.ops()))
                .collect(),
            Role::Sender(s) => (s.writing.iter().map(|w| w.op)).chain(s.poll).collect(),
        };
        self.cancel(idx, ops.into_iter().map(Some));
        // A splice into this sender uses its fd: stop it too (it is the
        // receiver's operation; `maybe_finish` waits for it).
        for (rx, op) in self.splice_ops_into(idx) {
            self.cancel(rx, [Some(op)]);
        }
    }

    pub(super) fn maybe_finish(&mut self, idx: usize) {
        let t = &self.transports[idx];
        if t.state == State::Closing && t.inflight == 0 && self.splice_ops_into(idx).is_empty() {
            self.finish_close(idx);
        }
    }

    /// The last step of close: nothing is in flight any more.
    pub(super) fn finish_close(&mut self, idx: usize) {
        let mut t = self.transports.remove(idx);
        debug_assert_eq!(
            transition(t.state, Input::Drained),
            Some((State::Closed, Notice::Closed))
        );
        if let Some(slot) = t.fixed.take() {
            // A registered slot holds its own reference to the pipe end:
            // empty it, or the peer never sees this end close.
            let _ = self.ring.unregister_file(slot);
        }
        drop(t.fd.take());
        self.generations[idx] = self.generations[idx].wrapping_add(1);
        let mut unsent = Vec::new();
        let mut freed = Vec::new();
        match &mut t.role {
            Role::Sender(s) => {
                s.queue.take_bytes(&mut unsent);
                // The splice into this sender loses this destination; its
                // receiver reads again when none is left.
                if let Some(from) = s.relayed_from.take()
                    && let Some(r) = self.transports.get_mut(from.index as usize)
                    && let Role::Receiver { splice, .. } = &mut r.role
                {
                    if let Some(f) = splice {
                        f.to.retain(|d| *d != t.token);
                        if f.to.is_empty() {
                            *splice = None;
                        }
                    }
                    if splice.is_none() {
                        self.arm_read(from.index as usize);
                    } else {
                        self.arm_splice(from.index as usize);
                    }
                }
            }
            Role::Receiver {
                splice, decoder, ..
            } => {
                // Part of a frame read before the close: its bytes left the
                // pipe, so say how many rather than drop them unseen.
                // (A decoder that failed has had its error reported.)
                if let Some(decoder) = decoder
                    && !decoder.is_failed()
                    && decoder.buffered() > 0
                {
                    let source = FrameError::Truncated {
                        buffered: decoder.buffered(),
                    };
                    let (token, path) = (t.token, t.path.as_deref().map(Into::into));
                    let error = Error::Frame {
                        token,
                        path,
                        source,
                    };
                    self.pending.push(Item::Error {
                        token,
                        error: Box::new(error),
                    });
                }
                let dests: Vec<Token> = splice.take().map_or(Vec::new(), |s| s.to);
                for to in dests {
                    if let Some(r) = self.transports.get_mut(to.index as usize)
                        && r.token == to
                    {
                        r.sender().relayed_from = None;
                        self.pump(to.index as usize);
                        freed.push(to);
                    }
                }
            }
        }
        self.pending.push(Item::Closed {
            token: t.token,
            reason: t.reason,
            unsent,
        });
        // Destinations flushing may close now, after their source's Closed.
        for to in freed {
            if matches!(self.transports.get(to.index as usize), Some(d) if d.token == to) {
                self.maybe_flushed(to.index as usize);
            }
        }
    }
}
