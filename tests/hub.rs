//! Hub: one publisher's frames to several subscribers, each with its own
//! bounded queue; slow, absent, leaving and late subscribers.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use ringpipe::frame::{Codec, FrameError};
use ringpipe::hub::{Full, Hub, HubEvent, HubOptions};
use ringpipe::{Event, Events, FifoOptions, Proactor, Sender, Token};

/// Payload bytes of every frame: an 8-byte index, then filler made of it.
const PAYLOAD: usize = 60;
/// Bytes of a frame on the wire (length-prefixed).
const FRAME: usize = PAYLOAD + 4;

/// Writes frames 0..count to the FIFO at argv[1], `batch` frames per
/// batch, sleeping `sleep_ms` between batches; with `piece` > 0, in
/// writes of at most `piece` bytes, which cut frames. Optional: the first
/// frame (argv[6]), and a frame left unfinished at the end, as
/// "PROMISED,SENT" (argv[7]): a header promising PROMISED bytes, then
/// SENT of them.
const PUBLISHER_PY: &str = r#"
import os, sys, signal, struct, time
signal.alarm(60)
path, count, batch, sleep_ms, piece = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
first = int(sys.argv[6]) if len(sys.argv) > 6 else 0
promised, sent = (int(x) for x in sys.argv[7].split(',')) if len(sys.argv) > 7 else (0, 0)
def frame(i):
    head = struct.pack('<Q', i)
    filler = bytes((i * 7 + k) & 0xff for k in range(52))
    return struct.pack('<I', 60) + head + filler
fd = os.open(path, os.O_WRONLY)
i = first
while i < count:
    data = b''.join(frame(j) for j in range(i, min(count, i + batch)))
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:piece] if piece else view)
        view = view[n:]
    i += batch
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
if promised:
    os.write(fd, struct.pack('<I', promised) + b'T' * sent)
os.close(fd)
"#;

/// Reads the FIFO at argv[1] until EOF and saves every byte to argv[2].
/// Reads at most `chunk` bytes at a time and sleeps `sleep_ms` after each
/// read. With `stall_after` > 0 it reads exactly that many frames, then
/// stops reading (the FIFO left open) until "go" comes on stdin. With
/// `leave_after` > 0 it reads exactly that many frames, closes the FIFO,
/// stays away `away_ms`, and opens it again for the rest. Neither asks
/// for a byte beyond the frame it stops at.
const SUBSCRIBER_PY: &str = r#"
import os, sys, signal, time
signal.alarm(60)
path, out = sys.argv[1], sys.argv[2]
chunk, sleep_ms, leave_after, away_ms = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
stall_after = int(sys.argv[7])
data = bytearray()
fd = os.open(path, os.O_RDONLY)
def read_up_to(frames):
    want = frames * 64
    while len(data) < want:
        b = os.read(fd, min(chunk, want - len(data)))
        if not b:
            break
        data.extend(b)
if stall_after:
    read_up_to(stall_after)
    if sys.stdin.readline() != 'go\n':
        sys.exit(3)
if leave_after:
    read_up_to(leave_after)
    os.close(fd)
    time.sleep(away_ms / 1000)
    fd = os.open(path, os.O_RDONLY)
while True:
    b = os.read(fd, chunk)
    if not b:
        break
    data += b
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
os.close(fd)
with open(out, 'wb') as f:
    f.write(data)
"#;

/// How a subscriber child reads.
#[derive(Clone, Copy)]
struct Reader {
    chunk: usize,
    sleep_ms: f64,
    leave_after: usize,
    away_ms: f64,
    /// Frames read before it stalls until [`go`]; 0: never stalls.
    stall_after: usize,
}

const FAST: Reader = Reader {
    chunk: 65536,
    sleep_ms: 0.0,
    leave_after: 0,
    away_ms: 0.0,
    stall_after: 0,
};
/// 4 KiB every 20 ms: about 200 KB/s.
const SLOW: Reader = Reader {
    chunk: 4096,
    sleep_ms: 20.0,
    leave_after: 0,
    away_ms: 0.0,
    stall_after: 0,
};
/// Reads one sender watermark's worth of frames (what the hub hands a
/// subscriber at once), then stalls until [`go`], then reads as [`SLOW`].
/// However the machine schedules the readers, it falls behind.
const STALLED: Reader = Reader {
    stall_after: 4096 / FRAME,
    ..SLOW
};

