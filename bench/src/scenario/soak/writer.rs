//! One writer session of the soak (`ringpipe-bench soak-writer`, a
//! process of its own so it can be SIGKILLed), and the wire format every
//! part of the soak shares.
//!
//! Session `s` writes its units 0, 1, 2... (newline-terminated lines, or
//! length-prefixed frames of the same payloads) in writes of whole units
//! of at most `PIPE_BUF` bytes, so each write lands whole or not at all,
//! even beside other writers of the same FIFO and when the process is
//! killed. The cut points follow from the session's seed ([`writes`]), so
//! the checker knows them; after each write the session records in its
//! progress file how many units it has written. A killed session has
//! then put exactly the units before one of its cut points into the pipe:
//! the one it recorded last, or the next.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use ringpipe::frame::PIPE_BUF;

/// How units are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wire {
    /// Newline-terminated lines.
    Lines,
    /// A u32 little-endian payload length, then the payload.
    Length,
}

/// How a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ending {
    /// After its last unit.
    Clean,
    /// With a unit longer than any receiver takes (a line of 5,000 bytes
    /// without a newline, or a header promising 5,000 bytes): the router
    /// ends the session there.
    TooLong,
    /// In the middle of a unit: the router drops the partial unit when the
    /// session leaves.
    Cut,
}

/// The longest payload [`payload`] makes.
pub const MAX_PAYLOAD: usize = 1 + 8 + 1 + 8 + 1 + 89;
/// The most units in one write: whole units, at most `PIPE_BUF` bytes.
const MAX_PER_WRITE: u64 = (PIPE_BUF / (MAX_PAYLOAD + 4)) as u64;

/// A mix of `a` and `b` (splitmix64's finaliser): the same everywhere.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether unit `seq` of session `session` starts with `B` (routed to the
/// multiplexer's second output) rather than `A`.
pub fn routed_b(session: u64, seq: u64) -> bool {
    mix(session, seq).is_multiple_of(3)
}

/// The payload of unit `seq` of session `session`: `A` or `B`, the
/// session and the sequence number in hex, then 0 to 88 filler bytes.
pub fn payload(session: u64, seq: u64, out: &mut Vec<u8>) {
    out.push(if routed_b(session, seq) { b'B' } else { b'A' });
    let _ = write!(out, "{session:08x} {seq:08x} ");
    let pad = (mix(seq, session) % 89) as usize;
    out.extend(std::iter::repeat_n(b'a' + (seq % 26) as u8, pad));
}

/// Unit `seq` of `session` on the wire.
pub fn encode(wire: Wire, session: u64, seq: u64, out: &mut Vec<u8>) {
    match wire {
        Wire::Lines => {
            payload(session, seq, out);
            out.push(b'\n');
        }
        Wire::Length => {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            payload(session, seq, out);
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
    }
}

/// The cut points of a session of `units` units: the unit count after
/// each of its writes, increasing, the last `units`.
pub fn writes(seed: u64, units: u64) -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut cuts = Vec::new();
    let mut done = 0;
    while done < units {
        done = (done + rng.u64(1..=MAX_PER_WRITE)).min(units);
        cuts.push(done);
    }
    cuts
}

/// (internal) One writer session of the soak.
#[derive(Debug, Clone, clap::Args)]
pub struct WriterArgs {
    /// The FIFO to write.
    #[arg(long)]
    pub path: PathBuf,
    #[arg(long, value_enum)]
    pub wire: Wire,
    /// The session's number, in every unit.
    #[arg(long)]
    pub session: u64,
    /// Units to write.
    #[arg(long)]
    pub units: u64,
    /// Seed of the cut points ([`writes`]) and of the pauses.
    #[arg(long)]
    pub seed: u64,
    /// Longest pause between writes, in ms.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// Where to record the units written so far (a u64, little-endian).
    #[arg(long)]
    pub progress: PathBuf,
    #[arg(long, value_enum, default_value_t = Ending::Clean)]
    pub ending: Ending,
}

/// Writes the session. A reader that leaves during a bad ending is
/// expected (the router closes its end): EPIPE then ends it cleanly.
pub fn run(args: &WriterArgs) -> io::Result<()> {
    let progress = File::create(&args.progress)?;
    progress.write_at(&0u64.to_le_bytes(), 0)?;
    // Blocking open: the router's read end is there, or comes back.
    let mut fifo = std::fs::OpenOptions::new().write(true).open(&args.path)?;
    let mut pauses = fastrand::Rng::with_seed(args.seed ^ 0x5eed);
    let mut buf = Vec::with_capacity(PIPE_BUF);
    let mut seq = 0;
    for cut in writes(args.seed, args.units) {
        buf.clear();
        while seq < cut {
            encode(args.wire, args.session, seq, &mut buf);
            seq += 1;
        }
        // At most PIPE_BUF bytes: one write(2), whole or not at all.
        fifo.write_all(&buf)?;
        progress.write_at(&seq.to_le_bytes(), 0)?;
        if args.pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(pauses.u64(0..=args.pause_ms)));
        }
    }
    buf.clear();
    match (args.ending, args.wire) {
        (Ending::Clean, _) => return Ok(()),
        (Ending::TooLong, Wire::Lines) => buf.resize(5000, b'x'),
        (Ending::TooLong, Wire::Length) => {
            buf.extend_from_slice(&5000u32.to_le_bytes());
            buf.resize(4 + 100, b'x');
        }
        (Ending::Cut, wire) => {
            encode(wire, args.session, seq, &mut buf);
            buf.truncate(buf.len() / 2);
        }
    }
    match fifo.write_all(&buf) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_fit_a_write_and_cuts_are_reproducible() {
        let mut buf = Vec::new();
        for seq in 0..1000 {
            buf.clear();
            encode(Wire::Length, 7, seq, &mut buf);
            assert!(buf.len() <= MAX_PAYLOAD + 4, "{}", buf.len());
            assert_eq!(buf[4], if routed_b(7, seq) { b'B' } else { b'A' });
        }
        let cuts = writes(42, 500);
        assert_eq!(cuts, writes(42, 500));
        assert_eq!(cuts.last(), Some(&500));
        assert!(
            cuts.windows(2)
                .all(|w| w[0] < w[1] && w[1] - w[0] <= MAX_PER_WRITE)
        );
        let mut write = Vec::new();
        for seq in 0..MAX_PER_WRITE {
            encode(Wire::Length, u64::from(u32::MAX), seq, &mut write);
        }
        assert!(write.len() <= PIPE_BUF);
        assert!(writes(1, 0).is_empty());
    }
}
