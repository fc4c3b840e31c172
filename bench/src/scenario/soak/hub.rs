//! The hub under soak (`ringpipe-bench soak-hub`, internal): a persistent
//! framed receiver (length-prefixed frames) published by a
//! `ringpipe::hub::Hub` to subscriber FIFOs, `Full::PauseSource`, so every
//! subscriber gets every frame, in order, while its readers come and go.
//!
//! Writers that leave inside a frame: the receiver drops the partial frame
//! and goes on (a line `soak-hub: cut` on stderr). A frame too long closes
//! the receiver, which ends the hub's source: once every subscriber's
//! queue is handed over, the source is reopened with a new hub for the
//! same subscribers (a line `soak-hub: reopened`). Runs until killed.

use std::io;
use std::path::PathBuf;

use ringpipe::frame::{Codec, FrameError, PIPE_BUF};
use ringpipe::hub::{Full, Hub, HubEvent, HubOptions};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Reconnect, Sender};

/// (internal) The hub under soak.
#[derive(Debug, Clone, clap::Args)]
pub struct HubArgs {
    /// The source FIFO.
    #[arg(long)]
    pub source: PathBuf,
    /// A subscriber FIFO; repeat for more.
    #[arg(long = "subscriber", required = true)]
    pub subscribers: Vec<PathBuf>,
    /// Bytes each subscriber's queue holds before the source pauses.
    #[arg(long, default_value_t = 256 << 10)]
    pub queue: usize,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

pub fn run(args: &HubArgs) -> io::Result<()> {
    let mut p = Proactor::new().map_err(other)?;
    let source_opts = FifoOptions::new().persistent(true).frames(
        Codec::LengthPrefixed,
        PIPE_BUF - Codec::LengthPrefixed.overhead(),
    );
    let opts = HubOptions::new(Codec::LengthPrefixed)
        .queue_bytes(args.queue)
        .full(Full::PauseSource)
        .close_at_end(false);
    let out_opts = FifoOptions::new().reconnect(Reconnect::Wait);
    let rx = p.open_receiver(&args.source, &source_opts).map_err(other)?;
    let mut source = rx.token();
    let mut hub = Hub::new(rx, opts.clone());
    let mut subs: Vec<Sender> = Vec::new();
    for path in &args.subscribers {
        let tx = p.open_sender(path, &out_opts).map_err(other)?;
        hub.add(&mut p, tx).map_err(other)?;
        subs.push(tx);
    }
    let mut events = Events::with_capacity(1024);
    let mut reopen = false;
    loop {
        p.poll(&mut events, None).map_err(other)?;
        // The hub counts and reports what it refuses; the source's own
        // frame errors reach this loop too, to be named on stderr.
        hub.handle_events(&mut p, &events);
        for e in &events {
            match e {
                Event::Error { token, error } if token == source => match error {
                    Error::Frame {
                        source: FrameError::Truncated { .. },
                        ..
                    } => eprintln!("soak-hub: cut: {error}"),
                    Error::Frame { .. } => eprintln!("soak-hub: bad frame: {error}"),
                    _ => return Err(other(error)),
                },
                Event::Closed { token, .. } if token == source => reopen = true,
                Event::Error { error, .. } => return Err(other(error)),
                _ => {}
            }
        }
        for r in hub.reports() {
            if let HubEvent::Gone { to, error, .. } = r {
                return Err(other(format!("subscriber {to:?} left the hub: {error:?}")));
            }
        }
        // Every frame of the old source handed over: the same subscribers
        // go on with a new source, nothing dropped.
        if reopen && hub.is_finished() {
            let rx = p.open_receiver(&args.source, &source_opts).map_err(other)?;
            source = rx.token();
            let mut next = Hub::new(rx, opts.clone());
            for &tx in &subs {
                hub.remove(&mut p, tx);
                next.add(&mut p, tx).map_err(other)?;
            }
            hub = next;
            reopen = false;
            eprintln!("soak-hub: reopened the source for the next writer");
        }
    }
}
