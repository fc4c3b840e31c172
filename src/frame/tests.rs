//! The codecs and the decoder: exact cases, and any cuts of any frames.

use super::*;
use proptest::prelude::*;

/// Decoded frames, each with whether it was lent from the chunk fed.
type Frames = Vec<(Vec<u8>, bool)>;

/// Feeds each chunk, collecting frames, until the end or an error.
fn decode(decoder: &mut FrameDecoder, chunks: &[&[u8]]) -> (Frames, Result<(), FrameError>) {
    let mut frames = Vec::new();
    for chunk in chunks {
        let range = chunk.as_ptr_range();
        let result = decoder.feed(chunk, |frame| {
            let inside = frame.is_empty() || range.contains(&frame.as_ptr());
            frames.push((frame.to_vec(), inside));
        });
        if result.is_err() {
            return (frames, result);
        }
    }
    (frames, Ok(()))
}

/// As `decode`, through `feed_pieces` with runs: a run comes apart into
/// its payloads, each lent, after checking it is whole frames of the
/// chunk with the count it claims.
fn decode_runs(decoder: &mut FrameDecoder, chunks: &[&[u8]]) -> (Frames, Result<(), FrameError>) {
    let decoder_codec = decoder.codec();
    let mut frames = Vec::new();
    for chunk in chunks {
        let range = chunk.as_ptr_range();
        let result = decoder.feed_pieces(chunk, true, |piece| match piece {
            Piece::Frame(frame) => {
                let inside = frame.is_empty() || range.contains(&frame.as_ptr());
                frames.push((frame.to_vec(), inside));
            }
            Piece::Run { wire, frames: n } => {
                let codec = decoder_codec;
                assert!(range.contains(&wire.as_ptr()));
                assert!(codec.frame_len(wire).is_some(), "starts whole");
                let got: Vec<&[u8]> = codec.payloads(wire).collect();
                assert_eq!(got.len(), n, "the run's count");
                let len: usize = got.iter().map(|f| f.len() + codec.overhead()).sum();
                assert_eq!(len, wire.len(), "the run is whole frames");
                frames.extend(got.into_iter().map(|f| (f.to_vec(), true)));
            }
        });
        if result.is_err() {
            return (frames, result);
        }
    }
    (frames, Ok(()))
}

fn payloads(frames: &Frames) -> Vec<Vec<u8>> {
    frames.iter().map(|(f, _)| f.clone()).collect()
}

fn encode_all(codec: Codec, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for f in frames {
        codec.encode(f, &mut wire).unwrap();
    }
    wire
}

/// Splits `wire` at the given points (taken modulo its length).
fn cut<'a>(wire: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = points.iter().map(|p| p % (wire.len() + 1)).collect();
    at.push(0);
    at.push(wire.len());
    at.sort_unstable();
    at.windows(2).map(|w| &wire[w[0]..w[1]]).collect()
}

#[test]
fn encodes_lines() {
    let mut out = b"x".to_vec();
    encode_line(b"ab", &mut out).unwrap();
    encode_line(b"", &mut out).unwrap();
    assert_eq!(out, b"xab\n\n");
    assert_eq!(
        encode_line(b"a\nb", &mut out),
        Err(FrameError::NewlineInPayload { at: 1 })
    );
    assert_eq!(out, b"xab\n\n", "a refused payload leaves out untouched");
}

#[test]
fn encodes_length_prefixed() {
    let mut out = Vec::new();
    encode_length_prefixed(b"abc", &mut out).unwrap();
    encode_length_prefixed(b"", &mut out).unwrap();
    assert_eq!(out, b"\x03\0\0\0abc\0\0\0\0");
    assert_eq!(Codec::LengthPrefixed.overhead(), 4);
    assert_eq!(Codec::Lines.overhead(), 1);
}

