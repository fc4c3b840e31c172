//! Completions: each one routed to the step that owns its operation.

use super::registry::Role;
use super::{NO_TRANSPORT, Proactor};
use crate::ring::{Completion, Purpose};
use crate::token::Token;
use crate::transport::State;

impl Proactor {
    pub(super) fn dispatch(&mut self, c: Completion) {
        match c.purpose {
            Purpose::RetryTimer => {
                self.timer_armed = false;
                self.retry_waiting();
                self.arm_retry_timer();
                return;
            }
            Purpose::OpenWatch => {
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
            Purpose::Readable => {
                self.readable.push(c.op);
                return;
            }
            Purpose::Notify => {
                self.on_notify(c.op, c.result);
                return;
            }
            _ if c.owner == NO_TRANSPORT => return,
            _ => {}
        }
        let token = Token::from_owner(c.owner, self.id);
        let idx = token.index as usize;
        match self.transports.get_mut(idx) {
            Some(t) if t.token == token => t.inflight -= u32::from(!c.more),
            // Cannot happen: a slot is freed only when nothing is in flight.
            _ => return,
        }
        // Closing senders this operation may have kept waiting: the
        // destinations of a splice (their fds are in use).
        // Usually none, and an empty collect does not allocate.
        let waiting_dests: Vec<Token> = match &self.transports[idx].role {
            Role::Receiver {
                splice: Some(s), ..
            } => {
                s.to.iter()
                    .filter(|d| {
                        matches!(self.transports.get(d.index as usize),
                    Some(t) if t.token == **d && t.state == State::Closing)
                    })
                    .copied()
                    .collect()
            }
            _ => Vec::new(),
        };
        match c.purpose {
            Purpose::Read => self.on_read(idx, c),
            Purpose::ReadMulti => self.on_read_multi(idx, &c),
            Purpose::ReadPoll => self.on_read_poll(idx, c.op, c.result),
            Purpose::HangUp => self.on_hup(idx, c.op, c.result),
            Purpose::Write => self.on_write(idx, c.op, c.result, c.buf),
            Purpose::WritePoll => self.on_write_poll(idx, c.op, c.result),
            Purpose::SpliceRound => self.on_splice_round(idx, c.op, c.result),
            Purpose::SplicePoll => self.on_splice_poll(idx, c.op, c.result),
            Purpose::Cancel
            | Purpose::RetryTimer
            | Purpose::OpenWatch
            | Purpose::Readable
            | Purpose::Notify => {}
        }
        if self.transports.contains(idx) {
            self.maybe_finish(idx);
        }
        for to in waiting_dests {
            if matches!(self.transports.get(to.index as usize), Some(t) if t.token == to) {
                self.maybe_finish(to.index as usize);
            }
        }
    }
}
