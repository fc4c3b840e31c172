//! Frames longer than `PIPE_BUF` cannot be written atomically: by default
//! every frame call refuses them with `Error::FrameTooLarge` and queues
//! nothing; a sender told to allow them (one writer per FIFO) writes them
//! whole, non-atomically.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use ringpipe::frame::{Codec, PIPE_BUF, encode_length_prefixed};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, ReadMode, Receiver, Sender};

/// A framed receiver (frames up to 64 KiB) and a sender on one FIFO.
fn pair(p: &mut Proactor, dir: &Path, codec: Codec, opts: FifoOptions) -> (Receiver, Sender) {
    let path = dir.join("frames.fifo");
    let framed = FifoOptions::new().create(true).frames(codec, 64 << 10);
    let rx = p.open_receiver(&path, &framed).unwrap();
    let tx = p.open_sender(&path, &opts).unwrap();
    (rx, tx)
}

fn too_large(r: ringpipe::Result<()>, tx: Sender, path: &Path, len: usize) {
    match &r {
        Err(Error::FrameTooLarge {
            token,
            path: p,
            len: l,
            max,
        }) => {
            assert_eq!((*token, *l, *max), (tx.token(), len, PIPE_BUF));
            assert_eq!(p.as_deref(), Some(path));
        }
        other => panic!("not FrameTooLarge: {other:?}"),
    }
    let message = r.unwrap_err().to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("large_frames"), "{message}");
}

/// Collects frames until `count` arrived.
fn frames(p: &mut Proactor, count: usize) -> Vec<Vec<u8>> {
    let (mut ev, mut got) = (Events::default(), Vec::new());
    poll_until(p, &mut ev, Duration::from_secs(10), |e| {
        match e {
            Event::Frame { frame, .. } => got.push(frame.to_vec()),
            Event::Error { error, .. } => panic!("{error}"),
            _ => {}
        }
        got.len() == count
    });
    got
}

/// `send_frames` (of one frame and of a batch) and `send_encoded` each refuse a frame one
/// byte over `PIPE_BUF` and queue nothing, batches included; a frame of
/// exactly `PIPE_BUF` goes, and arrives whole.
#[test]
fn frames_over_pipe_buf_are_refused_by_default() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.fifo");
        for codec in [Codec::Lines, Codec::LengthPrefixed] {
            let mut p = Proactor::new().unwrap();
            let (_rx, tx) = pair(&mut p, dir.path(), codec, FifoOptions::new());
            let fits = vec![b'f'; PIPE_BUF - codec.overhead()];
            let over = vec![b'o'; PIPE_BUF - codec.overhead() + 1];
            let r = p.send_frames(tx, codec, &[&over]);
            too_large(r, tx, &path, PIPE_BUF + 1);
            let r = p.send_frames(tx, codec, &[&b"small"[..], &over, b"small"]);
            too_large(r, tx, &path, PIPE_BUF + 1);
            let mut wire = Vec::new();
            codec.encode(b"small", &mut wire).unwrap();
            codec.encode(&over, &mut wire).unwrap();
            let r = p.send_encoded(tx, codec, &wire);
            too_large(r, tx, &path, PIPE_BUF + 1);
            let s = p.stats(tx).unwrap();
            assert_eq!((s.bytes_queued, s.frames_out), (0, 0), "{codec:?}");
            p.send_frames(tx, codec, &[&fits]).unwrap();
            assert_eq!(frames(&mut p, 1), [fits], "{codec:?}");
            std::fs::remove_file(&path).unwrap();
        }
    });
}

/// With large frames allowed (one writer), each call takes them and the
/// receiver gets them whole, in order, with the small ones around them.
#[test]
fn a_sender_that_allows_large_frames_writes_them_whole() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let codec = Codec::LengthPrefixed;
        let opts = FifoOptions::new().large_frames(true);
        let (_rx, tx) = pair(&mut p, dir.path(), codec, opts);
        let big: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 5000 + usize::from(i)]).collect();
        p.send_frames(tx, codec, &[&big[0]]).unwrap();
        p.send_frames(tx, codec, &[&b"small"[..], &big[1]]).unwrap();
        let mut wire = Vec::new();
        encode_length_prefixed(&big[2], &mut wire).unwrap();
        p.send_encoded(tx, codec, &wire).unwrap();
        let got = frames(&mut p, 4);
        assert_eq!(got, [&big[0][..], b"small", &big[1], &big[2]]);
    });
}

/// A sender made from an fd takes no options: `set_large_frames` allows
/// large frames on it, and can refuse them again.
#[test]
fn set_large_frames_allows_them_on_a_sender_made_from_an_fd() {
    watchdog(Duration::from_secs(30), || {
        let mut p = Proactor::new().unwrap();
        let (r, w) = pipe();
        let tx = p.sender_from_fd(w).unwrap();
        let rx = p.receiver_from_fd(r, ReadMode::Fixed).unwrap();
        let big = vec![b'x'; 2 * PIPE_BUF];
        assert!(matches!(
            p.send_frames(tx, Codec::Lines, &[&big]),
            Err(Error::FrameTooLarge { path: None, .. })
        ));
        p.set_large_frames(tx, true).unwrap();
        p.send_frames(tx, Codec::Lines, &[&big]).unwrap();
        p.set_large_frames(tx, false).unwrap();
        assert!(matches!(
            p.send_frames(tx, Codec::Lines, &[&big]),
            Err(Error::FrameTooLarge { .. })
        ));
        let (mut ev, mut got) = (Events::default(), Vec::new());
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            if let Event::Data { from, data } = e {
                assert_eq!(*from, rx);
                got.extend_from_slice(data);
            }
            got.len() == big.len() + 1
        });
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(got[big.len()], b'\n');
    });
}
