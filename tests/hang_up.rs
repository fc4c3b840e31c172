//! A FIFO's multishot read never reports EOF: the proactor learns that a
//! multishot receiver's writers left from a hang-up poll of its own. Each
//! hang-up is reported once, after every byte, however many come at
//! once, across reconnects, pauses and closes; and a receiver back on its
//! reopened end holds what an idle one holds, no more.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use ringpipe::{CloseReason, Event, Events, FifoOptions, Proactor, Receiver, State, Token};

/// Opens every FIFO given for writing, writes each its payload (round
/// `argv[1]`, FIFO number `i`), and exits: every write end closes at once.
const WRITE_ALL_AND_EXIT_PY: &str = r#"
import os, signal, sys
signal.alarm(60)
r = int(sys.argv[1])
fds = [(int(a.split('=')[0]), os.open(a.split('=', 1)[1], os.O_WRONLY | os.O_CLOEXEC)) for a in sys.argv[2:]]
for i, fd in fds:
    data = b'%d:%d;' % (r, i) * 150
    while data:
        data = data[os.write(fd, data):]
os._exit(0)
"#;

/// What [`WRITE_ALL_AND_EXIT_PY`] writes into FIFO `i` in round `r`.
fn payload(r: usize, i: usize) -> Vec<u8> {
    format!("{r}:{i};").repeat(150).into_bytes()
}

/// Runs one writer process over `fifos` (number, path) and waits for it.
fn write_all_and_exit(r: usize, fifos: &[(usize, PathBuf)]) {
    let args: Vec<String> = fifos
        .iter()
        .map(|(i, path)| format!("{i}={}", path.display()))
        .collect();
    let mut cmd = python(WRITE_ALL_AND_EXIT_PY, &[&r.to_string()]);
    cmd.args(&args);
    ChildGuard::spawn(&mut cmd).wait_success(Duration::from_secs(60));
}

/// `n` FIFOs in `dir`, numbered, each with a multishot receiver
/// (persistent where `persistent` says so).
fn open_receivers(
    p: &mut Proactor,
    dir: &std::path::Path,
    n: usize,
    persistent: impl Fn(usize) -> bool,
) -> (Vec<(usize, PathBuf)>, Vec<Receiver>) {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("f{i}"));
            let opts = FifoOptions::new().create(true).persistent(persistent(i));
            let rx = p.open_receiver(&path, &opts).unwrap();
            ((i, path), rx)
        })
        .unzip()
}

/// Operations an idle receiver holds on this backend (its read, and on
/// io_uring its hang-up poll): measured once, with `receivers` idle ones
/// open and nothing else.
fn per_idle_receiver(p: &Proactor, receivers: usize) -> usize {
    let s = p.snapshot();
    assert_eq!(s.transport_ops % receivers, 0, "{s:?}");
    s.transport_ops / receivers
}

/// With every receiver idle, the ring holds `per` operations for each of
/// `receivers` and nothing else.
fn assert_idle_ops(p: &Proactor, receivers: usize, per: usize) {
    let s = p.snapshot();
    assert_eq!(s.transport_ops, receivers * per, "{s:?}");
    assert_eq!(s.ops_in_flight, receivers * per, "{s:?}");
}

/// Once the last receiver is closed and its completions are in, nothing
/// is left in flight.
fn assert_nothing_in_flight(p: &mut Proactor, ev: &mut Events) {
    p.poll(ev, Some(Duration::from_millis(20))).unwrap();
    assert_eq!(p.snapshot().ops_in_flight, 0);
}