#[test]
fn frames_inside_a_chunk_are_lent_split_ones_copied() {
    for codec in [Codec::Lines, Codec::LengthPrefixed] {
        let wire = encode_all(codec, &[b"one".to_vec(), b"two".to_vec(), b"3".to_vec()]);
        // Cut inside "two": "one" is whole in the first chunk, "3" in the
        // second.
        let split = codec.overhead() + 3 + codec.overhead() + 1;
        let (a, b) = wire.split_at(split);
        let mut d = FrameDecoder::new(codec, 16);
        let (frames, result) = decode(&mut d, &[a, b]);
        result.unwrap();
        let expect: Vec<(Vec<u8>, bool)> = vec![
            (b"one".to_vec(), true),
            (b"two".to_vec(), false),
            (b"3".to_vec(), true),
        ];
        assert_eq!(frames, expect, "{codec:?}");
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn split_frames_reuse_the_buffer() {
    for codec in [Codec::Lines, Codec::LengthPrefixed] {
        let frame = vec![b'a'; 100];
        let wire = encode_all(codec, &vec![frame.clone(); 200]);
        let mut d = FrameDecoder::new(codec, 100);
        let mut count = 0;
        let mut capacity = None;
        // Chunks of 37 bytes split almost every frame; the cut's offset
        // in a frame repeats every 37 frames, so by frame 40 the buffer
        // has seen its largest partial frame.
        for chunk in wire.chunks(37) {
            d.feed(chunk, |f| {
                assert_eq!(f, &frame[..]);
                count += 1;
            })
            .unwrap();
            let cap = d.partial.capacity();
            if count >= 40 {
                assert_eq!(*capacity.get_or_insert(cap), cap, "{codec:?} reallocated");
            }
        }
        assert_eq!(count, 200);
        // Amortised growth may round up, but stays within twice a frame.
        assert!(capacity.unwrap() <= 2 * (100 + LENGTH_HEADER));
    }
}

/// The partial frame's buffer grows by doubling, but never past the
/// largest frame: a frame near the maximum costs no more than that.
#[test]
fn a_partial_frame_never_grows_past_the_largest_frame() {
    let mut d = FrameDecoder::new(Codec::Lines, 64);
    for _ in 0..6 {
        d.feed(&[b'a'; 10], |_| panic!("no newline yet")).unwrap();
    }
    assert!(
        d.partial.capacity() <= 64 + LENGTH_HEADER,
        "{}",
        d.partial.capacity()
    );
    d.feed(b"\n", |f| assert_eq!(f.len(), 60)).unwrap();

    let mut d = FrameDecoder::new(Codec::LengthPrefixed, 64);
    let wire = encode_all(Codec::LengthPrefixed, &[vec![1; 36], vec![2; 60]]);
    for piece in wire.chunks(30) {
        d.feed(piece, |_| {}).unwrap();
        assert!(
            d.partial.capacity() <= 64 + LENGTH_HEADER,
            "{}",
            d.partial.capacity()
        );
    }
}

#[test]
fn zero_length_frames() {
    let mut d = FrameDecoder::new(Codec::LengthPrefixed, 0);
    let wire = encode_all(Codec::LengthPrefixed, &[vec![], vec![], vec![]]);
    let chunks = cut(&wire, &[1, 5, 6, 7, 11]);
    let (frames, result) = decode(&mut d, &chunks);
    result.unwrap();
    assert_eq!(payloads(&frames), vec![Vec::<u8>::new(); 3]);

    let mut d = FrameDecoder::new(Codec::Lines, 0);
    let (frames, result) = decode(&mut d, &[b"\n", b"\n\n"]);
    result.unwrap();
    assert_eq!(payloads(&frames), vec![Vec::<u8>::new(); 3]);
}

#[test]
fn long_line_fails_before_its_newline() {
    let mut d = FrameDecoder::new(Codec::Lines, 4);
    let (frames, result) = decode(&mut d, &[b"ok\nabc", b"de"]);
    assert_eq!(payloads(&frames), [b"ok".to_vec()]);
    assert_eq!(result, Err(FrameError::TooLong { len: 5, max: 4 }));
    // Failed: no more frames, the same error, nothing buffered.
    assert_eq!(d.feed(b"x\n", |_| panic!("fed after failure")), result);
    assert!(d.is_failed());
    assert_eq!(d.buffered(), 0);
    // A complete line that is too long fails too.
    d.reset();
    assert_eq!(
        d.feed(b"abcdef\n", |_| {}),
        Err(FrameError::TooLong { len: 6, max: 4 })
    );
}

#[test]
fn length_above_max_fails_on_the_header() {
    let mut d = FrameDecoder::new(Codec::LengthPrefixed, 10);
    let mut wire = encode_all(Codec::LengthPrefixed, &[b"ok".to_vec()]);
    wire.extend_from_slice(&11u32.to_le_bytes());
    // Header split over two chunks, payload never sent.
    let (frames, result) = decode(&mut d, &[&wire[..8], &wire[8..]]);
    assert_eq!(payloads(&frames), [b"ok".to_vec()]);
    assert_eq!(result, Err(FrameError::TooLong { len: 11, max: 10 }));
    assert_eq!(d.finish(), result, "finish reports the failure");
    assert!(!d.is_failed(), "finish resets");
    // A header of u32::MAX is only a length, not an allocation.
    let mut d = FrameDecoder::new(Codec::LengthPrefixed, 1 << 20);
    assert!(d.feed(&[0xff; 4], |_| {}).is_err());
}

#[test]
fn finish_reports_truncated_frames() {
    let mut d = FrameDecoder::new(Codec::LengthPrefixed, 10);
    d.feed(b"\x05\0\0\0ab", |_| panic!("incomplete")).unwrap();
    assert_eq!(d.buffered(), 6);
    assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: 6 }));
    assert_eq!(d.buffered(), 0);
    assert_eq!(d.finish(), Ok(()));

    let mut d = FrameDecoder::new(Codec::Lines, 10);
    d.feed(b"a\nbc", |_| {}).unwrap();
    assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: 2 }));
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Lines), Just(Codec::LengthPrefixed)]
}

