//! A sender that is its FIFO's only writer (`FifoOptions::sole_writer`)
//! writes its frames in runs larger than `PIPE_BUF`, every frame still
//! whole and in order; a second sender of the same proactor on that FIFO
//! is refused.

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use ringpipe::frame::{Codec, FrameDecoder, PIPE_BUF};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor};

const FRAMES: usize = 3_000;

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("{i:06}:").into_bytes();
    p.extend((0..(i * 37) % 200).map(|k| b'a' + ((i + k) % 26) as u8));
    p
}

fn encoded(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for pl in payloads {
        Codec::LengthPrefixed.encode(pl, &mut wire).unwrap();
    }
    wire
}

#[test]
fn a_sole_writer_writes_frames_whole_in_runs_larger_than_pipe_buf() {
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo_path(dir.path(), "out");
        mkfifo(&path);
        let reader = nonblocking_reader(&path);
        let mut p = Proactor::new().unwrap();
        let opts = FifoOptions::new()
            .sole_writer(true)
            .watermarks(1 << 20, 1 << 18);
        let tx = p.open_sender(&path, &opts).unwrap();
        let payloads: Vec<Vec<u8>> = (0..FRAMES).map(payload).collect();
        // A third one by one, a third in one call, a third already encoded.
        let (a, rest) = payloads.split_at(FRAMES / 3);
        let (b, c) = rest.split_at(FRAMES / 3);
        for pl in a {
            p.send_frames(tx, Codec::LengthPrefixed, &[pl]).unwrap();
        }
        p.send_frames(tx, Codec::LengthPrefixed, b).unwrap();
        p.send_encoded(tx, Codec::LengthPrefixed, &encoded(c))
            .unwrap();
        // Whole frames only, even for a sole writer.
        assert!(matches!(
            p.send_encoded(tx, Codec::LengthPrefixed, &encoded(c)[..10]),
            Err(Error::Frame { .. })
        ));
        let total: usize = payloads.iter().map(|pl| pl.len() + 4).sum();
        let (mut sent, mut largest) = (0, 0);
        let mut decoder = FrameDecoder::new(Codec::LengthPrefixed, 4096);
        let mut next = 0;
        let mut buf = vec![0u8; 1 << 16];
        let mut ev = Events::with_capacity(64);
        while next < FRAMES {
            p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
            for e in &ev {
                if let Event::Sent { bytes, .. } = e {
                    sent += bytes;
                    largest = largest.max(bytes);
                }
            }
            // The reader drains the pipe and checks every frame.
            while let Ok(n) = nix::unistd::read(reader.as_fd(), &mut buf) {
                if n == 0 {
                    break;
                }
                decoder
                    .feed(&buf[..n], |f| {
                        assert_eq!(f, payloads[next], "frame {next} not whole or out of order");
                        next += 1;
                    })
                    .unwrap();
            }
        }
        assert_eq!(sent, total);
        assert!(
            largest > PIPE_BUF,
            "the largest write was {largest} bytes: frames went out PIPE_BUF by PIPE_BUF"
        );
    });
}

#[test]
fn a_second_sender_on_a_sole_writers_fifo_is_refused() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo_path(dir.path(), "out");
        let other = fifo_path(dir.path(), "other");
        mkfifo(&path);
        mkfifo(&other);
        let _reader = nonblocking_reader(&path);
        let mut p = Proactor::new().unwrap();
        let sole = FifoOptions::new().sole_writer(true);
        let tx = p.open_sender(&path, &sole).unwrap();
        // Neither a plain sender nor another sole writer may join it.
        for opts in [FifoOptions::new(), sole.clone()] {
            match p.open_sender(&path, &opts) {
                Err(Error::SoleWriter { other, .. }) => assert_eq!(other, tx.token()),
                r => panic!("a second writer was let in: {r:?}"),
            }
        }
        // Another FIFO is another matter: two plain senders share it.
        let plain = [
            p.open_sender(&other, &FifoOptions::new()).unwrap(),
            p.open_sender(&other, &FifoOptions::new()).unwrap(),
        ];
        let mut ev = Events::with_capacity(8);
        let mut close = |p: &mut Proactor, tx: ringpipe::Sender| {
            p.close(tx).unwrap();
            poll_until(
                p,
                &mut ev,
                Duration::from_secs(10),
                |e| matches!(e, Event::Closed { token, .. } if *token == tx.token()),
            );
        };
        // Nor may a sole writer join a FIFO a sender already writes, while
        // any of its senders is open.
        for tx in plain {
            match p.open_sender(&other, &sole) {
                Err(Error::SoleWriter { other, .. }) => {
                    assert!(plain.iter().any(|s| s.token() == other))
                }
                r => panic!("a sole writer joined a written FIFO: {r:?}"),
            }
            close(&mut p, tx);
        }
        p.open_sender(&other, &sole).unwrap();
        // Once the sole writer is closed, the FIFO is free again.
        close(&mut p, tx);
        p.open_sender(&path, &FifoOptions::new()).unwrap();
    });
}
