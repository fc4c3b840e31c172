//! What bounds `close_after_flush` when no reader drains the pipe:
//! `Reconnect::WaitUpTo` once a reader has left in the middle of the data,
//! `FifoOptions::open_timeout` while no reader ever came. Either way the
//! sender ends with a typed error and `Closed`, which hands back exactly the
//! bytes the kernel never accepted; the accepted ones die with the pipe.

mod common;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use common::*;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;
use ringpipe::{CloseReason, Error, Event, Events, FifoOptions, Proactor, Reconnect, Sender};

const LIMIT: Duration = Duration::from_millis(200);

/// A read end that opens at once, counts as the FIFO's reader and reads
/// nothing unless asked.
fn idle_reader(path: &Path) -> OwnedFd {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

/// What the sender reported until it closed: bytes accepted (`Sent`), the
/// errors, whether `PeerGone` came, and the `Closed` event's reason and
/// unsent bytes.
#[derive(Debug, Default)]
struct Outcome {
    sent: usize,
    peer_gone: bool,
    errors: Vec<String>,
    typed: Vec<&'static str>,
    closed: Option<(CloseReason, Vec<u8>)>,
}

fn poll_until_closed(p: &mut Proactor, tx: Sender, out: &mut Outcome) {
    let mut events = Events::with_capacity(64);
    poll_until(p, &mut events, Duration::from_secs(20), |ev| {
        match ev {
            Event::Sent { to, bytes } if *to == tx => out.sent += bytes,
            Event::PeerGone(t) if *t == tx.token() => out.peer_gone = true,
            Event::Error { token, error } if *token == tx.token() => {
                assert!(out.closed.is_none(), "an error after Closed");
                out.typed.push(match error {
                    Error::ReaderTimeout { .. } => "ReaderTimeout",
                    Error::OpenTimeout { .. } => "OpenTimeout",
                    _ => "other",
                });
                out.errors.push(format!("{error:?}"));
            }
            Event::Closed {
                token,
                reason,
                unsent,
            } if *token == tx.token() => {
                out.closed = Some((*reason, unsent.to_vec()));
                return true;
            }
            _ => {}
        }
        false
    });
}

/// Whether the FIFO holds any byte: a fresh non-blocking reader finds EOF
/// (no writer, nothing buffered) or data.
fn fifo_is_empty(path: &Path) -> bool {
    let fd = idle_reader(path);
    let mut buf = [0u8; 16];
    matches!(nix::unistd::read(&fd, &mut buf), Ok(0))
}

#[test]
fn wait_up_to_ends_a_flushing_sender_whose_reader_left_mid_data() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        mkfifo(&path);
        let mut p = Proactor::new().unwrap();
        let opts = FifoOptions::new()
            .reconnect(Reconnect::WaitUpTo(LIMIT))
            .watermarks(1 << 20, 1 << 19);
        let reader = idle_reader(&path);
        let capacity = fcntl(&reader, FcntlArg::F_GETPIPE_SZ).unwrap() as usize;
        let tx = p.open_sender(&path, &opts).unwrap();
        // Four pipes' worth: the first fills the pipe, the rest stays queued.
        let mut data = vec![0u8; 4 * capacity];
        pattern(0, &mut data);
        p.send(tx, &data).unwrap();
        let mut out = Outcome::default();
        let mut events = Events::with_capacity(64);
        poll_until(&mut p, &mut events, Duration::from_secs(10), |ev| {
            if let Event::Sent { bytes, .. } = ev {
                out.sent += bytes;
            }
            out.sent >= capacity
        });
        p.close_after_flush(tx).unwrap();
        // The reader leaves without reading a byte; none comes back.
        drop(reader);
        poll_until_closed(&mut p, tx, &mut out);

        assert!(out.peer_gone, "{out:?}");
        assert_eq!(out.typed, ["ReaderTimeout"], "{:?}", out.errors);
        let path_debug = format!("{:?}", path);
        assert!(out.errors[0].contains(&path_debug), "{:?}", out.errors);
        let (reason, unsent) = out.closed.unwrap();
        assert_eq!(reason, CloseReason::Error);
        // Exactly the bytes the kernel never accepted come back, in order.
        assert_eq!(out.sent, capacity);
        assert!(unsent == data[out.sent..], "unsent is not the exact tail");
        // The accepted ones were in the pipe; with the sender's end closed
        // and no reader, the pipe and those bytes are gone.
        assert!(fifo_is_empty(&path));
    });
}

