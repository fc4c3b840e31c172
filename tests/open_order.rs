//! A sender opened before any reader exists never blocks: it is Opening,
//! and becomes Open when a real reader process opens the FIFO.
//!
//! Every test holds `serial()`: one counts this process's threads, which a
//! test running beside it would disturb.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::{CloseReason, Error, Event, Events, FifoOptions, Proactor, State};

fn sender_then_reader(reader: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let mut p = Proactor::new().unwrap();
    let mut ev = Events::with_capacity(64);
    // No reader exists yet and none comes until this returns: an
    // open_sender that blocked would hang here, and the watchdog fails it.
    let tx = p
        .open_sender(&path, &FifoOptions::new().create(true))
        .unwrap();
    assert_eq!(p.state(tx).unwrap(), State::Opening);
    let payload: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    p.send(tx, &payload).unwrap();
    // Nothing can be written yet.
    p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
    assert!(ev.is_empty(), "{:?}", ev.iter().collect::<Vec<_>>());
    assert_eq!(p.state(tx).unwrap(), State::Opening);

    // The reader's output goes to a file: a pipe nobody drains would stall it.
    let out_path = dir.path().join("out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(reader);
    cmd.args(args).arg(&path).stdout(Stdio::from(out_file));
    let child = ChildGuard::new(cmd.spawn().unwrap());
    let mut opened = false;
    poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
        opened |= matches!(e, Event::Opened(s) if *s == tx);
        opened
    });
    p.close_after_flush(tx).unwrap();
    poll_until(
        &mut p,
        &mut ev,
        Duration::from_secs(20),
        |e| matches!(e, Event::Closed { token, reason: CloseReason::Flushed, unsent } if *token == tx.token() && unsent.is_empty()),
    );
    let out = child.wait_output(Duration::from_secs(20));
    assert!(out.status.success());
    let got = std::fs::read(&out_path).unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "reader got different bytes");
}

#[test]
fn sender_before_blocking_reader_cat() {
    // `cat` opens O_RDONLY without O_NONBLOCK: it blocks inside open(2)
    // until a writer exists, invisible to inotify; the retry timer finds it.
    let _serial = serial();
    watchdog(Duration::from_secs(60), || sender_then_reader("cat", &[]));
}

#[test]
fn sender_before_nonblocking_python_reader() {
    // Opens non-blocking (so the open itself raises inotify IN_OPEN).
    let script = r#"
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
# Until a writer exists, read(2) returns EOF at once: wait for data first.
poller = select.poll()
poller.register(fd, select.POLLIN)
poller.poll()
os.set_blocking(fd, True)
out = bytearray()
while True:
    b = os.read(fd, 65536)
    if not b:
        break
    out += b
sys.stdout.buffer.write(out)
"#;
    let _serial = serial();
    watchdog(Duration::from_secs(60), move || {
        sender_then_reader("python3", &["-c", script])
    });
}

#[test]
fn open_timeout_without_reader_is_a_typed_error_and_returns_the_bytes() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(16);
        let opts = FifoOptions::new()
            .create(true)
            .open_timeout(Duration::from_millis(300));
        let tx = p.open_sender(&path, &opts).unwrap();
        p.send(tx, b"waiting in vain").unwrap();
        let mut error = None;
        let mut unsent = None;
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            match e {
                Event::Error {
                    token,
                    error: Error::OpenTimeout { path: ep, waited },
                } if *token == tx.token() => {
                    error = Some((ep.clone(), *waited));
                }
                Event::Closed {
                    token,
                    reason,
                    unsent: u,
                } if *token == tx.token() => {
                    assert_eq!(*reason, CloseReason::Error);
                    unsent = Some(u.to_vec());
                }
                Event::Opened(_) => panic!("opened without a reader"),
                _ => {}
            }
            unsent.is_some()
        });
        let (epath, waited) = error.expect("an OpenTimeout error event");
        assert_eq!(epath, path);
        assert_eq!(waited, Duration::from_millis(300));
        assert_eq!(unsent.unwrap(), b"waiting in vain");
    });
}

#[test]
fn waiting_senders_take_no_thread_each() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(16);
        let before = threads();
        let opts = FifoOptions::new().create(true);
        let txs: Vec<_> = (0..200)
            .map(|i| {
                p.open_sender(dir.path().join(format!("f{i}")), &opts)
                    .unwrap()
            })
            .collect();
        for _ in 0..10 {
            p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
        }
        for tx in &txs {
            assert_eq!(p.state(*tx).unwrap(), State::Opening);
        }
        // No thread per waiting FIFO (io-wq may add one or two at most).
        assert!(
            threads() <= before + 2,
            "{} threads for 200 waiting senders",
            threads() - before
        );
    });
}
