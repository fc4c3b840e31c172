//! Turning runs into records: per-run metrics, medians, the comparison
//! table, the target checks and the machine description.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::Engine;
use crate::mux::Router;
use crate::spec::{EngineReport, LoadReport, Work};

/// One (scenario, engine, parameters) result: medians over the runs. The
/// JSON field names are read by other tools: keep them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub scenario: String,
    pub engine: String,
    pub params: BTreeMap<String, Value>,
    pub metrics: BTreeMap<String, f64>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub engine: EngineReport,
    pub load: LoadReport,
    /// RSS (MiB) and thread count of the engine process, sampled while idle.
    pub idle_sample: Option<(f64, u64)>,
    /// CPU milliseconds per second the engine process used while idle.
    pub idle_cpu: Option<f64>,
}

/// The records of JSON files written with `--json`, joined.
pub fn read(inputs: &[std::path::PathBuf]) -> std::io::Result<Vec<Record>> {
    let mut records = Vec::new();
    for input in inputs {
        let text = std::fs::read_to_string(input)?;
        let mut more: Vec<Record> = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", input.display())))?;
        records.append(&mut more);
    }
    Ok(records)
}

/// The parameters of a scenario as they appear in records.
pub fn params(work: &Work) -> BTreeMap<String, Value> {
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        p.insert(k.to_string(), v);
    };
    match *work {
        Work::Throughput { chunk, total_bytes } => {
            put("chunk_bytes", chunk.into());
            put("total_bytes", total_bytes.into());
        }
        Work::Fanin {
            fifos,
            msgs_per_fifo,
        } => {
            put("fifos", fifos.into());
            put("msg_bytes", crate::spec::MSG.into());
            put("msgs_per_fifo", msgs_per_fifo.into());
        }
        Work::Relay { chunk, total_bytes } => {
            put("chunk_bytes", chunk.into());
            put("total_bytes", total_bytes.into());
        }
        Work::Pingpong { rounds, warmup } => {
            put("msg_bytes", crate::spec::MSG.into());
            put("rounds", rounds.into());
            put("warmup_rounds", warmup.into());
        }
        Work::Idle { fifos, idle_ms } => {
            put("fifos", fifos.into());
            put("idle_ms", idle_ms.into());
        }
    }
    p
}

/// The metrics of one run; a metric that does not apply is left out.
pub fn metrics(work: &Work, r: &RunResult) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let e = &r.engine;
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            m.insert(k.to_string(), v);
        }
    };
    let per_s = |x: u64| (e.elapsed_s > 0.0).then(|| x as f64 / e.elapsed_s);
    let cpu_per_million = (e.msgs > 0).then(|| e.cpu_s / e.msgs as f64 * 1e6);
    let syscalls_per_1k = e
        .syscalls
        .filter(|_| e.msgs > 0)
        .map(|s| s as f64 / e.msgs as f64 * 1e3);
    match work {
        Work::Throughput { .. } | Work::Relay { .. } => {
            put("gib_per_s", per_s(e.bytes).map(|b| b / (1u64 << 30) as f64));
            put("msgs_per_s", per_s(e.msgs));
            put("cpu_s_per_million_msgs", cpu_per_million);
            put("syscalls_per_1k_msgs", syscalls_per_1k);
        }
        Work::Fanin { .. } => {
            put("msgs_per_s", per_s(e.msgs));
            put("cpu_s_per_million_msgs", cpu_per_million);
            put("syscalls_per_1k_msgs", syscalls_per_1k);
            put("p50_us", e.p50_us);
            put("p99_us", e.p99_us);
            put("p999_us", e.p999_us);
        }
        Work::Pingpong { .. } => {
            put("p50_us", r.load.p50_us);
            put("p99_us", r.load.p99_us);
            put("p999_us", r.load.p999_us);
            put("cpu_s_per_million_msgs", cpu_per_million);
            put("syscalls_per_1k_msgs", syscalls_per_1k);
        }
        Work::Idle { .. } => {
            put("rss_mib", r.idle_sample.map(|s| s.0));
            put("threads", r.idle_sample.map(|s| s.1 as f64));
            put("idle_cpu_ms_per_s", r.idle_cpu);
            put("deliver_all_ms", e.max_us.map(|us| us / 1000.0));
            put("p50_us", e.p50_us);
            put("p99_us", e.p99_us);
        }
    }
    m
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians, metric by metric, over the runs that reported it.
pub fn medians(runs: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut by_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (k, v) in run {
            by_key.entry(k.clone()).or_default().push(*v);
        }
    }
    by_key.into_iter().map(|(k, v)| (k, median(v))).collect()
}

