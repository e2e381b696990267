//! Crash recovery: a log cut at any byte (what a crash mid-append leaves) opens as
//! exactly a prefix of its records, with the dropped bytes reported; damage that a
//! crash cannot produce (a cut inside a sealed segment) is an error, never truncated.

mod common;

use std::fs;
use std::path::Path;

use common::{model, never, payloads, read_payloads, write_log, ModelSegment};
use orch_log_format::layout::{MIN_SEGMENT_BYTES, SEGMENT_HEADER_LEN};
use orch_log_format::scan::{scan_segment, End, Found};
use orch_log_format::{verify, Damage, Error, TornTail, Writer};

const SEGMENT_BYTES: u64 = MIN_SEGMENT_BYTES;

/// Payloads that fill two segments and leave a short third one of `last_records`
/// records, so cutting the last segment at every byte stays fast.
fn multi_segment_payloads(last_records: usize) -> (Vec<Vec<u8>>, Vec<ModelSegment>) {
    for count in 1.. {
        let p = payloads(count, 300);
        let (segments, _) = model(&p, SEGMENT_BYTES);
        if segments.len() == 3 && segments[2].frame_offsets.len() == last_records {
            return (p, segments);
        }
        assert!(segments.len() <= 3, "no count gives {last_records} records in the third segment");
    }
    unreachable!()
}

/// Length of the valid prefix of `segment` cut at `cut`: its header and whole frames.
/// Zero when the header itself is cut.
fn whole_frames(segment: &ModelSegment, cut: usize) -> (usize, usize) {
    if cut < SEGMENT_HEADER_LEN {
        return (0, 0);
    }
    let ends = segment.frame_offsets.iter().skip(1).copied().chain([segment.bytes.len()]);
    let whole = ends.take_while(|&end| end <= cut).count();
    let valid_len = segment.frame_offsets.get(whole).copied().unwrap_or(segment.bytes.len());
    (whole, valid_len)
}

/// Cuts the last segment at every byte, and checks readers, verify, `Writer::open`
/// and a following append against the prefix the cut leaves.
fn cut_last_segment_at_every_byte(payloads: &[Vec<u8>], segments: &[ModelSegment]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, payloads, SEGMENT_BYTES);
    let last = segments.last().unwrap();
    let path = dir.join(&last.file_name);
    let earlier = payloads.len() - last.frame_offsets.len();
    for cut in 0..=last.bytes.len() {
        fs::write(&path, &last.bytes[..cut]).unwrap();
        let (whole, valid_len) = whole_frames(last, cut);
        let expected = earlier + whole;
        let torn_at = if cut < SEGMENT_HEADER_LEN || cut != valid_len { Some(valid_len as u64) } else { None };
        let prefix = &payloads[..expected];

        // Readers see the prefix and call the rest an unfinished write.
        assert_eq!(read_payloads(&dir).unwrap(), prefix, "reader, cut at {cut}");
        let report = verify(&dir).unwrap_or_else(|e| panic!("verify, cut at {cut}: {e}"));
        assert_eq!(report.records, expected as u64, "verify, cut at {cut}");
        assert_eq!(report.torn_tail, torn_at.map(|o| (path.clone(), o)), "verify, cut at {cut}");
        if whole > 0 || cut < SEGMENT_HEADER_LEN {
            assert_eq!(report.digest, model(prefix, SEGMENT_BYTES).1, "digest of the prefix, cut at {cut}");
        }

        // Recovery drops exactly the torn bytes and keeps the chain.
        let (mut writer, recovery) = Writer::open(&dir, never(SEGMENT_BYTES)).unwrap();
        assert_eq!(recovery.records, expected as u64, "recovery, cut at {cut}");
        let torn = torn_at.map(|offset| TornTail { segment: path.clone(), offset, bytes_dropped: cut as u64 - offset });
        assert_eq!(recovery.torn, torn, "recovery, cut at {cut}");
        assert_eq!(writer.digest(), report.digest, "chain after recovery, cut at {cut}");

        // And the log goes on.
        writer.append(b"after the crash").unwrap();
        writer.commit().unwrap();
        let digest = writer.digest();
        drop(writer);
        let mut want = prefix.to_vec();
        want.push(b"after the crash".to_vec());
        assert_eq!(read_payloads(&dir).unwrap(), want, "append after recovery, cut at {cut}");
        let report = verify(&dir).unwrap();
        assert_eq!((report.digest, report.records, report.torn_tail), (digest, want.len() as u64, None));
        restore(&dir, segments);
    }
}

