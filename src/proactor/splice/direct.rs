//! The strategy of one destination, by default: once a poll on the ring
//! says the source has data, this thread calls non-blocking `splice(2)`
//! until a pipe is empty or full, up to [`DIRECT_BUDGET`]. No io-wq worker
//! and no hand-off.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::SpliceFFlags;

use super::SPLICE_LEN;

/// Most bytes one direct splice turn moves before the relay waits on the
/// ring again, so one busy relay does not hold up the others.
const DIRECT_BUDGET: usize = 1 << 20;

/// Why a turn of direct splicing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proactor) enum Stop {
    /// `splice(2)` returned 0: the source's writers are gone.
    Eof,
    /// The budget is spent: wait on the ring (the poll completes at once
    /// while data is there), so other transports get their turn.
    Budget,
    /// A negative errno: EAGAIN (a pipe empty or full), EPIPE (the
    /// destination's reader left), or an error.
    Failed(i32),
}

/// Moves what is there from `src` to `dst`. Returns the bytes moved and
/// why it stopped.
pub(in crate::proactor) fn splice(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> (usize, Stop) {
    let mut moved = 0usize;
    loop {
        match nix::fcntl::splice(
            src,
            None,
            dst,
            None,
            SPLICE_LEN as usize,
            SpliceFFlags::SPLICE_F_NONBLOCK,
        ) {
            Ok(0) => return (moved, Stop::Eof),
            Ok(n) => {
                moved += n;
                if moved >= DIRECT_BUDGET {
                    return (moved, Stop::Budget);
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => return (moved, Stop::Failed(-(e as i32))),
        }
    }
}
