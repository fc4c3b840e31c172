//! Splice and tee: one receiver's bytes moved into one or more senders in
//! the kernel, never through user space in the common case. A relay is the
//! case of one destination ([`Proactor::relay`]), a fan-out the case of
//! several ([`Proactor::fan_out`]): one mechanism, one close path.
//!
//! With one destination (by default) a POLL on the ring waits for data,
//! then the proactor thread calls non-blocking `splice(2)` until a pipe is
//! empty or full; a full destination is waited for with a POLLOUT. With
//! `Builder::splice_direct(false)` a round is one io_uring SPLICE of up to
//! [`SPLICE_LEN`] (run on an io-wq worker), linked behind the POLL so no
//! worker waits on an empty pipe, and repeated without the poll while data
//! keeps coming. Before its first move a splice grows its pipes
//! ([`Proactor::set_relay_pipe_size`]), so a wake-up moves more. With several, a
//! round moves the same `len` bytes to every destination: TEE (copy
//! without consuming) to each but the last, linked, then SPLICE (move) to the
//! last, which consumes them from the source. `len` is at most what the
//! source holds and what every destination has room for. If the kernel still
//! moves less somewhere (pipe slots, a reader leaving), the difference is
//! read out of the source once and queued to the destinations that fell
//! short, so every destination gets exactly the same bytes, once, in order.
//! The next round waits until those queues are written.

use std::os::fd::{AsFd, AsRawFd};

use nix::fcntl::{FcntlArg, fcntl};

use super::relay_pipes::PipeGrant;

use super::registry::{Role, Transport};
use super::{ECANCELED, ERESTARTSYS, Proactor};
use crate::error::Error;
use crate::event::Item;
use crate::ring::OpId;
use crate::ring::Purpose;
use crate::token::{Receiver, Sender, Token};
use crate::transport::{Input, State};

/// Bytes one splice may move; the pipes' contents bound it anyway.
pub(super) const SPLICE_LEN: u32 = 1 << 20;

/// Most bytes one direct splice turn moves before the relay waits on the
/// ring again, so one busy relay does not hold up the others.
const DIRECT_BUDGET: usize = 1 << 20;

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

/// A receiver spliced into senders.
#[derive(Debug)]
pub(super) struct Splice {
    pub(super) to: Vec<Token>,
    pub(super) policy: FanOutPolicy,
    /// Poll on the source (for data) or on a full destination (for room).
    pub(super) poll: Option<OpId>,
    /// The destination that poll waits on for room (`None`: the source).
    pub(super) poll_dest: Option<Token>,
    /// The round in flight: each op with its destination and result.
    pub(super) round: Vec<(OpId, Token, Option<i32>)>,
    pub(super) len: u32,
    /// The pipes of the source and of every destination were grown (see
    /// [`Proactor::set_relay_pipe_size`]); cleared when one is reopened.
    pub(super) sized: bool,
    /// The share of the process's pipe budget this splice grew its pipes
    /// by, given back when it ends.
    pub(super) grown: PipeGrant,
}

impl Splice {
    /// The operations in flight: the poll and the round's unfinished links.
    pub(super) fn ops(&self) -> impl Iterator<Item = OpId> + '_ {
        self.poll.into_iter().chain(
            self.round
                .iter()
                .filter(|(_, _, r)| r.is_none())
                .map(|(op, _, _)| *op),
        )
    }

    /// One destination: no tee, no sizing, the relay's fast path.
    fn single(&self) -> bool {
        self.to.len() == 1
    }

    /// What `pause` stops: the wait for data. A round of several
    /// destinations completes (it moves bytes that are there); a single
    /// splice is linked behind the wait, so it stops too.
    pub(super) fn pause_ops(&self) -> Vec<OpId> {
        if self.single() {
            self.ops().collect()
        } else {
            self.poll.into_iter().collect()
        }
    }
}

