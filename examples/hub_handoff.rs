//! Hand-off from application threads into a hub: producer threads send
//! lines into the proactor's bounded `Mailbox`; the proactor thread,
//! asleep in `poll` until lines come, takes them and publishes each line
//! through a `Hub` (no source receiver: fed by `Hub::publish` alone) to
//! every subscriber FIFO, each with a queue of its own. Under
//! `Full::PauseSource` a lagging subscriber holds the publisher back: the
//! proactor stops taking, the mailbox fills, the producers wait. No line is lost; every subscriber gets every line once, each
//! producer's in order. Exits once every producer is done and every
//! subscriber has read everything.
//!
//! ```text
//! cargo run --example hub_handoff -- MESSAGES PRODUCERS OUT [OUT...]
//! cat OUT                                   # in another shell, per OUT
//! ```

use std::process::ExitCode;

use ringpipe::frame::Codec;
use ringpipe::hub::{Full, Hub, HubEvent, HubOptions};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [messages, producers, outputs @ ..] = &args[..] else {
        return usage();
    };
    let (Ok(messages), Ok(producers)) = (messages.parse(), producers.parse::<usize>()) else {
        return usage();
    };
    if outputs.is_empty() || producers == 0 {
        return usage();
    }
    match run(messages, producers, outputs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub_handoff: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: hub_handoff MESSAGES PRODUCERS OUT [OUT...]");
    ExitCode::from(2)
}

fn run(messages: usize, producers: usize, outputs: &[String]) -> Result<(), Error> {
    let mut p = Proactor::new()?;
    let opts = HubOptions::new(Codec::Lines)
        .queue_bytes(64 * 1024)
        .full(Full::PauseSource);
    let mut hub = Hub::without_source(opts);
    for out in outputs {
        let tx = p.open_sender(out, &FifoOptions::new().create(true))?;
        hub.add(&mut p, tx)?;
    }

    let (mail, mut mailbox) = p.mailbox::<String>(1024)?;
    let threads: Vec<_> = (0..producers)
        .map(|id| {
            let mail = mail.clone();
            std::thread::spawn(move || {
                for i in (id..messages).step_by(producers) {
                    // A line's newline is the hub's codec's to add. Waits
                    // while the mailbox is full.
                    if mail.send(format!("producer {id} message {i}")).is_err() {
                        return; // the proactor's thread is gone
                    }
                }
                // The last sender dropped wakes the proactor once more.
            })
        })
        .collect();
    drop(mail);

    let mut events = Events::with_capacity(256);
    let (mut ended, mut pauses) = (false, 0);
    // Lines taken from the mailbox; those from `next` on are not published.
    let (mut lines, mut next) = (Vec::<String>::new(), 0);
    // A subscriber leaves the hub when its sender has closed: after the
    // end, once its reader has every line.
    while hub.subscribers().next().is_some() {
        p.poll(&mut events, None)?; // sleeps until I/O or mail
        // The subscribers' Writable and Closed: a lagging one catching up
        // lets the publisher go on (`is_paused` turns false).
        hub.handle_events(&mut p, &events);
        for event in &events {
            if let Event::Error { error, .. } = event {
                eprintln!("hub_handoff: {error}");
            }
        }
        // Publish while the hub takes more; an empty mailbox waits for the
        // next line, a paused hub for a subscriber's Writable (the lines
        // left wait here, the producers in the full mailbox).
        while !ended && !hub.is_paused() {
            if next == lines.len() {
                lines.clear();
                next = 0;
                // Disconnected first: then this take gets the last lines.
                let disconnected = mailbox.is_disconnected();
                if mailbox.take(&mut lines) == 0 {
                    if disconnected {
                        // Every producer is done: each subscriber closes
                        // once it has every line.
                        hub.end(&mut p);
                        ended = true;
                    }
                    break;
                }
            }
            let line = &lines[next];
            next += 1;
            if let Err(e) = hub.publish(&mut p, line.as_bytes()) {
                eprintln!("hub_handoff: {line:?} not published: {e}");
            }
        }
        for report in hub.reports() {
            match report {
                HubEvent::Paused => pauses += 1,
                HubEvent::Gone {
                    to,
                    stats,
                    error: Some(e),
                } => eprintln!("hub_handoff: {to:?} failed after {stats:?}: {e}"),
                _ => {}
            }
        }
    }
    for t in threads {
        if t.join().is_err() {
            eprintln!("hub_handoff: a producer panicked");
        }
    }
    eprintln!(
        "hub_handoff: {} lines published to {} subscribers, held back {pauses} times",
        hub.published_frames(),
        outputs.len()
    );
    Ok(())
}
