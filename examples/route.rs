//! The core of a router, to copy: lines from input FIFOs go to one of two
//! outputs by prefix; an input feeding a full output pauses until that
//! output is `Writable`. Exits once every input's writers have closed and
//! both readers have read everything. (`examples/multiplexer/` adds the rest.)
//!
//! ```text
//! cargo run --example route -- PREFIX MATCHED_OUT OTHER_OUT IN [IN...]
//! ```

use std::collections::VecDeque;
use std::process::ExitCode;

use ringpipe::frame::{Codec, PIPE_BUF};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Receiver, Sender};

mod common;

fn main() -> ExitCode {
    common::exit(run())
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [prefix, matched, other, inputs @ ..] = &args[..] else {
        eprintln!("usage: route PREFIX MATCHED_OUT OTHER_OUT IN [IN...]");
        std::process::exit(2);
    };
    let mut p = Proactor::new()?;
    let opts = FifoOptions::new().create(true);
    let outs = [p.open_sender(matched, &opts)?, p.open_sender(other, &opts)?];
    // One-shot framed receivers: whole lines; each closes once its writers left.
    let framed = opts.frames(Codec::Lines, PIPE_BUF - 1);
    let ins: Vec<Receiver> = inputs
        .iter()
        .map(|i| p.open_receiver(i, &framed))
        .collect::<Result<_, _>>()?;
    // Per output, the lines it refused, in order, with the input each came from.
    let mut held: [VecDeque<(Receiver, Vec<u8>)>; 2] = Default::default();
    let (mut inputs_open, mut outputs_open, mut flushing) = (ins.len(), outs.len(), false);
    let mut events = Events::with_capacity(1024);
    while outputs_open > 0 {
        p.poll(&mut events, None)?;
        for event in &events {
            match event {
                Event::Frame { from, frame } => {
                    let o = usize::from(!frame.starts_with(prefix.as_bytes())); // 0: matched
                    if !held[o].is_empty() || !send(&mut p, outs[o], frame)? {
                        // Keep the line and stop reading its input (its
                        // writers wait); Error::Closed if it just ended.
                        held[o].push_back((from, frame.to_vec()));
                        let _ = p.pause(from);
                    }
                }
                Event::Writable(to) => {
                    let o = usize::from(to == outs[1]);
                    while let Some((_, line)) = held[o].front()
                        && send(&mut p, to, line)?
                    {
                        held[o].pop_front();
                    }
                    for &rx in &ins {
                        if !held.iter().flatten().any(|(from, _)| *from == rx) {
                            let _ = p.resume(rx); // not paused: nothing; closed: Error::Closed
                        }
                    }
                }
                Event::Closed { token, .. } if ins.iter().any(|rx| rx.token() == token) => {
                    inputs_open -= 1;
                }
                Event::Closed { .. } => outputs_open -= 1,
                Event::Error { error, .. } => eprintln!("route: {error}"),
                _ => {}
            }
        }
        if inputs_open == 0 && held.iter().all(VecDeque::is_empty) && !flushing {
            flushing = true;
            for tx in outs {
                p.close_after_flush(tx)?; // closes once its reader has read every byte
            }
        }
    }
    Ok(())
}

/// Queues one line; false if the output is full (nothing queued).
fn send(p: &mut Proactor, to: Sender, line: &[u8]) -> Result<bool, Error> {
    match p.send_frames(to, Codec::Lines, &[line]) {
        Err(Error::WouldBlock { .. }) => Ok(false),
        sent => sent.map(|()| true),
    }
}
