//! [`Sink`]: what every engine's consumer, and the relay's load
//! generator, does with the bytes it reads.

use std::collections::BTreeMap;
use std::ops::Range;

use hdrhistogram::Histogram;

use crate::spec::{MSG, Shape, mono_ns, new_histogram};

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
    pub fn new(shape: &Shape, fifos: usize, expected: u64) -> Sink {
        let latency = shape.message_framed();
        Sink {
            unit: shape.unit(),
            number_at: shape.number_at(),
            latency,
            sample_every: shape.sample_every(),
            received: vec![0; fifos],
            cut: BTreeMap::new(),
            bytes: 0,
            expected,
            samples: Vec::with_capacity(if latency {
                (expected / MSG as u64 / shape.sample_every() + 4).min(1 << 20) as usize
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Flow, SAMPLE_EVERY, Unit, number_chunk, stamp};

    fn messages(numbers: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, &n) in numbers.iter().enumerate() {
            let mut m = [0u8; MSG];
            stamp(&mut m, 1, seq as u64, n);
            out.extend_from_slice(&m);
        }
        out
    }

    /// Fan-in's shape: 2 FIFOs of 4 messages.
    fn fanin() -> Shape {
        Shape {
            flow: Flow::Consume {
                inputs: 2,
                shards: 1,
            },
            bytes_per_input: 4 * MSG as u64,
            unit: Unit::Message {
                sample_every: SAMPLE_EVERY,
            },
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
        let shape = Shape {
            flow: Flow::Consume {
                inputs: 1,
                shards: 1,
            },
            bytes_per_input: 250,
            unit: Unit::Chunk(100),
        };
        assert_eq!(shape.units_per_input(), 3);
        let mut stream = vec![0u8; 250];
        for (k, chunk) in stream.chunks_mut(100).enumerate() {
            number_chunk(chunk, k as u64);
        }
        let mut sink = Sink::new(&shape, 1, 250);
        for piece in stream.chunks(3) {
            sink.on_data(0, piece);
        }
        assert_eq!((sink.checked, sink.fault), (3, None));
    }
}
