//! The scenarios together: their names, and the report and legend they
//! make.

use serde_json::Value;

use super::*;
use crate::legend;
use crate::report::tests::record;
use crate::report::{Stat, WIDTH, flags, summary, table, targets};

/// Every command has one owner, and every scenario one name.
#[test]
fn names_are_unique() {
    let mut commands: Vec<String> = Vec::new();
    for s in ALL {
        assert!(find(s.name()).is_some_and(|f| f.name() == s.name()));
        for c in s.commands() {
            let name = c.get_name().to_string();
            assert!(!commands.contains(&name), "{name} twice");
            assert_eq!(owner(&name).map(|o| o.name()), Some(s.name()));
            commands.push(name);
        }
    }
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
        fanin("uring-single", 400.0),
        fanin("uring-splice-direct", 400.0),
        fanin("epoll", 400.0),
        fanin("tokio", 400.0),
    ];
    let catalog = catalog();
    let flagged = flags(&records, &catalog);
    assert!(flagged.contains("fanin 256 fifos, p99 us"), "{flagged}");
    // Every ! of the table is in the list, not only the default's.
    let marks = table(&records, &catalog).matches(" !").count();
    assert_eq!(marks, 1);
    assert_eq!(flagged.lines().count(), marks, "{flagged}");
    let mut modes = records.clone();
    modes.push(fanin("uring-batch", 5000.0));
    let marks = table(&modes, &catalog).matches(" !").count();
    assert_eq!(marks, 2);
    let listed = flags(&modes, &catalog);
    assert_eq!(listed.lines().count(), marks, "{listed}");
    assert!(
        listed.contains(": uring-batch 5000 vs epoll 400"),
        "{listed}"
    );
    let text = format!(
        "{}{}",
        table(&records, &catalog),
        summary(&records, &catalog)
    );
    assert!(text.contains("12.50x WORSE"), "{text}");
    for line in text.lines() {
        assert!(line.len() <= 120, "{line}");
    }
    // uring-batch is not an engine of every build: its targets say so,
    // and are judged once its records are there.
    let t = targets(&records, &catalog);
    assert!(
        t.contains("fanin 256: CPU/msg uring-batch <= 0.5x epoll: not measured"),
        "{t}"
    );
    let mut with_batch = records.clone();
    with_batch.push(fanin("uring-batch", 450.0));
    let t = targets(&with_batch, &catalog);
    assert!(
        t.contains("fanin 256: p99 uring-batch <= epoll + 1 ms: +50"),
        "{t}"
    );
    assert!(table(&with_batch, &catalog).contains("| uring-batch"));
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
    let text = table(&records, &catalog());
    assert!(text.contains("12.35M ±364%"), "{text}");
    for line in text.lines() {
        assert!(line.len() <= WIDTH, "{line}");
    }
}

/// Every name the records show is explained under the tables, once per
/// kind: the engines, mux's routers, fan-out's modes.
#[test]
fn every_name_shown_is_explained_once() {
    let mode = |m: &str| ("mode", Value::from(m));
    let records = vec![
        record("fanin", "uring-batch", &[], &[]),
        record("relay", "uring-splice-iowq", &[], &[]),
        record("pingpong", "uring-sqpoll", &[], &[]),
        record("pingpong", "uring-echo", &[], &[]),
        record("mux", "multiplexer", &[], &[]),
        record("mux", "threads", &[], &[]),
        record("fanout", "uring", &[mode("raw")], &[]),
        record("fanout", "uring", &[mode("framed")], &[]),
    ];
    let lines = legend::lines(&records, &catalog());
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
    // The legend says the engines, then mux's routers, then the modes.
    let at = |p: &str| lines.iter().position(|l| l.starts_with(p));
    assert!(at("uring-echo: ") < at("multiplexer: "), "{lines:?}");
    assert!(at("multiplexer: ") < at("raw: "), "{lines:?}");
}

/// The tables' columns: ringpipe's engines, the multiplexer, the peers,
/// the ceiling.
#[test]
fn columns_put_ringpipe_first_and_the_ceiling_last() {
    let cols = catalog().columns();
    let at = |c: &str| cols.iter().position(|x| *x == c).expect(c);
    assert_eq!(cols[0], "uring");
    assert!(at("uring-spin") < at("multiplexer"));
    assert!(at("multiplexer") < at("epoll"));
    assert_eq!(cols.last(), Some(&"direct"));
    assert_eq!(cols.iter().filter(|c| **c == "threads").count(), 1);
}

/// A latency target judges one cell: the records of that FIFO count and
/// that rate, never a neighbour's with one parameter alike.
#[test]
fn a_latency_target_takes_its_own_cell() {
    let cell = |engine: &str, fifos: u64, rate: u64, cpu: f64| {
        record(
            "latency",
            engine,
            &[("fifos", fifos.into()), ("rate", rate.into())],
            &[("cpu_s_per_million_msgs", cpu)],
        )
    };
    let records = vec![
        cell("uring", 64, 10_000, 2.0),
        cell("epoll", 64, 10_000, 4.0),
        cell("uring", 64, 50_000, 9.0),
        cell("epoll", 64, 50_000, 3.0),
        cell("uring", 1, 10_000, 5.0),
        cell("epoll", 1, 10_000, 1.0),
    ];
    let t = targets(&records, &catalog());
    assert!(
        t.contains("latency 64 fifos 10k/s: CPU/msg uring <= 1.0x epoll: 0.50x"),
        "{t}"
    );
    assert!(
        t.contains("latency 64 fifos 50k/s: CPU/msg uring <= 1.0x epoll: 3.00x"),
        "{t}"
    );
    assert!(
        t.contains("latency 1 fifos 10k/s: CPU/msg uring <= 1.0x epoll: 5.00x"),
        "{t}"
    );
    // Cells that did not run say nothing.
    assert!(!t.contains("256 fifos"), "{t}");
}
