//! Completed work, as reported by [`Proactor::poll`](crate::Proactor::poll).

use crate::buffers::Lent;
use crate::error::Error;
use crate::frame::{Checked, Codec, Payloads};
use crate::token::{Receiver, Sender, Token};

/// Why a transport closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`Proactor::close`](crate::Proactor::close) was called.
    Requested,
    /// [`Proactor::close_after_flush`](crate::Proactor::close_after_flush)
    /// was called and every queued byte was written.
    Flushed,
    /// A fatal error, reported by an [`Event::Error`] just before.
    Error,
    /// A one-shot receiver reached EOF: every writer closed.
    Eof,
    /// The reader left and the sender's policy is
    /// [`Reconnect::Fail`](crate::Reconnect::Fail).
    PeerGone,
}

/// One piece of finished work. Borrowed from [`Events`]: the data slices stay
/// valid until `Events` is polled again or dropped. A view, so `Copy`: pass
/// it on by value (to a [`Hub`](crate::hub::Hub), say) and still match it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A sender found its reader and is now open.
    Opened(Sender),
    /// A whole frame arrived on a receiver opened with
    /// [`FifoOptions::frames`](crate::FifoOptions::frames): its payload.
    Frame {
        /// The receiver.
        from: Receiver,
        /// The payload, lent until the next poll.
        frame: &'a [u8],
    },
    /// Whole frames that arrived back to back in one read of a framed
    /// receiver, as they were on the wire: only from
    /// [`Events::runs`], which gathers a run of [`Event::Frame`]s into one.
    /// Ready for [`Proactor::send_encoded`](crate::Proactor::send_encoded)
    /// as they are, or for [`Codec::payloads`].
    Frames {
        /// The receiver.
        from: Receiver,
        /// The frames, encoded (newlines or length headers included), lent
        /// until the next poll.
        wire: &'a [u8],
        /// How many frames `wire` holds.
        frames: usize,
        /// The same frames, already checked whole by the receiver's
        /// decoder: for [`Proactor::send_checked`](crate::Proactor::send_checked)
        /// to any number of senders, with no walk over the frames again
        /// ([`Checked::new`] would walk them once more).
        checked: Checked<'a>,
    },
    /// Bytes arrived on a receiver.
    Data {
        /// The receiver.
        from: Receiver,
        /// The bytes, in a registered buffer lent until the next poll.
        data: &'a [u8],
    },
    /// The kernel accepted `bytes` more bytes of a sender's queue: bytes
    /// of your sends (a relay's bytes come as [`Event::Relayed`]).
    Sent {
        /// The sender.
        to: Sender,
        /// Bytes written by this completion.
        bytes: usize,
    },
    /// The peer left: for a sender the reader closed (`EPIPE`), for a
    /// receiver every writer closed (EOF). A sender keeps its queue and
    /// resumes when a reader comes back ([`Event::PeerBack`]).
    PeerGone(Token),
    /// The peer came back after [`Event::PeerGone`]: a sender found a new
    /// reader and resumed writing at the exact byte, or a persistent
    /// receiver got data from a new writer.
    PeerBack(Token),
    /// `bytes` more bytes of a relay or fan-out from `from` reached `to`'s
    /// pipe. Nearly all move inside the kernel (splice, tee); the few the
    /// receiver read just before the relay took over, and those a fan-out
    /// fills in for a destination that got less than the others, are
    /// written from `to`'s queue and reported when the kernel accepts
    /// them. Summed per destination, they are every byte relayed to it.
    Relayed {
        /// The receiver.
        from: Receiver,
        /// The sender.
        to: Sender,
        /// Bytes that reached `to`'s pipe.
        bytes: usize,
    },
    /// A fan-out dropped a destination whose reader left
    /// ([`FanOutPolicy::Detach`](crate::FanOutPolicy::Detach)).
    Detached {
        /// The receiver.
        from: Receiver,
        /// The sender no longer fed.
        to: Sender,
    },
    /// A sender that refused a send with
    /// [`Error::WouldBlock`](crate::Error::WouldBlock), or reached its
    /// high watermark, is down to its low watermark: send again.
    ///
    /// It says what the poll found: a send made earlier in the same batch
    /// of events may have filled the sender again, and a send refused then
    /// promises the next `Writable`.
    Writable(Sender),
    /// A transport is closed and its handle is dead.
    Closed {
        /// The transport.
        token: Token,
        /// Why.
        reason: CloseReason,
        /// Bytes queued on a sender that the kernel never accepted, in
        /// order; empty for a receiver. Bytes it did accept are in the
        /// pipe, not here: they reach a reader only if one drains the pipe.
        /// Once this end is closed, a FIFO that no process holds open any
        /// more drops them, so with no reader they are lost.
        unsent: &'a [u8],
    },
    /// A [`Notifier`](crate::Notifier) woke the proactor, or items came
    /// into a [`Mailbox`](crate::Mailbox) (or its last sender left) since
    /// the proactor last looked: look at whatever queue the notifying
    /// threads fill, take from the mailboxes. At most one per
    /// [`poll`](crate::Proactor::poll), however many notifies and items
    /// came. The token names no transport (slot `u32::MAX`).
    Notified(Token),
    /// A transport failed; it is closing, and `Closed` follows. (One
    /// exception: [`Error::Frame`](crate::Error::Frame) for a writer that
    /// left a persistent framed receiver inside a frame; the partial frame
    /// is dropped and the receiver goes on.)
    Error {
        /// The transport.
        token: Token,
        /// What failed.
        error: &'a Error,
    },
}

