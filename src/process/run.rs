//! The loop that drives one run: feeding the inputs, routing the
//! proactor's events to the FIFOs they belong to, noticing the child's
//! exit, enforcing the timeout and assembling the result.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::fifos::{Input, Output, nudge};
use super::{FifoOutput, ProcessError};
use crate::ring::OpId;
use crate::{Event, Events, Proactor};

/// Longest time between two checks of whether the child has exited, where
/// its exit cannot be watched through the ring (no pidfd), and while the
/// FIFOs finish after it exited.
const EXIT_CHECK: Duration = Duration::from_millis(10);

/// Kills and reaps the child on drop unless it was reaped already, so no
/// error path leaves a process behind.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One run under way: the proactor, the child and the state of every
/// FIFO, until the result is taken.
pub(super) struct Run {
    program: String,
    p: Proactor,
    child: ChildGuard,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    status: Option<ExitStatus>,
    /// The first transfer error: (FIFO name, what happened).
    failure: Option<(String, String)>,
    /// The child's pidfd and its watch on the ring: readable once the
    /// child has exited, which wakes `poll`. `None` where pidfds are not
    /// available (then exit is checked every [`EXIT_CHECK`]).
    exit: Option<(OwnedFd, OpId)>,
}

impl Run {
    /// Takes charge of the started child: from here on every path kills
    /// and reaps it.
    pub(super) fn new(
        program: String,
        p: Proactor,
        child: Child,
        inputs: Vec<Input>,
        outputs: Vec<Output>,
    ) -> Run {
        let mut p = p;
        // The child is not reaped until `try_wait` says so: its pid cannot
        // be reused before, so the pidfd names this child.
        let pid = rustix::process::Pid::from_child(&child);
        let exit = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .ok()
            .and_then(|fd| {
                let op = p.watch_readable(fd.as_fd()).ok()?;
                Some((fd, op))
            });
        Run {
            program,
            p,
            child: ChildGuard(Some(child)),
            inputs,
            outputs,
            status: None,
            failure: None,
            exit,
        }
    }

    /// Feeds, drains and polls until the child has exited and every FIFO
    /// is done, a transfer fails, or `timeout` has passed.
    pub(super) fn drive(&mut self, timeout: Option<Duration>) -> Result<FifoOutput, ProcessError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut events = Events::with_capacity(64);
        loop {
            self.feed();
            if self.status.is_none() {
                let child = self.child.0.as_mut().expect("not reaped before exit");
                match child.try_wait() {
                    Ok(Some(status)) => self.on_exit(status),
                    Ok(None) => {}
                    Err(source) => {
                        return Err(ProcessError::Wait {
                            program: self.program.clone(),
                            source,
                        });
                    }
                }
            }
            if self.failure.is_some() {
                return Err(self.fail());
            }
            if self.status.is_some()
                && self.inputs.iter().all(|i| i.closed)
                && self.outputs.iter().all(|o| o.done)
            {
                return Ok(self.result());
            }
            if let Some(after) = timeout
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Err(self.time_out(after));
            }
            // Waiting for the exit on the ring needs no timer; otherwise
            // (no pidfd, or the child is gone and the FIFOs finish) check
            // every EXIT_CHECK.
            let watched = self.status.is_none() && self.exit.is_some();
            let cap = (!watched).then_some(EXIT_CHECK);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let tick = match (cap, left) {
                (Some(c), Some(l)) => Some(c.min(l)),
                (c, l) => c.or(l),
            };
            if self.p.in_flight() == 0 {
                // poll returns at once with nothing in flight.
                std::thread::sleep(tick.unwrap_or(EXIT_CHECK));
            }
            self.p
                .poll(&mut events, tick)
                .map_err(|source| ProcessError::Fifo {
                    program: self.program.clone(),
                    source,
                })?;
            if let Some((_, op)) = &self.exit
                && self.p.took_readable(*op)
            {
                // Exited: `try_wait` at the top of the loop reaps it.
                self.exit = None;
            }
            self.handle(&events);
        }
    }

    fn feed(&mut self) {
        for input in &mut self.inputs {
            if let Err(e) = input.feed(&mut self.p) {
                self.failure
                    .get_or_insert((input.name.clone(), e.to_string()));
            }
        }
    }

    fn handle(&mut self, events: &Events) {
        let exited = self.status.is_some();
        for event in events {
            let token = event.token();
            if let Some(input) = self.inputs.iter_mut().find(|i| i.tx.token() == token) {
                match event {
                    Event::Opened(_) => input.opened = true,
                    Event::Sent { bytes, .. } => input.accepted += bytes,
                    Event::Writable(_) => input.blocked = false,
                    Event::Closed { unsent, .. } => {
                        input.closed = true;
                        debug_assert_eq!(unsent.len(), input.handed - input.accepted);
                    }
                    Event::Error { error, .. } => {
                        self.failure
                            .get_or_insert((input.name.clone(), error.to_string()));
                    }
                    // PeerGone: the child closed its read end; the sender
                    // waits for it to come back or to exit.
                    _ => {}
                }
            } else if let Some(output) = self.outputs.iter_mut().find(|o| o.owns(token)) {
                let current = output.rx.token() == token;
                match event {
                    Event::Data { data, .. } => output.data.extend_from_slice(data),
                    // A read end closes itself at EOF, after this event.
                    Event::PeerGone(_) if current && !output.done => {
                        if let Err(e) = output.on_eof(&mut self.p, exited) {
                            self.failure
                                .get_or_insert((output.name.clone(), e.to_string()));
                        }
                    }
                    Event::Error { error, .. } => {
                        self.failure
                            .get_or_insert((output.name.clone(), error.to_string()));
                    }
                    Event::Closed { reason, .. } if current && !output.done => {
                        self.failure.get_or_insert((
                            output.name.clone(),
                            format!("read end closed without EOF ({reason:?})"),
                        ));
                    }
                    Event::Closed { .. } => output.old.retain(|r| r.token() != token),
                    _ => {}
                }
            }
        }
    }

    fn on_exit(&mut self, status: ExitStatus) {
        self.status = Some(status);
        self.child.0 = None;
        for input in &mut self.inputs {
            input.abandon(&mut self.p);
        }
        for output in &self.outputs {
            nudge(&output.path);
        }
    }

    /// Kills the child, if still running, and reaps it.
    fn stop_child(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.0.take() {
            // Err: it has exited already; wait reaps it either way.
            let _ = child.kill();
            let status = child.wait().map_err(|source| ProcessError::Wait {
                program: self.program.clone(),
                source,
            })?;
            self.status = Some(status);
        }
        Ok(())
    }

    fn fail(&mut self) -> ProcessError {
        if let Err(e) = self.stop_child() {
            return e;
        }
        let (fifo, detail) = self.failure.take().expect("a failure was recorded");
        ProcessError::Transfer {
            program: self.program.clone(),
            fifo,
            detail,
        }
    }

    fn time_out(&mut self, after: Duration) -> ProcessError {
        if let Err(e) = self.stop_child() {
            return e;
        }
        ProcessError::Timeout {
            program: self.program.clone(),
            after,
            partial: Box::new(self.result()),
        }
    }

    fn result(&mut self) -> FifoOutput {
        FifoOutput {
            status: self.status.expect("the child was reaped"),
            outputs: self
                .outputs
                .iter_mut()
                .map(|o| (o.name.clone(), std::mem::take(&mut o.data)))
                .collect(),
            inputs: self
                .inputs
                .iter()
                .map(|i| (i.name.clone(), i.report()))
                .collect(),
        }
    }
}
