//! Relays: bytes moved from a receiver to a sender by splice, in the kernel.
//!
//! Every test holds `serial()`: one counts this process's threads (io-wq
//! workers included), which a test running beside it would disturb.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::{CloseReason, Error, Event, Events, FifoOptions, Proactor, State};

#[test]
fn relay_64_mib_to_a_cat_process_exactly() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let rx = p.open_receiver(&a, &opts).unwrap();
        let tx = p.open_sender(&b, &opts).unwrap();
        let out = dir.path().join("out");
        let cat = ChildGuard::new(
            Command::new("cat")
                .arg(&b)
                .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
                .spawn()
                .unwrap(),
        );
        p.relay(rx, tx).unwrap();
        assert!(matches!(p.send(tx, b"x"), Err(Error::Relayed { .. })));
        assert!(matches!(p.relay(rx, tx), Err(Error::Relayed { .. })));
        const TOTAL: usize = 64 << 20;
        let writer_path = a.clone();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .unwrap();
            let mut chunk = vec![0u8; 1 << 20];
            for i in 0..TOTAL / chunk.len() {
                pattern((i * chunk.len()) as u64, &mut chunk);
                f.write_all(&chunk).unwrap();
            }
        });
        let mut relayed = 0;
        let mut data_events = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(100), |e| {
            match e {
                Event::Relayed { from, to, bytes } => {
                    assert_eq!((*from, *to), (rx, tx));
                    relayed += bytes;
                }
                Event::Data { .. } => data_events += 1,
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            // The one-shot receiver closes at EOF: the relay ends.
            matches!(e, Event::Closed { token, reason: CloseReason::Eof, .. } if *token == rx.token())
        });
        writer.join().unwrap();
        assert_eq!(relayed, TOTAL);
        assert_eq!(data_events, 0, "relayed bytes must not come as Data");
        assert_eq!(p.stats(tx).unwrap().bytes_accepted, TOTAL as u64);
        // The sender is free again.
        p.send(tx, b"").unwrap();
        p.close_after_flush(tx).unwrap();
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(10),
            |e| matches!(e, Event::Closed { token, .. } if *token == tx.token()),
        );
        assert!(cat.wait_output(Duration::from_secs(20)).status.success());
        let mut got = Vec::new();
        std::fs::File::open(&out)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got.len(), TOTAL);
        let mut expected = vec![0u8; 1 << 20];
        for (i, c) in got.chunks(1 << 20).enumerate() {
            pattern((i << 20) as u64, &mut expected);
            assert!(c == expected, "MiB {i} differs");
        }
    });
}

#[test]
fn a_thousand_idle_relays_hold_no_threads() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::builder().registered_files(4096).build().unwrap();
        let mut ev = Events::with_capacity(256);
        let before = threads();
        let mut readers = Vec::new();
        let mut pairs = Vec::new();
        for i in 0..1000 {
            let (a, b) = (
                dir.path().join(format!("a{i}")),
                dir.path().join(format!("b{i}")),
            );
            let rx = p.open_receiver(&a, &opts).unwrap();
            nix::unistd::mkfifo(&b, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            readers.push(nonblocking_reader(&b));
            let tx = p.open_sender(&b, &opts).unwrap();
            p.relay(rx, tx).unwrap();
            pairs.push((a, rx));
        }
        for _ in 0..20 {
            p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
        }
        let idle_threads = threads().saturating_sub(before);
        assert!(
            idle_threads <= 4,
            "{idle_threads} threads for 1000 idle relays"
        );
        // They all still work: one message through each.
        let mut writers: Vec<std::fs::File> = pairs
            .iter()
            .map(|(a, _)| std::fs::OpenOptions::new().write(true).open(a).unwrap())
            .collect();
        for (i, w) in writers.iter_mut().enumerate() {
            w.write_all(format!("message {i}\n").as_bytes()).unwrap();
        }
        let mut relayed = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(60), |e| {
            if let Event::Relayed { .. } = e {
                relayed += 1;
            }
            relayed >= 1000
        });
        let mut buf = [0u8; 64];
        for (i, r) in readers.iter().enumerate() {
            let n = nix::unistd::read(r, &mut buf).unwrap();
            assert_eq!(&buf[..n], format!("message {i}\n").as_bytes());
        }
        // io-wq stays capped while they ran.
        assert!(
            threads().saturating_sub(before) <= 4,
            "{} threads",
            threads()
        );
    });
}

