//! A FIFO message router on one io_uring proactor thread.
//!
//! ```text
//! cargo run --release --example multiplexer -- \
//!     --input PATH [--input PATH ...] --output PATH \
//!     [--route PREFIX=PATH ...] [--framing lines|length|raw] [--create] \
//!     [--stats-interval SECS] [--pipe-size BYTES] [--grace SECS]
//! ```
//!
//! Every input FIFO is read concurrently. Each complete message (a line, or
//! a length-prefixed frame) goes whole to the first route whose prefix
//! starts its payload, else to `--output`. Messages are at most `PIPE_BUF`
//! bytes with their framing, so each output write carries whole messages
//! only: they never interleave and never straddle two reader sessions.
//!
//! Peers come and go. Inputs are persistent: when the last writer leaves, the
//! FIFO is reopened and waits for the next one. Outputs keep every unsent
//! byte while their reader is away and resume at the exact byte.
//!
//! A frame the codec rejects (too long, say) ends that writer's session, not
//! the input: the input's read end is closed (a writer still attached gets
//! EPIPE; bytes left in a pipe nobody holds open any more are dropped), then
//! reopened for the next writer, with a line on stderr naming the input.
//! Messages decoded before the bad frame are delivered.
//!
//! Backpressure: an output at its high watermark refuses messages; the
//! refused messages wait in their input's small holding area and that input
//! is paused (its data waits in its pipe, its writers feel the pipe fill).
//! The input resumes once every held message has gone out, after the output
//! drained to its low watermark. Memory stays bounded: per output the
//! watermark plus one message, per input at most the reads in flight.
//!
//! `--framing raw` (one input, one output) relays bytes by splice inside
//! the kernel: no copy, and the output pipe itself is the backpressure.
//!
//! SIGINT/SIGTERM arrive through the ring (a signalfd): reading stops, what
//! was read is delivered to outputs that have a reader (within `--grace`),
//! a summary of delivered and undelivered messages goes to stderr, exit 0.
//! A path that is not a FIFO: an error naming it, exit code 2, nothing read.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use ringpipe::frame::{Codec, FrameDecoder, PIPE_BUF};
use ringpipe::{
    Error, Event, Events, FifoOptions, Proactor, Receiver, Reconnect, Sender, State, Token,
};

/// Routes whole messages from input FIFOs to output FIFOs, on one io_uring
/// thread, without losing or duplicating any while peers come and go.
#[derive(Parser, Debug)]
#[command(name = "multiplexer", version)]
struct Cli {
    /// An input FIFO to read messages from; repeat for more. All inputs are
    /// read concurrently; writers may leave and come back any number of times.
    #[arg(long = "input", value_name = "PATH", required = true)]
    inputs: Vec<PathBuf>,

    /// The default output FIFO: messages that no --route claims go here.
    /// Its reader may leave and come back; nothing is lost meanwhile.
    #[arg(long, value_name = "PATH")]
    output: PathBuf,

    /// Messages whose payload starts with PREFIX go to the FIFO at PATH
    /// instead of --output. Repeatable; the first matching route wins.
    #[arg(long = "route", value_name = "PREFIX=PATH", value_parser = parse_route)]
    routes: Vec<Route>,

    /// How messages are delimited: `lines` (each ends with a newline),
    /// `length` (a u32 little-endian payload length, then the payload) or
    /// `raw` (bytes moved as they come by splice, inside the kernel; one
    /// input, one output, no routes).
    /// A framed message may be at most 4096 bytes (PIPE_BUF) with its
    /// newline or header.
    #[arg(long, value_enum, default_value_t = Framing::Lines, value_name = "FRAMING")]
    framing: Framing,

    /// Create missing FIFOs (mode 0600). A path that exists and is not a FIFO
    /// is always refused.
    #[arg(long)]
    create: bool,

    /// Print a line of counters on stderr every SECS seconds: messages and
    /// bytes in and out per FIFO, queue depths, reconnects.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    stats_interval: Option<Duration>,

