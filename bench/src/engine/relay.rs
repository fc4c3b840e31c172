//! What the engines' relays share: the pair of FIFOs opened in one order
//! (the input at once, `READY`, then the output once the load generator
//! reads it), the size of their pipes, and the report.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{Spec, announce};
use crate::spec::{EngineReport, Shape};
use crate::sys;

/// The pipe size of both FIFOs of a bulk relay, the same for every
/// engine: 1 MiB (what ringpipe's relay grows its FIFOs to by default), or
/// `RINGPIPE_BENCH_PIPE_KIB=N` from the environment (`0`: the kernel's
/// default size). `None` for other work (ping-pong keeps its pipes).
pub fn pipe_bytes(shape: &Shape) -> Option<usize> {
    if !shape.bulk_relay() {
        return None;
    }
    match std::env::var("RINGPIPE_BENCH_PIPE_KIB") {
        Ok(v) => v.parse::<usize>().ok().filter(|&k| k > 0).map(|k| k * 1024),
        Err(_) => Some(1 << 20),
    }
}

/// Sizes one FIFO of a relay as [`pipe_bytes`] says (`F_SETPIPE_SZ`,
/// whatever the kernel grants); returns the size it has, for the note.
fn size_pipe(shape: &Shape, fd: BorrowedFd<'_>) -> Option<usize> {
    use nix::fcntl::{FcntlArg, fcntl};
    if let Some(bytes) = pipe_bytes(shape) {
        let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(bytes as i32));
    }
    fcntl(fd, FcntlArg::F_GETPIPE_SZ).ok().map(|n| n as usize)
}

/// The two FIFOs of a relay or ping-pong run, as the engines on plain fds
/// open them.
pub struct Pair {
    pub input: OwnedFd,
    pub output: OwnedFd,
    /// Bytes the run passes on.
    pub total: u64,
    /// The CPU clock at `READY`: the run's CPU counts from here.
    pub cpu0: f64,
    /// The pipes' sizes once sized.
    sizes: [Option<usize>; 2],
}

impl Pair {
    /// Opens the input without waiting for a writer and `watch`es it,
    /// says `READY`, then opens the output once its reader (the load
    /// generator) is there; both sized as [`pipe_bytes`] says, and
    /// blocking when `blocking`.
    pub fn open(
        spec: &Spec,
        blocking: bool,
        watch: impl FnOnce(&OwnedFd) -> io::Result<()>,
    ) -> io::Result<Pair> {
        let Some((from, to, _)) = spec.shape.relay() else {
            return Err(io::Error::other("not a relay"));
        };
        let input = sys::open_reader_nonblocking(&spec.dir.join(from))?;
        if blocking {
            sys::set_nonblocking(input.as_fd(), false)?;
        }
        let size_in = size_pipe(&spec.shape, input.as_fd());
        watch(&input)?;
        let cpu0 = announce(1);
        let output = sys::open_writer_nonblocking(&spec.dir.join(to), Duration::from_secs(10))?;
        if blocking {
            sys::set_nonblocking(output.as_fd(), false)?;
        }
        let size_out = size_pipe(&spec.shape, output.as_fd());
        Ok(Pair {
            input,
            output,
            total: spec.shape.bytes_per_input,
            cpu0,
            sizes: [size_in, size_out],
        })
    }

    /// The sizes of the two pipes, for a report's note.
    pub fn pipes(&self) -> String {
        let kib = |n: Option<usize>| n.map_or("?".into(), |n| (n / 1024).to_string());
        format!("pipes {}/{} KiB", kib(self.sizes[0]), kib(self.sizes[1]))
    }
}

/// The report of a relay or ping-pong run, the same for every engine:
/// `moved` bytes passed on from `first` (the first byte in) until now,
/// CPU from `cpu0` (the clock [`announce`] returned), and the engine's own
/// syscall count.
pub fn report(
    shape: &Shape,
    first: Option<Instant>,
    moved: u64,
    cpu0: f64,
    syscalls: u64,
    note: Option<String>,
) -> EngineReport {
    EngineReport {
        opened: 1,
        elapsed_s: first.map_or(0.0, |f| f.elapsed().as_secs_f64()),
        bytes: moved,
        msgs: shape.msgs_in(moved),
        cpu_s: sys::cpu_seconds() - cpu0,
        syscalls: Some(syscalls),
        note,
        ..EngineReport::default()
    }
}
