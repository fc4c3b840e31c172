//! The `mux` scenario: 64-byte lines from N writer threads into 4 input
//! FIFOs, routed to one output FIFO by the router under test, read back by
//! this process, which checks that every line arrived exactly once.
//!
//! Routers: `multiplexer` (the ringpipe example, `examples/multiplexer`,
//! found beside this binary), `threads` (the blocking-threads baseline in
//! [`router`], run as `ringpipe-bench mux-threads`) and `direct` (no
//! router: the writers write straight into the output FIFO, the ceiling of
//! the harness). A router is its own process, so its CPU, read from
//! `/proc/PID/stat`, is its own.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::ProgressBar;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::report::{self, Record};
use crate::sys::{self, parse_hex};

pub mod router;

/// Input FIFOs of the router.
pub const INPUTS: usize = 4;
/// Bytes per line, newline included.
pub const LINE: usize = 64;
/// Lines per `write(2)` of a writer (64 KiB).
pub const BLOCK_LINES: usize = 1024;

/// What routes the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Router {
    /// The ringpipe multiplexer example (one proactor thread).
    Multiplexer,
    /// The blocking-threads router (one thread per input).
    Threads,
    /// No router: writers straight into the output FIFO (the ceiling).
    Direct,
}

impl Router {
    pub const ALL: [Router; 3] = [Router::Multiplexer, Router::Threads, Router::Direct];

    /// The name on the command line and in the records.
    pub fn name(self) -> &'static str {
        match self {
            Router::Multiplexer => "multiplexer",
            Router::Threads => "threads",
            Router::Direct => "direct",
        }
    }

    /// What the router is, in a line, for the legend under the tables.
    pub fn describe(self) -> &'static str {
        match self {
            Router::Multiplexer => {
                "(mux) examples/multiplexer, ringpipe's router: one proactor thread, framed \
                 receivers, whole lines out in PIPE_BUF writes"
            }
            Router::Threads => {
                "(mux) the same routing with a blocking thread per input, 64 KiB batches per \
                 write (in the other tables: one blocking thread per FIFO)"
            }
            Router::Direct => "(mux) no router: the writers straight into the output, the ceiling",
        }
    }
}

impl fmt::Display for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `mux` invocation.
#[derive(Debug)]
pub struct Plan {
    pub routers: Vec<Router>,
    pub writers: usize,
    /// Lines per writer.
    pub lines: u64,
    pub runs: usize,
    pub warmup: usize,
    /// Bound on one run, from the router's start to its exit.
    pub timeout: Duration,
    /// This binary (the threads router is `exe mux-threads`).
    pub exe: PathBuf,
    /// The multiplexer example, when it takes part.
    pub multiplexer: Option<PathBuf>,
}

/// The multiplexer example: `given`, else `examples/multiplexer` beside
/// this binary (where cargo puts both), first brought up to date with
/// `cargo build --example multiplexer` in this binary's profile and target
/// directory when the workspace this binary was built from is still
/// there: `cargo run --bin ringpipe-bench` builds only the bench, and a
/// stale example would measure old code. A binary that cannot be found or
/// built is an error naming the cargo command.
pub fn multiplexer(exe: &Path, given: Option<&Path>) -> io::Result<PathBuf> {
    if given.is_none()
        && let Some(build) = build_command(exe)
    {
        eprintln!("building the multiplexer example: {}", build.shown);
        let mut cmd = build.cmd;
        // Cargo's progress and errors go to our stderr as they come.
        match cmd.stdin(Stdio::null()).stdout(Stdio::null()).status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                return Err(io::Error::other(format!(
                    "`{}` failed ({status}): see cargo's messages above",
                    build.shown
                )));
            }
            // No cargo here: a binary built beforehand may still be there.
            Err(_) => {}
        }
    }
    locate_multiplexer(exe, given)
}

/// `cargo build --example multiplexer` for the workspace this binary was
/// built from, into the target directory and profile it runs from, or
/// `None` if that workspace is gone or this binary is not in a cargo
/// target directory (`target/<profile>/ringpipe-bench`).
struct Build {
    cmd: Command,
    shown: String,
}

