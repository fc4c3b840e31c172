//! One run of `mux`: the router under test started, the writer threads
//! opened and let go at once, the output read back and checked here, and
//! everything torn down in an order that leaves no writer blocked.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

use super::lines::{Checker, write_lines};
use super::{INPUTS, Plan, Router};
use crate::child::Proc;
use crate::sys;

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub lines: u64,
    pub secs: f64,
    /// CPU seconds of the router process over `secs`.
    pub router_cpu_s: Option<f64>,
}

/// One run of `router`. Every wait in it is bounded by `plan.timeout`.
pub fn run_once(
    plan: &Plan,
    router: Router,
    ins: &[PathBuf],
    out: &Path,
) -> Result<Measured, String> {
    let deadline = Instant::now() + plan.timeout;
    // Our read end first, so every router's output open finds a reader.
    // The extra write end keeps the FIFO from reading EOF while no router
    // has it open yet: reads say EAGAIN, and `poll` waits.
    let reader = sys::open_reader_nonblocking(out).map_err(|e| fail("open output", e))?;
    let keep = open(
        out,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open output for writing", e))?;
    let args = |cmd: &mut Command| {
        cmd.arg("--output").arg(out);
        for input in ins {
            cmd.arg("--input").arg(input);
        }
    };
    // The cats' CPU: what this process's children reaped during the run
    // used (microseconds, where `/proc/PID/stat` counts 10 ms ticks).
    let children0 = children_cpu_s();
    let mut procs = match router {
        Router::Direct => Vec::new(),
        Router::Multiplexer | Router::MultiplexerSole => {
            let bin = plan.multiplexer.as_ref().ok_or("no multiplexer binary")?;
            let mut cmd = Command::new(bin);
            args(&mut cmd);
            if router == Router::MultiplexerSole {
                cmd.arg("--sole-writer");
            }
            vec![Proc::spawn(&mut cmd, false).map_err(|e| fail("spawn multiplexer", e))?]
        }
        Router::Threads => {
            let mut cmd = Command::new(&plan.exe);
            cmd.arg("mux-threads");
            args(&mut cmd);
            vec![Proc::spawn(&mut cmd, false).map_err(|e| fail("spawn mux-threads", e))?]
        }
        // `cat IN > OUT` for each input a writer feeds (a cat of an input
        // with none would wait in its open forever): the output opens at
        // once, our read end being there.
        Router::Cat => ins
            .iter()
            .take(plan.writers.min(INPUTS))
            .map(|input| {
                let to = std::fs::OpenOptions::new().write(true).open(out)?;
                Proc::spawn_to(Command::new("cat").arg(input), Stdio::from(to))
            })
            .collect::<io::Result<Vec<Proc>>>()
            .map_err(|e| fail("spawn cat", e))?,
    };
    // A cat ends by itself at its input's EOF; a router runs until stopped.
    let watched = if router == Router::Cat {
        0
    } else {
        procs.len()
    };
    let targets: Vec<PathBuf> = (0..plan.writers)
        .map(|w| match router {
            Router::Direct => out.to_path_buf(),
            _ => ins[w % INPUTS].clone(),
        })
        .collect();

    // Writers open their FIFO (retrying until the router has it open),
    // report, then wait at the gate so every one starts writing at t0.
    let gate = Arc::new(RwLock::new(()));
    let go = gate.write().map_err(|_| "gate poisoned")?;
    let (ready_tx, ready_rx) = mpsc::channel();
    // The first writer error, seen by the reader between reads.
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let mut writers: Vec<JoinHandle<io::Result<()>>> = Vec::with_capacity(plan.writers);
    for (w, path) in targets.into_iter().enumerate() {
        let (gate, ready, lines) = (Arc::clone(&gate), ready_tx.clone(), plan.lines);
        let failure = Arc::clone(&failure);
        let patience = deadline.saturating_duration_since(Instant::now());
        let spawned = std::thread::Builder::new().spawn(move || {
            let fd = open_writer(&path, patience);
            let _ = ready.send(fd.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            let fd = fd?;
            drop(gate.read());
            let wrote = write_lines(&fd, w, lines);
            if let Err(e) = &wrote {
                let mut slot = failure.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert_with(|| format!("writer {w}: {e}"));
            }
            wrote
        });
        match spawned {
            Ok(h) => writers.push(h),
            Err(e) => return Err(fail("spawn writer", e)),
        }
    }
    drop(ready_tx);
    let result = (|| {
        for _ in 0..plan.writers {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(fail("writer open", e)),
                Err(e) => return Err(fail("waiting for the writers to open", e)),
            }
        }
        let pids: Vec<u32> = procs.iter().map(Proc::id).collect();
        // Every router process's CPU together.
        let cpu = || -> Option<f64> {
            let each: Option<Vec<f64>> = pids.iter().map(|&p| sys::cpu_seconds_of(p)).collect();
            each.filter(|e| !e.is_empty()).map(|e| e.iter().sum())
        };
        let cpu0 = cpu();
        let t0 = Instant::now();
        drop(go);
        let mut check = Checker::new(plan.writers, plan.lines);
        read_all(
            &reader,
            &mut check,
            &mut procs[..watched],
            &failure,
            deadline,
        )?;
        let secs = t0.elapsed().as_secs_f64();
        let cpu1 = cpu();
        let (cpu0, cpu1) = match router {
            Router::Cat => (children0, reap_all(&mut procs, deadline)?),
            _ => (cpu0, cpu1),
        };
        check.finish()?;
        Ok(Measured {
            lines: check.lines_seen(),
            secs,
            router_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        })
    })();
    // Teardown in this order: the router goes, then our ends of the output,
    // so a writer still blocked in write(2) gets EPIPE and returns.
    for p in procs {
        match result {
            Ok(_) => p.stop(Duration::from_secs(5)),
            Err(_) => drop(p),
        }
    }
    drop(reader);
    drop(keep);
    let mut failed = None;
    for h in writers {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(fail("writer", e))),
            Err(_) => failed = failed.or(Some("writer panicked".into())),
        }
    }
    let m = result?;
    match failed {
        Some(e) => Err(e),
        None => Ok(m),
    }
}

