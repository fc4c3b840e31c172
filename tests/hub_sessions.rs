//! Byte streams cut at any point and split into writer sessions, through
//! `FrameDecoder`, through a hub over a raw source, and through
//! `Events::runs` into a hub over a framed source, each against a
//! reference decoder written here: never a panic, never a frame made of
//! two sessions' bytes, no buffer past the largest frame, and every frame
//! either delivered whole or counted (rejected or truncated).
//!
//! A binary of its own: its allocator records the largest allocation made
//! while a decoder works. `PROPTEST_CASES=N` runs more cases than the
//! default.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use ringpipe::frame::{Codec, FrameDecoder, FrameError};
use ringpipe::hub::{Hub, HubEvent, HubOptions};
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Receiver};

/// Header of a length-prefixed frame: the most a partial frame holds
/// beyond the maximum payload.
const HEADER: usize = 4;

struct Probe;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: a thread being torn down has no slot any more.
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only the size of
// the largest allocation on the measuring thread is recorded.
unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Probe = Probe;

/// Runs `f`, returning what it returns and the largest allocation it made
/// on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    MEASURING.with(|m| m.set(true));
    let out = f();
    MEASURING.with(|m| m.set(false));
    (out, LARGEST.with(Cell::get))
}

/// Runs `f` unmeasured (inside a measured call).
fn unmeasured<T>(f: impl FnOnce() -> T) -> T {
    let was = MEASURING.with(|m| m.replace(false));
    let out = f();
    MEASURING.with(|m| m.set(was));
    out
}

/// What the reference decoder makes of one writer's session.
#[derive(Debug, Default, Clone, PartialEq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    /// A frame over the maximum: the session has no framing after it.
    rejected: bool,
    /// Bytes of a frame the session ended inside.
    truncated: Option<usize>,
    /// Bytes before the bad frame (all of them if there is none).
    good: usize,
}

/// The reference: frames one after another from the session's start.
fn reference(codec: Codec, max: usize, bytes: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let (len, frame) = match codec {
            Codec::Lines => {
                let newline = rest.iter().position(|b| *b == b'\n');
                let len = newline.unwrap_or(rest.len());
                (len, newline.map(|n| (&rest[..n], n + 1)))
            }
            _ => match rest.get(..HEADER) {
                None => (0, None),
                Some(h) => {
                    let len = u32::from_le_bytes(h.try_into().unwrap()) as usize;
                    let frame = rest.get(HEADER..HEADER + len);
                    (len, frame.map(|f| (f, HEADER + len)))
                }
            },
        };
        if len > max {
            out.rejected = true;
            out.good = at;
            return out;
        }
        let Some((payload, wire)) = frame else {
            out.truncated = Some(rest.len());
            break;
        };
        out.frames.push(payload.to_vec());
        at += wire;
    }
    out.good = bytes.len();
    out
}

/// One writer's session: its bytes and where its reads end.
#[derive(Debug, Clone)]
struct Session {
    bytes: Vec<u8>,
    cuts: Vec<usize>,
}

impl Session {
    /// The reads: the bytes up to `len`, cut at the session's points
    /// (taken modulo its length); none empty.
    fn chunks(&self, len: usize) -> Vec<&[u8]> {
        let bytes = &self.bytes[..len];
        let mut at: Vec<usize> = self.cuts.iter().map(|p| p % (len + 1)).collect();
        at.extend([0, len]);
        at.sort_unstable();
        at.dedup();
        at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
    }
}

#[derive(Debug, Clone)]
struct Case {
    codec: Codec,
    max: usize,
    sessions: Vec<Session>,
}

impl Case {
    fn outcomes(&self) -> Vec<Outcome> {
        let sessions = self.sessions.iter();
        sessions
            .map(|s| reference(self.codec, self.max, &s.bytes))
            .collect()
    }
}

