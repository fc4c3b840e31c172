//! The names under the tables: one line per engine, router and mode that
//! the records show, saying what it is.

use crate::engine::Engine;
use crate::fanout::Variant;
use crate::mux::Router;
use crate::report::Record;

/// One line per engine, router or mode named in `records`, in the order
/// of the tables' columns and modes.
pub fn lines(records: &[Record]) -> Vec<String> {
    let named = |name: &str| records.iter().any(|r| r.engine == name);
    let mut out: Vec<String> = Vec::new();
    for e in Engine::ALL {
        // `threads` in mux is the threads router, said below.
        if named(e.name()) {
            out.push(format!("{}: {}", e.name(), e.describe()));
        }
    }
    for r in Router::ALL {
        let in_mux = records
            .iter()
            .any(|rec| rec.scenario == "mux" && rec.engine == r.name());
        if in_mux {
            out.push(format!("{}: {}", r.name(), r.describe()));
        }
    }
    let modes = |m: &str| {
        records
            .iter()
            .any(|r| r.params.get("mode").and_then(|v| v.as_str()) == Some(m))
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scenario: &str, engine: &str, mode: Option<&str>) -> Record {
        let mut params = std::collections::BTreeMap::new();
        if let Some(m) = mode {
            params.insert("mode".to_string(), m.into());
        }
        Record {
            scenario: scenario.into(),
            engine: engine.into(),
            params,
            metrics: Default::default(),
        }
    }

    #[test]
    fn every_name_shown_is_explained_once() {
        let records = vec![
            record("fanin", "uring-batch", None),
            record("relay", "uring-splice-iowq", None),
            record("pingpong", "uring-sqpoll", None),
            record("pingpong", "uring-echo", None),
            record("mux", "multiplexer", None),
            record("mux", "threads", None),
            record("fanout", "uring", Some("raw")),
            record("fanout", "uring", Some("framed")),
        ];
        let lines = lines(&records);
        for name in [
            "uring: ",
            "uring-batch: ",
            "uring-splice-iowq: ",
            "uring-sqpoll: ",
            "uring-echo: ",
            "multiplexer: ",
            "threads: ",
            "raw: ",
            "framed: ",
        ] {
            let n = lines.iter().filter(|l| l.starts_with(name)).count();
            assert!(n >= 1, "{name} missing: {lines:?}");
        }
        assert!(!lines.iter().any(|l| l.starts_with("epoll")), "{lines:?}");
    }
}
