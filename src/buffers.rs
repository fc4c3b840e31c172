//! Buffers the kernel may read from or write into.
//!
//! [`Pool`] owns one anonymous mapping cut into equal buffers that are
//! registered with the ring once (for `READ_FIXED` / `WRITE_FIXED`), or used
//! unregistered (plain `READ` / `WRITE`) when the user's locked-memory budget
//! has no room for them. A [`Buf`] is the sole owner of one buffer: a pool
//! one when the pool has one free, an owned heap buffer otherwise. Dropping a
//! `Buf` gives its memory back to the pool, so the steady state allocates
//! nothing.
//!
//! Registered buffers, the ring's own queues and the provided ring's entries
//! are all charged to `RLIMIT_MEMLOCK` for users without `CAP_IPC_LOCK`
//! (measured on 6.18: see [`Memlock`]); [`auto_count`] sizes the default
//! pool to a share of it.
//!
//! Ownership is the safety argument: while an operation is in flight its
//! `Buf` lives in the ring's operation table and nobody else can reach it.

mod lent;
mod memlock;
mod slots;

pub(crate) use lent::Lent;
pub(crate) use slots::{At, Slots, Taker};

pub(crate) use memlock::{Memlock, auto_count, is_memlock_error, provided_locked_bytes};

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;

/// Heap buffers kept for reuse when the registered pool runs dry.
const SPARE_HEAP_BUFFERS: usize = 64;

/// Capacity of the small heap buffers that queued frames are packed into:
/// each is one atomic write of at most `PIPE_BUF` bytes.
pub(crate) const SMALL_BUF_SIZE: usize = crate::frame::PIPE_BUF;

/// Small buffers kept for reuse (1 MiB).
const SPARE_SMALL_BUFFERS: usize = 256;

/// Size of each buffer of the default pool: a pipe's default capacity, so
/// one read can empty a full pipe.
pub(crate) const DEFAULT_BUF_SIZE: usize = 64 * 1024;

/// The registered buffer pool.
pub(crate) struct Pool {
    base: NonNull<u8>,
    buf_size: usize,
    count: u16,
    free: RefCell<Vec<u16>>,
    spare_heap: RefCell<Vec<Vec<u8>>>,
    spare_small: RefCell<Vec<Vec<u8>>>,
    /// The provided rings, indexed by group: [`PROVIDED_GROUP`] and
    /// [`SELECT_GROUP`] (none without a provided ring).
    provided: Vec<ProvidedRing>,
    /// Register the buffers when one is first used, not at build.
    register_later: Cell<bool>,
}

/// Buffers a provided ring gives the kernel at first; it grows with the
/// receivers ([`Pool::reserve_provided`]) and doubles each time it runs
/// dry ([`Pool::grow_provided`]), up to its capacity.
const PROVIDED_FIRST: u16 = 8;

/// Group id of the provided ring of multishot reads.
pub(crate) const PROVIDED_GROUP: u16 = 0;

/// Group id of the provided ring of single-shot reads. The two kinds of
/// read share no ring: a multishot read takes a buffer that can hold a
/// whole pipe, a single-shot read of a receiver that is not streaming at
/// most [`SELECT_BUF_MAX`].
pub(crate) const SELECT_GROUP: u16 = 1;

/// Largest buffer of the single-shot reads' ring. They serve receivers
/// that are not streaming: a read that fills a whole one marks its
/// receiver as streaming (its next read takes a registered 64 KiB buffer),
/// and the ring's memory stays small however the buffers cycle.
pub(crate) const SELECT_BUF_MAX: usize = 16 * 1024;

/// A provided buffer ring: buffers the kernel picks itself for reads that
/// select one (multishot reads, and single-shot reads of receivers that
/// hold no buffer while they wait), shared by every receiver, so memory
/// follows the data in flight, not the number of FIFOs.
///
/// Each completion lends its whole buffer (a [`Buf`] of the bytes it
/// filled); the buffer goes back on the ring when that `Buf` is dropped.
/// The rings are registered plain, not incremental: see `ring::bufring`
/// for why.
struct ProvidedRing {
    entries: NonNull<BufRingEntry>,
    entries_len: usize,
    mem: NonNull<u8>,
    buf_size: usize,
    count: u16,
    /// Our copy of the tail; the kernel reads the shared one.
    tail: Cell<u16>,
    /// Where the next buffer is taken when no kernel consumes the ring
    /// (the epoll backend picks buffers itself: `read_provided`).
    head: Cell<u16>,
    /// Buffers given to the kernel so far (ids `0..published`). The
    /// kernel takes buffers in ring order, so one busy reader cycles
    /// through every buffer on the ring: the ring starts with a few and
    /// grows when it runs dry, so the memory touched follows the readers
    /// and the data in flight, not the capacity.
    published: Cell<u16>,
    /// Per buffer id: whether it is on the ring, the kernel's to fill
    /// (else a completion lent it out).
    on_ring: Box<[Cell<bool>]>,
    /// How many buffers are on the ring (as of the completions seen).
    free: Cell<u16>,
}

