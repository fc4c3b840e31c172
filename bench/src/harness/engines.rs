//! The engine scenarios' runs: every configuration ([`EngineWork`]) run
//! by every engine that takes part, engines taking turns run by run, each
//! run three processes (this one, `ringpipe-bench engine SPEC` and
//! `ringpipe-bench loadgen SPEC COUNT`), every run's accounting checked,
//! the medians made records.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Ctx, FAILED, Out, Plan, progress};
use crate::engine::{self, Engine};
use crate::report::{Metrics, Params, Record, medians};
use crate::spec::{EngineReport, LoadReport, Shape};
use crate::sys;

/// One configuration of an engine scenario: what every engine runs, what
/// its load generator does, and how its runs become a record.
pub trait EngineWork {
    /// The scenario's name, in records, progress and notes.
    fn scenario(&self) -> &'static str;
    /// What the engine does.
    fn shape(&self) -> Shape;
    /// The parameters in a few words (`64B`, `16 fifos`), for notes.
    fn short(&self) -> String;
    /// The parameters of its record; `opened`: FIFOs the engine opened.
    fn params(&self, opened: usize) -> Params;
    /// The figures of one run.
    fn metrics(&self, r: &RunResult) -> Metrics;
    /// This configuration as the scenario's load generator reads it back
    /// ([`Scenario::load`](crate::scenario::Scenario::load)).
    fn load(&self) -> serde_json::Value;
    /// Measured runs of it.
    fn runs(&self, plan: &Plan) -> usize {
        plan.runs
    }
    /// How long the load generator stays quiet after saying `OPENED`:
    /// the engine's CPU, RSS and threads are sampled meanwhile.
    fn quiet_ms(&self) -> Option<u64> {
        None
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub engine: EngineReport,
    pub load: LoadReport,
    /// RSS (MiB) and thread count of the engine process, sampled while
    /// quiet.
    pub idle_sample: Option<(f64, u64)>,
    /// CPU milliseconds per second the engine process used while quiet.
    pub idle_cpu: Option<f64>,
    /// Units (messages, chunks) checked in order ([`Shape::account`]).
    pub checked: u64,
}

impl RunResult {
    /// `x` per second of the engine's run.
    fn per_s(&self, x: u64) -> Option<f64> {
        let e = &self.engine;
        (e.elapsed_s > 0.0).then(|| x as f64 / e.elapsed_s)
    }

    pub fn msgs_per_s(&self) -> Option<f64> {
        self.per_s(self.engine.msgs)
    }

    pub fn gib_per_s(&self) -> Option<f64> {
        self.per_s(self.engine.bytes)
            .map(|b| b / (1u64 << 30) as f64)
    }

    pub fn cpu_s_per_million_msgs(&self) -> Option<f64> {
        let e = &self.engine;
        (e.msgs > 0).then(|| e.cpu_s / e.msgs as f64 * 1e6)
    }

    pub fn cpu_s_per_gib(&self) -> Option<f64> {
        let e = &self.engine;
        (e.bytes > 0).then(|| e.cpu_s / (e.bytes as f64 / (1u64 << 30) as f64))
    }

    pub fn syscalls_per_1k_msgs(&self) -> Option<f64> {
        let e = &self.engine;
        e.syscalls
            .filter(|_| e.msgs > 0)
            .map(|s| s as f64 / e.msgs as f64 * 1e3)
    }

