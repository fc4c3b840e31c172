//! Setting up a ring: the configuration and the locked memory it costs,
//! `io_uring_setup` with the newest task-run mode the kernel accepts, the
//! feature and opcode probe, every [`Error::Unsupported`] that names what
//! the kernel lacks, and the retry while `RLIMIT_MEMLOCK` drains.

use std::io;
use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, opcode};
use slab::Slab;

use super::Ring;
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
}

impl RingConfig {
    /// Bytes of the ring's queues, which the kernel (6.14 and later)
    /// charges to `RLIMIT_MEMLOCK` like registered buffers: the CQ ring
    /// (a 64-byte header, 16-byte CQEs, the 4-byte SQ index array) and the
    /// 64-byte SQEs, each in whole pages, with the kernel's power-of-two
    /// rounding. Measured on 6.18: 9 pages for 256 / 1024 entries, 2 for
    /// 1 / 2. The registered file table is not charged.
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

impl Ring {
    /// Sets up a ring as `cfg` says, checks that the kernel has every
    /// feature and opcode the proactor needs, and registers a sparse file
    /// table of `cfg.files` slots.
    pub(crate) fn new(cfg: &RingConfig) -> Result<Ring, Error> {
        let sq = cfg.sq_entries.max(1);
        let cq = cfg.cq_entries.max(2 * sq);
        let uring = retry_while_memlock_drains(|| match cfg.sqpoll_idle {
            Some(idle) => IoUring::builder()
                .setup_single_issuer()
                .setup_sqpoll(idle.as_millis().clamp(1, u32::MAX as u128) as u32)
                .setup_cqsize(cq)
                .build(sq),
            None => build_deferred(sq, cq, cfg.defer_taskrun),
        })
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
        Ok(Ring {
            uring: ManuallyDrop::new(uring),
            ops: Slab::new(),
            seq: 0,
            unsubmitted: 0,
            enters: 0,
            sqpoll: cfg.sqpoll_idle.is_some(),
            pool_registered: false,
            file_slots: (0..file_table).rev().collect(),
            file_table,
            cqes: Vec::new(),
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

fn build_deferred(sq: u32, cq: u32, defer: bool) -> io::Result<IoUring> {
    // Newest mode first; fall back when a flag is refused with EINVAL.
    let attempts: [fn(&mut io_uring::Builder) -> &mut io_uring::Builder; 3] = [
        |b| b.setup_single_issuer().setup_defer_taskrun(),
        |b| b.setup_single_issuer().setup_coop_taskrun(),
        |b| b,
    ];
    let mut last = None;
    for set in attempts.into_iter().skip(usize::from(!defer)) {
        let mut builder = IoUring::builder();
        set(&mut builder).setup_cqsize(cq);
        match builder.build(sq) {
            Ok(ring) => return Ok(ring),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
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
            };
            assert_eq!(cfg.locked_bytes(), pages * 4096, "sq {sq} cq {cq}");
        }
    }
}
