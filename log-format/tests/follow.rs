//! Following a live log: a `Follower` hands over exactly the records committed since
//! its last poll, across segment rolls, and treats a segment caught mid-creation as
//! "nothing yet" rather than damage.

mod common;

use std::fs;

use common::{never, payloads};
use orch_log_format::layout::{segment_file_name, MIN_SEGMENT_BYTES};
use orch_log_format::{Follower, Writer};

fn poll_all(follower: &mut Follower) -> Vec<(u64, Vec<u8>)> {
    let mut seen = Vec::new();
    let n = follower.poll(|r| seen.push((r.seq, r.payload.to_vec()))).unwrap();
    assert_eq!(n as usize, seen.len());
    seen
}

fn numbered(from: usize, all: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
    all.iter().cloned().enumerate().skip(from).map(|(i, p)| (i as u64, p)).collect()
}

#[test]
fn a_follower_sees_records_appended_after_it_opened_across_segment_rolls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let all = payloads(90, 200);
    let mut writer = Writer::create(&dir, never(MIN_SEGMENT_BYTES)).unwrap();
    writer.append_batch(all[..3].iter().map(Vec::as_slice)).unwrap();

    let mut follower = Follower::new(&dir, 0).unwrap();
    assert_eq!(poll_all(&mut follower), numbered(0, &all[..3]));
    assert_eq!(poll_all(&mut follower), vec![], "nothing new");

    let mut handed_over = 3;
    for chunk in all[3..].chunks(11) {
        writer.append_batch(chunk.iter().map(Vec::as_slice)).unwrap();
        let seen = poll_all(&mut follower);
        assert_eq!(seen, numbered(handed_over, &all[..handed_over + chunk.len()]));
        handed_over += chunk.len();
        assert_eq!(follower.next_seq(), handed_over as u64);
    }
    assert!(common::segment_paths(&dir).len() >= 3, "the writer rolled segments while followed");
}

#[test]
fn a_follower_does_not_see_uncommitted_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut writer = Writer::create(&dir, never(MIN_SEGMENT_BYTES)).unwrap();
    let mut follower = Follower::new(&dir, 0).unwrap();
    writer.append(b"pending").unwrap();
    assert_eq!(poll_all(&mut follower), vec![]);
    writer.commit().unwrap();
    assert_eq!(poll_all(&mut follower), vec![(0, b"pending".to_vec())]);
}

#[test]
fn a_follower_from_a_future_seq_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let all = payloads(8, 50);
    let mut writer = Writer::create(&dir, never(MIN_SEGMENT_BYTES)).unwrap();
    writer.append_batch(all[..2].iter().map(Vec::as_slice)).unwrap();
    let mut follower = Follower::new(&dir, 5).unwrap();
    assert_eq!(poll_all(&mut follower), vec![]);
    assert_eq!(follower.next_seq(), 5);
    writer.append_batch(all[2..].iter().map(Vec::as_slice)).unwrap();
    assert_eq!(poll_all(&mut follower), numbered(5, &all));
}

#[test]
fn a_segment_caught_before_its_header_is_written_is_not_yet_anything() {
    // The writer creates the next segment file, then writes its header: a follower can
    // poll in between and must see an empty file as "nothing yet", not damage.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let all = payloads(40, 250);
    let mut writer = Writer::create(&dir, never(MIN_SEGMENT_BYTES)).unwrap();
    writer.append_batch(all[..2].iter().map(Vec::as_slice)).unwrap();
    let mut follower = Follower::new(&dir, 0).unwrap();
    assert_eq!(poll_all(&mut follower).len(), 2);

    let next = dir.join(segment_file_name(2));
    fs::write(&next, b"").unwrap();
    assert_eq!(poll_all(&mut follower), vec![]);
    fs::remove_file(&next).unwrap();

    writer.append_batch(all[2..].iter().map(Vec::as_slice)).unwrap();
    assert_eq!(poll_all(&mut follower), numbered(2, &all));
}