fn subscriber(path: &Path, out: &Path, r: Reader) -> ChildGuard {
    let mut cmd = python(
        SUBSCRIBER_PY,
        &[
            &path,
            &out,
            &r.chunk.to_string(),
            &r.sleep_ms.to_string(),
            &r.leave_after.to_string(),
            &r.away_ms.to_string(),
            &r.stall_after.to_string(),
        ],
    );
    if r.stall_after > 0 {
        cmd.stdin(Stdio::piped());
    }
    ChildGuard::spawn(&mut cmd)
}

/// Lets a stalled subscriber read on (again: nothing).
fn go(child: &mut ChildGuard) {
    if let Some(mut stdin) = child.child().stdin.take() {
        stdin.write_all(b"go\n").unwrap();
    }
}

fn publisher(path: &Path, count: usize, batch: usize, sleep_ms: f64, piece: usize) -> ChildGuard {
    ChildGuard::spawn(&mut python(
        PUBLISHER_PY,
        &[
            &path,
            &count.to_string(),
            &batch.to_string(),
            &sleep_ms.to_string(),
            &piece.to_string(),
        ],
    ))
}

/// Frames `first..end` in one batch, then (if `promised` > 0) a header
/// promising `promised` bytes and `sent` of them, and exits.
fn range_publisher(
    path: &Path,
    first: usize,
    end: usize,
    promised: u32,
    sent: usize,
) -> ChildGuard {
    let tail = format!("{promised},{sent}");
    ChildGuard::spawn(&mut python(
        PUBLISHER_PY,
        &[
            &path,
            &end.to_string(),
            &(end - first).to_string(),
            &"0",
            &"0",
            &first.to_string(),
            &tail,
        ],
    ))
}

/// Frame `i`'s payload, as the publisher child makes it.
fn payload(i: u64) -> [u8; PAYLOAD] {
    let mut p = [0; PAYLOAD];
    p[..8].copy_from_slice(&i.to_le_bytes());
    for (k, b) in p[8..].iter_mut().enumerate() {
        *b = ((i * 7 + k as u64) & 0xff) as u8;
    }
    p
}

/// The test as the publisher ([`Hub::publish`]), paced by one subscriber:
/// frames `0..count`, published only while that subscriber's queue holds
/// less than [`Paced::AHEAD`], so its reader is never more than that
/// behind however the machine schedules it; then the hub's end.
struct Paced {
    next: u64,
    count: u64,
    by: Sender,
}

impl Paced {
    const AHEAD: u64 = 16 << 10;

    fn new(count: usize, by: Sender) -> Paced {
        Paced {
            next: 0,
            count: count as u64,
            by,
        }
    }

    /// Call after every poll.
    fn publish(&mut self, p: &mut Proactor, hub: &mut Hub) {
        while self.next < self.count {
            let st = hub.stats(self.by).expect("the pacing subscriber left");
            if st.queued_bytes >= Self::AHEAD {
                return;
            }
            hub.publish(p, &payload(self.next)).unwrap();
            self.next += 1;
        }
        hub.end(p);
    }
}

/// The frame indices in a subscriber's output, each frame checked whole.
fn indices(out: &Path) -> Vec<u64> {
    indices_of(&std::fs::read(out).unwrap())
}

fn indices_of(bytes: &[u8]) -> Vec<u64> {
    assert_eq!(bytes.len() % FRAME, 0, "a partial frame");
    bytes
        .chunks(FRAME)
        .map(|f| {
            assert_eq!(f[..4], (PAYLOAD as u32).to_le_bytes(), "bad header");
            let i = u64::from_le_bytes(f[4..12].try_into().unwrap());
            for (k, b) in f[12..].iter().enumerate() {
                assert_eq!(*b, ((i * 7 + k as u64) & 0xff) as u8, "frame {i} corrupt");
            }
            i
        })
        .collect()
}

/// Strictly increasing: in order, no duplicates.
fn assert_in_order(got: &[u64]) {
    for w in got.windows(2) {
        assert!(
            w[0] < w[1],
            "out of order or duplicated: {} then {}",
            w[0],
            w[1]
        );
    }
}

struct Setup {
    dir: tempfile::TempDir,
    p: Proactor,
    events: Events,
    src: PathBuf,
    hub: Hub,
    /// Hand the hub runs of frames (`Events::runs`) instead of each event.
    by_runs: bool,
}

