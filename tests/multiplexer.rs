//! The example multiplexer, run as a real process between real python3
//! writers and readers: whole lines, none lost or duplicated while writers
//! and readers come and go; routing by prefix; delivery on SIGTERM; a clear
//! refusal of a path that is not a FIFO; a bad frame ending one writer's
//! session, not the input.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A fresh temp dir holding the FIFOs `names`, and the path of the
/// multiplexer's log in it.
fn setup(names: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        mkfifo(&dir.path().join(name));
    }
    let log = dir.path().join("mux.log");
    (dir, log)
}

/// The multiplexer run in `dir` with `args`.
fn multiplexer(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(build_example("multiplexer"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    cmd
}

/// Starts the multiplexer with `args`, its stderr going to `log`.
fn start(args: &[&str], dir: &Path, log: &Path) -> ChildGuard {
    let log = std::fs::File::create(log).unwrap();
    ChildGuard::spawn(
        multiplexer(args, dir)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log)),
    )
}

fn signal(guard: &ChildGuard, sig: Signal) {
    let pid = guard.0.as_ref().unwrap().id();
    kill(Pid::from_raw(pid as i32), sig).unwrap();
}

/// Sends SIGTERM, waits for exit 0, and returns the multiplexer's stderr.
fn stop(guard: ChildGuard, log: &Path) -> String {
    signal(&guard, Signal::SIGTERM);
    exited(guard, log)
}

/// Waits (bounded) for exit 0 and returns the multiplexer's stderr.
fn exited(guard: ChildGuard, log: &Path) -> String {
    let out = guard.wait_output(Duration::from_secs(15));
    let stderr = std::fs::read_to_string(log).unwrap();
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    stderr
}

/// The `read=R delivered=D undelivered=U` figures of the final summary.
fn summary(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("stopped by SIGTERM"))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    let field = |name: &str| -> u64 {
        let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let digits: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().unwrap()
    };
    (field("read"), field("delivered"), field("undelivered"))
}

/// Waits (bounded) until the log has a line containing all of `parts`.
fn wait_for_log(log: &Path, parts: &[&str], limit: Duration) -> String {
    wait_for_line(log, limit, |l| parts.iter().all(|p| l.contains(p)))
}

