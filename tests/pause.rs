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
