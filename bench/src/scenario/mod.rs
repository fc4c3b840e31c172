//! The scenarios, one file (or folder) each, every one listed in [`ALL`]:
//! its commands, what `quick` and `all` run of it, how its records are
//! shown and judged, its charts, and for an engine scenario the load
//! generator's side. A scenario depends on the shared pieces (the
//! harness, the engines, the report); nothing below depends on a
//! scenario.

use std::io;
use std::path::Path;

use clap::{ArgMatches, FromArgMatches};
use serde_json::Value;

use crate::chart::Chart;
use crate::engine;
use crate::harness::{Globals, Part};
use crate::report::{Cast, Catalog, Side, Table};
use crate::spec::LoadReport;

pub mod fanin;
pub mod fanout;
pub mod handoff;
pub mod hub;
pub mod idle;
pub mod latency;
pub mod mux;
pub mod pingpong;
pub mod relay;
pub mod soak;
pub mod throughput;

/// Every scenario, in the order `quick` runs them (the engine scenarios
/// first, as one set) and their commands are listed.
pub const ALL: &[&dyn Scenario] = &[
    &throughput::Throughput,
    &fanin::Fanin,
    &relay::Relay,
    &pingpong::Pingpong,
    &idle::Idle,
    &latency::Latency,
    &fanout::Fanout,
    &mux::Mux,
    &handoff::Handoff,
    &hub::Hub,
    &soak::Soak,
];

/// A scenario.
pub trait Scenario: Sync {
    /// Its name: its command's, and its records' `scenario`.
    fn name(&self) -> &'static str;

    /// Its commands: the one people run, and hidden ones its runs start
    /// as child processes (its own routers, readers, writers).
    fn commands(&self) -> Vec<clap::Command>;

    /// Runs its command `name` with `args`: the parts to measure and
    /// report, or `None` when it did its work itself.
    fn run(&self, name: &str, args: &ArgMatches, g: &Globals) -> io::Result<Option<Vec<Part>>>;

    /// What `quick` runs of it (`None`: nothing). Called before anything
    /// runs, so a program it cannot find fails the command at once.
    fn quick(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(None)
    }

    /// What `all` runs of it.
    fn all(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(None)
    }

    /// How its records are shown and judged (`None`: it makes none).
    fn table(&self) -> Option<Table> {
        None
    }

    /// Names its records carry as their engine beside [`engine::ALL`]'s.
    fn cast(&self) -> Vec<Cast> {
        Vec::new()
    }

    /// Its charts.
    fn charts(&self) -> Vec<Chart> {
        Vec::new()
    }

    /// The load generator's side of one of its engine runs: `work` is the
    /// configuration its [`EngineWork::load`](crate::harness::engines::EngineWork::load)
    /// gave, `count` the FIFOs the engine opened.
    fn load(&self, _work: &Value, _dir: &Path, _count: usize) -> io::Result<LoadReport> {
        Err(io::Error::other(format!(
            "{} is not an engine scenario",
            self.name()
        )))
    }
}

/// The scenario with the command `name`.
pub fn owner(command: &str) -> Option<&'static dyn Scenario> {
    ALL.iter()
        .copied()
        .find(|s| s.commands().iter().any(|c| c.get_name() == command))
}

/// The scenario named `name`.
pub fn find(name: &str) -> Option<&'static dyn Scenario> {
    ALL.iter().copied().find(|s| s.name() == name)
}

/// What the report knows of the scenarios: the engines, the names the
/// scenarios add, and their tables.
pub fn catalog() -> Catalog {
    let mut cast: Vec<Cast> = engine::ALL
        .iter()
        .map(|e| Cast {
            name: e.name,
            side: if e.ringpipe {
                Side::Ringpipe
            } else {
                Side::Peer
            },
            describe: e.describe,
            scenario: None,
        })
        .collect();
    cast.extend(ALL.iter().flat_map(|s| s.cast()));
    Catalog {
        cast,
        tables: ALL.iter().filter_map(|s| s.table()).collect(),
    }
}

/// Every scenario's charts.
pub fn charts() -> Vec<Chart> {
    ALL.iter().flat_map(|s| s.charts()).collect()
}

/// A command's arguments, as its scenario defines them.
pub fn args<T: FromArgMatches>(m: &ArgMatches) -> io::Result<T> {
    T::from_arg_matches(m).map_err(io::Error::other)
}

#[cfg(test)]
mod tests;
