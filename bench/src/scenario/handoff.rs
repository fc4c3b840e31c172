//! `ringpipe-bench handoff`: messages made on an application thread,
//! handed over to the I/O side, written to a FIFO by it, read by another
//! process. The I/O side is a proactor taking them from its `Mailbox`
//! (`uring`), a proactor woken by a `Notifier` after each send into a
//! `crossbeam-channel` (`uring-notifier`), or a blocking writer thread that
//! sleeps in that channel's `recv` (`blocking`: each wake drains the
//! channel into one `write`, as the proactors do; `blocking-each`: one
//! `write` per message).
//!
//! Each 64-byte message carries its sequence number and the
//! CLOCK_MONOTONIC time it was made; the reader process checks the order
//! and records the latency to its `read`. Two loads: `max` (the producer
//! sends as fast as the bounded channel takes: messages/s, and latency
//! under queueing) and `paced` (`--rate` messages/s, slept between: the wake-up latency).
//! Engines are interleaved within each run; medians and min..max over the
//! runs are printed.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{ArgMatches, Args as _};
use crossbeam_channel::{Receiver, TryRecvError};
use ringpipe::{Event, Events, FifoOptions, Proactor};

use super::{Scenario, args};
use crate::frames::Frames;
use crate::harness::{Globals, Part};
use crate::own::{median_spread, tempdir};
use crate::spec::mono_ns as now_ns;

const MSG: usize = 64;
type Msg = [u8; MSG];

