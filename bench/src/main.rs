//! `ringpipe-bench`: ringpipe against epoll, blocking threads and tokio on
//! the same scenarios, side by side.
//!
//! Every run takes three processes: this orchestrator, the engine under
//! test (`ringpipe-bench engine ...`) and the load generator
//! (`ringpipe-bench loadgen ...`), both re-executions of this binary. So the
//! engine's CPU, RSS and thread count are its own, and the load is the same
//! for every engine. The `mux` scenario starts a router process instead
//! (the multiplexer example, or `ringpipe-bench mux-threads`) and drives it
//! from this process: see [`mux`].

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

mod chart;
mod engine;
mod fanout;
mod handoff;
mod hub;
mod legend;
mod loadgen;
mod mux;
mod own;
mod report;
mod soak;
mod spec;
mod sys;

use engine::Engine;
use report::{Record, RunResult};
use spec::{EngineReport, LoadReport, RunSpec, Work};

#[derive(Debug, Parser)]
#[command(
    name = "ringpipe-bench",
    about = "ringpipe vs epoll vs blocking threads vs tokio on FIFOs, side by side"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Engines to run, comma separated (default: all; uring-sqpoll,
    /// uring-spin and uring-echo run in pingpong only, uring-multishot and
    /// uring-batch in fanin only, unless named here; uring-splice,
    /// uring-splice-direct, uring-splice-iowq and threads-splice run in relay only).
    #[arg(long, global = true, value_delimiter = ',', value_enum)]
    engines: Option<Vec<Engine>>,
    /// Write the records as one JSON array to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Measured runs per (scenario, engine, parameters); medians are reported.
    #[arg(long, global = true)]
    runs: Option<usize>,
    /// Discarded warm-up runs before the measured ones.
    #[arg(long, global = true)]
    warmup: Option<usize>,
    /// Where the FIFOs are made (default: /dev/shm if present, a tmpfs, so
    /// no engine pays a disk filesystem's inode time updates; else $TMPDIR).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Pin the engine to CPU 0 and the load generator to CPU 1.
    #[arg(long, global = true)]
    pin: bool,
    /// Most threads the threads engine starts; above it each thread waits on
    /// several FIFOs with poll(2).
    #[arg(long, global = true, default_value_t = 1024)]
    threads_cap: usize,
    /// Bound on one run, in seconds (default: 10 for quick, else 120); a
    /// run past it fails.
    #[arg(long, global = true, value_name = "SECS")]
    timeout: Option<u64>,
    /// The multiplexer binary of mux, quick and soak, used as it is
    /// (default: examples/multiplexer beside this binary, built first with
    /// cargo when this binary's workspace is there).
    #[arg(long, global = true, value_name = "PATH")]
    multiplexer: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One FIFO, chunked writes: GiB/s and messages/s.
    Throughput {
        /// Chunk sizes in bytes.
        #[arg(long, value_delimiter = ',', default_values_t = [64, 4096, 65536])]
        chunks: Vec<usize>,
        /// Bytes per run, in MiB (capped at one million writes).
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// N FIFOs fed round-robin with 64-byte messages, one consumer.
    Fanin {
        /// Numbers of FIFOs.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 256, 4096])]
        fifos: Vec<usize>,
        /// Messages per run, over all FIFOs (at least 16 per FIFO).
        #[arg(long, default_value_t = 1_000_000)]
        msgs: u64,
    },
    /// FIFO A -> engine -> FIFO B, 64 KiB chunks.
    Relay {
        /// Bytes per run, in MiB.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// 64-byte request/response over two FIFOs: round-trip percentiles.
    Pingpong {
        /// Measured round trips per run (plus 10% warm-up rounds).
        #[arg(long, default_value_t = 100_000)]
        rounds: u64,
    },
    /// Many quiet FIFOs, then one message each: RSS, threads, delivery time.
    Idle {
        /// FIFOs to open.
        #[arg(long, default_value_t = 10_000)]
        fifos: usize,
        /// How long they stay quiet, in ms.
        #[arg(long, default_value_t = 2000)]
        idle_ms: u64,
    },
    /// The multiplexer example against a blocking-threads router: 64-byte
    /// lines from N writers into 4 input FIFOs, routed to 1 output FIFO,
    /// every line checked to arrive exactly once; lines/s and router CPU
    /// per line, beside the direct ceiling (the writers straight into one
    /// FIFO). Builds the example first (see --multiplexer).
    Mux {
        /// Routers to run, comma separated.
        #[arg(long, value_delimiter = ',', value_enum, default_values_t = mux::Router::ALL)]
        routers: Vec<mux::Router>,
        /// Writer threads, spread over the 4 inputs round-robin.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        writers: u16,
        /// Lines per writer.
        #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
        lines: u64,
    },
    /// One publisher -> router -> 3 subscribers, 64-byte length-prefixed
    /// frames, every frame checked by each subscriber: ringpipe forwarding
    /// raw chunks (`send`) and whole frames (`send_frame`), beside a
    /// blocking-thread router doing the same; msgs/s, router CPU per
    /// message and router peak RSS.
    Fanout {
        /// Variants to run, comma separated.
        #[arg(long, value_delimiter = ',', value_enum, default_values_t = fanout::Variant::ALL)]
        variants: Vec<fanout::Variant>,
        /// Frames the publisher writes per run.
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        msgs: u64,
        /// Another ringpipe-bench binary (built on another version of the
        /// library, with this fanout command): its router runs the uring
        /// variants too, taking turns with this one's, as modes raw-base
        /// and framed-base: a before/after in one invocation.
        #[arg(long, value_name = "PATH")]
        baseline: Option<PathBuf>,
    },
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
        inputs: Vec<PathBuf>,
    },
    /// SVG charts from a JSON file written with --json.
    Chart {
        /// Files of JSON records (their arrays are joined).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Directory for the SVG files.
        #[arg(long, default_value = "bench/charts")]
        out: PathBuf,
    },
    /// Producer thread -> crossbeam channel -> proactor woken by a
    /// Notifier -> FIFO -> reader process, against a blocking writer
    /// thread on the same channel: messages/s, p50/p99 latency.
    Handoff(handoff::HandoffArgs),
    /// Publisher -> router (ringpipe::hub::Hub) -> 2 fast subscribers,
    /// with and without a slow third: the fast ones' p50/p99 latency,
    /// msgs/s, router CPU per message and RSS.
    Hub(hub::HubArgs),
    /// The multiplexer example and a hub for N minutes under random writer
    /// and reader SIGKILLs, reconnects and bad frames: every unit of every
    /// complete writer session must arrive exactly once (a killed one's up
    /// to its last whole write), and the router's RSS, fds and threads
    /// must stay flat. Exits with an error otherwise.
    Soak(soak::SoakArgs),
    /// (internal) One writer session of the soak.
    #[command(hide = true)]
    SoakWriter(soak::writer::WriterArgs),
    /// (internal) One reader session of the soak.
    #[command(hide = true)]
    SoakReader(soak::reader::ReaderArgs),
    /// (internal) The hub under soak.
    #[command(hide = true)]
    SoakHub(soak::hub::HubArgs),
    /// (internal) The load generator side of one run.
    #[command(hide = true)]
    Loadgen { spec: String, count: usize },
    /// (internal) The engine side of one run.
    #[command(hide = true)]
    Engine { spec: String },
    /// (internal) The blocking-threads router of `mux`, with the routing
    /// options of the multiplexer example.
    #[command(hide = true)]
    MuxThreads(mux::router::RouterArgs),
    /// (internal) The router of one fan-out run.
    #[command(hide = true)]
    FanoutRouter { spec: String },
    /// (internal) The publisher of one fan-out run.
    #[command(hide = true)]
    FanoutPub { spec: String },
    /// (internal) Subscriber `index` of one fan-out run.
    #[command(hide = true)]
    FanoutSub { spec: String, index: usize },
}

/// How hard to run: sizes and repetitions.
struct Plan {
    runs: usize,
    warmup: usize,
    idle_runs: usize,
    timeout: Duration,
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Loadgen { spec, count } => parse_spec(spec).and_then(|s| loadgen::run(&s, *count)),
        Cmd::Engine { spec } => parse_spec(spec).and_then(|s| engine::run(&s)),
        Cmd::Chart { inputs, out } => chart::render(inputs, out),
        Cmd::Report { inputs } => report::read(inputs).map(|r| print_results(&r, &[], &[])),
        Cmd::MuxThreads(args) => mux::router::run(args),
        Cmd::FanoutRouter { spec } => fanout::router_main(spec),
        Cmd::FanoutPub { spec } => fanout::publisher_main(spec),
        Cmd::FanoutSub { spec, index } => fanout::subscriber_main(spec, *index),
        Cmd::Handoff(args) => handoff::run(args, cli.runs, cli.warmup),
        Cmd::Hub(args) => hub::run(args, cli.runs, cli.warmup),
        Cmd::Soak(args) => soak::run(
            args,
            cli.multiplexer.as_deref(),
            cli.dir.as_deref(),
            cli.json.as_deref(),
        ),
        Cmd::SoakWriter(args) => soak::writer::run(args),
        Cmd::SoakReader(args) => soak::reader::run(args),
        Cmd::SoakHub(args) => soak::hub::run(args),
        _ => orchestrate(&cli),
    };
    if let Err(e) = result {
        eprintln!("ringpipe-bench: {e}");
        std::process::exit(1);
    }
}