/// Puts the model's segment files back (recovery may have removed or shortened one,
/// and the append after it may have rolled into a new one).
fn restore(dir: &Path, segments: &[ModelSegment]) {
    for path in common::segment_paths(dir) {
        fs::remove_file(path).unwrap();
    }
    for seg in segments {
        fs::write(dir.join(&seg.file_name), &seg.bytes).unwrap();
    }
}

#[test]
fn cutting_the_last_of_several_segments_at_every_byte_leaves_exactly_a_prefix() {
    let (payloads, segments) = multi_segment_payloads(6);
    cut_last_segment_at_every_byte(&payloads, &segments);
}

#[test]
fn cutting_a_single_segment_log_at_every_byte_leaves_exactly_a_prefix() {
    let payloads = payloads(8, 90);
    let (segments, _) = model(&payloads, SEGMENT_BYTES);
    assert_eq!(segments.len(), 1);
    cut_last_segment_at_every_byte(&payloads, &segments);
}

#[test]
fn deleting_the_last_of_several_segments_leaves_the_earlier_ones() {
    let (payloads, segments) = multi_segment_payloads(6);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, &payloads, SEGMENT_BYTES);
    fs::remove_file(dir.join(&segments[2].file_name)).unwrap();
    let earlier = &payloads[..segments[2].base_seq as usize];
    let report = verify(&dir).unwrap();
    assert_eq!((report.records, report.segments, report.torn_tail), (earlier.len() as u64, 2, None));
    assert_eq!(report.digest, model(earlier, SEGMENT_BYTES).1);
    let (writer, recovery) = Writer::open(&dir, never(SEGMENT_BYTES)).unwrap();
    assert_eq!((recovery.records, recovery.torn), (earlier.len() as u64, None));
    assert_eq!(writer.digest(), report.digest);
    drop(writer);
    assert_eq!(read_payloads(&dir).unwrap(), earlier);
}

#[test]
fn zeros_after_the_last_whole_record_are_a_torn_tail() {
    // A power loss can leave the file longer than the data that reached the disk, the
    // difference reading as zeros (filesystems that extend the size before the data).
    let payloads = payloads(5, 100);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, &payloads, SEGMENT_BYTES);
    let path = common::segment_paths(&dir).pop().unwrap();
    let clean_len = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&path, &bytes).unwrap();

    let report = verify(&dir).unwrap();
    assert_eq!((report.records, report.torn_tail), (5, Some((path.clone(), clean_len))));
    let (_writer, recovery) = Writer::open(&dir, never(SEGMENT_BYTES)).unwrap();
    assert_eq!(recovery.torn, Some(TornTail { segment: path.clone(), offset: clean_len, bytes_dropped: 4096 }));
    assert_eq!(fs::metadata(&path).unwrap().len(), clean_len);
}

#[test]
fn a_partly_written_record_followed_by_zeros_is_damage_not_silently_dropped() {
    // Bytes of a record followed by zeros are also what bit rot in the last record can
    // look like; the format cannot tell the two apart, so it refuses rather than
    // dropping a record that may have been acknowledged (see docs/log-format.md).
    let payloads = payloads(5, 100);
    let (segments, _) = model(&payloads, SEGMENT_BYTES);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, &payloads, SEGMENT_BYTES);
    let seg = &segments[0];
    let last_frame = *seg.frame_offsets.last().unwrap();
    let mut bytes = seg.bytes.clone();
    for b in &mut bytes[last_frame + 10..] {
        *b = 0;
    }
    let path = dir.join(&seg.file_name);
    fs::write(&path, &bytes).unwrap();
    let err = Writer::open(&dir, never(SEGMENT_BYTES)).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { segment, offset, seq: 4, damage: Damage::FrameHeaderChecksum }
            if *segment == path && *offset == last_frame as u64),
        "{err}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing truncated");
}

