//! A receiver: how it takes bytes out of its pipe and hands them on. It
//! owns its operations and handles their completions (`read`: single-shot
//! reads, `multishot`: the multishot read and its hang-up poll), delivers
//! what it read as `Data` or frames (`deliver`), and reopens its FIFO at
//! EOF if it is persistent. What follows that it cannot do alone (failing
//! the transport, arming a splice, handing bytes to the senders it is
//! spliced into) it returns as a [`Next`] for the proactor to route.

mod deliver;
mod multishot;
mod read;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;

use super::end::End;
use super::io::Io;
use super::splice::Splice;
use crate::buffers::{Buf, PROVIDED_GROUP, Pool, SELECT_GROUP};
use crate::error::Error;
use crate::fifo::ReadMode;
use crate::frame::{Codec, FrameDecoder};
use crate::ring::OpId;
use crate::token::Token;

/// How a receiver reads while it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadPath {
    /// Single-shot reads: into a buffer the kernel picks from the provided
    /// ring, into a registered buffer while the receiver streams, or after
    /// a poll for data into whatever buffer is free.
    Fixed,
    /// One multishot read from the provided buffer ring shared by all
    /// receivers, and a poll for POLLHUP standing in for the EOF a FIFO's
    /// multishot read never reports.
    Multishot,
    /// A multishot receiver whose writers left: single-shot reads until
    /// EOF, then multishot again on the reopened end.
    Draining,
}

/// Where a receiver's bytes go when they are not read and reported as
/// plain `Data` (a receiver holds `None` then, in 8 bytes for all three
/// cases; a `pause` stops either: see `ReceiverSide::paused`).
#[derive(Debug)]
pub(super) enum Feed {
    /// Read into user space by its [`ReadPath`], reported as whole frames.
    Frames(FrameDecoder),
    /// Spliced into senders in the kernel (a relay, a fan-out). A framed
    /// receiver's decoder waits here for the reads after the splice.
    Spliced(Box<Splice>, Option<FrameDecoder>),
}

/// Provided buffers kept in the kernel beyond one per transport.
const RESERVE_SPARE: usize = 8;

/// The proactor's read configuration, and the receivers waiting for it.
#[derive(Debug)]
pub(super) struct Reads {
    /// The kernel has multishot reads and the provided rings are
    /// registered.
    pub(super) multishot_ok: bool,
    /// Multishot receivers whose read ended for lack of buffers, oldest
    /// first: armed again at the next `poll`s, once lent buffers are back,
    /// as many at a time as the ring has buffers for. A receiver closed
    /// meanwhile leaves its token behind, skipped.
    pub(super) starved: VecDeque<Token>,
    /// Receivers still marked starved (`ReceiverSide::starved`): the
    /// queue's live entries.
    pub(super) starved_live: usize,
    /// A `STARVED_WAKE` is in flight.
    pub(super) wake_armed: bool,
}

impl Reads {
    /// Whether a receiver opened with `mode` reads multishot (not where
    /// the kernel or the locked-memory budget lacks it).
    pub(super) fn multishot(&self, mode: ReadMode) -> bool {
        self.multishot_ok && mode == ReadMode::Multishot
    }

    /// Makes the provided ring a receiver reads from (multishot or not)
    /// hold a buffer in the kernel for each of `transports`, and a few
    /// more: every reader may complete in the same enter, and growing on
    /// -ENOBUFS comes an enter too late for that batch.
    pub(super) fn reserve(&self, pool: &Pool, multishot: bool, transports: usize) {
        let group = match multishot {
            true => PROVIDED_GROUP,
            false => SELECT_GROUP,
        };
        pool.reserve_provided(group, transports + RESERVE_SPARE);
    }
}

#[derive(Debug)]
pub(super) struct ReceiverSide {
    /// The read in flight, single-shot or multishot.
    read: Option<OpId>,
    /// The poll in flight: on the multishot path the hang-up poll, on the
    /// single-shot ones the poll for data (no buffer was free to read
    /// into). One field for both: a receiver per FIFO, so 8 bytes count.
    poll: Option<OpId>,
    /// Bytes read into user space (see `Stats::bytes_read`).
    pub(super) bytes_read: u64,
    /// Frames or a splice; `None`: plain `Data`.
    feed: Option<Box<Feed>>,
    /// `Proactor::pause`: nothing waits for data (no read, no splice
    /// wait is armed); the data waits in the pipe.
    paused: bool,
    path: ReadPath,
    /// Survive writers leaving: reopen at EOF instead of closing.
    persistent: bool,
    /// Which hang-up polls are in flight, on the multishot path.
    hups: multishot::HangUps,
    /// In the proactor's queue of reads starved for buffers
    /// (`Reads::starved`).
    pub(super) starved: bool,
}

