//! The engines: the consuming or relaying side of every engine scenario,
//! one file per kind of engine, each listed in [`ALL`]. An engine runs in
//! its own process (`ringpipe-bench engine SPEC`): it opens its FIFOs,
//! prints `READY n` (n: FIFOs it managed to open), does the work the
//! [`Shape`] says, and prints an [`EngineReport`] as JSON.
//!
//! An engine knows no scenario: it reads inputs or relays one FIFO into
//! another, as the shape says, whatever the scenario calls it.

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use serde::{Deserialize, Serialize};

use crate::sink::Sink;
use crate::spec::{EngineReport, Shape, input_path, percentiles_us};
use crate::sys;

mod epoll;
pub mod relay;
mod ringpipe_epoll;
mod threads;
mod tokio_pipe;
mod uring;

/// Every engine, in the order of the tables' columns: ringpipe's modes,
/// then the peers. A new engine is a file with its `Engine` and a line
/// here.
pub const ALL: &[&Engine] = &[
    &uring::URING,
    &uring::SINGLE,
    &uring::BATCH,
    &uring::ECHO,
    &uring::SPLICE,
    &uring::SPLICE_DIRECT,
    &uring::SPLICE_IOWQ,
    &uring::SQPOLL,
    &uring::SPIN,
    &ringpipe_epoll::RINGPIPE_EPOLL,
    &ringpipe_epoll::RINGPIPE_EPOLL_SPLICE,
    &epoll::EPOLL,
    &threads::THREADS,
    &threads::SPLICE,
    &tokio_pipe::TOKIO,
];

/// An engine under test.
pub struct Engine {
    /// Its name on the command line, in the JSON records and in tables
    /// (kebab case: `uring-single`).
    pub name: &'static str,
    /// What it is, in a line, for the legend under the tables and the
    /// help of `--engines`.
    pub describe: &'static str,
    /// Whether this is ringpipe (a mode of it) rather than a peer.
    pub ringpipe: bool,
    /// Whether its relay moves bytes with splice rather than read + write.
    pub splices: bool,
    /// The scenarios it takes part in.
    pub scope: Scope,
    /// Does the run in this process.
    pub run: fn(&Spec) -> io::Result<EngineReport>,
}

/// Where an engine takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every engine scenario.
    All,
    /// These scenarios, and every one when named with `--engines` (a mode
    /// whose point is one kind of load, or that keeps a core busy).
    Unless(&'static [&'static str]),
    /// These scenarios only, named or not (what it does makes sense in
    /// them alone).
    Only(&'static [&'static str]),
}

impl Engine {
    /// Whether the engine takes part in scenario `scenario` (`explicit`:
    /// engines were named with `--engines`).
    pub fn runs_in(&self, scenario: &str, explicit: bool) -> bool {
        match self.scope {
            Scope::All => true,
            Scope::Unless(_) if explicit => true,
            Scope::Unless(these) | Scope::Only(these) => these.contains(&scenario),
        }
    }

    /// Whether the threads engine's cap (`--threads-cap`) applies to it.
    pub fn capped(&self) -> bool {
        self.name == threads::THREADS.name
    }

    /// Its line in the help of `--engines`: what it is, and where it runs.
    fn help(&self) -> String {
        match self.scope {
            Scope::All => self.describe.to_string(),
            Scope::Unless(s) => format!("{} ({} only unless named)", self.describe, s.join(", ")),
            Scope::Only(s) => format!("{} ({} only)", self.describe, s.join(", ")),
        }
    }
}

impl PartialEq for Engine {
    fn eq(&self, other: &Engine) -> bool {
        self.name == other.name
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The engine named `name`, if this build has it.
pub fn find(name: &str) -> Option<&'static Engine> {
    ALL.iter().copied().find(|e| e.name == name)
}

/// The parser of `--engines`: one of [`ALL`], by name.
pub fn parser() -> impl TypedValueParser<Value = &'static Engine> {
    let names = ALL
        .iter()
        .map(|e| PossibleValue::new(e.name).help(e.help()));
    PossibleValuesParser::new(names).try_map(|name: String| {
        find(&name).ok_or_else(|| io::Error::other(format!("no engine {name}")))
    })
}

