//! Small OS helpers shared by the engines and the load generator.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use nix::sys::stat::Mode;

/// User + system CPU seconds of this process, all threads included (io-wq
/// workers and the SQPOLL thread are threads of the process).
pub fn cpu_seconds() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(u.user_time()) + tv(u.system_time())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft
/// limit.
pub fn raise_nofile() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 0,
    }
}

/// Pins the calling process (and threads it creates later) to `cpu`.
pub fn pin_to(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Opens a FIFO's read end without blocking (no writer needed), in
/// non-blocking mode.
pub fn open_reader_nonblocking(path: &Path) -> io::Result<OwnedFd> {
    Ok(open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a FIFO's write end without blocking; retries while there is no
/// reader yet (ENXIO), up to `patience`.
pub fn open_writer_nonblocking(path: &Path, patience: Duration) -> io::Result<OwnedFd> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match open(
            path,
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENXIO) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Clears or sets O_NONBLOCK.
pub fn set_nonblocking(fd: BorrowedFd<'_>, yes: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    let new = if yes {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(new))?;
    Ok(())
}

/// Waits until `fd` is readable (or hung up). A blocking read on a FIFO
/// that never had a writer returns EOF at once; waiting first avoids that.
pub fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `read(2)` retried on EINTR.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Writes all of `buf` to a blocking fd; returns the number of `write(2)`
/// calls.
pub fn write_all(fd: impl AsFd, mut buf: &[u8]) -> io::Result<u64> {
    let mut calls = 0;
    while !buf.is_empty() {
        calls += 1;
        match nix::unistd::write(fd.as_fd(), buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(calls)
}

/// User + system CPU seconds of process `pid` so far, all its threads
/// included, from `/proc/PID/stat` (clock-tick resolution).
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces and ')'),
    // from field 3 (state) on: utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(ticks as f64 / hz as f64)
}

/// The numbers of a process's `/proc/PID/status` lines named `names`
/// (`"VmRSS:"`, in KiB; `"Threads:"`), in order; `None` for one it lacks,
/// all `None` once the process is gone.
pub fn status_fields<const N: usize>(pid: u32, names: [&str; N]) -> [Option<u64>; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    })
}

/// `VmRSS` (MiB) and `Threads` of a process, from `/proc/PID/status`.
pub fn rss_and_threads(pid: u32) -> Option<(f64, u64)> {
    let [rss, threads] = status_fields(pid, ["VmRSS:", "Threads:"]);
    Some((rss? as f64 / 1024.0, threads?))
}

/// `src` read as a lowercase hexadecimal number.
pub fn parse_hex(src: &[u8]) -> Option<u64> {
    src.iter().try_fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(d))
    })
}

/// Sleeps until `due_ns` on CLOCK_MONOTONIC (an absolute time, so a
/// schedule does not drift with the time spent between sleeps); returns
/// at once if it is past.
pub fn sleep_until_mono(due_ns: u64) {
    let ts = nix::sys::time::TimeSpec::new(
        (due_ns / 1_000_000_000) as i64,
        (due_ns % 1_000_000_000) as i64,
    );
    let _ = nix::time::clock_nanosleep(
        nix::time::ClockId::CLOCK_MONOTONIC,
        nix::time::ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    );
}