impl Event<'_> {
    /// The transport the event is about.
    pub fn token(&self) -> Token {
        match self {
            Event::Opened(s) => s.token(),
            Event::Data { from, .. } | Event::Frame { from, .. } | Event::Frames { from, .. } => {
                from.token()
            }
            Event::Sent { to, .. } => to.token(),
            Event::Writable(s) => s.token(),
            Event::Relayed { from, .. } => from.token(),
            Event::Detached { to, .. } => to.token(),
            Event::PeerGone(t) | Event::PeerBack(t) | Event::Notified(t) => *t,
            Event::Closed { token, .. } | Event::Error { token, .. } => *token,
        }
    }
}

/// A frame's payload: a range of one of the batch's read buffers
/// (`Events::bufs`, shared by the frames of one read), or a copy for a
/// frame that was split across reads (`Events::owned`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum FrameBytes {
    Lent { buf: u32, start: u32, end: u32 },
    Owned(u32),
}

/// What an `Error` item would show if its batch had lost the error (it
/// never does: both are pushed together).
static NO_ERROR: Error = Error::Unsupported {
    what: String::new(),
    source: None,
};

/// What a batch's events own besides read buffers: copied bytes (split
/// frames, a sender's unsent bytes) and errors, each named by its index.
/// An [`Item`] owns nothing itself, so clearing a batch drops no event.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    bytes: Vec<Vec<u8>>,
    errors: Vec<Error>,
}

impl Owned {
    /// Keeps `bytes`; returns their name.
    pub(crate) fn bytes(&mut self, bytes: Vec<u8>) -> u32 {
        self.bytes.push(bytes);
        (self.bytes.len() - 1) as u32
    }

    /// Keeps `error`; returns its name.
    pub(crate) fn error(&mut self, error: Error) -> u32 {
        self.errors.push(error);
        (self.errors.len() - 1) as u32
    }

    fn get_bytes(&self, name: u32) -> &[u8] {
        self.bytes.get(name as usize).map_or(&[], Vec::as_slice)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.errors.is_empty()
    }

    #[inline]
    fn clear(&mut self) {
        if !self.is_empty() {
            self.drop_all();
        }
    }

    /// Rare: a batch with a close, an error or a split frame.
    #[cold]
    #[inline(never)]
    fn drop_all(&mut self) {
        self.bytes.clear();
        self.errors.clear();
    }
}

