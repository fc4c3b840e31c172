//! Running programs whose inputs and outputs are FIFO paths ("turning CLI
//! programs into functions").
//!
//! [`FifoCommand`] creates one FIFO per declared input and output in a
//! private temporary directory, puts their paths into the program's
//! arguments, runs it, feeds every input, collects every output and
//! returns them with the exit status as a [`FifoOutput`].
//!
//! ```
//! use std::time::Duration;
//! use ringpipe::process::FifoCommand;
//!
//! let out = FifoCommand::new("sh")
//!     .args(["-c", r#"tr a-z A-Z < "$0" > "$1""#, "{in:text}", "{out:upper}"])
//!     .input("text", b"hello".to_vec())
//!     .output("upper")
//!     .timeout(Duration::from_secs(30))
//!     .run()?;
//! assert!(out.status.success());
//! assert_eq!(out.outputs["upper"], b"HELLO");
//! assert_eq!(out.inputs["text"].unsent(), 0);
//! # Ok::<(), ringpipe::process::ProcessError>(())
//! ```
//!
//! # Placeholders
//!
//! In arguments and environment values, `{in:NAME}` and `{out:NAME}` stand
//! for the path of the input or output FIFO called `NAME`, anywhere in the
//! string (`--file={in:data}` works). Naming a FIFO that was not declared
//! is an error; other braces are left alone. A name is the FIFO's file
//! name, so it may carry an extension for programs that look at one
//! (`data.gz`).
//!
//! # Opening order and deadlocks
//!
//! The program may open its FIFOs in any order, blocking or not, and open,
//! close and reopen its outputs: nothing here blocks, and no thread waits
//! for a FIFO. Every output's read end is open before the program starts, so
//! its opens for writing return at once. So is every non-empty input's
//! write end (the FIFO is opened for reading and writing for a moment,
//! which gives it a reader): the program's opens for reading return at
//! once, and a program that opens non-blocking and reads at once (gzip
//! does) waits for bytes instead of seeing EOF. The bytes wait in a
//! [`Proactor`] until the program reads; its first write, with no reader
//! yet, fails with `EPIPE` and is retried when the reader comes (SIGPIPE
//! is ignored, the proactor's default policy). An empty input's sender
//! waits ([`State::Opening`](crate::State::Opening)) until the program
//! opens the FIFO, then closes: that close is the program's EOF. Inputs
//! are fed and outputs drained together, so both can be far larger than
//! a pipe.
//!
//! # When the run ends
//!
//! An input is closed once all of it is written, which gives the program
//! EOF; it is written once: a program that reopens an input after reading
//! it to the end waits for a writer that never comes. When the program
//! exits, inputs it did not read to the end are closed and reported
//! ([`InputReport`]), and every output is read until it is empty and no
//! process holds it open for writing, like a shell's command substitution:
//! a background process of the program that keeps an output open keeps
//! [`FifoCommand::run`] waiting (set a [`timeout`](FifoCommand::timeout)).
//! Whatever happens, the child is reaped, the FIFOs and their directory
//! are removed and every descriptor is closed before `run` returns.
//!
//! The child's exit is noticed by checking it between polls of the
//! proactor, every 10 ms at most.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{Builder, Event, Events, FifoOptions, Proactor, Receiver, Sender, Token};

/// Longest time between two checks of whether the child has exited.
const EXIT_CHECK: Duration = Duration::from_millis(10);

/// Input bytes handed to the proactor per send. How far ahead of the child
/// the queue runs is bounded by the sender's watermarks: a send at the high
/// one is refused with [`Error::WouldBlock`](crate::Error::WouldBlock) and
/// feeding resumes at [`Event::Writable`].
const PIECE: usize = 64 * 1024;

