//! What every scenario that makes records runs in: the options all
//! commands share, the plan (runs, warm-up, bounds), the FIFO directory,
//! the scenarios' [`Part`]s run in order, and the printed result (tables,
//! legend, summary, flags, targets, notes) and JSON records.

pub mod chunks;
pub mod engines;
pub mod load;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{self, Engine};
use crate::report::{self, Catalog, Record};
use crate::{legend, own, sys};
use engines::EngineWork;

/// The options every command takes.
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// Engines to run, comma separated (default: all; uring-sqpoll,
    /// uring-spin and uring-echo run in pingpong only, uring-single in fanin
    /// and latency, uring-batch in fanin only, unless named here; uring-splice,
    /// uring-splice-direct, uring-splice-iowq and threads-splice run in relay only).
    #[arg(long, global = true, value_delimiter = ',', value_parser = engine::parser())]
    pub engines: Option<Vec<&'static Engine>>,
    /// Write the records as one JSON array to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Measured runs per (scenario, engine, parameters); medians are reported.
    #[arg(long, global = true)]
    pub runs: Option<usize>,
    /// Discarded warm-up runs before the measured ones.
    #[arg(long, global = true)]
    pub warmup: Option<usize>,
    /// Where the FIFOs are made (default: /dev/shm if present, a tmpfs, so
    /// no engine pays a disk filesystem's inode time updates; else $TMPDIR).
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    /// Pin the engine to CPU 0 and the load generator to CPU 1.
    #[arg(long, global = true)]
    pub pin: bool,
    /// Most threads the threads engine starts; above it each thread waits on
    /// several FIFOs with poll(2).
    #[arg(long, global = true, default_value_t = 1024)]
    pub threads_cap: usize,
    /// Bound on one run, in seconds (default: 10 for quick, else 120); a
    /// run past it fails.
    #[arg(long, global = true, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// The multiplexer binary of mux, quick and soak, used as it is
    /// (default: examples/multiplexer beside this binary, built first with
    /// cargo when this binary's workspace is there).
    #[arg(long, global = true, value_name = "PATH")]
    pub multiplexer: Option<PathBuf>,
}

impl Globals {
    /// Runs and warm-up runs of a scenario that prints a table of its own
    /// (default 5 and 1).
    pub fn own_runs(&self) -> (usize, usize) {
        (self.runs.unwrap_or(5).max(1), self.warmup.unwrap_or(1))
    }
}

/// How hard to run: repetitions and the bound on one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub runs: usize,
    pub warmup: usize,
    /// Runs of a scenario that waits through a quiet period (idle).
    pub idle_runs: usize,
    pub timeout: Duration,
}

impl Plan {
    /// The plan of `quick` (short) or of any other command.
    pub fn new(g: &Globals, quick: bool) -> Plan {
        Plan {
            runs: g.runs.unwrap_or(if quick { 3 } else { 5 }).max(1),
            warmup: g.warmup.unwrap_or(if quick { 0 } else { 1 }),
            idle_runs: g.runs.unwrap_or(if quick { 2 } else { 3 }).max(1),
            timeout: Duration::from_secs(g.timeout.unwrap_or(if quick { 10 } else { 120 })),
        }
    }
}

/// What the parts of one command share.
pub struct Ctx<'a> {
    pub globals: &'a Globals,
    pub plan: Plan,
    /// This binary: the engines, load generators and routers it starts.
    pub exe: PathBuf,
    /// This command's directory of FIFOs (removed at the end).
    pub base: PathBuf,
}

/// Records and notes.
pub type Out = (Vec<Record>, Vec<String>);

