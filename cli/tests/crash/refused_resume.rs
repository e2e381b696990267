//! A resume that is refused leaves the run as it found it: not a byte of its log changed
//! and no lock file made, whatever the reason — damage only `verify` sees (the reader
//! takes the records), or a log that does not re-decide, with a torn tail that opening it
//! for writing would have dropped. One that goes ahead first makes what the store lacks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orch_engine::journal::{read_records, Journal};
use orch_engine::record::{Event, Record};
use orch_log_format::layout::{SegmentHeader, SEGMENT_HEADER_LEN};
use orch_log_format::{Durability, Options};

use super::{Scratch, FLAKY};

/// Every file of `dir`, by name, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// A finished real run cut back to the first two thirds of its records, `edit`ed, and
/// written over its log in 4 KiB segments: a run whose engine died, as resume finds it.
fn unfinished(s: &Scratch, edit: impl FnOnce(&mut Vec<Record>)) -> (String, PathBuf) {
    s.orch(&["run", "wf.toml"]).expect(0).unwrap();
    let run = s.run_dir().unwrap();
    let log = run.join("log");
    let mut records = read_records(&log).unwrap();
    records.truncate(records.len() * 2 / 3);
    edit(&mut records);
    std::fs::remove_dir_all(&log).unwrap();
    let mut journal = Journal::create(&log, Options { durability: Durability::Never, segment_bytes: 4096 }).unwrap();
    journal.append(&records).unwrap();
    journal.close().unwrap();
    (run.file_name().unwrap().to_string_lossy().into_owned(), log)
}

#[test]
fn a_resume_refused_for_damage_only_verify_sees_changes_nothing() {
    let s = Scratch::new(FLAKY);
    let (id, log) = unfinished(&s, |_| {});
    // The first segment's chain link changed behind a header checksum made right again:
    // the reader takes every record, only the chain says the segment is not this log's.
    let first = log.join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&first).unwrap();
    let mut header = SegmentHeader::decode(bytes[..SEGMENT_HEADER_LEN].try_into().unwrap()).unwrap();
    header.link[0] ^= 1;
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
    std::fs::write(&first, bytes).unwrap();
    assert!(std::fs::read_dir(&log).unwrap().count() >= 2, "a log of several segments");

    let before = snapshot(&log);
    let out = s.orch(&["resume", &id]);
    out.expect(2).unwrap();
    assert!(out.stderr.contains("chain link does not match"), "{}", out.stderr);
    assert_eq!(snapshot(&log), before, "the refused resume changed the log");
}

#[test]
fn a_resume_refused_for_a_log_that_does_not_redecide_keeps_its_torn_tail() {
    let s = Scratch::new(FLAKY);
    // A decision recorded later than the input it follows: not what the engine decides.
    let (id, log) = unfinished(&s, |records| {
        let late = records.iter().rposition(|r| matches!(r.event, Event::AttemptDispatched(_))).unwrap();
        records[late].time_ms += 5;
    });
    // And half a frame header after the last record: a write the crash cut short.
    let last = std::fs::read_dir(&log).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[7, 0, 0, 0, 1]);
    std::fs::write(&last, bytes).unwrap();

    let before = snapshot(&log);
    let out = s.orch(&["resume", &id]);
    out.expect(2).unwrap();
    assert!(out.stderr.contains("does not re-decide"), "{}", out.stderr);
    assert_eq!(snapshot(&log), before, "the refused resume dropped the torn tail or made a lock file");
}

#[test]
fn a_resume_in_a_store_whose_blobs_were_deleted_makes_them_again() {
    let s = Scratch::new(FLAKY);
    let (id, _) = unfinished(&s, |_| {});
    std::fs::remove_dir_all(s.path().join(".orch/blobs")).unwrap();
    // Every attempt used to fail to start (exit 127): its output had nowhere to go.
    s.orch(&["resume", &id]).expect(0).unwrap();
    assert!(s.path().join(".orch/blobs/tmp").is_dir());
    let records = read_records(&s.run_dir().unwrap().join("log")).unwrap();
    let exits = records.iter().filter_map(|r| match &r.event {
        Event::AttemptExited(e) => Some(e.status),
        _ => None,
    });
    assert!(
        exits.clone().all(|status| status != orch_engine::record::ExitStatus::Code(127)),
        "{:?}",
        exits.collect::<Vec<_>>()
    );
}
