//! Setting up a ring: the configuration and the locked memory it costs,
//! `io_uring_setup` with the newest task-run mode the kernel accepts, the
//! feature and opcode probe, every [`Error::Unsupported`] that names what
//! the kernel lacks, and the retry while `RLIMIT_MEMLOCK` drains.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, opcode};
use slab::Slab;

use super::Uring;
use crate::error::Error;

/// How the ring is set up. Built by [`crate::Builder`].
#[derive(Debug, Clone)]
pub(crate) struct RingConfig {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub sqpoll_idle: Option<Duration>,
    pub files: u32,
    /// Try DEFER_TASKRUN first (the default). Off for a ring driven from
    /// another event loop: deferred work never wakes a waiter on the fd.
    pub defer_taskrun: bool,
    /// Use the kernel's min-wait where it has one (off: tests of the
    /// fallback).
    pub min_wait: bool,
    /// Register the ring fd for cheaper enters where the kernel allows.
    pub register_ring_fd: bool,
}

impl RingConfig {
    /// Bytes of the ring's queues, which the kernel (6.14 and later)
    /// charges to `RLIMIT_MEMLOCK` like registered buffers: the CQ ring
    /// (a 64-byte header, 16-byte CQEs, the 4-byte SQ index array) and the
    /// 64-byte SQEs, each in whole pages, with the kernel's power-of-two
    /// rounding. Measured on 6.18: 9 pages for 256 / 1024 entries, 2 for
    /// 1 / 2. The registered file table is not charged. A ring set up with
    /// `IORING_SETUP_NO_SQARRAY` has no index array: then this is an upper
    /// bound.
    pub(crate) fn locked_bytes(&self) -> u64 {
        let sq = u64::from(self.sq_entries.max(1).next_power_of_two());
        let cq = u64::from(self.cq_entries.max(2 * self.sq_entries.max(1))).next_power_of_two();
        let pages = |bytes: u64| bytes.div_ceil(4096) * 4096;
        pages((64 + cq * 16).next_multiple_of(64) + sq * 4) + pages(sq * 64)
    }
}

/// Opcodes the proactor cannot work without.
const REQUIRED: [(u8, &str); 9] = [
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::ReadFixed::CODE, "READ_FIXED"),
    (opcode::WriteFixed::CODE, "WRITE_FIXED"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Splice::CODE, "SPLICE"),
    (opcode::Tee::CODE, "TEE"),
];

