//! A persistent receiver survives its writers leaving and coming back, and
//! waits for the next one without spinning.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, Proactor, State};

#[test]
fn writers_come_and_go_100_times_and_idle_waits_in_the_kernel() {
    let _serial = serial();
    watchdog(Duration::from_secs(180), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(64);
        let rx = p
            .open_receiver(&fifo, &FifoOptions::new().create(true).persistent(true))
            .unwrap();
        const WRITERS: usize = 100;
        // One writer process after another, each writing its numbered lines
        // and closing: every close is an EOF for the receiver.
        let path = fifo.clone();
        let driver = std::thread::spawn(move || {
            for w in 0..WRITERS {
                let script = format!(
                    "import os,sys\nfd=os.open(sys.argv[1], os.O_WRONLY)\n\
                     os.write(fd, b''.join(b'%d:%d\\n' % ({w}, i) for i in range(100)))\nos.close(fd)\n"
                );
                let child = Command::new("python3")
                    .args(["-c", &script])
                    .arg(&path)
                    .spawn()
                    .unwrap();
                let out = ChildGuard::new(child).wait_output(Duration::from_secs(30));
                assert!(out.status.success());
            }
        });
        let expected: Vec<u8> = (0..WRITERS)
            .flat_map(|w| (0..100).map(move |i| format!("{w}:{i}\n")))
            .collect::<String>()
            .into_bytes();
        let mut got = Vec::new();
        let (mut gone, mut back) = (0, 0);
        poll_until(&mut p, &mut ev, Duration::from_secs(150), |e| {
            match e {
                Event::Data { data, .. } => got.extend_from_slice(data),
                Event::PeerGone(t) if *t == rx.token() => gone += 1,
                Event::PeerBack(t) if *t == rx.token() => back += 1,
                Event::Closed { .. } => panic!("a persistent receiver closed"),
                Event::Error { error, .. } => panic!("{error}"),
                _ => {}
            }
            got.len() >= expected.len()
        });
        driver.join().unwrap();
        assert!(got == expected, "data differs");
        // Writers never overlapped, so the receiver saw EOF between them.
        assert!(gone >= 1 && back >= 1, "gone {gone}, back {back}");
        // Let the last EOF arrive, then idle: a receiver re-arming reads at
        // EOF would burn a core here.
        p.poll(&mut ev, Some(Duration::from_millis(200))).unwrap();
        assert_eq!(p.state(rx).unwrap(), State::PeerGone);
        // Each idle poll waits in the kernel until its timeout, in one or
        // two enters; a read re-armed at EOF would end every wait early.
        // (The idle scenario of `ringpipe-bench` measures the CPU it costs.)
        let enters_before = p.snapshot().enters;
        for _ in 0..10 {
            p.poll(&mut ev, Some(Duration::from_millis(100))).unwrap();
            assert!(ev.is_empty());
        }
        assert!(
            p.snapshot().enters - enters_before <= 20,
            "{} enters while idle",
            p.snapshot().enters - enters_before
        );

        // And the next writer is still heard.
        std::fs::write(&fifo, b"after the idle period\n").unwrap();
        let mut late = Vec::new();
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            if let Event::Data { data, .. } = e {
                late.extend_from_slice(data);
            }
            late.ends_with(b"\n")
        });
        assert_eq!(late, b"after the idle period\n");
    });
}
