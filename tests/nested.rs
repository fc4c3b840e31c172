//! A proactor driven from another event loop through its ring fd (a plain
//! epoll loop, a tokio current-thread runtime) misses no completion, and
//! what a ring with DEFER_TASKRUN does to that fd.

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

use common::*;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use ringpipe::{CloseReason, Event, Events, FifoOptions, Proactor, ReadMode};

const BURSTS: usize = 40;
const LINES: usize = 50;
const BLOB: usize = 70_000;

/// A writer process: bursts of numbered lines and a blob larger than the
/// pipe, with pauses of 0 to 20 ms between bursts, then EOF.
const BURSTS_PY: &str = r#"
import os, sys, time, signal
signal.alarm(60)
path, bursts, lines, blob = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_WRONLY)
seq = 0
for b in range(bursts):
    for i in range(lines):
        os.write(fd, b'%08d\n' % seq)
        seq += 1
    data = bytes([b % 251]) * blob
    while data:
        data = data[os.write(fd, data):]
    time.sleep(0.005 * (b % 5))
os.close(fd)
"#;

fn expected() -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = 0;
    for b in 0..BURSTS {
        for _ in 0..LINES {
            out.extend_from_slice(format!("{seq:08}\n").as_bytes());
            seq += 1;
        }
        out.extend(std::iter::repeat_n((b % 251) as u8, BLOB));
    }
    out
}

fn writer(fifo: &Path) -> ChildGuard {
    ChildGuard::spawn(&mut python(
        BURSTS_PY,
        &[
            &fifo,
            &BURSTS.to_string(),
            &LINES.to_string(),
            &BLOB.to_string(),
        ],
    ))
}

/// A receiver reading as `mode` on a fresh FIFO of `p`, and the writer
/// process of the bursts into it.
fn bursts_into(p: &mut Proactor, mode: ReadMode) -> (tempfile::TempDir, ChildGuard) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in");
    p.open_receiver(&fifo, &FifoOptions::new().create(true).read_mode(mode))
        .unwrap();
    let child = writer(&fifo);
    (dir, child)
}

/// Collects `Data` until the receiver closes at EOF; true when done.
fn collect(got: &mut Vec<u8>, e: &Event<'_>) -> bool {
    match e {
        Event::Data { data, .. } => got.extend_from_slice(data),
        Event::Closed { reason, .. } => {
            assert_eq!(*reason, CloseReason::Eof);
            return true;
        }
        Event::Error { error, .. } => panic!("{error}"),
        _ => {}
    }
    false
}

