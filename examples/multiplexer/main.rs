//! A FIFO message router on one io_uring proactor thread.
//!
//! ```text
//! cargo run --release --example multiplexer -- \
//!     --input PATH [--input PATH ...] --output PATH \
//!     [--route PREFIX=PATH ...] [--framing lines|length|raw] [--create] \
//!     [--stats-interval SECS] [--pipe-size BYTES] [--grace SECS] [--sole-writer]
//! ```
//!
//! Every input FIFO is read concurrently. Each complete message (a line, or
//! a length-prefixed frame) goes whole to the first route whose prefix
//! starts its payload, else to `--output`. Messages are at most `PIPE_BUF`
//! bytes with their framing, so each output write carries whole messages
//! only: they never interleave and never straddle two reader sessions.
//! With `--sole-writer` (`FifoOptions::sole_writer`: nobody else writes
//! the outputs, and readers take what a departed one left half read)
//! whole messages go out in writes up to a pipe's size instead.
//!
//! Peers come and go. Inputs are persistent: when the last writer leaves, the
//! FIFO is reopened and waits for the next one. Outputs keep every unsent
//! byte while their reader is away and resume at the exact byte.
//!
//! A frame the codec rejects (too long, say) ends that writer's session, not
//! the input: the library closes the input's read end (a writer still
//! attached gets EPIPE; bytes left in a pipe nobody holds open any more are
//! dropped), then the input is reopened for the next writer, with a line on
//! stderr naming the input. Messages decoded before the bad frame are
//! delivered.
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
//!
//! This file owns the proactor loop: opening the FIFOs, dispatching events,
//! each input's life (bad frames, reopening) and the stats line. The
//! modules: `cli` (options and their checks), `routing` (routes, outputs,
//! holding areas, backpressure), `shutdown` (signals, grace, summary).

mod cli;
mod routing;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ringpipe::frame::{Codec, FrameError, PIPE_BUF};
use ringpipe::{
    Error, Event, Events, FifoOptions, Proactor, ReadMode, Receiver, Reconnect, State, Token,
};

use cli::{Cli, FifoKey, Framing};
use routing::{Batch, Held, Output, Routes};
use shutdown::Stop;

