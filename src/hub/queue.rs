//! A subscriber's queue: references to shared chunks of whole frames, the
//! whole frames it may hand over next, and its counters. No I/O here: the
//! hub hands what [`Subscriber::next_run`] gives to the sender.

use std::collections::VecDeque;
use std::rc::Rc;

use super::SubscriberStats;
use crate::token::Sender;

/// Whole frames on the wire, shared by every queue that holds them.
#[derive(Debug, Clone, Default)]
pub(super) struct Chunk {
    pub(super) bytes: Vec<u8>,
    /// Where each frame ends in `bytes`.
    pub(super) ends: Vec<usize>,
}

impl Chunk {
    /// Where frame `i` starts.
    fn start(&self, i: usize) -> usize {
        match i.checked_sub(1) {
            Some(before) => self.ends.get(before).copied().unwrap_or(0),
            None => 0,
        }
    }

    /// Ends its last frame: the bytes pushed since the one before are one
    /// frame.
    pub(super) fn end_frame(&mut self) {
        self.ends.push(self.bytes.len());
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Copies `other`'s frames after its own.
    fn append(&mut self, other: &Chunk) {
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|e| e + offset));
    }
}

/// A queue holding this many chunks is behind: small chunks that come
/// after are copied into chunks of its own instead of being shared. A
/// subscriber that keeps up holds a chunk or two; one that falls behind by
/// a megabyte of 64-byte frames, one chunk each (a paced publisher), would
/// otherwise keep thousands of chunks alive, each three allocations, and no
/// chunk would come back for reuse.
const BEHIND: usize = 4;

/// Chunks smaller than this are copied into a queue that is behind;
/// larger ones are shared (one reference per many frames costs little).
const COPY_BELOW: usize = 16 << 10;

/// A chunk of a queue's own grows to this size before the next starts.
const OWN_CHUNK: usize = 64 << 10;

/// At most this many chunks wait for reuse.
const SPARES: usize = 8;

/// Chunks that no queue holds any more, kept for the next frames: in the
/// steady state publishing allocates nothing, even one frame per chunk.
#[derive(Debug, Default)]
pub(super) struct Spares(Vec<Rc<Chunk>>);

impl Spares {
    /// Keeps `chunk` if nothing else holds it.
    pub(super) fn give(&mut self, chunk: Rc<Chunk>) {
        if Rc::strong_count(&chunk) == 1 && self.0.len() < SPARES {
            self.0.push(chunk);
        }
    }

    /// An empty chunk, held by nothing else.
    pub(super) fn take(&mut self) -> Rc<Chunk> {
        let mut chunk = self.0.pop().unwrap_or_default();
        // Never shared here, so this clears in place.
        let c = Rc::make_mut(&mut chunk);
        c.bytes.clear();
        c.ends.clear();
        chunk
    }
}

/// One subscriber: its sender and the frames queued for it.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub(super) tx: Sender,
    /// Chunks and the first of their frames still to hand over.
    queue: VecDeque<(Rc<Chunk>, usize)>,
    pub(super) stats: SubscriberStats,
    /// `close_after_flush` was called on its sender.
    pub(super) closing: bool,
}

impl Subscriber {
    pub(super) fn new(tx: Sender) -> Subscriber {
        Subscriber {
            tx,
            queue: VecDeque::new(),
            stats: SubscriberStats::default(),
            closing: false,
        }
    }

