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
#[derive(Debug)]
pub struct Held {
    pub bytes: Vec<u8>,
    pub msgs: VecDeque<HeldMsg>,
    /// Held messages per output: a message goes straight out only if none
    /// for its output waits, so each (input, output) pair keeps its order.
    pub per_output: Vec<u32>,
}

#[derive(Debug)]
pub struct HeldMsg {
    pub out: usize,
    start: usize,
    len: usize,
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

    fn push(&mut self, out: usize, msg: &[u8]) {
        self.msgs.push_back(HeldMsg {
            out,
            start: self.bytes.len(),
            len: msg.len(),
            done: false,
        });
        self.bytes.extend_from_slice(msg);
        self.per_output[out] += 1;
    }

    /// The bytes of a held message.
    pub fn msg(&self, m: &HeldMsg) -> &[u8] {
        &self.bytes[m.start..m.start + m.len]
    }

    /// Sends held messages, in order per output, until every output they
    /// wait for is refusing again, then forgets those sent.
    fn offer(&mut self, p: &mut Proactor, outputs: &mut [Output], framing: Framing) {
        if let Some(codec) = framing.codec() {
            return self.offer_frames(p, outputs, framing, codec);
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
                    self.per_output[m.out] -= 1;
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
    /// As `offer`, for frames: all those held for an output that takes
    /// them again go in one call (a sender below its high watermark takes
    /// every frame of a call), in order.
    fn offer_frames(
        &mut self,
        p: &mut Proactor,
        outputs: &mut [Output],
        framing: Framing,
        codec: Codec,
    ) {
        let mut any = false;
        for (o, out) in outputs.iter_mut().enumerate() {
            if self.per_output[o] == 0 || out.refused {
                continue;
            }
            let n = u64::from(self.per_output[o]);
            let sent = if out.closed || out.failed.is_some() {
                out.dropped += n;
                true
            } else {
                let msgs: Vec<&[u8]> = (self.msgs.iter())
                    .filter(|m| m.out == o && !m.done)
                    .map(|m| &self.bytes[m.start..m.start + m.len])
                    .collect();
                let bytes = msgs
                    .iter()
                    .map(|m| m.len() + framing.overhead())
                    .sum::<usize>();
                match p.send_frames(out.tx, codec, &msgs) {
                    Ok(()) => {
                        out.msgs += n;
                        out.bytes += bytes as u64;
                        true
                    }
                    Err(Error::WouldBlock { .. }) => {
                        out.refused = true;
                        false
                    }
                    Err(e) => {
                        eprintln!("multiplexer: {}: {e}", out.path.display());
                        out.failed.get_or_insert(e.to_string());
                        out.dropped += n;
                        true
                    }
                }
            };
            if sent {
                any = true;
                self.per_output[o] = 0;
                for m in self.msgs.iter_mut().filter(|m| m.out == o) {
                    m.done = true;
                }
            }
        }
        if any {
            self.msgs.retain(|m| !m.done);
        }
        if self.msgs.is_empty() {
            self.bytes.clear();
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
            held.push(o, msg);
            if !input.paused {
                input.paused = true;
                let _ = p.pause(input.rx);
            }
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
        input.held.push(o, msg);
        if !input.paused {
            input.paused = true;
            let _ = p.pause(input.rx);
        }
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
                        input.held.push(o, msg);
                    }
                    if !input.paused {
                        input.paused = true;
                        let _ = self.p.pause(input.rx);
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
                .offer(&mut self.p, &mut self.outputs, self.framing);
            if input.held.is_empty() && input.paused && !input.closed && self.stop.is_none() {
                input.paused = false;
                let _ = self.p.resume(input.rx);
            }
        }
        self.next_drain = (self.next_drain + 1) % n.max(1);
    }
}

/// Hands one message to an output.
fn send(p: &mut Proactor, out: &mut Output, framing: Framing, msg: &[u8]) -> Sent {
    if out.closed || out.failed.is_some() {
        out.dropped += framing.units(msg);
        return Sent::Dropped;
    }
    let result = match framing.codec() {
        Some(codec) => p.send_frame(out.tx, codec, msg),
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
