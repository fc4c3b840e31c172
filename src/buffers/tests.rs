use super::*;

impl Pool {
    /// Buffers given to the provided ring of `group` so far (its tail).
    fn provided_pushed(&self, group: u16) -> u16 {
        self.provided
            .get(usize::from(group))
            .map_or(0, |ring| ring.tail.get())
    }
}

#[test]
fn plain_provided_buffers_return_after_one_completion() {
    let pool = Pool::with_provided(1, 4096, Some((2, 4096))).unwrap();
    // Not incremental: every completion consumes its buffer, EOF too.
    drop(pool.take_provided(1, 0, 0).unwrap());
    assert_eq!(pool.provided_pushed(1), 3);
    let a = pool.take_provided(1, 1, 64).unwrap();
    assert_eq!(pool.provided_pushed(1), 3);
    drop(a);
    assert_eq!(pool.provided_pushed(1), 4);
}

/// The count of buffers on the ring, which bounds how many starved reads
/// `poll` arms again: down per buffer a completion lends, up when it comes
/// back or the ring grows; a refused take changes nothing.
#[test]
fn a_provided_ring_counts_the_buffers_on_it() {
    let pool = Pool::with_provided(1, 4096, Some((16, 4096))).unwrap();
    assert_eq!(pool.provided_free(0), usize::from(PROVIDED_FIRST));
    let a = pool.take_provided(0, 0, 10).unwrap();
    let b = pool.take_provided(0, 1, 10).unwrap();
    assert_eq!(pool.provided_free(0), usize::from(PROVIDED_FIRST) - 2);
    assert!(pool.take_provided(0, 0, 10).is_none(), "lent already");
    assert_eq!(pool.provided_free(0), usize::from(PROVIDED_FIRST) - 2);
    drop(a);
    assert_eq!(pool.provided_free(0), usize::from(PROVIDED_FIRST) - 1);
    assert!(pool.grow_provided(0));
    assert_eq!(pool.provided_free(0), 15);
    drop(b);
    assert_eq!(pool.provided_free(0), 16);
    // The other ring keeps its own count.
    assert_eq!(pool.provided_free(1), usize::from(PROVIDED_FIRST));
}

#[test]
fn a_provided_ring_starts_small_and_grows_with_readers_and_when_dry() {
    let pool = Pool::with_provided(1, 4096, Some((64, 4096))).unwrap();
    // Only a few buffers go to the kernel: the memory the reads touch
    // follows what they need, not the ring's capacity.
    assert_eq!(pool.provided_pushed(0), PROVIDED_FIRST);
    // A buffer no read could have taken is refused.
    assert!(pool.take_provided(0, PROVIDED_FIRST, 1).is_none());
    pool.reserve_provided(0, 12);
    assert_eq!(pool.provided_pushed(0), 12);
    pool.reserve_provided(0, 4);
    assert_eq!(pool.provided_pushed(0), 12, "never shrinks");
    let mut published = 12;
    while published < 64 {
        assert!(pool.grow_provided(0));
        published = (published * 2).min(64);
        assert_eq!(pool.provided_pushed(0), published);
    }
    assert!(!pool.grow_provided(0), "at capacity");
    assert_eq!(pool.provided_pushed(0), 64);
}

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

#[test]
fn a_lent_batch_holds_its_buffers_until_cleared_then_gives_them_back() {
    let pool = Pool::with_provided(1, 4096, Some((8, 4096))).unwrap();
    let other = Pool::with_provided(1, 4096, Some((8, 4096))).unwrap();
    let (mine, theirs) = (pool.provided_pushed(0), other.provided_pushed(0));
    let mut lent = Lent::default();
    let mut a = pool.take_provided(0, 0, 3).unwrap();
    a.as_mut_slice().copy_from_slice(b"abc");
    let mut b = other.take_provided(0, 1, 2).unwrap();
    b.as_mut_slice().copy_from_slice(b"xy");
    let fixed = pool.take_fixed().unwrap();
    let (a, b, fixed) = (lent.keep(a), lent.keep(b), lent.keep(fixed));
    // Each reads back as it was kept; another pool's buffer is kept whole.
    assert_eq!(lent.get(a), b"abc");
    assert_eq!(lent.get(b), b"xy");
    assert_eq!(lent.get(fixed).len(), pool.buf_size());
    assert_eq!(pool.free_count(), 0, "the registered buffer is lent");
    // Nothing goes back while the batch holds it.
    assert_eq!(
        (pool.provided_pushed(0), other.provided_pushed(0)),
        (mine, theirs)
    );
    assert!(pool.take_provided(0, 0, 1).is_none(), "still lent");
    lent.clear();
    assert!(lent.is_empty());
    assert_eq!(lent.get(a), b"", "a cleared batch names nothing");
    assert_eq!(
        (pool.provided_pushed(0), other.provided_pushed(0)),
        (mine + 1, theirs + 1)
    );
    assert_eq!(pool.free_count(), 1);
    // Back on the ring: the kernel may hand it over again.
    let again = pool.take_provided(0, 0, 1).unwrap();
    // Dropping a batch gives its buffers back too.
    let mut lent = Lent::default();
    lent.keep(again);
    drop(lent);
    assert_eq!(pool.provided_pushed(0), mine + 2);
}