#[test]
fn destination_reader_leaves_mid_relay_and_nothing_is_lost() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let rx = p.open_receiver(&a, &opts).unwrap();
        nix::unistd::mkfifo(&b, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let first = nonblocking_reader(&b);
        let tx = p.open_sender(&b, &opts).unwrap();
        p.relay(rx, tx).unwrap();
        const TOTAL: usize = 1 << 20;
        let mut data = vec![0u8; TOTAL];
        pattern(99, &mut data);
        let to_write = data.clone();
        let writer_path = a.clone();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .unwrap();
            f.write_all(&to_write).unwrap();
        });
        // The first reader takes 100,000 bytes and leaves.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.len() < 100_000 {
            p.poll(&mut ev, Some(Duration::from_millis(5))).unwrap();
            loop {
                let want = (100_000 - got.len()).min(buf.len());
                if want == 0 {
                    break;
                }
                match nix::unistd::read(&first, &mut buf[..want]) {
                    Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
        }
        drop(first);
        let mut gone = false;
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            gone |= matches!(e, Event::PeerGone(t) if *t == tx.token());
            gone
        });
        assert_eq!(p.state(tx).unwrap(), State::PeerGone);
        // The next reader gets everything else, once.
        let second = std::fs::File::open(&b).unwrap();
        let reader = std::thread::spawn(move || {
            let mut rest = Vec::new();
            let mut second = second;
            second.read_to_end(&mut rest).unwrap();
            rest
        });
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(30),
            |e| matches!(e, Event::Closed { token, .. } if *token == rx.token()),
        );
        writer.join().unwrap();
        p.close_after_flush(tx).unwrap();
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(10),
            |e| matches!(e, Event::Closed { token, .. } if *token == tx.token()),
        );
        got.extend(reader.join().unwrap());
        assert_eq!(got.len(), TOTAL);
        assert!(got == data);
    });
}

#[test]
fn pausing_a_relay_stops_its_armed_splice() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let rx = p.open_receiver(&a, &opts).unwrap();
        nix::unistd::mkfifo(&b, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = nonblocking_reader(&b);
        let tx = p.open_sender(&b, &opts).unwrap();
        p.relay(rx, tx).unwrap();
        p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
        p.pause(rx).unwrap();
        p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
        // Deterministic half of the check: the splice was cancelled. The
        // polls below show that nothing moves in the meantime either.
        assert_eq!(p.in_flight(), 0, "the splice is still armed");
        let mut w = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
        w.write_all(b"after pause").unwrap();
        for _ in 0..10 {
            p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
            assert!(
                !ev.iter().any(|e| matches!(e, Event::Relayed { .. })),
                "relayed while paused"
            );
        }
        let mut buf = [0u8; 64];
        assert!(
            nix::unistd::read(&reader, &mut buf).is_err(),
            "bytes reached the output while paused"
        );
        p.resume(rx).unwrap();
        poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
            matches!(e, Event::Relayed { .. })
        });
        let n = nix::unistd::read(&reader, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"after pause");
    });
}

/// `relay` then `close_after_flush` on its destination passes EOF on: the
/// destination closes (Flushed) only after the source's last byte went
/// through and the reader drained it, so the reader gets every byte, then
/// EOF, with nobody watching for the source's `Closed`.
#[test]
fn close_after_flush_on_a_relay_destination_passes_eof_on() {
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let rx = p.open_receiver(&a, &opts).unwrap();
        let tx = p.open_sender(&b, &opts).unwrap();
        let out = dir.path().join("out");
        let cat = ChildGuard::new(
            Command::new("cat")
                .arg(&b)
                .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
                .spawn()
                .unwrap(),
        );
        p.relay(rx, tx).unwrap();
        p.close_after_flush(tx).unwrap();
        const TOTAL: usize = 8 << 20;
        let writer_path = a.clone();
        let writer = std::thread::spawn(move || {
            // A moment with no writer at all: the relay must not end then.
            std::thread::sleep(Duration::from_millis(50));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .unwrap();
            let mut chunk = vec![0u8; 1 << 20];
            for i in 0..TOTAL / chunk.len() {
                pattern((i * chunk.len()) as u64, &mut chunk);
                f.write_all(&chunk).unwrap();
            }
        });
        let (mut rx_closed, mut tx_closed) = (None, None);
        poll_until(&mut p, &mut ev, Duration::from_secs(50), |e| {
            match e {
                Event::Closed { token, reason, .. } if *token == rx.token() => {
                    rx_closed = Some(*reason)
                }
                Event::Closed { token, reason, .. } if *token == tx.token() => {
                    assert!(
                        rx_closed.is_some(),
                        "the destination closed before its source: {reason:?}"
                    );
                    tx_closed = Some(*reason)
                }
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            tx_closed.is_some()
        });
        writer.join().unwrap();
        assert_eq!(rx_closed, Some(CloseReason::Eof));
        assert_eq!(tx_closed, Some(CloseReason::Flushed));
        // cat saw EOF (it exited) after every byte.
        assert!(cat.wait_output(Duration::from_secs(20)).status.success());
        let mut got = Vec::new();
        std::fs::File::open(&out)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        let mut want = vec![0u8; TOTAL];
        pattern(0, &mut want);
        assert_eq!(got.len(), TOTAL);
        assert!(got == want, "bytes differ");
    });
}