/// Exit code for a bad command line or a bad path (clap uses it too).
const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(msg) = cli.check() {
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

/// The exit code and message for a FIFO that failed to open: a bad path
/// or option is a usage error, anything else a failure.
fn open_failed(create: bool) -> impl Fn(Error) -> (u8, String) {
    move |e| match e {
        Error::NotFound { .. } if !create => {
            (EXIT_USAGE, format!("{e} (--create makes missing FIFOs)"))
        }
        Error::NotFound { .. }
        | Error::NotAFifo { .. }
        | Error::NoSuchDirectory { .. }
        | Error::EmptyPath
        | Error::Symlink { .. }
        | Error::PermissionDenied { .. }
        | Error::Open { .. }
        | Error::PipeTooSmall { .. }
        | Error::PipeSize { .. } => (EXIT_USAGE, e.to_string()),
        e => (EXIT_FAILURE, e.to_string()),
    }
}

#[derive(Debug)]
struct Input {
    path: PathBuf,
    rx: Receiver,
    held: Held,
    paused: bool,
    /// Its read end is closing after a bad frame, to be reopened.
    reopening: bool,
    closed: bool,
    /// Messages (bytes when raw) and bytes, framing included, read.
    msgs: u64,
    bytes: u64,
    reconnects: u64,
    /// Messages cut short by the last writer leaving mid-message.
    truncated: u64,
    /// Writer sessions ended by a frame the codec rejected (the input then
    /// reopens for the next writer).
    bad_sessions: u64,
}

struct Mux {
    p: Proactor,
    events: Events,
    framing: Framing,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    routes: Routes,
    signals: Receiver,
    /// How inputs are (re)opened.
    in_opts: FifoOptions,
    stats_interval: Option<Duration>,
    grace: Duration,
    started: Instant,
    stop: Option<Stop>,
    /// Rotates which input gets freed output space first.
    next_drain: usize,
    /// The outputs' high watermark: a run of frames is cut to fit it.
    high: u64,
}

impl Mux {
    fn open(cli: &Cli) -> Result<Mux, (u8, String)> {
        let sfd = shutdown::signal_fd().map_err(|e| (EXIT_FAILURE, e))?;
        let failed = |e: Error| (EXIT_FAILURE, e.to_string());
        let mut p = Proactor::new().map_err(failed)?;
        let signals = p.receiver_from_fd(sfd, ReadMode::Fixed).map_err(failed)?;

        let mut base = FifoOptions::new().create(cli.create);
        if let Some(size) = cli.pipe_size {
            base = base.pipe_size(size);
        }
        // Inputs first, so that a bad input path creates no output. Their
        // reads reach the kernel only at the first poll: if a later path
        // fails, dropping the proactor frees them unsubmitted, reading
        // nothing.
        let mut in_opts = base.clone().persistent(true);
        if let Some(codec) = cli.framing.codec() {
            in_opts = in_opts.frames(codec, PIPE_BUF - codec.overhead());
        }
        let mut rxs = Vec::new();
        for path in &cli.inputs {
            let rx = p
                .open_receiver(path, &in_opts)
                .map_err(open_failed(cli.create))?;
            rxs.push(rx);
        }

        let out_opts = base
            .reconnect(Reconnect::Wait)
            .watermarks(cli.high_watermark, cli.low_watermark)
            .sole_writer(cli.sole_writer);
        let mut outputs: Vec<Output> = Vec::new();
        // One sender per FIFO, however its paths are spelled (`out`,
        // `./out`): its key is taken once it is open, so it exists then.
        let mut keys: Vec<FifoKey> = Vec::new();
        let mut output_index = |p: &mut Proactor, path: &PathBuf| {
            let key = FifoKey::of(path);
            if let Some(i) = keys.iter().position(|k| *k == key) {
                return Ok(i);
            }
            let tx = p
                .open_sender(path, &out_opts)
                .map_err(open_failed(cli.create))?;
            outputs.push(Output::new(path.clone(), tx));
            keys.push(FifoKey::of(path));
            Ok(outputs.len() - 1)
        };
        // Opened first, the default output is output 0.
        output_index(&mut p, &cli.output)?;
        let mut routes = Routes::default();
        for r in &cli.routes {
            routes
                .0
                .push((r.prefix.clone(), output_index(&mut p, &r.path)?));
        }

        let inputs: Vec<Input> = cli
            .inputs
            .iter()
            .zip(rxs)
            .map(|(path, rx)| Input {
                path: path.clone(),
                rx,
                held: Held::new(outputs.len()),
                paused: false,
                reopening: false,
                closed: false,
                msgs: 0,
                bytes: 0,
                reconnects: 0,
                truncated: 0,
                bad_sessions: 0,
            })
            .collect();
        if cli.framing == Framing::Raw
            && let (Some(input), Some(output)) = (inputs.first(), outputs.first())
        {
            // Zero copy: the kernel splices input to output. Backpressure is
            // the output pipe itself; nothing passes through our memory.
            p.relay(input.rx, output.tx).map_err(failed)?;
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
            high: cli.high_watermark as u64,
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
        // Frames come in runs from one input: look it up once per run, and
        // send the run's frames for each output with one call.
        let mut last: Option<(Receiver, usize)> = None;
        let mut batch = Batch::new(self.outputs.len());
        // Frames whole in one read come as runs of wire bytes (raw framing
        // has no frames: the codec is then moot).
        let codec = self.framing.codec().unwrap_or(Codec::Lines);
        for event in events.runs(codec) {
            if !matches!(event, Event::Frame { .. } | Event::Frames { .. })
                && let Some((_, i)) = last.take()
            {
                self.send_batch(i, &mut batch);
            }
            match event {
                Event::Frame { from, .. } | Event::Frames { from, .. } => {
                    let i = match last {
                        Some((rx, i)) if rx == from => Some(i),
                        _ => {
                            if let Some((_, i)) = last.take() {
                                self.send_batch(i, &mut batch);
                            }
                            self.input_of(from.token())
                        }
                    };
                    let Some(i) = i else { continue };
                    last = Some((from, i));
                    match event {
                        Event::Frames { wire, frames, .. } => {
                            self.route_wire(i, wire, frames, &mut batch)
                        }
                        Event::Frame { frame, .. } => self.route_frame(i, frame, &mut batch),
                        _ => {}
                    }
                }
                Event::Data { from, data } if from == self.signals => self.on_signals(data),
                // Raw framing, once the relay has ended: bytes as messages.
                Event::Data { from, data } => {
                    if let Some(i) = self.input_of(from.token()) {
                        self.route(i, data);
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
                Event::PeerGone(t) => {
                    if let Some(o) = self.output_of(t) {
                        eprintln!(
                            "multiplexer: {}: reader left; keeping its messages for the next one",
                            self.outputs[o].path.display()
                        );
                    }
                }
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
                        out.unsent_msgs += routing::count_messages(self.framing, unsent);
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
        if let Some((_, i)) = last {
            self.send_batch(i, &mut batch);
        }
        drop(batch);
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

    fn on_error(&mut self, t: Token, error: &Error) {
        if let Some(o) = self.output_of(t) {
            eprintln!("multiplexer: output error: {error}");
            self.outputs[o].failed = Some(error.to_string());
            return;
        }
        let Some(i) = self.input_of(t) else {
            eprintln!("multiplexer: signalfd error: {error}");
            return;
        };
        let input = &mut self.inputs[i];
        match error {
            // The persistent receiver dropped the partial frame and goes on.
            Error::Frame {
                source: FrameError::Truncated { buffered },
                ..
            } => {
                eprintln!(
                    "multiplexer: {}: the last writer left in the middle of a message \
                     ({buffered} bytes); dropping that partial message",
                    input.path.display(),
                );
                input.truncated += 1;
            }
            // A stream with a bad frame has lost its framing: nothing after
            // it in this writer's session can be trusted to start a message.
            // The library closes the read end, which ends the session;
            // `on_input_closed` reopens the input for the next writer. Bytes
            // read while it closes fail the same way: one line per session.
            Error::Frame { source, .. } => {
                if !std::mem::replace(&mut input.reopening, true) {
                    eprintln!(
                        "multiplexer: {}: {source}; ending this writer's session and \
                         reopening the input",
                        input.path.display()
                    );
                    input.bad_sessions += 1;
                }
            }
            _ => eprintln!("multiplexer: input error: {error}"),
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
                input.held.count(),
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