/// A piece of a session: mostly valid frames, some over the maximum, some
/// cut short, some noise.
fn piece(codec: Codec, max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = match codec {
        Codec::Lines => prop_oneof![Just(b'x'), any::<u8>()]
            .prop_map(|b| if b == b'\n' { b'y' } else { b })
            .boxed(),
        _ => prop_oneof![Just(0u8), any::<u8>()].boxed(),
    };
    let frame = move |lens: std::ops::RangeInclusive<usize>| {
        prop::collection::vec(byte.clone(), lens).prop_map(move |p| {
            let mut wire = Vec::new();
            codec.encode(&p, &mut wire).unwrap();
            wire
        })
    };
    prop_oneof![
        8 => frame(0..=max),
        1 => frame(max + 1..=max + 20),
        1 => (frame(0..=max), any::<usize>()).prop_map(|(mut w, cut)| {
            let len = w.len();
            w.truncate(cut % len);
            w
        }),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let codec = prop_oneof![Just(Codec::Lines), Just(Codec::LengthPrefixed)];
    (codec, 0usize..48).prop_flat_map(|(codec, max)| {
        let session = (
            prop::collection::vec(piece(codec, max), 1..10),
            prop::collection::vec(any::<usize>(), 0..6),
        )
            .prop_map(|(pieces, cuts)| Session {
                bytes: pieces.concat(),
                cuts,
            });
        prop::collection::vec(session, 1..5).prop_map(move |sessions| Case {
            codec,
            max,
            sessions,
        })
    })
}

/// `FrameDecoder` fed each session's reads, then `finish`ed at its end.
fn through_the_decoder(case: &Case) -> Result<(), TestCaseError> {
    let mut d = FrameDecoder::new(case.codec, case.max);
    for (s, want) in case.sessions.iter().zip(case.outcomes()) {
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut failed = None;
        for chunk in s.chunks(s.bytes.len()) {
            let (fed, largest) =
                largest_allocation(|| d.feed(chunk, |f| unmeasured(|| frames.push(f.to_vec()))));
            prop_assert!(largest <= case.max + HEADER, "allocated {}", largest);
            prop_assert!(d.buffered() <= case.max + HEADER);
            if let Err(e) = fed {
                prop_assert!(matches!(e, FrameError::TooLong { .. }), "{:?}", e);
                failed.get_or_insert(e);
            }
        }
        prop_assert_eq!(&frames, &want.frames);
        prop_assert_eq!(failed.is_some(), want.rejected);
        match d.finish() {
            Ok(()) => prop_assert!(!want.rejected && want.truncated.is_none()),
            Err(FrameError::Truncated { buffered }) => {
                prop_assert_eq!(Some(buffered), want.truncated)
            }
            Err(e) => prop_assert_eq!(Some(e), failed),
        }
    }
    Ok(())
}

/// What came out of a hub run through a real FIFO.
struct Ran {
    /// The subscriber's bytes.
    out: Vec<u8>,
    published: u64,
    rejected: u64,
    truncated: u64,
    /// Frames seen in `Events::runs` (framed source only).
    from_runs: Vec<Vec<u8>>,
}

/// A hub over a persistent source, fanning out to one subscriber FIFO
/// that the same proactor reads.
struct Rig {
    p: Proactor,
    events: Events,
    hub: Hub,
    rx: Receiver,
    out_rx: Receiver,
    codec: Codec,
    /// The source decodes frames itself (else the hub does).
    framed: bool,
    ran: Ran,
}

impl Rig {
    /// Polls, handing the hub every event of `Events::runs`, until `done`
    /// says so for an event or (given `None`) after a poll.
    fn turn(&mut self, mut done: impl FnMut(&Proactor, Option<&Event<'_>>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no progress");
            // A read that completes no frame is no event, so `poll` returns
            // only at its timeout: keep that short.
            let timeout = Some(Duration::from_millis(2));
            // The proactor decodes a framed source's reads in `poll`.
            let ((), largest) = largest_allocation(|| {
                self.p.poll(&mut self.events, timeout).unwrap();
            });
            assert!(largest <= 64 << 10, "poll allocated {largest}");
            let (rx, out_rx, codec) = (self.rx, self.out_rx, self.codec);
            let (ran, p, hub) = (&mut self.ran, &mut self.p, &mut self.hub);
            let mut finished = false;
            let ((), largest) = largest_allocation(|| {
                for e in self.events.runs(codec) {
                    unmeasured(|| match e {
                        Event::Frames {
                            from, wire, frames, ..
                        } if from == rx => {
                            let got: Vec<Vec<u8>> =
                                codec.payloads(wire).map(<[u8]>::to_vec).collect();
                            assert_eq!(got.len(), frames, "a run is whole frames");
                            ran.from_runs.extend(got);
                        }
                        Event::Frame { from, frame } if from == rx => {
                            ran.from_runs.push(frame.to_vec())
                        }
                        Event::Data { from, data } if from == out_rx => {
                            ran.out.extend_from_slice(data)
                        }
                        Event::Closed { token, .. } if token == rx.token() => {
                            panic!("the source closed")
                        }
                        Event::Error {
                            token,
                            error: Error::Frame { .. },
                        } if self.framed && token == rx.token() => {}
                        Event::Error { error, .. } => panic!("{error}"),
                        _ => {}
                    });
                    hub.handle(p, e);
                    finished |= unmeasured(|| done(p, Some(&e)));
                }
                hub.flush(p);
            });
            // A session is a few hundred bytes: a buffer sized by a
            // hostile length would be far larger.
            assert!(largest <= 64 << 10, "allocated {largest}");
            if finished || done(p, None) {
                return;
            }
        }
    }
}

/// Writes each session into a persistent source (`len(i)` bytes of
/// session `i`, its reads cut as the session says), one writer after
/// another, each seen gone before the next opens; then ends the hub and
/// reads the subscriber to EOF. `framed`: the source decodes frames
/// itself and the hub takes `Events::runs`.
fn through_a_hub(case: &Case, framed: bool, len: impl Fn(usize) -> usize) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let (src, sub) = (dir.path().join("src"), dir.path().join("sub"));
    let mut p = Proactor::new().unwrap();
    let mut rx_opts = FifoOptions::new().create(true).persistent(true);
    if framed {
        rx_opts = rx_opts.frames(case.codec, case.max);
    }
    let rx = p.open_receiver(&src, &rx_opts).unwrap();
    let out_rx = p
        .open_receiver(&sub, &FifoOptions::new().create(true))
        .unwrap();
    let tx = p.open_sender(&sub, &FifoOptions::new()).unwrap();
    let mut hub = Hub::new(rx, HubOptions::new(case.codec).max_frame(case.max));
    assert!(hub.add(&mut p, tx).unwrap());
    let mut rig = Rig {
        p,
        events: Events::with_capacity(256),
        hub,
        rx,
        out_rx,
        codec: case.codec,
        framed,
        ran: Ran {
            out: Vec::new(),
            published: 0,
            rejected: 0,
            truncated: 0,
            from_runs: Vec::new(),
        },
    };
    let mut written = 0u64;
    for (i, s) in case.sessions.iter().enumerate() {
        let chunks = s.chunks(len(i));
        if chunks.is_empty() {
            continue;
        }
        let mut w = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        for chunk in chunks {
            w.write_all(chunk).unwrap();
            written += chunk.len() as u64;
            // Read before the next write: the reads end at the cuts.
            rig.turn(|p, _| p.stats(rx).unwrap().bytes_read >= written);
        }
        drop(w);
        rig.turn(|_, e| matches!(e, Some(Event::PeerGone(t)) if *t == rx.token()));
    }
    rig.hub.end(&mut rig.p);
    rig.turn(|_, e| matches!(e, Some(Event::Closed { token, .. }) if *token == out_rx.token()));
    for r in rig.hub.reports() {
        match r {
            HubEvent::Rejected { frames, .. } => assert!(frames > 0),
            HubEvent::Truncated { buffered } => assert!(buffered > 0),
            _ => {}
        }
    }
    let mut ran = rig.ran;
    ran.published = rig.hub.published_frames();
    ran.rejected = rig.hub.rejected_frames();
    ran.truncated = rig.hub.truncated_frames();
    ran
}