impl ProvidedRing {
    fn new(count: u16, buf_size: usize) -> io::Result<ProvidedRing> {
        let count = count.clamp(1, 1 << 15).next_power_of_two();
        let entries_len =
            (usize::from(count) * std::mem::size_of::<BufRingEntry>()).div_ceil(4096) * 4096;
        let entries = map(entries_len)?.cast::<BufRingEntry>();
        let mem = match map(buf_size * usize::from(count)) {
            Ok(m) => m,
            Err(e) => {
                unmap(entries.cast(), entries_len);
                return Err(e);
            }
        };
        let ring = ProvidedRing {
            entries,
            entries_len,
            mem,
            buf_size,
            count,
            tail: Cell::new(0),
            head: Cell::new(0),
            published: Cell::new(0),
            on_ring: (0..count).map(|_| Cell::new(false)).collect(),
            free: Cell::new(0),
        };
        ring.grow(PROVIDED_FIRST);
        Ok(ring)
    }

    /// Gives the kernel up to `n` buffers it has never had; false if it
    /// has had them all.
    fn grow(&self, n: u16) -> bool {
        let from = self.published.get();
        let to = from.saturating_add(n).min(self.count);
        for bid in from..to {
            self.put(bid);
        }
        self.publish();
        self.published.set(to);
        to > from
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.count);
        // SAFETY: bid < count, so the offset stays inside the mapping.
        unsafe { self.mem.as_ptr().add(usize::from(bid) * self.buf_size) }
    }

    /// Gives buffer `bid` back to the kernel.
    fn push(&self, bid: u16) {
        self.put(bid);
        self.publish();
    }

    /// Writes buffer `bid` past the tail; the kernel sees it once
    /// [`publish`](Self::publish) stores the tail (a batch returned at
    /// once costs one store).
    #[inline]
    fn put(&self, bid: u16) {
        if let Some(on_ring) = self.on_ring.get(usize::from(bid))
            && !on_ring.replace(true)
        {
            self.free.set(self.free.get() + 1);
        }
        let tail = self.tail.get();
        let slot = usize::from(tail & (self.count - 1));
        // SAFETY: slot < count entries of the mapping. The kernel only reads
        // entries between its head and the published tail, and this one is
        // past the tail until `publish` stores it.
        unsafe {
            let entry = &mut *self.entries.as_ptr().add(slot);
            entry.set_addr(self.buf_ptr(bid) as u64);
            entry.set_len(self.buf_size as u32);
            entry.set_bid(bid);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    /// Shows the kernel every buffer [`put`](Self::put) so far.
    #[inline]
    fn publish(&self) {
        // SAFETY: the shared tail is the u16 inside entry 0, in the mapping,
        // and the kernel reads it concurrently: hence the atomic release,
        // after the entries' writes.
        unsafe {
            let shared = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*shared).store(self.tail.get(), Ordering::Release);
        }
    }
}

impl Drop for ProvidedRing {
    fn drop(&mut self) {
        unmap(self.entries.cast(), self.entries_len);
        unmap(self.mem, self.buf_size * usize::from(self.count));
    }
}

fn map(len: usize) -> io::Result<NonNull<u8>> {
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
    NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)
}

fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: called once per mapping made by `map` with the same length,
    // when nothing points into it any more.
    unsafe {
        libc::munmap(ptr.as_ptr().cast(), len);
    }
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
    #[cfg(test)]
    pub(crate) fn new(count: u16, buf_size: usize) -> io::Result<Rc<Pool>> {
        Pool::with_provided(count, buf_size, None)
    }

    /// As `new`, plus a provided buffer ring of `provided.0` buffers of
    /// `provided.1` bytes for multishot reads.
    pub(crate) fn with_provided(
        count: u16,
        buf_size: usize,
        provided: Option<(u16, usize)>,
    ) -> io::Result<Rc<Pool>> {
        let page = 4096;
        let buf_size = buf_size.max(1).div_ceil(page) * page;
        let len = buf_size * usize::from(count.max(1));
        let base = map(len)?;
        let mut rings = Vec::new();
        if let Some((n, size)) = provided {
            for group in [PROVIDED_GROUP, SELECT_GROUP] {
                let size = match group {
                    SELECT_GROUP => size.min(SELECT_BUF_MAX),
                    _ => size,
                };
                match ProvidedRing::new(n, size.max(1).div_ceil(page) * page) {
                    Ok(r) => rings.push(r),
                    Err(e) => {
                        unmap(base, len);
                        return Err(e);
                    }
                }
            }
        }
        let provided = rings;
        Ok(Rc::new(Pool {
            base,
            buf_size,
            count,
            // Hand out low indices first: reverse so `pop` yields 0, 1, 2...
            free: RefCell::new((0..count).rev().collect()),
            spare_heap: RefCell::new(Vec::new()),
            spare_small: RefCell::new(Vec::new()),
            provided,
            register_later: Cell::new(false),
        }))
    }

    /// Each provided ring's group, entries address and size, to register
    /// them.
    pub(crate) fn provided_rings(&self) -> impl Iterator<Item = (u16, u64, u16)> + '_ {
        self.provided
            .iter()
            .enumerate()
            .map(|(group, r)| (group as u16, r.entries.as_ptr() as u64, r.count))
    }

    /// Defers registering the buffers until one is first used for I/O:
    /// registration pins every page of the pool, and a proactor whose
    /// receivers only wait (or share the provided ring) need not pin any.
    pub(crate) fn register_later(&self) {
        self.register_later.set(true);
    }

    /// Whether registration was deferred and is still to be tried (true
    /// once: the caller tries it now).
    pub(crate) fn take_register_later(&self) -> bool {
        self.register_later.replace(false)
    }

    /// The provided ring of `group` ran dry: gives the kernel as many more
    /// buffers as it has had (doubling), up to its capacity. False if it
    /// has them all already: reads wait for lent buffers to come back.
    pub(crate) fn grow_provided(&self, group: u16) -> bool {
        self.provided
            .get(usize::from(group))
            .is_some_and(|ring| ring.grow(ring.published.get().max(1)))
    }

    /// Makes sure the provided ring of `group` has given the kernel at
    /// least `n` buffers (up to its capacity): one for every reader that
    /// may take one in the same enter, since growing on -ENOBUFS comes an
    /// enter too late for a batch.
    pub(crate) fn reserve_provided(&self, group: u16, n: usize) {
        if let Some(ring) = self.provided.get(usize::from(group)) {
            let want = u16::try_from(n).unwrap_or(u16::MAX);
            ring.grow(want.saturating_sub(ring.published.get()));
        }
    }

    /// Buffers on the provided ring of `group` now, as far as the
    /// completions seen so far tell: what reads can take before it runs dry.
    pub(crate) fn provided_free(&self, group: u16) -> usize {
        self.provided
            .get(usize::from(group))
            .map_or(0, |ring| usize::from(ring.free.get()))
    }

    /// Size of each buffer of the provided ring of `group` (0: none).
    pub(crate) fn provided_size(&self, group: u16) -> usize {
        self.provided
            .get(usize::from(group))
            .map_or(0, |ring| ring.buf_size)
    }

    /// Takes provided buffer `bid` of `group`, which a completion says the
    /// kernel filled with `result` bytes (none for a result of 0 or less).
    /// Dropping it gives the buffer back to the ring. `None` for a buffer
    /// id the kernel could not have handed over.
    pub(crate) fn take_provided(self: &Rc<Self>, group: u16, bid: u16, result: i32) -> Option<Buf> {
        let len = self.take_provided_len(group, bid, result)?;
        Some(Buf {
            pool: Rc::clone(self),
            mem: Mem::Provided {
                group: group as u8,
                bid,
                len,
            },
        })
    }

    /// [`take_provided`](Self::take_provided) with no `Buf` made: the
    /// buffer is off its ring, and the caller keeps it by id (in a
    /// [`Lent`]) until it goes back. Returns the bytes it holds.
    #[inline]
    pub(crate) fn take_provided_len(&self, group: u16, bid: u16, result: i32) -> Option<u32> {
        let ring = self.provided.get(usize::from(group))?;
        let on_ring = ring.on_ring.get(usize::from(bid))?;
        if !on_ring.replace(false) {
            return None;
        }
        ring.free.set(ring.free.get() - 1);
        Some(u32::try_from(result).unwrap_or(0).min(ring.buf_size as u32))
    }

    /// For a backend that fills provided buffers itself (epoll): lends
    /// the next buffer on `group`'s ring, at most `len` bytes of it, to
    /// `read`, and takes it off the ring if `read` put bytes in it (a
    /// completion then names it, as the kernel's would). Returns `read`'s
    /// result and the buffer taken; -ENOBUFS when the ring is empty.
    pub(crate) fn read_provided(
        &self,
        group: u16,
        len: usize,
        read: impl FnOnce(&mut [u8]) -> i32,
    ) -> (i32, Option<u16>) {
        let Some(ring) = self.provided.get(usize::from(group)) else {
            return (-libc::ENOBUFS, None);
        };
        let head = ring.head.get();
        if head == ring.tail.get() {
            return (-libc::ENOBUFS, None);
        }
        let slot = usize::from(head & (ring.count - 1));
        // SAFETY: slot < count entries of the mapping; `push` wrote every
        // entry between head and tail, and writes only past the tail.
        let bid = unsafe { (*ring.entries.as_ptr().add(slot)).bid() };
        if bid >= ring.count {
            return (-libc::EIO, None);
        }
        // SAFETY: buffer `bid` is on the ring (between head and tail), so
        // no `Buf` lends it (`take_provided` makes one only after a
        // completion names it, once this has taken it off), and no kernel
        // writes it: this ring is not registered with one. The slice
        // lives for this call only.
        let buf =
            unsafe { std::slice::from_raw_parts_mut(ring.buf_ptr(bid), ring.buf_size.min(len)) };
        let result = read(buf);
        if result <= 0 {
            return (result, None);
        }
        ring.head.set(head.wrapping_add(1));
        (result, Some(bid))
    }

    /// Size of every buffer, registered or heap.
    pub(crate) fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Bytes of the buffers to register (each rounded up to whole pages).
    pub(crate) fn registered_bytes(&self) -> u64 {
        (self.buf_size * usize::from(self.count)) as u64
    }

    /// Registered buffers not in use right now.
    #[cfg(test)]
    pub(crate) fn free_count(&self) -> usize {
        self.free.borrow().len()
    }

    /// Registered buffers in the pool.
    pub(crate) fn fixed_total(&self) -> usize {
        usize::from(self.count)
    }

    /// Registered buffers lent out right now.
    pub(crate) fn fixed_in_use(&self) -> usize {
        usize::from(self.count) - self.free.borrow().len()
    }

    /// The iovecs to register with the ring, index `i` being buffer `i`.
    pub(crate) fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.count).map(|i| self.iovec(i)).collect()
    }

    /// The iovec of buffer `index`, to register it alone.
    pub(crate) fn iovec(&self, index: u16) -> libc::iovec {
        libc::iovec {
            iov_base: self.ptr(index).cast(),
            iov_len: self.buf_size,
        }
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

    /// A registered buffer, or a (recycled) heap buffer when none is free,
    /// `buf_size` bytes long: for the kernel to read into.
    pub(crate) fn take(self: &Rc<Self>) -> Buf {
        if let Some(buf) = self.take_fixed() {
            return buf;
        }
        let mut heap =
            (self.spare_heap.borrow_mut().pop()).unwrap_or_else(|| vec![0; self.buf_size]);
        // Left partly filled by a write queue: the rest is zeroed.
        heap.resize(self.buf_size, 0);
        Buf {
            pool: Rc::clone(self),
            mem: Mem::Heap(heap),
        }
    }

    /// An empty buffer for a write queue to fill with [`Buf::put`]: a
    /// registered one of `buf_size` bytes if one is free, else a heap
    /// buffer of that capacity; a small heap one ([`SMALL_BUF_SIZE`]) when
    /// `small`. Never zeroed: the queue writes every byte it sends.
    pub(crate) fn take_empty(self: &Rc<Self>, small: bool) -> Buf {
        let (spare, cap) = if small {
            (&self.spare_small, SMALL_BUF_SIZE)
        } else {
            if let Some(buf) = self.take_fixed() {
                return buf;
            }
            (&self.spare_heap, self.buf_size)
        };
        let mut heap = spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(cap));
        heap.clear();
        Buf {
            pool: Rc::clone(self),
            mem: Mem::Heap(heap),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // No `Buf` is alive (each holds an `Rc<Pool>`), so nothing points
        // into the mapping. Registered pages stay pinned by the kernel until
        // the ring is gone. The provided ring unmaps itself.
        unmap(self.base, self.buf_size * usize::from(self.count.max(1)));
    }
}

