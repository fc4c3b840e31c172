//! The blocking-threads baseline: one thread per FIFO with plain blocking
//! `read`/`write`. Above the thread cap each thread serves several FIFOs,
//! waiting on them with `poll(2)` (the capped pool variant).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::relay::{self, Pair};
use super::{Engine, Scope, Spec, announce, by_flow, open_inputs};
use crate::sink::Sink;
use crate::spec::{EngineReport, READ_BUF, Shape};
use crate::sys;

pub const THREADS: Engine = Engine {
    name: "threads",
    describe: "one blocking thread per FIFO, plain read/write (above --threads-cap each \
               thread polls several FIFOs)",
    ringpipe: false,
    splices: false,
    scope: Scope::All,
    run: |spec| by_flow(spec, relay, consume),
};

pub const SPLICE: Engine = Engine {
    name: "threads-splice",
    describe: "one blocking thread calling splice(2) from FIFO to FIFO",
    splices: true,
    scope: Scope::Only(&["relay"]),
    run: run_splice,
    ..THREADS
};

/// One thread's FIFOs and the figures it reports back.
struct Share {
    fifos: Vec<(usize, OwnedFd)>,
}

fn consume(spec: &Spec) -> io::Result<EngineReport> {
    let (fds, note) = open_inputs(spec, sys::open_reader_nonblocking);
    let mut report = EngineReport {
        note,
        ..EngineReport::default()
    };
    let opened = fds.len();
    report.opened = opened;
    let threads = opened.min(spec.threads_cap.max(1));
    let mut shares: Vec<Share> = (0..threads).map(|_| Share { fifos: Vec::new() }).collect();
    for (i, fd) in fds.into_iter().enumerate() {
        shares[i % threads].fifos.push((i, fd));
    }
    if opened > threads {
        report.note = Some(format!(
            "capped at {threads} threads: each waits on its {}..{} FIFOs with poll(2)",
            opened / threads,
            opened.div_ceil(threads)
        ));
    }
    let per_fifo = spec.shape.bytes_per_input;
    let mut handles = Vec::with_capacity(threads);
    for share in shares {
        let shape = spec.shape.clone();
        let h = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve(&shape, share, per_fifo))?;
        handles.push(h);
    }
    let cpu0 = announce(opened);
    let mut sink = Sink::new(&spec.shape, 0, 0);
    let mut calls = 0u64;
    for h in handles {
        let (part, c) = h
            .join()
            .map_err(|_| io::Error::other("reader thread panicked"))??;
        sink.merge(&part);
        calls += c;
    }
    report.syscalls = Some(calls);
    super::finish(&mut report, &sink, cpu0);
    report.msgs = spec.shape.msgs_in(sink.bytes);
    Ok(report)
}

/// Reads the thread's FIFOs to the end; returns its sink and syscall count.
fn serve(shape: &Shape, share: Share, per_fifo: u64) -> io::Result<(Sink, u64)> {
    let n = share.fifos.len();
    let mut sink = Sink::new(shape, n, per_fifo * n as u64);
    let mut buf = vec![0u8; READ_BUF];
    let mut calls = 0u64;
    if n == 1 {
        // The plain case: one blocking read after another.
        let fd = &share.fifos[0].1;
        sys::set_nonblocking(fd.as_fd(), false)?;
        // A blocking read on a FIFO that never had a writer returns EOF at
        // once: wait for the first data.
        calls += 1;
        sys::wait_readable(fd.as_fd())?;
        while !sink.done() {
            calls += 1;
            match sys::read(fd.as_fd(), &mut buf) {
                Ok(0) => break,
                Ok(k) => sink.on_data(0, &buf[..k]),
                Err(e) => return Err(e.into()),
            }
        }
        return Ok((sink, calls));
    }
    let mut left: Vec<u64> = vec![per_fifo; n];
    let mut open = n;
    while open > 0 {
        let mut pfds: Vec<PollFd<'_>> = share
            .fifos
            .iter()
            .zip(&left)
            .map(|((_, fd), &l)| {
                let events = if l > 0 {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                };
                PollFd::new(fd.as_fd(), events)
            })
            .collect();
        calls += 1;
        match poll(&mut pfds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<usize> = pfds
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(k, _)| k)
            .collect();
        drop(pfds);
        for k in ready {
            if left[k] == 0 {
                continue;
            }
            calls += 1;
            match sys::read(share.fifos[k].1.as_fd(), &mut buf) {
                Ok(0) => {
                    left[k] = 0;
                    open -= 1;
                }
                Ok(got) => {
                    sink.on_data(k, &buf[..got]);
                    left[k] = left[k].saturating_sub(got as u64);
                    if left[k] == 0 {
                        open -= 1;
                    }
                }
                Err(Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok((sink, calls))
}

/// Relay and ping-pong: one thread, blocking read then blocking write.
fn relay(spec: &Spec) -> io::Result<EngineReport> {
    let mut buf = vec![0u8; READ_BUF];
    pump(spec, |pair, calls| {
        *calls += 1;
        let n = sys::read(pair.input.as_fd(), &mut buf)?;
        *calls += sys::write_all(&pair.output, &buf[..n])?;
        Ok(n)
    })
}

/// Relay with one blocking thread doing `splice(2)` from FIFO a into FIFO b:
/// the pages move from pipe to pipe, no copy through user space.
fn run_splice(spec: &Spec) -> io::Result<EngineReport> {
    if !spec.shape.bulk_relay() {
        return Err(io::Error::other("threads-splice runs the relay only"));
    }
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
    pump(spec, |pair, calls| {
        let (a, b) = (pair.input.as_fd(), pair.output.as_fd());
        loop {
            *calls += 1;
            match splice(a, None, b, None, READ_BUF, flags) {
                Err(Errno::EINTR) => {}
                moved => return Ok(moved?),
            }
        }
    })
}

/// A relay by one blocking thread: the pair opened blocking, then `step`
/// until it has passed every byte on or its input ends (`step` moves the
/// next bytes, counting its syscalls in `calls`, and returns how many: 0
/// at the input's end).
fn pump(
    spec: &Spec,
    mut step: impl FnMut(&Pair, &mut u64) -> io::Result<usize>,
) -> io::Result<EngineReport> {
    let pair = Pair::open(spec, true, |_| Ok(()))?;
    let mut calls = 1u64;
    sys::wait_readable(pair.input.as_fd())?;
    let mut moved = 0u64;
    let first = Instant::now();
    while moved < pair.total {
        match step(&pair, &mut calls)? {
            0 => break,
            n => moved += n as u64,
        }
    }
    let note = Some(pair.pipes());
    Ok(relay::report(
        &spec.shape,
        Some(first),
        moved,
        pair.cpu0,
        calls,
        note,
    ))
}
