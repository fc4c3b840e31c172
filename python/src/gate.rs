//! State shared between Python threads and the engine, and the one way a
//! Python thread waits on it: with the GIL released, in short slices, so
//! Ctrl-C (a signal handler raising `KeyboardInterrupt`) interrupts it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How long a wait keeps the GIL released before it checks for signals.
const SLICE: Duration = Duration::from_millis(50);

/// A mutex, a condition variable, and a count of waiters, so that the
/// engine wakes nobody (no syscall) when nobody waits.
#[derive(Debug, Default)]
pub struct Gate<S> {
    state: Mutex<S>,
    cv: Condvar,
    waiters: AtomicUsize,
}

/// What a wait came to.
pub enum Waited<R> {
    Ready(R),
    TimedOut,
}

impl<S> Gate<S> {
    pub fn new(state: S) -> Gate<S> {
        Gate {
            state: Mutex::new(state),
            cv: Condvar::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    /// The state, locked. A panic while it was held leaves it as it was.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiter, if there is one. Call after changing the state
    /// (the lock released or not).
    pub fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.cv.notify_all();
        }
    }
}

impl<S: Send> Gate<S> {
    /// Waits until `ready` returns `Some`, up to `timeout` (`None`: no
    /// limit), with the GIL released. Every [`SLICE`] it takes the GIL back
    /// to run signal handlers: a `KeyboardInterrupt` ends the wait with
    /// that exception.
    pub fn wait<R: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        mut ready: impl FnMut(&mut S) -> Option<R> + Send,
    ) -> PyResult<Waited<R>> {
        // A ready state needs no GIL release at all.
        if let Some(r) = ready(&mut self.lock()) {
            return Ok(Waited::Ready(r));
        }
        // A timeout too long to add is no limit.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let step = py.detach(|| self.wait_slice(deadline, &mut ready));
            match step {
                Some(waited) => return Ok(waited),
                None => py.check_signals()?,
            }
        }
    }

    /// One slice of [`wait`](Self::wait); `None` when the slice ran out.
    fn wait_slice<R>(
        &self,
        deadline: Option<Instant>,
        ready: &mut impl FnMut(&mut S) -> Option<R>,
    ) -> Option<Waited<R>> {
        let slice_end = Instant::now() + SLICE;
        let mut guard = self.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let outcome = loop {
            if let Some(r) = ready(&mut guard) {
                break Some(Waited::Ready(r));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break Some(Waited::TimedOut);
            }
            if now >= slice_end {
                break None;
            }
            let until = deadline.map_or(slice_end, |d| d.min(slice_end));
            guard = self
                .cv
                .wait_timeout(guard, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

/// Seconds from Python (`None`: no limit) as a duration; negative is zero.
pub fn seconds(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(pyo3::exceptions::PyValueError::new_err(
            "timeout must be a number of seconds, not NaN",
        )),
        Some(t) => Ok(Some(
            Duration::try_from_secs_f64(t.max(0.0)).unwrap_or(Duration::MAX),
        )),
    }
}
