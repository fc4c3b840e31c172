//! What the kernel lets a process lock for io_uring, and the default
//! pool's share of it. Registered buffers, the ring's own queues and the
//! provided rings' entries are all charged to `RLIMIT_MEMLOCK` for users
//! without `CAP_IPC_LOCK` (measured on 6.18): [`auto_count`] sizes the
//! default pool to a share of it.

use std::io;

use io_uring::types::BufRingEntry;

/// Buffers of the default pool when nothing limits locked memory.
const DEFAULT_COUNT: u16 = 64;

/// A default proactor locks at most 1/16 of `RLIMIT_MEMLOCK` (512 KiB of
/// the usual 8 MiB): 8 proactors then take half of it, which leaves room
/// for the rings the kernel has not yet released after they closed (tens
/// of milliseconds each, measured) and for the user's other processes.
const MEMLOCK_SHARE: u64 = 16;

const PAGE: u64 = 4096;

/// What the kernel lets this process lock for io_uring. Since 6.14 the
/// ring's queues and a provided ring's entries are charged too, not only
/// registered buffers; the charge is the user's (all processes together)
/// and is released only when the kernel's exit work for a closed ring has
/// run, some milliseconds after `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memlock {
    /// The soft `RLIMIT_MEMLOCK` in bytes (`None`: unlimited).
    pub limit: Option<u64>,
    /// `CAP_IPC_LOCK` in the initial user namespace: the kernel charges
    /// nothing (`ctx->user` is left unset), whatever the limit says.
    pub exempt: bool,
}

impl Memlock {
    /// Reads the limit and the capability of this process now.
    pub(crate) fn current() -> Memlock {
        use nix::sys::resource::{Resource, getrlimit};
        let limit = match getrlimit(Resource::RLIMIT_MEMLOCK) {
            Ok((soft, _)) if soft != libc::RLIM_INFINITY => Some(soft),
            _ => None,
        };
        Memlock {
            limit,
            exempt: has_ipc_lock(),
        }
    }

    /// Whether the kernel counts what this process locks.
    pub(crate) fn is_counted(self) -> bool {
        !self.exempt && self.limit.is_some()
    }
}

/// `CAP_IPC_LOCK` in the effective set, in the initial user namespace (the
/// kernel checks `capable()`, which a namespace's root does not pass).
/// Unknown counts as absent: a pool sized too small is slower, never wrong.
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    /// The inode of the initial user namespace (`PROC_USER_INIT_INO`).
    const INIT_USER_NS: u64 = 0xEFFF_FFFD;
    use std::os::unix::fs::MetadataExt;
    let in_init_ns = std::fs::metadata("/proc/self/ns/user")
        .map(|m| m.ino() == INIT_USER_NS)
        .unwrap_or(false);
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    in_init_ns && cap_eff & (1 << CAP_IPC_LOCK) != 0
}

/// Buffers of `buf_size` bytes for the default pool: [`DEFAULT_COUNT`]
/// when locked memory is not counted, else as many as fit in the share of
/// the limit left after `other_locked` bytes (the ring's queues and the
/// provided ring's entries), at least 1 and at most [`DEFAULT_COUNT`].
/// Whether they can really be registered is only known by trying.
pub(crate) fn auto_count(memlock: Memlock, other_locked: u64, buf_size: usize) -> u16 {
    let limit = match memlock.limit {
        Some(limit) if !memlock.exempt => limit,
        _ => return DEFAULT_COUNT,
    };
    let buf = page_round(buf_size as u64).max(PAGE);
    let share = (limit / MEMLOCK_SHARE).saturating_sub(other_locked);
    (share / buf).clamp(1, u64::from(DEFAULT_COUNT)) as u16
}

/// Bytes the kernel locks for a provided ring of `count` entries.
pub(crate) fn provided_locked_bytes(count: u16) -> u64 {
    let count = u64::from(count.clamp(1, 1 << 15).next_power_of_two());
    page_round(count * std::mem::size_of::<BufRingEntry>() as u64)
}

/// Whether a failed registration means the locked-memory budget is spent.
pub(crate) fn is_memlock_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EPERM))
}

fn page_round(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE) * PAGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffers::DEFAULT_BUF_SIZE;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn auto_count_keeps_the_full_pool_when_nothing_is_counted() {
        let root = Memlock {
            limit: Some(8 * MIB),
            exempt: true,
        };
        let unlimited = Memlock {
            limit: None,
            exempt: false,
        };
        for m in [root, unlimited] {
            assert_eq!(auto_count(m, 40 * 1024, DEFAULT_BUF_SIZE), DEFAULT_COUNT);
        }
    }

    #[test]
    fn auto_count_takes_a_sixteenth_of_the_limit() {
        let user = |limit| Memlock {
            limit: Some(limit),
            exempt: false,
        };
        // 8 MiB: 512 KiB share, less 40 KiB of ring = 7 x 64 KiB.
        assert_eq!(auto_count(user(8 * MIB), 40 * 1024, DEFAULT_BUF_SIZE), 7);
        assert_eq!(auto_count(user(8 * MIB), 0, DEFAULT_BUF_SIZE), 8);
        // Tiny limits still get one buffer (used unregistered if need be).
        assert_eq!(auto_count(user(64 * 1024), 40 * 1024, DEFAULT_BUF_SIZE), 1);
        assert_eq!(auto_count(user(0), 0, DEFAULT_BUF_SIZE), 1);
        // Large limits stop at the privileged default.
        assert_eq!(
            auto_count(user(1 << 40), 0, DEFAULT_BUF_SIZE),
            DEFAULT_COUNT
        );
        // Buffer sizes count in whole pages.
        assert_eq!(auto_count(user(16 * 4096), 0, 1), 1);
        assert_eq!(auto_count(user(16 * 8192), 0, 100), 2);
    }

    #[test]
    fn provided_ring_entries_take_whole_pages() {
        assert_eq!(provided_locked_bytes(128), 4096);
        assert_eq!(provided_locked_bytes(257), 8192);
        assert_eq!(provided_locked_bytes(0), 4096);
    }

    #[test]
    fn memlock_errors_are_enomem_and_eperm() {
        assert!(is_memlock_error(&io::Error::from_raw_os_error(
            libc::ENOMEM
        )));
        assert!(is_memlock_error(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!is_memlock_error(&io::Error::from_raw_os_error(
            libc::EFAULT
        )));
    }
}