#[test]
fn cutting_a_sealed_segment_anywhere_is_reported_and_never_repaired() {
    let (payloads, segments) = multi_segment_payloads(6);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, &payloads, SEGMENT_BYTES);
    let sealed = &segments[1];
    let path = dir.join(&sealed.file_name);
    // Every frame boundary, and every byte around the header and the first frames.
    let mut cuts: Vec<usize> = (0..sealed.frame_offsets[2] + 3).collect();
    cuts.extend(sealed.frame_offsets.iter().flat_map(|&o| [o - 1, o, o + 1]));
    cuts.retain(|&c| c < sealed.bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        fs::write(&path, &sealed.bytes[..cut]).unwrap();
        let (whole, valid_len) = whole_frames(sealed, cut);
        let err = verify(&dir).unwrap_err();
        let Error::Corrupt { segment, offset, seq, damage } = &err else { panic!("cut at {cut}: {err}") };
        if cut < SEGMENT_HEADER_LEN {
            assert_eq!((segment, *offset, *seq), (&path, 0, sealed.base_seq), "cut at {cut}");
            assert_eq!(*damage, Damage::ShortSegmentHeader);
        } else if cut == valid_len {
            // A cut on a frame boundary leaves a well-formed but short segment; the
            // next segment's base seq no longer follows on.
            let next = &segments[2];
            let expected = sealed.base_seq + whole as u64;
            assert_eq!((segment, *offset, *seq), (&dir.join(&next.file_name), 0, expected), "cut at {cut}");
            assert_eq!(*damage, Damage::BaseSeq { expected, found: next.base_seq });
        } else {
            let at = (&path, valid_len as u64, sealed.base_seq + whole as u64);
            assert_eq!((segment, *offset, *seq), at, "cut at {cut}");
            assert_eq!(*damage, Damage::TruncatedFrame);
        }

        // The reader yields the records before the damage, then the same error.
        let reader = orch_log_format::Reader::open(&dir).unwrap();
        let results: Vec<_> = reader.iter().collect();
        let ok = results.iter().take_while(|r| r.is_ok()).count();
        assert_eq!(ok as u64, sealed.base_seq + whole as u64, "cut at {cut}");
        assert_eq!(results.len(), ok + 1, "the iterator stops after the error");

        // Opening for writing checks sealed headers (not bodies: that is verify's job)
        // and never shortens a sealed segment.
        let opened = Writer::open(&dir, never(SEGMENT_BYTES));
        if cut < SEGMENT_HEADER_LEN {
            assert!(matches!(opened, Err(Error::Corrupt { .. })), "cut at {cut}");
        }
        drop(opened);
        assert_eq!(fs::read(&path).unwrap(), &sealed.bytes[..cut], "sealed segment untouched, cut at {cut}");
    }
}

#[test]
fn scan_of_every_cut_and_every_zero_fill_follows_the_decision_table() {
    // The same table as above, in memory, over every cut and also over every cut
    // followed by zeros (the power-loss shape).
    let payloads = payloads(12, 200);
    let (segments, _) = model(&payloads, u64::MAX);
    let seg = &segments[0];
    let records_of = |bytes: &[u8], is_last: bool| -> Result<_, Found> {
        let mut seen = Vec::new();
        let scan = scan_segment(bytes, 0, is_last, |offset, seq, p| seen.push((offset, seq, p.to_vec())))?;
        Ok((scan, seen))
    };
    for cut in 0..=seg.bytes.len() {
        let (whole, valid_len) = whole_frames(seg, cut);
        let expect_records: Vec<_> =
            (0..whole).map(|i| (seg.frame_offsets[i] as u64, i as u64, payloads[i].clone())).collect();
        let torn = cut < SEGMENT_HEADER_LEN || cut != valid_len;

        let (scan, seen) = records_of(&seg.bytes[..cut], true).unwrap();
        assert_eq!(seen, expect_records, "cut at {cut}");
        assert_eq!((scan.next_seq, scan.valid_len), (whole as u64, valid_len as u64), "cut at {cut}");
        assert_eq!(scan.end, if torn { End::Torn { offset: valid_len as u64 } } else { End::Clean }, "cut at {cut}");
        assert_eq!(scan.header.is_none(), cut < SEGMENT_HEADER_LEN);

        // A sealed segment has no torn tail: every cut but a clean one is damage.
        match records_of(&seg.bytes[..cut], false) {
            Ok((scan, _)) => assert!(!torn && scan.end == End::Clean, "cut at {cut}"),
            Err(found) => {
                assert!(torn, "cut at {cut}");
                assert_eq!((found.offset, found.seq), (valid_len as u64, whole as u64), "cut at {cut}");
            }
        }

        if !torn {
            let mut zero_filled = seg.bytes[..cut].to_vec();
            zero_filled.resize(cut + 1000, 0);
            let (scan, seen) = records_of(&zero_filled, true).unwrap();
            assert_eq!(seen.len(), whole, "zeros after {cut}");
            assert_eq!(scan.end, End::Torn { offset: cut as u64 }, "zeros after {cut}");
        }
    }
}