enum Mem {
    Fixed(u16),
    /// Its length is the bytes that hold data (a read buffer: all of it).
    Heap(Vec<u8>),
    /// The first `len` bytes of provided buffer `bid` of `group`: what one
    /// completion filled.
    Provided {
        group: u8,
        bid: u16,
        len: u32,
    },
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
            Mem::Provided { group, bid, len } => write!(f, "Buf::Provided({group}, {bid}, {len})"),
        }
    }
}

impl Buf {
    /// The pool this buffer belongs to.
    pub(crate) fn pool(&self) -> &Rc<Pool> {
        &self.pool
    }

    /// The registered buffer index, for `READ_FIXED` / `WRITE_FIXED`.
    pub(crate) fn fixed_index(&self) -> Option<u16> {
        match self.mem {
            Mem::Fixed(i) => Some(i),
            Mem::Heap(_) | Mem::Provided { .. } => None,
        }
    }

    /// Bytes the kernel may touch: a heap buffer's initialised length.
    pub(crate) fn capacity(&self) -> usize {
        match &self.mem {
            Mem::Provided { len, .. } => *len as usize,
            Mem::Heap(b) => b.len(),
            Mem::Fixed(_) => self.pool.buf_size,
        }
    }

    /// Writes `data` at `at`, dropping whatever a heap buffer held from
    /// `at` on; a heap buffer grows without being zeroed first. The write
    /// queue's appends: `at` is the end of its bytes.
    pub(crate) fn put(&mut self, at: usize, data: &[u8]) {
        self.put_all(at, &[data]);
    }

