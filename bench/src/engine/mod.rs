//! The consuming / relaying side of every scenario, one module per engine.
//! Each runs in its own process: it opens its FIFOs, prints `READY n` (n:
//! FIFOs it managed to open), does the work, and prints an
//! [`EngineReport`] as JSON.

use std::fmt;
use std::io::{self, Write};
use std::time::Instant;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::spec::{EngineReport, RunSpec, Sink, Work, percentiles_us};
use crate::sys;

mod epoll;
mod threads;
mod tokio_pipe;
mod uring;

/// An engine under test. Its CLI and JSON spelling is [`Engine::name`]
/// (kebab case: `uring-multishot`); the order of [`Engine::ALL`] is the
/// order of the table's columns.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// ringpipe, `Proactor::new()` defaults.
    Uring,
    /// ringpipe, multishot reads over the provided buffer ring (fan-in only
    /// unless named).
    UringMultishot,
    /// ringpipe with `Builder::batch_wait(16, 500 us)`: poll sleeps until 16
    /// completions are ready, or 500 us have passed and one is (fan-in
    /// only unless named).
    UringBatch,
    /// ringpipe with `Builder::echo_hold(1 ms)`: the echo's write and the
    /// wait for the next request in one `io_uring_enter` (ping-pong only
    /// unless named).
    UringEcho,
    /// ringpipe, `Proactor::relay` with its defaults (splice in the kernel;
    /// relay only).
    UringSplice,
    /// ringpipe, `Proactor::relay` with `Builder::splice_direct(true)` (the
    /// default): a poll on the ring, then `splice(2)` from the proactor
    /// thread (relay only).
    UringSpliceDirect,
    /// ringpipe, `Proactor::relay` with `Builder::splice_direct(false)`: an
    /// io_uring SPLICE behind a POLL, run on an io-wq worker (relay only).
    UringSpliceIowq,
    /// ringpipe on an SQPOLL ring (ping-pong only unless named).
    UringSqpoll,
    /// ringpipe, busy polling with a zero timeout (ping-pong only unless
    /// named).
    UringSpin,
    /// Edge-triggered epoll, read until EAGAIN.
    Epoll,
    /// One blocking thread per FIFO (poll(2) above --threads-cap).
    Threads,
    /// One blocking thread calling splice(2) (relay only).
    ThreadsSplice,
    /// tokio::net::unix::pipe on a current-thread runtime.
    Tokio,
}

/// Where an engine takes part when `--engines` does not name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every scenario.
    All,
    /// Ping-pong only: its point is latency, and it keeps a core busy.
    Latency,
    /// Fan-in only: a variant whose point is the many-FIFO consumer.
    Fanin,
    /// The relay only, named or not: it only splices FIFO A into FIFO B.
    RelayOnly,
}

impl Engine {
    /// Every engine, in table order.
    pub const ALL: [Engine; 13] = [
        Engine::Uring,
        Engine::UringMultishot,
        Engine::UringBatch,
        Engine::UringEcho,
        Engine::UringSplice,
        Engine::UringSpliceDirect,
        Engine::UringSpliceIowq,
        Engine::UringSqpoll,
        Engine::UringSpin,
        Engine::Epoll,
        Engine::Threads,
        Engine::ThreadsSplice,
        Engine::Tokio,
    ];