fn setup(opts: HubOptions) -> Setup {
    let rx_opts = FifoOptions::new()
        .create(true)
        .frames(Codec::LengthPrefixed, 4096);
    setup_with(opts, Some(&rx_opts))
}

/// A hub whose source is opened with `rx_opts`; without, a hub with no
/// source, the test publishing (see [`Paced`]).
fn setup_with(opts: HubOptions, rx_opts: Option<&FifoOptions>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut p = Proactor::new().unwrap();
    let hub = match rx_opts {
        Some(rx_opts) => Hub::new(p.open_receiver(&src, rx_opts).unwrap(), opts),
        None => Hub::without_source(opts),
    };
    Setup {
        dir,
        p,
        events: Events::with_capacity(256),
        src,
        hub,
        by_runs: false,
    }
}

impl Setup {
    /// A subscriber FIFO and its sender (not yet added to the hub). The
    /// pipe is one page, so the hub's queue, not the pipe, holds a slow
    /// subscriber's backlog.
    fn sender(&mut self, name: &str) -> (Sender, PathBuf, PathBuf) {
        let path = self.dir.path().join(name);
        let opts = FifoOptions::new().create(true).pipe_size(4096);
        let tx = self.p.open_sender(&path, &opts).unwrap();
        (tx, path, self.dir.path().join(format!("{name}.out")))
    }

    fn add(&mut self, name: &str) -> (Sender, PathBuf, PathBuf) {
        let s = self.sender(name);
        assert!(self.hub.add(&mut self.p, s.0).unwrap());
        s
    }

    /// Polls, feeding the hub, until every sender in `wait_for` has
    /// closed. `each` runs after every poll. Returns the hub's reports.
    fn run(
        &mut self,
        wait_for: &[Sender],
        mut each: impl FnMut(&mut Proactor, &mut Hub),
    ) -> Vec<HubEvent> {
        let mut reports = Vec::new();
        let mut closed: Vec<Token> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(50);
        while !wait_for.iter().all(|t| closed.contains(&t.token())) {
            assert!(
                std::time::Instant::now() < deadline,
                "hub run timed out: closed {closed:?}, subscribers {:?}, reports {reports:?}",
                self.hub.subscribers().collect::<Vec<_>>()
            );
            self.p
                .poll(&mut self.events, Some(Duration::from_millis(100)))
                .unwrap();
            if self.by_runs {
                for e in self.events.runs(Codec::LengthPrefixed) {
                    self.hub.handle(&mut self.p, e);
                }
                self.hub.flush(&mut self.p);
            } else {
                self.hub.handle_events(&mut self.p, &self.events);
            }
            for e in &self.events {
                match e {
                    Event::Closed { token, unsent, .. } => {
                        assert!(unsent.is_empty(), "{token:?}: unsent bytes");
                        closed.push(token);
                    }
                    Event::Error { token, error } => panic!("{token:?}: {error}"),
                    _ => {}
                }
            }
            reports.extend(self.hub.reports());
            each(&mut self.p, &mut self.hub);
        }
        reports
    }
}

/// Generous queues: a fast, a slow, an absent (opens after half the
/// frames are published) and a leaving (reads a quarter, leaves, comes
/// back) subscriber each get every frame once, in order.
#[test]
fn every_subscriber_gets_every_frame_in_order() {
    watchdog(Duration::from_secs(60), || {
        const N: usize = 20_000;
        let mut s = setup(HubOptions::new(Codec::LengthPrefixed).queue_bytes(64 << 20));
        let fast = s.add("fast");
        let slow = s.add("slow");
        let late = s.add("late");
        let leaver = s.add("leaver");
        let mut children = vec![
            subscriber(&fast.1, &fast.2, FAST),
            subscriber(&slow.1, &slow.2, SLOW),
            subscriber(
                &leaver.1,
                &leaver.2,
                Reader {
                    leave_after: N / 4,
                    away_ms: 200.0,
                    ..FAST
                },
            ),
        ];
        children.push(publisher(&s.src, N, 64, 0.0, 0));
        let mut late_child = None;
        let (late_path, late_out) = (late.1.clone(), late.2.clone());
        let reports = s.run(&[fast.0, slow.0, late.0, leaver.0], |_, hub| {
            if late_child.is_none() && hub.published_frames() >= (N / 2) as u64 {
                late_child = Some(subscriber(&late_path, &late_out, FAST));
            }
        });
        children.extend(late_child);
        wait_all(children, Duration::from_secs(30));
        assert!(
            reports.iter().any(|r| matches!(r, HubEvent::SourceEnded)),
            "{reports:?}"
        );
        let all: Vec<u64> = (0..N as u64).collect();
        for (name, out) in [("fast", &fast.2), ("slow", &slow.2), ("late", &late.2)] {
            assert_eq!(indices(out), all, "{name}");
        }
        assert_eq!(indices(&leaver.2), all, "leaver");
    });
}

