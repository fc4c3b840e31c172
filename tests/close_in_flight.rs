//! Closing with reads and writes in flight: cancelled, reaped, every fd
//! released, unsent bytes handed back exactly.

mod common;

use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, Proactor};

#[test]
fn close_with_ops_in_flight_1000_times_leaks_nothing() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        let baseline = open_fds();
        let chunk = vec![7u8; 256 * 1024];
        for round in 0..1000 {
            // A receiver with a read armed, and a sender whose queue exceeds
            // the pipe, so a write waits in the kernel when we close.
            let rx = p.open_receiver(&path, &opts).unwrap();
            let tx = p.open_sender(&path, &opts).unwrap();
            p.send(tx, &chunk).unwrap();
            p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
            let mut accepted = 0;
            let mut read = 0;
            for e in &ev {
                match e {
                    Event::Sent { bytes, .. } => accepted += bytes,
                    Event::Data { data, .. } => read += data.len(),
                    _ => {}
                }
            }
            assert!(
                p.snapshot().ops_in_flight >= 1,
                "round {round}: nothing in flight to cancel"
            );
            p.close(rx).unwrap();
            p.close(tx).unwrap();
            let mut closed = 0;
            let mut unsent = 0;
            poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
                match e {
                    Event::Sent { bytes, .. } => accepted += bytes,
                    Event::Data { data, .. } => read += data.len(),
                    Event::Closed {
                        token, unsent: u, ..
                    } => {
                        closed += 1;
                        if *token == tx.token() {
                            unsent = u.len();
                        }
                    }
                    _ => {}
                }
                closed == 2
            });
            // Every queued byte is either accepted by the kernel or handed back.
            assert_eq!(accepted + unsent, chunk.len(), "round {round}");
            assert!(read <= accepted);
            assert_eq!(p.snapshot().ops_in_flight, 0, "round {round}");
            assert_eq!(open_fds(), baseline, "round {round}: fd leak");
        }
        assert_eq!(p.snapshot().registered_files, 0);
    });
}

#[test]
fn cancelled_write_returns_its_bytes_and_the_reader_sees_eof() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        mkfifo(&path);
        // A reader that never reads: the pipe fills and a write stays pending.
        let reader = nonblocking_reader(&path);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        let tx = p.open_sender(&path, &FifoOptions::new()).unwrap();
        let mut data = vec![0u8; 1 << 20];
        pattern(0, &mut data);
        p.send(tx, &data).unwrap();
        let mut accepted = 0;
        // Poll until the pipe is full (no progress for a while).
        for _ in 0..20 {
            p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
            for e in &ev {
                if let Event::Sent { bytes, .. } = e {
                    accepted += bytes;
                }
            }
        }
        assert!(accepted > 0 && accepted < data.len(), "accepted {accepted}");
        p.close(tx).unwrap();
        let mut unsent = Vec::new();
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| match e {
            Event::Sent { bytes, .. } => {
                accepted += bytes;
                false
            }
            Event::Closed { unsent: u, .. } => {
                unsent = u.to_vec();
                true
            }
            _ => false,
        });
        // Exactly the bytes the kernel did not take come back, in order.
        assert_eq!(accepted + unsent.len(), data.len());
        assert_eq!(unsent, &data[accepted..]);
        // The write end is really gone (fixed slot emptied, fd closed): the
        // reader drains the pipe, then sees EOF.
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        loop {
            match nix::unistd::read(&reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EAGAIN) => panic!("no EOF: the write end is still open"),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, accepted);
    });
}