fn encoded(codec: Codec, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for f in frames {
        codec.encode(f, &mut wire).unwrap();
    }
    wire
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    through_the_decoder(case)?;
    let want = case.outcomes();
    let count = |f: fn(&Outcome) -> bool| want.iter().filter(|o| f(o)).count() as u64;

    // A raw source: the hub decodes each session from a clean start.
    let frames: Vec<Vec<u8>> = want.iter().flat_map(|o| o.frames.clone()).collect();
    let raw = through_a_hub(case, false, |i| case.sessions[i].bytes.len());
    prop_assert_eq!(raw.out, encoded(case.codec, &frames));
    prop_assert_eq!(raw.published, frames.len() as u64);
    prop_assert_eq!(raw.rejected, count(|o| o.rejected));
    prop_assert_eq!(raw.truncated, count(|o| o.truncated.is_some()));

    // A framed source closes on a bad frame: each session up to its first.
    let framed = through_a_hub(case, true, |i| want[i].good);
    prop_assert_eq!(&framed.from_runs, &frames);
    prop_assert_eq!(framed.out, encoded(case.codec, &frames));
    prop_assert_eq!(framed.published, frames.len() as u64);
    prop_assert_eq!(framed.rejected, 0);
    prop_assert_eq!(
        framed.truncated,
        count(|o| !o.rejected && o.truncated.is_some())
    );
    Ok(())
}

#[test]
fn sessions_cut_anywhere_are_delivered_whole_or_counted() {
    watchdog(Duration::from_secs(300), || {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64);
        let config = Config {
            cases,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
                "proptest-regressions/hub_sessions.txt",
            ))),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&case(), |case| check(&case)) {
            panic!("{e}");
        }
    });
}

/// The reference itself, on cases worked by hand.
#[test]
fn the_reference_decoder() {
    let lp = |len: u32, payload: &[u8]| [&len.to_le_bytes()[..], payload].concat();
    let o = reference(
        Codec::LengthPrefixed,
        4,
        &[lp(2, b"ab"), lp(9, b"")].concat(),
    );
    assert_eq!((o.frames.len(), o.rejected, o.good), (1, true, 6));
    let o = reference(
        Codec::LengthPrefixed,
        4,
        &[lp(0, b""), lp(3, b"a")].concat(),
    );
    assert_eq!((o.frames, o.truncated), (vec![vec![]], Some(5)));
    let o = reference(Codec::Lines, 3, b"abc\n\nab");
    assert_eq!(o.frames, [b"abc".to_vec(), vec![]]);
    assert_eq!(o.truncated, Some(2));
    let o = reference(Codec::Lines, 3, b"a\nabcd");
    assert_eq!((o.frames.len(), o.rejected, o.good), (1, true, 2));
}