/// A small queue under `DropOldest`: the slow subscriber misses frames,
/// and what it got plus what was dropped is every frame, in order; the
/// fast one gets everything. The test publishes, paced by the fast
/// reader; the slow one stalls until the hub has dropped some of its
/// frames, then reads on slowly while the rest are published.
#[test]
fn drop_oldest_counts_what_the_slow_one_missed() {
    watchdog(Duration::from_secs(60), || {
        // 4 MiB published, queues of 1 MiB.
        const N: usize = 65_536;
        let mut s = setup_with(
            HubOptions::new(Codec::LengthPrefixed)
                .queue_bytes(1 << 20)
                .full(Full::DropOldest)
                .sender_watermarks(4096, 1024),
            None,
        );
        let fast = s.add("fast");
        let slow = s.add("slow");
        let mut slow_child = subscriber(&slow.1, &slow.2, STALLED);
        let fast_child = subscriber(&fast.1, &fast.2, FAST);
        let mut publisher = Paced::new(N, fast.0);
        let stx = slow.0;
        let reports = s.run(&[fast.0, slow.0], |p, hub| {
            publisher.publish(p, hub);
            // Or once all is published: a hub that never drops fails the
            // asserts below instead of the run.
            let dropped = hub.stats(stx).is_some_and(|st| st.dropped_frames > 0);
            if dropped || hub.published_frames() == N as u64 {
                go(&mut slow_child);
            }
        });
        wait_all(vec![fast_child, slow_child], Duration::from_secs(30));
        // A sender that closes leaves the hub, with its final counters.
        let stats = |tx: Sender| {
            reports
                .iter()
                .find_map(|r| match r {
                    HubEvent::Gone { to, stats, .. } if *to == tx => Some(*stats),
                    _ => None,
                })
                .unwrap()
        };
        let all: Vec<u64> = (0..N as u64).collect();
        assert_eq!(indices(&fast.2), all, "fast");
        assert_eq!(stats(fast.0).dropped_frames, 0);
        let got = indices(&slow.2);
        let st = stats(slow.0);
        assert_in_order(&got);
        assert!(st.dropped_frames > 0, "the slow reader kept up: {st:?}");
        assert_eq!(got.len() as u64 + st.dropped_frames, N as u64, "{st:?}");
        assert_eq!(st.dropped_bytes, st.dropped_frames * FRAME as u64);
        assert_eq!(got.len() as u64, st.handed_frames);
    });
}

/// `PauseSource`: nothing is dropped, the publisher is held back while
/// the slow subscriber's queue is over the limit (it stalls until the
/// source is paused, then reads on slowly).
#[test]
fn pause_source_slows_the_publisher_and_loses_nothing() {
    watchdog(Duration::from_secs(60), || {
        const N: usize = 16_384; // 1 MiB
        let mut s = setup(
            HubOptions::new(Codec::LengthPrefixed)
                .queue_bytes(64 << 10)
                .full(Full::PauseSource)
                .sender_watermarks(4096, 1024),
        );
        let fast = s.add("fast");
        let slow = s.add("slow");
        let leaver = s.add("leaver");
        let mut slow_child = subscriber(
            &slow.1,
            &slow.2,
            Reader {
                chunk: 16384,
                ..STALLED
            },
        );
        let mut children = vec![
            subscriber(&fast.1, &fast.2, FAST),
            subscriber(
                &leaver.1,
                &leaver.2,
                Reader {
                    leave_after: N / 4,
                    away_ms: 200.0,
                    ..FAST
                },
            ),
            publisher(&s.src, N, 64, 0.0, 0),
        ];
        let mut max_queued = 0;
        let (ftx, stx, ltx) = (fast.0, slow.0, leaver.0);
        let reports = s.run(&[fast.0, slow.0, leaver.0], |_, hub| {
            for tx in [ftx, stx, ltx] {
                if let Some(st) = hub.stats(tx) {
                    max_queued = max_queued.max(st.queued_bytes);
                }
            }
            // Or once all is published: a hub that never pauses fails the
            // asserts below instead of the run.
            if hub.is_paused() || hub.published_frames() == N as u64 {
                go(&mut slow_child);
            }
        });
        children.push(slow_child);
        wait_all(children, Duration::from_secs(30));
        let paused = reports
            .iter()
            .filter(|r| matches!(r, HubEvent::Paused))
            .count();
        assert!(paused > 0, "never paused: {reports:?}");
        let all: Vec<u64> = (0..N as u64).collect();
        for (name, out) in [("fast", &fast.2), ("slow", &slow.2), ("leaver", &leaver.2)] {
            assert_eq!(indices(out), all, "{name}");
        }
        // Over the limit by at most what one read delivers after the pause.
        assert!(max_queued <= (64 << 10) + (1 << 20), "{max_queued}");
    });
}

