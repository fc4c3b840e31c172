//! `ringpipe-bench`: ringpipe against epoll, blocking threads and tokio on
//! the same scenarios, side by side.
//!
//! An engine scenario takes three processes per run: this orchestrator,
//! the engine under test (`ringpipe-bench engine ...`) and the load
//! generator (`ringpipe-bench loadgen ...`), both re-executions of this
//! binary. So the engine's CPU, RSS and thread count are its own, and the
//! load is the same for every engine. The other scenarios start routers,
//! publishers and readers of their own, each its own process too.
//!
//! The rooms, from the top: this file (the command line), [`scenario`]
//! (one file or folder per scenario, each listed in [`scenario::ALL`]),
//! [`harness`] (the runs of the engine scenarios, the load generator, the
//! printed result), [`engine`] (one file per kind of engine, each listed
//! in [`engine::ALL`]), then the shared pieces: [`report`], [`chart`],
//! [`legend`], [`spec`], [`sink`], [`frames`], [`child`], [`example`],
//! [`sys`], [`own`]. A room uses only those below it.
//!
//! Adding a scenario: a file in `scenario/` with a unit struct that
//! implements [`scenario::Scenario`] (its command, what `quick` and `all`
//! run of it, its table, targets and charts; an engine scenario also its
//! configuration, an [`harness::engines::EngineWork`] that says what the
//! engines do as a [`spec::Shape`], and its load generator's side), its
//! `mod` line and its line in [`scenario::ALL`].
//!
//! Adding an engine: a file in `engine/` with a `const` [`engine::Engine`]
//! (name, legend line, scopes, and the function that runs a
//! [`spec::Shape`]), its `mod` line and its line in [`engine::ALL`]; a new
//! ringpipe mode is one more `Engine` in `engine/uring.rs` and its line.

use clap::{ArgMatches, FromArgMatches, Parser, Subcommand};

mod chart;
mod child;
mod engine;
mod example;
mod frames;
mod harness;
mod legend;
mod own;
mod report;
mod scenario;
mod sink;
mod spec;
mod sys;

use harness::{Globals, orchestrate};
use scenario::Scenario;

#[derive(Parser)]
#[command(
    name = "ringpipe-bench",
    about = "ringpipe vs epoll vs blocking threads vs tokio on FIFOs, side by side"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    globals: Globals,
}

/// A command: a scenario's, or one of the commands over all of them.
enum Cmd {
    Scenario {
        scenario: &'static dyn Scenario,
        name: String,
        args: ArgMatches,
    },
    Builtin(Builtin),
}

/// The commands over every scenario, and the child processes of the
/// engine scenarios.
#[derive(Debug, Subcommand)]
enum Builtin {
    /// A short run of every scenario (about a minute), one table per
    /// scenario, the summary, what is flagged and the project's targets.
    /// Builds the multiplexer example first (see --multiplexer).
    Quick,
    /// Every engine scenario and fan-out at full size (mux runs on its
    /// own: it needs the example built).
    All,
    /// The tables, the summary against the best peer and the targets,
    /// from JSON files written with --json (to join several runs).
    Report {
        /// Files of JSON records (their arrays are joined).
        #[arg(required = true)]
        inputs: Vec<std::path::PathBuf>,
    },
    /// SVG charts from a JSON file written with --json.
    Chart {
        /// Files of JSON records (their arrays are joined).
        #[arg(required = true)]
        inputs: Vec<std::path::PathBuf>,
        /// Directory for the SVG files.
        #[arg(long, default_value = "bench/charts")]
        out: std::path::PathBuf,
    },
    /// (internal) The load generator side of one run.
    #[command(hide = true)]
    Loadgen { spec: String, count: usize },
    /// (internal) The engine side of one run.
    #[command(hide = true)]
    Engine { spec: String },
}

impl FromArgMatches for Cmd {
    fn from_arg_matches(m: &ArgMatches) -> Result<Cmd, clap::Error> {
        if let Some((name, args)) = m.subcommand()
            && let Some(scenario) = scenario::owner(name)
        {
            return Ok(Cmd::Scenario {
                scenario,
                name: name.to_string(),
                args: args.clone(),
            });
        }
        Builtin::from_arg_matches(m).map(Cmd::Builtin)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Cmd::from_arg_matches(m)?;
        Ok(())
    }
}

impl Subcommand for Cmd {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.subcommands(scenario::ALL.iter().flat_map(|s| s.commands()));
        Builtin::augment_subcommands(cmd)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        Cmd::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        scenario::owner(name).is_some() || Builtin::has_subcommand(name)
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("ringpipe-bench: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> std::io::Result<()> {
    let g = &cli.globals;
    match &cli.cmd {
        Cmd::Scenario {
            scenario,
            name,
            args,
        } => match scenario.run(name, args, g)? {
            Some(parts) => orchestrate(g, false, parts, &scenario::catalog()),
            None => Ok(()),
        },
        Cmd::Builtin(Builtin::Quick) => {
            let parts = scenario::ALL
                .iter()
                .filter_map(|s| s.quick(g).transpose())
                .collect::<std::io::Result<Vec<_>>>()?;
            orchestrate(g, true, parts, &scenario::catalog())
        }
        Cmd::Builtin(Builtin::All) => {
            let parts = scenario::ALL
                .iter()
                .filter_map(|s| s.all(g).transpose())
                .collect::<std::io::Result<Vec<_>>>()?;
            orchestrate(g, false, parts, &scenario::catalog())
        }
        Cmd::Builtin(Builtin::Report { inputs }) => {
            let records = report::read(inputs)?;
            harness::print_results(&records, &[], &[], &scenario::catalog());
            Ok(())
        }
        Cmd::Builtin(Builtin::Chart { inputs, out }) => {
            chart::render(inputs, out, &scenario::catalog(), &scenario::charts())
        }
        Cmd::Builtin(Builtin::Loadgen { spec, count }) => {
            let spec: harness::engines::LoadSpec =
                serde_json::from_str(spec).map_err(std::io::Error::other)?;
            let scenario = scenario::find(&spec.scenario)
                .ok_or_else(|| std::io::Error::other(format!("no scenario {}", spec.scenario)))?;
            harness::load::run(&spec, *count, |dir, n| scenario.load(&spec.work, dir, n))
        }
        Cmd::Builtin(Builtin::Engine { spec }) => {
            let spec: engine::Spec = serde_json::from_str(spec).map_err(std::io::Error::other)?;
            engine::run(&spec)
        }
    }
}
