//! The router side of one `fanout` run (`ringpipe-bench fanout-router
//! SPEC`): ringpipe forwarding raw chunks or whole frames, or a blocking
//! thread doing the same; what it reports.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use ringpipe::frame::{Codec, FrameDecoder};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Sender};
use serde::{Deserialize, Serialize};

use super::{FRAME, PAYLOAD, Spec, Variant, other, parse};
use crate::sys;

/// What the router reports after a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouterReport {
    /// First byte in to the last byte accepted by every subscriber's pipe.
    pub elapsed_s: f64,
    /// Frames routed.
    pub msgs: u64,
    /// CPU from "ready" to the end, all threads.
    pub cpu_s: f64,
    /// `io_uring_enter` calls (ringpipe) or `read`/`write` calls (threads).
    pub syscalls: u64,
    /// VmRSS when ready and VmHWM at the end, MiB.
    pub rss_ready_mib: f64,
    pub peak_rss_mib: f64,
    /// Most bytes held for one subscriber while it refused sends.
    pub peak_backlog: u64,
    pub pauses: u64,
}

/// `VmRSS` and `VmHWM` of this process, MiB.
fn rss_now_and_peak() -> (f64, f64) {
    let [rss, hwm] = sys::status_fields(std::process::id(), ["VmRSS:", "VmHWM:"])
        .map(|kib| kib.map_or(0.0, |k| k as f64 / 1024.0));
    (rss, hwm)
}

/// The router side of one run (`ringpipe-bench fanout-router SPEC`).
pub fn main(spec: &str) -> io::Result<()> {
    let spec: Spec = parse(spec)?;
    let report = match spec.variant {
        Variant::UringRaw | Variant::UringFramed => uring_router(&spec)?,
        Variant::ThreadsRaw | Variant::ThreadsFramed => threads_router(&spec)?,
    };
    println!("{}", serde_json::to_string(&report).map_err(other)?);
    Ok(())
}

fn ready() -> (f64, f64) {
    let (rss, _) = rss_now_and_peak();
    println!("READY");
    let _ = io::stdout().flush();
    (sys::cpu_seconds(), rss)
}

fn uring_router(spec: &Spec) -> io::Result<RouterReport> {
    let mut p = Proactor::new().map_err(other)?;
    let framed = spec.variant.framed();
    let codec = Codec::LengthPrefixed;
    let rx_opts = if framed {
        FifoOptions::new().frames(codec, PAYLOAD)
    } else {
        FifoOptions::new()
    };
    let rx = p.open_receiver(spec.input(), &rx_opts).map_err(other)?;
    // The router is each subscriber FIFO's only writer: frames go out in
    // runs up to a pipe's size, as the threads router's writes do.
    let tx_opts = FifoOptions::new().sole_writer(true);
    let txs: Vec<Sender> = (0..spec.subscribers)
        .map(|i| p.open_sender(spec.output(i), &tx_opts))
        .collect::<Result<_, _>>()
        .map_err(other)?;
    let mut events = Events::with_capacity(1024);
    let n = txs.len();
    let mut backlog: Vec<Vec<u8>> = vec![Vec::new(); n];
    let mut sent = vec![0u64; n];
    let mut writable = vec![false; n];
    let total = spec.total_bytes();
    let (mut first, mut frames) = (None::<Instant>, 0u64);
    let (mut paused, mut pauses, mut peak_backlog) = (false, 0u64, 0usize);
    let (cpu0, rss0) = ready();
    let enters0 = p.snapshot().enters;
    while sent.iter().any(|&s| s < total) {
        p.poll(&mut events, None).map_err(other)?;
        let mut refused = false;
        // A read's whole frames come as one run, checked once and
        // forwarded with one send_checked per subscriber; a frame split
        // across reads alone.
        for ev in events.runs(codec) {
            match ev {
                Event::Frames {
                    wire,
                    frames: k,
                    checked,
                    ..
                } => {
                    first.get_or_insert_with(Instant::now);
                    frames += k as u64;
                    // Checked by the receiver's decoder, for every subscriber.
                    for (i, &tx) in txs.iter().enumerate() {
                        if backlog[i].is_empty() {
                            match p.send_checked(tx, &checked) {
                                Ok(()) => continue,
                                Err(Error::WouldBlock { .. }) => refused = true,
                                Err(e) => return Err(other(e)),
                            }
                        }
                        backlog[i].extend_from_slice(wire);
                    }
                }
                Event::Data { data, .. } => {
                    first.get_or_insert_with(Instant::now);
                    for (i, &tx) in txs.iter().enumerate() {
                        if backlog[i].is_empty() {
                            match p.send(tx, data) {
                                Ok(()) => continue,
                                Err(Error::WouldBlock { .. }) => refused = true,
                                Err(e) => return Err(other(e)),
                            }
                        }
                        backlog[i].extend_from_slice(data);
                    }
                }
                Event::Frame { frame, .. } => {
                    first.get_or_insert_with(Instant::now);
                    frames += 1;
                    for (i, &tx) in txs.iter().enumerate() {
                        if backlog[i].is_empty() {
                            match p.send_frames(tx, codec, &[frame]) {
                                Ok(()) => continue,
                                Err(Error::WouldBlock { .. }) => refused = true,
                                Err(e) => return Err(other(e)),
                            }
                        }
                        codec.encode(frame, &mut backlog[i]).map_err(other)?;
                    }
                }
                Event::Sent { to, bytes } => {
                    if let Some(i) = txs.iter().position(|&t| t == to) {
                        sent[i] += bytes as u64;
                    }
                }
                Event::Writable(s) => {
                    if let Some(i) = txs.iter().position(|&t| t == s) {
                        writable[i] = true;
                    }
                }
                Event::Error { error, .. } => return Err(other(error)),
                _ => {}
            }
        }
        peak_backlog = peak_backlog.max(backlog.iter().map(Vec::len).max().unwrap_or(0));
        // A one-shot receiver closes at EOF: pausing or resuming it then
        // reports Closed, and there is nothing left to read anyway.
        if refused && !paused {
            match p.pause(rx) {
                Ok(()) | Err(Error::Closed { .. }) => {}
                Err(e) => return Err(other(e)),
            }
            paused = true;
            pauses += 1;
        }
        for i in 0..n {
            if writable[i] && !backlog[i].is_empty() {
                writable[i] = false;
                match p.send(txs[i], &backlog[i]) {
                    Ok(()) => backlog[i].clear(),
                    Err(Error::WouldBlock { .. }) => {}
                    Err(e) => return Err(other(e)),
                }
            }
        }
        if paused && backlog.iter().all(Vec::is_empty) {
            match p.resume(rx) {
                Ok(()) | Err(Error::Closed { .. }) => {}
                Err(e) => return Err(other(e)),
            }
            paused = false;
        }
    }
    let cpu_s = sys::cpu_seconds() - cpu0;
    let (_, peak) = rss_now_and_peak();
    if framed && frames != spec.msgs {
        return Err(other(format!("{frames} frames of {}", spec.msgs)));
    }
    Ok(RouterReport {
        elapsed_s: first.map_or(0.0, |f| f.elapsed().as_secs_f64()),
        msgs: total / FRAME as u64,
        cpu_s,
        syscalls: p.snapshot().enters - enters0,
        rss_ready_mib: rss0,
        peak_rss_mib: peak,
        peak_backlog: peak_backlog as u64,
        pauses,
    })
}

