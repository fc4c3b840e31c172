//! Relays: bytes moved from a receiver to a sender by splice, in the kernel.
//!
//! Every test holds `serial()`: one counts this process's threads (io-wq
//! workers included), which a test running beside it would disturb.

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use ringpipe::{
    CloseReason, Error, Event, Events, FifoOptions, Proactor, Receiver, Sender, State, Token,
};

/// Paths `a` (relayed from) and `b` (relayed to) in a fresh temp dir.
fn paths() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    (dir, a, b)
}

fn create() -> FifoOptions {
    FifoOptions::new().create(true)
}

/// Relays `a` (made by the receiver) into `b`, made here and given a
/// non-blocking reader of the test's own first, so the sender is open at
/// once. Returns the reader.
fn relay_to_reader(p: &mut Proactor, a: &Path, b: &Path) -> (Receiver, Sender, OwnedFd) {
    let rx = p.open_receiver(a, &create()).unwrap();
    mkfifo(b);
    let reader = nonblocking_reader(b);
    let tx = p.open_sender(b, &create()).unwrap();
    p.relay(rx, tx).unwrap();
    (rx, tx, reader)
}

/// `cat fifo > out`: a real reader process, through `common::spawn`.
fn cat_into(fifo: &Path, out: &Path) -> ChildGuard {
    let file = std::fs::File::create(out).unwrap();
    ChildGuard::spawn(Command::new("cat").arg(fifo).stdout(Stdio::from(file)))
}

/// A thread that opens `fifo` for writing once `go` says so (at once if
/// `None`) and writes the first `total` bytes of `pattern`, 1 MiB per
/// write.
fn write_pattern(
    fifo: &Path,
    total: usize,
    go: Option<std::sync::mpsc::Receiver<()>>,
) -> JoinHandle<()> {
    let fifo = fifo.to_path_buf();
    std::thread::spawn(move || {
        if let Some(go) = go {
            go.recv().unwrap();
        }
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let mut chunk = vec![0u8; 1 << 20];
        for i in 0..total / chunk.len() {
            pattern((i * chunk.len()) as u64, &mut chunk);
            f.write_all(&chunk).unwrap();
        }
    })
}

/// Checks that `out` holds the first `total` bytes of `pattern`, exactly.
fn assert_pattern_file(out: &Path, total: usize) {
    let got = std::fs::read(out).unwrap();
    assert_eq!(got.len(), total);
    let mut expected = vec![0u8; 1 << 20];
    for (i, c) in got.chunks(1 << 20).enumerate() {
        pattern((i << 20) as u64, &mut expected);
        assert!(c == &expected[..c.len()], "MiB {i} differs");
    }
}

/// Polls until `token` is closed.
fn wait_closed(p: &mut Proactor, ev: &mut Events, token: Token, limit: Duration) {
    poll_until(
        p,
        ev,
        limit,
        |e| matches!(e, Event::Closed { token: t, .. } if *t == token),
    );
}

#[test]
fn relay_64_mib_to_a_cat_process_exactly() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        let (dir, a, b) = paths();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(256);
        let rx = p.open_receiver(&a, &create()).unwrap();
        let tx = p.open_sender(&b, &create()).unwrap();
        let out = dir.path().join("out");
        let cat = cat_into(&b, &out);
        p.relay(rx, tx).unwrap();
        assert!(matches!(p.send(tx, b"x"), Err(Error::Relayed { .. })));
        assert!(matches!(p.relay(rx, tx), Err(Error::Relayed { .. })));
        const TOTAL: usize = 64 << 20;
        let writer = write_pattern(&a, TOTAL, None);
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
        let s = p.stats(tx).unwrap();
        assert_eq!(s.bytes_accepted + s.bytes_spliced, TOTAL as u64);
        // The sender is free again.
        p.send(tx, b"").unwrap();
        p.close_after_flush(tx).unwrap();
        wait_closed(&mut p, &mut ev, tx.token(), Duration::from_secs(10));
        cat.wait_success(Duration::from_secs(20));
        assert_pattern_file(&out, TOTAL);
    });
}

