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

use common::watchdog;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use proptest::prelude::*;
use ringpipe::frame::Codec;
use ringpipe::{
    Error, Event, Events, FanOutPolicy, FifoOptions, Proactor, Receiver, Sender, State, Token,
};

fn open_cloexec(path: &Path, flags: OFlag) -> OwnedFd {
    open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
}

/// Everything a non-blocking read end holds now.
fn drain(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(Errno::EAGAIN) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}"),
        }
    }
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
        assert!(is_foreign(&pb.send_frame(a0, Codec::Lines, b"x"), &pb));
        assert!(is_foreign(&pb.send_frames(a0, Codec::Lines, &[b"x"]), &pb));
        assert!(is_foreign(&pb.send_framed(a0, Codec::Lines, b"x\n"), &pb));
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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Rx,
    Tx,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    Live,
    /// `close_after_flush` was called: sends are refused, it may close.
    Flushing,
    /// `close` was called (or it finished closing).
    Closed,
}

struct Handle {
    owner: usize,
    kind: Kind,
    token: Token,
    rx: Option<Receiver>,
    tx: Option<Sender>,
    life: Life,
    /// The test's end of this transport's FIFO: a reader for a sender, a
    /// writer for a receiver.
    peer: OwnedFd,
    path: PathBuf,
    /// Sender: bytes accepted by successful sends. Receiver: bytes the
    /// test wrote into its FIFO.
    expected: Vec<u8>,
    /// Receiver: bytes delivered as Data. Sender: unsent bytes at Closed.
    got: Vec<u8>,
    paused: bool,
}

#[derive(Debug, Clone)]
enum Call {
    Send { on: usize, h: usize, len: u8 },
    SendFrame { on: usize, h: usize },
    SendFrames { on: usize, h: usize, n: u8 },
    Close { on: usize, h: usize },
    CloseAfterFlush { on: usize, h: usize },
    SetWatermarks { on: usize, h: usize },
    Pause { on: usize, h: usize },
    Resume { on: usize, h: usize },
    State { on: usize, h: usize },
    Stats { on: usize, h: usize },
    Relay { on: usize, h: usize, to: usize },
    Write { h: usize, len: u8 },
    OpenSender { on: usize },
    OpenReceiver { on: usize },
    Poll { on: usize },
}

