//! The scenario definition shared by every engine and the load generator,
//! the wire format of test messages, and the result records the child
//! processes hand back to the orchestrator.
//!
//! Every unit a FIFO carries (a 64-byte message, or a throughput or relay
//! chunk) holds its number on that FIFO, 0, 1, 2...; whoever consumes the
//! stream checks each number ([`Sink`]), so a run that loses, repeats or
//! reorders a unit fails instead of printing a wrong figure.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use nix::time::{ClockId, clock_gettime};
use serde::{Deserialize, Serialize};

/// Size of a fan-in / ping-pong / idle message: `[send time ns][seq][number
/// on its FIFO][pad]`, each a little-endian u64 ([`stamp`]).
pub const MSG: usize = 64;

/// Where a chunk (throughput, relay) holds its number on its FIFO.
const CHUNK_NUMBER: Range<usize> = 0..8;
/// Where a message holds its number on its FIFO.
const MSG_NUMBER: Range<usize> = 16..24;

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
        bytes / self.unit() as u64
    }

    /// Bytes of one numbered unit: a chunk for throughput and relay, a
    /// 64-byte message otherwise.
    pub fn unit(&self) -> usize {
        match self {
            Work::Throughput { chunk, .. } | Work::Relay { chunk, .. } => *chunk,
            _ => MSG,
        }
    }

    /// Where a unit holds its number on its FIFO.
    pub fn number_at(&self) -> Range<usize> {
        match self {
            Work::Throughput { .. } | Work::Relay { .. } => CHUNK_NUMBER,
            _ => MSG_NUMBER,
        }
    }

    /// Numbered units each input FIFO carries in a run: the last chunk
    /// may be short, and counts if it can hold its number.
    pub fn units_per_input(&self) -> u64 {
        let (bytes, unit) = (self.bytes_per_input(), self.unit() as u64);
        bytes / unit + u64::from(bytes % unit >= self.number_at().end as u64)
    }

    /// Checks one run's accounting: every unit of every FIFO (`fifos` of
    /// them opened) read, each number once and in order, every byte
    /// counted. Returns the units checked; a run that fails it measured
    /// something else than the scenario, and its figures are dropped.
    pub fn account(
        &self,
        fifos: usize,
        engine: &EngineReport,
        load: &LoadReport,
    ) -> Result<u64, String> {
        if let Some(fault) = &engine.fault {
            return Err(format!("the engine read {fault}"));
        }
        let (checked, inputs) = match self {
            // The load generator reads the relay's output and the echoes.
            Work::Relay { .. } | Work::Pingpong { .. } => (load.checked, 1),
            _ => (engine.checked, fifos as u64),
        };
        let units = inputs * self.units_per_input();
        let bytes = inputs * self.bytes_per_input();
        if checked != units || engine.bytes != bytes {
            return Err(format!(
                "miscounted: {checked} of {units} units checked in order, \
                 {} of {bytes} bytes",
                engine.bytes
            ));
        }
        Ok(checked)
    }

    /// Whether the units are large enough to hold their numbers.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Work::Throughput { chunk, .. } | Work::Relay { chunk, .. }
                if *chunk < CHUNK_NUMBER.end =>
            {
                Err(format!(
                    "{}: chunks of {chunk} bytes: each chunk carries its number, \
                     at least {} bytes",
                    self.name(),
                    CHUNK_NUMBER.end
                ))
            }
            _ => Ok(()),
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
    /// Units read whose number was the next one on their FIFO ([`Sink`]).
    #[serde(default)]
    pub checked: u64,
    /// The first unit read out of place (lost, repeated, reordered, torn).
    #[serde(default)]
    pub fault: Option<String>,
}

/// What the load generator reports after a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub elapsed_s: f64,
    pub bytes: u64,
    /// Units the load generator checked: relay chunks read back in order,
    /// ping-pong echoes equal to their request.
    #[serde(default)]
    pub checked: u64,
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
/// bytes, checks the number of every unit on its FIFO (0, 1, 2...), and
/// samples the latency of messages.
#[derive(Debug)]
pub struct Sink {
    unit: usize,
    number_at: Range<usize>,
    /// Messages carry their send time: sample their latency.
    latency: bool,
    sample_every: u64,
    /// Bytes read so far, per FIFO.
    received: Vec<u64>,
    /// The start of a unit whose number a read cut in two, per FIFO (rare:
    /// reads are multiples of the unit but for a writer's short write).
    cut: BTreeMap<usize, Vec<u8>>,
    pub bytes: u64,
    pub expected: u64,
    /// Sampled latencies (ns); kept as a plain vector so a thread per FIFO
    /// does not carry a histogram each.
    pub samples: Vec<u64>,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
    pub checksum: u64,
    /// Units whose number was the next on their FIFO.
    pub checked: u64,
    /// The first unit out of place.
    pub fault: Option<String>,
}

