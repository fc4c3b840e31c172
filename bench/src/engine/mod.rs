//! The consuming / relaying side of every scenario, one module per engine.
//! Each runs in its own process: it opens its FIFOs, prints `READY n` (n:
//! FIFOs it managed to open), does the work, and prints an
//! [`EngineReport`] as JSON.

use std::io::{self, Write};

use crate::spec::{EngineReport, RunSpec, Sink, Work, percentiles_us};
use crate::sys;

mod epoll;
mod threads;
mod tokio_pipe;
mod uring;

/// Engine names, in table order.
pub const ENGINES: [&str; 9] = [
    "uring",
    "uring-multishot",
    "uring-splice",
    "uring-sqpoll",
    "uring-spin",
    "epoll",
    "threads",
    "threads-splice",
    "tokio",
];

/// Engines that run in ping-pong only unless named with `--engines`: their
/// point is latency, and they keep a core busy.
pub const LATENCY_ONLY: [&str; 2] = ["uring-sqpoll", "uring-spin"];

/// Engines that only relay (FIFO A -> FIFO B with `splice(2)`): they run in
/// the relay scenario only, named or not.
pub const RELAY_ONLY: [&str; 2] = ["uring-splice", "threads-splice"];

/// Engines that run in fan-in only unless named with `--engines`: a variant
/// of `uring` whose point is the many-FIFO consumer.
pub const FANIN_ONLY: [&str; 1] = ["uring-multishot"];

/// Whether `engine` takes part in `work` (`explicit`: engines were named
/// with `--engines`).
pub fn runs_in(engine: &str, work: &Work, explicit: bool) -> bool {
    if RELAY_ONLY.contains(&engine) {
        return matches!(work, Work::Relay { .. });
    }
    explicit
        || (!LATENCY_ONLY.contains(&engine) || matches!(work, Work::Pingpong { .. }))
            && (!FANIN_ONLY.contains(&engine) || matches!(work, Work::Fanin { .. }))
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
}

/// Runs `spec` in this process and prints the report.
pub fn run(spec: &RunSpec) -> io::Result<()> {
    sys::raise_nofile();
    if let Some(cpu) = spec.cpu {
        sys::pin_to(cpu);
    }
    let report = match spec.engine.as_str() {
        "uring" => uring::run(spec, uring::Mode::Default)?,
        "uring-sqpoll" => uring::run(spec, uring::Mode::Sqpoll)?,
        "uring-spin" => uring::run(spec, uring::Mode::Spin)?,
        "uring-multishot" => uring::run(spec, uring::Mode::Multishot)?,
        "uring-splice" => uring::run(spec, uring::Mode::Splice)?,
        "epoll" => epoll::run(spec)?,
        "threads" => threads::run(spec)?,
        "threads-splice" => threads::run_splice(spec)?,
        "tokio" => tokio_pipe::run(spec)?,
        other => return Err(io::Error::other(format!("unknown engine {other}"))),
    };
    println!(
        "{}",
        serde_json::to_string(&report).expect("report is serialisable")
    );
    Ok(())
}
