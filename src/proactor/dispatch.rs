//! Completions: each one routed to the step that owns its operation.

use super::registry::Role;
use super::{ECANCELED, INTERNAL, OWNER_OPEN_WATCH, OWNER_RETRY_TIMER, Proactor};
use crate::ring::{Completion, OpKind};
use crate::token::Token;
use crate::transport::State;

impl Proactor {
    pub(super) fn dispatch(&mut self, c: Completion) {
        match c.owner {
            OWNER_RETRY_TIMER => {
                self.timer_armed = false;
                self.retry_waiting();
                self.arm_retry_timer();
                return;
            }
            OWNER_OPEN_WATCH => {
                self.watch_armed = false;
                if let Some(watch) = self.watch.as_mut() {
                    watch.drain();
                }
                self.retry_waiting();
                if !self.waiting.is_empty() {
                    self.arm_watch();
                }
                return;
            }
            o if o >= INTERNAL => return,
            _ => {}
        }
        let token = Token::from_owner(c.owner, self.id);
        let idx = token.index as usize;
        match self.transports.get_mut(idx) {
            Some(t) if t.token == token => t.inflight -= u32::from(!c.more),
            // Cannot happen: a slot is freed only when nothing is in flight.
            _ => return,
        }
        let relay_to = match &self.transports[idx].role {
            Role::Receiver { relay: Some(r), .. } => Some((r.to, r.poll == Some(c.op))),
            _ => None,
        };
        // Only closing destinations may wait on this op: usually none, and
        // an empty collect does not allocate.
        let (is_fan, is_fan_poll, closing_dests) = match &self.transports[idx].role {
            Role::Receiver { fan: Some(f), .. } => {
                let closing: Vec<Token> =
                    f.to.iter()
                        .filter(|d| {
                            matches!(self.transports.get(d.index as usize),
                            Some(t) if t.token == **d && t.state == State::Closing)
                        })
                        .copied()
                        .collect();
                (true, f.poll == Some(c.op), closing)
            }
            _ => (false, false, Vec::new()),
        };
        let (is_hup, is_own_poll) = match &self.transports[idx].role {
            Role::Receiver { hup, poll, .. } => (*hup == Some(c.op), *poll == Some(c.op)),
            Role::Sender(s) => (false, s.poll == Some(c.op)),
        };
        match c.kind {
            OpKind::Read => self.on_read(idx, c.result, c.buf),
            OpKind::Write => self.on_write(idx, c.result, c.buf),
            OpKind::Poll if relay_to.is_some_and(|(_, is_relay_poll)| is_relay_poll) => {
                self.on_relay_poll(idx, c.result)
            }
            OpKind::Poll if is_fan_poll => self.on_fan_poll(idx, c.result),
            OpKind::Poll if is_hup => self.on_hup(idx, c.result),
            OpKind::Poll if is_own_poll => self.on_poll(idx, c.result),
            // A poll that was replaced (a cancelled hang-up poll of an old fd).
            OpKind::Poll => {}
            OpKind::Splice | OpKind::Tee if is_fan => self.on_fan_op(idx, c.op, c.result),
            OpKind::Splice => self.on_splice(idx, c.result),
            OpKind::Tee => {}
            OpKind::ReadMulti => self.on_read_multi(idx, &c),
            OpKind::Cancel | OpKind::Timeout => {}
        }
        if self.transports.contains(idx) {
            self.maybe_finish(idx);
        }
        // A closing sender may have been waiting for this relay operation.
        let dests = relay_to.map(|(to, _)| to).into_iter().chain(closing_dests);
        for to in dests {
            if matches!(self.transports.get(to.index as usize), Some(t) if t.token == to) {
                self.maybe_finish(to.index as usize);
            }
        }
    }

    pub(super) fn on_poll(&mut self, idx: usize, result: i32) {
        let t = &mut self.transports[idx];
        let is_receiver = match &mut t.role {
            Role::Receiver { poll, .. } => {
                *poll = None;
                true
            }
            Role::Sender(s) => {
                s.poll = None;
                false
            }
        };
        if t.state == State::Closing {
            return;
        }
        let open = t.state == State::Open;
        match (result, is_receiver) {
            // Cancelled by pause or relay: `arm_read` does what they want.
            (ECANCELED, true) => self.arm_read(idx),
            (ECANCELED, false) => {}
            (r, _) if r < 0 => self.io_fail(idx, "poll", r),
            (_, true) => self.arm_read_now(idx),
            // The pipe has no reader: as a write's EPIPE would say.
            (r, false) if open && r & i32::from(libc::POLLERR) != 0 => self.on_reader_gone(idx),
            (_, false) => self.pump(idx),
        }
    }
}
