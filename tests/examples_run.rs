//! The examples that were only compiled, run end to end with real FIFOs
//! and processes, each one's output checked: `pubsub` in its three queue
//! policies (every line to every subscriber, or dropped and counted, or up
//! to the eviction and counted), `fanout_frames` in its four modes,
//! `throughput` and `handoff`.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{ChildGuard, build_example, mkfifo, nonblocking_reader, on_epoll, watchdog};

/// Lines the publisher writes: far more than a subscriber's queue, its
/// sender and its pipe hold, so a subscriber that does not read makes the
/// hub act.
const LINES: u64 = 50_000;
/// Each subscriber's hub queue, in bytes.
const QUEUE: &str = "4096";

fn line(i: u64) -> String {
    format!("line {i:08}\n")
}

/// The line numbers in `bytes`, which must be whole lines of [`line`].
fn numbers(bytes: &[u8]) -> Vec<u64> {
    let text = std::str::from_utf8(bytes).expect("utf-8 lines");
    assert!(text.is_empty() || text.ends_with('\n'), "a cut line");
    text.lines()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a line of the test: {l:?}"))
        })
        .collect()
}

/// `field: N` in a line of `SubscriberStats` debug output.
fn stat(line: &str, field: &str) -> u64 {
    let at = line
        .find(&format!("{field}: "))
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    line[at + field.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad {field} in {line}"))
}

fn set_blocking(fd: &OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL).unwrap());
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).unwrap();
}

/// Reads `fd` to EOF, waiting for data first (a FIFO whose writer has not
/// opened yet would read EOF at once).
fn read_to_end(fd: OwnedFd) -> Vec<u8> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::NONE).unwrap();
    set_blocking(&fd);
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out).unwrap();
    out
}

/// What a `pubsub` run gave: each subscriber's line numbers, and the
/// example's stderr lines.
struct PubSub {
    got: Vec<Vec<u64>>,
    reports: Vec<String>,
}

