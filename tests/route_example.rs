//! `examples/route.rs` run as a real process between real FIFOs: each line
//! reaches the output its prefix picks, each input's lines in order; an
//! output with no reader pauses the input feeding it, and everything
//! arrives once a reader comes; the example exits 0 once its inputs'
//! writers have closed and its readers have read everything.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;

/// Writes `argv[2]` to the FIFO `argv[1]` in one os.write, then closes it.
const WRITE_PY: &str = r#"
import os, sys, signal
signal.alarm(60)
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, sys.argv[2].encode())
os.close(fd)
"#;

/// `FifoOptions::new()`'s high watermark, which the example keeps.
const DEFAULT_HIGH_WATERMARK: usize = 64 * 1024;

/// A fresh temp dir with the FIFOs `names` in it.
fn fifos(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        mkfifo(&dir.path().join(name));
    }
    dir
}

/// Starts `route ERR matched other INPUTS...` in `dir`.
fn route(dir: &Path, inputs: &[&str]) -> ChildGuard {
    ChildGuard::spawn(
        Command::new(build_example("route"))
            .args(["ERR", "matched", "other"])
            .args(inputs)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

/// `cat fifo > fifo.txt`: a reader to EOF.
fn cat(fifo: &Path) -> ChildGuard {
    let out = std::fs::File::create(fifo.with_extension("txt")).unwrap();
    ChildGuard::spawn(Command::new("cat").arg(fifo).stdout(Stdio::from(out)))
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The lines of `text` that `keep` picks, each with its newline.
fn lines_where(text: &str, keep: impl Fn(&str) -> bool) -> String {
    text.split_inclusive('\n').filter(|l| keep(l)).collect()
}

#[test]
fn each_line_reaches_the_output_its_prefix_picks_then_the_example_exits_0() {
    watchdog(Duration::from_secs(60), || {
        let dir = fifos(&["in1", "in2", "matched", "other"]);
        let d = dir.path();
        let example = route(d, &["in1", "in2"]);
        let readers = [cat(&d.join("matched")), cat(&d.join("other"))];
        // "E" and "warn ERR" do not start with "ERR"; "ERROR" does.
        let kinds = ["ERR", "INFO", "ERROR", "E", "warn ERR"];
        let texts = ["in1", "in2"].map(|input| -> String {
            (0..20)
                .map(|i| format!("{} {input} {i}\n", kinds[i % kinds.len()]))
                .collect()
        });
        let writers: Vec<ChildGuard> = ["in1", "in2"]
            .iter()
            .zip(&texts)
            .map(|(input, text)| ChildGuard::spawn(&mut python(WRITE_PY, &[&d.join(input), text])))
            .collect();
        wait_all(writers, Duration::from_secs(20));
        // Its inputs' writers are gone: the example flushes, closes its
        // outputs (the readers see EOF) and exits.
        wait_all(readers.into(), Duration::from_secs(20));
        example.wait_success(Duration::from_secs(20));

        let (matched, other) = (
            read_text(&d.join("matched.txt")),
            read_text(&d.join("other.txt")),
        );
        for (input, text) in ["in1", "in2"].iter().zip(&texts) {
            // The two inputs interleave freely; each one's lines keep their order.
            let mine = |l: &str| l.split(' ').any(|w| w == *input);
            assert_eq!(
                lines_where(&matched, mine),
                lines_where(text, |l| l.starts_with("ERR")),
                "matched, {input}"
            );
            assert_eq!(
                lines_where(&other, mine),
                lines_where(text, |l| !l.starts_with("ERR")),
                "other, {input}"
            );
        }
        assert_eq!(matched.lines().count() + other.lines().count(), 40);
    });
}

/// Opens the write end of `fifo` once the example has its read end open
/// (a non-blocking open fails with ENXIO until then), then makes it
/// blocking. Panics if the example exits or 20 s pass first.
fn open_writer(fifo: &Path, example: &mut ChildGuard) -> OwnedFd {
    let deadline = Instant::now() + Duration::from_secs(20);
    let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = loop {
        match nix::fcntl::open(fifo, flags, Mode::empty()) {
            Ok(fd) => break fd,
            Err(Errno::ENXIO) => {
                fail_if_exited(example);
                assert!(
                    Instant::now() < deadline,
                    "the example never read its input"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{}: {e}", fifo.display()),
        }
    };
    let fl = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).unwrap());
    fcntl(&fd, FcntlArg::F_SETFL(fl - OFlag::O_NONBLOCK)).unwrap();
    fd
}

fn fail_if_exited(example: &mut ChildGuard) {
    if let Some(status) = example.child().try_wait().unwrap() {
        panic!("the example exited early: {status}");
    }
}

#[test]
fn an_output_without_a_reader_pauses_its_input_until_a_reader_comes() {
    watchdog(Duration::from_secs(120), || {
        let dir = fifos(&["in", "matched", "other"]);
        let d = dir.path();
        let mut example = route(d, &["in"]);
        let other = cat(&d.join("other"));
        // 40-byte lines, 1.25 MiB, far more than the example may hold; the
        // last few go to `other`.
        const LINES: usize = 32 * 1024;
        const LINE: usize = 40;
        let text: String = (0..LINES)
            .map(|i| match i < LINES - 10 {
                true => format!("ERR {i:035}\n"),
                false => format!("INFO {i:034}\n"),
            })
            .collect();
        assert_eq!(text.len(), LINES * LINE);

        let writer = open_writer(&d.join("in"), &mut example);
        let capacity = fcntl(&writer, FcntlArg::F_GETPIPE_SZ).unwrap() as usize;
        let probe = writer.as_fd().try_clone_to_owned().unwrap();
        let (writing, written) = counting_writer(writer, text.clone().into_bytes());

        // No reader on `matched`: the example takes more than its output
        // queue holds (so the output refused a line) and stops reading its
        // input, whose pipe fills up.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            fail_if_exited(&mut example);
            // The count first: then `taken` is never more than true.
            let w = written.load(Ordering::SeqCst);
            let in_pipe = pipe_bytes(&probe);
            let taken = w.saturating_sub(in_pipe);
            if in_pipe == capacity && taken > DEFAULT_HIGH_WATERMARK + LINE {
                break;
            }
            assert!(Instant::now() < deadline, "the example never paused");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(probe);
        assert!(!writing.is_finished(), "1.25 MiB went nowhere");

        // A reader comes: the output drains, `Writable` resumes the input.
        let matched = cat(&d.join("matched"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !writing.is_finished() {
            fail_if_exited(&mut example);
            assert!(Instant::now() < deadline, "the writer is still writing");
            std::thread::sleep(Duration::from_millis(10));
        }
        writing.join().unwrap();
        wait_all(vec![matched, other], Duration::from_secs(30));
        example.wait_success(Duration::from_secs(20));
        let got = read_text(&d.join("matched.txt"));
        assert!(
            got == lines_where(&text, |l| l.starts_with("ERR")),
            "matched: lines lost, duplicated or reordered"
        );
        assert_eq!(
            read_text(&d.join("other.txt")),
            lines_where(&text, |l| l.starts_with("INFO"))
        );
    });
}
