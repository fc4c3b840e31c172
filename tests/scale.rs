//! 10,000 FIFOs on one proactor: few threads, little memory, all delivered.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use ringpipe::{CloseReason, Event, Events, FifoOptions, PipeLimits, Proactor};

const FIFOS: usize = 10_000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn ten_thousand_idle_receivers_then_one_message_each() {
    let _serial = serial();
    watchdog(Duration::from_secs(300), || {
        // 10,000 read ends plus the test's own descriptors.
        ringpipe::raise_fd_limit(FIFOS as u64 + 1000).expect("open-file limit");
        let limits = PipeLimits::read();
        println!("pipe limits: {limits:?}");
        let dir = tempfile::tempdir().unwrap();
        let threads_before = threads();
        let rss_before = rss_kib();
        let mut p = Proactor::builder()
            .registered_files(16_384)
            .build()
            .unwrap();
        let mut ev = Events::with_capacity(4096);
        let opts = FifoOptions::new().create(true);
        let mut rxs = Vec::with_capacity(FIFOS);
        for i in 0..FIFOS {
            rxs.push(
                p.open_receiver(dir.path().join(format!("f{i}")), &opts)
                    .unwrap(),
            );
        }
        // Everything armed and idle.
        for _ in 0..5 {
            p.poll(&mut ev, Some(Duration::from_millis(20))).unwrap();
            assert!(ev.is_empty());
        }
        assert!(
            p.snapshot().ops_in_flight >= FIFOS,
            "{} armed",
            p.snapshot().ops_in_flight
        );
        let extra_threads = threads() - threads_before;
        let rss_mib = (rss_kib().saturating_sub(rss_before)) / 1024;
        println!("10,000 idle receivers: +{extra_threads} threads, +{rss_mib} MiB RSS");
        assert!(
            extra_threads <= 4,
            "{extra_threads} threads for idle receivers"
        );
        assert!(rss_mib <= 64, "{rss_mib} MiB for idle receivers");

        // One message into each, from a writer that comes and goes.
        for i in 0..FIFOS {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join(format!("f{i}")))
                .unwrap();
            w.write_all(format!("{i}").as_bytes()).unwrap();
        }
        let mut got = vec![None; FIFOS];
        let mut closed = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(240), |e| {
            match e {
                Event::Data { from, data } => {
                    let i = from.token().index as usize;
                    assert_eq!(rxs[i], *from);
                    assert!(got[i].is_none(), "two messages on {i}");
                    got[i] = Some(String::from_utf8(data.to_vec()).unwrap());
                }
                Event::Closed { reason, .. } => {
                    assert_eq!(*reason, CloseReason::Eof);
                    closed += 1;
                }
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            closed == FIFOS
        });
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.as_deref(), Some(i.to_string().as_str()), "FIFO {i}");
        }
        assert_eq!(p.snapshot().ops_in_flight, 0);
        assert!(threads() - threads_before <= 4);
    });
}