    /// The name on the command line, in the JSON records and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Uring => "uring",
            Engine::UringMultishot => "uring-multishot",
            Engine::UringBatch => "uring-batch",
            Engine::UringEcho => "uring-echo",
            Engine::UringSplice => "uring-splice",
            Engine::UringSpliceDirect => "uring-splice-direct",
            Engine::UringSpliceIowq => "uring-splice-iowq",
            Engine::UringSqpoll => "uring-sqpoll",
            Engine::UringSpin => "uring-spin",
            Engine::Epoll => "epoll",
            Engine::Threads => "threads",
            Engine::ThreadsSplice => "threads-splice",
            Engine::Tokio => "tokio",
        }
    }

    /// The engine a record names, if it is one (records are read back from
    /// JSON files, where it is a string).
    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }

    /// What the engine is, in a line, for the legend under the tables.
    pub fn describe(self) -> &'static str {
        match self {
            Engine::Uring => {
                "ringpipe with Proactor::new() defaults: one READ_FIXED in flight per FIFO, \
                 poll sleeps in io_uring_enter until a completion"
            }
            Engine::UringMultishot => {
                "ringpipe, ReadMode::Multishot: one READ_MULTISHOT per FIFO into a provided \
                 buffer ring shared by all FIFOs"
            }
            Engine::UringBatch => {
                "ringpipe, Builder::batch_wait(16, 500 us): poll sleeps until 16 completions \
                 are ready, or 500 us have passed and one is"
            }
            Engine::UringEcho => {
                "ringpipe, Builder::echo_hold(1 ms): the echo's write and the wait for the next \
                 request in one io_uring_enter"
            }
            Engine::UringSplice => {
                "ringpipe, Proactor::relay with its defaults: splice inside the kernel, no copy \
                 through user space"
            }
            Engine::UringSpliceDirect => {
                "ringpipe, Proactor::relay with Builder::splice_direct(true) (the default): a \
                 poll on the ring, then splice(2) from the proactor thread"
            }
            Engine::UringSpliceIowq => {
                "ringpipe, Proactor::relay with Builder::splice_direct(false): an io_uring \
                 SPLICE behind a POLL, run on an io-wq kernel worker"
            }
            Engine::UringSqpoll => {
                "ringpipe, Builder::sqpoll: a kernel thread polls the submission queue (it \
                 needs a core of its own)"
            }
            Engine::UringSpin => {
                "ringpipe busy polling: poll(Some(Duration::ZERO)) in a loop, one \
                 io_uring_enter each, never sleeping (a core of its own)"
            }
            Engine::Epoll => "edge-triggered epoll, non-blocking read/write until EAGAIN",
            Engine::Threads => {
                "one blocking thread per FIFO, plain read/write (above --threads-cap each \
                 thread polls several FIFOs)"
            }
            Engine::ThreadsSplice => "one blocking thread calling splice(2) from FIFO to FIFO",
            Engine::Tokio => "tokio::net::unix::pipe on a current-thread runtime, a task per FIFO",
        }
    }

    /// Whether this is ringpipe (a mode of it) rather than a peer.
    pub fn is_ringpipe(self) -> bool {
        matches!(
            self,
            Engine::Uring
                | Engine::UringMultishot
                | Engine::UringBatch
                | Engine::UringEcho
                | Engine::UringSplice
                | Engine::UringSpliceDirect
                | Engine::UringSpliceIowq
                | Engine::UringSqpoll
                | Engine::UringSpin
        )
    }

    /// Whether the relay moves bytes with splice rather than read + write.
    pub fn splices(self) -> bool {
        matches!(
            self,
            Engine::UringSplice
                | Engine::UringSpliceDirect
                | Engine::UringSpliceIowq
                | Engine::ThreadsSplice
        )
    }

    fn scope(self) -> Scope {
        match self {
            Engine::UringSqpoll | Engine::UringSpin | Engine::UringEcho => Scope::Latency,
            Engine::UringMultishot | Engine::UringBatch => Scope::Fanin,
            Engine::UringSplice
            | Engine::UringSpliceDirect
            | Engine::UringSpliceIowq
            | Engine::ThreadsSplice => Scope::RelayOnly,
            Engine::Uring | Engine::Epoll | Engine::Threads | Engine::Tokio => Scope::All,
        }
    }

    /// Whether the engine takes part in `work` (`explicit`: engines were
    /// named with `--engines`).
    pub fn runs_in(self, work: &Work, explicit: bool) -> bool {
        match self.scope() {
            Scope::RelayOnly => matches!(work, Work::Relay { .. }),
            _ if explicit => true,
            Scope::All => true,
            Scope::Latency => matches!(work, Work::Pingpong { .. }),
            Scope::Fanin => matches!(work, Work::Fanin { .. }),
        }
    }

    fn run(self, spec: &RunSpec) -> io::Result<EngineReport> {
        match self {
            Engine::Uring => uring::run(spec, uring::Mode::Default),
            Engine::UringSqpoll => uring::run(spec, uring::Mode::Sqpoll),
            Engine::UringSpin => uring::run(spec, uring::Mode::Spin),
            Engine::UringMultishot => uring::run(spec, uring::Mode::Multishot),
            Engine::UringBatch => uring::run(spec, uring::Mode::Batch),
            Engine::UringEcho => uring::run(spec, uring::Mode::Echo),
            Engine::UringSplice => uring::run(spec, uring::Mode::Splice),
            Engine::UringSpliceDirect => uring::run(spec, uring::Mode::SpliceDirect),
            Engine::UringSpliceIowq => uring::run(spec, uring::Mode::SpliceIowq),
            Engine::Epoll => epoll::run(spec),
            Engine::Threads => threads::run(spec),
            Engine::ThreadsSplice => threads::run_splice(spec),
            Engine::Tokio => tokio_pipe::run(spec),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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

/// The pipe size of both FIFOs of a relay, the same for every engine:
/// 1 MiB (what ringpipe's relay grows its FIFOs to by default), or
/// `RINGPIPE_BENCH_PIPE_KIB=N` from the environment (`0`: the kernel's
/// default size). `None` for other work (ping-pong keeps its pipes).
pub fn relay_pipe_bytes(work: &Work) -> Option<usize> {
    if !matches!(work, Work::Relay { .. }) {
        return None;
    }
    match std::env::var("RINGPIPE_BENCH_PIPE_KIB") {
        Ok(v) => v.parse::<usize>().ok().filter(|&k| k > 0).map(|k| k * 1024),
        Err(_) => Some(1 << 20),
    }
}

/// Sizes one FIFO of a relay as [`relay_pipe_bytes`] says (`F_SETPIPE_SZ`,
/// whatever the kernel grants); returns the size it has, for the note.
pub fn size_relay_pipe(work: &Work, fd: std::os::fd::BorrowedFd<'_>) -> Option<usize> {
    use nix::fcntl::{FcntlArg, fcntl};
    if let Some(bytes) = relay_pipe_bytes(work) {
        let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(bytes as i32));
    }
    fcntl(fd, FcntlArg::F_GETPIPE_SZ).ok().map(|n| n as usize)
}

/// The sizes of the relay's two pipes, for a report's note.
pub fn pipes_note(a: Option<usize>, b: Option<usize>) -> String {
    let kib = |n: Option<usize>| n.map_or("?".into(), |n| (n / 1024).to_string());
    format!("pipes {}/{} KiB", kib(a), kib(b))
}

/// The report of a relay or ping-pong run, the same for every engine:
/// `moved` bytes passed on from `first` (the first byte in) until now,
/// CPU from `cpu0` (the clock [`announce`] returned), and the engine's own
/// syscall count.
pub fn relay_report(
    work: &Work,
    first: Option<Instant>,
    moved: u64,
    cpu0: f64,
    syscalls: u64,
    note: Option<String>,
) -> EngineReport {
    EngineReport {
        opened: 1,
        elapsed_s: first.map_or(0.0, |f| f.elapsed().as_secs_f64()),
        bytes: moved,
        msgs: work.msgs_in(moved),
        cpu_s: sys::cpu_seconds() - cpu0,
        syscalls: Some(syscalls),
        note,
        ..EngineReport::default()
    }
}

/// Runs `spec` in this process and prints the report.
pub fn run(spec: &RunSpec) -> io::Result<()> {
    sys::raise_nofile();
    if let Some(cpu) = spec.cpu {
        sys::pin_to(cpu);
    }
    let report = spec.engine.run(spec)?;
    let json = serde_json::to_string(&report).map_err(io::Error::other)?;
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three spellings of an engine (`name`, clap, serde) agree: the
    /// CLI and the JSON records must not drift apart.
    #[test]
    fn names_agree() {
        assert_eq!(Engine::value_variants(), &Engine::ALL);
        for e in Engine::ALL {
            let clap = e.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(clap.as_deref(), Some(e.name()));
            assert_eq!(serde_json::to_string(&e).ok(), Some(format!("\"{e}\"")));
            assert_eq!(Engine::from_name(e.name()), Some(e));
        }
    }

    #[test]
    fn scopes() {
        let relay = Work::Relay {
            chunk: 1,
            total_bytes: 1,
        };
        let fanin = Work::Fanin {
            fifos: 1,
            msgs_per_fifo: 1,
        };
        assert!(!Engine::UringSplice.runs_in(&fanin, true));
        assert!(Engine::UringSplice.runs_in(&relay, false));
        assert!(!Engine::UringSpin.runs_in(&fanin, false));
        assert!(Engine::UringSpin.runs_in(&fanin, true));
        assert!(Engine::UringMultishot.runs_in(&fanin, false));
        assert!(!Engine::UringMultishot.runs_in(&relay, false));
        assert!(Engine::Epoll.runs_in(&relay, false));
    }
}
