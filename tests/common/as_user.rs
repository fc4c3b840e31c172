//! Running one test case as another, unprivileged user: root is exempt
//! from the per-user limits (locked memory, pipe pages) that every real
//! user meets. Include with `#[path = "common/as_user.rs"] mod as_user;`.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::{ChildGuard, exe_for_any_user, skip, test_case_args};

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs the `#[ignore]`d test `case` of this test binary as uid and gid
/// `uid`, under the `prlimit` options `limits` (`--memlock=N:N`, ...),
/// through util-linux's `prlimit` and `setpriv`, and fails unless it
/// passed within `limit`. Needs root.
pub fn run_case_as(uid: u32, limits: &[String], case: &str, limit: Duration) {
    run_case_limited(Some(uid), limits, case, limit);
}

/// Runs the `#[ignore]`d test `case` of this test binary in a child under
/// the `prlimit` options `limits`, as uid and gid `uid` if given (through
/// `setpriv`, which needs root), else as this user; fails unless it passed
/// within `limit`. The binary runs from a copy under /tmp, which any user
/// can execute wherever the checkout is (a 0700 home, say). The case's
/// skips are this test's skips.
pub fn run_case_limited(uid: Option<u32>, limits: &[String], case: &str, limit: Duration) {
    let tools: &[&str] = if uid.is_some() {
        &["prlimit", "setpriv"]
    } else {
        &["prlimit"]
    };
    for tool in tools {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} (util-linux) is needed to run {case} in a child"
        );
    }
    let (_copy, exe) = exe_for_any_user();
    let mut cmd = Command::new("prlimit");
    cmd.args(limits).arg("--");
    if let Some(uid) = uid {
        let id = uid.to_string();
        cmd.arg("setpriv")
            .arg(format!("--reuid={id}"))
            .arg(format!("--regid={id}"))
            .arg("--clear-groups");
    }
    let child = cmd
        .arg(&exe)
        .args(test_case_args(case))
        .current_dir("/tmp")
        .env("TMPDIR", "/tmp")
        .env("HOME", "/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ChildGuard::new(child).wait_output(limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.starts_with("SKIPPED")) {
        skip(case, line);
    }
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{case} as uid {uid:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}
