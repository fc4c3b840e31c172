//! `tokio::net::unix::pipe` on a current-thread runtime: one task per FIFO,
//! `readable().await` then `try_read` until WouldBlock into one buffer
//! shared by the tasks (they never hold it across an await).
//!
//! Syscalls counted: every `try_read` / `try_write` plus every time the
//! runtime parks (an `epoll_wait` that blocks). The runtime's
//! non-blocking `epoll_wait` checks between tasks are not visible, so the
//! figure is a lower bound.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;

use super::{Engine, Scope, Spec, announce, finish, open_inputs, relay};
use crate::sink::Sink;
use crate::spec::{EngineReport, READ_BUF};

pub const TOKIO: Engine = Engine {
    name: "tokio",
    describe: "tokio::net::unix::pipe on a current-thread runtime, a task per FIFO",
    ringpipe: false,
    splices: false,
    scope: Scope::All,
    run,
};

fn runtime(parks: Arc<AtomicU64>) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .on_thread_park(move || {
            parks.fetch_add(1, Ordering::Relaxed);
        })
        .build()
}

fn run(spec: &Spec) -> io::Result<EngineReport> {
    let parks = Arc::new(AtomicU64::new(0));
    let rt = runtime(Arc::clone(&parks))?;
    let local = tokio::task::LocalSet::new();
    let mut report = local.block_on(&rt, async {
        match spec.shape.relay() {
            Some((from, to, _)) => relay(spec, from, to, &parks).await,
            None => consume(spec, &parks).await,
        }
    })?;
    if let Some(calls) = report.syscalls.as_mut() {
        *calls += parks.load(Ordering::Relaxed);
    }
    Ok(report)
}

async fn consume(spec: &Spec, parks: &AtomicU64) -> io::Result<EngineReport> {
    let (rxs, note) = open_inputs(spec, |path| pipe::OpenOptions::new().open_receiver(path));
    let mut report = EngineReport {
        note,
        ..EngineReport::default()
    };
    let opened = rxs.len();
    report.opened = opened;
    let per_fifo = spec.shape.bytes_per_input;
    let sink = Rc::new(RefCell::new(Sink::new(
        &spec.shape,
        opened,
        per_fifo * opened as u64,
    )));
    let buf = Rc::new(RefCell::new(vec![0u8; READ_BUF]));
    let calls = Rc::new(Cell::new(0u64));
    let cpu0 = announce(opened);
    // Parks before "ready" are not part of the run.
    parks.store(0, Ordering::Relaxed);
    let mut tasks = Vec::with_capacity(opened);
    for (i, rx) in rxs.into_iter().enumerate() {
        let (sink, buf, calls) = (Rc::clone(&sink), Rc::clone(&buf), Rc::clone(&calls));
        tasks.push(tokio::task::spawn_local(async move {
            let mut left = per_fifo;
            while left > 0 {
                rx.readable().await?;
                loop {
                    let mut b = buf.borrow_mut();
                    calls.set(calls.get() + 1);
                    match rx.try_read(&mut b[..]) {
                        Ok(0) => return Ok::<(), io::Error>(()),
                        Ok(n) => {
                            sink.borrow_mut().on_data(i, &b[..n]);
                            left = left.saturating_sub(n as u64);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await.map_err(io::Error::other)??;
    }
    let sink = sink.borrow();
    report.syscalls = Some(calls.get());
    finish(&mut report, &sink, cpu0);
    report.msgs = spec.shape.msgs_in(sink.bytes);
    Ok(report)
}

/// Relay and ping-pong. Its pipes keep the size they have: unlike the
/// other engines', this relay's are not grown to [`relay::pipe_bytes`].
async fn relay(spec: &Spec, from: &str, to: &str, parks: &AtomicU64) -> io::Result<EngineReport> {
    let total = spec.shape.bytes_per_input;
    let rx = pipe::OpenOptions::new().open_receiver(spec.dir.join(from))?;
    let cpu0 = announce(1);
    parks.store(0, Ordering::Relaxed);
    // No reader yet gives ENXIO: retry until the load generator's sink opens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let tx = loop {
        match pipe::OpenOptions::new().open_sender(spec.dir.join(to)) {
            Ok(tx) => break tx,
            Err(e)
                if e.raw_os_error() == Some(nix::errno::Errno::ENXIO as i32)
                    && Instant::now() < deadline =>
            {
                // Setup only, before any data flows.
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) => return Err(e),
        }
    };
    let mut buf = vec![0u8; READ_BUF];
    let (mut sent, mut calls) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    'run: while sent < total {
        rx.readable().await?;
        loop {
            calls += 1;
            let n = match rx.try_read(&mut buf) {
                Ok(0) => break 'run,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            first.get_or_insert_with(Instant::now);
            let mut done = 0;
            while done < n {
                tx.writable().await?;
                calls += 1;
                match tx.try_write(&buf[done..n]) {
                    Ok(k) => done += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            sent += n as u64;
        }
    }
    Ok(relay::report(&spec.shape, first, sent, cpu0, calls, None))
}
