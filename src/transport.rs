//! Transport state and the write queue: pure code, no syscalls.
//!
//! [`transition`] is the whole life cycle of a transport. The proactor feeds it
//! what happened and acts on what it returns; it is tested here for every
//! (state, input) pair.

use std::collections::VecDeque;

use std::rc::Rc;

use crate::buffers::{Buf, Pool};
use crate::frame::PIPE_BUF;

/// Where a transport is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// A sender waiting for its first reader.
    Opening,
    /// Connected: I/O flows.
    Open,
    /// The peer left (reader gone: `EPIPE`; writer gone: EOF). A sender keeps
    /// its queue and its fd; bytes already in the pipe reach the next reader.
    PeerGone,
    /// Close was asked for or a fatal error happened; in-flight operations
    /// are being cancelled and reaped.
    Closing,
    /// Everything released. Only ever reported, never held by a live handle.
    Closed,
}

/// What happened to a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// The peer is there (open succeeded, a reader appeared, data arrived).
    PeerReady,
    /// The peer left (`EPIPE` or EOF).
    PeerLeft,
    /// The user asked to close.
    Close,
    /// A fatal error.
    Fail,
    /// The last in-flight operation of a closing transport completed.
    Drained,
}

/// What the proactor must report after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    None,
    Opened,
    PeerBack,
    PeerGone,
    Closed,
}

/// The next state and what to report, or `None` when `input` cannot happen
/// in `state` (the caller turns that into an error, never a panic).
pub(crate) fn transition(state: State, input: Input) -> Option<(State, Notice)> {
    use Input::*;
    use State::*;
    Some(match (state, input) {
        (Opening, PeerReady) => (Open, Notice::Opened),
        (Opening, PeerLeft) => (Opening, Notice::None),
        (Open, PeerReady) => (Open, Notice::None),
        (Open, PeerLeft) => (PeerGone, Notice::PeerGone),
        (PeerGone, PeerReady) => (Open, Notice::PeerBack),
        (PeerGone, PeerLeft) => (PeerGone, Notice::None),
        (Opening | Open | PeerGone, Close | Fail) => (Closing, Notice::None),
        // Late completions of a closing transport change nothing.
        (Closing, PeerReady | PeerLeft | Fail) => (Closing, Notice::None),
        (Closing, Drained) => (Closed, Notice::Closed),
        (Closing, Close) => return None,
        (Opening | Open | PeerGone, Drained) => return None,
        (Closed, _) => return None,
    })
}

/// A run of queued bytes in one buffer: `buf[start..end]` is not yet written.
/// An `atomic` chunk holds whole messages, at most `PIPE_BUF` bytes in all,
/// in a small buffer of its own, so that it goes out in one atomic write;
/// messages are packed densely, each chunk filled as far as whole messages
/// go.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub buf: Buf,
    pub start: usize,
    pub end: usize,
    pub atomic: bool,
}

/// The end of a [`WriteQueue`] at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    chunks: usize,
    back_end: usize,
    queued_total: u64,
}

/// A sender's bytes not yet accepted by the kernel, in order, with exact
/// accounting. Chunks being written are taken out with [`pop_front`]
/// and, if the kernel took only part of them, put back with [`push_front`].
///
/// [`pop_front`]: WriteQueue::pop_front
/// [`push_front`]: WriteQueue::push_front
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Every byte ever queued.
    pub queued_total: u64,
    /// Every byte the kernel accepted.
    pub accepted_total: u64,
    /// The FIFO has no other writer: messages are queued as stream bytes,
    /// written in runs as large as the pipe takes, with nothing to
    /// interleave with.
    pub sole_writer: bool,
}

impl WriteQueue {
    /// An empty queue; `sole_writer`: see the field.
    pub(crate) fn new(sole_writer: bool) -> WriteQueue {
        WriteQueue {
            sole_writer,
            ..WriteQueue::default()
        }
    }

    /// Copies a byte stream in, filling the last chunk before taking new
    /// buffers. Stream bytes never share a chunk with messages.
    pub(crate) fn push(&mut self, pool: &Rc<Pool>, data: &[u8]) {
        self.append(pool, data);
    }

    /// Copies one message, given as parts, in so that it goes out in a
    /// single write of at most `PIPE_BUF` bytes together with other whole
    /// messages (atomic: never interleaved with other writers of the FIFO).
    /// A longer message, or any message of a sole writer, is queued like
    /// stream bytes.
    pub(crate) fn push_message(&mut self, pool: &Rc<Pool>, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > PIPE_BUF || self.sole_writer {
            for part in parts {
                self.push(pool, part);
            }
            return;
        }
        let chunk = self.atomic_room(pool, total);
        chunk.buf.put_all(chunk.end, parts);
        chunk.end += total;
        self.queued_total += total as u64;
    }

