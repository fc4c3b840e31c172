//! Turning runs into records and records into what is printed: medians
//! and spreads, the comparison of two results, and (in the rooms below)
//! the tables, the summary against the best peer, the flags, the targets
//! and the machine description. The report knows no scenario: the
//! [`Catalog`] the scenarios make says how each one's records are shown.

mod machine;
mod summary;
mod table;
mod targets;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use machine::machine;
pub use summary::{flags, summary};
pub use table::table;
pub use targets::{Goal, Pick, Target, at_most, targets};

/// A record's parameters.
pub type Params = BTreeMap<String, Value>;
/// A run's or a record's figures, by metric.
pub type Metrics = BTreeMap<String, f64>;

/// One (scenario, engine, parameters) result: medians over the runs, and
/// with two runs or more each metric's spread as `METRIC_min` and
/// `METRIC_max` beside it (see [`medians`]). The JSON field names are read
/// by other tools: keep them, add new ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub scenario: String,
    pub engine: String,
    pub params: Params,
    pub metrics: Metrics,
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
    pub fn cell(self) -> String {
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

/// Which side of the comparison a record's engine is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// ringpipe: an engine mode of it, or a program built on it.
    Ringpipe,
    /// What ringpipe is compared with.
    Peer,
    /// Neither: a bound no router can beat (mux's `direct`).
    Ceiling,
}

/// A name a record may carry as its engine.
#[derive(Debug, Clone)]
pub struct Cast {
    pub name: &'static str,
    pub side: Side,
    /// What it is, in a line, for the legend under the tables.
    pub describe: &'static str,
    /// Said in the legend when a record of this scenario names it (`None`:
    /// any record).
    pub scenario: Option<&'static str>,
}

/// How the records of one scenario are shown and judged.
pub struct Table {
    pub scenario: &'static str,
    /// The metrics its table shows, and whether higher is better.
    pub metrics: &'static [(&'static str, bool)],
    /// The short names of metrics of its own, for the tables.
    pub names: &'static [(&'static str, &'static str)],
    /// The title of a record's table: the scenario's defining parameters.
    pub label: fn(&Record) -> String,
    /// ringpipe's default in the scenario, for the summary: the first of
    /// these with a record.
    pub defaults: &'static [&'static str],
    /// The goals ringpipe aims for in the scenario.
    pub targets: fn() -> Vec<Target>,
    /// Lines of the legend of its own (its modes), for these records.
    pub legend: fn(&[Record]) -> Vec<String>,
}

impl Table {
    /// The table of `scenario`: these metrics, this label; `uring` its
    /// default, no targets, no short names or legend lines of its own.
    pub fn new(
        scenario: &'static str,
        metrics: &'static [(&'static str, bool)],
        label: fn(&Record) -> String,
    ) -> Table {
        Table {
            scenario,
            metrics,
            names: &[],
            label,
            defaults: &["uring"],
            targets: Vec::new,
            legend: |_| Vec::new(),
        }
    }

    pub fn names(self, names: &'static [(&'static str, &'static str)]) -> Table {
        Table { names, ..self }
    }

    pub fn defaults(self, defaults: &'static [&'static str]) -> Table {
        Table { defaults, ..self }
    }

    pub fn targets(self, targets: fn() -> Vec<Target>) -> Table {
        Table { targets, ..self }
    }

    pub fn legend(self, legend: fn(&[Record]) -> Vec<String>) -> Table {
        Table { legend, ..self }
    }
}

/// What the report knows of the scenarios: every name records carry as
/// their engine, and each scenario's [`Table`].
pub struct Catalog {
    /// In the order of the tables' columns within each [`Side`].
    pub cast: Vec<Cast>,
    pub tables: Vec<Table>,
}

