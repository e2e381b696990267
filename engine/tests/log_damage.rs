//! What a power loss or bit rot does to a run's log, at the engine level: a simulated run
//! written with small segments (several of them), then (1) the last segment cut at every
//! byte offset, and cut then zero-filled, must reopen (`Writer::open`) as a prefix of the
//! records that re-decides (`recover`) — the cut-off decisions being exactly the ones the
//! log had — and (2) 10,000 random bit flips and byte overwrites must each be reported by
//! `verify`, by `read_records` and by `Writer::open` at the damaged record's segment,
//! offset and seq, never truncated away. None may panic.

use std::fs;
use std::path::{Path, PathBuf};

use orch_engine::journal::{read_records, Journal, ReadError};
use orch_engine::record::Record;
use orch_engine::recover::recover;
use orch_engine::sim::simulate;
use orch_engine::spec::{parse, Format};
use orch_log_format::layout::SEGMENT_HEADER_LEN;
use orch_log_format::scan::scan_segment;
use orch_log_format::{list_segments, verify, Durability, Error, Options, Writer};

const SEGMENT_BYTES: u64 = 4096;

/// Writes `bytes` as the whole content of `path` without first truncating it to zero:
/// on ext4 (`auto_da_alloc`) a truncate-then-rewrite flushes on close, which made ten
/// thousand trials take a minute instead of seconds.
fn put(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new().write(true).create(true).truncate(false).open(path).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.set_len(bytes.len() as u64).unwrap();
}

fn options() -> Options {
    Options { durability: Durability::Never, segment_bytes: SEGMENT_BYTES }
}

/// A workflow with a DAG, retries (scripted failures), a group with two waves and a
/// parent that delegates: ~300 records, five or more 4 KiB segments.
fn workflow() -> String {
    let mut s = String::from("[run]\nmax_concurrency = 3\nseed = 11\n\n");
    for i in 0..40 {
        s += &format!("[[task]]\nid = \"t{i}\"\ncommand = \"true\"\n");
        if i > 0 {
            s += &format!("after = [\"t{}\"]\n", (i - 1) / 2);
        }
        if i % 4 == 1 {
            s += "retry = { max_attempts = 3, base_ms = 20 }\n";
            s += &format!("sim = {{ duration_ms = {}, outcomes = [\"fail\", \"succeed\"] }}\n", 10 + i);
        } else {
            s += &format!("sim = {{ duration_ms = {} }}\n", 5 + (i * 7) % 40);
        }
        s += "\n";
    }
    s += r#"
[[task]]
id = "group"
after = ["t3"]

[[task]]
id = "lead"
command = "true"
sim = { duration_ms = 15 }

[[task]]
id = "lead-a"
parent = "lead"
command = "true"
sim = { duration_ms = 25, outcomes = ["fail:2", "succeed"] }
retry = { max_attempts = 2, base_ms = 5 }

[[task]]
id = "lead-b"
parent = "lead"
command = "true"
sim = { duration_ms = 12 }

[[task]]
id = "g1"
command = "true"
sim = { duration_ms = 30 }

[[task]]
id = "g2"
command = "true"
sim = { duration_ms = 20 }

[[wave]]
id = "one"
parent = "group"
tasks = ["g1", "g2"]

[[wave]]
id = "two"
parent = "group"
tasks = ["lead"]
"#;
    s
}

/// The simulated run's records, and its log written step by step (one commit per step,
/// as the runtime does) into `dir`.
fn write_run(dir: &Path) -> Vec<Record> {
    let spec = parse(&workflow(), "damage.toml", Format::Toml).expect("workflow parses");
    let mut journal = Journal::create(dir, options()).expect("create log");
    let mut records = Vec::new();
    let state = simulate(spec, 3, |step: &[Record]| {
        records.extend_from_slice(step);
        journal.append(step)
    })
    .expect("simulated run");
    assert!(state.is_finished());
    journal.close().expect("close");
    records
}

/// A log's segment files and bytes.
struct Segments(Vec<(PathBuf, Vec<u8>)>);

impl Segments {
    fn read(dir: &Path) -> Segments {
        Segments(
            list_segments(dir).unwrap().into_iter().map(|s| (s.path.clone(), fs::read(&s.path).unwrap())).collect(),
        )
    }

    /// Puts every segment back as it was (a recovery may have deleted or cut one, an
    /// append may have added one).
    fn restore(&self) {
        let dir = self.0[0].0.parent().unwrap();
        for s in list_segments(dir).unwrap() {
            if !self.0.iter().any(|(p, _)| *p == s.path) {
                fs::remove_file(&s.path).unwrap();
            }
        }
        for (path, bytes) in &self.0 {
            put(path, bytes);
        }
    }

    /// (offset, seq) of every frame of segment `i`.
    fn frames(&self, i: usize, base_seq: u64) -> Vec<(usize, u64)> {
        let mut frames = Vec::new();
        let is_last = i + 1 == self.0.len();
        scan_segment(&self.0[i].1, base_seq, is_last, |offset, seq, _| frames.push((offset as usize, seq))).unwrap();
        frames
    }
}

