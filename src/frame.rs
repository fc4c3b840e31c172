//! Message framing for FIFOs: newline-delimited and length-prefixed codecs.
//!
//! This module owns the two wire formats and nothing else: it does no I/O.
//!
//! - [`Codec::Lines`]: each frame is its payload followed by `b'\n'`; a
//!   payload cannot contain `b'\n'`.
//! - [`Codec::LengthPrefixed`]: each frame is the payload's length as a
//!   `u32` in little-endian order, then the payload. Any bytes, any length
//!   from zero up.
//!
//! [`encode_line`] and [`encode_length_prefixed`] append one frame to a
//! buffer. A [`FrameDecoder`] takes the byte chunks a receiver reads, in
//! order, and hands out each complete frame. A frame that lies entirely
//! inside one chunk is lent straight from that chunk, without a copy; only a
//! frame split across chunks is gathered in the decoder's buffer, which is
//! reused from frame to frame. A frame longer than the decoder's maximum is
//! a [`FrameError::TooLong`], reported as soon as it is known, so a broken or
//! hostile peer cannot make the decoder buffer without bound.
//!
//! Many processes may write frames into one FIFO: a frame of at most
//! [`PIPE_BUF`] bytes, header included, written with one `write` call, never
//! interleaves with other writers' data.
//!
//! ```
//! use ringpipe::frame::{Codec, FrameDecoder, encode_length_prefixed};
//!
//! let mut wire = Vec::new();
//! encode_length_prefixed(b"hello", &mut wire)?;
//! encode_length_prefixed(b"", &mut wire)?;
//! encode_length_prefixed(b"world", &mut wire)?;
//!
//! // The bytes may arrive cut anywhere, as reads from a pipe do.
//! let (first, second) = wire.split_at(7);
//! let mut decoder = FrameDecoder::new(Codec::LengthPrefixed, 1024);
//! let mut frames: Vec<Vec<u8>> = Vec::new();
//! decoder.feed(first, |frame| frames.push(frame.to_vec()))?;
//! decoder.feed(second, |frame| frames.push(frame.to_vec()))?;
//! assert_eq!(frames, [&b"hello"[..], b"", b"world"]);
//!
//! // At end of input, nothing may be left half-received.
//! assert_eq!(decoder.buffered(), 0);
//! decoder.finish()?;
//! # Ok::<(), ringpipe::frame::FrameError>(())
//! ```

/// The largest write to a pipe or FIFO that is atomic on Linux, in bytes.
///
/// A `write` of at most `PIPE_BUF` bytes to a pipe lands in one piece: it is
/// never interleaved with data from other writers. So frames of at most
/// `PIPE_BUF` bytes, header or newline included, each written with one
/// `write` call, may come from any number of writer processes sharing one
/// FIFO and still reach the reader whole. A larger frame may be split by the
/// kernel and interleaved with other writers' data, which corrupts the
/// stream for every codec. A lone writer may send frames of any size.
///
/// Use [`Codec::overhead`] to find the largest payload that fits:
/// `PIPE_BUF - codec.overhead()`.
pub const PIPE_BUF: usize = 4096;

/// A wire format for frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Payload then `b'\n'`. A payload cannot contain `b'\n'`; `b'\r'` gets
    /// no special treatment.
    Lines,
    /// A `u32` little-endian payload length, then the payload.
    LengthPrefixed,
}

impl Codec {
    /// Bytes a frame takes beyond its payload: 1 for [`Codec::Lines`] (the
    /// newline), 4 for [`Codec::LengthPrefixed`] (the header).
    pub const fn overhead(self) -> usize {
        match self {
            Codec::Lines => 1,
            Codec::LengthPrefixed => LENGTH_HEADER,
        }
    }

    /// Appends one frame carrying `payload` to `out`, in this format: see
    /// [`encode_line`] and [`encode_length_prefixed`].
    pub fn encode(self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        match self {
            Codec::Lines => encode_line(payload, out),
            Codec::LengthPrefixed => encode_length_prefixed(payload, out),
        }
    }