/// What can go wrong when running a program over FIFOs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// A FIFO name is empty, not a plain file name, or declared twice.
    #[error("invalid FIFO name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },

    /// An argument or environment value names a FIFO that was not declared.
    #[error("{placeholder} in {text:?} names no declared FIFO")]
    UnknownPlaceholder {
        /// The whole argument or environment value.
        text: String,
        /// The placeholder, braces included.
        placeholder: String,
    },

    /// The private directory for the FIFOs could not be created.
    #[error("{}: cannot create the FIFO directory: {source}", path.display())]
    TempDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Setting up the proactor or a FIFO end, or polling, failed.
    #[error("{program}: {source}")]
    Fifo {
        /// The program run.
        program: String,
        /// What ringpipe reported.
        #[source]
        source: crate::Error,
    },

    /// Transferring the bytes of one FIFO failed; the child was killed.
    #[error("{program}: FIFO {fifo:?}: {detail}")]
    Transfer {
        /// The program run.
        program: String,
        /// The name of the FIFO.
        fifo: String,
        /// What ringpipe reported.
        detail: String,
    },

    /// The program could not be started.
    #[error("{program}: cannot run: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Checking on or waiting for the child failed.
    #[error("{program}: waiting for the child failed: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The run took longer than its [`timeout`](FifoCommand::timeout). The
    /// child was killed and reaped; what was collected until then is in
    /// `partial`.
    #[error("{program}: not finished after {after:?}; killed")]
    Timeout {
        /// The program.
        program: String,
        /// The timeout.
        after: Duration,
        /// The exit status (killed, unless the child had exited and only
        /// its outputs were still held open), the outputs read so far and
        /// the inputs' accounting.
        partial: Box<FifoOutput>,
    },
}

/// How much of one input reached the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InputReport {
    /// Length of the input.
    pub len: usize,
    /// Bytes the kernel accepted into the pipe: always a prefix of the
    /// input. If the program exited with some of them still in the pipe
    /// (at most the pipe's capacity), those are lost with the pipe and
    /// cannot be told apart from the bytes it read.
    pub accepted: usize,
}

impl InputReport {
    /// Bytes that never reached the pipe, so certainly not read: the last
    /// `unsent()` bytes of the input.
    pub fn unsent(&self) -> usize {
        self.len - self.accepted
    }

    /// Whether all of the input went into the pipe.
    pub fn is_complete(&self) -> bool {
        self.accepted == self.len
    }
}

/// The result of [`FifoCommand::run`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FifoOutput {
    /// How the program ended.
    pub status: ExitStatus,
    /// Every declared output, by name: all bytes written to it, in order
    /// (empty if the program never opened it).
    pub outputs: BTreeMap<String, Vec<u8>>,
    /// Every declared input, by name: how much of it reached the program.
    pub inputs: BTreeMap<String, InputReport>,
}

impl fmt::Debug for FifoOutput {
    // Outputs can be large: show their sizes and a short prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outputs: BTreeMap<&str, String> = self
            .outputs
            .iter()
            .map(|(name, bytes)| {
                let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
                (name.as_str(), format!("{} bytes {head:?}", bytes.len()))
            })
            .collect();
        f.debug_struct("FifoOutput")
            .field("status", &self.status)
            .field("outputs", &outputs)
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// A program to run with FIFOs for some of its files: a builder in the
/// style of [`std::process::Command`]. See the [module docs](self).
///
/// The child's stdin defaults to null, its stdout and stderr to the
/// parent's; [`stdin`](Self::stdin), [`stdout`](Self::stdout) and
/// [`stderr`](Self::stderr) change that.
pub struct FifoCommand {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    inputs: Vec<(String, Vec<u8>)>,
    outputs: Vec<String>,
    timeout: Option<Duration>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    proactor: Builder,
}

impl fmt::Debug for FifoCommand {
    // Inputs can be large: show their sizes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inputs: Vec<(&str, usize)> = self
            .inputs
            .iter()
            .map(|(n, d)| (n.as_str(), d.len()))
            .collect();
        f.debug_struct("FifoCommand")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("envs", &self.envs)
            .field("current_dir", &self.current_dir)
            .field("inputs", &inputs)
            .field("outputs", &self.outputs)
            .field("timeout", &self.timeout)
            .field("proactor", &self.proactor)
            .finish_non_exhaustive()
    }
}

impl FifoCommand {
    /// A command running `program` (looked up in `PATH` as
    /// [`Command::new`] does), with no arguments and no FIFOs yet.
    pub fn new(program: impl AsRef<OsStr>) -> FifoCommand {
        FifoCommand {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            timeout: None,
            stdin: None,
            stdout: None,
            stderr: None,
            proactor: Builder::default(),
        }
    }

