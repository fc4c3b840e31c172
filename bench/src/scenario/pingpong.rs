//! `pingpong`: 64-byte requests on FIFO `req`, echoed by the engine on
//! FIFO `resp`, every echo checked against its request: round-trip
//! percentiles.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use clap::{ArgMatches, Args as _};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Scenario, args};
use crate::chart::Chart;
use crate::harness::engines::{EngineWork, RunResult, metrics};
use crate::harness::{Globals, Part, load};
use crate::report::{Metrics, Params, Pick, Record, Table, Target, at_most};
use crate::spec::{
    Flow, LoadReport, MSG, SAMPLE_EVERY, Shape, Unit, new_histogram, percentiles_us, stamp,
};
use crate::sys;

/// 64-byte request/response over two FIFOs: round-trip percentiles.
#[derive(Debug, clap::Args)]
struct Args {
    /// Measured round trips per run (plus 10% warm-up rounds).
    #[arg(long, default_value_t = 100_000)]
    rounds: u64,
}

/// The scenario.
pub struct Pingpong;

/// One configuration: `warmup` rounds, then `rounds` measured ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Run {
    rounds: u64,
    warmup: u64,
}

fn works(rounds: u64) -> Vec<Box<dyn EngineWork>> {
    vec![Box::new(Run {
        rounds,
        warmup: rounds / 10,
    })]
}

fn targets() -> Vec<Target> {
    let p50 = "p50_us";
    let t = |what: &str, a: Pick, b: Pick, factor: f64| Target {
        what: what.into(),
        scenario: "pingpong",
        params: Vec::new(),
        a,
        b,
        goal: at_most(factor),
    };
    vec![
        t(
            "pingpong p50: uring <= 1.0x epoll",
            Pick::of("uring", p50),
            Pick::of("epoll", p50),
            1.0,
        ),
        t(
            "pingpong p50: uring-spin <= 0.5x threads",
            Pick::of("uring-spin", p50),
            Pick::of("threads", p50),
            0.5,
        ),
    ]
}

impl Scenario for Pingpong {
    fn name(&self) -> &'static str {
        "pingpong"
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![Args::augment_args(clap::Command::new(self.name()))]
    }

    fn run(&self, _: &str, m: &ArgMatches, _: &Globals) -> io::Result<Option<Vec<Part>>> {
        let a: Args = args(m)?;
        Ok(Some(vec![Part::engines(works(a.rounds))]))
    }

    fn quick(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(10_000))))
    }

    fn all(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(100_000))))
    }

    fn table(&self) -> Option<Table> {
        Some(
            Table::new(
                self.name(),
                &[("p50_us", false), ("p99_us", false), ("p999_us", false)],
                |_: &Record| "pingpong 64B".to_string(),
            )
            .targets(targets),
        )
    }

    fn charts(&self) -> Vec<Chart> {
        vec![Chart::Percentiles {
            file: "pingpong_latency.svg",
            scenario: self.name(),
            caption: "ping-pong: 64-byte round trip over two FIFOs",
            axis: "round trip, us (log scale)",
        }]
    }

    fn load(&self, work: &Value, dir: &Path, _: usize) -> io::Result<LoadReport> {
        let Run { rounds, warmup } = load::read(work)?;
        let mut report = LoadReport::default();
        let req = load::open_writer(&dir.join("req"))?;
        // Blocks until the engine opens the response FIFO for writing.
        let resp = open(
            &dir.join("resp"),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut hist = new_histogram();
        let mut msg = [0u8; MSG];
        let mut back = [0u8; MSG];
        let start = Instant::now();
        for i in 0..warmup + rounds {
            let t = Instant::now();
            stamp(&mut msg, 0, i, i);
            sys::write_all(&req, &msg)?;
            let mut got = 0;
            while got < MSG {
                match sys::read(resp.as_fd(), &mut back[got..]) {
                    Ok(0) => return Err(io::Error::other("engine closed the response FIFO")),
                    Ok(n) => got += n,
                    Err(e) => return Err(e.into()),
                }
            }
            if i >= warmup {
                let _ = hist.record(t.elapsed().as_nanos().max(1) as u64);
            }
            if back != msg {
                return Err(io::Error::other(format!("round {i}: the echo differs")));
            }
            report.checked += 1;
        }
        report.elapsed_s = start.elapsed().as_secs_f64();
        (report.p50_us, report.p99_us, report.p999_us) = percentiles_us(&hist);
        Ok(report)
    }
}

impl EngineWork for Run {
    fn scenario(&self) -> &'static str {
        Pingpong.name()
    }

    fn shape(&self) -> Shape {
        Shape {
            flow: Flow::Relay {
                from: "req".into(),
                to: "resp".into(),
                bulk: false,
            },
            bytes_per_input: (self.rounds + self.warmup) * MSG as u64,
            unit: Unit::Message {
                sample_every: SAMPLE_EVERY,
            },
        }
    }

    fn short(&self) -> String {
        "64B".into()
    }

    fn params(&self, _: usize) -> Params {
        Params::from([
            ("msg_bytes".into(), MSG.into()),
            ("rounds".into(), self.rounds.into()),
            ("warmup_rounds".into(), self.warmup.into()),
        ])
    }

    fn metrics(&self, r: &RunResult) -> Metrics {
        let l = &r.load;
        metrics(&[
            ("p50_us", l.p50_us),
            ("p99_us", l.p99_us),
            ("p999_us", l.p999_us),
            ("cpu_s_per_million_msgs", r.cpu_s_per_million_msgs()),
            ("syscalls_per_1k_msgs", r.syscalls_per_1k_msgs()),
        ])
    }

    fn load(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