    /// The last chunk if it is atomic and has `len` bytes of room, else a
    /// new one (`len` is at most `PIPE_BUF`).
    fn atomic_room(&mut self, pool: &Rc<Pool>, len: usize) -> &mut Chunk {
        let fits = matches!(self.chunks.back(), Some(c) if c.atomic && c.end + len <= PIPE_BUF);
        if !fits {
            self.chunks.push_back(Chunk {
                buf: pool.take_empty(true),
                start: 0,
                end: 0,
                atomic: true,
            });
        }
        self.chunks.back_mut().expect("a chunk was just ensured")
    }

    fn append(&mut self, pool: &Rc<Pool>, mut data: &[u8]) {
        let limit = pool.buf_size();
        self.queued_total += data.len() as u64;
        while !data.is_empty() {
            let room = match self.chunks.back() {
                Some(c) if !c.atomic && c.end < limit => limit - c.end,
                _ => {
                    self.chunks.push_back(Chunk {
                        buf: pool.take_empty(false),
                        start: 0,
                        end: 0,
                        atomic: false,
                    });
                    limit
                }
            };
            let n = room.min(data.len());
            let chunk = self.chunks.back_mut().expect("a chunk was just ensured");
            chunk.buf.put(chunk.end, &data[..n]);
            chunk.end += n;
            data = &data[n..];
        }
    }