    /// Queues every frame of `chunk`: a reference to it, or, for a small
    /// chunk while this queue is behind, a copy at the end of a chunk of
    /// its own (see [`BEHIND`]).
    pub(super) fn push(&mut self, chunk: &Rc<Chunk>, spares: &mut Spares) {
        self.stats.queued_frames += chunk.ends.len() as u64;
        self.stats.queued_bytes += chunk.bytes.len() as u64;
        if self.queue.len() < BEHIND || chunk.bytes.len() >= COPY_BELOW {
            self.queue.push_back((Rc::clone(chunk), 0));
            return;
        }
        // The last chunk is ours alone (a copy made here, or a shared one
        // every other queue has moved past) and has room: copy into it.
        if let Some((last, _)) = self.queue.back_mut()
            && last.bytes.len() + chunk.bytes.len() <= OWN_CHUNK
            && let Some(own) = Rc::get_mut(last)
        {
            own.append(chunk);
            return;
        }
        let mut own = spares.take();
        // A spare is held by nothing else: this does not clone.
        Rc::make_mut(&mut own).append(chunk);
        self.queue.push_back((own, 0));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The chunk at the head of the queue.
    #[cfg(test)]
    pub(super) fn head(&self) -> Option<&Rc<Chunk>> {
        self.queue.front().map(|(chunk, _)| chunk)
    }

    /// The next whole frames to hand over, back to back in one chunk: as
    /// many as fit in `room` bytes, and at least one. Returns them and
    /// their count.
    pub(super) fn next_run(&self, room: usize) -> Option<(&[u8], usize)> {
        let (chunk, first) = self.queue.front()?;
        let start = chunk.start(*first);
        let (mut last, mut end) = (*first, start);
        while let Some(&e) = chunk.ends.get(last) {
            if last > *first && end - start >= room {
                break;
            }
            end = e;
            last += 1;
        }
        Some((chunk.bytes.get(start..end)?, last - first))
    }

    /// Counts the `frames` frames (`bytes` bytes) that [`next_run`]
    /// gave as handed over, and moves past them.
    ///
    /// [`next_run`]: Self::next_run
    pub(super) fn handed(&mut self, frames: usize, bytes: usize, spares: &mut Spares) {
        self.stats.handed_frames += frames as u64;
        self.stats.handed_bytes += bytes as u64;
        self.skip(frames, bytes, spares);
    }

    /// Drops whole frames from the head of the queue until it holds at
    /// most `limit` bytes, counting them. The head was never partly handed
    /// over: the sender takes whole frames only.
    pub(super) fn drop_oldest(&mut self, limit: u64, spares: &mut Spares) {
        while self.stats.queued_bytes > limit {
            let Some((chunk, first)) = self.queue.front() else {
                break;
            };
            let end = chunk.ends.get(*first).copied().unwrap_or(chunk.bytes.len());
            let bytes = end - chunk.start(*first);
            self.stats.dropped_frames += 1;
            self.stats.dropped_bytes += bytes as u64;
            self.skip(1, bytes, spares);
        }
    }

    /// Moves past `frames` frames of the head chunk.
    fn skip(&mut self, frames: usize, bytes: usize, spares: &mut Spares) {
        self.stats.queued_frames -= frames as u64;
        self.stats.queued_bytes -= bytes as u64;
        let Some((chunk, first)) = self.queue.front_mut() else {
            return;
        };
        *first += frames;
        if *first >= chunk.ends.len()
            && let Some((chunk, _)) = self.queue.pop_front()
        {
            spares.give(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Codec;
    use crate::token::Token;

    fn chunk(frames: &[&[u8]]) -> Rc<Chunk> {
        let mut chunk = Chunk::default();
        for f in frames {
            Codec::LengthPrefixed.encode(f, &mut chunk.bytes).unwrap();
            chunk.end_frame();
        }
        Rc::new(chunk)
    }

    fn sub() -> Subscriber {
        Subscriber::new(Sender(Token {
            index: 0,
            generation: 0,
            proactor: 0,
        }))
    }

    #[test]
    fn drop_oldest_drops_whole_frames_from_the_head() {
        let mut spares = Spares::default();
        let mut sub = sub();
        sub.push(&chunk(&[b"aaaa", b"bb", b"c"]), &mut spares);
        assert_eq!(sub.stats.queued_bytes, 8 + 6 + 5);
        sub.drop_oldest(12, &mut spares);
        assert_eq!(sub.stats.dropped_frames, 1);
        assert_eq!(sub.stats.dropped_bytes, 8);
        assert_eq!(sub.stats.queued_frames, 2);
        assert_eq!(sub.queue.front().map(|q| q.1), Some(1));
        sub.drop_oldest(0, &mut spares);
        assert!(sub.is_empty());
        assert_eq!(sub.stats.dropped_frames, 3);
        assert_eq!(sub.stats.queued_bytes, 0);
    }

    /// A run is whole frames of one chunk, at least one however small the
    /// room, and as many as fit.
    #[test]
    fn runs_are_whole_frames_within_the_room() {
        let mut spares = Spares::default();
        let mut sub = sub();
        sub.push(&chunk(&[b"aaaa", b"bb"]), &mut spares);
        sub.push(&chunk(&[b"c"]), &mut spares);
        let (run, frames) = sub.next_run(1).unwrap();
        assert_eq!((run, frames), (&b"\x04\0\0\0aaaa"[..], 1));
        let (run, frames) = sub.next_run(1000).unwrap();
        assert_eq!((run.len(), frames), (14, 2), "stops at the chunk's end");
        sub.handed(2, 14, &mut spares);
        assert_eq!(sub.next_run(1000).unwrap().1, 1);
        sub.handed(1, 5, &mut spares);
        assert!(sub.is_empty() && sub.next_run(1000).is_none());
        assert_eq!((sub.stats.handed_frames, sub.stats.handed_bytes), (3, 19));
        assert_eq!((sub.stats.queued_frames, sub.stats.queued_bytes), (0, 0));
    }

    /// A chunk the last queue moves past is reused, cleared; one another
    /// queue still holds is not.
    #[test]
    fn chunks_no_queue_holds_are_reused() {
        let mut spares = Spares::default();
        let (mut a, mut b) = (sub(), sub());
        let shared = chunk(&[b"x"]);
        a.push(&shared, &mut spares);
        b.push(&shared, &mut spares);
        drop(shared);
        a.handed(1, 5, &mut spares);
        assert!(spares.0.is_empty(), "b still holds it");
        b.handed(1, 5, &mut spares);
        assert_eq!(spares.0.len(), 1);
        let reused = spares.take();
        assert!(reused.bytes.is_empty() && reused.ends.is_empty());
        assert!(reused.bytes.capacity() >= 5, "kept its allocation");
    }

    /// Every frame `sub` holds, handed over in order (runs of any size).
    fn hand_all(sub: &mut Subscriber, spares: &mut Spares) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some((run, frames)) = sub.next_run(1000) {
            let bytes = run.len();
            out.extend_from_slice(run);
            sub.handed(frames, bytes, spares);
        }
        out
    }

    /// A queue that is behind copies small chunks into one of its own:
    /// the published chunk is then held by the queues that keep up only,
    /// and the frames still come out whole and in order.
    #[test]
    fn a_queue_behind_copies_small_chunks_into_its_own() {
        let mut spares = Spares::default();
        let (mut fast, mut slow) = (sub(), sub());
        let mut wire = Vec::new();
        for i in 0..BEHIND as u8 {
            let c = chunk(&[&[i; 3]]);
            wire.extend_from_slice(&c.bytes);
            slow.push(&c, &mut spares);
        }
        for i in 0..100u8 {
            let c = chunk(&[&[i; 5], &[i; 2]]);
            wire.extend_from_slice(&c.bytes);
            fast.push(&c, &mut spares);
            slow.push(&c, &mut spares);
            assert_eq!(
                Rc::strong_count(&c),
                2,
                "chunk {i}: the slow queue holds it"
            );
            fast.handed(2, c.bytes.len(), &mut spares);
        }
        // The copies went to the end of the last chunk, which only the
        // slow queue held once the loop above let go of it.
        assert_eq!(slow.queue.len(), BEHIND, "the copies share one chunk");
        assert_eq!(slow.stats.queued_frames, BEHIND as u64 + 200);
        assert_eq!(slow.stats.queued_bytes, wire.len() as u64);
        assert_eq!(hand_all(&mut slow, &mut spares), wire);
        assert_eq!((slow.stats.queued_frames, slow.stats.queued_bytes), (0, 0));
        assert_eq!(slow.stats.handed_frames, BEHIND as u64 + 200);
    }

    /// A chunk of `COPY_BELOW` bytes or more is shared even by a queue
    /// that is behind.
    #[test]
    fn large_chunks_are_shared_when_behind() {
        let mut spares = Spares::default();
        let mut slow = sub();
        for _ in 0..BEHIND {
            slow.push(&chunk(&[b"x"]), &mut spares);
        }
        let big = chunk(&[&[7u8; COPY_BELOW]]);
        slow.push(&big, &mut spares);
        assert_eq!(Rc::strong_count(&big), 2);
        assert_eq!(slow.queue.len(), BEHIND + 1);
    }

    /// Dropping the oldest frames reaches into the copies in order: what
    /// is left is the newest frames, whole.
    #[test]
    fn drop_oldest_goes_through_copied_frames() {
        let mut spares = Spares::default();
        let mut slow = sub();
        let mut frames = Vec::new();
        for i in 0..(BEHIND as u8 + 50) {
            let c = chunk(&[&[i; 4]]);
            frames.push(c.bytes.clone());
            slow.push(&c, &mut spares);
        }
        // Each frame is 8 bytes on the wire: keep the last 10.
        slow.drop_oldest(80, &mut spares);
        assert_eq!(slow.stats.dropped_frames, frames.len() as u64 - 10);
        assert_eq!(
            hand_all(&mut slow, &mut spares),
            frames[frames.len() - 10..].concat()
        );
    }
}
