//! Fan-out: one receiver's bytes to several senders with TEE and SPLICE,
//! never through user space in the common case.
//!
//! A round moves the same `len` bytes to every destination: TEE (copy
//! without consuming) to each but the last, linked, then SPLICE (move) to the
//! last, which consumes them from the source. `len` is at most what the
//! source holds and what every destination has room for. If the kernel still
//! moves less somewhere (pipe slots, a reader leaving), the difference is
//! read out of the source once and queued to the destinations that fell
//! short, so every destination gets exactly the same bytes, once, in order.
//! The next round waits until those queues are written.

use std::os::fd::{AsFd, AsRawFd};

use nix::fcntl::{FcntlArg, fcntl};

use super::registry::Role;
use super::relay::SPLICE_LEN;
use super::{ECANCELED, ERESTARTSYS, Proactor};
use crate::error::Error;
use crate::event::Item;
use crate::ring::OpId;
use crate::ring::Purpose;
use crate::token::{Receiver, Sender, Token};
use crate::transport::{Input, State};

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

#[derive(Debug)]
pub(super) struct FanOut {
    pub(super) to: Vec<Token>,
    pub(super) policy: FanOutPolicy,
    /// Poll on the source (for data) or on a full destination (for room).
    pub(super) poll: Option<OpId>,
    /// The destination that poll waits on for room (`None`: the source).
    pub(super) poll_dest: Option<Token>,
    /// The round in flight: each op with its destination and result.
    pub(super) round: Vec<(OpId, Token, Option<i32>)>,
    pub(super) len: u32,
}

