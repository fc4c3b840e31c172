//! The load generator process (`ringpipe-bench loadgen SPEC COUNT`): a
//! separate process, the same for every engine, so the engine's CPU is
//! measured alone; and what the scenarios' load sides share. Plain
//! blocking syscalls throughout.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use super::engines::LoadSpec;
use crate::spec::{LoadReport, number_chunk};
use crate::sys;

/// Runs the load side of `spec` against `count` FIFOs (the number the
/// engine managed to open) with `generate`, the scenario's, and prints
/// its [`LoadReport`] as JSON.
pub fn run(
    spec: &LoadSpec,
    count: usize,
    generate: impl FnOnce(&Path, usize) -> io::Result<LoadReport>,
) -> io::Result<()> {
    sys::raise_nofile();
    if let Some(cpu) = spec.cpu {
        // The engine has `cpu`; the generator takes the next one.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        sys::pin_to((cpu + 1) % n);
    }
    let report = generate(&spec.dir, count)?;
    println!(
        "{}",
        serde_json::to_string(&report).map_err(io::Error::other)?
    );
    Ok(())
}

/// A scenario's configuration read back from its [`LoadSpec`].
pub fn read<T: serde::de::DeserializeOwned>(work: &serde_json::Value) -> io::Result<T> {
    T::deserialize(work).map_err(io::Error::other)
}

/// Blocking write-only open: the engine's reader is already there.
pub fn open_writer(path: &Path) -> io::Result<OwnedFd> {
    Ok(open(
        path,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Writes `total` bytes in `chunk`-byte writes, each chunk numbered.
pub fn write_chunks(fd: &OwnedFd, chunk: usize, total: u64) -> io::Result<()> {
    let mut buf = vec![0x5au8; chunk];
    let (mut left, mut number) = (total, 0u64);
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        number_chunk(&mut buf[..n], number);
        sys::write_all(fd, &buf[..n])?;
        left -= n as u64;
        number += 1;
    }
    Ok(())
}