/// Waits (bounded) until the log has a line for which `ok` holds; returns
/// the latest such line.
fn wait_for_line(log: &Path, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().rev().find(|l| ok(l)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no expected line within {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The line a writer sends as message `seq` of input `w` (without newline):
/// numbered, with filler of varying length so reads cut lines anywhere.
fn line(w: usize, seq: usize) -> String {
    let alpha = "abcdefghijklmnopqrstuvwxyz".repeat(3);
    let off = seq % 26;
    let len = (seq * 7) % 40;
    format!("in{w} {seq:08} {}", &alpha[off..off + len])
}

/// Writes `count` numbered lines to a FIFO in writer sessions of 2000 to
/// 5000 lines: open, write (plain os.write, looping on short writes), close,
/// maybe pause, reopen. Prints the number of sessions. Must match [`line`].
const WRITER_PY: &str = r#"
import os, sys, signal, random, time
path, w, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
signal.alarm(timeout)  # never outlive a stuck test
alpha = b'abcdefghijklmnopqrstuvwxyz' * 3
def line(s):
    off, n = s % 26, (s * 7) % 40
    return b'in%d %08d %s\n' % (w, s, alpha[off:off + n])
rng = random.Random(w)
seq, sessions = 0, 0
while seq < count:
    end = min(count, seq + rng.randint(2000, 5000))
    fd = os.open(path, os.O_WRONLY)
    while seq < end:
        m = min(end - seq, rng.randint(1, 300))
        view = memoryview(b''.join(line(s) for s in range(seq, seq + m)))
        while view:
            view = view[os.write(fd, view):]
        seq += m
    os.close(fd)
    sessions += 1
    if rng.random() < 0.5:
        time.sleep(rng.random() * 0.005)
print(sessions)
"#;

/// One reader session: opens the FIFO, reads with plain os.read, keeping
/// partial lines across reads, until it has at least `want` lines and its
/// data ends at a line end; then closes and saves what it read. `want` 0:
/// open and close at once.
const SESSION_PY: &str = r#"
import os, sys, signal
path, want, out, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
signal.alarm(timeout)
fd = os.open(path, os.O_RDONLY)
buf, lines = bytearray(), 0
while want > 0 and (lines < want or not buf.endswith(b'\n')):
    b = os.read(fd, 65536)
    if not b:
        break
    buf += b
    lines += b.count(b'\n')
os.close(fd)
with open(out, 'wb') as f:
    f.write(buf)
"#;

/// Runs one reader session to its end; returns the lines it read.
fn session(fifo: &Path, want: usize, out: &Path) -> Vec<String> {
    ChildGuard::spawn(&mut python(
        SESSION_PY,
        &[&fifo, &want.to_string(), &out, &"60"],
    ))
    .wait_success(Duration::from_secs(60));
    let data = std::fs::read(out).unwrap();
    assert!(
        data.is_empty() || data.ends_with(b"\n"),
        "a session ended inside a line"
    );
    String::from_utf8(data)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Checks that `lines` holds, for each input `w` in 0..inputs, exactly the
/// lines `line(w, 0..count)`, whole and in order, and nothing else.
fn check_exactly_once(lines: &[String], inputs: usize, count: usize) {
    let mut next = vec![0usize; inputs];
    for l in lines {
        let w: usize = l[2..l.find(' ').unwrap()].parse().unwrap();
        let seq: usize = l[l.find(' ').unwrap() + 1..][..8].parse().unwrap();
        assert_eq!(
            seq, next[w],
            "input {w}: expected line {} next, got {l:?}",
            next[w]
        );
        assert_eq!(*l, line(w, seq), "line damaged");
        next[w] += 1;
    }
    assert_eq!(next, vec![count; inputs], "lines missing");
}

const INPUTS: usize = 4;
const LINES: usize = 100_000;

#[test]
fn four_reconnecting_writers_and_a_reconnecting_reader_lose_and_duplicate_nothing() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        let names: Vec<String> = (0..INPUTS).map(|w| format!("in{w}")).collect();
        let fifos: Vec<&str> = names.iter().map(String::as_str).chain(["out"]).collect();
        let (dir, log) = setup(&fifos);
        let d = dir.path();
        let out = d.join("out");
        let mut args = vec!["--output", "out", "--stats-interval", "0.5"];
        for n in &names {
            args.extend(["--input", n]);
        }
        let mux = start(&args, d, &log);

        let writers: Vec<ChildGuard> = (0..INPUTS)
            .map(|w| {
                let args: [&dyn AsRef<OsStr>; 4] = [
                    &d.join(&names[w]),
                    &w.to_string(),
                    &LINES.to_string(),
                    &"100",
                ];
                ChildGuard::spawn(python(WRITER_PY, &args).stdout(Stdio::piped()))
            })
            .collect();

        // Reader sessions one after another, with gaps without any reader
        // (the multiplexer then holds the output and pushes back).
        let total = INPUTS * LINES;
        let shares = [30_000, 0, 1, 70_000, 5_000, 120_000];
        let mut all: Vec<String> = Vec::new();
        for (i, share) in shares.iter().enumerate() {
            let got = session(&out, *share, &d.join(format!("session{i}")));
            assert!(got.len() >= *share);
            all.extend(got);
            std::thread::sleep(Duration::from_millis(100));
        }
        let rest = total - all.len();
        all.extend(session(&out, rest, &d.join("session_last")));

        let sessions: usize = wait_all(writers, Duration::from_secs(30))
            .iter()
            .map(|s| s.trim().parse::<usize>().unwrap())
            .sum();
        assert!(
            sessions >= INPUTS * 20,
            "writers reconnected {sessions} times"
        );
        check_exactly_once(&all, INPUTS, LINES);

        let stderr = stop(mux, &log);
        // Writers left and came back; the persistent inputs saw it.
        let stats = stderr.lines().rev().find(|l| l.contains("stats")).unwrap();
        let input_reconnects: u64 = stats
            .split(" | ")
            .filter(|seg| seg.starts_with("in "))
            .map(|seg| num_after(seg.rsplit(", ").next().unwrap(), ""))
            .sum();
        assert!(input_reconnects > 0, "{stats}");
        assert_eq!(
            summary(&stderr),
            (total as u64, total as u64, 0),
            "{stderr}"
        );
        assert!(stderr.contains("reader left"), "{stderr}");
        assert!(stderr.contains("reader back"), "{stderr}");
    });
}

/// Writes the lines of a file to a FIFO, each with its own os.write.
const LINES_PY: &str = r#"
import os, sys, signal
signal.alarm(60)
fd = os.open(sys.argv[1], os.O_WRONLY)
for l in open(sys.argv[2], 'rb'):
    os.write(fd, l)
os.close(fd)
"#;

/// Starts a python writer of `text` to the FIFO `fifo`.
fn write_lines(fifo: &Path, text: &str) -> ChildGuard {
    let file = fifo.with_extension("txt");
    std::fs::write(&file, text).unwrap();
    ChildGuard::spawn(&mut python(LINES_PY, &[&fifo, &file]))
}

/// Starts a python reader that prints the first `want` lines of `fifo`.
fn read_lines(fifo: &Path, want: usize) -> ChildGuard {
    ChildGuard::spawn(python(READ_N_PY, &[&fifo, &want.to_string()]).stdout(Stdio::piped()))
}

/// Reads exactly `want` lines with os.read (or fewer at EOF), prints them.
const READ_N_PY: &str = r#"
import os, sys, signal
signal.alarm(60)
path, want = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDONLY)
buf = bytearray()
while buf.count(b'\n') < want:
    b = os.read(fd, 65536)
    if not b:
        break
    buf += b
