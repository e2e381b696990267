//! Model-based property test: any sequence of payloads, committed at any points, with
//! segment sizes small enough that rolling happens, written in two sessions (create,
//! then reopen and continue) produces exactly the bytes of the reference model, reads
//! back through every reader entry point, and verifies to the writer's digest.

mod common;

use common::{assert_files_match_model, model, never, read_payloads};
use orch_log_format::layout::MIN_SEGMENT_BYTES;
use orch_log_format::{verify, Reader, Writer};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    /// Each payload, and whether to commit right after appending it.
    records: Vec<(Vec<u8>, bool)>,
    segment_bytes: u64,
    /// Records written by the first writer; the rest by a second one after reopening.
    first_session: usize,
}

fn case() -> impl Strategy<Value = Case> {
    let records = prop::collection::vec((prop::collection::vec(any::<u8>(), 0..300), any::<bool>()), 0..40);
    (records, MIN_SEGMENT_BYTES..MIN_SEGMENT_BYTES * 2, any::<prop::sample::Index>()).prop_map(
        |(records, segment_bytes, split)| {
            let first_session = split.index(records.len() + 1);
            Case { records, segment_bytes, first_session }
        },
    )
}

/// Appends `records`, committing where asked; after each explicit commit a fresh
/// `Reader` must see exactly the records committed so far.
fn append_all(writer: &mut Writer, records: &[(Vec<u8>, bool)], all: &[Vec<u8>]) {
    for (payload, commit) in records {
        let seq = writer.append(payload).unwrap();
        assert_eq!(all[seq as usize], *payload);
        if *commit {
            writer.commit().unwrap();
            let seen = read_payloads(writer.dir()).unwrap();
            assert_eq!(seen, all[..=seq as usize], "reader after commit of seq {seq}");
        }
    }
    writer.commit().unwrap();
}

fn check(case: Case) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let all: Vec<Vec<u8>> = case.records.iter().map(|(p, _)| p.clone()).collect();
    let (first, second) = case.records.split_at(case.first_session);

    let mut writer = Writer::create(&dir, never(case.segment_bytes)).unwrap();
    append_all(&mut writer, first, &all);
    let digest_before_close = writer.digest();
    writer.close().unwrap();
    let (first_model, first_digest) = model(&all[..first.len()], case.segment_bytes);
    assert_files_match_model(&dir, &first_model);
    assert_eq!(digest_before_close, first_digest);

    let (mut writer, recovery) = Writer::open(&dir, never(case.segment_bytes)).unwrap();
    assert_eq!(recovery.records, first.len() as u64);
    assert_eq!(recovery.torn, None);
    assert_eq!(writer.next_seq(), first.len() as u64);
    assert_eq!(writer.digest(), first_digest, "reopening restores the chain state");
    append_all(&mut writer, second, &all);
    let digest = writer.digest();
    drop(writer);

    let (segments, model_digest) = model(&all, case.segment_bytes);
    assert_files_match_model(&dir, &segments);
    assert_eq!(digest, model_digest);

    let report = verify(&dir).unwrap();
    assert_eq!(report.digest, digest);
    assert_eq!(report.records, all.len() as u64);
    assert_eq!(report.segments, segments.len());
    assert_eq!(report.bytes, segments.iter().map(|s| s.bytes.len() as u64).sum::<u64>());
    assert!(report.is_clean());

    let reader = Reader::open(&dir).unwrap();
    for from in 0..=all.len() as u64 + 1 {
        let got: Vec<(u64, Vec<u8>)> =
            reader.iter_from(from).map(|r| r.map(|r| (r.seq, r.payload.to_vec())).unwrap()).collect();
        let want: Vec<(u64, Vec<u8>)> =
            all.iter().cloned().enumerate().skip(from as usize).map(|(i, p)| (i as u64, p)).collect();
        assert_eq!(got, want, "iter_from({from})");
    }
}

proptest! {
    // Each case writes a few small files; 64 cases keep the debug-build test under a
    // couple of seconds. Raise with PROPTEST_CASES when hunting.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_payloads_round_trip_through_writer_reopen_reader_and_verify(case in case()) {
        check(case);
    }
}

#[test]
fn empty_log_round_trips() {
    check(Case { records: Vec::new(), segment_bytes: MIN_SEGMENT_BYTES, first_session: 0 });
}

#[test]
fn a_record_larger_than_the_segment_size_gets_a_segment_of_its_own() {
    let big = vec![0xAB; MIN_SEGMENT_BYTES as usize * 2];
    let records = vec![(b"small".to_vec(), false), (big, true), (b"after".to_vec(), false)];
    check(Case { records, segment_bytes: MIN_SEGMENT_BYTES, first_session: 1 });
}

#[test]
fn a_frame_that_exactly_fills_the_segment_stays_in_it() {
    use orch_log_format::layout::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
    let exact = vec![7u8; MIN_SEGMENT_BYTES as usize - SEGMENT_HEADER_LEN - FRAME_HEADER_LEN];
    let records = vec![(exact, false), (Vec::new(), false)];
    let (segments, _) = model(&records.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), MIN_SEGMENT_BYTES);
    assert_eq!(segments[0].bytes.len() as u64, MIN_SEGMENT_BYTES);
    assert_eq!(segments.len(), 2, "the empty record no longer fits and rolls");
    check(Case { records, segment_bytes: MIN_SEGMENT_BYTES, first_session: 2 });
}
