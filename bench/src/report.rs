//! Turning runs into records: per-run metrics, medians, the comparison
//! table, the target checks and the machine description.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::Engine;
use crate::mux::Router;
use crate::spec::{EngineReport, LoadReport, Work};

/// One (scenario, engine, parameters) result: medians over the runs, and
/// with two runs or more each metric's spread as `METRIC_min` and
/// `METRIC_max` beside it (see [`medians`]). The JSON field names are read
/// by other tools: keep them, add new ones.
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
    /// Units (messages, chunks) checked in order ([`Work::account`]).
    pub checked: u64,
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
            put(
                "cpu_s_per_gib",
                (e.bytes > 0).then(|| e.cpu_s / (e.bytes as f64 / (1u64 << 30) as f64)),
            );
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

fn median(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Suffixes of the spread of a metric in [`Record::metrics`]: `p99_us_min`
/// and `p99_us_max` are the lowest and highest of the runs of `p99_us`.
const MIN: &str = "_min";
const MAX: &str = "_max";

/// Medians, metric by metric, over the runs that reported it; with two
/// runs or more also the spread, each metric's lowest and highest value
/// (keys `METRIC_min`, `METRIC_max`).
pub fn medians(runs: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut by_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (k, v) in run {
            by_key.entry(k.clone()).or_default().push(*v);
        }
    }
    let mut out = BTreeMap::new();
    for (k, mut v) in by_key {
        v.sort_by(|a, b| a.total_cmp(b));
        if v.len() > 1 {
            out.insert(format!("{k}{MIN}"), v[0]);
            out.insert(format!("{k}{MAX}"), v[v.len() - 1]);
        }
        out.insert(k, median(&v));
    }
    out
}

/// A metric of a record: its median and the spread of its runs (`lo` =
/// `hi` = `med` for one run or a record written without spread).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub med: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Stat {
    pub fn of(r: &Record, metric: &str) -> Option<Stat> {
        if metric == "cpu_s_per_gib" && !r.metrics.contains_key(metric) {
            return Stat::per_gib(r);
        }
        let med = *r.metrics.get(metric)?;
        let get = |suffix: &str| r.metrics.get(&format!("{metric}{suffix}")).copied();
        Some(Stat {
            med,
            lo: get(MIN).unwrap_or(med).min(med),
            hi: get(MAX).unwrap_or(med).max(med),
        })
    }

    /// CPU per GiB of a record written before that metric existed: its
    /// CPU per million chunks over the GiB in a million chunks.
    fn per_gib(r: &Record) -> Option<Stat> {
        let chunk = r.params.get("chunk_bytes").and_then(Value::as_f64)?;
        let per_million = Stat::of(r, "cpu_s_per_million_msgs")?;
        let k = (1u64 << 30) as f64 / (chunk * 1e6);
        Some(Stat {
            med: per_million.med * k,
            lo: per_million.lo * k,
            hi: per_million.hi * k,
        })
    }

    /// `median [min-max]`, or the median alone when every run agrees.
    fn cell(self) -> String {
        if self.hi > self.lo {
            format!("{} [{}-{}]", fmt(self.med), fmt(self.lo), fmt(self.hi))
        } else {
            fmt(self.med)
        }
    }
}

/// The widest a table may be: a 120-column terminal.
pub const WIDTH: usize = 120;

impl Stat {
    /// `median ±h%`, h half the min-max range in percent of the median:
    /// the cell of a table too wide for [`cell`](Self::cell)'s.
    fn compact(self) -> String {
        if self.hi > self.lo && self.med != 0.0 {
            let h = (self.hi - self.lo) / 2.0 / self.med.abs() * 100.0;
            format!("{} ±{h:.0}%", fmt(self.med))
        } else {
            fmt(self.med)
        }
    }
}

/// How one result compares with another on a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Better,
    Worse,
    /// The spreads overlap: the runs do not tell.
    Noisy,
    /// The same figures.
    Same,
}

