//! Relays and fan-outs on the proactor's side: a receiver linked to its
//! senders (`fan_out`, `detach`), its splice's moves armed on their fds,
//! and what each result means for both ends: the one byte count
//! ([`count_spliced`](Proactor::count_spliced)), the one wait for data or
//! room ([`wait`](Proactor::wait)), EOF, a reader leaving. It needs the
//! whole proactor: every step touches two transports or more. The
//! splice's own state and its strategies are in `splice`, the link in
//! `link`, the pipes' growth in `relay_pipes`.

use std::os::fd::{AsFd, AsRawFd};

use super::link;
use super::registry::{Role, Transport};
use super::relay_pipes;
use super::route::Part;
use super::splice::direct::{self, Stop};
use super::splice::tee::{self, Round, Settled, Size};
use super::splice::{FanOutPolicy, Splice, Strategy, Wait, iowq};
use super::{ECANCELED, ERESTARTSYS, Proactor};
use crate::error::Error;
use crate::event::Item;
use crate::ring::OpId;
use crate::token::{Receiver, Sender, Token};
use crate::transport::{Input, State};

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
    ) -> crate::error::Result<()> {
        let (rx, _) = self.table.live_receiver(from)?;
        let relayed = |t: &Transport| Error::Relayed {
            token: t.end.token,
            path: t.end.name(),
        };
        if to.is_empty() {
            return Err(relayed(&self.table[rx]));
        }
        for (i, s) in to.iter().enumerate() {
            let (_, t) = self.table.live_sender(*s)?;
            if t.sender().is_none_or(|s| s.fed_by.is_fed()) || to[..i].contains(s) {
                return Err(relayed(t));
            }
        }
        if self.splice_of(rx).is_some() {
            return Err(relayed(&self.table[rx]));
        }
        let mut splice = Box::new(Splice::new(policy));
        for s in to {
            if let Some(side) = self.table[s.0.index as usize].sender() {
                link::link(&mut splice.feeds, from.0, &mut side.fed_by, s.0);
            }
        }
        let Some(r) = self.table[rx].receiver() else {
            return Err(Error::Stale { token: from.0 });
        };
        // A read in flight is cancelled; if it completed first, its bytes
        // are queued on the senders ahead of everything spliced.
        let ops = r.start_splice(splice);
        self.cancel(rx, ops);
        self.arm_splice(rx);
        Ok(())
    }

    /// Queues bytes receiver `idx` read on every sender it is spliced
    /// into, ahead of what the splice moves.
    pub(super) fn forward(&mut self, idx: usize, bytes: &[u8]) {
        let from = Receiver(self.table[idx].end.token);
        let dests = match &self.table[idx].role {
            Role::Receiver(rx) => rx.splice().map_or(Vec::new(), |s| s.feeds.to_vec()),
            Role::Sender(_) => Vec::new(),
        };
        for to in dests {
            let to = to.index as usize;
            if let Some(side) = self.table[to].sender() {
                side.push_relayed(&self.io.pool, from, bytes);
            }
            self.pump(to);
        }
    }

    pub(super) fn splice_of(&mut self, rx: usize) -> Option<&mut Splice> {
        self.table.get_mut(rx)?.receiver()?.splice_mut()
    }

    /// The destinations of receiver `idx`'s splice that are closing: an
    /// operation of the splice may be all that keeps them open (their fds
    /// are in use), so its completion may let them finish.
    pub(super) fn closing_dests(&self, idx: usize) -> Vec<Token> {
        let Some(Transport {
            role: Role::Receiver(rx),
            ..
        }) = self.table.get(idx)
        else {
            return Vec::new();
        };
        // Usually none, and an empty collect does not allocate.
        rx.splice().map_or(Vec::new(), |s| {
            s.feeds
                .iter()
                .filter(|d| {
                    matches!(self.table.get(d.index as usize),
                        Some(t) if t.end.token == *d && t.end.state == State::Closing)
                })
                .collect()
        })
    }

    /// The operations of the receiver spliced into sender `tx`: they use
    /// its fd, so its close waits for them.
    pub(super) fn splice_ops_into(&self, tx: usize) -> Vec<(usize, OpId)> {
        let Role::Sender(side) = &self.table[tx].role else {
            return Vec::new();
        };
        let Some(from) = side.fed_by.source() else {
            return Vec::new();
        };
        let rx = from.index as usize;
        match self.table.get(rx).map(|t| &t.role) {
            Some(Role::Receiver(r)) => r
                .splice()
                .map_or(Vec::new(), |s| s.ops().map(|op| (rx, op)).collect()),
            _ => Vec::new(),
        }
    }

    /// Arms receiver `rx`'s next move, waiting for data first.
    pub(super) fn arm_splice(&mut self, rx: usize) {
        self.arm_splice_with(rx, true)
    }

    /// Arms the next move unless one is under way, the splice (or the
    /// receiver's own read) is busy or paused, or a destination is not
    /// ready. A single destination may move at once (`poll_first` false)
    /// when data is likely there.
    fn arm_splice_with(&mut self, rx: usize, poll_first: bool) {
        let direct = self.splicing.direct;
        let Some((end, r)) = self.table.receiver(rx) else {
            return;
        };
        if end.closing() || r.armed() {
            return;
        }
        let Some(splice) = r.splice().filter(|_| !r.paused()) else {
            return;
        };
        if !splice.idle() || !self.dests_ready(splice) {
            return;
        }
        let dests = splice.feeds.len();
        let (sized, fits) = (splice.sized, splice.strategy.fits(dests, direct));
        if !sized {
            self.grow_pipes(rx);
        }
        if !fits && let Some(splice) = self.splice_of(rx) {
            splice.strategy = Strategy::choose(dests, direct);
        }
        // As `Strategy::choose` says.
        match (dests == 1, direct, poll_first) {
            (true, true, false) => self.splice_direct(rx),
            (true, false, _) => self.splice_iowq(rx, poll_first),
            (true, true, true) | (false, _, _) => self.wait(rx, None),
        }
    }

    /// Every destination open, with nothing of its own queued or in flight.
    fn dests_ready(&self, splice: &Splice) -> bool {
        splice
            .feeds
            .iter()
            .all(|t| match self.table.get(t.index as usize) {
                Some(d) if d.end.token == t && d.end.state == State::Open => match &d.role {
                    Role::Sender(s) => s.idle(),
                    Role::Receiver(_) => false,
                },
                _ => false,
            })
    }

    /// The one wait of every strategy: a poll on the ring for data in the
    /// source, or, given a destination, for room in it.
    fn wait(&mut self, rx: usize, room: Option<Token>) {
        let end = &self.table[rx].end;
        let data = end.data(Part::SplicePoll);
        let (fd, mask) = match room {
            None => (end.fd.as_ref(), libc::POLLIN),
            Some(d) => (
                self.table
                    .get(d.index as usize)
                    .and_then(|t| t.end.fd.as_ref()),
                libc::POLLOUT,
            ),
        };
        let Some(fd) = fd else {
            return;
        };
        let poll = self.io.ring.poll_add(fd.as_raw_fd(), mask as u32, data);
        if let Some(op) = self.track(rx, poll)
            && let Some(splice) = self.splice_of(rx)
        {
            splice.wait = Some(match room {
                None => Wait::Data(op),
                Some(d) => Wait::Room(op, d),
            });
        }
    }

    /// A turn of the direct strategy: `splice(2)` from this thread.
    fn splice_direct(&mut self, rx: usize) {
        let Some((end, r)) = self.table.receiver(rx) else {
            return;
        };
        let (Some(src), Some(dest)) = (end.fd.as_ref(), r.splice().and_then(|s| s.feeds.first()))
        else {
            return;
        };
        let Some(dst) = self
            .table
            .get(dest.index as usize)
            .and_then(|d| d.end.fd.as_ref())
        else {
            return;
        };
        let (moved, stop) = direct::splice(src.as_fd(), dst.as_fd());
        if moved > 0 {
            self.count_spliced(rx, moved, 0, std::iter::once((dest, moved)));
        }
        let result = match stop {
            Stop::Eof => 0,
            Stop::Budget => return self.arm_splice(rx),
            Stop::Failed(r) => r,
        };
        let closing = self.table[rx].end.closing();
        self.after_single(rx, dest, result, closing);
    }

    /// A move of the io-wq strategy: one SPLICE, behind a poll for data
    /// unless data is likely there.
    fn splice_iowq(&mut self, rx: usize, poll_first: bool) {
        let Some((end, r)) = self.table.receiver(rx) else {
            return;
        };
        let (Some(from), Some(fd)) = (end.file(), end.fd.as_ref()) else {
            return;
        };
        let Some(dest) = r.splice().and_then(|s| s.feeds.first()) else {
            return;
        };
        let Some(to) = self
            .table
            .get(dest.index as usize)
            .and_then(|d| d.end.file())
        else {
            return;
        };
        let poll = poll_first.then_some((fd.as_raw_fd(), end.data(Part::SplicePoll)));
        let data = end.data(Part::SpliceRound);
        match iowq::submit(&mut self.io.ring, from, to, poll, data) {
            Ok((poll, op)) => {
                self.table[rx].end.inflight += 1 + u32::from(poll.is_some());
                if let Some(splice) = self.splice_of(rx) {
                    splice.wait = poll.map(Wait::Data);
                    splice.strategy = Strategy::Iowq(Some((op, dest)));
                }
            }
            Err(e) => self.submit_failed(rx, e),
        }
    }

    /// The source poll (data) or a destination poll (room) completed.
    #[inline]
    pub(super) fn on_splice_poll(&mut self, rx: usize, op: OpId, result: i32) {
        let Some(splice) = self.splice_of(rx) else {
            return;
        };
        let room = match splice.wait {
            Some(Wait::Data(o)) if o == op => None,
            Some(Wait::Room(o, d)) if o == op => Some(d),
            _ => return,
        };
        splice.wait = None;
        // The poll linked before an io-wq splice: the splice reports.
        if splice.moving() {
            return;
        }
        let single = splice.feeds.len() == 1;
        if self.table[rx].end.closing() {
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
        // move will tell us (none is attempted), so this is its EPIPE.
        if let Some(d) = room
            && result as i16 & libc::POLLERR != 0
        {
            let idx = d.index as usize;
            if matches!(self.table.get(idx), Some(t) if t.end.token == d && t.end.state == State::Open)
            {
                self.resize_later(rx);
                self.reader_gone(idx);
            }
            return self.arm_splice(rx);
        }
        // One destination had no room and has some now: splice at once.
        if single {
            return self.arm_splice_with(rx, false);
        }
        self.start_round(rx, result);
    }

    /// Data in the source of a fan-out: a round of as much as the source
    /// holds and every destination has room for.
    fn start_round(&mut self, rx: usize, polled: i32) {
        let Some(src) = self.table[rx].end.fd.as_ref() else {
            return;
        };
        let available = crate::fifo::pipe_bytes(src.as_fd()).unwrap_or(0);
        if available == 0 {
            if polled as i16 & libc::POLLHUP != 0 {
                self.resize_later(rx);
                return self.eof(rx);
            }
            return self.arm_splice(rx);
        }
        let Some(dests) = self.splice_of(rx).map(|s| s.feeds.to_vec()) else {
            return;
        };
        let table = &self.table;
        let fds = dests.iter().filter_map(|d| {
            let fd = table.get(d.index as usize)?.end.fd.as_ref()?;
            Some((*d, fd.as_fd()))
        });
        let len = match tee::size(available, fds) {
            Size::Full(d) => return self.wait(rx, Some(d)),
            Size::Bytes(len) => len,
        };
        let end = &self.table[rx].end;
        let Some(src) = end.file() else {
            return;
        };
        let file = |d: Token| table.get(d.index as usize).and_then(|t| t.end.file());
        let data = end.data(Part::SpliceRound);
        match Round::submit(&mut self.io.ring, src, &dests, file, len, data) {
            Ok(round) => {
                self.table[rx].end.inflight += round.ops() as u32;
                if let Some(splice) = self.splice_of(rx) {
                    splice.strategy = Strategy::Tee(round);
                }
            }
            Err(e) => self.submit_failed(rx, e),
        }
    }

    /// A move completed: the io-wq splice, or a TEE or SPLICE of a round
    /// (the round ends with the last).
    pub(super) fn on_splice_move(&mut self, rx: usize, op: OpId, result: i32) {
        let Some(splice) = self.splice_of(rx) else {
            return;
        };
        match &mut splice.strategy {
            Strategy::Iowq(slot) => {
                let Some((_, dest)) = slot.filter(|(o, _)| *o == op) else {
                    return;
                };
                *slot = None;
                let closing = self.table[rx].end.closing();
                if result > 0 {
                    // Counted and reported even while closing: the bytes moved.
                    let n = result as usize;
                    self.count_spliced(rx, n, 0, std::iter::once((dest, n)));
                    // More is likely there: splice again without polling first.
                    return self.arm_splice_with(rx, false);
                }
                self.after_single(rx, dest, result, closing);
            }
            Strategy::Tee(round) => {
                let Some(settled) = round.complete(op, result) else {
                    return;
                };
                // A round that completes while the source closes is still
                // settled (counted, reported, short destinations filled in),
                // so every destination ends with the same bytes; only no new
                // round starts.
                let closing = self.table[rx].end.closing();
                match settled {
                    Ok(settled) => self.settle_round(rx, settled, closing),
                    Err(r) => self.io_fail(rx, "tee/splice", r),
                }
            }
            Strategy::Direct => {}
        }
    }

    /// A round is over: what the destinations that fell short lack is
    /// read out of the source and queued on them, everything is counted,
    /// and readers that left are dealt with by the fan-out's policy.
    fn settle_round(&mut self, rx: usize, s: Settled, closing: bool) {
        let Settled {
            moved,
            gone,
            consumed,
            target,
        } = s;
        let Some(src) = self.table[rx].end.fd.as_ref() else {
            return;
        };
        let rest = match tee::read_rest(src.as_fd(), target - consumed) {
            Ok(rest) => rest,
            Err(r) => return self.io_fail(rx, "read", r),
        };
        let from = Receiver(self.table[rx].end.token);
        if let Some(r) = self.table[rx].receiver() {
            r.bytes_read += rest.len() as u64;
        }
        let detaching = self
            .splice_of(rx)
            .is_some_and(|f| f.policy == FanOutPolicy::Detach);
        // A destination detached for its reader leaving gets nothing more.
        let into = moved
            .iter()
            .copied()
            .filter(|(d, _)| !(detaching && gone.contains(d)));
        for (d, n) in into.clone() {
            // What this destination lacks of the round, from user space:
            // reported as `Relayed` too, once written.
            if n < target
                && let Some(side) = self.table[d.index as usize].sender()
            {
                let lack = &rest[n.saturating_sub(consumed)..];
                side.push_relayed(&self.io.pool, from, lack);
            }
        }
        self.count_spliced(rx, consumed, rest.len(), into);
        for d in gone {
            self.resize_later(rx);
            let idx = d.index as usize;
            if self
                .splice_of(rx)
                .is_some_and(|f| f.policy == FanOutPolicy::Detach)
            {
                self.detach(rx, d);
            }
            if self.table[idx].end.state != State::Closing {
                self.reader_gone(idx);
            }
        }
        for d in moved.iter().map(|(d, _)| d.index as usize) {
            if self.table.contains(d) {
                self.pump(d);
            }
        }
        if !closing {
            self.arm_splice(rx);
        }
    }

    /// The one byte count of every strategy: `out` bytes left the source's
    /// pipe by splice (a tee takes none out) and `read` more by `read(2)`,
    /// and each of `into` reached a destination's pipe. Spliced bytes are
    /// counted on both ends, each destination's reported as `Relayed`;
    /// both ends moving bytes have their peer.
    fn count_spliced(
        &mut self,
        rx: usize,
        out: usize,
        read: usize,
        into: impl Iterator<Item = (Token, usize)> + Clone,
    ) {
        let from = Receiver(self.table[rx].end.token);
        self.table[rx].end.counters.spliced(out as u64);
        for (to, n) in into.clone() {
            if let Some(t) = self.table.get_mut(to.index as usize) {
                t.end.counters.spliced(n as u64);
                if n > 0 {
                    self.io.pending.push(Item::Relayed {
                        from,
                        to: Sender(to),
                        bytes: n,
                    });
                }
            }
        }
        if out + read > 0 {
            self.apply(rx, Input::PeerReady);
        }
        for (to, n) in into {
            if n > 0
                && let Some(t) = self.table.get_mut(to.index as usize)
            {
                t.end.apply(Input::PeerReady, &mut self.io.pending);
            }
        }
    }

    /// A single destination's move that moved nothing: EOF, a full or
    /// empty pipe, the destination's reader gone, a cancel or an error.
    fn after_single(&mut self, rx: usize, dest: Token, result: i32, closing: bool) {
        let tx = dest.index as usize;
        match result {
            _ if closing => {}
            0 => {
                self.resize_later(rx);
                self.eof(rx)
            }
            r if r == -libc::EAGAIN => {
                let in_pipe = self.table[rx]
                    .end
                    .fd
                    .as_ref()
                    .map_or(0, |fd| crate::fifo::pipe_bytes(fd.as_fd()).unwrap_or(0));
                if in_pipe == 0 {
                    return self.arm_splice(rx);
                }
                // The destination is full: wait until it has room.
                self.wait(rx, Some(dest));
            }
            // The destination's reader left; splice consumed nothing, so the
            // bytes wait in the source pipe (policy as for any destination).
            r if r == -libc::EPIPE => {
                self.resize_later(rx);
                if self
                    .table
                    .get(tx)
                    .is_some_and(|t| t.end.state != State::Closing)
                {
                    self.reader_gone(tx);
                }
            }
            r if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => self.arm_splice(rx),
            r => self.io_fail(rx, "splice", r),
        }
    }

    /// Sender `idx`'s reader left: a fan-out into it that detaches such
    /// destinations drops it.
    pub(super) fn detach_gone(&mut self, idx: usize) {
        let Role::Sender(s) = &self.table[idx].role else {
            return;
        };
        let Some(from) = s.fed_by.source() else {
            return;
        };
        let detach = self
            .table
            .get(from.index as usize)
            .and_then(|t| match &t.role {
                Role::Receiver(r) => r.splice(),
                Role::Sender(_) => None,
            })
            .is_some_and(|f| f.policy == FanOutPolicy::Detach);
        if detach {
            let to = self.table[idx].end.token;
            self.detach(from.index as usize, to);
        }
    }

    /// Takes `to` out of the fan-out of receiver `rx`.
    pub(super) fn detach(&mut self, rx: usize, to: Token) {
        let from = Receiver(self.table[rx].end.token);
        let (splice, fed_by) = self.table.link_ends(rx, to);
        let Some(splice) = splice else {
            return;
        };
        let found = fed_by.is_some();
        let empty = link::unlink(&mut splice.feeds, fed_by, to);
        if found {
            self.io.pending.push(Item::Detached {
                from,
                to: Sender(to),
            });
            self.maybe_flushed(to.index as usize);
        }
        if empty {
            if let Some(r) = self.table[rx].receiver() {
                r.end_splice();
            }
            self.arm_read(rx);
        }
    }

    /// Grows the pipes of `rx`'s splice and of its (open) destinations to
    /// the relay pipe size, within the process's budget; a failure leaves
    /// a pipe as it was.
    fn grow_pipes(&mut self, rx: usize) {
        let want = self.splicing.pipe_size;
        let Some(splice) = self.splice_of(rx) else {
            return;
        };
        splice.sized = true;
        if want == 0 {
            return;
        }
        let dests = splice.feeds.to_vec();
        let mut grant = std::mem::take(&mut splice.grown);
        let table = &self.table;
        let ends = std::iter::once(rx).chain(dests.iter().map(|t| t.index as usize));
        let fds = ends.filter_map(|i| Some(table.get(i)?.end.fd.as_ref()?.as_fd()));
        relay_pipes::grow(&mut grant, want, fds);
        if let Some(splice) = self.splice_of(rx) {
            splice.grown = grant;
        }
    }

    /// A FIFO of `rx`'s splice was (or will be) reopened: a new pipe, to
    /// be grown again before the next move.
    fn resize_later(&mut self, rx: usize) {
        if let Some(splice) = self.splice_of(rx) {
            splice.sized = false;
        }
    }
}

#[cfg(test)]
mod tests;
