//! Every bad path gets its own typed error, naming the path.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use ringpipe::{Error, Events, FifoOptions, Proactor, State};

fn both_ends(p: &mut Proactor, path: &Path, opts: &FifoOptions) -> [Error; 2] {
    [
        p.open_receiver(path, opts).map(|_| ()).unwrap_err(),
        p.open_sender(path, opts).map(|_| ()).unwrap_err(),
    ]
}

#[test]
fn regular_file_directory_and_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proactor::new().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a fifo").unwrap();
    for e in both_ends(&mut p, &file, &FifoOptions::new()) {
        assert!(
            matches!(&e, Error::NotAFifo { path, kind: "regular file" } if *path == file),
            "{e:?}"
        );
        assert!(e.to_string().contains("file"), "{e}");
    }
    // Even with create(true): an existing non-FIFO is refused, not replaced.
    for e in both_ends(&mut p, &file, &FifoOptions::new().create(true)) {
        assert!(matches!(e, Error::NotAFifo { .. }), "{e:?}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a fifo");

    for e in both_ends(&mut p, dir.path(), &FifoOptions::new()) {
        assert!(
            matches!(
                e,
                Error::NotAFifo {
                    kind: "directory",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let missing = dir.path().join("missing");
    for e in both_ends(&mut p, &missing, &FifoOptions::new()) {
        assert!(
            matches!(&e, Error::NotFound { path } if *path == missing),
            "{e:?}"
        );
    }
    // Nothing was left open by the failures.
    assert_eq!(p.snapshot().ops_in_flight, 0);
    assert_eq!(p.snapshot().registered_files, 0);
}

#[test]
fn a_missing_directory_is_named_not_the_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proactor::new().unwrap();
    let in_missing_dir = dir.path().join("no/such/dir/f");
    let first_missing = dir.path().join("no");
    for create in [true, false] {
        let opts = FifoOptions::new().create(create);
        for e in both_ends(&mut p, &in_missing_dir, &opts) {
            assert!(
                matches!(&e, Error::NoSuchDirectory { path, dir }
                    if *path == in_missing_dir && *dir == first_missing),
                "create({create}): {e:?}"
            );
            let msg = e.to_string();
            assert!(msg.contains("no such directory"), "{msg}");
            assert!(!msg.contains("no such FIFO"), "{msg}");
        }
    }
    assert!(!first_missing.exists());
    // A missing FIFO in a directory that exists is still the FIFO's fault.
    let missing = dir.path().join("missing");
    for e in both_ends(&mut p, &missing, &FifoOptions::new()) {
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    }
    assert_eq!(p.snapshot().ops_in_flight, 0);
    assert_eq!(p.snapshot().registered_files, 0);
}

#[test]
fn an_empty_path_is_named_as_such() {
    let mut p = Proactor::new().unwrap();
    for create in [true, false] {
        for e in both_ends(&mut p, Path::new(""), &FifoOptions::new().create(create)) {
            assert!(matches!(e, Error::EmptyPath), "{e:?}");
            assert!(e.to_string().starts_with("\"\" (empty path)"), "{e}");
        }
    }
    // Nothing was left open by the failures.
    assert_eq!(p.snapshot().ops_in_flight, 0);
    assert_eq!(p.snapshot().registered_files, 0);
}

/// A NUL byte would end the name at the kernel's side: refused by name
/// before anything is created, not an `EINVAL` from `mkfifo`.
#[test]
fn a_path_with_a_nul_byte_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in\0out");
    let mut p = Proactor::new().unwrap();
    for create in [true, false] {
        for e in both_ends(&mut p, &path, &FifoOptions::new().create(create)) {
            assert!(
                matches!(&e, Error::NulInPath { path: p } if *p == path),
                "{e:?}"
            );
            assert!(e.to_string().contains("cannot hold a NUL byte"), "{e}");
            assert!(e.to_string().contains("in\\0out"), "{e}");
        }
    }
    assert!(
        !dir.path().join("in").exists(),
        "a FIFO was made up to the NUL"
    );
    assert_eq!(p.snapshot().ops_in_flight, 0);
    assert_eq!(p.snapshot().registered_files, 0);
}

#[test]
fn symlink_to_a_fifo_is_refused_unless_followed() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("real");
    mkfifo(&fifo);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let mut p = Proactor::new().unwrap();
    for e in both_ends(&mut p, &link, &FifoOptions::new()) {
        assert!(
            matches!(&e, Error::Symlink { path } if *path == link),
            "{e:?}"
        );
    }
    let rx = p
        .open_receiver(&link, &FifoOptions::new().follow_symlinks(true))
        .unwrap();
    let tx = p
        .open_sender(&link, &FifoOptions::new().follow_symlinks(true))
        .unwrap();
    assert_eq!(p.state(rx).unwrap(), State::Open);
    assert_eq!(p.state(tx).unwrap(), State::Open);
}

#[test]
fn pipe_size_above_the_maximum_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("f");
    let mut p = Proactor::new().unwrap();
    let ok = FifoOptions::new().create(true).pipe_size(1 << 20);
    let rx = p.open_receiver(&fifo, &ok).unwrap();
    assert_eq!(p.set_pipe_size(rx, 256 * 1024).unwrap(), 256 * 1024);
    // Twice the maximum: EPERM without CAP_SYS_RESOURCE, and root is capped
    // by pipe-user-pages-hard or allowed; either way no silent success below.
    let max = ringpipe::pipe_max_size();
    match p.set_pipe_size(rx, usize::MAX / 2) {
        Err(Error::PipeSize {
            requested, max: m, ..
        }) => {
            assert_eq!(requested, usize::MAX / 2);
            assert_eq!(m, max);
        }
        other => panic!("expected PipeSize, got {other:?}"),
    }
}

