//! A bounded ring of slots that many threads push into and one thread
//! takes from: a mailbox's storage (Vyukov's bounded queue, with one
//! consumer, so taking needs no atomic read-modify-write).
//!
//! Each slot's sequence number says whose turn it is: `pos` while it is
//! free for the push at position `pos`, `pos + 1` once that push wrote it
//! (the take at `pos` may read it), `pos + capacity` once taken (free for
//! the push one lap later).

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Keeps the producers' and the consumer's counters on lines of their own.
#[repr(align(128))]
struct Padded<T>(T);

struct Slot<T> {
    seq: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// The ring. Positions grow without bound (wrapping); a position's slot is
/// `pos & mask`.
pub(crate) struct Slots<T> {
    slots: Box<[Slot<T>]>,
    mask: usize,
    /// The next position a push claims. Claimed with a `SeqCst`
    /// compare-exchange: a mailbox's wake-up check orders against it.
    tail: Padded<AtomicUsize>,
    /// The next position to take: written by the one [`Taker`] alone
    /// (read by `Drop`).
    head: Padded<AtomicUsize>,
}

// SAFETY: a value moves from the pushing thread to the taking one, so `T`
// must be `Send`; the slots are shared, each accessed by one thread at a
// time as its sequence number hands it over (Release/Acquire).
unsafe impl<T: Send> Send for Slots<T> {}
// SAFETY: as above: `&Slots` lets many threads push and one take.
unsafe impl<T: Send> Sync for Slots<T> {}

/// Where a claimed position's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// A push claimed it and is writing it.
    Claimed,
    /// Written, not yet taken.
    Written,
    /// Taken (the slot may hold a later lap's value).
    Taken,
}

/// The right to take from one [`Slots`]: made once with it, never cloned,
/// so one thread at a time takes.
pub(crate) struct Taker(());

impl<T> Slots<T> {
    /// A ring of `capacity` slots rounded up to a power of two, at least 2
    /// (with one slot, a written slot's number would read as free for the
    /// next lap); with the one [`Taker`] allowed to take from it.
    pub(crate) fn new(capacity: usize) -> (Slots<T>, Taker) {
        let capacity = capacity.max(2).next_power_of_two();
        let slots = (0..capacity)
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        let ring = Slots {
            slots,
            mask: capacity - 1,
            tail: Padded(AtomicUsize::new(0)),
            head: Padded(AtomicUsize::new(0)),
        };
        (ring, Taker(()))
    }

    /// How many items it holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Puts `value` in the next free slot, or gives it back when every
    /// slot is full.
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut pos = self.tail.0.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            match seq.wrapping_sub(pos) as isize {
                0 => match self.tail.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the exchange made this thread the only one
                        // at `pos`; the slot is free (its number is `pos`:
                        // the last value was taken, Acquire above), and the
                        // taker reads it only after the Release below.
                        unsafe { (*slot.value.get()).write(value) };
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => pos = now,
                },
                // The slot still holds the value of one lap before: full.
                d if d < 0 => return Err(value),
                // Another push claimed `pos` meanwhile.
                _ => pos = self.tail.0.load(Ordering::Relaxed),
            }
        }
    }

    /// Takes the oldest value, if its push has finished writing it.
    #[cfg(test)]
    pub(crate) fn pop(&self, taker: &mut Taker) -> Option<T> {
        let mut one = Vec::with_capacity(1);
        self.take(taker, &mut one, 1);
        one.pop()
    }

    /// Moves up to `max` values, oldest first, to the end of `out`, stopping
    /// at the first one not yet written; returns how many.
    pub(crate) fn take(&self, _: &mut Taker, out: &mut Vec<T>, max: usize) -> usize {
        let start = self.head.0.load(Ordering::Relaxed);
        let mut pos = start;
        while pos.wrapping_sub(start) < max {
            let slot = &self.slots[pos & self.mask];
            if slot.seq.load(Ordering::Acquire) != pos.wrapping_add(1) {
                break;
            }
            // SAFETY: the number `pos + 1` was stored (Release) by the push
            // at `pos` after it wrote the value, and read here with
            // Acquire; no push touches the slot again until the store
            // below, and the one `Taker` makes this thread the only reader.
            out.push(unsafe { (*slot.value.get()).assume_init_read() });
            slot.seq
                .store(pos.wrapping_add(self.mask + 1), Ordering::Release);
            pos = pos.wrapping_add(1);
        }
        self.head.0.store(pos, Ordering::Relaxed);
        pos.wrapping_sub(start)
    }

    /// The next position to take.
    pub(crate) fn head(&self) -> usize {
        self.head.0.load(Ordering::Relaxed)
    }

    /// Where the value at `pos` (below the tail) is.
    pub(crate) fn at(&self, pos: usize) -> At {
        let seq = self.slots[pos & self.mask].seq.load(Ordering::Acquire);
        match seq.wrapping_sub(pos) {
            0 => At::Claimed,
            1 => At::Written,
            _ => At::Taken,
        }
    }

    /// Every slot is full now: a push would give its value back.
    pub(crate) fn is_full(&self) -> bool {
        let pos = self.tail.0.load(Ordering::SeqCst);
        let seq = self.slots[pos & self.mask].seq.load(Ordering::Acquire);
        (seq.wrapping_sub(pos) as isize) < 0
    }

    /// The next position a push claims, read with `order` (`SeqCst` for a
    /// wake-up check).
    pub(crate) fn tail(&self, order: Ordering) -> usize {
        self.tail.0.load(order)
    }
}

