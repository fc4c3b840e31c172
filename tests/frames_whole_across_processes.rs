//! "Frames of at most `PIPE_BUF` stay whole", end to end: several
//! processes, each with its own proactor, write frames into one FIFO with
//! `send_frames` (one frame a call, and batches), in both codecs, many of exactly
//! `PIPE_BUF` bytes with their header. The FIFO's pipe is one page
//! (`F_SETPIPE_SZ` 4096), so a frame fits only into an empty pipe and the
//! writers wait on each other all the time. A framed receiver must get
//! every frame whole, exactly once, in each writer's order.
//!
//! The writers are this test binary again, running the ignored test
//! `writer_process` with its orders in an environment variable.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::Mode;
use ringpipe::frame::{Codec, PIPE_BUF};
use ringpipe::{Event, Events, FifoOptions, Proactor};

const WRITERS: usize = 4;
const PER_WRITER: usize = 300;
/// `path`, codec (`lines` or `lp`), writer number, frames.
const WRITER_ENV: &str = "RINGPIPE_TEST_FRAME_WRITER";
/// `w{writer:02} s{seq:06} n{len:04} `: the head of every payload.
const HEAD: usize = 18;

fn codec_of(name: &str) -> Codec {
    match name {
        "lp" => Codec::LengthPrefixed,
        _ => Codec::Lines,
    }
}

/// Payload `seq` of `writer`: its head, then letters up to a length that
/// depends on both; two frames in every five fill `PIPE_BUF` with their
/// header (one after the other), every seventh is the head alone.
fn payload(codec: Codec, writer: usize, seq: usize) -> Vec<u8> {
    let max = PIPE_BUF - codec.overhead();
    let len = match seq {
        s if s % 5 < 2 => max,
        s if s % 7 == 0 => HEAD,
        s => HEAD + (s * 7919 + writer * 104_729) % (max - HEAD),
    };
    let mut p = format!("w{writer:02} s{seq:06} n{len:04} ").into_bytes();
    assert_eq!(p.len(), HEAD);
    p.extend((HEAD..len).map(|i| b'a' + ((i + writer * 7 + seq) % 26) as u8));
    p
}

/// A writer process: opens the FIFO (its reader is there), queues its
/// frames (odd writers one `send_frames` batch at a time, even ones one
/// `send_frames` of one each), and exits once its reader has read them all.
#[test]
#[ignore = "a writer process of the tests below"]
fn writer_process() {
    let Ok(orders) = std::env::var(WRITER_ENV) else {
        // Run with --ignored but not by a parent: nothing to write.
        return;
    };
    let orders: Vec<&str> = orders.split(',').collect();
    let [path, codec, writer, count] = orders[..] else {
        panic!("orders: {orders:?}");
    };
    let (codec, writer, count) = (
        codec_of(codec),
        writer.parse::<usize>().unwrap(),
        count.parse::<usize>().unwrap(),
    );
    let mut p = Proactor::new().unwrap();
    // Every frame accepted at once: the backlog is the whole run.
    let opts = FifoOptions::new().watermarks(64 << 20, 32 << 20);
    let tx = p.open_sender(path, &opts).unwrap();
    // All writers start together, once all are open.
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    assert_eq!(go, "go\n");
    let mut seq = 0;
    while seq < count {
        if writer % 2 == 0 {
            p.send_frames(tx, codec, &[&payload(codec, writer, seq)])
                .unwrap();
            seq += 1;
        } else {
            let n = (1 + seq % 6).min(count - seq);
            let batch: Vec<Vec<u8>> = (seq..seq + n).map(|s| payload(codec, writer, s)).collect();
            p.send_frames(tx, codec, &batch).unwrap();
            seq += n;
        }
        // Writes start at the next poll: let them interleave with the
        // other processes' from the first frames on.
        if seq % 16 == 0 {
            p.poll(&mut Events::default(), Some(Duration::ZERO))
                .unwrap();
        }
    }
    close_flushed(&mut p, &mut Events::default(), tx, Duration::from_secs(100));
    println!("WROTE {count}");
}

