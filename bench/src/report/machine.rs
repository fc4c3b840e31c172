//! The machine, kernel and pipe facts printed with every result.

/// Machine, kernel and pipe facts printed with every result.
pub fn machine(nofile: u64) -> String {
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .as_ref()
        .map(|u| {
            format!(
                "{} {} {}",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy(),
                u.machine().to_string_lossy()
            )
        })
        .unwrap_or_else(|| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let pipe = default_pipe_size()
        .map(|n| format!("{} KiB", n / 1024))
        .unwrap_or_else(|| "?".into());
    format!(
        "machine: {cpu}, {cpus} CPUs; kernel: {kernel}\n\
         pipe size: {pipe} (default), pipe-max-size {} KiB; RLIMIT_NOFILE soft raised to {nofile}",
        ringpipe::pipe_max_size() / 1024
    )
}

fn default_pipe_size() -> Option<usize> {
    let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETPIPE_SZ)
        .ok()
        .map(|n| n as usize)
}