/// `Evict`: the slow subscriber is evicted and reported, keeps exactly
/// the frames it was handed (a prefix), and the fast one completes. The
/// test publishes, paced by the fast reader, so the fast one can never
/// pass the queue limit; the slow one stalls until it is evicted.
#[test]
fn evict_lets_the_slow_one_go() {
    watchdog(Duration::from_secs(60), || {
        const N: usize = 65_536;
        let mut s = setup_with(
            HubOptions::new(Codec::LengthPrefixed)
                .queue_bytes(256 << 10)
                .full(Full::Evict)
                .sender_watermarks(4096, 1024),
            None,
        );
        let fast = s.add("fast");
        let slow = s.add("slow");
        let mut slow_child = subscriber(&slow.1, &slow.2, STALLED);
        let fast_child = subscriber(&fast.1, &fast.2, FAST);
        let mut publisher = Paced::new(N, fast.0);
        let (stx, mut closing) = (slow.0, false);
        let reports = s.run(&[fast.0, slow.0], |p, hub| {
            publisher.publish(p, hub);
            if !closing && hub.stats(stx).is_none() {
                // Evicted leaves the sender open; closed, it was let go.
                p.close_after_flush(stx)
                    .expect("the slow one left without being evicted");
                closing = true;
            }
            // Or once all is published: a hub that never evicts fails
            // the asserts below instead of the run.
            if closing || hub.published_frames() == N as u64 {
                go(&mut slow_child);
            }
        });
        wait_all(vec![fast_child, slow_child], Duration::from_secs(30));
        let evicted: Vec<_> = reports
            .iter()
            .filter_map(|r| match r {
                HubEvent::Evicted { to, stats } => Some((*to, *stats)),
                _ => None,
            })
            .collect();
        assert_eq!(evicted.len(), 1, "{reports:?}");
        assert_eq!(evicted[0].0, slow.0);
        let got = indices(&slow.2);
        assert!(got.len() < N, "the slow one got everything");
        assert_eq!(got, (0..evicted[0].1.handed_frames).collect::<Vec<_>>());
        assert_eq!(indices(&fast.2), (0..N as u64).collect::<Vec<_>>());
    });
}

