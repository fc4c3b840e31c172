//! The transport registry: what a transport is (its role, send side and
//! fd), handles and their lookup, and where each new transport goes.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::inotify::WatchDescriptor;

use super::Proactor;
use super::splice::Splice;
use super::stats::Counters;
use super::write::Writing;
use crate::error::{Error, Result};
use crate::event::CloseReason;
use crate::fifo::{FifoOptions, ReadMode, Reconnect};
use crate::frame::{Codec, FrameDecoder};
use crate::ring::{FileRef, OpId};
use crate::token::{Receiver, Sender, Token};
use crate::transport::{Chunk, State, WriteQueue};

/// How a receiver takes bytes out of its pipe (when it is not spliced
/// into senders, see [`Splice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadPath {
    /// Single-shot reads into a registered buffer, or into whatever buffer
    /// is free after a poll for data when none is.
    Fixed,
    /// One multishot read from the provided buffer ring shared by all
    /// receivers, and a poll for POLLHUP (`hup`) standing in for the EOF a
    /// FIFO's multishot read never reports.
    Multishot { hup: Option<OpId> },
    /// A multishot receiver whose writers left: single-shot reads until
    /// EOF, then multishot again on the reopened end.
    Draining,
}

impl ReadPath {
    /// The hang-up poll in flight, if any.
    pub(super) fn hup(self) -> Option<OpId> {
        match self {
            ReadPath::Multishot { hup } => hup,
            ReadPath::Fixed | ReadPath::Draining => None,
        }
    }
}

#[derive(Debug)]
pub(super) enum Role {
    Receiver {
        read: Option<OpId>,
        poll: Option<OpId>,
        bytes_read: u64,
        /// Survive writers leaving: reopen at EOF instead of closing.
        persistent: bool,
        /// Arm no read: the data waits in the pipe.
        paused: bool,
        /// Spliced (and teed) into senders instead of read: a relay or a
        /// fan-out.
        splice: Option<Box<Splice>>,
        /// How bytes leave the pipe while it is not spliced.
        path: ReadPath,
        /// Delivers whole frames instead of byte chunks.
        decoder: Option<Box<FrameDecoder>>,
    },
    Sender(Box<SendSide>),
}

#[derive(Debug)]
pub(super) struct SendSide {
    pub(super) queue: WriteQueue,
    /// The writes in flight, one linked chain, in order.
    pub(super) writing: VecDeque<Writing>,
    /// Chunks of the chain not written in full, back from their writes,
    /// with the first one's result: they return to the queue's front in
    /// order once the whole chain has completed.
    pub(super) returned: Vec<(u32, Chunk)>,
    pub(super) failed: Option<(u32, i32)>,
    pub(super) poll: Option<OpId>,
    pub(super) close_after_flush: bool,
    pub(super) pipe_size: Option<usize>,
    /// When waiting for a reader must end, and the wait it stands for.
    pub(super) deadline: Option<(Instant, Duration)>,
    pub(super) watch: Option<WatchDescriptor>,
    pub(super) reconnect: Reconnect,
    pub(super) high: u64,
    pub(super) low: u64,
    /// The queue went above `high`: report `Writable` once it is at `low`.
    pub(super) above_high: bool,
    /// The receiver relaying into this sender.
    pub(super) relayed_from: Option<Token>,
    /// Bytes of relays queued here (read before a relay took over, or
    /// filled in for a fan-out destination that fell short), by stream
    /// position: reported as `Relayed`, not `Sent`, once written.
    pub(super) relayed: VecDeque<RelayedRange>,
    /// Frames longer than `PIPE_BUF` are accepted (written non-atomically).
    pub(super) large_frames: bool,
}

/// Queued bytes of a relay: positions `start..end` of a sender's stream
/// (`WriteQueue::queued_total` counts them), from receiver `from`.
#[derive(Debug, Clone, Copy)]
pub(super) struct RelayedRange {
    pub(super) from: Receiver,
    pub(super) start: u64,
    pub(super) end: u64,
}

