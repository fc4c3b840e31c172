//! `ringpipe.Writer`: a FIFO writer that never loses or duplicates a byte.
//!
//! `write()` copies into a bounded buffer and returns; the proactor hands
//! the buffer to its sender, which writes each byte once, keeps
//! everything while no reader is there and resumes at the exact byte when
//! one comes back. `close()` reports what was never written.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use ringpipe::frame::Codec;

use crate::core::WriterSpec;
use crate::errors::{ErrSpec, Kind};
use crate::gate::{Waited, seconds};
use crate::stream::{CloseReport, Framing, WhenFull, WriterShared, WriterState};

/// Default bound of a writer's buffer.
pub const DEFAULT_MAX_BUFFER: usize = 4 << 20;

/// Bytes of a `bytes`, `bytearray`, `memoryview` or `str` (UTF-8).
pub fn as_bytes<'a>(data: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(Cow::Owned(s.to_cow()?.as_bytes().to_vec()));
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    // Anything else with the buffer protocol: as `bytes(data)` would.
    let copied = data.py().get_type::<PyBytes>().call1((data,))?;
    Ok(Cow::Owned(copied.cast::<PyBytes>()?.as_bytes().to_vec()))
}

/// One write as it goes on the wire: its framing's header and trailer
/// around the payload.
pub struct Unit<'a> {
    parts: [&'a [u8]; 3],
    header: [u8; 4],
    header_len: usize,
    pub len: usize,
}

impl<'a> Unit<'a> {
    pub fn new(framing: Framing, payload: &'a [u8]) -> Result<Unit<'a>, ErrSpec> {
        let (header, header_len, trailer): ([u8; 4], usize, &'static [u8]) = match framing {
            Framing::Bytes => ([0; 4], 0, b""),
            Framing::Frames(Codec::Lines) => {
                if let Some(at) = payload.iter().position(|&b| b == b'\n') {
                    return Err(ErrSpec::new(
                        Kind::Frame,
                        format!(
                            "a line cannot contain a newline (byte {at} of {})",
                            payload.len()
                        ),
                    ));
                }
                ([0; 4], 0, b"\n")
            }
            Framing::Frames(_) => {
                let len = u32::try_from(payload.len()).map_err(|_| {
                    ErrSpec::new(Kind::Frame, "a length-prefixed frame holds at most 4 GiB")
                })?;
                (len.to_le_bytes(), 4, b"")
            }
        };
        Ok(Unit {
            parts: [b"", payload, trailer],
            header,
            header_len,
            len: header_len + payload.len() + trailer.len(),
        })
    }

    fn push(&self, st: &mut WriterState) {
        let header = self.header.get(..self.header_len).unwrap_or_default();
        st.queue.push(&[header, self.parts[1], self.parts[2]]);
    }
}

/// Why a write was refused.
pub enum Refused {
    Full { queued: usize, limit: usize },
    Error(ErrSpec),
}

/// Queues one unit under the writer's policy. `Ok(Some(token))`: the
/// stream needs a kick. `None`: full, wait (the `block` policy), or `wait` false
/// to accept over the limit (asyncio's `write()`, bounded by `drain()`).
pub fn try_push(
    st: &mut WriterState,
    path: &str,
    unit: &Unit<'_>,
    wait: bool,
) -> Option<Result<Option<ringpipe::Token>, Refused>> {
    if st.closing {
        return Some(Err(Refused::Error(ErrSpec::closed(path))));
    }
    if let Some(e) = &st.error {
        return Some(Err(Refused::Error(e.clone())));
    }
    // The bound covers every byte not yet in the pipe; a write larger
    // than the bound goes in alone.
    let fits = |st: &WriterState| {
        st.pending() == 0 || st.pending().saturating_add(unit.len as u64) <= st.max_buffer as u64
    };
    if !fits(st) {
        match st.when_full {
            WhenFull::Block if wait => return None,
            WhenFull::Block => {}
            WhenFull::Raise => {
                return Some(Err(Refused::Full {
                    queued: st.pending() as usize,
                    limit: st.max_buffer,
                }));
            }
            // Only bytes still in the buffer can go: those handed to the
            // sender are promised to the pipe.
            WhenFull::DropOldest => {
                while !fits(st) {
                    match st.queue.drop_oldest() {
                        Some(n) => {
                            st.dropped_writes += 1;
                            st.dropped_bytes += n as u64;
                        }
                        None => break,
                    }
                }
            }
        }
    }
    unit.push(st);
    st.accepted += unit.len as u64;
    // A dirty writer is one the engine will look at again by itself
    // (see `Core::pump`): no wake-up to pay for then.
    let kick = (!st.dirty).then_some(st.token);
    st.dirty = true;
    Some(Ok(kick))
}

/// A refusal as the Python exception: `WouldBlock` carries the data.
pub fn refused_err(py: Python<'_>, path: &str, refused: Refused, data: &Bound<'_, PyAny>) -> PyErr {
    match refused {
        Refused::Error(e) => e.to_pyerr(py),
        Refused::Full { queued, limit } => {
            let spec = ErrSpec::new(
                Kind::WouldBlock,
                format!(
                    "{path}: buffer full ({queued} bytes queued, limit {limit}): write refused"
                ),
            )
            .with_path(path);
            let built = spec.build(py).and_then(|e| {
                e.setattr("data", data)?;
                e.setattr("queued", queued)?;
                e.setattr("limit", limit)?;
                Ok(e)
            });
            match built {
                Ok(e) => PyErr::from_value(e),
                Err(e) => e,
            }
        }
    }
}

/// A FIFO writer that never loses or duplicates a byte (see the package
/// docs). Thread-safe: any thread may write.
#[pyclass(frozen, module = "ringpipe._native")]
pub struct Writer {
    pub(crate) shared: Arc<WriterShared>,
    write_timeout: Option<Duration>,
}

impl Writer {
    pub fn wrap(shared: Arc<WriterShared>, write_timeout: Option<Duration>) -> Writer {
        Writer {
            shared,
            write_timeout,
        }
    }