impl<T> Drop for Slots<T> {
    fn drop(&mut self) {
        let (mut pos, tail) = (*self.head.0.get_mut(), *self.tail.0.get_mut());
        while pos != tail {
            let slot = &mut self.slots[pos & self.mask];
            // Every push has returned (no one else holds the ring): each
            // claimed slot was written.
            if *slot.seq.get_mut() == pos.wrapping_add(1) {
                // SAFETY: written (number `pos + 1`) and never taken.
                unsafe { slot.value.get_mut().assume_init_drop() };
            }
            pos = pos.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pushes_until_full_and_takes_in_order() {
        let (ring, mut taker) = Slots::new(3);
        assert_eq!(ring.capacity(), 4);
        for i in 0..4 {
            ring.push(i).unwrap();
        }
        assert_eq!(ring.push(4), Err(4));
        for lap in 0..3 {
            for i in 0..4 {
                assert_eq!(ring.at(lap * 4 + i), At::Written);
                assert_eq!(ring.pop(&mut taker), Some(lap * 4 + i));
                ring.push(lap * 4 + i + 4).unwrap();
            }
        }
        assert_eq!(ring.tail(Ordering::Relaxed), 16);
        assert!(ring.is_full());
        assert_eq!(ring.at(11), At::Taken);
        assert_eq!(ring.at(12), At::Written);
    }

    #[test]
    fn a_capacity_of_one_holds_two() {
        let (ring, mut taker) = Slots::new(1);
        ring.push(1).unwrap();
        ring.push(2).unwrap();
        assert_eq!(ring.push(3), Err(3));
        assert_eq!(ring.pop(&mut taker), Some(1));
        ring.push(3).unwrap();
        assert_eq!(ring.pop(&mut taker), Some(2));
        assert_eq!(ring.pop(&mut taker), Some(3));
        assert_eq!(ring.pop(&mut taker), None);
    }

    #[test]
    fn values_left_in_it_are_dropped_once() {
        let marker = Arc::new(());
        let (ring, mut taker) = Slots::new(8);
        for _ in 0..6 {
            ring.push(Arc::clone(&marker)).unwrap();
        }
        drop(ring.pop(&mut taker));
        drop(ring.pop(&mut taker));
        assert_eq!(Arc::strong_count(&marker), 5);
        drop(ring);
        assert_eq!(Arc::strong_count(&marker), 1);
    }

    #[test]
    fn many_pushers_one_taker_lose_nothing() {
        const PER: usize = 100_000;
        let (ring, mut taker) = Slots::new(16);
        let ring = Arc::new(ring);
        let pushers: Vec<_> = (0..3)
            .map(|id| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let mut v = (id, i);
                        while let Err(back) = ring.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0; 3];
        while next.iter().sum::<usize>() < 3 * PER {
            match ring.pop(&mut taker) {
                Some((id, i)) => {
                    assert_eq!(i, next[id]);
                    next[id] += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        for p in pushers {
            p.join().unwrap();
        }
        assert_eq!(ring.pop(&mut taker), None);
    }
}
