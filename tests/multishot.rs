//! Multishot receivers: one armed read each, buffers from one shared ring.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use ringpipe::{CloseReason, Event, Events, FifoOptions, Proactor, ReadMode};

fn multishot() -> FifoOptions {
    FifoOptions::new()
        .create(true)
        .read_mode(ReadMode::Multishot)
}

#[test]
fn one_shot_multishot_receiver_sees_eof_through_the_hangup_poll() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let rx = p.open_receiver(&fifo, &multishot()).unwrap();
        // Idle before any writer: the hang-up poll must not fire.
        p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
        assert!(ev.is_empty());
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        w.write_all(b"hello ").unwrap();
        w.write_all(b"multishot").unwrap();
        drop(w);
        let mut got = Vec::new();
        let mut gone = false;
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| match e {
            Event::Data { data, .. } => {
                got.extend_from_slice(data);
                false
            }
            Event::PeerGone(t) => {
                gone |= *t == rx.token();
                false
            }
            Event::Closed { reason, .. } => {
                assert_eq!(*reason, CloseReason::Eof);
                true
            }
            _ => false,
        });
        assert!(gone);
        assert_eq!(got, b"hello multishot");
    });
}

#[test]
fn persistent_multishot_receiver_across_writers() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let rx = p
            .open_receiver(&fifo, &multishot().persistent(true))
            .unwrap();
        let mut got = Vec::new();
        let mut expected = Vec::new();
        let mut gone = 0;
        for w in 0..20 {
            let msg = format!("writer {w} says hello\n");
            expected.extend_from_slice(msg.as_bytes());
            std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .unwrap()
                .write_all(msg.as_bytes())
                .unwrap();
            // Wait for this writer's bytes and its EOF before the next one.
            poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
                match e {
                    Event::Data { data, .. } => got.extend_from_slice(data),
                    Event::PeerGone(t) if *t == rx.token() => gone += 1,
                    Event::Closed { .. } => panic!("a persistent receiver closed"),
                    _ => {}
                }
                got.len() == expected.len() && gone == w + 1
            });
        }
        assert_eq!(got, expected);
        // Idle after the last writer left: each poll waits in the kernel
        // until its timeout, in one or two enters. A multishot read
        // re-armed at EOF would complete again and again, each completion
        // ending a wait early: many more enters, or events.
        let enters = p.snapshot().enters;
        for _ in 0..5 {
            p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
            assert!(ev.is_empty());
        }
        let idle_enters = p.snapshot().enters - enters;
        assert!(
            idle_enters <= 10,
            "idle multishot receiver spins: {idle_enters} enters"
        );
    });
}

#[test]
fn sixty_four_mib_in_order() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(1024);
        p.open_receiver(&fifo, &multishot().pipe_size(1 << 20))
            .unwrap();
        const TOTAL: usize = 64 << 20;
        let path = fifo.clone();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut chunk = vec![0u8; 1 << 20];
            for i in 0..TOTAL / chunk.len() {
                pattern((i * chunk.len()) as u64, &mut chunk);
                f.write_all(&chunk).unwrap();
            }
        });
        let mut offset = 0u64;
        let mut expected = Vec::new();
        poll_until(&mut p, &mut ev, Duration::from_secs(100), |e| match e {
            Event::Data { data, .. } => {
                expected.resize(data.len(), 0);
                pattern(offset, &mut expected);
                assert!(**data == expected[..], "bytes differ at {offset}");
                offset += data.len() as u64;
                false
            }
            Event::Closed { reason, .. } => {
                assert_eq!(*reason, CloseReason::Eof);
                true
            }
            _ => false,
        });
        writer.join().unwrap();
        assert_eq!(offset, TOTAL as u64);
    });
}

#[test]
fn a_thousand_receivers_share_a_small_ring() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        // 16 buffers for 1000 receivers: the ring runs dry, reads end with
        // -ENOBUFS and resume when buffers come back.
        let mut p = Proactor::builder()
            .provided_buffers(16, 4096)
            .registered_files(2048)
            .build()
            .unwrap();
        let mut ev = Events::with_capacity(1024);
        let threads_before = threads();
        let opts = multishot();
        let rxs: Vec<_> = (0..1000)
            .map(|i| {
                p.open_receiver(dir.path().join(format!("f{i}")), &opts)
                    .unwrap()
            })
            .collect();
        p.poll(&mut ev, Some(Duration::from_millis(50))).unwrap();
        for i in 0..1000 {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join(format!("f{i}")))
                .unwrap();
            w.write_all(format!("message {i}").as_bytes()).unwrap();
        }
        let mut got = vec![String::new(); 1000];
        let mut closed = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(100), |e| {
            match e {
                Event::Data { from, data } => {
                    let i = rxs.iter().position(|r| r == from).unwrap();
                    got[i].push_str(std::str::from_utf8(data).unwrap());
                }
                Event::Closed { .. } => closed += 1,
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            closed == 1000
        });
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, format!("message {i}"));
        }
        // Saturating: a thread counted before (the previous test's, still
        // exiting) may be gone now.
        let extra = threads().saturating_sub(threads_before);
        assert!(extra <= 4, "{extra} threads for 1000 receivers");
        assert_eq!(p.snapshot().ops_in_flight, 0);
    });
}

#[test]
fn anonymous_pipe_multishot() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let (r, w) = pipe();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        p.receiver_from_fd(r, ReadMode::Multishot).unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"through an anonymous pipe").unwrap();
        drop(w);
        let mut got = Vec::new();
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| match e {
            Event::Data { data, .. } => {
                got.extend_from_slice(data);
                false
            }
            Event::Closed { reason, .. } => {
                assert_eq!(*reason, CloseReason::Eof);
                true
            }
            _ => false,
        });
        assert_eq!(got, b"through an anonymous pipe");
    });
}
