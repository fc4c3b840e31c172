//! The multiplexer's line routing written with blocking threads, one per
//! input: the baseline `examples/multiplexer.rs` is measured against (see
//! the Multiplexer section of BENCHMARKS.md).
//!
//! ```text
//! cargo run --release --example multiplexer_threads -- \
//!     --input PATH [--input PATH ...] --output PATH [--route PREFIX=PATH ...]
//! ```
//!
//! Outputs are opened first, each `open` blocking until its reader arrives.
//! Each input thread then opens its FIFO (blocking until a writer), reads
//! 64 KiB at a time, routes every complete line by prefix (first match
//! wins, else `--output`) into a per-output batch, and writes each batch
//! with one `write_all` under that output's lock, so lines from different
//! inputs never interleave. When the last writer leaves it reopens the FIFO.
//! Newline framing only; no reader reconnection (a reader leaving is fatal,
//! like EPIPE in any blocking program) and no signal handling.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Parser;

/// Routes lines from input FIFOs to output FIFOs with one blocking thread
/// per input.
#[derive(Parser, Debug)]
#[command(name = "multiplexer_threads")]
struct Cli {
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

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let mut paths = vec![cli.output.clone()];
    let mut routes = Vec::new();
    for (prefix, path) in &cli.routes {
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
        let file = File::options()
            .write(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        outputs.push(Mutex::new(file));
    }
    let router = Arc::new(Router { outputs, routes });
    let threads: Vec<_> = cli
        .inputs
        .into_iter()
        .map(|path| {
            let router = Arc::clone(&router);
            std::thread::spawn(move || relay_input(&path, &router))
        })
        .collect();
    for t in threads {
        t.join().expect("input thread panicked")?;
    }
    Ok(())
}

fn relay_input(path: &PathBuf, router: &Router) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let mut batches: Vec<Vec<u8>> = vec![Vec::new(); router.outputs.len()];
    loop {
        let mut input = File::open(path)?;
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
            for (o, batch) in batches.iter_mut().enumerate() {
                if !batch.is_empty() {
                    let mut out = router.outputs[o].lock().expect("output lock");
                    out.write_all(batch)?;
                    batch.clear();
                }
            }
        }
        // Every writer left; a line they did not finish is dropped.
        partial.clear();
    }
}
