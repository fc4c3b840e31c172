//! Relays: a receiver's bytes moved into one sender by SPLICE, linked
//! behind a poll for data so no io-wq worker ever waits.

use std::os::fd::{AsFd, AsRawFd};

use super::registry::Role;
use super::{ECANCELED, ERESTARTSYS, Proactor};
use crate::event::Item;
use crate::ring::OpId;
use crate::ring::Purpose;
use crate::token::{Receiver, Sender, Token};
use crate::transport::{Input, State};

/// A receiver's bytes moved to a sender by splice(2), never through
/// user space.
#[derive(Debug)]
pub(super) struct Relay {
    pub(super) to: Token,
    pub(super) poll: Option<OpId>,
    pub(super) splice: Option<OpId>,
}

/// Bytes one splice may move; the pipes' contents bound it anyway.
pub(super) const SPLICE_LEN: u32 = 1 << 20;

impl Proactor {
    /// Submits the relay's next splice if both ends are ready: the receiver
    /// open and not paused or reading, the sender open with nothing of its
    /// own queued or being written.
    pub(super) fn arm_relay(&mut self, rx: usize, poll_first: bool) {
        let t = &self.transports[rx];
        if t.state == State::Closing {
            return;
        }
        let Role::Receiver {
            relay: Some(relay),
            paused: false,
            read: None,
            poll: None,
            ..
        } = &t.role
        else {
            return;
        };
        let (Some(from), Some(fd)) = (t.file(), t.fd.as_ref()) else {
            return;
        };
        if relay.poll.is_some() || relay.splice.is_some() {
            return;
        }
        let (raw, owner, to) = (fd.as_raw_fd(), t.token.to_owner(), relay.to);
        let Some(tt) = self.transports.get(to.index as usize) else {
            return;
        };
        let Role::Sender(side) = &tt.role else { return };
        let busy = side.writing.is_some() || side.poll.is_some() || !side.queue.is_empty();
        let (true, Some(to_file), false) = (tt.state == State::Open, tt.file(), busy) else {
            return;
        };
        match self
            .ring
            .splice(from, to_file, SPLICE_LEN, poll_first.then_some(raw), owner)
        {
            Ok((poll, splice)) => {
                let t = &mut self.transports[rx];
                t.inflight += 1 + u32::from(poll.is_some());
                if let Role::Receiver {
                    relay: Some(relay), ..
                } = &mut t.role
                {
                    relay.poll = poll;
                    relay.splice = Some(splice);
                }
            }
            Err(e) => self.submit_failed(rx, e),
        }
    }

    pub(super) fn relay_of(&mut self, rx: usize) -> Option<&mut Relay> {
        match &mut self.transports[rx].role {
            Role::Receiver { relay: Some(r), .. } => Some(r),
            _ => None,
        }
    }

    pub(super) fn on_splice(&mut self, rx: usize, result: i32) {
        let Some(relay) = self.relay_of(rx) else {
            return;
        };
        relay.splice = None;
        let to = relay.to;
        let tx = to.index as usize;
        let closing = self.transports[rx].state == State::Closing;
        match result {
            // Counted and reported even while closing: the bytes moved.
            n if n > 0 => {
                let n = n as u64;
                if let Role::Receiver { bytes_read, .. } = &mut self.transports[rx].role {
                    *bytes_read += n;
                }
                let side = self.transports[tx].sender();
                side.queue.queued_total += n;
                side.queue.accepted_total += n;
                self.pending.push(Item::Relayed {
                    from: Receiver(self.transports[rx].token),
                    to: Sender(to),
                    bytes: n as usize,
                });
                self.apply(rx, Input::PeerReady);
                self.apply(tx, Input::PeerReady);
                // More is likely there: splice again without polling first.
                self.arm_relay(rx, false);
            }
            _ if closing => {}
            0 => self.on_eof(rx),
            r if r == -libc::EAGAIN => {
                let in_pipe = self.transports[rx]
                    .fd
                    .as_ref()
                    .map_or(0, |fd| crate::fifo::pipe_bytes(fd.as_fd()).unwrap_or(0));
                if in_pipe == 0 {
                    return self.arm_relay(rx, true);
                }
                // The destination is full: wait until it has room.
                let Some(fd) = self.transports[tx].fd.as_ref() else {
                    return;
                };
                let owner = self.transports[rx].token.to_owner();
                let poll = self.ring.poll_add(
                    fd.as_raw_fd(),
                    libc::POLLOUT as u32,
                    owner,
                    Purpose::RelayPoll,
                );
                if let Some(op) = self.track(rx, poll)
                    && let Some(relay) = self.relay_of(rx)
                {
                    relay.poll = Some(op);
                }
            }
            // The reader of the destination left; splice consumed nothing,
            // so the bytes wait in the source pipe. Resumes on its return.
            r if r == -libc::EPIPE => {
                if self.transports[tx].state != State::Closing {
                    self.on_reader_gone(tx);
                }
            }
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => {
                self.arm_relay(rx, true)
            }
            r => self.io_fail(rx, "splice", r),
        }
    }

    /// A relay's poll completed: linked to a splice (which completes on its
    /// own), or waiting for room in the destination.
    pub(super) fn on_relay_poll(&mut self, rx: usize, op: OpId, result: i32) {
        let Some(relay) = self.relay_of(rx) else {
            return;
        };
        if relay.poll != Some(op) {
            return;
        }
        relay.poll = None;
        if relay.splice.is_none() && result >= 0 {
            self.arm_relay(rx, false);
        }
    }

    /// Relay operations of the receiver relaying into sender `tx`.
    pub(super) fn relay_ops_of_sender(&self, tx: usize) -> Vec<(usize, OpId)> {
        let Role::Sender(side) = &self.transports[tx].role else {
            return Vec::new();
        };
        let Some(from) = side.relayed_from else {
            return Vec::new();
        };
        let rx = from.index as usize;
        match self.transports.get(rx).map(|t| &t.role) {
            Some(Role::Receiver { relay: Some(r), .. }) => [r.poll, r.splice]
                .into_iter()
                .flatten()
                .map(|op| (rx, op))
                .collect(),
            // A round uses every destination's fd.
            Some(Role::Receiver { fan: Some(f), .. }) => f.ops().map(|op| (rx, op)).collect(),
            _ => Vec::new(),
        }
    }
}
