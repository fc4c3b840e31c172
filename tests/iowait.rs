//! A proactor asleep on quiet FIFOs is not counted as waiting for disk
//! I/O: `vmstat`'s `b` column and the iowait share stay where they were.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringpipe::{Events, FifoOptions, Proactor};

/// Tasks the kernel counts as blocked on I/O now (`procs_blocked` in
/// `/proc/stat`: the tasks in iowait, system-wide).
fn procs_blocked() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    stat.lines()
        .find_map(|l| l.strip_prefix("procs_blocked "))
        .and_then(|n| n.trim().parse().ok())
        .expect("/proc/stat has procs_blocked")
}

/// `(major, minor)` of the running kernel.
fn kernel_release() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

#[test]
fn a_proactor_waiting_on_a_quiet_fifo_is_not_in_iowait() {
    // io_uring counts a waiting task as iowait unless told not to, which
    // it can be from Linux 6.15 (IORING_FEAT_NO_IOWAIT).
    if !on_epoll() && kernel_release() < (6, 15) {
        skip(
            "a_proactor_waiting_on_a_quiet_fifo_is_not_in_iowait",
            "io_uring waits count as iowait before Linux 6.15",
        );
        return;
    }
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("quiet");
        let (armed_tx, armed_rx) = std::sync::mpsc::channel();
        let sleeper = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut p = Proactor::new().unwrap();
                let mut ev = Events::default();
                p.open_receiver(&fifo, &FifoOptions::new().create(true))
                    .unwrap();
                // The read goes in with this first short poll; then the
                // long one sleeps with it in flight and nothing to read.
                p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
                armed_tx.send(()).unwrap();
                p.poll(&mut ev, Some(Duration::from_millis(1500))).unwrap();
                assert!(ev.is_empty(), "a quiet FIFO gave events");
            })
        };
        // A writer that writes nothing: the read waits for data, not for
        // its first writer.
        armed_rx.recv().unwrap();
        let _writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // Another task may be in iowait at any one moment; while this
        // proactor sleeps, one counted as iowait would keep every sample
        // at 1 or more.
        let start = Instant::now();
        let mut least = u64::MAX;
        while start.elapsed() < Duration::from_millis(600) {
            least = least.min(procs_blocked());
            std::thread::sleep(Duration::from_millis(10));
        }
        sleeper.join().unwrap();
        assert_eq!(
            least, 0,
            "a proactor waiting on a FIFO was counted as blocked on I/O in every sample"
        );
    });
}
