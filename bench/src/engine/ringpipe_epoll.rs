//! ringpipe on its epoll backend (`Builder::backend(Backend::Epoll)`):
//! the same proactor, calls and modes as the `uring` engines, beside the
//! hand-written epoll loop, to show what the backend's emulation of
//! completions costs.

use ringpipe::Backend;

use super::uring::{Mode, URING, run_on};
use super::{Engine, Scope};

/// `Proactor` defaults on epoll: single-shot reads, read + `send` relay.
pub const RINGPIPE_EPOLL: Engine = Engine {
    name: "ringpipe-epoll",
    describe: "ringpipe on its epoll backend (Builder::backend(Backend::Epoll)): the same \
               proactor, each operation a non-blocking syscall when epoll says its fd is ready",
    scope: Scope::All,
    run: |s| run_on(s, Mode::Default, Backend::Epoll),
    ..URING
};

/// `Proactor::relay` on epoll: a poll, then `splice(2)` from this thread.
pub const RINGPIPE_EPOLL_SPLICE: Engine = Engine {
    name: "ringpipe-epoll-splice",
    describe: "ringpipe on its epoll backend, Proactor::relay: epoll says the source is \
               readable, then splice(2) from the proactor thread",
    splices: true,
    scope: Scope::Only(&["relay"]),
    run: |s| run_on(s, Mode::SpliceDirect, Backend::Epoll),
    ..URING
};
