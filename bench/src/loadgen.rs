//! The load generator: a separate process, the same for every engine, so the
//! engine's CPU is measured alone. Plain blocking syscalls throughout.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::spec::{
    LoadReport, MSG, RunSpec, Sink, Work, input_path, mono_ns, new_histogram, number_chunk, stamp,
};
use crate::sys;

/// Blocking write-only open: the engine's reader is already there.
fn open_writer(path: &Path) -> io::Result<OwnedFd> {
    Ok(open(
        path,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Runs the generator side of `spec` against `count` input FIFOs (the
/// number the engine managed to open) and prints a [`LoadReport`] as JSON.
pub fn run(spec: &RunSpec, count: usize) -> io::Result<()> {
    sys::raise_nofile();
    if let Some(cpu) = spec.cpu {
        // The engine has `cpu`; the generator takes the next one.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        sys::pin_to((cpu + 1) % n);
    }
    let dir = &spec.dir;
    let mut report = LoadReport::default();
    match spec.work {
        Work::Throughput { chunk, total_bytes } => {
            let fd = open_writer(&input_path(dir, 0))?;
            let start = Instant::now();
            write_chunks(&fd, chunk, total_bytes)?;
            report.elapsed_s = start.elapsed().as_secs_f64();
            report.bytes = total_bytes;
        }
        Work::Fanin { msgs_per_fifo, .. } => {
            let fds = (0..count)
                .map(|i| open_writer(&input_path(dir, i)))
                .collect::<io::Result<Vec<_>>>()?;
            let mut msg = [0u8; MSG];
            let start = Instant::now();
            let mut seq = 0u64;
            for number in 0..msgs_per_fifo {
                for fd in &fds {
                    stamp(&mut msg, mono_ns(), seq, number);
                    sys::write_all(fd, &msg)?;
                    seq += 1;
                }
            }
            report.elapsed_s = start.elapsed().as_secs_f64();
            report.bytes = seq * MSG as u64;
        }
        Work::Idle { idle_ms, .. } => {
            let fds = (0..count)
                .map(|i| open_writer(&input_path(dir, i)))
                .collect::<io::Result<Vec<_>>>()?;
            println!("OPENED");
            io::stdout().flush()?;
            std::thread::sleep(Duration::from_millis(idle_ms));
            // Every message carries the burst's start time: the engine's
            // latest delivery is then the time to deliver them all.
            let t0 = mono_ns();
            let mut msg = [0u8; MSG];
            stamp(&mut msg, t0, 0, 0);
            for fd in &fds {
                sys::write_all(fd, &msg)?;
            }
            report.bytes = (count * MSG) as u64;
        }
        Work::Relay { chunk, total_bytes } => {
            let b = dir.join("b");
            // The sink reads FIFO b on its own thread, checking every
            // chunk's number. It opens without blocking and waits for data:
            // the engine opens b's write end only after it sees this reader.
            let work = spec.work.clone();
            let sink = std::thread::spawn(move || -> io::Result<(Sink, f64)> {
                let fd = sys::open_reader_nonblocking(&b)?;
                sys::set_nonblocking(fd.as_fd(), false)?;
                sys::wait_readable(fd.as_fd())?;
                let mut buf = vec![0u8; 1 << 20];
                let mut sink = Sink::new(&work, 1, total_bytes);
                let start = Instant::now();
                loop {
                    match sys::read(fd.as_fd(), &mut buf) {
                        Ok(0) => break,
                        Ok(n) => sink.on_data(0, &buf[..n]),
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok((sink, start.elapsed().as_secs_f64()))
            });
            let fd = open_writer(&dir.join("a"))?;
            write_chunks(&fd, chunk, total_bytes)?;
            drop(fd);
            let (sink, secs) = sink.join().expect("sink thread")?;
            if let Some(fault) = sink.fault {
                return Err(io::Error::other(format!("relay output: {fault}")));
            }
            if sink.bytes != total_bytes {
                return Err(io::Error::other(format!(
                    "relay delivered {} of {total_bytes} bytes",
                    sink.bytes
                )));
            }
            report.bytes = sink.bytes;
            report.checked = sink.checked;
            report.elapsed_s = secs;
        }
        Work::Pingpong { rounds, warmup } => {
            let req = open_writer(&dir.join("req"))?;
            // Blocks until the engine opens the response FIFO for writing.
            let resp = open(
                &dir.join("resp"),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut hist = new_histogram();
            let mut msg = [0u8; MSG];
            let mut back = [0u8; MSG];
            let start = Instant::now();
            for i in 0..warmup + rounds {
                let t = Instant::now();
                stamp(&mut msg, 0, i, i);
                sys::write_all(&req, &msg)?;
                let mut got = 0;
                while got < MSG {
                    match sys::read(resp.as_fd(), &mut back[got..]) {
                        Ok(0) => return Err(io::Error::other("engine closed the response FIFO")),
                        Ok(n) => got += n,
                        Err(e) => return Err(e.into()),
                    }
                }
                if i >= warmup {
                    let _ = hist.record(t.elapsed().as_nanos().max(1) as u64);
                }
                if back != msg {
                    return Err(io::Error::other(format!("round {i}: the echo differs")));
                }
                report.checked += 1;
            }
            report.elapsed_s = start.elapsed().as_secs_f64();
            let (p50, p99, p999) = crate::spec::percentiles_us(&hist);
            report.p50_us = p50;
            report.p99_us = p99;
            report.p999_us = p999;
        }
    }
    println!(
        "{}",
        serde_json::to_string(&report).expect("report is serialisable")
    );
    Ok(())
}

/// Writes `total` bytes in `chunk`-byte writes, each chunk numbered.
fn write_chunks(fd: &OwnedFd, chunk: usize, total: u64) -> io::Result<()> {
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
