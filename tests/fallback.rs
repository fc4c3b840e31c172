//! Where io_uring is refused, the default `Backend::Auto` runs the same
//! program on epoll. The README example, a real process between real
//! FIFOs, moves 10 MiB exactly and says on stderr which backend runs and
//! why: under a seccomp filter that denies `io_uring_setup`,
//! `io_uring_enter` and `io_uring_register` with EPERM (what the default
//! profiles of Docker and containerd do), and at `RLIMIT_MEMLOCK=0` as an
//! unprivileged user (nobody, when the tests run as root, who is exempt).
//! Without either, it says io_uring: the checks can tell the two apart.

#[path = "common/as_user.rs"]
mod as_user;
mod common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ringpipe::BACKEND_ENV;

const LEN: usize = 10 << 20;
const LIMIT: Duration = Duration::from_secs(120);
/// What the helper case execs, and its two arguments.
const EXEC_ENV: &str = "RINGPIPE_TEST_SECCOMP_EXEC";
const NOBODY: u32 = 65534;

/// Runs `cmd` (the README example, perhaps behind a launcher) on FIFOs
/// `dir/in` and `dir/out`, writes 10 MiB into the input, reads them back
/// from the output, checks every byte and that the example exits 0.
/// Returns its stderr.
fn moves_10_mib(mut cmd: Command, dir: &Path) -> String {
    let (input, output) = (dir.join("in"), dir.join("out"));
    let mut child = ChildGuard::new(
        cmd.args([&input, &output])
            .env_remove(BACKEND_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + LIMIT;
    while !(input.exists() && output.exists()) {
        if let Some(status) = child.child().try_wait().unwrap() {
            let mut err = String::new();
            let _ = child
                .child()
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err);
            panic!("the example exited early: {status}: {err}");
        }
        assert!(Instant::now() < deadline, "the example made no FIFOs");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut data = vec![0u8; LEN];
    pattern(7, &mut data);
    let want = data.clone();
    let writer = std::thread::spawn(move || {
        // Blocks until the example's receiver is open (it opens at once).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&input)?
            .write_all(&data)
    });
    let mut got = Vec::with_capacity(LEN);
    let read = std::fs::File::open(&output).and_then(|mut f| f.read_to_end(&mut got));
    let written = writer.join().unwrap();
    // The example's own account first: it says why it stopped early.
    let out = child.wait_output(LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{}: {stderr}", out.status);
    written.unwrap_or_else(|e| panic!("writing its input: {e}; it said: {stderr}"));
    read.unwrap_or_else(|e| panic!("reading its output: {e}; it said: {stderr}"));
    assert_eq!(got.len(), LEN, "bytes out");
    assert!(got == want, "the bytes differ");
    stderr
}

/// A directory under /tmp that any user may use.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ringpipe-fallback-")
        .tempdir_in("/tmp")
        .unwrap();
    chmod(dir.path(), 0o777);
    dir
}

/// The README example, copied where any user can run it.
fn readme_for_any_user(dir: &Path) -> PathBuf {
    let exe = dir.join("readme");
    std::fs::copy(build_example("readme"), &exe).unwrap();
    chmod(&exe, 0o755);
    exe
}

/// Runs the README example, copied where any user can run it, as
/// `launch` says (given the copy), through [`moves_10_mib`]; returns the
/// line where it says which backend runs.
fn readme_backend(launch: impl FnOnce(&Path) -> Command) -> String {
    let dir = shared_dir();
    let exe = readme_for_any_user(dir.path());
    let stderr = moves_10_mib(launch(&exe), dir.path());
    stderr
        .lines()
        .find(|l| l.starts_with("readme: backend "))
        .unwrap_or_else(|| panic!("no backend line in: {stderr}"))
        .to_string()
}

#[test]
fn io_uring_denied_by_seccomp_falls_back_to_epoll() {
    let _s = serial();
    watchdog(LIMIT * 2, || {
        let line = readme_backend(|exe| {
            let mut cmd = test_case_command(&std::env::current_exe().unwrap(), "seccomp_exec");
            cmd.env(EXEC_ENV, exe);
            cmd
        });
        assert!(
            line.starts_with("readme: backend epoll (io_uring not usable: io_uring_setup refused"),
            "{line}"
        );
        assert!(line.contains("Operation not permitted"), "{line}");
    });
}

/// The same run with nothing denied: io_uring, where the host has it.
#[test]
fn without_a_filter_the_same_run_uses_io_uring() {
    let _s = serial();
    watchdog(LIMIT * 2, || {
        let line = readme_backend(|exe| Command::new(exe));
        if line.starts_with("readme: backend epoll") {
            skip("without_a_filter_the_same_run_uses_io_uring", &line);
            return;
        }
        assert_eq!(line, "readme: backend io_uring");
    });
}

#[test]
fn no_locked_memory_as_an_unprivileged_user_falls_back_to_epoll() {
    let _s = serial();
    watchdog(LIMIT * 2, || {
        let line = readme_backend(|exe| {
            let mut cmd = Command::new("prlimit");
            cmd.args(["--memlock=0:0", "--"]);
            if as_user::is_root() {
                let id = NOBODY.to_string();
                cmd.arg("setpriv")
                    .arg(format!("--reuid={id}"))
                    .arg(format!("--regid={id}"))
                    .arg("--clear-groups");
            }
            cmd.arg(exe).current_dir("/tmp");
            cmd
        });
        assert!(
            line.starts_with(
                "readme: backend epoll (io_uring not usable: io_uring_setup: out of memory"
            ),
            "{line}"
        );
    });
}

/// Run in a child by `io_uring_denied_by_seccomp_falls_back_to_epoll`:
/// denies the io_uring syscalls to this thread with EPERM, then execs the
/// program `RINGPIPE_TEST_SECCOMP_EXEC` names with this process's
/// arguments after the test harness's. The filter is the kernel's, kept
/// across `execve`, so the program runs as in a default container.
#[test]
#[ignore = "a helper: run in a child by io_uring_denied_by_seccomp_falls_back_to_epoll"]
fn seccomp_exec() {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let Some(target) = std::env::var_os(EXEC_ENV) else {
        return;
    };
    let rules = [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ]
    .into_iter()
    .map(|nr| (nr, vec![]))
    .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    let program: BpfProgram = filter.try_into().unwrap();
    seccompiler::apply_filter(&program).unwrap();
    // The harness's own arguments (`test_case_args`) come first.
    let args: Vec<OsString> = std::env::args_os()
        .skip(1 + test_case_args("seccomp_exec").len())
        .collect();
    let err = Command::new(target).args(args).exec();
    panic!("exec: {err}");
}
