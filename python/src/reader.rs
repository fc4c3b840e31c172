//! `ringpipe.Reader`: a FIFO reader that opens at once, whoever opens the
//! other end and whenever, survives writers coming and going (by default),
//! and hands out bytes, lines or whole frames.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::core::ReaderSpec;
use crate::errors::{ErrSpec, Kind};
use crate::gate::{Waited, seconds};
use crate::stream::{Framing, ReaderShared, ReaderState};
use crate::writer::token_id;

/// Default bound of a reader's buffer: past it the reader stops reading
/// and the writers feel the pipe fill.
pub const DEFAULT_READ_BUFFER: usize = 4 << 20;
/// Default largest frame.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// What one read takes out of the buffer.
#[derive(Clone, Copy)]
enum Take {
    /// Up to this many bytes (a byte stream), or one frame (framed).
    Bytes(usize),
    /// Through the next newline (or all at EOF).
    Line,
    /// Up to this many whole frames.
    Frames(usize),
}

/// What a read found.
enum Got {
    Bytes(Vec<u8>),
    Frames(Vec<Vec<u8>>),
    /// Nothing more will come (EOF): an empty result.
    End,
}

/// Takes what `take` asks for, if there is any; `None`: wait for more.
fn try_take(st: &mut ReaderState, path: &str, take: Take) -> Option<Result<Got, ErrSpec>> {
    if st.closed {
        return Some(Err(ErrSpec::closed(path)));
    }
    let framed = st.framing != Framing::Bytes;
    // A framed reader may hold empty frames: count units, not bytes.
    let empty = if framed {
        st.data.units() == 0
    } else {
        st.data.is_empty()
    };
    let got = match take {
        _ if empty => None,
        Take::Frames(n) if framed => {
            let mut frames = Vec::with_capacity(n.min(st.data.units()));
            while frames.len() < n && st.data.units() > 0 {
                frames.push(st.data.first_unit().to_vec());
                st.data.drop_oldest();
            }
            Some(Got::Frames(frames))
        }
        Take::Frames(_) | Take::Line if framed => {
            let frame = st.data.first_unit().to_vec();
            st.data.drop_oldest();
            Some(Got::Bytes(frame))
        }
        Take::Bytes(n) if framed && n > 0 => {
            let frame = st.data.first_unit().to_vec();
            st.data.drop_oldest();
            Some(Got::Bytes(frame))
        }
        Take::Line => {
            let all = st.data.as_slice();
            let end = match all.iter().position(|&b| b == b'\n') {
                Some(at) => Some(at + 1),
                None if st.finished() => Some(all.len()),
                None => None,
            };
            let line = end.map(|end| all.get(..end).unwrap_or_default().to_vec());
            if let Some(line) = &line {
                st.data.consume(line.len());
            }
            line.map(Got::Bytes)
        }
        Take::Bytes(n) | Take::Frames(n) => {
            let all = st.data.as_slice();
            let chunk = all.get(..n.min(all.len())).unwrap_or_default().to_vec();
            st.data.consume(chunk.len());
            Some(Got::Bytes(chunk))
        }
    };
    match got {
        Some(got) => Some(Ok(got)),
        None if empty => match &st.error {
            Some(e) => Some(Err(e.clone())),
            None if st.eof => Some(Ok(Got::End)),
            None => None,
        },
        None => None,
    }
}

/// A reader nobody can reach any more stops reading.
impl Drop for Reader {
    fn drop(&mut self) {
        self.close();
    }
}

/// A FIFO reader (see the package docs). Thread-safe.
#[pyclass(frozen, module = "ringpipe._native")]
pub struct Reader {
    pub(crate) shared: Arc<ReaderShared>,
}

/// Parses the options shared by `Reader` and `open_reader`.
#[allow(clippy::too_many_arguments)]
pub fn reader_spec(
    path: std::path::PathBuf,
    framing: Option<&str>,
    persistent: bool,
    create: bool,
    mode: u32,
    max_buffer: usize,
    max_frame: usize,
    pipe_size: Option<usize>,
) -> PyResult<ReaderSpec> {
    Ok(ReaderSpec {
        path: path.display().to_string(),
        create,
        mode,
        framing: Framing::parse(framing).map_err(PyValueError::new_err)?,
        persistent,
        max_buffer: max_buffer.max(1),
        max_frame,
        pipe_size,
    })
}

impl Reader {
    pub fn wrap(shared: Arc<ReaderShared>) -> Reader {
        Reader { shared }
    }

