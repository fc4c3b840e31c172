//! How `poll` holds a blocking wait: for a batch of completions
//! (`Builder::batch_wait`), or, after a poll that delivered data, for the
//! writes answering it and the next data in one enter
//! (`Builder::echo_hold`).

use std::time::Duration;

use crate::event::Item;
use crate::ring::Ring;

#[derive(Debug)]
pub(super) struct WaitPolicy {
    /// `Builder::batch_wait`: completions to wait for, and the budget.
    batch: Option<(u32, Duration)>,
    /// `Builder::echo_hold`.
    echo_hold: Duration,
    /// The last `poll` delivered data: its caller is likely to answer it
    /// with a send, and to want the next data next.
    delivered: bool,
}

impl WaitPolicy {
    pub(super) fn new(batch: Option<(u32, Duration)>, echo_hold: Duration) -> WaitPolicy {
        WaitPolicy {
            batch,
            echo_hold,
            delivered: false,
        }
    }

    /// How a blocking wait is held, if at all: the completions to wait for
    /// and how long at most before any one will do.
    ///
    /// Two cases hold it. A batch (`Builder::batch_wait`). And an answer
    /// (`Builder::echo_hold`): the last poll delivered data and this one
    /// submits writes, as an echo or a relay does; with the kernel's
    /// min-wait, the enter waits for those writes and one completion more
    /// (the next data), so a round trip costs one `io_uring_enter`, not
    /// one for the write and one for the wait. A write's completion is
    /// held back `echo_hold` at most.
    pub(super) fn hold(&self, ring: &Ring) -> Option<(u32, Duration)> {
        // Neither case can hold: spare the counting.
        if self.batch.is_none() && (!self.delivered || self.echo_hold.is_zero()) {
            return None;
        }
        let in_flight = u32::try_from(ring.in_flight()).unwrap_or(u32::MAX);
        let batch = self.batch;
        let writes = u32::try_from(ring.unsubmitted_writes()).unwrap_or(u32::MAX);
        let answer = (self.delivered
            && writes > 0
            && !self.echo_hold.is_zero()
            && in_flight > writes
            && ring.has_min_wait())
        .then_some(writes.saturating_add(1));
        match (batch, answer) {
            (Some((n, budget)), Some(m)) => Some((n.max(m), budget)),
            (Some(b), None) => Some(b),
            (None, Some(m)) => Some((m, self.echo_hold)),
            (None, None) => None,
        }
    }

    /// Notes whether the poll whose events are `pending` delivers data.
    pub(super) fn delivering(&mut self, pending: &[Item]) {
        self.delivered = !self.echo_hold.is_zero()
            && pending.iter().any(|i| {
                matches!(
                    i,
                    Item::Data { .. } | Item::Frame { .. } | Item::Frames { .. }
                )
            });
    }
}
