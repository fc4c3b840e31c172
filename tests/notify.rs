//! A `Notifier` wakes a proactor asleep in the kernel from another thread,
//! coalesces, loses no wake-up, and outlives its proactor harmlessly.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, Notifier, Proactor};

fn notified(ev: &Events) -> usize {
    ev.iter()
        .filter(|e| matches!(e, Event::Notified(_)))
        .count()
}

#[test]
fn notifier_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Notifier>();
}

#[test]
fn a_thread_wakes_a_poll_blocked_in_the_kernel() {
    watchdog(Duration::from_secs(20), || {
        let mut p = Proactor::new().unwrap();
        let n = p.notifier().unwrap();
        let mut ev = Events::with_capacity(8);
        let poller = nix::unistd::gettid().as_raw();
        for round in 0..20 {
            // Even rounds: the thread notifies once this one sleeps in the
            // kernel, in `poll(None)`, which has nothing else to wake it.
            // Odd rounds: at once, racing the poll on its way in.
            let go = Arc::new(Barrier::new(2));
            let (n2, go2) = (n.clone(), Arc::clone(&go));
            let t = std::thread::spawn(move || {
                go2.wait();
                if round % 2 == 0 {
                    wait_until_asleep_in_enter(poller);
                }
                assert!(n2.notify());
            });
            go.wait();
            p.poll(&mut ev, None).unwrap();
            assert_eq!(notified(&ev), 1, "round {round}");
            let token = ev.iter().next().unwrap().token();
            assert_eq!(token.proactor, p.id());
            assert_eq!(token.index, u32::MAX);
            // It names no transport: a typed error, never a panic.
            assert!(matches!(p.close(token), Err(ringpipe::Error::Stale { .. })));
            t.join().unwrap();
        }
    });
}

#[test]
fn many_notifies_make_one_event_and_one_completion() {
    watchdog(Duration::from_secs(20), || {
        let mut p = Proactor::new().unwrap();
        let n = p.notifier().unwrap();
        let mut ev = Events::with_capacity(8);
        // Arm the READ.
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        assert!(n.notify());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        p.poll(&mut ev, None).unwrap();
        assert_eq!(notified(&ev), 1);
        // Nothing left over: the counter was read once, the READ is armed
        // again and stays pending.
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert_eq!(notified(&ev), 0);
        assert_eq!(p.snapshot().ops_in_flight, 1);
        // And the next notify wakes again.
        assert!(n.notify());
        p.poll(&mut ev, None).unwrap();
        assert_eq!(notified(&ev), 1);
    });
}

#[test]
fn every_message_arrives_with_no_lost_wake_up() {
    watchdog(Duration::from_secs(60), || {
        const PRODUCERS: usize = 4;
        const PER: u64 = 20_000;
        let mut p = Proactor::new().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded::<(usize, u64)>();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let (tx, n) = (tx.clone(), p.notifier().unwrap());
                std::thread::spawn(move || {
                    for i in 0..PER {
                        tx.send((id, i)).unwrap();
                        n.notify();
                        if i % 1000 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u64; PRODUCERS];
        let mut ev = Events::with_capacity(8);
        let mut wakes = 0u64;
        while next.iter().sum::<u64>() < PRODUCERS as u64 * PER {
            // Sleeps in the kernel: only a notify can end this poll.
            p.poll(&mut ev, None).unwrap();
            assert_eq!(notified(&ev), 1);
            wakes += 1;
            while let Ok((id, i)) = rx.try_recv() {
                assert_eq!(i, next[id], "producer {id} out of order");
                next[id] += 1;
            }
        }
        for t in producers {
            t.join().unwrap();
        }
        // No wake-up is left over beyond the notifies made after the last
        // one consumed: one more at most, then the READ waits again.
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert!(notified(&ev) <= 1);
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert_eq!(notified(&ev), 0, "a wake-up with no notify behind it");
        assert_eq!(p.snapshot().ops_in_flight, 1);
        println!("{} messages, {wakes} wake-ups", PRODUCERS as u64 * PER);
    });
}

#[test]
fn notify_after_the_proactor_is_dropped_is_harmless() {
    let _serial = serial();
    watchdog(Duration::from_secs(20), || {
        let fds = open_fds();
        let mut p = Proactor::new().unwrap();
        let n = p.notifier().unwrap();
        let again = p.notifier().unwrap();
        let mut ev = Events::with_capacity(8);
        // The READ is in the kernel when the proactor goes.
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert!(n.notify());
        drop(p);
        assert!(!n.notify());
        let t = std::thread::spawn(move || {
            for _ in 0..100 {
                assert!(!again.notify());
            }
        });
        t.join().unwrap();
        // The eventfd goes with the last notifier.
        drop(n);
        assert_eq!(open_fds(), fds);
    });
}

#[test]
fn without_a_notifier_an_idle_poll_returns_at_once() {
    let mut p = Proactor::new().unwrap();
    let mut ev = Events::with_capacity(8);
    p.poll(&mut ev, None).unwrap();
    assert!(ev.is_empty());
    assert_eq!(p.snapshot().ops_in_flight, 0);
}

/// io-wq workers of this process: threads named `iou-wrk-<pid>`.
fn iowq_workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("iou-wrk"))
        .count()
}

#[test]
fn the_armed_read_parks_no_kernel_worker() {
    watchdog(Duration::from_secs(20), || {
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(8);
        let n = p.notifier().unwrap();
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        // An eventfd READ waits by the ring's internal poll: no io-wq
        // worker blocks in read(2) for it. (No test here splices, the one
        // other user of workers.)
        p.poll(&mut ev, Some(Duration::from_millis(50))).unwrap();
        assert_eq!(iowq_workers(), 0);
        assert!(n.notify());
        p.poll(&mut ev, None).unwrap();
        assert_eq!(notified(&ev), 1);
    });
}

/// `examples/handoff.rs` as a real process: every producer's lines reach
/// the reader, each producer's in order, and it exits once all are read.
#[test]
fn the_handoff_example_delivers_every_line() {
    let bin = build_example("handoff");
    watchdog(Duration::from_secs(60), move || {
        const MESSAGES: usize = 50_000;
        const PRODUCERS: usize = 3;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out");
        mkfifo(&fifo);
        let run = ChildGuard::spawn(
            std::process::Command::new(bin)
                .arg(&fifo)
                .arg(MESSAGES.to_string())
                .arg(PRODUCERS.to_string()),
        );
        let reader = ChildGuard::spawn(
            std::process::Command::new("cat")
                .arg(&fifo)
                .stdout(std::process::Stdio::piped()),
        );
        let text = reader.wait_success(Duration::from_secs(30));
        run.wait_success(Duration::from_secs(30));
        let mut next: [usize; PRODUCERS] = std::array::from_fn(|id| id);
        let mut lines = 0;
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let (id, i): (usize, usize) = (words[1].parse().unwrap(), words[3].parse().unwrap());
            assert_eq!(i, next[id], "producer {id} out of order");
            next[id] += PRODUCERS;
            lines += 1;
        }
        assert_eq!(lines, MESSAGES);
    });
}
