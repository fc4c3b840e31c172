//! `examples/hub_handoff.rs` run as a real process: producer threads hand
//! lines through a mailbox to the proactor's thread, which publishes them
//! through a hub to subscriber FIFOs read by real processes, one fast and
//! one slow (which holds the publisher back). Every subscriber gets every
//! line once, each producer's in order, all in the same order; the
//! example exits 0.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Reads the FIFO at argv[1] to EOF, 4 KiB every millisecond, into argv[2].
const SLOW_CAT_PY: &str = r#"
import os, sys, signal, time
signal.alarm(60)
fd = os.open(sys.argv[1], os.O_RDONLY)
data = bytearray()
while True:
    b = os.read(fd, 4096)
    if not b:
        break
    data += b
    time.sleep(0.001)
with open(sys.argv[2], 'wb') as f:
    f.write(data)
"#;

/// Checks one subscriber's lines: every message of `messages` once, each
/// producer's in order. Returns them.
fn check_lines(out: &Path, messages: usize, producers: usize) -> Vec<String> {
    let text = std::fs::read_to_string(out).unwrap();
    assert!(text.ends_with('\n') || text.is_empty(), "a partial line");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut seen = vec![false; messages];
    let mut last: Vec<Option<usize>> = vec![None; producers];
    for line in &lines {
        let words: Vec<&str> = line.split(' ').collect();
        let [_, id, _, i] = words[..] else {
            panic!("bad line {line:?}");
        };
        let (id, i): (usize, usize) = (id.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i % producers, id, "{line:?} from the wrong producer");
        assert!(!seen[i], "{line:?} twice");
        seen[i] = true;
        assert!(last[id] < Some(i), "{line:?} out of order");
        last[id] = Some(i);
    }
    assert!(seen.iter().all(|s| *s), "lines missing");
    lines
}

#[test]
fn every_subscriber_gets_every_line_once_in_order() {
    watchdog(Duration::from_secs(120), || {
        const MESSAGES: usize = 20_000;
        const PRODUCERS: usize = 4;
        let dir = tempfile::tempdir().unwrap();
        let (fast, slow) = (dir.path().join("fast"), dir.path().join("slow"));
        mkfifo(&fast);
        mkfifo(&slow);
        let example = ChildGuard::spawn(
            Command::new(build_example("hub_handoff"))
                .arg(MESSAGES.to_string())
                .arg(PRODUCERS.to_string())
                .args([&fast, &slow])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let fast_out = dir.path().join("fast.txt");
        let readers = vec![
            ChildGuard::spawn(
                Command::new("cat")
                    .arg(&fast)
                    .stdout(std::fs::File::create(&fast_out).unwrap()),
            ),
            ChildGuard::spawn(&mut python(
                SLOW_CAT_PY,
                &[&slow, &dir.path().join("slow.txt")],
            )),
        ];
        let out = example.wait_output(Duration::from_secs(90));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", out.status);
        eprintln!("{stderr}");
        assert!(
            stderr.contains(&format!("{MESSAGES} lines published to 2 subscribers")),
            "{stderr}"
        );
        wait_all(readers, Duration::from_secs(30));
        let a = check_lines(&fast_out, MESSAGES, PRODUCERS);
        let b = check_lines(&dir.path().join("slow.txt"), MESSAGES, PRODUCERS);
        assert!(a == b, "the subscribers got different orders");
    });
}

/// Bad arguments: usage, exit status 2.
#[test]
fn bad_arguments_print_usage() {
    let example = ChildGuard::spawn(
        Command::new(build_example("hub_handoff"))
            .arg("many")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let out = example.wait_output(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: hub_handoff"));
}
