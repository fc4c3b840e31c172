//! Many receivers, few registered buffers: a waiting read holds no buffer,
//! so data on any FIFO is read in the turn it arrives, in order, exactly
//! once.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use common::*;
use ringpipe::{Backend, Event, Events, FifoOptions, Proactor, ReadMode};

const FIFOS: usize = 256;

/// Opens `n` receivers (and a writer for each), then lets every read
/// reach the kernel and wait.
fn open_all(p: &mut Proactor, dir: &std::path::Path, opts: &FifoOptions, n: usize) -> Vec<File> {
    let mut writers = Vec::with_capacity(n);
    for i in 0..n {
        let path = dir.join(format!("f{i}"));
        p.open_receiver(&path, opts).unwrap();
        writers.push(
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
                .unwrap(),
        );
    }
    let mut ev = Events::with_capacity(16);
    p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
    assert!(ev.is_empty());
    writers
}

/// FIFOs written to before each poll: fewer than the 20 deferred
/// completions the kernel runs per wait (DEFER_TASKRUN), so the reads
/// woken by a round's writes all complete within one `io_uring_enter`.
const ROUND: usize = 16;

#[test]
fn every_waiting_receiver_reads_in_the_turn_its_data_arrives() {
    for mode in [ReadMode::Fixed, ReadMode::Multishot] {
        every_waiting_receiver_reads_in_turn(mode);
    }
}

