//! Closing a receiver loses nothing: bytes the kernel already moved out of
//! the pipe reach the user (as `Data` or `Frame` before `Closed`), and the
//! rest stay in the pipe for the next reader. On every ring mode (default,
//! SQPOLL, busy polling) and every read path (registered buffers, heap
//! buffers after a poll, multishot, framed).

mod common;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use common::watchdog;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use ringpipe::frame::Codec;
use ringpipe::{Builder, Event, Events, FifoOptions, Proactor, ReadMode};

const ROUNDS: usize = 150;
/// Ten lines of ten bytes and a newline: one atomic write.
const LINE: &[u8] = b"0123456789\n";

fn open_cloexec(path: &Path, flags: OFlag) -> OwnedFd {
    open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Wait {
    /// `poll(Some(100 ms))`: waits in the kernel.
    Blocking,
    /// `poll(Some(0))`: busy polling.
    Busy,
}

/// One round: a receiver reads, a writer writes 110 bytes, the receiver is
/// closed at once. Everything delivered plus everything left in the pipe
/// must be the 110 bytes, in order.
fn rounds(builder: Builder, opts: FifoOptions, framed: bool, wait: Wait) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let mut p = builder.build().unwrap();
    let mut events = Events::with_capacity(64);
    let message = LINE.repeat(10);
    for round in 0..ROUNDS {
        let rx = p.open_receiver(&path, &opts.clone().create(true)).unwrap();
        let writer = open_cloexec(&path, OFlag::O_WRONLY | OFlag::O_NONBLOCK);
        // The read is submitted (and, with SQPOLL, running) before the write.
        p.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(nix::unistd::write(&writer, &message).unwrap(), 110);
        p.close(rx).unwrap();

        let mut got = Vec::new();
        let mut truncated = 0;
        let mut closed = false;
        let timeout = match wait {
            Wait::Blocking => Some(Duration::from_millis(100)),
            Wait::Busy => Some(Duration::ZERO),
        };
        let mut turns = 0u64;
        while !closed {
            turns += 1;
            assert!(turns < 5_000_000, "round {round}: no Closed");
            p.poll(&mut events, timeout).unwrap();
            for ev in &events {
                match ev {
                    Event::Data { from, data } if from == rx => got.extend_from_slice(data),
                    Event::Frame { from, frame } if from == rx => {
                        got.extend_from_slice(frame);
                        got.push(b'\n');
                    }
                    Event::Error {
                        error:
                            ringpipe::Error::Frame {
                                source: ringpipe::frame::FrameError::Truncated { buffered },
                                ..
                            },
                        ..
                    } => truncated += buffered,
                    Event::Closed { token, .. } if token == rx.token() => closed = true,
                    _ => {}
                }
            }
        }
        assert!(!framed || got.len() % LINE.len() == 0, "whole frames only");
        // What the receiver did not take is still in the pipe (the writer
        // keeps it alive): a fresh reader finds it.
        let reader = open_cloexec(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK);
        let mut rest = vec![0u8; 4096];
        let left = match nix::unistd::read(&reader, &mut rest) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) => 0,
            Err(e) => panic!("read: {e}"),
        };
        assert_eq!(
            got.len() + truncated + left,
            message.len(),
            "round {round}: {} delivered, {truncated} reported truncated, {left} left in the pipe",
            got.len()
        );
        got.extend_from_slice(&rest[..left]);
        if truncated == 0 {
            assert_eq!(got, message, "round {round}: bytes out of order");
        }
    }
}

fn check(name: &'static str, builder: fn() -> Builder, opts: fn() -> FifoOptions, wait: Wait) {
    watchdog(Duration::from_secs(120), move || {
        let framed = name.contains("framed");
        eprintln!("{name}");
        rounds(builder(), opts(), framed, wait);
    });
}

fn sqpoll() -> Builder {
    Proactor::builder().sqpoll(Duration::from_millis(20))
}

fn fixed() -> FifoOptions {
    FifoOptions::new().read_mode(ReadMode::Fixed)
}

fn multishot() -> FifoOptions {
    FifoOptions::new().read_mode(ReadMode::Multishot)
}

fn framed() -> FifoOptions {
    FifoOptions::new()
        .read_mode(ReadMode::Fixed)
        .frames(Codec::Lines, 64)
}

fn framed_multishot() -> FifoOptions {
    multishot().frames(Codec::Lines, 64)
}

/// No registered buffer free: the receiver polls, then reads into a heap
/// buffer.
fn heap_buffers() -> Builder {
    Proactor::builder().buffers(0, 64 * 1024)
}

fn heap_buffers_sqpoll() -> Builder {
    heap_buffers().sqpoll(Duration::from_millis(20))
}

