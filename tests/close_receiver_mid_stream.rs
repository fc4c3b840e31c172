//! "Closing a receiver delivers every byte the kernel has already read",
//! end to end: a writer process streams writes larger than `PIPE_BUF`
//! into a FIFO; the receiver is closed in the middle of the stream; what
//! arrived before `Closed` (with the bytes of a frame cut short, reported
//! as truncated), then what `cat` reads from the FIFO afterwards, is the
//! stream, exactly; nothing arrives after `Closed`. In every read mode.
//!
//! A reader fd the test holds and never reads keeps the FIFO readable in
//! between, so the writer waits instead of meeting `EPIPE`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::frame::{Codec, FrameError};
use ringpipe::{Builder, CloseReason, Event, Events, FifoOptions, Proactor, ReadMode};

/// Lines of nine digits and a newline, numbered from 0.
const LINE: usize = 10;
const LINES: usize = 200_000;
/// Bytes per write: above `PIPE_BUF`, and not a whole number of lines.
const WRITE: usize = 10_007;
/// The receiver is closed once it has had this much.
const CLOSE_AFTER: usize = 300_000;

/// The writer: `LINES` lines into `argv[1]` in writes of `argv[2]` bytes,
/// then it closes the FIFO. It kills itself after 60 s.
const WRITER_PY: &str = r#"
import os, signal, sys
signal.alarm(60)
data = b''.join(b'%09d\n' % i for i in range(int(sys.argv[3])))
size = int(sys.argv[2])
fd = os.open(sys.argv[1], os.O_WRONLY)
view = memoryview(data)
while view:
    n = os.write(fd, view[:size])
    view = view[n:]
os.close(fd)
"#;

fn stream() -> Vec<u8> {
    (0..LINES)
        .flat_map(|i| format!("{i:09}\n").into_bytes())
        .collect()
}

/// `cat fifo > out`, the next reader.
fn cat(fifo: &Path, out: &Path) -> ChildGuard {
    let file = std::fs::File::create(out).unwrap();
    ChildGuard::spawn(Command::new("cat").arg(fifo).stdout(Stdio::from(file)))
}

fn close_mid_stream(builder: Builder, opts: FifoOptions, framed: bool) {
    watchdog(Duration::from_secs(120), move || {
        let opts = opts.create(true);
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let out = dir.path().join("out");
        let mut p = builder.build().unwrap();
        let rx = p.open_receiver(&fifo, &opts).unwrap();
        let _idle_reader = nonblocking_reader(&fifo);
        let args: [&dyn AsRef<std::ffi::OsStr>; 3] =
            [&fifo, &WRITE.to_string(), &LINES.to_string()];
        let writer = ChildGuard::spawn(&mut python(WRITER_PY, &args));
        let mut ev = Events::with_capacity(256);
        let mut got = Vec::new();
        let mut truncated = 0;
        let mut closing = false;
        let mut closed = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !closed {
            assert!(std::time::Instant::now() < deadline, "no Closed");
            p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
            for e in &ev {
                assert!(!closed, "after Closed: {e:?}");
                match e {
                    Event::Data { from, data } if from == rx => got.extend_from_slice(data),
                    Event::Frame { from, frame } if from == rx => {
                        got.extend_from_slice(frame);
                        got.push(b'\n');
                    }
                    Event::Error {
                        error:
                            ringpipe::Error::Frame {
                                source: FrameError::Truncated { buffered },
                                ..
                            },
                        ..
                    } => truncated += buffered,
                    Event::Closed { token, reason, .. } => {
                        assert_eq!((token, reason), (rx.token(), CloseReason::Requested));
                        closed = true;
                    }
                    other => panic!("{other:?}"),
                }
            }
            if !closing && got.len() >= CLOSE_AFTER {
                p.close(rx).unwrap();
                closing = true;
            }
        }
        // The next reader takes the rest, to the writer's EOF; the closed
        // receiver reports nothing meanwhile.
        let mut next = cat(&fifo, &out);
        while next.child().try_wait().unwrap().is_none() {
            p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
            assert!(ev.is_empty(), "after Closed: {:?}", ev.iter().next());
        }
        next.wait_success(Duration::from_secs(30));
        writer.wait_success(Duration::from_secs(30));
        let rest = std::fs::read(&out).unwrap();
        let data = stream();
        let (g, t) = (got.len(), truncated);
        assert!(g + t < data.len(), "closed after the end of the stream");
        assert_eq!(
            g + t + rest.len(),
            data.len(),
            "{g} delivered, {t} truncated, {} read by cat",
            rest.len()
        );
        assert!(got == data[..g], "delivered bytes differ");
        assert!(rest == data[g + t..], "cat's bytes differ");
        if framed {
            assert_eq!(g % LINE, 0, "whole frames only");
            assert!(t < LINE, "{t} bytes of one frame");
        } else {
            assert_eq!(t, 0);
        }
    });
}

fn frames(opts: FifoOptions) -> FifoOptions {
    opts.frames(Codec::Lines, 64)
}

#[test]
fn fixed_reads() {
    close_mid_stream(
        Proactor::builder(),
        FifoOptions::new().read_mode(ReadMode::Fixed),
        false,
    );
}

#[test]
fn multishot_reads() {
    close_mid_stream(
        Proactor::builder(),
        FifoOptions::new().read_mode(ReadMode::Multishot),
        false,
    );
}

#[test]
fn framed_fixed_reads() {
    close_mid_stream(
        Proactor::builder(),
        frames(FifoOptions::new().read_mode(ReadMode::Fixed)),
        true,
    );
}

#[test]
fn framed_multishot_reads() {
    close_mid_stream(
        Proactor::builder(),
        frames(FifoOptions::new().read_mode(ReadMode::Multishot)),
        true,
    );
}

/// No registered buffer: a poll, then a read into a heap buffer.
#[test]
fn heap_buffer_reads() {
    close_mid_stream(
        Proactor::builder().buffers(0, 64 * 1024),
        FifoOptions::new().read_mode(ReadMode::Fixed),
        false,
    );
}