/// CPU seconds of this process's reaped children so far.
fn children_cpu_s() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).ok()?;
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(s(u.user_time()) + s(u.system_time()))
}

/// Waits (up to `deadline`) for processes that end by themselves (the
/// cats, at their input's EOF) and reaps them; then [`children_cpu_s`].
fn reap_all(procs: &mut [Proc], deadline: Instant) -> Result<Option<f64>, String> {
    for p in procs.iter_mut() {
        loop {
            match p.poll("cat") {
                Some(Ok(_)) => break,
                Some(Err(why)) => return Err(why),
                None if Instant::now() > deadline => return Err("cat did not exit".into()),
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
    Ok(children_cpu_s())
}

fn fail(what: &str, e: impl fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Opens a FIFO's write end, waiting up to `patience` for its reader, and
/// makes it blocking.
fn open_writer(path: &Path, patience: Duration) -> io::Result<OwnedFd> {
    let fd = sys::open_writer_nonblocking(path, patience)?;
    sys::set_nonblocking(fd.as_fd(), false)?;
    Ok(fd)
}

/// Reads the output until every line is in, feeding the checker. Between
/// reads it checks that the router is alive and no writer failed.
fn read_all(
    reader: &OwnedFd,
    check: &mut Checker,
    routers: &mut [Proc],
    failure: &Mutex<Option<String>>,
    deadline: Instant,
) -> Result<(), String> {
    let total = check.expected_bytes();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    while got < total {
        match sys::read(reader.as_fd(), &mut buf) {
            Ok(n) if n > 0 => {
                check.feed(&buf[..n])?;
                got += n as u64;
                continue;
            }
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(e) => return Err(format!("read output: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("timed out with {got} of {total} bytes read"));
        }
        if let Some(why) = routers.iter_mut().find_map(|r| r.exited("router")) {
            return Err(why);
        }
        if let Some(why) = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(why);
        }
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll output: {e}")),
        }
    }
    Ok(())
}
