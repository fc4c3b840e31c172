//! ringpipe: a single-threaded io_uring proactor for high-throughput,
//! loss-free I/O over pipes and named pipes (FIFOs) on Linux.
//!
//! One [`Proactor`] drives many FIFO ends from one thread. Every operation
//! queued during a loop turn goes to the kernel in one `io_uring_enter`;
//! reads land in registered buffers and are lent to you as `&[u8]` until the
//! next [`Proactor::poll`]. Each transport has an explicit [`State`], handles
//! are generational (an operation on a closed or reused handle is a typed
//! error, never somebody else's fd), and a sender accounts for every byte:
//! written exactly once, in order, or handed back when it closes.
//!
//! ```
//! use ringpipe::{Event, Events, FifoOptions, Proactor};
//! # let dir = std::env::temp_dir().join(format!("ringpipe-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("demo.fifo");
//! let mut proactor = Proactor::new()?;
//! let opts = FifoOptions::new().create(true);
//! let rx = proactor.open_receiver(&path, &opts)?; // opens at once
//! let tx = proactor.open_sender(&path, &opts)?; // a reader exists: open
//! proactor.send(tx, b"hello through io_uring")?;
//! proactor.close_after_flush(tx)?;
//!
//! let (mut events, mut got) = (Events::with_capacity(64), Vec::new());
//! let mut open = true;
//! while open {
//!     proactor.poll(&mut events, None)?;
//!     for event in &events {
//!         match event {
//!             Event::Data { data, .. } => got.extend_from_slice(data),
//!             Event::PeerGone(t) if t == rx.token() => open = false, // EOF
//!             _ => {}
//!         }
//!     }
//! }
//! assert_eq!(got, b"hello through io_uring");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), ringpipe::Error>(())
//! ```
//!
//! # One to many: `relay`, `fan_out` or `Hub`
//!
//! | | [`Proactor::relay`] | [`Proactor::fan_out`] | [`hub::Hub`] |
//! |---|---|---|---|
//! | pick it for | one source into one sender | one source copied byte for byte into several senders | whole frames to many subscribers, each at its own pace |
//! | how | in the kernel: `splice` | in the kernel: `tee` to all but the last, `splice` to the last | in user space: one shared copy per batch, [`Proactor::send`] to each subscriber |
//! | what each destination gets | every byte once, in order | every byte once, in order, while it is fed | every frame whole, once, in order, or counted as dropped, rejected or truncated |
//! | a slow reader | holds the source (pipe backpressure) | holds every destination: all move at the pace of the slowest | fills its own queue only; when full: [`hub::Full::DropOldest`], [`PauseSource`](hub::Full::PauseSource) or [`Evict`](hub::Full::Evict) ([`hub::HubEvent::Evicted`]) |
//! | a reader leaves | the bytes wait in the source's pipe until one comes back | [`FanOutPolicy::Detach`] (default): that destination is detached ([`Event::Detached`]), the others go on; [`Wait`](FanOutPolicy::Wait): all wait | its sender keeps what it was handed and resumes at the exact byte; meanwhile its queue fills |
//! | destinations join | fixed at the call | fixed at the call | any time ([`Hub::add`](hub::Hub::add)), from the next frame on |
//!
//! A relay and a fan-out end when their source or last destination
//! closes; [`Proactor::close_after_flush`] on a destination passes the
//! source's EOF on. A hub re-encodes frames in its own codec and can be
//! fed by [`Hub::publish`](hub::Hub::publish) as well as by a receiver
//! (the [`hub`] module has its table of sources).
//!
//! # Other threads and other loops
//!
//! Other threads hand items to the proactor's thread through a
//! [`Mailbox`] ([`Proactor::mailbox`]: its [`MailSender`] is
//! `Send + Sync + Clone` and wakes the proactor only while it sleeps; items
//! are reported as [`Event::Notified`] and taken all at once;
//! `examples/handoff.rs`), or through a queue of their choice, waking it
//! with a [`Notifier`] ([`Proactor::notifier`]: coalescing, reported the
//! same way). Another event loop (epoll, tokio) can drive a
//! proactor through its ring fd ([`Proactor::nest_fd`], given by a proactor
//! built with [`Builder::defer_taskrun`]`(false)`, and
//! [`Proactor::submit`]; `examples/epoll_nested.rs`,
//! `examples/tokio_nested.rs`).
//!
//! # Errors and requirements
//!
//! Errors about a transport name its FIFO's path, or the label given to
//! one made from an fd ([`Proactor::set_label`], [`Proactor::path`]): print
//! them with `Display` (`{}`), as the examples' `main` does.
//!
//! Requires Linux >= 6.1 with io_uring enabled; otherwise
//! [`Proactor::new`] returns [`Error::Unsupported`] naming what is missing.
// The lints every member shares are in the workspace's Cargo.toml.
#![deny(missing_docs, missing_debug_implementations)]

#[cfg(not(target_os = "linux"))]
compile_error!("ringpipe needs Linux: it is built on io_uring");

mod buffers;
mod error;
mod event;
mod fifo;
pub mod frame;
pub mod hub;
mod proactor;
pub mod process;
mod ring;
mod token;
mod transport;

pub use error::{Error, Result};
pub use event::{CloseReason, Event, Events, Runs};
pub use fifo::{FifoOptions, PipeLimits, ReadMode, Reconnect, pipe_max_size, raise_fd_limit};
pub use proactor::{
    Builder, FanOutPolicy, MailSender, Mailbox, Notifier, Proactor, Snapshot, Stats,
};
pub use ring::{BACKEND_ENV, Backend, BackendInUse};
pub use token::{Receiver, Sender, Token};
pub use transport::State;

/// The proactor owns a ring set up for one issuing thread: it must be
/// neither `Send` nor `Sync`. This fails to compile if either is implemented.
#[allow(dead_code)]
mod not_send {
    trait AmbiguousIfImpl<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
    impl<T: ?Sized + Send> AmbiguousIfImpl<u8> for T {}
    const _: fn() = || {
        let _ = <super::Proactor as AmbiguousIfImpl<_>>::some_item;
    };
    trait AmbiguousIfSync<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
    const _: fn() = || {
        let _ = <super::Proactor as AmbiguousIfSync<_>>::some_item;
    };
}

/// The README's example must compile.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
