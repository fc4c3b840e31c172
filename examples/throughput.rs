//! Moves bytes through a FIFO between two proactors (a sender thread and a
//! receiver) and prints the throughput and `io_uring_enter` calls per MiB.
//!
//! `cargo run --release --example throughput -- [GIB] [CHUNK_KIB]`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringpipe::{Event, Events, FifoOptions, Proactor};

mod common;

fn main() -> ExitCode {
    common::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let gib: f64 = args.next().map_or(Ok(2.0), |a| a.parse())?;
    let chunk_kib: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let total = (gib * (1u64 << 30) as f64) as u64;
    let chunk = vec![0xA5u8; chunk_kib * 1024];

    let dir = std::env::temp_dir().join(format!("ringpipe-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fifo");
    let opts = FifoOptions::new().create(true).pipe_size(1 << 20);

    let mut rx_proactor = Proactor::new()?;
    let rx = rx_proactor.open_receiver(&path, &opts)?;

    let sender_path = path.clone();
    let sender = std::thread::spawn(move || -> Result<(u64, u64), ringpipe::Error> {
        let mut p = Proactor::new()?;
        // A queue of a few chunks: enough to never starve the pipe.
        let opts = FifoOptions::new().watermarks(4 * chunk.len(), chunk.len());
        let tx = p.open_sender(&sender_path, &opts)?;
        let mut events = Events::with_capacity(256);
        let mut queued = 0u64;
        loop {
            // Send until the sender pushes back; a refused chunk is sent again.
            while queued < total {
                let n = chunk.len().min((total - queued) as usize);
                match p.send(tx, &chunk[..n]) {
                    Ok(()) => queued += n as u64,
                    Err(ringpipe::Error::WouldBlock { .. }) => break,
                    Err(e) => return Err(e),
                }
                if queued == total {
                    p.close_after_flush(tx)?;
                }
            }
            p.poll(&mut events, Some(Duration::from_secs(5)))?;
            if events.iter().any(|e| matches!(e, Event::Closed { .. })) {
                return Ok((total, p.snapshot().enters));
            }
        }
    });

    let mut events = Events::with_capacity(256);
    let mut received = 0u64;
    let start = Instant::now();
    'outer: loop {
        rx_proactor.poll(&mut events, Some(Duration::from_secs(5)))?;
        for event in &events {
            match event {
                Event::Data { data, .. } => received += data.len() as u64,
                Event::PeerGone(t) if t == rx.token() => break 'outer,
                _ => {}
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (sent, tx_enters) = sender.join().expect("sender thread")?;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(received, sent, "bytes lost");
    let mib = received as f64 / (1 << 20) as f64;
    println!(
        "ringpipe: {:.2} GiB in {elapsed:.2} s through one FIFO ({chunk_kib} KiB chunks, 1 MiB pipe): \
         {:.2} GiB/s; io_uring_enter per MiB: receiver {:.2}, sender {:.2}",
        received as f64 / (1u64 << 30) as f64,
        received as f64 / (1u64 << 30) as f64 / elapsed,
        rx_proactor.snapshot().enters as f64 / mib,
        tx_enters as f64 / mib,
    );
    Ok(())
}
