//! Running programs whose inputs and outputs are FIFO paths ("turning CLI
//! programs into functions").
//!
//! [`FifoCommand`] creates one FIFO per declared input and output in a
//! private temporary directory, puts their paths into the program's
//! arguments, runs it, feeds every input, collects every output and
//! returns them with the exit status as a [`FifoOutput`]. A [`Pipeline`]
//! runs several such programs at once, one program's output FIFO feeding
//! another's input FIFO ([`FifoCommand::piped_input`]), with each
//! program's status and each link's accounting in a [`PipelineOutput`].
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
//! [`Proactor`](crate::Proactor) until the program reads; its first
//! write, with no reader yet, fails with `EPIPE` and is retried when the
//! reader comes (SIGPIPE is ignored, the proactor's default policy). An empty input's sender
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
//! The child's exit wakes the proactor's poll through its pidfd, watched on
//! the ring; where pidfds are not available it is checked between polls,
//! every 10 ms at most.

// This file owns the public types and the builder; the rest of a run
// lives beside it.
mod fifos;
mod link;
mod names;
mod pipeline;
mod run;

pub use pipeline::Pipeline;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::Builder;

/// What can go wrong when running a program over FIFOs: the error of
/// [`FifoCommand::run`] and [`Pipeline::run`] (where "the program" of a
/// variant that is not about one program is the whole pipeline, as
/// `a | b`).
///
/// It is separate from [`ringpipe::Error`](crate::Error) because it reports
/// on the program as well as on its FIFOs: the FIFOs declared for it and
/// their placeholders, and the program's fate, which a FIFO error cannot
/// tell: it could not be started ([`Spawn`](Self::Spawn)), waiting for its
/// exit failed ([`Wait`](Self::Wait)), or it ran past its timeout
/// ([`Timeout`](Self::Timeout)). A non-zero exit is no error: it is in
/// [`FifoOutput::status`]. What ringpipe reports while the FIFOs are set up
/// or polled is wrapped unchanged in [`Fifo`](Self::Fifo), so
/// [`source`](std::error::Error::source) reaches the [`crate::Error`].
///
/// Every variant names what it is about: the FIFO name, placeholder or
/// directory at fault before anything starts, the program (as given to
/// [`FifoCommand::new`]) from then on, and both the program and the FIFO
/// when one FIFO's transfer fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// A FIFO name is empty, not a plain file name, contains `}`, or is
    /// declared twice. Names the FIFO; nothing was started.
    #[error("invalid FIFO name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },

    /// An argument or environment value names a FIFO that was not declared.
    /// Names the placeholder (with the FIFO's name in it) and the text it
    /// is in; nothing was started.
    #[error("{placeholder} in {text:?} names no declared FIFO")]
    UnknownPlaceholder {
        /// The whole argument or environment value.
        text: String,
        /// The placeholder, braces included.
        placeholder: String,
    },

    /// The private directory for the FIFOs could not be created. Names the
    /// directory; no FIFO was created and nothing was started.
    #[error("{}: cannot create the FIFO directory: {source}", path.display())]
    TempDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Setting up the proactor or a FIFO end, or polling, failed: what
    /// ringpipe reported, wrapped. Names the program; the wrapped error
    /// names the FIFO's path where one is involved. The child, if started,
    /// was killed and reaped.
    #[error("{program}: {source}")]
    Fifo {
        /// The program run.
        program: String,
        /// What ringpipe reported.
        #[source]
        source: crate::Error,
    },

    /// Transferring the bytes of one FIFO failed; the child was killed and
    /// reaped. Names the program and the FIFO.
    #[error("{program}: FIFO {fifo:?}: {detail}")]
    Transfer {
        /// The program run.
        program: String,
        /// The name of the FIFO.
        fifo: String,
        /// What ringpipe reported.
        detail: String,
    },

    /// The program could not be started. Names the program.
    #[error("{program}: cannot run: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Checking on or waiting for the child failed. Names the program.
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
    /// `partial`. Names the program.
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

    /// A [`Pipeline`] has no program. Nothing was started.
    #[error("the pipeline has no program")]
    EmptyPipeline,

    /// A program reads a FIFO from the pipeline
    /// ([`FifoCommand::piped_input`]) that no program of the pipeline
    /// declares as an output. Names the program and the FIFO; nothing was
    /// started.
    #[error("{program}: piped input {name:?} is no other program's output")]
    UnknownLink {
        /// The reading program.
        program: String,
        /// The FIFO's name.
        name: String,
    },

    /// Two programs of a [`Pipeline`] declare the same FIFO name, other
    /// than as one's output and the other's piped input: an output written
    /// twice, an output read twice, or a name both an input and an output.
    /// Names the FIFO and both programs; nothing was started.
    #[error("FIFO {name:?} is declared by both {first} and {second}")]
    NameClash {
        /// The FIFO's name.
        name: String,
        /// The program that declared it first.
        first: String,
        /// The program that declared it again.
        second: String,
    },

    /// The piped FIFOs of a [`Pipeline`] form a cycle: each program of it
    /// reads what the one before writes. Names the FIFOs around the cycle;
    /// nothing was started.
    #[error("the piped FIFOs {} form a cycle", names.join(" -> "))]
    Cycle {
        /// The FIFOs around the cycle, in the order the bytes flow.
        names: Vec<String>,
    },

    /// The [`Pipeline`] ran longer than its timeout. Every program was
    /// killed and reaped; what was collected until then is in `partial`.
    /// Names the programs.
    #[error("{pipeline}: not finished after {after:?}; killed")]
    PipelineTimeout {
        /// The programs, as `a | b`.
        pipeline: String,
        /// The timeout.
        after: Duration,
        /// Each program's status (killed, unless it had exited), the
        /// outputs read so far and the inputs' and links' accounting.
        partial: Box<PipelineOutput>,
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
        f.debug_struct("FifoOutput")
            .field("status", &self.status)
            .field("outputs", &summary(&self.outputs))
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// How much of a link's stream reached its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkReport {
    /// Bytes moved from the writer's FIFO into the reader's. If the reader
    /// exited with some of them unread (at most its pipe's capacity), they
    /// are lost with the pipe.
    pub relayed: usize,
    /// The writer's EOF came and was passed on after every relayed byte
    /// had been read: the reader got the whole stream.
    pub complete: bool,
}

