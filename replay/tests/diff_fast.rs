//! `diff_logs` decodes only what two logs do not share; `diff_logs_in_full` decodes every
//! record and runs `diff`, the reference. Both must give the same report (and the same
//! JSON) at every level on many pairs of logs: simulated runs of every feature fixture and
//! of a wide workflow full of simultaneous events, with different seeds, spliced (a shared
//! prefix, then another run's records), truncated, retimed, reordered, with a changed
//! outcome, a changed executor, a different workflow, or identical.

use std::path::Path;

use orch_engine::journal::Journal;
use orch_engine::record::{Event, Record, Terminal};
use orch_engine::sim::simulate;
use orch_engine::spec::{self, Command, SimBehaviour, SimOutcome, Spec, TaskSpec, WaveSpec};
use orch_log_format::{Durability, Options};
use orch_replay::diff::{diff_logs, diff_logs_in_full, Level};
use proptest::prelude::*;

fn fixture_specs() -> Vec<Spec> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/features");
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut specs: Vec<Spec> = paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| spec::load(p).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    specs.push(wide(false));
    specs.push(wide(true));
    specs
}

/// Two parents with 12 children each in two waves, and 12 tasks of the run: equal
/// durations, so the seed decides many orders (races), and some failures.
fn wide(nested: bool) -> Spec {
    let mut spec = Spec::default();
    spec.run.max_concurrency = Some(5);
    let task = |id: String, duration_ms: u64, fail: bool, parent: Option<String>| TaskSpec {
        id,
        command: Some(Command::Shell("true".into())),
        parent,
        sim: Some(Box::new(SimBehaviour {
            duration_ms,
            outcomes: if fail { vec![SimOutcome::Fail(3)] } else { Vec::new() },
            ..SimBehaviour::default()
        })),
        ..TaskSpec::default()
    };
    for p in ["p", "q"] {
        spec.tasks.push(task(p.into(), 1, false, None));
    }
    for i in 0..12 {
        spec.tasks.push(task(format!("r{i}"), 1 + (i % 3) as u64, i == 7, None));
    }
    if nested {
        for p in ["p", "q"] {
            let ids: Vec<String> = (0..12).map(|i| format!("{p}{i}")).collect();
            for (i, id) in ids.iter().enumerate() {
                spec.tasks.push(task(id.clone(), 2, i == 4, None));
            }
            for half in ids.chunks(6) {
                spec.waves.push(WaveSpec { parent: Some(p.into()), tasks: half.to_vec(), ..WaveSpec::default() });
            }
        }
    }
    spec
}

fn run(spec: &Spec, seed: u64) -> Vec<Record> {
    let mut out = Vec::new();
    simulate(spec.clone(), seed, |rs: &[Record]| {
        out.extend_from_slice(rs);
        Ok::<(), orch_log_format::Error>(())
    })
    .expect("simulation");
    out
}

fn write(dir: &Path, records: &[Record]) {
    // Small segments, so that the walk crosses segment boundaries.
    let options = Options { durability: Durability::Never, segment_bytes: 4096 };
    let mut journal = Journal::create(dir, options).unwrap();
    journal.append(records).unwrap();
    journal.close().unwrap();
}

/// B derived from A (`a`) by `how`, from the position `at`.
fn derive(a: &[Record], other: &[Record], unrelated: &[Record], how: u8, at: usize) -> Vec<Record> {
    let m = at % (a.len() + 1);
    let mut b = a.to_vec();
    match how {
        0 => {
            b.truncate(m);
            b.extend_from_slice(other.get(m..).unwrap_or(&[]));
        }
        1 => b.truncate(m),
        2 => {
            if let Some(r) = b.get_mut(m) {
                r.time_ms += 1;
            }
        }
        3 if m + 1 < b.len() => b.swap(m, m + 1),
        4 => {
            b.truncate(m);
            let from = (at / 7) % (other.len() + 1);
            b.extend_from_slice(&other[from..]);
        }
        5 => {
            let finished = (m..b.len()).find(|&i| matches!(b[i].event, Event::TaskFinished(_)));
            if let Some(i) = finished {
                if let Event::TaskFinished(f) = &mut b[i].event {
                    f.state = if f.state == Terminal::Failed { Terminal::Succeeded } else { Terminal::Failed };
                    f.attempts += 1;
                }
            }
        }
        6 => {
            if let Some(Event::RunStarted(s)) = b.first_mut().map(|r| &mut r.event) {
                s.executor = "process".into();
            }
            if m > 0 && m + 1 < b.len() {
                b.swap(m, m + 1);
            }
        }
        7 => b = unrelated.to_vec(),
        8 => {
            // A task finished a second time late in B only (orch never writes that).
            if let Some(f) = a.iter().find(|r| matches!(r.event, Event::TaskFinished(_))) {
                b.insert(m.max(b.len().saturating_sub(1)), f.clone());
            }
        }
        9 => {
            // Retimed everywhere: byte-different from seq 0, equal at `decisions`.
            for r in &mut b {
                r.time_ms *= 2;
            }
        }
        _ => {}
    }
    b
}

