//! A proactor inside a plain epoll loop that owns other fds too: the loop
//! sleeps in `epoll_wait` on the proactor's ring fd and on stdin. Bytes
//! read from the FIFO go to stdout; each line typed on stdin prints the
//! byte count so far on stderr. Exits at the FIFO's EOF.
//!
//! ```text
//! cargo run --example epoll_nested -- [FIFO]   # default /tmp/ringpipe-nested
//! seq 100000 > /tmp/ringpipe-nested            # in another shell
//! ```
//!
//! The rules of nesting (see `Proactor::nest_fd`): build without
//! DEFER_TASKRUN (or `nest_fd` refuses the ring fd), poll with a zero
//! timeout when the ring fd is readable, and `submit` before going back
//! to sleep.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use ringpipe::{Event, Events, FifoOptions, Proactor};

mod common;

const RING: u64 = 1;
const STDIN: u64 = 2;

fn main() -> ExitCode {
    common::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/ringpipe-nested".into());
    // Deferred task work would never wake epoll: see `Builder::defer_taskrun`.
    let mut proactor = Proactor::builder().defer_taskrun(false).build()?;
    let input = proactor.open_receiver(&path, &FifoOptions::new().create(true))?;

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(
        proactor.nest_fd()?,
        EpollEvent::new(EpollFlags::EPOLLIN, RING),
    )?;
    let stdin = std::io::stdin();
    // stdin may be /dev/null or a file, which epoll refuses: then only the ring.
    let watch_stdin = epoll
        .add(stdin.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, STDIN))
        .is_ok();

    let (mut events, mut ready) = (Events::with_capacity(256), [EpollEvent::empty(); 2]);
    let mut out = std::io::stdout().lock();
    let mut total = 0u64;
    loop {
        // 1. Reap whatever finished, without waiting.
        proactor.poll(&mut events, Some(Duration::ZERO))?;
        for event in &events {
            match event {
                Event::Data { data, .. } => {
                    out.write_all(data)?;
                    total += data.len() as u64;
                }
                Event::Closed { token, .. } if token == input.token() => {
                    out.flush()?;
                    eprintln!("epoll_nested: {total} bytes, EOF");
                    return Ok(());
                }
                Event::Error { error, .. } => return Err(error.to_string().into()),
                _ => {}
            }
        }
        // 2. What handling queued (reads armed again) goes to the kernel.
        proactor.submit()?;
        // 3. Sleep in this loop's own wait.
        let n = match epoll.wait(&mut ready, EpollTimeout::NONE) {
            Ok(n) => n,
            // The ring's task work interrupts the wait, then posts its
            // completion: the ring fd is readable on the next turn.
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        for r in &ready[..n] {
            if watch_stdin && r.data() == STDIN {
                let mut line = String::new();
                if stdin.read_line(&mut line)? == 0 {
                    epoll.delete(stdin.as_fd())?; // stdin closed: stop watching it
                }
                eprintln!("epoll_nested: {total} bytes so far");
            }
        }
    }
}
