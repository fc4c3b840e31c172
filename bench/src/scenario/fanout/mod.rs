//! The `fanout` scenario: one publisher process writes 64-byte frames into
//! one FIFO; the router under test reads them and forwards every one to
//! [`SUBSCRIBERS`] subscriber FIFOs, each read by its own subscriber
//! process, which checks exact, in-order delivery and counts.
//!
//! The publisher always writes the same bytes: length-prefixed frames
//! ([`Codec::LengthPrefixed`], a 4-byte header and a 60-byte payload
//! holding the sequence number), [`BATCH`] frames per `write(2)`. So every
//! variant moves the same bytes and the subscribers check them the same
//! way; what differs is how the router handles them:
//!
//! - `uring raw`: a ringpipe receiver of byte chunks, each chunk passed to
//!   [`Proactor::send`] of every subscriber;
//! - `uring framed`: a framed receiver ([`FifoOptions::frames`]), each
//!   read's whole frames taken as one run ([`Events::runs`]), checked once
//!   ([`Checked`]) and passed to [`Proactor::send_checked`] of every
//!   subscriber (a frame split across
//!   reads to [`Proactor::send_frames`]), each subscriber FIFO written by
//!   the router alone ([`FifoOptions::sole_writer`]);
//! - `threads raw` / `threads framed`: the same with one blocking thread,
//!   `read(2)` then one `write(2)` per subscriber (framed: the frames of a
//!   read decoded with [`FrameDecoder`] and re-encoded into one buffer per
//!   subscriber).
//!
//! Every process is its own (`ringpipe-bench fanout-router|fanout-pub|
//! fanout-sub`, internal commands: [`router`], [`stream`]; one run:
//! [`run`]), so the router's CPU and peak RSS are its own. Backpressure: a
//! ringpipe subscriber that refuses a send ([`Error::WouldBlock`]) gets
//! its bytes in a backlog, the receiver is paused until every backlog is
//! flushed, so memory stays bounded by the watermarks.
//!
//! [`Codec::LengthPrefixed`]: ringpipe::frame::Codec::LengthPrefixed
//! [`Proactor::send`]: ringpipe::Proactor::send
//! [`FifoOptions::frames`]: ringpipe::FifoOptions::frames
//! [`Proactor::send_frames`]: ringpipe::Proactor::send_frames
//! [`Proactor::send_checked`]: ringpipe::Proactor::send_checked
//! [`Checked`]: ringpipe::frame::Checked
//! [`Events::runs`]: ringpipe::Events::runs
//! [`FifoOptions::sole_writer`]: ringpipe::FifoOptions::sole_writer
//! [`FrameDecoder`]: ringpipe::frame::FrameDecoder
//! [`Error::WouldBlock`]: ringpipe::Error::WouldBlock

mod router;
mod run;
mod stream;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgMatches, Args as _, ValueEnum};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::{Scenario, args};
use crate::chart::Chart;
use crate::harness::{Ctx, FAILED, Globals, Out, Part, progress};
use crate::report::{self, Goal, Metrics, Params, Pick, Record, Table, Target, mode, param};
use router::RouterReport;

/// One publisher -> router -> 3 subscribers, 64-byte length-prefixed
/// frames, every frame checked by each subscriber: ringpipe forwarding
/// raw chunks (`send`) and whole frames (`send_frames`), beside a
/// blocking-thread router doing the same; msgs/s, router CPU per message
/// and router peak RSS.
#[derive(Debug, clap::Args)]
struct Args {
    /// Variants to run, comma separated.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = Variant::ALL)]
    variants: Vec<Variant>,
    /// Frames the publisher writes per run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    msgs: u64,
    /// Another ringpipe-bench binary (built on another version of the
    /// library, with this fanout command): its router runs the uring
    /// variants too, taking turns with this one's, as modes raw-base
    /// and framed-base: a before/after in one invocation.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
}

/// The router's or the publisher's arguments.
#[derive(Debug, clap::Args)]
struct RoleArgs {
    spec: String,
}

/// A subscriber's arguments.
#[derive(Debug, clap::Args)]
struct SubArgs {
    spec: String,
    index: usize,
}

/// The scenario.
pub struct Fanout;

/// Subscriber FIFOs every frame goes to.
pub const SUBSCRIBERS: usize = 3;
/// Bytes of one frame on the wire, header included.
pub const FRAME: usize = 64;
/// Payload of one frame.
pub const PAYLOAD: usize = FRAME - 4;
/// Frames per publisher `write(2)`: 4 KiB, `PIPE_BUF`, one atomic write.
pub const BATCH: usize = 64;

