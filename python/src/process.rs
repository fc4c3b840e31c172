//! `ringpipe.run` and `ringpipe.pipeline`: programs whose inputs and
//! outputs are FIFOs, over ringpipe's `process::FifoCommand` and
//! `process::Pipeline`. The run goes on a thread of its own while the
//! caller waits with the GIL released, so Ctrl-C interrupts the wait.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use ringpipe::process::{FifoCommand, InputReport, LinkReport, Pipeline, ProcessError};

use crate::errors::{ErrSpec, Kind};
use crate::gate::seconds;

/// One program of a run, as Python describes it.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct CommandSpec {
    args: Vec<String>,
    inputs: BTreeMap<String, Vec<u8>>,
    outputs: Vec<String>,
    piped: Vec<String>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<PathBuf>,
}

impl CommandSpec {
    fn build(self) -> Result<FifoCommand, ErrSpec> {
        let mut args = self.args.into_iter();
        let program = args
            .next()
            .ok_or_else(|| ErrSpec::new(Kind::Process, "args is empty: name a program"))?;
        let mut cmd = FifoCommand::new(program).args(args);
        for (name, data) in self.inputs {
            cmd = cmd.input(name, data);
        }
        for name in self.outputs {
            cmd = cmd.output(name);
        }
        for name in self.piped {
            cmd = cmd.piped_input(name);
        }
        for (k, v) in self.env.unwrap_or_default() {
            cmd = cmd.env(k, v);
        }
        if let Some(dir) = self.cwd {
            cmd = cmd.current_dir(dir);
        }
        Ok(cmd)
    }
}

/// A run's result as plain data, made into Python objects on the caller's
/// thread.
struct Outcome {
    returncodes: Vec<i32>,
    outputs: BTreeMap<String, Vec<u8>>,
    inputs: BTreeMap<String, InputReport>,
    links: BTreeMap<String, LinkReport>,
    /// The timeout's message, when the run was killed at its timeout.
    timed_out: Option<String>,
}

/// As `subprocess`: the exit code, or minus the signal that killed it.
fn returncode(status: &ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| -s))
        .unwrap_or(-1)
}

fn run_pipeline(commands: Vec<CommandSpec>, timeout: Option<Duration>) -> Result<Outcome, ErrSpec> {
    let mut pipeline = Pipeline::new();
    for c in commands {
        pipeline = pipeline.command(c.build()?);
    }
    if let Some(t) = timeout {
        pipeline = pipeline.timeout(t);
    }
    let outcome = |out: ringpipe::process::PipelineOutput, timed_out| Outcome {
        returncodes: out.statuses.iter().map(returncode).collect(),
        outputs: out.outputs,
        inputs: out.inputs,
        links: out.links,
        timed_out,
    };
    match pipeline.run() {
        Ok(out) => Ok(outcome(out, None)),
        Err(ProcessError::PipelineTimeout { partial, .. }) => {
            // The message names the programs; keep it for the exception.
            let message = format!("not finished after {timeout:?}; killed");
            Ok(outcome(*partial, Some(message)))
        }
        Err(e) => Err(process_error(&e)),
    }
}

fn process_error(e: &ProcessError) -> ErrSpec {
    match e {
        // A FIFO failure keeps its own class (NotFound, ...) and path.
        ProcessError::Fifo { source, .. } => {
            let mut spec = ErrSpec::from(source);
            spec.message = e.to_string();
            spec
        }
        _ => ErrSpec::new(Kind::Process, e.to_string()),
    }
}

/// Runs the programs (a pipeline of one or more) to completion; returns a
/// dict: `returncodes`, `outputs` (name: bytes), `inputs` (name:
/// (length, accepted)), `links` (name: (relayed, complete)), `timed_out`
/// (None, or the message).
#[pyfunction]
#[pyo3(signature = (commands, timeout=None))]
pub fn run_programs<'py>(
    py: Python<'py>,
    commands: Vec<CommandSpec>,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let timeout = seconds(timeout)?;
    let (reply, result) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("ringpipe-run".into())
        .spawn(move || {
            let _ = reply.send(run_pipeline(commands, timeout));
        })
        .map_err(|e| ErrSpec::new(Kind::Os, format!("cannot start a thread: {e}")).to_pyerr(py))?;
    let mut result = result;
    let outcome = loop {
        let (got, back) =
            py.detach(move || (result.recv_timeout(Duration::from_millis(50)), result));
        result = back;
        match got {
            Ok(outcome) => break outcome.map_err(|e| e.to_pyerr(py))?,
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(ErrSpec::new(Kind::Process, "the run's thread died").to_pyerr(py));
            }
        }
    };
    let d = PyDict::new(py);
    d.set_item("returncodes", outcome.returncodes)?;
    let outputs = PyDict::new(py);
    for (name, bytes) in &outcome.outputs {
        outputs.set_item(name, PyBytes::new(py, bytes))?;
    }
    d.set_item("outputs", outputs)?;
    let inputs = PyDict::new(py);
    for (name, r) in &outcome.inputs {
        inputs.set_item(name, (r.len, r.accepted))?;
    }
    d.set_item("inputs", inputs)?;
    let links = PyDict::new(py);
    for (name, l) in &outcome.links {
        links.set_item(name, (l.relayed, l.complete))?;
    }
    d.set_item("links", links)?;
    d.set_item("timed_out", outcome.timed_out)?;
    Ok(d)
}
