//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use ringpipe::{Event, Events, Proactor};

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `limit`: a bug must fail the test, not hang CI.
pub fn watchdog<F: FnOnce() + Send + 'static>(limit: Duration, f: F) {
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: test still running after {limit:?}")
        }
    }
}

/// Kills the child when dropped (a failing test leaves no process behind).
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(Some(child))
    }

    /// Spawns `cmd` through [`spawn`].
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard::new(spawn(cmd))
    }

    /// The running child.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the child was waited for")
    }

    /// Waits (bounded) for the child, asserts that it succeeded, and
    /// returns its stdout (empty unless piped).
    pub fn wait_success(self, limit: Duration) -> String {
        let out = self.wait_output(limit);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child: {}: {stderr}", out.status);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits for the child (bounded) and returns its output.
    pub fn wait_output(mut self, limit: Duration) -> std::process::Output {
        let child = self.0.take().unwrap();
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(limit) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                // SAFETY-free: kill(2) through the shell keeps tests free of unsafe.
                let _ = std::process::Command::new("kill")
                    .arg("-9")
                    .arg(pid.to_string())
                    .status();
                panic!("child {pid} still running after {limit:?}");
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fresh FIFO path (not created) in `dir`.
pub fn fifo_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

pub fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Number of threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Polls until `stop` says so for some event, or panics after `limit`.
/// Every event is also passed to `on_event`.
pub fn poll_until(
    p: &mut Proactor,
    events: &mut Events,
    limit: Duration,
    mut on_event: impl FnMut(&Event<'_>) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "poll_until: condition not met within {limit:?}"
        );
        p.poll(events, Some(left.min(Duration::from_millis(100))))
            .unwrap();
        let mut done = false;
        for ev in events.iter() {
            done |= on_event(&ev);
        }
        if done {
            return;
        }
    }
}

/// Deterministic pseudo-random bytes: byte `i` of the stream depends on `i`
/// only, so any loss, duplication or reordering shows.
pub fn pattern(offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *b = (x >> 56) as u8 ^ (x >> 17) as u8;
    }
}

/// Serialises tests that count process-wide resources (fds, threads), which
/// tests running in parallel in the same process would disturb. Take it
/// before `watchdog`: the watchdog times the test, not its wait in line.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A read end opened non-blocking: it opens at once with no writer, makes
/// the FIFO "have a reader", and reads only when the test says so.
/// `O_CLOEXEC` like every fd a test opens: a child that a parallel test
/// spawns must not inherit it and keep the FIFO readable.
pub fn nonblocking_reader(path: &Path) -> OwnedFd {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap()
}

/// An anonymous pipe (read end, write end), both ends `O_CLOEXEC`.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

/// `O_CLOEXEC` closes a test's fds in a child only at exec: from fork to
/// exec, a child spawned by a parallel test holds a copy of every fd, and a
/// write made meanwhile finds a reader instead of EPIPE. Spawns hold this
/// shared; closing what must be a pipe's last end holds it exclusive.
static SPAWN_GATE: RwLock<()> = RwLock::new(());

/// Spawns `cmd`. `Command::spawn` returns once the child has exec'd (or
/// failed to), so no copy of this process's `O_CLOEXEC` fds outlives it.
pub fn spawn(cmd: &mut Command) -> Child {
    let _gate = SPAWN_GATE.read().unwrap_or_else(|e| e.into_inner());
    cmd.spawn().unwrap()
}

/// Closes `fd`, the last end of its pipe in this process, at a moment when
/// no child spawned through [`spawn`] is between fork and exec: when this
/// returns no process holds that end, and the next write to the pipe gets
/// EPIPE (or the next read EOF).
pub fn close_last_end(fd: OwnedFd) {
    let _gate = SPAWN_GATE.write().unwrap_or_else(|e| e.into_inner());
    drop(fd);
}

/// A reader session, in python: reads exactly `count` bytes with plain
/// `os.read` (never asking for more than it keeps, so it takes nothing
/// beyond its share from the pipe), saves them to `out`, and leaves.
/// Arguments: path, count, out. It kills itself after 60 s.
pub const EXACT_READ_PY: &str = r#"
import os, sys, signal
signal.alarm(60)
path, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(path, os.O_RDONLY)
data = bytearray()
while len(data) < count:
    b = os.read(fd, min(65536, count - len(data)))
    if not b:
        break
    data += b
