//! What `io_uring_enter`s cost: one per ping-pong round trip with
//! `Builder::echo_hold` where the kernel can hold a wait (the echo's write
//! and the wait for the next request go in one enter), every byte exact
//! either way; and the ring fd registered for cheaper enters, given back
//! when the proactor goes.

mod common;

use std::time::Duration;

use common::*;
use ringpipe::{Builder, Event, Events, FifoOptions, Proactor, ReadMode};

/// The client: writes a 64-byte request to `argv[1]`, reads the 64-byte
/// echo from `argv[2]`, `argv[3]` times, checking each, then leaves.
const CLIENT_PY: &str = r#"
import os, sys, signal
signal.alarm(60)
req_path, resp_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
resp = os.open(resp_path, os.O_RDONLY | os.O_NONBLOCK)
os.set_blocking(resp, True)
req = os.open(req_path, os.O_WRONLY)
for i in range(rounds):
    msg = ("%08d" % i).ljust(63).encode() + b"\n"
    assert os.write(req, msg) == 64
    got = b""
    while len(got) < 64:
        got += os.read(resp, 64 - len(got))
    assert got == msg, (got, msg)
"#;

/// Runs `rounds` round trips against the client; returns the enters made
/// from the end of round `skip` to the end of the last.
fn ping_pong(builder: Builder, rounds: usize, skip: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let (req, resp) = (fifo_path(dir.path(), "req"), fifo_path(dir.path(), "resp"));
    mkfifo(&req);
    mkfifo(&resp);
    let mut p = builder.build().unwrap();
    let rx = p.open_receiver(&req, &FifoOptions::new()).unwrap();
    let n = rounds.to_string();
    let child = ChildGuard::spawn(&mut python(CLIENT_PY, &[&req, &resp, &n]));
    let mut ev = Events::default();
    let mut tx = None;
    let (mut done, mut start) = (0, 0);
    while done < rounds {
        p.poll(&mut ev, None).unwrap();
        for e in &ev {
            if let Event::Data { from, data } = e {
                assert!(from == rx);
                assert_eq!(data.len(), 64, "one request per read");
                // The client opened the response FIFO before its first
                // request: the sender is open at once.
                let tx =
                    *tx.get_or_insert_with(|| p.open_sender(&resp, &FifoOptions::new()).unwrap());
                p.send(tx, data).unwrap();
                done += 1;
                if done == skip {
                    start = p.snapshot().enters;
                }
            }
        }
    }
    let enters = p.snapshot().enters - start;
    // The last echo goes out and the client checks every byte.
    while p.stats(tx.unwrap()).unwrap().bytes_unsent() > 0 {
        p.poll(&mut ev, None).unwrap();
    }
    child.wait_success(Duration::from_secs(30));
    enters
}

#[test]
fn one_enter_per_round_trip() {
    if io_uring_only("one_enter_per_round_trip") {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        // A hold longer than any reply takes, so the count is exact.
        let builder = Proactor::builder().echo_hold(Duration::from_secs(30));
        if !builder.clone().build().unwrap().kernel_min_wait() {
            return skip(
                "one_enter_per_round_trip",
                "the kernel has no min-wait (Linux < 6.12)",
            );
        }
        let (rounds, skip) = (300, 10);
        let enters = ping_pong(builder, rounds, skip);
        assert_eq!(enters, (rounds - skip) as u64, "enters per round trip");
    });
}

/// Without a hold (the default, or without the kernel's min-wait) a round
/// trip takes two enters, one returning the echo's completion; with a
/// short hold, one or two. Every byte stays exact.
#[test]
fn without_a_hold_round_trips_stay_exact() {
    watchdog(Duration::from_secs(60), || {
        let (rounds, skip) = (300, 10);
        for builder in [
            Proactor::builder(),
            Proactor::builder()
                .echo_hold(Duration::from_secs(30))
                .kernel_min_wait(false),
            Proactor::builder().echo_hold(Duration::from_micros(50)),
        ] {
            let enters = ping_pong(builder, rounds, skip);
            assert!(enters >= (rounds - skip) as u64, "{enters} enters");
        }
    });
}

/// A registered ring fd is given back when its proactor goes: a thread
/// may register 16, and builds far more proactors than that one after
/// the other.
#[test]
fn ring_fd_registrations_are_given_back() {
    if io_uring_only("ring_fd_registrations_are_given_back") {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        for i in 0..40 {
            let p = Proactor::builder().sq_entries(8).build().unwrap();
            assert!(p.ring_fd_registered(), "proactor {i}");
        }
    });
}

/// Past the kernel's 16 registered rings per thread, a proactor enters by
/// its fd and works the same.
#[test]
fn a_proactor_past_the_registered_rings_works() {
    watchdog(Duration::from_secs(60), || {
        let mut ps: Vec<Proactor> = (0..20)
            .map(|_| Proactor::builder().sq_entries(8).build().unwrap())
            .collect();
        assert!(ps.iter().any(|p| !p.ring_fd_registered()));
        for p in &mut ps {
            let (r, w) = pipe();
            p.receiver_from_fd(r, ReadMode::Fixed).unwrap();
            let mut w = std::fs::File::from(w);
            std::io::Write::write_all(&mut w, b"ping").unwrap();
            let mut ev = Events::default();
            let mut got = Vec::new();
            while got.len() < 4 {
                p.poll(&mut ev, None).unwrap();
                for e in &ev {
                    if let Event::Data { data, .. } = e {
                        got.extend_from_slice(data);
                    }
                }
            }
            assert_eq!(got, b"ping", "registered: {}", p.ring_fd_registered());
        }
    });
}