/// One event of a batch: plain data, whatever it owns named in the batch's
/// [`Owned`] and [`Lent`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item {
    Opened(Sender),
    /// `bufs.get(buf)[..len]`.
    Data {
        from: Receiver,
        buf: u32,
        len: usize,
    },
    Frame {
        from: Receiver,
        frame: FrameBytes,
    },
    /// Whole frames back to back in one read, as they were on the wire
    /// (`bufs[buf][start..end]`): one item per read, not one per frame.
    Frames {
        from: Receiver,
        codec: Codec,
        buf: u32,
        start: u32,
        end: u32,
        frames: u32,
    },
    Sent {
        to: Sender,
        bytes: usize,
    },
    PeerGone(Token),
    PeerBack(Token),
    Notified(Token),
    Writable(Sender),
    Relayed {
        from: Receiver,
        to: Sender,
        bytes: usize,
    },
    Detached {
        from: Receiver,
        to: Sender,
    },
    Closed {
        token: Token,
        reason: CloseReason,
        /// In `Owned`.
        unsent: u32,
    },
    Error {
        token: Token,
        /// In `Owned`.
        error: u32,
    },
}

impl Item {
    /// The event, with lent frames resolved in `bufs`, the read buffers of
    /// the same batch.
    #[inline]
    fn as_event<'a>(&'a self, bufs: &'a Lent, owned: &'a Owned) -> Event<'a> {
        match self {
            Item::Opened(s) => Event::Opened(*s),
            Item::Data { from, buf, len } => Event::Data {
                from: *from,
                data: bufs.get(*buf).get(..*len).unwrap_or_default(),
            },
            Item::Frame { from, frame } => Event::Frame {
                from: *from,
                frame: match frame {
                    // The batch holds every buffer its frames point into.
                    FrameBytes::Lent { buf, start, end } => bufs
                        .get(*buf)
                        .get(*start as usize..*end as usize)
                        .unwrap_or_default(),
                    FrameBytes::Owned(bytes) => owned.get_bytes(*bytes),
                },
            },
            Item::Frames {
                from,
                codec,
                buf,
                start,
                end,
                frames,
            } => {
                let wire = bufs
                    .get(*buf)
                    .get(*start as usize..*end as usize)
                    .unwrap_or_default();
                Event::Frames {
                    from: *from,
                    wire,
                    frames: *frames as usize,
                    checked: Checked::decoded(*codec, wire),
                }
            }
            Item::Sent { to, bytes } => Event::Sent {
                to: *to,
                bytes: *bytes,
            },
            Item::PeerGone(t) => Event::PeerGone(*t),
            Item::PeerBack(t) => Event::PeerBack(*t),
            Item::Notified(t) => Event::Notified(*t),
            Item::Writable(s) => Event::Writable(*s),
            Item::Detached { from, to } => Event::Detached {
                from: *from,
                to: *to,
            },
            Item::Relayed { from, to, bytes } => Event::Relayed {
                from: *from,
                to: *to,
                bytes: *bytes,
            },
            Item::Closed {
                token,
                reason,
                unsent,
            } => Event::Closed {
                token: *token,
                reason: *reason,
                unsent: owned.get_bytes(*unsent),
            },
            // Only ever named by its batch: there is one.
            Item::Error { token, error } => match owned.errors.get(*error as usize) {
                Some(error) => Event::Error {
                    token: *token,
                    error,
                },
                None => Event::Error {
                    token: *token,
                    error: &NO_ERROR,
                },
            },
        }
    }
}

/// A batch of events filled by [`Proactor::poll`](crate::Proactor::poll).
///
/// Read buffers lent to `Data` events go back to the pool when `Events` is
/// polled again or dropped. Keep one `Events` per loop: holding many of them
/// full holds many buffers. Once it has held data it keeps a handle on the
/// proactor's buffer pool (sparing one per poll), so the pool's memory is
/// freed when both the proactor and the `Events` are dropped.
#[derive(Debug, Default)]
pub struct Events {
    pub(crate) items: Vec<Item>,
    /// Read buffers the batch's data and frames are lent from.
    pub(crate) bufs: Lent,
    /// Bytes and errors the batch's events own.
    pub(crate) owned: Owned,
}

