//! A tiny `mux` run end to end: the threads router and the direct ceiling,
//! a few thousand lines, every line checked by the scenario itself. The
//! multiplexer example is left out: `cargo test -p ringpipe-bench` does not
//! build it. A watchdog kills the run if it hangs.

mod common;

use std::time::Duration;

use common::{run, scratch};

#[test]
fn mux_threads_and_direct_deliver_every_line() {
    let dir = scratch("mux");
    let json = dir.join("mux.json");
    let out = run(
        &[
            "mux",
            "--routers",
            "threads,direct",
            "--writers",
            "3",
            "--lines",
            "3000",
            "--runs",
            "1",
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
    assert!(!stdout.contains("run failed"), "{stdout}");
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("json parses");
    let records = records.as_array().expect("an array of records");
    let engines: Vec<&str> = records
        .iter()
        .filter_map(|r| r["engine"].as_str())
        .collect();
    assert_eq!(engines, ["threads", "direct"]);
    for r in records {
        assert_eq!(r["scenario"], "mux");
        assert_eq!(r["params"]["lines_per_writer"], 3000);
        assert!(
            r["metrics"]["lines_per_s"]
                .as_f64()
                .is_some_and(|v| v > 0.0)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mux_names_a_missing_multiplexer() {
    let out = run(
        &["mux", "--multiplexer", "/nonexistent/multiplexer"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/multiplexer"), "{stderr}");
}
