//! The SIGPIPE policy io_uring makes necessary: a WRITE submitted after the
//! reader left raises SIGPIPE in the submitting thread, whose default
//! action kills the process. Kept in the ring layer, beside the code whose
//! behaviour it answers, so `unsafe` stays in `ring` and `buffers`.

/// Sets SIGPIPE to ignored if its disposition is still the default. An
/// io_uring write submitted after the reader left raises SIGPIPE in the
/// submitting thread; the default action would kill the process.
pub(crate) fn ignore_sigpipe_if_default() {
    use nix::sys::signal::{SigHandler, Signal, sigaction};
    // SAFETY: querying with a null new action changes nothing. Replacing
    // SIG_DFL by SIG_IGN installs no handler code, so no async-signal-safety
    // question arises; a handler set by the program is left alone.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_DFL
        {
            let ignore = nix::sys::signal::SigAction::new(
                SigHandler::SigIgn,
                nix::sys::signal::SaFlags::empty(),
                nix::sys::signal::SigSet::empty(),
            );
            let _ = sigaction(Signal::SIGPIPE, &ignore);
        }
    }
}
