//! FIFO semantics of the OS: `mkfifo`, checked non-blocking opens, pipe
//! sizing, and noticing readers (an inotify `IN_OPEN` watch plus an open
//! probe). All calls here are plain synchronous syscalls that never block.
//!
//! A FIFO is first *anchored*: opened `O_PATH` (no side effects, no reader or
//! writer counted) and checked with `fstat`. Every later open goes through
//! `/proc/self/fd/N` of the anchor, so it reaches the same inode even if the
//! path is renamed or replaced.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::unistd::mkfifo;

use crate::error::Error;
use crate::frame::Codec;

/// How to open a FIFO end.
///
/// ```
/// use ringpipe::FifoOptions;
/// let opts = FifoOptions::new().create(true).pipe_size(1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct FifoOptions {
    pub(crate) create: bool,
    pub(crate) mode: u32,
    pub(crate) follow_symlinks: bool,
    pub(crate) pipe_size: Option<usize>,
    pub(crate) open_timeout: Option<Duration>,
    pub(crate) persistent: bool,
    pub(crate) frames: Option<(Codec, usize)>,
    pub(crate) read_mode: ReadMode,
    pub(crate) reconnect: Reconnect,
    pub(crate) high_watermark: usize,
    pub(crate) low_watermark: usize,
    pub(crate) large_frames: bool,
    pub(crate) sole_writer: bool,
}

/// How a receiver reads.
///
/// `Multishot` is the default where the kernel has it (Linux >= 6.7), on
/// measurement: a paced receiver (a message per wake-up) then costs no
/// re-arm, no empty read attempt and no poll armed per message
/// (BENCHMARKS.md, Latency). Both
/// share the provided buffer ring
/// ([`Builder::provided_buffers`](crate::Builder::provided_buffers)), so a
/// waiting receiver holds no buffer in either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// One single-shot read at a time, re-armed after each completion: into
    /// a buffer the kernel takes from a provided ring once data is there
    /// (a waiting read holds none), or, while the receiver streams (its
    /// last read was large), a `READ_FIXED` into a registered buffer of its
    /// own. Sees EOF itself: no extra poll.
    Fixed,
    /// One `READ_MULTISHOT` armed per receiver, reading into buffers of a
    /// ring shared by all receivers: no re-arm per read, and memory follows
    /// the data in flight rather than the number of FIFOs. A FIFO's
    /// multishot read never reports EOF, so a poll for POLLHUP watches for
    /// writers leaving. On io_uring it needs Linux >= 6.7 (else `Fixed`
    /// is used); the epoll backend reads the same way, into buffers of
    /// its own provided rings.
    Multishot,
}

/// What a sender does when its reader leaves. It learns of it from a write
/// failing with `EPIPE`, so only while it has bytes to write: a reader that
/// leaves while the queue is empty is noticed at the next send. While it
/// waits it keeps its fd, so bytes already in the pipe reach the next
/// reader, and it knows exactly which bytes the kernel accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reconnect {
    /// Keep every unsent byte and wait for the next reader as long as it
    /// takes, then resume at the exact byte (the default).
    #[default]
    Wait,
    /// As `Wait`, but fail with [`Error::ReaderTimeout`] if no reader comes
    /// back within the limit (counted from the `EPIPE`); the unsent bytes
    /// come back in [`Event::Closed`](crate::Event::Closed). Bytes the
    /// kernel already accepted are in the pipe, not in `unsent`: closing
    /// drops them unless another process holds the FIFO open and a reader
    /// comes to drain it.
    WaitUpTo(Duration),
    /// Close at once (reason [`CloseReason::PeerGone`](crate::CloseReason::PeerGone)),
    /// handing the unsent bytes back in [`Event::Closed`](crate::Event::Closed).
    /// Bytes the kernel already accepted stay in the pipe and are not in
    /// `unsent`: with this sender's end closed and no reader, they are lost
    /// unless another process holds the FIFO open and a reader drains it.
    Fail,
}

impl Default for FifoOptions {
    fn default() -> Self {
        FifoOptions::new()
    }
}

impl FifoOptions {
    /// Defaults: do not create, mode 0600 when creating, do not follow
    /// symlinks, keep the pipe size, wait for a reader without limit, a
    /// one-shot receiver reading with [`ReadMode::Multishot`] (where the
    /// kernel has it), watermarks of
    /// 64 KiB / 16 KiB, frames of at most `PIPE_BUF` bytes.
    pub fn new() -> FifoOptions {
        FifoOptions {
            create: false,
            mode: 0o600,
            follow_symlinks: false,
            pipe_size: None,
            open_timeout: None,
            persistent: false,
            frames: None,
            read_mode: ReadMode::Multishot,
            reconnect: Reconnect::Wait,
            high_watermark: 64 * 1024,
            low_watermark: 16 * 1024,
            large_frames: false,
            sole_writer: false,
        }
    }