/// A router and how it handles the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// ringpipe: byte chunks, `send` to each subscriber.
    UringRaw,
    /// ringpipe: a framed receiver, a read's run of frames checked once
    /// and `send_checked` to each subscriber.
    UringFramed,
    /// One blocking thread: `read`, then `write` to each subscriber.
    ThreadsRaw,
    /// One blocking thread: `read`, decode, re-encode per subscriber, write.
    ThreadsFramed,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::UringRaw,
        Variant::UringFramed,
        Variant::ThreadsRaw,
        Variant::ThreadsFramed,
    ];

    /// The engine name in the records (`uring` or `threads`).
    pub fn engine(self) -> &'static str {
        match self {
            Variant::UringRaw | Variant::UringFramed => "uring",
            Variant::ThreadsRaw | Variant::ThreadsFramed => "threads",
        }
    }

    /// The mode in the records (`raw` or `framed`).
    pub fn mode(self) -> &'static str {
        match self {
            Variant::UringRaw | Variant::ThreadsRaw => "raw",
            Variant::UringFramed | Variant::ThreadsFramed => "framed",
        }
    }

    fn framed(self) -> bool {
        self.mode() == "framed"
    }

    /// What the mode is, in a line, for the legend under the tables.
    pub fn describe(self) -> &'static str {
        if self.framed() {
            "(fanout) the router decodes the frames and forwards them whole: each read's run \
             of frames checked once and sent with one send_checked per subscriber (uring), or re-encoded into one \
             write per read (threads)"
        } else {
            "(fanout) the router forwards the bytes of each read as they are: send (uring) \
             or write (threads) to every subscriber"
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.engine(), self.mode())
    }
}

/// What every process of one run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub variant: Variant,
    pub dir: PathBuf,
    /// Frames the publisher writes.
    pub msgs: u64,
    pub subscribers: usize,
}

impl Spec {
    fn input(&self) -> PathBuf {
        self.dir.join("pub")
    }

    fn output(&self, i: usize) -> PathBuf {
        self.dir.join(format!("sub-{i}"))
    }

    fn total_bytes(&self) -> u64 {
        self.msgs * FRAME as u64
    }
}

/// How hard to run.
pub struct Plan {
    pub variants: Vec<Variant>,
    pub msgs: u64,
    pub runs: usize,
    pub warmup: usize,
    pub timeout: Duration,
    pub exe: PathBuf,
    /// Another `ringpipe-bench` (built on another version of the library)
    /// whose router also runs the ringpipe variants, taking turns with
    /// this one's: modes `raw-base` and `framed-base`.
    pub baseline: Option<PathBuf>,
}

/// One router of the run: a variant, and the binary whose router it is
/// (`None`: this one).
type Entry<'a> = (Variant, Option<&'a Path>);

pub(super) fn parse<T: serde::de::DeserializeOwned>(s: &str) -> io::Result<T> {
    serde_json::from_str(s).map_err(io::Error::other)
}

pub(super) fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The records part of a `fanout` run of `variants`, `msgs` frames each.
fn part(variants: Vec<Variant>, msgs: u64, baseline: Option<PathBuf>) -> Part {
    let runs = move |ctx: &Ctx<'_>| -> io::Result<Out> {
        let f = Plan {
            variants,
            msgs,
            runs: ctx.plan.runs,
            warmup: ctx.plan.warmup,
            timeout: ctx.plan.timeout,
            exe: ctx.exe.clone(),
            baseline,
        };
        let routers = f.variants.len()
            + f.baseline.as_ref().map_or(0, |_| {
                f.variants.iter().filter(|v| v.engine() == "uring").count()
            });
        let pb = progress(routers * (f.runs + f.warmup));
        let got = measure(&f, &ctx.base.join("fanout"), &pb);
        pb.finish_and_clear();
        if got.is_ok() {
            println!(
                "fanout: medians of {} run(s) each, {} warm-up run(s) discarded",
                f.runs, f.warmup
            );
        }
        got
    };
    Part::Records {
        name: "fanout",
        runs: Box::new(runs),
    }
}

