//! Damage detection: every single-bit flip anywhere in a multi-segment log, and every
//! structural change (segments missing, swapped, duplicated or spliced in from another
//! log; records dropped, duplicated or reordered) is reported as `Error::Corrupt` naming
//! the segment file, the byte offset of the damaged frame and its seq.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{model, payloads, write_log, ModelSegment};
use orch_log_format::layout::{segment_file_name, MIN_SEGMENT_BYTES, SEGMENT_HEADER_LEN};
use orch_log_format::{verify, Damage, Error, Reader, Writer};

const SEGMENT_BYTES: u64 = MIN_SEGMENT_BYTES;

/// Three segments: two full sealed ones and a short active one, holding small and
/// large records (an empty one included).
fn fixture_payloads() -> Vec<Vec<u8>> {
    let mut p = payloads(4, 40);
    p.insert(1, Vec::new());
    p.push(vec![0x5A; 3900]);
    p.extend(payloads(3, 60));
    p.push(vec![0xA5; 3800]);
    p.extend(payloads(4, 30));
    p
}

fn write_fixture(dir: &Path) -> (Vec<Vec<u8>>, Vec<ModelSegment>) {
    let payloads = fixture_payloads();
    let (segments, _) = model(&payloads, SEGMENT_BYTES);
    assert_eq!(segments.len(), 3, "fixture shape");
    write_log(dir, &payloads, SEGMENT_BYTES);
    (payloads, segments)
}

/// Offset and seq of the frame (or segment header) that holds byte `at`.
fn owner(seg: &ModelSegment, at: usize) -> (u64, u64) {
    if at < SEGMENT_HEADER_LEN {
        return (0, seg.base_seq);
    }
    let i = seg.frame_offsets.partition_point(|&o| o <= at) - 1;
    (seg.frame_offsets[i] as u64, seg.base_seq + i as u64)
}

fn corrupt(err: Error) -> (std::path::PathBuf, u64, u64, Damage) {
    match err {
        Error::Corrupt { segment, offset, seq, damage } => (segment, offset, seq, damage),
        other => panic!("expected Error::Corrupt, got {other}"),
    }
}

#[test]
fn every_single_bit_flip_is_reported_with_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (_, segments) = write_fixture(&dir);
    let mut torn_tails = 0;
    let mut flips = 0;
    for seg in &segments {
        let path = dir.join(&seg.file_name);
        let file = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for at in 0..seg.bytes.len() {
            let (frame_offset, frame_seq) = owner(seg, at);
            for bit in 0..8 {
                file.write_at(&[seg.bytes[at] ^ (1 << bit)], at as u64).unwrap();
                flips += 1;
                match verify(&dir) {
                    Err(err) => {
                        let (segment, offset, seq, damage) = corrupt(err);
                        let place = format!("flip of bit {bit} of byte {at} in {}", seg.file_name);
                        assert_eq!((&segment, offset, seq), (&path, frame_offset, frame_seq), "{place}: {damage}");
                        if at < SEGMENT_HEADER_LEN {
                            assert!(matches!(damage, Damage::SegmentHeader(_)), "{place}: {damage}");
                        } else if at < frame_offset as usize + orch_log_format::layout::FRAME_HEADER_LEN {
                            assert_eq!(damage, Damage::FrameHeaderChecksum, "{place}");
                        } else {
                            assert_eq!(damage, Damage::PayloadChecksum, "{place}");
                        }
                    }
                    Ok(report) => {
                        assert!(report.torn_tail.is_some(), "flip of bit {bit} of byte {at} went unnoticed");
                        torn_tails += 1;
                    }
                }
                file.write_at(&seg.bytes[at..at + 1], at as u64).unwrap();
            }
        }
    }
    // Both frame checksums make a flip distinguishable from a torn write: a torn tail
    // is a cut or zeros, and one flipped bit is neither.
    assert_eq!(torn_tails, 0, "flips mistaken for a torn tail");
    assert_eq!(flips, segments.iter().map(|s| s.bytes.len() * 8).sum::<usize>());
    assert!(verify(&dir).unwrap().is_clean(), "every flip was undone");
}

