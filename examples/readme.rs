//! The README's example, byte for byte below this header (a test checks
//! it): copies one FIFO to another, pausing its input while the output is
//! full or has no reader, and exits once the input's writer has closed and
//! the output's reader has read everything.
//!
//! ```text
//! cargo run --example readme -- [INPUT [OUTPUT]]   # default /tmp/ringpipe-in /tmp/ringpipe-out
//! ```

use std::process::ExitCode;

use ringpipe::{Error, Event, Events, FifoOptions, Proactor};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The message ("/tmp/x: not a FIFO ..."), not main's Debug dump.
            eprintln!("readme: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let in_path = args.next().unwrap_or_else(|| "/tmp/ringpipe-in".into());
    let out_path = args.next().unwrap_or_else(|| "/tmp/ringpipe-out".into());
    let mut proactor = Proactor::new()?;
    // "io_uring", or "epoll (io_uring not usable: ...)" where it is refused.
    eprintln!("readme: backend {}", proactor.backend());
    let opts = FifoOptions::new().create(true); // mkfifo 0600 if missing
    // Neither call blocks, whoever opens the other end, and whenever.
    let input = proactor.open_receiver(in_path, &opts)?;
    let output = proactor.open_sender(out_path, &opts)?;
    let mut events = Events::with_capacity(256);
    let mut held = Vec::new(); // bytes the full output refused, in order
    let (mut eof, mut flushing) = (false, false);
    loop {
        proactor.poll(&mut events, None)?; // one io_uring_enter per turn
        for event in &events {
            match event {
                // `data` is a registered buffer lent until the next poll.
                Event::Data { from, data } if from == input => {
                    if held.is_empty() {
                        match proactor.send(output, data) {
                            // At the high watermark `send` queues nothing:
                            // keep the bytes, stop reading (the writer waits).
                            Err(Error::WouldBlock { .. }) => unless_closed(proactor.pause(input))?,
                            sent => {
                                sent?;
                                continue;
                            }
                        }
                    }
                    held.extend_from_slice(data);
                }
                // Down to the low watermark as this poll found it; a send
                // earlier in this batch may have filled it again, and its
                // refusal promises the next `Writable`.
                Event::Writable(_) if !held.is_empty() => match proactor.send(output, &held) {
                    Err(Error::WouldBlock { .. }) => {}
                    sent => {
                        sent?;
                        held.clear();
                        if !eof {
                            unless_closed(proactor.resume(input))?;
                        }
                    }
                },
                Event::PeerGone(t) if t == input.token() => eof = true, // writer closed
                Event::PeerGone(_) => eprintln!("reader left; bytes kept until it returns"),
                Event::Closed { token, .. } if token == output.token() => return Ok(()),
                Event::Error { error, .. } => eprintln!("{error}"),
                _ => {}
            }
        }
        if eof && held.is_empty() && !flushing {
            // Closes once its reader has read every byte, pipe included.
            proactor.close_after_flush(output)?;
            flushing = true;
        }
    }
}

/// A receiver whose writer left closes: a `pause` or `resume` in the same
/// turn, before its `Closed` event is read, finds it closed. Nothing to do.
fn unless_closed(r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(Error::Closed { .. }) => Ok(()),
        r => r,
    }
}
