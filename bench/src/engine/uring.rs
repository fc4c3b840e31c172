//! ringpipe with its defaults, and its variants: single-shot reads, batched
//! waits, splice relay, SQPOLL, busy polling.

use std::io;
use std::time::{Duration, Instant};

use ringpipe::{Backend, Error, Event, Events, FifoOptions, Proactor, ReadMode, Receiver, Sender};

use super::relay::{self, pipe_bytes};
use super::{Consumed, Engine, Scope, Spec, announce, sharded};
use crate::sink::Sink;
use crate::spec::{EngineReport, input_path};

/// ringpipe with its defaults.
pub const URING: Engine = Engine {
    name: "uring",
    describe: "ringpipe with Proactor::new() defaults: one READ_MULTISHOT per FIFO into a \
               provided buffer ring shared by all FIFOs, poll sleeps in io_uring_enter until \
               a completion",
    ringpipe: true,
    splices: false,
    scope: Scope::All,
    run: |s| run(s, Mode::Default),
};

pub const SINGLE: Engine = Engine {
    name: "uring-single",
    describe: "ringpipe, ReadMode::Fixed: one single-shot READ in flight per FIFO, re-armed \
               after each completion (a provided buffer picked when data is there, a \
               registered one while streaming)",
    scope: Scope::Unless(&["fanin", "latency"]),
    run: |s| run(s, Mode::Single),
    ..URING
};

pub const BATCH: Engine = Engine {
    name: "uring-batch",
    describe: "ringpipe, Builder::batch_wait(16, 500 us): poll sleeps until 16 completions \
               are ready, or 500 us have passed and one is",
    scope: Scope::Unless(&["fanin"]),
    run: |s| run(s, Mode::Batch),
    ..URING
};

pub const ECHO: Engine = Engine {
    name: "uring-echo",
    describe: "ringpipe, Builder::echo_hold(1 ms): the echo's write and the wait for the next \
               request in one io_uring_enter",
    scope: Scope::Unless(&["pingpong"]),
    run: |s| run(s, Mode::Echo),
    ..URING
};

pub const SPLICE: Engine = Engine {
    name: "uring-splice",
    describe: "ringpipe, Proactor::relay with its defaults: splice inside the kernel, no copy \
               through user space",
    splices: true,
    scope: Scope::Only(&["relay"]),
    run: |s| run(s, Mode::Splice),
    ..URING
};

pub const SPLICE_DIRECT: Engine = Engine {
    name: "uring-splice-direct",
    describe: "ringpipe, Proactor::relay with Builder::splice_direct(true) (the default): a \
               poll on the ring, then splice(2) from the proactor thread",
    run: |s| run(s, Mode::SpliceDirect),
    ..SPLICE
};

pub const SPLICE_IOWQ: Engine = Engine {
    name: "uring-splice-iowq",
    describe: "ringpipe, Proactor::relay with Builder::splice_direct(false): an io_uring \
               SPLICE behind a POLL, run on an io-wq kernel worker",
    run: |s| run(s, Mode::SpliceIowq),
    ..SPLICE
};

pub const SQPOLL: Engine = Engine {
    name: "uring-sqpoll",
    describe: "ringpipe, Builder::sqpoll: a kernel thread polls the submission queue (it \
               needs a core of its own)",
    scope: Scope::Unless(&["pingpong"]),
    run: |s| run(s, Mode::Sqpoll),
    ..URING
};

pub const SPIN: Engine = Engine {
    name: "uring-spin",
    describe: "ringpipe busy polling: poll(Some(Duration::ZERO)) in a loop, one \
               io_uring_enter each, never sleeping (a core of its own)",
    scope: Scope::Unless(&["pingpong"]),
    run: |s| run(s, Mode::Spin),
    ..URING
};

/// The batch of `Mode::Batch` (engine [`BATCH`]): completions to wait for, and the budget.
pub const BATCH_WAIT: (u32, Duration) = (16, Duration::from_micros(500));

