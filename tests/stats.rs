//! Counters a dashboard reads: per transport (`Proactor::stats`: frames,
//! reconnects, waiting time, queue high water) and proactor-wide
//! (`Proactor::snapshot`), checked against what real processes wrote and
//! read through real FIFOs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ringpipe::frame::Codec;
use ringpipe::{CloseReason, Event, Events, FifoOptions, Proactor, ReadMode, State};

/// A writer process: `count` lines `<session>:<i>` into the FIFO, then
/// it closes it. Arguments: path, session, count.
const LINES_PY: &str = r#"
import os, sys, signal
signal.alarm(60)
path, session, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY)
os.write(fd, b''.join(b'%d:%d\n' % (session, i) for i in range(count)))
os.close(fd)
"#;

/// `stats(token).waiting`, read between two clock readings: `waiting`
/// is a clock the library reads, so tests compare it only with intervals
/// the test itself saw pass, never with a fixed figure.
#[derive(Clone, Copy, Debug)]
struct Reading {
    before: Instant,
    waiting: Duration,
    after: Instant,
}

fn reading(p: &Proactor, token: impl Into<ringpipe::Token>) -> Reading {
    let before = Instant::now();
    let waiting = p.stats(token).unwrap().waiting;
    Reading {
        before,
        waiting,
        after: Instant::now(),
    }
}

/// `b.waiting - a.waiting`, which a wait of `at_least` between the
/// readings must reach and the time between them bounds.
fn assert_grew(a: Reading, b: Reading, at_least: Duration, what: &str) {
    let grew = b.waiting.checked_sub(a.waiting).unwrap_or_else(|| {
        panic!("{what}: waiting went down from {a:?} to {b:?}");
    });
    assert!(
        grew >= at_least,
        "{what}: grew {grew:?}, waited at least {at_least:?}"
    );
    let most = b.after - a.before;
    assert!(grew <= most, "{what}: grew {grew:?} in {most:?}");
}

/// Three writer sessions, one after the other, into one persistent frame
/// receiver: each session starts only once the receiver has seen the
/// previous one leave, so every return is a reconnect.
fn persistent_receiver_sessions(mode: ReadMode) {
    watchdog(Duration::from_secs(60), move || {
        const SESSIONS: usize = 3;
        const LINES: usize = 500;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let opts = FifoOptions::new()
            .create(true)
            .persistent(true)
            .read_mode(mode)
            .frames(Codec::Lines, 64);
        let rx = p.open_receiver(&fifo, &opts).unwrap();
        let fresh = p.stats(rx).unwrap();
        assert_eq!((fresh.frames_in, fresh.reconnects), (0, 0));
        assert_eq!(fresh.waiting, Duration::ZERO, "a receiver is Open at once");

        let (mut frames, mut bytes, mut gone, mut back) = (0u64, 0u64, 0u64, 0u64);
        // The last reading, and when the last writer was seen gone.
        let mut last = reading(&p, rx);
        let mut left_at = None;
        for session in 0..SESSIONS {
            if let Some(left_at) = left_at {
                // No writer: it waits, at the clock's pace.
                std::thread::sleep(Duration::from_millis(1));
                let now = reading(&p, rx);
                assert_grew(last, now, now.before - last.after, "with no writer");
                assert!(now.waiting >= now.before - left_at);
                last = now;
            } else {
                assert_eq!(reading(&p, rx).waiting, Duration::ZERO, "before any writer");
            }
            let args: [&dyn AsRef<std::ffi::OsStr>; 3] =
                [&fifo, &session.to_string(), &LINES.to_string()];
            let spawned = Instant::now();
            let writer = ChildGuard::spawn(&mut python(LINES_PY, &args));
            let mut i = 0;
            let mut left = false;
            poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
                match e {
                    Event::Frame { frame, .. } => {
                        assert_eq!(*frame, format!("{session}:{i}").as_bytes());
                        bytes += frame.len() as u64 + 1;
                        frames += 1;
                        i += 1;
                    }
                    Event::PeerGone(t) if *t == rx.token() => {
                        gone += 1;
                        left = true;
                        // It has been waiting since before this poll returned.
                        left_at = Some(Instant::now());
                    }
                    Event::PeerBack(t) if *t == rx.token() => back += 1,
                    Event::Closed { .. } => panic!("a persistent receiver closed"),
                    Event::Error { error, .. } => panic!("{error}"),
                    _ => {}
                }
                left && i == LINES
            });
            writer.wait_success(Duration::from_secs(30));
            let s = p.stats(rx).unwrap();
            assert_eq!(s.frames_in, frames, "session {session}");
            assert_eq!(s.bytes_read, bytes, "session {session}");
            assert_eq!(s.reconnects, back, "session {session}");
            assert_eq!(s.reconnects, session as u64, "session {session}");
            // It waited from the last reading until this writer existed
            // (if a writer had left before), and since this one left.
            let now = reading(&p, rx);
            let before_writer = match session {
                0 => Duration::ZERO,
                _ => spawned - last.after,
            };
            let since_left = now.before - left_at.unwrap();
            let what = format!("session {session}");
            assert_grew(last, now, before_writer + since_left, &what);
            last = now;
        }
        assert_eq!(frames, (SESSIONS * LINES) as u64);
        assert_eq!((gone, back), (SESSIONS as u64, SESSIONS as u64 - 1));
        // Nothing sent, so nothing counted on the send side.
        let s = p.stats(rx).unwrap();
        assert_eq!(
            (s.frames_out, s.bytes_queued, s.queue_high_water),
            (0, 0, 0)
        );
    });
}

