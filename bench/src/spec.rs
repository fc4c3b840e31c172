//! The scenario definition shared by every engine and the load generator,
//! the wire format of test messages, and the result records the child
//! processes hand back to the orchestrator.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use nix::time::{ClockId, clock_gettime};
use serde::{Deserialize, Serialize};

/// Size of a fan-in / ping-pong / idle message: `[send time ns][seq][pad]`.
pub const MSG: usize = 64;

/// Read buffer of the baseline engines, the same size as ringpipe's
/// registered buffers (64 KiB by default).
pub const READ_BUF: usize = 64 * 1024;

/// Fan-in samples the latency of one message in this many (every message
/// header is still parsed, as a real consumer would).
pub const SAMPLE_EVERY: u64 = 16;

/// The work of one run. Every engine receives the same value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Work {
    /// One FIFO, `chunk`-byte writes, `total_bytes` in all.
    Throughput { chunk: usize, total_bytes: u64 },
    /// `fifos` FIFOs, `msgs_per_fifo` 64-byte messages on each, written
    /// round-robin one message per `write(2)`.
    Fanin { fifos: usize, msgs_per_fifo: u64 },
    /// FIFO `a` -> engine -> FIFO `b`, `chunk`-byte writes into `a`.
    Relay { chunk: usize, total_bytes: u64 },
    /// 64-byte request on `req`, echoed on `resp`; `warmup` rounds first.
    Pingpong { rounds: u64, warmup: u64 },
    /// `fifos` FIFOs open and quiet for `idle_ms`, then one message each.
    Idle { fifos: usize, idle_ms: u64 },
}

impl Work {
    pub fn name(&self) -> &'static str {
        match self {
            Work::Throughput { .. } => "throughput",
            Work::Fanin { .. } => "fanin",
            Work::Relay { .. } => "relay",
            Work::Pingpong { .. } => "pingpong",
            Work::Idle { .. } => "idle",
        }
    }

    /// Input FIFOs the consumer reads (throughput, fan-in, idle).
    pub fn inputs(&self) -> usize {
        match self {
            Work::Throughput { .. } => 1,
            Work::Fanin { fifos, .. } | Work::Idle { fifos, .. } => *fifos,
            Work::Relay { .. } | Work::Pingpong { .. } => 0,
        }
    }

    /// Bytes each input FIFO carries in a run.
    pub fn bytes_per_input(&self) -> u64 {
        match self {
            Work::Throughput { total_bytes, .. } => *total_bytes,
            Work::Fanin { msgs_per_fifo, .. } => msgs_per_fifo * MSG as u64,
            Work::Idle { .. } => MSG as u64,
            Work::Relay { total_bytes, .. } => *total_bytes,
            Work::Pingpong { rounds, warmup } => (rounds + warmup) * MSG as u64,
        }
    }

    /// Whether the consumer parses 64-byte messages (and samples latency).
    pub fn message_framed(&self) -> bool {
        matches!(self, Work::Fanin { .. } | Work::Idle { .. })
    }

    /// Latency sampling rate of the consumer.
    pub fn sample_every(&self) -> u64 {
        match self {
            Work::Idle { .. } => 1,
            _ => SAMPLE_EVERY,
        }
    }

    /// Messages in `bytes`: chunks for throughput and relay, 64-byte
    /// messages otherwise.
    pub fn msgs_in(&self, bytes: u64) -> u64 {
        match self {
            Work::Throughput { chunk, .. } | Work::Relay { chunk, .. } => bytes / *chunk as u64,
            _ => bytes / MSG as u64,
        }
    }

    /// Input and output FIFO of relay and ping-pong.
    pub fn relay_ends(&self) -> (&'static str, &'static str) {
        match self {
            Work::Relay { .. } => ("a", "b"),
            _ => ("req", "resp"),
        }
    }

    /// FIFOs a run needs in its directory.
    pub fn fifo_names(&self) -> Vec<String> {
        match self {
            Work::Relay { .. } => vec!["a".into(), "b".into()],
            Work::Pingpong { .. } => vec!["req".into(), "resp".into()],
            _ => (0..self.inputs()).map(|i| format!("in-{i}")).collect(),
        }
    }
}

/// Path of input FIFO `i`.
pub fn input_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("in-{i}"))
}

/// Everything a child process needs for one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub work: Work,
    pub engine: crate::engine::Engine,
    pub dir: PathBuf,
    /// CPU to pin this process to, if asked.
    pub cpu: Option<usize>,
    /// Thread cap of the threads engine.
    pub threads_cap: usize,
}