fn build_command(exe: &Path) -> Option<Build> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("Cargo.toml");
    let profile_dir = exe.parent()?;
    let target = profile_dir.parent()?;
    let profile = profile_dir.file_name()?.to_str()?;
    if !manifest.is_file() || !target.join("CACHEDIR.TAG").is_file() {
        return None;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--example", "multiplexer", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target);
    let flag = match profile {
        "debug" => String::new(),
        "release" => " --release".into(),
        other => format!(" --profile {other}"),
    };
    cmd.args(flag.split_whitespace());
    Some(Build {
        cmd,
        shown: format!("cargo build{flag} --example multiplexer"),
    })
}

/// Finds the multiplexer example: `given`, else `examples/multiplexer`
/// beside this binary. A missing binary is an error that names the cargo
/// command that builds it.
pub fn locate_multiplexer(exe: &Path, given: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(io::Error::other(format!(
                "--multiplexer {}: no such file",
                path.display()
            )))
        };
    }
    let dir = exe.parent().unwrap_or(Path::new("."));
    let path = dir.join("examples").join("multiplexer");
    if path.is_file() {
        return Ok(path);
    }
    let profile = if dir.ends_with("debug") {
        ""
    } else {
        " --release"
    };
    Err(io::Error::other(format!(
        "{} is missing. mux runs the multiplexer example as the router under test: \
         build it with `cargo build{profile} --example multiplexer` \
         (or leave it out: --routers threads,direct)",
        path.display()
    )))
}

/// How long ago `path` was built, for the header (a stale example is
/// easy to measure by mistake: `cargo run --bin` does not rebuild it).
pub fn age(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or_else(
            || "age unknown".into(),
            |d| format!("built {} s ago", d.as_secs()),
        )
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    lines: u64,
    secs: f64,
    /// CPU seconds of the router process over `secs`.
    router_cpu_s: Option<f64>,
}

/// Runs every router `warmup + runs` times, taking turns run by run, and
/// returns one record per router (medians) and the notes.
pub fn measure(
    plan: &Plan,
    dir: &Path,
    pb: &ProgressBar,
) -> io::Result<(Vec<Record>, Vec<String>)> {
    std::fs::create_dir_all(dir)?;
    let ins: Vec<PathBuf> = (0..INPUTS).map(|i| dir.join(format!("in-{i}"))).collect();
    let out = dir.join("out");
    for path in ins.iter().chain([&out]) {
        match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut per_router = vec![Vec::new(); plan.routers.len()];
    let mut checked: Vec<Option<u64>> = vec![None; plan.routers.len()];
    let mut notes = Vec::new();
    for round in 0..plan.warmup + plan.runs {
        for (i, &router) in plan.routers.iter().enumerate() {
            pb.set_message(format!("mux {router}"));
            match run_once(plan, router, &ins, &out) {
                Ok(m) if round >= plan.warmup => {
                    per_router[i].push(metrics(&m));
                    checked[i] = Some(m.lines);
                }
                Ok(_) => {}
                Err(e) => {
                    let n = format!("mux {router}: run failed: {e}");
                    pb.println(&n);
                    notes.push(n);
                }
            }
            pb.inc(1);
        }
    }
    let mut records = Vec::new();
    for ((router, runs), checked) in plan.routers.iter().zip(&per_router).zip(&checked) {
        if runs.is_empty() {
            continue;
        }
        let mut params = std::collections::BTreeMap::new();
        params.insert("inputs".into(), INPUTS.into());
        params.insert("writers".into(), plan.writers.into());
        params.insert("lines_per_writer".into(), plan.lines.into());
        params.insert("line_bytes".into(), LINE.into());
        params.insert("write_bytes".into(), (BLOCK_LINES * LINE).into());
        params.insert("runs".into(), runs.len().into());
        // Lines the reader checked in a run, each exactly once (every run
        // the same, or it failed).
        if let Some(n) = checked {
            params.insert("lines_checked".into(), (*n).into());
        }
        records.push(Record {
            scenario: "mux".into(),
            engine: router.name().into(),
            params,
            metrics: report::medians(runs),
        });
    }
    Ok((records, notes))
}

fn metrics(m: &Measured) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    if m.secs > 0.0 {
        out.insert("lines_per_s".into(), m.lines as f64 / m.secs);
    }
    if let Some(cpu) = m.router_cpu_s.filter(|_| m.lines > 0) {
        out.insert("router_cpu_ns_per_line".into(), cpu * 1e9 / m.lines as f64);
    }
    out
}

