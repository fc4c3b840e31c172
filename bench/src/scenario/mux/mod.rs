//! The `mux` scenario: 64-byte lines from N writer threads into 4 input
//! FIFOs, routed to one output FIFO by the router under test, read back by
//! this process, which checks that every line arrived exactly once
//! ([`lines`]; one run: [`run`]).
//!
//! Routers: `multiplexer` (the ringpipe example, `examples/multiplexer`,
//! found beside this binary), `threads` (the blocking-threads baseline in
//! [`router`], run as `ringpipe-bench mux-threads`), `cat` (four
//! `cat IN > OUT` processes, one per input) and `direct` (no
//! router: the writers write straight into the output FIFO, the ceiling of
//! the harness). A router is its own process, so its CPU, read from
//! `/proc/PID/stat`, is its own.

mod lines;
pub mod router;
mod run;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgMatches, Args as _, ValueEnum};
use indicatif::ProgressBar;
use nix::errno::Errno;
use nix::sys::stat::Mode;

use super::{Scenario, args};
use crate::chart::Chart;
use crate::example;
use crate::harness::{Ctx, FAILED, Globals, Out, Part, progress};
use crate::report::{
    self, Cast, Goal, Metrics, Params, Pick, Record, Side, Table, Target, at_most, param,
};
use lines::{BLOCK_LINES, LINE};
use run::{Measured, run_once};

/// Input FIFOs of the router.
pub const INPUTS: usize = 4;

/// The multiplexer example against a blocking-threads router: 64-byte
/// lines from N writers into 4 input FIFOs, routed to 1 output FIFO, every
/// line checked to arrive exactly once; lines/s and router CPU per line,
/// beside the direct ceiling (the writers straight into one FIFO). Builds
/// the example first (see --multiplexer).
#[derive(Debug, clap::Args)]
struct Args {
    /// Routers to run, comma separated.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = Router::ALL)]
    routers: Vec<Router>,
    /// Writer threads, spread over the 4 inputs round-robin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    writers: u16,
    /// Lines per writer.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    lines: u64,
}

/// The scenario.
pub struct Mux;

/// What routes the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Router {
    /// The ringpipe multiplexer example (one proactor thread).
    Multiplexer,
    /// The same with `--sole-writer`: whole lines in writes up to a pipe's
    /// size.
    MultiplexerSole,
    /// The blocking-threads router (one thread per input).
    Threads,
    /// Four `cat IN > OUT` processes, one per input: what a new user
    /// tries first.
    Cat,
    /// No router: writers straight into the output FIFO (the ceiling).
    Direct,
}

impl Router {
    pub const ALL: [Router; 5] = [
        Router::Multiplexer,
        Router::MultiplexerSole,
        Router::Threads,
        Router::Cat,
        Router::Direct,
    ];