/// A subscriber added mid-stream gets the frames from then on, in order;
/// one removed mid-stream keeps exactly what it was handed.
#[test]
fn add_and_remove_while_running() {
    watchdog(Duration::from_secs(60), || {
        const N: usize = 20_000;
        let mut s = setup(HubOptions::new(Codec::LengthPrefixed).queue_bytes(64 << 20));
        let steady = s.add("steady");
        let leaving = s.add("leaving");
        let joining = s.sender("joining");
        let children = vec![
            subscriber(&steady.1, &steady.2, FAST),
            subscriber(&leaving.1, &leaving.2, FAST),
            subscriber(&joining.1, &joining.2, FAST),
            // 64 frames a millisecond: the run lasts long enough to act in.
            publisher(&s.src, N, 64, 1.0, 0),
        ];
        let (mut joined_at, mut removed) = (None, None);
        let (jtx, ltx) = (joining.0, leaving.0);
        s.run(&[steady.0, leaving.0, joining.0], |p, hub| {
            if joined_at.is_none() && hub.published_frames() >= (N / 3) as u64 {
                joined_at = Some(hub.published_frames());
                assert!(hub.add(p, jtx).unwrap());
                assert!(!hub.add(p, jtx).unwrap(), "added twice");
            }
            if removed.is_none() && hub.published_frames() >= (N / 2) as u64 {
                let st = hub.remove(p, ltx).unwrap();
                assert!(hub.remove(p, ltx).is_none());
                p.close_after_flush(ltx).unwrap();
                removed = Some(st);
            }
        });
        wait_all(children, Duration::from_secs(30));
        let all: Vec<u64> = (0..N as u64).collect();
        assert_eq!(indices(&steady.2), all, "steady");
        let from = joined_at.unwrap();
        assert!(from < N as u64, "joined after the end");
        assert_eq!(indices(&joining.2), (from..N as u64).collect::<Vec<_>>());
        let st = removed.unwrap();
        assert!(st.handed_frames < N as u64);
        assert_eq!(
            indices(&leaving.2),
            (0..st.handed_frames).collect::<Vec<_>>()
        );
    });
}

/// A raw source (plain `Data`) is decoded by the hub: frames cut across
/// reads arrive whole.
#[test]
fn raw_source_is_decoded_into_whole_frames() {
    watchdog(Duration::from_secs(60), || {
        const N: usize = 5_000;
        let mut s = setup_with(
            HubOptions::new(Codec::LengthPrefixed),
            Some(&FifoOptions::new().create(true)),
        );
        let a = s.add("a");
        // Writes of 1000 bytes: frames cut across writes, hence reads.
        let children = vec![
            subscriber(&a.1, &a.2, FAST),
            publisher(&s.src, N, 100, 0.0, 1000),
        ];
        s.run(&[a.0], |_, _| {});
        wait_all(children, Duration::from_secs(30));
        assert_eq!(indices(&a.2), (0..N as u64).collect::<Vec<_>>());
    });
}

/// A sender that already holds more than the hub's watermark when it is
/// added is still fed: the hub's first send is refused, which promises
/// `Writable`, instead of waiting for a `Writable` nobody promised.
#[test]
fn a_sender_over_the_watermark_is_fed() {
    watchdog(Duration::from_secs(60), || {
        const N: usize = 2_000;
        const BEFORE: usize = 60_000;
        let mut s = setup(HubOptions::new(Codec::LengthPrefixed).sender_watermarks(4096, 1024));
        let a = s.sender("a");
        // Below the default high watermark (64 KiB): accepted, no promise.
        s.p.send(a.0, &[b'x'; BEFORE]).unwrap();
        assert!(s.hub.add(&mut s.p, a.0).unwrap());
        // Nothing reads until the publisher is done: the hub queues it all.
        let publisher = publisher(&s.src, N, 64, 0.0, 0);
        let mut reader = None;
        let (path, out) = (a.1.clone(), a.2.clone());
        s.run(&[a.0], |_, hub| {
            if reader.is_none() && hub.published_frames() == N as u64 {
                reader = Some(subscriber(&path, &out, FAST));
            }
        });
        wait_all(vec![publisher], Duration::from_secs(30));
        wait_all(reader.into_iter().collect(), Duration::from_secs(30));
        let bytes = std::fs::read(&a.2).unwrap();
        assert!(bytes[..BEFORE].iter().all(|b| *b == b'x'));
        assert_eq!(
            indices_of(&bytes[BEFORE..]),
            (0..N as u64).collect::<Vec<_>>()
        );
    });
}

/// Runs of frames (`Events::runs`) are forwarded as they are: a fast and
/// a slow subscriber get every frame once, in order.
#[test]
fn runs_of_frames_are_forwarded() {
    watchdog(Duration::from_secs(60), || {
        const N: usize = 20_000;
        let mut s = setup(HubOptions::new(Codec::LengthPrefixed).queue_bytes(64 << 20));
        s.by_runs = true;
        let fast = s.add("fast");
        let slow = s.add("slow");
        let children = vec![
            subscriber(&fast.1, &fast.2, FAST),
            subscriber(&slow.1, &slow.2, SLOW),
            publisher(&s.src, N, 64, 0.0, 0),
        ];
        s.run(&[fast.0, slow.0], |_, _| {});
        wait_all(children, Duration::from_secs(30));
        let all: Vec<u64> = (0..N as u64).collect();
        assert_eq!(indices(&fast.2), all, "fast");
        assert_eq!(indices(&slow.2), all, "slow");
    });
}

