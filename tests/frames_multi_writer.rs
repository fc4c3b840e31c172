//! Eight writer processes share one FIFO, each writing frames of at most
//! `PIPE_BUF` bytes (header included) with one plain `os.write` per frame. A
//! ringpipe receiver decodes the stream: every message must arrive whole,
//! exactly once, and in its writer's order.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use ringpipe::frame::{Codec, FrameDecoder, PIPE_BUF};
use ringpipe::{CloseReason, Event, Events, FifoOptions, Proactor};

const WRITERS: usize = 8;
const PER_WRITER: usize = 2_000;
/// The whole test fails, rather than hangs, after this (the watchdog).
const WATCHDOG: Duration = Duration::from_secs(60);
/// `w{writer:02} s{seq:06} n{len:04} `, then filler up to `len` bytes.
const HEAD_LEN: usize = 18;

/// A writer: opens the FIFO, says "ready", waits for "go", then writes its
/// messages, one whole frame per `os.write`. Payload sizes vary from the
/// header alone up to the largest that keeps the frame within `PIPE_BUF`.
const WRITER_PY: &str = r#"
import os, sys, signal
path, writer, count, codec, pipe_buf, timeout = sys.argv[1:7]
writer, count, pipe_buf, timeout = int(writer), int(count), int(pipe_buf), int(timeout)
signal.alarm(timeout)  # never outlive a stuck test
overhead = 4 if codec == 'lp' else 1
biggest = pipe_buf - overhead
alpha = b'abcdefghijklmnopqrstuvwxyz' * (pipe_buf // 26 + 2)
f = open(path, 'wb', buffering=0)
sys.stdout.write('ready\n'); sys.stdout.flush()
if sys.stdin.readline() != 'go\n':
    sys.exit(3)
state = writer * 7919 + 1
for seq in range(count):
    state = (state * 1103515245 + 12345) % 2**31
    n = [18, biggest, 18 + state % (biggest - 17)][0 if seq % 97 == 0 else 1 if seq % 50 == 0 else 2]
    off = (writer * 31 + seq * 17) % 26
    payload = b'w%02d s%06d n%04d ' % (writer, seq, n) + alpha[off:off + n - 18]
    if codec == 'lp':
        frame = len(payload).to_bytes(4, 'little') + payload
    else:
        frame = payload + b'\n'
    assert len(frame) <= pipe_buf
    written = os.write(f.fileno(), frame)
    assert written == len(frame), (written, len(frame))
f.close()
"#;

/// The writers, killed and reaped if the test ends before they do.
fn spawn_writers(path: &Path, codec: &str) -> Vec<ChildGuard> {
    let timeout = (WATCHDOG + Duration::from_secs(10)).as_secs().to_string();
    (0..WRITERS)
        .map(|w| {
            let (w, n, pipe_buf) = (w.to_string(), PER_WRITER.to_string(), PIPE_BUF.to_string());
            let args: [&dyn AsRef<std::ffi::OsStr>; 6] =
                [&path, &w, &n, &codec, &pipe_buf, &timeout];
            ChildGuard::spawn(
                python(WRITER_PY, &args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped()),
            )
        })
        .collect()
}

/// Waits until every writer has the FIFO open, then lets them all write.
/// With every write end open before the first byte, the receiver's EOF
/// means all writers are done.
fn start_together(writers: &mut [ChildGuard]) {
    for (w, writer) in writers.iter_mut().enumerate() {
        let stdout = writer.child().stdout.as_mut().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert_eq!(line, "ready\n", "writer {w} did not open the FIFO");
    }
    for writer in writers.iter_mut() {
        let stdin = writer.child().stdin.as_mut().expect("piped stdin");
        stdin.write_all(b"go\n").expect("write go");
        stdin.flush().expect("flush go");
    }
}

/// Checks one message and that it is the next one expected from its writer.
fn check_message(frame: &[u8], next: &mut [usize]) {
    let show = || String::from_utf8_lossy(&frame[..frame.len().min(40)]).into_owned();
    assert!(frame.len() >= HEAD_LEN, "short message: {:?}", show());
    let head = std::str::from_utf8(&frame[..HEAD_LEN]).expect("ASCII header");
    let field = |tag: char, range: std::ops::Range<usize>| -> usize {
        let text = &head[range];
        assert!(text.starts_with(tag), "bad header {head:?}");
        text[1..]
            .parse()
            .unwrap_or_else(|_| panic!("bad header {head:?}"))
    };
    let (writer, seq, len) = (field('w', 0..3), field('s', 4..11), field('n', 12..17));
    assert!(writer < WRITERS, "bad writer in {head:?}");
    assert_eq!(len, frame.len(), "message {head:?} is not whole");
    let off = (writer * 31 + seq * 17) % 26;
    for (i, &b) in frame[HEAD_LEN..].iter().enumerate() {
        let want = b'a' + ((off + i) % 26) as u8;
        assert_eq!(b, want, "message {head:?} corrupt at byte {}", HEAD_LEN + i);
    }
    assert_eq!(
        seq, next[writer],
        "writer {writer}: got message {seq}, expected {} (lost, duplicated or reordered)",
        next[writer]
    );
    next[writer] += 1;
}

/// Runs the writers with `codec` (`name` for the python side) against one
/// receiver, under the watchdog.
fn many_writers_one_fifo(codec: Codec, name: &'static str) {
    watchdog(WATCHDOG, move || receive_from_many_writers(codec, name));
}

fn receive_from_many_writers(codec: Codec, name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("frames.fifo");
    let mut proactor = Proactor::new().expect("proactor");
    let rx = proactor
        .open_receiver(&path, &FifoOptions::new().create(true))
        .expect("open receiver");

    let mut writers = spawn_writers(&path, name);
    start_together(&mut writers);

    let mut decoder = FrameDecoder::new(codec, PIPE_BUF - codec.overhead());
    let mut next = [0usize; WRITERS];
    let total = WRITERS * PER_WRITER;
    let mut received = 0;
    let mut eof = false;
    let mut events = Events::with_capacity(256);
    while !eof {
        proactor
            .poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        for event in &events {
            match event {
                Event::Data { from, data } if from == rx => {
                    decoder
                        .feed(data, |frame| {
                            check_message(frame, &mut next);
                            received += 1;
                        })
                        .expect("decode");
                }
                Event::PeerGone(t) if t == rx.token() => eof = true,
                Event::Error { token, error } => panic!("{token:?} failed: {error}"),
                // A one-shot receiver closes right after EOF.
                Event::Closed {
                    reason: CloseReason::Eof,
                    ..
                } => {}
                Event::Closed { token, reason, .. } => panic!("{token:?} closed: {reason:?}"),
                _ => {}
            }
        }
    }
    // Every writer opened before any wrote, so EOF means all of them closed.
    assert_eq!(
        received, total,
        "EOF with messages missing; next per writer {next:?}"
    );
    decoder.finish().expect("no partial frame at EOF");

    for (w, writer) in writers.into_iter().enumerate() {
        let status = writer.wait_output(Duration::from_secs(10)).status;
        assert!(status.success(), "writer {w} failed: {status}");
    }
}

#[test]
fn length_prefixed_messages_from_many_writers() {
    many_writers_one_fifo(Codec::LengthPrefixed, "lp");
}

#[test]
fn line_messages_from_many_writers() {
    many_writers_one_fifo(Codec::Lines, "lines");
}