os.close(fd)
sys.stdout.buffer.write(buf)
"#;

#[test]
fn messages_go_to_the_first_route_whose_prefix_matches() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let (dir, log) = setup(&["a", "b", "out", "err"]);
        let d = dir.path();
        // "never" does not exist yet (--create) and gets no reader: an
        // output nobody needs must not hold anything up.
        let args = [
            "--input",
            "a",
            "--input",
            "b",
            "--output",
            "out",
            "--route",
            "ER=err",
            "--route",
            "ERROR=never",
            "--create",
        ];
        let mux = start(&args, d, &log);
        let kinds = ["ERROR", "ERR", "EVT", "INFO", "E"];
        let mut expect: HashMap<&str, Vec<String>> = HashMap::new();
        let mut writers = Vec::new();
        for input in ["a", "b"] {
            let mut text = String::new();
            for i in 0..5_000 {
                let l = format!("{} {input} {i}", kinds[i % kinds.len()]);
                let route = if l.starts_with("ER") { "err" } else { "out" };
                expect.entry(route).or_default().push(l.clone());
                text += &l;
                text.push('\n');
            }
            writers.push(write_lines(&d.join(input), &text));
        }
        let readers = ["out", "err"].map(|r| read_lines(&d.join(r), expect[r].len()));
        let outs = wait_all(readers.into(), Duration::from_secs(40));
        wait_all(writers, Duration::from_secs(10));
        for (r, got) in ["out", "err"].iter().zip(&outs) {
            // Each input's lines in order; the two inputs interleave freely.
            for input in ["a", "b"] {
                let mine = |l: &&str| l.split(' ').nth(1) == Some(input);
                let got: Vec<&str> = got.lines().filter(mine).collect();
                let want: Vec<&str> = expect[r].iter().map(String::as_str).collect();
                let want: Vec<&str> = want.iter().copied().filter(mine).collect();
                assert_eq!(got, want, "output {r}, input {input}");
            }
            assert_eq!(got.lines().count(), expect[r].len());
        }
        assert!(d.join("never").exists(), "--create made the route's FIFO");
        let stderr = stop(mux, &log);
        assert_eq!(summary(&stderr), (10_000, 10_000, 0), "{stderr}");
    });
}

/// Opens the FIFO, says "open", waits for "go" on stdin, then reads to EOF
/// and prints what it read.
const READ_ON_GO_PY: &str = r#"
import os, sys, signal
signal.alarm(60)
fd = os.open(sys.argv[1], os.O_RDONLY)
print('open', flush=True)
if sys.stdin.readline() != 'go\n':
    sys.exit(3)
buf = bytearray()
while True:
    b = os.read(fd, 65536)
    if not b:
        break
    buf += b
os.close(fd)
sys.stdout.buffer.write(buf)
"#;

