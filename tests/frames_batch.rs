//! `send_frames`: many frames queued by one call go out whole, in order,
//! packed densely into atomic writes of at most `PIPE_BUF` bytes, never
//! interleaved with other writers of the FIFO; a payload the codec cannot
//! carry fails the call and queues none of its frames.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use ringpipe::frame::{Codec, PIPE_BUF};
use ringpipe::{CloseReason, Error, Event, Events, FifoOptions, Proactor, Sender};

const WATCHDOG: Duration = Duration::from_secs(60);
const WRITERS: usize = 6;
const PER_WRITER: usize = 3_000;
/// `w{writer:02} s{seq:06} n{len:04} `, then filler up to `len` bytes.
const HEAD_LEN: usize = 18;

/// Message `seq` of `writer`: its length varies from the header alone up to
/// the largest line that fits in `PIPE_BUF`, so chunks hold one frame or
/// dozens, and many frames do not fit the rest of a chunk.
fn message(writer: usize, seq: usize) -> Vec<u8> {
    let biggest = PIPE_BUF - 1;
    let n = match seq % 7 {
        0 => biggest,
        1 | 2 => HEAD_LEN + (seq * 131 + writer) % (biggest - HEAD_LEN),
        _ => HEAD_LEN + (seq + writer) % 64,
    };
    let mut m = format!("w{writer:02} s{seq:06} n{n:04} ").into_bytes();
    let off = (writer * 31 + seq * 17) % 26;
    m.extend((0..n - HEAD_LEN).map(|i| b'a' + ((off + i) % 26) as u8));
    m
}

/// Checks that `frame` is whole and the next message of its writer.
fn check(frame: &[u8], next: &mut [usize]) {
    let head = std::str::from_utf8(&frame[..HEAD_LEN.min(frame.len())]).expect("ASCII header");
    let writer: usize = head[1..3]
        .parse()
        .unwrap_or_else(|_| panic!("bad {head:?}"));
    let seq: usize = head[5..11]
        .parse()
        .unwrap_or_else(|_| panic!("bad {head:?}"));
    assert!(writer < WRITERS, "bad writer in {head:?}");
    assert_eq!(
        seq, next[writer],
        "writer {writer}: message {seq} out of order, lost or duplicated"
    );
    assert_eq!(frame, message(writer, seq), "message {head:?} not whole");
    next[writer] += 1;
}

