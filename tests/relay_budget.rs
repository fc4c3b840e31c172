//! Relays grow their pipes within one budget per process, half of the
//! user's `pipe-user-pages-soft`, shared by every proactor of the
//! process: however many proactors relay, the user's other new pipes keep
//! their default size. A relay's share is given back when it ends.
//!
//! Root is exempt from the user's pipe limits, so as root the case runs
//! as a user of its own (a uid no other test uses: the pipe pages of a
//! user are counted across all of that user's processes), with an 8 MiB
//! `RLIMIT_MEMLOCK` like an ordinary user's. As any other user it runs
//! here, as that user.

#[path = "common/as_user.rs"]
mod as_user;
mod common;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, PipeLimits, Proactor, Receiver};

/// A uid of no account: only this test's processes count against it.
const RELAY_USER: u32 = 61_234;
const MEMLOCK: u64 = 8 << 20;
/// Relays per proactor: 20 want about 37 MiB of growth, more than half
/// of the default soft limit (64 MiB) on their own.
const RELAYS: usize = 20;
const MIB: usize = 1 << 20;

/// The size of the pipe behind `fd`.
fn pipe_size(fd: &OwnedFd) -> usize {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap() as usize
}

/// One relay of `p` from a fresh FIFO `a{i}` into `b{i}`, each given an
/// end of the test's own (a writer of `a`, a reader of `b`), through which
/// the pipes' sizes are read.
struct Relay {
    rx: Receiver,
    writer: OwnedFd,
    reader: OwnedFd,
}

fn relay(p: &mut Proactor, dir: &Path, i: usize) -> Relay {
    let (a, b) = (dir.join(format!("a{i}")), dir.join(format!("b{i}")));
    let rx = p
        .open_receiver(&a, &FifoOptions::new().create(true))
        .unwrap();
    mkfifo(&b);
    let reader = nonblocking_reader(&b);
    let tx = p.open_sender(&b, &FifoOptions::new()).unwrap();
    p.relay(rx, tx).unwrap();
    // The receiver holds the read end: this open returns at once.
    let writer = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
    Relay {
        rx,
        writer: writer.into(),
        reader,
    }
}

/// Moves one byte through each of `relays`: a relay grows its pipes
/// before its first move, so they are sized when this returns.
fn move_a_byte(p: &mut Proactor, relays: &[Relay]) {
    let mut ev = Events::default();
    // The receivers' reads are cancelled before any byte is there.
    p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
    for r in relays {
        nix::unistd::write(&r.writer, b"x").unwrap();
    }
    let mut moved = 0;
    poll_until(p, &mut ev, Duration::from_secs(30), |e| {
        if let Event::Relayed { bytes, .. } = e {
            moved += bytes;
        }
        moved == relays.len()
    });
}

/// Bytes by which `relays` grew their pipes beyond `default`.
fn grown(relays: &[Relay], default: usize) -> usize {
    relays
        .iter()
        .map(|r| pipe_size(&r.writer) + pipe_size(&r.reader) - 2 * default)
        .sum()
}

fn two_proactors_share_one_budget_body() {
    let limits = PipeLimits::read();
    let budget = match limits.user_pages_soft {
        0 => usize::MAX,
        soft => soft * 4096 / 2,
    };
    eprintln!("uid {}, {limits:?}", nix::unistd::geteuid());
    let dir = tempfile::Builder::new()
        .prefix("ringpipe-budget-")
        .tempdir_in("/tmp")
        .unwrap();
    let default = pipe_size(&pipe().0);
    let build = || Proactor::builder().registered_files(64).build().unwrap();
    let (mut first, mut second) = (build(), build());
    let ones: Vec<Relay> = (0..RELAYS)
        .map(|i| relay(&mut first, dir.path(), i))
        .collect();
    move_a_byte(&mut first, &ones);
    let twos: Vec<Relay> = (RELAYS..2 * RELAYS)
        .map(|i| relay(&mut second, dir.path(), i))
        .collect();
    move_a_byte(&mut second, &twos);
    let (one, two) = (grown(&ones, default), grown(&twos, default));
    eprintln!("grown: {one} + {two} bytes, budget {budget}");
    // The user's other pipes: a new one gets its full default size.
    assert_eq!(default, 64 * 1024);
    assert_eq!(pipe_size(&pipe().0), default, "a new pipe of the user");
    assert!(one > 0, "the first proactor's relays grew no pipe");
    assert!(one + two <= budget, "{one} + {two} bytes over {budget}");

    // The first proactor's relays end: their share goes back, and a new
    // relay of the second grows its pipes to 1 MiB.
    let mut ev = Events::default();
    for r in &ones {
        first.close(r.rx).unwrap();
    }
    let mut closed = 0;
    poll_until(&mut first, &mut ev, Duration::from_secs(10), |e| {
        if matches!(e, Event::Closed { token, .. } if ones.iter().any(|r| r.rx.token() == *token)) {
            closed += 1;
        }
        closed == ones.len()
    });
    let late = vec![relay(&mut second, dir.path(), 2 * RELAYS)];
    move_a_byte(&mut second, &late);
    let want = MIB.min(limits.max_size.max(default));
    assert_eq!(
        (pipe_size(&late[0].writer), pipe_size(&late[0].reader)),
        (want, want),
        "a relay started after others ended"
    );
}

#[test]
fn two_proactors_share_one_pipe_budget() {
    let case = "case_two_proactors_share_one_pipe_budget";
    let _serial = serial();
    if !as_user::is_root() {
        return watchdog(Duration::from_secs(60), two_proactors_share_one_budget_body);
    }
    let memlock = format!("--memlock={MEMLOCK}:{MEMLOCK}");
    as_user::run_case_as(RELAY_USER, &[memlock], case, Duration::from_secs(90));
}

#[test]
#[ignore = "run as another user by two_proactors_share_one_pipe_budget"]
fn case_two_proactors_share_one_pipe_budget() {
    watchdog(Duration::from_secs(60), two_proactors_share_one_budget_body);
}