impl Uring {
    /// Sets up a ring as `cfg` says, checks that the kernel has every
    /// feature and opcode the proactor needs, and registers a sparse file
    /// table of `cfg.files` slots.
    pub(crate) fn new(cfg: &RingConfig) -> Result<Uring, Error> {
        let sq = cfg.sq_entries.max(1);
        let cq = cfg.cq_entries.max(2 * sq);
        // Which setup the kernel took: whether the ring defers task work.
        // A limit below the queues' own size can never fit them: fail at
        // once (the epoll fallback waits for this) instead of retrying.
        let fits = crate::buffers::Memlock::current()
            .limit
            .is_none_or(|l| l >= cfg.locked_bytes());
        let setup = || match cfg.sqpoll_idle {
            Some(idle) => {
                let idle = idle.as_millis().clamp(1, u32::MAX as u128) as u32;
                first_accepted(
                    &[
                        &|b| {
                            b.setup_single_issuer()
                                .setup_sqpoll(idle)
                                .setup_no_sqarray()
                        },
                        &|b| b.setup_single_issuer().setup_sqpoll(idle),
                    ],
                    sq,
                    cq,
                )
                .map(|(ring, _)| (ring, false))
            }
            None => {
                let attempts: [Setup<'_>; 4] = [
                    &|b| {
                        b.setup_single_issuer()
                            .setup_defer_taskrun()
                            .setup_no_sqarray()
                    },
                    &|b| b.setup_single_issuer().setup_defer_taskrun(),
                    &|b| b.setup_single_issuer().setup_coop_taskrun(),
                    &|b| b,
                ];
                // A ring driven from another loop skips DEFER_TASKRUN.
                let from = if cfg.defer_taskrun { 0 } else { 2 };
                first_accepted(&attempts[from..], sq, cq).map(|(ring, i)| (ring, from + i < 2))
            }
        };
        let (uring, deferred) = match fits {
            true => retry_while_memlock_drains(setup),
            false => setup(),
        }
        .map_err(setup_error)?;
        if !uring.params().is_feature_nodrop() || !uring.params().is_feature_ext_arg() {
            return Err(Error::Unsupported {
                what: "io_uring features NODROP and EXT_ARG (Linux >= 5.11)".into(),
                source: None,
            });
        }
        let mut probe = Probe::new();
        uring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| Error::Unsupported {
                what: "IORING_REGISTER_PROBE".into(),
                source: Some(e),
            })?;
        let missing: Vec<&str> = REQUIRED
            .iter()
            .filter(|(code, _)| !probe.is_supported(*code))
            .map(|(_, name)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(Error::Unsupported {
                what: format!("io_uring opcodes {}", missing.join(", ")),
                source: None,
            });
        }
        let file_table = cfg.files;
        if file_table > 0 {
            uring
                .submitter()
                .register_files_sparse(file_table)
                .map_err(|e| Error::Ring {
                    op: "register_files_sparse",
                    source: e,
                })?;
        }
        // Some 6.17 / 6.18 kernels miss the wake-up of an SQPOLL ring's
        // min-wait when a completion comes after the min-wait expired with
        // none (liburing issue 1504, fixed in 6.19 and stable): the wait
        // then lasts its whole timeout. SQPOLL rings before 6.19 use the
        // two-wait fallback, which needs no min-wait.
        let min_wait = cfg.min_wait
            && uring.params().is_feature_min_timeout()
            && (cfg.sqpoll_idle.is_none() || kernel_release() >= (6, 19));
        let ring_index = if cfg.register_ring_fd {
            register_ring_fd(&uring)
        } else {
            None
        };
        // A proactor waiting on pipes is not waiting for disk: without this
        // flag the kernel counts its sleeps as iowait. Linux >= 6.15.
        let enter_flags = if uring.params().is_feature_no_iowait() {
            super::enter::IORING_ENTER_NO_IOWAIT
        } else {
            0
        };
        Ok(Uring {
            uring: ManuallyDrop::new(uring),
            ops: Slab::new(),
            holding: Slab::new(),
            untracked: Default::default(),
            seq: 0,
            unsubmitted: 0,
            unsubmitted_writes: 0,
            ring_index,
            min_wait,
            enter_flags,
            enters: 0,
            sqpoll: cfg.sqpoll_idle.is_some(),
            deferred,
            pinned: super::Pinned::Nothing,
            wave: 0,
            file_slots: (0..file_table).rev().collect(),
            file_table,
            memory: None,
        })
    }

    /// Whether multishot reads are supported (Linux >= 6.7).
    pub(crate) fn supports_read_multishot(&self) -> bool {
        let mut probe = Probe::new();
        self.uring.submitter().register_probe(&mut probe).is_ok()
            && probe.is_supported(opcode::ReadMulti::CODE)
    }

    /// Caps io-wq worker threads per NUMA node: `[bounded, unbounded]`
    /// (pipe work is unbounded). Splices run there.
    pub(crate) fn set_iowq_max_workers(&self, bounded: u32, unbounded: u32) -> io::Result<()> {
        let mut max = [bounded, unbounded];
        self.uring.submitter().register_iowq_max_workers(&mut max)
    }
}

/// Longest wait for locked memory of closed rings to come back.
const MEMLOCK_DRAIN: Duration = Duration::from_secs(2);

