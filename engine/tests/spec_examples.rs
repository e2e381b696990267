//! The example workflows of `docs/workflow.md` live in `fixtures/examples/`: they must
//! load, survive a round trip through both formats, and appear in the docs verbatim, so
//! the reference can never drift from what the parser accepts.

use std::path::PathBuf;

use orch_engine::spec::{self, Backoff, Command, Format, Jitter, Priority, SimOutcome, Spec, WaveFailure};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example_paths() -> Vec<PathBuf> {
    let dir = root().join("fixtures/examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths
}

fn load(name: &str) -> Spec {
    let path = root().join("fixtures/examples").join(name);
    spec::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_example_is_valid_and_round_trips() {
    let paths = example_paths();
    assert!(paths.len() >= 4, "expected the examples of docs/workflow.md, found {paths:?}");
    for path in paths {
        let spec = spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.display().to_string();

        let json = serde_json::to_string_pretty(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let from_json = spec::parse(&json, &name, Format::Json).unwrap_or_else(|e| panic!("{name} as JSON: {e}"));
        assert_eq!(from_json, spec, "{name}: JSON round trip");

        let toml = toml::to_string(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let from_toml = spec::parse(&toml, &name, Format::Toml).unwrap_or_else(|e| panic!("{name} as TOML: {e}"));
        assert_eq!(from_toml, spec, "{name}: TOML round trip");
    }
}

#[test]
fn docs_show_every_example_verbatim() {
    let docs = std::fs::read_to_string(root().join("docs/workflow.md")).unwrap_or_else(|e| panic!("{e}"));
    for path in example_paths() {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(docs.contains(&text), "docs/workflow.md does not show {} verbatim", path.display());
    }
}

#[test]
fn the_json_dag_is_the_toml_dag() {
    assert_eq!(load("dag.json"), load("dag.toml"));
}

#[test]
fn dag_example_reads_as_documented() {
    let spec = load("dag.toml");
    assert_eq!(spec.run.max_concurrency, Some(4));
    let ids: Vec<&str> = spec.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["fetch", "build", "lint", "test", "package"]);
    assert!(matches!(&spec.tasks[0].command, Some(Command::Argv(argv)) if argv[0] == "git"));
    assert!(matches!(&spec.tasks[1].command, Some(Command::Shell(line)) if line == "cargo build --release"));
    assert_eq!(spec.tasks[2].priority, Priority::P3);
    assert_eq!(spec.tasks[1].priority, Priority::P2, "P2 is the default");
    assert_eq!(spec.tasks[4].after, ["test", "lint"]);
}

#[test]
fn waves_example_reads_as_documented() {
    let spec = load("waves.toml");
    assert_eq!(spec.run.priority_caps.get(&Priority::P0), Some(&1));
    assert_eq!(spec.waves.len(), 2);
    assert_eq!(spec.waves[1].parent.as_deref(), Some("tests"));
    assert_eq!(spec.waves[1].max_concurrency, Some(2));
    assert_eq!(spec.waves[0].on_failure, WaveFailure::FailParent);
    assert_eq!(spec.waves[1].on_failure, WaveFailure::WarnAndContinue);
}

#[test]
fn retries_example_reads_as_documented() {
    let spec = load("retries.toml");
    assert_eq!(spec.run.seed, 42);
    let download = &spec.tasks[0];
    assert_eq!(download.more().retry.max_attempts, 4);
    assert_eq!(download.more().retry.backoff, Backoff::Exponential);
    assert_eq!(download.more().retry.jitter, Jitter::Seeded);
    let sim = download.sim.as_ref().unwrap_or_else(|| panic!("download has a sim table"));
    assert_eq!(sim.outcomes, [SimOutcome::Fail(7), SimOutcome::Hang, SimOutcome::Succeed]);
    assert_eq!(sim.outcome(9), SimOutcome::Succeed, "the last outcome repeats");
    let publish = spec.tasks.iter().find(|t| t.id == "publish").and_then(|t| t.sim.as_ref());
    assert_eq!(publish.map(|s| s.duration_ms), Some(100), "100 ms is the default duration");
}