impl SendSide {
    pub(super) fn new(opts: &FifoOptions) -> SendSide {
        SendSide {
            queue: WriteQueue::default(),
            writing: VecDeque::new(),
            returned: Vec::new(),
            failed: None,
            poll: None,
            close_after_flush: false,
            pipe_size: opts.pipe_size,
            deadline: None,
            watch: None,
            reconnect: opts.reconnect,
            high: opts.high_watermark as u64,
            low: opts.low_watermark as u64,
            above_high: false,
            relayed_from: None,
            relayed: VecDeque::new(),
            large_frames: opts.large_frames,
        }
    }
}

#[derive(Debug)]
pub(super) struct Transport {
    pub(super) token: Token,
    pub(super) state: State,
    pub(super) role: Role,
    pub(super) fd: Option<OwnedFd>,
    pub(super) fixed: FixedSlot,
    pub(super) anchor: Option<OwnedFd>,
    /// The FIFO's path, or the label given with `Proactor::set_label`:
    /// what errors name the transport by. Boxed, not a `PathBuf`: a
    /// transport per FIFO, so 8 bytes count.
    pub(super) path: Option<Box<Path>>,
    /// Ring operations owned by this transport (cancels included).
    pub(super) inflight: u32,
    pub(super) reason: CloseReason,
    /// Frames, reconnects, waiting time, queue high water (see `Stats`).
    pub(super) counters: Counters,
}

/// A transport's registered-file slot, if any, in 4 bytes (an
/// `Option<u32>` takes 8, in every transport): the slot plus one, 0 for
/// none. Slots are below the ring's file table size, a `u32`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct FixedSlot(Option<NonZeroU32>);

impl FixedSlot {
    pub(super) fn new(slot: Option<u32>) -> FixedSlot {
        FixedSlot(slot.map(|s| NonZeroU32::MIN.saturating_add(s)))
    }

    pub(super) fn get(self) -> Option<u32> {
        self.0.map(|n| n.get() - 1)
    }

    pub(super) fn take(&mut self) -> Option<u32> {
        self.0.take().map(|n| n.get() - 1)
    }
}

impl Transport {
    pub(super) fn file(&self) -> Option<FileRef> {
        match (self.fixed.get(), &self.fd) {
            (Some(slot), _) => Some(FileRef::Fixed(slot)),
            (None, Some(fd)) => Some(FileRef::Raw(fd.as_raw_fd())),
            (None, None) => None,
        }
    }

    /// The send side of a transport known to be a sender: every public
    /// call checks the role of its handle first (`live_sender`), and the
    /// proactor only stores senders' indices where senders are expected.
    pub(super) fn sender(&mut self) -> &mut SendSide {
        match &mut self.role {
            Role::Sender(s) => s,
            Role::Receiver { .. } => unreachable!("internal: sender index maps to a receiver"),
        }
    }

    /// The FIFO's path or label, for an error (empty for an unlabelled
    /// adopted fd).
    pub(super) fn path_buf(&self) -> PathBuf {
        self.name().unwrap_or_default()
    }

    /// The FIFO's path or label, for an error that names the transport.
    pub(super) fn name(&self) -> Option<PathBuf> {
        self.path.as_deref().map(Path::to_path_buf)
    }

    pub(super) fn describe(&self) -> String {
        match (&self.path, &self.fd) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(fd)) => format!("fd {}", fd.as_raw_fd()),
            (None, None) => format!("{:?}", self.token),
        }
    }
}

pub(super) fn receiver_role(
    persistent: bool,
    multishot: bool,
    frames: Option<(Codec, usize)>,
) -> Role {
    Role::Receiver {
        read: None,
        poll: None,
        bytes_read: 0,
        persistent,
        paused: false,
        splice: None,
        path: if multishot {
            ReadPath::Multishot { hup: None }
        } else {
            ReadPath::Fixed
        },
        decoder: frames.map(|(codec, max)| Box::new(FrameDecoder::new(codec, max))),
    }
}

