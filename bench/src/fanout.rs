//! The `fanout` scenario: one publisher process writes 64-byte frames into
//! one FIFO; the router under test reads them and forwards every one to
//! [`SUBSCRIBERS`] subscriber FIFOs, each read by its own subscriber
//! process, which checks exact, in-order delivery and counts.
//!
//! The publisher always writes the same bytes: length-prefixed frames
//! ([`Codec::LengthPrefixed`], a 4-byte header and a 60-byte payload
//! holding the sequence number), [`BATCH`] frames per `write(2)`. So every
//! variant moves the same bytes and the subscribers check them the same
//! way; what differs is how the router handles them:
//!
//! - `uring raw`: a ringpipe receiver of byte chunks, each chunk passed to
//!   [`Proactor::send`] of every subscriber;
//! - `uring framed`: a framed receiver ([`FifoOptions::frames`]), each frame
//!   passed to [`Proactor::send_frame`] of every subscriber;
//! - `threads raw` / `threads framed`: the same with one blocking thread,
//!   `read(2)` then one `write(2)` per subscriber (framed: the frames of a
//!   read decoded with [`FrameDecoder`] and re-encoded into one buffer per
//!   subscriber).
//!
//! Every process is its own (`ringpipe-bench fanout-router|fanout-pub|
//! fanout-sub`, internal commands), so the router's CPU and peak RSS are
//! its own. Backpressure: a ringpipe subscriber that refuses a send
//! ([`Error::WouldBlock`]) gets its bytes in a backlog, the receiver is
//! paused until every backlog is flushed, so memory stays bounded by the
//! watermarks.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::ProgressBar;
use ringpipe::frame::{Codec, FrameDecoder};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Sender};
use serde::{Deserialize, Serialize};

use crate::report::{self, Record};
use crate::sys;

/// Subscriber FIFOs every frame goes to.
pub const SUBSCRIBERS: usize = 3;
/// Bytes of one frame on the wire, header included.
pub const FRAME: usize = 64;
/// Payload of one frame.
pub const PAYLOAD: usize = FRAME - 4;
/// Frames per publisher `write(2)`: 4 KiB, `PIPE_BUF`, one atomic write.
pub const BATCH: usize = 64;

/// A router and how it handles the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// ringpipe: byte chunks, `send` to each subscriber.
    UringRaw,
    /// ringpipe: a framed receiver, `send_frame` per frame and subscriber.
    UringFramed,
    /// One blocking thread: `read`, then `write` to each subscriber.
    ThreadsRaw,
    /// One blocking thread: `read`, decode, re-encode per subscriber, write.
    ThreadsFramed,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::UringRaw,
        Variant::UringFramed,
        Variant::ThreadsRaw,
        Variant::ThreadsFramed,
    ];

    /// The engine name in the records (`uring` or `threads`).
    pub fn engine(self) -> &'static str {
        match self {
            Variant::UringRaw | Variant::UringFramed => "uring",
            Variant::ThreadsRaw | Variant::ThreadsFramed => "threads",
        }
    }

    /// The mode in the records (`raw` or `framed`).
    pub fn mode(self) -> &'static str {
        match self {
            Variant::UringRaw | Variant::ThreadsRaw => "raw",
            Variant::UringFramed | Variant::ThreadsFramed => "framed",
        }
    }

    fn framed(self) -> bool {
        self.mode() == "framed"
    }

    /// What the mode is, in a line, for the legend under the tables.
    pub fn describe(self) -> &'static str {
        if self.framed() {
            "(fanout) the router decodes the frames and forwards each whole: send_frame \
             per frame and subscriber (uring), or re-encoded into one write per read (threads)"
        } else {
            "(fanout) the router forwards the bytes of each read as they are: send (uring) \
             or write (threads) to every subscriber"
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.engine(), self.mode())
    }
}

/// What every process of one run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub variant: Variant,
    pub dir: PathBuf,
    /// Frames the publisher writes.
    pub msgs: u64,
    pub subscribers: usize,
}

