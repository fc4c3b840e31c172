//! The fifo_exec example as a process: `--help`, a round trip, and a clear
//! refusal, naming it, of a program that cannot run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// The built example (see `common::build_example`).
fn example_bin() -> PathBuf {
    build_example("fifo_exec")
}

/// Runs the example with `args` (and `PATH` set to `path`, if given).
fn run(args: &[&str], path: Option<&Path>) -> (Output, String, String) {
    let mut cmd = Command::new(example_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = ChildGuard::new(cmd.spawn().unwrap()).wait_output(Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Where this process's `PATH` finds `program`.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A refusal: exit code 1, one Display-formatted line naming `program`,
/// and nothing run.
fn assert_refused(out: &Output, stdout: &str, stderr: &str, program: &str) {
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim(),
        format!("fifo_exec: error: cannot run `{program}`: not found in PATH")
    );
    assert!(stdout.is_empty(), "something ran: {stdout}");
}

#[test]
fn help_describes_the_arguments() {
    watchdog(Duration::from_secs(120), || {
        let (out, stdout, stderr) = run(&["--help"], None);
        assert!(out.status.success(), "{stderr}");
        assert!(stdout.contains("pipeline of two programs"), "{stdout}");
        for arg in ["--program", "--size", "--timeout"] {
            assert!(stdout.contains(arg), "{stdout}");
        }
        // An unknown argument is refused, not ignored.
        let (out, _, stderr) = run(&["--no-such-option"], None);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
    });
}

#[test]
fn a_missing_program_is_named_and_fails_the_run() {
    watchdog(Duration::from_secs(120), || {
        let (out, stdout, stderr) = run(&["--program", "no-such-compressor"], None);
        assert_refused(&out, &stdout, &stderr, "no-such-compressor");
    });
}

#[test]
fn a_path_without_gzip_is_named_and_fails_the_run() {
    watchdog(Duration::from_secs(120), || {
        // Every other tool the pipelines use, but no gzip.
        let dir = tempfile::tempdir().unwrap();
        for tool in ["sh", "tee", "tr", "sort", "uniq", "head", "sha256sum"] {
            let found = which(tool).unwrap_or_else(|| panic!("{tool} not in PATH"));
            std::os::unix::fs::symlink(found, dir.path().join(tool)).unwrap();
        }
        let (out, stdout, stderr) = run(&["--size", "1000"], Some(dir.path()));
        assert_refused(&out, &stdout, &stderr, "gzip");
    });
}

#[test]
fn a_round_trip_through_gzip_keeps_the_text() {
    watchdog(Duration::from_secs(120), || {
        let (out, stdout, stderr) = run(&["--size", "300000", "--timeout", "50"], None);
        if which("gzip").is_none() {
            // Still a check (a clear refusal), but not the round trip.
            assert_refused(&out, &stdout, &stderr, "gzip");
            return skip(
                "a_round_trip_through_gzip_keeps_the_text",
                "no gzip in PATH: only its refusal was checked",
            );
        }
        assert!(out.status.success(), "{stdout}{stderr}");
        // All of the text went in (the size is rounded up to a whole word).
        let accepted = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("text: "))
            .and_then(|l| l.strip_suffix(" bytes accepted"))
            .and_then(|l| l.split_once(" of "))
            .unwrap_or_else(|| panic!("no accounting in {stdout}"));
        assert_eq!(accepted.0, accepted.1, "{stdout}");
        assert!(accepted.1.parse::<usize>().unwrap() >= 300_000);
        assert!(stdout.contains("round trip ok"), "{stdout}");
        // The pipeline: the compressed stream relayed whole between the
        // two programs.
        let relayed = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("text.z: "))
            .and_then(|l| l.strip_suffix(" bytes relayed, complete"))
            .unwrap_or_else(|| panic!("no link accounting in {stdout}"));
        assert!(relayed.parse::<usize>().unwrap() > 0, "{stdout}");
        assert!(stdout.contains("pipeline ok"), "{stdout}");
    });
}