#[test]
fn persistent_receiver_counts_frames_and_reconnects_fixed() {
    persistent_receiver_sessions(ReadMode::Fixed);
}

#[test]
fn persistent_receiver_counts_frames_and_reconnects_multishot() {
    persistent_receiver_sessions(ReadMode::Multishot);
}

/// Frames out: every frame `send_frames` accepted, as `cat` saw them.
#[test]
fn frames_out_count_what_the_reader_got() {
    watchdog(Duration::from_secs(60), || {
        const FRAMES: u64 = 10_000;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let out = dir.path().join("out");
        mkfifo(&fifo);
        let file = std::fs::File::create(&out).unwrap();
        let cat = ChildGuard::spawn(Command::new("cat").arg(&fifo).stdout(Stdio::from(file)));
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let tx = p.open_sender(&fifo, &FifoOptions::new()).unwrap();
        let mut expected = Vec::new();
        let mut n = 0u64;
        let mut refused = 0u64;
        while n < FRAMES {
            let line = format!("frame {n}");
            match p.send_frames(tx, Codec::Lines, &[line.as_bytes()]) {
                Ok(()) => {
                    expected.extend_from_slice(line.as_bytes());
                    expected.push(b'\n');
                    n += 1;
                }
                Err(ringpipe::Error::WouldBlock { .. }) => {
                    refused += 1;
                    p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        // A payload the codec cannot carry is refused and counts nothing.
        assert!(p.send_frames(tx, Codec::Lines, &[b"two\nlines"]).is_err());
        let s = p.stats(tx).unwrap();
        assert_eq!(s.frames_out, FRAMES, "{refused} sends were refused");
        assert_eq!(s.bytes_queued, expected.len() as u64);
        assert_eq!((s.frames_in, s.bytes_read, s.reconnects), (0, 0, 0));
        close_flushed(&mut p, &mut ev, tx, Duration::from_secs(30));
        cat.wait_success(Duration::from_secs(30));
        assert!(std::fs::read(&out).unwrap() == expected, "bytes differ");
    });
}

/// A sender opened before its reader, whose reader leaves and a second
/// one comes: one reconnect, exact bytes, waiting that grows only while
/// no reader is there.
#[test]
fn sender_reader_leaves_and_returns_counts_one_reconnect() {
    watchdog(Duration::from_secs(60), || {
        const FIRST: usize = 100_000;
        const SECOND: usize = 50_000;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut data = vec![0u8; FIRST + SECOND];
        pattern(0, &mut data);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let opts = FifoOptions::new().create(true).watermarks(1 << 20, 1 << 19);
        let opening = Instant::now();
        let tx = p.open_sender(&fifo, &opts).unwrap();
        let opened = Instant::now();
        assert_eq!(p.state(tx).unwrap(), State::Opening);
        p.send(tx, &data[..FIRST]).unwrap();

        // First reader: takes exactly the first part, then leaves.
        let out1 = dir.path().join("out1");
        let args: [&dyn AsRef<std::ffi::OsStr>; 3] = [&fifo, &FIRST.to_string(), &out1];
        let spawned = Instant::now();
        let reader = ChildGuard::spawn(&mut python(EXACT_READ_PY, &args));
        let mut accepted = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
            if let Event::Sent { bytes, .. } = e {
                accepted += bytes;
            }
            accepted == FIRST
        });
        reader.wait_success(Duration::from_secs(30));
        let open = p.stats(tx).unwrap();
        let open_at = reading(&p, tx);
        assert_eq!(open.reconnects, 0, "a first reader is no reconnect");
        // It waited from its open until a reader existed, and waits no
        // more: Open.
        assert!(open.waiting >= spawned - opened, "{open:?}");
        assert!(open.waiting <= open_at.before - opening, "{open:?}");
        assert_eq!(p.state(tx).unwrap(), State::Open);
        assert_eq!(open_at.waiting, open.waiting);

        // The reader is gone: the next write meets EPIPE.
        p.send(tx, &data[FIRST..]).unwrap();
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(30),
            |e| matches!(e, Event::PeerGone(t) if *t == tx.token()),
        );
        let left_at = Instant::now();
        // Not a timing: a wait the readings below must account for.
        std::thread::sleep(Duration::from_millis(1));
        let gone = p.stats(tx).unwrap();
        let gone_at = reading(&p, tx);
        assert_eq!(gone.reconnects, 0);
        assert_eq!(gone.bytes_accepted, FIRST as u64);
        // Waiting again since the reader left (after the last reading),
        // and at least since its departure was reported.
        assert_grew(open_at, gone_at, gone_at.before - left_at, "reader gone");
        assert!(gone_at.waiting - open.waiting <= gone_at.after - open_at.after);

        // Second reader: `cat` to EOF.
        let out2 = dir.path().join("out2");
        let file = std::fs::File::create(&out2).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        let spawned = Instant::now();
        let cat = ChildGuard::spawn(Command::new("cat").arg(&fifo).stdout(Stdio::from(file)));
        let mut back = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
            match e {
                Event::PeerBack(t) if *t == tx.token() => back += 1,
                Event::Sent { bytes, .. } => accepted += bytes,
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            accepted == FIRST + SECOND
        });
        let s = p.stats(tx).unwrap();
        assert_eq!((s.reconnects, back), (1, 1));
        assert_eq!(s.bytes_queued, (FIRST + SECOND) as u64);
        assert_eq!(s.bytes_accepted, (FIRST + SECOND) as u64);
        assert_eq!(s.bytes_unsent(), 0);
        // It waited from the last reading until the second reader
        // existed, and no longer than the time between the readings.
        let back_at = reading(&p, tx);
        assert_grew(gone_at, back_at, spawned - gone_at.after, "second reader");
        assert_eq!(reading(&p, tx).waiting, back_at.waiting, "Open: no wait");
        // The largest backlog: the first part, queued before any reader.
        assert_eq!(s.queue_high_water, FIRST as u64);
        assert_eq!((s.frames_in, s.frames_out), (0, 0));

        p.close_after_flush(tx).unwrap();
        poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
            matches!(
                e,
                Event::Closed {
                    reason: CloseReason::Flushed,
                    ..
                }
            )
        });
        cat.wait_success(Duration::from_secs(30));
        let mut got = std::fs::read(&out1).unwrap();
        got.extend_from_slice(&std::fs::read(&out2).unwrap());
        assert!(got == data, "bytes lost, duplicated or reordered");
        assert!(matches!(p.stats(tx), Err(ringpipe::Error::Closed { .. })));
    });
}