/// Frames valid for `codec`: no newline in lines.
fn frames_for(codec: Codec, max: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    let byte = match codec {
        // Newlines are rare in random bytes: bias towards them so line
        // boundaries fall everywhere, then take them out.
        Codec::Lines => prop_oneof![Just(b'x'), any::<u8>()]
            .prop_map(|b| if b == b'\n' { b'y' } else { b })
            .boxed(),
        Codec::LengthPrefixed => prop_oneof![Just(0u8), Just(b'\n'), any::<u8>()].boxed(),
    };
    prop::collection::vec(prop::collection::vec(byte, 0..=max), 0..40)
}

proptest! {
    #[test]
    fn any_cuts_decode_to_the_same_frames(
        (codec, frames) in codec().prop_flat_map(|c| (Just(c), frames_for(c, 64))),
        points in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let wire = encode_all(codec, &frames);
        let chunks = cut(&wire, &points);
        let mut d = FrameDecoder::new(codec, 64);
        let (got, result) = decode(&mut d, &chunks);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(&payloads(&got), &frames);
        prop_assert_eq!(d.buffered(), 0);
        prop_assert_eq!(d.finish(), Ok(()));
        // In runs: the same frames, each lent exactly when `feed` lends it
        // (a split frame is never part of a run).
        let (runs, result) = decode_runs(&mut d, &chunks);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(&runs, &got);
        // Lent exactly when the whole encoded frame is inside one chunk.
        let mut ends = Vec::new();
        let mut at = 0;
        for chunk in &chunks {
            at += chunk.len();
            ends.push(at);
        }
        let mut start = 0;
        for (frame, (_, lent)) in frames.iter().zip(&got) {
            let end = start + frame.len() + codec.overhead();
            let whole = !ends.iter().any(|&cut| start < cut && cut < end);
            if whole || !frame.is_empty() {
                prop_assert_eq!(*lent, whole, "frame at {}..{}", start, end);
            }
            start = end;
        }
    }

    #[test]
    fn an_oversized_frame_fails_after_the_frames_before_it(
        (codec, before) in codec().prop_flat_map(|c| (Just(c), frames_for(c, 32))),
        extra in 1usize..100,
        points in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let max = 32;
        let mut frames = before.clone();
        frames.push(vec![b'z'; max + extra]);
        frames.push(b"after".to_vec());
        let wire = encode_all(codec, &frames);
        let chunks = cut(&wire, &points);
        let mut d = FrameDecoder::new(codec, max);
        let (got, result) = decode(&mut d, &chunks);
        let (runs, runs_result) = decode_runs(&mut FrameDecoder::new(codec, max), &chunks);
        prop_assert_eq!(&runs_result, &result);
        prop_assert_eq!(payloads(&runs), payloads(&got));
        prop_assert_eq!(payloads(&got), before);
        match result {
            Err(FrameError::TooLong { len, max: m }) => {
                prop_assert_eq!(m, max);
                prop_assert!(len > max && len <= max + extra, "len {}", len);
                if codec == Codec::LengthPrefixed {
                    prop_assert_eq!(len, max + extra);
                }
            }
            other => prop_assert!(false, "expected TooLong, got {:?}", other),
        }
        prop_assert!(d.is_failed());
        prop_assert!(d.buffered() <= max + LENGTH_HEADER);
    }

    #[test]
    fn runs_of_lines_decode_as_line_by_line(
        max in 0usize..24,
        lens in prop::collection::vec(0usize..30, 0..60),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        // Lines around the maximum, some over it: the run's block check
        // must accept exactly what the search per line accepts, and stop
        // at the same line with the same error.
        let frames: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'a'; n]).collect();
        let wire = encode_all(Codec::Lines, &frames);
        let chunks = cut(&wire, &points);
        let mut by_line = FrameDecoder::new(Codec::Lines, max);
        let mut by_run = FrameDecoder::new(Codec::Lines, max);
        let (want, want_result) = decode(&mut by_line, &chunks);
        let (got, result) = decode_runs(&mut by_run, &chunks);
        prop_assert_eq!(result, want_result);
        prop_assert_eq!(got, want);
        prop_assert_eq!(by_run.buffered(), by_line.buffered());
    }

    #[test]
    fn payloads_of_encoded_frames_are_the_frames(
        (codec, frames) in codec().prop_flat_map(|c| (Just(c), frames_for(c, 64))),
    ) {
        let wire = encode_all(codec, &frames);
        let got: Vec<Vec<u8>> = codec.payloads(&wire).map(<[u8]>::to_vec).collect();
        prop_assert_eq!(&got, &frames);
        // A frame cut short is not a payload.
        if let Some(last) = frames.last() {
            let whole = wire.len() - last.len() - codec.overhead();
            let short = &wire[..wire.len() - 1];
            let got: Vec<&[u8]> = codec.payloads(short).collect();
            prop_assert_eq!(got.len(), frames.len() - 1);
            prop_assert!(whole <= short.len());
        }
    }

    #[test]
    fn zero_length_frames_in_any_cuts(
        lens in prop::collection::vec(prop_oneof![Just(0usize), 0usize..8], 0..50),
        points in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let frames: Vec<Vec<u8>> = lens.iter().map(|&n| vec![7u8; n]).collect();
        let wire = encode_all(Codec::LengthPrefixed, &frames);
        let chunks = cut(&wire, &points);
        let mut d = FrameDecoder::new(Codec::LengthPrefixed, 8);
        let (got, result) = decode(&mut d, &chunks);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(payloads(&got), frames);
    }
}

