//! Single-shot reads: into a buffer the kernel picks from the provided
//! ring when data is there, or into a registered buffer while a receiver
//! streams, or, with neither, after a poll for data into whatever buffer
//! is free then.

use std::io;
use std::os::fd::AsRawFd;

use super::{Next, ReceiverSide};
use crate::buffers::SELECT_GROUP;
use crate::proactor::end::End;
use crate::proactor::io::Io;
use crate::proactor::route::Part;
use crate::proactor::{ECANCELED, ERESTARTSYS};
use crate::ring::{Completion, OpId};

/// A read of at least this many bytes marks a receiver as streaming: its
/// next read takes a registered buffer of its own if one is free (one
/// `READ_FIXED` can then empty a full pipe), where other reads share the
/// provided ring. A read that fills a whole buffer of that ring is one.
const STREAMING: usize = crate::buffers::SELECT_BUF_MAX;

impl ReceiverSide {
    /// Arms a single-shot read; `last` is the size of the read that just
    /// completed (0 if none).
    ///
    /// A single-shot read waits for data without a buffer: the kernel
    /// picks one from the provided ring when the data is there (a waiting
    /// read gives it back on -EAGAIN), so however many receivers wait, none
    /// holds memory, and the bytes land with no extra round trip. A
    /// receiver that streams (its last read was large) reads into a
    /// registered buffer while one is free. Without a provided ring: a
    /// registered buffer if one is free, else a poll for data first.
    pub(super) fn arm_single(
        &mut self,
        end: &mut End,
        io: &mut Io,
        provided: bool,
        last: usize,
    ) -> io::Result<()> {
        let (Some(file), Some(fd)) = (end.file(), end.fd.as_ref()) else {
            return Ok(());
        };
        let raw = fd.as_raw_fd();
        let streaming = last >= STREAMING.min(io.pool.provided_size(SELECT_GROUP).max(1));
        let fixed = match streaming || !provided {
            true => io.pool.take_fixed(),
            false => None,
        };
        if fixed.is_none() && provided {
            let len = io.pool.provided_size(SELECT_GROUP) as u32;
            let read = io.ring.read_select(file, len, end.data(Part::Read))?;
            self.armed_with(end, Some(read), None);
            return Ok(());
        }
        // No free registered buffer: wait for data without holding memory,
        // then read into whatever buffer is free at that moment.
        match fixed {
            Some(buf) => {
                let read = io.ring.read(file, buf, end.data(Part::Read))?;
                self.armed_with(end, Some(read), None);
            }
            None => {
                let poll = io
                    .ring
                    .poll_add(raw, libc::POLLIN as u32, end.data(Part::ReadPoll))?;
                self.armed_with(end, None, Some(poll));
            }
        }
        Ok(())
    }

    /// Reads into any buffer now: the poll said data is there.
    fn arm_read_now(&mut self, end: &mut End, io: &mut Io) -> io::Result<()> {
        let Some(file) = end.file() else {
            return Ok(());
        };
        if self.paused() {
            return Ok(());
        }
        let read = io.ring.read(file, io.pool.take(), end.data(Part::Read))?;
        self.armed_with(end, Some(read), None);
        Ok(())
    }

    /// Waits for data before reading, holding no buffer.
    fn arm_read_poll(&mut self, end: &mut End, io: &mut Io) -> io::Result<()> {
        let Some(fd) = end.fd.as_ref() else {
            return Ok(());
        };
        let poll = io.ring.poll_add(
            fd.as_raw_fd(),
            libc::POLLIN as u32,
            end.data(Part::ReadPoll),
        )?;
        self.armed_with(end, None, Some(poll));
        Ok(())
    }

    /// The poll for data of a receiver with no registered buffer free.
    pub(crate) fn on_read_poll(
        &mut self,
        end: &mut End,
        io: &mut Io,
        op: OpId,
        result: i32,
    ) -> Next {
        // A poll replaced by a newer one: that one decides.
        if self.poll != Some(op) {
            return Next::Done;
        }
        self.poll = None;
        if end.closing() {
            return Next::Done;
        }
        match result {
            // Cancelled by pause or relay: arming does what they want.
            ECANCELED => Next::Arm,
            r if r < 0 => Next::Fail(end.io_error("poll", r)),
            _ => unsubmitted(self.arm_read_now(end, io)),
        }
    }

    /// A single-shot READ completed.
    #[inline]
    pub(crate) fn on_read(&mut self, end: &mut End, io: &mut Io, c: Completion) -> Next {
        let result = c.result;
        // A buffer from the provided ring: taken first, so one dropped
        // unused goes back.
        let provided = c
            .provided
            .and_then(|bid| io.pool.take_provided(SELECT_GROUP, bid, result));
        let buf = c.buf.or(provided);
        self.read = None;
        match (result, buf) {
            // The kernel took these bytes out of the pipe: they reach the
            // user even if the read's cancel came too late (close, pause).
            (n, Some(buf)) if n > 0 => self.took(end, io, buf, n as usize, Some(n as usize)),
            (n, None) if n > 0 => Next::Fail(end.io_error("read (no buffer)", -libc::EIO)),
            _ if end.closing() => Next::Done,
            (0, _) => Next::Eof,
            // A provided ring that can grow gets the read again at once.
            (r, _) if r == -libc::ENOBUFS && io.pool.grow_provided(SELECT_GROUP) => Next::Arm,
            // EAGAIN: only a read of a non-blocking end that may not wait;
            // ENOBUFS: the provided ring is empty (its buffers are lent in
            // events until the next poll). Wait for data, then read into
            // whatever buffer is free.
            (r, _) if r == -libc::EAGAIN || r == -libc::ENOBUFS => {
                unsubmitted(self.arm_read_poll(end, io))
            }
            (r, _) if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => Next::Arm,
            (r, _) => Next::Fail(end.io_error("read", r)),
        }
    }
}

/// Nothing more to do, or the failure to submit.
fn unsubmitted(submitted: io::Result<()>) -> Next {
    match submitted {
        Ok(()) => Next::Done,
        Err(e) => Next::Unsubmitted(e),
    }
}
