//! `Proactor::snapshot` and `Proactor::stats` allocate nothing, so an
//! exporter may call them every second forever. A binary of its own: the
//! counting allocator sees every allocation of the process, and counts
//! those of the measuring thread (the watchdog's thread may allocate for
//! its wait at any moment).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use ringpipe::{Events, FifoOptions, Proactor};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's allocations are counted (const: reading it allocates
    /// nothing).
    static MEASURED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if MEASURED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter
// is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn snapshot_and_stats_do_not_allocate() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        let create = FifoOptions::new().create(true);
        let mut tokens = Vec::new();
        for i in 0..50 {
            let rx = p.open_receiver(dir.path().join(format!("r{i}")), &create);
            tokens.push(rx.unwrap().token());
            let tx = p.open_sender(dir.path().join(format!("s{i}")), &create);
            tokens.push(tx.unwrap().token());
        }
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();

        MEASURED.with(|m| m.set(true));
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let mut seen = 0;
        for _ in 0..1000 {
            let s = std::hint::black_box(p.snapshot());
            seen += s.transports();
            for &t in &tokens {
                seen += std::hint::black_box(p.stats(t).unwrap()).reconnects as usize;
            }
        }
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        MEASURED.with(|m| m.set(false));
        assert_eq!(seen, 1000 * 100);
        assert_eq!(after - before, 0, "snapshot/stats allocated");
    });
}
