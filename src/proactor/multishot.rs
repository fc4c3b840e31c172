//! Multishot reads from the provided buffer ring shared by all receivers,
//! with a hang-up poll standing in for the EOF a FIFO's multishot read
//! never reports.

use std::os::fd::AsRawFd;

use super::registry::{ReadPath, Role};
use super::route::{self, Part};
use super::{ECANCELED, ERESTARTSYS, Proactor};
use crate::buffers::PROVIDED_GROUP;
use crate::ring::{Completion, FileRef, OpId};
use crate::transport::State;

impl Proactor {
    /// Arms what a multishot receiver lacks: its multishot read and its
    /// hang-up poll (a FIFO's multishot read never reports EOF).
    pub(super) fn arm_multishot(&mut self, idx: usize) {
        let t = &self.transports[idx];
        let Some(fd) = t.fd.as_ref() else {
            return;
        };
        let (raw, token) = (fd.as_raw_fd(), t.token);
        let Role::Receiver {
            read,
            path: ReadPath::Multishot { hup },
            ..
        } = &t.role
        else {
            return;
        };
        // Measured on Linux 6.18: READ_MULTISHOT on a registered (fixed)
        // file fails with -EBADFD; on the plain descriptor it works.
        let read = match read {
            None => Some(
                self.ring
                    .read_multishot(FileRef::Raw(raw), route::data(token, Part::ReadMulti)),
            ),
            Some(_) => None,
        };
        // Events 0: POLLHUP and POLLERR only, never data.
        let hup = match hup {
            None => Some(self.ring.poll_add(raw, 0, route::data(token, Part::HangUp))),
            Some(_) => None,
        };
        for (slot, op) in [(0, read), (1, hup)] {
            match op {
                None => {}
                Some(Ok(op)) => {
                    let t = &mut self.transports[idx];
                    t.inflight += 1;
                    if let Role::Receiver { read, path, .. } = &mut t.role {
                        match (slot, path) {
                            (0, _) => *read = Some(op),
                            (_, ReadPath::Multishot { hup }) => *hup = Some(op),
                            _ => {}
                        }
                    }
                }
                Some(Err(e)) => {
                    return self.submit_failed(idx, e);
                }
            }
        }
    }

    pub(super) fn on_read_multi(&mut self, idx: usize, c: &Completion) {
        // Take the kernel's buffer first: dropped unused, it goes back.
        let buf = c.provided.and_then(|bid| {
            self.pool
                .take_provided(PROVIDED_GROUP, bid, c.result, c.buf_more)
        });
        let t = &mut self.transports[idx];
        let token = t.token;
        if let (false, Role::Receiver { read, .. }) = (c.more, &mut t.role) {
            *read = None;
        }
        let closing = t.state == State::Closing;
        match c.result {
            // Delivered even while closing: the bytes left the pipe.
            n if n > 0 => {
                let Some(buf) = buf else {
                    return self.io_fail(idx, "read (no buffer)", -libc::EIO);
                };
                self.deliver(idx, buf, n as usize);
                if !c.more {
                    self.arm_read(idx);
                }
            }
            _ if closing => {}
            // EOF: only ever seen on an anonymous pipe.
            0 => self.on_eof(idx),
            // The shared ring ran dry: re-armed once buffers come back.
            r if r == -libc::ENOBUFS => self.starved.push(token),
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => self.arm_read(idx),
            r => self.io_fail(idx, "read", r),
        }
    }

    /// Every writer of a multishot receiver left. Drain what is left with
    /// single-shot reads, whose 0 is the EOF.
    pub(super) fn on_hup(&mut self, idx: usize, op: OpId, result: i32) {
        let t = &mut self.transports[idx];
        let Role::Receiver {
            path: path @ ReadPath::Multishot { .. },
            read,
            ..
        } = &mut t.role
        else {
            return;
        };
        // The hang-up poll of a read end replaced at EOF: nothing to do.
        if path.hup() != Some(op) {
            return;
        }
        *path = ReadPath::Multishot { hup: None };
        if t.state == State::Closing || result < 0 {
            return;
        }
        *path = ReadPath::Draining;
        match *read {
            // Its last completion (-ECANCELED) arms the single-shot read.
            Some(op) => self.cancel(idx, [Some(op)]),
            None => self.arm_read(idx),
        }
    }
}
