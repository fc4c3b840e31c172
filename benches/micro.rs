//! Micro benchmarks of ringpipe's hot paths, each beside the plain-syscall
//! code an epoll loop or a blocking thread would run for the same work.
//!
//! - `write_batch`: 32 senders each queue a 64-byte write; one `poll`
//!   submits them all and waits for their completions. Counterpart: 32
//!   `write(2)` calls (what both an epoll loop and blocking threads do).
//! - `round_4k`: 4 KiB sent and received back through one pipe. Counterparts:
//!   blocking `write` + `read`; non-blocking `write` + `epoll_wait` + `read`
//!   until EAGAIN.
//! - `frame_decode`: decoding 64 KiB of 64-byte frames (no counterpart: the
//!   baselines have no framing of their own).

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::unistd::{pipe2, read, write};
use ringpipe::frame::{Codec, FrameDecoder};
use ringpipe::{Event, Events, Proactor, ReadMode};

const BATCH: usize = 32;

fn set_nonblocking(fd: &OwnedFd) {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).expect("F_GETFL"));
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("F_SETFL");
}

/// Empties a non-blocking read end.
fn drain(fd: &OwnedFd, buf: &mut [u8]) {
    while let Ok(n) = read(fd.as_fd(), buf) {
        if n == 0 {
            break;
        }
    }
}

fn write_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    let msg = [7u8; 64];
    let mut scratch = vec![0u8; 64 * 1024];

    group.bench_function(BenchmarkId::new("uring", BATCH), |b| {
        let mut p = Proactor::new().expect("proactor");
        let mut readers = Vec::new();
        let mut senders = Vec::new();
        for _ in 0..BATCH {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
            set_nonblocking(&r);
            readers.push(r);
            senders.push(p.sender_from_fd(w).expect("sender"));
        }
        let mut events = Events::with_capacity(256);
        p.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                for s in &senders {
                    p.send(*s, &msg).expect("send");
                }
                let mut sent = 0;
                while sent < BATCH {
                    p.poll(&mut events, None).expect("poll");
                    sent += events
                        .iter()
                        .filter(|e| matches!(e, Event::Sent { .. }))
                        .count();
                }
                // A 64 KiB pipe holds 1024 such writes: empty it now and then.
                if i % 256 == 255 {
                    readers.iter().for_each(|r| drain(r, &mut scratch));
                }
            }
            let t = start.elapsed();
            readers.iter().for_each(|r| drain(r, &mut scratch));
            t
        });
    });

    group.bench_function(BenchmarkId::new("write(2)", BATCH), |b| {
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for _ in 0..BATCH {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
            set_nonblocking(&r);
            readers.push(r);
            writers.push(w);
        }
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                for w in &writers {
                    write(w, &msg).expect("write");
                }
                if i % 256 == 255 {
                    readers.iter().for_each(|r| drain(r, &mut scratch));
                }
            }
            let t = start.elapsed();
            readers.iter().for_each(|r| drain(r, &mut scratch));
            t
        });
    });
    group.finish();
}

fn round_4k(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_4k");
    group.throughput(Throughput::Bytes(4096));
    let data = vec![3u8; 4096];

    group.bench_function("uring", |b| {
        let mut p = Proactor::new().expect("proactor");
        let (r, w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let rx = p.receiver_from_fd(r, ReadMode::Fixed).expect("receiver");
        let tx = p.sender_from_fd(w).expect("sender");
        let mut events = Events::with_capacity(64);
        p.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        b.iter(|| {
            p.send(tx, &data).expect("send");
            let mut got = 0;
            while got < data.len() {
                p.poll(&mut events, None).expect("poll");
                for ev in &events {
                    if let Event::Data { from, data } = ev
                        && from == rx
                    {
                        got += data.len();
                    }
                }
            }
        });
    });

    group.bench_function("blocking write+read", |b| {
        let (r, w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let mut buf = vec![0u8; 64 * 1024];
        b.iter(|| {
            write(&w, &data).expect("write");
            let mut got = 0;
            while got < data.len() {
                got += read(r.as_fd(), &mut buf).expect("read");
            }
        });
    });

    group.bench_function("epoll", |b| {
        let (r, w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        set_nonblocking(&r);
        set_nonblocking(&w);
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
        epoll
            .add(
                &r,
                EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, 0),
            )
            .expect("epoll add");
        let mut events = [EpollEvent::empty(); 4];
        let mut buf = vec![0u8; 64 * 1024];
        b.iter(|| {
            write(&w, &data).expect("write");
            let mut got = 0;
            while got < data.len() {
                epoll
                    .wait(&mut events, EpollTimeout::NONE)
                    .expect("epoll_wait");
                loop {
                    match read(r.as_fd(), &mut buf) {
                        Ok(n) if n > 0 => got += n,
                        Ok(_) | Err(Errno::EAGAIN) => break,
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
        });
    });
    group.finish();
}

fn frame_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_decode");
    let payload = [b'x'; 64];
    for codec in [Codec::LengthPrefixed, Codec::Lines] {
        let mut stream = Vec::new();
        let payload = &payload[..64 - codec.overhead()];
        while stream.len() + 64 <= 64 * 1024 {
            codec.encode(payload, &mut stream).expect("encode");
        }
        group.throughput(Throughput::Bytes(stream.len() as u64));
        let name = match codec {
            Codec::LengthPrefixed => "length_prefixed_64B",
            Codec::Lines => "lines_64B",
        };
        group.bench_function(name, |b| {
            let mut dec = FrameDecoder::new(codec, 4096);
            b.iter(|| {
                let mut frames = 0usize;
                // Two uneven chunks, so one frame is split and reassembled.
                let (a, z) = stream.split_at(stream.len() / 2 + 7);
                for chunk in [a, z] {
                    dec.feed(chunk, |f| frames += f.len()).expect("decode");
                }
                frames
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = write_batch, round_4k, frame_decode
}
criterion_main!(micro);
