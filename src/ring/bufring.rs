//! The provided buffer rings on the ring's side: their registration and
//! single-shot reads that take their buffer from one; and the default
//! pool's registration, deferred to each buffer's first use.

use std::io;
use std::rc::Rc;

use io_uring::{opcode, squeue, types};

use super::{FileRef, Held, Kind, OpId, Pinned, Uring, UserData};
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
    /// The registered index a fixed operation on `buf` may name, pinning
    /// it first if this is its first use under a deferred registration
    /// ([`Pool::register_later`]): the first use registers a sparse table
    /// of the pool's size, and each buffer is registered into its slot when
    /// first used, so only the buffers a proactor really uses are pinned (a
    /// router of three senders pins a few, not the whole pool). `None`: use
    /// plain `READ` / `WRITE` (a heap buffer, or the kernel refused to pin:
    /// the user's locked memory is spent).
    pub(super) fn pin(&mut self, buf: &Buf) -> Option<u16> {
        let index = buf.fixed_index()?;
        if matches!(self.pinned, Pinned::Nothing) {
            if !buf.pool().take_register_later() {
                return None;
            }
            let slots = buf.pool().fixed_total();
            self.uring
                .submitter()
                .register_buffers_sparse(u32::try_from(slots).ok()?)
                .ok()?;
            self.pinned = Pinned::Sparse(vec![false; slots].into_boxed_slice());
            self.memory = Some(Rc::clone(buf.pool()));
        }
        let Pinned::Sparse(pinned) = &mut self.pinned else {
            return Some(index);
        };
        let slot = pinned.get_mut(usize::from(index))?;
        if !*slot {
            let iovec = buf.pool().iovec(index);
            // SAFETY: the iovec describes buffer `index` of the pool's
            // mapping, which stays mapped until the ring is closed: the
            // ring keeps the pool (`memory`) and drops it only after
            // closing the io_uring fd (see `Drop`).
            let done = unsafe {
                self.uring
                    .submitter()
                    .register_buffers_update(u32::from(index), &[iovec], None)
            };
            *slot = done.is_ok();
        }
        slot.then_some(index)
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
