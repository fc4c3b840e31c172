//! Buffers the kernel may read from or write into.
//!
//! [`Pool`] owns one anonymous mapping cut into equal buffers that are
//! registered with the ring once (for `READ_FIXED` / `WRITE_FIXED`). A
//! [`Buf`] is the sole owner of one buffer: a registered one when the pool has
//! one free, an owned heap buffer otherwise. Dropping a `Buf` gives its memory
//! back to the pool, so the steady state allocates nothing.
//!
//! Ownership is the safety argument: while an operation is in flight its
//! `Buf` lives in the ring's operation table and nobody else can reach it.

use std::cell::RefCell;
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;

/// Heap buffers kept for reuse when the registered pool runs dry.
const SPARE_HEAP_BUFFERS: usize = 64;

/// The registered buffer pool.
pub(crate) struct Pool {
    base: NonNull<u8>,
    buf_size: usize,
    count: u16,
    free: RefCell<Vec<u16>>,
    spare_heap: RefCell<Vec<Box<[u8]>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("buf_size", &self.buf_size)
            .field("count", &self.count)
            .field("free", &self.free.borrow().len())
            .finish()
    }
}

impl Pool {
    /// Maps `count` buffers of `buf_size` bytes (rounded up to whole pages).
    pub(crate) fn new(count: u16, buf_size: usize) -> io::Result<Rc<Pool>> {
        let page = 4096;
        let buf_size = buf_size.max(1).div_ceil(page) * page;
        let len = buf_size * usize::from(count.max(1));
        // SAFETY: an anonymous private mapping with no address hint touches no
        // existing memory; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Rc::new(Pool {
            base,
            buf_size,
            count,
            // Hand out low indices first: reverse so `pop` yields 0, 1, 2...
            free: RefCell::new((0..count).rev().collect()),
            spare_heap: RefCell::new(Vec::new()),
        }))
    }

    /// Size of every buffer, registered or heap.
    pub(crate) fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Registered buffers not in use right now.
    #[cfg(test)]
    pub(crate) fn free_count(&self) -> usize {
        self.free.borrow().len()
    }

    /// The iovecs to register with the ring, index `i` being buffer `i`.
    pub(crate) fn iovecs(&self) -> Vec<libc::iovec> {
        (0..usize::from(self.count))
            .map(|i| libc::iovec {
                iov_base: self.ptr(i as u16).cast(),
                iov_len: self.buf_size,
            })
            .collect()
    }

    fn ptr(&self, index: u16) -> *mut u8 {
        debug_assert!(index < self.count);
        // SAFETY: index < count, so the offset stays inside the mapping.
        unsafe { self.base.as_ptr().add(usize::from(index) * self.buf_size) }
    }

    /// A registered buffer if one is free.
    pub(crate) fn take_fixed(self: &Rc<Self>) -> Option<Buf> {
        let index = self.free.borrow_mut().pop()?;
        Some(Buf {
            pool: Rc::clone(self),
            mem: Mem::Fixed(index),
        })
    }

    /// A registered buffer, or a (recycled) heap buffer when none is free.
    pub(crate) fn take(self: &Rc<Self>) -> Buf {
        if let Some(buf) = self.take_fixed() {
            return buf;
        }
        let heap = self
            .spare_heap
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.buf_size].into_boxed_slice());
        Buf {
            pool: Rc::clone(self),
            mem: Mem::Heap(heap),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let len = self.buf_size * usize::from(self.count.max(1));
        // SAFETY: the mapping was made in `new` with this length, and no
        // `Buf` is alive (each holds an `Rc<Pool>`), so nothing points into it.
        // Registered pages are pinned by the kernel until the ring is gone.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), len);
        }
    }
}

enum Mem {
    Fixed(u16),
    Heap(Box<[u8]>),
}

/// Sole owner of one buffer; gives it back to the pool on drop.
pub(crate) struct Buf {
    pool: Rc<Pool>,
    mem: Mem,
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mem {
            Mem::Fixed(i) => write!(f, "Buf::Fixed({i})"),
            Mem::Heap(b) => write!(f, "Buf::Heap({})", b.len()),
        }
    }
}

impl Buf {
    /// The registered buffer index, for `READ_FIXED` / `WRITE_FIXED`.
    pub(crate) fn fixed_index(&self) -> Option<u16> {
        match self.mem {
            Mem::Fixed(i) => Some(i),
            Mem::Heap(_) => None,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.pool.buf_size
    }

    /// Pointer to the start, for building an SQE.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        match &mut self.mem {
            Mem::Fixed(i) => self.pool.ptr(*i),
            Mem::Heap(b) => b.as_mut_ptr(),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.mem {
            // SAFETY: this `Buf` is the only owner of buffer `i` (indices leave
            // the free list exactly once), the buffer lies inside the mapping,
            // and it is not in flight: in-flight buffers are held by the ring.
            Mem::Fixed(i) => unsafe {
                std::slice::from_raw_parts(self.pool.ptr(*i), self.pool.buf_size)
            },
            Mem::Heap(b) => b,
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.mem {
            // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
            Mem::Fixed(i) => unsafe {
                std::slice::from_raw_parts_mut(self.pool.ptr(*i), self.pool.buf_size)
            },
            Mem::Heap(b) => b,
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.mem, Mem::Heap(Box::default())) {
            Mem::Fixed(i) => self.pool.free.borrow_mut().push(i),
            Mem::Heap(b) if !b.is_empty() => {
                let mut spare = self.pool.spare_heap.borrow_mut();
                if spare.len() < SPARE_HEAP_BUFFERS {
                    spare.push(b);
                }
            }
            Mem::Heap(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_buffers_are_exclusive_and_recycled() {
        let pool = Pool::new(2, 100).unwrap();
        assert_eq!(pool.buf_size(), 4096);
        let mut a = pool.take_fixed().unwrap();
        let mut b = pool.take_fixed().unwrap();
        assert!(pool.take_fixed().is_none());
        assert_ne!(a.fixed_index(), b.fixed_index());
        a.as_mut_slice()[0] = 1;
        b.as_mut_slice()[0] = 2;
        assert_eq!((a.as_slice()[0], b.as_slice()[0]), (1, 2));
        // Pool empty: `take` falls back to the heap.
        let h = pool.take();
        assert!(h.fixed_index().is_none());
        assert_eq!(h.capacity(), 4096);
        drop(a);
        assert_eq!(pool.free_count(), 1);
        drop(h);
        assert_eq!(pool.spare_heap.borrow().len(), 1);
    }
}
