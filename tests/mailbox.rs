//! A `Mailbox` hands items from other threads to the proactor: each once,
//! in each sender's order, with no lost wake-up; a send writes the eventfd
//! only for a proactor asleep; senders and the mailbox may go in any order.
//! (Each test takes `serial`: one counts the process's fds.)

mod common;

use std::sync::mpsc::{SendError, TrySendError};
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, MailSender, Mailbox, Proactor};

fn notified(ev: &Events) -> usize {
    ev.iter()
        .filter(|e| matches!(e, Event::Notified(_)))
        .count()
}

/// Write syscalls made so far by thread `tid` of this process (task I/O
/// accounting), or `None` where the kernel does not keep them.
fn writes_by(tid: i32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/self/task/{tid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn halves_are_send_and_the_sender_clones() {
    fn sender<T: Send + Sync + Clone>() {}
    fn mailbox<T: Send>() {}
    sender::<MailSender<Vec<u8>>>();
    mailbox::<Mailbox<Vec<u8>>>();
}

#[test]
fn every_item_arrives_once_in_order_with_no_lost_wake_up() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        const PRODUCERS: usize = 4;
        const PER: u64 = 50_000;
        let mut p = Proactor::new().unwrap();
        // Small: senders block for room again and again.
        let (tx, mut mailbox) = p.mailbox::<(usize, u64)>(64).unwrap();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        tx.send((id, i)).unwrap();
                        if i % 5000 == 0 {
                            // The proactor falls asleep meanwhile.
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u64; PRODUCERS];
        let mut ev = Events::with_capacity(8);
        let mut got = Vec::new();
        let mut polls = 0u64;
        loop {
            // Sleeps in the kernel: only a send (or the last sender
            // leaving) can end this poll.
            p.poll(&mut ev, None).unwrap();
            polls += 1;
            assert_eq!(notified(&ev), 1, "a poll returned with nothing");
            let disconnected = mailbox.is_disconnected();
            mailbox.take(&mut got);
            for (id, i) in got.drain(..) {
                assert_eq!(i, next[id], "sender {id} out of order");
                next[id] += 1;
            }
            if disconnected {
                break;
            }
        }
        assert_eq!(next, [PER; PRODUCERS], "items lost");
        for t in producers {
            t.join().unwrap();
        }
        // Nothing left over: the eventfd READ waits again.
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert_eq!(notified(&ev), 0, "a wake-up with nothing behind it");
        assert_eq!(p.snapshot().ops_in_flight, 1);
        println!("{} items, {polls} polls", PRODUCERS as u64 * PER);
    });
}

#[test]
fn a_send_writes_the_eventfd_only_for_a_sleeping_proactor() {
    let _serial = serial();
    watchdog(Duration::from_secs(20), || {
        let mut p = Proactor::new().unwrap();
        let (tx, mut mailbox) = p.mailbox::<u32>(4096).unwrap();
        let mut ev = Events::with_capacity(8);
        let mut got = Vec::new();
        let me = nix::unistd::gettid().as_raw();
        let Some(before) = writes_by(me) else {
            skip(
                "a_send_writes_the_eventfd_only_for_a_sleeping_proactor",
                "no per-thread I/O accounting (/proc/self/task/*/io)",
            );
            return;
        };
        // New, the mailbox counts the proactor asleep: the first send
        // writes once.
        tx.send(0).unwrap();
        assert_eq!(writes_by(me), Some(before + 1));
        p.poll(&mut ev, None).unwrap();
        assert_eq!(notified(&ev), 1);
        assert_eq!(mailbox.take(&mut got), 1);
        // The proactor is awake (it looked, and has not slept since):
        // a thousand sends write nothing, and its next poll sees them.
        let sender = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let tid = nix::unistd::gettid().as_raw();
                let w0 = writes_by(tid).unwrap();
                for i in 1..=1000 {
                    tx.send(i).unwrap();
                }
                writes_by(tid).unwrap() - w0
            })
        };
        assert_eq!(
            sender.join().unwrap(),
            0,
            "sends to an awake proactor wrote"
        );
        p.poll(&mut ev, None).unwrap();
        assert_eq!(notified(&ev), 1);
        assert_eq!(mailbox.take(&mut got), 1000);
        // Asleep in the kernel: one send wakes it, with one write.
        let poller = me;
        let waker = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                wait_until_asleep_in_enter(poller);
                let tid = nix::unistd::gettid().as_raw();
                let w0 = writes_by(tid).unwrap();
                tx.send(1001).unwrap();
                tx.send(1002).unwrap();
                writes_by(tid).unwrap() - w0
            })
        };
        p.poll(&mut ev, None).unwrap();
        assert_eq!(notified(&ev), 1);
        assert_eq!(waker.join().unwrap(), 1, "one write per sleep");
        mailbox.take(&mut got);
        assert_eq!(got, (0..=1002).collect::<Vec<_>>());
    });
}

