//! What relays count and report, exactly, between real processes: every
//! byte that leaves the source's pipe is in one of its `bytes_read` (user
//! space) and `bytes_spliced` (the kernel), every byte that enters a
//! destination's pipe in one of its `bytes_accepted` and `bytes_spliced`,
//! and the `Relayed` events of a destination sum to every byte relayed to
//! it, the bytes read before the splice took over included.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FanOutPolicy, FifoOptions, Proactor, ReadMode, Sender, Stats};

/// Bytes the writer sends in all: several pipes' worth.
const TOTAL: usize = 3 << 20;
/// Of which written before the relay starts: less than a pipe holds.
const EARLY: usize = 40_000;

fn data() -> Vec<u8> {
    let mut v = vec![0; TOTAL];
    pattern(7, &mut v);
    v
}

/// `cat fifo > out`: a real reader process.
fn cat_into(fifo: &Path, out: &Path) -> ChildGuard {
    let file = File::create(out).unwrap();
    ChildGuard::spawn(Command::new("cat").arg(fifo).stdout(Stdio::from(file)))
}

/// What the events of a relay said, per destination.
#[derive(Default, Clone, Copy, Debug)]
struct Reported {
    relayed: usize,
    sent: usize,
}

/// A persistent receiver (its counters outlive its writers) relayed into
/// `dests` senders, each read by a `cat` process. With `early`, the first
/// [`EARLY`] bytes are in the source's pipe before the relay starts, and
/// the receiver's armed read takes some of them; else the relay starts
/// first. Returns the counters of the receiver and of each sender once
/// every byte has been reported, and checks each reader's output. The
/// receiver reads with `mode`.
fn relay_between_processes(
    dests: usize,
    early: bool,
    mode: ReadMode,
) -> (Stats, Vec<(Stats, Reported)>) {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let mut p = Proactor::new().unwrap();
    let mut ev = Events::with_capacity(256);
    let opts = FifoOptions::new().create(true).read_mode(mode);
    let rx = p.open_receiver(&a, &opts.clone().persistent(true)).unwrap();
    let mut txs: Vec<Sender> = Vec::new();
    let mut cats = Vec::new();
    for i in 0..dests {
        let b = dir.path().join(format!("b{i}"));
        txs.push(p.open_sender(&b, &opts).unwrap());
        cats.push((cat_into(&b, &dir.path().join(format!("out{i}"))), i));
    }
    let data = data();
    // A reader exists (the receiver): this open does not block.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
    if early {
        writer.write_all(&data[..EARLY]).unwrap();
    } else {
        // The receiver's armed read is submitted and cancelled with no
        // data there: every byte goes by splice.
        p.fan_out(rx, &txs, FanOutPolicy::Wait).unwrap();
        p.poll(&mut ev, Some(Duration::from_millis(50))).unwrap();
    }
    if early {
        p.fan_out(rx, &txs, FanOutPolicy::Wait).unwrap();
    }
    let rest = if early { &data[EARLY..] } else { &data[..] };
    let rest = rest.to_vec();
    let writing = std::thread::spawn(move || writer.write_all(&rest).unwrap());
    let mut reported = vec![Reported::default(); dests];
    poll_until(&mut p, &mut ev, Duration::from_secs(60), |e| {
        match e {
            Event::Relayed { from, to, bytes } => {
                assert_eq!(*from, rx);
                let i = txs.iter().position(|t| t == to).unwrap();
                reported[i].relayed += bytes;
            }
            Event::Sent { to, bytes } => {
                let i = txs.iter().position(|t| t == to).unwrap();
                reported[i].sent += bytes;
            }
            Event::Data { .. } => panic!("relayed bytes came as Data"),
            Event::Error { error, .. } => panic!("{error}"),
            _ => {}
        }
        reported.iter().all(|r| r.relayed + r.sent >= TOTAL)
    });
    writing.join().unwrap();
    let counts = (
        p.stats(rx).unwrap(),
        txs.iter()
            .zip(&reported)
            .map(|(t, r)| (p.stats(*t).unwrap(), *r))
            .collect(),
    );
    // End it: the receiver closes, each sender once its reader has all.
    p.close(rx).unwrap();
    for tx in &txs {
        p.close_after_flush(*tx).unwrap();
    }
    let mut open = dests;
    poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
        if let Event::Closed { token, .. } = e
            && txs.iter().any(|t| t.token() == *token)
        {
            open -= 1;
        }
        open == 0
    });
    for (cat, i) in cats {
        cat.wait_success(Duration::from_secs(30));
        let got = std::fs::read(dir.path().join(format!("out{i}"))).unwrap();
        assert_eq!(got.len(), TOTAL, "reader {i}");
        assert!(got == data, "reader {i}: bytes differ");
    }
    counts
}

