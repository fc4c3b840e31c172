//! The binding's calls into the parts of ringpipe's Rust API that are
//! still moving (the send family, the hub's event intake, counters), each
//! in one small function, so a rename touches this file alone. Opening,
//! closing and polling are used where they are needed (`core.rs`).

use ringpipe::frame::Codec;
use ringpipe::hub::{Handled, Hub};
use ringpipe::{Error, Event, Proactor, Sender};

/// Queues `bytes` on `tx`: a byte stream as it is, or whole frames already
/// encoded in `codec` (cut at frame boundaries into atomic writes).
pub fn send(p: &mut Proactor, tx: Sender, codec: Option<Codec>, bytes: &[u8]) -> Result<(), Error> {
    match codec {
        None => p.send(tx, bytes),
        Some(codec) => p.send_encoded(tx, codec, bytes),
    }
}

/// Gives the hub one event of the last poll.
pub fn hub_handle(hub: &mut Hub, p: &mut Proactor, event: Event<'_>) -> Handled {
    hub.handle(p, event)
}
