//! The backend boundary: [`Ring`], one of the two backends behind the same
//! calls, and the choice between them ([`Backend`], [`BackendInUse`]).
//! Everything above (the proactor and its parts) calls `Ring` and never
//! knows which one runs: an enum match per call, inlined, is all the
//! io_uring backend pays for the split.

use std::fmt;
use std::io;
use std::ops::Range;
use std::os::fd::{BorrowedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use super::epoll::Epoll;
use super::{Completion, FileRef, OpId, RingConfig, Uring, UserData};
use crate::buffers::{Buf, Pool};
use crate::error::Error;

/// The environment variable that [`Backend::Auto`] follows: `epoll`,
/// `io_uring` or `auto` (unset: `auto`).
pub const BACKEND_ENV: &str = "RINGPIPE_BACKEND";

/// Which kernel interface a proactor is built on
/// ([`Builder::backend`](crate::Builder::backend)).
///
/// | backend | needs | choose it |
/// |---|---|---|
/// | `Auto` (default) | either | io_uring where the kernel lets this process set up a ring, else epoll; `RINGPIPE_BACKEND=epoll` or `=io_uring` overrides it |
/// | `IoUring` | `io_uring_setup` allowed (no seccomp denial, `kernel.io_uring_disabled` 0 or the group), Linux >= 5.11 (NODROP, EXT_ARG, SPLICE, TEE), `RLIMIT_MEMLOCK` room for the ring's queues | to fail at build rather than run without io_uring |
/// | `Epoll` | Linux with epoll, timerfd and `RWF_NOWAIT` on pipes | to run the same way on every host |
///
/// Every guarantee of the crate holds on both. Options that tune io_uring
/// alone (registered buffers and files, SQPOLL, `defer_taskrun`,
/// `batch_wait`, `echo_hold`, multishot reads, io-wq workers) change
/// nothing on epoll: see each option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring if it can be set up, else epoll; `RINGPIPE_BACKEND`
    /// decides first when set.
    #[default]
    Auto,
    /// io_uring or a build error ([`Error::Unsupported`] naming why).
    IoUring,
    /// The epoll backend, whatever the kernel allows.
    Epoll,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// The backend a proactor runs on, and why
/// ([`Proactor::backend`](crate::Proactor::backend)). Its `Display` is
/// one line: `io_uring`, `epoll (asked for)`, `epoll (RINGPIPE_BACKEND)`,
/// or `epoll (io_uring not usable: ...)` with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInUse {
    backend: Backend,
    asked: Asked,
    fallback: Option<String>,
}

/// Who chose the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Builder,
    Env,
    Auto,
}

impl BackendInUse {
    /// [`Backend::IoUring`] or [`Backend::Epoll`], never `Auto`.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why `Auto` fell back to epoll: io_uring's setup error, in words.
    /// `None` when the backend runs because it was asked for, or io_uring
    /// worked.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Whether `RINGPIPE_BACKEND` chose it.
    pub fn from_env(&self) -> bool {
        self.asked == Asked::Env
    }
}

impl fmt::Display for BackendInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.fallback, self.asked) {
            (Some(why), _) => write!(f, "{} (io_uring not usable: {why})", self.backend),
            (None, Asked::Env) => write!(f, "{} ({BACKEND_ENV})", self.backend),
            (None, Asked::Builder) if self.backend == Backend::Epoll => {
                write!(f, "{} (asked for)", self.backend)
            }
            (None, _) => write!(f, "{}", self.backend),
        }
    }
}

/// The backend boundary: every call the proactor makes on its backend.
#[derive(Debug)]
pub(crate) enum Ring {
    Uring(Uring),
    Epoll(Epoll),
}

