//! Read buffers lent to one batch of events, each named by a `u32`: the
//! batch owns them until it is cleared, then gives them all back at once.
//!
//! A provided buffer is kept as its id alone (no `Buf`, no pool handle of
//! its own) and goes back to its ring straight from the id: a paced
//! consumer gets one buffer per poll, and the `Buf` round trip (a pool
//! handle cloned and dropped, an event of 56 bytes dropped by a call, the
//! buffer found again through its enum) was a large share of its turn.

use std::mem::ManuallyDrop;
use std::rc::Rc;

use super::{Buf, Mem, Pool};

/// The high bit of a name: a `Buf` kept whole (registered, heap, or a
/// provided buffer of another pool), not a provided buffer id.
const WHOLE: u32 = 1 << 31;

/// A provided buffer lent out: its ring, its id, the bytes filled.
#[derive(Debug, Clone, Copy)]
struct Provided {
    group: u8,
    bid: u16,
    len: u32,
}

/// Read buffers lent to a batch of events (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Lent {
    /// The pool `provided` belongs to, kept from batch to batch: releasing
    /// it at each clear would cost a clone and a drop per poll.
    pool: Option<Rc<Pool>>,
    /// Provided buffers of `pool`: each off its ring, this batch's alone
    /// until `clear`.
    provided: Vec<Provided>,
    /// Any other buffer.
    whole: Vec<Buf>,
}

impl Lent {
    /// Keeps `buf` until `clear`; returns its name for [`get`](Self::get).
    #[inline(always)]
    pub(crate) fn keep(&mut self, buf: Buf) -> u32 {
        if let Mem::Provided { group, bid, len } = buf.mem {
            let same = self.pool.as_ref().is_some_and(|p| Rc::ptr_eq(p, &buf.pool));
            // A batch holds one pool's ids (an `Events` polled by another
            // proactor takes that one's pool once it is empty).
            if same || self.provided.is_empty() {
                let at = self.provided.len() as u32;
                if at < WHOLE {
                    if !same {
                        self.pool = Some(Rc::clone(&buf.pool));
                    }
                    self.provided.push(Provided { group, bid, len });
                    let buf = ManuallyDrop::new(buf);
                    // SAFETY: the pool handle is read out once and dropped
                    // here; `buf` is never used or dropped again (its
                    // `Mem::Provided` owns nothing to free), so the
                    // buffer's ownership moved into `provided` whole.
                    drop(unsafe { std::ptr::read(&buf.pool) });
                    return at;
                }
            }
        }
        let at = self.whole.len() as u32 | WHOLE;
        self.whole.push(buf);
        at
    }

    /// Keeps provided buffer `bid` of `group` of `pool`, holding `len`
    /// bytes and already off its ring ([`Pool::take_provided_len`]), as
    /// [`keep`](Self::keep) would keep it as a `Buf`, without making one.
    #[inline(always)]
    pub(crate) fn keep_provided(&mut self, pool: &Rc<Pool>, group: u8, bid: u16, len: u32) -> u32 {
        let same = self.pool.as_ref().is_some_and(|p| Rc::ptr_eq(p, pool));
        let at = self.provided.len() as u32;
        if (same || self.provided.is_empty()) && at < WHOLE {
            if !same {
                self.pool = Some(Rc::clone(pool));
            }
            self.provided.push(Provided { group, bid, len });
            return at;
        }
        // Another pool's ids held (or ids by the billion): kept whole.
        let mem = Mem::Provided { group, bid, len };
        self.keep(Buf {
            pool: Rc::clone(pool),
            mem,
        })
    }

    /// The bytes of buffer `name` (as [`Buf::as_slice`]); empty for a name
    /// this batch never gave.
    #[inline]
    pub(crate) fn get(&self, name: u32) -> &[u8] {
        if name & WHOLE != 0 {
            return self
                .whole
                .get((name & !WHOLE) as usize)
                .map_or(&[], Buf::as_slice);
        }
        match (self.provided.get(name as usize), &self.pool) {
            (Some(p), Some(pool)) => pool.lent_slice(p.group, p.bid, p.len),
            _ => &[],
        }
    }

    /// Gives every buffer back, the provided ones straight to their rings
    /// (a tail store each: a plain store on x86, cheaper than tracking
    /// which rings moved).
    #[inline]
    pub(crate) fn clear(&mut self) {
        if !self.provided.is_empty() {
            if let Some(pool) = &self.pool {
                for p in &self.provided {
                    if let Some(ring) = pool.provided.get(usize::from(p.group)) {
                        ring.push(p.bid);
                    }
                }
            }
            self.provided.clear();
        }
        if !self.whole.is_empty() {
            self.whole.clear();
        }
    }

    /// Whether it lends nothing.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.provided.is_empty() && self.whole.is_empty()
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.clear();
    }
}

impl Pool {
    /// The first `len` bytes of provided buffer `bid` of `group`, lent to
    /// a [`Lent`]; empty if it is on its ring (the kernel's to fill).
    #[inline]
    fn lent_slice(&self, group: u8, bid: u16, len: u32) -> &[u8] {
        let Some(ring) = self.provided.get(usize::from(group)) else {
            return &[];
        };
        let lent = ring.on_ring.get(usize::from(bid)).is_some_and(|c| !c.get());
        if !lent {
            return &[];
        }
        let len = (len as usize).min(ring.buf_size);
        // SAFETY: `bid` < count (its flag exists), so the buffer lies in
        // the mapping, and `len` is at most its size. It is off the ring:
        // the kernel handed it over with a completion and never writes it
        // before it is back, which only `Lent::clear` (taking `&mut`, so no
        // slice from `&Lent` outlives it) or a `Buf`'s drop does, and the
        // buffer is in no `Buf` once a `Lent` keeps it.
        unsafe { std::slice::from_raw_parts(ring.buf_ptr(bid), len) }
    }
}
