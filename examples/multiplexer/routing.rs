//! Where each message goes, and what waits when it cannot go yet: the
//! prefix routes, the outputs and their counters, and each input's holding
//! area for messages a full output refused (backpressure). It decides
//! when an input pauses and resumes; it opens and closes nothing.

use std::collections::VecDeque;
use std::path::PathBuf;

use ringpipe::frame::{Codec, FrameDecoder, PIPE_BUF};
use ringpipe::{Error, Proactor, Sender};

use crate::Mux;
use crate::cli::Framing;

/// Prefix and output index, in command-line order; output 0 takes the rest.
#[derive(Debug, Default)]
pub struct Routes(pub Vec<(Vec<u8>, usize)>);

impl Routes {
    /// The output of the first route whose prefix starts `msg`, else 0.
    fn output_for(&self, msg: &[u8]) -> usize {
        self.0
            .iter()
            .find(|(prefix, _)| msg.starts_with(prefix))
            .map_or(0, |&(_, o)| o)
    }
}

#[derive(Debug)]
pub struct Output {
    pub path: PathBuf,
    pub tx: Sender,
    /// Refused a message: held messages for it wait for `Writable`.
    pub refused: bool,
    /// `close_after_flush` was called (shutting down).
    pub flushing: bool,
    pub closed: bool,
    /// The error that closed it, if any.
    pub failed: Option<String>,
    /// Messages and bytes (framing included) handed to the sender.
    pub msgs: u64,
    pub bytes: u64,
    /// Messages routed here after it failed.
    pub dropped: u64,
    /// Messages handed back unsent when it closed.
    pub unsent_msgs: u64,
    pub reconnects: u64,
}

impl Output {
    pub fn new(path: PathBuf, tx: Sender) -> Output {
        Output {
            path,
            tx,
            refused: false,
            flushing: false,
            closed: false,
            failed: None,
            msgs: 0,
            bytes: 0,
            dropped: 0,
            unsent_msgs: 0,
            reconnects: 0,
        }
    }
}

/// Frames of one input on their way to each output (indexed like the
/// outputs), borrowed from the events until sent.
#[derive(Debug)]
pub struct Batch<'a>(Vec<Vec<&'a [u8]>>);

impl Batch<'_> {
    pub fn new(outputs: usize) -> Self {
        Batch(vec![Vec::new(); outputs])
    }
}

/// Messages refused by a full output, waiting in their input's holding area,
/// in order. Bytes live in one reused buffer: no allocation per message.
/// Frames are kept encoded, and consecutive ones for one output form one
/// run, which goes out again with one `send_encoded`.
#[derive(Debug)]
pub struct Held {
    pub bytes: Vec<u8>,
    pub msgs: VecDeque<HeldMsg>,
    /// Held messages per output: a message goes straight out only if none
    /// for its output waits, so each (input, output) pair keeps its order.
    pub per_output: Vec<u32>,
}

/// A run of held messages for one output: `bytes[start..start + len]`,
/// encoded frames (or raw bytes), `msgs` of them.
#[derive(Debug)]
pub struct HeldMsg {
    pub out: usize,
    start: usize,
    len: usize,
    msgs: u32,
    done: bool,
}

