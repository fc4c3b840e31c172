//! A few seconds of `soak`: the multiplexer example (built by the bench
//! first) and a hub under killed and returning writers and readers and bad
//! sessions. Every unit must be accounted for and the routers' fds and
//! threads must not grow (the command fails otherwise, and on RSS growth,
//! which this test leaves to the report). A watchdog kills the run if it hangs (the first run may
//! compile the example).

mod common;

use std::time::Duration;

use common::{run, scratch};

#[test]
fn a_short_soak_loses_and_repeats_nothing() {
    let dir = scratch("soak");
    let json = dir.join("soak.json");
    let out = run(
        &[
            "soak",
            "--seconds",
            "4",
            "--seed",
            "7",
            "--dir",
            dir.to_str().expect("utf-8 temp dir"),
            "--json",
            json.to_str().expect("utf-8 temp dir"),
        ],
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("json parses");
    let reports = reports.as_array().expect("one report per target");
    let targets: Vec<&str> = reports
        .iter()
        .filter_map(|r| r["target"].as_str())
        .collect();
    assert_eq!(targets, ["multiplexer", "hub"]);
    for r in reports {
        for zero in ["lost", "duplicated", "corrupt"] {
            assert_eq!(r[zero], 0, "{zero}: {r}");
        }
        assert_eq!(r["failures"].as_array().map(Vec::len), Some(0), "{r}");
        // Every session accounted for: ended whole or killed.
        assert_eq!(
            r["sessions"].as_u64(),
            Some(r["complete"].as_u64().unwrap_or(0) + r["killed"].as_u64().unwrap_or(0)),
            "{r}"
        );
        // The warm-up's and the end's sessions alone are one per input.
        assert!(r["complete"].as_u64() > Some(2), "{r}");
        // Each kind of trouble, at least once.
        for some in [
            "killed",
            "writer_kills",
            "reader_kills",
            "too_long_sessions",
            "cut_sessions",
        ] {
            assert!(r[some].as_u64() >= Some(1), "{some}: {r}");
        }
        assert!(r["checked"].as_u64() > Some(100), "{r}");
        // RSS is measured, not asserted here: a few seconds say nothing
        // of its trend. An fd or thread more at the end would be a leak.
        assert_eq!(r["fds_flat"], true, "{r}");
        assert_eq!(r["threads_flat"], true, "{r}");
    }
    assert!(
        stdout.contains("| lost | duplicated | corrupt |"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