proptest! {
    // Frames of up to two pages: fewer cases keep it quick.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn atomic_runs_are_whole_frames_within_pipe_buf(
        (codec, frames) in codec().prop_flat_map(|c| (Just(c), frames_for(c, PIPE_BUF + 200))),
    ) {
        let wire = encode_all(codec, &frames);
        let mut joined = Vec::new();
        let mut got = Vec::new();
        codec.atomic_runs(&wire, |run, atomic| {
            joined.extend_from_slice(run);
            let mut d = FrameDecoder::new(codec, usize::MAX >> 1);
            let before = got.len();
            d.feed(run, |f| got.push(f.to_vec())).unwrap();
            assert_eq!(d.finish(), Ok(()), "a run ends inside a frame");
            if atomic {
                assert!(run.len() <= PIPE_BUF, "atomic run of {}", run.len());
            } else {
                assert!(run.len() > PIPE_BUF && got.len() == before + 1);
            }
        }).unwrap();
        prop_assert_eq!(&joined, &wire);
        prop_assert_eq!(&got, &frames);
        prop_assert!(Checked::new(codec, &wire).is_ok());
        // Less its last byte, the wire ends inside its last frame (an
        // empty line aside: the line before it is whole).
        let last_whole = codec == Codec::LengthPrefixed || frames.last().is_some_and(|f| !f.is_empty());
        if !wire.is_empty() && last_whole {
            let short = &wire[..wire.len() - 1];
            // Only runs of the whole frames before the cut, if any.
            let mut before = Vec::new();
            let r = codec.atomic_runs(short, |run, _| before.extend_from_slice(run));
            prop_assert!(matches!(r, Err(FrameError::Truncated { .. })), "{:?}", r);
            prop_assert_eq!(Checked::new(codec, short).err(), r.err());
            prop_assert!(short.starts_with(&before));
            let whole: Vec<&[u8]> = codec.payloads(&before).collect();
            prop_assert!(whole.len() < frames.len());
            prop_assert_eq!(&whole[..], &frames.iter().map(Vec::as_slice).collect::<Vec<_>>()[..whole.len()]);
        }
    }
}
