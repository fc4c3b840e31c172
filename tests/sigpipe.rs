//! An io_uring write after the reader left raises SIGPIPE in the submitting
//! thread. With the default policy the process survives and sees PeerGone;
//! with the policy turned off (and SIGPIPE at its default) it dies: the test
//! would catch a policy that does nothing.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, Proactor};

const CHILD_ENV: &str = "RINGPIPE_TEST_SIGPIPE_CHILD";

#[test]
fn child_entry() {
    // Entry point of the child processes below; does nothing when run
    // directly by the test harness.
    let Ok(mode) = std::env::var(CHILD_ENV) else {
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
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .output()
        .unwrap()
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
        assert_eq!(
            out.status.signal(),
            Some(libc_sigpipe()),
            "{:?}",
            out.status
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("SURVIVED"));
    });
}

fn libc_sigpipe() -> i32 {
    nix::sys::signal::Signal::SIGPIPE as i32
}