    fn token(&self) -> ringpipe::Token {
        self.shared.gate.lock().token
    }
}

/// Parses the options shared by `Writer` and `open_writer`.
#[allow(clippy::too_many_arguments)]
pub fn writer_spec(
    path: std::path::PathBuf,
    framing: Option<&str>,
    create: bool,
    mode: u32,
    max_buffer: usize,
    when_full: &str,
    open_timeout: Option<f64>,
    close_timeout: Option<f64>,
    pipe_size: Option<usize>,
) -> PyResult<WriterSpec> {
    Ok(WriterSpec {
        path: path.display().to_string(),
        create,
        mode,
        framing: Framing::parse(framing).map_err(PyValueError::new_err)?,
        max_buffer: max_buffer.max(1),
        when_full: WhenFull::parse(when_full).map_err(PyValueError::new_err)?,
        open_timeout: seconds(open_timeout)?,
        pipe_size,
        close_timeout: seconds(close_timeout)?,
    })
}

#[pymethods]
impl Writer {
    #[new]
    #[pyo3(signature = (path, *, framing=None, create=true, mode=0o600, max_buffer=DEFAULT_MAX_BUFFER,
        when_full="block", write_timeout=None, open_timeout=None, close_timeout=None, pipe_size=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        framing: Option<&str>,
        create: bool,
        mode: u32,
        max_buffer: usize,
        when_full: &str,
        write_timeout: Option<f64>,
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
        let engine = crate::engine::engine().map_err(|e| e.to_pyerr(py))?;
        let opened = engine.call(py, move |core, reply| match core.open_writer(spec) {
            Ok(w) => {
                let token = w.gate.lock().token;
                // Nobody waits any more (Ctrl-C): close what was opened.
                if reply.send(Ok(w)).is_err() {
                    core.close_writer(token, Some(Duration::ZERO));
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        })?;
        let shared = opened.map_err(|e| e.to_pyerr(py))?;
        Ok(Writer::wrap(shared, seconds(write_timeout)?))
    }

    /// Queues `data` (bytes, bytearray, memoryview or str) and returns its
    /// length. Never raises `BrokenPipeError`. With `framing`, `data` is one
    /// frame. When the buffer is full: waits for room up to `timeout` (the
    /// `block` policy), raises `WouldBlock` (`raise`), or drops the oldest
    /// writes (`drop_oldest`).
    #[pyo3(signature = (data, timeout=None))]
    fn write(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let bytes = as_bytes(data)?;
        let unit = Unit::new(self.shared.framing, &bytes).map_err(|e| e.to_pyerr(py))?;
        let timeout = match timeout {
            Some(_) => seconds(timeout)?,
            None => self.write_timeout,
        };
        let path = &self.shared.path;
        let waited = self
            .shared
            .gate
            .wait(py, timeout, |st| try_push(st, path, &unit, true))?;
        match waited {
            Waited::Ready(Ok(kick)) => {
                if let Some(token) = kick {
                    self.shared.inbox.kick(token);
                }
                Ok(bytes.len())
            }
            Waited::Ready(Err(refused)) => Err(refused_err(py, path, refused, data)),
            Waited::TimedOut => {
                let st = self.shared.gate.lock();
                let full = Refused::Full {
                    queued: st.pending() as usize,
                    limit: st.max_buffer,
                };
                drop(st);
                Err(refused_err(py, path, full, data))
            }
        }
    }

    /// Queues `data` without ever waiting (asyncio's `write()`): over the
    /// limit under the `block` policy, bounded by `drain()`. Returns whether
    /// the proactor must be run to send it.
    fn write_nowait(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let bytes = as_bytes(data)?;
        let unit = Unit::new(self.shared.framing, &bytes).map_err(|e| e.to_pyerr(py))?;
        let path = &self.shared.path;
        let mut st = self.shared.gate.lock();
        match try_push(&mut st, path, &unit, false) {
            Some(Ok(kick)) => {
                drop(st);
                if let Some(token) = kick {
                    self.shared.inbox.kick(token);
                }
                Ok(kick.is_some())
            }
            Some(Err(refused)) => {
                drop(st);
                Err(refused_err(py, path, refused, data))
            }
            None => Ok(false),
        }
    }

    /// Waits until every byte written so far is in the pipe (the reader may
    /// not have read it yet), up to `timeout` seconds (`None`: no limit).
    /// Returns whether it is; raises the error that ended the writer.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let waited = self.shared.gate.wait(py, seconds(timeout)?, |st| {
            if st.pending() == 0 {
                Some(Ok(true))
            } else if let Some(e) = &st.error {
                Some(Err(e.clone()))
            } else {
                st.report.as_ref().map(|_| Ok(false))
            }
        })?;
        match waited {
            Waited::Ready(r) => r.map_err(|e| e.to_pyerr(py)),
            Waited::TimedOut => Ok(false),
        }
    }

    /// Closes once the reader has read everything, or after `timeout`
    /// seconds (default: the writer's `close_timeout`; `None` there: no
    /// limit; 0: now), and reports what was never written.
    #[pyo3(signature = (timeout=None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<WriteReport> {
        self.start_close(timeout)?;
        let waited = self.shared.gate.wait(py, None, |st| st.report.clone())?;
        match waited {
            Waited::Ready(report) => Ok(WriteReport::new(&self.shared.path, report)),
            Waited::TimedOut => Err(ErrSpec::closed(&self.shared.path).to_pyerr(py)),
        }
    }

    /// Starts `close(timeout)` without waiting (asyncio's `aclose()`).
    #[pyo3(signature = (timeout=None))]
    fn start_close(&self, timeout: Option<f64>) -> PyResult<()> {
        let timeout = match timeout {
            Some(_) => seconds(timeout)?,
            None => self.shared.close_timeout,
        };
        let mut st = self.shared.gate.lock();
        st.closing = true;
        let token = st.token;
        let closed = st.report.is_some();
        drop(st);
        if !closed {
            self.shared
                .inbox
                .command(Box::new(move |core| core.close_writer(token, timeout)));
        }
        Ok(())
    }

    /// The close report, once closed; else `None`.
    fn report(&self) -> Option<WriteReport> {
        let st = self.shared.gate.lock();
        st.report
            .clone()
            .map(|r| WriteReport::new(&self.shared.path, r))
    }

    /// The error that ended the writer, raised (nothing if none).
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        match &self.shared.gate.lock().error {
            Some(e) => Err(e.to_pyerr(py)),
            None => Ok(()),
        }
    }

    /// The FIFO's path.
    #[getter]
    fn path(&self) -> String {
        self.shared.path.clone()
    }

    /// "opening" (no reader yet), "open", "peer_gone" (the reader left:
    /// bytes are kept), or "closed".
    #[getter]
    fn state(&self) -> &'static str {
        self.shared.gate.lock().phase.name()
    }

    /// Bytes written and not yet in the pipe.
    #[getter]
    fn pending(&self) -> u64 {
        self.shared.gate.lock().pending()
    }

    /// Bytes in the buffer, not yet handed to the proactor (the part
    /// `max_buffer` bounds).
    #[getter]
    fn buffered(&self) -> usize {
        self.shared.gate.lock().queue.len()
    }

    #[getter]
    fn max_buffer(&self) -> usize {
        self.shared.gate.lock().max_buffer
    }

    /// Bytes the kernel accepted into the pipe so far.
    #[getter]
    fn written(&self) -> u64 {
        self.shared.gate.lock().written
    }

    /// Writes dropped by the `drop_oldest` policy so far.
    #[getter]
    fn dropped_writes(&self) -> u64 {
        self.shared.gate.lock().dropped_writes
    }

    #[getter]
    fn dropped_bytes(&self) -> u64 {
        self.shared.gate.lock().dropped_bytes
    }

    /// Times a reader came back after the previous one left.
    #[getter]
    fn reconnects(&self) -> u64 {
        self.shared.gate.lock().reconnects
    }

    #[getter]
    fn closed(&self) -> bool {
        self.shared.gate.lock().closing
    }

    /// A number for this stream, unique among the open ones of its proactor.
    #[getter]
    fn id(&self) -> u64 {
        token_id(self.token())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.close(py, None).map(|_| ())
    }

    fn __repr__(&self) -> String {
        let st = self.shared.gate.lock();
        format!(
            "<ringpipe.Writer {:?} {} pending={}>",
            self.shared.path,
            st.phase.name(),
            st.pending()
        )
    }
}