impl Held {
    pub fn new(outputs: usize) -> Held {
        Held {
            bytes: Vec::new(),
            msgs: VecDeque::new(),
            per_output: vec![0; outputs],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Messages held, for every output.
    pub fn count(&self) -> u32 {
        self.per_output.iter().sum()
    }

    /// What is held for output `out` in `framing`'s units (messages, or
    /// bytes when raw).
    pub fn units_for(&self, out: usize, framing: Framing) -> u64 {
        let runs = self.msgs.iter().filter(|m| m.out == out);
        match framing.codec() {
            Some(_) => runs.map(|m| u64::from(m.msgs)).sum(),
            None => runs.map(|m| m.len as u64).sum(),
        }
    }

    /// Holds one message: a frame's payload, encoded with `codec`, or raw
    /// bytes.
    fn push(&mut self, out: usize, msg: &[u8], codec: Option<Codec>) {
        let start = self.bytes.len();
        match codec {
            // The payload came from a decoder of this codec: it encodes.
            Some(codec) => {
                if codec.encode(msg, &mut self.bytes).is_err() {
                    return;
                }
            }
            None => self.bytes.extend_from_slice(msg),
        }
        self.joined(out, start, 1);
    }

    /// Holds `msgs` whole frames, `wire` as read.
    fn push_wire(&mut self, out: usize, wire: &[u8], msgs: u32) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(wire);
        self.joined(out, start, msgs);
    }

    /// Counts `bytes[start..]`, just added, into the last run if it is for
    /// the same output, else into a new one.
    fn joined(&mut self, out: usize, start: usize, msgs: u32) {
        let len = self.bytes.len() - start;
        match self.msgs.back_mut() {
            Some(m) if m.out == out && !m.done && m.start + m.len == start => {
                m.len += len;
                m.msgs += msgs;
            }
            _ => self.msgs.push_back(HeldMsg {
                out,
                start,
                len,
                msgs,
                done: false,
            }),
        }
        self.per_output[out] += msgs;
    }

    /// Sends held messages, in order per output, until every output they
    /// wait for is refusing again, then forgets those sent.
    fn offer(&mut self, p: &mut Proactor, outputs: &mut [Output], framing: Framing, high: u64) {
        if let Some(codec) = framing.codec() {
            return self.offer_frames(p, outputs, codec, high);
        }
        // Outputs with messages here that may take them now. Stopping at
        // zero matters: thousands may wait, and a drained output takes a
        // watermark's worth before it refuses again.
        let mut open = (self.per_output.iter().zip(&*outputs))
            .filter(|&(&n, o)| n > 0 && !o.refused)
            .count();
        // Messages left behind (their output refuses) before one sent.
        let mut gaps = false;
        let mut skipped = false;
        for m in self.msgs.iter_mut() {
            if open == 0 {
                break;
            }
            let out = &mut outputs[m.out];
            if out.refused {
                skipped = true;
                continue;
            }
            let msg = &self.bytes[m.start..m.start + m.len];
            match send(p, out, framing, msg) {
                Sent::Yes | Sent::Dropped => {
                    m.done = true;
                    gaps |= skipped;
                    self.per_output[m.out] -= m.msgs;
                    if self.per_output[m.out] == 0 {
                        open -= 1;
                    }
                }
                Sent::Refused => {
                    skipped = true;
                    open -= 1;
                }
            }
        }
        while self.msgs.front().is_some_and(|m| m.done) {
            self.msgs.pop_front();
        }
        if gaps {
            self.msgs.retain(|m| !m.done);
        }
        if self.msgs.is_empty() {
            self.bytes.clear();
        }
    }
}

impl Held {
    /// As `offer`, for frames: each run held for an output that takes
    /// frames again goes with one `send_encoded` (a sender below its high
    /// watermark takes all of it), in order.
    fn offer_frames(&mut self, p: &mut Proactor, outputs: &mut [Output], codec: Codec, high: u64) {
        let Held {
            bytes,
            msgs,
            per_output,
        } = self;
        let mut any = false;
        for m in msgs.iter_mut() {
            let out = &mut outputs[m.out];
            if out.refused {
                continue;
            }
            let n = u64::from(m.msgs);
            if out.closed || out.failed.is_some() {
                out.dropped += n;
            } else {
                let wire = &bytes[m.start..m.start + m.len];
                if let Ok((left, left_msgs)) = send_run(p, out, codec, high, wire, m.msgs)
                    && !left.is_empty()
                {
                    // The output took the front of the run only, or none.
                    per_output[m.out] -= m.msgs - left_msgs;
                    m.start += m.len - left.len();
                    m.len = left.len();
                    m.msgs = left_msgs;
                    continue;
                }
            }
            m.done = true;
            any = true;
            per_output[m.out] -= m.msgs;
        }
        if any {
            msgs.retain(|m| !m.done);
        }
        if msgs.is_empty() {
            bytes.clear();
        }
    }
}

#[derive(Debug)]
enum Sent {
    Yes,
    Refused,
    /// The output is closed: the message is counted as undelivered.
    Dropped,
}

impl crate::Input {
    /// Holds a message an output cannot take now, and pauses reading.
    fn hold(&mut self, p: &mut Proactor, out: usize, msg: &[u8], codec: Option<Codec>) {
        self.held.push(out, msg, codec);
        self.pause_reading(p);
    }

