//! `latency`: an open-loop load. 64-byte messages go out on a fixed
//! schedule (message k at `start + k / rate`), round-robin over N FIFOs,
//! one `write(2)` each, whether or not the consumer keeps up; each
//! message carries its *scheduled* send time, and its latency counts from
//! there. So a stalled sender or a consumer that falls behind shows in the
//! percentiles instead of slowing the load down (coordinated omission
//! corrected, as wrk2 does). Every message is sampled (into an
//! HdrHistogram, `spec::new_histogram`) and checked, once and in order;
//! beside p50/p99/p99.9/max, the consumer's CPU per message: in this
//! regime most messages cost a wake-up each.

use std::io;
use std::path::Path;

use clap::{ArgMatches, Args as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Scenario, args};
use crate::harness::engines::{EngineWork, RunResult, metrics};
use crate::harness::{Globals, Part, load};
use crate::report::{Metrics, Params, Pick, Record, Table, Target, at_most, param};
use crate::spec::{
    LoadReport, MSG, Shape, input_path, mono_ns, new_histogram, percentiles_us, stamp,
};
use crate::sys;

/// Paced 64-byte messages into N FIFOs, latency from the schedule.
#[derive(Debug, clap::Args)]
struct Args {
    /// Numbers of FIFOs.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64, 256])]
    fifos: Vec<usize>,
    /// Rates, messages per second over all FIFOs.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 50_000, 100_000, 200_000])]
    rates: Vec<u64>,
    /// Rates run at one FIFO only, beside `--rates` (none: the flag
    /// alone).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_values_t = [500_000])]
    one_fifo_rates: Vec<u64>,
    /// Seconds of schedule per run (at least 16 messages per FIFO).
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
}

/// The scenario.
pub struct Latency;

/// One cell: `fifos` FIFOs, `rate` messages a second over them all,
/// `msgs_per_fifo` each.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Run {
    fifos: usize,
    rate: u64,
    msgs_per_fifo: u64,
}

/// The cells: every rate at every width, and the one-FIFO rates.
fn works(fifos: &[usize], rates: &[u64], one: &[u64], secs: f64) -> Vec<Box<dyn EngineWork>> {
    let cell = |fifos: usize, rate: u64| -> Box<dyn EngineWork> {
        let total = (rate as f64 * secs) as u64;
        Box::new(Run {
            fifos,
            rate: rate.max(1),
            msgs_per_fifo: (total / fifos as u64).max(16),
        })
    };
    let mut out: Vec<Box<dyn EngineWork>> = Vec::new();
    for &n in fifos {
        for &rate in rates {
            out.push(cell(n, rate));
        }
        if n == 1 {
            out.extend(one.iter().map(|&rate| cell(1, rate)));
        }
    }
    if !fifos.contains(&1) {
        out.extend(one.iter().map(|&rate| cell(1, rate)));
    }
    out
}

/// The paced consumer's target, in every cell that ran: the default's CPU
/// per message at most epoll's.
fn targets() -> Vec<Target> {
    let cpu = "cpu_s_per_million_msgs";
    let cells = [1u64, 64, 256]
        .into_iter()
        .flat_map(|n| [10_000u64, 50_000, 100_000, 200_000].map(|r| (n, r)))
        .chain([(1, 500_000)]);
    cells
        .map(|(n, r)| Target {
            what: format!(
                "latency {n} fifos {}k/s: CPU/msg uring <= 1.0x epoll",
                r / 1000
            ),
            scenario: "latency",
            params: vec![("fifos", n), ("rate", r)],
            a: Pick::of("uring", cpu),
            b: Pick::of("epoll", cpu),
            goal: at_most(1.0),
        })
        .collect()
}

