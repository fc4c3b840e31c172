//! A link of a pipeline: two FIFOs with the proactor in the middle, the
//! writing program's output (a receiver of ours, open before any program
//! starts) relayed by splice into the reading program's input (a sender
//! of ours, open before any program starts, like a non-empty input).
//! Neither program waits for the other to open anything, so no order of
//! opens can deadlock, and the bytes never pass through user space. Here:
//! the link's end passed on, cut, and accounted for.

use super::LinkReport;
use super::fifos::{Input, Output};
use crate::{Proactor, Sender};

/// A link under way: an output of one program relayed into a piped input
/// of another.
pub(super) struct Link {
    name: String,
    /// Index of the output in the run.
    from: usize,
    /// Index of the input in the run.
    to: usize,
    /// The output has ended and the input was told so.
    released: bool,
}

/// The first transfer error of a run: (program, FIFO name, what happened).
pub(super) type Failure = Option<(usize, String, String)>;

impl Link {
    /// The link named `name` from output `from` into input `to` (indices
    /// in the run).
    pub(super) fn new(name: String, from: usize, to: usize) -> Link {
        Link {
            name,
            from,
            to,
            released: false,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The index of the output this link relays into sender `to`, if it
    /// feeds that sender.
    pub(super) fn output_into(&self, to: Sender, inputs: &[Input]) -> Option<usize> {
        inputs
            .get(self.to)
            .is_some_and(|i| i.tx == to)
            .then_some(self.from)
    }

    /// Passes the end of its output, once it is finished, on to the input
    /// it feeds.
    pub(super) fn settle(
        &mut self,
        p: &mut Proactor,
        outputs: &[Output],
        inputs: &mut [Input],
        failure: &mut Failure,
    ) {
        let (Some(output), Some(input)) = (outputs.get(self.from), inputs.get_mut(self.to)) else {
            return;
        };
        if self.released || !output.done {
            return;
        }
        self.released = true;
        if output.cut || input.closed || input.close_asked {
            return;
        }
        // Bytes the output's read end took before the splice did wait in
        // the sender's queue until its reader comes.
        let queued = p.stats(input.tx).map_or(0, |s| s.bytes_unsent());
        if output.relayed + input.accepted > 0 || queued > 0 {
            // A byte went into the pipe (so the reader had opened it), or
            // waits for the reader: the sender closes once it is drained.
            input.held = false;
            return;
        }
        // Nothing was written: the reader may not have opened the FIFO
        // yet, and a sender closing on an empty pipe now would leave it
        // blocked in open(2). Close this one (a reader that opened gets
        // EOF) and open one that waits for the reader, like the sender
        // of an empty input.
        input.abandon(p);
        let fresh = Input::open(
            p,
            input.name.clone(),
            Vec::new(),
            input.path.clone(),
            input.owner,
            false,
        );
        match fresh {
            Ok(fresh) => *input = fresh,
            Err(e) => {
                failure.get_or_insert((input.owner, input.name.clone(), e.to_string()));
            }
        }
    }

    /// Program `k` has exited: if it reads this link, its output is cut.
    pub(super) fn cut_into(
        &self,
        k: usize,
        p: &mut Proactor,
        outputs: &mut [Output],
        inputs: &[Input],
    ) {
        if inputs.get(self.to).is_some_and(|i| i.owner == k)
            && let Some(output) = outputs.get_mut(self.from)
        {
            output.cut(p);
        }
    }

    /// How much of the stream reached the reader.
    pub(super) fn report(&self, outputs: &[Output], inputs: &[Input]) -> LinkReport {
        let (Some(output), Some(input)) = (outputs.get(self.from), inputs.get(self.to)) else {
            return LinkReport {
                relayed: 0,
                complete: false,
            };
        };
        // Bytes read before a splice took over were sent instead.
        let relayed = output.relayed + input.accepted;
        LinkReport {
            relayed,
            complete: output.done && !output.cut && (relayed == 0 || input.flushed),
        }
    }
}