    /// Hands `write` the frame carrying `payload` as the parts that go on
    /// the wire, in order, without copying the payload: the one place a
    /// frame is laid out. [`encode`](Self::encode) and the proactor's
    /// frame sends all write these parts. Fails, without calling `write`,
    /// for a payload the format cannot carry.
    #[inline]
    pub(crate) fn with_parts<R>(
        self,
        payload: &[u8],
        write: impl FnOnce(&[&[u8]]) -> R,
    ) -> Result<R, FrameError> {
        match self {
            Codec::Lines => match find_newline(payload) {
                Some(at) => Err(FrameError::NewlineInPayload { at }),
                None => Ok(write(&[payload, b"\n"])),
            },
            Codec::LengthPrefixed => {
                let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLong {
                    len: payload.len(),
                    max: u32::MAX as usize,
                })?;
                Ok(write(&[&len.to_le_bytes(), payload]))
            }
        }
    }
}

impl Codec {
    /// Bytes a frame takes on the wire before its payload (the length
    /// header) and after it (the newline).
    pub(crate) const fn framing(self) -> (usize, usize) {
        match self {
            Codec::Lines => (0, 1),
            Codec::LengthPrefixed => (LENGTH_HEADER, 0),
        }
    }

    /// Whether `bytes[start..end]` is a payload with this format's framing
    /// around it in `bytes`: a decoded frame still in its read buffer.
    #[inline]
    pub(crate) fn framed_in(self, bytes: &[u8], start: usize, end: usize) -> bool {
        match self {
            Codec::Lines => bytes.get(end) == Some(&b'\n'),
            Codec::LengthPrefixed => {
                let header = start
                    .checked_sub(LENGTH_HEADER)
                    .and_then(|h| bytes.get(h..start));
                let len = end.checked_sub(start).and_then(|n| u32::try_from(n).ok());
                matches!((header, len), (Some(h), Some(n)) if h == n.to_le_bytes())
            }
        }
    }

    /// Bytes on the wire of the whole frame `wire` starts with; `None` if
    /// it does not start with a whole frame (it is empty, or ends inside
    /// the first frame).
    #[inline]
    pub(crate) fn frame_len(self, wire: &[u8]) -> Option<usize> {
        match self {
            Codec::Lines => find_newline(wire).map(|at| at + 1),
            Codec::LengthPrefixed => {
                let len = LENGTH_HEADER + header(wire.get(..LENGTH_HEADER)?);
                (len <= wire.len()).then_some(len)
            }
        }
    }
}