/// A `Lines` hub over a length-prefixed source: frame 100 of 0..199 (one
/// write) carries a newline, which no line can. That frame alone is lost,
/// counted and reported; the frames after it in the same poll, and
/// 200..299 after, all reach every subscriber, which closes at the end.
#[test]
fn a_frame_the_codec_cannot_carry_loses_only_itself() {
    const PY: &str = r#"
import os, sys, signal, struct
signal.alarm(60)
def frame(i):
    p = (b'frame\n%05d' if i == 100 else b'frame %05d') % i
    return struct.pack('<I', len(p)) + p
fd = os.open(sys.argv[1], os.O_WRONLY)
for lo, hi in ((0, 200), (200, 300)):
    data = b''.join(frame(i) for i in range(lo, hi))
    assert os.write(fd, data) == len(data)
os.close(fd)
"#;
    watchdog(Duration::from_secs(60), || {
        let mut s = setup(HubOptions::new(Codec::Lines));
        let a = s.add("a");
        let b = s.add("b");
        let children = vec![
            subscriber(&a.1, &a.2, FAST),
            subscriber(&b.1, &b.2, FAST),
            ChildGuard::spawn(&mut python(PY, &[&s.src])),
        ];
        let reports = s.run(&[a.0, b.0], |_, _| {});
        wait_all(children, Duration::from_secs(30));
        let expected: String = (0..300)
            .filter(|i| *i != 100)
            .map(|i| format!("frame {i:05}\n"))
            .collect();
        for out in [&a.2, &b.2] {
            assert_eq!(std::fs::read_to_string(out).unwrap(), expected);
        }
        assert_eq!(s.hub.published_frames(), 299);
        assert_eq!(s.hub.rejected_frames(), 1);
        assert_eq!(s.hub.truncated_frames(), 0);
        let rejected: Vec<_> = reports
            .iter()
            .filter_map(|r| match r {
                HubEvent::Rejected { frames, error } => Some((*frames, error.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(rejected, [(1, FrameError::NewlineInPayload { at: 5 })]);
    });
}

/// A raw persistent source: publisher 1 writes frames 0..99, then a
/// header promising 1,000 bytes and 300 of them, and exits; publisher 2
/// (after the hub saw every writer leave) writes 100..199. The torn frame
/// is counted truncated and never joined to publisher 2's bytes: every
/// subscriber gets exactly 0..199.
#[test]
fn a_writer_leaving_inside_a_frame_cuts_only_that_frame() {
    watchdog(Duration::from_secs(60), || {
        let mut s = setup_with(
            HubOptions::new(Codec::LengthPrefixed),
            Some(&FifoOptions::new().create(true).persistent(true)),
        );
        let source = s.hub.source().unwrap();
        let a = s.add("a");
        let b = s.add("b");
        let mut children = vec![
            subscriber(&a.1, &a.2, FAST),
            subscriber(&b.1, &b.2, FAST),
            range_publisher(&s.src, 0, 100, 1000, 300),
        ];
        let total = (200 * FRAME + 4 + 300) as u64;
        let mut second = None;
        let src = s.src.clone();
        let reports = s.run(&[a.0, b.0], |p, hub| {
            // The first writer's session is over: the next one starts.
            if second.is_none() && hub.truncated_frames() > 0 {
                second = Some(range_publisher(&src, 100, 200, 0, 0));
            }
            // Every byte read and handled: no frame comes any more.
            if second.is_some() && p.stats(source).unwrap().bytes_read == total {
                hub.end(p);
            }
        });
        children.extend(second);
        wait_all(children, Duration::from_secs(30));
        let all: Vec<u64> = (0..200).collect();
        assert_eq!(indices(&a.2), all, "a");
        assert_eq!(indices(&b.2), all, "b");
        assert_eq!(s.hub.published_frames(), 200);
        assert_eq!(s.hub.truncated_frames(), 1);
        assert_eq!(s.hub.rejected_frames(), 0);
        let truncated: Vec<usize> = reports
            .iter()
            .filter_map(|r| match r {
                HubEvent::Truncated { buffered } => Some(*buffered),
                _ => None,
            })
            .collect();
        assert_eq!(truncated, [4 + 300]);
    });
}
