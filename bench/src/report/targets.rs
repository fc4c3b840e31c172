//! The targets: goals the project sets itself for ringpipe against its
//! peers, each scenario's own ([`Table::targets`](super::Table)), judged
//! on the records present.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Catalog, Record, Stat, fmt, mode};

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

/// `a <= factor * b`.
pub const fn at_most(factor: f64) -> Goal {
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
/// One side of a target: a record's metric, picked by engine and mode
/// (among the records of the target's scenario and parameter).
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    pub engine: &'static str,
    pub mode: Option<&'static str>,
    pub metric: &'static str,
}

impl Pick {
    /// `metric` of `engine`'s record (no mode).
    pub const fn of(engine: &'static str, metric: &'static str) -> Pick {
        Pick {
            engine,
            mode: None,
            metric,
        }
    }
}

/// A goal: `a` against `b` in the records of `scenario` (with each of
/// `params` at the value given).
#[derive(Debug, Clone)]
pub struct Target {
    /// The line's title.
    pub what: String,
    pub scenario: &'static str,
    /// The parameters a record must have (at these values), all of them.
    pub params: Vec<(&'static str, u64)>,
    pub a: Pick,
    pub b: Pick,
    pub goal: Goal,
}

/// The targets ringpipe aims for, scenario by scenario, checked against
/// the records present: one line each, `met`, `MISSED` or `noisy` (the
/// runs disagree). A target whose scenario ran without its engine says
/// so (the latency-budget engine `uring-batch` is not in every build);
/// one whose scenario did not run is left out.
pub fn targets(records: &[Record], catalog: &Catalog) -> String {
    let mut out = String::new();
    for t in catalog.tables.iter().flat_map(|t| (t.targets)()) {
        let in_scope = |r: &&Record| {
            r.scenario == t.scenario
                && t.params
                    .iter()
                    .all(|&(k, v)| r.params.get(k).and_then(Value::as_u64) == Some(v))
        };
        if !records.iter().any(|r| in_scope(&r)) {
            continue;
        }
        let stat = |p: Pick| {
            records
                .iter()
                .filter(in_scope)
                .find(|r| r.engine == p.engine && mode(r) == p.mode)
                .and_then(|r| Stat::of(r, p.metric))
        };
        match (stat(t.a), stat(t.b)) {
            (Some(sa), Some(sb)) => {
                let _ = writeln!(
                    out,
                    "- {}: {} -> {}",
                    t.what,
                    figure(sa, sb, t.goal),
                    judge(sa, sb, t.goal)
                );
            }
            (sa, _) => {
                let missing = if sa.is_none() { t.a } else { t.b };
                let name = match missing.mode {
                    Some(m) => format!("{} {m}", missing.engine),
                    None => missing.engine.to_string(),
                };
                let _ = writeln!(out, "- {}: not measured (no {name} result)", t.what);
            }
        }
    }
    out
}
