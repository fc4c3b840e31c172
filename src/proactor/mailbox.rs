//! Mailboxes: bounded queues that other threads fill and the proactor's
//! thread empties in batches, the wake-up check folded into the push.
//!
//! A [`Notifier`](super::Notifier) beside a channel of the caller's orders
//! each message twice: in the channel, and by the notifier's fence, which
//! must order against a queue it cannot see. Here a push claims its slot with one `SeqCst`
//! compare-exchange (`buffers::Slots`), and the proactor, before it
//! sleeps, marks itself asleep and then reads the ring's tail, both
//! `SeqCst`: either the proactor sees the push, or the push sees the mark
//! and writes the eventfd. Taking needs no read-modify-write at all.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SendError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};

use super::notify::Wake;
use crate::buffers::{At, Slots, Taker};

/// The sending half of a [`Mailbox`]: `Send`, `Sync`, cheap to clone.
///
/// Made by [`Proactor::mailbox`](crate::Proactor::mailbox). A send wakes
/// the proactor only when it sleeps (or is about to) with this mailbox
/// looked at; while it is awake, a send is one compare-exchange and a copy.
pub struct MailSender<T> {
    shared: Arc<Shared<T>>,
}

/// The proactor's half of a mailbox: the queue its senders fill.
///
/// Items that came since the proactor last looked make its
/// [`poll`](crate::Proactor::poll) return
/// [`Event::Notified`](crate::Event::Notified) (one per poll, however many
/// items and mailboxes), and so does the last sender leaving; take them
/// with [`take`](Self::take). Dropping the mailbox drops the items in it
/// and makes every later send fail with its item given back.
pub struct Mailbox<T> {
    shared: Arc<Shared<T>>,
    taker: Taker,
}

struct Shared<T> {
    ring: Slots<T>,
    /// The proactor sleeps without looking here again: a push writes the
    /// eventfd (`SeqCst`, see the module docs).
    asleep: AtomicBool,
    /// Live [`MailSender`]s.
    senders: AtomicUsize,
    /// The [`Mailbox`] was dropped.
    closed: AtomicBool,
    /// Senders waiting for room, and where they wait.
    blocked: AtomicUsize,
    room_lock: Mutex<()>,
    room: Condvar,
    /// The proactor's own: the ring's tail when it last reported, and
    /// whether it reported the last sender leaving.
    reported: AtomicUsize,
    hangup_seen: AtomicBool,
    /// The last take left items behind (new ones came as it took, one was
    /// still being written, or it took its most): the proactor reports
    /// again before it sleeps.
    stalled: AtomicBool,
    wake: Wake,
}

impl<T> Shared<T> {
    /// Wakes the proactor if it sleeps: after a push or the last sender's
    /// leave, each a `SeqCst` read-modify-write.
    fn wake_if_asleep(&self) {
        if self.asleep.load(Ordering::SeqCst) && self.asleep.swap(false, Ordering::SeqCst) {
            self.wake.wake();
        }
    }
}

/// A new mailbox holding up to `capacity` items (rounded up to a power of
/// two, at least 2), woken through `wake`; the third part is the
/// proactor's view of it.
pub(super) fn new<T: Send + 'static>(
    capacity: usize,
    wake: Wake,
) -> (MailSender<T>, Mailbox<T>, Arc<dyn Watch>) {
    let (ring, taker) = Slots::new(capacity);
    let shared = Arc::new(Shared {
        ring,
        // Until the proactor first looks, a push wakes it.
        asleep: AtomicBool::new(true),
        senders: AtomicUsize::new(1),
        closed: AtomicBool::new(false),
        blocked: AtomicUsize::new(0),
        room_lock: Mutex::new(()),
        room: Condvar::new(),
        reported: AtomicUsize::new(0),
        hangup_seen: AtomicBool::new(false),
        stalled: AtomicBool::new(false),
        wake,
    });
    let watch: Arc<dyn Watch> = shared.clone();
    (
        MailSender {
            shared: Arc::clone(&shared),
        },
        Mailbox { shared, taker },
        watch,
    )
}

impl<T> MailSender<T> {
    /// Queues `item`, waiting while the mailbox is full. Fails, giving the
    /// item back, once the [`Mailbox`] is dropped.
    pub fn send(&self, mut item: T) -> Result<(), SendError<T>> {
        loop {
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => item = back,
            }
            self.wait_for_room();
        }
    }

    /// Queues `item` if there is room now: never blocks.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(TrySendError::Disconnected(item));
        }
        shared.ring.push(item).map_err(TrySendError::Full)?;
        shared.wake_if_asleep();
        Ok(())
    }

    /// Returns once a take made room (or the mailbox is gone), perhaps
    /// spuriously.
    fn wait_for_room(&self) {
        let shared = &*self.shared;
        let guard = shared.room_lock.lock().unwrap_or_else(|e| e.into_inner());
        shared.blocked.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence of `take` after it frees slots: either the
        // take sees this sender blocked (and, taking the lock, wakes it in
        // its wait), or this check sees the room.
        std::sync::atomic::fence(Ordering::SeqCst);
        let guard = if shared.ring.is_full() && !shared.closed.load(Ordering::SeqCst) {
            shared.room.wait(guard).unwrap_or_else(|e| e.into_inner())
        } else {
            guard
        };
        shared.blocked.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
    }
}

impl<T> Clone for MailSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        MailSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for MailSender<T> {
    fn drop(&mut self) {
        // `SeqCst`: the proactor's check before it sleeps reads the count.
        if self.shared.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.wake_if_asleep();
        }
    }
}