#[test]
fn open_timeout_ends_a_flushing_sender_that_never_had_a_reader() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        // WaitUpTo alone does not bound this case: it counts from a reader
        // leaving. open_timeout does.
        let opts = FifoOptions::new()
            .create(true)
            .reconnect(Reconnect::WaitUpTo(LIMIT))
            .open_timeout(LIMIT);
        let tx = p.open_sender(&path, &opts).unwrap();
        p.send(tx, b"never read").unwrap();
        p.close_after_flush(tx).unwrap();
        let mut out = Outcome::default();
        poll_until_closed(&mut p, tx, &mut out);
        assert_eq!(out.typed, ["OpenTimeout"], "{:?}", out.errors);
        assert_eq!(out.sent, 0);
        let (reason, unsent) = out.closed.unwrap();
        assert_eq!(reason, CloseReason::Error);
        assert_eq!(unsent, b"never read");
    });
}

/// Once the kernel has accepted every byte, no write is left to meet
/// EPIPE: a lingering flush still notices its reader leaving (a poll on
/// the ring), so `WaitUpTo` bounds it as well.
#[test]
fn wait_up_to_ends_a_flushing_sender_whose_reader_left_after_all_was_accepted() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        mkfifo(&path);
        let mut p = Proactor::new().unwrap();
        let opts = FifoOptions::new().reconnect(Reconnect::WaitUpTo(LIMIT));
        let reader = idle_reader(&path);
        let tx = p.open_sender(&path, &opts).unwrap();
        p.send(tx, b"in the pipe").unwrap();
        let mut out = Outcome::default();
        let mut events = Events::with_capacity(64);
        poll_until(&mut p, &mut events, Duration::from_secs(10), |ev| {
            if let Event::Sent { bytes, .. } = ev {
                out.sent += bytes;
            }
            out.sent == b"in the pipe".len()
        });
        p.close_after_flush(tx).unwrap();
        drop(reader);
        poll_until_closed(&mut p, tx, &mut out);
        assert_eq!(out.typed, ["ReaderTimeout"], "{:?}", out.errors);
        let (reason, unsent) = out.closed.unwrap();
        assert_eq!(reason, CloseReason::Error);
        assert!(unsent.is_empty());
        assert!(fifo_is_empty(&path));
    });
}

/// A sender that found its reader at once has no open timeout left to
/// honour: lingering in `close_after_flush` must not spin the retry timer
/// on a deadline that already passed (it once re-armed a zero timer,
/// tens of thousands of enters a second).
#[test]
fn a_lingering_flush_with_an_open_timeout_does_not_spin() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        mkfifo(&path);
        let _reader = idle_reader(&path);
        let mut p = Proactor::new().unwrap();
        let opts = FifoOptions::new().open_timeout(Duration::from_millis(1));
        let tx = p.open_sender(&path, &opts).unwrap();
        p.send(tx, b"stays in the pipe").unwrap();
        p.close_after_flush(tx).unwrap();
        let mut events = Events::with_capacity(64);
        let start = p.snapshot().enters;
        // 300 ms of lingering: the retry timer backs off to 50 ms.
        let until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < until {
            p.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for ev in &events {
                assert!(
                    !matches!(ev, Event::Closed { .. } | Event::Error { .. }),
                    "{ev:?}"
                );
            }
        }
        let enters = p.snapshot().enters - start;
        assert!(enters < 200, "{enters} enters while lingering");
    });
}
