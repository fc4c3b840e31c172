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

mod check;
mod harness;
mod hub;
mod reader;
mod writer;

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{ArgMatches, Args as _, ValueEnum};
use serde::Serialize;

use super::{Scenario, args};
use crate::harness::{Globals, Part};
use check::Tally;
use harness::Harness;

/// The multiplexer example and a hub for N minutes under random writer
/// and reader SIGKILLs, reconnects and bad frames: every unit of every
/// complete writer session must arrive exactly once (a killed one's up to
/// its last whole write), and the router's RSS, fds and threads must stay
/// flat. Exits with an error otherwise.
#[derive(Debug, clap::Args)]
struct SoakArgs {
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

/// The scenario.
pub struct Soak;

impl Scenario for Soak {
    fn name(&self) -> &'static str {
        "soak"
    }

    fn commands(&self) -> Vec<clap::Command> {
        let hidden = |name: &'static str| clap::Command::new(name).hide(true);
        vec![
            SoakArgs::augment_args(clap::Command::new(self.name())),
            writer::WriterArgs::augment_args(hidden("soak-writer")),
            reader::ReaderArgs::augment_args(hidden("soak-reader")),
            hub::HubArgs::augment_args(hidden("soak-hub")),
        ]
    }

    fn run(&self, name: &str, m: &ArgMatches, g: &Globals) -> io::Result<Option<Vec<Part>>> {
        match name {
            "soak-writer" => writer::run(&args(m)?)?,
            "soak-reader" => reader::run(&args(m)?)?,
            "soak-hub" => hub::run(&args(m)?)?,
            _ => run(
                &args(m)?,
                g.multiplexer.as_deref(),
                g.dir.as_deref(),
                g.json.as_deref(),
            )?,
        }
        Ok(None)
    }
}

/// Runs the soak; fails if a unit was lost, repeated or corrupt, a
/// resource grew, or anything broke.
fn run(
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
            Target::Multiplexer => {
                Ok((crate::example::multiplexer(&exe, multiplexer)?, Vec::new()))
            }
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
            .map(|h| (h.sample(), fd_kinds(h.router_id())))
            .collect();
        let mut mids: Option<Vec<Sample>> = None;
        let t0 = Instant::now();
        let mut next_status = t0 + Duration::from_secs(STATUS_EVERY);
        // At least until every kind of trouble has happened once.
        let unforced = |hs: &[Harness], failures: &[Vec<String>]| {
            hs.iter()
                .zip(failures)
                .all(|(h, f)| h.forced_done() || !f.is_empty())
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
fn render(reports: &[Report]) -> String {
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
