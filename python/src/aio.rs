//! The proactor of one asyncio event loop, run on the loop's own thread:
//! the loop watches the ring's fd (`loop.add_reader`) and calls `run`
//! when it is readable; `ringpipe/aio.py` wakes the streams `run` names.
//!
//! The ring is built without `DEFER_TASKRUN`: with it, completions are
//! posted only while this thread is inside `io_uring_enter`, so nothing
//! would wake a loop asleep in epoll on the ring's fd.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use ringpipe::Proactor;

use crate::core::Core;
use crate::reader::{DEFAULT_MAX_FRAME, DEFAULT_READ_BUFFER, Reader, reader_spec};
use crate::writer::{DEFAULT_MAX_BUFFER, Writer, token_id, writer_spec};

/// One event loop's proactor (see the module docs). Used from the loop's
/// thread only.
#[pyclass(unsendable, module = "ringpipe._native")]
pub struct LoopEngine {
    core: Core,
}

#[pymethods]
impl LoopEngine {
    #[new]
    fn new(py: Python<'_>) -> PyResult<LoopEngine> {
        let builder = Proactor::builder().defer_taskrun(false);
        let core = Core::new(builder, false).map_err(|e| e.to_pyerr(py))?;
        Ok(LoopEngine { core })
    }

    /// The ring's fd: readable when completions wait.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        self.core.fd().map_err(|e| e.to_pyerr(py))
    }

    #[pyo3(signature = (path, *, framing=None, create=true, mode=0o600, max_buffer=DEFAULT_MAX_BUFFER,
        when_full="block", open_timeout=None, close_timeout=None, pipe_size=None))]
    #[allow(clippy::too_many_arguments)]
    fn open_writer(
        &mut self,
        py: Python<'_>,
        path: PathBuf,
        framing: Option<&str>,
        create: bool,
        mode: u32,
        max_buffer: usize,
        when_full: &str,
        open_timeout: Option<f64>,
        close_timeout: Option<f64>,
        pipe_size: Option<usize>,
    ) -> PyResult<Writer> {
        let spec = writer_spec(
            path,
            framing,
            create,
            mode,
            max_buffer,
            when_full,
            open_timeout,
            close_timeout,
            pipe_size,
        )?;
        let shared = self.core.open_writer(spec).map_err(|e| e.to_pyerr(py))?;
        Ok(Writer::wrap(shared, None))
    }

    #[pyo3(signature = (path, *, framing=None, persistent=true, create=true, mode=0o600,
        max_buffer=DEFAULT_READ_BUFFER, max_frame=DEFAULT_MAX_FRAME, pipe_size=None))]
    #[allow(clippy::too_many_arguments)]
    fn open_reader(
        &mut self,
        py: Python<'_>,
        path: PathBuf,
        framing: Option<&str>,
        persistent: bool,
        create: bool,
        mode: u32,
        max_buffer: usize,
        max_frame: usize,
        pipe_size: Option<usize>,
    ) -> PyResult<Reader> {
        let spec = reader_spec(
            path, framing, persistent, create, mode, max_buffer, max_frame, pipe_size,
        )?;
        let shared = self.core.open_reader(spec).map_err(|e| e.to_pyerr(py))?;
        Ok(Reader::wrap(shared))
    }

    /// Runs what the streams left, reaps every completion without
    /// waiting, hands new work to the kernel, and returns the ids of the
    /// streams whose state changed.
    fn run(&mut self, py: Python<'_>) -> PyResult<Vec<u64>> {
        self.core
            .turn(Some(Duration::ZERO))
            .and_then(|()| self.core.submit())
            .map_err(|e| e.to_pyerr(py))?;
        let mut woken: Vec<u64> = self.core.woken.drain(..).map(token_id).collect();
        woken.sort_unstable();
        woken.dedup();
        Ok(woken)
    }

    /// Whether streams left work that only `run` does.
    fn has_work(&self) -> bool {
        self.core.has_inbox()
    }

    /// Streams open or closing.
    fn live(&self) -> usize {
        self.core.live()
    }
}
