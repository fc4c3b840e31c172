//! 1 GiB through one FIFO: every byte once, in order.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::{CloseReason, Error, Event, Events, FifoOptions, Proactor, Sender, State};
use sha2::{Digest, Sha256};

const TOTAL: u64 = 1 << 30;
const BLOCK: usize = 1 << 20;

/// Block `n` of the stream: a fixed pseudo-random MiB stamped with `n`, so a
/// lost, repeated or reordered block changes the checksum.
fn block(base: &[u8], n: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(base);
    out[..8].copy_from_slice(&n.to_le_bytes());
}

/// Sends blocks until the sender pushes back (or all are queued, then asks
/// for close after flush). A refused block is not queued: it is sent again
/// on the next call.
fn feed(
    p: &mut Proactor,
    tx: Sender,
    next: &mut u64,
    base: &[u8],
    buf: &mut Vec<u8>,
    mut hash: Option<&mut Sha256>,
) {
    while *next < TOTAL / BLOCK as u64 {
        block(base, *next, buf);
        match p.send(tx, buf) {
            Ok(()) => {}
            Err(Error::WouldBlock { .. }) => return,
            Err(e) => panic!("{e}"),
        }
        if let Some(h) = hash.as_deref_mut() {
            h.update(&*buf);
        }
        *next += 1;
    }
    if p.state(tx).map(|s| s != State::Closing).unwrap_or(false) {
        let _ = p.close_after_flush(tx);
    }
}

#[test]
fn one_gib_from_ringpipe_to_a_sha256sum_process() {
    watchdog(Duration::from_secs(300), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let tx = p
            .open_sender(
                &path,
                &FifoOptions::new()
                    .create(true)
                    .pipe_size(1 << 20)
                    .watermarks(4 << 20, 1 << 20),
            )
            .unwrap();
        let child = ChildGuard::new(
            Command::new("sha256sum")
                .arg(&path)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut base = vec![0u8; BLOCK];
        pattern(0, &mut base);
        let mut hasher = Sha256::new();
        let mut buf = Vec::with_capacity(BLOCK);
        let mut next = 0u64;
        let mut flushed = false;
        while !flushed {
            feed(&mut p, tx, &mut next, &base, &mut buf, Some(&mut hasher));
            p.poll(&mut ev, Some(Duration::from_secs(10))).unwrap();
            for e in &ev {
                match e {
                    Event::Closed { reason, unsent, .. } => {
                        assert_eq!(reason, CloseReason::Flushed);
                        assert!(unsent.is_empty());
                        flushed = true;
                    }
                    Event::Error { error, .. } => panic!("{error}"),
                    _ => {}
                }
            }
        }
        let out = child.wait_output(Duration::from_secs(60));
        assert!(out.status.success());
        let expected: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(got.split_whitespace().next(), Some(expected.as_str()));
    });
}

#[test]
fn one_gib_into_a_ringpipe_receiver_checked_byte_by_byte() {
    watchdog(Duration::from_secs(300), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let rx = p
            .open_receiver(&path, &FifoOptions::new().create(true))
            .unwrap();
        // The writer: another thread with its own proactor, as another
        // process would have.
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            let mut p = Proactor::new().unwrap();
            let mut ev = Events::with_capacity(256);
            let opts = FifoOptions::new().watermarks(4 << 20, 1 << 20);
            let tx = p.open_sender(&writer_path, &opts).unwrap();
            let mut base = vec![0u8; BLOCK];
            pattern(0, &mut base);
            let mut buf = Vec::with_capacity(BLOCK);
            let mut next = 0u64;
            loop {
                feed(&mut p, tx, &mut next, &base, &mut buf, None);
                p.poll(&mut ev, Some(Duration::from_secs(10))).unwrap();
                if ev.iter().any(|e| matches!(e, Event::Closed { .. })) {
                    return;
                }
            }
        });
        let mut base = vec![0u8; BLOCK];
        pattern(0, &mut base);
        let mut expected = Vec::with_capacity(BLOCK);
        let mut received = 0u64;
        poll_until(&mut p, &mut ev, Duration::from_secs(240), |e| match e {
            Event::Data { from, data } => {
                assert_eq!(*from, rx);
                let mut data: &[u8] = data;
                while !data.is_empty() {
                    let n = received / BLOCK as u64;
                    let off = (received % BLOCK as u64) as usize;
                    if off == 0 || expected.is_empty() {
                        block(&base, n, &mut expected);
                    }
                    let take = data.len().min(BLOCK - off);
                    assert!(
                        data[..take] == expected[off..off + take],
                        "mismatch in block {n} at {off}"
                    );
                    received += take as u64;
                    data = &data[take..];
                }
                false
            }
            Event::PeerGone(t) => {
                assert_eq!(*t, rx.token());
                true
            }
            _ => false,
        });
        writer.join().unwrap();
        assert_eq!(received, TOTAL);
    });
}
