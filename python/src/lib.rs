//! ringpipe for Python: the native module `ringpipe._native`.
//!
//! A user of ringpipe's public Rust API like any other. The sync API's
//! streams run on one proactor on a private thread (`engine.rs`), asyncio
//! streams on a proactor on the event loop's own thread (`aio.rs`); both
//! through `core.rs`, which routes events into the state each Python
//! object shares with it (`stream.rs`). Calls into the parts of the Rust
//! API that are still moving are in `api.rs`.

use std::time::Duration;

use pyo3::prelude::*;

mod aio;
mod api;
mod core;
mod engine;
mod errors;
mod gate;
mod hubs;
mod process;
mod queue;
mod reader;
mod stream;
mod writer;

/// Closes every stream of the sync engine (writers flushing for up to
/// `timeout` seconds each) and stops its thread; returns whether it
/// stopped in time. Called at interpreter exit.
#[pyfunction]
#[pyo3(signature = (timeout=5.0))]
fn shutdown(py: Python<'_>, timeout: f64) -> PyResult<bool> {
    let limit = gate::seconds(Some(timeout))?.unwrap_or(Duration::ZERO);
    engine::shutdown(py, limit)
}

/// The GIL guards nothing here (every shared state has its own lock), but
/// the module is only tested with the GIL: free-threaded builds are
/// refused by the package's `__init__` before this module loads.
#[pymodule(gil_used = true)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<writer::Writer>()?;
    m.add_class::<writer::WriteReport>()?;
    m.add_class::<reader::Reader>()?;
    m.add_class::<aio::LoopEngine>()?;
    m.add_class::<hubs::HubHandle>()?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(process::run_programs, m)?)?;
    m.add("PIPE_BUF", ringpipe::frame::PIPE_BUF)?;
    Ok(())
}