#[test]
fn pipe_size_below_one_page_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("f");
    let mut p = Proactor::new().unwrap();
    let page = kernel_min_pipe_size();
    for size in [0, 1, page - 1] {
        let opts = FifoOptions::new().create(true).pipe_size(size);
        for e in both_ends(&mut p, &fifo, &opts) {
            assert!(
                matches!(&e, Error::PipeTooSmall { what, requested, min }
                    if *requested == size && *min == page && what.contains("/f")),
                "{e:?}"
            );
            assert!(e.to_string().contains("below one page"), "{e}");
        }
        assert!(!fifo.exists(), "created despite a refused option");
    }
    // One page is the smallest size accepted; at run time too.
    let opts = FifoOptions::new().create(true).pipe_size(page);
    let rx = p.open_receiver(&fifo, &opts).unwrap();
    let tx = p.open_sender(&fifo, &opts).unwrap();
    for t in [rx.token(), tx.token()] {
        match p.set_pipe_size(t, 1) {
            Err(Error::PipeTooSmall { requested: 1, .. }) => {}
            other => panic!("expected PipeTooSmall, got {other:?}"),
        }
    }
    // Above a page, the kernel rounds up to a power of two.
    assert_eq!(p.set_pipe_size(rx, page + 1).unwrap(), 2 * page);
}

/// What the kernel makes of a one-byte pipe: one page.
fn kernel_min_pipe_size() -> usize {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (_r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    fcntl(&w, FcntlArg::F_SETPIPE_SZ(1)).unwrap() as usize
}

const CHILD_ENV: &str = "RINGPIPE_TEST_PERMISSION_CHILD";

/// Without permission on the FIFO itself. Root bypasses file modes, so as
/// root the check runs in a child process of this test binary as `nobody`.
#[test]
fn fifo_without_permission() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        return expect_permission_denied(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let fifo = dir.path().join("f");
    mkfifo(&fifo);
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    if !nix::unistd::geteuid().is_root() {
        return expect_permission_denied(&fifo);
    }
    // A copy nobody can run: the checkout's target/ may be closed to it.
    let (_exe_dir, exe) = exe_for_any_user();
    let child = test_case_command(&exe, "fifo_without_permission")
        .env(CHILD_ENV, &fifo)
        .current_dir("/tmp")
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a child stuck in an open must fail the test, not hang it.
    let child = ChildGuard::new(child).wait_output(Duration::from_secs(30));
    assert!(
        child.status.success() && String::from_utf8_lossy(&child.stdout).contains("1 passed"),
        "child as nobody failed: {}\n{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
}

fn expect_permission_denied(fifo: &Path) {
    let mut p = Proactor::new().unwrap();
    for e in both_ends(&mut p, fifo, &FifoOptions::new()) {
        assert!(
            matches!(&e, Error::PermissionDenied { path, .. } if path == fifo),
            "{e:?}"
        );
        assert_eq!(e.raw_os_error(), Some(libc_eacces()));
    }
    let mut ev = Events::default();
    p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
    assert!(ev.is_empty());
}

fn libc_eacces() -> i32 {
    nix::errno::Errno::EACCES as i32
}

/// `set_pipe_size` on a sender still waiting for its reader refuses a size
/// below one page at once, not later as an error event.
#[test]
fn set_pipe_size_below_one_page_is_refused_while_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let mut p = Proactor::new().unwrap();
    let tx = p
        .open_sender(&path, &FifoOptions::new().create(true))
        .unwrap();
    assert_eq!(p.state(tx).unwrap(), ringpipe::State::Opening);
    assert!(matches!(
        p.set_pipe_size(tx, 1),
        Err(Error::PipeTooSmall { requested: 1, .. })
    ));
    assert_eq!(p.set_pipe_size(tx, 65536).unwrap(), 65536);
}