fn parse_spec(s: &str) -> std::io::Result<RunSpec> {
    serde_json::from_str(s).map_err(std::io::Error::other)
}

/// The scenario configurations of a command.
fn works(cmd: &Cmd) -> Vec<Work> {
    let throughput = |chunks: &[usize], mib: u64, max_writes: u64| -> Vec<Work> {
        chunks
            .iter()
            .map(|&chunk| Work::Throughput {
                chunk,
                total_bytes: (mib << 20).min(chunk as u64 * max_writes),
            })
            .collect()
    };
    let fanin = |fifos: &[usize], msgs: u64| -> Vec<Work> {
        fifos
            .iter()
            .map(|&n| Work::Fanin {
                fifos: n,
                msgs_per_fifo: (msgs / n as u64).max(16),
            })
            .collect()
    };
    let relay = |mib: u64| Work::Relay {
        chunk: 64 * 1024,
        total_bytes: mib << 20,
    };
    let pingpong = |rounds: u64| Work::Pingpong {
        rounds,
        warmup: rounds / 10,
    };
    match cmd {
        Cmd::Throughput { chunks, mib } => throughput(chunks, *mib, 1_000_000),
        Cmd::Fanin { fifos, msgs } => fanin(fifos, *msgs),
        Cmd::Relay { mib } => vec![relay(*mib)],
        Cmd::Pingpong { rounds } => vec![pingpong(*rounds)],
        Cmd::Idle { fifos, idle_ms } => vec![Work::Idle {
            fifos: *fifos,
            idle_ms: *idle_ms,
        }],
        Cmd::Quick => {
            let mut w = throughput(&[64, 4096, 65536], 128, 200_000);
            w.extend(fanin(&[1, 16, 256, 4096], 100_000));
            w.push(relay(128));
            w.push(pingpong(10_000));
            w.push(Work::Idle {
                fifos: 10_000,
                idle_ms: 300,
            });
            w
        }
        Cmd::All => {
            let mut w = throughput(&[64, 4096, 65536], 1024, 1_000_000);
            w.extend(fanin(&[1, 16, 256, 4096], 1_000_000));
            w.push(relay(1024));
            w.push(pingpong(100_000));
            w.push(Work::Idle {
                fifos: 10_000,
                idle_ms: 2000,
            });
            w
        }
        _ => Vec::new(),
    }
}

