//! Waiting for a reader: inotify IN_OPEN for readers that open
//! non-blocking, and a backoff retry timer on the ring for readers blocked
//! in open(2), which inotify does not see.

use std::os::fd::AsFd;
use std::time::Instant;

use super::registry::Role;
use super::route::{OPEN_WATCH, RETRY_TIMER};
use super::{Proactor, RETRY_START};
use crate::error::Error;
use crate::fifo::{self, OpenWatch};
use crate::transport::{Input, State};

impl Proactor {
    pub(super) fn join_waiting(&mut self, idx: usize) {
        let token = self.transports[idx].token;
        if self.transports[idx].anchor.is_none() || self.waiting.contains(&token) {
            return;
        }
        self.waiting.push(token);
        if self.watch.is_none() {
            self.watch = OpenWatch::new().ok();
        }
        if let (Some(watch), Some(anchor)) =
            (self.watch.as_mut(), self.transports[idx].anchor.as_ref())
        {
            let wd = watch.add(anchor).ok();
            self.transports[idx].sender().watch = wd;
        }
        self.arm_watch();
        self.retry_delay = RETRY_START;
        self.arm_retry_timer();
    }

    pub(super) fn leave_waiting(&mut self, idx: usize) {
        let t = &mut self.transports[idx];
        let token = t.token;
        if let Role::Sender(s) = &mut t.role
            && let Some(wd) = s.watch.take()
            && let Some(watch) = self.watch.as_mut()
        {
            watch.remove(wd);
        }
        self.waiting.retain(|w| *w != token);
    }

    pub(super) fn arm_watch(&mut self) {
        if self.watch_armed {
            return;
        }
        if let Some(watch) = &self.watch
            && self
                .ring
                .poll_add(watch.fd(), libc::POLLIN as u32, OPEN_WATCH)
                .is_ok()
        {
            self.watch_armed = true;
        }
    }

    pub(super) fn arm_retry_timer(&mut self) {
        if self.timer_armed || self.waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut delay = self.retry_delay;
        for token in &self.waiting {
            if let Some(t) = self.transports.get(token.index as usize)
                && let Role::Sender(s) = &t.role
                && let Some((deadline, _)) = s.deadline
            {
                delay = delay.min(deadline.saturating_duration_since(now));
            }
        }
        if self.ring.timeout(delay, RETRY_TIMER).is_ok() {
            self.timer_armed = true;
            self.retry_delay = (self.retry_delay * 2).min(self.open_retry_max);
        }
    }

    /// Looks for readers of every waiting sender.
    pub(super) fn retry_waiting(&mut self) {
        let now = Instant::now();
        for token in self.waiting.clone() {
            let idx = token.index as usize;
            let t = &mut self.transports[idx];
            let anchor = t.anchor.as_ref().expect("waiting senders have a path");
            match t.state {
                State::Opening => match fifo::try_open_writer(anchor) {
                    Ok(Some(fd)) => {
                        let size = t.sender().pipe_size;
                        if let Some(size) = size
                            && let Err(e) = fifo::set_pipe_size(fd.as_fd(), size, t.describe())
                        {
                            self.fail(idx, e);
                            continue;
                        }
                        t.sender().deadline = None;
                        self.install_fd(idx, fd);
                        self.leave_waiting(idx);
                        self.apply(idx, Input::PeerReady);
                        self.pump(idx);
                        self.maybe_flushed(idx);
                    }
                    Ok(None) => {
                        if let Some((deadline, waited)) = t.sender().deadline
                            && now >= deadline
                        {
                            let path = t.path_buf();
                            self.fail(idx, Error::OpenTimeout { path, waited });
                        }
                    }
                    Err(e) => {
                        let path = t.path_buf();
                        self.fail(idx, fifo::open_error(&path, e));
                    }
                },
                State::PeerGone => {
                    if let Ok(true) = fifo::has_reader(anchor) {
                        t.sender().deadline = None;
                        self.leave_waiting(idx);
                        self.apply(idx, Input::PeerReady);
                        self.pump(idx);
                        self.maybe_flushed(idx);
                    } else if let Some((deadline, waited)) = t.sender().deadline
                        && now >= deadline
                    {
                        let path = t.path_buf();
                        self.fail(idx, Error::ReaderTimeout { path, waited });
                    }
                }
                // Open and lingering until the reader drains the pipe.
                State::Open if matches!(&t.role, Role::Sender(s) if s.close_after_flush) => {
                    self.maybe_flushed(idx)
                }
                _ => self.leave_waiting(idx),
            }
        }
    }
}