    /// The figures of a run of chunks (throughput, relay).
    pub fn chunk_metrics(&self) -> Metrics {
        metrics(&[
            ("gib_per_s", self.gib_per_s()),
            ("msgs_per_s", self.msgs_per_s()),
            ("cpu_s_per_million_msgs", self.cpu_s_per_million_msgs()),
            ("cpu_s_per_gib", self.cpu_s_per_gib()),
            ("syscalls_per_1k_msgs", self.syscalls_per_1k_msgs()),
        ])
    }
}

/// The figures of `figures` that apply (given and finite).
pub fn metrics(figures: &[(&str, Option<f64>)]) -> Metrics {
    figures
        .iter()
        .filter_map(|&(k, v)| Some((k.to_string(), v.filter(|v| v.is_finite())?)))
        .collect()
}

/// What the load generator process of one run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSpec {
    /// The scenario whose load side runs.
    pub scenario: String,
    /// Its configuration ([`EngineWork::load`]).
    pub work: serde_json::Value,
    pub dir: PathBuf,
    /// The engine's CPU, if pinned: the generator takes the next one.
    pub cpu: Option<usize>,
}

/// Runs every work with every engine that takes part in it (`warm`: one
/// discarded run of it per engine first); returns the records and notes.
pub fn run(
    ctx: &Ctx<'_>,
    works: &[Box<dyn EngineWork>],
    warm: Option<&dyn EngineWork>,
) -> std::io::Result<Out> {
    let (g, plan) = (ctx.globals, &ctx.plan);
    let explicit = g.engines.is_some();
    let engines: Vec<&'static Engine> = g.engines.clone().unwrap_or_else(|| engine::ALL.to_vec());
    let engines_for = |w: &dyn EngineWork| -> Vec<&'static Engine> {
        engines
            .iter()
            .copied()
            .filter(|e| e.runs_in(w.scenario(), explicit))
            .collect()
    };
    let warm_engines = warm.map(engines_for).unwrap_or_default();
    let total: usize = works
        .iter()
        .map(|w| engines_for(w.as_ref()).len() * (w.runs(plan) + plan.warmup))
        .sum::<usize>()
        + warm_engines.len();
    let pb = progress(total);
    let mut records = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // One short discarded run per engine warms caches, the page cache of
    // the binary and the kernel's pipe paths.
    if let Some(w) = warm {
        for e in &warm_engines {
            pb.set_message(format!("warm-up {e}"));
            let dir = make_dir(&ctx.base, &format!("warmup-{e}"), &w.shape())?;
            let _ = run_once(ctx, w, e, &dir);
            let _ = std::fs::remove_dir_all(&dir);
            pb.inc(1);
        }
    }

    for (k, w) in works.iter().enumerate() {
        let w = w.as_ref();
        let (engs, runs, shape) = (engines_for(w), w.runs(plan), w.shape());
        let title = format!("{} {}", w.scenario(), w.short());
        let mut per_engine: Vec<Vec<Metrics>> = vec![Vec::new(); engs.len()];
        let mut opened: Vec<Option<usize>> = vec![None; engs.len()];
        let mut checked: Vec<Option<u64>> = vec![None; engs.len()];
        // Engines take turns run by run, the first to go rotating, so slow
        // drifts of a noisy machine hit them alike.
        for round in 0..plan.warmup + runs {
            for j in 0..engs.len() {
                let i = (round + j) % engs.len();
                let e = engs[i];
                pb.set_message(format!("{title} {e}"));
                // Fresh FIFOs for every run: an io_uring instance releases
                // its registered files after its process exits, so the last
                // ringpipe engine's ends may still be open, and close, while
                // the next run opens its own.
                let dir = make_dir(
                    &ctx.base,
                    &format!("{}-{k}-{round}-{i}", w.scenario()),
                    &shape,
                )?;
                let result = run_once(ctx, w, e, &dir);
                let _ = std::fs::remove_dir_all(&dir);
                match result {
                    Ok(r) => {
                        // One note per (scenario, engine): the first run's.
                        let prefix = format!("{title} {e}: ");
                        if let Some(n) = &r.engine.note
                            && !notes.iter().any(|m| m.starts_with(&prefix))
                        {
                            notes.push(format!("{prefix}{n}"));
                        }
                        opened[i] = Some(r.engine.opened);
                        checked[i] = Some(r.checked);
                        if round >= plan.warmup {
                            per_engine[i].push(w.metrics(&r));
                        }
                    }
                    Err(err) => {
                        let n = format!("{title} {e}: {FAILED} {err}");
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
            let mut params = w.params(opened[i].unwrap_or(0));
            params.insert("runs".into(), per_engine[i].len().into());
            // Every run checked the same number, or it failed.
            if let Some(n) = checked[i] {
                params.insert("msgs_checked".into(), n.into());
            }
            if shape.bulk_relay() {
                let copy = if e.splices { "splice" } else { "read+write" };
                params.insert("copy".into(), copy.into());
            }
            if e.capped() && shape.inputs() > g.threads_cap {
                params.insert("threads_cap".into(), g.threads_cap.into());
            }
            records.push(Record {
                scenario: w.scenario().into(),
                engine: e.name.into(),
                params,
                metrics: medians(&per_engine[i]),
            });
        }
    }
    pb.finish_and_clear();
    // Scenarios run fewer times than the others (idle), by name.
    let mut fewer: Vec<String> = Vec::new();
    for w in works.iter().filter(|w| w.runs(plan) != plan.runs) {
        let n = format!("{} for {}", w.runs(plan), w.scenario());
        if !fewer.contains(&n) {
            fewer.push(n);
        }
    }
    println!(
        "medians of {} run(s) each{}, {} warm-up run(s) discarded{}",
        plan.runs,
        if fewer.is_empty() {
            String::new()
        } else {
            format!(" ({})", fewer.join(", "))
        },
        plan.warmup,
        if warm.is_some() {
            " (plus one warm-up run per engine)"
        } else {
            ""
        }
    );
    Ok((records, notes))
}

/// A directory with the FIFOs the run needs.
fn make_dir(base: &Path, name: &str, shape: &Shape) -> std::io::Result<PathBuf> {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir)?;
    for f in shape.fifo_names() {
        let path = dir.join(f);
        match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(dir)
}

/// Collects a child's stream on a thread.
pub fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
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

/// One run of `w` by engine `e` in `dir`: start the engine, wait for it
/// to be ready, start the load generator, wait for both, and parse their
/// reports.
fn run_once(
    ctx: &Ctx<'_>,
    w: &dyn EngineWork,
    e: &Engine,
    dir: &Path,
) -> Result<RunResult, String> {
    let (g, timeout) = (ctx.globals, ctx.plan.timeout);
    let shape = w.shape();
    let cpu = g.pin.then_some(0);
    let spec = engine::Spec {
        shape: shape.clone(),
        engine: e.name.into(),
        dir: dir.into(),
        cpu,
        threads_cap: g.threads_cap,
    };
    let load = LoadSpec {
        scenario: w.scenario().into(),
        work: w.load(),
        dir: dir.into(),
        cpu,
    };
    let json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    let load_json = serde_json::to_string(&load).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut eng = Command::new(&ctx.exe)
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
    let mut load = Command::new(&ctx.exe)
        .args(["loadgen", &load_json, &count.to_string()])
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
    let load_out = if let Some(quiet_ms) = w.quiet_ms() {
        let mut out = BufReader::new(load.stdout.take().expect("piped"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        if line.trim() == "OPENED" {
            // CPU over the second quarter of the quiet period (the writers'
            // opens have settled), then RSS and threads at its middle.
            std::thread::sleep(Duration::from_millis(quiet_ms / 4));
            let (cpu0, t0) = (sys::cpu_seconds_of(eng.id()), Instant::now());
            std::thread::sleep(Duration::from_millis(quiet_ms / 4));
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
    let checked = shape.account(count, &engine, &load)?;
    Ok(RunResult {
        engine,
        load,
        idle_sample,
        idle_cpu,
        checked,
    })
}

/// The last line of `out` that parses as a `T`.
pub fn last_json<T: serde::de::DeserializeOwned>(out: &str) -> Option<T> {
    out.lines().rev().find_map(|l| serde_json::from_str(l).ok())
}
