//! The definition every engine run shares: what the engine does
//! ([`Shape`]), the wire format of the units its FIFOs carry, and the
//! reports the child processes hand back to the orchestrator.
//!
//! Every unit a FIFO carries (a 64-byte message, or a throughput or relay
//! chunk) holds its number on that FIFO, 0, 1, 2...; whoever consumes the
//! stream checks each number ([`Sink`](crate::sink::Sink)), so a run that
//! loses, repeats or reorders a unit fails instead of printing a wrong
//! figure.

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
pub const MSG_NUMBER: Range<usize> = 16..24;

/// Read buffer of the baseline engines, the same size as ringpipe's
/// registered buffers (64 KiB by default).
pub const READ_BUF: usize = 64 * 1024;

/// Fan-in samples the latency of one message in this many (every message
/// header is still parsed, as a real consumer would).
pub const SAMPLE_EVERY: u64 = 16;

/// What an engine does in one run. Every engine receives the same value;
/// the scenario that made it knows what it stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shape {
    pub flow: Flow,
    /// Bytes each input FIFO carries in a run (a relay's one input).
    pub bytes_per_input: u64,
    /// The numbered unit the FIFOs carry.
    pub unit: Unit,
}

/// Where the bytes of a run go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Flow {
    /// Read `inputs` FIFOs (`in-0`, `in-1`...) to their end, checking
    /// every unit.
    Consume {
        inputs: usize,
        /// Consumers the inputs are shared out to, each on its own thread
        /// (input `i` to consumer `i % shards`); 1: the engine's one.
        #[serde(default = "one")]
        shards: usize,
    },
    /// Pass every byte read from FIFO `from` on to FIFO `to`. `bulk`: a
    /// relay of chunks, its pipes sized for it and its report saying how
    /// it went; else the echo of requests, left as they are.
    Relay {
        from: String,
        to: String,
        bulk: bool,
    },
}

/// A numbered unit on a FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// A chunk of this many bytes, its number in its first 8
    /// ([`number_chunk`]).
    Chunk(usize),
    /// A [`MSG`]-byte message made by [`stamp`]; a consumer samples the
    /// latency of one in `sample_every`.
    Message { sample_every: u64 },
}

fn one() -> usize {
    1
}

impl Shape {
    /// `fifos` input FIFOs of `msgs_per_fifo` [`MSG`]-byte messages each,
    /// the latency of one in `sample_every` sampled: what the message
    /// scenarios (fan-in, idle, latency) have the consumer read.
    pub fn messages(fifos: usize, msgs_per_fifo: u64, sample_every: u64) -> Shape {
        Shape {
            flow: Flow::Consume {
                inputs: fifos,
                shards: 1,
            },
            bytes_per_input: msgs_per_fifo * MSG as u64,
            unit: Unit::Message { sample_every },
        }
    }

    /// Input FIFOs the consumer reads (none for a relay).
    pub fn inputs(&self) -> usize {
        match self.flow {
            Flow::Consume { inputs, .. } => inputs,
            Flow::Relay { .. } => 0,
        }
    }

    /// Consumers (each a thread) the inputs are shared out to.
    pub fn shards(&self) -> usize {
        match self.flow {
            Flow::Consume { shards, .. } => shards.max(1),
            Flow::Relay { .. } => 1,
        }
    }

    /// The FIFOs of a relay, and whether it is a bulk one.
    pub fn relay(&self) -> Option<(&str, &str, bool)> {
        match &self.flow {
            Flow::Relay { from, to, bulk } => Some((from, to, *bulk)),
            Flow::Consume { .. } => None,
        }
    }

    /// Whether this is a relay of chunks (pipes sized, a note of how).
    pub fn bulk_relay(&self) -> bool {
        matches!(self.flow, Flow::Relay { bulk: true, .. })
    }

    /// Whether the consumer parses messages (and samples latency).
    pub fn message_framed(&self) -> bool {
        matches!(self.unit, Unit::Message { .. })
    }

    /// Latency sampling rate of the consumer.
    pub fn sample_every(&self) -> u64 {
        match self.unit {
            Unit::Message { sample_every } => sample_every,
            Unit::Chunk(_) => SAMPLE_EVERY,
        }
    }

    /// Bytes of one numbered unit.
    pub fn unit(&self) -> usize {
        match self.unit {
            Unit::Chunk(chunk) => chunk,
            Unit::Message { .. } => MSG,
        }
    }

    /// Where a unit holds its number on its FIFO.
    pub fn number_at(&self) -> Range<usize> {
        match self.unit {
            Unit::Chunk(_) => CHUNK_NUMBER,
            Unit::Message { .. } => MSG_NUMBER,
        }
    }

    /// Messages (or chunks) in `bytes`.
    pub fn msgs_in(&self, bytes: u64) -> u64 {
        bytes / self.unit() as u64
    }

    /// Numbered units each input FIFO carries in a run: the last chunk
    /// may be short, and counts if it can hold its number.
    pub fn units_per_input(&self) -> u64 {
        let (bytes, unit) = (self.bytes_per_input, self.unit() as u64);
        bytes / unit + u64::from(bytes % unit >= self.number_at().end as u64)
    }

    /// Whether the units of scenario `name` are large enough to hold
    /// their numbers.
    pub fn check(&self, name: &str) -> Result<(), String> {
        match self.unit {
            Unit::Chunk(chunk) if chunk < CHUNK_NUMBER.end => Err(format!(
                "{name}: chunks of {chunk} bytes: each chunk carries its number, \
                 at least {} bytes",
                CHUNK_NUMBER.end
            )),
            _ => Ok(()),
        }
    }

    /// FIFOs a run needs in its directory.
    pub fn fifo_names(&self) -> Vec<String> {
        match &self.flow {
            Flow::Relay { from, to, .. } => vec![from.clone(), to.clone()],
            Flow::Consume { inputs, .. } => (0..*inputs).map(|i| format!("in-{i}")).collect(),
        }
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
        let (checked, inputs) = match self.flow {
            // The load generator reads the relay's output and the echoes.
            Flow::Relay { .. } => (load.checked, 1),
            Flow::Consume { .. } => (engine.checked, fifos as u64),
        };
        let units = inputs * self.units_per_input();
        let bytes = inputs * self.bytes_per_input;
        if checked != units || engine.bytes != bytes {
            return Err(format!(
                "miscounted: {checked} of {units} units checked in order, \
                 {} of {bytes} bytes",
                engine.bytes
            ));
        }
        Ok(checked)
    }
}

/// Path of input FIFO `i`.
pub fn input_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("in-{i}"))
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
    /// Units read whose number was the next one on their FIFO.
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

    #[test]
    fn chunks_count_when_they_hold_their_number() {
        let shape = |chunk, bytes| Shape {
            flow: Flow::Consume {
                inputs: 1,
                shards: 1,
            },
            bytes_per_input: bytes,
            unit: Unit::Chunk(chunk),
        };
        assert_eq!(shape(100, 250).units_per_input(), 3);
        assert_eq!(shape(100, 205).units_per_input(), 2);
        assert!(shape(4, 8).check("throughput").is_err());
        assert!(shape(8, 8).check("throughput").is_ok());
    }
}
