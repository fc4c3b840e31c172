//! The multiplexer's line routing written with blocking threads, one per
//! input: the baseline the `mux` scenario measures the ringpipe
//! multiplexer example against. It runs as its own process
//! (`ringpipe-bench mux-threads`), so its CPU is its own, with the same
//! routing options as the example:
//!
//! ```text
//! ringpipe-bench mux-threads --input PATH [--input PATH ...] --output PATH \
//!     [--route PREFIX=PATH ...]
//! ```
//!
//! Outputs are opened first, each `open` blocking until its reader arrives.
//! Each input thread then opens its FIFO (blocking until a writer), reads
//! 64 KiB at a time, routes every complete line by prefix (first match
//! wins, else `--output`) into a per-output batch, and writes each batch
//! with one `write_all` under that output's lock, so lines from different
//! inputs never interleave. When the last writer leaves it reopens the FIFO.
//! Newline framing only; no reader reconnection (a reader leaving is fatal,
//! like EPIPE in any blocking program) and no signal handling: it runs
//! until killed, and the orchestrator bounds every run with a deadline.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

/// The routing options of `examples/multiplexer` that this baseline has.
#[derive(Debug, clap::Args)]
pub struct RouterArgs {
    /// An input FIFO; repeat for more. Reopened whenever its writers leave.
    #[arg(long = "input", value_name = "PATH", required = true)]
    inputs: Vec<PathBuf>,

    /// The default output FIFO: lines no --route claims go here.
    #[arg(long, value_name = "PATH")]
    output: PathBuf,

    /// Lines starting with PREFIX go to PATH; repeatable, first match wins.
    #[arg(long = "route", value_name = "PREFIX=PATH", value_parser = parse_route)]
    routes: Vec<(String, PathBuf)>,
}

fn parse_route(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((prefix, path)) if !prefix.is_empty() && !path.is_empty() => {
            Ok((prefix.to_string(), path.into()))
        }
        _ => Err(format!("`{s}`: expected PREFIX=PATH")),
    }
}

struct Router {
    outputs: Vec<Mutex<File>>,
    /// Prefix and output index; output 0 is the default.
    routes: Vec<(Vec<u8>, usize)>,
}

impl Router {
    fn route(&self, line: &[u8]) -> usize {
        self.routes
            .iter()
            .find(|(prefix, _)| line.starts_with(prefix))
            .map_or(0, |&(_, o)| o)
    }
}

/// Blocking open of a FIFO end (close-on-exec, like every fd here).
fn open_fifo(path: &Path, flags: OFlag) -> io::Result<File> {
    open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
        .map(File::from)
        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))
}

/// Runs the router until it is killed or an input or output fails.
pub fn run(args: &RouterArgs) -> io::Result<()> {
    let mut paths = vec![args.output.clone()];
    let mut routes = Vec::new();
    for (prefix, path) in &args.routes {
        let o = match paths.iter().position(|p| p == path) {
            Some(o) => o,
            None => {
                paths.push(path.clone());
                paths.len() - 1
            }
        };
        routes.push((prefix.clone().into_bytes(), o));
    }
    let mut outputs = Vec::new();
    for path in &paths {
        outputs.push(Mutex::new(open_fifo(path, OFlag::O_WRONLY)?));
    }
    let router = Arc::new(Router { outputs, routes });
    let threads = args
        .inputs
        .iter()
        .map(|path| {
            let (router, path) = (Arc::clone(&router), path.clone());
            std::thread::Builder::new().spawn(move || relay_input(&path, &router))
        })
        .collect::<io::Result<Vec<_>>>()?;
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("input thread panicked"))??;
    }
    Ok(())
}

fn relay_input(path: &Path, router: &Router) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let mut batches: Vec<Vec<u8>> = vec![Vec::new(); router.outputs.len()];
    loop {
        let mut input = open_fifo(path, OFlag::O_RDONLY)?;
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let mut chunk = &buf[..n];
            if !partial.is_empty() {
                let Some(end) = chunk.iter().position(|&b| b == b'\n') else {
                    partial.extend_from_slice(chunk);
                    continue;
                };
                partial.extend_from_slice(&chunk[..=end]);
                batches[router.route(&partial)].extend_from_slice(&partial);
                partial.clear();
                chunk = &chunk[end + 1..];
            }
            while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
                let line = &chunk[..=end];
                batches[router.route(line)].extend_from_slice(line);
                chunk = &chunk[end + 1..];
            }
            partial.extend_from_slice(chunk);
            for (output, batch) in router.outputs.iter().zip(&mut batches) {
                if !batch.is_empty() {
                    let mut out = output.lock().unwrap_or_else(PoisonError::into_inner);
                    out.write_all(batch)?;
                    batch.clear();
                }
            }
        }
        // Every writer left; a line they did not finish is dropped.
        partial.clear();
    }
}
