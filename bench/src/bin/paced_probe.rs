//! `paced_probe`: the paced regime in isolation, for profiling one consumer
//! at a time (callgrind, `perf stat`, `strace -c`).
//!
//! `paced_probe gen DIR FIFOS RATE MSGS` writes MSGS 64-byte messages into
//! the FIFOs `DIR/in-0..FIFOS`, round-robin, one `write(2)` each, on a
//! fixed schedule of RATE messages a second (a late message goes at once:
//! open loop). `paced_probe consume ENGINE DIR FIFOS MSGS` reads them,
//! checks every FIFO's sequence, and prints one line of counts: messages,
//! wake-ups (polls or `epoll_wait`s that returned), reads that carried
//! data, empty reads, enters, CPU. The consuming loop is one function per
//! engine (`measured_*`, never inlined) so a profiler can count it alone:
//! `valgrind --tool=callgrind --toggle-collect='*measured_*'`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::stat::Mode;
use nix::time::{ClockId, clock_gettime};
use ringpipe::{Event, Events, FifoOptions, Proactor, ReadMode};

// The bench's OS helpers (this binary is not part of the bench's crate).
#[allow(dead_code)]
#[path = "../sys.rs"]
mod sys;

const MSG: usize = 64;

fn fifo(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("in-{i}"))
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: {what}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") => generate(
            Path::new(&args[2]),
            arg(&args, 3, "fifos"),
            arg(&args, 4, "rate"),
            arg(&args, 5, "msgs"),
        ),
        Some("consume") => consume(
            &args[2],
            Path::new(&args[3]),
            arg(&args, 4, "fifos"),
            arg(&args, 5, "msgs"),
        ),
        Some("self") => self_loop(
            &args[2],
            Path::new(&args[3]),
            arg(&args, 4, "fifos"),
            arg(&args, 5, "msgs"),
            args.get(6).and_then(|b| b.parse().ok()).unwrap_or(1),
        ),
        _ => eprintln!(
            "usage: paced_probe gen DIR FIFOS RATE MSGS | consume ENGINE DIR FIFOS MSGS \
             | self ENGINE DIR FIFOS MSGS [BURST] (ENGINE: uring, uring-multishot, uring-single, uring-batch, epoll)"
        ),
    }
}