/// What the proactor does after a receiver handled a completion.
#[derive(Debug)]
pub(super) enum Next {
    Done,
    /// The bytes read were delivered: arm the next read (with the size
    /// just read).
    Rearm(usize),
    /// `n` bytes were read into `buf` just before a splice took over:
    /// they go to its senders, then the next read is armed if `rearm`
    /// says so.
    Forward {
        buf: Buf,
        n: usize,
        rearm: Option<usize>,
    },
    /// Arm what the receiver lacks (its splice, if it is spliced now).
    Arm,
    /// Every writer left.
    Eof,
    /// The shared provided ring ran dry: arm again once buffers are back.
    Starved,
    /// An operation failed: the transport fails.
    Fail(Error),
    /// An operation could not be submitted: the transport fails.
    Unsubmitted(io::Error),
}

/// What [`ReceiverSide::arm`] asks of the proactor.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Armed {
    Done,
    /// The receiver is spliced: arm the splice instead.
    Splice,
}

/// What a receiver's EOF leads to.
#[derive(Debug)]
pub(super) enum Eof {
    /// A persistent receiver opened a fresh read end: arm it.
    Reopened,
    /// A one-shot receiver is done.
    Close,
    Fail(Error),
}

impl ReceiverSide {
    pub(super) fn new(persistent: bool, multishot: bool, frames: Option<(Codec, usize)>) -> Self {
        ReceiverSide {
            read: None,
            poll: None,
            bytes_read: 0,
            feed: frames.map(|(codec, max)| Box::new(Feed::Frames(FrameDecoder::new(codec, max)))),
            paused: false,
            path: if multishot {
                ReadPath::Multishot
            } else {
                ReadPath::Fixed
            },
            persistent,
            hups: multishot::HangUps::default(),
            starved: false,
        }
    }

    /// Whether a read or a poll for data is in flight.
    pub(super) fn armed(&self) -> bool {
        self.read.is_some() || (self.path != ReadPath::Multishot && self.poll.is_some())
    }

    /// Whether reading (or splicing) is paused.
    pub(super) fn paused(&self) -> bool {
        self.paused
    }

    /// The splice this receiver feeds, if it is spliced.
    pub(super) fn splice(&self) -> Option<&Splice> {
        match self.feed.as_deref() {
            Some(Feed::Spliced(s, _)) => Some(s),
            _ => None,
        }
    }

    pub(super) fn splice_mut(&mut self) -> Option<&mut Splice> {
        match self.feed.as_deref_mut() {
            Some(Feed::Spliced(s, _)) => Some(s),
            _ => None,
        }
    }

    /// Whether the receiver is spliced (else it reads).
    fn spliced(&self) -> bool {
        matches!(self.feed.as_deref(), Some(Feed::Spliced(..)))
    }

    /// The frame decoder, if the receiver decodes frames.
    fn decoder(&self) -> Option<&FrameDecoder> {
        match self.feed.as_deref() {
            Some(Feed::Frames(d) | Feed::Spliced(_, Some(d))) => Some(d),
            _ => None,
        }
    }

    fn decoder_mut(&mut self) -> Option<&mut FrameDecoder> {
        match self.feed.as_deref_mut() {
            Some(Feed::Frames(d) | Feed::Spliced(_, Some(d))) => Some(d),
            _ => None,
        }
    }

    /// Stops reading: the receiver's operations to cancel. A splice stops
    /// waiting for data (see `Splice::pause_ops`). A read that completes
    /// before its cancel still delivers.
    pub(super) fn pause(&mut self) -> impl Iterator<Item = Option<OpId>> + use<> {
        self.paused = true;
        let spliced = match self.splice_mut() {
            None => Vec::new(),
            Some(s) => s.pause_ops(),
        };
        let own = [self.read, self.poll];
        own.into_iter().chain(spliced.into_iter().map(Some))
    }

    /// Reads (or splices) again after `pause`. Returns whether the
    /// receiver must be armed: nothing of its own is in flight.
    pub(super) fn resume(&mut self) -> bool {
        self.paused = false;
        !self.armed()
    }