impl Proactor {
    /// Sends everything `from` receives to every sender in `to`, in the
    /// kernel: TEE to all but the last, SPLICE to the last. Each
    /// destination gets every byte exactly once, in order; reported as
    /// [`Event::Relayed`](crate::Event::Relayed) per destination. The
    /// senders take no `send` meanwhile ([`Error::Relayed`]). See
    /// [`FanOutPolicy`] for destinations whose reader leaves. The fan-out
    /// ends when the receiver closes, or its last destination does; a
    /// destination given [`close_after_flush`](Proactor::close_after_flush)
    /// closes once the fan-out has ended (or detached it) and its reader has
    /// every byte, which passes the source's EOF on.
    pub fn fan_out(
        &mut self,
        from: Receiver,
        to: &[Sender],
        policy: FanOutPolicy,
    ) -> crate::Result<()> {
        let rx = self.live_receiver(from)?;
        let relayed = |t: &Transport| Error::Relayed {
            token: t.token,
            path: t.name(),
        };
        if to.is_empty() {
            return Err(relayed(&self.transports[rx]));
        }
        for (i, s) in to.iter().enumerate() {
            let tx = self.live_sender(*s)?;
            if self.transports[tx].sender().relayed_from.is_some() || to[..i].contains(s) {
                return Err(relayed(&self.transports[tx]));
            }
        }
        if matches!(
            self.transports[rx].role,
            Role::Receiver {
                splice: Some(_),
                ..
            }
        ) {
            return Err(relayed(&self.transports[rx]));
        }
        let Role::Receiver {
            read,
            poll,
            path,
            splice,
            ..
        } = &mut self.transports[rx].role
        else {
            return Err(Error::Stale { token: from.0 });
        };
        *splice = Some(Box::new(Splice {
            to: to.iter().map(|s| s.0).collect(),
            policy,
            poll: None,
            poll_dest: None,
            round: Vec::new(),
            len: 0,
            sized: false,
            grown: PipeGrant::default(),
        }));
        // A read in flight is cancelled; if it completed first, its bytes
        // are queued on the senders ahead of everything spliced. (A splice
        // sees EOF itself: no hang-up poll is needed.)
        let ops = [*read, *poll, path.hup()];
        self.cancel(rx, ops);
        for s in to {
            self.transports[s.0.index as usize].sender().relayed_from = Some(from.0);
        }
        self.arm_splice(rx);
        Ok(())
    }

    pub(super) fn splice_of(&mut self, rx: usize) -> Option<&mut Splice> {
        match &mut self.transports[rx].role {
            Role::Receiver {
                splice: Some(f), ..
            } => Some(f),
            _ => None,
        }
    }

    /// Waits for data in the source, unless a round, a poll or a read is
    /// already under way or a destination is not ready. One destination
    /// needs no sizing: its splice goes out at once, linked behind the poll.
    pub(super) fn arm_splice(&mut self, rx: usize) {
        self.arm_splice_with(rx, true)
    }

    fn arm_splice_with(&mut self, rx: usize, poll_first: bool) {
        let t = &self.transports[rx];
        if t.state == State::Closing {
            return;
        }
        let Role::Receiver {
            splice: Some(splice),
            paused: false,
            read: None,
            poll: None,
            ..
        } = &t.role
        else {
            return;
        };
        if splice.poll.is_some() || !splice.round.is_empty() || !self.dests_ready(splice) {
            return;
        }
        if !splice.sized {
            self.grow_pipes(rx);
        }
        let Some(splice) = self.splice_of(rx) else {
            return;
        };
        if splice.single() {
            return self.splice_single(rx, poll_first);
        }
        self.poll_source(rx);
    }