/// The router process of one run, killed when dropped if still running.
struct RouterProcess {
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl RouterProcess {
    fn spawn(cmd: &mut Command) -> io::Result<RouterProcess> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = io::Read::read_to_string(&mut e, &mut s);
                s
            })
        });
        Ok(RouterProcess { child, stderr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(why)` if the router has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("router exited ({status}): {}", self.stderr())),
            Ok(None) => None,
            Err(e) => Some(format!("router: {e}")),
        }
    }

    /// Its stderr's last lines (once it has exited).
    fn stderr(&mut self) -> String {
        let all = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" / ")
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    fn stop(mut self, grace: Duration) {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run of `router`. Every wait in it is bounded by `plan.timeout`.
fn run_once(plan: &Plan, router: Router, ins: &[PathBuf], out: &Path) -> Result<Measured, String> {
    let deadline = Instant::now() + plan.timeout;
    // Our read end first, so every router's output open finds a reader.
    // The extra write end keeps the FIFO from reading EOF while no router
    // has it open yet: reads say EAGAIN, and `poll` waits.
    let reader = sys::open_reader_nonblocking(out).map_err(|e| fail("open output", e))?;
    let keep = open(
        out,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open output for writing", e))?;
    let args = |cmd: &mut Command| {
        cmd.arg("--output").arg(out);
        for input in ins {
            cmd.arg("--input").arg(input);
        }
    };
    let mut proc = match router {
        Router::Direct => None,
        Router::Multiplexer => {
            let bin = plan.multiplexer.as_ref().ok_or("no multiplexer binary")?;
            let mut cmd = Command::new(bin);
            args(&mut cmd);
            Some(RouterProcess::spawn(&mut cmd).map_err(|e| fail("spawn multiplexer", e))?)
        }
        Router::Threads => {
            let mut cmd = Command::new(&plan.exe);
            cmd.arg("mux-threads");
            args(&mut cmd);
            Some(RouterProcess::spawn(&mut cmd).map_err(|e| fail("spawn mux-threads", e))?)
        }
    };
    let targets: Vec<PathBuf> = (0..plan.writers)
        .map(|w| match router {
            Router::Direct => out.to_path_buf(),
            _ => ins[w % INPUTS].clone(),
        })
        .collect();

    // Writers open their FIFO (retrying until the router has it open),
    // report, then wait at the gate so every one starts writing at t0.
    let gate = Arc::new(RwLock::new(()));
    let go = gate.write().map_err(|_| "gate poisoned")?;
    let (ready_tx, ready_rx) = mpsc::channel();
    // The first writer error, seen by the reader between reads.
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let mut writers: Vec<JoinHandle<io::Result<()>>> = Vec::with_capacity(plan.writers);
    for (w, path) in targets.into_iter().enumerate() {
        let (gate, ready, lines) = (Arc::clone(&gate), ready_tx.clone(), plan.lines);
        let failure = Arc::clone(&failure);
        let patience = deadline.saturating_duration_since(Instant::now());
        let spawned = std::thread::Builder::new().spawn(move || {
            let fd = open_writer(&path, patience);
            let _ = ready.send(fd.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            let fd = fd?;
            drop(gate.read());
            let wrote = write_lines(&fd, w, lines);
            if let Err(e) = &wrote {
                let mut slot = failure.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert_with(|| format!("writer {w}: {e}"));
            }
            wrote
        });
        match spawned {
            Ok(h) => writers.push(h),
            Err(e) => return Err(fail("spawn writer", e)),
        }
    }
    drop(ready_tx);
    let result = (|| {
        for _ in 0..plan.writers {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(fail("writer open", e)),
                Err(e) => return Err(fail("waiting for the writers to open", e)),
            }
        }
        let pid = proc.as_ref().map(RouterProcess::pid);
        let cpu0 = pid.and_then(sys::cpu_seconds_of);
        let t0 = Instant::now();
        drop(go);
        let mut check = Checker::new(plan.writers, plan.lines);
        read_all(&reader, &mut check, &mut proc, &failure, deadline)?;
        let secs = t0.elapsed().as_secs_f64();
        let cpu1 = pid.and_then(sys::cpu_seconds_of);
        check.finish()?;
        Ok(Measured {
            lines: check.lines_seen(),
            secs,
            router_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        })
    })();
    // Teardown in this order: the router goes, then our ends of the output,
    // so a writer still blocked in write(2) gets EPIPE and returns.
    match proc {
        Some(p) if result.is_ok() => p.stop(Duration::from_secs(5)),
        p => drop(p),
    }
    drop(reader);
    drop(keep);
    let mut failed = None;
    for h in writers {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(fail("writer", e))),
            Err(_) => failed = failed.or(Some("writer panicked".into())),
        }
    }
    let m = result?;
    match failed {
        Some(e) => Err(e),
        None => Ok(m),
    }
}

fn fail(what: &str, e: impl fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Opens a FIFO's write end, waiting up to `patience` for its reader, and
/// makes it blocking.
fn open_writer(path: &Path, patience: Duration) -> io::Result<OwnedFd> {
    let fd = sys::open_writer_nonblocking(path, patience)?;
    sys::set_nonblocking(fd.as_fd(), false)?;
    Ok(fd)
}

/// Reads the output until every line is in, feeding the checker. Between
/// reads it checks that the router is alive and no writer failed.
fn read_all(
    reader: &OwnedFd,
    check: &mut Checker,
    router: &mut Option<RouterProcess>,
    failure: &Mutex<Option<String>>,
    deadline: Instant,
) -> Result<(), String> {
    let total = check.expected_bytes();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    while got < total {
        match sys::read(reader.as_fd(), &mut buf) {
            Ok(n) if n > 0 => {
                check.feed(&buf[..n])?;
                got += n as u64;
                continue;
            }
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(e) => return Err(format!("read output: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("timed out with {got} of {total} bytes read"));
        }
        if let Some(why) = router.as_mut().and_then(RouterProcess::exited) {
            return Err(why);
        }
        if let Some(why) = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(why);
        }
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll output: {e}")),
        }
    }
    Ok(())
}

/// Writes `lines` lines of writer `w`, `BLOCK_LINES` per write.
fn write_lines(fd: &OwnedFd, w: usize, lines: u64) -> io::Result<()> {
    let mut block = vec![0u8; BLOCK_LINES * LINE];
    for line in block.chunks_exact_mut(LINE) {
        template(line, w);
    }
    let mut seq = 0u64;
    while seq < lines {
        let n = (lines - seq).min(BLOCK_LINES as u64) as usize;
        for (k, line) in block.chunks_exact_mut(LINE).take(n).enumerate() {
            put_hex(&mut line[SEQ], seq + k as u64);
        }
        sys::write_all(fd, &block[..n * LINE])?;
        seq += n as u64;
    }
    Ok(())
}

/// Where a line keeps its writer and sequence number, in hex:
/// `wwww ssssssssssssssss ....\n`.
const WRITER: std::ops::Range<usize> = 0..4;
const SEQ: std::ops::Range<usize> = 5..21;

fn template(line: &mut [u8], w: usize) {
    line.fill(b'.');
    put_hex(&mut line[WRITER], w as u64);
    line[WRITER.end] = b' ';
    line[SEQ.end] = b' ';
    line[LINE - 1] = b'\n';
}

fn put_hex(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
    }
}

/// Checks the output stream: whole 64-byte lines, each (writer, sequence)
/// exactly once.
#[derive(Debug)]
pub struct Checker {
    lines: u64,
    /// One bit per line, per writer.
    seen: Vec<Vec<u64>>,
    /// A line cut by the end of a read, completed by the next.
    partial: Vec<u8>,
    bytes: u64,
    count: u64,
}

impl Checker {
    pub fn new(writers: usize, lines: u64) -> Checker {
        let words = lines.div_ceil(64) as usize;
        Checker {
            lines,
            seen: vec![vec![0; words]; writers],
            partial: Vec::with_capacity(LINE),
            bytes: 0,
            count: 0,
        }
    }

    pub fn expected_bytes(&self) -> u64 {
        self.seen.len() as u64 * self.lines * LINE as u64
    }

    pub fn lines_seen(&self) -> u64 {
        self.count
    }

    /// Takes the next bytes of the output.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        if !self.partial.is_empty() {
            let take = (LINE - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < LINE {
                return Ok(());
            }
            let line = std::mem::take(&mut self.partial);
            self.line(&line)?;
            self.partial = line;
            self.partial.clear();
        }
        let mut lines = data.chunks_exact(LINE);
        for line in &mut lines {
            self.line(line)?;
        }
        self.partial.extend_from_slice(lines.remainder());
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> Result<(), String> {
        let at = self.bytes;
        self.bytes += LINE as u64;
        let parsed = (line.get(LINE - 1) == Some(&b'\n'))
            .then(|| parse_hex(&line[WRITER]).zip(parse_hex(&line[SEQ])))
            .flatten();
        let Some((w, seq)) = parsed else {
            let shown = String::from_utf8_lossy(line);
            return Err(format!("byte {at}: not a line of the test: {shown:?}"));
        };
        let word = self
            .seen
            .get_mut(w as usize)
            .filter(|_| seq < self.lines)
            .and_then(|bits| bits.get_mut((seq / 64) as usize))
            .ok_or_else(|| format!("byte {at}: writer {w} line {seq} was never written"))?;
        let bit = 1u64 << (seq % 64);
        if *word & bit != 0 {
            return Err(format!("writer {w} line {seq} arrived twice"));
        }
        *word |= bit;
        self.count += 1;
        Ok(())
    }

    /// Every line of every writer arrived (once: [`Checker::feed`] refused
    /// duplicates).
    pub fn finish(&self) -> Result<(), String> {
        if !self.partial.is_empty() {
            return Err(format!(
                "{} bytes of a cut line at the end",
                self.partial.len()
            ));
        }
        for (w, bits) in self.seen.iter().enumerate() {
            let got: u64 = bits.iter().map(|b| u64::from(b.count_ones())).sum();
            if got != self.lines {
                let first = (0..self.lines)
                    .find(|&s| bits[(s / 64) as usize] & (1 << (s % 64)) == 0)
                    .unwrap_or(0);
                return Err(format!(
                    "writer {w}: {} of {} lines missing (first: line {first})",
                    self.lines - got,
                    self.lines
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(w: usize, seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for s in seqs {
            let mut line = [0u8; LINE];
            template(&mut line, w);
            put_hex(&mut line[SEQ], s);
            out.extend_from_slice(&line);
        }
        out
    }

    #[test]
    fn a_missing_multiplexer_names_the_command_that_builds_it() {
        let msg = |exe: &str| {
            locate_multiplexer(Path::new(exe), None)
                .unwrap_err()
                .to_string()
        };
        let release = msg("/nonexistent/target/release/ringpipe-bench");
        assert!(release.contains("/nonexistent/target/release/examples/multiplexer"));
        assert!(release.contains("`cargo build --release --example multiplexer`"));
        let debug = msg("/nonexistent/target/debug/ringpipe-bench");
        assert!(debug.contains("`cargo build --example multiplexer`"));
    }

    #[test]
    fn line_format() {
        let l = lines_of(10, [255]);
        assert_eq!(&l[..22], b"000a 00000000000000ff ");
        assert_eq!(l.len(), LINE);
        assert_eq!(l[LINE - 1], b'\n');
        assert_eq!(l.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn every_line_once_in_any_cut_and_order() {
        let mut stream = lines_of(1, [2, 0]);
        stream.extend(lines_of(0, 0..3));
        stream.extend(lines_of(1, [1]));
        for cut in [1, 7, 63, 64, 65, 100] {
            let mut c = Checker::new(2, 3);
            for piece in stream.chunks(cut) {
                c.feed(piece).unwrap();
            }
            c.finish().unwrap();
            assert_eq!(c.lines_seen(), 6);
        }
    }

    #[test]
    fn refuses_duplicates_losses_and_garbage() {
        let mut c = Checker::new(1, 2);
        c.feed(&lines_of(0, [0])).unwrap();
        assert!(c.feed(&lines_of(0, [0])).unwrap_err().contains("twice"));

        let mut c = Checker::new(1, 2);
        c.feed(&lines_of(0, [1])).unwrap();
        assert!(c.finish().unwrap_err().contains("1 of 2 lines missing"));

        let mut c = Checker::new(1, 2);
        assert!(c.feed(&lines_of(3, [0])).is_err(), "unknown writer");
        let mut c = Checker::new(1, 2);
        assert!(c.feed(&lines_of(0, [2])).is_err(), "line past the end");
        let mut c = Checker::new(1, 2);
        let mut bad = lines_of(0, [0]);
        bad[LINE - 1] = b'x';
        assert!(c.feed(&bad).is_err(), "no newline");

        let mut c = Checker::new(1, 1);
        c.feed(&lines_of(0, [0])[..10]).unwrap();
        assert!(c.finish().is_err(), "cut line");
    }
}
