//! Relays and fan-outs through the public API, where a unit test reaches
//! what the integration tests do not.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use crate::event::{Event, Events};
use crate::fifo::FifoOptions;
use crate::proactor::{FanOutPolicy, Proactor};
use crate::token::Receiver;
use crate::transport::State;

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap()
}

/// Polls until `done` says so of the events seen, for 10 s at most.
fn poll_until(p: &mut Proactor, mut done: impl FnMut(&Event<'_>) -> bool) {
    let (mut events, deadline) = (
        Events::with_capacity(64),
        Instant::now() + Duration::from_secs(10),
    );
    loop {
        assert!(Instant::now() < deadline, "condition not met in 10 s");
        p.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        if events.iter().fold(false, |hit, e| done(&e) | hit) {
            return;
        }
    }
}

/// Bytes spliced out of a fanned-out persistent receiver's pipe mean
/// its writer is there, as for a relay: after every writer left, the
/// next one's bytes bring it back to `Open` with `PeerBack`.
#[test]
fn a_fanned_out_receiver_sees_its_next_writer() {
    let dir = std::env::temp_dir().join(format!("ringpipe-fan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("src");
    let mut p = Proactor::new().unwrap();
    let opts = FifoOptions::new().create(true).persistent(true);
    let rx: Receiver = p.open_receiver(&path, &opts).unwrap();
    let (ends, outs): (Vec<_>, Vec<_>) = (0..2).map(|_| pipe()).unzip();
    let txs: Vec<_> = outs
        .into_iter()
        .map(|w| p.sender_from_fd(w).unwrap())
        .collect();
    p.fan_out(rx, &txs, FanOutPolicy::Wait).unwrap();
    let write = |bytes: &[u8]| {
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        w.write_all(bytes).unwrap();
        w
    };
    drop(write(b"one"));
    poll_until(
        &mut p,
        |e| matches!(e, Event::PeerGone(t) if *t == rx.token()),
    );
    assert_eq!(p.state(rx).unwrap(), State::PeerGone);
    let _second = write(b"two");
    let mut back = false;
    poll_until(&mut p, |e| {
        back |= matches!(e, Event::PeerBack(t) if *t == rx.token());
        back
    });
    assert_eq!(p.state(rx).unwrap(), State::Open);
    assert_eq!(p.stats(rx).unwrap().reconnects, 1);
    for r in ends {
        let mut buf = [0u8; 16];
        let n = nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"onetwo");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A framed receiver's decoder waits out a fan-out: the frames before it
/// and after it come as `Frame`s, the bytes during it go to the sender.
#[test]
fn a_framed_receiver_decodes_frames_again_after_its_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    let mut p = Proactor::new().unwrap();
    let opts = FifoOptions::new()
        .create(true)
        .frames(crate::frame::Codec::Lines, 64);
    let rx: Receiver = p.open_receiver(&path, &opts).unwrap();
    let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut frames = Vec::new();
    let mut take = |e: &Event<'_>| match e {
        Event::Frame { from, frame } if *from == rx => frames.push(frame.to_vec()),
        Event::Data { from, .. } if *from == rx => panic!("bytes, not frames: {e:?}"),
        _ => {}
    };
    w.write_all(b"a\n").unwrap();
    poll_until(&mut p, |e| {
        take(e);
        matches!(e, Event::Frame { .. })
    });

    let (end, out) = pipe();
    let tx = p.sender_from_fd(out).unwrap();
    p.fan_out(rx, &[tx], FanOutPolicy::Wait).unwrap();
    w.write_all(b"b\n").unwrap();
    poll_until(&mut p, |e| {
        take(e);
        matches!(e, Event::Relayed { .. })
    });
    let mut buf = [0u8; 16];
    let n = nix::unistd::read(&end, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"b\n");

    p.close(tx).unwrap();
    poll_until(&mut p, |e| {
        take(e);
        matches!(e, Event::Closed { token, .. } if *token == tx.token())
    });
    w.write_all(b"c\nd\n").unwrap();
    let mut seen = 0;
    poll_until(&mut p, |e| {
        take(e);
        seen += usize::from(matches!(e, Event::Frame { .. }));
        seen == 2
    });
    assert_eq!(frames, [&b"a"[..], b"c", b"d"]);
}