impl Scenario for Latency {
    fn name(&self) -> &'static str {
        "latency"
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![Args::augment_args(clap::Command::new(self.name()))]
    }

    fn run(&self, _: &str, m: &ArgMatches, _: &Globals) -> io::Result<Option<Vec<Part>>> {
        let a: Args = args(m)?;
        let works = works(&a.fifos, &a.rates, &a.one_fifo_rates, a.secs);
        Ok(Some(vec![Part::engines(works)]))
    }

    fn quick(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(&[1, 64], &[10_000], &[], 0.2))))
    }

    fn all(&self, _: &Globals) -> io::Result<Option<Part>> {
        let rates = [10_000, 50_000, 100_000, 200_000];
        Ok(Some(Part::engines(works(
            &[1, 64, 256],
            &rates,
            &[500_000],
            1.0,
        ))))
    }

    fn table(&self) -> Option<Table> {
        Some(
            Table::new(
                self.name(),
                &[
                    ("cpu_s_per_million_msgs", false),
                    ("p50_us", false),
                    ("p99_us", false),
                    ("p999_us", false),
                    ("max_us", false),
                    ("msgs_per_s", true),
                    ("send_lag_p99_us", false),
                ],
                |r: &Record| {
                    format!(
                        "latency {} fifos {} msgs/s",
                        param(r, "fifos"),
                        param(r, "rate")
                    )
                },
            )
            .names(&[("max_us", "max us"), ("send_lag_p99_us", "send lag p99 us")])
            .targets(targets),
        )
    }

    fn load(&self, work: &Value, dir: &Path, count: usize) -> io::Result<LoadReport> {
        let Run {
            rate,
            msgs_per_fifo,
            ..
        } = load::read(work)?;
        let fds = (0..count)
            .map(|i| load::open_writer(&input_path(dir, i)))
            .collect::<io::Result<Vec<_>>>()?;
        // Kept to the microsecond, not the default 50 us slack.
        let _ = nix::sys::prctl::set_timerslack(1000);
        // How late each write left against its schedule: the sender's own
        // share of the latencies.
        let mut lag = new_histogram();
        let mut msg = [0u8; MSG];
        let total = msgs_per_fifo * count as u64;
        let start = mono_ns();
        for seq in 0..total {
            let due = start + seq * 1_000_000_000 / rate;
            // Slept to the schedule, never skipped: a late message goes at
            // once, carrying the time it was due.
            if due > mono_ns() {
                sys::sleep_until_mono(due);
            }
            let i = (seq % count as u64) as usize;
            stamp(&mut msg, due, seq, seq / count as u64);
            sys::write_all(&fds[i], &msg)?;
            let _ = lag.record(mono_ns().saturating_sub(due).max(1));
        }
        let (p50_us, p99_us, p999_us) = percentiles_us(&lag);
        Ok(LoadReport {
            p50_us,
            p99_us,
            p999_us,
            elapsed_s: mono_ns().saturating_sub(start) as f64 / 1e9,
            bytes: total * MSG as u64,
            ..LoadReport::default()
        })
    }
}

impl EngineWork for Run {
    fn scenario(&self) -> &'static str {
        Latency.name()
    }

    fn shape(&self) -> Shape {
        // Every message sampled: the tail is the point.
        Shape::messages(self.fifos, self.msgs_per_fifo, 1)
    }

    fn short(&self) -> String {
        format!("{} fifos {} msgs/s", self.fifos, self.rate)
    }

    fn params(&self, opened: usize) -> Params {
        Params::from([
            ("fifos".into(), self.fifos.into()),
            ("rate".into(), self.rate.into()),
            ("msg_bytes".into(), MSG.into()),
            ("msgs_per_fifo".into(), self.msgs_per_fifo.into()),
            ("fifos_opened".into(), opened.into()),
        ])
    }

    fn metrics(&self, r: &RunResult) -> Metrics {
        let e = &r.engine;
        metrics(&[
            ("cpu_s_per_million_msgs", r.cpu_s_per_million_msgs()),
            ("p50_us", e.p50_us),
            ("p99_us", e.p99_us),
            ("p999_us", e.p999_us),
            ("max_us", e.max_us),
            ("msgs_per_s", r.msgs_per_s()),
            ("send_lag_p99_us", r.load.p99_us),
        ])
    }

    fn load(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