    /// Stops reading until the holding area is empty again: the data waits
    /// in the pipe, the writers feel it fill.
    fn pause_reading(&mut self, p: &mut Proactor) {
        if !self.paused {
            self.paused = true;
            let _ = p.pause(self.rx);
        }
    }
}

impl Mux {
    /// Routes one message (a frame's payload, or a raw chunk) of input `i`:
    /// straight to its output, or, if that output is full or messages for
    /// it already wait, into the input's holding area, and the input
    /// pauses (its data waits in its pipe, its writers feel the pipe fill).
    pub fn route(&mut self, i: usize, msg: &[u8]) {
        let Mux {
            p,
            inputs,
            outputs,
            routes,
            framing,
            ..
        } = self;
        let framing = *framing;
        let input = &mut inputs[i];
        input.msgs += framing.units(msg);
        input.bytes += (msg.len() + framing.overhead()) as u64;
        let o = routes.output_for(msg);
        let held = &mut input.held;
        let goes = held.per_output[o] == 0
            && !outputs[o].refused
            && !matches!(send(p, &mut outputs[o], framing, msg), Sent::Refused);
        if !goes {
            input.hold(p, o, msg, framing.codec());
        }
    }

    /// Routes one frame's payload of input `i` like [`route`](Self::route),
    /// but a frame that may go straight out joins `batch`, which
    /// [`send_batch`](Self::send_batch) hands to the outputs, one call each.
    pub fn route_frame<'a>(&mut self, i: usize, msg: &'a [u8], batch: &mut Batch<'a>) {
        let Mux {
            p,
            inputs,
            outputs,
            routes,
            framing,
            ..
        } = self;
        let input = &mut inputs[i];
        input.msgs += 1;
        input.bytes += (msg.len() + framing.overhead()) as u64;
        let o = routes.output_for(msg);
        let out = &mut outputs[o];
        if input.held.per_output[o] == 0 && !out.refused {
            if out.closed || out.failed.is_some() {
                out.dropped += 1;
            } else {
                batch.0[o].push(msg);
            }
            return;
        }
        input.hold(p, o, msg, framing.codec());
    }

    /// Routes a run of whole frames of input `i`, `wire` as read: with no
    /// routes, and nothing held for or refused by the output, the run goes
    /// out with one `send_encoded` (no work per frame); else frame by frame
    /// as [`route_frame`](Self::route_frame).
    pub fn route_wire<'a>(
        &mut self,
        i: usize,
        wire: &'a [u8],
        frames: usize,
        batch: &mut Batch<'a>,
    ) {
        let Some(codec) = self.framing.codec() else {
            return;
        };
        let out = &self.outputs[0];
        if !self.routes.0.is_empty() || out.closed || out.failed.is_some() {
            for payload in codec.payloads(wire) {
                self.route_frame(i, payload, batch);
            }
            return;
        }
        // Frames of this input batched before the run go first.
        if !batch.0[0].is_empty() {
            self.send_batch(i, batch);
        }
        let (n, bytes) = (frames as u64, wire.len() as u64);
        self.inputs[i].msgs += n;
        self.inputs[i].bytes += bytes;
        let out = &mut self.outputs[0];
        let input = &mut self.inputs[i];
        let mut rest = (wire, frames as u32);
        if input.held.per_output[0] == 0 && !out.refused {
            match send_run(&mut self.p, out, codec, self.high, wire, frames as u32) {
                Ok(left) => rest = left,
                Err(()) => return,
            }
            if rest.0.is_empty() {
                return;
            }
        }
        // Refused, or others wait before it: the run waits as it is.
        let (wire, frames) = rest;
        input.held.push_wire(0, wire, frames);
        input.pause_reading(&mut self.p);
    }

    /// Sends the frames `batch` holds for each output, one call per
    /// output; those a full output refuses wait in input `i`'s holding
    /// area, in order, and the input pauses.
    pub fn send_batch(&mut self, i: usize, batch: &mut Batch<'_>) {
        let Some(codec) = self.framing.codec() else {
            return;
        };
        let overhead = self.framing.overhead() as u64;
        for (o, msgs) in batch.0.iter_mut().enumerate() {
            if msgs.is_empty() {
                continue;
            }
            let out = &mut self.outputs[o];
            let n = msgs.len() as u64;
            match self.p.send_frames(out.tx, codec, msgs) {
                Ok(()) => {
                    out.msgs += n;
                    out.bytes += msgs.iter().map(|m| m.len() as u64 + overhead).sum::<u64>();
                }
                Err(Error::WouldBlock { .. }) => {
                    out.refused = true;
                    let input = &mut self.inputs[i];
                    for msg in msgs.iter() {
                        input.hold(&mut self.p, o, msg, Some(codec));
                    }
                }
                Err(e) => {
                    eprintln!("multiplexer: {}: {e}", out.path.display());
                    out.failed.get_or_insert(e.to_string());
                    out.dropped += n;
                }
            }
            msgs.clear();
        }
    }

    /// Offers held messages to outputs that have room again; resumes inputs
    /// whose holding area emptied (unless stopping).
    pub fn drain_held(&mut self) {
        let n = self.inputs.len();
        for k in 0..n {
            let i = (self.next_drain + k) % n;
            let input = &mut self.inputs[i];
            input
                .held
                .offer(&mut self.p, &mut self.outputs, self.framing, self.high);
            if input.held.is_empty() && input.paused && !input.closed && self.stop.is_none() {
                input.paused = false;
                let _ = self.p.resume(input.rx);
            }
        }
        self.next_drain = (self.next_drain + 1) % n.max(1);
    }
}

