//! The operations the proactor submits, one builder each: reads (plain,
//! registered, multishot), writes, polls, splices and tees, cancels, the
//! eventfd read and the timeout. Each pushes one SQE (two for a linked
//! poll and splice) with the memory it points into held by the operation
//! table until its final completion.

use std::io;
use std::ops::Range;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use super::{FileRef, Held, Kind, OpId, Uring, UserData};
use crate::buffers::{Buf, PROVIDED_GROUP};

impl Uring {
    /// A multishot read into buffers the kernel takes from the provided
    /// ring: one SQE, then a completion per read until it ends (ring empty:
    /// -ENOBUFS; cancelled; EOF on an anonymous pipe, never on a FIFO).
    pub(crate) fn read_multishot(&mut self, file: FileRef, data: UserData) -> io::Result<OpId> {
        let sqe = with_file!(file, |fd| opcode::ReadMulti::new(fd, 0, PROVIDED_GROUP)
            .build());
        // One per receiver at most (the next is armed after this one's
        // final completion): no table entry for it.
        self.push_untracked(sqe, data)
    }

    /// Reads up to the buffer's capacity at the file's current position.
    pub(crate) fn read(&mut self, file: FileRef, mut buf: Buf, data: UserData) -> io::Result<OpId> {
        let fixed = self.pin(&buf);
        let ptr = buf.as_mut_ptr();
        let len = buf.capacity() as u32;
        let sqe = match fixed {
            Some(index) => {
                with_file!(file, |fd| opcode::ReadFixed::new(fd, ptr, len, index)
                    .offset(u64::MAX)
                    .build())
            }
            None => with_file!(file, |fd| opcode::Read::new(fd, ptr, len)
                .offset(u64::MAX)
                .build()),
        };
        self.push(sqe, data, Kind::Other, Held::Buf(buf))
    }

    /// Writes `buf[range]` at the file's current position. With `link`,
    /// the next SQE pushed starts only after this write completed in full
    /// (a short write or an error cancels it): a chain of writes in order.
    pub(crate) fn write(
        &mut self,
        file: FileRef,
        mut buf: Buf,
        range: Range<usize>,
        data: UserData,
        link: bool,
    ) -> io::Result<OpId> {
        assert!(range.start <= range.end && range.end <= buf.capacity());
        let fixed = self.pin(&buf);
        // SAFETY: range.start <= capacity, checked above.
        let ptr = unsafe { buf.as_mut_ptr().add(range.start) };
        let len = (range.end - range.start) as u32;
        let sqe = match fixed {
            Some(index) => {
                with_file!(file, |fd| opcode::WriteFixed::new(fd, ptr, len, index)
                    .offset(u64::MAX)
                    .build())
            }
            None => with_file!(file, |fd| opcode::Write::new(fd, ptr, len)
                .offset(u64::MAX)
                .build()),
        };
        let sqe = if link {
            sqe.flags(squeue::Flags::IO_LINK)
        } else {
            sqe
        };
        self.push(sqe, data, Kind::Write, Held::Buf(buf))
    }

    /// One-shot poll for `mask` (POLLERR and POLLHUP are always reported).
    pub(crate) fn poll_add(&mut self, fd: RawFd, mask: u32, data: UserData) -> io::Result<OpId> {
        let sqe = opcode::PollAdd::new(types::Fd(fd), mask).build();
        self.push(sqe, data, Kind::Other, Held::Nothing)
    }

    /// [`poll_add`](Self::poll_add) kept in no table (`push_untracked`):
    /// for a poll of which the caller has at most one in flight per
    /// `data` (a multishot receiver's hang-up poll, one per idle FIFO).
    pub(crate) fn poll_add_untracked(
        &mut self,
        fd: RawFd,
        mask: u32,
        data: UserData,
    ) -> io::Result<OpId> {
        let sqe = opcode::PollAdd::new(types::Fd(fd), mask).build();
        self.push_untracked(sqe, data)
    }

    /// Moves up to `len` bytes from pipe `from` to pipe `to` in the kernel,
    /// without blocking (`SPLICE_F_NONBLOCK`: -EAGAIN when the source is
    /// empty or the destination full). With `after_poll`, the splice is
    /// linked behind a POLL_ADD for POLLIN on that fd, so it only runs once
    /// data is there: a splice always runs on an io-wq worker, and one left
    /// waiting on an empty pipe would park that worker. The poll's
    /// completions carry `after_poll`'s user data, the splice's `data`.
    pub(crate) fn splice(
        &mut self,
        from: FileRef,
        to: FileRef,
        len: u32,
        after_poll: Option<(RawFd, UserData)>,
        data: UserData,
    ) -> io::Result<(Option<OpId>, OpId)> {
        let splice = splice_sqe(from, to, len);
        let Some((fd, poll_data)) = after_poll else {
            let splice = self.push(splice, data, Kind::Other, Held::Nothing)?;
            return Ok((None, splice));
        };
        // Both SQEs must go out in one submission for the link to hold.
        self.reserve(2)?;
        let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .flags(squeue::Flags::IO_LINK);
        let poll = self.push(poll, poll_data, Kind::Other, Held::Nothing)?;
        let splice = self.push(splice, data, Kind::Other, Held::Nothing)?;
        Ok((Some(poll), splice))
    }