    /// Adds an argument; `{in:NAME}` and `{out:NAME}` in it become FIFO
    /// paths.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments; placeholders as for [`arg`](Self::arg).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of the child; placeholders in the
    /// value become FIFO paths.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The child's working directory (default: the parent's).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Declares an input FIFO called `name` whose reader gets `data`, then
    /// EOF.
    pub fn input(mut self, name: impl Into<String>, data: Vec<u8>) -> Self {
        self.inputs.push((name.into(), data));
        self
    }

    /// Declares an output FIFO called `name`, whose bytes are collected.
    pub fn output(mut self, name: impl Into<String>) -> Self {
        self.outputs.push(name.into());
        self
    }

    /// Kills the child and gives up if the run, draining included, takes
    /// longer than `after` (default: no limit).
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// The child's stdin (default: [`Stdio::null`]).
    pub fn stdin(mut self, cfg: impl Into<Stdio>) -> Self {
        self.stdin = Some(cfg.into());
        self
    }

    /// The child's stdout (default: inherited). A [`Stdio::piped`] stdout
    /// is never read, and a child that fills it blocks until the
    /// [`timeout`](Self::timeout): to collect standard output, redirect it
    /// to an output FIFO (`sh -c 'prog > "$0"' {out:stdout}`).
    pub fn stdout(mut self, cfg: impl Into<Stdio>) -> Self {
        self.stdout = Some(cfg.into());
        self
    }

    /// The child's stderr (default: inherited); as for
    /// [`stdout`](Self::stdout), a pipe is never read.
    pub fn stderr(mut self, cfg: impl Into<Stdio>) -> Self {
        self.stderr = Some(cfg.into());
        self
    }

    /// How to build the [`Proactor`] that feeds and drains
    /// the FIFOs during [`run`](Self::run) (default:
    /// [`Builder::default`], whose buffer pool fits an unprivileged user's
    /// `RLIMIT_MEMLOCK`; see [`Builder::buffers`]). Each run builds its own
    /// proactor and drops it before returning.
    ///
    /// ```
    /// use ringpipe::{Proactor, process::FifoCommand};
    ///
    /// let out = FifoCommand::new("sh")
    ///     .args(["-c", r#"cat "$0" > "$1""#, "{in:a}", "{out:b}"])
    ///     .input("a", b"x".to_vec())
    ///     .output("b")
    ///     .proactor(Proactor::builder().sq_entries(32).buffers(4, 64 * 1024))
    ///     .run()?;
    /// assert_eq!(out.outputs["b"], b"x");
    /// # Ok::<(), ringpipe::process::ProcessError>(())
    /// ```
    pub fn proactor(mut self, builder: Builder) -> Self {
        self.proactor = builder;
        self
    }