os.close(fd)
with open(out, 'wb') as f:
    f.write(data)
"#;

/// `python3 -c script args...`. Every script a test runs arms an alarm, so
/// it never outlives a stuck test.
pub fn python(script: &str, args: &[&dyn AsRef<OsStr>]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]);
    for a in args {
        cmd.arg(a);
    }
    cmd
}

/// Waits (bounded, each) for every child to succeed; returns their stdouts.
pub fn wait_all(children: Vec<ChildGuard>, limit: Duration) -> Vec<String> {
    children
        .into_iter()
        .map(|c| c.wait_success(limit))
        .collect()
}

/// The example `name`, built with this test binary's profile and found
/// next to it (`target/<profile>/deps/` -> `target/<profile>/examples/`).
/// Built once per test binary: `cargo test --test NAME` alone does not
/// build examples, and a stale binary would test old code.
pub fn build_example(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("examples").join(name);
    // Held while building: tests asking for it at once wait for one build.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", name]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example {name} failed");
        assert!(bin.exists(), "{} missing", bin.display());
        built.push(name.to_string());
    }
    bin
}

/// Bytes in the pipe behind a FIFO or pipe end (FIONREAD).
pub fn pipe_bytes(fd: &OwnedFd) -> usize {
    rustix::io::ioctl_fionread(fd).expect("FIONREAD") as usize
}