/// The high-water mark is the largest backlog: 1 MiB queued with no
/// reader is exactly 1 MiB, and draining it later does not lower it.
#[test]
fn queue_high_water_is_the_largest_backlog() {
    watchdog(Duration::from_secs(60), || {
        const MIB: usize = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let opts = FifoOptions::new().create(true).watermarks(4 * MIB, MIB);
        let tx = p.open_sender(&fifo, &opts).unwrap();
        let mut data = vec![0u8; MIB];
        pattern(7, &mut data);
        for piece in data.chunks(64 * 1024) {
            p.send(tx, piece).unwrap();
            p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        }
        let s = p.stats(tx).unwrap();
        assert_eq!(p.state(tx).unwrap(), State::Opening);
        assert_eq!(s.queue_high_water, MIB as u64);
        assert_eq!(s.bytes_unsent(), MIB as u64);

        let out = dir.path().join("out");
        let file = std::fs::File::create(&out).unwrap();
        let cat = ChildGuard::spawn(Command::new("cat").arg(&fifo).stdout(Stdio::from(file)));
        let mut accepted = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
            if let Event::Sent { bytes, .. } = e {
                accepted += bytes;
            }
            accepted == MIB
        });
        // A small send after the drain: the mark stays at the old peak.
        p.send(tx, b"tail").unwrap();
        let s = p.stats(tx).unwrap();
        assert_eq!(s.queue_high_water, MIB as u64);
        p.close_after_flush(tx).unwrap();
        poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
            matches!(
                e,
                Event::Closed {
                    reason: CloseReason::Flushed,
                    ..
                }
            )
        });
        cat.wait_success(Duration::from_secs(30));
        data.extend_from_slice(b"tail");
        assert!(std::fs::read(&out).unwrap() == data);
    });
}

