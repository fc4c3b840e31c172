//! The FIFOs of one run and their state: the private directory they live
//! in, each input's sender and how much of the input it has fed, each
//! output's read ends and the bytes collected, and the helpers that create
//! and open the FIFOs without blocking.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{InputReport, ProcessError};
use crate::{FifoOptions, Proactor, Receiver, Sender, Token};

/// Input bytes handed to the proactor per send. How far ahead of the child
/// the queue runs is bounded by the sender's watermarks: a send at the high
/// one is refused with [`Error::WouldBlock`](crate::Error::WouldBlock) and
/// feeding resumes at [`Event::Writable`](crate::Event::Writable).
const PIECE: usize = 64 * 1024;

/// The FIFOs' directory, mode 0700, removed with everything in it on drop.
pub(super) struct PrivateDir {
    pub(super) path: PathBuf,
}

impl PrivateDir {
    pub(super) fn create() -> Result<PrivateDir, ProcessError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // Absolute, so that the paths also hold in the child's
        // `current_dir` when `TMPDIR` is relative.
        let base = std::env::temp_dir();
        let base = std::path::absolute(&base).map_err(|source| ProcessError::TempDir {
            path: base.clone(),
            source,
        })?;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("ringpipe-{}-{n}-{nanos:08x}", std::process::id()));
            // Not recursive: creating it must fail if anything is there
            // already, so nobody else can have prepared it.
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(ProcessError::TempDir { path, source }),
            }
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One input: its data and the sender that feeds it to the FIFO. In a
/// pipeline, an input piped from another program has no data: a relay
/// feeds its sender.
pub(super) struct Input {
    pub(super) name: String,
    pub(super) path: PathBuf,
    /// Index of the program that reads it.
    pub(super) owner: usize,
    /// Fed by a relay from another program's output: bytes the relay's
    /// receiver read before the splice took over are sent through it and
    /// counted in `accepted`, beyond `handed`.
    pub(super) piped: bool,
    /// Not to be closed yet, though all its data is handed: a relay into it
    /// has not ended.
    pub(super) held: bool,
    data: Vec<u8>,
    pub(super) tx: Sender,
    /// Bytes handed to the proactor so far.
    pub(super) handed: usize,
    /// Bytes the kernel accepted (sum of `Sent`).
    pub(super) accepted: usize,
    pub(super) opened: bool,
    /// A send was refused for backpressure: wait for `Writable`.
    pub(super) blocked: bool,
    flush_asked: bool,
    pub(super) close_asked: bool,
    pub(super) closed: bool,
    /// It closed once its reader had every byte.
    pub(super) flushed: bool,
}

impl Input {
    /// Creates the input's FIFO at `path` and opens its sender, for the
    /// program `owner`. A `held` input (one a relay will feed) is not
    /// closed until [`held`](Self::held) is cleared.
    pub(super) fn open(
        p: &mut Proactor,
        name: String,
        data: Vec<u8>,
        path: PathBuf,
        owner: usize,
        held: bool,
    ) -> crate::Result<Input> {
        // A FIFO opened for reading and writing has a reader at once,
        // so the sender opens now and keeps its write end from the
        // start: the child's open for reading then returns at once, and
        // a child that opens non-blocking and reads before the sender
        // found it waits for bytes instead of seeing EOF. Dropped at
        // once, the read-write end never reads a byte. An empty input
        // needs none of this (EOF is its content); its sender waits for
        // the child, so that closing it is the child's EOF. A held input
        // may get bytes: it opens as a non-empty one.
        let keeper = if data.is_empty() && !held {
            None
        } else {
            let keeper = open_read_write(&path).map_err(|source| crate::Error::Open {
                path: path.clone(),
                source,
            });
            Some(keeper?)
        };
        let tx = p.open_sender(&path, &create())?;
        drop(keeper);
        Ok(Input {
            name,
            path,
            owner,
            piped: held,
            held,
            data,
            tx,
            handed: 0,
            accepted: 0,
            opened: false,
            blocked: false,
            flush_asked: false,
            close_asked: false,
            closed: false,
            flushed: false,
        })
    }

