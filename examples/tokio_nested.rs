//! A proactor driven from a tokio current-thread runtime through
//! `tokio::io::unix::AsyncFd` on its ring fd, beside other tokio tasks
//! (here a ticker). Bytes read from the FIFO go to stdout; the ticker
//! prints the byte count so far on stderr every second. Exits at the
//! FIFO's EOF.
//!
//! ```text
//! cargo run --example tokio_nested -- [FIFO]   # default /tmp/ringpipe-nested
//! seq 100000 > /tmp/ringpipe-nested            # in another shell
//! ```
//!
//! The rules of nesting (see `Proactor::nest_fd`): build without
//! DEFER_TASKRUN (or `nest_fd` refuses the ring fd), poll with a zero
//! timeout when the ring fd is readable, and `submit` before awaiting
//! readiness again. The proactor is not `Send`: it lives in a
//! current-thread runtime (or a `LocalSet`).

use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use ringpipe::{Event, Events, FifoOptions, Proactor};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

mod common;

fn main() -> ExitCode {
    common::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/ringpipe-nested".into());
    // Deferred task work would never wake tokio: see `Builder::defer_taskrun`.
    let mut proactor = Proactor::builder().defer_taskrun(false).build()?;
    let input = proactor.open_receiver(&path, &FifoOptions::new().create(true))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let total = Rc::new(Cell::new(0u64));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let seen = Rc::clone(&total);
        let ticker = tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                eprintln!("tokio_nested: {} bytes so far", seen.get());
            }
        });
        let mut ring = async_fd(Nested::new(proactor)?)?;
        let mut events = Events::with_capacity(256);
        let mut out = std::io::stdout().lock();
        loop {
            let proactor = &mut ring.get_mut().proactor;
            // 1. Reap whatever finished, without waiting.
            proactor.poll(&mut events, Some(Duration::ZERO))?;
            for event in &events {
                match event {
                    Event::Data { data, .. } => {
                        out.write_all(data)?;
                        total.set(total.get() + data.len() as u64);
                    }
                    Event::Closed { token, .. } if token == input.token() => {
                        out.flush()?;
                        ticker.abort();
                        eprintln!("tokio_nested: {} bytes, EOF", total.get());
                        return Ok(());
                    }
                    Event::Error { error, .. } => return Err(error.to_string().into()),
                    _ => {}
                }
            }
            // 2. What handling queued (reads armed again) goes to the kernel.
            proactor.submit()?;
            // 3. Let tokio run other tasks until the ring fd is readable.
            // Cleared before the next poll: readiness arriving later sets
            // it again, and that poll reaps what came before.
            ring.readable_mut().await?.clear_ready();
        }
    })
}

/// A proactor with the ring fd that `nest_fd` gave it: an fd tokio may
/// wait on, open as long as the proactor lives.
struct Nested {
    proactor: Proactor,
    fd: RawFd,
}

impl Nested {
    fn new(proactor: Proactor) -> Result<Nested, ringpipe::Error> {
        let fd = proactor.nest_fd()?.as_raw_fd();
        Ok(Nested { proactor, fd })
    }
}

impl AsRawFd for Nested {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// `AsyncFd::with_interest` is deprecated for the `unsafe`
/// `register_with_interest`, whose contract (the fd stays open and the
/// same while the `AsyncFd` owns it) a `Nested` meets: its ring fd
/// lives, unchanged, as long as its proactor does. The project keeps
/// `unsafe` out of examples.
#[allow(deprecated)]
fn async_fd(nested: Nested) -> std::io::Result<AsyncFd<Nested>> {
    AsyncFd::with_interest(nested, Interest::READABLE)
}
