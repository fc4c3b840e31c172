//! `Builder::batch_wait`: a poll that waits for a batch of completions
//! delivers everything, exact, ends on a late single completion and on its
//! own timeout, with the kernel's min-wait and with the fallback.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use ringpipe::{Builder, Event, Events, FifoOptions, Proactor, Receiver};

/// The rings a batched wait must work on: the default ring (deferred task
/// work) with and without the kernel's min-wait, and an SQPOLL ring.
fn rings(completions: u32, budget: Duration) -> Vec<(&'static str, Builder)> {
    let batched = || Proactor::builder().batch_wait(completions, budget);
    vec![
        ("default", batched()),
        ("fallback", batched().kernel_min_wait(false)),
        ("sqpoll", batched().sqpoll(Duration::from_millis(10))),
    ]
}

/// `n` FIFOs in a fresh directory, each with a receiver.
fn receivers(p: &mut Proactor, n: usize) -> (tempfile::TempDir, Vec<PathBuf>, Vec<Receiver>) {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..n)
        .map(|i| fifo_path(dir.path(), &format!("in{i}")))
        .collect();
    let rxs = paths
        .iter()
        .map(|path| {
            mkfifo(path);
            p.open_receiver(path, &FifoOptions::new()).unwrap()
        })
        .collect();
    (dir, paths, rxs)
}

/// Writes `count` 64-byte messages round-robin to the FIFOs given as
/// arguments (`"{fifo:04}:{seq:08}"`, padded, newline), pausing 1 ms
/// after every `pause_every`, then leaves.
const WRITER_PY: &str = r#"
import os, sys, signal, time
signal.alarm(60)
count, pause_every, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
fds = [os.open(p, os.O_WRONLY) for p in paths]
for seq in range(count):
    i = seq % len(fds)
    msg = ("%04d:%08d" % (i, seq)).ljust(63).encode() + b"\n"
    assert os.write(fds[i], msg) == 64
    if (seq + 1) % pause_every == 0:
        time.sleep(0.001)
"#;

fn expected(fifos: usize, count: usize) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new(); fifos];
    for seq in 0..count {
        let i = seq % fifos;
        let mut msg = format!("{i:04}:{seq:08}");
        while msg.len() < 63 {
            msg.push(' ');
        }
        msg.push('\n');
        out[i].extend_from_slice(msg.as_bytes());
    }
    out
}

fn writer(count: usize, pause_every: usize, paths: &[PathBuf]) -> ChildGuard {
    let count = count.to_string();
    let pause = pause_every.to_string();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&count, &pause];
    for p in paths {
        args.push(p);
    }
    ChildGuard::spawn(&mut python(WRITER_PY, &args))
}

#[test]
fn batched_polls_deliver_every_message_exact() {
    watchdog(Duration::from_secs(60), || {
        for (name, builder) in rings(16, Duration::from_micros(500)) {
            let mut p = builder.build().unwrap();
            let (fifos, count) = (8, 4000);
            let (_dir, paths, rxs) = receivers(&mut p, fifos);
            let child = writer(count, 100, &paths);
            let want = expected(fifos, count);
            let total: usize = want.iter().map(Vec::len).sum();
            let mut got = vec![Vec::new(); fifos];
            let mut ev = Events::default();
            while got.iter().map(Vec::len).sum::<usize>() < total {
                p.poll(&mut ev, None).unwrap();
                for e in &ev {
                    if let Event::Data { from, data } = e {
                        let i = rxs.iter().position(|r| *r == from).unwrap();
                        got[i].extend_from_slice(data);
                    }
                }
            }
            child.wait_success(Duration::from_secs(30));
            for i in 0..fifos {
                assert!(got[i] == want[i], "{name}: FIFO {i} got other bytes");
            }
        }
    });
}

/// A completion that comes after the budget, when nothing came within it,
/// ends the wait at once. Some 6.17 / 6.18 kernels missed this wake-up on
/// SQPOLL rings (liburing issue 1504: the wait lasted its full timeout,
/// here an hour, which the watchdog would catch); SQPOLL rings before 6.19
/// take the fallback.
#[test]
fn a_late_completion_ends_a_batched_wait() {
    watchdog(Duration::from_secs(60), || {
        for (name, builder) in rings(8, Duration::from_millis(5)) {
            let mut p = builder.build().unwrap();
            let (_dir, paths, rxs) = receivers(&mut p, 8);
            let late = r#"
import os, sys, signal, time
signal.alarm(60)
fd = os.open(sys.argv[1], os.O_WRONLY)
time.sleep(0.2)
os.write(fd, b"late")
time.sleep(0.2)
"#;
            let child = ChildGuard::spawn(&mut python(late, &[&paths[3]]));
            let mut ev = Events::default();
            let data = 'wait: loop {
                p.poll(&mut ev, None).unwrap();
                for e in &ev {
                    if let Event::Data { from, data } = e {
                        assert!(from == rxs[3], "{name}: data from another FIFO");
                        break 'wait data.to_vec();
                    }
                }
            };
            assert_eq!(data, b"late", "{name}");
            child.wait_success(Duration::from_secs(30));
        }
    });
}

/// With nothing to deliver, a batched poll returns at its own timeout,
/// however long the budget.
#[test]
fn an_idle_batched_poll_returns_at_its_timeout() {
    watchdog(Duration::from_secs(60), || {
        for (name, builder) in rings(8, Duration::from_secs(3600)) {
            let mut p = builder.build().unwrap();
            let (_dir, _paths, _rxs) = receivers(&mut p, 8);
            let mut ev = Events::default();
            for _ in 0..3 {
                p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
                assert!(ev.is_empty(), "{name}: events from idle FIFOs");
            }
        }
    });
}

/// A batch of 16 messages written 1 ms apart comes out of one poll and one
/// `io_uring_enter`: the kernel (or the fallback's first wait) waits for
/// all 16 instead of waking for the first.
#[test]
fn one_enter_takes_a_whole_batch() {
    if io_uring_only("one_enter_takes_a_whole_batch") {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        for (name, builder) in rings(16, Duration::from_secs(3600)) {
            let mut p = builder.build().unwrap();
            let (_dir, paths, _rxs) = receivers(&mut p, 16);
            let child = writer(16, 1, &paths);
            let mut ev = Events::default();
            let enters = p.snapshot().enters;
            p.poll(&mut ev, None).unwrap();
            let data = ev
                .iter()
                .filter(|e| matches!(e, Event::Data { .. }))
                .count();
            assert_eq!(data, 16, "{name}: one poll, messages delivered");
            if name != "sqpoll" {
                assert_eq!(p.snapshot().enters - enters, 1, "{name}: enters");
            }
            child.wait_success(Duration::from_secs(30));
        }
    });
}

#[test]
fn min_wait_can_be_turned_off() {
    let p = Proactor::builder().kernel_min_wait(false).build().unwrap();
    assert!(!p.kernel_min_wait());
}
