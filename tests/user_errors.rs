//! What a new user reads when something goes wrong: errors about a
//! transport name its FIFO's path (or the label given to one made from an
//! fd), nesting a ring that cannot wake another loop is refused rather
//! than a silent hang, and the examples print errors as messages, not as
//! `Debug` dumps.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringpipe::frame::Codec;
use ringpipe::{Error, Event, Events, FifoOptions, Proactor, Sender};

/// Polls until an `Event::Error` and the `Closed` that follows it,
/// returning the error's message and path field.
fn next_error(p: &mut Proactor) -> (String, Option<std::path::PathBuf>) {
    let mut ev = Events::default();
    let mut found = None;
    poll_until(p, &mut ev, Duration::from_secs(10), |e| {
        match e {
            Event::Error { error, .. } => {
                let path = match error {
                    Error::Io { path, .. } | Error::Frame { path, .. } => path.clone(),
                    other => panic!("unexpected error: {other:?}"),
                };
                found = Some((error.to_string(), path));
            }
            Event::Closed { .. } => return found.is_some(),
            _ => {}
        }
        false
    });
    found.unwrap()
}

/// A framed receiver fed a frame over its maximum fails with a message
/// that starts with the FIFO's path, and `Proactor::path` answers it.
#[test]
fn a_bad_frame_on_a_fifo_names_its_path() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("requests.fifo");
        let mut p = Proactor::new().unwrap();
        let opts = FifoOptions::new().create(true).frames(Codec::Lines, 10);
        let rx = p.open_receiver(&fifo, &opts).unwrap();
        assert_eq!(p.path(rx).unwrap().as_deref(), Some(fifo.as_path()));
        let w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        nix::unistd::write(&w, b"a line longer than ten bytes\n").unwrap();
        let (message, path) = next_error(&mut p);
        let want = format!("{}: frame of", fifo.display());
        assert!(message.starts_with(&want), "{message:?}");
        assert_eq!(path.as_deref(), Some(fifo.as_path()));
        assert!(!message.contains("Token"), "{message:?}");
    });
}

/// An I/O error of a transport made from an fd names the label it was
/// given; unlabelled, it names the handle.
#[test]
fn an_io_error_names_the_label_of_an_fd_transport() {
    watchdog(Duration::from_secs(30), || {
        let mut p = Proactor::new().unwrap();
        for label in [Some("child 42 stdin"), None] {
            // A read end made a sender: its writes fail with EBADF.
            let (r, _w) = pipe();
            let tx = p.sender_from_fd(r).unwrap();
            assert_eq!(p.path(tx).unwrap(), None);
            if let Some(label) = label {
                p.set_label(tx, label).unwrap();
                assert_eq!(p.path(tx).unwrap().as_deref(), Some(Path::new(label)));
            }
            p.send(tx, b"x").unwrap();
            let (message, path) = next_error(&mut p);
            let name = match label {
                Some(l) => l.to_string(),
                None => format!("{:?}", tx.token()),
            };
            assert_eq!(
                message,
                format!("{name}: write failed: Bad file descriptor (os error 9)")
            );
            assert_eq!(path.as_deref(), label.map(Path::new));
            assert!(matches!(p.path(tx), Err(Error::Closed { .. })));
        }
    });
}

/// A refused relay names the transport already relaying by its path.
#[test]
fn a_second_relay_names_the_fifo_already_relaying() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.fifo"), dir.path().join("b.fifo"));
        let mut p = Proactor::new().unwrap();
        let create = FifoOptions::new().create(true);
        let rx = p.open_receiver(&a, &create).unwrap();
        let tx: Sender = p.open_sender(&b, &create).unwrap();
        p.relay(rx, tx).unwrap();
        let again = p.relay(rx, tx).unwrap_err();
        assert_eq!(again.to_string(), format!("{} is relaying", b.display()));
        let send = p.send(tx, b"x").unwrap_err();
        assert_eq!(send.to_string(), format!("{} is relaying", b.display()));
    });
}

/// A proactor with deferred task work (the default) refuses its ring fd
/// to another loop: a loop sleeping on it would never wake. Without it,
/// or on an SQPOLL ring, the fd is given.
#[test]
fn nest_fd_refuses_a_ring_that_would_never_wake_its_loop() {
    if io_uring_only("nest_fd_refuses_a_ring_that_would_never_wake_its_loop") {
        return;
    }
    let p = Proactor::new().unwrap();
    let err = p.nest_fd().unwrap_err();
    assert!(
        matches!(err, Error::NotNestable { proactor } if proactor == p.id()),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("Builder::defer_taskrun(false)"),
        "{message:?}"
    );
    let nestable = Proactor::builder().defer_taskrun(false).build().unwrap();
    assert!(nestable.nest_fd().is_ok());
    let sqpoll = Proactor::builder()
        .sqpoll(Duration::from_millis(10))
        .build()
        .unwrap();
    assert!(sqpoll.nest_fd().is_ok());
}

/// An example given a regular file where it expects a FIFO prints the
/// error as a message naming the path, not main's `Debug` dump.
#[test]
fn an_example_prints_its_error_as_a_message() {
    let bin = build_example("readme");
    watchdog(Duration::from_secs(60), move || {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-fifo.txt");
        std::fs::write(&file, b"plain file").unwrap();
        let out = ChildGuard::spawn(
            Command::new(bin)
                .arg(&file)
                .arg(dir.path().join("out"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .wait_output(Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The example says first which backend runs.
        let (backend, stderr) = stderr.split_once('\n').unwrap_or_default();
        assert!(backend.starts_with("readme: backend "), "{backend}");
        let want = format!(
            "readme: error: {}: not a FIFO (it is a regular file)\n",
            file.display()
        );
        assert_eq!(stderr, want);
        assert!(!stderr.contains("NotAFifo"), "{stderr:?}");
    });
}