    /// Runs the program to completion: creates the FIFOs, starts the
    /// child, feeds the inputs and drains the outputs until the child has
    /// exited and every output is at EOF, then cleans up.
    ///
    /// A non-zero exit status is not an error: it is in
    /// [`FifoOutput::status`].
    pub fn run(self) -> Result<FifoOutput, ProcessError> {
        self.check_names()?;
        let program = self.program.to_string_lossy().into_owned();
        let dir = PrivateDir::create()?;
        let path_of = |name: &str| dir.path.join(name);
        let args = self
            .args
            .iter()
            .map(|a| self.substitute(a, &dir.path))
            .collect::<Result<Vec<_>, _>>()?;
        let envs = self
            .envs
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.substitute(v, &dir.path)?)))
            .collect::<Result<Vec<_>, ProcessError>>()?;

        let fifo_err = |source| ProcessError::Fifo {
            program: program.clone(),
            source,
        };
        let mut p = self.proactor.clone().build().map_err(fifo_err)?;
        let create = FifoOptions::new().create(true).mode(0o600);
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let path = path_of(name);
            let rx = p.open_receiver(&path, &create).map_err(fifo_err)?;
            let spare = open_spare(&path).map_err(|source| {
                fifo_err(crate::Error::Open {
                    path: path.clone(),
                    source,
                })
            })?;
            outputs.push(Output::new(name.clone(), path, spare, rx));
        }
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for (name, data) in self.inputs {
            let path = path_of(&name);
            // A FIFO opened for reading and writing has a reader at once,
            // so the sender opens now and keeps its write end from the
            // start: the child's open for reading then returns at once, and
            // a child that opens non-blocking and reads before the sender
            // found it waits for bytes instead of seeing EOF. Dropped at
            // once, the read-write end never reads a byte. An empty input
            // needs none of this (EOF is its content); its sender waits for
            // the child, so that closing it is the child's EOF.
            let keeper = if data.is_empty() {
                None
            } else {
                let keeper = open_read_write(&path).map_err(|source| crate::Error::Open {
                    path: path.clone(),
                    source,
                });
                Some(keeper.map_err(fifo_err)?)
            };
            let tx = p.open_sender(&path, &create).map_err(fifo_err)?;
            drop(keeper);
            inputs.push(Input::new(name, data, tx));
        }

        let mut cmd = Command::new(&self.program);
        cmd.args(&args)
            .envs(envs)
            .stdin(self.stdin.unwrap_or_else(Stdio::null))
            .stdout(self.stdout.unwrap_or_else(Stdio::inherit))
            .stderr(self.stderr.unwrap_or_else(Stdio::inherit));
        if let Some(d) = &self.current_dir {
            cmd.current_dir(d);
        }
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let mut run = Run {
            program,
            p,
            child: ChildGuard(Some(child)),
            inputs,
            outputs,
            status: None,
            failure: None,
        };
        let result = run.drive(self.timeout);
        // The child is reaped and the proactor dropped (every fd closed)
        // before the directory goes.
        drop(run);
        drop(dir);
        result
    }

    fn check_names(&self) -> Result<(), ProcessError> {
        let names = self
            .inputs
            .iter()
            .map(|(n, _)| n)
            .chain(self.outputs.iter());
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            let why = if name.is_empty() {
                Some("empty")
            } else if name == "." || name == ".." || name.contains(['/', '\0']) {
                Some("not a plain file name")
            } else if name.contains('}') {
                Some("contains '}'")
            } else if !seen.insert(name) {
                Some("declared twice")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ProcessError::InvalidName {
                    name: name.clone(),
                    why,
                });
            }
        }
        Ok(())
    }

    /// Replaces every `{in:NAME}` / `{out:NAME}` in `text` with the path.
    fn substitute(&self, text: &OsStr, dir: &Path) -> Result<OsString, ProcessError> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while let Some(at) = find_placeholder(rest) {
            let tail = &rest[at..];
            // Without a closing brace it is no placeholder: keep it as is.
            let Some(end) = tail.iter().position(|&b| b == b'}') else {
                break;
            };
            let (is_input, name) = match tail.strip_prefix(b"{in:") {
                Some(_) => (true, &tail[4..end]),
                None => (false, &tail[5..end]),
            };
            let declared = if is_input {
                self.inputs.iter().any(|(n, _)| n.as_bytes() == name)
            } else {
                self.outputs.iter().any(|n| n.as_bytes() == name)
            };
            if !declared {
                return Err(ProcessError::UnknownPlaceholder {
                    text: text.to_string_lossy().into_owned(),
                    placeholder: String::from_utf8_lossy(&tail[..=end]).into_owned(),
                });
            }
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(dir.join(OsStr::from_bytes(name)).as_os_str().as_bytes());
            rest = &tail[end + 1..];
        }
        out.extend_from_slice(rest);
        Ok(OsString::from_vec(out))
    }
}

/// Offset of the next `{in:` or `{out:` in `bytes`.
fn find_placeholder(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find(|&i| bytes[i..].starts_with(b"{in:") || bytes[i..].starts_with(b"{out:"))
}

/// The FIFOs' directory, mode 0700, removed with everything in it on drop.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create() -> Result<PrivateDir, ProcessError> {
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

/// Kills and reaps the child on drop unless it was reaped already, so no
/// error path leaves a process behind.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Input {
    name: String,
    data: Vec<u8>,
    tx: Sender,
    /// Bytes handed to the proactor so far.
    handed: usize,
    /// Bytes the kernel accepted (sum of `Sent`).
    accepted: usize,
    opened: bool,
    /// A send was refused for backpressure: wait for `Writable`.
    blocked: bool,
    flush_asked: bool,
    close_asked: bool,
    closed: bool,
}