#[test]
fn two_hundred_writers_leave_in_one_go_each_reported_once() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        const N: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(1024);
        // The first half closes at EOF, the second half reopens.
        let (fifos, rxs) = open_receivers(&mut p, dir.path(), N, |i| i >= N / 2);
        let index: HashMap<Token, usize> = rxs
            .iter()
            .enumerate()
            .map(|(i, rx)| (rx.token(), i))
            .collect();
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        let per = per_idle_receiver(&p, N);
        assert_idle_ops(&p, N, per);

        // Round 0: one process writes into all 200 and exits.
        write_all_and_exit(0, &fifos);
        let mut got = vec![Vec::new(); N];
        let mut gone = vec![0; N];
        let mut closed = vec![0; N];
        let mut done = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(60), |e| {
            match e {
                Event::Data { from, data } => got[index[&from.token()]].extend_from_slice(data),
                Event::PeerGone(t) => {
                    let i = index[t];
                    assert!(got[i] == payload(0, i), "FIFO {i}: gone before its bytes");
                    gone[i] += 1;
                    done += usize::from(i >= N / 2);
                }
                Event::Closed { token, reason, .. } => {
                    let i = index[token];
                    assert_eq!(*reason, CloseReason::Eof, "FIFO {i}");
                    assert!(got[i] == payload(0, i), "FIFO {i}: closed before its bytes");
                    closed[i] += 1;
                    done += 1;
                }
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            done == N
        });
        // Nothing more comes: each hang-up was reported once.
        for _ in 0..3 {
            p.poll(&mut ev, Some(Duration::from_millis(50))).unwrap();
            let first = ev.iter().next().map(|e| format!("{e:?}"));
            assert!(first.is_none(), "after every hang-up: {first:?}");
        }
        for i in 0..N {
            assert!(got[i] == payload(0, i), "FIFO {i}: bytes differ");
            match i < N / 2 {
                // A one-shot receiver reports its writer gone, then closes.
                true => assert_eq!((closed[i], gone[i]), (1, 1), "FIFO {i}"),
                false => assert_eq!((closed[i], gone[i]), (0, 1), "FIFO {i}"),
            }
        }
        // The persistent half reopened: idle again on their new ends.
        assert_idle_ops(&p, N / 2, per);

        // Round 1, on the reopened ends: their hang-up polls armed again.
        write_all_and_exit(1, &fifos[N / 2..]);
        let mut got = vec![Vec::new(); N];
        let (mut back, mut gone) = (vec![0; N], vec![0; N]);
        let mut done = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(60), |e| {
            match e {
                Event::Data { from, data } => got[index[&from.token()]].extend_from_slice(data),
                Event::PeerBack(t) => back[index[t]] += 1,
                Event::PeerGone(t) => {
                    let i = index[t];
                    assert!(got[i] == payload(1, i), "FIFO {i}: gone before its bytes");
                    gone[i] += 1;
                    done += 1;
                }
                other => panic!("{other:?}"),
            }
            done == N / 2
        });
        p.poll(&mut ev, Some(Duration::from_millis(50))).unwrap();
        assert!(ev.is_empty(), "after every hang-up");
        for i in N / 2..N {
            assert!(got[i] == payload(1, i), "FIFO {i}: bytes differ");
            assert_eq!((back[i], gone[i]), (1, 1), "FIFO {i}");
            assert_eq!(p.state(rxs[i]).unwrap(), State::PeerGone);
        }
        for rx in &rxs[N / 2..] {
            p.close(*rx).unwrap();
        }
        let mut closed = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            closed += usize::from(matches!(e, Event::Closed { .. }));
            closed == N / 2
        });
        // All closed: nothing left in flight.
        assert_nothing_in_flight(&mut p, &mut ev);
    });
}

#[test]
fn a_persistent_receiver_paused_and_reconnected_hears_each_writer_once() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        const WRITERS: usize = 40;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        let rx = p
            .open_receiver(&path, &FifoOptions::new().create(true).persistent(true))
            .unwrap();
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        let per = per_idle_receiver(&p, 1);
        let fifos = [(0, path)];
        let (mut gone, mut back) = (0, 0);
        for w in 0..WRITERS {
            // Every other writer comes and goes while the receiver is
            // paused: its bytes and its hang-up wait for `resume`.
            let paused = w % 2 == 1;
            if paused {
                p.pause(rx).unwrap();
                p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
                assert!(ev.is_empty(), "writer {w}");
            }
            write_all_and_exit(w, &fifos);
            if paused {
                p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
                assert!(ev.is_empty(), "writer {w}: events while paused");
                p.resume(rx).unwrap();
            }
            let mut got = Vec::new();
            poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| match e {
                Event::Data { data, .. } => {
                    got.extend_from_slice(data);
                    false
                }
                Event::PeerBack(_) => {
                    back += 1;
                    false
                }
                Event::PeerGone(_) => {
                    gone += 1;
                    true
                }
                other => panic!("writer {w}: {other:?}"),
            });
            assert!(got == payload(w, 0), "writer {w}: bytes differ");
            assert_eq!((gone, back), (w + 1, w), "writer {w}");
            // Idle on its reopened end: as idle as at the start.
            p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
            assert!(ev.is_empty(), "writer {w}: {} events after", ev.len());
            assert_idle_ops(&p, 1, per);
        }
        assert_eq!(p.stats(rx).unwrap().reconnects, WRITERS as u64 - 1);
    });
}

