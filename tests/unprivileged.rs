//! Default proactors work for an ordinary user, whose `RLIMIT_MEMLOCK`
//! (8 MiB here) bounds the registered buffers, ring queues and provided
//! rings of all of that user's rings together; an explicit pool that does
//! not fit is a typed error.
//!
//! Each test re-runs one `#[ignore]`d case of this binary in a child under
//! an 8 MiB `RLIMIT_MEMLOCK` (util-linux's `prlimit`), from a copy of the
//! binary under /tmp. Root is exempt from the limit, so as root the child
//! also becomes uid/gid 65534 (nobody) through `setpriv`; any other user
//! runs it as itself, under the same limit. Cases run one at a time: they
//! share the user's locked-memory budget.

#[path = "common/as_user.rs"]
mod as_user;
mod common;

use std::path::Path;
use std::time::Duration;

use as_user::is_root;
use common::*;
use ringpipe::process::FifoCommand;
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Receiver, Sender};

const NOBODY: u32 = 65534;
const MEMLOCK: u64 = 8 << 20;
const CHILD_LIMIT: Duration = Duration::from_secs(240);
const CASE_LIMIT: Duration = Duration::from_secs(200);

/// Runs the `#[ignore]`d test `case` of this binary under an 8 MiB
/// `RLIMIT_MEMLOCK` (or the hard limit, if that is lower), as nobody when
/// we are root, else as we are.
fn as_unprivileged(case: &str) {
    let _s = serial();
    use nix::sys::resource::{Resource, getrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
    let memlock = if is_root() {
        MEMLOCK
    } else {
        MEMLOCK.min(hard)
    };
    let limits = [format!("--memlock={memlock}:{memlock}")];
    let uid = is_root().then_some(NOBODY);
    as_user::run_case_limited(uid, &limits, case, CHILD_LIMIT);
}

/// A private directory under /tmp, made by (and so writable for) the user
/// running the case.
fn tmp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ringpipe-case-")
        .tempdir_in("/tmp")
        .unwrap()
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    pattern(seed << 32, &mut v);
    v
}

/// One FIFO through one proactor: its own receiver and sender.
struct Lane {
    p: Proactor,
    rx: Receiver,
    want: Vec<u8>,
    got: Vec<u8>,
}