/// Which metrics the comparison table shows per scenario, and whether
/// higher is better.
fn table_metrics(scenario: &str) -> &'static [(&'static str, bool)] {
    match scenario {
        "throughput" => &[("gib_per_s", true), ("cpu_s_per_million_msgs", false)],
        "fanin" => &[
            ("msgs_per_s", true),
            ("cpu_s_per_million_msgs", false),
            ("syscalls_per_1k_msgs", false),
            ("p99_us", false),
        ],
        "relay" => &[
            ("gib_per_s", true),
            ("cpu_s_per_million_msgs", false),
            ("syscalls_per_1k_msgs", false),
        ],
        "pingpong" => &[("p50_us", false), ("p99_us", false), ("p999_us", false)],
        "idle" => &[
            ("rss_mib", false),
            ("threads", false),
            ("idle_cpu_ms_per_s", false),
            ("deliver_all_ms", false),
        ],
        "mux" => &[("lines_per_s", true), ("router_cpu_ns_per_line", false)],
        _ => &[],
    }
}

/// Short name of a metric for the table.
fn short(metric: &str) -> &str {
    match metric {
        "gib_per_s" => "GiB/s",
        "msgs_per_s" => "msgs/s",
        "cpu_s_per_million_msgs" => "CPU s/M msgs",
        "syscalls_per_1k_msgs" => "syscalls/1k msgs",
        "p50_us" => "p50 us",
        "p99_us" => "p99 us",
        "p999_us" => "p99.9 us",
        "rss_mib" => "RSS MiB",
        "threads" => "threads",
        "idle_cpu_ms_per_s" => "idle CPU ms/s",
        "deliver_all_ms" => "deliver all ms",
        "lines_per_s" => "lines/s",
        "router_cpu_ns_per_line" => "router CPU ns/line",
        m => m,
    }
}

/// The scenario's defining parameter, for the table's first column.
fn label(r: &Record) -> String {
    let p = |k: &str| r.params.get(k).map(|v| v.to_string()).unwrap_or_default();
    match r.scenario.as_str() {
        "throughput" => format!("throughput {}B", p("chunk_bytes")),
        "fanin" => format!("fanin {} fifos", p("fifos")),
        "relay" => format!("relay {}B", p("chunk_bytes")),
        "pingpong" => "pingpong 64B".to_string(),
        "idle" => format!("idle {} fifos", p("fifos")),
        "mux" => format!("mux {} writers", p("writers")),
        s => s.to_string(),
    }
}

/// Three significant digits, no exponent for the usual ranges.
pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Ratio columns of the table: numerator, denominator, heading. A column
/// shows when both are in the records.
fn ratios() -> [(&'static str, &'static str, &'static str); 10] {
    use Engine::*;
    let (m, t, d) = (Router::Multiplexer, Router::Threads, Router::Direct);
    [
        (Uring.name(), Epoll.name(), "uring/epoll"),
        (Uring.name(), Threads.name(), "uring/threads"),
        (Uring.name(), Tokio.name(), "uring/tokio"),
        (UringMultishot.name(), Uring.name(), "multishot/uring"),
        (UringSplice.name(), Uring.name(), "splice/uring"),
        (
            UringSplice.name(),
            ThreadsSplice.name(),
            "splice/threads-splice",
        ),
        (UringSqpoll.name(), Threads.name(), "sqpoll/threads"),
        (UringSpin.name(), Threads.name(), "spin/threads"),
        (m.name(), t.name(), "multiplexer/threads"),
        (m.name(), d.name(), "multiplexer/direct"),
    ]
}

/// Column order of the tables: ringpipe's engines, the multiplexer, the
/// peers (mux's `threads` router is the `threads` column), the ceiling.
pub fn columns() -> Vec<&'static str> {
    let (ours, peers): (Vec<Engine>, Vec<Engine>) =
        Engine::ALL.into_iter().partition(|e| e.is_ringpipe());
    let mut cols: Vec<&'static str> = ours.into_iter().map(Engine::name).collect();
    cols.push(Router::Multiplexer.name());
    cols.extend(peers.into_iter().map(Engine::name));
    for r in Router::ALL {
        if !cols.contains(&r.name()) {
            cols.push(r.name());
        }
    }
    cols
}

