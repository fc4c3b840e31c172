//! A ring far smaller than the work: SQ=2, CQ=4. Submission flushes early
//! when the SQ is full and completions that overflow the CQ are fetched
//! later: none is lost.

mod common;

use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, Proactor};

#[test]
fn sq2_cq4_completes_10000_operations() {
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::builder()
            .sq_entries(2)
            .cq_entries(4)
            .build()
            .unwrap();
        let mut ev = Events::with_capacity(256);
        const PAIRS: usize = 50;
        const MSGS: usize = 100;
        let mut rxs = Vec::new();
        let mut txs = Vec::new();
        for i in 0..PAIRS {
            let path = dir.path().join(format!("f{i}"));
            rxs.push(p.open_receiver(&path, &opts).unwrap());
            txs.push(p.open_sender(&path, &opts).unwrap());
        }
        let mut got = vec![Vec::new(); PAIRS];
        let mut writes = 0usize;
        let mut reads = 0usize;
        let enters_before = p.snapshot().enters;
        for m in 0..MSGS {
            for (i, tx) in txs.iter().enumerate() {
                p.send(*tx, format!("{i}:{m};").as_bytes()).unwrap();
            }
            // Each turn submits PAIRS writes (and as many reads): far more
            // than the SQ holds, and far more completions than the CQ holds.
            p.poll(&mut ev, Some(Duration::from_millis(50))).unwrap();
            for e in &ev {
                match e {
                    Event::Sent { .. } => writes += 1,
                    Event::Data { from, data } => {
                        reads += 1;
                        let i = rxs.iter().position(|r| *r == from).unwrap();
                        got[i].extend_from_slice(data);
                    }
                    _ => {}
                }
            }
        }
        let expected: Vec<Vec<u8>> = (0..PAIRS)
            .map(|i| {
                (0..MSGS)
                    .map(|m| format!("{i}:{m};"))
                    .collect::<String>()
                    .into_bytes()
            })
            .collect();
        // Everything may have arrived already: then no event would come.
        while got != expected {
            poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
                match e {
                    Event::Sent { .. } => writes += 1,
                    Event::Data { from, data } => {
                        reads += 1;
                        let i = rxs.iter().position(|r| r == from).unwrap();
                        got[i].extend_from_slice(data);
                    }
                    _ => {}
                }
                true
            });
        }
        assert_eq!(got, expected);
        // Writes coalesce while one is in flight, so count operations, not messages.
        assert!(
            writes + reads >= 10_000 / 4,
            "only {} completions",
            writes + reads
        );
        // A 2-entry SQ flushes early, many times a turn: io_uring's queue
        // (epoll has none, and counts its waits).
        if !on_epoll() {
            assert!(p.snapshot().enters > enters_before + MSGS as u64);
        }
        for (rx, tx) in rxs.iter().zip(&txs) {
            p.close(*rx).unwrap();
            p.close(*tx).unwrap();
        }
        let mut closed = 0;
        poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
            closed += matches!(e, Event::Closed { .. }) as usize;
            closed == 2 * PAIRS
        });
        assert_eq!(p.snapshot().ops_in_flight, 0);
    });
}

#[test]
fn sq2_cq4_many_small_sends_through_one_fifo() {
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::builder()
            .sq_entries(2)
            .cq_entries(4)
            .build()
            .unwrap();
        let mut ev = Events::with_capacity(64);
        let rx = p.open_receiver(&path, &opts).unwrap();
        let tx = p.open_sender(&path, &opts).unwrap();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut ops = 0usize;
        for m in 0..10_000u32 {
            let msg = m.to_le_bytes();
            expected.extend_from_slice(&msg);
            p.send(tx, &msg).unwrap();
            // One send per turn: one write and one read each.
            p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
            for e in &ev {
                match e {
                    Event::Data { data, .. } => {
                        ops += 1;
                        got.extend_from_slice(data)
                    }
                    Event::Sent { .. } => ops += 1,
                    _ => {}
                }
            }
        }
        // Zero-timeout polls reap completions too: usually all has arrived.
        if got.len() < expected.len() {
            poll_until(&mut p, &mut ev, Duration::from_secs(30), |e| {
                if let Event::Data { from, data } = e {
                    assert_eq!(*from, rx);
                    got.extend_from_slice(data);
                }
                got.len() == expected.len()
            });
        }
        assert_eq!(got, expected);
        assert!(ops > 1000, "{ops}");
    });
}
