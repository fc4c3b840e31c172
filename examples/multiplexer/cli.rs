//! The command line: the options, their parsing, and the checks made
//! before anything opens (raw framing's limits, watermarks, one FIFO
//! named twice). Paths are checked by the library when they are opened.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ringpipe::frame::Codec;

/// Routes whole messages from input FIFOs to output FIFOs, on one io_uring
/// thread, without losing or duplicating any while peers come and go.
#[derive(Parser, Debug)]
#[command(name = "multiplexer", version)]
pub struct Cli {
    /// An input FIFO to read messages from; repeat for more. All inputs are
    /// read concurrently; writers may leave and come back any number of times.
    #[arg(long = "input", value_name = "PATH", required = true)]
    pub inputs: Vec<PathBuf>,

    /// The default output FIFO: messages that no --route claims go here.
    /// Its reader may leave and come back; nothing is lost meanwhile.
    #[arg(long, value_name = "PATH")]
    pub output: PathBuf,

    /// Messages whose payload starts with PREFIX go to the FIFO at PATH
    /// instead of --output. Repeatable; the first matching route wins.
    #[arg(long = "route", value_name = "PREFIX=PATH", value_parser = parse_route)]
    pub routes: Vec<Route>,

    /// How messages are delimited: `lines` (each ends with a newline),
    /// `length` (a u32 little-endian payload length, then the payload) or
    /// `raw` (bytes moved as they come by splice, inside the kernel; one
    /// input, one output, no routes).
    /// A framed message may be at most 4096 bytes (PIPE_BUF) with its
    /// newline or header.
    #[arg(long, value_enum, default_value_t = Framing::Lines, value_name = "FRAMING")]
    pub framing: Framing,

    /// Create missing FIFOs (mode 0600). A path that exists and is not a FIFO
    /// is always refused.
    #[arg(long)]
    pub create: bool,

    /// Print a line of counters on stderr every SECS seconds: messages and
    /// bytes in and out per FIFO, queue depths, reconnects. More than 0.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub stats_interval: Option<Duration>,

    /// Set every FIFO's pipe capacity (F_SETPIPE_SZ). Up to
    /// /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE.
    #[arg(long, value_name = "BYTES")]
    pub pipe_size: Option<usize>,

    /// On SIGINT or SIGTERM, the longest time spent delivering messages
    /// already read before exiting. A second signal ends it at once.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub grace: Duration,

    /// The multiplexer is its outputs' only writer: whole messages go out
    /// in runs up to a pipe's size (one write and one reader wake-up per
    /// pipe-full) instead of `PIPE_BUF` bytes each. Then another writer's
    /// bytes could land inside a message, and a reader that leaves while
    /// a run is half written may take a message's first part, the next
    /// reader its rest.
    #[arg(long)]
    pub sole_writer: bool,

    /// Unsent bytes at which an output refuses more messages, pausing the
    /// inputs whose messages wait for it.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub high_watermark: usize,

    /// Unsent bytes an output must drain to before paused inputs resume.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub low_watermark: usize,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: Vec<u8>,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Framing {
    /// Newline-terminated messages.
    Lines,
    /// u32 little-endian length, then the payload.
    Length,
    /// Bytes as they come, spliced (one input, one output).
    Raw,
}

impl Framing {
    pub fn codec(self) -> Option<Codec> {
        match self {
            Framing::Lines => Some(Codec::Lines),
            Framing::Length => Some(Codec::LengthPrefixed),
            Framing::Raw => None,
        }
    }

    /// Bytes a message takes beyond its payload on the wire.
    pub fn overhead(self) -> usize {
        self.codec().map_or(0, Codec::overhead)
    }

    /// What the counters count: messages, or bytes when relaying raw.
    pub fn unit(self) -> &'static str {
        match self {
            Framing::Raw => "bytes",
            _ => "messages",
        }
    }

    /// How much `msg` adds to the counters.
    pub fn units(self, msg: &[u8]) -> u64 {
        match self {
            Framing::Raw => msg.len() as u64,
            _ => 1,
        }
    }
}

impl Cli {
    /// Every output path: the default first, then the routes' in order.
    pub fn outputs(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.output).chain(self.routes.iter().map(|r| &r.path))
    }

    /// Refuses combinations no FIFO can satisfy, before anything opens.
    pub fn check(&self) -> Result<(), String> {
        if self.framing == Framing::Raw && (self.inputs.len() != 1 || !self.routes.is_empty()) {
            return Err("--framing raw takes exactly one --input and no --route".into());
        }
        if self.low_watermark > self.high_watermark {
            return Err("--low-watermark must not exceed --high-watermark".into());
        }
        // By the FIFO, not the spelling: `in` and `./in` are one FIFO, and
        // reading an output would route its messages back to it forever.
        let keys: Vec<FifoKey> = self.inputs.iter().map(|p| FifoKey::of(p)).collect();
        let outputs: Vec<(&PathBuf, FifoKey)> =
            self.outputs().map(|o| (o, FifoKey::of(o))).collect();
        for (i, (input, key)) in self.inputs.iter().zip(&keys).enumerate() {
            if let Some(j) = keys[..i].iter().position(|k| k == key) {
                return Err(format!(
                    "{}: given twice as an input{}",
                    input.display(),
                    also(&self.inputs[j], input)
                ));
            }
            if let Some((output, _)) = outputs.iter().find(|(_, k)| k == key) {
                return Err(format!(
                    "{}: is both an input and an output{}",
                    input.display(),
                    also(output, input)
                ));
            }
        }
        Ok(())
    }
}

/// `" (as OTHER)"` where `other` spells the FIFO differently.
fn also(other: &Path, path: &Path) -> String {
    if other == path {
        String::new()
    } else {
        format!(" (as {})", other.display())
    }
}

/// What names one FIFO however its path is spelled: its device and inode
/// where it exists, else (a FIFO `--create` makes later) its name in its
/// directory with the directory resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FifoKey {
    Inode(u64, u64),
    Path(PathBuf),
}

impl FifoKey {
    pub fn of(path: &Path) -> FifoKey {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path) {
            return FifoKey::Inode(m.dev(), m.ino());
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        FifoKey::Path(match path.file_name() {
            Some(name) => dir.join(name),
            None => path.to_path_buf(),
        })
    }
}

fn parse_route(s: &str) -> Result<Route, String> {
    let (prefix, path) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected PREFIX=PATH"))?;
    if prefix.is_empty() || path.is_empty() {
        return Err(format!("`{s}`: PREFIX and PATH must not be empty"));
    }
    Ok(Route {
        prefix: prefix.as_bytes().to_vec(),
        path: path.into(),
    })
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("`{s}`: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// A period: an interval of 0 would print stats lines without end.
fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_secs(s)? {
        d if d.is_zero() => Err(format!("`{s}`: must be more than 0 seconds")),
        d => Ok(d),
    }
}