/// The comparison table: one row per (scenario, parameters, metric), one
/// column per engine, then ratios of ringpipe to the baselines.
pub fn table(records: &[Record]) -> String {
    let present = |e: &str| records.iter().any(|r| r.engine == e);
    let engines: Vec<&str> = columns().into_iter().filter(|e| present(e)).collect();
    let ratio_cols: Vec<(&str, &str, &str)> = ratios()
        .into_iter()
        .filter(|(num, den, _)| present(num) && present(den))
        .collect();
    let value = |lab: &str, metric: &str, engine: &str| value(records, lab, metric, engine);
    let mut header = vec!["scenario".to_string(), "metric".to_string()];
    header.extend(engines.iter().map(|e| e.to_string()));
    header.extend(ratio_cols.iter().map(|c| c.2.to_string()));
    let mut cells: Vec<Vec<String>> = vec![header];
    for (lab, metric, _) in &rows(records) {
        let mut row = vec![lab.clone(), short(metric).to_string()];
        for e in &engines {
            row.push(value(lab, metric, e).map(fmt).unwrap_or_else(|| "-".into()));
        }
        for (num, den, _) in &ratio_cols {
            let r = match (value(lab, metric, num), value(lab, metric, den)) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
                _ => "-".into(),
            };
            row.push(r);
        }
        if row[2..].iter().any(|c| c != "-") {
            cells.push(row);
        }
    }
    render(&cells, 2)
}

