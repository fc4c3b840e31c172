//! `fanin`: N FIFOs fed round-robin with 64-byte messages, one consumer
//! checking every message of every FIFO: messages/s, CPU per message and
//! the latency of one message in [`SAMPLE_EVERY`].

use std::io;
use std::path::Path;
use std::time::Instant;

use clap::{ArgMatches, Args as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Scenario, args};
use crate::chart::Chart;
use crate::harness::engines::{EngineWork, RunResult, metrics};
use crate::harness::{Globals, Part, load};
use crate::report::{Goal, Metrics, Params, Pick, Record, Table, Target, at_most, param};
use crate::spec::{Flow, LoadReport, MSG, SAMPLE_EVERY, Shape, Unit, input_path, mono_ns, stamp};
use crate::sys;

/// N FIFOs fed round-robin with 64-byte messages, one consumer.
#[derive(Debug, clap::Args)]
struct Args {
    /// Numbers of FIFOs.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 256, 4096])]
    fifos: Vec<usize>,
    /// Messages per run, over all FIFOs (at least 16 per FIFO).
    #[arg(long, default_value_t = 1_000_000)]
    msgs: u64,
    /// Consumers the FIFOs are shared out to, each on its own thread
    /// (comma separated, e.g. 1,2): a proactor per thread for the uring
    /// engines, an epoll loop per thread for epoll (the threads engine is
    /// a thread per FIFO already; tokio keeps its one runtime).
    #[arg(long, value_delimiter = ',', default_values_t = [1])]
    proactors: Vec<usize>,
}

/// The scenario.
pub struct Fanin;

/// One configuration: `fifos` FIFOs, `msgs_per_fifo` 64-byte messages on
/// each, written round-robin one message per `write(2)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Run {
    fifos: usize,
    msgs_per_fifo: u64,
    /// Consumer threads the FIFOs are shared out to.
    #[serde(default = "one")]
    proactors: usize,
}

fn one() -> usize {
    1
}

/// A configuration per number of FIFOs and of consumers, `msgs` messages
/// over all the FIFOs.
fn works(fifos: &[usize], msgs: u64, proactors: &[usize]) -> Vec<Box<dyn EngineWork>> {
    fifos
        .iter()
        .flat_map(|&n| {
            proactors.iter().map(move |&k| {
                Box::new(Run {
                    fifos: n,
                    msgs_per_fifo: (msgs / n as u64).max(16),
                    proactors: k.max(1),
                }) as Box<dyn EngineWork>
            })
        })
        .collect()
}

/// Fan-in's targets, at 16, 256 and 4096 FIFOs.
fn targets() -> Vec<Target> {
    let (cpu, p99) = ("cpu_s_per_million_msgs", "p99_us");
    let (uring, epoll, batch) = ("uring", "epoll", "uring-batch");
    let mut out = Vec::new();
    for n in [16u64, 256, 4096] {
        let t = |what: &str, a: Pick, b: Pick, goal: Goal| Target {
            what: format!("fanin {n}: {what}"),
            scenario: "fanin",
            params: vec![("fifos", n)],
            a,
            b,
            goal,
        };
        let budget = Goal::AtMost {
            factor: 1.0,
            plus: 1000.0,
            unit: "us",
        };
        out.extend([
            t(
                "CPU/msg uring <= 0.8x epoll",
                Pick::of(uring, cpu),
                Pick::of(epoll, cpu),
                at_most(0.8),
            ),
            t(
                "p99 uring <= 1.0x epoll",
                Pick::of(uring, p99),
                Pick::of(epoll, p99),
                at_most(1.0),
            ),
            t(
                "CPU/msg uring-batch <= 0.5x epoll",
                Pick::of(batch, cpu),
                Pick::of(epoll, cpu),
                at_most(0.5),
            ),
            t(
                "p99 uring-batch <= epoll + 1 ms",
                Pick::of(batch, p99),
                Pick::of(epoll, p99),
                budget,
            ),
        ]);
    }
    out
}

