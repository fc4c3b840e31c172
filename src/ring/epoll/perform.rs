//! What each operation does, and one try of it: the non-blocking
//! transfer, or the word to wait for its fd.

use std::ops::Range;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use super::{ERR, HUP, IN, OUT, Op, sys};
use crate::buffers::Pool;
use crate::ring::OpId;

/// What an operation does.
#[derive(Debug)]
pub(super) enum Work {
    /// `plain`: the fd is in the file table, so known non-blocking.
    Read {
        fd: RawFd,
        plain: bool,
    },
    Write {
        fd: RawFd,
        plain: bool,
        range: Range<usize>,
    },
    /// A read into a buffer taken from `group`'s provided ring once data
    /// is there (up to `len` bytes); a multishot read goes on after each.
    ReadProvided {
        fd: RawFd,
        plain: bool,
        group: u16,
        len: usize,
        multishot: bool,
    },
    Poll {
        fd: RawFd,
        mask: u32,
    },
    Splice {
        from: RawFd,
        to: RawFd,
        len: u32,
    },
    Tee {
        from: RawFd,
        to: RawFd,
        len: u32,
    },
    Cancel {
        target: OpId,
    },
    /// An 8-byte read of an eventfd's counter.
    Counter {
        fd: RawFd,
    },
    Timeout {
        after: Duration,
    },
    /// An operation on a file this backend cannot name (a registered slot).
    BadFile,
}

impl Work {
    /// The fd it waits on and for what, if it ever waits.
    pub(super) fn interest(&self) -> Option<(RawFd, u32)> {
        match *self {
            Work::Read { fd, .. } | Work::ReadProvided { fd, .. } | Work::Counter { fd } => {
                Some((fd, IN))
            }
            Work::Write { fd, .. } => Some((fd, OUT)),
            Work::Poll { fd, mask } => Some((fd, mask)),
            _ => None,
        }
    }
}

/// What one try of an operation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Wait for its fd.
    Park,
    /// Its final completion: the result, and the provided buffer it filled.
    Done(i32, Option<u16>),
    /// A multishot read's completion that is not its last.
    More(i32, u16),
}

/// Tries `op`'s transfer once. `revents` is what epoll reported (`None`:
/// the first try); `pool` has the provided rings.
pub(super) fn perform(op: &mut Op, revents: Option<u32>, pool: Option<&Rc<Pool>>) -> Step {
    if let Work::ReadProvided {
        fd,
        plain,
        group,
        len,
        multishot,
    } = op.work
    {
        if revents.is_some_and(|r| r & (IN | ERR | HUP) == 0) {
            return Step::Park;
        }
        let Some(pool) = pool else {
            return Step::Done(-libc::ENOBUFS, None);
        };
        return match pool.read_provided(group, len, |buf| sys::read(fd, buf, plain)) {
            (r, Some(bid)) if multishot => Step::More(r, bid),
            (r, Some(bid)) => Step::Done(r, Some(bid)),
            (r, None) if r == -libc::EAGAIN => Step::Park,
            (0, None) if !at_eof(fd) => Step::Park,
            (r, None) => Step::Done(r, None),
        };
    }
    match perform_plain(op, revents) {
        Some(result) => Step::Done(result, None),
        None => Step::Park,
    }
}

/// Whether a read of `fd` that returned 0 is its end, from the events
/// `fd` has just after that read.
fn at_eof(fd: RawFd) -> bool {
    eof_after_empty_read(sys::poll_now(fd, IN))
}

/// Whether a read that returned 0 is the end, given the events its fd has
/// just after it. A writer that came and went leaves POLLHUP; a FIFO that
/// never had a writer polls quiet, and its read waits for one, as
/// io_uring's does. POLLIN means a writer came between the read and the
/// poll and wrote: not the end, and the read waits (parked, its re-arm
/// finds the data at once).
pub(super) fn eof_after_empty_read(revents: u32) -> bool {
    revents & IN == 0 && revents & (HUP | ERR) != 0
}

/// Tries the transfer of an operation with no provided buffer: its
/// result, or `None` to wait for its fd.
fn perform_plain(op: &mut Op, revents: Option<u32>) -> Option<i32> {
    let ready = |want: u32| revents.is_none_or(|r| r & (want | ERR | HUP) != 0);
    match op.work {
        Work::Read { fd, plain } => {
            if !ready(IN) {
                return None;
            }
            let buf = op.buf.as_mut()?;
            match sys::read(fd, buf.as_mut_slice(), plain) {
                r if r == -libc::EAGAIN => None,
                0 => at_eof(fd).then_some(0),
                r => Some(r),
            }
        }
        Work::Counter { fd } => {
            if !ready(IN) {
                return None;
            }
            let mut word = [0u8; 8];
            match sys::read(fd, &mut word, false) {
                r if r == -libc::EAGAIN => None,
                r => Some(r),
            }
        }
        Work::Write {
            fd,
            plain,
            ref range,
        } => {
            if !ready(OUT) {
                return None;
            }
            let buf = op.buf.as_ref()?;
            let bytes = buf.as_slice().get(range.clone())?;
            match sys::write(fd, bytes, plain) {
                r if r == -libc::EAGAIN => None,
                r => Some(r),
            }
        }
        // Epoll says when: a first try only arms it.
        Work::Poll { mask, .. } => revents
            .map(|r| r & (mask | ERR | HUP))
            .filter(|&hit| hit != 0)
            .map(|hit| hit as i32),
        Work::Splice { from, to, len } => Some(sys::splice(from, to, len)),
        Work::Tee { from, to, len } => Some(sys::tee(from, to, len)),
        Work::BadFile => Some(-libc::EBADF),
        // Started by `Epoll::start`, never performed.
        Work::Cancel { .. } | Work::Timeout { .. } | Work::ReadProvided { .. } => {
            Some(-libc::EINVAL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_read_is_the_end_only_when_the_writer_left_nothing() {
        // A writer came and went, the pipe empty: the end.
        assert!(eof_after_empty_read(HUP));
        assert!(eof_after_empty_read(ERR));
        // Never a writer: the read waits for one.
        assert!(!eof_after_empty_read(0));
        // A writer came between the read and the poll and wrote (and
        // perhaps left already): its bytes come first.
        assert!(!eof_after_empty_read(IN));
        assert!(!eof_after_empty_read(IN | HUP));
    }
}