impl Lane {
    fn open(mut p: Proactor, dir: &Path, i: usize) -> Lane {
        let path = dir.join(format!("f{i}"));
        let rx = p
            .open_receiver(&path, &FifoOptions::new().create(true).mode(0o600))
            .unwrap();
        let tx: Sender = p.open_sender(&path, &FifoOptions::new()).unwrap();
        // More than a pool's worth of 64 KiB buffers, an odd length.
        let want = bytes(i as u64, (1 << 20) + 4099 * i);
        p.send(tx, &want).unwrap();
        p.close_after_flush(tx).unwrap();
        Lane {
            p,
            rx,
            want,
            got: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.got.len() >= self.want.len()
    }

    fn turn(&mut self, ev: &mut Events) {
        self.p.poll(ev, Some(Duration::from_millis(1))).unwrap();
        for e in ev.iter() {
            if let Event::Data { from, data } = e {
                assert_eq!(from, self.rx);
                self.got.extend_from_slice(data);
            }
        }
    }
}

/// Opens a FIFO lane on each proactor, all held at once, and moves every
/// lane's bytes, polling them in turn; checks every byte.
fn move_bytes_through(proactors: Vec<Proactor>) {
    let dir = tmp_dir();
    let mut lanes: Vec<Lane> = proactors
        .into_iter()
        .enumerate()
        .map(|(i, p)| Lane::open(p, dir.path(), i))
        .collect();
    let mut ev = Events::with_capacity(64);
    while lanes.iter().any(|l| !l.done()) {
        for lane in lanes.iter_mut().filter(|l| !l.done()) {
            lane.turn(&mut ev);
        }
    }
    for (i, lane) in lanes.iter().enumerate() {
        assert_eq!(lane.got.len(), lane.want.len(), "lane {i}");
        assert!(lane.got == lane.want, "lane {i}: bytes differ");
    }
}

fn eight_default_proactors_body() {
    let proactors: Vec<Proactor> = (0..8)
        .map(|i| Proactor::new().unwrap_or_else(|e| panic!("proactor {i}: {e}")))
        .collect();
    move_bytes_through(proactors);
}

fn default_proactors_when_locked_memory_is_taken_body() {
    // Another ring of the user holds all but 3 MiB of the limit: that
    // leaves room for the 8 rings and a few default pools; the others
    // cannot be registered and must work unregistered.
    use nix::sys::resource::{Resource, getrlimit};
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
    let hog = (soft >= 4 << 20 && soft != libc::RLIM_INFINITY).then(|| {
        let count = ((soft - (3 << 20)) / (64 << 10)).min(u16::MAX.into()) as u16;
        Proactor::builder()
            .buffers(count, 64 << 10)
            .build()
            .unwrap_or_else(|e| panic!("{count} x 64 KiB under {soft}: {e}"))
    });
    if hog.is_none() {
        return skip(
            "default_proactors_when_locked_memory_is_taken",
            &format!("RLIMIT_MEMLOCK {soft} is not a limit of 4 MiB or more to take"),
        );
    }
    let proactors: Vec<Proactor> = (0..8)
        .map(|i| Proactor::new().unwrap_or_else(|e| panic!("proactor {i}: {e}")))
        .collect();
    move_bytes_through(proactors);
    drop(hog);
}

fn hundred_fifo_commands_body() {
    for i in 0..100u64 {
        let input = bytes(1000 + i, 100_000 + i as usize);
        let out = FifoCommand::new("sh")
            .args(["-c", r#"exec cat "$0" > "$1""#, "{in:a}", "{out:b}"])
            .input("a", input.clone())
            .output("b")
            .timeout(Duration::from_secs(30))
            .run()
            .unwrap_or_else(|e| panic!("run {i}: {e}"));
        assert!(out.status.success(), "run {i}: {:?}", out.status);
        assert!(out.outputs["b"] == input, "run {i}: output differs");
        assert!(out.inputs["a"].is_complete(), "run {i}");
    }
}

fn explicit_buffers_over_the_limit_body() {
    use nix::sys::resource::{Resource, getrlimit};
    let (count, size) = (1024u16, 64 * 1024usize);
    let asked = count as u64 * size as u64;
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
    if is_root() || soft == libc::RLIM_INFINITY || soft >= asked {
        return skip(
            "explicit_buffers_over_the_limit_fail_with_memlock_limit",
            &format!("locked memory is not limited below {asked} bytes here"),
        );
    }
    let err = match Proactor::builder().buffers(count, size).build() {
        Ok(_) => panic!("{asked} bytes of buffers registered under a limit of {soft}"),
        Err(e) => e,
    };
    match &err {
        Error::MemlockLimit {
            requested, limit, ..
        } => {
            assert_eq!(*requested, asked);
            assert_eq!(*limit, Some(soft));
        }
        other => panic!("not MemlockLimit: {other:?}"),
    }
    assert_eq!(err.raw_os_error(), Some(libc::ENOMEM));
    let msg = err.to_string();
    for part in [
        "RLIMIT_MEMLOCK",
        "Builder::buffers",
        &asked.to_string(),
        &soft.to_string(),
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    // What a failed build locked is given back: a default proactor works.
    move_bytes_through(vec![Proactor::new().unwrap()]);
}

#[test]
fn eight_default_proactors_at_once() {
    as_unprivileged("case_eight_default_proactors_at_once");
}

#[test]
#[ignore = "run as nobody by eight_default_proactors_at_once"]
fn case_eight_default_proactors_at_once() {
    watchdog(CASE_LIMIT, eight_default_proactors_body);
}

#[test]
fn default_proactors_when_locked_memory_is_taken() {
    as_unprivileged("case_default_proactors_when_locked_memory_is_taken");
}

#[test]
#[ignore = "run as nobody by default_proactors_when_locked_memory_is_taken"]
fn case_default_proactors_when_locked_memory_is_taken() {
    watchdog(
        CASE_LIMIT,
        default_proactors_when_locked_memory_is_taken_body,
    );
}

#[test]
fn hundred_fifo_commands_back_to_back() {
    as_unprivileged("case_hundred_fifo_commands_back_to_back");
}

#[test]
#[ignore = "run as nobody by hundred_fifo_commands_back_to_back"]
fn case_hundred_fifo_commands_back_to_back() {
    watchdog(CASE_LIMIT, hundred_fifo_commands_body);
}

#[test]
fn explicit_buffers_over_the_limit_fail_with_memlock_limit() {
    // The epoll backend registers no buffer: no limit to meet.
    if io_uring_only("explicit_buffers_over_the_limit_fail_with_memlock_limit") {
        return;
    }
    as_unprivileged("case_explicit_buffers_over_the_limit_fail_with_memlock_limit");
}

#[test]
#[ignore = "run as nobody by explicit_buffers_over_the_limit_fail_with_memlock_limit"]
fn case_explicit_buffers_over_the_limit_fail_with_memlock_limit() {
    watchdog(CASE_LIMIT, explicit_buffers_over_the_limit_body);
}
