//! Multishot reads from the provided buffer ring shared by all receivers,
//! with a hang-up poll standing in for the EOF a FIFO's multishot read
//! never reports.

use std::io;
use std::os::fd::AsRawFd;

use super::{Next, ReadPath, ReceiverSide};
use crate::buffers::PROVIDED_GROUP;
use crate::proactor::end::End;
use crate::proactor::io::Io;
use crate::proactor::route::Part;
use crate::proactor::{ECANCELED, ERESTARTSYS};
use crate::ring::{FileRef, OpId};
use crate::token::Receiver;

impl ReceiverSide {
    /// Arms what a multishot receiver lacks: its multishot read and its
    /// hang-up poll (a FIFO's multishot read never reports EOF).
    pub(super) fn arm_multishot(&mut self, end: &mut End, io: &mut Io) -> io::Result<()> {
        let Some(fd) = end.fd.as_ref() else {
            return Ok(());
        };
        let raw = fd.as_raw_fd();
        // Measured on Linux 6.18: READ_MULTISHOT on a registered (fixed)
        // file fails with -EBADFD; on the plain descriptor it works.
        let read = match self.read {
            None => Some(
                io.ring
                    .read_multishot(FileRef::Raw(raw), end.data(Part::ReadMulti)),
            ),
            Some(_) => None,
        };
        // Events 0: POLLHUP and POLLERR only, never data. Untracked, its
        // id is its user data: it waits while an old poll of the same arm
        // is in flight, and that one's completion arms it.
        let arm = !self.hups.current;
        let hup = match self.poll {
            None if self.hups.in_flight(arm) => {
                self.hups.waiting = true;
                None
            }
            None => Some(
                io.ring
                    .poll_add_untracked(raw, 0, end.data_arm(Part::HangUp, arm)),
            ),
            Some(_) => None,
        };
        if let Some(read) = read {
            self.read = Some(read?);
            end.inflight += 1;
        }
        if let Some(hup) = hup {
            self.poll = Some(hup?);
            self.hups.current = arm;
            end.inflight += 1;
        }
        Ok(())
    }

    /// The usual completion of the multishot read, handled in line: plain
    /// `Data` with more to follow. The buffer goes from the CQE to the
    /// batch by id, no `Buf` made only to be taken apart again. False for
    /// anything else (nothing done then): [`on_read_multi`](Self::on_read_multi)
    /// handles it.
    #[inline(always)]
    pub(crate) fn on_read_multi_data(
        &mut self,
        end: &mut End,
        io: &mut Io,
        result: i32,
        more: bool,
        provided: Option<u16>,
    ) -> bool {
        if !(more && result > 0 && self.feed.is_none()) {
            return false;
        }
        let Some(bid) = provided else {
            return false;
        };
        let Some(held) = io.pool.take_provided_len(PROVIDED_GROUP, bid, result) else {
            return false;
        };
        let n = result as usize;
        self.bytes_read += n as u64;
        io.push_provided(Receiver(end.token), PROVIDED_GROUP, bid, held, n);
        end.data_arrived(&mut io.pending);
        true
    }

    /// A completion of the multishot read (`result`, the provided buffer
    /// it filled if any) that [`on_read_multi_data`](Self::on_read_multi_data)
    /// did not take: more may follow if `more`.
    #[inline(never)]
    pub(crate) fn on_read_multi(
        &mut self,
        end: &mut End,
        io: &mut Io,
        result: i32,
        more: bool,
        provided: Option<u16>,
    ) -> Next {
        if !more {
            self.read = None;
        }
        // Take the kernel's buffer first: dropped unused, it goes back.
        let buf = provided.and_then(|bid| io.pool.take_provided(PROVIDED_GROUP, bid, result));
        match result {
            // Delivered even while closing: the bytes left the pipe.
            n if n > 0 => match buf {
                Some(buf) => self.took(end, io, buf, n as usize, (!more).then_some(0)),
                None => Next::Fail(end.io_error("read (no buffer)", -libc::EIO)),
            },
            _ if end.closing() => Next::Done,
            // EOF: only ever seen on an anonymous pipe.
            0 => Next::Eof,
            // The shared ring ran dry: it grows and the read goes on, or,
            // at its capacity, is re-armed once lent buffers come back.
            r if r == -libc::ENOBUFS && io.pool.grow_provided(PROVIDED_GROUP) => Next::Arm,
            r if r == -libc::ENOBUFS => Next::Starved,
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => Next::Arm,
            r => Next::Fail(end.io_error("read", r)),
        }
    }

    /// Every writer of a multishot receiver left. Drain what is left with
    /// single-shot reads, whose 0 is the EOF. `arm` is the arm of the poll
    /// that completed (see [`HangUps`]).
    pub(crate) fn on_hup(
        &mut self,
        end: &mut End,
        io: &mut Io,
        op: OpId,
        arm: bool,
        result: i32,
    ) -> Next {
        // The hang-up poll of a read end replaced at EOF: its arm is free
        // again, for a poll that waited for it.
        if self.path != ReadPath::Multishot || self.poll != Some(op) {
            // (Paused or spliced, it is armed when the receiver reads again.)
            let waited = self.hups.done(arm);
            let reads = self.path == ReadPath::Multishot
                && !self.spliced()
                && !self.paused
                && !end.closing();
            return match waited && reads {
                true => Next::Arm,
                false => Next::Done,
            };
        }
        self.poll = None;
        if end.closing() {
            return Next::Done;
        }
        // Cancelled by a `pause` that a `resume` has since undone: armed
        // again, or the read would never learn that the writer left. (A
        // paused receiver arms both at `resume`; a splice sees EOF itself.)
        if (result == ECANCELED || result == ERESTARTSYS) && !self.spliced() && !self.paused {
            return Next::Arm;
        }
        if result < 0 {
            return Next::Done;
        }
        self.path = ReadPath::Draining;
        match self.read {
            // Its last completion (-ECANCELED) arms the single-shot read.
            Some(op) => {
                end.cancel(&mut io.ring, [Some(op)]);
                Next::Done
            }
            None => Next::Arm,
        }
    }
}

/// A multishot receiver's hang-up polls. Each is untracked (its id is its
/// user data), so two in flight at once must differ: an EOF replaces the
/// read end with its poll still in flight (cancelled), and its
/// replacement takes the other arm. An arm is never used twice at once.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HangUps {
    /// The arm of the poll in flight, or of the last one.
    current: bool,
    /// Polls replaced at EOF and still in flight, by arm.
    replaced: [bool; 2],
    /// A poll waits for its arm to be free (see `arm_multishot`).
    waiting: bool,
}

impl HangUps {
    /// Whether a replaced poll of `arm` is still in flight.
    fn in_flight(&self, arm: bool) -> bool {
        self.replaced[usize::from(arm)]
    }

    /// The current poll was replaced at EOF; it stays in flight until its
    /// cancel completes it.
    pub(super) fn replace(&mut self) {
        self.replaced[usize::from(self.current)] = true;
    }

    /// A replaced poll of `arm` completed. Returns whether a poll waited
    /// for an arm to be free: arming again arms it, if its arm is free.
    fn done(&mut self, arm: bool) -> bool {
        self.replaced[usize::from(arm)] = false;
        std::mem::take(&mut self.waiting)
    }
}
