//! A small `fanout` run end to end: every variant, a few thousand frames,
//! each subscriber process checking every frame, the run counting what
//! they checked; then `report` on its records. A watchdog kills a run
//! that hangs.

mod common;

use std::time::Duration;

use common::{run, run_json, scratch};

#[test]
fn fanout_delivers_every_frame_and_reports_within_120_columns() {
    // A subscriber that misses, repeats or reorders a frame fails its run.
    let (stdout, records) = run_json(
        "fanout",
        &["fanout", "--msgs", "5000", "--runs", "2", "--warmup", "0"],
        Duration::from_secs(60),
    );
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
    for r in &records {
        assert_eq!(r["scenario"], "fanout");
        assert_eq!(r["params"]["msgs"], 5000);
        assert_eq!(r["params"]["runs"], 2);
        // Each of the 3 subscribers checked every frame, in order.
        assert_eq!(r["params"]["frames_checked"], 15000, "{r}");
        let m = &r["metrics"];
        for key in [
            "msgs_per_s",
            "cpu_s_per_million_msgs",
            "peak_rss_mib",
            "syscalls_per_1k_msgs",
        ] {
            // Measured, so only their presence is certain, and the
            // spread around the median of two runs.
            let (lo, med, hi) = (
                m[format!("{key}_min")].as_f64(),
                m[key].as_f64(),
                m[format!("{key}_max")].as_f64(),
            );
            assert!(
                matches!((lo, med, hi), (Some(l), Some(x), Some(h)) if l <= x && x <= h),
                "{key}: {r}"
            );
        }
    }
    assert!(
        stdout.contains("fanout msgs/s: uring framed >= 0.9x raw"),
        "{stdout}"
    );

    let dir = scratch("fanout-report");
    let json = dir.join("fanout.json");
    std::fs::write(&json, serde_json::to_string(&records).expect("json")).expect("write json");
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
