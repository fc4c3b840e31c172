//! Frames into a sender's queue: payloads to encode, or frames already
//! on the wire, each frame of at most `PIPE_BUF` bytes kept whole in one atomic
//! write, all or nothing.

use std::rc::Rc;

use crate::buffers::Pool;
use crate::frame::{Checked, Codec, FrameError, PIPE_BUF};
use crate::transport::WriteQueue;

/// Why a frame call queued nothing.
#[derive(Debug)]
pub(in crate::proactor) enum Refused {
    /// The codec cannot carry a payload, or `wire` is not whole frames.
    Frame(FrameError),
    /// A frame of this many bytes on the wire is over `PIPE_BUF` and the
    /// sender keeps frames atomic.
    TooLarge(usize),
}

/// Queues `payload` encoded with `codec` as one frame; over `PIPE_BUF`
/// only if `large` frames are allowed.
#[inline]
fn push_frame(
    q: &mut WriteQueue,
    pool: &Rc<Pool>,
    large: bool,
    codec: Codec,
    payload: &[u8],
) -> Result<(), Refused> {
    let len = payload.len() + codec.overhead();
    codec
        .with_parts(payload, |parts| {
            if len > PIPE_BUF && !large {
                return Err(Refused::TooLarge(len));
            }
            q.push_message(pool, parts);
            Ok(())
        })
        .map_err(Refused::Frame)?
}

/// Queues each payload as a frame, in order, or none of them.
pub(in crate::proactor) fn push_frames<P: AsRef<[u8]>>(
    q: &mut WriteQueue,
    pool: &Rc<Pool>,
    large: bool,
    codec: Codec,
    payloads: &[P],
) -> Result<(), Refused> {
    let mark = q.mark();
    for payload in payloads {
        if let Err(refused) = push_frame(q, pool, large, codec, payload.as_ref()) {
            q.rollback(mark);
            return Err(refused);
        }
    }
    Ok(())
}

/// Queues `wire`, whole frames already encoded with `codec`, cut at frame
/// boundaries into atomic runs; all or nothing.
pub(in crate::proactor) fn push_encoded(
    q: &mut WriteQueue,
    pool: &Rc<Pool>,
    large: bool,
    codec: Codec,
    wire: &[u8],
) -> Result<(), Refused> {
    if q.sole_writer {
        let frames = Checked::new(codec, wire).map_err(Refused::Frame)?;
        return push_checked(q, pool, large, &frames);
    }
    push_runs(q, pool, large, codec, wire)
}

/// Queues whole frames checked before: a sole writer's as they are (no
/// walk), written in runs up to the pipe's size; anyone else's cut into
/// atomic runs.
pub(in crate::proactor) fn push_checked(
    q: &mut WriteQueue,
    pool: &Rc<Pool>,
    large: bool,
    frames: &Checked<'_>,
) -> Result<(), Refused> {
    if q.sole_writer {
        q.push(pool, frames.wire());
        return Ok(());
    }
    push_runs(q, pool, large, frames.codec(), frames.wire())
}

/// Queues `wire` cut at frame boundaries into runs of at most `PIPE_BUF`
/// bytes, each an atomic write; all or nothing.
fn push_runs(
    q: &mut WriteQueue,
    pool: &Rc<Pool>,
    large: bool,
    codec: Codec,
    wire: &[u8],
) -> Result<(), Refused> {
    let mark = q.mark();
    let mut too_large = None;
    let cut = codec.atomic_runs(wire, |run, atomic| match (atomic, too_large) {
        (_, Some(_)) => {}
        (true, None) => q.push_message(pool, &[run]),
        (false, None) if large => q.push(pool, run),
        (false, None) => too_large = Some(run.len()),
    });
    let refused = match (cut, too_large) {
        (Ok(()), None) => return Ok(()),
        (Err(err), _) => Refused::Frame(err),
        (Ok(()), Some(len)) => Refused::TooLarge(len),
    };
    // All or nothing: the runs queued before the refusal go.
    q.rollback(mark);
    Err(refused)
}