/// Checks the counters and events of a relay run against each other and
/// against [`TOTAL`]; returns the bytes the receiver read in user space.
fn check(rx: &Stats, txs: &[(Stats, Reported)]) -> u64 {
    let total = TOTAL as u64;
    assert_eq!(rx.bytes_read + rx.bytes_spliced, total, "receiver: {rx:?}");
    for (i, (tx, reported)) in txs.iter().enumerate() {
        assert_eq!(
            (reported.relayed, reported.sent),
            (TOTAL, 0),
            "destination {i}: every byte is reported as Relayed"
        );
        assert_eq!(
            tx.bytes_accepted + tx.bytes_spliced,
            total,
            "destination {i}: {tx:?}"
        );
        // What went through the queue is what the receiver read (the
        // hand-over) or filled in, never more than it read.
        assert_eq!(tx.bytes_queued, tx.bytes_accepted, "destination {i}");
        assert!(tx.bytes_accepted <= rx.bytes_read, "destination {i}");
    }
    rx.bytes_read
}

/// Started before any data: every byte spliced, none read, none queued.
#[test]
fn a_relay_counts_spliced_bytes_apart_from_bytes_read() {
    watchdog(Duration::from_secs(120), || {
        let (rx, txs) = relay_between_processes(1, false, ReadMode::Multishot);
        check(&rx, &txs);
        assert_eq!((rx.bytes_read, rx.bytes_spliced), (0, TOTAL as u64));
        let tx = txs[0].0;
        assert_eq!(
            (tx.bytes_queued, tx.bytes_accepted, tx.bytes_spliced),
            (0, 0, TOTAL as u64)
        );
    });
}

/// Whether the read armed at open runs before the relay's cancel of it:
/// on io_uring it was submitted first and finds the data; on epoll a
/// cancel runs before anything queued with it, so that read never runs
/// and every byte is spliced.
fn read_beats_the_splice(read: u64, what: &str) {
    if on_epoll() {
        assert_eq!(read, 0, "{what}: a read ran after its cancel");
    } else {
        assert!(read > 0, "{what}: no read beat the splice");
    }
}

/// Started with data already in the pipe: the read armed at open takes
/// some of it before the splice takes over (on io_uring); those bytes go
/// through the sender's queue and come as `Relayed` too, so the events sum
/// to every byte and nothing is reported as `Sent`. A single-shot read
/// takes one buffer at most; a multishot one goes on reading what the
/// writer adds until its cancel lands, and hands all of it over.
#[test]
fn bytes_read_before_the_relay_took_over_come_as_relayed() {
    watchdog(Duration::from_secs(120), || {
        for mode in [ReadMode::Fixed, ReadMode::Multishot] {
            let (rx, txs) = relay_between_processes(1, true, mode);
            let read = check(&rx, &txs);
            read_beats_the_splice(read, &format!("{mode:?}"));
            if mode == ReadMode::Fixed {
                assert!(read <= EARLY as u64, "{read}");
            }
            assert_eq!(txs[0].0.bytes_accepted, read, "{mode:?}");
        }
    });
}

/// The same through a fan-out to two destinations (tee and splice): each
/// destination's events and counters account for every byte.
#[test]
fn a_fan_out_accounts_for_every_byte_of_each_destination() {
    watchdog(Duration::from_secs(120), || {
        for early in [false, true] {
            let (rx, txs) = relay_between_processes(2, early, ReadMode::Multishot);
            let read = check(&rx, &txs);
            if early {
                read_beats_the_splice(read, "fan-out");
            }
        }
    });
}
