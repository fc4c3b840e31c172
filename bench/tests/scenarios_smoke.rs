//! One small run of each engine scenario, every engine that takes part in
//! it by default: the run must check every message (or chunk) it moves,
//! each in order on its FIFO, and say how many it checked. A scenario
//! that loses, repeats or reorders one fails its run, and the command
//! fails. A watchdog kills a run that hangs.

mod common;

use std::time::Duration;

use common::{counts, run, run_json};

const LIMIT: Duration = Duration::from_secs(120);
const ONCE: [&str; 6] = ["--runs", "1", "--warmup", "0", "--timeout", "30"];

fn args<'a>(scenario: &'a [&'a str]) -> Vec<&'a str> {
    scenario.iter().chain(ONCE.iter()).copied().collect()
}

/// `(engine, n)` for each engine, in order.
fn each<'a>(engines: &[&'a str], n: u64) -> Vec<(&'a str, u64)> {
    engines.iter().map(|&e| (e, n)).collect()
}

#[test]
fn throughput_checks_every_chunk() {
    let (_, records) = run_json(
        "throughput",
        &args(&["throughput", "--chunks", "64,4096", "--mib", "1"]),
        LIMIT,
    );
    // 1 MiB in 64-byte chunks, then in 4 KiB chunks.
    let engines = ["uring", "ringpipe-epoll", "epoll", "threads", "tokio"];
    let mut want = each(&engines, 16384);
    want.extend(each(&engines, 256));
    assert_eq!(counts(&records, "msgs_checked"), want);
}

#[test]
fn fanin_checks_every_message_of_every_fifo() {
    let (_, records) = run_json(
        "fanin",
        &args(&["fanin", "--fifos", "1,16", "--msgs", "1600"]),
        LIMIT,
    );
    let engines = [
        "uring",
        "uring-single",
        "uring-batch",
        "ringpipe-epoll",
        "epoll",
        "threads",
        "tokio",
    ];
    assert_eq!(
        counts(&records, "msgs_checked"),
        each(&[engines, engines].concat(), 1600)
    );
}

#[test]
fn latency_checks_every_message_and_its_delay() {
    // 200 messages on schedule at 2,000 a second, into 1 FIFO and into 4.
    let (_, records) = run_json(
        "latency",
        &args(&[
            "latency",
            "--fifos",
            "1,4",
            "--rates",
            "2000",
            "--one-fifo-rates",
            "--secs",
            "0.1",
        ]),
        LIMIT,
    );
    let engines = [
        "uring",
        "uring-single",
        "ringpipe-epoll",
        "epoll",
        "threads",
        "tokio",
    ];
    assert_eq!(
        counts(&records, "msgs_checked"),
        each(&[engines, engines].concat(), 200)
    );
    // Every message sampled: its delay from the schedule, the tail and
    // the consumer's CPU per message.
    for r in &records {
        for m in [
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us",
            "cpu_s_per_million_msgs",
        ] {
            let v = r["metrics"][m]
                .as_f64()
                .unwrap_or_else(|| panic!("no {m} in {r}"));
            assert!(v > 0.0, "{m} in {r}");
        }
        let (p99, max) = (
            r["metrics"]["p99_us"].as_f64(),
            r["metrics"]["max_us"].as_f64(),
        );
        assert!(p99 <= max, "p99 above max in {r}");
    }
}

#[test]
fn relay_output_is_checked_chunk_by_chunk() {
    let (_, records) = run_json("relay", &args(&["relay", "--mib", "2"]), LIMIT);
    // 2 MiB in 64 KiB chunks, read back by the load generator.
    let engines = [
        "uring",
        "uring-splice",
        "uring-splice-direct",
        "uring-splice-iowq",
        "ringpipe-epoll",
        "ringpipe-epoll-splice",
        "epoll",
        "threads",
        "threads-splice",
        "tokio",
    ];
    assert_eq!(counts(&records, "msgs_checked"), each(&engines, 32));
}

#[test]
fn pingpong_checks_every_echo() {
    let (_, records) = run_json("pingpong", &args(&["pingpong", "--rounds", "500"]), LIMIT);
    // 500 rounds and 50 warm-up rounds, each echo equal to its request.
    let engines = [
        "uring",
        "uring-echo",
        "uring-sqpoll",
        "uring-spin",
        "ringpipe-epoll",
        "epoll",
        "threads",
        "tokio",
    ];
    assert_eq!(counts(&records, "msgs_checked"), each(&engines, 550));
}

#[test]
fn idle_checks_one_message_per_fifo() {
    let (_, records) = run_json(
        "idle",
        &args(&["idle", "--fifos", "100", "--idle-ms", "100"]),
        LIMIT,
    );
    let engines = ["uring", "ringpipe-epoll", "epoll", "threads", "tokio"];
    assert_eq!(counts(&records, "msgs_checked"), each(&engines, 100));
}

/// Runs a scenario that prints its own tables; returns its stdout.
fn printed(args: &[&str]) -> String {
    let out = run(args, LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn handoff_readers_check_every_message() {
    let stdout = printed(&[
        "handoff",
        "--msgs",
        "3000",
        "--rate",
        "1000",
        "--paced-msgs",
        "20",
        "--runs",
        "1",
        "--warmup",
        "0",
    ]);
    // Four I/O sides, each a run of 3,000 messages and one of 20.
    assert!(
        stdout
            .contains("messages checked: 12080, every run's reader got each of its messages once"),
        "{stdout}"
    );
}

#[test]
fn hub_accounts_for_every_frame_to_every_subscriber() {
    let stdout = printed(&[
        "hub", "--msgs", "2000", "--rate", "20000", "--runs", "1", "--warmup", "0",
    ]);
    // Setups of 2, 3 and 3 subscribers: 8 x 2,000 frames, each read in
    // order or dropped and counted by the hub.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("frames accounted for: "))
        .unwrap_or_else(|| panic!("no account: {stdout}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 2, "{line}");
    assert_eq!(n[0] + n[1], 16_000, "{line}");
}
