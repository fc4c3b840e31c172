//! Several programs in one run, one's output FIFO piped into another's
//! input FIFO: [`Pipeline`], its checks and its setup.
//!
//! A link is two FIFOs with the proactor in the middle: the writing
//! program's output (a receiver of ours, open before any program starts)
//! relayed by splice into the reading program's input (a sender of ours,
//! open before any program starts, like a non-empty input). Neither program
//! waits for the other to open anything, so no order of opens can
//! deadlock, and the bytes never pass through user space.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::fifos::{Input, Output, PrivateDir};
use super::link::Link;
use super::run::Run;
use super::{FifoCommand, PipelineOutput, ProcessError};
use crate::Builder;

/// Programs run together, each a [`FifoCommand`], where one program's
/// output FIFO feeds another's input FIFO: the shell's `a | b` for
/// programs that take file names.
///
/// A program declares the FIFO it writes with [`FifoCommand::output`] and
/// the program that reads it declares the same name with
/// [`FifoCommand::piped_input`]; every other input and output is the
/// caller's, as for a lone [`FifoCommand`]. Names are shared by the whole
/// pipeline: each one is declared once, but for the output and piped input
/// that form a link. Each program gets its own FIFO directory, so both ends
/// of a link keep the name as their file name.
///
/// ```
/// use std::time::Duration;
/// use ringpipe::process::{FifoCommand, Pipeline};
///
/// // upper = tr a-z A-Z < text; then copy = upper, count = wc -c < upper.
/// let out = Pipeline::new()
///     .command(
///         FifoCommand::new("sh")
///             .args(["-c", r#"tr a-z A-Z < "$0" > "$1""#, "{in:text}", "{out:upper}"])
///             .input("text", b"hello pipeline".to_vec())
///             .output("upper"),
///     )
///     .command(
///         FifoCommand::new("sh")
///             .args(["-c", r#"tee "$1" < "$0" | wc -c > "$2""#])
///             .args(["{in:upper}", "{out:copy}", "{out:count}"])
///             .piped_input("upper")
///             .output("copy")
///             .output("count"),
///     )
///     .timeout(Duration::from_secs(30))
///     .run()?;
/// assert!(out.success());
/// assert_eq!(out.outputs["copy"], b"HELLO PIPELINE");
/// assert_eq!(out.outputs["count"].trim_ascii(), b"14");
/// assert_eq!(out.links["upper"].relayed, 14);
/// assert!(out.links["upper"].complete);
/// # Ok::<(), ringpipe::process::ProcessError>(())
/// ```
///
/// # Opening order, EOF and early exits
///
/// Every FIFO is set up before the first program starts: a program may
/// open its files in any order, whatever the other programs do. The bytes
/// of a link move by splice from the writer's FIFO to the reader's as they
/// come, so a link carries any amount. The reader gets EOF once the writer
/// has exited and closed the FIFO and the reader has every byte; a writer
/// that exits without opening its output gives its reader EOF at once.
///
/// If the reader exits first, the writer's FIFO loses its last reader and
/// an empty directory takes its place: the writer's next write fails with
/// `EPIPE` (or raises `SIGPIPE`, whose default kills it), and its next open
/// of the FIFO for writing fails (`EISDIR`; a shell's `>` creates no file
/// there), as the writer of a shell pipeline whose reader left. Its status shows
/// that; the run goes on until every program has exited and is not an
/// error. Each program's status is in [`PipelineOutput::statuses`], each
/// link's accounting in [`PipelineOutput::links`].
///
/// The programs start in the order they were added; if one cannot start,
/// those started are killed and reaped and the run fails with
/// [`ProcessError::Spawn`]. Names are checked before anything starts: a
/// piped input nobody writes ([`ProcessError::UnknownLink`]), a name
/// declared twice ([`ProcessError::NameClash`]) and links that form a
/// cycle ([`ProcessError::Cycle`]) are refused.
#[derive(Debug, Default)]
pub struct Pipeline {
    commands: Vec<FifoCommand>,
    timeout: Option<Duration>,
    proactor: Builder,
}