/// The result of [`Pipeline::run`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineOutput {
    /// How each program ended, in the order they were added.
    pub statuses: Vec<ExitStatus>,
    /// Every output that feeds no other program, by name: all bytes
    /// written to it, in order.
    pub outputs: BTreeMap<String, Vec<u8>>,
    /// Every input the caller gave, by name: how much of it reached its
    /// program.
    pub inputs: BTreeMap<String, InputReport>,
    /// Every link, by name: how much of the stream reached its reader.
    pub links: BTreeMap<String, LinkReport>,
}

impl PipelineOutput {
    /// Whether every program exited with status 0.
    pub fn success(&self) -> bool {
        self.statuses.iter().all(ExitStatus::success)
    }
}

impl fmt::Debug for PipelineOutput {
    // Outputs can be large: show their sizes and a short prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineOutput")
            .field("statuses", &self.statuses)
            .field("outputs", &summary(&self.outputs))
            .field("inputs", &self.inputs)
            .field("links", &self.links)
            .finish()
    }
}

/// Outputs for `Debug`: each one's size and a short prefix.
fn summary(outputs: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&str, String> {
    outputs
        .iter()
        .map(|(name, bytes)| {
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
            (name.as_str(), format!("{} bytes {head:?}", bytes.len()))
        })
        .collect()
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
    /// Inputs a [`Pipeline`] fills from another program's output.
    piped: Vec<String>,
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
            .field("piped", &self.piped)
            .field("timeout", &self.timeout)
            .field("proactor", &self.proactor)
            .finish_non_exhaustive()
    }
}

impl FifoCommand {
    /// A command running `program` (looked up in `PATH` as
    /// [`Command::new`](std::process::Command::new) does), with no
    /// arguments and no FIFOs yet.
    pub fn new(program: impl AsRef<OsStr>) -> FifoCommand {
        FifoCommand {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            piped: Vec::new(),
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

    /// Declares an input FIFO called `name` that a [`Pipeline`] fills with
    /// the output of the same name of another of its programs, then EOF
    /// once that program has closed it and exited. Placeholders name it as
    /// `{in:NAME}`, like any input. Outside a pipeline, or with no program
    /// writing `name`, the run fails with [`ProcessError::UnknownLink`].
    pub fn piped_input(mut self, name: impl Into<String>) -> Self {
        self.piped.push(name.into());
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

    /// How to build the [`Proactor`](crate::Proactor) that feeds and drains
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
        // A pipeline of one program, with this command's proactor and
        // timeout.
        let builder = self.proactor.clone();
        let single = |out: PipelineOutput| FifoOutput {
            // One program: one status.
            status: out.statuses.into_iter().next().unwrap_or_default(),
            outputs: out.outputs,
            inputs: out.inputs,
        };
        match Pipeline::new().proactor(builder).command(self).run() {
            Ok(out) => Ok(single(out)),
            Err(ProcessError::PipelineTimeout {
                pipeline,
                after,
                partial,
            }) => Err(ProcessError::Timeout {
                program: pipeline,
                after,
                partial: Box::new(single(*partial)),
            }),
            Err(e) => Err(e),
        }
    }
}