impl FanOut {
    pub(super) fn ops(&self) -> impl Iterator<Item = OpId> + '_ {
        self.poll.into_iter().chain(
            self.round
                .iter()
                .filter(|(_, _, r)| r.is_none())
                .map(|(op, _, _)| *op),
        )
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
        if to.is_empty() {
            return Err(Error::Relayed { token: from.0 });
        }
        for (i, s) in to.iter().enumerate() {
            let tx = self.live_sender(*s)?;
            if self.transports[tx].sender().relayed_from.is_some() || to[..i].contains(s) {
                return Err(Error::Relayed { token: s.0 });
            }
        }
        let Role::Receiver {
            read,
            poll,
            hup,
            relay,
            fan,
            ..
        } = &mut self.transports[rx].role
        else {
            return Err(Error::Stale { token: from.0 });
        };
        if relay.is_some() || fan.is_some() {
            return Err(Error::Relayed { token: from.0 });
        }
        *fan = Some(Box::new(FanOut {
            to: to.iter().map(|s| s.0).collect(),
            policy,
            poll: None,
            poll_dest: None,
            round: Vec::new(),
            len: 0,
        }));
        let ops = [*read, *poll, *hup];
        self.cancel(rx, ops);
        for s in to {
            self.transports[s.0.index as usize].sender().relayed_from = Some(from.0);
        }
        self.arm_fan(rx);
        Ok(())
    }

    pub(super) fn fan_of(&mut self, rx: usize) -> Option<&mut FanOut> {
        match &mut self.transports[rx].role {
            Role::Receiver { fan: Some(f), .. } => Some(f),
            _ => None,
        }
    }

    /// Waits for data in the source, unless a round, a poll or a read is
    /// already under way or a destination is not ready.
    pub(super) fn arm_fan(&mut self, rx: usize) {
        let t = &self.transports[rx];
        if t.state == State::Closing {
            return;
        }
        let Role::Receiver {
            fan: Some(fan),
            paused: false,
            read: None,
            poll: None,
            ..
        } = &t.role
        else {
            return;
        };
        if fan.poll.is_some() || !fan.round.is_empty() || !self.fan_ready(fan) {
            return;
        }
        let (Some(fd), owner) = (t.fd.as_ref(), t.token.to_owner()) else {
            return;
        };
        let poll = self
            .ring
            .poll_add(fd.as_raw_fd(), libc::POLLIN as u32, owner, Purpose::FanPoll);
        if let Some(op) = self.track(rx, poll)
            && let Some(fan) = self.fan_of(rx)
        {
            fan.poll = Some(op);
        }
    }

    /// Every destination open, with nothing of its own queued or in flight.
    fn fan_ready(&self, fan: &FanOut) -> bool {
        fan.to
            .iter()
            .all(|t| match self.transports.get(t.index as usize) {
                Some(d) if d.token == *t && d.state == State::Open => match &d.role {
                    Role::Sender(s) => {
                        s.writing.is_none() && s.poll.is_none() && s.queue.is_empty()
                    }
                    Role::Receiver { .. } => false,
                },
                _ => false,
            })
    }

    /// The source poll (data) or a destination poll (room) completed.
    pub(super) fn on_fan_poll(&mut self, rx: usize, op: OpId, result: i32) {
        let Some(fan) = self.fan_of(rx) else { return };
        if fan.poll != Some(op) {
            return;
        }
        fan.poll = None;
        let dest = fan.poll_dest.take();
        if self.transports[rx].state == State::Closing || result < 0 {
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
                self.on_reader_gone(idx);
            }
            return self.arm_fan(rx);
        }
        let src = self.transports[rx]
            .fd
            .as_ref()
            .expect("an open receiver has its fd");
        let available = crate::fifo::pipe_bytes(src.as_fd()).unwrap_or(0);
        if available == 0 {
            if result as i16 & libc::POLLHUP != 0 {
                return self.on_eof(rx);
            }
            return self.arm_fan(rx);
        }
        // As much as the source holds and every destination has room for.
        let fan = self.fan_of(rx).expect("checked above");
        let dests = fan.to.clone();
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
                .poll_add(fd, libc::POLLOUT as u32, owner, Purpose::FanPoll);
            if let Some(op) = self.track(rx, poll)
                && let Some(fan) = self.fan_of(rx)
            {
                fan.poll = Some(op);
                fan.poll_dest = Some(dest);
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
        let fan = self.fan_of(rx).expect("a fan-out is running");
        fan.round = round;
        fan.len = len;
    }

    /// A TEE or SPLICE of the round completed; the round ends with the last.
    pub(super) fn on_fan_op(&mut self, rx: usize, op: OpId, result: i32) {
        let Some(fan) = self.fan_of(rx) else { return };
        if let Some(slot) = fan.round.iter_mut().find(|(o, _, _)| *o == op) {
            slot.2 = Some(result);
        }
        if fan.round.iter().any(|(_, _, r)| r.is_none()) {
            return;
        }
        let round = std::mem::take(&mut fan.round);
        let len = fan.len as usize;
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
        if let Role::Receiver { bytes_read, .. } = &mut self.transports[rx].role {
            *bytes_read += target as u64;
        }
        let pool = std::rc::Rc::clone(&self.pool);
        for (d, n) in &moved {
            let idx = d.index as usize;
            if gone.contains(d)
                && self
                    .fan_of(rx)
                    .is_some_and(|f| f.policy == FanOutPolicy::Detach)
            {
                continue;
            }
            let side = self.transports[idx].sender();
            side.queue.queued_total += *n as u64;
            side.queue.accepted_total += *n as u64;
            // What this destination lacks of the round, from user space.
            if *n < target {
                side.queue.push(&pool, &rest[n.saturating_sub(consumed)..]);
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
            let idx = d.index as usize;
            if self
                .fan_of(rx)
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
            self.arm_fan(rx);
        }
    }

    /// Takes `to` out of the fan-out of receiver `rx`.
    pub(super) fn detach(&mut self, rx: usize, to: Token) {
        let from = Receiver(self.transports[rx].token);
        let Some(fan) = self.fan_of(rx) else { return };
        fan.to.retain(|t| *t != to);
        let empty = fan.to.is_empty();
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
            if let Role::Receiver { fan, .. } = &mut self.transports[rx].role {
                *fan = None;
            }
            self.arm_read(rx);
        }
    }
}
