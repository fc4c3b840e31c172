//! `ringpipe-bench hub`: one publisher process -> FIFO -> router process
//! (a proactor and a `ringpipe::hub::Hub`, `DropOldest`) -> FIFOs -> 2 fast
//! subscriber processes, alone, with a fast third, and with a third that
//! reads at a fixed slow rate. Does the slow one slow the fast ones?
//!
//! Each 64-byte length-prefixed frame carries its sequence number and the
//! CLOCK_MONOTONIC time the publisher wrote it; each subscriber checks the
//! order and records the latency to its `read`. Reported: the fast
//! subscribers' p50 (mean of the two) and p99 (worse of the two), msgs/s
//! (first frame written to last frame read by a fast subscriber), the
//! router's CPU per message and peak RSS, and the third's dropped
//! frames. With `--tee`, the kernel fan-out (`Proactor::fan_out`) runs
//! the slow setup too, for contrast. The setups take turns within each
//! run; medians and min..max over the runs are printed.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{ArgMatches, Args as _};
use ringpipe::frame::Codec;
use ringpipe::hub::{self, Full, HubEvent, HubOptions};
use ringpipe::{Event, Events, FanOutPolicy, FifoOptions, Proactor};

use super::{Scenario, args};
use crate::frames::Frames;
use crate::harness::{Globals, Part};
use crate::own::{median_spread, tempdir};
use crate::spec::mono_ns as now_ns;

/// Frame on the wire: 4-byte header, 8-byte sequence, 8-byte time, filler.
const FRAME: usize = 64;
const PAYLOAD: usize = FRAME - 4;

/// Publisher -> router (ringpipe::hub::Hub) -> 2 fast subscribers, with
/// and without a slow third: the fast ones' p50/p99 latency, msgs/s,
/// router CPU per message and RSS.
#[derive(Debug, clap::Args)]
struct HubArgs {
    /// Frames the publisher writes per run.
    #[arg(long, default_value_t = 100_000)]
    msgs: u64,
    /// Publisher rate in frames/s, one write each (0: as fast as the pipe
    /// takes them, in writes of 64 frames; the subscribers then fall
    /// behind a 2-core machine's publisher and drop too).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Bytes each subscriber's hub queue may hold before dropping.
    #[arg(long, default_value_t = 1 << 20)]
    queue: usize,
    /// Read rate of the slow subscriber, frames/s (4 KiB reads, slept
    /// between).
    #[arg(long, default_value_t = 20_000)]
    slow_rate: u64,
    /// Also run the kernel fan-out (`Proactor::fan_out`, TEE/SPLICE,
    /// `FanOutPolicy::Wait`) with the slow subscriber, for contrast: every
    /// subscriber moves at the slow one's pace.
    #[arg(long)]
    tee: bool,
    /// (internal) Play one process of a run: router, publisher or
    /// subscriber, with its arguments.
    #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true)]
    role: Option<Vec<String>>,
}

fn err(e: impl ToString) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn arg<T: std::str::FromStr>(v: &[String], i: usize) -> std::io::Result<T> {
    v.get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(format!("role argument {i} missing or bad: {v:?}")))
}

/// The scenario.
pub struct Hub;

impl Scenario for Hub {
    fn name(&self) -> &'static str {
        "hub"
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![HubArgs::augment_args(clap::Command::new(self.name()))]
    }

    fn run(&self, _: &str, m: &ArgMatches, g: &Globals) -> std::io::Result<Option<Vec<Part>>> {
        run(&args(m)?, g.own_runs())?;
        Ok(None)
    }

    fn quick(&self, _: &Globals) -> std::io::Result<Option<Part>> {
        Ok(Some(Part::table(self.name(), quick)))
    }
}

/// Runs the scenario, or one of its processes when `--role` is given.
fn run(args: &HubArgs, (runs, warmup): (usize, usize)) -> std::io::Result<()> {
    if let Some(r) = &args.role {
        return match r.first().map(String::as_str) {
            Some("router") => router(Path::new(&r[1]), arg(r, 2)?, arg(r, 3)?, arg(r, 4)?),
            Some("publisher") => publisher(Path::new(&r[1]), arg(r, 2)?, arg(r, 3)?),
            Some("subscriber") => subscriber(Path::new(&r[1]), arg(r, 2)?),
            _ => Err(err(format!("unknown role {r:?}"))),
        };
    }
    let text = measure(args, runs, warmup)?;
    print!("{text}");
    Ok(())
}