    /// A link of a fan-out round: TEE (copy without
    /// consuming) or SPLICE (move) of `len` bytes from pipe `from` to pipe
    /// `to`, non-blocking. With `link`, the next SQE runs only if this one
    /// moved all `len`.
    pub(crate) fn tee_or_splice(
        &mut self,
        tee: bool,
        from: FileRef,
        to: FileRef,
        len: u32,
        link: bool,
        data: UserData,
    ) -> io::Result<OpId> {
        let sqe = if tee {
            let flags = libc::SPLICE_F_NONBLOCK;
            match (from, to) {
                (FileRef::Raw(i), FileRef::Raw(o)) => {
                    opcode::Tee::new(types::Fd(i), types::Fd(o), len)
                        .flags(flags)
                        .build()
                }
                (FileRef::Raw(i), FileRef::Fixed(o)) => {
                    opcode::Tee::new(types::Fd(i), types::Fixed(o), len)
                        .flags(flags)
                        .build()
                }
                (FileRef::Fixed(i), FileRef::Raw(o)) => {
                    opcode::Tee::new(types::Fixed(i), types::Fd(o), len)
                        .flags(flags)
                        .build()
                }
                (FileRef::Fixed(i), FileRef::Fixed(o)) => {
                    opcode::Tee::new(types::Fixed(i), types::Fixed(o), len)
                        .flags(flags)
                        .build()
                }
            }
        } else {
            splice_sqe(from, to, len)
        };
        let sqe = if link {
            sqe.flags(squeue::Flags::IO_LINK)
        } else {
            sqe
        };
        self.push(sqe, data, Kind::Other, Held::Nothing)
    }

    /// Asks the kernel to cancel `target`. Both complete: `target` with
    /// -ECANCELED (or -ERESTARTSYS if it ran in io-wq) unless it had finished.
    pub(crate) fn cancel(&mut self, target: OpId, data: UserData) -> io::Result<OpId> {
        let sqe = opcode::AsyncCancel::new(target.0.get()).build();
        self.push(sqe, data, Kind::Cancel, Held::Nothing)
    }

    /// An 8-byte READ of an eventfd's counter, into a word the operation
    /// owns until its final completion.
    pub(crate) fn read_counter(&mut self, fd: RawFd, data: UserData) -> io::Result<OpId> {
        let mut counter = Box::new(0u64);
        let ptr: *mut u8 = (&mut *counter as *mut u64).cast();
        let sqe = opcode::Read::new(types::Fd(fd), ptr, 8)
            .offset(u64::MAX)
            .build();
        // The word joins its operation; the heap address `ptr` names stays
        // put when the box moves.
        self.push(sqe, data, Kind::Other, Held::Counter { _word: counter })
    }

    /// Completes with -ETIME after `after`.
    pub(crate) fn timeout(&mut self, after: Duration, data: UserData) -> io::Result<OpId> {
        let ts = Box::new(
            types::Timespec::new()
                .sec(after.as_secs())
                .nsec(after.subsec_nanos()),
        );
        let sqe = opcode::Timeout::new(&*ts).build();
        self.push(sqe, data, Kind::Other, Held::Timespec { _ts: ts })
    }
}

/// A non-blocking SPLICE of up to `len` bytes between two pipes.
fn splice_sqe(from: FileRef, to: FileRef, len: u32) -> squeue::Entry {
    let splice = match (from, to) {
        (FileRef::Raw(i), FileRef::Raw(o)) => {
            opcode::Splice::new(types::Fd(i), -1, types::Fd(o), -1, len)
        }
        (FileRef::Raw(i), FileRef::Fixed(o)) => {
            opcode::Splice::new(types::Fd(i), -1, types::Fixed(o), -1, len)
        }
        (FileRef::Fixed(i), FileRef::Raw(o)) => {
            opcode::Splice::new(types::Fixed(i), -1, types::Fd(o), -1, len)
        }
        (FileRef::Fixed(i), FileRef::Fixed(o)) => {
            opcode::Splice::new(types::Fixed(i), -1, types::Fixed(o), -1, len)
        }
    };
    splice.flags(libc::SPLICE_F_NONBLOCK).build()
}