    /// Create the FIFO (`mkfifo`) if the path does not exist.
    pub fn create(mut self, yes: bool) -> Self {
        self.create = yes;
        self
    }

    /// Permission bits for a FIFO this call creates (default 0600; the
    /// process umask still applies).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Follow a symbolic link at the path (default: refuse it with
    /// [`Error::Symlink`], as `O_NOFOLLOW` does).
    pub fn follow_symlinks(mut self, yes: bool) -> Self {
        self.follow_symlinks = yes;
        self
    }

    /// Set the pipe's capacity with `F_SETPIPE_SZ` once the end is open.
    /// The kernel rounds the size up to a power of two (65537 bytes give
    /// 128 KiB). Sizes below one page (4096 bytes here) are refused when
    /// the FIFO is opened, with [`Error::PipeTooSmall`]: the kernel would
    /// silently make the pipe one page. Above `/proc/sys/fs/pipe-max-size`
    /// this needs `CAP_SYS_RESOURCE`; the failure is reported as
    /// [`Error::PipeSize`].
    pub fn pipe_size(mut self, bytes: usize) -> Self {
        self.pipe_size = Some(bytes);
        self
    }

    /// For a receiver: survive writers leaving. At EOF it reports
    /// [`Event::PeerGone`](crate::Event::PeerGone), reopens its read end
    /// and waits, using no CPU, for the next writer, whose first data comes
    /// with [`Event::PeerBack`](crate::Event::PeerBack). A writer that
    /// connects and leaves without writing makes no event. A one-shot
    /// receiver (the default) reports `PeerGone` and closes at EOF.
    pub fn persistent(mut self, yes: bool) -> Self {
        self.persistent = yes;
        self
    }

    /// For a receiver: deliver whole frames of `codec`, payloads of at most
    /// `max_frame` bytes, as [`Event::Frame`](crate::Event::Frame) instead
    /// of byte chunks. A frame that lies inside one read is lent straight
    /// from the read buffer; only a frame split across reads is copied. An
    /// oversized frame is [`Error::Frame`] and closes this receiver only. A
    /// writer leaving in the middle of a frame is reported the same way; a
    /// persistent receiver then drops the partial frame and goes on.
    pub fn frames(mut self, codec: Codec, max_frame: usize) -> Self {
        self.frames = Some((codec, max_frame));
        self
    }

    /// For a receiver: how it reads (default [`ReadMode::Multishot`] where
    /// the kernel has it, else [`ReadMode::Fixed`]). A
    /// receiver's own setting, so receivers of one proactor may differ; a
    /// receiver made from an fd takes it in
    /// [`Proactor::receiver_from_fd`](crate::Proactor::receiver_from_fd).
    pub fn read_mode(mut self, mode: ReadMode) -> Self {
        self.read_mode = mode;
        self
    }

