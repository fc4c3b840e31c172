//! Already-open descriptors as transports: anonymous pipes and a child's stdout.

mod common;

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::{CloseReason, Event, Events, Proactor, ReadMode, State};

#[test]
fn anonymous_pipe_both_ends() {
    watchdog(Duration::from_secs(30), || {
        let (r, w) = pipe();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let rx = p.receiver_from_fd(r, ReadMode::Fixed).unwrap();
        let tx = p.sender_from_fd(w).unwrap();
        assert_eq!(p.state(tx).unwrap(), State::Open);
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        p.send(tx, &payload).unwrap();
        p.close_after_flush(tx).unwrap();
        let mut got = Vec::new();
        let mut peer_gone = false;
        poll_until(&mut p, &mut ev, Duration::from_secs(20), |e| match e {
            Event::Data { data, .. } => {
                got.extend_from_slice(data);
                false
            }
            // The write end closed: EOF, and a receiver made from an fd is
            // one-shot, so it closes.
            Event::PeerGone(t) => {
                peer_gone |= *t == rx.token();
                false
            }
            Event::Closed { token, reason, .. } if *token == rx.token() => {
                assert_eq!(*reason, CloseReason::Eof);
                true
            }
            _ => false,
        });
        assert!(peer_gone);
        assert_eq!(got, payload);
        assert_eq!(p.state(rx).unwrap(), State::Closed);
    });
}

#[test]
fn a_child_process_stdout() {
    watchdog(Duration::from_secs(30), || {
        let mut child = spawn(Command::new("seq").arg("100000").stdout(Stdio::piped()));
        let stdout: OwnedFd = child.stdout.take().unwrap().into();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        p.receiver_from_fd(stdout, ReadMode::Fixed).unwrap();
        let mut got = Vec::new();
        poll_until(&mut p, &mut ev, Duration::from_secs(20), |e| match e {
            Event::Data { data, .. } => {
                got.extend_from_slice(data);
                false
            }
            Event::PeerGone(_) => true,
            _ => false,
        });
        child.wait().unwrap();
        let expected: String = (1..=100000).map(|i| format!("{i}\n")).collect();
        assert!(got == expected.as_bytes());
    });
}

#[test]
fn writing_to_a_pipe_whose_reader_closed_reports_peer_gone() {
    watchdog(Duration::from_secs(30), || {
        let (r, w) = pipe();
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::default();
        let tx = p.sender_from_fd(w).unwrap();
        // No child of a parallel test may hold a copy: the write must fail.
        close_last_end(r);
        p.send(tx, b"nobody listens").unwrap();
        poll_until(
            &mut p,
            &mut ev,
            Duration::from_secs(5),
            |e| matches!(e, Event::PeerGone(t) if *t == tx.token()),
        );
        assert_eq!(p.state(tx).unwrap(), State::PeerGone);
        p.close(tx).unwrap();
        let mut unsent = None;
        poll_until(&mut p, &mut ev, Duration::from_secs(5), |e| match e {
            Event::Closed { unsent: u, .. } => {
                unsent = Some(u.to_vec());
                true
            }
            _ => false,
        });
        assert_eq!(unsent.unwrap(), b"nobody listens");
    });
}
