//! Golden logs: every workflow in `fixtures/features/` is re-run in the simulator (seed 0)
//! and must produce, byte for byte, the segments committed in `fixtures/golden/<name>/log/`.
//! A difference fails with the diff report of the two logs. Every golden log must also
//! verify, replay (re-decide) cleanly, match its committed text rendering
//! (`fixtures/golden/<name>.txt`), and hold nothing of the machine that wrote it.
//!
//! After an intended change, refresh them with (see docs/goldens.md):
//!
//! ```text
//! ORCH_UPDATE_GOLDENS=1 cargo test -p orch-replay --test golden
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use orch_engine::journal::{first_graph, read_records, Journal};
use orch_engine::record::{Event, Record};
use orch_engine::sim::simulate;
use orch_engine::spec::{self, Spec};
use orch_log_format::{Durability, Options};
use orch_replay::diff::{diff_logs, Level};
use orch_replay::redecide::redecide_compiled;
use orch_replay::{redecide, text, Summary};

/// The seed every golden log is simulated with.
const GOLDEN_SEED: u64 = 0;

const UPDATE_COMMAND: &str = "ORCH_UPDATE_GOLDENS=1 cargo test -p orch-replay --test golden";

/// Strings that would betray the machine a log was written on.
const HOST_MARKERS: &[&str] = &["/tmp", "/home", "/work", "/root", "/Users", "/var/", "target/debug"];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn golden_dir() -> PathBuf {
    fixtures_dir().join("golden")
}

/// Every feature fixture, by name (file stem), sorted.
fn fixtures() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(fixtures_dir().join("features"))
        .expect("fixtures/features exists")
        .map(|e| e.expect("readable fixtures dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in fixtures/features");
    out
}