/// Base seq of each segment.
fn bases(dir: &Path) -> Vec<u64> {
    list_segments(dir).unwrap().into_iter().map(|s| s.base_seq).collect()
}

// ---------------------------------------------------------------------------------------
// Power loss: cuts and zero-filled tails of the last segment
// ---------------------------------------------------------------------------------------

/// Opens the (damaged) log for writing, as `orch resume` does, and checks that what it
/// holds is the first `expected` records and re-decides, with the cut-off decisions of
/// the last step being exactly the records the log had next; then writes those (as
/// resume does) and checks the log is whole again.
fn reopen_and_recover(dir: &Path, records: &[Record], expected: usize, place: &str) {
    let (writer, _) = Writer::open(dir, options()).unwrap_or_else(|e| panic!("{place}: open: {e}"));
    let got = read_records(dir).unwrap_or_else(|e| panic!("{place}: read: {e}"));
    assert_eq!(got.len(), expected, "{place}: records after recovery");
    assert!(got[..] == records[..expected], "{place}: not a prefix");
    let recovered = recover(&got).unwrap_or_else(|e| panic!("{place}: recover: {e}"));
    let pending = recovered.pending;
    assert!(
        pending[..] == records[expected..expected + pending.len()],
        "{place}: the cut-off decisions are not the ones the log had"
    );
    if expected > 0 {
        let mut journal = Journal::from_writer(writer);
        journal.append(&pending).unwrap_or_else(|e| panic!("{place}: append: {e}"));
        journal.close().unwrap();
        let report = verify(dir).unwrap_or_else(|e| panic!("{place}: verify after append: {e}"));
        assert_eq!(report.records as usize, expected + pending.len(), "{place}");
        assert!(report.torn_tail.is_none(), "{place}");
        assert!(recover(&read_records(dir).unwrap()).unwrap().pending.is_empty(), "{place}");
    }
}

#[test]
fn every_cut_of_the_last_segment_reopens_as_a_prefix_that_re_decides() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let records = write_run(&dir);
    let segments = Segments::read(&dir);
    let bases = bases(&dir);
    assert!(segments.0.len() >= 4, "the run spans several segments: {}", segments.0.len());
    let last = segments.0.len() - 1;
    let (path, bytes) = &segments.0[last];
    let frames = segments.frames(last, bases[last]);
    let mut cuts = 0;
    for cut in 0..=bytes.len() {
        segments.restore();
        put(path, &bytes[..cut]);
        // A cut inside the header leaves the previous segment as the tail.
        let whole = if cut < SEGMENT_HEADER_LEN {
            0
        } else {
            frames.iter().filter(|&&(o, _)| frames_end(&frames, bytes.len(), o) <= cut).count()
        };
        reopen_and_recover(&dir, &records, bases[last] as usize + whole, &format!("cut at {cut}"));
        cuts += 1;
    }
    // A power loss that lost the whole last segment (a roll that never reached the disk).
    segments.restore();
    fs::remove_file(path).unwrap();
    reopen_and_recover(&dir, &records, bases[last] as usize, "last segment gone");
    eprintln!("{cuts} cuts of a {}-byte last segment ({} records in all)", bytes.len(), records.len());
}

/// End offset of the frame starting at `offset`.
fn frames_end(frames: &[(usize, u64)], len: usize, offset: usize) -> usize {
    frames.iter().map(|&(o, _)| o).find(|&o| o > offset).unwrap_or(len)
}

#[test]
fn a_zero_filled_tail_is_a_prefix_or_damage_at_the_cut_record_never_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let records = write_run(&dir);
    let segments = Segments::read(&dir);
    let bases = bases(&dir);
    let last = segments.0.len() - 1;
    let (path, bytes) = &segments.0[last];
    let frames = segments.frames(last, bases[last]);
    let (mut prefixes, mut damaged) = (0, 0);
    for cut in 0..bytes.len() {
        segments.restore();
        let mut filled = bytes[..cut].to_vec();
        filled.resize(bytes.len(), 0);
        put(path, &filled);
        let place = format!("zeros from {cut}");
        // The zeros damage the record holding the first byte they changed (bytes that
        // were zero already change nothing). If everything from that record's start is
        // zero, the record simply never reached the disk: a torn tail, and the log is
        // the records before it. If part of it did, it is damage at that record, never
        // dropped (docs/log-format.md: a partly persisted frame followed by zeros).
        let Some(first) = (cut..bytes.len()).find(|&k| bytes[k] != 0) else {
            reopen_and_recover(&dir, &records, records.len(), &place);
            prefixes += 1;
            continue;
        };
        let (offset, seq, before) = if first < SEGMENT_HEADER_LEN {
            (0, bases[last], 0)
        } else {
            let k = frames.iter().rposition(|&(o, _)| o <= first).unwrap();
            (frames[k].0, frames[k].1, k)
        };
        if filled[offset..].iter().all(|&b| b == 0) {
            reopen_and_recover(&dir, &records, bases[last] as usize + before, &place);
            prefixes += 1;
            continue;
        }
        match Writer::open(&dir, options()) {
            Err(Error::Corrupt { segment, offset: o, seq: s, .. }) => {
                assert_eq!((&segment, o, s), (path, offset as u64, seq), "{place}");
            }
            Err(e) => panic!("{place}: {e}"),
            Ok(_) => panic!("{place}: a partly written record followed by zeros was accepted"),
        }
        assert!(fs::read(path).unwrap() == filled, "{place}: damage was modified");
        damaged += 1;
    }
    eprintln!("{prefixes} zero-filled tails recovered as prefixes, {damaged} reported as damage");
}