    /// Up to `max` frames as a list, built under the lock (no copy but
    /// the one into each `bytes`); `None`: nothing there yet.
    fn take_frames<'py>(
        &self,
        py: Python<'py>,
        max: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let mut st = self.shared.gate.lock();
        if st.framing == Framing::Bytes {
            drop(st);
            let got = self.take(py, Take::Frames(max), None, false)?;
            return list_of(py, got);
        }
        if st.closed {
            return Err(ErrSpec::closed(&self.shared.path).to_pyerr(py));
        }
        let n = st.data.units().min(max);
        if n == 0 {
            return match &st.error {
                Some(e) => Err(e.to_pyerr(py)),
                None if st.eof => Ok(Some(PyList::empty(py))),
                None => Ok(None),
            };
        }
        let mut frames = Vec::with_capacity(n);
        for _ in 0..n {
            frames.push(PyBytes::new(py, st.data.first_unit()));
            st.data.drop_oldest();
        }
        self.after_take(&mut st);
        drop(st);
        PyList::new(py, frames).map(Some)
    }

    /// After Python took data: resume a reader paused by a full buffer.
    fn after_take(&self, st: &mut ReaderState) {
        if st.paused && !st.resume && st.data.len() <= st.max_buffer / 2 {
            st.resume = true;
            if !st.dirty {
                st.dirty = true;
                self.shared.inbox.kick(st.token);
            }
        }
    }

    fn take(
        &self,
        py: Python<'_>,
        take: Take,
        timeout: Option<Duration>,
        wait: bool,
    ) -> PyResult<Option<Got>> {
        let path = &self.shared.path;
        let got = if wait {
            match self
                .shared
                .gate
                .wait(py, timeout, |st| try_take(st, path, take))?
            {
                Waited::Ready(got) => got,
                Waited::TimedOut => return Err(nothing_in_time(py, path)),
            }
        } else {
            match try_take(&mut self.shared.gate.lock(), path, take) {
                Some(got) => got,
                None => return Ok(None),
            }
        };
        self.after_take(&mut self.shared.gate.lock());
        got.map(Some).map_err(|e| e.to_pyerr(py))
    }
}

/// A read's timeout ran out.
fn nothing_in_time(py: Python<'_>, path: &str) -> PyErr {
    ErrSpec::new(
        Kind::Timeout,
        format!("{path}: nothing to read within the timeout"),
    )
    .with_path(path)
    .to_pyerr(py)
}

fn bytes_of(py: Python<'_>, got: Option<Got>) -> Option<Py<PyAny>> {
    match got? {
        Got::Bytes(b) => Some(PyBytes::new(py, &b).into_any().unbind()),
        Got::Frames(frames) => {
            let first = frames
                .first()
                .map(|f| PyBytes::new(py, f).into_any().unbind());
            Some(first.unwrap_or_else(|| PyBytes::new(py, b"").into_any().unbind()))
        }
        Got::End => Some(PyBytes::new(py, b"").into_any().unbind()),
    }
}

