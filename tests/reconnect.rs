//! A sender survives its reader leaving and coming back: across many reader
//! sessions (real processes) every byte arrives exactly once, in order.

mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::{
    CloseReason, Error, Event, Events, FifoOptions, Proactor, Reconnect, Sender, State,
};

/// Reader sessions, one after the other: python sessions that take a share
/// each (some take nothing: connect and leave), then `cat` to EOF.
fn run_sessions(fifo: &Path, dir: &Path, shares: &[usize]) -> Vec<PathBuf> {
    let mut outs = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        let out = dir.join(format!("session{i:03}"));
        let args: [&dyn AsRef<std::ffi::OsStr>; 3] = [&fifo, &share.to_string(), &out];
        ChildGuard::spawn(&mut python(EXACT_READ_PY, &args)).wait_success(Duration::from_secs(60));
        outs.push(out);
    }
    let out = dir.join("session_cat");
    let file = std::fs::File::create(&out).unwrap();
    ChildGuard::spawn(Command::new("cat").arg(fifo).stdout(Stdio::from(file)))
        .wait_success(Duration::from_secs(60));
    outs.push(out);
    outs
}

fn payload(size: usize) -> Vec<u8> {
    let mut p = vec![0u8; size];
    pattern(size as u64, &mut p);
    p
}

/// Sends `data` through a sender (with backpressure) while reader sessions
/// come and go; returns what the sessions read, in session order.
fn transfer(size: usize, sessions: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("f");
    let data = payload(size);
    let mut p = Proactor::new().unwrap();
    let mut ev = Events::with_capacity(256);
    let tx: Sender = p
        .open_sender(&fifo, &FifoOptions::new().create(true))
        .unwrap();
    // Shares: `sessions` python readers take about size/(sessions+1) each,
    // every third one takes nothing; cat takes the rest.
    let share = size / (sessions + 1);
    let shares: Vec<usize> = (0..sessions)
        .map(|i| if i % 3 == 2 { 0 } else { share })
        .collect();
    let (fifo2, dir2) = (fifo.clone(), dir.path().to_path_buf());
    let readers = std::thread::spawn(move || run_sessions(&fifo2, &dir2, &shares));

    let mut sent = 0;
    let mut peer_gone = 0;
    loop {
        while sent < data.len() {
            let n = (data.len() - sent).min(64 * 1024);
            match p.send(tx, &data[sent..sent + n]) {
                Ok(()) => sent += n,
                Err(Error::WouldBlock { .. }) => break,
                Err(e) => panic!("{e}"),
            }
            if sent == data.len() {
                p.close_after_flush(tx).unwrap();
            }
        }
        p.poll(&mut ev, Some(Duration::from_secs(30))).unwrap();
        let mut closed = false;
        for e in &ev {
            match e {
                Event::PeerGone(_) => peer_gone += 1,
                Event::Closed { reason, unsent, .. } => {
                    assert_eq!(reason, CloseReason::Flushed);
                    assert!(unsent.is_empty());
                    closed = true;
                }
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        if closed {
            break;
        }
    }
    let outs = readers.join().unwrap();
    let mut got = Vec::new();
    for out in outs {
        got.extend_from_slice(&std::fs::read(out).unwrap());
    }
    (data, got, peer_gone)
}

fn check(size: usize, sessions: usize) {
    watchdog(Duration::from_secs(120), move || {
        let (data, got, peer_gone) = transfer(size, sessions);
        assert_eq!(
            got.len(),
            data.len(),
            "size {size}: lost or duplicated bytes"
        );
        assert!(got == data, "size {size}: bytes differ (order or content)");
        // Payloads that fit in the pipe are written at once and no write
        // meets a departed reader; larger ones must have met EPIPE.
        if size > 4 * 65536 {
            assert!(peer_gone > 0, "size {size}: readers left but no PeerGone");
        }
    });
}

#[test]
fn payload_1() {
    check(1, 3);
}

#[test]
fn payload_4096() {
    check(4096, 6);
}

#[test]
fn payload_4097() {
    check(4097, 6);
}

#[test]
fn payload_8192() {
    check(8192, 6);
}

#[test]
fn payload_8193() {
    check(8193, 6);
}

#[test]
fn payload_65536() {
    check(65536, 9);
}

#[test]
fn payload_1_mib() {
    check(1 << 20, 12);
}

#[test]
fn payload_16_mib() {
    check(16 << 20, 15);
}

/// A sender with `policy` on a fresh FIFO, and the FIFO's only reader:
/// a non-blocking read end of the test's own.
struct WithReader {
    _dir: tempfile::TempDir,
    fifo: PathBuf,
    reader: OwnedFd,
    p: Proactor,
    ev: Events,
    tx: Sender,
}

fn sender_with_reader(policy: Reconnect) -> WithReader {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("f");
    mkfifo(&fifo);
    let reader = nonblocking_reader(&fifo);
    let mut p = Proactor::new().unwrap();
    let tx = p
        .open_sender(&fifo, &FifoOptions::new().reconnect(policy))
        .unwrap();
    WithReader {
        _dir: dir,
        fifo,
        reader,
        p,
        ev: Events::default(),
        tx,
    }
}

#[test]
fn policy_fail_hands_back_the_unsent_bytes_at_once() {
    watchdog(Duration::from_secs(30), || {
        let WithReader {
            _dir,
            reader,
            mut p,
            mut ev,
            tx,
            ..
        } = sender_with_reader(Reconnect::Fail);
        p.send(tx, b"delivered").unwrap();
        poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
            matches!(e, Event::Sent { .. })
        });
        // The last reader: no child of a parallel test may hold a copy.
        close_last_end(reader);
        p.send(tx, b"handed back").unwrap();
        let mut unsent = None;
        poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| match e {
            Event::Closed {
                reason: CloseReason::PeerGone,
                unsent: u,
                ..
            } => {
                unsent = Some(u.to_vec());
                true
            }
            _ => false,
        });
        assert_eq!(unsent.unwrap(), b"handed back");
    });
}

#[test]
fn policy_wait_up_to_times_out_with_a_typed_error() {
    watchdog(Duration::from_secs(30), || {
        let limit = Duration::from_millis(200);
        let WithReader {
            _dir,
            fifo,
            reader,
            mut p,
            mut ev,
            tx,
        } = sender_with_reader(Reconnect::WaitUpTo(limit));
        // The last reader: no child of a parallel test may hold a copy.
        close_last_end(reader);
        p.send(tx, b"nobody came back").unwrap();
        let mut timed_out = false;
        let mut unsent = None;
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            match e {
                Event::Error {
                    error: Error::ReaderTimeout { path, waited },
                    ..
                } => {
                    assert_eq!(*path, fifo);
                    assert_eq!(*waited, limit);
                    timed_out = true;
                }
                Event::Closed { unsent: u, .. } => unsent = Some(u.to_vec()),
                _ => {}
            }
            unsent.is_some()
        });
        assert!(timed_out);
        assert_eq!(unsent.unwrap(), b"nobody came back");
        assert_eq!(p.state(tx).unwrap(), State::Closed);
    });
}
