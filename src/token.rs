//! Generational handles.

/// Names one transport: a slot and the generation of its occupant. A slot's
/// generation advances when its transport is closed, so a handle that
/// outlives its transport is recognised (`Error::Closed`, then
/// `Error::Stale` once the slot is reused) and never reaches another
/// transport's fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token {
    /// Slot index.
    pub index: u32,
    /// Generation of the slot when the transport was made.
    pub generation: u32,
}

impl Token {
    pub(crate) fn to_owner(self) -> u64 {
        (u64::from(self.index) << 32) | u64::from(self.generation)
    }

    pub(crate) fn from_owner(owner: u64) -> Token {
        Token {
            index: (owner >> 32) as u32,
            generation: owner as u32,
        }
    }
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
