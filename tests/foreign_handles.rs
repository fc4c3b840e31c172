//! Handles cannot cross proactors. Two proactors both number their slots
//! from 0, so without an identity in each handle one proactor would take
//! the other's handle for its own transport. Every public call given a
//! handle of another proactor fails with `Error::Foreign`, never panics,
//! and never touches a transport of its own.

mod common;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{drain, watchdog};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use proptest::prelude::*;
use ringpipe::frame::Codec;
use ringpipe::{
    CloseReason, Error, Event, Events, FanOutPolicy, FifoOptions, Proactor, Receiver, Sender,
    State, Token,
};

fn open_cloexec(path: &Path, flags: OFlag) -> OwnedFd {
    open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
}

fn is_foreign(r: &Result<impl std::fmt::Debug, Error>, this: &Proactor) -> bool {
    matches!(r, Err(Error::Foreign { this: id, .. }) if *id == this.id())
}

/// A sender whose FIFO has a reader held by the test (so it opens at once).
fn sender(p: &mut Proactor, dir: &Path, name: &str) -> (Sender, OwnedFd, PathBuf) {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).unwrap();
    let reader = open_cloexec(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK);
    let tx = p.open_sender(&path, &FifoOptions::new()).unwrap();
    (tx, reader, path)
}

/// A receiver whose FIFO has a writer held by the test.
fn receiver(p: &mut Proactor, dir: &Path, name: &str) -> (Receiver, OwnedFd, PathBuf) {
    let path = dir.join(name);
    let opts = FifoOptions::new().create(true);
    let rx = p.open_receiver(&path, &opts).unwrap();
    let writer = open_cloexec(&path, OFlag::O_WRONLY | OFlag::O_NONBLOCK);
    (rx, writer, path)
}

/// The reproduction of the report: A has senders in slots 0 and 1, B a
/// receiver in slot 0 and a sender in slot 1.
#[test]
fn a_handle_of_another_proactor_is_refused() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let mut pa = Proactor::new().unwrap();
        let mut pb = Proactor::new().unwrap();
        assert_ne!(pa.id(), pb.id());
        let (a0, _ra0, _) = sender(&mut pa, dir.path(), "a0");
        let (a1, _ra1, _) = sender(&mut pa, dir.path(), "a1");
        let (b0, wb0, _) = receiver(&mut pb, dir.path(), "b0");
        let (b1, rb1, _) = sender(&mut pb, dir.path(), "b1");
        assert_eq!((a0.token().index, b0.token().index), (0, 0));
        assert_eq!((a1.token().index, b1.token().index), (1, 1));
        assert_eq!(a1.token().proactor, pa.id());

        assert!(is_foreign(&pb.send(a1, b"INTRUDER"), &pb));
        assert!(is_foreign(&pb.send(a0, b"INTRUDER"), &pb));
        assert!(is_foreign(&pb.send_frames(a0, Codec::Lines, &[b"x"]), &pb));
        assert!(is_foreign(&pb.send_encoded(a0, Codec::Lines, b"x\n"), &pb));
        assert!(is_foreign(&pa.pause(b0), &pa));
        assert!(is_foreign(&pa.resume(b0), &pa));
        assert!(is_foreign(&pb.close(a0), &pb));
        assert!(is_foreign(&pb.close_after_flush(a1), &pb));
        assert!(is_foreign(&pb.set_watermarks(a1, 10, 5), &pb));
        assert!(is_foreign(&pb.set_pipe_size(a0, 65536), &pb));
        assert!(is_foreign(&pb.state(a0), &pb));
        assert!(is_foreign(&pb.stats(a1), &pb));
        assert!(is_foreign(&pa.relay(b0, a1), &pa));
        assert!(is_foreign(&pb.relay(b0, a1), &pb));
        assert!(is_foreign(
            &pb.fan_out(b0, &[b1, a1], FanOutPolicy::Detach),
            &pb
        ));
        assert!(is_foreign(
            &pa.fan_out(b0, &[a1], FanOutPolicy::Detach),
            &pa
        ));

        // B's own transports are untouched: its receiver still reads, its
        // sender received nothing.
        assert_eq!(pb.state(b0).unwrap(), State::Open);
        assert_eq!(pb.state(b1).unwrap(), State::Open);
        assert_eq!(nix::unistd::write(&wb0, b"hello").unwrap(), 5);
        let mut events = Events::with_capacity(16);
        let mut got = Vec::new();
        common::poll_until(&mut pb, &mut events, Duration::from_secs(10), |ev| {
            if let Event::Data { from, data } = ev {
                assert_eq!(*from, b0);
                got.extend_from_slice(data);
            }
            got.len() >= 5
        });
        assert_eq!(got, b"hello");
        pb.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(drain(&rb1).is_empty(), "B's sender wrote a foreign send");
    });
}

