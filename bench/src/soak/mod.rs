//! `ringpipe-bench soak`: the multiplexer example and a hub, each its own
//! process, for minutes under chaos: writer sessions that come and go,
//! several at a time on one FIFO, some SIGKILLed mid-session; readers
//! SIGKILLed or leaving and coming back; sessions that end with a unit too
//! long to take or in the middle of one. Every unit of every session is
//! accounted for ([`check`]), and the router's RSS, open fds and threads
//! are sampled from `/proc`, at a quiet moment after a warm-up and at the
//! same quiet moment at the end.
//!
//! Each writer and reader session is a process ([`writer`], [`reader`]),
//! so a SIGKILL is a real one. A session that ends badly has its FIFO to
//! itself: the router ends or reopens that input, which would take other
//! writers' bytes with it (documented behaviour, not the soak's subject);
//! the next session on that input starts once the router has said so on
//! stderr.

pub mod check;
pub mod hub;
pub mod reader;
pub mod writer;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use check::{Checker, Fate, Routing, Tally};
use writer::{Ending, Wire};

/// Options of `ringpipe-bench soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long the chaos lasts, in minutes.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// How long the chaos lasts, in seconds (instead of --minutes).
    #[arg(long)]
    seconds: Option<f64>,
    /// The seed of every random choice (default: from the clock). Printed,
    /// so a run's choices can be made again.
    #[arg(long)]
    seed: Option<u64>,
    /// What to soak, comma separated.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [Target::Multiplexer, Target::Hub])]
    targets: Vec<Target>,
}

/// A router under soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// examples/multiplexer: 3 input FIFOs, lines, routed by their first
    /// letter to 2 outputs.
    Multiplexer,
    /// A `ringpipe::hub::Hub` (`ringpipe-bench soak-hub`): 1 source FIFO,
    /// length-prefixed frames, to 2 subscribers.
    Hub,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Multiplexer => "multiplexer",
            Target::Hub => "hub",
        }
    }
}

/// Seconds between status lines on stderr.
const STATUS_EVERY: u64 = 10;

/// RSS and pinned memory (KiB), open fds and threads of a process, from
/// `/proc`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    pub rss_kib: u64,
    /// `VmPin`: registered buffers, a fixed pool the library registers at
    /// its first use (a step in RSS, once, whenever that comes).
    pub pinned_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

impl Sample {
    /// RSS less the pinned pool: what a leak would grow.
    fn unpinned_kib(&self) -> u64 {
        self.rss_kib.saturating_sub(self.pinned_kib)
    }
}

fn sample(pid: u32) -> Option<Sample> {
    let [rss, pinned, threads] = crate::sys::status_fields(pid, ["VmRSS:", "VmPin:", "Threads:"]);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        rss_kib: rss?,
        pinned_kib: pinned.unwrap_or(0),
        fds,
        threads: threads?,
    })
}

/// What a process's open fds are, counted by kind (a path, `pipe`,
/// `anon_inode:[io_uring]`...): said when the count changed.
fn fd_kinds(pid: u32) -> String {
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            let target = std::fs::read_link(e.path()).map_or("?".into(), |t| {
                let t = t.display().to_string();
                // pipe:[1234] and the like: the kind, not the inode.
                match t.split_once(":[") {
                    Some((kind, n)) if n.trim_end_matches(']').parse::<u64>().is_ok() => {
                        kind.to_string()
                    }
                    _ => t,
                }
            });
            *kinds.entry(target).or_default() += 1;
        }
    }
    let all: Vec<String> = kinds.into_iter().map(|(k, n)| format!("{n} {k}")).collect();
    all.join(", ")
}

