//! Fuzzing in CI (proptest; cargo-fuzz needs a nightly toolchain, see
//! docs/reliability.md): the three parsers that take bytes from outside — the record
//! decoder, the segment scanner and the workflow parser — must never panic, on arbitrary
//! input nor on mutations of valid input (which reach much deeper than random bytes),
//! and what they accept must be consistent.

use std::sync::OnceLock;

use orch_engine::graph::Graph;
use orch_engine::journal::Journal;
use orch_engine::record::Record;
use orch_engine::sim::simulate;
use orch_engine::spec::{parse, Format};
use orch_log_format::layout::SEGMENT_HEADER_LEN;
use orch_log_format::scan::{scan_segment, End};
use orch_log_format::{list_segments, Durability, Options};
use proptest::prelude::*;

/// Every workflow of the fixtures: valid TOML to mutate.
const FIXTURES: &[&str] = &[
    include_str!("../../fixtures/examples/dag.toml"),
    include_str!("../../fixtures/examples/retries.toml"),
    include_str!("../../fixtures/examples/waves.toml"),
    include_str!("../../fixtures/features/cancel-cascading.toml"),
    include_str!("../../fixtures/features/cap-priority.toml"),
    include_str!("../../fixtures/features/delegation.toml"),
    include_str!("../../fixtures/features/run-deadline.toml"),
    include_str!("../../fixtures/features/stop-wave.toml"),
    include_str!("../../fixtures/features/timeout.toml"),
    include_str!("../../fixtures/features/waves-barrier.toml"),
];

const JSON_FIXTURE: &str = include_str!("../../fixtures/examples/dag.json");

/// A simulated run of the retries example: its encoded records, and the bytes of its log
/// segments (written with the smallest segment size, so there are several).
struct Corpus {
    records: Vec<Vec<u8>>,
    segments: Vec<(u64, Vec<u8>)>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut records = Vec::new();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let options = Options { durability: Durability::Never, segment_bytes: 4096 };
        let mut journal = Journal::create(&dir, options).unwrap();
        for text in &FIXTURES[..3] {
            let spec = parse(text, "fixture.toml", Format::Toml).unwrap();
            simulate(spec, 1, |step: &[Record]| {
                records.extend(step.iter().map(Record::encode));
                journal.append(step)
            })
            .unwrap();
        }
        journal.close().unwrap();
        let segments = list_segments(&dir)
            .unwrap()
            .into_iter()
            .map(|s| (s.base_seq, std::fs::read(&s.path).unwrap()))
            .collect::<Vec<_>>();
        assert!(segments.len() >= 2, "the corpus log spans segments");
        Corpus { records, segments }
    })
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, value: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Edit::Set { at, value }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Edit::Delete { at, len }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let n = bytes.len();
        match e {
            Edit::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
            Edit::Set { at, value } if n > 0 => bytes[at % n] = *value,
            Edit::Insert { at, bytes: b } => {
                let at = at % (n + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Delete { at, len } if n > 0 => {
                let at = at % n;
                bytes.drain(at..(at + len).min(n));
            }
            Edit::Truncate { at } => bytes.truncate(at % (n + 1)),
            _ => {}
        }
    }
}

/// The record decoder: no panic; whatever it accepts renders (as `orch log` does) and
/// encodes to bytes that decode to the same record.
fn check_decode(bytes: &[u8]) {
    if let Ok(record) = Record::decode(bytes) {
        let _ = record.to_json(0).to_string();
        let again = Record::decode(&record.encode()).expect("a decoded record re-encodes decodably");
        assert_eq!(again, record);
    }
}

