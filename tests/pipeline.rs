//! `process::Pipeline`: two or three real programs joined by FIFOs, every
//! order in which they open their files, streams far larger than a pipe,
//! programs that leave early on either side of a link, and the typed
//! refusals of bad pipelines.
//!
//! Every test holds `serial()`: the cleanup test counts this process's
//! descriptors, which a test running beside it would disturb.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use common::*;
use ringpipe::process::{FifoCommand, Pipeline, PipelineOutput, ProcessError};

const LIMIT: Duration = Duration::from_secs(90);
const MIB: usize = 1 << 20;

fn bytes(offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    pattern(offset, &mut v);
    v
}

/// `sh -c script` with `args` after it (`$0`, `$1`...).
fn sh(script: &str, args: &[&str]) -> FifoCommand {
    FifoCommand::new("sh").args(["-c", script]).args(args)
}

fn run(pipeline: Pipeline) -> PipelineOutput {
    pipeline.timeout(Duration::from_secs(60)).run().unwrap()
}

/// Every order of `items`.
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

/// Lines that open the files named by positional parameters in `order`:
/// `(fd, "<" or ">", n)` opens `$n` on `fd`, blocking as the shell does.
fn opens(order: &[(u8, &str, u8)]) -> String {
    order
        .iter()
        .map(|(fd, dir, n)| format!("exec {fd}{dir}\"${n}\"\n"))
        .collect()
}

fn exited(status: &ExitStatus, code: i32) -> bool {
    status.code() == Some(code)
}

#[test]
fn every_open_order_of_both_programs() {
    let _s = serial();
    watchdog(Duration::from_secs(240), || {
        // The seed case: asm in.asm -o mid; link mid -o gb -m map -n sym.
        let input = bytes(1, 256 * 1024);
        let asm = [(3, "<", 0), (4, ">", 1)];
        let link = [(3, "<", 0), (4, ">", 1), (5, ">", 2), (6, ">", 3)];
        for asm_order in permutations(&asm) {
            for link_order in permutations(&link) {
                let a = opens(&asm_order) + "cat <&3 >&4\n";
                let b = opens(&link_order) + "cat <&3 >&4; echo map >&5; echo sym >&6\n";
                let out = run(Pipeline::new()
                    .command(
                        sh(&a, &["{in:in.asm}", "{out:mid}"])
                            .input("in.asm", input.clone())
                            .output("mid"),
                    )
                    .command(
                        sh(&b, &["{in:mid}", "{out:gb}", "{out:map}", "{out:sym}"])
                            .piped_input("mid")
                            .output("gb")
                            .output("map")
                            .output("sym"),
                    ));
                let case = format!("asm {asm_order:?}, link {link_order:?}");
                assert!(out.success(), "{case}: {out:?}");
                assert!(out.outputs["gb"] == input, "{case}: {out:?}");
                assert_eq!(out.outputs["map"], b"map\n", "{case}");
                assert_eq!(out.outputs["sym"], b"sym\n", "{case}");
                assert!(!out.outputs.contains_key("mid"), "{case}");
                assert!(out.inputs["in.asm"].is_complete(), "{case}");
                assert_eq!(out.links["mid"].relayed, input.len(), "{case}");
                assert!(out.links["mid"].complete, "{case}");
            }
        }
    });
}