impl Input {
    fn new(name: String, data: Vec<u8>, tx: Sender) -> Input {
        Input {
            name,
            data,
            tx,
            handed: 0,
            accepted: 0,
            opened: false,
            blocked: false,
            flush_asked: false,
            close_asked: false,
            closed: false,
        }
    }

    /// Hands the proactor more of the input until it pushes back, and
    /// asks for close once all is handed.
    fn feed(&mut self, p: &mut Proactor) -> crate::Result<()> {
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
        if self.opened && self.handed == self.data.len() {
            p.close_after_flush(self.tx)?;
            self.flush_asked = true;
        }
        Ok(())
    }

    /// Closes the sender now; its `Closed` event settles the accounting.
    fn abandon(&mut self, p: &mut Proactor) {
        if !self.closed && !self.close_asked {
            self.close_asked = true;
            // Err means it is already closing after a flush.
            let _ = p.close(self.tx);
        }
    }

    fn report(&self) -> InputReport {
        InputReport {
            len: self.data.len(),
            accepted: self.accepted,
        }
    }
}

struct Output {
    name: String,
    path: PathBuf,
    /// A read end of our own that never reads: it keeps the pipe, and the
    /// bytes in it, alive while a read end is replaced, and spares the
    /// child `EPIPE` while none is open.
    _spare: File,
    /// The read end in use.
    rx: Receiver,
    /// Earlier read ends, closing, whose late events still count.
    old: Vec<Receiver>,
    data: Vec<u8>,
    /// `rx` was opened after the child's exit was seen: its EOF is the end.
    last: bool,
    done: bool,
}

impl Output {
    fn new(name: String, path: PathBuf, spare: File, rx: Receiver) -> Output {
        Output {
            name,
            path,
            _spare: spare,
            rx,
            old: Vec::new(),
            data: Vec::new(),
            last: false,
            done: false,
        }
    }

    fn owns(&self, token: Token) -> bool {
        self.rx.token() == token || self.old.iter().any(|r| r.token() == token)
    }

    /// The read end reached EOF: every writer closed. While the child
    /// lives it may open the FIFO again, and after its exit the EOF may
    /// predate bytes written since; so read on with a fresh read end. Only
    /// the EOF of a read end opened after the exit was seen ends the output.
    fn on_eof(&mut self, p: &mut Proactor, exited: bool) -> crate::Result<()> {
        if self.last {
            self.done = true;
            // Err: it is closing already.
            let _ = p.close(self.rx);
            return Ok(());
        }
        let fresh = p.open_receiver(&self.path, &FifoOptions::new())?;
        // Err: it is closing already.
        let _ = p.close(self.rx);
        self.old.push(std::mem::replace(&mut self.rx, fresh));
        if exited {
            self.last = true;
            nudge(&self.path);
        }
        Ok(())
    }
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

/// Opens the FIFO for writing and closes it at once. A read end waiting on
/// a FIFO that no process holds open for writing (the child has exited or
/// never opened it) then sees EOF as soon as the pipe is empty.
fn nudge(path: &Path) {
    // Never blocks: with O_NONBLOCK a missing reader is ENXIO, ignored like
    // every failure here (the FIFO then has no read end left to wake).
    let _ = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path);
}

struct Run {
    program: String,
    p: Proactor,
    child: ChildGuard,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    status: Option<ExitStatus>,
    /// The first transfer error: (FIFO name, what happened).
    failure: Option<(String, String)>,
}

