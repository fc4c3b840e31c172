//! Generational handles, stamped with the proactor that issued them.

use std::sync::atomic::{AtomicU32, Ordering};

/// Names one transport: the proactor that made it, a slot, and the
/// generation of the slot's occupant. A slot's generation advances when its
/// transport is closed, so a handle that outlives its transport is
/// recognised (`Error::Closed`, then `Error::Stale` once the slot is
/// reused) and never reaches another transport's fd. A handle given to a
/// proactor that did not issue it is refused with `Error::Foreign`.
///
/// Every [`Event`](crate::Event) names its transport by a token
/// ([`Event::token`](crate::Event::token)). To keep per-transport state
/// without a hash map, index a `Vec` by `index`: indices are dense (a slot
/// is reused once its transport has closed, lowest first), and comparing
/// the whole token, or `generation`, tells a slot's new occupant from the
/// old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token {
    /// Slot index.
    pub index: u32,
    /// Generation of the slot when the transport was made.
    pub generation: u32,
    /// Identity of the issuing proactor ([`Proactor::id`](crate::Proactor::id)):
    /// unique in the process, never reused while it lives.
    pub proactor: u32,
}

/// Hands out proactor identities: 1, 2, 3... and never the same twice.
/// `None` once 2^32 - 1 proactors were made by this process.
pub(crate) fn next_proactor_id() -> Option<u32> {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| id.checked_add(1))
        .ok()
}

/// The read end of a pipe or FIFO, as a handle into a [`Proactor`](crate::Proactor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receiver(pub(crate) Token);

/// The write end of a pipe or FIFO, as a handle into a [`Proactor`](crate::Proactor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sender(pub(crate) Token);

impl Receiver {
    /// The underlying token (as reported in events).
    pub fn token(self) -> Token {
        self.0
    }
}

impl Sender {
    /// The underlying token (as reported in events).
    pub fn token(self) -> Token {
        self.0
    }
}

impl From<Receiver> for Token {
    fn from(r: Receiver) -> Token {
        r.0
    }
}

impl From<Sender> for Token {
    fn from(s: Sender) -> Token {
        s.0
    }
}