#[test]
fn sigterm_delivers_every_message_already_read_then_exits_zero() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let (dir, log) = setup(&["in", "out"]);
        let d = dir.path();
        let args = [
            "--input",
            "in",
            "--output",
            "out",
            "--stats-interval",
            "0.05",
        ];
        let mux = start(&args, d, &log);

        // A reader that is there but does not read yet.
        let mut reader = ChildGuard::spawn(
            python(READ_ON_GO_PY, &[&d.join("out")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        let mut go: ChildStdin = reader.child().stdin.take().unwrap();
        let mut reader_out = BufReader::new(reader.child().stdout.take().unwrap());
        let mut said = String::new();
        reader_out.read_line(&mut said).unwrap();
        assert_eq!(said, "open\n");

        // 2,000 lines of 64 bytes: more than the output pipe holds (64 KiB),
        // so what the multiplexer reads beyond it waits in its queue.
        const N: usize = 2_000;
        let lines: Vec<String> = (0..N).map(|i| format!("{i:063}\n")).collect();
        write_lines(&d.join("in"), &lines.concat()).wait_success(Duration::from_secs(20));
        // Settled: everything read, or reading paused by the full output.
        let stats = wait_for_line(&log, Duration::from_secs(20), |l| {
            l.contains(", reader, ")
                && (l.contains("paused") || l.contains(&format!("in in: {N} msgs")))
        });
        let queued = num_after(&stats, "queue ");
        assert!(queued > 0, "nothing queued at SIGTERM: {stats}");

        signal(&mux, Signal::SIGTERM);
        go.write_all(b"go\n").unwrap();
        drop(go);
        let got = read_all(reader_out, reader);
        let stderr = exited(mux, &log);
        // Everything read reached the reader, in order; what was still in
        // the input pipe at SIGTERM was not read.
        let (read, delivered, undelivered) = summary(&stderr);
        assert!(read as usize > 65536 / 64, "read only {read}: {stderr}");
        assert_eq!((delivered, undelivered), (read, 0), "{stderr}");
        assert!(
            got == lines[..read as usize].concat(),
            "reader got other lines"
        );
    });
}

fn read_all(mut out: BufReader<ChildStdout>, reader: ChildGuard) -> String {
    let mut got = String::new();
    std::io::Read::read_to_string(&mut out, &mut got).unwrap();
    reader.wait_success(Duration::from_secs(20));
    got
}

#[test]
fn a_regular_file_as_input_is_refused_with_exit_code_2_before_anything_opens() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let (dir, _) = setup(&["good"]);
        let d = dir.path();
        let file = d.join("notes.txt");
        std::fs::write(&file, b"not a fifo\n").unwrap();
        let file_arg = file.to_str().unwrap();
        let args = [
            "--input", "good", "--input", file_arg, "--output", "out", "--create",
        ];
        let out = ChildGuard::spawn(
            multiplexer(&args, d)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .wait_output(Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&*file.to_string_lossy()), "{stderr}");
        assert!(stderr.contains("not a FIFO"), "{stderr}");
        assert!(!d.join("out").exists(), "an output was created anyway");
        assert_eq!(std::fs::read(&file).unwrap(), b"not a fifo\n");
    });
}

/// One FIFO under two spellings (`in` and `./in`, or an absolute path) is
/// one FIFO: as an input and an output it would route its messages back to
/// itself forever, and as two inputs two readers would share its lines.
/// Both are refused with exit code 2 before anything opens, for FIFOs that
/// exist and for ones `--create` would make.
#[test]
fn one_fifo_named_two_ways_is_refused_where_it_cannot_serve_twice() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let (dir, _) = setup(&["in", "out"]);
        let d = dir.path();
        let absolute = d.join("in");
        let absolute = absolute.to_str().unwrap();
        let cases: [(&[&str], &str); 4] = [
            (
                &["--input", "in", "--output", "./in"],
                "in: is both an input and an output (as ./in)",
            ),
            (
                &["--input", "in", "--input", absolute, "--output", "out"],
                "given twice as an input (as in)",
            ),
            (
                &["--input", "new", "--output", "./new", "--create"],
                "new: is both an input and an output (as ./new)",
            ),
            // Not a FIFO question, but refused the same way: an interval
            // of 0 would print stats lines without end.
            (
                &["--input", "in", "--output", "out", "--stats-interval", "0"],
                "must be more than 0 seconds",
            ),
        ];
        for (args, want) in cases {
            let out = ChildGuard::spawn(
                multiplexer(args, d)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped()),
            )
            .wait_output(Duration::from_secs(20));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(want), "{args:?}: {stderr}");
        }
        assert!(!d.join("new").exists(), "a refused --create made a FIFO");
    });
}

