//! Hand-off from application threads to the I/O thread: producer threads
//! push lines into a bounded `crossbeam-channel` and notify the proactor;
//! the proactor thread, asleep in `poll` until then, drains the channel
//! into a FIFO. A full channel makes the producers wait, and a full FIFO
//! makes the proactor stop draining until the sender is `Writable` again:
//! backpressure all the way back, no byte lost. Exits once every producer
//! is done and the reader has read everything.
//!
//! ```text
//! cargo run --example handoff -- [FIFO [MESSAGES [PRODUCERS]]]  # /tmp/ringpipe-handoff 100000 4
//! cat /tmp/ringpipe-handoff | wc -l                             # in another shell
//! ```

use std::process::ExitCode;

use ringpipe::{Error, Event, Events, FifoOptions, Proactor};

mod common;

fn main() -> ExitCode {
    common::exit(run())
}

fn run() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/ringpipe-handoff".into());
    let messages: usize = args
        .next()
        .map_or(100_000, |a| a.parse().expect("MESSAGES"));
    let producers: usize = args.next().map_or(4, |a| a.parse().expect("PRODUCERS"));

    let mut proactor = Proactor::new()?;
    let out = proactor.open_sender(&path, &FifoOptions::new().create(true))?;
    let (queue_tx, queue) = crossbeam_channel::bounded::<String>(1024);
    let threads: Vec<_> = (0..producers)
        .map(|id| {
            let (tx, wake) = (queue_tx.clone(), proactor.notifier()?);
            Ok(std::thread::spawn(move || {
                for i in (id..messages).step_by(producers) {
                    if tx.send(format!("producer {id} message {i}\n")).is_err() {
                        return; // the I/O thread is gone
                    }
                    wake.notify(); // coalesced: cheap while a wake-up is pending
                }
                // Wake it once more after the last sender is gone, so it
                // sees the channel disconnected.
                drop(tx);
                wake.notify();
            }))
        })
        .collect::<Result<_, Error>>()?;
    drop(queue_tx);

    let mut events = Events::with_capacity(64);
    let mut batch = Vec::new(); // lines taken off the channel, not yet accepted
    let (mut full, mut disconnected, mut closing) = (false, false, false);
    loop {
        proactor.poll(&mut events, None)?; // sleeps until I/O or a notify
        for event in &events {
            match event {
                // One per poll however many notifies came: drain until empty.
                Event::Notified(_) => {}
                Event::Writable(_) => full = false,
                Event::Closed { .. } => {
                    for t in threads {
                        t.join().expect("producer panicked");
                    }
                    return Ok(());
                }
                Event::Error { error, .. } => {
                    eprintln!("handoff: {error}");
                    std::process::exit(1);
                }
                _ => {}
            }
        }
        // Drain the channel while the FIFO takes it, 64 KiB per send. A
        // full sender leaves the rest in the channel (the producers wait on
        // it) until `Writable`; an empty channel, until the next notify.
        while !full && !disconnected {
            let mut empty = false;
            while batch.len() < 64 * 1024 {
                match queue.try_recv() {
                    Ok(line) => batch.extend_from_slice(line.as_bytes()),
                    Err(crossbeam_channel::TryRecvError::Empty) => empty = true,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => disconnected = true,
                }
                if empty || disconnected {
                    break;
                }
            }
            if !batch.is_empty() {
                full = !send(&mut proactor, out, &mut batch)?;
            }
            if empty {
                break;
            }
        }
        if !full && !batch.is_empty() {
            full = !send(&mut proactor, out, &mut batch)?;
        }
        if disconnected && batch.is_empty() && !closing {
            proactor.close_after_flush(out)?; // Closed once the reader has it all
            closing = true;
        }
    }
}

/// Sends `batch` whole and empties it, or keeps it when the sender is at
/// its high watermark (then `Writable` follows).
fn send(p: &mut Proactor, to: ringpipe::Sender, batch: &mut Vec<u8>) -> Result<bool, Error> {
    match p.send(to, batch) {
        Ok(()) => {
            batch.clear();
            Ok(true)
        }
        Err(Error::WouldBlock { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
