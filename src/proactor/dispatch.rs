//! Completions: each one routed, by its user data (see `route`), to the
//! step that owns its operation.

use super::Proactor;
use super::registry::Role;
use super::route::{Part, Route};
use crate::ring::Completion;
use crate::token::Token;
use crate::transport::State;

impl Proactor {
    pub(super) fn dispatch(&mut self, c: Completion) {
        let (idx, part) = match Route::of(c.data) {
            Route::Transport {
                index,
                generation,
                part,
            } => match self.transports.get_mut(index as usize) {
                Some(t) if Route::names(generation, t.token) => {
                    t.inflight -= u32::from(!c.more);
                    (index as usize, part)
                }
                // Cannot happen: a slot is freed only when nothing is in flight.
                _ => return,
            },
            Route::RetryTimer => {
                self.timer_armed = false;
                self.retry_waiting();
                self.arm_retry_timer();
                return;
            }
            Route::OpenWatch => {
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
            Route::Watch(n) => return self.watches.on_fired(n),
            Route::Notify => return self.on_notify(c.op, c.result),
            Route::Nobody => return,
        };
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
        match part {
            Part::Read => self.on_read(idx, c),
            Part::ReadMulti => self.on_read_multi(idx, &c),
            Part::ReadPoll => self.on_read_poll(idx, c.op, c.result),
            Part::HangUp => self.on_hup(idx, c.op, c.result),
            Part::Write => self.on_write(idx, c.op, c.result, c.buf),
            Part::WritePoll => self.on_write_poll(idx, c.op, c.result),
            Part::SpliceRound => self.on_splice_round(idx, c.op, c.result),
            Part::SplicePoll => self.on_splice_poll(idx, c.op, c.result),
            Part::Cancel => {}
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