/// Appends the parts of one frame to `out`.
fn append(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.reserve(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Size of the length-prefixed header.
const LENGTH_HEADER: usize = 4;

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame's payload is longer than the maximum. When decoding lines,
    /// `len` is the number of bytes seen so far without a newline, so the
    /// whole line may be longer still. When encoding, `max` is the format's
    /// own limit (`u32::MAX` for length-prefixed frames).
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLong {
        /// The payload's length, or a lower bound of it (see above).
        len: usize,
        /// The maximum payload length.
        max: usize,
    },

    /// A payload given to [`encode_line`] contains a newline, which would
    /// end the frame early.
    #[error("line payload contains a newline at byte {at}")]
    NewlineInPayload {
        /// Offset of the first `b'\n'` in the payload.
        at: usize,
    },

    /// The input ended inside a frame: [`FrameDecoder::finish`] found
    /// `buffered` bytes of a frame whose rest never came.
    #[error("input ended inside a frame ({buffered} bytes of it received)")]
    Truncated {
        /// Bytes of the unfinished frame, header or partial line included.
        buffered: usize,
    },

    /// A frame was offered after its stream ended: published to a
    /// [`Hub`](crate::hub::Hub) whose source has closed or that was
    /// [`end`](crate::hub::Hub::end)ed.
    #[error("the stream has ended: no frame is taken after its end")]
    Ended,
}

/// Appends `payload` and a newline to `out`.
///
/// Fails with [`FrameError::NewlineInPayload`], leaving `out` as it was, if
/// the payload contains `b'\n'`.
pub fn encode_line(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    Codec::Lines.with_parts(payload, |parts| append(out, parts))
}

/// Appends the payload's length (`u32`, little-endian) and `payload` to
/// `out`.
///
/// Fails with [`FrameError::TooLong`], leaving `out` as it was, if the
/// payload is longer than `u32::MAX` bytes.
pub fn encode_length_prefixed(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    Codec::LengthPrefixed.with_parts(payload, |parts| append(out, parts))
}

/// Reassembles frames from the chunks of a byte stream.
///
/// Feed it every chunk a receiver reads, in order, with
/// [`feed`](FrameDecoder::feed). A frame inside one chunk is lent from that
/// chunk; a frame split across chunks is gathered in an internal buffer,
/// which keeps its capacity, so decoding allocates nothing per frame once
/// that buffer has grown to the largest split frame (at most the maximum
/// payload plus the header).
///
/// After an error the decoder is failed: every later `feed` returns the same
/// error without looking at its input, until [`reset`](FrameDecoder::reset).
/// A stream with a bad frame has lost its framing, so no later byte can be
/// trusted to start a frame.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    codec: Codec,
    max: usize,
    /// The start of a frame that a chunk ended inside: for length-prefixed
    /// frames the header (possibly partial) and payload so far, for lines the
    /// bytes so far without the newline. Empty when between frames.
    partial: Vec<u8>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder for `codec` accepting payloads of at most `max_frame` bytes
    /// (not counting the length header or newline). For frames that many
    /// writers share a FIFO with, `PIPE_BUF - codec.overhead()` is the
    /// natural maximum (see [`PIPE_BUF`]).
    pub fn new(codec: Codec, max_frame: usize) -> FrameDecoder {
        FrameDecoder {
            codec,
            max: max_frame,
            partial: Vec::new(),
            failed: None,
        }
    }

    /// The format this decoder reads.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The largest payload accepted, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Decodes `chunk`, the next bytes of the stream, calling `on_frame` for
    /// each frame it completes, in order. The frame slice is valid only
    /// during the call; it borrows from `chunk` when the frame lies inside it.
    ///
    /// On a frame longer than the maximum, returns [`FrameError::TooLong`]
    /// after `on_frame` has seen every frame before the bad one; the decoder
    /// is then failed (see the type's docs).
    pub fn feed<F>(&mut self, chunk: &[u8], mut on_frame: F) -> Result<(), FrameError>
    where
        F: FnMut(&[u8]),
    {
        self.feed_pieces(chunk, false, |piece| {
            if let Piece::Frame(frame) = piece {
                on_frame(frame);
            }
        })
    }

    /// As [`feed`](Self::feed), but with `runs` the whole frames that lie
    /// back to back in `chunk` (after the end of a frame an earlier chunk
    /// began) come as one [`Piece::Run`]: no call per frame, and for lines
    /// one search from the end and a count of newlines, not a search per
    /// line. A frame split across chunks comes as a [`Piece::Frame`], as
    /// does every frame with `runs` false.
    pub(crate) fn feed_pieces(
        &mut self,
        chunk: &[u8],
        runs: bool,
        mut on_piece: impl FnMut(Piece<'_>),
    ) -> Result<(), FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = match self.codec {
            Codec::Lines => self.feed_lines(chunk, runs, &mut on_piece),
            Codec::LengthPrefixed => self.feed_length_prefixed(chunk, runs, &mut on_piece),
        };
        if let Err(err) = &result {
            self.partial.clear();
            self.failed = Some(err.clone());
        }
        result
    }

    /// Bytes of an unfinished frame held in the decoder (header or partial
    /// line included); 0 between frames. Nonzero at end of input means the
    /// last frame was cut short.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Whether an error has failed the decoder.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Ends the stream: returns the error that failed the decoder if any,
    /// else [`FrameError::Truncated`] if part of a frame is buffered, else
    /// `Ok`. Either way the decoder is reset, ready for a new stream.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        let result = match self.failed.take() {
            Some(err) => Err(err),
            None if self.partial.is_empty() => Ok(()),
            None => Err(FrameError::Truncated {
                buffered: self.partial.len(),
            }),
        };
        self.reset();
        result
    }

    /// Drops any buffered partial frame and clears a failure, so the decoder
    /// can read a new stream. Keeps the buffer's capacity.
    pub fn reset(&mut self) {
        self.partial.clear();
        self.failed = None;
    }

    fn feed_lines(
        &mut self,
        mut chunk: &[u8],
        runs: bool,
        on_piece: &mut impl FnMut(Piece<'_>),
    ) -> Result<(), FrameError> {
        if !self.partial.is_empty() {
            match find_newline(chunk) {
                Some(end) => {
                    self.check(self.partial.len() + end)?;
                    self.hold(&chunk[..end]);
                    on_piece(Piece::Frame(&self.partial));
                    self.partial.clear();
                    chunk = &chunk[end + 1..];
                }
                None => {
                    self.check(self.partial.len() + chunk.len())?;
                    self.hold(chunk);
                    return Ok(());
                }
            }
        }
        if runs && let Some((wire, frames)) = whole_lines(chunk, self.max) {
            on_piece(Piece::Run { wire, frames });
            chunk = &chunk[wire.len()..];
        }
        // Line by line: without runs, and where a run was not shown to
        // hold only lines short enough (this finds the one too long).
        while let Some(end) = find_newline(chunk) {
            self.check(end)?;
            on_piece(Piece::Frame(&chunk[..end]));
            chunk = &chunk[end + 1..];
        }
        // Fail now rather than at the newline: memory stays bounded.
        self.check(chunk.len())?;
        self.hold(chunk);
        Ok(())
    }

    fn feed_length_prefixed(
        &mut self,
        mut chunk: &[u8],
        runs: bool,
        on_piece: &mut impl FnMut(Piece<'_>),
    ) -> Result<(), FrameError> {
        if !self.partial.is_empty() {
            if self.partial.len() < LENGTH_HEADER {
                let take = (LENGTH_HEADER - self.partial.len()).min(chunk.len());
                self.hold(&chunk[..take]);
                chunk = &chunk[take..];
                if self.partial.len() < LENGTH_HEADER {
                    return Ok(());
                }
                let len = self.check(header(&self.partial))?;
                self.room_for(LENGTH_HEADER + len);
            }
            let total = LENGTH_HEADER + header(&self.partial);
            let take = (total - self.partial.len()).min(chunk.len());
            self.hold(&chunk[..take]);
            chunk = &chunk[take..];
            if self.partial.len() < total {
                return Ok(());
            }
            on_piece(Piece::Frame(&self.partial[LENGTH_HEADER..]));
            self.partial.clear();
        }
        // The whole frames, `chunk[..at]`: one by one, or one run.
        let (mut at, mut frames) = (0, 0);
        let walked = loop {
            let Some(head) = chunk.get(at..at + LENGTH_HEADER) else {
                break Ok(());
            };
            let len = match self.check(header(head)) {
                Ok(len) => len,
                Err(err) => break Err(err),
            };
            let Some(frame) = chunk.get(at + LENGTH_HEADER..at + LENGTH_HEADER + len) else {
                // Room for the whole frame once, not as its pieces arrive.
                self.room_for(LENGTH_HEADER + len);
                break Ok(());
            };
            if !runs {
                on_piece(Piece::Frame(frame));
            }
            at += LENGTH_HEADER + len;
            frames += 1;
        };
        // The frames before a bad one come first.
        if runs && frames > 0 {
            on_piece(Piece::Run {
                wire: &chunk[..at],
                frames,
            });
        }
        walked?;
        self.hold(&chunk[at..]);
        Ok(())
    }

    /// Appends `bytes` to the partial frame.
    fn hold(&mut self, bytes: &[u8]) {
        self.room_for(self.partial.len() + bytes.len());
        self.partial.extend_from_slice(bytes);
    }

    /// Makes room for a partial frame of `total` bytes. The buffer grows by
    /// doubling, but never past the largest partial frame (the maximum
    /// payload and a header): a hostile length costs no more than that.
    fn room_for(&mut self, total: usize) {
        let capacity = self.partial.capacity();
        if total > capacity {
            let largest = self.max.saturating_add(LENGTH_HEADER).max(total);
            let want = total.max(capacity.saturating_mul(2)).min(largest);
            self.partial.reserve_exact(want - self.partial.len());
        }
    }

    /// Returns `len` if it is within the maximum.
    fn check(&self, len: usize) -> Result<usize, FrameError> {
        if len > self.max {
            Err(FrameError::TooLong { len, max: self.max })
        } else {
            Ok(len)
        }
    }
}

/// The payload length in a length-prefixed header at the start of `bytes`.
fn header(bytes: &[u8]) -> usize {
    let mut le = [0u8; LENGTH_HEADER];
    le.copy_from_slice(&bytes[..LENGTH_HEADER]);
    u32::from_le_bytes(le) as usize
}

/// Iterator over the payloads of encoded frames: see [`Codec::payloads`].
#[derive(Debug, Clone)]
pub struct Payloads<'a> {
    codec: Codec,
    wire: &'a [u8],
}

