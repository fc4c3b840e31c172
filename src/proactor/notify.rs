//! Wake-ups from other threads: a [`Notifier`] writes an eventfd on which
//! the proactor keeps one 8-byte READ armed, so a `poll` asleep in the
//! kernel returns with [`Event::Notified`](crate::Event::Notified).
//!
//! An eventfd READ was chosen over `IORING_OP_MSG_RING`: MSG_RING needs a
//! ring on the sending side, so every producer thread would own one; the
//! eventfd is one fd shared by all, written with one `write(2)`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::io::Io;
use super::mailbox::Mailboxes;
use super::route::NOTIFY;
use crate::error::{Error, Result};
use crate::event::Item;
use crate::ring::{OpId, Ring};
use crate::token::Token;

/// What a proactor and its notifiers share.
#[derive(Debug)]
struct Shared {
    /// Blocking, so the ring's READ waits by internal poll (a non-blocking
    /// one would complete with -EAGAIN). Writers never block: the counter
    /// is written once per wake-up, far below its limit.
    fd: OwnedFd,
    /// A wake-up is on its way: further notifies write nothing.
    pending: AtomicBool,
    /// The proactor is gone: notifies do nothing.
    closed: AtomicBool,
}

/// Wakes a [`Proactor`](crate::Proactor) from any thread: `Send`, `Sync`, cheap to clone.
///
/// [`notify`](Self::notify) makes the proactor's current or next
/// [`poll`](crate::Proactor::poll) return with one
/// [`Event::Notified`](crate::Event::Notified). Notifications coalesce:
/// however many arrive before the proactor sees the first, it reports one
/// event and makes one wake-up (one `write(2)` here, one completion there).
/// So the event means "look at your queue", not "one message": drain the
/// queue the producers fill until it is empty each time.
///
/// A notifier may outlive its proactor: [`notify`](Self::notify) then does
/// nothing and returns `false`.
#[derive(Debug, Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl Notifier {
    /// Wakes the proactor, or does nothing if a wake-up is already on its
    /// way. Returns `false` (and does nothing) once the proactor is
    /// dropped. Never blocks.
    pub fn notify(&self) -> bool {
        if self.shared.closed.load(Ordering::Acquire) {
            return false;
        }
        // A wake-up on its way already: nothing to write, and only a read
        // of the flag, which stays in this core's cache while it holds.
        // The fence pairs with the proactor's after its reset: either the
        // proactor sees what this thread queued before notifying, or this
        // thread sees the flag reset and writes.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.shared.pending.load(Ordering::Relaxed) {
            return true;
        }
        if !self.shared.pending.swap(true, Ordering::AcqRel) {
            self.shared.write();
        }
        true
    }
}

impl Shared {
    /// Adds one to the eventfd's counter: its READ completes.
    fn write(&self) {
        // Fails only if the counter would overflow (never: it is written
        // once per wake-up and read back each time) or on EINTR, where
        // the counter is left as it was; retry that once.
        let one = 1u64.to_ne_bytes();
        if nix::unistd::write(&self.fd, &one).is_err() {
            let _ = nix::unistd::write(&self.fd, &one);
        }
    }
}

/// A mailbox's way to wake the proactor: the notifiers' eventfd, written
/// when the mailbox's own lock says the proactor sleeps (so without the
/// notifiers' `pending` flag and fence).
pub(super) struct Wake(Arc<Shared>);

impl Wake {
    /// Makes the proactor's current or next `poll` return. Does nothing
    /// once the proactor is dropped.
    pub(super) fn wake(&self) {
        if !self.0.closed.load(Ordering::Acquire) {
            self.0.write();
        }
    }
}

/// Adds `Notified` (with `token`) to a poll's events, once per poll
/// whichever wake-up (the eventfd, a mailbox) asks.
pub(super) fn report(pending: &mut Vec<Item>, token: Token) {
    if !pending.iter().any(|i| matches!(i, Item::Notified(_))) {
        pending.push(Item::Notified(token));
    }
}

/// The proactor's side: the shared state and its armed READ.
#[derive(Debug)]
pub(super) struct NotifyState {
    shared: Arc<Shared>,
    armed: Option<OpId>,
    /// The mailboxes, which wake the proactor through the same eventfd.
    pub(super) mailboxes: Mailboxes,
}

impl Drop for NotifyState {
    fn drop(&mut self) {
        // Runs after `Proactor::drop` has reaped the READ; the eventfd
        // lives on with the notifiers, which now do nothing.
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl NotifyState {
    /// A fresh eventfd, shared with no notifier yet.
    pub(super) fn new() -> Result<NotifyState> {
        let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).map_err(|e| Error::Ring {
            op: "eventfd for the notifier",
            source: e.into(),
        })?;
        let shared = Arc::new(Shared {
            fd: fd.into(),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        Ok(NotifyState {
            shared,
            armed: None,
            mailboxes: Mailboxes::default(),
        })
    }

    /// A handle to wake the proactor with.
    pub(super) fn notifier(&self) -> Notifier {
        Notifier {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A mailbox's handle on the eventfd.
    pub(super) fn wake(&self) -> Wake {
        Wake(Arc::clone(&self.shared))
    }

    /// Keeps the 8-byte READ of the eventfd armed.
    pub(super) fn arm(&mut self, ring: &mut Ring) -> Result<()> {
        let fd = self.shared.fd.as_fd().as_raw_fd();
        let op = ring
            .read_counter(fd, NOTIFY)
            .map_err(|source| Error::Ring {
                op: "submit",
                source,
            })?;
        self.armed = Some(op);
        Ok(())
    }

    /// The eventfd READ completed: one `Notified` (carrying `token`, which
    /// names no transport) for this poll, the flag reset, the READ armed
    /// again.
    pub(super) fn on_complete(&mut self, io: &mut Io, token: Token, op: OpId, result: i32) {
        if self.armed != Some(op) {
            return;
        }
        self.armed = None;
        let again = result >= 0 || result == -libc::EINTR || result == -libc::EAGAIN;
        if result != -libc::ECANCELED {
            // Acquire: the producers' queued work is visible from here on.
            // A notify after this swap writes again and the READ armed
            // below (or the counter it leaves) wakes the next poll.
            // On a failure too: the producers' queue is looked at.
            self.shared.pending.swap(false, Ordering::AcqRel);
            std::sync::atomic::fence(Ordering::SeqCst);
            report(&mut io.pending, token);
        }
        // A cancelled READ (the proactor is being dropped) is not armed
        // again, nor one that failed for good (which would spin).
        if again {
            let _ = self.arm(&mut io.ring);
        }
    }
}