/// A route to the default output spelled another way (`./out`) shares its
/// sender: with `--sole-writer`, two senders of one FIFO would be refused
/// (they could interleave), so the multiplexer would not start.
#[test]
fn an_output_named_two_ways_has_one_sender() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let (dir, log) = setup(&["in", "out"]);
        let d = dir.path();
        let args = [
            "--input",
            "in",
            "--output",
            "out",
            "--route",
            "R=./out",
            "--sole-writer",
        ];
        let mux = start(&args, d, &log);
        let lines: Vec<String> = (0..2_000)
            .map(|i| format!("{} {i}", if i % 3 == 0 { "R" } else { "other" }))
            .collect();
        let writer = write_lines(&d.join("in"), &(lines.join("\n") + "\n"));
        let reader = read_lines(&d.join("out"), lines.len());
        let got = wait_all(vec![reader], Duration::from_secs(40));
        wait_all(vec![writer], Duration::from_secs(10));
        let got: Vec<&str> = got[0].lines().collect();
        assert_eq!(got, lines, "one sender keeps the input's order");
        let stderr = stop(mux, &log);
        assert_eq!(summary(&stderr), (2_000, 2_000, 0), "{stderr}");
    });
}

/// `t` of a stats line: seconds since the multiplexer started.
fn stats_t(line: &str) -> f64 {
    let at = line
        .find("stats t=")
        .unwrap_or_else(|| panic!("not a stats line: {line}"))
        + "stats t=".len();
    let end = at + line[at..].find('s').unwrap();
    line[at..end].parse().unwrap()
}

/// Waits (bounded) for a stats line, `secs` or more after `since`, that
/// still says the input is paused and the output has no reader.
fn paused_stats_after(log: &Path, since: &str, secs: f64) -> String {
    let t = stats_t(since) + secs;
    wait_for_line(log, Duration::from_secs(20), |l| {
        l.contains("stats t=") && stats_t(l) >= t && l.contains("paused") && l.contains("no reader")
    })
}

/// The number right after the first `marker` in `line`.
fn num_after(line: &str, marker: &str) -> u64 {
    let at = line
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {line}"))
        + marker.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

#[test]
fn a_full_output_pauses_its_input_with_bounded_memory_and_loses_nothing() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let (dir, log) = setup(&["in", "out"]);
        let d = dir.path();
        let args = [
            "--input",
            "in",
            "--output",
            "out",
            "--stats-interval",
            "0.05",
            "--high-watermark",
            "16384",
            "--low-watermark",
            "4096",
        ];
        let mux = start(&args, d, &log);
        // 6 MiB of lines and no reader: far more than the multiplexer may hold.
        const N: usize = 200_000;
        let text: String = (0..N).map(|i| format!("{i:031}\n")).collect();
        let mut writer = write_lines(&d.join("in"), &text);

        let paused = wait_for_log(&log, &["paused", "no reader"], Duration::from_secs(20));
        // A read that completed before the pause took effect still arrives
        // (nothing is lost): compare counters from a line 0.2 s later, then
        // one 0.3 s after that, by the multiplexer's own clock (a sleep here
        // would say nothing when the machine is loaded).
        let first = paused_stats_after(&log, &paused, 0.2);
        let later = paused_stats_after(&log, &first, 0.3);
        for line in [&first, &later] {
            // At most the high watermark plus one write's worth of messages
            // queued, at most the reads in flight when the input paused held.
            let queue = num_after(line, "queue ");
            assert!(queue <= 16384 + 4096, "output queue {queue} B: {line}");
            let held = num_after(&line[line.find(", held ").unwrap()..], " msgs ");
            assert!(held <= 2 * 65536, "held {held} B: {line}");
        }
        // Paused: nothing more was read in the meantime, and the writer waits.
        assert_eq!(
            num_after(&first, "in in: "),
            num_after(&later, "in in: "),
            "read while paused"
        );
        assert!(
            writer.child().try_wait().unwrap().is_none(),
            "writer not held back"
        );

        let got = read_lines(&d.join("out"), N).wait_success(Duration::from_secs(40));
        writer.wait_success(Duration::from_secs(10));
        assert!(got == text, "the reader got every line once, in order");
        let stderr = stop(mux, &log);
        assert_eq!(summary(&stderr), (N as u64, N as u64, 0), "{stderr}");
    });
}

