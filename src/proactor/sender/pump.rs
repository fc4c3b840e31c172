//! A sender's writes: a chain of linked writes from the queue's front,
//! their completions (short writes and errors put back in order), and its
//! polls for room and for the reader leaving.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::SendSide;
use crate::buffers::Buf;
use crate::error::Error;
use crate::proactor::end::End;
use crate::proactor::io::Io;
use crate::proactor::route::Part;
use crate::proactor::{ECANCELED, ERESTARTSYS};
use crate::ring::OpId;
use crate::token::{Sender, Token};
use crate::transport::{Chunk, State};

/// Most bytes in one chain (its first chunk aside) when the pipe's size
/// is unknown: a pipe's default capacity.
const CHAIN_BYTES: usize = 64 * 1024;

/// A write in flight: its place in the chain and its chunk's range.
#[derive(Debug)]
pub(super) struct Writing {
    pub(super) op: OpId,
    seq: u32,
    start: usize,
    end: usize,
    atomic: bool,
}

/// What a pump did.
#[derive(Debug)]
pub(in crate::proactor) enum Pumped {
    Done,
    /// The queue is written: the relay feeding this sender, if any, may
    /// move on.
    Drained(Option<Token>),
    /// A write could not be submitted: the sender fails.
    Unsubmitted(io::Error),
}

/// What the proactor does after a sender handled a write's or a poll's
/// completion.
#[derive(Debug)]
pub(in crate::proactor) enum Written {
    Done,
    /// The chain is done and wrote what it could: the peer is there; pump
    /// again, and see whether `Writable` or a flushed close is due.
    Progress,
    /// Write again (after a cancel, or room in the pipe).
    Pump,
    /// The pipe has no reader.
    ReaderGone,
    Fail(Error),
    Unsubmitted(io::Error),
}

impl SendSide {
    /// Starts the next writes if the sender is open and none is in flight:
    /// a chain of linked writes, one per chunk from the queue's front, up
    /// to the pipe's size (the first chunk always). Linked, they run in
    /// order, each only after the one before completed in full, so a chunk
    /// of whole frames stays one atomic write and one submission carries
    /// a pipe's worth of them: the proactor wakes about once per pipe-full,
    /// as a blocking writer of a pipe's worth does. More would only wait in
    /// the kernel for room.
    pub(in crate::proactor) fn pump(&mut self, end: &mut End, io: &mut Io) -> Pumped {
        if end.state != State::Open {
            return Pumped::Done;
        }
        let Some(file) = end.file() else {
            return Pumped::Done;
        };
        if !self.writing.is_empty() || self.poll.is_some() {
            return Pumped::Done;
        }
        if self.queue.is_empty() {
            // Queue written: a relay or fan-out into this sender may go on.
            return Pumped::Drained(self.fed_by.source());
        }
        if self.chain_bytes == 0 {
            self.chain_bytes = end
                .fd
                .as_ref()
                .and_then(|fd| crate::fifo::pipe_size(fd.as_fd()))
                .unwrap_or(CHAIN_BYTES);
        }
        // Chunks of frames are `PIPE_BUF` each: a pipe's worth of them.
        let writes = self.chain_bytes / crate::frame::PIPE_BUF;
        let max = io.ring.sq_entries().clamp(1, writes.max(1));
        let n = self.queue.front_run(max, self.chain_bytes);
        // The whole chain in one submission: a chain cut by an early flush
        // would run as two, unordered.
        if let Err(e) = io.ring.reserve(n) {
            return Pumped::Unsubmitted(e);
        }
        let data = end.data(Part::Write);
        for seq in 0..n {
            let Some(chunk) = self.queue.pop_front() else {
                break;
            };
            let (start, stop, atomic) = (chunk.start, chunk.end, chunk.atomic);
            let link = seq + 1 < n;
            match io.ring.write(file, chunk.buf, start..stop, data, link) {
                Ok(op) => {
                    end.inflight += 1;
                    self.writing.push_back(Writing {
                        op,
                        seq: seq as u32,
                        start,
                        end: stop,
                        atomic,
                    });
                }
                Err(e) => return Pumped::Unsubmitted(e),
            }
        }
        Pumped::Done
    }