/// The segment scanner: no panic; an accepted scan is consistent with the bytes.
fn check_scan(bytes: &[u8], base_seq: u64, is_last: bool) {
    let mut seen = Vec::new();
    match scan_segment(bytes, base_seq, is_last, |offset, seq, payload| seen.push((offset, seq, payload.len()))) {
        Ok(scan) => {
            assert!(scan.valid_len as usize <= bytes.len());
            assert_eq!(scan.next_seq - base_seq, seen.len() as u64);
            let mut expected_offset = SEGMENT_HEADER_LEN as u64;
            for (i, &(offset, seq, len)) in seen.iter().enumerate() {
                assert_eq!(seq, base_seq + i as u64);
                assert_eq!(offset, expected_offset);
                expected_offset += 20 + len as u64;
            }
            match scan.end {
                End::Clean => assert_eq!(scan.valid_len as usize, bytes.len()),
                End::Torn { offset } => {
                    assert!(is_last, "only the last segment can be torn");
                    assert_eq!(offset, scan.valid_len);
                }
            }
            if scan.header.is_some() && !seen.is_empty() {
                assert_eq!(scan.valid_len, expected_offset);
            }
        }
        Err(found) => {
            assert!(found.offset as usize <= bytes.len(), "damage past the end: {found:?}");
            assert!(found.seq >= base_seq && found.seq <= base_seq + seen.len() as u64, "{found:?}");
            let _ = found.damage.to_string();
        }
    }
}

/// The workflow parser: no panic; errors render; an accepted spec compiles (or is
/// refused with an error) without panicking.
fn check_parse(text: &str, format: Format) {
    match parse(text, "fuzz.toml", format) {
        Ok(spec) => {
            if let Err(e) = Graph::compile(spec, "fuzz.toml") {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Pieces of TOML and JSON syntax to splice into valid workflows.
const TOKENS: &[&str] = &[
    "[[task]]\n",
    "[[wave]]\n",
    "[run]\n",
    "id = \"a\"\n",
    "after = [\"a\"]\n",
    "parent = \"a\"\n",
    "tasks = [\"a\", \"a\"]\n",
    "max_concurrency = 0\n",
    "max_attempts = 4294967295\n",
    "timeout_ms = 18446744073709551615\n",
    "priority = \"P9\"\n",
    "= ",
    "\"",
    "'''",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\n",
    "#",
    "\u{0}",
    "é",
    "-1",
    "1e400",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn record_decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_decode(&bytes);
    }

    #[test]
    fn record_decode_never_panics_on_mutated_records(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let records = &corpus().records;
        let mut bytes = records[pick.index(records.len())].clone();
        apply(&mut bytes, &edits);
        check_decode(&bytes);
    }

    #[test]
    fn scan_segment_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        base_seq in 0u64..4,
        is_last in any::<bool>(),
    ) {
        check_scan(&bytes, base_seq, is_last);
    }

    #[test]
    fn scan_segment_never_panics_on_mutated_segments(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
        is_last in any::<bool>(),
    ) {
        let segments = &corpus().segments;
        let (base_seq, bytes) = &segments[pick.index(segments.len())];
        let mut bytes = bytes.clone();
        apply(&mut bytes, &edits);
        check_scan(&bytes, *base_seq, is_last);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn spec_parse_never_panics_on_arbitrary_text(text in ".{0,400}", json in any::<bool>()) {
        check_parse(&text, if json { Format::Json } else { Format::Toml });
    }

    #[test]
    fn spec_parse_never_panics_on_mutated_workflows(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
        splices in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..4),
        json in any::<bool>(),
    ) {
        let base = if json { JSON_FIXTURE } else { FIXTURES[pick.index(FIXTURES.len())] };
        let mut text = base.to_string();
        for (at, token) in &splices {
            // Splice at a char boundary.
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, TOKENS[token.index(TOKENS.len())]);
        }
        let mut bytes = text.into_bytes();
        apply(&mut bytes, &edits);
        // The parser takes `&str`: invalid UTF-8 never reaches it (the CLI reports it).
        let text = String::from_utf8_lossy(&bytes);
        check_parse(&text, if json { Format::Json } else { Format::Toml });
    }
}