/// What one target's soak found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub target: Target,
    pub seconds: f64,
    pub seed: u64,
    #[serde(flatten)]
    pub tally: Tally,
    pub writer_kills: u64,
    pub reader_kills: u64,
    pub reader_sessions: u64,
    pub too_long_sessions: u64,
    pub cut_sessions: u64,
    /// At a quiet moment after the warm-up, halfway through the chaos, at
    /// the same quiet moment at the end; the most over the run.
    pub start: Sample,
    pub mid: Sample,
    pub end: Sample,
    pub max: Sample,
    /// Whether the second half of the run grew RSS (the pinned pool left
    /// out) by less than [`RSS_SLACK_KIB`]; not judged on runs shorter
    /// than [`RSS_TREND_SECS`].
    pub rss_flat: Option<bool>,
    /// Whether fds and threads ended no higher than they were at the start
    /// or halfway (things opened once, when first needed, are there by
    /// then; a leak keeps growing).
    pub fds_flat: bool,
    pub threads_flat: bool,
    /// The router's fds at the start and the end, by kind, when their
    /// numbers differ.
    pub fds_changed: Option<[String; 2]>,
    pub failures: Vec<String>,
}

/// RSS the second half of a run may add: the allocator keeps what a busy
/// moment took (queues held while a reader was away).
pub const RSS_SLACK_KIB: u64 = 1024;

/// The shortest chaos whose RSS trend is judged: a few seconds are the
/// allocator's warm-up, nothing more.
pub const RSS_TREND_SECS: f64 = 60.0;

impl Report {
    fn flat(&self) -> bool {
        self.rss_flat != Some(false) && self.fds_flat && self.threads_flat
    }

    fn ok(&self) -> bool {
        let t = &self.tally;
        self.failures.is_empty() && self.flat() && t.lost + t.duplicated + t.corrupt == 0
    }
}

