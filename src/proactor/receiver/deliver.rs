//! What a receiver does with the bytes it read: `Data`, or the frames
//! they complete if it decodes frames, or, while it is spliced, nothing:
//! they go to its senders.

use super::{Next, ReceiverSide};
use crate::buffers::Buf;
use crate::error::Error;
use crate::event::{FrameBytes, Item};
use crate::frame::{Codec, FrameError, Piece};
use crate::proactor::end::End;
use crate::proactor::io::Io;
use crate::token::Receiver;

/// What became of bytes a receiver read.
#[derive(Debug)]
enum Taken {
    /// Reported to the user (or dropped after a bad frame already was).
    Reported,
    /// The receiver is spliced: these bytes, read just before the splice
    /// took over, go to its senders, ahead of everything spliced.
    Forward(Buf),
    /// A bad frame: the transport fails with this.
    Failed(Error),
}

impl ReceiverSide {
    /// Takes `buf[..n]` that a read brought, while the receiver is at
    /// hand (see `take`), and says what follows: the next read if
    /// `rearm` says so, or the bytes for the senders it is spliced into.
    #[inline]
    pub(super) fn took(
        &mut self,
        end: &mut End,
        io: &mut Io,
        buf: Buf,
        n: usize,
        rearm: Option<usize>,
    ) -> Next {
        match self.take(end, io, buf, n) {
            Taken::Reported => {
                end.data_arrived(&mut io.pending);
                rearm.map_or(Next::Done, Next::Rearm)
            }
            Taken::Forward(buf) => Next::Forward { buf, n, rearm },
            Taken::Failed(e) => Next::Fail(e),
        }
    }

    /// Counts `buf[..n]` as read and reports it as `Data`, or as the
    /// frames it completes if the receiver decodes frames.
    #[inline]
    fn take(&mut self, end: &mut End, io: &mut Io, buf: Buf, n: usize) -> Taken {
        self.bytes_read += n as u64;
        if self.feed.is_none() {
            io.push_data(Receiver(end.token), buf, n);
            return Taken::Reported;
        }
        if self.spliced() {
            return Taken::Forward(buf);
        }
        self.take_frames(end, io, buf, n)
    }

    /// [`take`](Self::take) for a receiver that decodes frames: out of
    /// line, so the plain `Data` path stays short.
    #[inline(never)]
    fn take_frames(&mut self, end: &mut End, io: &mut Io, buf: Buf, n: usize) -> Taken {
        let from = Receiver(end.token);
        let Some(decoder) = self.decoder_mut() else {
            io.push_data(from, buf, n);
            return Taken::Reported;
        };
        // A stream that broke at a bad frame has no frames left to give;
        // its error is reported once, and the receiver is closing.
        if decoder.is_failed() {
            return Taken::Reported;
        }
        // The batch keeps the buffer; its frames name it by index.
        let (pending, pending_bufs, owned) =
            (&mut io.pending, &mut io.pending_bufs, &mut io.pending_owned);
        let index = pending_bufs.keep(buf);
        let chunk = &pending_bufs.get(index)[..n];
        let base = chunk.as_ptr() as usize;
        let counters = &mut end.counters;
        let codec = decoder.codec();
        let (head, tail) = codec.framing();
        // Frames are lent by offsets, which a u32 names in every pool's
        // buffer (a buffer over 4 GiB has its frames copied).
        let lends = u32::try_from(n).is_ok();
        let decoded = decoder.feed_pieces(chunk, lends, |piece| {
            let frame = match piece {
                Piece::Run { wire, frames } => {
                    counters.frames_in(frames as u64);
                    let start = wire.as_ptr() as usize - base;
                    let run = (start as u32, (start + wire.len()) as u32, frames as u32);
                    join_run(pending, from, codec, index, run);
                    return;
                }
                Piece::Frame(frame) => frame,
            };
            counters.frame_in();
            let at = (frame.as_ptr() as usize).wrapping_sub(base);
            let (start, stop) = (at, at + frame.len());
            // Lent if it lies inside this read, copied if it was split.
            let lendable = lends && !frame.is_empty() && at < n && stop <= n;
            // Whole on the wire in this read: it joins the read's run of
            // frames (one item for them all), or starts one.
            if lendable && codec.framed_in(chunk, start, stop) {
                let run = ((start - head) as u32, (stop + tail) as u32, 1);
                join_run(pending, from, codec, index, run);
                return;
            }
            let frame = if lendable {
                FrameBytes::Lent {
                    buf: index,
                    start: start as u32,
                    end: stop as u32,
                }
            } else {
                FrameBytes::Owned(owned.bytes(frame.to_vec()))
            };
            pending.push(Item::Frame { from, frame });
        });
        let Err(source) = decoded else {
            return Taken::Reported;
        };
        let error = Error::Frame {
            token: end.token,
            path: end.name(),
            source,
        };
        // Bytes read while closing are still reported, bad ones too.
        if end.closing() {
            io.report_error(end.token, error);
            return Taken::Reported;
        }
        Taken::Failed(error)
    }