#[test]
fn a_forged_identity_is_foreign() {
    let mut p = Proactor::new().unwrap();
    let forged = Token {
        index: 0,
        generation: 0,
        proactor: p.id().wrapping_add(1000),
    };
    assert!(is_foreign(&p.close(forged), &p));
    assert!(is_foreign(&p.state(forged), &p));
}

// ----- property test: two proactors, random calls, random handles -----
//
// A model of every handle next to the real proactors: each call's result
// is the one the docs give for the handle's owner and life (foreign,
// closed, reused, flushing, relaying), and at the end every byte is
// accounted for exactly: a sender's pipe, then what its `Closed` handed
// back, is what it accepted (with a relayed stream in its place); a
// receiver's `Data`, the streams it relayed and what is left in its pipe
// are what the test wrote, in order.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Rx,
    Tx,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    Live,
    /// `close_after_flush` was called with bytes already sent: it stays
    /// open, as the test's reader never drains the pipe until the end, and
    /// takes no more sends.
    Flushing,
    /// `close` (or a `close_after_flush` with nothing sent) began closing:
    /// `Closed` comes with this reason.
    Closing(CloseReason),
}

/// A sender's stream: its own sends, around at most one relay into it.
#[derive(Debug, Default)]
struct SentBytes {
    /// Accepted before any relay into the sender (all of it, if none).
    before: Vec<u8>,
    /// The receiver (index) relayed into it, if any.
    relayed_from: Option<usize>,
    /// Accepted after that relay ended.
    after: Vec<u8>,
}

