//! The names under the tables: one line per engine, router and mode that
//! the records show, saying what it is.

use crate::report::{Catalog, Record};

/// One line per name of `catalog`'s cast that `records` show (an engine
/// anywhere, a scenario's own name in that scenario's records), in cast
/// order, then the scenarios' own lines (their modes).
pub fn lines(records: &[Record], catalog: &Catalog) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &catalog.cast {
        let named = records
            .iter()
            .any(|r| r.engine == c.name && c.scenario.is_none_or(|s| r.scenario == s));
        if named {
            out.push(format!("{}: {}", c.name, c.describe));
        }
    }
    for t in &catalog.tables {
        out.extend((t.legend)(records));
    }
    out
}
