//! Stopping on SIGINT/SIGTERM: the signals reach the ring through a
//! signalfd; reading stops, what was read is delivered within the grace
//! period, and a summary says what was delivered and what was not, and why.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use ringpipe::State;

use crate::Mux;

#[derive(Debug)]
pub struct Stop {
    pub signal: &'static str,
    pub deadline: Instant,
    /// Poll turns since reading stopped. A read that completed before the
    /// pause reaches us within the first turn; after two, nothing more comes.
    turns: u32,
}

/// Blocks SIGINT and SIGTERM, so from here on they only ever reach the
/// returned signalfd, which the ring reads like any other input.
pub fn signal_fd() -> Result<OwnedFd, String> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let sfd =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))?;
    Ok(sfd.into())
}

impl Mux {
    pub fn on_signals(&mut self, data: &[u8]) {
        // Each record is a 128-byte signalfd_siginfo starting with ssi_signo.
        for record in data.chunks(128) {
            let Some(&[a, b, c, d]) = record.get(..4) else {
                continue;
            };
            let name = match Signal::try_from(i32::from_ne_bytes([a, b, c, d])) {
                Ok(Signal::SIGINT) => "SIGINT",
                Ok(Signal::SIGTERM) => "SIGTERM",
                _ => "signal",
            };
            self.begin_stop(name);
        }
    }

    fn begin_stop(&mut self, signal: &'static str) {
        if let Some(stop) = &mut self.stop {
            eprintln!("multiplexer: {signal} again: ending the grace period now");
            stop.deadline = Instant::now();
            return;
        }
        for input in &mut self.inputs {
            if !input.paused && !input.closed {
                input.paused = true;
                let _ = self.p.pause(input.rx);
            }
        }
        eprintln!(
            "multiplexer: {signal}: stopped reading; delivering what was read (grace {:?})",
            self.grace
        );
        self.stop = Some(Stop {
            signal,
            deadline: Instant::now() + self.grace,
            turns: 0,
        });
    }

    /// One turn of the shutdown: flush outputs whose messages are all
    /// queued; true when nothing more can be delivered or time is up.
    pub fn stopping_turn(&mut self) -> bool {
        let Some(stop) = self.stop.as_mut() else {
            return false;
        };
        stop.turns += 1;
        if stop.turns < 2 {
            return false;
        }
        let expired = Instant::now() >= stop.deadline;
        let mut done = true;
        for o in 0..self.outputs.len() {
            let held: u32 = self.inputs.iter().map(|i| i.held.per_output[o]).sum();
            let out = &mut self.outputs[o];
            if out.closed {
                continue;
            }
            if held == 0 && !out.flushing {
                // Closes once the reader has read everything, pipe included.
                out.flushing = self.p.close_after_flush(out.tx).is_ok();
            }
            let has_reader = matches!(self.p.state(out.tx), Ok(State::Open));
            // An output without a reader cannot take delivery: do not wait.
            done &= !has_reader;
        }
        done || expired
    }

    /// Closes what is left, counts what was not delivered and says why.
    pub fn finish(&mut self) {
        let had_reader: Vec<bool> = self
            .outputs
            .iter()
            .map(|o| matches!(self.p.state(o.tx), Ok(State::Open)))
            .collect();
        for out in &self.outputs {
            if !out.closed {
                let _ = self.p.close(out.tx);
            }
        }
        // Collect the unsent bytes the closes hand back (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.outputs.iter().any(|o| !o.closed) && Instant::now() < deadline {
            if self
                .p
                .poll(&mut self.events, Some(Duration::from_millis(50)))
                .is_err()
            {
                break;
            }
            self.handle_events();
        }

        let framing = self.framing;
        let unit = framing.unit();
        let read: u64 = self.inputs.iter().map(|i| i.msgs).sum();
        let mut delivered = 0;
        let mut why = Vec::new();
        for (o, out) in self.outputs.iter().enumerate() {
            delivered += out.msgs - out.unsent_msgs;
            let held: u64 = (self.inputs.iter())
                .map(|i| i.held.units_for(o, framing))
                .sum();
            let lost = out.unsent_msgs + held + out.dropped;
            if lost == 0 {
                continue;
            }
            let reason = match &out.failed {
                Some(e) => format!("the output failed: {e}"),
                None if !had_reader[o] => "no reader".to_string(),
                None => "the grace period ended before its reader took them".to_string(),
            };
            why.push(format!(
                "{lost} {unit} for {}: {reason}",
                out.path.display()
            ));
        }
        let signal = self.stop.as_ref().map_or("signal", |s| s.signal);
        eprintln!(
            "multiplexer: stopped by {signal}: read={read} delivered={delivered} undelivered={} ({unit})",
            read - delivered
        );
        for line in why {
            eprintln!("multiplexer:   undelivered {line}");
        }
        for input in &self.inputs {
            if input.truncated > 0 {
                eprintln!(
                    "multiplexer:   {}: {} partial messages dropped (the last writer left \
                     mid-message; not counted as read)",
                    input.path.display(),
                    input.truncated
                );
            }
            if input.bad_sessions > 0 {
                eprintln!(
                    "multiplexer:   {}: the rest of each session dropped after an invalid \
                     frame ({} writer sessions ended)",
                    input.path.display(),
                    input.bad_sessions
                );
            }
        }
    }
}