fn generate(dir: &Path, fifos: usize, rate: u64, msgs: u64) {
    // The schedule is kept to the microsecond, not the default 50 us slack.
    let _ = nix::sys::prctl::set_timerslack(1000);
    let fds: Vec<OwnedFd> = (0..fifos)
        .map(|i| {
            open(
                &fifo(dir, i),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .expect("open a FIFO for writing (is the consumer there?)")
        })
        .collect();
    let start = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock");
    let start_ns = start.tv_sec() as u64 * 1_000_000_000 + start.tv_nsec() as u64;
    let mut seqs = vec![0u64; fifos];
    let mut late = 0u64;
    for n in 0..msgs {
        let due = start_ns + n * 1_000_000_000 / rate;
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock");
        let now_ns = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
        if due > now_ns {
            sys::sleep_until_mono(due);
        } else if now_ns - due > 100_000 {
            late += 1;
        }
        let i = (n % fifos as u64) as usize;
        let mut m = [0u8; MSG];
        m[..8].copy_from_slice(&seqs[i].to_le_bytes());
        seqs[i] += 1;
        let mut at = 0;
        while at < MSG {
            match nix::unistd::write(&fds[i], &m[at..]) {
                Ok(k) => at += k,
                Err(Errno::EINTR) => {}
                Err(e) => panic!("write: {e}"),
            }
        }
    }
    eprintln!("gen: {msgs} msgs, {late} more than 100 us late");
}

/// What a consumer counts while it runs.
#[derive(Debug, Default)]
struct Counts {
    msgs: u64,
    wakes: u64,
    reads: u64,
    empty: u64,
    enters: u64,
}

/// The per-FIFO sequence check every engine does on each read.
struct Check {
    next: Vec<u64>,
    partial: Vec<Vec<u8>>,
}

impl Check {
    fn new(fifos: usize) -> Check {
        Check {
            next: vec![0; fifos],
            partial: vec![Vec::new(); fifos],
        }
    }

    #[inline]
    fn on_data(&mut self, i: usize, data: &[u8], c: &mut Counts) {
        let mut data = data;
        if !self.partial[i].is_empty() {
            let need = MSG - self.partial[i].len();
            let take = need.min(data.len());
            self.partial[i].extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial[i].len() < MSG {
                return;
            }
            let whole = std::mem::take(&mut self.partial[i]);
            self.one(i, &whole, c);
        }
        let mut it = data.chunks_exact(MSG);
        for m in &mut it {
            self.one(i, m, c);
        }
        self.partial[i].extend_from_slice(it.remainder());
    }

    #[inline]
    fn one(&mut self, i: usize, m: &[u8], c: &mut Counts) {
        let seq = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
        assert_eq!(seq, self.next[i], "FIFO {i}: message out of order");
        self.next[i] += 1;
        c.msgs += 1;
    }
}

fn cpu() -> (f64, f64) {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    (tv(u.user_time()), tv(u.system_time()))
}

fn proactor(engine: &str) -> Proactor {
    let mut builder = Proactor::builder();
    // `PACED_PROVIDED=COUNT,SIZE`: the provided rings' buffers, for trying
    // ring sizes with one binary.
    if let Some((n, size)) = std::env::var("PACED_PROVIDED").ok().and_then(|v| {
        Some((
            v.split_once(',')?.0.parse().ok()?,
            v.split_once(',')?.1.parse().ok()?,
        ))
    }) {
        builder = builder.provided_buffers(n, size);
    }
    let builder = match engine {
        "uring-batch" => builder.batch_wait(16, Duration::from_micros(500)),
        _ => builder,
    };
    builder.build().expect("proactor")
}

/// `burst` messages per turn with no sleep and no second process: this
/// thread writes them round-robin into the FIFOs, then the consumer takes
/// them all (polls that do not wait, or `epoll_wait` with a zero timeout,
/// then the reads). With a burst of 1, exactly the paced consumer's work
/// per message minus the sleep and wake-up; with a burst of FIFOS, a wave
/// over every FIFO as a saturated fan-in sees. Deterministic enough for
/// instruction counts, and timed: min and median ns per message over 10
/// batches.
fn self_loop(engine: &str, dir: &Path, fifos: usize, msgs: u64, burst: u64) {
    let mut c = Counts::default();
    let mut check = Check::new(fifos);
    // Write ends opened once the read ends are (non-blocking opens).
    let load = |dir: &Path| Load {
        w: (0..fifos)
            .map(|i| {
                open(
                    &fifo(dir, i),
                    OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .expect("open writer")
            })
            .collect(),
        seqs: vec![0; fifos],
        burst,
    };
    let mut batches = Vec::new();
    let batch = msgs / 10;
    match engine {
        "epoll" => {
            let (epoll, fds) = epoll_readers(dir, fifos, false);
            let mut load = load(dir);
            for _ in 0..10 {
                let t = Instant::now();
                let target = c.msgs + batch;
                measured_self_epoll((&epoll, &fds), &mut load, &mut check, &mut c, target);
                batches.push(t.elapsed().as_nanos() as f64 / batch as f64);
            }
        }
        _ => {
            let mut p = proactor(engine);
            let fifo_of = receivers(&mut p, engine, dir, fifos);
            let mut load = load(dir);
            let mut events = Events::with_capacity(1024);
            p.poll(&mut events, Some(Duration::ZERO)).expect("poll");
            let e0 = p.snapshot().enters;
            for _ in 0..10 {
                let t = Instant::now();
                let target = c.msgs + batch;
                let out = (&mut events, &fifo_of[..]);
                measured_self_uring(&mut p, out, &mut load, &mut check, &mut c, target);
                batches.push(t.elapsed().as_nanos() as f64 / batch as f64);
            }
            c.enters = p.snapshot().enters - e0;
        }
    }
    batches.sort_by(|a, b| a.total_cmp(b));
    let per = |x: u64| x as f64 / c.msgs.max(1) as f64;
    println!(
        "self engine={engine} fifos={fifos} burst={burst} msgs={} ns/msg min={:.0} median={:.0} \
         wakes/msg={:.3} reads/msg={:.3} empty/msg={:.3} enters/msg={:.3}",
        c.msgs,
        batches[0],
        batches[batches.len() / 2],
        per(c.wakes),
        per(c.reads),
        per(c.empty),
        per(c.enters),
    );
}

/// Opens the FIFOs' read ends for the epoll consumer: non-blocking,
/// edge-triggered, FIFO number as the event data; with `O_NOATIME` if
/// `noatime` (engine `epoll-noatime`: the flag ringpipe's receivers read
/// with, for comparing like with like).
fn epoll_readers(dir: &Path, fifos: usize, noatime: bool) -> (Epoll, Vec<OwnedFd>) {
    let noatime = if noatime {
        OFlag::O_NOATIME
    } else {
        OFlag::empty()
    };
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
    let fds = (0..fifos)
        .map(|i| {
            let fd = open(
                &fifo(dir, i),
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | noatime,
                Mode::empty(),
            )
            .expect("open");
            let ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, i as u64);
            epoll.add(&fd, ev).expect("epoll add");
            fd
        })
        .collect();
    (epoll, fds)
}

/// Opens a receiver per FIFO; returns the FIFO number of each slot.
fn receivers(p: &mut Proactor, engine: &str, dir: &Path, fifos: usize) -> Vec<usize> {
    let opts = match engine {
        "uring-multishot" => FifoOptions::new().read_mode(ReadMode::Multishot),
        "uring-single" => FifoOptions::new().read_mode(ReadMode::Fixed),
        _ => FifoOptions::new(),
    };
    let mut fifo_of = Vec::new();
    for i in 0..fifos {
        let rx = p.open_receiver(fifo(dir, i), &opts).expect("open_receiver");
        let slot = rx.token().index as usize;
        if fifo_of.len() <= slot {
            fifo_of.resize(slot + 1, usize::MAX);
        }
        fifo_of[slot] = i;
    }
    fifo_of
}

/// The epoll consumer's work for the FIFOs one `epoll_wait` reported:
/// read each until EAGAIN, checking the messages.
#[inline(always)]
fn read_ready(
    ready: &[EpollEvent],
    fds: &[OwnedFd],
    buf: &mut [u8],
    check: &mut Check,
    c: &mut Counts,
) {
    for ev in ready {
        let i = ev.data() as usize;
        loop {
            match nix::unistd::read(fds[i].as_fd(), buf) {
                Ok(0) => break,
                Ok(k) => {
                    c.reads += 1;
                    check.on_data(i, &buf[..k], c);
                }
                Err(Errno::EAGAIN) => {
                    c.empty += 1;
                    break;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

/// The ringpipe consumer's work for one poll's events.
#[inline(always)]
fn take_events(events: &Events, fifo_of: &[usize], check: &mut Check, c: &mut Counts) {
    for ev in events {
        match ev {
            Event::Data { from, data } => {
                c.reads += 1;
                check.on_data(fifo_of[from.token().index as usize], data, c);
            }
            Event::Error { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
}

/// The self loop's writing side: a write end per FIFO, the next sequence
/// number of each, and how many messages go per turn.
struct Load {
    w: Vec<OwnedFd>,
    seqs: Vec<u64>,
    burst: u64,
}

impl Load {
    /// Writes messages `from..from + burst` round-robin into the FIFOs.
    #[inline(always)]
    fn write_burst(&mut self, from: u64) {
        let n = self.w.len() as u64;
        for k in from..from + self.burst {
            let i = (k % n) as usize;
            put(&self.w[i], &mut self.seqs[i]);
        }
    }
}

fn put(fd: &OwnedFd, seq: &mut u64) {
    let mut m = [0u8; MSG];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    *seq += 1;
    assert_eq!(nix::unistd::write(fd, &m), Ok(MSG));
}

#[inline(never)]
fn measured_self_uring(
    p: &mut Proactor,
    (events, fifo_of): (&mut Events, &[usize]),
    load: &mut Load,
    check: &mut Check,
    c: &mut Counts,
    target: u64,
) {
    let timeout = std::env::var_os("PACED_SPIN").map(|_| Duration::ZERO);
    while c.msgs < target {
        load.write_burst(c.msgs);
        let want = c.msgs + load.burst;
        while c.msgs < want {
            // The message is in the pipe: a wait returns at once (its task
            // work runs before the enter would sleep), as the paced
            // consumer's does once woken. `PACED_SPIN=1`: busy polls.
            p.poll(events, timeout).expect("poll");
            c.wakes += 1;
            take_events(events, fifo_of, check, c);
        }
    }
}

#[inline(never)]
fn measured_self_epoll(
    (epoll, fds): (&Epoll, &[OwnedFd]),
    load: &mut Load,
    check: &mut Check,
    c: &mut Counts,
    target: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = vec![EpollEvent::empty(); 1024];
    while c.msgs < target {
        load.write_burst(c.msgs);
        let k = epoll
            .wait(&mut events, EpollTimeout::ZERO)
            .expect("epoll_wait");
        c.wakes += 1;
        read_ready(&events[..k], fds, &mut buf, check, c);
    }
}

fn consume(engine: &str, dir: &Path, fifos: usize, msgs: u64) {
    let mut c = Counts::default();
    let mut check = Check::new(fifos);
    let (u0, s0, t0);
    match engine {
        "uring" | "uring-multishot" | "uring-single" | "uring-batch" => {
            let mut p = proactor(engine);
            let fifo_of = receivers(&mut p, engine, dir, fifos);
            let mut events = Events::with_capacity(1024);
            // The arming submission goes first, outside the count.
            p.poll(&mut events, Some(Duration::ZERO)).expect("poll");
            println!("READY");
            (u0, s0) = cpu();
            t0 = Instant::now();
            let e0 = p.snapshot().enters;
            measured_uring(&mut p, &mut events, &fifo_of, &mut check, &mut c, msgs);
            c.enters = p.snapshot().enters - e0;
        }
        "epoll" | "epoll-noatime" => {
            let (epoll, fds) = epoll_readers(dir, fifos, engine == "epoll-noatime");
            println!("READY");
            (u0, s0) = cpu();
            t0 = Instant::now();
            measured_epoll(&epoll, &fds, &mut check, &mut c, msgs);
        }
        other => panic!("unknown engine {other}"),
    }
    let (u1, s1) = cpu();
    let secs = t0.elapsed().as_secs_f64();
    let per = |x: u64| x as f64 / c.msgs.max(1) as f64;
    println!(
        "engine={engine} fifos={fifos} msgs={} secs={secs:.3} wakes/msg={:.3} reads/msg={:.3} \
         empty/msg={:.3} enters/msg={:.3} user_us/msg={:.3} sys_us/msg={:.3}",
        c.msgs,
        per(c.wakes),
        per(c.reads),
        per(c.empty),
        per(c.enters),
        (u1 - u0) * 1e6 / c.msgs.max(1) as f64,
        (s1 - s0) * 1e6 / c.msgs.max(1) as f64,
    );
}

#[inline(never)]
fn measured_uring(
    p: &mut Proactor,
    events: &mut Events,
    fifo_of: &[usize],
    check: &mut Check,
    c: &mut Counts,
    msgs: u64,
) {
    while c.msgs < msgs {
        p.poll(events, None).expect("poll");
        c.wakes += 1;
        take_events(events, fifo_of, check, c);
    }
}

#[inline(never)]
fn measured_epoll(epoll: &Epoll, fds: &[OwnedFd], check: &mut Check, c: &mut Counts, msgs: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = vec![EpollEvent::empty(); 1024];
    while c.msgs < msgs {
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("epoll_wait: {e}"),
        };
        c.wakes += 1;
        read_ready(&events[..n], fds, &mut buf, check, c);
    }
}
