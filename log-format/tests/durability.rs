//! Durability policies change when bytes reach the disk, never which bytes: the same
//! appends and commits under `Always`, `Batch` and `Never` leave identical files. Also
//! the limits and option checks at the writer's boundary.

mod common;

use std::fs;
use std::time::Duration;

use common::{model, payloads, segment_paths};
use orch_log_format::layout::{MAX_PAYLOAD_LEN, MIN_SEGMENT_BYTES};
use orch_log_format::{verify, Durability, Error, Options, Writer};

fn write_with(durability: Durability, payloads: &[Vec<u8>]) -> (tempfile::TempDir, [u8; 32]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut writer = Writer::create(&dir, Options { durability, segment_bytes: MIN_SEGMENT_BYTES }).unwrap();
    for chunk in payloads.chunks(7) {
        let range = writer.append_batch(chunk.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(range.end - range.start, chunk.len() as u64);
    }
    writer.sync().unwrap();
    let digest = writer.digest();
    writer.close().unwrap();
    (tmp, digest)
}

#[test]
fn every_policy_writes_the_same_bytes() {
    // Few records: under `Always` each commit and each roll is an fdatasync.
    let payloads = payloads(60, 250);
    let (segments, model_digest) = model(&payloads, MIN_SEGMENT_BYTES);
    assert!(segments.len() >= 2, "the fixture rolls");
    let policies = [
        Durability::Always,
        Durability::Batch { interval: Duration::from_millis(1) },
        Durability::default(),
        Durability::Never,
    ];
    for policy in policies {
        let (tmp, digest) = write_with(policy, &payloads);
        let dir = tmp.path().join("log");
        assert_eq!(digest, model_digest, "{policy:?}");
        common::assert_files_match_model(&dir, &segments);
        assert_eq!(verify(&dir).unwrap().digest, model_digest, "{policy:?}");
        assert_eq!(segment_paths(&dir).len(), segments.len());
    }
}

#[test]
fn durability_parses_from_its_cli_spelling() {
    assert_eq!("always".parse::<Durability>().unwrap(), Durability::Always);
    assert_eq!("batch".parse::<Durability>().unwrap(), Durability::default());
    assert_eq!("never".parse::<Durability>().unwrap(), Durability::Never);
    let err = "sometimes".parse::<Durability>().unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");
    assert!(matches!(Durability::default(), Durability::Batch { .. }), "group commit is the default");
    let ms = |ms| Durability::Batch { interval: std::time::Duration::from_millis(ms) };
    assert_eq!("batch:10".parse::<Durability>().unwrap(), ms(10));
    assert_eq!("batch:10ms".parse::<Durability>().unwrap(), ms(10));
    assert_eq!("batch:10000".parse::<Durability>().unwrap(), ms(10_000));
    for bad in ["batch:", "batch:0", "batch:10001", "batch:-1", "batch:+5", "batch: 5", "batch:1s", "batch:ten"] {
        let err = bad.parse::<Durability>().unwrap_err();
        assert!(err.to_string().contains("1 to 10000 milliseconds"), "{bad}: {err}");
    }
}

#[test]
fn bad_options_are_refused_before_touching_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let small = Options { durability: Durability::Never, segment_bytes: MIN_SEGMENT_BYTES - 1 };
    assert!(matches!(Writer::create(&dir, small), Err(Error::InvalidOption(_))));
    let zero = Options { durability: Durability::Batch { interval: Duration::ZERO }, segment_bytes: MIN_SEGMENT_BYTES };
    assert!(matches!(Writer::create(&dir, zero), Err(Error::InvalidOption(_))));
    assert!(!dir.exists(), "nothing half-created");
}

#[test]
fn payload_limit_is_checked_on_append_and_leaves_the_log_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut writer = Writer::create(&dir, common::never(MIN_SEGMENT_BYTES)).unwrap();
    let too_big = vec![0u8; MAX_PAYLOAD_LEN + 1];
    let err = writer.append(&too_big).unwrap_err();
    assert!(
        matches!(err, Error::PayloadTooLarge { len, limit } if len == MAX_PAYLOAD_LEN + 1 && limit == MAX_PAYLOAD_LEN)
    );
    assert_eq!(writer.next_seq(), 0);
    writer.append(b"fine").unwrap();
    writer.close().unwrap();
    assert_eq!(common::read_payloads(&dir).unwrap(), vec![b"fine".to_vec()]);
}

#[test]
fn create_refuses_an_existing_log_and_open_refuses_a_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    Writer::create(&dir, common::never(MIN_SEGMENT_BYTES)).unwrap().close().unwrap();
    assert!(matches!(Writer::create(&dir, common::never(MIN_SEGMENT_BYTES)), Err(Error::AlreadyExists { .. })));
    let missing = tmp.path().join("missing");
    assert!(matches!(Writer::open(&missing, common::never(MIN_SEGMENT_BYTES)), Err(Error::NotALog { .. })));
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(matches!(Writer::open(&empty, common::never(MIN_SEGMENT_BYTES)), Err(Error::NotALog { .. })));
    assert!(matches!(verify(&empty), Err(Error::NotALog { .. })));
}

#[test]
fn closing_does_not_wait_out_a_long_group_commit_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let hour = Durability::Batch { interval: Duration::from_secs(3600) };
    let mut writer = Writer::create(&dir, Options { durability: hour, segment_bytes: MIN_SEGMENT_BYTES }).unwrap();
    writer.append(b"one").unwrap();
    // Give the sync thread time to sync that commit and start sitting out its interval.
    std::thread::sleep(Duration::from_millis(100));
    let closing = std::time::Instant::now();
    writer.close().unwrap();
    assert!(closing.elapsed() < Duration::from_secs(10), "close waited {:?}", closing.elapsed());
    assert_eq!(common::read_payloads(&dir).unwrap(), vec![b"one".to_vec()]);
}