    /// The round of one destination: a SPLICE of up to [`SPLICE_LEN`],
    /// linked behind a poll for data unless data is likely there.
    fn splice_single(&mut self, rx: usize, poll_first: bool) {
        if self.splice_direct {
            return if poll_first {
                self.poll_source(rx)
            } else {
                self.splice_now(rx)
            };
        }
        let t = &self.transports[rx];
        let (Some(from), Some(fd)) = (t.file(), t.fd.as_ref()) else {
            return;
        };
        let (raw, owner) = (fd.as_raw_fd(), t.token.to_owner());
        let Role::Receiver {
            splice: Some(splice),
            ..
        } = &t.role
        else {
            return;
        };
        let dest = splice.to[0];
        let Some(to) = self
            .transports
            .get(dest.index as usize)
            .and_then(|d| d.file())
        else {
            return;
        };
        match self
            .ring
            .splice(from, to, SPLICE_LEN, poll_first.then_some(raw), owner)
        {
            Ok((poll, op)) => {
                self.transports[rx].inflight += 1 + u32::from(poll.is_some());
                if let Some(splice) = self.splice_of(rx) {
                    splice.poll = poll;
                    splice.round.push((op, dest, None));
                    splice.len = SPLICE_LEN;
                }
            }
            Err(e) => self.submit_failed(rx, e),
        }
    }

    /// Waits on the ring for data in the source.
    fn poll_source(&mut self, rx: usize) {
        let t = &self.transports[rx];
        let Some(fd) = t.fd.as_ref() else { return };
        let poll = self.ring.poll_add(
            fd.as_raw_fd(),
            libc::POLLIN as u32,
            t.token.to_owner(),
            Purpose::SplicePoll,
        );
        if let Some(op) = self.track(rx, poll)
            && let Some(splice) = self.splice_of(rx)
        {
            splice.poll = Some(op);
        }
    }

