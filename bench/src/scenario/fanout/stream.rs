//! The stream of `fanout`: the publisher's frames, and each subscriber's
//! check that every one arrives, in order (`ringpipe-bench fanout-pub` and
//! `fanout-sub`).

use std::io;
use std::os::fd::AsFd;

use super::{BATCH, FRAME, PAYLOAD, Spec, other, parse};
use crate::frames::Frames;
use crate::sys;

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
#[derive(Debug)]
pub struct Checker {
    partial: Frames,
    pub next: u64,
}

impl Default for Checker {
    fn default() -> Checker {
        Checker {
            partial: Frames::new(FRAME),
            next: 0,
        }
    }
}

impl Checker {
    /// Feeds the bytes read next.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        let next = &mut self.next;
        self.partial.feed(data, |frame| check(next, frame))
    }
}

/// Checks that `frame` is frame `next`, and counts it.
fn check(next: &mut u64, frame: &[u8]) -> Result<(), String> {
    let mut want = [0u8; FRAME];
    put_frame(&mut want, *next);
    if frame != want {
        return Err(format!("frame {next} differs: got {:02x?}", &frame[..16]));
    }
    *next += 1;
    Ok(())
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

#[cfg(test)]
mod tests {
    use ringpipe::frame::{Codec, FrameDecoder};

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