/// Runs `lock` again while it fails with ENOMEM and the kernel counts
/// this user's locked memory, for up to [`MEMLOCK_DRAIN`]: ring queues and
/// registered buffers count against `RLIMIT_MEMLOCK`, and a closed ring's
/// share comes back only when the kernel's exit work has run (5 to 110 ms
/// measured on 6.18, longer under load), so a program that closes and
/// opens rings back to back, or its sibling processes, can find the budget
/// full for a moment.
pub(super) fn retry_while_memlock_drains<T>(
    mut lock: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match lock() {
            Err(e)
                if e.raw_os_error() == Some(libc::ENOMEM)
                    && start.elapsed() < MEMLOCK_DRAIN
                    && crate::buffers::Memlock::current().is_counted() =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// One way of setting a ring up.
type Setup<'a> = &'a dyn Fn(&mut io_uring::Builder) -> &mut io_uring::Builder;

/// Sets a ring up with the first of `attempts` (newest flags first) that
/// the kernel accepts: a flag it does not know is refused with EINVAL.
fn first_accepted(attempts: &[Setup<'_>], sq: u32, cq: u32) -> io::Result<(IoUring, usize)> {
    let mut last = None;
    for (i, set) in attempts.iter().enumerate() {
        let mut builder = IoUring::builder();
        set(&mut builder).setup_cqsize(cq);
        match builder.build(sq) {
            Ok(ring) => return Ok((ring, i)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// The running kernel's (major, minor) release, from `uname(2)`;
/// (0, 0) if it cannot be read.
fn kernel_release() -> (u32, u32) {
    // SAFETY: `utsname` is plain old data, zeroed is a valid value, and
    // `uname` only writes into it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable `utsname`.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (0, 0);
    }
    let release: String = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    parse_release(&release)
}

/// "6.18.44-fc-v669" -> (6, 18); anything unreadable -> (0, 0).
fn parse_release(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => (0, 0),
    }
}

/// `io_uring_register` opcodes for registered ring fds (kernel ABI).
const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
const IORING_UNREGISTER_RING_FDS: libc::c_uint = 21;

/// The kernel's `struct io_uring_rsrc_update`.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// Registers the ring's fd in the calling thread's table of registered
/// rings (Linux >= 5.18; 16 per thread), so an enter can name it by index
/// and the kernel skips looking the fd up (and, in a process with more than
/// one thread, taking a reference on the file). `None` where refused: the
/// enters then use the fd.
fn register_ring_fd(uring: &IoUring) -> Option<u32> {
    let mut up = RsrcUpdate {
        offset: u32::MAX, // any free slot
        resv: 0,
        data: uring.as_raw_fd() as u64,
    };
    // SAFETY: `up` is one valid `io_uring_rsrc_update`, alive for the call,
    // into which the kernel writes the slot it chose.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            uring.as_raw_fd(),
            IORING_REGISTER_RING_FDS,
            std::ptr::from_mut(&mut up),
            1,
        )
    };
    (ret == 1).then_some(up.offset)
}

/// Ends a registration of [`register_ring_fd`]: it holds a reference to
/// the ring, which would otherwise outlive its fd until the thread exits.
pub(super) fn unregister_ring_fd(uring: &IoUring, index: u32) {
    let up = RsrcUpdate {
        offset: index,
        resv: 0,
        data: 0,
    };
    // SAFETY: `up` is one valid `io_uring_rsrc_update`, alive for the call.
    // A failure leaves the slot to the thread's exit, which frees it.
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            uring.as_raw_fd(),
            IORING_UNREGISTER_RING_FDS,
            std::ptr::from_ref(&up),
            1,
        );
    }
}

/// Turns an `io_uring_setup` failure into one error that names the cause.
fn setup_error(e: io::Error) -> Error {
    let what = match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "io_uring_setup: the kernel has no io_uring (or seccomp blocks it)".to_string()
        }
        Some(libc::EPERM) => {
            let knob = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            format!(
                "io_uring_setup refused: kernel.io_uring_disabled = {knob} \
                 (0 enables it for everyone), or a seccomp filter denies it"
            )
        }
        Some(libc::ENOMEM) => {
            let limit = crate::buffers::Memlock::current().limit;
            format!(
                "io_uring_setup: out of memory or of locked memory: the ring's queues count \
                 against RLIMIT_MEMLOCK ({}), which all of this user's rings share, \
                 and closed rings give theirs back only some milliseconds later; \
                 fewer sq/cq entries need less",
                limit.map_or_else(|| "unlimited".to_string(), |l| format!("{l} bytes"))
            )
        }
        _ => "io_uring_setup".to_string(),
    };
    Error::Unsupported {
        what,
        source: Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v669"), (6, 18));
        assert_eq!(parse_release("6.19.0"), (6, 19));
        assert_eq!(parse_release("5.15.0-91-generic"), (5, 15));
        assert_eq!(parse_release("7.0-rc1"), (7, 0));
        assert_eq!(parse_release("junk"), (0, 0));
        assert!(kernel_release() >= (5, 1), "io_uring runs here");
    }

    #[test]
    fn locked_bytes_match_what_6_18_charges() {
        // (sq, cq, pages) measured as an unprivileged user on 6.18.
        for (sq, cq, pages) in [
            (1, 2, 2),
            (32, 64, 2),
            (128, 256, 4),
            (256, 512, 7),
            (256, 1024, 9),
            (512, 2048, 17),
            (1024, 4096, 34),
        ] {
            let cfg = RingConfig {
                sq_entries: sq,
                cq_entries: cq,
                sqpoll_idle: None,
                files: 4096,
                defer_taskrun: true,
                min_wait: true,
                register_ring_fd: true,
            };
            assert_eq!(cfg.locked_bytes(), pages * 4096, "sq {sq} cq {cq}");
        }
    }
}