// ---------------------------------------------------------------------------------------
// Corruption: 10,000 random bit flips and byte overwrites
// ---------------------------------------------------------------------------------------

/// xorshift64*: the trials' randomness, seeded and printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Segment, offset and seq of an error, or a description of why it is not `Corrupt`.
fn place_of(e: &Error) -> Option<(PathBuf, u64, u64)> {
    match e {
        Error::Corrupt { segment, offset, seq, .. } => Some((segment.clone(), *offset, *seq)),
        _ => None,
    }
}

#[test]
fn ten_thousand_random_flips_and_overwrites_are_each_reported_at_their_place() {
    let trials: usize = std::env::var("ORCH_CORRUPTION_TRIALS").map_or(10_000, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("ORCH_CORRUPTION_SEED").map_or(0x5EED_0F0D_DB17, |v| v.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let records = write_run(&dir);
    let segments = Segments::read(&dir);
    let bases = bases(&dir);
    let frames: Vec<Vec<(usize, u64)>> = (0..segments.0.len()).map(|i| segments.frames(i, bases[i])).collect();
    let clean = verify(&dir).unwrap();
    assert_eq!(clean.records as usize, records.len());

    let mut rng = Rng(seed | 1);
    let started = std::time::Instant::now();
    let mut kinds = [0usize; 3];
    let mut opened = 0;
    for trial in 0..trials {
        let i = rng.below(segments.0.len());
        let (path, bytes) = &segments.0[i];
        let mut damaged = bytes.clone();
        let at = rng.below(bytes.len());
        let kind = rng.below(3);
        kinds[kind] += 1;
        match kind {
            // One bit.
            0 => damaged[at] ^= 1 << rng.below(8),
            // One byte, another value.
            1 => damaged[at] = bytes[at] ^ (1 + rng.below(255) as u8),
            // A run of 2..=8 random bytes (inside the file).
            _ => {
                let len = 2 + rng.below(7);
                for b in damaged.iter_mut().skip(at).take(len) {
                    *b = rng.next() as u8;
                }
            }
        }
        // The first byte that actually changed names the damaged record.
        let Some(first) = bytes.iter().zip(&damaged).position(|(a, b)| a != b) else { continue };
        let expected = if first < SEGMENT_HEADER_LEN {
            (path.clone(), 0, bases[i])
        } else {
            let &(o, s) = frames[i].iter().rev().find(|&&(o, _)| o <= first).unwrap();
            (path.clone(), o as u64, s)
        };
        let what = format!(
            "trial {trial} (ORCH_CORRUPTION_SEED={seed}): {} at byte {first} of {}",
            ["bit flip", "byte overwrite", "burst"][kind],
            path.display()
        );
        put(path, &damaged);

        let e = verify(&dir).map(|r| r.torn_tail).expect_err(&what);
        assert_eq!(place_of(&e), Some(expected.clone()), "{what}: verify: {e}");
        match read_records(&dir) {
            Err(ReadError::Log(e)) => assert_eq!(place_of(&e), Some(expected.clone()), "{what}: read: {e}"),
            Err(e) => panic!("{what}: read_records: {e}"),
            Ok(_) => panic!("{what}: read_records read a damaged log"),
        }
        // Open checks segment headers and scans the last segment in full; damage in the
        // body of a sealed segment is for verify (docs/log-format.md). Either way nothing
        // is truncated or repaired.
        let sealed_body = i + 1 < segments.0.len() && first >= SEGMENT_HEADER_LEN;
        match Writer::open(&dir, options()) {
            Ok(_) if sealed_body => opened += 1,
            Ok(_) => panic!("{what}: Writer::open accepted damage"),
            Err(e) => assert_eq!(place_of(&e), Some(expected.clone()), "{what}: open: {e}"),
        }
        assert!(fs::read(path).unwrap() == damaged, "{what}: the damaged segment was modified");
        put(path, bytes);
    }
    assert!(verify(&dir).unwrap().digest == clean.digest);
    eprintln!(
        "{trials} trials (seed {seed}) over {} segments: {} bit flips, {} byte overwrites, {} bursts; \
         {opened} in sealed bodies (open leaves those to verify); {:.1} s",
        segments.0.len(),
        kinds[0],
        kinds[1],
        kinds[2],
        started.elapsed().as_secs_f64()
    );
}