/// Runs the soak; fails if a unit was lost, repeated or corrupt, a
/// resource grew, or anything broke.
pub fn run(
    args: &SoakArgs,
    multiplexer: Option<&Path>,
    dir: Option<&Path>,
    json: Option<&Path>,
) -> io::Result<()> {
    let seconds = args.seconds.unwrap_or(args.minutes * 60.0);
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let exe = std::env::current_exe()?;
    let router = |t: Target| -> io::Result<(PathBuf, Vec<String>)> {
        match t {
            Target::Multiplexer => Ok((crate::mux::multiplexer(&exe, multiplexer)?, Vec::new())),
            Target::Hub => Ok((exe.clone(), vec!["soak-hub".into()])),
        }
    };
    let root = dir.map_or_else(crate::own::fifo_root, Path::to_path_buf);
    let base = root.join(format!("ringpipe-soak-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    println!(
        "soak: {seconds} s of chaos, seed {seed} (--seed {seed} makes the same choices), in {}",
        base.display()
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let result = (|| -> io::Result<Vec<Report>> {
        let mut harnesses = Vec::new();
        for &t in &args.targets {
            let (bin, pre) = router(t)?;
            harnesses.push(Harness::start(t, &bin, &pre, &exe, &base.join(t.name()))?);
        }
        let mut failures: Vec<Vec<String>> = vec![Vec::new(); harnesses.len()];
        let record = |failures: &mut Vec<Vec<String>>, i: usize, r: Result<(), String>| {
            if let Err(e) = r {
                failures[i].push(e);
            }
        };
        // Warm up: readers in, one session per input through, then the
        // first quiet moment.
        for (i, h) in harnesses.iter_mut().enumerate() {
            record(&mut failures, i, h.sync(&mut rng));
        }
        let starts: Vec<(Sample, String)> = harnesses
            .iter()
            .map(|h| (h.sample(), fd_kinds(h.router.id())))
            .collect();
        let mut mids: Option<Vec<Sample>> = None;
        let t0 = Instant::now();
        let mut next_status = t0 + Duration::from_secs(STATUS_EVERY);
        // At least until every kind of trouble has happened once.
        let unforced = |hs: &[Harness], failures: &[Vec<String>]| {
            hs.iter()
                .zip(failures)
                .all(|(h, f)| h.forced.is_empty() || !f.is_empty())
        };
        while t0.elapsed().as_secs_f64() < seconds || !unforced(&harnesses, &failures) {
            for (i, h) in harnesses.iter_mut().enumerate() {
                if failures[i].is_empty() {
                    record(&mut failures, i, h.tick(&mut rng, true));
                }
            }
            if mids.is_none() && t0.elapsed().as_secs_f64() >= seconds / 2.0 {
                mids = Some(harnesses.iter().map(Harness::sample).collect());
            }
            if Instant::now() >= next_status {
                next_status += Duration::from_secs(STATUS_EVERY);
                for h in &harnesses {
                    eprintln!("{}", h.status(t0.elapsed().as_secs()));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The end: no more chaos, every session done, then the same quiet
        // moment as at the start.
        for (i, h) in harnesses.iter_mut().enumerate() {
            if failures[i].is_empty() {
                record(&mut failures, i, h.sync(&mut rng));
            }
        }
        let mids = mids.unwrap_or_else(|| harnesses.iter().map(Harness::sample).collect());
        let mut reports = Vec::new();
        let each = harnesses.into_iter().zip(starts).zip(mids).zip(failures);
        for (((h, start), mid), failures) in each {
            reports.push(h.finish(start, mid, seconds, seed, failures));
        }
        Ok(reports)
    })();
    let _ = std::fs::remove_dir_all(&base);
    let reports = result?;
    print!("{}", render(&reports));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&reports).map_err(io::Error::other)?;
        std::fs::write(path, text + "\n")?;
        println!("report written to {}", path.display());
    }
    if reports.iter().all(Report::ok) {
        Ok(())
    } else {
        Err(io::Error::other("the soak found a fault (see above)"))
    }
}

/// The report's tables and verdicts.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| target | writer sessions (complete / killed / too long / cut) | reader sessions | \
         kills (writers / readers) | units checked | lost | duplicated | corrupt |"
    );
    let _ = writeln!(out, "| --- | --: | --: | --: | --: | --: | --: | --: |");
    for r in reports {
        let t = &r.tally;
        let _ = writeln!(
            out,
            "| {} | {} ({} / {} / {} / {}) | {} | {} ({} / {}) | {} | {} | {} | {} |",
            r.target.name(),
            t.sessions,
            t.complete,
            t.killed,
            r.too_long_sessions,
            r.cut_sessions,
            r.reader_sessions,
            r.writer_kills + r.reader_kills,
            r.writer_kills,
            r.reader_kills,
            t.checked,
            t.lost,
            t.duplicated,
            t.corrupt
        );
    }
    let _ = writeln!(
        out,
        "\n| target | RSS MiB start / mid / end / max (pinned at the end) | fds start / mid / end / max \
         | threads start / mid / end / max | flat |"
    );
    let _ = writeln!(out, "| --- | --: | --: | --: | --- |");
    for r in reports {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let [s, m, e, x] = [&r.start, &r.mid, &r.end, &r.max];
        let yes = |b: bool| if b { "yes" } else { "NO" };
        let rss = r.rss_flat.map_or("not judged (a short run)", yes);
        let _ = writeln!(
            out,
            "| {} | {:.1} / {:.1} / {:.1} / {:.1} ({:.1}) | {} / {} / {} / {} | {} / {} / {} / {} \
             | RSS {}, fds {}, threads {} |",
            r.target.name(),
            mib(s.rss_kib),
            mib(m.rss_kib),
            mib(e.rss_kib),
            mib(x.rss_kib),
            mib(e.pinned_kib),
            s.fds,
            m.fds,
            e.fds,
            x.fds,
            s.threads,
            m.threads,
            e.threads,
            x.threads,
            rss,
            yes(r.fds_flat),
            yes(r.threads_flat),
        );
    }
    for r in reports {
        if let Some([before, after]) = &r.fds_changed {
            let name = r.target.name();
            let _ = writeln!(
                out,
                "{name} fds at the start: {before}; at the end: {after}"
            );
        }
    }
    for r in reports {
        let t = &r.tally;
        let verdict = if r.ok() {
            "every unit of every complete session arrived exactly once, in order; each killed \
             session's up to its last whole write; fds, threads and RSS flat (or RSS not judged)"
                .to_string()
        } else {
            let mut v = String::from("FAILED");
            if let Some(f) = &t.first_fault {
                let _ = write!(v, "; first fault: {f}");
            }
            for f in &r.failures {
                let _ = write!(v, "; {f}");
            }
            v
        };
        let _ = writeln!(out, "{}: {verdict}", r.target.name());
    }
    out
}

/// How a writer session is meant to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Written whole unless the chaos kills it.
    Normal,
    /// Never killed: the warm-up's and the end's.
    Sync,
    /// Alone on its input, ending badly.
    Bad(Ending),
}

