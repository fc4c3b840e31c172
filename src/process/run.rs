//! The loop that drives one run of one or more programs: feeding the
//! inputs, routing the proactor's events to the FIFOs they belong to,
//! noticing each program's exit, enforcing the timeout and assembling the
//! result.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::fifos::{Input, Output, nudge};
use super::link::{Failure, Link};
use super::{LinkReport, PipelineOutput, ProcessError};
use crate::proactor::Watch;
use crate::{CloseReason, Event, Events, Proactor};

/// Longest time between two checks of whether a child has exited, where
/// its exit cannot be watched through the ring (no pidfd), and while the
/// FIFOs finish after every child exited.
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

/// One started program.
struct Program {
    /// As given to [`FifoCommand::new`](super::FifoCommand::new).
    name: String,
    child: ChildGuard,
    status: Option<ExitStatus>,
    /// The child's pidfd and its watch on the ring: readable once the
    /// child has exited, which wakes `poll`. `None` where pidfds are not
    /// available (then exit is checked every [`EXIT_CHECK`]), and once it
    /// fired.
    exit: Option<(OwnedFd, Watch)>,
}

/// One run under way: the proactor, the children and the state of every
/// FIFO, until the result is taken.
pub(super) struct Run {
    /// The programs, as `a | b`: what errors about the whole run name.
    label: String,
    pub(super) p: Proactor,
    programs: Vec<Program>,
    pub(super) inputs: Vec<Input>,
    pub(super) outputs: Vec<Output>,
    pub(super) links: Vec<Link>,
    /// The first transfer error: (program, FIFO name, what happened).
    pub(super) failure: Failure,
}

impl Drop for Run {
    /// A process the children left behind may be blocked opening an input
    /// whose sender still waits for it: a writer that comes and goes
    /// releases it (it then reads EOF) before every FIFO goes.
    fn drop(&mut self) {
        for input in self.inputs.iter().filter(|i| !i.closed) {
            nudge(&input.path);
        }
    }
}

impl Run {
    /// A run of no program yet, over FIFOs already open.
    pub(super) fn new(
        label: String,
        p: Proactor,
        inputs: Vec<Input>,
        outputs: Vec<Output>,
        links: Vec<Link>,
    ) -> Run {
        Run {
            label,
            p,
            programs: Vec::new(),
            inputs,
            outputs,
            links,
            failure: None,
        }
    }