/// A writer nobody can reach any more closes like a file object: its
/// bytes are flushed in the background, up to its close timeout.
impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.start_close(None);
    }
}

/// A stream's number for Python (the asyncio side keys waiters by it).
pub fn token_id(t: ringpipe::Token) -> u64 {
    (u64::from(t.index) << 32) | u64::from(t.generation)
}

/// What `Writer.close()` reports.
#[pyclass(frozen, module = "ringpipe._native", get_all)]
pub struct WriteReport {
    /// The FIFO's path.
    pub path: String,
    /// Bytes never written into the pipe, in order, framing included.
    pub unsent: Py<PyBytes>,
    /// Bytes the kernel accepted into the pipe.
    pub written: u64,
    /// Whether the reader read every written byte before the close.
    pub delivered: bool,
    /// Writes dropped by `drop_oldest`, and their bytes.
    pub dropped_writes: u64,
    pub dropped_bytes: u64,
    /// "flushed", "timeout", "requested", "error", "reader_gone".
    pub reason: &'static str,
    /// The error's message, if an error ended the writer.
    pub error: Option<String>,
}

impl WriteReport {
    fn new(path: &str, r: CloseReport) -> WriteReport {
        Python::attach(|py| WriteReport {
            path: path.to_string(),
            unsent: PyBytes::new(py, &r.unsent).unbind(),
            written: r.written,
            delivered: r.delivered,
            dropped_writes: r.dropped_writes,
            dropped_bytes: r.dropped_bytes,
            reason: r.reason,
            error: r.error.map(|e| e.message),
        })
    }
}

#[pymethods]
impl WriteReport {
    /// Whether every byte given to `write()` was written (none unsent, none
    /// dropped).
    #[getter]
    fn complete(&self, py: Python<'_>) -> bool {
        self.unsent.bind(py).as_bytes().is_empty() && self.dropped_writes == 0
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "WriteReport(path={:?}, written={}, unsent={} bytes, delivered={}, dropped_writes={}, reason={:?})",
            self.path,
            self.written,
            self.unsent.bind(py).as_bytes().len(),
            if self.delivered { "True" } else { "False" },
            self.dropped_writes,
            self.reason
        )
    }
}
