//! Publish/subscribe over FIFOs: the lines written into one FIFO go to
//! every subscriber FIFO, each with a queue of its own, so a slow or absent
//! subscriber neither slows the others nor loses its place (unless its
//! queue overflows: `drop` counts what it missed, `pause` holds the
//! publisher back instead, `evict` lets it go). Exits once the
//! publishers have closed and every subscriber has read everything.
//!
//! ```text
//! cargo run --example pubsub -- drop|pause|evict QUEUE_BYTES IN OUT [OUT...]
//! ```

use std::process::ExitCode;

use ringpipe::frame::{Codec, PIPE_BUF};
use ringpipe::hub::{Full, Hub, HubEvent, HubOptions};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Sender};

mod common;

fn main() -> ExitCode {
    common::exit(run())
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: pubsub drop|pause|evict QUEUE_BYTES IN OUT [OUT...]");
        std::process::exit(2)
    };
    let [policy, queue, input, outputs @ ..] = &args[..] else {
        usage()
    };
    let full = match policy.as_str() {
        "drop" => Full::DropOldest,
        "pause" => Full::PauseSource,
        "evict" => Full::Evict,
        _ => usage(),
    };
    let Ok(queue) = queue.parse() else { usage() };
    if outputs.is_empty() {
        usage()
    }
    let mut p = Proactor::new()?;
    let opts = FifoOptions::new().create(true);
    // Whole lines from a one-shot receiver: it closes once its writers left.
    let source = p.open_receiver(input, &opts.clone().frames(Codec::Lines, PIPE_BUF - 1))?;
    let mut hub = Hub::new(
        source,
        HubOptions::new(Codec::Lines).queue_bytes(queue).full(full),
    );
    let mut open: Vec<Sender> = Vec::new();
    for out in outputs {
        let tx = p.open_sender(out, &opts)?;
        hub.add(&mut p, tx)?;
        open.push(tx);
    }
    let mut events = Events::with_capacity(1024);
    while !open.is_empty() {
        p.poll(&mut events, None)?;
        // One pass: the hub takes what is its own, and the loop still
        // looks at each event (`Event` is `Copy`).
        for event in &events {
            hub.handle(&mut p, event);
            if let Event::Closed { token, .. } = event {
                open.retain(|t| t.token() != token);
            }
        }
        // Publishes this poll's lines, one chunk for all of them.
        hub.flush(&mut p);
        for report in hub.reports() {
            match report {
                HubEvent::Gone { to, stats, .. } => {
                    eprintln!("pubsub: {to:?} done, {stats:?}")
                }
                HubEvent::Evicted { to, stats } => {
                    eprintln!("pubsub: {to:?} evicted, {stats:?}");
                    // Pass EOF on after the lines it was handed.
                    p.close_after_flush(to)?;
                }
                other => eprintln!("pubsub: {other:?}"),
            }
        }
    }
    // Every line the publishers wrote is here: published, or counted.
    eprintln!(
        "pubsub: {} lines published, {} rejected, {} cut short",
        hub.published_frames(),
        hub.rejected_frames(),
        hub.truncated_frames()
    );
    Ok(())
}
