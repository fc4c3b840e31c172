//! "Written once, in order, or handed back", end to end: a reader process
//! takes part of a stream and exits while the sender still has most of it
//! to write; the sender is closed; what the reader took, then what is left
//! in the pipe, then what `Closed` handed back is the stream, exactly.
//!
//! A second fd the test holds keeps the pipe (and the bytes in it) alive
//! after the sender closes: a writer that never writes (the sender meets
//! `EPIPE` once the reader has gone), or a reader that never reads until
//! the end (the sender fills the pipe and its last write waits, cancelled
//! by the close).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use ringpipe::{CloseReason, Event, Events, FifoOptions, Proactor, Sender};

/// The stream: more than a reader takes plus the largest pipe.
const TOTAL: usize = 4 << 20;
/// What the reader process takes before it exits: not a multiple of
/// anything the sender writes in.
const TAKEN: usize = 1_000_003;

fn stream() -> Vec<u8> {
    let mut data = vec![0u8; TOTAL];
    pattern(0x5eed, &mut data);
    data
}

/// The reader process: `TAKEN` bytes of `fifo` into `out`, then it exits.
fn spawn_reader(fifo: &Path, out: &Path) -> ChildGuard {
    let args: [&dyn AsRef<std::ffi::OsStr>; 3] = [&fifo, &TAKEN.to_string(), &out];
    ChildGuard::spawn(&mut python(EXACT_READ_PY, &args))
}

/// A sender of the whole stream at once (its watermark above it).
fn send_all(p: &mut Proactor, fifo: &Path, data: &[u8]) -> Sender {
    let opts = FifoOptions::new().watermarks(2 * TOTAL, TOTAL);
    let tx = p.open_sender(fifo, &opts).unwrap();
    p.send(tx, data).unwrap();
    tx
}

/// Closes `tx` and returns what its `Closed` handed back; counts in
/// `accepted` what writes completing meanwhile put in the pipe.
fn close(p: &mut Proactor, ev: &mut Events, tx: Sender, accepted: &mut usize) -> Vec<u8> {
    p.close(tx).unwrap();
    let mut unsent = None;
    poll_until(p, ev, Duration::from_secs(30), |e| {
        match e {
            Event::Sent { bytes, .. } => *accepted += bytes,
            Event::Closed {
                token,
                reason,
                unsent: u,
            } => {
                assert_eq!(*token, tx.token());
                assert_eq!(*reason, CloseReason::Requested);
                unsent = Some(u.to_vec());
            }
            _ => {}
        }
        unsent.is_some()
    });
    unsent.unwrap()
}

/// Reader output, then pipe, then handed back, is the stream; the sender
/// could not have written more than the reader took plus a pipe.
fn assert_whole(data: &[u8], out: &Path, in_pipe: &[u8], unsent: &[u8]) {
    let taken = std::fs::read(out).unwrap();
    assert_eq!(taken.len(), TAKEN);
    assert!(
        !unsent.is_empty(),
        "nothing handed back: the reader took too much"
    );
    assert_eq!(
        taken.len() + in_pipe.len() + unsent.len(),
        data.len(),
        "{} taken, {} in the pipe, {} handed back",
        taken.len(),
        in_pipe.len(),
        unsent.len()
    );
    assert!(taken == data[..TAKEN], "the reader's bytes differ");
    assert!(
        in_pipe == &data[TAKEN..TAKEN + in_pipe.len()],
        "the bytes left in the pipe differ"
    );
    assert!(
        unsent == &data[TAKEN + in_pipe.len()..],
        "the bytes handed back differ"
    );
}

/// An idle writer keeps the pipe: the sender meets EPIPE when the reader
/// leaves, keeps the rest, and hands it back at close.
#[test]
fn reader_leaves_then_close_hands_back_the_rest() {
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let out = dir.path().join("out");
        mkfifo(&fifo);
        // A writer can only open while a reader is there: a passing one.
        let passing = nonblocking_reader(&fifo);
        let idle_writer = open(
            &fifo,
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        drop(passing);
        let data = stream();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let tx = send_all(&mut p, &fifo, &data);
        let reader = spawn_reader(&fifo, &out);
        let mut accepted = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(60), |e| match e {
            Event::Sent { bytes, .. } => {
                accepted += bytes;
                false
            }
            Event::Error { error, .. } => panic!("{error}"),
            Event::PeerGone(t) => *t == tx.token(),
            _ => false,
        });
        reader.wait_success(Duration::from_secs(30));
        assert_eq!(p.stats(tx).unwrap().bytes_accepted, accepted as u64);
        let unsent = close(&mut p, &mut ev, tx, &mut accepted);
        // The sender's end is closed; the idle writer keeps the pipe.
        let in_pipe = drain(&nonblocking_reader(&fifo));
        assert_eq!(in_pipe.len(), accepted - TAKEN);
        assert_whole(&data, &out, &in_pipe, &unsent);
        drop(idle_writer);
    });
}

/// An idle reader keeps the pipe: the sender fills it once the reader
/// process has gone, its last write waits, and the close cancels it.
#[test]
fn close_while_a_write_waits_on_a_full_pipe_hands_back_the_rest() {
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let out = dir.path().join("out");
        mkfifo(&fifo);
        let idle_reader = nonblocking_reader(&fifo);
        let data = stream();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let tx = send_all(&mut p, &fifo, &data);
        let mut reader = spawn_reader(&fifo, &out);
        let mut accepted = 0;
        // Until the reader has gone and the sender has written past what
        // it took: those bytes are in the pipe, for the idle reader.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while reader.child().try_wait().unwrap().is_none() || accepted <= TAKEN {
            assert!(std::time::Instant::now() < deadline, "{accepted} accepted");
            p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
            for e in &ev {
                match e {
                    Event::Sent { bytes, .. } => accepted += bytes,
                    Event::Error { error, .. } => panic!("{error}"),
                    Event::PeerGone(_) => panic!("the idle reader is there"),
                    _ => {}
                }
            }
        }
        reader.wait_success(Duration::from_secs(30));
        let unsent = close(&mut p, &mut ev, tx, &mut accepted);
        // No writer now: the idle reader gets the pipe's bytes, then EOF.
        let in_pipe = drain(&idle_reader);
        assert_eq!(in_pipe.len(), accepted - TAKEN);
        assert_whole(&data, &out, &in_pipe, &unsent);
    });
}
