//! A reader that stops reading: the sender's memory stays bounded, send
//! reports backpressure, and resumes once the reader drains.

mod common;

use std::time::Duration;

use common::*;
use ringpipe::{Error, Event, Events, FifoOptions, Proactor};

#[test]
fn stalled_reader_bounds_the_queue_and_writable_resumes() {
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        mkfifo(&fifo);
        let reader = nonblocking_reader(&fifo);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        let (high, low) = (64 * 1024, 16 * 1024);
        let tx = p
            .open_sender(&fifo, &FifoOptions::new().watermarks(high, low))
            .unwrap();
        let msg = [7u8; 1000];
        let mut sent = 0usize;
        let mut refused = 0;
        // The reader does not read: keep sending for a while.
        for _ in 0..200 {
            match p.send(tx, &msg) {
                Ok(()) => sent += msg.len(),
                Err(Error::WouldBlock {
                    unsent, high: h, ..
                }) => {
                    assert!(unsent >= h);
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
            let unsent = p.stats(tx).unwrap().bytes_unsent();
            assert!(unsent < (high + msg.len()) as u64, "queue grew to {unsent}");
            p.poll(&mut ev, Some(Duration::from_millis(2))).unwrap();
            assert!(
                !ev.iter().any(|e| matches!(e, Event::Writable(_))),
                "Writable while stalled"
            );
        }
        assert!(refused > 0, "no backpressure");
        // The pipe (64 KiB) plus the queue hold what was accepted.
        assert!(sent <= 64 * 1024 + high + msg.len(), "{sent}");

        // The reader drains everything it can: the sender writes its queue
        // and reports Writable once at or below the low watermark.
        let mut drained = 0usize;
        let mut writable = false;
        let mut buf = vec![0u8; 65536];
        for _ in 0..500 {
            loop {
                match nix::unistd::read(&reader, &mut buf) {
                    Ok(0) | Err(nix::errno::Errno::EAGAIN) => break,
                    Ok(n) => drained += n,
                    Err(e) => panic!("{e}"),
                }
            }
            p.poll(&mut ev, Some(Duration::from_millis(5))).unwrap();
            writable |= ev
                .iter()
                .any(|e| matches!(e, Event::Writable(s) if s == tx));
            if writable && p.stats(tx).unwrap().bytes_unsent() == 0 {
                break;
            }
        }
        assert!(writable, "no Writable after the reader drained");
        p.send(tx, &msg).unwrap();
        sent += msg.len();
        for _ in 0..100 {
            loop {
                match nix::unistd::read(&reader, &mut buf) {
                    Ok(0) | Err(nix::errno::Errno::EAGAIN) => break,
                    Ok(n) => drained += n,
                    Err(e) => panic!("{e}"),
                }
            }
            if drained == sent {
                break;
            }
            p.poll(&mut ev, Some(Duration::from_millis(5))).unwrap();
        }
        assert_eq!(drained, sent, "every accepted byte reaches the reader once");
    });
}

/// A send that lands exactly on the high watermark makes the next send
/// refused, so `Writable` follows once the queue drains to the low one,
/// even before any send was refused: a loop may pause its input as soon as
/// a send reaches the watermark.
#[test]
fn a_send_landing_on_the_watermark_still_gets_writable() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        mkfifo(&fifo);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        // No reader yet: everything stays queued.
        let tx = p
            .open_sender(&fifo, &FifoOptions::new().watermarks(100, 10))
            .unwrap();
        p.send(tx, &[1u8; 100]).unwrap();
        assert_eq!(p.stats(tx).unwrap().bytes_unsent(), 100);
        let _reader = nonblocking_reader(&fifo);
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(10),
            |e| matches!(e, Event::Writable(s) if *s == tx),
        );
        p.send(tx, b"x").unwrap();
    });
}
