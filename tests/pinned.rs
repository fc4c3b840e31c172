//! The default pool pins only the buffers a proactor uses: one send pins
//! one buffer, not the whole pool. Its own test binary, so the process's
//! pinned memory (`VmPin`) is this test's alone.

mod common;

use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, Proactor};

/// `VmPin` of this process, KiB: pages pinned by io_uring registrations
/// (counted for every user, root included).
fn pinned_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPin:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_send_pins_the_buffer_it_uses_not_the_pool() {
    // The epoll backend pins nothing: io_uring's registered buffers.
    if io_uring_only("a_send_pins_the_buffer_it_uses_not_the_pool") {
        return;
    }
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo_path(dir.path(), "out");
        mkfifo(&path);
        let reader = nonblocking_reader(&path);
        let mut p = Proactor::new().unwrap();
        let before = pinned_kib();
        let tx = p.open_sender(&path, &FifoOptions::new()).unwrap();
        p.send(tx, &[7u8; 1000]).unwrap();
        let mut ev = Events::with_capacity(8);
        let mut sent = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            if let Event::Sent { bytes, .. } = e {
                sent += bytes;
            }
            sent == 1000
        });
        let pinned = pinned_kib() - before;
        assert_eq!(drain(&reader), vec![7u8; 1000]);
        // One 64 KiB buffer (the default pool holds up to 64 of them: 4 MiB).
        assert!(pinned > 0, "the send's buffer is registered");
        assert!(pinned <= 2 * 64, "{pinned} KiB pinned for one send");
    });
}