/// Polls until `tx` has a reader.
fn wait_opened(p: &mut Proactor, tx: Sender, events: &mut Events) {
    loop {
        p.poll(events, Some(Duration::from_millis(100))).unwrap();
        for e in &*events {
            match e {
                Event::Opened(s) if s == tx => return,
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
    }
}

/// One writer: its own proactor, its messages in batches of 1 to 150
/// frames, waiting for `Writable` when refused, then a flush.
fn write_batches(path: std::path::PathBuf, writer: usize, all_open: Arc<Barrier>) {
    let mut p = Proactor::new().unwrap();
    let opts = FifoOptions::new().watermarks(16 * 1024, 4 * 1024);
    let tx = p.open_sender(&path, &opts).unwrap();
    let mut events = Events::with_capacity(64);
    wait_opened(&mut p, tx, &mut events);
    // Every writer has the FIFO open before any closes it: EOF means done.
    all_open.wait();
    let mut seq = 0;
    while seq < PER_WRITER {
        let n = (1 + (seq * 7 + writer) % 150).min(PER_WRITER - seq);
        let batch: Vec<Vec<u8>> = (seq..seq + n).map(|s| message(writer, s)).collect();
        match p.send_frames(tx, Codec::Lines, &batch) {
            Ok(()) => seq += n,
            Err(Error::WouldBlock { .. }) => {}
            Err(e) => panic!("send_frames: {e}"),
        }
        p.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
    }
    p.close_after_flush(tx).unwrap();
    loop {
        p.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for e in &events {
            if let Event::Closed { token, reason, .. } = e
                && token == tx.token()
            {
                assert_eq!(reason, CloseReason::Flushed);
                return;
            }
        }
    }
}

#[test]
fn batches_from_many_proactors_never_interleave() {
    watchdog(WATCHDOG, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batches.fifo");
        let mut p = Proactor::new().unwrap();
        // A one-page pipe: writers wait for room all the time, and every
        // chunk of theirs competes with the others'.
        let opts = FifoOptions::new()
            .create(true)
            .pipe_size(4096)
            .frames(Codec::Lines, PIPE_BUF - 1);
        let rx = p.open_receiver(&path, &opts).unwrap();
        let all_open = Arc::new(Barrier::new(WRITERS));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (path, all_open) = (path.clone(), Arc::clone(&all_open));
                std::thread::spawn(move || write_batches(path, w, all_open))
            })
            .collect();
        let mut next = [0usize; WRITERS];
        let mut events = Events::with_capacity(1024);
        let mut eof = false;
        while !eof {
            p.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for e in &events {
                match e {
                    Event::Frame { from, frame } if from == rx => check(frame, &mut next),
                    Event::PeerGone(t) if t == rx.token() => eof = true,
                    Event::Closed {
                        reason: CloseReason::Eof,
                        ..
                    } => eof = true,
                    Event::Error { error, .. } => panic!("{error}"),
                    _ => {}
                }
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(next, [PER_WRITER; WRITERS], "messages missing at EOF");
    });
}

/// A sender and its reader, a plain byte receiver, on one proactor.
fn pair(p: &mut Proactor, dir: &std::path::Path) -> (Sender, ringpipe::Receiver) {
    let path = dir.join("pair.fifo");
    let rx = p
        .open_receiver(&path, &FifoOptions::new().create(true))
        .unwrap();
    let tx = p.open_sender(&path, &FifoOptions::new()).unwrap();
    (tx, rx)
}

#[test]
fn a_bad_payload_queues_none_of_its_batch() {
    watchdog(WATCHDOG, || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let (tx, rx) = pair(&mut p, dir.path());
        p.send_frames(tx, Codec::Lines, &[&b"one"[..], b"two"])
            .unwrap();
        let queued = p.stats(tx).unwrap().bytes_queued;
        let bad = p.send_frames(tx, Codec::Lines, &[&b"three"[..], b"fo\nur", b"five"]);
        assert!(
            matches!(bad, Err(Error::Frame { token, .. }) if token == tx.token()),
            "{bad:?}"
        );
        assert_eq!(p.stats(tx).unwrap().bytes_queued, queued);
        p.send_frames(tx, Codec::LengthPrefixed, &[b"six"]).unwrap();
        p.send_frames::<&[u8]>(tx, Codec::Lines, &[]).unwrap();
        let want = b"one\ntwo\n\x03\x00\x00\x00six";
        let mut got = Vec::new();
        let mut events = Events::with_capacity(16);
        while got.len() < want.len() {
            p.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for e in &events {
                if let Event::Data { from, data } = e
                    && from == rx
                {
                    got.extend_from_slice(data);
                }
            }
        }
        assert_eq!(got, want);
    });
}

#[test]
fn small_frames_go_out_in_dense_atomic_writes() {
    watchdog(WATCHDOG, || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let (tx, rx) = pair(&mut p, dir.path());
        // 1000 lines of 64 bytes: 64 fill each PIPE_BUF write exactly.
        let lines: Vec<Vec<u8>> = (0..1000).map(|i| format!("{i:063}").into_bytes()).collect();
        p.send_frames(tx, Codec::Lines, &lines).unwrap();
        let total = 1000 * 64;
        let (mut sent, mut read, mut writes) = (0, 0, Vec::new());
        let mut events = Events::with_capacity(64);
        while read < total {
            p.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for e in &events {
                match e {
                    Event::Sent { to, bytes } if to == tx => {
                        sent += bytes;
                        writes.push(bytes);
                    }
                    Event::Data { from, data } if from == rx => read += data.len(),
                    _ => {}
                }
            }
        }
        assert_eq!((sent, read), (total, total));
        // Whole frames only, each write full but the last.
        let last = writes.pop().unwrap();
        assert!(writes.iter().all(|&w| w == PIPE_BUF), "{writes:?}");
        assert_eq!(last, total % PIPE_BUF);
    });
}