#[test]
fn raw_framing_splices_every_byte_across_writer_and_reader_sessions() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let (dir, log) = setup(&["in", "out"]);
        let d = dir.path();
        let args = ["--input", "in", "--output", "out", "--framing", "raw"];
        let mux = start(&args, d, &log);
        let mut data = vec![0u8; 8 << 20];
        pattern(0, &mut data);
        // Two writer sessions one after the other (the input is persistent).
        let (first, second) = data.split_at(3 << 20);
        std::fs::write(d.join("part1"), first).unwrap();
        std::fs::write(d.join("part2"), second).unwrap();
        let writer = ChildGuard::spawn(
            Command::new("sh")
                .arg("-c")
                .arg("cat part1 > in && cat part2 > in")
                .current_dir(d),
        );
        // Two reader sessions: the first leaves after 5 MiB.
        let mut got = Vec::new();
        for (i, count) in [5 << 20, (8 << 20) - (5 << 20)].into_iter().enumerate() {
            let out = d.join(format!("session{i}"));
            ChildGuard::spawn(&mut python(
                EXACT_READ_PY,
                &[&d.join("out"), &count.to_string(), &out],
            ))
            .wait_success(Duration::from_secs(40));
            got.extend(std::fs::read(&out).unwrap());
        }
        writer.wait_success(Duration::from_secs(10));
        assert!(got == data, "bytes lost, duplicated or reordered");
        let stderr = stop(mux, &log);
        let n = data.len() as u64;
        assert_eq!(summary(&stderr), (n, n, 0), "{stderr}");
    });
}

/// Writes the length-prefixed frames of a file (already encoded) to a FIFO
/// in one os.write each, as given: `argv[2:]` are the files, one write per
/// file. Says "done" when it has closed the FIFO.
const WRITE_FILES_PY: &str = r#"
import os, sys, signal
signal.alarm(60)
fd = os.open(sys.argv[1], os.O_WRONLY)
for name in sys.argv[2:]:
    view = memoryview(open(name, 'rb').read())
    while view:
        view = view[os.write(fd, view):]
os.close(fd)
print('done', flush=True)
"#;

fn length_prefixed(payloads: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// Number of lines of the log containing all of `parts`.
fn count_log_lines(log: &Path, parts: &[&str]) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

#[test]
fn an_oversized_frame_ends_that_writers_session_and_the_input_serves_the_next() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let (dir, log) = setup(&["in", "out"]);
        let d = dir.path();
        let args = ["--input", "in", "--output", "out", "--framing", "length"];
        let mux = start(&args, d, &log);

        // Good frames before a header announcing 1 MB (the maximum is
        // 4092), then bytes of that "frame"; then good writers again.
        let sessions: [(&str, Vec<u8>); 4] = [
            ("bad1", {
                let mut b = length_prefixed(&["before 1", "before 2"]);
                b.extend_from_slice(&1_000_000u32.to_le_bytes());
                b.extend_from_slice(&[7u8; 3000]);
                b
            }),
            ("good1", length_prefixed(&["after 1", "after 2", "after 3"])),
            ("bad2", {
                let mut b = 4_000_000_000u32.to_le_bytes().to_vec();
                b.extend_from_slice(b"junk");
                b
            }),
            ("good2", length_prefixed(&["last"])),
        ];
        let want = length_prefixed(&[
            "before 1", "before 2", "after 1", "after 2", "after 3", "last",
        ]);
        let reader_out = d.join("got");
        let reader = ChildGuard::spawn(&mut python(
            EXACT_READ_PY,
            &[&d.join("out"), &want.len().to_string(), &reader_out],
        ));

        let mut bad = 0;
        for (name, bytes) in &sessions {
            let file = d.join(name);
            std::fs::write(&file, bytes).unwrap();
            // Each writer finishes: none waits forever in open().
            let said = ChildGuard::spawn(
                python(WRITE_FILES_PY, &[&d.join("in"), &file]).stdout(Stdio::piped()),
            )
            .wait_success(Duration::from_secs(20));
            assert_eq!(said, "done\n", "writer {name}");
            if name.starts_with("bad") {
                bad += 1;
                // The input says what happened and reopens before the next
                // writer comes (then its bytes cannot meet this session's).
                let deadline = Instant::now() + Duration::from_secs(20);
                while count_log_lines(&log, &["in: reopened for the next writer"]) < bad {
                    assert!(
                        Instant::now() < deadline,
                        "input not reopened:\n{}",
                        std::fs::read_to_string(&log).unwrap()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        reader.wait_success(Duration::from_secs(20));
        assert_eq!(std::fs::read(&reader_out).unwrap(), want);

        let stderr = stop(mux, &log);
        let named = stderr
            .lines()
            .filter(|l| l.contains("in: frame of") && l.contains("ending this writer's session"))
            .count();
        assert_eq!(named, 2, "{stderr}");
        assert_eq!(summary(&stderr), (6, 6, 0), "{stderr}");
        assert!(stderr.contains("(2 writer sessions ended)"), "{stderr}");
    });
}
