//! What a receiver does with the bytes it read: `Data`, or the frames
//! they complete if it decodes frames, or, while it is spliced, nothing:
//! they go to its senders.

use super::{Feed, Next, ReceiverSide};
use crate::buffers::Buf;
use crate::error::Error;
use crate::event::{FrameBytes, Item};
use crate::frame::FrameError;
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
        if matches!(self.feed, Feed::Spliced(_)) {
            return Taken::Forward(buf);
        }
        let from = Receiver(end.token);
        let Some(decoder) = self.decoder.as_deref_mut() else {
            io.pending.push(Item::Data { from, buf, len: n });
            return Taken::Reported;
        };
        // A stream that broke at a bad frame has no frames left to give;
        // its error is reported once, and the receiver is closing.
        if decoder.is_failed() {
            return Taken::Reported;
        }
        // The batch keeps the buffer; its frames name it by index.
        let (pending, pending_bufs) = (&mut io.pending, &mut io.pending_bufs);
        let index = pending_bufs.len() as u32;
        pending_bufs.push(buf);
        let chunk = &pending_bufs[index as usize].as_slice()[..n];
        let base = chunk.as_ptr() as usize;
        let counters = &mut end.counters;
        let decoded = decoder.feed(chunk, |frame| {
            let at = (frame.as_ptr() as usize).wrapping_sub(base);
            // Lent if it lies inside this read, copied if it was split
            // (or lies beyond what a u32 offset names: buffers over 4 GiB).
            let lendable = u32::try_from(n).is_ok();
            let frame = if lendable && !frame.is_empty() && at < n && at + frame.len() <= n {
                FrameBytes::Lent {
                    buf: index,
                    start: at as u32,
                    end: (at + frame.len()) as u32,
                }
            } else {
                FrameBytes::Owned(frame.to_vec())
            };
            counters.frame_in();
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
        let source = self.decoder.as_mut()?.finish().err()?;
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
        let decoder = self.decoder.as_deref()?;
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