impl Proactor {
    pub(super) fn insert(
        &mut self,
        state: State,
        role: Role,
        anchor: Option<OwnedFd>,
        path: Option<Box<Path>>,
    ) -> Token {
        let entry = self.transports.vacant_entry();
        let index = entry.key();
        if index >= self.generations.len() {
            self.generations.resize(index + 1, 0);
        }
        let token = Token {
            index: index as u32,
            generation: self.generations[index],
            proactor: self.id,
        };
        entry.insert(Transport {
            token,
            state,
            role,
            fd: None,
            fixed: FixedSlot::default(),
            anchor,
            path,
            inflight: 0,
            reason: CloseReason::Requested,
            counters: Counters::new(state),
        });
        token
    }

    /// The live transport of `token` (`None`: closed, slot not reused).
    pub(super) fn slot(&self, token: Token) -> Result<Option<&Transport>> {
        if token.proactor != self.id {
            return Err(Error::Foreign {
                token,
                this: self.id,
            });
        }
        let index = token.index as usize;
        let current = *self.generations.get(index).ok_or(Error::Stale { token })?;
        match self.transports.get(index) {
            Some(t) if t.token == token => Ok(Some(t)),
            None if token.generation.wrapping_add(1) == current => Ok(None),
            _ => Err(Error::Stale { token }),
        }
    }

    /// Index of a transport that accepts operations (not closing or closed).
    pub(super) fn live(&self, token: Token) -> Result<usize> {
        match self.slot(token)? {
            Some(t) if t.state != State::Closing => Ok(token.index as usize),
            _ => Err(Error::Closed { token }),
        }
    }

    /// Index of a live sender. Within one proactor a `Sender` always names
    /// a sender's slot (a reused slot has a new generation); the role is
    /// checked anyway, so no handle can reach the wrong kind of transport.
    pub(super) fn live_sender(&self, s: Sender) -> Result<usize> {
        let idx = self.live(s.0)?;
        match self.transports[idx].role {
            Role::Sender(_) => Ok(idx),
            Role::Receiver { .. } => Err(Error::Stale { token: s.0 }),
        }
    }

    /// Index of a live receiver (see [`live_sender`](Self::live_sender)).
    pub(super) fn live_receiver(&self, r: Receiver) -> Result<usize> {
        let idx = self.live(r.0)?;
        match self.transports[idx].role {
            Role::Receiver { .. } => Ok(idx),
            Role::Sender(_) => Err(Error::Stale { token: r.0 }),
        }
    }

    pub(super) fn install_fd(&mut self, idx: usize, fd: OwnedFd) {
        let fixed = self.ring.register_file(fd.as_raw_fd());
        let t = &mut self.transports[idx];
        t.fixed = FixedSlot::new(fixed);
        t.fd = Some(fd);
    }

    pub(super) fn multishot(&self, opts: &FifoOptions) -> bool {
        self.multishot_ok && opts.read_mode.unwrap_or(self.read_mode) == ReadMode::Multishot
    }
}

#[cfg(test)]
mod layout {
    /// One transport per FIFO: its size is most of the proactor's memory
    /// with many idle FIFOs.
    #[test]
    fn a_transport_takes_120_bytes() {
        assert_eq!(std::mem::size_of::<super::Transport>(), 120);
    }

    #[test]
    fn a_fixed_slot_round_trips() {
        use super::FixedSlot;
        for slot in [None, Some(0), Some(7), Some(u32::MAX - 1)] {
            let mut f = FixedSlot::new(slot);
            assert_eq!(f.get(), slot);
            assert_eq!(f.take(), slot);
            assert_eq!(f.get(), None);
        }
    }
}