    /// For a sender: what to do when the reader leaves (default
    /// [`Reconnect::Wait`]).
    ///
    /// With [`Proactor::close_after_flush`](crate::Proactor::close_after_flush)
    /// the sender closes once its reader has drained the pipe. What bounds
    /// that wait when no reader drains it:
    ///
    /// - No reader ever opened the FIFO: only [`open_timeout`](Self::open_timeout)
    ///   ([`Error::OpenTimeout`]); the policy counts from a reader leaving.
    /// - The reader left while bytes were still queued (a write failed with
    ///   `EPIPE`): `WaitUpTo(d)` ends it with [`Error::ReaderTimeout`] after
    ///   `d` without a new reader, `Fail` at once; `Closed` hands back the
    ///   bytes the kernel never accepted.
    /// - The reader left after the kernel accepted every byte, leaving some
    ///   in the pipe: no write fails, the departure goes unnoticed, and no
    ///   policy applies. The sender stays [`State::Open`](crate::State::Open)
    ///   until a reader drains the pipe or you call
    ///   [`Proactor::close`](crate::Proactor::close) (the bytes in the pipe
    ///   are then lost); bound it with a deadline of your own.
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = policy;
        self
    }

    /// For a sender: the bounds of its queue of unsent bytes. At or above
    /// `high`, sends fail with [`Error::WouldBlock`]; once the queue is down
    /// to `low`, [`Event::Writable`](crate::Event::Writable) fires. Defaults
    /// 64 KiB and 16 KiB. `low` is capped at `high`.
    pub fn watermarks(mut self, high: usize, low: usize) -> Self {
        self.high_watermark = high.max(1);
        self.low_watermark = low.min(self.high_watermark);
        self
    }

    /// For a sender: accept frames longer than
    /// [`PIPE_BUF`](crate::frame::PIPE_BUF) bytes on the wire in
    /// [`Proactor::send_frames`](crate::Proactor::send_frames) and
    /// [`send_encoded`](crate::Proactor::send_encoded) (default: refused
    /// with [`Error::FrameTooLarge`], nothing queued). Such a frame is
    /// written like [`send`](crate::Proactor::send) bytes, in as many
    /// writes as the pipe takes: **not atomic**, so another process
    /// writing to the same FIFO can interleave its bytes inside it and
    /// corrupt the stream for the reader. Turn it on only for a FIFO with
    /// one writer. Frames of at most `PIPE_BUF` bytes stay atomic either
    /// way. (A sender made from an fd: [`Proactor::set_large_frames`](crate::Proactor::set_large_frames).)
    pub fn large_frames(mut self, yes: bool) -> Self {
        self.large_frames = yes;
        self
    }

    /// For a sender: this proactor is the FIFO's only writer (default:
    /// off). `PIPE_BUF` atomicity matters only when several writers share
    /// a FIFO; with one, nothing can land between two frames, so frames
    /// are queued like [`send`](crate::Proactor::send) bytes and written
    /// in runs up to the pipe's size: one write and one reader wake-up per
    /// pipe-full instead of per 4 KiB. Frames of any size stay whole (as
    /// with [`large_frames`](Self::large_frames)), in order.
    ///
    /// What it gives up: a write that the pipe takes in part ends inside a
    /// frame, so a reader that leaves then may have read a frame's first
    /// part and the next reader gets its rest (with `PIPE_BUF` writes
    /// only whole frames are ever in the pipe). And another writer is not
    /// detected: frames written while another process writes the same FIFO
    /// may interleave with its bytes. Within
    /// this proactor, a second sender on a FIFO a sole writer writes (or a
    /// sole writer on a FIFO another sender writes) is refused with
    /// [`Error::SoleWriter`].
    pub fn sole_writer(mut self, yes: bool) -> Self {
        self.sole_writer = yes;
        self
    }

    /// For a sender: give up with [`Error::OpenTimeout`] if no reader opens
    /// the FIFO within `after` of `open_sender` (default: wait without
    /// limit). It covers the first reader only; later departures are the
    /// [`reconnect`](Self::reconnect) policy's. It also bounds
    /// `close_after_flush` on a sender that never had a reader: everything
    /// sent comes back in [`Event::Closed`](crate::Event::Closed).
    pub fn open_timeout(mut self, after: Duration) -> Self {
        self.open_timeout = Some(after);
        self
    }
}

/// Opens `path` as `O_PATH` after creating it if asked, and checks that it is
/// a FIFO. The options are checked first: a refused option creates nothing.
pub(crate) fn anchor(path: &Path, opts: &FifoOptions) -> Result<OwnedFd, Error> {
    if path.as_os_str().is_empty() {
        return Err(Error::EmptyPath);
    }
    if std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).contains(&0) {
        return Err(Error::NulInPath { path: path.into() });
    }
    if let Some(size) = opts.pipe_size {
        check_pipe_size(size, || path.display().to_string())?;
    }
    if opts.create {
        match mkfifo(path, Mode::from_bits_truncate(opts.mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(open_error(path, e.into())),
        }
    }
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if !opts.follow_symlinks {
        flags |= OFlag::O_NOFOLLOW;
    }
    let fd = open(path, flags, Mode::empty()).map_err(|e| open_error(path, e.into()))?;
    let st = fstat(&fd).map_err(|e| open_error(path, e.into()))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    match kind {
        SFlag::S_IFIFO => Ok(fd),
        SFlag::S_IFLNK => Err(Error::Symlink { path: path.into() }),
        other => Err(Error::NotAFifo {
            path: path.into(),
            kind: kind_name(other),
        }),
    }
}

fn kind_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFREG => "regular file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFSOCK => "socket",
        _ => "file of unknown type",
    }
}

/// The typed error for a failed `mkfifo` / `open` of `path`.
pub(crate) fn open_error(path: &Path, e: io::Error) -> Error {
    if path.as_os_str().is_empty() {
        return Error::EmptyPath;
    }
    let path: PathBuf = path.into();
    match e.raw_os_error() {
        Some(libc::ENOENT) => match missing_dir(&path) {
            Some(dir) => Error::NoSuchDirectory { path, dir },
            None => Error::NotFound { path },
        },
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { path, source: e },
        Some(libc::ELOOP) => Error::Symlink { path },
        _ => Error::Open { path, source: e },
    }
}