#[test]
fn a_proactor_that_took_everything_sleeps_until_the_next_send() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        const ROUNDS: u64 = 200;
        const BURST: u64 = 2_000;
        let mut p = Proactor::new().unwrap();
        let (tx, mut mailbox) = p.mailbox::<u64>(1024).unwrap();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let sender = std::thread::spawn(move || {
            // Bursts, each after the proactor caught up with the last,
            // sent while it takes (takes leave items behind again and
            // again, and the last take of a burst catches up).
            let mut next = 0;
            while go_rx.recv().is_ok() {
                for _ in 0..BURST {
                    tx.send(next).unwrap();
                    next += 1;
                    for _ in 0..100 {
                        std::hint::spin_loop();
                    }
                }
            }
        });
        let mut ev = Events::with_capacity(8);
        let mut got = Vec::new();
        for round in 1..=ROUNDS {
            go_tx.send(()).unwrap();
            // Busy, as under load: no sleep in between.
            while (got.len() as u64) < round * BURST {
                p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
                mailbox.take(&mut got);
            }
            // Everything taken, the sender quiet but there: a poll sleeps
            // its timeout out (the first may report what the last take
            // already took).
            p.poll(&mut ev, Some(Duration::from_millis(1))).unwrap();
            p.poll(&mut ev, Some(Duration::from_millis(1))).unwrap();
            assert_eq!(notified(&ev), 0, "round {round}");
        }
        assert_eq!(got, (0..ROUNDS * BURST).collect::<Vec<_>>());
        drop(go_tx);
        sender.join().unwrap();
    });
}

#[test]
fn a_busy_poll_sees_items_without_sleeping() {
    let _serial = serial();
    watchdog(Duration::from_secs(20), || {
        let mut p = Proactor::new().unwrap();
        let (tx, mut mailbox) = p.mailbox::<u64>(16).unwrap();
        let mut ev = Events::with_capacity(8);
        let sender = std::thread::spawn(move || {
            for i in 0..10_000 {
                tx.send(i).unwrap();
            }
        });
        let mut got = Vec::new();
        let mut next = 0;
        loop {
            p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
            if notified(&ev) == 0 {
                continue;
            }
            let disconnected = mailbox.is_disconnected();
            mailbox.take(&mut got);
            for i in got.drain(..) {
                assert_eq!(i, next);
                next += 1;
            }
            if disconnected {
                break;
            }
        }
        sender.join().unwrap();
        assert_eq!(next, 10_000);
    });
}

#[test]
fn the_last_sender_leaving_wakes_the_proactor() {
    let _serial = serial();
    watchdog(Duration::from_secs(20), || {
        let mut p = Proactor::new().unwrap();
        let (tx, mut mailbox) = p.mailbox::<u8>(8).unwrap();
        let tx2 = tx.clone();
        let mut ev = Events::with_capacity(8);
        let me = nix::unistd::gettid().as_raw();
        let t = std::thread::spawn(move || {
            tx2.send(7).unwrap();
            drop(tx2);
            wait_until_asleep_in_enter(me);
            drop(tx);
        });
        let mut got = Vec::new();
        while !mailbox.is_disconnected() {
            p.poll(&mut ev, None).unwrap();
            assert_eq!(notified(&ev), 1);
            mailbox.take(&mut got);
        }
        mailbox.take(&mut got);
        assert_eq!(got, [7]);
        t.join().unwrap();
    });
}

#[test]
fn sends_fail_with_the_item_once_the_mailbox_is_gone() {
    let _serial = serial();
    watchdog(Duration::from_secs(20), || {
        let mut p = Proactor::new().unwrap();
        let (tx, mut mailbox) = p.mailbox::<String>(1).unwrap();
        // Rounded up to a power of two, at least 2.
        assert_eq!(mailbox.capacity(), 2);
        tx.send("a".into()).unwrap();
        tx.try_send("b".into()).unwrap();
        assert_eq!(
            tx.try_send("b2".into()),
            Err(TrySendError::Full("b2".into()))
        );
        // A sender blocked for room is released by the drop, item back.
        let blocked = {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send("c".into()))
        };
        std::thread::sleep(Duration::from_millis(50));
        let mut got = Vec::new();
        let mut ev = Events::with_capacity(8);
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        // The proactor forgets a dropped mailbox at its next look.
        drop(std::mem::replace(
            &mut mailbox,
            p.mailbox::<String>(1).unwrap().1,
        ));
        assert_eq!(blocked.join().unwrap(), Err(SendError("c".into())));
        assert_eq!(tx.send("d".into()), Err(SendError("d".into())));
        assert_eq!(
            tx.try_send("e".into()),
            Err(TrySendError::Disconnected("e".into()))
        );
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert_eq!(mailbox.take(&mut got), 0);
    });
}

#[test]
fn a_mailbox_outlives_its_proactor() {
    let _serial = serial();
    watchdog(Duration::from_secs(20), || {
        let fds = open_fds();
        let mut p = Proactor::new().unwrap();
        let (tx, mut mailbox) = p.mailbox::<u32>(4).unwrap();
        let mut ev = Events::with_capacity(8);
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        drop(p);
        // Sends still queue (no wake-up to make), and are taken.
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let mut got = Vec::new();
        assert_eq!(mailbox.take(&mut got), 2);
        assert_eq!(got, [1, 2]);
        // The eventfd goes with the last handle on it.
        drop((tx, mailbox));
        assert_eq!(open_fds(), fds);
    });
}