    /// The name on the command line and in the records.
    pub fn name(self) -> &'static str {
        match self {
            Router::Multiplexer => "multiplexer",
            Router::MultiplexerSole => "multiplexer-sole",
            Router::Threads => "threads",
            Router::Cat => "cat",
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
            Router::MultiplexerSole => {
                "(mux) the multiplexer example with --sole-writer: whole lines out in writes up \
                 to a pipe's size (FifoOptions::sole_writer)"
            }
            Router::Threads => {
                "(mux) the same routing with a blocking thread per input, 64 KiB batches per \
                 write (in the other tables: one blocking thread per FIFO)"
            }
            Router::Cat => {
                "(mux) four `cat IN > OUT` processes, one per input, as a new user would route \
                 them (whole lines only because the kernel cuts pipe writes at page boundaries); \
                 CPU: the four together"
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

/// The records part of a `mux` run of `routers`.
fn part(routers: Vec<Router>, writers: usize, lines: u64, multiplexer: Option<PathBuf>) -> Part {
    let runs = move |ctx: &Ctx<'_>| -> io::Result<Out> {
        if let Some(bin) = &multiplexer {
            println!(
                "router under test: {} ({})",
                bin.display(),
                example::age(bin)
            );
        }
        let plan = Plan {
            routers,
            writers,
            lines,
            runs: ctx.plan.runs,
            warmup: ctx.plan.warmup,
            timeout: ctx.plan.timeout,
            exe: ctx.exe.clone(),
            multiplexer,
        };
        let pb = progress(plan.routers.len() * (plan.runs + plan.warmup));
        let out = measure(&plan, &ctx.base.join("mux"), &pb);
        pb.finish_and_clear();
        println!(
            "mux: medians of {} run(s) each, {} warm-up run(s) discarded",
            plan.runs, plan.warmup
        );
        out
    };
    Part::Records {
        name: "mux",
        runs: Box::new(runs),
    }
}

fn targets() -> Vec<Target> {
    let (lines, per_line, threads, cat) =
        ("lines_per_s", "router_cpu_ns_per_line", "threads", "cat");
    let t = |what: String, a: Pick, b: Pick, goal: Goal| Target {
        what,
        scenario: "mux",
        params: Vec::new(),
        a,
        b,
        goal,
    };
    // The default multiplexer (PIPE_BUF writes: other writers may share its
    // outputs), and with --sole-writer, the design the targets were set for.
    ["multiplexer", "multiplexer-sole"]
        .into_iter()
        .flat_map(|mux| {
            [
                t(
                    format!("mux lines/s: {mux} >= 1.5x threads"),
                    Pick::of(mux, lines),
                    Pick::of(threads, lines),
                    Goal::AtLeast { factor: 1.5 },
                ),
                t(
                    format!("mux CPU/line: {mux} <= 1.0x threads"),
                    Pick::of(mux, per_line),
                    Pick::of(threads, per_line),
                    at_most(1.0),
                ),
                t(
                    format!("mux lines/s: {mux} >= 1.0x four cats"),
                    Pick::of(mux, lines),
                    Pick::of(cat, lines),
                    Goal::AtLeast { factor: 1.0 },
                ),
                t(
                    format!("mux CPU/line: {mux} <= 2.0x four cats"),
                    Pick::of(mux, per_line),
                    Pick::of(cat, per_line),
                    at_most(2.0),
                ),
            ]
        })
        .collect()
}

impl Scenario for Mux {
    fn name(&self) -> &'static str {
        "mux"
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![
            Args::augment_args(clap::Command::new(self.name())),
            router::RouterArgs::augment_args(clap::Command::new("mux-threads"))
                .hide(true)
                .about(
                    "(internal) The blocking-threads router of `mux`, with the routing options \
                     of the multiplexer example",
                ),
        ]
    }

    fn run(&self, name: &str, m: &ArgMatches, g: &Globals) -> io::Result<Option<Vec<Part>>> {
        if name == "mux-threads" {
            router::run(&args(m)?)?;
            return Ok(None);
        }
        let a: Args = args(m)?;
        // Built or found before anything runs: a missing example fails at
        // once.
        let multiplexer = if a
            .routers
            .iter()
            .any(|r| matches!(r, Router::Multiplexer | Router::MultiplexerSole))
        {
            let exe = std::env::current_exe()?;
            Some(example::multiplexer(&exe, g.multiplexer.as_deref())?)
        } else {
            None
        };
        if g.engines.is_some() {
            return Err(io::Error::other(
                "mux compares routers, not engines: use --routers",
            ));
        }
        let writers = usize::from(a.writers);
        Ok(Some(vec![part(a.routers, writers, a.lines, multiplexer)]))
    }

    fn quick(&self, g: &Globals) -> io::Result<Option<Part>> {
        let exe = std::env::current_exe()?;
        let multiplexer = example::multiplexer(&exe, g.multiplexer.as_deref())?;
        Ok(Some(part(
            Router::ALL.to_vec(),
            4,
            1 << 18,
            Some(multiplexer),
        )))
    }

    fn table(&self) -> Option<Table> {
        Some(
            Table::new(
                self.name(),
                &[("lines_per_s", true), ("router_cpu_ns_per_line", false)],
                |r: &Record| format!("mux {} writers", param(r, "writers")),
            )
            .names(&[
                ("lines_per_s", "lines/s"),
                ("router_cpu_ns_per_line", "CPU ns/line"),
            ])
            .defaults(&["multiplexer"])
            .targets(targets),
        )
    }

    fn cast(&self) -> Vec<Cast> {
        Router::ALL
            .iter()
            .map(|r| Cast {
                name: r.name(),
                side: match r {
                    Router::Multiplexer | Router::MultiplexerSole => Side::Ringpipe,
                    Router::Threads | Router::Cat => Side::Peer,
                    Router::Direct => Side::Ceiling,
                },
                describe: r.describe(),
                scenario: Some(self.name()),
            })
            .collect()
    }

    fn charts(&self) -> Vec<Chart> {
        vec![Chart::PerEngine {
            file: "mux_lines.svg",
            scenario: self.name(),
            metric: "lines_per_s",
            caption: "mux: 64-byte lines, 4 input FIFOs -> 1 output FIFO",
            axis: "lines/s",
        }]
    }
}

/// Runs every router `warmup + runs` times, taking turns run by run, and
/// returns one record per router (medians) and the notes.
fn measure(plan: &Plan, dir: &Path, pb: &ProgressBar) -> io::Result<Out> {
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
                    let n = format!("mux {router}: {FAILED} {e}");
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
        let mut params = Params::new();
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

fn metrics(m: &Measured) -> Metrics {
    let mut out = Metrics::new();
    if m.secs > 0.0 {
        out.insert("lines_per_s".into(), m.lines as f64 / m.secs);
    }
    if let Some(cpu) = m.router_cpu_s.filter(|_| m.lines > 0) {
        out.insert("router_cpu_ns_per_line".into(), cpu * 1e9 / m.lines as f64);
    }
    out
}