struct Handle {
    owner: usize,
    kind: Kind,
    token: Token,
    rx: Option<Receiver>,
    tx: Option<Sender>,
    life: Life,
    /// Its `Closed` event has come.
    closed: bool,
    /// The test's end of this transport's FIFO: a reader for a sender, a
    /// writer for a receiver.
    peer: OwnedFd,
    path: PathBuf,
    /// Sender: what it accepted.
    sent: SentBytes,
    /// Sender: frames accepted by `send_frames`.
    frames: u64,
    /// Sender: bytes handed back at `Closed`.
    unsent: Vec<u8>,
    /// Receiver: bytes the test wrote into its FIFO.
    written: Vec<u8>,
    /// Receiver: bytes delivered as `Data`.
    got: Vec<u8>,
    /// Receiver: its relays, each with the length of `got` when it began.
    relays: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
enum Call {
    Send {
        on: usize,
        h: usize,
        len: u8,
    },
    SendFrame {
        on: usize,
        h: usize,
        lp: bool,
    },
    SendFrames {
        on: usize,
        h: usize,
        n: u8,
        lp: bool,
    },
    SendFramed {
        on: usize,
        h: usize,
        n: u8,
        lp: bool,
    },
    Close {
        on: usize,
        h: usize,
    },
    CloseAfterFlush {
        on: usize,
        h: usize,
    },
    SetWatermarks {
        on: usize,
        h: usize,
    },
    Pause {
        on: usize,
        h: usize,
    },
    Resume {
        on: usize,
        h: usize,
    },
    State {
        on: usize,
        h: usize,
    },
    Stats {
        on: usize,
        h: usize,
    },
    Relay {
        on: usize,
        h: usize,
        to: usize,
    },
    Write {
        h: usize,
        len: u8,
    },
    OpenSender {
        on: usize,
    },
    OpenReceiver {
        on: usize,
    },
    Poll {
        on: usize,
    },
}

fn call() -> impl Strategy<Value = Call> {
    let on = 0..2usize;
    let h = any::<usize>();
    let lp = any::<bool>();
    prop_oneof![
        4 => (on.clone(), h, 1..200u8).prop_map(|(on, h, len)| Call::Send { on, h, len }),
        2 => (on.clone(), h, lp).prop_map(|(on, h, lp)| Call::SendFrame { on, h, lp }),
        2 => (on.clone(), h, 0..8u8, lp)
            .prop_map(|(on, h, n, lp)| Call::SendFrames { on, h, n, lp }),
        1 => (on.clone(), h, 0..8u8, lp).prop_map(|(on, h, n, lp)| Call::SendFramed { on, h, n, lp }),
        2 => (on.clone(), h).prop_map(|(on, h)| Call::Close { on, h }),
        1 => (on.clone(), h).prop_map(|(on, h)| Call::CloseAfterFlush { on, h }),
        1 => (on.clone(), h).prop_map(|(on, h)| Call::SetWatermarks { on, h }),
        2 => (on.clone(), h).prop_map(|(on, h)| Call::Pause { on, h }),
        2 => (on.clone(), h).prop_map(|(on, h)| Call::Resume { on, h }),
        1 => (on.clone(), h).prop_map(|(on, h)| Call::State { on, h }),
        1 => (on.clone(), h).prop_map(|(on, h)| Call::Stats { on, h }),
        2 => (on.clone(), h, h).prop_map(|(on, h, to)| Call::Relay { on, h, to }),
        3 => (h, 1..200u8).prop_map(|(h, len)| Call::Write { h, len }),
        1 => on.clone().prop_map(|on| Call::OpenSender { on }),
        1 => on.clone().prop_map(|on| Call::OpenReceiver { on }),
        3 => on.prop_map(|on| Call::Poll { on }),
    ]
}

fn codec(lp: bool) -> Codec {
    if lp {
        Codec::LengthPrefixed
    } else {
        Codec::Lines
    }
}

/// `frames` as the wire carries them in `codec`, written out here rather
/// than by the library's encoder, so a wrong encoder cannot agree with
/// itself: a newline after each line; a `u32` little-endian length
/// before each length-prefixed frame.
fn encoded(codec: Codec, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        match codec {
            Codec::Lines => {
                out.extend_from_slice(f);
                out.push(b'\n');
            }
            Codec::LengthPrefixed => {
                out.extend_from_slice(&(f.len() as u32).to_le_bytes());
                out.extend_from_slice(f);
            }
        }
    }
    out
}

/// The relay a receiver or sender takes part in, as the model knows it.
#[derive(Debug, PartialEq)]
enum Relaying {
    /// None, or one that has certainly ended (an end's `Closed` came).
    No,
    /// One whose ends are both open: it goes on.
    Yes,
    /// One end is closing: the relay ends when that close finishes,
    /// which the test cannot see before its `Closed`.
    Ending,
}

struct World {
    _dir: tempfile::TempDir,
    ps: [Proactor; 2],
    handles: Vec<Handle>,
    by_token: HashMap<Token, usize>,
    events: Events,
    fifos: usize,
    stamp: u8,
}

impl World {
    fn new() -> World {
        let mut w = World {
            _dir: tempfile::tempdir().unwrap(),
            ps: [Proactor::new().unwrap(), Proactor::new().unwrap()],
            handles: Vec::new(),
            by_token: HashMap::new(),
            events: Events::with_capacity(256),
            fifos: 0,
            stamp: 0,
        };
        // Slots 0 and 1 of both proactors, of different kinds.
        w.open(0, Kind::Tx);
        w.open(0, Kind::Tx);
        w.open(1, Kind::Rx);
        w.open(1, Kind::Tx);
        w
    }

    fn open(&mut self, on: usize, kind: Kind) {
        self.fifos += 1;
        let name = format!("f{}", self.fifos);
        let p = &mut self.ps[on];
        let (token, rx, tx, peer, path) = match kind {
            Kind::Tx => {
                let (tx, fd, path) = sender(p, self._dir.path(), &name);
                (tx.token(), None, Some(tx), fd, path)
            }
            Kind::Rx => {
                let (rx, fd, path) = receiver(p, self._dir.path(), &name);
                (rx.token(), Some(rx), None, fd, path)
            }
        };
        // A slot is reused only once its transport has closed.
        for h in self
            .handles
            .iter()
            .filter(|h| h.owner == on && h.token.index == token.index)
        {
            assert!(
                matches!(h.life, Life::Closing(_)),
                "{token:?} took a live slot"
            );
        }
        self.by_token.insert(token, self.handles.len());
        self.handles.push(Handle {
            owner: on,
            kind,
            token,
            rx,
            tx,
            life: Life::Live,
            closed: false,
            peer,
            path,
            sent: SentBytes::default(),
            frames: 0,
            unsent: Vec::new(),
            written: Vec::new(),
            got: Vec::new(),
            relays: Vec::new(),
        });
    }