    /// Set every FIFO's pipe capacity (F_SETPIPE_SZ). Up to
    /// /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE.
    #[arg(long, value_name = "BYTES")]
    pipe_size: Option<usize>,

    /// On SIGINT or SIGTERM, the longest time spent delivering messages
    /// already read before exiting. A second signal ends it at once.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    grace: Duration,

    /// Unsent bytes at which an output refuses more messages, pausing the
    /// inputs whose messages wait for it.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    high_watermark: usize,

    /// Unsent bytes an output must drain to before paused inputs resume.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    low_watermark: usize,
}

#[derive(Debug, Clone)]
struct Route {
    prefix: Vec<u8>,
    path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Framing {
    /// Newline-terminated messages.
    Lines,
    /// u32 little-endian length, then the payload.
    Length,
    /// Bytes as they come, spliced (one input, one output).
    Raw,
}

impl Framing {
    fn codec(self) -> Option<Codec> {
        match self {
            Framing::Lines => Some(Codec::Lines),
            Framing::Length => Some(Codec::LengthPrefixed),
            Framing::Raw => None,
        }
    }

    /// What the counters count: messages, or bytes when relaying raw.
    fn unit(self) -> &'static str {
        match self {
            Framing::Raw => "bytes",
            _ => "messages",
        }
    }