fn list_of(py: Python<'_>, got: Option<Got>) -> PyResult<Option<Bound<'_, PyList>>> {
    let Some(got) = got else { return Ok(None) };
    let list = PyList::empty(py);
    match got {
        Got::Frames(frames) => {
            for f in frames {
                list.append(PyBytes::new(py, &f))?;
            }
        }
        Got::Bytes(b) => list.append(PyBytes::new(py, &b))?,
        Got::End => {}
    }
    Ok(Some(list))
}

#[pymethods]
impl Reader {
    #[new]
    #[pyo3(signature = (path, *, framing=None, persistent=true, create=true, mode=0o600,
        max_buffer=DEFAULT_READ_BUFFER, max_frame=DEFAULT_MAX_FRAME, pipe_size=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
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
        let engine = crate::engine::engine().map_err(|e| e.to_pyerr(py))?;
        let opened = engine.call(py, move |core, reply| match core.open_reader(spec) {
            Ok(r) => {
                let token = r.gate.lock().token;
                if reply.send(Ok(r)).is_err() {
                    core.close_reader(token);
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        })?;
        Ok(Reader::wrap(opened.map_err(|e| e.to_pyerr(py))?))
    }

    /// Waits for data and returns what there is, up to `n` bytes (`-1`:
    /// all); framed, the next frame. `b""` once nothing more can come (a
    /// one-shot reader at EOF). Raises `ringpipe.Timeout` after `timeout`
    /// seconds without data, `ringpipe.Closed` once closed.
    #[pyo3(signature = (n=-1, timeout=None))]
    fn read(&self, py: Python<'_>, n: isize, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let got = self.take(py, Take::Bytes(n), seconds(timeout)?, true)?;
        Ok(bytes_of(py, got).unwrap_or_else(|| PyBytes::new(py, b"").into_any().unbind()))
    }

    /// The next line, newline included (the rest at EOF, `b""` after it);
    /// framed, the next frame.
    #[pyo3(signature = (timeout=None))]
    fn readline(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let got = self.take(py, Take::Line, seconds(timeout)?, true)?;
        Ok(bytes_of(py, got).unwrap_or_else(|| PyBytes::new(py, b"").into_any().unbind()))
    }

    /// Waits for at least one frame and returns every frame there is, up
    /// to `max`; `[]` once nothing more can come. Unframed, one chunk.
    #[pyo3(signature = (max=1_000_000, timeout=None))]
    fn read_frames<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let timeout = seconds(timeout)?;
        loop {
            if let Some(list) = self.take_frames(py, max.max(1))? {
                return Ok(list);
            }
            let ready = |st: &mut ReaderState| (st.data.units() > 0 || st.finished()).then_some(());
            if let Waited::TimedOut = self.shared.gate.wait(py, timeout, ready)? {
                return Err(nothing_in_time(py, &self.shared.path));
            }
        }
    }

    /// Non-blocking `read`: `None` when there is nothing yet.
    #[pyo3(signature = (n=-1))]
    fn try_read(&self, py: Python<'_>, n: isize) -> PyResult<Option<Py<PyAny>>> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let got = self.take(py, Take::Bytes(n), None, false)?;
        Ok(bytes_of(py, got))
    }

    /// Non-blocking `readline`: `None` when no whole line is there yet.
    fn try_readline(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let got = self.take(py, Take::Line, None, false)?;
        Ok(bytes_of(py, got))
    }

    /// Non-blocking `read_frames`: `None` when there is nothing yet.
    #[pyo3(signature = (max=1_000_000))]
    fn try_read_frames<'py>(
        &self,
        py: Python<'py>,
        max: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        self.take_frames(py, max.max(1))
    }

    /// Stops reading; bytes read and not yet taken are dropped. Further
    /// reads raise `ringpipe.Closed`; iteration ends.
    fn close(&self) {
        let mut st = self.shared.gate.lock();
        let was = st.closed;
        st.closed = true;
        let token = st.token;
        drop(st);
        self.shared.gate.notify();
        if !was {
            self.shared
                .inbox
                .command(Box::new(move |core| core.close_reader(token)));
        }
    }

    /// The FIFO's path.
    #[getter]
    fn path(&self) -> String {
        self.shared.path.clone()
    }

    /// "open", "peer_gone" (the writers left; a persistent reader waits for
    /// the next), or "closed".
    #[getter]
    fn state(&self) -> &'static str {
        self.shared.gate.lock().phase.name()
    }

    /// Bytes read from the pipe and not yet taken.
    #[getter]
    fn buffered(&self) -> usize {
        self.shared.gate.lock().data.len()
    }

    /// Bytes read from the pipe so far.
    #[getter]
    fn bytes_read(&self) -> u64 {
        self.shared.gate.lock().bytes_read
    }

    /// Writers that came after a previous one left.
    #[getter]
    fn reconnects(&self) -> u64 {
        self.shared.gate.lock().reconnects
    }

    /// Frames dropped because their writer left in the middle of them.
    #[getter]
    fn broken_frames(&self) -> u64 {
        self.shared.gate.lock().broken_frames
    }

    /// Whether nothing more will come (EOF, closed, or failed).
    #[getter]
    fn finished(&self) -> bool {
        self.shared.gate.lock().finished()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.shared.gate.lock().closed
    }

    #[getter]
    fn framing(&self) -> Option<&'static str> {
        match self.shared.gate.lock().framing {
            Framing::Bytes => None,
            Framing::Frames(ringpipe::frame::Codec::Lines) => Some("lines"),
            Framing::Frames(_) => Some("length"),
        }
    }

    #[getter]
    fn id(&self) -> u64 {
        token_id(self.shared.gate.lock().token)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next line (a byte stream, newline included, like a file) or
    /// frame; ends at EOF or close.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let path = &self.shared.path;
        let waited = self.shared.gate.wait(py, None, |st| {
            if st.closed {
                return Some(Ok(None));
            }
            try_take(st, path, Take::Line).map(|r| {
                r.map(|got| match got {
                    Got::End => None,
                    got => Some(got),
                })
            })
        })?;
        let got = match waited {
            Waited::Ready(got) => got.map_err(|e| e.to_pyerr(py))?,
            Waited::TimedOut => None,
        };
        self.after_take(&mut self.shared.gate.lock());
        Ok(got.and_then(|g| bytes_of(py, Some(g))))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, _t: &Bound<'_, PyAny>, _v: &Bound<'_, PyAny>, _tb: &Bound<'_, PyAny>) {
        self.close();
    }

    fn __repr__(&self) -> String {
        let st = self.shared.gate.lock();
        format!(
            "<ringpipe.Reader {:?} {} buffered={}>",
            self.shared.path,
            st.phase.name(),
            st.data.len()
        )
    }
}
