//! A byte queue kept in whole units (one `write()` call, or one frame), so
//! a policy can drop the oldest units and a reader can hand out whole
//! frames. Pure data: no I/O, no Python.

use std::collections::VecDeque;

/// Bytes in one contiguous buffer, with where each unit ends.
#[derive(Debug, Default)]
pub struct UnitQueue {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    head: usize,
    /// Where each unit ends, as offsets into `buf`, oldest first.
    ends: VecDeque<usize>,
}

/// Below this many consumed bytes the buffer is not moved down.
const COMPACT_AT: usize = 64 * 1024;

impl UnitQueue {
    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.head == self.buf.len()
    }

    /// Units queued (a unit partly consumed counts).
    pub fn units(&self) -> usize {
        self.ends.len()
    }

    /// Appends one unit made of `parts`.
    pub fn push(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.ends.push_back(self.buf.len());
    }

    /// Drops the oldest unit; returns its size, or `None` when empty.
    pub fn drop_oldest(&mut self) -> Option<usize> {
        let end = self.ends.pop_front()?;
        let n = end - self.head;
        self.head = end;
        self.compact();
        Some(n)
    }

    /// The oldest bytes: whole units up to `max` bytes, at least one unit.
    /// A unit longer than `max` comes whole when `whole` (frames must),
    /// else cut at `max` (a byte stream may be).
    pub fn front(&self, max: usize, whole: bool) -> &[u8] {
        let limit = self.head.saturating_add(max);
        let fit = self.ends.partition_point(|&e| e <= limit);
        let end = match (fit, self.ends.front()) {
            (0, Some(&first)) if whole => first,
            (0, Some(_)) => limit.min(self.buf.len()),
            (0, None) => self.head,
            (n, _) => self.ends.get(n - 1).copied().unwrap_or(self.head),
        };
        self.buf.get(self.head..end).unwrap_or_default()
    }

    /// The oldest unit, whole (empty slice if none).
    pub fn first_unit(&self) -> &[u8] {
        let end = self.ends.front().copied().unwrap_or(self.head);
        self.buf.get(self.head..end).unwrap_or_default()
    }

    /// Every queued byte.
    pub fn as_slice(&self) -> &[u8] {
        self.buf.get(self.head..).unwrap_or_default()
    }

    /// Forgets the oldest `n` bytes (units they complete go with them).
    pub fn consume(&mut self, n: usize) {
        self.head = (self.head + n).min(self.buf.len());
        while self.ends.front().is_some_and(|&e| e <= self.head) {
            self.ends.pop_front();
        }
        self.compact();
    }

    /// Appends every unit of `other` (whole, in order) after this queue's.
    pub fn append(&mut self, other: &UnitQueue) {
        let base = self.buf.len();
        self.buf.extend_from_slice(other.as_slice());
        let shift = |e: &usize| e - other.head + base;
        self.ends.extend(other.ends.iter().map(shift));
    }

    /// Empties the queue, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.head = 0;
    }

    /// Takes every queued byte out, leaving the queue empty.
    pub fn take_all(&mut self) -> Vec<u8> {
        let rest = self.as_slice().to_vec();
        self.buf.clear();
        self.ends.clear();
        self.head = 0;
        rest
    }

    fn compact(&mut self) {
        if self.head == self.buf.len() && self.ends.is_empty() {
            self.buf.clear();
            self.ends.clear();
            self.head = 0;
        } else if self.head >= COMPACT_AT && self.head * 2 >= self.buf.len() {
            self.buf.drain(..self.head);
            for end in self.ends.iter_mut() {
                *end -= self.head;
            }
            self.head = 0;
        }
    }
}
