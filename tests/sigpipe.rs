//! An io_uring write after the reader left raises SIGPIPE in the submitting
//! thread. With the default policy the process survives and sees PeerGone;
//! with the policy turned off (and SIGPIPE at its default) it dies: the test
//! would catch a policy that does nothing.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, Proactor};

const CHILD_ENV: &str = "RINGPIPE_TEST_SIGPIPE_CHILD";

/// Entry point of the child processes below, not a test: ignored, so the
/// harness never counts it as a pass; the parents run it by name.
#[test]
#[ignore = "child process entry point of the sigpipe tests"]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        // Run with --ignored but not by a parent: there is nothing to test.
        return;
    };
    // A C program or a runtime that left SIGPIPE alone starts with the
    // default action; Rust's runtime ignores it, so restore the default.
    // SAFETY: SIG_DFL installs no handler; this runs before any other thread
    // of the child does I/O.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
        .unwrap();
    }
    let mut p = Proactor::builder()
        .ignore_sigpipe(mode == "default")
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    mkfifo(&path);
    let reader = nonblocking_reader(&path);
    let tx = p.open_sender(&path, &FifoOptions::new()).unwrap();
    let mut ev = Events::default();
    p.send(tx, b"first").unwrap();
    poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
        matches!(e, Event::Sent { .. })
    });
    drop(reader);
    p.send(tx, b"after the reader left").unwrap();
    poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| {
        matches!(e, Event::PeerGone(_))
    });
    // The bytes the kernel refused are still queued.
    assert_eq!(p.stats(tx).unwrap().bytes_unsent(), 21);
    println!("SURVIVED");
}

fn run_child(mode: &str) -> std::process::Output {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ChildGuard::new(child).wait_output(Duration::from_secs(20))
}

#[test]
fn default_policy_survives_a_reader_leaving() {
    watchdog(Duration::from_secs(30), || {
        let out = run_child("default");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("SURVIVED"),
            "{:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn without_the_policy_sigpipe_kills() {
    watchdog(Duration::from_secs(30), || {
        let out = run_child("keep");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.signal(),
            Some(libc_sigpipe()),
            "{:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // It died in the child test itself, after the harness started it.
        assert!(stdout.contains("running 1 test"), "{stdout}");
        assert!(!stdout.contains("SURVIVED"));
    });
}

fn libc_sigpipe() -> i32 {
    nix::sys::signal::Signal::SIGPIPE as i32
}