/// Writes `data` into `writer` on a thread of its own, in page-sized
/// writes (each whole or waiting, so the count is exact and a full pipe
/// holds exactly its capacity). Returns the thread and the bytes written
/// so far.
pub fn counting_writer(
    writer: OwnedFd,
    data: Vec<u8>,
) -> (
    std::thread::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let written = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&written);
    let thread = std::thread::spawn(move || {
        let mut f = std::fs::File::from(writer);
        for chunk in data.chunks(4096) {
            f.write_all(chunk).unwrap();
            count.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    (thread, written)
}

/// The private FIFO directories of `ringpipe::process` runs of this
/// process still in the temp dir (there should be none between runs).
/// Directories named by an earlier process that had the same pid (left by
/// a run that was killed) are older than this process, and not counted.
pub fn leftover_dirs() -> Vec<String> {
    let prefix = format!("ringpipe-{}-", std::process::id());
    let started = process_start();
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= started)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// When this process started, to the second below: boot time
/// (`/proc/stat` `btime`) plus the process's start in clock ticks
/// (`/proc/self/stat`, field 22).
fn process_start() -> std::time::SystemTime {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command's closing parenthesis start at field 3.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let ticks: u64 = after.split(' ').nth(22 - 3).unwrap().parse().unwrap();
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    std::time::UNIX_EPOCH + Duration::from_secs(boot + ticks / hz)
}

/// A reader in python that, like gzip, opens `argv[1]` non-blocking and
/// reads at once, waiting with `select` while it is empty, until EOF;
/// writes what it read to `argv[2]`. It kills itself after 60 s.
pub const NONBLOCKING_CAT_PY: &str = r#"
import os, select, signal, sys
signal.alarm(60)
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
data = bytearray()
while True:
    try:
        b = os.read(fd, 1 << 16)
    except BlockingIOError:
        select.select([fd], [], [])
        continue
    if not b:
        break
    data += b
with open(sys.argv[2], "wb") as f:
    f.write(data)
"#;

/// The environment variable that turns a skipped check into a failure
/// (`.ci/run` sets it to 1): where CI cannot make a precondition true, it
/// must not count a test that checked nothing as a pass.
pub const STRICT_ENV: &str = "RINGPIPE_CI_STRICT";

/// Says on stderr, past the test harness's capture, that `test` could not
/// check what it is for here and why; with `RINGPIPE_CI_STRICT=1` it fails
/// the test instead. Returns so the caller can leave.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let strict = std::env::var_os(STRICT_ENV).is_some_and(|v| v == "1");
    // Written to the fd, not through eprintln!, which the harness captures.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    assert!(!strict, "{test} skipped under {STRICT_ENV}=1: {why}");
}

/// Sets `path`'s permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A copy of this test binary that any user can run: in a fresh
/// directory under /tmp, both mode 0755. The binary under `target/` may
/// sit in a checkout other users cannot enter (a 0700 home). Keep the
/// directory for as long as the copy runs.
pub fn exe_for_any_user() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("ringpipe-test-exe-")
        .tempdir_in("/tmp")
        .unwrap();
    let exe = dir.path().join("test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    chmod(dir.path(), 0o755);
    chmod(&exe, 0o755);
    (dir, exe)
}

/// `exe` (this test binary or a copy of it) running only the test `case`,
/// `#[ignore]`d ones included, on one thread, its output uncaptured: how
/// a test runs part of itself in a child process.
pub fn test_case_command(exe: &Path, case: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(test_case_args(case));
    cmd
}

/// The arguments of [`test_case_command`], for a command that runs the
/// test binary through another program (`prlimit`, `setpriv`).
pub fn test_case_args(case: &str) -> [&str; 5] {
    [
        "--exact",
        case,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]
}

/// Everything a non-blocking read end holds now: up to EAGAIN, or EOF
/// once no writer is left.
pub fn drain(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EAGAIN) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// `close_after_flush(tx)`, then polls (up to `limit`) until `tx` is
/// closed, which must be `Flushed` with nothing handed back; an error
/// event fails the test.
pub fn close_flushed(p: &mut Proactor, ev: &mut Events, tx: ringpipe::Sender, limit: Duration) {
    p.close_after_flush(tx).unwrap();
    poll_until(p, ev, limit, |e| match e {
        Event::Closed {
            token,
            reason,
            unsent,
        } if *token == tx.token() => {
            assert_eq!(*reason, ringpipe::CloseReason::Flushed);
            assert!(unsent.is_empty(), "{} bytes handed back", unsent.len());
            true
        }
        Event::Error { error, .. } => panic!("{error}"),
        _ => false,
    });
}

/// Whether the proactors this test builds run on the epoll backend:
/// `RINGPIPE_BACKEND=epoll` (the suite's second run), or a host where
/// io_uring is refused.
pub fn on_epoll() -> bool {
    static EPOLL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *EPOLL.get_or_init(|| {
        Proactor::new().is_ok_and(|p| p.backend().backend() == ringpipe::Backend::Epoll)
    })
}

/// For a test of what io_uring itself does (its enters, registered
/// files, deferred task work, batched waits): true when proactors run on
/// epoll here, where it has nothing to check, after saying so on stderr.
/// Asked for (`RINGPIPE_BACKEND=epoll`), that is no skip: the suite's
/// io_uring run checks it. On a host that refuses io_uring it is one
/// ([`skip`]: a failure in CI).
pub fn io_uring_only(test: &str) -> bool {
    use std::io::Write;
    if !on_epoll() {
        return false;
    }
    let asked = std::env::var(ringpipe::BACKEND_ENV).is_ok_and(|v| v == "epoll");
    if asked {
        let _ = writeln!(
            std::io::stderr(),
            "NOT ON EPOLL {test}: it checks io_uring itself; the io_uring run covers it"
        );
    } else {
        skip(
            test,
            "io_uring is not usable here: the proactor runs on epoll",
        );
    }
    true
}

/// Waits until thread `tid` of this process sleeps inside
/// `io_uring_enter` (state `S`, the syscall /proc reports for it): a
/// notify or a send made then finds its poll blocked in the kernel.
pub fn wait_until_asleep_in_enter(tid: i32) {
    let task = std::path::PathBuf::from(format!("/proc/self/task/{tid}"));
    // The backend's one blocking syscall: io_uring_enter, or epoll_wait
    // (epoll_pwait where the C library waits with that).
    let waits = [
        libc::SYS_io_uring_enter,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
    ]
    .map(|nr| nr.to_string());
    loop {
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // The state follows the command name, which is in parentheses.
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        let syscall = std::fs::read_to_string(task.join("syscall")).unwrap();
        let nr = syscall.split(' ').next().unwrap_or_default();
        if state == Some("S") && waits.iter().any(|w| w == nr) {
            return;
        }
        std::thread::yield_now();
    }
}
