//! `idle`: many FIFOs open and quiet, then one message each: the engine's
//! RSS, threads and CPU while quiet, and the time to deliver them all.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use clap::{ArgMatches, Args as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Scenario, args};
use crate::chart::Chart;
use crate::harness::engines::{EngineWork, RunResult, metrics};
use crate::harness::{Globals, Part, Plan, load};
use crate::report::{Goal, Metrics, Params, Pick, Record, Table, Target, at_most, param};
use crate::spec::{LoadReport, MSG, Shape, input_path, mono_ns, stamp};
use crate::sys;

/// Many quiet FIFOs, then one message each: RSS, threads, delivery time.
#[derive(Debug, clap::Args)]
struct Args {
    /// FIFOs to open.
    #[arg(long, default_value_t = 10_000)]
    fifos: usize,
    /// How long they stay quiet, in ms.
    #[arg(long, default_value_t = 2000)]
    idle_ms: u64,
}

/// The scenario.
pub struct Idle;

/// One configuration: `fifos` FIFOs open and quiet for `idle_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Run {
    fifos: usize,
    idle_ms: u64,
}

fn works(fifos: usize, idle_ms: u64) -> Vec<Box<dyn EngineWork>> {
    vec![Box::new(Run { fifos, idle_ms })]
}

fn targets() -> Vec<Target> {
    let uring = "uring";
    let t = |what: &str, a: Pick, b: Pick, goal: Goal| Target {
        what: what.into(),
        scenario: "idle",
        params: Vec::new(),
        a,
        b,
        goal,
    };
    vec![
        t(
            "idle RSS: uring <= 1.3x epoll",
            Pick::of(uring, "rss_mib"),
            Pick::of("epoll", "rss_mib"),
            at_most(1.3),
        ),
        t(
            "idle threads: uring <= 2",
            Pick::of(uring, "threads"),
            Pick::of(uring, "threads"),
            Goal::Below { limit: 2.0 },
        ),
    ]
}

impl Scenario for Idle {
    fn name(&self) -> &'static str {
        "idle"
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![Args::augment_args(clap::Command::new(self.name()))]
    }

    fn run(&self, _: &str, m: &ArgMatches, _: &Globals) -> io::Result<Option<Vec<Part>>> {
        let a: Args = args(m)?;
        Ok(Some(vec![Part::engines(works(a.fifos, a.idle_ms))]))
    }

    fn quick(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(10_000, 300))))
    }

    fn all(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(10_000, 2000))))
    }

    fn table(&self) -> Option<Table> {
        Some(
            Table::new(
                self.name(),
                &[
                    ("rss_mib", false),
                    ("threads", false),
                    ("idle_cpu_ms_per_s", false),
                    ("deliver_all_ms", false),
                ],
                |r: &Record| format!("idle {} fifos", param(r, "fifos")),
            )
            .names(&[
                ("idle_cpu_ms_per_s", "idle CPU ms/s"),
                ("deliver_all_ms", "deliver all ms"),
            ])
            .targets(targets),
        )
    }

    fn charts(&self) -> Vec<Chart> {
        vec![Chart::PerEngine {
            file: "idle_deliver.svg",
            scenario: self.name(),
            metric: "deliver_all_ms",
            caption: "idle: 10,000 quiet FIFOs, then one message each",
            axis: "ms to deliver them all",
        }]
    }

    fn load(&self, work: &Value, dir: &Path, count: usize) -> io::Result<LoadReport> {
        let Run { idle_ms, .. } = load::read(work)?;
        let fds = (0..count)
            .map(|i| load::open_writer(&input_path(dir, i)))
            .collect::<io::Result<Vec<_>>>()?;
        println!("OPENED");
        io::stdout().flush()?;
        std::thread::sleep(Duration::from_millis(idle_ms));
        // Every message carries the burst's start time: the engine's
        // latest delivery is then the time to deliver them all.
        let t0 = mono_ns();
        let mut msg = [0u8; MSG];
        stamp(&mut msg, t0, 0, 0);
        for fd in &fds {
            sys::write_all(fd, &msg)?;
        }
        Ok(LoadReport {
            bytes: (count * MSG) as u64,
            ..LoadReport::default()
        })
    }
}

impl EngineWork for Run {
    fn scenario(&self) -> &'static str {
        Idle.name()
    }

    fn shape(&self) -> Shape {
        Shape::messages(self.fifos, 1, 1)
    }

    fn short(&self) -> String {
        format!("{} fifos", self.fifos)
    }

    fn params(&self, opened: usize) -> Params {
        Params::from([
            ("fifos".into(), self.fifos.into()),
            ("idle_ms".into(), self.idle_ms.into()),
            ("fifos_opened".into(), opened.into()),
        ])
    }

    fn metrics(&self, r: &RunResult) -> Metrics {
        let e = &r.engine;
        metrics(&[
            ("rss_mib", r.idle_sample.map(|s| s.0)),
            ("threads", r.idle_sample.map(|s| s.1 as f64)),
            ("idle_cpu_ms_per_s", r.idle_cpu),
            ("deliver_all_ms", e.max_us.map(|us| us / 1000.0)),
            ("p50_us", e.p50_us),
            ("p99_us", e.p99_us),
        ])
    }

    fn load(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn runs(&self, plan: &Plan) -> usize {
        plan.idle_runs
    }

    fn quiet_ms(&self) -> Option<u64> {
        Some(self.idle_ms)
    }
}