#[test]
fn a_receiver_closed_as_its_writer_leaves_reports_nothing_more() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        const ROUNDS: usize = 30;
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        // A receiver that stays, idle all along.
        let stay_path = dir.path().join("stay");
        let stay = p
            .open_receiver(&stay_path, &FifoOptions::new().create(true))
            .unwrap();
        let _stay_writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&stay_path)
            .unwrap();
        for r in 0..ROUNDS {
            let path = dir.path().join(format!("f{r}"));
            mkfifo(&path);
            // The test keeps the pipe's read side open too, so the
            // receiver's file outlives its close.
            let keep = nonblocking_reader(&path);
            // Blocking, as the proactor's own read ends: a read with no
            // writer yet waits instead of reading EOF.
            nix::fcntl::fcntl(
                &keep,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
            )
            .unwrap();
            let rx: Receiver = p
                .receiver_from_fd(keep.try_clone().unwrap(), ringpipe::ReadMode::Multishot)
                .unwrap();
            p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
            let per = per_idle_receiver(&p, 2);
            assert_idle_ops(&p, 2, per);
            // The writer writes and leaves; the receiver is closed before
            // the proactor hears of either.
            write_all_and_exit(r, &[(0, path)]);
            p.close(rx).unwrap();
            let mut closed = 0;
            poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
                match e {
                    // Read before the close took effect: still delivered.
                    Event::Data { from, .. } => assert_eq!(*from, rx),
                    Event::Closed { token, reason, .. } => {
                        assert_eq!((*token, *reason), (rx.token(), CloseReason::Requested));
                        closed += 1;
                    }
                    other => panic!("round {r}: {other:?}"),
                }
                closed == 1
            });
            // Nothing more about it, and the one that stays is as it was.
            // Its hang-up, still there (its file lives on here), no longer
            // wakes the proactor: each idle poll waits in one or two
            // enters.
            let enters = p.snapshot().enters;
            for _ in 0..2 {
                p.poll(&mut ev, Some(Duration::from_millis(10))).unwrap();
                let first = ev.iter().next().map(|e| format!("{e:?}"));
                assert!(first.is_none(), "round {r}: after Closed: {first:?}");
            }
            let spent = p.snapshot().enters - enters;
            assert!(spent <= 4, "round {r}: {spent} enters for two idle polls");
            assert_eq!(p.state(stay).unwrap(), State::Open);
            assert_idle_ops(&p, 1, per);
            drop(keep);
        }
        p.close(stay).unwrap();
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            matches!(e, Event::Closed { .. })
        });
        assert_nothing_in_flight(&mut p, &mut ev);
    });
}

#[test]
fn writers_leaving_one_after_another_each_close_their_receiver() {
    let _serial = serial();
    watchdog(Duration::from_secs(120), || {
        const N: usize = 12;
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        let (fifos, rxs) = open_receivers(&mut p, dir.path(), N, |_| false);
        p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
        let per = per_idle_receiver(&p, N);
        // One writer at a time: each hang-up reaches the poll armed at
        // the start, with the others' receivers closed around it.
        for i in 0..N {
            write_all_and_exit(i, &fifos[i..=i]);
            let mut got = Vec::new();
            poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| match e {
                Event::Data { from, data } => {
                    assert_eq!(*from, rxs[i]);
                    got.extend_from_slice(data);
                    false
                }
                Event::PeerGone(t) => {
                    assert_eq!(*t, rxs[i].token());
                    false
                }
                Event::Closed { token, reason, .. } => {
                    assert_eq!((*token, *reason), (rxs[i].token(), CloseReason::Eof));
                    true
                }
                other => panic!("writer {i}: {other:?}"),
            });
            assert!(got == payload(i, i), "writer {i}: bytes differ");
            if i + 1 < N {
                assert_idle_ops(&p, N - i - 1, per);
            }
        }
        assert_nothing_in_flight(&mut p, &mut ev);
    });
}