impl Sink {
    pub fn new(work: &Work, fifos: usize, expected: u64) -> Sink {
        let latency = work.message_framed();
        Sink {
            unit: work.unit(),
            number_at: work.number_at(),
            latency,
            sample_every: work.sample_every(),
            received: vec![0; fifos],
            cut: BTreeMap::new(),
            bytes: 0,
            expected,
            samples: Vec::with_capacity(if latency {
                (expected / MSG as u64 / work.sample_every() + 4).min(1 << 20) as usize
            } else {
                0
            }),
            first_ns: None,
            last_ns: 0,
            checksum: 0,
            checked: 0,
            fault: None,
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
        // Touch the bytes once, cheaply, so no engine skips the data.
        if let Some(&b) = data.last() {
            self.checksum = self.checksum.wrapping_add(u64::from(b));
        }
        let (unit, head) = (self.unit as u64, self.number_at.end);
        let start = self.received[fifo];
        self.received[fifo] = start + data.len() as u64;
        // The head of a unit that the last read cut.
        let into = (start % unit) as usize;
        if into > 0 && into < head {
            let mut part = self.cut.remove(&fifo).unwrap_or_default();
            let take = (head - part.len()).min(data.len());
            part.extend_from_slice(&data[..take]);
            if part.len() == head {
                self.head(fifo, start / unit, &part, now);
            } else {
                self.cut.insert(fifo, part);
            }
        }
        let mut pos = if into == 0 { 0 } else { self.unit - into };
        while pos < data.len() {
            let index = (start + pos as u64) / unit;
            match data.get(pos..pos + head) {
                Some(h) => self.head(fifo, index, h, now),
                None => {
                    self.cut.insert(fifo, data[pos..].to_vec());
                }
            }
            pos += self.unit;
        }
    }

    /// Checks the head of unit `index` of FIFO `fifo`, read at `now`.
    #[inline]
    fn head(&mut self, fifo: usize, index: u64, h: &[u8], now: u64) {
        let word = |r: Range<usize>| u64::from_le_bytes(h[r].try_into().expect("8 bytes"));
        let number = word(self.number_at.clone());
        if number == index {
            self.checked += 1;
        } else if self.fault.is_none() {
            self.fault = Some(format!("FIFO {fifo}: unit {index} carries number {number}"));
        }
        if self.latency {
            let seq = word(8..16);
            self.checksum = self.checksum.wrapping_add(seq);
            if seq % self.sample_every == 0 {
                self.samples.push(now.saturating_sub(word(0..8)).max(1));
            }
        }
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
        self.checked += other.checked;
        if self.fault.is_none() {
            self.fault.clone_from(&other.fault);
        }
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

/// Writes the header of message `seq` (`number` on its FIFO) sent at
/// `sent_ns` into `buf`.
pub fn stamp(buf: &mut [u8; MSG], sent_ns: u64, seq: u64, number: u64) {
    buf[..8].copy_from_slice(&sent_ns.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    buf[MSG_NUMBER].copy_from_slice(&number.to_le_bytes());
}

/// Numbers chunk `number` of a throughput or relay stream (a last chunk
/// too short to hold it goes unnumbered).
pub fn number_chunk(chunk: &mut [u8], number: u64) {
    if let Some(at) = chunk.get_mut(CHUNK_NUMBER) {
        at.copy_from_slice(&number.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(numbers: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, &n) in numbers.iter().enumerate() {
            let mut m = [0u8; MSG];
            stamp(&mut m, 1, seq as u64, n);
            out.extend_from_slice(&m);
        }
        out
    }

    fn fanin() -> Work {
        Work::Fanin {
            fifos: 2,
            msgs_per_fifo: 4,
        }
    }

    /// Every message is checked once, however the reads cut the stream.
    #[test]
    fn every_unit_is_checked_in_any_cut() {
        let stream = messages(&[0, 1, 2, 3]);
        for cut in [1, 5, 16, 17, 23, 24, 63, 64, 65, 100, 256] {
            let mut sink = Sink::new(&fanin(), 2, 2 * 256);
            for piece in stream.chunks(cut) {
                sink.on_data(1, piece);
            }
            assert_eq!(
                (sink.checked, sink.fault.as_deref()),
                (4, None),
                "cut {cut}"
            );
        }
        let mut sink = Sink::new(&fanin(), 2, 2 * 256);
        for piece in stream.chunks(7).chain(stream.chunks(9)) {
            // Two FIFOs interleaved, each cut its own way.
            sink.on_data(usize::from(piece.len() == 9), piece);
        }
        assert_eq!((sink.checked, sink.fault), (8, None));
    }

    #[test]
    fn a_lost_repeated_or_torn_unit_is_a_fault() {
        for numbers in [&[0, 2, 3][..], &[0, 1, 1, 2], &[1, 0]] {
            let mut sink = Sink::new(&fanin(), 1, 256);
            sink.on_data(0, &messages(numbers));
            assert!(sink.fault.is_some(), "{numbers:?}");
        }
        let mut torn = messages(&[0, 1, 2]);
        torn.remove(100);
        let mut sink = Sink::new(&fanin(), 1, 256);
        sink.on_data(0, &torn);
        assert_eq!(sink.checked, 2);
        assert!(sink.fault.is_some());
    }

    #[test]
    fn chunks_carry_their_numbers() {
        let work = Work::Throughput {
            chunk: 100,
            total_bytes: 250,
        };
        assert_eq!(work.units_per_input(), 3);
        let mut stream = vec![0u8; 250];
        for (k, chunk) in stream.chunks_mut(100).enumerate() {
            number_chunk(chunk, k as u64);
        }
        let mut sink = Sink::new(&work, 1, 250);
        for piece in stream.chunks(3) {
            sink.on_data(0, piece);
        }
        assert_eq!((sink.checked, sink.fault), (3, None));
        let short = Work::Throughput {
            chunk: 4,
            total_bytes: 8,
        };
        assert!(short.check().is_err());
    }
}