struct Writer {
    child: Child,
    session: u64,
    input: usize,
    kind: Kind,
    progress: PathBuf,
    killed: bool,
}

/// A trouble the chaos makes at least once, as soon as it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    KillReader,
    KillWriter,
    Bad(Ending),
}

/// Whether an input takes new sessions, or is kept for a bad one.
#[derive(Debug, Clone, Copy)]
enum Exclusive {
    Open,
    /// Waiting for its sessions to end, then a bad one starts.
    Draining(Ending),
    /// The bad session runs; the router's word (`want` acknowledgements
    /// of that kind) is awaited after.
    Bad {
        ending: Ending,
        want: u64,
    },
    /// The bad session ended; since when the word is awaited.
    Acking {
        ending: Ending,
        want: u64,
        since: Instant,
    },
}

struct Input {
    path: PathBuf,
    exclusive: Exclusive,
    /// Acknowledgements seen: too long, cut.
    acks: [u64; 2],
}

fn ack_kind(e: Ending) -> usize {
    usize::from(e == Ending::Cut)
}

struct Output {
    path: PathBuf,
    reader: Option<(Child, bool)>,
    restart_at: Option<Instant>,
}

/// One target under soak: its router process, its FIFOs, the sessions on
/// them, and the checker of its outputs.
struct Harness {
    target: Target,
    router: Child,
    exe: PathBuf,
    dir: PathBuf,
    wire: Wire,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    checker: Checker,
    writers: Vec<Writer>,
    stderr: mpsc::Receiver<String>,
    /// The router's last stderr lines, for an error.
    tail: VecDeque<String>,
    sessions: u64,
    /// Troubles the chaos has not made yet (each is made at least once).
    forced: Vec<Trouble>,
    writer_kills: u64,
    reader_kills: u64,
    reader_sessions: u64,
    bad: [u64; 2],
    max: Sample,
    next_sample: Instant,
    last_poll: Instant,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.router.kill();
        let _ = self.router.wait();
        for w in &mut self.writers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
        for o in &mut self.outputs {
            if let Some((mut r, _)) = o.reader.take() {
                let _ = r.kill();
                let _ = r.wait();
            }
        }
    }
}

fn mkfifo(path: &Path) -> io::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    Ok(())
}

