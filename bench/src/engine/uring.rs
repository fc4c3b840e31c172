//! ringpipe with its defaults, and its variants: multishot reads, batched
//! waits, splice relay, SQPOLL, busy polling.

use std::io;
use std::time::{Duration, Instant};

use ringpipe::{Error, Event, Events, FifoOptions, Proactor, ReadMode};

use super::{announce, finish, relay_pipe_bytes, relay_report};
use crate::spec::{EngineReport, RunSpec, Sink, Work, input_path};

/// The batch of `Mode::Batch`: completions to wait for, and the budget.
pub const BATCH: (u32, Duration) = (16, Duration::from_micros(500));

/// [`BATCH`], or `RINGPIPE_BENCH_BATCH=N/MICROSECONDS` from the
/// environment, for trying other batches with one binary.
fn batch() -> (u32, Duration) {
    std::env::var("RINGPIPE_BENCH_BATCH")
        .ok()
        .and_then(|v| {
            let (n, us) = v.split_once('/')?;
            Some((n.parse().ok()?, Duration::from_micros(us.parse().ok()?)))
        })
        .unwrap_or(BATCH)
}

/// The hold of `Mode::Echo`.
pub const ECHO_HOLD: Duration = Duration::from_millis(1);

fn proactor(mode: Mode) -> io::Result<Proactor> {
    let builder = Proactor::builder();
    // `RINGPIPE_BENCH_NO_RING_FD=1` in the environment: every ringpipe
    // engine enters by the ring's fd instead of a registered index, for
    // A/B measurements of the registration with one binary.
    let builder = if std::env::var_os("RINGPIPE_BENCH_NO_RING_FD").is_some() {
        builder.register_ring_fd(false)
    } else {
        builder
    };
    let built = match mode {
        Mode::Sqpoll => builder.sqpoll(Duration::from_millis(50)).build(),
        Mode::Multishot => builder.read_mode(ReadMode::Multishot).build(),
        Mode::Batch => {
            let (n, budget) = batch();
            builder.batch_wait(n, budget).build()
        }
        Mode::Echo => builder.echo_hold(ECHO_HOLD).build(),
        Mode::SpliceDirect => builder.splice_direct(true).build(),
        Mode::SpliceIowq => builder.splice_direct(false).build(),
        Mode::Default | Mode::Splice | Mode::Spin => builder.build(),
    };
    built.map_err(io::Error::other)
}

/// How the engine reads and waits for completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Defaults: single issuer, deferred task work, blocking `poll`, one
    /// `READ_FIXED` at a time per receiver.
    Default,
    /// Defaults, but receivers read with one `READ_MULTISHOT` each into a
    /// shared provided buffer ring.
    Multishot,
    /// Defaults and `Builder::batch_wait` ([`BATCH`]): a blocking `poll`
    /// sleeps until 16 completions are ready, or 500 us have passed and
    /// one is.
    Batch,
    /// Defaults and `Builder::echo_hold` ([`ECHO_HOLD`]): a poll that
    /// submits the answer to the data it delivered waits for the next data
    /// in the same `io_uring_enter`.
    Echo,
    /// Defaults; the relay is `Proactor::relay` (splice in the kernel)
    /// instead of read + `send`.
    Splice,
    /// `Splice` with `Builder::splice_direct(true)` (the default): the
    /// splice is `splice(2)` from the proactor thread once a poll on the
    /// ring says data is there.
    SpliceDirect,
    /// `Splice` with `Builder::splice_direct(false)`: an io_uring SPLICE
    /// linked behind a POLL, run on an io-wq worker.
    SpliceIowq,
    /// SQPOLL kernel thread, blocking `poll`.
    Sqpoll,
    /// Defaults and a busy loop of `poll(.., Some(Duration::ZERO))`: each
    /// poll is one `io_uring_enter` that submits and reaps without sleeping.
    Spin,
}