fn orchestrate(cli: &Cli) -> std::io::Result<()> {
    let quick = matches!(cli.cmd, Cmd::Quick);
    let plan = Plan {
        runs: cli.runs.unwrap_or(if quick { 3 } else { 5 }).max(1),
        warmup: cli.warmup.unwrap_or(if quick { 0 } else { 1 }),
        idle_runs: cli.runs.unwrap_or(if quick { 2 } else { 3 }).max(1),
        timeout: Duration::from_secs(cli.timeout.unwrap_or(if quick { 10 } else { 120 })),
    };
    let exe = std::env::current_exe()?;
    for w in works(&cli.cmd) {
        w.check().map_err(std::io::Error::other)?;
    }
    // Built or found before anything runs: a missing example fails at once.
    let given = cli.multiplexer.as_deref();
    let multiplexer = match &cli.cmd {
        Cmd::Mux { routers, .. } if routers.contains(&mux::Router::Multiplexer) => {
            Some(mux::multiplexer(&exe, given)?)
        }
        Cmd::Quick => Some(mux::multiplexer(&exe, given)?),
        _ => None,
    };
    let mux_plan = match &cli.cmd {
        Cmd::Mux {
            routers,
            writers,
            lines,
        } => {
            if cli.engines.is_some() {
                return Err(std::io::Error::other(
                    "mux compares routers, not engines: use --routers",
                ));
            }
            Some(mux::Plan {
                routers: routers.clone(),
                writers: usize::from(*writers),
                lines: *lines,
                runs: plan.runs,
                warmup: plan.warmup,
                timeout: plan.timeout,
                exe: exe.clone(),
                multiplexer: multiplexer.clone(),
            })
        }
        _ => None,
    };
    let nofile = sys::raise_nofile();
    let root = cli.dir.clone().unwrap_or_else(own::fifo_root);
    let base = root.join(format!("ringpipe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    let started = Instant::now();
    println!("{}", report::machine(nofile));
    println!("FIFOs in {}", root.display());

    let mut out = match (&mux_plan, &cli.cmd) {
        (Some(m), _) => run_mux(m, &base),
        (None, Cmd::Fanout { .. }) => Ok((Vec::new(), Vec::new())),
        (None, _) => engine_scenarios(cli, &plan, &exe, &base),
    };
    let fanout_msgs = match &cli.cmd {
        Cmd::Fanout { msgs, .. } => Some(*msgs),
        Cmd::Quick => Some(1_000_000),
        Cmd::All => Some(4_000_000),
        _ => None,
    };
    if let (Ok((records, notes)), Some(msgs)) = (&mut out, fanout_msgs) {
        let (variants, baseline) = match &cli.cmd {
            Cmd::Fanout {
                variants, baseline, ..
            } => (variants.clone(), baseline.clone()),
            _ => (fanout::Variant::ALL.to_vec(), None),
        };
        let f = fanout::Plan {
            variants,
            msgs,
            runs: plan.runs,
            warmup: plan.warmup,
            timeout: plan.timeout,
            exe: exe.clone(),
            baseline,
        };
        let routers = f.variants.len()
            + f.baseline.as_ref().map_or(0, |_| {
                f.variants.iter().filter(|v| v.engine() == "uring").count()
            });
        let pb = progress(routers * (f.runs + f.warmup));
        let got = fanout::measure(&f, &base.join("fanout"), &pb);
        pb.finish_and_clear();
        match got {
            Ok((mut r, mut n)) => {
                println!(
                    "fanout: medians of {} run(s) each, {} warm-up run(s) discarded",
                    f.runs, f.warmup
                );
                records.append(&mut r);
                notes.append(&mut n);
            }
            Err(e) => notes.push(format!("fanout: run failed: {e}")),
        }
    }
    // quick: the mux scenario too, then hand-off and hub, which print
    // tables of their own.
    let mut tables = Vec::new();
    if let (Ok((records, notes)), Cmd::Quick) = (&mut out, &cli.cmd) {
        let m = mux::Plan {
            routers: mux::Router::ALL.to_vec(),
            writers: 4,
            lines: 1 << 18,
            runs: plan.runs,
            warmup: plan.warmup,
            timeout: plan.timeout,
            exe: exe.clone(),
            multiplexer,
        };
        match run_mux(&m, &base) {
            Ok((mut r, mut n)) => {
                records.append(&mut r);
                notes.append(&mut n);
            }
            Err(e) => notes.push(format!("mux: run failed: {e}")),
        }
        let pb = progress(2);
        pb.set_message("handoff");
        let handoff = handoff::quick(plan.runs);
        pb.inc(1);
        pb.set_message("hub");
        let hub = hub::quick(plan.runs);
        pb.finish_and_clear();
        for (name, got) in [("handoff", handoff), ("hub", hub)] {
            match got {
                Ok(text) => tables.push(text),
                Err(e) => notes.push(format!("{name}: run failed: {e}")),
            }
        }
    }
    let (records, notes) = out.inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&base);
    })?;
    let _ = std::fs::remove_dir_all(&base);

    print_results(&records, &tables, &notes);
    println!("total time: {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&records).map_err(std::io::Error::other)?;
        std::fs::write(path, json + "\n")?;
        println!("records written to {}", path.display());
    }
    let failed = notes.iter().filter(|n| n.contains(FAILED)).count();
    if failed > 0 {
        return Err(std::io::Error::other(format!(
            "{failed} failure(s), each in the notes (\"{FAILED}\"): those runs' figures are left out"
        )));
    }
    Ok(())
}