/// Everything an engine process needs for one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub shape: Shape,
    /// The engine's [`Engine::name`].
    pub engine: String,
    pub dir: PathBuf,
    /// CPU to pin this process to, if asked.
    pub cpu: Option<usize>,
    /// Thread cap of the threads engine.
    pub threads_cap: usize,
}

/// Runs `spec` in this process and prints the report.
pub fn run(spec: &Spec) -> io::Result<()> {
    let engine =
        find(&spec.engine).ok_or_else(|| io::Error::other(format!("no engine {}", spec.engine)))?;
    sys::raise_nofile();
    if let Some(cpu) = spec.cpu {
        sys::pin_to(cpu);
    }
    let report = (engine.run)(spec)?;
    let json = serde_json::to_string(&report).map_err(io::Error::other)?;
    println!("{json}");
    Ok(())
}

/// Opens input FIFOs `in-0`, `in-1`... with `open` until every one the
/// shape names is open or one fails; returns the ends opened and, if one
/// failed, a note saying where and why.
fn open_inputs<T>(
    spec: &Spec,
    open: impl FnMut(&std::path::Path) -> io::Result<T>,
) -> (Vec<T>, Option<String>) {
    let all: Vec<usize> = (0..spec.shape.inputs()).collect();
    open_share(spec, &all, open)
}

/// [`open_inputs`] of the inputs numbered `share` only.
fn open_share<T>(
    spec: &Spec,
    share: &[usize],
    mut open: impl FnMut(&std::path::Path) -> io::Result<T>,
) -> (Vec<T>, Option<String>) {
    let wanted = share.len();
    let mut ends = Vec::with_capacity(wanted);
    for (k, &i) in share.iter().enumerate() {
        match open(&input_path(&spec.dir, i)) {
            Ok(end) => ends.push(end),
            Err(e) => {
                return (
                    ends,
                    Some(format!("opened {k} of {wanted} FIFOs, then: {e}")),
                );
            }
        }
    }
    (ends, None)
}

/// What one consumer of a fan-in did with its share of the inputs.
pub struct Consumed {
    pub sink: Sink,
    pub opened: usize,
    pub syscalls: Option<u64>,
    pub note: Option<String>,
}

/// A consumer of a share of the inputs: it opens them, says how many
/// with `ready`, then reads them to their end.
type Consumer<'a> = dyn Fn(&[usize], &dyn Fn(usize)) -> io::Result<Consumed> + Sync + 'a;

/// Runs a fan-in's consumer over the shape's inputs: on this thread when
/// the shape has one shard, else one thread per shard, input `i` going
/// to shard `i % shards` (as a user who outgrows one core runs a proactor,
/// or an epoll loop, per core). The engine says it is ready once every
/// consumer has opened its inputs; the report merges theirs.
fn sharded(spec: &Spec, consume: &Consumer<'_>) -> io::Result<EngineReport> {
    let n = spec.shape.shards();
    let (parts, cpu0) = if n == 1 {
        let all: Vec<usize> = (0..spec.shape.inputs()).collect();
        let cpu0 = std::cell::Cell::new(None);
        let part = consume(&all, &|opened| cpu0.set(Some(announce(opened))))?;
        (vec![part], cpu0.get())
    } else {
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|k| {
                    let share: Vec<usize> = (k..spec.shape.inputs()).step_by(n).collect();
                    let tx = tx.clone();
                    scope.spawn(move || {
                        consume(&share, &|opened| {
                            let _ = tx.send(opened);
                        })
                    })
                })
                .collect();
            drop(tx);
            // Every consumer's count (a consumer that failed first sends
            // none: its error comes out of the join).
            let opened: usize = rx.iter().take(n).sum();
            let cpu0 = announce(opened);
            let parts = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| io::Error::other("consumer panicked"))?
                })
                .collect::<io::Result<Vec<Consumed>>>()?;
            Ok::<_, io::Error>((parts, Some(cpu0)))
        })?
    };
    let mut parts = parts.into_iter();
    let mut first = parts
        .next()
        .ok_or_else(|| io::Error::other("no consumer"))?;
    let mut report = EngineReport {
        note: first.note.take(),
        opened: first.opened,
        syscalls: first.syscalls,
        ..EngineReport::default()
    };
    for part in parts {
        first.sink.merge(&part.sink);
        report.opened += part.opened;
        report.syscalls = report.syscalls.zip(part.syscalls).map(|(a, b)| a + b);
        report.note = report.note.or(part.note);
    }
    let cpu0 = cpu0.ok_or_else(|| io::Error::other("the consumer never said it was ready"))?;
    finish(&mut report, &first.sink, cpu0);
    report.msgs = spec.shape.msgs_in(first.sink.bytes);
    Ok(report)
}

