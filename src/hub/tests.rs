//! The hub against a real proactor: shared chunks, refused frames, publish.

use std::rc::Rc;

use super::*;
use crate::event::{CloseReason, FrameBytes, Item, Owned};
use crate::frame::Codec;

/// A proactor, a source receiver and `n` senders (no reader: they hold
/// what they are handed), on FIFOs in a fresh directory.
fn fifos(n: usize) -> (tempfile::TempDir, Proactor, Receiver, Vec<Sender>) {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proactor::new().unwrap();
    let opts = crate::FifoOptions::new().create(true);
    let source = p.open_receiver(dir.path().join("src"), &opts).unwrap();
    let txs = (0..n)
        .map(|i| {
            let path = dir.path().join(format!("out{i}"));
            p.open_sender(path, &opts).unwrap()
        })
        .collect();
    (dir, p, source, txs)
}

/// One chunk per flush, shared by every queue: the frames are in
/// memory once however many subscribers hold them.
#[test]
fn subscribers_share_one_chunk() {
    let (_dir, mut p, source, txs) = fifos(3);
    // A high watermark of one byte: each sender takes one frame, the
    // rest stays queued in the hub.
    let mut hub = Hub::new(
        source,
        HubOptions::new(Codec::Lines).sender_watermarks(1, 0),
    );
    for &tx in &txs {
        assert!(hub.add(&mut p, tx).unwrap());
    }
    for frame in [&b"one"[..], b"two", b"three"] {
        let event = Event::Frame {
            from: source,
            frame,
        };
        assert_eq!(hub.handle(&mut p, event), Handled::Used);
    }
    hub.flush(&mut p);
    assert_eq!(hub.published_frames(), 3);
    let first = hub.subs[0].head().unwrap();
    assert_eq!(Rc::strong_count(first), 3);
    assert!(
        hub.subs
            .iter()
            .all(|s| Rc::ptr_eq(s.head().unwrap(), first))
    );
    assert_eq!(first.bytes, b"one\ntwo\nthree\n");
    for tx in txs {
        let st = hub.stats(tx).unwrap();
        assert_eq!((st.handed_frames, st.handed_bytes), (1, 4));
        assert_eq!((st.queued_frames, st.queued_bytes), (2, 10));
        assert_eq!(p.stats(tx).unwrap().bytes_unsent(), 4);
    }
}

/// A batch with a frame the hub refuses: the frames after it are
/// published, the source's `Closed` after it ends the hub, and the
/// final flush runs.
#[test]
fn a_refused_frame_loses_only_itself() {
    let (_dir, mut p, source, txs) = fifos(1);
    let tx = txs[0];
    let mut hub = Hub::new(source, HubOptions::new(Codec::Lines));
    assert!(hub.add(&mut p, tx).unwrap());
    let mut owned = Owned::default();
    let mut frame = |bytes: &[u8]| Item::Frame {
        from: source,
        frame: FrameBytes::Owned(owned.bytes(bytes.to_vec())),
    };
    let items = vec![
        frame(b"one"),
        frame(b"t\nwo"),
        frame(b"three"),
        Item::Closed {
            token: source.token(),
            reason: CloseReason::Eof,
            unsent: owned.bytes(Vec::new()),
        },
    ];
    let events = Events {
        items,
        bufs: Default::default(),
        owned,
    };
    hub.handle_events(&mut p, &events);
    assert_eq!((hub.published_frames(), hub.rejected_frames()), (2, 1));
    assert!(hub.is_finished());
    assert!(hub.subs[0].closing, "the end reached the subscriber");
    let reports: Vec<HubEvent> = hub.reports().collect();
    assert!(matches!(
        reports[..],
        [
            HubEvent::Rejected {
                frames: 1,
                error: FrameError::NewlineInPayload { at: 1 }
            },
            HubEvent::SourceEnded
        ]
    ));
    let st = hub.stats(tx).unwrap();
    assert_eq!((st.handed_frames, st.handed_bytes), (2, 10));
}

/// `publish` goes through the same queues and counters; a hub with no
/// source ends at `end`, and refuses frames after it.
#[test]
fn publish_without_a_source() {
    let (_dir, mut p, _, txs) = fifos(1);
    let tx = txs[0];
    let mut hub = Hub::without_source(HubOptions::new(Codec::Lines).sender_watermarks(1, 0));
    assert_eq!(hub.source(), None);
    assert!(hub.add(&mut p, tx).unwrap());
    hub.publish(&mut p, b"one").unwrap();
    assert_eq!(
        hub.publish(&mut p, b"t\nwo"),
        Err(FrameError::NewlineInPayload { at: 1 })
    );
    hub.publish(&mut p, b"three").unwrap();
    let st = hub.stats(tx).unwrap();
    assert_eq!((st.handed_frames, st.queued_frames), (1, 1));
    hub.end(&mut p);
    assert_eq!(hub.publish(&mut p, b"four"), Err(FrameError::Ended));
    assert_eq!((hub.published_frames(), hub.rejected_frames()), (2, 2));
    assert!(!hub.is_finished(), "one frame still queued");
}
