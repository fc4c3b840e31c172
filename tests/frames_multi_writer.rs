//! Eight writer processes share one FIFO, each writing frames of at most
//! `PIPE_BUF` bytes (header included) with one plain `os.write` per frame. A
//! ringpipe receiver decodes the stream: every message must arrive whole,
//! exactly once, and in its writer's order.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ringpipe::frame::{Codec, FrameDecoder, PIPE_BUF};
use ringpipe::{CloseReason, Event, Events, FifoOptions, Proactor};

const WRITERS: usize = 8;
const PER_WRITER: usize = 2_000;
/// The whole test fails, rather than hangs, after this.
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

/// Kills and reaps writers still running when the test ends, pass or fail.
struct Writers(Vec<Child>);

impl Drop for Writers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn spawn_writers(path: &Path, codec: &str) -> Writers {
    let timeout = (WATCHDOG + Duration::from_secs(10)).as_secs().to_string();
    let mut writers = Writers(Vec::new());
    for w in 0..WRITERS {
        let child = Command::new("python3")
            .arg("-c")
            .arg(WRITER_PY)
            .arg(path)
            .args([
                &w.to_string(),
                &PER_WRITER.to_string(),
                codec,
                &PIPE_BUF.to_string(),
                &timeout,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        writers.0.push(child);
    }
    writers
}

/// Waits until every writer has the FIFO open, then lets them all write.
/// With every write end open before the first byte, the receiver's EOF
/// means all writers are done.
fn start_together(writers: &mut Writers) {
    for (w, child) in writers.0.iter_mut().enumerate() {
        let stdout: &mut ChildStdout = child.stdout.as_mut().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert_eq!(line, "ready\n", "writer {w} did not open the FIFO");
    }
    for child in &mut writers.0 {
        let stdin = child.stdin.as_mut().expect("piped stdin");
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

fn many_writers_one_fifo(codec: Codec, name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("frames.fifo");
    let mut proactor = Proactor::new().expect("proactor");
    let rx = proactor
        .open_receiver(&path, &FifoOptions::new().create(true))
        .expect("open receiver");

    let mut writers = spawn_writers(&path, name);
    start_together(&mut writers);

    let deadline = Instant::now() + WATCHDOG;
    let mut decoder = FrameDecoder::new(codec, PIPE_BUF - codec.overhead());
    let mut next = [0usize; WRITERS];
    let total = WRITERS * PER_WRITER;
    let mut received = 0;
    let mut eof = false;
    let mut events = Events::with_capacity(256);
    while !eof {
        assert!(
            Instant::now() < deadline,
            "watchdog: no EOF after {WATCHDOG:?}; {received} of {total} messages, \
             next per writer {next:?}, {} bytes of a partial frame",
            decoder.buffered()
        );
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

    for (w, child) in writers.0.iter_mut().enumerate() {
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "watchdog: writer {w} did not exit"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
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
