//! One reader session of the soak (`ringpipe-bench soak-reader`, a
//! process of its own so it can be SIGKILLed): it moves what it reads
//! from an output FIFO into a file with `splice(2)`, which takes the bytes
//! out of the pipe and puts them in the file in one call. So when the
//! process dies, every byte it took from the pipe is in its file: the
//! file is exactly this session's share of the output.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::sys;

/// (internal) One reader session of the soak.
#[derive(Debug, Clone, clap::Args)]
pub struct ReaderArgs {
    /// The FIFO to read.
    #[arg(long)]
    pub path: PathBuf,
    /// The file to move what it reads into (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Leave after this many ms (0: never), closing the FIFO.
    #[arg(long, default_value_t = 0)]
    pub for_ms: u64,
}

pub fn run(args: &ReaderArgs) -> io::Result<()> {
    let file = std::fs::File::create(&args.out)?;
    // Opens at once, writer or not; then reads block.
    let fifo = sys::open_reader_nonblocking(&args.path)?;
    sys::set_nonblocking(fifo.as_fd(), false)?;
    let end = (args.for_ms > 0).then(|| Instant::now() + Duration::from_millis(args.for_ms));
    loop {
        let left = end.map(|e| e.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Ok(());
        }
        // Wait for data, bounded so the session ends on time.
        let wait = left.map_or(100, |l| l.as_millis().min(100) as u16);
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(wait)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let ready = fds[0].revents().unwrap_or(PollFlags::empty());
        if !ready.contains(PollFlags::POLLIN) {
            // No writer (POLLHUP): the router is away; wait for it.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match splice(
            fifo.as_fd(),
            None,
            file.as_fd(),
            None,
            1 << 16,
            SpliceFFlags::SPLICE_F_NONBLOCK,
        ) {
            Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
