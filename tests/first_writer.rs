//! A FIFO's first writer may come at any instant, also between the
//! receiver's first read finding the FIFO empty (a read of a FIFO that
//! never had a writer returns 0 at once, as one after a writer left does)
//! and the check of what that 0 meant. That writer is a writer: its bytes
//! arrive before any `PeerGone`, on either backend and in every read mode.
//! The race is narrow, so each case opens many FIFOs, each met by a
//! writer thread the moment its receiver exists, at varied delays.

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use ringpipe::{Backend, Event, Events, FifoOptions, Proactor, ReadMode};

const FIFOS: usize = 1500;

fn first_writer_is_never_taken_for_one_that_left(backend: Backend, mode: ReadMode) {
    watchdog(Duration::from_secs(120), move || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::builder().backend(backend).build().unwrap();
        let mut ev = Events::with_capacity(64);
        let opts = FifoOptions::new().create(true).read_mode(mode);
        let (go, paths) = mpsc::channel::<(std::path::PathBuf, u64)>();
        let writer = std::thread::spawn(move || {
            for (path, delay) in paths {
                let until = Instant::now() + Duration::from_nanos(delay);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                // The receiver has it open: no wait. Write at once, leave.
                let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.write_all(b"x").unwrap();
            }
        });
        for i in 0..FIFOS {
            let path = dir.path().join(format!("f{i}"));
            let rx = p.open_receiver(&path, &opts).unwrap();
            // The writer comes a varied moment after the receiver's first
            // read is started by the poll below.
            go.send((path, (i % 100) as u64 * 150)).unwrap();
            let mut got = false;
            poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| match e {
                Event::Data { from, data } if *from == rx => {
                    assert_eq!(*data, b"x", "FIFO {i}");
                    got = true;
                    false
                }
                Event::PeerGone(t) if *t == rx.token() => {
                    assert!(got, "FIFO {i}: PeerGone before its writer's byte");
                    false
                }
                // Not persistent: it closes once its writer left.
                Event::Closed { token, .. } if *token == rx.token() => {
                    assert!(got, "FIFO {i}: closed before its writer's byte");
                    true
                }
                _ => false,
            });
            std::fs::remove_file(dir.path().join(format!("f{i}"))).unwrap();
        }
        drop(go);
        writer.join().unwrap();
    });
}

#[test]
fn first_writer_on_epoll_fixed() {
    first_writer_is_never_taken_for_one_that_left(Backend::Epoll, ReadMode::Fixed);
}

#[test]
fn first_writer_on_epoll_multishot() {
    first_writer_is_never_taken_for_one_that_left(Backend::Epoll, ReadMode::Multishot);
}

#[test]
fn first_writer_on_the_default_backend_fixed() {
    first_writer_is_never_taken_for_one_that_left(Backend::Auto, ReadMode::Fixed);
}

#[test]
fn first_writer_on_the_default_backend_multishot() {
    first_writer_is_never_taken_for_one_that_left(Backend::Auto, ReadMode::Multishot);
}
