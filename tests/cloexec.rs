//! Every fd the library opens is `O_CLOEXEC`: a child that the application
//! (or a parallel test) spawns must not inherit a FIFO end, which would keep
//! the peer alive, nor the ring.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use ringpipe::{Event, Events, FanOutPolicy, FifoOptions, Proactor, ReadMode};

/// This process's fds without close-on-exec, with what they point at. The
/// kernel shows `O_CLOEXEC` in `/proc/self/fdinfo/N` `flags` when the fd has
/// `FD_CLOEXEC`.
fn without_cloexec() -> Vec<(u32, String)> {
    let fds: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut found = Vec::new();
    for fd in fds {
        // Gone meanwhile (the directory listing's own fd): skip.
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        if flags & libc::O_CLOEXEC as u32 == 0 {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            found.push((fd, target));
        }
    }
    found
}

#[test]
fn every_fd_the_library_opens_is_cloexec() {
    let _serial = serial();
    watchdog(Duration::from_secs(30), || {
        // Whatever the harness left open without it is not ours.
        let before = without_cloexec();
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let create = FifoOptions::new()
            .create(true)
            .read_mode(ReadMode::Multishot);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        // Open both ends, a persistent receiver, a sender still waiting for
        // a reader (inotify), a relay and a fan-out.
        let rx = p.open_receiver(path("a"), &create).unwrap();
        let tx = p.open_sender(path("a"), &create).unwrap();
        p.open_receiver(path("p"), &create.clone().persistent(true))
            .unwrap();
        p.open_sender(path("waiting"), &create).unwrap();
        let relay_rx = p.open_receiver(path("relay_in"), &create).unwrap();
        mkfifo(&path("relay_out"));
        let relay_reader = nonblocking_reader(&path("relay_out"));
        let relay_tx = p.open_sender(path("relay_out"), &create).unwrap();
        p.relay(relay_rx, relay_tx).unwrap();
        let fan_rx = p.open_receiver(path("fan_in"), &create).unwrap();
        mkfifo(&path("fan_out"));
        let fan_reader = nonblocking_reader(&path("fan_out"));
        let fan_tx = p.open_sender(path("fan_out"), &create).unwrap();
        p.fan_out(fan_rx, &[fan_tx], FanOutPolicy::Wait).unwrap();
        // The notifier's eventfd.
        let _notifier = p.notifier().unwrap();
        let mut other = Proactor::new().unwrap();
        let (r, w) = pipe();
        other.receiver_from_fd(r, ReadMode::Fixed).unwrap();
        p.send(tx, b"x").unwrap();
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(path("relay_in"))
            .unwrap();
        writer.write_all(b"y").unwrap();
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(10),
            |e| matches!(e, Event::Data { from, .. } if *from == rx),
        );
        other.poll(&mut ev, Some(Duration::ZERO)).unwrap();

        let after = without_cloexec();
        let new: Vec<_> = after.iter().filter(|fd| !before.contains(fd)).collect();
        assert!(new.is_empty(), "fds without O_CLOEXEC: {new:?}");
        drop((relay_reader, fan_reader, w, writer));
    });
}
