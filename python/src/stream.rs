//! What a Python writer or reader shares with the proactor that drives
//! it: the bytes in between, the peer's comings and goings, errors and
//! the close report. Plain data behind a [`Gate`]; the proactor side
//! (`core.rs`) and the Python side (`writer.rs`, `reader.rs`) both change it.

use std::sync::{Arc, Mutex, OnceLock};

use ringpipe::frame::Codec;
use ringpipe::{Notifier, Token};

use crate::errors::ErrSpec;
use crate::gate::Gate;
use crate::queue::UnitQueue;

/// How a stream cuts its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A plain byte stream.
    Bytes,
    /// Frames in a codec: each `write()` one frame, each read one frame.
    Frames(Codec),
}

impl Framing {
    pub fn parse(name: Option<&str>) -> Result<Framing, String> {
        match name {
            None | Some("bytes") => Ok(Framing::Bytes),
            Some("lines") => Ok(Framing::Frames(Codec::Lines)),
            Some("length") => Ok(Framing::Frames(Codec::LengthPrefixed)),
            Some(other) => Err(format!(
                "framing must be None, 'bytes', 'lines' or 'length', not {other:?}"
            )),
        }
    }

    pub fn codec(self) -> Option<Codec> {
        match self {
            Framing::Bytes => None,
            Framing::Frames(codec) => Some(codec),
        }
    }
}

/// What a writer does when its buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room (up to the write's timeout).
    Block,
    /// Refuse the write with `ringpipe.WouldBlock`.
    Raise,
    /// Drop whole writes from the head of the buffer, and count them.
    DropOldest,
}

impl WhenFull {
    pub fn parse(name: &str) -> Result<WhenFull, String> {
        match name {
            "block" => Ok(WhenFull::Block),
            "raise" => Ok(WhenFull::Raise),
            "drop_oldest" => Ok(WhenFull::DropOldest),
            other => Err(format!(
                "when_full must be 'block', 'raise' or 'drop_oldest', not {other:?}"
            )),
        }
    }
}

/// Where a stream's peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A writer waiting for its first reader.
    Opening,
    /// The peer is there (a reader: open, whether a writer is there or not).
    Open,
    /// The peer left; a writer keeps every byte until the next reader.
    PeerGone,
    /// Everything released.
    Closed,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Opening => "opening",
            Phase::Open => "open",
            Phase::PeerGone => "peer_gone",
            Phase::Closed => "closed",
        }
    }
}

/// Everything a writer's `close()` can say.
#[derive(Debug, Clone, Default)]
pub struct CloseReport {
    /// Bytes never written into the pipe, in order (already framed).
    pub unsent: Vec<u8>,
    /// Bytes the kernel accepted into the pipe.
    pub written: u64,
    /// The reader read every written byte before the close.
    pub delivered: bool,
    /// Writes dropped by the `drop_oldest` policy, and their bytes.
    pub dropped_writes: u64,
    pub dropped_bytes: u64,
    /// Why it closed.
    pub reason: &'static str,
    /// The error that closed it, if one did.
    pub error: Option<ErrSpec>,
}

/// A writer's shared state.
#[derive(Debug)]
pub struct WriterState {
    pub token: Token,
    pub framing: Framing,
    /// Bytes not yet handed to the proactor, in whole writes.
    pub queue: UnitQueue,
    pub max_buffer: usize,
    pub when_full: WhenFull,
    /// Bytes accepted by `write()` (framing included).
    pub accepted: u64,
    /// Bytes the engine took out of `queue` and is handing over now.
    pub in_hand: u64,
    /// Bytes handed to the proactor's sender, and of those, written.
    pub handed: u64,
    pub written: u64,
    pub dropped_writes: u64,
    pub dropped_bytes: u64,
    pub phase: Phase,
    pub reconnects: u64,
    /// The sender is at its high watermark: wait for `Writable`.
    pub refused: bool,
    /// Queued on the inbox's dirty list, not yet pumped.
    pub dirty: bool,
    /// `close()` was called: `write()` refuses.
    pub closing: bool,
    /// Set once the sender has closed.
    pub report: Option<CloseReport>,
    /// A failure that ended the writer.
    pub error: Option<ErrSpec>,
}

