//! The README's example is `examples/readme.rs`, byte for byte, and does
//! what the README says: run as a real process between real FIFOs, it
//! holds back its input while its output has no reader, then delivers every
//! byte once a reader comes, and exits 0 when its input's writer is done.

mod common;

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;

/// The built example (see `common::build_example`).
fn example_bin() -> PathBuf {
    build_example("readme")
}

#[test]
fn the_readme_code_is_examples_readme_rs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let fence = "```rust,no_run\n";
    let start = readme.find(fence).expect("a rust block in README.md") + fence.len();
    let len = readme[start..].find("```\n").expect("the block's end");
    let block = &readme[start..start + len];

    let example = std::fs::read_to_string(root.join("examples/readme.rs")).unwrap();
    // The example's header (`//!` lines, then one blank line) is not in the
    // README; everything after it is.
    let body: String = example
        .lines()
        .skip_while(|l| l.starts_with("//!"))
        .skip(1)
        .flat_map(|l| [l, "\n"])
        .collect();
    assert_eq!(block, body, "README.md and examples/readme.rs differ");
}

/// Opens `path` without blocking and makes the fd blocking again.
fn open_blocking(path: &Path, flags: OFlag) -> OwnedFd {
    let fd = nix::fcntl::open(
        path,
        flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let fl = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).unwrap());
    fcntl(&fd, FcntlArg::F_SETFL(fl - OFlag::O_NONBLOCK)).unwrap();
    fd
}

/// Panics with the example's status and stderr if it has exited
/// unsuccessfully.
fn fail_if_failed(child: &mut ChildGuard, when: &str) {
    let Some(c) = child.0.as_mut() else { return };
    if let Some(status) = c.try_wait().unwrap()
        && !status.success()
    {
        let mut stderr = String::new();
        if let Some(mut e) = c.stderr.take() {
            e.read_to_string(&mut stderr).unwrap();
        }
        panic!("the example failed {when}: {status}: {stderr}");
    }
}

/// Joins `thread`, panicking (so that guards drop and kill the example)
/// if it takes longer than `limit`.
fn join_within<T>(thread: std::thread::JoinHandle<T>, limit: Duration) -> T {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    thread.join().unwrap()
}

/// `FifoOptions::new()`'s high watermark, which the example keeps.
const DEFAULT_HIGH_WATERMARK: usize = 64 * 1024;

#[test]
fn the_example_holds_its_input_until_a_reader_comes_then_delivers_all_and_exits_0() {
    watchdog(Duration::from_secs(120), || {
        let bin = example_bin();
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in"), dir.path().join("out"));
        // The example makes both FIFOs itself (create(true)); wait for them.
        let mut child = ChildGuard::new(
            Command::new(&bin)
                .args([&input, &output])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(input.exists() && output.exists()) {
            assert!(Instant::now() < deadline, "the example made no FIFOs");
            std::thread::sleep(Duration::from_millis(10));
        }

        const LEN: usize = 1 << 20;
        let mut data = vec![0u8; LEN];
        pattern(0, &mut data);
        // The input's writer: opens once the example reads, writes 1 MiB,
        // closes. With no reader on the output it cannot finish.
        let writer = open_blocking(&input, OFlag::O_WRONLY);
        let capacity = fcntl(&writer, FcntlArg::F_GETPIPE_SZ).unwrap() as usize;
        let probe = writer.as_fd().try_clone_to_owned().unwrap();
        let (writing, written) = counting_writer(writer, data.clone());

        // No reader on the output: the example takes more than its output
        // queue holds (so `send` has refused it), stops reading its input,
        // whose pipe fills up, and does not fail meanwhile.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            fail_if_failed(&mut child, "without a reader on its output");
            // Read the count first: then `taken` is never more than true.
            let w = written.load(Ordering::SeqCst);
            let in_pipe = pipe_bytes(&probe);
            let taken = w.saturating_sub(in_pipe);
            if in_pipe == capacity && taken > DEFAULT_HIGH_WATERMARK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the example never paused: w={w} in_pipe={in_pipe} cap={capacity}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(probe);
        assert!(!writing.is_finished(), "1 MiB went nowhere");

        // A reader comes: it gets every byte, once, in order, then EOF
        // when the example closes its output after the flush. (A blocking
        // open: opened non-blocking, a read before the example's writer
        // arrives would be an EOF.)
        let output2 = output.clone();
        let reading = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(LEN);
            std::fs::File::open(&output2)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            got
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reading.is_finished() {
            // A failed example never gives the reader its EOF (or a writer).
            fail_if_failed(&mut child, "while its output had a reader");
            assert!(Instant::now() < deadline, "the reader is still reading");
            std::thread::sleep(Duration::from_millis(10));
        }
        let got = reading.join().unwrap();
        join_within(writing, Duration::from_secs(10));
        let out = child.wait_output(Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", out.status);
        assert_eq!(got.len(), LEN, "{stderr}");
        assert!(got == data, "bytes lost, duplicated or reordered");
    });
}