impl Events {
    /// An empty batch with room for `capacity` events before it grows.
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            items: Vec::with_capacity(capacity),
            bufs: Lent::default(),
            owned: Owned::default(),
        }
    }

    /// The events, in the order they happened.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            items: self.items.iter(),
            bufs: &self.bufs,
            owned: &self.owned,
            run: None,
        }
    }

    /// Number of events [`iter`](Self::iter) gives (a read's run of
    /// frames counts one per frame: counting walks the batch).
    pub fn len(&self) -> usize {
        self.items
            .iter()
            .map(|i| match i {
                Item::Frames { frames, .. } => *frames as usize,
                _ => 1,
            })
            .sum()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops the events, returning lent buffers to the pool.
    #[inline]
    pub fn clear(&mut self) {
        self.items.clear();
        self.bufs.clear();
        self.owned.clear();
    }
}

impl Events {
    /// The events as [`iter`](Self::iter) gives them, except that frames
    /// of one receiver that lie whole and back to back in one read, encoded
    /// with `codec`, come as one [`Event::Frames`] with their wire bytes:
    /// no event per frame, and a run can be forwarded with one
    /// [`Proactor::send_encoded`](crate::Proactor::send_encoded). A frame
    /// that was split across reads still comes as an [`Event::Frame`], in
    /// its place. `codec` is the framed receivers'
    /// own: frames are gathered only where the bytes around them are that
    /// codec's framing.
    pub fn runs(&self, codec: Codec) -> Runs<'_> {
        Runs {
            items: self.iter(),
            codec,
        }
    }
}

/// Iterator over [`Events`] with runs of frames gathered: see
/// [`Events::runs`].
#[derive(Debug)]
pub struct Runs<'a> {
    items: Iter<'a>,
    codec: Codec,
}

impl<'a> Iterator for Runs<'a> {
    type Item = Event<'a>;

    #[inline]
    fn next(&mut self) -> Option<Event<'a>> {
        let it = &mut self.items;
        // A run gathered when its read was delivered: as it is. Another
        // codec's run, or anything else: as `iter` gives it.
        if it.run.is_none()
            && let Some(item @ Item::Frames { codec, .. }) = it.items.as_slice().first()
            && *codec == self.codec
        {
            it.items.next();
            return Some(item.as_event(it.bufs, it.owned));
        }
        it.next()
    }
}

/// Iterator over [`Events`].
#[derive(Debug)]
pub struct Iter<'a> {
    items: std::slice::Iter<'a, Item>,
    bufs: &'a Lent,
    owned: &'a Owned,
    /// The frames left of a run being handed out one by one.
    run: Option<(Receiver, Payloads<'a>)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Event<'a>;

    // Inlined into the caller's loop: the event is built where it is
    // matched, not returned through memory (one event per read). A run's
    // frames come from a cursor set up out of line: one check here.
    #[inline(always)]
    fn next(&mut self) -> Option<Event<'a>> {
        if let Some((from, payloads)) = &mut self.run {
            if let Some(frame) = payloads.next() {
                return Some(Event::Frame { from: *from, frame });
            }
            self.run = None;
        }
        let bufs = self.bufs;
        match self.items.next()? {
            // The usual event, built here rather than through `as_event`.
            Item::Data { from, buf, len } => Some(Event::Data {
                from: *from,
                data: bufs.get(*buf).get(..*len).unwrap_or_default(),
            }),
            Item::Frames {
                from,
                codec,
                buf,
                start,
                end,
                ..
            } => self.start_run(
                *from,
                *codec,
                bufs.get(*buf)
                    .get(*start as usize..*end as usize)
                    .unwrap_or_default(),
            ),
            item => Some(item.as_event(bufs, self.owned)),
        }
    }
}

impl<'a> Iter<'a> {
    /// The first frame of a run, the rest kept for the next calls: out of
    /// line, so the loop over other events stays small.
    #[inline(never)]
    fn start_run(&mut self, from: Receiver, codec: Codec, wire: &'a [u8]) -> Option<Event<'a>> {
        let mut payloads = codec.payloads(wire);
        let frame = payloads.next()?;
        self.run = Some((from, payloads));
        Some(Event::Frame { from, frame })
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = Event<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}