/// What the engine process reports after a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineReport {
    /// FIFOs the engine managed to open.
    pub opened: usize,
    /// First byte in to last byte consumed (or relayed), seconds.
    pub elapsed_s: f64,
    pub bytes: u64,
    /// Messages (fan-in, idle, ping-pong) or chunks (throughput, relay).
    pub msgs: u64,
    /// User + system CPU of the whole process (all threads, io-wq and
    /// SQPOLL threads included) from "ready" to the end of the run.
    pub cpu_s: f64,
    pub syscalls: Option<u64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    /// Latest delivery, from the moment the load generator started writing
    /// (idle scenario).
    pub max_us: Option<f64>,
    pub threads: Option<u64>,
    pub note: Option<String>,
}

/// What the load generator reports after a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub elapsed_s: f64,
    pub bytes: u64,
}

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes, unlike
/// `Instant`, which cannot leave its process.
pub fn mono_ns() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds")
}

/// p50 / p99 / p99.9 in microseconds, `None` when empty.
pub fn percentiles_us(h: &Histogram<u64>) -> (Option<f64>, Option<f64>, Option<f64>) {
    if h.is_empty() {
        return (None, None, None);
    }
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    (Some(us(0.50)), Some(us(0.99)), Some(us(0.999)))
}

/// The consuming side's bookkeeping, identical for every engine: counts
/// bytes, parses the header of every framed message and samples latency.
#[derive(Debug)]
pub struct Sink {
    framed: bool,
    sample_every: u64,
    /// Byte offset into the current message, per FIFO.
    offsets: Vec<u32>,
    pub bytes: u64,
    pub expected: u64,
    /// Sampled latencies (ns); kept as a plain vector so a thread per FIFO
    /// does not carry a histogram each.
    pub samples: Vec<u64>,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
    pub checksum: u64,
}

impl Sink {
    pub fn new(work: &Work, fifos: usize, expected: u64) -> Sink {
        Sink {
            framed: work.message_framed(),
            sample_every: work.sample_every(),
            offsets: vec![0; if work.message_framed() { fifos } else { 0 }],
            bytes: 0,
            expected,
            samples: Vec::with_capacity(
                (expected / MSG as u64 / work.sample_every() + 4).min(1 << 20) as usize,
            ),
            first_ns: None,
            last_ns: 0,
            checksum: 0,
        }
    }

    pub fn done(&self) -> bool {
        self.bytes >= self.expected
    }

    /// Consumes `data` read from FIFO `fifo`.
    #[inline]
    pub fn on_data(&mut self, fifo: usize, data: &[u8]) {
        let now = mono_ns();
        self.first_ns.get_or_insert(now);
        self.last_ns = now;
        self.bytes += data.len() as u64;
        if !self.framed {
            // Touch the bytes once, cheaply, so no engine skips the data.
            if let Some(&b) = data.last() {
                self.checksum = self.checksum.wrapping_add(u64::from(b));
            }
            return;
        }
        let off = self.offsets[fifo] as usize;
        let mut pos = (MSG - off) % MSG;
        while pos + 16 <= data.len() {
            let seq = u64::from_le_bytes(data[pos + 8..pos + 16].try_into().expect("8 bytes"));
            self.checksum = self.checksum.wrapping_add(seq);
            if seq % self.sample_every == 0 {
                let sent = u64::from_le_bytes(data[pos..pos + 8].try_into().expect("8 bytes"));
                self.samples.push(now.saturating_sub(sent).max(1));
            }
            pos += MSG;
        }
        self.offsets[fifo] = ((off + data.len()) % MSG) as u32;
    }

    pub fn merge(&mut self, other: &Sink) {
        self.bytes += other.bytes;
        self.samples.extend_from_slice(&other.samples);
        self.first_ns = match (self.first_ns, other.first_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ns = self.last_ns.max(other.last_ns);
        self.checksum = self.checksum.wrapping_add(other.checksum);
    }

    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for &s in &self.samples {
            let _ = h.record(s);
        }
        h
    }

    pub fn elapsed_s(&self) -> f64 {
        self.first_ns
            .map(|f| (self.last_ns.saturating_sub(f)) as f64 / 1e9)
            .unwrap_or(0.0)
    }
}

/// Writes the header of message `seq` sent at `sent_ns` into `buf`.
pub fn stamp(buf: &mut [u8; MSG], sent_ns: u64, seq: u64) {
    buf[..8].copy_from_slice(&sent_ns.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
}
