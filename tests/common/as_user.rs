//! Running one test case as another, unprivileged user: root is exempt
//! from the per-user limits (locked memory, pipe pages) that every real
//! user meets. Include with `#[path = "common/as_user.rs"] mod as_user;`.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::ChildGuard;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs the `#[ignore]`d test `case` of this test binary as uid and gid
/// `uid`, under the `prlimit` options `limits` (`--memlock=N:N`, ...),
/// through util-linux's `prlimit` and `setpriv`, and fails unless it
/// passed within `limit`. The binary runs from a copy under /tmp, which
/// that user can execute wherever the checkout is (a 0700 home, say).
/// Needs root.
pub fn run_case_as(uid: u32, limits: &[String], case: &str, limit: Duration) {
    for tool in ["setpriv", "prlimit"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} (util-linux) is needed to run tests as {uid}");
    }
    let copy = tempfile::Builder::new()
        .prefix("ringpipe-as-user-")
        .tempdir_in("/tmp")
        .unwrap();
    let exe = copy.path().join("test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    chmod(copy.path(), 0o755);
    chmod(&exe, 0o755);
    let id = uid.to_string();
    let child = Command::new("prlimit")
        .args(limits)
        .args(["--", "setpriv"])
        .arg(format!("--reuid={id}"))
        .arg(format!("--regid={id}"))
        .arg("--clear-groups")
        .arg(&exe)
        .args([case, "--exact", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
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
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{case} as uid {uid}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