impl<'a> Iterator for Payloads<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (payload, rest) = match self.codec {
            Codec::Lines => {
                let end = find_newline(self.wire)?;
                (&self.wire[..end], &self.wire[end + 1..])
            }
            Codec::LengthPrefixed => {
                let len = header(self.wire.get(..LENGTH_HEADER)?);
                let frame = self.wire.get(LENGTH_HEADER..LENGTH_HEADER + len)?;
                (frame, &self.wire[LENGTH_HEADER + len..])
            }
        };
        self.wire = rest;
        Some(payload)
    }
}

/// Whole frames encoded with one codec, checked once: what
/// [`Proactor::send_checked`](crate::Proactor::send_checked) queues on any
/// number of senders without looking at the frames again. A router that
/// forwards each read's run ([`Event::Frames`](crate::Event::Frames)) to
/// its subscribers checks the run once, not once per subscriber.
///
/// ```
/// use ringpipe::frame::{Checked, Codec, FrameError};
/// let run = Checked::new(Codec::Lines, b"one\ntwo\n").unwrap();
/// assert_eq!(run.wire(), b"one\ntwo\n");
/// assert_eq!(
///     Checked::new(Codec::Lines, b"one\ntw").unwrap_err(),
///     FrameError::Truncated { buffered: 2 }
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Checked<'a> {
    codec: Codec,
    wire: &'a [u8],
}