    /// Hands the proactor more of the input until it pushes back, and
    /// asks for close once all is handed.
    pub(super) fn feed(&mut self, p: &mut Proactor) -> crate::Result<()> {
        if self.closed || self.close_asked || self.flush_asked || self.blocked {
            return Ok(());
        }
        while self.handed < self.data.len() {
            let end = self.data.len().min(self.handed + PIECE);
            match p.send(self.tx, &self.data[self.handed..end]) {
                Ok(()) => self.handed = end,
                Err(crate::Error::WouldBlock { .. }) => {
                    self.blocked = true;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        // Only once open: a sender closed before its reader came would
        // leave the child blocked in open(2) forever.
        if self.opened && !self.held && self.handed == self.data.len() {
            p.close_after_flush(self.tx)?;
            self.flush_asked = true;
        }
        Ok(())
    }

    /// Closes the sender now; its `Closed` event settles the accounting.
    pub(super) fn abandon(&mut self, p: &mut Proactor) {
        if !self.closed && !self.close_asked {
            self.close_asked = true;
            // Err means it is already closing after a flush.
            let _ = p.close(self.tx);
        }
    }

    pub(super) fn report(&self) -> InputReport {
        InputReport {
            len: self.data.len(),
            accepted: self.accepted,
        }
    }
}

/// One output: the read ends that drain its FIFO and the bytes collected.
pub(super) struct Output {
    pub(super) name: String,
    /// Index of the program that writes it.
    pub(super) owner: usize,
    pub(super) path: PathBuf,
    /// A read end of our own that never reads: it keeps the pipe, and the
    /// bytes in it, alive while a read end is replaced, and spares the
    /// child `EPIPE` while none is open. Dropped when the output is cut.
    spare: Option<File>,
    /// The read end in use.
    pub(super) rx: Receiver,
    /// Earlier read ends, closing, whose late events still count.
    pub(super) old: Vec<Receiver>,
    pub(super) data: Vec<u8>,
    /// `rx` was opened after the child's exit was seen: its EOF is the end.
    last: bool,
    pub(super) done: bool,
    /// In a pipeline: the sender of another program's input that every
    /// read end of this output is relayed into, instead of collecting.
    relay_to: Option<crate::Sender>,
    /// Bytes relayed so far.
    pub(super) relayed: usize,
    /// A relayed read end reached EOF: replace it once it has closed (a
    /// sender takes one relay at a time).
    reopen: bool,
    /// [`cut`](Self::cut) ended it before its EOF.
    pub(super) cut: bool,
}

impl Output {
    /// Creates the output's FIFO at `path` and opens its read ends: the one
    /// that drains it and the spare.
    pub(super) fn open(
        p: &mut Proactor,
        name: String,
        path: PathBuf,
        owner: usize,
    ) -> crate::Result<Output> {
        let rx = p.open_receiver(&path, &create())?;
        let spare = open_spare(&path).map_err(|source| crate::Error::Open {
            path: path.clone(),
            source,
        })?;
        Ok(Output {
            name,
            owner,
            path,
            spare: Some(spare),
            rx,
            old: Vec::new(),
            data: Vec::new(),
            last: false,
            done: false,
            relay_to: None,
            relayed: 0,
            reopen: false,
            cut: false,
        })
    }

    /// From now on relays every byte into `tx` instead of collecting it.
    pub(super) fn relay_into(&mut self, p: &mut Proactor, tx: crate::Sender) -> crate::Result<()> {
        p.relay(self.rx, tx)?;
        self.relay_to = Some(tx);
        Ok(())
    }

    pub(super) fn is_relayed(&self) -> bool {
        self.relay_to.is_some()
    }

    /// The reader of a relayed output is gone: stop reading, so its writer
    /// meets `EPIPE` (or `SIGPIPE`) as in a shell pipeline, and put an
    /// empty directory in the FIFO's place, so a later open for writing
    /// fails at once (`EISDIR`) instead of waiting for a reader that never
    /// comes, or creating a file (a shell's `>` would).
    pub(super) fn cut(&mut self, p: &mut Proactor) {
        if self.done {
            return;
        }
        block_path(&self.path);
        // Err: it is closing already.
        let _ = p.close(self.rx);
        self.spare = None;
        self.done = true;
        self.cut = true;
    }

    pub(super) fn owns(&self, token: Token) -> bool {
        self.rx.token() == token || self.old.iter().any(|r| r.token() == token)
    }

    /// The read end reached EOF: every writer closed. While the child
    /// lives it may open the FIFO again, and after its exit the EOF may
    /// predate bytes written since; so read on with a fresh read end. Only
    /// the EOF of a read end opened after the exit was seen ends the output.
    pub(super) fn on_eof(&mut self, p: &mut Proactor, exited: bool) -> crate::Result<()> {
        if self.last {
            self.done = true;
            // Err: it is closing already.
            let _ = p.close(self.rx);
            return Ok(());
        }
        if self.is_relayed() {
            // It closes itself; `on_closed` goes on.
            self.reopen = true;
            return Ok(());
        }
        let fresh = p.open_receiver(&self.path, &FifoOptions::new())?;
        // Err: it is closing already.
        let _ = p.close(self.rx);
        self.old.push(std::mem::replace(&mut self.rx, fresh));
        self.after_reopen(exited);
        Ok(())
    }

    /// The read end in use closed. Returns false if that was unexpected (no
    /// EOF came first); a relayed one that reached EOF is replaced and the
    /// relay goes on from the fresh read end (the spare keeps the bytes
    /// written meanwhile).
    pub(super) fn on_closed(&mut self, p: &mut Proactor, exited: bool) -> crate::Result<bool> {
        if !std::mem::take(&mut self.reopen) {
            return Ok(false);
        }
        let Some(tx) = self.relay_to else {
            return Ok(false);
        };
        self.rx = p.open_receiver(&self.path, &FifoOptions::new())?;
        p.relay(self.rx, tx)?;
        self.after_reopen(exited);
        Ok(true)
    }

    /// A fresh read end opened after the writer's exit was seen is the
    /// last: wake it for its EOF.
    fn after_reopen(&mut self, exited: bool) {
        if exited {
            self.last = true;
            nudge(&self.path);
        }
    }
}

/// How the proactor opens a run's FIFOs: creating them, mode 0600.
fn create() -> FifoOptions {
    FifoOptions::new().create(true).mode(0o600)
}

/// Opens the FIFO at `path` for reading without blocking.
fn open_spare(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

/// Creates the FIFO at `path` (mode 0600) and opens it for reading and
/// writing: on Linux that never blocks and counts as a reader.
fn open_read_write(path: &Path) -> io::Result<std::fs::File> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

/// Replaces the FIFO at `path` with an empty directory: in one step where
/// `renameat2(RENAME_EXCHANGE)` is available, else by removing it first.
/// Best effort: what fails leaves the FIFO, or nothing, there.
fn block_path(path: &Path) {
    if !swap_in_dir(path) {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::DirBuilder::new().mode(0o700).create(path);
    }
}

/// Makes a directory beside `path`, under a name no FIFO can have, and
/// exchanges the two; removes what is left under that name. True if the
/// exchange was made.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn swap_in_dir(path: &Path) -> bool {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    let Some(dir) = path.parent() else {
        return false;
    };
    // '}' is refused in FIFO names.
    let spare = dir.join("}cut");
    if std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&spare)
        .is_err()
    {
        return false;
    }
    let swapped = renameat2(
        AT_FDCWD,
        &spare,
        AT_FDCWD,
        path,
        RenameFlags::RENAME_EXCHANGE,
    );
    // Swapped: `spare` is the FIFO now; else still the directory.
    let _ = match swapped {
        Ok(()) => std::fs::remove_file(&spare),
        Err(_) => std::fs::remove_dir(&spare),
    };
    swapped.is_ok()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn swap_in_dir(_path: &Path) -> bool {
    false
}

/// Opens the FIFO for writing and closes it at once. A read end waiting on
/// a FIFO that no process holds open for writing (the child has exited or
/// never opened it) then sees EOF as soon as the pipe is empty.
pub(super) fn nudge(path: &Path) {
    // Never blocks: with O_NONBLOCK a missing reader is ENXIO, ignored like
    // every failure here (the FIFO then has no read end left to wake).
    let _ = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path);
}