    /// How much `msg` adds to the counters.
    fn units(self, msg: &[u8]) -> u64 {
        match self {
            Framing::Raw => msg.len() as u64,
            _ => 1,
        }
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

/// Exit code for a bad command line or a bad path (clap uses it too).
const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(msg) = check_cli(&cli) {
        eprintln!("multiplexer: error: {msg}");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut mux = match Mux::open(&cli) {
        Ok(mux) => mux,
        Err((code, msg)) => {
            eprintln!("multiplexer: error: {msg}");
            return ExitCode::from(code);
        }
    };
    match mux.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multiplexer: error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Checks the arguments and every path before any FIFO is opened, so a bad
/// path costs no writer its data: nothing has been opened, let alone read.
fn check_cli(cli: &Cli) -> Result<(), String> {
    if cli.framing == Framing::Raw && (cli.inputs.len() != 1 || !cli.routes.is_empty()) {
        return Err("--framing raw takes exactly one --input and no --route".into());
    }
    if cli.low_watermark > cli.high_watermark {
        return Err("--low-watermark must not exceed --high-watermark".into());
    }
    let outputs = std::iter::once(&cli.output).chain(cli.routes.iter().map(|r| &r.path));
    for path in cli.inputs.iter().chain(outputs) {
        check_path(path, cli.create)?;
    }
    for input in &cli.inputs {
        let is_output = std::iter::once(&cli.output)
            .chain(cli.routes.iter().map(|r| &r.path))
            .any(|o| o == input);
        if is_output {
            return Err(format!(
                "{}: is both an input and an output",
                input.display()
            ));
        }
    }
    Ok(())
}

fn check_path(path: &Path, create: bool) -> Result<(), String> {
    // Not following links, as the library's opens do not.
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Ok(()),
        Ok(m) => {
            let t = m.file_type();
            let kind = if t.is_file() {
                "regular file"
            } else if t.is_dir() {
                "directory"
            } else if t.is_symlink() {
                "symbolic link (not followed)"
            } else if t.is_char_device() {
                "character device"
            } else if t.is_block_device() {
                "block device"
            } else if t.is_socket() {
                "socket"
            } else {
                "file of unknown type"
            };
            Err(format!("{}: not a FIFO (it is a {kind})", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{}: no such FIFO (--create makes missing FIFOs)",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Messages refused by a full output, waiting in their input's holding area,
/// in order. Bytes live in one reused buffer: no allocation per message.
#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    msgs: Vec<HeldMsg>,
    /// Held messages per output: a message goes straight out only if none
    /// for its output waits, so each (input, output) pair keeps its order.
    per_output: Vec<u32>,
}

#[derive(Debug)]
struct HeldMsg {
    out: usize,
    start: usize,
    len: usize,
    done: bool,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    fn push(&mut self, out: usize, msg: &[u8]) {
        self.msgs.push(HeldMsg {
            out,
            start: self.bytes.len(),
            len: msg.len(),
            done: false,
        });
        self.bytes.extend_from_slice(msg);
        self.per_output[out] += 1;
    }
}

#[derive(Debug)]
struct Input {
    path: PathBuf,
    rx: Receiver,
    decoder: Option<FrameDecoder>,
    held: Held,
    paused: bool,
    /// Its read end is being closed after a bad frame, to be reopened.
    reopening: bool,
    closed: bool,
    msgs: u64,
    bytes: u64,
    reconnects: u64,
    /// Messages cut short by the last writer leaving mid-message.
    truncated: u64,
    /// Bytes dropped after a frame the codec rejected (the input then
    /// reopens for the next writer).
    bad_bytes: u64,
    /// Writer sessions ended by a bad frame.
    bad_sessions: u64,
}

#[derive(Debug)]
struct Output {
    path: PathBuf,
    tx: Sender,
    /// Refused a message: held messages for it wait for `Writable`.
    refused: bool,
    /// `close_after_flush` was called (shutting down).
    flushing: bool,
    closed: bool,
    /// The error that closed it, if any.
    failed: Option<String>,
    /// Messages and bytes (framing included) handed to the sender.
    msgs: u64,
    bytes: u64,
    /// Messages routed here after it failed.
    dropped: u64,
    /// Messages handed back unsent when it closed.
    unsent_msgs: u64,
    reconnects: u64,
}

#[derive(Debug)]
enum Sent {
    Yes,
    Refused,
    /// The output is closed: the message is counted as undelivered.
    Dropped,
}

#[derive(Debug)]
struct Stop {
    signal: &'static str,
    deadline: Instant,
    /// Poll turns since reading stopped. A read that completed before the
    /// pause reaches us within the first turn; after two, nothing more comes.
    turns: u32,
}

struct Mux {
    p: Proactor,
    events: Events,
    framing: Framing,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    /// Prefix and output index, in command-line order.
    routes: Vec<(Vec<u8>, usize)>,
    signals: Receiver,
    /// How inputs are (re)opened.
    in_opts: FifoOptions,
    stats_interval: Option<Duration>,
    grace: Duration,
    started: Instant,
    stop: Option<Stop>,
    /// Rotates which input gets freed output space first.
    next_drain: usize,
}

impl Mux {
    fn open(cli: &Cli) -> Result<Mux, (u8, String)> {
        let fail = |code| move |e: Error| (code, e.to_string());
        // Signals are blocked first, so from here on SIGINT/SIGTERM only ever
        // reach the signalfd, which the ring reads like any other input.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()
            .map_err(|e| (EXIT_FAILURE, format!("blocking signals: {e}")))?;
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
            .map_err(|e| (EXIT_FAILURE, format!("signalfd: {e}")))?;

        let mut p = Proactor::new().map_err(fail(EXIT_FAILURE))?;
        let signals = p.receiver_from_fd(sfd.into()).map_err(fail(EXIT_FAILURE))?;

        let mut base = FifoOptions::new().create(cli.create);
        if let Some(size) = cli.pipe_size {
            base = base.pipe_size(size);
        }
        // Outputs first: opening a sender reads nothing.
        let out_opts = base
            .clone()
            .reconnect(Reconnect::Wait)
            .watermarks(cli.high_watermark, cli.low_watermark);
        let mut outputs: Vec<Output> = Vec::new();
        let mut output_index = |p: &mut Proactor, path: &Path| -> Result<usize, (u8, String)> {
            if let Some(i) = outputs.iter().position(|o| o.path == path) {
                return Ok(i);
            }
            let tx = p.open_sender(path, &out_opts).map_err(fail(EXIT_USAGE))?;
            outputs.push(Output {
                path: path.into(),
                tx,
                refused: false,
                flushing: false,
                closed: false,
                failed: None,
                msgs: 0,
                bytes: 0,
                dropped: 0,
                unsent_msgs: 0,
                reconnects: 0,
            });
            Ok(outputs.len() - 1)
        };
        let default_out = output_index(&mut p, &cli.output)?;
        let mut routes = Vec::new();
        for r in &cli.routes {
            routes.push((r.prefix.clone(), output_index(&mut p, &r.path)?));
        }
        assert_eq!(default_out, 0, "the default output is output 0");

        let in_opts = base.persistent(true);
        let max_frame = cli.framing.codec().map(|c| PIPE_BUF - c.overhead());
        let mut inputs = Vec::new();
        for path in &cli.inputs {
            let rx = match p.open_receiver(path, &in_opts) {
                Ok(rx) => rx,
                Err(e) => {
                    // The reads queued by the inputs opened so far go to the
                    // kernel only with the next poll; dropping the proactor
                    // would submit them (then cancel them) and could consume
                    // input. Exiting without that drop reads nothing.
                    std::mem::forget(p);
                    return Err((EXIT_USAGE, e.to_string()));
                }
            };
            inputs.push(Input {
                path: path.clone(),
                rx,
                decoder: cli
                    .framing
                    .codec()
                    .zip(max_frame)
                    .map(|(c, m)| FrameDecoder::new(c, m)),
                held: Held {
                    per_output: vec![0; outputs.len()],
                    ..Held::default()
                },
                paused: false,
                reopening: false,
                closed: false,
                msgs: 0,
                bytes: 0,
                reconnects: 0,
                truncated: 0,
                bad_bytes: 0,
                bad_sessions: 0,
            });
        }
        if cli.framing == Framing::Raw {
            // Zero copy: the kernel splices input to output. Backpressure is
            // the output pipe itself; nothing passes through our memory.
            p.relay(inputs[0].rx, outputs[0].tx)
                .map_err(fail(EXIT_FAILURE))?;
        }
        Ok(Mux {
            p,
            events: Events::with_capacity(1024),
            framing: cli.framing,
            inputs,
            outputs,
            routes,
            signals,
            in_opts,
            stats_interval: cli.stats_interval,
            grace: cli.grace,
            started: Instant::now(),
            stop: None,
            next_drain: 0,
        })
    }

    fn run(&mut self) -> Result<(), Error> {
        let mut next_stats = self.stats_interval.map(|d| Instant::now() + d);
        loop {
            let now = Instant::now();
            let mut timeout: Option<Duration> = None;
            let mut wake_at = |at: Instant| {
                let d = at.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            };
            if let Some(at) = next_stats {
                wake_at(at);
            }
            if let Some(stop) = &self.stop {
                wake_at(stop.deadline);
                // Short turns while stopping: the exit test runs once a turn.
                wake_at(now + Duration::from_millis(20));
            }
            self.p.poll(&mut self.events, timeout)?;
            self.handle_events();

            if let Some(at) = next_stats
                && Instant::now() >= at
            {
                self.print_stats();
                next_stats = self.stats_interval.map(|d| at.max(Instant::now() - d) + d);
            }
            if self.stop.is_some() && self.stopping_turn() {
                break;
            }
        }
        self.finish();
        Ok(())
    }

    fn handle_events(&mut self) {
        let mut freed = false;
        let events = std::mem::take(&mut self.events);
        for event in &events {
            match event {
                Event::Data { from, data } if from == self.signals => self.on_signals(data),
                Event::Data { from, data } => {
                    if let Some(i) = self.input_of(from.token()) {
                        self.on_data(i, data);
                    }
                }
                Event::Opened(tx) => {
                    if let Some(o) = self.output_of(tx.token()) {
                        eprintln!(
                            "multiplexer: {}: reader connected",
                            self.outputs[o].path.display()
                        );
                    }
                }
                Event::Relayed { from, to, bytes } => {
                    let n = bytes as u64;
                    if let Some(i) = self.input_of(from.token()) {
                        self.inputs[i].msgs += n;
                        self.inputs[i].bytes += n;
                    }
                    if let Some(o) = self.output_of(to.token()) {
                        self.outputs[o].msgs += n;
                        self.outputs[o].bytes += n;
                    }
                }
                Event::PeerGone(t) => self.on_peer_gone(t),
                Event::PeerBack(t) => {
                    if let Some(i) = self.input_of(t) {
                        self.inputs[i].reconnects += 1;
                    } else if let Some(o) = self.output_of(t) {
                        self.outputs[o].reconnects += 1;
                        eprintln!(
                            "multiplexer: {}: reader back; resuming at the exact byte",
                            self.outputs[o].path.display()
                        );
                    }
                }
                Event::Writable(tx) => {
                    if let Some(o) = self.output_of(tx.token()) {
                        self.outputs[o].refused = false;
                        freed = true;
                    }
                }
                Event::Closed { token, unsent, .. } => {
                    if let Some(o) = self.output_of(token) {
                        let out = &mut self.outputs[o];
                        out.closed = true;
                        out.refused = false;
                        out.unsent_msgs += count_messages(self.framing, unsent);
                        freed = true;
                    } else if let Some(i) = self.input_of(token) {
                        self.on_input_closed(i);
                    } else if token == self.signals.token() {
                        eprintln!("multiplexer: warning: the signalfd closed");
                    }
                }
                Event::Error { token, error } => self.on_error(token, error),
                _ => {}
            }
        }
        self.events = events;
        if freed {
            self.drain_held();
        }
    }

    fn input_of(&self, t: Token) -> Option<usize> {
        self.inputs.iter().position(|i| i.rx.token() == t)
    }

    fn output_of(&self, t: Token) -> Option<usize> {
        self.outputs.iter().position(|o| o.tx.token() == t)
    }

    fn on_data(&mut self, i: usize, data: &[u8]) {
        let Mux {
            p,
            inputs,
            outputs,
            routes,
            framing,
            ..
        } = self;
        let framing = *framing;
        let input = &mut inputs[i];
        input.bytes += data.len() as u64;
        if input.reopening {
            // Read before the close took effect: the rest of a bad session.
            input.bad_bytes += data.len() as u64;
            return;
        }
        let Input {
            decoder,
            held,
            msgs,
            ..
        } = input;
        let result = match decoder {
            None => {
                *msgs += data.len() as u64;
                forward_raw(p, &mut outputs[0], held, data);
                Ok(())
            }
            Some(decoder) => decoder.feed(data, |msg| {
                *msgs += 1;
                let o = routes
                    .iter()
                    .find(|(prefix, _)| msg.starts_with(prefix))
                    .map_or(0, |&(_, o)| o);
                if held.per_output[o] > 0 || outputs[o].refused {
                    held.push(o, msg);
                } else if let Sent::Refused = send(p, &mut outputs[o], framing, msg) {
                    held.push(o, msg);
                }
            }),
        };
        if let Err(e) = result {
            // A stream with a bad frame has lost its framing: nothing after
            // it in this writer's session can be trusted to start a message.
            // Closing the read end ends the session; `on_input_closed`
            // reopens the input for the next writer.
            eprintln!(
                "multiplexer: {}: {e}; ending this writer's session and reopening the input",
                input.path.display()
            );
            input.bad_bytes += data.len() as u64;
            input.bad_sessions += 1;
            if let Some(decoder) = &mut input.decoder {
                decoder.reset();
            }
            match p.close(input.rx) {
                Ok(()) => input.reopening = true,
                Err(_) => input.closed = true,
            }
            return;
        }
        if !input.held.is_empty() && !input.paused {
            // Its messages wait for a full output: stop reading it.
            input.paused = true;
            let _ = p.pause(input.rx);
        }
    }

    /// An input's read end is closed: reopened if a bad frame closed it
    /// (unless stopping), else the input is done.
    fn on_input_closed(&mut self, i: usize) {
        let input = &mut self.inputs[i];
        if !std::mem::take(&mut input.reopening) || self.stop.is_some() {
            input.closed = true;
            return;
        }
        match self.p.open_receiver(&input.path, &self.in_opts) {
            Ok(rx) => {
                input.rx = rx;
                eprintln!(
                    "multiplexer: {}: reopened for the next writer",
                    input.path.display()
                );
                // Held messages still wait for a full output: read nothing yet.
                if input.paused {
                    let _ = self.p.pause(rx);
                }
            }
            Err(e) => {
                eprintln!("multiplexer: {}: cannot reopen: {e}", input.path.display());
                input.closed = true;
            }
        }
    }

    fn on_peer_gone(&mut self, t: Token) {
        if let Some(i) = self.input_of(t) {
            let input = &mut self.inputs[i];
            if let Some(decoder) = &mut input.decoder
                && decoder.buffered() > 0
            {
                eprintln!(
                    "multiplexer: {}: the last writer left in the middle of a message \
                     ({} bytes); dropping that partial message",
                    input.path.display(),
                    decoder.buffered()
                );
                input.truncated += 1;
                decoder.reset();
            }
        } else if let Some(o) = self.output_of(t) {
            eprintln!(
                "multiplexer: {}: reader left; keeping its messages for the next one",
                self.outputs[o].path.display()
            );
        }
    }

    fn on_error(&mut self, t: Token, error: &Error) {
        if let Some(o) = self.output_of(t) {
            eprintln!("multiplexer: output error: {error}");
            self.outputs[o].failed = Some(error.to_string());
        } else if self.input_of(t).is_some() {
            eprintln!("multiplexer: input error: {error}");
        } else {
            eprintln!("multiplexer: signalfd error: {error}");
        }
    }

    /// Offers held messages to outputs that have room again; resumes inputs
    /// whose holding area emptied (unless stopping).
    fn drain_held(&mut self) {
        let n = self.inputs.len();
        for k in 0..n {
            let i = (self.next_drain + k) % n;
            let input = &mut self.inputs[i];
            let held = &mut input.held;
            if held.is_empty() {
                continue;
            }
            for m in held.msgs.iter_mut() {
                let out = &mut self.outputs[m.out];
                if out.refused {
                    continue;
                }
                let msg = &held.bytes[m.start..m.start + m.len];
                match send(&mut self.p, out, self.framing, msg) {
                    Sent::Yes | Sent::Dropped => {
                        m.done = true;
                        held.per_output[m.out] -= 1;
                    }
                    Sent::Refused => {}
                }
            }
            held.msgs.retain(|m| !m.done);
            if held.msgs.is_empty() {
                held.bytes.clear();
                if input.paused && !input.closed && self.stop.is_none() {
                    input.paused = false;
                    let _ = self.p.resume(input.rx);
                }
            }
        }
        self.next_drain = (self.next_drain + 1) % n.max(1);
    }

    fn on_signals(&mut self, data: &[u8]) {
        // Each record is a 128-byte signalfd_siginfo starting with ssi_signo.
        for record in data.chunks(128) {
            let Some(signo) = record.get(..4) else {
                continue;
            };
            let signo = u32::from_ne_bytes(signo.try_into().expect("4 bytes"));
            let name = match Signal::try_from(signo as i32) {
                Ok(Signal::SIGINT) => "SIGINT",
                Ok(Signal::SIGTERM) => "SIGTERM",
                _ => "signal",
            };
            self.begin_stop(name);
        }
    }

    fn begin_stop(&mut self, signal: &'static str) {
        if let Some(stop) = &mut self.stop {
            eprintln!("multiplexer: {signal} again: ending the grace period now");
            stop.deadline = Instant::now();
            return;
        }
        for input in &mut self.inputs {
            if !input.paused && !input.closed {
                input.paused = true;
                let _ = self.p.pause(input.rx);
            }
        }
        eprintln!(
            "multiplexer: {signal}: stopped reading; delivering what was read (grace {:?})",
            self.grace
        );
        self.stop = Some(Stop {
            signal,
            deadline: Instant::now() + self.grace,
            turns: 0,
        });
    }

    /// One turn of the shutdown: flush outputs whose messages are all
    /// queued; true when nothing more can be delivered or time is up.
    fn stopping_turn(&mut self) -> bool {
        let stop = self.stop.as_mut().expect("stopping");
        stop.turns += 1;
        if stop.turns < 2 {
            return false;
        }
        let expired = Instant::now() >= stop.deadline;
        let mut done = true;
        for o in 0..self.outputs.len() {
            let held: u32 = self.inputs.iter().map(|i| i.held.per_output[o]).sum();
            let out = &mut self.outputs[o];
            if out.closed {
                continue;
            }
            if held == 0 && !out.flushing {
                // Closes once the reader has read everything, pipe included.
                out.flushing = self.p.close_after_flush(out.tx).is_ok();
            }
            let has_reader = matches!(self.p.state(out.tx), Ok(State::Open));
            // An output without a reader cannot take delivery: do not wait.
            done &= !has_reader;
        }
        done || expired
    }

    /// Closes what is left, counts what was not delivered and says why.
    fn finish(&mut self) {
        let had_reader: Vec<bool> = self
            .outputs
            .iter()
            .map(|o| matches!(self.p.state(o.tx), Ok(State::Open)))
            .collect();
        for out in &self.outputs {
            if !out.closed {
                let _ = self.p.close(out.tx);
            }
        }
        // Collect the unsent bytes the closes hand back (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.outputs.iter().any(|o| !o.closed) && Instant::now() < deadline {
            if self
                .p
                .poll(&mut self.events, Some(Duration::from_millis(50)))
                .is_err()
            {
                break;
            }
            self.handle_events();
        }

        let framing = self.framing;
        let unit = framing.unit();
        let read: u64 = self.inputs.iter().map(|i| i.msgs).sum();
        let mut delivered = 0;
        let mut why = Vec::new();
        for (o, out) in self.outputs.iter().enumerate() {
            delivered += out.msgs - out.unsent_msgs;
            let held: u64 = self
                .inputs
                .iter()
                .flat_map(|i| i.held.msgs.iter().map(move |m| (i, m)))
                .filter(|(_, m)| m.out == o)
                .map(|(i, m)| framing.units(&i.held.bytes[m.start..m.start + m.len]))
                .sum();
            let lost = out.unsent_msgs + held + out.dropped;
            if lost == 0 {
                continue;
            }
            let reason = match &out.failed {
                Some(e) => format!("the output failed: {e}"),
                None if !had_reader[o] => "no reader".to_string(),
                None => "the grace period ended before its reader took them".to_string(),
            };
            why.push(format!(
                "{lost} {unit} for {}: {reason}",
                out.path.display()
            ));
        }
        let stop = self.stop.as_ref().expect("stopping");
        eprintln!(
            "multiplexer: stopped by {}: read={read} delivered={delivered} undelivered={} ({unit})",
            stop.signal,
            read - delivered
        );
        for line in why {
            eprintln!("multiplexer:   undelivered {line}");
        }
        for input in &self.inputs {
            if input.truncated > 0 {
                eprintln!(
                    "multiplexer:   {}: {} partial messages dropped (the last writer left \
                     mid-message; not counted as read)",
                    input.path.display(),
                    input.truncated
                );
            }
            if input.bad_bytes > 0 {
                eprintln!(
                    "multiplexer:   {}: {} bytes dropped after invalid frames \
                     ({} writer sessions ended)",
                    input.path.display(),
                    input.bad_bytes,
                    input.bad_sessions
                );
            }
        }
    }

    fn print_stats(&self) {
        let mut line = format!(
            "multiplexer: stats t={:.2}s",
            self.started.elapsed().as_secs_f64()
        );
        for input in &self.inputs {
            let state = match (input.closed, input.reopening, input.paused) {
                (true, _, _) => "closed",
                (false, true, _) => "reopening",
                (false, false, true) => "paused",
                (false, false, false) => "reading",
            };
            line += &format!(
                " | in {}: {}, held {} msgs {} B, {state}, {} reconnects",
                input.path.display(),
                self.amount(input.msgs, input.bytes),
                input.held.msgs.len(),
                input.held.bytes.len(),
                input.reconnects
            );
        }
        for out in &self.outputs {
            let (unsent, state) = match self.p.stats(out.tx) {
                Ok(s) => (s.bytes_unsent(), self.p.state(out.tx).ok()),
                Err(_) => (0, None),
            };
            let state = match state {
                Some(State::Open) => "reader",
                Some(State::Opening) | Some(State::PeerGone) => "no reader",
                _ => "closed",
            };
            line += &format!(
                " | out {}: {}, queue {unsent} B, {state}, {} reconnects",
                out.path.display(),
                self.amount(out.msgs, out.bytes),
                out.reconnects
            );
        }
        eprintln!("{line}");
    }

    /// "N msgs M B", or "M B" when relaying raw (the counts are bytes).
    fn amount(&self, msgs: u64, bytes: u64) -> String {
        match self.framing {
            Framing::Raw => format!("{bytes} B"),
            _ => format!("{msgs} msgs {bytes} B"),
        }
    }
}

/// Hands one message to an output.
fn send(p: &mut Proactor, out: &mut Output, framing: Framing, msg: &[u8]) -> Sent {
    if out.closed || out.failed.is_some() {
        out.dropped += framing.units(msg);
        return Sent::Dropped;
    }
    let result = match framing.codec() {
        Some(codec) => p.send_frame(out.tx, codec, msg),
        None => p.send(out.tx, msg),
    };
    match result {
        Ok(()) => {
            out.msgs += framing.units(msg);
            out.bytes += (msg.len() + framing.codec().map_or(0, Codec::overhead)) as u64;
            Sent::Yes
        }
        Err(Error::WouldBlock { .. }) => {
            out.refused = true;
            Sent::Refused
        }
        Err(e) => {
            eprintln!("multiplexer: {}: {e}", out.path.display());
            out.failed.get_or_insert(e.to_string());
            out.dropped += framing.units(msg);
            Sent::Dropped
        }
    }
}

/// `--framing raw` when a chunk comes as `Data` rather than by the splice
/// relay (the relay has ended): sends it through the sender's queue; a
/// refused chunk waits in the holding area like a message.
fn forward_raw(p: &mut Proactor, out: &mut Output, held: &mut Held, chunk: &[u8]) {
    if held.per_output[0] > 0 || out.refused {
        held.push(0, chunk);
    } else if let Sent::Refused = send(p, out, Framing::Raw, chunk) {
        held.push(0, chunk);
    }
}

/// Messages in bytes handed back unsent. Frames of at most `PIPE_BUF` bytes
/// are written whole or not at all, so the bytes start at a frame boundary.
fn count_messages(framing: Framing, bytes: &[u8]) -> u64 {
    match framing.codec() {
        None => bytes.len() as u64,
        Some(codec) => {
            let mut decoder = FrameDecoder::new(codec, PIPE_BUF);
            let mut n = 0;
            let _ = decoder.feed(bytes, |_| n += 1);
            n + u64::from(decoder.buffered() > 0)
        }
    }
}