fn check(a: &[Record], b: &[Record]) {
    let tmp = tempfile::tempdir().unwrap();
    let (pa, pb) = (tmp.path().join("a"), tmp.path().join("b"));
    write(&pa, a);
    write(&pb, b);
    for level in [Level::Exact, Level::Decisions, Level::Outcomes] {
        let fast = diff_logs(&pa, &pb, level).unwrap();
        let full = diff_logs_in_full(&pa, &pb, level).unwrap();
        assert_eq!(fast, full, "level {level:?}\n--- fast\n{}\n--- full\n{}", fast.render(), full.render());
        assert_eq!(serde_json::to_string(&fast).unwrap(), serde_json::to_string(&full).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn fast_and_full_diffs_agree(
        which in 0usize..100,
        seeds in (0u64..6, 0u64..6),
        how in 0u8..11,
        at in 0usize..10_000,
        swap in any::<bool>(),
    ) {
        let specs = fixture_specs();
        let spec = &specs[which % specs.len()];
        let a = run(spec, seeds.0);
        let other = run(spec, seeds.1);
        let unrelated = run(&specs[(which + 1) % specs.len()], seeds.1);
        let b = derive(&a, &other, &unrelated, how, at);
        if swap { check(&b, &a) } else { check(&a, &b) }
    }
}

/// Every fixture against itself under every other seed, and every cut of one splice.
#[test]
fn fast_and_full_diffs_agree_on_every_seed_pair_and_cut() {
    let specs = fixture_specs();
    for spec in &specs {
        let runs: Vec<Vec<Record>> = (0..4).map(|seed| run(spec, seed)).collect();
        for a in &runs {
            for b in &runs {
                check(a, b);
            }
        }
    }
    let spec = specs.last().unwrap();
    let (a, other) = (run(spec, 0), run(spec, 1));
    for at in (0..=a.len()).step_by(3) {
        check(&a, &derive(&a, &other, &a, 0, at));
    }
}

/// Big logs that part early go the full way, which decodes every record, where the fast
/// path passes over the shared prefix: a shared record that does not decode (a kind from
/// a newer orch) must not turn the report into an error on that way either.
#[test]
fn a_shared_record_that_does_not_decode_is_passed_over_in_big_logs_too() {
    let mut spec = Spec::default();
    spec.run.max_concurrency = Some(8);
    for i in 0..1500 {
        spec.tasks.push(TaskSpec {
            id: format!("t{i}"),
            command: Some(Command::Shell("true".into())),
            sim: Some(Box::new(SimBehaviour { duration_ms: 1 + (i % 3) as u64, ..SimBehaviour::default() })),
            ..TaskSpec::default()
        });
    }
    let (a, b) = (run(&spec, 0), run(&spec, 1));
    assert!(a.len() >= 4096 && a[1] == b[1] && a[..200] != b[..200], "big logs that part early");
    // Seq 1 in both: a record of a kind this orch does not know (it passes every checksum).
    let unknown: &[u8] = &[0x93, 0x21, 0x00, 0x91, 0xc0];
    assert!(Record::decode(unknown).is_err());
    let tmp = tempfile::tempdir().unwrap();
    for (dir, records) in [("a", &a), ("b", &b)] {
        let options = Options { durability: Durability::Never, ..Options::default() };
        let mut log = orch_log_format::Writer::create(&tmp.path().join(dir), options).unwrap();
        for (seq, r) in records.iter().enumerate() {
            let payload = if seq == 1 { unknown.to_vec() } else { r.encode() };
            log.append(&payload).unwrap();
        }
        log.close().unwrap();
    }
    let report = diff_logs(&tmp.path().join("a"), &tmp.path().join("b"), Level::Decisions).expect("a report");
    assert!(!report.identical);
    assert!(report.races_total > 0);
}