impl Run {
    fn drive(&mut self, timeout: Option<Duration>) -> Result<FifoOutput, ProcessError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut events = Events::with_capacity(64);
        loop {
            self.feed();
            if self.status.is_none() {
                let child = self.child.0.as_mut().expect("not reaped before exit");
                match child.try_wait() {
                    Ok(Some(status)) => self.on_exit(status),
                    Ok(None) => {}
                    Err(source) => {
                        return Err(ProcessError::Wait {
                            program: self.program.clone(),
                            source,
                        });
                    }
                }
            }
            if self.failure.is_some() {
                return Err(self.fail());
            }
            if self.status.is_some()
                && self.inputs.iter().all(|i| i.closed)
                && self.outputs.iter().all(|o| o.done)
            {
                return Ok(self.result());
            }
            if let Some(after) = timeout
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Err(self.time_out(after));
            }
            let tick = deadline.map_or(EXIT_CHECK, |d| {
                EXIT_CHECK.min(d.saturating_duration_since(Instant::now()))
            });
            if self.p.in_flight() == 0 {
                // poll returns at once with nothing in flight.
                std::thread::sleep(tick);
            }
            self.p
                .poll(&mut events, Some(tick))
                .map_err(|source| ProcessError::Fifo {
                    program: self.program.clone(),
                    source,
                })?;
            self.handle(&events);
        }
    }

    fn feed(&mut self) {
        for input in &mut self.inputs {
            if let Err(e) = input.feed(&mut self.p) {
                self.failure
                    .get_or_insert((input.name.clone(), e.to_string()));
            }
        }
    }

    fn handle(&mut self, events: &Events) {
        let exited = self.status.is_some();
        for event in events {
            let token = event.token();
            if let Some(input) = self.inputs.iter_mut().find(|i| i.tx.token() == token) {
                match event {
                    Event::Opened(_) => input.opened = true,
                    Event::Sent { bytes, .. } => input.accepted += bytes,
                    Event::Writable(_) => input.blocked = false,
                    Event::Closed { unsent, .. } => {
                        input.closed = true;
                        debug_assert_eq!(unsent.len(), input.handed - input.accepted);
                    }
                    Event::Error { error, .. } => {
                        self.failure
                            .get_or_insert((input.name.clone(), error.to_string()));
                    }
                    // PeerGone: the child closed its read end; the sender
                    // waits for it to come back or to exit.
                    _ => {}
                }
            } else if let Some(output) = self.outputs.iter_mut().find(|o| o.owns(token)) {
                let current = output.rx.token() == token;
                match event {
                    Event::Data { data, .. } => output.data.extend_from_slice(data),
                    // A read end closes itself at EOF, after this event.
                    Event::PeerGone(_) if current && !output.done => {
                        if let Err(e) = output.on_eof(&mut self.p, exited) {
                            self.failure
                                .get_or_insert((output.name.clone(), e.to_string()));
                        }
                    }
                    Event::Error { error, .. } => {
                        self.failure
                            .get_or_insert((output.name.clone(), error.to_string()));
                    }
                    Event::Closed { reason, .. } if current && !output.done => {
                        self.failure.get_or_insert((
                            output.name.clone(),
                            format!("read end closed without EOF ({reason:?})"),
                        ));
                    }
                    Event::Closed { .. } => output.old.retain(|r| r.token() != token),
                    _ => {}
                }
            }
        }
    }

    fn on_exit(&mut self, status: ExitStatus) {
        self.status = Some(status);
        self.child.0 = None;
        for input in &mut self.inputs {
            input.abandon(&mut self.p);
        }
        for output in &self.outputs {
            nudge(&output.path);
        }
    }

    /// Kills the child, if still running, and reaps it.
    fn stop_child(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.0.take() {
            // Err: it has exited already; wait reaps it either way.
            let _ = child.kill();
            let status = child.wait().map_err(|source| ProcessError::Wait {
                program: self.program.clone(),
                source,
            })?;
            self.status = Some(status);
        }
        Ok(())
    }

    fn fail(&mut self) -> ProcessError {
        if let Err(e) = self.stop_child() {
            return e;
        }
        let (fifo, detail) = self.failure.take().expect("a failure was recorded");
        ProcessError::Transfer {
            program: self.program.clone(),
            fifo,
            detail,
        }
    }

    fn time_out(&mut self, after: Duration) -> ProcessError {
        if let Err(e) = self.stop_child() {
            return e;
        }
        ProcessError::Timeout {
            program: self.program.clone(),
            after,
            partial: Box::new(self.result()),
        }
    }

    fn result(&mut self) -> FifoOutput {
        FifoOutput {
            status: self.status.expect("the child was reaped"),
            outputs: self
                .outputs
                .iter_mut()
                .map(|o| (o.name.clone(), std::mem::take(&mut o.data)))
                .collect(),
            inputs: self
                .inputs
                .iter()
                .map(|i| (i.name.clone(), i.report()))
                .collect(),
        }
    }
}