/// Producer thread -> ringpipe's mailbox (or a crossbeam channel and a
/// Notifier) -> proactor -> FIFO -> reader process, against a blocking
/// writer thread on a crossbeam channel: messages/s, p50/p99 latency.
#[derive(Debug, clap::Args)]
struct HandoffArgs {
    /// Messages per run.
    #[arg(long, default_value_t = 1_000_000)]
    msgs: u64,
    /// Messages per second of the paced load (each usually finds the I/O
    /// side asleep: its latency is the wake-up's).
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Messages per paced run (default: one second's worth).
    #[arg(long)]
    paced_msgs: Option<u64>,
    /// Capacity of the bounded channel (and of the mailbox), in messages.
    #[arg(long, default_value_t = 4096)]
    channel: usize,
    /// Size of the FIFO's pipe, both sides alike (`F_SETPIPE_SZ`; the
    /// kernel's default is 64 KiB): a writer wakes about once per
    /// pipe-full.
    #[arg(long, default_value_t = 1 << 20)]
    pipe_size: usize,
    /// I/O sides to run, comma separated: uring, uring-notifier, blocking,
    /// blocking-each.
    #[arg(long, value_delimiter = ',', default_values_t = [Side::Uring, Side::UringNotifier, Side::Blocking, Side::BlockingEach])]
    sides: Vec<Side>,
    /// Loads to run, comma separated: max, paced.
    #[arg(long, value_delimiter = ',', default_values = ["max", "paced"])]
    loads: Vec<String>,
    /// (internal) Be the reader process of FIFO PATH: read COUNT messages.
    #[arg(long, hide = true, num_args = 2, value_names = ["PATH", "COUNT"])]
    reader: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum Side {
    Uring,
    UringNotifier,
    Blocking,
    BlockingEach,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Uring => "uring",
            Side::UringNotifier => "uring-notifier",
            Side::Blocking => "blocking",
            Side::BlockingEach => "blocking-each",
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU seconds of the writing process (producer and I/O side).
    cpu_s: f64,
    /// Wake-ups of the I/O side (uring: `Notified` events).
    wakes: u64,
}

/// The scenario.
pub struct Handoff;

impl Scenario for Handoff {
    fn name(&self) -> &'static str {
        "handoff"
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![HandoffArgs::augment_args(clap::Command::new(self.name()))]
    }

    fn run(&self, _: &str, m: &ArgMatches, g: &Globals) -> std::io::Result<Option<Vec<Part>>> {
        run(&args(m)?, g.own_runs())?;
        Ok(None)
    }

    fn quick(&self, _: &Globals) -> std::io::Result<Option<Part>> {
        Ok(Some(Part::table(self.name(), quick)))
    }
}

/// Runs the scenario, or the reader side when `--reader` is given.
fn run(args: &HandoffArgs, (runs, warmup): (usize, usize)) -> std::io::Result<()> {
    if let Some(r) = &args.reader {
        let count = r[1].parse().map_err(std::io::Error::other)?;
        return reader(Path::new(&r[0]), count);
    }
    let text = measure(args, runs, warmup)?;
    print!("{text}");
    Ok(())
}

/// The short run of `quick`: its tables.
fn quick(runs: usize) -> std::io::Result<String> {
    let args = HandoffArgs {
        msgs: 100_000,
        rate: 2_000,
        paced_msgs: Some(500),
        channel: 4096,
        pipe_size: 1 << 20,
        sides: vec![
            Side::Uring,
            Side::UringNotifier,
            Side::Blocking,
            Side::BlockingEach,
        ],
        loads: vec!["max".into(), "paced".into()],
        reader: None,
    };
    measure(&args, runs, 0)
}

/// Runs every load and side, `warmup + runs` times each; returns the
/// tables.
fn measure(args: &HandoffArgs, runs: usize, warmup: usize) -> std::io::Result<String> {
    let mut text = String::new();
    let dir = tempdir("handoff")?;
    let exe = std::env::current_exe()?;
    let sides = &args.sides[..];
    let paced_msgs = args.paced_msgs.unwrap_or(args.rate);
    let _ = writeln!(
        text,
        "handoff: 1 producer thread -> queue ({} msgs) -> I/O side -> FIFO ({} KiB pipe) -> reader process;\n\
         {MSG}-byte messages; {runs} runs + {warmup} warm-up, engines interleaved\n\
         - uring: a proactor with a ringpipe Mailbox; each Notified takes it whole into one send\n\
         - uring-notifier: a proactor woken by a Notifier after each crossbeam send; each wake drains the channel into one send\n\
         - blocking: a writer thread asleep in the channel's recv; each wake drains it into one write(2)\n\
         - blocking-each: the same, one write(2) per message",
        args.channel,
        args.pipe_size >> 10
    );
    let mut checked = 0u64;
    for (load, msgs, rate) in [
        ("max", args.msgs, None),
        ("paced", paced_msgs, Some(args.rate)),
    ] {
        if !args.loads.iter().any(|l| l == load) {
            continue;
        }
        let mut got: Vec<Vec<Figures>> = vec![Vec::new(); sides.len()];
        for round in 0..warmup + runs {
            for (s, &side) in sides.iter().enumerate() {
                let fifo = dir.join(format!("handoff-{round}-{s}"));
                let f = one_run(&exe, &fifo, side, msgs, rate, args)?;
                let _ = std::fs::remove_file(&fifo);
                checked += msgs;
                if round >= warmup {
                    got[s].push(f);
                }
            }
        }
        let label = match rate {
            Some(r) => format!("{load} ({r} msgs/s, {msgs} msgs)"),
            None => format!("{load} ({msgs} msgs)"),
        };
        let _ = writeln!(text, "\n{label}");
        let _ = writeln!(
            text,
            "{:<14} {:>22} {:>22} {:>24} {:>14} {:>12}",
            "engine", "msgs/s", "p50 us", "p99 us", "cpu us/msg", "wakes/kmsg"
        );
        for (s, side) in sides.iter().enumerate() {
            let col = |f: fn(&Figures) -> f64| median_spread(got[s].iter().map(f).collect());
            let _ = writeln!(
                text,
                "{:<14} {:>22} {:>22} {:>24} {:>14.3} {:>12.1}",
                side.name(),
                col(|f| f.msgs_per_s).fmt(0),
                col(|f| f.p50_us).fmt(1),
                col(|f| f.p99_us).fmt(1),
                col(|f| f.cpu_s).median * 1e6 / msgs as f64,
                col(|f| f.wakes as f64).median * 1000.0 / msgs as f64,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = writeln!(
        text,
        "messages checked: {checked}, every run's reader got each of its messages once, in order"
    );
    Ok(text)
}

fn one_run(
    exe: &Path,
    fifo: &Path,
    side: Side,
    msgs: u64,
    rate: Option<u64>,
    args: &HandoffArgs,
) -> std::io::Result<Figures> {
    nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    let mut reader = Command::new(exe)
        .arg("handoff")
        .arg("--reader")
        .arg(fifo)
        .arg(msgs.to_string())
        .stdout(Stdio::piped())
        .spawn()?;
    let cpu0 = crate::sys::cpu_seconds();
    let (tx, rx) = crossbeam_channel::bounded::<Msg>(args.channel);
    let pipe = args.pipe_size;
    let wakes = match side {
        Side::Uring => mailbox_side(fifo, args.channel, (msgs, rate, pipe), &mut reader)?,
        Side::UringNotifier => uring_side(fifo, tx, rx, (msgs, rate, pipe), &mut reader)?,
        Side::Blocking | Side::BlockingEach => {
            blocking_side(fifo, tx, rx, (msgs, rate, pipe), side == Side::BlockingEach)?
        }
    };
    let cpu_s = crate::sys::cpu_seconds() - cpu0;
    let mut out = String::new();
    reader
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("reader stdout"))?
        .read_to_string(&mut out)?;
    if !reader.wait()?.success() {
        return Err(std::io::Error::other(format!(
            "handoff reader failed ({})",
            side.name()
        )));
    }
    let v: Vec<f64> = out
        .split_whitespace()
        .map(|w| w.parse().map_err(std::io::Error::other))
        .collect::<Result<_, _>>()?;
    let [msgs_per_s, p50_us, p99_us, seen] = v[..] else {
        return Err(std::io::Error::other(format!("reader said {out:?}")));
    };
    if seen != msgs as f64 {
        return Err(std::io::Error::other(format!(
            "miscounted: the reader checked {seen} of {msgs} messages"
        )));
    }
    Ok(Figures {
        msgs_per_s,
        p50_us,
        p99_us,
        cpu_s,
        wakes,
    })
}

/// The producer: `msgs` messages, stamped when made, at `rate` or as fast
/// as the channel takes them; `notify` after each, and after the channel
/// is dropped.
fn produce(
    tx: crossbeam_channel::Sender<Msg>,
    msgs: u64,
    rate: Option<u64>,
    notify: impl Fn() + Clone + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let last = notify.clone();
    produce_with(
        move |m| {
            let sent = tx.send(m).is_ok();
            notify();
            sent
        },
        msgs,
        rate,
        last,
    )
}

/// The producer: `msgs` messages, stamped when made, at `rate` or as fast
/// as `send` takes them (it says `false` once the I/O side is gone); then
/// `send` is dropped and `done` called.
fn produce_with(
    mut send: impl FnMut(Msg) -> bool + Send + 'static,
    msgs: u64,
    rate: Option<u64>,
    done: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let send_all = move || {
        let start = Instant::now();
        for seq in 0..msgs {
            if let Some(rate) = rate {
                let due = start + Duration::from_nanos(seq * 1_000_000_000 / rate);
                // Slept, not spun: the machine's cores go to the sides
                // measured.
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let mut m = [0u8; MSG];
            m[..8].copy_from_slice(&seq.to_le_bytes());
            m[8..16].copy_from_slice(&now_ns().to_le_bytes());
            if !send(m) {
                break;
            }
        }
        drop(send);
        done();
    };
    std::thread::spawn(send_all)
}

fn err(e: impl ToString) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The turns of a proactor side's loop: each a poll of at most a second,
/// the reader looked at, the events counted. A stuck run fails instead of
/// hanging the benchmark.
struct Turns {
    side: &'static str,
    events: Events,
    deadline: Instant,
    /// `Notified` events so far.
    wakes: u64,
    /// The sender refused a send and no `Writable` came since.
    full: bool,
    /// `close_after_flush` was asked.
    closing: bool,
}

impl Turns {
    fn new(side: &'static str) -> Turns {
        Turns {
            side,
            events: Events::with_capacity(64),
            deadline: Instant::now() + Duration::from_secs(120),
            wakes: 0,
            full: false,
            closing: false,
        }
    }

    /// Sends `batch` and empties it, or, refused for backpressure, keeps
    /// it and waits for `Writable`.
    fn send<T>(
        &mut self,
        p: &mut Proactor,
        out: ringpipe::Sender,
        batch: &mut Vec<T>,
        bytes: impl Fn(&[T]) -> &[u8],
    ) -> std::io::Result<()> {
        match p.send(out, bytes(batch)) {
            Ok(()) => batch.clear(),
            Err(ringpipe::Error::WouldBlock { .. }) => self.full = true,
            Err(e) => return Err(err(e)),
        }
        Ok(())
    }

    /// Closes the sender once everything is sent, once: `done` says the
    /// producer left and nothing is left to send.
    fn close_when(
        &mut self,
        p: &mut Proactor,
        out: ringpipe::Sender,
        done: bool,
    ) -> std::io::Result<()> {
        if done && !self.closing {
            p.close_after_flush(out).map_err(err)?;
            self.closing = true;
        }
        Ok(())
    }

    /// Polls once; `false` once the sender closed.
    fn next(
        &mut self,
        p: &mut Proactor,
        reader: &mut std::process::Child,
    ) -> std::io::Result<bool> {
        if Instant::now() > self.deadline {
            return Err(err(format!("{}: no end after 120 s", self.side)));
        }
        p.poll(&mut self.events, Some(Duration::from_secs(1)))
            .map_err(err)?;
        check_reader(reader, &self.events)?;
        for e in &self.events {
            match e {
                Event::Notified(_) => self.wakes += 1,
                Event::Writable(_) => self.full = false,
                Event::Closed { .. } => return Ok(false),
                Event::Error { error, .. } => return Err(err(error)),
                _ => {}
            }
        }
        Ok(true)
    }
}

/// Fails if the reader process failed (it found a message missing or out
/// of place), looked at only where that can show: a poll that timed out,
/// or the reader gone. (A `wait4` per poll, two per message when paced,
/// would be the harness's cost charged to the proactor sides; the
/// blocking side looks at its reader only at the end.)
fn check_reader(reader: &mut std::process::Child, events: &Events) -> std::io::Result<()> {
    let gone = events.iter().any(|e| matches!(e, Event::PeerGone(_)));
    if !(events.is_empty() || gone) {
        return Ok(());
    }
    match reader.try_wait()?.filter(|s| !s.success()) {
        Some(status) => Err(err(format!("handoff reader failed ({status})"))),
        None => Ok(()),
    }
}

/// The proactors' FIFO: its pipe sized like the blocking writer's, and as
/// much queued in user space as the blocking writer's batch holds at most
/// (256 KiB: `send` refuses more, and `Writable` comes below 64 KiB), so
/// the sides differ in how they hand off, not in how much they buffer.
fn sender_options(pipe: usize) -> FifoOptions {
    FifoOptions::new()
        .watermarks(256 << 10, 64 << 10)
        .pipe_size(pipe)
}

/// Sleeping in `poll` until its mailbox has messages; each `Notified`
/// takes the mailbox whole into one `send`. A reader that fails ends the
/// run at once.
fn mailbox_side(
    fifo: &Path,
    capacity: usize,
    (msgs, rate, pipe): (u64, Option<u64>, usize),
    reader: &mut std::process::Child,
) -> std::io::Result<u64> {
    let mut p = Proactor::new().map_err(err)?;
    let out = p.open_sender(fifo, &sender_options(pipe)).map_err(err)?;
    let (tx, mut mailbox) = p.mailbox::<Msg>(capacity).map_err(err)?;
    let producer = produce_with(move |m| tx.send(m).is_ok(), msgs, rate, || {});
    let mut turns = Turns::new("mailbox side");
    let mut batch: Vec<Msg> = Vec::with_capacity(capacity);
    let mut disconnected = false;
    while turns.next(&mut p, reader)? {
        if turns.full {
            continue;
        }
        if batch.is_empty() && !disconnected {
            // Disconnected first: then this take gets the last of them.
            disconnected = mailbox.is_disconnected();
            mailbox.take(&mut batch);
        }
        if !batch.is_empty() {
            turns.send(&mut p, out, &mut batch, <[Msg]>::as_flattened)?;
        }
        turns.close_when(&mut p, out, disconnected && batch.is_empty())?;
    }
    producer.join().map_err(|_| err("producer panicked"))?;
    Ok(turns.wakes)
}

/// Sleeping in `poll` until notified; each wake drains the channel into
/// one `send`. A reader that fails (it found a message missing or out of
/// place) ends the run at once: the sender would wait for the next reader.
fn uring_side(
    fifo: &Path,
    tx: crossbeam_channel::Sender<Msg>,
    rx: Receiver<Msg>,
    (msgs, rate, pipe): (u64, Option<u64>, usize),
    reader: &mut std::process::Child,
) -> std::io::Result<u64> {
    let mut p = Proactor::new().map_err(err)?;
    let out = p.open_sender(fifo, &sender_options(pipe)).map_err(err)?;
    let n = p.notifier().map_err(err)?;
    let producer = produce(tx, msgs, rate, move || {
        n.notify();
    });
    let mut turns = Turns::new("uring side");
    let mut batch: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut disconnected = false;
    while turns.next(&mut p, reader)? {
        loop {
            while !disconnected && batch.len() < 256 << 10 {
                match rx.try_recv() {
                    Ok(m) => batch.extend_from_slice(&m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => disconnected = true,
                }
            }
            if turns.full || batch.is_empty() {
                break;
            }
            turns.send(&mut p, out, &mut batch, |b| b)?;
        }
        turns.close_when(&mut p, out, disconnected && batch.is_empty())?;
    }
    producer.join().map_err(|_| err("producer panicked"))?;
    Ok(turns.wakes)
}

/// A writer thread asleep in the channel's `recv`, writing with blocking
/// `write(2)`.
fn blocking_side(
    fifo: &Path,
    tx: crossbeam_channel::Sender<Msg>,
    rx: Receiver<Msg>,
    (msgs, rate, pipe): (u64, Option<u64>, usize),
    each: bool,
) -> std::io::Result<u64> {
    use nix::fcntl::{FcntlArg, fcntl};
    let mut file = std::fs::OpenOptions::new().write(true).open(fifo)?;
    fcntl(&file, FcntlArg::F_SETPIPE_SZ(pipe as i32)).map_err(std::io::Error::from)?;
    let producer = produce(tx, msgs, rate, || {});
    let writer = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut batch: Vec<u8> = Vec::with_capacity(256 << 10);
        let mut wakes = 0;
        while let Ok(m) = rx.recv() {
            wakes += 1;
            if each {
                file.write_all(&m)?;
                continue;
            }
            batch.extend_from_slice(&m);
            while batch.len() < 256 << 10 {
                match rx.try_recv() {
                    Ok(m) => batch.extend_from_slice(&m),
                    Err(_) => break,
                }
            }
            file.write_all(&batch)?;
            batch.clear();
        }
        Ok(wakes)
    });
    let wakes = writer
        .join()
        .map_err(|_| std::io::Error::other("writer panicked"))??;
    producer
        .join()
        .map_err(|_| std::io::Error::other("producer panicked"))?;
    Ok(wakes)
}

/// The reader process: reads `count` messages and EOF, checks their
/// order, and prints messages/s (first message made to last one read), p50 and p99
/// latency in microseconds, and the messages it checked.
fn reader(path: &Path, count: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut hist = crate::spec::new_histogram();
    let mut buf = vec![0u8; 1 << 20];
    let mut frames = Frames::new(MSG);
    let mut seen = 0u64;
    let mut first_made = None;
    let mut last_read = 0;
    while seen < count {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "EOF after {seen} of {count}"
            )));
        }
        let now = now_ns();
        frames.feed(&buf[..n], |m| {
            let seq = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
            let made = u64::from_le_bytes(m[8..16].try_into().expect("8 bytes"));
            if seq != seen {
                return Err(std::io::Error::other(format!("got {seq}, expected {seen}")));
            }
            first_made.get_or_insert(made);
            let _ = hist.record(now.saturating_sub(made).max(1));
            seen += 1;
            Ok(())
        })?;
        last_read = now;
    }
    // Then EOF, which the writer gives once it knows everything was read
    // (`close_after_flush` waits for a reader that stays to drain).
    if f.read(&mut buf)? != 0 {
        return Err(std::io::Error::other("bytes after the last message"));
    }
    let elapsed = (last_read - first_made.unwrap_or(last_read)).max(1) as f64 / 1e9;
    let p = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    println!("{} {} {} {seen}", count as f64 / elapsed, p(0.5), p(0.99));
    std::io::stdout().flush()
}