/// A records part's runs.
pub type Runs = Box<dyn FnOnce(&Ctx<'_>) -> std::io::Result<Out>>;
/// A table part's runs.
pub type Tabled = Box<dyn FnOnce(&Ctx<'_>) -> std::io::Result<String>>;

/// What one scenario adds to a command.
pub enum Part {
    /// Configurations every engine runs; `warm`: one of them, short, that
    /// each engine runs once, discarded, before anything is measured.
    Engines {
        works: Vec<Box<dyn EngineWork>>,
        warm: Option<Box<dyn EngineWork>>,
    },
    /// Runs of its own, made into records (a run that fails is a note).
    Records { name: &'static str, runs: Runs },
    /// Runs of its own that print a table of their own.
    Table { name: &'static str, runs: Tabled },
}

impl Part {
    /// Configurations every engine runs, no warm-up of their own.
    pub fn engines(works: Vec<Box<dyn EngineWork>>) -> Part {
        Part::Engines { works, warm: None }
    }

    /// The short run of a scenario that prints a table of its own:
    /// `quick`, given the plan's runs.
    pub fn table(name: &'static str, quick: fn(usize) -> std::io::Result<String>) -> Part {
        Part::Table {
            name,
            runs: Box::new(move |ctx| quick(ctx.plan.runs)),
        }
    }
}

/// What every note of a failed run says: a run that miscounts, times out
/// or breaks gives no figure, and the command exits with an error.
pub const FAILED: &str = "run failed:";

/// Runs `parts` in order (every engine configuration first, as one set),
/// prints the results with `catalog` and writes the records.
pub fn orchestrate(
    g: &Globals,
    quick: bool,
    parts: Vec<Part>,
    catalog: &Catalog,
) -> std::io::Result<()> {
    let (mut works, mut warm, mut others) = (Vec::new(), None, Vec::new());
    for part in parts {
        match part {
            Part::Engines { works: w, warm: c } => {
                works.extend(w);
                warm = warm.or(c);
            }
            other => others.push(other),
        }
    }
    for w in &works {
        w.shape()
            .check(w.scenario())
            .map_err(std::io::Error::other)?;
    }
    let nofile = sys::raise_nofile();
    let root = g.dir.clone().unwrap_or_else(own::fifo_root);
    let ctx = Ctx {
        globals: g,
        plan: Plan::new(g, quick),
        exe: std::env::current_exe()?,
        base: root.join(format!("ringpipe-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&ctx.base)?;
    let started = Instant::now();
    println!("{}", report::machine(nofile));
    println!("FIFOs in {}", root.display());

    let out = if works.is_empty() {
        Ok((Vec::new(), Vec::new()))
    } else {
        engines::run(&ctx, &works, warm.as_deref())
    };
    let (mut records, mut notes) = out.inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&ctx.base);
    })?;
    let mut tables = Vec::new();
    let tabled = others
        .iter()
        .filter(|p| matches!(p, Part::Table { .. }))
        .count();
    let mut pb = None;
    for part in others {
        match part {
            Part::Records { name, runs } => match runs(&ctx) {
                Ok((mut r, mut n)) => {
                    records.append(&mut r);
                    notes.append(&mut n);
                }
                Err(e) => notes.push(format!("{name}: {FAILED} {e}")),
            },
            Part::Table { name, runs } => {
                let bar = pb.get_or_insert_with(|| progress(tabled));
                bar.set_message(name);
                match runs(&ctx) {
                    Ok(text) => tables.push(text),
                    Err(e) => notes.push(format!("{name}: {FAILED} {e}")),
                }
                bar.inc(1);
            }
            Part::Engines { .. } => {}
        }
    }
    if let Some(bar) = pb {
        bar.finish_and_clear();
    }
    let _ = std::fs::remove_dir_all(&ctx.base);

    print_results(&records, &tables, &notes, catalog);
    println!("total time: {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &g.json {
        let json = serde_json::to_string_pretty(&records).map_err(std::io::Error::other)?;
        std::fs::write(path, json + "\n")?;
        println!("records written to {}", path.display());
    }
    let failed = notes.iter().filter(|n| n.contains(FAILED)).count();
    if failed > 0 {
        return Err(std::io::Error::other(format!(
            "{failed} failure(s), each in the notes (\"{FAILED}\"): those runs' figures are left out"
        )));
    }
    Ok(())
}

/// The tables (those of records, then `tables` as they are), the names
/// of the engines and modes, the summary, the flags, the targets and the
/// notes; every line but those of `tables` within 120 columns.
pub fn print_results(records: &[Record], tables: &[String], notes: &[String], catalog: &Catalog) {
    println!("{}", wrap(report::LEGEND, ""));
    println!();
    print!("{}", report::table(records, catalog));
    for t in tables {
        println!("{t}");
    }
    let names = legend::lines(records, catalog);
    if !names.is_empty() {
        println!("engines and modes in the tables above:");
        for line in names {
            println!("{}", wrap(&format!("- {line}"), "  "));
        }
        println!();
    }
    let summary = report::summary(records, catalog);
    if !summary.is_empty() {
        println!(
            "ringpipe against the best peer (ratio of medians; noisy: the spreads overlap):\n{summary}"
        );
    }
    let flags = report::flags(records, catalog);
    if !flags.is_empty() {
        println!(
            "flagged (each ! above): ringpipe >= {}x worse than the best peer, the ranges apart:\n{flags}",
            report::FLAG_RATIO
        );
    }
    let t = report::targets(records, catalog);
    if !t.is_empty() {
        println!(
            "{}",
            wrap(
                "targets: the goals the project sets itself for ringpipe (what it aims to reach \
                 against the peers, not a check of this run), each judged on these runs: met, \
                 MISSED, or noisy when the runs disagree; the ratio of medians [worst-best over \
                 the runs]:",
                ""
            )
        );
        print!("{t}");
    }
    if !notes.is_empty() {
        println!("notes:");
        for n in notes {
            println!("{}", wrap(&format!("- {n}"), "  "));
        }
    }
}

/// `text` wrapped at word boundaries to [`report::WIDTH`] bytes (so as
/// many columns at most), continuation lines starting with `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > report::WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
        } else if !line.is_empty() && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// A progress bar of `total` steps.
pub fn progress(total: usize) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}
