//! The epoll baseline: edge-triggered, non-blocking, read until EAGAIN into
//! one reused buffer; the relay writes straight from that buffer and waits
//! for EPOLLOUT only when the output pipe is full.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::relay::{self, Pair};
use super::{Consumed, Engine, Scope, Spec, by_flow, open_share, sharded};
use crate::sink::Sink;
use crate::spec::{EngineReport, READ_BUF};
use crate::sys;

pub const EPOLL: Engine = Engine {
    name: "epoll",
    describe: "edge-triggered epoll, non-blocking read/write until EAGAIN",
    ringpipe: false,
    splices: false,
    scope: Scope::All,
    run: |spec| by_flow(spec, relay, consume),
};

fn wait(
    epoll: &Epoll,
    events: &mut [EpollEvent],
    timeout: EpollTimeout,
    calls: &mut u64,
) -> io::Result<usize> {
    loop {
        *calls += 1;
        match epoll.wait(events, timeout) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn consume(spec: &Spec) -> io::Result<EngineReport> {
    sharded(spec, &|share, ready| consume_share(spec, share, ready))
}

/// One epoll loop reading the inputs numbered `share`.
fn consume_share(spec: &Spec, share: &[usize], ready: &dyn Fn(usize)) -> io::Result<Consumed> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let (opened, note) = open_share(spec, share, sys::open_reader_nonblocking);
    // Collected in place: an fd is closed (`None`) once its FIFO ends.
    let mut fds: Vec<Option<OwnedFd>> = opened.into_iter().map(Some).collect();
    for (i, fd) in fds.iter().flatten().enumerate() {
        let ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, i as u64);
        epoll.add(fd, ev)?;
    }
    let opened = fds.len();
    let mut sink = Sink::new(
        &spec.shape,
        opened,
        opened as u64 * spec.shape.bytes_per_input,
    );
    let mut buf = vec![0u8; READ_BUF];
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut calls = 0u64;
    let mut gone = 0;
    ready(opened);
    while !sink.done() && gone < opened {
        let n = wait(&epoll, &mut events, EpollTimeout::NONE, &mut calls)?;
        for ev in &events[..n] {
            let i = ev.data() as usize;
            let Some(fd) = fds[i].as_ref() else { continue };
            loop {
                calls += 1;
                match sys::read(fd.as_fd(), &mut buf) {
                    Ok(0) => {
                        epoll.delete(fd)?;
                        fds[i] = None;
                        gone += 1;
                        break;
                    }
                    Ok(n) => sink.on_data(i, &buf[..n]),
                    Err(Errno::EAGAIN) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(Consumed {
        sink,
        opened,
        syscalls: Some(calls),
        note,
    })
}

fn relay(spec: &Spec) -> io::Result<EngineReport> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let pair = Pair::open(spec, false, |a| {
        let ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, 0);
        Ok(epoll.add(a, ev)?)
    })?;
    let (a, b, total) = (&pair.input, &pair.output, pair.total);
    epoll.add(
        b,
        EpollEvent::new(EpollFlags::EPOLLOUT | EpollFlags::EPOLLET, 1),
    )?;
    let mut buf = vec![0u8; READ_BUF];
    let mut events = vec![EpollEvent::empty(); 8];
    let (mut start, mut end) = (0usize, 0usize);
    let (mut sent, mut calls, mut reads, mut timeouts) = (0u64, 0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    'run: while sent < total {
        // Flush what was read before reading more: one buffer, reused.
        let mut blocked = false;
        while start < end {
            calls += 1;
            match nix::unistd::write(b, &buf[start..end]) {
                Ok(n) => {
                    start += n;
                    sent += n as u64;
                }
                Err(Errno::EAGAIN) => {
                    blocked = true;
                    break;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if sent >= total {
            break;
        }
        if !blocked {
            calls += 1;
            match sys::read(a.as_fd(), &mut buf) {
                // A FIFO with no writer yet also reads 0: only EOF after
                // data ends the run.
                Ok(0) if first.is_none() => {}
                Ok(0) => break 'run,
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    reads += 1;
                    (start, end) = (0, n);
                    continue;
                }
                Err(Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Bounded: the writer's arrival on a FIFO raises no edge, only its
        // first data does; the timeout is a guard, counted in the report.
        if wait(&epoll, &mut events, EpollTimeout::from(100u8), &mut calls)? == 0 {
            timeouts += 1;
        }
    }
    let note = spec.shape.bulk_relay().then(|| {
        format!(
            "{reads} reads, {timeouts} epoll_wait timeouts of 100 ms, {}",
            pair.pipes()
        )
    });
    Ok(relay::report(
        &spec.shape,
        first,
        sent,
        pair.cpu0,
        calls,
        note,
    ))
}