/// [`BATCH_WAIT`], or `RINGPIPE_BENCH_BATCH=N/MICROSECONDS` from the
/// environment, for trying other batches with one binary.
fn batch() -> (u32, Duration) {
    std::env::var("RINGPIPE_BENCH_BATCH")
        .ok()
        .and_then(|v| {
            let (n, us) = v.split_once('/')?;
            Some((n.parse().ok()?, Duration::from_micros(us.parse().ok()?)))
        })
        .unwrap_or(BATCH_WAIT)
}

/// The hold of `Mode::Echo`.
pub const ECHO_HOLD: Duration = Duration::from_millis(1);

fn proactor(spec: &Spec, mode: Mode, backend: Backend) -> io::Result<Proactor> {
    let builder = Proactor::builder().backend(backend);
    // Relays grow both pipes to 1 MiB by default; a size from the
    // environment replaces that default (0: leave them alone).
    let builder = if std::env::var_os("RINGPIPE_BENCH_PIPE_KIB").is_some() {
        builder.relay_pipe_size(pipe_bytes(&spec.shape).unwrap_or(0))
    } else {
        builder
    };
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
        Mode::Batch => {
            let (n, budget) = batch();
            builder.batch_wait(n, budget).build()
        }
        Mode::Echo => builder.echo_hold(ECHO_HOLD).build(),
        Mode::SpliceDirect => builder.splice_direct(true).build(),
        Mode::SpliceIowq => builder.splice_direct(false).build(),
        // The read mode is the receivers' option (see `run`).
        Mode::Default | Mode::Single | Mode::Splice | Mode::Spin => builder.build(),
    };
    built.map_err(io::Error::other)
}

/// How the engine reads and waits for completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Defaults: single issuer, deferred task work, blocking `poll`, one
    /// `READ_MULTISHOT` per receiver into a shared provided buffer ring.
    Default,
    /// Defaults, but receivers read with one single-shot `READ` at a time,
    /// re-armed after each completion.
    Single,
    /// Defaults and `Builder::batch_wait` ([`BATCH_WAIT`]): a blocking `poll`
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

fn run(spec: &Spec, mode: Mode) -> io::Result<EngineReport> {
    run_on(spec, mode, Backend::Auto)
}

/// The engine of `mode` on `backend` (`Auto`: io_uring, or what
/// `RINGPIPE_BACKEND` says). Its report's note names the backend.
pub(super) fn run_on(spec: &Spec, mode: Mode, backend: Backend) -> io::Result<EngineReport> {
    let splices = matches!(mode, Mode::Splice | Mode::SpliceDirect | Mode::SpliceIowq);
    // How every receiver of the run reads.
    let opts = match mode {
        Mode::Single => FifoOptions::new().read_mode(ReadMode::Fixed),
        _ => FifoOptions::new(),
    };
    if spec.shape.relay().is_none() && !splices {
        // A proactor per consumer, each built on its own thread.
        let wait = (mode == Mode::Spin).then_some(Duration::ZERO);
        return sharded(spec, &|share, ready| {
            consume(
                spec,
                &mut proactor(spec, mode, backend)?,
                wait,
                &opts,
                share,
                ready,
            )
        });
    }
    let mut p = proactor(spec, mode, backend)?;
    let wait = match mode {
        Mode::Spin => Some(Duration::ZERO),
        _ => None,
    };
    let report = match spec.shape.relay() {
        Some((.., true)) if splices => splice(spec, &mut p),
        _ if splices => Err(io::Error::other("the splice engines run the relay only")),
        _ => relay(spec, &mut p, wait, opts),
    }?;
    Ok(with_backend(report, &p))
}

/// Names the backend in the report's note when it is not io_uring, so
/// a run that fell back to epoll says so in its table.
fn with_backend(mut report: EngineReport, p: &Proactor) -> EngineReport {
    if p.backend().backend() != Backend::IoUring {
        let line = format!("backend {}", p.backend());
        report.note = Some(match report.note.take() {
            Some(note) => format!("{note}; {line}"),
            None => line,
        });
    }
    report
}

