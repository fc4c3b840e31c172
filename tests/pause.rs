//! Pausing a receiver leaves data in the pipe; resuming delivers all of it.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, Proactor};

#[test]
fn paused_receiver_reads_nothing_and_resume_delivers_everything() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let rx = p
            .open_receiver(&fifo, &FifoOptions::new().create(true))
            .unwrap();
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        writer.write_all(b"before ").unwrap();
        let mut got = Vec::new();
        poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
            if let Event::Data { data, .. } = e {
                got.extend_from_slice(data);
            }
            got.len() == 7
        });
        p.pause(rx).unwrap();
        // The cancel of the armed read goes out with the next poll; data that
        // arrived before it would still be delivered (nothing is dropped).
        p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
        assert!(ev.iter().all(|e| !matches!(e, Event::Data { .. })));
        assert_eq!(p.snapshot().ops_in_flight, 0, "the read is still armed");
        writer.write_all(&[b'x'; 40_000]).unwrap();
        for _ in 0..10 {
            p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
            for e in &ev {
                if let Event::Data { data, .. } = e {
                    got.extend_from_slice(data);
                }
            }
        }
        assert_eq!(got.len(), 7, "read while paused");
        p.resume(rx).unwrap();
        drop(writer);
        poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
            if let Event::Data { data, .. } = e {
                got.extend_from_slice(data);
            }
            matches!(e, Event::PeerGone(_))
        });
        assert_eq!(got.len(), 7 + 40_000);
        assert!(got.starts_with(b"before ") && got[7..].iter().all(|&b| b == b'x'));
    });
}

/// Paused and resumed in one turn, each of a multishot receiver's two
/// operations (its read and its hang-up poll) is cancelled and must be
/// armed again once its cancel lands: without the hang-up poll, a FIFO's
/// multishot read never reports that its writer left.
#[test]
fn pause_and_resume_in_one_turn_still_sees_the_writer_leave() {
    watchdog(Duration::from_secs(30), || {
        for mode in [ringpipe::ReadMode::Multishot, ringpipe::ReadMode::Fixed] {
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join("f");
            let mut p = Proactor::new().unwrap();
            let mut ev = Events::default();
            let rx = p
                .open_receiver(&fifo, &FifoOptions::new().create(true).read_mode(mode))
                .unwrap();
            let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            writer.write_all(b"first").unwrap();
            let mut got = Vec::new();
            poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
                if let Event::Data { data, .. } = e {
                    got.extend_from_slice(data);
                }
                got.len() == 5
            });
            // Both calls before the next poll: the cancels are in flight
            // when the receiver reads again.
            p.pause(rx).unwrap();
            p.resume(rx).unwrap();
            writer.write_all(&[b'x'; 20_000]).unwrap();
            drop(writer);
            poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
                if let Event::Data { data, .. } = e {
                    got.extend_from_slice(data);
                }
                matches!(e, Event::PeerGone(_))
            });
            assert_eq!(got.len(), 5 + 20_000, "{mode:?}");
        }
    });
}

/// The bytes of the `Data` events of one poll.
fn data_bytes(ev: &Events) -> usize {
    ev.iter()
        .map(|e| match e {
            Event::Data { data, .. } => data.len(),
            _ => 0,
        })
        .sum()
}

/// A writer that keeps pace with the reads (a process writing 8 MiB), and
/// a pause made after a poll that brought several reads' worth: what came
/// before the pause, what came after (on epoll, nothing: a read cancelled
/// before it ran is not performed, and no read takes more than a bounded
/// number of buffers in one poll), and what the resume delivers add up to
/// the stream exactly, and the pause held the writer back (not all of it
/// was read before the resume).
#[test]
fn a_pause_stops_reading_against_a_writer_that_keeps_pace() {
    const LEN: usize = 8 << 20;
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let rx = p
            .open_receiver(&fifo, &FifoOptions::new().create(true))
            .unwrap();
        let writer = ChildGuard::spawn(std::process::Command::new("sh").args([
            "-c",
            &format!("head -c {LEN} /dev/zero > \"$0\""),
            fifo.to_str().unwrap(),
        ]));
        // Paused after a poll that brought several reads' worth, as a
        // relay whose output filled up would.
        let mut before = 0;
        loop {
            p.poll(&mut ev, Some(Duration::from_secs(5))).unwrap();
            let got = data_bytes(&ev);
            before += got;
            if got >= 128 << 10 || before >= LEN / 2 {
                break;
            }
        }
        p.pause(rx).unwrap();
        // Paused: the pipe fills and the writer waits.
        std::thread::sleep(Duration::from_millis(50));
        let mut after = 0;
        for _ in 0..20 {
            p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
            after += data_bytes(&ev);
        }
        if on_epoll() {
            assert_eq!(after, 0, "read after the pause");
        }
        assert!(
            before + after < LEN,
            "everything was read despite the pause"
        );
        p.resume(rx).unwrap();
        let mut rest = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| match e {
            Event::Data { data, .. } => {
                rest += data.len();
                false
            }
            Event::Closed { .. } => true,
            _ => false,
        });
        assert_eq!(before + after + rest, LEN);
        writer.wait_success(Duration::from_secs(10));
    });
}