/// `a` against `b`; `higher`: higher is better. Better or worse only when
/// the spreads do not overlap.
pub fn compare(a: Stat, b: Stat, higher: bool) -> Cmp {
    let (a_wins, b_wins) = if higher {
        (a.lo > b.hi, b.lo > a.hi)
    } else {
        (a.hi < b.lo, b.hi < a.lo)
    };
    match (a_wins, b_wins) {
        (true, _) => Cmp::Better,
        (_, true) => Cmp::Worse,
        _ if a == b => Cmp::Same,
        _ => Cmp::Noisy,
    }
}

/// A ringpipe result this many times worse than the best peer (the spreads
/// apart) is flagged, target or not.
pub const FLAG_RATIO: f64 = 2.0;

/// Whether `a` is at least [`FLAG_RATIO`] times worse than `b`, clearly.
fn far_worse(a: Stat, b: Stat, higher: bool) -> bool {
    let ratio = if higher { b.med / a.med } else { a.med / b.med };
    compare(a, b, higher) == Cmp::Worse && ratio >= FLAG_RATIO
}

/// Which metrics the tables show per scenario, and whether higher is
/// better.
fn table_metrics(scenario: &str) -> &'static [(&'static str, bool)] {
    match scenario {
        "throughput" => &[
            ("gib_per_s", true),
            ("cpu_s_per_million_msgs", false),
            ("syscalls_per_1k_msgs", false),
        ],
        "fanin" => &[
            ("msgs_per_s", true),
            ("cpu_s_per_million_msgs", false),
            ("syscalls_per_1k_msgs", false),
            ("p99_us", false),
        ],
        "relay" => &[
            ("gib_per_s", true),
            ("cpu_s_per_gib", false),
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
        "fanout" => &[
            ("msgs_per_s", true),
            ("cpu_s_per_million_msgs", false),
            ("peak_rss_mib", false),
            ("syscalls_per_1k_msgs", false),
        ],
        _ => &[],
    }
}

/// Short name of a metric for the tables.
fn short(metric: &str) -> &str {
    match metric {
        "gib_per_s" => "GiB/s",
        "msgs_per_s" => "msgs/s",
        "cpu_s_per_million_msgs" => "CPU s/M msgs",
        "cpu_s_per_gib" => "CPU s/GiB",
        "syscalls_per_1k_msgs" => "syscalls/1k",
        "p50_us" => "p50 us",
        "p99_us" => "p99 us",
        "p999_us" => "p99.9 us",
        "rss_mib" => "RSS MiB",
        "peak_rss_mib" => "peak RSS MiB",
        "threads" => "threads",
        "idle_cpu_ms_per_s" => "idle CPU ms/s",
        "deliver_all_ms" => "deliver all ms",
        "lines_per_s" => "lines/s",
        "router_cpu_ns_per_line" => "CPU ns/line",
        m => m,
    }
}

/// A metric's heading: its short name and which way is better.
fn heading(metric: &str, higher: bool) -> String {
    format!("{} ({})", short(metric), if higher { "+" } else { "-" })
}

/// The legend printed above the tables.
pub const LEGEND: &str = "(+) higher is better, (-) lower is better; a cell is the median \
                          [min-max] of the runs (or ±half that range in % where too wide); ! \
                          marks ringpipe >= 2x worse than the best peer, the ranges apart";

/// The scenario's defining parameters: the title of its table.
fn label(r: &Record) -> String {
    let p = |k: &str| r.params.get(k).map(|v| v.to_string()).unwrap_or_default();
    match r.scenario.as_str() {
        "throughput" => format!("throughput {}B", p("chunk_bytes")),
        "fanin" => format!("fanin {} fifos", p("fifos")),
        "relay" => format!("relay {}B", p("chunk_bytes")),
        "pingpong" => "pingpong 64B".to_string(),
        "idle" => format!("idle {} fifos", p("fifos")),
        "mux" => format!("mux {} writers", p("writers")),
        "fanout" => format!("fanout 1->{}", p("subscribers")),
        s => s.to_string(),
    }
}

/// The record's mode within its scenario (fan-out: `raw` or `framed`).
fn mode(r: &Record) -> Option<&str> {
    r.params.get("mode").and_then(Value::as_str)
}

/// What is compared with what: the label, and the mode if any (fan-out
/// compares raw with raw and framed with framed).
fn group(r: &Record) -> String {
    match mode(r) {
        Some(m) => format!("{} {m}", label(r)),
        None => label(r),
    }
}

/// A row of a scenario's table: the engine, and the mode if any.
fn row_name(r: &Record) -> String {
    match mode(r) {
        Some(m) => format!("{} {m}", r.engine),
        None => r.engine.clone(),
    }
}

/// Three significant digits, no exponent for the usual ranges.
pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e5 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
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

/// Sort key of an engine: its place in [`columns`]; engines this build
/// does not know (records of another build) come after ringpipe's.
fn order(engine: &str) -> usize {
    let cols = columns();
    match cols.iter().position(|c| *c == engine) {
        Some(k) if side(engine) == Some(true) => k,
        Some(k) => k + 100,
        None if engine.starts_with("uring") => 50,
        None => 200,
    }
}

/// Whether a record's engine is ringpipe (an engine mode or the
/// multiplexer example), a peer, or neither (the direct ceiling). An
/// engine this build does not know is ringpipe if named `uring*`.
fn side(engine: &str) -> Option<bool> {
    match Engine::from_name(engine) {
        Some(e) => Some(e.is_ringpipe()),
        None if engine == Router::Multiplexer.name() => Some(true),
        None if engine.starts_with("uring") => Some(true),
        None if engine == Router::Direct.name() => None,
        None => Some(false),
    }
}

/// Labels (table titles) in first-seen order.
fn labels(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in records {
        let l = label(r);
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// The best peer's result in the record's group, if any.
fn best_peer(records: &[Record], g: &str, metric: &str, higher: bool) -> Option<(String, Stat)> {
    best(records, g, metric, higher, false)
}

fn best(
    records: &[Record],
    g: &str,
    metric: &str,
    higher: bool,
    ringpipe: bool,
) -> Option<(String, Stat)> {
    records
        .iter()
        .filter(|r| group(r) == g && side(&r.engine) == Some(ringpipe))
        .filter_map(|r| Some((r.engine.clone(), Stat::of(r, metric)?)))
        .reduce(|a, b| {
            let b_wins = if higher {
                b.1.med > a.1.med
            } else {
                b.1.med < a.1.med
            };
            if b_wins { b } else { a }
        })
}

/// One table per scenario and parameters: a row per engine (and mode), a
/// column per metric, each cell the median and the runs' range (as ±% of
/// the median where the ranges would make the table wider than
/// [`WIDTH`]).
pub fn table(records: &[Record]) -> String {
    let mut out = String::new();
    for lab in labels(records) {
        let mut rows: Vec<&Record> = records.iter().filter(|r| label(r) == lab).collect();
        // Modes in first-seen order, engines in column order within each.
        let mut modes: Vec<Option<&str>> = Vec::new();
        for r in &rows {
            if !modes.contains(&mode(r)) {
                modes.push(mode(r));
            }
        }
        rows.sort_by_key(|r| (modes.iter().position(|m| *m == mode(r)), order(&r.engine)));
        let Some(first) = rows.first() else {
            continue;
        };
        let metrics = table_metrics(&first.scenario);
        let runs = rows
            .iter()
            .filter_map(|r| r.params.get("runs").and_then(Value::as_u64))
            .max();
        let cells = |compact: bool| {
            let mut header = vec![lab.clone()];
            header.extend(metrics.iter().map(|&(m, h)| heading(m, h)));
            let mut cells = vec![header];
            for r in &rows {
                let mut row = vec![row_name(r)];
                for &(m, higher) in metrics {
                    let cell = match Stat::of(r, m) {
                        Some(st) => {
                            let flag = flagged(records, r, m, higher).is_some();
                            let v = if compact { st.compact() } else { st.cell() };
                            format!("{v}{}", if flag { " !" } else { "" })
                        }
                        None => "-".into(),
                    };
                    row.push(cell);
                }
                cells.push(row);
            }
            cells
        };
        if let Some(n) = runs {
            let _ = writeln!(out, "{lab}: {n} run(s)");
        }
        let mut text = render(&cells(false), 1);
        if text.lines().any(|l| l.len() > WIDTH) {
            text = render(&cells(true), 1);
        }
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// Row keys of the summary, in first-seen order: group, metric, and
/// whether higher is better.
fn rows(records: &[Record]) -> Vec<(String, &'static str, bool)> {
    let mut rows: Vec<(String, &'static str, bool)> = Vec::new();
    for r in records {
        for &(metric, higher) in table_metrics(&r.scenario) {
            let key = (group(r), metric, higher);
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
    }
    rows
}

/// ringpipe's default in a group: `uring`, in relay `uring-splice`
/// (`Proactor::relay`, what a relay is written with), in mux the
/// multiplexer.
fn default_of(records: &[Record], g: &str, metric: &str) -> Option<Stat> {
    let in_group: Vec<&Record> = records.iter().filter(|r| group(r) == g).collect();
    let relay = in_group.iter().any(|r| r.scenario == "relay");
    let defaults = if relay {
        [Engine::UringSplice.name(), Engine::Uring.name()]
    } else {
        [Engine::Uring.name(), Router::Multiplexer.name()]
    };
    defaults.into_iter().find_map(|e| {
        in_group
            .iter()
            .find(|r| r.engine == e)
            .and_then(|r| Stat::of(r, metric))
    })
}

/// `ratio` of `a` to `b` and the verdict: better, worse (WORSE at
/// [`FLAG_RATIO`] or more), or noisy when the spreads overlap.
fn ratio_cell(a: Stat, b: Stat, higher: bool) -> String {
    if b.med == 0.0 {
        return "-".into();
    }
    let verdict = match compare(a, b, higher) {
        Cmp::Better => "better",
        Cmp::Worse if far_worse(a, b, higher) => "WORSE",
        Cmp::Worse => "worse",
        Cmp::Noisy => "noisy",
        Cmp::Same => "same",
    };
    format!("{} {verdict}", times(a.med / b.med))
}

/// A ratio: `1.37x`, small ones with three significant digits.
fn times(r: f64) -> String {
    if r.abs() >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{}x", fmt(r))
    }
}

/// The summary: per group and metric, ringpipe's default (see
/// [`default_of`]) and its best mode against the best peer. Each ratio
/// is ringpipe's median over the peer's, with its verdict: better or worse
/// when the spreads are apart, noisy when they overlap.
pub fn summary(records: &[Record]) -> String {
    let header = [
        "scenario",
        "metric",
        "best peer",
        "default/peer",
        "best mode: mode/peer",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for (g, metric, higher) in rows(records) {
        let Some((peer, p)) = best_peer(records, &g, metric, higher) else {
            continue;
        };
        let Some((mode, m)) = best(records, &g, metric, higher, true) else {
            continue;
        };
        let default = default_of(records, &g, metric);
        cells.push(vec![
            g.clone(),
            heading(metric, higher),
            format!("{peer} {}", fmt(p.med)),
            default.map_or_else(|| "-".into(), |d| ratio_cell(d, p, higher)),
            format!("{mode}: {}", ratio_cell(m, p, higher)),
        ]);
    }
    if cells.len() == 1 {
        return String::new();
    }
    render(&cells, 3)
}

/// The best peer of `r`'s group if `r` is ringpipe's and at least
/// [`FLAG_RATIO`] times worse on `metric`, the spreads apart: what a
/// table marks with `!`.
fn flagged(records: &[Record], r: &Record, metric: &str, higher: bool) -> Option<(String, Stat)> {
    let st = Stat::of(r, metric)?;
    if side(&r.engine) != Some(true) {
        return None;
    }
    best_peer(records, &group(r), metric, higher).filter(|(_, p)| far_worse(st, *p, higher))
}

/// Every result a table marks with `!` (any ringpipe engine or mode at
/// least [`FLAG_RATIO`] times worse than the best peer, spreads apart),
/// whether or not a target names it, in table order.
pub fn flags(records: &[Record]) -> String {
    let mut out = String::new();
    for (g, metric, higher) in rows(records) {
        let mut ours: Vec<&Record> = records.iter().filter(|r| group(r) == g).collect();
        ours.sort_by_key(|r| order(&r.engine));
        for r in ours {
            let (Some((peer, p)), Some(d)) =
                (flagged(records, r, metric, higher), Stat::of(r, metric))
            else {
                continue;
            };
            let _ = writeln!(
                out,
                "- {g}, {} ({} is better): {} {} vs {peer} {} = {}",
                short(metric),
                if higher { "higher" } else { "lower" },
                r.engine,
                fmt(d.med),
                fmt(p.med),
                times(d.med / p.med)
            );
        }
    }
    out
}

/// A markdown table; the first `left` columns are left-aligned, the rest
/// right-aligned.
fn render(cells: &[Vec<String>], left: usize) -> String {
    let Some(head) = cells.first() else {
        return String::new();
    };
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = (0..head.len())
        .map(|c| cells.iter().map(|r| width(&r[c])).max().unwrap_or(0))
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

/// Which way a target goes: `a <= factor * b + plus` (`plus` in `unit`),
/// `a >= factor * b`, or `a <= limit` (`b` unused).
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    AtMost {
        factor: f64,
        plus: f64,
        unit: &'static str,
    },
    AtLeast {
        factor: f64,
    },
    Below {
        limit: f64,
    },
}

const fn at_most(factor: f64) -> Goal {
    Goal::AtMost {
        factor,
        plus: 0.0,
        unit: "",
    }
}

/// A target's verdict from the spreads: met or missed when every run
/// agrees (the worst case of `a` against the best of `b`), else noisy,
/// with what the medians say.
pub fn judge(a: Stat, b: Stat, goal: Goal) -> &'static str {
    let (met, missed, median) = match goal {
        Goal::AtMost { factor, plus, .. } => (
            a.hi <= factor * b.lo + plus,
            a.lo > factor * b.hi + plus,
            a.med <= factor * b.med + plus,
        ),
        Goal::AtLeast { factor } => (
            a.lo >= factor * b.hi,
            a.hi < factor * b.lo,
            a.med >= factor * b.med,
        ),
        Goal::Below { limit } => (a.hi <= limit, a.lo > limit, a.med <= limit),
    };
    match (met, missed, median) {
        (true, _, _) => "met",
        (_, true, _) => "MISSED",
        (_, _, true) => "noisy (median met)",
        _ => "noisy (median missed)",
    }
}

/// The figure a target line shows: the ratio (or difference, or value)
/// of the medians, then its range over the runs.
fn figure(a: Stat, b: Stat, goal: Goal) -> String {
    match goal {
        Goal::AtMost { plus, unit, .. } if plus != 0.0 => {
            let d = |x: f64| format!("{}{}", if x < 0.0 { "-" } else { "+" }, fmt(x.abs()));
            format!(
                "{} {unit} [{}..{}]",
                d(a.med - b.med),
                d(a.lo - b.hi),
                d(a.hi - b.lo)
            )
        }
        Goal::Below { .. } => format!("{} [{}-{}]", fmt(a.med), fmt(a.lo), fmt(a.hi)),
        _ if b.med == 0.0 || b.hi == 0.0 || b.lo == 0.0 => "-".into(),
        _ => format!(
            "{:.2}x [{:.2}-{:.2}]",
            a.med / b.med,
            a.lo / b.hi,
            a.hi / b.lo
        ),
    }
}

/// One side of a target: a record's metric, picked by scenario, engine,
/// mode and one parameter.
#[derive(Debug, Clone, Copy)]
struct Pick<'a> {
    engine: &'a str,
    mode: Option<&'a str>,
    metric: &'a str,
}

const fn pick<'a>(engine: &'a str, metric: &'a str) -> Pick<'a> {
    Pick {
        engine,
        mode: None,
        metric,
    }
}

/// The targets ringpipe aims for, checked against the records present:
/// one line each, `met`, `MISSED` or `noisy` (the runs disagree). A target
/// whose scenario ran without its engine says so (the latency-budget
/// engine `uring-batch` is not in every build); one whose scenario did not
/// run is left out.
pub fn targets(records: &[Record]) -> String {
    let mut out = String::new();
    let mut check =
        |what: &str, scenario: &str, param: Option<(&str, u64)>, a: Pick, b: Pick, goal: Goal| {
            let in_scope = |r: &&Record| {
                r.scenario == scenario
                    && param.is_none_or(|(k, v)| r.params.get(k).and_then(Value::as_u64) == Some(v))
            };
            if !records.iter().any(|r| in_scope(&r)) {
                return;
            }
            let stat = |p: Pick| {
                records
                    .iter()
                    .filter(in_scope)
                    .find(|r| r.engine == p.engine && mode(r) == p.mode)
                    .and_then(|r| Stat::of(r, p.metric))
            };
            match (stat(a), stat(b)) {
                (Some(sa), Some(sb)) => {
                    let _ = writeln!(
                        out,
                        "- {what}: {} -> {}",
                        figure(sa, sb, goal),
                        judge(sa, sb, goal)
                    );
                }
                (sa, _) => {
                    let missing = if sa.is_none() { a } else { b };
                    let name = match missing.mode {
                        Some(m) => format!("{} {m}", missing.engine),
                        None => missing.engine.to_string(),
                    };
                    let _ = writeln!(out, "- {what}: not measured (no {name} result)");
                }
            }
        };
    let (cpu, p99, p50) = ("cpu_s_per_million_msgs", "p99_us", "p50_us");
    let (uring, epoll, threads) = ("uring", "epoll", "threads");
    let batch = "uring-batch";
    for n in [16u64, 256, 4096] {
        let p = Some(("fifos", n));
        let s = "fanin";
        let w = |x: &str| format!("fanin {n}: {x}");
        check(
            &w("CPU/msg uring <= 0.8x epoll"),
            s,
            p,
            pick(uring, cpu),
            pick(epoll, cpu),
            at_most(0.8),
        );
        check(
            &w("p99 uring <= 1.0x epoll"),
            s,
            p,
            pick(uring, p99),
            pick(epoll, p99),
            at_most(1.0),
        );
        check(
            &w("CPU/msg uring-batch <= 0.5x epoll"),
            s,
            p,
            pick(batch, cpu),
            pick(epoll, cpu),
            at_most(0.5),
        );
        let budget = Goal::AtMost {
            factor: 1.0,
            plus: 1000.0,
            unit: "us",
        };
        check(
            &w("p99 uring-batch <= epoll + 1 ms"),
            s,
            p,
            pick(batch, p99),
            pick(epoll, p99),
            budget,
        );
    }
    let s = "pingpong";
    check(
        "pingpong p50: uring <= 1.0x epoll",
        s,
        None,
        pick(uring, p50),
        pick(epoll, p50),
        at_most(1.0),
    );
    check(
        "pingpong p50: uring-spin <= 0.5x threads",
        s,
        None,
        pick("uring-spin", p50),
        pick(threads, p50),
        at_most(0.5),
    );
    let (s, p) = ("relay", Some(("chunk_bytes", 65536)));
    let (gib, rate, splice) = ("cpu_s_per_gib", "gib_per_s", "uring-splice");
    check(
        "relay 64K CPU/GiB: uring-splice <= 0.6x epoll",
        s,
        p,
        pick(splice, gib),
        pick(epoll, gib),
        at_most(0.6),
    );
    check(
        "relay 64K CPU/GiB: uring-splice <= 1.0x threads-splice",
        s,
        p,
        pick(splice, gib),
        pick("threads-splice", gib),
        at_most(1.0),
    );
    check(
        "relay 64K GiB/s: uring-splice >= 1.0x epoll",
        s,
        p,
        pick(splice, rate),
        pick(epoll, rate),
        Goal::AtLeast { factor: 1.0 },
    );
    let (lines, per_line, mux) = ("lines_per_s", "router_cpu_ns_per_line", "multiplexer");
    check(
        "mux lines/s: multiplexer >= 1.5x threads",
        "mux",
        None,
        pick(mux, lines),
        pick(threads, lines),
        Goal::AtLeast { factor: 1.5 },
    );
    check(
        "mux CPU/line: multiplexer <= 1.0x threads",
        "mux",
        None,
        pick(mux, per_line),
        pick(threads, per_line),
        at_most(1.0),
    );
    check(
        "idle RSS: uring <= 1.5x epoll",
        "idle",
        None,
        pick(uring, "rss_mib"),
        pick(epoll, "rss_mib"),
        at_most(1.5),
    );
    check(
        "idle threads: uring <= 2",
        "idle",
        None,
        pick(uring, "threads"),
        pick(uring, "threads"),
        Goal::Below { limit: 2.0 },
    );
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
    let s = "fanout";
    check(
        "fanout msgs/s: uring framed >= 0.9x raw",
        s,
        None,
        framed("msgs_per_s"),
        raw("msgs_per_s"),
        Goal::AtLeast { factor: 0.9 },
    );
    // Each subscriber holds at most its high watermark (64 KiB) beyond
    // what the raw path holds.
    let growth = "rss_growth_mib";
    let bound = Goal::AtMost {
        factor: 1.0,
        plus: 3.0 * 64.0 / 1024.0,
        unit: "MiB",
    };
    check(
        "fanout RSS growth: framed <= raw + 3 x 64 KiB",
        s,
        None,
        framed(growth),
        raw(growth),
        bound,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn st(med: f64, lo: f64, hi: f64) -> Stat {
        Stat { med, lo, hi }
    }

    fn record(scenario: &str, engine: &str, params: &[(&str, Value)], m: &[(&str, f64)]) -> Record {
        Record {
            scenario: scenario.into(),
            engine: engine.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            metrics: m.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn medians_keep_the_spread() {
        let runs: Vec<BTreeMap<String, f64>> = [3.0, 1.0, 2.0]
            .iter()
            .map(|&v| BTreeMap::from([("x".to_string(), v)]))
            .collect();
        let m = medians(&runs);
        assert_eq!(m.get("x"), Some(&2.0));
        assert_eq!(m.get("x_min"), Some(&1.0));
        assert_eq!(m.get("x_max"), Some(&3.0));
        // One run: no spread keys, and the stat's range is the median.
        let one = medians(&runs[..1]);
        assert_eq!(one.len(), 1);
        let r = record("fanin", "uring", &[], &[("x", 3.0)]);
        assert_eq!(Stat::of(&r, "x"), Some(st(3.0, 3.0, 3.0)));
    }

    #[test]
    fn overlapping_spreads_are_noisy() {
        // Lower is better.
        assert_eq!(
            compare(st(1.0, 0.9, 1.1), st(2.0, 1.8, 2.2), false),
            Cmp::Better
        );
        assert_eq!(
            compare(st(1.0, 0.9, 1.9), st(2.0, 1.8, 2.2), false),
            Cmp::Noisy
        );
        assert_eq!(
            compare(st(3.0, 2.5, 3.5), st(2.0, 1.8, 2.2), false),
            Cmp::Worse
        );
        // Higher is better.
        assert_eq!(
            compare(st(3.0, 2.5, 3.5), st(2.0, 1.8, 2.2), true),
            Cmp::Better
        );
        let at_most = at_most(0.8);
        assert_eq!(
            judge(st(0.7, 0.6, 0.75), st(1.0, 0.95, 1.05), at_most),
            "met"
        );
        assert_eq!(
            judge(st(0.9, 0.85, 0.95), st(1.0, 0.95, 1.05), at_most),
            "MISSED"
        );
        assert_eq!(
            judge(st(0.75, 0.6, 0.9), st(1.0, 0.95, 1.05), at_most),
            "noisy (median met)"
        );
        let budget = Goal::AtMost {
            factor: 1.0,
            plus: 1000.0,
            unit: "us",
        };
        assert_eq!(
            judge(st(1500.0, 1400.0, 1600.0), st(900.0, 800.0, 1000.0), budget),
            "met"
        );
        let most = Goal::AtLeast { factor: 0.9 };
        assert_eq!(judge(st(5.0, 4.0, 6.0), st(8.0, 7.0, 9.0), most), "MISSED");
    }

    #[test]
    fn a_far_worse_result_is_flagged_and_tables_fit_120_columns() {
        let fanin = |engine: &str, p99: f64| {
            record(
                "fanin",
                engine,
                &[("fifos", 256.into()), ("runs", 3.into())],
                &[
                    ("msgs_per_s", 2_345_678.0),
                    ("msgs_per_s_min", 1_234_567.0),
                    ("msgs_per_s_max", 3_456_789.0),
                    ("cpu_s_per_million_msgs", 0.5),
                    ("syscalls_per_1k_msgs", 1.5),
                    ("p99_us", p99),
                    ("p99_us_min", p99 * 0.9),
                    ("p99_us_max", p99 * 1.1),
                ],
            )
        };
        let records = vec![
            fanin("uring", 5000.0),
            fanin("uring-multishot", 400.0),
            fanin("uring-splice-direct", 400.0),
            fanin("epoll", 400.0),
            fanin("tokio", 400.0),
        ];
        let flags = flags(&records);
        assert!(flags.contains("fanin 256 fifos, p99 us"), "{flags}");
        // Every ! of the table is in the list, not only the default's.
        let marks = table(&records).matches(" !").count();
        assert_eq!(marks, 1);
        assert_eq!(flags.lines().count(), marks, "{flags}");
        let mut modes = records.clone();
        modes.push(fanin("uring-batch", 5000.0));
        let marks = table(&modes).matches(" !").count();
        assert_eq!(marks, 2);
        let listed = super::flags(&modes);
        assert_eq!(listed.lines().count(), marks, "{listed}");
        assert!(
            listed.contains(": uring-batch 5000 vs epoll 400"),
            "{listed}"
        );
        let text = format!("{}{}", table(&records), summary(&records));
        assert!(text.contains("12.50x WORSE"), "{text}");
        for line in text.lines() {
            assert!(line.len() <= 120, "{line}");
        }
        // uring-batch is not an engine of every build: its targets say so,
        // and are judged once its records are there.
        let t = targets(&records);
        assert!(
            t.contains("fanin 256: CPU/msg uring-batch <= 0.5x epoll: not measured"),
            "{t}"
        );
        let mut with_batch = records.clone();
        with_batch.push(fanin("uring-batch", 450.0));
        let t = targets(&with_batch);
        assert!(
            t.contains("fanin 256: p99 uring-batch <= epoll + 1 ms: +50"),
            "{t}"
        );
        assert!(table(&with_batch).contains("| uring-batch"));
    }

    /// Ranges too wide for 120 columns fall back to ±% cells.
    #[test]
    fn a_too_wide_table_falls_back_to_percent_spreads() {
        let metrics: Vec<(String, f64)> = [
            "msgs_per_s",
            "cpu_s_per_million_msgs",
            "syscalls_per_1k_msgs",
            "p99_us",
        ]
        .iter()
        .flat_map(|m| {
            [
                (m.to_string(), 12.35e6),
                (format!("{m}_min"), 10.01e6),
                (format!("{m}_max"), 99.99e6),
            ]
        })
        .collect();
        let m: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let records = vec![record(
            "fanin",
            "uring-splice-direct",
            &[("fifos", 16.into())],
            &m,
        )];
        let wide: Vec<String> = records
            .iter()
            .map(|r| Stat::of(r, "p99_us").expect("stat").cell())
            .collect();
        assert_eq!(wide, ["12.35M [10.01M-99.99M]"]);
        let text = table(&records);
        assert!(text.contains("12.35M ±364%"), "{text}");
        for line in text.lines() {
            assert!(line.len() <= WIDTH, "{line}");
        }
    }
}
