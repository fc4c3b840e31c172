//! The provided buffer rings on the ring's side: their registration and
//! single-shot reads that take their buffer from one; and the default
//! pool's registration, deferred to its first use.

use std::io;
use std::rc::Rc;

use io_uring::{opcode, squeue, types};

use super::{FileRef, Held, Kind, OpId, Uring, UserData};
use crate::buffers::{Buf, Pool, SELECT_GROUP};

/// Registers the pool's provided rings. False if the pool has none.
///
/// Not incremental (`IOU_PBUF_RING_INC`): a completion from an incremental
/// ring names its buffer but not where in it the bytes lie, so pieces can
/// only be told apart if completions arrive in the order the kernel
/// committed them, and on Linux 6.18 they do not. A read the kernel issues
/// from its worker threads commits the whole rest of the buffer when it
/// picks it (`io_should_commit`: unlocked issue), before reading, and posts
/// its completion later without `IORING_CQE_F_BUF_MORE`; reads issued
/// inline commit only what they read, at completion. Traced with
/// persistent receivers whose writers come and go (tests/multiplexer.rs,
/// four reconnecting writers): a completion with `BUF_MORE` for a buffer
/// arrived after the worker's completion that had already ended that
/// buffer, so a piece with bytes in that position would start at the
/// wrong offset. Each read therefore takes a whole buffer.
pub(super) fn register_all(
    submitter: &io_uring::Submitter<'_>,
    pool: &Rc<Pool>,
) -> io::Result<bool> {
    let mut any = false;
    for (group, addr, entries) in pool.provided_rings() {
        // SAFETY: the entries and buffers live in the pool's mapping, which
        // the ring keeps (`memory`) until after it has closed the io_uring
        // fd, which ends the registration (see `Ring::drop`).
        unsafe { submitter.register_buf_ring_with_flags(addr, entries, group, 0)? };
        any = true;
    }
    Ok(any)
}

impl Uring {
    /// Registers `buf`'s pool now if its registration was deferred
    /// ([`Pool::register_later`]) and this is its first use. Refused (the
    /// user's locked memory is spent), the pool works unregistered, as a
    /// default pool does at build.
    pub(super) fn register_on_first_use(&mut self, buf: &Buf) {
        if !self.pool_registered && buf.fixed_index().is_some() && buf.pool().take_register_later()
        {
            let _ = self.register_pool(&Rc::clone(buf.pool()), false);
        }
    }

    /// A single-shot READ of up to `len` bytes into a buffer the kernel
    /// picks from the provided ring of [`SELECT_GROUP`] when data is there: a read that waits
    /// (on an empty pipe) holds no buffer, the kernel takes it back on
    /// -EAGAIN. The completion names the buffer; -ENOBUFS when the ring is
    /// empty.
    pub(crate) fn read_select(
        &mut self,
        file: FileRef,
        len: u32,
        data: UserData,
    ) -> io::Result<OpId> {
        let sqe = with_file!(file, |fd| opcode::Read::new(fd, std::ptr::null_mut(), len)
            .offset(u64::MAX)
            .buf_group(SELECT_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT));
        self.push(sqe, data, Kind::Other, Held::Nothing)
    }
}
