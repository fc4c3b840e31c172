//! The summary (per scenario and metric, ringpipe's default and its best
//! mode against the best peer) and the flags (every ringpipe result far
//! worse than the best peer).

use std::fmt::Write as _;

use super::{Catalog, Cmp, Record, Side, Stat, compare, far_worse, fmt, render};

/// Row keys of the summary, in first-seen order: group, metric, and
/// whether higher is better.
fn rows(records: &[Record], catalog: &Catalog) -> Vec<(String, &'static str, bool)> {
    let mut rows: Vec<(String, &'static str, bool)> = Vec::new();
    for r in records {
        for &(metric, higher) in catalog.metrics(&r.scenario) {
            let key = (catalog.group(r), metric, higher);
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
    }
    rows
}

/// ringpipe's default in a group: the first of its scenario's defaults
/// with a record (`uring`; in relay `uring-splice`, `Proactor::relay`,
/// what a relay is written with; in mux the multiplexer).
fn default_of(records: &[Record], catalog: &Catalog, g: &str, metric: &str) -> Option<Stat> {
    let in_group: Vec<&Record> = records.iter().filter(|r| catalog.group(r) == g).collect();
    let defaults = in_group
        .first()
        .and_then(|r| catalog.table(&r.scenario))
        .map_or(&["uring"][..], |t| t.defaults);
    defaults.iter().find_map(|e| {
        in_group
            .iter()
            .find(|r| r.engine == *e)
            .and_then(|r| Stat::of(r, metric))
    })
}

/// The best peer's result in the record's group, if any.
fn best_peer(
    records: &[Record],
    catalog: &Catalog,
    g: &str,
    metric: &str,
    higher: bool,
) -> Option<(String, Stat)> {
    best(records, catalog, g, metric, higher, Side::Peer)
}

/// The best result of `side` in group `g` on `metric`.
fn best(
    records: &[Record],
    catalog: &Catalog,
    g: &str,
    metric: &str,
    higher: bool,
    side: Side,
) -> Option<(String, Stat)> {
    records
        .iter()
        .filter(|r| catalog.group(r) == g && catalog.side(&r.engine) == side)
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

/// `ratio` of `a` to `b` and the verdict: better, worse (WORSE at
/// [`FLAG_RATIO`](super::FLAG_RATIO) or more), or noisy when the spreads overlap.
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
pub fn summary(records: &[Record], catalog: &Catalog) -> String {
    let header = [
        "scenario",
        "metric",
        "best peer",
        "default/peer",
        "best mode: mode/peer",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for (g, metric, higher) in rows(records, catalog) {
        let Some((peer, p)) = best_peer(records, catalog, &g, metric, higher) else {
            continue;
        };
        let Some((mode, m)) = best(records, catalog, &g, metric, higher, Side::Ringpipe) else {
            continue;
        };
        let default = default_of(records, catalog, &g, metric);
        cells.push(vec![
            g.clone(),
            catalog.heading(metric, higher),
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
/// [`FLAG_RATIO`](super::FLAG_RATIO) times worse on `metric`, the spreads apart: what a
/// table marks with `!`.
pub(super) fn flagged(
    records: &[Record],
    catalog: &Catalog,
    r: &Record,
    metric: &str,
    higher: bool,
) -> Option<(String, Stat)> {
    let st = Stat::of(r, metric)?;
    if catalog.side(&r.engine) != Side::Ringpipe {
        return None;
    }
    best_peer(records, catalog, &catalog.group(r), metric, higher)
        .filter(|(_, p)| far_worse(st, *p, higher))
}

/// Every result a table marks with `!` (any ringpipe engine or mode at
/// least [`FLAG_RATIO`](super::FLAG_RATIO) times worse than the best peer, spreads apart),
/// whether or not a target names it, in table order.
pub fn flags(records: &[Record], catalog: &Catalog) -> String {
    let mut out = String::new();
    for (g, metric, higher) in rows(records, catalog) {
        let mut ours: Vec<&Record> = records.iter().filter(|r| catalog.group(r) == g).collect();
        ours.sort_by_key(|r| catalog.order(&r.engine));
        for r in ours {
            let (Some((peer, p)), Some(d)) = (
                flagged(records, catalog, r, metric, higher),
                Stat::of(r, metric),
            ) else {
                continue;
            };
            let _ = writeln!(
                out,
                "- {g}, {} ({} is better): {} {} vs {peer} {} = {}",
                catalog.short(metric),
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