impl Spec {
    fn input(&self) -> PathBuf {
        self.dir.join("pub")
    }

    fn output(&self, i: usize) -> PathBuf {
        self.dir.join(format!("sub-{i}"))
    }

    fn total_bytes(&self) -> u64 {
        self.msgs * FRAME as u64
    }
}

/// How hard to run.
pub struct Plan {
    pub variants: Vec<Variant>,
    pub msgs: u64,
    pub runs: usize,
    pub warmup: usize,
    pub timeout: Duration,
    pub exe: PathBuf,
    /// Another `ringpipe-bench` (built on another version of the library)
    /// whose router also runs the ringpipe variants, taking turns with
    /// this one's: modes `raw-base` and `framed-base`.
    pub baseline: Option<PathBuf>,
}

/// One router of the run: a variant, and the binary whose router it is
/// (`None`: this one).
type Entry<'a> = (Variant, Option<&'a Path>);

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

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> io::Result<T> {
    serde_json::from_str(s).map_err(io::Error::other)
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// `VmRSS` and `VmHWM` of this process, MiB.
fn rss_now_and_peak() -> (f64, f64) {
    let [rss, hwm] = sys::status_fields(std::process::id(), ["VmRSS:", "VmHWM:"])
        .map(|kib| kib.map_or(0.0, |k| k as f64 / 1024.0));
    (rss, hwm)
}

/// The router side of one run (`ringpipe-bench fanout-router SPEC`).
pub fn router_main(spec: &str) -> io::Result<()> {
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
    let txs: Vec<Sender> = (0..spec.subscribers)
        .map(|i| p.open_sender(spec.output(i), &FifoOptions::new()))
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
    let enters0 = p.enter_count();
    while sent.iter().any(|&s| s < total) {
        p.poll(&mut events, None).map_err(other)?;
        let mut refused = false;
        for ev in &events {
            match ev {
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
                            match p.send_frame(tx, codec, frame) {
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
        syscalls: p.enter_count() - enters0,
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

/// Writes frame `seq` into `out` (64 bytes).
fn put_frame(out: &mut [u8], seq: u64) {
    out[..4].copy_from_slice(&(PAYLOAD as u32).to_le_bytes());
    out[4..12].copy_from_slice(&seq.to_le_bytes());
    out[12..].fill(seq as u8);
}

/// The publisher (`ringpipe-bench fanout-pub SPEC`): every frame, in
/// order, [`BATCH`] per write.
pub fn publisher_main(spec: &str) -> io::Result<()> {
    let spec: Spec = parse(spec)?;
    // Blocking open: the router's read end is already open.
    let fd = nix::fcntl::open(
        &spec.input(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut block = vec![0u8; BATCH * FRAME];
    let mut seq = 0u64;
    while seq < spec.msgs {
        let k = (spec.msgs - seq).min(BATCH as u64) as usize;
        for (j, frame) in block.chunks_exact_mut(FRAME).take(k).enumerate() {
            put_frame(frame, seq + j as u64);
        }
        sys::write_all(&fd, &block[..k * FRAME])?;
        seq += k as u64;
    }
    Ok(())
}

/// Checks a subscriber's stream: whole frames, sequence numbers 0, 1, 2...
#[derive(Debug, Default)]
pub struct Checker {
    partial: Vec<u8>,
    pub next: u64,
}

impl Checker {
    /// Feeds the bytes read next.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        if !self.partial.is_empty() {
            let take = (FRAME - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < FRAME {
                return Ok(());
            }
            let frame = std::mem::take(&mut self.partial);
            self.check(&frame)?;
        }
        let mut frames = data.chunks_exact(FRAME);
        for frame in &mut frames {
            self.check(frame)?;
        }
        self.partial.extend_from_slice(frames.remainder());
        Ok(())
    }

    fn check(&mut self, frame: &[u8]) -> Result<(), String> {
        let mut want = [0u8; FRAME];
        put_frame(&mut want, self.next);
        if frame != want {
            return Err(format!(
                "frame {} differs: got {:02x?}",
                self.next,
                &frame[..16]
            ));
        }
        self.next += 1;
        Ok(())
    }
}

/// A subscriber (`ringpipe-bench fanout-sub SPEC I`): reads FIFO `sub-I`
/// until every frame is in, checking each.
pub fn subscriber_main(spec: &str, index: usize) -> io::Result<()> {
    let spec: Spec = parse(spec)?;
    // Open without waiting for a writer, then wait for the first data: a
    // blocking read on a FIFO that never had a writer returns EOF at once.
    let fd = sys::open_reader_nonblocking(&spec.output(index))?;
    sys::set_nonblocking(fd.as_fd(), false)?;
    sys::wait_readable(fd.as_fd())?;
    let mut buf = vec![0u8; 1 << 16];
    let mut check = Checker::default();
    let total = spec.total_bytes();
    let mut got = 0u64;
    while got < total {
        match sys::read(fd.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got += n as u64;
                check.feed(&buf[..n]).map_err(other)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if got != total || check.next != spec.msgs {
        return Err(other(format!(
            "subscriber {index}: {} of {} frames ({got} bytes)",
            check.next, spec.msgs
        )));
    }
    // The frames this subscriber checked, for the run's count.
    println!("{}", check.next);
    Ok(())
}

/// Runs every variant `warmup + runs` times, taking turns run by run (the
/// first to go rotates), and returns one record per variant and the notes.
pub fn measure(
    plan: &Plan,
    dir: &Path,
    pb: &ProgressBar,
) -> io::Result<(Vec<Record>, Vec<String>)> {
    std::fs::create_dir_all(dir)?;
    let mut entries: Vec<Entry<'_>> = plan.variants.iter().map(|&v| (v, None)).collect();
    if let Some(base) = &plan.baseline {
        for &v in &plan.variants {
            if v.engine() == "uring" {
                entries.push((v, Some(base.as_path())));
            }
        }
    }
    let k = entries.len();
    let mut per_variant: Vec<Vec<BTreeMap<String, f64>>> = vec![Vec::new(); k];
    let mut checked: Vec<Option<u64>> = vec![None; k];
    let mut notes: Vec<String> = Vec::new();
    for round in 0..plan.warmup + plan.runs {
        for j in 0..k {
            let i = (round + j) % k;
            let (variant, router) = entries[i];
            let name = mode_name(variant, router.is_some());
            pb.set_message(format!("fanout {} {name}", variant.engine()));
            let spec = Spec {
                variant,
                dir: fresh_fifos(dir, round * k + j)?,
                msgs: plan.msgs,
                subscribers: SUBSCRIBERS,
            };
            let result = run_once(plan, &spec, router.unwrap_or(&plan.exe));
            let _ = std::fs::remove_dir_all(&spec.dir);
            match result {
                Ok((r, n)) if round >= plan.warmup => {
                    per_variant[i].push(metrics(&r));
                    checked[i] = Some(n);
                }
                Ok(_) => {}
                Err(e) => {
                    let n = format!("fanout {} {name}: run failed: {e}", variant.engine());
                    pb.println(&n);
                    if !notes.contains(&n) {
                        notes.push(n);
                    }
                }
            }
            pb.inc(1);
        }
    }
    let mut records = Vec::new();
    for ((&(variant, router), runs), checked) in entries.iter().zip(&per_variant).zip(&checked) {
        if runs.is_empty() {
            continue;
        }
        let mut params = BTreeMap::new();
        params.insert("mode".into(), mode_name(variant, router.is_some()).into());
        if let Some(path) = router {
            params.insert("router_exe".into(), path.display().to_string().into());
        }
        params.insert("subscribers".into(), SUBSCRIBERS.into());
        params.insert("msg_bytes".into(), FRAME.into());
        params.insert("msgs".into(), plan.msgs.into());
        params.insert("write_bytes".into(), (BATCH * FRAME).into());
        params.insert("high_watermark".into(), (64 * 1024).into());
        params.insert("runs".into(), runs.len().into());
        // Frames the subscribers checked in a run, each in order (every
        // run the same, or it failed).
        if let Some(n) = checked {
            params.insert("frames_checked".into(), (*n).into());
        }
        records.push(Record {
            scenario: "fanout".into(),
            engine: variant.engine().into(),
            params,
            metrics: report::medians(runs),
        });
    }
    Ok((records, notes))
}

/// New FIFOs for run `n`, in a directory of their own. A run never reuses
/// the FIFOs of the one before: an io_uring instance releases its
/// registered files after its process has exited, so the last ringpipe
/// router's ends of the FIFOs may still be open, and close, while the next
/// run's processes open theirs (a subscriber waiting for its first data
/// then sees its writer leave, and reads EOF).
fn fresh_fifos(dir: &Path, n: usize) -> io::Result<PathBuf> {
    let run = dir.join(format!("run-{n}"));
    std::fs::create_dir_all(&run)?;
    let names =
        std::iter::once("pub".to_string()).chain((0..SUBSCRIBERS).map(|i| format!("sub-{i}")));
    for name in names {
        match nix::unistd::mkfifo(
            &run.join(name),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        ) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(run)
}

/// The mode in the records: `raw` or `framed`, `-base` added for the
/// baseline binary's router.
fn mode_name(variant: Variant, baseline: bool) -> String {
    format!("{}{}", variant.mode(), if baseline { "-base" } else { "" })
}

fn metrics(r: &RouterReport) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if r.elapsed_s > 0.0 {
        m.insert("msgs_per_s".into(), r.msgs as f64 / r.elapsed_s);
    }
    if r.msgs > 0 {
        m.insert(
            "cpu_s_per_million_msgs".into(),
            r.cpu_s / r.msgs as f64 * 1e6,
        );
        m.insert(
            "syscalls_per_1k_msgs".into(),
            r.syscalls as f64 / r.msgs as f64 * 1e3,
        );
    }
    m.insert("peak_rss_mib".into(), r.peak_rss_mib);
    m.insert(
        "rss_growth_mib".into(),
        (r.peak_rss_mib - r.rss_ready_mib).max(0.0),
    );
    m.insert("peak_backlog_kib".into(), r.peak_backlog as f64 / 1024.0);
    m
}

/// A child of one run, killed when dropped if still running.
struct Proc {
    child: Child,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

impl Proc {
    fn spawn(exe: &Path, args: &[&str]) -> Result<Proc, String> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", args[0]))?;
        let err = child.stderr.take().map(drain);
        Ok(Proc {
            child,
            out: None,
            err,
        })
    }

    /// `None` while it runs; once it has exited, its stdout on success,
    /// else its status and stderr.
    fn poll(&mut self, what: &str) -> Option<Result<String, String>> {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return None,
            Err(e) => return Some(Err(format!("{what}: {e}"))),
        };
        let join = |h: Option<std::thread::JoinHandle<String>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        let (out, err) = (join(self.out.take()), join(self.err.take()));
        Some(if status.success() {
            Ok(out)
        } else {
            Err(format!("{what} {status}: {}", err.trim()))
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run: the router (of `router_exe`), then the subscribers, then the
/// publisher (both of this binary). Returns the router's report and the
/// frames the subscribers checked, which must be every frame for each.
fn run_once(plan: &Plan, spec: &Spec, router_exe: &Path) -> Result<(RouterReport, u64), String> {
    let deadline = Instant::now() + plan.timeout;
    let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let mut router = Proc::spawn(router_exe, &["fanout-router", &json])?;
    let mut stdout = BufReader::new(router.child.stdout.take().ok_or("router stdout")?);
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    if line.trim() != "READY" {
        let _ = router.child.wait();
        return Err(match router.poll("router") {
            Some(Err(e)) => e,
            _ => "router not ready".into(),
        });
    }
    router.out = Some(drain(stdout));
    let mut procs = vec![("router".to_string(), router)];
    for i in 0..spec.subscribers {
        let mut sub = Proc::spawn(&plan.exe, &["fanout-sub", &json, &i.to_string()])?;
        sub.out = sub.child.stdout.take().map(drain);
        procs.push((format!("subscriber {i}"), sub));
    }
    procs.push((
        "publisher".into(),
        Proc::spawn(&plan.exe, &["fanout-pub", &json])?,
    ));
    // Every process is watched at once: the first failure ends the run
    // (a stalled pipeline would otherwise wait for the deadline), after a
    // moment for the others to report theirs too (the publisher's EPIPE
    // says less than the router's error behind it).
    let mut results: Vec<Option<Result<String, String>>> = vec![None; procs.len()];
    let mut failed_at: Option<Instant> = None;
    loop {
        for ((what, proc), result) in procs.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                *result = proc.poll(what);
            }
        }
        let failures: Vec<&str> = results
            .iter()
            .filter_map(|r| r.as_ref()?.as_ref().err().map(String::as_str))
            .collect();
        if !failures.is_empty() {
            let since = *failed_at.get_or_insert_with(Instant::now);
            if results.iter().all(Option::is_some) || since.elapsed() > Duration::from_millis(200) {
                return Err(failures.join("; "));
            }
        } else if results.iter().all(Option::is_some) {
            break;
        }
        if Instant::now() > deadline {
            let running: Vec<&str> = procs
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_none())
                .map(|((what, _), _)| what.as_str())
                .collect();
            return Err(format!(
                "still running at the deadline: {}",
                running.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut checked = 0u64;
    for result in &results[1..=spec.subscribers] {
        let out = result.as_ref().and_then(|r| r.as_ref().ok());
        checked += out
            .and_then(|o| o.trim().parse::<u64>().ok())
            .ok_or("a subscriber reported no count")?;
    }
    if checked != spec.subscribers as u64 * spec.msgs {
        return Err(format!(
            "miscounted: the subscribers checked {checked} frames of {} x {}",
            spec.subscribers, spec.msgs
        ));
    }
    let out = match results.swap_remove(0) {
        Some(Ok(out)) => out,
        _ => return Err("router: no result".into()),
    };
    let report = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("no router report: {out}"))?;
    Ok((report, checked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(range: std::ops::Range<u64>) -> Vec<u8> {
        let mut v = vec![0u8; (range.end - range.start) as usize * FRAME];
        for (k, f) in v.chunks_exact_mut(FRAME).enumerate() {
            put_frame(f, range.start + k as u64);
        }
        v
    }

    /// The checker takes frames cut anywhere, and the publisher's frames
    /// are what the framed codec decodes.
    #[test]
    fn checker_takes_any_cut_and_codec_agrees() {
        let wire = frames(0..10);
        for cut in [1, 7, 63, 64, 65, 300] {
            let mut c = Checker::default();
            for piece in wire.chunks(cut) {
                c.feed(piece).expect("in order");
            }
            assert_eq!(c.next, 10);
        }
        let mut d = FrameDecoder::new(Codec::LengthPrefixed, PAYLOAD);
        let mut n = 0;
        d.feed(&wire, |p| {
            assert_eq!(p.len(), PAYLOAD);
            n += 1;
        })
        .expect("decodes");
        assert_eq!(n, 10);
    }

    #[test]
    fn checker_refuses_gaps_and_repeats() {
        let mut c = Checker::default();
        c.feed(&frames(0..3)).expect("in order");
        assert!(c.feed(&frames(4..5)).is_err());
        let mut c = Checker::default();
        c.feed(&frames(0..3)).expect("in order");
        assert!(c.feed(&frames(2..3)).is_err());
    }
}
