//! The one error type of the crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::token::Token;

/// Everything that can go wrong, each variant naming the path or handle
/// involved and carrying the OS error where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend asked for cannot be used here: io_uring is missing,
    /// disabled (`kernel.io_uring_disabled`), denied by a seccomp filter,
    /// out of locked memory, or lacks a required opcode or feature (with
    /// [`Backend::Auto`](crate::Backend::Auto) the proactor then runs on
    /// epoll instead); or `RINGPIPE_BACKEND` names no backend.
    #[error("not usable here: {what}")]
    Unsupported {
        /// What is missing, in words.
        what: String,
        /// The OS error, where the kernel returned one.
        #[source]
        source: Option<io::Error>,
    },

    /// The path does not exist (and creating it was not asked for).
    #[error("{}: no such FIFO", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },

    /// A directory on the way to the FIFO does not exist, so the FIFO can
    /// neither be found nor created there.
    #[error("{}: no such directory {}", path.display(), dir.display())]
    NoSuchDirectory {
        /// The path given.
        path: PathBuf,
        /// The first directory of the path that is missing.
        dir: PathBuf,
    },

    /// The path is empty: no FIFO has that name.
    #[error("\"\" (empty path): name a FIFO")]
    EmptyPath,

    /// The path holds a NUL byte, which no path the kernel takes can (it
    /// would end the name there).
    #[error("{path:?}: a path cannot hold a NUL byte")]
    NulInPath {
        /// The path given.
        path: PathBuf,
    },

    /// The path exists but is not a FIFO.
    #[error("{}: not a FIFO (it is a {kind})", path.display())]
    NotAFifo {
        /// The path given.
        path: PathBuf,
        /// What it is instead: "regular file", "directory", ...
        kind: &'static str,
    },

    /// The path is a symbolic link and following links was not allowed
    /// (see [`FifoOptions::follow_symlinks`](crate::FifoOptions::follow_symlinks)).
    #[error("{}: is a symbolic link (not followed)", path.display())]
    Symlink {
        /// The path given.
        path: PathBuf,
    },

    /// Opening the FIFO (or a directory on the way to it) was refused.
    #[error("{}: permission denied", path.display())]
    PermissionDenied {
        /// The path given.
        path: PathBuf,
        /// The OS error (`EACCES` or `EPERM`).
        #[source]
        source: io::Error,
    },

    /// Any other failure to create or open the FIFO.
    #[error("{}: {source}", path.display())]
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// No reader opened the FIFO within the sender's open timeout.
    #[error("{}: no reader within {waited:?}", path.display())]
    OpenTimeout {
        /// The FIFO's path.
        path: PathBuf,
        /// How long the sender waited.
        waited: Duration,
    },

    /// A sender's reader left and did not come back within the time its
    /// [`Reconnect::WaitUpTo`](crate::Reconnect::WaitUpTo) policy allows.
    #[error("{}: no reader came back within {waited:?}", path.display())]
    ReaderTimeout {
        /// The FIFO's path.
        path: PathBuf,
        /// How long the sender waited.
        waited: Duration,
    },

    /// Backpressure: the sender's unsent bytes are at or above its high
    /// watermark, so nothing was queued. Wait for
    /// [`Event::Writable`](crate::Event::Writable) and send again. (Flow
    /// control, not a failure: it names the handle only, and is returned
    /// without allocating.)
    #[error("{token:?}: {unsent} bytes unsent, at or above the high watermark of {high}")]
    WouldBlock {
        /// The sender.
        token: Token,
        /// Bytes queued and not yet accepted by the kernel.
        unsent: u64,
        /// The high watermark.
        high: u64,
    },

    /// The transport is one end of a relay: its bytes move by splice, so
    /// it takes no `send` and cannot join a second relay.
    #[error("{} is relaying", name(path, token))]
    Relayed {
        /// The transport.
        token: Token,
        /// Its FIFO's path or label ([`Proactor::path`](crate::Proactor::path)).
        path: Option<PathBuf>,
    },

    /// A frame could not be encoded, or a received stream is not valid in
    /// its codec.
    #[error("{}: {source}", name(path, token))]
    Frame {
        /// The transport.
        token: Token,
        /// Its FIFO's path or label ([`Proactor::path`](crate::Proactor::path)).
        path: Option<PathBuf>,
        /// What is wrong with the frame.
        #[source]
        source: crate::frame::FrameError,
    },

    /// A frame longer than [`PIPE_BUF`](crate::frame::PIPE_BUF) on the
    /// wire (header or newline included) was given to a sender that keeps
    /// frames atomic: no write of it could be, so nothing was queued. Send
    /// smaller frames, or allow large ones on a FIFO with a single writer
    /// ([`FifoOptions::large_frames`](crate::FifoOptions::large_frames),
    /// [`Proactor::set_large_frames`](crate::Proactor::set_large_frames)).
    #[error(
        "{}: frame of {len} bytes exceeds PIPE_BUF ({max} bytes), the most one \
         atomic write carries; allow it with FifoOptions::large_frames(true) \
         if this FIFO has one writer",
        name(path, token)
    )]
    FrameTooLarge {
        /// The sender.
        token: Token,
        /// Its FIFO's path or label ([`Proactor::path`](crate::Proactor::path)).
        path: Option<PathBuf>,
        /// The frame's length on the wire.
        len: usize,
        /// The most one atomic write carries: `PIPE_BUF`.
        max: usize,
    },

    /// A sender was opened on a FIFO that another sender of this proactor
    /// writes, and one of the two is its sole writer
    /// ([`FifoOptions::sole_writer`](crate::FifoOptions::sole_writer)):
    /// their frames could interleave. Nothing was opened.
    #[error(
        "{}: another sender of this proactor ({other:?}) writes this FIFO, \
         and a sole writer must be its only one",
        path.display()
    )]
    SoleWriter {
        /// The FIFO asked for.
        path: PathBuf,
        /// The sender already writing it.
        other: Token,
    },

    /// A pipe size below one page was asked for: the kernel would make the
    /// pipe one page anyway (see [`FifoOptions::pipe_size`](crate::FifoOptions::pipe_size)).
    #[error(
        "{what}: pipe size {requested} bytes is below one page ({min} bytes), the smallest pipe"
    )]
    PipeTooSmall {
        /// The path, or "fd N" for a transport made from a descriptor.
        what: String,
        /// The size asked for.
        requested: usize,
        /// The page size: the smallest pipe capacity.
        min: usize,
    },

    /// `F_SETPIPE_SZ` failed. Above `/proc/sys/fs/pipe-max-size` it needs
    /// `CAP_SYS_RESOURCE` (EPERM); over `pipe-user-pages-hard` it is EPERM too.
    #[error("{what}: cannot set pipe size to {requested} bytes (pipe-max-size is {max}): {source}")]
    PipeSize {
        /// The path, or "fd N" for a transport made from a descriptor.
        what: String,
        /// The size asked for.
        requested: usize,
        /// `/proc/sys/fs/pipe-max-size`, 0 if unreadable.
        max: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The open-file limit cannot be raised as far as asked: the hard
    /// `RLIMIT_NOFILE` is lower (raise it with `ulimit -Hn` as root or in
    /// the service's configuration) or `setrlimit` failed.
    #[error("cannot raise the open-file limit to {want} (hard limit {hard})")]
    FdLimit {
        /// The soft limit asked for.
        want: u64,
        /// The hard limit.
        hard: u64,
        /// The OS error, if a call failed.
        #[source]
        source: Option<std::io::Error>,
    },

    /// The registered buffers asked for with
    /// [`Builder::buffers`](crate::Builder::buffers) could not be locked in
    /// memory: registered buffers count against `RLIMIT_MEMLOCK` (8 MiB for
    /// most users; processes with `CAP_IPC_LOCK`, such as root, are exempt),
    /// which all of the user's processes and rings share, and the kernel
    /// releases a closed ring's share only some milliseconds after it
    /// closes. Ask for fewer or smaller buffers, leave the default (sized to
    /// the limit, and unregistered when even that does not fit), or raise
    /// the limit.
    #[error(
        "cannot register {requested} bytes of buffers: RLIMIT_MEMLOCK is {}, \
         shared by all of this user's io_uring instances; lower \
         Builder::buffers(count, size), keep the default, or raise the limit (ulimit -l)",
        limit_text(*.limit)
    )]
    MemlockLimit {
        /// Bytes of buffers asked for (count times size, in whole pages).
        requested: u64,
        /// The soft `RLIMIT_MEMLOCK` in bytes when the build failed; `None`
        /// when it is unlimited.
        limit: Option<u64>,
        /// The OS error (`ENOMEM`, or `EPERM` on older kernels).
        #[source]
        source: io::Error,
    },

    /// The handle names a transport that is closing or closed.
    #[error("{token:?} is closed")]
    Closed {
        /// The handle used.
        token: Token,
    },

    /// The handle's slot now belongs to another transport (or never existed).
    #[error("{token:?} is stale: its slot was reused")]
    Stale {
        /// The handle used.
        token: Token,
    },

    /// The handle was issued by another proactor: it names nothing here
    /// (each proactor numbers its own slots, so it is never taken for one
    /// of this proactor's transports).
    #[error("{token:?} belongs to proactor {}, not to proactor {this}", token.proactor)]
    Foreign {
        /// The handle used.
        token: Token,
        /// This proactor's identity ([`Proactor::id`](crate::Proactor::id)).
        this: u32,
    },

    /// An I/O operation of a transport failed.
    #[error("{}: {op} failed: {source}", name(path, token))]
    Io {
        /// The transport.
        token: Token,
        /// Its FIFO's path or label ([`Proactor::path`](crate::Proactor::path)).
        path: Option<PathBuf>,
        /// The operation: "read", "write", ...
        op: &'static str,
        /// The OS error from the completion.
        #[source]
        source: io::Error,
    },

    /// The proactor's ring defers its task work (`DEFER_TASKRUN`, the
    /// default): a loop that sleeps on its fd would never be woken, so
    /// [`Proactor::nest_fd`](crate::Proactor::nest_fd) does not hand it
    /// out. Build the proactor with
    /// [`Builder::defer_taskrun(false)`](crate::Builder::defer_taskrun).
    #[error(
        "proactor {proactor} defers its task work (DEFER_TASKRUN, the default): \
         another loop waiting on its fd would never wake; build it with \
         Builder::defer_taskrun(false) to drive it from another event loop"
    )]
    NotNestable {
        /// The proactor's identity ([`Proactor::id`](crate::Proactor::id)).
        proactor: u32,
    },

    /// A ring-level call (`io_uring_enter`, registration) failed.
    #[error("io_uring {op} failed: {source}")]
    Ring {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The OS error number behind this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        use std::error::Error as _;
        self.source()
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error)
    }
}

/// A transport in a message: its path or label, else its handle (a
/// transport made from an fd and not labelled).
fn name(path: &Option<PathBuf>, token: &Token) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => format!("{token:?}"),
    }
}

/// An rlimit for messages: bytes, or "unlimited".
fn limit_text(limit: Option<u64>) -> String {
    match limit {
        Some(bytes) => format!("{bytes} bytes"),
        None => "unlimited".to_string(),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