fn targets() -> Vec<Target> {
    let uring = "uring";
    let framed = |metric| Pick {
        engine: uring,
        mode: Some("framed"),
        metric,
    };
    let raw = |metric| Pick {
        engine: uring,
        mode: Some("raw"),
        metric,
    };
    // Each subscriber holds at most its high watermark (64 KiB) beyond
    // what the raw path holds.
    let growth = "rss_growth_mib";
    let bound = Goal::AtMost {
        factor: 1.0,
        plus: 3.0 * 64.0 / 1024.0,
        unit: "MiB",
    };
    let t = |what: &str, a: Pick, b: Pick, goal: Goal| Target {
        what: what.into(),
        scenario: "fanout",
        params: Vec::new(),
        a,
        b,
        goal,
    };
    vec![
        t(
            "fanout msgs/s: uring framed >= 0.9x raw",
            framed("msgs_per_s"),
            raw("msgs_per_s"),
            Goal::AtLeast { factor: 0.9 },
        ),
        t(
            "fanout RSS growth: framed <= raw + 3 x 64 KiB",
            framed(growth),
            raw(growth),
            bound,
        ),
    ]
}

/// The modes named in `records`, said under the tables.
fn legend(records: &[Record]) -> Vec<String> {
    let modes = |m: &str| records.iter().any(|r| mode(r) == Some(m));
    let mut out = Vec::new();
    for v in [Variant::UringRaw, Variant::UringFramed] {
        if modes(v.mode()) {
            out.push(format!("{}: {}", v.mode(), v.describe()));
        }
    }
    if modes("raw-base") || modes("framed-base") {
        out.push(
            "raw-base, framed-base: (fanout) the same, by the router of the --baseline binary"
                .into(),
        );
    }
    out
}

impl Scenario for Fanout {
    fn name(&self) -> &'static str {
        "fanout"
    }

    fn commands(&self) -> Vec<clap::Command> {
        let hidden = |cmd: clap::Command, about: &'static str| cmd.hide(true).about(about);
        vec![
            Args::augment_args(clap::Command::new(self.name())),
            hidden(
                RoleArgs::augment_args(clap::Command::new("fanout-router")),
                "(internal) The router of one fan-out run",
            ),
            hidden(
                RoleArgs::augment_args(clap::Command::new("fanout-pub")),
                "(internal) The publisher of one fan-out run",
            ),
            hidden(
                SubArgs::augment_args(clap::Command::new("fanout-sub")),
                "(internal) Subscriber `index` of one fan-out run",
            ),
        ]
    }

    fn run(&self, name: &str, m: &ArgMatches, _: &Globals) -> io::Result<Option<Vec<Part>>> {
        match name {
            "fanout-router" => router::main(&args::<RoleArgs>(m)?.spec)?,
            "fanout-pub" => stream::publisher_main(&args::<RoleArgs>(m)?.spec)?,
            "fanout-sub" => {
                let a: SubArgs = args(m)?;
                stream::subscriber_main(&a.spec, a.index)?;
            }
            _ => {
                let a: Args = args(m)?;
                return Ok(Some(vec![part(a.variants, a.msgs, a.baseline)]));
            }
        }
        Ok(None)
    }

    fn quick(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(part(Variant::ALL.to_vec(), 1_000_000, None)))
    }

    fn all(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(part(Variant::ALL.to_vec(), 4_000_000, None)))
    }

    fn table(&self) -> Option<Table> {
        Some(
            Table::new(
                self.name(),
                &[
                    ("msgs_per_s", true),
                    ("cpu_s_per_million_msgs", false),
                    ("peak_rss_mib", false),
                    ("syscalls_per_1k_msgs", false),
                ],
                |r: &Record| format!("fanout 1->{}", param(r, "subscribers")),
            )
            .targets(targets)
            .legend(legend),
        )
    }

    fn charts(&self) -> Vec<Chart> {
        vec![
            Chart::PerEngine {
                file: "fanout_msgs.svg",
                scenario: self.name(),
                metric: "msgs_per_s",
                caption: "fanout: 64-byte frames, 1 publisher -> router -> 3 subscribers",
                axis: "messages/s (whisker: min-max of the runs)",
            },
            Chart::PerEngine {
                file: "fanout_cpu.svg",
                scenario: self.name(),
                metric: "cpu_s_per_million_msgs",
                caption: "fanout: router CPU per message, 3 subscribers",
                axis: "router CPU s per million messages",
            },
        ]
    }
}