pub fn run(spec: &RunSpec, mode: Mode) -> io::Result<EngineReport> {
    let mut p = proactor(mode)?;
    let wait = match mode {
        Mode::Spin => Some(Duration::ZERO),
        _ => None,
    };
    match spec.work {
        Work::Relay { .. }
            if matches!(mode, Mode::Splice | Mode::SpliceDirect | Mode::SpliceIowq) =>
        {
            splice(spec, &mut p)
        }
        _ if matches!(mode, Mode::Splice | Mode::SpliceDirect | Mode::SpliceIowq) => {
            Err(io::Error::other("the splice engines run the relay only"))
        }
        Work::Relay { .. } | Work::Pingpong { .. } => relay(spec, &mut p, wait),
        _ => consume(spec, &mut p, wait),
    }
}

/// Throughput, fan-in and idle: read every input FIFO.
fn consume(spec: &RunSpec, p: &mut Proactor, wait: Option<Duration>) -> io::Result<EngineReport> {
    let mut report = EngineReport::default();
    let wanted = spec.work.inputs();
    // Receiver slot index -> FIFO number: 4 bytes per FIFO, as epoll's
    // engine holds (its fds).
    let mut fifo_of: Vec<u32> = Vec::with_capacity(wanted);
    for i in 0..wanted {
        match p.open_receiver(input_path(&spec.dir, i), &FifoOptions::new()) {
            Ok(rx) => {
                let slot = rx.token().index as usize;
                if fifo_of.len() <= slot {
                    fifo_of.resize(slot + 1, u32::MAX);
                }
                fifo_of[slot] = i as u32;
                report.opened += 1;
            }
            Err(e) => {
                report.note = Some(format!("opened {i} of {wanted} FIFOs, then: {e}"));
                break;
            }
        }
    }
    let opened = report.opened;
    let mut sink = Sink::new(
        &spec.work,
        opened,
        opened as u64 * spec.work.bytes_per_input(),
    );
    let mut events = Events::with_capacity(1024);
    let cpu0 = announce(opened);
    let enters0 = p.enter_count();
    let mut gone = 0;
    while !sink.done() && gone < opened {
        p.poll(&mut events, wait).map_err(io::Error::other)?;
        for ev in &events {
            match ev {
                Event::Data { from, data } => {
                    sink.on_data(fifo_of[from.token().index as usize] as usize, data)
                }
                Event::PeerGone(_) => gone += 1,
                Event::Error { error, .. } => return Err(io::Error::other(error.to_string())),
                _ => {}
            }
        }
    }
    report.syscalls = Some(p.enter_count() - enters0);
    finish(&mut report, &sink, cpu0);
    report.msgs = spec.work.msgs_in(sink.bytes);
    Ok(report)
}

/// The relay's FIFO options: the pipe size of [`relay_pipe_bytes`].
fn relay_options(work: &Work) -> FifoOptions {
    match relay_pipe_bytes(work) {
        Some(bytes) => FifoOptions::new().pipe_size(bytes),
        None => FifoOptions::new(),
    }
}