#[test]
fn default_ring_fixed_reads() {
    check("default fixed", Proactor::builder, fixed, Wait::Blocking);
}

#[test]
fn default_ring_multishot_reads() {
    check(
        "default multishot",
        Proactor::builder,
        multishot,
        Wait::Blocking,
    );
}

#[test]
fn default_ring_framed_reads() {
    check("default framed", Proactor::builder, framed, Wait::Blocking);
    check(
        "default framed multishot",
        Proactor::builder,
        framed_multishot,
        Wait::Blocking,
    );
}

#[test]
fn default_ring_heap_buffers() {
    check("default heap", heap_buffers, fixed, Wait::Blocking);
}

#[test]
fn busy_polling() {
    check("busy fixed", Proactor::builder, fixed, Wait::Busy);
    check("busy multishot", Proactor::builder, multishot, Wait::Busy);
}

#[test]
fn sqpoll_fixed_reads() {
    check("sqpoll fixed", sqpoll, fixed, Wait::Blocking);
    check("sqpoll fixed busy", sqpoll, fixed, Wait::Busy);
}

#[test]
fn sqpoll_multishot_reads() {
    check("sqpoll multishot", sqpoll, multishot, Wait::Blocking);
}

#[test]
fn sqpoll_framed_reads() {
    check("sqpoll framed", sqpoll, framed, Wait::Blocking);
    check(
        "sqpoll framed multishot",
        sqpoll,
        framed_multishot,
        Wait::Blocking,
    );
}

#[test]
fn sqpoll_heap_buffers() {
    check("sqpoll heap", heap_buffers_sqpoll, fixed, Wait::Blocking);
}

/// Everything a non-blocking read end holds now.
fn drain(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EAGAIN) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Closing the source of a fan-out while a round of TEEs and a SPLICE is
/// in flight: the round is settled, so both destinations end with the
/// same bytes, and those plus what is left in the source are what was
/// written, in order.
#[test]
fn closing_a_fan_out_source_mid_round() {
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let mut events = Events::with_capacity(64);
        let opts = FifoOptions::new().create(true);
        for round in 0..60 {
            let src = dir.path().join(format!("src{round}"));
            let d: Vec<_> = (0..2)
                .map(|i| dir.path().join(format!("d{round}_{i}")))
                .collect();
            let rx = p.open_receiver(&src, &opts).unwrap();
            let writer = open_cloexec(&src, OFlag::O_WRONLY | OFlag::O_NONBLOCK);
            let mut readers = Vec::new();
            let mut txs = Vec::new();
            for path in &d {
                nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)).unwrap();
                readers.push(open_cloexec(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK));
                txs.push(p.open_sender(path, &FifoOptions::new()).unwrap());
            }
            p.fan_out(rx, &txs, ringpipe::FanOutPolicy::Wait).unwrap();
            p.poll(&mut events, Some(Duration::ZERO)).unwrap();
            let mut message = vec![0u8; 32 * 1024];
            common::pattern(round as u64 * 977, &mut message);
            assert_eq!(
                nix::unistd::write(&writer, &message).unwrap(),
                message.len()
            );
            // Let the round reach the kernel, sometimes not.
            for _ in 0..round % 3 {
                p.poll(&mut events, Some(Duration::ZERO)).unwrap();
            }
            p.close(rx).unwrap();
            let mut closed = false;
            let mut turns = 0;
            while !closed || txs.iter().any(|t| p.stats(*t).unwrap().bytes_unsent() > 0) {
                turns += 1;
                assert!(turns < 10_000, "round {round}: not settled");
                p.poll(&mut events, Some(Duration::from_millis(10)))
                    .unwrap();
                for ev in &events {
                    match ev {
                        Event::Closed { token, .. } if token == rx.token() => closed = true,
                        Event::Error { error, .. } => panic!("{error}"),
                        _ => {}
                    }
                }
            }
            let got: Vec<Vec<u8>> = readers.iter().map(drain).collect();
            assert_eq!(got[0], got[1], "round {round}: destinations differ");
            let reader = open_cloexec(&src, OFlag::O_RDONLY | OFlag::O_NONBLOCK);
            let mut all = got[0].clone();
            all.extend(drain(&reader));
            assert_eq!(all.len(), message.len(), "round {round}");
            assert!(all == message, "round {round}: bytes out of order");
            for t in txs {
                // A round settled while closing is counted too.
                let s = p.stats(t).unwrap();
                assert_eq!(
                    s.bytes_accepted + s.bytes_spliced,
                    got[0].len() as u64,
                    "round {round}: bytes moved but not counted"
                );
                p.close(t).unwrap();
            }
        }
    });
}