/// What every note of a failed run says: a run that miscounts, times out
/// or breaks gives no figure, and the command exits with an error.
const FAILED: &str = "run failed:";

/// The tables (those of records, then `tables` as they are), the names
/// of the engines and modes, the summary, the flags, the targets and the
/// notes; every line but those of `tables` within 120 columns.
fn print_results(records: &[Record], tables: &[String], notes: &[String]) {
    println!("{}", wrap(report::LEGEND, ""));
    println!();
    print!("{}", report::table(records));
    for t in tables {
        println!("{t}");
    }
    let names = legend::lines(records);
    if !names.is_empty() {
        println!("engines and modes in the tables above:");
        for line in names {
            println!("{}", wrap(&format!("- {line}"), "  "));
        }
        println!();
    }
    let summary = report::summary(records);
    if !summary.is_empty() {
        println!(
            "ringpipe against the best peer (ratio of medians; noisy: the spreads overlap):\n{summary}"
        );
    }
    let flags = report::flags(records);
    if !flags.is_empty() {
        println!(
            "flagged (each ! above): ringpipe >= {}x worse than the best peer, the ranges apart:\n{flags}",
            report::FLAG_RATIO
        );
    }
    let t = report::targets(records);
    if !t.is_empty() {
        println!(
            "{}",
            wrap(
                "targets: the goals the project sets itself for ringpipe (what it aims to reach \
                 against the peers, not a check of this run), each judged on these runs: met, \
                 MISSED, or noisy when the runs disagree; the ratio of medians [worst-best over \
                 the runs]:",
                ""
            )
        );
        print!("{t}");
    }
    if !notes.is_empty() {
        println!("notes:");
        for n in notes {
            println!("{}", wrap(&format!("- {n}"), "  "));
        }
    }
}