/// Relay (a -> b) and ping-pong (req -> resp): every byte read is sent on.
/// The copy goes through `send`, which copies into a registered buffer.
fn relay(spec: &RunSpec, p: &mut Proactor, wait: Option<Duration>) -> io::Result<EngineReport> {
    let (from, to) = spec.work.relay_ends();
    let total = spec.work.bytes_per_input();
    let opts = relay_options(&spec.work);
    let rx = p
        .open_receiver(spec.dir.join(from), &opts)
        .map_err(io::Error::other)?;
    let cpu0 = announce(1);
    let enters0 = p.enter_count();
    let tx = p
        .open_sender(spec.dir.join(to), &opts)
        .map_err(io::Error::other)?;
    let mut events = Events::with_capacity(1024);
    let (mut sent, mut reads) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    // Above the sender's high watermark the receiver is paused, so data
    // waits in the pipe; a read that completed before the pause still
    // delivers, and waits here until the sender is writable again.
    let mut backlog: Vec<u8> = Vec::new();
    let mut peak_backlog = 0usize;
    let mut pauses = 0u64;
    // Bytes read, and whether the input has ended: a run that read fewer
    // bytes than it should ends once it has sent what it read, and the
    // load generator's count says so.
    let (mut taken, mut eof) = (0u64, false);
    while sent < total && !(eof && sent == taken) {
        p.poll(&mut events, wait).map_err(io::Error::other)?;
        let mut writable = false;
        let mut refused = false;
        for ev in &events {
            match ev {
                Event::PeerGone(t) if t == rx.token() => eof = true,
                Event::Data { from, data } if from == rx => {
                    first.get_or_insert_with(Instant::now);
                    reads += 1;
                    taken += data.len() as u64;
                    if backlog.is_empty() {
                        match p.send(tx, data) {
                            Ok(()) => {}
                            Err(Error::WouldBlock { .. }) => {
                                backlog.extend_from_slice(data);
                                refused = true;
                            }
                            Err(e) => return Err(io::Error::other(e)),
                        }
                    } else {
                        backlog.extend_from_slice(data);
                    }
                    peak_backlog = peak_backlog.max(backlog.len());
                }
                Event::Sent { bytes, .. } => sent += bytes as u64,
                Event::Writable(s) if s == tx => writable = true,
                Event::Error { error, .. } => return Err(io::Error::other(error.to_string())),
                _ => {}
            }
        }
        // A one-shot receiver closes at EOF: pausing or resuming it then
        // reports Closed, and there is nothing left to read anyway.
        if refused {
            match p.pause(rx) {
                Ok(()) => pauses += 1,
                Err(Error::Closed { .. }) => {}
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        if writable && !backlog.is_empty() {
            match p.send(tx, &backlog) {
                Ok(()) => {
                    backlog.clear();
                    match p.resume(rx) {
                        Ok(()) | Err(Error::Closed { .. }) => {}
                        Err(e) => return Err(io::Error::other(e)),
                    }
                }
                Err(Error::WouldBlock { .. }) => {}
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
    let note = matches!(spec.work, Work::Relay { .. }).then(|| {
        format!("{reads} reads, {pauses} pauses, at most {peak_backlog} bytes held while paused")
    });
    let enters = p.enter_count() - enters0;
    Ok(relay_report(&spec.work, first, sent, cpu0, enters, note))
}

/// Relay a -> b with `Proactor::relay`: the kernel splices from one pipe
/// into the other, no byte passes through user space.
fn splice(spec: &RunSpec, p: &mut Proactor) -> io::Result<EngineReport> {
    let (from, to) = spec.work.relay_ends();
    let total = spec.work.bytes_per_input();
    let opts = FifoOptions::new();
    let rx = p
        .open_receiver(spec.dir.join(from), &opts)
        .map_err(io::Error::other)?;
    let cpu0 = announce(1);
    let enters0 = p.enter_count();
    let tx = p
        .open_sender(spec.dir.join(to), &opts)
        .map_err(io::Error::other)?;
    // `Proactor::relay` grows both pipes to 1 MiB by default; a size
    // from the environment replaces that default (0: leave them alone).
    if std::env::var_os("RINGPIPE_BENCH_PIPE_KIB").is_some() {
        p.set_relay_pipe_size(relay_pipe_bytes(&spec.work).unwrap_or(0));
    }
    p.relay(rx, tx).map_err(io::Error::other)?;
    let mut events = Events::with_capacity(1024);
    let (mut moved, mut splices) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    while moved < total {
        p.poll(&mut events, None).map_err(io::Error::other)?;
        for ev in &events {
            match ev {
                Event::Relayed { bytes, .. } => {
                    first.get_or_insert_with(Instant::now);
                    splices += 1;
                    moved += bytes as u64;
                }
                // Bytes read before the relay started are sent as usual.
                Event::Sent { bytes, .. } => moved += bytes as u64,
                Event::Error { error, .. } => return Err(io::Error::other(error.to_string())),
                _ => {}
            }
        }
    }
    let note = Some(format!("{splices} splices"));
    let enters = p.enter_count() - enters0;
    Ok(relay_report(&spec.work, first, moved, cpu0, enters, note))
}