fn frames_from_processes(codec_name: &'static str) {
    watchdog(Duration::from_secs(150), move || {
        let codec = codec_of(codec_name);
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let opts = FifoOptions::new()
            .create(true)
            .pipe_size(4096)
            .frames(codec, PIPE_BUF);
        let rx = p.open_receiver(&fifo, &opts).unwrap();
        // Holds the FIFO open between the writers' sessions: the receiver
        // sees no EOF until the test lets go.
        let idle_writer = open(
            &fifo,
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(
            fcntl(&idle_writer, FcntlArg::F_GETPIPE_SZ).unwrap(),
            4096,
            "the pipe is one page"
        );
        let exe = std::env::current_exe().unwrap();
        let mut writers: Vec<ChildGuard> = (0..WRITERS)
            .map(|w| {
                let orders = format!("{},{codec_name},{w},{PER_WRITER}", fifo.display());
                let mut cmd = test_case_command(&exe, "writer_process");
                cmd.env(WRITER_ENV, orders)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                ChildGuard::spawn(&mut cmd)
            })
            .collect();
        // Each says "ready" once open; then all go at once.
        let mut outs = Vec::new();
        for w in &mut writers {
            let mut out = BufReader::new(w.child().stdout.take().unwrap());
            let mut line = String::new();
            // After the harness's "test writer_process ... " on its line.
            while !line.ends_with("ready\n") {
                line.clear();
                assert!(
                    out.read_line(&mut line).unwrap() > 0,
                    "a writer ended early"
                );
            }
            outs.push(out);
        }
        for w in &mut writers {
            w.child()
                .stdin
                .as_mut()
                .unwrap()
                .write_all(b"go\n")
                .unwrap();
        }
        let mut next = [0usize; WRITERS];
        // Frames of one writer in a row before another's: fewer than all
        // of them shows the writers competed.
        let (mut last, mut switches) = (usize::MAX, 0);
        let mut ev = Events::with_capacity(256);
        poll_until(&mut p, &mut ev, Duration::from_secs(120), |e| {
            match e {
                Event::Frame { from, frame } => {
                    assert_eq!(*from, rx);
                    let head = std::str::from_utf8(&frame[..HEAD.min(frame.len())])
                        .unwrap_or_else(|_| panic!("not a frame's head: {frame:?}"));
                    let w: usize = head
                        .get(1..3)
                        .and_then(|w| w.parse().ok())
                        .unwrap_or_else(|| panic!("not a frame's head: {head:?}"));
                    assert!(w < WRITERS, "{head:?}");
                    let want = payload(codec, w, next[w]);
                    assert!(
                        *frame == &want[..],
                        "writer {w}, frame {}: got {} bytes {head:?}",
                        next[w],
                        frame.len()
                    );
                    next[w] += 1;
                    switches += usize::from(last != w);
                    last = w;
                }
                Event::Error { error, .. } => panic!("{error}"),
                Event::Closed { .. } => panic!("the receiver closed"),
                _ => {}
            }
            next.iter().all(|n| *n == PER_WRITER)
        });
        for (w, mut out) in writers.into_iter().zip(outs) {
            let mut rest = String::new();
            out.read_to_string(&mut rest).unwrap();
            w.wait_success(Duration::from_secs(60));
            assert!(rest.contains(&format!("WROTE {PER_WRITER}")), "{rest}");
        }
        println!(
            "{switches} changes of writer in {} frames",
            WRITERS * PER_WRITER
        );
        let s = p.stats(rx).unwrap();
        assert_eq!(s.frames_in, (WRITERS * PER_WRITER) as u64);
        drop(idle_writer);
    });
}

#[test]
fn line_frames_from_processes_stay_whole() {
    frames_from_processes("lines");
}

#[test]
fn length_prefixed_frames_from_processes_stay_whole() {
    frames_from_processes("lp");
}

/// The largest frame, header included, is exactly `PIPE_BUF`.
#[test]
fn the_largest_frames_fill_pipe_buf() {
    for codec in [Codec::Lines, Codec::LengthPrefixed] {
        let mut wire = Vec::new();
        codec.encode(&payload(codec, 0, 0), &mut wire).unwrap();
        assert_eq!(wire.len(), PIPE_BUF, "{codec:?}");
    }
}
