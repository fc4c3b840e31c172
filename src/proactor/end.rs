//! What every transport is, receiver or sender: a pipe end with a handle,
//! a state, its fd and name, the operations it has in flight and its
//! counters. The parts of a transport (`receiver`, `sender`) act on their
//! own state and on this.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use super::counters::Counters;
use super::name::Name;
use super::route::{self, Part};
use crate::error::Error;
use crate::event::{CloseReason, Item};
use crate::ring::{FileRef, OpId, Ring, UserData};
use crate::token::{Sender, Token};
use crate::transport::{Input, Notice, State, transition};

#[derive(Debug)]
pub(super) struct End {
    pub(super) token: Token,
    pub(super) state: State,
    pub(super) fd: Option<OwnedFd>,
    pub(super) fixed: FixedSlot,
    /// The FIFO opened with `O_PATH`, for reopening it: a sender's new
    /// write end, a persistent receiver's new read end.
    pub(super) anchor: Option<OwnedFd>,
    /// The FIFO's path, or the label given with `Proactor::set_label`:
    /// what errors name the transport by.
    pub(super) path: Option<Name>,
    /// Ring operations owned by this transport (cancels included).
    pub(super) inflight: u32,
    pub(super) reason: CloseReason,
    /// Frames, reconnects, waiting time, queue high water (see `Stats`).
    pub(super) counters: Counters,
}

/// A transport's registered-file slot, if any, in 4 bytes (an
/// `Option<u32>` takes 8, in every transport): the slot plus one, 0 for
/// none. Slots are below the ring's file table size, a `u32`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct FixedSlot(Option<NonZeroU32>);

impl FixedSlot {
    pub(super) fn new(slot: Option<u32>) -> FixedSlot {
        FixedSlot(slot.map(|s| NonZeroU32::MIN.saturating_add(s)))
    }

    pub(super) fn get(self) -> Option<u32> {
        self.0.map(|n| n.get() - 1)
    }

    pub(super) fn take(&mut self) -> Option<u32> {
        self.0.take().map(|n| n.get() - 1)
    }
}

impl End {
    pub(super) fn new(
        token: Token,
        state: State,
        anchor: Option<OwnedFd>,
        path: Option<Name>,
    ) -> End {
        End {
            token,
            state,
            fd: None,
            fixed: FixedSlot::default(),
            anchor,
            path,
            inflight: 0,
            reason: CloseReason::Requested,
            counters: Counters::new(state),
        }
    }

    /// The file as operations name it: its registered slot, else its fd.
    pub(super) fn file(&self) -> Option<FileRef> {
        match (self.fixed.get(), &self.fd) {
            (Some(slot), _) => Some(FileRef::Fixed(slot)),
            (None, Some(fd)) => Some(FileRef::Raw(fd.as_raw_fd())),
            (None, None) => None,
        }
    }

    pub(super) fn closing(&self) -> bool {
        self.state == State::Closing
    }

    /// The user data of an operation of this transport for `part`.
    #[inline]
    pub(super) fn data(&self, part: Part) -> UserData {
        route::data(self.token, part)
    }

    /// The user data of arm `arm` of an operation of this transport for
    /// `part` (see `route::data_arm`).
    #[inline]
    pub(super) fn data_arm(&self, part: Part, arm: bool) -> UserData {
        route::data_arm(self.token, part, arm)
    }

    /// Counts a just-submitted operation as in flight.
    #[inline]
    pub(super) fn track(&mut self, submitted: io::Result<OpId>) -> io::Result<OpId> {
        if submitted.is_ok() {
            self.inflight += 1;
        }
        submitted
    }

    /// Asks the kernel to cancel `ops`. Each cancel is an operation of
    /// this transport too, so its close waits for them.
    pub(super) fn cancel(&mut self, ring: &mut Ring, ops: impl IntoIterator<Item = Option<OpId>>) {
        let data = self.data(Part::Cancel);
        for op in ops.into_iter().flatten() {
            if ring.cancel(op, data).is_ok() {
                self.inflight += 1;
            }
        }
    }

    /// Moves the state machine by `input`, reporting what the transition
    /// says. An input the state cannot take changes nothing.
    pub(super) fn apply(&mut self, input: Input, pending: &mut Vec<Item>) {
        let Some((next, notice)) = transition(self.state, input) else {
            return;
        };
        self.counters.state_change(self.state, next);
        self.state = next;
        let token = self.token;
        match notice {
            Notice::None => {}
            Notice::Opened => pending.push(Item::Opened(Sender(token))),
            Notice::PeerBack => pending.push(Item::PeerBack(token)),
            Notice::PeerGone => pending.push(Item::PeerGone(token)),
            // Reached only by `finish_close`, which reports `Closed` with
            // the unsent bytes itself.
            Notice::Closed => {}
        }
    }

    /// Data arrived: an open transport stays open, so the state machine
    /// is asked only when there is a change to make (a peer back, say).
    #[inline]
    pub(super) fn data_arrived(&mut self, pending: &mut Vec<Item>) {
        if self.state != State::Open {
            self.apply(Input::PeerReady, pending);
        }
    }

    /// Takes `fd` as this transport's file, registered if a slot is free.
    pub(super) fn install_fd(&mut self, ring: &mut Ring, fd: OwnedFd) {
        self.fixed = FixedSlot::new(ring.register_file(fd.as_raw_fd()));
        self.fd = Some(fd);
    }

    /// Lets go of the file: its registered slot first (a slot holds its
    /// own reference to the pipe end: until it is emptied the peer never
    /// sees this end close), then the fd.
    pub(super) fn release_fd(&mut self, ring: &mut Ring) {
        if let Some(slot) = self.fixed.take() {
            let _ = ring.unregister_file(slot);
        }
        drop(self.fd.take());
    }

    /// The error of an operation `op` that failed with `result`.
    pub(super) fn io_error(&self, op: &'static str, result: i32) -> Error {
        Error::Io {
            token: self.token,
            path: self.name(),
            op,
            source: io::Error::from_raw_os_error(-result),
        }
    }

    /// The FIFO's path or label, for an error (empty for an unlabelled
    /// adopted fd).
    pub(super) fn path_buf(&self) -> PathBuf {
        self.name().unwrap_or_default()
    }

    /// The FIFO's path or label, for an error that names the transport.
    pub(super) fn name(&self) -> Option<PathBuf> {
        self.path.as_ref().map(Name::to_path_buf)
    }

    pub(super) fn describe(&self) -> String {
        match (&self.path, &self.fd) {
            (Some(p), _) => p.to_path_buf().display().to_string(),
            (None, Some(fd)) => format!("fd {}", fd.as_raw_fd()),
            (None, None) => format!("{:?}", self.token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FixedSlot;

    #[test]
    fn a_fixed_slot_round_trips() {
        for slot in [None, Some(0), Some(7), Some(u32::MAX - 1)] {
            let mut f = FixedSlot::new(slot);
            assert_eq!(f.get(), slot);
            assert_eq!(f.take(), slot);
            assert_eq!(f.get(), None);
        }
    }
}