fn threads_router(spec: &Spec) -> io::Result<RouterReport> {
    let input = sys::open_reader_nonblocking(&spec.input())?;
    sys::set_nonblocking(input.as_fd(), false)?;
    let (cpu0, rss0) = ready();
    let outs = (0..spec.subscribers)
        .map(|i| {
            let fd = sys::open_writer_nonblocking(&spec.output(i), Duration::from_secs(10))?;
            sys::set_nonblocking(fd.as_fd(), false)?;
            Ok(fd)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut calls = 1u64;
    sys::wait_readable(input.as_fd())?;
    let first = Instant::now();
    let mut buf = vec![0u8; crate::spec::READ_BUF];
    let mut decoder = FrameDecoder::new(Codec::LengthPrefixed, PAYLOAD);
    let mut encoded: Vec<Vec<u8>> = vec![Vec::with_capacity(buf.len()); outs.len()];
    let total = spec.total_bytes();
    let mut got = 0u64;
    while got < total {
        calls += 1;
        let n = match sys::read(input.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(e.into()),
        };
        got += n as u64;
        if spec.variant.framed() {
            let mut bad = None;
            decoder
                .feed(&buf[..n], |frame| {
                    for out in encoded.iter_mut() {
                        if let Err(e) = Codec::LengthPrefixed.encode(frame, out) {
                            bad.get_or_insert(e);
                        }
                    }
                })
                .map_err(other)?;
            if let Some(e) = bad {
                return Err(other(e));
            }
            for (fd, out) in outs.iter().zip(encoded.iter_mut()) {
                calls += sys::write_all(fd, out)?;
                out.clear();
            }
        } else {
            for fd in &outs {
                calls += sys::write_all(fd, &buf[..n])?;
            }
        }
    }
    if got != total {
        return Err(other(format!("read {got} of {total} bytes")));
    }
    let cpu_s = sys::cpu_seconds() - cpu0;
    let (_, peak) = rss_now_and_peak();
    Ok(RouterReport {
        elapsed_s: first.elapsed().as_secs_f64(),
        msgs: spec.msgs,
        cpu_s,
        syscalls: calls,
        rss_ready_mib: rss0,
        peak_rss_mib: peak,
        peak_backlog: 0,
        pauses: 0,
    })
}
