//! Closing a receiver loses nothing: bytes the kernel already moved out of
//! the pipe reach the user (as `Data` or `Frame` before `Closed`), and the
//! rest stay in the pipe for the next reader. On every ring mode (default,
//! SQPOLL, busy polling) and every read path (registered buffers, heap
//! buffers after a poll, multishot, framed).

mod common;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use common::{drain, watchdog};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use ringpipe::frame::Codec;
use ringpipe::{Builder, Event, Events, FifoOptions, Proactor, ReadMode, Receiver};

const ROUNDS: usize = 150;
/// A line of the stream: nine digits and a newline.
const LINE: usize = 10;

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

/// Lines `000000000\n`, `000000001\n`... from line `first`, `len` bytes
/// (the last line cut short if `len` says so).
fn lines(first: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + LINE);
    let mut n = first;
    while out.len() < len {
        out.extend_from_slice(format!("{n:09}\n").as_bytes());
        n += 1;
    }
    out.truncate(len);
    out
}

/// What a receiver delivered up to its `Closed`.
#[derive(Default)]
struct Delivered {
    got: Vec<u8>,
    /// Bytes of a partial frame reported as `FrameError::Truncated`.
    truncated: usize,
    closed: bool,
}

/// One poll's events for `rx`, collected into `d`; any event for another
/// transport, or for `rx` after its `Closed`, fails the test.
fn collect(p: &mut Proactor, events: &mut Events, rx: Receiver, wait: Wait, d: &mut Delivered) {
    let timeout = match wait {
        Wait::Blocking => Some(Duration::from_millis(100)),
        Wait::Busy => Some(Duration::ZERO),
    };
    p.poll(events, timeout).unwrap();
    for ev in events.iter() {
        assert_eq!(ev.token(), rx.token(), "{ev:?}");
        assert!(!d.closed, "after Closed: {ev:?}");
        match ev {
            Event::Data { data, .. } => d.got.extend_from_slice(data),
            Event::Frame { frame, .. } => {
                d.got.extend_from_slice(frame);
                d.got.push(b'\n');
            }
            Event::Error {
                error:
                    ringpipe::Error::Frame {
                        source: ringpipe::frame::FrameError::Truncated { buffered },
                        ..
                    },
                ..
            } => d.truncated += buffered,
            Event::Closed { .. } => d.closed = true,
            other => panic!("{other:?}"),
        }
    }
}

/// One round: a writer writes part of a stream, ending inside a line, and
/// the receiver reads all of it, so a read ends mid-line; then the writer
/// writes the rest in pieces of other sizes and the receiver is closed,
/// with none, one or two polls between those writes and the close.
/// Delivered, then reported truncated, then left in the pipe must be the
/// stream, in order, exactly.
fn rounds(builder: Builder, opts: FifoOptions, framed: bool, wait: Wait) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let mut p = builder.build().unwrap();
    let mut events = Events::with_capacity(64);
    for round in 0..ROUNDS {
        let rx = p.open_receiver(&path, &opts.clone().create(true)).unwrap();
        let writer = open_cloexec(&path, OFlag::O_WRONLY | OFlag::O_NONBLOCK);
        // The read is submitted (and, with SQPOLL, running) before the write.
        p.poll(&mut events, Some(Duration::ZERO)).unwrap();
        // 1 to 20,000 bytes, then up to 40,000 more (none every fifth
        // round): within the pipe.
        let first = 1 + (round * 7919) % 20_000;
        let rest = if round % 5 == 4 {
            0
        } else {
            (round * 104_729) % 40_000
        };
        let stream = lines(round * 10_000, first + rest);
        assert_eq!(
            nix::unistd::write(&writer, &stream[..first]).unwrap(),
            first
        );
        let mut d = Delivered::default();
        let mut turns = 0u64;
        while p.stats(rx).unwrap().bytes_read < first as u64 {
            turns += 1;
            assert!(turns < 5_000_000, "round {round}: first part not read");
            collect(&mut p, &mut events, rx, wait, &mut d);
        }
        for piece in stream[first..].chunks(4093 + round % 7) {
            assert_eq!(nix::unistd::write(&writer, piece).unwrap(), piece.len());
            // Busy: the receiver may have nothing left to read.
            for _ in 0..round % 3 {
                collect(&mut p, &mut events, rx, Wait::Busy, &mut d);
            }
        }
        p.close(rx).unwrap();
        while !d.closed {
            turns += 1;
            assert!(turns < 5_000_000, "round {round}: no Closed");
            collect(&mut p, &mut events, rx, wait, &mut d);
        }
        // Nothing for it after Closed.
        collect(&mut p, &mut events, rx, Wait::Busy, &mut d);
        // What the receiver did not take is still in the pipe (the writer
        // keeps it alive): a fresh reader finds it.
        let reader = open_cloexec(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK);
        let left = drain(&reader);
        let (g, t) = (d.got.len(), d.truncated);
        assert_eq!(
            g + t + left.len(),
            stream.len(),
            "round {round}: {g} delivered, {t} reported truncated, {} left in the pipe",
            left.len()
        );
        assert!(
            d.got == stream[..g],
            "round {round}: delivered bytes differ"
        );
        assert!(left == stream[g + t..], "round {round}: bytes left differ");
        // All of the first part left the pipe before the close.
        assert!(g + t >= first, "round {round}: {g} + {t} < {first}");
        if framed {
            assert_eq!(g % LINE, 0, "round {round}: whole frames only");
            assert!(t < LINE, "round {round}: {t} bytes of one frame");
        } else {
            assert_eq!(t, 0);
        }
        if rest == 0 {
            // All was read, its last line cut short by the read's end: a
            // framed receiver holds that part, and says so at close.
            let cut = if framed { first % LINE } else { 0 };
            assert_eq!((g, t, left.len()), (first - cut, cut, 0), "round {round}");
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