    /// Hands the pipe to `splice`. Returns the reads to cancel: one that
    /// completes first is queued on the senders ahead of every spliced
    /// byte. (A splice sees EOF itself: no hang-up poll is needed.)
    pub(super) fn start_splice(&mut self, splice: Box<Splice>) -> [Option<OpId>; 2] {
        let frames = match self.feed.take().map(|f| *f) {
            Some(Feed::Frames(d) | Feed::Spliced(_, Some(d))) => Some(d),
            Some(Feed::Spliced(_, None)) | None => None,
        };
        self.feed = Some(Box::new(Feed::Spliced(splice, frames)));
        [self.read, self.poll]
    }

    /// The splice has no destination left: the receiver reads again
    /// (unless it is paused).
    pub(super) fn end_splice(&mut self) {
        drop(self.take_splice());
    }

    /// Takes the splice away (at close, or as it ends): the receiver
    /// reads, frames if it decodes them.
    pub(super) fn take_splice(&mut self) -> Option<Box<Splice>> {
        if !self.spliced() {
            return None;
        }
        match self.feed.take().map(|f| *f) {
            Some(Feed::Spliced(s, frames)) => {
                self.feed = frames.map(|d| Box::new(Feed::Frames(d)));
                Some(s)
            }
            other => {
                self.feed = other.map(Box::new);
                None
            }
        }
    }

    /// Every operation in flight, for a close to cancel.
    pub(super) fn ops(&self) -> Vec<OpId> {
        [self.read, self.poll]
            .into_iter()
            .flatten()
            .chain(self.splice().into_iter().flat_map(|s| s.ops()))
            .collect()
    }

    /// Arms what the receiver lacks to take its next bytes; `last` is the
    /// size of its read that just completed (0 if none). See `read` and
    /// `multishot` for the two paths.
    pub(super) fn arm(
        &mut self,
        end: &mut End,
        io: &mut Io,
        reads: &Reads,
        last: usize,
    ) -> io::Result<Armed> {
        if end.closing() || end.fd.is_none() {
            return Ok(Armed::Done);
        }
        if self.paused {
            return Ok(Armed::Done);
        }
        match (self.spliced(), self.path) {
            (true, _) => Ok(Armed::Splice),
            (false, ReadPath::Multishot) => self.arm_multishot(end, io).map(|()| Armed::Done),
            // One still in flight (being cancelled, say) re-arms when it
            // completes: a second beside it would be left uncancelled.
            (false, ReadPath::Fixed | ReadPath::Draining) if self.armed() => Ok(Armed::Done),
            (false, ReadPath::Fixed | ReadPath::Draining) => self
                .arm_single(end, io, reads.multishot_ok, last)
                .map(|()| Armed::Done),
        }
    }

    /// Records the read or poll just armed (each arm puts one in flight).
    fn armed_with(&mut self, end: &mut End, read: Option<OpId>, poll: Option<OpId>) {
        end.inflight += 1;
        self.read = read;
        self.poll = poll;
    }

    /// Every writer closed. Never re-arm a read on this fd: on a FIFO it
    /// would return 0 again at once, thousands of times a second. A
    /// persistent receiver opens a fresh read end instead (before closing
    /// the old one, so the pipe and anything written meanwhile survive),
    /// whose read waits quietly for the next writer.
    pub(super) fn eof(&mut self, end: &mut End, io: &mut Io) -> Eof {
        // A writer that left inside a frame: reported; a persistent
        // receiver drops the partial frame and goes on, a one-shot one fails.
        if let Some(error) = self.frame_cut(end) {
            if !self.persistent {
                return Eof::Fail(error);
            }
            io.report_error(end.token, error);
        }
        end.apply(crate::transport::Input::PeerLeft, &mut io.pending);
        let reopened = match (&end.anchor, self.persistent) {
            (Some(anchor), true) => crate::fifo::open_reader(anchor),
            _ => return Eof::Close,
        };
        match reopened {
            Ok(fd) => {
                // Nothing may keep watching the old fd.
                let old_hup = self.poll.take();
                if old_hup.is_some() && self.path == ReadPath::Multishot {
                    self.hups.replace();
                }
                // The new read end waits quietly, multishot or not.
                if self.path != ReadPath::Fixed {
                    self.path = ReadPath::Multishot;
                }
                end.cancel(&mut io.ring, [old_hup]);
                end.release_fd(&mut io.ring);
                end.install_fd(&mut io.ring, fd);
                Eof::Reopened
            }
            Err(e) => Eof::Fail(crate::fifo::open_error(&end.path_buf(), e)),
        }
    }
}