#[test]
fn send_framed_cuts_encoded_frames_at_their_boundaries() {
    watchdog(WATCHDOG, || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let (tx, rx) = pair(&mut p, dir.path());
        // One writer: the long line below may go out non-atomically.
        p.set_large_frames(tx, true).unwrap();
        // Lines of 100 bytes (40 fit in PIPE_BUF), one longer than PIPE_BUF
        // among them, as a relay would have read them.
        let mut wire = Vec::new();
        for i in 0..500 {
            if i == 250 {
                wire.extend_from_slice(&[b'L'; 5000]);
                wire.push(b'\n');
            }
            wire.extend_from_slice(format!("{i:099}\n").as_bytes());
        }
        // Wire that ends inside a frame is refused whole: nothing queued.
        let mut refused_whole = |codec: Codec, wire: &[u8], left: usize| {
            let bad = p.send_encoded(tx, codec, wire);
            assert!(
                matches!(
                    bad,
                    Err(Error::Frame {
                        source: ringpipe::frame::FrameError::Truncated { buffered },
                        ..
                    }) if buffered == left
                ),
                "{bad:?}"
            );
            assert_eq!(p.stats(tx).unwrap().bytes_queued, 0);
        };
        refused_whole(Codec::Lines, b"whole\npart", 4);
        // Length-prefixed, cut short after more than PIPE_BUF of whole
        // frames: the runs cut before the bad end are taken back too.
        let mut cut = Vec::new();
        for i in 0..200u32 {
            Codec::LengthPrefixed
                .encode(&[i as u8; 60], &mut cut)
                .unwrap();
        }
        cut.extend_from_slice(&[60, 0]);
        refused_whole(Codec::LengthPrefixed, &cut, 2);
        p.send_encoded(tx, Codec::Lines, &wire).unwrap();
        let (mut got, mut writes) = (Vec::new(), Vec::new());
        let mut events = Events::with_capacity(64);
        while got.len() < wire.len() {
            p.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for e in &events {
                match e {
                    Event::Sent { to, bytes } if to == tx => writes.push(bytes),
                    Event::Data { from, data } if from == rx => got.extend_from_slice(data),
                    _ => {}
                }
            }
        }
        assert_eq!(got, wire);
        // Every write but the long line's is whole lines within PIPE_BUF.
        let long = writes.iter().filter(|&&w| w > PIPE_BUF).count();
        assert_eq!(long, 1, "{writes:?}");
        assert!(
            writes
                .iter()
                .all(|&w| w == 5001 || (w <= PIPE_BUF && w % 100 == 0)),
            "{writes:?}"
        );
    });
}