    /// Moves what is there with non-blocking `splice(2)` from this thread,
    /// up to [`DIRECT_BUDGET`] bytes, then waits on the ring again. No
    /// io-wq worker and no hand-off: the data was reported ready by a poll.
    fn splice_now(&mut self, rx: usize) {
        let t = &self.transports[rx];
        let (
            Some(src),
            Role::Receiver {
                splice: Some(splice),
                ..
            },
        ) = (t.fd.as_ref(), &t.role)
        else {
            return;
        };
        let dest = splice.to[0];
        let tx = dest.index as usize;
        let Some(dst) = self.transports.get(tx).and_then(|d| d.fd.as_ref()) else {
            return;
        };
        let mut moved = 0usize;
        let outcome = loop {
            match nix::fcntl::splice(
                src,
                None,
                dst,
                None,
                SPLICE_LEN as usize,
                nix::fcntl::SpliceFFlags::SPLICE_F_NONBLOCK,
            ) {
                Ok(0) => break Ok(0),
                Ok(n) => {
                    moved += n;
                    if moved >= DIRECT_BUDGET {
                        break Ok(n);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => break Err(e),
            }
        };
        if moved > 0 {
            self.spliced(rx, dest, moved);
        }
        let result = match outcome {
            Ok(0) => 0,
            // Budget spent: wait on the ring (the poll completes at once
            // while data is there), so other transports get their turn.
            Ok(_) => return self.arm_splice(rx),
            Err(e) => -(e as i32),
        };
        let closing = self.transports[rx].state == State::Closing;
        self.after_splice(rx, dest, result, closing);
    }

    /// The operations of the receiver spliced into sender `tx`: they use
    /// its fd, so its close waits for them.
    pub(super) fn splice_ops_into(&self, tx: usize) -> Vec<(usize, OpId)> {
        let Role::Sender(side) = &self.transports[tx].role else {
            return Vec::new();
        };
        let Some(from) = side.relayed_from else {
            return Vec::new();
        };
        let rx = from.index as usize;
        match self.transports.get(rx).map(|t| &t.role) {
            Some(Role::Receiver {
                splice: Some(s), ..
            }) => s.ops().map(|op| (rx, op)).collect(),
            _ => Vec::new(),
        }
    }

    /// Every destination open, with nothing of its own queued or in flight.
    fn dests_ready(&self, splice: &Splice) -> bool {
        splice
            .to
            .iter()
            .all(|t| match self.transports.get(t.index as usize) {
                Some(d) if d.token == *t && d.state == State::Open => match &d.role {
                    Role::Sender(s) => {
                        s.writing.is_empty() && s.poll.is_none() && s.queue.is_empty()
                    }
                    Role::Receiver { .. } => false,
                },
                _ => false,
            })
    }

    /// The source poll (data) or a destination poll (room) completed.
    pub(super) fn on_splice_poll(&mut self, rx: usize, op: OpId, result: i32) {
        let Some(splice) = self.splice_of(rx) else {
            return;
        };
        if splice.poll != Some(op) {
            return;
        }
        splice.poll = None;
        let dest = splice.poll_dest.take();
        // The poll linked before a single splice: the splice reports.
        if !splice.round.is_empty() {
            return;
        }
        let single = splice.single();
        if self.transports[rx].state == State::Closing {
            return;
        }
        // Cancelled by `pause`: a `resume` since found this poll in flight
        // and left the next wait to its completion (it stays if paused).
        if result == ECANCELED || result == ERESTARTSYS {
            return self.arm_splice(rx);
        }
        if result < 0 {
            return;
        }
        // A full destination whose reader left polls POLLERR at once: no
        // write will tell us (none is attempted), so this is its EPIPE.
        if let Some(d) = dest
            && result as i16 & libc::POLLERR != 0
        {
            let idx = d.index as usize;
            if matches!(self.transports.get(idx), Some(t) if t.token == d && t.state == State::Open)
            {
                self.resize_later(rx);
                self.on_reader_gone(idx);
            }
            return self.arm_splice(rx);
        }
        // One destination had no room and has some now: splice at once.
        if single {
            return self.arm_splice_with(rx, false);
        }
        let src = self.transports[rx]
            .fd
            .as_ref()
            .expect("an open receiver has its fd");
        let available = crate::fifo::pipe_bytes(src.as_fd()).unwrap_or(0);
        if available == 0 {
            if result as i16 & libc::POLLHUP != 0 {
                self.resize_later(rx);
                return self.on_eof(rx);
            }
            return self.arm_splice(rx);
        }
        // As much as the source holds and every destination has room for.
        let splice = self.splice_of(rx).expect("checked above");
        let dests = splice.to.clone();
        let mut len = available.min(SPLICE_LEN as usize);
        let mut full = None;
        for d in &dests {
            let fd = self.transports[d.index as usize]
                .fd
                .as_ref()
                .expect("open sender");
            let size = fcntl(fd.as_fd(), FcntlArg::F_GETPIPE_SZ).unwrap_or(0) as usize;
            let room = size.saturating_sub(crate::fifo::pipe_bytes(fd.as_fd()).unwrap_or(size));
            if room == 0 {
                full = Some((fd.as_raw_fd(), *d));
            }
            len = len.min(room);
        }
        if let Some((fd, dest)) = full {
            let owner = self.transports[rx].token.to_owner();
            let poll = self
                .ring
                .poll_add(fd, libc::POLLOUT as u32, owner, Purpose::SplicePoll);
            if let Some(op) = self.track(rx, poll)
                && let Some(splice) = self.splice_of(rx)
            {
                splice.poll = Some(op);
                splice.poll_dest = Some(dest);
            }
            return;
        }
        self.start_round(rx, dests, len as u32);
    }

    fn start_round(&mut self, rx: usize, dests: Vec<Token>, len: u32) {
        let src = self.transports[rx]
            .file()
            .expect("an open receiver has its file");
        let owner = self.transports[rx].token.to_owner();
        if let Err(e) = self.ring.reserve(dests.len()) {
            return self.submit_failed(rx, e);
        }
        let last = dests.len() - 1;
        let mut round = Vec::with_capacity(dests.len());
        for (i, d) in dests.iter().enumerate() {
            let to = self.transports[d.index as usize]
                .file()
                .expect("open sender");
            match self
                .ring
                .tee_or_splice(i < last, src, to, len, i < last, owner)
            {
                Ok(op) => round.push((op, *d, None)),
                Err(e) => {
                    return self.submit_failed(rx, e);
                }
            }
        }
        self.transports[rx].inflight += round.len() as u32;
        let splice = self.splice_of(rx).expect("a fan-out is running");
        splice.round = round;
        splice.len = len;
    }

    /// A TEE or SPLICE of the round completed; the round ends with the last.
    pub(super) fn on_splice_round(&mut self, rx: usize, op: OpId, result: i32) {
        let Some(splice) = self.splice_of(rx) else {
            return;
        };
        if let Some(slot) = splice.round.iter_mut().find(|(o, _, _)| *o == op) {
            slot.2 = Some(result);
        }
        if splice.round.iter().any(|(_, _, r)| r.is_none()) {
            return;
        }
        // One destination: its round's Vec is kept for the next splice.
        if let [(_, dest, Some(result))] = splice.round[..] {
            splice.round.clear();
            let closing = self.transports[rx].state == State::Closing;
            return self.on_single_splice(rx, dest, result, closing);
        }
        let round = std::mem::take(&mut splice.round);
        let len = splice.len as usize;
        // A round that completes while the source closes is still settled
        // (counted, reported, short destinations filled in), so every
        // destination ends with the same bytes; only no new round starts.
        let closing = self.transports[rx].state == State::Closing;
        let moved: Vec<(Token, usize)> = round
            .iter()
            .map(|(_, d, r)| (*d, r.unwrap_or(0).max(0) as usize))
            .collect();
        let gone: Vec<Token> = round
            .iter()
            .filter(|(_, _, r)| *r == Some(-libc::EPIPE))
            .map(|(_, d, _)| *d)
            .collect();
        let failed = round
            .iter()
            .find(|(_, _, r)| matches!(r, Some(r) if *r < 0 && ![-libc::EPIPE, -libc::EAGAIN, ECANCELED, ERESTARTSYS].contains(r)));
        if let Some((_, _, Some(r))) = failed {
            return self.io_fail(rx, "tee/splice", *r);
        }
        // The splice to the last destination consumed `consumed` bytes; the
        // round is complete at `target`, the most any destination got.
        let consumed = moved.last().map_or(0, |(_, n)| *n);
        let target = moved.iter().map(|(_, n)| *n).max().unwrap_or(0).min(len);
        let mut rest = vec![0u8; target - consumed];
        if !rest.is_empty() {
            let src = self.transports[rx].fd.as_ref().expect("open receiver");
            // The bytes are in the pipe (tees do not consume): this returns at once.
            match nix::unistd::read(src, &mut rest) {
                Ok(n) if n == rest.len() => {}
                Ok(_) => return self.io_fail(rx, "read", -libc::EIO),
                Err(e) => return self.io_fail(rx, "read", -(e as i32)),
            }
        }
        let from = Receiver(self.transports[rx].token);
        // Out of the source: `consumed` by the splice, the rest by read(2).
        let t = &mut self.transports[rx];
        t.counters.spliced(consumed as u64);
        if let Role::Receiver { bytes_read, .. } = &mut t.role {
            *bytes_read += rest.len() as u64;
        }
        let pool = std::rc::Rc::clone(&self.pool);
        for (d, n) in &moved {
            let idx = d.index as usize;
            if gone.contains(d)
                && self
                    .splice_of(rx)
                    .is_some_and(|f| f.policy == FanOutPolicy::Detach)
            {
                continue;
            }
            let t = &mut self.transports[idx];
            t.counters.spliced(*n as u64);
            // What this destination lacks of the round, from user space:
            // reported as `Relayed` too, once written.
            if *n < target {
                let lack = &rest[n.saturating_sub(consumed)..];
                t.sender().push_relayed(&pool, from, lack);
            }
            if *n > 0 {
                self.pending.push(Item::Relayed {
                    from,
                    to: Sender(*d),
                    bytes: *n,
                });
                self.apply(idx, Input::PeerReady);
            }
        }
        for d in gone {
            self.resize_later(rx);
            let idx = d.index as usize;
            if self
                .splice_of(rx)
                .is_some_and(|f| f.policy == FanOutPolicy::Detach)
            {
                self.detach(rx, d);
            }
            if self.transports[idx].state != State::Closing {
                self.on_reader_gone(idx);
            }
        }
        for d in moved.iter().map(|(d, _)| d.index as usize) {
            if self.transports.contains(d) {
                self.pump(d);
            }
        }
        if !closing {
            self.arm_splice(rx);
        }
    }

    /// The splice of a round of one destination completed.
    fn on_single_splice(&mut self, rx: usize, dest: Token, result: i32, closing: bool) {
        if result > 0 {
            // Counted and reported even while closing: the bytes moved.
            self.spliced(rx, dest, result as usize);
            // More is likely there: splice again without polling first.
            return self.arm_splice_with(rx, false);
        }
        self.after_splice(rx, dest, result, closing);
    }

    /// Counts and reports `n` bytes spliced from `rx` into `dest`.
    fn spliced(&mut self, rx: usize, dest: Token, n: usize) {
        let tx = dest.index as usize;
        self.transports[rx].counters.spliced(n as u64);
        self.transports[tx].counters.spliced(n as u64);
        self.pending.push(Item::Relayed {
            from: Receiver(self.transports[rx].token),
            to: Sender(dest),
            bytes: n,
        });
        self.apply(rx, Input::PeerReady);
        self.apply(tx, Input::PeerReady);
    }

    /// A single splice that moved nothing: EOF, a full or empty pipe, the
    /// destination's reader gone, a cancel or an error.
    fn after_splice(&mut self, rx: usize, dest: Token, result: i32, closing: bool) {
        let tx = dest.index as usize;
        match result {
            _ if closing => {}
            0 => {
                self.resize_later(rx);
                self.on_eof(rx)
            }
            r if r == -libc::EAGAIN => {
                let in_pipe = self.transports[rx]
                    .fd
                    .as_ref()
                    .map_or(0, |fd| crate::fifo::pipe_bytes(fd.as_fd()).unwrap_or(0));
                if in_pipe == 0 {
                    return self.arm_splice(rx);
                }
                // The destination is full: wait until it has room.
                let Some(fd) = self.transports[tx].fd.as_ref() else {
                    return;
                };
                let owner = self.transports[rx].token.to_owner();
                let poll = self.ring.poll_add(
                    fd.as_raw_fd(),
                    libc::POLLOUT as u32,
                    owner,
                    Purpose::SplicePoll,
                );
                if let Some(op) = self.track(rx, poll)
                    && let Some(splice) = self.splice_of(rx)
                {
                    splice.poll = Some(op);
                    splice.poll_dest = Some(dest);
                }
            }
            // The destination's reader left; splice consumed nothing, so the
            // bytes wait in the source pipe (policy as for any destination).
            r if r == -libc::EPIPE => {
                self.resize_later(rx);
                if self.transports[tx].state != State::Closing {
                    self.on_reader_gone(tx);
                }
            }
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => self.arm_splice(rx),
            r => self.io_fail(rx, "splice", r),
        }
    }

    /// Takes `to` out of the fan-out of receiver `rx`.
    pub(super) fn detach(&mut self, rx: usize, to: Token) {
        let from = Receiver(self.transports[rx].token);
        let Some(splice) = self.splice_of(rx) else {
            return;
        };
        splice.to.retain(|t| *t != to);
        let empty = splice.to.is_empty();
        if let Some(d) = self.transports.get_mut(to.index as usize)
            && d.token == to
        {
            d.sender().relayed_from = None;
            self.pending.push(Item::Detached {
                from,
                to: Sender(to),
            });
            self.maybe_flushed(to.index as usize);
        }
        if empty {
            if let Role::Receiver { splice, .. } = &mut self.transports[rx].role {
                *splice = None;
            }
            self.arm_read(rx);
        }
    }
}