/// Drives `p` from a level-triggered epoll loop on its fd: poll without
/// waiting, submit, sleep in epoll. Returns the epoll wake-ups.
fn drive_epoll(p: &mut Proactor, mut on: impl FnMut(&mut Proactor, &Event<'_>) -> bool) -> usize {
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    ep.add(
        p.nest_fd().unwrap(),
        EpollEvent::new(EpollFlags::EPOLLIN, 7),
    )
    .unwrap();
    let mut ev = Events::with_capacity(64);
    let mut ready = [EpollEvent::empty(); 4];
    let mut wakes = 0;
    loop {
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        let mut done = false;
        for e in &ev {
            done |= on(p, &e);
        }
        if done {
            return wakes;
        }
        p.submit().unwrap();
        match ep.wait(&mut ready, EpollTimeout::NONE) {
            Ok(n) => {
                // No timeout: it returns for readiness only.
                assert_eq!(n, 1);
                assert_eq!(ready[0].data(), 7);
                wakes += 1;
            }
            // The ring's task work interrupts the wait; it is then posted.
            Err(Errno::EINTR) => {}
            Err(e) => panic!("epoll_wait: {e}"),
        }
    }
}

fn nested_proactor() -> Proactor {
    Proactor::builder().defer_taskrun(false).build().unwrap()
}

#[test]
fn an_epoll_loop_delivers_every_byte_of_bursts_with_pauses() {
    for mode in [ReadMode::Fixed, ReadMode::Multishot] {
        watchdog(Duration::from_secs(60), move || {
            let mut p = nested_proactor();
            let (_dir, child) = bursts_into(&mut p, mode);
            let mut got = Vec::new();
            let wakes = drive_epoll(&mut p, |_, e| collect(&mut got, e));
            child.wait_success(Duration::from_secs(30));
            assert!(got == expected(), "{mode:?}: {} bytes differ", got.len());
            assert!(wakes > 0);
        });
    }
}

#[test]
fn an_epoll_loop_drives_an_sqpoll_ring() {
    watchdog(Duration::from_secs(60), || {
        let mut p = Proactor::builder()
            .sqpoll(Duration::from_millis(10))
            .build()
            .unwrap();
        let (_dir, child) = bursts_into(&mut p, ReadMode::Fixed);
        let mut got = Vec::new();
        drive_epoll(&mut p, |_, e| collect(&mut got, e));
        child.wait_success(Duration::from_secs(30));
        assert!(got == expected(), "{} bytes differ", got.len());
    });
}

#[test]
fn an_epoll_loop_sends_what_threads_hand_over() {
    watchdog(Duration::from_secs(60), || {
        const MSGS: u64 = 20_000;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out");
        let out = dir.path().join("got");
        mkfifo(&fifo);
        let mut p = nested_proactor();
        let reader = ChildGuard::spawn(&mut python(
            EXACT_READ_PY,
            &[&fifo, &(MSGS * 9).to_string(), &out],
        ));
        let tx = p.open_sender(&fifo, &FifoOptions::new()).unwrap();
        let (queue_tx, queue) = crossbeam_channel::unbounded::<u64>();
        let n = p.notifier().unwrap();
        let producer = std::thread::spawn(move || {
            for i in 0..MSGS {
                queue_tx.send(i).unwrap();
                n.notify();
                if i % 2000 == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
        });
        let mut accepted = 0usize;
        // Lines the sender refused at its high watermark, in order.
        let mut outbox = Vec::new();
        drive_epoll(&mut p, |p, e| {
            match e {
                Event::Notified(_) | Event::Writable(_) => {
                    for i in queue.try_iter() {
                        outbox.extend_from_slice(format!("{i:08}\n").as_bytes());
                    }
                    if !outbox.is_empty() {
                        match p.send(tx, &outbox) {
                            Ok(()) => outbox.clear(),
                            Err(ringpipe::Error::WouldBlock { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                Event::Sent { bytes, .. } => accepted += bytes,
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            accepted == MSGS as usize * 9
        });
        producer.join().unwrap();
        reader.wait_success(Duration::from_secs(30));
        let want: Vec<u8> = (0..MSGS)
            .flat_map(|i| format!("{i:08}\n").into_bytes())
            .collect();
        assert!(std::fs::read(&out).unwrap() == want);
    });
}

#[test]
fn tokio_async_fd_delivers_every_byte_of_bursts_with_pauses() {
    for mode in [ReadMode::Fixed, ReadMode::Multishot] {
        watchdog(Duration::from_secs(60), move || {
            let mut p = nested_proactor();
            let (_dir, child) = bursts_into(&mut p, mode);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            let got = rt.block_on(async move {
                let mut afd = async_fd(Nested::new(p));
                let mut ev = Events::with_capacity(64);
                let mut got = Vec::new();
                loop {
                    let p = &mut afd.get_mut().0;
                    p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
                    let mut done = false;
                    for e in &ev {
                        done |= collect(&mut got, &e);
                    }
                    if done {
                        return got;
                    }
                    p.submit().unwrap();
                    // Cleared before the next poll: readiness that comes
                    // later sets it again, completions that came earlier
                    // are reaped by that poll.
                    afd.readable_mut().await.unwrap().clear_ready();
                }
            });
            child.wait_success(Duration::from_secs(30));
            assert!(got == expected(), "{mode:?}: {} bytes differ", got.len());
        });
    }
}

/// A proactor and the ring fd its `nest_fd` gave.
struct Nested(Proactor, RawFd);

impl Nested {
    fn new(p: Proactor) -> Nested {
        let fd = p.nest_fd().unwrap().as_raw_fd();
        Nested(p, fd)
    }
}

impl AsRawFd for Nested {
    fn as_raw_fd(&self) -> RawFd {
        self.1
    }
}

/// tokio's `AsyncFd` over the proactor. `with_interest` is deprecated for
/// the `unsafe` `register_with_interest`, whose contract (the fd stays
/// open and the same while the `AsyncFd` owns it) a `Nested` meets: its
/// ring fd lives as long as its proactor. Tests keep `unsafe` out.
#[allow(deprecated)]
fn async_fd(p: Nested) -> tokio::io::unix::AsyncFd<Nested> {
    tokio::io::unix::AsyncFd::with_interest(p, tokio::io::Interest::READABLE).unwrap()
}

/// With DEFER_TASKRUN (the default), a completion whose task work waits
/// for this thread makes the ring fd poll readable, but wakes no waiter:
/// epoll, which learns of readiness by wake-ups, never reports it. Hence
/// `Builder::defer_taskrun(false)` for nesting.
#[test]
fn deferred_task_work_polls_readable_but_wakes_no_waiter() {
    if io_uring_only("deferred_task_work_polls_readable_but_wakes_no_waiter") {
        return;
    }
    watchdog(Duration::from_secs(20), || {
        let mut p = Proactor::new().unwrap();
        let (r, w) = pipe();
        p.receiver_from_fd(r, ReadMode::Fixed).unwrap();
        let mut ev = Events::with_capacity(8);
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        // `nest_fd` refuses this ring's fd; the kernel's behaviour is
        // what is under test here.
        ep.add(
            p.ring_fd_unchecked(),
            EpollEvent::new(EpollFlags::EPOLLIN, 0),
        )
        .unwrap();
        let mut ready = [EpollEvent::empty(); 1];
        assert_eq!(ep.wait(&mut ready, EpollTimeout::ZERO).unwrap(), 0);
        let mut fds = [PollFd::new(p.ring_fd_unchecked(), PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
        // The read completes inside this write: its task work is queued
        // for this thread before `write` returns.
        nix::unistd::write(&w, b"x").unwrap();
        let mut fds = [PollFd::new(p.ring_fd_unchecked(), PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut fds, PollTimeout::ZERO).unwrap(), 1);
        assert!(fds[0].revents().unwrap().contains(PollFlags::POLLIN));
        assert_eq!(ep.wait(&mut ready, EpollTimeout::ZERO).unwrap(), 0);
        // Only `poll` runs it.
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert!(matches!(
            ev.iter().next(),
            Some(Event::Data { data: b"x", .. })
        ));
    });
}

/// `examples/epoll_nested.rs` and `examples/tokio_nested.rs` as real
/// processes: every byte of the bursts reaches their stdout, and they exit
/// at EOF.
#[test]
fn the_nested_examples_copy_every_byte() {
    for example in ["epoll_nested", "tokio_nested"] {
        let bin = build_example(example);
        watchdog(Duration::from_secs(60), move || {
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join("in");
            mkfifo(&fifo);
            let run = ChildGuard::spawn(
                std::process::Command::new(bin)
                    .arg(&fifo)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped()),
            );
            let child = writer(&fifo);
            let out = run.wait_output(Duration::from_secs(30));
            assert!(
                out.status.success(),
                "{example}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            child.wait_success(Duration::from_secs(30));
            assert!(
                out.stdout == expected(),
                "{example}: {} bytes differ",
                out.stdout.len()
            );
        });
    }
}

/// A multishot read that finds the provided ring dry ends, and is armed
/// again at the next `poll`, once the buffers lent in the last events are
/// back. A loop that nests the proactor polls only when the ring fd is
/// ready: the proactor makes it ready so that next `poll` comes.
#[test]
fn an_epoll_loop_resumes_reads_starved_of_buffers() {
    watchdog(Duration::from_secs(60), || {
        let mut p = Proactor::builder()
            .defer_taskrun(false)
            .provided_buffers(1, 4096)
            .build()
            .unwrap();
        let (_dir, child) = bursts_into(&mut p, ReadMode::Multishot);
        let mut got = Vec::new();
        drive_epoll(&mut p, |_, e| collect(&mut got, e));
        child.wait_success(Duration::from_secs(30));
        assert!(got == expected(), "{} bytes differ", got.len());
    });
}
