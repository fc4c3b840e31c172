//! A multishot receiver's hang-up polls are untracked: their ids are their
//! user data. These tests reach a state the public API reaches only by a
//! race (a persistent receiver whose EOF is seen, as a splice sees it,
//! while its hang-up poll is still in flight) by handling that EOF by hand.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::event::{CloseReason, Event, Events};
use crate::fifo::FifoOptions;
use crate::proactor::Proactor;
use crate::token::{Receiver, Token};

/// What a receiver reported: its bytes, and its other events in order.
#[derive(Debug, Default)]
struct Seen {
    bytes: Vec<u8>,
    events: Vec<&'static str>,
    closed: Option<CloseReason>,
}

impl Seen {
    fn take(&mut self, rx: Receiver, e: &Event<'_>) {
        let t: Token = rx.token();
        match e {
            Event::Data { from, data } if *from == rx => self.bytes.extend_from_slice(data),
            Event::PeerGone(x) if *x == t => self.events.push("gone"),
            Event::PeerBack(x) if *x == t => self.events.push("back"),
            Event::Closed { token, reason, .. } if *token == t => self.closed = Some(*reason),
            Event::Error { .. } => panic!("unexpected error: {e:?}"),
            _ => {}
        }
    }
}

/// Polls for `for_at_least`, then until `done` holds (10 s at most).
fn poll_for(
    p: &mut Proactor,
    rx: Receiver,
    seen: &mut Seen,
    for_at_least: Duration,
    done: impl Fn(&Seen) -> bool,
) {
    let mut events = Events::with_capacity(64);
    let start = Instant::now();
    loop {
        let now = Instant::now();
        assert!(now < start + Duration::from_secs(10), "not done: {seen:?}");
        if now >= start + for_at_least && done(seen) {
            return;
        }
        p.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for e in events.iter() {
            seen.take(rx, &e);
        }
    }
}

fn write_and_leave(path: &Path, bytes: &[u8]) {
    let mut w = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    w.write_all(bytes).unwrap();
}

/// A persistent receiver's read end is replaced at an EOF seen while its
/// hang-up poll is still in flight (its writer has left: the poll fires
/// as it is cancelled). The old poll's completion comes after its
/// replacement is armed, with the same user data but for the arm: it
/// must not be taken for the replacement's. The receiver gets exactly its
/// bytes and one `PeerBack` and one `PeerGone` per writer, holds what an
/// idle receiver holds, and closes.
#[test]
fn a_hang_up_poll_replaced_at_eof_is_told_from_its_replacement() {
    replaced_at_eof(1);
}

/// Two EOFs in a row, before either replaced poll completes: the third
/// poll would take the first one's arm, so it waits for that one's
/// completion instead of being mistaken for it.
#[test]
fn a_hang_up_poll_waits_for_its_arm_to_be_free() {
    replaced_at_eof(2);
}

/// Writes, handles `eofs` EOFs by hand while the hang-up poll is in
/// flight, then checks every hang-up after is seen once.
fn replaced_at_eof(eofs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in");
    let mut p = Proactor::new().unwrap();
    let opts = FifoOptions::new().create(true).persistent(true);
    let rx = p.open_receiver(&path, &opts).unwrap();
    let idx = rx.token().index as usize;
    let mut seen = Seen::default();
    poll_for(&mut p, rx, &mut seen, Duration::from_millis(50), |_| true);
    let idle = p.snapshot().transport_ops;

    // A writer comes, writes, and stays until its bytes are in.
    let mut first = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    first.write_all(b"one,").unwrap();
    poll_for(&mut p, rx, &mut seen, Duration::ZERO, |s| {
        s.bytes == b"one,"
    });
    // It leaves; before its hang-up is reaped, the EOF is handled as a
    // splice handles it (its read cancelled first, as `start_splice` does).
    drop(first);
    let (end, side) = p.table.receiver_mut(idx).unwrap();
    end.cancel(&mut p.io.ring, [side.read]);
    for _ in 0..eofs {
        p.eof(idx);
    }
    poll_for(&mut p, rx, &mut seen, Duration::from_millis(200), |_| true);
    assert_eq!(seen.events, ["gone"], "{seen:?}");
    assert_eq!(p.snapshot().transport_ops, idle, "idle again, nothing more");

    // The replacement watches the new read end: each writer after is
    // seen coming and going, once.
    for (round, bytes) in [(1, &b"two,"[..]), (2, b"three")] {
        write_and_leave(&path, bytes);
        poll_for(&mut p, rx, &mut seen, Duration::from_millis(200), |s| {
            s.events.len() == 1 + 2 * round
        });
        assert_eq!(p.snapshot().transport_ops, idle, "{seen:?}");
    }
    assert_eq!(seen.bytes, b"one,two,three");
    assert_eq!(seen.events, ["gone", "back", "gone", "back", "gone"]);

    p.close(rx).unwrap();
    poll_for(&mut p, rx, &mut seen, Duration::ZERO, |s| {
        s.closed.is_some()
    });
    assert_eq!(seen.closed, Some(CloseReason::Requested));
    assert_eq!(p.snapshot().transport_ops, 0);
}

/// A closed receiver's `Closed` comes once nothing of it is in flight,
/// its untracked read and hang-up poll included; its slot then serves the
/// next receiver, which a late completion of the old one never reaches.
#[test]
fn a_closed_receivers_slot_serves_the_next_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proactor::new().unwrap();
    let opts = FifoOptions::new().create(true);
    let old = p.open_receiver(dir.path().join("old"), &opts).unwrap();
    let mut seen_old = Seen::default();
    poll_for(
        &mut p,
        old,
        &mut seen_old,
        Duration::from_millis(50),
        |_| true,
    );
    assert!(p.snapshot().transport_ops > 0, "the receiver reads");
    p.close(old).unwrap();
    let mut events = Events::with_capacity(64);
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen_old.closed.is_none() {
        assert!(Instant::now() < deadline, "not closed: {seen_old:?}");
        p.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for e in events.iter() {
            seen_old.take(old, &e);
        }
        if seen_old.closed.is_some() {
            assert_eq!(p.snapshot().ops_in_flight, 0, "closed with ops in flight");
        }
    }

    let path = dir.path().join("new");
    let new = p.open_receiver(&path, &opts).unwrap();
    assert_eq!(new.token().index, old.token().index, "the slot is reused");
    let mut seen = Seen::default();
    poll_for(&mut p, new, &mut seen, Duration::from_millis(50), |_| true);
    write_and_leave(&path, b"new bytes");
    poll_for(&mut p, new, &mut seen, Duration::ZERO, |s| {
        s.closed.is_some()
    });
    assert_eq!(seen.bytes, b"new bytes");
    assert_eq!(seen.closed, Some(CloseReason::Eof));
    assert_eq!(seen_old.bytes, b"");
    assert_eq!(p.snapshot().ops_in_flight, 0);
}