impl WriterState {
    pub fn new(token: Token, framing: Framing, max_buffer: usize, when_full: WhenFull) -> Self {
        WriterState {
            token,
            framing,
            queue: UnitQueue::default(),
            max_buffer,
            when_full,
            accepted: 0,
            in_hand: 0,
            handed: 0,
            written: 0,
            dropped_writes: 0,
            dropped_bytes: 0,
            phase: Phase::Opening,
            reconnects: 0,
            refused: false,
            dirty: false,
            closing: false,
            report: None,
            error: None,
        }
    }

    /// Bytes accepted by `write()` and not yet in the pipe.
    pub fn pending(&self) -> u64 {
        self.queue.len() as u64 + self.in_hand + (self.handed - self.written)
    }
}

/// A reader's shared state.
#[derive(Debug)]
pub struct ReaderState {
    pub token: Token,
    pub framing: Framing,
    /// Bytes read and not yet taken by Python (whole frames when framed).
    pub data: UnitQueue,
    pub max_buffer: usize,
    /// The receiver is paused because `data` is full.
    pub paused: bool,
    /// Python took enough to resume it: the engine should.
    pub resume: bool,
    pub dirty: bool,
    /// Every writer left a one-shot reader: nothing more comes.
    pub eof: bool,
    /// Closed by `close()`.
    pub closed: bool,
    pub phase: Phase,
    /// Writers that came after the first one left.
    pub reconnects: u64,
    /// Bytes read from the pipe so far.
    pub bytes_read: u64,
    /// A failure that ended the reader.
    pub error: Option<ErrSpec>,
    /// Frames dropped because a writer left in the middle of one.
    pub broken_frames: u64,
}

impl ReaderState {
    pub fn new(token: Token, framing: Framing, max_buffer: usize) -> Self {
        ReaderState {
            token,
            framing,
            data: UnitQueue::default(),
            max_buffer,
            paused: false,
            resume: false,
            dirty: false,
            eof: false,
            closed: false,
            phase: Phase::Open,
            reconnects: 0,
            bytes_read: 0,
            error: None,
            broken_frames: 0,
        }
    }

    /// Nothing more will come: at EOF, closed, or failed.
    pub fn finished(&self) -> bool {
        self.eof || self.closed || self.error.is_some()
    }
}

/// Work for the proactor's thread that does not fit in a stream's state.
pub type Command = Box<dyn FnOnce(&mut crate::core::Core) + Send>;

/// Where Python threads leave work for the proactor: streams to look at
/// and commands to run, and how to wake it.
#[derive(Default)]
pub struct Inbox {
    pub dirty: Mutex<Vec<Token>>,
    pub commands: Mutex<Vec<Command>>,
    /// Wakes the engine thread's proactor; `None` for a proactor on an
    /// event loop, which the Python side runs itself.
    pub notifier: OnceLock<Notifier>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// Puts a stream on the dirty list and wakes the proactor.
    pub fn kick(&self, token: Token) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token);
        self.wake();
    }

    /// Queues a command and wakes the proactor.
    pub fn command(&self, command: Command) {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
        self.wake();
    }

    fn wake(&self) {
        if let Some(n) = self.notifier.get() {
            n.notify();
        }
    }
}

/// A writer as both sides hold it.
#[derive(Debug)]
pub struct WriterShared {
    pub path: String,
    /// As in the state, readable without its lock.
    pub framing: Framing,
    pub gate: Gate<WriterState>,
    pub inbox: Arc<Inbox>,
    /// The default `close()` timeout, also used at interpreter exit.
    pub close_timeout: Option<std::time::Duration>,
}

/// A reader as both sides hold it.
#[derive(Debug)]
pub struct ReaderShared {
    pub path: String,
    pub gate: Gate<ReaderState>,
    pub inbox: Arc<Inbox>,
}