/// The snapshot counts the transports by state and kind as the test opens
/// and closes them; the transports' operations drop to zero once all are
/// closed.
#[test]
fn snapshot_counts_follow_opens_and_closes() {
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let empty = p.snapshot();
        assert_eq!(empty.transports(), 0);
        assert_eq!((empty.senders, empty.receivers), (0, 0));
        assert_eq!(empty.ops_in_flight, 0);
        assert_eq!(empty.transport_ops, 0);
        assert_eq!(empty.buffers_in_use, 0);

        let create = FifoOptions::new().create(true);
        // Two receivers: open at once, each with a read in flight.
        let rx1 = p.open_receiver(dir.path().join("r1"), &create).unwrap();
        let rx2 = p
            .open_receiver(dir.path().join("r2"), &create.clone().persistent(true))
            .unwrap();
        // Two senders with no reader: opening.
        let w1 = p.open_sender(dir.path().join("w1"), &create).unwrap();
        let w2 = p.open_sender(dir.path().join("w2"), &create).unwrap();
        // A sender with a reader that then leaves: peer gone.
        let gone_path = dir.path().join("g");
        mkfifo(&gone_path);
        let reader = nonblocking_reader(&gone_path);
        let g = p.open_sender(&gone_path, &FifoOptions::new()).unwrap();
        let s = p.snapshot();
        assert_eq!(
            (s.opening, s.open, s.peer_gone, s.closing),
            (2, 3, 0, 0),
            "{s:?}"
        );
        assert_eq!((s.senders, s.receivers, s.transports()), (3, 2, 5));

        close_last_end(reader);
        p.send(g, b"nobody reads this").unwrap();
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(10),
            |e| matches!(e, Event::PeerGone(t) if *t == g.token()),
        );
        let s = p.snapshot();
        assert_eq!((s.opening, s.open, s.peer_gone), (2, 2, 1), "{s:?}");
        assert!(s.transport_ops >= 2, "the receivers' reads: {s:?}");
        assert!(s.ops_in_flight >= s.transport_ops);
        assert!(s.buffers_total > 0);
        assert!(s.buffers_in_use <= s.buffers_total);
        assert!(s.enters > 0);

        // A close is under way until its operations are reaped.
        p.close(rx1).unwrap();
        let s = p.snapshot();
        assert_eq!((s.closing, s.transports()), (1, 5), "{s:?}");

        for t in [rx2.token(), w1.token(), w2.token(), g.token()] {
            p.close(t).unwrap();
        }
        let mut closed = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            closed += matches!(e, Event::Closed { .. }) as usize;
            closed == 5
        });
        ev.clear();
        let s = p.snapshot();
        assert_eq!(s.transports(), 0, "{s:?}");
        assert_eq!((s.senders, s.receivers), (0, 0));
        assert_eq!(s.transport_ops, 0, "{s:?}");
        assert_eq!(s.buffers_in_use, 0, "{s:?}");
        assert_eq!(s.registered_files, 0, "{s:?}");
        // The proactor's own operations (the retry timer and the open
        // watch of the senders that waited) end on their own once no
        // sender waits: then nothing at all is in flight.
        while p.snapshot().ops_in_flight > 0 {
            p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
        }
    });
}
