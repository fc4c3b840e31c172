//! What a hub takes in: its source's frames (one by one, as runs, or raw
//! bytes it decodes itself, one writer's session at a time) and published
//! ones, staged into the next chunk; and the count of every frame it could
//! not take. No I/O here.

use std::rc::Rc;

use super::queue::{Chunk, Spares};
use crate::frame::{Codec, FrameDecoder, FrameError};

/// Frames the hub could not take, and why (the first reason, for a run).
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) frames: u64,
    pub(super) error: FrameError,
}

#[derive(Debug)]
pub(super) struct Intake {
    codec: Codec,
    /// For a source that delivers raw bytes: one writer's session at a
    /// time, reset when it ends.
    decoder: FrameDecoder,
    /// Frames taken since the last publish; shared only once taken.
    staged: Rc<Chunk>,
    pub(super) rejected: u64,
    pub(super) truncated: u64,
}

impl Intake {
    pub(super) fn new(codec: Codec, max_frame: usize) -> Intake {
        Intake {
            codec,
            decoder: FrameDecoder::new(codec, max_frame),
            staged: Rc::default(),
            rejected: 0,
            truncated: 0,
        }
    }

    fn refuse(&mut self, frames: u64, error: FrameError) -> Refused {
        self.rejected += frames;
        Refused { frames, error }
    }

    /// Stages one payload, encoded in the hub's codec, or counts it
    /// rejected (a newline in a line).
    pub(super) fn frame(&mut self, payload: &[u8]) -> Result<(), Refused> {
        let codec = self.codec;
        // Never shared while staged: this borrows it in place.
        let staged = Rc::make_mut(&mut self.staged);
        match codec.encode(payload, &mut staged.bytes) {
            Ok(()) => {
                staged.end_frame();
                Ok(())
            }
            Err(error) => Err(self.refuse(1, error)),
        }
    }

    /// Stages a run of `frames` whole frames already on the wire, copied as
    /// they are; a run that is not exactly that many frames of the hub's
    /// codec is rejected whole.
    pub(super) fn run(&mut self, wire: &[u8], frames: usize) -> Result<(), Refused> {
        let codec = self.codec;
        let staged = Rc::make_mut(&mut self.staged);
        let (base, before) = (staged.bytes.len(), staged.ends.len());
        let walked = frame_ends(codec, wire, base, &mut staged.ends);
        let counted = staged.ends.len() - before;
        match walked {
            Ok(()) if counted == frames => {
                staged.bytes.extend_from_slice(wire);
                Ok(())
            }
            other => {
                staged.ends.truncate(before);
                let error = other.err().unwrap_or(FrameError::Truncated {
                    buffered: wire.len(),
                });
                Err(self.refuse(frames as u64, error))
            }
        }
    }

    /// Decodes raw bytes of the source, staging each whole frame. A bad
    /// frame is rejected once, and ends the framing of its writer's
    /// session: the rest of it is skipped until [`session_end`].
    ///
    /// [`session_end`]: Self::session_end
    pub(super) fn data(&mut self, bytes: &[u8]) -> Result<(), Refused> {
        if self.decoder.is_failed() {
            return Ok(());
        }
        let (codec, staged) = (self.codec, Rc::make_mut(&mut self.staged));
        let mut bad: Option<Refused> = None;
        let fed = self.decoder.feed(bytes, |frame| {
            // Decoded in this codec, so it encodes in it too; counted all
            // the same should that ever fail.
            match codec.encode(frame, &mut staged.bytes) {
                Ok(()) => staged.end_frame(),
                Err(error) => bad.get_or_insert(Refused { frames: 0, error }).frames += 1,
            }
        });
        if let Err(error) = fed {
            bad.get_or_insert(Refused { frames: 0, error }).frames += 1;
        }
        match bad {
            Some(r) => Err(self.refuse(r.frames, r.error)),
            None => Ok(()),
        }
    }

    /// A writer's session ended (or the source did): a frame it left
    /// unfinished is counted truncated, returning its bytes so far, and
    /// the next session starts clean.
    pub(super) fn session_end(&mut self) -> Option<usize> {
        let buffered = self.decoder.buffered();
        let cut = !self.decoder.is_failed() && buffered > 0;
        self.decoder.reset();
        if cut {
            self.truncated += 1;
        }
        cut.then_some(buffered)
    }

    /// Counts a bad frame that a framed source's own decoder found.
    /// Returns whether it was a truncated one (else rejected).
    pub(super) fn source_error(&mut self, error: &FrameError) -> bool {
        let truncated = matches!(error, FrameError::Truncated { .. });
        if truncated {
            self.truncated += 1;
        } else {
            self.rejected += 1;
        }
        truncated
    }

