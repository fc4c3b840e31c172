//! The lines of `mux`: each writer's 64-byte lines, numbered in hex, and
//! the check that every one arrives whole, exactly once.

use std::io;
use std::os::fd::OwnedFd;

use crate::frames::Frames;
use crate::sys::{self, parse_hex};

/// Bytes per line, newline included.
pub const LINE: usize = 64;
/// Lines per `write(2)` of a writer (64 KiB).
pub const BLOCK_LINES: usize = 1024;

/// Writes `lines` lines of writer `w`, `BLOCK_LINES` per write.
pub fn write_lines(fd: &OwnedFd, w: usize, lines: u64) -> io::Result<()> {
    let mut block = vec![0u8; BLOCK_LINES * LINE];
    for line in block.chunks_exact_mut(LINE) {
        template(line, w);
    }
    let mut seq = 0u64;
    while seq < lines {
        let n = (lines - seq).min(BLOCK_LINES as u64) as usize;
        for (k, line) in block.chunks_exact_mut(LINE).take(n).enumerate() {
            put_hex(&mut line[SEQ], seq + k as u64);
        }
        sys::write_all(fd, &block[..n * LINE])?;
        seq += n as u64;
    }
    Ok(())
}

/// Where a line keeps its writer and sequence number, in hex:
/// `wwww ssssssssssssssss ....\n`.
const WRITER: std::ops::Range<usize> = 0..4;
const SEQ: std::ops::Range<usize> = 5..21;

fn template(line: &mut [u8], w: usize) {
    line.fill(b'.');
    put_hex(&mut line[WRITER], w as u64);
    line[WRITER.end] = b' ';
    line[SEQ.end] = b' ';
    line[LINE - 1] = b'\n';
}

fn put_hex(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
    }
}

/// Checks the output stream: whole 64-byte lines, each (writer, sequence)
/// exactly once.
#[derive(Debug)]
pub struct Checker {
    /// A line cut by the end of a read, completed by the next.
    partial: Frames,
    seen: Seen,
}

/// The lines seen so far.
#[derive(Debug)]
struct Seen {
    lines: u64,
    /// One bit per line, per writer.
    bits: Vec<Vec<u64>>,
    bytes: u64,
    count: u64,
}

impl Checker {
    pub fn new(writers: usize, lines: u64) -> Checker {
        let words = lines.div_ceil(64) as usize;
        Checker {
            partial: Frames::new(LINE),
            seen: Seen {
                lines,
                bits: vec![vec![0; words]; writers],
                bytes: 0,
                count: 0,
            },
        }
    }

    pub fn expected_bytes(&self) -> u64 {
        self.seen.bits.len() as u64 * self.seen.lines * LINE as u64
    }

    pub fn lines_seen(&self) -> u64 {
        self.seen.count
    }

    /// Takes the next bytes of the output.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        self.partial.feed(data, |line| self.seen.line(line))
    }

    /// Every line of every writer arrived (once: [`Checker::feed`] refused
    /// duplicates).
    pub fn finish(&self) -> Result<(), String> {
        if self.partial.pending() > 0 {
            return Err(format!(
                "{} bytes of a cut line at the end",
                self.partial.pending()
            ));
        }
        let lines = self.seen.lines;
        for (w, bits) in self.seen.bits.iter().enumerate() {
            let got: u64 = bits.iter().map(|b| u64::from(b.count_ones())).sum();
            if got != lines {
                let first = (0..lines)
                    .find(|&s| bits[(s / 64) as usize] & (1 << (s % 64)) == 0)
                    .unwrap_or(0);
                return Err(format!(
                    "writer {w}: {} of {lines} lines missing (first: line {first})",
                    lines - got,
                ));
            }
        }
        Ok(())
    }
}

impl Seen {
    /// Checks one whole line.
    fn line(&mut self, line: &[u8]) -> Result<(), String> {
        let at = self.bytes;
        self.bytes += LINE as u64;
        let parsed = (line.get(LINE - 1) == Some(&b'\n'))
            .then(|| parse_hex(&line[WRITER]).zip(parse_hex(&line[SEQ])))
            .flatten();
        let Some((w, seq)) = parsed else {
            let shown = String::from_utf8_lossy(line);
            return Err(format!("byte {at}: not a line of the test: {shown:?}"));
        };
        let word = self
            .bits
            .get_mut(w as usize)
            .filter(|_| seq < self.lines)
            .and_then(|bits| bits.get_mut((seq / 64) as usize))
            .ok_or_else(|| format!("byte {at}: writer {w} line {seq} was never written"))?;
        let bit = 1u64 << (seq % 64);
        if *word & bit != 0 {
            return Err(format!("writer {w} line {seq} arrived twice"));
        }
        *word |= bit;
        self.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(w: usize, seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for s in seqs {
            let mut line = [0u8; LINE];
            template(&mut line, w);
            put_hex(&mut line[SEQ], s);
            out.extend_from_slice(&line);
        }
        out
    }

    #[test]
    fn line_format() {
        let l = lines_of(10, [255]);
        assert_eq!(&l[..22], b"000a 00000000000000ff ");
        assert_eq!(l.len(), LINE);
        assert_eq!(l[LINE - 1], b'\n');
        assert_eq!(l.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn every_line_once_in_any_cut_and_order() {
        let mut stream = lines_of(1, [2, 0]);
        stream.extend(lines_of(0, 0..3));
        stream.extend(lines_of(1, [1]));
        for cut in [1, 7, 63, 64, 65, 100] {
            let mut c = Checker::new(2, 3);
            for piece in stream.chunks(cut) {
                c.feed(piece).unwrap();
            }
            c.finish().unwrap();
            assert_eq!(c.lines_seen(), 6);
        }
    }

    #[test]
    fn refuses_duplicates_losses_and_garbage() {
        let mut c = Checker::new(1, 2);
        c.feed(&lines_of(0, [0])).unwrap();
        assert!(c.feed(&lines_of(0, [0])).unwrap_err().contains("twice"));

        let mut c = Checker::new(1, 2);
        c.feed(&lines_of(0, [1])).unwrap();
        assert!(c.finish().unwrap_err().contains("1 of 2 lines missing"));

        let mut c = Checker::new(1, 2);
        assert!(c.feed(&lines_of(3, [0])).is_err(), "unknown writer");
        let mut c = Checker::new(1, 2);
        assert!(c.feed(&lines_of(0, [2])).is_err(), "line past the end");
        let mut c = Checker::new(1, 2);
        let mut bad = lines_of(0, [0]);
        bad[LINE - 1] = b'x';
        assert!(c.feed(&bad).is_err(), "no newline");

        let mut c = Checker::new(1, 1);
        c.feed(&lines_of(0, [0])[..10]).unwrap();
        assert!(c.finish().is_err(), "cut line");
    }
}
