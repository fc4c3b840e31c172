//! A receiver spliced into senders: bytes moved from its pipe into theirs
//! in the kernel, never through user space in the common case. A relay is
//! the case of one destination, a fan-out the case of several: one
//! [`Splice`], one close path.
//!
//! How bytes move is a [`Strategy`], chosen afresh each time the splice is
//! idle (a fan-out that loses all but one destination becomes a relay):
//!
//! - [`direct`]: one destination, by default. A POLL on the ring waits for
//!   data, then this thread calls non-blocking `splice(2)` until a pipe is
//!   empty or full: no io-wq hand-off.
//! - [`iowq`]: one destination with `Builder::splice_direct(false)`. One
//!   io_uring SPLICE of up to [`SPLICE_LEN`] (run on an io-wq worker),
//!   linked behind the POLL so no worker waits on an empty pipe, repeated
//!   without the poll while data keeps coming.
//! - [`tee`]: several. A round moves the same `len` bytes to every
//!   destination: TEE (copy without consuming) to each but the last,
//!   linked, then SPLICE (move) to the last, which consumes them from the
//!   source.
//!
//! All share one wait (a [`Wait`]: for data in the source, or for room in
//! a full destination) and one byte count (`Proactor::count_spliced`, in
//! `relay`). Before its first move a splice grows its pipes
//! (`relay_pipes`), so a wake-up moves more. The proactor's side (which
//! transports, their fds, what a result means for them) is `relay`.

pub(super) mod direct;
pub(super) mod iowq;
pub(super) mod tee;

use super::link::Feeds;
use super::relay_pipes::PipeGrant;
use crate::ring::OpId;
use crate::token::Token;

/// Bytes one splice may move; the pipes' contents bound it anyway.
pub(super) const SPLICE_LEN: u32 = 1 << 20;

/// What a fan-out does when a destination's reader leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FanOutPolicy {
    /// Drop that destination from the fan-out, report
    /// [`Event::Detached`](crate::Event::Detached), and go on with the
    /// others. The sender itself stays, waiting for its next reader.
    #[default]
    Detach,
    /// Pause the whole fan-out until the reader comes back: the bytes wait
    /// in the source pipe, nothing is lost for anyone, and the other
    /// destinations wait too.
    Wait,
}

/// How the proactor's relays and fan-outs splice.
#[derive(Debug)]
pub(super) struct Splicing {
    /// `Builder::splice_direct`: single-destination splices call
    /// `splice(2)` from this thread.
    pub(super) direct: bool,
    /// `Builder::relay_pipe_size` (0: relays leave pipe sizes alone).
    pub(super) pipe_size: usize,
}

/// How a splice moves its bytes, with its moves in flight. (An explicit
/// tag: each move checks it, and a niche in the round would make that a
/// decode.)
#[derive(Debug)]
#[repr(u8)]
pub(super) enum Strategy {
    /// One destination, `splice(2)` from this thread ([`direct`]).
    Direct,
    /// One destination, io_uring SPLICE on io-wq ([`iowq`]): the splice in
    /// flight and its destination.
    Iowq(Option<(OpId, Token)>),
    /// Several destinations, a round of TEEs and a SPLICE ([`tee`]).
    Tee(tee::Round),
}

impl Strategy {
    /// The strategy for `dests` destinations.
    pub(super) fn choose(dests: usize, direct: bool) -> Strategy {
        match (dests, direct) {
            (1, true) => Strategy::Direct,
            (1, false) => Strategy::Iowq(None),
            _ => Strategy::Tee(tee::Round::default()),
        }
    }

    /// Whether this is the strategy for `dests` destinations.
    pub(super) fn fits(&self, dests: usize, direct: bool) -> bool {
        match self {
            Strategy::Direct => dests == 1 && direct,
            Strategy::Iowq(_) => dests == 1 && !direct,
            Strategy::Tee(_) => dests != 1,
        }
    }
}

/// The poll a splice waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// For data in the source (linked before an io-wq splice, or before
    /// sizing a round, or before a direct splice).
    Data(OpId),
    /// For room in the destination `Token`, full at the last move.
    Room(OpId, Token),
}

impl Wait {
    fn op(self) -> OpId {
        match self {
            Wait::Data(op) | Wait::Room(op, _) => op,
        }
    }
}

/// A receiver spliced into senders.
#[derive(Debug)]
pub(super) struct Splice {
    /// The senders it feeds (see `link`).
    pub(super) feeds: Feeds,
    pub(super) policy: FanOutPolicy,
    pub(super) wait: Option<Wait>,
    pub(super) strategy: Strategy,
    /// The pipes of the source and of every destination were grown (see
    /// `relay_pipes`); cleared when one is reopened.
    pub(super) sized: bool,
    /// The share of the process's pipe budget this splice grew its pipes
    /// by, given back when it ends.
    pub(super) grown: PipeGrant,
}

impl Splice {
    pub(super) fn new(policy: FanOutPolicy) -> Splice {
        Splice {
            feeds: Feeds::default(),
            policy,
            wait: None,
            strategy: Strategy::Direct,
            sized: false,
            grown: PipeGrant::default(),
        }
    }

    /// The operations in flight: the wait and the unfinished moves.
    pub(super) fn ops(&self) -> impl Iterator<Item = OpId> + '_ {
        let (splice, round) = match &self.strategy {
            Strategy::Direct | Strategy::Iowq(None) => (None, None),
            Strategy::Iowq(Some((op, _))) => (Some(*op), None),
            Strategy::Tee(round) => (None, Some(round)),
        };
        let unfinished = round.into_iter().flat_map(tee::Round::unfinished);
        self.wait
            .map(Wait::op)
            .into_iter()
            .chain(splice)
            .chain(unfinished)
    }

    /// Whether a move is in flight: an io-wq splice, or a round.
    pub(super) fn moving(&self) -> bool {
        match &self.strategy {
            Strategy::Direct | Strategy::Iowq(None) => false,
            Strategy::Iowq(Some(_)) => true,
            Strategy::Tee(round) => !round.is_empty(),
        }
    }

    /// Whether nothing is in flight: a new move may be armed.
    pub(super) fn idle(&self) -> bool {
        self.wait.is_none() && !self.moving()
    }

    /// What `pause` stops: the wait for data. A round of several
    /// destinations completes (it moves bytes that are there); a single
    /// splice is linked behind the wait, so it stops too.
    pub(super) fn pause_ops(&self) -> Vec<OpId> {
        if self.feeds.len() == 1 {
            self.ops().collect()
        } else {
            self.wait.map(Wait::op).into_iter().collect()
        }
    }
}
