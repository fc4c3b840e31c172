//! The strategy of one destination with `Builder::splice_direct(false)`:
//! an io_uring SPLICE of up to [`SPLICE_LEN`], which the kernel always
//! runs on an io-wq worker, linked behind a POLL for data so that no
//! worker waits on an empty pipe; while data keeps coming it goes out
//! again without the poll.

use std::io;
use std::os::fd::RawFd;

use super::SPLICE_LEN;
use crate::ring::{FileRef, OpId, Ring, UserData};

/// Submits a SPLICE from `from` to `to`, behind a poll for data on the
/// source's fd `after_poll` when given. Returns the poll and the splice.
pub(in crate::proactor) fn submit(
    ring: &mut Ring,
    from: FileRef,
    to: FileRef,
    after_poll: Option<(RawFd, UserData)>,
    data: UserData,
) -> io::Result<(Option<OpId>, OpId)> {
    ring.splice(from, to, SPLICE_LEN, after_poll, data)
}