#[test]
fn a_thousand_idle_relays_hold_no_threads() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
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
            let (rx, _, reader) = relay_to_reader(&mut p, &a, &b);
            readers.push(reader);
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

/// With the default `splice(2)` from the proactor's thread, whose EPIPE
/// comes back to this thread.
#[test]
fn destination_reader_leaves_mid_relay_and_nothing_is_lost() {
    reader_leaves_mid_relay(Proactor::builder());
}

/// The same with io_uring SPLICE on an io-wq worker.
#[test]
fn destination_reader_leaves_mid_iowq_splice_relay_and_nothing_is_lost() {
    reader_leaves_mid_relay(Proactor::builder().splice_direct(false));
}

fn reader_leaves_mid_relay(builder: ringpipe::Builder) {
    let _serial = serial();
    watchdog(Duration::from_secs(60), move || {
        let (_dir, a, b) = paths();
        let mut p = builder.build().unwrap();
        let mut ev = Events::with_capacity(256);
        let (rx, tx, first) = relay_to_reader(&mut p, &a, &b);
        // More than both pipes hold (1 MiB each at most) and what the first
        // reader takes: the relay has bytes left to move when that reader
        // leaves, so it meets the departure (EPIPE, or POLLERR on the full
        // destination). With less, it may have moved everything already
        // and have nothing to notice it with.
        const TOTAL: usize = 4 << 20;
        let writer = write_pattern(&a, TOTAL, None);
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
        // The last reader: no child of a parallel test may hold a copy.
        close_last_end(first);
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
            std::io::Read::read_to_end(&mut second, &mut rest).unwrap();
            rest
        });
        wait_closed(&mut p, &mut ev, rx.token(), Duration::from_secs(30));
        writer.join().unwrap();
        p.close_after_flush(tx).unwrap();
        wait_closed(&mut p, &mut ev, tx.token(), Duration::from_secs(10));
        got.extend(reader.join().unwrap());
        assert_eq!(got.len(), TOTAL);
        let mut data = vec![0u8; TOTAL];
        pattern(0, &mut data);
        assert!(got == data);
    });
}

/// With the default `splice(2)` from the proactor's thread: only its poll
/// for data is armed, and pausing stops it.
#[test]
fn pausing_a_relay_stops_its_poll() {
    pause_a_relay(Proactor::builder());
}

/// The same with io_uring SPLICE, armed behind the poll: both stop.
#[test]
fn pausing_an_iowq_splice_relay_stops_its_armed_splice() {
    pause_a_relay(Proactor::builder().splice_direct(false));
}