    /// A write of the chain completed. Once the whole chain has, what it
    /// did not write goes back to the queue's front, in order, intact from
    /// the first unwritten byte.
    pub(in crate::proactor) fn on_write(
        &mut self,
        end: &mut End,
        io: &mut Io,
        op: OpId,
        result: i32,
        buf: Option<Buf>,
    ) -> Written {
        let Some(at) = self.writing.iter().position(|w| w.op == op) else {
            return Written::Done;
        };
        let Some(w) = self.writing.remove(at) else {
            return Written::Done;
        };
        // A write's completion always brings its buffer back.
        let Some(buf) = buf else {
            return Written::Fail(end.io_error("write (no buffer)", -libc::EIO));
        };
        let mut chunk = Chunk {
            buf,
            start: w.start,
            end: w.end,
            atomic: w.atomic,
        };
        if result > 0 {
            let n = result as usize;
            chunk.start += n;
            self.written(Sender(end.token), n, &mut io.pending);
        }
        if chunk.start < chunk.end {
            // Not written in full: a short write or an error, which cancels
            // the rest of the chain. The first such result decides.
            if self.failed.is_none_or(|(seq, _)| w.seq < seq) {
                self.failed = Some((w.seq, result));
            }
            self.returned.push((w.seq, chunk));
        }
        if !self.writing.is_empty() {
            return Written::Done;
        }
        self.returned.sort_unstable_by_key(|&(seq, _)| seq);
        for (_, chunk) in self.returned.drain(..).rev() {
            self.queue.push_front(chunk);
        }
        let failed = self.failed.take().map(|(_, r)| r);
        if end.closing() {
            return Written::Done;
        }
        match failed {
            // Written, in full or in part: resume from the first byte left.
            None => Written::Progress,
            Some(r) if r >= 0 => Written::Progress,
            // The reader left. The kernel took nothing of this write (a
            // partial write reports its count instead), so the queue is exact.
            Some(r) if r == -libc::EPIPE => Written::ReaderGone,
            Some(r) if r == -libc::EAGAIN => match self.poll_pipe(end, io, libc::POLLOUT as u32) {
                Ok(()) => Written::Done,
                Err(e) => Written::Unsubmitted(e),
            },
            Some(r) if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => Written::Pump,
            Some(r) => Written::Fail(end.io_error("write", r)),
        }
    }

    /// The sender's poll completed: for room after EAGAIN, or, while a
    /// flush lingers, for its reader leaving (POLLERR).
    pub(in crate::proactor) fn on_write_poll(
        &mut self,
        end: &End,
        op: OpId,
        result: i32,
    ) -> Written {
        if self.poll != Some(op) {
            return Written::Done;
        }
        self.poll = None;
        match (end.state, result) {
            (State::Closing, _) | (_, ECANCELED) => Written::Done,
            (_, r) if r < 0 => Written::Fail(end.io_error("poll", r)),
            // The pipe has no reader: as a write's EPIPE would say.
            (State::Open, r) if r & i32::from(libc::POLLERR) != 0 => Written::ReaderGone,
            _ => Written::Pump,
        }
    }

    /// A flushing sender whose pipe still holds bytes: no write is left to
    /// meet EPIPE if the reader leaves without draining it, so wait for
    /// that on the ring (a writer's poll reports POLLERR once the pipe has
    /// no reader), and the reconnect policy applies as to a failed write.
    pub(in crate::proactor) fn watch_reader(
        &mut self,
        end: &mut End,
        io: &mut Io,
    ) -> io::Result<()> {
        if end.state == State::Open && self.poll.is_none() {
            self.poll_pipe(end, io, 0)?;
        }
        Ok(())
    }

    /// Polls the pipe for `mask` (POLLERR always comes).
    fn poll_pipe(&mut self, end: &mut End, io: &mut Io, mask: u32) -> io::Result<()> {
        let Some(fd) = end.fd.as_ref() else {
            return Ok(());
        };
        let poll = io
            .ring
            .poll_add(fd.as_raw_fd(), mask, end.data(Part::WritePoll));
        self.poll = Some(end.track(poll)?);
        Ok(())
    }
}
