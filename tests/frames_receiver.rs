//! Receivers that deliver whole frames: split frames reassembled, oversized
//! ones a typed error that closes only that receiver.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;
use ringpipe::frame::{Codec, FrameError};
use ringpipe::{CloseReason, Error, Event, Events, FifoOptions, Proactor};

#[test]
fn length_prefixed_frames_of_any_size_arrive_whole_and_in_order() {
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(1024);
        let opts = FifoOptions::new()
            .create(true)
            .frames(Codec::LengthPrefixed, 1 << 20);
        let rx = p.open_receiver(&fifo, &opts).unwrap();
        // Sizes from 0 to 300,000 bytes: many frames per read, and frames
        // spanning several 64 KiB reads.
        let script = r#"
import os, struct, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for i in range(400):
    n = (i * 7919) % 300001 if i % 10 == 0 else i % 97
    payload = bytes([i % 251]) * n
    os.write(fd, struct.pack("<I", n) + payload)
os.close(fd)
"#;
        let child = ChildGuard::new(
            Command::new("python3")
                .args(["-c", script])
                .arg(&fifo)
                .spawn()
                .unwrap(),
        );
        let mut frames = Vec::new();
        poll_until(&mut p, &mut ev, Duration::from_secs(50), |e| match e {
            Event::Frame { from, frame } => {
                assert_eq!(*from, rx);
                frames.push(frame.to_vec());
                false
            }
            Event::Data { .. } => panic!("a framed receiver delivered raw bytes"),
            Event::Error { error, .. } => panic!("{error}"),
            Event::Closed { reason, .. } => {
                assert_eq!(*reason, CloseReason::Eof);
                true
            }
            _ => false,
        });
        assert!(child.wait_output(Duration::from_secs(10)).status.success());
        assert_eq!(frames.len(), 400);
        for (i, f) in frames.iter().enumerate() {
            let n = if i % 10 == 0 {
                (i * 7919) % 300001
            } else {
                i % 97
            };
            assert_eq!(f.len(), n, "frame {i}");
            assert!(f.iter().all(|&b| b == (i % 251) as u8), "frame {i} content");
        }
    });
}

#[test]
fn an_oversized_frame_closes_only_its_receiver() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let (bad, good) = (dir.path().join("bad"), dir.path().join("good"));
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let opts = FifoOptions::new().create(true).frames(Codec::Lines, 16);
        let rx_bad = p.open_receiver(&bad, &opts).unwrap();
        let rx_good = p.open_receiver(&good, &opts).unwrap();
        let mut wb = std::fs::OpenOptions::new().write(true).open(&bad).unwrap();
        let mut wg = std::fs::OpenOptions::new().write(true).open(&good).unwrap();
        wb.write_all(b"fine\nthis line is far longer than sixteen bytes\n")
            .unwrap();
        wg.write_all(b"one\ntwo\n").unwrap();
        let mut lines = Vec::new();
        let mut error = None;
        let mut closed = None;
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            match e {
                Event::Frame { from, frame } => lines.push((*from, frame.to_vec())),
                Event::Error {
                    token,
                    error: Error::Frame { source, .. },
                } => error = Some((*token, source.clone())),
                Event::Closed { token, reason, .. } => closed = Some((*token, *reason)),
                _ => {}
            }
            closed.is_some() && lines.len() >= 3
        });
        assert_eq!(error.as_ref().map(|(t, _)| *t), Some(rx_bad.token()));
        assert!(matches!(
            error.unwrap().1,
            FrameError::TooLong { max: 16, .. }
        ));
        assert_eq!(closed, Some((rx_bad.token(), CloseReason::Error)));
        assert!(lines.contains(&(rx_bad, b"fine".to_vec())));
        assert!(
            lines.contains(&(rx_good, b"one".to_vec()))
                && lines.contains(&(rx_good, b"two".to_vec()))
        );
        // The good receiver goes on.
        wg.write_all(b"three\n").unwrap();
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(5),
            |e| matches!(e, Event::Frame { frame, .. } if *frame == b"three"),
        );
    });
}

#[test]
fn a_writer_leaving_inside_a_frame_is_reported() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let opts = FifoOptions::new()
            .create(true)
            .persistent(true)
            .frames(Codec::Lines, 1024);
        let rx = p.open_receiver(&fifo, &opts).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap()
            .write_all(b"whole\npart")
            .unwrap();
        let mut truncated = false;
        poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
            truncated |= matches!(e, Event::Error { token, error: Error::Frame { source: FrameError::Truncated { buffered: 4 }, .. } } if *token == rx.token());
            matches!(e, Event::PeerGone(_))
        });
        assert!(truncated);
        // The persistent receiver goes on, with a clean decoder.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap()
            .write_all(b"next\n")
            .unwrap();
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(5),
            |e| matches!(e, Event::Frame { frame, .. } if *frame == b"next"),
        );
    });
}