/// Short names of the metrics the scenarios share, for the tables.
const SHORT: &[(&str, &str)] = &[
    ("gib_per_s", "GiB/s"),
    ("msgs_per_s", "msgs/s"),
    ("cpu_s_per_million_msgs", "CPU s/M msgs"),
    ("cpu_s_per_gib", "CPU s/GiB"),
    ("syscalls_per_1k_msgs", "syscalls/1k"),
    ("p50_us", "p50 us"),
    ("p99_us", "p99 us"),
    ("p999_us", "p99.9 us"),
    ("rss_mib", "RSS MiB"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("threads", "threads"),
];

impl Catalog {
    fn table(&self, scenario: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.scenario == scenario)
    }

    /// Which metrics the tables show for `scenario`, and whether higher is
    /// better (none for a scenario this build does not know).
    fn metrics(&self, scenario: &str) -> &'static [(&'static str, bool)] {
        self.table(scenario).map_or(&[], |t| t.metrics)
    }

    /// The title of `r`'s table: its scenario's defining parameters.
    fn label(&self, r: &Record) -> String {
        match self.table(&r.scenario) {
            Some(t) => (t.label)(r),
            None => r.scenario.clone(),
        }
    }

    /// What is compared with what: the label, and the mode if any (fan-out
    /// compares raw with raw and framed with framed).
    fn group(&self, r: &Record) -> String {
        match mode(r) {
            Some(m) => format!("{} {m}", self.label(r)),
            None => self.label(r),
        }
    }

    /// Short name of a metric for the tables.
    fn short<'a>(&self, metric: &'a str) -> &'a str {
        let names = self.tables.iter().flat_map(|t| t.names).chain(SHORT);
        names
            .into_iter()
            .find(|(m, _)| *m == metric)
            .map_or(metric, |(_, s)| s)
    }

    /// A metric's heading: its short name and which way is better.
    fn heading(&self, metric: &str, higher: bool) -> String {
        format!(
            "{} ({})",
            self.short(metric),
            if higher { "+" } else { "-" }
        )
    }

    /// Column order of the tables: ringpipe's names, the peers', the
    /// ceiling's, each in [`Catalog::cast`] order, each name once.
    pub fn columns(&self) -> Vec<&'static str> {
        let mut cols: Vec<&'static str> = Vec::new();
        for side in [Side::Ringpipe, Side::Peer, Side::Ceiling] {
            for c in self.cast.iter().filter(|c| c.side == side) {
                if !cols.contains(&c.name) {
                    cols.push(c.name);
                }
            }
        }
        cols
    }

    /// The side of a record's engine; one this build does not know is
    /// ringpipe if named `uring*`.
    fn side(&self, engine: &str) -> Side {
        match self.cast.iter().find(|c| c.name == engine) {
            Some(c) => c.side,
            None if engine.starts_with("uring") => Side::Ringpipe,
            None => Side::Peer,
        }
    }

    /// Sort key of an engine: its place in [`Catalog::columns`]; engines
    /// this build does not know (records of another build) come after
    /// ringpipe's.
    fn order(&self, engine: &str) -> usize {
        let cols = self.columns();
        match cols.iter().position(|c| *c == engine) {
            Some(k) if self.side(engine) == Side::Ringpipe => k,
            Some(k) => k + 100,
            None if engine.starts_with("uring") => 50,
            None => 200,
        }
    }
}

/// The legend printed above the tables.
pub const LEGEND: &str = "(+) higher is better, (-) lower is better; a cell is the median \
                          [min-max] of the runs (or ±half that range in % where too wide); ! \
                          marks ringpipe >= 2x worse than the best peer, the ranges apart";

/// Parameter `key` of `r` as it prints (empty if it has none).
pub fn param(r: &Record, key: &str) -> String {
    r.params.get(key).map(|v| v.to_string()).unwrap_or_default()
}

/// The record's mode within its scenario (fan-out: `raw` or `framed`).
pub fn mode(r: &Record) -> Option<&str> {
    r.params.get("mode").and_then(Value::as_str)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::targets::judge;
    use super::*;

    pub fn st(med: f64, lo: f64, hi: f64) -> Stat {
        Stat { med, lo, hi }
    }

    pub fn record(
        scenario: &str,
        engine: &str,
        params: &[(&str, Value)],
        m: &[(&str, f64)],
    ) -> Record {
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
}