#[test]
fn ten_mib_through_a_chain_of_three_exactly() {
    let _s = serial();
    watchdog(LIMIT, || {
        let input = bytes(2, 10 * MIB);
        let out = run(Pipeline::new()
            .command(
                sh(r#"cat "$0" > "$1""#, &["{in:in}", "{out:a}"])
                    .input("in", input.clone())
                    .output("a"),
            )
            .command(
                sh(r#"tr a-z A-Z < "$0" > "$1""#, &["{in:a}", "{out:b}"])
                    .env("LC_ALL", "C")
                    .piped_input("a")
                    .output("b"),
            )
            .command(
                sh(r#"cat "$0" > "$1""#, &["{in:b}", "{out:out}"])
                    .piped_input("b")
                    .output("out"),
            ));
        assert!(out.success(), "{out:?}");
        let expected: Vec<u8> = input.iter().map(u8::to_ascii_uppercase).collect();
        assert_eq!(out.outputs["out"].len(), expected.len());
        assert!(out.outputs["out"] == expected, "bytes differ");
        assert!(out.inputs["in"].is_complete());
        for link in ["a", "b"] {
            assert_eq!(out.links[link].relayed, input.len(), "{link}");
            assert!(out.links[link].complete, "{link}");
        }
    });
}

#[test]
fn a_writer_that_exits_without_opening_its_output_gives_eof() {
    let _s = serial();
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        // The reader opens its output, then its input; its output on an fd
        // of its own; or only once the writer has exited: it waits until
        // the writer's pid (left in `$2`) is gone or a zombie.
        for (i, b) in [
            r#"cat "$0" > "$1""#,
            r#"exec 4>"$1"; cat "$0" >&4"#,
            r#"until [ -s "$2" ]; do sleep 0.01; done; w=$(cat "$2")
               while [ -d /proc/$w ] && [ "$(cut -d' ' -f3 /proc/$w/stat)" != Z ]; do
                   sleep 0.01
               done
               cat "$0" > "$1""#,
        ]
        .into_iter()
        .enumerate()
        {
            let pid_file = dir.path().join(format!("writer{i}.pid"));
            let pid_file = pid_file.to_str().unwrap();
            let out = run(Pipeline::new()
                .command(
                    sh(
                        r#"echo $$ > "$2"; exit 3"#,
                        &["{in:in}", "{out:mid}", pid_file],
                    )
                    .input("in", bytes(3, MIB))
                    .output("mid"),
                )
                .command(
                    sh(b, &["{in:mid}", "{out:out}", pid_file])
                        .piped_input("mid")
                        .output("out"),
                ));
            assert!(exited(&out.statuses[0], 3), "{out:?}");
            assert!(out.statuses[1].success(), "{out:?}");
            assert_eq!(out.outputs["out"], b"");
            assert!(!out.inputs["in"].is_complete(), "{out:?}");
            assert_eq!(out.links["mid"].relayed, 0);
            assert!(out.links["mid"].complete);
        }
    });
}

#[test]
fn a_writer_killed_mid_stream_gives_its_reader_what_it_wrote_then_eof() {
    let _s = serial();
    watchdog(LIMIT, || {
        let input = bytes(4, 4 * MIB);
        let out = run(Pipeline::new()
            .command(
                sh(
                    r#"head -c 300000 "$0" > "$1"; kill -9 $$"#,
                    &["{in:in}", "{out:mid}"],
                )
                .input("in", input.clone())
                .output("mid"),
            )
            .command(
                sh(r#"cat "$0" > "$1""#, &["{in:mid}", "{out:out}"])
                    .piped_input("mid")
                    .output("out"),
            ));
        assert_eq!(out.statuses[0].signal(), Some(9), "{out:?}");
        assert!(out.statuses[1].success(), "{out:?}");
        assert!(out.outputs["out"] == input[..300_000], "{out:?}");
        assert_eq!(out.links["mid"].relayed, 300_000);
        assert!(out.links["mid"].complete);
    });
}

#[test]
fn a_writer_that_reopens_its_output_is_relayed_whole() {
    let _s = serial();
    watchdog(LIMIT, || {
        let out = run(Pipeline::new()
            .command(
                sh(
                    r#"printf abc > "$0"; sleep 0.2; printf def > "$0"; printf ghi > "$0""#,
                    &["{out:mid}"],
                )
                .output("mid"),
            )
            .command(
                sh(r#"cat "$0" > "$1""#, &["{in:mid}", "{out:out}"])
                    .piped_input("mid")
                    .output("out"),
            ));
        assert!(out.success(), "{out:?}");
        assert_eq!(out.outputs["out"], b"abcdefghi");
        assert_eq!(out.links["mid"].relayed, 9);
        assert!(out.links["mid"].complete);
    });
}

#[test]
fn a_non_blocking_reader_sees_no_false_eof_before_its_writer_writes() {
    let _s = serial();
    watchdog(LIMIT, || {
        for _ in 0..10 {
            let out = run(Pipeline::new()
                .command(sh(r#"sleep 0.1; printf hello > "$0""#, &["{out:mid}"]).output("mid"))
                .command(
                    FifoCommand::new("python3")
                        .args(["-c", NONBLOCKING_CAT_PY, "{in:mid}", "{out:out}"])
                        .piped_input("mid")
                        .output("out"),
                ));
            assert!(out.success(), "{out:?}");
            assert_eq!(out.outputs["out"], b"hello");
            assert!(out.links["mid"].complete);
        }
    });
}

#[test]
fn a_reader_that_exits_without_opening_its_input_ends_the_writer() {
    let _s = serial();
    watchdog(LIMIT, || {
        // The writer opens its output before its input, after, and (most
        // likely) after the reader has exited: then the open fails, and a
        // shell's `>` must not create a file in the FIFO's place.
        for a in [
            r#"cat "$0" > "$1""#,
            r#"exec 4>"$1"; cat "$0" >&4"#,
            r#"sleep 0.5; cat "$0" > "$1""#,
        ] {
            let out = run(Pipeline::new()
                .command(
                    sh(a, &["{in:in}", "{out:mid}"])
                        .input("in", bytes(5, 10 * MIB))
                        .output("mid"),
                )
                .command(
                    sh("exit 4", &["{in:mid}", "{out:out}"])
                        .piped_input("mid")
                        .output("out"),
                ));
            // The writer met a FIFO without reader (SIGPIPE) or could not
            // open it any more (exit status 1 or 2): either way it failed
            // and the run ended.
            assert!(!out.statuses[0].success(), "{out:?}");
            assert!(exited(&out.statuses[1], 4), "{out:?}");
            assert_eq!(out.outputs["out"], b"");
            assert!(!out.inputs["in"].is_complete(), "{out:?}");
            assert!(!out.links["mid"].complete);
        }
    });
}

#[test]
fn a_reader_that_leaves_early_gets_its_share_and_the_writer_its_sigpipe() {
    let _s = serial();
    watchdog(LIMIT, || {
        let input = bytes(6, 10 * MIB);
        let out = run(Pipeline::new()
            .command(
                sh(r#"cat "$0" > "$1""#, &["{in:in}", "{out:mid}"])
                    .input("in", input.clone())
                    .output("mid"),
            )
            .command(
                sh(r#"head -c 1000 "$0" > "$1""#, &["{in:mid}", "{out:out}"])
                    .piped_input("mid")
                    .output("out"),
            ));
        // Killed by SIGPIPE, as reported by sh (128 + 13) or not.
        let sigpipe = out.statuses[0].signal() == Some(libc::SIGPIPE)
            || exited(&out.statuses[0], 128 + libc::SIGPIPE);
        assert!(sigpipe, "the writer's reader left: {out:?}");
        assert!(out.statuses[1].success(), "{out:?}");
        assert!(out.outputs["out"] == input[..1000], "{out:?}");
        assert!(out.links["mid"].relayed >= 1000);
        assert!(!out.links["mid"].complete);
        assert!(!out.inputs["in"].is_complete(), "{out:?}");
    });
}

/// A two-program pipeline `cat in > mid; cat mid > out`, `a` and `b` as
/// the programs.
fn two(a: FifoCommand, b: FifoCommand) -> Pipeline {
    Pipeline::new().command(a).command(b)
}

#[test]
fn bad_pipelines_are_refused_before_anything_runs() {
    let _s = serial();
    watchdog(LIMIT, || {
        let fds = open_fds();
        let err = Pipeline::new().run().unwrap_err();
        assert!(matches!(err, ProcessError::EmptyPipeline), "{err}");

        // A piped input nobody writes, in a pipeline or alone.
        let err = two(
            sh(":", &["{out:mid}"]).output("mid"),
            sh(":", &["{in:mdi}"]).piped_input("mdi"),
        )
        .run()
        .unwrap_err();
        match &err {
            ProcessError::UnknownLink { program, name } => {
                assert_eq!((program.as_str(), name.as_str()), ("sh", "mdi"));
            }
            other => panic!("expected UnknownLink, got {other}"),
        }
        assert_eq!(
            err.to_string(),
            r#"sh: piped input "mdi" is no other program's output"#
        );
        let err = FifoCommand::new("cat")
            .arg("{in:x}")
            .piped_input("x")
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcessError::UnknownLink { .. }), "{err}");

        // An output written twice, read twice, or also a caller's input.
        let clashes = [
            (
                FifoCommand::new("a").output("x"),
                FifoCommand::new("b").output("x"),
            ),
            (
                FifoCommand::new("a").input("x", vec![1]),
                FifoCommand::new("b").output("x"),
            ),
            (
                FifoCommand::new("a").piped_input("x"),
                FifoCommand::new("b").input("x", vec![1]),
            ),
        ];
        for (a, b) in clashes {
            match two(a, b).run().unwrap_err() {
                ProcessError::NameClash {
                    name,
                    first,
                    second,
                } => {
                    assert_eq!((&*name, &*first, &*second), ("x", "a", "b"));
                }
                other => panic!("expected NameClash, got {other}"),
            }
        }
        let err = Pipeline::new()
            .command(FifoCommand::new("a").output("x"))
            .command(FifoCommand::new("b").piped_input("x"))
            .command(FifoCommand::new("c").piped_input("x"))
            .run()
            .unwrap_err();
        assert!(
            matches!(&err, ProcessError::NameClash { second, .. } if second == "c"),
            "{err}"
        );

        // A cycle: a -> x -> b -> y -> a, with c outside it.
        let err = Pipeline::new()
            .command(FifoCommand::new("c").output("z"))
            .command(
                FifoCommand::new("a")
                    .piped_input("y")
                    .piped_input("z")
                    .output("x"),
            )
            .command(FifoCommand::new("b").piped_input("x").output("y"))
            .run()
            .unwrap_err();
        match &err {
            ProcessError::Cycle { names } => assert_eq!(names, &["x", "y"]),
            other => panic!("expected Cycle, got {other}"),
        }
        assert_eq!(err.to_string(), "the piped FIFOs x -> y form a cycle");
        // A program reading its own output: a name declared twice.
        let err = FifoCommand::new("a")
            .output("x")
            .piped_input("x")
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcessError::InvalidName { .. }), "{err}");
        assert_eq!(open_fds(), fds);
        assert_eq!(leftover_dirs(), Vec::<String>::new());
    });
}

#[test]
fn a_program_that_cannot_start_stops_those_started() {
    let _s = serial();
    watchdog(LIMIT, || {
        let _ = run(Pipeline::new().command(FifoCommand::new("true")));
        let fds = open_fds();
        // The first program would run for a minute and hold its FIFOs.
        let err = two(
            sh(r#"exec 3>"$0"; sleep 60"#, &["{out:mid}"]).output("mid"),
            FifoCommand::new("/nonexistent/program")
                .arg("{in:mid}")
                .piped_input("mid"),
        )
        .run()
        .unwrap_err();
        match &err {
            ProcessError::Spawn { program, .. } => assert_eq!(program, "/nonexistent/program"),
            other => panic!("expected Spawn, got {other}"),
        }
        assert_eq!(open_fds(), fds, "descriptors leaked");
        assert_eq!(leftover_dirs(), Vec::<String>::new());
    });
}

#[test]
fn a_timeout_kills_every_program_and_keeps_what_came() {
    let _s = serial();
    watchdog(LIMIT, || {
        let fds = open_fds();
        let err = two(
            sh(r#"printf abc > "$0"; exec sleep 60"#, &["{out:mid}"]).output("mid"),
            sh(r#"cat "$0" > "$1""#, &["{in:mid}", "{out:out}"])
                .piped_input("mid")
                .output("out"),
        )
        .timeout(Duration::from_secs(5))
        .run()
        .unwrap_err();
        match err {
            ProcessError::PipelineTimeout {
                pipeline, partial, ..
            } => {
                assert_eq!(pipeline, "sh | sh");
                // `sleep` killed, not exited on its own.
                assert_eq!(partial.statuses[0].signal(), Some(9), "{partial:?}");
                // The reader waits for EOF that never came: killed too.
                assert_eq!(partial.statuses[1].signal(), Some(9), "{partial:?}");
                assert_eq!(partial.links["mid"].relayed, 3);
                assert!(!partial.links["mid"].complete);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(open_fds(), fds, "descriptors leaked");
        assert_eq!(leftover_dirs(), Vec::<String>::new());
    });
}