    /// [`put`](Self::put) of several pieces one after the other.
    pub(crate) fn put_all(&mut self, mut at: usize, parts: &[&[u8]]) {
        match &mut self.mem {
            Mem::Heap(b) => {
                b.truncate(at);
                for part in parts {
                    b.extend_from_slice(part);
                }
            }
            _ => {
                let slice = self.as_mut_slice();
                for part in parts {
                    slice[at..at + part.len()].copy_from_slice(part);
                    at += part.len();
                }
            }
        }
    }

    fn provided(&self, group: u8) -> &ProvidedRing {
        self.pool
            .provided
            .get(usize::from(group))
            .expect("a provided buffer has its ring")
    }

    /// Start of a provided buffer.
    fn provided_ptr(&self, group: u8, bid: u16) -> *mut u8 {
        self.provided(group).buf_ptr(bid)
    }

    /// Pointer to the start, for building an SQE.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        match &mut self.mem {
            Mem::Fixed(i) => self.pool.ptr(*i),
            Mem::Heap(b) => b.as_mut_ptr(),
            Mem::Provided { group, bid, .. } => {
                let (group, bid) = (*group, *bid);
                self.provided_ptr(group, bid)
            }
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
            Mem::Provided { group, bid, len } => {
                let ptr = self.provided_ptr(*group, *bid);
                // SAFETY: the kernel handed this buffer over with its
                // completion, `len` is at most its size (`take_provided`),
                // and the kernel never writes it again before it is back
                // on the ring, which waits for this `Buf` to drop.
                unsafe { std::slice::from_raw_parts(ptr, *len as usize) }
            }
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        if let Mem::Provided { group, bid, len } = self.mem {
            // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
            return unsafe {
                std::slice::from_raw_parts_mut(self.provided_ptr(group, bid), len as usize)
            };
        }
        match &mut self.mem {
            // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
            Mem::Fixed(i) => unsafe {
                std::slice::from_raw_parts_mut(self.pool.ptr(*i), self.pool.buf_size)
            },
            Mem::Heap(b) => b,
            Mem::Provided { .. } => &mut [],
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.mem, Mem::Heap(Vec::new())) {
            Mem::Fixed(i) => self.pool.free.borrow_mut().push(i),
            Mem::Heap(b) => {
                let (spare, max) = match b.capacity() {
                    c if c == self.pool.buf_size => (&self.pool.spare_heap, SPARE_HEAP_BUFFERS),
                    SMALL_BUF_SIZE => (&self.pool.spare_small, SPARE_SMALL_BUFFERS),
                    _ => return,
                };
                let mut spare = spare.borrow_mut();
                if spare.len() < max {
                    spare.push(b);
                }
            }
            Mem::Provided { group, bid, .. } => self.provided(group).push(bid),
        }
    }
}

#[cfg(test)]
mod tests;
