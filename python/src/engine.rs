//! The engine: one proactor on a private thread, shared by every stream
//! of the synchronous API in the process, whatever Python thread uses it.
//! Python threads leave work in its inbox and wake it with a `Notifier`;
//! it never takes the GIL, so it can neither deadlock with Python nor keep
//! the interpreter from exiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;
use ringpipe::Proactor;

use crate::core::Core;
use crate::errors::{ErrSpec, Kind};
use crate::stream::Inbox;

/// How long a Python thread waits for the engine before it checks for
/// signals.
const SLICE: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Engine {
    pub inbox: Arc<Inbox>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: Arc<AtomicBool>,
    /// The process that started it: a child after `fork` starts its own.
    pid: u32,
}

static ENGINE: Mutex<Option<Arc<Engine>>> = Mutex::new(None);

/// The process's engine, started on first use.
pub fn engine() -> Result<Arc<Engine>, ErrSpec> {
    let mut slot = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = &*slot
        && e.pid == std::process::id()
        && !e.stopped.load(Ordering::Acquire)
    {
        return Ok(Arc::clone(e));
    }
    let (reply, started) = mpsc::sync_channel(1);
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped);
    let thread = std::thread::Builder::new()
        .name("ringpipe-engine".into())
        .spawn(move || match Core::new(Proactor::builder(), true) {
            Ok(core) => {
                let _ = reply.send(Ok(Arc::clone(&core.inbox)));
                run(core, &flag);
            }
            Err(e) => {
                flag.store(true, Ordering::Release);
                let _ = reply.send(Err(e));
            }
        })
        .map_err(|e| ErrSpec::new(Kind::Os, format!("cannot start the engine thread: {e}")))?;
    // Setting up a ring takes a millisecond or so: not worth a GIL release.
    let inbox = started
        .recv()
        .map_err(|_| ErrSpec::new(Kind::Os, "the engine thread died while starting"))??;
    let engine = Arc::new(Engine {
        inbox,
        thread: Mutex::new(Some(thread)),
        stopped,
        pid: std::process::id(),
    });
    *slot = Some(Arc::clone(&engine));
    Ok(engine)
}

/// The engine thread: turns until asked to stop and every stream is closed.
fn run(mut core: Core, stopped: &AtomicBool) {
    loop {
        if let Err(e) = core.turn(None) {
            core.fail_all(&e);
            break;
        }
        if core.quit && core.live() == 0 {
            break;
        }
    }
    stopped.store(true, Ordering::Release);
}

impl Engine {
    /// Runs `f` on the engine thread and waits for its result with the GIL
    /// released. Ctrl-C interrupts the wait (the command still runs).
    pub fn call<R: Send + 'static>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Core, &mpsc::SyncSender<R>) + Send + 'static,
    ) -> PyResult<R> {
        let (reply, mut result) = mpsc::sync_channel(1);
        self.inbox.command(Box::new(move |core| f(core, &reply)));
        loop {
            // The receiver is not `Sync`: it goes into the wait and back.
            let (got, back) = py.detach(move || (result.recv_timeout(SLICE), result));
            result = back;
            match got {
                Ok(r) => return Ok(r),
                Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(
                        ErrSpec::new(Kind::Closed, "the ringpipe engine has stopped").to_pyerr(py),
                    );
                }
            }
        }
    }
}

/// Closes every stream of the engine (writers flushing for up to `limit`,
/// or their own close timeout if shorter) and stops its thread. Waits for
/// that up to `limit` and a second more; returns whether it stopped.
pub fn shutdown(py: Python<'_>, limit: Duration) -> PyResult<bool> {
    let engine = {
        let slot = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(e) if e.pid == std::process::id() => Arc::clone(e),
            _ => return Ok(true),
        }
    };
    engine.inbox.command(Box::new(move |core| {
        core.quit = true;
        core.close_all(limit);
    }));
    let deadline = std::time::Instant::now() + limit + Duration::from_secs(1);
    while !engine.stopped.load(Ordering::Acquire) {
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        py.detach(|| std::thread::sleep(Duration::from_millis(5)));
        py.check_signals()?;
    }
    let thread = engine
        .thread
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(t) = thread {
        let _ = py.detach(|| t.join());
    }
    Ok(true)
}