/// Runs `pubsub POLICY` with three subscribers: two read as the lines
/// come; the third, when `slow_until` says so (after the publisher has
/// written everything, or once the hub paused it).
fn pubsub(policy: &'static str, wait_for_pause: bool) -> PubSub {
    let bin = build_example("pubsub");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let outs: Vec<_> = (0..3).map(|i| dir.path().join(format!("out{i}"))).collect();
    mkfifo(&input);
    for o in &outs {
        mkfifo(o);
    }
    // Every subscriber's reader is there before the example starts: the
    // third opens now and reads later.
    let readers: Vec<OwnedFd> = outs.iter().map(|o| nonblocking_reader(o)).collect();
    let mut cmd = Command::new(&bin);
    cmd.arg(policy)
        .arg(QUEUE)
        .arg(&input)
        .args(&outs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut example = ChildGuard::spawn(&mut cmd);
    let stderr = example.child().stderr.take().unwrap();
    let (report_tx, report_rx) = mpsc::channel::<String>();
    let stderr_lines = std::thread::spawn(move || {
        let mut all = Vec::new();
        for l in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let l = l.unwrap();
            let _ = report_tx.send(l.clone());
            all.push(l);
        }
        all
    });
    let mut readers = readers.into_iter();
    let fast: Vec<_> = readers
        .by_ref()
        .take(2)
        .map(|fd| std::thread::spawn(move || read_to_end(fd)))
        .collect();
    let slow_fd = readers.next().unwrap();
    let (written_tx, written_rx) = mpsc::channel::<()>();
    let slow = std::thread::spawn(move || {
        // Reads once the publisher is done, or (pause) once the hub
        // paused it: it cannot be done before.
        loop {
            if written_rx.try_recv().is_ok() {
                break;
            }
            if wait_for_pause && report_rx.try_iter().any(|l| l.contains("Paused")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        read_to_end(slow_fd)
    });
    // The publisher: whole lines, at most PIPE_BUF bytes a write.
    let mut publisher = std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap();
    let mut block = String::new();
    for i in 0..LINES {
        block.push_str(&line(i));
        if block.len() > 4000 || i + 1 == LINES {
            publisher.write_all(block.as_bytes()).unwrap();
            block.clear();
        }
    }
    drop(publisher);
    let _ = written_tx.send(());
    let mut got: Vec<Vec<u64>> = fast
        .into_iter()
        .map(|t| numbers(&t.join().unwrap()))
        .collect();
    got.push(numbers(&slow.join().unwrap()));
    let out = example.wait_output(Duration::from_secs(60));
    assert!(out.status.success(), "pubsub {policy}: {}", out.status);
    let reports = stderr_lines.join().unwrap();
    PubSub { got, reports }
}

fn all_lines() -> Vec<u64> {
    (0..LINES).collect()
}

/// `pause`: nothing is dropped; the slow subscriber holds the publisher
/// back instead.
#[test]
fn pubsub_pause_delivers_every_line_to_every_subscriber() {
    watchdog(Duration::from_secs(180), || {
        let run = pubsub("pause", true);
        for got in &run.got {
            assert!(*got == all_lines(), "{} of {LINES} lines", got.len());
        }
        assert!(
            run.reports.iter().any(|l| l.contains("Paused")),
            "{:?}",
            run.reports
        );
        let done = run.reports.iter().filter(|l| l.contains(" done, ")).count();
        assert_eq!(done, 3, "{:?}", run.reports);
        for l in &run.reports {
            if l.contains(" done, ") {
                assert_eq!(stat(l, "dropped_frames"), 0, "{l}");
                assert_eq!(stat(l, "handed_frames"), LINES, "{l}");
            }
        }
    });
}

/// `drop`: a subscriber gets its lines in order, missing only those the
/// hub dropped and counted; the one that did not read dropped some.
#[test]
fn pubsub_drop_counts_every_line_it_drops() {
    watchdog(Duration::from_secs(180), || {
        let run = pubsub("drop", false);
        let done: Vec<&String> = run
            .reports
            .iter()
            .filter(|l| l.contains(" done, "))
            .collect();
        assert_eq!(done.len(), 3, "{:?}", run.reports);
        let dropped: u64 = done.iter().map(|l| stat(l, "dropped_frames")).sum();
        let received: u64 = run.got.iter().map(|g| g.len() as u64).sum();
        assert_eq!(received + dropped, 3 * LINES, "{:?}", run.reports);
        for got in &run.got {
            assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
            // The oldest queued are dropped, never the newest.
            assert_eq!(got.last(), Some(&(LINES - 1)));
        }
        assert!(
            run.got[2].len() < LINES as usize,
            "the slow one dropped none"
        );
    });
}

/// `evict`: a subscriber whose queue overflows is let go with what it
/// was handed, every line of it, then EOF; the others get every line.
#[test]
fn pubsub_evict_hands_over_a_whole_prefix() {
    watchdog(Duration::from_secs(180), || {
        let run = pubsub("evict", false);
        let mut handed: Vec<u64> = run
            .reports
            .iter()
            .filter(|l| l.contains(" evicted, "))
            .map(|l| stat(l, "handed_frames"))
            .collect();
        assert!(!handed.is_empty(), "none evicted: {:?}", run.reports);
        let mut prefixes = Vec::new();
        for got in &run.got {
            assert_eq!(*got, (0..got.len() as u64).collect::<Vec<_>>());
            if got.len() < LINES as usize {
                prefixes.push(got.len() as u64);
            }
        }
        handed.sort_unstable();
        prefixes.sort_unstable();
        assert_eq!(prefixes, handed, "{:?}", run.reports);
        assert!(run.got[2].len() < LINES as usize, "the slow one stayed");
    });
}

/// The fields of the one line `fanout_frames` prints, checked.
#[test]
fn fanout_frames_every_mode_delivers_every_line() {
    watchdog(Duration::from_secs(300), || {
        let bin = build_example("fanout_frames");
        for mode in ["raw", "wire", "framed", "framed1"] {
            let out = ChildGuard::spawn(
                Command::new(&bin)
                    .args([mode, "20000", "3"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped()),
            )
            .wait_success(Duration::from_secs(120));
            // It asserts itself that each output got every byte.
            let fields: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(fields.len(), 6, "{out}");
            assert_eq!(&fields[..3], [mode, "messages=20000", "outputs=3"], "{out}");
            let number = |f: &str, key: &str, unit: &str| {
                f.strip_prefix(key)
                    .and_then(|v| v.strip_suffix(unit))
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{f}: expected {key}N{unit}"))
            };
            number(fields[3], "secs=", "");
            number(fields[4], "msgs/s=", "M");
            assert!(number(fields[5], "rss_peak=", "MiB") > 0.0, "{out}");
        }
    });
}

/// `throughput`: its one line, every fixed part of it, and no FIFO left.
#[test]
fn throughput_moves_what_it_says() {
    watchdog(Duration::from_secs(300), || {
        let bin = build_example("throughput");
        let out = ChildGuard::spawn(
            Command::new(&bin)
                .args(["0.0625", "16"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let pid = out.0.as_ref().map(|c| c.id()).unwrap();
        let out = out.wait_success(Duration::from_secs(120));
        // It asserts itself that the receiver got every byte sent.
        let rest = out
            .strip_prefix("ringpipe: 0.06 GiB in ")
            .unwrap_or_else(|| panic!("{out}"));
        let (secs, rest) = rest
            .split_once(" s through one FIFO (16 KiB chunks, 1 MiB pipe): ")
            .unwrap_or_else(|| panic!("{out}"));
        secs.parse::<f64>().unwrap();
        let (rate, rest) = rest
            .split_once(" GiB/s; io_uring_enter per MiB: receiver ")
            .unwrap_or_else(|| panic!("{out}"));
        rate.parse::<f64>().unwrap();
        let (rx, tx) = rest
            .trim_end()
            .split_once(", sender ")
            .unwrap_or_else(|| panic!("{out}"));
        assert!(rx.parse::<f64>().unwrap() > 0.0, "{out}");
        // On epoll the figure counts the turns that waited (`epoll_wait`):
        // a sender whose pipe always had room made none. On io_uring every
        // submission is an enter.
        let tx = tx.parse::<f64>().unwrap();
        assert!(tx > 0.0 || (on_epoll() && tx == 0.0), "{out}");
        let dir = std::env::temp_dir().join(format!("ringpipe-throughput-{pid}"));
        assert!(!Path::new(&dir).exists(), "{} left behind", dir.display());
    });
}

/// `handoff`: four producer threads' lines through the proactor's
/// mailbox into a FIFO, each line once, each producer's in its order.
#[test]
fn handoff_delivers_every_producers_lines_in_order() {
    watchdog(Duration::from_secs(300), || {
        const MESSAGES: usize = 40_000;
        const PRODUCERS: usize = 4;
        let bin = build_example("handoff");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("handoff");
        mkfifo(&fifo);
        let reader = nonblocking_reader(&fifo);
        let child = ChildGuard::spawn(
            Command::new(&bin)
                .arg(&fifo)
                .args([MESSAGES.to_string(), PRODUCERS.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let bytes = read_to_end(reader);
        child.wait_success(Duration::from_secs(120));
        let text = std::str::from_utf8(&bytes).unwrap();
        let mut next: Vec<usize> = (0..PRODUCERS).collect();
        for l in text.lines() {
            // "producer ID message I"
            let words: Vec<&str> = l.split(' ').collect();
            let (id, i): (usize, usize) = match words[..] {
                ["producer", id, "message", i] => (id.parse().unwrap(), i.parse().unwrap()),
                _ => panic!("not a line of the example: {l:?}"),
            };
            assert_eq!(i, next[id], "producer {id}'s lines out of order or lost");
            next[id] += PRODUCERS;
        }
        assert_eq!(text.lines().count(), MESSAGES);
    });
}