    /// Counts one frame offered after the end.
    pub(super) fn too_late(&mut self) -> Refused {
        self.refuse(1, FrameError::Ended)
    }

    /// The frames staged so far, as one chunk to share, if there are any;
    /// staging goes on in a fresh one from `spares`.
    pub(super) fn take(&mut self, spares: &mut Spares) -> Option<Rc<Chunk>> {
        if self.staged.is_empty() {
            return None;
        }
        Some(std::mem::replace(&mut self.staged, spares.take()))
    }

    #[cfg(test)]
    pub(super) fn staged(&self) -> &Chunk {
        &self.staged
    }
}

/// Pushes where each frame of `wire` (whole frames of `codec`) ends,
/// offset by `base`; fails if `wire` ends inside a frame.
fn frame_ends(
    codec: Codec,
    wire: &[u8],
    base: usize,
    ends: &mut Vec<usize>,
) -> Result<(), FrameError> {
    let mut at = 0;
    while let Some(rest) = wire.get(at..).filter(|r| !r.is_empty()) {
        let Some(len) = codec.frame_len(rest) else {
            return Err(FrameError::Truncated {
                buffered: rest.len(),
            });
        };
        at += len;
        ends.push(base + at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(codec: Codec, frames: &[&[u8]]) -> Vec<u8> {
        let mut wire = Vec::new();
        for f in frames {
            codec.encode(f, &mut wire).unwrap();
        }
        wire
    }

    /// A run is copied as it is, one end per frame; a run that is not
    /// whole frames of the hub's codec is rejected whole, counted, and
    /// stages nothing.
    #[test]
    fn runs_are_staged_whole_or_rejected_whole() {
        let mut intake = Intake::new(Codec::LengthPrefixed, 100);
        let wire = wire(Codec::LengthPrefixed, &[b"ab", b"", b"cde"]);
        intake.run(&wire, 3).unwrap();
        assert_eq!(intake.staged().ends, [6, 10, 17]);
        for (bad, frames) in [(&wire[..16], 3), (&wire[..], 2)] {
            let r = intake.run(bad, frames).unwrap_err();
            assert_eq!(r.frames, frames as u64);
        }
        assert_eq!(intake.rejected, 5);
        assert_eq!(intake.staged().bytes, wire);
        assert_eq!(intake.staged().ends.len(), 3);
    }

    /// A payload the codec cannot carry loses only itself.
    #[test]
    fn a_bad_payload_loses_only_itself() {
        let mut intake = Intake::new(Codec::Lines, 100);
        intake.frame(b"one").unwrap();
        let r = intake.frame(b"t\nwo").unwrap_err();
        assert_eq!(r.error, FrameError::NewlineInPayload { at: 1 });
        intake.frame(b"three").unwrap();
        assert_eq!(intake.staged().bytes, b"one\nthree\n");
        assert_eq!(intake.rejected, 1);
    }

    /// Raw bytes: a frame cut by the end of its writer's session is
    /// counted truncated and never joined to the next session's bytes; a
    /// bad frame is rejected once and skips the rest of its session only.
    #[test]
    fn sessions_of_raw_bytes_start_clean() {
        let mut intake = Intake::new(Codec::LengthPrefixed, 8);
        let mut first = wire(Codec::LengthPrefixed, &[b"a"]);
        first.extend_from_slice(&[6, 0, 0, 0, b'x']);
        intake.data(&first).unwrap();
        assert_eq!(intake.session_end(), Some(5));
        intake.data(&wire(Codec::LengthPrefixed, &[b"b"])).unwrap();
        assert_eq!(intake.session_end(), None);
        assert_eq!(
            intake.staged().bytes,
            wire(Codec::LengthPrefixed, &[b"a", b"b"])
        );

        let mut bad = wire(Codec::LengthPrefixed, &[b"c"]);
        bad.extend_from_slice(&[9, 0, 0, 0]);
        let r = intake.data(&bad).unwrap_err();
        assert_eq!(r.error, FrameError::TooLong { len: 9, max: 8 });
        intake
            .data(&wire(Codec::LengthPrefixed, &[b"skipped"]))
            .unwrap();
        assert_eq!(intake.session_end(), None, "a failed session is not cut");
        intake.data(&wire(Codec::LengthPrefixed, &[b"d"])).unwrap();
        let payloads: Vec<&[u8]> = Codec::LengthPrefixed
            .payloads(&intake.staged().bytes)
            .collect();
        assert_eq!(payloads, [&b"a"[..], b"b", b"c", b"d"]);
        assert_eq!((intake.rejected, intake.truncated), (1, 1));
    }
}
