//! Hand-off from application threads to the I/O thread: producer threads
//! send lines into the proactor's bounded `Mailbox`; the proactor thread,
//! asleep in `poll` until lines come, takes them all at once into a FIFO.
//! A full mailbox makes the producers wait, and a full FIFO makes the
//! proactor stop taking until the sender is `Writable` again: backpressure
//! all the way back, no byte lost. Exits once every producer is done and
//! the reader has read everything.
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
    let (mail, mut mailbox) = proactor.mailbox::<String>(1024)?;
    let threads: Vec<_> = (0..producers)
        .map(|id| {
            let mail = mail.clone();
            std::thread::spawn(move || {
                for i in (id..messages).step_by(producers) {
                    // Wakes the proactor only if it sleeps; waits while the
                    // mailbox is full.
                    if mail.send(format!("producer {id} message {i}\n")).is_err() {
                        return; // the I/O thread is gone
                    }
                }
                // The last sender dropped wakes the proactor once more.
            })
        })
        .collect();
    drop(mail);

    let mut events = Events::with_capacity(64);
    let mut lines = Vec::new(); // taken from the mailbox, not yet sent
    let mut batch = Vec::new(); // their bytes
    let (mut full, mut disconnected, mut closing) = (false, false, false);
    loop {
        proactor.poll(&mut events, None)?; // sleeps until I/O or mail
        for event in &events {
            match event {
                // One per poll however much mail came: take it all.
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
        // Take the mailbox whole while the FIFO takes it. A full sender
        // leaves the lines in the mailbox (the producers wait on it) until
        // `Writable`. Disconnected first: then this take gets the last.
        if !full && batch.is_empty() && !disconnected {
            disconnected = mailbox.is_disconnected();
            mailbox.take(&mut lines);
            for line in lines.drain(..) {
                batch.extend_from_slice(line.as_bytes());
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
