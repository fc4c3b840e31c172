//! `Events::runs`: the whole frames of one read come as one `Frames` event
//! with their wire bytes; a frame split across reads still comes as a
//! `Frame`, in its place; nothing is lost, duplicated or reordered.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use ringpipe::frame::{Codec, PIPE_BUF};
use ringpipe::{Event, Events, FifoOptions, Proactor};

/// What a framed receiver delivers, polled until `want` payloads came:
/// `(payload, in a Frames run of this many)` in order.
fn receive(
    p: &mut Proactor,
    rx: ringpipe::Receiver,
    codec: Codec,
    want: usize,
) -> Vec<(Vec<u8>, usize)> {
    let mut got = Vec::new();
    let mut events = Events::with_capacity(64);
    while got.len() < want {
        p.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for e in events.runs(codec) {
            match e {
                Event::Frames {
                    from,
                    wire,
                    frames,
                    checked,
                } if from == rx => {
                    let payloads: Vec<&[u8]> = codec.payloads(wire).collect();
                    assert_eq!(payloads.len(), frames);
                    // The run comes checked by the decoder: the same bytes,
                    // the receiver's codec, whole as `Checked::new` finds.
                    assert_eq!(checked.wire(), wire);
                    assert_eq!(checked.codec(), codec);
                    assert!(ringpipe::frame::Checked::new(codec, wire).is_ok());
                    got.extend(payloads.iter().map(|f| (f.to_vec(), frames)));
                }
                Event::Frame { from, frame } if from == rx => got.push((frame.to_vec(), 0)),
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
    }
    got
}

fn runs_of(codec: Codec) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.fifo");
    let mut p = Proactor::new().unwrap();
    let opts = FifoOptions::new()
        .create(true)
        .frames(codec, PIPE_BUF - codec.overhead());
    let rx = p.open_receiver(&path, &opts).unwrap();
    let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let frames: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("frame {i:05}").into_bytes())
        .collect();
    let mut wire = Vec::new();
    for f in &frames {
        codec.encode(f, &mut wire).unwrap();
    }
    // 100 whole frames, then the rest cut inside frame 150.
    let at_100 = wire.len() / 3;
    let inside_150 = wire.len() / 2 + 3;
    w.write_all(&wire[..at_100]).unwrap();
    let first = receive(&mut p, rx, codec, 100);
    w.write_all(&wire[at_100..inside_150]).unwrap();
    let second = receive(&mut p, rx, codec, 50);
    w.write_all(&wire[inside_150..]).unwrap();
    let third = receive(&mut p, rx, codec, 150);
    let all: Vec<_> = first.iter().chain(&second).chain(&third).collect();
    let payloads: Vec<&Vec<u8>> = all.iter().map(|(f, _)| f).collect();
    assert_eq!(payloads, frames.iter().collect::<Vec<_>>());
    // The 100 frames of the first read came as one run, and the frame
    // split between reads as a Frame of its own.
    assert!(first.iter().all(|&(_, n)| n == 100), "{first:?}");
    assert_eq!(third[0].1, 0, "the split frame");
    assert!(third[1..].iter().all(|&(_, n)| n > 1));
}

#[test]
fn lines_come_in_runs() {
    watchdog(Duration::from_secs(30), || runs_of(Codec::Lines));
}

#[test]
fn length_prefixed_frames_come_in_runs() {
    watchdog(Duration::from_secs(30), || runs_of(Codec::LengthPrefixed));
}
