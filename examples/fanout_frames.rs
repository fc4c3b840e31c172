//! Fan-out of 64-byte lines from one input FIFO to N output FIFOs on one
//! proactor: messages per second and peak RSS, by mode:
//!
//! - `raw`: `send` of each read (no framing);
//! - `wire`: a byte receiver, the whole lines of each read with
//!   `send_encoded` (the partial last line waits for the next read);
//! - `framed`: a framed receiver, each read's whole lines from
//!   `Events::runs` with `send_encoded`;
//! - `framed1`: a framed receiver, `send_frames` of one for each line.
//!
//! ```text
//! cargo run --release --example fanout_frames -- [raw|wire|framed|framed1] [MESSAGES] [OUTPUTS]
//! ```
//!
//! A writer thread writes the lines in 64 KiB blocks; a reader thread per
//! output drains it and counts bytes. Outputs have 1 MiB / 256 KiB
//! watermarks; a refused message waits in that output's backlog and the
//! input pauses until every backlog is empty again, so memory stays
//! bounded by the watermarks. Prints one line: mode, messages, seconds,
//! messages/s, peak RSS (VmHWM) in MiB.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ringpipe::frame::{Codec, PIPE_BUF};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Sender};

const LINE: usize = 64;
const HIGH: usize = 1024 * 1024;
const LOW: usize = 256 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("raw", String::as_str);
    let wire = mode == "wire";
    let (framed, batch) = match mode {
        "raw" | "wire" => (false, false),
        "framed" => (true, true),
        "framed1" => (true, false),
        other => {
            eprintln!("fanout_frames: mode {other:?}: expected raw, wire, framed or framed1");
            std::process::exit(2);
        }
    };
    let messages: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4 << 20);
    let outputs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = tempfile_dir();
    let input = dir.join("in");
    let mut opts = FifoOptions::new().create(true);
    if framed {
        opts = opts.frames(Codec::Lines, PIPE_BUF - 1);
    }
    let mut p = Proactor::new().expect("proactor");
    let rx = p.open_receiver(&input, &opts).expect("input");
    let out_opts = FifoOptions::new().create(true).watermarks(HIGH, LOW);
    let txs: Vec<Sender> = (0..outputs)
        .map(|o| {
            p.open_sender(dir.join(format!("out{o}")), &out_opts)
                .expect("output")
        })
        .collect();
    let readers: Vec<_> = (0..outputs)
        .map(|o| {
            let path = dir.join(format!("out{o}"));
            std::thread::spawn(move || drain(&path))
        })
        .collect();
    let writer = {
        let path = input.clone();
        std::thread::spawn(move || write_lines(&path, messages))
    };

    let t0 = Instant::now();
    let mut events = Events::with_capacity(1024);
    // Per output: payloads (framed) or bytes (raw) it refused.
    let mut held_frames: Vec<Vec<Vec<u8>>> = vec![Vec::new(); outputs];
    let mut held_bytes: Vec<Vec<u8>> = vec![Vec::new(); outputs];
    let mut paused = false;
    // `wire`: the start of a line the last read cut.
    let mut tail: Vec<u8> = Vec::new();
    let mut input_done = false;
    let mut flushing = false;
    let mut closed = 0;
    while closed < outputs {
        p.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        let mut run: Vec<&[u8]> = Vec::new();
        let mut writable = false;
        for e in events.runs(Codec::Lines) {
            match e {
                // Whole lines of one read: forwarded as they are (not in
                // `framed1`, which sends them one by one).
                Event::Frames { from, wire, .. } if from == rx && batch => {
                    send_wire(&mut p, &txs, &mut held_bytes, wire);
                }
                Event::Frames { from, wire, .. } if from == rx => {
                    run.extend(Codec::Lines.payloads(wire));
                }
                // A line split across reads: after the runs before it.
                Event::Frame { from, frame } if from == rx && batch => {
                    let mut line = frame.to_vec();
                    line.push(b'\n');
                    send_wire(&mut p, &txs, &mut held_bytes, &line);
                }
                Event::Frame { from, frame } if from == rx => run.push(frame),
                Event::Data { from, data } if from == rx && wire => {
                    // Whole lines go out framed; a partial last line waits.
                    let mut data = data;
                    if !tail.is_empty() {
                        let Some(nl) = memchr::memchr(b'\n', data) else {
                            tail.extend_from_slice(data);
                            continue;
                        };
                        tail.extend_from_slice(&data[..=nl]);
                        let line = std::mem::take(&mut tail);
                        send_wire(&mut p, &txs, &mut held_bytes, &line);
                        data = &data[nl + 1..];
                    }
                    let whole = memchr::memrchr(b'\n', data).map_or(0, |nl| nl + 1);
                    send_wire(&mut p, &txs, &mut held_bytes, &data[..whole]);
                    tail.extend_from_slice(&data[whole..]);
                }
                Event::Data { from, data } if from == rx => {
                    for (o, &tx) in txs.iter().enumerate() {
                        if !held_bytes[o].is_empty() {
                            held_bytes[o].extend_from_slice(data);
                            continue;
                        }
                        match p.send(tx, data) {
                            Ok(()) => {}
                            Err(Error::WouldBlock { .. }) => held_bytes[o].extend_from_slice(data),
                            Err(e) => panic!("send: {e}"),
                        }
                    }
                }
                Event::Writable(_) => writable = true,
                Event::PeerGone(t) | Event::Closed { token: t, .. } if t == rx.token() => {
                    input_done = true;
                }
                Event::Closed { .. } => closed += 1,
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        send_frames_to_all(&mut p, &txs, &mut held_frames, &run, batch);
        drop(run);
        if writable {
            for (o, &tx) in txs.iter().enumerate() {
                if !held_frames[o].is_empty()
                    && send_run(&mut p, tx, &held_frames[o], batch).is_ok()
                {
                    held_frames[o].clear();
                }
                let sent = match wire || framed {
                    true => p.send_encoded(tx, Codec::Lines, &held_bytes[o]),
                    false => p.send(tx, &held_bytes[o]),
                };
                if !held_bytes[o].is_empty() && sent.is_ok() {
                    held_bytes[o].clear();
                }
            }
        }
        let backlog =
            held_frames.iter().any(|h| !h.is_empty()) || held_bytes.iter().any(|h| !h.is_empty());
        if backlog != paused && !input_done {
            paused = backlog;
            if paused {
                p.pause(rx).expect("pause");
            } else {
                p.resume(rx).expect("resume");
            }
        }
        if input_done && !backlog && !flushing {
            flushing = true;
            for &tx in &txs {
                p.close_after_flush(tx).expect("flush");
            }
        }
    }
    writer.join().expect("writer");
    for r in readers {
        assert_eq!(r.join().expect("reader"), messages * LINE, "bytes lost");
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{} messages={messages} outputs={outputs} secs={secs:.3} msgs/s={:.3}M rss_peak={:.1}MiB",
        mode,
        messages as f64 / secs / 1e6,
        peak_rss_kib() as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whole lines, as they came, to every output with `send_encoded`: into
/// its backlog if it refuses or already has one.
fn send_wire(p: &mut Proactor, txs: &[Sender], held: &mut [Vec<u8>], lines: &[u8]) {
    if lines.is_empty() {
        return;
    }
    for (o, &tx) in txs.iter().enumerate() {
        if !held[o].is_empty() {
            held[o].extend_from_slice(lines);
            continue;
        }
        match p.send_encoded(tx, Codec::Lines, lines) {
            Ok(()) => {}
            Err(Error::WouldBlock { .. }) => held[o].extend_from_slice(lines),
            Err(e) => panic!("send_encoded: {e}"),
        }
    }
}

/// A run of payloads to every output: into its backlog if it refuses or
/// already has one.
fn send_frames_to_all(
    p: &mut Proactor,
    txs: &[Sender],
    held: &mut [Vec<Vec<u8>>],
    run: &[&[u8]],
    batch: bool,
) {
    if run.is_empty() {
        return;
    }
    for (o, &tx) in txs.iter().enumerate() {
        if !held[o].is_empty() {
            held[o].extend(run.iter().map(|f| f.to_vec()));
            continue;
        }
        match send_run(p, tx, run, batch) {
            Ok(()) => {}
            Err(Error::WouldBlock { .. }) => held[o].extend(run.iter().map(|f| f.to_vec())),
            Err(e) => panic!("send_frames: {e}"),
        }
    }
}

/// Frames with one call (`send_frames`), or one call each
/// (`framed1`): all refused if the first is.
fn send_run<P: AsRef<[u8]>>(
    p: &mut Proactor,
    tx: Sender,
    run: &[P],
    batch: bool,
) -> ringpipe::Result<()> {
    if batch {
        return p.send_frames(tx, Codec::Lines, run);
    }
    let mut first = true;
    for frame in run {
        // Past the first frame nothing is refused: one call's worth.
        match p.send_frames(tx, Codec::Lines, &[frame.as_ref()]) {
            Err(Error::WouldBlock { .. }) if !first => {
                p.set_watermarks(tx, usize::MAX, LOW)?;
                p.send_frames(tx, Codec::Lines, &[frame.as_ref()])?;
            }
            r => r?,
        }
        first = false;
    }
    p.set_watermarks(tx, HIGH, LOW)
}

fn tempfile_dir() -> std::path::PathBuf {
    let base = match Path::new("/dev/shm") {
        shm if shm.is_dir() => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    };
    let dir = base.join(format!("fanout_frames-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_lines(path: &Path, messages: usize) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open input");
    let mut block = Vec::with_capacity(1024 * LINE);
    for i in 0..1024 {
        block.extend_from_slice(format!("{i:063}\n").as_bytes());
    }
    let mut left = messages;
    while left > 0 {
        let n = left.min(1024);
        f.write_all(&block[..n * LINE]).expect("write");
        left -= n;
    }
}

/// Reads until EOF (the output's close after its flush), counting bytes.
fn drain(path: &Path) -> usize {
    let mut f = std::fs::File::open(path).expect("open output");
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    loop {
        match f.read(&mut buf).expect("read") {
            0 => return got,
            n => got += n,
        }
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