/// `text` wrapped at word boundaries to [`report::WIDTH`] bytes (so as
/// many columns at most), continuation lines starting with `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > report::WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
        } else if !line.is_empty() && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// The mux scenario of `m`: records and notes.
fn run_mux(m: &mux::Plan, base: &Path) -> std::io::Result<(Vec<Record>, Vec<String>)> {
    if let Some(bin) = &m.multiplexer {
        println!("router under test: {} ({})", bin.display(), mux::age(bin));
    }
    let pb = progress(m.routers.len() * (m.runs + m.warmup));
    let out = mux::measure(m, &base.join("mux"), &pb);
    pb.finish_and_clear();
    println!(
        "mux: medians of {} run(s) each, {} warm-up run(s) discarded",
        m.runs, m.warmup
    );
    out
}

fn progress(total: usize) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// The engine scenarios of the command: records and notes.
fn engine_scenarios(
    cli: &Cli,
    plan: &Plan,
    exe: &Path,
    base: &Path,
) -> std::io::Result<(Vec<Record>, Vec<String>)> {
    let quick = matches!(cli.cmd, Cmd::Quick);
    let explicit = cli.engines.is_some();
    let engines: Vec<Engine> = cli.engines.clone().unwrap_or_else(|| Engine::ALL.to_vec());
    let works = works(&cli.cmd);
    let engines_for = |w: &Work| -> Vec<Engine> {
        engines
            .iter()
            .copied()
            .filter(|e| e.runs_in(w, explicit))
            .collect()
    };
    let runs_for = |w: &Work| match w {
        Work::Idle { .. } => plan.idle_runs,
        _ => plan.runs,
    };
    // The quick warm-up run is a throughput run: engines that only relay
    // skip it.
    let warm_work = Work::Throughput {
        chunk: 4096,
        total_bytes: 16 << 20,
    };
    let warm_engines = engines_for(&warm_work);
    let total: usize = works
        .iter()
        .map(|w| engines_for(w).len() * (runs_for(w) + plan.warmup))
        .sum::<usize>()
        + if quick { warm_engines.len() } else { 0 };
    let pb = progress(total);
    let mut records = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    if quick {
        // One short discarded run per engine warms caches, the page cache of
        // the binary and the kernel's pipe paths.
        let w = &warm_work;
        for e in &warm_engines {
            pb.set_message(format!("warm-up {e}"));
            let dir = make_dir(base, &format!("warmup-{e}"), w)?;
            let _ = run_once(exe, &spec_for(w, *e, &dir, cli), plan.timeout);
            let _ = std::fs::remove_dir_all(&dir);
            pb.inc(1);
        }
    }

    for (k, w) in works.iter().enumerate() {
        let engs = engines_for(w);
        let runs = runs_for(w);
        let mut per_engine: Vec<Vec<std::collections::BTreeMap<String, f64>>> =
            vec![Vec::new(); engs.len()];
        let mut opened: Vec<Option<usize>> = vec![None; engs.len()];
        let mut checked: Vec<Option<u64>> = vec![None; engs.len()];
        // Engines take turns run by run, the first to go rotating, so slow
        // drifts of a noisy machine hit them alike.
        for round in 0..plan.warmup + runs {
            for j in 0..engs.len() {
                let i = (round + j) % engs.len();
                let e = &engs[i];
                pb.set_message(format!("{} {} {e}", w.name(), short_params(w)));
                // Fresh FIFOs for every run: an io_uring instance releases
                // its registered files after its process exits, so the last
                // ringpipe engine's ends may still be open, and close, while
                // the next run opens its own.
                let dir = make_dir(base, &format!("{}-{k}-{round}-{i}", w.name()), w)?;
                let spec = spec_for(w, *e, &dir, cli);
                let result = run_once(exe, &spec, plan.timeout);
                let _ = std::fs::remove_dir_all(&dir);
                match result {
                    Ok(r) => {
                        // One note per (scenario, engine): the first run's.
                        let prefix = format!("{} {} {e}: ", w.name(), short_params(w));
                        if let Some(n) = &r.engine.note
                            && !notes.iter().any(|m| m.starts_with(&prefix))
                        {
                            notes.push(format!("{prefix}{n}"));
                        }
                        opened[i] = Some(r.engine.opened);
                        checked[i] = Some(r.checked);
                        if round >= plan.warmup {
                            per_engine[i].push(report::metrics(w, &r));
                        }
                    }
                    Err(err) => {
                        let n = format!("{} {} {e}: run failed: {err}", w.name(), short_params(w));
                        pb.println(&n);
                        if !notes.contains(&n) {
                            notes.push(n);
                        }
                    }
                }
                pb.inc(1);
            }
        }
        for (i, e) in engs.iter().enumerate() {
            if per_engine[i].is_empty() {
                continue;
            }
            let mut params = report::params(w);
            params.insert("runs".into(), per_engine[i].len().into());
            // Every run checked the same number, or it failed.
            if let Some(n) = checked[i] {
                params.insert("msgs_checked".into(), n.into());
            }
            if let (Work::Idle { .. } | Work::Fanin { .. }, Some(n)) = (w, opened[i]) {
                params.insert("fifos_opened".into(), n.into());
            }
            if let Work::Relay { .. } = w {
                let copy = if e.splices() { "splice" } else { "read+write" };
                params.insert("copy".into(), copy.into());
            }
            if *e == Engine::Threads && w.inputs() > cli.threads_cap {
                params.insert("threads_cap".into(), cli.threads_cap.into());
            }
            records.push(Record {
                scenario: w.name().into(),
                engine: e.name().into(),
                params,
                metrics: report::medians(&per_engine[i]),
            });
        }
    }
    pb.finish_and_clear();
    println!(
        "medians of {} run(s) each ({} for idle), {} warm-up run(s) discarded{}",
        plan.runs,
        plan.idle_runs,
        plan.warmup,
        if quick {
            " (plus one warm-up run per engine)"
        } else {
            ""
        }
    );
    Ok((records, notes))
}

