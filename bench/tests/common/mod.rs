//! What the bench's end-to-end tests share: running the bench binary
//! under a watchdog, and a scratch directory.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringpipe-bench");

/// Runs the bench with `args`, killed after `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringpipe-bench");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "ringpipe-bench {args:?} still running after {limit:?}; stdout:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

/// A fresh directory for test `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ringpipe-bench-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs the bench with `args` (plus `--dir` and `--json` in a scratch
/// directory `name`), asserts that it succeeded with no failed run, and
/// returns its stdout and the records it wrote.
pub fn run_json(name: &str, args: &[&str], limit: Duration) -> (String, Vec<serde_json::Value>) {
    let dir = scratch(name);
    let json = dir.join("records.json");
    let mut all: Vec<&str> = args.to_vec();
    let (d, j) = (
        dir.to_str().expect("utf-8 temp dir"),
        json.to_str().expect("utf-8 temp dir"),
    );
    all.extend(["--dir", d, "--json", j]);
    let out = run(&all, limit);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A run that miscounts fails, and says so in the notes.
    assert!(!stdout.contains("run failed"), "{stdout}");
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("json parses");
    let _ = std::fs::remove_dir_all(&dir);
    (
        stdout,
        records.as_array().expect("an array of records").clone(),
    )
}

/// `(engine, params[key])` of each record, in order.
pub fn counts<'a>(records: &'a [serde_json::Value], key: &str) -> Vec<(&'a str, u64)> {
    records
        .iter()
        .map(|r| {
            let engine = r["engine"].as_str().expect("an engine");
            let n = r["params"][key]
                .as_u64()
                .unwrap_or_else(|| panic!("no {key} in {r}"));
            (engine, n)
        })
        .collect()
}