    /// A handle of `kind` picked by `h`, from either proactor.
    fn pick(&self, h: usize, kind: Kind) -> Option<usize> {
        let of_kind: Vec<usize> = (0..self.handles.len())
            .filter(|&i| self.handles[i].kind == kind)
            .collect();
        (!of_kind.is_empty()).then(|| of_kind[h % of_kind.len()])
    }

    fn tx(&self, i: usize) -> Sender {
        self.handles[i].tx.expect("picked among senders")
    }

    fn rx(&self, i: usize) -> Receiver {
        self.handles[i].rx.expect("picked among receivers")
    }

    fn payload(&mut self, len: u8) -> Vec<u8> {
        self.stamp = self.stamp.wrapping_add(1);
        // Never a newline, so it is also a valid line payload.
        (0..len).map(|i| b'a' + (self.stamp ^ i) % 26).collect()
    }

    /// A later transport of the same proactor has taken this one's slot.
    fn reused(&self, i: usize) -> bool {
        let h = &self.handles[i];
        self.handles[i + 1..]
            .iter()
            .any(|x| x.owner == h.owner && x.token.index == h.token.index)
    }

    /// Whether handle `i` takes calls on proactor `on`: its own and not
    /// closing. A `Flushing` sender is open, so it counts.
    fn open_on(&self, on: usize, i: usize) -> bool {
        let h = &self.handles[i];
        h.owner == on && !matches!(h.life, Life::Closing(_))
    }

    /// The exact error for a call on proactor `on` naming handle `i` that
    /// it does not take (another proactor's, closing or closed, reused).
    fn check_dead<T: std::fmt::Debug>(&self, on: usize, i: usize, r: &Result<T, Error>) {
        let h = &self.handles[i];
        let p = &self.ps[on];
        if h.owner != on {
            assert!(
                matches!(r, Err(Error::Foreign { token, this }) if *token == h.token && *this == p.id()),
                "foreign handle {:?}: {r:?}",
                h.token
            );
        } else if self.reused(i) {
            assert!(
                matches!(r, Err(Error::Stale { token }) if *token == h.token),
                "reused slot {:?}: {r:?}",
                h.token
            );
        } else {
            assert!(
                matches!(r, Err(Error::Closed { token }) if *token == h.token),
                "closed handle {:?}: {r:?}",
                h.token
            );
        }
    }

    /// The relay receiver `i` spliced into a sender, as far as the model
    /// can tell.
    fn rx_relaying(&self, i: usize) -> Relaying {
        match self.handles[i].relays.last() {
            Some(&(_, tx)) => self.relay_state(i, tx),
            None => Relaying::No,
        }
    }

    /// The relay into sender `j`, as far as the model can tell.
    fn tx_relaying(&self, j: usize) -> Relaying {
        match self.handles[j].sent.relayed_from {
            Some(rx) => self.relay_state(rx, j),
            None => Relaying::No,
        }
    }

    fn relay_state(&self, rx: usize, tx: usize) -> Relaying {
        let ends = [&self.handles[rx], &self.handles[tx]];
        if ends.iter().any(|h| h.closed) {
            Relaying::No
        } else if ends.iter().all(|h| !matches!(h.life, Life::Closing(_))) {
            Relaying::Yes
        } else {
            Relaying::Ending
        }
    }