impl Harness {
    fn start(
        target: Target,
        bin: &Path,
        pre: &[String],
        exe: &Path,
        dir: &Path,
    ) -> io::Result<Harness> {
        std::fs::create_dir_all(dir)?;
        let (inputs, outputs, wire, routing) = match target {
            Target::Multiplexer => (3, 2, Wire::Lines, Routing::ByLetter),
            Target::Hub => (1, 2, Wire::Length, Routing::All),
        };
        let ins: Vec<PathBuf> = (0..inputs).map(|i| dir.join(format!("in-{i}"))).collect();
        let outs: Vec<PathBuf> = (0..outputs).map(|o| dir.join(format!("out-{o}"))).collect();
        for p in ins.iter().chain(&outs) {
            mkfifo(p)?;
        }
        let mut cmd = Command::new(bin);
        cmd.args(pre);
        match target {
            Target::Multiplexer => {
                for i in &ins {
                    cmd.arg("--input").arg(i);
                }
                cmd.arg("--output").arg(&outs[0]);
                cmd.arg("--route").arg(format!("B={}", outs[1].display()));
            }
            Target::Hub => {
                cmd.arg("--source").arg(&ins[0]);
                for o in &outs {
                    cmd.arg("--subscriber").arg(o);
                }
            }
        }
        let mut router = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, stderr) = mpsc::channel();
        if let Some(err) = router.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let now = Instant::now();
        Ok(Harness {
            target,
            router,
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            wire,
            inputs: ins
                .into_iter()
                .map(|path| Input {
                    path,
                    exclusive: Exclusive::Open,
                    acks: [0; 2],
                })
                .collect(),
            outputs: outs
                .into_iter()
                .map(|path| Output {
                    path,
                    reader: None,
                    restart_at: Some(now),
                })
                .collect(),
            checker: Checker::new(wire, routing, outputs),
            writers: Vec::new(),
            stderr,
            tail: VecDeque::new(),
            sessions: 0,
            forced: vec![
                Trouble::KillReader,
                Trouble::KillWriter,
                Trouble::Bad(Ending::TooLong),
                Trouble::Bad(Ending::Cut),
            ],
            writer_kills: 0,
            reader_kills: 0,
            reader_sessions: 0,
            bad: [0; 2],
            max: Sample::default(),
            next_sample: now,
            last_poll: now,
        })
    }

    fn sample(&self) -> Sample {
        sample(self.router.id()).unwrap_or_default()
    }

    fn status(&self, secs: u64) -> String {
        let s = self.sample();
        format!(
            "soak {}: {secs} s, {} writer sessions, {} kills; router RSS {:.1} MiB, {} fds, {} threads",
            self.target.name(),
            self.sessions,
            self.writer_kills + self.reader_kills,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads
        )
    }

    /// Starts a writer session on input `i`.
    fn spawn_writer(
        &mut self,
        rng: &mut fastrand::Rng,
        i: usize,
        kind: Kind,
    ) -> Result<(), String> {
        let units = match kind {
            Kind::Sync => 50,
            _ => rng.u64(20..=600),
        };
        let seed = rng.u64(..);
        let session = self.checker.session(units, seed);
        self.sessions += 1;
        let progress = self.dir.join(format!("progress-{session}"));
        let ending = match kind {
            Kind::Bad(e) => e,
            _ => Ending::Clean,
        };
        let wire = match self.wire {
            Wire::Lines => "lines",
            Wire::Length => "length",
        };
        let ending_arg = match ending {
            Ending::Clean => "clean",
            Ending::TooLong => "too-long",
            Ending::Cut => "cut",
        };
        let child = Command::new(&self.exe)
            .arg("soak-writer")
            .arg("--path")
            .arg(&self.inputs[i].path)
            .args(["--wire", wire, "--ending", ending_arg])
            .args(["--session", &session.to_string()])
            .args(["--units", &units.to_string()])
            .args(["--seed", &seed.to_string()])
            .args(["--pause-ms", "10"])
            .arg("--progress")
            .arg(&progress)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn writer: {e}"))?;
        self.writers.push(Writer {
            child,
            session,
            input: i,
            kind,
            progress,
            killed: false,
        });
        Ok(())
    }

    /// Starts a reader session on output `o`, for `for_ms` (0: until
    /// killed).
    fn spawn_reader(&mut self, o: usize, for_ms: u64) -> Result<(), String> {
        let file = self.dir.join(format!("read-{o}-{}", self.reader_sessions));
        std::fs::File::create(&file).map_err(|e| format!("reader file: {e}"))?;
        self.checker.reader_file(o, file.clone());
        let child = Command::new(&self.exe)
            .arg("soak-reader")
            .arg("--path")
            .arg(&self.outputs[o].path)
            .arg("--out")
            .arg(&file)
            .args(["--for-ms", &for_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn reader: {e}"))?;
        self.reader_sessions += 1;
        self.outputs[o].reader = Some((child, false));
        self.outputs[o].restart_at = None;
        Ok(())
    }

    /// One turn: the router's word, sessions that ended, readers to
    /// restart, bad sessions to start, and with `chaos` the random
    /// starts and kills.
    fn tick(&mut self, rng: &mut fastrand::Rng, chaos: bool) -> Result<(), String> {
        self.read_stderr();
        if let Ok(Some(status)) = self.router.try_wait() {
            self.read_stderr();
            let tail: Vec<&str> = self.tail.iter().map(String::as_str).collect();
            return Err(format!(
                "the router exited ({status}): {}",
                tail.join(" / ")
            ));
        }
        self.reap_writers()?;
        let now = Instant::now();
        for o in 0..self.outputs.len() {
            let out = &mut self.outputs[o];
            if let Some((r, _)) = out.reader.as_mut()
                && let Ok(Some(_)) = r.try_wait()
            {
                out.reader = None;
                out.restart_at =
                    Some(now + Duration::from_millis(if chaos { rng.u64(0..300) } else { 0 }));
            }
            if out.reader.is_none() && out.restart_at.is_some_and(|t| t <= now) {
                let for_ms = if chaos { rng.u64(300..3000) } else { 0 };
                self.spawn_reader(o, for_ms)?;
            }
        }
        for i in 0..self.inputs.len() {
            let busy = self.writers.iter().any(|w| w.input == i);
            let input = &mut self.inputs[i];
            match input.exclusive {
                Exclusive::Draining(ending) if !busy => {
                    let want = input.acks[ack_kind(ending)] + 1;
                    input.exclusive = Exclusive::Bad { ending, want };
                    self.bad[ack_kind(ending)] += 1;
                    self.spawn_writer(rng, i, Kind::Bad(ending))?;
                }
                Exclusive::Acking {
                    ending,
                    want,
                    since,
                } => {
                    if input.acks[ack_kind(ending)] >= want {
                        input.exclusive = Exclusive::Open;
                    } else if since.elapsed() > Duration::from_secs(30) {
                        return Err(format!(
                            "{}: the router never said it handled a {ending:?} session",
                            input.path.display()
                        ));
                    }
                }
                _ => {}
            }
        }
        if chaos {
            self.chaos(rng)?;
        }
        if now >= self.next_sample {
            self.next_sample = now + Duration::from_millis(500);
            let s = self.sample();
            self.max.rss_kib = self.max.rss_kib.max(s.rss_kib);
            self.max.fds = self.max.fds.max(s.fds);
            self.max.threads = self.max.threads.max(s.threads);
        }
        if now.duration_since(self.last_poll) >= Duration::from_millis(50) {
            self.last_poll = now;
            self.checker
                .poll()
                .map_err(|e| format!("reading the outputs: {e}"))?;
        }
        Ok(())
    }

    /// The random part of a turn (10 ms): about 5 session starts a second
    /// per input (two at most at a time), 2 writer kills, 1 reader kill
    /// and a bad session every 2.5 s; and each trouble not made yet, as
    /// soon as it can be.
    fn chaos(&mut self, rng: &mut fastrand::Rng) -> Result<(), String> {
        for i in 0..self.inputs.len() {
            let running = self.writers.iter().filter(|w| w.input == i).count();
            if matches!(self.inputs[i].exclusive, Exclusive::Open)
                && running < 2
                && rng.f64() < 0.05
            {
                self.spawn_writer(rng, i, Kind::Normal)?;
            }
        }
        let forced = |h: &Harness, t: Trouble| h.forced.contains(&t);
        // A forced kill counts once a session has died of it (one that
        // was exiting anyway ends complete): one kill in flight at a time.
        let in_flight = self.writers.iter().any(|w| w.killed);
        if (forced(self, Trouble::KillWriter) && !in_flight) || rng.f64() < 0.02 {
            self.kill_writer(rng);
        }
        if (forced(self, Trouble::KillReader) || rng.f64() < 0.01) && self.kill_reader(rng) {
            self.forced.retain(|&t| t != Trouble::KillReader);
        }
        let next_bad = self.forced.iter().find_map(|t| match t {
            Trouble::Bad(e) => Some(*e),
            _ => None,
        });
        let bad = match next_bad {
            Some(e) => Some(e),
            None if rng.f64() < 0.004 => Some(if rng.bool() {
                Ending::TooLong
            } else {
                Ending::Cut
            }),
            None => None,
        };
        if let Some(ending) = bad {
            let i = rng.usize(..self.inputs.len());
            if matches!(self.inputs[i].exclusive, Exclusive::Open) {
                self.inputs[i].exclusive = Exclusive::Draining(ending);
                self.forced.retain(|&t| t != Trouble::Bad(ending));
            }
        }
        Ok(())
    }

    /// SIGKILLs a random normal writer session, if one runs.
    fn kill_writer(&mut self, rng: &mut fastrand::Rng) {
        let normal: Vec<usize> = (0..self.writers.len())
            .filter(|&k| self.writers[k].kind == Kind::Normal && !self.writers[k].killed)
            .collect();
        if normal.is_empty() {
            return;
        }
        let w = &mut self.writers[normal[rng.usize(..normal.len())]];
        if kill(Pid::from_raw(w.child.id() as i32), Signal::SIGKILL).is_ok() {
            w.killed = true;
        }
    }

    /// SIGKILLs the reader session of a random output, if it has one.
    fn kill_reader(&mut self, rng: &mut fastrand::Rng) -> bool {
        let o = rng.usize(..self.outputs.len());
        let Some((r, killed)) = self.outputs[o].reader.as_mut() else {
            return false;
        };
        if *killed || kill(Pid::from_raw(r.id() as i32), Signal::SIGKILL).is_err() {
            return false;
        }
        *killed = true;
        self.reader_kills += 1;
        true
    }

    /// Takes the router's stderr lines: its word on bad sessions.
    fn read_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            let kind = match self.target {
                Target::Multiplexer if line.contains("reopened for the next writer") => Some(0),
                Target::Multiplexer if line.contains("in the middle of a message") => Some(1),
                Target::Hub if line.starts_with("soak-hub: reopened") => Some(0),
                Target::Hub if line.starts_with("soak-hub: cut") => Some(1),
                _ => None,
            };
            if let Some(k) = kind {
                let which = self.inputs.iter_mut().find(|i| {
                    self.target == Target::Hub || line.contains(&format!("{}: ", i.path.display()))
                });
                if let Some(input) = which {
                    input.acks[k] += 1;
                }
            }
            if self.tail.len() == 8 {
                self.tail.pop_front();
            }
            self.tail.push_back(line);
        }
    }

    /// Accounts for the writer sessions that have exited.
    fn reap_writers(&mut self) -> Result<(), String> {
        let mut k = 0;
        while k < self.writers.len() {
            let status = match self.writers[k].child.try_wait() {
                Ok(Some(s)) => s,
                Ok(None) => {
                    k += 1;
                    continue;
                }
                Err(e) => return Err(format!("writer: {e}")),
            };
            let mut w = self.writers.swap_remove(k);
            let logged = std::fs::read(&w.progress)
                .ok()
                .and_then(|b| b.get(..8)?.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            let _ = std::fs::remove_file(&w.progress);
            use std::os::unix::process::ExitStatusExt;
            let fate = if status.success() {
                Fate::Complete
            } else if w.killed && status.signal() == Some(Signal::SIGKILL as i32) {
                self.writer_kills += 1;
                self.forced.retain(|&t| t != Trouble::KillWriter);
                Fate::Killed { logged }
            } else {
                let mut err = String::new();
                if let Some(mut e) = w.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "writer session {} on {} failed ({status}): {}",
                    w.session,
                    self.inputs[w.input].path.display(),
                    err.trim()
                ));
            };
            self.checker.set_fate(w.session, fate);
            if let Kind::Bad(_) = w.kind {
                let input = &mut self.inputs[w.input];
                if let Exclusive::Bad { ending, want } = input.exclusive {
                    input.exclusive = Exclusive::Acking {
                        ending,
                        want,
                        since: Instant::now(),
                    };
                }
            }
        }
        Ok(())
    }

    /// No more chaos: waits for every session to end and every input to
    /// be open, then sends one session through each input and waits for
    /// all of it to arrive. Afterwards the router is idle, its readers
    /// there and its queues empty: the moment resources are compared at.
    fn sync(&mut self, rng: &mut fastrand::Rng) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        self.settle(rng, deadline, "sessions still running", |h| {
            h.writers.is_empty()
                && h.inputs
                    .iter()
                    .all(|i| matches!(i.exclusive, Exclusive::Open))
                && h.outputs.iter().all(|o| o.reader.is_some())
        })?;
        let mut syncs = Vec::new();
        for i in 0..self.inputs.len() {
            self.spawn_writer(rng, i, Kind::Sync)?;
            syncs.push(self.writers.last().map_or(0, |w| w.session));
        }
        self.settle(rng, deadline, "the last sessions not delivered", |h| {
            h.writers.is_empty() && syncs.iter().all(|&s| h.checker.delivered(s))
        })?;
        // Let the router finish its turn before it is looked at.
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }

    /// Turns without chaos until `done`, failing at `deadline`.
    fn settle(
        &mut self,
        rng: &mut fastrand::Rng,
        deadline: Instant,
        what: &str,
        done: impl Fn(&Harness) -> bool,
    ) -> Result<(), String> {
        while !done(self) {
            if Instant::now() > deadline {
                return Err(format!("{}: {what} after 60 s", self.target.name()));
            }
            self.tick(rng, false)?;
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn finish(
        mut self,
        (start, start_fds): (Sample, String),
        mid: Sample,
        seconds: f64,
        seed: u64,
        mut failures: Vec<String>,
    ) -> Report {
        let end = self.sample();
        let fds_changed = (end.fds != start.fds).then(|| [start_fds, fd_kinds(self.router.id())]);
        let _ = kill(Pid::from_raw(self.router.id() as i32), Signal::SIGTERM);
        for o in &mut self.outputs {
            if let Some((mut r, _)) = o.reader.take() {
                let _ = r.kill();
                let _ = r.wait();
            }
        }
        if let Err(e) = self.checker.poll() {
            failures.push(format!("reading the outputs: {e}"));
        }
        let rss_flat = (seconds >= RSS_TREND_SECS)
            .then(|| end.unpinned_kib() <= mid.unpinned_kib() + RSS_SLACK_KIB);
        let fds_flat = end.fds <= start.fds.max(mid.fds);
        let threads_flat = end.threads <= start.threads.max(mid.threads);
        Report {
            target: self.target,
            seconds,
            seed,
            tally: self.checker.tally(),
            writer_kills: self.writer_kills,
            reader_kills: self.reader_kills,
            reader_sessions: self.reader_sessions,
            too_long_sessions: self.bad[0],
            cut_sessions: self.bad[1],
            start,
            mid,
            end,
            max: self.max,
            rss_flat,
            fds_flat,
            threads_flat,
            fds_changed,
            failures,
        }
    }
}
