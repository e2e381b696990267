//! The run-started record's compiled graph (kind 11): how it is encoded, that a fold of
//! it equals a fold of the spec (what a log of kind 1 gets), and that the engines that
//! compile the spec refuse an image that is not the spec's.

use std::path::Path;

use orch_engine::record::{Event, Record, RUN_STARTED_COMPILED};
use orch_engine::spec::{self, Format};
use orch_engine::state::State;
use orch_engine::view;

fn simulate(spec: spec::Spec) -> Vec<Record> {
    let mut records = Vec::new();
    orch_engine::sim::simulate(spec, 0, |rs: &[Record]| {
        records.extend_from_slice(rs);
        Ok::<(), std::convert::Infallible>(())
    })
    .expect("simulates");
    records
}

fn toml(text: &str) -> Vec<Record> {
    simulate(spec::parse(text, "t.toml", Format::Toml).expect("valid"))
}

/// The same records as an orch before kind 11 wrote them: no compiled graph.
fn legacy(records: &[Record]) -> Vec<Record> {
    let mut records = records.to_vec();
    if let Event::RunStarted(r) = &mut records[0].event {
        r.image = None;
    }
    records
}

const AB: &str =
    "[[task]]\nid = \"a\"\ncommand = \"true\"\n[[task]]\nid = \"b\"\ncommand = \"true\"\nafter = [\"a\"]\n";

#[test]
fn a_run_started_record_carries_its_graph_as_kind_11_and_renders_without_it() {
    let records = toml(AB);
    let first = &records[0];
    assert_eq!(first.event.code(), RUN_STARTED_COMPILED);
    let bytes = first.encode();
    assert_eq!(Record::decode(&bytes).expect("decodes"), *first);

    let old = legacy(&records);
    assert_eq!(old[0].event.code(), 1);
    assert_eq!(Record::decode(&old[0].encode()).expect("decodes"), old[0]);
    // The JSON rendering is the same with or without the image (it is derived data).
    assert_eq!(first.to_json(0), old[0].to_json(0));
    assert!(first.to_json(0).get("image").is_none());
}

#[test]
fn the_kind_says_whether_a_graph_is_carried() {
    let records = toml(AB);
    // [kind, time, body]: a fixarray of 3, then the kind as a positive fixint.
    let mut bytes = records[0].encode();
    assert_eq!(bytes[..2], [0x93, RUN_STARTED_COMPILED as u8]);
    bytes[1] = 1;
    let e = Record::decode(&bytes).expect_err("kind 1 with a graph");
    assert!(e.to_string().contains("must not carry a compiled graph"), "{e}");

    let mut bytes = legacy(&records)[0].encode();
    bytes[1] = RUN_STARTED_COMPILED as u8;
    let e = Record::decode(&bytes).expect_err("kind 11 without a graph");
    assert!(e.to_string().contains("must carry a compiled graph"), "{e}");
}

/// Everything a fold knows about the run, but the task specs (which a fold of the
/// image does not have).
fn folded(state: &State) -> String {
    let g = state.graph().expect("started");
    let waves: Vec<_> = (0..g.waves.len() as u32).map(|w| format!("{:?}", state.wave(w))).collect();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{waves:?}\n{:?} {:?} {} {} {:?} {:?} {:?}",
        g.nodes,
        g.groups,
        g.waves,
        state.tasks(),
        view::task_rows(state),
        state.ending(),
        state.run_phase(),
        state.now_ms(),
        state.records_applied(),
        state.context(),
        state.hooks_out(),
        state.finalize(),
    )
}

#[test]
fn a_fold_of_the_image_equals_a_fold_of_the_spec_for_every_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut seen = 0;
    for dir in ["features", "examples"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("fixtures") {
            let path = entry.expect("entry").path();
            let Ok(spec) = spec::load(&path) else { continue };
            let records = simulate(spec);
            let image = State::fold(&records).expect("folds");
            let spec = State::fold(&legacy(&records)).expect("folds");
            assert!(!image.graph().unwrap().has_tasks() || image.graph().unwrap().is_empty());
            assert!(spec.graph().unwrap().has_tasks());
            assert_eq!(folded(&image), folded(&spec), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 20, "only {seen} fixtures");
}

#[test]
fn an_image_that_is_not_the_specs_is_refused_where_the_spec_is_compiled() {
    let records = toml(AB);
    // Another spec of the same tasks, without the edge: a well-formed image, but not
    // this spec's.
    let other = toml("[[task]]\nid = \"a\"\ncommand = \"true\"\n[[task]]\nid = \"b\"\ncommand = \"true\"\n");
    let mut forged = records.clone();
    let (Event::RunStarted(r), Event::RunStarted(o)) = (&mut forged[0].event, &other[0].event) else {
        panic!("run_started first")
    };
    r.image = o.image.clone();
    let e = orch_engine::recover::recover(&forged).expect_err("refused");
    assert!(e.to_string().contains("invalid compiled graph: it is not the one the record's spec compiles to"), "{e}");
    // The untouched log re-decides.
    orch_engine::recover::recover(&records).expect("recovers");
}

#[test]
fn a_core_handed_a_recorded_run_started_compiles_its_spec_to_decide() {
    let records = toml(AB);
    let mut core = orch_engine::core::Core::new();
    let mut out = Vec::new();
    core.handle(0, records[0].event.clone(), &mut out).expect("starts");
    assert!(core.state().graph().expect("started").has_tasks());
    assert!(out.iter().any(|r| matches!(r.event, Event::AttemptDispatched(_))), "{out:?}");
}