fn short_params(w: &Work) -> String {
    match w {
        Work::Throughput { chunk, .. } | Work::Relay { chunk, .. } => format!("{chunk}B"),
        Work::Fanin { fifos, .. } | Work::Idle { fifos, .. } => format!("{fifos} fifos"),
        Work::Pingpong { .. } => "64B".into(),
    }
}

fn spec_for(w: &Work, engine: Engine, dir: &Path, cli: &Cli) -> RunSpec {
    RunSpec {
        work: w.clone(),
        engine,
        dir: dir.into(),
        cpu: cli.pin.then_some(0),
        threads_cap: cli.threads_cap,
    }
}

/// A directory with the FIFOs the scenario needs, reused by its runs.
fn make_dir(base: &Path, name: &str, w: &Work) -> std::io::Result<PathBuf> {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir)?;
    for f in w.fifo_names() {
        let path = dir.join(f);
        match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(dir)
}

/// Collects a child's stream on a thread.
fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One run: start the engine, wait for it to be ready, start the load
/// generator, wait for both, and parse their reports.
fn run_once(exe: &Path, spec: &RunSpec, timeout: Duration) -> Result<RunResult, String> {
    let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut eng = Command::new(exe)
        .args(["engine", &json])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn engine: {e}"))?;
    let eng_err = collect(eng.stderr.take().expect("piped"));
    let mut eng_out = BufReader::new(eng.stdout.take().expect("piped"));
    let mut line = String::new();
    let _ = eng_out.read_line(&mut line);
    let Some(count) = line
        .strip_prefix("READY ")
        .and_then(|n| n.trim().parse::<usize>().ok())
    else {
        kill(&mut eng);
        return Err(format!(
            "engine not ready: {}",
            eng_err.join().unwrap_or_default().trim()
        ));
    };
    let eng_out = collect(eng_out);
    let mut load = Command::new(exe)
        .args(["loadgen", &json, &count.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            kill(&mut eng);
            format!("spawn loadgen: {e}")
        })?;
    let load_err = collect(load.stderr.take().expect("piped"));
    let (mut idle_sample, mut idle_cpu) = (None, None);
    let load_out = if let Work::Idle { idle_ms, .. } = spec.work {
        let mut out = BufReader::new(load.stdout.take().expect("piped"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        if line.trim() == "OPENED" {
            // CPU over the second quarter of the quiet period (the writers'
            // opens have settled), then RSS and threads at its middle.
            std::thread::sleep(Duration::from_millis(idle_ms / 4));
            let (cpu0, t0) = (sys::cpu_seconds_of(eng.id()), Instant::now());
            std::thread::sleep(Duration::from_millis(idle_ms / 4));
            let cpu1 = sys::cpu_seconds_of(eng.id());
            idle_cpu = cpu0
                .zip(cpu1)
                .map(|(a, b)| (b - a) * 1e3 / t0.elapsed().as_secs_f64());
            idle_sample = sys::rss_and_threads(eng.id());
        }
        collect(out)
    } else {
        collect(load.stdout.take().expect("piped"))
    };
    let (mut eng_status, mut load_status) = (None, None);
    while eng_status.is_none() || load_status.is_none() {
        if eng_status.is_none() {
            eng_status = eng.try_wait().map_err(|e| e.to_string())?;
        }
        if load_status.is_none() {
            load_status = load.try_wait().map_err(|e| e.to_string())?;
        }
        if Instant::now() > deadline {
            kill(&mut eng);
            kill(&mut load);
            return Err(format!("timed out after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (eo, ee) = (
        eng_out.join().unwrap_or_default(),
        eng_err.join().unwrap_or_default(),
    );
    let (lo, le) = (
        load_out.join().unwrap_or_default(),
        load_err.join().unwrap_or_default(),
    );
    let (es, ls) = (eng_status.expect("exited"), load_status.expect("exited"));
    if !es.success() {
        return Err(format!("engine {es}: {}", ee.trim()));
    }
    if !ls.success() {
        return Err(format!("load generator {ls}: {}", le.trim()));
    }
    let engine: EngineReport = last_json(&eo).ok_or_else(|| format!("no engine report: {eo}"))?;
    let load: LoadReport = last_json(&lo).ok_or_else(|| format!("no load report: {lo}"))?;
    let checked = spec.work.account(count, &engine, &load)?;
    Ok(RunResult {
        engine,
        load,
        idle_sample,
        idle_cpu,
        checked,
    })
}

fn last_json<T: serde::de::DeserializeOwned>(out: &str) -> Option<T> {
    out.lines().rev().find_map(|l| serde_json::from_str(l).ok())
}