impl Pipeline {
    /// A pipeline of no program yet.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Adds a program. Its own [`timeout`](FifoCommand::timeout) bounds the
    /// whole run like the pipeline's; its
    /// [`proactor`](FifoCommand::proactor) is not used (the pipeline's is).
    pub fn command(mut self, command: FifoCommand) -> Self {
        self.commands.push(command);
        self
    }

    /// Kills every program and gives up if the run, draining included,
    /// takes longer than `after` (default: no limit).
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// How to build the [`Proactor`](crate::Proactor) that feeds, drains and
    /// relays every FIFO of the run (default: [`Builder::default`]).
    pub fn proactor(mut self, builder: Builder) -> Self {
        self.proactor = builder;
        self
    }

    /// Runs every program to completion: creates the FIFOs, starts the
    /// programs, feeds the inputs, relays the links and drains the outputs
    /// until every program has exited and every FIFO is done, then cleans
    /// up. Non-zero exit statuses are no error: they are in
    /// [`PipelineOutput::statuses`].
    pub fn run(mut self) -> Result<PipelineOutput, ProcessError> {
        let links = self.check()?;
        let label = self
            .commands
            .iter()
            .map(|c| c.program.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" | ");
        let timeout = self
            .commands
            .iter()
            .filter_map(|c| c.timeout)
            .chain(self.timeout)
            .min();
        let dir = PrivateDir::create()?;
        let dirs: Vec<PathBuf> = (0..self.commands.len())
            .map(|i| dir.path.join(i.to_string()))
            .collect();
        let mut commands = Vec::with_capacity(self.commands.len());
        for (c, sub) in self.commands.iter_mut().zip(&dirs) {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(sub)
                .map_err(|source| ProcessError::TempDir {
                    path: sub.clone(),
                    source,
                })?;
            commands.push((c.program.to_string_lossy().into_owned(), c.command(sub)?));
        }

        let fifo_err = |source| ProcessError::Fifo {
            program: label.clone(),
            source,
        };
        let mut p = self.proactor.build().map_err(fifo_err)?;
        let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
        for (i, (c, sub)) in self.commands.iter_mut().zip(&dirs).enumerate() {
            for name in c
                .outputs
                .iter()
                .filter(|n| !links.iter().any(|l| &l.0 == *n))
            {
                let output = Output::open(&mut p, name.clone(), sub.join(name), i);
                outputs.push(output.map_err(fifo_err)?);
            }
            for (name, data) in std::mem::take(&mut c.inputs) {
                let path = sub.join(&name);
                let input = Input::open(&mut p, name, data, path, i, false);
                inputs.push(input.map_err(fifo_err)?);
            }
        }
        let mut joined = Vec::with_capacity(links.len());
        for (name, from, to) in links {
            let (Some(from_dir), Some(to_dir)) = (dirs.get(from), dirs.get(to)) else {
                continue;
            };
            let to_path = to_dir.join(&name);
            let input = Input::open(&mut p, name.clone(), Vec::new(), to_path, to, true);
            let input = input.map_err(fifo_err)?;
            let output = Output::open(&mut p, name.clone(), from_dir.join(&name), from);
            let mut output = output.map_err(fifo_err)?;
            output.relay_into(&mut p, input.tx).map_err(fifo_err)?;
            joined.push(Link::new(name, outputs.len(), inputs.len()));
            outputs.push(output);
            inputs.push(input);
        }

        let mut run = Run::new(label, p, inputs, outputs, joined);
        let mut result = Ok(());
        for (name, cmd) in commands {
            result = run.start(name, cmd);
            if result.is_err() {
                break;
            }
        }
        let result = result.and_then(|()| run.drive(timeout));
        // Every child is reaped and the proactor dropped (every fd closed)
        // before the directory goes.
        drop(run);
        drop(dir);
        result
    }

