//! `process::FifoCommand` with real programs: any opening order, inputs and
//! outputs far larger than a pipe, children that exit early or never open
//! their FIFOs, and cleanup (no directory, fd or process left behind).
//!
//! Every test holds `serial()`: the cleanup test counts this process's
//! descriptors, which a test running beside it would disturb.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use ringpipe::process::{FifoCommand, FifoOutput, ProcessError};

const LIMIT: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

fn bytes(offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    pattern(offset, &mut v);
    v
}

fn run(cmd: FifoCommand) -> FifoOutput {
    cmd.timeout(Duration::from_secs(50)).run().unwrap()
}

/// Opens its FIFOs in the order of its arguments (`r:PATH` to read,
/// `w:PATH` to write) with plain blocking opens, then reads every input to
/// the end and writes their concatenation, in argument order, to every
/// output.
const OPEN_IN_ORDER: &str = r#"
import os, sys
fds = [(m, os.open(p, os.O_RDONLY if m == "r" else os.O_WRONLY))
       for m, p in (a.split(":", 1) for a in sys.argv[1:])]
data = bytearray()
for m, fd in fds:
    if m == "r":
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            data += b
for m, fd in fds:
    if m == "w":
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    os.close(fd)
"#;

#[test]
fn output_first_then_input() {
    let _s = serial();
    watchdog(LIMIT, || {
        let input = bytes(0, 3 * MIB);
        let out = run(FifoCommand::new("sh")
            .args(["-c", r#"exec 3>"$1"; cat "$0" >&3"#, "{in:a}", "{out:b}"])
            .input("a", input.clone())
            .output("b"));
        assert!(out.status.success());
        assert!(out.outputs["b"] == input);
        assert!(out.inputs["a"].is_complete());
    });
}

#[test]
fn input_first_then_output() {
    let _s = serial();
    watchdog(LIMIT, || {
        let input = bytes(1, 3 * MIB);
        let out = run(FifoCommand::new("sh")
            .args(["-c", r#"exec 3<"$0"; cat <&3 >"$1""#, "{in:a}", "{out:b}"])
            .input("a", input.clone())
            .output("b"));
        assert!(out.status.success());
        assert!(out.outputs["b"] == input);
    });
}

#[test]
fn two_inputs_opened_in_reverse_order() {
    let _s = serial();
    watchdog(LIMIT, || {
        let (a, b) = (bytes(2, 200_000), bytes(3, 300_000));
        let out = run(FifoCommand::new("sh")
            .args([
                "-c",
                r#"exec 4<"$1"; exec 3<"$0"; cat <&3 >"$2"; cat <&4 >>"$2""#,
                "{in:a}",
                "{in:b}",
                "{out:ab}",
            ])
            .input("a", a.clone())
            .input("b", b.clone())
            .output("ab"));
        assert!(out.status.success());
        assert!(out.outputs["ab"] == [a, b].concat());
    });
}

/// Three FIFOs, two 10 MiB inputs and one output, opened in every order.
#[test]
fn every_opening_order_of_three_fifos_with_10_mib_inputs() {
    let _s = serial();
    watchdog(Duration::from_secs(120), || {
        let (a, b) = (bytes(4, 10 * MIB), bytes(5, 10 * MIB));
        let expected = [a.clone(), b.clone()].concat();
        let orders = [
            ["r:{in:a}", "r:{in:b}", "w:{out:o}"],
            ["r:{in:a}", "w:{out:o}", "r:{in:b}"],
            ["r:{in:b}", "r:{in:a}", "w:{out:o}"],
            ["r:{in:b}", "w:{out:o}", "r:{in:a}"],
            ["w:{out:o}", "r:{in:a}", "r:{in:b}"],
            ["w:{out:o}", "r:{in:b}", "r:{in:a}"],
        ];
        for order in orders {
            let out = run(FifoCommand::new("python3")
                .args(["-c", OPEN_IN_ORDER])
                .args(order)
                .input("a", a.clone())
                .input("b", b.clone())
                .output("o"));
            assert!(out.status.success(), "{order:?}: {:?}", out.status);
            // The script concatenates its inputs in the order it opened them.
            let got = &out.outputs["o"];
            if order.iter().position(|x| x.contains("in:a"))
                < order.iter().position(|x| x.contains("in:b"))
            {
                assert!(*got == expected, "{order:?}: output differs");
            } else {
                assert!(
                    *got == [b.clone(), a.clone()].concat(),
                    "{order:?}: output differs"
                );
            }
            assert!(out.inputs["a"].is_complete() && out.inputs["b"].is_complete());
        }
    });
}

#[test]
fn non_blocking_reader_sees_no_false_eof() {
    // Like gzip: opens the input with O_NONBLOCK and reads at once. With no
    // writer yet that read would be EOF; the sender's end is open already.
    let _s = serial();
    watchdog(LIMIT, || {
        for i in 0..20 {
            let input = bytes(13 + i, 100_000);
            let out = run(FifoCommand::new("python3")
                .args(["-c", NONBLOCKING_CAT_PY, "{in:i}", "{out:o}"])
                .input("i", input.clone())
                .output("o"));
            assert!(out.status.success());
            assert!(
                out.outputs["o"] == input,
                "run {i}: {} bytes",
                out.outputs["o"].len()
            );
        }
    });
}

#[test]
fn ten_mib_through_cat() {
    let _s = serial();
    watchdog(LIMIT, || {
        let input = bytes(6, 10 * MIB);
        let out = run(FifoCommand::new("sh")
            .args(["-c", r#"exec cat "$0" >"$1""#, "{in:in}", "{out:out}"])
            .input("in", input.clone())
            .output("out"));
        assert!(out.status.success());
        assert_eq!(out.outputs["out"].len(), input.len());
        assert!(out.outputs["out"] == input, "bytes differ");
        let report = out.inputs["in"];
        assert_eq!(
            (report.len, report.accepted, report.unsent()),
            (10 * MIB, 10 * MIB, 0)
        );
    });
}

#[test]
fn outputs_reopened_by_the_child_are_collected_whole() {
    let _s = serial();
    watchdog(LIMIT, || {
        // Each `>>` is a new open and close of the FIFO.
        let out = run(FifoCommand::new("sh")
            .args([
                "-c",
                r#"for i in $(seq 1 200); do echo "$i" >>"$0"; done"#,
                "{out:o}",
            ])
            .output("o"));
        let expected: String = (1..=200).map(|i| format!("{i}\n")).collect();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.outputs["o"]), expected);
    });
}

#[test]
fn output_held_by_a_background_process_is_read_to_its_end() {
    let _s = serial();
    watchdog(LIMIT, || {
        // The shell exits at once; its background job, which inherited the
        // open FIFO (opened before the fork, so no race with the exit),
        // writes later.
        let out = run(FifoCommand::new("sh")
            .args([
                "-c",
                r#"exec 3>"$0"; (sleep 0.5; echo late >&3) & exit 0"#,
                "{out:o}",
            ])
            .output("o"));
        assert!(out.status.success());
        assert_eq!(out.outputs["o"], b"late\n");
    });
}

#[test]
fn working_directory_and_environment() {
    let _s = serial();
    watchdog(LIMIT, || {
        let out = run(FifoCommand::new("sh")
            .args(["-c", r#"pwd >"$DEST"; echo "$GREETING" >>"$DEST""#])
            .current_dir("/")
            .env("DEST", "{out:o}")
            .env("GREETING", "hello {in: not a placeholder")
            .output("o"));
        assert!(out.status.success());
        assert_eq!(out.outputs["o"], b"/\nhello {in: not a placeholder\n");
    });
}

#[test]
fn child_that_never_reads_its_input() {
    let _s = serial();
    watchdog(LIMIT, || {
        let out = run(FifoCommand::new("true")
            .arg("{in:x}")
            .input("x", bytes(7, MIB)));
        assert!(out.status.success());
        let report = out.inputs["x"];
        assert_eq!((report.accepted, report.unsent()), (0, MIB));
        assert!(!report.is_complete());
    });
}

#[test]
fn child_that_reads_ten_bytes_and_exits() {
    let _s = serial();
    watchdog(LIMIT, || {
        let input = bytes(8, 4 * MIB);
        let out = run(FifoCommand::new("sh")
            .args([
                "-c",
                r#"head -c 10 "$0" >"$1"; exit 7"#,
                "{in:x}",
                "{out:y}",
            ])
            .input("x", input.clone())
            .output("y"));
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(out.outputs["y"], &input[..10]);
        let report = out.inputs["x"];
        assert!(report.accepted >= 10, "{report:?}");
        assert!(report.unsent() > 0, "{report:?}");
        assert_eq!(report.accepted + report.unsent(), input.len());
    });
}

#[test]
fn child_killed_mid_stream_keeps_its_partial_output() {
    let _s = serial();
    watchdog(LIMIT, || {
        let input = bytes(9, 4 * MIB);
        let out = run(FifoCommand::new("sh")
            .args([
                "-c",
                r#"head -c 100000 "$0" >"$1"; kill -9 $$"#,
                "{in:x}",
                "{out:y}",
            ])
            .input("x", input.clone())
            .output("y"));
        assert_eq!(out.status.signal(), Some(9));
        assert_eq!(out.outputs["y"], &input[..100_000]);
        assert!(out.inputs["x"].unsent() > 0);
    });
}

#[test]
fn child_that_never_opens_its_fifos() {
    let _s = serial();
    watchdog(LIMIT, || {
        let out = run(FifoCommand::new("sh")
            .args(["-c", "exit 3", "{in:i}", "{out:o}", "{out:p}"])
            .input("i", bytes(10, 100))
            .output("o")
            .output("p"));
        assert_eq!(out.status.code(), Some(3));
        assert!(out.outputs["o"].is_empty() && out.outputs["p"].is_empty());
        assert_eq!(out.inputs["i"].unsent(), 100);
    });
}

#[test]
fn empty_input_gives_the_child_eof() {
    let _s = serial();
    watchdog(LIMIT, || {
        let out = run(FifoCommand::new("sh")
            .args(["-c", r#"wc -c <"$0" >"$1""#, "{in:i}", "{out:o}"])
            .input("i", Vec::new())
            .output("o"));
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.outputs["o"]).trim(), "0");
        assert!(out.inputs["i"].is_complete());
    });
}

#[test]
fn pipeline_of_real_tools() {
    let _s = serial();
    watchdog(LIMIT, || {
        let words = "the quick brown fox jumps over the lazy dog The Dog barks\n".repeat(5000);
        let out = run(FifoCommand::new("sh")
            .args([
                "-c",
                // Compress, keep the compressed stream, decompress, count.
                r#"gzip -c <"$0" | tee "$2" | gzip -dc | tr -cs '[:alpha:]' '\n' |
                   tr '[:upper:]' '[:lower:]' | sort | uniq -c | sort -k1,1nr -k2 |
                   head -n 3 >"$1""#,
                "{in:text}",
                "{out:top}",
                "{out:text.gz}",
            ])
            .input("text", words.clone().into_bytes())
            .output("top")
            .output("text.gz"));
        assert!(out.status.success());
        let top: Vec<Vec<String>> = String::from_utf8(out.outputs["top"].clone())
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect();
        assert_eq!(top, [["15000", "the"], ["10000", "dog"], ["5000", "barks"]]);

        // Round trip of the compressed output through a second program.
        let back = run(FifoCommand::new("gzip")
            .args(["-dc", "{in:text.gz}"])
            .stdout(std::fs::File::create("/dev/null").unwrap())
            .input("text.gz", out.outputs["text.gz"].clone())
            .env("OUT", "{out:plain}")
            .output("plain"));
        // gzip wrote to stdout: the declared output stays empty.
        assert!(back.status.success());
        assert!(back.outputs["plain"].is_empty());
        let back = run(FifoCommand::new("sh")
            .args(["-c", r#"gzip -dc "$0" >"$OUT""#, "{in:text.gz}"])
            .env("OUT", "{out:plain}")
            .input("text.gz", out.outputs["text.gz"].clone())
            .output("plain"));
        assert!(back.status.success());
        assert!(back.outputs["plain"] == words.as_bytes());
    });
}

#[test]
fn private_dir_and_fds_are_cleaned_up_whatever_happens() {
    let _s = serial();
    watchdog(LIMIT, || {
        // Warm up once-per-process descriptors (std, io_uring probes).
        let _ = run(FifoCommand::new("true"));
        let fds = open_fds();

        // While running: a 0700 directory holding 0600 FIFOs. The child
        // reports its FIFO's path and modes through that FIFO.
        let out = run(FifoCommand::new("sh")
            .args([
                "-c",
                r#"{ echo "$0"; stat -c '%a %F' "$(dirname "$0")" "$0" "$1"; } >"$0""#,
                "{out:o}",
                "{in:i}",
            ])
            .input("i", b"unread".to_vec())
            .output("o"));
        let text = String::from_utf8(out.outputs["o"].clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1..], ["700 directory", "600 fifo", "600 fifo"]);
        let dir = Path::new(lines[0]).parent().unwrap().to_owned();
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert_eq!(open_fds(), fds, "success leaked descriptors");

        // Early exit, a child killed by a signal, a spawn failure, an
        // unknown placeholder and a timeout: no leftovers either.
        let _ = run(FifoCommand::new("sh")
            .args(["-c", "kill -9 $$", "{in:i}", "{out:o}"])
            .input("i", bytes(11, MIB))
            .output("o"));
        assert_eq!(open_fds(), fds, "early exit leaked descriptors");
        let err = FifoCommand::new("/nonexistent/program")
            .arg("{in:i}")
            .input("i", b"x".to_vec())
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
        assert_eq!(open_fds(), fds, "spawn failure leaked descriptors");
        let err = FifoCommand::new("cat").arg("{in:nope}").run().unwrap_err();
        assert!(
            matches!(err, ProcessError::UnknownPlaceholder { .. }),
            "{err}"
        );

        let err = FifoCommand::new("sh")
            .args([
                "-c",
                r#"echo partial >"$1"; exec sleep 30"#,
                "{in:i}",
                "{out:o}",
            ])
            .input("i", bytes(12, MIB))
            .output("o")
            .timeout(Duration::from_secs(2))
            .run()
            .unwrap_err();
        match err {
            ProcessError::Timeout { partial, .. } => {
                // Killed by the timeout, not waited for: `sleep 30` exiting
                // on its own would be a clean exit, not SIGKILL.
                assert_eq!(partial.status.signal(), Some(9));
                assert_eq!(partial.outputs["o"], b"partial\n");
                assert_eq!(partial.inputs["i"].accepted, 0);
            }
            other => panic!("expected a timeout, got {other}"),
        }
        assert_eq!(open_fds(), fds, "timeout leaked descriptors");
        assert_eq!(leftover_dirs(), Vec::<String>::new());
    });
}

#[test]
fn bad_names_are_refused_before_anything_runs() {
    let _s = serial();
    for (name, why) in [
        ("", "empty"),
        ("a/b", "not a plain file name"),
        ("..", "not a plain file name"),
        ("x}", "contains '}'"),
    ] {
        match FifoCommand::new("true").output(name).run() {
            Err(ProcessError::InvalidName { why: w, .. }) => assert_eq!(w, why),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    let err = FifoCommand::new("true")
        .input("x", Vec::new())
        .output("x")
        .run()
        .unwrap_err();
    assert!(matches!(
        err,
        ProcessError::InvalidName {
            why: "declared twice",
            ..
        }
    ));
    assert_eq!(leftover_dirs(), Vec::<String>::new());
}

/// Voluntary context switches of the calling thread so far: each time it
/// slept in the kernel.
fn voluntary_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// The child's exit is learnt through the ring (its pidfd becomes readable
/// and wakes the one wait), not by waking every few milliseconds to ask:
/// waiting for a child that sleeps half a second costs a handful of sleeps
/// of the calling thread, where a 10 ms check would cost 50.
#[test]
fn a_childs_exit_wakes_the_run_through_the_ring() {
    let _s = serial();
    watchdog(Duration::from_secs(30), || {
        let before = voluntary_switches();
        let out = run(FifoCommand::new("sleep").arg("0.5"));
        let slept = voluntary_switches() - before;
        assert!(out.status.success());
        assert!(
            slept < 20,
            "the run slept {slept} times waiting for its child"
        );
    });
}