    /// Starts the next program: from here on every path kills and reaps
    /// it.
    pub(super) fn start(&mut self, name: String, mut cmd: Command) -> Result<(), ProcessError> {
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: name.clone(),
            source,
        })?;
        // The child is not reaped until `try_wait` says so: its pid cannot
        // be reused before, so the pidfd names this child.
        let pid = rustix::process::Pid::from_child(&child);
        let p = &mut self.p;
        let exit = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .ok()
            .and_then(|fd| {
                let watch = p.watch_readable(fd.as_fd()).ok()?;
                Some((fd, watch))
            });
        self.programs.push(Program {
            name,
            child: ChildGuard(Some(child)),
            status: None,
            exit,
        });
        Ok(())
    }

    /// Feeds, drains and polls until every child has exited and every FIFO
    /// is done, a transfer fails, or `timeout` has passed.
    pub(super) fn drive(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<PipelineOutput, ProcessError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut events = Events::with_capacity(64);
        loop {
            self.settle_links();
            self.feed();
            self.reap()?;
            if self.failure.is_some() {
                return Err(self.fail());
            }
            if self.programs.iter().all(|p| p.status.is_some())
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
            // Waiting for the exits on the ring needs no timer; otherwise
            // (a child without pidfd, or every child gone and the FIFOs
            // finishing) check every EXIT_CHECK.
            let mut running = self.programs.iter().filter(|p| p.status.is_none());
            let watched = running.clone().next().is_some() && running.all(|p| p.exit.is_some());
            let cap = (!watched).then_some(EXIT_CHECK);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let tick = match (cap, left) {
                (Some(c), Some(l)) => Some(c.min(l)),
                (c, l) => c.or(l),
            };
            if self.p.snapshot().ops_in_flight == 0 {
                // poll returns at once with nothing in flight.
                std::thread::sleep(tick.unwrap_or(EXIT_CHECK));
            }
            self.p
                .poll(&mut events, tick)
                .map_err(|source| ProcessError::Fifo {
                    program: self.label.clone(),
                    source,
                })?;
            for program in &mut self.programs {
                if let Some((_, watch)) = &program.exit
                    && self.p.fired(watch)
                {
                    // Exited: `reap` at the top of the loop reaps it.
                    program.exit = None;
                }
            }
            self.handle(&events);
        }
    }

    /// Reaps every child that has exited.
    fn reap(&mut self) -> Result<(), ProcessError> {
        for k in 0..self.programs.len() {
            let program = &mut self.programs[k];
            let Some(child) = program.child.0.as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(Some(status)) => self.on_exit(k, status),
                Ok(None) => {}
                Err(source) => {
                    return Err(ProcessError::Wait {
                        program: program.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn feed(&mut self) {
        for input in &mut self.inputs {
            if let Err(e) = input.feed(&mut self.p) {
                self.failure
                    .get_or_insert((input.owner, input.name.clone(), e.to_string()));
            }
        }
    }

    fn handle(&mut self, events: &Events) {
        for event in events {
            // Counted for the output that feeds `to`: the few bytes its read
            // end took before the splice did are reported when the sender
            // writes them, which may be after that read end closed.
            if let Event::Relayed { to, bytes, .. } = event {
                let from = self
                    .links
                    .iter()
                    .find_map(|l| l.output_into(to, &self.inputs));
                if let Some(output) = from.and_then(|i| self.outputs.get_mut(i)) {
                    output.relayed += bytes;
                }
                continue;
            }
            let token = event.token();
            if let Some(input) = self.inputs.iter_mut().find(|i| i.tx.token() == token) {
                match event {
                    Event::Opened(_) => input.opened = true,
                    Event::Sent { bytes, .. } => input.accepted += bytes,
                    Event::Writable(_) => input.blocked = false,
                    Event::Closed { unsent, reason, .. } => {
                        input.closed = true;
                        input.flushed = reason == CloseReason::Flushed;
                        debug_assert!(input.piped || unsent.len() == input.handed - input.accepted);
                    }
                    Event::Error { error, .. } => {
                        self.failure.get_or_insert((
                            input.owner,
                            input.name.clone(),
                            error.to_string(),
                        ));
                    }
                    // PeerGone: the child closed its read end; the sender
                    // waits for it to come back or to exit.
                    _ => {}
                }
            } else if let Some(output) = self.outputs.iter_mut().find(|o| o.owns(token)) {
                let current = output.rx.token() == token;
                let exited = self
                    .programs
                    .get(output.owner)
                    .is_some_and(|p| p.status.is_some());
                let failed = match event {
                    Event::Data { data, .. } if !output.is_relayed() => {
                        output.data.extend_from_slice(data);
                        None
                    }
                    // A read end closes itself at EOF, after this event.
                    Event::PeerGone(_) if current && !output.done => output
                        .on_eof(&mut self.p, exited)
                        .err()
                        .map(|e| e.to_string()),
                    Event::Error { error, .. } => Some(error.to_string()),
                    Event::Closed { reason, .. } if current && !output.done => {
                        match output.on_closed(&mut self.p, exited) {
                            Ok(true) => None,
                            Ok(false) => Some(format!("read end closed without EOF ({reason:?})")),
                            Err(e) => Some(e.to_string()),
                        }
                    }
                    Event::Closed { .. } => {
                        output.old.retain(|r| r.token() != token);
                        None
                    }
                    _ => None,
                };
                if let Some(detail) = failed {
                    self.failure
                        .get_or_insert((output.owner, output.name.clone(), detail));
                }
            }
        }
    }

    /// Passes the end of every finished output on to the input it feeds.
    fn settle_links(&mut self) {
        for link in &mut self.links {
            link.settle(
                &mut self.p,
                &self.outputs,
                &mut self.inputs,
                &mut self.failure,
            );
        }
    }

    /// Program `k` has exited: cut every output that feeds it.
    fn cut_links_into(&mut self, k: usize) {
        for link in &self.links {
            link.cut_into(k, &mut self.p, &mut self.outputs, &self.inputs);
        }
    }

    fn on_exit(&mut self, k: usize, status: ExitStatus) {
        if let Some(program) = self.programs.get_mut(k) {
            program.status = Some(status);
            program.child.0 = None;
        }
        for input in self.inputs.iter_mut().filter(|i| i.owner == k) {
            input.abandon(&mut self.p);
        }
        for output in self.outputs.iter().filter(|o| o.owner == k) {
            nudge(&output.path);
        }
        self.cut_links_into(k);
    }

    /// Kills every child still running, and reaps it.
    fn stop_children(&mut self) -> Result<(), ProcessError> {
        for program in &mut self.programs {
            if let Some(mut child) = program.child.0.take() {
                // Err: it has exited already; wait reaps it either way.
                let _ = child.kill();
                let status = child.wait().map_err(|source| ProcessError::Wait {
                    program: program.name.clone(),
                    source,
                })?;
                program.status = Some(status);
            }
        }
        Ok(())
    }

    fn fail(&mut self) -> ProcessError {
        if let Err(e) = self.stop_children() {
            return e;
        }
        let (owner, fifo, detail) = self.failure.take().expect("a failure was recorded");
        let program = self
            .programs
            .get(owner)
            .map_or_else(|| self.label.clone(), |p| p.name.clone());
        ProcessError::Transfer {
            program,
            fifo,
            detail,
        }
    }

    fn time_out(&mut self, after: Duration) -> ProcessError {
        if let Err(e) = self.stop_children() {
            return e;
        }
        ProcessError::PipelineTimeout {
            pipeline: self.label.clone(),
            after,
            partial: Box::new(self.result()),
        }
    }

    fn result(&mut self) -> PipelineOutput {
        let links: BTreeMap<String, LinkReport> = self
            .links
            .iter()
            .map(|l| (l.name().to_owned(), l.report(&self.outputs, &self.inputs)))
            .collect();
        PipelineOutput {
            statuses: self
                .programs
                .iter()
                .map(|p| p.status.expect("every child was reaped"))
                .collect(),
            outputs: self
                .outputs
                .iter_mut()
                .filter(|o| !o.is_relayed())
                .map(|o| (o.name.clone(), std::mem::take(&mut o.data)))
                .collect(),
            inputs: self
                .inputs
                .iter()
                .filter(|i| !links.contains_key(&i.name))
                .map(|i| (i.name.clone(), i.report()))
                .collect(),
            links,
        }
    }
}