fn every_waiting_receiver_reads_in_turn(mode: ReadMode) {
    watchdog(Duration::from_secs(60), move || {
        let dir = tempfile::tempdir().unwrap();
        // 4 registered buffers for 256 receivers.
        let mut p = Proactor::builder().buffers(4, 64 * 1024).build().unwrap();
        let opts = FifoOptions::new().create(true).read_mode(mode);
        let mut writers = open_all(&mut p, dir.path(), &opts, FIFOS);
        // Every receiver has its read in the kernel (a multishot one its
        // hang-up poll too), and none holds a buffer while it waits.
        let ops = match mode {
            ReadMode::Multishot => 2 * FIFOS,
            _ => FIFOS,
        };
        let s = p.snapshot();
        assert_eq!(s.transport_ops, ops, "{mode:?} {s:?}");
        assert_eq!(s.buffers_in_use, 0, "{s:?}");
        let mut ev = Events::with_capacity(FIFOS);
        let mut got = vec![false; FIFOS];
        for (round, chunk) in writers.chunks_mut(ROUND).enumerate() {
            for (k, w) in chunk.iter_mut().enumerate() {
                let i = round * ROUND + k;
                w.write_all(format!("{i:064}").as_bytes()).unwrap();
            }
            // One poll, one enter: each read armed before its data came
            // completes with it there, with no poll-then-read step that
            // would take another turn.
            let enters = p.snapshot().enters;
            p.poll(&mut ev, Some(Duration::from_secs(10))).unwrap();
            assert_eq!(p.snapshot().enters - enters, 1, "round {round}");
            let mut this_round = 0;
            for e in &ev {
                match e {
                    Event::Data { from, data } => {
                        let i: usize = std::str::from_utf8(data).unwrap().parse().unwrap();
                        assert_eq!(from.token().index as usize, i);
                        assert_eq!(i / ROUND, round, "data of another round");
                        assert!(!got[i], "twice on {i}");
                        got[i] = true;
                        this_round += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(
                this_round,
                chunk.len(),
                "round {round}: reads left for a later turn"
            );
        }
        assert!(got.iter().all(|g| *g));
        // Each receiver read once and waits again, still holding nothing
        // once the events are dropped.
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert!(ev.is_empty());
        let s = p.snapshot();
        assert_eq!((s.transport_ops, s.buffers_in_use), (ops, 0), "{s:?}");
    });
}

/// Small messages from many FIFOs through a provided ring of only 2
/// buffers, many rounds: every byte once, in order, per FIFO.
#[test]
fn small_messages_share_few_provided_buffers_exactly_once_in_order() {
    watchdog(Duration::from_secs(120), || {
        // Both modes, then both in one proactor (every other receiver).
        for mode in [Some(ReadMode::Fixed), Some(ReadMode::Multishot), None] {
            let dir = tempfile::tempdir().unwrap();
            let mut p = Proactor::builder()
                .buffers(2, 64 * 1024)
                .provided_buffers(2, 4096)
                .build()
                .unwrap();
            let mut writers = Vec::new();
            for half in [ReadMode::Fixed, ReadMode::Multishot] {
                let opts = FifoOptions::new()
                    .create(true)
                    .read_mode(mode.unwrap_or(half));
                let sub = dir.path().join(format!("{half:?}"));
                std::fs::create_dir(&sub).unwrap();
                writers.extend(open_all(&mut p, &sub, &opts, FIFOS / 2));
            }
            const ROUNDS: u32 = 40;
            let mut next = vec![0u32; FIFOS];
            let mut pending = vec![Vec::<u8>::new(); FIFOS];
            let mut ev = Events::with_capacity(1024);
            for round in 0..ROUNDS {
                for (i, w) in writers.iter_mut().enumerate() {
                    // 37 bytes: pieces never line up with buffer ends.
                    let msg = format!("{i:08}:{round:08}:{:018}\n", i as u64 * 7);
                    w.write_all(msg.as_bytes()).unwrap();
                }
                // Drain what arrived, checking each FIFO's stream.
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while next.iter().any(|n| *n <= round) {
                    assert!(std::time::Instant::now() < deadline, "{mode:?} stalled");
                    p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
                    for e in &ev {
                        let Event::Data { from, data } = e else {
                            panic!("{mode:?}: {e:?}");
                        };
                        let i = from.token().index as usize;
                        pending[i].extend_from_slice(data);
                        while let Some(end) = pending[i].iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending[i].drain(..=end).collect();
                            let want = format!("{i:08}:{:08}:{:018}\n", next[i], i as u64 * 7);
                            assert_eq!(line, want.as_bytes(), "{mode:?} FIFO {i}");
                            next[i] += 1;
                        }
                    }
                }
            }
            assert!(next.iter().all(|n| *n == ROUNDS));
        }
    });
}

/// Data on many FIFOs at once (a wave after a stall), taken in by
/// `proactor`: every message comes once; the events of each poll.
fn take_a_wave(mut p: Proactor) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let opts = FifoOptions::new().create(true);
    let mut writers = open_all(&mut p, dir.path(), &opts, FIFOS);
    for (i, w) in writers.iter_mut().enumerate() {
        w.write_all(format!("{i:064}").as_bytes()).unwrap();
    }
    let mut ev = Events::with_capacity(FIFOS);
    let mut got = vec![false; FIFOS];
    let mut polls = Vec::new();
    while got.iter().any(|g| !g) {
        assert!(polls.len() < FIFOS, "stalled after {polls:?}");
        p.poll(&mut ev, Some(Duration::from_secs(10))).unwrap();
        for e in &ev {
            let Event::Data { from, data } = e else {
                panic!("{e:?}");
            };
            let i: usize = std::str::from_utf8(data).unwrap().parse().unwrap();
            assert_eq!(from.token().index as usize, i);
            assert!(!got[i], "twice on {i}");
            got[i] = true;
        }
        polls.push(ev.len());
    }
    polls
}

/// One poll takes in more than the 20 reads the kernel completes per
/// `io_uring_enter` with deferred task work, and at most 64: what was
/// read first is not held back behind hundreds more (the fan-in tail).
#[test]
fn a_wave_over_many_fifos_comes_in_turns_of_at_most_64() {
    watchdog(Duration::from_secs(60), || {
        let p = Proactor::new().unwrap();
        let uring = p.backend().backend() == Backend::IoUring;
        let polls = take_a_wave(p);
        if uring {
            assert!(polls[0] > 40, "events per poll: {polls:?}");
            assert!(polls.iter().all(|&n| n <= 64), "events per poll: {polls:?}");
        }
    });
}

/// With batched waits a turn takes in as much of a wave as the provided
/// buffers hold (128 by default).
#[test]
fn with_batched_waits_a_turn_takes_in_more_of_a_wave() {
    watchdog(Duration::from_secs(60), || {
        let p = Proactor::builder()
            .batch_wait(16, Duration::from_micros(500))
            .build()
            .unwrap();
        let uring = p.backend().backend() == Backend::IoUring;
        let polls = take_a_wave(p);
        if uring {
            assert!(polls[0] > 64, "events per poll: {polls:?}");
        }
    });
}

/// Reads starved of buffers wait their turn, as many armed again per poll
/// as the ring has buffers for: with 2 buffers for 256 FIFOs, a receiver
/// paused while it waits is left alone until resumed, one closed while it
/// waits is skipped (its slot perhaps taken by a new receiver, served
/// too), and every other message comes once.
#[test]
fn starved_reads_wait_their_turn_through_pause_close_and_reuse() {
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::builder()
            .provided_buffers(2, 4096)
            .build()
            .unwrap();
        let opts = FifoOptions::new()
            .create(true)
            .read_mode(ReadMode::Multishot);
        let mut rxs = Vec::new();
        let mut writers = Vec::new();
        for i in 0..FIFOS {
            let path = dir.path().join(format!("f{i}"));
            rxs.push(p.open_receiver(&path, &opts).unwrap());
            writers.push(std::fs::OpenOptions::new().write(true).open(&path).unwrap());
        }
        for (i, w) in writers.iter_mut().enumerate() {
            w.write_all(format!("{i:08}").as_bytes()).unwrap();
        }
        let mut ev = Events::with_capacity(FIFOS);
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); FIFOS + 1];
        let take = |ev: &Events, got: &mut Vec<Vec<u8>>| {
            for e in ev {
                match e {
                    Event::Data { from, data } => {
                        got[from.token().index as usize].extend_from_slice(data)
                    }
                    Event::Closed { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
        };
        // One poll: two buffers, so nearly every read starves.
        p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
        take(&ev, &mut got);
        // Among those still waiting: pause one, close another.
        let waiting: Vec<usize> = (0..FIFOS).filter(|i| got[*i].is_empty()).collect();
        assert!(waiting.len() > FIFOS / 2, "{} waiting", waiting.len());
        let (paused, closed) = (waiting[0], waiting[1]);
        p.pause(rxs[paused]).unwrap();
        p.close(rxs[closed]).unwrap();
        // A new receiver may take the closed one's slot.
        let extra = dir.path().join("extra");
        let extra_rx = p.open_receiver(&extra, &opts).unwrap();
        let mut extra_w = std::fs::OpenOptions::new()
            .write(true)
            .open(&extra)
            .unwrap();
        extra_w.write_all(b"the new one").unwrap();
        let new_one = extra_rx.token().index as usize;
        let want = |i: usize| format!("{i:08}").into_bytes();
        let served = |got: &Vec<Vec<u8>>| {
            (0..FIFOS)
                .filter(|i| *i != paused && *i != closed)
                .all(|i| got[i] == want(i))
                && got[new_one] == b"the new one"
        };
        let mut polls = 0;
        while !served(&got) {
            polls += 1;
            assert!(polls < 10 * FIFOS, "stalled after {polls} polls");
            p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
            take(&ev, &mut got);
        }
        assert!(got[paused].is_empty(), "a paused receiver read");
        p.resume(rxs[paused]).unwrap();
        while got[paused].is_empty() {
            polls += 1;
            assert!(polls < 20 * FIFOS, "the resumed receiver never read");
            p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
            take(&ev, &mut got);
        }
        assert_eq!(got[paused], want(paused));
        // Closed, every one: nothing stays in flight (no wake-up kept
        // armed for a starved receiver that is gone).
        for (i, rx) in rxs.iter().enumerate() {
            if i != closed {
                p.close(*rx).unwrap();
            }
        }
        p.close(extra_rx).unwrap();
        let mut left = FIFOS;
        while left > 0 {
            polls += 1;
            assert!(polls < 30 * FIFOS, "{left} never closed");
            p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
            left -= ev
                .iter()
                .filter(|e| matches!(e, Event::Closed { .. }))
                .count();
        }
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        assert_eq!(p.snapshot().ops_in_flight, 0);
        drop(writers);
    });
}