fn updating() -> bool {
    std::env::var_os("ORCH_UPDATE_GOLDENS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Simulates `spec` into a new log in `dir`, as `orch run --sim` would (never-sync
/// journal, default segment size). The writer's lock file is removed: only segments are
/// part of a golden.
fn simulate_into(dir: &Path, spec: Spec) {
    let options = Options { durability: Durability::Never, ..Options::default() };
    let mut journal = Journal::create(dir, options).expect("create journal");
    simulate(spec, GOLDEN_SEED, |records: &[Record]| journal.append(records)).expect("simulation runs to the end");
    journal.close().expect("close journal");
    let _ = fs::remove_file(dir.join(orch_log_format::LOCK_FILE));
}

/// The `*.seg` files of a log directory, by file name.
fn segments(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else { return BTreeMap::new() };
    entries
        .map(|e| e.expect("readable log dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), fs::read(&p).expect("read segment")))
        .collect()
}

fn rendered(records: &[Record]) -> String {
    records.iter().enumerate().map(|(seq, r)| text::render(seq as u64, r) + "\n").collect()
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees
/// half a file.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, bytes).expect("write golden");
    fs::rename(&tmp, path).expect("rename golden");
}

/// Replaces the golden of `name` with the log in `fresh`.
fn update_golden(name: &str, fresh: &Path) {
    let log = golden_dir().join(name).join("log");
    fs::create_dir_all(&log).expect("create golden dir");
    let new = segments(fresh);
    for old in segments(&log).keys() {
        if !new.contains_key(old) {
            fs::remove_file(log.join(old)).expect("remove stale segment");
        }
    }
    for (file, bytes) in &new {
        write_atomic(&log.join(file), bytes);
    }
    let records = read_records(fresh).expect("read fresh log");
    write_atomic(&golden_dir().join(format!("{name}.txt")), rendered(&records).as_bytes());
}

/// Simulates `spec` and compares the log with the golden of `name`: Ok if byte-identical,
/// else the rendered diff report (golden = A, this run = B).
fn compare_with_golden(name: &str, spec: Spec) -> Result<(), String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fresh = tmp.path().join("log");
    simulate_into(&fresh, spec);
    let golden = golden_dir().join(name).join("log");
    if segments(&golden) == segments(&fresh) {
        return Ok(());
    }
    let report = match diff_logs(&golden, &fresh, Level::Exact) {
        Ok(mut report) => {
            report.a = format!("golden fixtures/golden/{name}/log");
            report.b = "this build's simulation".into();
            report.render()
        }
        Err(e) => format!("(the golden log cannot be read: {e})"),
    };
    Err(format!("golden log of {name} differs:\n{report}\nif the change is intended: {UPDATE_COMMAND}\n"))
}

#[test]
fn fixtures_reproduce_their_golden_logs() {
    let mut failures = Vec::new();
    for (name, path) in fixtures() {
        let spec = spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
        if updating() {
            let tmp = tempfile::tempdir().expect("tempdir");
            let fresh = tmp.path().join("log");
            simulate_into(&fresh, spec.clone());
            update_golden(&name, &fresh);
        }
        if let Err(report) = compare_with_golden(&name, spec) {
            failures.push(report);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_logs_verify_replay_and_hold_nothing_of_the_host() {
    let names: Vec<String> = fixtures().into_iter().map(|(name, _)| name).collect();
    // No golden without a fixture (a renamed fixture leaves one behind).
    for entry in fs::read_dir(golden_dir()).expect("fixtures/golden exists") {
        let path = entry.expect("readable golden dir").path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(names.contains(&stem), "{} has no fixture in fixtures/features", path.display());
    }
    for name in names {
        let log = golden_dir().join(&name).join("log");
        let report =
            orch_log_format::verify(&log).unwrap_or_else(|e| panic!("{name}: golden log does not verify: {e}"));
        assert!(report.is_clean(), "{name}: golden log has a torn tail");
        let files: Vec<String> =
            fs::read_dir(&log).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(files.iter().all(|f| f.ends_with(".seg")), "{name}: only segments belong in a golden: {files:?}");

        let records = read_records(&log).unwrap_or_else(|e| panic!("{name}: {e}"));
        let replayed = redecide(&records).unwrap_or_else(|e| panic!("{name}: golden log does not replay: {e}"));
        assert_eq!(replayed.incomplete_from, None, "{name}: golden log ends mid-step");
        assert!(replayed.state.is_finished(), "{name}: golden run did not finish");
        // `orch replay`'s path: the spec compiled apart (while the log is read), the same.
        let (digest, graph) =
            first_graph(&log).unwrap_or_else(|| panic!("{name}: the run-started spec does not compile"));
        let compiled =
            redecide_compiled(&records, digest, graph).unwrap_or_else(|e| panic!("{name}: compiled path: {e}"));
        assert_eq!(compiled.incomplete_from, None, "{name}");
        assert_eq!(
            Summary::of_state(&compiled.state, &records),
            Summary::of_state(&replayed.state, &records),
            "{name}: the compiled path folds differently"
        );

        let txt_path = golden_dir().join(format!("{name}.txt"));
        let txt = fs::read_to_string(&txt_path).unwrap_or_else(|e| panic!("{}: {e}", txt_path.display()));
        assert_eq!(txt, rendered(&records), "{name}.txt is not the rendering of its log; run {UPDATE_COMMAND}");

        // Identical on any machine: a simulated log holds no path, pid or environment.
        let Some(Event::RunStarted(started)) = records.first().map(|r| &r.event) else {
            panic!("{name}: golden log does not start with run_started");
        };
        assert_eq!(started.executor, "sim", "{name}");
        for marker in HOST_MARKERS {
            assert!(!txt.contains(marker), "{name}.txt mentions {marker}");
            assert!(!started.spec.contains(marker), "{name}: the recorded spec mentions {marker}");
        }
        let here = env!("CARGO_MANIFEST_DIR");
        for bytes in segments(&log).values() {
            assert!(!bytes.windows(here.len()).any(|w| w == here.as_bytes()), "{name}: a segment holds a host path");
        }
    }
}

/// Acceptance: editing one fixture's retry policy makes the golden comparison fail, and
/// the report names the first divergent seq and the task.
#[test]
fn a_changed_retry_policy_fails_with_a_diff_naming_the_seq_and_the_task() {
    let path = fixtures_dir().join("features/retry-fixed.toml");
    let mut spec = spec::load(&path).unwrap();
    let flaky = spec.tasks.iter_mut().find(|t| t.id == "flaky").expect("retry-fixed has a task flaky");
    flaky.more_mut().retry.base_ms += 100;

    let report = compare_with_golden("retry-fixed", spec).expect_err("a changed policy must not match the golden");
    eprintln!("{report}");
    assert!(report.contains("tasks changed: flaky"), "{report}");
    // The golden schedules flaky's retry 250 ms later; the edit makes it 350.
    let golden = read_records(&golden_dir().join("retry-fixed/log")).unwrap();
    let seq = golden
        .iter()
        .position(|r| matches!(&r.event, Event::RetryScheduled(s) if s.task == "flaky"))
        .expect("the golden retries flaky");
    assert!(report.contains(&format!("first divergence at seq {seq} (task flaky)")), "{report}");
    assert!(report.contains("delay_ms=250") && report.contains("delay_ms=350"), "{report}");
}

/// Re-deciding with the spec compiled apart finds a divergence exactly where re-deciding
/// from the records alone does, with the same report.
#[test]
fn the_compiled_path_reports_the_same_divergence() {
    let log = golden_dir().join("retry-fixed/log");
    let mut records = read_records(&log).unwrap();
    let at = records.iter().rposition(|r| matches!(r.event, Event::TaskFinished(_))).expect("a task_finished");
    if let Event::TaskFinished(f) = &mut records[at].event {
        f.attempts += 1;
    }
    let plain = redecide(&records).expect_err("a changed decision diverges").to_string();
    let (digest, graph) = first_graph(&log).unwrap();
    let compiled = redecide_compiled(&records, digest, graph).expect_err("diverges too").to_string();
    assert_eq!(compiled, plain);
    assert!(plain.contains(&format!("seq {at}")), "{plain}");
}

/// A graph compiled from another log's spec is not used: the records' own spec decides.
#[test]
fn a_graph_of_another_spec_is_not_used() {
    let records = read_records(&golden_dir().join("retry-fixed/log")).unwrap();
    let (digest, other) = first_graph(&golden_dir().join("dag/log")).unwrap();
    let replayed = redecide_compiled(&records, digest, other).expect("replays with its own spec");
    assert_eq!(
        Summary::of_state(&replayed.state, &records),
        Summary::of_state(&redecide(&records).unwrap().state, &records)
    );
}

/// `fixtures/legacy/<name>/log`: the golden logs as orch wrote them before the
/// run-started record carried its compiled graph (kind 1). They must still read, fold
/// and replay, to what the current goldens fold to: the same records after the first.
#[test]
fn logs_from_before_the_compiled_graph_fold_and_replay_as_the_goldens_do() {
    let legacy_dir = fixtures_dir().join("legacy");
    let mut seen = 0;
    for (name, _) in fixtures() {
        let old_log = legacy_dir.join(&name).join("log");
        if !old_log.exists() {
            continue; // A fixture newer than the legacy logs.
        }
        let old = read_records(&old_log).unwrap_or_else(|e| panic!("{name}: {e}"));
        let new = read_records(&golden_dir().join(&name).join("log")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (Some(Event::RunStarted(o)), Some(Event::RunStarted(n))) =
            (old.first().map(|r| &r.event), new.first().map(|r| &r.event))
        else {
            panic!("{name}: run_started first")
        };
        assert_eq!((old[0].event.code(), new[0].event.code()), (1, 11), "{name}: kinds");
        assert!(n.image.is_some(), "{name}: a golden log carries its graph");
        assert_eq!((&o.spec, o.spec_digest), (&n.spec, n.spec_digest), "{name}");
        assert_eq!(old[1..], new[1..], "{name}: the same records after the first");
        let replayed = redecide(&old).unwrap_or_else(|e| panic!("{name}: legacy log does not replay: {e}"));
        let folded = orch_engine::state::State::fold(&new).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(Summary::of_state(&replayed.state, &old), Summary::of_state(&folded, &new), "{name}");
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} legacy logs");
}
