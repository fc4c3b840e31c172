//! Receivers read with `O_NOATIME` where the kernel allows it (the FIFO's
//! owner, or `CAP_FOWNER`): their reads leave the FIFO's access time
//! alone. For a FIFO another user owns the kernel refuses the flag, and
//! the receiver reads as it would without it.

#[path = "common/as_user.rs"]
mod as_user;
mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use as_user::is_root;
use common::*;
use nix::sys::stat::{Mode, UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use ringpipe::{Event, Events, FifoOptions, Proactor};

const NOBODY: u32 = 65534;
const LIMIT: Duration = Duration::from_secs(60);

/// Opens a receiver on `fifo`, writes `payload` into it from a writer of
/// our own, and polls until every byte came.
fn receive(fifo: &Path, payload: &[u8]) {
    let mut p = Proactor::new().unwrap();
    let mut ev = Events::with_capacity(64);
    let _rx = p.open_receiver(fifo, &FifoOptions::new()).unwrap();
    // The receiver holds the read end: this open does not block.
    let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    w.write_all(payload).unwrap();
    let mut got = Vec::new();
    poll_until(&mut p, &mut ev, LIMIT, |e| {
        if let Event::Data { data, .. } = e {
            got.extend_from_slice(data);
        }
        got.len() >= payload.len()
    });
    assert_eq!(got, payload);
}

/// A FIFO read with access times on would get a new one here: its access
/// time is two days old, older than its modification time once written
/// (`relatime` updates it then), yet after the read it is the same.
#[test]
fn reads_leave_the_access_time_alone() {
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        mkfifo(&fifo);
        let old = TimeSpec::new(
            nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
                .unwrap()
                .tv_sec()
                - 2 * 86_400,
            0,
        );
        utimensat(
            nix::fcntl::AT_FDCWD,
            &fifo,
            &old,
            &old,
            UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        receive(&fifo, &[7u8; 1000]);
        let meta = std::fs::metadata(&fifo).unwrap();
        assert!(
            meta.mtime() > old.tv_sec(),
            "the write did not move the modification time: the check shows nothing"
        );
        assert_eq!(
            (meta.atime(), meta.atime_nsec()),
            (old.tv_sec(), old.tv_nsec()),
            "the receiver's reads updated the FIFO's access time"
        );
    });
}

/// The directory of the FIFO owned by root that the case below reads as
/// nobody: named after the test process, which is the case's parent
/// (`prlimit` and `setpriv` exec the case in the process it spawned).
fn shared_dir(test_pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/ringpipe-atime-{test_pid}"))
}

#[test]
fn a_fifo_of_another_user_reads_without_the_flag() {
    if !is_root() {
        return skip(
            "a_fifo_of_another_user_reads_without_the_flag",
            "needs root to make a FIFO another user reads",
        );
    }
    let dir = shared_dir(std::process::id());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let fifo = dir.join("f");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o666)).unwrap();
    chmod(&fifo, 0o666);
    let result = std::panic::catch_unwind(|| {
        as_user::run_case_as(
            NOBODY,
            &[],
            "case_a_fifo_of_another_user_reads_without_the_flag",
            Duration::from_secs(120),
        )
    });
    std::fs::remove_dir_all(&dir).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
#[ignore = "run as nobody by a_fifo_of_another_user_reads_without_the_flag"]
fn case_a_fifo_of_another_user_reads_without_the_flag() {
    watchdog(LIMIT, || {
        let fifo = shared_dir(std::os::unix::process::parent_id()).join("f");
        let owner = std::fs::metadata(&fifo).unwrap().uid();
        assert_ne!(owner, nix::unistd::geteuid().as_raw(), "the FIFO is ours");
        receive(&fifo, &[9u8; 1000]);
    });
}