fn pause_a_relay(builder: ringpipe::Builder) {
    let _serial = serial();
    watchdog(Duration::from_secs(30), move || {
        let (_dir, a, b) = paths();
        let mut p = builder.build().unwrap();
        let mut ev = Events::default();
        let (rx, _tx, reader) = relay_to_reader(&mut p, &a, &b);
        p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
        p.pause(rx).unwrap();
        p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
        // Deterministic half of the check: the splice was cancelled. The
        // polls below show that nothing moves in the meantime either.
        assert_eq!(p.snapshot().ops_in_flight, 0, "the splice is still armed");
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

/// `pause` then `resume` with no poll between: the cancel of the relay's
/// wait completes after the resume, which must arm the wait again (the
/// resume found it still in flight). Direct, io-wq, and a fan-out.
#[test]
fn pause_then_resume_in_one_turn_keeps_the_relay_going() {
    watchdog(Duration::from_secs(60), || {
        for (builder, fan_out) in [
            (Proactor::builder(), false),
            (Proactor::builder().splice_direct(false), false),
            (Proactor::builder(), true),
        ] {
            let (dir, a, b) = paths();
            let mut p = builder.build().unwrap();
            let mut ev = Events::default();
            let (rx, tx, reader) = if fan_out {
                let rx = p.open_receiver(&a, &create()).unwrap();
                let mut readers = Vec::new();
                let mut txs = Vec::new();
                for path in [b.clone(), dir.path().join("c")] {
                    mkfifo(&path);
                    readers.push(nonblocking_reader(&path));
                    txs.push(p.open_sender(&path, &create()).unwrap());
                }
                p.fan_out(rx, &txs, ringpipe::FanOutPolicy::Wait).unwrap();
                (rx, txs[0], readers.remove(0))
            } else {
                relay_to_reader(&mut p, &a, &b)
            };
            // The relay's wait is in the kernel.
            p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
            p.pause(rx).unwrap();
            p.resume(rx).unwrap();
            // The cancel goes in and completes; no data yet to race it.
            p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
            let mut w = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
            w.write_all(b"after resume").unwrap();
            poll_until(
                &mut p,
                &mut ev,
                Duration::from_secs(10),
                |e| matches!(e, Event::Relayed { to, .. } if *to == tx),
            );
            let mut buf = [0u8; 64];
            let n = nix::unistd::read(&reader, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"after resume", "fan-out {fan_out}");
        }
    });
}

/// A relay whose destination closes before the first poll: the
/// receiver's read, cancelled by the relay, is still in flight when the
/// relay ends, and the receiver must read with one read again (not a
/// second beside it, which nothing would cancel): every byte once, in
/// order, then its close completes.
#[test]
fn a_relay_ended_before_its_first_poll_reads_again_and_closes() {
    watchdog(Duration::from_secs(60), || {
        let (_dir, a, b) = paths();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let (rx, tx, _reader) = relay_to_reader(&mut p, &a, &b);
        p.close(tx).unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
        let mut got = Vec::new();
        let mut want = Vec::new();
        for round in 0..20u8 {
            let msg = [b'a' + round; 3];
            w.write_all(&msg).unwrap();
            want.extend_from_slice(&msg);
            poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
                match e {
                    Event::Data { from, data } if *from == rx => got.extend_from_slice(data),
                    Event::Closed { token, .. } => assert_eq!(*token, tx.token()),
                    Event::Error { error, .. } => panic!("{error}"),
                    _ => {}
                }
                got.len() >= want.len()
            });
        }
        assert_eq!(got, want);
        p.close(rx).unwrap();
        wait_closed(&mut p, &mut ev, rx.token(), Duration::from_secs(10));
        assert_eq!(p.snapshot().transport_ops, 0);
    });
}

/// `relay` then `close_after_flush` on its destination passes EOF on: the
/// destination closes (Flushed) only after the source's last byte went
/// through and the reader drained it, so the reader gets every byte, then
/// EOF, with nobody watching for the source's `Closed`.
#[test]
fn close_after_flush_on_a_relay_destination_passes_eof_on() {
    relay_until_eof(Proactor::builder());
}

/// The same with io_uring SPLICE on an io-wq worker.
#[test]
fn an_iowq_splice_relay_passes_every_byte_then_eof_on() {
    relay_until_eof(Proactor::builder().splice_direct(false));
}

/// The size of the pipe behind `fd`.
fn pipe_size(fd: &OwnedFd) -> usize {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap() as usize
}

/// A relay grows both its pipes to 1 MiB (where `pipe-max-size` and the
/// user's pipe pages allow) before its first move; with
/// `Builder::relay_pipe_size(0)` it leaves them as they are. Each relay moves
/// bytes first, so the sizing has happened when they are read.
#[test]
fn a_relay_grows_both_pipes_unless_told_not_to() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let limits = ringpipe::PipeLimits::read();
        for (grow, splice_direct) in [(true, true), (true, false), (false, true)] {
            let (_dir, a, b) = paths();
            let builder = Proactor::builder().splice_direct(splice_direct);
            let builder = if grow {
                builder
            } else {
                builder.relay_pipe_size(0)
            };
            let mut p = builder.build().unwrap();
            let mut ev = Events::default();
            let (_rx, _tx, reader) = relay_to_reader(&mut p, &a, &b);
            // This poll submits the cancel of the receiver's read, so the
            // byte below goes by splice, not by a read that beat it.
            p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
            let writer = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
            let writer = OwnedFd::from(writer);
            let default = pipe_size(&writer);
            nix::unistd::write(&writer, b"x").unwrap();
            poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
                matches!(e, Event::Relayed { .. })
            });
            let want = if grow {
                (1 << 20).min(limits.max_size.max(default))
            } else {
                default
            };
            assert_eq!(pipe_size(&writer), want, "source, grow {grow}");
            assert_eq!(pipe_size(&reader), want, "destination, grow {grow}");
        }
    });
}