/// Throughput, fan-in and idle: read the input FIFOs numbered `share`.
fn consume(
    spec: &Spec,
    p: &mut Proactor,
    wait: Option<Duration>,
    opts: &FifoOptions,
    share: &[usize],
    ready: &dyn Fn(usize),
) -> io::Result<Consumed> {
    let mut note = None;
    let mut opened = 0;
    // Receiver slot index -> FIFO number in the share: 4 bytes per FIFO,
    // as epoll's engine holds (its fds).
    let mut fifo_of: Vec<u32> = Vec::with_capacity(share.len());
    for (k, &i) in share.iter().enumerate() {
        match p.open_receiver(input_path(&spec.dir, i), opts) {
            Ok(rx) => {
                let slot = rx.token().index as usize;
                if fifo_of.len() <= slot {
                    fifo_of.resize(slot + 1, u32::MAX);
                }
                fifo_of[slot] = k as u32;
                opened += 1;
            }
            Err(e) => {
                note = Some(format!("opened {k} of {} FIFOs, then: {e}", share.len()));
                break;
            }
        }
    }
    let mut sink = Sink::new(
        &spec.shape,
        opened,
        opened as u64 * spec.shape.bytes_per_input,
    );
    let mut events = Events::with_capacity(1024);
    ready(opened);
    let enters0 = p.snapshot().enters;
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
    Ok(Consumed {
        sink,
        opened,
        syscalls: Some(p.snapshot().enters - enters0),
        note,
    })
}

/// The relay's FIFO options: `opts` with the pipe size of [`pipe_bytes`].
fn relay_options(spec: &Spec, opts: FifoOptions) -> FifoOptions {
    match pipe_bytes(&spec.shape) {
        Some(bytes) => opts.pipe_size(bytes),
        None => opts,
    }
}

/// Relay (a -> b) and ping-pong (req -> resp): every byte read is sent on.
/// The copy goes through `send`, which copies into a registered buffer.
fn relay(
    spec: &Spec,
    p: &mut Proactor,
    wait: Option<Duration>,
    opts: FifoOptions,
) -> io::Result<EngineReport> {
    let total = spec.shape.bytes_per_input;
    let (rx, tx, cpu0, enters0) = open_pair(spec, p, &relay_options(spec, opts))?;
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
    let note = spec.shape.bulk_relay().then(|| {
        format!("{reads} reads, {pauses} pauses, at most {peak_backlog} bytes held while paused")
    });
    let enters = p.snapshot().enters - enters0;
    Ok(relay::report(&spec.shape, first, sent, cpu0, enters, note))
}

/// The FIFOs of a relay as every ringpipe mode opens them (the engines
/// on plain fds share [`relay::Pair`]): the receiver at once, `READY`,
/// then the sender once the load generator reads. Returns them, the CPU
/// clock and the enter count at `READY`.
fn open_pair(
    spec: &Spec,
    p: &mut Proactor,
    opts: &FifoOptions,
) -> io::Result<(Receiver, Sender, f64, u64)> {
    let Some((from, to, _)) = spec.shape.relay() else {
        return Err(io::Error::other("not a relay"));
    };
    let rx = p
        .open_receiver(spec.dir.join(from), opts)
        .map_err(io::Error::other)?;
    let cpu0 = announce(1);
    let enters0 = p.snapshot().enters;
    let tx = p
        .open_sender(spec.dir.join(to), opts)
        .map_err(io::Error::other)?;
    Ok((rx, tx, cpu0, enters0))
}

/// Relay a -> b with `Proactor::relay`: the kernel splices from one pipe
/// into the other, no byte passes through user space.
fn splice(spec: &Spec, p: &mut Proactor) -> io::Result<EngineReport> {
    let total = spec.shape.bytes_per_input;
    let (rx, tx, cpu0, enters0) = open_pair(spec, p, &FifoOptions::new())?;
    // The pipes' size is the builder's (see `proactor`).
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
    let enters = p.snapshot().enters - enters0;
    Ok(relay::report(&spec.shape, first, moved, cpu0, enters, note))
}