impl Ring {
    /// Sets up the backend `want` asks for (`Auto`: the environment's, else
    /// io_uring falling back to epoll when its setup is refused).
    pub(crate) fn new(cfg: &RingConfig, want: Backend) -> Result<(Ring, BackendInUse), Error> {
        let (want, asked) = match want {
            Backend::Auto => match from_env()? {
                Some(b) => (b, Asked::Env),
                None => (Backend::Auto, Asked::Auto),
            },
            b => (b, Asked::Builder),
        };
        let in_use = |backend, fallback| BackendInUse {
            backend,
            asked,
            fallback,
        };
        match want {
            Backend::IoUring => Ok((
                Ring::Uring(Uring::new(cfg)?),
                in_use(Backend::IoUring, None),
            )),
            Backend::Epoll => Ok((Ring::Epoll(epoll(cfg)?), in_use(Backend::Epoll, None))),
            Backend::Auto => match Uring::new(cfg) {
                Ok(ring) => Ok((Ring::Uring(ring), in_use(Backend::IoUring, None))),
                // Refused, disabled, out of locked memory, too old: what
                // epoll is for. Anything else is a real error.
                Err(Error::Unsupported { what, source }) => {
                    let why = match source {
                        Some(e) => format!("{what} ({e})"),
                        None => what,
                    };
                    Ok((Ring::Epoll(epoll(cfg)?), in_use(Backend::Epoll, Some(why))))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Hands everything queued to the kernel without waiting or reaping,
    /// so a loop sleeping on [`fd`](Self::fd) wakes for what completes.
    pub(crate) fn submit(&mut self) -> io::Result<()> {
        match self {
            Ring::Uring(r) => r.submit_and_wait(false, None),
            Ring::Epoll(r) => r.submit(),
        }
    }
}

/// The epoll backend, or why it cannot run.
fn epoll(cfg: &RingConfig) -> Result<Epoll, Error> {
    Epoll::new(cfg).map_err(|e| Error::Unsupported {
        what: "the epoll backend (epoll, timerfd, eventfd and RWF_NOWAIT on pipes)".into(),
        source: Some(e),
    })
}

/// The backend `RINGPIPE_BACKEND` names, if it is set to one.
fn from_env() -> Result<Option<Backend>, Error> {
    let Some(value) = std::env::var_os(BACKEND_ENV) else {
        return Ok(None);
    };
    match value.to_str().map(str::trim) {
        Some("" | "auto") => Ok(None),
        Some("epoll") => Ok(Some(Backend::Epoll)),
        Some("io_uring" | "iouring" | "uring") => Ok(Some(Backend::IoUring)),
        _ => Err(Error::Unsupported {
            what: format!(
                "{BACKEND_ENV}={}: expected epoll, io_uring or auto",
                value.to_string_lossy()
            ),
            source: None,
        }),
    }
}

/// Methods that both backends have, each one match.
macro_rules! both {
    ($(fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Ring {$(
            #[inline]
            pub(crate) fn $name(&mut self $(, $arg: $ty)*) -> $ret {
                match self {
                    Ring::Uring(r) => r.$name($($arg),*),
                    Ring::Epoll(r) => r.$name($($arg),*),
                }
            }
        )*}
    };
    ($(fn $name:ident(&self) -> $ret:ty;)*) => {
        impl Ring {$(
            #[inline]
            pub(crate) fn $name(&self) -> $ret {
                match self {
                    Ring::Uring(r) => r.$name(),
                    Ring::Epoll(r) => r.$name(),
                }
            }
        )*}
    };
}

both! {
    fn read(&mut self, file: FileRef, buf: Buf, data: UserData) -> io::Result<OpId>;
    fn write(&mut self, file: FileRef, buf: Buf, range: Range<usize>, data: UserData, link: bool) -> io::Result<OpId>;
    fn read_multishot(&mut self, file: FileRef, data: UserData) -> io::Result<OpId>;
    fn read_select(&mut self, file: FileRef, len: u32, data: UserData) -> io::Result<OpId>;
    fn poll_add(&mut self, fd: RawFd, mask: u32, data: UserData) -> io::Result<OpId>;
    fn poll_add_untracked(&mut self, fd: RawFd, mask: u32, data: UserData) -> io::Result<OpId>;
    fn splice(&mut self, from: FileRef, to: FileRef, len: u32, after_poll: Option<(RawFd, UserData)>, data: UserData) -> io::Result<(Option<OpId>, OpId)>;
    fn tee_or_splice(&mut self, tee: bool, from: FileRef, to: FileRef, len: u32, link: bool, data: UserData) -> io::Result<OpId>;
    fn cancel(&mut self, target: OpId, data: UserData) -> io::Result<OpId>;
    fn read_counter(&mut self, fd: RawFd, data: UserData) -> io::Result<OpId>;
    fn timeout(&mut self, after: Duration, data: UserData) -> io::Result<OpId>;
    fn register_pool(&mut self, pool: &Rc<Pool>, wait: bool) -> io::Result<()>;
    fn register_provided(&mut self, pool: &Rc<Pool>) -> io::Result<bool>;
    fn register_file(&mut self, fd: RawFd) -> Option<u32>;
    fn unregister_file(&mut self, slot: u32) -> io::Result<()>;
    fn submit_and_wait(&mut self, wait: bool, timeout: Option<Duration>) -> io::Result<()>;
    fn submit_and_wait_batch(&mut self, want: u32, hold: Duration, timeout: Option<Duration>) -> io::Result<()>;
    fn next_completion(&mut self) -> io::Result<Option<Completion>>;
    fn cancel_all_and_drain(&mut self, grace: Duration, untracked: &[OpId]) -> bool;
    fn sq_entries(&mut self) -> usize;
    fn reserve(&mut self, n: usize) -> io::Result<()>;
}

both! {
    fn files_in_use(&self) -> usize;
    fn enters(&self) -> u64;
    fn has_unsubmitted(&self) -> bool;
    fn is_sqpoll(&self) -> bool;
    fn is_deferred(&self) -> bool;
    fn in_flight(&self) -> usize;
    fn unsubmitted_writes(&self) -> usize;
    fn has_min_wait(&self) -> bool;
    fn ring_fd_registered(&self) -> bool;
    fn fd(&self) -> BorrowedFd<'_>;
    fn supports_read_multishot(&self) -> bool;
}

impl Ring {
    /// How many completions one turn may take in (io_uring's waves).
    pub(crate) fn set_wave(&mut self, completions: usize) {
        match self {
            Ring::Uring(r) => r.set_wave(completions),
            Ring::Epoll(r) => r.set_wave(completions),
        }
    }

    /// Caps io-wq workers (io_uring only: epoll runs no worker).
    pub(crate) fn set_iowq_max_workers(&self, bounded: u32, unbounded: u32) -> io::Result<()> {
        match self {
            Ring::Uring(r) => r.set_iowq_max_workers(bounded, unbounded),
            Ring::Epoll(r) => r.set_iowq_max_workers(bounded, unbounded),
        }
    }
}