fn relay_until_eof(builder: ringpipe::Builder) {
    watchdog(Duration::from_secs(60), move || {
        let (dir, a, b) = paths();
        let mut p = builder.build().unwrap();
        let mut ev = Events::with_capacity(256);
        let rx = p.open_receiver(&a, &create()).unwrap();
        let tx = p.open_sender(&b, &create()).unwrap();
        let out = dir.path().join("out");
        let cat = cat_into(&b, &out);
        p.relay(rx, tx).unwrap();
        p.close_after_flush(tx).unwrap();
        const TOTAL: usize = 8 << 20;
        // A moment with no writer at all: the relay must not end then.
        // The writer opens only once the relay waits in the kernel: its
        // destination has its reader (the relay arms then), and a poll
        // after that has submitted the relay's wait and waited on it.
        let (go, wait) = std::sync::mpsc::channel();
        let writer = write_pattern(&a, TOTAL, Some(wait));
        poll_until(&mut p, &mut ev, Duration::from_secs(20), |e| {
            assert!(
                !matches!(e, Event::Closed { .. } | Event::Error { .. }),
                "{e:?}"
            );
            matches!(e, Event::Opened(t) if *t == tx)
        });
        for _ in 0..2 {
            p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
            assert!(ev.is_empty(), "{:?}", ev.iter().collect::<Vec<_>>());
        }
        assert_eq!(
            p.state(rx).unwrap(),
            State::Open,
            "the relay ended with no writer"
        );
        assert!(
            p.snapshot().transport_ops > 0,
            "the relay waits for nothing"
        );
        go.send(()).unwrap();
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
        cat.wait_success(Duration::from_secs(20));
        assert_pattern_file(&out, TOTAL);
    });
}

/// The relays of one proactor grow pipes by at most half of
/// `pipe-user-pages-soft` in all, so the user's other pipes keep their
/// size: 40 relays would want 80 MiB with the kernel's default limits.
#[test]
fn relays_grow_pipes_within_half_the_users_soft_limit() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let limits = ringpipe::PipeLimits::read();
        if limits.user_pages_soft == 0 {
            return skip(
                "relays_grow_pipes_within_half_the_users_soft_limit",
                "fs.pipe-user-pages-soft is 0: no budget to check",
            );
        }
        let budget = limits.user_pages_soft * 4096 / 2;
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::builder().registered_files(256).build().unwrap();
        let mut ev = Events::default();
        let mut readers = Vec::new();
        for i in 0..40 {
            let a = dir.path().join(format!("a{i}"));
            let b = dir.path().join(format!("b{i}"));
            readers.push(relay_to_reader(&mut p, &a, &b).2);
        }
        p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
        let default = pipe_size(&pipe().0);
        // The destinations' pipes; the sources' grew too, within the same
        // budget, so these alone must stay below it.
        let grown: usize = readers.iter().map(|r| pipe_size(r) - default).sum();
        assert!(grown > 0, "no relay grew its pipes");
        assert!(grown <= budget, "grew {grown} bytes, budget {budget}");
    });
}