    /// Checks every name and finds the links, as (name, writing program,
    /// reading program), before anything is created.
    fn check(&self) -> Result<Vec<(String, usize, usize)>, ProcessError> {
        if self.commands.is_empty() {
            return Err(ProcessError::EmptyPipeline);
        }
        #[derive(Clone, Copy, PartialEq)]
        enum Use {
            Input,
            Output,
            Piped,
            Linked,
        }
        let program = |i: usize| {
            self.commands
                .get(i)
                .map_or_else(String::new, |c| c.program.to_string_lossy().into_owned())
        };
        let mut seen: BTreeMap<&str, (Use, usize)> = BTreeMap::new();
        let mut links = Vec::new();
        for (i, c) in self.commands.iter().enumerate() {
            c.check_names()?;
            let uses = (c.inputs.iter().map(|(n, _)| (n, Use::Input)))
                .chain(c.outputs.iter().map(|n| (n, Use::Output)))
                .chain(c.piped.iter().map(|n| (n, Use::Piped)));
            for (name, what) in uses {
                let Some(&(before, j)) = seen.get(name.as_str()) else {
                    seen.insert(name, (what, i));
                    continue;
                };
                let link = match (before, what) {
                    (Use::Output, Use::Piped) => (j, i),
                    (Use::Piped, Use::Output) => (i, j),
                    _ => {
                        return Err(ProcessError::NameClash {
                            name: name.clone(),
                            first: program(j),
                            second: program(i),
                        });
                    }
                };
                seen.insert(name, (Use::Linked, i));
                links.push((name.clone(), link.0, link.1));
            }
        }
        if let Some((name, &(_, i))) = seen.iter().find(|(_, (u, _))| *u == Use::Piped) {
            return Err(ProcessError::UnknownLink {
                program: program(i),
                name: name.to_string(),
            });
        }
        if let Some(names) = find_cycle(self.commands.len(), &links) {
            return Err(ProcessError::Cycle { names });
        }
        Ok(links)
    }
}

impl FifoCommand {
    /// The program to start, its placeholders naming FIFOs in `dir`. Takes
    /// its stdin, stdout and stderr.
    fn command(&mut self, dir: &Path) -> Result<Command, ProcessError> {
        let args = self
            .args
            .iter()
            .map(|a| self.substitute(a, dir))
            .collect::<Result<Vec<_>, _>>()?;
        let envs = self
            .envs
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.substitute(v, dir)?)))
            .collect::<Result<Vec<_>, ProcessError>>()?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&args)
            .envs(envs)
            .stdin(self.stdin.take().unwrap_or_else(Stdio::null))
            .stdout(self.stdout.take().unwrap_or_else(Stdio::inherit))
            .stderr(self.stderr.take().unwrap_or_else(Stdio::inherit));
        if let Some(d) = &self.current_dir {
            cmd.current_dir(d);
        }
        Ok(cmd)
    }
}

/// The FIFOs around a cycle of `links` (name, from, to) between `n`
/// programs, if there is one.
fn find_cycle(n: usize, links: &[(String, usize, usize)]) -> Option<Vec<String>> {
    /// Depth first from `v`; `path` holds the links taken to reach it.
    fn visit<'a>(
        v: usize,
        links: &'a [(String, usize, usize)],
        state: &mut [u8],
        path: &mut Vec<&'a (String, usize, usize)>,
    ) -> Option<Vec<String>> {
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        state[v] = ON_PATH;
        for link in links.iter().filter(|l| l.1 == v) {
            path.push(link);
            match state.get(link.2).copied() {
                Some(ON_PATH) => {
                    let start = path.iter().position(|l| l.1 == link.2)?;
                    return Some(path[start..].iter().map(|l| l.0.clone()).collect());
                }
                Some(0) => {
                    if let Some(cycle) = visit(link.2, links, state, path) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
            path.pop();
        }
        state[v] = DONE;
        None
    }
    let mut state = vec![0u8; n];
    (0..n).find_map(|v| {
        if state[v] != 0 {
            return None;
        }
        visit(v, links, &mut state, &mut Vec::new())
    })
}