impl<T> Mailbox<T> {
    /// Moves the queued items, oldest first (each sender's in its order),
    /// to the end of `out`; returns how many. Takes at most
    /// [`capacity`](Self::capacity) items; senders waiting for room go on.
    pub fn take(&mut self, out: &mut Vec<T>) -> usize {
        let shared = &*self.shared;
        let n = shared
            .ring
            .take(&mut self.taker, out, shared.ring.capacity());
        let left = shared.ring.head() != shared.ring.tail(Ordering::SeqCst);
        shared.stalled.store(left, Ordering::Relaxed);
        if n > 0 {
            // Pairs with the fence of a sender about to wait for room.
            std::sync::atomic::fence(Ordering::SeqCst);
            if shared.blocked.load(Ordering::Relaxed) > 0 {
                drop(shared.room_lock.lock().unwrap_or_else(|e| e.into_inner()));
                shared.room.notify_all();
            }
        }
        n
    }

    /// Every [`MailSender`] is gone: no item comes after the ones queued
    /// now (so one more [`take`](Self::take) gets the last of them).
    pub fn is_disconnected(&self) -> bool {
        self.shared.senders.load(Ordering::Acquire) == 0
    }

    /// The most items it holds: a send waits while it holds this many.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity()
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.closed.store(true, Ordering::SeqCst);
        drop(shared.room_lock.lock().unwrap_or_else(|e| e.into_inner()));
        shared.room.notify_all();
        // A send racing this drop may still put an item in; it goes with
        // the ring.
        let mut items = Vec::new();
        while shared.ring.take(&mut self.taker, &mut items, usize::MAX) > 0 {
            items.clear();
        }
    }
}

impl<T> std::fmt::Debug for MailSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSender")
            .field("capacity", &self.shared.ring.capacity())
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("capacity", &self.capacity())
            .field("disconnected", &self.is_disconnected())
            .finish_non_exhaustive()
    }
}

/// What the proactor found looking at a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    Quiet,
    /// Something came since the last look: report it.
    Report,
    /// The mailbox was dropped: forget it.
    Gone,
}

/// The proactor's view of one mailbox, whatever its item type.
pub(super) trait Watch {
    /// Looks at what came since the last look. With nothing new: `sleep`
    /// marks the proactor asleep (the next push wakes it), else the mark
    /// is cleared (it is awake again).
    fn look(&self, sleep: bool) -> Look;
    /// Something may have come (cheap: no mark, no wait).
    fn hinted(&self) -> bool;
}

impl<T: Send> Watch for Shared<T> {
    fn look(&self, sleep: bool) -> Look {
        if self.closed.load(Ordering::Acquire) {
            return Look::Gone;
        }
        if sleep {
            self.asleep.store(true, Ordering::SeqCst);
        }
        // `SeqCst` after the mark: see the module docs.
        let tail = self.ring.tail(Ordering::SeqCst);
        let hangup = self.senders.load(Ordering::SeqCst) == 0
            && !self.hangup_seen.swap(true, Ordering::Relaxed);
        let fresh = tail != self.reported.load(Ordering::Relaxed);
        if fresh {
            self.reported.store(tail, Ordering::Relaxed);
        }
        if fresh || hangup {
            self.asleep.store(false, Ordering::Relaxed);
            return Look::Report;
        }
        if sleep && self.stalled.swap(false, Ordering::Relaxed) {
            // Items were left. The first may be one that a push still
            // writes, which may have missed the mark: wait for it (a
            // moment), then report them again.
            while {
                let head = self.ring.head();
                head != self.ring.tail(Ordering::SeqCst) && self.ring.at(head) == At::Claimed
            } {
                std::thread::yield_now();
            }
            self.asleep.store(false, Ordering::Relaxed);
            return Look::Report;
        }
        if !sleep {
            self.asleep.store(false, Ordering::Relaxed);
        }
        Look::Quiet
    }

    fn hinted(&self) -> bool {
        self.ring.tail(Ordering::Relaxed) != self.reported.load(Ordering::Relaxed)
            || self.closed.load(Ordering::Relaxed)
            || (self.senders.load(Ordering::Relaxed) == 0
                && !self.hangup_seen.load(Ordering::Relaxed))
    }
}

/// The proactor's mailboxes.
#[derive(Default)]
pub(super) struct Mailboxes {
    watched: Vec<Arc<dyn Watch>>,
    /// Some were marked asleep by `before_sleep` and not looked at since.
    marked: bool,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailboxes")
            .field("watched", &self.watched.len())
            .finish_non_exhaustive()
    }
}

impl Mailboxes {
    pub(super) fn add(&mut self, watch: Arc<dyn Watch>) {
        self.watched.push(watch);
    }

    /// Before a waiting enter: `true` if a mailbox has something to report
    /// (then do not sleep); else each is marked, so the next send wakes the
    /// proactor.
    pub(super) fn before_sleep(&mut self) -> bool {
        if self.watched.is_empty() {
            return false;
        }
        self.marked = true;
        self.look_all(true)
    }

    /// After a poll's enters: `true` if a mailbox has something to report.
    /// Clears the marks of `before_sleep` (sends need not wake an awake
    /// proactor); else looks only where a send hinted.
    pub(super) fn after_poll(&mut self) -> bool {
        if std::mem::take(&mut self.marked) {
            return self.look_all(false);
        }
        if !self.watched.iter().any(|w| w.hinted()) {
            return false;
        }
        self.look_all(false)
    }

    fn look_all(&mut self, sleep: bool) -> bool {
        let mut report = false;
        self.watched.retain(|w| match w.look(sleep) {
            Look::Quiet => true,
            Look::Report => {
                report = true;
                true
            }
            Look::Gone => false,
        });
        report
    }
}