#[test]
fn the_reader_stops_at_every_flipped_bit_too() {
    // The reader checks both checksums and the header of every segment it enters, but
    // not the chain; it stops at the damaged record after yielding the ones before it.
    // Sampled (every 7th bit) since verify above already covers each bit.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (_, segments) = write_fixture(&dir);
    for seg in &segments {
        let path = dir.join(&seg.file_name);
        let file = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for bit_index in (0..seg.bytes.len() * 8).step_by(7) {
            let (at, bit) = (bit_index / 8, bit_index % 8);
            let (frame_offset, frame_seq) = owner(seg, at);
            file.write_at(&[seg.bytes[at] ^ (1 << bit)], at as u64).unwrap();
            let reader = Reader::open(&dir).unwrap();
            let results: Vec<_> = reader.iter().collect();
            let ok = results.iter().take_while(|r| r.is_ok()).count() as u64;
            assert_eq!(ok, frame_seq, "records before the flip of bit {bit} of byte {at}");
            let err = results.into_iter().nth(ok as usize).expect("an error after the good records").unwrap_err();
            let (segment, offset, seq, _) = corrupt(err);
            assert_eq!((segment, offset, seq), (path.clone(), frame_offset, frame_seq));
            file.write_at(&seg.bytes[at..at + 1], at as u64).unwrap();
        }
    }
}

#[test]
fn a_missing_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (_, segments) = write_fixture(&dir);
    fs::remove_file(dir.join(&segments[1].file_name)).unwrap();
    let (segment, offset, seq, damage) = corrupt(verify(&dir).unwrap_err());
    assert_eq!((segment, offset, seq), (dir.join(&segments[2].file_name), 0, segments[1].base_seq));
    assert_eq!(damage, Damage::BaseSeq { expected: segments[1].base_seq, found: segments[2].base_seq });
    let reader = Reader::open(&dir).unwrap();
    let results: Vec<_> = reader.iter().collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count() as u64, segments[1].base_seq);
    assert!(results.last().unwrap().as_ref().is_err_and(Error::is_corruption));
}

#[test]
fn a_missing_first_segment_is_detected_by_every_entry_point() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (_, segments) = write_fixture(&dir);
    fs::remove_file(dir.join(&segments[0].file_name)).unwrap();
    let expected = Damage::BaseSeq { expected: 0, found: segments[1].base_seq };
    let at_second = (dir.join(&segments[1].file_name), 0, 0, expected);
    assert_eq!(corrupt(verify(&dir).unwrap_err()), at_second);
    assert_eq!(corrupt(Writer::open(&dir, common::never(SEGMENT_BYTES)).unwrap_err()), at_second);
    let reader = Reader::open(&dir).unwrap();
    let first = reader.iter().next().expect("an error, not an empty log");
    assert_eq!(corrupt(first.unwrap_err()), at_second);
}

#[test]
fn swapped_segments_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (_, segments) = write_fixture(&dir);
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        let (pa, pb) = (dir.join(&segments[a].file_name), dir.join(&segments[b].file_name));
        fs::write(&pa, &segments[b].bytes).unwrap();
        fs::write(&pb, &segments[a].bytes).unwrap();
        let (segment, offset, seq, damage) = corrupt(verify(&dir).unwrap_err());
        assert_eq!((segment, offset, seq), (pa.clone(), 0, segments[a].base_seq), "swap {a} and {b}");
        assert_eq!(damage, Damage::BaseSeq { expected: segments[a].base_seq, found: segments[b].base_seq });
        fs::write(&pa, &segments[a].bytes).unwrap();
        fs::write(&pb, &segments[b].bytes).unwrap();
    }
    assert!(verify(&dir).unwrap().is_clean());
}

