//! The tables: one per scenario and parameters, a row per engine (and
//! mode), a column per metric.

use std::fmt::Write as _;

use serde_json::Value;

use super::summary::flagged;
use super::{Catalog, Record, Stat, WIDTH, mode, render};

/// Labels (table titles) in first-seen order.
fn labels(records: &[Record], catalog: &Catalog) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in records {
        let l = catalog.label(r);
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// A row of a scenario's table: the engine, and the mode if any.
fn row_name(r: &Record) -> String {
    match mode(r) {
        Some(m) => format!("{} {m}", r.engine),
        None => r.engine.clone(),
    }
}

/// One table per scenario and parameters: a row per engine (and mode), a
/// column per metric, each cell the median and the runs' range (as ±% of
/// the median where the ranges would make the table wider than
/// [`WIDTH`]).
pub fn table(records: &[Record], catalog: &Catalog) -> String {
    let mut out = String::new();
    for lab in labels(records, catalog) {
        let mut rows: Vec<&Record> = records.iter().filter(|r| catalog.label(r) == lab).collect();
        // Modes in first-seen order, engines in column order within each.
        let mut modes: Vec<Option<&str>> = Vec::new();
        for r in &rows {
            if !modes.contains(&mode(r)) {
                modes.push(mode(r));
            }
        }
        rows.sort_by_key(|r| {
            (
                modes.iter().position(|m| *m == mode(r)),
                catalog.order(&r.engine),
            )
        });
        let Some(first) = rows.first() else {
            continue;
        };
        let metrics = catalog.metrics(&first.scenario);
        let runs = rows
            .iter()
            .filter_map(|r| r.params.get("runs").and_then(Value::as_u64))
            .max();
        let cells = |compact: bool| {
            let mut header = vec![lab.clone()];
            header.extend(metrics.iter().map(|&(m, h)| catalog.heading(m, h)));
            let mut cells = vec![header];
            for r in &rows {
                let mut row = vec![row_name(r)];
                for &(m, higher) in metrics {
                    let cell = match Stat::of(r, m) {
                        Some(st) => {
                            let flag = flagged(records, catalog, r, m, higher).is_some();
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