impl<'a> Checked<'a> {
    /// Checks that `wire` is whole frames of `codec`: it fails with
    /// [`FrameError::Truncated`] (the bytes of the frame it ends inside)
    /// where `wire` ends inside a frame. Payload sizes are not checked
    /// here: a sender refuses a frame over `PIPE_BUF` it cannot write
    /// atomically, as [`Proactor::send_encoded`](crate::Proactor::send_encoded) does.
    pub fn new(codec: Codec, wire: &'a [u8]) -> Result<Checked<'a>, FrameError> {
        codec.check_whole(wire)?;
        Ok(Checked { codec, wire })
    }

    /// Frames a framed receiver's decoder cut from one read
    /// ([`Event::Frames`](crate::Event::Frames)): whole by construction,
    /// so not walked again (debug builds check it).
    pub(crate) fn decoded(codec: Codec, wire: &'a [u8]) -> Checked<'a> {
        debug_assert_eq!(codec.check_whole(wire), Ok(()));
        Checked { codec, wire }
    }

    /// The format of the frames.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The frames, encoded.
    pub fn wire(&self) -> &'a [u8] {
        self.wire
    }
}

#[inline]
fn find_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// What [`FrameDecoder::feed_pieces`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// One frame's payload, lent from the chunk or from the decoder.
    Frame(&'a [u8]),
    /// `frames` whole frames back to back in the chunk, encoded (headers
    /// or newlines included), each payload at most the decoder's maximum.
    Run { wire: &'a [u8], frames: usize },
}

/// The longest start of `bytes` made of whole lines and the number of
/// lines, if it has one and each payload is shown to be at most `max`
/// bytes; `None` otherwise (the caller goes line by line).
///
/// The check costs a search per `max / 2 + 1` bytes, not per line: if
/// every block of that many bytes holds a newline, no newline lies more
/// than `max + 1` bytes after the one before (or after the start), so no
/// payload is longer than `max`.
fn whole_lines(bytes: &[u8], max: usize) -> Option<(&[u8], usize)> {
    let last = memchr::memrchr(b'\n', bytes)?;
    let wire = &bytes[..=last];
    let block = max / 2 + 1;
    if !wire.chunks(block).all(|b| find_newline(b).is_some()) {
        return None;
    }
    Some((wire, bytecount::count(wire, b'\n')))
}

impl Codec {
    /// The payloads of `wire`, whole frames encoded in this format (an
    /// [`Event::Frames`](crate::Event::Frames)), in order, lent from it.
    /// Stops at the first frame that is not whole.
    pub fn payloads(self, wire: &[u8]) -> Payloads<'_> {
        Payloads { codec: self, wire }
    }

    /// `Ok` if `wire` is whole frames of this format (it ends where a frame
    /// does), else [`FrameError::Truncated`] with the bytes of the frame
    /// it ends inside: one search from the end for lines, a walk of the
    /// headers for length-prefixed frames.
    fn check_whole(self, wire: &[u8]) -> Result<(), FrameError> {
        let whole = match self {
            Codec::Lines => memchr::memrchr(b'\n', wire).map_or(0, |at| at + 1),
            Codec::LengthPrefixed => {
                let mut at = 0;
                while let Some(n) = wire.get(at..).and_then(|rest| self.frame_len(rest)) {
                    at += n;
                }
                at
            }
        };
        match wire.len() - whole {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    /// Cuts `wire`, whole frames already encoded in this format, into the
    /// longest runs of whole frames that fit in `PIPE_BUF` bytes, in order:
    /// `piece(run, true)`; a single frame longer than that comes as
    /// `piece(frame, false)`. Ending inside a frame fails with
    /// [`FrameError::Truncated`] (its bytes so far), after `piece` may have
    /// had runs of the whole frames before it: a caller that queues them
    /// takes them back on the error.
    pub(crate) fn atomic_runs(
        self,
        wire: &[u8],
        mut piece: impl FnMut(&[u8], bool),
    ) -> Result<(), FrameError> {
        match self {
            Codec::Lines => {
                self.check_whole(wire)?;
                let mut rest = wire;
                while !rest.is_empty() {
                    let window = &rest[..rest.len().min(PIPE_BUF)];
                    let cut = match memchr::memrchr(b'\n', window) {
                        Some(at) => at + 1,
                        None => {
                            // One line longer than PIPE_BUF (ends somewhere).
                            let end = find_newline(rest).map_or(rest.len(), |at| at + 1);
                            piece(&rest[..end], false);
                            rest = &rest[end..];
                            continue;
                        }
                    };
                    piece(&rest[..cut], true);
                    rest = &rest[cut..];
                }
            }
            Codec::LengthPrefixed => {
                // One walk: a run goes out once the next frame would take
                // it past PIPE_BUF, so a frame cut short is found after the
                // runs before it.
                let (mut start, mut at) = (0, 0);
                while at < wire.len() {
                    let Some(n) = self.frame_len(&wire[at..]) else {
                        return Err(FrameError::Truncated {
                            buffered: wire.len() - at,
                        });
                    };
                    if n > PIPE_BUF {
                        if start < at {
                            piece(&wire[start..at], true);
                        }
                        piece(&wire[at..at + n], false);
                        start = at + n;
                    } else if at + n - start > PIPE_BUF {
                        piece(&wire[start..at], true);
                        start = at;
                    }
                    at += n;
                }
                if start < wire.len() {
                    piece(&wire[start..], true);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