    /// The frame a writer left unfinished, if any, as the error that
    /// reports it; the decoder starts clean again.
    pub(super) fn frame_cut(&mut self, end: &End) -> Option<Error> {
        let source = self.decoder_mut()?.finish().err()?;
        Some(Error::Frame {
            token: end.token,
            path: end.name(),
            source,
        })
    }

    /// At close: the part of a frame read before it, if any. Its bytes
    /// left the pipe, so say how many rather than drop them unseen. (A
    /// decoder that failed has had its error reported.)
    pub(in crate::proactor) fn truncated_at_close(&self, end: &End) -> Option<Error> {
        let decoder = self.decoder()?;
        if decoder.is_failed() || decoder.buffered() == 0 {
            return None;
        }
        Some(Error::Frame {
            token: end.token,
            path: end.name(),
            source: FrameError::Truncated {
                buffered: decoder.buffered(),
            },
        })
    }
}

/// Adds `frames` whole frames, the wire bytes `start..end` of the read
/// kept at `index`, to the run that `pending` ends with if they follow it,
/// else starts a run: one item per read's run of frames.
fn join_run(
    pending: &mut Vec<Item>,
    from: Receiver,
    codec: Codec,
    index: u32,
    (start, end, frames): (u32, u32, u32),
) {
    if let Some(Item::Frames {
        from: f,
        buf,
        end: last,
        frames: count,
        ..
    }) = pending.last_mut()
        && *f == from
        && *buf == index
        && *last == start
    {
        *last = end;
        *count += frames;
        return;
    }
    pending.push(Item::Frames {
        from,
        codec,
        buf: index,
        start,
        end,
        frames,
    });
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use crate::event::Item;
    use crate::frame::Codec;
    use crate::{Event, Events, FifoOptions, Proactor};

    /// The frames one read completes are one item, not one per frame;
    /// `iter` still gives each frame, `runs` the read's run.
    #[test]
    fn a_reads_frames_are_one_item() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut p = Proactor::new().unwrap();
        let opts = FifoOptions::new().frames(Codec::Lines, 100);
        let rx = p.open_receiver(&path, &opts).unwrap();
        let mut wire = Vec::new();
        for i in 0..100 {
            wire.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        w.write_all(&wire).unwrap();
        let mut ev = Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ev.is_empty() && Instant::now() < deadline {
            p.poll(&mut ev, Some(Duration::from_millis(50))).unwrap();
        }
        // One read of 100 whole lines: one item, counted as 100 events.
        assert_eq!(ev.items.len(), 1, "{:?}", ev.items.first());
        assert_eq!(ev.len(), 100);
        let frames: Vec<String> = ev
            .iter()
            .map(|e| match e {
                Event::Frame { from, frame } if from == rx => {
                    String::from_utf8(frame.to_vec()).unwrap()
                }
                e => panic!("unexpected {e:?}"),
            })
            .collect();
        let want: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        assert_eq!(frames, want);
        let runs: Vec<Event<'_>> = ev.runs(Codec::Lines).collect();
        assert!(
            matches!(runs[..], [Event::Frames { wire: w, frames: 100, .. }] if w == &wire[..]),
            "{runs:?}"
        );
        assert_eq!(p.stats(rx).unwrap().frames_in, 100);

        // Empty lines are frames of the run; a line split across two
        // reads comes alone, copied, in its place.
        w.write_all(b"a\n\nb\npart").unwrap();
        let first = poll_frames(&mut p, &mut ev, 3);
        assert_eq!(first, [&b"a"[..], b"", b"b"]);
        assert!(
            matches!(ev.items[..], [Item::Frames { frames: 3, .. }]),
            "{:?}",
            ev.items
        );
        w.write_all(b"ial\n\nc\n").unwrap();
        let second = poll_frames(&mut p, &mut ev, 3);
        assert_eq!(second, [&b"partial"[..], b"", b"c"]);
        assert!(
            matches!(
                ev.items[..],
                [Item::Frame { .. }, Item::Frames { frames: 2, .. }]
            ),
            "{:?}",
            ev.items
        );
        assert_eq!(p.stats(rx).unwrap().frames_in, 106);
    }

    /// Polls until `want` frames came in one batch; their payloads.
    fn poll_frames(p: &mut Proactor, ev: &mut Events, want: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            p.poll(ev, Some(Duration::from_millis(50))).unwrap();
            if !ev.is_empty() || Instant::now() > deadline {
                break;
            }
        }
        let frames: Vec<Vec<u8>> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Frame { frame, .. } => Some(frame.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), want, "{:?}", ev.items);
        frames
    }
}
