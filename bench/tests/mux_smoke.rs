//! A tiny `mux` run end to end: ringpipe's multiplexer example (which the
//! bench builds first, in this profile, with and without --sole-writer),
//! the threads router, four cats and the direct ceiling, a few thousand lines, every line checked by the
//! scenario itself to arrive exactly once. A watchdog kills the run if it
//! hangs (the first run may compile the example).

mod common;

use std::time::Duration;

use common::{counts, run, run_json};

#[test]
fn mux_every_router_delivers_every_line() {
    let (stdout, records) = run_json(
        "mux",
        &[
            "mux",
            "--writers",
            "3",
            "--lines",
            "3000",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--timeout",
            "20",
        ],
        Duration::from_secs(600),
    );
    assert!(stdout.contains("router under test: "), "{stdout}");
    // 3 writers x 3,000 lines through each router, each line once.
    assert_eq!(
        counts(&records, "lines_checked"),
        [
            ("multiplexer", 9000),
            ("multiplexer-sole", 9000),
            ("threads", 9000),
            ("cat", 9000),
            ("direct", 9000)
        ]
    );
    for r in &records {
        assert_eq!(r["scenario"], "mux");
        assert_eq!(r["params"]["lines_per_writer"], 3000);
    }
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
