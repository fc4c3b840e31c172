//! One run of `fanout`: the router, the subscribers and the publisher,
//! each a process, watched together until every one has ended.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::router::RouterReport;
use super::{Plan, Spec};
use crate::child::Proc;
use crate::harness::engines::last_json;

/// Starts `exe` with `args`, its stdout piped.
fn spawn(exe: &Path, args: &[&str]) -> Result<Proc, String> {
    Proc::spawn(Command::new(exe).args(args), true).map_err(|e| format!("spawn {}: {e}", args[0]))
}

/// One run: the router (of `router_exe`), then the subscribers, then the
/// publisher (both of this binary). Returns the router's report and the
/// frames the subscribers checked, which must be every frame for each.
pub fn run_once(
    plan: &Plan,
    spec: &Spec,
    router_exe: &Path,
) -> Result<(RouterReport, u64), String> {
    let deadline = Instant::now() + plan.timeout;
    let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let mut router = spawn(router_exe, &["fanout-router", &json])?;
    let mut stdout = BufReader::new(router.stdout().ok_or("router stdout")?);
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    if line.trim() != "READY" {
        return Err(match router.wait("router") {
            Some(Err(e)) => e,
            _ => "router not ready".into(),
        });
    }
    router.collect_stdout(stdout);
    let mut procs = vec![("router".to_string(), router)];
    for i in 0..spec.subscribers {
        let mut sub = spawn(&plan.exe, &["fanout-sub", &json, &i.to_string()])?;
        if let Some(out) = sub.stdout() {
            sub.collect_stdout(out);
        }
        procs.push((format!("subscriber {i}"), sub));
    }
    procs.push((
        "publisher".into(),
        spawn(&plan.exe, &["fanout-pub", &json])?,
    ));
    // Every process is watched at once: the first failure ends the run
    // (a stalled pipeline would otherwise wait for the deadline), after a
    // moment for the others to report theirs too (the publisher's EPIPE
    // says less than the router's error behind it).
    let mut results: Vec<Option<Result<String, String>>> = vec![None; procs.len()];
    let mut failed_at: Option<Instant> = None;
    loop {
        for ((what, proc), result) in procs.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                *result = proc.poll(what);
            }
        }
        let failures: Vec<&str> = results
            .iter()
            .filter_map(|r| r.as_ref()?.as_ref().err().map(String::as_str))
            .collect();
        if !failures.is_empty() {
            let since = *failed_at.get_or_insert_with(Instant::now);
            if results.iter().all(Option::is_some) || since.elapsed() > Duration::from_millis(200) {
                return Err(failures.join("; "));
            }
        } else if results.iter().all(Option::is_some) {
            break;
        }
        if Instant::now() > deadline {
            let running: Vec<&str> = procs
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_none())
                .map(|((what, _), _)| what.as_str())
                .collect();
            return Err(format!(
                "still running at the deadline: {}",
                running.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut checked = 0u64;
    for result in &results[1..=spec.subscribers] {
        let out = result.as_ref().and_then(|r| r.as_ref().ok());
        checked += out
            .and_then(|o| o.trim().parse::<u64>().ok())
            .ok_or("a subscriber reported no count")?;
    }
    if checked != spec.subscribers as u64 * spec.msgs {
        return Err(format!(
            "miscounted: the subscribers checked {checked} frames of {} x {}",
            spec.subscribers, spec.msgs
        ));
    }
    let out = match results.swap_remove(0) {
        Some(Ok(out)) => out,
        _ => return Err("router: no result".into()),
    };
    let report = last_json(&out).ok_or_else(|| format!("no router report: {out}"))?;
    Ok((report, checked))
}
