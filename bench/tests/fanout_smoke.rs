//! A small `fanout` run end to end: every variant, a few thousand frames,
//! each subscriber process checking every frame; then `report` on its
//! records. A watchdog kills a run that hangs.

mod common;

use std::time::Duration;

use common::{run, scratch};

#[test]
fn fanout_delivers_every_frame_and_reports_within_120_columns() {
    let dir = scratch("fanout");
    let json = dir.join("fanout.json");
    let out = run(
        &[
            "fanout",
            "--msgs",
            "5000",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--dir",
            dir.to_str().expect("utf-8 temp dir"),
            "--json",
            json.to_str().expect("utf-8 temp dir"),
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A subscriber that misses, repeats or reorders a frame fails its run.
    assert!(!stdout.contains("run failed"), "{stdout}");
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("json parses");
    let records = records.as_array().expect("an array of records");
    let rows: Vec<(&str, &str)> = records
        .iter()
        .filter_map(|r| Some((r["engine"].as_str()?, r["params"]["mode"].as_str()?)))
        .collect();
    assert_eq!(
        rows,
        [
            ("uring", "raw"),
            ("uring", "framed"),
            ("threads", "raw"),
            ("threads", "framed")
        ]
    );
    for r in records {
        assert_eq!(r["scenario"], "fanout");
        assert_eq!(r["params"]["msgs"], 5000);
        assert_eq!(r["params"]["runs"], 2);
        let m = &r["metrics"];
        for key in ["msgs_per_s", "cpu_s_per_million_msgs", "peak_rss_mib"] {
            assert!(m[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {r}");
        }
        // Two runs: the spread is recorded beside the median.
        let (lo, med, hi) = (
            m["msgs_per_s_min"].as_f64().expect("min"),
            m["msgs_per_s"].as_f64().expect("median"),
            m["msgs_per_s_max"].as_f64().expect("max"),
        );
        assert!(lo <= med && med <= hi, "{r}");
    }
    assert!(
        stdout.contains("fanout msgs/s: uring framed >= 0.9x raw"),
        "{stdout}"
    );

    let report = run(
        &["report", json.to_str().expect("utf-8")],
        Duration::from_secs(30),
    );
    assert!(report.status.success());
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("| uring framed"), "{text}");
    for line in text.lines() {
        assert!(line.len() <= 120, "{} bytes: {line}", line.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
