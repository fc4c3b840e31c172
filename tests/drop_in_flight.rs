//! Dropping the proactor with operations in flight is sound: everything is
//! cancelled and reaped, then every fd is released.

mod common;

use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FifoOptions, Proactor};

#[test]
fn drop_with_ops_in_flight_releases_every_fd() {
    let _serial = serial();
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let opts = FifoOptions::new().create(true);
        let baseline = open_fds();
        for round in 0..50 {
            let mut p = Proactor::new().unwrap();
            let mut ev = Events::with_capacity(64);
            for i in 0..20 {
                let path = dir.path().join(format!("f{i}"));
                p.open_receiver(&path, &opts).unwrap();
                let tx = p.open_sender(&path, &opts).unwrap();
                p.send(tx, &vec![1u8; 300_000]).unwrap();
            }
            // Senders still waiting for a reader, with bytes queued.
            for i in 0..5 {
                let tx = p.open_sender(dir.path().join(format!("f{i}")), &opts);
                drop(tx);
                let lonely = dir.path().join(format!("lonely{i}"));
                let tx = p.open_sender(&lonely, &opts).unwrap();
                p.send(tx, b"never delivered").unwrap();
            }
            p.poll(&mut ev, Some(Duration::ZERO)).unwrap();
            assert!(
                p.snapshot().ops_in_flight > 20,
                "round {round}: {}",
                p.snapshot().ops_in_flight
            );
            // Read data lent to `ev` stays valid after the proactor is gone.
            let lent: Vec<Vec<u8>> = ev
                .iter()
                .filter_map(|e| match e {
                    Event::Data { data, .. } => Some(data.to_vec()),
                    _ => None,
                })
                .collect();
            drop(p);
            let again: Vec<Vec<u8>> = ev
                .iter()
                .filter_map(|e| match e {
                    Event::Data { data, .. } => Some(data.to_vec()),
                    _ => None,
                })
                .collect();
            assert_eq!(lent, again);
            drop(ev);
            assert_eq!(open_fds(), baseline, "round {round}: fd leak");
        }
    });
}

#[test]
fn dropping_before_any_poll_leaves_the_pipe_untouched() {
    // Opens fds: keep out of the fd-counting test's way.
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        mkfifo(&fifo);
        // A read-write end keeps the pipe alive and holds 5 bytes in it.
        let keep = nix::fcntl::open(
            &fifo,
            nix::fcntl::OFlag::O_RDWR
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        nix::unistd::write(&keep, b"hello").unwrap();
        let mut p = Proactor::new().unwrap();
        p.open_receiver(&fifo, &FifoOptions::new()).unwrap();
        // Its read was queued, never submitted: dropping must not submit it.
        drop(p);
        let mut buf = [0u8; 16];
        let n = nix::unistd::read(&keep, &mut buf).expect("the bytes are still in the pipe");
        assert_eq!(&buf[..n], b"hello");
    });
}
