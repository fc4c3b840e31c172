//! The blocking-threads baseline: one thread per FIFO with plain blocking
//! `read`/`write`. Above the thread cap each thread serves several FIFOs,
//! waiting on them with `poll(2)` (the capped pool variant).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{announce, pipes_note, relay_report, size_relay_pipe};
use crate::spec::{EngineReport, READ_BUF, RunSpec, Sink, Work, input_path};
use crate::sys;

pub fn run(spec: &RunSpec) -> io::Result<EngineReport> {
    match spec.work {
        Work::Relay { .. } | Work::Pingpong { .. } => relay(spec),
        _ => consume(spec),
    }
}

/// One thread's FIFOs and the figures it reports back.
struct Share {
    fifos: Vec<(usize, OwnedFd)>,
}

fn consume(spec: &RunSpec) -> io::Result<EngineReport> {
    let mut report = EngineReport::default();
    let wanted = spec.work.inputs();
    let mut fds = Vec::with_capacity(wanted);
    for i in 0..wanted {
        match sys::open_reader_nonblocking(&input_path(&spec.dir, i)) {
            Ok(fd) => fds.push(fd),
            Err(e) => {
                report.note = Some(format!("opened {i} of {wanted} FIFOs, then: {e}"));
                break;
            }
        }
    }
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
    let per_fifo = spec.work.bytes_per_input();
    let work = spec.work.clone();
    let mut handles = Vec::with_capacity(threads);
    for share in shares {
        let work = work.clone();
        let h = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve(&work, share, per_fifo))?;
        handles.push(h);
    }
    let cpu0 = announce(opened);
    let mut sink = Sink::new(&spec.work, 0, 0);
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
    report.msgs = spec.work.msgs_in(sink.bytes);
    Ok(report)
}

/// Reads the thread's FIFOs to the end; returns its sink and syscall count.
fn serve(work: &Work, share: Share, per_fifo: u64) -> io::Result<(Sink, u64)> {
    let n = share.fifos.len();
    let mut sink = Sink::new(work, n, per_fifo * n as u64);
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
fn relay(spec: &RunSpec) -> io::Result<EngineReport> {
    let (from, to) = spec.work.relay_ends();
    let total = spec.work.bytes_per_input();
    let a = sys::open_reader_nonblocking(&spec.dir.join(from))?;
    sys::set_nonblocking(a.as_fd(), false)?;
    let pipe_a = size_relay_pipe(&spec.work, a.as_fd());
    let cpu0 = announce(1);
    let b = sys::open_writer_nonblocking(&spec.dir.join(to), Duration::from_secs(10))?;
    sys::set_nonblocking(b.as_fd(), false)?;
    let pipe_b = size_relay_pipe(&spec.work, b.as_fd());
    let mut calls = 1u64;
    sys::wait_readable(a.as_fd())?;
    let mut buf = vec![0u8; READ_BUF];
    let mut sent = 0u64;
    let first = Instant::now();
    while sent < total {
        calls += 1;
        match sys::read(a.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                calls += sys::write_all(&b, &buf[..n])?;
                sent += n as u64;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(relay_report(
        &spec.work,
        Some(first),
        sent,
        cpu0,
        calls,
        Some(pipes_note(pipe_a, pipe_b)),
    ))
}

/// Relay with one blocking thread doing `splice(2)` from FIFO a into FIFO b:
/// the pages move from pipe to pipe, no copy through user space.
pub fn run_splice(spec: &RunSpec) -> io::Result<EngineReport> {
    if !matches!(spec.work, Work::Relay { .. }) {
        return Err(io::Error::other("threads-splice runs the relay only"));
    }
    let (from, to) = spec.work.relay_ends();
    let total = spec.work.bytes_per_input();
    let a = sys::open_reader_nonblocking(&spec.dir.join(from))?;
    sys::set_nonblocking(a.as_fd(), false)?;
    let pipe_a = size_relay_pipe(&spec.work, a.as_fd());
    let cpu0 = announce(1);
    let b = sys::open_writer_nonblocking(&spec.dir.join(to), Duration::from_secs(10))?;
    sys::set_nonblocking(b.as_fd(), false)?;
    let pipe_b = size_relay_pipe(&spec.work, b.as_fd());
    let mut calls = 1u64;
    sys::wait_readable(a.as_fd())?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
    let mut moved = 0u64;
    let first = Instant::now();
    while moved < total {
        calls += 1;
        match splice(a.as_fd(), None, b.as_fd(), None, READ_BUF, flags) {
            Ok(0) => break,
            Ok(n) => moved += n as u64,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(relay_report(
        &spec.work,
        Some(first),
        moved,
        cpu0,
        calls,
        Some(pipes_note(pipe_a, pipe_b)),
    ))
}