impl Scenario for Fanin {
    fn name(&self) -> &'static str {
        "fanin"
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![Args::augment_args(clap::Command::new(self.name()))]
    }

    fn run(&self, _: &str, m: &ArgMatches, _: &Globals) -> io::Result<Option<Vec<Part>>> {
        let a: Args = args(m)?;
        Ok(Some(vec![Part::engines(works(
            &a.fifos,
            a.msgs,
            &a.proactors,
        ))]))
    }

    fn quick(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(
            &[1, 16, 256, 4096],
            100_000,
            &[1],
        ))))
    }

    fn all(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(
            &[1, 16, 256, 4096],
            1_000_000,
            &[1],
        ))))
    }

    fn table(&self) -> Option<Table> {
        Some(
            Table::new(
                self.name(),
                &[
                    ("msgs_per_s", true),
                    ("cpu_s_per_million_msgs", false),
                    ("syscalls_per_1k_msgs", false),
                    ("p99_us", false),
                ],
                |r: &Record| match param(r, "proactors").as_str() {
                    "1" | "" => format!("fanin {} fifos", param(r, "fifos")),
                    n => format!("fanin {} fifos, {n} proactors", param(r, "fifos")),
                },
            )
            .targets(targets),
        )
    }

    fn charts(&self) -> Vec<Chart> {
        vec![Chart::ByParam {
            file: "fanin_cpu.svg",
            scenario: self.name(),
            param: "fifos",
            metric: "cpu_s_per_million_msgs",
            caption: "fan-in: consumer CPU-seconds per million 64-byte messages",
            axes: (
                "FIFOs (log scale)",
                "CPU s per million messages (log scale)",
            ),
        }]
    }

    fn load(&self, work: &Value, dir: &Path, count: usize) -> io::Result<LoadReport> {
        let Run { msgs_per_fifo, .. } = load::read(work)?;
        let fds = (0..count)
            .map(|i| load::open_writer(&input_path(dir, i)))
            .collect::<io::Result<Vec<_>>>()?;
        let mut msg = [0u8; MSG];
        let start = Instant::now();
        let mut seq = 0u64;
        for number in 0..msgs_per_fifo {
            for fd in &fds {
                stamp(&mut msg, mono_ns(), seq, number);
                sys::write_all(fd, &msg)?;
                seq += 1;
            }
        }
        Ok(LoadReport {
            elapsed_s: start.elapsed().as_secs_f64(),
            bytes: seq * MSG as u64,
            ..LoadReport::default()
        })
    }
}

impl EngineWork for Run {
    fn scenario(&self) -> &'static str {
        Fanin.name()
    }

    fn shape(&self) -> Shape {
        Shape {
            flow: Flow::Consume {
                inputs: self.fifos,
                shards: self.proactors,
            },
            bytes_per_input: self.msgs_per_fifo * MSG as u64,
            unit: Unit::Message {
                sample_every: SAMPLE_EVERY,
            },
        }
    }

    fn short(&self) -> String {
        match self.proactors {
            1 => format!("{} fifos", self.fifos),
            n => format!("{} fifos, {n} proactors", self.fifos),
        }
    }

    fn params(&self, opened: usize) -> Params {
        Params::from([
            ("fifos".into(), self.fifos.into()),
            ("msg_bytes".into(), MSG.into()),
            ("msgs_per_fifo".into(), self.msgs_per_fifo.into()),
            ("fifos_opened".into(), opened.into()),
            ("proactors".into(), self.proactors.into()),
        ])
    }

    fn metrics(&self, r: &RunResult) -> Metrics {
        let e = &r.engine;
        metrics(&[
            ("msgs_per_s", r.msgs_per_s()),
            ("cpu_s_per_million_msgs", r.cpu_s_per_million_msgs()),
            ("syscalls_per_1k_msgs", r.syscalls_per_1k_msgs()),
            ("p50_us", e.p50_us),
            ("p99_us", e.p99_us),
            ("p999_us", e.p999_us),
        ])
    }

    fn load(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
