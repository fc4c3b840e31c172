//! Fan-out: one receiver to several senders with TEE and SPLICE.

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::{Error, Event, Events, FanOutPolicy, FifoOptions, Proactor, Sender};

fn writer_thread(path: std::path::PathBuf, total: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut chunk = vec![0u8; 1 << 16];
        let mut off = 0;
        while off < total {
            let n = chunk.len().min(total - off);
            pattern(off as u64, &mut chunk[..n]);
            f.write_all(&chunk[..n]).unwrap();
            off += n;
        }
    })
}

fn expected(total: usize) -> Vec<u8> {
    let mut v = vec![0u8; total];
    pattern(0, &mut v);
    v
}

#[test]
fn three_cat_readers_get_every_byte() {
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let rx = p.open_receiver(&src, &opts).unwrap();
        let mut txs: Vec<Sender> = Vec::new();
        let mut cats = Vec::new();
        for i in 0..3 {
            let path = dir.path().join(format!("out{i}"));
            txs.push(p.open_sender(&path, &opts).unwrap());
            let out = std::fs::File::create(dir.path().join(format!("got{i}"))).unwrap();
            cats.push(ChildGuard::new(
                Command::new("cat")
                    .arg(&path)
                    .stdout(Stdio::from(out))
                    .spawn()
                    .unwrap(),
            ));
        }
        p.fan_out(rx, &txs, FanOutPolicy::Wait).unwrap();
        assert!(matches!(p.send(txs[0], b"x"), Err(Error::Relayed { .. })));
        const TOTAL: usize = 16 << 20;
        let writer = writer_thread(src.clone(), TOTAL);
        let mut relayed = [0usize; 3];
        poll_until(&mut p, &mut ev, Duration::from_secs(100), |e| {
            match e {
                Event::Relayed { to, bytes, .. } => {
                    relayed[txs.iter().position(|t| t == to).unwrap()] += bytes
                }
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            matches!(e, Event::Closed { token, .. } if *token == rx.token())
        });
        writer.join().unwrap();
        for tx in &txs {
            p.close_after_flush(*tx).unwrap();
        }
        let mut closed = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
            closed += matches!(e, Event::Closed { .. }) as usize;
            closed == 3
        });
        let want = expected(TOTAL);
        for (i, cat) in cats.into_iter().enumerate() {
            assert!(cat.wait_output(Duration::from_secs(20)).status.success());
            let got = std::fs::read(dir.path().join(format!("got{i}"))).unwrap();
            assert_eq!(got.len(), TOTAL, "destination {i}");
            assert!(got == want, "destination {i} differs");
            // Almost everything moved in the kernel (a short round falls back
            // to a user-space copy for the difference).
            assert!(
                relayed[i] > TOTAL / 2,
                "destination {i}: only {} relayed",
                relayed[i]
            );
        }
    });
}

/// Reads what is there now from a non-blocking reader.
fn drain(fd: &OwnedFd, out: &mut Vec<u8>) {
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = nix::unistd::read(fd, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn reader_leaves(policy: FanOutPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut p = Proactor::new().unwrap();
    let mut ev = Events::with_capacity(256);
    let rx = p
        .open_receiver(&src, &FifoOptions::new().create(true))
        .unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for path in [&a, &b] {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    let ra = nonblocking_reader(&a);
    let rb = nonblocking_reader(&b);
    let ta = p.open_sender(&a, &FifoOptions::new()).unwrap();
    let tb = p.open_sender(&b, &FifoOptions::new()).unwrap();
    p.fan_out(rx, &[ta, tb], policy).unwrap();
    const TOTAL: usize = 4 << 20;
    let writer = writer_thread(src.clone(), TOTAL);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    // Both read until b has 200,000 bytes, then b's reader leaves.
    while got_b.len() < 200_000 {
        p.poll(&mut ev, Some(Duration::from_millis(5))).unwrap();
        drain(&ra, &mut got_a);
        drain(&rb, &mut got_b);
    }
    drop(rb);
    let mut detached = false;
    let mut rb2: Option<OwnedFd> = None;
    let mut src_closed = false;
    let mut b_gone = false;
    for _ in 0..20_000 {
        p.poll(&mut ev, Some(Duration::from_millis(5))).unwrap();
        for e in &ev {
            match e {
                Event::Detached { to, .. } => {
                    assert_eq!(to, tb);
                    detached = true;
                }
                Event::Closed { token, .. } if token == rx.token() => src_closed = true,
                Event::PeerGone(t) if t == tb.token() => b_gone = true,
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        drain(&ra, &mut got_a);
        // With Wait, b's next reader comes once b's departure is known,
        // and gets the rest.
        if policy == FanOutPolicy::Wait && rb2.is_none() && b_gone {
            rb2 = Some(nonblocking_reader(&b));
        }
        if let Some(r) = &rb2 {
            drain(r, &mut got_b);
        }
        if src_closed
            && got_a.len() == TOTAL
            && (policy == FanOutPolicy::Detach || got_b.len() == TOTAL)
        {
            break;
        }
    }
    writer.join().unwrap();
    let want = expected(TOTAL);
    assert_eq!(got_a.len(), TOTAL);
    assert!(got_a == want, "a differs");
    match policy {
        FanOutPolicy::Detach => {
            assert!(detached, "no Detached event");
            // b got a prefix, exactly.
            assert!(got_b.len() < TOTAL && got_b == want[..got_b.len()]);
        }
        FanOutPolicy::Wait => {
            assert!(!detached);
            assert_eq!(got_b.len(), TOTAL);
            assert!(got_b == want, "b differs");
        }
    }
}

#[test]
fn detach_policy_drops_the_leaving_destination_and_feeds_the_others() {
    watchdog(Duration::from_secs(120), || {
        reader_leaves(FanOutPolicy::Detach)
    });
}

#[test]
fn wait_policy_loses_nothing_for_anyone() {
    watchdog(Duration::from_secs(120), || {
        reader_leaves(FanOutPolicy::Wait)
    });
}
