//! ringpipe's errors as Python exceptions.
//!
//! The classes live in `ringpipe/_errors.py` (Python multiple inheritance
//! gives `NotFound` both `ringpipe.Error` and `FileNotFoundError`); this
//! file decides which class an error becomes. The engine thread never holds
//! the GIL, so an error is first kept as an [`ErrSpec`] (plain Rust data)
//! and becomes a Python exception only on a Python thread.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// Which Python class an error becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `ringpipe.NotFound` (a `FileNotFoundError`).
    NotFound,
    /// `ringpipe.PermissionDenied` (a `PermissionError`).
    PermissionDenied,
    /// `ringpipe.NotAFifo`.
    NotAFifo,
    /// `ringpipe.Closed`: the stream is closed (or closing).
    Closed,
    /// `ringpipe.WouldBlock`: the bounded buffer refused the data.
    WouldBlock,
    /// `ringpipe.Timeout` (a `TimeoutError`).
    Timeout,
    /// `ringpipe.Unsupported`: io_uring cannot be used here.
    Unsupported,
    /// `ringpipe.FrameError` (a `ValueError`): a frame the codec cannot carry.
    Frame,
    /// `ringpipe.TransportError` (an `OSError`): any other OS failure.
    Os,
    /// `ringpipe.ProcessError`: a program run over FIFOs failed.
    Process,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::NotFound => "NotFound",
            Kind::PermissionDenied => "PermissionDenied",
            Kind::NotAFifo => "NotAFifo",
            Kind::Closed => "Closed",
            Kind::WouldBlock => "WouldBlock",
            Kind::Timeout => "Timeout",
            Kind::Unsupported => "Unsupported",
            Kind::Frame => "FrameError",
            Kind::Os => "TransportError",
            Kind::Process => "ProcessError",
        }
    }

    /// Classes built like `OSError(errno, strerror, filename)`.
    fn is_os(self) -> bool {
        matches!(
            self,
            Kind::NotFound | Kind::PermissionDenied | Kind::NotAFifo | Kind::Os | Kind::Timeout
        )
    }
}

/// An error as plain data: safe to keep on the engine thread and to hand
/// to whichever Python thread asks next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrSpec {
    pub kind: Kind,
    /// The Rust error's message.
    pub message: String,
    /// The FIFO's path, where one is involved.
    pub path: Option<String>,
    /// The OS error number, where there is one.
    pub errno: Option<i32>,
}

impl ErrSpec {
    pub fn new(kind: Kind, message: impl Into<String>) -> ErrSpec {
        ErrSpec {
            kind,
            message: message.into(),
            path: None,
            errno: None,
        }
    }

    pub fn with_path(mut self, path: &str) -> ErrSpec {
        self.path = Some(path.to_string());
        self
    }

    pub fn closed(what: &str) -> ErrSpec {
        ErrSpec::new(Kind::Closed, format!("{what} is closed")).with_path(what)
    }

    /// The Python exception, built from the class in `ringpipe._errors`.
    pub fn to_pyerr(&self, py: Python<'_>) -> PyErr {
        match self.build(py) {
            Ok(value) => PyErr::from_value(value),
            Err(e) => e,
        }
    }

    /// The exception object itself, to set more attributes on.
    pub fn build<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let class = error_class(py, self.kind)?;
        let value = if self.kind.is_os() {
            class.call1((self.errno, &self.message, &self.path))?
        } else {
            class.call1((&self.message,))?
        };
        if !self.kind.is_os() {
            value.setattr("filename", &self.path)?;
        }
        Ok(value)
    }
}

impl From<&ringpipe::Error> for ErrSpec {
    fn from(e: &ringpipe::Error) -> ErrSpec {
        use ringpipe::Error as E;
        let message = e.to_string();
        let errno = e.raw_os_error();
        let (kind, path, errno) = match e {
            E::NotFound { path, .. } => (Kind::NotFound, Some(path), Some(libc::ENOENT)),
            E::NoSuchDirectory { path, .. } => (Kind::NotFound, Some(path), Some(libc::ENOENT)),
            E::PermissionDenied { path, .. } => (Kind::PermissionDenied, Some(path), errno),
            E::NotAFifo { path, .. } => (Kind::NotAFifo, Some(path), None),
            E::Symlink { path, .. } => (Kind::NotAFifo, Some(path), Some(libc::ELOOP)),
            E::Open { path, .. } => (Kind::Os, Some(path), errno),
            E::OpenTimeout { path, .. } | E::ReaderTimeout { path, .. } => {
                (Kind::Timeout, Some(path), Some(libc::ETIMEDOUT))
            }
            E::WouldBlock { .. } => (Kind::WouldBlock, None, None),
            E::Closed { .. } | E::Stale { .. } | E::Foreign { .. } => (Kind::Closed, None, None),
            E::Unsupported { .. } => (Kind::Unsupported, None, errno),
            E::Frame { .. } | E::FrameTooLarge { .. } => (Kind::Frame, None, None),
            _ => (Kind::Os, None, errno),
        };
        ErrSpec {
            kind,
            message,
            path: path.map(|p| p.display().to_string()),
            errno,
        }
    }
}

impl From<ringpipe::Error> for ErrSpec {
    fn from(e: ringpipe::Error) -> ErrSpec {
        ErrSpec::from(&e)
    }
}

fn error_class(py: Python<'_>, kind: Kind) -> PyResult<&Bound<'_, PyType>> {
    // One cell per class: looked up once, then shared.
    static CLASSES: [PyOnceLock<Py<PyType>>; 10] = [const { PyOnceLock::new() }; 10];
    let index = kind as usize;
    match CLASSES.get(index) {
        Some(cell) => cell.import(py, "ringpipe._errors", kind.class_name()),
        None => Err(pyo3::exceptions::PySystemError::new_err(
            "unknown error kind",
        )),
    }
}