    /// Where the queue's end is now, for [`rollback`](Self::rollback).
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            chunks: self.chunks.len(),
            back_end: self.chunks.back().map_or(0, |c| c.end),
            queued_total: self.queued_total,
        }
    }

    /// Forgets every byte pushed since `mark` (nothing was taken out since).
    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.chunks.truncate(mark.chunks);
        if let Some(c) = self.chunks.back_mut() {
            c.end = mark.back_end;
        }
        self.queued_total = mark.queued_total;
    }

    /// How many chunks from the front, at most `max`, hold at most
    /// `bytes` bytes together (the first counts whatever its size).
    pub(crate) fn front_run(&self, max: usize, bytes: usize) -> usize {
        let mut total = 0;
        let mut n = 0;
        for c in self.chunks.iter().take(max) {
            total += c.end - c.start;
            if n > 0 && total > bytes {
                break;
            }
            n += 1;
        }
        n
    }

    pub(crate) fn pop_front(&mut self) -> Option<Chunk> {
        self.chunks.pop_front()
    }

    pub(crate) fn push_front(&mut self, chunk: Chunk) {
        self.chunks.push_front(chunk);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes queued and not yet accepted, a chunk in flight included.
    pub(crate) fn unsent(&self) -> u64 {
        self.queued_total - self.accepted_total
    }

    /// Everything not yet written, in order, leaving the queue empty.
    pub(crate) fn take_bytes(&mut self, out: &mut Vec<u8>) {
        for c in self.chunks.drain(..) {
            out.extend_from_slice(&c.buf.as_slice()[c.start..c.end]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [State; 5] = [
        State::Opening,
        State::Open,
        State::PeerGone,
        State::Closing,
        State::Closed,
    ];
    const INPUTS: [Input; 5] = [
        Input::PeerReady,
        Input::PeerLeft,
        Input::Close,
        Input::Fail,
        Input::Drained,
    ];

    /// The whole table, written out once more by hand: every pair is checked.
    fn expected(s: State, i: Input) -> Option<(State, Notice)> {
        use Input as I;
        use Notice as N;
        use State as S;
        match s {
            S::Opening => match i {
                I::PeerReady => Some((S::Open, N::Opened)),
                I::PeerLeft => Some((S::Opening, N::None)),
                I::Close | I::Fail => Some((S::Closing, N::None)),
                I::Drained => None,
            },
            S::Open => match i {
                I::PeerReady => Some((S::Open, N::None)),
                I::PeerLeft => Some((S::PeerGone, N::PeerGone)),
                I::Close | I::Fail => Some((S::Closing, N::None)),
                I::Drained => None,
            },
            S::PeerGone => match i {
                I::PeerReady => Some((S::Open, N::PeerBack)),
                I::PeerLeft => Some((S::PeerGone, N::None)),
                I::Close | I::Fail => Some((S::Closing, N::None)),
                I::Drained => None,
            },
            S::Closing => match i {
                I::Drained => Some((S::Closed, N::Closed)),
                I::Close => None,
                I::PeerReady | I::PeerLeft | I::Fail => Some((S::Closing, N::None)),
            },
            S::Closed => None,
        }
    }

    #[test]
    fn every_state_input_pair() {
        for s in STATES {
            for i in INPUTS {
                assert_eq!(transition(s, i), expected(s, i), "{s:?} + {i:?}");
            }
        }
    }

    #[test]
    fn closed_is_reached_only_through_closing_and_is_terminal() {
        for s in STATES {
            for i in INPUTS {
                if let Some((State::Closed, _)) = transition(s, i) {
                    assert_eq!((s, i), (State::Closing, Input::Drained));
                }
                if s == State::Closed {
                    assert_eq!(transition(s, i), None);
                }
            }
        }
    }

    #[test]
    fn queue_keeps_order_and_counts_exactly() {
        let pool = Pool::new(2, 4096).unwrap();
        let mut q = WriteQueue::default();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        q.push(&pool, &data[..5000]);
        q.push(&pool, &data[5000..]);
        assert_eq!(q.unsent(), 10_000);
        assert_eq!(q.queued_total, 10_000);
        // A partial write of the first chunk: 100 bytes accepted.
        let mut c = q.pop_front().unwrap();
        assert_eq!((c.start, c.end), (0, 4096));
        c.start += 100;
        q.accepted_total += 100;
        q.push_front(c);
        assert_eq!(q.unsent(), 9_900);
        let mut rest = Vec::new();
        q.take_bytes(&mut rest);
        assert_eq!(rest, &data[100..]);
        assert!(q.is_empty());
    }

    #[test]
    fn messages_never_straddle_a_write_of_more_than_pipe_buf() {
        let pool = Pool::new(4, 64 * 1024).unwrap();
        let mut q = WriteQueue::default();
        q.push(&pool, b"stream");
        // 3 messages of 1500 bytes: two fit in one PIPE_BUF chunk, the third
        // starts the next; none shares a chunk with the stream bytes.
        for m in 0..3u8 {
            q.push_message(&pool, &[&[m; 4], &[m; 1496]]);
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| q.pop_front())
            .map(|c| c.end - c.start)
            .collect();
        assert_eq!(sizes, vec![6, 3000, 1500]);
        // A message longer than PIPE_BUF is queued as stream bytes.
        let mut q = WriteQueue::default();
        q.push_message(&pool, &[&[1; 5000]]);
        assert_eq!(q.pop_front().map(|c| c.end), Some(5000));
        assert_eq!(q.unsent(), 5000);
    }

    #[test]
    fn messages_are_packed_densely_in_small_buffers() {
        let pool = Pool::new(4, 64 * 1024).unwrap();
        let mut q = WriteQueue::default();
        for _ in 0..1000 {
            q.push_message(&pool, &[&[7; 63], b"\n"]);
        }
        // 64 messages of 64 bytes fill each PIPE_BUF chunk; none takes a
        // registered 64 KiB buffer.
        assert_eq!(q.front_run(100, usize::MAX), 16);
        assert_eq!(q.front_run(100, 4 * PIPE_BUF), 4);
        assert_eq!(pool.free_count(), 4);
        let chunks: Vec<Chunk> = std::iter::from_fn(|| q.pop_front()).collect();
        assert!(
            chunks
                .iter()
                .all(|c| c.atomic && c.buf.capacity() <= PIPE_BUF)
        );
        let sizes: Vec<usize> = chunks.iter().map(|c| c.end - c.start).collect();
        assert_eq!(sizes[..15], [PIPE_BUF; 15]);
        assert_eq!(sizes[15], 1000 * 64 - 15 * PIPE_BUF);
    }

    #[test]
    fn rollback_forgets_exactly_what_came_after_the_mark() {
        let pool = Pool::new(4, 64 * 1024).unwrap();
        let mut q = WriteQueue::default();
        q.push_message(&pool, &[b"kept\n"]);
        let mark = q.mark();
        for _ in 0..100 {
            q.push_message(&pool, &[&[1; 99], b"\n"]);
        }
        q.rollback(mark);
        q.push_message(&pool, &[b"after\n"]);
        assert_eq!(q.unsent(), 11);
        let mut out = Vec::new();
        q.take_bytes(&mut out);
        assert_eq!(out, b"kept\nafter\n");
    }
}