/// Row keys of the tables, in first-seen order: label, metric, and whether
/// higher is better.
fn rows(records: &[Record]) -> Vec<(String, &'static str, bool)> {
    let mut rows: Vec<(String, &'static str, bool)> = Vec::new();
    for r in records {
        for &(metric, higher) in table_metrics(&r.scenario) {
            let key = (label(r), metric, higher);
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
    }
    rows
}

fn value(records: &[Record], lab: &str, metric: &str, engine: &str) -> Option<f64> {
    records
        .iter()
        .find(|r| r.engine == engine && label(r) == lab)
        .and_then(|r| r.metrics.get(metric).copied())
}

/// Whether a record's engine is ringpipe (an engine mode or the
/// multiplexer example), a peer, or neither (the direct ceiling).
fn side(engine: &str) -> Option<bool> {
    match Engine::from_name(engine) {
        Some(e) => Some(e.is_ringpipe()),
        None if engine == Router::Multiplexer.name() => Some(true),
        None => None,
    }
}

/// The summary: per row, ringpipe's default (`uring`, or the multiplexer
/// in mux) and its best mode against the best peer, as ratios of the
/// metric (read them with the `better` column).
pub fn summary(records: &[Record]) -> String {
    let header = [
        "scenario",
        "metric",
        "better",
        "ringpipe",
        "best peer",
        "ringpipe/peer",
        "best ringpipe mode",
        "mode/peer",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let cols = columns();
    for (lab, metric, higher) in rows(records) {
        let best = |ringpipe: bool| -> Option<(&str, f64)> {
            cols.iter()
                .filter(|e| side(e) == Some(ringpipe))
                .filter_map(|e| Some((*e, value(records, &lab, metric, e)?)))
                .reduce(|a, b| {
                    let b_wins = if higher { b.1 > a.1 } else { b.1 < a.1 };
                    if b_wins { b } else { a }
                })
        };
        let Some((peer, p)) = best(false) else {
            continue;
        };
        let Some((mode, m)) = best(true) else {
            continue;
        };
        let default = [Engine::Uring.name(), Router::Multiplexer.name()]
            .into_iter()
            .find_map(|e| value(records, &lab, metric, e));
        let ratio = |v: f64| {
            if p != 0.0 {
                format!("{:.2}x", v / p)
            } else {
                "-".into()
            }
        };
        cells.push(vec![
            lab.clone(),
            short(metric).to_string(),
            if higher { "higher" } else { "lower" }.to_string(),
            default.map_or_else(|| "-".into(), fmt),
            format!("{peer} {}", fmt(p)),
            default.map_or_else(|| "-".into(), ratio),
            format!("{mode} {}", fmt(m)),
            ratio(m),
        ]);
    }
    if cells.len() == 1 {
        return String::new();
    }
    render(&cells, 3)
}

/// A markdown table; the first `left` columns are left-aligned, the rest
/// right-aligned.
fn render(cells: &[Vec<String>], left: usize) -> String {
    let Some(head) = cells.first() else {
        return String::new();
    };
    let widths: Vec<usize> = (0..head.len())
        .map(|c| cells.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c < left {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    format!("{s:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", line.join(" | "));
        if i == 0 {
            let sep: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(c, w)| {
                    if c < left {
                        "-".repeat(*w)
                    } else {
                        format!("{}:", "-".repeat(w.saturating_sub(1)))
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", sep.join(" | "));
        }
    }
    out
}

/// The targets ringpipe aims for, checked against the records present.
pub fn targets(records: &[Record]) -> String {
    let get = |scenario: &str, key: &str, val: u64, engine: Engine, metric: &str| {
        records
            .iter()
            .find(|r| {
                r.scenario == scenario
                    && r.engine == engine.name()
                    && r.params.get(key).and_then(Value::as_u64) == Some(val)
            })
            .and_then(|r| r.metrics.get(metric).copied())
    };
    let mut out = String::new();
    let mut check = |what: &str, a: Option<f64>, b: Option<f64>, ok: &dyn Fn(f64) -> bool| {
        if let (Some(a), Some(b)) = (a, b)
            && b != 0.0
        {
            let ratio = a / b;
            let verdict = if ok(ratio) { "met" } else { "MISSED" };
            let _ = writeln!(out, "- {what}: {ratio:.2}x -> {verdict}");
        }
    };
    let cpu = "cpu_s_per_million_msgs";
    check(
        "fanin 256 FIFOs, CPU per message, uring/epoll <= 0.5",
        get("fanin", "fifos", 256, Engine::Uring, cpu),
        get("fanin", "fifos", 256, Engine::Epoll, cpu),
        &|r| r <= 0.5,
    );
    check(
        "fanin 256 FIFOs, CPU per message, uring/tokio <= 0.5",
        get("fanin", "fifos", 256, Engine::Uring, cpu),
        get("fanin", "fifos", 256, Engine::Tokio, cpu),
        &|r| r <= 0.5,
    );
    let sys = "syscalls_per_1k_msgs";
    check(
        "fanin 256 FIFOs, syscalls per message, uring/epoll <= 0.1",
        get("fanin", "fifos", 256, Engine::Uring, sys),
        get("fanin", "fifos", 256, Engine::Epoll, sys),
        &|r| r <= 0.1,
    );
    check(
        "throughput 64 KiB chunks, uring/threads >= 0.9",
        get(
            "throughput",
            "chunk_bytes",
            65536,
            Engine::Uring,
            "gib_per_s",
        ),
        get(
            "throughput",
            "chunk_bytes",
            65536,
            Engine::Threads,
            "gib_per_s",
        ),
        &|r| r >= 0.9,
    );
    check(
        "relay 64 KiB chunks, GiB/s, uring-splice/uring (copy) >= 1.2",
        get(
            "relay",
            "chunk_bytes",
            65536,
            Engine::UringSplice,
            "gib_per_s",
        ),
        get("relay", "chunk_bytes", 65536, Engine::Uring, "gib_per_s"),
        &|r| r >= 1.2,
    );
    check(
        "relay 64 KiB chunks, GiB/s, uring-splice/threads-splice >= 0.9",
        get(
            "relay",
            "chunk_bytes",
            65536,
            Engine::UringSplice,
            "gib_per_s",
        ),
        get(
            "relay",
            "chunk_bytes",
            65536,
            Engine::ThreadsSplice,
            "gib_per_s",
        ),
        &|r| r >= 0.9,
    );
    check(
        "pingpong p50, uring-spin (busy poll)/threads < 1.0",
        get("pingpong", "msg_bytes", 64, Engine::UringSpin, "p50_us"),
        get("pingpong", "msg_bytes", 64, Engine::Threads, "p50_us"),
        &|r| r < 1.0,
    );
    check(
        "pingpong p50, uring-sqpoll/threads < 1.0",
        get("pingpong", "msg_bytes", 64, Engine::UringSqpoll, "p50_us"),
        get("pingpong", "msg_bytes", 64, Engine::Threads, "p50_us"),
        &|r| r < 1.0,
    );
    check(
        "pingpong p50, uring (default)/threads <= 1.3",
        get("pingpong", "msg_bytes", 64, Engine::Uring, "p50_us"),
        get("pingpong", "msg_bytes", 64, Engine::Threads, "p50_us"),
        &|r| r <= 1.3,
    );
    out
}

/// Machine, kernel and pipe facts printed with every result.
pub fn machine(nofile: u64) -> String {
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .as_ref()
        .map(|u| {
            format!(
                "{} {} {}",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy(),
                u.machine().to_string_lossy()
            )
        })
        .unwrap_or_else(|| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let pipe = default_pipe_size()
        .map(|n| format!("{} KiB", n / 1024))
        .unwrap_or_else(|| "?".into());
    format!(
        "machine: {cpu}, {cpus} CPUs; kernel: {kernel}\n\
         pipe size: {pipe} (default), pipe-max-size {} KiB; RLIMIT_NOFILE soft raised to {nofile}",
        ringpipe::pipe_max_size() / 1024
    )
}

fn default_pipe_size() -> Option<usize> {
    let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETPIPE_SZ)
        .ok()
        .map(|n| n as usize)
}