/// The first missing directory of `path`'s parents (the highest one whose
/// own parent exists), if any is missing: then the FIFO itself is not the
/// problem. Only for the message of an `ENOENT` already returned.
fn missing_dir(path: &Path) -> Option<PathBuf> {
    let mut missing = None;
    // The last ancestor of a relative path is "", the current directory.
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing = Some(dir.to_path_buf()),
            _ => break,
        }
    }
    missing
}

fn reopen(anchor: &OwnedFd, flags: OFlag) -> io::Result<OwnedFd> {
    let proc_path = format!("/proc/self/fd/{}", anchor.as_raw_fd());
    Ok(open(
        proc_path.as_str(),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the read end. Never blocks: `O_NONBLOCK` makes the open return at
/// once without a writer; it is then cleared, so a read waits quietly (by
/// internal poll) for the first writer instead of returning a false EOF.
///
/// The end reads with `O_NOATIME` where the kernel allows it (the FIFO's
/// owner, or `CAP_FOWNER`): a FIFO on a filesystem otherwise has its access
/// time checked, and often written, at every read that returns data, which
/// a reader never uses. For anyone else reads go on as without it.
pub(crate) fn open_reader(anchor: &OwnedFd) -> io::Result<OwnedFd> {
    let fd = reopen(anchor, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    let flags =
        OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?) - OFlag::O_NONBLOCK;
    match fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NOATIME)) {
        Ok(_) => {}
        Err(nix::errno::Errno::EPERM) => {
            fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags))?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(fd)
}

/// Opens the write end if a reader is there (`None`: no reader, ENXIO).
/// Never blocks.
pub(crate) fn try_open_writer(anchor: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    match reopen(anchor, OFlag::O_WRONLY | OFlag::O_NONBLOCK) {
        Ok(fd) => {
            set_blocking(fd.as_fd())?;
            Ok(Some(fd))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the FIFO has a reader now: a non-blocking write-only open
/// succeeds exactly then. (Polling the write end cannot tell: on this
/// kernel a FIFO writer polls POLLOUT with or without a reader.) A failed
/// probe makes no inotify event, so probing on `IN_OPEN` cannot loop.
pub(crate) fn has_reader(anchor: &OwnedFd) -> io::Result<bool> {
    // Closing the probe's write end while the sender holds its own does not
    // signal EOF to the reader.
    Ok(try_open_writer(anchor)?.is_some())
}

/// io_uring waits on a pipe by internal poll when the file is blocking;
/// with `O_NONBLOCK` set, reads would complete with EOF or -EAGAIN instead.
fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The page size: the smallest capacity the kernel gives a pipe.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// Refuses a pipe size the kernel would silently raise to one page.
/// (`Proactor::set_pipe_size` on a sender not yet open may call it to
/// refuse at once rather than when the reader comes.)
pub(crate) fn check_pipe_size(bytes: usize, what: impl FnOnce() -> String) -> Result<(), Error> {
    let min = page_size();
    if bytes < min {
        return Err(Error::PipeTooSmall {
            what: what(),
            requested: bytes,
            min,
        });
    }
    Ok(())
}

/// `F_SETPIPE_SZ`; returns the size the kernel chose (rounded up to a power
/// of two). Below one page: [`Error::PipeTooSmall`], nothing changed.
pub(crate) fn set_pipe_size(
    fd: BorrowedFd<'_>,
    bytes: usize,
    what: String,
) -> Result<usize, Error> {
    check_pipe_size(bytes, || what.clone())?;
    let requested = i32::try_from(bytes).unwrap_or(i32::MAX);
    match fcntl(fd, FcntlArg::F_SETPIPE_SZ(requested)) {
        Ok(n) => Ok(n as usize),
        Err(e) => Err(Error::PipeSize {
            what,
            requested: bytes,
            max: pipe_max_size(),
            source: e.into(),
        }),
    }
}

/// Grows a pipe towards `want` bytes, capped at `/proc/sys/fs/pipe-max-size`,
/// never shrinking it; the kernel sizes pipes in powers of two, so the
/// largest one within the cap is asked for. Where the kernel refuses (a
/// user past `pipe-user-pages-soft`, or short of memory), smaller ones are
/// tried down to the present size. Returns the sizes before and after;
/// never fails: sizing is an optimisation, and a pipe works at any size.
pub(crate) fn grow_pipe(fd: BorrowedFd<'_>, want: usize) -> (usize, usize) {
    let Ok(now) = fcntl(fd, FcntlArg::F_GETPIPE_SZ).map(|n| n as usize) else {
        return (0, 0);
    };
    let max = pipe_max_size();
    let cap = if max > 0 { want.min(max) } else { want };
    if cap <= now {
        return (now, now);
    }
    let mut try_size = 1usize << cap.ilog2();
    while try_size > now {
        let requested = i32::try_from(try_size).unwrap_or(i32::MAX);
        if let Ok(n) = fcntl(fd, FcntlArg::F_SETPIPE_SZ(requested)) {
            return (now, n as usize);
        }
        try_size /= 2;
    }
    (now, now)
}

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to at
/// least `want`, up to the hard limit. Each FIFO end is one descriptor
/// (a sender or persistent receiver keeps a second, `O_PATH`, one).
/// Returns the new soft limit, or [`Error::FdLimit`] when the hard limit
/// is below `want`.
pub fn raise_fd_limit(want: u64) -> Result<u64, Error> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| Error::FdLimit {
        want,
        hard: 0,
        source: Some(e.into()),
    })?;
    if soft >= want {
        return Ok(soft);
    }
    if hard < want {
        return Err(Error::FdLimit {
            want,
            hard,
            source: None,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).map_err(|e| Error::FdLimit {
        want,
        hard,
        source: Some(e.into()),
    })?;
    Ok(want)
}

/// The kernel's pipe limits, from `/proc/sys/fs`. Pipes a user creates
/// beyond `pipe-user-pages-soft` pages in total are clamped to one page
/// (4 KiB), which matters with thousands of FIFOs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeLimits {
    /// Largest size `F_SETPIPE_SZ` grants without `CAP_SYS_RESOURCE`.
    pub max_size: usize,
    /// Pages per user before new pipes shrink to one page (0: no limit).
    pub user_pages_soft: usize,
    /// Pages per user before `F_SETPIPE_SZ` fails (0: no limit).
    pub user_pages_hard: usize,
}

impl PipeLimits {
    /// Reads the limits (0 for any that cannot be read).
    pub fn read() -> PipeLimits {
        let get = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/fs/{name}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        PipeLimits {
            max_size: get("pipe-max-size"),
            user_pages_soft: get("pipe-user-pages-soft"),
            user_pages_hard: get("pipe-user-pages-hard"),
        }
    }
}

/// `/proc/sys/fs/pipe-max-size`, 0 when unreadable.
pub fn pipe_max_size() -> usize {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// One inotify instance watching FIFOs for `IN_OPEN`, so a waiting sender
/// hears of a reader as soon as its `open` returns. (A reader whose
/// blocking `open` waits for a writer raises no event until it returns: the
/// proactor's retry timer covers that case.)
#[derive(Debug)]
pub(crate) struct OpenWatch {
    inotify: Inotify,
    refs: HashMap<WatchDescriptor, usize>,
}

impl OpenWatch {
    pub(crate) fn new() -> io::Result<OpenWatch> {
        Ok(OpenWatch {
            inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?,
            refs: HashMap::new(),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// Watches the anchored FIFO; watches of one inode share a descriptor.
    pub(crate) fn add(&mut self, anchor: &OwnedFd) -> io::Result<WatchDescriptor> {
        let proc_path = format!("/proc/self/fd/{}", anchor.as_raw_fd());
        let wd = self
            .inotify
            .add_watch(proc_path.as_str(), AddWatchFlags::IN_OPEN)?;
        *self.refs.entry(wd).or_insert(0) += 1;
        Ok(wd)
    }

    pub(crate) fn remove(&mut self, wd: WatchDescriptor) {
        if let Some(n) = self.refs.get_mut(&wd) {
            *n -= 1;
            if *n == 0 {
                self.refs.remove(&wd);
                let _ = self.inotify.rm_watch(wd);
            }
        }
    }

    /// Consumes pending events; true if there were any.
    pub(crate) fn drain(&mut self) -> bool {
        let mut any = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            any = true;
        }
        any
    }
}

/// The FIFO an fd names (its device and inode), to tell two opens of one
/// FIFO apart from two FIFOs.
pub(crate) fn identity(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    fstat(fd).ok().map(|st| (st.st_dev, st.st_ino))
}

/// The capacity of the pipe behind `fd` (`F_GETPIPE_SZ`); `None` if it is
/// not a pipe.
pub(crate) fn pipe_size(fd: BorrowedFd<'_>) -> Option<usize> {
    fcntl(fd, FcntlArg::F_GETPIPE_SZ)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}

/// Bytes in the pipe behind `fd` (either end), by `FIONREAD`.
pub(crate) fn pipe_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(rustix::io::ioctl_fionread(fd)? as usize)
}