/// Frames checked once (`Checked`) go to a sole writer as they are and to
/// a shared FIFO's sender cut into atomic writes at frame boundaries:
/// each reader gets every frame, whole and in order.
#[test]
fn checked_frames_go_to_many_senders_whole_and_in_order() {
    watchdog(WATCHDOG, || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let open = |p: &mut Proactor, name: &str, opts: &FifoOptions| {
            let path = dir.path().join(name);
            let rx = p
                .open_receiver(&path, &FifoOptions::new().create(true))
                .unwrap();
            (p.open_sender(&path, opts).unwrap(), rx)
        };
        let (sole, sole_rx) = open(&mut p, "sole", &FifoOptions::new().sole_writer(true));
        let (shared, shared_rx) = open(&mut p, "shared", &FifoOptions::new());
        // 300 length-prefixed frames of 60 to 359 bytes: many PIPE_BUFs.
        let mut wire = Vec::new();
        for i in 0..300usize {
            let payload = vec![(i % 251) as u8; 60 + i];
            Codec::LengthPrefixed.encode(&payload, &mut wire).unwrap();
        }
        let checked = ringpipe::frame::Checked::new(Codec::LengthPrefixed, &wire).unwrap();
        p.send_checked(sole, &checked).unwrap();
        p.send_checked(shared, &checked).unwrap();
        let (mut got_sole, mut got_shared, mut writes) = (Vec::new(), Vec::new(), Vec::new());
        let mut events = Events::with_capacity(64);
        while got_sole.len() < wire.len() || got_shared.len() < wire.len() {
            p.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for e in &events {
                match e {
                    Event::Sent { to, bytes } if to == shared => writes.push(bytes),
                    Event::Data { from, data } if from == sole_rx => {
                        got_sole.extend_from_slice(data)
                    }
                    Event::Data { from, data } if from == shared_rx => {
                        got_shared.extend_from_slice(data)
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(got_sole, wire);
        assert_eq!(got_shared, wire);
        // The shared FIFO's writes: each within PIPE_BUF, each ending where
        // a frame ends.
        let mut ends = std::collections::HashSet::new();
        let mut at = 0;
        for payload in Codec::LengthPrefixed.payloads(&wire) {
            at += payload.len() + Codec::LengthPrefixed.overhead();
            ends.insert(at);
        }
        let mut written = 0;
        for w in &writes {
            assert!(*w <= PIPE_BUF, "a write of {w} bytes: {writes:?}");
            written += w;
            assert!(
                ends.contains(&written),
                "a write ends inside a frame: {writes:?}"
            );
        }
        assert_eq!(written, wire.len());
    });
}

/// A checked frame longer than `PIPE_BUF` is refused by a sender that
/// keeps frames atomic, with nothing queued, and taken by a sole writer.
#[test]
fn a_checked_frame_over_pipe_buf_is_refused_where_writes_must_be_atomic() {
    watchdog(WATCHDOG, || {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let (shared, _rx) = pair(&mut p, dir.path());
        let sole_path = dir.path().join("sole.fifo");
        let _sole_rx = p
            .open_receiver(&sole_path, &FifoOptions::new().create(true))
            .unwrap();
        let sole = p
            .open_sender(&sole_path, &FifoOptions::new().sole_writer(true))
            .unwrap();
        let mut wire = Vec::new();
        Codec::Lines.encode(b"short", &mut wire).unwrap();
        Codec::Lines.encode(&[b'L'; PIPE_BUF], &mut wire).unwrap();
        let checked = ringpipe::frame::Checked::new(Codec::Lines, &wire).unwrap();
        let refused = p.send_checked(shared, &checked);
        assert!(
            matches!(refused, Err(Error::FrameTooLarge { len, max: PIPE_BUF, .. }) if len == PIPE_BUF + 1),
            "{refused:?}"
        );
        assert_eq!(p.stats(shared).unwrap().bytes_queued, 0);
        p.send_checked(sole, &checked).unwrap();
        assert_eq!(p.stats(sole).unwrap().bytes_queued, wire.len() as u64);
    });
}

/// A router's loop: each read's run of frames, as the receiver's decoder
/// checked it (`Event::Frames`'s `checked`), goes to a sole writer and to
/// a shared FIFO's sender with `send_checked`; a frame split across reads
/// goes alone. Both readers get the writer's stream, whole and in order.
#[test]
fn decoded_runs_are_forwarded_checked_whole_and_in_order() {
    watchdog(WATCHDOG, || {
        let dir = tempfile::tempdir().unwrap();
        let codec = Codec::LengthPrefixed;
        let mut p = Proactor::new().unwrap();
        let source = dir.path().join("source");
        let rx = p
            .open_receiver(
                &source,
                &FifoOptions::new().create(true).frames(codec, PIPE_BUF),
            )
            .unwrap();
        let mut outs = Vec::new();
        for (name, sole) in [("sole", true), ("shared", false)] {
            let path = dir.path().join(name);
            let out_rx = p
                .open_receiver(&path, &FifoOptions::new().create(true))
                .unwrap();
            let tx = p
                .open_sender(&path, &FifoOptions::new().sole_writer(sole))
                .unwrap();
            outs.push((tx, out_rx, Vec::new()));
        }
        let mut wire = Vec::new();
        for i in 0..2000usize {
            let payload = vec![(i % 251) as u8; 1 + i % 300];
            codec.encode(&payload, &mut wire).unwrap();
        }
        // Written in pieces that cut frames, so some come split.
        let writer = {
            let (source, wire) = (source.clone(), wire.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut w = std::fs::OpenOptions::new()
                    .write(true)
                    .open(source)
                    .unwrap();
                for piece in wire.chunks(7001) {
                    w.write_all(piece).unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let (mut runs, mut events) = (0, Events::with_capacity(64));
        while outs.iter().any(|(_, _, got)| got.len() < wire.len()) {
            p.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for e in events.runs(codec) {
                match e {
                    Event::Frames { from, checked, .. } if from == rx => {
                        runs += 1;
                        for (tx, _, _) in &outs {
                            p.send_checked(*tx, &checked).unwrap();
                        }
                    }
                    Event::Frame { from, frame } if from == rx => {
                        for (tx, _, _) in &outs {
                            p.send_frames(*tx, codec, &[frame]).unwrap();
                        }
                    }
                    Event::Data { from, data } => {
                        for (_, out_rx, got) in &mut outs {
                            if from == *out_rx {
                                got.extend_from_slice(data);
                            }
                        }
                    }
                    Event::Error { error, .. } => panic!("{error}"),
                    _ => {}
                }
            }
        }
        writer.join().unwrap();
        assert!(runs > 1, "the frames came in runs");
        for (_, _, got) in &outs {
            assert_eq!(got.len(), wire.len());
            assert!(*got == wire, "a reader's stream differs from the writer's");
        }
    });
}