fn call() -> impl Strategy<Value = Call> {
    let on = 0..2usize;
    let h = any::<usize>();
    prop_oneof![
        4 => (on.clone(), h, 1..200u8).prop_map(|(on, h, len)| Call::Send { on, h, len }),
        2 => (on.clone(), h).prop_map(|(on, h)| Call::SendFrame { on, h }),
        2 => (on.clone(), h, 0..8u8).prop_map(|(on, h, n)| Call::SendFrames { on, h, n }),
        2 => (on.clone(), h).prop_map(|(on, h)| Call::Close { on, h }),
        1 => (on.clone(), h).prop_map(|(on, h)| Call::CloseAfterFlush { on, h }),
        1 => (on.clone(), h).prop_map(|(on, h)| Call::SetWatermarks { on, h }),
        2 => (on.clone(), h).prop_map(|(on, h)| Call::Pause { on, h }),
        2 => (on.clone(), h).prop_map(|(on, h)| Call::Resume { on, h }),
        1 => (on.clone(), h).prop_map(|(on, h)| Call::State { on, h }),
        1 => (on.clone(), h).prop_map(|(on, h)| Call::Stats { on, h }),
        1 => (on.clone(), h, h).prop_map(|(on, h, to)| Call::Relay { on, h, to }),
        3 => (h, 1..200u8).prop_map(|(h, len)| Call::Write { h, len }),
        1 => on.clone().prop_map(|on| Call::OpenSender { on }),
        1 => on.clone().prop_map(|on| Call::OpenReceiver { on }),
        3 => on.prop_map(|on| Call::Poll { on }),
    ]
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
        self.by_token.insert(token, self.handles.len());
        self.handles.push(Handle {
            owner: on,
            kind,
            token,
            rx,
            tx,
            life: Life::Live,
            peer,
            path,
            expected: Vec::new(),
            got: Vec::new(),
            paused: false,
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

    /// The documented answer for a call on proactor `on` with handle `i`
    /// whose own transport is no longer live.
    fn check_dead<T: std::fmt::Debug>(&self, on: usize, i: usize, r: &Result<T, Error>) {
        let h = &self.handles[i];
        let p = &self.ps[on];
        if h.owner != on {
            assert!(is_foreign(r, p), "foreign handle {:?}: {r:?}", h.token);
        } else {
            assert!(
                matches!(r, Err(Error::Closed { token } | Error::Stale { token }) if *token == h.token),
                "closed handle {:?}: {r:?}",
                h.token
            );
        }
    }

    fn apply(&mut self, c: Call) {
        match c {
            Call::SendFrames { on, h, n } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                let frames: Vec<Vec<u8>> = (0..n).map(|k| self.payload(k * 9)).collect();
                let tx = self.tx(i);
                let r = self.ps[on].send_frames(tx, Codec::Lines, &frames);
                let h = &mut self.handles[i];
                if h.owner == on && h.life == Life::Live {
                    assert!(r.is_ok(), "send_frames on a live sender: {r:?}");
                    for frame in &frames {
                        h.expected.extend_from_slice(frame);
                        h.expected.push(b'\n');
                    }
                } else if h.owner == on && h.life == Life::Flushing {
                    assert!(
                        matches!(r, Err(Error::Closed { .. } | Error::Stale { .. })),
                        "{r:?}"
                    );
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::Send { on, h, .. } | Call::SendFrame { on, h } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                let len = if let Call::Send { len, .. } = c {
                    len
                } else {
                    20
                };
                let data = self.payload(len);
                let framed = matches!(c, Call::SendFrame { .. });
                let tx = self.tx(i);
                let r = if framed {
                    self.ps[on].send_frame(tx, Codec::Lines, &data)
                } else {
                    self.ps[on].send(tx, &data)
                };
                let h = &mut self.handles[i];
                if h.owner == on && h.life == Life::Live {
                    assert!(r.is_ok(), "send on a live sender: {r:?}");
                    h.expected.extend_from_slice(&data);
                    if framed {
                        h.expected.push(b'\n');
                    }
                } else if h.owner == on && h.life == Life::Flushing {
                    assert!(
                        matches!(r, Err(Error::Closed { .. } | Error::Stale { .. })),
                        "{r:?}"
                    );
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::Close { on, h } => {
                let kind = if h % 2 == 0 { Kind::Tx } else { Kind::Rx };
                let Some(i) = self.pick(h / 2, kind) else {
                    return;
                };
                let r = self.ps[on].close(self.handles[i].token);
                let h = &mut self.handles[i];
                if h.owner == on && h.life == Life::Live {
                    assert!(r.is_ok(), "close of a live transport: {r:?}");
                    h.life = Life::Closed;
                } else if h.owner == on && h.life == Life::Flushing {
                    // It may have finished flushing already.
                    assert!(
                        r.is_ok() || matches!(r, Err(Error::Closed { .. } | Error::Stale { .. })),
                        "{r:?}"
                    );
                    h.life = Life::Closed;
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::CloseAfterFlush { on, h } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                let r = self.ps[on].close_after_flush(self.tx(i));
                let h = &mut self.handles[i];
                if h.owner == on && h.life == Life::Live {
                    assert!(r.is_ok(), "{r:?}");
                    h.life = Life::Flushing;
                } else if h.owner == on && h.life == Life::Flushing {
                    assert!(
                        r.is_ok() || matches!(r, Err(Error::Closed { .. } | Error::Stale { .. })),
                        "{r:?}"
                    );
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::SetWatermarks { on, h } => {
                let Some(i) = self.pick(h, Kind::Tx) else {
                    return;
                };
                let r = self.ps[on].set_watermarks(self.tx(i), 1 << 20, 1 << 19);
                let h = &self.handles[i];
                if h.owner == on && h.life != Life::Closed {
                    assert!(r.is_ok() || h.life == Life::Flushing, "{r:?}");
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::Pause { on, h } | Call::Resume { on, h } => {
                let Some(i) = self.pick(h, Kind::Rx) else {
                    return;
                };
                let pause = matches!(c, Call::Pause { .. });
                let rx = self.rx(i);
                let r = if pause {
                    self.ps[on].pause(rx)
                } else {
                    self.ps[on].resume(rx)
                };
                let h = &mut self.handles[i];
                if h.owner == on && h.life == Life::Live {
                    assert!(r.is_ok(), "{r:?}");
                    h.paused = pause;
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::State { on, h } => {
                let i = h % self.handles.len();
                let r = self.ps[on].state(self.handles[i].token);
                let h = &self.handles[i];
                match (h.owner == on, h.life) {
                    (false, _) => assert!(is_foreign(&r, &self.ps[on]), "{r:?}"),
                    (true, Life::Live) => assert_eq!(r.unwrap(), State::Open),
                    (true, _) => assert!(
                        matches!(
                            r,
                            Ok(State::Open | State::Closing | State::Closed)
                                | Err(Error::Stale { .. })
                        ),
                        "{r:?}"
                    ),
                }
            }
            Call::Stats { on, h } => {
                let i = h % self.handles.len();
                let r = self.ps[on].stats(self.handles[i].token);
                let h = &self.handles[i];
                match (h.owner == on, h.life) {
                    (false, _) => assert!(is_foreign(&r, &self.ps[on]), "{r:?}"),
                    (true, Life::Live) if h.kind == Kind::Tx => {
                        assert_eq!(r.unwrap().bytes_queued, h.expected.len() as u64)
                    }
                    (true, Life::Live) => assert!(r.is_ok(), "{r:?}"),
                    (true, _) => assert!(
                        r.is_ok() || matches!(r, Err(Error::Closed { .. } | Error::Stale { .. })),
                        "{r:?}"
                    ),
                }
            }
            Call::Relay { on, h, to } => {
                // Only foreign pairs: a relay between live transports of one
                // proactor moves bytes between FIFOs, which this model leaves
                // to tests/relay.rs.
                let (Some(i), Some(j)) = (self.pick(h, Kind::Rx), self.pick(to, Kind::Tx)) else {
                    return;
                };
                let (hi, hj) = (&self.handles[i], &self.handles[j]);
                if hi.owner == on && hj.owner == on {
                    return;
                }
                let r = self.ps[on].relay(self.rx(i), self.tx(j));
                // The first bad handle, in argument order, names the error.
                if hi.owner == on && hi.life == Life::Live {
                    assert!(is_foreign(&r, &self.ps[on]), "{r:?}");
                } else {
                    self.check_dead(on, i, &r);
                }
            }
            Call::Write { h, len } => {
                let Some(i) = self.pick(h, Kind::Rx) else {
                    return;
                };
                let data = self.payload(len);
                let h = &mut self.handles[i];
                // Bytes for a closed receiver stay in its pipe, out of the model.
                if h.life != Life::Live {
                    return;
                }
                match nix::unistd::write(&h.peer, &data) {
                    Ok(n) => h.expected.extend_from_slice(&data[..n]),
                    Err(Errno::EAGAIN) => {}
                    Err(e) => panic!("write: {e}"),
                }
            }
            Call::OpenSender { on } => self.open(on, Kind::Tx),
            Call::OpenReceiver { on } => self.open(on, Kind::Rx),
            Call::Poll { on } => self.poll(on),
        }
    }

    fn poll(&mut self, on: usize) {
        self.ps[on]
            .poll(&mut self.events, Some(Duration::ZERO))
            .unwrap();
        let id = self.ps[on].id();
        for ev in &self.events {
            let token = ev.token();
            assert_eq!(
                token.proactor, id,
                "an event carries a foreign token: {ev:?}"
            );
            let i = self.by_token[&token];
            let h = &mut self.handles[i];
            assert_eq!(h.owner, on);
            match ev {
                Event::Data { data, .. } => h.got.extend_from_slice(data),
                Event::Closed { unsent, .. } => {
                    h.got.extend_from_slice(unsent);
                    h.life = Life::Closed;
                }
                Event::Error { error, .. } => panic!("{:?}: {error}", h.path),
                _ => {}
            }
        }
    }

    /// Lets everything settle, then checks every FIFO holds exactly what
    /// went through its own handle.
    fn check(mut self) {
        for i in 0..self.handles.len() {
            if self.handles[i].kind == Kind::Rx && self.handles[i].life == Life::Live {
                let rx = self.rx(i);
                self.ps[self.handles[i].owner].resume(rx).unwrap();
            }
        }
        for _ in 0..200 {
            self.poll(0);
            self.poll(1);
            let settled = self.handles.iter().all(|h| match (h.kind, h.life) {
                (Kind::Rx, Life::Live) => h.got.len() >= h.expected.len(),
                (Kind::Tx, Life::Live | Life::Flushing) => self.ps[h.owner]
                    .stats(h.token)
                    .map_or(true, |s| s.bytes_unsent() == 0),
                _ => true,
            });
            if settled {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for h in &self.handles {
            match h.kind {
                Kind::Rx if h.life == Life::Live => {
                    assert_eq!(h.got, h.expected, "receiver {:?}", h.token)
                }
                // Closed: what it delivered is a prefix of what was written.
                Kind::Rx => assert!(h.expected.starts_with(&h.got), "receiver {:?}", h.token),
                Kind::Tx => {
                    let mut in_pipe = drain(&h.peer);
                    if h.life == Life::Closed {
                        // Written, then handed back unsent at Closed.
                        in_pipe.extend_from_slice(&h.got);
                        assert!(h.expected.starts_with(&in_pipe), "sender {:?}", h.token);
                    } else {
                        assert_eq!(in_pipe, h.expected, "sender {:?}", h.token);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
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