#[test]
fn a_duplicated_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (payloads, segments) = write_fixture(&dir);
    // A copy of a sealed segment placed where the next segment would start.
    let next = dir.join(segment_file_name(payloads.len() as u64));
    fs::write(&next, &segments[1].bytes).unwrap();
    let (segment, offset, seq, damage) = corrupt(verify(&dir).unwrap_err());
    assert_eq!((segment, offset, seq), (next, 0, payloads.len() as u64));
    assert_eq!(damage, Damage::BaseSeq { expected: payloads.len() as u64, found: segments[1].base_seq });
}

#[test]
fn a_segment_spliced_in_from_another_log_breaks_the_chain() {
    // Two logs that differ in one payload of the first segment: every later segment of
    // one is well formed and sits at the right seq in the other, but its link names the
    // other log's history.
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (mut payloads, segments_a) = write_fixture(&dir_a);
    payloads[0][0] ^= 1;
    write_log(&dir_b, &payloads, SEGMENT_BYTES);
    let (segments_b, _) = model(&payloads, SEGMENT_BYTES);
    for k in [1, 2] {
        assert_eq!(segments_a[k].bytes.len(), segments_b[k].bytes.len());
        let path = dir_a.join(&segments_a[k].file_name);
        fs::write(&path, &segments_b[k].bytes).unwrap();
        let (segment, offset, seq, damage) = corrupt(verify(&dir_a).unwrap_err());
        assert_eq!((segment, offset, seq, damage), (path.clone(), 24, segments_a[k].base_seq, Damage::ChainLink));
        fs::write(&path, &segments_a[k].bytes).unwrap();
    }
}

/// Rebuilds segment `seg` with its frames in the order `order` (indexes into its
/// frames), keeping the header.
fn reframe(seg: &ModelSegment, order: &[usize]) -> Vec<u8> {
    let frame = |i: usize| {
        let end = seg.frame_offsets.get(i + 1).copied().unwrap_or(seg.bytes.len());
        &seg.bytes[seg.frame_offsets[i]..end]
    };
    let mut out = seg.bytes[..SEGMENT_HEADER_LEN].to_vec();
    for &i in order {
        out.extend_from_slice(frame(i));
    }
    out
}

#[test]
fn reordered_dropped_and_duplicated_records_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (_, segments) = write_fixture(&dir);
    for (k, seg) in segments.iter().enumerate() {
        let n = seg.frame_offsets.len();
        let path = dir.join(&seg.file_name);
        let base = seg.base_seq;
        let mut cases: Vec<(Vec<usize>, usize, Damage)> = vec![
            // The first two swapped: the first frame now carries seq base + 1.
            ([1, 0].into_iter().chain(2..n).collect(), 0, Damage::SeqMismatch { expected: base, found: base + 1 }),
            // The second dropped.
            ([0].into_iter().chain(2..n).collect(), 1, Damage::SeqMismatch { expected: base + 1, found: base + 2 }),
            // The first duplicated.
            ([0, 0].into_iter().chain(1..n).collect(), 1, Damage::SeqMismatch { expected: base + 1, found: base }),
        ];
        if k + 1 < segments.len() {
            // The last record of a sealed segment dropped: the segment is well formed
            // but the next one no longer follows on.
            cases.push((
                (0..n - 1).collect(),
                usize::MAX,
                Damage::BaseSeq { expected: base + n as u64 - 1, found: base + n as u64 },
            ));
        }
        for (order, at_frame, damage) in cases {
            fs::write(&path, reframe(seg, &order)).unwrap();
            let got = corrupt(verify(&dir).unwrap_err());
            let want = if at_frame == usize::MAX {
                (dir.join(&segments[k + 1].file_name), 0, base + n as u64 - 1, damage)
            } else {
                (path.clone(), seg.frame_offsets[at_frame] as u64, base + at_frame as u64, damage)
            };
            assert_eq!(got, want, "segment {k}, order {order:?}");
            fs::write(&path, &seg.bytes).unwrap();
        }
    }
}