/// Runs `relay` on a relay's shape, else `consume`: how an engine whose
/// relay and consumer share nothing does its run.
fn by_flow(
    spec: &Spec,
    relay: fn(&Spec) -> io::Result<EngineReport>,
    consume: fn(&Spec) -> io::Result<EngineReport>,
) -> io::Result<EngineReport> {
    match spec.shape.relay() {
        Some(_) => relay(spec),
        None => consume(spec),
    }
}

/// Tells the orchestrator the engine is ready; returns the CPU clock at
/// that moment (the run's CPU is counted from here).
pub fn announce(opened: usize) -> f64 {
    println!("READY {opened}");
    let _ = io::stdout().flush();
    sys::cpu_seconds()
}

/// Fills the figures every consuming engine reports the same way.
pub fn finish(report: &mut EngineReport, sink: &Sink, cpu0: f64) {
    report.cpu_s = sys::cpu_seconds() - cpu0;
    report.bytes = sink.bytes;
    report.elapsed_s = sink.elapsed_s();
    let (p50, p99, p999) = percentiles_us(&sink.histogram());
    report.p50_us = p50;
    report.p99_us = p99;
    report.p999_us = p999;
    report.max_us = sink.samples.iter().max().map(|&ns| ns as f64 / 1000.0);
    report.checked = sink.checked;
    report.fault.clone_from(&sink.fault);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each engine has one name, and `--engines` takes exactly those: the
    /// CLI and the JSON records must not drift apart.
    #[test]
    fn names_are_unique_and_parsed() {
        let cmd = clap::Command::new("t").arg(
            clap::Arg::new("e")
                .long("engines")
                .value_delimiter(',')
                .value_parser(parser()),
        );
        for (k, e) in ALL.iter().enumerate() {
            assert!(ALL[..k].iter().all(|o| o.name != e.name), "{e} twice");
            assert_eq!(find(e.name), Some(*e));
            let m = cmd
                .clone()
                .try_get_matches_from(["t", "--engines", e.name])
                .expect("parses");
            let got: Vec<&&Engine> = m.get_many("e").expect("given").collect();
            assert_eq!(got, [e]);
        }
        assert!(
            cmd.try_get_matches_from(["t", "--engines", "nope"])
                .is_err()
        );
    }

    #[test]
    fn scopes() {
        let by = |name| find(name).expect("an engine");
        assert!(!by("uring-splice").runs_in("fanin", true));
        assert!(by("uring-splice").runs_in("relay", false));
        assert!(!by("uring-spin").runs_in("fanin", false));
        assert!(by("uring-spin").runs_in("fanin", true));
        assert!(by("uring-single").runs_in("fanin", false));
        assert!(!by("uring-single").runs_in("relay", false));
        assert!(by("epoll").runs_in("relay", false));
    }
}
