//! The provided buffer ring on the ring's side: its registration
//! (incremental where the kernel has it) and single-shot reads that take
//! their buffer from it; and the default pool's registration, deferred to
//! its first use.

use std::io;
use std::rc::Rc;

use io_uring::{opcode, squeue, types};

use super::{FileRef, OpId, Purpose, Ring};
use crate::buffers::{Buf, Pool, SELECT_GROUP};

/// `IOU_PBUF_RING_INC` (Linux 6.12): buffers consumed in pieces.
const IOU_PBUF_RING_INC: u16 = 2;

/// Registers the pool's provided rings, each incremental if the kernel
/// takes it, plain otherwise (older kernels refuse the flag with -EINVAL),
/// and tells the pool which. False if the pool has none.
pub(super) fn register_all(
    submitter: &io_uring::Submitter<'_>,
    pool: &Rc<Pool>,
) -> io::Result<bool> {
    let mut any = false;
    for (group, addr, entries) in pool.provided_rings() {
        register(submitter, pool, group, addr, entries)?;
        any = true;
    }
    Ok(any)
}

fn register(
    submitter: &io_uring::Submitter<'_>,
    pool: &Rc<Pool>,
    group: u16,
    addr: u64,
    entries: u16,
) -> io::Result<()> {
    for flags in [IOU_PBUF_RING_INC, 0] {
        // SAFETY: the entries and buffers live in the pool's mapping, which
        // the ring keeps (`memory`) until after it has closed the io_uring
        // fd, which ends the registration (see `Ring::drop`).
        let res = unsafe { submitter.register_buf_ring_with_flags(addr, entries, group, flags) };
        match res {
            Ok(()) => {
                pool.set_incremental(group, flags == IOU_PBUF_RING_INC);
                return Ok(());
            }
            Err(e) if flags != 0 && e.raw_os_error() == Some(libc::EINVAL) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

impl Ring {
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
    pub(crate) fn read_select(&mut self, file: FileRef, len: u32, owner: u64) -> io::Result<OpId> {
        let sqe = with_file!(file, |fd| opcode::Read::new(fd, std::ptr::null_mut(), len)
            .offset(u64::MAX)
            .buf_group(SELECT_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT));
        self.push(sqe, owner, Purpose::Read, None, None)
    }
}