/// The short run of `quick`: its table.
fn quick(runs: usize) -> std::io::Result<String> {
    let args = HubArgs {
        msgs: 20_000,
        rate: 50_000,
        queue: 1 << 20,
        slow_rate: 20_000,
        tee: false,
        role: None,
    };
    measure(&args, runs, 0)
}

/// Runs every setup `warmup + runs` times; returns the table.
fn measure(args: &HubArgs, runs: usize, warmup: usize) -> std::io::Result<String> {
    let mut text = String::new();
    let dir = tempdir("hub")?;
    let exe = std::env::current_exe()?;
    let _ = writeln!(
        text,
        "hub: publisher -> FIFO -> router (Hub, DropOldest, {} KiB queue per subscriber) -> 2 fast\n\
         subscribers (+ a fast third, or one reading {} frames/s); {} frames of {FRAME} B{};\n\
         {runs} runs + {warmup} warm-up, setups interleaved",
        args.queue >> 10,
        args.slow_rate,
        args.msgs,
        match args.rate {
            0 => " as fast as they go".to_string(),
            r => format!(" at {r}/s"),
        },
    );
    // (name, the third subscriber's read rate if any (0: fast), kernel
    // tee instead of the hub). A fast third tells the cost of a third
    // subscriber from the cost of a slow one.
    let slow = args.slow_rate.max(1);
    let setups = [
        ("hub 2 fast", None, false),
        ("hub 2 fast+fast", Some(0), false),
        ("hub 2 fast+slow", Some(slow), false),
        ("tee 2 fast+slow", Some(slow), true),
    ];
    let mut got: Vec<Vec<Figures>> = vec![Vec::new(); setups.len()];
    let (mut delivered, mut dropped) = (0.0, 0.0);
    for round in 0..warmup + runs {
        for (s, &(_, third, tee)) in setups.iter().enumerate() {
            if tee && !args.tee {
                continue;
            }
            let run_dir = dir.join(format!("{round}-{s}"));
            std::fs::create_dir_all(&run_dir)?;
            let f = one_run(&exe, &run_dir, args, third, tee)?;
            let _ = std::fs::remove_dir_all(&run_dir);
            delivered += f.delivered;
            dropped += f.dropped;
            if round >= warmup {
                got[s].push(f);
            }
        }
    }
    let _ = writeln!(
        text,
        "\n{:<16} {:>26} {:>24} {:>26} {:>20} {:>18} {:>14} {:>12}",
        "setup",
        "msgs/s",
        "fast p50 us",
        "fast p99 us",
        "router cpu us/msg",
        "router RSS MiB",
        "3rd dropped",
        "fast missed"
    );
    for (s, (name, ..)) in setups.iter().enumerate() {
        if got[s].is_empty() {
            continue;
        }
        let col = |f: fn(&Figures) -> f64| median_spread(got[s].iter().map(f).collect());
        let _ = writeln!(
            text,
            "{:<16} {:>26} {:>24} {:>26} {:>20} {:>18} {:>14} {:>12}",
            name,
            col(|f| f.msgs_per_s).fmt(0),
            col(|f| f.p50_us).fmt(1),
            col(|f| f.p99_us).fmt(1),
            col(|f| f.cpu_us_per_msg).fmt(3),
            col(|f| f.rss_mib).fmt(1),
            col(|f| f.third_dropped).fmt(0),
            col(|f| f.fast_missed).fmt(0),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = writeln!(
        text,
        "frames accounted for: {delivered} delivered in order + {dropped} dropped and counted by \
         the hub = every frame of every run to every subscriber"
    );
    Ok(text)
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_msg: f64,
    rss_mib: f64,
    third_dropped: f64,
    fast_missed: f64,
    /// Frames all subscribers read, in order, and those the hub dropped.
    delivered: f64,
    dropped: f64,
}

fn role(exe: &Path, args: &[String]) -> std::io::Result<std::process::Child> {
    Command::new(exe)
        .arg("hub")
        .arg("--role")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
}

fn output(mut child: std::process::Child, what: &str) -> std::io::Result<Vec<f64>> {
    let mut out = String::new();
    child
        .stdout
        .take()
        .ok_or_else(|| err("stdout"))?
        .read_to_string(&mut out)?;
    if !child.wait()?.success() {
        return Err(err(format!("hub {what} failed")));
    }
    out.split_whitespace()
        .map(|w| w.parse().map_err(err))
        .collect()
}

fn one_run(
    exe: &Path,
    dir: &Path,
    args: &HubArgs,
    third: Option<u64>,
    tee: bool,
) -> std::io::Result<Figures> {
    let subs = if third.is_some() { 3 } else { 2 };
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    nix::unistd::mkfifo(&dir.join("src"), mode).map_err(err)?;
    for i in 0..subs {
        nix::unistd::mkfifo(&dir.join(format!("sub{i}")), mode).map_err(err)?;
    }
    let s = |p: &Path| p.display().to_string();
    let router = role(
        exe,
        &[
            "router".into(),
            s(dir),
            subs.to_string(),
            args.queue.to_string(),
            u8::from(tee).to_string(),
        ],
    )?;
    let mut readers = Vec::new();
    for i in 0..subs {
        let rate = if i == 2 { third.unwrap_or(0) } else { 0 };
        readers.push(role(
            exe,
            &[
                "subscriber".into(),
                s(&dir.join(format!("sub{i}"))),
                rate.to_string(),
            ],
        )?);
    }
    let publisher = role(
        exe,
        &[
            "publisher".into(),
            s(&dir.join("src")),
            args.msgs.to_string(),
            args.rate.to_string(),
        ],
    )?;
    output(publisher, "publisher")?;
    let mut fast = Vec::new();
    let mut delivered = 0.0;
    for (i, r) in readers.into_iter().enumerate() {
        let v = output(r, "subscriber")?;
        delivered += v.first().copied().unwrap_or(0.0);
        if i < 2 {
            fast.push(v);
        }
    }
    let rv = output(router, "router")?;
    let [cpu_s, rss_kib, published, dropped] = rv[..] else {
        return Err(err(format!("router said {rv:?}")));
    };
    let mut first = f64::MAX;
    let mut last: f64 = 0.0;
    let (mut p50, mut p99, mut fast_missed): (f64, f64, f64) = (0.0, 0.0, 0.0);
    for v in &fast {
        let [frames, gaps, p50_ns, p99_ns, first_ns, last_ns] = v[..] else {
            return Err(err(format!("subscriber said {v:?}")));
        };
        // A fast subscriber that stalled long enough to overflow its
        // queue shows here, not as a failed run.
        fast_missed += args.msgs as f64 - frames;
        if frames + gaps > args.msgs as f64 {
            return Err(err(format!(
                "a subscriber got {frames} frames, {gaps} gaps"
            )));
        }
        first = first.min(first_ns);
        last = last.max(last_ns);
        p50 += p50_ns / 1e3 / fast.len() as f64;
        p99 = p99.max(p99_ns / 1e3);
    }
    // A tee publishes nothing through the hub: its subscribers count.
    if !tee && published != args.msgs as f64 {
        return Err(err(format!("router published {published}")));
    }
    // Every frame to every subscriber: read in order, or dropped and
    // counted by the hub.
    if delivered + dropped != (subs as u64 * args.msgs) as f64 {
        return Err(err(format!(
            "miscounted: {delivered} frames read + {dropped} dropped, of {subs} x {}",
            args.msgs
        )));
    }
    Ok(Figures {
        msgs_per_s: args.msgs as f64 / ((last - first) / 1e9),
        p50_us: p50,
        p99_us: p99,
        cpu_us_per_msg: cpu_s * 1e6 / args.msgs as f64,
        rss_mib: rss_kib / 1024.0,
        third_dropped: dropped - fast_missed,
        fast_missed,
        delivered,
        dropped,
    })
}

/// The router: the source, a hub, `subs` senders; runs until every
/// sender has closed after the source's end. Prints its CPU seconds, peak
/// RSS (KiB), frames published and frames dropped (over all subscribers).
fn router(dir: &Path, subs: usize, queue: usize, tee: u8) -> std::io::Result<()> {
    let mut p = Proactor::new().map_err(err)?;
    let rx_opts = match tee {
        0 => FifoOptions::new().frames(Codec::LengthPrefixed, PAYLOAD),
        _ => FifoOptions::new(),
    };
    let rx = p.open_receiver(dir.join("src"), &rx_opts).map_err(err)?;
    let mut hub = hub::Hub::new(
        rx,
        HubOptions::new(Codec::LengthPrefixed)
            .queue_bytes(queue)
            .full(Full::DropOldest),
    );
    let mut txs = Vec::new();
    for i in 0..subs {
        let tx = p
            .open_sender(dir.join(format!("sub{i}")), &FifoOptions::new())
            .map_err(err)?;
        if tee == 0 {
            hub.add(&mut p, tx).map_err(err)?;
        }
        txs.push(tx);
    }
    if tee != 0 {
        p.fan_out(rx, &txs, FanOutPolicy::Wait).map_err(err)?;
        for tx in &txs {
            p.close_after_flush(*tx).map_err(err)?;
        }
    }
    let mut events = Events::with_capacity(1024);
    let (mut closed, mut dropped) = (0, 0);
    while closed < subs {
        p.poll(&mut events, None).map_err(err)?;
        hub.handle_events(&mut p, &events);
        for e in &events {
            match e {
                Event::Closed { token, .. } if txs.iter().any(|t| t.token() == token) => {
                    closed += 1
                }
                Event::Error { error, .. } => return Err(err(error)),
                _ => {}
            }
        }
        for r in hub.reports() {
            if let HubEvent::Gone { stats, .. } = r {
                dropped += stats.dropped_frames;
            }
        }
    }
    let [hwm] = crate::sys::status_fields(std::process::id(), ["VmHWM:"]);
    let hwm = hwm.unwrap_or(0);
    println!(
        "{} {hwm} {} {dropped}",
        crate::sys::cpu_seconds(),
        hub.published_frames()
    );
    Ok(())
}

/// The publisher: `msgs` frames, stamped when written, at `rate` frames/s
/// (one write each) or as fast as the pipe takes them (64 per write).
fn publisher(path: &Path, msgs: u64, rate: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let batch = if rate == 0 { 64 } else { 1 };
    let mut buf = Vec::with_capacity(batch * FRAME);
    let start = Instant::now();
    let mut seq = 0;
    while seq < msgs {
        if let Some(ns) = (seq * 1_000_000_000).checked_div(rate) {
            let due = start + Duration::from_nanos(ns);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        buf.clear();
        let t = now_ns();
        for _ in 0..batch.min((msgs - seq) as usize) {
            buf.extend_from_slice(&(PAYLOAD as u32).to_le_bytes());
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(&t.to_le_bytes());
            buf.resize(buf.len() + PAYLOAD - 16, 0xa5);
            seq += 1;
        }
        f.write_all(&buf)?;
    }
    Ok(())
}

/// A subscriber: reads to EOF (at `rate` frames/s in 4 KiB reads, or
/// as fast as it can in 64 KiB reads), checks the order, and prints
/// frames, gaps, p50 and p99 latency (ns), the first frame's stamp and
/// the time of the last read.
fn subscriber(path: &Path, rate: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let size = if rate == 0 { 1 << 16 } else { 4096 };
    let pause =
        (rate > 0).then(|| Duration::from_nanos((size / FRAME) as u64 * 1_000_000_000 / rate));
    let mut buf = vec![0u8; size];
    let mut whole = Frames::new(FRAME);
    let mut lat: Vec<u64> = Vec::new();
    let (mut frames, mut gaps, mut next, mut first, mut last) = (0u64, 0u64, 0u64, 0u64, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let now = now_ns();
        last = now;
        whole.feed(&buf[..n], |fr| {
            if fr[..4] != (PAYLOAD as u32).to_le_bytes() {
                return Err(err("bad frame header"));
            }
            let seq = u64::from_le_bytes(fr[4..12].try_into().map_err(err)?);
            let t = u64::from_le_bytes(fr[12..20].try_into().map_err(err)?);
            if seq < next {
                return Err(err(format!("frame {seq} after {next}: out of order")));
            }
            if frames == 0 {
                first = t;
            }
            gaps += seq - next;
            next = seq + 1;
            frames += 1;
            lat.push(now.saturating_sub(t));
            Ok(())
        })?;
        if let Some(d) = pause {
            std::thread::sleep(d);
        }
    }
    lat.sort_unstable();
    let pct = |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "{frames} {gaps} {} {} {first} {last}",
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0)
    );
    Ok(())
}