    /// A send-side call on sender `i` through proactor `on` returned `r`;
    /// `bytes` (and `frames` counted frames) went out if it was accepted.
    fn sent(&mut self, on: usize, i: usize, r: Result<(), Error>, bytes: &[u8], frames: u64) {
        if !self.open_on(on, i) {
            return self.check_dead(on, i, &r);
        }
        let token = self.handles[i].token;
        if self.handles[i].life == Life::Flushing {
            // "Further sends fail with Error::Closed."
            assert!(
                matches!(r, Err(Error::Closed { token: t }) if t == token),
                "{r:?}"
            );
            return;
        }
        let relaying = self.tx_relaying(i);
        let h = &mut self.handles[i];
        match (relaying, r) {
            (Relaying::Yes | Relaying::Ending, Err(Error::Relayed { token: t, path }))
                if t == token && path.as_deref() == Some(h.path.as_path()) => {}
            (Relaying::No | Relaying::Ending, Ok(())) => {
                h.frames += frames;
                match h.sent.relayed_from {
                    None => h.sent.before.extend_from_slice(bytes),
                    Some(_) => h.sent.after.extend_from_slice(bytes),
                }
            }
            (relaying, r) => panic!("send on {token:?} ({relaying:?}): {r:?}"),
        }
    }

    fn apply(&mut self, c: Call) {
        match c {
            Call::Send { on, h, len } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                let data = self.payload(len);
                let r = self.ps[on].send(self.tx(i), &data);
                self.sent(on, i, r, &data, 0);
            }
            Call::SendFrame { on, h, lp } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                let data = self.payload(20);
                let r = self.ps[on].send_frames(self.tx(i), codec(lp), &[&data]);
                self.sent(on, i, r, &encoded(codec(lp), &[data]), 1);
            }
            Call::SendFrames { on, h, n, lp } | Call::SendFramed { on, h, n, lp } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                let frames: Vec<Vec<u8>> = (0..n).map(|k| self.payload(k * 9)).collect();
                let wire = encoded(codec(lp), &frames);
                let tx = self.tx(i);
                let (r, counted) = if matches!(c, Call::SendFrames { .. }) {
                    (
                        self.ps[on].send_frames(tx, codec(lp), &frames),
                        frames.len(),
                    )
                } else {
                    // Whole frames already encoded: not counted as frames.
                    (self.ps[on].send_encoded(tx, codec(lp), &wire), 0)
                };
                self.sent(on, i, r, &wire, counted as u64);
            }
            Call::Close { on, h } => {
                let kind = if h % 2 == 0 { Kind::Tx } else { Kind::Rx };
                let Some(i) = self.pick(h / 2, kind) else {
                    return;
                };
                let r = self.ps[on].close(self.handles[i].token);
                if self.open_on(on, i) {
                    assert!(r.is_ok(), "close of an open transport: {r:?}");
                    self.handles[i].life = Life::Closing(CloseReason::Requested);
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::CloseAfterFlush { on, h } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                // A relay into it would leave the flush's end to the bytes
                // the relay happened to move: not modelled.
                if self.open_on(on, i) && self.handles[i].sent.relayed_from.is_some() {
                    return;
                }
                let r = self.ps[on].close_after_flush(self.tx(i));
                if !self.open_on(on, i) {
                    return self.check_dead(on, i, &r);
                }
                assert!(r.is_ok(), "{r:?}");
                let h = &mut self.handles[i];
                // Nothing sent: nothing for a reader to drain, it closes
                // now. Else the pipe holds bytes the test never reads
                // until the end, so it stays open.
                h.life = if h.sent.before.is_empty() {
                    Life::Closing(CloseReason::Flushed)
                } else {
                    Life::Flushing
                };
            }
            Call::SetWatermarks { on, h } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                let r = self.ps[on].set_watermarks(self.tx(i), 1 << 20, 1 << 19);
                if self.open_on(on, i) {
                    assert!(r.is_ok(), "{r:?}");
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::Pause { on, h } | Call::Resume { on, h } => {
                let Some(i) = self.pick(h, Kind::Rx) else {
                    return;
                };
                let rx = self.rx(i);
                let r = if matches!(c, Call::Pause { .. }) {
                    self.ps[on].pause(rx)
                } else {
                    self.ps[on].resume(rx)
                };
                if self.open_on(on, i) {
                    assert!(r.is_ok(), "{r:?}");
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::State { on, h } => {
                let i = h % self.handles.len();
                let r = self.ps[on].state(self.handles[i].token);
                let h = &self.handles[i];
                if h.owner != on || self.reused(i) {
                    return self.check_dead(on, i, &r);
                }
                match (h.life, h.closed) {
                    (Life::Live | Life::Flushing, _) => assert_eq!(r.unwrap(), State::Open),
                    (Life::Closing(_), true) => assert_eq!(r.unwrap(), State::Closed),
                    // Its close may have finished within a call or a poll
                    // whose `Closed` the test has not seen yet.
                    (Life::Closing(_), false) => assert!(
                        matches!(r, Ok(State::Closing | State::Closed)),
                        "{:?}: {r:?}",
                        h.token
                    ),
                }
            }
            Call::Stats { on, h } => {
                let i = h % self.handles.len();
                let r = self.ps[on].stats(self.handles[i].token);
                let h = &self.handles[i];
                if h.owner != on || self.reused(i) {
                    return self.check_dead(on, i, &r);
                }
                match (h.life, h.closed) {
                    (Life::Live | Life::Flushing, _) => {
                        let s = r.unwrap();
                        match h.kind {
                            // Relayed bytes read before the relay began
                            // pass through the queue, uncounted here.
                            Kind::Tx if h.sent.relayed_from.is_none() => {
                                assert_eq!(s.bytes_queued, h.sent.before.len() as u64);
                                assert_eq!(s.frames_out, h.frames);
                            }
                            Kind::Tx => {}
                            Kind::Rx if h.relays.is_empty() => {
                                assert_eq!(s.bytes_read, h.got.len() as u64)
                            }
                            Kind::Rx => {}
                        }
                    }
                    (Life::Closing(_), true) => self.check_dead(on, i, &r),
                    (Life::Closing(_), false) => assert!(
                        r.is_ok() || matches!(r, Err(Error::Closed { token }) if token == h.token),
                        "{r:?}"
                    ),
                }
            }
            Call::Relay { on, h, to } => {
                let (Some(i), Some(j)) = (self.pick(h, Kind::Rx), self.pick(to, Kind::Tx)) else {
                    return;
                };
                let (rx, tx) = (self.rx(i), self.tx(j));
                // The first bad handle, in argument order, names the error.
                if !self.open_on(on, i) {
                    let r = self.ps[on].relay(rx, tx);
                    return self.check_dead(on, i, &r);
                }
                if !self.open_on(on, j) {
                    let r = self.ps[on].relay(rx, tx);
                    return self.check_dead(on, j, &r);
                }
                // Both open on this proactor: the sender's relay is looked
                // at first, then the receiver's. While one ends, the answer
                // depends on a close the test cannot see: not called.
                let want = match (self.tx_relaying(j), self.rx_relaying(i)) {
                    (Relaying::Yes, _) => Some(tx.token()),
                    (Relaying::No, Relaying::Yes) => Some(rx.token()),
                    (Relaying::No, Relaying::No) => None,
                    _ => return,
                };
                // The model follows one relay into each sender, into one
                // not flushing.
                let h = &self.handles[j];
                if want.is_none() && (h.sent.relayed_from.is_some() || h.life == Life::Flushing) {
                    return;
                }
                let r = self.ps[on].relay(rx, tx);
                match want {
                    Some(token) => {
                        let named = if token == tx.token() { j } else { i };
                        let path = Some(self.handles[named].path.clone());
                        assert!(
                            matches!(&r, Err(Error::Relayed { token: t, path: p }) if *t == token && *p == path),
                            "{r:?}"
                        )
                    }
                    None => {
                        assert!(r.is_ok(), "relay: {r:?}");
                        let at = self.handles[i].got.len();
                        self.handles[i].relays.push((at, j));
                        self.handles[j].sent.relayed_from = Some(i);
                    }
                }
            }
            Call::Write { h, len } => {
                let Some(i) = self.pick(h, Kind::Rx) else {
                    return;
                };
                let data = self.payload(len);
                let h = &mut self.handles[i];
                // A closing receiver may have no reader left: the FIFO
                // would refuse (EPIPE).
                if h.life != Life::Live {
                    return;
                }
                match nix::unistd::write(&h.peer, &data) {
                    Ok(n) => h.written.extend_from_slice(&data[..n]),
                    Err(Errno::EAGAIN) => {}
                    Err(e) => panic!("write: {e}"),
                }
            }
            Call::OpenSender { on } => self.open(on, Kind::Tx),
            Call::OpenReceiver { on } => self.open(on, Kind::Rx),
            Call::Poll { on } => self.poll(on, Duration::ZERO),
        }
    }

    fn poll(&mut self, on: usize, timeout: Duration) {
        self.ps[on].poll(&mut self.events, Some(timeout)).unwrap();
        let id = self.ps[on].id();
        for ev in &self.events {
            let token = ev.token();
            assert_eq!(
                token.proactor, id,
                "an event carries a foreign token: {ev:?}"
            );
            let i = self.by_token[&token];
            assert_eq!(self.handles[i].owner, on);
            // `Relayed` is about the bytes reaching its sender's pipe; the
            // receiver they were read from may have closed since.
            let about = match ev {
                Event::Relayed { to, .. } => self.by_token[&to.token()],
                _ => i,
            };
            assert!(!self.handles[about].closed, "an event after Closed: {ev:?}");
            match ev {
                Event::Data { data, .. } => {
                    // A relaying receiver's bytes go to its sender.
                    let relaying = match self.handles[i].relays.last() {
                        Some(&(_, tx)) => !self.handles[tx].closed,
                        None => false,
                    };
                    assert!(!relaying, "Data while relaying: {ev:?}");
                    self.handles[i].got.extend_from_slice(data);
                }
                Event::Closed { reason, unsent, .. } => {
                    let h = &mut self.handles[i];
                    assert_eq!(h.life, Life::Closing(reason), "{:?}", h.token);
                    assert!(h.kind == Kind::Tx || unsent.is_empty());
                    if reason == CloseReason::Flushed {
                        assert!(unsent.is_empty(), "flushed, yet {} unsent", unsent.len());
                    }
                    h.unsent = unsent.to_vec();
                    h.closed = true;
                }
                Event::Error { error, .. } => panic!("{:?}: {error}", self.handles[i].path),
                Event::PeerGone(_) | Event::PeerBack(_) | Event::Detached { .. } => {
                    panic!("the test holds every peer: {ev:?}")
                }
                _ => {}
            }
        }
    }

    /// Polls both proactors until `done` holds, for at most 30 s.
    fn settle(&mut self, what: &str, done: impl Fn(&World) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done(self) {
            if std::time::Instant::now() >= deadline {
                let model: Vec<String> = self
                    .handles
                    .iter()
                    .map(|h| {
                        let p = &self.ps[h.owner];
                        format!(
                            "{:?} {:?} {:?} closed {}: {:?} {:?}",
                            h.kind,
                            h.token,
                            h.life,
                            h.closed,
                            p.state(h.token),
                            p.stats(h.token)
                        )
                    })
                    .collect();
                panic!("not settled: {what}\n{}", model.join("\n"));
            }
            self.poll(0, Duration::from_millis(1));
            self.poll(1, Duration::from_millis(1));
        }
    }

    /// Everything a receiver's FIFO still holds, read by a fresh reader
    /// (the test's writer keeps the pipe).
    fn left_in(&self, i: usize) -> Vec<u8> {
        drain(&open_cloexec(
            &self.handles[i].path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        ))
    }

    /// Lets every byte flow, closes every transport, and checks that every
    /// FIFO holds exactly what went through its own handle.
    fn check(mut self) {
        // Everything sent is written; every receiver's pipe is emptied
        // (read, or spliced into its relay's sender); every close ends.
        for i in 0..self.handles.len() {
            if self.handles[i].kind == Kind::Rx && self.handles[i].life == Life::Live {
                let rx = self.rx(i);
                self.ps[self.handles[i].owner].resume(rx).unwrap();
            }
        }
        self.settle("bytes flowing", |w| {
            w.handles.iter().all(|h| match (h.kind, h.life) {
                (_, Life::Closing(_)) => h.closed,
                (Kind::Tx, _) => w.ps[h.owner].stats(h.token).unwrap().bytes_unsent() == 0,
                (Kind::Rx, _) if h.relays.is_empty() => h.got.len() == h.written.len(),
                (Kind::Rx, _) => common::pipe_bytes(&h.peer) == 0,
            })
        });
        // Every receiver closes first (ending its relays), then every
        // sender: `close`, or a flushing one once the test drains its pipe.
        let mut drained: Vec<Vec<u8>> = vec![Vec::new(); self.handles.len()];
        for kind in [Kind::Rx, Kind::Tx] {
            for (h, drained) in self.handles.iter_mut().zip(&mut drained) {
                if h.kind != kind || matches!(h.life, Life::Closing(_)) {
                    continue;
                }
                if h.life == Life::Flushing {
                    *drained = drain(&h.peer);
                    h.life = Life::Closing(CloseReason::Flushed);
                } else {
                    self.ps[h.owner].close(h.token).unwrap();
                    h.life = Life::Closing(CloseReason::Requested);
                }
            }
            self.settle("closing", |w| {
                w.handles.iter().all(|h| h.kind != kind || h.closed)
            });
        }
        // Every call on every handle, now closed, from both proactors:
        // `Closed` (a reused slot `Stale`, another proactor's `Foreign`),
        // and a closed handle's state is `Closed`.
        for i in 0..self.handles.len() {
            let kind = self.handles[i].kind;
            // Its place among handles of its kind, as `pick` counts.
            let k = self.handles[..i].iter().filter(|h| h.kind == kind).count();
            for on in 0..2 {
                let mut calls = vec![
                    Call::State { on, h: i },
                    Call::Stats { on, h: i },
                    Call::Close {
                        on,
                        h: 2 * k + usize::from(kind == Kind::Rx),
                    },
                ];
                calls.extend(match kind {
                    Kind::Tx => vec![
                        Call::Send { on, h: k, len: 5 },
                        Call::SendFrames {
                            on,
                            h: k,
                            n: 2,
                            lp: true,
                        },
                        Call::CloseAfterFlush { on, h: k },
                        Call::SetWatermarks { on, h: k },
                    ],
                    Kind::Rx => vec![
                        Call::Pause { on, h: k },
                        Call::Resume { on, h: k },
                        Call::Relay { on, h: k, to: 0 },
                    ],
                });
                for c in calls {
                    self.apply(c);
                }
            }
        }
        // Senders: the pipe, then what came back, is the stream accepted;
        // a relayed stream sits between what came before and after it.
        let mut relayed: HashMap<usize, Vec<u8>> = HashMap::new();
        for (i, h) in self
            .handles
            .iter()
            .enumerate()
            .filter(|(_, h)| h.kind == Kind::Tx)
        {
            let mut all = std::mem::take(&mut drained[i]);
            all.extend(drain(&h.peer));
            all.extend_from_slice(&h.unsent);
            let (before, after) = (&h.sent.before, &h.sent.after);
            assert!(
                all.len() >= before.len() + after.len()
                    && all.starts_with(before)
                    && all.ends_with(after),
                "sender {:?}: {} bytes in the pipe and handed back for {} + {} sent",
                h.token,
                all.len(),
                before.len(),
                after.len()
            );
            let middle = all[before.len()..all.len() - after.len()].to_vec();
            match h.sent.relayed_from {
                Some(_) => {
                    relayed.insert(i, middle);
                }
                None => assert!(
                    middle.is_empty(),
                    "sender {:?}: {} bytes extra",
                    h.token,
                    middle.len()
                ),
            }
        }
        // Receivers: `Data` up to each relay, the relayed stream, `Data`
        // after it, ..., then what is left in the pipe: what was written.
        for i in (0..self.handles.len()).filter(|&i| self.handles[i].kind == Kind::Rx) {
            let h = &self.handles[i];
            let mut all = Vec::new();
            let mut at = 0;
            for &(from, tx) in &h.relays {
                all.extend_from_slice(&h.got[at..from]);
                all.extend_from_slice(&relayed[&tx]);
                at = from;
            }
            all.extend_from_slice(&h.got[at..]);
            all.extend(self.left_in(i));
            assert!(
                all == h.written,
                "receiver {:?}: {} bytes delivered, relayed and left for {} written",
                h.token,
                all.len(),
                h.written.len()
            );
        }
    }
}

/// Cases per run: `PROPTEST_CASES` if set (CI raises it), else a number
/// a debug build runs in seconds.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Failing cases are kept, and run first next time.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/foreign_handles.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_calls_with_random_handles(calls in proptest::collection::vec(call(), 1..60)) {
        let mut w = World::new();
        for c in calls {
            w.apply(c);
        }
        w.check();
    }
}