/// Hands the front of a run of whole frames (`msgs` of them) to an output
/// with one `send_encoded`: as much as fits below its high watermark, plus
/// the frame that crosses it (so the sender is at its watermark and
/// promises `Writable`), never more than one frame beyond. Returns the
/// rest, empty when all went; on a refusal the output is marked refused.
/// `Err` when the output failed (the run counts as dropped).
fn send_run<'w>(
    p: &mut Proactor,
    out: &mut Output,
    codec: Codec,
    high: u64,
    wire: &'w [u8],
    msgs: u32,
) -> Result<(&'w [u8], u32), ()> {
    let unsent = p.stats(out.tx).map_or(0, |s| s.bytes_unsent());
    let room = high.saturating_sub(unsent) as usize;
    let (front, sent) = if wire.len() <= room {
        (wire, msgs)
    } else {
        let cut = first_frame_end_from(codec, wire, room);
        (&wire[..cut], codec.payloads(&wire[..cut]).count() as u32)
    };
    match p.send_encoded(out.tx, codec, front) {
        Ok(()) => {
            out.msgs += u64::from(sent);
            out.bytes += front.len() as u64;
            if front.len() < wire.len() {
                // At its watermark now: `Writable` follows.
                out.refused = true;
            }
            Ok((&wire[front.len()..], msgs - sent))
        }
        Err(Error::WouldBlock { .. }) => {
            out.refused = true;
            Ok((wire, msgs))
        }
        Err(e) => {
            eprintln!("multiplexer: {}: {e}", out.path.display());
            out.failed.get_or_insert(e.to_string());
            out.dropped += u64::from(msgs);
            Err(())
        }
    }
}

/// The end of the first frame of `wire` (whole frames) that ends at or
/// after `at` bytes: at least one frame.
fn first_frame_end_from(codec: Codec, wire: &[u8], at: usize) -> usize {
    match codec {
        Codec::Lines => {
            let from = at.saturating_sub(1).min(wire.len());
            memchr::memchr(b'\n', &wire[from..]).map_or(wire.len(), |nl| from + nl + 1)
        }
        _ => {
            let mut end = 0;
            for payload in codec.payloads(wire) {
                end += payload.len() + codec.overhead();
                if end >= at.max(1) {
                    break;
                }
            }
            end
        }
    }
}

/// Hands one message to an output.
fn send(p: &mut Proactor, out: &mut Output, framing: Framing, msg: &[u8]) -> Sent {
    if out.closed || out.failed.is_some() {
        out.dropped += framing.units(msg);
        return Sent::Dropped;
    }
    let result = match framing.codec() {
        Some(codec) => p.send_frames(out.tx, codec, &[msg]),
        None => p.send(out.tx, msg),
    };
    match result {
        Ok(()) => {
            out.msgs += framing.units(msg);
            out.bytes += (msg.len() + framing.overhead()) as u64;
            Sent::Yes
        }
        Err(Error::WouldBlock { .. }) => {
            out.refused = true;
            Sent::Refused
        }
        Err(e) => {
            eprintln!("multiplexer: {}: {e}", out.path.display());
            out.failed.get_or_insert(e.to_string());
            out.dropped += framing.units(msg);
            Sent::Dropped
        }
    }
}

/// Messages in bytes handed back unsent. Frames of at most `PIPE_BUF` bytes
/// are written whole or not at all, so the bytes start at a frame boundary.
pub fn count_messages(framing: Framing, bytes: &[u8]) -> u64 {
    match framing.codec() {
        None => bytes.len() as u64,
        Some(codec) => {
            let mut decoder = FrameDecoder::new(codec, PIPE_BUF);
            let mut n = 0;
            let _ = decoder.feed(bytes, |_| n += 1);
            n + u64::from(decoder.buffered() > 0)
        }
    }
}