/// Runs every variant `warmup + runs` times, taking turns run by run (the
/// first to go rotates), and returns one record per variant and the notes.
fn measure(plan: &Plan, dir: &Path, pb: &ProgressBar) -> io::Result<Out> {
    std::fs::create_dir_all(dir)?;
    let mut entries: Vec<Entry<'_>> = plan.variants.iter().map(|&v| (v, None)).collect();
    if let Some(base) = &plan.baseline {
        for &v in &plan.variants {
            if v.engine() == "uring" {
                entries.push((v, Some(base.as_path())));
            }
        }
    }
    let k = entries.len();
    let mut per_variant: Vec<Vec<Metrics>> = vec![Vec::new(); k];
    let mut checked: Vec<Option<u64>> = vec![None; k];
    let mut notes: Vec<String> = Vec::new();
    for round in 0..plan.warmup + plan.runs {
        for j in 0..k {
            let i = (round + j) % k;
            let (variant, router) = entries[i];
            let name = mode_name(variant, router.is_some());
            pb.set_message(format!("fanout {} {name}", variant.engine()));
            let spec = Spec {
                variant,
                dir: fresh_fifos(dir, round * k + j)?,
                msgs: plan.msgs,
                subscribers: SUBSCRIBERS,
            };
            let result = run::run_once(plan, &spec, router.unwrap_or(&plan.exe));
            let _ = std::fs::remove_dir_all(&spec.dir);
            match result {
                Ok((r, n)) if round >= plan.warmup => {
                    per_variant[i].push(metrics(&r));
                    checked[i] = Some(n);
                }
                Ok(_) => {}
                Err(e) => {
                    let n = format!("fanout {} {name}: {FAILED} {e}", variant.engine());
                    pb.println(&n);
                    if !notes.contains(&n) {
                        notes.push(n);
                    }
                }
            }
            pb.inc(1);
        }
    }
    let mut records = Vec::new();
    for ((&(variant, router), runs), checked) in entries.iter().zip(&per_variant).zip(&checked) {
        if runs.is_empty() {
            continue;
        }
        let mut params = Params::new();
        params.insert("mode".into(), mode_name(variant, router.is_some()).into());
        if let Some(path) = router {
            params.insert("router_exe".into(), path.display().to_string().into());
        }
        params.insert("subscribers".into(), SUBSCRIBERS.into());
        params.insert("msg_bytes".into(), FRAME.into());
        params.insert("msgs".into(), plan.msgs.into());
        params.insert("write_bytes".into(), (BATCH * FRAME).into());
        params.insert("high_watermark".into(), (64 * 1024).into());
        params.insert("runs".into(), runs.len().into());
        // Frames the subscribers checked in a run, each in order (every
        // run the same, or it failed).
        if let Some(n) = checked {
            params.insert("frames_checked".into(), (*n).into());
        }
        records.push(Record {
            scenario: "fanout".into(),
            engine: variant.engine().into(),
            params,
            metrics: report::medians(runs),
        });
    }
    Ok((records, notes))
}

/// New FIFOs for run `n`, in a directory of their own. A run never reuses
/// the FIFOs of the one before: an io_uring instance releases its
/// registered files after its process has exited, so the last ringpipe
/// router's ends of the FIFOs may still be open, and close, while the next
/// run's processes open theirs (a subscriber waiting for its first data
/// then sees its writer leave, and reads EOF).
fn fresh_fifos(dir: &Path, n: usize) -> io::Result<PathBuf> {
    let run = dir.join(format!("run-{n}"));
    std::fs::create_dir_all(&run)?;
    let names =
        std::iter::once("pub".to_string()).chain((0..SUBSCRIBERS).map(|i| format!("sub-{i}")));
    for name in names {
        match nix::unistd::mkfifo(
            &run.join(name),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        ) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(run)
}

/// The mode in the records: `raw` or `framed`, `-base` added for the
/// baseline binary's router.
fn mode_name(variant: Variant, baseline: bool) -> String {
    format!("{}{}", variant.mode(), if baseline { "-base" } else { "" })
}

fn metrics(r: &RouterReport) -> Metrics {
    let mut m = Metrics::new();
    if r.elapsed_s > 0.0 {
        m.insert("msgs_per_s".into(), r.msgs as f64 / r.elapsed_s);
    }
    if r.msgs > 0 {
        m.insert(
            "cpu_s_per_million_msgs".into(),
            r.cpu_s / r.msgs as f64 * 1e6,
        );
        m.insert(
            "syscalls_per_1k_msgs".into(),
            r.syscalls as f64 / r.msgs as f64 * 1e3,
        );
    }
    m.insert("peak_rss_mib".into(), r.peak_rss_mib);
    m.insert(
        "rss_growth_mib".into(),
        (r.peak_rss_mib - r.rss_ready_mib).max(0.0),
    );
    m.insert("peak_backlog_kib".into(), r.peak_backlog as f64 / 1024.0);
    m
}
