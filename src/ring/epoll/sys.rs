//! The syscalls of the epoll backend, each a safe function: the epoll
//! instance and its timer and wake-up fds, and the non-blocking transfers
//! the emulated operations perform. Transfers answer as a CQE would: the
//! count, or a negative errno.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The result of a transfer syscall as a CQE carries it.
fn cqe_result(ret: isize) -> i32 {
    if ret < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        i32::try_from(ret).unwrap_or(i32::MAX)
    }
}

/// An fd a successful `*_create` syscall returned.
fn owned(ret: libc::c_int) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ret` is a new fd the kernel just returned to us, owned by
    // nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// A close-on-exec epoll instance.
pub(super) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// `epoll_ctl` of `fd` for `events`, with `fd` itself as the event's data.
pub(super) fn epoll_ctl(ep: &OwnedFd, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: `ev` is a valid `epoll_event` for the call; the kernel reads it.
    let ret = unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd, &mut ev) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits up to `timeout` (`None`: forever) for events into `out`, whose
/// length it sets to the number reported. EINTR reports none.
pub(super) fn epoll_wait(
    ep: &OwnedFd,
    out: &mut Vec<libc::epoll_event>,
    timeout: Option<Duration>,
) -> io::Result<()> {
    out.clear();
    // Whole milliseconds, rounded up: a wait never ends early.
    let ms = timeout.map_or(-1, |t| {
        let ms = t.as_nanos().div_ceil(1_000_000);
        libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
    });
    let cap = libc::c_int::try_from(out.capacity()).unwrap_or(libc::c_int::MAX);
    // SAFETY: the kernel writes at most `cap` events into the vector's
    // spare capacity, and reports how many.
    let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), out.as_mut_ptr(), cap, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINTR) => Ok(()),
            _ => Err(e),
        };
    }
    // SAFETY: the kernel initialised the first `n` (<= capacity) events.
    unsafe { out.set_len(n as usize) };
    Ok(())
}

/// A read at the file's position that never waits: -EAGAIN where it
/// would. `plain`: the fd is known to be `O_NONBLOCK` (`read(2)`);
/// otherwise `RWF_NOWAIT` whatever its flags, and where the file does not
/// take that (a FIFO, on Linux 6.18) the fd is made `O_NONBLOCK` first.
pub(super) fn read(fd: RawFd, buf: &mut [u8], plain: bool) -> i32 {
    if !plain {
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: `iov` describes `buf`, writable and alive for the call.
        let r = cqe_result(unsafe { libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT) } as isize);
        if r != -libc::EOPNOTSUPP || !set_nonblocking(fd) {
            return r;
        }
    }
    // SAFETY: `buf` is writable and alive for the call; the fd is
    // non-blocking, so the call never waits.
    cqe_result(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// A write at the file's position that never waits, as [`read`]: -EAGAIN
/// where nothing fits; a pipe write of up to `PIPE_BUF` stays atomic.
pub(super) fn write(fd: RawFd, buf: &[u8], plain: bool) -> i32 {
    if !plain {
        let iov = libc::iovec {
            iov_base: buf.as_ptr().cast_mut().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: `iov` describes `buf`, alive for the call; the kernel
        // only reads it.
        let r = cqe_result(unsafe { libc::pwritev2(fd, &iov, 1, -1, libc::RWF_NOWAIT) } as isize);
        if r != -libc::EOPNOTSUPP || !set_nonblocking(fd) {
            return r;
        }
    }
    // SAFETY: `buf` is alive for the call and only read; the fd is
    // non-blocking, so the call never waits.
    cqe_result(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// Sets `O_NONBLOCK` on `fd`'s open file; false if it cannot.
pub(super) fn set_nonblocking(fd: RawFd) -> bool {
    // SAFETY: no pointers; an invalid fd fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return false;
    }
    if flags & libc::O_NONBLOCK != 0 {
        return true;
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0 }
}

/// `splice(2)` of up to `len` bytes between two pipes, non-blocking.
pub(super) fn splice(from: RawFd, to: RawFd, len: u32) -> i32 {
    // SAFETY: null offsets (pipes have none); no memory is passed.
    cqe_result(unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len as usize,
            libc::SPLICE_F_NONBLOCK,
        )
    })
}

/// `tee(2)` of up to `len` bytes between two pipes, non-blocking.
pub(super) fn tee(from: RawFd, to: RawFd, len: u32) -> i32 {
    // SAFETY: no memory is passed.
    cqe_result(unsafe { libc::tee(from, to, len as usize, libc::SPLICE_F_NONBLOCK) })
}

/// The poll events `fd` has now, of `mask` (POLLERR and POLLHUP always).
pub(super) fn poll_now(fd: RawFd, mask: u32) -> u32 {
    let mut p = libc::pollfd {
        fd,
        events: mask as libc::c_short,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, alive for the call; no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n == 1 { p.revents as u16 as u32 } else { 0 }
}

/// A non-blocking, close-on-exec monotonic timerfd, disarmed.
pub(super) fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked.
    owned(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })
}

/// Arms `timer` to expire once, `after` from now (at least 1 ns: zero
/// would disarm it).
pub(super) fn timerfd_arm(timer: &OwnedFd, after: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(after.subsec_nanos() as i32),
        },
    };
    // SAFETY: `spec` is valid for the call; no old value is asked for.
    let ret = unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A non-blocking, close-on-exec eventfd.
pub(super) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked.
    owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
}

/// Reads the 8-byte counter of a non-blocking eventfd or timerfd out, so
/// it polls empty (plain `read`: a timerfd takes no `RWF_NOWAIT`).
pub(super) fn clear_counter(fd: &OwnedFd) {
    let mut word = 0u64;
    // SAFETY: 8 writable bytes, alive for the call; the fd never blocks.
    unsafe { libc::read(fd.as_raw_fd(), std::ptr::from_mut(&mut word).cast(), 8) };
}

/// Adds one to a non-blocking eventfd, so it polls readable.
pub(super) fn signal(fd: &OwnedFd) {
    let word = 1u64;
    // SAFETY: 8 readable bytes, alive for the call; the fd never blocks.
    unsafe { libc::write(fd.as_raw_fd(), std::ptr::from_ref(&word).cast(), 8) };
}
