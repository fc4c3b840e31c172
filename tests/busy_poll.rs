//! A loop that polls with a zero timeout (busy polling) sees completions.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, Proactor, ReadMode};

#[test]
fn zero_timeout_polls_deliver_completions() {
    watchdog(Duration::from_secs(30), || {
        let (r, w) = pipe();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        p.receiver_from_fd(r, ReadMode::Fixed).unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"hello").unwrap();
        // Never blocks in the kernel: deferred completions must still be
        // reaped by these enters.
        let mut got = Vec::new();
        for _ in 0..1_000_000 {
            p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
            for e in &ev {
                if let Event::Data { data, .. } = e {
                    got.extend_from_slice(data);
                }
            }
            if got.len() == 5 {
                break;
            }
        }
        assert_eq!(got, b"hello", "busy polling never saw the data");
    });
}
