//! Operations on closed and reused handles are typed errors, and never touch
//! the transport that now owns the slot.

mod common;

use std::time::Duration;

use common::*;
use ringpipe::{CloseReason, Error, Event, Events, FifoOptions, Proactor, State};

fn closed(p: &mut Proactor, ev: &mut Events, token: ringpipe::Token) -> (CloseReason, Vec<u8>) {
    let mut out = None;
    poll_until(p, ev, Duration::from_secs(10), |e| match e {
        Event::Closed {
            token: t,
            reason,
            unsent,
        } if *t == token => {
            out = Some((*reason, unsent.to_vec()));
            true
        }
        _ => false,
    });
    out.unwrap()
}

#[test]
fn closed_then_reused_handles_get_typed_errors() {
    watchdog(Duration::from_secs(30), || {
        let dir = tempfile::tempdir().unwrap();
        let opts = FifoOptions::new().create(true);
        let mut p = Proactor::new().unwrap();
        let mut ev = Events::with_capacity(16);

        let rx_old = p.open_receiver(dir.path().join("a"), &opts).unwrap();
        let tx_old = p.open_sender(dir.path().join("a"), &opts).unwrap();
        // Close with a read in flight: Closing until the cancel completes.
        p.close(rx_old).unwrap();
        assert_eq!(p.state(rx_old).unwrap(), State::Closing);
        assert!(matches!(p.close(rx_old), Err(Error::Closed { .. })));
        assert!(p.stats(rx_old).is_ok());
        let (reason, _) = closed(&mut p, &mut ev, rx_old.token());
        assert_eq!(reason, CloseReason::Requested);
        assert_eq!(p.state(rx_old).unwrap(), State::Closed);
        assert!(matches!(p.close(rx_old), Err(Error::Closed { .. })));
        assert!(matches!(p.stats(rx_old), Err(Error::Closed { .. })));

        p.close(tx_old).unwrap();
        assert!(matches!(p.send(tx_old, b"x"), Err(Error::Closed { .. })));
        closed(&mut p, &mut ev, tx_old.token());
        assert!(matches!(p.send(tx_old, b"x"), Err(Error::Closed { .. })));

        // New transports take the freed slots.
        let rx_new = p.open_receiver(dir.path().join("b"), &opts).unwrap();
        let tx_new = p.open_sender(dir.path().join("b"), &opts).unwrap();
        let slots = [rx_new.token().index, tx_new.token().index];
        assert!(slots.contains(&rx_old.token().index) && slots.contains(&tx_old.token().index));

        // Old handles are stale now, whichever kind the new occupant is.
        for old in [rx_old.token(), tx_old.token()] {
            assert!(matches!(p.close(old), Err(Error::Stale { .. })), "{old:?}");
            assert!(matches!(p.state(old), Err(Error::Stale { .. })));
            assert!(matches!(p.stats(old), Err(Error::Stale { .. })));
        }
        assert!(matches!(
            p.send(tx_old, b"intruder"),
            Err(Error::Stale { .. })
        ));

        // And the new transports are untouched: their data flows as sent.
        p.send(tx_new, b"only this").unwrap();
        let mut got = Vec::new();
        poll_until(&mut p, &mut ev, Duration::from_secs(10), |e| {
            if let Event::Data { from, data } = e {
                assert_eq!(*from, rx_new);
                got.extend_from_slice(data);
            }
            got.len() >= 9
        });
        assert_eq!(got, b"only this");
        assert_eq!(p.state(rx_new).unwrap(), State::Open);
        assert_eq!(p.stats(tx_new).unwrap().bytes_accepted, 9);
    });
}

#[test]
fn a_forged_token_is_stale() {
    let mut p = Proactor::new().unwrap();
    let forged = ringpipe::Token {
        index: 12345,
        generation: 7,
        proactor: p.id(),
    };
    assert!(matches!(p.close(forged), Err(Error::Stale { .. })));
    assert!(matches!(p.state(forged), Err(Error::Stale { .. })));
}
